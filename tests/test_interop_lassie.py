"""Lassie, the Filecoin network's retrieval client, against our node.

Lassie v0.25.0 (filecoin-project/lassie: go-data-transfer/v2 v2.0.0-rc8,
go-graphsync v0.18.0, go-retrieval-types v1.2.0) is built once from the Go
module proxy into ``.interop-build/lassie-v0.25.0`` (tests/_gobuild.py;
kept across sessions). Each test runs ``lassie fetch --providers <our
multiaddr> --protocols graphsync`` against a node in another process on
127.0.0.1, and never lets it look elsewhere: the provider is always given,
so Lassie asks no indexer.

What Lassie sends (read from a real run; what the provider must accept):
it first asks ``/fil/retrieval/transports/1.0.0`` (we answer ``libp2p`` at
our addresses), then opens one graphsync 2.0.0 request (type ``n``) for the
root, with the explore-all selector ``{"R":{"l":{"none":{}},":>":{"a":{">":
{"@":{}}}}}}`` (``--dag-scope entity``: ``{"~":{"as":"unixfs",">":{"|":[{".":
{}}, {"R":{"l":{"depth":1},...}}]}}}``, a byte range adding
``{".":{"subset":{"[":from,"]":to+1}}}``; ``block``: ``{".":{}}``) and two
extensions: ``fil/data-transfer/1.1`` (a New pull request: ``BCid`` = the
root, ``Stor`` = the same selector, ``VTyp`` ``RetrievalDealProposal/1``,
``Vouch`` = ``{PayloadCID: root, ID: <deal id>, Params: {Selector: the same
selector, PieceCID: null, PricePerByte: "", PaymentInterval: 0,
PaymentIntervalIncrease: 0, UnsealPrice: ""}}`` (a free deal: no ask was
queried), ``XferID`` = a time-based counter) and ``graphsync/dedup-by-key``
= ``data-transfer-<initiator>-<responder>-<transfer id>``. Accepted with or
without a ``RetrievalDealResponse/1`` result, it completes.

Two servers:

* ``datatransfer serve``, exactly as a user runs it: it answers the
  transports query; until the retrieval provider exists
  (``datatransfer.markets.retrieval.provider``, registered by ``serve``
  through :mod:`datatransfer.markets.retrieval.serving` once it does) it
  refuses the proposal, visibly (metrics, ``ls --all``, one WARNING line),
  and the retrieval tests are expected failures naming the missing
  provider; with it they must pass.
* ``tests/_procnode.py serve --accept-deals``, whose stand-in validator
  accepts every proposal for free: the data path (whole file, UnixFS byte
  ranges with ``--dag-scope entity``, one block, a root the node lacks:
  graphsync status 34, which Lassie reports as "content not found") runs
  today; each CAR Lassie writes is checked block by block against the
  node's store.

Without ``go`` on PATH the module is skipped, loudly; with
``INTEROP_REQUIRE_GO=1`` (CI) that is a failure. A build failure is always
a failure.
"""

from __future__ import annotations

import json
import re
import subprocess
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from _gobuild import build_module_command, require_go
from _processes import (
    LOOPBACK,
    PROCNODE,
    TIMEOUT,
    Proc,
    child_env,
    cli_serve,
    make_file,
    run,
    wait_until,
)

from datatransfer.home import open_blockstore
from datatransfer.ipld import dagpb
from datatransfer.ipld.block import Block
from datatransfer.ipld.car import CarReader
from datatransfer.ipld.cid import CID
from datatransfer.markets.retrieval.serving import PROVIDER_MODULE, provider_available

LASSIE_MODULE = "github.com/filecoin-project/lassie"
LASSIE_VERSION = "v0.25.0"
MIB = 1024 * 1024
#: UnixFS "classic" profile: 256 KiB leaves, so a few MiB make a flat root.
CHUNK = 256 * 1024
SIZE = 3 * MIB + 4321
NO_PROVIDER = (f"no Filecoin retrieval provider yet ({PROVIDER_MODULE}, issue 13): "
               "`datatransfer serve` refuses Lassie's RetrievalDealProposal/1")

