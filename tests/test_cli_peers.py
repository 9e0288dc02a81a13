"""``datatransfer peers add/ls/rm`` and a peer NAME wherever a MULTIADDR is
taken (issue 11, item 4). The commands with click's CliRunner; the pull by
name, and the errors as a user sees them, in subprocesses."""

from __future__ import annotations

import json
import random

import pytest
from _processes import run
from click.testing import CliRunner
from test_cli_conventions import SOME_CID, WRONG_PEER, one_line_error
from test_cli_node import Server

from datatransfer.cli import main

ADDR = f"/ip4/127.0.0.1/tcp/4001/p2p/{WRONG_PEER}"


def invoke(*args: object) -> object:
    return CliRunner().invoke(main, [str(a) for a in args])


def error_line(result) -> str:  # type: ignore[no-untyped-def]
    lines = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(lines) == 1, result.output
    return lines[0]


def test_add_ls_rm(tmp_path):
    home = tmp_path / "h"
    empty = invoke("peers", "ls", "--json", "--home", home)
    assert empty.exit_code == 0 and json.loads(empty.output) == []
    added = invoke("peers", "add", "bob", ADDR, "--home", home)
    assert added.exit_code == 0, added.output
    assert added.output.strip() == f"bob {ADDR}"
    other = ADDR.replace("4001", "4002")
    assert invoke("peers", "add", "alice", other, "--home", home).exit_code == 0
    listed = invoke("peers", "ls", "--json", "--home", home)
    assert json.loads(listed.output) == [
        {"name": "alice", "peer": WRONG_PEER, "addr": other},
        {"name": "bob", "peer": WRONG_PEER, "addr": ADDR},
    ]
    table = invoke("peers", "ls", "--home", home)
    assert table.exit_code == 0 and "alice" in table.output and "bob" in table.output
    removed = invoke("peers", "rm", "bob", "--home", home)
    assert removed.exit_code == 0, removed.output
    listed = invoke("peers", "ls", "--json", "--home", home)
    assert [row["name"] for row in json.loads(listed.output)] == ["alice"]
    gone = invoke("peers", "rm", "bob", "--home", home)
    assert gone.exit_code == 2 and "no peer named bob" in error_line(gone)


def test_an_existing_name_is_refused_unless_forced(tmp_path):
    home = tmp_path / "h"
    assert invoke("peers", "add", "bob", ADDR, "--home", home).exit_code == 0
    other = ADDR.replace("4001", "4002")
    again = invoke("peers", "add", "bob", other, "--home", home)
    assert again.exit_code == 2
    assert "a peer named bob exists" in error_line(again) and "--force" in error_line(again)
    forced = invoke("peers", "add", "bob", other, "--force", "--home", home)
    assert forced.exit_code == 0, forced.output
    listed = json.loads(invoke("peers", "ls", "--json", "--home", home).output)
    assert listed == [{"name": "bob", "peer": WRONG_PEER, "addr": other}]


@pytest.mark.parametrize(("name", "addr", "expected"), [
    ("bob", "/ip4/127.0.0.1/tcp/4001", "the address must end in /p2p/<peer id>"),
    ("bob", "not-a-multiaddr", "not a multiaddr"),
    ("bob", f"/dnsaddr/example.org/p2p/{WRONG_PEER}", "not supported"),
    ("/ip4/127.0.0.1", ADDR, "cannot start with '/'"),
    ("a b", ADDR, "bad peer name"),
])
def test_bad_names_and_addresses_are_usage_errors(tmp_path, name, addr, expected):
    result = invoke("peers", "add", name, addr, "--home", tmp_path / "h")
    assert result.exit_code == 2, result.output
    assert expected in error_line(result)
    assert not (tmp_path / "h" / "contacts.json").exists()


def test_unknown_names_in_pull_and_push_say_how_to_add_one(tmp_path):
    for command in ("pull", "push"):
        proc = run(command, "bob", SOME_CID, "--home", tmp_path / "h", ok=False)
        err = one_line_error(proc, 2)
        assert "nor a peer named in this home: 'bob'" in err, err
        assert "datatransfer peers add bob /ip4/HOST/tcp/PORT/p2p/PEER_ID" in err, err


def test_pull_by_name_end_to_end(tmp_path):
    data = random.Random(5).randbytes(300 * 1024 + 11)
    (tmp_path / "f.bin").write_bytes(data)
    cid = run("add", tmp_path / "f.bin", "--home", tmp_path / "server").stdout.split()[-1]
    client = tmp_path / "client"
    server = Server(tmp_path / "server")
    try:
        # the server's home is held by its node; names may change meanwhile
        run("peers", "add", "self", server.addr, "--home", tmp_path / "server")
        run("peers", "add", "srv", server.addr, "--home", client)
        out = tmp_path / "out.bin"
        pulled = run("pull", "srv", cid, "-o", out, "--home", client)
        assert "Completed" in pulled.stderr
        assert out.read_bytes() == data
        assert server.stop() == 0
    finally:
        server.kill()
    named = json.loads(run("peers", "ls", "--json", "--home", tmp_path / "server").stdout)
    assert [row["name"] for row in named] == ["self"]


def test_shell_completion_offers_peer_names(tmp_path, monkeypatch):
    from click.shell_completion import ShellComplete

    home = tmp_path / "h"
    for name in ("srv", "second", "other"):
        assert invoke("peers", "add", name, ADDR, "--home", home).exit_code == 0
    complete = ShellComplete(main, {}, "datatransfer", "_DATATRANSFER_COMPLETE")
    got = [c.value for c in complete.get_completions(["peers", "rm", "--home", str(home)], "s")]
    assert sorted(got) == ["second", "srv"]
    monkeypatch.setenv("DATATRANSFER_HOME", str(home))  # pull NAME comes before --home
    for command in ("pull", "push"):
        got = [c.value for c in complete.get_completions([command], "s")]
        assert sorted(got) == ["second", "srv"]
    got = [c.value for c in complete.get_completions(["pull"], "/ip4")]
    assert got == []  # an address is being typed: no names
