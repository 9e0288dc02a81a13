"""py-data-transfer against the reference implementation on the wire.

``tests/interop/gonode`` is a small go-data-transfer v1.15.3 + go-graphsync
v0.13.1 node (libp2p TCP + Noise + Yamux); it is built once per session with
the Go toolchain on PATH (modules from the Go module proxy, pinned by its
go.sum) into ``.interop-build/``. Each test runs it and a Python node
(``tests/_procnode.py``, the ``datatransfer`` CLI) as separate processes on
127.0.0.1 and checks both ends: the four directions (Python serves a Go pull,
Go serves a Python pull, each pushes to the other) with both UnixFS profiles,
a partial selector both ways, a cancel from either side, a pause/resume
from either side, and a pull whose connection a relay (``tests/_relay.py``)
cuts mid-transfer, either way: the channel restarts and completes without
the blocks that had arrived being sent again; and a Python pull of a DAG its
home holds in part or whole, which Go serves sending only the rest.

Without ``go`` on PATH the module is skipped, loudly (the reason says the
interop tests did not run); set ``INTEROP_REQUIRE_GO=1`` to make that a
failure instead. A build failure is always a failure, never a skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from _processes import (
    LOOPBACK,
    MIB,
    PROCNODE,
    TIMEOUT,
    Proc,
    make_file,
    run,
    sha256,
    split_addr,
    wait_until,
)

from datatransfer.home import open_blockstore
from datatransfer.ipld import dagpb
from datatransfer.ipld.cid import CID
from datatransfer.node import dag_size

REPO = Path(__file__).resolve().parents[1]
GONODE_SRC = Path(__file__).resolve().parent / "interop" / "gonode"
BUILD_DIR = REPO / ".interop-build"
#: Small enough to keep the suite fast, big enough for several leaves in
#: either profile (classic: 256 KiB chunks, modern: 1 MiB).
SMALL = 3 * MIB + 12345
#: For cancel and pause: the channel must still be moving when they act.
LARGE = 16 * MIB + 777
PROFILES = ("classic", "modern")
#: gonode's -block-delay for a paced Go responder: LARGE (64 classic leaves)
#: then takes about 1.3 s to send.
SLOW = "20ms"
#: The root's first link and the block it names: a selector that matches
#: part of a UnixFS file whatever its size (both nodes must walk it alike).
FIRST_LEAF = '{"f":{"f>":{"Links":{"i":{"i":0,">":{"f":{"f>":{"Hash":{".":{}}}}}}}}}}'

# The first test also pays for a cold `go build` (about 2 minutes with empty
# caches on a 2-core machine; seconds once cached).
pytestmark = pytest.mark.timeout(600)


# -- building and running the Go node ----------------------------------------------------


@pytest.fixture(scope="session")
def gonode() -> Path:
    """The gonode binary, built (or brought up to date: Go's build cache makes
    that a link step) once per session."""
    go = shutil.which("go")
    if go is None:
        msg = ("GO NOT ON PATH: the go-data-transfer interop tests (tests/test_interop_go.py) "
               "did NOT run; install Go >= 1.21 to run them")
        if os.environ.get("INTEROP_REQUIRE_GO"):
            pytest.fail(msg)
        pytest.skip(msg)
    BUILD_DIR.mkdir(exist_ok=True)
    target = BUILD_DIR / "gonode"
    tmp = BUILD_DIR / f"gonode.{os.getpid()}.tmp"
    env = dict(os.environ)
    # the toolchain on PATH, never a downloaded one; go.mod/go.sum as committed
    env.update(GOTOOLCHAIN="local", GOFLAGS="-mod=readonly")
    proc = subprocess.run([go, "build", "-o", str(tmp), "."], cwd=GONODE_SRC, env=env,
                          capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        pytest.fail(f"go build of {GONODE_SRC} failed (rc={proc.returncode}):\n"
                    f"{proc.stdout}\n{proc.stderr}")
    os.replace(tmp, target)  # atomic: a concurrent session never runs half a binary
    return target


def _line(proc: Proc, pred: Callable[[list[str]], bool], timeout: float = TIMEOUT) -> list[str]:
    """The first stdout line, read already or still to come, for which
    ``pred`` holds (the order of records between two processes is not fixed,
    so a test may look for one after reading past it)."""
    for line in proc.collect():
        words = line.split()
        if words and pred(words):
            return words
    return proc.expect(pred, timeout=timeout)


def _word(proc: Proc, word: str, timeout: float = TIMEOUT) -> list[str]:
    return _line(proc, lambda w: w[0] == word, timeout=timeout)


def go_serve(start: Callable[..., Proc], gonode: Path, *extra: object) -> tuple[Proc, str]:
    p = start([str(gonode), "serve", "-listen", LOOPBACK, *map(str, extra)], stdin=True)
    return p, _word(p, "ADDR")[1]


def go_run(start: Callable[..., Proc], gonode: Path, *args: object) -> Proc:
    return start([str(gonode), *map(str, args)])


def py_serve(start: Callable[..., Proc], home: Path, *extra: object) -> tuple[Proc, str]:
    p = start([*PROCNODE, "serve", "--home", str(home), "--listen", LOOPBACK, *map(str, extra)],
              stdin=True)
    return p, _word(p, "ADDR")[1]


def py_run(start: Callable[..., Proc], cmd: str, home: Path, addr: str, cid: str,
           *extra: object) -> Proc:
    return start([*PROCNODE, cmd, "--home", str(home), "--addr", addr, "--cid", cid,
                  *map(str, extra)])


def add(path: Path, home: Path, profile: str) -> str:
    return run("add", path, "--home", home, "--profile", profile).stdout.split()[-1]


def py_final(serve: Proc, timeout: float = TIMEOUT) -> list[str]:
    """The Python serve's first channel to end: ``STATE initiator id status
    sent received received_index``."""
    return _line(serve, lambda w: w[0] == "STATE" and w[3] in ("Completed", "Failed", "Cancelled"),
                 timeout=timeout)


def go_final(serve: Proc, timeout: float = TIMEOUT) -> list[str]:
    """The Go serve's first channel to end: ``STATE chid status sent recv``."""
    return _line(serve, lambda w: w[0] == "STATE" and w[2] in ("Completed", "Failed", "Cancelled"),
                 timeout=timeout)