# the first test may pay for a cold build of Lassie (minutes on 2 cores)
pytestmark = pytest.mark.timeout(1800)


@pytest.fixture(scope="session")
def lassie() -> Path:
    go = require_go("the Lassie interop tests (tests/test_interop_lassie.py)")
    return build_module_command(go, LASSIE_MODULE, LASSIE_VERSION, "./cmd/lassie", "lassie")


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str, bytes]:
    """A home holding a UnixFS file: (home, file, root CID, bytes)."""
    d = tmp_path_factory.mktemp("lassie-src")
    path = d / "file.bin"
    make_file(path, SIZE, seed=13)
    home = d / "home"
    cid = run("add", path, "--home", home, "--profile", "classic").stdout.split()[-1]
    return home, path, cid, path.read_bytes()


def _first_line(proc: Proc) -> str:
    return proc.expect(lambda w: w[0].startswith("/ip4/") or w[0] == "ADDR")[-1]


def serve_accepting(procs: Callable[..., Proc], home: Path) -> tuple[Proc, str]:
    p = procs([*PROCNODE, "serve", "--home", str(home), "--listen", LOOPBACK, "--accept-deals"],
              stdin=True)
    return p, _first_line(p)


def fetch(lassie: Path, addr: str, cid: str, out: Path, *extra: str) -> subprocess.CompletedProcess:
    """``lassie fetch`` from ``addr`` only (never the network: the provider
    is given, on the loopback)."""
    assert re.fullmatch(r"/ip4/127\.0\.0\.1/tcp/\d+/p2p/\w+", addr), addr
    env = {k: v for k, v in child_env().items() if not k.startswith(("LASSIE_", "GOLOG_"))}
    return subprocess.run(
        [str(lassie), "fetch", "-vv", "--providers", addr, "--protocols", "graphsync",
         "--global-timeout", "90s", "--provider-timeout", "30s", "-o", str(out), *extra, cid],
        capture_output=True, text=True, timeout=TIMEOUT + 60, env=env)


def car_blocks(path: Path) -> tuple[list[CID], list[tuple[CID, bytes]]]:
    """The CAR's roots and blocks, each block's hash checked."""
    with CarReader(path, verify=True) as reader:
        return reader.roots, list(reader)


def expected_blocks(home: Path, cid: str, leaves: slice = slice(None)
                    ) -> list[tuple[CID, bytes]]:
    """The root and its ``leaves`` (a flat classic file: the root links
    every leaf, in file order), from the node's store: what a walk of
    those bytes loads, in its order."""
    store = open_blockstore(home)
    try:
        root = CID.parse(cid)
        data = store.get(root)
        links = [link["Hash"] for link in dagpb.decode(data)["Links"]]
        return [(root, data)] + [(c, store.get(c)) for c in links[leaves]]
    finally:
        store.close()


def check_car(path: Path, home: Path, cid: str, leaves: slice = slice(None)) -> None:
    roots, blocks = car_blocks(path)
    assert roots == [CID.parse(cid)]
    want = expected_blocks(home, cid, leaves)
    assert [c for c, _ in blocks] == [c for c, _ in want]
    for (c, data), (_, stored) in zip(blocks, want, strict=True):
        assert data == stored
        assert Block(c, data).cid == c


def asked_transports(result: subprocess.CompletedProcess) -> bool:
    return "retrieving metadata from transports protocol" in result.stderr


# -- datatransfer serve as a user runs it ------------------------------------------------


