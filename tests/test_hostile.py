"""Hostile peers against ``datatransfer serve`` in its own OS process.

Each attack of ``tests/_attacks.py`` (and the floods of ``tests/_rogue.py``)
runs from a third process while an honest ``datatransfer pull`` runs from
another. Every test asserts what the README promises of a node facing the
open network: it stays up, the honest pull completes with identical bytes,
its peak memory stays under :data:`PEAK_RSS_BOUND`, nothing the attacker
offered is stored, and what was refused is counted in the metrics.
"""

from __future__ import annotations

import re
import signal
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from _processes import (
    CLI,
    LOOPBACK,
    MIB,
    PROCNODE,
    TIMEOUT,
    Proc,
    make_file,
    run,
    sha256,
    wait_until,
)

ATTACKS = [sys.executable, str(Path(__file__).with_name("_attacks.py"))]
ROGUE = [sys.executable, str(Path(__file__).with_name("_rogue.py"))]

#: The documented bound on a serving node's peak resident memory under any
#: of these attacks (README, "What a node bounds"); measured peaks are about
#: half of it.
PEAK_RSS_BOUND = 320 * MIB
FILE_SIZE = 2 * MIB + 11
PULL_TIMEOUT = 2 * TIMEOUT  # a loaded 2-core machine, a node under attack


def _peak_rss(pid: int) -> int:
    """The process's peak resident set (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def _stored(home: Path, cids: list[str]) -> list[str]:
    """Which of ``cids`` the home's block store holds (read once the node stopped)."""
    from datatransfer.home import open_blockstore
    from datatransfer.ipld.cid import CID

    with open_blockstore(home) as store:
        return [c for c in cids if store.has(CID.parse(c))]


def _metrics_url(server: Proc) -> str:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        for line in list(server.stderr):
            m = re.search(r"http://127\.0\.0\.1:\d+/metrics", line)
            if m:
                return m.group(0)
        time.sleep(0.05)
    raise AssertionError(f"no metrics URL\n{server.describe()}")


def _refused(url: str) -> dict[str, float]:
    """The refusal counters the node exports, by their label text."""
    text = urllib.request.urlopen(url, timeout=TIMEOUT).read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = re.match(r"datatransfer_(refused_inputs|connections_refused)_total\{(.*)\} (\S+)",
                     line)
        if m:
            out[f"{m.group(1)}{{{m.group(2)}}}"] = float(m.group(3))
    return out


class Scene:
    """A serving node with a file, a home for the honest client, one for the
    attacker."""

    def __init__(self, tmp_path: Path, procs: Callable[..., Proc]) -> None:
        self.tmp = tmp_path
        self.procs = procs
        self.server_home = tmp_path / "server"
        src = tmp_path / "src.bin"
        self.digest = make_file(src, FILE_SIZE, seed=909)
        self.cid = run("add", src, "--home", self.server_home).stdout.split()[-1]
        self.server = procs([*CLI, "serve", "--home", str(self.server_home),
                             "--listen", LOOPBACK, "--metrics-port", "0"])
        self.addr = self.server.expect(lambda w: True)[0]
        assert self.addr.startswith("/ip4/127.0.0.1/tcp/"), self.server.describe()
        self.pulls = 0

    def attack(self, kind: str, *extra: object) -> Proc:
        p = self.procs([*ATTACKS, kind, "--home", str(self.tmp / f"attacker-{kind}"),
                        "--addr", self.addr, "--cid", self.cid, *map(str, extra)], stdin=True)
        p.expect(lambda w: w[0] == "READY")
        return p

    def honest_pull(self) -> None:
        """An honest client in its own process pulls the file; same bytes."""
        self.pulls += 1
        home = self.tmp / f"honest{self.pulls}"
        out = self.tmp / f"out{self.pulls}.bin"
        proc = run("pull", self.addr, self.cid, "-o", out, "--home", home, "--listen",
                   LOOPBACK, ok=False, timeout=PULL_TIMEOUT)
        assert proc.returncode == 0, (
            f"honest pull failed rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}\n"
            f"server:\n{self.server.describe()}")
        assert sha256(out) == self.digest

    def alive(self) -> None:
        assert self.server.proc.poll() is None, f"the node died\n{self.server.describe()}"

    def stop(self) -> int:
        """SIGTERM; the node's exit code (it must exit well within the wait)."""
        self.server.proc.send_signal(signal.SIGTERM)
        return self.server.wait()


