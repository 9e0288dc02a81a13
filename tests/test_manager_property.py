"""Stateful property test: two or three Managers on the graphsync engine,
carried by the in-memory network (one block per graphsync message).

Hypothesis drives random operations against real Managers running in an
event loop on a background thread (an anyio blocking portal, one per
example): open pushes and pulls of random DAGs with random selectors and
opening vouchers, pause and resume from either side, send vouchers, cancel,
restart channels, disconnect / reconnect / partition peers, inject
duplicate, delay and drop faults into each kind of packet (data-transfer
messages, graphsync requests, updates, cancels, frames of blocks and other
responses), stop a node and start it again from its channel store, and let
time pass.

Invariants, checked when the example ends:

* every event a node published is legal under the state table: for each
  channel, consecutive snapshots ``(before, event, after)`` have a row
  ``resolve(before.status, event)`` and ``after.status`` is that row's
  target (unchanged for re-enter / record rows); the first event of a
  channel is ``Open`` into ``Requested``;
* byte counters (queued, sent, received) never exceed the size of the
  blocks the channel's selector loads;
* once quiet (network healed, every node running, every pause this test
  made released, every voucher the responder asks for paid), every channel
  is final on both sides within a bounded time, and the two sides agree: a
  channel Completed on one side is Completed on the other. Three outcomes
  no protocol avoids are allowed:

  - Cancelled / Completed when this test cancelled on the Cancelled side
    before it knew of the success (a cancel crossing the completion; a
    cancel from Completing is refused and so never allowed);
  - initiator Failed / responder Completed when the initiator ran out of
    restarts on an outage (responder unreachable, or its own node
    restarted again and again without moving data) after the responder
    had finished;
  - initiator Failed / responder Completed when the initiator failed on
    its own timeout before the responder started completing, tried to
    announce it with a cancel (or its node stopped first), and the cancel
    did not reach the responder before it completed (lost to an outage or
    a fault, or crossing the completion). Taps on every node's
    ``send_message`` and on its Manager's ``on_message`` record the
    announcements;

* the receiver of a Completed channel holds every block the selector
  reaches from the root (computed over the sender's store), each verified
  against its CID;
* once quiet, every transport holds no channel state;
* after the nodes stop, no task is left in the event loop and no event-bus
  worker thread is left running.

Plain tests at the end pin the bugs this machine found.
"""

from __future__ import annotations

import inspect
import itertools
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import anyio
import hypothesis
import pytest
from _support import (
    DEADLINE,
    LabelVoucher,
    NoteResult,
    PayEveryN,
    Payment,
    ScriptedValidator,
    harness,
    make_dag,
    quiesce,
)
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    multiple,
    rule,
)

from datatransfer.config import ManagerConfig
from datatransfer.errors import ChannelNotFound, Unsupported
from datatransfer.ipld.block import Block
from datatransfer.ipld.blockstore import MemoryBlockstore
from datatransfer.ipld.cid import CID
from datatransfer.ipld.selector import ALL_SELECTOR_NODE, blocks
from datatransfer.manager import Manager
from datatransfer.messages import MessageType, TransferRequest, TransferResponse
from datatransfer.store import ChannelStore, SqliteChannelStore
from datatransfer.types import ChannelID, ChannelState, Event, PeerID
from statemachine import FINAL_STATUSES, EventCode, IllegalTransition, Kind, Status, resolve
from transport.inmem import PACKET_KINDS, InMemoryNetwork, InMemoryNode

S = Status
E = EventCode

#: Small timeouts so a stuck channel ends quickly; restarts retried fast.
CONFIG = ManagerConfig(
    accept_timeout=0.6,
    no_progress_timeout=0.6,
    finalization_timeout=0.6,
    max_restarts=5,
    restart_backoff=0.02,
    max_restart_backoff=0.2,
    tick=0.02,
    send_timeout=1.0,
)
#: Longest a single operation on the event loop may take.
OP_TIMEOUT = DEADLINE
#: Longest the channels may take to become final once the network is quiet:
#: a few rounds of every timeout plus the whole restart backoff (generous: a
#: loaded machine).
SETTLE_TIMEOUT = DEADLINE
#: The application pays this much whenever a responder asks for money.
ENOUGH = 10**12
#: Statuses in which an initiator may be waiting for a voucher from its app.
AWAITING_VOUCHER = frozenset(
    {S.Requested, S.ResponderPaused, S.BothPaused, S.ResponderFinalizing,
     S.ResponderFinalizingTransferFinished}
)
#: Errors an application action may raise on a channel that ended or that
#: this node does not know (yet), or a pause of a request the responder has
#: not accepted yet (Unsupported): legal refusals, not bugs.
REFUSALS: tuple[type[Exception], ...] = (IllegalTransition, ChannelNotFound, Unsupported)

NAMES = ("a", "b", "c")
#: The event loop the Managers run on (``PROPERTY_BACKEND=trio`` to soak trio).
BACKEND = os.environ.get("PROPERTY_BACKEND", "asyncio")


def peer_of(name: str) -> PeerID:
    return PeerID(b"\x00\x08" + name.encode().ljust(8, b"_"))


# ------------------------------------------------------------------ selectors

RECURSE_ALL = {"a": {">": {"@": {}}}}


def _recursive(depth: int | None) -> dict:
    limit = {"none": {}} if depth is None else {"depth": depth}
    return {"R": {"l": limit, ":>": RECURSE_ALL}}


def _extend(inner: st.SearchStrategy[dict]) -> st.SearchStrategy[dict]:
    """Selectors into the dag-cbor ``children`` list of a make_dag node."""
    index = st.builds(
        lambda i, nxt: {"f": {"f>": {"children": {"i": {"i": i, ">": nxt}}}}},
        st.integers(0, 4), inner,
    )
    span = st.builds(
        lambda a, n, nxt: {"f": {"f>": {"children": {"r": {"^": a, "$": a + n, ">": nxt}}}}},
        st.integers(0, 3), st.integers(1, 3), inner,
    )
    every = st.builds(lambda nxt: {"a": {">": nxt}}, inner)
    return st.one_of(index, span, every)


SELECTORS: st.SearchStrategy[dict] = st.recursive(
    st.one_of(
        st.just(ALL_SELECTOR_NODE),
        st.builds(_recursive, st.none() | st.integers(0, 3)),
        st.just({".": {}}),
    ),
    _extend,
    max_leaves=3,
)


# ------------------------------------------------------------------ bookkeeping


@dataclass
class Log:
    """Every (event, state) one node's subscriber saw, across restarts."""

    events: list[tuple[Event, ChannelState]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, event: Event, state: ChannelState) -> None:
        with self.lock:
            self.events.append((event, state))

    def snapshot(self) -> list[tuple[Event, ChannelState]]:
        with self.lock:
            return list(self.events)


