"""How retrieval deals are paid: the :class:`Payments` interface a provider
and a client use, and :class:`InProcessLedger`, an in-memory stand-in for
Filecoin payment channels (tests, the demo).

On-chain payment channels (the paych actor, a Lotus node's voucher store,
settling and collecting) are out of scope: a deployment plugs its own
:class:`Payments` in. The interface follows the paych model all the same,
so that one could: a client locks funds in a channel to the provider,
allocates a lane per deal and signs vouchers whose amount is the lane's
*running total*; the provider checks each voucher and redeems it.

Redeeming is idempotent per (channel, lane, nonce): the same voucher
redeemed again, for the same deal, adds nothing and answers what it added
the first time. That lets a provider rebuild what a deal was paid from the
vouchers its channel record holds, after a restart, without counting one
twice; a voucher redeemed for one deal is refused for another, so a client
cannot pay two deals with one voucher.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from datatransfer.ipld import dagcbor
from datatransfer.markets.retrieval.errors import PaymentError
from datatransfer.markets.retrieval.filecoin import Address, Signature, SignedVoucher, SigType


@runtime_checkable
class Payments(Protocol):
    """One party's wallet and payment channels, as a deal needs them.

    A client calls :meth:`open_channel`, :meth:`allocate_lane` and
    :meth:`create_voucher`; a provider :meth:`check_voucher` and
    :meth:`redeem_voucher`. Async because a real implementation asks a
    Filecoin node. Every refusal raises :class:`PaymentError`.
    """

    @property
    def address(self) -> Address:
        """This party's wallet address (where a provider is paid)."""
        ...

    async def open_channel(self, payee: Address, funds: int) -> Address:
        """A payment channel from this wallet to ``payee`` holding ``funds``."""
        ...

    async def allocate_lane(self, channel: Address) -> int:
        """A lane of ``channel`` no other deal uses."""
        ...

    async def create_voucher(self, channel: Address, lane: int, total: int) -> SignedVoucher:
        """A signed voucher bringing ``lane``'s running total to ``total``."""
        ...

    async def check_voucher(self, channel: Address, voucher: SignedVoucher) -> int:
        """Check a voucher pays this wallet on ``channel`` (signature, funds,
        nonce); return its amount (the lane's running total)."""
        ...

    async def redeem_voucher(self, channel: Address, voucher: SignedVoucher, deal: str) -> int:
        """Redeem a checked voucher for ``deal``; return what it adds on its
        lane. Idempotent per (channel, lane, nonce) for the same ``deal``."""
        ...

    async def sync(self) -> None:
        """Make every redemption so far durable. A provider calls it before
        it completes a deal, so an implementation may leave the durable
        write of each redemption until then (it must not lose one when the
        process dies). Optional: a provider skips it where it is missing."""
        ...


@dataclass
class _Lane:
    #: the highest nonce the payer signed / the payee redeemed
    signed_nonce: int = 0
    redeemed_nonce: int = 0
    #: the lane's running total redeemed so far
    redeemed: int = 0


@dataclass
class _Channel:
    payer: Address
    payee: Address
    funds: int
    lanes: dict[int, _Lane] = field(default_factory=dict)
    next_lane: int = 0
    #: (lane, nonce) -> (deal, what that voucher added)
    redemptions: dict[tuple[int, int], tuple[str, int]] = field(default_factory=dict)
    collected: bool = False

    @property
    def paid_out(self) -> int:
        return sum(lane.redeemed for lane in self.lanes.values())


@dataclass(frozen=True, slots=True)
class Redemption:
    """One voucher redeemed (the ledger's history, in order)."""

    channel: Address
    lane: int
    nonce: int
    deal: str
    added: int


