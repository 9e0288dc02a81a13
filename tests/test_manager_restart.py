"""Persistence, restarts and "no stuck channels" (issue 4, items 4 and 5;
DESIGN.md section 6).

Every test runs real Managers on the graphsync engine over the in-memory
network (one block per graphsync message). Each node keeps its channels in
an sqlite file under ``tmp_path`` and its blocks in a MemoryBlockstore, and
reuses its transport object when its Manager is stopped and started again,
so "restart the node" means exactly: leave the Manager's ``async with``,
then start a new Manager on the same store file, blockstore and transport.

Mid-transfer points are made deterministic with :class:`Gate`, a revalidator
that holds the responder's data lane just before a given block, and every
packet is logged by a rule that never matches (:class:`Wire`), so the tests
can count exactly which blocks went over the wire and under which graphsync
request (a block's index is its place in the sender's walk of the request).
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import pytest
from _support import (
    ALL,
    DEADLINE,
    LabelVoucher,
    NoteResult,
    PayEveryN,
    Recorder,
    ScriptedValidator,
    make_dag,
    quiesce,
)
from trio.testing import MockClock

from datatransfer.config import ManagerConfig
from datatransfer.errors import Pause
from datatransfer.ipld.blockstore import MemoryBlockstore
from datatransfer.ipld.cid import CID
from datatransfer.manager import Manager
from datatransfer.messages import MessageType, TransferRequest, encode_message
from datatransfer.store import SqliteChannelStore
from datatransfer.types import ChannelID, ChannelState, PeerID
from registry import NOT_HANDLED
from statemachine import Status
from transport.graphsync.engine import EXTENSION_ERROR
from transport.graphsync.message import GraphsyncMessage, GraphsyncResponse
from transport.graphsync.status import ResponseStatus
from transport.inmem import InMemoryNetwork, InMemoryNode, Packet

S = Status

#: Fast timeouts; each test overrides what it exercises.
CFG = ManagerConfig(
    accept_timeout=3,
    no_progress_timeout=3,
    finalization_timeout=3,
    max_restarts=3,
    restart_backoff=0.02,
    max_restart_backoff=0.2,
    tick=0.01,
    send_timeout=1,
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


BOTH_BACKENDS = pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])


# ---------------------------------------------------------------- helpers


async def until(pred: Callable[[], bool], timeout: float = DEADLINE) -> None:
    """Poll ``pred`` until true; fail the test after ``timeout`` seconds."""
    with anyio.fail_after(timeout):
        while not pred():
            await anyio.sleep(0.002)


class Gate:
    """A revalidator that holds the data lane of the responder just before
    the data sender queues block ``at`` (pull) or just after the receiver
    stored block ``at`` (push), until :meth:`release`. Holds once per call
    of :meth:`arm`."""

    def __init__(self) -> None:
        self.at: int | None = None
        self.counts: dict[ChannelID, int] = {}
        self.reached = anyio.Event()
        self.opened = anyio.Event()

    def arm(self, at: int) -> None:
        self.at = at
        self.reached = anyio.Event()
        self.opened = anyio.Event()

    def release(self) -> None:
        self.opened.set()

    async def _moved(self, block_number: int) -> None:
        if self.at is not None and block_number == self.at:
            self.at = None
            self.reached.set()
            await self.opened.wait()

    async def _next(self, channel_id: ChannelID) -> None:
        # the Manager asks once per new block index, so this counts indices
        number = self.counts[channel_id] = self.counts.get(channel_id, 0) + 1
        await self._moved(number)

    async def on_pull_data_sent(self, channel_id, additional_bytes):
        await self._next(channel_id)
        return None

    async def on_push_data_received(self, channel_id, additional_bytes):
        await self._next(channel_id)
        return None

    async def revalidate(self, channel_id, voucher):
        return NOT_HANDLED

    async def on_complete(self, channel_id):
        return None


class Wire:
    """Logs every packet the network accepts (a rule that never matches;
    install it before any other rule so dropped packets are seen too)."""

    def __init__(self, net: InMemoryNetwork) -> None:
        self.packets: list[Packet] = []
        self.hooks: list[Callable[[Packet], None]] = []
        net.drop(self._see)

    def _see(self, packet: Packet) -> bool:
        self.packets.append(packet)
        for hook in self.hooks:
            hook(packet)
        return False

    def blocks(self, src: PeerID, request_ids: set[bytes] | None = None) -> list[int]:
        """Indices of the blocks whose data ``src`` sent (for these requests)."""
        return [
            index
            for p in self.packets
            if p.kind == "blocks" and p.src == src
            and (request_ids is None or p.request_id in request_ids)
            for index in p.indices
        ]

    def requests(self, src: PeerID) -> list[Packet]:
        """The data requests ``src`` opened (a paused request asked for
        again, under the same id, is not a new one)."""
        seen: set[bytes | None] = set()
        out = []
        for p in self.packets:
            if p.kind == "request" and p.src == src and p.request_id not in seen:
                seen.add(p.request_id)
                out.append(p)
        return out

    def restart_requests(self, src: PeerID) -> list[Packet]:
        """Restart requests from ``src``: with a pull's data request, or alone (push)."""
        return [p for p in self.packets if p.src == src and isinstance(p.message, TransferRequest)
                and p.message.type == MessageType.Restart]


def cancels(w: World, src: PeerID) -> list[Packet]:
    """The data-transfer Cancel messages ``src`` sent (request or response,
    on their own or riding graphsync)."""
    return [p for p in w.wire.packets
            if p.src == src and getattr(p.message, "type", None) == MessageType.Cancel]


class Node:
    """One peer: a transport, blockstore and store file that outlive its
    Managers; :meth:`start` / :meth:`stop` run a Manager in its own task."""

    def __init__(self, net: InMemoryNetwork, name: str, tmp_path: Path, tg: Any,
                 config: ManagerConfig = CFG, **engine: Any) -> None:
        self.name = name
        self.peer = PeerID(b"\x00\x08" + name.encode().ljust(8, b"_"))
        self.blockstore = MemoryBlockstore()
        self.transport: InMemoryNode = net.transport(self.peer, self.blockstore,
                                                     **{"max_block_bytes": 1, **engine})
        self.db = tmp_path / f"{name}.db"
        self.tg = tg
        self.config = config
        self.validator = ScriptedValidator()
        self.gate = Gate()
        self.revalidator: Any = self.gate
        self.manager: Manager | None = None
        self.rec = Recorder()
        self.recorders: list[Recorder] = []
        self._stop: anyio.Event | None = None
        self._stopped: anyio.Event | None = None

    @property
    def m(self) -> Manager:
        assert self.manager is not None, f"{self.name} is not running"
        return self.manager

    async def start(self, config: ManagerConfig | None = None, db: Path | None = None) -> Manager:
        return await self.tg.start(self._run, config or self.config, db or self.db)

    async def _run(self, config: ManagerConfig, db: Path, *, task_status) -> None:
        self._stop, self._stopped = anyio.Event(), anyio.Event()
        manager = Manager(self.transport, store=db, config=config)
        manager.register_voucher_type(LabelVoucher, self.validator)
        manager.register_revalidator(LabelVoucher, self.revalidator)
        manager.register_voucher_result_type(NoteResult)
        self.rec = Recorder()
        self.recorders.append(self.rec)
        manager.subscribe(self.rec)
        try:
            async with manager:
                self.manager = manager
                task_status.started(manager)
                await self._stop.wait()
        finally:
            self.manager = None
            manager.store.close()
            self._stopped.set()

    async def stop(self) -> None:
        """Leave the Manager's ``async with`` (its transport goes offline)."""
        assert self._stop is not None and self._stopped is not None
        self._stop.set()
        await self._stopped.wait()

    def state(self, chid: ChannelID) -> ChannelState:
        return self.m.channel_state(chid)

    def stored(self, chid: ChannelID) -> Any:
        """The channel as this node's store file holds it right now."""
        store = SqliteChannelStore(self.db)
        try:
            ch = store.load(chid)
        finally:
            store.close()
        assert ch is not None
        return ch

    def codes(self, chid: ChannelID) -> list[str]:
        """Every event code this node published for ``chid``, all Managers."""
        if self.manager is not None:
            self.manager.events.flush(DEADLINE)
        return [c for rec in self.recorders for c in rec.codes(chid)]


