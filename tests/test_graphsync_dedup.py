"""``graphsync/do-not-send-cids``, ``graphsync/dedup-by-key`` and the blocks
a restart skips (announced, not sent) in the graphsync engine (two engines
over in-memory pipes, as in test_graphsync_engine.py)."""

from __future__ import annotations

import anyio
import pytest
from _support import DEADLINE, make_dag, quiesce
from test_graphsync_engine import A, B, pair, pull_message, wait_done

from datatransfer.ipld.block import Block
from datatransfer.ipld.selector import ALL_SELECTOR_NODE
from datatransfer.messages import to_node
from datatransfer.types import ChannelID
from transport.base import Decision
from transport.graphsync.engine import METADATA_ENTRY_CHARGE
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
        await quiesce(0.05)
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
        await quiesce(0.05)
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


# -- restarts: the skipped blocks are announced without being sent -------------------------


def _held_restart(a, b, k: int):  # type: ignore[no-untyped-def]
    """B holds an 11-block DAG, A its first ``k`` blocks (a restart of a pull)."""
    root, size, order = make_dag(b.store, leaves=8)  # root, n1, l1..l4, n2, l5..l8
    _copy(b.store, a.store, order[:k])
    return root, size, order


def _go_response(rid, announced, carried, status=ResponseStatus.PARTIAL_RESPONSE, store=None):  # type: ignore[no-untyped-def]
    meta = tuple(LinkMetadatum(c, LinkAction.PRESENT) for c in announced)
    blocks = tuple(Block(c, store.get(c)) for c in carried)
    return GraphsyncMessage(responses=(GraphsyncResponse(rid, status, meta),), blocks=blocks)


@pytest.mark.parametrize("split", ["one message", "several messages", "none announced"])
async def test_a_restart_completes_against_a_go_sender_that_announces_the_skipped_blocks(split):
    # go-graphsync's responder walks the first k blocks of a restart and
    # announces each ("p", block left out); the receiver walked them from its
    # own store, so each announcement is matched in order, not taken as an
    # unexpected block. "none announced": a sender that stays silent about
    # them (as the in-memory one does) still works.
    k = 4
    async with pair() as (a, b):
        root, _, order = _held_restart(a, b, k)
        b.events.on_request = lambda chid, msg: Decision(pause=True)  # B itself sends nothing
        chid = ChannelID(A, B, 1)
        await a.engine.open_channel(B, chid, root, ALL_SELECTOR_NODE, pull_message(1, root),
                                    skip_blocks=k)
        await quiesce(0.05)
        rid = a.wire[0].requests[0].id
        done = ResponseStatus.COMPLETED_FULL
        if split == "one message":
            script = [(order, order[k:], done)]
        elif split == "several messages":
            script = [(order[:2], (), None), (order[2:k + 1], order[k:k + 1], None),
                      (order[k + 1:], order[k + 1:], done)]
        else:
            script = [(order[k:], order[k:], done)]
        for announced, carried, status in script:
            a.engine.handle_message(B, _go_response(
                rid, announced, carried, status or ResponseStatus.PARTIAL_RESPONSE, b.store))
        await wait_done((a, chid))
        assert a.events.log[-1] == ("completed", None)
        # only the blocks carried count, with the indices of the whole traversal
        assert [e[1] for e in a.events.log if e[0] == "received"] == list(range(k + 1, 12))
        assert all(c in a.store for c in order)
        assert a.engine.is_idle()


@pytest.mark.parametrize("wrong", ["out of order", "unknown cid"])
async def test_a_skipped_block_announced_out_of_order_fails_the_restart(wrong):
    k = 4
    async with pair() as (a, b):
        root, _, order = _held_restart(a, b, k)
        b.events.on_request = lambda chid, msg: Decision(pause=True)
        chid = ChannelID(A, B, 1)
        await a.engine.open_channel(B, chid, root, ALL_SELECTOR_NODE, pull_message(1, root),
                                    skip_blocks=k)
        await quiesce(0.05)
        rid = a.wire[0].requests[0].id
        stranger = Block.of(b"not in this DAG").cid
        bad = stranger if wrong == "unknown cid" else order[2]
        a.engine.handle_message(B, _go_response(rid, [order[0], bad], ()))
        await wait_done((a, chid))
        kind, reason = a.events.log[-1]
        assert kind == "receive-error"
        assert f"block {bad} announced as not sent where the restart skips block {order[1]}" \
            f" (index 2)" in reason
        assert not [e for e in a.events.log if e[0] == "received"]
        assert a.engine.is_idle()


