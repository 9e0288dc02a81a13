"""Graphsync 2.0.0 messages (``/ipfs/graphsync/2.0.0``): values, DAG-CBOR form.

One message is one DAG-CBOR value, written exactly as go-graphsync v0.17
writes it (``message/v2/message.go`` over the ``message/ipldbind`` schema)::

    {"gs2": {"req": [Request], "rsp": [Response], "blk": [Block]}}

    Request  {"id": bytes(16), "type": "n"|"c"|"u", "pri": int, "root": Link,
              "sel": Any, "ext": {string: Any|null}}
    Response {"reqid": bytes(16), "stat": int, "meta": [[Link, action]],
              "ext": {string: Any|null}}
    Block    [prefix bytes, data bytes]

Go's encoder leaves out ``req``/``rsp``/``blk`` when empty (an empty message is
``{"gs2": {}}``), ``pri`` when 0, ``root`` and ``sel`` when unset, ``ext`` when
there are no extensions and ``meta`` when there is no metadata; a cancel
request carries only ``id`` and ``type``, an update ``id``, ``type`` and
``ext``. Optional fields are never ``null`` (Go refuses that); extension
*values* may be. Map keys are in canonical DAG-CBOR order. A request id is
a 16-byte UUID; a priority is an int32. The block prefix is the CID's
``uvarint(version) uvarint(codec) uvarint(hash code) uvarint(digest length)``;
the receiver hashes the data to rebuild the CID.

Decoding follows Go's decoder: unknown or missing fields, ``null`` in an
optional field, an unknown status, request type or link action, an id that is
not 16 bytes, and a block whose prefix cannot rebuild a CID all reject the
whole message. A cancel request keeps only its id and an update only its id
and extensions (Go drops the rest); an empty ``ext``/``meta``/list is the
same as an absent one. Map keys may come in any order (Go accepts that too).
Where Go is looser than this decoder, this decoder refuses -- Go's own
encoder never produces any of these: other non-canonical CBOR (long integer
heads, indefinite lengths), a priority outside int32 (Go wraps it), the key
``id`` for ``reqid`` (a bindnode quirk), and block prefixes with trailing
bytes, a digest length other than the hash function's (Go truncates the
hash), or CIDv0 with a codec other than dag-pb. Go keys requests and
responses by id and blocks by CID, so on a Go peer a repeated id means "last
one wins" and a repeated block is kept once; here the lists keep every entry,
in wire order.

Every failure to decode raises :class:`GraphsyncWireError` and nothing else.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from datatransfer.ipld import dagcbor
from datatransfer.ipld.block import Block
from datatransfer.ipld.cid import CID
from datatransfer.ipld.errors import IPLDError
from datatransfer.messages import (
    EXTENSION_DATA_TRANSFER,
    EXTENSION_INCOMING_REQUEST,
    EXTENSION_OUTGOING_BLOCK,
)
from transport.base import TransportError
from transport.graphsync.status import LinkAction, RequestType, ResponseStatus

__all__ = [
    "MAX_BLOCK_BYTES",
    "EXTENSION_DATA_TRANSFER",
    "EXTENSION_DEDUP_BY_KEY",
    "EXTENSION_DO_NOT_SEND_CIDS",
    "EXTENSION_DO_NOT_SEND_FIRST_BLOCKS",
    "EXTENSION_INCOMING_REQUEST",
    "EXTENSION_OUTGOING_BLOCK",
    "MAX_MESSAGE_ITEMS",
    "MAX_PRIORITY",
    "MIN_PRIORITY",
    "PROTOCOL_ID",
    "REQUEST_ID_LENGTH",
    "GraphsyncMessage",
    "GraphsyncRequest",
    "GraphsyncResponse",
    "GraphsyncWireError",
    "LinkMetadatum",
    "RawBlock",
    "block_from_wire",
    "block_to_wire",
    "decode_dedup_key",
    "decode_do_not_send_cids",
    "decode_do_not_send_first_blocks",
    "decode_message",
    "encode_dedup_key",
    "encode_do_not_send_cids",
    "encode_do_not_send_first_blocks",
    "encode_message",
    "encode_message_segments",
    "message_from_node",
    "message_to_node",
    "new_request_id",
]

#: The libp2p protocol id of this message format.
PROTOCOL_ID = "/ipfs/graphsync/2.0.0"

#: go-graphsync's ``maxBlockSize``: block bytes per message before a new one
#: starts (its message queue's rule, which the engine's responder follows;
#: one block larger than this still goes, alone).
MAX_BLOCK_BYTES = 512 * 1024

#: Request ids are UUIDs: 16 bytes (Go checks the length, nothing else).
REQUEST_ID_LENGTH = 16

#: Priorities are Go ``int32`` values.
MIN_PRIORITY = -(2**31)
MAX_PRIORITY = 2**31 - 1

#: Value: a list of links. The responder sends none of these blocks (it still
#: traverses through them). Go builds the list from a set: order is arbitrary.
EXTENSION_DO_NOT_SEND_CIDS = "graphsync/do-not-send-cids"
#: Value: an int N. The responder sends no block for the first N blocks its
#: traversal loads (used to restart a transfer).
EXTENSION_DO_NOT_SEND_FIRST_BLOCKS = "graphsync/do-not-send-first-blocks"
#: Value: a string key. The responder de-duplicates blocks only across
#: requests with the same key.
EXTENSION_DEDUP_BY_KEY = "graphsync/dedup-by-key"


class GraphsyncWireError(TransportError, ValueError):
    """Bytes that are not a valid graphsync 2.0.0 frame or message, or a
    value that cannot become one."""


def _fail(path: str, why: str) -> GraphsyncWireError:
    return GraphsyncWireError(f"{path}: {why}" if path else why)


def new_request_id() -> bytes:
    """A fresh random request id (a UUIDv4, as Go makes them)."""
    return uuid.uuid4().bytes


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "bytes"
    if isinstance(value, CID):
        return "link"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "map"
    return type(value).__name__


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _request_id(value: Any, path: str) -> bytes:
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise _fail(path, f"request id must be bytes, got {_kind(value)}")
    value = bytes(value)
    if len(value) != REQUEST_ID_LENGTH:
        raise _fail(path, f"request id must be {REQUEST_ID_LENGTH} bytes, got {len(value)}")
    return value


def _extensions(value: Any, path: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _fail(path, f"extensions must be a map, got {_kind(value)}")
    out = dict(value)
    for name in out:
        if not isinstance(name, str):
            raise _fail(path, f"extension name must be a string, got {_kind(name)}")
    return out


# -- values -----------------------------------------------------------------------


class LinkMetadatum(NamedTuple):
    """One ``meta`` entry: a link the responder's traversal met, and what it did."""

    link: CID
    action: LinkAction


