"""End-to-end time of a 1 KiB pull, the way people run one (issue 11, item 7).

A ``datatransfer serve`` runs in its own process with one distinct 1 KiB
file per round (so every pull moves its bytes). Figures are medians of
:data:`ROUNDS` rounds (quick: :data:`QUICK_ROUNDS`), after one warm-up:

* (a) **embedded CLI**: from starting a ``datatransfer pull MULTIADDR CID``
  process (fresh client home each round: new identity, new stores) to its
  exit; what a user waits for with no daemon running;
* (b) **through the daemon**: the same command while a ``datatransfer serve``
  holds the client's home, so the pull goes through its control API;
  reported as "not built" while the branch has no daemon
  (:func:`daemon_pull_times`);
* (c) **in one running process**: two Nodes already started in this process
  (trio), from ``node.pull`` to the channel Completed: the floor the other
  two pay process start-up, imports, node start and shutdown on top of.

Beside them, the start-up of the light commands (``--version``, ``ls`` on an
empty home) next to a bare ``python -c pass``.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks._report import Reporter

ROOT = Path(__file__).resolve().parent.parent
#: The ``datatransfer`` console script, as its entry point runs it.
CLI = [sys.executable, "-c", "from datatransfer.cli import main; main()"]
LOOPBACK = "/ip4/127.0.0.1/tcp/0"
SIZE = 1024
ROUNDS = 15
QUICK_ROUNDS = 5
WAIT = 120.0


def _env() -> dict[str, str]:
    """The environment of the processes timed: as an installed command runs,
    with its modules' bytecode cached (PYTHONDONTWRITEBYTECODE would compile
    this project's modules again in every process)."""
    env = dict(os.environ)
    env.pop("DATATRANSFER_HOME", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _files(count: int) -> list[bytes]:
    return [os.urandom(SIZE) for _ in range(count)]


def _add_all(home: Path, files: list[bytes]) -> list[str]:
    """Import each file into ``home``'s block store; their root CIDs."""
    import io

    from datatransfer.home import open_blockstore
    from datatransfer.ipld.unixfs import import_file

    with open_blockstore(home) as store:
        return [str(import_file(io.BytesIO(data), store)) for data in files]


def _median_run(argv: list[str], rounds: int) -> float:
    """Median wall time of ``rounds`` runs of ``argv`` (after one warm-up)."""
    times = []
    for i in range(rounds + 1):
        start = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True, env=_env(), timeout=WAIT)
        if i:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


class _Serve:
    """``datatransfer serve`` on ``home`` in its own process."""

    def __init__(self, home: Path, log: Path) -> None:
        self.err = log.open("w")
        self.proc = subprocess.Popen([*CLI, "serve", "--home", str(home), "--listen", LOOPBACK],
                                     stdout=subprocess.PIPE, stderr=self.err, text=True,
                                     env=_env())
        assert self.proc.stdout is not None
        self.addr = self.proc.stdout.readline().strip()
        if not self.addr:
            self.close()
            raise RuntimeError(f"serve printed no address (log: {log})")

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=WAIT)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        self.err.close()


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _cli_pull(addr: str, cid: str, home: Path, cpu: list[float] | None = None) -> float:
    """Seconds from starting ``datatransfer pull`` to its exit (its CPU
    seconds appended to ``cpu``)."""
    used = _children_cpu()
    start = time.perf_counter()
    proc = subprocess.run([*CLI, "pull", addr, cid, "--home", str(home), "--listen", LOOPBACK],
                          capture_output=True, text=True, env=_env(), timeout=WAIT)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"pull of {cid} failed: {proc.stderr[-2000:]}")
    if cpu is not None:
        cpu.append(_children_cpu() - used)
    return elapsed


def embedded_pull_times(tmp: Path, addr: str, cids: list[str],
                        cpu: list[float] | None = None) -> list[float]:
    """(a): one ``datatransfer pull`` process per CID, each with a fresh home."""
    return [_cli_pull(addr, cid, tmp / f"client-{i}", cpu) for i, cid in enumerate(cids)]


# -- (b) through the daemon -----------------------------------------------------------


def daemon_built() -> bool:
    """Whether this tree has the daemon (``datatransfer serve`` with a
    control API that ``pull`` goes through): its package exists."""
    return importlib.util.find_spec("datatransfer.daemon") is not None


