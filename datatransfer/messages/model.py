"""The data-transfer messages as immutable values, and their errors.

A channel's two peers talk in :class:`TransferRequest` messages (sent by the
channel's initiator, plus the one restart-existing-channel request a
responder may send) and :class:`TransferResponse` messages (sent by the
responder). Each carries a :class:`MessageType` saying what it does. Both are
validated when built, so a message that exists can always be encoded and is
always something a Go peer can decode.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from datatransfer.errors import DataTransferError
from datatransfer.ipld.cid import CID
from datatransfer.types import ChannelID, PeerID

#: Largest transfer id that travels intact. Go keeps ids as uint64 but
#: go-ipld-prime writes them as signed 64-bit ints, so ids from 2**63 up go
#: out negative and no Go peer (nor we) will read them back.
MAX_TRANSFER_ID = 2**63 - 1


class MessageError(DataTransferError):
    """A data-transfer message that cannot be decoded or built."""


class MalformedMessage(MessageError):
    """The bytes are not (canonical) DAG-CBOR at all."""


class InvalidMessage(MessageError, ValueError):
    """Well-formed DAG-CBOR (or Python values) that is not a valid message:
    a missing or unknown key, a field of the wrong type, a value out of range,
    or a message type that does not fit the message kind."""


class UnknownMessageType(InvalidMessage):
    """The ``Type`` code is not one of :class:`MessageType`."""

    def __init__(self, code: object) -> None:
        self.code = code
        super().__init__(f"unknown message type code {code!r}")


class MessageType(IntEnum):
    """What a message does (wire field ``Type``; go-data-transfer's numbering)."""

    #: Opens a channel (request) / accepts or rejects it (response).
    New = 0
    #: Pauses or resumes one side.
    Update = 1
    #: Cancels the channel.
    Cancel = 2
    #: The responder has sent/received everything (response only).
    Complete = 3
    #: A further voucher from the initiator (request only).
    Voucher = 4
    #: The responder's answer to a voucher (response only).
    VoucherResult = 5
    #: Restarts a channel after a disconnect or a restart of a peer.
    Restart = 6
    #: Asks the other peer to restart a channel it initiated (request only).
    RestartExistingChannelRequest = 7


#: Types a request may carry; Go's constructors never build any other.
REQUEST_TYPES = frozenset(
    {
        MessageType.New,
        MessageType.Update,
        MessageType.Cancel,
        MessageType.Voucher,
        MessageType.Restart,
        MessageType.RestartExistingChannelRequest,
    }
)
#: Types a response may carry; Go's constructors never build any other.
RESPONSE_TYPES = frozenset(
    {
        MessageType.New,
        MessageType.Update,
        MessageType.Cancel,
        MessageType.Complete,
        MessageType.VoucherResult,
        MessageType.Restart,
    }
)


def _check_type(kind: str, value: Any, allowed: frozenset[MessageType]) -> MessageType:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidMessage(f"{kind}.type must be a MessageType, got {type(value).__name__}")
    try:
        mtype = MessageType(value)
    except ValueError:
        raise UnknownMessageType(value) from None
    if mtype not in allowed:
        raise InvalidMessage(f"{mtype.name} is not a {kind} message type")
    return mtype


def _check_id(kind: str, name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidMessage(f"{kind}.{name} must be an int, got {type(value).__name__}")
    if not 0 <= value <= MAX_TRANSFER_ID:
        raise InvalidMessage(f"{kind}.{name} {value} is outside 0..2**63-1")
    return int(value)


def _check_bool(kind: str, name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise InvalidMessage(f"{kind}.{name} must be a bool, got {type(value).__name__}")


def _check_str(kind: str, name: str, value: Any) -> None:
    if not isinstance(value, str):
        raise InvalidMessage(f"{kind}.{name} must be a str, got {type(value).__name__}")


def _check_channel(value: Any) -> ChannelID | None:
    if value is None:
        return None
    if not isinstance(value, ChannelID):
        raise InvalidMessage(
            f"TransferRequest.restart_channel must be a ChannelID, got {type(value).__name__}"
        )
    for name in ("initiator", "responder"):
        if not isinstance(getattr(value, name), bytes):
            raise InvalidMessage(f"restart_channel.{name} must be a PeerID")
    _check_id("TransferRequest", "restart_channel.id", value.id)
    if not value.initiator and not value.responder and value.id == 0:
        return None  # Go's zero ChannelID: what every other request carries
    if not isinstance(value.initiator, PeerID) or not isinstance(value.responder, PeerID):
        value = ChannelID(PeerID(value.initiator), PeerID(value.responder), value.id)
    return value


class _Kinds:
    """The message-type predicates requests and responses share (Go's
    ``IsNew``, ``IsRestart``, ``IsUpdate``, ``IsCancel``)."""

    __slots__ = ()
    type: MessageType

    @property
    def is_new(self) -> bool:
        return self.type is MessageType.New

    @property
    def is_restart(self) -> bool:
        return self.type is MessageType.Restart

    @property
    def is_update(self) -> bool:
        return self.type is MessageType.Update

    @property
    def is_cancel(self) -> bool:
        return self.type is MessageType.Cancel


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferRequest(_Kinds):
    """A message from a channel's initiator (wire struct ``TransferRequest``).

    ``selector``, ``voucher`` (and a response's ``voucher_result``) are IPLD
    data-model values (see :mod:`datatransfer.ipld.dagcbor`); ``None`` is
    sent as null. ``restart_channel`` is only meaningful for
    :attr:`MessageType.RestartExistingChannelRequest`; every other request
    carries Go's empty channel id, which reads back as ``None``.
    """

    type: MessageType
    transfer_id: int
    base_cid: CID | None = None
    paused: bool = False
    partial: bool = False
    pull: bool = False
    selector: Any = None
    voucher: Any = None
    voucher_type: str = ""
    restart_channel: ChannelID | None = None

    def __post_init__(self) -> None:
        kind = "TransferRequest"
        object.__setattr__(self, "type", _check_type(kind, self.type, REQUEST_TYPES))
        object.__setattr__(self, "transfer_id", _check_id(kind, "transfer_id", self.transfer_id))
        if self.base_cid is not None and not isinstance(self.base_cid, CID):
            raise InvalidMessage(
                f"{kind}.base_cid must be a CID or None, got {type(self.base_cid).__name__}"
            )
        _check_bool(kind, "paused", self.paused)
        _check_bool(kind, "partial", self.partial)
        _check_bool(kind, "pull", self.pull)
        _check_str(kind, "voucher_type", self.voucher_type)
        object.__setattr__(self, "restart_channel", _check_channel(self.restart_channel))

    is_request = True

    @property
    def is_voucher(self) -> bool:
        """True when the request carries a voucher to validate: a new
        request or a voucher request (as Go's ``IsVoucher``)."""
        return self.type in (MessageType.New, MessageType.Voucher)

    @property
    def is_restart_existing_channel_request(self) -> bool:
        return self.type is MessageType.RestartExistingChannelRequest

    @property
    def empty_voucher(self) -> bool:
        """True when no voucher type is named (Go's ``EmptyVoucher``)."""
        return self.voucher_type == ""


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferResponse(_Kinds):
    """A message from a channel's responder (wire struct ``TransferResponse``)."""

    type: MessageType
    transfer_id: int
    accepted: bool = False
    paused: bool = False
    voucher_result: Any = None
    voucher_result_type: str = ""

    def __post_init__(self) -> None:
        kind = "TransferResponse"
        object.__setattr__(self, "type", _check_type(kind, self.type, RESPONSE_TYPES))
        object.__setattr__(self, "transfer_id", _check_id(kind, "transfer_id", self.transfer_id))
        _check_bool(kind, "accepted", self.accepted)
        _check_bool(kind, "paused", self.paused)
        _check_str(kind, "voucher_result_type", self.voucher_result_type)

    is_request = False

    @property
    def is_complete(self) -> bool:
        return self.type is MessageType.Complete

    @property
    def is_voucher_result(self) -> bool:
        """True when the response carries a validator's verdict: new,
        complete, restart and voucher-result responses (as Go's
        ``IsVoucherResult``)."""
        return self.type in (
            MessageType.New,
            MessageType.Complete,
            MessageType.Restart,
            MessageType.VoucherResult,
        )

    @property
    def empty_voucher_result(self) -> bool:
        """True when no voucher result type is named."""
        return self.voucher_result_type == ""


#: Any data-transfer message.
Message = TransferRequest | TransferResponse
