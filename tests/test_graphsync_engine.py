"""The graphsync engine (transport/graphsync/engine.py) over in-memory pipes:
two engines whose messages go through the real frame encoding."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import anyio
import pytest
from _support import (
    DEADLINE,
    FAST,
    Gate,
    LabelVoucher,
    Recorder,
    ScriptedValidator,
    make_dag,
    quiesce,
)
from trio.testing import MockClock

from datatransfer.ipld.block import Block
from datatransfer.ipld.blockstore import MemoryBlockstore
from datatransfer.ipld.selector import ALL_SELECTOR_NODE
from datatransfer.manager import Manager
from datatransfer.messages import (
    cancel_request,
    new_request,
    new_response,
    restart_request,
    to_node,
    update_request,
    voucher_request,
    voucher_result_response,
)
from datatransfer.store import SqliteChannelStore
from datatransfer.types import ChannelID, PeerID
from statemachine import Status as S
from transport.base import PROCEED, Decision, PeerUnreachable
from transport.graphsync.engine import GraphsyncEngine
from transport.graphsync.framing import (
    MAX_FRAME,
    FrameTimeout,
    encode_frame,
    read_frame,
    split_frames,
)
from transport.graphsync.message import (
    EXTENSION_DATA_TRANSFER,
    EXTENSION_DEDUP_BY_KEY,
    EXTENSION_DO_NOT_SEND_CIDS,
    EXTENSION_DO_NOT_SEND_FIRST_BLOCKS,
    GraphsyncMessage,
    GraphsyncRequest,
    GraphsyncResponse,
    GraphsyncWireError,
    LinkMetadatum,
    decode_message,
)
from transport.graphsync.status import LinkAction, RequestType, ResponseStatus

pytestmark = pytest.mark.anyio

A = PeerID(b"\x00\x08peer-a__")
B = PeerID(b"\x00\x08peer-b__")


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request):
    return request.param


@dataclass
class Events:
    """Records every callback; decisions come from optional hooks."""

    log: list[tuple] = field(default_factory=list)
    on_request: Callable[..., Decision] | None = None
    on_queued: Callable[[int], Decision] | None = None
    on_received: Callable[[int], Decision] | None = None
    done: dict[ChannelID, anyio.Event] = field(default_factory=dict)

    def finished(self, chid: ChannelID) -> anyio.Event:
        return self.done.setdefault(chid, anyio.Event())

    def _end(self, chid: ChannelID) -> None:
        self.finished(chid).set()

    def kinds(self) -> list[str]:
        return [e[0] for e in self.log]

    async def on_message(self, sender, message):
        self.log.append(("message", message))

    async def on_request_received(self, chid, sender, message, root=None, selector=None):
        self.log.append(("request", chid, message))
        return self.on_request(chid, message) if self.on_request else PROCEED

    async def on_response_received(self, chid, response):
        self.log.append(("response", chid, response))

    async def on_channel_opened(self, chid):
        self.log.append(("opened", chid))

    async def on_data_queued(self, chid, cid, size, index):
        self.log.append(("queued", index))
        return self.on_queued(index) if self.on_queued else PROCEED

    async def on_data_sent(self, chid, cid, size, index):
        self.log.append(("sent", index))

    async def on_data_skipped(self, chid, cid, size, index):
        self.log.append(("skipped", index))

    async def on_data_received(self, chid, cid, size, index):
        self.log.append(("received", index))
        return self.on_received(index) if self.on_received else PROCEED

    async def on_channel_completed(self, chid, error):
        self.log.append(("completed", error))
        self._end(chid)

    async def on_request_cancelled(self, chid, reason):
        self.log.append(("cancelled", reason))
        self._end(chid)

    async def on_disconnected(self, chid, reason):
        self.log.append(("disconnected", reason))
        self._end(chid)

    async def on_peer_lost(self, peer, reason, notified):
        self.log.append(("peer-lost", peer, notified))

    async def on_send_data_error(self, chid, reason):
        self.log.append(("send-error", reason))
        self._end(chid)

    async def on_receive_data_error(self, chid, reason):
        self.log.append(("receive-error", reason))
        self._end(chid)


@dataclass
class Side:
    engine: GraphsyncEngine
    events: Events
    store: MemoryBlockstore
    wire: list[GraphsyncMessage] = field(default_factory=list)


@asynccontextmanager
async def pair(**options: Any) -> AsyncIterator[tuple[Side, Side]]:
    sides: dict[PeerID, Side] = {}

    def make(me: PeerID) -> Side:
        async def send(peer: PeerID, msg: GraphsyncMessage) -> None:
            frame = encode_frame(msg, max_size=options.get("max_frame", MAX_FRAME))
            sides[me].wire.append(msg)
            for payload in split_frames(frame):
                sides[peer].engine.handle_frame(me, payload)

        async def send_dt(peer: PeerID, message: Any) -> None:
            sides[peer].engine.handle_dt_message(me, message)

        store = MemoryBlockstore()
        opts = {k: v for k, v in options.items() if k != "max_frame"}
        return Side(GraphsyncEngine(me, store, send, send_dt, **opts), Events(), store)

    sides[A] = make(A)
    sides[B] = make(B)
    async with anyio.create_task_group() as tg:
        await tg.start(sides[A].engine.serve, sides[A].events)
        await tg.start(sides[B].engine.serve, sides[B].events)
        yield sides[A], sides[B]
        tg.cancel_scope.cancel()


def pull_message(tid: int = 1, root=None):  # type: ignore[no-untyped-def]
    return new_request(tid, base_cid=root, selector=ALL_SELECTOR_NODE, voucher_type="v",
                       voucher={"x": 1}, pull=True)


async def wait_done(*pairs: tuple[Side, ChannelID]) -> None:
    with anyio.fail_after(DEADLINE):
        for side, chid in pairs:
            await side.events.finished(chid).wait()
    await anyio.sleep(0.01)


async def test_full_pull_batches_blocks_per_512_kib():
    async with pair() as (a, b):
        root, size, order = make_dag(b.store, leaves=9, leaf_size=200_000)
        chid = ChannelID(A, B, 1)
        await a.engine.open_channel(B, chid, root, ALL_SELECTOR_NODE, pull_message(1, root))
        await wait_done((a, chid), (b, chid))
        n = len(order)
        assert a.events.kinds() == ["opened"] + ["received"] * n + ["completed"]
        assert a.events.log[-1] == ("completed", None)
        assert [e[1] for e in a.events.log if e[0] == "received"] == list(range(1, n + 1))
        assert b.events.log[0][0] == "request" and b.events.log[0][1] == chid
        assert b.events.log[-1] == ("completed", None)
        for cid in order:
            cid.verify(a.store.get(cid))
        # the request carried the data-transfer message; responses batch blocks
        (req,) = a.wire[0].requests
        assert req.type is RequestType.NEW and EXTENSION_DATA_TRANSFER in req.extensions
        data_msgs = [m for m in b.wire if m.blocks]
        assert all(m.block_bytes <= 512 * 1024 for m in data_msgs)
        assert len(data_msgs) < n
        assert b.wire[-1].responses[-1].status is ResponseStatus.COMPLETED_FULL
        assert a.engine.is_idle() and b.engine.is_idle()


async def test_libp2p_senders_batch_three_unixfs_chunks_per_message():
    """Go's 512 KiB of blocks per message holds one 256 KiB UnixFS chunk (its
    framing makes two just too many); the libp2p transport's senders batch
    up to MESSAGE_BLOCK_BYTES: three, a third of the per-message work."""
    from transport.libp2p.transport import MESSAGE_BLOCK_BYTES

    chunk = 256 * 1024 + 14  # a classic UnixFS leaf: the chunk in its dag-pb node
    for limit, per_message in ((512 * 1024, 1), (MESSAGE_BLOCK_BYTES, 3)):
        async with pair(max_block_bytes=limit) as (a, b):
            root, _, order = make_dag(b.store, leaves=7, leaf_size=chunk, fanout=8)
            chid = ChannelID(A, B, 1)
            await a.engine.open_channel(B, chid, root, ALL_SELECTOR_NODE, pull_message(1, root))
            await wait_done((a, chid), (b, chid))
            assert a.events.log[-1] == ("completed", None)
            leaves = [sum(len(blk.data) == chunk for blk in m.blocks) for m in b.wire if m.blocks]
            assert max(leaves) == per_message and sum(leaves) == 7
            assert all(m.block_bytes <= limit for m in b.wire if len(m.blocks) > 1)


async def test_push_acceptance_rides_the_request():
    async with pair() as (a, b):
        root, _, order = make_dag(a.store, leaves=3)
        chid = ChannelID(A, B, 7)  # A initiated a push; B (receiver) opens the data request
        acceptance = new_response(7, accepted=True)
        await b.engine.open_channel(A, chid, root, ALL_SELECTOR_NODE, acceptance)
        await wait_done((a, chid), (b, chid))
        assert a.events.log[0] == ("request", chid, acceptance)
        assert b.events.log[-1] == ("completed", None)
        assert all(cid in b.store for cid in order)


def restart_message(tid: int = 1, root=None):  # type: ignore[no-untyped-def]
    return restart_request(tid, base_cid=root, selector=ALL_SELECTOR_NODE, voucher_type="v",
                           voucher={"x": 1}, pull=True)


async def test_restart_skips_the_first_blocks():
    async with pair() as (a, b):
        root, _, order = make_dag(b.store, leaves=8)
        k = 4
        for cid in order[:k]:
            a.store.put_many([Block(cid, b.store.get(cid))])
        chid = ChannelID(A, B, 1)
        await a.engine.open_channel(B, chid, root, ALL_SELECTOR_NODE, restart_message(1, root),
                                    skip_blocks=k)
        await wait_done((a, chid), (b, chid))
        (req,) = a.wire[0].requests
        assert req.extensions[EXTENSION_DO_NOT_SEND_FIRST_BLOCKS] == k
        assert [e[1] for e in a.events.log if e[0] == "received"] == list(
            range(k + 1, len(order) + 1))
        assert [e[1] for e in b.events.log if e[0] == "sent"] == list(range(k + 1, len(order) + 1))
        # the skipped ones are reported to the sender apart (see on_data_skipped)
        assert [e[1] for e in b.events.log if e[0] == "skipped"] == list(range(1, k + 1))
        assert not [e for e in a.events.log if e[0] == "skipped"]
        sent_cids = {blk.cid for m in b.wire for blk in m.blocks}
        assert sent_cids == set(order[k:])
        assert a.events.log[-1] == ("completed", None)
        # the block data that crossed, counted on both sides
        rest = sum(len(b.store.get(cid)) for cid in order[k:])
        assert b.engine.stats.block_bytes_sent == rest == a.engine.stats.block_bytes_received
        assert a.engine.stats.block_bytes_sent == b.engine.stats.block_bytes_received == 0


def _copy(src: MemoryBlockstore, dst: MemoryBlockstore, cids: list) -> None:
    dst.put_many([Block(cid, src.get(cid)) for cid in cids])


@pytest.mark.parametrize(
    ("held", "first", "listed"),
    [
        # (which blocks of the 11 the receiver holds; first blocks skipped; CIDs listed)
        pytest.param(range(0, 4), 4, [], id="a-prefix"),
        pytest.param([0, 1, *range(6, 11)], 2, range(6, 11), id="past-a-gap"),
        pytest.param(range(0, 11), 11, [], id="all"),
        pytest.param(range(1, 11), 0, [], id="all-but-the-root"),
    ],
)
async def test_a_new_pull_asks_for_nothing_the_receiver_holds(held, first, listed):
    """Opening a pull, the receiver walks its own store first: the blocks it
    holds from the start are skipped (do-not-send-first-blocks), those past
    the first it lacks are listed (do-not-send-cids); only the rest crosses.
    Its progress counts the held ones as skipped; the sender counts none of
    them (a new channel: nothing moved on it). Without the root nothing
    below it can be named: everything moves."""
    async with pair() as (a, b):
        root, _, order = make_dag(b.store, leaves=8)  # root, node, 4 leaves, node, 4 leaves
        assert len(order) == 11
        _copy(b.store, a.store, [order[i] for i in held])
        chid = ChannelID(A, B, 1)
        await a.engine.open_channel(B, chid, root, ALL_SELECTOR_NODE, pull_message(1, root))
        await wait_done((a, chid), (b, chid))
        (req,) = a.wire[0].requests
        assert req.extensions.get(EXTENSION_DO_NOT_SEND_FIRST_BLOCKS, 0) == first
        assert req.extensions.get(EXTENSION_DO_NOT_SEND_CIDS, []) == [order[i] for i in listed]
        skipped = set(range(first)) | set(listed)
        moved = [i for i in range(11) if i not in skipped]
        assert {blk.cid for m in b.wire for blk in m.blocks} == {order[i] for i in moved}
        assert [e[1] for e in a.events.log if e[0] == "skipped"] == [i + 1 for i in sorted(skipped)]
        assert [e[1] for e in a.events.log if e[0] == "received"] == [i + 1 for i in moved]
        assert [e[1] for e in b.events.log if e[0] == "sent"] == [i + 1 for i in moved]
        assert not [e for e in b.events.log if e[0] == "skipped"]
        assert a.events.log[-1] == b.events.log[-1] == ("completed", None)
        assert all(cid in a.store for cid in order)
        size = sum(len(b.store.get(order[i])) for i in moved)
        assert b.engine.stats.block_bytes_sent == size == a.engine.stats.block_bytes_received


async def test_skip_held_off_asks_for_everything():
    async with pair(skip_held=False) as (a, b):
        root, _, order = make_dag(b.store, leaves=8)
        _copy(b.store, a.store, order)
        chid = ChannelID(A, B, 1)
        await a.engine.open_channel(B, chid, root, ALL_SELECTOR_NODE, pull_message(1, root))
        await wait_done((a, chid), (b, chid))
        (req,) = a.wire[0].requests
        assert EXTENSION_DO_NOT_SEND_FIRST_BLOCKS not in req.extensions
        assert EXTENSION_DO_NOT_SEND_CIDS not in req.extensions
        assert [e[1] for e in a.events.log if e[0] == "received"] == list(range(1, 12))


async def test_receiver_pause_cancels_and_resume_asks_again_as_go_graphsync_does():
    """go-graphsync's requester pauses by cancelling its request and resumes
    by sending the same request (same id, root, selector, extensions) again
    with the resume message and do-not-send-first-blocks = the blocks held.
    The sender hears no cancel event; no block is sent twice."""
    async with pair(max_block_bytes=1) as (a, b):
        root, _, order = make_dag(b.store, leaves=6)
        n = len(order)
        chid = ChannelID(A, B, 1)
        a.events.on_received = lambda i: Decision(pause=True) if i == 2 else PROCEED
        await a.engine.open_channel(B, chid, root, ALL_SELECTOR_NODE, pull_message(1, root))
        with anyio.fail_after(DEADLINE):
            while b.engine.resources()["parked"] == 0:
                await anyio.sleep(0.01)
        await quiesce(0.05)
        first = a.wire[0].requests[0]
        assert [r.type for m in a.wire for r in m.requests] == [RequestType.NEW,
                                                                RequestType.CANCEL]
        assert a.wire[1].requests[0].id == first.id
        # blocks in flight when the cancel landed are taken (each the next one
        # needed), then the sender stopped: it sent exactly what arrived
        held = [e[1] for e in a.events.log if e[0] == "received"]
        assert held == list(range(1, len(held) + 1)) and 2 <= len(held) < n
        assert [e[1] for e in b.events.log if e[0] == "sent"] == held
        assert "cancelled" not in b.events.kinds()  # (no event: go-data-transfer's neither)
        await quiesce(0.05)
        assert [e[1] for e in b.events.log if e[0] == "sent"] == held
        payment = new_request(1, base_cid=root, selector=ALL_SELECTOR_NODE, voucher_type="v",
                              voucher={"pay": 1}, pull=True)
        a.events.on_received = None
        await a.engine.resume_channel(chid, payment)
        await wait_done((a, chid), (b, chid))
        again = a.wire[2].requests[0]
        assert [r.type for m in a.wire for r in m.requests] == [
            RequestType.NEW, RequestType.CANCEL, RequestType.NEW]
        assert (again.id, again.root, again.selector, again.priority) == (
            first.id, first.root, first.selector, first.priority)
        assert again.extensions == {**first.extensions,
                                    EXTENSION_DATA_TRANSFER: to_node(payment),
                                    EXTENSION_DO_NOT_SEND_FIRST_BLOCKS: len(held)}
        assert ("request", chid, payment) in b.events.log
        # the new walk announced the held blocks without them, then sent the rest
        walk = [md for m in b.wire for r in m.responses for md in r.metadata][-n:]
        assert [md.link for md in walk] == order
        carried = [blk.cid for m in b.wire for blk in m.blocks]
        assert carried == order  # each block once, in order
        assert [e[1] for e in a.events.log if e[0] == "received"] == list(range(1, n + 1))
        assert [e[1] for e in b.events.log if e[0] == "sent"] == list(range(1, n + 1))
        assert a.events.log[-1] == ("completed", None)
        assert a.engine.is_idle() and b.engine.is_idle()


async def test_sender_pause_sends_paused_status_and_resume_carries_message():
    async with pair(max_block_bytes=1) as (a, b):
        root, _, order = make_dag(b.store, leaves=6)
        chid = ChannelID(A, B, 1)
        result = voucher_result_response(1, accepted=True, paused=True, voucher_result_type="r",
                                         voucher_result={"pay": 3})
        b.events.on_queued = lambda i: Decision(message=result, pause=True) if i == 3 else PROCEED
        await a.engine.open_channel(B, chid, root, ALL_SELECTOR_NODE, pull_message(1, root))
        with anyio.fail_after(DEADLINE):
            while not any(r.status is ResponseStatus.PAUSED for m in b.wire for r in m.responses):
                await anyio.sleep(0.01)
        await quiesce(0.05)
        assert [e[1] for e in a.events.log if e[0] == "received"] == [1, 2]
        assert ("response", chid, result) in a.events.log
        assert ("sent", 3) not in b.events.log
        await b.engine.resume_channel(chid)
        await wait_done((a, chid), (b, chid))
        assert [e[1] for e in a.events.log if e[0] == "received"] == list(
            range(1, len(order) + 1))
        assert b.events.kinds().count("queued") == len(order)


async def test_sender_resumed_sends_the_held_block_alone_then_batches_again():
    """The receiver of a paused channel (a retrieval client that just paid)
    waits idle for the first block after the resume: it goes in a message
    of its own, so it is not held while a full batch is loaded, encoded and
    carried; the blocks after it are batched as before."""
    async with pair() as (a, b):
        root, _, order = make_dag(b.store, leaves=14, leaf_size=100_000)
        chid = ChannelID(A, B, 1)
        b.events.on_queued = lambda i: Decision(pause=True) if i == 7 else PROCEED
        await a.engine.open_channel(B, chid, root, ALL_SELECTOR_NODE, pull_message(1, root))
        with anyio.fail_after(DEADLINE):
            while not any(r.status is ResponseStatus.PAUSED for m in b.wire for r in m.responses):
                await anyio.sleep(0.01)
        await quiesce(0.05)
        before = [len(m.blocks) for m in b.wire if m.blocks]
        assert max(before) > 1  # (batched up to the pause)
        resumed_at = len(b.wire)
        await b.engine.resume_channel(chid)
        await wait_done((a, chid), (b, chid))
        after = [len(m.blocks) for m in b.wire[resumed_at:] if m.blocks]
        assert after[0] == 1 and max(after[1:]) > 1, after
        assert sum(before) + sum(after) == len(order)
        assert [e[1] for e in a.events.log if e[0] == "received"] == list(
            range(1, len(order) + 1))


@pytest.mark.parametrize("who", ["receiver", "sender"])
async def test_cancel_from_either_side(who):
    async with pair(max_block_bytes=1) as (a, b):
        root, _, order = make_dag(b.store, leaves=8)
        chid = ChannelID(A, B, 1)
        b.events.on_queued = lambda i: Decision(pause=True) if i == 3 else PROCEED  # holds
        await a.engine.open_channel(B, chid, root, ALL_SELECTOR_NODE, pull_message(1, root))
        with anyio.fail_after(DEADLINE):
            while ("received", 2) not in a.events.log:
                await anyio.sleep(0.01)
        if who == "receiver":
            await a.engine.close_channel(chid)
            await a.engine.close_channel(chid)  # idempotent
            await quiesce(0.05)
            cancels = [r for m in a.wire for r in m.requests if r.type is RequestType.CANCEL]
            assert len(cancels) == 1 and a.wire[-1].requests[-1] == cancels[0]
            # the sender's side hears nothing of a requester's cancel (as Go's
            # graphsync transport: it is how a go-graphsync requester pauses);
            # the channel's own Cancel message ends it there
            assert "cancelled" not in b.events.kinds() and "completed" not in b.events.kinds()
            assert b.engine.resources()["parked"] == 1
            await b.engine.cleanup_channel(chid)
        else:
            await b.engine.close_channel(chid)
            await wait_done((a, chid))
            assert a.events.log[-1][0] == "cancelled"
            assert b.wire[-1].responses[-1].status is ResponseStatus.CANCELLED
        await quiesce(0.05)
        assert a.engine.is_idle() and b.engine.is_idle()
        await a.engine.cleanup_channel(chid)
        await b.engine.cleanup_channel(chid)


async def test_unexpected_block_is_refused_and_never_stored():
    async with pair() as (a, b):
        root, _, order = make_dag(b.store, leaves=4)
        b.events.on_request = lambda chid, msg: Decision(pause=True)  # send nothing yet
        chid = ChannelID(A, B, 1)
        await a.engine.open_channel(B, chid, root, ALL_SELECTOR_NODE, pull_message(1, root))
        await quiesce(0.05)
        rid = a.wire[0].requests[0].id
        intruder = Block.of(b"nobody asked for this")
        a.engine.handle_message(B, GraphsyncMessage(
            responses=(GraphsyncResponse(rid, ResponseStatus.PARTIAL_RESPONSE,
                                         (LinkMetadatum(intruder.cid, LinkAction.PRESENT),)),),
            blocks=(intruder,)))
        await wait_done((a, chid))
        assert a.events.log[-1][0] == "receive-error"
        assert "unexpected block" in a.events.log[-1][1]
        assert intruder.cid not in a.store
        assert a.wire[-1].requests[-1].type is RequestType.CANCEL
        await quiesce(0.05)
        assert b.events.kinds() == ["request"]  # the cancel raises no event there
        assert b.engine.resources()["parked"] == 1


async def test_responses_from_a_stranger_or_for_unknown_requests_are_ignored():
    async with pair() as (a, b):
        root, _, _ = make_dag(b.store, leaves=2)
        b.events.on_request = lambda chid, msg: Decision(pause=True)
        chid = ChannelID(A, B, 1)
        await a.engine.open_channel(B, chid, root, ALL_SELECTOR_NODE, pull_message(1, root))
        await quiesce(0.05)
        rid = a.wire[0].requests[0].id
        done = GraphsyncMessage(responses=(GraphsyncResponse(rid, ResponseStatus.COMPLETED_FULL),))
        a.engine.handle_message(PeerID(b"\x00\x08stranger"), done)
        a.engine.handle_message(B, GraphsyncMessage(
            responses=(GraphsyncResponse(b"\x01" * 16, ResponseStatus.COMPLETED_FULL),)))
        await quiesce(0.05)
        assert a.events.kinds() == ["opened"]
        assert chid in a.engine.active_channels


async def test_oversized_frames_are_refused():
    # reading: the header alone condemns it
    big = (MAX_FRAME + 1).to_bytes(4, "little")  # any bytes; build a real varint below
    from datatransfer.ipld.varint import encode_uvarint  # noqa: PLC0415

    data = encode_uvarint(MAX_FRAME + 1) + b"\x00" * 16
    pos = 0

    async def receive_exact(n: int) -> bytes:
        nonlocal pos
        out = data[pos: pos + n]
        pos += n
        return out

    with pytest.raises(GraphsyncWireError):
        await read_frame(receive_exact)
    assert pos < 16 and big
    # sending: a message over the frame limit fails the channel (never sent)
    async with pair(max_frame=64 * 1024) as (a, b):
        root, _, _ = make_dag(b.store, leaves=2, leaf_size=100_000)
        chid = ChannelID(A, B, 1)
        await a.engine.open_channel(B, chid, root, ALL_SELECTOR_NODE, pull_message(1, root))
        await wait_done((b, chid))
        assert b.events.log[-1][0] == "disconnected"
        assert "frame limit" in b.events.log[-1][1]


async def test_malformed_frame_is_refused():
    async with pair() as (a, _b):
        with pytest.raises(GraphsyncWireError):
            a.engine.handle_frame(B, b"\xa1\x63gs2\x01")
        assert a.engine.stats.bad_frames == 1


async def test_request_without_data_transfer_extension_is_rejected():
    async with pair() as (a, b):
        root, _, _ = make_dag(b.store, leaves=2)
        req = GraphsyncRequest.new(root, ALL_SELECTOR_NODE)
        b.engine.handle_message(A, GraphsyncMessage(requests=(req,)))
        await quiesce(0.05)
        assert b.events.log == []
        (rsp,) = b.wire[-1].responses
        assert rsp.request_id == req.id and rsp.status is ResponseStatus.REJECTED


async def test_manager_rejection_completes_the_receiver_with_an_error():
    async with pair() as (a, b):
        root, _, _ = make_dag(b.store, leaves=2)
        refusal = new_response(1, accepted=False)
        b.events.on_request = lambda chid, msg: Decision(message=refusal, accept=False)
        chid = ChannelID(A, B, 1)
        await a.engine.open_channel(B, chid, root, ALL_SELECTOR_NODE, pull_message(1, root))
        await wait_done((a, chid))
        assert ("response", chid, refusal) in a.events.log
        assert a.events.log[-1] == ("completed", "request rejected")
        assert b.engine.is_idle()


async def test_a_root_the_sender_lacks_ends_with_content_not_found_as_go_graphsync_does():
    """go-graphsync's responder whose first load fails finishes the request
    with RequestFailedContentNotFound (34), the root announced missing ("m")
    and no block; both ends report it as "content not found"."""
    async with pair() as (a, b):
        root, _, _ = make_dag(MemoryBlockstore(), leaves=2)  # nowhere B can see
        chid = ChannelID(A, B, 1)
        await a.engine.open_channel(B, chid, root, ALL_SELECTOR_NODE, pull_message(1, root))
        await wait_done((a, chid), (b, chid))
        last = b.wire[-1].responses[-1]
        assert last.status is ResponseStatus.CONTENT_NOT_FOUND
        assert last.metadata == (LinkMetadatum(root, LinkAction.MISSING),)
        assert not any(m.blocks for m in b.wire)
        assert b.events.log[-1] == ("completed", f"content not found: {root} is not held here")
        assert a.events.kinds() == ["opened", "completed"]
        assert a.events.log[-1][1].startswith("content not found")
        assert a.engine.is_idle() and b.engine.is_idle()


async def test_content_not_found_from_a_go_sender_without_text_names_the_root():
    """A Go responder sends status 34 with no error extension: the receiver
    still says what was not found."""
    async with pair() as (a, b):
        root, _, _ = make_dag(MemoryBlockstore(), leaves=2)
        b.events.on_request = lambda chid, msg: Decision(pause=True)  # B stays silent
        chid = ChannelID(A, B, 1)
        await a.engine.open_channel(B, chid, root, ALL_SELECTOR_NODE, pull_message(1, root))
        await quiesce(0.05)
        rid = a.wire[0].requests[0].id
        a.engine.handle_message(B, GraphsyncMessage(responses=(GraphsyncResponse(
            rid, ResponseStatus.CONTENT_NOT_FOUND, (LinkMetadatum(root, LinkAction.MISSING),)),)))
        await wait_done((a, chid))
        assert a.events.log[-1] == (
            "completed", f"content not found: the sender does not hold {root}")


async def test_a_missing_block_below_the_root_is_not_content_not_found():
    """Only a missing root is "content not found" (go-graphsync: the first
    load failed); a block missing further down ends the request as failed."""
    async with pair() as (a, b):
        root, _, order = make_dag(b.store, leaves=6)
        b.store.delete(order[-1])
        chid = ChannelID(A, B, 1)
        await a.engine.open_channel(B, chid, root, ALL_SELECTOR_NODE, pull_message(1, root))
        await wait_done((a, chid), (b, chid))
        assert b.wire[-1].responses[-1].status is ResponseStatus.UNKNOWN
        assert b.events.log[-1][0] == "completed" and "cannot load block" in b.events.log[-1][1]


async def test_requests_over_the_per_peer_limit_wait_their_turn():
    async with pair(max_requests_per_peer=1) as (a, b):
        root, _, order = make_dag(b.store, leaves=2)
        b.events.on_request = lambda chid, msg: Decision(pause=True)  # stays in progress
        first, second = ChannelID(A, B, 1), ChannelID(A, B, 2)
        await a.engine.open_channel(B, first, root, ALL_SELECTOR_NODE, pull_message(1, root))
        await a.engine.open_channel(B, second, root, ALL_SELECTOR_NODE, pull_message(2, root))
        await quiesce(0.05)
        # the second waits: not refused, not yet shown to the Manager
        assert b.engine.stats.queued == 1 and b.engine.stats.busy_refused == 0
        assert [e[1] for e in b.events.log if e[0] == "request"] == [first]
        assert b.engine.resources()["waiting"] == 1
        b.events.on_request = None
        await a.engine.close_channel(first)  # the first ends: the second is served
        await wait_done((a, second))
        assert [e[1] for e in b.events.log if e[0] == "request"] == [first, second]
        assert [e for e in a.events.log if e[0] == "completed"] == [("completed", None)]
        assert all(cid in a.store for cid in order)


async def test_a_reopened_request_replaces_the_one_waiting_at_the_sender():
    """A receiver that reopens a channel (a restart after a timeout) while
    its request still waits in the sender's queue cancels that request:
    restarting again and again must not fill the queue (1,024 per peer)
    until the peer's other channels are refused as busy."""
    async with pair(max_requests_per_peer=1) as (a, b):
        root, _, order = make_dag(b.store, leaves=2)
        b.events.on_request = lambda chid, msg: Decision(pause=True)  # stays in progress
        first, second = ChannelID(A, B, 1), ChannelID(A, B, 2)
        await a.engine.open_channel(B, first, root, ALL_SELECTOR_NODE, pull_message(1, root))
        for _ in range(3):
            await a.engine.open_channel(B, second, root, ALL_SELECTOR_NODE, pull_message(2, root))
        await quiesce(0.05)
        assert b.engine.resources()["waiting"] == 1
        b.events.on_request = None
        await a.engine.close_channel(first)  # the first ends: the second is served, once
        await wait_done((a, second))
        assert [e[1] for e in b.events.log if e[0] == "request"] == [first, second]
        assert all(cid in a.store for cid in order)


