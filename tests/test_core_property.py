"""Stateful property test of the channel core alone: no event loop, no transport.

Three :class:`~datatransfer.core.ChannelCore` objects (one per peer) live in
a synchronous model of what surrounds them: links that carry messages and
data requests (cut and mended at random), validators that answer by the
voucher's label, a pay-as-you-go revalidator, and a clock the test moves
(timeouts and restart backoff run on it). Every input of a core runs as a
task: Hypothesis picks which task takes its next step, so inputs interleave
at every effect that waits for an outcome (a validator, a send), as they do
under the Manager.

Invariants, checked when the example ends:

* every event a core published is legal under the state table (the first
  one ``Open`` into ``Requested``; then each ``(before, event, after)`` has
  a row and ``after`` is its target);
* byte counters never exceed the bytes of the channel's blocks;
* once quiet (links mended, the test's pauses released, every payment asked
  for made, time moved on), every channel is final on both sides; an
  initiator that Completed has a responder that Completed, and a data
  receiver that Completed counted every byte of the DAG exactly once.

The Manager's own property test (``test_manager_property.py``) runs the
same kind of operations through the Manager, the real graphsync engine and
the fault network; this one is the core's, fast enough to run many more
examples (``python -m benchmarks core`` compares the two).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Generator
from dataclasses import dataclass, field, replace
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from datatransfer.channel import Channel
from datatransfer.config import ManagerConfig
from datatransfer.core import Answer, ChannelCore
from datatransfer.core import effects as fx
from datatransfer.errors import ChannelNotFound, Unsupported
from datatransfer.ipld.cid import CID
from datatransfer.ipld.selector import ALL_SELECTOR_NODE
from datatransfer.messages import TransferResponse
from datatransfer.types import ChannelID, ChannelState, PeerID
from registry import Registry
from statemachine import FINAL_STATUSES, EventCode, IllegalTransition, Kind, Status, resolve

S = Status
E = EventCode

CONFIG = ManagerConfig(accept_timeout=3.0, no_progress_timeout=3.0, finalization_timeout=3.0,
                       peer_pause_timeout=30.0, max_restarts=5, restart_backoff=0.2,
                       max_restart_backoff=2.0, tick=0.5)
#: Errors an application call may raise on a channel that ended, that this
#: node does not know, or that cannot pause: legal refusals, not bugs.
REFUSALS = (IllegalTransition, ChannelNotFound, Unsupported)
NAMES = ("a", "b", "c")
#: Steps the quiet phase may take before a channel that is not final is a bug.
SETTLE_STEPS = 20_000


def peer_of(name: str) -> PeerID:
    return PeerID(b"\x00\x08" + name.encode().ljust(8, b"_"))


@dataclass
class Flow:
    """A data request: ``receiver`` asked ``sender`` for the channel's blocks."""

    chid: ChannelID
    sender: PeerID
    receiver: PeerID
    sizes: tuple[int, ...]
    next: int  # index (1-based) of the next block to send
    held: set[PeerID] = field(default_factory=set)


@dataclass
class Task:
    """One input of one core, run a step at a time."""

    peer: PeerID
    steps: Generator[fx.Effect, Any, Any]
    done: Callable[[Any], None] | None = None
    #: A delivery over a link: dropped at its first step if the link is down.
    link: tuple[PeerID, PeerID] | None = None
    outcome: Any = None
    started: bool = False


class Peer:
    """A core and the synchronous things around it."""

    def __init__(self, name: str, pays: int | None, final: bool) -> None:
        self.name = name
        self.pid = peer_of(name)
        self.core = ChannelCore(self.pid, Registry(), CONFIG)
        self.core.running = True
        self.log: list[tuple[EventCode, ChannelState]] = []
        self.stored: dict[ChannelID, Channel] = {}
        #: Pay-as-you-go as responder: pause every ``pays`` bytes (None: free).
        self.pays = pays
        self.final = final
        self.owed: dict[ChannelID, int] = {}
        self.since: dict[ChannelID, int] = {}
        self.paid: dict[ChannelID, int] = {}


def _label(voucher: tuple[str, Any]) -> str | None:
    return voucher[1] if voucher[0] == "label" else None