class World:
    def __init__(self, tmp_path: Path, tg: Any) -> None:
        self.net = InMemoryNetwork()
        self.wire = Wire(self.net)
        self.tmp_path = tmp_path
        self.tg = tg
        self.nodes: list[Node] = []

    def node(self, name: str, config: ManagerConfig = CFG, **engine: Any) -> Node:
        """A node; ``engine``: options of its graphsync engine."""
        node = Node(self.net, name, self.tmp_path, self.tg, config, **engine)
        self.nodes.append(node)
        return node

    async def close(self) -> None:
        for node in self.nodes:
            node.gate.release()
            if node.manager is not None:
                await node.stop()


@asynccontextmanager
async def world(tmp_path: Path) -> AsyncIterator[World]:
    """``async with world(tmp_path) as w:`` a network whose nodes are stopped
    at the end."""
    async with anyio.create_task_group() as tg:
        w = World(tmp_path, tg)
        try:
            yield w
        finally:
            await w.close()


def copy_store(node: Node, to: Path) -> Path:
    """A copy of the node's channel store as it is now (to start from after
    a crash that lost what came later)."""
    src, dst = sqlite3.connect(node.db), sqlite3.connect(to)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()
    return to


def dag(node: Node, leaves: int = 16, leaf_size: int = 300) -> tuple[CID, int, list[CID]]:
    return make_dag(node.blockstore, leaves=leaves, leaf_size=leaf_size, fanout=4)


def voucher(label: str = "ok") -> LabelVoucher:
    return LabelVoucher(label)


# ------------------------------------------------------------ connection loss


@BOTH_BACKENDS
@pytest.mark.anyio
async def test_pull_connection_blip_resumes_without_resending(tmp_path: Path) -> None:
    """Disconnect after k blocks, reconnect: the initiator restarts by itself,
    the sender skips the k blocks the receiver holds, counters are exact."""
    k = 7
    async with world(tmp_path) as w:
        a, b = w.node("a"), w.node("b")
        await a.start()
        await b.start()
        root, total, order = dag(b)
        n = len(order)
        b.gate.arm(k + 1)
        chid = await a.m.open_pull_channel(b.peer, voucher(), root, ALL)
        await b.gate.reached.wait()
        await until(lambda: a.state(chid).received_index == k)
        w.net.disconnect(a.peer, b.peer)
        w.net.connect(a.peer, b.peer)
        b.gate.release()
        sa = await a.m.wait(chid, timeout=DEADLINE)
        sb = await b.m.wait(chid, timeout=DEADLINE)
        assert (sa.status, sb.status) == (S.Completed, S.Completed), (sa.message, sb.message)
        first, restart = w.wire.requests(a.peer)
        assert restart.skip_blocks == k
        assert restart.message.type == MessageType.Restart
        # no block went twice, none after the restart was one the receiver held
        assert w.wire.blocks(b.peer, {first.request_id}) == list(range(1, k + 1))
        assert w.wire.blocks(b.peer, {restart.request_id}) == list(range(k + 1, n + 1))
        assert sa.received == total and sa.received_index == n
        assert sb.sent == total and sb.queued == total and sb.sent_index == n
        assert all(a.blockstore.has(c) for c in order)
        assert len(w.wire.restart_requests(a.peer)) == 1


@pytest.mark.anyio
async def test_push_connection_blip_resumes_without_resending(tmp_path: Path) -> None:
    """The same for a push: the initiator (the data sender) restarts, the
    responder reopens its data request skipping what it holds."""
    k = 5
    async with world(tmp_path) as w:
        a, b = w.node("a"), w.node("b")
        await a.start()
        await b.start()
        root, total, order = dag(a)
        n = len(order)
        b.gate.arm(k)  # holds b's lane right after it stored block k
        chid = await a.m.open_push_channel(b.peer, voucher(), root, ALL)
        await b.gate.reached.wait()
        w.net.disconnect(a.peer, b.peer)  # blocks k+1.. in flight are lost
        w.net.connect(a.peer, b.peer)
        b.gate.release()
        sa = await a.m.wait(chid, timeout=DEADLINE)
        sb = await b.m.wait(chid, timeout=DEADLINE)
        assert (sa.status, sb.status) == (S.Completed, S.Completed), (sa.message, sb.message)
        [restart_msg] = w.wire.restart_requests(a.peer)
        first, reopened = w.wire.requests(b.peer)
        assert reopened.skip_blocks == k
        assert w.wire.blocks(a.peer, {reopened.request_id}) == list(range(k + 1, n + 1))
        assert w.wire.blocks(a.peer, {first.request_id})[:k] == list(range(1, k + 1))
        assert sb.received == total and sb.received_index == n
        assert sa.sent == total and sa.queued == total and sa.sent_index == n
        assert all(b.blockstore.has(c) for c in order)
        assert restart_msg.kind == "message"


@pytest.mark.anyio
async def test_push_that_sent_everything_restarts_when_the_link_is_lost(tmp_path: Path) -> None:
    """The pusher sent its last block (TransferFinished: its data request
    is over, it waits for the responder's Complete) but blocks k+1.. never
    arrived (they sat in socket buffers when the connection was cut). The
    pusher hears of the lost peer although no data request of it was open,
    restarts at once, and the responder re-requests what it lacks. (Found
    under load in the two-process push test: the pusher waited for its
    no-progress timeout, the responder failed on its own first and then
    refused the restart, and the push ended "rejected by the responder".)"""
    k = 5
    # the pusher would wait for its own timeout for ever; the responder
    # gives up on it after 3 s, as it did in the two-process test
    cfg_a = replace(CFG, no_progress_timeout=None)
    async with world(tmp_path) as w:
        a, b = w.node("a", cfg_a), w.node("b")
        await a.start()
        await b.start()
        root, total, order = dag(a)
        n = len(order)
        lost = [True]
        w.net.drop(lambda p: lost[0] and p.src == a.peer and p.kind == "blocks"
                   and max(p.indices) > k)
        chid = await a.m.open_push_channel(b.peer, voucher(), root, ALL)
        await until(lambda: a.state(chid).status == S.TransferFinished)
        await until(lambda: b.state(chid).received_index == k)
        lost[0] = False
        w.net.disconnect(a.peer, b.peer)
        w.net.connect(a.peer, b.peer)
        sa = await a.m.wait(chid, timeout=DEADLINE)
        sb = await b.m.wait(chid, timeout=DEADLINE)
        assert (sa.status, sb.status) == (S.Completed, S.Completed), (sa.message, sb.message)
        assert "Disconnected" in a.codes(chid)
        assert len(w.wire.restart_requests(a.peer)) == 1
        first, reopened = w.wire.requests(b.peer)
        assert reopened.skip_blocks == k
        assert w.wire.blocks(a.peer, {reopened.request_id}) == list(range(k + 1, n + 1))
        assert sb.received == total and sb.received_index == n
        assert sa.sent == total and sa.sent_index == n


# ------------------------------------------------------------ node restarts


async def pull_until_gate(w: World, a: Node, b: Node, k: int, **kw: Any):
    """Start both, pull a DAG from b and hold b just before block k+1 once a
    holds blocks 1..k. Returns (chid, root, total, order)."""
    await a.start(**kw)
    await b.start()
    root, total, order = dag(b)
    b.gate.arm(k + 1)
    chid = await a.m.open_pull_channel(b.peer, voucher(), root, ALL)
    await b.gate.reached.wait()
    await until(lambda: a.state(chid).received_index == k)
    return chid, root, total, order