def _stop_attacker(attacker: Proc) -> list[str]:
    attacker.proc.stdin.close()
    attacker.wait()
    return attacker.collect()


def _words(lines: list[str], first: str) -> list[list[str]]:
    return [line.split() for line in lines if line.split()[:1] == [first]]


def _run_attack(scene: Scene, kind: str, rounds: int, *extra: object) -> list[str]:
    """Start the attack, let it run ``rounds`` rounds, pull honestly while it
    goes on, check the node is up, stop the attacker; its output lines."""
    attacker = scene.attack(kind, *extra)
    for n in range(1, rounds + 1):
        attacker.expect(lambda w, n=n: w[:2] == ["ROUND", str(n)])
    scene.honest_pull()
    assert attacker.proc.poll() is None, f"the attack ended early\n{attacker.describe()}"
    scene.alive()
    peak = _peak_rss(scene.server.proc.pid)
    assert peak <= PEAK_RSS_BOUND, f"peak {peak / MIB:.0f} MiB"
    return _stop_attacker(attacker)


@pytest.fixture
def scene(tmp_path: Path, procs: Callable[..., Proc]) -> Scene:
    return Scene(tmp_path, procs)


def test_malformed_requests_of_every_kind_are_refused_counted_and_nothing_stored(scene):
    url = _metrics_url(scene.server)
    lines = _run_attack(scene, "malformed", 3)
    refused = _refused(url)
    # refusals at each layer, each counted under its kind
    layers = {re.search(r'layer="(\w+)"', k).group(1) for k in refused if "layer=" in k}
    assert {"graphsync", "messages", "channels"} <= layers, refused
    assert sum(refused.values()) >= 3 * 20, refused
    # the node answered what the message protocol can answer (rejections)
    tally = _words(lines, "TALLY")[-1]
    assert any(w.startswith("rejected=") and int(w.split("=")[1]) > 0 for w in tally), tally
    offered = [w[1] for w in _words(lines, "SENT_BLOCK")]
    assert scene.stop() == 0, scene.server.describe()
    assert offered and _stored(scene.server_home, offered) == []


def test_pull_request_on_the_message_protocol_is_answered_and_never_fetched(scene):
    lines = _run_attack(scene, "dtpull", 3)
    # the node answered on the message protocol and never opened a data
    # request back to the stranger
    assert _words(lines, "ANSWER"), lines
    assert _words(lines, "GS_REQUEST") == [], lines
    root = _words(lines, "ROOT")[0][1]
    assert scene.stop() == 0, scene.server.describe()
    assert _stored(scene.server_home, [root]) == []


def test_selector_work_bombs_are_answered_and_do_not_stall_others(scene):
    """Selectors built to walk without end (merged or bounded now: each ends,
    completed or with a graphsync error) while an honest pull runs."""
    lines = _run_attack(scene, "selector-bomb", 2)
    tallies = _words(lines, "TALLY")
    assert tallies, lines
    last = {k: int(v) for k, v in (w.split("=", 1) for w in tallies[-1][1:])}
    answered = sum(v for k, v in last.items() if k != "sent")
    # every bomb got its terminal answer but those still in flight (16)
    assert answered >= last["sent"] - 16 > 0, last
    assert scene.stop() == 0, scene.server.describe()


def test_frames_of_millions_of_tiny_items_are_refused_before_building_them(scene):
    url = _metrics_url(scene.server)
    lines = _run_attack(scene, "frame-bomb", 2)
    tally = dict(w.split("=", 1) for w in _words(lines, "TALLY")[-1][1:])
    assert int(tally.get("sent", 0)) >= 4, tally
    assert any("graphsync" in k and v > 0 for k, v in _refused(url).items())
    assert scene.stop() == 0, scene.server.describe()


