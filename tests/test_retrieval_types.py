"""The retrieval deal types against go-retrieval-types' own encoders.

``tests/data/retrieval-vectors.json`` comes from ``tests/interop/retrievalvectors``
(Go, go-retrieval-types v1.2.0; see its README): every vector decodes into our
types and re-encodes to Go's bytes, our reading of it agrees with Go's, the
struct-order bytes of Go's cbor-gen encoder decode to the same value, every
malformed node Go refuses is refused here with :class:`RetrievalTypeError`
(and the few Go accepts are refused on purpose, listed below), and the
payment arithmetic of ``Params`` gives Go's answers. Property tests cover
what the vectors cannot enumerate. The last test rebuilds the vectors with
Go, when Go is on PATH, to check the committed file is the generator's output.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from datatransfer.ipld import dagcbor, dagjson
from datatransfer.ipld.cid import CID
from datatransfer.ipld.varint import encode_uvarint
from datatransfer.markets.retrieval import (
    DEAL_PAYMENT_TYPE,
    DEAL_PROPOSAL_TYPE,
    DEAL_RESPONSE_TYPE,
    Address,
    DealPayment,
    DealProposal,
    DealResponse,
    DealStatus,
    Merge,
    ModVerifyParams,
    Params,
    RetrievalTypeError,
    Signature,
    SignedVoucher,
    SigType,
    decode_big_int,
    encode_big_int,
)
from datatransfer.messages import (
    decode_message,
    encode_message,
    new_request,
    voucher_result_response,
)
from registry import InvalidVoucher, Registry

REPO = Path(__file__).resolve().parents[1]
VECTORS_FILE = REPO / "tests" / "data" / "retrieval-vectors.json"
GENERATOR = REPO / "tests" / "interop" / "retrievalvectors"
DATA = json.loads(VECTORS_FILE.read_text())
VECTORS = {v["name"]: v for v in DATA["vectors"]}
CLASSES: dict[str, Any] = {
    DEAL_PROPOSAL_TYPE: DealProposal,
    DEAL_RESPONSE_TYPE: DealResponse,
    DEAL_PAYMENT_TYPE: DealPayment,
}
UINT64_MAX = (1 << 64) - 1

#: Malformed nodes go-retrieval-types accepts and we refuse, and why: amounts
#: in a byte form Go's encoder never writes (accepting them would give one
#: value two encodings), negative amounts (no deal has one), and a status
#: Go gives no name.
GO_ACCEPTS_WE_REFUSE = {
    "proposal-price-sign-only": "not canonical",
    "proposal-price-negative-zero": "not canonical",
    "proposal-price-leading-zero": "not canonical",
    "proposal-price-negative": "negative",
    "proposal-unseal-negative": "negative",
    "response-Status-unknown": "unknown deal status",
    "response-owed-negative": "negative",
    "payment-voucher-amount-negative": "negative",
}


def _decode(vector: dict[str, Any]) -> Any:
    return CLASSES[vector["type"]].from_bytes(bytes.fromhex(vector["dagcbor"]))


def test_the_fixture_covers_every_type_and_status() -> None:
    types = {v["type"] for v in DATA["vectors"]}
    assert types == set(CLASSES)
    statuses = {_decode(v).status for v in DATA["vectors"] if v["type"] == DEAL_RESPONSE_TYPE}
    assert statuses == set(DealStatus)
    assert len(DATA["malformed"]) >= 50 and len(DATA["intervals"]) >= 400


# -- well-formed values: Go's bytes both ways ----------------------------------------------


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_go_bytes_decode_and_reencode_identically(name: str) -> None:
    vector = VECTORS[name]
    data = bytes.fromhex(vector["dagcbor"])
    value = _decode(vector)
    assert type(value).type_id == vector["type"]
    assert value.to_bytes() == data
    assert dagcbor.encode(value.to_node()) == data
    # and a value built from its fields (not from the node) encodes the same
    assert type(value).from_node(value.to_node()) == value


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_cbor_gen_bytes_decode_to_the_same_value(name: str) -> None:
    """go-fil-markets on go-data-transfer v1 wrote these (struct-order maps);
    the message decoder reads vouchers with any key order."""
    vector = VECTORS[name]
    if not vector["cborgen"]:
        # cbor-gen cannot write an undefined address; bindnode can, and so can we
        assert "undefined address" in vector["cborgen_error"]
        assert _decode(vector).to_bytes() == bytes.fromhex(vector["dagcbor"])
        return
    node = dagcbor.decode(bytes.fromhex(vector["cborgen"]), sorted_keys=False)
    value = CLASSES[vector["type"]].from_node(node)
    assert value == _decode(vector)
    assert value.to_bytes() == bytes.fromhex(vector["dagcbor"])


def _params_view(p: Params) -> dict[str, Any]:
    return {
        "Selector": dagjson.encode(p.selector).decode() if p.selector is not None else "null",
        "PieceCID": None if p.piece_cid is None else str(p.piece_cid),
        "PricePerByte": str(p.price_per_byte),
        "PaymentInterval": str(p.payment_interval),
        "PaymentIntervalIncrease": str(p.payment_interval_increase),
        "UnsealPrice": str(p.unseal_price),
    }


def _address_view(a: Address) -> dict[str, str]:
    return {"bytes": a.raw.hex(), "string": a.to_string("t")}  # Go's default network is testnet


def _view(value: Any) -> dict[str, Any]:
    """Our reading of a value, in the shape of the generator's ``go`` field."""
    if isinstance(value, DealProposal):
        return {"PayloadCID": str(value.payload_cid), "ID": str(value.deal_id),
                "Params": _params_view(value.params)}
    if isinstance(value, DealResponse):
        return {"Status": str(int(value.status)), "StatusName": value.status.go_name,
                "ID": str(value.deal_id), "PaymentOwed": str(value.payment_owed),
                "Message": value.message}
    sv = value.payment_voucher
    voucher = None
    if sv is not None:
        voucher = {
            "ChannelAddr": _address_view(sv.channel_addr),
            "TimeLockMin": str(sv.time_lock_min), "TimeLockMax": str(sv.time_lock_max),
            "SecretHash": sv.secret_hash.hex(),
            "Extra": None if sv.extra is None else {
                "Actor": _address_view(sv.extra.actor), "Method": str(sv.extra.method),
                "Data": sv.extra.data.hex()},
            "Lane": str(sv.lane), "Nonce": str(sv.nonce), "Amount": str(sv.amount),
            "MinSettleHeight": str(sv.min_settle_height),
            "Merges": [[str(m.lane), str(m.nonce)] for m in sv.merges],
            "Signature": None if sv.signature is None else {
                "Type": int(sv.signature.type), "Data": sv.signature.data.hex()},
        }
    return {"ID": str(value.deal_id), "PaymentChannel": _address_view(value.payment_channel),
            "PaymentVoucher": voucher}


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_our_reading_is_gos(name: str) -> None:
    """Amounts, statuses (by Go's name), CIDs, selectors, addresses (in text,
    with go-address's checksum) read as go-retrieval-types reads them."""
    vector = VECTORS[name]
    assert _view(_decode(vector)) == vector["go"]


