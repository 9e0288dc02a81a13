"""The transition table, row by row, against expectations written out here.

``EXPECTED`` below is an independent transcription of go-data-transfer
v1.15.x ``channels/channels_fsm.go`` (as run by go-statemachine's fsm: exact
source first, then the any-source fallback; final statuses refuse every
event).  It is deliberately *not* generated from ``statemachine.table``: if
the two disagree, one of them is wrong and a test fails.
"""

from __future__ import annotations

import logging
import pickle
from typing import Any

import pytest

from statemachine import (
    CLEANUP_STATUSES,
    FINAL_STATUSES,
    MACHINE,
    MACHINE_STATUSES,
    PROGRESS_EVENTS,
    TRANSFERRING_STATUSES,
    ChannelRecord,
    EventArgumentError,
    EventCode,
    IllegalTransition,
    Kind,
    StateMachineError,
    Status,
    UnknownEvent,
    allowed_events,
    apply,
    is_final,
    resolve,
    rows,
)

S = Status
E = EventCode

# -- numbering -------------------------------------------------------------------

STATUS_NAMES = [
    "Requested", "Ongoing", "TransferFinished", "ResponderCompleted", "Finalizing",
    "Completing", "Completed", "Failing", "Failed", "Cancelling", "Cancelled",
    "InitiatorPaused", "ResponderPaused", "BothPaused", "ResponderFinalizing",
    "ResponderFinalizingTransferFinished", "ChannelNotFoundError",
]  # fmt: skip

EVENT_NAMES = [
    "Open", "Accept", "Restart", "DataReceived", "DataSent", "Cancel", "Error",
    "CleanupComplete", "NewVoucher", "NewVoucherResult", "PauseInitiator",
    "ResumeInitiator", "PauseResponder", "ResumeResponder", "FinishTransfer",
    "ResponderCompletes", "ResponderBeginsFinalization", "BeginFinalizing",
    "Disconnected", "Complete", "CompleteCleanupOnRestart", "DataQueued",
    "DataQueuedProgress", "DataSentProgress", "DataReceivedProgress",
    "RequestTimedOut", "SendDataError", "ReceiveDataError", "TransferRequestQueued",
    "RequestCancelled", "Opened",
]  # fmt: skip


def test_status_numbering() -> None:
    assert [(s.name, s.value) for s in Status] == [(n, i) for i, n in enumerate(STATUS_NAMES)]
    assert Status.ChannelNotFoundError == 16


def test_event_numbering() -> None:
    assert [(e.name, e.value) for e in EventCode] == [(n, i) for i, n in enumerate(EVENT_NAMES)]
    assert EventCode.Opened == 30


def test_progress_events_stand_for_the_seeds_progress() -> None:
    assert PROGRESS_EVENTS == {E.DataQueuedProgress, E.DataSentProgress, E.DataReceivedProgress}
    assert "Progress" not in EventCode.__members__


def test_status_groups() -> None:
    assert FINAL_STATUSES == {S.Completed, S.Failed, S.Cancelled}
    assert CLEANUP_STATUSES == {S.Cancelling, S.Completing, S.Failing}
    assert TRANSFERRING_STATUSES == {
        S.Requested, S.Ongoing, S.InitiatorPaused, S.ResponderPaused, S.BothPaused,
        S.ResponderCompleted, S.ResponderFinalizing,
    }  # fmt: skip
    assert S.ChannelNotFoundError not in MACHINE_STATUSES
    assert len(MACHINE_STATUSES) == 16
    assert [s for s in Status if is_final(s)] == [S.Completed, S.Failed, S.Cancelled]


# -- the expectations ------------------------------------------------------------------

# Short names for the grid.  Final statuses never appear as sources.
CODES: dict[str, Status] = {
    "Rq": S.Requested, "On": S.Ongoing, "TF": S.TransferFinished,
    "RC": S.ResponderCompleted, "Fz": S.Finalizing, "Cg": S.Completing,
    "Fg": S.Failing, "Cl": S.Cancelling, "IP": S.InitiatorPaused,
    "RP": S.ResponderPaused, "BP": S.BothPaused, "RF": S.ResponderFinalizing,
    "RT": S.ResponderFinalizingTransferFinished,
    "Cd": S.Completed, "Fd": S.Failed, "Cx": S.Cancelled,
}  # fmt: skip

