"""The node commands end to end: ``demo`` in one process, and ``serve`` /
``pull`` / ``push`` / ``ls`` / metrics between separate OS processes on
127.0.0.1."""

from __future__ import annotations

import queue
import random
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from _processes import CLI, TIMEOUT, catches_signal, child_env, run, tcp_connected, wait_until

from datatransfer.node import OpenVoucher, dag_size, dialable_addr


class Server:
    """``datatransfer serve`` in its own process; stderr collected by a thread."""

    def __init__(self, home: Path, *extra: object) -> None:
        self.proc = subprocess.Popen(
            [*CLI, "serve", "--home", str(home), "--listen", "/ip4/127.0.0.1/tcp/0",
             *map(str, extra)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env())
        self.stderr: list[str] = []
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: lines.put(self.proc.stdout.readline()),
                         daemon=True).start()
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        try:
            self.addr = lines.get(timeout=TIMEOUT).strip()
        except queue.Empty:
            self.kill()
            pytest.fail(f"serve printed no address: {''.join(self.stderr)}")
        assert self.addr, f"serve exited: {''.join(self.stderr)}"

    def _drain_stderr(self) -> None:
        for line in self.proc.stderr:
            self.stderr.append(line)

    def metrics_url(self) -> str:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            for line in self.stderr:
                m = re.search(r"http://127\.0\.0\.1:\d+/metrics", line)
                if m:
                    return m.group(0)
            time.sleep(0.05)
        raise AssertionError(f"no metrics URL: {''.join(self.stderr)}")

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=TIMEOUT)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=TIMEOUT)


def test_demo_transfers_and_prints_a_rate():
    proc = run("demo", "--size", 2_000_000)
    assert "2000000 bytes identical" in proc.stdout
    assert re.search(r"rate: .* \(.*/s\)", proc.stdout), proc.stdout


def test_serve_pull_push_ls_metrics_between_processes(tmp_path):
    h1, h2 = tmp_path / "h1", tmp_path / "h2"
    rng = random.Random(7)
    f1, f2 = tmp_path / "f1.bin", tmp_path / "f2.bin"
    f1.write_bytes(rng.randbytes(3 * 1024 * 1024 + 123))
    f2.write_bytes(rng.randbytes(2 * 1024 * 1024 + 7))
    cid1 = run("add", f1, "--home", h1).stdout.split()[-1]
    cid2 = run("add", f2, "--home", h2).stdout.split()[-1]

    server = Server(h1, "--metrics-port", 0)
    try:
        assert re.fullmatch(r"/ip4/127\.0\.0\.1/tcp/\d+/p2p/\w+", server.addr), server.addr

        out = tmp_path / "out.bin"
        pulled = run("pull", server.addr, cid1, "-o", out, "--home", h2)
        assert "Completed" in pulled.stderr
        assert out.read_bytes() == f1.read_bytes()

        pushed = run("push", server.addr, cid2, "--home", h2)
        assert "Completed" in pushed.stderr
        # the server's home now holds the pushed file (read while it still runs)
        back = tmp_path / "back.bin"
        run("cat", cid2, "-o", back, "--home", h1)
        assert back.read_bytes() == f2.read_bytes()

        text = urllib.request.urlopen(server.metrics_url(), timeout=TIMEOUT).read().decode()
        for name in ("datatransfer_channels", "datatransfer_bytes_sent_total",
                     "datatransfer_bytes_received_total", "datatransfer_blocks_sent_total",
                     "datatransfer_blocks_received_total", "datatransfer_restarts_total",
                     "datatransfer_errors_total", "datatransfer_graphsync_requests_active"):
            assert name in text
        sent = float(re.search(r"^datatransfer_bytes_sent_total (\S+)$", text, re.M).group(1))
        received = float(
            re.search(r"^datatransfer_bytes_received_total (\S+)$", text, re.M).group(1))
        assert sent >= f1.stat().st_size and received >= f2.stat().st_size

        # a CID the server lacks: non-zero exit with the channel's message
        missing = run("pull", server.addr,
                      "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy",
                      "--home", h2, ok=False)
        assert missing.returncode != 0
        assert "Failed" in missing.stderr and "not found" in missing.stderr

        assert server.stop() == 0
    finally:
        server.kill()

    for home, roles in ((h1, ("send (pull in)", "receive (push in)")),
                        (h2, ("receive (pull out)", "send (push out)"))):
        listing = run("ls", "--all", "--home", home).stdout
        for role in roles:
            row = next(line for line in listing.splitlines() if role in line)
            assert "Completed" in row, listing
    assert "Failed" in run("ls", "--all", "--home", h2).stdout


def test_pull_reports_bad_or_unreachable_addresses(tmp_path):
    proc = run("pull", "not-a-multiaddr", "QmcVRfDDaMQWwCoE9LB3V5tRsDAUQ8FGDnwBgmiWip6WN6",
               "--home", tmp_path, ok=False)
    assert proc.returncode == 2 and "MULTIADDR" in proc.stderr
    proc = run("pull", "/ip4/127.0.0.1/tcp/1/p2p/12D3KooWQGhxQiNzj89uu4dh2RG2UyppEWyCfsmiDiLid6uMSRyu",
               "QmcVRfDDaMQWwCoE9LB3V5tRsDAUQ8FGDnwBgmiWip6WN6", "--home", tmp_path, ok=False)
    assert proc.returncode == 1 and "cannot reach" in proc.stderr


