"""Strict DAG-CBOR: the codec for data-transfer messages, graphsync frames,
CAR headers and dag-cbor blocks.

The IPLD data model maps onto Python as: None, bool, int, float, str, bytes,
list, dict (str keys) and :class:`~datatransfer.ipld.cid.CID` (tag 42) for
links. Encoding is canonical (map keys sorted by length then bytes, shortest
integer heads, 64-bit floats, definite lengths). Decoding accepts only
canonical input, so one value has exactly one encoding and a block's CID is
stable; anything else raises :class:`DagCborError`.

How it is built (and why), measured on this machine with cbor2 6.x:

* **One encoder**, in Python, specialised on exact types. cbor2's encoder was
  measured and is *slower* here once DAG-CBOR's rules are bolted on (its
  canonical mode shrinks floats and sorts slowly; hooks for floats, links,
  map keys and integer range cost a Python call each), so it is not used for
  encoding at all.
* **Decoding** runs cbor2's C decoder (links via a tag hook, every other tag
  refused), then re-encodes the result with the encoder above and compares
  bytes. Equal bytes prove the input was the canonical encoding of that
  value, so every canonical-form rule (key order, minimal heads, float width,
  no trailing bytes...) is enforced by the one encoder.
* When that fast path fails for any reason, a pure-Python reference decoder
  runs and gives the verdict: either the value (inputs the fast path does not
  take, such as text that is not valid UTF-8) or a precise
  :class:`DagCborError` naming the rule and byte offset. The fast path is at
  least as strict as the reference, so it can only ever make decoding
  faster, never more permissive; the tests check that on random and mutated
  input.

Text strings that are not valid UTF-8 decode with ``surrogateescape`` and
re-encode to the same bytes: go-data-transfer writes raw peer-id bytes as
CBOR text strings.
"""

from __future__ import annotations

import math
import struct
from operator import itemgetter
from typing import Any

import cbor2

from datatransfer.ipld.cid import CID
from datatransfer.ipld.errors import CodecError

CODE = 0x71
CID_TAG = 42

#: Nesting limit: a value may sit inside at most this many lists/maps. Decoding
#: refuses deeper input (a hostile message cannot exhaust the stack) and
#: encoding refuses deeper values, so whatever encodes also decodes.
MAX_DEPTH = 256


class DagCborError(CodecError):
    """Bytes that are not canonical DAG-CBOR, or a value DAG-CBOR cannot hold."""


# -- encoding ------------------------------------------------------------------

_HEAD1 = [bytes((b,)) for b in range(256)]
_pack_u8 = struct.Struct(">BB").pack
_pack_u16 = struct.Struct(">BH").pack
_pack_u32 = struct.Struct(">BI").pack
_pack_u64 = struct.Struct(">BQ").pack
_pack_f64 = struct.Struct(">d").pack
_unpack_f64 = struct.Struct(">d").unpack

_MAJOR_NEG = 0x20
_MAJOR_BYTES = 0x40
_MAJOR_TEXT = 0x60
_MAJOR_ARRAY = 0x80
_MAJOR_MAP = 0xA0
_LINK_TAG_HEAD = b"\xd8\x2a"


def _head(major: int, n: int) -> bytes:
    """The shortest head for ``major`` (already shifted: 0x00, 0x20, ...) and ``n``."""
    if n < 24:
        return _HEAD1[major | n]
    if n < 0x100:
        return _pack_u8(major | 24, n)
    if n < 0x10000:
        return _pack_u16(major | 25, n)
    if n < 0x100000000:
        return _pack_u32(major | 26, n)
    if n < 0x10000000000000000:
        return _pack_u64(major | 27, n)
    raise DagCborError(f"integer {n if major == 0 else -1 - n} does not fit in 64 bits")


# Encoded map keys (head + UTF-8) by key. Comparing two encoded text keys
# bytewise orders them exactly as DAG-CBOR requires (length first, then bytes),
# so the cached bytes double as the sort key. Bounded: hostile input with many
# distinct keys only stops the caching, it cannot grow memory.
_KEY_CACHE: dict[str, bytes] = {}
_KEY_CACHE_MAX = 4096
_KEY_CACHE_MAX_LEN = 64
_by_key = itemgetter(0)


