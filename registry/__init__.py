"""Voucher and voucher-result types, validators and revalidators."""

from registry.middleware import (
    DealRate,
    DealRateExceeded,
    LogValidation,
    PeerDenied,
    PeerFilter,
    Refused,
    ValidationCall,
    ValidationMiddleware,
)
from registry.registry import (
    AlreadyRegistered,
    InvalidVoucher,
    Registry,
    RegistryError,
    UnknownVoucherType,
    VoucherEntry,
)
from registry.types import (
    NOT_HANDLED,
    Registerable,
    RequestValidator,
    Revalidator,
    Voucher,
    VoucherResult,
)

__all__ = [
    "NOT_HANDLED",
    "AlreadyRegistered",
    "DealRate",
    "DealRateExceeded",
    "InvalidVoucher",
    "LogValidation",
    "PeerDenied",
    "PeerFilter",
    "Registerable",
    "Registry",
    "Refused",
    "RegistryError",
    "RequestValidator",
    "Revalidator",
    "UnknownVoucherType",
    "ValidationCall",
    "ValidationMiddleware",
    "Voucher",
    "VoucherEntry",
    "VoucherResult",
]
