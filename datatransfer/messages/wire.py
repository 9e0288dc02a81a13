"""Messages on the wire: protocol ``/fil/datatransfer/1.2.0``.

Each message travels as one DAG-CBOR map, the ``TransferMessage`` envelope of
go-data-transfer v1's ``message1_1prime`` schema. Every field is required;
some are *nullable* (always present, ``null`` when empty) and none is
*optional* (absent)::

    TransferMessage  {IsRq: Bool, Request: TransferRequest|null,
                      Response: TransferResponse|null}
    TransferRequest  {BCid: Link|null, Type: Int, Paus: Bool, Part: Bool,
                      Pull: Bool, Stor: Any|null, Vouch: Any|null,
                      VTyp: String, XferID: Int, RestartChannel: ChannelID}
    TransferResponse {Type: Int, Acpt: Bool, Paus: Bool, XferID: Int,
                      VRes: Any|null, VTyp: String}
    ChannelID        [Initiator: String, Responder: String, ID: Int]

Peer ids inside ``ChannelID`` are the raw peer-id bytes written as CBOR *text*
strings (not valid UTF-8; kept for backward compatibility by Go). A request
without a restart channel carries Go's zero value ``["", "", 0]``. Go writes
map keys in DAG-CBOR order; older Go peers (cbor-gen) wrote them in struct
order, which :func:`decode_message` also accepts.

The same envelope node is what graphsync extensions carry
(:data:`EXTENSION_DATA_TRANSFER` and friends): use :func:`to_node` and
:func:`from_node` there.
"""

from __future__ import annotations

from typing import Any

from datatransfer.ipld import dagcbor
from datatransfer.ipld.cid import CID
from datatransfer.messages.model import (
    MAX_TRANSFER_ID,
    InvalidMessage,
    MalformedMessage,
    Message,
    TransferRequest,
    TransferResponse,
    UnknownMessageType,
)
from datatransfer.types import ChannelID, PeerID

#: The libp2p protocol id of this message format.
PROTOCOL_ID = "/fil/datatransfer/1.2.0"

#: Graphsync extensions that carry a ``TransferMessage`` node.
EXTENSION_DATA_TRANSFER = "fil/data-transfer/1.1"
EXTENSION_INCOMING_REQUEST = "fil/data-transfer/incoming-request/1.1"
EXTENSION_OUTGOING_BLOCK = "fil/data-transfer/outgoing-block/1.1"

#: Upper bound on one encoded message, for the network layer. Go sets no
#: explicit limit (one message per stream, read until it decodes); real
#: messages are a few hundred bytes to a few KiB. The same node may ride in a
#: graphsync frame, whose reader limit is 4 MiB, so nothing larger can be
#: useful; a reader should stop buffering a stream beyond this.
MAX_MESSAGE_SIZE = 4 * 1024 * 1024

#: Most DAG-CBOR items (list items, map keys and values) one message may
#: hold. The envelope takes about 40; the rest is the voucher or result and
#: the selector, a few dozen items in every market's messages. A message
#: past it is refused while its heads are read, before any value is built.
MAX_MESSAGE_ITEMS = 1 << 16
#: Deepest nesting a voucher, voucher result or selector may have. The
#: channel store keeps them inside its own record (a few levels deeper than
#: the wire), and every level below DAG-CBOR's limit must stay encodable
#: there: 64 is far beyond any real voucher or selector (a deal proposal
#: nests 4 deep), and a message deeper than that is refused whole.
MAX_VALUE_DEPTH = 64

_ENVELOPE_KEYS = frozenset({"IsRq", "Request", "Response"})
_REQUEST_KEYS = frozenset(
    {"BCid", "Type", "Paus", "Part", "Pull", "Stor", "Vouch", "VTyp", "XferID", "RestartChannel"}
)
_RESPONSE_KEYS = frozenset({"Type", "Acpt", "Paus", "XferID", "VRes", "VTyp"})

_EMPTY_CHANNEL = ["", "", 0]


# -- to the wire -------------------------------------------------------------------


def _peer_text(peer: bytes) -> str:
    return bytes(peer).decode("utf-8", "surrogateescape")


