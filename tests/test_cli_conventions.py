"""The command line's conventions (issue 11, item 3): ``-`` for stdout,
no overwriting without ``--force``, ``pull --car``, one-line errors for bad
input, ``ls --all``/``--json`` with short channel ids, ``-q``/``-v``/``-vv``,
``--version`` and shell completion. Subprocess tests, like test_cli_node."""

from __future__ import annotations

import io
import json
import logging
import random
import re
import subprocess
from pathlib import Path

import pytest
from _processes import CLI, TIMEOUT, child_env, run
from test_cli_node import Server

from datatransfer.cli.output import levels, setup_logging
from datatransfer.ipld.blockstore import SqliteBlockstore
from datatransfer.ipld.car import CarReader, walk_all
from datatransfer.ipld.cid import CID

WRONG_PEER = "12D3KooWQGhxQiNzj89uu4dh2RG2UyppEWyCfsmiDiLid6uMSRyu"
SOME_CID = "QmcVRfDDaMQWwCoE9LB3V5tRsDAUQ8FGDnwBgmiWip6WN6"


def run_bytes(*args: object, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The CLI with binary stdout (for ``-o -``); stderr as text."""
    proc = subprocess.run([*CLI, *map(str, args)], capture_output=True, timeout=TIMEOUT,
                          env=child_env(), cwd=cwd)
    proc.stderr = proc.stderr.decode(errors="replace")
    return proc


def one_line_error(proc: subprocess.CompletedProcess, rc: int) -> str:
    """The ``Error:`` line of a failed command (checked: exit code, no traceback)."""
    assert proc.returncode == rc, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, proc.stderr
    return errors[0]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A serving home holding a 3 MB file: (server, cid, bytes, tmp dir)."""
    tmp = tmp_path_factory.mktemp("served")
    data = random.Random(11).randbytes(3 * 1024 * 1024 + 77)
    (tmp / "f.bin").write_bytes(data)
    cid = run("add", tmp / "f.bin", "--home", tmp / "server").stdout.split()[-1]
    server = Server(tmp / "server")
    try:
        yield server, cid, data, tmp
    finally:
        server.kill()


# -- 1. stdout and overwriting ----------------------------------------------------------


def test_cat_and_car_export_write_stdout_and_refuse_to_overwrite(tmp_path):
    data = random.Random(3).randbytes(700_000)
    (tmp_path / "f.bin").write_bytes(data)
    home = tmp_path / "home"
    cid = run("add", tmp_path / "f.bin", "--home", home).stdout.split()[-1]

    assert run_bytes("cat", cid, "-o", "-", "--home", home, cwd=tmp_path).stdout == data
    assert not (tmp_path / "-").exists()

    out = tmp_path / "out.bin"
    out.write_bytes(b"precious")
    err = one_line_error(run("cat", cid, "-o", out, "--home", home, ok=False), 2)
    assert "exists" in err and "--force" in err
    assert out.read_bytes() == b"precious"
    run("cat", cid, "-o", out, "--force", "--home", home)
    assert out.read_bytes() == data

    proc = run_bytes("car", "export", cid, "-", "--home", home)
    assert proc.returncode == 0, proc.stderr
    reader = CarReader(io.BytesIO(proc.stdout))
    assert reader.roots == [CID.parse(cid)]
    with SqliteBlockstore(home / "blocks.sqlite") as store:
        assert list(reader) == list(walk_all(CID.parse(cid), store))

    car = tmp_path / "out.car"
    car.write_bytes(b"x")
    err = one_line_error(run("car", "export", cid, car, "--home", home, ok=False), 2)
    assert "exists" in err and "--force" in err
    run("car", "export", cid, car, "-f", "--home", home)
    assert car.read_bytes() == proc.stdout


def test_pull_refuses_an_existing_output_before_dialing(tmp_path):
    for option in ("-o", "--car"):
        out = tmp_path / "exists.bin"
        out.write_bytes(b"keep")
        proc = run("pull", f"/ip4/127.0.0.1/tcp/1/p2p/{WRONG_PEER}", SOME_CID, option, out,
                   "--home", tmp_path / "h", ok=False)
        err = one_line_error(proc, 2)
        assert "exists" in err and "--force" in err and "cannot reach" not in proc.stderr
        assert out.read_bytes() == b"keep"
    proc = run("pull", f"/ip4/127.0.0.1/tcp/1/p2p/{WRONG_PEER}", SOME_CID, "-o", "-",
               "--car", "-", "--home", tmp_path / "h", ok=False)
    assert "stdout" in one_line_error(proc, 2)


def test_pull_writes_the_file_to_stdout(served):
    server, cid, data, tmp = served
    proc = run_bytes("pull", server.addr, cid, "-o", "-", "--home", tmp / "c1", cwd=tmp)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == data  # nothing else on stdout
    assert "Completed" in proc.stderr
    assert re.search(r"^\w+-\w+-\d+$", proc.stderr, re.M), proc.stderr  # the channel id
    assert not (tmp / "-").exists()


# -- 2. pull --car -----------------------------------------------------------------------


def test_pull_car_holds_exactly_the_selected_blocks_in_traversal_order(served):
    server, cid, data, tmp = served
    root = CID.parse(cid)
    # the whole DAG, to stdout, next to the file itself
    out = tmp / "c2.bin"
    proc = run_bytes("pull", server.addr, cid, "--car", "-", "-o", out, "--home", tmp / "c2")
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes() == data
    reader = CarReader(io.BytesIO(proc.stdout))  # checks every block against its CID
    assert reader.roots == [root]
    with SqliteBlockstore(tmp / "server" / "blocks.sqlite") as store:
        expected = list(walk_all(root, store))
    assert list(reader) == expected and len(expected) > 2

    # a selector reaching the root only: a CAR of one block
    car = tmp / "root.car"
    run("pull", server.addr, cid, "--selector", '{".":{}}', "--car", car, "--home", tmp / "c3")
    with CarReader(car.open("rb")) as reader:
        assert reader.roots == [root]
        assert [c for c, _ in reader] == [root]


# -- 3. bad input ------------------------------------------------------------------------


def test_bad_addresses_and_cids_are_one_line_usage_errors(tmp_path):
    home = tmp_path / "h"
    cases = [
        ("/ip4/127.0.0.1/tcp/4001", SOME_CID, "the address must end in /p2p/<peer id>"),
        ("not-a-multiaddr", SOME_CID, "not a multiaddr"),
        (f"/dnsaddr/example.org/p2p/{WRONG_PEER}", SOME_CID, "not supported"),
        (f"/ip4/127.0.0.1/tcp/1/p2p/{WRONG_PEER}", "QmNOTaCID", "not a CID: 'QmNOTaCID'"),
    ]
    for addr, cid, expected in cases:
        for command in ("pull", "push"):
            err = one_line_error(run(command, addr, cid, "--home", home, ok=False), 2)
            assert expected in err, err
            assert "P_P2P" not in err and "multibase" not in err
    err = one_line_error(run("cat", "bafyNOTaCID", "--home", home, ok=False), 2)
    assert "not a CID: 'bafyNOTaCID'" in err


def test_unreachable_and_unresolvable_addresses_are_runtime_errors(tmp_path):
    proc = run("pull", f"/ip4/127.0.0.1/tcp/1/p2p/{WRONG_PEER}", SOME_CID,
               "--home", tmp_path, ok=False)
    err = one_line_error(proc, 1)
    assert "cannot reach /ip4/127.0.0.1/tcp/1/" in err and "refused" in err
    assert "Failed to open TCP stream" not in proc.stderr  # py-libp2p's log: silent by default
    proc = run("pull", f"/dns4/no-such-host.invalid/tcp/1/p2p/{WRONG_PEER}", SOME_CID,
               "--home", tmp_path, ok=False)
    assert "cannot resolve no-such-host.invalid" in one_line_error(proc, 1)


def test_wrong_peer_id_names_the_peer_that_answered(served):
    server, cid, _, tmp = served
    real = server.addr.rsplit("/", 1)[1]
    addr = server.addr.replace(real, WRONG_PEER)
    proc = run("pull", addr, cid, "--home", tmp / "c4", ok=False)
    err = one_line_error(proc, 1)
    assert f"peer at {addr} is {real}, not {WRONG_PEER}" in err
    assert "handshake" not in proc.stderr


def test_dns_addresses_are_resolved(served):
    server, cid, data, tmp = served
    addr = re.sub(r"^/ip4/127\.0\.0\.1/", "/dns4/localhost/", server.addr)
    proc = run_bytes("pull", addr, cid, "-o", "-", "--home", tmp / "c5")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == data


# -- 4. ls -------------------------------------------------------------------------------


def test_ls_all_json_and_short_channel_ids(served):
    server, cid, _, tmp = served
    home = tmp / "c6"
    chid = run("pull", server.addr, cid, "--home", home).stdout.split()[-1]

    proc = run("ls", "--home", home)  # the channel ended: hidden without --all
    assert "1 ended channel not shown" in proc.stderr and chid not in proc.stdout

    rows = json.loads(run("ls", "--all", "--json", "--home", home).stdout)
    assert len(rows) == 1
    row = rows[0]
    assert row["channel_id"] == chid and row["root"] == cid and row["status"] == "Completed"
    assert row["kind"] == "pull" and row["role"] == "initiator" and row["bytes"] > 0
    short = row["id"]
    assert len(short) < len(chid) / 3 and re.fullmatch(r"\w+-\w+-\d+", short)

    table = run("ls", "--all", "--home", home).stdout
    line = next(line for line in table.splitlines() if short in line)
    assert cid in line and "Completed" in line and "receive (pull out)" in line

    # the short id and the full one name the channel
    for name in (short, chid):
        assert json.loads(run("ls", name, "--json", "--home", home).stdout) == rows
    err = one_line_error(run("ls", "xxxxxxxx-yyyyyyyy-1", "--home", home, ok=False), 1)
    assert "no channel xxxxxxxx-yyyyyyyy-1" in err
    assert json.loads(run("ls", "--json", "--home", tmp / "empty").stdout) == []


# -- 5. logs, --version, completion ------------------------------------------------------


def test_verbosity_levels():
    assert levels(-1) == (logging.ERROR, logging.CRITICAL + 1)
    assert levels(0)[0] == logging.WARNING and levels(0)[1] > logging.CRITICAL
    assert levels(1) == (logging.INFO, logging.WARNING)
    assert levels(2) == (logging.DEBUG, logging.DEBUG)


def test_log_lines_print_above_the_progress_bar_not_through_it():
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn

    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=100)
    root = logging.getLogger()
    saved = (root.level, list(root.handlers),
             {n: logging.getLogger(n).level for n in ("transport", "datatransfer", "libp2p")})
    handler = setup_logging(1, out=console)
    try:
        with Progress(TextColumn("pull"), BarColumn(), console=console,
                      auto_refresh=False) as progress:
            task = progress.add_task("pull", total=100)
            progress.update(task, completed=40)
            progress.refresh()
            logging.getLogger("transport.libp2p.dtnet").warning("a warning %d", 7)
            logging.getLogger("libp2p.swarm").info("hidden at -v")
            progress.update(task, completed=80)
            progress.refresh()
    finally:
        root.removeHandler(handler)
        root.setLevel(saved[0])
        for name, level in saved[2].items():
            logging.getLogger(name).setLevel(level)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", buf.getvalue())
    lines = [part for line in text.split("\n") for part in line.split("\r")]
    assert "WARNING transport.libp2p.dtnet: a warning 7" in [ln.rstrip() for ln in lines]
    assert "hidden at -v" not in text


