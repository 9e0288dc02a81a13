"""Two nodes in separate OS processes on 127.0.0.1 (issue 5): large pull and
push, paid retrieval, a client's Ctrl-C (its channel left to resume: the
resumes are in tests/test_interruptions.py) and a cancel from the server, a
server killed and restarted mid-transfer, the connection cut mid-transfer
(pull and push), a peer sending malformed frames, a rogue responder sending
blocks nobody asked for, and rogue clients flooding a node with graphsync
requests and with channels.

Processes are ``datatransfer serve/pull/push/add/cat/ls``,
``tests/_procnode.py`` (a scriptable node printing ``WORD args`` lines) and
``tests/_rogue.py`` (a misbehaving peer); every one is killed in
``finally``. Connections are cut by ``tests/_relay.py`` (a TCP relay in the
test process). All traffic stays on loopback.
"""

from __future__ import annotations

import json
import random
import signal
import sys
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
    cli_serve,
    free_port,
    make_file,
    run,
    sha256,
    split_addr,
    wait_until,
)


def node_serve(start: Callable[..., Proc], home: Path, *extra: object,
               listen: str = LOOPBACK) -> tuple[Proc, str]:
    p = start([*PROCNODE, "serve", "--home", str(home), "--listen", listen,
               *map(str, extra)], stdin=True)
    addr = p.expect(lambda w: w[0] == "ADDR")[1]
    assert addr.startswith("/ip4/127.0.0.1/tcp/"), p.describe()
    return p, addr


def node_pull(start: Callable[..., Proc], home: Path, addr: str, cid: str,
              *extra: object) -> Proc:
    return start([*PROCNODE, "pull", "--home", str(home), "--addr", addr, "--cid", cid,
                  *map(str, extra)])


def add(path: Path, home: Path) -> str:
    return run("add", path, "--home", home).stdout.split()[-1]


def ls_statuses(home: Path) -> str:
    return run("ls", "--all", "--home", home).stdout


def assert_ls(home: Path, role: str, status: str) -> None:
    listing = ls_statuses(home)
    rows = [line for line in listing.splitlines() if role in line]
    assert rows, listing
    assert all(status in row for row in rows), listing


def _status(words: list[str]) -> str:
    return words[3] if words[0] == "STATE" else ""


# -- 1. large files ----------------------------------------------------------------------


@pytest.mark.slow
def test_pull_64mib_unixfs_file_between_processes(tmp_path, procs):
    server_home, client_home = tmp_path / "server", tmp_path / "client"
    src = tmp_path / "src.bin"
    digest = make_file(src, 64 * MIB + 4321, seed=11)
    cid = add(src, server_home)
    _, addr = cli_serve(procs, server_home)
    out = tmp_path / "out.bin"
    pulled = run("pull", addr, cid, "-o", out, "--home", client_home)
    assert "Completed" in pulled.stderr
    assert out.stat().st_size == src.stat().st_size
    assert sha256(out) == digest
    assert_ls(client_home, "receive (pull out)", "Completed")
    assert_ls(server_home, "send (pull in)", "Completed")


@pytest.mark.slow
def test_push_64mib_unixfs_file_between_processes(tmp_path, procs):
    server_home, client_home = tmp_path / "server", tmp_path / "client"
    src = tmp_path / "src.bin"
    digest = make_file(src, 64 * MIB + 99, seed=12)
    cid = add(src, client_home)
    _, addr = cli_serve(procs, server_home)
    pushed = run("push", addr, cid, "--home", client_home)
    assert "Completed" in pushed.stderr
    back = tmp_path / "back.bin"
    run("cat", cid, "-o", back, "--home", server_home)  # while the server still runs
    assert sha256(back) == digest
    assert_ls(client_home, "send (push out)", "Completed")
    assert_ls(server_home, "receive (push in)", "Completed")


# -- 2. paid retrieval -------------------------------------------------------------------