@dataclass
class NodeBox:
    name: str
    peer: PeerID
    blockstore: MemoryBlockstore
    store: ChannelStore
    transport: InMemoryNode
    validator: ScriptedValidator
    revalidator: PayEveryN | None
    log: Log = field(default_factory=Log)
    manager: Manager | None = None
    stop: Any = None
    future: Any = None
    #: Channels this node's application paused and has not resumed.
    paused: set[ChannelID] = field(default_factory=set)
    #: Data-transfer cancels this node's Manager tried to send, sent or not
    #: (the peer may be unreachable): (channel, time.time()).
    cancels_sent: list[tuple[ChannelID, float]] = field(default_factory=list)
    #: Data-transfer cancels handed to this node's Manager: (channel, time.time()).
    cancels_received: list[tuple[ChannelID, float]] = field(default_factory=list)
    #: When this node's Manager was stopped (pending sends die with it).
    stopped_at: list[float] = field(default_factory=list)

    @property
    def running(self) -> bool:
        return self.manager is not None


@dataclass(frozen=True)
class ChannelInfo:
    """What the test knows about a channel it opened."""

    chid: ChannelID
    initiator: str
    responder: str
    sender: str
    receiver: str
    is_pull: bool
    root: CID
    selector: Any
    #: The blocks the selector loads, in order (duplicates included).
    expected: tuple[tuple[CID, bytes], ...]

    @property
    def limit(self) -> int:
        return sum(len(data) for _, data in self.expected)

    def side(self, which: str) -> str:
        return self.initiator if which == "initiator" else self.responder

    def __repr__(self) -> str:
        kind = "pull" if self.is_pull else "push"
        return f"<{kind} {self.initiator}->{self.responder} #{self.chid.id}>"


async def _bounded(fn: Callable[..., Any], *args: Any, timeout: float) -> Any:
    with anyio.fail_after(timeout):
        result = fn(*args)
        if inspect.isawaitable(result):
            result = await result
        return result


def _event_worker_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("dt-events-") and t.is_alive()]


def _cancelled_channel(me: PeerID, other: PeerID, message: Any, *, sent: bool) -> ChannelID | None:
    """The channel a data-transfer Cancel message ends (None for any other
    message): a request comes from the initiator, a response from the responder."""
    if not isinstance(message, TransferRequest | TransferResponse):
        return None
    if message.type != MessageType.Cancel:
        return None
    from_initiator = isinstance(message, TransferRequest)
    initiator = (me if sent else other) if from_initiator else (other if sent else me)
    responder = other if initiator == me else me
    return ChannelID(initiator, responder, message.transfer_id)


def _tap_cancels(box: NodeBox) -> None:
    """Record every data-transfer Cancel ``box``'s Managers try to send."""
    send = box.transport.send_message

    async def send_message(peer: PeerID, message: Any) -> None:
        chid = _cancelled_channel(box.peer, PeerID(peer), message, sent=True)
        if chid is not None:
            box.cancels_sent.append((chid, time.time()))
        await send(peer, message)

    box.transport.send_message = send_message  # type: ignore[method-assign]


