"""The daemon and its control API, as OS processes: ``datatransfer serve``
on a client home, the CLI going through it, the token, typed errors, and
pause / resume / restart / cancel / watch of a channel held mid-transfer by
a relay."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import threading
import urllib.error
import urllib.request

import pytest
from _processes import (
    CLI,
    LOOPBACK,
    MIB,
    TIMEOUT,
    child_env,
    cli_serve,
    make_file,
    run,
    sha256,
    wait_until,
)
from _relay import Relay

from datatransfer.daemon.client import ControlClient
from datatransfer.daemon.protocol import API_FILE, ROUTES, TOKEN_FILE, ApiError


def _client(home) -> ControlClient:  # type: ignore[no-untyped-def]
    client = ControlClient.for_home(home)
    assert client is not None, f"no daemon found on {home}"
    return client


def _start_two(tmp_path, procs, size: int, seed: int) -> dict:  # type: ignore[no-untyped-def]
    """A serving daemon holding a file of ``size`` bytes and a client
    daemon on a fresh home."""
    server_home, client_home = tmp_path / "server", tmp_path / "client"
    data = tmp_path / "data.bin"
    digest = make_file(data, size, seed=seed)
    root = run("add", data, "--home", server_home).stdout.split()[-1]
    server, addr = cli_serve(procs, server_home)
    client, _ = cli_serve(procs, client_home)
    return {"server": server, "addr": addr, "client": client, "root": root, "data": data,
            "digest": digest, "server_home": server_home, "client_home": client_home,
            "tmp": tmp_path, "api": _client(client_home),
            "peer": addr.rsplit("/", 1)[-1], "port": int(addr.split("/")[4])}


@pytest.fixture
def two_daemons(tmp_path, procs):  # type: ignore[no-untyped-def]
    return _start_two(tmp_path, procs, 3 * MIB + 17, seed=11)


def test_pull_push_ls_watch_go_through_the_daemon(two_daemons):
    d = two_daemons
    home, out = d["client_home"], d["tmp"] / "out.bin"
    # the daemon holds the client home: an embedded pull would be refused
    # (HomeLocked), so success means the CLI went through the API
    pulled = run("pull", d["addr"], d["root"], "-o", out, "--home", home)
    assert "Completed" in pulled.stderr
    assert sha256(out) == d["digest"]
    chid = pulled.stdout.split()[-1]

    rows = json.loads(run("ls", "--all", "--json", "--home", home).stdout)
    assert [r["channel_id"] for r in rows] == [chid]
    assert rows[0]["status"] == "Completed" and rows[0]["root"] == d["root"]
    assert rows[0]["received"] == rows[0]["expected"] > d["data"].stat().st_size
    # plain ls lists live channels only: none
    assert json.loads(run("ls", "--json", "--home", home).stdout) == []
    # a channel named by its short id
    (one,) = json.loads(run("ls", rows[0]["id"], "--json", "--home", home).stdout)
    assert one["channel_id"] == chid

    # watch of an ended channel prints its row and ends, exit 0 (it completed)
    watched = run("watch", "--json", rows[0]["id"], "--home", home)
    assert json.loads(watched.stdout.splitlines()[-1])["status"] == "Completed"

    # push the same root back to a third home through the client's daemon
    other = d["tmp"] / "third"
    third, third_addr = _serve_plain(d, other)
    pushed = run("push", third_addr, d["root"], "--home", home)
    assert "Completed" in pushed.stderr
    back = d["tmp"] / "back.bin"
    run("cat", d["root"], "-o", back, "--home", other)
    assert sha256(back) == d["digest"]


def _serve_plain(d, home):  # type: ignore[no-untyped-def]
    """A third node, with no control API."""
    proc = subprocess.Popen([*CLI, "serve", "--no-api", "--home", str(home), "--listen",
                             LOOPBACK], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, env=child_env())
    d["tmp"].joinpath("third.pid").write_text(str(proc.pid))
    addr = proc.stdout.readline().strip()
    assert addr.startswith("/ip4/"), addr
    assert not (home / API_FILE).exists()
    return proc, addr


@pytest.fixture(autouse=True)
def _stop_third(tmp_path):  # type: ignore[no-untyped-def]
    yield
    pid_file = tmp_path / "third.pid"
    if pid_file.exists():
        try:
            os.kill(int(pid_file.read_text()), 9)
        except ProcessLookupError:
            pass


def test_the_api_refuses_requests_without_the_token(two_daemons):
    home = two_daemons["client_home"]
    token_file = home / TOKEN_FILE
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    url = json.loads((home / API_FILE).read_text())["url"]
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"}):
        req = urllib.request.Request(url + "/v0/channels", headers=headers)
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(req, timeout=TIMEOUT)
        assert caught.value.code == 401
        assert json.load(caught.value)["error"]["code"] == "unauthorized"
    # with it: an answer
    token = token_file.read_text().strip()
    req = urllib.request.Request(url + "/v0/node", headers={"Authorization": f"Bearer {token}"})
    info = json.load(urllib.request.urlopen(req, timeout=TIMEOUT))
    assert info["pid"] == two_daemons["client"].proc.pid and info["addrs"]


def test_the_api_answers_bad_requests_with_typed_errors(two_daemons):
    d = two_daemons
    client = _client(d["client_home"])
    cases = [
        (lambda: client.channel("aaaa-bbbb-1"), "channel-not-found", 404),
        (lambda: client.act("nonsense", "pause"), "channel-not-found", 404),
        (lambda: client.call("GET", "/nowhere"), "not-found", 404),
        (lambda: client.call("POST", "/channels"), "method-not-allowed", 405),
        (lambda: client.call("POST", "/pull", {"addr": d["addr"]}), "bad-request", 400),
        (lambda: client.open(d["addr"], "QmNOTaCID"), "bad-request", 400),
        (lambda: client.open(d["addr"], d["root"], selector="{not json"), "bad-request", 400),
        (lambda: client.open(d["addr"], "bafkqaaa", pull=False), "not-in-store", 404),
        (lambda: client.open(d["addr"][:-4] + "AAAA", d["root"]), "peer-unreachable", 502),
    ]
    for call, code, status in cases:
        with pytest.raises(ApiError) as caught:
            call()
        assert (caught.value.code, caught.value.status) == (code, status), caught.value.message
        assert caught.value.message
    # the daemon lived through all of it
    assert client.node()["pid"] == d["client"].proc.pid
    # an action the channel's status does not allow is refused, typed
    pulled = run("pull", d["addr"], d["root"], "--home", d["client_home"])
    chid = pulled.stdout.split()[-1]
    with pytest.raises(ApiError) as caught:
        client.act(chid, "pause")
    assert caught.value.code == "illegal-transition"
    failed = run("pause", chid, "--home", d["client_home"], ok=False)
    assert failed.returncode == 1 and failed.stderr.count("\n") == 1, failed.stderr


def test_pause_resume_restart_cancel_a_live_channel(tmp_path, procs):
    d = _start_two(tmp_path, procs, 6 * MIB, seed=5)
    server_home, client_home, data, digest = (d["server_home"], d["client_home"], d["data"],
                                              d["digest"])
    root, client, port, peer = d["root"], d["api"], d["port"], d["peer"]
    with Relay(port) as relay:
        relay.hold_after("down", 1 * MIB)  # the transfer stalls mid-way
        opened = client.open(relay.addr(peer), root)
        name = opened["channel"]["id"]
        assert not opened["resumed"]
        wait_until(lambda: client.channel(name)["received"] > 0, "some bytes")

        paused = run("pause", name, "--home", client_home).stdout
        assert "Paused" in paused, paused
        assert run("resume", name, "--home", client_home).stdout.split()[1] == "Ongoing"

        # pulling the same root again attaches to the live channel
        again = client.open(relay.addr(peer), root)
        assert again["resumed"] and again["channel"]["id"] == name

        # a second pull on the same held connection, cancelled through the CLI
        other = tmp_path / "other.bin"
        make_file(other, 2 * MIB, seed=6)
        root2 = run("add", other, "--home", server_home).stdout.split()[-1]
        name2 = client.open(relay.addr(peer), root2)["channel"]["id"]
        assert name2 != name
        run("cancel", name2, "--home", client_home)
        wait_until(lambda: client.channel(name2)["status"] == "Cancelled", "cancelled")
        assert name2 not in [r["id"] for r in client.channels()]

        relay.cut()  # new connections flow freely
        run("restart", name, "--home", client_home)
        watched = run("watch", "--json", name, "--home", client_home)
        last = json.loads(watched.stdout.splitlines()[-1])
        assert last["status"] == "Completed", watched.stdout
        out = tmp_path / "out.bin"
        run("cat", root, "-o", out, "--home", client_home)
        assert sha256(out) == digest
        assert relay.after_first_cut("down") < data.stat().st_size  # only what was missing


def test_commands_needing_a_daemon_say_so(tmp_path):
    for argv in (["cancel", "x-y-1"], ["pause", "x-y-1"], ["resume", "x-y-1"],
                 ["restart", "x-y-1"], ["watch"]):
        proc = run(*argv, "--home", tmp_path / "h", ok=False)
        assert proc.returncode == 1
        assert "no daemon runs on" in proc.stderr and "datatransfer serve" in proc.stderr


def test_an_api_file_left_by_a_killed_daemon_is_ignored(tmp_path, procs):
    home = tmp_path / "h"
    proc, _ = cli_serve(procs, home)
    assert (home / API_FILE).exists()
    proc.kill()  # SIGKILL: the files stay behind
    assert (home / API_FILE).exists()
    assert ControlClient.for_home(home) is None
    # ls reads the store itself; no error about the dead daemon
    assert run("ls", "--json", "--home", home).stdout.strip() == "[]"


def test_the_readme_lists_every_route():
    readme = (__import__("pathlib").Path(__file__).parents[1] / "README.md").read_text()
    for method, path, _, _ in ROUTES:
        assert f"| {method} | `{path}` |" in readme, (method, path)


def test_ctrl_c_detaches_and_the_same_pull_attaches_again(tmp_path, procs):
    """Ctrl-C of a pull through the daemon leaves the channel in the daemon;
    the same pull run again attaches to it and nothing is sent twice."""
    d = _start_two(tmp_path, procs, 6 * MIB, seed=8)
    client_home, data, digest = d["client_home"], d["data"], d["digest"]
    root, client, peer = d["root"], d["api"], d["peer"]
    with Relay(d["port"]) as relay:
        relay.hold_after("down", 2 * MIB)
        pull = procs([*CLI, "pull", relay.addr(peer), root, "--home", str(client_home)])
        wait_until(lambda: any(r["received"] > 0 for r in client.channels()), "some bytes")
        (row,) = client.channels()
        pull.proc.send_signal(signal.SIGINT)
        assert pull.wait() == 130
        # (its stderr is read by a thread: wait for the line, not only the exit)
        wait_until(lambda: "detached" in "".join(pull.stderr), "the detached message")
        assert client.channel(row["id"])["status"] == "Ongoing"  # still the daemon's

        # run again while the channel is still held: it attaches
        again = procs([*CLI, "pull", relay.addr(peer), root, "--home", str(client_home)])
        wait_until(lambda: any("resuming channel" in line for line in again.stderr),
                   "the second pull to attach")
        assert f"resuming channel {row['id']}" in "".join(again.stderr)
        relay.cut()  # the daemon restarts the channel on a fresh connection
        assert again.wait() == 0, again.describe()
        assert again.expect(lambda w: True)[-1] == row["channel_id"]
        final = client.channel(row["id"])
        assert final["status"] == "Completed"
        # bytes the server sent after the cut: what the client lacked, plus
        # at most one block (256 KiB chunks) and protocol overhead
        held = relay.forwarded[0]["down"]
        block, overhead = 256 * 1024, 64 * 1024
        assert relay.after_first_cut("down") <= data.stat().st_size - held + block + overhead
    out = tmp_path / "out.bin"
    run("cat", root, "-o", out, "--home", client_home)
    assert sha256(out) == digest


def test_a_watch_of_every_channel_follows_a_new_channel_to_its_end(two_daemons):
    """An unnamed watch started before a pull shows the new channel and its
    final row (it follows events; a look at the live channels alone would
    never see the channel once it has ended)."""
    d = two_daemons
    rows: list[dict] = []
    done = threading.Event()

    def follow() -> None:
        for row in d["api"].watch():
            rows.append(row)
            if row["status"] == "Completed":
                done.set()
                return

    watcher = threading.Thread(target=follow, daemon=True)
    watcher.start()
    opened = d["api"].open(d["addr"], d["root"])
    assert done.wait(TIMEOUT), rows
    chid = opened["channel"]["channel_id"]
    assert rows[-1]["channel_id"] == chid
    assert rows[-1]["received"] == rows[-1]["expected"] > 0
