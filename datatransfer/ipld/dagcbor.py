"""Strict DAG-CBOR: the codec for data-transfer messages, graphsync frames,
CAR headers and dag-cbor blocks.

The IPLD data model maps onto Python as: None, bool, int, float, str, bytes,
list, dict (str keys) and :class:`~datatransfer.ipld.cid.CID` (tag 42) for
links. Encoding is canonical (map keys sorted by length then bytes, shortest
integer heads, 64-bit floats, definite lengths). Decoding accepts only
canonical input, so one value has exactly one encoding and a block's CID is
stable; anything else raises :class:`DagCborError`.
"""

from __future__ import annotations

import math
import struct
from typing import Any

from datatransfer.ipld.cid import CID
from datatransfer.ipld.errors import CodecError, IPLDError

CODE = 0x71
CID_TAG = 42

#: Nesting limit for decoding; a hostile message cannot exhaust the stack.
MAX_DEPTH = 256


class DagCborError(CodecError):
    """Bytes that are not canonical DAG-CBOR, or a value DAG-CBOR cannot hold."""


def _head(major: int, n: int, out: bytearray) -> None:
    mt = major << 5
    if n < 24:
        out.append(mt | n)
    elif n < 0x100:
        out.append(mt | 24)
        out.append(n)
    elif n < 0x10000:
        out.append(mt | 25)
        out += n.to_bytes(2, "big")
    elif n < 0x100000000:
        out.append(mt | 26)
        out += n.to_bytes(4, "big")
    elif n < 0x10000000000000000:
        out.append(mt | 27)
        out += n.to_bytes(8, "big")
    else:
        raise DagCborError(f"integer {n} does not fit in 64 bits")


def _key_order(item: tuple[bytes, Any]) -> tuple[int, bytes]:
    return (len(item[0]), item[0])


def _encode(value: Any, out: bytearray) -> None:
    if value is None:
        out.append(0xF6)
    elif value is True:
        out.append(0xF5)
    elif value is False:
        out.append(0xF4)
    elif isinstance(value, int):
        if value >= 0:
            _head(0, value, out)
        else:
            _head(1, -1 - value, out)
    elif isinstance(value, str):
        raw = value.encode("utf-8", "surrogateescape")
        _head(3, len(raw), out)
        out += raw
    elif isinstance(value, (bytes, bytearray, memoryview)):
        _head(2, len(value), out)
        out += value
    elif isinstance(value, CID):
        raw = value.buffer
        out.append(0xD8)
        out.append(CID_TAG)
        _head(2, len(raw) + 1, out)
        out.append(0)
        out += raw
    elif isinstance(value, (list, tuple)):
        _head(4, len(value), out)
        for item in value:
            _encode(item, out)
    elif isinstance(value, dict):
        items = []
        for k, v in value.items():
            if not isinstance(k, str):
                raise DagCborError(f"map keys must be strings, got {type(k).__name__}")
            items.append((k.encode("utf-8", "surrogateescape"), v))
        items.sort(key=_key_order)
        _head(5, len(items), out)
        for i, (k, v) in enumerate(items):
            if i and items[i - 1][0] == k:
                raise DagCborError(f"duplicate map key {k!r}")
            _head(3, len(k), out)
            out += k
            _encode(v, out)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise DagCborError(f"DAG-CBOR cannot hold {value!r}")
        out.append(0xFB)
        out += struct.pack(">d", value)
    else:
        raise DagCborError(f"cannot encode {type(value).__name__} as DAG-CBOR")


def encode(value: Any) -> bytes:
    """Encode an IPLD data-model value as canonical DAG-CBOR."""
    out = bytearray()
    _encode(value, out)
    return bytes(out)


