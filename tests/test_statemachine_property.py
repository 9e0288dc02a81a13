"""Random events at many channels, checked against an independent model.

The model below restates the go-data-transfer v1.15 rules in a different
shape from ``statemachine.table``: the "active" statuses (Requested, Ongoing
and the three paused ones) are not stored as a status at all but derived
from two pause flags and a base phase.  So the check that the machine's
paused statuses agree with the pause flags is a real cross-check, not the
table compared with itself.

Example counts come from the hypothesis profile loaded in conftest.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    multiple,
    rule,
)

from statemachine import (
    ChannelRecord,
    EventArgumentError,
    EventCode,
    IllegalTransition,
    Status,
    apply,
)

S = Status
E = EventCode

ACTIVE = "active"  # model phase standing for Requested/Ongoing/*Paused
FINAL = {S.Completed, S.Failed, S.Cancelled}

# What each event takes, written independently of statemachine.table.
NEEDS: dict[EventCode, str] = {
    E.DataReceivedProgress: "delta",
    E.DataSentProgress: "delta",
    E.DataQueuedProgress: "delta",
    E.DataReceived: "index",
    E.DataSent: "index",
    E.DataQueued: "index",
    E.Error: "error",
    E.Disconnected: "error",
    E.SendDataError: "error",
    E.ReceiveDataError: "error",
    E.RequestCancelled: "error",
    E.NewVoucher: "voucher",
    E.NewVoucherResult: "voucher_result",
}


@dataclass
class Model:
    """One channel as the rules describe it."""

    phase: Any = ACTIVE  # ACTIVE or a Status outside the active region
    started: bool = False  # in ACTIVE: Ongoing (True) or Requested (False) when unpaused
    initiator_paused: bool = False
    responder_paused: bool = False
    sent: int = 0
    received: int = 0
    queued: int = 0
    sent_index: int = 0
    received_index: int = 0
    queued_index: int = 0
    message: str = ""
    vouchers: list[Any] = field(default_factory=list)
    voucher_results: list[Any] = field(default_factory=list)

    @property
    def status(self) -> Status:
        if self.phase != ACTIVE:
            return self.phase
        if self.initiator_paused and self.responder_paused:
            return S.BothPaused
        if self.initiator_paused:
            return S.InitiatorPaused
        if self.responder_paused:
            return S.ResponderPaused
        return S.Ongoing if self.started else S.Requested

    def go(self, phase: Any, started: bool = False) -> None:
        self.phase = phase
        self.started = started
        self.initiator_paused = self.responder_paused = False

    def transferring(self) -> bool:
        return self.phase in (ACTIVE, S.ResponderCompleted, S.ResponderFinalizing)

    def step(self, event: EventCode, arg: Any) -> bool:
        """Apply ``event``; return False (changing nothing) when it is refused."""
        status = self.status
        if status in FINAL:
            return False
        active = self.phase == ACTIVE
        winding_down = status in (S.Failing, S.Cancelling)
        if event is E.Open:
            self.go(ACTIVE)
        elif event is E.Accept:
            if status is not S.Requested:
                return False
            self.started = True
        elif event in (E.Restart, E.Opened, E.TransferRequestQueued):
            self.message = ""
        elif event is E.Cancel:
            self.go(S.Cancelling)
        elif event is E.Error:
            self.go(S.Failing)
            self.message = str(arg)
        elif event in (E.Disconnected, E.SendDataError, E.ReceiveDataError, E.RequestCancelled):
            self.message = str(arg)
        elif event is E.RequestTimedOut:
            return False
        elif event is E.DataReceived:
            self.received_index = max(self.received_index, arg)
        elif event in (E.DataSent, E.DataQueued):
            if not (self.transferring() or status is S.TransferFinished):
                return False
            if event is E.DataSent:
                self.sent_index = max(self.sent_index, arg)
            else:
                self.queued_index = max(self.queued_index, arg)
        elif event in (E.DataSentProgress, E.DataReceivedProgress, E.DataQueuedProgress):
            if not self.transferring():
                return False
            if event is E.DataSentProgress:
                self.sent += arg
            elif event is E.DataReceivedProgress:
                self.received += arg
            else:
                self.queued += arg
        elif event is E.NewVoucher:
            self.vouchers.append(arg)
        elif event is E.NewVoucherResult:
            self.voucher_results.append(arg)
        elif event is E.PauseInitiator:
            if active and not self.initiator_paused:
                self.initiator_paused, self.started = True, True
        elif event is E.PauseResponder:
            if active and not self.responder_paused:
                self.responder_paused, self.started = True, True
        elif event is E.ResumeInitiator:
            if active:
                self.initiator_paused = False
        elif event is E.ResumeResponder:
            if active:
                self.responder_paused = False
            elif status is S.Finalizing:
                self.go(S.Completing)
        elif event is E.FinishTransfer:
            if winding_down:
                pass
            elif status in (S.Requested, S.ResponderCompleted):
                self.go(S.Completing)
            elif status is S.ResponderFinalizing:
                self.go(S.ResponderFinalizingTransferFinished)
            else:
                self.go(S.TransferFinished)
        elif event is E.ResponderBeginsFinalization:
            if winding_down:
                pass
            elif status is S.TransferFinished:
                self.go(S.ResponderFinalizingTransferFinished)
            else:
                self.go(S.ResponderFinalizing)
        elif event is E.ResponderCompletes:
            if winding_down:
                pass
            elif status is S.ResponderPaused:
                self.go(S.ResponderFinalizing)
            elif status in (S.TransferFinished, S.ResponderFinalizingTransferFinished):
                self.go(S.Completing)
            else:
                self.go(S.ResponderCompleted)
        elif event is E.BeginFinalizing:
            self.go(S.Finalizing)
        elif event is E.Complete:
            self.go(S.Completing)
        elif event is E.CleanupComplete:
            after = {S.Cancelling: S.Cancelled, S.Failing: S.Failed, S.Completing: S.Completed}
            if status not in after:
                return False
            self.go(after[status])
        elif event is E.CompleteCleanupOnRestart:
            pass
        else:  # pragma: no cover - every event is handled above
            raise AssertionError(event)
        return True


@dataclass
class Channel:
    record: ChannelRecord
    model: Model
    high_water: tuple[int, ...] = (0, 0, 0, 0, 0, 0)
    was_final: bool = False


def _counters(record: ChannelRecord) -> tuple[int, ...]:
    return (
        record.sent, record.received, record.queued,
        record.sent_index, record.received_index, record.queued_index,
    )  # fmt: skip


ARG_VALUES = {
    "delta": st.integers(0, 1 << 20),
    "index": st.integers(0, 10_000),
    "error": st.one_of(st.text(max_size=8), st.builds(OSError, st.text(max_size=8))),
    "voucher": st.binary(min_size=1, max_size=4),
    "voucher_result": st.binary(min_size=1, max_size=4),
}

BAD_VALUES: dict[str, list[Any]] = {
    "delta": [-1, None, 2.5, True],
    "index": [-1, "3", None],
    "error": [None, 3],
    "voucher": [None],
    "voucher_result": [None],
}

# Events weighted so channels spend time in every region before they end:
# each event appears once, and the pause/finish family a second time.
EVENTS = list(EventCode) + [
    E.PauseInitiator, E.PauseResponder, E.ResumeInitiator, E.ResumeResponder,
    E.Accept, E.FinishTransfer, E.ResponderCompletes, E.ResponderBeginsFinalization,
    E.DataSentProgress, E.DataReceivedProgress,
]  # fmt: skip


class ChannelMachine(RuleBasedStateMachine):
    """Many channels, random events, one shared state machine."""

    channels = Bundle("channels")

    def __init__(self) -> None:
        super().__init__()
        self.all: list[Channel] = []

    def _new(self) -> Channel:
        channel = Channel(ChannelRecord(), Model())
        self.all.append(channel)
        return channel

    @initialize(target=channels, n=st.integers(1, 50))
    def open_channels(self, n: int) -> Any:
        return multiple(*(self._new() for _ in range(n)))

    @rule(target=channels)
    def open_another(self) -> Channel:
        return self._new()

    @rule(channel=channels, event=st.sampled_from(EVENTS), data=st.data())
    def fire(self, channel: Channel, event: EventCode, data: st.DataObject) -> None:
        need = NEEDS.get(event)
        arg = data.draw(ARG_VALUES[need]) if need else None
        args = {need: arg} if need else {}
        record = channel.record
        before = record.copy()
        if channel.model.step(event, arg):
            apply(record, event, **args)
        else:
            try:
                apply(record, event, **args)
            except IllegalTransition as err:
                assert err.status == before.status and err.event == event
            else:
                raise AssertionError(f"{event.name} accepted in {before.status.name}")
            assert record == before
        self._check(channel)

    @rule(channel=channels, event=st.sampled_from(sorted(NEEDS)), data=st.data())
    def fire_with_bad_argument(
        self, channel: Channel, event: EventCode, data: st.DataObject
    ) -> None:
        """A wrong argument never changes anything, whatever the event's legality."""
        name = NEEDS[event]
        bad = data.draw(st.sampled_from(BAD_VALUES[name]))
        record = channel.record
        before = record.copy()
        legal = _probe(channel.model, event)
        try:
            apply(record, event, **{name: bad})
        except EventArgumentError:
            assert legal
        except IllegalTransition:
            assert not legal
        else:
            raise AssertionError(f"{event.name} accepted {name}={bad!r}")
        assert record == before
        self._check(channel)

    def _check(self, channel: Channel) -> None:
        record, model = channel.record, channel.model
        assert record.status is model.status
        status = record.status
        assert (status is S.InitiatorPaused) == (
            model.initiator_paused and not model.responder_paused
        )
        assert (status is S.ResponderPaused) == (
            model.responder_paused and not model.initiator_paused
        )
        assert (status is S.BothPaused) == (model.initiator_paused and model.responder_paused)
        counters = _counters(record)
        assert counters == (
            model.sent, model.received, model.queued,
            model.sent_index, model.received_index, model.queued_index,
        )  # fmt: skip
        assert all(now >= then for now, then in zip(counters, channel.high_water, strict=True))
        channel.high_water = counters
        assert record.message == model.message
        assert record.vouchers == model.vouchers
        assert record.voucher_results == model.voucher_results
        if channel.was_final:
            assert status in FINAL
        channel.was_final = status in FINAL

    def teardown(self) -> None:
        # Only the channel a rule touched can change, and each rule checks
        # it; at the end make sure no other channel moved either (the
        # machine is shared, so a leak between channels would show here).
        for channel in self.all:
            self._check(channel)


def _probe(model: Model, event: EventCode) -> bool:
    """Would ``model`` accept ``event``?  Asked on a throwaway copy."""
    copy = Model(
        phase=model.phase,
        started=model.started,
        initiator_paused=model.initiator_paused,
        responder_paused=model.responder_paused,
    )
    sample = {"delta": 0, "index": 0, "error": "", "voucher": b"x", "voucher_result": b"x"}
    return copy.step(event, sample.get(NEEDS.get(event, ""), None))


TestChannelMachine = ChannelMachine.TestCase
