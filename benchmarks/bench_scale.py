"""Many concurrent small pulls from one server, as users run it (issue 12).

``datatransfer serve`` on a home holding :data:`FILES` small files (4 KiB
each, sqlite stores, as ``serve`` uses them) answers 10 client processes
(quick: 2), each a node on its own home (``benchmarks/_scale_client.py``)
opening 1,000 pulls at once (quick: 200): 10,000 concurrent channels. All
clients start on one signal. Reported:

* how many completed (target: all) and the reasons of those that did not;
* channels/s: channels / seconds from the start signal to the last client's
  last completion, beside the same figure for one client with a tenth of
  the channels in the same run (how throughput holds as concurrency grows);
* the server's peak of live channels (its metrics, sampled every 0.25 s),
  its resident memory growth over its idle size, and memory per live
  channel = growth / peak live (an upper bound: it also holds buffers);
* the server's CPU seconds per 1,000 channels, and the clients' (all of
  them together).

Limits: each client stays within the server's own (``serve``'s defaults,
checked before a round): at most 1,024 open channels per peer, and 16
graphsync requests per peer in progress plus 1,024 waiting. The server
answers a pull only once it serves it, so a client's last pull waits for
all its others; the clients raise their accept timeout from 30 s to the
benchmark's deadline (``_scale_client.ACCEPT_TIMEOUT``), and say so.
"""

from __future__ import annotations

import json
import os
import random
import re
import resource
import subprocess
import sys
import tempfile
import threading
import urllib.request
from pathlib import Path
from typing import Any

from benchmarks._report import Reporter
from benchmarks._scale_client import ACCEPT_TIMEOUT
from datatransfer.config import ManagerConfig
from statemachine import FINAL_STATUSES, Status
from transport.graphsync.engine import DEFAULT_MAX_QUEUED_PER_PEER, DEFAULT_MAX_REQUESTS_PER_PEER

#: Distinct files the server holds; pull i asks for file i % FILES.
FILES = 100
#: Bytes per file.
FILE_SIZE = 4096
#: Deadline of every wait of the benchmark (seconds).
DEADLINE = 900.0
#: Statuses of a live channel (the metrics' ``status`` label).
_LIVE = frozenset(s.name for s in Status if s not in FINAL_STATUSES
                  and s is not Status.ChannelNotFoundError)

_CLI = [str(Path(sys.executable).with_name("datatransfer"))]
#: Pulls one client may have at once within the server's limits (see above).
MAX_PER_CLIENT = min(ManagerConfig().max_channels_per_peer or 2**31,
                     DEFAULT_MAX_REQUESTS_PER_PEER + DEFAULT_MAX_QUEUED_PER_PEER)


