"""DAG-CBOR encode/decode rates on data-transfer traffic.

For each value, our :mod:`datatransfer.ipld.dagcbor` beside the ``dag-cbor``
package doing the same job in the same run:

* a new pull request (retrieval-style voucher, the "all" selector), the
  message every transfer starts with;
* a voucher-result response;
* a mid-size IPLD value (a directory-like map of 100 entries with links,
  ints, floats, text and bytes: a typical dag-cbor block).

Then whole-message rates (``encode_message`` / ``decode_message``: codec plus
building and validating the message objects), with the bare codec on the
same message as the baseline.
"""

from __future__ import annotations

from typing import Any

import dag_cbor
from multiformats import CID as RefCID

from benchmarks._report import Reporter, rate
from datatransfer.ipld import dagcbor
from datatransfer.ipld.cid import CID, DAG_CBOR, RAW
from datatransfer.messages import (
    decode_message,
    encode_message,
    new_request,
    to_node,
    voucher_result_response,
)

ALL_SELECTOR = {"R": {"l": {"none": {}}, ":>": {"a": {">": {"@": {}}}}}}


def _messages() -> tuple[Any, Any]:
    base = CID.of(b"bench payload root", codec=DAG_CBOR)
    request = new_request(
        1_700_000_000_123_456_789,
        base_cid=base,
        selector=ALL_SELECTOR,
        voucher_type="RetrievalDealProposal/1",
        voucher={
            "PayloadCID": base,
            "ID": 42,
            "Params": {
                "Selector": ALL_SELECTOR,
                "PieceCID": None,
                "PricePerByte": b"\x00\x01\x86\xa0",
                "PaymentInterval": 1 << 20,
                "PaymentIntervalIncrease": 1 << 20,
                "UnsealPrice": b"",
            },
        },
        pull=True,
    )
    response = voucher_result_response(
        1_700_000_000_123_456_789,
        accepted=True,
        paused=True,
        voucher_result_type="RetrievalDealResponse/1",
        voucher_result={"ID": 42, "Status": 6, "Message": "", "PaymentOwed": b"\x01\x00\x00"},
    )
    return request, response


def _mid_value() -> dict[str, Any]:
    entries = [
        {
            "Name": f"file-{i:04d}.bin",
            "Size": 262_144 * (i + 1),
            "Hash": CID.of(i.to_bytes(4, "big"), codec=RAW),
            "Ratio": i / 7,
            "Tags": ["data", "bench", f"t{i % 5}"],
            "Meta": b"\x00" * 16,
        }
        for i in range(100)
    ]
    return {"Entries": entries, "Version": 1, "Note": "a typical dag-cbor block"}


def _to_reference(value: Any) -> Any:
    if isinstance(value, CID):
        return RefCID.decode(value.buffer)
    if isinstance(value, list):
        return [_to_reference(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_reference(v) for k, v in value.items()}
    return value


def _pair(report: Reporter, label: str, value: Any, seconds: float, batch: int) -> None:
    data = dagcbor.encode(value)
    ref_value = _to_reference(value)
    assert dag_cbor.encode(ref_value) == data, f"{label}: the reference disagrees"

    def enc() -> int:
        for _ in range(batch):
            dagcbor.encode(value)
        return batch

    def ref_enc() -> int:
        for _ in range(batch):
            dag_cbor.encode(ref_value)
        return batch

    def dec() -> int:
        for _ in range(batch):
            dagcbor.decode(data)
        return batch

    def ref_dec() -> int:
        for _ in range(batch):
            dag_cbor.decode(data)
        return batch

    size = f"{label} ({len(data)} B)"
    report.line(f"encode {size}", rate(enc, seconds), "values/s",
                "dag-cbor pkg", rate(ref_enc, seconds))
    report.line(f"decode {size}", rate(dec, seconds), "values/s",
                "dag-cbor pkg", rate(ref_dec, seconds))


def run(report: Reporter, quick: bool) -> None:
    seconds = 0.2 if quick else 1.0
    request, response = _messages()
    _pair(report, "new pull request", to_node(request), seconds, 20)
    _pair(report, "voucher-result response", to_node(response), seconds, 20)
    _pair(report, "mid-size IPLD value", _mid_value(), seconds, 1)

    for label, msg in (("new pull request", request), ("response", response)):
        node = to_node(msg)
        data = encode_message(msg)
        assert decode_message(data) == msg

        def menc(msg=msg) -> int:
            for _ in range(20):
                encode_message(msg)
            return 20

        def cenc(node=node) -> int:
            for _ in range(20):
                dagcbor.encode(node)
            return 20

        def mdec(data=data) -> int:
            for _ in range(20):
                decode_message(data)
            return 20

        def cdec(data=data) -> int:
            for _ in range(20):
                dagcbor.decode(data)
            return 20

        report.line(f"encode_message {label}", rate(menc, seconds), "msgs/s",
                    "dagcbor.encode alone", rate(cenc, seconds))
        report.line(f"decode_message {label}", rate(mdec, seconds), "msgs/s",
                    "dagcbor.decode alone", rate(cdec, seconds))