class RawBlock(NamedTuple):
    """A block as it travels: CID prefix and data, not yet hashed or checked.
    :func:`block_from_wire` turns it into a verified :class:`Block`."""

    prefix: bytes
    data: bytes


@dataclass(frozen=True, slots=True)
class GraphsyncRequest:
    """One request entry. Use :meth:`new`, :meth:`cancel` and :meth:`update`.

    ``selector`` is the selector *node* (as :func:`selector_to_node` gives
    it), kept as received; nothing here parses it. ``extensions`` maps names
    to IPLD values (None is a ``null`` value, which Go allows). A cancel
    carries only the id; an update only the id and extensions.
    """

    id: bytes
    type: RequestType = RequestType.NEW
    priority: int = 0
    root: CID | None = None
    selector: Any = None
    extensions: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "id", _request_id(self.id, "request id"))
        try:
            rtype = RequestType(self.type)
        except ValueError:
            raise _fail("request type", f"unknown request type {self.type!r}") from None
        object.__setattr__(self, "type", rtype)
        if not _is_int(self.priority) or not MIN_PRIORITY <= self.priority <= MAX_PRIORITY:
            raise _fail("priority", f"priority must be an int32, got {self.priority!r}")
        if self.root is not None and not isinstance(self.root, CID):
            raise _fail("root", f"root must be a CID or None, got {_kind(self.root)}")
        object.__setattr__(self, "extensions", _extensions(self.extensions, "extensions"))
        if rtype is not RequestType.NEW:
            if self.root is not None or self.selector is not None or self.priority != 0:
                raise _fail(
                    f"{rtype.name.lower()} request",
                    "only a new request has root, selector, priority",
                )
            if rtype is RequestType.CANCEL and self.extensions:
                raise _fail("cancel request", "a cancel request carries no extensions")

    @classmethod
    def new(
        cls,
        root: CID,
        selector: Any,
        *,
        id: bytes | None = None,
        priority: int = 0,
        extensions: Mapping[str, Any] | None = None,
    ) -> GraphsyncRequest:
        """A new request for the DAG under ``root`` that ``selector`` picks
        (a fresh random id unless ``id`` is given)."""
        return cls(
            new_request_id() if id is None else id,
            RequestType.NEW,
            priority,
            root,
            selector,
            dict(extensions or {}),
        )

    @classmethod
    def cancel(cls, id: bytes) -> GraphsyncRequest:
        """Cancel the request ``id``."""
        return cls(id, RequestType.CANCEL)

    @classmethod
    def update(cls, id: bytes, extensions: Mapping[str, Any] | None = None) -> GraphsyncRequest:
        """Send more extensions for the request ``id`` (unpause, vouchers...)."""
        return cls(id, RequestType.UPDATE, extensions=dict(extensions or {}))


