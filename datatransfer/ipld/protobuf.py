"""A minimal protocol-buffers wire reader and writer.

Only what dag-pb and UnixFS need: varint (wire type 0), 64-bit (1),
length-delimited (2) and 32-bit (5) fields. There is no schema machinery:
callers walk ``(field, wire_type, value)`` triples and write fields in the
order they choose, because dag-pb's canonical form fixes the field order.

Decoding is strict. Truncated input, a varint longer than 10 bytes or above
2**64 - 1, a varint with redundant trailing zero groups (a second encoding of
the same number), field number 0 and the group wire types (3, 4) or the
undefined ones (6, 7) all raise :class:`ProtobufError`.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from datatransfer.ipld.errors import CodecError

VARINT = 0
I64 = 1
LEN = 2
I32 = 5

WIRE_TYPE_NAMES = {VARINT: "varint", I64: "64-bit", LEN: "length-delimited", I32: "32-bit"}

MAX_FIELD_NUMBER = (1 << 29) - 1
MAX_VARINT_BYTES = 10
_U64_LIMIT = 1 << 64

_I64 = struct.Struct("<Q")
_I32 = struct.Struct("<I")


class ProtobufError(CodecError):
    """Bytes that are not well-formed protocol-buffers wire data."""


# -- varints ------------------------------------------------------------------


def encode_varint(value: int) -> bytes:
    """Encode an unsigned 64-bit integer as a protobuf varint.

    Negative values (int64 fields) are written as their 64-bit two's
    complement, ten bytes long, as protobuf does.
    """
    if value < 0:
        if value < -(1 << 63):
            raise ProtobufError(f"varint out of range: {value}")
        value += _U64_LIMIT
    elif value >= _U64_LIMIT:
        raise ProtobufError(f"varint out of range: {value}")
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def decode_varint(buf: bytes | bytearray | memoryview, pos: int = 0) -> tuple[int, int]:
    """Decode one varint at ``pos``; return ``(value, pos_after)``."""
    end = len(buf)
    if pos >= end:
        raise ProtobufError("truncated varint")
    byte = buf[pos]
    if byte < 0x80:
        return byte, pos + 1
    value = byte & 0x7F
    shift = 7
    start = pos
    pos += 1
    while True:
        if pos >= end:
            raise ProtobufError("truncated varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            if byte == 0:
                raise ProtobufError("non-minimal varint encoding")
            if value >= _U64_LIMIT:
                raise ProtobufError("varint exceeds 64 bits")
            return value, pos
        shift += 7
        if pos - start >= MAX_VARINT_BYTES:
            raise ProtobufError("varint longer than 10 bytes")


def to_int64(value: int) -> int:
    """Reinterpret a decoded varint as a signed 64-bit integer."""
    return value - _U64_LIMIT if value >= 1 << 63 else value


# -- fields -------------------------------------------------------------------


def key(field: int, wire_type: int) -> bytes:
    """The encoded tag of a field."""
    if not 1 <= field <= MAX_FIELD_NUMBER:
        raise ProtobufError(f"invalid field number {field}")
    return encode_varint((field << 3) | wire_type)


def read_key(buf: bytes | bytearray | memoryview, pos: int) -> tuple[int, int, int]:
    """Decode a tag at ``pos``; return ``(field, wire_type, pos_after)``."""
    tag, pos = decode_varint(buf, pos)
    field, wire_type = tag >> 3, tag & 7
    if field == 0:
        raise ProtobufError("field number 0 is invalid")
    if field > MAX_FIELD_NUMBER:
        raise ProtobufError(f"field number {field} out of range")
    if wire_type not in WIRE_TYPE_NAMES:
        raise ProtobufError(f"unsupported wire type {wire_type} (field {field})")
    return field, wire_type, pos


def read_value(
    buf: bytes | bytearray | memoryview, wire_type: int, pos: int
) -> tuple[int | memoryview, int]:
    """Decode the value of a field whose tag was just read.

    Varints and fixed-width fields give an ``int``; length-delimited fields a
    ``memoryview`` into ``buf`` (no copy).
    """
    if wire_type == VARINT:
        return decode_varint(buf, pos)
    if wire_type == LEN:
        length, pos = decode_varint(buf, pos)
        end = pos + length
        if end > len(buf):
            raise ProtobufError(
                f"truncated length-delimited field: {length} bytes declared, "
                f"{len(buf) - pos} present"
            )
        return memoryview(buf)[pos:end], end
    if wire_type == I64:
        end = pos + 8
        if end > len(buf):
            raise ProtobufError("truncated 64-bit field")
        return _I64.unpack_from(buf, pos)[0], end
    if wire_type == I32:
        end = pos + 4
        if end > len(buf):
            raise ProtobufError("truncated 32-bit field")
        return _I32.unpack_from(buf, pos)[0], end
    raise ProtobufError(f"unsupported wire type {wire_type}")


def iter_fields(
    buf: bytes | bytearray | memoryview,
) -> Iterator[tuple[int, int, int | memoryview]]:
    """Yield ``(field, wire_type, value)`` for every field of a message."""
    pos = 0
    end = len(buf)
    while pos < end:
        field, wire_type, pos = read_key(buf, pos)
        value, pos = read_value(buf, wire_type, pos)
        yield field, wire_type, value


def expect_wire_type(field: int, wire_type: int, expected: int, message: str = "") -> None:
    """Raise unless a field has the wire type its schema gives it."""
    if wire_type != expected:
        where = f"{message}." if message else ""
        raise ProtobufError(
            f"field {where}{field} has wire type {WIRE_TYPE_NAMES.get(wire_type, wire_type)}, "
            f"expected {WIRE_TYPE_NAMES[expected]}"
        )


def decode_packed_varints(buf: bytes | bytearray | memoryview) -> list[int]:
    """Decode the payload of a packed repeated varint field."""
    out = []
    pos = 0
    end = len(buf)
    while pos < end:
        value, pos = decode_varint(buf, pos)
        out.append(value)
    return out


class Writer:
    """Appends encoded fields to a buffer; :meth:`getvalue` returns the bytes."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def varint(self, field: int, value: int) -> Writer:
        self._buf += key(field, VARINT)
        self._buf += encode_varint(value)
        return self

    def bytes(self, field: int, data: bytes | bytearray | memoryview) -> Writer:
        self._buf += key(field, LEN)
        self._buf += encode_varint(len(data))
        self._buf += data
        return self

    def string(self, field: int, text: str) -> Writer:
        return self.bytes(field, text.encode("utf-8"))

    def fixed32(self, field: int, value: int) -> Writer:
        if not 0 <= value < 1 << 32:
            raise ProtobufError(f"fixed32 out of range: {value}")
        self._buf += key(field, I32)
        self._buf += _I32.pack(value)
        return self

    def fixed64(self, field: int, value: int) -> Writer:
        if not 0 <= value < _U64_LIMIT:
            raise ProtobufError(f"fixed64 out of range: {value}")
        self._buf += key(field, I64)
        self._buf += _I64.pack(value)
        return self

    def raw(self, data: bytes | bytearray | memoryview) -> Writer:
        """Append already-encoded bytes."""
        self._buf += data
        return self

    def __len__(self) -> int:
        return len(self._buf)

    def getvalue(self) -> bytes:
        return bytes(self._buf)
