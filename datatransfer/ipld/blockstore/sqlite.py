"""A durable block store: an SQLite index and an append-only pack file.

Layout: one table ``blocks(cid BLOB PRIMARY KEY, size INTEGER, data BLOB,
pack_offset INTEGER)`` keyed by the full binary CID, and the pack file
``PATH.pack`` beside the database. A block's bytes are appended to the pack
once and its row holds where (``pack_offset``, ``size``; ``data`` empty).
Why: in the database, WAL mode writes every byte twice (into the WAL, then
into the main file at each checkpoint, in 4 KiB pages: about 230k
``pwrite`` calls and a ``pread`` of each page for 256 MiB), which was the
largest share of a pulling node's CPU; the pack takes each batch in one
``pwritev``. A row whose ``pack_offset`` is NULL holds its bytes in
``data``: stores of schema version 1 (every block inline) are migrated at
open by adding the column, and keep their blocks where they are; a store at
``":memory:"`` (or ``""``) keeps every block inline. ``PRAGMA user_version`` holds the
schema version (2), so an older version of this library refuses a store it
could not read instead of returning empty blocks. One row of table ``pack``
holds the pack's committed end: where the next batch is appended.

Durability. The database runs in WAL mode. Every :meth:`put` is one
transaction and every :meth:`put_many` is one transaction, so a crash
(process killed, power lost) never leaves part of a batch or part of a block:
after recovery each batch is entirely present or entirely absent, and every
stored block still hashes to its CID.

The pack keeps the same promise: a batch's bytes are written (and
``fdatasync``-ed) before the transaction that indexes them commits, so no
committed row ever points at bytes that are not on disk, whatever crashes
when. A crash between the two leaves bytes past the committed end, indexed
by nothing: the next open truncates the pack to its committed end (under
the database's write lock), and the next batch is written there anyway.
Deleting a block removes its row; its bytes stay in the pack (not
reclaimed: nothing in this library deletes blocks on a transfer's path).

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

SCHEMA_VERSION = 2
#: Schema versions this code opens (1: every block inline, migrated at open).
_KNOWN_VERSIONS = (0, 1, SCHEMA_VERSION)
#: Suffix of the pack file's name (beside the database: ``PATH.pack``).
PACK_SUFFIX = ".pack"
#: Buffers per ``pwritev`` call (Linux's IOV_MAX is 1024).
_IOV_MAX = 1024
#: CIDs per ``IN (...)`` query when looking which of a batch are held.
_IN_CHUNK = 500
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
        self._pack: int | None = None  # the pack file's descriptor (None: inline)
        # isolation_level=None: no implicit transactions; we issue BEGIN/COMMIT.
        conn = sqlite3.connect(
            self.path, timeout=timeout, isolation_level=None, check_same_thread=False
        )
        try:
            self.journal_mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            conn.execute(f"PRAGMA synchronous={sync}")
            conn.execute(f"PRAGMA mmap_size={int(mmap_size)}")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version not in _KNOWN_VERSIONS:
                raise ValueError(f"{self.path}: unknown blockstore schema version {version}")
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS blocks ("
                " cid BLOB PRIMARY KEY NOT NULL,"
                " size INTEGER NOT NULL,"  # before data: reading it skips the blob
                " data BLOB NOT NULL,"
                " pack_offset INTEGER)"
            )
            columns = [row[1] for row in conn.execute("PRAGMA table_info(blocks)")]
            if "pack_offset" not in columns:  # a version 1 store: its rows stay inline
                conn.execute("ALTER TABLE blocks ADD COLUMN pack_offset INTEGER")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS pack ("
                " id INTEGER PRIMARY KEY CHECK (id = 0), end_offset INTEGER NOT NULL)"
            )
            conn.execute("INSERT OR IGNORE INTO pack (id, end_offset) VALUES (0, 0)")
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            if self.path not in ("", ":memory:"):  # (those two: throw-away databases)
                self._pack = self._open_pack(conn)
            conn.execute("COMMIT")
        except BaseException:
            if self._pack is not None:
                os.close(self._pack)
            conn.close()
            raise
        self._conn: sqlite3.Connection | None = conn

    def _open_pack(self, conn: sqlite3.Connection) -> int:
        """Open the pack and cut what lies past its committed end (a batch
        whose transaction never committed); called holding the write lock,
        so no other writer is between its write and its commit."""
        end = conn.execute("SELECT end_offset FROM pack WHERE id = 0").fetchone()[0]
        fd = os.open(self.path + PACK_SUFFIX, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            length = os.fstat(fd).st_size
            if length < end:
                raise ValueError(
                    f"{self.path}{PACK_SUFFIX}: {length} bytes, but its index says "
                    f"{end} were written (the pack was truncated or replaced)")
            if length > end:  # a torn or uncommitted tail
                os.ftruncate(fd, end)
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            raise
        return fd

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
        self.put_many(((cid, data),))

    def put_many(
        self, blocks: Iterable[Block | tuple[CID, bytes | bytearray | memoryview]]
    ) -> None:
        checked = _verified(blocks)
        if not checked:
            return
        with self._lock:
            conn = self._db()
            conn.execute("BEGIN IMMEDIATE")
            try:
                if self._pack is None:
                    rows = [(cid.buffer, len(data), data) for cid, data in checked]
                    conn.executemany(
                        "INSERT OR IGNORE INTO blocks (cid, size, data) VALUES (?, ?, ?)", rows
                    )
                else:
                    self._append(conn, self._pack, checked)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def _append(self, conn: sqlite3.Connection, fd: int, blocks: list[tuple[CID, bytes]]) -> None:
        """Within the write transaction: append the blocks not held yet to
        the pack at its committed end, make them durable, then index them
        (the caller commits)."""
        held = _held(conn, [cid.buffer for cid, _ in blocks])
        end = conn.execute("SELECT end_offset FROM pack WHERE id = 0").fetchone()[0]
        rows = []
        buffers = []
        for cid, data in blocks:
            key = cid.buffer
            if key in held:
                continue
            held.add(key)  # the same block twice in one batch: once
            rows.append((key, len(data), end))
            buffers.append(data)
            end += len(data)
        if not rows:
            return
        _pwrite_all(fd, buffers, rows[0][2])
        os.fdatasync(fd)  # the bytes are on disk before any row names them
        conn.executemany(
            "INSERT INTO blocks (cid, size, data, pack_offset) VALUES (?, ?, x'', ?)", rows
        )
        conn.execute("UPDATE pack SET end_offset = ? WHERE id = 0", (end,))

    def delete(self, cid: CID) -> bool:
        with self._lock:
            cur = self._db().execute("DELETE FROM blocks WHERE cid = ?", (cid.buffer,))
            return cur.rowcount > 0

    # -- reads ----------------------------------------------------------------

    def get(self, cid: CID) -> bytes:
        with self._lock:
            row = self._db().execute(
                "SELECT size, pack_offset, data FROM blocks WHERE cid = ?", (cid.buffer,)
            ).fetchone()
            if row is None:
                raise BlockNotFound(cid)
            size, offset, data = row
            if offset is None:
                return data
            assert self._pack is not None
            data = os.pread(self._pack, size, offset)
        if len(data) != size:
            raise OSError(f"{self.path}{PACK_SUFFIX}: block {cid} cut short "
                          f"({len(data)} of {size} bytes at {offset})")
        return data

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
            pack, self._pack = self._pack, None
            if conn is not None:
                conn.close()
            if pack is not None:
                os.close(pack)


def _held(conn: sqlite3.Connection, keys: list[bytes]) -> set[bytes]:
    """Which of ``keys`` (binary CIDs) the store holds."""
    held: set[bytes] = set()
    for i in range(0, len(keys), _IN_CHUNK):
        chunk = keys[i:i + _IN_CHUNK]
        marks = ",".join("?" * len(chunk))
        held.update(row[0] for row in conn.execute(
            f"SELECT cid FROM blocks WHERE cid IN ({marks})", chunk))  # noqa: S608
    return held


def _pwrite_all(fd: int, buffers: list[bytes], offset: int) -> None:
    """Write ``buffers`` one after another at ``offset``, however many
    calls it takes (``pwritev`` may write less than asked)."""
    views = [memoryview(b) for b in buffers]
    i = 0
    while i < len(views):
        done = os.pwritev(fd, views[i:i + _IOV_MAX], offset)
        offset += done
        while i < len(views) and done >= len(views[i]):
            done -= len(views[i])
            i += 1
        if done:
            views[i] = views[i][done:]
