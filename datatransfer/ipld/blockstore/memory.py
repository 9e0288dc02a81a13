"""An in-memory block store (tests, caches, small transfers)."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator

from datatransfer.ipld.block import Block
from datatransfer.ipld.blockstore import BlockNotFound, Blockstore, _verified
from datatransfer.ipld.cid import CID


class MemoryBlockstore(Blockstore):
    """Blocks in a dict keyed by CID (whose equality is its full binary form).

    Thread-safe: every method holds one lock; :meth:`iterate` walks a
    snapshot taken under it.
    """

    def __init__(self) -> None:
        self._blocks: dict[CID, bytes] = {}
        self._total = 0
        self._lock = threading.Lock()
        self._closed = False

    def _check(self) -> None:
        if self._closed:
            raise ValueError("blockstore is closed")

    def put(self, cid: CID, data: bytes | bytearray | memoryview) -> None:
        ((cid, data),) = _verified(((cid, data),))
        with self._lock:
            self._check()
            self._insert(cid, data)

    def _insert(self, cid: CID, data: bytes) -> None:
        if cid not in self._blocks:
            self._blocks[cid] = data
            self._total += len(data)

    def put_many(
        self, blocks: Iterable[Block | tuple[CID, bytes | bytearray | memoryview]]
    ) -> None:
        checked = _verified(blocks)
        with self._lock:
            self._check()
            for cid, data in checked:
                self._insert(cid, data)

    def get(self, cid: CID) -> bytes:
        with self._lock:
            self._check()
            try:
                return self._blocks[cid]
            except KeyError:
                raise BlockNotFound(cid) from None

    def get_size(self, cid: CID) -> int:
        return len(self.get(cid))

    def has(self, cid: CID) -> bool:
        with self._lock:
            self._check()
            return cid in self._blocks

    def delete(self, cid: CID) -> bool:
        with self._lock:
            self._check()
            data = self._blocks.pop(cid, None)
            if data is None:
                return False
            self._total -= len(data)
            return True

    def iterate(self) -> Iterator[CID]:
        with self._lock:
            self._check()
            snapshot = sorted(self._blocks)
        return iter(snapshot)

    def size(self) -> int:
        with self._lock:
            self._check()
            return len(self._blocks)

    def total_bytes(self) -> int:
        with self._lock:
            self._check()
            return self._total

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._blocks = {}
            self._total = 0