@BOTH_BACKENDS
@pytest.mark.anyio
async def test_initiator_restarted_on_same_store_resumes_pull(tmp_path: Path) -> None:
    """The client exits mid-pull; a new Manager on the same sqlite file,
    blockstore and transport resumes the channel by itself and completes it
    without re-sending a held block or counting a byte twice."""
    k = 6
    async with world(tmp_path) as w:
        a, b = w.node("a"), w.node("b")
        chid, root, total, order = await pull_until_gate(w, a, b, k)
        n = len(order)
        await a.stop()
        stored = a.stored(chid)
        assert stored.record.status == S.Ongoing
        assert stored.record.received_index == k
        b.gate.release()
        await until(lambda: b.state(chid).message.startswith("peer"))  # b saw a vanish
        assert b.state(chid).status == S.Ongoing

        await a.start()
        sa = await a.m.wait(chid, timeout=DEADLINE)
        sb = await b.m.wait(chid, timeout=DEADLINE)
        assert (sa.status, sb.status) == (S.Completed, S.Completed), (sa.message, sb.message)
        first, restart = w.wire.requests(a.peer)
        assert restart.skip_blocks == k
        assert w.wire.blocks(b.peer) == list(range(1, n + 1))  # each block exactly once
        assert w.wire.blocks(b.peer, {restart.request_id}) == list(range(k + 1, n + 1))
        assert sa.received == total and sb.sent == total and sb.queued == total
        assert a.codes(chid).count("Restart") >= 1
        assert len(w.wire.restart_requests(a.peer)) == 1
        assert a.stored(chid).record.status == S.Completed


@pytest.mark.anyio
async def test_hard_crash_store_behind_blockstore_counts_once(tmp_path: Path) -> None:
    """After a crash the channel store may know fewer blocks than the
    blockstore holds: the restart resumes from what the blockstore holds (no
    held block is sent again), and the blocks the store had not recorded are
    counted then, once: bytes add up exactly on both sides."""
    j, k = 3, 9
    async with world(tmp_path) as w:
        a, b = w.node("a"), w.node("b")
        chid, root, total, order = await pull_until_gate(w, a, b, j)
        n = len(order)
        # progress reaches the store at the watchdog's next tick
        await until(lambda: a.stored(chid).record.received_index == j)
        snapshot = copy_store(a, tmp_path / "a-at-j.db")
        b.gate.release()
        b.gate.arm(k + 1)
        await b.gate.reached.wait()
        await until(lambda: a.state(chid).received_index == k)
        await a.stop()
        b.gate.release()
        await a.start(db=snapshot)  # the store as it was at block j
        assert a.state(chid).received_index == j
        sa = await a.m.wait(chid, timeout=DEADLINE)
        sb = await b.m.wait(chid, timeout=DEADLINE)
        assert (sa.status, sb.status) == (S.Completed, S.Completed), (sa.message, sb.message)
        restart = w.wire.requests(a.peer)[-1]
        assert restart.skip_blocks == k  # what the blockstore holds, not the store's j
        assert w.wire.blocks(b.peer, {restart.request_id}) == list(range(k + 1, n + 1))
        assert sa.received == total and sa.received_index == n
        assert sb.sent == total and sb.queued == total


@pytest.mark.anyio
async def test_sender_crash_store_behind_counts_skipped_blocks_once(tmp_path: Path) -> None:
    """The sender writes its progress every ``save_progress_every`` blocks;
    a crash may lose the last few. The receiver's restart skips every block
    it holds, and the engine reports each skipped block to the sender
    (``on_data_skipped``), which counts those its store lacked: the sender's
    bytes come out exact, not short of the blocks sent before the crash."""
    j, k = 3, 9
    async with world(tmp_path) as w:
        a, b = w.node("a", replace(CFG, max_restarts=20)), w.node("b")
        chid, root, total, order = await pull_until_gate(w, a, b, j)
        n = len(order)
        await until(lambda: b.stored(chid).record.sent_index == j)
        snapshot = copy_store(b, tmp_path / "b-at-j.db")
        b.gate.release()
        b.gate.arm(k + 1)
        await b.gate.reached.wait()
        await until(lambda: a.state(chid).received_index == k)
        await b.stop()
        b.gate.release()
        await b.start(db=snapshot)  # the store as it was at block j
        assert b.state(chid).sent_index == j
        sa = await a.m.wait(chid, timeout=DEADLINE)
        sb = await b.m.wait(chid, timeout=DEADLINE)
        assert (sa.status, sb.status) == (S.Completed, S.Completed), (sa.message, sb.message)
        assert w.wire.requests(a.peer)[-1].skip_blocks == k
        assert sa.received == total and sa.received_index == n
        assert (sb.sent, sb.queued, sb.sent_index) == (total, total, n)


@pytest.mark.anyio
@pytest.mark.parametrize("pull", [True, False])
async def test_progress_is_not_written_per_block(tmp_path: Path, pull: bool) -> None:
    """Neither side writes its channel record for every block: progress is
    written every ``save_progress_every`` blocks and with status changes."""
    cfg = replace(CFG, tick=60.0, save_progress_every=8)
    async with world(tmp_path) as w:
        a, b = w.node("a", cfg), w.node("b", cfg)
        await a.start()
        await b.start()
        saves: dict[str, int] = {"a": 0, "b": 0}
        for node in (a, b):
            save = node.m.store.save

            def counted(ch: Any, *args: Any, _save: Any = save, _name: str = node.name,
                        **kw: Any) -> None:
                saves[_name] += 1
                _save(ch, *args, **kw)

            node.m.store.save = counted  # type: ignore[method-assign]
        src, dst = (b, a) if pull else (a, b)
        root, total, order = make_dag(src.blockstore, leaves=40, leaf_size=100, fanout=8)
        n = len(order)
        if pull:
            chid = await a.m.open_pull_channel(b.peer, voucher(), root, ALL)
        else:
            chid = await a.m.open_push_channel(b.peer, voucher(), root, ALL)
        sa = await a.m.wait(chid, timeout=DEADLINE)
        sb = await b.m.wait(chid, timeout=DEADLINE)
        assert (sa.status, sb.status) == (S.Completed, S.Completed)
        # a handful of status changes, plus one write per 8 blocks
        for name in ("a", "b"):
            assert saves[name] <= 12 + n // 8, (name, saves, n)
        assert n > 40


@pytest.mark.anyio
async def test_responder_restarted_on_same_store_serves_the_restart(tmp_path: Path) -> None:
    """The server exits mid-pull and comes back on its store: the initiator's
    restart finds the channel and the server sends only the missing blocks."""
    k = 4
    cfg = replace(CFG, max_restarts=20)
    async with world(tmp_path) as w:
        a, b = w.node("a", cfg), w.node("b")
        chid, root, total, order = await pull_until_gate(w, a, b, k)
        n = len(order)
        await b.stop()
        assert b.stored(chid).record.status == S.Ongoing
        await until(lambda: a.m.channel_state(chid).message != "")
        await b.start()
        sa = await a.m.wait(chid, timeout=DEADLINE)
        sb = await b.m.wait(chid, timeout=DEADLINE)
        assert (sa.status, sb.status) == (S.Completed, S.Completed), (sa.message, sb.message)
        last = w.wire.requests(a.peer)[-1]
        assert last.skip_blocks == k
        assert w.wire.blocks(b.peer) == list(range(1, n + 1))
        assert sa.received == total and sb.sent == total and sb.queued == total


@pytest.mark.anyio
async def test_push_initiator_restarted_on_same_store(tmp_path: Path) -> None:
    """A pushing client exits after the responder stored k blocks; restarted on
    its store it restarts the push, the responder skips what it holds, and the
    sender's counters (persisted) do not count re-sent blocks twice."""
    k = 5
    cfg_b = replace(CFG, no_progress_timeout=5)
    async with world(tmp_path) as w:
        a, b = w.node("a"), w.node("b", cfg_b)
        await a.start()
        await b.start()
        root, total, order = dag(a)
        n = len(order)
        b.gate.arm(k)
        chid = await a.m.open_push_channel(b.peer, voucher(), root, ALL)
        await b.gate.reached.wait()
        await a.stop()
        b.gate.release()
        await a.start()
        sa = await a.m.wait(chid, timeout=DEADLINE)
        sb = await b.m.wait(chid, timeout=DEADLINE)
        assert (sa.status, sb.status) == (S.Completed, S.Completed), (sa.message, sb.message)
        reopened = w.wire.requests(b.peer)[-1]
        assert reopened.skip_blocks == k
        assert w.wire.blocks(a.peer, {reopened.request_id}) == list(range(k + 1, n + 1))
        assert sa.sent == total and sa.queued == total
        assert sb.received == total and sb.received_index == n


