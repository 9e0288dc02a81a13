"""Transfers as users run them: two OS processes, the homes' real stores.

Pull: ``datatransfer serve`` on a home where the file was ``datatransfer
add``-ed (classic UnixFS: what ``add`` does by default), ``datatransfer pull
MULTIADDR CID`` on a fresh home. Push: ``datatransfer push`` from a home
holding the file to ``datatransfer serve`` on a fresh home. Both sides use
the sqlite block and channel stores of their homes. A random file of 256 MiB
(``--size``; quick: 32 MiB).

In the same run, each round measures every case once, in turn (``--rounds``,
default 2; figures are medians over the rounds):

* **bare stream**: the ceiling, a py-libp2p stream between two processes on
  the node's host set-up (TCP + Noise + Yamux, ``WRITE_PIECE`` writes;
  :mod:`benchmarks._stream`) carrying the same number of bytes;
* **Go**: the reference node (``tests/interop/gonode``, go-data-transfer
  v1.15 + go-graphsync v0.13, built as the interop tests build it into
  ``.interop-build``) pulling from and pushing to itself, and each direction
  between it and our CLI. Its stores are in memory (the Go node as the
  interop tests run it); its pulls pass the whole-DAG selector explicitly,
  so that it does not read the file back afterwards;
* **in-process**: our pull and push with both nodes in this process on
  memory stores (:mod:`benchmarks.bench_network`'s measurement, same file
  and profile), for comparison with the earlier figures.

Start-up is left out by timing each client from the moment its TCP
connection to the server is established (seen in ``/proc/net/tcp``, looked
for every 10 ms) to the kernel reaping it: the interpreter's start, imports
and the node's start are not counted; the secure handshake, the request,
the transfer and the client's shutdown are. A run where the connection was
never seen is timed from the process start and marked so. Sender and
receiver CPU: the client's from ``wait4`` less what it had used when it
connected (``/proc/PID/stat``), the server's from ``/proc/PID/stat`` when
the client starts and once the server is idle after it exits. Children get
SIGKILL if this process dies; every wait has a deadline. Logs of every
process go to files in a temporary directory, kept when something fails.
"""

from __future__ import annotations

import os
import pstats
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import trio

from benchmarks._procs import CLI, Child, ChildError
from benchmarks._report import Reporter

#: ``python -m benchmarks`` runs this module as the first part of
#: ``network`` (:mod:`benchmarks.bench_network`), not again on its own.
IN_FULL_RUN = False
REPO = Path(__file__).resolve().parent.parent
GONODE_SRC = REPO / "tests" / "interop" / "gonode"
BUILD_DIR = REPO / ".interop-build"
STREAM = [sys.executable, "-m", "benchmarks._stream"]
LOOPBACK = "/ip4/127.0.0.1/tcp/0"
PROFILE = "classic"
MIB = 1024 * 1024
GIB = 1024 * MIB
#: The whole DAG, as DAG-JSON (the Go node exports the file after a pull
#: unless given a selector).
ALL = '{"R":{"l":{"none":{}},":>":{"a":{">":{"@":{}}}}}}'
#: Go clients stay up this long after their channel ended (default 1 s).
LINGER = "100ms"
DEFAULT_SIZE = 256 * MIB
QUICK_SIZE = 32 * MIB
DEFAULT_ROUNDS = 2
#: Deadline of a server's start (the Go node imports the file first).
START = 180.0


def client_deadline(size: int) -> float:
    """Deadline of one client run: generous for a loaded 2-core machine."""
    return 120.0 + size / 1e6  # 1 MB/s


def DEADLINE(quick: bool, size: int | None = None, rounds: int | None = None,  # noqa: N802
             cprofile: Path | None = None) -> float:
    """The whole module's deadline for ``python -m benchmarks``' watchdog."""
    size = size or (QUICK_SIZE if quick else DEFAULT_SIZE)
    runs = (rounds or (1 if quick else DEFAULT_ROUNDS)) * 10 + (4 if cprofile else 0)
    return 600.0 + runs * client_deadline(size) / 2


class DeployError(RuntimeError):
    """A case of the deploy benchmark could not run."""


@dataclass
class Run:
    """One client run: seconds, CPU seconds of the client and of the server."""

    seconds: float
    client: float
    server: float