@dataclass(frozen=True, slots=True)
class GraphsyncResponse:
    """One response entry: status of request ``request_id`` and the links the
    traversal met since the last response (``metadata``, in order)."""

    request_id: bytes
    status: ResponseStatus
    metadata: tuple[LinkMetadatum, ...] = ()
    extensions: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "request_id", _request_id(self.request_id, "request id"))
        if not _is_int(self.status):
            raise _fail("status", f"status must be an int, got {_kind(self.status)}")
        try:
            status = ResponseStatus(self.status)
        except ValueError:
            raise _fail("status", f"unknown response status {self.status!r}") from None
        object.__setattr__(self, "status", status)
        meta = []
        for i, item in enumerate(self.metadata):
            if (
                type(item) is LinkMetadatum
                and isinstance(item.link, CID)
                and isinstance(item.action, LinkAction)
            ):
                meta.append(item)  # already checked (the decoder builds these)
                continue
            try:
                link, action = item
            except (TypeError, ValueError):
                raise _fail(f"metadata[{i}]", "must be a (CID, action) pair") from None
            if not isinstance(link, CID):
                raise _fail(f"metadata[{i}]", f"link must be a CID, got {_kind(link)}")
            try:
                action = LinkAction(action)
            except ValueError:
                raise _fail(f"metadata[{i}]", f"unknown link action {action!r}") from None
            meta.append(LinkMetadatum(link, action))
        object.__setattr__(self, "metadata", tuple(meta))
        object.__setattr__(self, "extensions", _extensions(self.extensions, "extensions"))


BlockLike = Block | RawBlock