async def test_a_restart_between_two_engines_announces_the_skipped_blocks_and_resends_none():
    # Round one stops after k blocks; the restart asks to skip them. The
    # sender walks and announces them as go-graphsync does, entries capped
    # per message, so the receiver matches announcements spread over several
    # messages; no block moves twice and the bytes received add up to the DAG.
    # (skip_held off: the receiver may hold a block or two past k, taken in
    # the batch A cancelled; the restart here skips exactly k)
    k = 7
    async with pair(skip_held=False) as (a, b):
        b.engine.max_links_per_message = 3
        root, size, order = make_dag(b.store, leaves=8)
        chid = ChannelID(A, B, 1)
        a.events.on_received = lambda i: Decision(accept=False) if i == k else Decision()
        await a.engine.open_channel(B, chid, root, ALL_SELECTOR_NODE, pull_message(1, root))
        with anyio.fail_after(DEADLINE):
            await b.events.finished(chid).wait()  # cancelled by A, or done before the cancel
        round_one = [e[1] for e in a.events.log if e[0] == "received"]
        assert round_one == list(range(1, k + 1))
        a.events.on_received = None
        a.events.log.clear()
        b.events.log.clear()
        b.wire.clear()
        b.events.done.clear()
        await a.engine.open_channel(B, chid, root, ALL_SELECTOR_NODE, pull_message(1, root),
                                    skip_blocks=k)
        await wait_done((a, chid), (b, chid))
        assert a.events.log[-1] == ("completed", None)
        round_two = [e[1] for e in a.events.log if e[0] == "received"]
        assert round_two == list(range(k + 1, len(order) + 1))
        assert sum(len(b.store.get(order[i - 1])) for i in round_one + round_two) == size
        assert [blk.cid for m in b.wire for blk in m.blocks] == order[k:]
        counts = [len(rsp.metadata) for m in b.wire for rsp in m.responses if rsp.metadata]
        assert max(counts) == 3
        meta = [m for msg in b.wire for rsp in msg.responses for m in rsp.metadata]
        assert meta == [LinkMetadatum(c, LinkAction.PRESENT) for c in order]
        # the sender's events, too, are for the blocks on the wire only
        assert [e[1] for e in b.events.log if e[0] == "queued"] == round_two
        assert [e[1] for e in b.events.log if e[0] == "sent"] == round_two
        assert a.engine.is_idle() and b.engine.is_idle()


async def test_announcements_without_blocks_count_against_the_receive_backlog():
    # A restart of a huge DAG brings messages of entries only; they must hold
    # the stream reader back like block bytes do, or they queue without bound.
    async with pair(max_backlog_bytes=1000) as (a, b):
        root, _, order = _held_restart(a, b, 11)  # A holds everything
        b.events.on_request = lambda chid, msg: Decision(pause=True)
        chid = ChannelID(A, B, 1)
        await a.engine.open_channel(B, chid, root, ALL_SELECTOR_NODE, pull_message(1, root),
                                    skip_blocks=11)
        await quiesce(0.05)
        rid = a.wire[0].requests[0].id
        a.engine.handle_message(B, _go_response(rid, order, (), ResponseStatus.COMPLETED_FULL))
        assert a.engine.backlog_bytes == 11 * METADATA_ENTRY_CHARGE > a.engine.max_backlog_bytes
        await wait_done((a, chid))
        assert a.engine.backlog_bytes == 0
        assert a.events.log[-1] == ("completed", None)
        assert not [e for e in a.events.log if e[0] == "received"]