def test_verbose_flags_route_library_logs_through_the_formatter(tmp_path):
    addr = f"/ip4/127.0.0.1/tcp/1/p2p/{WRONG_PEER}"
    loud = run("-vv", "pull", addr, SOME_CID, "--home", tmp_path, ok=False)
    assert loud.returncode == 1
    assert re.search(r"^(DEBUG|INFO|WARNING|ERROR)\s+libp2p[\w.]*: ", loud.stderr, re.M), \
        loud.stderr
    quiet = run("-q", "pull", addr, SOME_CID, "--home", tmp_path, ok=False)
    assert quiet.returncode == 1 and "cannot reach" in quiet.stderr
    assert not re.search(r"^(DEBUG|INFO|WARNING)\s", quiet.stderr, re.M), quiet.stderr


def test_version_and_shell_completion():
    assert re.fullmatch(r"datatransfer \d+\.\d+\.\d+\S*\n", run("--version").stdout)
    script = run("completion", "bash").stdout
    assert "_DATATRANSFER_COMPLETE=bash_complete" in script and "complete " in script
    for shell in ("zsh", "fish"):
        assert "_DATATRANSFER_COMPLETE" in run("completion", shell).stdout
    env = child_env() | {"_DATATRANSFER_COMPLETE": "bash_complete",
                         "COMP_WORDS": "datatransfer pu", "COMP_CWORD": "1"}
    proc = subprocess.run(CLI, capture_output=True, text=True, env=env, timeout=TIMEOUT)
    assert "pull" in proc.stdout and "push" in proc.stdout