def test_paid_retrieval_pauses_and_completes_with_a_final_voucher(tmp_path, procs):
    server_home, client_home = tmp_path / "server", tmp_path / "client"
    src = tmp_path / "src.bin"
    digest = make_file(src, 6 * MIB + 17, seed=21)
    cid = add(src, server_home)
    server, addr = node_serve(procs, server_home, "--pay-interval", 2 * MIB)
    client = node_pull(procs, client_home, addr, cid, "--pay")
    done = client.expect(lambda w: w[0] == "DONE")
    assert client.wait() == 0, client.describe()
    status, received, size = done[1], int(done[2]), int(done[3])
    assert status == "Completed", client.describe()
    assert received == size > src.stat().st_size
    paid = [int(line.split()[1]) for line in client.seen if line.startswith("PAID")]
    # paused at least at 2, 4 and 6 MiB (more when data was in flight), then
    # the final voucher settles everything
    assert len(paid) >= 3 and paid == sorted(paid), paid
    assert paid[-1] == size, (paid, size)
    statuses = [line.split()[1] for line in client.seen if line.startswith("STATUS")]
    assert statuses.count("ResponderPaused") >= 2, statuses
    assert statuses[-1] == "Completed", statuses
    server.expect(lambda w: _status(w) == "Completed")
    server.send("quit")
    assert server.wait() == 0, server.describe()
    assert_ls(client_home, "receive (pull out)", "Completed")
    assert_ls(server_home, "send (pull in)", "Completed")
    out = tmp_path / "out.bin"
    run("cat", cid, "-o", out, "--home", client_home)
    assert sha256(out) == digest


# -- 3. Ctrl-C of the client, cancel from the server -------------------------------


def test_client_sigint_during_pull_leaves_its_channel_to_resume(tmp_path, procs):
    """Ctrl-C is not a cancel: the channel stays live on both sides and the
    client says how to resume it (tests/test_interruptions.py runs it again)."""
    server_home, client_home = tmp_path / "server", tmp_path / "client"
    src = tmp_path / "src.bin"
    make_file(src, 4 * MIB, seed=31)
    cid = add(src, server_home)
    # pauses after 1 MiB for a payment the command-line client never sends
    server, addr = node_serve(procs, server_home, "--pay-interval", MIB)
    client = procs([*CLI, "pull", addr, cid, "--home", str(client_home)])
    server.expect(lambda w: _status(w) == "ResponderPaused")
    assert client.proc.poll() is None, client.describe()
    client.proc.send_signal(signal.SIGINT)
    assert client.wait() == 130, client.describe()
    err = "".join(client.stderr)
    assert "Traceback" not in err
    live = json.loads(run("ls", "--json", "--home", client_home).stdout)
    # (paused, unless the server's pause was still on its way)
    assert [c["status"] in ("Ongoing", "ResponderPaused") for c in live] == [True], live
    assert (f"SIGINT: interrupted; run the same command again to resume channel "
            f"{live[0]['id']}") in err, err
    # the server was told nothing: its channel waits for the client to come back
    server.send("quit")
    assert server.wait() == 0, server.describe()
    assert not any(_status(line.split()) in ("Cancelled", "Failed") for line in server.seen)
    assert_ls(server_home, "send (pull in)", "ResponderPaused")


def test_server_cancel_during_pull_cancels_on_both_sides(tmp_path, procs):
    server_home, client_home = tmp_path / "server", tmp_path / "client"
    src = tmp_path / "src.bin"
    make_file(src, 4 * MIB, seed=32)
    cid = add(src, server_home)
    server, addr = node_serve(procs, server_home, "--pay-interval", MIB)
    client = node_pull(procs, client_home, addr, cid)  # never pays
    client.expect(lambda w: _status(w) == "ResponderPaused")
    server.send("cancel")
    assert server.expect(lambda w: w[0] == "CANCELLED") == ["CANCELLED", "1"]
    done = client.expect(lambda w: w[0] == "DONE")
    assert client.wait() == 0, client.describe()
    assert done[1] == "Cancelled", client.describe()
    assert 0 < int(done[2]) < src.stat().st_size
    # (the STATE line may come before the CANCELLED answer: both are printed
    # asynchronously)
    if not any(_status(line.split()) == "Cancelled" for line in server.seen):
        server.expect(lambda w: _status(w) == "Cancelled")
    server.send("quit")
    assert server.wait() == 0, server.describe()
    assert_ls(client_home, "receive (pull out)", "Cancelled")
    assert_ls(server_home, "send (pull in)", "Cancelled")