def test_statuses_have_gos_numbering_and_names() -> None:
    assert [s.go_name for s in DealStatus] == DATA["statuses"]
    assert [int(s) for s in DealStatus] == list(range(len(DATA["statuses"])))


# -- malformed nodes -------------------------------------------------------------------------


@pytest.mark.parametrize("case", DATA["malformed"], ids=lambda c: c["name"])
def test_malformed_nodes_are_refused_with_a_typed_error(case: dict[str, Any]) -> None:
    cls = CLASSES[case["type"]]
    data = bytes.fromhex(case["dagcbor"])
    with pytest.raises(RetrievalTypeError) as info:
        cls.from_bytes(data)
    message = str(info.value)
    assert "\n" not in message and message.startswith(cls.__name__)
    if not case["go_error"]:
        assert GO_ACCEPTS_WE_REFUSE[case["name"]] in message
    # through the registry, as the Manager decodes a received voucher
    registry = Registry()
    if cls is DealResponse:
        registry.register_voucher_result_type(cls)
        with pytest.raises(InvalidVoucher, match=case["type"]) as wrapped:
            registry.decode_voucher_result(case["type"], dagcbor.decode(data))
    else:
        registry.register_voucher_type(cls, _Validator())
        with pytest.raises(InvalidVoucher, match=case["type"]) as wrapped:
            registry.decode_voucher(case["type"], dagcbor.decode(data))
    assert message in str(wrapped.value)