class InProcessLedger:
    """Accounts and payment channels in memory: the "chain" several wallets
    (:meth:`wallet`) share within one process. Signatures are keyed hashes
    with a secret per account, so a voucher cannot be made without the
    payer's wallet. Not thread-safe (one event loop)."""

    def __init__(self) -> None:
        self._balances: dict[Address, int] = {}
        self._secrets: dict[Address, bytes] = {}
        self._channels: dict[Address, _Channel] = {}
        self._next_id = 1000
        #: Every voucher redeemed (replays of one are not repeated here), in order.
        self.history: list[Redemption] = []

    def _new_address(self) -> Address:
        self._next_id += 1
        return Address.new_id(self._next_id)

    # -- accounts --------------------------------------------------------------------

    def new_account(self, balance: int = 0) -> Address:
        """A new account holding ``balance`` attoFIL."""
        address = self._new_address()
        self._balances[address] = balance
        self._secrets[address] = secrets.token_bytes(32)
        return address

    def balance(self, address: Address) -> int:
        """What ``address`` holds outside payment channels."""
        return self._balances[address]

    def wallet(self, address: Address) -> LedgerWallet:
        """The :class:`Payments` of ``address``."""
        if address not in self._balances:
            raise PaymentError(f"no account {address} in this ledger")
        return LedgerWallet(self, address)

    # -- channels ----------------------------------------------------------------------

    def channel_info(self, channel: Address) -> tuple[Address, Address, int, int]:
        """``(payer, payee, funds, paid out so far)`` of a payment channel."""
        ch = self._channel(channel)
        return ch.payer, ch.payee, ch.funds, ch.paid_out

    def collect(self, channel: Address) -> int:
        """Close a channel: what was not redeemed goes back to its payer
        (returned). Redeemed amounts are already the payee's."""
        ch = self._channel(channel)
        if ch.collected:
            return 0
        ch.collected = True
        refund = ch.funds - ch.paid_out
        self._balances[ch.payer] += refund
        return refund

    def _channel(self, channel: Address) -> _Channel:
        try:
            return self._channels[channel]
        except KeyError:
            raise PaymentError(f"no payment channel {channel}") from None

    def _sign(self, payer: Address, voucher: SignedVoucher) -> Signature:
        digest = hashlib.blake2b(_signed_bytes(voucher), key=self._secrets[payer],
                                 digest_size=32).digest()
        return Signature(SigType.SECP256K1, digest)

    def _open(self, payer: Address, payee: Address, funds: int) -> Address:
        if funds < 0:
            raise PaymentError(f"cannot lock a negative amount {funds}")
        if payee not in self._balances:
            raise PaymentError(f"no account {payee} to pay in this ledger")
        if self._balances[payer] < funds:
            raise PaymentError(f"{payer} holds {self._balances[payer]} attoFIL, "
                               f"cannot lock {funds} in a payment channel")
        self._balances[payer] -= funds
        address = self._new_address()
        self._channels[address] = _Channel(payer, payee, funds)
        return address

    def _create(self, payer: Address, channel: Address, lane: int, total: int) -> SignedVoucher:
        ch = self._channel(channel)
        if ch.payer != payer:
            raise PaymentError(f"{payer} does not pay from channel {channel}")
        if ch.collected:
            raise PaymentError(f"payment channel {channel} is closed")
        state = ch.lanes.setdefault(lane, _Lane())
        others = ch.paid_out - state.redeemed
        if others + total > ch.funds:
            raise PaymentError(f"payment channel {channel} holds {ch.funds} attoFIL, "
                               f"a total of {total} on lane {lane} is beyond it")
        state.signed_nonce += 1
        unsigned = SignedVoucher(channel_addr=channel, amount=total, lane=lane,
                                 nonce=state.signed_nonce)
        return _with_signature(unsigned, self._sign(payer, unsigned))

    def _check(self, payee: Address, channel: Address, voucher: SignedVoucher) -> _Channel:
        ch = self._channel(channel)
        if voucher.channel_addr != channel:
            raise PaymentError(f"voucher for channel {voucher.channel_addr}, "
                               f"paid as one of {channel}")
        if ch.payee != payee:
            raise PaymentError(f"payment channel {channel} pays {ch.payee}, not {payee}")
        if ch.collected:
            raise PaymentError(f"payment channel {channel} is closed")
        if voucher.merges or voucher.extra is not None or voucher.secret_hash:
            raise PaymentError("vouchers with merges, extra or a secret are not supported")
        if voucher.signature is None or voucher.signature != self._sign(ch.payer, voucher):
            raise PaymentError(f"voucher not signed by the channel's payer {ch.payer}")
        if (voucher.lane, voucher.nonce) in ch.redemptions:
            return ch  # redeemed before: idempotent
        lane = ch.lanes.get(voucher.lane, _Lane())
        if voucher.nonce <= lane.redeemed_nonce:
            raise PaymentError(f"voucher nonce {voucher.nonce} on lane {voucher.lane} is not "
                               f"above the last redeemed, {lane.redeemed_nonce}")
        if ch.paid_out - lane.redeemed + voucher.amount > ch.funds:
            raise PaymentError(f"voucher of {voucher.amount} is beyond the {ch.funds} attoFIL "
                               f"the channel holds")
        return ch

    def _redeem(self, payee: Address, channel: Address, voucher: SignedVoucher,
                deal: str) -> int:
        ch = self._check(payee, channel, voucher)
        key = (voucher.lane, voucher.nonce)
        done = ch.redemptions.get(key)
        if done is not None:
            if done[0] != deal:
                raise PaymentError(f"voucher (lane {voucher.lane}, nonce {voucher.nonce}) of "
                                   f"channel {channel} was redeemed for another deal")
            return done[1]
        lane = ch.lanes.setdefault(voucher.lane, _Lane())
        added = max(0, voucher.amount - lane.redeemed)
        lane.redeemed += added
        lane.redeemed_nonce = voucher.nonce
        ch.redemptions[key] = (deal, added)
        self._balances[payee] += added
        self.history.append(Redemption(channel, voucher.lane, voucher.nonce, deal, added))
        return added


