"""Graphsync 2.0.0 wire format: values, DAG-CBOR encoding, frames, batching.

The ``GO_VECTORS`` below were produced by go-graphsync v0.17.0 itself: a
throwaway Go program (kept outside this repository) built each message with
``message.NewBuilder()`` and wrote it with the v2 ``MessageHandler.ToNet``
(length-prefixed DAG-CBOR), printing hex. The data-transfer extension values
in them are the nodes of ``DT_REQUEST``/``DT_RESPONSE`` below; the selector is
go-ipld-prime's ``CommonSelector_ExploreAllRecursively``. The same program's
decoder (``FromMsgReader``) was run over the malformed inputs of this file to
confirm which ones Go rejects; where Go is more lenient, the test says so.
"""

from __future__ import annotations

import anyio
import pytest
from _support import mutate_pieces
from anyio.streams.buffered import BufferedByteReceiveStream
from hypothesis import given
from hypothesis import strategies as st

from datatransfer.ipld import dagcbor
from datatransfer.ipld.block import Block
from datatransfer.ipld.cid import CID, DAG_CBOR, DAG_PB, RAW
from datatransfer.ipld.selector import ALL_SELECTOR_NODE
from datatransfer.ipld.varint import encode_uvarint
from datatransfer.messages import complete_response, from_node, new_request, to_node
from transport.graphsync import (
    EXTENSION_DATA_TRANSFER,
    EXTENSION_DEDUP_BY_KEY,
    EXTENSION_DO_NOT_SEND_CIDS,
    EXTENSION_DO_NOT_SEND_FIRST_BLOCKS,
    EXTENSION_INCOMING_REQUEST,
    EXTENSION_OUTGOING_BLOCK,
    MAX_BLOCK_BYTES,
    MAX_FRAME,
    FrameDecoder,
    GraphsyncMessage,
    GraphsyncRequest,
    GraphsyncResponse,
    GraphsyncWireError,
    LinkAction,
    LinkMetadatum,
    RawBlock,
    RequestType,
    ResponseStatus,
    block_from_wire,
    block_to_wire,
    decode_dedup_key,
    decode_do_not_send_cids,
    decode_do_not_send_first_blocks,
    decode_message,
    encode_dedup_key,
    encode_do_not_send_cids,
    encode_do_not_send_first_blocks,
    encode_frame,
    encode_message,
    frame,
    new_request_id,
    read_frame,
    read_message,
    split_frames,
)
from transport.graphsync.framing import encode_frame_pieces, split_frame_pieces