async def test_a_restart_replaces_its_waiting_request_when_the_cancel_was_lost():
    """The requester's cancel of a waiting request can be lost (the
    connection it went on was cut; then every channel of the peer restarts
    at once): the sender itself replaces a channel's waiting request with
    the newer one, so restarts never fill the queue (a full one answers
    Busy). The waiting channels are listed, so the Manager does not blame
    the peer for this node's own queue."""
    async with pair(max_requests_per_peer=1, max_queued_per_peer=2) as (a, b):
        root, _, order = make_dag(b.store, leaves=2)
        b.events.on_request = lambda chid, msg: Decision(pause=True)  # stays in progress
        first, second, third = (ChannelID(A, B, i) for i in (1, 2, 3))
        await a.engine.open_channel(B, first, root, ALL_SELECTOR_NODE, pull_message(1, root))
        await quiesce(0.05)
        ext = {EXTENSION_DATA_TRANSFER: to_node(pull_message(2, root))}
        for _ in range(3):  # the requests of three restarts, no cancel between them
            b.engine.handle_message(A, GraphsyncMessage(
                requests=(GraphsyncRequest.new(root, ALL_SELECTOR_NODE, extensions=ext),)))
        await a.engine.open_channel(B, third, root, ALL_SELECTOR_NODE, pull_message(3, root))
        await quiesce(0.05)
        assert b.engine.resources()["waiting"] == 2
        assert b.engine.stats.busy_refused == 0
        assert b.engine.queued_channels == frozenset({second, third})
        b.events.on_request = None
        await a.engine.close_channel(first)  # the first ends: the others are served, once each
        await wait_done((a, third))
        assert [e[1] for e in b.events.log if e[0] == "request"] == [first, second, third]
        assert b.engine.queued_channels == frozenset()
        assert all(cid in a.store for cid in order)


