"""CID parsing, printing, binary forms and prefixes, cross-checked against the
``multiformats`` package as an independent reference."""

from __future__ import annotations

import hashlib
import pickle

import multiformats
import pytest
from hypothesis import given
from hypothesis import strategies as st

from datatransfer.ipld import multibase, multihash
from datatransfer.ipld.cid import CID, DAG_CBOR, DAG_JSON, DAG_PB, RAW
from datatransfer.ipld.errors import CIDError, HashMismatch, IPLDError, MultihashError

# DESIGN.md: "hello world\n" as a classic (CIDv0, dag-pb) file
HELLO_V0 = "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"
EMPTY_RAW = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"  # raw, sha2-256 of b""


# -- parse and print ------------------------------------------------------------


def test_v0_parse_and_print():
    cid = CID.parse(HELLO_V0)
    assert cid.version == 0
    assert cid.codec == DAG_PB
    assert cid.hash_code == multihash.SHA2_256
    assert len(cid.digest) == 32
    assert str(cid) == HELLO_V0
    assert cid.encode() == HELLO_V0
    assert cid.encode("base58btc") == HELLO_V0  # v0 is always bare base58btc
    assert bytes(cid)[:2] == b"\x12\x20" and len(bytes(cid)) == 34
    assert repr(cid) == f"CID({HELLO_V0!r})"


def test_v1_default_is_base32():
    cid = CID.of(b"", RAW)
    assert str(cid) == EMPTY_RAW
    assert cid.digest == hashlib.sha256(b"").digest()
    b58 = cid.encode("base58btc")
    assert b58.startswith("z")
    assert CID.parse(b58) == cid
    assert str(CID.parse(b58)) == EMPTY_RAW  # re-prints in base32
    assert CID.parse(EMPTY_RAW.upper()) == cid  # "B..." upper-case base32
    with pytest.raises(CIDError):
        cid.encode("base2")


def test_other_multibases_accepted_on_input():
    cid = CID.of(b"abc", DAG_CBOR)
    raw = bytes(cid)
    assert CID.parse("f" + raw.hex()) == cid
    assert CID.parse("F" + raw.hex().upper()) == cid
    import base64

    assert CID.parse("m" + base64.b64encode(raw).decode().rstrip("=")) == cid
    assert CID.parse("u" + base64.urlsafe_b64encode(raw).decode().rstrip("=")) == cid
    assert CID.parse("  " + str(cid) + "\n") == cid


def test_v0_to_v1():
    v0 = CID.parse(HELLO_V0)
    v1 = v0.to_v1()
    assert v1.version == 1 and v1.codec == DAG_PB
    assert v1.multihash == v0.multihash
    assert v1 != v0
    assert str(v1).startswith("bafybei")
    assert v1.to_v1() is v1


def test_bytes_round_trip_and_read():
    cids = [CID.parse(HELLO_V0), CID.of(b"x", RAW), CID.of(b"y", DAG_JSON, multihash.SHA2_512)]
    for cid in cids:
        assert CID.from_bytes(bytes(cid)) == cid
        assert CID.from_bytes(bytearray(bytes(cid))) == cid
        assert CID.from_bytes(memoryview(bytes(cid))) == cid
        assert cid.buffer == bytes(cid)
    # CIDs back to back, as in a CAR file
    stream = b"".join(bytes(c) for c in cids) + b"tail"
    pos = 0
    for cid in cids:
        got, pos = CID.read(stream, pos)
        assert got == cid
    assert stream[pos:] == b"tail"


def test_equality_hash_order_immutability_pickle():
    a = CID.of(b"a", RAW)
    b = CID.from_bytes(bytes(a))
    assert a == b and hash(a) == hash(b) and a is not b
    assert {a: 1}[b] == 1
    assert a != CID.of(b"a", DAG_CBOR)  # same multihash, other codec
    assert (a == bytes(a)) is False
    c = CID.of(b"c", RAW)
    assert (a < c) == (bytes(a) < bytes(c))
    assert sorted([c, a]) == sorted([a, c])
    with pytest.raises(AttributeError):
        a.codec = DAG_CBOR  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(a)) == a