GO_VECTORS = {
    "empty": "06a163677332a0",
    "req_new_plain": (
        "73a163677332a16372657181a462696450000102030405060708090a0b0c0d0e0f6373656ca16152a261"
        "6ca1646e6f6e65a0623a3ea16161a1613ea16140a064726f6f74d82a582500015512202cf24dba5fb0a3"
        "0e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b98246474797065616e"
    ),
    "req_new_ext": (
        "cd03a163677332a16372657181a662696450101112131415161718191a1b1c1d1e1f63657874a4756669"
        "6c2f646174612d7472616e736665722f312e31a36449735271f56752657175657374aa6442436964d82a"
        "582500015512202cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824645061"
        "7274f46450617573f46450756c6cf56453746f72a16152a2616ca1646e6f6e65a0623a3ea16161a1613e"
        "a16140a064547970650064565479706c4261736963566f756368657265566f7563686268696658666572"
        "4944076e526573746172744368616e6e656c8360600068526573706f6e7365f676677261706873796e63"
        "2f64656475702d62792d6b6579626b31781a677261706873796e632f646f2d6e6f742d73656e642d6369"
        "647381d82a582500015512202cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b"
        "98247822677261706873796e632f646f2d6e6f742d73656e642d66697273742d626c6f636b7303637072"
        "69076373656ca16152a2616ca1646e6f6e65a0623a3ea16161a1613ea16140a064726f6f74d82a582500"
        "015512202cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824647479706561"
        "6e"
    ),
    "req_new_negpri_nullext": (
        "8601a163677332a16372657181a662696450202122232425262728292a2b2c2d2e2f63657874a1676e75"
        "6c6c657874f663707269246373656ca16152a2616ca1646e6f6e65a0623a3ea16161a1613ea16140a064"
        "726f6f74d82a582500015512202cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e7304336293"
        "8b98246474797065616e"
    ),
    "req_cancel": "27a163677332a16372657181a262696450303132333435363738393a3b3c3d3e3f64747970656163",
    "req_update_noext": "27a163677332a16372657181a262696450404142434445464748494a4b4c4d4e4f64747970656175",
    "req_update_ext": (
        "8201a163677332a16372657181a362696450505152535455565758595a5b5c5d5e5f63657874a1756669"
        "6c2f646174612d7472616e736665722f312e31a36449735271f46752657175657374f668526573706f6e"
        "7365a66441637074f56450617573f46454797065036456526573f6645654797060665866657249440764"
        "747970656175"
    ),
    "rsp_status_10": "29a163677332a16372737081a264737461740a65726571696450606162636465666768696a6b6c6d6e6f",
    "rsp_status_11": "29a163677332a16372737081a264737461740b65726571696450606162636465666768696a6b6c6d6e6f",
    "rsp_status_12": "29a163677332a16372737081a264737461740c65726571696450606162636465666768696a6b6c6d6e6f",
    "rsp_status_13": "29a163677332a16372737081a264737461740d65726571696450606162636465666768696a6b6c6d6e6f",
    "rsp_status_14": "29a163677332a16372737081a264737461740e65726571696450606162636465666768696a6b6c6d6e6f",
    "rsp_status_15": "29a163677332a16372737081a264737461740f65726571696450606162636465666768696a6b6c6d6e6f",
    "rsp_status_20": "29a163677332a16372737081a264737461741465726571696450606162636465666768696a6b6c6d6e6f",
    "rsp_status_21": "29a163677332a16372737081a264737461741565726571696450606162636465666768696a6b6c6d6e6f",
    "rsp_status_30": (
        "2aa163677332a16372737081a26473746174181e65726571696450606162636465666768696a6b6c6d6e6f"
    ),
    "rsp_status_31": (
        "2aa163677332a16372737081a26473746174181f65726571696450606162636465666768696a6b6c6d6e6f"
    ),
    "rsp_status_32": (
        "2aa163677332a16372737081a26473746174182065726571696450606162636465666768696a6b6c6d6e6f"
    ),
    "rsp_status_33": (
        "2aa163677332a16372737081a26473746174182165726571696450606162636465666768696a6b6c6d6e6f"
    ),
    "rsp_status_34": (
        "2aa163677332a16372737081a26473746174182265726571696450606162636465666768696a6b6c6d6e6f"
    ),
    "rsp_status_35": (
        "2aa163677332a16372737081a26473746174182365726571696450606162636465666768696a6b6c6d6e6f"
    ),
    "rsp_partial_meta_block_ext": (
        "c902a163677332a263626c6b818244015512204568656c6c6f6372737081a463657874a17566696c2f64"
        "6174612d7472616e736665722f312e31a36449735271f46752657175657374f668526573706f6e7365a6"
        "6441637074f56450617573f46454797065036456526573f66456547970606658666572494407646d6574"
        "618482d82a582500015512202cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b"
        "9824617082d82a58250001711220ea1b28eae6bb63207c17cc54cf7e77b4c5990ae5f32e35aa910b904b"
        "9f41d263616482d82a582300122059948439065f29619ef41280cbb932be52c56d99c5966b65e0111239"
        "f098bbef616d82d82a582500015512202cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e7304"
        "3362938b9824617364737461740e65726571696450707172737475767778797a7b7c7d7e7f"
    ),
    "rsp_full_cbor_block": (
        "6ba163677332a263626c6b8182440171122044a16161f56372737081a3646d6574618182d82a58250001"
        "711220ea1b28eae6bb63207c17cc54cf7e77b4c5990ae5f32e35aa910b904b9f41d26361706473746174"
        "1465726571696450808182838485868788898a8b8c8d8e8f"
    ),
    "rsp_v0_block": (
        "69a163677332a263626c6b81824400701220440a0208016372737081a3646d6574618182d82a58230012"
        "2059948439065f29619ef41280cbb932be52c56d99c5966b65e0111239f098bbef617064737461740e65"
        "726571696450909192939495969798999a9b9c9d9e9f"
    ),
    "mixed": (
        "ab01a163677332a363626c6b818244015512204568656c6c6f6372657181a562696450a0a1a2a3a4a5a6"
        "a7a8a9aaabacadaeaf63707269016373656ca16152a2616ca1646e6f6e65a0623a3ea16161a1613ea161"
        "40a064726f6f74d82a582300122059948439065f29619ef41280cbb932be52c56d99c5966b65e0111239"
        "f098bbef6474797065616e6372737081a26473746174182265726571696450b0b1b2b3b4b5b6b7b8b9ba"
        "bbbcbdbebf"
    ),
    "blocks_only": "17a163677332a163626c6b818244015512204568656c6c6f",
}


def rid(first: int) -> bytes:
    """The request ids of the Go program: 16 consecutive bytes from ``first``."""
    return bytes((first + i) & 0xFF for i in range(16))


HELLO = Block.of(b"hello", codec=RAW)
CBOR_BLOCK = Block.of(bytes.fromhex("a16161f5"), codec=DAG_CBOR)  # {"a": true}
PB_BLOCK = Block.of(bytes([0x0A, 0x02, 0x08, 0x01]), codec=DAG_PB, version=0)
ROOT = HELLO.cid
SEL = ALL_SELECTOR_NODE
DT_REQUEST = new_request(
    7, base_cid=ROOT, selector=SEL, voucher_type="BasicVoucher", voucher="hi", pull=True
)
DT_RESPONSE = complete_response(7, accepted=True)

M, Rq, Rs = GraphsyncMessage, GraphsyncRequest, GraphsyncResponse


