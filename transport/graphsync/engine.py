"""A graphsync 2.0.0 requester/responder implementing :class:`transport.base.Transport`.

The engine knows nothing of libp2p: it sends whole :class:`GraphsyncMessage`
values through an async ``send(peer, message)`` function and is fed what
arrives through :meth:`GraphsyncEngine.handle_message` (or
:meth:`GraphsyncEngine.handle_frame` for an undecoded frame payload).
Data-transfer messages that travel on their own go through an async
``send_dt(peer, message)`` function and arrive through
:meth:`GraphsyncEngine.handle_dt_message`. :mod:`transport.libp2p.transport`
plugs it into a libp2p host; :mod:`transport.inmem` carries it over an
in-memory network with fault injection.

Semantics are those :mod:`transport.base` sets out; on the wire they map
onto graphsync as go-data-transfer's graphsync transport does:

* the data receiver sends a request (type ``n``) with the root, the
  selector node, the data-transfer message in ``fil/data-transfer/1.1`` and,
  on a restart, ``graphsync/do-not-send-first-blocks`` = the count it holds.
  As go-graphsync's responder does, the sender still walks those blocks and
  announces each with a ``p`` metadata entry without the block (and reports
  each to ``on_data_skipped``, no progress event: the Manager counts one
  only if a crash lost its record of sending it); the receiver
  loads each from its own store as its announcement arrives (they must come
  in traversal order: another CID announced as not sent there fails the
  channel), and when the first block carried arrives instead, loads the
  rest of them without announcements (a sender that announces none). It
  keeps no list of skipped CIDs: its traversal names the next one;
* the data sender derives the channel id from that message (a request: the
  requester initiated the channel; a response, i.e. a push responder's
  acceptance: this node initiated it), asks the Manager
  (``on_request_received``; anything else -- no or a malformed extension --
  is answered 30 Rejected without asking), then traverses its blockstore and
  answers with responses: each block with a ``p`` metadata entry, blocks
  batched up to 512 KiB per message (Go's limit; the first block after a
  resume alone: the receiver waits idle for it, a retrieval client that
  just paid, and one block is carried and stored in about half the time of
  a full batch), a data-transfer message in
  the response's extension (sent in a message of its own, ahead of the blocks
  queued after it), status 14 while going, 15 when it pauses, 20 when done,
  30 rejected, 35 cancelled by the sender, 32 for a sender-side failure;
* the receiver runs its own traversal and accepts only the block it needs
  next (anything else cancels the request with ``c`` and reports a receive
  error); its messages (``on_data_received`` decisions, ``resume_channel``)
  go as update requests (``u``) with the extension;
* ``graphsync/do-not-send-cids`` (on a new request; as in go-graphsync, an
  update carrying it changes nothing): the sender still traverses those
  blocks but leaves them out of its messages, announcing each with a ``p``
  metadata entry without the block -- exactly what go-graphsync's responder
  does for every block it does not send (``d`` is never emitted by Go; this
  receiver takes ``d`` the same way). The receiver takes a block announced
  but not carried from its own blockstore so its traversal goes on, and
  fails the channel if it does not hold it. Such blocks raise no
  ``on_data_queued`` / ``on_data_sent`` / ``on_data_received`` event
  (go-data-transfer's graphsync transport skips its queued and sent hooks
  for them too); the receiver reports each to ``on_data_skipped``, so its
  progress counts what it holds. :meth:`GraphsyncEngine.open_channel`
  sends the set (``do_not_send=``, and what the store holds with
  ``skip_held``);
* opening a data request with ``skip_held`` (the default), the receiver
  first walks the selector over its own store and asks for nothing it
  holds: the blocks held from the start of the walk on as
  ``do-not-send-first-blocks``, those held past the first one missing in
  ``do-not-send-cids`` (go-graphsync's responder honours both on any new
  request). A sender counts the blocks a new channel's request skips as
  neither queued nor sent (nothing moved on it; Go's counts only blocks on
  the wire); those a restart or a resume skips it reports to
  ``on_data_skipped`` (they moved before);
* ``graphsync/dedup-by-key``: a go-graphsync responder deduplicates blocks
  across all in-flight requests of a peer (a block sent for one is only
  announced for another), unless a request names a key: then only requests
  sharing that key share a bucket. The receiver sends
  ``data-transfer-<channel id>`` (what go-data-transfer sends for a channel
  with its own store), so a Go sender never leaves out a block because
  another channel got it -- a block that channel's lane may not have stored
  yet. As responder the key is checked (a string) and needs nothing more:
  this responder never deduplicates across requests;
* a malformed value of any of these extensions (wrong type) refuses the
  request with 30 Rejected before the Manager is asked (Go answers 32 after
  its hooks ran);
* the receiver pauses as go-graphsync's requester does: it cancels the
  request (``c``) and keeps its traversal. Entries still in flight for the
  cancelled request are taken while each is exactly the block the traversal
  needs next (they are here: not asking for them again saves sending them
  twice); anything else is dropped, and nothing fails or ends the channel
  meanwhile (a terminal status is ignored). It resumes by sending the request again -- type
  ``n``, the same id, root, selector and extensions -- with the resume
  message in ``fil/data-transfer/1.1`` and ``graphsync/do-not-send-first-blocks``
  = the blocks it holds (go-graphsync's ``ReplaceExtensions`` on unpause). The
  sender walks from the root again and announces the held blocks; the
  receiver spots that new walk by the root's entry and discards its entries
  up to where its own traversal stands (so blocks taken after the resume was
  sent are not expected twice). Until that root entry, entries are still
  judged as in flight. A receiver whose traversal finished while paused
  completes on resume without asking again (as go-graphsync's traversal
  does); go-graphsync's requester itself drops what arrives while paused;
* the sender takes a requester's cancel as go-data-transfer's graphsync
  transport does: the request ends and the Manager hears nothing (the
  channel goes on: a pause, or a restart, follows). Until the next request
  for that channel arrives, :meth:`GraphsyncEngine.pause_channel` does
  nothing and :meth:`GraphsyncEngine.resume_channel` sends its message on
  its own. A new request carrying an update, voucher or cancel message is
  the Manager's to judge (``on_request_received``), like any other;
* a responder serves at most ``max_requests_per_peer`` requests of one peer
  at a time; further requests wait in that peer's FIFO queue (as in
  go-graphsync) and are admitted as served ones end; only when the queue
  holds ``max_queued_per_peer`` requests is a new one answered 31 Busy. A
  new request for a channel whose request still waits replaces it (a
  restart whose cancel was lost with the connection); the waiting channels
  are listed (``queued_channels``) so that the Manager does not take this
  node's own queue for its peer's silence;
* a data-transfer message arriving on its own is handed over only after
  every new request the same peer sent before it was served (the Manager
  asked about it), so that a Cancel sent right after opening a channel
  never overtakes the request that opens it;
* a "Complete" data-transfer response arriving on its own for a channel whose
  data request is still live here is held back until that request ends (so
  it never overtakes the last block on the other stream), at most
  :attr:`GraphsyncEngine.complete_hold` seconds.

A receiver writes the blocks it takes in batches: a block the traversal
needed is taken at once (the traversal walks on), and written with the ones
taken after it while more responses for the channel wait on its lane (up to
:attr:`GraphsyncEngine.write_batch_bytes`), in one transaction, in a worker
thread for a store that does I/O (:attr:`Blockstore.blocking_io`); each is
reported to ``on_data_received`` only once it is in the store, in order, so
progress never counts a block the store lacks. Anything else the channel
reports (a data-transfer message, its end) comes after the blocks before it;
a receive failure writes and reports the blocks taken before it first; a
channel that ends otherwise (closed, cancelled, the peer lost) drops the
blocks it had not written, uncounted.

Each channel's work runs in a lane (one item at a time, in arrival order);
every task belongs to :meth:`serve`'s task group. Received block data waiting
in lanes is counted (:attr:`GraphsyncEngine.backlog_bytes`, with
:data:`METADATA_ENTRY_CHARGE` per metadata entry); a stream reader
calls :meth:`GraphsyncEngine.wait_backlog` between frames so a slow receiver
holds the stream back instead of buffering without bound.
:meth:`GraphsyncEngine.peer_lost` ends every channel with a peer whose
connection is gone (``on_disconnected``), as the in-memory network's
disconnect does.

Block events on the sender follow Go's hooks: ``on_data_queued`` as each
block joins the outgoing message, ``on_data_sent`` for all of a message's
blocks once the message was handed to the network; so with several blocks
per message the sender's queued/sent events interleave per message, not per
block (``max_block_bytes=1`` gives one block per message: queued, sent,
queued, sent...).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
import anyio.to_thread

from datatransfer.ipld.block import Block
from datatransfer.ipld.blockstore import BlockNotFound, Blockstore
from datatransfer.ipld.cid import CID
from datatransfer.ipld.selector import BlockRequest, Selector, Traverser, parse_selector
from datatransfer.ipld.selector.ast import selector_to_node
from datatransfer.messages import (
    MessageType,
    TransferRequest,
    TransferResponse,
    from_node,
    to_node,
)
from datatransfer.refusals import Refusals
from datatransfer.types import ChannelID, PeerID
from transport.base import (
    PROCEED,
    Decision,
    PeerUnreachable,
    Transport,
    TransportError,
    TransportEvents,
    UnknownTransportChannel,
)
from transport.budget import PeerWorkBudget
from transport.graphsync.message import (
    EXTENSION_DATA_TRANSFER,
    EXTENSION_DEDUP_BY_KEY,
    EXTENSION_DO_NOT_SEND_CIDS,
    EXTENSION_DO_NOT_SEND_FIRST_BLOCKS,
    MAX_BLOCK_BYTES,
    GraphsyncMessage,
    GraphsyncRequest,
    GraphsyncResponse,
    GraphsyncWireError,
    LinkMetadatum,
    decode_dedup_key,
    decode_do_not_send_cids,
    decode_do_not_send_first_blocks,
    decode_message,
    encode_dedup_key,
    encode_do_not_send_cids,
    encode_do_not_send_first_blocks,
)
from transport.graphsync.status import LinkAction, RequestType, ResponseStatus
from transport.walk import (
    STEP,
    MissingBlock,
    next_to_receive,
    next_to_send,
    resume_receive,
    skip_rest,
    take_skipped,
)
from transport.walk import Receiving as _Receiver
from transport.walk import Sending as _Sender
from transport.walk import Walk as _Channel

if TYPE_CHECKING:
    from anyio.abc import TaskGroup, TaskStatus

__all__ = [
    "DEFAULT_MAX_BACKLOG_BYTES",
    "DEFAULT_MAX_REQUESTS_PER_PEER",
    "EXTENSION_ERROR",
    "GraphsyncEngine",
    "SendDT",
    "SendGS",
]

log = logging.getLogger(__name__)

#: Private extension on a failed response: why it failed (text).
EXTENSION_ERROR = "py-data-transfer/error"

DEFAULT_MAX_REQUESTS_PER_PEER = 16
DEFAULT_MAX_QUEUED_PER_PEER = 1024
DEFAULT_MAX_BACKLOG_BYTES = 16 * 1024 * 1024
#: Received block bytes a receiver writes in one transaction at most (see
#: the module docs): 16 blocks of 256 KiB.
DEFAULT_WRITE_BATCH_BYTES = 4 * 1024 * 1024
#: Metadata entries per outgoing message. Block bytes alone do not bound a
#: message: blocks announced but not sent add none, and tiny blocks add little
#: data per entry. 16384 entries (about 0.7-1.3 MiB of metadata) plus 512 KiB
#: of blocks stay well under the 4 MiB frame limit.
DEFAULT_MAX_LINKS_PER_MESSAGE = 16384
#: What one received metadata entry is charged to the backlog: about its
#: decoded size in memory (a CID and its action). A restart of a huge DAG
#: brings entries only (every skipped block is announced, none sent), so
#: block bytes alone would let them queue without bound.
METADATA_ENTRY_CHARGE = 320
#: Work (clause evaluations, see :mod:`datatransfer.ipld.selector.traversal`)
#: one traversal may do without reaching a block before its request ends:
#: about a second of one core, and thousands of times what walking between
#: two blocks of a UnixFS file or a dag-cbor tree takes.
DEFAULT_MAX_WORK_WITHOUT_BLOCK = 500_000
#: Work after which a traversal lets other tasks run (a few milliseconds).
DEFAULT_STEP_WORK = 2_000
#: CIDs a receiver lists in ``graphsync/do-not-send-cids`` at most (about
#: 150 KB): blocks it holds past the first one it lacks (see ``skip_held``).
MAX_DO_NOT_SEND_CIDS = 4096

SendGS = Callable[[PeerID, GraphsyncMessage], Awaitable[None]]
SendDT = Callable[[PeerID, Any], Awaitable[None]]


@dataclass
class EngineStats:
    requests_sent: int = 0
    requests_served: int = 0
    busy_refused: int = 0
    queued: int = 0
    rejected_malformed: int = 0
    messages_sent: int = 0
    messages_received: int = 0
    bad_frames: int = 0
    #: Traversals ended because their peer's work budget was spent.
    work_refused: int = 0
    #: Work items that raised (each logged; the channel's request ended).
    lane_errors: int = 0
    #: Bytes of block data handed to the network in responses, and taken
    #: from it: every copy, so a block sent again (after a restart) counts
    #: again. What moved, beside what the channels count once.
    block_bytes_sent: int = 0
    block_bytes_received: int = 0


class _Charge:
    """Received block bytes queued on lanes: released when the last of the
    message's work items has run."""

    __slots__ = ("engine", "size", "left")

    def __init__(self, engine: GraphsyncEngine, size: int, items: int) -> None:
        self.engine = engine
        self.size = size
        self.left = items

    async def run(self, fn: Callable[..., Awaitable[None]], *args: Any) -> None:
        try:
            await fn(*args)
        finally:
            self.left -= 1
            if self.left == 0:
                self.engine._release_backlog(self.size)