async def test_a_full_queue_answers_busy_and_a_cancel_leaves_the_queue():
    async with pair(max_requests_per_peer=1, max_queued_per_peer=1) as (a, b):
        root, _, _ = make_dag(b.store, leaves=2)
        b.events.on_request = lambda chid, msg: Decision(pause=True)
        chids = [ChannelID(A, B, i) for i in (1, 2, 3)]
        for i, chid in enumerate(chids, 1):
            await a.engine.open_channel(B, chid, root, ALL_SELECTOR_NODE, pull_message(i, root))
        await wait_done((a, chids[2]))
        completed = [e for e in a.events.log if e[0] == "completed"]
        assert len(completed) == 1 and "waiting" in completed[0][1]
        assert b.engine.stats.busy_refused == 1
        assert any(r.status is ResponseStatus.BUSY for m in b.wire for r in m.responses)
        await a.engine.close_channel(chids[1])  # cancels the waiting request
        await quiesce(0.05)
        assert b.engine.resources()["waiting"] == 0
        await a.engine.close_channel(chids[0])
        await quiesce(0.05)
        assert [e[1] for e in b.events.log if e[0] == "request"] == [chids[0]]
        assert b.engine.resources()["parked"] == 1  # until the Manager cleans it up
        await b.engine.cleanup_channel(chids[0])
        assert b.engine.is_idle()


