"""Data-transfer protocol messages (``/fil/datatransfer/1.2.0``).

:mod:`~datatransfer.messages.model` has the message values and errors,
:mod:`~datatransfer.messages.build` one constructor per kind of message, and
:mod:`~datatransfer.messages.wire` the DAG-CBOR form (byte-identical to
go-data-transfer v1) and the node form that graphsync extensions carry.
"""

from datatransfer.messages.build import (
    cancel_request,
    cancel_response,
    complete_response,
    new_request,
    new_response,
    restart_existing_channel_request,
    restart_request,
    restart_response,
    update_request,
    update_response,
    voucher_request,
    voucher_result_response,
)
from datatransfer.messages.model import (
    MAX_TRANSFER_ID,
    REQUEST_TYPES,
    RESPONSE_TYPES,
    InvalidMessage,
    MalformedMessage,
    Message,
    MessageError,
    MessageType,
    TransferRequest,
    TransferResponse,
    UnknownMessageType,
)
from datatransfer.messages.wire import (
    EXTENSION_DATA_TRANSFER,
    EXTENSION_INCOMING_REQUEST,
    EXTENSION_OUTGOING_BLOCK,
    MAX_MESSAGE_SIZE,
    PROTOCOL_ID,
    decode_message,
    encode_message,
    from_node,
    to_node,
)

__all__ = [
    "EXTENSION_DATA_TRANSFER",
    "EXTENSION_INCOMING_REQUEST",
    "EXTENSION_OUTGOING_BLOCK",
    "MAX_MESSAGE_SIZE",
    "MAX_TRANSFER_ID",
    "PROTOCOL_ID",
    "REQUEST_TYPES",
    "RESPONSE_TYPES",
    "InvalidMessage",
    "MalformedMessage",
    "Message",
    "MessageError",
    "MessageType",
    "TransferRequest",
    "TransferResponse",
    "UnknownMessageType",
    "cancel_request",
    "cancel_response",
    "complete_response",
    "decode_message",
    "encode_message",
    "from_node",
    "new_request",
    "new_response",
    "restart_existing_channel_request",
    "restart_request",
    "restart_response",
    "to_node",
    "update_request",
    "update_response",
    "voucher_request",
    "voucher_result_response",
]
