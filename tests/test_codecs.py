"""Codecs against the IPLD codec fixtures, DAG-JSON strictness, and the
codec registry."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from typing import Any

import pytest
from _fixtures import IPLD, fixture_files
from hypothesis import given
from hypothesis import strategies as st

from datatransfer.ipld import codecs, dagcbor, dagjson, multihash, raw
from datatransfer.ipld.cid import CID, DAG_CBOR, DAG_JSON, DAG_PB, RAW
from datatransfer.ipld.dagjson import DagJsonError
from datatransfer.ipld.errors import CodecError, HashMismatch, UnknownCodec

HAVE_DAGPB = importlib.util.find_spec("datatransfer.ipld.dagpb") is not None
needs_dagpb = pytest.mark.skipif(not HAVE_DAGPB, reason="datatransfer.ipld.dagpb not written yet")

_CODEC_OF_EXT = {"dag-cbor": DAG_CBOR, "dag-json": DAG_JSON, "dag-pb": DAG_PB}


# Parametrisation happens at collection time, before fixtures exist, so the
# folder is taken from _fixtures too; test_fixtures_present checks it is the
# one conftest's ``fixtures_dir`` returns.
FIXTURES = IPLD


def _fixture_files(ext: str) -> list[Path]:
    return fixture_files(f"codec/*/*.{ext}")


def _id(path: Path) -> str:
    return path.parent.name


def same(a: Any, b: Any) -> bool:
    """Data-model equality that keeps kinds apart (1 vs 1.0 vs True) and
    compares floats bit for bit."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return math.copysign(1.0, a) == math.copysign(1.0, b) and a == b
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b


# -- fixtures ----------------------------------------------------------------------


def _check_fixture(path: Path, module: Any, codec: int) -> Any:
    data = path.read_bytes()
    cid = CID.parse(path.name.rsplit(".", 1)[0])
    assert cid.codec == codec
    assert cid.hash_code == multihash.SHA2_256
    value = module.decode(data)
    assert module.encode(value) == data
    assert CID.of(data, codec) == cid
    assert same(codecs.decode_block(cid, data, verify=True), value)
    assert same(codecs.decode(codec, data), value)
    return value


def test_fixtures_present(fixtures_dir):
    assert len(_fixture_files("dag-json")) >= 100
    assert len(_fixture_files("dag-cbor")) >= 100
    assert len(_fixture_files("dag-pb")) >= 10
    assert fixtures_dir.resolve() == FIXTURES.resolve()


@pytest.mark.parametrize("path", _fixture_files("dag-json"), ids=_id)
def test_dagjson_fixture(path):
    _check_fixture(path, dagjson, DAG_JSON)


@pytest.mark.parametrize("path", _fixture_files("dag-cbor"), ids=_id)
def test_dagcbor_fixture(path):
    _check_fixture(path, dagcbor, DAG_CBOR)


@needs_dagpb
@pytest.mark.parametrize("path", _fixture_files("dag-pb"), ids=_id)
def test_dagpb_fixture(path):
    from datatransfer.ipld import dagpb

    _check_fixture(path, dagpb, DAG_PB)


def _folders() -> list[Path]:
    return sorted({p.parent for p in _fixture_files("dag-json")})


@pytest.mark.parametrize("folder", _folders(), ids=lambda p: p.name)
def test_cross_codec_values_agree(folder):
    """One folder holds one value: its dag-json and dag-cbor forms decode to
    the same data-model value, and for dag-pb folders (whose json/cbor forms
    describe the pb node in the data model) so does the pb block."""
    (json_file,) = folder.glob("*.dag-json")
    (cbor_file,) = folder.glob("*.dag-cbor")
    from_json = dagjson.decode(json_file.read_bytes())
    from_cbor = dagcbor.decode(cbor_file.read_bytes())
    assert same(from_json, from_cbor)
    # each form re-encodes into the other codec byte-exactly
    assert dagjson.encode(from_cbor) == json_file.read_bytes()
    assert dagcbor.encode(from_json) == cbor_file.read_bytes()
    pb_files = list(folder.glob("*.dag-pb"))
    if pb_files and HAVE_DAGPB:
        from datatransfer.ipld import dagpb

        from_pb = dagpb.decode(pb_files[0].read_bytes())
        assert same(from_pb, from_json)
        assert dagpb.encode(from_json) == pb_files[0].read_bytes()


