"""Constructors for every message the protocol sends, one per Go ``message``
helper, each building exactly the fields Go's does (the rest keep their zero
values), so the encoded bytes match a Go peer's.

Who sends what: the channel's *initiator* sends requests (new, restart,
update, cancel, voucher); the *responder* sends responses (new, restart,
update, cancel, voucher result, complete) and, when it is the one restarting,
a restart-existing-channel request. Pause/resume and cancel go as a request
or a response depending on which side acts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from datatransfer.ipld.cid import CID
from datatransfer.messages.model import (
    InvalidMessage,
    MessageType,
    TransferRequest,
    TransferResponse,
)
from datatransfer.types import ChannelID

# -- requests ------------------------------------------------------------------------


def _opening_request(mtype: MessageType, name: str, doc: str) -> Callable[..., TransferRequest]:
    """A builder for a request that opens (or reopens) a channel: new and
    restart requests carry the same fields and differ only in their type."""

    def build(
        transfer_id: int,
        *,
        base_cid: CID,
        selector: Any,
        voucher_type: str,
        voucher: Any,
        pull: bool,
    ) -> TransferRequest:
        if not isinstance(base_cid, CID):
            raise InvalidMessage(f"a {mtype.name} request needs a base CID")
        return TransferRequest(
            type=mtype,
            transfer_id=transfer_id,
            base_cid=base_cid,
            pull=pull,
            selector=selector,
            voucher=voucher,
            voucher_type=voucher_type,
        )

    build.__name__ = build.__qualname__ = name
    build.__doc__ = doc
    return build


new_request = _opening_request(
    MessageType.New,
    "new_request",
    """Sent by the initiator to open a channel: a *pull* asks the responder
    to send the DAG under ``base_cid`` that ``selector`` picks, a *push*
    offers to send it. The voucher is what the responder's validator judges.""",
)

restart_request = _opening_request(
    MessageType.Restart,
    "restart_request",
    """Sent by the initiator to resume a channel after a disconnect or a
    restart of either peer: the original request's parameters again, with
    type Restart. The responder re-validates the voucher and picks up where
    the transfer stopped.""",
)


def update_request(transfer_id: int, *, paused: bool) -> TransferRequest:
    """Sent by the initiator when it pauses (``paused=True``) or resumes its
    side of the transfer."""
    return TransferRequest(type=MessageType.Update, transfer_id=transfer_id, paused=paused)


def cancel_request(transfer_id: int) -> TransferRequest:
    """Sent by the initiator when it cancels the channel."""
    return TransferRequest(type=MessageType.Cancel, transfer_id=transfer_id)


def voucher_request(transfer_id: int, *, voucher_type: str, voucher: Any) -> TransferRequest:
    """Sent by the initiator with a further voucher for an open channel,
    typically a payment when the responder paused waiting for one."""
    return TransferRequest(
        type=MessageType.Voucher,
        transfer_id=transfer_id,
        voucher=voucher,
        voucher_type=voucher_type,
    )


def restart_existing_channel_request(channel_id: ChannelID) -> TransferRequest:
    """Sent by a channel's responder that wants the channel restarted: it
    asks the initiator to send a restart request. Carries only the channel
    id (the transfer id field stays 0, as in Go)."""
    if not isinstance(channel_id, ChannelID):
        raise InvalidMessage("a restart-existing-channel request needs a ChannelID")
    return TransferRequest(
        type=MessageType.RestartExistingChannelRequest,
        transfer_id=0,
        restart_channel=channel_id,
    )


# -- responses -----------------------------------------------------------------------


def _verdict(mtype: MessageType, name: str, doc: str) -> Callable[..., TransferResponse]:
    """A builder for a response carrying the responder's verdict: new,
    restart, voucher-result and complete responses carry the same fields and
    differ only in their type."""

    def build(
        transfer_id: int,
        *,
        accepted: bool,
        paused: bool = False,
        voucher_result_type: str = "",
        voucher_result: Any = None,
    ) -> TransferResponse:
        return TransferResponse(
            type=mtype,
            transfer_id=transfer_id,
            accepted=accepted,
            paused=paused,
            voucher_result=voucher_result,
            voucher_result_type=voucher_result_type,
        )

    build.__name__ = build.__qualname__ = name
    build.__doc__ = doc
    return build


new_response = _verdict(
    MessageType.New,
    "new_response",
    """Sent by the responder to a new request: accepted or rejected, maybe
    paused (the validator wants more before data moves), with the
    validator's result.""",
)

restart_response = _verdict(
    MessageType.Restart,
    "restart_response",
    """Sent by the responder to a restart request, after re-validating.""",
)

voucher_result_response = _verdict(
    MessageType.VoucherResult,
    "voucher_result_response",
    """Sent by the responder with its verdict on a voucher request, or with
    a result of its own (e.g. asking for payment) while the channel runs.""",
)

complete_response = _verdict(
    MessageType.Complete,
    "complete_response",
    """Sent by the responder when it has sent (pull) or received (push)
    everything. ``paused=True`` means it still waits for a final voucher
    before the channel completes.""",
)


#: The builder of each response type that carries a verdict (``accepted``).
VERDICTS: dict[MessageType, Callable[..., TransferResponse]] = {
    MessageType.New: new_response,
    MessageType.Restart: restart_response,
    MessageType.VoucherResult: voucher_result_response,
    MessageType.Complete: complete_response,
}


def update_response(transfer_id: int, *, paused: bool) -> TransferResponse:
    """Sent by the responder when it pauses (``paused=True``) or resumes its
    side of the transfer."""
    return TransferResponse(type=MessageType.Update, transfer_id=transfer_id, paused=paused)


def cancel_response(transfer_id: int) -> TransferResponse:
    """Sent by the responder when it cancels the channel."""
    return TransferResponse(type=MessageType.Cancel, transfer_id=transfer_id)