def expected_messages() -> dict[str, GraphsyncMessage]:
    """The values the Go program encoded, built with this package."""
    out = {
        "empty": M(),
        "req_new_plain": M([Rq.new(ROOT, SEL, id=rid(0))]),
        "req_new_ext": M(
            [
                Rq.new(
                    ROOT,
                    SEL,
                    id=rid(16),
                    priority=7,
                    extensions={
                        EXTENSION_DATA_TRANSFER: to_node(DT_REQUEST),
                        EXTENSION_DO_NOT_SEND_CIDS: encode_do_not_send_cids([ROOT]),
                        EXTENSION_DO_NOT_SEND_FIRST_BLOCKS: encode_do_not_send_first_blocks(3),
                        EXTENSION_DEDUP_BY_KEY: encode_dedup_key("k1"),
                    },
                )
            ]
        ),
        "req_new_negpri_nullext": M(
            [Rq.new(ROOT, SEL, id=rid(32), priority=-5, extensions={"nullext": None})]
        ),
        "req_cancel": M([Rq.cancel(rid(48))]),
        "req_update_noext": M([Rq.update(rid(64))]),
        "req_update_ext": M([Rq.update(rid(80), {EXTENSION_DATA_TRANSFER: to_node(DT_RESPONSE)})]),
        "rsp_partial_meta_block_ext": M(
            responses=[
                Rs(
                    rid(112),
                    ResponseStatus.PARTIAL_RESPONSE,
                    [
                        (HELLO.cid, LinkAction.PRESENT),
                        (CBOR_BLOCK.cid, LinkAction.DUPLICATE_NOT_SENT),
                        (PB_BLOCK.cid, LinkAction.MISSING),
                        (ROOT, LinkAction.DUPLICATE_DAG_SKIPPED),
                    ],
                    {EXTENSION_DATA_TRANSFER: to_node(DT_RESPONSE)},
                )
            ],
            blocks=[HELLO],
        ),
        "rsp_full_cbor_block": M(
            responses=[Rs(rid(128), ResponseStatus.COMPLETED_FULL, [(CBOR_BLOCK.cid, "p")])],
            blocks=[CBOR_BLOCK],
        ),
        "rsp_v0_block": M(
            responses=[Rs(rid(144), ResponseStatus.PARTIAL_RESPONSE, [(PB_BLOCK.cid, "p")])],
            blocks=[PB_BLOCK],
        ),
        "mixed": M(
            [Rq.new(PB_BLOCK.cid, SEL, id=rid(160), priority=1)],
            [Rs(rid(176), ResponseStatus.CONTENT_NOT_FOUND)],
            [HELLO],
        ),
        "blocks_only": M(blocks=[HELLO]),
    }
    for status in ResponseStatus:
        out[f"rsp_status_{int(status)}"] = M(responses=[Rs(rid(96), status)])
    return out


EXPECTED = expected_messages()


def test_every_vector_has_an_expected_message():
    assert EXPECTED.keys() == GO_VECTORS.keys()


@pytest.mark.parametrize("name", sorted(GO_VECTORS))
def test_encoder_is_byte_identical_to_go(name):
    assert encode_frame(EXPECTED[name]).hex() == GO_VECTORS[name]


@pytest.mark.parametrize("name", sorted(GO_VECTORS))
def test_decoder_reads_go_vectors(name):
    (payload,) = split_frames(bytes.fromhex(GO_VECTORS[name]))
    msg = decode_message(payload)
    assert msg == EXPECTED[name]
    assert all(isinstance(b, Block) for b in msg.blocks)
    assert encode_message(msg) == payload


def test_data_transfer_extension_survives_the_trip():
    (payload,) = split_frames(bytes.fromhex(GO_VECTORS["req_new_ext"]))
    (req,) = decode_message(payload).requests
    assert from_node(req.extensions[EXTENSION_DATA_TRANSFER]) == DT_REQUEST
    assert decode_do_not_send_cids(req.extensions[EXTENSION_DO_NOT_SEND_CIDS]) == {ROOT}
    assert decode_do_not_send_first_blocks(req.extensions[EXTENSION_DO_NOT_SEND_FIRST_BLOCKS]) == 3
    assert decode_dedup_key(req.extensions[EXTENSION_DEDUP_BY_KEY]) == "k1"
    (payload,) = split_frames(bytes.fromhex(GO_VECTORS["rsp_partial_meta_block_ext"]))
    (rsp,) = decode_message(payload).responses
    assert from_node(rsp.extensions[EXTENSION_DATA_TRANSFER]) == DT_RESPONSE


# -- layout facts (as go-graphsync's v2 encoder writes them) --------------------------------


def node_of(msg: GraphsyncMessage):
    return dagcbor.decode(encode_message(msg))


def test_empty_message_is_an_empty_gs2_map():
    assert encode_message(M()) == bytes.fromhex("a163677332a0")
    assert M().empty and not M(blocks=[HELLO]).empty


def test_request_fields_and_omissions():
    assert node_of(M([Rq.new(ROOT, SEL, id=rid(0))]))["gs2"]["req"] == [
        {"id": rid(0), "type": "n", "root": ROOT, "sel": SEL}
    ]
    full = Rq.new(ROOT, SEL, id=rid(0), priority=9, extensions={"x": 1})
    assert node_of(M([full]))["gs2"]["req"][0] == {
        "id": rid(0),
        "type": "n",
        "pri": 9,
        "root": ROOT,
        "sel": SEL,
        "ext": {"x": 1},
    }
    assert node_of(M([Rq.cancel(rid(0))]))["gs2"]["req"][0] == {"id": rid(0), "type": "c"}
    assert node_of(M([Rq.update(rid(0))]))["gs2"]["req"][0] == {"id": rid(0), "type": "u"}
    assert node_of(M([Rq.update(rid(0), {"y": None})]))["gs2"]["req"][0] == {
        "id": rid(0),
        "type": "u",
        "ext": {"y": None},
    }


