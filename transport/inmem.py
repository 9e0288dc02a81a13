"""The in-memory network: many nodes in one process, with fault injection.

Every node runs the real graphsync engine
(:class:`~transport.graphsync.engine.GraphsyncEngine`, the one
:class:`~transport.libp2p.transport.Libp2pTransport` carries over libp2p):
:meth:`InMemoryNetwork.transport` makes an :class:`InMemoryNode`, an
:class:`~transport.carrier.EngineCarrier` whose engine sends through this
network. The network carries what an engine sends as libp2p would: each
graphsync message as a frame's bytes, each data-transfer message the engine
sends on its own as that message; the receiving node decodes the frame and
hands it to its engine. A frame travels as the pieces its sender encoded
(each block's data of 4 KiB or more a piece of its own, as libp2p writes
them): the receiver decodes all of it, and hashes every block, but takes a
block's data without copying it; a fault rule or a test that reads a
packet's ``payload`` gets the frame's bytes, and a rule that replaces them
has its bytes delivered instead.

Usage::

    net = InMemoryNetwork()
    a = net.transport(peer_a, MemoryBlockstore())
    b = net.transport(peer_b, MemoryBlockstore(), max_block_bytes=1)  # engine options
    async with anyio.create_task_group() as tg:
        await tg.start(a.serve, events_a)
        await tg.start(b.serve, events_b)
        ...
        net.disconnect(peer_a, peer_b)     # fault injection, any time
        net.drop(lambda p: p.kind == "blocks" and 3 in p.indices, count=1)

Packets
-------
Everything that crosses the network is a :class:`Packet`. Its ``kind`` (one
of :data:`PACKET_KINDS`) names what it carries:

* ``"message"``: a data-transfer message sent on its own (``payload`` is
  the message);
* a graphsync frame (``payload`` is the frame's bytes). The engine sends one
  request or one response per message: ``"request"`` a new request (a
  channel's data request, a restart's, or a receiver's resume of a paused
  one), ``"update"`` an update request (a data-transfer message riding the
  request), ``"cancel"`` a cancel request (a receiver that cancels or
  pauses), ``"blocks"`` a response that carries block data, ``"response"``
  any other response (a data-transfer message riding the data, "paused",
  the end of a request, blocks announced but not sent).

A frame is described (decoded once, when sent) so that fault rules and tests
can aim at it without decoding: the request id, the channel, the
data-transfer message it carries, a response's status and error text and
its metadata entries (:class:`Link`: each block's index in the sender's walk
of the request, its CID, whether the frame carries its data), a request's
root and do-not-send-first-blocks count. The description is for aiming; what
is delivered is the frame (``payload``).

Sending checks reachability at once (both nodes serving, not disconnected,
not partitioned apart) and raises :class:`~transport.base.PeerUnreachable`
otherwise; then the fault rules apply (:meth:`InMemoryNetwork.drop`,
:meth:`~InMemoryNetwork.delay`, :meth:`~InMemoryNetwork.duplicate`,
:meth:`~InMemoryNetwork.corrupt`, :meth:`~InMemoryNetwork.tamper`). Each
directed link is FIFO: a delayed packet holds back every packet behind it on
the same link. A disconnect, a partition or a node going offline loses what
the links involved still hold, and every engine on either side hears of the
lost peer (:meth:`~transport.graphsync.engine.GraphsyncEngine.peer_lost`:
its channels with that peer end with ``on_disconnected``).

Graphsync runs over reliable streams, so a duplicated, corrupted or tampered
frame is a broken peer as the engine sees it: it refuses what it cannot use
(a block it did not ask for next ends the request with a receive error), and
the Manager recovers as it would from a faulty peer. Duplicated requests
that arrive back to back, and a duplicated end of a request, change nothing.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, NamedTuple

import anyio

from datatransfer.ipld.block import Block
from datatransfer.ipld.blockstore import Blockstore
from datatransfer.ipld.cid import CID
from datatransfer.messages import MessageType, TransferRequest, TransferResponse, from_node
from datatransfer.types import ChannelID, PeerID
from transport.base import PeerUnreachable
from transport.carrier import EngineCarrier
from transport.graphsync.engine import EXTENSION_ERROR, GraphsyncEngine
from transport.graphsync.framing import (
    encode_frame,
    encode_frame_pieces,
    split_frame_pieces,
    split_frames,
)
from transport.graphsync.message import (
    EXTENSION_DATA_TRANSFER,
    EXTENSION_DO_NOT_SEND_FIRST_BLOCKS,
    GraphsyncMessage,
    GraphsyncWireError,
    RawBlock,
    decode_do_not_send_first_blocks,
    decode_message,
)
from transport.graphsync.status import LinkAction, RequestType, ResponseStatus

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

__all__ = [
    "PACKET_KINDS",
    "InMemoryNetwork",
    "InMemoryNode",
    "Link",
    "NetworkStats",
    "Packet",
]

log = logging.getLogger(__name__)

#: Every packet kind (see the module docs).
PACKET_KINDS = ("message", "request", "update", "cancel", "blocks", "response")


# -- packets ------------------------------------------------------------------


class Link(NamedTuple):
    """One metadata entry of a response: the block at ``index`` in the
    sender's walk of the request (from 1, counting the blocks it announces
    without sending, as a restart's skipped ones; 0 if the network did not
    see the request), its ``cid``, and whether the frame carries its data."""

    index: int
    cid: CID
    sent: bool


class _Payload:
    """:attr:`Packet.payload`: as given, or else the frame's pieces joined
    when first read (a fault rule or a test reading the bytes); a packet
    nobody reads is delivered as its pieces, without that copy."""

    def __get__(self, packet: Packet | None, owner: type | None = None) -> Any:
        if packet is None:
            return None  # the field's default
        given = packet.__dict__.get("_payload")
        if given is not None or not packet.pieces:
            return given
        joined = packet.__dict__.get("_joined")
        if joined is None:
            joined = packet.__dict__["_joined"] = b"".join(packet.pieces)
        return joined

    def __set__(self, packet: Packet, value: Any) -> None:
        packet.__dict__["_payload"] = value


@dataclass(frozen=True)
class Packet:
    """One unit crossing the in-memory network (see the module docs).

    ``payload``: the data-transfer message of a ``"message"``, the frame's
    bytes of any other kind. The rest describes it: ``message`` the
    data-transfer message it carries (on its own, or in a request's or a
    response's extension); ``channel_id`` the channel it belongs to when
    known; ``request_id`` the graphsync request (None for a ``"message"``);
    ``status`` and ``error`` of a response; ``links`` a response's metadata
    entries; ``root`` and ``skip_blocks`` (do-not-send-first-blocks) of a
    new request. ``pieces``: the frame as the sender encoded it
    (:func:`~transport.graphsync.framing.encode_frame_pieces`: each large
    block's data a piece of its own); a frame without a ``payload`` of its
    own is that (joined when read), and is delivered as those pieces: the
    receiver decodes every byte but those of the blocks' data, which it
    takes without a copy and hashes (what a zero-copy network stack would
    hand it).
    """

    kind: str
    src: PeerID
    dst: PeerID
    payload: Any = _Payload()  # type: ignore[assignment]
    channel_id: ChannelID | None = None
    request_id: bytes | None = None
    message: Any = None
    status: ResponseStatus | None = None
    error: str | None = None
    links: tuple[Link, ...] = ()
    root: CID | None = None
    skip_blocks: int = 0
    pieces: tuple[bytes, ...] = field(default=(), repr=False, compare=False)

    def _frames(self) -> list[bytes] | list[list[bytes]]:
        """The payload of each graphsync frame this packet carries, for
        :meth:`~transport.graphsync.engine.GraphsyncEngine.handle_frame`:
        the sender's pieces unless a ``payload`` was given (a tamper rule's),
        else the payload's bytes split; raises
        :class:`~transport.graphsync.message.GraphsyncWireError` for bytes
        that are not whole frames."""
        if self.__dict__.get("_payload") is None and self.pieces:
            return split_frame_pieces(list(self.pieces))
        return split_frames(self.payload)

    @property
    def blocks(self) -> tuple[Link, ...]:
        """The entries whose block data the frame carries."""
        return tuple(link for link in self.links if link.sent)

    @property
    def indices(self) -> tuple[int, ...]:
        """The walk indices of the blocks the frame carries."""
        return tuple(link.index for link in self.links if link.sent)

    @property
    def cids(self) -> tuple[CID, ...]:
        """The CIDs of the blocks the frame carries."""
        return tuple(link.cid for link in self.links if link.sent)

    @property
    def terminal(self) -> bool:
        """A response that ends its request (completed, rejected, cancelled, failed)."""
        return self.status is not None and self.status.is_terminal


@dataclass
class NetworkStats:
    """Packet counters by kind.

    ``sent``: accepted by the network (reachable at send time);
    ``delivered``: handed to the destination's engine; ``dropped``: lost to
    a drop rule, a disconnect, a partition or a node going offline;
    ``duplicated`` / ``delayed`` / ``tampered``: touched by those rules
    (``corrupt`` counts as tampered).
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


def _corrupt_blocks(packet: Packet) -> Packet:
    """The frame with a byte of every block's data flipped (prefixes kept:
    the receiver hashes the data into other CIDs than those announced)."""
    [body] = split_frames(packet.payload)
    msg = decode_message(body, verify_blocks=False)
    bad = tuple(
        RawBlock(b.prefix, b.data[:-1] + bytes([b.data[-1] ^ 0xFF]) if b.data else b"\x00")
        for b in msg.blocks
    )
    return replace(packet, payload=encode_frame(replace(msg, blocks=bad)))


def _channel_of(src: PeerID, dst: PeerID, message: Any) -> ChannelID | None:
    """The channel a data-transfer message from ``src`` to ``dst`` names: a
    request comes from the initiator, a response from the responder."""
    if isinstance(message, TransferRequest):
        if message.type == MessageType.RestartExistingChannelRequest:
            return message.restart_channel
        return ChannelID(src, dst, message.transfer_id)
    if isinstance(message, TransferResponse):
        return ChannelID(dst, src, message.transfer_id)
    return None


def _dt_message(extensions: dict[str, Any]) -> Any:
    node = extensions.get(EXTENSION_DATA_TRANSFER)
    if node is None:
        return None
    try:
        return from_node(node)
    except Exception:  # noqa: BLE001 - described as carrying none; the engine refuses it
        return None


@dataclass
class _Walk:
    """What the network saw of one graphsync request: its root and channel,
    and the index of the last entry its responder announced."""

    root: CID | None
    channel_id: ChannelID | None
    position: int = 0


# -- the network --------------------------------------------------------------


class InMemoryNetwork:
    """Many :class:`InMemoryNode` nodes in one process.

    Topology and fault methods are synchronous and may be called at any time
    from the event loop's thread (tests, event callbacks). Nodes are
    connected to each other by default.
    """

    def __init__(self) -> None:
        self._nodes: dict[PeerID, InMemoryNode] = {}
        self._cut: set[frozenset[PeerID]] = set()
        self._partitions: list[tuple[frozenset[PeerID], frozenset[PeerID]]] = []
        self._rules: list[_Rule] = []
        #: (requester, responder, request id) -> what was seen of that request.
        self._walks: dict[tuple[PeerID, PeerID, bytes], _Walk] = {}
        self.stats = NetworkStats()

    # -- nodes ----------------------------------------------------------------

    def transport(self, peer_id: PeerID | bytes, blockstore: Blockstore,
                  **options: Any) -> InMemoryNode:
        """Create node ``peer_id`` (one per peer id): the graphsync engine
        on ``blockstore``, carried by this network. ``options`` go to
        :class:`~transport.graphsync.engine.GraphsyncEngine` (e.g.
        ``max_block_bytes=1`` for one block per message)."""
        peer = PeerID(peer_id)
        if peer in self._nodes:
            raise ValueError(f"a transport for {peer} already exists")
        node = InMemoryNode(self, peer, blockstore, options)
        self._nodes[peer] = node
        return node

    @property
    def nodes(self) -> dict[PeerID, InMemoryNode]:
        return dict(self._nodes)

    def is_online(self, peer: PeerID) -> bool:
        node = self._nodes.get(peer)
        return node is not None and node.online

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
        result must keep the same ``src`` and ``dst``. :meth:`frame` builds a
        graphsync frame to put in a packet's place."""
        self._rules.append(_Rule("tamper", predicate, count, fn))

    def corrupt(self, predicate: Predicate | None = None, count: int | None = None) -> None:
        """Flip a byte of the data of every block in matching ``"blocks"``
        frames (the CIDs they announce are unchanged)."""

        def match(packet: Packet) -> bool:
            return packet.kind == "blocks" and (predicate is None or predicate(packet))

        self.tamper(_corrupt_blocks, match, count)

    def clear_faults(self) -> None:
        """Remove every drop/delay/duplicate/tamper rule."""
        self._rules.clear()

    # -- describing frames ----------------------------------------------------

    def frame(self, src: PeerID, dst: PeerID, msg: GraphsyncMessage) -> Packet:
        """The packet carrying graphsync message ``msg`` from ``src`` to
        ``dst``, described (a tamper rule's replacement, or a frame a test
        sends itself). It changes nothing the network knows of the requests
        (the indices of its entries are those the walks stand at)."""
        return self._describe(PeerID(src), PeerID(dst), msg, track=False)

    def _describe(self, src: PeerID, dst: PeerID, msg: GraphsyncMessage, *,
                  track: bool) -> Packet:
        pieces = tuple(encode_frame_pieces(msg))
        if msg.responses:
            return self._describe_response(src, dst, msg, pieces, track)
        if not msg.requests:
            return Packet("response", src, dst, pieces=pieces)
        req = msg.requests[0]
        key = (src, dst, req.id)
        walk = self._walks.get(key)
        kind = {RequestType.NEW: "request", RequestType.UPDATE: "update",
                RequestType.CANCEL: "cancel"}[req.type]
        message = _dt_message(req.extensions)
        chid = walk.channel_id if walk is not None else None
        skip = 0
        if req.type is RequestType.NEW:
            chid = _channel_of(src, dst, message) or chid
            if walk is None and track:
                # a resume sends the same request again: the walk goes on
                self._walks[key] = _Walk(req.root, chid)
            if EXTENSION_DO_NOT_SEND_FIRST_BLOCKS in req.extensions:
                try:
                    skip = decode_do_not_send_first_blocks(
                        req.extensions[EXTENSION_DO_NOT_SEND_FIRST_BLOCKS])
                except Exception:  # noqa: BLE001 - malformed: described as none
                    skip = 0
        return Packet(kind, src, dst, None, chid, req.id, message, root=req.root,
                      skip_blocks=skip, pieces=pieces)

    def _describe_response(self, src: PeerID, dst: PeerID, msg: GraphsyncMessage,
                           pieces: tuple[bytes, ...], track: bool) -> Packet:
        rsp = msg.responses[0]
        key = (dst, src, rsp.request_id)
        walk = self._walks.get(key)
        carried = {b.cid for b in msg.blocks if isinstance(b, Block)}
        position = walk.position if walk is not None else 0
        links = []
        for link, action in rsp.metadata:
            if walk is not None:
                # a walk starts at the root, which no block below it can be
                position = 1 if link == walk.root else position + 1
            sent = action is LinkAction.PRESENT and link in carried
            links.append(Link(position, link, sent))
        if walk is not None and track:
            walk.position = position
            if rsp.status.is_terminal:
                del self._walks[key]
        error = rsp.extensions.get(EXTENSION_ERROR)
        return Packet(
            "blocks" if msg.blocks else "response", src, dst, None,
            walk.channel_id if walk is not None else None, rsp.request_id,
            _dt_message(rsp.extensions), rsp.status,
            error if isinstance(error, str) else None, tuple(links), pieces=pieces,
        )

    # -- internals ------------------------------------------------------------

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

    def _forget_walks(self, a: PeerID, b: PeerID | None = None) -> None:
        """Forget the requests between ``a`` and ``b`` (any peer if None):
        they ended with the connection."""
        for key in [k for k in self._walks
                    if a in k[:2] and (b is None or b in k[:2])]:
            del self._walks[key]

    def _sever(self, a: PeerID, b: PeerID, why: str) -> None:
        self._forget_walks(a, b)
        node_a, node_b = self._nodes.get(a), self._nodes.get(b)
        if node_a is not None and node_a.online:
            node_a._sever_peer(b, f"{why}: lost connection to {b}")
        if node_b is not None and node_b.online:
            node_b._sever_peer(a, f"{why}: lost connection to {a}")

    def _node_offline(self, peer: PeerID) -> None:
        self._forget_walks(peer)
        for other, node in self._nodes.items():
            if other != peer and node.online:
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


# -- the nodes ------------------------------------------------------------------


class InMemoryNode(EngineCarrier):
    """One node of an :class:`InMemoryNetwork`: a
    :class:`~transport.graphsync.engine.GraphsyncEngine` whose messages cross
    the network as packets (see the module docs). Online while it serves."""

    def __init__(self, network: InMemoryNetwork, peer: PeerID, blockstore: Blockstore,
                 options: dict[str, Any]) -> None:
        async def send(dst: PeerID, msg: GraphsyncMessage) -> None:
            network._send(network._describe(peer, PeerID(dst), msg, track=True))

        async def send_dt(dst: PeerID, message: Any) -> None:
            dst = PeerID(dst)
            network._send(Packet("message", peer, dst, message, _channel_of(peer, dst, message),
                                 message=message))

        super().__init__(GraphsyncEngine(peer, blockstore, send, send_dt, **options))
        self._net = network
        self._online = False
        self._inbox = _Inbox(network.stats, self._deliver)

    @property
    def network(self) -> InMemoryNetwork:
        return self._net

    @property
    def online(self) -> bool:
        """Serving: packets to and from this node are accepted."""
        return self._online

    def resources(self) -> dict[str, int]:
        """The engine's per-channel structures, and the links holding
        delayed packets for this node (all 0 when idle)."""
        return {**super().resources(), "inbox": len(self._inbox)}

    def is_idle(self) -> bool:
        return super().is_idle() and not self._inbox

    def _attach(self) -> None:
        self._online = True

    def _detach(self) -> None:
        self._online = False
        self._inbox.drop_all()
        self._net._node_offline(self.peer_id)

    def _accept(self, packet: Packet, delay: float) -> None:
        self._inbox.accept(packet, delay, self._tg, self._online)

    def _deliver(self, packet: Packet) -> None:
        self._net.stats.delivered[packet.kind] += 1
        if packet.kind == "message":
            self.engine.handle_dt_message(packet.src, packet.payload)
            return
        try:
            for payload in packet._frames():
                self.engine.handle_frame(packet.src, payload)
        except GraphsyncWireError:
            pass  # counted and refused by the engine (a stream reset on libp2p)

    def _sever_peer(self, peer: PeerID, reason: str) -> None:
        self._inbox.drop(peer)
        self.engine.peer_lost(peer, reason)