async def test_reopening_replaces_the_request_and_old_news_is_dropped():
    async with pair() as (a, b):
        root, _, order = make_dag(b.store, leaves=4)
        b.events.on_request = lambda chid, msg: Decision(pause=True)
        chid = ChannelID(A, B, 1)
        await a.engine.open_channel(B, chid, root, ALL_SELECTOR_NODE, pull_message(1, root))
        await quiesce(0.05)
        old_rid = a.wire[0].requests[0].id
        b.events.on_request = None
        await a.engine.open_channel(B, chid, root, ALL_SELECTOR_NODE, pull_message(1, root))
        await wait_done((a, chid), (b, chid))
        # the old request's completion is ignored
        a.engine.handle_message(B, GraphsyncMessage(
            responses=(GraphsyncResponse(old_rid, ResponseStatus.REJECTED),)))
        await quiesce(0.05)
        assert a.events.kinds().count("completed") == 1
        assert a.events.log[-1] == ("completed", None)
        assert all(cid in a.store for cid in order)
        assert a.engine.is_idle() and b.engine.is_idle()


async def test_send_to_a_stopped_engine_fails():
    store = MemoryBlockstore()

    async def nowhere(peer, msg):  # type: ignore[no-untyped-def]
        raise PeerUnreachable("no route")

    engine = GraphsyncEngine(A, store, nowhere, nowhere)
    with pytest.raises(PeerUnreachable):
        await engine.send_message(B, new_response(1, accepted=True))