# -- 4. server killed and restarted ------------------------------------------------------


def _kill_server_mid_pull(tmp_path: Path, procs: Callable[..., Proc],
                          *client_extra: object) -> tuple[Proc, Proc, str, str, list[str]]:
    """Pull 16 MiB from a slowed-down server, SIGKILL it once 4 MiB arrived,
    restart it from its home on the same port; return (client, restarted
    server, cid, sha256, the client's DONE line).

    The client is stopped (SIGSTOP) while the server starts again, however
    long that takes on this machine: its restarts (limited in number, with
    a backoff of seconds) resume once the server listens."""
    server_home, client_home = tmp_path / "server", tmp_path / "client"
    src = tmp_path / "src.bin"
    digest = make_file(src, 16 * MIB + 5, seed=41)
    cid = add(src, server_home)
    listen = f"/ip4/127.0.0.1/tcp/{free_port()}"
    server, addr = node_serve(procs, server_home, "--slow", 0.05, listen=listen)
    client = node_pull(procs, client_home, addr, cid, *client_extra)
    mid = client.expect(lambda w: w[0] == "STATE" and int(w[5]) >= 4 * MIB)
    assert int(mid[5]) < 12 * MIB, client.describe()
    server.proc.send_signal(signal.SIGKILL)
    client.proc.send_signal(signal.SIGSTOP)
    server.wait()
    try:
        restarted, addr2 = node_serve(procs, server_home, listen=listen)
    finally:
        client.proc.send_signal(signal.SIGCONT)
    assert addr2 == addr  # same peer id, same port
    done = client.expect(lambda w: w[0] == "DONE")
    assert client.wait() == 0, client.describe()
    return client, restarted, cid, digest, done


def test_server_sigkilled_mid_pull_restarts_from_its_home_and_the_pull_completes(
        tmp_path, procs):
    # with the Manager's default restart limit and backoff (5 restarts over
    # about 6 s): the server is back on the same address (while the client
    # was stopped) and the pull's restart reaches it
    client, restarted, cid, digest, done = _kill_server_mid_pull(
        tmp_path, procs, "--max-restarts", 5, "--max-restart-backoff", 5)
    status, received, size = done[1], int(done[2]), int(done[3])
    assert status == "Completed", client.describe()
    # every byte counted once: nothing that arrived before the kill came twice
    assert received == size, (received, size, client.describe())
    final = restarted.expect(lambda w: _status(w) == "Completed")
    assert int(final[4]) == size, restarted.describe()  # the responder's sent, once too
    first = next(line.split() for line in restarted.seen if line.startswith("STATE"))
    assert 0 < int(first[4]) < size, restarted.describe()  # resumed from its store
    restarted.send("quit")
    assert restarted.wait() == 0, restarted.describe()
    out = tmp_path / "out.bin"
    run("cat", cid, "-o", out, "--home", tmp_path / "client")
    assert sha256(out) == digest
    assert_ls(tmp_path / "client", "receive (pull out)", "Completed")
    assert_ls(tmp_path / "server", "send (pull in)", "Completed")


# -- 5. malformed frames -----------------------------------------------------------------