class World:
    """The peers, the links between them, the data requests and the clock."""

    def __init__(self, pays: list[int | None], finals: list[bool]) -> None:
        self.peers = {peer_of(n): Peer(n, p, f) for n, p, f in zip(NAMES, pays, finals,
                                                                      strict=True)}
        self.down: set[frozenset[PeerID]] = set()
        self.flows: dict[ChannelID, Flow] = {}
        self.tasks: list[Task] = []
        self.timers: list[tuple[float, PeerID, ChannelID]] = []
        self.now = 0.0
        self.dags: dict[CID, tuple[int, ...]] = {}
        self.ever_cut = False

    # -- running inputs --------------------------------------------------------

    def up(self, a: PeerID, b: PeerID) -> bool:
        return frozenset((a, b)) not in self.down

    def spawn(self, peer: PeerID, steps: Any, done: Callable[[Any], None] | None = None,
              link: tuple[PeerID, PeerID] | None = None) -> None:
        self.tasks.append(Task(peer, steps, done, link))

    def step(self, i: int) -> None:
        """One step of task ``i``: perform its next effect (or finish it)."""
        task = self.tasks[i]
        if not task.started and task.link is not None and not self.up(*task.link):
            task.steps.close()
            del self.tasks[i]
            return
        task.started = True
        core = self.peers[task.peer].core
        while True:  # instant effects are carried out with nothing in between
            core.now = self.now
            try:
                effect = task.steps.send(task.outcome)
            except StopIteration as stop:
                self.tasks.remove(task)
                if task.done is not None:
                    task.done(stop.value)
                return
            except REFUSALS:
                self.tasks.remove(task)
                return
            task.outcome = self.perform(task.peer, effect)
            if effect.waits:
                return

    def drain(self, limit: int = 10_000) -> None:
        for _ in range(limit):
            if not self.tasks:
                return
            self.step(0)

    # -- effects ---------------------------------------------------------------

    def perform(self, me: PeerID, effect: fx.Effect) -> Any:  # noqa: C901 - one dispatch
        peer = self.peers[me]
        match effect:
            case fx.Persist(channel=ch, record=record):
                peer.stored[ch.channel_id] = replace(ch, record=(record or ch.record).copy())
                return None
            case fx.LoadStored(channel_id=chid):
                return peer.stored.get(chid)
            case fx.Publish(event=event, state=state):
                peer.log.append((event, state))
                return None
            case fx.Send(peer=to, message=message):
                if not self.up(me, to):
                    return "peer unreachable"
                self.spawn(to, self.peers[to].core.message(me, message), link=(me, to))
                return None
            case fx.OpenData(channel_id=chid, peer=to, root=root, selector=sel,
                             message=message, skip=skip):
                if not self.up(me, to):
                    return "peer unreachable"
                old = self.flows.pop(chid, None)
                if old is not None:
                    self._ended(old, me, lambda c, p: c.transport_trouble(
                        chid, E.RequestCancelled, "replaced"))
                sizes = self.dags[root]

                def answered(answer: Answer, chid: ChannelID = chid, to: PeerID = to) -> None:
                    if answer.message is not None:
                        self._deliver(to, me, chid, answer.message)
                    if not answer.accept:
                        self.spawn(me, self.peers[me].core.channel_completed(
                            chid, "request rejected"), link=(to, me))
                        return
                    flow = Flow(chid, to, me, sizes, skip + 1)
                    if answer.pause:
                        flow.held.add(to)
                    self.flows[chid] = flow

                self.spawn(to, self.peers[to].core.request_received(chid, me, message, root,
                                                                     sel),
                           done=answered, link=(me, to))
                self.spawn(me, peer.core.channel_opened(chid))
                return None
            case fx.PauseData(channel_id=chid):
                flow = self.flows.get(chid)
                if flow is None:
                    return "no data request"
                flow.held.add(me)
                return None
            case fx.ResumeData(channel_id=chid, message=message):
                flow = self.flows.get(chid)
                if flow is None:
                    return "no data request"
                flow.held.discard(me)
                other = flow.sender if flow.receiver == me else flow.receiver
                self._deliver(me, other, chid, message)
                return None
            case fx.CloseData(channel_id=chid):
                flow = self.flows.pop(chid, None)
                if flow is not None:
                    self._ended(flow, me, lambda c, p: c.transport_trouble(
                        chid, E.RequestCancelled, "cancelled by the peer"))
                return None
            case fx.CleanupData(channel_id=chid):
                self.flows.pop(chid, None)
                return None
            case fx.IsConnected(peer=to):
                return self.up(me, to)
            case fx.Validate(voucher=voucher, restart=restart):
                label = _label(voucher)
                if label == "ok" or (label == "pause" and restart):
                    return "accept", ("note", "accepted")
                if label == "pause":
                    return "pause", ("note", "paused")
                if label == "retry":
                    return ("reject" if restart else "retry"), ("note", "send another")
                return "reject", ("note", "rejected")
            case fx.Revalidate(channel_id=chid, voucher=voucher):
                if voucher[0] == "label":  # a voucher for a request asked to retry
                    return "accept", None
                if voucher[0] != "pay":
                    return "unknown", "no revalidator for this voucher type"
                peer.paid[chid] = voucher[1]
                if voucher[1] < peer.owed.get(chid, 0):
                    return "pause", ("pay", peer.owed[chid])
                return "accept", ("note", f"paid {voucher[1]}")
            case fx.RevalidateProgress(channel_id=chid, size=size):
                if peer.pays is None:
                    return "none", None
                peer.owed[chid] = peer.owed.get(chid, 0) + size
                peer.since[chid] = peer.since.get(chid, 0) + size
                if peer.since[chid] >= peer.pays:
                    peer.since[chid] = 0
                    return "pause", ("pay", peer.owed[chid])
                return "none", None
            case fx.RevalidateComplete(channel_id=chid):
                if peer.final and peer.paid.get(chid, 0) < peer.owed.get(chid, 0):
                    return "pause", ("pay", peer.owed[chid])
                return "none", None
            case fx.ArmRestart(channel_id=chid, delay=delay):
                self.timers.append((self.now + delay, me, chid))
                return None
            case fx.Spawn(steps=steps):
                self.spawn(me, steps)
                return None
            case fx.Refuse() | fx.Note():
                return None
        raise AssertionError(f"unknown effect {effect!r}")

    def _deliver(self, src: PeerID, dst: PeerID, chid: ChannelID, message: Any) -> None:
        core = self.peers[dst].core
        if isinstance(message, TransferResponse) and chid.initiator == dst:
            steps = core.response_received(chid, message)
        else:
            steps = core.message(src, message)
        self.spawn(dst, steps, link=(src, dst))

    def _ended(self, flow: Flow, by: PeerID, tell: Callable[[ChannelCore, PeerID], Any]) -> None:
        other = flow.sender if flow.receiver == by else flow.receiver
        self.spawn(other, tell(self.peers[other].core, by), link=(by, other))

    # -- the transport's side of a data request -----------------------------------

    def move_block(self, flow: Flow) -> None:
        """The sender sends the flow's next block; the receiver takes it."""
        chid, index = flow.chid, flow.next
        size = flow.sizes[index - 1]
        sender, receiver = self.peers[flow.sender], self.peers[flow.receiver]
        answer = self._inline(flow.sender, sender.core.data_queued(chid, size, index))
        if answer.message is not None:
            self._deliver(flow.sender, flow.receiver, chid, answer.message)
        if not answer.accept:
            self.flows.pop(chid, None)
            self.spawn(flow.receiver, receiver.core.channel_completed(chid, "refused"))
            return
        if answer.pause:
            flow.held.add(flow.sender)
        self._inline(flow.sender, sender.core.data_sent(chid, size, index))
        answer = self._inline(flow.receiver, receiver.core.data_received(chid, size, index))
        if answer is not None and answer.message is not None:
            self._deliver(flow.receiver, flow.sender, chid, answer.message)
        if answer is not None and answer.pause:
            flow.held.add(flow.receiver)
        flow.next += 1
        if flow.next > len(flow.sizes) and self.flows.get(chid) is flow:
            del self.flows[chid]
            self.spawn(flow.sender, sender.core.channel_completed(chid, None))
            self.spawn(flow.receiver, receiver.core.channel_completed(chid, None))

    def _inline(self, peer: PeerID, steps: Any) -> Any:
        core = self.peers[peer].core
        outcome: Any = None
        while True:
            core.now = self.now
            try:
                effect = steps.send(outcome)
            except StopIteration as stop:
                return stop.value
            outcome = self.perform(peer, effect)

    def movable(self) -> list[Flow]:
        return [f for f in self.flows.values()
                if not f.held and self.up(f.sender, f.receiver) and f.next <= len(f.sizes)]

    # -- time ------------------------------------------------------------------------

    def advance(self, seconds: float) -> None:
        self.now += seconds
        due = [t for t in self.timers if t[0] <= self.now]
        self.timers = [t for t in self.timers if t[0] > self.now]
        for _, peer, chid in due:
            self.spawn(peer, self.peers[peer].core.restart_due(chid))
        for peer in self.peers.values():
            self.spawn(peer.pid, peer.core.tick())

    def cut(self, a: PeerID, b: PeerID) -> None:
        self.ever_cut = True
        self.down.add(frozenset((a, b)))
        for chid, flow in list(self.flows.items()):
            if {flow.sender, flow.receiver} == {a, b}:
                del self.flows[chid]
                for side in (a, b):
                    self.spawn(side, self.peers[side].core.transport_trouble(
                        chid, E.Disconnected, "link cut"))


