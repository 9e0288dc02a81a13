"""UnixFS: the Data protobuf, the importer's CIDs against Kubo/Boxo and JS, export.

Expected root CIDs
------------------
The content is :class:`Pattern`: the byte at offset ``i`` is ``i % 251``
(deterministic, and no chunk equals another, so deduplication cannot hide a
layout bug). The expected CIDs below were produced outside this repository, by
two independent implementations that agreed on every one of them:

* Go, ``github.com/ipfs/boxo`` v0.43.0 (the library Kubo imports files with):
  ``helpers.DagBuilderParams{Maxlinks, RawLeaves, CidBuilder}`` with
  ``chunker.NewSizeSplitter(reader, chunk)`` and ``balanced.Layout``;
  ``classic`` = CIDv0 prefix, RawLeaves false, 256 KiB, 174 links (Boxo's
  ``UnixFS_v0_2015`` profile, Kubo's historical default); ``modern`` = CIDv1
  prefix, RawLeaves true, 1 MiB, 1024 links (Boxo's ``UnixFS_v1_2025``).
* JavaScript, ``ipfs-unixfs-importer`` 17.1.1 ``importByteStream`` with
  ``profile: 'unixfs-v0-2015'`` / ``'unixfs-v1-2025'`` for the full-size
  cases, and for the small ones ``fixedSize({chunkSize: 16})`` with
  ``balanced({maxChildrenPerNode: 4})`` (classic: ``cidVersion: 0, rawLeaves:
  false, leafType: 'file'``; modern: ``cidVersion: 1, rawLeaves: true``).

The small-parameter cases (16-byte chunks, 4 links) reach trees three and
four levels deep, which the full-size profiles only do past 7.5 GiB (classic)
or 1 GiB (modern). ``hello world\\n`` in the classic profile is the CID the
project design names.
"""

from __future__ import annotations

import hashlib
import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from datatransfer.ipld import dagpb, multihash
from datatransfer.ipld.blockstore import BlockNotFound, MemoryBlockstore
from datatransfer.ipld.cid import CID, DAG_PB, RAW
from datatransfer.ipld.errors import CodecError
from datatransfer.ipld.unixfs import (
    CLASSIC,
    MODERN,
    DataType,
    Profile,
    UnixFSData,
    UnixFSError,
    UnixTime,
    cat,
    export_file,
    exporter,
    get_profile,
    import_bytes,
    import_file,
    iter_file,
    iter_file_blocks,
)
from datatransfer.ipld.unixfs.importer import chunks

KiB = 1024
MiB = 1024 * KiB
_PERIOD = bytes(range(251))