# -- DAG-JSON specifics -------------------------------------------------------------

LINK = CID.of(b"x", DAG_CBOR)


@pytest.mark.parametrize(
    "value, text",
    [
        (None, "null"),
        (True, "true"),
        (False, "false"),
        (0, "0"),
        (-1, "-1"),
        (2**64 - 1, "18446744073709551615"),
        (-(2**64), "-18446744073709551616"),
        (1.0, "1.0"),
        (-0.0, "-0.0"),
        (0.0, "0.0"),
        (0.5, "0.5"),
        (100.0, "100.0"),
        (1e20, "100000000000000000000.0"),
        (1e21, "1e+21"),
        (1.5e300, "1.5e+300"),
        (1e-6, "0.000001"),
        (1.5e-7, "1.5e-7"),
        (5e-324, "5e-324"),
        (8.940696716308594e-8, "8.940696716308594e-8"),
        ("", '""'),
        ('a"b\\c', '"a\\"b\\\\c"'),
        ("\n\t\r\b\f\x00\x1f\x7f", '"\\n\\t\\r\\b\\f\\u0000\\u001f\x7f"'),
        ("<&>/", '"<&>/"'),
        ("水𐅑", '"水𐅑"'),
        (b"", '{"/":{"bytes":""}}'),
        (b"\xa1", '{"/":{"bytes":"oQ"}}'),
        (b"\xff\xfe\xfd", '{"/":{"bytes":"//79"}}'),
        (LINK, '{"/":"' + str(LINK) + '"}'),
        ([], "[]"),
        ({}, "{}"),
        ([1, [2, {}]], "[1,[2,{}]]"),
        ({"b": 1, "a": 2, "aa": 3, "B": 4}, '{"B":4,"a":2,"aa":3,"b":1}'),
        ({"é": 1, "z": 2, "\U0001f600": 3, "\uffff": 4}, '{"z":2,"é":1,"\uffff":4,"\U0001f600":3}'),
        ({"/": 1}, '{"/":1}'),  # "/" holding neither a string nor a bytes map: ordinary
        ({"/": True, "bar": "baz"}, '{"/":true,"bar":"baz"}'),
        ({"/": {"abar": "baz", "bytes": "foo"}}, '{"/":{"abar":"baz","bytes":"foo"}}'),
        ({"/": LINK}, '{"/":{"/":"' + str(LINK) + '"}}'),
        ({"/": b"\x01"}, '{"/":{"/":{"bytes":"AQ"}}}'),
    ],
)
def test_dagjson_canonical_forms(value, text):
    data = text.encode("utf-8")
    assert dagjson.encode(value) == data
    assert same(dagjson.decode(data), value)


def test_dagjson_spec_example_0bar():
    """The spec calls {"0bar":"baz","/":"foo"} valid because a key sorts
    before "/", but in UTF-8 byte order "0" (0x30) sorts after "/" (0x2f): the
    map's first key is "/" holding a string, which is the reserved form."""
    with pytest.raises(DagJsonError):
        dagjson.encode({"0bar": "baz", "/": "foo"})
    with pytest.raises(DagJsonError):
        dagjson.decode(b'{"/":"foo","0bar":"baz"}')


def test_dagjson_spec_example_inner_bar():
    """Likewise the spec's {"/":{"bytes":"foo","bar":"baz"}} example: "bar"
    sorts before "bytes", so by the spec's own rule (the inner map's *first*
    key must be "bytes") it is an ordinary map, and is accepted as one."""
    value = {"/": {"bar": "baz", "bytes": "foo"}}
    data = b'{"/":{"bar":"baz","bytes":"foo"}}'
    assert dagjson.encode(value) == data
    assert dagjson.decode(data) == value


def test_dagjson_key_before_slash_is_ordinary():
    # "!" (0x21) sorts before "/" so the map is ordinary data.
    value = {"!": 1, "/": "foo"}
    data = b'{"!":1,"/":"foo"}'
    assert dagjson.encode(value) == data
    assert dagjson.decode(data) == value