class _ResponseItem(partial):
    """A lane item handling a response (blocks taken by the one before it
    may wait for it, to be written together)."""

    __slots__ = ()


class _Lane:
    __slots__ = ("items", "running")

    def __init__(self) -> None:
        self.items: deque[Callable[[], Awaitable[None]]] = deque()
        self.running = False


class _GsReceiver(_Receiver):
    """The receiver's walk plus what a go-graphsync style pause needs: the
    request to send again on resume, and where the sender's entries stand
    against the traversal (see the module docs)."""

    __slots__ = ("request", "paused", "resumed", "awaiting_walk", "replay", "unstored",
                 "unstored_bytes")

    def __init__(
        self, channel_id: ChannelID, peer: PeerID, request: GraphsyncRequest,
        traverser: Traverser, skip_blocks: int,
    ) -> None:
        super().__init__(channel_id, peer, request.id, traverser, skip_blocks)
        #: Sent again (same id, extensions replaced) on resume.
        self.request = request
        #: This side cancelled the request to pause: in-flight entries only.
        self.paused = False
        #: Resumed at least once: a root entry out of place starts a new walk.
        self.resumed = False
        #: Resumed, and the new walk's root entry has not arrived yet.
        self.awaiting_walk = False
        #: Position (1-based) of the last entry in a new walk whose entries
        #: are still at blocks the traversal already holds; None otherwise.
        self.replay: int | None = None
        #: Blocks taken, not yet written nor reported: (block, index, whether
        #: the response carrying it ended the request); and their bytes.
        self.unstored: list[tuple[Block, int, bool]] = []
        self.unstored_bytes = 0

    @property
    def lenient(self) -> bool:
        """Entries may belong to the cancelled request: drop, do not fail."""
        return self.paused or self.awaiting_walk


def _opens(message: Any) -> bool:
    """Whether a request's data-transfer message opens its channel (a pull's
    New request, a push responder's acceptance of a New one)."""
    return (isinstance(message, (TransferRequest, TransferResponse))
            and message.type == MessageType.New)


def _dt_from(extensions: dict[str, Any]) -> Any:
    """The data-transfer message of an extension map, None if absent;
    raises ValueError if malformed."""
    if EXTENSION_DATA_TRANSFER not in extensions:
        return None
    return from_node(extensions[EXTENSION_DATA_TRANSFER])