async def test_a_message_arriving_while_the_engine_stops_is_dropped():
    """A peer's message delivered while the engine's task group winds down
    (its last task just ended, so it takes no new ones) is dropped as if the
    node were gone; it used to raise RuntimeError into the sender (over the
    in-memory network, whose delivery is a call: a client paying a provider
    that was stopping). The moment falls in a scheduling race, so it is
    tried many times."""

    async def nowhere(peer, msg):  # type: ignore[no-untyped-def]
        raise PeerUnreachable("no route")

    for _ in range(40):
        engine = GraphsyncEngine(A, MemoryBlockstore(), nowhere, nowhere)
        last_task_ending = anyio.Event()
        events = Events()

        async def blocked_on_message(sender, message, _ending=last_task_ending):  # type: ignore[no-untyped-def]
            try:
                await anyio.sleep_forever()
            finally:
                _ending.set()  # and the task ends: the engine's group closes

        events.on_message = blocked_on_message  # type: ignore[method-assign]
        with anyio.fail_after(DEADLINE):
            async with anyio.create_task_group() as tg:
                await tg.start(engine.serve, events)
                engine.handle_dt_message(B, cancel_request(1))
                await anyio.wait_all_tasks_blocked()

                async def deliver_while_stopping(_engine=engine,
                                                 _ending=last_task_ending) -> None:
                    with anyio.CancelScope(shield=True):
                        await _ending.wait()
                        # another peer: a new lane, a new task
                        _engine.handle_dt_message(PeerID(b"\x00\x08peer-c__"),
                                                  cancel_request(2))

                tg.start_soon(deliver_while_stopping)
                await anyio.wait_all_tasks_blocked()
                tg.cancel_scope.cancel()
        assert engine.is_idle()


async def test_peer_lost_ends_every_channel_with_that_peer():
    async with pair() as (a, b):
        root, _, _ = make_dag(b.store, leaves=3)
        b.events.on_request = lambda chid, msg: Decision(pause=True)
        chid = ChannelID(A, B, 1)
        await a.engine.open_channel(B, chid, root, ALL_SELECTOR_NODE, pull_message(1, root))
        await quiesce(0.05)
        a.engine.peer_lost(B, "gone")
        b.engine.peer_lost(A, "gone")
        await wait_done((a, chid), (b, chid))
        await quiesce(0.05)
        # each side's channel hears of it, and the peer-level notice (on a
        # lane of its own: either may come first) names the channels told,
        # so that the Manager tells the peer's others
        for side, other in ((a, B), (b, A)):
            told = [e for e in side.events.log if e[0] in ("disconnected", "peer-lost")]
            assert sorted(told, key=repr) == [
                ("disconnected", "gone"), ("peer-lost", other, frozenset({chid}))]
        assert a.engine.is_idle() and b.engine.is_idle()


async def test_peer_lost_is_told_with_no_channel_open():
    """A peer lost while no data request with it is open is still told:
    the Manager may hold channels with it (an initiator waiting for the
    responder's last word)."""
    async with pair() as (a, b):
        a.engine.peer_lost(B, "gone")
        await quiesce(0.05)
        assert a.events.log == [("peer-lost", B, frozenset())]
        assert a.engine.is_idle()


async def test_backlog_of_received_blocks_is_bounded():
    async with pair(max_backlog_bytes=1000) as (a, b):
        root, _, order = make_dag(b.store, leaves=6, leaf_size=2000)
        gate = anyio.Event()
        blocked = anyio.Event()

        async def slow(chid, cid, size, index):  # type: ignore[no-untyped-def]
            a.events.log.append(("received", index))
            if index == 1:
                blocked.set()
                await gate.wait()
            return PROCEED

        a.events.on_data_received = slow  # type: ignore[method-assign]
        chid = ChannelID(A, B, 1)
        await a.engine.open_channel(B, chid, root, ALL_SELECTOR_NODE, pull_message(1, root))
        with anyio.fail_after(DEADLINE):
            await blocked.wait()
        assert a.engine.backlog_bytes > 1000
        waited = anyio.Event()

        async def reader():  # type: ignore[no-untyped-def]
            await a.engine.wait_backlog()
            waited.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(reader)
            await quiesce(0.05)
            assert not waited.is_set()
            gate.set()
            with anyio.fail_after(DEADLINE):
                await waited.wait()
        await wait_done((a, chid), (b, chid))
        assert a.engine.backlog_bytes == 0
        assert a.events.log[-1] == ("completed", None)