@pytest.mark.parametrize(
    "value",
    [
        {"/": "foo"},  # would read back as a (bad) link
        {"/": str(LINK)},  # would read back as a link
        {"/": "foo", "bar": "baz"},
        {"/": {"bytes": "AQ"}},  # would read back as bytes
        {"/": {"bytes": "foo", "zz": "baz"}},
        {"/": {"bytes": "AQ"}, "bar": "baz"},
        float("nan"),
        float("inf"),
        -float("inf"),
        2**64,
        -(2**64) - 1,
        {1: "int key"},
        {b"k": "bytes key"},
        object(),
        {1.5},
        "\ud800",  # lone surrogate
        {"\udcff": 1},
    ],
    ids=repr,
)
def test_dagjson_encode_refuses(value):
    with pytest.raises(DagJsonError):
        dagjson.encode(value)


@pytest.mark.parametrize(
    "text",
    [
        # reserved-namespace rejections from the DAG-JSON spec
        '{"/":"foo","bar":"baz"}',
        '{"/":{"bytes":"foo","zz":"baz"}}',
        '{"/":{"bytes":"AQ"},"bar":"baz"}',
        '{"/":"foo"}',  # not a CID
        '{"/":"bafyfoo"}',
        '{"/":{"bytes":"A"}}',  # bad base64 length
        '{"/":{"bytes":"A*"}}',  # bad base64 character
        '{"/":{"bytes":"-_8"}}',  # url-safe alphabet
        # malformed JSON / not data model
        "",
        " ",
        "[",
        "[1,]",
        "{'a':1}",
        '{"a":1,"a":2}',  # duplicate key
        '{"a":1,"a":1}',
        "NaN",
        "Infinity",
        "-Infinity",
        "1e400",  # overflows to infinity
        "-1e400",
        "18446744073709551616",  # beyond 64 bits
        "-18446744073709551617",
        "undefined",
        '"\x01"',  # raw control character
        '"\\ud800"',  # lone surrogate escape
        '"\\udc00x"',
        "1 2",
        "[" * 300 + "]" * 300,  # too deep
    ],
)
def test_dagjson_decode_refuses(text):
    with pytest.raises(DagJsonError):
        dagjson.decode(text.encode("utf-8"))
    with pytest.raises(DagJsonError):
        dagjson.decode(text.encode("utf-8"), strict=False)


@pytest.mark.parametrize(
    "data",
    [
        b"\xff",  # not UTF-8
        b'"\xc3"',
        "\ufeff1".encode(),  # byte order mark
        "1".encode("utf-16"),
    ],
)
def test_dagjson_decode_refuses_bad_encoding(data):
    with pytest.raises(DagJsonError):
        dagjson.decode(data)


@pytest.mark.parametrize(
    "text, value",
    [
        (" 1", 1),
        ("1 ", 1),
        ("[1, 2]", [1, 2]),
        ('{"b":1,"a":2}', {"a": 2, "b": 1}),
        ('{ "a" : 1 }', {"a": 1}),
        ("-0", 0),
        ("1E3", 1000.0),
        ("1e3", 1000.0),
        ("1.50", 1.5),
        ("0.1e1", 1.0),
        ("1e-07", 1e-7),
        ("1e21", 1e21),
        ('"\\u0041"', "A"),
        ('"\\/"', "/"),
        ('"\\u00e9"', "é"),
        ('{"/":{"bytes":"oQ=="}}', b"\xa1"),
        ('{"/":{"bytes":"oR"}}', b"\xa1"),  # non-zero trailing bits
        ('{"/":"' + LINK.encode("base58btc") + '"}', LINK),
        ('{"/":"' + str(LINK).upper() + '"}', LINK),
        ('{"/":"' + str(LINK) + ' "}', LINK),
    ],
)
def test_dagjson_noncanonical_strict_vs_lenient(text, value):
    data = text.encode("utf-8")
    with pytest.raises(DagJsonError, match="not canonical"):
        dagjson.decode(data)
    assert same(dagjson.decode(data, strict=False), value)


def test_dagjson_decode_accepts_buffers():
    assert dagjson.decode(bytearray(b"[1]")) == [1]
    assert dagjson.decode(memoryview(b"[1]")) == [1]


def test_dagjson_error_types():
    assert issubclass(DagJsonError, CodecError)
    assert issubclass(DagJsonError, ValueError)


# -- property tests ------------------------------------------------------------------