def first_leaf_bytes(home: Path, cid: str) -> tuple[int, int]:
    """(bytes FIRST_LEAF selects, bytes of the whole DAG), from the DAG as
    stored: the root block plus its first link's Tsize (a leaf's Tsize is its
    block's size)."""
    store = open_blockstore(home)
    try:
        root = CID.parse(cid)
        data = store.get(root)
        whole = dag_size(root, store)
    finally:
        store.close()
    first = dagpb.decode(data)["Links"][0]["Tsize"]
    assert whole is not None
    return len(data) + first, whole


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, str]]:
    """The source files (path, sha256), generated once for the module."""
    d = tmp_path_factory.mktemp("interop-src")
    small, large = d / "small.bin", d / "large.bin"
    return {"small": (small, make_file(small, SMALL, seed=41)),
            "large": (large, make_file(large, LARGE, seed=42))}


# -- the four directions -----------------------------------------------------------------


@pytest.mark.parametrize("profile", PROFILES)
def test_go_pulls_a_file_python_serves(tmp_path, procs, gonode, files, profile):
    src, digest = files["small"]
    home = tmp_path / "py"
    cid = add(src, home, profile)
    serve, addr = py_serve(procs, home)
    out = tmp_path / "got.bin"
    client = go_run(procs, gonode, "pull", addr, cid, "-out", out)
    done = _word(client, "DONE")
    assert done[1] == "Completed", client.describe()
    assert _word(client, "FILE")[1:] == [str(SMALL), digest], client.describe()
    assert sha256(out) == digest
    state = py_final(serve)
    assert state[3] == "Completed", serve.describe()
    assert int(state[4]) == int(done[3]) > SMALL, (state, done)  # sent == received


