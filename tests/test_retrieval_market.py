"""The retrieval market end to end (issue 13, items 2 and 3): a provider
(:func:`register_provider`) and a client (:func:`register_client`) on two
Managers over the in-memory network (one block per graphsync message), paid
through an :class:`InProcessLedger`.

Every paid test checks the same three things:

* what the client paid, payment by payment, is what Go's ``Params``
  arithmetic asks (:func:`expected_payments`): the unseal price first, then
  at each payment boundary, then the rest before completion; in all, price x
  bytes + unseal price, and the ledger moved exactly that;
* no voucher was redeemed twice (the ledger's history has each (lane,
  nonce) once);
* the provider never sent a block while unpaid (:class:`Wire`): at each
  block on the wire, the ledger had already moved the unseal price, and the
  bytes sent before that block were below the next payment boundary of what
  was paid -- so the transfer provably stops at each boundary until paid.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import anyio
import pytest
from _support import DEADLINE, FAST, make_dag, quiesce
from hypothesis import given
from hypothesis import strategies as st

from datatransfer.config import ManagerConfig
from datatransfer.errors import Pause
from datatransfer.ipld.blockstore import MemoryBlockstore
from datatransfer.ipld.cid import CID
from datatransfer.ipld.selector import ALL_SELECTOR_NODE
from datatransfer.manager import Manager
from datatransfer.markets.retrieval import (
    Ask,
    BudgetExceeded,
    DealEvent,
    DealOvercharged,
    DealPayment,
    DealProposal,
    DealRejected,
    DealResponse,
    DealStatus,
    InProcessLedger,
    LedgerWallet,
    Params,
    PaymentError,
    PriceTooHigh,
    RetrievalClient,
    RetrievalProvider,
    register_client,
    register_provider,
)
from datatransfer.markets.retrieval.filecoin import Address, SignedVoucher
from datatransfer.store import MemoryChannelStore
from datatransfer.types import ChannelID, PeerID
from statemachine import Status
from transport.inmem import InMemoryNetwork, Packet

S = Status
D = DealStatus

PAID = Ask(price_per_byte=2, unseal_price=500, payment_interval=2000,
           payment_interval_increase=1000)

#: patient enough for a peer to stop and come back
PATIENT = replace(FAST, max_restarts=50, restart_backoff=0.02, max_restart_backoff=0.2,
                  no_progress_timeout=20, accept_timeout=20)


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return request.param


def expected_payments(params: Params, sizes: list[int]) -> list[int]:
    """What a client pays, payment by payment, for blocks of ``sizes`` in
    walk order: the unseal price, then what is owed each time the bytes sent
    reach the next payment boundary of what was paid (the provider holds the
    next block then), then the rest at the end."""
    pays: list[int] = []
    funds = 0
    if params.unseal_price:
        pays.append(params.unseal_price)
        funds = params.unseal_price
    released = 0
    for size in sizes:
        if params.price_per_byte and released >= params.next_interval(funds):
            owed = params.outstanding_balance(funds, released, False)
            pays.append(owed)
            funds += owed
        released += size
    final = params.outstanding_balance(funds, released, True)
    if final:
        pays.append(final)
    return pays


def ask_with(ask: Ask, address: Address) -> Ask:
    return replace(ask, payment_address=address)


# ------------------------------------------------------------------ the ledger


@pytest.mark.anyio
async def test_ledger_redeems_each_voucher_once_and_for_one_deal_only() -> None:
    ledger = InProcessLedger()
    payee, payer = ledger.new_account(), ledger.new_account(1000)
    client, provider = ledger.wallet(payer), ledger.wallet(payee)
    channel = await client.open_channel(payee, 600)
    assert ledger.balance(payer) == 400
    lane = await client.allocate_lane(channel)
    first = await client.create_voucher(channel, lane, 100)
    second = await client.create_voucher(channel, lane, 250)  # running totals
    assert (first.nonce, second.nonce) == (1, 2)
    assert await provider.check_voucher(channel, second) == 250
    assert await provider.redeem_voucher(channel, second, "deal-a") == 250
    # the same voucher again, for the same deal: idempotent, nothing moves
    assert await provider.redeem_voucher(channel, second, "deal-a") == 250
    assert ledger.balance(payee) == 250 and len(ledger.history) == 1
    with pytest.raises(PaymentError, match="redeemed for another deal"):
        await provider.redeem_voucher(channel, second, "deal-b")
    with pytest.raises(PaymentError, match="nonce 1 on lane 0 is not above the last "
                                           "redeemed, 2"):
        await provider.redeem_voucher(channel, first, "deal-a")
    third = await client.create_voucher(channel, lane, 300)
    assert await provider.redeem_voucher(channel, third, "deal-a") == 50
    assert ledger.channel_info(channel) == (payer, payee, 600, 300)
    assert ledger.collect(channel) == 300 and ledger.balance(payer) == 700
    assert ledger.balance(payee) == 300


@pytest.mark.anyio
async def test_ledger_refuses_forged_misdirected_and_uncovered_vouchers() -> None:
    ledger = InProcessLedger()
    payee, payer, other = (ledger.new_account(), ledger.new_account(1000),
                           ledger.new_account(1000))
    channel = await ledger.wallet(payer).open_channel(payee, 500)
    voucher = await ledger.wallet(payer).create_voucher(channel, 0, 100)
    forged = replace(voucher, amount=400)
    with pytest.raises(PaymentError, match="not signed by the channel's payer"):
        await ledger.wallet(payee).check_voucher(channel, forged)
    with pytest.raises(PaymentError, match=f"pays {payee}, not {other}"):
        await ledger.wallet(other).check_voucher(channel, voucher)
    with pytest.raises(PaymentError, match="does not pay from channel"):
        await ledger.wallet(other).create_voucher(channel, 0, 10)
    with pytest.raises(PaymentError, match="a total of 501 on lane 1 is beyond it"):
        await ledger.wallet(payer).create_voucher(channel, 1, 501)
    with pytest.raises(PaymentError, match="cannot lock 5000"):
        await ledger.wallet(payer).open_channel(payee, 5000)


def test_ask_refuses_a_priced_ask_paid_on_every_byte() -> None:
    with pytest.raises(ValueError, match="payment interval or an increase above zero"):
        Ask(price_per_byte=1, payment_interval=0, payment_interval_increase=0)
    assert Ask().is_free and not PAID.is_free


# ------------------------------------------------------------------ the world


class Wire:
    """Sees every packet; for each block the provider sends, notes what the
    ledger had moved by then (one deal per test)."""

    def __init__(self, net: InMemoryNetwork, ledger: InProcessLedger) -> None:
        self.ledger = ledger
        self.provider: PeerID | None = None
        #: (block index, funds moved when it went)
        self.blocks: list[tuple[int, int]] = []
        self.hooks: list[Callable[[Packet], None]] = []
        net.drop(self._see)

    def _see(self, packet: Packet) -> bool:
        if packet.kind == "blocks" and packet.src == self.provider:
            funds = sum(r.added for r in self.ledger.history)
            self.blocks.extend((index, funds) for index in packet.indices)
        for hook in self.hooks:
            hook(packet)
        return False

    def assert_never_ahead_of_payment(self, params: Params, sizes: list[int]) -> None:
        """No block left before the unseal price was paid, nor while the
        bytes sent before it had reached the next boundary of what was paid."""
        prefix = [0]
        for size in sizes:
            prefix.append(prefix[-1] + size)
        seen: set[int] = set()
        for index, funds in self.blocks:
            if index in seen:
                continue  # (sent again after a restart: it went before)
            seen.add(index)
            if params.is_free:
                continue
            assert funds >= params.unseal_price, (index, funds)
            if params.price_per_byte:
                before = prefix[index - 1]
                assert before < params.next_interval(funds), (index, before, funds)
        assert seen == set(range(1, len(sizes) + 1))


class GatedWallet:
    """A client's wallet that holds its ``at``-th voucher until released (a
    deterministic "asked, not yet paid" point)."""

    def __init__(self, wallet: LedgerWallet, at: int | None) -> None:
        self.wallet = wallet
        self.address = wallet.address
        self.at = at
        self.calls = 0
        self.reached = anyio.Event()
        self.release = anyio.Event()

    async def open_channel(self, payee: Address, funds: int) -> Address:
        return await self.wallet.open_channel(payee, funds)

    async def allocate_lane(self, channel: Address) -> int:
        return await self.wallet.allocate_lane(channel)

    async def create_voucher(self, channel: Address, lane: int, total: int) -> SignedVoucher:
        self.calls += 1
        if self.calls == self.at:
            self.reached.set()
            await self.release.wait()
        return await self.wallet.create_voucher(channel, lane, total)

    async def check_voucher(self, channel: Address, voucher: SignedVoucher) -> int:
        return await self.wallet.check_voucher(channel, voucher)

    async def redeem_voucher(self, channel: Address, voucher: SignedVoucher, deal: str) -> int:
        return await self.wallet.redeem_voucher(channel, voucher, deal)


class Station:
    """A peer whose Manager can stop and start again on the same transport,
    blockstore and store (so "restart" means exactly: a new Manager and a
    new provider or client on the same store)."""

    def __init__(self, world: World, name: str, setup: Callable[[Manager], Any],
                 config: ManagerConfig) -> None:
        self.world = world
        self.peer = PeerID(b"\x00\x08" + name.encode().ljust(8, b"_"))
        self.blockstore = MemoryBlockstore()
        self.transport = world.net.transport(self.peer, self.blockstore, max_block_bytes=1)
        self.store = MemoryChannelStore()
        self.setup = setup
        self.config = config
        self.role: Any = None
        self.manager: Manager | None = None
        self._stop = anyio.Event()
        self._stopped = anyio.Event()

    async def start(self) -> Manager:
        return await self.world.tg.start(self._run)

    async def _run(self, *, task_status: Any) -> None:
        self._stop, self._stopped = anyio.Event(), anyio.Event()
        manager = Manager(self.transport, store=self.store, config=self.config)
        self.role = self.setup(manager)
        try:
            async with manager:
                self.manager = manager
                task_status.started(manager)
                await self._stop.wait()
        finally:
            self.manager = None
            self._stopped.set()

    async def stop(self) -> None:
        self._stop.set()
        await self._stopped.wait()

    @property
    def m(self) -> Manager:
        assert self.manager is not None
        return self.manager


@dataclass
class World:
    tg: Any
    net: InMemoryNetwork = field(default_factory=InMemoryNetwork)
    ledger: InProcessLedger = field(default_factory=InProcessLedger)
    wire: Wire = dataclasses.field(init=False)
    stations: list[Station] = field(default_factory=list)
    events: list[DealEvent] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.wire = Wire(self.net, self.ledger)
        self.provider_account = self.ledger.new_account()
        self.client_account = self.ledger.new_account(10**12)

    def provider(self, ask: Ask, *, payments: bool = True, config: ManagerConfig = FAST,
                 cls: type[RetrievalProvider] = RetrievalProvider) -> Station:
        wallet = self.ledger.wallet(self.provider_account) if payments else None

        def setup(manager: Manager) -> RetrievalProvider:
            if cls is RetrievalProvider:
                return register_provider(manager, station.blockstore, ask, wallet)
            provider = cls(manager, station.blockstore, ask_with(ask, self.provider_account),
                           wallet)
            manager.register_voucher_type(DealProposal, provider)
            manager.register_revalidator(DealPayment, provider)
            manager.register_voucher_result_type(DealResponse)
            return provider

        station = Station(self, "provider", setup, config)
        self.wire.provider = station.peer
        self.stations.append(station)
        return station

    def client(self, wallet: Any = None, *,
               config: ManagerConfig = FAST) -> Station:
        wallet = wallet or self.ledger.wallet(self.client_account)

        def setup(manager: Manager) -> RetrievalClient:
            client = register_client(manager, wallet)
            client.subscribe(self.events.append)
            return client

        station = Station(self, "client", setup, config)
        self.stations.append(station)
        return station

    def paid_amounts(self) -> list[int]:
        return [e.owed for e in self.events
                if e.status in (D.SEND_FUNDS, D.SEND_FUNDS_LAST_PAYMENT)]

    def statuses(self) -> list[DealStatus]:
        return [e.status for e in self.events]

    def assert_each_voucher_redeemed_once(self) -> None:
        keys = [(r.channel, r.lane, r.nonce) for r in self.ledger.history]
        assert len(keys) == len(set(keys)), keys


@asynccontextmanager
async def world() -> AsyncIterator[World]:
    async with anyio.create_task_group() as tg:
        w = World(tg)
        try:
            yield w
        finally:
            for station in w.stations:
                if station.manager is not None:
                    await station.stop()


def sizes_of(bs: MemoryBlockstore, order: list[CID]) -> list[int]:
    return [len(bs.get(cid)) for cid in order]


async def retrieve(client: RetrievalClient, peer: PeerID, root: CID, **kw: Any) -> Any:
    with anyio.fail_after(DEADLINE):
        return await client.retrieve(peer, root, **kw)


class Outcome:
    """The result of a call run in the background, awaited later."""

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.value: Any = None

    async def run(self, call: Any) -> None:
        self.value = await call
        self.done.set()

    async def get(self) -> Any:
        with anyio.fail_after(DEADLINE):
            await self.done.wait()
        return self.value


# ------------------------------------------------------------------ free


@pytest.mark.anyio
async def test_free_retrieval_completes() -> None:
    async with world() as w:
        p, c = w.provider(Ask(), payments=False), w.client()
        root, size, order = make_dag(p.blockstore, leaves=8)
        await p.start()
        await c.start()
        result = await retrieve(c.role, p.peer, root)
        assert (result.received, result.paid, result.payment_channel) == (size, 0, None)
        for cid in order:
            cid.verify(c.blockstore.get(cid))
        assert w.statuses() == [D.NEW, D.WAIT_FOR_ACCEPTANCE, D.ACCEPTED, D.BLOCKS_COMPLETE,
                                D.COMPLETED]
        # the provider answered Accepted, and Completed with the Complete message
        sc = c.m.channel_state(result.channel_id)
        assert [r.status for r in sc.voucher_results] == [D.ACCEPTED, D.COMPLETED]
        assert (await p.m.wait(result.channel_id, timeout=DEADLINE)).status == S.Completed
        assert w.ledger.history == []


@pytest.mark.anyio
async def test_the_client_names_the_deal_a_channel_carries() -> None:
    """``deal_proposal`` (what ``datatransfer retrieve`` asks before resuming
    a live channel): the proposal on a channel this node opened, None on the
    provider's side of the same channel."""
    async with world() as w:
        p, c = w.provider(Ask(), payments=False), w.client()
        root, _, _ = make_dag(p.blockstore, leaves=2)
        await p.start()
        await c.start()
        result = await retrieve(c.role, p.peer, root)
        proposal = c.role.deal_proposal(result.channel_id)
        assert isinstance(proposal, DealProposal)
        assert (proposal.deal_id, proposal.payload_cid) == (result.deal_id, root)
        assert RetrievalClient(p.m).deal_proposal(result.channel_id) is None


