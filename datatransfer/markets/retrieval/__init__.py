"""The Filecoin retrieval market's deal types (go-retrieval-types v1.2.0,
wire-exact): what Lassie, boost and go-fil-markets send as vouchers and
voucher results over data transfer.

Register them with a node's Manager like any voucher type::

    manager.register_voucher_type(DealProposal, validator)
    manager.register_revalidator(DealPayment, revalidator)
    manager.register_voucher_result_type(DealResponse)
"""

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

__all__ = [
    "DEAL_PAYMENT_TYPE",
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