# -- the frame read deadline ------------------------------------------------------------


def _chunk_feed() -> tuple[Any, Callable[[int], Any]]:
    """A ``receive_exact`` over chunks the test sends when it likes."""
    send, recv = anyio.create_memory_object_stream[bytes](16)
    buf = bytearray()

    async def receive_exact(n: int) -> bytes:
        while len(buf) < n:
            buf.extend(await recv.receive())
        out = bytes(buf[:n])
        del buf[:n]
        return out

    return send, receive_exact


@pytest.mark.parametrize(
    "anyio_backend",
    [pytest.param(("trio", {"clock": MockClock(autojump_threshold=0)}), id="trio-mockclock")],
)
async def test_a_frame_must_complete_within_the_deadline_once_its_first_byte_arrived():
    # Virtual time (trio's MockClock jumps while every task waits): the two
    # halves of the last frame come at the same instant however busy the
    # machine, and the deadline runs out only while nothing else can happen.
    from datatransfer.ipld.varint import encode_uvarint  # noqa: PLC0415

    payload = bytes(range(200))  # 200 needs a two-byte length varint
    data = encode_uvarint(len(payload)) + payload
    for cut in (1, 2, 50):  # inside the header, right after it, inside the body
        send, receive_exact = _chunk_feed()
        await send.send(data[:cut])
        with pytest.raises(FrameTimeout, match="not complete within 0.05 s"):
            await read_frame(receive_exact, frame_timeout=0.05)
    # idle time before a frame is not limited, and a whole frame reads fine
    send, receive_exact = _chunk_feed()
    got: list[bytes | None] = []

    async def reader() -> None:
        got.append(await read_frame(receive_exact, frame_timeout=0.05))
        got.append(await read_frame(receive_exact, frame_timeout=0.05))

    async with anyio.create_task_group() as tg:
        tg.start_soon(reader)
        await quiesce(0.2)  # idle for longer than the deadline
        await send.send(data)
        await quiesce(0.2)
        await send.send(data[:1])  # the next frame may take its time within the deadline
        await send.send(data[1:])
    assert got == [payload, payload]


class _StubHost:
    """Just enough of a libp2p host for Libp2pTransport.serve: no network."""

    def get_id(self) -> Any:
        return SimpleNamespace(to_bytes=lambda: bytes(A))

    def set_stream_handler(self, protocol: Any, handler: Any) -> None:
        pass

    def remove_stream_handler(self, protocol: Any) -> None:
        pass

    def get_network(self) -> Any:
        return SimpleNamespace(register_notifee=lambda n: None, remove_notifee=lambda n: None)


class _FakeStream:
    """An inbound libp2p stream whose chunks the test sends; the read blocks
    (forever, unless the test sends more) when none is waiting."""

    def __init__(self, peer: PeerID) -> None:
        self.muxed_conn = SimpleNamespace(peer_id=SimpleNamespace(to_bytes=lambda: bytes(peer)))
        self.feed, self._chunks = anyio.create_memory_object_stream[bytes](16)
        self.was_reset = anyio.Event()
        self.was_closed = anyio.Event()

    async def read(self, n: int | None = None) -> bytes:
        try:
            return await self._chunks.receive()
        except anyio.EndOfStream:
            return b""

    async def reset(self) -> None:
        self.was_reset.set()

    async def close(self) -> None:
        self.was_closed.set()


