"""py-data-transfer against go-data-transfer v2, the version the network runs.

``tests/interop/gonode2`` is a go-data-transfer v2.0.0 + go-graphsync
v0.18.0 node (the versions Lassie and boost run; libp2p TCP + Noise + Yamux),
gonode (v1.15, tests/test_interop_go.py) ported to v2's API with the same
commands and records. The wire protocol is the same one
(``/fil/datatransfer/1.2.0``, graphsync 2.0.0 with the
``fil/data-transfer/1.1`` extension); what v2 changed is how an application
sees vouchers: registered by type name, handed to the validator as an IPLD
node. Both nodes register py-data-transfer's open voucher
(``py-data-transfer/open``, ``{"Note": text}``), so each opens channels to
the other: the four directions with both UnixFS profiles, a partial
selector, a cancel and a pause/resume from either side, and a pull whose
connection a relay cuts mid-transfer, either way (restarted, the blocks
already held not sent again), and once with go-graphsync redialing us
around the relay as it does after a cut. It is built once per session into
``.interop-build/gonode2`` (tests/_gobuild.py).

Without ``go`` on PATH the module is skipped, loudly; with
``INTEROP_REQUIRE_GO=1`` (CI) that is a failure. A build failure is always a
failure.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _gobuild import build_local, require_go
from _processes import MIB, make_file, run, sha256, split_addr, wait_until
from test_interop_go import (
    FIRST_LEAF,
    LARGE,
    PROFILES,
    SLOW,
    SMALL,
    _events,
    _go_received,
    _line,
    _word,
    add,
    first_leaf_bytes,
    go_cancels_a_pull_python_serves,
    go_final,
    go_run,
    go_serve,
    py_final,
    py_run,
    py_serve,
    python_cancels_a_pull_go_serves,
)

GONODE2_SRC = Path(__file__).resolve().parent / "interop" / "gonode2"
#: What our node's open voucher carries and the Go validator reports:
#: ``VOUCHER <pull|push> py-data-transfer/open [note]``.
OPEN = "py-data-transfer/open"

# the first test may pay for a cold `go build` (go-libp2p v0.43 and boxo:
# minutes with empty caches on a 2-core machine; seconds once cached)
pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="session")
def gonode2() -> Path:
    """The gonode2 binary, built (or brought up to date) once per session."""
    go = require_go("the go-data-transfer v2 interop tests (tests/test_interop_go2.py)")
    return build_local(go, GONODE2_SRC, "gonode2")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, str]]:
    """The source files (path, sha256), generated once for the module."""
    d = tmp_path_factory.mktemp("interop2-src")
    small, large = d / "small.bin", d / "large.bin"
    return {"small": (small, make_file(small, SMALL, seed=43)),
            "large": (large, make_file(large, LARGE, seed=44))}


# -- the four directions -----------------------------------------------------------------


@pytest.mark.parametrize("profile", PROFILES)
def test_v2_pulls_a_file_python_serves(tmp_path, procs, gonode2, files, profile):
    src, digest = files["small"]
    home = tmp_path / "py"
    cid = add(src, home, profile)
    serve, addr = py_serve(procs, home)
    out = tmp_path / "got.bin"
    client = go_run(procs, gonode2, "pull", addr, cid, "-out", out)
    done = _word(client, "DONE")
    assert done[1] == "Completed", client.describe() + serve.describe()
    assert _word(client, "FILE")[1:] == [str(SMALL), digest], client.describe()
    assert sha256(out) == digest
    state = py_final(serve)
    assert state[3] == "Completed", serve.describe()
    assert int(state[4]) == int(done[3]) > SMALL, (state, done)  # sent == received


@pytest.mark.parametrize("profile", PROFILES)
def test_python_pulls_a_file_v2_serves(tmp_path, procs, gonode2, files, profile):
    src, digest = files["small"]
    cid = add(src, tmp_path / "ref", profile)
    serve, addr = go_serve(procs, gonode2, "-file", src, "-profile", profile)
    assert _word(serve, "ROOT")[1] == cid  # the same DAG from both importers
    home = tmp_path / "py"
    client = py_run(procs, "pull", home, addr, cid)
    done = _word(client, "DONE")
    assert client.wait() == 0, client.describe() + serve.describe()
    assert done[1] == "Completed", client.describe()
    assert int(done[2]) == int(done[3]) > SMALL, done  # received == DAG size
    # v2's validator got our voucher by its type name, as an IPLD node
    assert _word(serve, "VOUCHER")[1:3] == ["pull", OPEN], serve.describe()
    state = go_final(serve)
    assert state[2] == "Completed", serve.describe()
    assert int(state[3]) == int(done[2]), (state, done)
    out = tmp_path / "got.bin"
    run("cat", cid, "-o", out, "--home", home)
    assert sha256(out) == digest


@pytest.mark.parametrize("profile", PROFILES)
def test_python_pushes_a_file_to_v2(tmp_path, procs, gonode2, files, profile):
    src, digest = files["small"]
    home = tmp_path / "py"
    cid = add(src, home, profile)
    recv = tmp_path / "recv"
    recv.mkdir()
    serve, addr = go_serve(procs, gonode2, "-out", recv)
    client = py_run(procs, "push", home, addr, cid)
    done = _word(client, "DONE")
    assert client.wait() == 0, client.describe() + serve.describe()
    assert done[1] == "Completed", client.describe()
    assert int(done[2]) == int(done[3]) > SMALL, done  # sent == DAG size
    assert _word(serve, "VOUCHER")[1:3] == ["push", OPEN], serve.describe()
    got = _word(serve, "RECEIVED")
    assert got[1:] == [cid, str(SMALL), digest], serve.describe()
    assert sha256(recv / cid) == digest
    state = go_final(serve)
    assert state[2] == "Completed", serve.describe()
    assert int(state[4]) == int(done[2]), (state, done)


@pytest.mark.parametrize("profile", PROFILES)
def test_v2_pushes_a_file_to_python(tmp_path, procs, gonode2, files, profile):
    src, digest = files["small"]
    cid = add(src, tmp_path / "ref", profile)
    home = tmp_path / "py"
    serve, addr = py_serve(procs, home)
    client = go_run(procs, gonode2, "push", addr, "-file", src, "-profile", profile)
    assert _word(client, "ROOT")[1] == cid
    done = _word(client, "DONE")
    assert done[1] == "Completed", client.describe() + serve.describe()
    state = py_final(serve)
    assert state[3] == "Completed", serve.describe()
    assert int(state[5]) == int(done[2]) > SMALL, (state, done)  # received == sent
    out = tmp_path / "got.bin"
    run("cat", cid, "-o", out, "--home", home)
    assert sha256(out) == digest


# -- a selector that matches part of the DAG ---------------------------------------------


def test_v2_pulls_part_of_a_dag_python_serves(tmp_path, procs, gonode2, files):
    src, _ = files["small"]
    home = tmp_path / "py"
    cid = add(src, home, "classic")
    want, whole = first_leaf_bytes(home, cid)
    assert want < whole
    serve, addr = py_serve(procs, home)
    client = go_run(procs, gonode2, "pull", addr, cid, "-selector", FIRST_LEAF)
    done = _word(client, "DONE")
    assert done[1] == "Completed", client.describe() + serve.describe()
    assert int(done[3]) == want, (done, want)
    state = py_final(serve)
    assert state[3] == "Completed", serve.describe()
    assert int(state[4]) == want, (state, want)


def test_python_pulls_part_of_a_dag_v2_serves(tmp_path, procs, gonode2, files):
    src, _ = files["small"]
    ref = tmp_path / "ref"
    cid = add(src, ref, "classic")
    want, whole = first_leaf_bytes(ref, cid)
    assert want < whole
    serve, addr = go_serve(procs, gonode2, "-file", src)
    client = py_run(procs, "pull", tmp_path / "py", addr, cid, "--selector", FIRST_LEAF)
    done = _word(client, "DONE")
    assert client.wait() == 0, client.describe() + serve.describe()
    assert done[1] == "Completed", client.describe()
    assert int(done[2]) == want, (done, want)
    state = go_final(serve)
    assert state[2] == "Completed", serve.describe()
    assert int(state[3]) == want, (state, want)


# -- cancel from either side -------------------------------------------------------------


def test_v2_cancels_a_pull_python_serves(tmp_path, procs, gonode2, files):
    go_cancels_a_pull_python_serves(tmp_path, procs, gonode2, files)


def test_python_cancels_a_pull_v2_serves(tmp_path, procs, gonode2, files):
    python_cancels_a_pull_go_serves(tmp_path, procs, gonode2, files)


# -- pause and resume from either side ---------------------------------------------------


def test_v2_pauses_and_resumes_a_pull_python_serves(tmp_path, procs, gonode2, files):
    """v2 pauses its pull (the pause goes out as an Update) and resumes it
    (the resume rides the graphsync request that continues the transfer):
    our responder takes both, the file arrives whole."""
    src, digest = files["large"]
    home = tmp_path / "py"
    cid = add(src, home, "classic")
    serve, addr = py_serve(procs, home)
    client = go_run(procs, gonode2, "pull", addr, cid, "-pause-after", 2 * MIB,
                    "-pause-for", "2s")
    paused = _word(client, "PAUSED")
    assert int(paused[2]) < LARGE, client.describe()  # paused mid-transfer
    assert int(_word(client, "RESUMED")[2]) < LARGE, client.describe()
    done = _word(client, "DONE")
    assert done[1] == "Completed", client.describe() + serve.describe()
    assert _word(client, "FILE")[1:] == [str(LARGE), digest], client.describe()
    state = py_final(serve)
    assert state[3] == "Completed", serve.describe()


def test_python_pauses_and_resumes_a_pull_a_paced_v2_serves(tmp_path, procs, gonode2, files):
    """Our pause reaches v2 (its PauseInitiator event) before it sent
    everything; after our resume the pull completes, every byte counted
    once."""
    src, digest = files["large"]
    cid = add(src, tmp_path / "ref", "classic")
    serve, addr = go_serve(procs, gonode2, "-file", src, "-block-delay", SLOW)
    home = tmp_path / "py"
    client = py_run(procs, "pull", home, addr, cid, "--pause-after", 2 * MIB,
                    "--pause-for", 2)
    paused = _word(client, "PAUSED")
    assert int(paused[1]) < LARGE, client.describe()
    resuming = _word(client, "RESUMING")
    assert resuming[1] == "InitiatorPaused", client.describe()
    assert int(resuming[2]) < LARGE, client.describe()
    # v2 flags the pause (the status stays Ongoing): its event says when
    go_paused = _line(serve, lambda w: w[:2] == ["EVENT", "PauseInitiator"])
    assert int(go_paused[3]) < LARGE, serve.describe()
    assert _line(serve, lambda w: w[:2] == ["EVENT", "ResumeInitiator"]), serve.describe()
    done = _word(client, "DONE")
    assert client.wait() == 0, client.describe() + serve.describe()
    assert done[1] == "Completed", client.describe()
    assert int(done[2]) == int(done[3]), client.describe()
    assert go_final(serve)[2] == "Completed", serve.describe()
    out = tmp_path / "got.bin"
    run("cat", cid, "-o", out, "--home", home)
    assert sha256(out) == digest


# -- the connection cut mid-transfer: a restart against v2 -------------------------------


def test_python_pull_restarts_after_a_cut_against_v2(tmp_path, procs, gonode2, files,
                                                     relay_to):
    """The connection to a v2 responder dies mid-pull; our node restarts the
    channel (a Restart request, then a graphsync request whose
    ``graphsync/do-not-send-first-blocks`` counts the blocks it holds); v2
    validates the restart (``ValidateRestart``) and go-graphsync v0.18 skips
    those first blocks: the pull completes with every byte counted once.
    v2 serves with -no-dial, so every connection goes through the relay and
    its counters tell what was sent again (the next test lets it redial)."""
    src, digest = files["large"]
    cid = add(src, tmp_path / "ref", "classic")
    serve, addr = go_serve(procs, gonode2, "-file", src, "-block-delay", SLOW, "-no-dial=true")
    assert _word(serve, "ROOT")[1] == cid
    port, peer = split_addr(addr)
    relay = relay_to(port)
    relay.hold_after("down", 3 * MIB)
    home = tmp_path / "py"
    client = py_run(procs, "pull", home, relay.addr(peer), cid, "--max-restarts", 5,
                    "--only-via")
    before = client.expect(lambda w: w[0] == "STATE" and int(w[5]) >= MIB)
    assert int(before[5]) < LARGE // 2, client.describe()  # mid-transfer
    assert relay.cut() >= 1, relay.cut_counts
    try:
        done = _word(client, "DONE")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- Go:\n{serve.describe()}") from None
    assert client.wait() == 0, client.describe() + serve.describe()
    status, received, size = done[1], int(done[2]), int(done[3])
    assert status == "Completed", client.describe() + serve.describe()
    assert received == size > LARGE, done  # every byte counted once
    assert _events(client, "Disconnected"), client.describe()
    restarts = _events(client, "Restart")
    assert restarts, client.describe()
    arrived = int(restarts[0][5])
    assert MIB <= arrived < size, restarts
    assert relay.accepted[1] >= 1, relay.accepted
    # v2 sent what never got through and not much more
    resent = relay.after_first_cut("down")
    assert size - relay.forwarded[0]["down"] <= resent, (resent, relay.forwarded)
    assert resent <= size - arrived + size // 50 + 64 * 1024, (resent, size, arrived)
    assert go_final(serve)[2] == "Completed", serve.describe()
    out = tmp_path / "got.bin"
    run("cat", cid, "-o", out, "--home", home)
    assert sha256(out) == digest


def test_python_pull_completes_when_v2_redials_after_a_cut(tmp_path, procs, gonode2, files,
                                                          relay_to):
    """What the network does: after the cut go-graphsync v0.18 redials us
    directly (identify told it where we listen) and goes on sending the old
    response, one message short (the one the cut lost): we see the gap and
    restart. Our Cancel of the old request must reach Go on the new
    connection: while the old response runs, go-graphsync counts its blocks
    as sent under the same dedup key and announces the restart's missing
    block as "already sent" (the pull failed that way before our kept
    graphsync stream was replaced when it died under a live connection)."""
    src, digest = files["large"]
    cid = add(src, tmp_path / "ref", "classic")
    serve, addr = go_serve(procs, gonode2, "-file", src, "-block-delay", SLOW)
    port, peer = split_addr(addr)
    relay = relay_to(port)
    relay.hold_after("down", 3 * MIB)
    home = tmp_path / "py"
    client = py_run(procs, "pull", home, relay.addr(peer), cid, "--max-restarts", 5,
                    "--only-via")
    before = client.expect(lambda w: w[0] == "STATE" and int(w[5]) >= MIB)
    assert int(before[5]) < LARGE // 2, client.describe()  # mid-transfer
    assert relay.cut() >= 1, relay.cut_counts
    try:
        done = _word(client, "DONE")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- Go:\n{serve.describe()}") from None
    assert client.wait() == 0, client.describe() + serve.describe()
    assert done[1] == "Completed", client.describe() + serve.describe()
    assert int(done[2]) == int(done[3]) > LARGE, done  # every byte counted once
    assert _events(client, "Restart"), client.describe()
    assert go_final(serve)[2] == "Completed", serve.describe()
    out = tmp_path / "got.bin"
    run("cat", cid, "-o", out, "--home", home)
    assert sha256(out) == digest


def test_v2_pull_restarts_after_a_cut_python_serves(tmp_path, procs, gonode2, files, relay_to):
    """The reverse: v2's channel monitor (on in gonode2 with
    -restart-backoff) reconnects through the relay and restarts the pull;
    our responder continues it without sending again what v2 holds."""
    src, digest = files["large"]
    home = tmp_path / "py"
    cid = add(src, home, "classic")
    _, size = first_leaf_bytes(home, cid)
    serve, addr = py_serve(procs, home, "--no-dial")
    port, peer = split_addr(addr)
    relay = relay_to(port)
    relay.hold_after("down", 3 * MIB)
    client = go_run(procs, gonode2, "pull", relay.addr(peer), cid, "-restart-backoff", "200ms",
                    "-only-via=true")
    wait_until(lambda: _go_received(client) >= MIB or client.proc.poll() is not None,
               f"v2 to receive 1 MiB\n{client.describe()}")
    assert client.proc.poll() is None, client.describe()
    arrived = _go_received(client)
    assert arrived < LARGE // 2, client.describe()  # mid-transfer
    assert relay.cut() >= 1, relay.cut_counts
    try:
        done = _word(client, "DONE")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- Python:\n{serve.describe()}") from None
    assert done[1] == "Completed", client.describe() + serve.describe()
    assert int(done[3]) == size, (done, size)  # every byte counted once
    assert _word(client, "FILE")[1:] == [str(LARGE), digest], client.describe()
    assert _word(client, "RESTARTED"), client.describe()
    assert _events(serve, "Restart"), serve.describe()
    assert relay.accepted[1] >= 1, relay.accepted
    resent = relay.after_first_cut("down")
    assert size - relay.forwarded[0]["down"] <= resent, (resent, relay.forwarded)
    assert resent <= size - arrived + size // 50 + 64 * 1024, (resent, size, arrived)
    state = py_final(serve)
    assert state[3] == "Completed", serve.describe()
    assert int(state[4]) == size, (state, size)