def _send_garbage(tmp_path: Path, addr: str) -> dict[str, str]:
    """From a libp2p host in this process, open a graphsync stream with an
    oversized frame header and a data-transfer stream with garbage; return
    how each stream ended."""
    import anyio

    from datatransfer.ipld.varint import encode_uvarint
    from datatransfer.messages import PROTOCOL_ID as DT_PROTOCOL
    from transport.graphsync.framing import MAX_FRAME
    from transport.libp2p import connect, libp2p_id, load_or_create_identity, open_host
    from transport.libp2p.transport import GRAPHSYNC_PROTOCOL

    payloads = {
        str(GRAPHSYNC_PROTOCOL): encode_uvarint(MAX_FRAME + 1) + b"\x00" * 64,
        str(DT_PROTOCOL): b"\xff" * 64,  # reserved CBOR head: not a message
    }

    async def main() -> dict[str, str]:
        outcome: dict[str, str] = {}
        key = load_or_create_identity(tmp_path / "rogue")
        async with open_host(key, (LOOPBACK,)) as host:
            with anyio.fail_after(TIMEOUT):
                peer = await connect(host, addr)
            for proto, payload in payloads.items():
                with anyio.fail_after(TIMEOUT):
                    stream = await host.new_stream(libp2p_id(peer), [proto])
                    await stream.write(payload)
                    try:
                        data = await stream.read(1024)
                        outcome[proto] = f"read {data!r}"
                    except Exception as exc:  # noqa: BLE001 - reset / EOF: refused
                        outcome[proto] = f"refused: {type(exc).__name__}"
                try:
                    await stream.reset()
                except Exception:  # noqa: BLE001
                    pass
        return outcome

    return anyio.run(main, backend="trio")


def test_malformed_frames_are_refused_and_the_server_keeps_serving(tmp_path, procs):
    server_home, client_home = tmp_path / "server", tmp_path / "client"
    src = tmp_path / "src.bin"
    digest = make_file(src, 2 * MIB + 3, seed=51)
    cid = add(src, server_home)
    server, addr = cli_serve(procs, server_home)
    outcome = _send_garbage(tmp_path, addr)
    assert len(outcome) == 2, outcome
    for proto, how in outcome.items():  # reset (or closed) by the server, no answer
        assert how.startswith("refused") or how == "read b''", (proto, how)
    # the server logged both refusals (oversized graphsync frame, bad CBOR)
    wait_until(lambda: "graphsync stream from" in "".join(server.stderr)
               and "refused a malformed message" in "".join(server.stderr),
               f"both refusals in the server's log\n{server.describe()}")
    out = tmp_path / "out.bin"
    pulled = run("pull", addr, cid, "-o", out, "--home", client_home)
    assert "Completed" in pulled.stderr
    assert sha256(out) == digest
    assert server.proc.poll() is None
    server.proc.send_signal(signal.SIGTERM)
    assert server.wait() == 0, server.describe()


# -- 6. the connection cut mid-transfer ----------------------------------------------------


def _events(p: Proc, name: str) -> list[list[str]]:
    return [line.split() for line in p.seen if line.startswith(f"EVENT {name} ")]


#: Bytes a resumed transfer may carry on top of the block data it still
#: needs: Noise (18 B per 64 KiB record), Yamux (12 B per frame), graphsync
#: framing and metadata (~50 B per block), data-transfer messages and the new
#: connection's handshakes. A transfer that sent again what had arrived before
#: the cut (at least 1 MiB here) exceeds it.
def _resend_slack(size: int) -> int:
    return size // 50 + 64 * 1024


