"""Shared helpers for Manager tests: voucher types, scriptable validators,
DAG builders and an in-memory two-node harness that records every event;
and a mutator of encodings cut into pieces (the codec and framing tests)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
from hypothesis import strategies as st

from datatransfer.config import ManagerConfig
from datatransfer.errors import Pause, Rejected, RetryValidation
from datatransfer.ipld import dagcbor
from datatransfer.ipld.block import Block
from datatransfer.ipld.blockstore import MemoryBlockstore
from datatransfer.ipld.cid import CID, DAG_CBOR
from datatransfer.ipld.selector import ALL_SELECTOR_NODE
from datatransfer.manager import Manager
from datatransfer.store import ChannelStore, SqliteChannelStore
from datatransfer.types import ChannelID, ChannelState, Event, PeerID
from registry import NOT_HANDLED, Voucher, VoucherResult
from statemachine import FINAL_STATUSES
from transport.inmem import InMemoryNetwork

ALL = ALL_SELECTOR_NODE

#: How long a test waits for something it expects (a channel state, a line
#: from a child process, a process's exit, a condition polled in a loop)
#: before calling it a failure. Sized for a 2-core machine whose cores other
#: processes keep busy, where the suite runs several times slower than on an
#: idle one: a deadline only bounds how long a broken test hangs, it never
#: decides whether a working one passes. Below pytest-timeout's 300 s a test.
DEADLINE = 120.0


@dataclass(frozen=True)
class LabelVoucher(Voucher):
    type_id = "test/voucher"
    label: str = "ok"

    def to_node(self) -> Any:
        return {"Label": self.label}

    @classmethod
    def from_node(cls, node: Any) -> LabelVoucher:
        if not isinstance(node, dict) or not isinstance(node.get("Label"), str):
            raise ValueError(f"bad test voucher {node!r}")
        return cls(node["Label"])


@dataclass(frozen=True)
class Payment(Voucher):
    type_id = "test/payment"
    amount: int = 0

    def to_node(self) -> Any:
        return {"Amount": self.amount}

    @classmethod
    def from_node(cls, node: Any) -> Payment:
        return cls(int(node["Amount"]))


@dataclass(frozen=True)
class NoteResult(VoucherResult):
    type_id = "test/result"
    note: str = ""

    def to_node(self) -> Any:
        return {"Note": self.note}

    @classmethod
    def from_node(cls, node: Any) -> NoteResult:
        return cls(str(node["Note"]))


class ScriptedValidator:
    """Accepts, pauses, retries or rejects by the voucher's label:
    ``ok``, ``pause``, ``retry`` (then ``ok`` on the next voucher), ``reject``."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bool, str]] = []

    async def _decide(self, kind: str, is_restart: bool, voucher: LabelVoucher) -> Any:
        self.calls.append((kind, is_restart, voucher.label))
        label = voucher.label
        if label == "pause" and not is_restart:
            raise Pause(NoteResult("paused"))
        if label == "retry":
            raise RetryValidation(NoteResult("send another voucher"))
        if label == "reject":
            raise Rejected("not today", NoteResult("rejected"))
        if label == "boom":
            raise RuntimeError("validator bug")
        return NoteResult("accepted")

    async def validate_push(self, is_restart, channel_id, sender, voucher, base_cid, selector):
        return await self._decide("push", is_restart, voucher)

    async def validate_pull(self, is_restart, channel_id, receiver, voucher, base_cid, selector):
        return await self._decide("pull", is_restart, voucher)


class PayEveryN:
    """Revalidator for pay-as-you-go: pauses every ``interval`` bytes until a
    Payment covering the bytes sent arrives; asks for a final payment on
    completion when ``final`` is set."""

    def __init__(self, interval: int, final: bool = False) -> None:
        self.interval = interval
        self.final = final
        self.owed: dict[ChannelID, int] = {}
        self.since_payment: dict[ChannelID, int] = {}
        self.paid: dict[ChannelID, int] = {}
        self.completed: set[ChannelID] = set()

    async def _moved(self, chid: ChannelID, n: int) -> Any:
        self.since_payment[chid] = self.since_payment.get(chid, 0) + n
        self.owed[chid] = self.owed.get(chid, 0) + n
        if self.since_payment[chid] >= self.interval:
            self.since_payment[chid] = 0
            raise Pause(NoteResult(f"pay {self.owed[chid]}"))
        return None

    async def on_pull_data_sent(self, channel_id, additional_bytes):
        return await self._moved(channel_id, additional_bytes)

    async def on_push_data_received(self, channel_id, additional_bytes):
        return await self._moved(channel_id, additional_bytes)

    async def revalidate(self, channel_id, voucher):
        self.paid[channel_id] = voucher.amount
        if voucher.amount < self.owed.get(channel_id, 0):
            # data arrived after the pause (in flight): ask for all that is owed
            raise Pause(NoteResult(f"pay {self.owed[channel_id]}"))
        return NoteResult(f"paid {voucher.amount}")

    async def on_complete(self, channel_id):
        self.completed.add(channel_id)
        if self.final and self.paid.get(channel_id, 0) < self.owed.get(channel_id, 0):
            raise Pause(NoteResult(f"final {self.owed[channel_id]}"))
        return None


