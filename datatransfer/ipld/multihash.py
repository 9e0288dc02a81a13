"""Multihashes: the hash functions a CID may name, and digest helpers.

Kept to the functions content-addressed transfers meet in practice: sha2-256
(the default everywhere), sha2-512, blake2b-256, sha3-256 and identity (for
tiny inline blocks). All come from :mod:`hashlib`, so hashing runs in C.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from datatransfer.ipld.errors import MultihashError
from datatransfer.ipld.varint import decode_uvarint, encode_uvarint

IDENTITY = 0x00
SHA2_256 = 0x12
SHA2_512 = 0x13
SHA3_256 = 0x16
BLAKE2B_256 = 0xB220

#: Largest digest accepted for the identity hash; longer "identity CIDs" are a
#: way to smuggle whole blocks into links and are refused.
MAX_IDENTITY_DIGEST = 128


def _identity(data: bytes) -> bytes:
    return bytes(data)


_HASHERS: dict[int, tuple[str, Callable[[bytes], bytes], int | None]] = {
    IDENTITY: ("identity", _identity, None),
    SHA2_256: ("sha2-256", lambda d: hashlib.sha256(d).digest(), 32),
    SHA2_512: ("sha2-512", lambda d: hashlib.sha512(d).digest(), 64),
    SHA3_256: ("sha3-256", lambda d: hashlib.sha3_256(d).digest(), 32),
    BLAKE2B_256: ("blake2b-256", lambda d: hashlib.blake2b(d, digest_size=32).digest(), 32),
}

NAMES: dict[str, int] = {name: code for code, (name, _, _) in _HASHERS.items()}


def name_of(code: int) -> str:
    """The multicodec name of a hash function code."""
    try:
        return _HASHERS[code][0]
    except KeyError:
        raise MultihashError(f"unsupported multihash function 0x{code:x}") from None


def digest(code: int, data: bytes | bytearray | memoryview) -> bytes:
    """Hash ``data`` with the function ``code``; return the raw digest."""
    try:
        fn = _HASHERS[code][1]
    except KeyError:
        raise MultihashError(f"unsupported multihash function 0x{code:x}") from None
    out = fn(data)
    if code == IDENTITY and len(out) > MAX_IDENTITY_DIGEST:
        raise MultihashError(f"identity digest of {len(out)} bytes exceeds {MAX_IDENTITY_DIGEST}")
    return out


def encode(code: int, raw_digest: bytes) -> bytes:
    """Wrap a raw digest as a multihash (code, length, digest)."""
    expected = _HASHERS.get(code)
    if expected is not None and expected[2] is not None and len(raw_digest) != expected[2]:
        raise MultihashError(
            f"{expected[0]} digest must be {expected[2]} bytes, got {len(raw_digest)}"
        )
    return encode_uvarint(code) + encode_uvarint(len(raw_digest)) + bytes(raw_digest)


def sum(code: int, data: bytes | bytearray | memoryview) -> bytes:  # noqa: A001
    """The multihash of ``data`` under the function ``code``."""
    return encode(code, digest(code, data))


#: Longest digest accepted from an unknown hash function when parsing.
MAX_DIGEST = 128


def is_supported(code: int) -> bool:
    """True when this library can compute (and so verify) the hash ``code``."""
    return code in _HASHERS


def decode(mh: bytes, offset: int = 0) -> tuple[int, bytes, int]:
    """Parse a multihash at ``offset``; return ``(code, digest, offset_after)``.

    Hash functions we do not implement are accepted (a CID naming one can be
    stored, printed and compared, but not verified); a function we do know
    must carry a digest of its fixed length.
    """
    code, pos = decode_uvarint(mh, offset)
    length, pos = decode_uvarint(mh, pos)
    entry = _HASHERS.get(code)
    if entry is not None and entry[2] is not None and length != entry[2]:
        raise MultihashError(f"{entry[0]} digest must be {entry[2]} bytes, got {length}")
    if length > MAX_DIGEST:
        raise MultihashError(f"digest of {length} bytes exceeds {MAX_DIGEST}")
    end = pos + length
    if end > len(mh):
        raise MultihashError("truncated multihash digest")
    return code, bytes(mh[pos:end]), end
