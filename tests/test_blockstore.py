"""Block stores: the shared contract (run against every implementation),
SQLite persistence, and crash atomicity of SQLite batches."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from _support import DEADLINE

from datatransfer.ipld import multihash
from datatransfer.ipld.blockstore import (
    BlockNotFound,
    Blockstore,
    MemoryBlockstore,
    SqliteBlockstore,
)
from datatransfer.ipld.cid import CID, DAG_CBOR, DAG_PB, RAW
from datatransfer.ipld.errors import HashMismatch, IPLDError, MultihashError

REPO = Path(__file__).resolve().parents[1]


def block(n: int, size: int = 100, codec: int = RAW) -> tuple[CID, bytes]:
    data = (f"block {n}:".encode() * (size // 8 + 1))[:size]
    return CID.of(data, codec), data


@pytest.fixture(params=["memory", "sqlite-memory", "sqlite-file"])
def store(request, tmp_path):
    if request.param == "memory":
        s: Blockstore = MemoryBlockstore()
    elif request.param == "sqlite-memory":
        s = SqliteBlockstore(":memory:")
    else:
        s = SqliteBlockstore(tmp_path / "blocks.db")
    yield s
    s.close()


# -- the contract ---------------------------------------------------------------


def test_empty(store):
    assert store.size() == 0 and len(store) == 0
    assert store.total_bytes() == 0
    assert list(store.iterate()) == [] and list(store) == []
    cid, _ = block(1)
    assert not store.has(cid) and cid not in store


def test_put_get_has_size(store):
    cid, data = block(1, 300)
    store.put(cid, data)
    assert store.get(cid) == data
    assert isinstance(store.get(cid), bytes)
    assert store.has(cid) and cid in store
    assert store.get_size(cid) == 300
    assert store.size() == 1 and store.total_bytes() == 300
    store.put(cid, bytearray(data))  # again: no-op
    store.put(cid, memoryview(data))
    assert store.size() == 1 and store.total_bytes() == 300


def test_put_refuses_mismatch_and_stores_nothing(store):
    cid, data = block(1)
    with pytest.raises(HashMismatch) as info:
        store.put(cid, data + b"!")
    assert info.value.cid == cid
    assert not store.has(cid) and store.size() == 0
    store.put(cid, data)
    with pytest.raises(HashMismatch):  # verified even when already present
        store.put(cid, b"other")
    assert store.get(cid) == data


def test_put_refuses_unverifiable_hash(store):
    cid = CID.from_bytes(b"\x01\x55\xa0\x03\x04abcd")  # hash function 0x1a0: unknown
    with pytest.raises(MultihashError):
        store.put(cid, b"whatever")
    with pytest.raises(MultihashError):
        store.put_many([block(1), (cid, b"whatever")])
    assert store.size() == 0


def test_put_requires_cid(store):
    with pytest.raises(TypeError):
        store.put(bytes(block(1)[0]), block(1)[1])  # type: ignore[arg-type]


def test_put_many_all_or_nothing(store):
    good = [block(i) for i in range(5)]
    bad_cid, bad_data = block(99)
    batch = good[:2] + [(bad_cid, bad_data + b"x")] + good[2:]
    with pytest.raises(HashMismatch):
        store.put_many(batch)
    assert store.size() == 0
    store.put_many(iter(good))  # any iterable
    assert store.size() == 5
    assert all(store.get(c) == d for c, d in good)
    store.put_many([])
    store.put_many(good + good)  # duplicates within and across batches
    assert store.size() == 5
    assert store.total_bytes() == sum(len(d) for _, d in good)


def test_get_missing(store):
    cid, _ = block(1)
    with pytest.raises(BlockNotFound) as info:
        store.get(cid)
    assert info.value.cid == cid
    assert str(cid) in str(info.value)
    with pytest.raises(KeyError):
        store.get_size(cid)
    with pytest.raises(IPLDError):
        store.get(cid)


def test_delete(store):
    (c1, d1), (c2, d2) = block(1, 50), block(2, 70)
    store.put_many([(c1, d1), (c2, d2)])
    assert store.delete(c1) is True
    assert store.delete(c1) is False  # absent: no error
    assert not store.has(c1) and store.has(c2)
    assert store.size() == 1 and store.total_bytes() == 70
    with pytest.raises(BlockNotFound):
        store.get(c1)
    store.put(c1, d1)  # can come back
    assert store.size() == 2


def test_iterate_in_binary_order(store):
    blocks = [block(i, 10 + i) for i in range(20)]
    store.put_many(blocks)
    got = list(store.iterate())
    assert got == sorted(c for c, _ in blocks)
    assert [bytes(c) for c in got] == sorted(bytes(c) for c, _ in blocks)
    assert list(store) == got
    assert all(isinstance(c, CID) for c in got)
    assert store.total_bytes() == sum(len(d) for _, d in blocks)


def test_keyed_by_full_cid(store):
    data = b"same bytes"
    v0 = CID.of(data, DAG_PB, version=0)
    v1 = v0.to_v1()
    raw = CID.of(data, RAW)
    cbor = CID.of(data, DAG_CBOR)
    store.put(v0, data)
    assert store.has(v0)
    assert not store.has(v1) and not store.has(raw) and not store.has(cbor)
    store.put_many([(v1, data), (raw, data)])
    assert store.size() == 3
    assert set(store) == {v0, v1, raw}
    store.delete(v1)
    assert store.has(v0) and store.has(raw)


def test_other_hash_functions(store):
    for code in (multihash.SHA2_512, multihash.SHA3_256, multihash.BLAKE2B_256, multihash.IDENTITY):
        data = f"hash {code}".encode()
        cid = CID.of(data, RAW, code)
        store.put(cid, data)
        assert store.get(cid) == data
    assert store.size() == 4


def test_empty_block(store):
    cid = CID.of(b"", RAW)
    store.put(cid, b"")
    assert store.get(cid) == b"" and store.get_size(cid) == 0 and store.has(cid)


def test_close_and_context_manager(store):
    cid, data = block(1)
    with store as s:
        assert s is store
        s.put(cid, data)
    for op in (
        lambda: store.get(cid),
        lambda: store.has(cid),
        lambda: store.put(cid, data),
        lambda: store.put_many([(cid, data)]),
        lambda: store.size(),
        lambda: store.total_bytes(),
        lambda: store.delete(cid),
        lambda: store.iterate(),
        lambda: store.get_size(cid),
    ):
        with pytest.raises(ValueError):
            op()
    store.close()  # twice is fine


def test_threads(store):
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(60):
                cid, data = block(t * 1000 + i)
                if i % 3:
                    store.put(cid, data)
                else:
                    store.put_many([(cid, data), block(t * 1000 + i + 500)])
                assert store.get(cid) == data
                assert store.has(cid)
                store.size()
                if i % 7 == 0:
                    list(store.iterate())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors
    expected = set()
    for t in range(6):
        for i in range(60):
            expected.add(block(t * 1000 + i)[0])
            if i % 3 == 0:
                expected.add(block(t * 1000 + i + 500)[0])
    assert set(store) == expected
    assert store.size() == len(expected)


def test_is_a_blockstore(store):
    assert isinstance(store, Blockstore)
    with pytest.raises(TypeError):
        Blockstore()  # type: ignore[abstract]


# -- SQLite specifics -------------------------------------------------------------


def test_sqlite_persistence(tmp_path):
    path = tmp_path / "store.db"
    blocks = [block(i, 1000 + i) for i in range(10)]
    with SqliteBlockstore(path) as s:
        assert s.journal_mode == "wal"
        s.put_many(blocks[:5])
        for b in blocks[5:]:
            s.put(*b)
        s.delete(blocks[0][0])
    with SqliteBlockstore(str(path)) as s:
        assert s.size() == 9
        assert not s.has(blocks[0][0])
        for cid, data in blocks[1:]:
            assert s.get(cid) == data
        assert s.total_bytes() == sum(len(d) for _, d in blocks[1:])
        s.checkpoint()


def test_sqlite_iterate_pages(tmp_path):
    with SqliteBlockstore(tmp_path / "many.db") as s:
        blocks = [block(i, 8) for i in range(2500)]  # more than one page of 1000
        s.put_many(blocks)
        it = s.iterate()
        first = next(it)
        s.put(*block(100000, 8))  # writes between pages do not break iteration
        rest = list(it)
        got = [first, *rest]
        assert len(set(got)) == len(got)
        assert set(c for c, _ in blocks) <= set(got)
        assert got == sorted(got)


def test_sqlite_options(tmp_path):
    with SqliteBlockstore(tmp_path / "full.db", synchronous="full") as s:
        s.put(*block(1))
        assert s._db().execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    with pytest.raises(ValueError):
        SqliteBlockstore(tmp_path / "x.db", synchronous="sometimes")


def test_sqlite_reads_through_a_memory_map_and_says_it_does_io(tmp_path):
    """Reads go through a memory map by default (``mmap_size=0``: plain
    reads); an event loop learns from ``blocking_io`` to write in a thread."""
    big = [block(i, 300_000) for i in range(3)]  # overflow pages: the blob path
    with SqliteBlockstore(tmp_path / "m.db") as s:
        assert s._db().execute("PRAGMA mmap_size").fetchone()[0] > 0
        s.put_many(big)
        s.checkpoint()  # in the main file: read through the map
    for mmap_size in (None, 0):
        options = {} if mmap_size is None else {"mmap_size": mmap_size}
        with SqliteBlockstore(tmp_path / "m.db", **options) as s:
            assert (s._db().execute("PRAGMA mmap_size").fetchone()[0] > 0) == (mmap_size is None)
            assert [s.get(cid) for cid, _ in big] == [data for _, data in big]
    assert SqliteBlockstore.blocking_io and not MemoryBlockstore.blocking_io


def test_sqlite_refuses_unknown_schema(tmp_path):
    path = tmp_path / "future.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version=99")
    conn.close()
    with pytest.raises(ValueError, match="schema version"):
        SqliteBlockstore(path)


def test_sqlite_shared_between_connections(tmp_path):
    path = tmp_path / "shared.db"
    with SqliteBlockstore(path) as a, SqliteBlockstore(path) as b:
        a.put(*block(1))
        assert b.has(block(1)[0])


# -- crash atomicity -------------------------------------------------------------

# A writer that loops over batches of ``per`` blocks, each block tagged with its
# batch number. It prints "start N" before each put_many, "inside N" from
# SQLite's progress handler (so while the batch's transaction is open), and
# "done N" once put_many returned.
_WRITER = r"""
import os, sys
from datatransfer.ipld.blockstore import SqliteBlockstore
from datatransfer.ipld.cid import CID