def test_lassie_against_datatransfer_serve(tmp_path, procs, lassie, source):
    """``lassie fetch`` of a UnixFS file from a node started with nothing but
    ``datatransfer add`` and ``datatransfer serve``."""
    cid = source[2]
    serve_home = tmp_path / "home"
    run("add", source[1], "--home", serve_home, "--profile", "classic")
    serve, addr = cli_serve(procs, serve_home, LOOPBACK, "--metrics-port", "0")
    out = tmp_path / "out.car"
    got = fetch(lassie, addr, cid, out)
    assert asked_transports(got), got.stderr[-3000:]  # it read our transports answer
    if provider_available():
        assert got.returncode == 0, got.stderr[-3000:]
        check_car(out, serve_home, cid)
        return
    # refused today: visibly so
    assert got.returncode != 0 and "response rejected" in got.stderr, got.stderr[-3000:]
    rows: list[dict] = []

    def listed() -> bool:
        rows[:] = json.loads(run("ls", "--all", "--json", "--home", serve_home).stdout)
        return bool(rows)

    wait_until(listed, "the refused request in ls --all")
    assert [(r["status"], r["message"], r["root"]) for r in rows] == [
        ("Failed", "refused: unknown voucher type 'RetrievalDealProposal/1' (no validator "
         "takes it)", cid)]
    url = next(m.group(0) for line in serve.stderr
               if (m := re.search(r"http://127\.0\.0\.1:\d+/metrics", line)))
    with urllib.request.urlopen(url, timeout=TIMEOUT) as rsp:
        metrics = rsp.read().decode()
    assert ('datatransfer_refused_inputs_total{kind="rejected-request",layer="channels"} 1.0'
            in metrics)
    warnings = [line for line in serve.stderr if "refused a pull of" in line]
    assert len(warnings) == 1 and warnings[0].startswith("WARNING"), serve.describe()
    assert "RetrievalDealProposal/1" in warnings[0]
    pytest.xfail(NO_PROVIDER)


# -- the data path, with a stand-in that accepts every deal ------------------------------


def test_lassie_fetches_a_whole_unixfs_file(tmp_path, procs, lassie, source):
    home, _, cid, data = source
    serve, addr = serve_accepting(procs, home)
    out = tmp_path / "out.car"
    got = fetch(lassie, addr, cid, out)
    assert got.returncode == 0, got.stderr[-3000:]
    assert asked_transports(got)
    check_car(out, home, cid)
    deal = serve.expect(lambda w: w[0] == "DEAL")
    assert deal[2] == cid
    blocks = len(expected_blocks(home, cid))
    assert f"Blocks: {blocks}" in got.stderr, got.stderr[-1500:]
    assert len(data) == SIZE


@pytest.mark.parametrize("span", [(0, 999), (1_000_000, 1_300_000), (SIZE - 10, SIZE - 1)],
                         ids=["head", "middle", "tail"])
def test_lassie_fetches_a_byte_range_with_dag_scope_entity(tmp_path, procs, lassie, source, span):
    """``--dag-scope entity --entity-bytes from:to``: the root and exactly the
    leaves holding those bytes (inclusive), checked against the store."""
    home, _, cid, _ = source
    _, addr = serve_accepting(procs, home)
    out = tmp_path / "range.car"
    start, end = span
    got = fetch(lassie, addr, cid, out, "--dag-scope", "entity", "--entity-bytes",
                f"{start}:{end}")
    assert got.returncode == 0, got.stderr[-3000:]
    check_car(out, home, cid, slice(start // CHUNK, end // CHUNK + 1))


def test_lassie_fetches_one_block_with_dag_scope_block(tmp_path, procs, lassie, source):
    home, _, cid, _ = source
    _, addr = serve_accepting(procs, home)
    out = tmp_path / "block.car"
    got = fetch(lassie, addr, cid, out, "--dag-scope", "block")
    assert got.returncode == 0, got.stderr[-3000:]
    check_car(out, home, cid, slice(0))  # the root alone


def test_lassie_reports_a_root_the_node_lacks_as_not_found(tmp_path, procs, lassie, source):
    """Graphsync status 34 (RequestFailedContentNotFound), as go-graphsync
    sends it: Lassie says "content not found" (it said "unknown reason" for
    the status 32 the node sent before)."""
    home, _, _, _ = source
    missing = str(Block.of(b"a block no node here holds").cid)
    serve, addr = serve_accepting(procs, home)
    got = fetch(lassie, addr, missing, tmp_path / "none.car")
    assert got.returncode != 0
    assert "request failed - content not found" in got.stderr, got.stderr[-3000:]
    # the deal was accepted: the data path said it
    assert serve.expect(lambda w: w[0] == "DEAL")[2] == missing