def test_go_accepts_exactly_the_cases_listed_as_refused_on_purpose() -> None:
    accepted_by_go = {c["name"] for c in DATA["malformed"] if not c["go_error"]}
    assert accepted_by_go == set(GO_ACCEPTS_WE_REFUSE)


class _Validator:
    async def validate_push(self, *args: Any) -> None:
        return None

    async def validate_pull(self, *args: Any) -> None:
        return None


# -- the payment arithmetic ------------------------------------------------------------------


@pytest.mark.parametrize("params_name", sorted({iv["params"] for iv in DATA["intervals"]}))
def test_payment_arithmetic_is_gos(params_name: str) -> None:
    params = _decode(VECTORS[params_name]).params
    for iv in DATA["intervals"]:
        if iv["params"] != params_name:
            continue
        funds = int(iv["funds_received"])
        assert str(params.outstanding_balance(funds, iv["sent"], iv["in_finalization"])) \
            == iv["outstanding_balance"], iv
        assert params.next_interval(funds) == iv["next_interval"], iv
        if params.payment_interval or params.payment_interval_increase:
            assert params.interval_lower_bound(iv["sent"]) == iv["interval_lower_bound"], iv


def _go_lower_bound(p: Params, current: int) -> int:
    """Go's IntervalLowerBound, loop for loop."""
    size, lower, target = p.payment_interval, 0, 0
    while target <= current:
        lower = target
        target += size
        size += p.payment_interval_increase
    return lower


def _go_next_interval(p: Params, current: int) -> int:
    """Go's nextInterval, loop for loop."""
    size, nxt = p.payment_interval, 0
    while nxt <= current:
        nxt += size
        size += p.payment_interval_increase
    return nxt


@given(interval=st.integers(0, 1 << 20), increase=st.integers(0, 1 << 20),
       sent=st.integers(0, 1 << 26), price=st.integers(1, 1000), unseal=st.integers(0, 10**6))
