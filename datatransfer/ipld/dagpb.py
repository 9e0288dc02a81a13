"""DAG-PB (multicodec 0x70): the protobuf codec of UnixFS.

The IPLD data-model form, as the DAG-PB spec gives it::

    {"Links": [{"Hash": CID, "Name": str, "Tsize": int}, ...], "Data": bytes}

``Links`` is always present (possibly empty); ``Data``, ``Name`` and ``Tsize``
are present only when the block has them (an empty ``Name`` or a zero
``Tsize`` is present, not absent: the two encode differently).

Encoding writes the canonical form: links sorted by the bytes of their
``Name`` (stable; a missing name sorts as the empty name), every link before
``Data`` (PBNode field 2 before field 1), and within a link ``Hash`` (1),
``Name`` (2), ``Tsize`` (3). Decoding accepts only that field order, refuses
duplicate and unknown fields, a link without ``Hash`` and a ``Hash`` that is
not a CID, so decoding then encoding gives back the same bytes. Link order is
not checked on decode (the spec keeps old unsorted blocks readable).
"""

from __future__ import annotations

from typing import Any

from datatransfer.ipld import protobuf as pb
from datatransfer.ipld.cid import CID
from datatransfer.ipld.errors import CIDError, CodecError

CODE = 0x70

_NODE_KEYS = frozenset(("Links", "Data"))
_LINK_KEYS = frozenset(("Hash", "Name", "Tsize"))
_TSIZE_LIMIT = 1 << 63

# Pre-encoded tags.
_NODE_DATA = b"\x0a"  # field 1, length-delimited
_NODE_LINK = b"\x12"  # field 2, length-delimited
_LINK_HASH = b"\x0a"  # field 1, length-delimited
_LINK_NAME = b"\x12"  # field 2, length-delimited
_LINK_TSIZE = b"\x18"  # field 3, varint


class DagPbError(CodecError):
    """Bytes that are not canonical DAG-PB, or a value DAG-PB cannot hold."""


# -- encoding -----------------------------------------------------------------


def encode_link(cid: CID, name: str | bytes | None = None, tsize: int | None = None) -> bytes:
    """One encoded PBLink field of a PBNode (tag, length and message)."""
    raw = cid.buffer
    body = bytearray(_LINK_HASH)
    body += pb.encode_varint(len(raw))
    body += raw
    if name is not None:
        if isinstance(name, str):
            name = name.encode("utf-8")
        body += _LINK_NAME
        body += pb.encode_varint(len(name))
        body += name
    if tsize is not None:
        body += _LINK_TSIZE
        body += pb.encode_varint(tsize)
    return _NODE_LINK + pb.encode_varint(len(body)) + bytes(body)


def encode_data_field(data: bytes | bytearray | memoryview) -> bytes:
    """The tag and length that precede ``data`` as a PBNode's Data field."""
    return _NODE_DATA + pb.encode_varint(len(data))


def _check_link(link: Any) -> tuple[CID, bytes | None, int | None]:
    if not isinstance(link, dict):
        raise DagPbError(f"a link must be a map, not {type(link).__name__}")
    extra = link.keys() - _LINK_KEYS
    if extra:
        raise DagPbError(f"unknown link field(s) {sorted(map(str, extra))}")
    cid = link.get("Hash")
    if not isinstance(cid, CID):
        raise DagPbError("a link's Hash must be a CID")
    name = link.get("Name")
    if name is not None:
        if not isinstance(name, str):
            raise DagPbError(f"a link's Name must be a string, not {type(name).__name__}")
        try:
            name_bytes: bytes | None = name.encode("utf-8")
        except UnicodeEncodeError:
            raise DagPbError("a link's Name is not valid Unicode") from None
    else:
        if "Name" in link:
            raise DagPbError("a link's Name must be a string, not None")
        name_bytes = None
    tsize = link.get("Tsize")
    if tsize is not None or "Tsize" in link:
        if type(tsize) is not int or not 0 <= tsize < _TSIZE_LIMIT:
            raise DagPbError(f"a link's Tsize must be an integer in [0, 2**63), not {tsize!r}")
    return cid, name_bytes, tsize


