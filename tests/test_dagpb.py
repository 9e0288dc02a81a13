"""DAG-PB codec and the protobuf wire helpers under it."""

from __future__ import annotations

from pathlib import Path

import pytest
from _fixtures import fixture_files
from hypothesis import given
from hypothesis import strategies as st

from datatransfer.ipld import dagjson, dagpb
from datatransfer.ipld import protobuf as pb
from datatransfer.ipld.cid import CID, DAG_PB, RAW
from datatransfer.ipld.errors import CodecError

HASH = CID.parse("bafkqabiaaebagba")  # identity CID used by the fixtures
V0 = CID.parse("QmWDtUQj38YLW8v3q4A6LwPn4vYKEbuKWpgSm6bjKW6Xfe")


FIXTURE_FILES = fixture_files("codec/*/*.dag-pb")


def test_fixtures_found():
    assert len(FIXTURE_FILES) >= 17


@pytest.mark.parametrize("path", FIXTURE_FILES, ids=lambda p: p.parent.name)
def test_fixture_roundtrip(path: Path):
    data = path.read_bytes()
    node = dagpb.decode(data)
    assert dagpb.encode(node) == data
    cid = CID.of(data, codec=DAG_PB)
    assert str(cid) == path.name.removesuffix(".dag-pb")
    # The same value in the fixture's DAG-JSON form.
    (json_file,) = path.parent.glob("*.dag-json")
    assert node == dagjson.decode(json_file.read_bytes())


def test_data_model_shape():
    node = dagpb.decode(b"")
    assert node == {"Links": []}
    node = dagpb.decode(bytes.fromhex("0a00"))
    assert node == {"Links": [], "Data": b""}
    link = dagpb.decode(bytes.fromhex("120d0a090155000500010203041200"))
    assert link == {"Links": [{"Hash": HASH, "Name": ""}]}


def test_encode_sorts_links_by_name_stably():
    a1 = {"Hash": HASH, "Name": "a", "Tsize": 1}
    a2 = {"Hash": HASH, "Name": "a", "Tsize": 2}
    unnamed = {"Hash": HASH}
    b = {"Hash": HASH, "Name": "b"}
    ab = {"Hash": HASH, "Name": "ab"}
    out = dagpb.decode(dagpb.encode({"Links": [b, a1, ab, unnamed, a2]}))
    assert out["Links"] == [unnamed, a1, a2, ab, b]


def test_encode_sorts_by_utf8_bytes():
    names = ["\u00e9", "z", "Z", "\U0001f600", "a"]
    links = [{"Hash": HASH, "Name": n} for n in names]
    out = dagpb.decode(dagpb.encode({"Links": links}))
    assert [x["Name"] for x in out["Links"]] == sorted(names, key=lambda n: n.encode())


def test_encode_fixture_from_unsorted_links(fixtures_dir):
    folder = fixtures_dir / "codec" / "dagpb_4namedlinks+data"
    (path,) = folder.glob("*.dag-pb")
    node = dagpb.decode(path.read_bytes())
    shuffled = {"Data": node["Data"], "Links": list(reversed(node["Links"]))}
    assert dagpb.encode(shuffled) == path.read_bytes()


def test_encode_defaults_and_links_helper():
    assert dagpb.encode({}) == b""
    assert dagpb.encode({"Links": []}) == b""
    assert dagpb.encode({"Data": memoryview(b"xy")}) == b"\x0a\x02xy"
    data = dagpb.encode({"Links": [{"Hash": V0}, {"Hash": HASH, "Name": "n"}]})
    assert dagpb.links(data) == [V0, HASH]


def test_decode_accepts_unsorted_links():
    z = dagpb.encode_link(HASH, "z")
    a = dagpb.encode_link(HASH, "a")
    node = dagpb.decode(z + a)
    assert [x["Name"] for x in node["Links"]] == ["z", "a"]


def _link(body: bytes) -> bytes:
    return b"\x12" + pb.encode_varint(len(body)) + body


HASH_FIELD = b"\x0a" + pb.encode_varint(len(HASH.buffer)) + HASH.buffer


