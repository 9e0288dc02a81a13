"""The traversal steps every transport takes the same way.

The sender walks the selector over its store and sends the blocks it loads
(after a restart, not the first ones the receiver already holds). The
receiver runs its own traversal of the same selector, so it knows which
block must arrive next: a block nobody asked for is refused instead of
stored; the blocks skipped on restart it loads from its own store.

A go-graphsync sender serving a restart still walks the skipped blocks and
announces each (a ``p`` metadata entry without the block); the in-memory
sender announces nothing. So a receiver that gets announcements stops at
each skipped block (``stop_at_skipped``) and consumes the announcement for
it (:func:`take_skipped`), in order; one that gets none loads the rest of
the skipped blocks when the first real block arrives (:func:`skip_rest`).
Either way it holds no list of the skipped CIDs: the traversal itself says
which one comes next, so a restart of a huge DAG costs no memory.

A traversal made with ``step_work`` (a transport serving strangers) returns
:data:`~datatransfer.ipld.selector.traversal.STEP` after a bounded amount of
work; the steps here then return :data:`STEP` too, and the caller lets
others run before it calls :func:`next_to_send` or :func:`resume_receive`
again.
"""

from __future__ import annotations

from typing import Any

from datatransfer.ipld.blockstore import BlockNotFound, Blockstore
from datatransfer.ipld.cid import CID
from datatransfer.ipld.selector import BlockRequest, Traverser
from datatransfer.ipld.selector.traversal import STEP
from datatransfer.types import ChannelID, PeerID

__all__ = [
    "STEP",
    "MissingBlock",
    "Receiving",
    "Sending",
    "Walk",
    "next_to_receive",
    "next_to_send",
    "resume_receive",
    "skip_rest",
    "take_skipped",
]


class Walk:
    """What every transport keeps for one channel it moves data for on this
    node: whose channel, the request carrying it, the traversal, and whether
    this node's application paused it."""

    __slots__ = ("channel_id", "peer", "request_id", "traverser", "local_hold", "charged_work")

    def __init__(
        self, channel_id: ChannelID, peer: PeerID, request_id: Any, traverser: Traverser
    ) -> None:
        self.channel_id = channel_id
        self.peer = peer
        #: The transport's own request id (an int in memory, 16 bytes in graphsync).
        self.request_id = request_id
        self.traverser = traverser
        self.local_hold = False
        #: The traversal's idle work already charged to the peer's budget.
        self.charged_work = 0


class Receiving(Walk):
    """The data receiver's side: which block must arrive next."""

    __slots__ = ("last_index", "expect", "traversal_done", "sender_done", "stop_at_skipped")

    def __init__(
        self,
        channel_id: ChannelID,
        peer: PeerID,
        request_id: Any,
        traverser: Traverser,
        skip_blocks: int,
    ) -> None:
        super().__init__(channel_id, peer, request_id, traverser)
        #: Highest block index held (received, or loaded locally on restart).
        self.last_index = skip_blocks
        #: The block the traversal waits for from the sender.
        self.expect: BlockRequest | None = None
        self.traversal_done = False
        #: The sender said it has sent everything (transports that say so apart).
        self.sender_done = False
        #: How the walk that returned STEP was asked to stop (see resume_receive).
        self.stop_at_skipped = False


class Sending(Walk):
    """The data sender's side: the block loaded next and what holds it back."""

    __slots__ = ("remote_hold", "pumping", "pump_active", "pending", "decided", "dont_send",
                 "selector_node", "opens", "short_batch")

    def __init__(
        self,
        channel_id: ChannelID,
        peer: PeerID,
        request_id: Any,
        traverser: Traverser,
        dont_send: frozenset[CID] = frozenset(),
    ) -> None:
        super().__init__(channel_id, peer, request_id, traverser)
        #: The receiver paused the channel.
        self.remote_hold = False
        #: The request was accepted: blocks flow when nothing holds them.
        self.pumping = False
        #: A pump step is queued or running.
        self.pump_active = False
        #: The next block to send (loaded; ``None`` data: announced, not sent),
        #: and whether on_data_queued said yes to it.
        self.pending: tuple[BlockRequest, bytes | None] | None = None
        self.decided = False
        #: CIDs the receiver asked not to be sent: traversed, announced, not sent.
        self.dont_send = dont_send
        #: The selector as the request carried it (checked against the channel's).
        self.selector_node: Any = None
        #: The request opens its channel: the blocks it skips never moved on
        #: it (the receiver held them already), so they are not reported as
        #: skipped; on a restart or a resume they moved before.
        self.opens = False
        #: Send the next batch with its first block alone (just resumed: the
        #: receiver waits, idle, for the first block; see ``GraphsyncEngine``).
        self.short_batch = False

    @property
    def held(self) -> bool:
        return self.local_hold or self.remote_hold


