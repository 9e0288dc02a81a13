"""A durable block store in one SQLite file.

Layout: one table ``blocks(cid BLOB PRIMARY KEY, size INTEGER, data BLOB)``
keyed by the full binary CID; ``PRAGMA user_version`` holds the schema
version.

Durability. The database runs in WAL mode. Every :meth:`put` is one
transaction and every :meth:`put_many` is one transaction, so a crash
(process killed, power lost) never leaves part of a batch or part of a block:
after recovery each batch is entirely present or entirely absent, and every
stored block still hashes to its CID.

``synchronous`` chooses what a *committed* transaction survives:

* ``"NORMAL"`` (the default): a commit survives the process crashing, but
  the last transactions before an operating-system crash or power loss may be
  rolled back (the WAL is fsynced at checkpoints, not at every commit). The
  database stays consistent either way. This costs no fsync per block, which
  matters when blocks arrive one at a time. The trade-off: if the caller
  records progress elsewhere durably ("block X received") and the machine
  then loses power, the store may lack blocks that record names; a
  data-transfer restart must then re-check with :meth:`has`, not trust the
  record.
* ``"FULL"``: every commit is fsynced before it returns; nothing acknowledged
  is lost, at the price of one fsync per transaction (use :meth:`put_many`
  to amortise it).

Reads go through a memory map of the file (``mmap_size`` bytes of it at
most, SQLite's own limit permitting): a block's pages are copied out of the
page cache instead of read with a system call each, about half the CPU of a
256 KiB block's read.

Threads. The connection is opened with ``check_same_thread=False`` and every
method holds one re-entrant lock while it uses it, so a store may be shared
by the event loop and worker threads; calls are serialised (a single
connection is not a reader pool). Several processes may open the same file;
SQLite's own locking then applies (``timeout`` seconds of waiting on a busy
database before :class:`sqlite3.OperationalError`).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator

from datatransfer.ipld.block import Block
from datatransfer.ipld.blockstore import BlockNotFound, Blockstore, _verified
from datatransfer.ipld.cid import CID

SCHEMA_VERSION = 1
_SYNC_MODES = ("NORMAL", "FULL", "EXTRA")
_PAGE = 1000  # CIDs fetched per query while iterating
#: Bytes of the file read through a memory map (SQLite caps it at its
#: compile-time limit, 2 GiB by default; beyond that, reads are plain reads).
MMAP_SIZE = 1 << 31


class SqliteBlockstore(Blockstore):
    """Blocks in an SQLite database at ``path`` (``":memory:"`` for a
    throw-away in-memory one); see the module docstring for durability."""

    blocking_io = True

    def __init__(
        self,
        path: str | os.PathLike[str] = ":memory:",
        *,
        synchronous: str = "NORMAL",
        timeout: float = 30.0,
        mmap_size: int = MMAP_SIZE,
    ) -> None:
        sync = synchronous.upper()
        if sync not in _SYNC_MODES:
            raise ValueError(f"synchronous must be one of {_SYNC_MODES}, not {synchronous!r}")
        self.path = os.fspath(path)
        self._lock = threading.RLock()
        # isolation_level=None: no implicit transactions; we issue BEGIN/COMMIT.
        conn = sqlite3.connect(
            self.path, timeout=timeout, isolation_level=None, check_same_thread=False
        )
        try:
            self.journal_mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            conn.execute(f"PRAGMA synchronous={sync}")
            conn.execute(f"PRAGMA mmap_size={int(mmap_size)}")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise ValueError(f"{self.path}: unknown blockstore schema version {version}")
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS blocks ("
                " cid BLOB PRIMARY KEY NOT NULL,"
                " size INTEGER NOT NULL,"  # before data: reading it skips the blob
                " data BLOB NOT NULL)"
            )
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.close()
            raise
        self._conn: sqlite3.Connection | None = conn

    # -- helpers --------------------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise ValueError("blockstore is closed")
        return self._conn

    def _one(self, sql: str, args: tuple = ()) -> tuple | None:
        with self._lock:
            return self._db().execute(sql, args).fetchone()

    # -- writes ---------------------------------------------------------------

    def put(self, cid: CID, data: bytes | bytearray | memoryview) -> None:
        ((cid, data),) = _verified(((cid, data),))
        with self._lock:
            self._db().execute(
                "INSERT OR IGNORE INTO blocks (cid, size, data) VALUES (?, ?, ?)",
                (cid.buffer, len(data), data),
            )

    def put_many(
        self, blocks: Iterable[Block | tuple[CID, bytes | bytearray | memoryview]]
    ) -> None:
        checked = _verified(blocks)
        if not checked:
            return
        rows = [(cid.buffer, len(data), data) for cid, data in checked]
        with self._lock:
            conn = self._db()
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(
                    "INSERT OR IGNORE INTO blocks (cid, size, data) VALUES (?, ?, ?)", rows
                )
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def delete(self, cid: CID) -> bool:
        with self._lock:
            cur = self._db().execute("DELETE FROM blocks WHERE cid = ?", (cid.buffer,))
            return cur.rowcount > 0

    # -- reads ----------------------------------------------------------------

    def get(self, cid: CID) -> bytes:
        row = self._one("SELECT data FROM blocks WHERE cid = ?", (cid.buffer,))
        if row is None:
            raise BlockNotFound(cid)
        return row[0]

    def get_size(self, cid: CID) -> int:
        row = self._one("SELECT size FROM blocks WHERE cid = ?", (cid.buffer,))
        if row is None:
            raise BlockNotFound(cid)
        return row[0]

    def has(self, cid: CID) -> bool:
        return self._one("SELECT 1 FROM blocks WHERE cid = ?", (cid.buffer,)) is not None

    def iterate(self) -> Iterator[CID]:
        """Every stored CID in binary order, read a page at a time (no
        transaction or lock is held between pages)."""
        with self._lock:
            self._db()  # fail now, not on first next(), if closed
        return self._pages()

    def _pages(self) -> Iterator[CID]:
        after = b""
        while True:
            with self._lock:
                rows = (
                    self._db()
                    .execute(
                        "SELECT cid FROM blocks WHERE cid > ? ORDER BY cid LIMIT ?",
                        (after, _PAGE),
                    )
                    .fetchall()
                )
            for (raw,) in rows:
                yield CID.from_bytes(raw)
            if len(rows) < _PAGE:
                return
            after = rows[-1][0]

    def size(self) -> int:
        """Number of blocks (a ``count(*)``: linear in the number of blocks)."""
        return self._one("SELECT count(*) FROM blocks")[0]

    def total_bytes(self) -> int:
        """Sum of block sizes (a scan of the size column, not of the blobs)."""
        return self._one("SELECT coalesce(sum(size), 0) FROM blocks")[0]

    # -- lifecycle ------------------------------------------------------------

    def checkpoint(self) -> None:
        """Fold the WAL into the main database file and truncate it."""
        with self._lock:
            self._db().execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                conn.close()
