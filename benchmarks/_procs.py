"""Child processes for the benchmarks that run programs as users run them:
each with a deadline, its stdout lines read as they come (stamped with the
time and the process's CPU then), its stderr in a log file, its CPU time
taken from the kernel (``wait4``'s rusage once it exits, ``/proc/PID/stat``
while it runs)."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

_SCRIPT = Path(sys.executable).with_name("datatransfer")
#: The ``datatransfer`` command as installed (the console script beside this
#: Python), else the same entry point through ``-c``.
CLI = ([str(_SCRIPT)] if _SCRIPT.exists()
       else [sys.executable, "-c", "from datatransfer.cli import main; main()"])
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


class ChildError(RuntimeError):
    """A child process failed, printed something unexpected or missed its deadline."""


def child_env() -> dict[str, str]:
    """The environment of a child: no inherited node home."""
    env = dict(os.environ)
    env.pop("DATATRANSFER_HOME", None)
    return env


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system, every thread) ``pid`` has used so far;
    NaN where ``/proc`` is not there."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return float("nan")
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


@dataclass
class Mark:
    """A moment in a child's run: when, and the CPU seconds it had used by then."""

    at: float
    cpu: float


@dataclass
class Line:
    """One stdout line: when it arrived and the CPU its process had used by then."""

    text: str
    at: float
    cpu: float

    @property
    def words(self) -> list[str]:
        return self.text.split()


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """No child outlives a benchmark that was killed (Linux only)."""
    import ctypes

    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class Child:
    """A running child process; :meth:`finish` reaps it with its rusage."""

    def __init__(self, argv: list[str], log: Path, *, stdin: bool = False) -> None:
        self.argv = argv
        self.log = log
        self.started = time.perf_counter()
        with log.open("wb") as err:
            self.proc = subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=err, env=child_env(),
                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None)
        self.lines: queue.Queue[Line | None] = queue.Queue()
        self.seen: list[Line] = []
        self._exit: tuple[float, int, float] | None = None
        self._exited = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.put(Line(raw.decode(errors="replace").rstrip("\n"),
                                time.perf_counter(), proc_cpu(self.proc.pid)))
        self.lines.put(None)

    def name(self) -> str:
        return " ".join(Path(a).name if i == 0 else a for i, a in enumerate(self.argv[:3]))

    def fail(self, why: str) -> ChildError:
        return ChildError(f"{self.name()}: {why} (its log: {self.log})")

    def expect(self, pred: Callable[[list[str]], bool], deadline: float) -> Line:
        """The next stdout line for which ``pred`` holds (of its words)."""
        end = time.monotonic() + deadline
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, end - time.monotonic()))
            except queue.Empty:
                raise self.fail(f"no expected line within {deadline:.0f} s") from None
            if line is None:
                self.lines.put(None)
                self.proc.wait()
                raise self.fail(f"exited (rc={self.proc.returncode}) before the expected line")
            self.seen.append(line)
            if line.words and pred(line.words):
                return line

    def drain(self) -> list[Line]:
        """Every stdout line, once the process has exited."""
        while True:
            line = self.lines.get()
            if line is None:
                self.lines.put(None)
                return self.seen
            self.seen.append(line)

    def cpu(self) -> float:
        return proc_cpu(self.proc.pid)

    def watch_connection(self, port: int, every: float = 0.01) -> Callable[[], Mark | None]:
        """Start looking (every ``every`` s) for the first established TCP
        connection to 127.0.0.1:``port`` (the server this child dials); the
        result, once the child has exited, is when it was seen and the CPU
        the child had used by then, or None if it was never seen (or there
        is no ``/proc/net/tcp``)."""
        want = f"0100007F:{port:04X}"
        seen: list[Mark] = []

        def look() -> None:
            while self.proc.returncode is None and not self._exited.is_set():
                try:
                    rows = Path("/proc/net/tcp").read_text().splitlines()[1:]
                except OSError:
                    return
                for row in rows:
                    cols = row.split()
                    if cols[2] == want and cols[3] == "01":  # ESTABLISHED
                        seen.append(Mark(time.perf_counter(), self.cpu()))
                        return
                time.sleep(every)

        watcher = threading.Thread(target=look, daemon=True)
        watcher.start()

        def result() -> Mark | None:
            watcher.join(5)
            return seen[0] if seen else None
        return result

    def settled_cpu(self, quiet: float = 0.25, longest: float = 5.0) -> float:
        """CPU time once the process has stopped using any for ``quiet``
        seconds (at most ``longest``): what a server spent on a transfer,
        its tidying after the client left included."""
        end = time.monotonic() + longest
        last = self.cpu()
        while time.monotonic() < end:
            time.sleep(quiet)
            now = self.cpu()
            if now == last:
                break
            last = now
        return last

    def _wait4(self) -> None:
        try:
            _, status, usage = os.wait4(self.proc.pid, 0)
        except ChildProcessError:  # reaped already (by Popen.poll): no rusage
            self.proc.wait()
            self._exit = (time.perf_counter(), self.proc.returncode, float("nan"))
        else:
            at = time.perf_counter()
            self.proc.returncode = os.waitstatus_to_exitcode(status)
            self._exit = (at, self.proc.returncode, usage.ru_utime + usage.ru_stime)
        self._exited.set()

    def finish(self, deadline: float) -> tuple[float, int, float]:
        """Wait for the exit: (when, exit status, CPU seconds it used in all),
        the time taken as the kernel reaps it. Killed past ``deadline``."""
        waiter = threading.Thread(target=self._wait4, daemon=True)
        waiter.start()
        if not self._exited.wait(deadline):
            self.proc.kill()
            self._exited.wait(30)
            raise self.fail(f"did not exit within {deadline:.0f} s; killed")
        assert self._exit is not None
        return self._exit

    def stop(self, deadline: float = 30.0) -> float:
        """SIGINT (the way a user stops ``serve``; the Go node stops on it
        too), SIGKILL past ``deadline``; return the CPU seconds it used."""
        if self._exit is None:
            if self.proc.returncode is None:
                self.proc.send_signal(signal.SIGINT)
            try:
                self.finish(deadline)
            except ChildError:
                pass  # killed: its CPU is still known
        assert self._exit is not None
        return self._exit[2]