async def pay_when_asked(manager: Manager, chid: ChannelID,
                        timeout: float = DEADLINE) -> list[int]:
    """The initiator's side of :class:`PayEveryN`: pay whatever each voucher
    result asks ("pay N" / "final N") until the channel ends; returns the
    amounts paid, in order."""
    paid: list[int] = []
    with anyio.fail_after(timeout):
        while True:
            state = manager.channel_state(chid)
            if state.status in FINAL_STATUSES:
                return paid
            asks = [r for r in state.voucher_results if r.note.startswith(("pay", "final"))]
            if len(paid) < len(asks):
                amount = int(asks[len(paid)].note.split()[1])
                paid.append(amount)
                await manager.send_voucher(chid, Payment(amount))
            await anyio.sleep(0.005)


async def quiesce(seconds: float = 0.05) -> None:
    """Let the other tasks of this event loop act: ``seconds`` pass, then
    every other task waits (on an event, a timer, a stream), so what they were
    about to do is done however slow or busy the machine. For a test that
    checks what did (or did not) happen meanwhile."""
    await anyio.sleep(seconds)
    await anyio.wait_all_tasks_blocked()


class IgnoreAll:
    """A revalidator that handles no channel."""

    async def on_pull_data_sent(self, channel_id, additional_bytes):
        return NOT_HANDLED

    async def on_push_data_received(self, channel_id, additional_bytes):
        return NOT_HANDLED

    async def revalidate(self, channel_id, voucher):
        return NOT_HANDLED

    async def on_complete(self, channel_id):
        return NOT_HANDLED


class Gate(IgnoreAll):
    """A revalidator that stops the sender inside ``on_pull_data_sent`` before
    block ``at`` until the test opens the gate: a deterministic mid-transfer point."""

    def __init__(self, at: int) -> None:
        self.at = at
        self.seen = 0
        self.reached = anyio.Event()
        self.open = anyio.Event()

    async def on_pull_data_sent(self, channel_id, additional_bytes):
        self.seen += 1
        if self.seen == self.at:
            self.reached.set()
            await self.open.wait()
        return NOT_HANDLED


def validating(reval: Any = None, reval_type: type[Voucher] = Payment) -> Callable[[Manager], None]:
    """A node setup: LabelVoucher requests checked by a ScriptedValidator,
    and ``reval`` as the revalidator of ``reval_type`` vouchers if given."""
    def setup(manager: Manager) -> None:
        manager.register_voucher_type(LabelVoucher, ScriptedValidator())
        if reval is not None:
            manager.register_revalidator(reval_type, reval)
    return setup


def make_dag(
    store: MemoryBlockstore, leaves: int = 8, leaf_size: int = 1000, fanout: int = 4, seed: int = 0
) -> tuple[CID, int, list[CID]]:
    """A tree of dag-cbor nodes over raw leaves; returns (root, total bytes,
    CIDs in depth-first traversal order)."""
    import random

    rng = random.Random(seed)
    level: list[tuple[CID, int, list[CID]]] = []
    for _ in range(leaves):
        data = rng.randbytes(leaf_size)
        block = Block.of(data)
        store.put_many([block])
        level.append((block.cid, len(data), [block.cid]))
    while len(level) > 1 or not level:
        nxt = []
        for i in range(0, len(level), fanout):
            group = level[i : i + fanout]
            node = dagcbor.encode({"children": [c for c, _, _ in group]})
            block = Block.of(node, codec=DAG_CBOR)
            store.put_many([block])
            order = [block.cid] + [cid for _, _, o in group for cid in o]
            nxt.append((block.cid, len(node) + sum(s for _, s, _ in group), order))
        level = nxt
    return level[0]