# Column order of the grid: every non-final status.
COLUMNS = "Rq On TF RC Fz Cg Fg Cl IP RP BP RF RT".split()

# Cell meanings:
#   <code> the status moves there (if it is the source itself: stays, and the
#          entry handler runs again, as go-statemachine does for To(same))
#   ~      stays, entry handler runs again   (Go ToNoChange)
#   .      stays, only data is recorded      (Go ToJustRecord)
#   -      refused
EXPECTED: dict[EventCode, str] = {
    #                               Rq On TF RC Fz Cg Fg Cl IP RP BP RF RT
    E.Open:                        "Rq Rq Rq Rq Rq Rq Rq Rq Rq Rq Rq Rq Rq",
    E.Accept:                      "On -  -  -  -  -  -  -  -  -  -  -  - ",
    E.Restart:                     ".  .  .  .  .  .  .  .  .  .  .  .  . ",
    E.DataReceived:                "~  ~  ~  ~  ~  ~  ~  ~  ~  ~  ~  ~  ~ ",
    E.DataSent:                    "~  ~  ~  ~  -  -  -  -  ~  ~  ~  ~  - ",
    E.Cancel:                      "Cl Cl Cl Cl Cl Cl Cl Cl Cl Cl Cl Cl Cl",
    E.Error:                       "Fg Fg Fg Fg Fg Fg Fg Fg Fg Fg Fg Fg Fg",
    E.CleanupComplete:             "-  -  -  -  -  Cd Fd Cx -  -  -  -  - ",
    E.NewVoucher:                  "~  ~  ~  ~  ~  ~  ~  ~  ~  ~  ~  ~  ~ ",
    E.NewVoucherResult:            "~  ~  ~  ~  ~  ~  ~  ~  ~  ~  ~  ~  ~ ",
    E.PauseInitiator:              "IP IP .  .  .  .  .  .  .  BP .  .  . ",
    E.ResumeInitiator:             ".  .  .  .  .  .  .  .  On .  RP .  . ",
    E.PauseResponder:              "RP RP .  .  .  .  .  .  BP .  .  .  . ",
    E.ResumeResponder:             ".  .  .  .  Cg .  .  .  .  On IP .  . ",
    E.FinishTransfer:              "Cg TF TF Cg TF TF .  .  TF TF TF RT TF",
    E.ResponderCompletes:          "RC RC Cg RC RC RC .  .  RC RF RC RC Cg",
    E.ResponderBeginsFinalization: "RF RF RT RF RF RF .  .  RF RF RF RF RF",
    E.BeginFinalizing:             "Fz Fz Fz Fz Fz Fz Fz Fz Fz Fz Fz Fz Fz",
    E.Disconnected:                "~  ~  ~  ~  ~  ~  ~  ~  ~  ~  ~  ~  ~ ",
    E.Complete:                    "Cg Cg Cg Cg Cg Cg Cg Cg Cg Cg Cg Cg Cg",
    E.CompleteCleanupOnRestart:    "~  ~  ~  ~  ~  ~  ~  ~  ~  ~  ~  ~  ~ ",
    E.DataQueued:                  "~  ~  ~  ~  -  -  -  -  ~  ~  ~  ~  - ",
    E.DataQueuedProgress:          "~  ~  -  ~  -  -  -  -  ~  ~  ~  ~  - ",
    E.DataSentProgress:            "~  ~  -  ~  -  -  -  -  ~  ~  ~  ~  - ",
    E.DataReceivedProgress:        "~  ~  -  ~  -  -  -  -  ~  ~  ~  ~  - ",
    E.RequestTimedOut:             "-  -  -  -  -  -  -  -  -  -  -  -  - ",
    E.SendDataError:               "~  ~  ~  ~  ~  ~  ~  ~  ~  ~  ~  ~  ~ ",
    E.ReceiveDataError:            "~  ~  ~  ~  ~  ~  ~  ~  ~  ~  ~  ~  ~ ",
    E.TransferRequestQueued:       ".  .  .  .  .  .  .  .  .  .  .  .  . ",
    E.RequestCancelled:            "~  ~  ~  ~  ~  ~  ~  ~  ~  ~  ~  ~  ~ ",
    E.Opened:                      ".  .  .  .  .  .  .  .  .  .  .  .  . ",
}  # fmt: skip