@dataclass(frozen=True, slots=True)
class GraphsyncMessage:
    """One graphsync message: requests, responses and blocks, in order.

    ``blocks`` holds verified :class:`Block` values (what :func:`decode_message`
    gives by default, and what a responder sends) or :class:`RawBlock`
    ``(prefix, data)`` pairs; a plain ``(bytes, bytes)`` pair becomes a
    :class:`RawBlock`.
    """

    requests: tuple[GraphsyncRequest, ...] = ()
    responses: tuple[GraphsyncResponse, ...] = ()
    blocks: tuple[BlockLike, ...] = ()

    def __post_init__(self) -> None:
        requests = tuple(self.requests)
        for r in requests:
            if not isinstance(r, GraphsyncRequest):
                raise _fail("requests", f"not a GraphsyncRequest: {type(r).__name__}")
        responses = tuple(self.responses)
        for r in responses:
            if not isinstance(r, GraphsyncResponse):
                raise _fail("responses", f"not a GraphsyncResponse: {type(r).__name__}")
        blocks = []
        for b in self.blocks:
            if isinstance(b, (Block, RawBlock)):
                blocks.append(b)
                continue
            try:
                prefix, data = b
            except (TypeError, ValueError):
                raise _fail("blocks", f"not a block: {type(b).__name__}") from None
            if not isinstance(prefix, (bytes, bytearray, memoryview)) or not isinstance(
                data, (bytes, bytearray, memoryview)
            ):
                raise _fail("blocks", "a raw block is a (prefix bytes, data bytes) pair")
            blocks.append(RawBlock(bytes(prefix), bytes(data)))
        object.__setattr__(self, "requests", requests)
        object.__setattr__(self, "responses", responses)
        object.__setattr__(self, "blocks", tuple(blocks))

    @property
    def empty(self) -> bool:
        """No requests, responses or blocks (Go does not send such a message)."""
        return not (self.requests or self.responses or self.blocks)

    @property
    def block_bytes(self) -> int:
        """Total size of the blocks' data."""
        return sum(len(b.data) for b in self.blocks)

    def verified_blocks(self) -> list[Block]:
        """The blocks, each hashed and checked (:class:`RawBlock` ones via
        :func:`block_from_wire`); raises :class:`GraphsyncWireError`."""
        return [
            b if isinstance(b, Block) else block_from_wire(b.prefix, b.data) for b in self.blocks
        ]


# -- blocks -----------------------------------------------------------------------


def block_from_wire(
    prefix: bytes | bytearray | memoryview, data: bytes | bytearray | memoryview
) -> Block:
    """Rebuild a received block's CID from its prefix by hashing ``data``.

    Raises :class:`GraphsyncWireError` for a prefix that is malformed, has
    trailing bytes, names an unknown CID version or hash function, gives a
    digest length other than the hash function's, or is CIDv0 with anything
    but dag-pb/sha2-256.
    """
    return _block_from_wire(prefix, data, "block")


def _block_from_wire(prefix: Any, data: Any, path: str) -> Block:
    if not isinstance(prefix, (bytes, bytearray, memoryview)) or not isinstance(
        data, (bytes, bytearray, memoryview)
    ):
        raise _fail(path, "prefix and data must be bytes")
    prefix, data = bytes(prefix), bytes(data)
    try:
        cid = CID.from_prefix(prefix, data)
    except IPLDError as exc:
        raise _fail(path, f"bad CID prefix {prefix.hex()}: {exc}") from None
    # The CID was computed from exactly these bytes: no second hash.
    return Block._hashed(cid, data)


def block_to_wire(block: BlockLike) -> RawBlock:
    """The ``(prefix, data)`` pair a block travels as."""
    if isinstance(block, RawBlock):
        return block
    return RawBlock(block.cid.prefix, block.data)


# -- encoding ---------------------------------------------------------------------


def _request_node(req: GraphsyncRequest) -> dict[str, Any]:
    node: dict[str, Any] = {"id": req.id, "type": req.type.value}
    if req.priority:
        node["pri"] = req.priority
    if req.root is not None:
        node["root"] = req.root
    if req.selector is not None:
        node["sel"] = req.selector
    if req.extensions:
        node["ext"] = req.extensions
    return node


def _response_node(rsp: GraphsyncResponse) -> dict[str, Any]:
    node: dict[str, Any] = {"reqid": rsp.request_id, "stat": int(rsp.status)}
    if rsp.metadata:
        node["meta"] = [[m.link, m.action.value] for m in rsp.metadata]
    if rsp.extensions:
        node["ext"] = rsp.extensions
    return node