@pytest.mark.anyio
async def test_push_initiator_restarting_often_keeps_the_channel_while_data_moves(
        tmp_path: Path) -> None:
    """A pushing client's node restarts more often than max_restarts allows,
    and the responder gets further every round. The client had queued every
    block before the first restart, so each round moves only blocks it had
    counted already: they used to be no progress, and the client gave up
    ("gave up after 2 restarts in N s without progress: node restarted"). Blocks
    moved after a restart are blocks the receiver lacked: the count goes
    back to 0 and the push completes."""
    stops = (3, 6, 9, 12)  # 4 node restarts, budget 2; b holds after these blocks
    cfg_a = replace(CFG, max_restarts=2)
    cfg_b = replace(CFG, no_progress_timeout=5)
    async with world(tmp_path) as w:
        a, b = w.node("a", cfg_a), w.node("b", cfg_b)
        await a.start()
        await b.start()
        root, total, order = dag(a)
        n = len(order)
        assert n > stops[-1]
        b.gate.arm(stops[0])
        chid = await a.m.open_push_channel(b.peer, voucher(), root, ALL)
        await until(lambda: a.state(chid).status == S.TransferFinished)  # all queued
        assert a.state(chid).queued_index == n
        for i, k in enumerate(stops):
            await b.gate.reached.wait()
            assert b.state(chid).received_index == k
            await a.stop()
            assert a.stored(chid).restarts == 0  # the last round moved blocks
            b.gate.release()
            if i + 1 < len(stops):
                b.gate.arm(stops[i + 1])
            await a.start()
        sa = await a.m.wait(chid, timeout=DEADLINE)
        sb = await b.m.wait(chid, timeout=DEADLINE)
        assert (sa.status, sb.status) == (S.Completed, S.Completed), (sa.message, sb.message)
        assert len(w.wire.restart_requests(a.peer)) == len(stops)
        reopened = w.wire.requests(b.peer)[1:]
        assert [r.skip_blocks for r in reopened] == list(stops)
        assert sa.sent == total and sa.queued == total  # re-sent blocks counted once
        assert sb.received == total and sb.received_index == n
        assert a.stored(chid).restarts == 0


@pytest.mark.anyio
async def test_auto_restart_off_waits_for_restart_channel(tmp_path: Path) -> None:
    """With auto_restart=False a restarted node leaves the in-progress
    channel alone (nothing is sent) until the application restarts it."""
    k = 6
    manual = replace(CFG, auto_restart=False, no_progress_timeout=None)
    async with world(tmp_path) as w:
        a, b = w.node("a"), w.node("b")
        chid, root, total, order = await pull_until_gate(w, a, b, k)
        n = len(order)
        await a.stop()
        b.gate.release()
        await a.start(config=manual)
        sent_before = len(w.wire.packets)
        await quiesce(0.25)
        assert a.state(chid).status == S.Ongoing
        assert [p for p in w.wire.packets[sent_before:] if p.src == a.peer] == []
        assert a.m.in_progress_channels().keys() == {chid}
        await a.m.restart_channel(chid)
        sa = await a.m.wait(chid, timeout=DEADLINE)
        sb = await b.m.wait(chid, timeout=DEADLINE)
        assert (sa.status, sb.status) == (S.Completed, S.Completed), (sa.message, sb.message)
        restart = w.wire.requests(a.peer)[-1]
        assert restart.skip_blocks == k
        assert w.wire.blocks(b.peer) == list(range(1, n + 1))
        assert sa.received == total and sb.sent == total


# ------------------------------------------------------------ pauses survive


@pytest.mark.anyio
async def test_initiator_pause_survives_restart(tmp_path: Path) -> None:
    """A channel the initiator's application paused is still paused after the
    node restarts: not restarted, no timeout (even a short no-progress one),
    no data; resuming restarts it and it completes with exact counters."""
    k = 5
    short = replace(CFG, no_progress_timeout=0.1)
    async with world(tmp_path) as w:
        a, b = w.node("a"), w.node("b")
        chid, root, total, order = await pull_until_gate(w, a, b, k)
        n = len(order)
        await a.m.pause_channel(chid)
        b.gate.release()  # the block in b's hands when a paused still goes out
        await until(lambda: b.state(chid).status == S.InitiatorPaused)
        held = a.state(chid).received_index
        assert held == k + 1
        await a.stop()
        stored = a.stored(chid)
        assert (stored.record.status, stored.record.app_paused) == (S.InitiatorPaused, True)

        await a.start(config=short)
        mark = len(w.wire.packets)
        await quiesce(0.35)  # > 3 no-progress timeouts
        st = a.state(chid)
        assert st.status == S.InitiatorPaused and st.received_index == held
        assert [p for p in w.wire.packets[mark:] if p.src == a.peer] == []
        assert "Restart" not in a.codes(chid)

        await a.m.resume_channel(chid)
        sa = await a.m.wait(chid, timeout=DEADLINE)
        sb = await b.m.wait(chid, timeout=DEADLINE)
        assert (sa.status, sb.status) == (S.Completed, S.Completed), (sa.message, sb.message)
        restart = w.wire.requests(a.peer)[-1]
        assert restart.skip_blocks == held
        assert w.wire.blocks(b.peer) == list(range(1, n + 1))
        assert sa.received == total and sb.sent == total and sb.queued == total


@pytest.mark.anyio
async def test_responder_pause_survives_restart(tmp_path: Path) -> None:
    """The server's application pauses a pull and the server restarts: the
    initiator's restart is answered "paused", nothing flows, and the server's
    resume completes the transfer."""
    k = 5
    patient = replace(CFG, max_restarts=30, no_progress_timeout=5)
    async with world(tmp_path) as w:
        a, b = w.node("a", patient), w.node("b", patient)
        chid, root, total, order = await pull_until_gate(w, a, b, k)
        n = len(order)
        await b.m.pause_channel(chid)
        b.gate.release()  # held before block k+1 was queued: it stays unsent
        await until(lambda: a.state(chid).status == S.ResponderPaused)
        await b.stop()
        stored = b.stored(chid)
        assert (stored.record.status, stored.record.app_paused) == (S.ResponderPaused, True)
        await b.start(config=replace(patient, no_progress_timeout=0.1))
        await until(lambda: b.codes(chid).count("Restart") >= 1)
        await quiesce(0.3)  # > no-progress timeout of the paused side
        assert b.state(chid).status == S.ResponderPaused
        assert a.state(chid).status == S.ResponderPaused
        assert a.state(chid).received_index == k
        assert w.wire.blocks(b.peer) == list(range(1, k + 1))

        await b.m.resume_channel(chid)
        sa = await a.m.wait(chid, timeout=DEADLINE)
        sb = await b.m.wait(chid, timeout=DEADLINE)
        assert (sa.status, sb.status) == (S.Completed, S.Completed), (sa.message, sb.message)
        assert w.wire.blocks(b.peer) == list(range(1, n + 1))
        assert sa.received == total and sb.sent == total and sb.queued == total