@dataclass
class Recorder:
    """Collects every (event, state) a node's subscribers see. Subscribed
    with :meth:`watch`, it reads only once the Manager's event bus delivered
    what was published so far (the bus delivers on its own threads)."""

    events: list[tuple[Event, ChannelState]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    manager: Manager | None = None

    @classmethod
    def watch(cls, manager: Manager) -> Recorder:
        rec = cls(manager=manager)
        manager.subscribe(rec)
        return rec

    def __call__(self, event: Event, state: ChannelState) -> None:
        with self.lock:
            self.events.append((event, state))

    def _delivered(self) -> list[tuple[Event, ChannelState]]:
        if self.manager is not None:
            assert self.manager.events.flush(DEADLINE), "events not delivered"
        with self.lock:
            return list(self.events)

    def codes(self, chid: ChannelID) -> list[str]:
        return [e.code.name for e, s in self._delivered() if s.channel_id == chid]

    def statuses(self, chid: ChannelID) -> list[str]:
        """The distinct status sequence (consecutive repeats folded)."""
        out: list[str] = []
        for _, s in self._delivered():
            if s.channel_id == chid and (not out or out[-1] != s.status.name):
                out.append(s.status.name)
        return out


@dataclass
class Node:
    peer: PeerID
    manager: Manager
    blockstore: MemoryBlockstore
    recorder: Recorder


FAST = ManagerConfig(
    accept_timeout=5,
    no_progress_timeout=5,
    finalization_timeout=5,
    restart_backoff=0.05,
    tick=0.02,
    send_timeout=2,
)


class Harness:
    """Nodes on one in-memory network, each on the real graphsync engine the
    network carries (one block per message, so that mid-transfer points fall
    between blocks)."""

    def __init__(self, config: ManagerConfig = FAST) -> None:
        self.net = InMemoryNetwork()
        self.config = config
        self.stack = AsyncExitStack()
        self.nodes: dict[str, Node] = {}

    async def node(
        self,
        name: str,
        *,
        store: ChannelStore | None = None,
        blockstore: MemoryBlockstore | None = None,
        config: ManagerConfig | None = None,
        setup: Callable[[Manager], None] | None = None,
    ) -> Node:
        peer = PeerID(b"\x00\x08" + name.encode().ljust(8, b"_"))
        bs = blockstore or MemoryBlockstore()
        if peer in self.net.nodes:
            transport = self.net.nodes[peer]
        else:
            transport = self.net.transport(peer, bs, max_block_bytes=1)
        manager = Manager(transport, store=store or SqliteChannelStore(), config=config or self.config)
        manager.register_voucher_result_type(NoteResult)
        if setup is not None:
            setup(manager)
        rec = Recorder.watch(manager)
        await self.stack.enter_async_context(manager)
        node = Node(peer, manager, bs, rec)
        self.nodes[name] = node
        return node


@asynccontextmanager
async def harness(config: ManagerConfig = FAST):
    h = Harness(config)
    async with h.stack:
        yield h
    for node in h.nodes.values():
        node.manager.events.flush(DEADLINE)


def mutate_pieces(pieces: list[bytes], data: st.DataObject) -> list[bytes]:
    """``pieces`` after up to three edits drawn from ``data``: a bit
    flipped, a byte inserted or deleted, a piece's tail moved onto the next
    piece (a re-cut) or the whole piece merged into it; the joined bytes
    change with the first three only."""
    out = [bytearray(p) for p in pieces]
    for _ in range(data.draw(st.integers(0, 3)) if out else 0):
        i = data.draw(st.integers(0, len(out) - 1))
        piece = out[i]
        op = data.draw(st.sampled_from(["flip", "insert", "delete", "shift", "merge"]))
        at = data.draw(st.integers(0, max(len(piece) - 1, 0)))
        if op == "flip" and piece:
            piece[at] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "insert":
            piece.insert(at, data.draw(st.integers(0, 255)))
        elif op == "delete" and piece:
            del piece[at]
        elif op in ("shift", "merge") and i + 1 < len(out):
            cut = len(piece) if op == "merge" else at
            out[i + 1][:0] = piece[cut:]
            del piece[cut:]
    return [bytes(p) for p in out]