@dataclass
class Opened:
    chid: ChannelID
    initiator: PeerID
    responder: PeerID
    is_pull: bool
    total: int


class CoreMachine(RuleBasedStateMachine):
    """Random operations on three cores, with faults and time."""

    def __init__(self) -> None:
        super().__init__()
        self.world: World | None = None
        self.opened: list[Opened] = []
        self.cancelled: set[ChannelID] = set()
        self.roots = itertools.count(1)

    @property
    def w(self) -> World:
        assert self.world is not None
        return self.world

    @initialize(pays=st.lists(st.none() | st.integers(500, 5000), min_size=3, max_size=3),
                finals=st.lists(st.booleans(), min_size=3, max_size=3))
    def setup(self, pays: list[int | None], finals: list[bool]) -> None:
        self.world = World(pays, finals)

    @rule(ini=st.integers(0, 2), offset=st.integers(1, 2), pull=st.booleans(),
          sizes=st.lists(st.integers(1, 2000), min_size=1, max_size=12),
          label=st.sampled_from(["ok", "ok", "ok", "pause", "retry", "reject"]))
    @precondition(lambda self: self.world is not None)
    def open(self, ini: int, offset: int, pull: bool, sizes: list[int], label: str) -> None:
        me, other = peer_of(NAMES[ini]), peer_of(NAMES[(ini + offset) % 3])
        root = CID.of(f"root {next(self.roots)}".encode())
        self.w.dags[root] = tuple(sizes)
        core = self.w.peers[me].core

        def opened(chid: ChannelID) -> None:
            self.opened.append(Opened(chid, me, other, pull, sum(sizes)))

        self.w.spawn(me, core.open(other, ("label", label), root, ALL_SELECTOR_NODE,
                                   is_pull=pull), done=opened)

    def _channel(self, data: st.DataObject) -> tuple[Opened, PeerID] | None:
        if not self.opened:
            return None
        info = data.draw(st.sampled_from(self.opened))
        side = data.draw(st.sampled_from([info.initiator, info.responder]))
        return info, side

    @rule(data=st.data(), action=st.sampled_from(["pause", "resume", "cancel", "restart"]))
    @precondition(lambda self: self.world is not None)
    def app(self, data: st.DataObject, action: str) -> None:
        picked = self._channel(data)
        if picked is None:
            return
        info, side = picked
        core = self.w.peers[side].core
        if info.chid not in core.channels:
            return
        if action == "pause":
            steps = core.pause(info.chid)
        elif action == "resume":
            steps = core.resume(info.chid)
        elif action == "cancel":
            self.cancelled.add(info.chid)
            steps = core.close(info.chid)
        else:
            steps = core.restart(info.chid)
        self.w.spawn(side, steps)

    @rule(data=st.data(), amount=st.integers(0, 40_000))
    @precondition(lambda self: self.world is not None)
    def pay(self, data: st.DataObject, amount: int) -> None:
        picked = self._channel(data)
        if picked is None:
            return
        info, _ = picked
        core = self.w.peers[info.initiator].core
        if info.chid in core.channels:
            self.w.spawn(info.initiator, core.send_voucher(info.chid, ("pay", amount)))

    @rule(data=st.data())
    @precondition(lambda self: self.world is not None and bool(self.world.tasks))
    def step_task(self, data: st.DataObject) -> None:
        self.w.step(data.draw(st.integers(0, len(self.w.tasks) - 1)))

    @rule()
    @precondition(lambda self: self.world is not None and bool(self.world.tasks))
    def run_tasks(self) -> None:
        """Let every task run until none is left (an event loop going idle)."""
        self.w.drain()

    @rule(data=st.data())
    @precondition(lambda self: self.world is not None and bool(self.world.movable()))
    def move_block(self, data: st.DataObject) -> None:
        """Move a block of a data request, or (one time in five) cut the link
        under it: restarts follow."""
        flows = self.w.movable()
        flow = flows[data.draw(st.integers(0, len(flows) - 1))]
        if data.draw(st.integers(0, 4)) == 0:
            self.w.cut(flow.sender, flow.receiver)
        else:
            self.w.move_block(flow)

    @rule(i=st.integers(0, 2), j=st.integers(1, 2), mend=st.booleans())
    @precondition(lambda self: self.world is not None)
    def link(self, i: int, j: int, mend: bool) -> None:
        a, b = peer_of(NAMES[i]), peer_of(NAMES[(i + j) % 3])
        if mend:
            self.w.down.discard(frozenset((a, b)))
        else:
            self.w.cut(a, b)

    @rule(seconds=st.sampled_from([0.1, 0.5, 1.0, 4.0]))
    @precondition(lambda self: self.world is not None)
    def wait(self, seconds: float) -> None:
        self.w.advance(seconds)

    # -- invariants ----------------------------------------------------------------

    @invariant()
    def events_are_legal(self) -> None:
        if self.world is None:
            return
        for peer in self.w.peers.values():
            _check_log(peer)

    def teardown(self) -> None:
        if self.world is None:
            return
        w = self.w
        # Calm: no link was cut and less time passed than any timeout, so
        # every channel that one side completed must complete on both.
        calm = not w.down and not w.ever_cut and w.now < CONFIG.accept_timeout
        self.settle()
        for peer in w.peers.values():
            _check_log(peer)
        for info in self.opened:
            ini = _known(w.peers[info.initiator], info.chid)
            rsp = _known(w.peers[info.responder], info.chid)
            assert ini is not None, f"{info.chid} lost by its initiator"
            assert ini.record.status in FINAL_STATUSES, (info, ini.record.status)
            if rsp is None:
                # never created there (refused before a channel existed)
                assert ini.record.status is not S.Completed, info
                continue
            assert rsp.record.status in FINAL_STATUSES, (info, rsp.record.status)
            if ini.record.status is S.Completed:
                assert rsp.record.status is S.Completed, (info, rsp.record.status)
            if calm and info.chid not in self.cancelled and rsp.record.status is S.Completed:
                # no outage, no timeout: nothing excuses a side that did not complete
                assert ini.record.status is S.Completed, (info, ini.record)
            receiver = ini if info.is_pull else rsp
            if receiver.record.status is S.Completed:
                assert receiver.record.received == info.total, (info, receiver.record)
            for ch in (ini, rsp):
                rec = ch.record
                assert max(rec.received, rec.sent, rec.queued) <= info.total, (info, rec)

    def settle(self) -> None:
        """Mend every link, release the test's pauses, pay what is asked, and
        let the world run until every channel is final."""
        w = self.w
        w.down.clear()
        w.drain()  # (the application's calls return before it goes quiet)
        for peer in w.peers.values():  # (the test's pauses and resumes may have crossed)
            for chid, ch in peer.core.channels.items():
                if ch.record.app_paused and ch.record.status not in FINAL_STATUSES:
                    w.spawn(peer.pid, peer.core.resume(chid))
        for _ in range(SETTLE_STEPS):
            w.drain()
            self._pay_what_is_asked()
            flows = w.movable()
            if flows:
                for flow in flows:
                    w.move_block(flow)
                continue
            if w.tasks:
                continue
            if all(ch.record.status in FINAL_STATUSES
                   for p in w.peers.values() for ch in p.core.channels.values()):
                return
            w.advance(CONFIG.tick)
        raise AssertionError("channels not final once quiet: " + ", ".join(
            f"{p.name}:{chid}={ch.record.status.name}" for p in w.peers.values()
            for chid, ch in p.core.channels.items() if ch.record.status not in FINAL_STATUSES))

    def _pay_what_is_asked(self) -> None:
        for info in self.opened:
            core = self.w.peers[info.initiator].core
            ch = core.channels.get(info.chid)
            if ch is None or ch.record.status in FINAL_STATUSES or not ch.record.voucher_results:
                continue
            kind, value = ch.record.voucher_results[-1]
            if kind != "pay":
                continue
            paid = [v[1] for v in ch.record.vouchers if v[0] == "pay"]
            if paid and paid[-1] >= value:
                continue
            self.w.spawn(info.initiator, core.send_voucher(info.chid, ("pay", value)))


def _known(peer: Peer, chid: ChannelID) -> Channel | None:
    """The channel in the core's memory, else as stored (it ended long ago)."""
    return peer.core.channels.get(chid) or peer.stored.get(chid)


def _check_log(peer: Peer) -> None:
    last: dict[ChannelID, Status] = {}
    for event, state in peer.log:
        chid = state.channel_id
        before = last.get(chid)
        if before is None or event is E.Open:
            assert event is E.Open and state.status is S.Requested, (peer.name, event, state)
        else:
            row = resolve(before, event)
            want = row.target if row.kind is Kind.MOVE else before
            assert state.status is want, (peer.name, chid, before, event, state.status)
        last[chid] = state.status


CoreMachine.TestCase.settings = settings(
    max_examples=300, stateful_step_count=60, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestCore = CoreMachine.TestCase
