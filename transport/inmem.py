"""An in-memory transport: many nodes in one process, with fault injection.

It mimics the graphsync-based transport closely enough for the Manager's
tests (see :mod:`transport.base` for the contract): the data receiver opens a
request, the data sender traverses its blockstore with the channel's selector
and sends the blocks in traversal order, the receiver runs its own traversal
and accepts exactly the block it asks for next.

Usage::

    net = InMemoryNetwork()
    a = net.transport(peer_a, MemoryBlockstore())
    b = net.transport(peer_b, MemoryBlockstore())
    async with anyio.create_task_group() as tg:
        await tg.start(a.serve, events_a)
        await tg.start(b.serve, events_b)
        ...
        net.disconnect(peer_a, peer_b)     # fault injection, any time
        net.drop(lambda p: p.kind == "block" and p.index == 3, count=1)

Packets
-------
Everything that crosses the network is a :class:`Packet` (``kind`` one of
:data:`PACKET_KINDS`). Sending checks reachability at once (both nodes
serving, not disconnected, not partitioned apart) and raises
:class:`~transport.base.PeerUnreachable` otherwise; then the fault rules apply
(:meth:`InMemoryNetwork.drop`, :meth:`~InMemoryNetwork.delay`,
:meth:`~InMemoryNetwork.duplicate`, :meth:`~InMemoryNetwork.corrupt`,
:meth:`~InMemoryNetwork.tamper`). Each directed link is FIFO: a delayed
packet holds back every packet behind it on the same link.

Concurrency and ordering
------------------------
All work for a node runs in tasks of that node's :meth:`~InMemoryTransport.serve`
task group; nothing outlives ``serve``. A node handles its work in *lanes*:

* one lane per channel id: every packet of the channel (from the peer) and
  every local step (opening, each step of the sender's pump, the
  ``on_disconnected`` notice) is a work item of the lane, handled one at a
  time, in order. So the callbacks of one channel on one node never run
  concurrently and come in the order the packets were sent, while a slow
  callback on one channel never holds up another channel;
* one lane per sending peer for messages sent without a channel
  (:meth:`InMemoryTransport.send_message`). Such a message is handled only
  after every channel packet the same peer sent before it has been handled
  (so a "Complete" message never overtakes the last block). Channel packets
  do not wait for earlier channel-less messages.

A lane's task ends as soon as the lane is empty, and the lane is forgotten.
The sender's pump sends one block per work item and re-queues itself behind
whatever arrived meanwhile (a pause, a cancel), so control packets are seen
between blocks. There is no flow control: blocks are queued to the receiver
as fast as the sender's callbacks allow.

Channels
--------
A channel's transport state is dropped as soon as it ends (completed,
rejected, cancelled, failed, disconnected), so :meth:`cleanup_channel` has
little left to do; packets still arriving for a channel that ended, or for an
older request of the same channel (each :meth:`open_channel` makes a new
request id), are ignored, except data-transfer messages (``"message"`` and
``"response"`` packets), which are always handed to the Manager.

Each side may hold the channel (:meth:`pause_channel` or a ``pause``
decision); the sender pumps only while neither side holds it, and each side's
:meth:`resume_channel` releases only its own hold.

Callback exceptions are not swallowed: one propagates out of ``serve``.
"""

from __future__ import annotations

import itertools
import logging
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel

from datatransfer.ipld.block import Block
from datatransfer.ipld.blockstore import Blockstore
from datatransfer.ipld.cid import CID
from datatransfer.ipld.errors import IPLDError
from datatransfer.ipld.selector import Selector, Traverser, parse_selector
from datatransfer.types import ChannelID, PeerID
from transport.base import (
    PROCEED,
    Decision,
    PeerUnreachable,
    Transport,
    TransportEvents,
    UnknownTransportChannel,
)
from transport.carrier import EngineCarrier
from transport.graphsync.engine import GraphsyncEngine
from transport.graphsync.framing import encode_frame, split_frames
from transport.graphsync.message import GraphsyncWireError
from transport.walk import Receiving as _Receiver
from transport.walk import Sending as _Sender
from transport.walk import Walk as _Channel
from transport.walk import next_to_receive, next_to_send

if TYPE_CHECKING:
    from anyio.abc import TaskGroup, TaskStatus

__all__ = [
    "PACKET_KINDS",
    "BlockPayload",
    "InMemoryNetwork",
    "InMemoryTransport",
    "NetworkStats",
    "Packet",
    "RequestPayload",
]

log = logging.getLogger(__name__)

#: Every packet kind.
PACKET_KINDS = (
    "message",
    "request",
    "response",
    "block",
    "complete",
    "cancel",
    "pause",
    "resume",
    "graphsync",
)


