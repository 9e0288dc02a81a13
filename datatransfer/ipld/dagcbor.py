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
* **Decoding** first walks the input's heads (:func:`scan`) without building
  anything: every canonical-form rule (shortest heads, definite lengths, key
  order, 64-bit floats, only tag 42, no trailing bytes) is checked there, with
  a byte offset in the error, and so are the limits on nesting and on the
  number of items, so hostile input is refused at the cost of reading its
  heads, before any value exists. cbor2's C decoder then builds the value
  (links via a tag hook, every other tag refused).
* When cbor2 refuses what the scan accepted (text that is not valid UTF-8),
  a pure-Python reference decoder gives the verdict. The tests check that
  the fast path never accepts what the reference refuses, on random and
  mutated input.
* An encoding can also be written and read as pieces
  (:func:`encode_segments`, :func:`decode_segments`): each byte string of
  4 KiB or more is a piece of its own, never copied, so a graphsync frame of
  megabyte blocks crosses the in-memory network without a copy of its
  blocks; every head is still scanned and the verdict is :func:`decode`'s.

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


def _decode_fast(
    data: bytes | bytearray | memoryview, sorted_keys: bool = True, max_items: int | None = None
) -> Any:
    """:func:`scan` (canonical form and limits), then cbor2's C decoder builds
    the value. Raises :class:`DagCborError` from the scan; whatever cbor2
    raises (text that is not UTF-8) sends :func:`decode` to the reference
    decoder."""
    scan(data, sorted_keys=sorted_keys, max_items=max_items)
    return _loads(
        data,
        tag_hook=_link_hook,
        semantic_decoders=_REFUSED_TAGS,
        allow_indefinite=False,
        # the scan refused anything deeper; cbor2 counts one level more
        max_depth=MAX_DEPTH,
    )


#: Byte strings at least this long are not copied into a :class:`_Holes`
#: encoding but handed out as pieces of their own (see :func:`encode_segments`).
_HOLE_MIN = 4096


class _Holes(bytearray):
    """An encoding with holes: each byte string of :data:`_HOLE_MIN` bytes
    or more is left out, its place and value noted in ``holes``, so a sender
    can write a frame of megabyte blocks without copying them."""

    __slots__ = ("holes",)

    def __init__(self) -> None:
        super().__init__()
        self.holes: list[tuple[int, bytes]] = []


# -- the canonical-form scan -----------------------------------------------------

_INT_WIDTH = {24: 1, 25: 2, 26: 4, 27: 8}
_INT_MIN = {24: 24, 25: 0x100, 26: 0x10000, 27: 0x100000000}


def _long_head(data: bytes, pos: int, end: int, info: int) -> tuple[int, int]:
    """The argument of a head whose additional info is ``info`` (>= 24) at
    ``pos``, and the position after it; refuses non-minimal and reserved heads."""
    width = _INT_WIDTH.get(info)
    if width is None:
        if info == 31:
            raise DagCborError(f"indefinite-length item at byte {pos}")
        raise DagCborError(f"reserved additional info {info} at byte {pos}")
    stop = pos + 1 + width
    if stop > end:
        raise DagCborError(f"truncated: need {width} bytes at byte {pos + 1}")
    n = int.from_bytes(data[pos + 1 : stop], "big")
    if n < _INT_MIN[info]:
        raise DagCborError(f"non-minimal integer head at byte {pos}")
    return n, stop


def scan(
    data: bytes | bytearray | memoryview,
    *,
    sorted_keys: bool = True,
    max_items: int | None = None,
    max_depth: int = MAX_DEPTH,
) -> None:
    """Check that ``data`` is exactly one canonical DAG-CBOR value, without
    building it; raise :class:`DagCborError` naming the rule and byte offset.

    It walks the heads only (a byte or text string costs one step whatever
    its length), so its cost is the number of items, and it stops as soon as
    a limit is passed: ``max_items`` (list items plus map keys and values,
    counted when a container's head is read) and ``max_depth`` (containers
    around a value). That bounds what a hostile peer's bytes can cost before
    any value exists: a 4 MiB frame made of millions of empty lists is
    refused after one head, not after building millions of lists.

    Checked here: minimal heads, definite lengths, map keys that are text in
    canonical order (length, then bytes) without duplicates (any order, no
    duplicates, with ``sorted_keys=False``), only tag 42 around a byte string
    starting with 0x00, only false/true/null and finite 64-bit floats, no
    trailing bytes. Not checked: UTF-8 of text and the CID inside a link,
    which the value's decoder checks as it builds them.
    """
    _scan(data, sorted_keys, max_items, max_depth, None)


