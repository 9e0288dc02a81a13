"""Block stores: content-addressed storage of verified blocks.

A :class:`Blockstore` maps a CID to the bytes of its block. The contract every
implementation keeps:

* **Only verified blocks get in.** :meth:`Blockstore.put` hashes the bytes
  with the CID's hash function and raises
  :class:`~datatransfer.ipld.errors.HashMismatch` if they differ, or
  :class:`~datatransfer.ipld.errors.MultihashError` if the hash function is
  not one this library can compute: what cannot be verified is refused.
  Bytes that fail are never stored.
* **Keyed by the whole CID.** The key is the CID's full binary form (version,
  codec and multihash), not just the multihash: a CIDv0 and the CIDv1 of the
  same bytes, or the same bytes read as raw and as dag-pb, are separate
  entries. This is simple and unambiguous (``has(cid)`` means exactly that
  block under exactly that CID), at the cost of storing such duplicates twice.
* A :class:`~datatransfer.ipld.block.Block` is taken without hashing again:
  it can only be made by hashing or verifying its bytes.
* :meth:`Blockstore.put_many` is all-or-nothing: every block is verified
  before any is stored, and a durable store writes the batch in one
  transaction, so a crash leaves the whole batch or none of it.
* Putting a block that is already present is a no-op (after verification).
* :meth:`Blockstore.delete` of an absent block is a no-op; it returns whether
  a block was removed.
* Methods are synchronous and thread-safe. Stores are context managers;
  any use after :meth:`Blockstore.close` raises :class:`ValueError`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator

from datatransfer.ipld import multihash
from datatransfer.ipld.block import Block
from datatransfer.ipld.cid import CID
from datatransfer.ipld.errors import IPLDError

__all__ = [
    "BlockNotFound",
    "Blockstore",
    "MemoryBlockstore",
    "SqliteBlockstore",
    "block_loader",
]


class BlockNotFound(IPLDError, KeyError):
    """The store holds no block under this CID."""

    def __init__(self, cid: CID) -> None:
        self.cid = cid
        super().__init__(f"block not found: {cid}")

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return str(self.args[0])


class Blockstore(ABC):
    """Interface of a block store; see the module docstring for the contract."""

    #: Its methods wait on files (or a network): code on an event loop runs
    #: its writes in a worker thread rather than stall every other task.
    blocking_io = False

    @abstractmethod
    def put(self, cid: CID, data: bytes | bytearray | memoryview) -> None:
        """Verify ``data`` against ``cid`` and store it."""

    @abstractmethod
    def put_many(
        self, blocks: Iterable[Block | tuple[CID, bytes | bytearray | memoryview]]
    ) -> None:
        """Verify every block, then store them all in one step (all or nothing)."""

    @abstractmethod
    def get(self, cid: CID) -> bytes:
        """The block's bytes; raises :class:`BlockNotFound`."""

    @abstractmethod
    def get_size(self, cid: CID) -> int:
        """The block's length in bytes; raises :class:`BlockNotFound`."""

    @abstractmethod
    def has(self, cid: CID) -> bool:
        """True when the store holds a block under ``cid``."""

    @abstractmethod
    def delete(self, cid: CID) -> bool:
        """Remove the block if present; return whether one was removed."""

    @abstractmethod
    def iterate(self) -> Iterator[CID]:
        """Every stored CID, in binary-CID order.

        Blocks put or deleted while iterating may or may not be seen.
        """

    @abstractmethod
    def size(self) -> int:
        """How many blocks the store holds."""

    @abstractmethod
    def total_bytes(self) -> int:
        """Sum of the sizes of all stored blocks."""

    @abstractmethod
    def close(self) -> None:
        """Release resources; closing twice is allowed."""

    # -- conveniences built on the abstract methods ---------------------------

    def __iter__(self) -> Iterator[CID]:
        return self.iterate()

    def __contains__(self, cid: object) -> bool:
        return isinstance(cid, CID) and self.has(cid)

    def __len__(self) -> int:
        return self.size()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def block_loader(blockstore: Blockstore | Callable[[CID], bytes]) -> Callable[[CID], bytes]:
    """A ``load(cid) -> bytes`` for traversals over ``blockstore`` (or over a
    plain get function). Identity CIDs carry their block inline, so they are
    answered from the CID itself and never looked up."""
    get = blockstore.get if hasattr(blockstore, "get") else blockstore

    def load(cid: CID) -> bytes:
        if cid.hash_code == multihash.IDENTITY:
            return cid.digest
        return get(cid)

    return load


def _verified(
    blocks: Iterable[Block | tuple[CID, bytes | bytearray | memoryview]],
) -> list[tuple[CID, bytes]]:
    """Verify every block (raising on the first bad one); return them as bytes.

    A :class:`~datatransfer.ipld.block.Block` was verified when it was made,
    so it is not hashed again.
    """
    out = []
    for item in blocks:
        if type(item) is Block:
            out.append((item.cid, item.data))
            continue
        cid, data = item
        if not isinstance(cid, CID):
            raise TypeError(f"expected a CID, got {type(cid).__name__}")
        cid.verify(data)
        out.append((cid, bytes(data)))
    return out


from datatransfer.ipld.blockstore.memory import MemoryBlockstore  # noqa: E402
from datatransfer.ipld.blockstore.sqlite import SqliteBlockstore  # noqa: E402
