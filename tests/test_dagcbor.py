"""DAG-CBOR: byte-identical to the ``dag-cbor`` package, the IPLD codec
fixtures, one rejection case per canonical-form rule, and robustness of the
decoder (only :class:`DagCborError`, whatever the input; the cbor2 fast path
never accepts what the reference decoder refuses)."""

from __future__ import annotations

import enum
import math
from collections import OrderedDict
from typing import Any

import dag_cbor
import pytest
from _support import mutate_pieces
from hypothesis import assume, given
from hypothesis import strategies as st
from multiformats import CID as RefCID

from datatransfer.ipld import dagcbor
from datatransfer.ipld.cid import CID, DAG_CBOR, DAG_PB, RAW
from datatransfer.ipld.dagcbor import MAX_DEPTH, DagCborError, decode, encode
from datatransfer.ipld.errors import CodecError

# -- strategies ---------------------------------------------------------------------

texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=30)
ints = st.integers(min_value=-(2**64), max_value=2**64 - 1)
floats = st.floats(allow_nan=False, allow_infinity=False)
cids = st.one_of(
    st.builds(
        lambda data, codec: CID.of(data, codec=codec),
        st.binary(max_size=8),
        st.sampled_from([RAW, DAG_CBOR, DAG_PB, 0x0129, 0x300]),
    ),
    st.builds(lambda data: CID.of(data, codec=DAG_PB, version=0), st.binary(max_size=8)),
)
leaves = st.one_of(
    st.none(), st.booleans(), ints, floats, texts, st.binary(max_size=40), cids
)
values = st.recursive(
    leaves,
    lambda children: st.lists(children, max_size=6)
    | st.dictionaries(texts, children, max_size=6),
    max_leaves=40,
)


def to_reference(value: Any) -> Any:
    """Our data-model value in the ``dag-cbor`` package's terms."""
    if isinstance(value, CID):
        return RefCID.decode(value.buffer)
    if isinstance(value, list):
        return [to_reference(v) for v in value]
    if isinstance(value, dict):
        return {k: to_reference(v) for k, v in value.items()}
    return value


# -- encoder agrees with the reference package ---------------------------------------


@given(values)
def test_encode_matches_dag_cbor_package(value):
    assert encode(value) == dag_cbor.encode(to_reference(value))


@given(values)
def test_round_trip(value):
    data = encode(value)
    back = decode(data)
    assert back == value
    assert encode(back) == data


@given(values)
def test_fast_path_and_reference_decoder_agree_on_valid_input(value):
    data = encode(value)
    fast = dagcbor._decode_fast(data)
    ref = dagcbor._decode_reference(data)
    assert fast == ref == value
    assert encode(fast) == encode(ref) == data


def test_encodes_known_bytes():
    link = CID.parse("bafyreiderswtlrzk7lzmf6c4mdrrlkwuaxutqqupwsl2jyu5gu6jlubbe4")
    assert encode({"bb": 1, "a": [True, None, -1.5], "é": b"\x01", "c": link}).hex() == (
        "a4"
        "6161" "83f5f6fbbff8000000000000"
        "6163" "d82a5825" "00" "01711220"
        "648cad35c72afaf2c2f85c60e315aad405e938428fb497a4e29d353c95d02127"
        "626262" "01"
        "62c3a9" "4101"
    )
    assert encode(2**64 - 1).hex() == "1bffffffffffffffff"
    assert encode(-(2**64)).hex() == "3bffffffffffffffff"
    assert encode(0.0).hex() == "fb0000000000000000"
    assert encode(1.0).hex() == "fb3ff0000000000000"  # never shortened


# -- the IPLD codec fixtures ---------------------------------------------------------------


def test_codec_fixtures(fixtures_dir):
    files = sorted((fixtures_dir / "codec").glob("*/*.dag-cbor"))
    assert len(files) >= 100
    for path in files:
        data = path.read_bytes()
        value = decode(data)
        assert encode(value) == data, path.parent.name
        assert CID.of(data, codec=DAG_CBOR) == CID.parse(path.name.rsplit(".", 1)[0]), path.name


# -- one rejection per rule ----------------------------------------------------------------

LINK_RAW = CID.of(b"x", codec=DAG_CBOR).buffer