def _rss(pid: int) -> int:
    """Resident bytes of process ``pid``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _cpu(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _live(metrics_url: str) -> int:
    text = urllib.request.urlopen(metrics_url, timeout=30).read().decode()
    total = 0
    for status, value in re.findall(r'^datatransfer_channels\{status="(\w+)"\} (\S+)$', text,
                                    re.M):
        if status in _LIVE:
            total += int(float(value))
    return total


class _Server:
    def __init__(self, home: Path) -> None:
        self.proc = subprocess.Popen(
            [*_CLI, "serve", "--home", str(home), "--listen", "/ip4/127.0.0.1/tcp/0",
             "--no-api", "--metrics-port", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.addr = self.proc.stdout.readline().strip()
        self.metrics = ""
        for line in self.proc.stderr:
            m = re.search(r"http://127\.0\.0\.1:\d+/metrics", line)
            if m:
                self.metrics = m.group(0)
                break
        if not self.addr or not self.metrics:
            self.proc.kill()
            raise RuntimeError("serve did not start")
        threading.Thread(target=self.proc.stderr.read, daemon=True).start()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _round(tmp: Path, server: _Server, roots: list[str], clients: int,
           per_client: int, tag: str) -> dict[str, Any]:
    """``clients`` processes of ``per_client`` pulls each, started together."""
    if per_client > MAX_PER_CLIENT:
        raise ValueError(f"{per_client} pulls per client exceed the server's limits "
                         f"({MAX_PER_CLIENT} per peer)")
    procs = []
    for i in range(clients):
        proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks._scale_client", str(tmp / f"{tag}-client{i}"),
             server.addr, str(per_client), *roots],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            cwd=Path(__file__).resolve().parents[1])
        procs.append(proc)
    for proc in procs:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if line != "READY":
            raise RuntimeError(f"client did not start: {line} {proc.stderr.read()}")
    pid = server.proc.pid
    rss0, cpu0 = _rss(pid), _cpu(pid)
    peak = {"live": 0, "rss": rss0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            try:
                peak["live"] = max(peak["live"], _live(server.metrics))
                peak["rss"] = max(peak["rss"], _rss(pid))
            except OSError:
                pass
            stop.wait(0.25)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("\n")
        proc.stdin.flush()
    children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=DEADLINE)
        lines = out.strip().splitlines()
        if proc.returncode != 0 or not lines:
            raise RuntimeError(f"client failed (rc={proc.returncode}): {err[-2000:]}")
        results.append(json.loads(lines[-1]))
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    client_cpu = (children.ru_utime + children.ru_stime
                  - children0.ru_utime - children0.ru_stime)
    stop.set()
    sampler.join()
    statuses: dict[str, int] = {}
    reasons: dict[str, int] = {}
    for r in results:
        for k, v in r["statuses"].items():
            statuses[k] = statuses.get(k, 0) + v
        for k, v in r["reasons"].items():
            reasons[k] = reasons.get(k, 0) + v
    total = clients * per_client
    seconds = max(r["done"] for r in results)
    return {"total": total, "completed": statuses.get("Completed", 0), "reasons": reasons,
            "seconds": seconds, "rate": total / seconds, "peak_live": peak["live"],
            "rss_growth": peak["rss"] - rss0, "rss_idle": rss0,
            "cpu": _cpu(pid) - cpu0, "client_cpu": client_cpu}


def _server_reasons(home: Path) -> dict[str, int]:
    """The server's own account of its channels that did not complete
    (status: message, counted), from its channel store once it stopped: a
    client only hears "cancelled by the other peer"."""
    out = subprocess.run([*_CLI, "ls", "--all", "--json", "--home", str(home)],
                         capture_output=True, text=True, timeout=DEADLINE, check=True)
    reasons: dict[str, int] = {}
    for row in json.loads(out.stdout):
        if row["status"] != "Completed":
            key = f"{row['status']}: {row['message']}"
            reasons[key] = reasons.get(key, 0) + 1
    return dict(sorted(reasons.items(), key=lambda kv: -kv[1])[:5])


def run(report: Reporter, quick: bool) -> None:
    from datatransfer.home import open_blockstore
    from datatransfer.ipld.unixfs import import_file

    clients, per_client = (2, 200) if quick else (10, 1000)
    rng = random.Random(12)
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp_name:
        tmp = Path(tmp_name)
        home = tmp / "server"
        with open_blockstore(home) as store:
            roots = [str(import_file(rng.randbytes(FILE_SIZE), store)) for _ in range(FILES)]
        server = _Server(home)
        try:
            small = _round(tmp, server, roots, 1, per_client, "one")
            big = _round(tmp, server, roots, clients, per_client, "many")
        finally:
            server.stop()
        server_reasons = _server_reasons(home)
    print(f"    clients' accept timeout raised to {ACCEPT_TIMEOUT:g} s (default "
          f"{ManagerConfig().accept_timeout:g} s): the server queues a peer's pulls beyond "
          f"{DEFAULT_MAX_REQUESTS_PER_PEER}", flush=True)
    for label, r in (("1 client", small), (f"{clients} clients", big)):
        report.line(f"scale: {label} x {per_client} pulls, completed", r["completed"],
                    "channels", "opened", r["total"])
        if r["reasons"]:
            print(f"    not completed: {r['reasons']}", flush=True)
    if server_reasons:
        print(f"    the server's channels that did not complete (both rounds): {server_reasons}",
              flush=True)
    report.line(f"scale: {big['total']} concurrent pulls (separate processes)", big["rate"],
                "channels/s", f"{small['total']} from 1 client", small["rate"])
    report.line("scale: server peak live channels", big["peak_live"], "channels",
                "opened", big["total"])
    per_channel = big["rss_growth"] / max(big["peak_live"], 1)
    report.line("scale: server idle resident memory", big["rss_idle"] / 2**20, "MiB")
    report.line("scale: server memory per live channel (growth / peak live)",
                per_channel / 1024, "KiB")
    report.line("scale: server CPU per 1,000 channels", big["cpu"] / big["total"] * 1000, "s",
                f"{small['total']} from 1 client", small["cpu"] / small["total"] * 1000)
    report.line("scale: clients' CPU per 1,000 channels (all client processes)",
                big["client_cpu"] / big["total"] * 1000, "s",
                f"{small['total']} from 1 client", small["client_cpu"] / small["total"] * 1000)