class _Decoder:
    __slots__ = ("data", "pos", "end")

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        self.data = bytes(data)
        self.pos = 0
        self.end = len(self.data)

    def fail(self, why: str) -> DagCborError:
        return DagCborError(f"{why} at byte {self.pos}")

    def take(self, n: int) -> bytes:
        start = self.pos
        stop = start + n
        if stop > self.end:
            raise self.fail(f"truncated: need {n} bytes")
        self.pos = stop
        return self.data[start:stop]

    def head(self) -> tuple[int, int]:
        if self.pos >= self.end:
            raise self.fail("truncated: unexpected end of input")
        b = self.data[self.pos]
        self.pos += 1
        major, info = b >> 5, b & 0x1F
        if info < 24:
            return major, info
        if info == 24:
            n = self.take(1)[0]
            if n < 24:
                raise self.fail("non-minimal integer head")
        elif info == 25:
            n = int.from_bytes(self.take(2), "big")
            if n < 0x100:
                raise self.fail("non-minimal integer head")
        elif info == 26:
            n = int.from_bytes(self.take(4), "big")
            if n < 0x10000:
                raise self.fail("non-minimal integer head")
        elif info == 27:
            n = int.from_bytes(self.take(8), "big")
            if n < 0x100000000:
                raise self.fail("non-minimal integer head")
        elif info == 31:
            raise self.fail("indefinite-length item")
        else:
            raise self.fail(f"reserved additional info {info}")
        return major, n

    def value(self, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise self.fail(f"nesting deeper than {MAX_DEPTH}")
        start = self.pos
        if start < self.end and self.data[start] >> 5 == 7:
            return self.simple()
        major, n = self.head()
        if major == 0:
            return n
        if major == 1:
            return -1 - n
        if major == 2:
            return self.take(n)
        if major == 3:
            raw = self.take(n)
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError:
                # go-data-transfer writes raw peer-id bytes as text strings;
                # keep them losslessly so they re-encode to the same bytes.
                return raw.decode("utf-8", "surrogateescape")
        if major == 4:
            if n > self.end - self.pos:
                raise self.fail("array longer than the input")
            return [self.value(depth + 1) for _ in range(n)]
        if major == 5:
            if n > self.end - self.pos:
                raise self.fail("map longer than the input")
            out: dict[str, Any] = {}
            prev: bytes | None = None
            for _ in range(n):
                kmajor, klen = self.head()
                if kmajor != 3:
                    raise self.fail("map key is not a string")
                kraw = self.take(klen)
                if prev is not None:
                    if (len(kraw), kraw) == (len(prev), prev):
                        raise self.fail(f"duplicate map key {kraw!r}")
                    if (len(kraw), kraw) < (len(prev), prev):
                        raise self.fail("map keys not in canonical order")
                prev = kraw
                key = kraw.decode("utf-8", "surrogateescape")
                out[key] = self.value(depth + 1)
            return out
        if major == 6:
            if n != CID_TAG:
                raise self.fail(f"tag {n} is not allowed (only 42 for links)")
            bmajor, blen = self.head()
            if bmajor != 2:
                raise self.fail("tag 42 must wrap a byte string")
            raw = self.take(blen)
            if not raw or raw[0] != 0:
                raise self.fail("link bytes must start with the 0x00 multibase prefix")
            try:
                return CID.from_bytes(raw[1:])
            except IPLDError as exc:
                raise self.fail(f"invalid CID in link: {exc}") from None
        raise self.fail(f"unexpected major type {major}")

    def simple(self) -> Any:
        b = self.data[self.pos]
        self.pos += 1
        if b == 0xF4:
            return False
        if b == 0xF5:
            return True
        if b == 0xF6:
            return None
        if b == 0xFB:
            (f,) = struct.unpack(">d", self.take(8))
            if not math.isfinite(f):
                raise self.fail("NaN and infinities are not allowed")
            return f
        if b in (0xF9, 0xFA):
            raise self.fail("floats must be 64-bit")
        if b == 0xF7:
            raise self.fail("undefined is not allowed")
        raise self.fail(f"simple value 0x{b:02x} is not allowed")


def decode(data: bytes | bytearray | memoryview) -> Any:
    """Decode exactly one canonical DAG-CBOR value; raise :class:`DagCborError`."""
    dec = _Decoder(data)
    value = dec.value(0)
    if dec.pos != dec.end:
        raise dec.fail(f"{dec.end - dec.pos} trailing bytes")
    return value