# Arguments each event needs (written here, not read from the table).
ARGS: dict[EventCode, dict[str, Any]] = {
    E.Error: {"error": "boom"},
    E.Disconnected: {"error": ConnectionError("peer gone")},
    E.SendDataError: {"error": "send failed"},
    E.ReceiveDataError: {"error": "receive failed"},
    E.RequestCancelled: {"error": "request cancelled"},
    E.DataReceived: {"index": 7},
    E.DataSent: {"index": 7},
    E.DataQueued: {"index": 7},
    E.DataReceivedProgress: {"delta": 100},
    E.DataSentProgress: {"delta": 100},
    E.DataQueuedProgress: {"delta": 100},
    E.NewVoucher: {"voucher": b"voucher"},
    E.NewVoucherResult: {"voucher_result": b"result"},
}


def _expectations() -> list[tuple[EventCode, Status, str]]:
    out = []
    for event, line in EXPECTED.items():
        cells = line.split()
        assert len(cells) == len(COLUMNS), event
        out += [(event, CODES[col], cell) for col, cell in zip(COLUMNS, cells, strict=True)]
    return out


EXPECTATIONS = _expectations()


def _outcome(source: Status, cell: str) -> tuple[Status, Kind] | None:
    """(status afterwards, kind) for a grid cell, or None when refused."""
    if cell == "-":
        return None
    if cell == "~":
        return source, Kind.REENTER
    if cell == ".":
        return source, Kind.RECORD
    target = CODES[cell]
    return target, (Kind.REENTER if target is source else Kind.MOVE)


def _busy_record(status: Status) -> ChannelRecord:
    """A record with non-default data everywhere, so 'unchanged' means something."""
    return ChannelRecord(
        status=status, message="earlier", sent=10, received=20, queued=30,
        sent_index=5, received_index=6, queued_index=8,
        vouchers=["v0"], voucher_results=["r0"],
    )  # fmt: skip


def test_grid_covers_every_event_and_non_final_status() -> None:
    assert set(EXPECTED) == set(EventCode)
    assert {CODES[c] for c in COLUMNS} == set(MACHINE_STATUSES) - FINAL_STATUSES


@pytest.mark.parametrize(
    ("event", "source", "cell"),
    EXPECTATIONS,
    ids=[f"{s.name}-{e.name}" for e, s, _ in EXPECTATIONS],
)
def test_row(event: EventCode, source: Status, cell: str) -> None:
    """One test per (status, event): the table's answer matches the transcription."""
    expected = _outcome(source, cell)
    record = _busy_record(source)
    before = record.copy()
    if expected is None:
        with pytest.raises(IllegalTransition) as info:
            apply(record, event, **ARGS.get(event, {}))
        assert info.value.status == source and info.value.event == event
        assert record == before
        assert event not in allowed_events(source)
        with pytest.raises(IllegalTransition):
            resolve(source, event)
        return
    status, kind = expected
    assert apply(record, event, **ARGS.get(event, {})) is record
    assert record.status is status
    assert event in allowed_events(source)
    row = resolve(source, event)
    assert (row.source, row.target, row.kind) == (source, status, kind)
    assert row.runs_entry is (kind is not Kind.RECORD)


def test_table_has_exactly_the_expected_rows() -> None:
    expected = set()
    for event, source, cell in EXPECTATIONS:
        outcome = _outcome(source, cell)
        if outcome is not None:
            expected.add((event, source, *outcome))
    actual = [(r.event, r.source, r.target, r.kind) for r in rows()]
    assert len(actual) == len(set(actual))
    assert set(actual) == expected


@pytest.mark.parametrize("status", sorted(FINAL_STATUSES))
@pytest.mark.parametrize("event", list(EventCode))
def test_final_statuses_absorb_everything(status: Status, event: EventCode) -> None:
    record = _busy_record(status)
    before = record.copy()
    with pytest.raises(IllegalTransition):
        apply(record, event, **ARGS.get(event, {}))
    assert record == before
    assert allowed_events(status) == frozenset()