def _request_node(msg: TransferRequest) -> dict[str, Any]:
    ch = msg.restart_channel
    return {
        "BCid": msg.base_cid,
        "Type": int(msg.type),
        "Paus": msg.paused,
        "Part": msg.partial,
        "Pull": msg.pull,
        "Stor": msg.selector,
        "Vouch": msg.voucher,
        "VTyp": msg.voucher_type,
        "XferID": msg.transfer_id,
        "RestartChannel": (
            list(_EMPTY_CHANNEL)
            if ch is None
            else [_peer_text(ch.initiator), _peer_text(ch.responder), ch.id]
        ),
    }


def _response_node(msg: TransferResponse) -> dict[str, Any]:
    return {
        "Type": int(msg.type),
        "Acpt": msg.accepted,
        "Paus": msg.paused,
        "XferID": msg.transfer_id,
        "VRes": msg.voucher_result,
        "VTyp": msg.voucher_result_type,
    }


def to_node(msg: Message) -> dict[str, Any]:
    """The ``TransferMessage`` envelope node of ``msg`` (an IPLD map), as sent
    on the stream and inside graphsync extensions."""
    if isinstance(msg, TransferRequest):
        return {"IsRq": True, "Request": _request_node(msg), "Response": None}
    if isinstance(msg, TransferResponse):
        return {"IsRq": False, "Request": None, "Response": _response_node(msg)}
    raise TypeError(f"not a data-transfer message: {type(msg).__name__}")


def encode_message(msg: Message) -> bytes:
    """Encode ``msg`` as DAG-CBOR, byte-identical to go-data-transfer v1.

    Raises :class:`InvalidMessage` when a voucher, voucher result or selector
    is not an IPLD data-model value.
    """
    try:
        return dagcbor.encode(to_node(msg))
    except dagcbor.DagCborError as exc:
        raise InvalidMessage(f"message cannot be encoded: {exc}") from exc


# -- from the wire -----------------------------------------------------------------


def _fields(node: Any, what: str, keys: frozenset[str]) -> dict[str, Any]:
    if not isinstance(node, dict):
        raise InvalidMessage(f"{what} must be a map, got {_kind(node)}")
    if node.keys() != keys:
        missing = sorted(keys - node.keys())
        if missing:
            raise InvalidMessage(f"{what} is missing {', '.join(map(repr, missing))}")
        unknown = sorted(map(repr, node.keys() - keys))
        raise InvalidMessage(f"{what} has unknown key(s) {', '.join(unknown)}")
    return node


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    return {int: "int", float: "float", str: "string", bytes: "bytes", list: "list",
            dict: "map", CID: "link"}.get(type(value), type(value).__name__)


def _bool(node: dict[str, Any], key: str, what: str) -> bool:
    value = node[key]
    if not isinstance(value, bool):
        raise InvalidMessage(f"{what}.{key} must be a bool, got {_kind(value)}")
    return value