# -- packets ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RequestPayload:
    """Payload of a ``"request"`` packet: what the receiver asks for."""

    root: CID
    selector: Selector
    message: Any
    skip_blocks: int


@dataclass(frozen=True, slots=True)
class BlockPayload:
    """Payload of a ``"block"`` packet; ``index`` counts from 1."""

    cid: CID
    data: bytes
    index: int


@dataclass(frozen=True, slots=True)
class Packet:
    """One unit crossing the in-memory network.

    ``payload`` by kind: ``message`` / ``response``: the data-transfer
    message; ``request``: :class:`RequestPayload`; ``block``:
    :class:`BlockPayload`; ``complete``: None on success or the error text;
    ``cancel``: the reason text; ``pause`` / ``resume``: None.
    ``channel_id`` is None only for a message sent with
    :meth:`InMemoryTransport.send_message`. ``request_id`` identifies the data
    request a channel packet belongs to (0 for a channel-less message).
    """

    kind: str
    src: PeerID
    dst: PeerID
    channel_id: ChannelID | None
    payload: Any = None
    request_id: int = 0

    @property
    def index(self) -> int | None:
        """The block index of a ``"block"`` packet, else None."""
        return self.payload.index if self.kind == "block" else None

    @property
    def cid(self) -> CID | None:
        """The block CID of a ``"block"`` packet, else None."""
        return self.payload.cid if self.kind == "block" else None


@dataclass
class NetworkStats:
    """Packet counters by kind.

    ``sent``: accepted by the network (reachable at send time);
    ``delivered``: handled by the destination node; ``dropped``: lost to a
    drop rule, a disconnect, a partition or a node going offline;
    ``duplicated`` / ``delayed`` / ``tampered``: touched by those rules.
    """

    sent: Counter[str] = field(default_factory=Counter)
    delivered: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)
    duplicated: Counter[str] = field(default_factory=Counter)
    delayed: Counter[str] = field(default_factory=Counter)
    tampered: Counter[str] = field(default_factory=Counter)

    def reset(self) -> None:
        for counter in (
            self.sent,
            self.delivered,
            self.dropped,
            self.duplicated,
            self.delayed,
            self.tampered,
        ):
            counter.clear()


Predicate = Callable[[Packet], bool]


@dataclass
class _Rule:
    action: str  # "drop" | "delay" | "duplicate" | "tamper"
    predicate: Predicate | None
    count: int | None
    arg: Any = None


def _corrupt_block(packet: Packet) -> Packet:
    data = packet.payload.data
    bad = data[:-1] + bytes([data[-1] ^ 0xFF]) if data else b"\x00"
    return replace(packet, payload=replace(packet.payload, data=bad))


# -- the network --------------------------------------------------------------


