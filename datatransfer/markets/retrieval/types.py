"""The Filecoin retrieval deal types, byte for byte as go-retrieval-types
v1.2.0 (the package Lassie and boost use with go-data-transfer v2) writes
them: the vouchers ``RetrievalDealProposal/1`` and ``RetrievalDealPayment/1``
and the voucher result ``RetrievalDealResponse/1``.

The schema (go-retrieval-types ``types.ipldsch``)::

    type Params struct {
        Selector nullable Any        # the selector of the retrieval
        PieceCID nullable &Any
        PricePerByte Bytes           # abi.TokenAmount
        PaymentInterval Int
        PaymentIntervalIncrease Int
        UnsealPrice Bytes            # abi.TokenAmount
    }
    type DealProposal struct { PayloadCID &Any  ID Int  Params Params }
    type DealResponse struct { Status Int  ID Int  PaymentOwed Bytes  Message String }
    type DealPayment struct {
        ID Int
        PaymentChannel Bytes         # address.Address
        PaymentVoucher nullable SignedVoucher   # paych.SignedVoucher, a tuple
    }

All structs are maps; every field is required (a nullable one is present
and null). Token amounts are attoFIL as Filecoin big-int bytes
(:func:`~datatransfer.markets.retrieval.filecoin.encode_big_int`); IDs,
intervals and statuses are unsigned 64-bit. Decoding refuses what Go's
binding refuses (a missing, unknown or wrong-kind field, a bad address or
signature) and, on purpose, a little more: negative amounts, amounts in a
byte form Go's encoder never writes, and statuses Go does not define
(tests/data/retrieval-vectors.json has Go's verdict on each).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from math import isqrt
from typing import Any, ClassVar

from datatransfer.ipld.cid import CID
from datatransfer.markets.retrieval.filecoin import (
    UINT64_MAX,
    Address,
    RetrievalTypeError,
    SignedVoucher,
    check_int,
    check_token_amount,
    encode_big_int,
    kind_name,
    read_address,
    read_map,
    read_str_field,
    read_token_amount,
    read_uint64,
)
from registry.types import Voucher, VoucherResult

#: The type identifiers the three types are registered under, in go-data-transfer
#: v2 (``retrievaltypes.DealProposalType``...) as in go-fil-markets on v1.
DEAL_PROPOSAL_TYPE = "RetrievalDealProposal/1"
DEAL_PAYMENT_TYPE = "RetrievalDealPayment/1"
DEAL_RESPONSE_TYPE = "RetrievalDealResponse/1"


class DealStatus(enum.IntEnum):
    """A retrieval deal's status, numbered as go-retrieval-types'
    ``DealStatus`` (``iota`` order: never reorder). Providers send it in a
    :class:`DealResponse`; most values are client-side states that only
    travel when a peer reports its own."""

    NEW = 0
    UNSEALING = 1
    UNSEALED = 2
    WAIT_FOR_ACCEPTANCE = 3
    PAYMENT_CHANNEL_CREATING = 4
    PAYMENT_CHANNEL_ADDING_FUNDS = 5
    ACCEPTED = 6
    FUNDS_NEEDED_UNSEAL = 7
    FAILING = 8
    REJECTED = 9
    FUNDS_NEEDED = 10
    SEND_FUNDS = 11
    SEND_FUNDS_LAST_PAYMENT = 12
    ONGOING = 13
    FUNDS_NEEDED_LAST_PAYMENT = 14
    COMPLETED = 15
    DEAL_NOT_FOUND = 16
    ERRORED = 17
    BLOCKS_COMPLETE = 18
    FINALIZING = 19
    COMPLETING = 20
    CHECK_COMPLETE = 21
    CHECK_FUNDS = 22
    INSUFFICIENT_FUNDS = 23
    PAYMENT_CHANNEL_ALLOCATING_LANE = 24
    CANCELLING = 25
    CANCELLED = 26
    RETRY_LEGACY = 27
    WAIT_FOR_ACCEPTANCE_LEGACY = 28
    CLIENT_WAITING_FOR_LAST_BLOCKS = 29
    PAYMENT_CHANNEL_ADDING_INITIAL_FUNDS = 30
    ERRORING = 31
    REJECTING = 32
    DEAL_NOT_FOUND_CLEANUP = 33
    FINALIZING_BLOCKSTORE = 34

    @property
    def go_name(self) -> str:
        """The name Go's ``DealStatus.String`` gives (``DealStatusAccepted``;
        Go spells 29 ``DealStatusWaitingForLastBlocks``)."""
        if self is DealStatus.CLIENT_WAITING_FOR_LAST_BLOCKS:
            return "DealStatusWaitingForLastBlocks"
        return "DealStatus" + "".join(w.capitalize() for w in self.name.split("_"))


def _selector_ok(value: Any) -> bool:
    """A data-model value (what a decoded ``Any`` can be); checked shallowly,
    the encoder checks the rest."""
    return value is None or isinstance(value, (dict, list, str, bytes, int, float, CID))


@dataclass(frozen=True, slots=True)
class Params:
    """What a retrieval costs and which part of the DAG it moves.

    ``selector`` is the IPLD selector node (None: unspecified, the whole
    DAG in go-fil-markets); ``piece_cid`` the piece to unseal from (None:
    any). The payment arithmetic (:meth:`outstanding_balance`,
    :meth:`next_interval`) is Go's, computed without its per-interval loops
    (which never end for a zero interval and a zero increase).
    """

    selector: Any = None
    piece_cid: CID | None = None
    price_per_byte: int = 0
    payment_interval: int = 0
    payment_interval_increase: int = 0
    unseal_price: int = 0

    FIELDS: ClassVar[tuple[str, ...]] = (
        "Selector", "PieceCID", "PricePerByte", "PaymentInterval", "PaymentIntervalIncrease",
        "UnsealPrice")

    def __post_init__(self) -> None:
        if not _selector_ok(self.selector):
            raise RetrievalTypeError("Params.Selector",
                                     f"expected an IPLD node, got {type(self.selector).__name__}")
        if self.piece_cid is not None and not isinstance(self.piece_cid, CID):
            raise RetrievalTypeError("Params.PieceCID",
                                     f"expected a CID or None, got {type(self.piece_cid).__name__}")
        check_token_amount(self.price_per_byte, "Params.PricePerByte")
        check_token_amount(self.unseal_price, "Params.UnsealPrice")
        check_int(self.payment_interval, "Params.PaymentInterval", 0, UINT64_MAX)
        check_int(self.payment_interval_increase, "Params.PaymentIntervalIncrease", 0, UINT64_MAX)

    @property
    def selector_specified(self) -> bool:
        return self.selector is not None

    @property
    def is_free(self) -> bool:
        """Nothing to pay: no price per byte and no unseal price."""
        return self.price_per_byte == 0 and self.unseal_price == 0

    def to_node(self) -> dict[str, Any]:
        return {
            "Selector": self.selector,
            "PieceCID": self.piece_cid,
            "PricePerByte": encode_big_int(self.price_per_byte),
            "PaymentInterval": self.payment_interval,
            "PaymentIntervalIncrease": self.payment_interval_increase,
            "UnsealPrice": encode_big_int(self.unseal_price),
        }

    @classmethod
    def from_node(cls, node: Any, where: str = "Params") -> Params:
        m = read_map(node, where, cls.FIELDS)
        piece = m["PieceCID"]
        if piece is not None and not isinstance(piece, CID):
            raise RetrievalTypeError(f"{where}.PieceCID", f"expected a link or null, got {kind_name(piece)}")
        return cls(
            selector=m["Selector"],
            piece_cid=piece,
            price_per_byte=read_token_amount(m["PricePerByte"], f"{where}.PricePerByte"),
            payment_interval=read_uint64(m["PaymentInterval"], f"{where}.PaymentInterval"),
            payment_interval_increase=read_uint64(m["PaymentIntervalIncrease"],
                                                  f"{where}.PaymentIntervalIncrease"),
            unseal_price=read_token_amount(m["UnsealPrice"], f"{where}.UnsealPrice"),
        )

    # -- payment arithmetic (go-retrieval-types Params methods) -----------------------

    def _boundary(self, k: int) -> int:
        """Bytes sent when the k-th payment falls due: the intervals grow by
        the increase, so ``k*P + I*k*(k-1)/2``."""
        return k * self.payment_interval + self.payment_interval_increase * k * (k - 1) // 2

    def _last_boundary_index(self, sent: int) -> int:
        """The largest k with ``_boundary(k) <= sent``."""
        p, inc = self.payment_interval, self.payment_interval_increase
        if p == 0 and inc == 0:
            raise RetrievalTypeError("Params", "payment interval and its increase are both zero: "
                                               "payments would fall due on every byte")
        if inc == 0:
            k = sent // p
        else:  # the root of inc/2 k^2 + (p - inc/2) k = sent, then corrected
            b = 2 * p - inc
            k = max(0, (isqrt(b * b + 8 * inc * sent) - b) // (2 * inc))
        while self._boundary(k + 1) <= sent:
            k += 1
        while k > 0 and self._boundary(k) > sent:
            k -= 1
        return k

    def interval_lower_bound(self, sent: int) -> int:
        """The last payment boundary at or below ``sent`` bytes (Go's
        ``IntervalLowerBound``)."""
        return self._boundary(self._last_boundary_index(sent))

    def _next_boundary(self, current: int) -> int:
        return self._boundary(self._last_boundary_index(current) + 1)

    def next_interval(self, funds_received: int) -> int:
        """The bytes the provider may send before asking for more, given what
        the client has paid (Go's ``NextInterval``; 0 for a free retrieval)."""
        if self.price_per_byte == 0:
            return 0
        paid_bytes = max(0, (funds_received - self.unseal_price) // self.price_per_byte)
        return self._next_boundary(paid_bytes)

    def outstanding_balance(self, funds_received: int, sent: int, in_finalization: bool) -> int:
        """What the client owes after ``sent`` bytes, having paid
        ``funds_received`` (Go's ``OutstandingBalance``): the unseal price
        first, then every byte up to the last payment boundary passed (every
        byte sent, once the transfer is finalizing)."""
        if funds_received < self.unseal_price:
            return self.unseal_price - funds_received
        if self.price_per_byte == 0:
            return 0
        paid_for_data = funds_received - self.unseal_price
        to_pay = sent if in_finalization else self.interval_lower_bound(sent)
        return max(0, to_pay * self.price_per_byte - paid_for_data)


@dataclass(frozen=True, slots=True)
class DealProposal(Voucher):
    """``RetrievalDealProposal/1``: a client asks for ``payload_cid`` (the
    channel's root) under ``params``; ``deal_id`` is unique per client."""

    type_id: ClassVar[str] = DEAL_PROPOSAL_TYPE

    payload_cid: CID
    deal_id: int
    params: Params = Params()

    def __post_init__(self) -> None:
        if not isinstance(self.payload_cid, CID):
            raise RetrievalTypeError("DealProposal.PayloadCID",
                                     f"expected a CID, got {type(self.payload_cid).__name__}")
        check_int(self.deal_id, "DealProposal.ID", 0, UINT64_MAX)
        if not isinstance(self.params, Params):
            raise RetrievalTypeError("DealProposal.Params",
                                     f"expected Params, got {type(self.params).__name__}")

    def to_node(self) -> dict[str, Any]:
        return {"PayloadCID": self.payload_cid, "ID": self.deal_id, "Params": self.params.to_node()}

    @classmethod
    def from_node(cls, node: Any) -> DealProposal:
        m = read_map(node, "DealProposal", ("PayloadCID", "ID", "Params"))
        payload = m["PayloadCID"]
        if not isinstance(payload, CID):
            raise RetrievalTypeError("DealProposal.PayloadCID", f"expected a link, got {kind_name(payload)}")
        return cls(payload, read_uint64(m["ID"], "DealProposal.ID"),
                   Params.from_node(m["Params"], "DealProposal.Params"))


@dataclass(frozen=True, slots=True)
class DealResponse(VoucherResult):
    """``RetrievalDealResponse/1``: the provider's answer to a proposal or a
    payment: the deal's status, what the client owes now, and a message (the
    reason of a rejection)."""

    type_id: ClassVar[str] = DEAL_RESPONSE_TYPE

    status: DealStatus
    deal_id: int
    payment_owed: int = 0
    message: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", _status(self.status, "DealResponse.Status"))
        check_int(self.deal_id, "DealResponse.ID", 0, UINT64_MAX)
        check_token_amount(self.payment_owed, "DealResponse.PaymentOwed")
        if not isinstance(self.message, str):
            raise RetrievalTypeError("DealResponse.Message",
                                     f"expected a str, got {type(self.message).__name__}")

    def to_node(self) -> dict[str, Any]:
        return {"Status": int(self.status), "ID": self.deal_id,
                "PaymentOwed": encode_big_int(self.payment_owed), "Message": self.message}

    @classmethod
    def from_node(cls, node: Any) -> DealResponse:
        w = "DealResponse"
        m = read_map(node, w, ("Status", "ID", "PaymentOwed", "Message"))
        return cls(_status(read_uint64(m["Status"], f"{w}.Status"), f"{w}.Status"),
                   read_uint64(m["ID"], f"{w}.ID"),
                   read_token_amount(m["PaymentOwed"], f"{w}.PaymentOwed"),
                   read_str_field(m["Message"], f"{w}.Message"))


def _status(value: Any, where: str) -> DealStatus:
    check_int(value, where, 0, UINT64_MAX)
    try:
        return DealStatus(value)
    except ValueError:
        raise RetrievalTypeError(where, f"unknown deal status {value} (go-retrieval-types "
                                        f"defines 0-{max(DealStatus)})") from None


@dataclass(frozen=True, slots=True)
class DealPayment(Voucher):
    """``RetrievalDealPayment/1``: a client pays for deal ``deal_id`` with a
    voucher on ``payment_channel`` (None: no voucher, as a client sends when
    it has nothing to pay yet)."""

    type_id: ClassVar[str] = DEAL_PAYMENT_TYPE

    deal_id: int
    payment_channel: Address = Address()
    payment_voucher: SignedVoucher | None = None

    def __post_init__(self) -> None:
        check_int(self.deal_id, "DealPayment.ID", 0, UINT64_MAX)
        if not isinstance(self.payment_channel, Address):
            raise RetrievalTypeError("DealPayment.PaymentChannel",
                                     f"expected an Address, got {type(self.payment_channel).__name__}")
        if self.payment_voucher is not None and not isinstance(self.payment_voucher, SignedVoucher):
            raise RetrievalTypeError("DealPayment.PaymentVoucher",
                                     f"expected a SignedVoucher or None, got "
                                     f"{type(self.payment_voucher).__name__}")

    def to_node(self) -> dict[str, Any]:
        voucher = self.payment_voucher
        return {"ID": self.deal_id, "PaymentChannel": self.payment_channel.raw,
                "PaymentVoucher": None if voucher is None else voucher.to_node()}

    @classmethod
    def from_node(cls, node: Any) -> DealPayment:
        w = "DealPayment"
        m = read_map(node, w, ("ID", "PaymentChannel", "PaymentVoucher"))
        voucher = m["PaymentVoucher"]
        return cls(read_uint64(m["ID"], f"{w}.ID"),
                   read_address(m["PaymentChannel"], f"{w}.PaymentChannel"),
                   None if voucher is None else SignedVoucher.from_node(voucher, f"{w}.PaymentVoucher"))