class GraphsyncEngine(Transport):
    """Graphsync requester + responder for one node; see the module docs."""

    supports_pause = True
    #: See :data:`DEFAULT_MAX_LINKS_PER_MESSAGE` (an instance may lower it).
    max_links_per_message = DEFAULT_MAX_LINKS_PER_MESSAGE

    def __init__(
        self,
        peer_id: PeerID,
        blockstore: Blockstore,
        send: SendGS,
        send_dt: SendDT,
        *,
        max_requests_per_peer: int = DEFAULT_MAX_REQUESTS_PER_PEER,
        max_queued_per_peer: int = DEFAULT_MAX_QUEUED_PER_PEER,
        max_block_bytes: int = MAX_BLOCK_BYTES,
        complete_hold: float = 2.0,
        max_backlog_bytes: int = DEFAULT_MAX_BACKLOG_BYTES,
        max_work_without_block: int | None = DEFAULT_MAX_WORK_WITHOUT_BLOCK,
        step_work: int | None = DEFAULT_STEP_WORK,
        peer_work: PeerWorkBudget | None = None,
        write_batch_bytes: int = DEFAULT_WRITE_BATCH_BYTES,
        skip_held: bool = True,
    ) -> None:
        self._peer_id = PeerID(peer_id)
        #: Opening a data request, ask the sender not to send the blocks the
        #: store holds already (see :meth:`open_channel`).
        self.skip_held = skip_held
        #: See :data:`DEFAULT_WRITE_BATCH_BYTES`.
        self.write_batch_bytes = write_batch_bytes
        self.max_work_without_block = max_work_without_block
        self.step_work = step_work
        #: What each peer's selectors may cost (see :mod:`transport.budget`).
        self.peer_work = peer_work if peer_work is not None else PeerWorkBudget()
        #: Received block bytes (and metadata entries) queued and not yet
        #: handled; see :meth:`wait_backlog`.
        self.backlog_bytes = 0
        self.max_backlog_bytes = max_backlog_bytes
        self._backlog_drained: anyio.Event | None = None
        self.blockstore = blockstore
        self._send_gs = send
        self._send_dt = send_dt
        self.max_requests_per_peer = max_requests_per_peer
        self.max_queued_per_peer = max_queued_per_peer
        self.max_block_bytes = max_block_bytes
        self.complete_hold = complete_hold
        self.stats = EngineStats()
        #: Inputs refused, by kind (logged without floods).
        self.refusals = Refusals(log)
        self._tg: TaskGroup | None = None
        self._events: TransportEvents | None = None
        self._channels: dict[ChannelID, _Channel] = {}
        self._outgoing: dict[bytes, _GsReceiver] = {}
        self._incoming: dict[tuple[PeerID, bytes], _Sender] = {}
        #: New requests over a peer's limit, in arrival order.
        self._waiting: dict[PeerID, deque[tuple[ChannelID, GraphsyncRequest]]] = {}
        self._lanes: dict[ChannelID, _Lane] = {}
        self._held: dict[ChannelID, list[tuple[PeerID, Any]]] = {}
        #: New requests from each peer queued on lanes and not served yet:
        #: set as each is served (a peer's later messages wait for them).
        self._unserved: dict[PeerID, set[anyio.Event]] = {}
        #: Channels we send whose requester cancelled the data request (a
        #: go-graphsync requester's pause): the peer, until the next request
        #: or the channel's cleanup.
        self._parked: dict[ChannelID, PeerID] = {}

    # -- introspection -------------------------------------------------------------

    @property
    def peer_id(self) -> PeerID:
        return self._peer_id

    @property
    def active_channels(self) -> frozenset[ChannelID]:
        return frozenset(self._channels)

    @property
    def queued_channels(self) -> frozenset[ChannelID]:
        """Channels whose request waits in this node's per-peer queue: their
        wait is this node's, not their peer's (the Manager's no-progress
        timeout leaves them alone)."""
        return frozenset(chid for waiting in self._waiting.values() for chid, _ in waiting)

    def resources(self) -> dict[str, int]:
        return {
            "channels": len(self._channels),
            "outgoing": len(self._outgoing),
            "incoming": len(self._incoming),
            "lanes": len(self._lanes),
            "held": len(self._held),
            "waiting": sum(len(w) for w in self._waiting.values()),
            "parked": len(self._parked),
        }

    def is_idle(self) -> bool:
        """No channel state left (connections and streams do not count)."""
        return not any(GraphsyncEngine.resources(self).values())

    # -- serving -------------------------------------------------------------------

    async def serve(
        self, events: TransportEvents, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        if self._tg is not None:
            raise RuntimeError("already serving")
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                self._events = events
                task_status.started()
                try:
                    await anyio.sleep_forever()
                finally:
                    # not serving from here on: what arrives while the task
                    # group winds down (it takes no new tasks) is dropped, as
                    # if the node were already gone, not raised into its sender
                    self._tg = None
                    self._stopping()
        finally:
            self._tg = None
            self._events = None

    def _stopping(self) -> None:
        # nothing new starts: the task group takes no more tasks (a peer
        # lost meanwhile, as another node stops, finds it closed)
        self._tg = None
        for state in self._channels.values():
            state.traverser.close()
        self._channels.clear()
        self._outgoing.clear()
        self._incoming.clear()
        self._waiting.clear()
        self._lanes.clear()
        self._held.clear()
        self._parked.clear()
        self._unserved.clear()
        self.backlog_bytes = 0
        if self._backlog_drained is not None:
            self._backlog_drained.set()
            self._backlog_drained = None

    def _require_serving(self) -> TaskGroup:
        if self._tg is None:
            raise PeerUnreachable(f"transport {self._peer_id} is not running")
        return self._tg

    # -- work budgets --------------------------------------------------------------

    def _traverser(self, root: CID, selector: Selector, skip: int) -> Traverser:
        return Traverser(
            root, selector, skip_first_blocks=skip, verify=False, visits=False,
            max_work_without_block=self.max_work_without_block, step_work=self.step_work,
        )

    def _charge_work(self, state: _Channel) -> str | None:
        """Charge the traversal's new idle work to its peer's budget; an
        error text when the budget is spent (the request then ends)."""
        idle = state.traverser.idle_work
        spent = idle - state.charged_work
        if spent <= 0:
            return None
        state.charged_work = idle
        if self.peer_work.take(bytes(state.peer), spent, anyio.current_time()):
            return None
        self.stats.work_refused += 1
        self.refusals.refuse("work-budget", f"traversal for {state.channel_id} ended: the "
                             f"selectors of {state.peer} spent their work budget")
        return (f"traversal budget exceeded: the selectors of peer {state.peer} walked "
                f"without reaching blocks for more than this node allows "
                f"({self.peer_work.capacity} clause evaluations, "
                f"{self.peer_work.rate:g} more per second)")

    async def _walk_on(self, state: _GsReceiver, result: str | None) -> bool:
        """Finish a receiver's walk step (``result``: what the step returned):
        charge its work, and while it returns STEP let other tasks run and
        walk on. True when the receiver goes on; False when the channel ended
        meanwhile, or the walk failed (the channel is then failed here)."""
        while True:
            error = self._charge_work(state)
            if error is not None or result is not STEP:
                break
            await anyio.lowlevel.checkpoint()
            if not self._current(state):
                return False
            result = resume_receive(state, self.blockstore)
        error = error if error is not None else result
        if not self._current(state):
            return False
        if error is not None:
            await self._receive_failed(state, error)
            return False
        return True

    # -- lanes ---------------------------------------------------------------------

    def _enqueue(self, chid: ChannelID, run: Callable[[], Awaitable[None]]) -> None:
        if self._tg is None:
            return
        lane = self._lanes.get(chid)
        if lane is None:
            lane = self._lanes[chid] = _Lane()
        lane.items.append(run)
        if not lane.running:
            lane.running = True
            self._tg.start_soon(self._run_lane, chid, lane)

    async def _run_lane(self, chid: ChannelID, lane: _Lane) -> None:
        try:
            while lane.items:
                run = lane.items.popleft()
                try:
                    if not isinstance(run, _ResponseItem):
                        state = self._channels.get(chid)
                        if isinstance(state, _GsReceiver) and state.unstored:
                            await self._store_received(state)  # before anything else it reports
                    await run()
                except Exception as exc:  # noqa: BLE001 - the boundary: see _lane_failed
                    self._lane_failed(chid, exc)
        finally:
            lane.running = False
            if self._lanes.get(chid) is lane:
                del self._lanes[chid]

    def _lane_failed(self, key: Any, exc: Exception) -> None:
        """A work item raised: whatever a peer sent, it must not end the
        node. The error is counted and logged; if the lane is a channel's,
        its data request ends and the Manager hears of it as a data error
        (its callbacks have their own boundary, so that cannot raise)."""
        self.stats.lane_errors += 1
        log.debug("graphsync work for %s failed", key, exc_info=exc)
        self.refusals.refuse("error", f"graphsync work for {key} failed: {exc!r}")
        state = self._channels.get(key) if isinstance(key, ChannelID) else None
        if state is None or self._events is None:
            return
        self._remove(state)
        notify = (self._events.on_receive_data_error if isinstance(state, _Receiver)
                  else self._events.on_send_data_error)
        self._enqueue(key, partial(notify, key, f"data transfer failed: {exc!r}"))

    # -- state helpers -------------------------------------------------------------

    def _current(self, state: _Channel) -> bool:
        return self._channels.get(state.channel_id) is state

    def _remove(self, state: _Channel) -> None:
        if self._channels.get(state.channel_id) is state:
            del self._channels[state.channel_id]
        if isinstance(state, _Receiver):
            if self._outgoing.get(state.request_id) is state:
                del self._outgoing[state.request_id]
            if isinstance(state, _GsReceiver) and state.unstored:
                state.unstored = []  # never written, never counted
                self._release_backlog(state.unstored_bytes)
                state.unstored_bytes = 0
        else:
            key = (state.peer, state.request_id)
            if self._incoming.get(key) is state:
                del self._incoming[key]
                self._admit_waiting(state.peer)
        state.traverser.close()
        held = self._held.pop(state.channel_id, None)
        if held:
            for sender, message in held:
                self._enqueue(state.channel_id, partial(self._deliver_message, sender, message))

    async def _send(self, peer: PeerID, msg: GraphsyncMessage) -> None:
        await self._send_gs(peer, msg)
        self.stats.messages_sent += 1
        if msg.blocks:
            self.stats.block_bytes_sent += msg.block_bytes

    async def _try_send(self, peer: PeerID, msg: GraphsyncMessage) -> bool:
        try:
            await self._send(peer, msg)
        except TransportError as exc:
            log.debug("send to %s failed: %s", peer, exc)
            return False
        return True

    async def _send_or_lose(
        self, state: _Channel, msg: GraphsyncMessage | None = None, *, dt: Any = None
    ) -> bool:
        """Send for a live channel a graphsync message, or (``dt=``) a
        data-transfer message on its own; on failure the channel ends with
        on_disconnected. Returns whether it was sent."""
        try:
            if msg is not None:
                await self._send(state.peer, msg)
            else:
                await self._send_dt(state.peer, dt)
        except TransportError as exc:
            if self._current(state):
                self._remove(state)
                assert self._events is not None
                await self._events.on_disconnected(state.channel_id, str(exc))
            return False
        return True

    @staticmethod
    def _response(
        state: _Channel,
        status: ResponseStatus,
        *,
        message: Any = None,
        error: str | None = None,
        metadata: tuple[LinkMetadatum, ...] = (),
        blocks: tuple[Block, ...] = (),
    ) -> GraphsyncMessage:
        ext: dict[str, Any] = {}
        if message is not None:
            ext[EXTENSION_DATA_TRANSFER] = to_node(message)
        if error is not None:
            ext[EXTENSION_ERROR] = error
        rsp = GraphsyncResponse(state.request_id, status, metadata, ext)
        return GraphsyncMessage(responses=(rsp,), blocks=blocks)

    @staticmethod
    def _update(state: _Channel, *, message: Any = None) -> GraphsyncMessage:
        ext: dict[str, Any] = {}
        if message is not None:
            ext[EXTENSION_DATA_TRANSFER] = to_node(message)
        return GraphsyncMessage(requests=(GraphsyncRequest.update(state.request_id, ext),))

    # -- inbound -------------------------------------------------------------------

    def handle_frame(self, sender: PeerID, payload: bytes | list[bytes]) -> None:
        """Decode one frame payload from ``sender`` (its bytes, or its
        pieces: see :func:`~transport.graphsync.message.decode_message`) and
        handle it; a frame that does not decode is counted and dropped
        (raises :class:`GraphsyncWireError` so the caller can reset the stream)."""
        try:
            msg = decode_message(payload)
        except GraphsyncWireError:
            self.stats.bad_frames += 1
            raise
        self.handle_message(sender, msg)

    def handle_message(self, sender: PeerID, msg: GraphsyncMessage) -> None:
        """Handle one graphsync message from ``sender`` (synchronous: the
        work is queued on the channels' lanes, in order)."""
        if self._tg is None:
            return
        sender = PeerID(sender)
        self.stats.messages_received += 1
        if msg.blocks:
            self.stats.block_bytes_received += msg.block_bytes
        for req in msg.requests:
            if req.type is RequestType.NEW:
                self._on_new_request(sender, req)
                continue
            state = self._incoming.get((sender, req.id))
            if state is None:
                if req.type is RequestType.CANCEL:
                    self._drop_waiting(sender, req.id)
                continue
            if req.type is RequestType.CANCEL:
                self._enqueue(state.channel_id, partial(self._on_cancel, state))
            else:
                self._enqueue(state.channel_id, partial(self._on_update, state, req))
        if msg.responses:
            blocks = {b.cid: b for b in msg.blocks if isinstance(b, Block)}
            work = []
            for rsp in msg.responses:
                state = self._outgoing.get(rsp.request_id)
                if state is None or state.peer != sender:
                    continue
                work.append((state, rsp))
            if not work:
                return
            entries = sum(len(rsp.metadata) for _, rsp in work)
            charge = _Charge(self, msg.block_bytes + METADATA_ENTRY_CHARGE * entries, len(work))
            self.backlog_bytes += charge.size
            for state, rsp in work:
                self._enqueue(
                    state.channel_id,
                    _ResponseItem(charge.run, self._on_response, state, rsp, blocks),
                )

    async def wait_backlog(self) -> None:
        """Wait while more than :attr:`max_backlog_bytes` of received block
        data is queued, not yet handled (a reader calls this between frames,
        so a slow receiver holds the stream back instead of buffering)."""
        while self.backlog_bytes > self.max_backlog_bytes and self._tg is not None:
            if self._backlog_drained is None:
                self._backlog_drained = anyio.Event()
            await self._backlog_drained.wait()

    def _release_backlog(self, size: int) -> None:
        # (never below 0: stopping zeroes it while work is still unwinding)
        self.backlog_bytes = max(0, self.backlog_bytes - size)
        if self.backlog_bytes <= self.max_backlog_bytes and self._backlog_drained is not None:
            self._backlog_drained.set()
            self._backlog_drained = None

    def handle_dt_message(self, sender: PeerID, message: Any) -> None:
        """A data-transfer message arrived on its own (not with data)."""
        if self._tg is None:
            return
        sender = PeerID(sender)
        chid = self._related_live_channel(sender, message)
        if chid is not None and self.complete_hold > 0:
            held = self._held.setdefault(chid, [])
            held.append((sender, message))
            if len(held) == 1:
                self._tg.start_soon(self._release_held, chid, self._channels[chid])
            return
        # after the requests the same peer sent before it (a Cancel must not
        # overtake the request that opens its channel)
        earlier = tuple(self._unserved.get(sender, ()))
        key: Any = ("msg", sender)
        self._enqueue(key, partial(self._deliver_after, earlier, sender, message))

    def _related_live_channel(self, sender: PeerID, message: Any) -> ChannelID | None:
        if not isinstance(message, TransferResponse) or not message.is_complete:
            return None
        for chid in (
            ChannelID(self._peer_id, sender, message.transfer_id),
            ChannelID(sender, self._peer_id, message.transfer_id),
        ):
            state = self._channels.get(chid)
            if state is not None and state.peer == sender:
                return chid
        return None

    async def _release_held(self, chid: ChannelID, state: _Channel) -> None:
        await anyio.sleep(self.complete_hold)
        if self._channels.get(chid) is state:
            held = self._held.pop(chid, None)
            for sender, message in held or ():
                self._enqueue(chid, partial(self._deliver_message, sender, message))

    def peer_lost(self, peer: PeerID, reason: str) -> None:
        """The connection with ``peer`` is gone: every channel with it ends
        with ``on_disconnected`` (on its lane, unless a newer request
        replaced it by then); then ``on_peer_lost`` names those, so that
        the Manager tells the peer's other channels too."""
        peer = PeerID(peer)
        self._waiting.pop(peer, None)
        for key in [k for k, s in self._incoming.items() if s.peer == peer]:
            state = self._incoming[key]
            if not self._current(state):
                del self._incoming[key]  # admitted, never served
                state.traverser.close()
        notified: set[ChannelID] = set()
        for state in [s for s in self._channels.values() if s.peer == peer]:
            self._remove(state)
            notified.add(state.channel_id)
            self._enqueue(state.channel_id, partial(self._notify_disconnected, state, reason))
        for chid in [c for c, p in self._parked.items() if p == peer]:
            del self._parked[chid]
            notified.add(chid)
            self._enqueue(chid, partial(self._notify_parked_lost, chid, reason))
        # and the channels with that peer this engine holds nothing for
        key: Any = ("peer-lost", peer)
        self._enqueue(key, partial(self._notify_peer_lost, peer, reason, frozenset(notified)))

    async def _notify_peer_lost(self, peer: PeerID, reason: str,
                                notified: frozenset[ChannelID]) -> None:
        assert self._events is not None
        await self._events.on_peer_lost(peer, reason, notified)

    async def _notify_parked_lost(self, chid: ChannelID, reason: str) -> None:
        assert self._events is not None
        if chid not in self._channels:  # (a new request did not take its place)
            await self._events.on_disconnected(chid, reason)

    async def _notify_disconnected(self, state: _Channel, reason: str) -> None:
        assert self._events is not None
        current = self._channels.get(state.channel_id)
        if current is not None and current is not state:
            return  # a newer request (a restart) replaced it: old news
        await self._events.on_disconnected(state.channel_id, reason)

    async def _deliver_after(self, earlier: tuple[anyio.Event, ...], sender: PeerID,
                             message: Any) -> None:
        for served in earlier:
            await served.wait()
        await self._deliver_message(sender, message)

    async def _deliver_message(self, sender: PeerID, message: Any) -> None:
        assert self._events is not None
        await self._events.on_message(sender, message)

    # -- the data sender (graphsync responder) -------------------------------------

    def _on_new_request(self, sender: PeerID, req: GraphsyncRequest) -> None:
        assert self._tg is not None
        try:
            message = _dt_from(req.extensions)
            if message is None:
                raise ValueError("no data-transfer extension")
            if isinstance(message, TransferRequest):
                chid = ChannelID(sender, self._peer_id, message.transfer_id)
            else:
                chid = ChannelID(self._peer_id, sender, message.transfer_id)
            skip = 0
            if EXTENSION_DO_NOT_SEND_FIRST_BLOCKS in req.extensions:
                skip = decode_do_not_send_first_blocks(
                    req.extensions[EXTENSION_DO_NOT_SEND_FIRST_BLOCKS]
                )
            dont_send: frozenset[CID] = frozenset()
            if EXTENSION_DO_NOT_SEND_CIDS in req.extensions:
                dont_send = decode_do_not_send_cids(req.extensions[EXTENSION_DO_NOT_SEND_CIDS])
            if EXTENSION_DEDUP_BY_KEY in req.extensions:
                decode_dedup_key(req.extensions[EXTENSION_DEDUP_BY_KEY])  # checked; see module docs
            if req.root is None:
                raise ValueError("no root")
            selector = parse_selector(req.selector)
        except Exception as exc:  # noqa: BLE001 - anything malformed is refused
            self.stats.rejected_malformed += 1
            self.refusals.refuse("malformed-request",
                                 f"refused a graphsync request from {sender}: {exc}")
            self._tg.start_soon(self._refuse, sender, req.id, ResponseStatus.REJECTED, str(exc))
            return
        active = sum(1 for s in self._incoming.values() if s.peer == sender)
        old = self._channels.get(chid)
        if isinstance(old, _Sender) and old.peer == sender:
            active -= 1  # a restart replaces it
        if active >= self.max_requests_per_peer:
            waiting = self._waiting.setdefault(sender, deque())
            if any(c == chid for c, _ in waiting):
                # a restart replaces its channel's request still waiting (its
                # requester gave up on it: a cut connection, a timeout), so a
                # peer that restarts many channels at once does not fill the
                # queue with requests nobody awaits
                waiting = self._waiting[sender] = deque(w for w in waiting if w[0] != chid)
            if len(waiting) < self.max_queued_per_peer:
                waiting.append((chid, req))  # admitted when a served request ends
                self.stats.queued += 1
                return
            self.stats.busy_refused += 1
            self._tg.start_soon(
                self._refuse, sender, req.id, ResponseStatus.BUSY,
                f"{self.max_requests_per_peer} requests in progress and "
                f"{self.max_queued_per_peer} waiting",
            )
            return
        traverser = self._traverser(req.root, selector, skip)
        state = _Sender(chid, sender, req.id, traverser, dont_send)
        state.selector_node = req.selector
        state.opens = _opens(message)
        # Admitted now (counts against the limit); serving waits for its lane.
        self._incoming[(sender, req.id)] = state
        served = anyio.Event()
        self._unserved.setdefault(sender, set()).add(served)
        self._enqueue(chid, partial(self._serve_request, state, message, served))

    async def _serve_request(self, state: _Sender, message: Any, served: anyio.Event) -> None:
        """:meth:`_on_request`, then release the peer's messages that arrived
        after this request (see :meth:`handle_dt_message`)."""
        try:
            await self._on_request(state, message)
        finally:
            served.set()
            unserved = self._unserved.get(state.peer)
            if unserved is not None:
                unserved.discard(served)
                if not unserved:
                    del self._unserved[state.peer]

    def _admit_waiting(self, peer: PeerID) -> None:
        """A served request of ``peer`` ended: admit the oldest waiting one."""
        waiting = self._waiting.get(peer)
        if not waiting:
            return
        _, req = waiting.popleft()
        if not waiting:
            del self._waiting[peer]
        self._on_new_request(peer, req)

    def _drop_waiting(self, peer: PeerID, rid: bytes) -> None:
        waiting = self._waiting.get(peer)
        if waiting:
            self._waiting[peer] = deque(w for w in waiting if w[1].id != rid)

    async def _refuse(self, peer: PeerID, rid: bytes, status: ResponseStatus, why: str) -> None:
        msg = GraphsyncMessage(
            responses=(GraphsyncResponse(rid, status, (), {EXTENSION_ERROR: why}),)
        )
        await self._try_send(peer, msg)

    async def _on_request(self, state: _Sender, message: Any) -> None:
        events = self._events
        assert events is not None
        sender, chid = state.peer, state.channel_id
        if self._incoming.get((sender, state.request_id)) is not state:
            state.traverser.close()
            return  # cancelled before it was served
        old = self._channels.get(chid)
        if old is not None:
            if old.peer != sender:
                del self._incoming[(sender, state.request_id)]
                state.traverser.close()
                await self._refuse(sender, state.request_id, ResponseStatus.REJECTED,
                                   "channel id in use")
                return
            self._remove(old)
        self._channels[chid] = state
        self._parked.pop(chid, None)
        self.stats.requests_served += 1
        decision: Decision = await events.on_request_received(
            chid, sender, message, state.traverser.root, state.selector_node) or PROCEED
        if not self._current(state):
            return
        if not decision.accept:
            self._remove(state)
            await self._try_send(
                sender,
                self._response(state, ResponseStatus.REJECTED, message=decision.message,
                               error="request rejected"),
            )
            return
        if decision.message is not None:
            msg = self._response(state, ResponseStatus.PARTIAL_RESPONSE, message=decision.message)
            if not await self._send_or_lose(state, msg):
                return
        state.pumping = True
        if decision.pause:
            state.local_hold = True
            if not await self._send_or_lose(state, self._response(state, ResponseStatus.PAUSED)):
                return
        self._kick(state)

    async def _on_cancel(self, state: _Sender) -> None:
        if not self._current(state):
            self._remove(state)  # not served yet: it never will be
            return
        self._remove(state)
        # As go-data-transfer's graphsync transport: no event, the channel
        # goes on (a go-graphsync requester pauses this way; see the module docs).
        self._parked[state.channel_id] = state.peer

    async def _on_update(self, state: _Sender, req: GraphsyncRequest) -> None:
        ext = req.extensions
        try:
            message = _dt_from(ext)
        except Exception as exc:  # noqa: BLE001
            self.refusals.refuse("malformed-update",
                                 f"malformed data-transfer extension from {state.peer}: {exc}")
            message = None
        if message is not None:
            assert self._events is not None
            await self._events.on_message(state.peer, message)

    def _kick(self, state: _Sender) -> None:
        if state.pumping and not state.held and not state.pump_active and self._current(state):
            state.pump_active = True
            self._enqueue(state.channel_id, partial(self._pump, state))

    async def _pump(self, state: _Sender) -> None:
        """One step: decide on blocks until a batch of max_block_bytes is
        ready (or something holds the channel), send it, report it sent."""
        events = self._events
        assert events is not None
        chid = state.channel_id
        if not self._current(state):
            return
        batch: list[tuple[BlockRequest, bytes | None]] = []
        batch_bytes = 0
        finished: str | None | bool = False  # False: not finished
        while True:
            if state.held:
                break
            if state.pending is None:
                step = next_to_send(state.traverser, self.blockstore, with_skipped=True)
                over = self._charge_work(state)
                if over is not None:
                    finished = over
                    break
                if step is STEP:
                    break  # send what is batched; the next step runs after others
                if not isinstance(step, tuple):
                    finished = step
                    break
                state.pending = step
                state.decided = False
            request, data = state.pending
            if len(batch) >= self.max_links_per_message:
                break
            if not request.send or (state.dont_send and request.cid in state.dont_send):
                # skipped on restart or listed: announced, not sent, no progress
                # events, no bytes; a restart's skipped block is reported apart
                # (the receiver holds it: sent before, maybe before a crash)
                batch.append((request, None))
                state.pending = None
                if not request.send and not state.opens:
                    await events.on_data_skipped(chid, request.cid, len(data), request.index + 1)
                    if not self._current(state):
                        return
                continue
            if batch and (state.short_batch or batch_bytes + len(data) > self.max_block_bytes):
                break
            if not state.decided:
                decision: Decision = (
                    await events.on_data_queued(chid, request.cid, len(data), request.index + 1)
                    or PROCEED
                )
                if not self._current(state):
                    return
                if decision.message is not None:
                    if batch and not await self._flush(state, batch):
                        return
                    batch, batch_bytes = [], 0
                    msg = self._response(state, ResponseStatus.PARTIAL_RESPONSE,
                                         message=decision.message)
                    if not await self._send_or_lose(state, msg):
                        return
                if not decision.accept:
                    self._remove(state)
                    if batch:
                        await self._flush(state, batch, live=False)
                    await self._try_send(
                        state.peer,
                        self._response(state, ResponseStatus.CANCELLED,
                                       error="cancelled by the data sender"),
                    )
                    return
                state.decided = True
                if decision.pause:
                    state.local_hold = True
            if state.held:
                break
            batch.append((request, data))
            batch_bytes += len(data)
            state.pending = None
            state.decided = False
        if finished is not False:
            self._remove(state)
            if isinstance(finished, MissingBlock) and finished.index == 0:
                # go-graphsync: the first load failed -> RequestFailedContentNotFound,
                # the root announced as missing
                finished = f"content not found: {finished.cid} is not held here"
                msg = self._response(
                    state, ResponseStatus.CONTENT_NOT_FOUND, error=finished,
                    metadata=(LinkMetadatum(state.traverser.root, LinkAction.MISSING),))
            else:
                status = (ResponseStatus.COMPLETED_FULL if finished is None
                          else ResponseStatus.UNKNOWN)
                msg = self._batch_message(state, batch, status, error=finished)
            try:
                await self._send(state.peer, msg)
            except TransportError as exc:
                await events.on_disconnected(chid, str(exc))
                return
            for request, data in batch:
                if data is not None:
                    await events.on_data_sent(chid, request.cid, len(data), request.index + 1)
            await events.on_channel_completed(chid, finished)
            return
        if batch:
            if not await self._flush(state, batch):
                return
            state.short_batch = False
        if not self._current(state):
            return
        if state.held:
            state.pump_active = False
            if state.local_hold:
                await self._send_or_lose(state, self._response(state, ResponseStatus.PAUSED))
            return
        self._enqueue(chid, partial(self._pump, state))
        await anyio.lowlevel.checkpoint()

    def _batch_message(
        self, state: _Sender, batch: list[tuple[BlockRequest, bytes | None]],
        status: ResponseStatus, error: str | None = None,
    ) -> GraphsyncMessage:
        # A block not sent (data None) is announced "p" all the same, as Go does.
        meta = tuple(LinkMetadatum(r.cid, LinkAction.PRESENT) for r, _ in batch)
        seen: dict[CID, Block] = {}
        for r, data in batch:
            if data is not None and r.cid not in seen:
                seen[r.cid] = Block._hashed(r.cid, data)
        return self._response(state, status, error=error, metadata=meta,
                              blocks=tuple(seen.values()))

    async def _flush(
        self, state: _Sender, batch: list[tuple[BlockRequest, bytes | None]], *, live: bool = True
    ) -> bool:
        msg = self._batch_message(state, batch, ResponseStatus.PARTIAL_RESPONSE)
        if live:
            if not await self._send_or_lose(state, msg):
                return False
        elif not await self._try_send(state.peer, msg):
            return False
        assert self._events is not None
        for request, data in batch:
            if data is not None:
                await self._events.on_data_sent(
                    state.channel_id, request.cid, len(data), request.index + 1
                )
        return True

    # -- the data receiver (graphsync requester) -----------------------------------

    async def _start_receiver(self, state: _GsReceiver) -> None:
        assert self._events is not None
        if not self._current(state):
            return
        await self._events.on_channel_opened(state.channel_id)
        if not self._current(state):
            return
        # stop at restart-skipped blocks too: the sender announces them (see _on_response)
        await self._walk_on(state, next_to_receive(state, self.blockstore, stop_at_skipped=True))

    async def _receive_failed(self, state: _GsReceiver, reason: str) -> None:
        assert self._events is not None
        # the blocks taken before what failed are good: written and counted first
        if state.unstored and not await self._store_received(state):
            return  # (the channel ended over one of them)
        self._remove(state)
        if not state.paused:  # (a paused one was cancelled already)
            await self._try_send(
                state.peer, GraphsyncMessage(requests=(GraphsyncRequest.cancel(state.request_id),))
            )
        await self._events.on_receive_data_error(state.channel_id, reason)

    async def _pause_receiver(self, state: _GsReceiver) -> bool:
        """Pause as go-graphsync's requester does: cancel the request, keep
        the traversal (see the module docs). False if the channel was lost."""
        state.local_hold = True
        state.paused = True
        state.awaiting_walk = False
        return await self._send_or_lose(
            state, GraphsyncMessage(requests=(GraphsyncRequest.cancel(state.request_id),))
        )

    async def _resume_receiver(self, state: _GsReceiver, message: Any) -> None:
        """Resume as go-graphsync's requester does: the same request again
        (same id), its data-transfer extension replaced by ``message`` and
        do-not-send-first-blocks = the blocks held; or, if the traversal
        finished meanwhile, complete without asking (``message`` then goes on
        its own)."""
        state.local_hold = False
        if not state.paused:  # never paused by a cancel: the message rides an update
            if message is not None:
                await self._send(state.peer, self._update(state, message=message))
            return
        state.paused = False
        if state.traversal_done:
            if message is not None:
                await self._send_dt(state.peer, message)
            self._enqueue(state.channel_id, partial(self._finish_receiver, state))
            return
        old = state.request
        ext = dict(old.extensions)
        if message is not None:
            ext[EXTENSION_DATA_TRANSFER] = to_node(message)
        if state.last_index:
            ext[EXTENSION_DO_NOT_SEND_FIRST_BLOCKS] = encode_do_not_send_first_blocks(
                state.last_index)
        else:
            ext.pop(EXTENSION_DO_NOT_SEND_FIRST_BLOCKS, None)
        assert old.root is not None
        req = GraphsyncRequest.new(old.root, old.selector, id=old.id, priority=old.priority,
                                   extensions=ext)
        state.request = req
        state.resumed = True
        state.awaiting_walk = True
        await self._send(state.peer, GraphsyncMessage(requests=(req,)))
        self.stats.requests_sent += 1

    async def _finish_receiver(self, state: _GsReceiver) -> None:
        if self._current(state):
            self._remove(state)
            assert self._events is not None
            await self._events.on_channel_completed(state.channel_id, None)

    @staticmethod
    def _rewalked(state: _GsReceiver, link: CID) -> bool:
        """Whether ``link``'s entry belongs to a new walk of a resumed
        request (the sender starts again from the root, announcing what the
        receiver holds) at a block the traversal already holds: it is then
        discarded. Content addressing makes the position check enough: the
        next entry past them must be the expected block, checked as usual."""
        expect = state.expect
        if state.replay is not None:
            state.replay += 1
        elif link == state.request.root and (expect is None or expect.index > 0):
            state.replay = 1
            state.awaiting_walk = False
        else:
            if link == state.request.root:
                state.awaiting_walk = False  # a new walk whose root is what we need
            return False
        if expect is None or state.replay <= expect.index:
            return True
        state.replay = None
        return False

    async def _on_response(
        self, state: _GsReceiver, rsp: GraphsyncResponse, blocks: dict[CID, Block]
    ) -> None:
        events = self._events
        assert events is not None
        chid = state.channel_id
        if not self._current(state):
            return
        try:
            message = _dt_from(rsp.extensions)
        except Exception as exc:  # noqa: BLE001
            await self._receive_failed(state, f"malformed data-transfer extension: {exc}")
            return
        if message is not None:
            if not await self._store_received(state):  # the blocks before it first
                return
            if isinstance(message, TransferResponse):
                await events.on_response_received(chid, message)
            else:
                await events.on_message(state.peer, message)
            if not self._current(state):
                return
        for link, action in rsp.metadata:
            if action is LinkAction.PRESENT:
                block = blocks.get(link)
            elif action is LinkAction.DUPLICATE_NOT_SENT:
                block = None
            else:
                continue
            if state.resumed and self._rewalked(state, link):
                continue
            expect = state.expect
            if state.lenient and (expect is None or link != expect.cid):
                continue  # in flight for the cancelled request, not what comes next: dropped
            if expect is not None and not expect.send:
                # still in the blocks a restart skips (held here, see the module docs);
                # they are loaded from the store, so what was taken is written first
                if not await self._store_received(state):
                    return
                if link == expect.cid:
                    if not await self._walk_on(state, take_skipped(state, self.blockstore)):
                        return
                    continue
                if block is None:
                    await self._receive_failed(
                        state,
                        f"block {link} announced as not sent where the restart skips block "
                        f"{expect.cid} (index {expect.index + 1})",
                    )
                    return
                # a sender that does not announce skipped blocks: the rest are ours to load
                if not await self._walk_on(state, skip_rest(state, self.blockstore)):
                    return
            if block is not None:
                if not await self._on_block(state, block, ended=rsp.status.is_terminal):
                    return
                continue
            # traversed by the sender but not carried: ours to load (see the module docs)
            if not await self._store_received(state) or not await self._on_block_not_sent(
                    state, link):
                return
        status = rsp.status
        if state.unstored and (status.is_terminal or not self._response_queued(chid)):
            if not await self._store_received(state):
                return
        if not status.is_terminal:
            return
        if state.paused:
            # the cancelled request's end: the resume asks again, or completes
            # if everything arrived meanwhile (a pause holds the channel open)
            return
        error = rsp.extensions.get(EXTENSION_ERROR)
        if status is ResponseStatus.CANCELLED:
            self._remove(state)
            await events.on_request_cancelled(chid, str(error or "cancelled by the data sender"))
            return
        if status.is_failure:
            self._remove(state)
            if not error and status is ResponseStatus.CONTENT_NOT_FOUND:
                error = f"content not found: the sender does not hold {state.request.root}"
            await events.on_channel_completed(chid, str(error or status.go_name))
            return
        # all skipped, none announced
        if not await self._walk_on(state, skip_rest(state, self.blockstore)):
            return
        if state.traversal_done:
            self._remove(state)
            await events.on_channel_completed(chid, None)
            return
        expect = state.expect
        missing = "?" if expect is None else f"{expect.cid} (index {expect.index + 1})"
        await self._receive_failed(
            state, f"the sender completed but block {missing} was never received"
        )

    async def _on_block(self, state: _GsReceiver, block: Block, *, ended: bool = False) -> bool:
        """Take a block that arrived: the traversal walks on at once, the
        block is written and counted with the next ones taken (see
        :meth:`_store_received`); ``ended``: the response that carried it
        ends the request on the sender's side, so a message for the sender
        cannot ride an update of the request any more."""
        expect = state.expect
        cid, data = block.cid, block.data
        if expect is None or cid != expect.cid:
            wanted = "nothing" if expect is None else f"{expect.cid} at index {expect.index + 1}"
            await self._receive_failed(state, f"unexpected block {cid} (expected {wanted})")
            return False
        state.last_index = expect.index + 1
        state.expect = None
        state.traverser.provide(data)
        state.unstored.append((block, state.last_index, ended))
        state.unstored_bytes += len(data)
        self.backlog_bytes += len(data)  # held until written (or dropped)
        if state.unstored_bytes >= self.write_batch_bytes and not await self._store_received(
                state):
            return False
        return await self._walk_on(state, next_to_receive(state, self.blockstore))

    def _response_queued(self, chid: ChannelID) -> bool:
        """Whether the channel's lane holds another response next (the
        blocks taken may then wait to be written with its own)."""
        lane = self._lanes.get(chid)
        return lane is not None and bool(lane.items) and isinstance(lane.items[0], _ResponseItem)

    async def _store_received(self, state: _GsReceiver) -> bool:
        """Write the blocks ``state`` took and has not written, in one
        transaction (in a worker thread if the store does I/O), then report
        each to ``on_data_received``, in order, and act on its decision.
        False when the channel ended (here or meanwhile)."""
        batch = state.unstored
        if not batch:
            return self._current(state)
        size = state.unstored_bytes
        state.unstored, state.unstored_bytes = [], 0
        try:
            if self.blockstore.blocking_io:
                await anyio.to_thread.run_sync(self.blockstore.put_many,
                                               [b for b, _, _ in batch])
            else:
                self.blockstore.put_many([b for b, _, _ in batch])
        except Exception as exc:  # noqa: BLE001
            if self._current(state):
                await self._receive_failed(
                    state, f"cannot store block {batch[0][0].cid} (and {len(batch) - 1} "
                    f"after it): {exc}")
            return False
        finally:
            self._release_backlog(size)
        events = self._events
        assert events is not None
        chid = state.channel_id
        for block, index, ended in batch:
            if not self._current(state):
                return False  # the rest are in the store, uncounted (as if never sent)
            decision: Decision = (
                await events.on_data_received(chid, block.cid, len(block.data), index) or PROCEED)
            if not self._current(state):
                return False
            if decision.message is not None:
                if state.paused or ended:  # no live request to carry it: on its own
                    if not await self._send_or_lose(state, dt=decision.message):
                        return False
                elif not await self._send_or_lose(
                        state, self._update(state, message=decision.message)):
                    return False
            if not decision.accept:
                self._remove(state)
                if not state.paused:
                    await self._try_send(
                        state.peer,
                        GraphsyncMessage(requests=(GraphsyncRequest.cancel(state.request_id),)),
                    )
                return False
            if decision.pause and not state.local_hold:
                # the blocks taken after it were in flight: taken all the same
                if not await self._pause_receiver(state):
                    return False
        return True

    async def _on_block_not_sent(self, state: _GsReceiver, cid: CID) -> bool:
        """The sender announced ``cid`` without sending it (the request's
        do-not-send set, or a Go sender's duplicate): take it from the local
        store so the traversal goes on. No received event, nothing arrived:
        it is reported as skipped (held here)."""
        expect = state.expect
        if expect is None or cid != expect.cid:
            wanted = "nothing" if expect is None else f"{expect.cid} at index {expect.index + 1}"
            await self._receive_failed(
                state, f"unexpected block {cid} announced as not sent (expected {wanted})"
            )
            return False
        try:
            data = self.blockstore.get(cid)
        except Exception as exc:  # noqa: BLE001 - BlockNotFound, closed store...
            await self._receive_failed(
                state,
                f"block {cid} (index {expect.index + 1}) was not sent by {state.peer} and is "
                f"not in the local store: {exc}",
            )
            return False
        state.last_index = expect.index + 1
        state.expect = None
        state.traverser.provide(data)
        # held here: part of the channel's progress (counted once, by index)
        await self._events.on_data_skipped(state.channel_id, cid, len(data), state.last_index)
        if not self._current(state):
            return False
        return await self._walk_on(state, next_to_receive(state, self.blockstore))

    # -- Transport API -------------------------------------------------------------

    async def send_message(self, peer: PeerID, message: Any) -> None:
        self._require_serving()
        await self._send_dt(PeerID(peer), message)

    async def open_channel(
        self,
        data_sender: PeerID,
        channel_id: ChannelID,
        root: CID,
        selector: Any,
        message: Any,
        skip_blocks: int = 0,
        *,
        do_not_send: Iterable[CID] = (),
    ) -> None:
        """:meth:`Transport.open_channel`, plus ``do_not_send``: CIDs this
        node already holds, sent as ``graphsync/do-not-send-cids`` so the
        sender walks but does not send them (they are then loaded from
        :attr:`blockstore`; one missing there fails the channel).

        With :attr:`skip_held` (and on every restart of a pull) the walk is
        first run over :attr:`blockstore`: the blocks it holds from the
        start of the walk on are skipped (``do-not-send-first-blocks``) and
        the ones it holds past the first it lacks are listed in
        ``do-not-send-cids``, so a pull run again after its channel was lost,
        or of a DAG held in part or whole, moves only what is missing. The
        blocks held are reported to ``on_data_skipped`` (the receiver's
        progress counts them); the sender counts none of them on a new
        channel, as go-data-transfer's does not."""
        self._require_serving()
        data_sender = PeerID(data_sender)
        dont_send = encode_do_not_send_cids(do_not_send)
        if isinstance(selector, Selector):
            selector_node = selector_to_node(selector)
            parsed = selector
        else:
            selector_node = selector
            parsed = parse_selector(selector)
        held: list[tuple[BlockRequest, int]] = []
        restart = isinstance(message, TransferRequest) and message.type == MessageType.Restart
        if restart or self.skip_held:
            # resume from what this store holds, not only from what the
            # channel recorded (a crash may have lost the last records); and
            # ask for nothing it holds already (an earlier channel's blocks)
            if not restart and not self._holds(root):
                held, later = [], []  # (the usual new pull: nothing to walk)
            elif self.blockstore.blocking_io:
                held, later = await anyio.to_thread.run_sync(
                    self._held_blocks, root, parsed, skip_blocks, self.skip_held)
            else:
                held, later = self._held_blocks(root, parsed, skip_blocks, self.skip_held)
            skip_blocks += len(held)
            if later:
                dont_send = encode_do_not_send_cids([*dont_send, *later])
        traverser = self._traverser(root, parsed, skip_blocks)
        old = self._channels.get(channel_id)
        cancel: tuple[GraphsyncRequest, ...] = ()
        if old is not None:
            if (isinstance(old, _GsReceiver) and old.peer == data_sender and not old.paused
                    and self._outgoing.get(old.request_id) is old):
                # the request it replaces may still wait in the sender's queue
                # (a restart after a timeout): cancel it, as go-data-transfer
                # does, so the queue holds one request per channel, not one
                # more per restart
                cancel = (GraphsyncRequest.cancel(old.request_id),)
            self._remove(old)
        for request, size in held:  # held here: counted unless the channel counted them
            await self._events.on_data_skipped(channel_id, request.cid, size, request.index + 1)
        ext: dict[str, Any] = {EXTENSION_DATA_TRANSFER: to_node(message)}
        if skip_blocks:
            ext[EXTENSION_DO_NOT_SEND_FIRST_BLOCKS] = encode_do_not_send_first_blocks(skip_blocks)
        if dont_send:
            ext[EXTENSION_DO_NOT_SEND_CIDS] = dont_send
        ext[EXTENSION_DEDUP_BY_KEY] = encode_dedup_key(f"data-transfer-{channel_id}")
        req = GraphsyncRequest.new(root, selector_node, extensions=ext)
        state = _GsReceiver(channel_id, data_sender, req, traverser, skip_blocks)
        self._channels[channel_id] = state
        self._outgoing[req.id] = state
        self._enqueue(channel_id, partial(self._start_receiver, state))
        try:
            if cancel:  # (a message of its own: one request per message, as it sends them)
                await self._try_send(data_sender, GraphsyncMessage(requests=cancel))
            await self._send(data_sender, GraphsyncMessage(requests=(req,)))
        except BaseException:
            self._remove(state)
            raise
        self.stats.requests_sent += 1

    def _holds(self, root: CID) -> bool:
        try:
            return self.blockstore.has(root)
        except Exception:  # noqa: BLE001 - a closed store...: nothing held, as far as we know
            return False

    def _held_blocks(self, root: CID, selector: Selector, skip: int,
                     beyond: bool) -> tuple[list[tuple[BlockRequest, int]], list[CID]]:
        """What this store holds of the walk: the blocks after the first
        ``skip`` up to the first one it lacks (with their sizes), and, if
        ``beyond``, the CIDs of blocks it holds past that one (at most
        :data:`MAX_DO_NOT_SEND_CIDS`; blocks under a block it lacks cannot
        be named before that block arrives)."""
        walk = self._traverser(root, selector, 0)
        held: list[tuple[BlockRequest, int]] = []
        later: list[CID] = []
        gap = False
        try:
            while len(later) < MAX_DO_NOT_SEND_CIDS:
                try:
                    event = walk.next()
                except Exception:  # noqa: BLE001 - a budget, an undecodable block: stop here
                    break
                if event is None:
                    break
                if type(event) is not BlockRequest:
                    continue  # (a STEP: go on, this runs apart)
                try:
                    data = self.blockstore.get(event.cid)
                except BlockNotFound:
                    if not beyond:
                        break
                    gap = True
                    walk.skip()
                    continue
                except Exception:  # noqa: BLE001 - a closed store, a disk error: stop here
                    break
                walk.provide(data)
                if gap:
                    later.append(event.cid)
                elif event.index >= skip:
                    held.append((event, len(data)))
        finally:
            walk.close()
        return held, later

    async def close_channel(self, channel_id: ChannelID) -> None:
        # (a requester that cancelled its request is told nothing: Go's neither)
        self._parked.pop(channel_id, None)
        state = self._channels.get(channel_id)
        if state is None:
            return
        self._remove(state)
        if isinstance(state, _GsReceiver):
            if state.paused:
                return  # cancelled when it paused
            msg = GraphsyncMessage(requests=(GraphsyncRequest.cancel(state.request_id),))
        else:
            msg = self._response(state, ResponseStatus.CANCELLED,
                                 error=f"cancelled by {self._peer_id}")
        await self._try_send(state.peer, msg)

    def _get(self, channel_id: ChannelID) -> _Channel:
        state = self._channels.get(channel_id)
        if state is None:
            raise UnknownTransportChannel(f"no open data request for channel {channel_id}")
        return state

    async def pause_channel(self, channel_id: ChannelID) -> None:
        """Hold the data: a sender stops (status 15 once its pump stops); a
        receiver cancels its request as go-graphsync's requester does. A
        channel whose requester cancelled has nothing flowing to hold."""
        if channel_id in self._parked and channel_id not in self._channels:
            return
        state = self._get(channel_id)
        if state.local_hold:
            return
        if isinstance(state, _GsReceiver):
            await self._pause_receiver(state)
        else:
            state.local_hold = True

    async def resume_channel(self, channel_id: ChannelID, message: Any = None) -> None:
        """Release :meth:`pause_channel`; ``message`` goes to the other side
        with the data (a receiver's asks for it again, see the module docs).
        While the requester has cancelled the request, ``message`` goes on
        its own (go-data-transfer keeps it for the next request instead)."""
        peer = self._parked.get(channel_id)
        if peer is not None and channel_id not in self._channels:
            if message is not None:
                await self._send_dt(peer, message)
            return
        state = self._get(channel_id)
        if isinstance(state, _GsReceiver):
            await self._resume_receiver(state, message)
        else:
            state.local_hold = False
            assert isinstance(state, _Sender)
            state.short_batch = True
            if message is not None:
                await self._send(
                    state.peer,
                    self._response(state, ResponseStatus.PARTIAL_RESPONSE, message=message),
                )
            self._kick(state)

    async def cleanup_channel(self, channel_id: ChannelID) -> None:
        await self.close_channel(channel_id)
