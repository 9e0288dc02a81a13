"""Content identifiers (CIDv0 and CIDv1).

A :class:`CID` is immutable, hashable and compares by its binary form. It is
on the hot path of every block moved (each received block's CID is rebuilt
from a graphsync prefix and its bytes), so parsing is a few slice operations
and never goes through a generic multiformats registry; the ``multiformats``
package is only used by the tests as an independent reference.
"""

from __future__ import annotations

from datatransfer.ipld import multibase, multihash
from datatransfer.ipld.errors import CIDError, HashMismatch, IPLDError
from datatransfer.ipld.varint import decode_uvarint, encode_uvarint

RAW = 0x55
DAG_PB = 0x70
DAG_CBOR = 0x71
LIBP2P_KEY = 0x72
DAG_JSON = 0x0129

CODEC_NAMES: dict[int, str] = {
    RAW: "raw",
    DAG_PB: "dag-pb",
    DAG_CBOR: "dag-cbor",
    LIBP2P_KEY: "libp2p-key",
    DAG_JSON: "dag-json",
}

_V0_HEAD = b"\x12\x20"


class CID:
    """A content identifier: version, codec and multihash.

    Build one with :meth:`from_bytes`, :meth:`parse` (text), :meth:`from_prefix`
    (graphsync block prefix plus data) or :meth:`of` (hash some bytes).
    """

    __slots__ = ("version", "codec", "hash_code", "digest", "_bytes", "_hash")

    version: int
    codec: int
    hash_code: int
    digest: bytes
    _bytes: bytes
    _hash: int

    def __init__(self, version: int, codec: int, mh: bytes) -> None:
        """Build a CID from its parts; ``mh`` is a whole multihash."""
        code, dig, end = multihash.decode(mh)
        if end != len(mh):
            raise CIDError("trailing bytes after multihash")
        if version == 0:
            if codec != DAG_PB or code != multihash.SHA2_256:
                raise CIDError("CIDv0 must be dag-pb with sha2-256")
            raw = bytes(mh)
        elif version == 1:
            raw = encode_uvarint(1) + encode_uvarint(codec) + bytes(mh)
        else:
            raise CIDError(f"unsupported CID version {version}")
        self._set(version, codec, code, dig, raw)

    def _set(self, version: int, codec: int, code: int, dig: bytes, raw: bytes) -> None:
        object.__setattr__(self, "version", version)
        object.__setattr__(self, "codec", codec)
        object.__setattr__(self, "hash_code", code)
        object.__setattr__(self, "digest", dig)
        object.__setattr__(self, "_bytes", raw)
        object.__setattr__(self, "_hash", hash(raw))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("CID is immutable")

    # -- constructors -------------------------------------------------------

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> CID:
        """Parse a binary CID; the whole input must be one CID."""
        cid, end = cls.read(data, 0)
        if end != len(data):
            raise CIDError(f"{len(data) - end} trailing bytes after CID")
        return cid

    @classmethod
    def read(cls, data: bytes | bytearray | memoryview, offset: int = 0) -> tuple[CID, int]:
        """Parse one binary CID at ``offset``; return ``(cid, offset_after)``.

        Used by CAR readers, where CIDs are not length-prefixed.
        """
        try:
            if data[offset : offset + 2] == _V0_HEAD:
                end = offset + 34
                if end > len(data):
                    raise CIDError("truncated CIDv0")
                raw = bytes(data[offset:end])
                return cls._make(0, DAG_PB, multihash.SHA2_256, raw[2:], raw), end
            version, pos = decode_uvarint(data, offset)
            if version != 1:
                raise CIDError(f"unsupported CID version {version}")
            codec, pos = decode_uvarint(data, pos)
            code, dig, end = multihash.decode(data, pos)
        except CIDError:
            raise
        except IPLDError as exc:
            raise CIDError(f"invalid CID: {exc}") from None
        return cls._make(1, codec, code, dig, bytes(data[offset:end])), end

    @classmethod
    def _make(cls, version: int, codec: int, code: int, dig: bytes, raw: bytes) -> CID:
        obj = object.__new__(cls)
        obj._set(version, codec, code, dig, raw)
        return obj

    @classmethod
    def parse(cls, text: str) -> CID:
        """Parse a CID from text: bare base58btc CIDv0 or any multibase CIDv1."""
        if not isinstance(text, str):
            raise CIDError(f"CID text must be str, not {type(text).__name__}")
        text = text.strip()
        if len(text) == 46 and text.startswith("Qm"):
            return cls.from_bytes(multibase.b58decode(text))
        data = multibase.decode(text)
        cid = cls.from_bytes(data)
        if cid.version == 0:
            raise CIDError("CIDv0 must be written in bare base58btc")
        return cid

    @classmethod
    def of(
        cls,
        data: bytes | bytearray | memoryview,
        codec: int = RAW,
        hash_code: int = multihash.SHA2_256,
        version: int = 1,
    ) -> CID:
        """The CID of ``data`` under ``codec`` and hash function ``hash_code``."""
        dig = multihash.digest(hash_code, data)
        if version == 0:
            if codec != DAG_PB or hash_code != multihash.SHA2_256:
                raise CIDError("CIDv0 must be dag-pb with sha2-256")
            return cls._make(0, DAG_PB, hash_code, dig, _V0_HEAD + dig)
        if version != 1:
            raise CIDError(f"unsupported CID version {version}")
        raw = (
            encode_uvarint(1)
            + encode_uvarint(codec)
            + encode_uvarint(hash_code)
            + encode_uvarint(len(dig))
            + dig
        )
        return cls._make(1, codec, hash_code, dig, raw)

    # -- graphsync prefixes --------------------------------------------------

    @property
    def prefix(self) -> bytes:
        """The graphsync block prefix: version, codec, hash code, digest length."""
        return (
            encode_uvarint(self.version)
            + encode_uvarint(self.codec)
            + encode_uvarint(self.hash_code)
            + encode_uvarint(len(self.digest))
        )

    @classmethod
    def from_prefix(cls, prefix: bytes, data: bytes | bytearray | memoryview) -> CID:
        """Rebuild a block's CID by hashing ``data`` as ``prefix`` says."""
        try:
            version, pos = decode_uvarint(prefix, 0)
            codec, pos = decode_uvarint(prefix, pos)
            code, pos = decode_uvarint(prefix, pos)
            length, pos = decode_uvarint(prefix, pos)
        except IPLDError as exc:
            raise CIDError(f"invalid CID prefix: {exc}") from None
        if pos != len(prefix):
            raise CIDError("trailing bytes after CID prefix")
        cid = cls.of(data, codec=codec, hash_code=code, version=version)
        if len(cid.digest) != length:
            raise CIDError(f"prefix digest length {length} does not match the hash function")
        return cid

    # -- checks and forms ----------------------------------------------------

    def verify(self, data: bytes | bytearray | memoryview) -> None:
        """Raise :class:`HashMismatch` unless ``data`` hashes to this CID."""
        if multihash.digest(self.hash_code, data) != self.digest:
            raise HashMismatch(self)

    def matches(self, data: bytes | bytearray | memoryview) -> bool:
        """True when ``data`` hashes to this CID."""
        return multihash.digest(self.hash_code, data) == self.digest

    @property
    def multihash(self) -> bytes:
        """The multihash (function code, length, digest)."""
        return encode_uvarint(self.hash_code) + encode_uvarint(len(self.digest)) + self.digest

    @property
    def codec_name(self) -> str:
        return CODEC_NAMES.get(self.codec, f"0x{self.codec:x}")

    def to_v1(self) -> CID:
        """The same content as a CIDv1."""
        if self.version == 1:
            return self
        return CID(1, self.codec, self.multihash)

    def encode(self, base: str = "default") -> str:
        """Text form: base58btc for CIDv0, base32 (``b``) for CIDv1.

        ``base`` may be ``"base32"`` or ``"base58btc"`` for CIDv1.
        """
        if self.version == 0:
            return multibase.b58encode(self._bytes)
        if base in ("default", "base32"):
            return "b" + multibase.b32encode(self._bytes)
        if base == "base58btc":
            return "z" + multibase.b58encode(self._bytes)
        raise CIDError(f"unsupported base {base!r}")

    def __bytes__(self) -> bytes:
        return self._bytes

    @property
    def buffer(self) -> bytes:
        """The binary form (same as ``bytes(cid)``)."""
        return self._bytes

    def __str__(self) -> str:
        return self.encode()

    def __repr__(self) -> str:
        return f"CID({self.encode()!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, CID):
            return self._bytes == other._bytes
        return NotImplemented

    def __hash__(self) -> int:
        return self._hash

    def __lt__(self, other: CID) -> bool:
        return self._bytes < other._bytes

    def __reduce__(self):
        return (CID.from_bytes, (self._bytes,))