def test_response_fields_and_omissions():
    plain = Rs(rid(0), ResponseStatus.COMPLETED_FULL)
    assert node_of(M(responses=[plain]))["gs2"] == {"rsp": [{"reqid": rid(0), "stat": 20}]}
    rich = Rs(rid(0), 14, [(ROOT, "s")], {"e": [1]})
    assert node_of(M(responses=[rich]))["gs2"]["rsp"][0] == {
        "reqid": rid(0),
        "stat": 14,
        "meta": [[ROOT, "s"]],
        "ext": {"e": [1]},
    }


def test_block_layout_is_prefix_then_data():
    for block in (HELLO, CBOR_BLOCK, PB_BLOCK):
        assert node_of(M(blocks=[block]))["gs2"] == {"blk": [[block.cid.prefix, block.data]]}
    assert PB_BLOCK.cid.prefix == bytes.fromhex("00701220")
    assert HELLO.cid.prefix == bytes.fromhex("01551220")


def test_raw_blocks_encode_like_blocks():
    raw = block_to_wire(HELLO)
    assert raw == RawBlock(bytes.fromhex("01551220"), b"hello")
    assert encode_message(M(blocks=[raw])) == encode_message(M(blocks=[HELLO]))
    assert encode_message(M(blocks=[(raw.prefix, raw.data)])) == encode_message(M(blocks=[HELLO]))


def test_protocol_constants():
    from transport.graphsync import PROTOCOL_ID

    assert PROTOCOL_ID == "/ipfs/graphsync/2.0.0"
    assert MAX_FRAME == 4 * 1024 * 1024
    assert MAX_BLOCK_BYTES == 512 * 1024
    assert EXTENSION_DO_NOT_SEND_CIDS == "graphsync/do-not-send-cids"
    assert EXTENSION_DO_NOT_SEND_FIRST_BLOCKS == "graphsync/do-not-send-first-blocks"
    assert EXTENSION_DEDUP_BY_KEY == "graphsync/dedup-by-key"
    assert EXTENSION_DATA_TRANSFER == "fil/data-transfer/1.1"
    assert EXTENSION_INCOMING_REQUEST == "fil/data-transfer/incoming-request/1.1"
    assert EXTENSION_OUTGOING_BLOCK == "fil/data-transfer/outgoing-block/1.1"


# -- enumerations ---------------------------------------------------------------------------


def test_status_codes_and_classes_match_go():
    assert {s.value for s in ResponseStatus} == {
        10,
        11,
        12,
        13,
        14,
        15,
        20,
        21,
        30,
        31,
        32,
        33,
        34,
        35,
    }
    success = {s for s in ResponseStatus if s.is_success}
    failure = {s for s in ResponseStatus if s.is_failure}
    terminal = {s for s in ResponseStatus if s.is_terminal}
    assert success == {ResponseStatus.COMPLETED_FULL, ResponseStatus.COMPLETED_PARTIAL}
    assert failure == {s for s in ResponseStatus if s >= 30}
    assert terminal == success | failure
    assert not any(s.is_terminal for s in ResponseStatus if s < 20)
    assert ResponseStatus.CONTENT_NOT_FOUND.go_name == "RequestFailedContentNotFound"
    assert ResponseStatus.PAUSED.go_name == "RequestPaused"


def test_request_types_and_link_actions():
    assert [t.value for t in RequestType] == ["n", "c", "u"]
    assert [a.value for a in LinkAction] == ["p", "d", "m", "s"]
    assert {a for a in LinkAction if a.did_follow_link} == {
        LinkAction.PRESENT,
        LinkAction.DUPLICATE_NOT_SENT,
    }


# -- round trips -----------------------------------------------------------------------------


@pytest.mark.parametrize("status", list(ResponseStatus))
def test_round_trip_every_status(status):
    msg = M(responses=[Rs(new_request_id(), status, [(ROOT, "p")], {"k": "v"})], blocks=[HELLO])
    assert decode_message(encode_message(msg)) == msg


@pytest.mark.parametrize(
    "gs_request",
    [
        Rq.new(ROOT, SEL),
        Rq.new(
            ROOT, SEL, priority=-(2**31), extensions={EXTENSION_DATA_TRANSFER: to_node(DT_REQUEST)}
        ),
        Rq.new(ROOT, SEL, priority=2**31 - 1),
        Rq(new_request_id()),  # a new request without root or selector: Go accepts it too
        Rq.cancel(new_request_id()),
        Rq.update(new_request_id()),
        Rq.update(new_request_id(), {EXTENSION_DATA_TRANSFER: to_node(DT_RESPONSE), "n": None}),
    ],
    ids=lambda r: r.type.name,
)
def test_round_trip_every_request_type(gs_request):
    msg = M([gs_request])
    assert decode_message(encode_message(msg)) == msg
    assert split_frames(encode_frame(msg)) == [encode_message(msg)]


texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=10)
links = st.builds(
    lambda d, c: CID.of(d, codec=c), st.binary(max_size=8), st.sampled_from([RAW, DAG_CBOR])
)
ipld = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**64), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts
    | st.binary(max_size=16)
    | links,
    lambda c: st.lists(c, max_size=4) | st.dictionaries(texts, c, max_size=4),
    max_leaves=10,
)
request_ids = st.binary(min_size=16, max_size=16)
extensions = st.dictionaries(texts, ipld, max_size=3)
gs_requests = st.one_of(
    st.builds(
        GraphsyncRequest,
        id=request_ids,
        type=st.just(RequestType.NEW),
        priority=st.integers(-(2**31), 2**31 - 1),
        root=st.none() | links,
        selector=st.none() | ipld,
        extensions=extensions,
    ),
    st.builds(GraphsyncRequest.cancel, request_ids),
    st.builds(GraphsyncRequest.update, request_ids, extensions),
)
gs_responses = st.builds(
    GraphsyncResponse,
    request_id=request_ids,
    status=st.sampled_from(list(ResponseStatus)),
    metadata=st.lists(st.tuples(links, st.sampled_from(list(LinkAction))), max_size=4),
    extensions=extensions,
)
gs_blocks = st.builds(
    lambda data, kind: (
        Block.of(data, codec=DAG_PB, version=0) if kind == "v0" else Block.of(data, codec=kind)
    ),
    st.binary(max_size=64),
    st.sampled_from(["v0", RAW, DAG_CBOR, DAG_PB]),
)
gs_messages = st.builds(
    GraphsyncMessage,
    st.lists(gs_requests, max_size=3),
    st.lists(gs_responses, max_size=3),
    st.lists(gs_blocks, max_size=3),
)


@given(gs_messages)
def test_round_trip_generated_messages(msg):
    data = encode_message(msg)
    assert decode_message(data) == msg
    unverified = decode_message(data, verify_blocks=False)
    assert all(isinstance(b, RawBlock) for b in unverified.blocks)
    assert unverified.verified_blocks() == list(msg.blocks)
    assert encode_message(unverified) == data
    assert split_frames(encode_frame(msg) * 2) == [data, data]


# -- frames and messages as pieces (the in-memory network's, without copies) -----------

big_blocks = st.builds(
    lambda n, b: Block.of(bytes([b]) * n, codec=RAW), st.integers(4096, 4200), st.integers(0, 255)
)
#: Messages that may carry blocks of 4 KiB and more (pieces of their own).
gs_messages_big = st.builds(
    lambda msg, big: GraphsyncMessage(msg.requests, msg.responses, msg.blocks + tuple(big)),
    gs_messages,
    st.lists(big_blocks, max_size=2),
)


def test_decode_message_from_pieces_takes_block_data_without_a_copy():
    blocks = tuple(Block.of(bytes([i]) * n, codec=RAW) for i, n in enumerate((600_000, 10, 5000)))
    meta = tuple(LinkMetadatum(b.cid, LinkAction.PRESENT) for b in blocks)
    msg = GraphsyncMessage(
        responses=(GraphsyncResponse(rid(1), ResponseStatus.PARTIAL_RESPONSE, meta),),
        blocks=blocks)
    [payload] = split_frame_pieces(encode_frame_pieces(msg))
    got = decode_message(payload)
    assert got == msg == decode_message(b"".join(payload))
    assert got.blocks[0].data is blocks[0].data and got.blocks[2].data is blocks[2].data
    with pytest.raises(GraphsyncWireError, match="empty message"):
        decode_message([b"", b""])


def _frames_verdict(fn, *args, **kwargs):
    try:
        return "frames", [b"".join(p) if isinstance(p, list) else p for p in fn(*args, **kwargs)]
    except GraphsyncWireError as exc:
        return "refused", str(exc)


@given(st.lists(gs_messages_big, max_size=3), st.data())
def test_split_frame_pieces_agrees_with_split_frames(msgs, data):
    """Whatever the pieces (one frame, several, re-cut, mutated): the
    payloads and refusals of split_frames on the joined bytes."""
    if len(msgs) == 1 and data.draw(st.booleans()):
        # one frame as the sender cut it: its payload's pieces, the large ones as they were
        whole = encode_frame_pieces(msgs[0])
        [payload] = split_frame_pieces(whole)
        assert b"".join(payload) == encode_message(msgs[0])
        assert all(any(p is q for q in payload) for p in whole[1:])
        assert decode_message(payload) == msgs[0]
    pieces = mutate_pieces([p for msg in msgs for p in encode_frame_pieces(msg)], data)
    max_size = data.draw(st.sampled_from([MAX_FRAME, 5000, 10]))
    assert _frames_verdict(split_frame_pieces, pieces, max_size=max_size) == _frames_verdict(
        split_frames, b"".join(pieces), max_size=max_size)


# -- what the decoder refuses ------------------------------------------------------------


def wire(gs2) -> bytes:
    return dagcbor.encode({"gs2": gs2})


def req(**fields):
    return {"id": rid(0), "type": "n", **fields}


def rsp(**fields):
    return {"reqid": rid(0), "stat": 20, **fields}