class _TappedManager(Manager):
    """A Manager that records the data-transfer Cancels handed to it."""

    def __init__(self, box: NodeBox, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        on_message = self.transport_events.on_message

        async def tapped(sender: PeerID, message: Any) -> None:
            chid = _cancelled_channel(box.peer, sender, message, sent=False)
            if chid is not None:
                box.cancels_received.append((chid, time.time()))
            await on_message(sender, message)

        self.transport_events.on_message = tapped  # type: ignore[method-assign]


# ------------------------------------------------------------------ the machine


#: How a channel is opened: the initiator (index), the responder (offset
#: from it), the DAG (make_dag parameters), the selector and the label of
#: the opening voucher (what the ScriptedValidator answers).
OPEN_ARGS = {
    "ini": st.integers(0, 5),
    "offset": st.integers(1, 2),
    "leaves": st.integers(1, 10),
    "leaf_size": st.integers(1, 1500),
    "fanout": st.integers(2, 4),
    "selector": SELECTORS,
    "label": st.sampled_from(["ok", "ok", "ok", "ok", "pause", "retry", "reject"]),
}


class _NodeCrashed(Exception):
    """The Manager called into had crashed (reported in teardown)."""


class ManagersMachine(RuleBasedStateMachine):
    channels = Bundle("channels")

    def __init__(self) -> None:
        super().__init__()
        self._portal_cm = start_blocking_portal(BACKEND)
        self.portal: BlockingPortal = self._portal_cm.__enter__()
        self.net = InMemoryNetwork()
        self.nodes: list[NodeBox] = []
        self.infos: list[ChannelInfo] = []
        self.seeds = itertools.count(1)
        self.crashes: list[tuple[str, BaseException]] = []
        #: (node, channel) pairs this test asked to cancel.
        self.cancelled: set[tuple[str, ChannelID]] = set()
        self.baseline_tasks = self.portal.call(_count_tasks)

    # -- plumbing -----------------------------------------------------------

    def call(self, fn: Callable[..., Any], *args: Any, timeout: float = OP_TIMEOUT) -> Any:
        """Run ``fn(*args)`` (sync or async) on the event loop, bounded."""
        return self.portal.call(partial_bounded(fn, args, timeout))

    def node(self, i: int) -> NodeBox:
        return self.nodes[i % len(self.nodes)]

    def _transport(self, peer: PeerID, blockstore: MemoryBlockstore) -> Any:
        # one block per graphsync message: faults aimed at frames of blocks
        # hit single blocks
        return self.net.transport(peer, blockstore, max_block_bytes=1)

    async def _serve(self, box: NodeBox, *, task_status: Any) -> None:
        manager = _TappedManager(box, box.transport, store=box.store, config=CONFIG)
        manager.register_voucher_result_type(NoteResult)
        manager.register_voucher_type(LabelVoucher, box.validator)
        if box.revalidator is not None:
            manager.register_revalidator(Payment, box.revalidator)
        manager.subscribe(box.log)
        stop = anyio.Event()
        async with manager:
            task_status.started((manager, stop))
            await stop.wait()

    def start_node(self, box: NodeBox) -> None:
        assert not box.running
        future, (manager, stop) = self.portal.start_task(self._serve, box)
        box.future, box.manager, box.stop = future, manager, stop

    def stop_node(self, box: NodeBox) -> None:
        assert box.running
        box.manager = None
        box.stopped_at.append(time.time())
        self.portal.call(box.stop.set)
        try:
            box.future.result(timeout=OP_TIMEOUT)  # re-raises whatever ended the Manager
        except BaseException as exc:  # noqa: BLE001 - reported in teardown
            self.crashes.append((box.name, exc))

    def check_alive(self) -> None:
        """Note a Manager that ended on its own (a crash); the node then stays
        down and the example fails in teardown. Failing here instead would
        make the steps drawn depend on when the crash happens."""
        for box in self.nodes:
            if box.running and box.future.done():
                box.manager = None
                exc = box.future.exception()
                self.crashes.append((box.name, exc or AssertionError(
                    f"the Manager of node {box.name} stopped on its own")))

    def app(self, box: NodeBox, method: str, *args: Any) -> bool:
        """An application action; legal refusals return False."""
        assert box.manager is not None
        try:
            self.guarded(box, getattr(box.manager, method), *args)
        except (*REFUSALS, _NodeCrashed):
            return False
        return True

    def guarded(self, box: NodeBox, fn: Callable[..., Any], *args: Any) -> Any:
        """Call into ``box``'s Manager; if it crashed meanwhile, whatever the
        call raised is a consequence (the crash is reported in teardown)."""
        try:
            result = self.call(fn, *args)
        except Exception:
            self.check_alive()
            if not box.running:
                raise _NodeCrashed from None
            raise
        self.check_alive()
        return result

    # -- setup ----------------------------------------------------------------

    @initialize(
        target=channels,
        revalidators=st.lists(
            st.none() | st.tuples(st.integers(200, 8000), st.booleans()),
            min_size=2, max_size=3,
        ),
        first=st.fixed_dictionaries(OPEN_ARGS),
    )
    def setup(self, revalidators: list[tuple[int, bool] | None], first: dict) -> Any:
        for name, reval in zip(NAMES, revalidators, strict=False):
            peer = peer_of(name)
            blockstore = MemoryBlockstore()
            box = NodeBox(
                name=name,
                peer=peer,
                blockstore=blockstore,
                store=SqliteChannelStore(),
                transport=self._transport(peer, blockstore),
                validator=ScriptedValidator(),
                revalidator=None if reval is None else PayEveryN(*reval),
            )
            _tap_cancels(box)
            self.nodes.append(box)
            self.start_node(box)
        return self._open(**first)

    # -- opening --------------------------------------------------------------

    @rule(target=channels, **OPEN_ARGS)
    def open_pull(self, **args: Any) -> Any:
        return self._open(pull=True, **args)

    @rule(target=channels, **OPEN_ARGS)
    def open_push(self, **args: Any) -> Any:
        return self._open(pull=False, **args)

    def _open(self, ini: int, offset: int, leaves: int, leaf_size: int, fanout: int,
              selector: Any, label: str, pull: bool | None = None) -> Any:
        if pull is None:
            pull = bool(ini & 1)
        initiator = self.node(ini)
        responder = self.node(ini + (offset if len(self.nodes) == 3 else 1))
        if not initiator.running:
            return multiple()
        sender = responder if pull else initiator
        receiver = initiator if pull else responder
        seed = next(self.seeds)

        def build() -> tuple[CID, tuple[tuple[CID, bytes], ...]]:
            root, _, _ = make_dag(sender.blockstore, leaves, leaf_size, fanout, seed)
            return root, tuple(blocks(root, selector, sender.blockstore.get))

        root, expected = self.call(build)
        method = "open_pull_channel" if pull else "open_push_channel"
        manager = initiator.manager
        assert manager is not None
        try:
            chid = self.guarded(initiator, getattr(manager, method), responder.peer,
                                LabelVoucher(label), root, selector)
        except _NodeCrashed:
            return multiple()
        info = ChannelInfo(chid, initiator.name, responder.name, sender.name, receiver.name,
                           pull, root, selector, expected)
        self.infos.append(info)
        return info

    # -- application actions --------------------------------------------------

    def _side(self, info: ChannelInfo, which: str) -> NodeBox | None:
        box = next(b for b in self.nodes if b.name == info.side(which))
        return box if box.running else None

    @rule(info=channels, which=st.sampled_from(["initiator", "responder"]))
    def pause(self, info: ChannelInfo, which: str) -> None:
        box = self._side(info, which)
        if box is not None:
            box.paused.add(info.chid)  # even if refused midway, resume it later
            self.app(box, "pause_channel", info.chid)

    @rule(info=channels, which=st.sampled_from(["initiator", "responder"]))
    def resume(self, info: ChannelInfo, which: str) -> None:
        box = self._side(info, which)
        if box is not None and self.app(box, "resume_channel", info.chid):
            box.paused.discard(info.chid)

    @rule(info=channels, which=st.sampled_from(["initiator", "responder"]))
    def cancel(self, info: ChannelInfo, which: str) -> None:
        box = self._side(info, which)
        if box is not None:
            self.cancelled.add((box.name, info.chid))
            self.app(box, "close_channel", info.chid)

    @rule(info=channels, which=st.sampled_from(["initiator", "responder"]))
    def restart_channel(self, info: ChannelInfo, which: str) -> None:
        box = self._side(info, which)
        if box is not None:
            self.app(box, "restart_channel", info.chid)

    @rule(
        info=channels,
        voucher=st.one_of(
            st.builds(Payment, st.sampled_from([0, 1, 1000, ENOUGH])),
            st.builds(LabelVoucher, st.sampled_from(["ok", "pause", "retry", "reject"])),
        ),
    )
    def send_voucher(self, info: ChannelInfo, voucher: Any) -> None:
        box = self._side(info, "initiator")
        if box is not None:
            self.app(box, "send_voucher", info.chid, voucher)

    # -- network and nodes ------------------------------------------------------

    @rule(i=st.integers(0, 2), j=st.integers(1, 2), isolate=st.booleans())
    def cut(self, i: int, j: int, isolate: bool) -> None:
        """Disconnect two nodes, or partition one from the others."""
        a, b = self.node(i), self.node(i + j)
        if isolate:
            rest = [box.peer for box in self.nodes if box is not a]
            self.call(self.net.partition, [a.peer], rest)
        elif a is not b:
            self.call(self.net.disconnect, a.peer, b.peer)
        self.check_alive()

    @rule(i=st.integers(0, 2), j=st.integers(1, 2), heal=st.booleans())
    def mend(self, i: int, j: int, heal: bool) -> None:
        """Reconnect two nodes, or remove every partition."""
        if heal:
            self.call(self.net.heal)
        else:
            self.call(self.net.connect, self.node(i).peer, self.node(i + j).peer)

    @rule(
        action=st.sampled_from(["duplicate", "delay", "drop"]),
        kind=st.sampled_from(PACKET_KINDS),
        count=st.integers(1, 3),
    )
    def fault(self, action: str, kind: str, count: int) -> None:
        def match(packet: Any) -> bool:
            return packet.kind == kind

        if action == "duplicate":
            self.call(self.net.duplicate, match, count)
        elif action == "drop":  # lost without a disconnect: restarts must recover
            self.call(self.net.drop, match, count)
        else:
            self.call(self.net.delay, 0.02, match, count)

    @rule(i=st.integers(0, 2))
    def stop_or_start(self, i: int) -> None:
        """Stop a running node (its Manager leaves, its store stays), or start
        a stopped one again from its store."""
        box = self.node(i)
        if box.running:
            self.stop_node(box)
        else:
            self.start_node(box)
        self.check_alive()

    @rule(seconds=st.sampled_from([0.0, 0.005, 0.02, 0.05, 0.1]))
    def sleep(self, seconds: float) -> None:
        self.call(anyio.sleep, seconds)
        self.check_alive()

    # -- once quiet -------------------------------------------------------------

    async def _settle(self) -> list[str]:
        """Act as a well-behaved application until every channel is final;
        returns what is still not final at the deadline."""
        nudged: dict[tuple[str, ChannelID], tuple[int, float, int]] = {}
        with anyio.move_on_after(SETTLE_TIMEOUT):
            while True:
                pending: list[str] = []
                for box in self.nodes:
                    manager = box.manager
                    assert manager is not None
                    for chid in list(box.paused):
                        box.paused.discard(chid)
                        try:
                            await manager.resume_channel(chid)
                        except REFUSALS:
                            pass
                    for chid, state in manager.channels().items():
                        if state.status in FINAL_STATUSES:
                            continue
                        pending.append(f"{box.name}: {chid.id} {state.status.name}")
                        if state.is_initiator and state.status in AWAITING_VOUCHER:
                            await self._pay(box, manager, state, nudged)
                if not pending:
                    return []
                await anyio.sleep(0.02)
        return pending

    async def _pay(self, box: NodeBox, manager: Manager, state: ChannelState,
                   nudged: dict) -> None:
        result = state.last_voucher_result
        note = result.note if isinstance(result, NoteResult) else ""
        if note == "send another voucher":
            voucher: Any = LabelVoucher("ok")
        elif note.startswith(("pay", "final", "paused")):
            voucher = Payment(ENOUGH)
        else:
            return
        # Pay once per request (a new voucher result); repeat a few times if
        # nothing answers (the voucher may have crossed a restart).
        key = (box.name, state.channel_id)
        seen, when, repeats = nudged.get(key, (-1, 0.0, 0))
        now = time.monotonic()
        if seen == len(state.voucher_results):
            if now - when < 0.3 or repeats >= 3:
                return
            repeats += 1
        else:
            repeats = 0
        nudged[key] = (len(state.voucher_results), now, repeats)
        try:
            await manager.send_voucher(state.channel_id, voucher)
        except REFUSALS:
            pass

    def teardown(self) -> None:
        failing = sys.exc_info()[1] is not None
        try:
            if not failing and self.nodes:
                self.check_quiet()
        finally:
            try:
                for box in self.nodes:
                    if box.running:
                        self.stop_node(box)
                if not failing:
                    leftover = self.portal.call(_count_tasks)
                    assert leftover == self.baseline_tasks, (
                        f"{leftover - self.baseline_tasks} tasks left in the event loop")
                    assert not _event_worker_threads(), "event-bus workers left running"
            finally:
                for box in self.nodes:
                    box.store.close()
                try:
                    self.portal.call(self.portal.stop, failing)
                finally:
                    self._portal_cm.__exit__(None, None, None)

    def check_quiet(self) -> None:
        self.check_alive()
        self.raise_crash()
        self.call(self.net.clear_faults)
        self.call(self.net.heal)
        for a, b in itertools.combinations(self.nodes, 2):
            self.call(self.net.connect, a.peer, b.peer)
        for box in self.nodes:
            if not box.running:
                self.start_node(box)
        pending = self.call(self._settle, timeout=SETTLE_TIMEOUT + OP_TIMEOUT)
        self.check_alive()
        self.raise_crash()
        for box in self.nodes:
            assert box.manager is not None
            assert box.manager.events.flush(DEADLINE)
        self.check_events()
        assert not pending, "channels not final once quiet: {}\n{}".format(
            pending, "\n".join(self.history(info) for info in self.infos
                               if any(f": {info.chid.id} " in p for p in pending)))
        self.check_agreement()
        self.check_transports_idle()

    def raise_crash(self) -> None:
        if self.crashes:
            name, exc = self.crashes[0]
            raise AssertionError(f"the Manager of node {name} crashed") from exc

    def check_events(self) -> None:
        limits = {info.chid: info.limit for info in self.infos}
        for box in self.nodes:
            last: dict[ChannelID, ChannelState] = {}
            for event, state in box.log.snapshot():
                chid = state.channel_id
                where = f"node {box.name}, channel {chid.id}: {event.code.name}"
                before = last.get(chid)
                if before is None:
                    assert event.code is E.Open, f"{where} is the channel's first event"
                    assert state.status is S.Requested, f"{where} -> {state.status.name}"
                else:
                    try:
                        row = resolve(before.status, event.code)
                    except IllegalTransition:
                        raise AssertionError(
                            f"{where} published in {before.status.name}, which has no row "
                            "for it") from None
                    expected = row.target if row.kind is Kind.MOVE else before.status
                    assert state.status is expected, (
                        f"{where}: {before.status.name} -> {state.status.name}, the table "
                        f"says {expected.name}")
                limit = limits.get(chid)
                if limit is not None:
                    for counter in ("queued", "sent", "received"):
                        value = getattr(state, counter)
                        assert value <= limit, (
                            f"{where}: {counter}={value} exceeds the {limit} bytes the "
                            "selector reaches")
                last[chid] = state

    def check_agreement(self) -> None:
        by_name = {box.name: box for box in self.nodes}
        for info in self.infos:
            sides = {}
            for name in (info.initiator, info.responder):
                manager = by_name[name].manager
                assert manager is not None
                sides[name] = manager.channel_status(info.chid)
            ini, resp = sides[info.initiator], sides[info.responder]
            hypothesis.event(f"channel outcome: {ini.name}/{resp.name}")
            if {ini, resp} == {S.Completed, S.Cancelled}:
                # The app's cancel crossed the other side's completion: the
                # canceller ends Cancelled, the other side had Completed
                # already; no protocol can avoid that. Allowed only when this
                # test cancelled on the Cancelled side before that side knew
                # of the success (not from Completing).
                by = info.initiator if ini is S.Cancelled else info.responder
                if (by, info.chid) in self.cancelled and \
                        self.status_before(by, info.chid, E.Cancel) is not S.Completing:
                    continue
            if ini is S.Failed and resp is S.Completed and self.gave_up_on_outage(info):
                # The network (or a node) stayed down, or the initiator's node
                # restarted, more than the initiator's restart budget allows
                # after the responder had finished: no protocol agrees across
                # an outage longer than its retries (two generals).
                hypothesis.event("initiator gave up on an outage; the responder completed")
                continue
            if ini is S.Failed and resp is S.Completed and self.announcement_lost(info):
                # The initiator failed on its own (a timeout) and announced it,
                # but the cancel never reached the responder before it
                # completed: lost to an outage or a fault, or crossing the
                # responder's completion (two generals again).
                hypothesis.event("initiator's failure announcement lost; responder completed")
                continue
            if S.Completed in (ini, resp):
                assert ini is resp, (
                    f"{info!r}: initiator {info.initiator} ended {ini.name}, responder "
                    f"{info.responder} ended {resp.name}\n{self.history(info)}")
                receiver = by_name[info.receiver].blockstore
                for cid, _ in info.expected:
                    assert receiver.has(cid), f"{info!r}: receiver lacks block {cid}"
                    cid.verify(receiver.get(cid))

    def gave_up_on_outage(self, info: ChannelInfo) -> bool:
        """The initiator failed because its restarts ran out while the
        responder could not be reached, or because its own node restarted
        that many times in a row without a block moving in between."""
        manager = next(b for b in self.nodes if b.name == info.initiator).manager
        assert manager is not None
        message = manager.channel_state(info.chid).message
        return message.startswith("gave up after") and (
            "unreachable" in message or message.endswith("node restarted"))

    def announcement_lost(self, info: ChannelInfo) -> bool:
        """The initiator failed on one of its own timeouts (or ran out of
        restarts) before the responder started completing; it tried to tell
        the responder (or its node stopped before it could); and the cancel
        did not reach the responder's Manager before the responder's channel
        was Completed (lost to an outage or a fault, or crossing it)."""
        boxes = {b.name: b for b in self.nodes}
        ini, resp = boxes[info.initiator], boxes[info.responder]

        def first(box: NodeBox, status: Status) -> Event | None:
            for ev, state in box.log.snapshot():
                if state.channel_id == info.chid and state.status is status:
                    return ev
            return None

        failed = first(ini, S.Failing)
        completing = first(resp, S.Completing)
        completed = first(resp, S.Completed)
        if failed is None or completing is None or completed is None:
            return False
        if not failed.message.startswith(("timed out after", "no progress for",
                                          "gave up after")):
            return False
        if failed.timestamp >= completing.timestamp:
            return False
        tried = any(chid == info.chid and when >= failed.timestamp
                    for chid, when in ini.cancels_sent)
        stopped = any(when >= failed.timestamp for when in ini.stopped_at)
        if not (tried or stopped):
            return False  # a local failure must be announced
        reached = [when for chid, when in resp.cancels_received if chid == info.chid]
        return all(when >= completed.timestamp for when in reached)

    def status_before(self, name: str, chid: ChannelID, code: EventCode) -> Status | None:
        """The status of ``chid`` on node ``name`` when ``code`` first fired."""
        box = next(b for b in self.nodes if b.name == name)
        before = None
        for ev, state in box.log.snapshot():
            if state.channel_id == chid:
                if ev.code is code:
                    return before
                before = state.status
        return None

    def history(self, info: ChannelInfo) -> str:
        """Both sides' events for one channel, for failure messages."""
        lines = []
        for box in self.nodes:
            if box.name not in (info.initiator, info.responder):
                continue
            lines.append(f"-- node {box.name}:")
            for event, state in box.log.snapshot():
                if state.channel_id == info.chid:
                    text = f" ({event.message})" if event.message else ""
                    lines.append(f"   {event.code.name} -> {state.status.name}{text}")
        return "\n".join(lines)

    def check_transports_idle(self) -> None:
        deadline = time.monotonic() + DEADLINE
        while True:
            busy = {box.name: self.call(box.transport.resources) for box in self.nodes
                    if not self.call(box.transport.is_idle)}
            if not busy or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        assert not busy, f"transport state left once every channel is final: {busy}"


def partial_bounded(fn: Callable[..., Any], args: tuple, timeout: float):
    async def run() -> Any:
        return await _bounded(fn, *args, timeout=timeout)

    return run


async def _count_tasks() -> int:
    return len(anyio.get_running_tasks())


TestManagers = pytest.mark.timeout(600)(ManagersMachine.TestCase)


# ------------------------------------------------------------------ regressions
#
# Minimal deterministic reproductions of what the machine above found.

#: Timeouts that never fire in these tests unless a test relies on one.
STEADY = replace(CONFIG, accept_timeout=5, no_progress_timeout=5, finalization_timeout=5)


def _validating(manager: Manager) -> None:
    manager.register_voucher_type(LabelVoucher, ScriptedValidator())
    manager.register_revalidator(Payment, PayEveryN(10**9))


async def _wait_known(manager: Manager, chid: ChannelID) -> ChannelState:
    """Wait until the responder knows the channel, then until it is final."""
    with anyio.fail_after(DEADLINE):
        while manager.channel_status(chid) is S.ChannelNotFoundError:
            await anyio.sleep(0.005)
    return await manager.wait(chid, timeout=DEADLINE)


@pytest.mark.anyio
async def test_voucher_arriving_after_the_responder_completed_is_ignored():
    """A voucher the initiator sent while the responder was completing (the
    two messages crossed) reached a Completed channel: ``_receive_voucher``
    fired NewVoucher with ``_fire``, the table refused it, and the
    IllegalTransition took the responder's whole Manager down."""
    async with harness(STEADY) as h:
        a = await h.node("a", setup=_validating)
        b = await h.node("b", setup=_validating)
        root, _, _ = make_dag(b.blockstore, leaves=2)
        chid = await a.manager.open_pull_channel(b.peer, LabelVoucher(), root, ALL_SELECTOR_NODE)
        assert (await a.manager.wait(chid, timeout=DEADLINE)).status is S.Completed
        assert (await b.manager.wait(chid, timeout=DEADLINE)).status is S.Completed
        late = TransferRequest(type=MessageType.Voucher, transfer_id=chid.id,
                               voucher=Payment(5).to_node(), voucher_type=Payment.type_id)
        await a.manager.transport.send_message(b.peer, late)
        await quiesce(0.05)
        assert b.manager.channel_status(chid) is S.Completed
        # b still serves
        again = await a.manager.open_pull_channel(b.peer, LabelVoucher(), root,
                                                  ALL_SELECTOR_NODE)
        assert (await a.manager.wait(again, timeout=DEADLINE)).status is S.Completed


@pytest.mark.anyio
async def test_duplicated_complete_response_does_not_undo_completion():
    """A second Complete response (duplicated, or re-sent by the responder
    answering a restart) reached the initiator while it was in Completing:
    the table's ``ResponderCompletes: ANY -> ResponderCompleted`` row moved
    it out of Completing, its cleanup never fired CleanupComplete, and the
    watchdog failed it while the responder had Completed."""
    async with harness(STEADY) as h:
        a = await h.node("a", setup=_validating)
        b = await h.node("b", setup=_validating)
        root, _, _ = make_dag(a.blockstore, leaves=1, leaf_size=1)

        def complete_response(packet: Any) -> bool:
            return (isinstance(packet.message, TransferResponse)
                    and packet.message.type == MessageType.Complete)

        h.net.duplicate(complete_response, count=1)
        chid = await a.manager.open_push_channel(b.peer, LabelVoucher(), root, ALL_SELECTOR_NODE)
        assert (await a.manager.wait(chid, timeout=DEADLINE)).status is S.Completed
        assert (await b.manager.wait(chid, timeout=DEADLINE)).status is S.Completed


@pytest.mark.anyio
async def test_pull_restarted_after_the_responder_completed_completes():
    """The connection dropped after the responder of a pull had sent every
    block and completed, before the initiator saw the end of the data. The
    initiator restarted; the responder answered Complete again but refused
    the data request, and the initiator failed on "request rejected" while
    the responder stayed Completed."""
    async with harness(STEADY) as h:
        a = await h.node("a", setup=_validating)
        b = await h.node("b", setup=_validating)
        root, _, _ = make_dag(b.blockstore, leaves=1, leaf_size=1)
        h.net.delay(0.3, lambda packet: packet.terminal, count=1)  # the end of the data
        chid = await a.manager.open_pull_channel(b.peer, LabelVoucher(), root, ALL_SELECTOR_NODE)
        assert (await _wait_known(b.manager, chid)).status is S.Completed
        h.net.partition([a.peer], [b.peer])  # loses the delayed end of the data
        h.net.heal()
        assert (await a.manager.wait(chid, timeout=DEADLINE)).status is S.Completed


@pytest.mark.anyio
async def test_voucher_accepted_after_the_initiator_paused_does_not_crash():
    """A push waited for a better voucher (the validator said retry); the
    initiator paused it (responder: Requested -> InitiatorPaused) and then
    sent the voucher. The validator accepted, ``_revalidate_request`` fired
    Accept with ``_fire``, the table has no Accept row outside Requested and
    the IllegalTransition took the responder's Manager down. (The same
    happened when the channel was failing or cancelling meanwhile.) Such a
    request can never be accepted, so the responder now fails it as soon as
    the pause arrives (test_manager_failures); a voucher arriving later is
    ignored, and the responder keeps serving."""
    async with harness(STEADY) as h:
        a = await h.node("a", setup=_validating)
        b = await h.node("b", setup=_validating)
        root, _, _ = make_dag(a.blockstore, leaves=1, leaf_size=1)
        chid = await a.manager.open_push_channel(b.peer, LabelVoucher("retry"), root,
                                                 ALL_SELECTOR_NODE)
        await a.manager.wait(chid, [S.ResponderPaused], timeout=DEADLINE)
        await a.manager.pause_channel(chid)
        assert (await _wait_known(b.manager, chid)).status is S.Failed
        assert (await a.manager.wait(chid, timeout=DEADLINE)).status is S.Failed
        late = TransferRequest(type=MessageType.Voucher, transfer_id=chid.id,
                               voucher=LabelVoucher("ok").to_node(),
                               voucher_type=LabelVoucher.type_id)
        await a.manager.transport.send_message(b.peer, late)
        # b still serves
        b.blockstore.put_many([Block(root, a.blockstore.get(root))])
        again = await a.manager.open_pull_channel(b.peer, LabelVoucher(), root,
                                                  ALL_SELECTOR_NODE)
        assert (await a.manager.wait(again, timeout=DEADLINE)).status is S.Completed
        assert b.manager.channel_status(chid) is S.Failed


@pytest.mark.anyio
async def test_responder_resuming_while_finalizing_tells_the_initiator():
    """The responder's application resumed a channel waiting for the final
    voucher: ``ResumeResponder`` moved it Finalizing -> Completing (the
    table's "final voucher arrived" row) and it completed, but nothing told
    the initiator, which timed out waiting for the final voucher's answer
    and failed while the responder had Completed."""
    def final_payment(manager: Manager) -> None:
        manager.register_voucher_type(LabelVoucher, ScriptedValidator())
        manager.register_revalidator(Payment, PayEveryN(10**9, final=True))

    async with harness(STEADY) as h:
        a = await h.node("a", setup=final_payment)
        b = await h.node("b", setup=final_payment)
        root, _, _ = make_dag(a.blockstore, leaves=1, leaf_size=1)
        chid = await a.manager.open_push_channel(b.peer, LabelVoucher(), root, ALL_SELECTOR_NODE)
        await a.manager.wait(chid, [S.ResponderFinalizingTransferFinished], timeout=DEADLINE)
        assert b.manager.channel_status(chid) is S.Finalizing
        await b.manager.resume_channel(chid)
        assert (await b.manager.wait(chid, timeout=DEADLINE)).status is S.Completed
        assert (await a.manager.wait(chid, timeout=DEADLINE)).status is S.Completed


@pytest.mark.anyio
async def test_push_initiator_whose_complete_message_was_lost_completes():
    """The responder of a push received everything, completed and sent
    Complete; the connection dropped with the message in flight. The
    initiator (TransferFinished, its data request already over, so no
    disconnect notice) sat until the no-progress timeout and failed, while
    the responder had Completed. It should restart instead: the responder
    answers a restart of a Completed channel with Complete again."""
    async with harness(CONFIG) as h:
        a = await h.node("a", setup=_validating)
        b = await h.node("b", setup=_validating)
        root, _, _ = make_dag(a.blockstore, leaves=1, leaf_size=1)

        def complete_response(packet: Any) -> bool:
            return (isinstance(packet.message, TransferResponse)
                    and packet.message.type == MessageType.Complete)

        h.net.delay(0.3, complete_response, count=1)
        chid = await a.manager.open_push_channel(b.peer, LabelVoucher(), root, ALL_SELECTOR_NODE)
        assert (await _wait_known(b.manager, chid)).status is S.Completed
        h.net.partition([a.peer], [b.peer])  # loses the Complete message
        h.net.heal()
        assert a.manager.channel_status(chid) is S.TransferFinished
        assert (await a.manager.wait(chid, timeout=DEADLINE)).status is S.Completed


@pytest.mark.anyio
async def test_short_final_payment_keeps_the_initiator_transfer_finished():
    """A push's responder asked for a final voucher; the initiator paid too
    little and the responder said so (Complete, still paused). Firing
    ResponderBeginsFinalization again moved the initiator from
    ResponderFinalizingTransferFinished to ResponderFinalizing (the table's
    ANY row), forgetting that its data was done: after the full payment it
    went to ResponderCompleted instead of Completing, and failed while the
    responder Completed."""
    def final_payment(manager: Manager) -> None:
        manager.register_voucher_type(LabelVoucher, ScriptedValidator())
        manager.register_revalidator(Payment, PayEveryN(10**9, final=True))

    async with harness(STEADY) as h:
        a = await h.node("a", setup=final_payment)
        b = await h.node("b", setup=final_payment)
        root, _, _ = make_dag(a.blockstore, leaves=1, leaf_size=1)
        chid = await a.manager.open_push_channel(b.peer, LabelVoucher(), root, ALL_SELECTOR_NODE)
        await a.manager.wait(chid, [S.ResponderFinalizingTransferFinished], timeout=DEADLINE)
        await a.manager.send_voucher(chid, Payment(0))
        with anyio.fail_after(DEADLINE):
            while len(a.manager.channel_state(chid).voucher_results) < 3:
                await anyio.sleep(0.005)
        assert a.manager.channel_status(chid) is S.ResponderFinalizingTransferFinished
        await a.manager.send_voucher(chid, Payment(ENOUGH))
        assert (await a.manager.wait(chid, timeout=DEADLINE)).status is S.Completed
        assert (await b.manager.wait(chid, timeout=DEADLINE)).status is S.Completed


@pytest.mark.anyio
async def test_responder_restarted_while_finalizing_completes_on_the_final_voucher():
    """The responder restarted (from its store) while waiting for the final
    voucher. Its "paused for a voucher" flag lives only in memory, so when
    the voucher came it answered "Complete" without leaving Finalizing: the
    initiator Completed and the responder failed on the finalization
    timeout."""
    net = InMemoryNetwork()
    ta = net.transport(peer_of("a"), MemoryBlockstore())
    tb = net.transport(peer_of("b"), MemoryBlockstore())
    store_b = SqliteChannelStore()
    revalidator = PayEveryN(10**9, final=True)

    def manager(transport: InMemoryNode, store: ChannelStore) -> Manager:
        m = Manager(transport, store=store, config=STEADY)
        m.register_voucher_result_type(NoteResult)
        m.register_voucher_type(LabelVoucher, ScriptedValidator())
        m.register_revalidator(Payment, revalidator)
        return m

    root, _, _ = make_dag(ta.blockstore, leaves=1, leaf_size=1)
    async with manager(ta, SqliteChannelStore()) as a:
        async with manager(tb, store_b) as b:
            chid = await a.open_push_channel(tb.peer_id, LabelVoucher(), root,
                                             ALL_SELECTOR_NODE)
            await a.wait(chid, [S.ResponderFinalizingTransferFinished], timeout=DEADLINE)
            assert b.channel_status(chid) is S.Finalizing
        async with manager(tb, store_b) as b:
            await a.send_voucher(chid, Payment(ENOUGH))
            assert (await a.wait(chid, timeout=DEADLINE)).status is S.Completed
            assert (await b.wait(chid, timeout=DEADLINE)).status is S.Completed


@pytest.mark.anyio
async def test_responder_restarted_while_paused_for_payment_resumes_on_payment():
    """The same for a responder paused mid-pull until paid: restarted from
    its store, it took the payment but stayed paused (it no longer knew it
    was waiting for one), and the pull never finished."""
    net = InMemoryNetwork()
    ta = net.transport(peer_of("a"), MemoryBlockstore())
    tb = net.transport(peer_of("b"), MemoryBlockstore())
    store_b = SqliteChannelStore()
    revalidator = PayEveryN(1)

    def manager(transport: InMemoryNode, store: ChannelStore) -> Manager:
        m = Manager(transport, store=store, config=STEADY)
        m.register_voucher_result_type(NoteResult)
        m.register_voucher_type(LabelVoucher, ScriptedValidator())
        m.register_revalidator(Payment, revalidator)
        return m

    root, _, order = make_dag(tb.blockstore, leaves=3, leaf_size=10)
    async with manager(ta, SqliteChannelStore()) as a:
        async with manager(tb, store_b) as b:
            chid = await a.open_pull_channel(tb.peer_id, LabelVoucher(), root,
                                             ALL_SELECTOR_NODE)
            await a.wait(chid, [S.ResponderPaused], timeout=DEADLINE)
            assert b.channel_status(chid) is S.ResponderPaused
        revalidator.interval = 10**9  # pay once more, then no more pauses
        async with manager(tb, store_b) as b:
            await a.send_voucher(chid, Payment(ENOUGH))
            assert (await a.wait(chid, timeout=DEADLINE)).status is S.Completed
            assert (await b.wait(chid, timeout=DEADLINE)).status is S.Completed
        for cid in order:
            cid.verify(ta.blockstore.get(cid))


@pytest.mark.anyio
async def test_voucher_arriving_while_the_responder_completes_is_ignored():
    """A voucher reached the responder while it was in Completing (cleaning
    up after success). The revalidator refused it and ``_fail`` fired Error,
    which the table allows from any non-final status: Completing -> Failing.
    The initiator had already been told Complete, so it Completed while the
    responder Failed."""
    async with harness(STEADY) as h:
        a = await h.node("a", setup=_validating)
        b = await h.node("b", setup=_validating)
        transport = b.manager.transport
        cleanup = transport.cleanup_channel

        async def slow_cleanup(chid: ChannelID) -> None:
            await quiesce(0.2)
            await cleanup(chid)

        transport.cleanup_channel = slow_cleanup  # type: ignore[method-assign]
        root, _, _ = make_dag(b.blockstore, leaves=1, leaf_size=1)
        chid = await a.manager.open_pull_channel(b.peer, LabelVoucher(), root, ALL_SELECTOR_NODE)
        with anyio.fail_after(DEADLINE):
            while b.manager.channel_status(chid) is not S.Completing:
                await anyio.sleep(0.001)
        late = TransferRequest(type=MessageType.Voucher, transfer_id=chid.id,
                               voucher=LabelVoucher("more").to_node(),
                               voucher_type=LabelVoucher.type_id)
        await a.manager.transport.send_message(b.peer, late)
        assert (await a.manager.wait(chid, timeout=DEADLINE)).status is S.Completed
        assert (await b.manager.wait(chid, timeout=DEADLINE)).status is S.Completed


@pytest.mark.anyio
async def test_cancel_after_success_is_refused():
    """The application cancelled a channel in Completing: the transfer had
    succeeded on both sides and only this side's cleanup was left, yet the
    table's ``Cancel: ANY -> Cancelling`` row turned it into Cancelled while
    the other side stayed Completed."""
    async with harness(STEADY) as h:
        a = await h.node("a", setup=_validating)
        b = await h.node("b", setup=_validating)
        transport = a.manager.transport
        cleanup = transport.cleanup_channel

        async def slow_cleanup(chid: ChannelID) -> None:
            await quiesce(0.2)
            await cleanup(chid)

        transport.cleanup_channel = slow_cleanup  # type: ignore[method-assign]
        root, _, _ = make_dag(a.blockstore, leaves=1, leaf_size=1)
        chid = await a.manager.open_push_channel(b.peer, LabelVoucher(), root, ALL_SELECTOR_NODE)
        await a.manager.wait(chid, [S.Completing], timeout=DEADLINE)
        with pytest.raises(IllegalTransition):
            await a.manager.close_channel(chid)
        assert (await a.manager.wait(chid, timeout=DEADLINE)).status is S.Completed
        assert (await b.manager.wait(chid, timeout=DEADLINE)).status is S.Completed


@pytest.mark.anyio
async def test_pull_accepted_only_by_a_restart_still_finalizes():
    """The responder's acceptance of a pull was lost in a disconnect; the
    initiator restarted and the responder accepted the restart. The
    initiator never fired Accept (only a New response did), stayed in
    Requested while the data came, and the table's ``FinishTransfer:
    Requested -> Completing`` shortcut (meant for a peer that never
    answered) completed it without the final voucher the responder waited
    for: the initiator Completed, the responder failed on the finalization
    timeout."""
    def final_payment(manager: Manager) -> None:
        manager.register_voucher_type(LabelVoucher, ScriptedValidator())
        manager.register_revalidator(Payment, PayEveryN(10**9, final=True))

    async with harness(STEADY) as h:
        a = await h.node("a", setup=final_payment)
        b = await h.node("b", setup=final_payment)
        root, _, _ = make_dag(b.blockstore, leaves=2, leaf_size=10)
        # the acceptance, riding the responder's first graphsync response
        h.net.delay(0.3, lambda packet: packet.kind == "response" and packet.message is not None,
                    count=1)
        chid = await a.manager.open_pull_channel(b.peer, LabelVoucher(), root, ALL_SELECTOR_NODE)
        with anyio.fail_after(DEADLINE):  # b sent everything and waits for the final voucher
            while b.manager.channel_status(chid) is not S.Finalizing:
                await anyio.sleep(0.005)
        h.net.partition([a.peer], [b.peer])  # loses the acceptance (and the data behind it)
        h.net.heal()
        state = await a.manager.wait(chid, [S.ResponderFinalizingTransferFinished, S.Completed],
                                     timeout=DEADLINE)
        assert state.status is S.ResponderFinalizingTransferFinished
        await a.manager.send_voucher(chid, Payment(ENOUGH))
        assert (await a.manager.wait(chid, timeout=DEADLINE)).status is S.Completed
        assert (await b.manager.wait(chid, timeout=DEADLINE)).status is S.Completed


@pytest.mark.anyio
async def test_lost_answer_to_the_final_voucher_is_asked_again():
    """The initiator paid the final voucher; the responder completed and
    answered Complete, and the connection dropped with the answer in flight.
    The initiator (ResponderFinalizingTransferFinished, its data long done,
    so no disconnect notice) failed on the finalization timeout while the
    responder had Completed. Having paid, it should ask again (restart): the
    responder answers a restart of a Completed channel with Complete."""
    def final_payment(manager: Manager) -> None:
        manager.register_voucher_type(LabelVoucher, ScriptedValidator())
        manager.register_revalidator(Payment, PayEveryN(10**9, final=True))

    config = replace(STEADY, finalization_timeout=0.3)
    async with harness(config) as h:
        a = await h.node("a", setup=final_payment)
        b = await h.node("b", setup=final_payment)
        root, _, _ = make_dag(a.blockstore, leaves=1, leaf_size=1)
        chid = await a.manager.open_push_channel(b.peer, LabelVoucher(), root, ALL_SELECTOR_NODE)
        await a.manager.wait(chid, [S.ResponderFinalizingTransferFinished], timeout=DEADLINE)

        def complete_response(packet: Any) -> bool:
            return (isinstance(packet.message, TransferResponse)
                    and packet.message.type == MessageType.Complete)

        h.net.delay(0.2, complete_response, count=1)
        await a.manager.send_voucher(chid, Payment(ENOUGH))
        assert (await b.manager.wait(chid, timeout=DEADLINE)).status is S.Completed
        h.net.partition([a.peer], [b.peer])  # loses the answer
        h.net.heal()
        assert (await a.manager.wait(chid, timeout=DEADLINE)).status is S.Completed


@pytest.mark.anyio
async def test_initiator_timing_out_is_announced_to_the_responder():
    """The initiator's application never paid the final voucher and its
    channel failed on the finalization timeout, silently. The responder's
    application had paused the channel (so no timeout applied to it) and
    later resumed it, which waives the final voucher: the responder
    Completed a channel the initiator had Failed. A local failure now sends
    the peer a cancel (Go's CloseDataTransferChannelWithError)."""
    def final_payment(manager: Manager) -> None:
        manager.register_voucher_type(LabelVoucher, ScriptedValidator())
        manager.register_revalidator(Payment, PayEveryN(10**9, final=True))

    async with harness(replace(STEADY, finalization_timeout=0.3)) as h:
        a = await h.node("a", setup=final_payment)
        b = await h.node("b", setup=final_payment)
        root, _, _ = make_dag(a.blockstore, leaves=1, leaf_size=1)
        chid = await a.manager.open_push_channel(b.peer, LabelVoucher(), root, ALL_SELECTOR_NODE)
        await a.manager.wait(chid, [S.ResponderFinalizingTransferFinished], timeout=DEADLINE)
        await b.manager.pause_channel(chid)
        assert (await a.manager.wait(chid, timeout=DEADLINE)).status is S.Failed
        state = await b.manager.wait(chid, timeout=DEADLINE)
        assert (state.status, state.message) == (S.Cancelled, "cancelled by the other peer")
        with pytest.raises(IllegalTransition):
            await b.manager.resume_channel(chid)
        assert b.manager.channel_status(chid) is S.Cancelled


@pytest.mark.anyio
async def test_pull_whose_acceptance_was_lost_still_finalizes():
    """The responder's acceptance of a pull (the response that travels
    ahead of the data) was lost, the data was not: the initiator stayed in
    Requested while it received everything, and the table's
    ``FinishTransfer: Requested -> Completing`` shortcut (for a peer that
    never answered) completed it without the final voucher the responder
    waited for. Data only flows once the responder accepted."""
    def final_payment(manager: Manager) -> None:
        manager.register_voucher_type(LabelVoucher, ScriptedValidator())
        manager.register_revalidator(Payment, PayEveryN(10**9, final=True))

    async with harness(STEADY) as h:
        a = await h.node("a", setup=final_payment)
        b = await h.node("b", setup=final_payment)
        root, _, _ = make_dag(b.blockstore, leaves=2, leaf_size=10)
        # the acceptance, riding the responder's first graphsync response
        h.net.drop(lambda packet: packet.kind == "response" and packet.message is not None,
                   count=1)
        chid = await a.manager.open_pull_channel(b.peer, LabelVoucher(), root, ALL_SELECTOR_NODE)
        state = await a.manager.wait(chid, [S.ResponderFinalizingTransferFinished, S.Completed],
                                     timeout=DEADLINE)
        assert state.status is S.ResponderFinalizingTransferFinished
        await a.manager.send_voucher(chid, Payment(ENOUGH))
        assert (await a.manager.wait(chid, timeout=DEADLINE)).status is S.Completed
        assert (await b.manager.wait(chid, timeout=DEADLINE)).status is S.Completed