class InMemoryNetwork:
    """Many :class:`InMemoryTransport` nodes in one process.

    Topology and fault methods are synchronous and may be called at any time
    from the event loop's thread (tests, event callbacks). Nodes are
    connected to each other by default.
    """

    def __init__(self) -> None:
        self._nodes: dict[PeerID, InMemoryTransport] = {}
        self._cut: set[frozenset[PeerID]] = set()
        self._partitions: list[tuple[frozenset[PeerID], frozenset[PeerID]]] = []
        self._rules: list[_Rule] = []
        self._request_ids = itertools.count(1)
        self.stats = NetworkStats()

    # -- nodes ----------------------------------------------------------------

    def transport(self, peer_id: PeerID | bytes, blockstore: Blockstore) -> InMemoryTransport:
        """Create the transport of node ``peer_id`` (one per peer id)."""
        peer = PeerID(peer_id)
        if peer in self._nodes:
            raise ValueError(f"a transport for {peer} already exists")
        node = InMemoryTransport(self, peer, blockstore)
        self._nodes[peer] = node
        return node

    def engine(self, peer_id: PeerID | bytes, blockstore: Blockstore,
               **options: Any) -> EngineCarrier:
        """Create node ``peer_id`` on the real graphsync engine (the one the
        libp2p transport carries): its transport carries the engine's frames
        and data-transfer messages over this network, under the same
        reachability and fault rules (``"graphsync"`` packets hold a frame's
        bytes). ``options`` go to
        :class:`~transport.graphsync.engine.GraphsyncEngine`."""
        peer = PeerID(peer_id)
        if peer in self._nodes:
            raise ValueError(f"a transport for {peer} already exists")
        node = _EngineNode(self, peer, blockstore, options)
        self._nodes[peer] = node  # type: ignore[assignment]
        return node

    @property
    def nodes(self) -> dict[PeerID, InMemoryTransport]:
        return dict(self._nodes)

    def is_online(self, peer: PeerID) -> bool:
        node = self._nodes.get(peer)
        return node is not None and node._online

    def reachable(self, a: PeerID, b: PeerID) -> bool:
        """Whether a packet from ``a`` to ``b`` would be accepted now."""
        if not (self.is_online(a) and self.is_online(b)):
            return False
        if a == b:
            return True
        if frozenset((a, b)) in self._cut:
            return False
        for ga, gb in self._partitions:
            if (a in ga and b in gb) or (a in gb and b in ga):
                return False
        return True

    # -- topology -------------------------------------------------------------

    def connect(self, a: PeerID, b: PeerID) -> None:
        """Undo :meth:`disconnect` between ``a`` and ``b``."""
        self._cut.discard(frozenset((PeerID(a), PeerID(b))))

    def disconnect(self, a: PeerID, b: PeerID) -> None:
        """Cut the link: in-flight packets both ways are lost, every channel
        between the two nodes ends with ``on_disconnected`` on both sides, and
        sends between them raise :class:`PeerUnreachable` until :meth:`connect`."""
        a, b = PeerID(a), PeerID(b)
        was = self.reachable(a, b)
        self._cut.add(frozenset((a, b)))
        if was:
            self._sever(a, b, "disconnected")

    def partition(self, group_a: Iterable[PeerID], group_b: Iterable[PeerID]) -> None:
        """Separate two groups of nodes (like :meth:`disconnect` for every
        pair across) until :meth:`heal`."""
        ga = frozenset(PeerID(p) for p in group_a)
        gb = frozenset(PeerID(p) for p in group_b)
        pairs = [(a, b) for a in ga for b in gb if a != b and self.reachable(a, b)]
        self._partitions.append((ga, gb))
        for a, b in pairs:
            self._sever(a, b, "partitioned")

    def heal(self) -> None:
        """Remove every partition (explicit disconnects stay)."""
        self._partitions.clear()

    # -- faults ---------------------------------------------------------------

    def drop(self, predicate: Predicate | None = None, count: int | None = None) -> None:
        """Silently lose matching packets (the first ``count`` of them)."""
        self._rules.append(_Rule("drop", predicate, count))

    def delay(
        self, seconds: float, predicate: Predicate | None = None, count: int | None = None
    ) -> None:
        """Deliver matching packets ``seconds`` late; packets behind one on
        the same link wait for it (per-link FIFO)."""
        self._rules.append(_Rule("delay", predicate, count, float(seconds)))

    def duplicate(self, predicate: Predicate | None = None, count: int | None = None) -> None:
        """Deliver matching packets twice, back to back."""
        self._rules.append(_Rule("duplicate", predicate, count))

    def tamper(
        self,
        fn: Callable[[Packet], Packet | None],
        predicate: Predicate | None = None,
        count: int | None = None,
    ) -> None:
        """Replace matching packets by ``fn(packet)`` (None drops it); the
        result must keep the same ``src`` and ``dst``."""
        self._rules.append(_Rule("tamper", predicate, count, fn))

    def corrupt(self, predicate: Predicate | None = None, count: int | None = None) -> None:
        """Flip a byte of matching ``"block"`` packets' data (CID unchanged)."""

        def match(packet: Packet) -> bool:
            return packet.kind == "block" and (predicate is None or predicate(packet))

        self.tamper(_corrupt_block, match, count)

    def clear_faults(self) -> None:
        """Remove every drop/delay/duplicate/tamper rule."""
        self._rules.clear()

    # -- internals ------------------------------------------------------------

    def _new_request_id(self) -> int:
        return next(self._request_ids)

    def _send(self, packet: Packet) -> None:
        src, dst = packet.src, packet.dst
        if not self.reachable(src, dst):
            if not self.is_online(src):
                raise PeerUnreachable(f"{src} is not running")
            raise PeerUnreachable(f"{dst} is unreachable from {src}")
        stats = self.stats
        stats.sent[packet.kind] += 1
        copies = 1
        delay = 0.0
        exhausted = False
        for rule in self._rules:
            if rule.count is not None and rule.count <= 0:
                continue
            if rule.predicate is not None and not rule.predicate(packet):
                continue
            if rule.count is not None:
                rule.count -= 1
                exhausted = exhausted or rule.count <= 0
            action = rule.action
            if action == "drop":
                stats.dropped[packet.kind] += 1
                packet = None  # type: ignore[assignment]
                break
            if action == "tamper":
                new = rule.arg(packet)
                if new is None:
                    stats.dropped[packet.kind] += 1
                    packet = None  # type: ignore[assignment]
                    break
                if new.src != src or new.dst != dst:
                    raise ValueError("a tamper rule must keep src and dst")
                stats.tampered[packet.kind] += 1
                packet = new
            elif action == "duplicate":
                stats.duplicated[packet.kind] += 1
                copies += 1
            elif action == "delay":
                stats.delayed[packet.kind] += 1
                delay += rule.arg
        if exhausted:
            self._rules = [r for r in self._rules if r.count is None or r.count > 0]
        if packet is None:
            return
        node = self._nodes[dst]
        for _ in range(copies):
            node._accept(packet, delay)

    def _sever(self, a: PeerID, b: PeerID, why: str) -> None:
        node_a, node_b = self._nodes.get(a), self._nodes.get(b)
        if node_a is not None and node_a._online:
            node_a._sever_peer(b, f"{why}: lost connection to {b}")
        if node_b is not None and node_b._online:
            node_b._sever_peer(a, f"{why}: lost connection to {a}")

    def _node_offline(self, peer: PeerID) -> None:
        for other, node in self._nodes.items():
            if other != peer and node._online:
                node._sever_peer(peer, f"peer {peer} went offline")