# Each of these is rejected by go-graphsync v0.17's decoder as well.
REJECTED_BY_GO = {
    "request type unknown": wire({"req": [req(type="r")]}),
    "request type as bytes": wire({"req": [req(type=b"n")]}),
    "request id of 15 bytes": wire({"req": [req(id=bytes(15))]}),
    "request id of 17 bytes": wire({"req": [req(id=bytes(17))]}),
    "request id as text": wire({"req": [req(id="x" * 16)]}),
    "request without type": wire({"req": [{"id": rid(0)}]}),
    "request without id": wire({"req": [{"type": "n"}]}),
    "request with unknown field": wire({"req": [req(foo=1)]}),
    "null priority": wire({"req": [req(pri=None)]}),
    "float priority": wire({"req": [req(pri=1.0)]}),
    "null root": wire({"req": [req(root=None)]}),
    "root as bytes": wire({"req": [req(root=b"abc")]}),
    "null selector": wire({"req": [req(sel=None)]}),
    "null extensions": wire({"req": [req(ext=None)]}),
    "extensions as list": wire({"req": [req(ext=[])]}),
    "null request list": wire({"req": None}),
    "status 99": wire({"rsp": [rsp(stat=99)]}),
    "status 0": wire({"rsp": [rsp(stat=0)]}),
    "status as text": wire({"rsp": [rsp(stat="20")]}),
    "null metadata": wire({"rsp": [rsp(meta=None)]}),
    "unknown link action": wire({"rsp": [rsp(meta=[[ROOT, "x"]])]}),
    "metadatum as map": wire({"rsp": [rsp(meta=[{"link": ROOT, "action": "p"}])]}),
    "metadatum of 3": wire({"rsp": [rsp(meta=[[ROOT, "p", 1]])]}),
    "response without status": wire({"rsp": [{"reqid": rid(0)}]}),
    "response id of 2 bytes": wire({"rsp": [rsp(reqid=b"ab")]}),
    "truncated block prefix": wire({"blk": [[b"\x01\x55", b"hello"]]}),
    "unknown hash function": wire({"blk": [[b"\x01\x55\xf0\x01\x20", b"hello"]]}),
    "CID version 2": wire({"blk": [[b"\x02\x55\x12\x20", b"hello"]]}),
    "block as map": wire({"blk": [{"prefix": HELLO.cid.prefix, "data": b"hello"}]}),
    "block of 3": wire({"blk": [[HELLO.cid.prefix, b"hello", b""]]}),
    "unknown message field": wire({"req": [req()], "foo": 1}),
    "two roots": dagcbor.encode({"gs2": {}, "gs3": {}}),
    "graphsync 1 root": dagcbor.encode({"gs1": {}}),
    "empty root": dagcbor.encode({}),
    "list root": dagcbor.encode([]),
    "null gs2": dagcbor.encode({"gs2": None}),
    "trailing byte": wire({}) + b"\x00",
    "empty payload": b"",
    "not cbor": b"\xff\xfe",
    "truncated cbor": wire({"req": [req()]})[:-3],
}

# Go's decoder takes these; this one refuses them (Go's encoder never writes them).
STRICTER_THAN_GO = {
    "priority above int32 (Go wraps it)": wire({"req": [req(pri=2**31)]}),
    "priority below int32 (Go wraps it)": wire({"req": [req(pri=-(2**31) - 1)]}),
    "'id' instead of 'reqid' (a bindnode quirk)": wire({"rsp": [{"id": rid(0), "stat": 20}]}),
    "prefix with trailing bytes": wire({"blk": [[HELLO.cid.prefix + b"\x00", b"hello"]]}),
    "prefix digest length 16 (Go truncates)": wire({"blk": [[b"\x01\x55\x12\x10", b"hello"]]}),
    "identity prefix with wrong length": wire({"blk": [[b"\x01\x55\x00\x04", b"hello"]]}),
    "CIDv0 prefix with raw codec": wire({"blk": [[b"\x00\x55\x12\x20", b"hello"]]}),
    "non-minimal integer": bytes.fromhex("a163677332a16372657181a3626964")
    + b"\x50"
    + rid(0)
    + bytes.fromhex("6370726918016474797065616e"),
    "indefinite-length map": bytes.fromhex("bf63677332a0ff"),
}


@pytest.mark.parametrize("data", list(REJECTED_BY_GO.values()), ids=list(REJECTED_BY_GO))
def test_decoder_refuses_what_go_refuses(data):
    with pytest.raises(GraphsyncWireError):
        decode_message(data)


@pytest.mark.parametrize("data", list(STRICTER_THAN_GO.values()), ids=list(STRICTER_THAN_GO))
def test_decoder_refuses_sloppy_input_go_tolerates(data):
    with pytest.raises(GraphsyncWireError):
        decode_message(data)


def test_decoder_normalises_like_go():
    # A cancel keeps only its id, an update only id and extensions.
    cancel = wire({"req": [req(type="c", root=ROOT, sel=SEL, pri=3, ext={"a": 1})]})
    assert decode_message(cancel) == M([Rq.cancel(rid(0))])
    update = wire({"req": [req(type="u", root=ROOT, sel=SEL, pri=3, ext={"a": 1})]})
    assert decode_message(update) == M([Rq.update(rid(0), {"a": 1})])
    # Empty maps and lists read as absent; an explicit zero priority as none.
    assert decode_message(wire({"req": [], "rsp": [], "blk": []})) == M()
    assert decode_message(wire({"req": [req(ext={}, pri=0)]})) == M([Rq(rid(0))])
    assert decode_message(wire({"rsp": [rsp(meta=[])]})) == M(responses=[Rs(rid(0), 20)])
    # Extension values may be null; the selector is not interpreted here.
    assert decode_message(wire({"rsp": [rsp(ext={"x": None})]})).responses[0].extensions == {
        "x": None
    }
    assert decode_message(wire({"req": [req(sel=5)]})).requests[0].selector == 5
    # Identity-hash blocks carry their data in the CID.
    (block,) = decode_message(wire({"blk": [[b"\x01\x55\x00\x05", b"hello"]]})).blocks
    assert block.cid == CID.of(b"hello", codec=RAW, hash_code=0)