class Pattern(io.RawIOBase):
    """A read-only stream of ``size`` bytes where byte ``i`` is ``i % 251``.

    ``max_read`` caps what one ``read`` returns, to exercise short reads.
    """

    def __init__(self, size: int, max_read: int = 4 * MiB) -> None:
        self.size = size
        self.pos = 0
        self.max_read = max_read
        self.requests: list[int] = []
        self._base = _PERIOD * (max_read // 251 + 2)

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if n < 0:
            n = self.size - self.pos
        self.requests.append(n)
        n = min(n, self.size - self.pos, self.max_read)
        off = self.pos % 251
        self.pos += n
        return self._base[off : off + n]


def pattern_bytes(size: int) -> bytes:
    return (_PERIOD * (size // 251 + 1))[:size]


# (profile, size, chunk_size, max_links) -> root CID; see the module docstring.
EXPECTED = {
    ("classic", 0, None, None): "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH",
    ("classic", 1, None, None): "QmS9JArPwa55ePgDnyg6TzX24mYTS1b1vLqWNebyVotKxQ",
    ("classic", 256 * KiB, None, None): "QmeqfRyS3vkku7n6krqC3DgGMex3x2sCpSeKMDmrG13QQq",
    ("classic", 256 * KiB + 1, None, None): "QmUSjGawaz4ptvREcMKSMJneWCa5j8dAz2wSAAvHtW2rnB",
    ("classic", 174 * 256 * KiB, None, None): "QmXCym15aFeWjAWyPFaAgwVmkuKB7EBsV77Skt54KmxChF",
    ("classic", 174 * 256 * KiB + 1, None, None): "QmTedsTekQQkgACJXb1sPZSW8bLdS9LPMrT7L4YdjNRd4n",
    ("classic", 175 * 256 * KiB, None, None): "Qmbp67kThKoJFnWu7pUgwCu81WttemMnD13oG4uj9DiY5E",
    ("modern", 0, None, None): "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku",
    ("modern", 1, None, None): "bafkreidogqfzz75tpkmjzjke425xqcrmpcib2p5tg44hnbirumdbpl5adu",
    ("modern", MiB, None, None): "bafkreidddocae7lltzjlkooe5a3tmiwsgazn7logjvqk7bzttsidpzhxne",
    ("modern", MiB + 1, None, None): "bafybeidjogjfwuhbzwopgd4bn3skcf5m6oz72xshywcndzxgqb623nfclu",
    (
        "modern",
        175 * MiB,
        None,
        None,
    ): "bafybeie5k4z5ci44ylwq4653klqpp7wne4uaho5ukslch2nvd4oi676rxi",
    ("classic", 0, 16, 4): "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH",
    ("classic", 1, 16, 4): "QmS9JArPwa55ePgDnyg6TzX24mYTS1b1vLqWNebyVotKxQ",
    ("classic", 16, 16, 4): "QmTs9rRjfqPDUAqxSczZj5RL5Ly9UciKXvukPUYfjg87kH",
    ("classic", 17, 16, 4): "Qmazj2crbizG4gMkTU9aYGE5NU3ZBACWnop7pam62Fxz3c",
    ("classic", 64, 16, 4): "QmUtY8Pz3yKPfK5ygDgwcU5Hdc6wp6pau6bemLbgiw2GYX",
    ("classic", 65, 16, 4): "QmUN1QS494oAbiFg7N9f86eaZmqReLJiG2zEbJmSVPxqT7",
    ("classic", 1600, 16, 4): "QmVSKvyYKhfrzPtBVrRrBUsfixTJ1xmXMkNX3aTatzMsyc",
    ("classic", 1601, 16, 4): "QmcovXsmEgkSCYtDxH8DDd5oTq6KJiCsF39mkhkEptaep5",
    ("modern", 0, 16, 4): "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku",
    ("modern", 1, 16, 4): "bafkreidogqfzz75tpkmjzjke425xqcrmpcib2p5tg44hnbirumdbpl5adu",
    ("modern", 16, 16, 4): "bafkreif6ixfsmbn7g27l3zueqqncr4h5ipdjqufd3ts75w5gteuo4oujse",
    ("modern", 17, 16, 4): "bafybeigoy2pjprxoufrlr6ez2td53kauu5ndaysnim7ggo2e3b64eaj2bi",
    ("modern", 64, 16, 4): "bafybeia3js4mxxkyappgnq5klhpvoci7g2nib2hjqkjymkmfecaby4dmnq",
    ("modern", 65, 16, 4): "bafybeieixyuxszinqsy4zudruq5y3iplxpijuiql567ljvhxbduftqythy",
    ("modern", 1600, 16, 4): "bafybeiaicltuaezsu5k3tqltlq6ildiohxu5caebp2b3gtffawlnwzwghm",
    ("modern", 1601, 16, 4): "bafybeigaefwdlx23mjxgwfckefifngbdarbjkdkjql3nvfaxw7pzbpvxom",
}

LARGE = 8 * MiB
SMALL_CASES = [k for k in EXPECTED if k[1] <= LARGE]
LARGE_CASES = [k for k in EXPECTED if k[1] > LARGE]


def _id(case) -> str:
    profile, size, chunk, links = case
    return f"{profile}-{size}" + (f"-c{chunk}-l{links}" if chunk else "")


def test_hello_world():
    root, blocks = import_bytes(b"hello world\n", "classic")
    assert str(root) == "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"
    assert len(blocks) == 1
    root, blocks = import_bytes(b"hello world\n", "modern")
    assert str(root) == "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4"
    assert blocks == [(root, b"hello world\n")]


@pytest.mark.parametrize("case", SMALL_CASES, ids=_id)
def test_import_export_roundtrip(case):
    profile, size, chunk, links = case
    store = MemoryBlockstore()
    root = import_file(Pattern(size), store, profile, chunk_size=chunk, max_links=links)
    assert str(root) == EXPECTED[case]
    out = io.BytesIO()
    assert export_file(root, store, out) == size
    assert out.getvalue() == pattern_bytes(size)


@pytest.mark.parametrize("case", LARGE_CASES, ids=_id)
def test_large_root_cids(case):
    profile, size, chunk, links = case
    blocks = iter_file_blocks(Pattern(size), profile, chunk_size=chunk, max_links=links)
    last = None
    for last in blocks:  # noqa: B007 - the root is the last block
        pass
    assert last is not None and str(last[0]) == EXPECTED[case]


def test_large_roundtrip_two_levels():
    """175 classic chunks: a root over a full 174-link node and a 1-link node."""
    size = 175 * 256 * KiB
    store = MemoryBlockstore()
    root = import_file(Pattern(size), store, "classic")
    assert str(root) == EXPECTED[("classic", size, None, None)]
    node = dagpb.decode(store.get(root))
    assert len(node["Links"]) == 2
    first = dagpb.decode(store.get(node["Links"][0]["Hash"]))
    second = dagpb.decode(store.get(node["Links"][1]["Hash"]))
    assert len(first["Links"]) == 174 and len(second["Links"]) == 1
    fs = UnixFSData.decode(node["Data"])
    assert fs.filesize == size and fs.blocksizes == [174 * 256 * KiB, 256 * KiB]
    # Tsize of each link is the whole subtree: blocks below it, counted once each.
    assert sum(link["Tsize"] for link in node["Links"]) + len(store.get(root)) == (
        store.total_bytes()
    )
    digest = hashlib.sha256()
    for piece in iter_file(root, store):
        digest.update(piece)
    assert digest.digest() == hashlib.sha256(pattern_bytes(size)).digest()


def test_sources_give_the_same_root(tmp_path):
    data = pattern_bytes(100_000)
    expected, _ = import_bytes(data, "classic", chunk_size=1000, max_links=7)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    pieces = [data[i : i + 777] for i in range(0, len(data), 777)]
    for source in (
        path,
        str(path),
        data,
        bytearray(data),
        memoryview(data),
        Pattern(len(data), max_read=333),  # short reads
        iter(pieces),
        pieces,
    ):
        root, _ = import_bytes(source, "classic", chunk_size=1000, max_links=7)
        assert root == expected


def test_streaming_reads_one_chunk_at_a_time():
    stream = Pattern(50 * 1000)
    blocks = iter_file_blocks(stream, "modern", chunk_size=1000, max_links=8)
    cid, data = next(blocks)
    assert stream.pos == 1000 and data == pattern_bytes(1000)
    assert max(stream.requests) <= 1000
    rest = list(blocks)
    assert stream.pos == 50 * 1000
    # 50 leaves, 7 parents of up to 8 leaves, then one root above them.
    assert len(rest) == 49 + 7 + 1


def test_chunks():
    assert list(chunks(b"", 4)) == []
    assert list(chunks(b"abcdefghij", 4)) == [b"abcd", b"efgh", b"ij"]
    assert list(chunks([b"ab", b"", b"cdefg", b"h"], 4)) == [b"abcd", b"efgh"]
    assert list(chunks([b"abcd", b"efgh"], 4)) == [b"abcd", b"efgh"]
    assert list(chunks(Pattern(9, max_read=2), 4)) == [
        b"\x00\x01\x02\x03",
        b"\x04\x05\x06\x07",
        b"\x08",
    ]


def test_import_file_batches():
    class Recorder:
        def __init__(self):
            self.batches = []
            self.store = MemoryBlockstore()

        def put_many(self, blocks):
            blocks = list(blocks)
            self.batches.append(len(blocks))
            self.store.put_many(blocks)

    rec = Recorder()
    root = import_file(Pattern(64 * 1000), rec, "modern", chunk_size=1000, batch_bytes=10_000)
    assert len(rec.batches) >= 6
    assert cat(root, rec.store) == pattern_bytes(64 * 1000)


@pytest.mark.parametrize("background", [True, False])
def test_import_file_store_errors_propagate(background, tmp_path):
    class Failing:
        def __init__(self):
            self.calls = 0

        def put_many(self, blocks):
            self.calls += 1
            if self.calls == 2:
                raise OSError("disk full")

    path = tmp_path / "f"
    path.write_bytes(pattern_bytes(50_000))
    store = Failing()
    with pytest.raises(OSError, match="disk full"):
        import_file(path, store, "modern", chunk_size=1000, batch_bytes=5000, background=background)
    assert store.calls == 2


def test_import_file_without_background_thread():
    store = MemoryBlockstore()
    root = import_file(
        Pattern(20_000), store, "classic", chunk_size=1000, batch_bytes=3000, background=False
    )
    assert cat(root, store) == pattern_bytes(20_000)


def test_dedup_repeated_chunks():
    data = b"A" * 4096
    root, blocks = import_bytes(data, "modern", chunk_size=1024)
    assert len({cid for cid, _ in blocks}) == 2  # one leaf, one root
    store = MemoryBlockstore()
    store.put_many(blocks)
    assert cat(root, store) == data


def test_leaf_and_parent_shapes():
    _, blocks = import_bytes(b"abcde", "classic", chunk_size=4)
    (leaf1, b1), (leaf2, b2), (root, rb) = blocks
    assert leaf1.version == 0 and root.version == 0
    assert dagpb.decode(b1) == {
        "Links": [],
        "Data": UnixFSData(DataType.FILE, data=b"abcd", filesize=4).encode(),
    }
    node = dagpb.decode(rb)
    assert node["Links"] == [
        {"Hash": leaf1, "Name": "", "Tsize": len(b1)},
        {"Hash": leaf2, "Name": "", "Tsize": len(b2)},
    ]
    assert UnixFSData.decode(node["Data"]) == UnixFSData(
        DataType.FILE, filesize=5, blocksizes=[4, 1]
    )
    _, blocks = import_bytes(b"abcde", "modern", chunk_size=4)
    (leaf1, b1), (leaf2, _), (root, rb) = blocks
    assert leaf1.codec == RAW and b1 == b"abcd"
    assert root.codec == DAG_PB and root.version == 1
    assert dagpb.decode(rb)["Links"][1] == {"Hash": leaf2, "Name": "", "Tsize": 1}


def test_profiles():
    assert get_profile("classic") is CLASSIC
    assert get_profile("unixfs-v0-2015") is CLASSIC
    assert get_profile("unixfs-v1-2025") is MODERN
    assert (CLASSIC.cid_version, CLASSIC.raw_leaves, CLASSIC.chunk_size, CLASSIC.max_links) == (
        0,
        False,
        256 * KiB,
        174,
    )
    assert (MODERN.cid_version, MODERN.raw_leaves, MODERN.chunk_size, MODERN.max_links) == (
        1,
        True,
        MiB,
        1024,
    )
    assert get_profile(MODERN, max_links=8).max_links == 8
    with pytest.raises(ValueError, match="unknown UnixFS profile"):
        get_profile("fancy")
    with pytest.raises(ValueError, match="raw leaves need CIDv1"):
        Profile("x", cid_version=0, raw_leaves=True, chunk_size=10, max_links=10)
    with pytest.raises(ValueError, match="chunk_size"):
        get_profile("classic", chunk_size=0)
    with pytest.raises(ValueError, match="chunk_size"):
        get_profile("classic", chunk_size=4 * MiB)
    with pytest.raises(ValueError, match="max_links"):
        get_profile("classic", max_links=1)
    with pytest.raises(ValueError, match="cid_version"):
        Profile("x", cid_version=2, raw_leaves=False, chunk_size=10, max_links=10)
    # A custom profile: CIDv1 with dag-pb leaves.
    custom = Profile("v1-pb", cid_version=1, raw_leaves=False, chunk_size=4, max_links=2)
    root, blocks = import_bytes(b"0123456789", custom)
    assert all(cid.codec == DAG_PB and cid.version == 1 for cid, _ in blocks)
    store = MemoryBlockstore()
    store.put_many(blocks)
    assert cat(root, store) == b"0123456789"


# -- UnixFS Data protobuf ----------------------------------------------------------------


def test_data_encoding_bytes():
    assert UnixFSData(DataType.FILE, filesize=0).encode() == b"\x08\x02\x18\x00"
    full = UnixFSData(
        DataType.HAMT_SHARD,
        data=b"\x01",
        filesize=3,
        blocksizes=[1, 300],
        hash_type=0x22,
        fanout=256,
        mode=0o644,
        mtime=UnixTime(-5, 7),
    )
    encoded = full.encode()
    assert encoded.startswith(b"\x08\x05\x12\x01\x01\x18\x03\x20\x01\x20\xac\x02\x28\x22")
    assert UnixFSData.decode(encoded) == full
    assert UnixFSData.decode(b"\x08\x01") == UnixFSData(DataType.DIRECTORY)


def test_data_decode_lenient_parts():
    # Packed blocksizes, and fields of unknown number, are accepted.
    assert UnixFSData.decode(b"\x08\x02\x22\x02\x01\x02\x20\x03").blocksizes == [1, 2, 3]
    assert UnixFSData.decode(b"\x08\x02\x48\x01\x52\x00").type == DataType.FILE


@pytest.mark.parametrize(
    "data, match",
    [
        (b"", "without Type"),
        (b"\x18\x01", "without Type"),
        (b"\x08\x09", "unknown UnixFS type 9"),
        (b"\x08\x02\x08\x02", "duplicate"),
        (b"\x08\x02\x18\x01\x18\x01", "duplicate"),
        (b"\x0a\x00", "wire type"),
        (b"\x08\x02\x10\x01", "wire type"),
        (b"\x08\x02\x25\x00\x00\x00\x00", "wire type"),
        (b"\x08\x02\x38" + b"\x80\x80\x80\x80\x10", "mode out of range"),
        (b"\x08\x02\x42\x00", "without Seconds"),
        (b"\x08\x02\x42\x07\x08\x01\x15\x00\x00\x00\x00", "nanoseconds"),
        (b"\x08\x02\x42\x04\x08\x01\x08\x01", "duplicate"),
        (b"\x08\x02\x42\x02\x0a\x00", "wire type"),
        (b"\x08\x02\x12\x05ab", "truncated"),
        (b"\x08", "truncated"),
        (b"\x0b", "wire type 3"),
    ],
)
def test_data_decode_rejects(data, match):
    with pytest.raises(UnixFSError, match=match):
        UnixFSData.decode(data)
    assert issubclass(UnixFSError, CodecError)


def test_data_encode_rejects_bad_mode():
    with pytest.raises(UnixFSError):
        UnixFSData(DataType.FILE, mode=1 << 32).encode()


@given(
    st.builds(
        UnixFSData,
        type=st.sampled_from(list(DataType)),
        data=st.none() | st.binary(max_size=20),
        filesize=st.none() | st.integers(0, (1 << 64) - 1),
        blocksizes=st.lists(st.integers(0, (1 << 64) - 1), max_size=5),
        hash_type=st.none() | st.integers(0, 1 << 40),
        fanout=st.none() | st.integers(0, 1 << 20),
        mode=st.none() | st.integers(0, (1 << 32) - 1),
        mtime=st.none()
        | st.builds(
            UnixTime,
            seconds=st.integers(-(1 << 63), (1 << 63) - 1),
            nanos=st.none() | st.integers(1, 999_999_999),
        ),
    )
)
def test_data_roundtrip_property(value):
    encoded = value.encode()
    assert UnixFSData.decode(encoded) == value
    assert UnixFSData.decode(encoded).encode() == encoded


# -- export edge cases ------------------------------------------------------------------


def _pb_node(fs: UnixFSData, links=(), version: int = 0) -> tuple[CID, bytes]:
    block = dagpb.encode(
        {"Links": [{"Hash": c, "Name": "", "Tsize": 1} for c in links], "Data": fs.encode()}
    )
    return CID.of(block, codec=DAG_PB, version=version), block


def test_export_mixed_tree():
    """A File root with its own data, a dag-pb Raw leaf, a raw leaf and an
    identity-CID leaf that no store holds."""
    store = MemoryBlockstore()
    raw_leaf_pb = _pb_node(UnixFSData(DataType.RAW, data=b"abc", filesize=3))
    raw_leaf = (CID.of(b"de"), b"de")
    inline = CID.of(b"fg", hash_code=multihash.IDENTITY)
    store.put_many([raw_leaf_pb, raw_leaf])
    root = _pb_node(
        UnixFSData(DataType.FILE, data=b"xy", filesize=9, blocksizes=[3, 2, 2]),
        [raw_leaf_pb[0], raw_leaf[0], inline],
    )
    store.put(*root)
    assert cat(root[0], store) == b"xyabcdefg"
    # Any get(cid) callable works as the store.
    assert cat(root[0], store.get) == b"xyabcdefg"


def test_export_to_path(tmp_path):
    store = MemoryBlockstore()
    root = import_file(b"data" * 1000, store, "modern", chunk_size=100)
    assert export_file(root, store, tmp_path / "out") == 4000
    assert (tmp_path / "out").read_bytes() == b"data" * 1000


def test_export_empty_files():
    store = MemoryBlockstore()
    for profile in ("classic", "modern"):
        root = import_file(b"", store, profile)
        assert cat(root, store) == b""


@pytest.mark.parametrize(
    "fs, match",
    [
        (UnixFSData(DataType.FILE, filesize=5, blocksizes=[3]), "2 links but 1 blocksizes"),
        (UnixFSData(DataType.FILE, filesize=5, blocksizes=[3, 3]), "blocksizes says 3"),
        (UnixFSData(DataType.FILE, filesize=6, blocksizes=[3, 2]), "filesize says 6"),
        (UnixFSData(DataType.DIRECTORY), "directory, not a file"),
        (UnixFSData(DataType.SYMLINK, data=b"/x"), "symlink, not a file"),
    ],
)
def test_export_rejects(fs, match):
    store = MemoryBlockstore()
    a, b = (CID.of(b"abc"), b"abc"), (CID.of(b"de"), b"de")
    store.put_many([a, b])
    root = _pb_node(fs, [a[0], b[0]])
    store.put(*root)
    with pytest.raises(UnixFSError, match=match):
        cat(root[0], store)


def test_export_rejects_non_unixfs():
    store = MemoryBlockstore()
    block = dagpb.encode({"Links": []})
    cid = CID.of(block, codec=DAG_PB)
    store.put(cid, block)
    with pytest.raises(UnixFSError, match="no UnixFS Data"):
        cat(cid, store)
    cbor = CID.of(b"\xa0", codec=0x71)
    store.put(cbor, b"\xa0")
    with pytest.raises(UnixFSError, match="dag-cbor"):
        cat(cbor, store)
    with pytest.raises(BlockNotFound):
        cat(CID.of(b"absent"), store)


def test_export_depth_limit():
    store = MemoryBlockstore()
    cid, block = CID.of(b"x"), b"x"
    store.put(cid, block)
    for _ in range(exporter.MAX_DEPTH + 1):
        cid, block = _pb_node(UnixFSData(DataType.FILE, filesize=1, blocksizes=[1]), [cid])
        store.put(cid, block)
    with pytest.raises(UnixFSError, match="deeper"):
        cat(cid, store)


# -- the streaming layout against a plain layer-by-layer reference --------------------


def _reference_root(data: bytes, chunk: int, max_links: int, raw_leaves: bool) -> CID:
    """The balanced layout as the JS importer states it: leaves in order, then
    parents of ``max_links`` consecutive nodes, layer by layer, until one node
    is left; a single leaf is the root. Built with the general encoders."""
    version = 1 if raw_leaves else 0

    def node(fs: UnixFSData, links: list[tuple[CID, int]]) -> tuple[CID, bytes]:
        block = dagpb.encode(
            {
                "Links": [{"Hash": c, "Name": "", "Tsize": t} for c, t in links],
                "Data": fs.encode(),
            }
        )
        return CID.of(block, codec=DAG_PB, version=version), block

    if not data:
        if raw_leaves:
            return CID.of(b"")
        return node(UnixFSData(DataType.FILE, filesize=0), [])[0]
    layer = []  # (cid, tsize, filesize)
    for off in range(0, len(data), chunk):
        piece = data[off : off + chunk]
        if raw_leaves:
            layer.append((CID.of(piece), len(piece), len(piece)))
        else:
            cid, block = node(UnixFSData(DataType.FILE, data=piece, filesize=len(piece)), [])
            layer.append((cid, len(block), len(piece)))
    if len(layer) == 1:
        return layer[0][0]
    while True:
        parents = []
        for i in range(0, len(layer), max_links):
            group = layer[i : i + max_links]
            fs = UnixFSData(
                DataType.FILE,
                filesize=sum(g[2] for g in group),
                blocksizes=[g[2] for g in group],
            )
            cid, block = node(fs, [(g[0], g[1]) for g in group])
            parents.append((cid, len(block) + sum(g[1] for g in group), fs.filesize))
        if len(parents) == 1:
            return parents[0][0]
        layer = parents


@given(
    size=st.integers(0, 1200),
    chunk=st.integers(1, 40),
    max_links=st.integers(2, 6),
    raw_leaves=st.booleans(),
)
def test_layout_matches_reference(size, chunk, max_links, raw_leaves):
    data = pattern_bytes(size)
    profile = Profile(
        "t",
        cid_version=int(raw_leaves),
        raw_leaves=raw_leaves,
        chunk_size=chunk,
        max_links=max_links,
    )
    root, blocks = import_bytes(data, profile)
    assert root == _reference_root(data, chunk, max_links, raw_leaves)
    store = MemoryBlockstore()
    store.put_many(blocks)
    assert cat(root, store) == data


def test_batches_helper():
    from datatransfer.ipld.unixfs.importer import batches

    blocks = [(CID.of(bytes([i])), bytes(10)) for i in range(7)]
    groups = list(batches(blocks, 25))
    assert [len(g) for g in groups] == [3, 3, 1]
    assert [b for g in groups for b in g] == blocks
    assert list(batches([], 25)) == []