REJECT = {
    "unsorted keys (bytewise)": "a2616201616102",
    "unsorted keys (length first)": "a262616101616202",
    "duplicate keys": "a2616101616102",
    "non-string map key (int)": "a10102",
    "non-string map key (bytes)": "a1416102",
    "non-minimal int, 1 byte": "1817",
    "non-minimal int, 2 bytes": "1900ff",
    "non-minimal int, 4 bytes": "1a0000ffff",
    "non-minimal int, 8 bytes": "1b00000000ffffffff",
    "non-minimal negative int": "3800",
    "non-minimal string length": "780161",
    "non-minimal bytes length": "58020102",
    "non-minimal array length": "980101",
    "non-minimal map length": "b800",
    "non-minimal tag head": "d9002a" + "5825" + "00" + LINK_RAW.hex(),
    "indefinite array": "9f01ff",
    "indefinite map": "bf616101ff",
    "indefinite bytes": "5f4161ff",
    "indefinite text": "7f6161ff",
    "lone break": "ff",
    "16-bit float": "f93c00",
    "32-bit float": "fa3f800000",
    "NaN (64-bit)": "fb7ff8000000000000",
    "NaN (16-bit)": "f97e00",
    "+Inf": "fb7ff0000000000000",
    "-Inf": "fbfff0000000000000",
    "tag 1 (epoch time)": "c101",
    "tag 2 (bignum, small)": "c24101",
    "tag 2 (bignum, 65 bits)": "c249010000000000000000",
    "tag 258 (set)": "d90102820102",
    "tag 55799 (self-described)": "d9d9f701",
    "tag 43": "d82b4100",
    "tag 42 without 0x00 prefix": "d82a" + "5824" + LINK_RAW.hex(),
    "tag 42 with 0x01 prefix": "d82a" + "5825" + "01" + LINK_RAW.hex(),
    "tag 42 empty bytes": "d82a40",
    "tag 42 wrapping text": "d82a6100",
    "tag 42 with garbage CID": "d82a43000102",
    "undefined": "f7",
    "simple value 16": "f0",
    "simple value 32": "f820",
    "reserved additional info": "1c",
    "trailing bytes": "0100",
    "two values": "f6f6",
    "empty input": "",
}


@pytest.mark.parametrize("hexdata", list(REJECT.values()), ids=list(REJECT))
def test_rejects_non_canonical(hexdata):
    data = bytes.fromhex(hexdata)
    with pytest.raises(DagCborError):
        decode(data)


def test_error_is_precise():
    with pytest.raises(DagCborError, match="map keys not in canonical order at byte"):
        decode(bytes.fromhex("a2616201616102"))
    with pytest.raises(DagCborError, match="non-minimal"):
        decode(bytes.fromhex("1817"))
    with pytest.raises(DagCborError, match="64-bit"):
        decode(bytes.fromhex("f93c00"))
    with pytest.raises(DagCborError, match="tag 1 is not allowed"):
        decode(bytes.fromhex("c101"))
    with pytest.raises(DagCborError, match="1 trailing bytes"):
        decode(bytes.fromhex("0100"))
    assert issubclass(DagCborError, CodecError)


def test_unsorted_keys_allowed_on_request_but_duplicates_are_not():
    assert decode(bytes.fromhex("a2616201616102"), sorted_keys=False) == {"b": 1, "a": 2}
    with pytest.raises(DagCborError, match="duplicate"):
        decode(bytes.fromhex("a2616101616102"), sorted_keys=False)
    with pytest.raises(DagCborError, match="non-minimal"):
        decode(bytes.fromhex("a261620161611817"), sorted_keys=False)


def _rich() -> bytes:
    return encode(
        {
            "link": CID.of(b"rich", codec=DAG_CBOR),
            "list": [1, -300, 70000, 2**40, -(2**63), 1.25, "text", "ünï", b"\x00" * 30],
            "map": {"a": None, "b": True, "c": False, "long key " * 4: {}},
            "big": 2**64 - 1,
        }
    )


def test_truncated_at_every_offset():
    data = _rich()
    assert decode(data)
    for i in range(len(data)):
        with pytest.raises(DagCborError):
            decode(data[:i])