@pytest.mark.parametrize(
    "anyio_backend",
    [pytest.param(("trio", {"clock": MockClock(autojump_threshold=0)}), id="trio-mockclock")],
)
async def test_libp2p_reader_resets_a_stream_stalled_mid_frame_and_others_keep_working(caplog):
    # Virtual time (trio's MockClock jumps while every task waits): the
    # transport's default deadline applies without the test waiting for it.
    from transport.libp2p.transport import Libp2pTransport  # noqa: PLC0415

    caplog.set_level(logging.WARNING, logger="transport.libp2p.transport")
    transport = Libp2pTransport(_StubHost(), MemoryBlockstore())  # type: ignore[arg-type]
    frame = encode_frame(GraphsyncMessage(requests=(GraphsyncRequest.cancel(b"\x01" * 16),)))
    stalled, good = _FakeStream(B), _FakeStream(PeerID(b"\x00\x08peer-c__"))
    async with anyio.create_task_group() as tg:
        await tg.start(transport.serve, Events())
        tg.start_soon(transport._handle_stream, stalled)
        tg.start_soon(transport._handle_stream, good)
        with anyio.fail_after(3600):  # virtual seconds: without a deadline this fails
            await good.feed.send(frame)
            await stalled.feed.send(frame[: len(frame) // 2])  # then nothing more
            await anyio.sleep(3)  # (virtual) idle on the good stream is fine
            await stalled.was_reset.wait()
            await good.feed.send(frame)
            await good.feed.aclose()
            await good.was_closed.wait()
        tg.cancel_scope.cancel()
    assert transport.stats.messages_received == 2
    assert transport.stats.bad_frames == 1
    assert not good.was_reset.is_set() and not stalled.was_closed.is_set()
    assert any("not complete within 10 s" in r.getMessage() for r in caplog.records)


# -- pause and resume as go-graphsync's requester does them ----------------------------


def _request_ext(message: Any, chid: ChannelID, skip: int = 0) -> dict[str, Any]:
    """The extensions go-data-transfer v1.15 + go-graphsync v0.13 put on a
    data request (with ``skip``: do-not-send-first-blocks, as a resumed
    request carries it)."""
    ext: dict[str, Any] = {EXTENSION_DATA_TRANSFER: to_node(message),
                           EXTENSION_DEDUP_BY_KEY: f"data-transfer-{chid}"}
    if skip:
        ext[EXTENSION_DO_NOT_SEND_FIRST_BLOCKS] = skip
    return ext


async def test_responder_serves_a_go_graphsync_resume_from_the_skip_point():
    """A go-graphsync requester (v0.13.1 requestmanager) pauses with a cancel
    and resumes by sending the same request again: same id, the resume Update
    in place of the data-transfer message, do-not-send-first-blocks = k."""
    async with pair(max_block_bytes=1) as (_a, b):
        root, _, order = make_dag(b.store, leaves=6)
        n, k = len(order), 3
        chid = ChannelID(A, B, 1)
        b.events.on_queued = lambda i: Decision(pause=True) if i == k + 1 else PROCEED
        first = GraphsyncRequest.new(root, ALL_SELECTOR_NODE,
                                     extensions=_request_ext(pull_message(1, root), chid))
        b.engine.handle_message(A, GraphsyncMessage(requests=(first,)))
        with anyio.fail_after(DEADLINE):
            while not any(r.status is ResponseStatus.PAUSED for m in b.wire for r in m.responses):
                await anyio.sleep(0.01)
        assert [blk.cid for m in b.wire for blk in m.blocks] == order[:k]
        b.engine.handle_message(A, GraphsyncMessage(requests=(GraphsyncRequest.cancel(first.id),)))
        await quiesce(0.05)
        assert b.events.kinds() == ["request"] + ["queued", "sent"] * k + ["queued"]
        assert chid not in b.engine.active_channels and b.engine.resources()["parked"] == 1
        b.events.on_queued = None
        resume = update_request(1, paused=False)
        again = GraphsyncRequest.new(root, ALL_SELECTOR_NODE, id=first.id,
                                     extensions=_request_ext(resume, chid, skip=k))
        wire_before = len(b.wire)
        b.engine.handle_message(A, GraphsyncMessage(requests=(again,)))
        await wait_done((b, chid))
        assert b.events.log[1 + 2 * k + 1] == ("request", chid, resume)
        assert [e[1] for e in b.events.log if e[0] == "sent"] == list(range(1, n + 1))
        assert [e[1] for e in b.events.log if e[0] == "queued"] == [
            *range(1, k + 2), *range(k + 1, n + 1)]  # (k+1 was queued, then paused)
        walk = [(md.link, md.action) for m in b.wire[wire_before:] for r in m.responses
                for md in r.metadata]
        assert walk == [(cid, LinkAction.PRESENT) for cid in order]  # held ones announced
        assert [blk.cid for m in b.wire[wire_before:] for blk in m.blocks] == order[k:]
        assert all(r.request_id == first.id for m in b.wire[wire_before:] for r in m.responses)
        assert b.wire[-1].responses[-1].status is ResponseStatus.COMPLETED_FULL
        assert b.engine.is_idle()


async def test_paused_receiver_takes_only_what_comes_next_and_skips_a_new_walks_held_part():
    """Entries in flight for the cancelled request: the next block is taken,
    anything else (and the cancelled request's end) dropped without failing.
    After the resume, a block still in flight is taken too, and the new
    walk's entries for blocks held by then are discarded."""
    async with pair() as (a, b):
        root, _, order = make_dag(b.store, leaves=6)
        n = len(order)
        blk = {cid: Block(cid, b.store.get(cid)) for cid in order}
        b.events.on_request = lambda chid, msg: Decision(pause=True)  # B itself sends nothing
        chid = ChannelID(A, B, 1)
        await a.engine.open_channel(B, chid, root, ALL_SELECTOR_NODE, pull_message(1, root))
        await quiesce(0.05)
        rid = a.wire[0].requests[0].id
        await a.engine.pause_channel(chid)
        assert a.wire[-1].requests == (GraphsyncRequest.cancel(rid),)

        def feed(entries: list[tuple[int, bool]], status=ResponseStatus.PARTIAL_RESPONSE):  # type: ignore[no-untyped-def]
            meta = tuple(LinkMetadatum(order[i], LinkAction.PRESENT) for i, _ in entries)
            a.engine.handle_message(B, GraphsyncMessage(
                responses=(GraphsyncResponse(rid, status, meta),),
                blocks=tuple(blk[order[i]] for i, carried in entries if carried)))

        feed([(0, True), (2, True)])  # block 1, then 3 where 2 comes next: dropped
        feed([], ResponseStatus.COMPLETED_FULL)  # the cancelled request's end: ignored
        await quiesce(0.05)
        assert a.events.kinds() == ["opened", "received"]
        assert order[2] not in a.store
        await a.engine.resume_channel(chid, update_request(1, paused=False))
        again = a.wire[-1].requests[0]
        assert again.type is RequestType.NEW and again.id == rid
        assert again.extensions[EXTENSION_DO_NOT_SEND_FIRST_BLOCKS] == 1
        feed([(1, True)])  # block 2, still in flight: the next one, taken
        # the new walk (skip 1): 1 announced, then 2.. carried; 2 is held by
        # now, so both its entries are discarded, 3.. taken
        feed([(0, False), (1, True), *[(i, True) for i in range(2, n)]],
             ResponseStatus.COMPLETED_FULL)
        await wait_done((a, chid))
        assert [e[1] for e in a.events.log if e[0] == "received"] == list(range(1, n + 1))
        assert a.events.log[-1] == ("completed", None)
        assert all(cid in a.store for cid in order)


def record_batches(store: MemoryBlockstore) -> list[list[Any]]:
    """The CIDs of each ``put_many`` call on ``store``, as they come."""
    batches: list[list[Any]] = []
    put_many = store.put_many

    def recorded(blocks):  # type: ignore[no-untyped-def]
        blocks = list(blocks)
        batches.append([blk.cid for blk in blocks])
        put_many(blocks)

    store.put_many = recorded  # type: ignore[method-assign]
    return batches


@pytest.mark.parametrize("limit", [None, 2500])
async def test_receiver_writes_the_blocks_of_queued_responses_together(limit):
    """Responses waiting on the channel's lane have their blocks written in
    one transaction (up to ``write_batch_bytes``), and each block is
    reported only once it is in the store, in order, before the end."""
    options = {} if limit is None else {"write_batch_bytes": limit}
    async with pair(**options) as (a, b):
        root, _, order = make_dag(b.store, leaves=6, leaf_size=1000)
        n = len(order)
        blk = {cid: Block(cid, b.store.get(cid)) for cid in order}
        batches = record_batches(a.store)
        stored_when_reported: list[bool] = []

        def received(index: int) -> Decision:
            stored_when_reported.append(order[index - 1] in a.store)
            return PROCEED

        a.events.on_received = received
        b.events.on_request = lambda chid, msg: Decision(pause=True)  # B itself sends nothing
        chid = ChannelID(A, B, 1)
        await a.engine.open_channel(B, chid, root, ALL_SELECTOR_NODE, pull_message(1, root))
        await quiesce(0.05)
        rid = a.wire[0].requests[0].id
        for i in range(n):  # all queued before the lane runs: one block per message
            status = ResponseStatus.COMPLETED_FULL if i == n - 1 else ResponseStatus.PARTIAL_RESPONSE
            a.engine.handle_message(B, GraphsyncMessage(
                responses=(GraphsyncResponse(rid, status, (
                    LinkMetadatum(order[i], LinkAction.PRESENT),)),),
                blocks=(blk[order[i]],)))
        await wait_done((a, chid))
        assert [cid for batch in batches for cid in batch] == order
        if limit is None:
            assert len(batches) == 1
        else:
            assert len(batches) > 1
            for batch in batches[:-1]:  # each flushed once it reached the limit
                sizes = [len(blk[cid].data) for cid in batch]
                assert sum(sizes) >= limit > sum(sizes[:-1])
        assert stored_when_reported == [True] * n
        assert a.events.kinds() == ["opened"] + ["received"] * n + ["completed"]
        assert a.engine.backlog_bytes == 0 and a.engine.is_idle()


async def test_paused_receiver_fails_on_a_wrong_block_once_the_new_walk_began():
    """Leniency ends where the new walk's root entry arrives: past the held
    blocks, the next entry must be the block the traversal needs."""
    async with pair() as (a, b):
        root, _, order = make_dag(b.store, leaves=4)
        blk = {cid: Block(cid, b.store.get(cid)) for cid in order}
        b.events.on_request = lambda chid, msg: Decision(pause=True)
        chid = ChannelID(A, B, 1)
        await a.engine.open_channel(B, chid, root, ALL_SELECTOR_NODE, pull_message(1, root))
        await quiesce(0.05)
        rid = a.wire[0].requests[0].id
        a.engine.handle_message(B, GraphsyncMessage(
            responses=(GraphsyncResponse(rid, ResponseStatus.PARTIAL_RESPONSE,
                                         (LinkMetadatum(order[0], LinkAction.PRESENT),)),),
            blocks=(blk[order[0]],)))
        await quiesce(0.05)
        await a.engine.pause_channel(chid)
        await a.engine.resume_channel(chid, update_request(1, paused=False))
        meta = (LinkMetadatum(order[0], LinkAction.PRESENT),
                LinkMetadatum(order[2], LinkAction.PRESENT))  # 3 where 2 is next
        a.engine.handle_message(B, GraphsyncMessage(
            responses=(GraphsyncResponse(rid, ResponseStatus.PARTIAL_RESPONSE, meta),),
            blocks=(blk[order[2]],)))
        await wait_done((a, chid))
        assert a.events.log[-1][0] == "receive-error"
        assert "unexpected block" in a.events.log[-1][1]
        assert order[2] not in a.store


async def test_receiver_whose_traversal_finished_while_paused_completes_on_resume():
    """Blocks in flight complete the traversal while paused, and the sender's
    end (20) arrives too: the channel stays open until the resume, which
    then completes it without asking again."""
    async with pair() as (a, b):
        root, _, order = make_dag(b.store, leaves=2)
        blk = {cid: Block(cid, b.store.get(cid)) for cid in order}
        b.events.on_request = lambda chid, msg: Decision(pause=True)
        chid = ChannelID(A, B, 1)
        await a.engine.open_channel(B, chid, root, ALL_SELECTOR_NODE, pull_message(1, root))
        await quiesce(0.05)
        rid = a.wire[0].requests[0].id
        await a.engine.pause_channel(chid)
        a.engine.handle_message(B, GraphsyncMessage(
            responses=(GraphsyncResponse(rid, ResponseStatus.COMPLETED_FULL, tuple(
                LinkMetadatum(cid, LinkAction.PRESENT) for cid in order)),),
            blocks=tuple(blk.values())))
        await quiesce(0.05)
        assert [e[1] for e in a.events.log if e[0] == "received"] == list(range(1, len(order) + 1))
        assert "completed" not in a.events.kinds()  # held open by the pause
        sent = len(a.wire)
        resume = update_request(1, paused=False)
        await a.engine.resume_channel(chid, resume)
        await wait_done((a, chid))
        assert a.events.log[-1] == ("completed", None)
        assert len(a.wire) == sent  # no request again: nothing is missing
        assert ("message", resume) in b.events.log  # the message went on its own
        assert a.engine.is_idle()


@asynccontextmanager
async def manager_responder(reval: Any = None) -> AsyncIterator[SimpleNamespace]:
    """A Manager serving over a GraphsyncEngine as B; the test plays the
    requester A by hand. What B sends is decoded from real frames."""
    wire: list[GraphsyncMessage] = []
    dt: list[Any] = []

    async def send(peer: PeerID, msg: GraphsyncMessage) -> None:
        for payload in split_frames(encode_frame(msg)):
            wire.append(decode_message(payload))

    async def send_dt(peer: PeerID, message: Any) -> None:
        dt.append(message)

    store = MemoryBlockstore()
    engine = GraphsyncEngine(B, store, send, send_dt, max_block_bytes=1)
    manager = Manager(engine, store=SqliteChannelStore(), config=FAST)
    manager.register_voucher_type(LabelVoucher, ScriptedValidator())
    if reval is not None:
        manager.register_revalidator(LabelVoucher, reval)
    rec = Recorder.watch(manager)
    async with manager:
        yield SimpleNamespace(engine=engine, manager=manager, store=store, wire=wire, dt=dt,
                              rec=rec)


async def _pull_then_go_cancel(b: Any, gate: Any, root: Any, chid: ChannelID) -> GraphsyncRequest:
    """A's pull request to ``b``'s Manager responder, then, once ``gate``
    holds B deciding on a block, the graphsync cancel a Go requester sends
    when it pauses. Returns the request."""
    opening = new_request(chid.id, base_cid=root, selector=ALL_SELECTOR_NODE,
                          voucher_type=LabelVoucher.type_id,
                          voucher=LabelVoucher().to_node(), pull=True)
    first = GraphsyncRequest.new(root, ALL_SELECTOR_NODE, extensions=_request_ext(opening, chid))
    b.engine.handle_message(A, GraphsyncMessage(requests=(first,)))
    with anyio.fail_after(DEADLINE):
        await gate.reached.wait()
    b.engine.handle_message(A, GraphsyncMessage(requests=(GraphsyncRequest.cancel(first.id),)))
    return first


@pytest.mark.parametrize("responder_pauses_too", [False, True], ids=["initiator", "both"])
async def test_manager_responder_takes_a_go_requesters_pause_and_resume(responder_pauses_too):
    """Finding I-1 of the Go interop run: go-data-transfer v1.15.3 over
    go-graphsync v0.13.1 pauses a pull with a graphsync cancel plus an
    Update(paused) on its own, and resumes with the same request again
    carrying Update(paused=false) and do-not-send-first-blocks. Our responder
    used to refuse that request (30): now it resumes from the skip point."""
    gate = Gate(at=3)
    async with manager_responder(gate) as b:
        root, size, order = make_dag(b.store, leaves=6)
        chid = ChannelID(A, B, 1)
        first = await _pull_then_go_cancel(b, gate, root, chid)  # B was deciding on block 3
        b.engine.handle_dt_message(A, update_request(1, paused=True))
        gate.open.set()
        await b.manager.wait(chid, {S.InitiatorPaused}, timeout=DEADLINE)
        await quiesce(0.05)
        k = len([blk for m in b.wire for blk in m.blocks])
        assert k == 3  # the block being decided went out before the cancel was seen
        if responder_pauses_too:
            await b.manager.pause_channel(chid)
            assert b.manager.channel_status(chid) == S.BothPaused
        wire_before = len(b.wire)
        again = GraphsyncRequest.new(
            root, ALL_SELECTOR_NODE, id=first.id,
            extensions=_request_ext(update_request(1, paused=False), chid, skip=k))
        b.engine.handle_message(A, GraphsyncMessage(requests=(again,)))
        if responder_pauses_too:
            await b.manager.wait(chid, {S.ResponderPaused}, timeout=DEADLINE)
            await quiesce(0.05)
            # accepted, held: status 15 on the new request, nothing sent
            assert [(r.request_id, r.status) for m in b.wire[wire_before:]
                    for r in m.responses] == [(first.id, ResponseStatus.PAUSED)]
            await b.manager.resume_channel(chid)
        with anyio.fail_after(DEADLINE):
            while not any(r.status is ResponseStatus.COMPLETED_FULL
                          for m in b.wire for r in m.responses):
                await anyio.sleep(0.01)
        assert not any(r.status is ResponseStatus.REJECTED for m in b.wire for r in m.responses)
        walk = [(md.link, md.action) for m in b.wire[wire_before:] for r in m.responses
                for md in r.metadata]
        assert walk == [(cid, LinkAction.PRESENT) for cid in order]
        assert [blk.cid for m in b.wire for blk in m.blocks] == order  # each once
        await quiesce(0.05)
        assert b.manager.events.flush(DEADLINE)
        state = b.manager.channel_state(chid)
        assert state.sent == size
        codes = b.rec.codes(chid)
        assert "RequestCancelled" not in codes and "Error" not in codes
        middle = (["InitiatorPaused", "BothPaused", "ResponderPaused", "Ongoing"]
                  if responder_pauses_too else ["InitiatorPaused", "Ongoing"])
        seen = b.rec.statuses(chid)
        assert seen[seen.index("InitiatorPaused"):][:len(middle)] == middle


@pytest.mark.parametrize("case", ["cancel", "unknown-channel", "voucher"])
async def test_manager_responder_judges_other_messages_on_a_data_request(case):
    """go-data-transfer takes any request message on a graphsync request:
    a Cancel cancels the channel (the request is refused); one for no known
    channel is refused; a Voucher is handled as on its own, then served."""
    gate = Gate(at=2)
    async with manager_responder(gate) as b:
        root, size, order = make_dag(b.store, leaves=4)
        chid = ChannelID(A, B, 1)
        first = await _pull_then_go_cancel(b, gate, root, chid)
        gate.open.set()
        await quiesce(0.05)
        k = len([blk for m in b.wire for blk in m.blocks])
        if case == "cancel":
            message: Any = cancel_request(1)
        elif case == "unknown-channel":
            message = update_request(9, paused=False)
        else:
            message = voucher_request(1, voucher_type=LabelVoucher.type_id,
                                      voucher=LabelVoucher("more").to_node())
        again = GraphsyncRequest.new(
            root, ALL_SELECTOR_NODE, id=first.id,
            extensions=_request_ext(message, ChannelID(A, B, message.transfer_id), skip=k))
        b.engine.handle_message(A, GraphsyncMessage(requests=(again,)))
        with anyio.fail_after(DEADLINE):
            while not any(r.status.is_terminal for m in b.wire for r in m.responses):
                await anyio.sleep(0.01)
        (last,) = [r for m in b.wire for r in m.responses if r.status.is_terminal]
        if case == "voucher":
            assert last.status is ResponseStatus.COMPLETED_FULL
            assert [blk.cid for m in b.wire for blk in m.blocks] == order
            assert "NewVoucher" in b.rec.codes(chid)
        else:
            assert last.status is ResponseStatus.REJECTED
            assert len([blk for m in b.wire for blk in m.blocks]) == k
        if case == "cancel":
            await b.manager.wait(chid, timeout=DEADLINE)
            assert b.manager.channel_status(chid) == S.Cancelled
        if case == "unknown-channel":
            assert b.manager.channel_status(chid) == S.Ongoing
