"""The Filecoin retrieval market: its deal types (go-retrieval-types v1.2.0,
wire-exact: what Lassie, boost and go-fil-markets send as vouchers and
voucher results over data transfer), a provider and a client.

Serve deals and retrieve on a node's Manager::

    provider = register_provider(manager, blockstore, Ask(price_per_byte=1), payments)
    client = register_client(manager, payments)
    result = await client.retrieve(peer, root, ask=ask, budget=10**9)

Payments go through :class:`Payments`; :class:`InProcessLedger` is an
in-memory stand-in for payment channels (on-chain ones are out of scope).
The provider and the client (``provider``, ``client``) load the Manager and
are imported on first use, so the deal types alone load no event loop.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from datatransfer.markets.retrieval.errors import (
    BudgetExceeded,
    DealFailed,
    DealOvercharged,
    DealRejected,
    PaymentError,
    PriceTooHigh,
    RetrievalError,
)
from datatransfer.markets.retrieval.filecoin import (
    Address,
    Merge,
    ModVerifyParams,
    Protocol,
    RetrievalTypeError,
    Signature,
    SignedVoucher,
    SigType,
    decode_big_int,
    encode_big_int,
)
from datatransfer.markets.retrieval.payments import (
    InProcessLedger,
    LedgerWallet,
    Payments,
    Redemption,
)
from datatransfer.markets.retrieval.types import (
    DEAL_PAYMENT_TYPE,
    DEAL_PROPOSAL_TYPE,
    DEAL_RESPONSE_TYPE,
    DealPayment,
    DealProposal,
    DealResponse,
    DealStatus,
    Params,
)

if TYPE_CHECKING:  # pragma: no cover
    from datatransfer.markets.retrieval.client import (
        DealEvent,
        RetrievalClient,
        RetrievalResult,
        register_client,
    )
    from datatransfer.markets.retrieval.provider import Ask, RetrievalProvider, register_provider

_LAZY = {
    **dict.fromkeys(("Ask", "RetrievalProvider", "register_provider"),
                    "datatransfer.markets.retrieval.provider"),
    **dict.fromkeys(("DealEvent", "RetrievalClient", "RetrievalResult", "register_client"),
                    "datatransfer.markets.retrieval.client"),
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "DEAL_PAYMENT_TYPE",
    "Ask",
    "BudgetExceeded",
    "DealEvent",
    "DealFailed",
    "DealOvercharged",
    "DealRejected",
    "InProcessLedger",
    "LedgerWallet",
    "PaymentError",
    "Payments",
    "PriceTooHigh",
    "Redemption",
    "RetrievalClient",
    "RetrievalError",
    "RetrievalProvider",
    "RetrievalResult",
    "register_client",
    "register_provider",
    "DEAL_PROPOSAL_TYPE",
    "DEAL_RESPONSE_TYPE",
    "Address",
    "DealPayment",
    "DealProposal",
    "DealResponse",
    "DealStatus",
    "Merge",
    "ModVerifyParams",
    "Params",
    "Protocol",
    "RetrievalTypeError",
    "SigType",
    "Signature",
    "SignedVoucher",
    "decode_big_int",
    "encode_big_int",
]