@dataclass
class Case:
    """One way of moving the file: which client against which server."""

    kind: str          # "pull" or "push"
    label: str
    server: str        # key of the round's server
    client: Callable[[Round, Path], list[str]]
    done: str | None = None   # a stdout word whose second word must be Completed
    samples: list[Run] = field(default_factory=list)
    #: Seconds from the client's start to its connection, each round.
    startup: list[float] = field(default_factory=list)
    #: Rounds where the connection was not seen (timed from the start).
    unseen: int = 0

    def sender_receiver(self, run: Run) -> tuple[float, float]:
        return (run.server, run.client) if self.kind == "pull" else (run.client, run.server)


@dataclass
class Files:
    """The file, its CID and the homes holding it."""

    path: Path
    cid: str
    source: Path  # served by `serve`
    pusher: Path  # pushed from by `push`
    size: int
    profile: str = PROFILE  # UnixFS profile of the DAG (the Go node imports the file so)


@dataclass
class Round:
    tmp: Path
    files: Files
    gonode: Path | None
    servers: dict[str, Child] = field(default_factory=dict)
    addrs: dict[str, str] = field(default_factory=dict)
    n: int = 0

    def fresh(self, what: str) -> Path:
        """A new directory (a fresh home, a log file's stem)."""
        self.n += 1
        return self.tmp / f"{what}-{self.n}"

    def log(self, what: str) -> Path:
        return self.fresh(what).with_suffix(".log")


# -- the servers of a round ---------------------------------------------------------------


def _server_argv(r: Round, key: str) -> tuple[list[str], Callable[[list[str]], bool], int]:
    """(argv, the predicate of its address line, the index of the address word)."""
    if key == "bare":
        return [*STREAM, "serve", "--home", str(r.fresh("bare-server"))], _any, 0
    if key == "py-source":
        return [*CLI, "serve", "--home", str(r.files.source), "--listen", LOOPBACK], _any, 0
    if key.startswith("py-sink"):
        return [*CLI, "serve", "--home", str(r.fresh(key)), "--listen", LOOPBACK], _any, 0
    assert r.gonode is not None
    argv = [str(r.gonode), "serve", "-listen", LOOPBACK]
    if key == "go-source":
        argv += ["-file", str(r.files.path), "-profile", r.files.profile]
    return argv, lambda w: w[0] == "ADDR", 1


def _any(words: list[str]) -> bool:
    return True


def _start_servers(r: Round, keys: list[str]) -> None:
    """Start every server of the round at once; wait for their addresses."""
    pending = []
    for key in keys:
        argv, pred, index = _server_argv(r, key)
        child = Child(argv, r.log(key), stdin=key.startswith("go"))
        r.servers[key] = child
        pending.append((key, child, pred, index))
    for key, child, pred, index in pending:
        r.addrs[key] = child.expect(pred, START).words[index]
        if key == "go-source":
            root = child.expect(lambda w: w[0] == "ROOT", START).words[1]
            if root != r.files.cid:
                raise DeployError(f"the Go node imported the file as {root}, "
                                  f"`datatransfer add` as {r.files.cid}")
    for child in r.servers.values():
        child.settled_cpu()


def _stop_servers(r: Round) -> None:
    for child in r.servers.values():
        child.stop()
    r.servers.clear()


# -- the clients --------------------------------------------------------------------------


def _bare(mode: str) -> Callable[[Round, Path], list[str]]:
    def argv(r: Round, home: Path) -> list[str]:
        return [*STREAM, mode, r.addrs["bare"], str(r.files.size), "--home", str(home)]
    return argv


def _py(cmd: str, server: str) -> Callable[[Round, Path], list[str]]:
    def argv(r: Round, home: Path) -> list[str]:
        if cmd == "push":
            home = r.files.pusher
        return [*CLI, cmd, r.addrs[server], r.files.cid, "--home", str(home),
                "--listen", LOOPBACK]
    return argv


def _go(cmd: str, server: str) -> Callable[[Round, Path], list[str]]:
    def argv(r: Round, home: Path) -> list[str]:
        assert r.gonode is not None
        what = ([r.files.cid, "-selector", ALL] if cmd == "pull"
                else ["-file", str(r.files.path), "-profile", r.files.profile])
        return [str(r.gonode), cmd, r.addrs[server], *what, "-linger", LINGER,
                "-timeout", f"{client_deadline(r.files.size):.0f}s"]
    return argv


