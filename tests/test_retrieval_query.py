"""The retrieval query (``/fil/retrieval/qry/1.0.0``) against go-fil-markets'
own encoders.

``tests/data/query-vectors.json`` comes from ``tests/interop/queryvectors``
(Go, go-fil-markets v1.28.3's ``retrievalmarket`` cbor-gen code; see its
README), ``query-vectors-v1.26.1.json`` from the same program built against
v1.26.1 (whose cbor-gen writes map keys in the structs' field order, as every
go-fil-markets before v1.28 did). Each vector's bytes are what Go's query
stream writes (``cborutil.WriteCborRPC``: the bare value); we encode Go's
v1.28.3 bytes exactly, read both versions' bytes as Go reads them, refuse
every malformed node Go refuses with :class:`RetrievalTypeError` (and the
ones Go accepts that we refuse on purpose, listed below), and speak the
protocol over libp2p as Go frames it. The last test rebuilds the vectors
with Go, when Go is on PATH, to check the committed files are the
generator's output.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import anyio
import pytest
from _gobuild import BUILD_TIMEOUT, REPO, build_local, require_go
from _support import DEADLINE
from hypothesis import given
from hypothesis import strategies as st

from datatransfer.ipld import dagcbor
from datatransfer.ipld.cid import CID
from datatransfer.markets.retrieval.filecoin import Address, RetrievalTypeError
from datatransfer.markets.retrieval.query import (
    QUERY_PROTOCOL,
    Query,
    QueryResponse,
    QueryStatus,
)

GENERATOR = REPO / "tests" / "interop" / "queryvectors"
VECTORS_FILE = REPO / "tests" / "data" / "query-vectors.json"
#: go-fil-markets version -> (its go.mod, the vectors it writes)
VERSIONS = {
    "v1.28.3": ("go.mod", VECTORS_FILE),
    "v1.26.1": ("go.v1.26.1.mod", REPO / "tests" / "data" / "query-vectors-v1.26.1.json"),
}
DATA = json.loads(VECTORS_FILE.read_text())
OLD = json.loads(VERSIONS["v1.26.1"][1].read_text())
VECTORS = {v["name"]: v for v in DATA["vectors"]}
CLASSES: dict[str, Any] = {"Query": Query, "QueryResponse": QueryResponse}

#: Nodes go-fil-markets' decoder accepts and we refuse, and why: a missing
#: field (Go reads its zero value; every field is always written), an unknown
#: field (Go skips it), a status Go gives no name, and amounts in a byte form
#: Go never writes or negative (no ask has one).
GO_ACCEPTS_WE_REFUSE = {
    "query-missing-PayloadCID": "missing field PayloadCID",
    "query-missing-QueryParams": "missing field QueryParams",
    "query-missing-PieceCID": "missing field PieceCID",
    "query-empty-map": "missing field",
    "query-extra-field": "unknown field Extra",
    "response-empty-map": "missing field",
    "response-extra-field": "unknown field Extra",
    "response-Status-unknown": "unknown status 3",
    "response-PieceCIDFound-unknown": "unknown status 7",
    "response-price-negative": "negative",
    "response-unseal-negative": "negative",
    "response-price-leading-zero": "not canonical",
    "response-price-sign-only": "not canonical",
    **{f"response-missing-{f}": f"missing field {f}" for f in QueryResponse.FIELDS},
}
#: Nodes Go refuses and we read, and why: the one difference left (see the
#: docstring of datatransfer.markets.retrieval.query).
WE_ACCEPT_GO_REFUSES = {
    "response-address-empty": "an undefined payment address, which go-address never writes",
}


def _decode(vector: dict[str, Any]) -> Any:
    return CLASSES[vector["type"]].decode(bytes.fromhex(vector["wire"]))


def _address_view(a: Address) -> dict[str, str]:
    if a.is_undef:
        return {"bytes": "", "string": "<empty>"}
    return {"bytes": a.raw.hex(), "string": a.to_string("t")}  # Go's default network


def _view(value: Any) -> dict[str, Any]:
    """Our reading of a value, in the shape of the generator's ``go`` field."""
    if isinstance(value, Query):
        return {"PayloadCID": str(value.payload_cid),
                "PieceCID": None if value.piece_cid is None else str(value.piece_cid)}
    return {
        "Status": str(int(value.status)), "PieceCIDFound": str(int(value.piece_cid_found)),
        "Size": str(value.size), "PaymentAddress": _address_view(value.payment_address),
        "MinPricePerByte": str(value.min_price_per_byte),
        "MaxPaymentInterval": str(value.max_payment_interval),
        "MaxPaymentIntervalIncrease": str(value.max_payment_interval_increase),
        "Message": value.message, "UnsealPrice": str(value.unseal_price),
    }


