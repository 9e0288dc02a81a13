"""The typed errors of the data-transfer engine.

They mirror the Go reference's sentinel errors (``ErrChannelNotFound``,
``ErrPause``, ``ErrRetryValidation``, rejection, unsupported operations) as
exception classes, so a caller can catch exactly the condition it handles.
Validators and revalidators *raise* :class:`Pause` and
:class:`RetryValidation`; both may carry a voucher result to send back.
"""

from __future__ import annotations

from typing import Any


class DataTransferError(Exception):
    """Base class of every error the engine raises on purpose."""


class ChannelNotFound(DataTransferError, KeyError):
    """No channel with this id is known (Go: ``ErrChannelNotFound``)."""

    def __init__(self, channel_id: object) -> None:
        self.channel_id = channel_id
        super().__init__(f"channel not found: {channel_id}")

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class Pause(DataTransferError):
    """Raised by a validator or revalidator to pause the transfer until a new
    voucher arrives (Go: ``ErrPause``). ``result`` is sent to the other side."""

    def __init__(self, result: Any = None, message: str = "data transfer pause request") -> None:
        self.result = result
        super().__init__(message)


class RetryValidation(DataTransferError):
    """Raised by a validator to keep a request waiting for another voucher
    instead of failing it (Go: ``ErrRetryValidation``); ``result`` is sent back."""

    def __init__(self, result: Any = None, message: str = "retry validation") -> None:
        self.result = result
        super().__init__(message)


class Rejected(DataTransferError):
    """A request or voucher was refused by the validator or by the other side."""

    def __init__(self, reason: str, result: Any = None) -> None:
        self.reason = reason
        self.result = result
        super().__init__(f"rejected: {reason}")


class Unsupported(DataTransferError):
    """The operation is not supported here (e.g. pausing on a transport that
    cannot pause, or a message type this node does not implement)."""


class ProtocolError(DataTransferError):
    """A peer sent a message that is well-formed bytes but breaks the protocol
    (wrong channel, unexpected type, missing required field)."""


class TrioRequired(DataTransferError, RuntimeError):
    """A libp2p node (:class:`datatransfer.node.Node`) was used outside the
    trio event loop: py-libp2p runs on trio only. Run the code that uses it
    with ``trio.run(main)`` or ``anyio.run(main, backend="trio")``. (The
    :class:`~datatransfer.manager.Manager` over the in-memory network runs
    on asyncio as well.)"""