class PauseOnceAt(Gate):
    """Holds the pull for a voucher at its ``at``-th revalidation, once;
    records the size of every block it was asked about."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.pause_at = at
        self.sizes: list[int] = []

    async def on_pull_data_sent(self, channel_id, additional_bytes):
        self.sizes.append(additional_bytes)
        if len(self.sizes) == self.pause_at:
            raise Pause(NoteResult("pay"))
        return None


@pytest.mark.anyio
async def test_restart_accepted_releases_a_voucher_pause_and_decides_the_held_block_anew(
        tmp_path: Path) -> None:
    """The responder holds a pull for a voucher, at a block it queued and
    never sent, and restarts. Its validator accepts the initiator's restart
    without pausing: the restart decides (as in Go, whose restarted data
    request is paused only if its validation pauses it), so the data flows
    again; and the held block, queued again (the Restart row: ``queued``
    back to ``sent``), is asked about anew, never sent undecided. Counters
    and the wire come out exact."""
    k = 5
    patient = replace(CFG, max_restarts=30, no_progress_timeout=5)
    async with world(tmp_path) as w:
        a, b = w.node("a", patient), w.node("b", patient)
        b.revalidator = reval = PauseOnceAt(k)
        await a.start()
        await b.start()
        root, total, order = dag(b)
        n = len(order)
        chid = await a.m.open_pull_channel(b.peer, voucher(), root, ALL)
        await until(lambda: a.state(chid).status == S.ResponderPaused)
        sb = b.state(chid)
        assert (sb.status, sb.queued_index, sb.sent_index) == (S.ResponderPaused, k, k - 1)
        await b.stop()
        stored = b.stored(chid)
        assert stored.record.paused_for_voucher and stored.record.queued_index == k
        await b.start()
        sa = await a.m.wait(chid, timeout=DEADLINE)
        sb = await b.m.wait(chid, timeout=DEADLINE)
        assert (sa.status, sb.status) == (S.Completed, S.Completed), (sa.message, sb.message)
        sizes = [len(b.blockstore.get(cid)) for cid in order]
        # block k: asked about when first queued (held), and again after the restart
        assert reval.sizes == sizes[:k] + sizes[k - 1:]
        assert w.wire.blocks(b.peer) == list(range(1, n + 1))
        assert (sa.received, sb.sent, sb.queued) == (total, total, total)


# ------------------------------------------------------------ final channels


@pytest.mark.anyio
async def test_final_channels_listed_after_restart(tmp_path: Path) -> None:
    """Completed and failed channels are listed, unchanged, by Managers
    restarted on their stores; nothing is fired for them; ids are not reused."""
    async with world(tmp_path) as w:
        a, b = w.node("a"), w.node("b")
        await a.start()
        await b.start()
        root, total, order = dag(b, leaves=4)
        ok = await a.m.open_pull_channel(b.peer, voucher(), root, ALL)
        await a.m.wait(ok, timeout=DEADLINE)
        await b.m.wait(ok, timeout=DEADLINE)
        bad = await a.m.open_pull_channel(b.peer, voucher("reject"), root, ALL)
        assert (await a.m.wait(bad, timeout=DEADLINE)).status == S.Failed
        before_a = a.m.channels()
        before_b = b.m.channels()
        await a.stop()
        await b.stop()
        await a.start()
        await b.start()
        await quiesce(0.05)
        after_a, after_b = a.m.channels(), b.m.channels()
        assert {c: s.status for c, s in after_a.items()} == {ok: S.Completed, bad: S.Failed}
        # b keeps the request it refused, Failed (for ls --all); it never was a channel
        assert {c: s.status for c, s in after_b.items()} == {ok: S.Completed, bad: S.Failed}
        for before, after in ((before_a, after_a), (before_b, after_b)):
            for chid, st in after.items():
                old = before[chid]
                assert (st.sent, st.received, st.queued, st.message, st.voucher_results) == (
                    old.sent, old.received, old.queued, old.message, old.voucher_results)
        assert after_a[ok].received == total
        assert a.m.in_progress_channels() == {} and b.m.in_progress_channels() == {}
        a.m.events.flush(2)
        assert a.rec.codes(ok) == [] and a.rec.codes(bad) == []  # nothing fired on load
        third = await a.m.open_pull_channel(b.peer, voucher(), root, ALL)
        assert third.id == 3  # transfer ids are not reused
        assert (await a.m.wait(third, timeout=DEADLINE)).status == S.Completed


# ------------------------------------------------------------ no stuck channels


@pytest.mark.parametrize("pull", [True, False], ids=["pull", "push"])
@pytest.mark.anyio
async def test_accept_timeout_when_responder_never_answers(tmp_path: Path, pull: bool) -> None:
    """Every packet to the responder is lost: the initiator fails after the
    accept timeout with a message naming it; the responder never created a
    channel; nothing was restarted."""
    cfg = replace(CFG, accept_timeout=0.15)
    async with world(tmp_path) as w:
        a, b = w.node("a", cfg), w.node("b")
        await a.start()
        await b.start()
        source = b if pull else a
        root, total, order = dag(source, leaves=4)
        w.net.drop(lambda p: p.dst == b.peer)
        opened = anyio.current_time()
        open_channel = a.m.open_pull_channel if pull else a.m.open_push_channel
        chid = await open_channel(b.peer, voucher(), root, ALL)
        st = await a.m.wait(chid, timeout=DEADLINE)
        took = anyio.current_time() - opened
        assert st.status == S.Failed
        # the accept timeout ended it (its message), not before it ran out
        assert st.message == "timed out after 0.15 s waiting for the request to be accepted"
        assert took >= 0.15
        assert b.m.channels() == {}
        assert "Restart" not in a.codes(chid)


@pytest.mark.anyio
async def test_accept_lost_responder_channel_also_ends(tmp_path: Path) -> None:
    """The responder created (and paused) the channel but every answer it
    sends is lost: the initiator fails on the accept timeout, saying why, and
    tells the responder (a cancel, as Go's CloseDataTransferChannelWithError
    does), which ends its channel Cancelled at once. The responder has no
    timeout of its own here, so only the announcement can end it."""
    cfg_a = replace(CFG, accept_timeout=0.15)
    cfg_b = replace(CFG, no_progress_timeout=None)
    async with world(tmp_path) as w:
        a, b = w.node("a", cfg_a), w.node("b", cfg_b)
        await a.start()
        await b.start()
        root, total, order = dag(b, leaves=4)
        w.net.drop(lambda p: p.src == b.peer)
        chid = await a.m.open_pull_channel(b.peer, voucher("pause"), root, ALL)
        await until(lambda: chid in b.m.channels())
        assert b.state(chid).status == S.ResponderPaused
        sa = await a.m.wait(chid, timeout=DEADLINE)
        assert sa.status == S.Failed
        assert sa.message == "timed out after 0.15 s waiting for the request to be accepted"
        sb = await b.m.wait(chid, timeout=DEADLINE)
        assert sb.status == S.Cancelled
        assert sb.message == "cancelled by the other peer"
        [cancel] = cancels(w, a.peer)
        assert cancel.message.transfer_id == chid.id


@pytest.mark.parametrize(
    "anyio_backend",
    [pytest.param(("trio", {"clock": MockClock(autojump_threshold=0)}), id="trio-mockclock")],
)
@pytest.mark.anyio
async def test_lost_restart_of_an_answered_pull_is_asked_again(tmp_path: Path) -> None:
    """Found by the property test: the client restarts a pull whose first
    request the server is already serving, and the restart's request is
    lost. The answers to the replaced request are not taken any more, so
    the client hears nothing; rather than fail on the accept timeout (while
    the server completes), it restarts again, and the server, which has
    completed, serves the restart: both end Completed.

    On trio's MockClock: the case needs the restart to come before the
    first request's accept timeout (0.3 s after the open) and before the
    server's answers, held 0.2 s, arrive. On the wall clock a loaded
    machine that does not run this process for 0.3 s between the open and
    the restart fails the first request on its accept timeout (restarts
    0: nothing to ask again), and the test failed; with the clock still
    while any task can run, the open, the poll and the restart take no
    time, and the timeout and the delay count only the waits."""
    cfg_a = replace(CFG, accept_timeout=0.3, max_restarts=5)
    async with world(tmp_path) as w:
        a, b = w.node("a", cfg_a), w.node("b")
        await a.start()
        await b.start()
        root, total, order = dag(b, leaves=4)
        w.net.delay(0.2, lambda p: p.src == b.peer, count=1)  # the first answers come late
        chid = await a.m.open_pull_channel(b.peer, voucher(), root, ALL)
        await until(lambda: chid in b.m.channels())
        w.net.drop(lambda p: p.src == a.peer and p.kind == "request", count=1)
        await a.m.restart_channel(chid)
        sa = await a.m.wait(chid, timeout=10)
        sb = await b.m.wait(chid, timeout=10)
        assert (sa.status, sb.status) == (S.Completed, S.Completed), (sa.message, sb.message)
        assert sa.received == total
        # the restart that was lost, and the one asked again on the accept timeout
        assert len(w.wire.restart_requests(a.peer)) == 2


@pytest.mark.anyio
async def test_client_exits_mid_transfer_server_channel_ends(tmp_path: Path) -> None:
    """The client leaves for good mid-pull: the server's channel does not stay
    Ongoing; it fails on its no-progress timeout with a message saying why."""
    k = 4
    cfg_b = replace(CFG, no_progress_timeout=0.2)
    async with world(tmp_path) as w:
        a, b = w.node("a"), w.node("b", cfg_b)
        chid, root, total, order = await pull_until_gate(w, a, b, k)
        await a.stop()
        gone = anyio.current_time()
        b.gate.release()
        sb = await b.m.wait(chid, timeout=DEADLINE)
        assert anyio.current_time() - gone >= 0.2
        assert sb.status == S.Failed
        assert sb.message == "no progress for 0.2 s: the other peer stopped answering"
        assert "Disconnected" in b.codes(chid)
        assert a.stored(chid).record.status == S.Ongoing  # a is gone, its store untouched


@pytest.mark.anyio
async def test_server_vanishes_client_gives_up_then_server_ends_too(tmp_path: Path) -> None:
    """The server leaves mid-pull: the client restarts max_restarts times with
    backoff and then fails saying so; when the server comes back on its store
    its stale Ongoing channel ends on the no-progress timeout."""
    k = 4
    cfg_a = replace(CFG, max_restarts=3, restart_backoff=0.01)
    cfg_b = replace(CFG, no_progress_timeout=0.2)
    async with world(tmp_path) as w:
        a, b = w.node("a", cfg_a), w.node("b", cfg_b)
        chid, root, total, order = await pull_until_gate(w, a, b, k)
        await b.stop()
        sa = await a.m.wait(chid, timeout=DEADLINE)
        assert sa.status == S.Failed
        assert re.match(r"gave up after 3 restarts in \d+ s without progress: ", sa.message)
        assert a.stored(chid).restarts == 3
        assert "Restart" not in a.codes(chid)  # no restart was ever accepted
        assert sa.received_index == k
        await b.start()
        assert b.state(chid).status == S.Ongoing
        sb = await b.m.wait(chid, timeout=DEADLINE)
        assert sb.status == S.Failed
        assert sb.message == "no progress for 0.2 s: the other peer stopped answering"


@pytest.mark.parametrize(
    "anyio_backend",
    [pytest.param(("trio", {"clock": MockClock(autojump_threshold=0)}), id="trio-mockclock")],
)
@pytest.mark.anyio
async def test_a_peer_that_never_comes_back_fails_the_channel_after_the_restart_window(
        tmp_path: Path) -> None:
    """A node's defaults (``ManagerConfig()``): the client whose server left
    mid-pull for good keeps restarting, with a backoff of at most 5 s, for
    the restart window (10 minutes) without progress, then fails saying why.
    On trio's MockClock: the ten minutes pass while every task waits."""
    k = 4
    async with world(tmp_path) as w:
        a, b = w.node("a", ManagerConfig()), w.node("b")
        chid, root, total, order = await pull_until_gate(w, a, b, k)
        await b.stop()
        gone = anyio.current_time()
        sa = await a.m.wait(chid, timeout=2 * 600)
        waited = anyio.current_time() - gone
        assert sa.status == S.Failed
        assert re.fullmatch(r"gave up after (\d+) restarts in (\d+) s without progress: .+",
                            sa.message), sa.message
        tries = a.stored(chid).restarts
        assert 600 <= waited < 600 + 2 * 5, waited
        assert tries >= 600 / 5, tries  # tried all along, not a few times early on
        assert sa.received_index == k