def test_half_open_connection_flood_leaves_room_for_honest_peers(scene):
    url = _metrics_url(scene.server)
    # more connections than one address may hold, from another address
    lines = _run_attack(scene, "half-open", 3, "--count", 300)
    tally = dict(w.split("=", 1) for w in _words(lines, "TALLY")[-1][1:])
    # the node closed the surplus and the idle ones (deadline), the honest
    # pull got through meanwhile
    assert int(tally.get("closed_by_node", 0)) > 0, tally
    refused = _refused(url)
    assert any(k.startswith("connections_refused") and v > 0 for k, v in refused.items()), (
        refused)
    assert scene.stop() == 0, scene.server.describe()


def test_shutdown_ends_promptly_while_a_peer_stops_reading(scene):
    attacker = scene.attack("stall")
    attacker.expect(lambda w: w[0] == "STALLED")
    scene.alive()
    # the node's writes to the attacker are blocked; SIGTERM still ends it,
    # cleanly (the generous wait is for a loaded machine: measured < 3 s)
    assert scene.stop() == 0, scene.server.describe()
    _stop_attacker(attacker)
    # the home is intact: its file reads back, its channel store opens
    out = scene.tmp / "after.bin"
    run("cat", scene.cid, "-o", out, "--home", scene.server_home)
    assert sha256(out) == scene.digest
    assert run("ls", "--home", scene.server_home).returncode == 0


def test_channel_flood_is_not_kept_for_a_departed_peer_across_a_restart(tmp_path, procs):
    """Push requests accepted from a stranger who never sends the data: after
    the stranger left and the node restarted, those channels end on their
    timeout, and the node does not dial the stranger for them."""
    home = tmp_path / "server"
    src = tmp_path / "src.bin"
    make_file(src, MIB, seed=910)
    cid = run("add", src, "--home", home).stdout.split()[-1]
    count = 200

    def serve(*extra: object) -> tuple[Proc, str]:
        p = procs([*PROCNODE, "serve", "--home", str(home), "--listen", LOOPBACK,
                   *map(str, extra)], stdin=True)
        return p, p.expect(lambda w: w[0] == "ADDR")[1]

    def live(p: Proc) -> int:
        p.send("resources")
        words = p.expect(lambda w: w[0] == "RESOURCES")
        return int(dict(w.split("=", 1) for w in words[1:])["live_channels"])

    server, addr = serve()
    rogue = procs([*ROGUE, "dtflood", "--home", str(tmp_path / "rogue"), "--addr", addr,
                   "--cid", cid, "--count", str(count)], stdin=True)
    rogue.expect(lambda w: w[0] == "DTFLOODED")
    wait_until(lambda: live(server) >= count, f"{count} live channels\n{server.describe()}",
               interval=0.2)
    rogue.proc.stdin.close()
    assert rogue.wait() == 0, rogue.describe()
    server.send("quit")
    assert server.wait() == 0, server.describe()

    # they were accepted, so stored, still in progress (read from the store
    # while no node runs: a node that loaded them would already time them out)
    rows = [line for line in run("ls", "--home", home).stdout.splitlines()
            if "receive (push in)" in line]
    assert len(rows) == count, rows[:10]
    assert not any(s in row for row in rows for s in ("Failed", "Cancelled", "Completed")), (
        rows[:10])
    server, _ = serve("--no-progress-timeout", 1)  # reloads them
    wait_until(lambda: live(server) == 0, f"no live channels\n{server.describe()}",
               interval=0.2)
    server.send("quit")
    assert server.wait() == 0, server.describe()
    dials = [line for line in server.stderr if "dial" in line.lower()]
    assert len(dials) <= 2, dials[:10]
    assert run("ls", "--all", "--home", home).stdout.count("Failed") >= count