def next_to_receive(
    state: Receiving, blockstore: Blockstore, *, stop_at_skipped: bool = False
) -> str | None:
    """Walk ``state.traverser`` to the next block the sender must send and set
    ``state.expect`` to it (or ``state.traversal_done`` when none is left),
    loading restart-skipped blocks from ``blockstore``; with
    ``stop_at_skipped``, stop at a restart-skipped block too (its
    ``send`` is False) so the sender's announcement of it can be matched.
    Returns an error text, None, or :data:`STEP` (call :func:`resume_receive`
    later)."""
    traverser = state.traverser
    while True:
        try:
            event = traverser.next()
        except Exception as exc:  # noqa: BLE001 - reported as the receive error
            return f"traversal failed: {exc}"
        if event is STEP:
            state.stop_at_skipped = stop_at_skipped
            return STEP
        if event is None:
            state.traversal_done = True
            state.expect = None
            return None
        if type(event) is not BlockRequest:
            continue
        if event.send or stop_at_skipped:
            state.expect = event
            return None
        error = _load_skipped(traverser, event, blockstore)
        if error is not None:
            return error


def resume_receive(state: Receiving, blockstore: Blockstore) -> str | None:
    """Walk on after a step returned :data:`STEP`, as that step was asked to."""
    return next_to_receive(state, blockstore, stop_at_skipped=state.stop_at_skipped)


def _load_skipped(traverser: Traverser, request: BlockRequest, blockstore: Blockstore) -> str | None:
    try:
        data = blockstore.get(request.cid)
    except Exception as exc:  # noqa: BLE001 - BlockNotFound, closed store...
        return (
            f"block {request.cid} (index {request.index + 1}) to skip on restart "
            f"is not in the local store: {exc}"
        )
    traverser.provide(data)
    return None


def take_skipped(state: Receiving, blockstore: Blockstore) -> str | None:
    """``state.expect`` is a restart-skipped block the sender just announced:
    load it from ``blockstore`` and walk on to the next block, stopping at a
    skipped one again. Returns as :func:`next_to_receive`."""
    expect = state.expect
    assert expect is not None and not expect.send
    state.expect = None
    error = _load_skipped(state.traverser, expect, blockstore)
    if error is not None:
        return error
    return next_to_receive(state, blockstore, stop_at_skipped=True)


def skip_rest(state: Receiving, blockstore: Blockstore) -> str | None:
    """If ``state.expect`` is a restart-skipped block, load it and the rest
    of the skipped blocks from ``blockstore`` (the sender did not announce
    them) and walk on to the first block the sender must send. Returns as
    :func:`next_to_receive`."""
    expect = state.expect
    if expect is None or expect.send:
        return None
    state.expect = None
    error = _load_skipped(state.traverser, expect, blockstore)
    if error is not None:
        return error
    return next_to_receive(state, blockstore)


class MissingBlock(str):
    """The error text :func:`next_to_send` returns when the store lacks a
    block the walk needs, with that block's ``cid`` and walk ``index`` (0:
    the root), so a sender can answer "content not found" as go-graphsync
    does when the root is missing."""

    cid: CID
    index: int

    def __new__(cls, cid: CID, index: int, why: object) -> MissingBlock:
        self = super().__new__(cls, f"cannot load block {cid} (index {index + 1}): {why}")
        self.cid = cid
        self.index = index
        return self


def next_to_send(
    traverser: Traverser, blockstore: Blockstore, *, with_skipped: bool = False
) -> tuple[BlockRequest, bytes] | str | None:
    """Walk ``traverser`` over ``blockstore`` to the next block to send: that
    block's request and bytes, None when the traversal is complete, or an
    error text (a :class:`MissingBlock` when the store lacks it). Blocks a restart skips are walked but not returned, unless
    ``with_skipped`` (their ``send`` is False: the caller announces them
    without sending them, as go-graphsync does); or :data:`STEP`: call again
    after letting others run."""
    while True:
        try:
            event = traverser.next()
        except Exception as exc:  # noqa: BLE001 - any traversal failure ends it
            return f"traversal failed: {exc}"
        if event is STEP:
            return STEP
        if event is None:
            return None
        if type(event) is not BlockRequest:
            continue
        try:
            data = blockstore.get(event.cid)
        except BlockNotFound as exc:
            return MissingBlock(event.cid, event.index, exc)
        except Exception as exc:  # noqa: BLE001 - a closed store, a disk error...
            return f"cannot load block {event.cid} (index {event.index + 1}): {exc}"
        traverser.provide(data)
        if event.send or with_skipped:
            return event, data