def test_connection_cut_mid_pull_resumes_without_resending(tmp_path, procs, relay_to):
    server_home, client_home = tmp_path / "server", tmp_path / "client"
    src = tmp_path / "src.bin"
    digest = make_file(src, 8 * MIB + 77, seed=61)
    cid = add(src, server_home)
    # every connection goes through the relay: the server never dials, the
    # client dials the relay's address only (not the one identify announces)
    server, addr = node_serve(procs, server_home, "--no-dial")
    port, peer = split_addr(addr)
    relay = relay_to(port)
    # the server's data stops reaching the client after 3 MiB; the cut comes
    # once the client reports 1 MiB stored, so it lands mid-transfer whatever
    # the machine's speed
    relay.hold_after("down", 3 * MIB)
    client = node_pull(procs, client_home, relay.addr(peer), cid, "--max-restarts", 5,
                       "--only-via")
    before = client.expect(lambda w: w[0] == "STATE" and int(w[5]) >= MIB)
    assert int(before[5]) < src.stat().st_size // 2, client.describe()  # mid-transfer
    assert relay.cut() >= 1  # reset: the client's (and the server's) connection dies
    done = client.expect(lambda w: w[0] == "DONE")
    assert client.wait() == 0, client.describe()
    status, received, size = done[1], int(done[2]), int(done[3])
    assert status == "Completed", client.describe()
    assert received == size > src.stat().st_size  # every byte counted once
    # the cut was seen and the channel restarted over a new connection; the
    # server answered the restart with a Restart, or with a Complete when it
    # had sent its last block already (into buffers the cut lost)
    cuts = _events(client, "Disconnected")
    assert cuts, client.describe()
    after = client.seen[client.seen.index(" ".join(cuts[0])):]
    assert (_events(client, "Restart") or "STATUS ResponderCompleted" in after), (
        client.describe())
    # stored before the restart, not asked for again (the cut ended the old
    # request: nothing more of it was taken after this event)
    arrived = int(cuts[0][5])
    assert MIB <= arrived < size, cuts
    assert relay.accepted[1] >= 1, (relay.accepted, client.describe())
    # nothing that had arrived came again: after the cut the server sent the
    # rest of the DAG (what never got through) and no more
    resent = relay.after_first_cut("down")
    assert size - relay.forwarded[0]["down"] <= resent, (resent, relay.forwarded)
    assert resent <= size - arrived + _resend_slack(size), (
        resent, size, arrived, client.describe())
    # the server's count of that channel never went past the DAG's size
    server.expect(lambda w: _status(w) == "Completed")
    sent = [int(line.split()[4]) for line in server.seen if line.startswith("STATE")]
    assert max(sent) == size, (sent, size)
    server.send("quit")
    assert server.wait() == 0, server.describe()
    out = tmp_path / "out.bin"
    run("cat", cid, "-o", out, "--home", client_home)
    assert sha256(out) == digest


def test_connection_cut_mid_push_resumes_without_resending(tmp_path, procs, relay_to):
    server_home, client_home = tmp_path / "server", tmp_path / "client"
    src = tmp_path / "src.bin"
    digest = make_file(src, 8 * MIB + 91, seed=62)
    cid = add(src, client_home)
    server, addr = node_serve(procs, server_home, "--no-dial")
    port, peer = split_addr(addr)
    relay = relay_to(port)
    relay.hold_after("up", 3 * MIB)  # the pushed data stops reaching the server
    client = procs([*PROCNODE, "push", "--home", str(client_home), "--addr", relay.addr(peer),
                    "--cid", cid, "--max-restarts", "5", "--only-via"])
    before = server.expect(lambda w: w[0] == "STATE" and int(w[5]) >= MIB)
    assert int(before[5]) < src.stat().st_size // 2, server.describe()  # mid-transfer
    assert relay.cut() >= 1
    done = client.expect(lambda w: w[0] == "DONE")
    assert client.wait() == 0, client.describe()
    status, sent, size = done[1], int(done[2]), int(done[3])
    assert status == "Completed", client.describe()
    assert sent == size > src.stat().st_size, client.describe()
    final = server.expect(lambda w: _status(w) == "Completed")
    assert int(final[5]) == size, server.describe()  # the receiver counted each byte once
    # the pusher restarted the channel; the receiver re-requested the rest
    assert _events(client, "Disconnected") and _events(client, "Restart"), client.describe()
    restarts = _events(server, "Restart")
    assert restarts, server.describe()
    arrived = int(restarts[0][5])
    assert MIB <= arrived < size, restarts
    assert relay.accepted[1] >= 1, (relay.accepted, client.describe(), server.describe())
    resent = relay.after_first_cut("up")
    assert size - relay.forwarded[0]["up"] <= resent, (resent, relay.forwarded)
    assert resent <= size - arrived + _resend_slack(size), (
        resent, size, arrived, client.describe(), server.describe())
    server.send("quit")
    assert server.wait() == 0, server.describe()
    back = tmp_path / "back.bin"
    run("cat", cid, "-o", back, "--home", server_home)
    assert sha256(back) == digest


# -- 7. a rogue responder: blocks nobody asked for ------------------------------------------

