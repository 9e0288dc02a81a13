"""The SQLite block store's pack file: block bytes appended once beside an
index, stores of the older all-inline schema still opened, and the tail a
crash leaves between the pack's write and the index's commit cut at open."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from _support import DEADLINE

from datatransfer.ipld.blockstore import SqliteBlockstore
from datatransfer.ipld.blockstore import sqlite as sqlite_store
from datatransfer.ipld.blockstore.sqlite import PACK_SUFFIX
from datatransfer.ipld.cid import CID, RAW

REPO = Path(__file__).resolve().parents[1]


def block(n: int, size: int = 1000) -> tuple[CID, bytes]:
    data = (f"block {n}:".encode() * (size // 8 + 1))[:size]
    return CID.of(data, RAW), data


def pack_of(path: Path) -> Path:
    return Path(str(path) + PACK_SUFFIX)


def test_block_bytes_go_to_the_pack_once(tmp_path):
    path = tmp_path / "blocks.sqlite"
    blocks = [block(i, 50_000) for i in range(8)]
    with SqliteBlockstore(path) as s:
        s.put_many(blocks[:5])
        s.put(*blocks[5])
        s.put_many([*blocks[5:], blocks[6], blocks[0]])  # held and repeated: stored once
        rows = s._db().execute("SELECT length(data), pack_offset FROM blocks").fetchall()
        assert all(length == 0 and offset is not None for length, offset in rows)
        assert pack_of(path).stat().st_size == s.total_bytes() == 8 * 50_000
        s.checkpoint()
    # the database holds the index only
    assert path.stat().st_size < 50_000
    with SqliteBlockstore(path) as s:
        assert [s.get(cid) for cid, _ in blocks] == [data for _, data in blocks]
        assert s.get_size(blocks[3][0]) == 50_000


def test_delete_then_put_again(tmp_path):
    path = tmp_path / "blocks.sqlite"
    cid, data = block(1)
    with SqliteBlockstore(path) as s:
        s.put(cid, data)
        assert s.delete(cid) and not s.has(cid)
        s.put(cid, data)
        assert s.get(cid) == data and s.size() == 1


def test_pwritev_writing_less_than_asked(tmp_path, monkeypatch):
    """Every byte lands where its row says, however short each write."""
    real = os.pwritev

    def short(fd, buffers, offset):
        first = bytes(buffers[0])[:777]
        return real(fd, [first], offset)

    monkeypatch.setattr(sqlite_store.os, "pwritev", short)
    blocks = [block(i, 2000 + i) for i in range(5)]
    with SqliteBlockstore(tmp_path / "b.sqlite") as s:
        s.put_many(blocks)
        assert [s.get(cid) for cid, _ in blocks] == [data for _, data in blocks]


def _v1_store(path: Path, blocks: list[tuple[CID, bytes]]) -> None:
    """A store as schema version 1 wrote it: every block inline."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE blocks (cid BLOB PRIMARY KEY NOT NULL,"
                 " size INTEGER NOT NULL, data BLOB NOT NULL)")
    conn.executemany("INSERT INTO blocks VALUES (?, ?, ?)",
                     [(cid.buffer, len(data), data) for cid, data in blocks])
    conn.execute("PRAGMA user_version=1")
    conn.commit()
    conn.close()


def test_a_version_1_store_is_migrated_in_place(tmp_path):
    path = tmp_path / "blocks.sqlite"
    old = [block(i) for i in range(3)]
    new = [block(i) for i in range(3, 6)]
    _v1_store(path, old)
    with SqliteBlockstore(path) as s:
        assert [s.get(cid) for cid, _ in old] == [data for _, data in old]
        s.put_many([*new, old[0]])
        assert s._db().execute("PRAGMA user_version").fetchone()[0] == 2
    assert pack_of(path).stat().st_size == sum(len(d) for _, d in new)
    with SqliteBlockstore(path) as s:
        assert sorted(s) == sorted(cid for cid, _ in old + new)
        assert all(s.get(cid) == data for cid, data in old + new)
        assert s.total_bytes() == sum(len(d) for _, d in old + new)


def test_an_index_beyond_its_pack_is_refused(tmp_path):
    path = tmp_path / "blocks.sqlite"
    with SqliteBlockstore(path) as s:
        s.put_many([block(1), block(2)])
    os.truncate(pack_of(path), 1500)
    with pytest.raises(ValueError, match="truncated or replaced"):
        SqliteBlockstore(path)


# A writer killed between the pack's write (and fdatasync) and the commit of
# the rows naming it: the moment that leaves bytes past the committed end.
_TORN = r"""
import os, signal, sys
from datatransfer.ipld.blockstore import SqliteBlockstore
from datatransfer.ipld.blockstore import sqlite as sqlite_store
from datatransfer.ipld.cid import CID

path = sys.argv[1]
def blocks(tag):
    out = []
    for i in range(4):
        data = f"{tag}{i}".encode() * 5000
        out.append((CID.of(data), data))
    return out

store = SqliteBlockstore(path)
store.put_many(blocks("kept"))
print("committed", flush=True)
real = sqlite_store.os.fdatasync
def die(fd):
    real(fd)  # the torn batch's bytes are on disk: the worst case
    os.kill(os.getpid(), signal.SIGKILL)
sqlite_store.os.fdatasync = die
store.put_many(blocks("torn"))
print("not reached", flush=True)
"""


def _kept_and_torn() -> tuple[list[tuple[CID, bytes]], list[tuple[CID, bytes]]]:
    def blocks(tag: str) -> list[tuple[CID, bytes]]:
        return [(CID.of(d), d) for d in (f"{tag}{i}".encode() * 5000 for i in range(4))]
    return blocks("kept"), blocks("torn")


def test_a_crash_before_the_index_commits_leaves_a_tail_cut_at_open(tmp_path):
    path = tmp_path / "blocks.sqlite"
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", _TORN, str(path)], capture_output=True,
                          text=True, env=env, cwd=REPO, timeout=DEADLINE)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert proc.stdout.split() == ["committed"]
    kept, torn = _kept_and_torn()
    kept_bytes = sum(len(d) for _, d in kept)
    assert pack_of(path).stat().st_size == kept_bytes + sum(len(d) for _, d in torn)
    with SqliteBlockstore(path) as s:
        assert pack_of(path).stat().st_size == kept_bytes  # the tail is cut
        assert sorted(s) == sorted(cid for cid, _ in kept)
        assert all(s.get(cid) == data for cid, data in kept)
        s.put_many(torn[:2])
        assert pack_of(path).stat().st_size == kept_bytes + sum(len(d) for _, d in torn[:2])
    with SqliteBlockstore(path) as s:
        assert all(s.get(cid) == data for cid, data in kept + torn[:2])
        assert not s.has(torn[2][0])