@pytest.mark.parametrize("profile", PROFILES)
def test_python_pulls_a_file_go_serves(tmp_path, procs, gonode, files, profile):
    src, digest = files["small"]
    cid = add(src, tmp_path / "ref", profile)
    serve, addr = go_serve(procs, gonode, "-file", src, "-profile", profile)
    assert _word(serve, "ROOT")[1] == cid  # the same DAG from both importers
    home = tmp_path / "py"
    client = py_run(procs, "pull", home, addr, cid)
    done = _word(client, "DONE")
    assert client.wait() == 0, client.describe()
    assert done[1] == "Completed", client.describe()
    assert int(done[2]) == int(done[3]) > SMALL, done  # received == DAG size
    state = go_final(serve)
    assert state[2] == "Completed", serve.describe()
    assert int(state[3]) == int(done[2]), (state, done)
    out = tmp_path / "got.bin"
    run("cat", cid, "-o", out, "--home", home)
    assert sha256(out) == digest


@pytest.mark.parametrize("profile", PROFILES)
def test_python_pushes_a_file_to_go(tmp_path, procs, gonode, files, profile):
    src, digest = files["small"]
    home = tmp_path / "py"
    cid = add(src, home, profile)
    recv = tmp_path / "recv"
    recv.mkdir()
    serve, addr = go_serve(procs, gonode, "-out", recv)
    client = py_run(procs, "push", home, addr, cid)
    done = _word(client, "DONE")
    assert client.wait() == 0, client.describe()
    assert done[1] == "Completed", client.describe()
    assert int(done[2]) == int(done[3]) > SMALL, done  # sent == DAG size
    got = _word(serve, "RECEIVED")
    assert got[1:] == [cid, str(SMALL), digest], serve.describe()
    assert sha256(recv / cid) == digest
    state = go_final(serve)
    assert state[2] == "Completed", serve.describe()
    assert int(state[4]) == int(done[2]), (state, done)


@pytest.mark.parametrize("profile", PROFILES)
def test_go_pushes_a_file_to_python(tmp_path, procs, gonode, files, profile):
    src, digest = files["small"]
    cid = add(src, tmp_path / "ref", profile)
    home = tmp_path / "py"
    serve, addr = py_serve(procs, home)
    client = go_run(procs, gonode, "push", addr, "-file", src, "-profile", profile)
    assert _word(client, "ROOT")[1] == cid
    done = _word(client, "DONE")
    assert done[1] == "Completed", client.describe()
    state = py_final(serve)
    assert state[3] == "Completed", serve.describe()
    assert int(state[5]) == int(done[2]) > SMALL, (state, done)  # received == sent
    out = tmp_path / "got.bin"
    run("cat", cid, "-o", out, "--home", home)
    assert sha256(out) == digest


# -- a selector that matches part of the DAG ---------------------------------------------


def test_go_pulls_part_of_a_dag_python_serves(tmp_path, procs, gonode, files):
    src, _ = files["small"]
    home = tmp_path / "py"
    cid = add(src, home, "classic")
    want, whole = first_leaf_bytes(home, cid)
    assert want < whole
    serve, addr = py_serve(procs, home)
    client = go_run(procs, gonode, "pull", addr, cid, "-selector", FIRST_LEAF)
    done = _word(client, "DONE")
    assert done[1] == "Completed", client.describe()
    assert int(done[3]) == want, (done, want)
    state = py_final(serve)
    assert state[3] == "Completed", serve.describe()
    assert int(state[4]) == want, (state, want)


def test_python_pulls_part_of_a_dag_go_serves(tmp_path, procs, gonode, files):
    src, _ = files["small"]
    ref = tmp_path / "ref"
    cid = add(src, ref, "classic")
    want, whole = first_leaf_bytes(ref, cid)
    assert want < whole
    serve, addr = go_serve(procs, gonode, "-file", src)
    client = py_run(procs, "pull", tmp_path / "py", addr, cid, "--selector", FIRST_LEAF)
    done = _word(client, "DONE")
    assert client.wait() == 0, client.describe()
    assert done[1] == "Completed", client.describe()
    assert int(done[2]) == want, (done, want)
    state = go_final(serve)
    assert state[2] == "Completed", serve.describe()
    assert int(state[3]) == want, (state, want)


# -- a pull of a DAG the Python home holds in part ---------------------------------------


