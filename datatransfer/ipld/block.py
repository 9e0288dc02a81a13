"""Blocks whose bytes are known to hash to their CID.

A :class:`Block` can only come into being by hashing (``Block.of``) or by
verifying (``Block(cid, data)``), so a blockstore can take one without hashing
its bytes a second time. Hashing dominates the cost of importing and moving
blocks, and doing it once instead of twice is the difference between keeping
up with the network and not. Plain ``(cid, data)`` pairs are still verified.
"""

from __future__ import annotations

from collections.abc import Iterator

from datatransfer.ipld import multihash
from datatransfer.ipld.cid import CID, RAW


class Block:
    """An immutable ``(cid, data)`` pair whose data is known to match the CID.

    Unpacks like a tuple: ``cid, data = block``.
    """

    __slots__ = ("cid", "data")

    cid: CID
    data: bytes

    def __init__(self, cid: CID, data: bytes | bytearray | memoryview) -> None:
        """Verify ``data`` against ``cid``; raises ``HashMismatch`` (or
        ``MultihashError`` for a hash function this library cannot compute)."""
        data = bytes(data)
        cid.verify(data)
        object.__setattr__(self, "cid", cid)
        object.__setattr__(self, "data", data)

    @classmethod
    def of(
        cls,
        data: bytes | bytearray | memoryview,
        codec: int = RAW,
        hash_code: int = multihash.SHA2_256,
        version: int = 1,
    ) -> Block:
        """Hash ``data`` into a new block."""
        data = bytes(data)
        return cls._hashed(CID.of(data, codec=codec, hash_code=hash_code, version=version), data)

    @classmethod
    def _hashed(cls, cid: CID, data: bytes) -> Block:
        """For code in this package that has just computed ``cid`` from
        exactly ``data`` (the UnixFS importer): skips the second hash."""
        obj = object.__new__(cls)
        object.__setattr__(obj, "cid", cid)
        object.__setattr__(obj, "data", data)
        return obj

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Block is immutable")

    def __iter__(self) -> Iterator[CID | bytes]:
        yield self.cid
        yield self.data

    def __len__(self) -> int:
        return 2

    def __getitem__(self, i: int) -> CID | bytes:
        return (self.cid, self.data)[i]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Block):
            return self.cid == other.cid and self.data == other.data
        if isinstance(other, tuple):
            return (self.cid, self.data) == other
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.cid)

    def __repr__(self) -> str:
        return f"Block({self.cid}, {len(self.data)} bytes)"