def _scan(
    data: bytes | bytearray | memoryview,
    sorted_keys: bool,
    max_items: int | None,
    max_depth: int,
    holes: dict[int, int] | None,
) -> list[int]:
    """:func:`scan`; with ``holes`` (offset in ``data`` -> length), ``data``
    is an encoding with the contents of some byte strings left out (see
    :func:`decode_segments`): a byte string whose contents start at such an
    offset must be exactly that long, and takes no bytes of ``data``. Returns
    the offsets of those byte strings' heads, one per hole, in order; raises
    :class:`DagCborError` if a hole is not exactly a byte string's contents."""
    if type(data) is not bytes:
        data = bytes(data)
    matched: list[int] = []
    end = len(data)
    budget = end if max_items is None else max_items
    pos = 0
    # Open containers, innermost last: items left to read; for maps (which
    # count keys and values: an even count left means a key comes next) the
    # previous key (ordered) or the set of keys so far (unordered).
    left = [1]
    is_map = [False]
    keys: list[Any] = [None]
    while True:
        n_left = left[-1]
        if n_left == 0:
            left.pop()
            is_map.pop()
            keys.pop()
            if not left:
                break
            continue
        left[-1] = n_left - 1
        key_next = is_map[-1] and not n_left & 1
        if pos >= end:
            raise DagCborError(f"truncated: unexpected end of input at byte {pos}")
        b = data[pos]
        major = b >> 5
        if major == 7:
            if key_next:
                raise DagCborError(f"map key is not a string at byte {pos}")
            if b in (0xF4, 0xF5, 0xF6):
                pos += 1
            elif b == 0xFB:
                if pos + 9 > end:
                    raise DagCborError(f"truncated: need 8 bytes at byte {pos + 1}")
                if not math.isfinite(_unpack_f64(data[pos + 1 : pos + 9])[0]):
                    raise DagCborError(f"NaN and infinities are not allowed at byte {pos}")
                pos += 9
            elif b in (0xF9, 0xFA):
                raise DagCborError(f"floats must be 64-bit at byte {pos}")
            elif b == 0xFF:
                raise DagCborError(f"unexpected break at byte {pos}")
            elif b == 0xF7:
                raise DagCborError(f"undefined is not allowed at byte {pos}")
            else:
                raise DagCborError(f"simple value 0x{b:02x} is not allowed at byte {pos}")
            continue
        info = b & 0x1F
        if info < 24:
            n = info
            start = pos + 1
        else:
            n, start = _long_head(data, pos, end, info)
        if key_next and major != 3:
            raise DagCborError(f"map key is not a string at byte {pos}")
        if major <= 1:
            pos = start
            continue
        if major <= 3:
            if holes is not None and start in holes:
                if major != 2 or holes[start] != n:
                    raise DagCborError(f"a piece is not the contents of the item at byte {pos}")
                matched.append(pos)
                pos = start
                continue
            stop = start + n
            if stop > end:
                raise DagCborError(f"truncated: need {n} bytes at byte {start}")
            if key_next:
                key = data[start:stop]
                seen = keys[-1]
                if type(seen) is set:
                    if key in seen:
                        raise DagCborError(f"duplicate map key {key!r} at byte {pos}")
                    seen.add(key)
                else:
                    if seen is not None and (len(key), key) <= (len(seen), seen):
                        if key == seen:
                            raise DagCborError(f"duplicate map key {key!r} at byte {pos}")
                        raise DagCborError(f"map keys not in canonical order at byte {pos}")
                    keys[-1] = key
            pos = stop
            continue
        if major == 6:
            if n != CID_TAG:
                raise DagCborError(f"tag {n} is not allowed (only 42 for links) at byte {pos}")
            if start >= end:
                raise DagCborError(f"truncated: unexpected end of input at byte {start}")
            inner = data[start]
            if inner >> 5 != 2:
                raise DagCborError(f"tag 42 must wrap a byte string at byte {start}")
            if inner & 0x1F < 24:
                n, body = inner & 0x1F, start + 1
            else:
                n, body = _long_head(data, start, end, inner & 0x1F)
            stop = body + n
            if stop > end:
                raise DagCborError(f"truncated: need {n} bytes at byte {body}")
            if n == 0 or data[body] != 0:
                raise DagCborError(
                    f"link bytes must start with the 0x00 multibase prefix at byte {body}")
            pos = stop
            continue
        # a list (4) or a map (5)
        pos = start
        if n == 0:
            continue
        items = n if major == 4 else 2 * n
        if items > end - pos:
            raise DagCborError(
                f"{'array' if major == 4 else 'map'} longer than the input at byte {start - 1}")
        budget -= items
        if budget < 0:
            raise DagCborError(f"more than {max_items} items (at byte {start - 1})")
        if len(left) > max_depth:
            raise DagCborError(f"nesting deeper than {max_depth} at byte {start - 1}")
        left.append(items)
        if major == 4:
            is_map.append(False)
            keys.append(None)
        else:
            is_map.append(True)
            keys.append(None if sorted_keys else set())
    if pos != end:
        raise DagCborError(f"{end - pos} trailing bytes at byte {pos}")
    if holes is not None and len(matched) != len(holes):
        raise DagCborError("a piece is not the contents of a byte string")
    return matched


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