@pytest.mark.parametrize("held", ["all", "first-half", "root-and-second-half"])
def test_python_pull_of_a_dag_it_holds_go_sends_only_the_rest(tmp_path, procs, gonode, files,
                                                             held):
    """Our new pull lists what the home holds (do-not-send-first-blocks from
    the start of the walk, do-not-send-cids past a gap); go-graphsync walks
    those blocks, announces them without sending them, and go-data-transfer
    counts as sent only the rest. Our channel counts the whole DAG."""
    from datatransfer.ipld.block import Block
    from datatransfer.ipld.blockstore import block_loader
    from datatransfer.ipld.selector import ALL_SELECTOR_NODE, blocks

    src, digest = files["small"]
    ref = tmp_path / "ref"
    cid = add(src, ref, "classic")
    with open_blockstore(ref) as store:
        order = [Block(c, bytes(d)) for c, d in
                 blocks(CID.parse(cid), ALL_SELECTOR_NODE, block_loader(store))]
    half = len(order) // 2
    keep = {"all": order, "first-half": order[:half],
            "root-and-second-half": order[:1] + order[half:]}[held]
    have = sum(len(b.data) for b in keep)
    home = tmp_path / "py"
    home.mkdir()
    with open_blockstore(home) as store:
        store.put_many(keep)
    serve, addr = go_serve(procs, gonode, "-file", src)
    assert _word(serve, "ROOT")[1] == cid
    client = py_run(procs, "pull", home, addr, cid)
    done = _word(client, "DONE")
    assert client.wait() == 0, client.describe()
    assert done[1] == "Completed", client.describe()
    assert int(done[2]) == int(done[3]) > SMALL, done  # received == DAG size, held included
    state = go_final(serve)
    assert state[2] == "Completed", serve.describe()
    assert int(state[3]) == int(done[3]) - have, (state, done, have)  # Go sent the rest only
    out = tmp_path / "got.bin"
    run("cat", cid, "-o", out, "--home", home)
    assert sha256(out) == digest


# -- cancel from either side -------------------------------------------------------------


def go_cancels_a_pull_python_serves(tmp_path, procs, gonode, files):
    """A Go node (v1.15 or v2) cancels its pull mid-transfer; both sides
    end Cancelled short of the whole file."""
    src, _ = files["large"]
    home = tmp_path / "py"
    cid = add(src, home, "classic")
    serve, addr = py_serve(procs, home)
    client = go_run(procs, gonode, "pull", addr, cid, "-cancel-after", MIB)
    cancelled = _word(client, "CANCELLED")
    assert int(cancelled[2]) < LARGE, client.describe()
    done = _word(client, "DONE")
    assert done[1] == "Cancelled", client.describe()
    state = py_final(serve)
    assert state[3] == "Cancelled", serve.describe()
    assert int(state[4]) < LARGE, state


def python_cancels_a_pull_go_serves(tmp_path, procs, gonode, files):
    """Our pull cancels mid-transfer from a Go node (v1.15 or v2); both
    sides end Cancelled short of the whole file."""
    src, _ = files["large"]
    cid = add(src, tmp_path / "ref", "classic")
    # paced, or go-graphsync has sent the whole DAG before the cancel arrives
    serve, addr = go_serve(procs, gonode, "-file", src, "-block-delay", SLOW)
    client = py_run(procs, "pull", tmp_path / "py", addr, cid, "--cancel-after", MIB)
    assert int(_word(client, "CANCELLING")[1]) < LARGE, client.describe()
    done = _word(client, "DONE")
    assert done[1] == "Cancelled", client.describe()
    state = go_final(serve)
    assert state[2] == "Cancelled", serve.describe()
    assert int(state[3]) < LARGE, state


def test_go_cancels_a_pull_python_serves(tmp_path, procs, gonode, files):
    go_cancels_a_pull_python_serves(tmp_path, procs, gonode, files)


def test_python_cancels_a_pull_go_serves(tmp_path, procs, gonode, files):
    python_cancels_a_pull_go_serves(tmp_path, procs, gonode, files)


# -- pause and resume from either side ---------------------------------------------------