# ------------------------------------------------------------------ refusals


@pytest.mark.anyio
async def test_refusals_through_the_client_carry_the_providers_message() -> None:
    """Root not held, a price below the ask, an interval above it, a paid
    proposal to a free-only provider: ``retrieve`` raises DealRejected with
    the provider's reason, and no payment moved."""
    async with world() as w:
        p = w.provider(Ask(price_per_byte=3, payment_interval=1000, payment_interval_increase=0))
        c = w.client()
        root, _, _ = make_dag(p.blockstore, leaves=2)
        await p.start()
        await c.start()
        address = w.provider_account
        lacking, _, _ = make_dag(MemoryBlockstore(), leaves=2, seed=7)
        cases = [
            (lacking, Ask(price_per_byte=3, payment_interval=1000, payment_interval_increase=0),
             f"{lacking} is not held here"),
            (root, Ask(price_per_byte=1, payment_interval=1000, payment_interval_increase=0),
             "price per byte 1 attoFIL is below the ask's 3"),
            (root, Ask(price_per_byte=3, payment_interval=5000, payment_interval_increase=0),
             "payment interval 5000 bytes is above the ask's 1000"),
        ]
        for target, ask, reason in cases:
            with pytest.raises(DealRejected) as info:
                await retrieve(c.role, p.peer, target, ask=ask_with(ask, address), budget=10**6)
            assert info.value.reason == reason
            assert str(info.value) == f"the provider rejected the deal: {reason}"
            assert w.events[-1].status == D.REJECTED and w.events[-1].message == reason
        assert w.ledger.history == []