# -- per-node machinery ---------------------------------------------------------


class _Inbox:
    """What links deliver into one node: in order per link, a delayed packet
    holding back those behind it on its link; what a severed or stopped link
    still holds is lost (counted as dropped)."""

    def __init__(self, stats: NetworkStats, dispatch: Callable[[Packet], None]) -> None:
        self._stats = stats
        self._dispatch = dispatch
        self._queues: dict[PeerID, deque[tuple[float, Packet]]] = {}

    def __len__(self) -> int:
        return len(self._queues)

    def accept(self, packet: Packet, delay: float, tg: TaskGroup | None, online: bool) -> None:
        """Deliver ``packet`` now, or ``delay`` seconds late on its link; a
        node that is not ``online`` loses it."""
        if not online:
            self._stats.dropped[packet.kind] += 1
            return
        src = packet.src
        queue = self._queues.get(src)
        if delay <= 0 and not queue:
            self._dispatch(packet)
            return
        if queue is None:
            queue = self._queues[src] = deque()
            start = True
        else:
            start = False
        queue.append((anyio.current_time() + delay, packet))
        if start:
            assert tg is not None
            tg.start_soon(self._run, src, queue)

    async def _run(self, src: PeerID, queue: deque[tuple[float, Packet]]) -> None:
        try:
            while queue:
                due, packet = queue[0]
                wait = due - anyio.current_time()
                if wait > 0:
                    await anyio.sleep(wait)
                    continue  # the queue may have been purged meanwhile
                queue.popleft()
                self._dispatch(packet)
        finally:
            if self._queues.get(src) is queue:
                del self._queues[src]

    def drop(self, src: PeerID) -> None:
        """Lose what the link from ``src`` holds."""
        queue = self._queues.pop(src, None)
        if queue is not None:
            for _, packet in queue:
                self._stats.dropped[packet.kind] += 1
            queue.clear()

    def drop_all(self) -> None:
        for src in list(self._queues):
            self.drop(src)


class _Item:
    """One unit of work of a lane."""

    __slots__ = ("run", "src", "packet", "finished", "waiter")

    def __init__(
        self,
        run: Callable[[], Awaitable[None]],
        src: PeerID | None = None,
        packet: Packet | None = None,
    ) -> None:
        self.run = run
        self.src = src
        self.packet = packet
        self.finished = False
        self.waiter: anyio.Event | None = None

    async def wait(self) -> None:
        if not self.finished:
            if self.waiter is None:
                self.waiter = anyio.Event()
            await self.waiter.wait()


class _Lane:
    __slots__ = ("key", "items", "running", "last_from", "is_channel")

    def __init__(self, key: Any, is_channel: bool) -> None:
        self.key = key
        self.items: deque[_Item] = deque()
        self.running = False
        #: The last queued-or-running packet item from each peer (channel lanes).
        self.last_from: dict[PeerID, _Item] = {}
        self.is_channel = is_channel


def _is_request(message: Any) -> bool:
    return any(cls.__name__ == "TransferRequest" for cls in type(message).__mro__)


# -- the transport --------------------------------------------------------------


