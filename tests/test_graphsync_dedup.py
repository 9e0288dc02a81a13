"""``graphsync/do-not-send-cids`` and ``graphsync/dedup-by-key`` in the
graphsync engine (two engines over in-memory pipes, as in
test_graphsync_engine.py)."""

from __future__ import annotations

import anyio
import pytest
from _support import make_dag
from test_graphsync_engine import A, B, pair, pull_message, wait_done

from datatransfer.ipld.block import Block
from datatransfer.ipld.selector import ALL_SELECTOR_NODE
from datatransfer.messages import to_node
from datatransfer.types import ChannelID
from transport.base import Decision
from transport.graphsync.message import (
    EXTENSION_DATA_TRANSFER,
    EXTENSION_DEDUP_BY_KEY,
    EXTENSION_DO_NOT_SEND_CIDS,
    GraphsyncMessage,
    GraphsyncRequest,
    GraphsyncResponse,
    LinkMetadatum,
)
from transport.graphsync.status import LinkAction, ResponseStatus

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request):
    return request.param


def _copy(src, dst, cids) -> None:  # type: ignore[no-untyped-def]
    dst.put_many([Block(c, src.get(c)) for c in cids])


async def test_listed_blocks_are_walked_announced_but_not_sent_and_raise_no_events():
    async with pair() as (a, b):
        root, _, order = make_dag(b.store, leaves=9, leaf_size=3000)
        held = [order[0], order[2], order[3], order[-1]]  # the root, leaves, the last block
        _copy(b.store, a.store, held)
        chid = ChannelID(A, B, 1)
        await a.engine.open_channel(B, chid, root, ALL_SELECTOR_NODE, pull_message(1, root),
                                    do_not_send=held)
        await wait_done((a, chid), (b, chid))
        (req,) = a.wire[0].requests
        assert set(req.extensions[EXTENSION_DO_NOT_SEND_CIDS]) == set(held)
        # its own dedup bucket at a Go sender, named as go-data-transfer names it
        assert req.extensions[EXTENSION_DEDUP_BY_KEY] == f"data-transfer-{chid}"
        # every traversed block is announced "p", in order; the held ones travel nowhere
        meta = [m for msg in b.wire for rsp in msg.responses for m in rsp.metadata]
        assert meta == [LinkMetadatum(c, LinkAction.PRESENT) for c in order]
        sent = [blk.cid for msg in b.wire for blk in msg.blocks]
        assert sorted(sent) == sorted(c for c in order if c not in held)
        # events (and so the Manager's byte and block counters) only for blocks on the wire
        wire_indexes = [i + 1 for i, c in enumerate(order) if c not in held]
        assert [e[1] for e in b.events.log if e[0] == "queued"] == wire_indexes
        assert [e[1] for e in b.events.log if e[0] == "sent"] == wire_indexes
        assert [e[1] for e in a.events.log if e[0] == "received"] == wire_indexes
        assert a.events.log[-1] == ("completed", None)
        assert b.events.log[-1] == ("completed", None)
        for cid in order:
            cid.verify(a.store.get(cid))
        assert a.engine.is_idle() and b.engine.is_idle()


async def test_a_block_announced_as_not_sent_that_the_receiver_lacks_fails_the_channel():
    async with pair() as (a, b):
        root, _, order = make_dag(b.store, leaves=6)
        missing = order[3]  # listed, but A does not hold it
        chid = ChannelID(A, B, 1)
        await a.engine.open_channel(B, chid, root, ALL_SELECTOR_NODE, pull_message(1, root),
                                    do_not_send=[missing])
        await wait_done((a, chid), (b, chid))
        kind, reason = a.events.log[-1]
        assert kind == "receive-error"
        assert str(missing) in reason and "not in the local store" in reason
        assert [e[1] for e in a.events.log if e[0] == "received"] == [1, 2, 3]
        assert b.events.log[-1][0] in {"completed", "cancelled"}  # B may be done first
        assert a.engine.is_idle() and b.engine.is_idle()