def test_go_pauses_and_resumes_a_pull_python_serves(tmp_path, procs, gonode, files):
    """On resume go-data-transfer sends its Update (resume) message inside
    the graphsync request that continues the transfer; the Python responder
    must take it as the continuation (gap I-1: it refused it as 'data request
    carries a Update request' and the Go pull failed)."""
    src, digest = files["large"]
    home = tmp_path / "py"
    cid = add(src, home, "classic")
    serve, addr = py_serve(procs, home)
    client = go_run(procs, gonode, "pull", addr, cid, "-pause-after", 2 * MIB,
                    "-pause-for", "2s")
    paused = _word(client, "PAUSED")
    assert int(paused[2]) < LARGE, client.describe()  # paused mid-transfer
    assert int(_word(client, "RESUMED")[2]) < LARGE, client.describe()
    done = _word(client, "DONE")
    assert done[1] == "Completed", client.describe()
    assert _word(client, "FILE")[1:] == [str(LARGE), digest], client.describe()
    state = py_final(serve)
    assert state[3] == "Completed", serve.describe()


def test_python_pauses_and_resumes_a_pull_a_paced_go_serves(tmp_path, procs, gonode, files):
    """The pause reaches go-data-transfer (InitiatorPaused) and go-graphsync
    stops sending until the resume; then the pull completes."""
    src, digest = files["large"]
    cid = add(src, tmp_path / "ref", "classic")
    # paced, so that the pause arrives before go-graphsync sent everything
    serve, addr = go_serve(procs, gonode, "-file", src, "-block-delay", SLOW)
    home = tmp_path / "py"
    client = py_run(procs, "pull", home, addr, cid, "--pause-after", 2 * MIB,
                    "--pause-for", 2)
    paused = _word(client, "PAUSED")
    assert int(paused[1]) < LARGE, client.describe()
    resuming = _word(client, "RESUMING")
    assert resuming[1] == "InitiatorPaused", client.describe()
    assert int(resuming[2]) < LARGE, client.describe()
    go_paused = _line(serve, lambda w: w[0] == "STATE" and w[2] == "InitiatorPaused")
    assert int(go_paused[3]) < LARGE, serve.describe()
    done = _word(client, "DONE")
    assert client.wait() == 0, client.describe()
    assert done[1] == "Completed", client.describe()
    assert go_final(serve)[2] == "Completed", serve.describe()
    out = tmp_path / "got.bin"
    run("cat", cid, "-o", out, "--home", home)
    assert sha256(out) == digest


def test_python_pauses_and_resumes_a_pull_go_serves(tmp_path, procs, gonode, files):
    """Unpaced: the pause lands when go-graphsync has sent (nearly) every
    block already. Go's requester drops what arrives while paused and has it
    sent again after the resume; ours keeps blocks in flight that are exactly
    the next ones its traversal needs (no byte crosses the wire twice), so
    the data may all be here during the pause. What must hold: the channel
    does not complete before the application resumes it, then completes
    with every byte counted once, and both sides agree."""
    src, digest = files["large"]
    cid = add(src, tmp_path / "ref", "classic")
    serve, addr = go_serve(procs, gonode, "-file", src)
    home = tmp_path / "py"
    client = py_run(procs, "pull", home, addr, cid, "--pause-after", 2 * MIB,
                    "--pause-for", 2)
    paused = _word(client, "PAUSED")
    assert paused[2] == "InitiatorPaused", client.describe()
    # pause_channel returns promptly (it does not wait for the sender's
    # answers queued behind the data), so mid-transfer
    assert int(paused[1]) < LARGE, client.describe()
    resuming = _word(client, "RESUMING")
    # the pause held until the application resumed: the channel had not
    # ended. Go's responder may have sent every block before our pause reached
    # it; then its Complete arrives during the pause (ResponderCompleted, as
    # in Go's own table) and the channel completes once we resume.
    assert resuming[1] in ("InitiatorPaused", "ResponderCompleted"), client.describe()
    done = _word(client, "DONE")
    assert client.wait() == 0, client.describe()
    assert done[1] == "Completed", client.describe()
    # every block counted once: received is exactly the DAG's size
    assert int(done[2]) == int(done[3]), client.describe()
    assert go_final(serve)[2] == "Completed", serve.describe()
    out = tmp_path / "got.bin"
    run("cat", cid, "-o", out, "--home", home)
    assert sha256(out) == digest


# -- the connection cut mid-transfer: a restart against Go -------------------------------


def _events(p: Proc, name: str) -> list[list[str]]:
    return [line.split() for line in p.collect() if line.startswith(f"EVENT {name} ")]


