"""``ManagerConfig.max_channels_per_peer``: how many channels one peer can
make a node hold as their responder.

Over the in-memory network: a peer at the limit has its next New request,
push or pull, rejected with a result saying why, before the validator sees
it and without anything stored; channels that end make room again; restarts
of the peer's channels are never refused, also after the node restarted on
its store (the channels it loads count against the limit).

Channels are kept open by the validator's ``pause`` label: the responder
accepts them paused, waiting for a payment that never comes.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import anyio
import pytest
from _support import (
    ALL,
    DEADLINE,
    FAST,
    LabelVoucher,
    Node,
    NoteResult,
    ScriptedValidator,
    harness,
    make_dag,
)

from datatransfer.config import ManagerConfig
from datatransfer.ipld.blockstore import MemoryBlockstore
from datatransfer.manager import Manager
from datatransfer.store import SqliteChannelStore
from datatransfer.types import ChannelID, PeerID
from statemachine import FINAL_STATUSES
from statemachine import Status as S
from transport.inmem import InMemoryNetwork

pytestmark = pytest.mark.anyio

LIMIT = 2
REFUSED = "rejected by the responder"


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request):
    return request.param


def limited(n: int | None = LIMIT) -> ManagerConfig:
    return replace(FAST, max_channels_per_peer=n)


async def until(pred, timeout: float = DEADLINE) -> None:
    with anyio.fail_after(timeout):
        while not pred():
            await anyio.sleep(0.002)


def serving(validator: ScriptedValidator):
    def setup(manager: Manager) -> None:
        manager.register_voucher_type(LabelVoucher, validator)
    return setup


def client(manager: Manager) -> None:
    manager.register_voucher_type(LabelVoucher, ScriptedValidator())


async def open_held(client_node: Node, server: Node, root, *, pull: bool) -> ChannelID:
    """Open a channel the server accepts paused (it stays open on both sides)."""
    opener = client_node.manager.open_pull_channel if pull else client_node.manager.open_push_channel
    chid = await opener(server.peer, LabelVoucher("pause"), root, ALL)
    await until(lambda: server.manager.channel_status(chid) == S.ResponderPaused)
    return chid


def live_from(server: Node, peer: PeerID) -> list[ChannelID]:
    return [c for c, st in server.manager.in_progress_channels().items()
            if st.channel_id.initiator == peer]


@pytest.mark.parametrize("pull", [False, True], ids=["push", "pull"])
async def test_new_request_past_the_limit_is_rejected_unvalidated_and_unstored(pull):
    validator = ScriptedValidator()
    async with harness(limited()) as h:
        a = await h.node("a", setup=client)
        b = await h.node("b", setup=serving(validator))
        # the data sender holds the DAG: b for a pull, a for a push
        root, _, _ = make_dag((b if pull else a).blockstore, leaves=4)
        held = [await open_held(a, b, root, pull=pull) for _ in range(LIMIT)]
        assert len(validator.calls) == LIMIT
        rows_before = len(list(b.manager.store.all()))

        opener = a.manager.open_pull_channel if pull else a.manager.open_push_channel
        extra = await opener(b.peer, LabelVoucher("ok"), root, ALL)
        state = await a.manager.wait(extra, timeout=DEADLINE)

        assert state.status == S.Failed
        assert state.message == REFUSED
        # a bare rejection, as a Go initiator understands it (see
        # Manager._channel_limit_reached); the reason is in the server's log
        assert state.voucher_results == ()
        assert len(validator.calls) == LIMIT  # the validator never saw it
        assert extra not in b.manager.channels()  # nor does the server hold it
        assert len(list(b.manager.store.all())) == rows_before
        assert set(live_from(b, a.peer)) == set(held)
        for chid in held:  # the peer's open channels are untouched
            assert b.manager.channel_status(chid) == S.ResponderPaused


async def test_the_limit_is_per_peer():
    validator = ScriptedValidator()
    async with harness(limited(1)) as h:
        a = await h.node("a", setup=client)
        c = await h.node("c", setup=client)
        b = await h.node("b", setup=serving(validator))
        root, _, _ = make_dag(b.blockstore, leaves=4)
        await open_held(a, b, root, pull=True)
        # another peer has its own quota
        await open_held(c, b, root, pull=True)
        refused = await a.manager.open_pull_channel(b.peer, LabelVoucher("ok"), root, ALL)
        state = await a.manager.wait(refused, timeout=DEADLINE)
        assert state.message == REFUSED
        # this node's own channels to the peer (as initiator) do not count
        root_a, _, _ = make_dag(a.blockstore, leaves=2, seed=3)
        mine = await b.manager.open_pull_channel(a.peer, LabelVoucher("ok"), root_a, ALL)
        assert (await b.manager.wait(mine, timeout=DEADLINE)).status == S.Completed


async def test_channels_that_end_make_room_again():
    validator = ScriptedValidator()
    async with harness(limited()) as h:
        a = await h.node("a", setup=client)
        b = await h.node("b", setup=serving(validator))
        root, size, _ = make_dag(b.blockstore, leaves=4)
        held = [await open_held(a, b, root, pull=True) for _ in range(LIMIT)]
        refused = await a.manager.open_pull_channel(b.peer, LabelVoucher("ok"), root, ALL)
        assert (await a.manager.wait(refused, timeout=DEADLINE)).message == REFUSED

        await a.manager.close_channel(held[0])  # ends on b too: Cancelled
        await until(lambda: b.manager.channel_status(held[0]) in FINAL_STATUSES)
        chid = await a.manager.open_pull_channel(b.peer, LabelVoucher("ok"), root, ALL)
        state = await a.manager.wait(chid, timeout=DEADLINE)
        assert state.status == S.Completed and state.received == size
        # completed channels count no more than cancelled ones
        chid = await a.manager.open_pull_channel(b.peer, LabelVoucher("ok"), root, ALL)
        assert (await a.manager.wait(chid, timeout=DEADLINE)).status == S.Completed
        assert [call[2] for call in validator.calls] == ["pause", "pause", "ok", "ok"]


async def test_restart_of_an_existing_channel_at_the_limit_is_served():
    validator = ScriptedValidator()
    async with harness(limited()) as h:
        a = await h.node("a", setup=client)
        b = await h.node("b", setup=serving(validator))
        root, _, _ = make_dag(a.blockstore, leaves=4)
        held = [await open_held(a, b, root, pull=False) for _ in range(LIMIT)]
        await a.manager.restart_channel(held[0])
        await until(lambda: ("push", True, "pause") in validator.calls)
        assert b.manager.events.flush(DEADLINE)
        assert "Restart" in b.recorder.codes(held[0])
        # served: accepted without a pause, the restart releases the voucher
        # pause and the push completes (the limit refuses New requests only)
        assert (await b.manager.wait(held[0], timeout=DEADLINE)).status == S.Completed
        assert (await a.manager.wait(held[0], timeout=DEADLINE)).status == S.Completed


async def test_no_limit_when_none():
    validator = ScriptedValidator()
    async with harness(limited(None)) as h:
        a = await h.node("a", setup=client)
        b = await h.node("b", setup=serving(validator))
        root, _, _ = make_dag(b.blockstore, leaves=2)
        for _ in range(LIMIT + 3):
            await open_held(a, b, root, pull=True)
        assert len(live_from(b, a.peer)) == LIMIT + 3


def test_limit_below_one_is_refused():
    with pytest.raises(ValueError, match="max_channels_per_peer"):
        ManagerConfig(max_channels_per_peer=0)


async def test_channels_loaded_from_the_store_count_and_restart(tmp_path: Path):
    """The server stops and starts again on its store: the peer's channels it
    loads fill the peer's quota (a New request is refused), and restarting
    them is served."""
    net = InMemoryNetwork()
    pa, pb = PeerID(b"\x00\x08a_______"), PeerID(b"\x00\x08b_______")
    bs_a = MemoryBlockstore()
    ta, tb = net.transport(pa, bs_a), net.transport(pb, MemoryBlockstore())
    root, _, _ = make_dag(bs_a, leaves=4)
    cfg = limited()
    store_b = tmp_path / "b.sqlite"
    a = Manager(ta, store=SqliteChannelStore(tmp_path / "a.sqlite"), config=cfg)
    a.register_voucher_type(LabelVoucher, ScriptedValidator())
    a.register_voucher_result_type(NoteResult)
    async with a:
        first = ScriptedValidator()
        b = Manager(tb, store=SqliteChannelStore(store_b), config=cfg)
        b.register_voucher_type(LabelVoucher, first)
        async with b:
            held = []
            for _ in range(LIMIT):
                chid = await a.open_push_channel(pb, LabelVoucher("pause"), root, ALL)
                await until(lambda: b.channel_status(chid) == S.ResponderPaused)  # noqa: B023
                held.append(chid)

        second = ScriptedValidator()
        b = Manager(tb, store=SqliteChannelStore(store_b), config=cfg)
        b.register_voucher_type(LabelVoucher, second)
        async with b:
            assert set(b.in_progress_channels()) == set(held)
            extra = await a.open_push_channel(pb, LabelVoucher("ok"), root, ALL)
            state = await a.wait(extra, timeout=DEADLINE)
            assert state.message == REFUSED
            assert all(is_restart for _, is_restart, _ in second.calls)
            assert extra not in b.channels()
            for chid in held:
                await a.restart_channel(chid)
            await until(lambda: sum(1 for c in second.calls if c == ("push", True, "pause"))
                        >= LIMIT)
            # served: the validator accepts the restarts without pausing, so
            # the data waits no longer for a voucher (a restart decides)
            for chid in held:
                assert (await b.wait(chid, timeout=DEADLINE)).status == S.Completed
                assert (await a.wait(chid, timeout=DEADLINE)).status == S.Completed


class HeldValidator(ScriptedValidator):
    """Accepts, but only once :attr:`gate` is set: requests pile up in validation."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = anyio.Event()

    async def _decide(self, kind, is_restart, voucher):
        self.calls.append((kind, is_restart, voucher.label))
        await self.gate.wait()
        return NoteResult("accepted")


async def test_requests_being_validated_count_against_the_limit():
    """New requests arriving while earlier ones wait for the validator cannot
    all pass the check at once: those in validation hold their place."""
    validator = HeldValidator()
    async with harness(limited()) as h:
        a = await h.node("a", setup=client)
        b = await h.node("b", setup=serving(validator))
        root, _, _ = make_dag(b.blockstore, leaves=2)
        # pulls: each data request has a lane of its own (the in-memory
        # network hands a peer's messages over one at a time)
        chids = [await a.manager.open_pull_channel(b.peer, LabelVoucher("ok"), root, ALL)
                 for _ in range(LIMIT + 2)]
        # which requests come first is up to the scheduler (one lane each)
        await until(lambda: len(validator.calls) == LIMIT)
        await until(lambda: sum(a.manager.channel_status(c) in FINAL_STATUSES
                                for c in chids) == 2)
        refused = [c for c in chids if a.manager.channel_status(c) in FINAL_STATUSES]
        assert [a.manager.channel_state(c).message for c in refused] == [REFUSED] * 2
        assert len(validator.calls) == LIMIT
        validator.gate.set()
        for chid in set(chids) - set(refused):
            assert (await a.manager.wait(chid, timeout=DEADLINE)).status == S.Completed
