"""Two Managers moving a UnixFS file over real libp2p hosts on 127.0.0.1
(trio), through :class:`transport.libp2p.transport.Libp2pTransport`."""

from __future__ import annotations

import io
import random
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from _support import (
    DEADLINE,
    FAST,
    LabelVoucher,
    Node,
    NoteResult,
    PayEveryN,
    Payment,
    Recorder,
    ScriptedValidator,
    make_dag,
    pay_when_asked,
)

from datatransfer.errors import ChannelNotFound
from datatransfer.ipld.blockstore import MemoryBlockstore
from datatransfer.ipld.selector import ALL_SELECTOR_NODE
from datatransfer.ipld.unixfs import import_file
from datatransfer.manager import Manager
from datatransfer.store import SqliteChannelStore
from datatransfer.types import ChannelID, PeerID
from transport.inmem import InMemoryNetwork
from transport.libp2p import (
    RetryPolicy,
    connect,
    load_or_create_identity,
    open_host,
    peer_addrs,
)
from transport.libp2p.transport import Libp2pTransport

pytestmark = pytest.mark.anyio

LOCAL = ("/ip4/127.0.0.1/tcp/0",)
FAST_RETRY = RetryPolicy(attempts=3, min_delay=0.05, max_delay=0.2, factor=2.0, open_timeout=3.0)


@pytest.fixture
def anyio_backend() -> str:
    return "trio"


def _setup(manager: Manager, reval=None) -> None:  # type: ignore[no-untyped-def]
    manager.register_voucher_result_type(NoteResult)
    manager.register_voucher_type(LabelVoucher, ScriptedValidator())
    if reval is not None:
        manager.register_revalidator(Payment, reval)


async def _node(stack: AsyncExitStack, transport, peer, bs, reval=None) -> Node:  # type: ignore[no-untyped-def]
    manager = Manager(transport, store=SqliteChannelStore(), config=FAST)
    _setup(manager, reval)
    rec = Recorder.watch(manager)
    await stack.enter_async_context(manager)
    return Node(peer, manager, bs, rec)


@asynccontextmanager
async def libp2p_pair(tmp_path: Path, reval=None, **options) -> AsyncIterator[tuple[Node, Node]]:  # type: ignore[no-untyped-def]
    async with AsyncExitStack() as stack:
        nodes = []
        hosts = []
        for name in ("a", "b"):
            key = load_or_create_identity(tmp_path / name)
            host = await stack.enter_async_context(open_host(key, LOCAL))
            hosts.append(host)
            bs = MemoryBlockstore()
            transport = Libp2pTransport(host, bs, retry=FAST_RETRY, **options)
            nodes.append(await _node(stack, transport, transport.peer_id, bs,
                                     reval if name == "b" else None))
        await connect(hosts[0], peer_addrs(hosts[1])[0])
        yield nodes[0], nodes[1]
        for node in nodes:
            node.manager.events.flush(DEADLINE)


@asynccontextmanager
async def inmem_pair(**options: Any) -> AsyncIterator[tuple[Node, Node]]:
    """Two nodes on the same engine (``options`` for it) over the in-memory network."""
    net = InMemoryNetwork()
    async with AsyncExitStack() as stack:
        nodes = []
        for name in ("a", "b"):
            peer = PeerID(b"\x00\x08" + name.encode().ljust(8, b"_"))
            bs = MemoryBlockstore()
            nodes.append(await _node(stack, net.transport(peer, bs, **options), peer, bs))
        yield nodes[0], nodes[1]
        for node in nodes:
            node.manager.events.flush(DEADLINE)