def cases(go: bool) -> list[Case]:
    """Every case, in the order a round runs them (the Go ones when ``go``)."""
    out = [
        Case("pull", "bare py-libp2p stream, two processes", "bare", _bare("get")),
        Case("pull", "datatransfer pull <- datatransfer serve", "py-source",
             _py("pull", "py-source")),
    ]
    if go:
        out += [
            Case("pull", "Go pull <- Go serve", "go-source", _go("pull", "go-source"),
                 done="DONE"),
            Case("pull", "datatransfer pull <- Go serve", "go-source",
                 _py("pull", "go-source")),
            Case("pull", "Go pull <- datatransfer serve", "py-source", _go("pull", "py-source"),
                 done="DONE"),
        ]
    out += [
        Case("push", "bare py-libp2p stream, two processes", "bare", _bare("put")),
        Case("push", "datatransfer push -> datatransfer serve", "py-sink-ours",
             _py("push", "py-sink-ours")),
    ]
    if go:
        out += [
            Case("push", "Go push -> Go serve", "go-sink-go", _go("push", "go-sink-go"),
                 done="DONE"),
            Case("push", "datatransfer push -> Go serve", "go-sink-ours",
                 _py("push", "go-sink-ours")),
            Case("push", "Go push -> datatransfer serve", "py-sink-go",
                 _go("push", "py-sink-go"), done="DONE"),
        ]
    return out


def _port(addr: str) -> int:
    parts = addr.split("/")
    return int(parts[parts.index("tcp") + 1])


def _client_run(r: Round, case: Case) -> None:
    """Run ``case``'s client once; add its sample to the case."""
    server = r.servers[case.server]
    argv = case.client(r, r.fresh(f"{case.kind}-client"))
    deadline = client_deadline(r.files.size)
    before = server.cpu()  # idle: settled after its start or its last client
    child = Child(argv, r.log(case.kind))
    connected = child.watch_connection(_port(r.addrs[case.server]))
    end, rc, cpu = child.finish(deadline)
    lines = child.drain()
    if rc != 0:
        raise child.fail(f"exited with status {rc}")
    if case.done is not None:
        done = [ln.words for ln in lines if ln.words[:1] == [case.done]]
        if not done or done[-1][1] != "Completed":
            raise child.fail(f"ended {done[-1][1:] if done else 'without DONE'}")
    mark = connected()
    if mark is None:
        case.unseen += 1
        start, start_cpu = child.started, 0.0
    else:
        start, start_cpu = mark.at, mark.cpu
    case.startup.append(start - child.started)
    case.samples.append(Run(end - start, cpu - start_cpu, server.settled_cpu() - before))


def _in_process(kind: str, data: bytes, home: Path) -> tuple[float, float]:
    """(MB/s, CPU seconds of this process) of the in-process transfer."""
    from benchmarks.bench_network import _large
    from statemachine import Status

    cpu = time.process_time()
    mib_s, status, message = trio.run(_large, kind, data, home, PROFILE)
    cpu = time.process_time() - cpu
    if status != Status.Completed:
        raise DeployError(f"in-process {kind} ended {status.name}: {message}")
    return mib_s * MIB / 1e6, cpu


# -- set-up -------------------------------------------------------------------------------