def test_constructor_from_parts():
    mh = multihash.sum(multihash.SHA2_256, b"data")
    cid = CID(1, DAG_CBOR, mh)
    assert cid == CID.of(b"data", DAG_CBOR)
    assert CID(0, DAG_PB, mh) == CID.of(b"data", DAG_PB, version=0)
    with pytest.raises(CIDError):
        CID(0, DAG_CBOR, mh)  # v0 is dag-pb only
    with pytest.raises(CIDError):
        CID(0, DAG_PB, multihash.sum(multihash.SHA2_512, b"data"))
    with pytest.raises(CIDError):
        CID(2, DAG_CBOR, mh)
    with pytest.raises(CIDError):
        CID(1, DAG_CBOR, mh + b"\x00")
    with pytest.raises(CIDError):
        CID.of(b"data", DAG_CBOR, version=0)
    with pytest.raises(CIDError):
        CID.of(b"data", DAG_CBOR, version=3)


# -- hashes -----------------------------------------------------------------------


def test_identity_hash():
    cid = CID.of(b"\x01\x02\x03", RAW, multihash.IDENTITY)
    assert cid.hash_code == multihash.IDENTITY
    assert cid.digest == b"\x01\x02\x03"
    assert bytes(cid) == b"\x01\x55\x00\x03\x01\x02\x03"
    assert CID.parse(str(cid)) == cid
    cid.verify(b"\x01\x02\x03")
    assert not cid.matches(b"\x01\x02")
    with pytest.raises(MultihashError):
        CID.of(b"x" * (multihash.MAX_IDENTITY_DIGEST + 1), RAW, multihash.IDENTITY)


@pytest.mark.parametrize(
    "code, fn",
    [
        (multihash.SHA2_256, lambda d: hashlib.sha256(d).digest()),
        (multihash.SHA2_512, lambda d: hashlib.sha512(d).digest()),
        (multihash.SHA3_256, lambda d: hashlib.sha3_256(d).digest()),
        (multihash.BLAKE2B_256, lambda d: hashlib.blake2b(d, digest_size=32).digest()),
    ],
)
def test_hash_functions(code, fn):
    data = b"some block bytes"
    cid = CID.of(data, DAG_CBOR, code)
    assert cid.digest == fn(data)
    assert cid.multihash == multihash.encode(code, fn(data))
    cid.verify(data)
    assert cid.matches(data)
    assert not cid.matches(data + b"!")
    with pytest.raises(HashMismatch) as info:
        cid.verify(data + b"!")
    assert info.value.cid == cid


def test_unknown_hash_parses_but_cannot_verify():
    raw = b"\x01\x55" + b"\xa0\x03" + b"\x04" + b"abcd"  # hash code 0x1a0, 4-byte digest
    cid = CID.from_bytes(raw)
    assert cid.hash_code == 0x1A0 and cid.digest == b"abcd"
    assert CID.parse(str(cid)) == cid
    with pytest.raises(MultihashError):
        cid.verify(b"anything")


# -- prefixes -------------------------------------------------------------------


@pytest.mark.parametrize(
    "cid",
    [
        CID.parse(HELLO_V0),
        CID.of(b"blk", RAW),
        CID.of(b"blk", DAG_CBOR, multihash.SHA2_512),
        CID.of(b"blk", DAG_JSON, multihash.BLAKE2B_256),
        CID.of(b"blk", RAW, multihash.IDENTITY),
    ],
    ids=str,
)
def test_prefix_round_trip(cid):
    data = b"blk" if cid.version else b"other block"
    if cid.version == 0:
        cid = CID.of(data, DAG_PB, version=0)
    prefix = cid.prefix
    assert CID.from_prefix(prefix, data) == cid
    if cid.hash_code == multihash.IDENTITY:
        with pytest.raises(CIDError):  # the digest length is part of the prefix
            CID.from_prefix(prefix, data + b"x")
    else:
        assert CID.from_prefix(prefix, data + b"x") != cid


