"""Running the project's programs as separate OS processes in tests: the
``datatransfer`` CLI, ``tests/_procnode.py`` nodes, deterministic input
files. Used by the two-process tests and the Go interop tests; the ``procs``
fixture in conftest.py kills whatever a test started.
"""

from __future__ import annotations

import hashlib
import os
import queue
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from _support import DEADLINE

_SCRIPT = Path(sys.executable).with_name("datatransfer")
CLI = (
    [str(_SCRIPT)]
    if _SCRIPT.exists()
    else [sys.executable, "-c", "from datatransfer.cli import main; main()"]
)
PROCNODE = [sys.executable, str(Path(__file__).with_name("_procnode.py"))]
LOOPBACK = "/ip4/127.0.0.1/tcp/0"
#: The deadline of every wait on a child process (a line, an exit, a run).
TIMEOUT = DEADLINE
MIB = 1024 * 1024


def child_env() -> dict[str, str]:
    """The environment for a child process: no inherited node home, wide
    rich tables, unbuffered Python output (lines arrive as printed)."""
    env = dict(os.environ)
    env.pop("DATATRANSFER_HOME", None)
    env["COLUMNS"] = "250"  # rich tables: no wrapping in a pipe
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run(*args: object, ok: bool = True, timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    proc = subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=child_env())
    if ok:
        assert proc.returncode == 0, f"{args}: rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def _die_with_parent() -> None:
    """In the child, before exec: get SIGKILL when the test process dies, so
    no node outlives a test run that was itself killed (Linux only; the
    ``procs`` fixture kills children of a test that merely failed)."""
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class Proc:
    """A child process whose stdout lines are queued and stderr collected."""

    def __init__(self, argv: list[str], *, stdin: bool = False) -> None:
        self.argv = argv
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL, text=True, env=child_env(),
            # a child may log raw bytes (go-data-transfer prints request ids
            # that way): a decode error must not stop the reader, or the
            # child blocks on a full pipe
            errors="replace",
            preexec_fn=_die_with_parent if sys.platform == "linux" else None)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self.stderr: list[str] = []
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read_stdout(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def _read_stderr(self) -> None:
        for line in self.proc.stderr:
            self.stderr.append(line)

    def describe(self) -> str:
        time.sleep(0.2)
        while True:
            try:
                line = self.lines.get_nowait()
            except queue.Empty:
                break
            if line is None:
                self.lines.put(None)
                break
            self.seen.append(line)
        return (f"{self.argv[:3]} rc={self.proc.poll()}\nstdout:\n" + "\n".join(self.seen[-30:])
                + "\nstderr:\n" + "".join(self.stderr[-40:]))

    def expect(self, pred: Callable[[list[str]], bool], timeout: float = TIMEOUT) -> list[str]:
        """The next stdout line (split in words) for which ``pred`` holds."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out waiting for a line\n{self.describe()}")
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                self.lines.put(None)
                raise AssertionError(f"process ended first\n{self.describe()}")
            self.seen.append(line)
            words = line.split()
            if words and pred(words):
                return words

    def collect(self) -> list[str]:
        """Every line printed so far (those not yet read by :meth:`expect` too)."""
        while True:
            try:
                line = self.lines.get_nowait()
            except queue.Empty:
                return self.seen
            if line is None:
                self.lines.put(None)
                return self.seen
            self.seen.append(line)

    def send(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def wait(self, timeout: float = TIMEOUT) -> int:
        rc = self.proc.wait(timeout=timeout)
        return rc

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if f is not None:
                try:
                    f.close()
                except OSError:
                    pass


def cli_serve(start: Callable[..., Proc], home: Path, listen: str = LOOPBACK,
              *extra: str) -> tuple[Proc, str]:
    """``datatransfer serve`` on ``home`` (with ``extra`` arguments) started
    with ``start`` (the ``procs`` fixture); the process and the address it
    printed first."""
    p = start([*CLI, "serve", "--home", str(home), "--listen", listen, *extra])
    addr = p.expect(lambda w: True)[0]
    assert addr.startswith("/ip4/127.0.0.1/tcp/"), p.describe()
    return p, addr


def wait_until(cond: Callable[[], object], what: str, timeout: float = TIMEOUT,
               interval: float = 0.05) -> None:
    """Poll ``cond`` until it holds; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def catches_signal(pid: int, signum: int) -> bool:
    """Whether process ``pid`` has a handler installed for ``signum`` (Linux:
    the SigCgt mask of /proc/PID/status)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    for line in status.splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    return False


def tcp_connected(pid: int, port: int) -> bool:
    """Whether process ``pid`` holds an established TCP connection to
    127.0.0.1:``port`` (Linux: its socket inodes in /proc/net/tcp)."""
    inodes = set()
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[len("socket:["):-1])
        rows = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return False
    want = f"0100007F:{port:04X}"
    for row in rows:
        cols = row.split()
        if cols[2] == want and cols[3] == "01" and cols[9] in inodes:
            return True
    return False


def make_file(path: Path, size: int, seed: int) -> str:
    """Write ``size`` deterministic bytes; return their sha256."""
    rng = random.Random(seed)
    h = hashlib.sha256()
    with path.open("wb") as fh:
        left = size
        while left:
            chunk = rng.randbytes(min(left, 8 * MIB))
            fh.write(chunk)
            h.update(chunk)
            left -= len(chunk)
    return h.hexdigest()


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(MIB), b""):
            h.update(chunk)
    return h.hexdigest()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def split_addr(addr: str) -> tuple[int, str]:
    """(tcp port, peer id) of ``/ip4/127.0.0.1/tcp/<port>/p2p/<id>``."""
    parts = addr.split("/")
    return int(parts[4]), parts[6]