@pytest.mark.anyio
async def test_free_only_provider_refuses_a_paid_proposal() -> None:
    async with world() as w:
        p, c = w.provider(Ask(), payments=False), w.client()
        root, _, _ = make_dag(p.blockstore, leaves=2)
        await p.start()
        await c.start()
        with pytest.raises(DealRejected, match="this provider serves free retrievals only"):
            await retrieve(c.role, p.peer, root, ask=ask_with(PAID, w.provider_account),
                           budget=10**6)


@pytest.mark.anyio
@pytest.mark.parametrize("case", ["wrong-root", "no-selector-not-all", "other-selector"])
async def test_proposals_not_matching_the_request_are_rejected_with_the_reason(
        case: str) -> None:
    """A proposal whose payload CID is not the request's root, or whose
    selector is not the request's (none given: explore-all only), is
    rejected; the rejection reaches the client's channel with the message."""
    async with world() as w:
        p, c = w.provider(Ask(), payments=False), w.client()
        root, _, _ = make_dag(p.blockstore, leaves=4)
        other, _, _ = make_dag(p.blockstore, leaves=2, seed=3)
        await p.start()
        await c.start()
        just_root = {"R": {"l": {"depth": 0}, ":>": {"a": {">": {"@": {}}}}}}
        params = Params()
        request_root, selector = root, ALL_SELECTOR_NODE
        if case == "wrong-root":
            payload = other
            reason = f"the proposal is for {other}, the request for {root}"
        elif case == "no-selector-not-all":
            payload, selector = root, just_root
            reason = "the proposal names no selector, so only explore-all may be requested"
        else:
            payload, selector = root, just_root
            params = Params(selector=ALL_SELECTOR_NODE)
            reason = "the request's selector is not the proposal's"
        chid = await c.m.open_pull_channel(p.peer, DealProposal(payload, 7, params),
                                           request_root, selector)
        state = await c.m.wait(chid, timeout=DEADLINE)
        assert state.status == S.Failed
        assert state.voucher_results[-1] == DealResponse(D.REJECTED, 7, message=reason)