@pytest.mark.parametrize("event", list(EventCode))
def test_channel_not_found_is_not_a_machine_state(event: EventCode) -> None:
    record = _busy_record(S.ChannelNotFoundError)
    before = record.copy()
    with pytest.raises(IllegalTransition):
        apply(record, event, **ARGS.get(event, {}))
    assert record == before
    assert allowed_events(S.ChannelNotFoundError) == frozenset()
    assert S.ChannelNotFoundError.name not in MACHINE.states


# -- data effects -----------------------------------------------------------------------


def test_progress_adds_bytes() -> None:
    record = ChannelRecord()
    apply(record, E.Accept)
    apply(record, E.DataSentProgress, delta=10)
    apply(record, E.DataSentProgress, delta=5)
    apply(record, E.DataReceivedProgress, delta=3)
    apply(record, E.DataQueuedProgress, delta=0)
    apply(record, E.DataQueuedProgress, delta=4)
    assert (record.sent, record.received, record.queued) == (15, 3, 4)
    assert record.status is S.Ongoing


def test_progress_refused_outside_transferring_states_adds_nothing() -> None:
    record = ChannelRecord(status=S.TransferFinished, sent=9)
    with pytest.raises(IllegalTransition):
        apply(record, E.DataSentProgress, delta=100)
    assert record.sent == 9


def test_block_indices_keep_the_highest() -> None:
    record = ChannelRecord(status=S.Ongoing)
    for event, attr in (
        (E.DataSent, "sent_index"),
        (E.DataReceived, "received_index"),
        (E.DataQueued, "queued_index"),
    ):
        apply(record, event, index=5)
        apply(record, event, index=3)
        assert getattr(record, attr) == 5
        apply(record, event, index=9)
        assert getattr(record, attr) == 9
    # DataReceived is accepted (and recorded) even in a cleanup status.
    record.status = S.Cancelling
    apply(record, E.DataReceived, index=12)
    assert record.received_index == 12


def test_vouchers_are_appended_in_order() -> None:
    record = ChannelRecord()
    apply(record, E.NewVoucher, voucher="a")
    apply(record, E.NewVoucher, voucher="b")
    apply(record, E.NewVoucherResult, voucher_result="ra")
    assert record.vouchers == ["a", "b"]
    assert record.voucher_results == ["ra"]
    assert record.status is S.Requested


@pytest.mark.parametrize(
    "event", [E.Error, E.Disconnected, E.SendDataError, E.ReceiveDataError, E.RequestCancelled]
)
def test_errors_and_signals_record_the_message(event: EventCode) -> None:
    record = ChannelRecord(status=S.Ongoing)
    apply(record, event, error=OSError("link down"))
    assert record.message == "link down"
    assert record.status is (S.Failing if event is E.Error else S.Ongoing)


@pytest.mark.parametrize("event", [E.Restart, E.Opened, E.TransferRequestQueued])
def test_record_only_events_clear_the_message(event: EventCode) -> None:
    record = ChannelRecord(status=S.Ongoing, message="stale error")
    apply(record, event)
    assert record.message == ""
    assert record.status is S.Ongoing


def test_other_events_leave_the_message_alone() -> None:
    record = ChannelRecord(status=S.Ongoing, message="kept")
    apply(record, E.PauseInitiator)
    apply(record, E.Cancel)
    assert record.message == "kept"


def test_pause_algebra_round_trip() -> None:
    record = ChannelRecord(status=S.Ongoing)
    apply(record, E.PauseInitiator)
    apply(record, E.PauseResponder)
    assert record.status is S.BothPaused
    apply(record, E.PauseInitiator)  # already paused: recorded, no change
    assert record.status is S.BothPaused
    apply(record, E.ResumeInitiator)
    assert record.status is S.ResponderPaused
    apply(record, E.ResumeResponder)
    assert record.status is S.Ongoing


def test_full_success_path_initiator_and_responder() -> None:
    initiator = ChannelRecord()
    for event in (E.Accept, E.FinishTransfer, E.ResponderCompletes, E.CleanupComplete):
        apply(initiator, event)
    assert initiator.status is S.Completed
    responder = ChannelRecord()
    apply(responder, E.NewVoucherResult, voucher_result="ok")
    for event in (E.Accept, E.BeginFinalizing, E.ResumeResponder, E.CleanupComplete):
        apply(responder, event)
    assert responder.status is S.Completed