def message_to_node(msg: GraphsyncMessage) -> dict[str, Any]:
    """The IPLD value of ``msg`` (``{"gs2": {...}}``), as Go builds it."""
    if not isinstance(msg, GraphsyncMessage):
        raise TypeError(f"not a GraphsyncMessage: {type(msg).__name__}")
    inner: dict[str, Any] = {}
    if msg.requests:
        inner["req"] = [_request_node(r) for r in msg.requests]
    if msg.responses:
        inner["rsp"] = [_response_node(r) for r in msg.responses]
    if msg.blocks:
        inner["blk"] = [list(block_to_wire(b)) for b in msg.blocks]
    return {"gs2": inner}


def encode_message(msg: GraphsyncMessage) -> bytes:
    """Encode ``msg`` as DAG-CBOR, byte-identical to go-graphsync's ``ToNet``
    (without the length prefix: see :func:`~transport.graphsync.framing.frame`).

    Raises :class:`GraphsyncWireError` when a selector or extension value is
    not an IPLD data-model value.
    """
    try:
        return dagcbor.encode(message_to_node(msg))
    except dagcbor.DagCborError as exc:
        raise GraphsyncWireError(f"message cannot be encoded: {exc}") from exc


def encode_message_segments(msg: GraphsyncMessage) -> list[bytes]:
    """:func:`encode_message` as pieces that concatenate to it, each large
    block's data a piece of its own, not copied (see
    :func:`~datatransfer.ipld.dagcbor.encode_segments`): a message of
    blocks is up to megabytes, and the sender writes the pieces as they are."""
    try:
        return dagcbor.encode_segments(message_to_node(msg))
    except dagcbor.DagCborError as exc:
        raise GraphsyncWireError(f"message cannot be encoded: {exc}") from exc


# -- decoding ---------------------------------------------------------------------

_MESSAGE_KEYS = frozenset({"req", "rsp", "blk"})
_REQUEST_KEYS = frozenset({"id", "type", "pri", "root", "sel", "ext"})
_RESPONSE_KEYS = frozenset({"reqid", "stat", "meta", "ext"})


def _map(node: Any, path: str, allowed: frozenset[str], required: tuple[str, ...] = ()) -> dict:
    if not isinstance(node, dict):
        raise _fail(path, f"must be a map, got {_kind(node)}")
    extra = node.keys() - allowed
    if extra:
        raise _fail(path, f"unknown field {sorted(extra)[0]!r}")
    for key in required:
        if key not in node:
            raise _fail(path, f"missing field {key!r}")
    for key, value in node.items():
        if value is None:  # optional fields are not nullable in the schema
            raise _fail(f"{path}.{key}", "must not be null")
    return node


def _list(node: Any, path: str) -> list:
    if not isinstance(node, list):
        raise _fail(path, f"must be a list, got {_kind(node)}")
    return node


def _ext_node(node: dict, path: str) -> dict[str, Any]:
    if "ext" not in node:
        return {}
    ext = node["ext"]
    if not isinstance(ext, dict):
        raise _fail(f"{path}.ext", f"must be a map, got {_kind(ext)}")
    return ext


def _decode_request(node: Any, path: str) -> GraphsyncRequest:
    node = _map(node, path, _REQUEST_KEYS, ("id", "type"))
    rid = _request_id(node["id"], f"{path}.id")
    rtype = node["type"]
    if not isinstance(rtype, str):
        raise _fail(f"{path}.type", f"must be a string, got {_kind(rtype)}")
    try:
        rtype = RequestType(rtype)
    except ValueError:
        raise _fail(f"{path}.type", f"unknown request type {rtype!r}") from None
    priority = node.get("pri", 0)
    if not _is_int(priority):
        raise _fail(f"{path}.pri", f"must be an int, got {_kind(priority)}")
    if not MIN_PRIORITY <= priority <= MAX_PRIORITY:
        raise _fail(f"{path}.pri", f"priority {priority} is outside int32")
    root = node.get("root")
    if root is not None and not isinstance(root, CID):
        raise _fail(f"{path}.root", f"must be a link, got {_kind(root)}")
    ext = _ext_node(node, path)
    # Go: a cancel keeps only the id, an update only the id and extensions.
    if rtype is RequestType.CANCEL:
        return GraphsyncRequest(rid, rtype)
    if rtype is RequestType.UPDATE:
        return GraphsyncRequest(rid, rtype, extensions=ext)
    return GraphsyncRequest(rid, rtype, priority, root, node.get("sel"), ext)