path, first, per, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
store = SqliteBlockstore(path)
current = [None]
said = [None]

def progress():
    if current[0] is not None and said[0] != current[0]:
        said[0] = current[0]
        print(f"inside {current[0]}", flush=True)
    return 0

store._conn.set_progress_handler(progress, 200)
n = first
while True:
    pad = os.urandom(size)
    blocks = []
    for j in range(per):
        data = f"{n}:{j}:".encode() + pad
        blocks.append((CID.of(data), data))
    print(f"start {n}", flush=True)
    current[0] = n
    store.put_many(blocks)
    current[0] = None
    print(f"done {n}", flush=True)
    n += 1
"""

_PER = 300


def _run_and_kill(path: Path, first: int, wait_for: str, delay: float) -> set[int]:
    """Start a writer, SIGKILL it once it printed a line starting with
    ``wait_for`` (after ``delay`` seconds more); return the batches it
    reported done."""
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path), str(first), str(_PER), "2048"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )
    done: set[int] = set()
    deadline = time.monotonic() + DEADLINE
    try:
        assert proc.stdout is not None
        seen_done = 0
        for line in proc.stdout:
            word, num = line.split()
            if word == "done":
                done.add(int(num))
                seen_done += 1
            # let a few batches commit first, then kill at the chosen point
            if seen_done >= 3 and word == wait_for:
                if delay:
                    time.sleep(delay)
                break
            assert time.monotonic() < deadline, "writer too slow"
        else:
            pytest.fail(f"writer exited early: {proc.stderr.read() if proc.stderr else ''}")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        # drain what it printed before dying
        if proc.stdout is not None:
            for line in proc.stdout:
                word, num = line.split()
                if word == "done":
                    done.add(int(num))
    assert proc.returncode == -signal.SIGKILL
    return done


def _check_store(path: Path, done: set[int]) -> dict[int, int]:
    """Every stored block verifies; every batch is whole or absent; every
    batch reported done is there. Returns {batch: block count}."""
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    counts: dict[int, int] = {}
    with SqliteBlockstore(path) as s:
        for cid in s:
            data = s.get(cid)
            cid.verify(data)
            assert s.get_size(cid) == len(data)
            batch = int(data.split(b":", 1)[0])
            counts[batch] = counts.get(batch, 0) + 1
        assert s.size() == sum(counts.values())
    partial = {b: c for b, c in counts.items() if c != _PER}
    assert not partial, f"partially stored batches: {partial}"
    assert done <= set(counts), f"committed batches lost: {done - set(counts)}"
    return counts


@pytest.mark.slow
def test_sqlite_crash_mid_batch_leaves_whole_batches(tmp_path):
    path = tmp_path / "crash.db"
    first = 0
    # kill: while a batch's transaction is open (deterministic), and at
    # varying moments after a batch started (verify, insert or commit).
    for wait_for, delay in [("inside", 0.0), ("inside", 0.002), ("start", 0.0), ("start", 0.005)]:
        done = _run_and_kill(path, first, wait_for, delay)
        counts = _check_store(path, done)
        assert max(done) >= first + 2
        first = max(counts) + 100  # fresh batch numbers for the next writer
    # the store is still usable for writes after all those crashes
    with SqliteBlockstore(path) as s:
        s.put(*block(7))
        assert s.has(block(7)[0])
