"""The voucher registry: which voucher and result types exist, and who
validates and revalidates each.

Type identifiers are the wire names (``VTyp``) of vouchers and results, so a
node that receives an identifier it never registered must say which one it
was: :class:`UnknownVoucherType` carries it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from datatransfer.errors import DataTransferError
from registry.middleware import ValidationMiddleware
from registry.types import RequestValidator, Revalidator, Voucher, VoucherResult


class RegistryError(DataTransferError):
    """Base class of registry errors."""


class AlreadyRegistered(RegistryError):
    """A type identifier was registered twice."""

    def __init__(self, kind: str, type_id: str) -> None:
        self.kind = kind
        self.type_id = type_id
        super().__init__(f"{kind} type {type_id!r} is already registered")


class UnknownVoucherType(RegistryError):
    """A voucher or voucher-result type identifier nobody registered."""

    def __init__(self, kind: str, type_id: str) -> None:
        self.kind = kind
        self.type_id = type_id
        super().__init__(f"unknown {kind} type {type_id!r}")


class InvalidVoucher(RegistryError):
    """A node that does not decode as the registered type claims."""

    def __init__(self, kind: str, type_id: str, reason: object) -> None:
        self.kind = kind
        self.type_id = type_id
        super().__init__(f"invalid {kind} of type {type_id!r}: {reason}")


@dataclass(frozen=True, slots=True)
class VoucherEntry:
    """A registered voucher type and its handlers (either may be absent)."""

    cls: type[Voucher]
    validator: RequestValidator | None = None
    revalidator: Revalidator | None = None


def _type_id(cls: type, base: type) -> str:
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise TypeError(f"{cls!r} is not a subclass of {base.__name__}")
    type_id = getattr(cls, "type_id", None)
    if not isinstance(type_id, str) or not type_id:
        raise TypeError(f"{cls.__name__}.type_id must be a non-empty string")
    return type_id


class Registry:
    """Voucher types with their validators and revalidators, and voucher-result
    types. Not thread-safe: register everything before starting transfers."""

    def __init__(self) -> None:
        self._vouchers: dict[str, VoucherEntry] = {}
        self._results: dict[str, type[VoucherResult]] = {}
        self._middleware: tuple[ValidationMiddleware, ...] = ()

    # -- registration ---------------------------------------------------------

    def register_voucher_type(self, cls: type[Voucher], validator: RequestValidator) -> None:
        """Register a voucher type and the validator for requests carrying it."""
        type_id = _type_id(cls, Voucher)
        if not isinstance(validator, RequestValidator):
            raise TypeError(f"{validator!r} does not implement RequestValidator")
        entry = self._vouchers.get(type_id)
        if entry is not None and (entry.validator is not None or entry.cls is not cls):
            raise AlreadyRegistered("voucher", type_id)
        revalidator = entry.revalidator if entry else None
        self._vouchers[type_id] = VoucherEntry(cls, validator, revalidator)

    def register_revalidator(self, cls: type[Voucher], revalidator: Revalidator) -> None:
        """Register the revalidator for vouchers of this type (the type may be
        the one registered with a validator, or one used only for revalidation)."""
        type_id = _type_id(cls, Voucher)
        if not isinstance(revalidator, Revalidator):
            raise TypeError(f"{revalidator!r} does not implement Revalidator")
        entry = self._vouchers.get(type_id)
        if entry is not None and (entry.revalidator is not None or entry.cls is not cls):
            raise AlreadyRegistered("revalidator", type_id)
        validator = entry.validator if entry else None
        self._vouchers[type_id] = VoucherEntry(cls, validator, revalidator)

    def register_voucher_result_type(self, cls: type[VoucherResult]) -> None:
        """Register a voucher-result type so received results can be decoded."""
        type_id = _type_id(cls, VoucherResult)
        if type_id in self._results:
            raise AlreadyRegistered("voucher result", type_id)
        self._results[type_id] = cls

    def add_middleware(self, *middleware: ValidationMiddleware) -> None:
        """Run every validation (of every voucher type, registered before or
        after) through ``middleware`` too, after what was added before; see
        :mod:`registry.middleware`."""
        for mw in middleware:
            if not callable(mw):
                raise TypeError(f"{mw!r} is not a validator middleware (an async callable)")
        self._middleware += middleware

    @property
    def middleware(self) -> tuple[ValidationMiddleware, ...]:
        """The validator middleware, outermost first."""
        return self._middleware

    # -- lookups ----------------------------------------------------------------

    def voucher_entry(self, type_id: str) -> VoucherEntry:
        """The registration of a voucher type; :class:`UnknownVoucherType` if none."""
        try:
            return self._vouchers[type_id]
        except KeyError:
            raise UnknownVoucherType("voucher", type_id) from None

    def validator(self, type_id: str) -> RequestValidator:
        """The validator for a voucher type; unknown or validator-less types raise."""
        validator = self.voucher_entry(type_id).validator
        if validator is None:
            raise UnknownVoucherType("voucher (with a validator)", type_id)
        return validator

    def revalidators(self) -> list[Revalidator]:
        """Every registered revalidator, in registration order."""
        return [e.revalidator for e in self._vouchers.values() if e.revalidator is not None]

    def revalidator(self, type_id: str) -> Revalidator:
        """The revalidator registered for a voucher type."""
        revalidator = self.voucher_entry(type_id).revalidator
        if revalidator is None:
            raise UnknownVoucherType("voucher (with a revalidator)", type_id)
        return revalidator

    def has_voucher_type(self, type_id: str) -> bool:
        return type_id in self._vouchers

    def rejection_result(self, voucher: Voucher, reason: str) -> VoucherResult | None:
        """The result telling the requesting peer why its voucher was refused
        when the refusal (a middleware's) carries none: built by the voucher
        type's validator or revalidator if it has ``rejection_result(voucher,
        reason)`` (a retrieval provider answers a Rejected deal response with
        the reason as its message), else None (the peer sees a bare rejection)."""
        entry = self._vouchers.get(voucher.type_id)
        for handler in (entry.validator, entry.revalidator) if entry else ():
            build = getattr(handler, "rejection_result", None)
            if build is not None:
                return build(voucher, reason)  # type: ignore[no-any-return]
        return None

    # -- decoding -------------------------------------------------------------------

    def decode_voucher(self, type_id: str, node: Any) -> Voucher:
        """Turn a received voucher node into its registered class."""
        cls = self.voucher_entry(type_id).cls
        return _decode("voucher", type_id, cls, node)

    def decode_voucher_result(self, type_id: str, node: Any) -> VoucherResult:
        """Turn a received voucher-result node into its registered class."""
        try:
            cls = self._results[type_id]
        except KeyError:
            raise UnknownVoucherType("voucher result", type_id) from None
        return _decode("voucher result", type_id, cls, node)


def _decode(kind: str, type_id: str, cls: type, node: Any) -> Any:
    try:
        return cls.from_node(node)
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise InvalidVoucher(kind, type_id, exc) from exc
