"""The provider side of a retrieval deal: a validator of
``RetrievalDealProposal/1`` and a revalidator of ``RetrievalDealPayment/1``
running pay-as-you-go as go-fil-markets and boost providers do.

A proposal is accepted when it names the channel's root, its selector is the
request's (none given: explore-all only), the root is held, and its terms are
ones the provider's :class:`Ask` allows. A free deal is answered ``Accepted``;
a paid one starts paused for the unseal price when there is one
(``FundsNeededUnseal``), then the provider asks for a payment each time the
bytes it released reach the next payment boundary (``FundsNeeded``; the
intervals grow by their increase, :meth:`Params.next_interval`), holding the
next block until a voucher covers what is owed, and asks for the rest before
completing (``FundsNeededLastPayment``).

The proposal's piece CID is not checked: this provider holds blocks, not
sealed pieces, and unsealing is only a price here.

Nothing about a deal is kept beside the channel's record: what was paid is
rebuilt from the payment vouchers the record lists (redeeming is idempotent
per voucher, :mod:`~datatransfer.markets.retrieval.payments`), what was sent
is the record's ``sent`` and ``queued``. A provider restarted on its store
therefore neither charges a voucher twice nor forgets one. A restart is
served at once (only an unpaid unseal price is asked for then); the block
held for a payment is queued again by it (the ``Restart`` row) and decided
anew, once the client holds what went before.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

from datatransfer.errors import Pause, Rejected
from datatransfer.ipld import dagcbor
from datatransfer.ipld.blockstore import Blockstore
from datatransfer.ipld.cid import CID
from datatransfer.ipld.selector import ALL_SELECTOR_NODE, Selector, selector_to_node
from datatransfer.manager import Manager
from datatransfer.markets.retrieval.errors import PaymentError
from datatransfer.markets.retrieval.filecoin import (
    UINT64_MAX,
    Address,
    check_int,
    check_token_amount,
)
from datatransfer.markets.retrieval.payments import Payments
from datatransfer.markets.retrieval.types import (
    DealPayment,
    DealProposal,
    DealResponse,
    DealStatus,
    Params,
)
from datatransfer.types import ChannelID, ChannelState, PeerID
from registry import NOT_HANDLED, AlreadyRegistered, Voucher
from statemachine import FINALIZING_STATUSES

log = logging.getLogger("datatransfer.markets.retrieval")

#: go-fil-markets' defaults: a payment every MiB at first, each interval a MiB longer.
DEFAULT_PAYMENT_INTERVAL = 1 << 20
DEFAULT_PAYMENT_INTERVAL_INCREASE = 1 << 20


@dataclass(frozen=True, slots=True)
class Ask:
    """What a provider retrieves for: the least price per byte and unseal
    price (attoFIL) it takes, the longest payment interval and increase it
    grants, and the address it is paid at (go-fil-markets' ``Ask`` with the
    query's payment address). The default is free."""

    price_per_byte: int = 0
    unseal_price: int = 0
    payment_interval: int = DEFAULT_PAYMENT_INTERVAL
    payment_interval_increase: int = DEFAULT_PAYMENT_INTERVAL_INCREASE
    payment_address: Address = Address()

    def __post_init__(self) -> None:
        check_token_amount(self.price_per_byte, "Ask.price_per_byte")
        check_token_amount(self.unseal_price, "Ask.unseal_price")
        check_int(self.payment_interval, "Ask.payment_interval", 0, UINT64_MAX)
        check_int(self.payment_interval_increase, "Ask.payment_interval_increase", 0,
                  UINT64_MAX)
        if self.price_per_byte and not (self.payment_interval or self.payment_interval_increase):
            raise ValueError("a priced ask needs a payment interval or an increase above zero")
        if not isinstance(self.payment_address, Address):
            raise TypeError("Ask.payment_address must be an Address")

    @property
    def is_free(self) -> bool:
        return self.price_per_byte == 0 and self.unseal_price == 0

    def params(self, selector: Any = None, piece_cid: CID | None = None) -> Params:
        """The proposal terms that take this ask as it is."""
        return Params(selector=selector, piece_cid=piece_cid,
                      price_per_byte=self.price_per_byte,
                      payment_interval=self.payment_interval,
                      payment_interval_increase=self.payment_interval_increase,
                      unseal_price=self.unseal_price)


def selector_bytes(selector: Any) -> bytes:
    """A selector (node or parsed) as DAG-CBOR, to compare two for equality."""
    node = selector_to_node(selector) if isinstance(selector, Selector) else selector
    return dagcbor.encode(node)


_EXPLORE_ALL = selector_bytes(ALL_SELECTOR_NODE)


def deal_reference(channel_id: ChannelID) -> str:
    """What a voucher is redeemed for: one deal's channel (a voucher redeemed
    for it is refused for any other)."""
    return f"retrieval/{channel_id}"


class RetrievalProvider:
    """Validator of deal proposals and revalidator of deal payments for one
    node (see the module docs). ``payments`` None: free deals only.

    Register it with :func:`register_provider`. Channels that are not
    retrieval deals are not its business (``NOT_HANDLED``).
    """

    def __init__(self, manager: Manager, blockstore: Blockstore, ask: Ask,
                 payments: Payments | None = None) -> None:
        self.manager = manager
        self.blockstore = blockstore
        self.ask = ask
        self.payments = payments
        #: per paid channel: what each voucher (channel, lane, nonce) added
        self._redeemed: dict[ChannelID, dict[tuple[Address, int, int], int]] = {}
        #: how many channels' entries are kept before those of ended ones are dropped
        self._sweep_at = _SWEEP_AT

    # ------------------------------------------------------------------ the validator

    async def validate_push(self, is_restart: bool, channel_id: ChannelID, sender: PeerID,
                            voucher: Voucher, base_cid: CID, selector: Any) -> None:
        reason = "a retrieval deal is a pull: the provider sends"
        deal_id = voucher.deal_id if isinstance(voucher, DealProposal) else 0
        raise Rejected(reason, DealResponse(DealStatus.REJECTED, deal_id, message=reason))

    def rejection_result(self, voucher: Voucher, reason: str) -> DealResponse:
        """The answer to a proposal or payment the node's validator
        middleware refused (a denied peer, too many deals): Rejected, with
        the reason as the message a retrieval client shows."""
        deal_id = voucher.deal_id if isinstance(voucher, (DealProposal, DealPayment)) else 0
        return DealResponse(DealStatus.REJECTED, deal_id, message=reason)

    async def validate_pull(self, is_restart: bool, channel_id: ChannelID, receiver: PeerID,
                            voucher: Voucher, base_cid: CID, selector: Any) -> DealResponse:
        assert isinstance(voucher, DealProposal)  # (registered for this type only)
        reason = self.refusal(voucher, base_cid, selector)
        if reason is not None:
            log.info("retrieval deal %d from %s refused: %s", voucher.deal_id, receiver, reason)
            raise Rejected(reason, DealResponse(DealStatus.REJECTED, voucher.deal_id,
                                                message=reason))
        params = voucher.params
        if is_restart:
            return await self._restarted(channel_id, voucher)
        if params.unseal_price > 0:
            raise Pause(DealResponse(DealStatus.FUNDS_NEEDED_UNSEAL, voucher.deal_id,
                                     payment_owed=params.unseal_price))
        return DealResponse(DealStatus.ACCEPTED, voucher.deal_id)

    def refusal(self, proposal: DealProposal, base_cid: CID, selector: Any) -> str | None:
        """Why this provider refuses ``proposal`` for a request of
        ``base_cid`` and ``selector``, or None (the message the client shows)."""
        if proposal.payload_cid != base_cid:
            return (f"the proposal is for {proposal.payload_cid}, the request for {base_cid}")
        wanted = (selector_bytes(proposal.params.selector) if proposal.params.selector_specified
                  else _EXPLORE_ALL)
        try:
            if selector_bytes(selector) != wanted:
                return ("the request's selector is not the proposal's" if
                        proposal.params.selector_specified else
                        "the proposal names no selector, so only explore-all may be requested")
        except (TypeError, ValueError) as exc:
            return f"the request's selector cannot be read: {exc}"
        if not self.blockstore.has(base_cid):
            return f"{base_cid} is not held here"
        p, ask = proposal.params, self.ask
        if p.price_per_byte < ask.price_per_byte:
            return (f"price per byte {p.price_per_byte} attoFIL is below the ask's "
                    f"{ask.price_per_byte}")
        if p.unseal_price < ask.unseal_price:
            return f"unseal price {p.unseal_price} attoFIL is below the ask's {ask.unseal_price}"
        if p.payment_interval > ask.payment_interval:
            return (f"payment interval {p.payment_interval} bytes is above the ask's "
                    f"{ask.payment_interval}")
        if p.payment_interval_increase > ask.payment_interval_increase:
            return (f"payment interval increase {p.payment_interval_increase} bytes is above "
                    f"the ask's {ask.payment_interval_increase}")
        if p.price_per_byte and not (p.payment_interval or p.payment_interval_increase):
            return "a priced deal needs a payment interval or an increase above zero"
        if not p.is_free and self.payments is None:
            return "this provider serves free retrievals only"
        return None

    async def _restarted(self, channel_id: ChannelID, proposal: DealProposal) -> DealResponse:
        """A restart of a deal this node serves (either side restarted).
        Only an unpaid unseal price is asked for here: what the bytes owe is
        asked as the restarted request goes. It sends again the blocks sent
        before that the client lacks (lost in flight, say), which the client
        then holds; the first block never sent (one held for a payment) is
        queued again and decided anew (:meth:`on_pull_data_sent`). Asking now,
        for bytes the client may not hold, could not be checked by it."""
        p, deal_id = proposal.params, proposal.deal_id
        if not p.is_free:
            funds = await self._funds(self.manager.channel_state(channel_id))
            if funds < p.unseal_price:
                raise Pause(DealResponse(DealStatus.FUNDS_NEEDED_UNSEAL, deal_id,
                                         payment_owed=p.unseal_price - funds))
        return DealResponse(DealStatus.ONGOING, deal_id)

    # ------------------------------------------------------------------ the revalidator

    def _proposal(self, channel_id: ChannelID) -> tuple[ChannelState, DealProposal] | None:
        """The channel's state and deal if it is a retrieval deal this node serves."""
        try:
            state = self.manager.channel_state(channel_id)
        except KeyError:
            return None
        if state.is_initiator or not isinstance(state.voucher, DealProposal):
            return None
        return state, state.voucher

    async def on_pull_data_sent(self, channel_id: ChannelID,
                                additional_bytes: int) -> DealResponse | None:
        """A block is about to go (its bytes already counted in ``queued``):
        hold it if the bytes released before it reached the next payment
        boundary of what was paid."""
        found = self._proposal(channel_id)
        if found is None:
            return NOT_HANDLED
        state, proposal = found
        p = proposal.params
        if p.is_free:
            return None
        funds = await self._funds(state)
        if funds < p.unseal_price:
            raise Pause(DealResponse(DealStatus.FUNDS_NEEDED_UNSEAL, proposal.deal_id,
                                     payment_owed=p.unseal_price - funds))
        if p.price_per_byte == 0:
            return None
        released = state.queued - additional_bytes
        if released < p.next_interval(funds):
            return None
        raise Pause(DealResponse(DealStatus.FUNDS_NEEDED, proposal.deal_id,
                                 payment_owed=p.outstanding_balance(funds, released, False)))

    async def on_push_data_received(self, channel_id: ChannelID, additional_bytes: int) -> Any:
        return NOT_HANDLED

    async def revalidate(self, channel_id: ChannelID, voucher: Voucher) -> DealResponse:
        """A payment arrived (already listed in the channel's vouchers):
        redeem it, then resume if nothing is owed for the bytes sent."""
        found = self._proposal(channel_id)
        if found is None:
            raise PaymentError(f"a deal payment on channel {channel_id}, which is not a "
                               "retrieval deal this node serves")
        state, proposal = found
        assert isinstance(voucher, DealPayment)
        if voucher.deal_id != proposal.deal_id:
            raise PaymentError(f"a payment for deal {voucher.deal_id} on the channel of deal "
                               f"{proposal.deal_id}")
        p, deal_id = proposal.params, proposal.deal_id
        funds = await self._funds(state)
        if funds < p.unseal_price:
            raise Pause(DealResponse(DealStatus.FUNDS_NEEDED_UNSEAL, deal_id,
                                     payment_owed=p.unseal_price - funds))
        if state.status in FINALIZING_STATUSES:
            owed = p.outstanding_balance(funds, state.sent, True)
            if owed:
                raise Pause(DealResponse(DealStatus.FUNDS_NEEDED_LAST_PAYMENT, deal_id,
                                         payment_owed=owed))
            return await self._completed(channel_id, deal_id)
        owed = p.outstanding_balance(funds, state.sent, False)
        if owed:
            raise Pause(DealResponse(DealStatus.FUNDS_NEEDED, deal_id, payment_owed=owed))
        return DealResponse(DealStatus.ONGOING, deal_id)

    async def on_complete(self, channel_id: ChannelID) -> DealResponse:
        """Every block went: ask for the last payment, or complete the deal
        (the ``Completed`` response rides the Complete message)."""
        found = self._proposal(channel_id)
        if found is None:
            return NOT_HANDLED
        state, proposal = found
        p = proposal.params
        if not p.is_free:
            owed = p.outstanding_balance(await self._funds(state), state.sent, True)
            if owed:
                raise Pause(DealResponse(DealStatus.FUNDS_NEEDED_LAST_PAYMENT,
                                         proposal.deal_id, payment_owed=owed))
            return await self._completed(channel_id, proposal.deal_id)
        self._forget(channel_id)
        return DealResponse(DealStatus.COMPLETED, proposal.deal_id)

    async def _completed(self, channel_id: ChannelID, deal_id: int) -> DealResponse:
        """The ``Completed`` of a paid deal, once its redemptions are durable
        (:meth:`Payments.sync`): the payments may write them lazily while
        the deal runs, never past the point where the client is told it is
        done (see :meth:`~datatransfer.markets.retrieval.wallet.HomeWallet.redeem_voucher`)."""
        sync = getattr(self.payments, "sync", None)
        if sync is not None:
            await sync()
        self._forget(channel_id)
        return DealResponse(DealStatus.COMPLETED, deal_id)

    # ------------------------------------------------------------------ funds

    async def _funds(self, state: ChannelState) -> int:
        """What the deal was paid: the sum of what each distinct payment
        voucher in the channel's record added on its lane (each redeemed once
        here, idempotently: a voucher recorded before a crash and never
        redeemed is redeemed now)."""
        redeemed = self._redeemed.setdefault(state.channel_id, {})
        for payment in state.vouchers:
            if not isinstance(payment, DealPayment) or payment.payment_voucher is None:
                continue
            v = payment.payment_voucher
            key = (payment.payment_channel, v.lane, v.nonce)
            if key in redeemed:
                continue
            if self.payments is None:
                raise PaymentError("this provider takes no payments")
            redeemed[key] = await self.payments.redeem_voucher(
                payment.payment_channel, v, deal_reference(state.channel_id))
        if len(self._redeemed) > self._sweep_at:
            self._sweep()
        return sum(redeemed.values())

    def _forget(self, channel_id: ChannelID) -> None:
        self._redeemed.pop(channel_id, None)

    def _sweep(self) -> None:
        """Drop what is kept for channels that ended without completing
        (failed, cancelled); sweep again when twice as many are kept."""
        live = self.manager.in_progress_channels()
        for chid in [c for c in self._redeemed if c not in live]:
            del self._redeemed[chid]
        self._sweep_at = max(_SWEEP_AT, 2 * len(self._redeemed))


#: Entries of channels kept before those of ended ones are swept.
_SWEEP_AT = 4096


def register_provider(manager: Manager, blockstore: Blockstore, ask: Ask | None = None,
                      payments: Payments | None = None) -> RetrievalProvider:
    """Serve retrieval deals on ``manager``: the validator for proposals, the
    revalidator for payments and the response type. ``ask`` defaults to
    free; its payment address defaults to ``payments``' own."""
    ask = ask or Ask()
    if payments is not None and ask.payment_address.is_undef:
        ask = replace(ask, payment_address=payments.address)
    provider = RetrievalProvider(manager, blockstore, ask, payments)
    manager.register_voucher_type(DealProposal, provider)
    manager.register_revalidator(DealPayment, provider)
    register_response_type(manager)
    return provider


def register_response_type(manager: Manager) -> None:
    """Decode ``RetrievalDealResponse/1`` results on ``manager`` (once: a
    node may be provider and client)."""
    try:
        manager.register_voucher_result_type(DealResponse)
    except AlreadyRegistered:
        pass