@pytest.mark.parametrize(
    "data, match",
    [
        (b"\x0a\x00" + _link(HASH_FIELD), "Links after Data"),
        (b"\x0a\x00\x0a\x00", "duplicate PBNode Data"),
        (b"\x1a\x00", "unknown PBNode field 3"),
        (b"\x08\x01", "wire type"),  # Data as a varint
        (b"\x10\x01", "wire type"),  # Links as a varint
        (_link(HASH_FIELD + b"\x22\x00"), "unknown PBLink field 4"),
        (_link(b"\x12\x01a" + HASH_FIELD), "Name before Hash"),
        (_link(HASH_FIELD + b"\x18\x01\x12\x01a"), "out of order"),
        (_link(HASH_FIELD + HASH_FIELD), "duplicate PBLink field 1"),
        (_link(HASH_FIELD + b"\x18\x01\x18\x01"), "duplicate PBLink field 3"),
        (_link(b"\x12\x01a"), "Name before Hash"),
        (_link(b"\x18\x01"), "Tsize before Hash"),
        (_link(b""), "without Hash"),
        (_link(b"\x0a\x03\x01\x55\x00"), "not a CID"),
        (_link(b"\x0a\x00"), "not a CID"),
        (_link(HASH_FIELD + b"\x12\x02\xc3\x28"), "UTF-8"),
        (_link(HASH_FIELD + b"\x10\x01"), "wire type"),  # Name as a varint
        (_link(HASH_FIELD + b"\x1a\x00"), "wire type"),  # Tsize as bytes
        (_link(HASH_FIELD + b"\x18" + pb.encode_varint(1 << 63)), "exceeds"),
        (_link(HASH_FIELD + b"\x18\x80\x00"), "non-minimal"),
        (b"\x0a\x05abc", "truncated"),
        (b"\x0a", "truncated"),
        (b"\x12\x80", "truncated"),
        (b"\x0b", "wire type 3"),
        (b"\x0c", "wire type 4"),
        (b"\x0e", "wire type 6"),
        (b"\x0f", "wire type 7"),
        (b"\x02\x00", "field number 0"),
        (b"\x0d\x00\x00\x00\x00", "wire type"),  # Data as fixed32
        (b"\xff" * 11, "varint"),
    ],
)
def test_decode_rejects(data: bytes, match: str):
    with pytest.raises(dagpb.DagPbError, match=match):
        dagpb.decode(data)


def test_error_types():
    assert issubclass(dagpb.DagPbError, CodecError)
    assert issubclass(pb.ProtobufError, CodecError)
    assert issubclass(dagpb.DagPbError, ValueError)


@pytest.mark.parametrize(
    "node, match",
    [
        ([], "must be a map"),
        ({"Links": [], "Extra": 1}, "unknown node field"),
        ({"Links": {}}, "must be a list"),
        ({"Links": ["x"]}, "link must be a map"),
        ({"Links": [{"Hash": HASH, "Size": 1}]}, "unknown link field"),
        ({"Links": [{"Name": "a"}]}, "Hash must be a CID"),
        ({"Links": [{"Hash": bytes(HASH)}]}, "Hash must be a CID"),
        ({"Links": [{"Hash": HASH, "Name": 1}]}, "Name must be a string"),
        ({"Links": [{"Hash": HASH, "Name": None}]}, "Name must be a string"),
        ({"Links": [{"Hash": HASH, "Name": "\ud800"}]}, "Unicode"),
        ({"Links": [{"Hash": HASH, "Tsize": -1}]}, "Tsize"),
        ({"Links": [{"Hash": HASH, "Tsize": 1 << 63}]}, "Tsize"),
        ({"Links": [{"Hash": HASH, "Tsize": True}]}, "Tsize"),
        ({"Links": [{"Hash": HASH, "Tsize": None}]}, "Tsize"),
        ({"Links": [{"Hash": HASH, "Tsize": 1.0}]}, "Tsize"),
        ({"Data": "text"}, "Data must be bytes"),
    ],
)
def test_encode_rejects(node, match: str):
    with pytest.raises(dagpb.DagPbError, match=match):
        dagpb.encode(node)