def _key(k: Any) -> bytes:
    if type(k) is str:
        cached = _KEY_CACHE.get(k)
        if cached is not None:
            return cached
    elif not isinstance(k, str):
        raise DagCborError(f"map keys must be strings, got {type(k).__name__}")
    raw = str.encode(k, "utf-8", "surrogateescape")
    n = len(raw)
    enc = (_HEAD1[_MAJOR_TEXT | n] if n < 24 else _head(_MAJOR_TEXT, n)) + raw
    if type(k) is str and n <= _KEY_CACHE_MAX_LEN and len(_KEY_CACHE) < _KEY_CACHE_MAX:
        _KEY_CACHE[k] = enc
    return enc


def _encode(value: Any, out: bytearray, depth: int) -> None:
    # Exact-type dispatch, most frequent first; subclasses and bytes-likes
    # take the slower _encode_other.
    t = type(value)
    if t is str:
        raw = value.encode("utf-8", "surrogateescape")
        n = len(raw)
        out += _HEAD1[_MAJOR_TEXT | n] if n < 24 else _head(_MAJOR_TEXT, n)
        out += raw
    elif t is int:
        if 0 <= value < 24:
            out.append(value)
        elif value >= 0:
            out += _head(0, value)
        else:
            out += _head(_MAJOR_NEG, -1 - value)
    elif t is dict:
        n = len(value)
        out += _HEAD1[_MAJOR_MAP | n] if n < 24 else _head(_MAJOR_MAP, n)
        if n:
            if depth >= MAX_DEPTH:
                raise DagCborError(f"nesting deeper than {MAX_DEPTH}")
            depth += 1
            if n == 1:
                for k, v in value.items():
                    out += _key(k)
                    _encode(v, out, depth)
                return
            items = [(_key(k), v) for k, v in value.items()]
            items.sort(key=_by_key)
            prev = None
            for kb, v in items:
                if kb == prev:
                    # only two distinct str keys that encode alike get here
                    raise DagCborError(f"duplicate map key {kb!r}")
                prev = kb
                out += kb
                _encode(v, out, depth)
    elif t is list or t is tuple:
        n = len(value)
        out += _HEAD1[_MAJOR_ARRAY | n] if n < 24 else _head(_MAJOR_ARRAY, n)
        if n:
            if depth >= MAX_DEPTH:
                raise DagCborError(f"nesting deeper than {MAX_DEPTH}")
            depth += 1
            for item in value:
                _encode(item, out, depth)
    elif value is None:
        out.append(0xF6)
    elif value is True:
        out.append(0xF5)
    elif value is False:
        out.append(0xF4)
    elif t is bytes:
        n = len(value)
        out += _HEAD1[_MAJOR_BYTES | n] if n < 24 else _head(_MAJOR_BYTES, n)
        if n < _HOLE_MIN or type(out) is not _Holes:
            out += value
        else:
            out.holes.append((len(out), value))
    elif t is CID:
        raw = value.buffer
        out += _LINK_TAG_HEAD
        out += _head(_MAJOR_BYTES, len(raw) + 1)
        out.append(0)
        out += raw
    elif t is float:
        if not math.isfinite(value):
            raise DagCborError(f"DAG-CBOR cannot hold {value!r}")
        out.append(0xFB)
        out += _pack_f64(value)
    else:
        _encode_other(value, out, depth)


def _encode_other(value: Any, out: bytearray, depth: int) -> None:
    """Subclasses of the data-model types (IntEnum, str subclasses, ...) and
    bytes-likes: encoded as their base type."""
    if isinstance(value, int):
        _encode(int(value), out, depth)
    elif isinstance(value, str):
        _encode(str.__str__(value), out, depth)
    elif isinstance(value, (bytes, bytearray, memoryview)):
        _encode(bytes(value), out, depth)
    elif isinstance(value, float):
        _encode(float(value), out, depth)
    elif isinstance(value, dict):
        _encode(dict(value), out, depth)
    elif isinstance(value, (list, tuple)):
        _encode(list(value), out, depth)
    elif isinstance(value, CID):
        _encode(CID.from_bytes(value.buffer), out, depth)
    else:
        raise DagCborError(f"cannot encode {type(value).__name__} as DAG-CBOR")