@pytest.mark.parametrize(
    "anyio_backend",
    [pytest.param(("trio", {"clock": MockClock(autojump_threshold=0)}), id="trio-mockclock")],
)
@pytest.mark.anyio
async def test_a_restart_waiting_in_the_servers_own_queue_is_not_failed(tmp_path: Path) -> None:
    """The server serves one request of a peer at a time (its limit) and
    queues the others. A channel cut mid-pull restarts, and its request
    waits in that queue behind another channel far longer than the
    server's no-progress timeout: the wait is the server's own, not the
    peer's, so the server does not fail the channel; it completes once
    served. On trio's MockClock: the minutes pass while every task waits."""
    k = 4
    slow = replace(CFG, no_progress_timeout=None, accept_timeout=None,
                   restart_backoff=1, max_restart_backoff=1)
    server = replace(CFG, no_progress_timeout=10)
    async with world(tmp_path) as w:
        a = w.node("a", slow)
        b = w.node("b", server, max_requests_per_peer=1)
        chid, root, total, order = await pull_until_gate(w, a, b, k)
        w.net.disconnect(a.peer, b.peer)
        w.net.connect(a.peer, b.peer)
        b.gate.release()
        await until(lambda: b.state(chid).message.startswith("disconnected"))
        # another pull takes the one place before the restart comes (1 s later)
        b.gate.arm(2)
        other = await a.m.open_pull_channel(b.peer, voucher(), root, ALL)
        await b.gate.reached.wait()
        await b.m.pause_channel(other)  # the server's choice: no timeout runs on it
        b.gate.release()
        await until(lambda: chid in b.transport.queued_channels)
        await anyio.sleep(6 * 10)  # six no-progress timeouts of the server pass
        assert b.state(chid).status == S.Ongoing, b.state(chid).message
        assert chid in b.transport.queued_channels
        await b.m.resume_channel(other)
        sa = await a.m.wait(chid, timeout=DEADLINE)
        sb = await b.m.wait(chid, timeout=DEADLINE)
        assert (sa.status, sb.status) == (S.Completed, S.Completed), (sa.message, sb.message)
        assert sa.received == total and sb.sent == total
        so = await a.m.wait(other, timeout=DEADLINE)
        assert so.status == S.Completed, so.message


class HoldFirstSlowOthers(Gate):
    """The server's revalidator: holds the first channel it sees at its
    first block until :meth:`release`; takes 1 s over each block of the
    others."""

    def __init__(self) -> None:
        super().__init__()
        self.first: ChannelID | None = None

    async def on_pull_data_sent(self, channel_id, additional_bytes):
        if self.first is None:
            self.first = channel_id
        if channel_id == self.first:
            self.reached.set()
            await self.opened.wait()
        else:
            await anyio.sleep(1)
        return None


@pytest.mark.parametrize(
    "anyio_backend",
    [pytest.param(("trio", {"clock": MockClock(autojump_threshold=0)}), id="trio-mockclock")],
)
@pytest.mark.anyio
async def test_a_sender_whose_peer_takes_blocks_on_other_channels_is_not_failed(
        tmp_path: Path) -> None:
    """The server sends one channel's data while its first block waits on
    the server's side (here its revalidator; under load, its own sending to
    that peer) far longer than its no-progress timeout, while blocks of the
    peer's other channel go on moving: the peer answers, so the server does
    not fail the waiting channel as 'the other peer stopped answering'; it
    completes once its block goes. On trio's MockClock."""
    slow = replace(CFG, no_progress_timeout=None, accept_timeout=None)
    async with world(tmp_path) as w:
        a = w.node("a", slow)
        b = w.node("b", replace(CFG, no_progress_timeout=5))
        b.revalidator = hold = HoldFirstSlowOthers()
        await a.start()
        await b.start()
        root, total, order = dag(b)
        first = await a.m.open_pull_channel(b.peer, voucher(), root, ALL)
        await hold.reached.wait()
        other = await a.m.open_pull_channel(b.peer, voucher(), root, ALL)
        so = await a.m.wait(other, timeout=DEADLINE)  # 16 blocks, 1 s each
        assert so.status == S.Completed, so.message
        assert b.state(first).status == S.Ongoing, b.state(first).message
        hold.release()
        sa = await a.m.wait(first, timeout=DEADLINE)
        sb = await b.m.wait(first, timeout=DEADLINE)
        assert (sa.status, sb.status) == (S.Completed, S.Completed), (sa.message, sb.message)
        assert sa.received == total and sb.sent == total


