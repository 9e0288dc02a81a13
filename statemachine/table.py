"""THE transition table of a data-transfer channel, and the data each event records.

Everything that decides a channel's status is written once, below, as data:
:data:`TRANSITIONS` says, for each event, which status it moves a channel to
from each status; :data:`EFFECTS` says what the event writes into the
channel's :class:`ChannelRecord`.  The shared machine (``machine.py``), the
diagrams (``diagram.py``) and the helpers at the bottom of this module are all
derived from these two mappings; nothing else spells the rules out.

The rules are those of go-data-transfer v1.15.x (``channels/channels_fsm.go``,
run by go-statemachine's ``fsm`` package), read as:

* ``ANY`` means "every status that is not final and not named elsewhere in
  the same event's row".  Specific sources always win over ``ANY``,
  whatever order they are written in (that is how go-statemachine looks
  transitions up: exact source first, then the any-source fallback).
* A final status (Completed, Failed, Cancelled) refuses every event; the Go
  fsm reports ``ErrTerminated``.  We raise ``IllegalTransition``.
* A status missing from an event's row refuses that event.
* Two ways of not changing status are kept apart, because the engine acts
  differently on them:

  - ``REENTER`` (Go's ``ToNoChange``, and any ``To(X)`` from X itself): the
    status is unchanged, but the engine runs the status's entry handler
    again.  That matters for the cleanup statuses: e.g. ``Disconnected`` or
    ``CompleteCleanupOnRestart`` while ``Cancelling`` re-runs the cleanup,
    which ends in ``CleanupComplete``.
  - ``RECORD`` (Go's ``ToJustRecord``): the status is unchanged and no entry
    handler runs; only the event's data effect (if any) happens.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Final

from statemachine.errors import IllegalTransition
from statemachine.status import (
    FINAL_STATUSES,
    MACHINE_STATUSES,
    TRANSFERRING_STATUSES,
    EventCode,
    Status,
)


class Kind(Enum):
    """What a row of the table does to the status."""

    #: The status changes to the row's target; the target's entry handler runs.
    MOVE = "move"
    #: The status stays; its entry handler runs again (Go ``ToNoChange``).
    REENTER = "re-enter"
    #: The status stays; no entry handler runs (Go ``ToJustRecord``).
    RECORD = "record"


class _Any:
    """Source marker: every non-final status not named elsewhere in the row."""

    _instance: _Any | None = None

    def __new__(cls) -> _Any:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "ANY"


ANY: Final = _Any()
REENTER: Final = Kind.REENTER
RECORD: Final = Kind.RECORD

#: A source written in the table: one status, a group of statuses, or ANY.
Source = Status | tuple[Status, ...] | frozenset[Status] | _Any
#: A target written in the table: a status, REENTER or RECORD.
Target = Status | Kind

S = Status
E = EventCode
TRANSFERRING = TRANSFERRING_STATUSES

# ---------------------------------------------------------------------------
# The table.  Read one event at a time, top to bottom.
# ---------------------------------------------------------------------------

TRANSITIONS: Mapping[EventCode, Mapping[Source, Target]] = {
    # -- opening ------------------------------------------------------------
    # A channel is created in Requested; Open (re)starts it from anywhere.
    E.Open: {ANY: S.Requested},
    # Only a request still waiting for an answer can be accepted.
    E.Accept: {S.Requested: S.Ongoing},
    # Transport bookkeeping: these clear a stale error message, nothing more.
    E.TransferRequestQueued: {ANY: RECORD},
    E.Restart: {ANY: RECORD},
    E.Opened: {ANY: RECORD},
    # -- ending early ---------------------------------------------------------
    E.Cancel: {ANY: S.Cancelling},
    E.Error: {ANY: S.Failing},
    # -- transport signals: feed restart logic, never fail the channel --------
    E.Disconnected: {ANY: REENTER},
    E.SendDataError: {ANY: REENTER},
    E.ReceiveDataError: {ANY: REENTER},
    E.RequestCancelled: {ANY: REENTER},
    # Deprecated in the Go reference (v1.8 dropped its row in favour of
    # RequestCancelled): no status accepts it.
    E.RequestTimedOut: {},
    # -- data movement ----------------------------------------------------------
    # Block counts (for restart): received blocks are counted everywhere,
    # sent/queued blocks only while transferring or just after.
    E.DataReceived: {ANY: REENTER},
    E.DataSent: {TRANSFERRING: REENTER, S.TransferFinished: REENTER},
    E.DataQueued: {TRANSFERRING: REENTER, S.TransferFinished: REENTER},
    # Byte counters: only while transferring.
    E.DataReceivedProgress: {TRANSFERRING: REENTER},
    E.DataSentProgress: {TRANSFERRING: REENTER},
    E.DataQueuedProgress: {TRANSFERRING: REENTER},
    # -- vouchers -----------------------------------------------------------------
    E.NewVoucher: {ANY: REENTER},
    E.NewVoucherResult: {ANY: REENTER},
    # -- pausing: each side's pause is independent; pausing twice is a no-op ----
    E.PauseInitiator: {
        (S.Requested, S.Ongoing): S.InitiatorPaused,
        S.ResponderPaused: S.BothPaused,
        ANY: RECORD,
    },
    E.PauseResponder: {
        (S.Requested, S.Ongoing): S.ResponderPaused,
        S.InitiatorPaused: S.BothPaused,
        ANY: RECORD,
    },
    E.ResumeInitiator: {
        S.InitiatorPaused: S.Ongoing,
        S.BothPaused: S.ResponderPaused,
        ANY: RECORD,
    },
    E.ResumeResponder: {
        S.ResponderPaused: S.Ongoing,
        S.BothPaused: S.InitiatorPaused,
        # The responder's final voucher arrived: the transfer is done.
        S.Finalizing: S.Completing,
        ANY: RECORD,
    },
    # -- finishing ------------------------------------------------------------------
    # This side has moved all its data.
    E.FinishTransfer: {
        ANY: S.TransferFinished,
        (S.Failing, S.Cancelling): RECORD,
        S.ResponderCompleted: S.Completing,
        S.ResponderFinalizing: S.ResponderFinalizingTransferFinished,
        # The peer never answered (or was never contacted): nothing to
        # finalize, so skip straight to cleanup.  (Added in v1.15.1.)
        S.Requested: S.Completing,
    },
    # The responder wants a final voucher before it completes.
    E.ResponderBeginsFinalization: {
        ANY: S.ResponderFinalizing,
        (S.Failing, S.Cancelling): RECORD,
        S.TransferFinished: S.ResponderFinalizingTransferFinished,
    },
    # The responder says it is done.
    E.ResponderCompletes: {
        ANY: S.ResponderCompleted,
        (S.Failing, S.Cancelling): RECORD,
        S.ResponderPaused: S.ResponderFinalizing,
        S.TransferFinished: S.Completing,
        S.ResponderFinalizing: S.ResponderCompleted,
        S.ResponderFinalizingTransferFinished: S.Completing,
    },
    # Responder side: data done, awaiting the initiator's last voucher.
    E.BeginFinalizing: {ANY: S.Finalizing},
    E.Complete: {ANY: S.Completing},
    # -- cleanup ------------------------------------------------------------------------
    E.CleanupComplete: {
        S.Cancelling: S.Cancelled,
        S.Failing: S.Failed,
        S.Completing: S.Completed,
    },
    # After a node restart: re-run the entry handler of channels that were
    # cleaning up, so they finish.  Harmless elsewhere.
    E.CompleteCleanupOnRestart: {ANY: REENTER},
}


# ---------------------------------------------------------------------------
# The record the events write into, and what each event writes.
# ---------------------------------------------------------------------------


@dataclass(slots=True)
class ChannelRecord:
    """The mutable part of a channel that the state machine owns.

    Plain data, no behaviour, no per-channel machine: 10,000 live channels
    cost 10,000 of these and nothing else.  The ``datatransfer`` package keeps
    the channel's identity (ids, peers, CID, selector...) beside it and builds
    immutable snapshots for subscribers.

    ``*_index`` fields are the Go reference's ``*BlocksTotal``: the highest
    running block count reported, used to resume after a restart.
    """

    status: Status = Status.Requested
    message: str = ""
    sent: int = 0
    received: int = 0
    queued: int = 0
    sent_index: int = 0
    received_index: int = 0
    queued_index: int = 0
    vouchers: list[Any] = field(default_factory=list)
    voucher_results: list[Any] = field(default_factory=list)
    # Protocol flags no event of the table sets, kept here so that they are
    # stored with the status they qualify (the Manager sets them):
    #: This node's application paused the channel; it stays paused across a
    #: node restart until the application resumes it, and no timeout applies.
    app_paused: bool = False
    #: A responder holds the channel until a voucher passes revalidation.
    paused_for_voucher: bool = False
    #: A responder waits for a voucher that passes validation (the validator
    #: raised RetryValidation); no pause is allowed meanwhile.
    awaiting_validation: bool = False
    #: The initiator sent a voucher while the responder waited for the final one.
    paid_while_finalizing: bool = False

    def __post_init__(self) -> None:
        # Accept a plain int (e.g. read back from a store) but always hold a
        # Status, so identity comparisons and names work everywhere.
        self.status = Status(self.status)

    def copy(self) -> ChannelRecord:
        """An independent copy (the voucher lists are copied too)."""
        return ChannelRecord(
            self.status,
            self.message,
            self.sent,
            self.received,
            self.queued,
            self.sent_index,
            self.received_index,
            self.queued_index,
            list(self.vouchers),
            list(self.voucher_results),
            self.app_paused,
            self.paused_for_voucher,
            self.awaiting_validation,
            self.paid_while_finalizing,
        )


def _clear_message(rec: ChannelRecord) -> None:
    rec.message = ""


def _set_message(rec: ChannelRecord, error: BaseException | str) -> None:
    rec.message = str(error)


def _raise_received_index(rec: ChannelRecord, index: int) -> None:
    if index > rec.received_index:
        rec.received_index = index


def _raise_sent_index(rec: ChannelRecord, index: int) -> None:
    if index > rec.sent_index:
        rec.sent_index = index


def _restart(rec: ChannelRecord) -> None:
    """A restarted transfer starts clean. A responder that held its data for
    a voucher had queued the block it held and never sent it: ``queued``
    goes back to ``sent``, so that block is counted, and its revalidation
    asked, anew when the restarted request reaches it (the restart may be
    accepted without waiting for the voucher; nothing leaves undecided)."""
    rec.message = ""
    if rec.paused_for_voucher:
        rec.queued, rec.queued_index = rec.sent, rec.sent_index


def _raise_queued_index(rec: ChannelRecord, index: int) -> None:
    if index > rec.queued_index:
        rec.queued_index = index


def _add_received(rec: ChannelRecord, delta: int) -> None:
    rec.received += delta


def _add_sent(rec: ChannelRecord, delta: int) -> None:
    rec.sent += delta


def _add_queued(rec: ChannelRecord, delta: int) -> None:
    rec.queued += delta


def _append_voucher(rec: ChannelRecord, voucher: Any) -> None:
    rec.vouchers.append(voucher)


def _append_voucher_result(rec: ChannelRecord, voucher_result: Any) -> None:
    rec.voucher_results.append(voucher_result)


@dataclass(frozen=True, slots=True)
class Effect:
    """What an event writes into the record, and the keyword arguments it takes.

    ``write`` is only called after the event was found legal and its
    arguments were checked, and it cannot fail, so a refused event changes
    nothing.
    """

    write: Callable[..., None]
    params: tuple[str, ...] = ()


#: Data effects, by event.  Events not listed carry no arguments and write
#: nothing (their only effect is on the status).
EFFECTS: Mapping[EventCode, Effect] = {
    E.TransferRequestQueued: Effect(_clear_message),
    E.Restart: Effect(_restart),
    E.Opened: Effect(_clear_message),
    E.Error: Effect(_set_message, ("error",)),
    E.Disconnected: Effect(_set_message, ("error",)),
    E.SendDataError: Effect(_set_message, ("error",)),
    E.ReceiveDataError: Effect(_set_message, ("error",)),
    E.RequestCancelled: Effect(_set_message, ("error",)),
    E.DataReceived: Effect(_raise_received_index, ("index",)),
    E.DataSent: Effect(_raise_sent_index, ("index",)),
    E.DataQueued: Effect(_raise_queued_index, ("index",)),
    E.DataReceivedProgress: Effect(_add_received, ("delta",)),
    E.DataSentProgress: Effect(_add_sent, ("delta",)),
    E.DataQueuedProgress: Effect(_add_queued, ("delta",)),
    E.NewVoucher: Effect(_append_voucher, ("voucher",)),
    E.NewVoucherResult: Effect(_append_voucher_result, ("voucher_result",)),
}

NO_EFFECT: Final = Effect(lambda rec: None)


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


#: How each keyword argument is checked, and what it must be.
PARAM_CHECKS: Mapping[str, tuple[Callable[[object], bool], str]] = {
    "delta": (_is_count, "a non-negative int (bytes)"),
    "index": (_is_count, "a non-negative int (running block count)"),
    "error": (lambda v: isinstance(v, BaseException | str), "an exception or a string"),
    "voucher": (lambda v: v is not None, "a voucher (not None)"),
    "voucher_result": (lambda v: v is not None, "a voucher result (not None)"),
}


# ---------------------------------------------------------------------------
# Rows: the table expanded to one (source status, event) pair per row.
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Row:
    """One allowed (source status, event) pair and its outcome."""

    event: EventCode
    source: Status
    target: Status
    kind: Kind

    @property
    def runs_entry(self) -> bool:
        """Whether the engine should run the target status's entry handler."""
        return self.kind is not Kind.RECORD


