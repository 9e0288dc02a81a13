"""CARv1 reading and writing, and DAG export/import through CAR files."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from datatransfer.ipld import car, dagcbor, dagjson, dagpb, multihash
from datatransfer.ipld.blockstore import BlockNotFound, MemoryBlockstore
from datatransfer.ipld.car import (
    ALL_SELECTOR,
    CarError,
    CarReader,
    CarWriter,
    UnverifiableBlock,
    encode_header,
    export_car,
    import_car,
    read_car,
    walk_all,
    write_car,
)
from datatransfer.ipld.cid import CID, DAG_CBOR, DAG_PB
from datatransfer.ipld.errors import HashMismatch, IPLDError
from datatransfer.ipld.varint import encode_uvarint


@pytest.fixture(scope="module")
def basic(fixtures_dir: Path):
    folder = fixtures_dir / "car"
    description = dagjson.decode((folder / "carv1-basic.json").read_bytes(), strict=False)
    return (folder / "carv1-basic.car").read_bytes(), description


def _decode(cid: CID, data: bytes):
    if cid.codec == DAG_PB:
        return dagpb.decode(data)
    if cid.codec == DAG_CBOR:
        return dagcbor.decode(data)
    return data


def test_fixture_reads_back(basic):
    raw, description = basic
    reader = CarReader(io.BytesIO(raw))
    assert reader.roots == description["header"]["roots"]
    sections = list(reader.sections())
    assert len(sections) == len(description["blocks"])
    for section, expected in zip(sections, description["blocks"], strict=True):
        assert section.cid == expected["cid"]
        assert section.offset == expected["offset"]
        assert section.length == expected["length"]
        assert section.data_offset == expected["blockOffset"]
        assert len(section.data) == expected["blockLength"]
        assert section.data == raw[section.data_offset : section.data_offset + len(section.data)]
        assert _decode(section.cid, section.data) == expected["content"]
    # CIDv0 and CIDv1 blocks, raw, dag-pb and dag-cbor all appear.
    assert {s.cid.version for s in sections} == {0, 1}
    assert {s.cid.codec_name for s in sections} == {"raw", "dag-pb", "dag-cbor"}


def test_fixture_rewrites_byte_exactly(basic):
    raw, description = basic
    roots, blocks = read_car(io.BytesIO(raw))
    out = io.BytesIO()
    assert write_car(out, roots, blocks) == len(description["blocks"])
    assert out.getvalue() == raw


def test_fixture_from_path_and_short_reads(basic, fixtures_dir):
    raw, _ = basic
    with CarReader(fixtures_dir / "car" / "carv1-basic.car") as reader:
        from_path = list(reader)

    class Trickle(io.RawIOBase):
        def __init__(self, data):
            self.buf = io.BytesIO(data)

        def readable(self):
            return True

        def read(self, n=-1):
            return self.buf.read(min(n, 3) if n >= 0 else 3)

    assert list(CarReader(Trickle(raw))) == from_path
    assert len(from_path) == 8


def test_reader_is_single_use(basic):
    reader = CarReader(io.BytesIO(basic[0]))
    list(reader)
    with pytest.raises(CarError, match="only once"):
        list(reader)


def _car(header: object, *sections: bytes) -> bytes:
    body = dagcbor.encode(header)
    return encode_uvarint(len(body)) + body + b"".join(sections)


def _section(cid: CID, data: bytes) -> bytes:
    return encode_uvarint(len(cid.buffer) + len(data)) + cid.buffer + data


BLOCK = b"hello"
BLOCK_CID = CID.of(BLOCK)
GOOD_HEADER = {"roots": [BLOCK_CID], "version": 1}


@pytest.mark.parametrize(
    "data, match",
    [
        (b"", "no header"),
        (b"\x00", "length is zero"),
        (b"\x80", "truncated"),
        (b"\x0a\xa2", "truncated CAR header"),
        (encode_uvarint(2 << 20) + b"\xa0", "exceeds"),
        (b"\x01\xff", "not DAG-CBOR"),
        (_car([1]), "not a map"),
        (_car({"version": 2}), "CARv2"),
        (_car({"roots": []}), "unsupported CAR version None"),
        (_car({"roots": [], "version": "1"}), "unsupported CAR version"),
        (_car({"roots": [BLOCK_CID], "version": 1, "x": 1}), "unexpected CAR header"),
        (_car({"version": 1}), "roots must be a list"),
        (_car({"roots": [b"x"], "version": 1}), "roots must be a list of CIDs"),
    ],
)
def test_bad_headers(data: bytes, match: str):
    with pytest.raises(CarError, match=match):
        CarReader(io.BytesIO(data))


@pytest.mark.parametrize(
    "tail, error, match",
    [
        (b"\x00", CarError, "zero-length section"),
        (b"\x80", CarError, "truncated section length"),
        (b"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01", CarError, "longer than 9"),
        (b"\x80\x00", CarError, "bad section length"),
        (encode_uvarint(100) + b"abc", CarError, "truncated section"),
        (encode_uvarint(9 << 20), CarError, "exceeds"),
        (encode_uvarint(2) + b"\x01\x55", CarError, "bad CID"),
        (encode_uvarint(3) + b"\x07\x55\x00", CarError, "bad CID"),
        (_section(BLOCK_CID, b"jello"), HashMismatch, "do not match"),
    ],
)
def test_bad_sections(tail: bytes, error: type, match: str):
    data = _car(GOOD_HEADER, _section(BLOCK_CID, BLOCK), tail)
    reader = CarReader(io.BytesIO(data))
    blocks = iter(reader)
    assert next(blocks) == (BLOCK_CID, BLOCK)
    with pytest.raises(error, match=match):
        next(blocks)
    assert issubclass(error, IPLDError)


def test_section_size_limit_is_configurable():
    data = _car(GOOD_HEADER, _section(BLOCK_CID, BLOCK))
    with pytest.raises(CarError, match="exceeds 10"):
        list(CarReader(io.BytesIO(data), max_section_size=10))
    assert len(list(CarReader(io.BytesIO(data), max_section_size=len(BLOCK) + 36))) == 1


def test_unverifiable_and_unverified_blocks():
    # murmur3-128 (0x22): a hash function this library cannot compute.
    odd = CID(1, 0x55, encode_uvarint(0x22) + encode_uvarint(16) + bytes(16))
    data = _car(GOOD_HEADER, _section(odd, b"anything"))
    with pytest.raises(UnverifiableBlock, match="0x22"):
        list(CarReader(io.BytesIO(data)))
    assert list(CarReader(io.BytesIO(data), allow_unverified=True)) == [(odd, b"anything")]
    bad = _car(GOOD_HEADER, _section(BLOCK_CID, b"tampered"))
    with pytest.raises(HashMismatch):
        list(CarReader(io.BytesIO(bad)))
    assert list(CarReader(io.BytesIO(bad), verify=False)) == [(BLOCK_CID, b"tampered")]


def test_identity_blocks():
    inline = CID.of(b"tiny", hash_code=multihash.IDENTITY)
    good = _car(GOOD_HEADER, _section(inline, b"tiny"))
    assert list(CarReader(io.BytesIO(good))) == [(inline, b"tiny")]
    with pytest.raises(HashMismatch):
        list(CarReader(io.BytesIO(_car(GOOD_HEADER, _section(inline, b"TINY")))))
    with pytest.raises(HashMismatch):
        list(CarReader(io.BytesIO(_car(GOOD_HEADER, _section(inline, b"x" * 200)))))


def test_writer():
    out = io.BytesIO()
    other = CID.of(b"other")
    with CarWriter(out, [BLOCK_CID, other]) as writer:
        assert writer.put(BLOCK_CID, BLOCK)
        assert not writer.put(BLOCK_CID, BLOCK)  # written once
        assert writer.put(other, memoryview(b"other"))
        with pytest.raises(HashMismatch):
            writer.put(CID.of(b"x"), b"y")
        with pytest.raises(TypeError):
            writer.put(b"not a cid", b"")  # type: ignore[arg-type]
        assert writer.blocks_written == 2
        assert writer.bytes_written == len(out.getvalue())
    reader = CarReader(io.BytesIO(out.getvalue()))
    assert reader.roots == [BLOCK_CID, other]
    assert list(reader) == [(BLOCK_CID, BLOCK), (other, b"other")]
    # No roots is allowed; a non-CID root is not.
    assert CarReader(io.BytesIO(encode_header([]))).roots == []
    with pytest.raises(CarError):
        encode_header(["x"])  # type: ignore[list-item]


def test_writer_to_path(tmp_path):
    path = tmp_path / "out.car"
    with CarWriter(path, [BLOCK_CID]) as writer:
        writer.put(BLOCK_CID, BLOCK)
    with CarReader(str(path)) as reader:
        assert list(reader) == [(BLOCK_CID, BLOCK)]


# -- DAG export / import -------------------------------------------------------------------


def _dag(store: MemoryBlockstore) -> tuple[CID, list[CID]]:
    """root (dag-cbor) {"l": [pb, a], "mm": {"x": b}}; pb (dag-pb) -> [a, b]."""
    a = CID.of(b"aaaa")
    b = CID.of(b"bbbb")
    store.put(a, b"aaaa")
    store.put(b, b"bbbb")
    pb_block = dagpb.encode({"Links": [{"Hash": a, "Name": "a"}, {"Hash": b, "Name": "b"}]})
    pb_cid = CID.of(pb_block, codec=DAG_PB, version=0)
    store.put(pb_cid, pb_block)
    root_block = dagcbor.encode({"l": [pb_cid, a], "mm": {"x": b}, "zzz": 1})
    root = CID.of(root_block, codec=DAG_CBOR)
    store.put(root, root_block)
    return root, [root, pb_cid, a, b]


def test_walk_all_order():
    store = MemoryBlockstore()
    root, order = _dag(store)
    assert [cid for cid, _ in walk_all(root, store)] == order
    assert car.block_links(root, store.get(root)) == [order[1], order[2], order[3]]


def test_export_import_roundtrip(tmp_path):
    src = MemoryBlockstore()
    root, order = _dag(src)
    path = tmp_path / "dag.car"
    assert export_car(root, src, path) == 4
    with CarReader(path) as reader:
        assert reader.roots == [root]
        assert [cid for cid, _ in reader] == order
    dst = MemoryBlockstore()
    roots, count = import_car(path, dst, batch_bytes=1)
    assert roots == [root] and count == 4
    assert sorted(dst) == sorted(order)
    # The "all" selector gives the same CAR.
    again = io.BytesIO()
    export_car(root, src, again, selector=json.loads(json.dumps(ALL_SELECTOR)))
    assert again.getvalue() == path.read_bytes()


def test_export_unixfs_file():
    from datatransfer.ipld.unixfs import cat, import_file

    src = MemoryBlockstore()
    data = bytes(range(256)) * 100
    root = import_file(data, src, "classic", chunk_size=1000, max_links=5)
    buf = io.BytesIO()
    assert export_car(root, src, buf) == src.size()
    buf.seek(0)
    dst = MemoryBlockstore()
    import_car(buf, dst)
    assert cat(root, dst) == data


def test_export_missing_block():
    store = MemoryBlockstore()
    root, order = _dag(store)
    store.delete(order[3])
    with pytest.raises(BlockNotFound):
        export_car(root, store, io.BytesIO())


def test_export_with_selector():
    from datatransfer.ipld.selector import SelectorError

    store = MemoryBlockstore()
    root, order = _dag(store)
    # Only the root and what its "l" list links to, one level deep.
    sel = {"f": {"f>": {"l": {"a": {">": {".": {}}}}}}}
    out = io.BytesIO()
    assert export_car(root, store, out, selector=sel) == 3
    out.seek(0)
    assert [cid for cid, _ in CarReader(out)] == order[:3]
    with pytest.raises(SelectorError):
        export_car(root, store, io.BytesIO(), selector={"nope": {}})


def test_import_stops_on_bad_block():
    data = _car(GOOD_HEADER, _section(BLOCK_CID, BLOCK), _section(CID.of(b"z"), b"y"))
    store = MemoryBlockstore()
    with pytest.raises(HashMismatch):
        import_car(io.BytesIO(data), store)