@pytest.mark.parametrize("how", ["d", "p without the block"])
async def test_the_receiver_loads_blocks_a_go_sender_announces_but_does_not_send(how):
    # go-graphsync's responder announces a block it does not send as "p" with
    # the block left out of the message; "d" means the same.
    async with pair() as (a, b):
        root, _, order = make_dag(b.store, leaves=3)  # [root, l1, l2, l3]
        b.events.on_request = lambda chid, msg: Decision(pause=True)  # B itself sends nothing
        _copy(b.store, a.store, [order[0], order[2]])
        chid = ChannelID(A, B, 1)
        await a.engine.open_channel(B, chid, root, ALL_SELECTOR_NODE, pull_message(1, root))
        await anyio.sleep(0.05)
        rid = a.wire[0].requests[0].id
        action = LinkAction.DUPLICATE_NOT_SENT if how == "d" else LinkAction.PRESENT
        meta = (
            LinkMetadatum(order[0], action),
            LinkMetadatum(order[1], LinkAction.PRESENT),
            LinkMetadatum(order[2], action),
            LinkMetadatum(order[3], LinkAction.PRESENT),
        )
        blocks = tuple(Block(c, b.store.get(c)) for c in (order[1], order[3]))
        a.engine.handle_message(B, GraphsyncMessage(
            responses=(GraphsyncResponse(rid, ResponseStatus.PARTIAL_RESPONSE, meta),),
            blocks=blocks))
        a.engine.handle_message(B, GraphsyncMessage(
            responses=(GraphsyncResponse(rid, ResponseStatus.COMPLETED_FULL),)))
        await wait_done((a, chid))
        assert [e[1] for e in a.events.log if e[0] == "received"] == [2, 4]
        assert a.events.log[-1] == ("completed", None)
        assert all(c in a.store for c in order)


@pytest.mark.parametrize("ext", [
    {EXTENSION_DO_NOT_SEND_CIDS: "not a list"},
    {EXTENSION_DO_NOT_SEND_CIDS: [b"\x01\x55"]},
    {EXTENSION_DEDUP_BY_KEY: 5},
], ids=["cids-not-a-list", "cids-not-links", "dedup-key-not-a-string"])
async def test_malformed_extension_values_are_refused_before_the_manager_is_asked(ext):
    async with pair() as (a, b):
        root, _, _ = make_dag(b.store, leaves=2)
        req = GraphsyncRequest.new(root, ALL_SELECTOR_NODE, extensions={
            EXTENSION_DATA_TRANSFER: to_node(pull_message(1, root)), **ext})
        b.engine.handle_message(A, GraphsyncMessage(requests=(req,)))
        await anyio.sleep(0.05)
        assert b.events.log == []
        (rsp,) = b.wire[-1].responses
        assert rsp.request_id == req.id and rsp.status is ResponseStatus.REJECTED
        assert not b.wire[-1].blocks
        assert b.engine.stats.rejected_malformed == 1
        assert b.engine.is_idle()


async def test_messages_hold_a_bounded_number_of_metadata_entries():
    # Blocks announced but not sent add no block bytes: without a bound on
    # entries a large listed DAG would go out as one oversized message.
    async with pair() as (a, b):
        b.engine.max_links_per_message = 3
        root, _, order = make_dag(b.store, leaves=12, leaf_size=10)
        _copy(b.store, a.store, order[1:])
        chid = ChannelID(A, B, 1)
        await a.engine.open_channel(B, chid, root, ALL_SELECTOR_NODE, pull_message(1, root),
                                    do_not_send=order[1:])
        await wait_done((a, chid), (b, chid))
        counts = [len(rsp.metadata) for m in b.wire for rsp in m.responses if rsp.metadata]
        assert sum(counts) == len(order) and max(counts) == 3
        assert [blk.cid for m in b.wire for blk in m.blocks] == [root]
        assert a.events.log[-1] == ("completed", None)


async def test_open_channel_refuses_a_do_not_send_entry_that_is_not_a_cid():
    async with pair() as (a, b):
        root, _, _ = make_dag(b.store, leaves=2)
        with pytest.raises(TypeError):
            await a.engine.open_channel(B, ChannelID(A, B, 1), root, ALL_SELECTOR_NODE,
                                        pull_message(1, root), do_not_send=[b"raw bytes"])
        assert a.wire == [] and a.engine.is_idle()