ROGUE = [sys.executable, str(Path(__file__).with_name("_rogue.py"))]


def _stored(home: Path, cids: list[str]) -> list[str]:
    """Which of ``cids`` the home's block store holds (read once the node stopped)."""
    from datatransfer.home import open_blockstore
    from datatransfer.ipld.cid import CID

    with open_blockstore(home) as store:
        return [c for c in cids if store.has(CID.parse(c))]


def test_rogue_blocks_are_refused_and_the_node_keeps_serving(tmp_path, procs):
    node_home, honest_home = tmp_path / "node", tmp_path / "honest"
    src = tmp_path / "src.bin"
    digest = make_file(src, 2 * MIB + 5, seed=71)
    cid = add(src, node_home)  # what honest peers pull from our node
    from datatransfer.ipld.block import Block

    # what our node asks the rogues for: a block nobody here has
    wanted = str(Block.of(random.Random(72).randbytes(1000)).cid)
    modes = ("wrong", "forged")
    rogue = procs([*ROGUE, "respond", "--home", str(tmp_path / "rogue"),
                   "--modes", ",".join(modes)], stdin=True)
    rogue_addrs = dict(rogue.expect(lambda w: w[0] == "ADDR")[1:] for _ in modes)
    node, addr = node_serve(procs, node_home, "--max-restarts", 2)
    for m in modes:
        node.send(f"pull {rogue_addrs[m]} {wanted}")
    for _ in modes:
        node.expect(lambda w: w[0] == "CHANNEL")
    honest = node_pull(procs, honest_home, addr, cid)  # meanwhile an honest peer pulls
    outcomes = []
    for _ in modes:
        pulled = node.expect(lambda w: w[0] == "PULLED")
        message = node.expect(lambda w: w[0] == "MESSAGE")
        outcomes.append((pulled, " ".join(message[1:])))
    for pulled, why in outcomes:
        assert pulled[3] == "Failed", node.describe()
        assert int(pulled[4]) == 0, pulled  # not one byte of it counted as received
        # the error names the block the traversal wanted (the root)
        assert wanted in why, why
    whys = sorted(why for _, why in outcomes)
    assert any("unexpected block" in why for why in whys), whys  # a block nobody asked for
    assert any("not sent" in why for why in whys), whys  # the root named, other bytes sent
    done = honest.expect(lambda w: w[0] == "DONE")
    assert honest.wait() == 0, honest.describe()
    assert done[1] == "Completed" and int(done[2]) == int(done[3]), honest.describe()
    # each restart asked again and was refused again, within the restart budget
    lines = rogue.collect()
    for m in modes:
        requests = [line for line in lines if line.startswith(f"REQUEST {m} ")]
        assert 1 <= len(requests) <= 3, rogue.describe()
    # and after the failures the node still serves
    again = node_pull(procs, tmp_path / "again", addr, cid)
    done = again.expect(lambda w: w[0] == "DONE")
    assert done[1] == "Completed" and int(done[2]) == int(done[3]), again.describe()
    node.send("quit")
    assert node.wait() == 0, node.describe()
    sent = [line.split()[2] for line in rogue.collect() if line.startswith("SENT")]
    assert len(sent) >= 3, sent
    assert _stored(node_home, [*sent, wanted]) == []  # none of the rogues' blocks kept
    out = tmp_path / "out.bin"
    run("cat", cid, "-o", out, "--home", honest_home)
    assert sha256(out) == digest


# -- 8. a flood of requests ------------------------------------------------------------------

#: The serving node's graphsync limits: requests served at once per peer (the
#: default of transport/graphsync/engine.py), and requests waiting in a peer's
#: queue (the default is 1024; the test sets a small queue, so the flood
#: needs far fewer requests to overflow it).
MAX_REQUESTS_PER_PEER = 16
MAX_QUEUED_PER_PEER = 64


def _tally(words: list[str]) -> dict[str, int]:
    return {k: int(v) for k, v in (w.split("=") for w in words[1:])}


