"""apply's fast path against the reference: every event through ``transitions``.

:func:`statemachine.apply` serves the rows that keep the status from a
precomputed dict and sends everything else through the ``transitions``
machine; :func:`statemachine.machine.apply_via_transitions` sends everything
through ``transitions``, as ``apply`` used to.  Here both get the same record
(copied), the same event and the same arguments, right or wrong, from any
status (final ones, ChannelNotFoundError and raw values included), and must
end the same way: the same record contents, or the same exception with the
record untouched.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from statemachine import (
    ChannelRecord,
    EventArgumentError,
    EventCode,
    Kind,
    Status,
    apply,
    rows,
)
from statemachine import machine as machine_module
from statemachine.machine import apply_via_transitions

S = Status
E = EventCode

GOOD: dict[str, list[Any]] = {
    "delta": [0, 1, 4096],
    "index": [0, 3, 10_000],
    "error": ["boom", OSError("link down")],
    "voucher": [b"v"],
    "voucher_result": [b"r"],
}
BAD: dict[str, list[Any]] = {
    "delta": [-1, None, 2.5, True, "7"],
    "index": [-1, "3", None, False],
    "error": [None, 3, b"bytes"],
    "voucher": [None],
    "voucher_result": [None],
}
NAMES = [*GOOD, "bogus"]

# Statuses a record may hold: every member (finals and ChannelNotFoundError
# too), the same as plain ints or names, and values that are no status.
statuses = st.one_of(
    st.sampled_from(list(Status)),
    st.integers(-1, 18),
    st.sampled_from([s.name for s in Status] + ["Nowhere"]),
    st.sampled_from([None, 2.0]),
)
# Events: every code, plain ints (some out of range) and non-events.
events = st.one_of(
    st.sampled_from(list(EventCode)),
    st.integers(-1, 33),
    st.sampled_from([None, "Accept", 1.0]),
)
values = st.one_of(
    st.sampled_from([v for vs in GOOD.values() for v in vs]),
    st.sampled_from([v for vs in BAD.values() for v in vs]),
    st.integers(-5, 1 << 40),
    st.text(max_size=4),
)


@st.composite
def arguments(draw: st.DrawFn) -> dict[str, Any]:
    """Mostly the right argument for some event, sometimes anything at all."""
    names = draw(st.lists(st.sampled_from(NAMES), max_size=3, unique=True))
    args = {}
    for name in names:
        pool = GOOD.get(name, []) + BAD.get(name, [])
        args[name] = draw(st.sampled_from(pool) if pool and draw(st.booleans()) else values)
    return args


@st.composite
def records(draw: st.DrawFn) -> ChannelRecord:
    counts = st.integers(0, 1 << 20)
    record = ChannelRecord(
        message=draw(st.sampled_from(["", "old error"])),
        sent=draw(counts),
        received=draw(counts),
        queued=draw(counts),
        sent_index=draw(counts),
        received_index=draw(counts),
        queued_index=draw(counts),
        vouchers=draw(st.lists(st.binary(max_size=2), max_size=2)),
        voucher_results=draw(st.lists(st.binary(max_size=2), max_size=2)),
        app_paused=draw(st.booleans()),
    )
    record.status = draw(statuses)  # after __post_init__, so raw values stay raw
    return record


def _fields(record: ChannelRecord) -> tuple[Any, ...]:
    """Every field, plus the status's type (Status member or raw value)."""
    return (
        type(record.status), record.status, record.message,
        record.sent, record.received, record.queued,
        record.sent_index, record.received_index, record.queued_index,
        list(record.vouchers), list(record.voucher_results),
        record.app_paused, record.paused_for_voucher,
        record.awaiting_validation, record.paid_while_finalizing,
    )  # fmt: skip


def _outcome(fn: Any, record: ChannelRecord, event: Any, args: dict[str, Any]) -> tuple[Any, ...]:
    before = _fields(record)
    try:
        returned = fn(record, event, **args)
    except Exception as err:  # noqa: BLE001 - any exception must match the reference's
        assert _fields(record) == before, f"{type(err).__name__} but the record changed"
        return ("raised", type(err), str(err))
    assert returned is record
    return ("applied", _fields(record))