def _nested(depth: int, inner: Any) -> Any:
    value = inner
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("inner", [1, []], ids=["scalar", "empty list"])
def test_depth_limit(inner):
    inner_bytes = encode(inner)
    # a value inside MAX_DEPTH containers is fine, both ways
    ok = b"\x81" * MAX_DEPTH + inner_bytes
    assert decode(ok) == _nested(MAX_DEPTH, inner)
    assert dagcbor._decode_reference(ok) == _nested(MAX_DEPTH, inner)
    assert encode(_nested(MAX_DEPTH, inner)) == ok
    # one more level is refused by the decoder and the encoder
    deep = b"\x81" + ok
    with pytest.raises(DagCborError, match="nesting"):
        decode(deep)
    with pytest.raises(DagCborError, match="nesting"):
        encode(_nested(MAX_DEPTH + 1, inner))
    with pytest.raises(Exception):  # noqa: B017 - cbor2's own error; decode() wraps it
        dagcbor._decode_fast(deep)


def test_very_deep_input_and_value():
    with pytest.raises(DagCborError):
        decode(b"\x81" * 100_000)
    with pytest.raises(DagCborError):
        decode(b"\xa1\x61a" * 10_000 + b"\x01")
    with pytest.raises(DagCborError):
        encode(_nested(5000, 1))


def test_huge_declared_lengths_fail_fast():
    for hexdata in ("9b0000001000000000", "bb0000001000000000", "5b7f00000000000000", "7b00000010000000006162"):
        with pytest.raises(DagCborError):
            decode(bytes.fromhex(hexdata))


# -- text that is not UTF-8 (Go writes raw peer ids as text strings) ----------------------


def test_invalid_utf8_text_round_trips():
    peer = bytes.fromhex("0024080112206dcde155f1f900e157d25bb5c24b1a54d71ea35b78661ed9b1a8be3532c3d4f5")
    data = b"\x78\x26" + peer
    text = decode(data)
    assert isinstance(text, str)
    assert text.encode("utf-8", "surrogateescape") == peer
    assert encode(text) == data
    # also as a map key
    keyed = b"\xa1\x62\xff\xfe\x01"
    assert decode(keyed) == {"\udcff\udcfe": 1}
    assert encode(decode(keyed)) == keyed


def test_unencodable_text():
    for text in ("\ud800", "\udc41", "a\udfff"):
        with pytest.raises(DagCborError):
            encode(text)
        with pytest.raises(DagCborError):
            encode({text: 1})


# -- encoder strictness -----------------------------------------------------------------


class Colour(enum.IntEnum):
    RED = 3


class Name(str):
    pass


@pytest.mark.parametrize(
    "value",
    [
        math.nan,
        math.inf,
        -math.inf,
        2**64,
        -(2**64) - 1,
        {1: 2},
        {b"a": 1},
        {("a",): 1},
        {1, 2},
        frozenset(),
        object(),
        range(3),
        1j,
        [{"ok": [float("nan")]}],
    ],
    ids=lambda v: type(v).__name__,
)
def test_encode_refuses(value):
    with pytest.raises(DagCborError):
        encode(value)


def test_encode_accepts_subclasses_and_bytes_likes():
    assert encode(Colour.RED) == encode(3)
    assert encode(Name("x")) == encode("x")
    assert encode({Name("b"): 1, "a": 2}) == encode({"a": 2, "b": 1})
    assert encode(bytearray(b"ab")) == encode(b"ab")
    assert encode(memoryview(b"ab")) == encode(b"ab")
    assert encode(OrderedDict([("b", 1), ("a", 2)])) == encode({"a": 2, "b": 1})
    assert encode((1, 2)) == encode([1, 2])
    assert encode(True) == b"\xf5" and encode(1) == b"\x01"


def test_encode_refuses_keys_that_collide_as_bytes():
    # "é" and its surrogate-escaped UTF-8 bytes are two str keys, one CBOR key
    with pytest.raises(DagCborError, match="duplicate"):
        encode({"é": 1, "\udcc3\udca9": 2})


def test_decode_accepts_bytes_likes_and_refuses_str():
    data = encode({"a": [1, 2]})
    assert decode(bytearray(data)) == decode(memoryview(data)) == {"a": [1, 2]}
    with pytest.raises(TypeError):
        decode("a1616101")  # type: ignore[arg-type]


# -- robustness: random and mutated input ---------------------------------------------------