def _resources(node: Proc) -> dict[str, int]:
    node.send("resources")
    return _tally(node.expect(lambda w: w[0] == "RESOURCES"))


def test_request_flood_is_refused_past_the_limits_and_an_honest_pull_completes(
        tmp_path, procs):
    server_home, honest_home = tmp_path / "server", tmp_path / "honest"
    src = tmp_path / "src.bin"
    digest = make_file(src, MIB + 3, seed=81)
    cid = add(src, server_home)
    # every channel pauses after its first block until paid: the flood's
    # served requests stay in progress (the rogue never pays)
    server, addr = node_serve(procs, server_home, "--pay-interval", 256 * 1024,
                              "--max-queued-per-peer", MAX_QUEUED_PER_PEER)
    over = 40
    count = MAX_REQUESTS_PER_PEER + MAX_QUEUED_PER_PEER + over
    rogue = procs([*ROGUE, "flood", "--home", str(tmp_path / "rogue"), "--addr", addr,
                   "--cid", cid, "--count", str(count)], stdin=True)
    rogue.expect(lambda w: w[0] == "FLOODED")
    # seen on the wire by the rogue: 16 requests served (each paused for
    # payment), the next 64 queued without an answer, the rest refused Busy
    tally = _tally(rogue.expect(
        lambda w: w[0] == "TALLY" and _tally(w).get("BUSY") == over
        and _tally(w).get("PAUSED") == MAX_REQUESTS_PER_PEER))
    assert tally["answered"] == MAX_REQUESTS_PER_PEER + over, tally
    busy = [int(line.split()[1]) for line in rogue.seen if line.startswith("BUSY_")]
    assert (busy[-2], busy[-1]) == (count - over + 1, count), busy  # the last ones, in order
    # the node's state is bounded by the limits, not by the flood
    res = _resources(server)
    assert res["incoming"] == MAX_REQUESTS_PER_PEER, res
    assert res["waiting"] == MAX_QUEUED_PER_PEER, res
    assert res["live_channels"] == MAX_REQUESTS_PER_PEER, res
    # meanwhile an honest client (another peer, its own quota) pulls and pays
    honest = node_pull(procs, honest_home, addr, cid, "--pay")
    done = honest.expect(lambda w: w[0] == "DONE")
    assert honest.wait() == 0, honest.describe()
    assert done[1] == "Completed" and int(done[2]) == int(done[3]), honest.describe()
    # the flood gained nothing from it: no queued request of the rogue was served
    last = [line.split() for line in rogue.collect() if line.startswith("TALLY")][-1]
    assert _tally(last)["answered"] == MAX_REQUESTS_PER_PEER + over, last
    res = _resources(server)
    assert (res["incoming"], res["waiting"]) == (MAX_REQUESTS_PER_PEER, MAX_QUEUED_PER_PEER), res
    # the rogue goes away: its queue and served requests are dropped
    rogue.proc.stdin.close()
    assert rogue.wait() == 0, rogue.describe()
    wait_until(lambda: (lambda res: (res["incoming"], res["waiting"]) == (0, 0))(
        _resources(server)), f"the rogue's requests dropped\n{server.describe()}", interval=0.1)
    server.send("quit")
    assert server.wait() == 0, server.describe()
    out = tmp_path / "out.bin"
    run("cat", cid, "-o", out, "--home", honest_home)
    assert sha256(out) == digest


# -- 9. a flood of channels ------------------------------------------------------------------


