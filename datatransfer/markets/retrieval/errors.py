"""The typed errors of retrieval deals: what a client's ``retrieve`` raises,
and what the payment interface raises for a voucher it refuses. Each message
is one line a user can act on."""

from __future__ import annotations

from datatransfer.errors import DataTransferError


class RetrievalError(DataTransferError):
    """Base class of the retrieval market's errors (the deal types' decoding
    errors are :class:`~datatransfer.markets.retrieval.RetrievalTypeError`)."""


class PaymentError(RetrievalError):
    """A payment-channel voucher, or a payment channel, that cannot be used:
    not signed by the channel's payer, for another payee, beyond the
    channel's funds, already redeemed for another deal..."""


class DealRejected(RetrievalError):
    """The provider refused the proposal; ``reason`` is its message."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"the provider rejected the deal: {reason or '(no reason given)'}")


class DealFailed(RetrievalError):
    """The deal's channel ended without the data (failed or cancelled)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"retrieval failed: {reason}")


class PriceTooHigh(RetrievalError):
    """The provider's ask is above what the caller allowed; nothing was proposed."""

    def __init__(self, what: str, asked: int, limit: int) -> None:
        self.what, self.asked, self.limit = what, asked, limit
        super().__init__(f"the provider asks {asked} attoFIL {what}, above the limit of {limit}")


class DealOvercharged(RetrievalError):
    """The provider asked for more than the deal's terms allow for the bytes
    received (price per byte x bytes received + unseal price); the client
    paid nothing of it and cancelled the deal."""

    def __init__(self, asked: int, paid: int, allowed: int, received: int) -> None:
        self.asked, self.paid, self.allowed, self.received = asked, paid, allowed, received
        super().__init__(
            f"the provider asked for {asked} attoFIL more after {paid} paid, but {received} bytes "
            f"received allow {allowed} in all; deal cancelled")


class BudgetExceeded(RetrievalError):
    """Paying what the provider rightly asks would exceed the caller's budget;
    the client paid nothing of it and cancelled the deal."""

    def __init__(self, needed: int, budget: int) -> None:
        self.needed, self.budget = needed, budget
        super().__init__(f"the deal needs {needed} attoFIL in all, over the budget of {budget}; "
                         "deal cancelled")