def assert_same(record: ChannelRecord, event: Any, args: dict[str, Any]) -> None:
    ours, reference = _copy(record), _copy(record)
    got = _outcome(apply, ours, event, args)
    want = _outcome(apply_via_transitions, reference, event, args)
    assert got == want, f"status={record.status!r} event={event!r} args={args!r}"


def _copy(record: ChannelRecord) -> ChannelRecord:
    """A copy that keeps a raw status raw (ChannelRecord.copy would convert it)."""
    copy = ChannelRecord(
        S.Requested, record.message, record.sent, record.received, record.queued,
        record.sent_index, record.received_index, record.queued_index,
        list(record.vouchers), list(record.voucher_results), record.app_paused,
        record.paused_for_voucher, record.awaiting_validation, record.paid_while_finalizing,
    )  # fmt: skip
    copy.status = record.status
    return copy


@settings(max_examples=max(settings().max_examples, 600))
@given(record=records(), event=events, args=arguments())
@example(record=ChannelRecord(S.Ongoing), event=E.DataSentProgress, args={"delta": 5})
@example(record=ChannelRecord(S.Ongoing), event=E.DataSentProgress, args={"delta": -1})
@example(record=ChannelRecord(S.Ongoing), event=E.DataSentProgress, args={})
@example(record=ChannelRecord(S.Ongoing), event=E.Restart, args={"error": "x"})
@example(record=ChannelRecord(S.Completed), event=E.DataReceived, args={"index": 1})
@example(record=ChannelRecord(S.ChannelNotFoundError), event=E.Restart, args={})
@example(record=ChannelRecord(S.Requested), event=E.Accept, args={})
def test_fast_path_matches_transitions(
    record: ChannelRecord, event: Any, args: dict[str, Any]
) -> None:
    assert_same(record, event, args)


def _right_args(event: EventCode) -> dict[str, Any]:
    return {name: GOOD[name][-1] for name in machine_module.effect_of(event).params}


def test_every_status_and_event_with_right_and_wrong_arguments() -> None:
    """The whole (status, event) grid, not left to chance."""
    for status in Status:
        for event in EventCode:
            right = _right_args(event)
            tries = [right, {}, {"bogus": 1}, {**right, "bogus": 1}]
            tries += [{name: bad} for name in right for bad in BAD[name]]
            for args in tries:
                assert_same(ChannelRecord(status, sent=7, received_index=9), event, args)


def test_fast_path_holds_exactly_the_rows_that_keep_the_status() -> None:
    keep = {(row.source, row.event) for row in rows() if row.kind is not Kind.MOVE}
    assert set(machine_module._INTERNAL) == keep
    assert keep  # REENTER and RECORD rows exist, so the fast path is in use


@pytest.mark.parametrize(
    "broken",
    [
        # writes without checking
        lambda good: (
            lambda record, kwargs: machine_module.effect_of(E.DataSentProgress).write(
                record, *kwargs.values()
            )
        ),
        # checks, then writes twice
        lambda good: lambda record, kwargs: (good(record, kwargs), good(record, kwargs)),
        # checks and writes, then changes the status
        lambda good: (
            lambda record, kwargs: (good(record, kwargs), setattr(record, "status", S.Failing))
        ),
        # refuses with the wrong error
        lambda good: lambda record, kwargs: (_ for _ in ()).throw(EventArgumentError(E.Open, "x")),
    ],
)
def test_a_diverging_fast_path_is_caught(broken: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The comparison has teeth: break one fast-path entry and it fails."""
    key = (S.Ongoing, E.DataSentProgress)
    good = machine_module._INTERNAL[key]
    monkeypatch.setitem(machine_module._INTERNAL, key, broken(good))
    cases = [{"delta": 5}, {"delta": -1}, {"delta": 5, "bogus": 1}]
    with pytest.raises(AssertionError):
        for args in cases:
            assert_same(ChannelRecord(S.Ongoing, sent=3), E.DataSentProgress, args)