def test_channel_flood_is_refused_past_the_per_peer_limit_and_an_honest_pull_completes(
        tmp_path, procs):
    """New push requests on the message protocol (no graphsync limit applies
    to them) each make a channel: past ``max_channels_per_peer`` the node
    refuses them, saying why, and holds nothing for them."""
    server_home, honest_home = tmp_path / "server", tmp_path / "honest"
    src = tmp_path / "src.bin"
    digest = make_file(src, MIB + 7, seed=91)
    cid = add(src, server_home)
    limit, over = 6, 14
    server, addr = node_serve(procs, server_home, "--max-channels-per-peer", limit)
    rogue = procs([*ROGUE, "dtflood", "--home", str(tmp_path / "rogue"), "--addr", addr,
                   "--cid", cid, "--count", str(limit + over)], stdin=True)
    rogue.expect(lambda w: w[0] == "DTFLOODED")
    # seen by the rogue: every request answered, `limit` accepted (the node
    # opened a data request back for each), the rest rejected (a bare
    # rejection, as a Go client understands it)
    tally = _tally(rogue.expect(
        lambda w: w[0] == "DTTALLY"
        and _tally(w)["accepted"] + _tally(w)["rejected"] == limit + over))
    assert (tally["accepted"], tally["rejected"]) == (limit, over), tally
    # the node holds the rogue's accepted channels only
    res = _resources(server)
    assert (res["live_channels_peer_max"], res["live_channels"], res["channels"]) == (
        limit, limit, limit), res
    # meanwhile an honest client (another peer, its own quota) pulls
    honest = node_pull(procs, honest_home, addr, cid)
    done = honest.expect(lambda w: w[0] == "DONE")
    assert honest.wait() == 0, honest.describe()
    assert done[1] == "Completed" and int(done[2]) == int(done[3]), honest.describe()
    res = _resources(server)
    assert (res["live_channels_peer_max"], res["channels"]) == (limit, limit + 1), res
    rogue.proc.stdin.close()
    assert rogue.wait() == 0, rogue.describe()
    server.send("quit")
    assert server.wait() == 0, server.describe()
    out = tmp_path / "out.bin"
    run("cat", cid, "-o", out, "--home", honest_home)
    assert sha256(out) == digest


# -- 10. a killed pull finished by a serve on its home --------------------------------------


def test_pull_killed_then_serve_on_its_home_finishes_the_channel_from_the_address_book(
        tmp_path, procs):
    """`datatransfer pull` killed (SIGKILL) mid-transfer leaves its channel
    live in the home; a `datatransfer serve` started on that home (nobody
    tells it where the server is) restarts the channel by itself, dials the
    server at the address the pull kept in the home's address book, and
    completes it."""
    server_home, client_home = tmp_path / "server", tmp_path / "client"
    src = tmp_path / "src.bin"
    digest = make_file(src, 8 * MIB + 5, seed=73)
    cid = add(src, server_home)
    server, addr = node_serve(procs, server_home, "--slow", 0.05)
    client = procs([*CLI, "pull", addr, cid, "--home", str(client_home)])
    server.expect(lambda w: w[0] == "STATE" and int(w[4]) >= 2 * MIB)
    client.proc.send_signal(signal.SIGKILL)
    client.wait()
    before = json.loads(run("ls", "--all", "--json", "--home", client_home).stdout)
    assert [c["status"] for c in before] == ["Ongoing"], before
    book = json.loads((client_home / "peers.json").read_text())
    port, peer = split_addr(addr)
    assert book["peers"][peer]["addrs"] == [f"/ip4/127.0.0.1/tcp/{port}"], book
    node, _ = cli_serve(procs, client_home)
    server.expect(lambda w: _status(w) == "Completed")

    def statuses() -> list[tuple[str, str]]:
        rows = json.loads(run("ls", "--all", "--json", "--home", client_home).stdout)
        return [(c["id"], c["status"]) for c in rows]

    wait_until(lambda: statuses() == [(before[0]["id"], "Completed")],
               f"the channel Completed in the client's home\n{node.describe()}")
    node.proc.send_signal(signal.SIGTERM)
    assert node.wait() == 0, node.describe()
    server.send("quit")
    assert server.wait() == 0, server.describe()
    out = tmp_path / "out.bin"
    run("cat", cid, "-o", out, "--home", client_home)
    assert sha256(out) == digest
    after = json.loads(run("ls", "--all", "--json", "--home", client_home).stdout)
    from datatransfer.home import open_blockstore
    from datatransfer.ipld.cid import CID
    from datatransfer.node import dag_size

    with open_blockstore(client_home) as store:
        total = dag_size(CID.parse(cid), store)
    assert after[0]["received"] == total  # every byte of the DAG counted once
