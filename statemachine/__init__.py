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
    ABORTING_STATUSES,
    CLEANUP_STATUSES,
    COMPLETE_ANSWER_STATUSES,
    ENDING_STATUSES,
    FINAL_STATUSES,
    FINALIZING_STATUSES,
    INITIATOR_PAUSED_STATUSES,
    MACHINE_STATUSES,
    PAUSED_STATUSES,
    PROGRESS_EVENTS,
    RESPONDER_FINALIZING_STATUSES,
    RESPONDER_HOLDS_STATUSES,
    RESPONDER_PAUSED_STATUSES,
    SUCCEEDED_STATUSES,
    TRANSFERRING_STATUSES,
    EventCode,
    Status,
    initiator_paused,
    is_cleanup,
    is_ending,
    is_final,
    is_paused,
    responder_paused,
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
    "ABORTING_STATUSES",
    "ANY",
    "CLEANUP_STATUSES",
    "COMPLETE_ANSWER_STATUSES",
    "EFFECTS",
    "ENDING_STATUSES",
    "FINALIZING_STATUSES",
    "FINAL_STATUSES",
    "INITIATOR_PAUSED_STATUSES",
    "MACHINE",
    "MACHINE_STATUSES",
    "PAUSED_STATUSES",
    "PROGRESS_EVENTS",
    "RECORD",
    "REENTER",
    "RESPONDER_FINALIZING_STATUSES",
    "RESPONDER_HOLDS_STATUSES",
    "RESPONDER_PAUSED_STATUSES",
    "SUCCEEDED_STATUSES",
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
    "initiator_paused",
    "is_cleanup",
    "is_ending",
    "is_final",
    "is_paused",
    "resolve",
    "responder_paused",
    "rows",
]
