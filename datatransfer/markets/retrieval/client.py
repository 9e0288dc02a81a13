"""The client side of a retrieval deal: propose from a provider's ask, pay
when asked up to the caller's budget, never more than the deal's terms allow
for the bytes received, and tell subscribers every deal status.

What the client has paid and received is read from its channel's record
(the payment vouchers it sent, the bytes received), so a client restarted on
its store resumes a deal (:meth:`RetrievalClient.resume`) without paying
for anything twice: each payment request it answered is matched by a
payment it sent, and a request it cannot see itself owing is answered with
its last voucher again (the provider may have lost it) before it is called
an overcharge.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from datatransfer.errors import DataTransferError
from datatransfer.ipld.cid import CID
from datatransfer.ipld.selector import ALL_SELECTOR_NODE, Selector, selector_to_node
from datatransfer.manager import Manager, require_channel_id, require_cid, require_peer_id
from datatransfer.markets.retrieval.errors import (
    BudgetExceeded,
    DealFailed,
    DealOvercharged,
    DealRejected,
    PaymentError,
    PriceTooHigh,
    RetrievalError,
)
from datatransfer.markets.retrieval.filecoin import Address
from datatransfer.markets.retrieval.payments import Payments
from datatransfer.markets.retrieval.provider import Ask, register_response_type
from datatransfer.markets.retrieval.types import (
    DealPayment,
    DealProposal,
    DealResponse,
    DealStatus,
    Params,
)
from datatransfer.types import ChannelID, ChannelState, PeerID
from registry import Registerable
from statemachine import FINAL_STATUSES, IllegalTransition, Status, is_ending

log = logging.getLogger("datatransfer.markets.retrieval")

#: What the provider sends to ask for money.
_ASKS = frozenset({DealStatus.FUNDS_NEEDED_UNSEAL, DealStatus.FUNDS_NEEDED,
                   DealStatus.FUNDS_NEEDED_LAST_PAYMENT})


@dataclass(frozen=True, slots=True)
class DealEvent:
    """A retrieval deal reached ``status`` (what :meth:`RetrievalClient.subscribe`
    delivers): the provider's answers as they arrive, the client's own steps
    (``New``, ``WaitForAcceptance``, ``SendFunds``, ``BlocksComplete``) and
    the end (``Completed``, ``Rejected``, ``Errored``, ``Cancelled``)."""

    deal_id: int
    channel_id: ChannelID | None
    status: DealStatus
    message: str = ""
    #: bytes received and attoFIL paid so far; what the provider asked last
    received: int = 0
    paid: int = 0
    owed: int = 0


@dataclass(frozen=True, slots=True)
class RetrievalResult:
    """A completed retrieval: the data is in the client's blockstore."""

    deal_id: int
    channel_id: ChannelID
    received: int
    paid: int
    payment_channel: Address | None


DealSubscriber = Callable[[DealEvent], object]


@dataclass
class _Deal:
    deal_id: int
    channel_id: ChannelID
    params: Params
    budget: int
    payee: Address
    #: results of the channel already acted on
    position: int = 0
    channel_status: Status | None = None
    payment_channel: Address | None = None
    lane: int = 0
    #: the running total of the last voucher sent, and that payment
    paid: int = 0
    latest: DealPayment | None = None
    #: nonce of the voucher sent again (once per voucher)
    resent: int | None = None
    rejected: str | None = None
    blocks_complete: bool = False


def _decoded(cls: type[Registerable], value: Any) -> Any:
    """A voucher or result as ``cls`` whether the Manager decoded it (its
    type registered there) or left it as ``(type, node)``; else None."""
    if isinstance(value, cls):
        return value
    if isinstance(value, tuple) and len(value) == 2 and value[0] == cls.type_id:
        try:
            return cls.from_node(value[1])
        except ValueError:
            return None
    return None


def _all_blocks_received(status: Status) -> bool:
    return status is Status.TransferFinished or status is Status.ResponderFinalizingTransferFinished