def _check_robust(data: bytes) -> None:
    try:
        value = decode(data)
    except DagCborError:
        pass
    else:
        assert encode(value) == data  # only canonical input is accepted
    # the fast path never accepts what the reference decoder refuses
    try:
        fast = dagcbor._decode_fast(data)
    except Exception:  # noqa: BLE001 - any failure there just means "ask the reference"
        return
    assert dagcbor._decode_reference(data) == fast


@given(st.binary(max_size=64))
def test_random_bytes_only_raise_dagcbor_error(data):
    _check_robust(data)


@given(st.lists(st.integers(min_value=0, max_value=255), min_size=1, max_size=12).map(bytes), st.integers(0, 7))
def test_random_heads_only_raise_dagcbor_error(prefix, major):
    # bias towards structurally interesting bytes: valid-looking heads first
    _check_robust(bytes([major << 5 | (prefix[0] & 0x1F)]) + prefix[1:])


@given(values, st.data())
def test_mutated_encodings_only_raise_dagcbor_error(value, data):
    encoded = bytearray(encode(value))
    assume(encoded)
    for _ in range(data.draw(st.integers(1, 3))):
        op = data.draw(st.sampled_from(["flip", "set", "insert", "delete"]))
        i = data.draw(st.integers(0, len(encoded) - 1)) if encoded else 0
        if op == "flip" and encoded:
            encoded[i] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "set" and encoded:
            encoded[i] = data.draw(st.integers(0, 255))
        elif op == "insert":
            encoded.insert(i, data.draw(st.integers(0, 255)))
        elif encoded:
            del encoded[i]
    _check_robust(bytes(encoded))


# -- decoding an encoding given as pieces ------------------------------------------------

#: Byte strings that encode_segments leaves whole (4 KiB and more).
big_strings = st.builds(lambda n, b: bytes([b]) * n, st.integers(4096, 4200), st.integers(0, 255))
values_with_big = st.recursive(
    leaves | big_strings,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(texts, children, max_size=4),
    max_leaves=12,
)
#: ... and at least one such string.
values_with_a_big = st.builds(
    lambda big, value, first: [big, value] if first else {"v": value, "big": big},
    big_strings, values_with_big, st.booleans(),
)


def _bytes_in(value: Any) -> list[bytes]:
    if isinstance(value, bytes):
        return [value]
    if isinstance(value, list):
        return [b for v in value for b in _bytes_in(v)]
    if isinstance(value, dict):
        return [b for v in value.values() for b in _bytes_in(v)]
    return []


@given(values_with_big)
def test_decode_segments_gives_large_strings_back_as_the_pieces(value):
    pieces = dagcbor.encode_segments(value)
    got = dagcbor.decode_segments(pieces)
    assert got == value
    large = [b for b in _bytes_in(got) if len(b) >= 4096]
    assert all(any(b is p for p in pieces) for b in large)
    assert len(pieces) == 2 * len(large) + 1  # each of them was a piece, none was copied


def _verdict(fn: Any, *args: Any, **kwargs: Any) -> tuple[str, Any]:
    try:
        return "value", fn(*args, **kwargs)
    except DagCborError as exc:
        return "refused", str(exc)


@given(values_with_a_big, st.data())
def test_decode_segments_has_the_verdict_of_decode_on_the_joined_bytes(value, data):
    """Pieces re-cut, merged or mutated (a large piece that no longer is a
    byte string's contents, heads broken around it): always decode's verdict."""
    pieces = mutate_pieces(dagcbor.encode_segments(value), data)
    joined = b"".join(pieces)
    sorted_keys = data.draw(st.booleans())
    max_items = data.draw(st.none() | st.integers(0, 30))
    assert _verdict(
        dagcbor.decode_segments, pieces, sorted_keys=sorted_keys, max_items=max_items,
    ) == _verdict(decode, joined, sorted_keys=sorted_keys, max_items=max_items)


def test_decode_segments_of_one_piece_or_none():
    assert dagcbor.decode_segments([encode({"a": 1})]) == {"a": 1}
    with pytest.raises(DagCborError):
        dagcbor.decode_segments([])
    big = b"\x01" * 5000
    # a large piece that is not a byte string's contents: decoded from the joined bytes
    text = encode("x" * 5000)
    assert dagcbor.decode_segments([text[:3], text[3:]]) == "x" * 5000
    got = dagcbor.decode_segments([encode(big)[:3], big])
    assert got == big and got is big
