"""The node's home directory: where its block store and state live.

Chosen in this order: an explicit path, then ``$DATATRANSFER_HOME``, then
``~/.datatransfer``. It is created (with parents) when resolved.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from datatransfer.ipld.blockstore.sqlite import SqliteBlockstore

ENV_VAR = "DATATRANSFER_HOME"
DEFAULT_DIRNAME = ".datatransfer"
BLOCKSTORE_FILE = "blocks.sqlite"
#: File name of the channel store inside the home directory.
CHANNELS_FILE = "channels.sqlite"
LOCK_FILE = "node.lock"


class HomeLocked(RuntimeError):
    """Another process runs a node on this home (same identity, same stores)."""

    def __init__(self, home: Path, pid: int | None) -> None:
        who = f"process {pid}" if pid else "another process"
        super().__init__(
            f"the home {home} is held by {who}, which runs a node on it; stop that "
            "process, or give this one another home (--home or $DATATRANSFER_HOME)")
        self.home = home
        self.pid = pid


class HomeLock:
    """An exclusive lock on a home, held while a node runs on it.

    Two nodes on one home would share one peer id and one channel store;
    the second is refused with :class:`HomeLocked` naming the holder's pid
    (written in the lock file). The lock is an ``flock`` on ``node.lock``,
    so it goes away with the process however it ends (``kill -9`` too).
    Processes that only read or add blocks (``add``, ``cat``, ``ls``) do not
    take it."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self._fd: int | None = None

    def acquire(self) -> HomeLock:
        fd = os.open(self.home / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise HomeLocked(self.home, pid) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.ftruncate(fd, 0)
            os.close(fd)

    def __enter__(self) -> HomeLock:
        return self.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).decode().strip() or 0) or None
    except (OSError, ValueError):
        return None


def resolve_home(home: str | os.PathLike[str] | None = None) -> Path:
    """The home directory to use, created if missing."""
    if home is None or home == "":
        env = os.environ.get(ENV_VAR)
        path = Path(env) if env else Path.home() / DEFAULT_DIRNAME
    else:
        path = Path(home)
    path = path.expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def blockstore_path(home: str | os.PathLike[str] | None = None) -> Path:
    """Where the home's block store database lives."""
    return resolve_home(home) / BLOCKSTORE_FILE


def channels_path(home: str | os.PathLike[str] | None = None) -> Path:
    """Where the home's channel store lives."""
    return resolve_home(home) / CHANNELS_FILE


def open_blockstore(home: str | os.PathLike[str] | None = None) -> SqliteBlockstore:
    """Open (creating if needed) the home's block store: the SQLite index
    ``blocks.sqlite`` and its pack file ``blocks.sqlite.pack`` (a home whose
    store predates the pack is migrated in place; its blocks stay inline)."""
    from datatransfer.ipld.blockstore.sqlite import SqliteBlockstore

    return SqliteBlockstore(blockstore_path(home))
