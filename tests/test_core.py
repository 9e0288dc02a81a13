"""The channel core on its own: inputs in, effects out, no event loop.

The property test (``test_core_property.py``) drives whole peers; these pin
the contract between the core and its driver."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path
from typing import Any

from datatransfer.config import ManagerConfig
from datatransfer.core import ChannelCore
from datatransfer.core import effects as fx
from datatransfer.ipld.cid import CID
from datatransfer.ipld.selector import ALL_SELECTOR_NODE
from datatransfer.manager import Manager
from datatransfer.messages import MessageType, TransferResponse
from datatransfer.types import PeerID
from registry import Registry
from statemachine import EventCode, Status

CORE = Path(__file__).resolve().parent.parent / "datatransfer" / "core"
ME = PeerID(b"\x00\x08me______")
PEER = PeerID(b"\x00\x08peer____")
ROOT = CID.of(b"root")


def _core(**config: Any) -> ChannelCore:
    core = ChannelCore(ME, Registry(), ManagerConfig(**config))
    core.running = True
    return core


def _run(core: ChannelCore, steps: Any, outcomes: dict[type, Any] | None = None,
         now: float = 0.0) -> tuple[list[fx.Effect], Any]:
    """Run one input to its end; every effect gets ``None`` back unless
    ``outcomes`` says otherwise."""
    effects: list[fx.Effect] = []
    outcome: Any = None
    while True:
        core.now = now
        try:
            effect = steps.send(outcome)
        except StopIteration as stop:
            return effects, stop.value
        effects.append(effect)
        outcome = (outcomes or {}).get(type(effect))


def test_the_core_package_has_no_await_and_no_async_def() -> None:
    for path in sorted(CORE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            assert not isinstance(node, ast.Await | ast.AsyncFunctionDef | ast.AsyncFor
                                  | ast.AsyncWith), f"{path}:{node.lineno}"


def test_the_manager_carries_out_instant_effects_without_waiting() -> None:
    """The core persists a record and then applies it with nothing in
    between: the driver must perform every effect that does not wait
    synchronously (no coroutine), and know every effect; it awaits the
    outcome of exactly those that wait, so their performers are coroutines."""
    kinds = {cls for cls in vars(fx).values()
             if isinstance(cls, type) and issubclass(cls, fx.Effect) and cls is not fx.Effect}
    manager = Manager.__new__(Manager)
    Manager.__init__(manager, _FakeTransport())
    assert set(manager._perform) == kinds
    for kind, handler in manager._perform.items():
        assert inspect.iscoroutinefunction(handler) == kind.waits, kind.__name__


def test_opening_a_pull_persists_publishes_then_opens_the_data_request() -> None:
    core = _core()
    effects, chid = _run(core, core.open(PEER, ("v", 1), ROOT, ALL_SELECTOR_NODE, is_pull=True))
    assert [type(e) for e in effects] == [fx.Persist, fx.Publish, fx.OpenData]
    opened = effects[2]
    assert isinstance(opened, fx.OpenData) and opened.peer == PEER and opened.skip == 0
    assert opened.message.type == MessageType.New and opened.message.pull
    assert core.get(chid).record.status is Status.Requested


def test_a_store_that_refuses_leaves_the_channel_as_it_was() -> None:
    core = _core()
    _, chid = _run(core, core.open(PEER, ("v", 1), ROOT, ALL_SELECTOR_NODE, is_pull=True))
    steps = core.message(PEER, TransferResponse(type=MessageType.New, transfer_id=chid.id,
                                                accepted=True))
    effect = next(steps)
    assert isinstance(effect, fx.Persist)
    assert effect.record is not None and effect.record.status is Status.Ongoing
    refused = steps.throw(OSError("disk full"))  # the core's boundary refuses the input
    assert isinstance(refused, fx.Refuse) and "disk full" in refused.text
    assert core.get(chid).record.status is Status.Requested


def test_time_is_what_the_driver_says() -> None:
    """No clock inside: the accept timeout fires when the driver's ``now``
    passes it, whatever the wall clock says."""
    core = _core(accept_timeout=30.0)
    _, chid = _run(core, core.open(PEER, ("v", 1), ROOT, ALL_SELECTOR_NODE, is_pull=True),
                   now=100.0)
    effects, _ = _run(core, core.tick(), now=129.0)
    assert core.get(chid).record.status is Status.Requested
    effects, _ = _run(core, core.tick(), now=130.5, outcomes={fx.IsConnected: False})
    assert core.get(chid).record.status is Status.Failing
    published = [e.event for e in effects if isinstance(e, fx.Publish)]
    assert published == [EventCode.Error]
    assert any(isinstance(e, fx.Spawn) for e in effects)  # the cancel, told apart


def test_a_data_request_opened_after_the_channel_failed_keeps_its_reason() -> None:
    """The transport's Opened can arrive after the accept timeout failed the
    channel (a slow dial): it must not wipe the reason the channel fails for."""
    core = _core(accept_timeout=30.0)
    _, chid = _run(core, core.open(PEER, ("v", 1), ROOT, ALL_SELECTOR_NODE, is_pull=True))
    _run(core, core.tick(), now=31.0, outcomes={fx.IsConnected: False})
    ch = core.get(chid)
    reason = ch.record.message
    assert ch.record.status is Status.Failing and "accepted" in reason
    effects, _ = _run(core, core.channel_opened(chid), now=31.5)
    assert ch.record.status is Status.Failing and ch.record.message == reason
    assert not [e for e in effects if isinstance(e, fx.Publish)]


def test_an_unanswerable_send_is_a_disconnect_and_arms_a_restart() -> None:
    core = _core(restart_backoff=0.5)
    _, chid = _run(core, core.open(PEER, ("v", 1), ROOT, ALL_SELECTOR_NODE, is_pull=False))
    effects, _ = _run(core, core.send_voucher(chid, ("v", 2)),
                      outcomes={fx.Send: "peer unreachable"})
    armed = [e for e in effects if isinstance(e, fx.ArmRestart)]
    assert armed == [fx.ArmRestart(chid, 0.5)]
    assert core.get(chid).record.message == "unable to send message: peer unreachable"


def test_a_lost_peer_restarts_the_initiators_the_transport_did_not_tell() -> None:
    """A pusher that sent its last block (TransferFinished: no data request
    left in the transport) restarts when the peer is lost; a channel the
    transport told on its own (``notified``) is not told twice, and a
    request never answered is left to its accept timeout."""
    core = _core(restart_backoff=0.5)
    _, done = _run(core, core.open(PEER, ("v", 1), ROOT, ALL_SELECTOR_NODE, is_pull=False))
    _run(core, core.message(PEER, TransferResponse(type=MessageType.New, transfer_id=done.id,
                                                   accepted=True)))
    _run(core, core.channel_completed(done, None))
    assert core.get(done).record.status is Status.TransferFinished
    _, told = _run(core, core.open(PEER, ("v", 1), ROOT, ALL_SELECTOR_NODE, is_pull=False))
    _run(core, core.message(PEER, TransferResponse(type=MessageType.New, transfer_id=told.id,
                                                   accepted=True)))
    _, unanswered = _run(core, core.open(PEER, ("v", 1), ROOT, ALL_SELECTOR_NODE,
                                         is_pull=False))
    effects, _ = _run(core, core.peer_lost(PEER, "lost connection", frozenset({told})))
    published = [(e.state.channel_id, e.event) for e in effects if isinstance(e, fx.Publish)]
    assert published == [(done, EventCode.Disconnected)]
    assert [e for e in effects if isinstance(e, fx.ArmRestart)] == [fx.ArmRestart(done, 0.5)]
    assert core.get(done).record.message == "lost connection"
    assert core.get(unanswered).record.status is Status.Requested
    # told again before the restart ran, or after it ran with nothing moved
    # since (a second notice of one loss, as a failed send gives): nothing more
    effects, _ = _run(core, core.peer_lost(PEER, "lost again", frozenset({told})))
    assert effects == []
    effects, _ = _run(core, core.restart_due(done))
    assert any(isinstance(e, fx.Send) and e.message.type == MessageType.Restart
               for e in effects)
    effects, _ = _run(core, core.peer_lost(PEER, "lost again", frozenset({told})))
    assert effects == []


class _FakeTransport:
    peer_id = ME
    supports_pause = True


def test_a_block_costs_one_snapshot_and_no_write() -> None:
    """A received block: its two events share one snapshot, and the record
    is written only every ``save_progress_every`` blocks."""
    core = _core(save_progress_every=3)
    _, chid = _run(core, core.open(PEER, ("v", 1), ROOT, ALL_SELECTOR_NODE, is_pull=True))
    _run(core, core.message(PEER, TransferResponse(type=MessageType.New, transfer_id=chid.id,
                                                   accepted=True)))
    writes = []
    for index in (1, 2, 3):
        effects, answer = _run(core, core.data_received(chid, 100, index))
        publishes = [e for e in effects if isinstance(e, fx.Publish)]
        assert [p.event for p in publishes] == [EventCode.DataReceived,
                                                EventCode.DataReceivedProgress]
        assert publishes[0].state is publishes[1].state
        assert publishes[1].state.received == 100 * index
        writes.append(sum(isinstance(e, fx.Persist) for e in effects))
    assert writes == [0, 0, 1]


def test_an_unreachable_peer_is_retried_for_the_restart_window_then_failed() -> None:
    """Restarts go on, with a bounded backoff, for ``restart_window``
    seconds of the driver's clock without progress; then the channel fails
    saying why. However many tries that takes."""
    core = _core(restart_window=30.0, max_restarts=None, restart_backoff=1.0,
                 max_restart_backoff=2.0)
    unreachable = {fx.Send: "peer unreachable", fx.IsConnected: False}
    _, chid = _run(core, core.open(PEER, ("v", 1), ROOT, ALL_SELECTOR_NODE, is_pull=False))
    effects, _ = _run(core, core.send_voucher(chid, ("v", 2)), outcomes=unreachable, now=0.0)
    now, tries = 0.0, 0
    while core.get(chid).record.status is not Status.Failing:
        (armed,) = [e for e in effects if isinstance(e, fx.ArmRestart)]
        assert armed.delay <= 2.0
        now += armed.delay
        tries += 1
        effects, _ = _run(core, core.restart_due(chid), outcomes=unreachable, now=now)
    assert 30.0 <= now < 33.0 and tries > 10
    assert "gave up after" in core.get(chid).record.message
