"""The channel state machine: statuses, events and the one transition table.

Pure by design (no I/O, no peers, no async): the Manager applies an event
here first and performs effects (messages, pauses, persistence) afterwards,
so the rules can be tested without a network.

Typical use::

    from statemachine import ChannelRecord, EventCode, apply

    record = ChannelRecord()                      # status Requested
    apply(record, EventCode.Accept)               # -> Ongoing
    apply(record, EventCode.DataSentProgress, delta=1024)
"""

from statemachine.errors import (
    EventArgumentError,
    IllegalTransition,
    StateMachineError,
    UnknownEvent,
)
from statemachine.machine import MACHINE, apply, build_machine
from statemachine.status import (
    CLEANUP_STATUSES,
    FINAL_STATUSES,
    MACHINE_STATUSES,
    PAUSED_STATUSES,
    PROGRESS_EVENTS,
    TRANSFERRING_STATUSES,
    EventCode,
    Status,
    is_cleanup,
    is_final,
)
from statemachine.table import (
    ANY,
    EFFECTS,
    RECORD,
    REENTER,
    TRANSITIONS,
    ChannelRecord,
    Effect,
    Kind,
    Row,
    allowed_events,
    effect_of,
    resolve,
    rows,
)

__all__ = [
    "ANY",
    "CLEANUP_STATUSES",
    "EFFECTS",
    "FINAL_STATUSES",
    "MACHINE",
    "MACHINE_STATUSES",
    "PAUSED_STATUSES",
    "PROGRESS_EVENTS",
    "RECORD",
    "REENTER",
    "TRANSFERRING_STATUSES",
    "TRANSITIONS",
    "ChannelRecord",
    "Effect",
    "EventArgumentError",
    "EventCode",
    "IllegalTransition",
    "Kind",
    "Row",
    "StateMachineError",
    "Status",
    "UnknownEvent",
    "allowed_events",
    "apply",
    "build_machine",
    "effect_of",
    "is_cleanup",
    "is_final",
    "resolve",
    "rows",
]