def _decode_response(node: Any, path: str) -> GraphsyncResponse:
    node = _map(node, path, _RESPONSE_KEYS, ("reqid", "stat"))
    rid = _request_id(node["reqid"], f"{path}.reqid")
    stat = node["stat"]
    if not _is_int(stat):
        raise _fail(f"{path}.stat", f"must be an int, got {_kind(stat)}")
    try:
        status = ResponseStatus(stat)
    except ValueError:
        raise _fail(f"{path}.stat", f"unknown response status {stat}") from None
    meta = []
    for i, item in enumerate(_list(node.get("meta", []), f"{path}.meta")):
        ipath = f"{path}.meta[{i}]"
        if not isinstance(item, list) or len(item) != 2:
            raise _fail(ipath, "must be a [link, action] list")
        link, action = item
        if not isinstance(link, CID):
            raise _fail(ipath, f"link must be a link, got {_kind(link)}")
        if not isinstance(action, str):
            raise _fail(ipath, f"action must be a string, got {_kind(action)}")
        try:
            meta.append(LinkMetadatum(link, LinkAction(action)))
        except ValueError:
            raise _fail(ipath, f"unknown link action {action!r}") from None
    return GraphsyncResponse(rid, status, tuple(meta), _ext_node(node, path))


def _decode_block(node: Any, path: str, verify: bool) -> BlockLike:
    if not isinstance(node, list) or len(node) != 2:
        raise _fail(path, "must be a [prefix, data] list")
    prefix, data = node
    if not isinstance(prefix, bytes) or not isinstance(data, bytes):
        raise _fail(path, f"prefix and data must be bytes, got {_kind(prefix)}, {_kind(data)}")
    if verify:
        return _block_from_wire(prefix, data, path)
    return RawBlock(prefix, data)


def message_from_node(node: Any, *, verify_blocks: bool = True) -> GraphsyncMessage:
    """The message an IPLD value (``{"gs2": {...}}``) holds; raises
    :class:`GraphsyncWireError`. See :func:`decode_message`."""
    if not isinstance(node, dict):
        raise _fail("message", f"must be a map, got {_kind(node)}")
    if node.keys() != {"gs2"}:
        names = ", ".join(repr(k) for k in sorted(node)) or "none"
        raise _fail("message", f"must have exactly the key 'gs2', got {names}")
    inner = _map(node["gs2"], "gs2", _MESSAGE_KEYS)
    requests = tuple(
        _decode_request(r, f"gs2.req[{i}]")
        for i, r in enumerate(_list(inner.get("req", []), "gs2.req"))
    )
    responses = tuple(
        _decode_response(r, f"gs2.rsp[{i}]")
        for i, r in enumerate(_list(inner.get("rsp", []), "gs2.rsp"))
    )
    blocks = tuple(
        _decode_block(b, f"gs2.blk[{i}]", verify_blocks)
        for i, b in enumerate(_list(inner.get("blk", []), "gs2.blk"))
    )
    return GraphsyncMessage(requests, responses, blocks)


#: Most DAG-CBOR items (list items, map keys and values) one graphsync
#: message may hold. The largest honest messages are metadata-heavy
#: responses (a restart of a big DAG announces every skipped block: a full
#: 4 MiB frame of metadata is about 95,000 entries, 290,000 items), so this
#: leaves room; it refuses, while the heads are read and before any value
#: is built, a 4 MiB frame of millions of empty lists (a Python list each:
#: hundreds of MiB).
MAX_MESSAGE_ITEMS = 1 << 19