@pytest.mark.anyio
async def test_client_refuses_before_proposing() -> None:
    """An ask above the caller's limits, an unseal price above the budget,
    a priced ask without a payment address: refused with nothing sent."""
    async with world() as w:
        p, c = w.provider(PAID), w.client()
        root, _, _ = make_dag(p.blockstore, leaves=2)
        await p.start()
        await c.start()
        ask = ask_with(PAID, w.provider_account)
        with pytest.raises(PriceTooHigh, match="asks 2 attoFIL per byte, above the limit of 1"):
            await retrieve(c.role, p.peer, root, ask=ask, budget=10**6, max_price_per_byte=1)
        with pytest.raises(BudgetExceeded, match="needs 500 attoFIL in all, over the budget "
                                                 "of 499"):
            await retrieve(c.role, p.peer, root, ask=ask, budget=499)
        with pytest.raises(PaymentError, match="names no payment address"):
            await retrieve(c.role, p.peer, root, ask=PAID, budget=10**6)
        assert c.m.channels() == {}


# ------------------------------------------------------------------ paid


@pytest.mark.anyio
async def test_paid_retrieval_pays_unseal_then_every_interval_then_the_rest() -> None:
    async with world() as w:
        p, c = w.provider(PAID), w.client()
        root, size, order = make_dag(p.blockstore, leaves=12, leaf_size=700)
        sizes = sizes_of(p.blockstore, order)
        await p.start()
        await c.start()
        ask = ask_with(PAID, w.provider_account)
        params = ask.params()
        result = await retrieve(c.role, p.peer, root, ask=ask, budget=10**6)
        total = 2 * size + 500
        expected = expected_payments(params, sizes)
        assert len(expected) >= 4 and sum(expected) == total  # unseal, 2+ intervals, final
        assert w.paid_amounts() == expected
        assert result.paid == total and result.received == size
        assert w.ledger.balance(w.provider_account) == total
        assert w.ledger.channel_info(result.payment_channel)[3] == total
        assert w.ledger.collect(result.payment_channel) == 10**6 - total
        assert w.ledger.balance(w.client_account) == 10**12 - total
        w.assert_each_voucher_redeemed_once()
        w.wire.assert_never_ahead_of_payment(params, sizes)
        # each request came once the blocks before it had arrived, and
        # asked exactly for what they owe (the interval's boundary)
        asks = [e for e in w.events if e.status == D.FUNDS_NEEDED]
        assert asks and all(e.received >= 2000 for e in asks)
        statuses = w.statuses()
        assert statuses[:5] == [D.NEW, D.WAIT_FOR_ACCEPTANCE, D.FUNDS_NEEDED_UNSEAL,
                                D.SEND_FUNDS, D.ONGOING]
        assert statuses[-4:] == [D.FUNDS_NEEDED_LAST_PAYMENT, D.SEND_FUNDS_LAST_PAYMENT,
                                 D.BLOCKS_COMPLETE, D.COMPLETED]
        sp = await p.m.wait(result.channel_id, timeout=DEADLINE)
        assert sp.status == S.Completed and sp.voucher_results[-1].status == D.COMPLETED