def encode(node: dict[str, Any]) -> bytes:
    """Encode a DAG-PB node from its data-model form (links sorted by name)."""
    if not isinstance(node, dict):
        raise DagPbError(f"a DAG-PB node must be a map, not {type(node).__name__}")
    extra = node.keys() - _NODE_KEYS
    if extra:
        raise DagPbError(f"unknown node field(s) {sorted(map(str, extra))}")
    links = node.get("Links", [])
    if not isinstance(links, (list, tuple)):
        raise DagPbError("Links must be a list")
    checked = [_check_link(link) for link in links]
    checked.sort(key=lambda item: item[1] or b"")  # stable: equal names keep their order
    parts = [encode_link(cid, name, tsize) for cid, name, tsize in checked]
    if "Data" in node:
        data = node["Data"]
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise DagPbError(f"Data must be bytes, not {type(data).__name__}")
        parts.append(encode_data_field(data))
        parts.append(bytes(data))
    return b"".join(parts)


# -- decoding -----------------------------------------------------------------


def _decode_link(buf: memoryview) -> dict[str, Any]:
    link: dict[str, Any] = {}
    last = 0
    pos = 0
    end = len(buf)
    while pos < end:
        field, wire_type, pos = pb.read_key(buf, pos)
        if field <= last:
            if field == last:
                raise DagPbError(f"duplicate PBLink field {field}")
            raise DagPbError(f"PBLink field {field} out of order (after {last})")
        last = field
        if field == 1:
            pb.expect_wire_type(field, wire_type, pb.LEN, "PBLink")
            value, pos = pb.read_value(buf, wire_type, pos)
            try:
                link["Hash"] = CID.from_bytes(value)
            except CIDError as exc:
                raise DagPbError(f"PBLink Hash is not a CID: {exc}") from None
        elif field == 2:
            if "Hash" not in link:
                raise DagPbError("PBLink Name before Hash")
            pb.expect_wire_type(field, wire_type, pb.LEN, "PBLink")
            value, pos = pb.read_value(buf, wire_type, pos)
            try:
                link["Name"] = bytes(value).decode("utf-8")
            except UnicodeDecodeError:
                raise DagPbError("PBLink Name is not valid UTF-8") from None
        elif field == 3:
            if "Hash" not in link:
                raise DagPbError("PBLink Tsize before Hash")
            pb.expect_wire_type(field, wire_type, pb.VARINT, "PBLink")
            value, pos = pb.read_value(buf, wire_type, pos)
            if value >= _TSIZE_LIMIT:
                raise DagPbError(f"PBLink Tsize {value} exceeds 2**63 - 1")
            link["Tsize"] = value
        else:
            raise DagPbError(f"unknown PBLink field {field}")
    if "Hash" not in link:
        raise DagPbError("PBLink without Hash")
    return link


def decode(data: bytes | bytearray | memoryview) -> dict[str, Any]:
    """Decode a DAG-PB block into its data-model form; strict, see the module doc."""
    try:
        return _decode(memoryview(data))
    except DagPbError:
        raise
    except pb.ProtobufError as exc:
        raise DagPbError(str(exc)) from None


def _decode(buf: memoryview) -> dict[str, Any]:
    links: list[dict[str, Any]] = []
    node: dict[str, Any] = {"Links": links}
    pos = 0
    end = len(buf)
    while pos < end:
        field, wire_type, pos = pb.read_key(buf, pos)
        if field == 2:
            if "Data" in node:
                raise DagPbError("PBNode Links after Data")
            pb.expect_wire_type(field, wire_type, pb.LEN, "PBNode")
            value, pos = pb.read_value(buf, wire_type, pos)
            links.append(_decode_link(value))
        elif field == 1:
            if "Data" in node:
                raise DagPbError("duplicate PBNode Data")
            pb.expect_wire_type(field, wire_type, pb.LEN, "PBNode")
            value, pos = pb.read_value(buf, wire_type, pos)
            node["Data"] = bytes(value)
        else:
            raise DagPbError(f"unknown PBNode field {field}")
    return node


def links(data: bytes | bytearray | memoryview) -> list[CID]:
    """The CIDs a DAG-PB block links to, in order."""
    return [link["Hash"] for link in decode(data)["Links"]]