def daemon_pull_times(tmp: Path, addr: str, cids: list[str]) -> list[float] | None:
    """(b): ``datatransfer pull`` while a daemon (``serve``) holds the client
    home, so the command goes through its control API; one CID per round on
    the same home (the daemon keeps it). None when the daemon is not built.

    This is the place for the daemon's figure: it times the same command as
    (a), only with the client home held by a running ``serve``."""
    if not daemon_built():
        return None
    home = tmp / "client-daemon"
    daemon = _Serve(home, tmp / "client-daemon.log")
    try:
        return [_cli_pull(addr, cid, home) for cid in cids]
    finally:
        daemon.close()


# -- (c) in one running process -------------------------------------------------------


def in_process_pull_times(tmp: Path, files: list[bytes]) -> list[float]:
    """(c): two Nodes started in this process; seconds from ``node.pull`` to
    Completed for each file (imported on the server before timing)."""
    import io

    import anyio

    from datatransfer.ipld.unixfs import import_file
    from datatransfer.node import LOCAL_LISTEN, Node
    from statemachine import Status

    # a shutdown warning of the last message's receipt is not part of the figure
    logging.getLogger("transport").setLevel(logging.ERROR)

    async def main() -> list[float]:
        times = []
        async with Node(tmp / "inproc-server", listen=(LOCAL_LISTEN,)) as server, \
                Node(tmp / "inproc-client", listen=(LOCAL_LISTEN,)) as client:
            assert client.manager is not None
            roots = [import_file(io.BytesIO(data), server.blockstore) for data in files]
            addr = server.addrs()[0]
            for root in roots:
                start = time.perf_counter()
                chid = await client.pull(addr, root)
                state = await client.manager.wait(chid, timeout=WAIT)
                times.append(time.perf_counter() - start)
                if state.status != Status.Completed:
                    raise RuntimeError(f"in-process pull ended {state.status.name}")
        return times

    return anyio.run(main, backend="trio")


def _median(times: list[float], warmup: int = 1) -> float:
    return statistics.median(times[warmup:])


def run(report: Reporter, quick: bool) -> None:
    rounds = QUICK_ROUNDS if quick else ROUNDS
    with tempfile.TemporaryDirectory(prefix="bench-small-pull-") as t:
        tmp = Path(t)
        server_home = tmp / "server"
        cids = _add_all(server_home, _files(2 * (rounds + 1)))
        embedded_cids, daemon_cids = cids[:rounds + 1], cids[rounds + 1:]
        server = _Serve(server_home, tmp / "serve.log")
        try:
            cpu: list[float] = []
            embedded = _median(embedded_pull_times(tmp, server.addr, embedded_cids, cpu))
            daemon = daemon_pull_times(tmp, server.addr, daemon_cids)
        finally:
            server.close()
        in_process = _median(in_process_pull_times(tmp, _files(rounds + 1)))
        report.line(f"1 KiB pull, (a) embedded CLI (median of {rounds})", embedded * 1000, "ms",
                    "(c)", in_process * 1000)
        report.line("  CPU time of the pull process (user + sys)", _median(cpu) * 1000, "ms")
        if daemon is None:
            report.note("1 KiB pull, (b) through the daemon", "not built")
        else:
            report.line(f"1 KiB pull, (b) through the daemon (median of {rounds})",
                        _median(daemon) * 1000, "ms", "(c)", in_process * 1000)
        report.line("1 KiB pull, (c) in one running process", in_process * 1000, "ms")
        light: list[tuple[str, Callable[[], float]]] = [
            ("python -c pass", lambda: _median_run([sys.executable, "-c", "pass"], rounds)),
            ("datatransfer --version", lambda: _median_run([*CLI, "--version"], rounds)),
            ("datatransfer ls (empty home)",
             lambda: _median_run([*CLI, "ls", "--home", str(tmp / "empty")], rounds)),
        ]
        bare = light[0][1]()
        for name, measure in light[1:]:
            report.line(f"{name}, start to exit", measure() * 1000, "ms",
                        "python -c pass", bare * 1000)


if __name__ == "__main__":
    run(Reporter(), "--quick" in sys.argv)