@pytest.mark.anyio
async def test_silent_peer_both_sides_end(tmp_path: Path) -> None:
    """The peers stay connected but every packet between them is lost: the
    client restarts on each no-progress timeout up to max_restarts and gives
    up; the server fails on its own no-progress timeout."""
    k = 4
    cfg_a = replace(CFG, no_progress_timeout=0.1, max_restarts=2)
    cfg_b = replace(CFG, no_progress_timeout=0.2)
    async with world(tmp_path) as w:
        a, b = w.node("a", cfg_a), w.node("b", cfg_b)
        chid, root, total, order = await pull_until_gate(w, a, b, k)
        w.net.drop(lambda p: {p.src, p.dst} == {a.peer, b.peer})
        sa = await a.m.wait(chid, timeout=DEADLINE)
        sb = await b.m.wait(chid, timeout=DEADLINE)
        assert sa.status == S.Failed
        assert re.fullmatch(r"gave up after 2 restarts in \d+ s without progress: "
                            r"no progress for 0\.1 s", sa.message), sa.message
        assert len(w.wire.restart_requests(a.peer)) == 2
        assert sb.status == S.Failed
        assert sb.message == "no progress for 0.2 s: the other peer stopped answering"


@pytest.mark.parametrize("first", ["initiator", "responder"])
@pytest.mark.anyio
async def test_finalization_timeout_both_sides(tmp_path: Path, first: str) -> None:
    """The server asks for a final voucher that never comes. The side whose
    finalization timeout runs out fails, saying why, and tells the other
    side (a cancel, as Go's CloseDataTransferChannelWithError does), which
    ends Cancelled. The other side has no timeout at all here, so only the
    announcement can end it."""
    short = replace(CFG, finalization_timeout=0.15, no_progress_timeout=2)
    never = replace(CFG, finalization_timeout=None, no_progress_timeout=None)
    async with world(tmp_path) as w:
        a = w.node("a", short if first == "initiator" else never)
        b = w.node("b", short if first == "responder" else never)
        b.revalidator = PayEveryN(interval=10**9, final=True)
        await a.start()
        await b.start()
        root, total, order = dag(b, leaves=4)
        chid = await a.m.open_pull_channel(b.peer, voucher(), root, ALL)
        await until(lambda: a.state(chid).status == S.ResponderFinalizingTransferFinished)
        assert b.state(chid).status == S.Finalizing
        sa = await a.m.wait(chid, timeout=DEADLINE)
        sb = await b.m.wait(chid, timeout=DEADLINE)
        timed_out, told = (sa, sb) if first == "initiator" else (sb, sa)
        assert timed_out.status == S.Failed
        assert timed_out.message == "timed out after 0.15 s waiting for the final voucher"
        assert told.status == S.Cancelled
        assert told.message == "cancelled by the other peer"
        assert sa.received == total and sb.sent == total
        failer = a if first == "initiator" else b
        assert len(cancels(w, failer.peer)) == 1
        assert cancels(w, (b if failer is a else a).peer) == []


# ------------------------------------------------------------ late errors


@pytest.mark.parametrize("status", [ResponseStatus.UNKNOWN, ResponseStatus.CANCELLED],
                         ids=["failed", "cancelled"])
@pytest.mark.anyio
async def test_late_error_of_replaced_request_does_not_restart(
        tmp_path: Path, status: ResponseStatus) -> None:
    """The client restarts on its no-progress timeout while the server is
    still busy with the old request; the old request then ends with an error
    (a late failed or cancelled end of the old request id): it must not fail
    the channel nor trigger another restart."""
    k = 5
    cfg_a = replace(CFG, no_progress_timeout=0.1)
    async with world(tmp_path) as w:
        a, b = w.node("a"), w.node("b")
        chid, root, total, order = await pull_until_gate(w, a, b, k, config=cfg_a)
        n = len(order)
        await until(lambda: len(w.wire.requests(a.peer)) == 2)  # the restart
        first, second = w.wire.requests(a.peer)
        late = GraphsyncResponse(first.request_id, status, (),
                                 {EXTENSION_ERROR: "late failure of the old request"})
        w.net.tamper(
            lambda p: w.net.frame(p.src, p.dst, GraphsyncMessage(responses=(late,))),
            lambda p: p.src == b.peer and p.request_id == first.request_id,
        )
        b.gate.release()  # the old request's next packet leaves, turned into an error
        sa = await a.m.wait(chid, timeout=DEADLINE)
        sb = await b.m.wait(chid, timeout=DEADLINE)
        assert (sa.status, sb.status) == (S.Completed, S.Completed), (sa.message, sb.message)
        assert w.net.stats.tampered["blocks"] == 1
        assert len(w.wire.requests(a.peer)) == 2
        assert len(w.wire.restart_requests(a.peer)) == 1
        codes = a.codes(chid)
        assert "Error" not in codes and "RequestCancelled" not in codes
        assert w.wire.blocks(b.peer, {second.request_id}) == list(range(k + 1, n + 1))
        assert sa.received == total and sb.sent == total and sb.queued == total


@pytest.mark.anyio
async def test_stale_disconnect_notice_after_manual_restart(tmp_path: Path) -> None:
    """A disconnect notice of the old request is still queued when the
    application restarts the channel on the re-established link: it must not
    cause a second restart of the new request."""
    k = 5
    async with world(tmp_path) as w:
        a, b = w.node("a"), w.node("b")
        chid, root, total, order = await pull_until_gate(w, a, b, k)
        n = len(order)
        w.net.disconnect(a.peer, b.peer)
        w.net.connect(a.peer, b.peer)
        await a.m.restart_channel(chid)  # before the notice was handled
        await quiesce(0.15)  # several restart backoffs, b still held
        assert len(w.wire.restart_requests(a.peer)) == 1
        b.gate.release()
        sa = await a.m.wait(chid, timeout=DEADLINE)
        sb = await b.m.wait(chid, timeout=DEADLINE)
        assert (sa.status, sb.status) == (S.Completed, S.Completed), (sa.message, sb.message)
        assert len(w.wire.restart_requests(a.peer)) == 1
        assert w.wire.blocks(b.peer) == list(range(1, n + 1))
        assert sa.received == total and sb.sent == total


@pytest.mark.anyio
async def test_repeated_disconnect_notices_restart_once(tmp_path: Path) -> None:
    """Several trouble notices before the scheduled restart runs: one restart."""
    k = 5
    async with world(tmp_path) as w:
        a, b = w.node("a"), w.node("b")
        chid, root, total, order = await pull_until_gate(w, a, b, k)
        for why in ("disconnected", "send failed", "disconnected again"):
            await a.m.transport_events.on_disconnected(chid, why)
        await until(lambda: len(w.wire.requests(a.peer)) == 2)
        await quiesce(0.1)  # several backoffs: nothing else is scheduled
        b.gate.release()
        sa = await a.m.wait(chid, timeout=DEADLINE)
        sb = await b.m.wait(chid, timeout=DEADLINE)
        assert (sa.status, sb.status) == (S.Completed, S.Completed), (sa.message, sb.message)
        assert len(w.wire.restart_requests(a.peer)) == 1
        assert sa.received == total and sb.sent == total


@pytest.mark.anyio
async def test_duplicated_packets_during_restart(tmp_path: Path) -> None:
    """Every packet delivered twice around a restart (data and restart
    requests, cancels, data-transfer messages, responses and the end of the
    data): one restart, each block counted once. Frames announcing blocks
    are left alone: graphsync runs over reliable streams and the engine
    refuses a block it did not ask for next (test_inmem_transport)."""
    k = 5
    async with world(tmp_path) as w:
        a, b = w.node("a"), w.node("b")
        chid, root, total, order = await pull_until_gate(w, a, b, k)
        w.net.duplicate(lambda p: not p.links or p.terminal)
        w.net.disconnect(a.peer, b.peer)
        w.net.connect(a.peer, b.peer)
        b.gate.release()
        sa = await a.m.wait(chid, timeout=DEADLINE)
        sb = await b.m.wait(chid, timeout=DEADLINE)
        assert (sa.status, sb.status) == (S.Completed, S.Completed), (sa.message, sb.message)
        duplicated = w.net.stats.duplicated
        assert duplicated["request"] > 0 and duplicated["response"] > 0
        assert duplicated["blocks"] == 1  # the last block, with the end of the data
        assert len(w.wire.restart_requests(a.peer)) == 1
        assert sa.received == total and sa.received_index == len(order)
        assert sb.sent == total and sb.queued == total