def _sources(key: Source) -> tuple[Status, ...]:
    if isinstance(key, Status):
        return (key,)
    if isinstance(key, _Any):
        return ()
    return tuple(sorted(key))


def _expand(event: EventCode, spec: Mapping[Source, Target]) -> list[Row]:
    """Turn one event's entry of :data:`TRANSITIONS` into rows, checking it."""
    explicit: dict[Status, Target] = {}
    fallback: Target | None = None
    for key, target in spec.items():
        if isinstance(key, _Any):
            fallback = target
            continue
        for status in _sources(key):
            if status in explicit:
                raise TypeError(f"{event.name}: source {status.name} listed twice")
            if status in FINAL_STATUSES or status not in MACHINE_STATUSES:
                raise TypeError(f"{event.name}: {status.name} cannot be a source")
            explicit[status] = target
    rows = []
    for status in MACHINE_STATUSES:
        if status in FINAL_STATUSES:
            continue
        target = explicit.get(status, fallback)
        if target is None:
            continue
        if isinstance(target, Kind):
            rows.append(Row(event, status, status, target))
        elif target is status:
            rows.append(Row(event, status, status, Kind.REENTER))
        elif target in MACHINE_STATUSES:
            rows.append(Row(event, status, target, Kind.MOVE))
        else:
            raise TypeError(f"{event.name}: bad target {target!r}")
    return rows