def test_helpers():
    assert OpenVoucher.from_node(OpenVoucher("x").to_node()) == OpenVoucher("x")
    assert dialable_addr("/ip4/127.0.0.1/tcp/5") == "/ip4/127.0.0.1/tcp/5"
    assert not dialable_addr("/ip4/0.0.0.0/tcp/5").startswith("/ip4/0.0.0.0/")
    from datatransfer.ipld.blockstore import MemoryBlockstore
    from datatransfer.ipld.unixfs import import_bytes

    root, blocks = import_bytes(b"a" * 700_000, chunk_size=100_000)
    bs = MemoryBlockstore()
    assert dag_size(root, bs) is None
    bs.put_many(blocks)
    assert dag_size(root, bs) == sum(len(data) for _, data in blocks)


def test_ls_on_empty_home(tmp_path):
    proc = run("ls", "--home", tmp_path)
    assert "no channels" in proc.stderr


@pytest.mark.skipif(sys.platform != "linux", reason="reads the client's state in /proc")
def test_pull_stops_cleanly_on_sigint(tmp_path):
    """A pull stuck on a peer that stopped answering (SIGSTOP) ends on
    SIGINT with status 130 and a message, not a traceback. It was still
    dialing: no channel was opened, so there is none to resume (one that was
    is left to resume: test_multiprocess, test_interruptions)."""
    server = Server(tmp_path / "h1")
    client = None
    try:
        server.proc.send_signal(signal.SIGSTOP)
        client = subprocess.Popen(
            [*CLI, "pull", server.addr, "QmcVRfDDaMQWwCoE9LB3V5tRsDAUQ8FGDnwBgmiWip6WN6",
             "--home", str(tmp_path / "h2")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env())
        # started and dialing: its signal watcher runs (it catches SIGTERM,
        # which Python alone does not) and it holds a connection to the
        # stopped server (the kernel accepted it; the peer never answers)
        port = int(server.addr.split("/")[4])
        wait_until(lambda: client.poll() is not None or (
            catches_signal(client.pid, signal.SIGTERM) and tcp_connected(client.pid, port)),
            "the pull to dial the stopped server")
        assert client.poll() is None, client.communicate()[1]
        client.send_signal(signal.SIGINT)
        _, err = client.communicate(timeout=TIMEOUT)
        assert client.returncode == 130, err
        assert "SIGINT: transfer stopped" in err and "Traceback" not in err
        assert run("ls", "--all", "--json", "--home", tmp_path / "h2").stdout.strip() == "[]"
    finally:
        if client is not None and client.poll() is None:
            client.kill()
            client.wait(timeout=TIMEOUT)
        server.proc.send_signal(signal.SIGCONT)
        server.kill()


def test_node_on_wildcard_hands_out_dialable_addresses(tmp_path):
    import anyio

    from datatransfer.node import Node

    async def main() -> list[str]:
        async with Node(tmp_path, listen=("/ip4/0.0.0.0/tcp/0",), metrics=True) as node:
            assert node.metrics is not None and "datatransfer_channels" in node.metrics.render()
            return node.addrs()

    addrs = anyio.run(main, backend="trio")
    assert addrs and all("/0.0.0.0/" not in a for a in addrs)
    assert any(a.startswith("/ip4/127.0.0.1/tcp/") for a in addrs)
    assert all(re.search(r"/p2p/\w+$", a) for a in addrs)


def test_a_second_node_on_a_held_home_is_refused_naming_the_holder(tmp_path):
    """Two nodes on one home would share one identity and one channel
    store: the second process is refused, with the first one's pid. (A
    pull on the home of a daemon with its API goes through the API instead:
    tests/test_daemon.py; this one runs without.)"""
    server = Server(tmp_path / "h1", "--no-api")
    try:
        second = run("serve", "--home", tmp_path / "h1", "--listen", "/ip4/127.0.0.1/tcp/0",
                     ok=False, timeout=60)
        assert second.returncode == 1, second.stderr
        assert f"held by process {server.proc.pid}" in second.stderr, second.stderr
        pull = run("pull", server.addr, "QmcVRfDDaMQWwCoE9LB3V5tRsDAUQ8FGDnwBgmiWip6WN6",
                   "--home", tmp_path / "h1", ok=False)
        assert pull.returncode == 1 and f"process {server.proc.pid}" in pull.stderr
    finally:
        assert server.stop() == 0
    # the lock goes with the process: the home serves again
    Server(tmp_path / "h1").stop()


def test_a_node_killed_hard_leaves_no_lock_behind(tmp_path):
    server = Server(tmp_path / "h1")
    server.proc.kill()
    server.proc.wait(timeout=20)
    again = Server(tmp_path / "h1")
    assert again.stop() == 0


def test_serve_refuses_a_port_in_use(tmp_path):
    server = Server(tmp_path / "h1")
    try:
        port = server.addr.split("/tcp/")[1].split("/")[0]
        second = run("serve", "--home", tmp_path / "h2", "--listen",
                     f"/ip4/127.0.0.1/tcp/{port}", ok=False)
        assert second.returncode == 1, second.stderr
        assert f"port {port} is in use" in second.stderr, second.stderr
    finally:
        assert server.stop() == 0
