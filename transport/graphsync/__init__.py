"""Graphsync 2.0.0 (``/ipfs/graphsync/2.0.0``): the wire format.

* :mod:`.status` -- response status codes, request types, link actions;
* :mod:`.message` -- request/response/message values, their DAG-CBOR form
  (byte-identical to go-graphsync v0.17), block prefixes, extension names
  and values;
* :mod:`.framing` -- uvarint length-prefixed frames with Go's 4 MiB limit.

No networking here: :mod:`.engine` (requester and responder, batching 512
KiB of blocks per message as Go does) builds on these, and the transports
carry it.
"""

from transport.graphsync.framing import (
    MAX_FRAME,
    FrameDecoder,
    encode_frame,
    frame,
    read_frame,
    read_message,
    split_frames,
)
from transport.graphsync.message import (
    EXTENSION_DATA_TRANSFER,
    EXTENSION_DEDUP_BY_KEY,
    EXTENSION_DO_NOT_SEND_CIDS,
    EXTENSION_DO_NOT_SEND_FIRST_BLOCKS,
    EXTENSION_INCOMING_REQUEST,
    EXTENSION_OUTGOING_BLOCK,
    MAX_BLOCK_BYTES,
    MAX_PRIORITY,
    MIN_PRIORITY,
    PROTOCOL_ID,
    REQUEST_ID_LENGTH,
    GraphsyncMessage,
    GraphsyncRequest,
    GraphsyncResponse,
    GraphsyncWireError,
    LinkMetadatum,
    RawBlock,
    block_from_wire,
    block_to_wire,
    decode_dedup_key,
    decode_do_not_send_cids,
    decode_do_not_send_first_blocks,
    decode_message,
    encode_dedup_key,
    encode_do_not_send_cids,
    encode_do_not_send_first_blocks,
    encode_message,
    message_from_node,
    message_to_node,
    new_request_id,
)
from transport.graphsync.status import LinkAction, RequestType, ResponseStatus

__all__ = [
    "EXTENSION_DATA_TRANSFER",
    "EXTENSION_DEDUP_BY_KEY",
    "EXTENSION_DO_NOT_SEND_CIDS",
    "EXTENSION_DO_NOT_SEND_FIRST_BLOCKS",
    "EXTENSION_INCOMING_REQUEST",
    "EXTENSION_OUTGOING_BLOCK",
    "MAX_BLOCK_BYTES",
    "MAX_FRAME",
    "MAX_PRIORITY",
    "MIN_PRIORITY",
    "PROTOCOL_ID",
    "REQUEST_ID_LENGTH",
    "FrameDecoder",
    "GraphsyncMessage",
    "GraphsyncRequest",
    "GraphsyncResponse",
    "GraphsyncWireError",
    "LinkAction",
    "LinkMetadatum",
    "RawBlock",
    "RequestType",
    "ResponseStatus",
    "block_from_wire",
    "block_to_wire",
    "decode_dedup_key",
    "decode_do_not_send_cids",
    "decode_do_not_send_first_blocks",
    "decode_message",
    "encode_dedup_key",
    "encode_do_not_send_cids",
    "encode_do_not_send_first_blocks",
    "encode_frame",
    "encode_message",
    "frame",
    "message_from_node",
    "message_to_node",
    "new_request_id",
    "read_frame",
    "read_message",
    "split_frames",
]