def _build() -> tuple[tuple[Row, ...], dict[tuple[Status, EventCode], Row]]:
    missing = set(EventCode) - set(TRANSITIONS)
    if missing:
        raise TypeError(f"events missing from TRANSITIONS: {sorted(e.name for e in missing)}")
    extra = set(EFFECTS) - set(TRANSITIONS)
    if extra:
        raise TypeError(f"effects for unknown events: {extra}")
    for effect in EFFECTS.values():
        unknown = set(effect.params) - set(PARAM_CHECKS)
        if unknown:
            raise TypeError(f"no check for parameters {unknown}")
    rows = tuple(row for event, spec in TRANSITIONS.items() for row in _expand(event, spec))
    return rows, {(row.source, row.event): row for row in rows}


_ROWS, _INDEX = _build()

_ALLOWED: dict[Status, frozenset[EventCode]] = {
    status: frozenset(row.event for row in _ROWS if row.source is status) for status in Status
}


def rows() -> Iterator[Row]:
    """Every row of the table: events in table order, sources in status order."""
    return iter(_ROWS)


def allowed_events(status: Status) -> frozenset[EventCode]:
    """The events ``status`` accepts (empty for final statuses and ChannelNotFoundError)."""
    return _ALLOWED[Status(status)]


def resolve(status: Status, event: EventCode) -> Row:
    """The row for ``event`` in ``status``; raises IllegalTransition when there is none.

    The Manager uses this to learn, before or after applying an event, whether
    the status's entry handler (e.g. cleanup) must run.
    """
    row = _INDEX.get((status, event))
    if row is None:
        raise IllegalTransition(status, event)
    return row


def effect_of(event: EventCode) -> Effect:
    """The data effect of ``event`` (a no-op effect without parameters if it has none)."""
    return EFFECTS.get(event, NO_EFFECT)