def decode(
    data: bytes | bytearray | memoryview,
    *,
    sorted_keys: bool = True,
    max_items: int | None = None,
) -> Any:
    """Decode exactly one canonical DAG-CBOR value; raise :class:`DagCborError`.

    ``sorted_keys=False`` accepts map keys in any order (older go-data-transfer
    peers wrote struct-order maps with cbor-gen); duplicate keys and every
    other non-canonical form are still refused. ``max_items`` bounds the
    list items plus map keys and values of the whole value (see
    :func:`scan`: input past it is refused before any value is built).
    Malformed input of any kind raises :class:`DagCborError` and nothing
    else; a ``data`` that is not bytes-like is a :class:`TypeError`.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"DAG-CBOR data must be bytes-like, not {type(data).__name__}")
    try:
        return _decode_fast(data, sorted_keys, max_items)
    except DagCborError:
        raise
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


#: The tag that stands for a left-out byte string while cbor2 builds a value
#: from an encoding with holes (:func:`decode_segments`); real input carrying
#: it was refused by the scan (only tag 42 is DAG-CBOR).
_HOLE_TAG = 6


def decode_segments(
    pieces: list[bytes],
    *,
    sorted_keys: bool = True,
    max_items: int | None = None,
) -> Any:
    """:func:`decode` of ``b"".join(pieces)``, with the same result and the
    same refusals, except that a byte string whose contents are exactly one
    whole piece of at least 4 KiB (as :func:`encode_segments` leaves a
    block's data) comes out as that very piece, not a copy: a receiver that
    is handed an encoding as pieces (the in-memory network) checks every
    head of it without copying megabytes of blocks.

    Any doubt (a large piece that is not exactly a byte string's contents,
    text that is not UTF-8, any refusal) is settled by decoding the joined
    bytes, so the verdict is always :func:`decode`'s.
    """
    holes: list[tuple[int, bytes]] = []
    small: list[bytes] = []
    at = 0
    for piece in pieces:
        if type(piece) is bytes and len(piece) >= _HOLE_MIN:
            holes.append((at, piece))
        else:
            small.append(piece)
            at += len(piece)
    if holes:
        try:
            return _decode_holes(b"".join(small), holes, sorted_keys, max_items)
        except Exception:  # noqa: BLE001 - the joined bytes give the verdict
            pass
    return decode(b"".join(pieces), sorted_keys=sorted_keys, max_items=max_items)


def _decode_holes(skeleton: bytes, holes: list[tuple[int, bytes]], sorted_keys: bool,
                  max_items: int | None) -> Any:
    """The value of ``skeleton`` with each hole's piece put back at its
    offset: scanned as it stands (every head, every limit), then built by
    cbor2 with each hole's head replaced by a tag standing for its piece."""
    lengths = {offset: len(piece) for offset, piece in holes}
    if len(lengths) != len(holes):
        raise DagCborError("two pieces at one place")
    heads = _scan(skeleton, sorted_keys, max_items, MAX_DEPTH, lengths)
    parts: list[bytes] = []
    at = 0
    for index, (head, (offset, _)) in enumerate(zip(heads, holes, strict=True)):
        parts.append(skeleton[at:head])
        parts.append(_head(0xC0, _HOLE_TAG) + _head(0, index))
        at = offset
    parts.append(skeleton[at:])
    data = [piece for _, piece in holes]
    return _loads(
        b"".join(parts),
        tag_hook=_link_hook,
        semantic_decoders={**_REFUSED_TAGS, _HOLE_TAG: lambda index, immutable: data[index]},
        allow_indefinite=False,
        max_depth=MAX_DEPTH,
    )