def decode_message(
    data: bytes | bytearray | memoryview | list[bytes], *, verify_blocks: bool = True,
    max_items: int = MAX_MESSAGE_ITEMS,
) -> GraphsyncMessage:
    """Decode one message (a frame's payload, without the length prefix).

    With ``verify_blocks`` (the default, like Go) each block's CID is rebuilt
    from its prefix by hashing, and ``blocks`` holds :class:`Block` values;
    without it, ``blocks`` holds unchecked :class:`RawBlock` pairs (hash them
    later with :meth:`GraphsyncMessage.verified_blocks`). ``data`` may also
    be the payload as a list of pieces (:func:`encode_message_segments`'
    form): it decodes exactly as the pieces joined, but a block's data that
    is a whole piece is taken as it is, not copied
    (:func:`~datatransfer.ipld.dagcbor.decode_segments`). Any malformed
    input raises :class:`GraphsyncWireError`; ``data`` that is not
    bytes-like is a :class:`TypeError`. ``max_items``: a lower item limit,
    to try a frame cheaply first (see :mod:`transport.libp2p.transport`).
    """
    if isinstance(data, list):
        decode = dagcbor.decode_segments
        if not any(data):
            raise GraphsyncWireError("empty message")
    else:
        decode = dagcbor.decode
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"message data must be bytes-like, not {type(data).__name__}")
        if not data:
            raise GraphsyncWireError("empty message")
    try:
        node = decode(  # type: ignore[arg-type]
            data, sorted_keys=False, max_items=min(max_items, MAX_MESSAGE_ITEMS)
        )
    except dagcbor.DagCborError as exc:
        raise GraphsyncWireError(f"message is not DAG-CBOR: {exc}") from None
    try:
        return message_from_node(node, verify_blocks=verify_blocks)
    except GraphsyncWireError:
        raise
    except Exception as exc:  # defensive: a bug must still surface as a wire error
        raise GraphsyncWireError(f"malformed message: {exc!r}") from exc


# -- extension values ---------------------------------------------------------------


def encode_do_not_send_cids(cids: Iterable[CID]) -> list[CID]:
    """The value of :data:`EXTENSION_DO_NOT_SEND_CIDS`: a list of links
    (duplicates dropped, order kept)."""
    out: dict[CID, None] = {}
    for c in cids:
        if not isinstance(c, CID):
            raise TypeError(f"not a CID: {type(c).__name__}")
        out[c] = None
    return list(out)


def decode_do_not_send_cids(value: Any) -> frozenset[CID]:
    """The CIDs of a :data:`EXTENSION_DO_NOT_SEND_CIDS` value (a list of links)."""
    if not isinstance(value, list):
        raise _fail(EXTENSION_DO_NOT_SEND_CIDS, f"must be a list of links, got {_kind(value)}")
    for item in value:
        if not isinstance(item, CID):
            raise _fail(EXTENSION_DO_NOT_SEND_CIDS, f"must hold only links, got {_kind(item)}")
    return frozenset(value)


def encode_do_not_send_first_blocks(count: int) -> int:
    """The value of :data:`EXTENSION_DO_NOT_SEND_FIRST_BLOCKS`: an int."""
    if not _is_int(count) or not 0 <= count < 2**63:
        raise ValueError(f"block count must be a non-negative int64, got {count!r}")
    return count


def decode_do_not_send_first_blocks(value: Any) -> int:
    """The block count of a :data:`EXTENSION_DO_NOT_SEND_FIRST_BLOCKS` value.
    (Go reads any int64; a negative count is refused here.)"""
    if not _is_int(value) or not 0 <= value < 2**63:
        raise _fail(
            EXTENSION_DO_NOT_SEND_FIRST_BLOCKS, f"must be a non-negative int64, got {value!r}"
        )
    return value


def encode_dedup_key(key: str) -> str:
    """The value of :data:`EXTENSION_DEDUP_BY_KEY`: a string."""
    if not isinstance(key, str):
        raise TypeError(f"dedup key must be a str, not {type(key).__name__}")
    return key


def decode_dedup_key(value: Any) -> str:
    """The key of a :data:`EXTENSION_DEDUP_BY_KEY` value (a string)."""
    if not isinstance(value, str):
        raise _fail(EXTENSION_DEDUP_BY_KEY, f"must be a string, got {_kind(value)}")
    return value
