"""Voucher and voucher-result types, validators and revalidators."""

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
    "InvalidVoucher",
    "Registerable",
    "Registry",
    "RegistryError",
    "RequestValidator",
    "Revalidator",
    "UnknownVoucherType",
    "Voucher",
    "VoucherEntry",
    "VoucherResult",
]