# ------------------------------------------------------------ restart messages


@pytest.mark.anyio
async def test_restart_message_size_does_not_grow_with_progress(tmp_path: Path) -> None:
    """Restarting after 3 blocks or after 350 sends the same restart message
    (byte for byte, as large as the opening request): progress travels as one
    skip count, never as a list of received CIDs."""
    k1, k2 = 3, 350
    async with world(tmp_path) as w:
        a, b = w.node("a"), w.node("b")
        await a.start()
        await b.start()
        root, total, order = make_dag(b.blockstore, leaves=320, leaf_size=16, fanout=4)
        n = len(order)
        assert n > k2 + 10
        b.gate.arm(k1 + 1)
        chid = await a.m.open_pull_channel(b.peer, voucher(), root, ALL)
        for k, nxt in ((k1, k2), (k2, None)):
            await b.gate.reached.wait()
            await until(lambda k=k: a.state(chid).received_index == k)
            w.net.disconnect(a.peer, b.peer)
            w.net.connect(a.peer, b.peer)
            b.gate.release()
            if nxt is not None:
                b.gate.arm(nxt + 1)
        sa = await a.m.wait(chid, timeout=DEADLINE)
        assert sa.status == S.Completed and sa.received == total
        new, r1, r2 = w.wire.requests(a.peer)
        assert (r1.skip_blocks, r2.skip_blocks) == (k1, k2)
        m0, m1, m2 = (encode_message(r.message) for r in (new, r1, r2))
        assert m1 == m2
        assert len(m1) == len(m0)
        assert w.wire.blocks(b.peer) == list(range(1, n + 1))


# ------------------------------------------------------------ write-ahead


@pytest.mark.anyio
async def test_state_is_stored_before_the_message_that_reports_it(tmp_path: Path) -> None:
    """At the moment a message leaves a node, that node's store already holds
    the state the message announces."""
    k = 5
    async with world(tmp_path) as w:
        a, b = w.node("a"), w.node("b")
        seen: list[tuple[str, Any]] = []

        def hook(p: Packet) -> None:
            msg = p.message
            mtype = getattr(msg, "type", None)
            if mtype is None:
                return
            chid = ChannelID(a.peer, b.peer, msg.transfer_id)
            if p.src == a.peer and mtype == MessageType.Restart:
                rec = a.m.store.load(chid).record
                seen.append(("restart", (rec.received_index, p.skip_blocks)))
            elif p.src == b.peer and mtype == MessageType.Complete:
                rec = b.m.store.load(chid).record
                seen.append(("complete", (rec.status, rec.sent)))
            elif p.src == a.peer and mtype == MessageType.Cancel:
                seen.append(("cancel", a.m.store.load(chid).record.status))

        w.wire.hooks.append(hook)
        chid, root, total, order = await pull_until_gate(w, a, b, k)
        w.net.disconnect(a.peer, b.peer)
        w.net.connect(a.peer, b.peer)
        b.gate.release()
        await a.m.wait(chid, timeout=DEADLINE)
        await b.m.wait(chid, timeout=DEADLINE)
        b.gate.arm(2)
        # another DAG: a holds the first one now, and a pull asks for nothing held
        root2, _, _ = make_dag(b.blockstore, leaves=16, leaf_size=300, fanout=4, seed=1)
        other = await a.m.open_pull_channel(b.peer, voucher(), root2, ALL)
        await b.gate.reached.wait()
        await a.m.close_channel(other)
        b.gate.release()
        assert (await a.m.wait(other, timeout=DEADLINE)).status == S.Cancelled
        assert seen == [
            ("restart", (k, k)),
            ("complete", (S.Completing, total)),
            ("cancel", S.Cancelling),
        ]


# ------------------------------------------------------------ restart vs completion


@pytest.mark.anyio
async def test_restart_after_server_completed_serves_the_lost_tail(tmp_path: Path) -> None:
    """The server sent everything and completed, but the last block, the end
    of the data request and the Complete message were lost: the client's
    no-progress restart reaches a Completed channel, which says Complete again
    and re-sends the missing block; nothing is counted twice."""
    cfg_a = replace(CFG, no_progress_timeout=0.1)
    async with world(tmp_path) as w:
        a, b = w.node("a", cfg_a), w.node("b")
        await a.start()
        await b.start()
        root, total, order = dag(b)
        n = len(order)

        def first_request(p: Packet) -> bool:
            opened = w.wire.requests(a.peer)
            return bool(opened) and p.request_id == opened[0].request_id

        w.net.drop(lambda p: p.src == b.peer and first_request(p)
                   and (p.terminal or n in p.indices))
        w.net.drop(lambda p: p.src == b.peer and p.kind == "message", count=1)
        chid = await a.m.open_pull_channel(b.peer, voucher(), root, ALL)
        await until(lambda: chid in b.m.channels())
        sb = await b.m.wait(chid, timeout=DEADLINE)
        assert sb.status == S.Completed
        assert a.state(chid).status == S.Ongoing and a.state(chid).received_index == n - 1
        sa = await a.m.wait(chid, timeout=DEADLINE)
        assert sa.status == S.Completed, sa.message
        [restart] = w.wire.restart_requests(a.peer)
        assert restart.skip_blocks == n - 1
        assert w.wire.blocks(b.peer, {restart.request_id}) == [n]
        assert sa.received == total and sa.received_index == n
        sb = b.state(chid)
        assert sb.status == S.Completed and sb.sent == total and sb.queued == total


@pytest.mark.anyio
async def test_restart_crossing_server_completion(tmp_path: Path) -> None:
    """The client restarts just as the server sends the last block: the server
    handles the restart request while its channel is still Completing (its
    revalidator's ``on_complete`` waits, at most 5 s, until the restart
    request arrived, so the request is served right after the completion).
    It must serve the restart (not cancel it in its cleanup) so both
    complete."""
    restart_arrived = anyio.Event()

    class HeldCompletion(Gate):
        async def on_complete(self, channel_id: ChannelID) -> None:
            with anyio.move_on_after(DEADLINE):
                await restart_arrived.wait()

    async with world(tmp_path) as w:
        a, b = w.node("a"), w.node("b")
        b.revalidator = HeldCompletion()
        await a.start()
        await b.start()
        root, total, order = dag(b)
        n = len(order)
        state: dict[str, Any] = {}

        def at_last_block(p: Packet) -> None:
            if p.kind == "blocks" and p.src == b.peer and n in p.indices and "fired" not in state:
                state["fired"] = p.request_id
                # runs right after b sent the end of the data
                w.tg.start_soon(a.m.restart_channel, state["chid"])
            elif p.kind == "request" and p.src == a.peer and "fired" in state:
                restart_arrived.set()  # delivered as soon as this returns
            elif (p.kind == "response" and p.message is not None and p.src == b.peer
                  and "fired" in state and "b_status_when_answering" not in state):
                state["b_status_when_answering"] = b.m.channel_status(state["chid"])

        w.wire.hooks.append(at_last_block)
        chid = await a.m.open_pull_channel(b.peer, voucher(), root, ALL)
        state["chid"] = chid
        sa = await a.m.wait(chid, timeout=DEADLINE)
        sb = await b.m.wait(chid, timeout=DEADLINE)
        assert (sa.status, sb.status) == (S.Completed, S.Completed), (sa.message, sb.message)
        assert state["b_status_when_answering"] == S.Completing  # the window was hit
        [restart] = w.wire.restart_requests(a.peer)
        assert restart.skip_blocks == n - 1
        assert w.wire.blocks(b.peer, {restart.request_id}) == [n]
        assert sa.received == total and sb.sent == total and sb.queued == total
        assert not [p for p in w.wire.packets if p.src == b.peer and p.request_id ==
                    restart.request_id and p.status is ResponseStatus.CANCELLED]