def encode(value: Any) -> bytes:
    """Encode an IPLD data-model value as canonical DAG-CBOR.

    Raises :class:`DagCborError` for anything outside the data model: other
    types, non-string map keys, integers outside [-2**64, 2**64 - 1], NaN and
    infinities, strings with surrogates that are not escaped bytes, nesting
    deeper than :data:`MAX_DEPTH`.
    """
    out = bytearray()
    encode_into(value, out)
    return bytes(out)


def encode_segments(value: Any) -> list[bytes]:
    """The canonical DAG-CBOR encoding of ``value`` as a list of pieces that
    concatenate to :func:`encode`'s result: each byte string of 4 KiB or
    more inside ``value`` is a piece of its own (that very object, not a
    copy), the rest is copied into the pieces between them. A sender can
    write the pieces out without ever copying a large block. Raises as
    :func:`encode` does.
    """
    out = _Holes()
    encode_into(value, out)
    pieces: list[bytes] = []
    at = 0
    for hole, data in out.holes:
        pieces.append(bytes(out[at:hole]))
        pieces.append(data)
        at = hole
    pieces.append(bytes(out[at:]))
    return pieces


def encode_into(value: Any, out: bytearray) -> None:
    """Append the canonical DAG-CBOR encoding of ``value`` to ``out``.

    :func:`encode` without its final copy, for a caller that sends the
    buffer on (a graphsync frame of blocks is megabytes: every copy counts).
    Raises as :func:`encode` does; on error ``out`` may hold a partial
    encoding.
    """
    try:
        _encode(value, out, 0)
    except UnicodeEncodeError as exc:
        raise DagCborError(f"text is not encodable as UTF-8: {exc}") from None
    except RecursionError:  # only reachable with a tiny interpreter stack limit
        raise DagCborError("value nested too deeply") from None


# -- decoding: fast path ---------------------------------------------------------

_loads = cbor2.loads


def _refuse_tag(value: Any, immutable: bool) -> Any:
    raise DagCborError("tag not allowed")


# cbor2 decodes these tags itself (datetimes, bignums, sets, ...). Routing them
# to a refusal stops it from doing any work on them; correctness does not
# depend on this list (the byte comparison would refuse them anyway).
_REFUSED_TAGS = {
    t: _refuse_tag
    for t in (0, 1, 2, 3, 4, 5, 25, 28, 29, 30, 35, 36, 37, 52, 54, 100, 256,
              258, 260, 261, 1004, 43000, 55799)
}


def _link_hook(tag: Any, immutable: bool) -> CID:
    if tag.tag != CID_TAG:
        raise DagCborError(f"tag {tag.tag} is not allowed")
    raw = tag.value
    if type(raw) is not bytes or raw[:1] != b"\x00":
        raise DagCborError("bad link")
    return CID.from_bytes(raw[1:])


def _decode_fast(data: bytes | bytearray | memoryview) -> Any:
    """cbor2 decode + canonical check by re-encoding. May raise anything;
    :func:`decode` turns every failure into a run of the reference decoder."""
    value = _loads(
        data,
        tag_hook=_link_hook,
        semantic_decoders=_REFUSED_TAGS,
        allow_indefinite=False,
        # cbor2 allows max_depth + 1 nested containers; MAX_DEPTH - 1 keeps it
        # strictly inside what the reference decoder accepts.
        max_depth=MAX_DEPTH - 1,
    )
    out = _Holes()
    _encode(value, out, 0)  # any failure: the reference decoder decides
    if not _same(out, data):
        raise DagCborError("not canonical")
    return value


#: Byte strings at least this long are not copied into a :class:`_Holes`
#: re-encoding but compared where they sit (a graphsync frame's blocks).
_HOLE_MIN = 4096


