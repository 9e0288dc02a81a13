"""The retrieval transports query (/fil/retrieval/transports/1.0.0): our
answer byte for byte as Go's binding writes it (tests/data/transports-vectors.json,
from tests/interop/transportsvector), strict reading of malformed answers
(Go's verdict beside ours), and a node answering it over libp2p with its
dialable addresses. Lassie asking it live is in test_interop_lassie.py."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import anyio
import pytest
from _gobuild import REPO, build_local, require_go
from _support import DEADLINE

from datatransfer.markets.retrieval.filecoin import RetrievalTypeError
from datatransfer.markets.retrieval.transports import (
    LIBP2P,
    TRANSPORTS_PROTOCOL,
    TransportProtocol,
    TransportsResponse,
)

VECTORS_FILE = REPO / "tests" / "data" / "transports-vectors.json"
GENERATOR = REPO / "tests" / "interop" / "transportsvector"
DATA = json.loads(VECTORS_FILE.read_text())
#: Answers Go's binding reads and we refuse, and why.
REFUSED_ON_PURPOSE = {
    # DAG-CBOR maps are written with their keys in canonical order; Go's
    # decoder takes any order, ours (strict, as for every message) does not
    "keys in another order": "not DAG-CBOR",
}


def response(vector: dict) -> TransportsResponse:
    return TransportsResponse(tuple(TransportProtocol(p["name"], tuple(p["addresses"]))
                                    for p in vector["protocols"]))


@pytest.mark.parametrize("vector", DATA["vectors"], ids=lambda v: v["name"])
def test_encoding_is_gos_byte_for_byte_and_reads_back(vector: dict) -> None:
    want = bytes.fromhex(vector["dagcbor"])
    assert response(vector).encode() == want
    assert TransportsResponse.decode(want) == response(vector)


@pytest.mark.parametrize("case", DATA["malformed"], ids=lambda c: c["name"])
def test_malformed_answers_are_refused_as_go_refuses_them(case: dict) -> None:
    data = bytes.fromhex(case["dagcbor"])
    if not case["go_error"] and case["name"] not in REFUSED_ON_PURPOSE:
        TransportsResponse.decode(data)  # Go reads it: so do we
        return
    with pytest.raises(RetrievalTypeError) as err:
        TransportsResponse.decode(data)
    why = str(err.value)
    assert "\n" not in why and why.startswith("QueryResponse"), why
    if case["name"] in REFUSED_ON_PURPOSE:
        assert REFUSED_ON_PURPOSE[case["name"]] in why


def test_go_vectors_cover_the_cases_we_rely_on() -> None:
    names = {v["name"] for v in DATA["vectors"]} | {c["name"] for c in DATA["malformed"]}
    assert {"libp2p, two addresses", "libp2p and http, as boost", "an empty address",
            "an unknown field", "trailing bytes"} <= names


def test_bad_values_are_refused_when_built() -> None:
    with pytest.raises(RetrievalTypeError, match=r"Protocol.Addresses\[0\]: not a multiaddr"):
        TransportProtocol(LIBP2P, ("not/a/multiaddr",))
    with pytest.raises(RetrievalTypeError, match="Protocol.Name"):
        TransportProtocol(7, ())  # type: ignore[arg-type]
    with pytest.raises(RetrievalTypeError, match="more than"):
        TransportsResponse.decode(b"\x00" * 70_000)


def test_a_node_answers_with_its_dialable_addresses_over_libp2p(tmp_path: Path) -> None:
    from datatransfer.markets.retrieval.network import query_transports
    from datatransfer.node import Node

    async def main():  # type: ignore[no-untyped-def]
        async with Node(tmp_path / "server") as server, \
                Node(tmp_path / "client") as client:
            await client.connect(server.addrs()[0])
            with anyio.fail_after(DEADLINE):
                got = await query_transports(client.host, server.peer_id)
            return got, server.addrs(), str(server.peer_id)

    got, addrs, peer = anyio.run(main, backend="trio")
    assert got == TransportsResponse((TransportProtocol(LIBP2P, tuple(addrs)),))
    # as boost gives them: each names the node (Lassie dials exactly these)
    assert addrs and all(a.endswith(f"/p2p/{peer}") for a in addrs)
    assert TRANSPORTS_PROTOCOL == "/fil/retrieval/transports/1.0.0"


@pytest.mark.timeout(900)
def test_vectors_are_what_the_generator_writes() -> None:
    """Go's binding regenerates the committed file exactly."""
    go = require_go("the transports vectors were not regenerated to compare (tests/interop/"
                    "transportsvector)")
    binary = build_local(go, GENERATOR, "transportsvector")
    out = subprocess.run([str(binary)], capture_output=True, timeout=300, check=True).stdout
    assert json.loads(out) == DATA
    assert out == VECTORS_FILE.read_bytes()
