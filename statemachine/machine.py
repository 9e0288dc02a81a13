"""The one state machine every channel shares, built from the table.

Why one machine: ``transitions`` normally binds a machine to each model and
adds trigger methods to it.  With 10,000 live channels that would mean 10,000
machines (or 10,000 x 31 bound methods).  Instead we build a single
:class:`transitions.Machine` with no model at all and, per event, call the
machine's :class:`transitions.core.Event` ``trigger`` with the channel's
:class:`~statemachine.table.ChannelRecord` as the model.  ``transitions``
reads and writes the record's ``status`` attribute (``model_attribute``), so
a channel costs one small slotted record and nothing more.

How the table maps onto ``transitions``:

* ``Kind.MOVE`` rows are ordinary transitions.
* ``Kind.REENTER`` and ``Kind.RECORD`` rows are internal transitions
  (``dest=None``).  The difference between them (does the status's entry
  handler run again?) is an I/O decision that belongs to the Manager, which
  reads it from :func:`~statemachine.table.resolve` (``Row.runs_entry``).
  The machine registers no enter/exit callbacks, so making REENTER rows
  external self-transitions would only cost time: measured, it made the
  hottest events (the *Progress ones) about twice as slow.
* The data effect of an event is the transition's ``before`` callback, a
  writer compiled once per event (:func:`_compile_writer`); it checks its
  arguments first and only then writes, and ``transitions`` sets the status
  after ``before`` returns, so a refused event changes nothing.
* Final statuses are ``final`` states with no outgoing transitions; an event
  with no row from the current status raises ``MachineError``, which
  :func:`apply` turns into :class:`~statemachine.errors.IllegalTransition`.

Two small extensions of ``transitions`` (through its documented
``state_cls`` hook and by overriding ``get_state``) keep the per-event cost
down: states carry their name as a plain attribute instead of recomputing it
from the enum on every lookup, and states are found by a dict keyed by
:class:`Status` member as well as by name.  Together with the internal
transitions above they cut the cost of one event about threefold (a
*Progress event went from about 37 to about 12 microseconds on the
development machine).

Two paths through :func:`apply`
-------------------------------

Even so, firing an event through ``transitions`` costs about 4.5
microseconds (development machine, Python 3.11, transitions 0.9.3), almost
all of it inside ``transitions``: an ``EventData`` and a ``partial`` per
event, a dozen logger calls (each a function call even when the level
filters it out) and callback-list walks for hooks we never register.  Yet
nine events in ten of real traffic (and of ``benchmarks/bench_fsm.py``'s
mix) are rows that do not change the status -- DataReceived, DataSent, the
*Progress events, one or more per block -- for which all ``transitions``
does is check that the status is a source of the event and call the
``before`` callback.  So :func:`apply` has two paths:

* **Fast path, status unchanged** (REENTER and RECORD rows): one lookup in
  ``_INTERNAL``, a ``(status, event) -> writer`` dict, then the writer.
  The dict is read off :data:`MACHINE` at import time
  (:func:`_internal_writers`), so the table stays the one source: it holds
  exactly the internal transitions for which firing through ``transitions``
  would do nothing but run that writer (one transition for the source, no
  conditions, no prepare/after callbacks, no machine-wide callbacks, no
  queue); a test checks that this is every REENTER and RECORD row.  About
  0.45 microseconds for a *Progress or Data* event and 0.2 for one without
  arguments, against about 4.5 and 4 through ``transitions``.
* **transitions path, everything else**: status changes (MOVE rows) and
  every lookup that misses -- final statuses, ChannelNotFoundError, events
  with no row, non-event values, statuses held as names -- go to
  ``Event.trigger`` exactly as before, so IllegalTransition and
  UnknownEvent come from the same code as always.  About 5 microseconds a
  MOVE (a miss costs it one dict lookup more); it was about 6 before states
  with no enter/exit callbacks stopped going through ``transitions``'
  enter/exit and their logging (:class:`_QuietStatusState`).

Both paths check arguments with the same compiled writer, so an
EventArgumentError reads the same whichever path raised it.  On the
benchmark's mix (93% fast path) this makes :func:`apply` about 4.5 times
as fast as firing everything through ``transitions``.

:func:`apply_via_transitions` is :func:`apply` as it was: every event
through ``Event.trigger`` of a second machine (built on first use) whose
``before`` callbacks are the original, uncompiled checks and writes.  It is
the reference the equivalence test (``tests/test_statemachine_fastpath.py``)
compares :func:`apply` with -- so that test covers the compiled writers as
well as the fast path -- and the baseline ``benchmarks/bench_fsm.py`` prints
beside it; nothing else should call it.

Nothing here does I/O or keeps per-channel state.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, Final, NoReturn

from transitions import Machine, MachineError, State
from transitions.core import Event, EventData

from statemachine.errors import EventArgumentError, IllegalTransition, UnknownEvent
from statemachine.status import FINAL_STATUSES, MACHINE_STATUSES, EventCode, Status
from statemachine.table import EFFECTS, PARAM_CHECKS, ChannelRecord, Kind, effect_of, rows

# `transitions` logs two INFO lines for every state entered and left; with
# thousands of channels that drowns an application's own INFO log. Our own
# events already say what happened (subscribers, the channel's message), so
# its logger starts at WARNING unless the application has set a level itself.
_TRANSITIONS_LOG = logging.getLogger("transitions.core")
if _TRANSITIONS_LOG.level == logging.NOTSET:
    _TRANSITIONS_LOG.setLevel(logging.WARNING)


#: A compiled data effect: checks the keyword arguments, then writes them into
#: the record; raises EventArgumentError (having written nothing) when they are wrong.
Writer = Callable[[ChannelRecord, dict[str, Any]], None]

_MISSING: Final = object()


def _refuse(event: EventCode, kwargs: dict[str, Any], positional: int = 0) -> NoReturn:
    """Raise the EventArgumentError that ``kwargs`` (and ``positional``) deserve.

    Only called once a writer's quick check has failed, so it can afford to
    build sets and messages; it always raises.
    """
    effect = effect_of(event)
    if positional or kwargs.keys() != frozenset(effect.params):
        got = sorted(kwargs) + [f"<{positional} positional>"] * bool(positional)
        want = sorted(effect.params) or "no arguments"
        raise EventArgumentError(event, f"takes {want}, got {got or 'none'}")
    for name in effect.params:
        check, what = PARAM_CHECKS[name]
        value = kwargs[name]
        if not check(value):
            raise EventArgumentError(event, f"{name} must be {what}, got {value!r}")
    raise AssertionError(f"{event.name}: arguments {kwargs!r} refused, but no check fails")


def _compile_writer(event: EventCode) -> Writer:
    """The data effect of ``event`` as one closure: check the arguments, then write.

    Specialised by the number of parameters (the table has events with none
    and with one), so the common, correct call costs a length test, one dict
    lookup and the parameter's own check; any failure is handed to
    :func:`_refuse`, which works out the exact error.
    """
    effect = effect_of(event)
    write = effect.write
    params = effect.params

    if not params:
        if event not in EFFECTS:  # no data effect at all: only the (empty) check

            def writer(record: ChannelRecord, kwargs: dict[str, Any]) -> None:
                if kwargs:
                    _refuse(event, kwargs)

        else:

            def writer(record: ChannelRecord, kwargs: dict[str, Any]) -> None:
                if kwargs:
                    _refuse(event, kwargs)
                write(record)

    elif len(params) == 1:
        (name,) = params
        check = PARAM_CHECKS[name][0]

        def writer(record: ChannelRecord, kwargs: dict[str, Any]) -> None:
            if len(kwargs) == 1:
                value = kwargs.get(name, _MISSING)
                if value is not _MISSING and check(value):
                    write(record, value)
                    return
            _refuse(event, kwargs)

    else:
        expected = frozenset(params)
        checks = tuple((name, PARAM_CHECKS[name][0]) for name in params)

        def writer(record: ChannelRecord, kwargs: dict[str, Any]) -> None:
            if kwargs.keys() != expected or not all(check(kwargs[n]) for n, check in checks):
                _refuse(event, kwargs)
            write(record, **kwargs)

    writer.__qualname__ = f"write_{event.name}"
    return writer


class _Before:
    """The ``before`` callback of every transition of one event: runs its writer.

    A callable object rather than a closure, so that the writer can be read
    back from the machine (its ``repr`` is the name transitions logs).
    """

    __slots__ = ("event", "writer")

    def __init__(self, event: EventCode, writer: Writer) -> None:
        self.event = event
        self.writer = writer

    def __call__(self, event_data: EventData) -> None:
        if event_data.args:
            _refuse(self.event, event_data.kwargs, len(event_data.args))
        self.writer(event_data.model, event_data.kwargs)

    def __repr__(self) -> str:
        return f"write_{self.event.name}"


class _StatusState(State):
    """A state named by a :class:`Status`, whose name is computed once."""

    name: str = ""  # shadows State.name (a property) with a plain attribute

    def __init__(self, name: Status, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.name = name.name


class _QuietStatusState(_StatusState):
    """A :class:`_StatusState` whose enter/exit cost nothing when it has no callbacks.

    ``transitions`` calls ``exit`` and ``enter`` on every status change and
    each logs a DEBUG and an INFO line (a logger call each, even when
    filtered out) around an empty callback walk.  The machine registers no
    enter/exit callbacks, so those lines only said that nothing ran; a state
    with callbacks still goes through ``transitions`` as usual.
    """

    def enter(self, event_data: EventData) -> None:
        if self.on_enter:
            super().enter(event_data)

    def exit(self, event_data: EventData) -> None:
        if self.on_exit:
            super().exit(event_data)


class SharedMachine(Machine):
    """A ``transitions`` machine meant to run with no bound model.

    States are looked up by :class:`Status` member or by name through one
    dict; anything else falls back to ``transitions``' own lookup (which
    raises ``ValueError`` for an unknown state).
    """

    state_cls = _QuietStatusState

    def __init__(self, **kwargs: Any) -> None:
        self._by_key: dict[object, State] = {}
        super().__init__(**kwargs)

    def add_states(self, states: Any, *args: Any, **kwargs: Any) -> None:
        super().add_states(states, *args, **kwargs)
        self._by_key = {}
        for state in self.states.values():
            self._by_key[state.value] = state
            self._by_key[state.name] = state

    def get_state(self, state: Any) -> State:
        try:
            return self._by_key[state]
        except (KeyError, TypeError):
            return super().get_state(state)


def build_machine() -> Machine:
    """Build a model-less ``transitions`` machine holding every row of the table.

    Exposed so tests and tools can inspect it; :data:`MACHINE` is the instance
    :func:`apply` uses.
    """
    return _build(SharedMachine, lambda event: _Before(event, _compile_writer(event)))


def _build(
    machine_cls: type[SharedMachine], before: Callable[[EventCode], Callable[[EventData], None]]
) -> Machine:
    machine = machine_cls(
        model=None,
        states=[{"name": s, "final": s in FINAL_STATUSES} for s in MACHINE_STATUSES],
        initial=MACHINE_STATUSES[0],
        auto_transitions=False,
        send_event=True,
        ignore_invalid_triggers=False,
        model_attribute="status",
        name="channel",
    )
    befores = {event: before(event) for event in EventCode}
    for row in rows():
        dest = row.target if row.kind is Kind.MOVE else None
        machine.add_transition(row.event.name, row.source, dest, before=befores[row.event])
    return machine


def _triggers(machine: Machine) -> dict[EventCode, Event]:
    """EventCode -> transitions Event.  Events with no row at all
    (RequestTimedOut) are absent: they are illegal everywhere."""
    return {code: machine.events[code.name] for code in EventCode if code.name in machine.events}


#: The single machine shared by every channel.
MACHINE: Machine = build_machine()

_TRIGGERS: dict[EventCode, Event] = _triggers(MACHINE)
_NODES = frozenset(MACHINE_STATUSES)


def _internal_writers(machine: Machine) -> dict[tuple[Status, EventCode], Writer]:
    """``(status, event) -> writer`` for every transition that keeps the status.

    Read off ``machine`` itself, not the table, and only where firing the
    event through ``transitions`` is known to do nothing but run the
    transition's ``before`` callback: the transition is internal
    (``dest=None``), it is the only one for that source, it has no
    ``prepare``/``after`` callbacks and no conditions, and the machine has no
    machine-wide callbacks (``prepare_event``, ``before_state_change``,
    ``after_state_change``, ``finalize_event``, ``on_exception``) and no
    queue.  Anything else is left to ``transitions``.
    """
    if (
        machine.prepare_event
        or machine.before_state_change
        or machine.after_state_change
        or machine.finalize_event
        or machine.on_exception
        or machine.has_queue
    ):
        return {}
    table: dict[tuple[Status, EventCode], Writer] = {}
    for name, event in machine.events.items():
        code = EventCode[name]
        for source, transitions in event.transitions.items():
            if len(transitions) != 1:
                continue
            (transition,) = transitions
            if (
                transition.dest is not None
                or transition.prepare
                or transition.conditions
                or transition.after
                or len(transition.before) != 1
                or not isinstance(transition.before[0], _Before)
            ):
                continue
            table[machine.get_state(source).value, code] = transition.before[0].writer
    return table


# (status, event) -> writer for the rows that do not change the status
# (REENTER and RECORD): the fast path of :func:`apply`.
_INTERNAL: dict[tuple[Status, EventCode], Writer] = _internal_writers(MACHINE)
_internal_get = _INTERNAL.get


def apply(record: ChannelRecord, event: EventCode, /, **args: Any) -> ChannelRecord:
    """Apply ``event`` to ``record`` in place and return the record.

    ``args`` are the event's keyword arguments (see ``EFFECTS`` in the table:
    ``delta=`` for the *Progress events, ``index=`` for DataSent/DataReceived/
    DataQueued, ``error=`` for Error and the transport signals, ``voucher=``
    / ``voucher_result=`` for the voucher events).

    Raises :class:`IllegalTransition` when the table has no row for the
    record's status and this event, :class:`EventArgumentError` when the
    arguments are wrong and :class:`UnknownEvent` when ``event`` is not an
    event code.  In every one of those cases the record (status and data) is
    left exactly as it was.

    Rows that keep the status are served from a precomputed dict; every other
    case (status changes, illegal events, odd inputs) is fired through the
    ``transitions`` machine.  The module docstring says why and what each
    path costs.
    """
    writer = _internal_get((record.status, event))
    if writer is not None:
        writer(record, args)
        return record
    return _via_transitions(record, event, args, _TRIGGERS)


def apply_via_transitions(record: ChannelRecord, event: EventCode, /, **args: Any) -> ChannelRecord:
    """THE REFERENCE: :func:`apply` as it was before it grew its fast path.

    Every event is fired through ``Event.trigger`` of a machine built from
    the same table, whose ``before`` callbacks are the original, uncompiled
    argument checks and writes (:func:`_reference_before`).  Kept only so that
    ``tests/test_statemachine_fastpath.py`` can check that :func:`apply` (fast
    path and compiled writers included) behaves the same, and so that
    ``benchmarks/bench_fsm.py`` can measure the difference.  Built on first
    use.  Application code calls :func:`apply`.
    """
    return _via_transitions(record, event, args, _reference_triggers())


@functools.cache
def _reference_triggers() -> dict[EventCode, Event]:
    return _triggers(_build(_ReferenceMachine, _reference_before))


class _ReferenceMachine(SharedMachine):
    """The machine of :func:`apply_via_transitions`: states as they used to be."""

    state_cls = _StatusState


def _reference_before(event: EventCode) -> Callable[[EventData], None]:
    """The ``before`` callback as :func:`apply` used to have it (reference only)."""
    effect = effect_of(event)
    expected = frozenset(effect.params)
    checks = tuple((name, *PARAM_CHECKS[name]) for name in effect.params)
    write = effect.write

    def before(event_data: EventData) -> None:
        kwargs = event_data.kwargs
        if event_data.args or kwargs.keys() != expected:
            got = sorted(kwargs) + [f"<{len(event_data.args)} positional>"] * bool(event_data.args)
            want = sorted(expected) or "no arguments"
            raise EventArgumentError(event, f"takes {want}, got {got or 'none'}")
        for name, check, what in checks:
            value = kwargs[name]
            if not check(value):
                raise EventArgumentError(event, f"{name} must be {what}, got {value!r}")
        write(event_data.model, **kwargs)

    before.__qualname__ = f"write_{event.name}"
    return before


def _via_transitions(
    record: ChannelRecord,
    event: EventCode,
    args: dict[str, Any],
    triggers: dict[EventCode, Event],
) -> ChannelRecord:
    trigger = triggers.get(event)
    if trigger is None:
        try:
            code = EventCode(event)
        except ValueError:
            raise UnknownEvent(event) from None
        raise IllegalTransition(record.status, code)
    try:
        trigger.trigger(record, **args)
    except MachineError:
        raise IllegalTransition(record.status, EventCode(event)) from None
    except ValueError:
        # transitions could not find the record's status among its states
        # (e.g. ChannelNotFoundError); anything else is a real error.
        if record.status in _NODES:
            raise
        raise IllegalTransition(record.status, EventCode(event)) from None
    return record