class InMemoryTransport(Transport):
    """One node of an :class:`InMemoryNetwork`; see the module docs."""

    supports_pause = True

    def __init__(self, network: InMemoryNetwork, peer_id: PeerID, blockstore: Blockstore) -> None:
        self._net = network
        self._peer_id = peer_id
        self.blockstore = blockstore
        self._online = False
        self._serving = False
        self._tg: TaskGroup | None = None
        self._events: TransportEvents | None = None
        self._channels: dict[ChannelID, _Channel] = {}
        self._lanes: dict[Any, _Lane] = {}
        self._inbox = _Inbox(network.stats, self._dispatch)
        self._last_request_from: dict[PeerID, int] = {}

    # -- introspection (tests) -------------------------------------------------

    @property
    def peer_id(self) -> PeerID:
        return self._peer_id

    @property
    def network(self) -> InMemoryNetwork:
        return self._net

    @property
    def online(self) -> bool:
        return self._online

    @property
    def active_channels(self) -> frozenset[ChannelID]:
        """Channels this node currently moves data for."""
        return frozenset(self._channels)

    def resources(self) -> dict[str, int]:
        """Sizes of the per-channel / per-link structures (all 0 when idle)."""
        return {
            "channels": len(self._channels),
            "lanes": len(self._lanes),
            "inbox": len(self._inbox),
        }

    def is_idle(self) -> bool:
        return not (self._channels or self._lanes or self._inbox)

    # -- serving ----------------------------------------------------------------

    async def serve(
        self,
        events: TransportEvents,
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        if self._serving:
            raise RuntimeError(f"transport {self._peer_id} is already serving")
        self._serving = True
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                self._events = events
                self._online = True
                task_status.started()
                try:
                    await anyio.sleep_forever()
                finally:
                    self._go_offline()
        finally:
            self._serving = False
            self._tg = None
            self._events = None

    def _go_offline(self) -> None:
        self._online = False
        self._net._node_offline(self._peer_id)
        stats = self._net.stats
        self._inbox.drop_all()
        for lane in self._lanes.values():
            for item in lane.items:
                if item.packet is not None:
                    stats.dropped[item.packet.kind] += 1
                item.finished = True
                if item.waiter is not None:
                    item.waiter.set()
            lane.items.clear()
            lane.last_from.clear()
        self._lanes.clear()
        for state in self._channels.values():
            state.traverser.close()
        self._channels.clear()
        self._last_request_from.clear()

    # -- delivery ---------------------------------------------------------------

    def _accept(self, packet: Packet, delay: float) -> None:
        """Take a packet off the network (called in the sender's context)."""
        self._inbox.accept(packet, delay, self._tg, self._online)

    def _dispatch(self, packet: Packet) -> None:
        src = packet.src
        if packet.kind == "request":
            # Request ids grow, and a link is FIFO: an old id is a duplicate.
            if packet.request_id <= self._last_request_from.get(src, 0):
                self._net.stats.delivered[packet.kind] += 1
                return
            self._last_request_from[src] = packet.request_id
        if packet.channel_id is not None:
            self._enqueue(
                packet.channel_id, _Item(partial(self._handle, packet), src, packet), True
            )
            return
        barrier = [
            lane.last_from[src]
            for lane in self._lanes.values()
            if lane.is_channel and src in lane.last_from
        ]
        item = _Item(partial(self._handle_message, packet, barrier), src, packet)
        self._enqueue(("msg", src), item, False)

    def _enqueue(self, key: Any, item: _Item, is_channel: bool = True) -> None:
        if not self._online:
            if item.packet is not None:
                self._net.stats.dropped[item.packet.kind] += 1
            return
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane(key, is_channel)
        lane.items.append(item)
        if item.src is not None and is_channel:
            lane.last_from[item.src] = item
        if not lane.running:
            lane.running = True
            assert self._tg is not None
            self._tg.start_soon(self._run_lane, lane)

    async def _run_lane(self, lane: _Lane) -> None:
        delivered = self._net.stats.delivered
        try:
            while lane.items:
                item = lane.items.popleft()
                try:
                    if item.packet is not None:
                        delivered[item.packet.kind] += 1
                    await item.run()
                finally:
                    self._finish(lane, item)
        finally:
            lane.running = False
            if self._lanes.get(lane.key) is lane:
                del self._lanes[lane.key]

    @staticmethod
    def _finish(lane: _Lane, item: _Item) -> None:
        item.finished = True
        if item.waiter is not None:
            item.waiter.set()
        if item.src is not None and lane.last_from.get(item.src) is item:
            del lane.last_from[item.src]

    def _local(self, channel_id: ChannelID, run: Callable[[], Awaitable[None]]) -> None:
        self._enqueue(channel_id, _Item(run), True)

    def _sever_peer(self, peer: PeerID, reason: str) -> None:
        """The connection with ``peer`` is gone: lose what is in flight from
        it, end every channel with it (``on_disconnected`` via its lane)."""
        stats = self._net.stats
        self._inbox.drop(peer)
        for lane in self._lanes.values():
            if not any(item.src == peer for item in lane.items):
                continue
            kept: deque[_Item] = deque()
            for item in lane.items:
                if item.src == peer:
                    if item.packet is not None:
                        stats.dropped[item.packet.kind] += 1
                    self._finish(lane, item)
                else:
                    kept.append(item)
            lane.items = kept
        for state in [s for s in self._channels.values() if s.peer == peer]:
            self._remove(state)
            self._local(state.channel_id, partial(self._notify_disconnected, state, reason))

    async def _notify_disconnected(self, state: _Channel, reason: str) -> None:
        assert self._events is not None
        current = self._channels.get(state.channel_id)
        if current is not None and current is not state:
            return  # a newer request (a restart) replaced this one: old news
        await self._events.on_disconnected(state.channel_id, reason)

    # -- channel state helpers --------------------------------------------------

    def _current(self, state: _Channel) -> bool:
        return self._channels.get(state.channel_id) is state

    def _remove(self, state: _Channel) -> None:
        if self._channels.get(state.channel_id) is state:
            del self._channels[state.channel_id]
        state.traverser.close()

    def _for_packet(self, packet: Packet) -> _Channel | None:
        assert packet.channel_id is not None
        state = self._channels.get(packet.channel_id)
        if state is None or state.peer != packet.src or state.request_id != packet.request_id:
            return None
        return state

    def _packet(self, state: _Channel, kind: str, payload: Any = None) -> Packet:
        return Packet(kind, self._peer_id, state.peer, state.channel_id, payload, state.request_id)

    def _try_send(self, packet: Packet) -> bool:
        """Best-effort send; False if the peer is unreachable."""
        try:
            self._net._send(packet)
        except PeerUnreachable:
            return False
        return True

    async def _send_or_lose(self, state: _Channel, kind: str, payload: Any = None) -> bool:
        """Send on behalf of a live channel; if the peer cannot be reached the
        channel ends with ``on_disconnected``. Returns whether it was sent."""
        try:
            self._net._send(self._packet(state, kind, payload))
        except PeerUnreachable as exc:
            if self._current(state):
                self._remove(state)
                assert self._events is not None
                await self._events.on_disconnected(state.channel_id, str(exc))
            return False
        return True

    def _require_online(self) -> None:
        if not self._online:
            raise PeerUnreachable(f"transport {self._peer_id} is not running")

    # -- packet handlers ----------------------------------------------------------

    async def _handle_message(self, packet: Packet, barrier: list[_Item]) -> None:
        for item in barrier:
            await item.wait()
        assert self._events is not None
        await self._events.on_message(packet.src, packet.payload)

    async def _handle(self, packet: Packet) -> None:
        events = self._events
        assert events is not None and packet.channel_id is not None
        kind = packet.kind
        if kind == "message":
            await events.on_message(packet.src, packet.payload)
        elif kind == "response":
            if _is_request(packet.payload):
                await events.on_message(packet.src, packet.payload)
            else:
                await events.on_response_received(packet.channel_id, packet.payload)
        elif kind == "request":
            await self._on_request(packet)
        elif kind == "block":
            state = self._for_packet(packet)
            if isinstance(state, _Receiver):
                await self._on_block(state, packet.payload)
        elif kind == "complete":
            state = self._for_packet(packet)
            if isinstance(state, _Receiver):
                await self._on_complete(state, packet.payload)
        elif kind == "cancel":
            state = self._for_packet(packet)
            if state is not None:
                self._remove(state)
                await events.on_request_cancelled(state.channel_id, packet.payload)
        elif kind == "pause":
            state = self._for_packet(packet)
            if isinstance(state, _Sender):
                state.remote_hold = True
        elif kind == "resume":
            state = self._for_packet(packet)
            if isinstance(state, _Sender):
                state.remote_hold = False
                self._kick(state)
        else:  # pragma: no cover - only our own kinds are ever sent
            log.warning("unknown packet kind %r", kind)

    # -- the data sender ----------------------------------------------------------

    async def _on_request(self, packet: Packet) -> None:
        events = self._events
        assert events is not None and packet.channel_id is not None
        chid = packet.channel_id
        request: RequestPayload = packet.payload
        old = self._channels.get(chid)
        if old is not None:
            if old.peer != packet.src:
                # Someone else's channel id: refuse without bothering the Manager.
                self._try_send(
                    Packet(
                        "complete",
                        self._peer_id,
                        packet.src,
                        chid,
                        "channel id in use",
                        packet.request_id,
                    )
                )
                return
            self._remove(old)  # a new request (restart) replaces the old one
        traverser = Traverser(
            request.root,
            request.selector,
            skip_first_blocks=request.skip_blocks,
            verify=False,
            visits=False,
        )
        state = _Sender(chid, packet.src, packet.request_id, traverser)
        self._channels[chid] = state
        decision: Decision = (
            await events.on_request_received(chid, packet.src, request.message) or PROCEED
        )
        if not self._current(state):
            return
        if decision.message is not None:
            if not await self._send_or_lose(state, "response", decision.message):
                return
        if not decision.accept:
            self._remove(state)
            self._try_send(self._packet(state, "complete", "request rejected"))
            return
        state.pumping = True
        if decision.pause:
            state.local_hold = True
        self._kick(state)

    def _kick(self, state: _Sender) -> None:
        """Queue a pump step if the channel may send and none is queued."""
        if state.pumping and not state.held and not state.pump_active and self._current(state):
            state.pump_active = True
            self._local(state.channel_id, partial(self._pump, state))

    async def _pump(self, state: _Sender) -> None:
        """One step of the sender: decide on, then send, the next block."""
        events = self._events
        assert events is not None
        chid = state.channel_id
        if not self._current(state):
            return
        if state.held:
            state.pump_active = False
            return
        if state.pending is None:
            step = next_to_send(state.traverser, self.blockstore)
            if not isinstance(step, tuple):
                # The traversal ended (step is None) or failed (the error).
                self._remove(state)
                self._try_send(self._packet(state, "complete", step))
                await events.on_channel_completed(chid, step)
                return
            state.pending = step
            state.decided = False
        request, data = state.pending
        index = request.index + 1
        if not state.decided:
            decision: Decision = (
                await events.on_data_queued(chid, request.cid, len(data), index) or PROCEED
            )
            if not self._current(state):
                return
            if decision.message is not None:
                if not await self._send_or_lose(state, "response", decision.message):
                    return
            if not decision.accept:
                self._remove(state)
                self._try_send(self._packet(state, "cancel", "cancelled by the data sender"))
                return
            state.decided = True
            if decision.pause:
                state.local_hold = True
        if state.held:
            state.pump_active = False
            return
        if not await self._send_or_lose(state, "block", BlockPayload(request.cid, data, index)):
            return
        state.pending = None
        state.decided = False
        await events.on_data_sent(chid, request.cid, len(data), index)
        if not self._current(state):
            return
        if state.held:
            state.pump_active = False
            return
        # Requeue behind whatever arrived meanwhile, and let others run.
        self._local(chid, partial(self._pump, state))
        await anyio.lowlevel.checkpoint()

    # -- the data receiver ------------------------------------------------------

    async def _start_receiver(self, state: _Receiver) -> None:
        assert self._events is not None
        if not self._current(state):
            return
        await self._events.on_channel_opened(state.channel_id)
        if not self._current(state):
            return
        error = next_to_receive(state, self.blockstore)
        if error is not None:
            await self._receive_failed(state, error)

    async def _receive_failed(self, state: _Receiver, reason: str) -> None:
        assert self._events is not None
        self._remove(state)
        self._try_send(self._packet(state, "cancel", f"receiver error: {reason}"))
        await self._events.on_receive_data_error(state.channel_id, reason)

    async def _on_block(self, state: _Receiver, block: BlockPayload) -> None:
        events = self._events
        assert events is not None
        chid = state.channel_id
        index, cid, data = block.index, block.cid, block.data
        if index <= state.last_index:
            return  # a duplicate of a block already held
        expect = state.expect
        if expect is None or index != expect.index + 1 or cid != expect.cid:
            wanted = "nothing" if expect is None else f"{expect.cid} at index {expect.index + 1}"
            await self._receive_failed(
                state, f"unexpected block {cid} at index {index} (expected {wanted})"
            )
            return
        try:
            verified = Block(cid, data)  # the one hash of this block on this node
        except IPLDError:
            await self._receive_failed(state, f"block {index} does not match its CID {cid}")
            return
        try:
            self.blockstore.put_many((verified,))
        except Exception as exc:  # noqa: BLE001 - e.g. a closed store
            await self._receive_failed(state, f"cannot store block {cid}: {exc}")
            return
        state.last_index = index
        state.expect = None
        state.traverser.provide(data)
        decision: Decision = await events.on_data_received(chid, cid, len(data), index) or PROCEED
        if not self._current(state):
            return
        if decision.message is not None:
            if not await self._send_or_lose(state, "message", decision.message):
                return
        if not decision.accept:
            self._remove(state)
            self._try_send(self._packet(state, "cancel", "cancelled by the data receiver"))
            return
        if decision.pause and not state.local_hold:
            state.local_hold = True
            if not await self._send_or_lose(state, "pause"):
                return
        error = next_to_receive(state, self.blockstore)
        if error is not None:
            await self._receive_failed(state, error)
            return
        if state.traversal_done and state.sender_done:  # pragma: no cover - complete comes last
            self._remove(state)
            await events.on_channel_completed(chid, None)

    async def _on_complete(self, state: _Receiver, error: str | None) -> None:
        assert self._events is not None
        chid = state.channel_id
        if error is not None:
            self._remove(state)
            await self._events.on_channel_completed(chid, error)
            return
        state.sender_done = True
        if state.traversal_done:
            self._remove(state)
            await self._events.on_channel_completed(chid, None)
            return
        expect = state.expect
        missing = "?" if expect is None else f"{expect.cid} (index {expect.index + 1})"
        await self._receive_failed(
            state, f"the sender completed but block {missing} was never received"
        )

    # -- Transport API -------------------------------------------------------------

    async def send_message(self, peer: PeerID, message: Any) -> None:
        self._require_online()
        self._net._send(Packet("message", self._peer_id, PeerID(peer), None, message))

    async def open_channel(
        self,
        data_sender: PeerID,
        channel_id: ChannelID,
        root: CID,
        selector: Any,
        message: Any,
        skip_blocks: int = 0,
    ) -> None:
        self._require_online()
        data_sender = PeerID(data_sender)
        if not isinstance(selector, Selector):
            selector = parse_selector(selector)
        traverser = Traverser(
            root, selector, skip_first_blocks=skip_blocks, verify=False, visits=False
        )
        if not self._net.reachable(self._peer_id, data_sender):
            raise PeerUnreachable(f"{data_sender} is unreachable from {self._peer_id}")
        old = self._channels.get(channel_id)
        if old is not None:
            self._remove(old)  # reopening replaces the old request, silently
        request_id = self._net._new_request_id()
        state = _Receiver(channel_id, data_sender, request_id, traverser, skip_blocks)
        self._channels[channel_id] = state
        # Queued before the request leaves, so on_channel_opened precedes any
        # event caused by the sender's answer.
        self._local(channel_id, partial(self._start_receiver, state))
        try:
            self._net._send(
                self._packet(state, "request", RequestPayload(root, selector, message, skip_blocks))
            )
        except BaseException:
            self._remove(state)
            raise

    async def close_channel(self, channel_id: ChannelID) -> None:
        state = self._channels.get(channel_id)
        if state is None:
            return
        self._remove(state)
        self._try_send(self._packet(state, "cancel", f"cancelled by {self._peer_id}"))

    def _get(self, channel_id: ChannelID) -> _Channel:
        state = self._channels.get(channel_id)
        if state is None:
            raise UnknownTransportChannel(f"no open data request for channel {channel_id}")
        return state

    async def pause_channel(self, channel_id: ChannelID) -> None:
        state = self._get(channel_id)
        if state.local_hold:
            return
        state.local_hold = True
        if isinstance(state, _Receiver):
            self._try_send(self._packet(state, "pause"))

    async def resume_channel(self, channel_id: ChannelID, message: Any = None) -> None:
        state = self._get(channel_id)
        if message is not None:
            self._net._send(self._packet(state, "message", message))
        state.local_hold = False
        if isinstance(state, _Receiver):
            self._try_send(self._packet(state, "resume"))
        else:
            assert isinstance(state, _Sender)
            self._kick(state)

    async def cleanup_channel(self, channel_id: ChannelID) -> None:
        await self.close_channel(channel_id)


# -- the graphsync engine on the in-memory network ----------------------------------------


class _EngineNode(EngineCarrier):
    """A :class:`~transport.graphsync.engine.GraphsyncEngine` carried by the
    network: what it sends crosses the network as packets (``"graphsync"``:
    the frame's bytes, as a libp2p stream carries them; ``"message"``: a
    data-transfer message on its own), under the same reachability and fault
    rules as any packet; links deliver in order, a delayed packet holding back
    those behind it."""

    def __init__(self, network: InMemoryNetwork, peer: PeerID, blockstore: Blockstore,
                 options: dict[str, Any]) -> None:
        async def send(dst: PeerID, msg: Any) -> None:
            network._send(Packet("graphsync", peer, PeerID(dst), None, encode_frame(msg)))

        async def send_dt(dst: PeerID, message: Any) -> None:
            network._send(Packet("message", peer, PeerID(dst), None, message))

        super().__init__(GraphsyncEngine(peer, blockstore, send, send_dt, **options))
        self._net = network
        self._peer = peer
        self._online = False
        self._inbox = _Inbox(network.stats, self._deliver)

    def _attach(self) -> None:
        self._online = True

    def _detach(self) -> None:
        self._online = False
        self._inbox.drop_all()
        self._net._node_offline(self._peer)

    def _accept(self, packet: Packet, delay: float) -> None:
        self._inbox.accept(packet, delay, self._tg, self._online)

    def _deliver(self, packet: Packet) -> None:
        if packet.kind == "graphsync":
            try:
                for payload in split_frames(packet.payload):
                    self.engine.handle_frame(packet.src, payload)
            except GraphsyncWireError:
                pass  # counted and refused by the engine (a stream reset on libp2p)
        else:
            self.engine.handle_dt_message(packet.src, packet.payload)

    def _sever_peer(self, peer: PeerID, reason: str) -> None:
        self._inbox.drop(peer)
        self.engine.peer_lost(peer, reason)