def _signed_bytes(voucher: SignedVoucher) -> bytes:
    """What a signature covers: the voucher's fields but the signature."""
    return dagcbor.encode(_with_signature(voucher, None).to_node())


def _with_signature(voucher: SignedVoucher, signature: Signature | None) -> SignedVoucher:
    return SignedVoucher(
        channel_addr=voucher.channel_addr, amount=voucher.amount, lane=voucher.lane,
        nonce=voucher.nonce, time_lock_min=voucher.time_lock_min,
        time_lock_max=voucher.time_lock_max, secret_hash=voucher.secret_hash,
        extra=voucher.extra, min_settle_height=voucher.min_settle_height,
        merges=voucher.merges, signature=signature)


@dataclass(frozen=True, slots=True)
class LedgerWallet:
    """:class:`Payments` of one account of an :class:`InProcessLedger`."""

    ledger: InProcessLedger
    owner: Address

    @property
    def address(self) -> Address:
        return self.owner

    async def open_channel(self, payee: Address, funds: int) -> Address:
        return self.ledger._open(self.owner, payee, funds)

    async def allocate_lane(self, channel: Address) -> int:
        ch = self.ledger._channel(channel)
        if ch.payer != self.owner:
            raise PaymentError(f"{self.owner} does not pay from channel {channel}")
        lane = ch.next_lane
        ch.next_lane += 1
        return lane

    async def create_voucher(self, channel: Address, lane: int, total: int) -> SignedVoucher:
        return self.ledger._create(self.owner, channel, lane, total)

    async def check_voucher(self, channel: Address, voucher: SignedVoucher) -> int:
        self.ledger._check(self.owner, channel, voucher)
        return voucher.amount

    async def redeem_voucher(self, channel: Address, voucher: SignedVoucher, deal: str) -> int:
        return self.ledger._redeem(self.owner, channel, voucher, deal)

    async def sync(self) -> None:
        """Nothing to write: the ledger lives in memory."""