def gonode_binary() -> tuple[Path | None, str]:
    """The Go reference node, built as tests/test_interop_go.py builds it
    (into .interop-build, the module pinned by go.sum, the toolchain on PATH;
    Go's build cache makes it a link step); else (None, why not)."""
    go = shutil.which("go")
    if not GONODE_SRC.is_dir():
        return None, f"no {GONODE_SRC} (not a source checkout)"
    if go is None:
        return None, "Go is not on PATH"
    print("   building the Go reference node", file=sys.stderr, flush=True)
    target = BUILD_DIR / "gonode"
    BUILD_DIR.mkdir(exist_ok=True)
    tmp = BUILD_DIR / f"gonode.{os.getpid()}.tmp"
    env = dict(os.environ, GOTOOLCHAIN="local", GOFLAGS="-mod=readonly")
    import subprocess

    proc = subprocess.run([go, "build", "-o", str(tmp), "."], cwd=GONODE_SRC, env=env,
                          capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise DeployError(f"go build of {GONODE_SRC} failed: {proc.stderr.strip()[-500:]}")
    os.replace(tmp, target)
    return target, ""


def _add(path: Path, home: Path, log: Path, profile: str = PROFILE) -> str:
    child = Child([*CLI, "add", str(path), "--home", str(home), "--profile", profile], log)
    _, rc, _ = child.finish(client_deadline(path.stat().st_size))
    lines = child.drain()
    if rc != 0 or not lines:
        raise child.fail(f"exited with status {rc}")
    return lines[-1].text.strip()


def write_random(path: Path, size: int) -> Path:
    """``size`` random bytes into ``path``, 16 MiB at a time (a large file
    never sits in memory whole)."""
    with path.open("wb") as fh:
        left = size
        while left:
            chunk = os.urandom(min(left, 16 * MIB))
            fh.write(chunk)
            left -= len(chunk)
    return path


def _files(tmp: Path, size: int, profile: str = PROFILE) -> Files:
    path = write_random(tmp / "file.bin", size)
    source = tmp / "source-home"
    cid = _add(path, source, tmp / "add.log", profile)
    pusher = tmp / "pusher-home"
    shutil.copytree(source, pusher)
    return Files(path, cid, source, pusher, size, profile)


# -- the run ------------------------------------------------------------------------------


def _round(tmp: Path, files: Files, gonode: Path | None, todo: list[Case]) -> None:
    r = Round(tmp, files, gonode)
    try:
        _start_servers(r, sorted({c.server for c in todo}))
        for case in todo:
            print(f"   {case.kind}: {case.label} ...", file=sys.stderr, flush=True)
            _client_run(r, case)
    finally:
        _stop_servers(r)


def _mb_s(size: int, seconds: float) -> float:
    return size / 1e6 / seconds if seconds > 0 else float("nan")


def _per_gib(size: int, cpu: float) -> float:
    return cpu / (size / GIB)


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _table(size: int, todo: list[Case], inproc: dict[str, list[tuple[float, float]]]) -> None:
    print(f"\n| {size / MIB:g} MiB, medians | MB/s | sender CPU s/GiB | receiver CPU s/GiB "
          "| start-up left out, s | MB/s each round |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    for case in todo:
        speeds = [_mb_s(size, s.seconds) for s in case.samples]
        send = [_per_gib(size, case.sender_receiver(s)[0]) for s in case.samples]
        recv = [_per_gib(size, case.sender_receiver(s)[1]) for s in case.samples]
        print(f"| {case.kind}: {case.label} | {_median(speeds):.1f} | {_median(send):.2f} "
              f"| {_median(recv):.2f} | {_median(case.startup):.2f} "
              f"| {' '.join(f'{v:.1f}' for v in speeds)}"
              f"{f' ({case.unseen} timed from the start)' if case.unseen else ''} |")
    for kind, runs in inproc.items():
        speeds = [v for v, _ in runs]
        cpu = [_per_gib(size, c) for _, c in runs]
        print(f"| {kind}: in-process, memory stores (both nodes in one process) "
              f"| {_median(speeds):.1f} | {_median(cpu):.2f} (both sides) | | "
              f"| {' '.join(f'{v:.1f}' for v in speeds)} |")
    print(flush=True)


def _ratios(report: Reporter, size: int, todo: list[Case]) -> None:
    runs = {(c.kind, c.label): [_mb_s(size, s.seconds) for s in c.samples] for c in todo}
    by = {key: _median(speeds) for key, speeds in runs.items()}
    for kind, ours in (("pull", "datatransfer pull <- datatransfer serve"),
                       ("push", "datatransfer push -> datatransfer serve")):
        value = by[(kind, ours)]
        report.line(f"two processes: {ours}", value, "MB/s", "bare py-libp2p stream",
                    by[(kind, "bare py-libp2p stream, two processes")],
                    samples=runs[(kind, ours)])
        go = by.get((kind, f"Go {kind} {'<-' if kind == 'pull' else '->'} Go serve"))
        if go is not None:
            report.line(f"two processes: {ours}", value, "MB/s", f"Go {kind} between Go nodes",
                        go, samples=runs[(kind, ours)])


def _cprofile(tmp: Path, files: Files, out: Path) -> None:
    """Our pull and push once more, server and client under cProfile; the
    top 15 lines of each by cumulative and by own time."""
    if CLI[0] == sys.executable:
        print("   no `datatransfer` script beside this Python: no profiles", flush=True)
        return
    out.mkdir(parents=True, exist_ok=True)
    profiled = [sys.executable, "-m", "cProfile", "-o"]
    deadline = client_deadline(files.size)
    for kind in ("pull", "push"):
        serve_prof, client_prof = out / f"{kind}-serve.prof", out / f"{kind}-client.prof"
        serve_home = files.source if kind == "pull" else tmp / f"profile-sink-{kind}"
        server = Child([*profiled, str(serve_prof), CLI[0], "serve", "--home", str(serve_home),
                        "--listen", LOOPBACK], tmp / f"profile-serve-{kind}.log")
        try:
            addr = server.expect(_any, START).words[0]
            home = tmp / "profile-client" if kind == "pull" else files.pusher
            client = Child([*profiled, str(client_prof), CLI[0], kind, addr, files.cid,
                            "--home", str(home), "--listen", LOOPBACK],
                           tmp / f"profile-{kind}.log")
            start = time.perf_counter()
            end, rc, cpu = client.finish(deadline)
            if rc != 0:
                raise client.fail(f"exited with status {rc}")
        finally:
            server_cpu = server.stop()
        print(f"\n-- cProfile, {kind} of {files.size / MIB:g} MiB: {end - start:.1f} s, "
              f"client CPU {cpu:.1f} s, server CPU {server_cpu:.1f} s "
              f"(under the profiler; {serve_prof}, {client_prof})", flush=True)
        for name, path in (("serve", serve_prof), (kind, client_prof)):
            print_top(path, f"{kind}: the `datatransfer {name}` process")


#: Where the cumulative list looks: the node's code and py-libp2p's, not the
#: command line's and the event loop's frames that hold every call.
_WORK = re.compile(r"/(?:datatransfer/(?!cli/)|transport/|statemachine/|registry/|libp2p/)")


def print_top(path: Path, title: str, n: int = 15) -> None:
    """The ``n`` functions of a cProfile file with the most cumulative time
    (in :data:`_WORK`) and with the most own time (any)."""
    stats = pstats.Stats(str(path))
    total = getattr(stats, "total_tt", float("nan"))
    rows = [(file, line, fn, nc, tt, ct)
            for (file, line, fn), (_, nc, tt, ct, _) in stats.stats.items()  # type: ignore[attr-defined]
            if fn != "<module>"]
    for order, pick, only in (("cumulative", 5, _WORK), ("own time", 4, None)):
        print(f"\n-- {title}, by {order} ({total:.1f} s profiled"
              f"{'; the node and py-libp2p only' if only else ''})")
        print(f"{'calls':>9} {'own s':>8} {'cum s':>8}  function")
        chosen = [r for r in rows if only is None or only.search(r[0])]
        for file, line, fn, nc, tt, ct in sorted(chosen, key=lambda r: -r[pick])[:n]:
            print(f"{nc:>9} {tt:>8.3f} {ct:>8.3f}  {_short(file)}:{line}({fn})")
    sys.stdout.flush()


def _short(file: str) -> str:
    for marker in ("site-packages/", f"{REPO}/",
                   f"/python{sys.version_info[0]}.{sys.version_info[1]}/"):
        if marker in file:
            return file.split(marker, 1)[1]
    return file


def run(report: Reporter, quick: bool, size: int | None = None, rounds: int | None = None,
        cprofile: Path | None = None, gonode: Path | None = None) -> None:
    """``gonode``: the Go node's binary (default: built here)."""
    size = size or (QUICK_SIZE if quick else DEFAULT_SIZE)
    rounds = rounds or (1 if quick else DEFAULT_ROUNDS)
    why = ""
    if gonode is None:
        gonode, why = gonode_binary()
    if gonode is None:
        print(f"   the Go reference node cases are skipped: {why}", flush=True)
    todo = cases(go=gonode is not None)
    tmp = Path(tempfile.mkdtemp(prefix="bench-deploy-"))
    ok = False
    try:
        print(f"   {size / MIB:g} MiB random file, {rounds} round(s); logs in {tmp}",
              file=sys.stderr, flush=True)
        files = _files(tmp, size)
        data = files.path.read_bytes()
        inproc: dict[str, list[tuple[float, float]]] = {"pull": [], "push": []}
        for i in range(rounds):
            print(f"   round {i + 1} of {rounds}", file=sys.stderr, flush=True)
            # each round's homes and logs apart: a client home reused from an
            # earlier round would resume that round's channel at its old address
            (tmp / f"round-{i + 1}").mkdir()
            _round(tmp / f"round-{i + 1}", files, gonode, todo)
            for kind in inproc:
                inproc[kind].append(_in_process(kind, data, tmp / f"inproc-{kind}-{i}"))
        del data
        _table(size, todo, inproc)
        _ratios(report, size, todo)
        for kind, runs in inproc.items():
            report.line(f"in-process, memory stores: {kind}", _median([v for v, _ in runs]),
                        "MB/s")
        if cprofile is not None:
            _cprofile(tmp, files, cprofile)
        ok = True
    except ChildError as exc:
        raise DeployError(str(exc)) from None
    finally:
        if ok:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"   logs kept in {tmp}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    run(Reporter(), "--quick" in sys.argv)