def make_file(size: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(size)


async def settle(*nodes: Node, chid: ChannelID) -> None:
    for node in nodes:
        try:
            await node.manager.wait(chid, timeout=DEADLINE)
        except ChannelNotFound:
            pass
    for node in nodes:
        assert node.manager.events.flush(DEADLINE)


def read_back(bs: MemoryBlockstore, root) -> bytes:  # type: ignore[no-untyped-def]
    from datatransfer.ipld.unixfs import export_file  # noqa: PLC0415

    out = io.BytesIO()
    export_file(root, bs, out)
    return out.getvalue()


async def run_flow(pair, kind: str, data: bytes, chunk: int):  # type: ignore[no-untyped-def]
    async with pair as (a, b):
        source = b if kind == "pull" else a
        root = import_file(io.BytesIO(data), source.blockstore, chunk_size=chunk)
        if kind == "pull":
            chid = await a.manager.open_pull_channel(b.peer, LabelVoucher(), root,
                                                     ALL_SELECTOR_NODE)
        else:
            chid = await a.manager.open_push_channel(b.peer, LabelVoucher(), root,
                                                     ALL_SELECTOR_NODE)
        await settle(a, b, chid=chid)
        dest = a if kind == "pull" else b
        got = read_back(dest.blockstore, root)
        return (a.recorder.codes(chid), b.recorder.codes(chid),
                a.manager.channel_state(chid).status.name,
                b.manager.channel_state(chid).status.name, got)


@pytest.mark.parametrize("kind", ["pull", "push"])
@pytest.mark.parametrize("batch", [1, None], ids=["per-block", "512KiB"])
async def test_transfer_over_libp2p_matches_inmem(tmp_path, kind, batch):
    data = make_file(300_000)
    chunk = 64 * 1024
    options = {} if batch is None else {"max_block_bytes": batch}
    ref = await run_flow(inmem_pair(**options), kind, data, chunk)
    got = await run_flow(libp2p_pair(tmp_path, **options), kind, data, chunk)
    assert ref[2:4] == ("Completed", "Completed")
    assert got[2:4] == ("Completed", "Completed")
    assert ref[4] == data and got[4] == data
    # the same engine with the same batching: exactly the in-memory sequences
    assert got[0] == ref[0]
    assert got[1] == ref[1]


async def test_pay_as_you_go_pull_pauses_and_resumes_over_libp2p(tmp_path):
    reval = PayEveryN(3000, final=True)
    async with libp2p_pair(tmp_path, reval=reval) as (a, b):
        root, size, order = make_dag(b.blockstore, leaves=8)
        chid = await a.manager.open_pull_channel(b.peer, LabelVoucher(), root, ALL_SELECTOR_NODE)
        paid = await pay_when_asked(a.manager, chid)
        await settle(a, b, chid=chid)
        assert a.manager.channel_state(chid).status.name == "Completed"
        assert b.manager.channel_state(chid).status.name == "Completed"
        assert len(paid) == 3 and paid[-1] == size
        assert a.recorder.statuses(chid) == [
            "Requested", "Ongoing", "ResponderPaused", "Ongoing", "ResponderPaused", "Ongoing",
            "TransferFinished", "ResponderFinalizingTransferFinished", "Completing",
            "Completed"]
        assert a.manager.channel_state(chid).received == size
        for cid in order:
            cid.verify(a.blockstore.get(cid))


@pytest.mark.parametrize("who", ["a", "b"])
async def test_cancel_mid_transfer_over_libp2p(tmp_path, who):
    reval = PayEveryN(3000)  # the responder pauses, waiting for a payment that never comes
    async with libp2p_pair(tmp_path, reval=reval) as (a, b):
        root, size, _ = make_dag(b.blockstore, leaves=8)
        chid = await a.manager.open_pull_channel(b.peer, LabelVoucher(), root, ALL_SELECTOR_NODE)
        await a.manager.wait(chid, {__import__("statemachine").Status.ResponderPaused},
                             timeout=DEADLINE)
        canceller = a if who == "a" else b
        await canceller.manager.close_channel(chid)
        await settle(a, b, chid=chid)
        for node in (a, b):
            assert node.manager.channel_state(chid).status.name == "Cancelled"
        assert a.manager.channel_state(chid).received < size
        with anyio.fail_after(DEADLINE):
            while not (a.manager.transport.is_idle() and b.manager.transport.is_idle()):
                await anyio.sleep(0.02)


async def test_oversized_frame_resets_the_stream_and_the_node_keeps_serving(tmp_path):
    from datatransfer.ipld.varint import encode_uvarint  # noqa: PLC0415
    from transport.graphsync.framing import MAX_FRAME  # noqa: PLC0415
    from transport.libp2p import libp2p_id  # noqa: PLC0415
    from transport.libp2p.transport import GRAPHSYNC_PROTOCOL  # noqa: PLC0415

    async with libp2p_pair(tmp_path) as (a, b):
        host_a = a.manager.transport.host
        stream = await host_a.new_stream(libp2p_id(b.peer), [GRAPHSYNC_PROTOCOL])
        await stream.write(encode_uvarint(MAX_FRAME + 1) + b"\x00" * 64)
        with anyio.fail_after(DEADLINE):
            while b.manager.transport.stats.bad_frames == 0:
                await anyio.sleep(0.02)
        try:
            await stream.reset()
        except Exception:
            pass
        data = make_file(50_000)
        root = import_file(io.BytesIO(data), b.blockstore, chunk_size=16 * 1024)
        chid = await a.manager.open_pull_channel(b.peer, LabelVoucher(), root, ALL_SELECTOR_NODE)
        await settle(a, b, chid=chid)
        assert read_back(a.blockstore, root) == data


def _count_sent(manager: Manager) -> list[int]:
    """The block indices ``manager`` reports sent, in order (a spy on its
    transport-facing on_data_sent)."""
    sent: list[int] = []
    on_sent = manager.transport_events.on_data_sent

    async def count_sent(chid, cid, size, index):  # type: ignore[no-untyped-def]
        sent.append(index)
        await on_sent(chid, cid, size, index)

    manager.transport_events.on_data_sent = count_sent
    return sent


class _GateAt:
    """A revalidator that holds the sender inside on_pull_data_sent at block ``at``."""

    def __init__(self, at: int) -> None:
        self.at = at
        self.count = 0
        self.reached = anyio.Event()
        self.release = anyio.Event()

    async def on_pull_data_sent(self, channel_id, additional_bytes):  # type: ignore[no-untyped-def]
        self.count += 1
        if self.count == self.at:
            self.reached.set()
            await self.release.wait()
        return None

    async def on_push_data_received(self, channel_id, additional_bytes):  # type: ignore[no-untyped-def]
        return None

    async def revalidate(self, channel_id, voucher):  # type: ignore[no-untyped-def]
        return None

    async def on_complete(self, channel_id):  # type: ignore[no-untyped-def]
        return None


async def test_connection_loss_mid_pull_restarts_and_skips_held_blocks(tmp_path):
    from transport.libp2p import libp2p_id  # noqa: PLC0415

    k = 5
    gate = _GateAt(k + 1)
    async with libp2p_pair(tmp_path, reval=gate, max_block_bytes=1) as (a, b):
        root, size, order = make_dag(b.blockstore, leaves=12)
        sent_by_a: list = []
        original = a.manager.transport.engine._send_gs

        async def spy(peer, msg):  # type: ignore[no-untyped-def]
            sent_by_a.append(msg)
            await original(peer, msg)

        a.manager.transport.engine._send_gs = spy
        chid = await a.manager.open_pull_channel(b.peer, LabelVoucher(), root, ALL_SELECTOR_NODE)
        with anyio.fail_after(DEADLINE):
            await gate.reached.wait()
            while a.manager.channel_state(chid).received_index < k:
                await anyio.sleep(0.01)
        await a.manager.transport.host.get_network().close_peer(libp2p_id(b.peer))
        with anyio.fail_after(DEADLINE):
            while "Disconnected" not in a.recorder.codes(chid):
                await anyio.sleep(0.01)
        gate.release.set()
        await settle(a, b, chid=chid)
        sa, sb = a.manager.channel_state(chid), b.manager.channel_state(chid)
        assert (sa.status.name, sb.status.name) == ("Completed", "Completed"), (
            sa.message, sb.message)
        assert sa.received == size and sa.received_index == len(order)
        assert "Restart" in a.recorder.codes(chid)
        for cid in order:
            cid.verify(a.blockstore.get(cid))
        # the restart asked the sender to skip what the receiver held
        assert b.manager.transport.stats.requests_served == 2
        from transport.graphsync import EXTENSION_DO_NOT_SEND_FIRST_BLOCKS  # noqa: PLC0415
        from transport.graphsync.status import RequestType  # noqa: PLC0415

        new = [r for m in sent_by_a for r in m.requests if r.type is RequestType.NEW]
        assert len(new) == 2
        assert EXTENSION_DO_NOT_SEND_FIRST_BLOCKS not in new[0].extensions
        assert new[1].extensions[EXTENSION_DO_NOT_SEND_FIRST_BLOCKS] == k


class _HeldNegotiations:
    """Holds back every protocol negotiation a host answers (for streams
    peers open to it) until :attr:`release` is set: as when its answers
    queue behind megabytes of data already on the way to that peer."""

    def __init__(self, host) -> None:  # type: ignore[no-untyped-def]
        self.release = anyio.Event()
        self.waiting = 0
        mux = host.multiselect
        negotiate = mux.negotiate

        async def held(*args, **kwargs):  # type: ignore[no-untyped-def]
            self.waiting += 1
            await self.release.wait()
            return await negotiate(*args, **kwargs)

        mux.negotiate = held


async def test_receiver_pause_does_not_wait_for_the_senders_answers(tmp_path):
    """A receiver's pause never waits for the sender: the cancel goes on the
    graphsync stream already open, and the pause message on a new stream
    whose protocol (known from identify) is selected without waiting for the
    sender's answer -- which, over a connection carrying a transfer in, comes
    only after everything the sender already sent (up to Yamux's 16 MiB
    window: the whole transfer, measured against a Go sender). Here the
    sender answers no negotiation at all until the pause has returned. Then
    the pause holds: the sender stops short of the DAG until the resume, and
    every block still moves exactly once."""
    gate = _GateAt(3)
    async with libp2p_pair(tmp_path, reval=gate, max_block_bytes=1) as (a, b):
        root, size, order = make_dag(b.blockstore, leaves=16)
        sent = _count_sent(b.manager)
        chid = await a.manager.open_pull_channel(b.peer, LabelVoucher(), root, ALL_SELECTOR_NODE)
        with anyio.fail_after(DEADLINE):
            await gate.reached.wait()
        dtnet = a.manager.transport.dtnet
        handed_over = dtnet.stats.sent
        held = _HeldNegotiations(b.manager.transport.host)
        await a.manager.pause_channel(chid)
        # returned with the pause message handed over, b having answered nothing
        assert dtnet.stats.sent == handed_over + 1
        assert not held.release.is_set()
        assert a.manager.channel_state(chid).status.name == "InitiatorPaused"
        gate.release.set()
        with anyio.fail_after(DEADLINE):  # b takes the cancel; what it sent before lands
            while not (b.manager.transport.resources()["parked"] == 1
                       and a.manager.channel_state(chid).received_index == len(sent)):
                await anyio.sleep(0.01)
            assert held.waiting >= 1  # the pause message's stream, waiting for b
        held.release.set()
        await b.manager.wait(chid, {__import__("statemachine").Status.InitiatorPaused},
                             timeout=DEADLINE)
        assert len(sent) < len(order)  # held back while paused
        await a.manager.resume_channel(chid)
        await settle(a, b, chid=chid)
        for node in (a, b):
            assert node.manager.channel_state(chid).status.name == "Completed"
            assert "Disconnected" not in node.recorder.codes(chid)
        assert a.manager.channel_state(chid).received == size
        assert sorted(sent) == list(range(1, len(order) + 1))  # nothing sent twice
        assert dtnet.stats.send_failures == 0


async def test_optimistic_message_sends_stay_ordered_and_a_refusal_is_counted(tmp_path):
    """Messages to a peer that identify says speaks the protocol go without
    waiting for its answer, on one kept stream whose answer the second send
    reads, so consecutive messages reach the handler in order. Once that
    stream is settled (closed, read to the end), a peer that stopped serving
    the protocol loses the next message, on a new stream (as with Go's
    optimistic selection); the next send finds the refusal and counts it."""
    from datatransfer.messages import update_request  # noqa: PLC0415
    from transport.libp2p import DataTransferNetwork, peer_id_of  # noqa: PLC0415

    async with AsyncExitStack() as stack:
        ha, hb = [await stack.enter_async_context(
            open_host(load_or_create_identity(tmp_path / n), LOCAL)) for n in ("a", "b")]
        got: list[int] = []

        async def on_message(sender, message):  # type: ignore[no-untyped-def]
            got.append(message.transfer_id)

        net_a = DataTransferNetwork(ha, retry=FAST_RETRY)
        net_b = DataTransferNetwork(hb, on_message, retry=FAST_RETRY)
        net_b.start()
        peer_b = peer_id_of(hb)
        await connect(ha, peer_addrs(hb)[0])
        with anyio.fail_after(DEADLINE):  # identify tells a what b speaks
            while net_a._known_protocol(peer_b) is None:
                await anyio.sleep(0.01)
        for i in range(1, 6):
            await net_a.send_message(peer_b, update_request(i, paused=bool(i % 2)))
        with anyio.fail_after(DEADLINE):
            while len(got) < 5:
                await anyio.sleep(0.01)
        assert got == [1, 2, 3, 4, 5]
        assert net_a.stats.send_failures == 0
        await net_a.settle()
        net_b.stop()  # b no longer speaks it; a's peerstore still says it does
        assert net_a._known_protocol(peer_b) is not None
        await net_a.send_message(peer_b, update_request(6, paused=True))  # lost
        await net_a.send_message(peer_b, update_request(7, paused=True))
        assert net_a.stats.send_failures == 1  # 6's refusal, found before sending 7
        assert got == [1, 2, 3, 4, 5]


@pytest.mark.parametrize(
    "script, middle",
    [
        (["a.pause", "a.resume"], ["InitiatorPaused", "Ongoing"]),
        (["a.pause!", "a.resume"], ["InitiatorPaused", "Ongoing"]),
        (["b.pause", "b.resume"], ["ResponderPaused", "Ongoing"]),
        (["a.pause", "b.pause", "a.resume", "b.resume"],
         ["InitiatorPaused", "BothPaused", "ResponderPaused", "Ongoing"]),
        (["a.pause", "b.pause", "b.resume", "a.resume"],
         ["InitiatorPaused", "BothPaused", "InitiatorPaused", "Ongoing"]),
        (["b.pause", "a.pause", "a.resume", "b.resume"],
         ["ResponderPaused", "BothPaused", "ResponderPaused", "Ongoing"]),
    ],
    ids=["initiator", "initiator-racing", "responder", "both-a-first", "both-b-resumes-first",
         "both-b-first"],
)
async def test_pause_and_resume_over_libp2p_send_nothing_twice(tmp_path, script, middle):
    """The receiver (a) pauses as go-graphsync's requester does: it cancels
    its request, and resumes with the same request again carrying the resume
    Update and do-not-send-first-blocks; the sender (b) serves it from there.
    Once the blocks in flight at the pause have landed, every block is sent
    and received exactly once. ``a.pause!`` resumes without
    waiting for them: the resume then asks for blocks still in flight, which
    the sender sends again and the receiver discards -- the counts stay exact."""
    from transport.graphsync import EXTENSION_DO_NOT_SEND_FIRST_BLOCKS  # noqa: PLC0415
    from transport.graphsync.status import RequestType  # noqa: PLC0415

    gate = _GateAt(3)
    async with libp2p_pair(tmp_path, reval=gate, max_block_bytes=1) as (a, b):
        root, size, order = make_dag(b.blockstore, leaves=8)
        sent_by_a: list = []
        original = a.manager.transport.engine._send_gs

        async def spy(peer, msg):  # type: ignore[no-untyped-def]
            sent_by_a.append(msg)
            await original(peer, msg)

        a.manager.transport.engine._send_gs = spy
        sent = _count_sent(b.manager)  # every block b hands to the network
        chid = await a.manager.open_pull_channel(b.peer, LabelVoucher(), root, ALL_SELECTOR_NODE)
        with anyio.fail_after(DEADLINE):
            await gate.reached.wait()
        nodes = {"a": a, "b": b}
        racing = "a.pause!" in script
        for step, expected in zip(script, middle, strict=True):
            who, action = step.rstrip("!").split(".")
            manager = nodes[who].manager
            await (manager.pause_channel if action == "pause" else manager.resume_channel)(chid)
            gate.release.set()
            if step == "a.pause":  # let what b sent before the cancel land
                with anyio.fail_after(DEADLINE):
                    while not (b.manager.transport.resources()["parked"] == 1
                               and a.manager.channel_state(chid).received_index
                               == b.manager.channel_state(chid).sent_index):
                        await anyio.sleep(0.01)
            if expected != "Ongoing":
                for node in (a, b):
                    await node.manager.wait(
                        chid, {__import__("statemachine").Status[expected]}, timeout=DEADLINE)
        await settle(a, b, chid=chid)
        for node in (a, b):
            seen = node.recorder.statuses(chid)
            last_ongoing = len(seen) - 1 - seen[::-1].index("Ongoing")
            assert seen[2:last_ongoing + 1] == middle, (node.peer, seen)
            assert node.manager.channel_state(chid).status.name == "Completed"
            assert "RequestCancelled" not in node.recorder.codes(chid)
        assert a.manager.channel_state(chid).received == size
        assert b.manager.channel_state(chid).sent == size
        if racing:
            assert sorted(set(sent)) == list(range(1, len(order) + 1))
        else:
            assert sorted(sent) == list(range(1, len(order) + 1))  # nothing sent twice
        for cid in order:
            cid.verify(a.blockstore.get(cid))
        kinds = [r.type for m in sent_by_a for r in m.requests]
        if script[0].startswith("a.pause") or "a.pause" in script:
            assert kinds == [RequestType.NEW, RequestType.CANCEL, RequestType.NEW]
            first, again = [r for m in sent_by_a for r in m.requests
                            if r.type is RequestType.NEW]
            assert again.id == first.id
            held = again.extensions[EXTENSION_DO_NOT_SEND_FIRST_BLOCKS]
            assert 2 <= held < len(order)
        else:
            assert kinds == [RequestType.NEW]


async def test_a_graphsync_stream_the_peer_reset_is_replaced_while_still_connected(tmp_path):
    """The peer resets our graphsync stream but the connection (or another
    one) stays up, as when go-graphsync v0.18 redials us after a cut: the
    next message goes out on a new stream instead of being lost. (A lost
    Cancel left Go's old response running; sharing the restart's dedup key,
    it made Go announce blocks we never got as already sent, and the
    restarted pull against go-data-transfer v2 failed.)"""
    from datatransfer.ipld.varint import encode_uvarint  # noqa: PLC0415
    from transport.graphsync.framing import MAX_FRAME  # noqa: PLC0415
    from transport.graphsync.message import GraphsyncMessage, GraphsyncRequest  # noqa: PLC0415

    async with libp2p_pair(tmp_path) as (a, b):
        ta, tb = a.manager.transport, b.manager.transport
        cancel = GraphsyncMessage(requests=(GraphsyncRequest.cancel(b"\x01" * 16),))
        await ta._send_frame(b.peer, cancel)  # opens the stream, kept for the next ones
        stream = ta._out[b.peer].stream
        assert stream is not None
        with anyio.fail_after(DEADLINE):
            while tb.stats.messages_received < 1:
                await anyio.sleep(0.02)
        # a frame b refuses: b resets the stream, the connection stays
        await stream.write(encode_uvarint(MAX_FRAME + 1) + b"\x00" * 64)
        with anyio.fail_after(DEADLINE):
            while not stream.muxed_stream.reset_received:
                await anyio.sleep(0.02)
        assert ta.connected(b.peer)
        await ta._send_frame(b.peer, cancel)
        with anyio.fail_after(DEADLINE):
            while tb.stats.messages_received < 2:
                await anyio.sleep(0.02)
        assert ta._out[b.peer].stream is not stream