def test_python_pull_restarts_after_a_cut_against_go(tmp_path, procs, gonode, files, relay_to):
    """The connection to a Go responder dies mid-pull; our node restarts the
    channel (a Restart request, then a graphsync request whose
    ``graphsync/do-not-send-first-blocks`` counts the blocks it holds) and
    go-graphsync announces those first blocks without sending them: the pull
    completes with every byte counted once."""
    src, digest = files["large"]
    cid = add(src, tmp_path / "ref", "classic")
    # paced: unpaced, go-graphsync can write the whole DAG into the socket
    # buffers behind the hold before the cut, complete its side, and then
    # refuse the restart (as it would a Go client's)
    serve, addr = go_serve(procs, gonode, "-file", src, "-block-delay", SLOW)
    assert _word(serve, "ROOT")[1] == cid
    port, peer = split_addr(addr)
    relay = relay_to(port)
    # Go's data stops reaching us after 3 MiB; the cut comes once we stored
    # 1 MiB, so it lands mid-transfer whatever the machine's speed
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
    # the cut was seen and the channel restarted, over a new connection
    assert _events(client, "Disconnected"), client.describe()
    restarts = _events(client, "Restart")
    assert restarts, client.describe()
    arrived = int(restarts[0][5])  # stored before the restart
    assert MIB <= arrived < size, restarts
    assert relay.accepted[1] >= 1, relay.accepted
    # Go sent what never got through and not much more: the blocks we held
    # were announced, not sent again
    resent = relay.after_first_cut("down")
    assert size - relay.forwarded[0]["down"] <= resent, (resent, relay.forwarded)
    assert resent <= size - arrived + size // 50 + 64 * 1024, (resent, size, arrived)
    state = go_final(serve)
    assert state[2] == "Completed", serve.describe()
    out = tmp_path / "got.bin"
    run("cat", cid, "-o", out, "--home", home)
    assert sha256(out) == digest


def _go_received(proc: Proc) -> int:
    """The most a Go node's channel received so far, from its ``[dt]`` event
    log on stderr (gonode prints no progress records on stdout)."""
    best = 0
    for line in list(proc.stderr):
        for word in line.split():
            if word.startswith("recv="):
                best = max(best, int(word[5:]))
    return best


def test_go_pull_restarts_after_a_cut_python_serves(tmp_path, procs, gonode, files, relay_to):
    """The reverse: a Go pull from our node loses its connection mid-transfer;
    go-data-transfer's channel monitor (on in gonode with -restart-backoff)
    reconnects and restarts the channel (a graphsync request carrying the
    restart message and ``graphsync/do-not-send-first-blocks``), and our
    responder continues it: completed, the file intact, each byte counted
    once on both sides."""
    src, digest = files["large"]
    home = tmp_path / "py"
    cid = add(src, home, "classic")
    _, size = first_leaf_bytes(home, cid)
    # every connection goes through the relay: our node never dials, Go
    # dials the relay's address only (not the one identify announces)
    serve, addr = py_serve(procs, home, "--no-dial")
    port, peer = split_addr(addr)
    relay = relay_to(port)
    relay.hold_after("down", 3 * MIB)  # our data stops reaching Go after 3 MiB
    client = go_run(procs, gonode, "pull", relay.addr(peer), cid, "-restart-backoff", "200ms",
                    "-only-via=true")
    wait_until(lambda: _go_received(client) >= MIB or client.proc.poll() is not None,
               f"Go to receive 1 MiB\n{client.describe()}")
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
    # the monitor restarted the channel: the cut was not missed
    assert _word(client, "RESTARTED"), client.describe()
    assert _events(serve, "Restart"), serve.describe()
    assert relay.accepted[1] >= 1, relay.accepted
    # we sent what never got through and not much more: the blocks Go held
    # (its do-not-send-first-blocks) were not sent again
    resent = relay.after_first_cut("down")
    assert size - relay.forwarded[0]["down"] <= resent, (resent, relay.forwarded)
    assert resent <= size - arrived + size // 50 + 64 * 1024, (resent, size, arrived)
    state = py_final(serve)
    assert state[3] == "Completed", serve.describe()
    assert int(state[4]) == size, (state, size)