class SyncRecordingWallet:
    """A provider's wallet that logs each redemption and each sync."""

    def __init__(self, wallet: LedgerWallet) -> None:
        self.wallet = wallet
        self.address = wallet.address
        self.log: list[str] = []

    async def check_voucher(self, channel: Address, voucher: SignedVoucher) -> int:
        return await self.wallet.check_voucher(channel, voucher)

    async def redeem_voucher(self, channel: Address, voucher: SignedVoucher, deal: str) -> int:
        self.log.append("redeem")
        return await self.wallet.redeem_voucher(channel, voucher, deal)

    async def sync(self) -> None:
        self.log.append("sync")


@pytest.mark.anyio
async def test_a_paid_deal_completes_only_once_its_redemptions_are_synced(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The provider's payments may write redemptions lazily (HomeWallet
    fsyncs its journal only in sync()): the provider syncs them before it
    answers Completed, so a deal a client holds as completed never loses a
    payment to a crash."""
    async with world() as w:
        wallets: list[SyncRecordingWallet] = []
        make = w.ledger.wallet

        def recording(account: Address) -> Any:
            wallet = make(account)
            if account != w.provider_account:
                return wallet
            wallets.append(SyncRecordingWallet(wallet))
            return wallets[-1]

        monkeypatch.setattr(w.ledger, "wallet", recording)
        p, c = w.provider(PAID), w.client()
        root, size, _order = make_dag(p.blockstore, leaves=12, leaf_size=700)
        await p.start()
        await c.start()
        result = await retrieve(c.role, p.peer, root, ask=ask_with(PAID, w.provider_account),
                                budget=10**6)
        assert result.paid == 2 * size + 500
        [wallet] = wallets
        assert wallet.log.count("redeem") >= 4 and wallet.log[-1] == "sync", wallet.log
        sp = await p.m.wait(result.channel_id, timeout=DEADLINE)
        assert sp.status == S.Completed and sp.voucher_results[-1].status == D.COMPLETED


@pytest.mark.anyio
async def test_the_transfer_waits_at_the_boundary_until_paid() -> None:
    """Held at the first payment request: nothing more arrives while the
    client has not paid, however long that takes; its payment releases the
    rest."""
    async with world() as w:
        gate = GatedWallet(w.ledger.wallet(w.client_account), at=2)  # 1: unseal, 2: interval
        p, c = w.provider(PAID), w.client(gate)
        root, size, order = make_dag(p.blockstore, leaves=12, leaf_size=700)
        await p.start()
        await c.start()
        ask = ask_with(PAID, w.provider_account)
        done = Outcome()
        w.tg.start_soon(done.run, retrieve(c.role, p.peer, root, ask=ask, budget=10**6))
        with anyio.fail_after(DEADLINE):
            await gate.reached.wait()
        (chid,) = c.m.channels()
        held = c.m.channel_state(chid).received
        blocks_before = len(w.wire.blocks)
        await quiesce(0.3)  # many block times: nothing may move meanwhile
        assert c.m.channel_state(chid).received == held
        assert len(w.wire.blocks) == blocks_before
        assert p.m.channel_state(chid).status == S.ResponderPaused
        assert 2000 <= held < size
        gate.release.set()
        assert (await done.get()).paid == 2 * size + 500


# ------------------------------------------------------------------ a client that will not overpay


class Greedy(RetrievalProvider):
    """A provider that asks for more than it is owed at each boundary."""

    extra = 1000

    async def on_pull_data_sent(self, channel_id: ChannelID, additional_bytes: int) -> Any:
        try:
            return await super().on_pull_data_sent(channel_id, additional_bytes)
        except Pause as pause:
            raise Pause(self._more(pause.result)) from None

    async def revalidate(self, channel_id: ChannelID, voucher: Any) -> Any:
        try:
            return await super().revalidate(channel_id, voucher)
        except Pause as pause:
            raise Pause(self._more(pause.result)) from None

    def _more(self, response: DealResponse) -> DealResponse:
        if response.status is D.FUNDS_NEEDED:
            return replace(response, payment_owed=response.payment_owed + self.extra)
        return response


@pytest.mark.anyio
async def test_client_refuses_to_pay_more_than_agreed() -> None:
    async with world() as w:
        p, c = w.provider(PAID, cls=Greedy), w.client()
        root, size, order = make_dag(p.blockstore, leaves=12, leaf_size=700)
        await p.start()
        await c.start()
        with pytest.raises(DealOvercharged) as info:
            await retrieve(c.role, p.peer, root, ask=ask_with(PAID, w.provider_account),
                           budget=10**6)
        e = info.value
        # it paid the unseal price, sent that voucher again once (the
        # provider might have lost it), then refused
        assert e.paid == 500 and e.asked > e.allowed - e.paid
        assert e.allowed == 500 + 2 * e.received
        assert "deal cancelled" in str(e)
        assert w.paid_amounts() == [500]
        assert w.ledger.balance(w.provider_account) == 500
        assert w.events[-1].status == D.ERRORED
        (chid,) = c.m.channels()
        assert (await c.m.wait(chid, timeout=DEADLINE)).status == S.Cancelled
        assert (await p.m.wait(chid, timeout=DEADLINE)).status == S.Cancelled
        w.wire.assert_never_ahead_of_payment(
            ask_with(PAID, w.provider_account).params(),
            sizes_of(p.blockstore, order)[: len({i for i, _ in w.wire.blocks})])


@pytest.mark.anyio
async def test_client_stops_at_its_budget() -> None:
    async with world() as w:
        p, c = w.provider(PAID), w.client()
        root, size, order = make_dag(p.blockstore, leaves=12, leaf_size=700)
        ask = ask_with(PAID, w.provider_account)
        expected = expected_payments(ask.params(), sizes_of(p.blockstore, order))
        budget = sum(expected[:2]) + 1  # unseal and the first interval, not the second
        await p.start()
        await c.start()
        with pytest.raises(BudgetExceeded) as info:
            await retrieve(c.role, p.peer, root, ask=ask, budget=budget)
        assert info.value.needed == sum(expected[:3]) and info.value.budget == budget
        assert w.paid_amounts() == expected[:2]
        assert w.ledger.balance(w.provider_account) == sum(expected[:2]) <= budget
        (chid,) = c.m.channels()
        assert (await p.m.wait(chid, timeout=DEADLINE)).status == S.Cancelled


# ------------------------------------------------------------------ restarts


async def until(pred: Callable[[], bool]) -> None:
    """Poll ``pred``; fail the test after DEADLINE."""
    with anyio.fail_after(DEADLINE):
        while not pred():
            await anyio.sleep(0.005)


def payments_sent(manager: Manager, chid: ChannelID) -> int:
    return sum(isinstance(v, DealPayment) or (isinstance(v, tuple) and v[0] == DealPayment.type_id)
               for v in manager.channel_state(chid).vouchers)


@pytest.mark.anyio
@pytest.mark.parametrize("when", ["asked-not-paid", "just-redeemed"])
async def test_provider_restart_mid_deal_charges_nothing_twice(when: str) -> None:
    """The provider stops while it holds the transfer for a payment (the
    client pays while it is away: the voucher is lost), or right after it
    redeemed one; it comes back on its store. Its restarted channel asks
    again for what is owed; the client, having paid it, sends its voucher
    again, which the provider counts once. Totals are exact and nothing left
    unpaid."""
    async with world() as w:
        gate = GatedWallet(w.ledger.wallet(w.client_account),
                           at=3 if when == "asked-not-paid" else None)
        p, c = w.provider(PAID, config=PATIENT), w.client(gate, config=PATIENT)
        root, size, order = make_dag(p.blockstore, leaves=16, leaf_size=600)
        sizes = sizes_of(p.blockstore, order)
        ask = ask_with(PAID, w.provider_account)
        await p.start()
        await c.start()
        done = Outcome()
        w.tg.start_soon(done.run, retrieve(c.role, p.peer, root, ask=ask, budget=10**6))
        if when == "asked-not-paid":
            with anyio.fail_after(DEADLINE):
                await gate.reached.wait()  # the provider holds; the client is about to pay
            await p.stop()
            gate.release.set()  # paid while the provider is away: the voucher is lost
            (chid,) = c.m.channels()
            await until(lambda: payments_sent(c.m, chid) == 3)
            assert len(w.ledger.history) == 2
        else:
            await until(lambda: len(w.ledger.history) >= 2)
            await p.stop()
        await p.start()
        result = await done.get()
        total = 2 * size + 500
        assert result.paid == total and result.received == size
        assert w.paid_amounts() == expected_payments(ask.params(), sizes)
        assert w.ledger.balance(w.provider_account) == total
        w.assert_each_voucher_redeemed_once()
        w.wire.assert_never_ahead_of_payment(ask.params(), sizes)
        assert (await p.m.wait(result.channel_id, timeout=DEADLINE)).status == S.Completed
        # the voucher lost while the provider was away went again, once (one
        # redeemed just before the stop may go again too, if the provider
        # stopped before it resumed: counted once all the same)
        resent = payments_sent(c.m, result.channel_id) - len(w.paid_amounts())
        assert resent == 1 if when == "asked-not-paid" else resent in (0, 1)


@pytest.mark.anyio
@pytest.mark.parametrize("when", ["asked-not-paid", "just-redeemed"])
async def test_client_restart_mid_deal_charges_nothing_twice(when: str) -> None:
    """The client stops while asked and not yet paid, or right after the
    provider redeemed its payment; a new Manager and client on its store
    resume the deal (``resume``): no request already paid is paid again, the
    one not paid is, and the totals are exact."""
    async with world() as w:
        gate = GatedWallet(w.ledger.wallet(w.client_account),
                           at=3 if when == "asked-not-paid" else None)
        p, c = w.provider(PAID, config=PATIENT), w.client(gate, config=PATIENT)
        root, size, order = make_dag(p.blockstore, leaves=16, leaf_size=600)
        sizes = sizes_of(p.blockstore, order)
        ask = ask_with(PAID, w.provider_account)
        await p.start()
        await c.start()

        scope, left = anyio.CancelScope(), anyio.Event()

        async def run() -> None:
            try:
                with scope:
                    await retrieve(c.role, p.peer, root, ask=ask, budget=10**6)
            finally:
                left.set()

        w.tg.start_soon(run)
        if when == "asked-not-paid":
            with anyio.fail_after(DEADLINE):
                await gate.reached.wait()
        else:
            await until(lambda: len(w.ledger.history) >= 2)
        scope.cancel()  # the client process goes away: first its deal, then its node
        await left.wait()
        (chid,) = c.m.channels()
        asked = len(p.m.channel_state(chid).voucher_results)
        await c.stop()
        gate.at = None
        gate.release.set()
        await c.start()  # its Manager restarts the channel by itself
        if when == "asked-not-paid":
            # the provider serves the restart and holds the same block again,
            # asking again for what it owes
            await until(lambda: D.FUNDS_NEEDED in [
                r.status for r in p.m.channel_state(chid).voucher_results[asked:]])
        with anyio.fail_after(DEADLINE):
            result = await c.role.resume(chid, ask=ask, budget=10**6)
        total = 2 * size + 500
        assert result.paid == total and result.received == size
        assert w.paid_amounts() == expected_payments(ask.params(), sizes)
        assert w.ledger.balance(w.provider_account) == total
        w.assert_each_voucher_redeemed_once()
        w.wire.assert_never_ahead_of_payment(ask.params(), sizes)
        assert (await p.m.wait(chid, timeout=DEADLINE)).status == S.Completed
        # the request asked twice (before and after the restart) was paid
        # once, and answered the second time with the same voucher again
        resent = 1 if when == "asked-not-paid" else 0
        assert payments_sent(c.m, chid) == len(expected_payments(ask.params(), sizes)) + resent


# ------------------------------------------------------------------ property


@given(
    price=st.integers(0, 5),
    unseal=st.sampled_from([0, 0, 1, 777]),
    interval=st.integers(0, 4000),
    increase=st.integers(0, 2000),
    leaves=st.integers(1, 10),
    leaf_size=st.integers(1, 900),
    slack=st.integers(-3000, 3000),
)
def test_paid_total_is_exact_and_never_above_the_budget(
        price: int, unseal: int, interval: int, increase: int, leaves: int, leaf_size: int,
        slack: int) -> None:
    """Over random asks, DAGs and budgets: a deal the budget covers pays
    exactly price x bytes + unseal price, payment by payment as Go's
    arithmetic asks; one it does not cover stops short, having paid no more
    than the budget; and the provider never runs ahead of the payments."""
    if price and not (interval or increase):
        interval = 1

    async def main() -> None:
        async with world() as w:
            ask = Ask(price_per_byte=price, unseal_price=unseal, payment_interval=interval,
                      payment_interval_increase=increase)
            p, c = w.provider(ask), w.client()
            root, size, order = make_dag(p.blockstore, leaves=leaves, leaf_size=leaf_size)
            sizes = sizes_of(p.blockstore, order)
            ask = ask_with(ask, w.provider_account)
            needed = price * size + unseal
            budget = max(0, needed + slack)
            await p.start()
            await c.start()
            if budget >= needed:
                result = await retrieve(c.role, p.peer, root, ask=ask, budget=budget)
                assert result.paid == needed == w.ledger.balance(w.provider_account)
                assert w.paid_amounts() == expected_payments(ask.params(), sizes)
                assert result.received == size
                w.wire.assert_never_ahead_of_payment(ask.params(), sizes)
            else:
                with pytest.raises(BudgetExceeded):
                    await retrieve(c.role, p.peer, root, ask=ask, budget=budget)
                assert w.ledger.balance(w.provider_account) == sum(w.paid_amounts()) <= budget
            w.assert_each_voucher_redeemed_once()

    anyio.run(main)


# ------------------------------------------------------------------ over libp2p


@pytest.mark.parametrize("anyio_backend", ["trio"])
@pytest.mark.anyio
async def test_paid_retrieval_over_libp2p(tmp_path: Path) -> None:
    """The same deal between two libp2p hosts on loopback, whose engine
    batches blocks into frames: the client pays exactly what Go's
    arithmetic asks, payment by payment."""
    from contextlib import AsyncExitStack

    from transport.libp2p import connect, load_or_create_identity, open_host, peer_addrs
    from transport.libp2p.transport import Libp2pTransport

    ledger = InProcessLedger()
    payee, payer = ledger.new_account(), ledger.new_account(10**12)
    ask = Ask(price_per_byte=3, unseal_price=1000, payment_interval=64 << 10,
              payment_interval_increase=32 << 10, payment_address=payee)
    async with AsyncExitStack() as stack:
        hosts, managers, stores = [], [], []
        for name in ("provider", "client"):
            host = await stack.enter_async_context(
                open_host(load_or_create_identity(tmp_path / name), ("/ip4/127.0.0.1/tcp/0",)))
            bs = MemoryBlockstore()
            hosts.append(host)
            stores.append(bs)
            managers.append(Manager(Libp2pTransport(host, bs), store=MemoryChannelStore(),
                                    config=FAST))
        provider_m, client_m = managers
        root, size, order = make_dag(stores[0], leaves=40, leaf_size=8000, fanout=8)
        register_provider(provider_m, stores[0], ask, ledger.wallet(payee))
        client = register_client(client_m, ledger.wallet(payer))
        events: list[DealEvent] = []
        client.subscribe(events.append)
        for m in managers:
            await stack.enter_async_context(m)
        await connect(hosts[1], peer_addrs(hosts[0])[0])
        result = await retrieve(client, provider_m.peer_id, root, ask=ask, budget=10**7)
        expected = expected_payments(ask.params(), sizes_of(stores[0], order))
        assert len(expected) >= 4
        assert [e.owed for e in events
                if e.status in (D.SEND_FUNDS, D.SEND_FUNDS_LAST_PAYMENT)] == expected
        assert result.paid == 3 * size + 1000 == ledger.balance(payee)
        for cid in order:
            cid.verify(stores[1].get(cid))


def test_payment_rounds_wait_on_no_timer() -> None:
    """Every payment round goes on as soon as its message arrives: under a
    mock clock that jumps only when every task sleeps, a paid retrieval with
    several rounds completes at time zero (any poll interval, coalescing
    sleep or timeout waited on in a round would have moved the clock)."""
    import trio
    from trio.testing import MockClock

    clock = MockClock(autojump_threshold=0)

    async def main() -> tuple[float, int]:
        async with world() as w:
            p, c = w.provider(PAID), w.client()
            root, size, order = make_dag(p.blockstore, leaves=12, leaf_size=700)
            await p.start()
            await c.start()
            ask = ask_with(PAID, w.provider_account)
            result = await retrieve(c.role, p.peer, root, ask=ask, budget=10**6)
            assert result.paid == 2 * size + 500
            rounds = len(w.paid_amounts())
            return trio.current_time(), rounds

    at, rounds = anyio.run(main, backend="trio", backend_options={"clock": clock})
    assert rounds >= 4  # unseal, 2+ intervals, the rest
    assert at == 0.0
