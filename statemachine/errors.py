"""Typed errors of the state machine.

Callers (the Manager, the CLI, tests) need to tell "the rules forbid this"
apart from bugs, so every refusal is a :class:`StateMachineError` and carries
the facts needed to log or report it.  A refusal always leaves the channel
record exactly as it was.
"""

from __future__ import annotations

from typing import Any

from statemachine.status import EventCode, Status


class StateMachineError(Exception):
    """Base class of every error raised by the ``statemachine`` package."""


class IllegalTransition(StateMachineError):
    """The transition table has no row for ``event`` from ``status``.

    This covers final statuses (which refuse everything), statuses that are
    not machine nodes (ChannelNotFoundError) and events the Go reference no
    longer accepts anywhere (RequestTimedOut).
    """

    def __init__(self, status: Status | int, event: EventCode | int) -> None:
        self.status = status
        self.event = event
        super().__init__(
            f"event {_name(EventCode, event)} is not allowed in status {_name(Status, status)}"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.status, self.event))


class UnknownEvent(StateMachineError, ValueError):
    """The value given as an event is not an :class:`EventCode`."""

    def __init__(self, event: object) -> None:
        self.event = event
        super().__init__(f"unknown event code {event!r}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.event,))


class EventArgumentError(StateMachineError, TypeError):
    """An allowed event came with missing, unexpected or malformed arguments.

    Raised before anything is changed, so the record is untouched.
    """

    def __init__(self, event: EventCode, detail: str) -> None:
        self.event = event
        self.detail = detail
        super().__init__(f"event {_name(EventCode, event)}: {detail}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.event, self.detail))


def _name(enum: type[Status] | type[EventCode], value: object) -> str:
    try:
        return enum(value).name  # type: ignore[arg-type]
    except ValueError:
        return repr(value)