def test_prefix_values():
    assert CID.parse(HELLO_V0).prefix == b"\x00\x70\x12\x20"
    assert CID.of(b"", RAW).prefix == b"\x01\x55\x12\x20"
    assert CID.of(b"", DAG_JSON).prefix == b"\x01\xa9\x02\x12\x20"


@pytest.mark.parametrize(
    "prefix",
    [
        b"",
        b"\x01\x71\x12",  # missing digest length
        b"\x01\x71\x12\x20\x00",  # trailing byte
        b"\x01\x71\x12\x1f",  # wrong digest length for sha2-256
        b"\x01\x80",  # truncated varint
        b"\x02\x71\x12\x20",  # unsupported version
        b"\x00\x71\x12\x20",  # v0 must be dag-pb
    ],
)
def test_bad_prefixes(prefix):
    with pytest.raises(IPLDError):
        CID.from_prefix(prefix, b"data")


def test_prefix_unknown_hash_refused():
    with pytest.raises(MultihashError):
        CID.from_prefix(b"\x01\x55\xa0\x03\x04", b"data")


# -- invalid input ------------------------------------------------------------------

GOOD = CID.of(b"hello", DAG_CBOR)
GOOD_V0 = CID.parse(HELLO_V0)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        bytes(GOOD)[:-1],  # truncated digest
        bytes(GOOD)[:3],  # truncated multihash head
        bytes(GOOD_V0)[:-1],  # truncated v0
        bytes(GOOD) + b"\x00",  # trailing byte
        b"\x01\x80",  # truncated varint
        b"\x01\xf1\x00\x12\x20" + bytes(32),  # non-minimal varint
        b"\x01" + b"\xff" * 10,  # varint too long
        b"\x01\x71\x12\x1f" + bytes(31),  # wrong sha2-256 digest length
        b"\x01\x71\x13\x20" + bytes(32),  # wrong sha2-512 digest length
        b"\x02\x71\x12\x20" + bytes(32),  # version 2
        b"\x00\x71\x12\x20" + bytes(32),  # "version 0" in explicit form
        b"\x01\x55\x00\x81\x01" + bytes(129),  # identity digest beyond the limit
    ],
)
def test_invalid_bytes(raw):
    with pytest.raises(CIDError):
        CID.from_bytes(raw)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "b",
        "x" + str(GOOD)[1:],  # unknown multibase
        str(GOOD)[:-3],  # truncated
        "b" + "0" * 58,  # not base32
        "z0OIl",  # not base58
        HELLO_V0[:-1],  # truncated v0 (not 46 chars: read as multibase "Q")
        HELLO_V0[:-1] + "l",  # invalid base58 character
        "b" + multibase.b32encode(bytes(GOOD_V0)),  # v0 in base32
        "z" + multibase.b58encode(bytes(GOOD_V0)),  # v0 with a multibase prefix
        "f" + bytes(GOOD).hex() + "0",  # odd hex
        "b" + multibase.b32encode(b"\x01\x71\x12\x1f" + bytes(31)),  # wrong digest length
    ],
)
def test_invalid_text(text):
    with pytest.raises(CIDError):
        CID.parse(text)


def test_parse_requires_str():
    with pytest.raises(CIDError):
        CID.parse(bytes(GOOD))  # type: ignore[arg-type]


def test_errors_are_value_errors():
    with pytest.raises(ValueError):
        CID.from_bytes(b"\x01")


# -- reference cross-check with the multiformats package ----------------------------

_MF_CODECS = sorted({c.code for c in multiformats.multicodec.table(tag="ipld")} | {RAW, 0x72})
_HASHES = {
    multihash.SHA2_256: "sha2-256",
    multihash.SHA2_512: "sha2-512",
    multihash.SHA3_256: "sha3-256",
    multihash.BLAKE2B_256: "blake2b-256",
    multihash.IDENTITY: "identity",
}