class RetrievalClient:
    """Retrieves from providers through ``manager``, paying with ``payments``
    (None: free retrievals only). Use :func:`register_client`."""

    def __init__(self, manager: Manager, payments: Payments | None = None) -> None:
        self.manager = manager
        self.payments = payments
        self._subscribers: list[DealSubscriber] = []

    def subscribe(self, subscriber: DealSubscriber) -> Callable[[], None]:
        """Call ``subscriber(event)`` at every status of every deal, in the
        deal's task (keep it short); returns the unsubscribe call."""
        self._subscribers.append(subscriber)

        def unsubscribe() -> None:
            if subscriber in self._subscribers:
                self._subscribers.remove(subscriber)

        return unsubscribe

    # ------------------------------------------------------------------ deals

    def deal_proposal(self, channel_id: ChannelID) -> DealProposal | None:
        """The retrieval deal this node proposed on ``channel_id`` (the
        channel's voucher), or None when the channel is not one: a channel
        of another kind (a plain pull of the same root) or one it did not
        open. What :meth:`resume` needs to pick the deal up again; raises
        as :meth:`~datatransfer.manager.Manager.channel_state` does for an
        unknown channel."""
        require_channel_id(channel_id)
        state = self.manager.channel_state(channel_id)
        proposal = _decoded(DealProposal, state.voucher)
        return proposal if state.is_initiator else None

    async def retrieve(self, peer: PeerID, root: CID, selector: Any = None,
                       ask: Ask | None = None, budget: int = 0, *,
                       max_price_per_byte: int | None = None,
                       max_unseal_price: int | None = None) -> RetrievalResult:
        """Retrieve what ``selector`` (None: the whole DAG) reaches from
        ``root`` at ``peer``, on the terms of the provider's ``ask`` (None:
        free), paying at most ``budget`` attoFIL in all.

        Refuses before proposing an ask above ``max_price_per_byte`` or
        ``max_unseal_price`` (:class:`PriceTooHigh`) or an unseal price above
        the budget (:class:`BudgetExceeded`). Raises :class:`DealRejected`
        with the provider's message, :class:`DealOvercharged` or
        :class:`BudgetExceeded` (having cancelled the deal) or
        :class:`DealFailed`. Cancelling the call leaves the channel as it is
        (:meth:`resume` picks it up again)."""
        require_peer_id(peer)
        require_cid(root, "root")
        ask = ask or Ask()
        if max_price_per_byte is not None and ask.price_per_byte > max_price_per_byte:
            raise PriceTooHigh("per byte", ask.price_per_byte, max_price_per_byte)
        if max_unseal_price is not None and ask.unseal_price > max_unseal_price:
            raise PriceTooHigh("to unseal", ask.unseal_price, max_unseal_price)
        if not ask.is_free:
            if self.payments is None:
                raise PaymentError("the ask is priced and this client has no Payments to pay with")
            if ask.payment_address.is_undef:
                raise PaymentError("the ask is priced but names no payment address")
        if ask.unseal_price > budget:
            raise BudgetExceeded(ask.unseal_price, budget)
        node = selector_to_node(selector) if isinstance(selector, Selector) else selector
        params = ask.params(selector=node)
        deal_id = secrets.randbits(63)
        self._emit(DealEvent(deal_id, None, DealStatus.NEW))
        chid = await self.manager.open_pull_channel(
            peer, DealProposal(root, deal_id, params), root,
            ALL_SELECTOR_NODE if node is None else node)
        deal = _Deal(deal_id, chid, params, budget, ask.payment_address)
        self._report(deal, DealStatus.WAIT_FOR_ACCEPTANCE)
        return await self._run(deal)

    async def resume(self, channel_id: ChannelID, *, ask: Ask, budget: int) -> RetrievalResult:
        """Go on with a deal this node started before it restarted (the
        Manager restarts its channel by itself): the deal's terms are read
        from the channel, what was paid from the vouchers it sent, so no
        payment request already answered is paid again. ``ask`` says where
        to pay (its payment address); ``budget`` bounds the total as before."""
        proposal = self.deal_proposal(channel_id)
        if proposal is None:
            raise RetrievalError(f"channel {channel_id} is not a retrieval this node started")
        state = self.manager.channel_state(channel_id)
        deal = _Deal(proposal.deal_id, channel_id, proposal.params, budget, ask.payment_address)
        payments = [p for p in (_decoded(DealPayment, v) for v in state.vouchers) if p is not None]
        for payment in payments:
            v = payment.payment_voucher
            if v is not None and v.amount >= deal.paid:
                deal.paid, deal.latest = v.amount, payment
                deal.payment_channel, deal.lane = payment.payment_channel, v.lane
        # every request for money answered was answered by one payment sent:
        # act on the requests after the last one answered
        answered = 0
        for index, result in enumerate(state.voucher_results):
            response = _decoded(DealResponse, result)
            if response is not None and response.status in _ASKS:
                if answered == len(payments):
                    break
                answered += 1
                deal.position = index + 1
        return await self._run(deal)

    # ------------------------------------------------------------------ running a deal

    async def _run(self, deal: _Deal) -> RetrievalResult:
        chid = deal.channel_id
        try:
            while True:
                state = await self.manager.wait(
                    chid, until=lambda s: len(s.voucher_results) > deal.position
                    or s.status is not deal.channel_status)
                deal.channel_status = state.status
                while deal.position < len(state.voucher_results):
                    response = _decoded(DealResponse, state.voucher_results[deal.position])
                    deal.position += 1
                    if response is not None and response.deal_id == deal.deal_id:
                        await self._on_response(deal, response, state)
                        state = self.manager.channel_state(chid)
                if _all_blocks_received(state.status) and not deal.blocks_complete:
                    deal.blocks_complete = True
                    self._report(deal, DealStatus.BLOCKS_COMPLETE, state=state)
                if state.status in FINAL_STATUSES:
                    return self._finish(deal, state)
        except (DealOvercharged, BudgetExceeded, PaymentError) as exc:
            self._report(deal, DealStatus.ERRORED, str(exc))
            try:
                await self.manager.close_channel(chid)
            except (DataTransferError, IllegalTransition):
                pass  # (it ended meanwhile)
            raise

    async def _on_response(self, deal: _Deal, response: DealResponse,
                           state: ChannelState) -> None:
        if response.status is DealStatus.COMPLETED:
            return  # reported when the channel completes, after BlocksComplete
        self._report(deal, response.status, response.message, owed=response.payment_owed,
                     state=state)
        if response.status is DealStatus.REJECTED:
            deal.rejected = response.message
        elif response.status in _ASKS and not is_ending(state.status):
            await self._pay(deal, response, state)

    async def _pay(self, deal: _Deal, response: DealResponse, state: ChannelState) -> None:
        """Answer one request for money with exactly one payment sent."""
        p = deal.params
        owed = response.payment_owed
        if owed == 0:  # nothing to pay: the provider asks again after a restart
            await self._send(deal, deal.latest or DealPayment(deal.deal_id))
            return
        total = deal.paid + owed
        allowed = p.unseal_price + p.price_per_byte * state.received
        if total > allowed:
            latest = deal.latest
            if latest is not None and latest.payment_voucher is not None \
                    and deal.resent != latest.payment_voucher.nonce:
                # the provider may have lost it (it restarted): send it again
                deal.resent = latest.payment_voucher.nonce
                await self._send(deal, latest)
                return
            raise DealOvercharged(owed, deal.paid, allowed, state.received)
        if total > deal.budget:
            raise BudgetExceeded(total, deal.budget)
        assert self.payments is not None  # (a priced deal was refused without)
        if deal.payment_channel is None:
            deal.payment_channel = await self.payments.open_channel(deal.payee, deal.budget)
            deal.lane = await self.payments.allocate_lane(deal.payment_channel)
        voucher = await self.payments.create_voucher(deal.payment_channel, deal.lane, total)
        payment = DealPayment(deal.deal_id, deal.payment_channel, voucher)
        last = response.status is DealStatus.FUNDS_NEEDED_LAST_PAYMENT
        deal.paid, deal.latest = total, payment
        self._report(deal, DealStatus.SEND_FUNDS_LAST_PAYMENT if last else DealStatus.SEND_FUNDS,
                     owed=owed, state=state)
        await self._send(deal, payment)

    async def _send(self, deal: _Deal, payment: DealPayment) -> None:
        try:
            await self.manager.send_voucher(deal.channel_id, payment)
        except (IllegalTransition, DataTransferError) as exc:
            log.info("deal %d: payment not sent, the channel ended: %s", deal.deal_id, exc)

    def _finish(self, deal: _Deal, state: ChannelState) -> RetrievalResult:
        if state.status is Status.Completed:
            if not deal.blocks_complete:
                deal.blocks_complete = True
                self._report(deal, DealStatus.BLOCKS_COMPLETE, state=state)
            self._report(deal, DealStatus.COMPLETED, state=state)
            return RetrievalResult(deal.deal_id, deal.channel_id, state.received, deal.paid,
                                   deal.payment_channel)
        if deal.rejected is not None:
            raise DealRejected(deal.rejected)
        status = DealStatus.CANCELLED if state.status is Status.Cancelled else DealStatus.ERRORED
        self._report(deal, status, state.message, state=state)
        raise DealFailed(state.message or state.status.name)

    # ------------------------------------------------------------------ subscribers

    def _report(self, deal: _Deal, status: DealStatus, message: str = "", *, owed: int = 0,
                state: ChannelState | None = None) -> None:
        if state is None:
            state = self.manager.channel_state(deal.channel_id)
        self._emit(DealEvent(deal.deal_id, deal.channel_id, status, message, state.received,
                             deal.paid, owed))

    def _emit(self, event: DealEvent) -> None:
        for subscriber in list(self._subscribers):
            try:
                subscriber(event)
            except Exception:  # noqa: BLE001 - a subscriber's bug is not the deal's
                log.exception("retrieval deal subscriber %r failed", subscriber)


def register_client(manager: Manager, payments: Payments | None = None) -> RetrievalClient:
    """A retrieval client on ``manager`` (decodes the providers' responses),
    paying with ``payments`` (None: free retrievals only)."""
    register_response_type(manager)
    return RetrievalClient(manager, payments)