def test_decoder_accepts_keys_in_any_order():
    # {"gs2": {"req": [{"type": "n", "id": ...}]}}: Go accepts struct order too.
    data = bytes.fromhex("a163677332a16372657181a26474797065616e626964") + b"\x50" + rid(0)
    assert decode_message(data) == M([Rq(rid(0))])


def test_decoder_keeps_repeated_entries():
    # Go keys requests by id and blocks by CID (last wins / kept once); the
    # lists here keep every entry in wire order.
    data = wire({"req": [req(pri=1), req(pri=2)], "blk": [[HELLO.cid.prefix, b"hello"]] * 2})
    msg = decode_message(data)
    assert [r.priority for r in msg.requests] == [1, 2]
    assert msg.blocks == (HELLO, HELLO)


def test_block_verification():
    assert block_from_wire(HELLO.cid.prefix, b"hello") == HELLO
    assert block_from_wire(PB_BLOCK.cid.prefix, PB_BLOCK.data).cid.version == 0
    # Data the sender lied about still gets the CID of what arrived: the
    # receiver then finds no pending link for it.
    assert block_from_wire(HELLO.cid.prefix, b"hellO").cid != HELLO.cid
    with pytest.raises(GraphsyncWireError):
        block_from_wire(b"\x01\x55\x12", b"hello")
    with pytest.raises(GraphsyncWireError):
        block_from_wire(b"", b"hello")
    unverified = decode_message(wire({"blk": [[b"\x01\x55\x12\x10", b"x"]]}), verify_blocks=False)
    assert unverified.blocks == (RawBlock(b"\x01\x55\x12\x10", b"x"),)
    with pytest.raises(GraphsyncWireError):
        unverified.verified_blocks()


@given(st.binary(max_size=200))
def test_random_bytes_give_only_wire_errors(data):
    try:
        decode_message(data)
    except GraphsyncWireError:
        pass


VECTOR_PAYLOADS = [split_frames(bytes.fromhex(v))[0] for v in GO_VECTORS.values()]


@given(st.sampled_from(VECTOR_PAYLOADS), st.data())
def test_mutated_vectors_give_only_wire_errors(payload, data):
    buf = bytearray(payload)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(buf) - 1))
        buf[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(buf)))
    for candidate in (bytes(buf), bytes(buf[:cut])):
        try:
            msg = decode_message(candidate)
        except GraphsyncWireError:
            continue
        assert decode_message(encode_message(msg)) == msg


def test_values_check_their_fields():
    with pytest.raises(GraphsyncWireError):
        Rq(b"short")
    with pytest.raises(GraphsyncWireError):
        Rq(rid(0), "x")
    with pytest.raises(GraphsyncWireError):
        Rq(rid(0), priority=2**31)
    with pytest.raises(GraphsyncWireError):
        Rq(rid(0), priority=True)
    with pytest.raises(GraphsyncWireError):
        Rq(rid(0), root=b"not a cid")
    with pytest.raises(GraphsyncWireError):
        Rq(rid(0), RequestType.CANCEL, extensions={"a": 1})
    with pytest.raises(GraphsyncWireError):
        Rq(rid(0), RequestType.UPDATE, root=ROOT)
    with pytest.raises(GraphsyncWireError):
        Rq(rid(0), RequestType.CANCEL, priority=1)
    with pytest.raises(GraphsyncWireError):
        Rq(rid(0), extensions={1: "x"})
    with pytest.raises(GraphsyncWireError):
        Rs(rid(0), 99)
    with pytest.raises(GraphsyncWireError):
        Rs(rid(0), 20, [(ROOT, "x")])
    with pytest.raises(GraphsyncWireError):
        Rs(rid(0), 20, [(b"cid", "p")])
    with pytest.raises(GraphsyncWireError):
        M(blocks=[(ROOT, b"data")])
    with pytest.raises(GraphsyncWireError):
        M(requests=[Rs(rid(0), 20)])
    with pytest.raises(GraphsyncWireError):
        encode_message(M([Rq.new(ROOT, SEL, extensions={"bad": object()})]))
    assert Rq(rid(0), "c").type is RequestType.CANCEL
    assert Rs(rid(0), 20).status is ResponseStatus.COMPLETED_FULL
    assert Rs(rid(0), 20, [(ROOT, "m")]).metadata == (LinkMetadatum(ROOT, LinkAction.MISSING),)
    assert len(new_request_id()) == 16 and new_request_id() != new_request_id()


def test_extension_value_helpers():
    other = CBOR_BLOCK.cid
    assert encode_do_not_send_cids([ROOT, other, ROOT]) == [ROOT, other]
    assert decode_do_not_send_cids([ROOT, other]) == {ROOT, other}
    for bad in (ROOT, [b"x"], None):
        with pytest.raises(GraphsyncWireError):
            decode_do_not_send_cids(bad)
    assert decode_do_not_send_first_blocks(0) == 0
    for bad in (-1, True, "3", 2**63):
        with pytest.raises(GraphsyncWireError):
            decode_do_not_send_first_blocks(bad)
    with pytest.raises(ValueError):
        encode_do_not_send_first_blocks(-1)
    with pytest.raises(GraphsyncWireError):
        decode_dedup_key(b"k")