@given(
    data=st.binary(max_size=200),
    codec=st.sampled_from(_MF_CODECS),
    hash_code=st.sampled_from(sorted(_HASHES)),
)
def test_matches_multiformats_v1(data, codec, hash_code):
    if hash_code == multihash.IDENTITY:
        data = data[: multihash.MAX_IDENTITY_DIGEST]
    ours = CID.of(data, codec, hash_code)
    mh = multiformats.multihash.digest(data, _HASHES[hash_code])
    ref = multiformats.CID("base32", 1, codec, mh)
    assert bytes(ours) == bytes(ref)
    assert str(ours) == ref.encode("base32")
    assert ours.encode("base58btc") == ref.encode("base58btc")
    assert ours.multihash == bytes(mh)
    # each side parses the other's output
    assert CID.parse(ref.encode("base32")) == ours
    assert CID.parse(ref.encode("base58btc")) == ours
    assert CID.from_bytes(bytes(ref)) == ours
    back = multiformats.CID.decode(str(ours))
    assert back.codec.code == codec and bytes(back) == bytes(ours)
    assert CID.from_prefix(ours.prefix, data) == ours


@given(digest=st.binary(min_size=32, max_size=32))
def test_matches_multiformats_v0(digest):
    mh = multiformats.multihash.wrap(digest, "sha2-256")
    ref = multiformats.CID("base58btc", 0, "dag-pb", mh)
    ours = CID(0, DAG_PB, bytes(mh))
    assert bytes(ours) == bytes(ref)
    assert str(ours) == ref.encode(None)
    assert CID.parse(ref.encode(None)) == ours
    assert str(ours.to_v1()) == ref.set(version=1).encode("base32")


@given(
    digest=st.binary(min_size=0, max_size=64),
    hash_code=st.integers(min_value=0x1A0, max_value=0x1FFFF).filter(
        lambda c: not multihash.is_supported(c)
    ),
    codec=st.sampled_from(_MF_CODECS),
)
def test_arbitrary_multihash_bytes_match_reference(digest, hash_code, codec):
    """Unknown hash functions: parse, print and re-parse like the reference
    (which is given the same raw bytes)."""
    from datatransfer.ipld.varint import encode_uvarint

    raw = b"\x01" + encode_uvarint(codec) + encode_uvarint(hash_code)
    raw += encode_uvarint(len(digest)) + digest
    ours = CID.from_bytes(raw)
    assert ours.hash_code == hash_code and ours.digest == digest
    assert multibase.decode(str(ours)) == raw
    assert CID.parse(str(ours)) == ours
    assert multibase.b32decode(str(ours)[1:]) == raw


@given(st.binary(max_size=80))
def test_random_bytes_never_crash(raw):
    try:
        cid = CID.from_bytes(raw)
    except CIDError:
        return
    assert bytes(cid) == raw
    assert CID.parse(str(cid)) == cid


@given(st.text(max_size=80))
def test_random_text_never_crash(text):
    try:
        cid = CID.parse(text)
    except CIDError:
        return
    assert CID.parse(str(cid)) == cid


# -- fixture folder names --------------------------------------------------------


def test_fixture_cid_names(fixtures_dir):
    names = sorted(
        p.name[len("cid-") :]
        for p in (fixtures_dir / "codec").iterdir()
        if p.name.startswith("cid-")
    )
    assert names, "no cid-* fixture folders"
    parsed = 0
    for name in names:
        if name in ("arrayof", "mapof"):  # folders of many CIDs, not CIDs
            continue
        cid = CID.parse(name)
        parsed += 1
        assert CID.from_bytes(bytes(cid)) == cid
        if name.startswith("z"):
            # base58btc CIDv1: prints in base32 by default, base58btc on request
            assert cid.version == 1
            assert cid.encode("base58btc") == name
            assert str(cid) == multiformats.CID.decode(name).encode("base32")
        else:
            assert str(cid) == name
        ref = multiformats.CID.decode(name)
        assert bytes(ref) == bytes(cid)
    assert parsed >= 15


def test_fixture_file_names_are_cids(fixtures_dir):
    """Every codec fixture file is named by its CID, printed canonically."""
    count = 0
    for path in (fixtures_dir / "codec").glob("*/*"):
        if path.suffix not in (".dag-cbor", ".dag-json", ".dag-pb"):
            continue
        cid = CID.parse(path.stem)
        assert str(cid) == path.stem
        count += 1
    assert count > 200