def _written(vectors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [v for v in vectors if v["wire"]]


def test_the_fixtures_are_of_the_versions_they_name_and_cover_every_status() -> None:
    assert DATA["go_fil_markets"] == "v1.28.3" and OLD["go_fil_markets"] == "v1.26.1"
    responses = [_decode(v) for v in _written(DATA["vectors"]) if v["type"] == "QueryResponse"]
    assert {r.status for r in responses} == set(QueryStatus)
    assert {r.piece_cid_found for r in responses} == set(QueryStatus)
    assert {_decode(v).piece_cid is None for v in DATA["vectors"] if v["type"] == "Query"} \
        == {True, False}
    assert len(DATA["malformed"]) >= 50


# -- well-formed values: Go's bytes both ways ----------------------------------------------------


@pytest.mark.parametrize("name", sorted(v["name"] for v in _written(DATA["vectors"])))
def test_go_bytes_decode_and_reencode_identically(name: str) -> None:
    vector = VECTORS[name]
    data = bytes.fromhex(vector["wire"])
    value = _decode(vector)
    assert value.encode() == data
    assert _view(value) == vector["go"]


@pytest.mark.parametrize("vector", _written(OLD["vectors"]), ids=lambda v: v["name"])
def test_older_markets_bytes_decode_to_the_same_value(vector: dict[str, Any]) -> None:
    """go-fil-markets v1.26.1 (lotus-miner's markets before v1.28) writes the
    response's keys in field order: read as v1.28.3's bytes are, and
    re-encoded as v1.28.3 writes them."""
    new = VECTORS[vector["name"]]
    value = _decode(vector)
    assert value == _decode(new)
    assert _view(value) == vector["go"] == new["go"]
    assert value.encode() == bytes.fromhex(new["wire"])


def test_the_older_bytes_are_in_another_key_order() -> None:
    """So the test above checks something: every response differs, every query is the same."""
    for old in _written(OLD["vectors"]):
        same = old["wire"] == VECTORS[old["name"]]["wire"]
        assert same == (old["type"] == "Query"), old["name"]
        node = dagcbor.decode(bytes.fromhex(old["wire"]), sorted_keys=False)
        if old["type"] == "QueryResponse":
            assert list(node)[:3] == ["Status", "PieceCIDFound", "Size"]


def test_an_undefined_payment_address_is_the_difference_left() -> None:
    """go-address refuses to write an undefined address and to read empty
    bytes as one; we write and read it as empty bytes (a free provider with
    no wallet has none to give), which a Go client cannot read."""
    assert VECTORS["undefined-address"]["wire_error"] == "cannot marshal undefined address"
    ours = QueryResponse(QueryStatus.UNAVAILABLE)
    assert dagcbor.decode(ours.encode())["PaymentAddress"] == b""
    assert QueryResponse.decode(ours.encode()) == ours
    [empty] = [c for c in DATA["malformed"] if c["name"] == "response-address-empty"]
    assert "should not contain empty addresses" in empty["go_error"]


# -- malformed nodes ---------------------------------------------------------------------------


@pytest.mark.parametrize("case", DATA["malformed"], ids=lambda c: c["name"])
def test_malformed_nodes_are_refused_with_a_typed_error(case: dict[str, Any]) -> None:
    cls = CLASSES[case["type"]]
    data = bytes.fromhex(case["cbor"])
    if not case["go_error"] and case["name"] not in GO_ACCEPTS_WE_REFUSE \
            or case["name"] in WE_ACCEPT_GO_REFUSES:
        assert cls.decode(data).encode() == data  # Go reads it: so do we, to the same bytes
        return
    with pytest.raises(RetrievalTypeError) as info:
        cls.decode(data)
    message = str(info.value)
    assert "\n" not in message and message.startswith(cls.__name__), message
    if not case["go_error"]:
        assert GO_ACCEPTS_WE_REFUSE[case["name"]] in message


def test_go_accepts_exactly_the_cases_listed_as_refused_on_purpose() -> None:
    accepted_by_go = {c["name"] for c in DATA["malformed"] if not c["go_error"]}
    assert accepted_by_go == set(GO_ACCEPTS_WE_REFUSE) | {"response-as-built", "query-as-built"}
    refused_by_go = {c["name"] for c in DATA["malformed"] if c["go_error"]}
    assert set(WE_ACCEPT_GO_REFUSES) <= refused_by_go


# -- our own values ---------------------------------------------------------------------------------

u64 = st.integers(0, (1 << 64) - 1)
amounts = st.one_of(st.just(0), st.integers(0, 1 << 20), st.integers(0, 1 << 256))
cids = st.builds(lambda data, codec: CID.of(data, codec=codec), st.binary(max_size=8),
                 st.sampled_from([0x55, 0x70, 0x71]))
addresses = st.one_of(st.just(Address()), st.integers(0, (1 << 63) - 1).map(Address.new_id))
responses = st.builds(QueryResponse, status=st.sampled_from(list(QueryStatus)), size=u64,
                      payment_address=addresses, min_price_per_byte=amounts,
                      max_payment_interval=u64, max_payment_interval_increase=u64,
                      message=st.text(max_size=20), unseal_price=amounts,
                      piece_cid_found=st.sampled_from(list(QueryStatus)))


@given(responses, st.randoms(use_true_random=False))
def test_responses_read_back_whatever_the_key_order(value: QueryResponse, rnd: Any) -> None:
    data = value.encode()
    assert QueryResponse.decode(data) == value
    node = dagcbor.decode(data)
    keys = list(node)
    rnd.shuffle(keys)
    assert QueryResponse.decode(_encode_in_order(node, keys)) == value


@given(cids, st.one_of(st.none(), cids))
def test_queries_round_trip(payload: CID, piece: CID | None) -> None:
    q = Query(payload, piece)
    assert Query.decode(q.encode()) == q


def _encode_in_order(node: dict[str, Any], keys: list[str]) -> bytes:
    """A map's DAG-CBOR with its entries in ``keys`` order (as cbor-gen writes
    struct-order maps): the head, then each key and value encoded alone."""
    assert len(keys) < 24
    out = bytearray([0xA0 | len(keys)])
    for k in keys:
        out += dagcbor.encode(k) + dagcbor.encode(node[k])
    return bytes(out)


# -- the stream, as Go frames it ---------------------------------------------------------------------


def test_the_query_and_its_answer_go_bare_on_the_stream(tmp_path: Path) -> None:
    """Our client writes Go's query bytes with nothing around them and reads
    a Go provider's answer (its bytes, then the stream closed); our server
    reads a query written in pieces by a client that keeps its side open (as
    go-fil-markets' and boost's clients do) and answers with Go's bytes."""
    from libp2p.network.stream.exceptions import StreamEOF

    from datatransfer.markets.retrieval.network import query_ask, serve_query
    from datatransfer.node import Node
    from transport.libp2p.host import close_stream, libp2p_id

    go_query = bytes.fromhex(VECTORS["query-v1-piece"]["wire"])
    go_answer = bytes.fromhex(VECTORS["available-paid-secp"]["wire"])
    received: list[bytes] = []

    async def go_provider(stream: Any) -> None:  # reads one value, writes one, closes
        data = b""
        while len(data) < len(go_query):
            data += await stream.read(len(go_query) - len(data))
        received.append(data)
        await stream.write(go_answer)
        await close_stream(stream)

    async def main() -> tuple[QueryResponse, bytes]:
        async with Node(tmp_path / "a") as a, Node(tmp_path / "b") as b:
            await b.connect(a.addrs()[0])
            with anyio.fail_after(DEADLINE):
                a.host.set_stream_handler(QUERY_PROTOCOL, go_provider)
                got = await query_ask(b.host, a.peer_id, Query.decode(go_query))
                serve_query(a.host, lambda q: QueryResponse.decode(go_answer)
                            if q == Query.decode(go_query) else QueryResponse(QueryStatus.ERROR))
                stream = await b.host.new_stream(libp2p_id(a.peer_id), [QUERY_PROTOCOL])
                await stream.write(go_query[:7])
                await anyio.sleep(0)
                await stream.write(go_query[7:])
                answer = b""
                while True:
                    try:
                        chunk = await stream.read(1 << 16)
                    except StreamEOF:  # the server closed its side after answering
                        break
                    if not chunk:
                        break
                    answer += chunk
                await close_stream(stream)
            return got, answer

    got, answer = anyio.run(main, backend="trio")
    assert received == [go_query]
    assert got == QueryResponse.decode(go_answer)
    assert answer == go_answer


def test_a_free_serve_names_its_wallet_so_go_clients_can_read_its_answers(tmp_path: Path) -> None:
    """``serve``'s ask names the home wallet's address even when free, and
    both answers carry it: go-fil-markets cannot read an undefined one."""
    from datatransfer.cli.ask import AskTerms, retrieval_setup
    from datatransfer.ipld.unixfs import import_file
    from datatransfer.markets.retrieval.network import query_ask
    from datatransfer.markets.retrieval.wallet import HomeWallet
    from datatransfer.node import Node

    home = tmp_path / "provider"
    home.mkdir()
    nodes: list[Node] = []
    setup, line = retrieval_setup(home, AskTerms(), lambda: nodes[0])
    assert line is None  # free: no ask line

    async def main() -> list[QueryResponse]:
        nodes.append(Node(home, setup=setup))
        async with nodes[0] as a, Node(tmp_path / "client") as b:
            root = import_file(b"held here" * 100, a.blockstore)
            missing = import_file(b"not held", b.blockstore)
            await b.connect(a.addrs()[0])
            with anyio.fail_after(DEADLINE):
                return [await query_ask(b.host, a.peer_id, Query(cid)) for cid in (root, missing)]

    held, lacking = anyio.run(main, backend="trio")
    assert (held.status, lacking.status) == (QueryStatus.AVAILABLE, QueryStatus.UNAVAILABLE)
    wallet = HomeWallet(home).address
    assert not wallet.is_undef
    assert held.payment_address == lacking.payment_address == wallet
    assert dagcbor.decode(lacking.encode())["PaymentAddress"] == wallet.raw != b""


# -- the fixtures are the generator's output -----------------------------------------------------------


@pytest.mark.timeout(BUILD_TIMEOUT)
@pytest.mark.parametrize("version", sorted(VERSIONS))
def test_vectors_are_what_the_generator_writes(version: str) -> None:
    """Go regenerates each committed file exactly (built into .interop-build,
    modules pinned by the version's go.mod / go.sum)."""
    go = require_go("the query vectors were not regenerated to compare (tests/interop/queryvectors)")
    modfile, vectors = VERSIONS[version]
    binary = build_local(go, GENERATOR, f"queryvectors-{version}",
                         None if modfile == "go.mod" else modfile)
    out = subprocess.run([str(binary)], capture_output=True, timeout=300, check=True).stdout
    assert json.loads(out)["go_fil_markets"] == version
    assert out == vectors.read_bytes()
