"""Transfers survive interruptions (issue 11, item 2): two OS processes each,
``datatransfer serve`` and ``datatransfer pull`` / ``push`` on separate homes.

Each case interrupts a transfer mid-way, lets it resume, and checks that it
completed, that the bytes are identical, that each side holds one channel
that counted every byte once, and how much block data moved again after the
interruption: at most one block. That figure is exact, counted at the
receiver, where a block sent again arrives a second time (block data only,
so no protocol overhead enters it):

* a receiver that ran throughout (the serving node of a push, a pull that
  outlived its server) received ``datatransfer_graphsync_block_bytes_total
  {direction="received"}`` / ``block data this run: ... received`` bytes in
  all, every copy: minus the DAG's size, that is what came twice;
* a pull run again received R bytes in its second run while its home held H
  bytes of the DAG after the first: R - (size - H) came twice.

Run again only after the server ended its side of the channel (its
no-progress timeout, ``serve --no-progress-timeout``), the restart is
refused and the command opens a new channel: it too moves only what is
missing, because a receiver opening a data request asks the sender not to
send what its store holds (as does a new pull of a DAG the home holds in
part or whole).

Mid-transfer is made deterministic by a relay (tests/_relay.py) between the
client and the server that stops forwarding the data after a point, and by
waiting for the receiver's store to hold part of the DAG; no sleeps, except
the 20 s absence of the server that one case is about.
"""

from __future__ import annotations

import json
import re
import signal
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from _processes import (
    CLI,
    MIB,
    TIMEOUT,
    Proc,
    cli_serve,
    free_port,
    make_file,
    run,
    sha256,
    split_addr,
    wait_until,
)
from _relay import Relay

from datatransfer.daemon.client import ControlClient