def _uint(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidMessage(f"{what} must be an int, got {_kind(value)}")
    if not 0 <= value <= MAX_TRANSFER_ID:
        raise InvalidMessage(f"{what} {value} is outside 0..2**63-1")
    return value


def _text(node: dict[str, Any], key: str, what: str) -> str:
    value = node[key]
    if not isinstance(value, str):
        raise InvalidMessage(f"{what}.{key} must be a string, got {_kind(value)}")
    return value


def _type_code(node: dict[str, Any], what: str) -> int:
    value = node["Type"]
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidMessage(f"{what}.Type must be an int, got {_kind(value)}")
    if not 0 <= value <= 7:
        raise UnknownMessageType(value)
    return value


def _peer(value: Any, what: str) -> PeerID:
    if not isinstance(value, str):
        raise InvalidMessage(f"{what} must be a string, got {_kind(value)}")
    try:
        return PeerID(value.encode("utf-8", "surrogateescape"))
    except UnicodeEncodeError:
        raise InvalidMessage(f"{what} is not a peer id") from None


def _channel(value: Any) -> ChannelID:
    what = "TransferRequest.RestartChannel"
    if not isinstance(value, list):
        raise InvalidMessage(f"{what} must be a list, got {_kind(value)}")
    if len(value) != 3:
        raise InvalidMessage(f"{what} must have 3 entries, got {len(value)}")
    return ChannelID(
        _peer(value[0], what + ".Initiator"),
        _peer(value[1], what + ".Responder"),
        _uint(value[2], what + ".ID"),
    )


def _shallow(value: Any, what: str) -> Any:
    """``value`` if it nests at most :data:`MAX_VALUE_DEPTH` deep."""
    level = [value]
    for _ in range(MAX_VALUE_DEPTH + 1):
        inner = []
        for v in level:
            if type(v) is dict:
                inner.extend(v.values())
            elif type(v) is list:
                inner.extend(v)
        if not inner:
            return value
        level = inner
    raise InvalidMessage(f"{what} nests deeper than {MAX_VALUE_DEPTH} levels")


def _request(node: Any) -> TransferRequest:
    what = "TransferRequest"
    f = _fields(node, what, _REQUEST_KEYS)
    base = f["BCid"]
    if base is not None and not isinstance(base, CID):
        raise InvalidMessage(f"{what}.BCid must be a link or null, got {_kind(base)}")
    return TransferRequest(
        type=_type_code(f, what),
        transfer_id=_uint(f["XferID"], what + ".XferID"),
        base_cid=base,
        paused=_bool(f, "Paus", what),
        partial=_bool(f, "Part", what),
        pull=_bool(f, "Pull", what),
        selector=_shallow(f["Stor"], what + ".Stor"),
        voucher=_shallow(f["Vouch"], what + ".Vouch"),
        voucher_type=_text(f, "VTyp", what),
        restart_channel=_channel(f["RestartChannel"]),
    )


def _response(node: Any) -> TransferResponse:
    what = "TransferResponse"
    f = _fields(node, what, _RESPONSE_KEYS)
    return TransferResponse(
        type=_type_code(f, what),
        transfer_id=_uint(f["XferID"], what + ".XferID"),
        accepted=_bool(f, "Acpt", what),
        paused=_bool(f, "Paus", what),
        voucher_result=_shallow(f["VRes"], what + ".VRes"),
        voucher_result_type=_text(f, "VTyp", what),
    )


def from_node(node: Any) -> Message:
    """Read a ``TransferMessage`` envelope node (e.g. a graphsync extension's
    value) into a :class:`TransferRequest` or :class:`TransferResponse`.

    Raises :class:`InvalidMessage` (or its :class:`UnknownMessageType`) for
    anything that is not exactly a message: missing or unknown keys, wrong
    types, type codes that do not fit the message kind, and an envelope
    whose ``IsRq`` does not match which of Request/Response is set (Go reads
    an envelope carrying both by ignoring one; no Go peer sends one, and we
    refuse it).
    """
    f = _fields(node, "TransferMessage", _ENVELOPE_KEYS)
    is_request = _bool(f, "IsRq", "TransferMessage")
    request, response = f["Request"], f["Response"]
    if is_request:
        if request is None:
            raise InvalidMessage("TransferMessage: IsRq is true but Request is null")
        if response is not None:
            raise InvalidMessage("TransferMessage: IsRq is true but Response is set")
        return _request(request)
    if response is None:
        raise InvalidMessage("TransferMessage: IsRq is false but Response is null")
    if request is not None:
        raise InvalidMessage("TransferMessage: IsRq is false but Request is set")
    return _response(response)


def decode_message(data: bytes | bytearray | memoryview) -> Message:
    """Decode one message from ``data`` (exactly one DAG-CBOR value).

    Raises :class:`MalformedMessage` when the bytes are not DAG-CBOR (its
    ``__cause__`` is the codec's error) and :class:`InvalidMessage` when they
    are but do not form a message; never any other exception for bytes input.
    Map keys may come in any order (older Go peers); everything else must be
    canonical DAG-CBOR.
    """
    try:
        node = dagcbor.decode(data, sorted_keys=False, max_items=MAX_MESSAGE_ITEMS)
    except dagcbor.DagCborError as exc:
        raise MalformedMessage(f"not a DAG-CBOR message: {exc}") from exc
    return from_node(node)