class _Holes(bytearray):
    """A re-encoding for the canonical check with holes: each byte string
    of :data:`_HOLE_MIN` bytes or more is left out, its place and value noted
    in ``holes``. Copying a megabyte block into the re-encoding and comparing
    it costs more than all the rest of decoding; comparing it in place with
    ``startswith`` reads it once and copies nothing."""

    __slots__ = ("holes",)

    def __init__(self) -> None:
        super().__init__()
        self.holes: list[tuple[int, bytes]] = []


def _same(out: _Holes, data: bytes | bytearray | memoryview) -> bool:
    """Whether ``out`` with its holes filled in equals ``data``."""
    if not out.holes:
        return out == data
    if type(data) is memoryview:
        data = bytes(data)
    mine = memoryview(out)
    pos = at = 0  # pos in data, at in out
    for hole, value in out.holes:
        if not data.startswith(mine[at:hole], pos):
            return False
        pos += hole - at
        if not data.startswith(value, pos):
            return False
        pos += len(value)
        at = hole
    return data.startswith(mine[at:], pos) and pos + len(out) - at == len(data)


# -- decoding: reference ---------------------------------------------------------


class _Decoder:
    """The pure-Python reference decoder: slow, precise error messages."""

    __slots__ = ("data", "pos", "end", "sorted_keys")

    def __init__(self, data: bytes | bytearray | memoryview, sorted_keys: bool) -> None:
        self.data = bytes(data)
        self.pos = 0
        self.end = len(self.data)
        self.sorted_keys = sorted_keys

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
                key = kraw.decode("utf-8", "surrogateescape")
                if self.sorted_keys:
                    if prev is not None:
                        if kraw == prev:
                            raise self.fail(f"duplicate map key {kraw!r}")
                        if (len(kraw), kraw) < (len(prev), prev):
                            raise self.fail("map keys not in canonical order")
                    prev = kraw
                elif key in out:
                    raise self.fail(f"duplicate map key {kraw!r}")
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
            except Exception as exc:
                raise self.fail(f"invalid CID in link: {exc}") from None
        raise self.fail(f"unexpected major type {major}")  # pragma: no cover

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
            (f,) = _unpack_f64(self.take(8))
            if not math.isfinite(f):
                raise self.fail("NaN and infinities are not allowed")
            return f
        if b in (0xF9, 0xFA):
            raise self.fail("floats must be 64-bit")
        if b == 0xF7:
            raise self.fail("undefined is not allowed")
        if b == 0xFF:
            raise self.fail("unexpected break")
        raise self.fail(f"simple value 0x{b:02x} is not allowed")


def _decode_reference(data: bytes | bytearray | memoryview, sorted_keys: bool = True) -> Any:
    dec = _Decoder(data, sorted_keys)
    value = dec.value(0)
    if dec.pos != dec.end:
        raise dec.fail(f"{dec.end - dec.pos} trailing bytes")
    return value


def decode(data: bytes | bytearray | memoryview, *, sorted_keys: bool = True) -> Any:
    """Decode exactly one canonical DAG-CBOR value; raise :class:`DagCborError`.

    ``sorted_keys=False`` accepts map keys in any order (older go-data-transfer
    peers wrote struct-order maps with cbor-gen); duplicate keys and every
    other non-canonical form are still refused. Malformed input of any kind
    raises :class:`DagCborError` and nothing else; a ``data`` that is not
    bytes-like is a :class:`TypeError`.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"DAG-CBOR data must be bytes-like, not {type(data).__name__}")
    try:
        return _decode_fast(data)
    except Exception:  # noqa: BLE001 - the reference decoder gives the verdict
        pass
    try:
        return _decode_reference(data, sorted_keys)
    except DagCborError:
        raise
    except RecursionError:
        raise DagCborError("nesting too deep for the interpreter stack") from None
    except Exception as exc:  # defensive: a bug must still surface as a codec error
        raise DagCborError(f"malformed DAG-CBOR: {exc!r}") from exc