# -- frames ---------------------------------------------------------------------------------


def test_frame_is_uvarint_length_then_payload():
    payload = encode_message(M([Rq.cancel(rid(0))]))
    assert frame(payload) == encode_uvarint(len(payload)) + payload
    assert frame(b"x" * 300)[:2] == b"\xac\x02"
    with pytest.raises(GraphsyncWireError):
        frame(b"x" * 11, max_size=10)
    assert frame(b"x" * 11, max_size=None)[0] == 11


def test_frame_decoder_refuses_oversized_header_before_the_body():
    dec = FrameDecoder()
    with pytest.raises(GraphsyncWireError, match="more than"):
        dec.feed(encode_uvarint(MAX_FRAME + 1))  # the header alone, no body
    with pytest.raises(GraphsyncWireError):  # and stays failed
        dec.feed(b"\x00")
    # Refused as soon as the bits seen exceed the limit, even mid-varint.
    dec = FrameDecoder(max_size=100)
    with pytest.raises(GraphsyncWireError):
        dec.feed(b"\xe5")  # 101 so far, with more bytes announced
    dec = FrameDecoder(max_size=10)
    assert dec.feed(encode_uvarint(10)) == [] and dec.buffered == 0


def test_frame_decoder_accepts_exactly_the_limit():
    dec = FrameDecoder(max_size=1000)
    assert dec.feed(encode_uvarint(1000) + b"a" * 999) == []
    assert dec.buffered == 999 and not dec.at_boundary
    assert dec.feed(b"b" + encode_uvarint(0)) == [b"a" * 999 + b"b", b""]
    dec.close()
    big = b"\x00" * MAX_FRAME
    assert split_frames(frame(big)) == [big]


def test_frame_decoder_splits_streams_byte_by_byte():
    payloads = [encode_message(m) for m in list(EXPECTED.values())[:6]]
    stream = b"".join(frame(p) for p in payloads)
    dec = FrameDecoder()
    got = []
    for i in range(len(stream)):
        got += dec.feed(stream[i : i + 1])
    dec.close()
    assert got == payloads


def test_truncated_and_malformed_frames():
    whole = frame(encode_message(M([Rq.cancel(rid(0))])))
    for cut in range(1, len(whole)):
        with pytest.raises(GraphsyncWireError):
            split_frames(whole[:cut])
    with pytest.raises(GraphsyncWireError, match="minimal"):
        split_frames(b"\x86\x00" + b"x" * 6)
    with pytest.raises(GraphsyncWireError):
        split_frames(b"\x80" * 10, max_size=2**70)
    assert split_frames(b"") == []


class Reader:
    """``receive_exact`` over a byte string, recording the sizes asked for."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self.asked: list[int] = []

    async def __call__(self, n: int) -> bytes:
        self.asked.append(n)
        out = self.data[self.pos : self.pos + n]
        self.pos += len(out)
        return out


def test_read_frame_refuses_oversized_header_without_reading_the_body():
    async def main():
        reader = Reader(encode_uvarint(MAX_FRAME + 1) + b"\x00" * 64)
        with pytest.raises(GraphsyncWireError):
            await read_frame(reader)
        assert reader.asked == [1] * len(encode_uvarint(MAX_FRAME + 1))
        assert reader.pos == len(encode_uvarint(MAX_FRAME + 1))

        reader = Reader(encode_uvarint(51) + b"x" * 51)
        with pytest.raises(GraphsyncWireError):
            await read_frame(reader, max_size=50)
        assert max(reader.asked) == 1

    anyio.run(main)


def test_read_frame_and_read_message():
    msgs = [EXPECTED["req_new_ext"], EXPECTED["rsp_partial_meta_block_ext"], EXPECTED["empty"]]

    async def main():
        reader = Reader(b"".join(encode_frame(m) for m in msgs))
        got = []
        while (msg := await read_message(reader)) is not None:
            got.append(msg)
        assert got == msgs
        assert await read_frame(Reader(b"\x00")) == b""
        with pytest.raises(GraphsyncWireError):
            await read_message(Reader(b"\x00"))  # Go: an empty message fails to decode
        whole = encode_frame(msgs[0])
        for cut in (1, 2, len(whole) - 1):
            with pytest.raises(GraphsyncWireError):
                await read_frame(Reader(whole[:cut]))
        with pytest.raises(GraphsyncWireError):
            await read_message(Reader(frame(b"\xa0")))

    anyio.run(main)


def test_read_message_over_an_anyio_stream():
    msgs = [EXPECTED["mixed"], EXPECTED["rsp_v0_block"]]
    data = b"".join(encode_frame(m) for m in msgs)

    async def main(data: bytes):
        send, receive = anyio.create_memory_object_stream[bytes](100)
        for i in range(0, len(data), 7):
            await send.send(data[i : i + 7])
        await send.aclose()
        stream = BufferedByteReceiveStream(receive)
        got = []
        while (msg := await read_message(stream.receive_exactly)) is not None:
            got.append(msg)
        return got

    assert anyio.run(main, data) == msgs
    with pytest.raises(GraphsyncWireError):
        anyio.run(main, data[:-1])


# -- batching a responder's output -------------------------------------------------------