# -- property tests -------------------------------------------------------------------

cids = st.builds(
    lambda data, v0, codec: CID.of(data, codec=DAG_PB, version=0) if v0 else CID.of(data, codec),
    st.binary(max_size=8),
    st.booleans(),
    st.sampled_from([RAW, DAG_PB, 0x71]),
)
links = st.fixed_dictionaries(
    {"Hash": cids},
    optional={"Name": st.text(max_size=12), "Tsize": st.integers(0, (1 << 63) - 1)},
)
nodes = st.fixed_dictionaries(
    {"Links": st.lists(links, max_size=6)}, optional={"Data": st.binary(max_size=40)}
)


def _sorted(node):
    out = dict(node)
    out["Links"] = sorted(node["Links"], key=lambda link: link.get("Name", "").encode())
    return out


@given(nodes)
def test_roundtrip_property(node):
    data = dagpb.encode(node)
    back = dagpb.decode(data)
    assert back == _sorted(node)
    assert dagpb.encode(back) == data


@given(st.binary(max_size=64))
def test_decode_arbitrary_bytes(data):
    try:
        node = dagpb.decode(data)
    except dagpb.DagPbError:
        return
    names = [link.get("Name", "").encode() for link in node["Links"]]
    if names == sorted(names):
        assert dagpb.encode(node) == data


# -- protobuf wire helpers -------------------------------------------------------------


@pytest.mark.parametrize(
    "value, encoded",
    [
        (0, b"\x00"),
        (1, b"\x01"),
        (127, b"\x7f"),
        (128, b"\x80\x01"),
        (300, b"\xac\x02"),
        ((1 << 64) - 1, b"\xff" * 9 + b"\x01"),
        (-1, b"\xff" * 9 + b"\x01"),
        (-(1 << 63), b"\x80" * 9 + b"\x01"),
    ],
)
def test_varint(value: int, encoded: bytes):
    assert pb.encode_varint(value) == encoded
    decoded, end = pb.decode_varint(encoded)
    assert end == len(encoded)
    assert pb.to_int64(decoded) == pb.to_int64(value % (1 << 64))


@pytest.mark.parametrize(
    "data, match",
    [
        (b"", "truncated"),
        (b"\x80", "truncated"),
        (b"\x80\x00", "non-minimal"),
        (b"\xff" * 9 + b"\x02", "64 bits"),
        (b"\xff" * 10 + b"\x01", "longer than 10"),
    ],
)
def test_varint_rejects(data: bytes, match: str):
    with pytest.raises(pb.ProtobufError, match=match):
        pb.decode_varint(data)


@pytest.mark.parametrize("value", [1 << 64, -(1 << 63) - 1])
def test_varint_range(value: int):
    with pytest.raises(pb.ProtobufError):
        pb.encode_varint(value)


def test_writer_and_iter_fields():
    w = pb.Writer().varint(1, 5).bytes(2, b"ab").string(3, "\u00e9").fixed32(4, 7).fixed64(5, 9)
    w.raw(b"\x30\x01")
    data = w.getvalue()
    assert len(w) == len(data)
    fields = [
        (n, t, bytes(v) if isinstance(v, memoryview) else v) for n, t, v in pb.iter_fields(data)
    ]
    assert fields == [
        (1, pb.VARINT, 5),
        (2, pb.LEN, b"ab"),
        (3, pb.LEN, "\u00e9".encode()),
        (4, pb.I32, 7),
        (5, pb.I64, 9),
        (6, pb.VARINT, 1),
    ]
    assert pb.decode_packed_varints(b"\x01\xac\x02") == [1, 300]
    with pytest.raises(pb.ProtobufError, match="truncated 32-bit"):
        list(pb.iter_fields(b"\x25\x00"))
    with pytest.raises(pb.ProtobufError, match="truncated 64-bit"):
        list(pb.iter_fields(b"\x29\x00"))
    with pytest.raises(pb.ProtobufError, match="invalid field number"):
        pb.key(0, pb.VARINT)
    with pytest.raises(pb.ProtobufError, match="out of range"):
        pb.Writer().fixed32(1, 1 << 32)