#: The file moved in every case, and where the relay stops forwarding its
#: data the first time (the receiver then holds part of it, the rest waits).
SIZE = 4 * MIB + 77
HOLD = 3 * MIB // 2
#: How much of the DAG the receiver holds before the interruption, at least.
BEFORE = MIB // 2
#: See big_source.
BIG = 40 * MIB + 99


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The file every case moves (written once) and its sha256."""
    path = tmp_path_factory.mktemp("interruptions") / "src.bin"
    return path, make_file(path, SIZE, seed=111)


class Server:
    """``datatransfer serve`` on a home, with its metrics on a free port."""

    def __init__(self, start: Callable[..., Proc], home: Path, port: int, *extra: str) -> None:
        self.proc = start([*CLI, "serve", "--home", str(home), "--metrics-port", "0",
                           "--listen", f"/ip4/127.0.0.1/tcp/{port}", *extra])
        self.addr = self.proc.expect(lambda w: True)[0]
        assert split_addr(self.addr)[0] == port, self.proc.describe()
        found: list[str] = []

        def metrics_url() -> bool:
            found.extend(m.group(1) for m in (re.search(r"metrics: (\S+)", line)
                                              for line in self.proc.stderr) if m)
            return bool(found)

        wait_until(metrics_url, f"the metrics address\n{self.proc.describe()}")
        self.metrics = found[0]

    def block_bytes(self, direction: str) -> int:
        text = urllib.request.urlopen(self.metrics, timeout=TIMEOUT).read().decode()
        name = f'datatransfer_graphsync_block_bytes_total{{direction="{direction}"}} '
        [value] = [line[len(name):] for line in text.splitlines() if line.startswith(name)]
        return int(float(value))

    def stop(self) -> None:
        self.proc.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait() == 0, self.proc.describe()


def stored(home: Path) -> int:
    """Bytes of block data in the home's block store (each home here holds
    the one DAG or part of it). Read while its node runs: SQLite in WAL mode."""
    from datatransfer.ipld.blockstore import SqliteBlockstore

    path = home / "blocks.sqlite"
    if not path.exists():
        return 0
    with SqliteBlockstore(path) as store:
        return store.total_bytes()


def dag(home: Path, cid: str) -> tuple[int, int]:
    """(total size, largest block) of the DAG under ``cid``, which is all
    that ``home`` holds."""
    from datatransfer.home import open_blockstore
    from datatransfer.ipld.cid import CID
    from datatransfer.node import dag_size

    with open_blockstore(home) as store:
        sizes = [store.get_size(c) for c in store.iterate()]
        total = dag_size(CID.parse(cid), store)
    assert total == sum(sizes)
    return total, max(sizes)


def run_received(stderr: str) -> int:
    """The block data a ``datatransfer -v`` pull or push received in its run."""
    m = re.search(r"block data this run: \d+ bytes sent, (\d+) bytes received", stderr)
    assert m, stderr
    return int(m.group(1))


def channels(home: Path) -> list[dict]:
    return json.loads(run("ls", "--all", "--json", "--home", home).stdout)


def one_completed(home: Path, field: str, size: int) -> str:
    """The home holds one channel, Completed, that counted each byte once;
    return its short id."""
    [ch] = channels(home)
    assert (ch["status"], ch[field]) == ("Completed", size), ch
    return ch["id"]


def the_channel(home: Path, status: str) -> dict:
    """The one channel of ``home`` in ``status``."""
    [ch] = [c for c in channels(home) if c["status"] == status]
    return ch


def add(path: Path, home: Path) -> str:
    return run("add", path, "--home", home).stdout.split()[-1]


def mid_transfer(relay: Relay, receiver: Path) -> int:
    """Wait until the relay stopped forwarding the data and the receiver
    stored part of the DAG; return how much."""
    wait_until(relay.holding.is_set, "the relay to hold the data")
    wait_until(lambda: stored(receiver) >= BEFORE, "the receiver to store part of the DAG")
    held = stored(receiver)
    assert held < SIZE // 2, held
    return held


# -- the client interrupted, then run again --------------------------------------------


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGKILL], ids=["sigint", "sigkill"])
def test_pull_interrupted_then_run_again_moves_only_what_is_missing(
        tmp_path, procs, relay_to, source, how):
    src, digest = source
    server_home, client_home = tmp_path / "server", tmp_path / "client"
    cid = add(src, server_home)
    size, block = dag(server_home, cid)
    server = Server(procs, server_home, free_port())
    port, peer = split_addr(server.addr)
    relay = relay_to(port)
    relay.hold_after("down", HOLD)
    out = tmp_path / "out.bin"
    command = ["-v", "pull", relay.addr(peer), cid, "--home", str(client_home), "-o", str(out)]
    first = procs([*CLI, *command])
    mid_transfer(relay, client_home)
    first.proc.send_signal(how)
    rc = first.wait()
    [live] = channels(client_home)  # left live in the home, not cancelled
    assert live["status"] == "Ongoing", live
    if how == signal.SIGINT:
        assert rc == 130, first.describe()
        assert (f"SIGINT: interrupted; run the same command again to resume channel "
                f"{live['id']}") in "".join(first.stderr)
    held = stored(client_home)  # what the interrupted run left
    assert not out.exists()
    relay.cut()  # the relay forwards everything from now on
    again = run(*command)
    assert f"resuming channel {live['id']}" in again.stderr, again.stderr
    assert sha256(out) == digest
    one_completed(client_home, "received", size)
    one_completed(server_home, "sent", size)
    moved_again = run_received(again.stderr) - (size - held)
    assert 0 <= moved_again <= block, (moved_again, held, size)
    server.stop()


def test_push_killed_then_run_again_moves_only_what_is_missing(
        tmp_path, procs, relay_to, source):
    """(Ctrl-C takes the pull's path through the command: tested above.)"""
    src, digest = source
    server_home, client_home = tmp_path / "server", tmp_path / "client"
    cid = add(src, client_home)
    size, block = dag(client_home, cid)
    server = Server(procs, server_home, free_port())
    port, peer = split_addr(server.addr)
    relay = relay_to(port)
    relay.hold_after("up", HOLD)
    command = ["-v", "push", relay.addr(peer), cid, "--home", str(client_home)]
    first = procs([*CLI, *command])
    mid_transfer(relay, server_home)
    first.proc.send_signal(signal.SIGKILL)
    first.wait()
    [live] = channels(client_home)
    # (TransferFinished: the pusher had handed its last block to the
    # connection, which the relay holds; the channel is live either way)
    assert live["status"] in ("Ongoing", "TransferFinished"), live
    relay.cut()
    again = run(*command)
    assert f"resuming channel {live['id']}" in again.stderr, again.stderr
    one_completed(client_home, "sent", size)
    one_completed(server_home, "received", size)
    # the server received throughout: all it got, minus the DAG, came twice
    moved_again = server.block_bytes("received") - size
    assert 0 <= moved_again <= block, (moved_again, size)
    back = tmp_path / "back.bin"
    run("cat", cid, "-o", back, "--home", server_home)  # while the server still runs
    assert sha256(back) == digest
    server.stop()


# -- the server killed, or away for a while -------------------------------------------------


@pytest.mark.parametrize("away", [0.0, 20.0], ids=["restarted", "away-20s"])
def test_pull_whose_server_was_killed_resumes_once_it_is_back(
        tmp_path, procs, relay_to, source, away):
    """The server is SIGKILLed mid-pull and started again from its home on
    the same port, at once or after 20 s. The pull keeps running: it restarts
    its channel with a backoff (bounded by time, not by a count of tries)
    and completes without being run again."""
    src, digest = source
    server_home, client_home = tmp_path / "server", tmp_path / "client"
    cid = add(src, server_home)
    size, block = dag(server_home, cid)
    port = free_port()
    server = Server(procs, server_home, port)
    relay = relay_to(port)
    relay.hold_after("down", HOLD)
    out = tmp_path / "out.bin"
    client = procs([*CLI, "-v", "pull", relay.addr(split_addr(server.addr)[1]), cid,
                    "--home", str(client_home), "-o", str(out)])
    mid_transfer(relay, client_home)
    server.proc.proc.send_signal(signal.SIGKILL)
    server.proc.wait()
    relay.cut()  # (a redial through the relay is forwarded from now on)
    if away:
        time.sleep(away)  # the server's absence itself, not a wait for something
        assert client.proc.poll() is None, client.describe()  # still trying
        [live] = channels(client_home)  # its restarts fail while the server is away
        assert live["status"] == "Ongoing", live
        assert "unable to open data request" in live["message"], live
    again = Server(procs, server_home, port)
    assert again.addr == server.addr  # same peer id, same port
    assert client.wait() == 0, client.describe()
    err = "".join(client.stderr)
    assert "Completed" in err, err
    assert sha256(out) == digest
    one_completed(client_home, "received", size)
    one_completed(server_home, "sent", size)
    # the client received throughout: all it got, minus the DAG, came twice
    moved_again = run_received(err) - size
    assert 0 <= moved_again <= block, (moved_again, size)
    again.stop()


# -- run again after the server ended its side; DAGs held before the pull --------------


@pytest.fixture(scope="module")
def big_source(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A file larger than what a server writes past the relay's hold (the
    muxer's 16 MiB window and the sockets' buffers), so that it is still
    sending when the client is killed, instead of done with its side."""
    path = tmp_path_factory.mktemp("interruptions") / "big.bin"
    return path, make_file(path, BIG, seed=112)


def test_pull_run_again_after_the_server_ended_its_channel_moves_only_what_is_missing(
        tmp_path, procs, relay_to, big_source):
    """The client is killed mid-pull and run again only after the server
    ended its side of the channel (its no-progress timeout, 1 s here instead
    of 60): the restart is refused, so the command opens a new channel, whose
    request lists what the home holds: no block moves twice."""
    src, digest = big_source
    server_home, client_home = tmp_path / "server", tmp_path / "client"
    cid = add(src, server_home)
    size, block = dag(server_home, cid)
    server = Server(procs, server_home, free_port(), "--no-progress-timeout", "1")
    port, peer = split_addr(server.addr)
    relay = relay_to(port)
    relay.hold_after("down", HOLD)
    out = tmp_path / "out.bin"
    command = ["-v", "pull", relay.addr(peer), cid, "--home", str(client_home), "-o", str(out)]
    first = procs([*CLI, *command])
    mid_transfer(relay, client_home)
    first.proc.send_signal(signal.SIGKILL)
    first.wait()
    [live] = channels(client_home)
    assert live["status"] == "Ongoing", live
    relay.cut()  # the server's connection goes too, mid-send (its data was held)
    wait_until(lambda: channels(server_home)[0]["status"] == "Failed",
               "the server to end its side of the channel (no progress for 1 s)")
    held = stored(client_home)
    again = run(*command)
    assert f"channel {live['id']} could not be resumed" in again.stderr, again.stderr
    assert sha256(out) == digest
    assert the_channel(client_home, "Failed")["id"] == live["id"]
    assert the_channel(client_home, "Completed")["received"] == size  # the held blocks count
    # the server's new channel sent exactly what the home lacked, once
    assert the_channel(server_home, "Completed")["sent"] == size - held
    assert run_received(again.stderr) == size - held
    server.stop()


def test_push_run_again_after_the_server_ended_its_channel_moves_only_what_is_missing(
        tmp_path, procs, relay_to, big_source):
    """The same for a push: the server, the receiver, ended its side; the
    pusher's new channel is answered by a data request that skips what the
    server's home holds."""
    src, digest = big_source
    server_home, client_home = tmp_path / "server", tmp_path / "client"
    cid = add(src, client_home)
    size, block = dag(client_home, cid)
    server = Server(procs, server_home, free_port(), "--no-progress-timeout", "1")
    port, peer = split_addr(server.addr)
    relay = relay_to(port)
    relay.hold_after("up", HOLD)
    command = ["-v", "push", relay.addr(peer), cid, "--home", str(client_home)]
    first = procs([*CLI, *command])
    mid_transfer(relay, server_home)
    first.proc.send_signal(signal.SIGKILL)
    first.wait()
    [live] = channels(client_home)
    relay.cut()
    wait_until(lambda: channels(server_home)[0]["status"] == "Failed",
               "the server to end its side of the channel (no progress for 1 s)")
    held = stored(server_home)
    before = server.block_bytes("received")
    again = run(*command)
    assert f"channel {live['id']} could not be resumed" in again.stderr, again.stderr
    assert the_channel(client_home, "Completed")["sent"] == size - held
    assert the_channel(server_home, "Completed")["received"] == size
    assert server.block_bytes("received") - before == size - held  # nothing twice
    back = tmp_path / "back.bin"
    run("cat", cid, "-o", back, "--home", server_home)
    assert sha256(back) == digest
    server.stop()


@pytest.mark.parametrize("refused", [False, True], ids=["reopens", "denied"])
def test_pull_through_a_daemon_whose_resumed_channel_fails_opens_a_new_one(
        tmp_path, procs, relay_to, big_source, refused):
    """A pull through the daemon attaches to the channel the daemon resumed
    when it started again on its home, and the server had ended its side
    (its no-progress timeout): the restart is refused and the channel
    fails. As without a daemon, the pull then opens a new channel, once,
    which moves only what the home lacks. When the server refuses the peer
    altogether (``--deny-peer``), the new channel fails too and the pull
    reports it, without opening a third.

    The attach is made certain by the relay: the daemon's restarts dial the
    address its book holds, the relay's, closed by then, so they fail (the
    channel stays live, restarting with a backoff) until the pull dials the
    server directly; the next restart reaches the server and is refused."""
    src, digest = big_source
    server_home, client_home = tmp_path / "server", tmp_path / "client"
    cid = add(src, server_home)
    size, _ = dag(server_home, cid)
    port = free_port()
    server = Server(procs, server_home, port, "--no-progress-timeout", "1")
    peer = split_addr(server.addr)[1]
    relay = relay_to(port)
    relay.hold_after("down", HOLD)
    daemon, _ = cli_serve(procs, client_home)
    api = ControlClient.for_home(client_home)
    assert api is not None
    me = api.node()["peer_id"]
    first = api.open(relay.addr(peer), cid)["channel"]
    mid_transfer(relay, client_home)
    daemon.proc.send_signal(signal.SIGKILL)
    daemon.wait()
    relay.cut()  # the server's connection goes too, mid-send (its data was held)
    wait_until(lambda: channels(server_home)[0]["status"] == "Failed",
               "the server to end its side of the channel (no progress for 1 s)")
    relay.close()  # from now on the daemon's restarts find no one there
    held = stored(client_home)
    if refused:
        server.stop()
        server = Server(procs, server_home, port, "--deny-peer", me)
    daemon, _ = cli_serve(procs, client_home)
    api = ControlClient.for_home(client_home)
    assert api is not None

    def restart_failed() -> bool:
        row = api.channel(first["id"])
        assert row["status"] == "Ongoing", row
        return "unable to open data request" in row["message"]

    wait_until(restart_failed, "the daemon's restart of the channel to fail to dial")
    out = tmp_path / "out.bin"
    again = run("pull", server.addr, cid, "--home", client_home, "-o", out, ok=not refused)
    assert f"resuming channel {first['id']}" in again.stderr, again.stderr
    assert f"channel {first['id']} could not be resumed" in again.stderr, again.stderr
    assert again.stderr.count("opening a new one") == 1, again.stderr
    mine = channels(client_home)
    assert len(mine) == 2, mine  # the resumed channel and one new one, no more
    if refused:
        assert again.returncode == 1, again.stderr
        assert all(c["status"] == "Failed" for c in mine), mine
        assert not out.exists()
    else:
        assert again.returncode == 0, again.stderr
        assert sha256(out) == digest
        assert the_channel(client_home, "Failed")["id"] == first["id"]
        assert the_channel(client_home, "Completed")["received"] == size
        # the new channel sent exactly what the home lacked, once
        assert the_channel(server_home, "Completed")["sent"] == size - held
    server.stop()


def _blocks_in_order(home: Path, cid: str) -> list:
    """The DAG's blocks as the whole-DAG selector walks them, root first."""
    from datatransfer.home import open_blockstore
    from datatransfer.ipld.block import Block
    from datatransfer.ipld.blockstore import block_loader
    from datatransfer.ipld.cid import CID
    from datatransfer.ipld.selector import ALL_SELECTOR_NODE, blocks

    with open_blockstore(home) as store:
        return [Block(c, bytes(d)) for c, d in
                blocks(CID.parse(cid), ALL_SELECTOR_NODE, block_loader(store))]


@pytest.mark.parametrize("held", ["all", "first-half", "root-and-second-half"])
def test_pull_of_a_dag_the_home_holds_moves_only_what_is_missing(
        tmp_path, procs, source, held):
    """A new pull of a DAG the home holds whole, its first half (as an
    earlier channel left it), or its root and second half (a gap: the held
    blocks past it are listed by CID) moves only the blocks the home lacks;
    the channel counts the DAG's every byte, the server's what it sent."""
    from datatransfer.home import open_blockstore

    src, digest = source
    server_home, client_home = tmp_path / "server", tmp_path / "client"
    cid = add(src, server_home)
    size, _ = dag(server_home, cid)
    order = _blocks_in_order(server_home, cid)
    half = len(order) // 2
    keep = {"all": order, "first-half": order[:half],
            "root-and-second-half": order[:1] + order[half:]}[held]
    client_home.mkdir()
    with open_blockstore(client_home) as store:
        store.put_many(keep)
    have = stored(client_home)
    assert 0 < have <= size
    server = Server(procs, server_home, free_port())
    out = tmp_path / "out.bin"
    done = run("-v", "pull", server.addr, cid, "--home", client_home, "-o", out)
    assert sha256(out) == digest
    assert run_received(done.stderr) == size - have
    assert server.block_bytes("sent") == size - have
    one_completed(client_home, "received", size)
    one_completed(server_home, "sent", size - have)
    server.stop()
