"""Unsigned LEB128 varints as multiformats uses them.

Decoding is strict: at most 9 bytes (63 bits) and minimal encoding, because a
varint with padding bytes would give one value several encodings, and CIDs,
frame lengths and CAR sections must each have exactly one.
"""

from __future__ import annotations

from datatransfer.ipld.errors import VarintError

MAX_VARINT_BYTES = 9


def encode_uvarint(value: int) -> bytes:
    """Encode a non-negative integer below 2**63."""
    if value < 0 or value >= 1 << 63:
        raise VarintError(f"varint out of range: {value}")
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def decode_uvarint(buf: bytes | bytearray | memoryview, offset: int = 0) -> tuple[int, int]:
    """Decode one varint at ``offset``; return ``(value, offset_after)``.

    Raises :class:`VarintError` for a truncated, overlong or non-minimal varint.
    """
    first = buf[offset] if offset < len(buf) else None
    if first is None:
        raise VarintError("truncated varint: no bytes")
    if first < 0x80:
        return first, offset + 1
    value = 0
    shift = 0
    pos = offset
    end = len(buf)
    while True:
        if pos >= end:
            raise VarintError("truncated varint")
        if pos - offset >= MAX_VARINT_BYTES:
            raise VarintError("varint longer than 9 bytes")
        byte = buf[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        if byte < 0x80:
            if byte == 0:
                raise VarintError("non-minimal varint encoding")
            return value, pos
        shift += 7


def read_uvarint(read) -> int | None:
    """Read one varint from a blocking ``read(n) -> bytes`` callable.

    Returns None on a clean end of input before the first byte.
    """
    raw = bytearray()
    while True:
        b = read(1)
        if not b:
            if raw:
                raise VarintError("truncated varint")
            return None
        raw += b
        if b[0] < 0x80:
            return decode_uvarint(raw)[0]
        if len(raw) >= MAX_VARINT_BYTES:
            raise VarintError("varint longer than 9 bytes")