_links = st.builds(
    CID.of,
    st.binary(max_size=16),
    st.sampled_from([RAW, DAG_CBOR, DAG_JSON, DAG_PB]),
    st.sampled_from([multihash.SHA2_256, multihash.SHA2_512, multihash.IDENTITY]),
) | st.builds(lambda d: CID.of(d, DAG_PB, version=0), st.binary(max_size=16))

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
    | st.binary()
    | _links
)
_keys = st.text().filter(lambda k: k != "/")
data_model = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(_keys, inner, max_size=5),
    max_leaves=25,
)


@given(data_model)
def test_dagjson_round_trip(value):
    data = dagjson.encode(value)
    back = dagjson.decode(data)
    assert same(back, value)
    assert dagjson.encode(back) == data
    # it is valid JSON that a plain parser reads to the same shape
    json.loads(data)


@given(data_model)
def test_dagjson_and_dagcbor_agree(value):
    via_cbor = dagcbor.decode(dagcbor.encode(value))
    via_json = dagjson.decode(dagjson.encode(value))
    assert same(via_cbor, via_json)


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_float_text_round_trips_bit_exactly(x):
    text = dagjson.format_float(x)
    assert float(text) == x and math.copysign(1, float(text)) == math.copysign(1, x)
    assert "." in text or "e" in text  # stays a float
    assert json.loads(text) == x
    assert same(dagjson.decode(text.encode()), x)


@given(st.binary(max_size=64))
def test_dagjson_random_bytes_never_crash(data):
    try:
        value = dagjson.decode(data)
    except DagJsonError:
        return
    assert dagjson.encode(value) == data


# -- raw and the registry -------------------------------------------------------------


def test_raw_codec():
    assert raw.CODE == RAW
    assert raw.encode(b"abc") == b"abc"
    assert raw.encode(bytearray(b"abc")) == b"abc"
    assert raw.decode(memoryview(b"abc")) == b"abc"
    with pytest.raises(CodecError):
        raw.encode("abc")
    with pytest.raises(CodecError):
        raw.encode(None)


def test_registry_builtins():
    for code in (RAW, DAG_CBOR, DAG_JSON):
        assert codecs.is_supported(code)
        assert code in codecs.codes()
    assert DAG_PB in codecs.codes()
    assert codecs.is_supported(DAG_PB) == HAVE_DAGPB
    value = {"a": [1, 2.5, b"x", LINK, None, True, "s"]}
    for code, module in ((DAG_CBOR, dagcbor), (DAG_JSON, dagjson)):
        data = codecs.encode(code, value)
        assert data == module.encode(value)
        assert same(codecs.decode(code, data), value)
        cid, block = codecs.encode_block(code, value)
        assert block == data and cid == CID.of(data, code)
        assert same(codecs.decode_block(cid, data), value)
    assert codecs.encode(RAW, b"zz") == b"zz"
    assert codecs.decode_block(CID.of(b"zz"), b"zz") == b"zz"


def test_registry_unknown_codec():
    for fn in (
        lambda: codecs.encode(0x300001, 1),
        lambda: codecs.decode(0x300001, b""),
        lambda: codecs.decode_block(CID.of(b"x", 0x300001), b"x"),
    ):
        with pytest.raises(UnknownCodec) as info:
            fn()
        assert info.value.code == 0x300001
    assert not codecs.is_supported(0x300001)


def test_decode_block_verify():
    cid = CID.of(b"[1]", DAG_JSON)
    assert codecs.decode_block(cid, b"[1]", verify=True) == [1]
    with pytest.raises(HashMismatch):
        codecs.decode_block(cid, b"[2]", verify=True)
    assert codecs.decode_block(cid, b"[2]") == [2]  # trusting caller


def test_registry_register():
    code = 0x300002
    codecs.register(code, lambda v: v.encode(), lambda d: bytes(d).decode())
    try:
        assert codecs.is_supported(code)
        assert codecs.encode(code, "hi") == b"hi"
        assert codecs.decode(code, b"hi") == "hi"
        assert codecs.decode_block(CID.of(b"hi", code), b"hi") == "hi"
        with pytest.raises(ValueError):
            codecs.register(code, str.encode, bytes.decode)
        with pytest.raises(ValueError):
            codecs.register(DAG_CBOR, str.encode, bytes.decode)
        codecs.register(code, lambda v: v.upper().encode(), bytes.decode, replace=True)
        assert codecs.encode(code, "hi") == b"HI"
    finally:
        codecs._codecs.pop(code, None)
    with pytest.raises(ValueError):
        codecs.register(-1, str.encode, bytes.decode)
