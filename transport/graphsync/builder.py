"""Batching a responder's output into messages, the way go-graphsync does.

go-graphsync's message queue (``messagequeue/messagequeue.go``) appends each
unit of response work to the newest pending message, and starts a new
message when that work's size plus the block bytes already in the newest
message exceeds ``maxBlockSize`` = 512 KiB. Work of size 0 (a status, an
extension without data) never starts a new message. One unit of work that is
larger than the limit on its own still goes out whole, in a message of its
own. A unit's size is the data of the blocks it sends plus the DAG-CBOR
length of the extension values it adds (``responseassembler``); a link's
metadata entry travels in the same message as its block.

In each built message, every request that had links, an extension or a status
there gets one response entry: its links in order, its extensions (the last
value per name wins), and the status set there -- or ``PARTIAL_RESPONSE``
(14) when none was. Blocks are sent once per message.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from datatransfer.ipld import dagcbor
from datatransfer.ipld.block import Block
from datatransfer.ipld.cid import CID
from transport.graphsync.message import (
    GraphsyncMessage,
    GraphsyncRequest,
    GraphsyncResponse,
    GraphsyncWireError,
    LinkMetadatum,
    RawBlock,
)
from transport.graphsync.status import LinkAction, ResponseStatus

__all__ = ["MAX_BLOCK_BYTES", "ResponseBuilder", "split_blocks"]

#: Go's ``maxBlockSize``: block bytes per message before a new one starts.
MAX_BLOCK_BYTES = 512 * 1024

T = TypeVar("T")


def _data_size(block: Any) -> int:
    if isinstance(block, (Block, RawBlock)):
        return len(block.data)
    return len(block[1])


def split_blocks(
    blocks: Iterable[T],
    max_bytes: int = MAX_BLOCK_BYTES,
    size: Callable[[T], int] = _data_size,
) -> list[list[T]]:
    """Group ``blocks`` (in order) into messages by Go's rule: a block joins
    the current group unless the group's bytes plus its own would exceed
    ``max_bytes``; an empty block never starts a group; a block bigger than
    ``max_bytes`` is alone in its group. ``size`` gives a block's byte count
    (default: its data length; blocks are :class:`Block`, :class:`RawBlock`
    or ``(x, data)`` pairs)."""
    groups: list[list[T]] = []
    current: list[T] = []
    used = 0
    for block in blocks:
        n = size(block)
        if current and n > 0 and used + n > max_bytes:
            groups.append(current)
            current, used = [], 0
        current.append(block)
        used += n
    if current:
        groups.append(current)
    return groups


class _Pending:
    __slots__ = ("requests", "links", "extensions", "statuses", "blocks", "block_bytes")

    def __init__(self) -> None:
        self.requests: dict[bytes, GraphsyncRequest] = {}
        # request id -> links; a key means "this request has a response here"
        self.links: dict[bytes, list[LinkMetadatum]] = {}
        self.extensions: dict[bytes, dict[str, Any]] = {}
        self.statuses: dict[bytes, ResponseStatus] = {}
        self.blocks: dict[CID, Block] = {}
        self.block_bytes = 0

    @property
    def empty(self) -> bool:
        return not (self.requests or self.links or self.blocks)

    def build(self) -> GraphsyncMessage:
        responses = [
            GraphsyncResponse(
                rid,
                self.statuses.get(rid, ResponseStatus.PARTIAL_RESPONSE),
                tuple(links),
                self.extensions.get(rid, {}),
            )
            for rid, links in self.links.items()
        ]
        return GraphsyncMessage(
            tuple(self.requests.values()), tuple(responses), tuple(self.blocks.values())
        )


class ResponseBuilder:
    """Collects requests, links, blocks, extensions and statuses, then
    :meth:`build` returns them as messages split the way Go splits them.

    Each ``add_*`` call is one unit of work (see the module docs). The
    builder is reusable: :meth:`build` empties it.
    """

    def __init__(self, max_block_bytes: int = MAX_BLOCK_BYTES) -> None:
        self.max_block_bytes = max_block_bytes
        self._pending: list[_Pending] = []

    def _target(self, size: int) -> _Pending:
        if not self._pending or (
            size > 0 and self._pending[-1].block_bytes + size > self.max_block_bytes
        ):
            self._pending.append(_Pending())
        return self._pending[-1]

    def add_request(self, request: GraphsyncRequest) -> None:
        """Send ``request`` (a later one with the same id replaces it, as in Go)."""
        self._target(0).requests[request.id] = request

    def add_link(
        self, request_id: bytes, link: CID, action: LinkAction, block: Block | None = None
    ) -> None:
        """Record that the traversal of ``request_id`` met ``link``; send
        ``block`` with it (normally when ``action`` is ``PRESENT``)."""
        action = LinkAction(action)
        if block is not None:
            if not isinstance(block, Block):
                raise TypeError(f"block must be a Block, not {type(block).__name__}")
            if block.cid != link:
                raise ValueError(f"block {block.cid} does not belong to link {link}")
        pending = self._target(len(block.data) if block is not None else 0)
        if block is not None and block.cid not in pending.blocks:
            pending.blocks[block.cid] = block
            pending.block_bytes += len(block.data)
        pending.links.setdefault(request_id, []).append(LinkMetadatum(link, action))

    def add_extension(self, request_id: bytes, name: str, value: Any) -> None:
        """Send the extension ``name`` on the response to ``request_id``."""
        try:
            size = 0 if value is None else len(dagcbor.encode(value))
        except dagcbor.DagCborError as exc:
            raise GraphsyncWireError(f"extension {name!r} cannot be encoded: {exc}") from exc
        pending = self._target(size)
        pending.extensions.setdefault(request_id, {})[name] = value
        pending.links.setdefault(request_id, [])

    def add_status(self, request_id: bytes, status: ResponseStatus) -> None:
        """Set the status of ``request_id``'s response (a terminal one ends
        it; ``PAUSED`` pauses it)."""
        pending = self._target(0)
        pending.statuses[request_id] = ResponseStatus(status)
        pending.links.setdefault(request_id, [])

    @property
    def empty(self) -> bool:
        return all(p.empty for p in self._pending)

    def build(self) -> list[GraphsyncMessage]:
        """The messages so far, in order (empty ones left out); resets."""
        pending, self._pending = self._pending, []
        return [p.build() for p in pending if not p.empty]