def test_closed_form_arithmetic_matches_gos_loops(interval: int, increase: int, sent: int,
                                                  price: int, unseal: int) -> None:
    assume(interval + increase > 0 and sent // max(interval, 1) < 5000)
    p = Params(price_per_byte=price, payment_interval=interval,
               payment_interval_increase=increase, unseal_price=unseal)
    assert p.interval_lower_bound(sent) == _go_lower_bound(p, sent)
    funds = unseal + sent * price
    assert p.next_interval(funds) == _go_next_interval(p, sent)


def test_zero_interval_and_increase_is_an_error_not_a_hang() -> None:
    """Go's loops never end here; a validator must refuse such a proposal."""
    p = Params(price_per_byte=1)
    with pytest.raises(RetrievalTypeError, match="both zero"):
        p.outstanding_balance(0, 10, False)
    assert Params().next_interval(0) == 0  # free: nothing to compute
    assert Params(price_per_byte=1).outstanding_balance(5, 10, True) == 5  # finalizing: every byte


# -- big ints ---------------------------------------------------------------------------------


@given(st.integers(-(1 << 300), 1 << 300))
def test_big_int_bytes_round_trip(value: int) -> None:
    data = encode_big_int(value)
    assert decode_big_int(data) == value
    assert (data == b"") == (value == 0)


@given(st.binary(max_size=40))
def test_any_bytes_decode_canonically_or_raise_typed(data: bytes) -> None:
    try:
        value = decode_big_int(data)
    except RetrievalTypeError:
        return
    assert encode_big_int(value) == data


# -- round trips of our own values --------------------------------------------------------------

u64 = st.integers(0, UINT64_MAX)
i64 = st.integers(-(1 << 63), (1 << 63) - 1)
amounts = st.one_of(st.just(0), st.integers(0, 1 << 20), st.integers(0, 1 << 256))
cids = st.builds(lambda data, codec: CID.of(data, codec=codec), st.binary(max_size=8),
                 st.sampled_from([0x55, 0x70, 0x71]))
ipld_leaves = st.one_of(st.none(), st.booleans(), st.integers(-(1 << 63), UINT64_MAX),
                        st.text(max_size=8), st.binary(max_size=8), cids)
ipld_nodes = st.recursive(ipld_leaves, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=8)
selectors = st.one_of(st.none(), st.just({"R": {"l": {"none": {}}, ":>": {"a": {">": {"@": {}}}}}}),
                      st.dictionaries(st.text(max_size=4), ipld_nodes, min_size=1, max_size=3))
addresses = st.one_of(
    st.just(Address()),
    st.integers(0, (1 << 63) - 1).map(Address.new_id),
    st.tuples(st.sampled_from([1, 2]), st.binary(min_size=20, max_size=20)).map(
        lambda t: Address(bytes([t[0]]) + t[1])),
    st.binary(min_size=48, max_size=48).map(lambda b: Address(b"\x03" + b)),
    st.tuples(st.integers(0, 1 << 20), st.binary(max_size=54)).map(
        lambda t: Address(b"\x04" + encode_uvarint(t[0]) + t[1])),
)
params_st = st.builds(Params, selector=selectors, piece_cid=st.one_of(st.none(), cids),
                      price_per_byte=amounts, payment_interval=u64,
                      payment_interval_increase=u64, unseal_price=amounts)
proposals = st.builds(DealProposal, payload_cid=cids, deal_id=u64, params=params_st)
responses = st.builds(DealResponse, status=st.sampled_from(list(DealStatus)), deal_id=u64,
                      payment_owed=amounts, message=st.text(max_size=20))
signatures = st.one_of(st.none(), st.builds(Signature, type=st.sampled_from(list(SigType)),
                                            data=st.binary(max_size=199)))
vouchers = st.builds(
    SignedVoucher, channel_addr=addresses, amount=amounts, lane=u64, nonce=u64,
    time_lock_min=i64, time_lock_max=i64, secret_hash=st.binary(max_size=32),
    extra=st.one_of(st.none(), st.builds(ModVerifyParams, actor=addresses, method=u64,
                                         data=st.binary(max_size=8))),
    min_settle_height=i64, merges=st.lists(st.builds(Merge, lane=u64, nonce=u64), max_size=3),
    signature=signatures)
payments = st.builds(DealPayment, deal_id=u64, payment_channel=addresses,
                     payment_voucher=st.one_of(st.none(), vouchers))


@given(st.one_of(proposals, responses, payments))
def test_values_round_trip_through_dag_cbor(value: Any) -> None:
    data = value.to_bytes()
    back = type(value).from_bytes(data)
    assert back == value
    assert back.to_bytes() == data


@given(st.one_of(proposals, responses, payments), st.data())
def test_edited_nodes_decode_or_raise_the_typed_error(value: Any, data: st.DataObject) -> None:
    """Replace or drop one field anywhere in a valid node: the result is a
    value or a RetrievalTypeError, never another exception from deeper in."""
    node = value.to_node()
    paths = list(_paths(node))
    path = data.draw(st.sampled_from(paths))
    replacement = data.draw(st.one_of(st.just(_DROP), ipld_nodes))
    edited = _edit(node, path, replacement)
    try:
        type(value).from_node(edited)
    except RetrievalTypeError as exc:
        assert str(exc) and "\n" not in str(exc)


_DROP = object()


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Any:
    if isinstance(node, dict):
        for k, v in node.items():
            yield prefix + (k,)
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield prefix + (i,)
            yield from _paths(v, prefix + (i,))


def _edit(node: Any, path: tuple[Any, ...], replacement: Any) -> Any:
    if not path:
        return replacement
    head, rest = path[0], path[1:]
    if isinstance(node, dict):
        out = dict(node)
        if not rest and replacement is _DROP:
            del out[head]
        else:
            out[head] = _edit(node[head], rest, replacement)
        return out
    out_list = list(node)
    if not rest and replacement is _DROP:
        del out_list[head]
    else:
        out_list[head] = _edit(node[head], rest, replacement)
    return out_list


# -- constructors, the registry and the messages ---------------------------------------------------


@pytest.mark.parametrize("build, field", [
    (lambda: Params(price_per_byte=-1), "Params.PricePerByte"),
    (lambda: Params(payment_interval=1 << 64), "Params.PaymentInterval"),
    (lambda: Params(piece_cid="bafy"), "Params.PieceCID"),
    (lambda: DealProposal(payload_cid="bafy", deal_id=1), "DealProposal.PayloadCID"),
    (lambda: DealProposal(payload_cid=CID.of(b"x"), deal_id=-1), "DealProposal.ID"),
    (lambda: DealResponse(status=99, deal_id=1), "DealResponse.Status"),
    (lambda: DealResponse(status=DealStatus.ACCEPTED, deal_id=True), "DealResponse.ID"),
    (lambda: DealPayment(deal_id=1, payment_channel=b"\x00\x01"), "DealPayment.PaymentChannel"),
    (lambda: Address(b"\x01\x02"), "Address"),
    (lambda: Signature(SigType.BLS, b"x" * 200), "Signature"),
    (lambda: SignedVoucher(Address(), amount=-5), "SignedVoucher.Amount"),
])
def test_constructors_refuse_what_could_not_be_encoded(build: Any, field: str) -> None:
    with pytest.raises(RetrievalTypeError, match=f"^{field}"):
        build()


def test_types_register_and_travel_in_data_transfer_messages() -> None:
    proposal = _decode(VECTORS["paid-small"])
    response = DealResponse(DealStatus.FUNDS_NEEDED, proposal.deal_id, payment_owed=2 * (1 << 20))
    registry = Registry()
    registry.register_voucher_type(DealProposal, _Validator())
    registry.register_voucher_type(DealPayment, _Validator())
    registry.register_voucher_result_type(DealResponse)
    request = new_request(7, base_cid=proposal.payload_cid, selector=proposal.params.selector,
                          voucher_type=DealProposal.type_id, voucher=proposal.to_node(), pull=True)
    got = decode_message(encode_message(request))
    assert got.voucher_type == "RetrievalDealProposal/1"
    assert registry.decode_voucher(got.voucher_type, got.voucher) == proposal
    reply = voucher_result_response(7, accepted=True, paused=True,
                                    voucher_result_type=DealResponse.type_id,
                                    voucher_result=response.to_node())
    got = decode_message(encode_message(reply))
    assert registry.decode_voucher_result(got.voucher_result_type, got.voucher_result) == response
    payment = _decode(VECTORS["payment-secp-voucher"])
    assert registry.decode_voucher(DEAL_PAYMENT_TYPE, payment.to_node()) == payment


def test_address_text_form() -> None:
    assert str(Address.new_id(1000)) == "f01000"
    assert Address().is_undef and str(Address()) == "<empty>"
    secp = VECTORS["payment-secp-voucher"]["go"]["PaymentChannel"]
    assert Address(bytes.fromhex(secp["bytes"])).to_string("t") == secp["string"]


# -- the fixture is the generator's output ----------------------------------------------------------


@pytest.mark.timeout(900)
def test_vectors_are_what_the_generator_writes() -> None:
    """Go's encoders regenerate the committed file exactly (built once into
    .interop-build like the interop gonode; modules pinned by go.sum)."""
    go = shutil.which("go")
    if go is None:
        msg = "GO NOT ON PATH: the retrieval vectors were not regenerated to compare"
        if os.environ.get("INTEROP_REQUIRE_GO"):
            pytest.fail(msg)
        pytest.skip(msg)
    build_dir = REPO / ".interop-build"
    build_dir.mkdir(exist_ok=True)
    target = build_dir / "retrievalvectors"
    tmp = build_dir / f"retrievalvectors.{os.getpid()}.tmp"
    env = dict(os.environ, GOTOOLCHAIN="local", GOFLAGS="-mod=readonly")
    proc = subprocess.run([go, "build", "-o", str(tmp), "."], cwd=GENERATOR, env=env,
                          capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        pytest.fail(f"go build of {GENERATOR} failed (rc={proc.returncode}):\n"
                    f"{proc.stdout}\n{proc.stderr}")
    os.replace(tmp, target)
    out = subprocess.run([str(target)], capture_output=True, timeout=300, check=True).stdout
    assert json.loads(out) == DATA
    assert out == VECTORS_FILE.read_bytes()