# -- argument checking ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "args"),
    [
        (E.DataSentProgress, {}),
        (E.DataSentProgress, {"delta": -1}),
        (E.DataSentProgress, {"delta": True}),
        (E.DataSentProgress, {"delta": 1.5}),
        (E.DataSentProgress, {"delta": 1, "index": 2}),
        (E.DataSent, {"index": -3}),
        (E.DataSent, {"delta": 3}),
        (E.Error, {}),
        (E.Error, {"error": 42}),
        (E.NewVoucher, {"voucher": None}),
        (E.Accept, {"extra": 1}),
        (E.Cancel, {"error": "why"}),
    ],
)
def test_bad_arguments_raise_and_change_nothing(event: EventCode, args: dict[str, Any]) -> None:
    record = _busy_record(S.Requested)
    before = record.copy()
    with pytest.raises(EventArgumentError) as info:
        apply(record, event, **args)
    assert isinstance(info.value, StateMachineError)
    assert info.value.event == event
    assert record == before


def test_illegal_event_with_bad_arguments_reports_illegal_transition() -> None:
    record = ChannelRecord(status=S.Finalizing)
    with pytest.raises(IllegalTransition):
        apply(record, E.DataSentProgress, delta=-1)


def test_unknown_event_code() -> None:
    record = ChannelRecord()
    with pytest.raises(UnknownEvent):
        apply(record, 99)  # type: ignore[arg-type]
    assert record == ChannelRecord()


def test_plain_ints_are_accepted_as_event_codes() -> None:
    record = ChannelRecord()
    apply(record, 1)  # type: ignore[arg-type]  # Accept
    assert record.status is S.Ongoing


def test_errors_are_typed_and_picklable() -> None:
    err = IllegalTransition(S.Completed, E.Open)
    assert isinstance(err, StateMachineError)
    assert "Open" in str(err) and "Completed" in str(err)
    again = pickle.loads(pickle.dumps(err))
    assert (again.status, again.event) == (S.Completed, E.Open)
    arg = pickle.loads(pickle.dumps(EventArgumentError(E.Error, "x")))
    assert (arg.event, arg.detail) == (E.Error, "x")


# -- one machine for all channels -----------------------------------------------------------


def test_one_shared_machine_no_per_channel_state() -> None:
    records = [ChannelRecord() for _ in range(1000)]
    for record in records:
        apply(record, E.Accept)
        apply(record, E.DataReceivedProgress, delta=1)
    assert MACHINE.models == []
    assert not hasattr(records[0], "__dict__")  # slotted: no trigger methods bound
    assert not hasattr(records[0], "Accept")
    assert all(r.status is S.Ongoing and r.received == 1 for r in records)



def test_transitions_library_does_not_log_each_transition_at_info(caplog):
    """An application that logs at INFO must not get two lines per state
    change from the `transitions` library: with thousands of channels they
    would drown its own log, and the channel's events already say it all."""
    caplog.set_level(logging.INFO)
    record = ChannelRecord()
    apply(record, E.Accept)
    assert record.status is S.Ongoing
    assert [r for r in caplog.records if r.name.startswith("transitions")] == []


def test_restart_queues_again_what_a_voucher_pause_held() -> None:
    """A responder held for a voucher had queued the held block and never
    sent it: Restart puts ``queued`` back to ``sent``, so that block is
    counted and decided anew; otherwise Restart leaves the counters alone."""
    held = ChannelRecord(status=S.ResponderPaused, message="gone", sent=700, sent_index=4,
                         queued=1000, queued_index=5, paused_for_voucher=True)
    apply(held, E.Restart)
    assert (held.queued, held.queued_index, held.message) == (700, 4, "")
    assert (held.sent, held.sent_index, held.status) == (700, 4, S.ResponderPaused)
    flowing = ChannelRecord(status=S.Ongoing, sent=700, sent_index=4, queued=1000,
                            queued_index=5)
    apply(flowing, E.Restart)
    assert (flowing.queued, flowing.queued_index) == (1000, 5)
