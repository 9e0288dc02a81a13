"""The Filecoin values the retrieval deal types carry, as go-state-types and
go-address put them in IPLD: token amounts (big integers as bytes),
addresses, signatures, and the payment-channel voucher a payment holds.

Each ``decode_*`` / ``from_node`` is strict, as the deal types are: a node of
the wrong kind or shape raises :class:`RetrievalTypeError` naming the field.
Where go-state-types accepts several byte forms of one value (``00`` and
empty for zero, leading zero bytes) only the one its encoder writes is
accepted here, so a decoded value re-encodes to the bytes it came from.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass, field
from typing import Any, ClassVar

from datatransfer.errors import DataTransferError
from datatransfer.ipld.errors import VarintError
from datatransfer.ipld.multibase import b32encode
from datatransfer.ipld.varint import decode_uvarint, encode_uvarint

UINT64_MAX = (1 << 64) - 1
INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1


class RetrievalTypeError(DataTransferError, ValueError):
    """A node that is not a valid retrieval deal value (or a value that cannot
    be one); ``where`` names the field (``DealProposal.Params.PricePerByte``).

    A ``ValueError``, so the voucher registry reports it as ``InvalidVoucher``.
    """

    def __init__(self, where: str, reason: str) -> None:
        self.where = where
        self.reason = reason
        super().__init__(f"{where}: {reason}")


# -- the field readers every type uses --------------------------------------------------


def kind_name(node: Any) -> str:
    """The IPLD kind of a decoded node, for error messages."""
    if node is None:
        return "null"
    if isinstance(node, bool):
        return "bool"
    names = {int: "int", float: "float", str: "string", bytes: "bytes", list: "list", dict: "map"}
    for cls, name in names.items():
        if isinstance(node, cls):
            return name
    return "link" if type(node).__name__ == "CID" else type(node).__name__


def read_map(node: Any, where: str, fields: tuple[str, ...]) -> dict[str, Any]:
    """A map node with exactly ``fields`` (every one required, as in the
    schemas: nullable fields are present and null)."""
    if not isinstance(node, dict):
        raise RetrievalTypeError(where, f"expected a map, got {kind_name(node)}")
    missing = [f for f in fields if f not in node]
    if missing:
        raise RetrievalTypeError(where, f"missing field {', '.join(missing)}")
    extra = sorted(str(k) for k in node if k not in fields)
    if extra:
        raise RetrievalTypeError(where, f"unknown field {', '.join(extra)}")
    return node


def read_tuple(node: Any, where: str, fields: tuple[str, ...]) -> list[Any]:
    """A list node of exactly ``len(fields)`` items (a tuple representation)."""
    if not isinstance(node, list):
        raise RetrievalTypeError(where, f"expected a list of {len(fields)} ({', '.join(fields)}), "
                                        f"got {kind_name(node)}")
    if len(node) != len(fields):
        raise RetrievalTypeError(where, f"expected {len(fields)} items "
                                        f"({', '.join(fields)}), got {len(node)}")
    return node


def read_int(node: Any, where: str, lo: int, hi: int) -> int:
    """An int node in ``[lo, hi]`` (bools are not ints here)."""
    if type(node) is not int:
        raise RetrievalTypeError(where, f"expected an int, got {kind_name(node)}")
    if not lo <= node <= hi:
        raise RetrievalTypeError(where, f"{node} is out of range [{lo}, {hi}]")
    return node


def read_uint64(node: Any, where: str) -> int:
    return read_int(node, where, 0, UINT64_MAX)


def read_bytes(node: Any, where: str) -> bytes:
    if type(node) is not bytes:
        raise RetrievalTypeError(where, f"expected bytes, got {kind_name(node)}")
    return node


def read_str_field(node: Any, where: str) -> str:
    if type(node) is not str:
        raise RetrievalTypeError(where, f"expected a string, got {kind_name(node)}")
    return node


def check_int(value: Any, where: str, lo: int, hi: int) -> int:
    """``read_int`` for a constructor argument: the same rule, said in Python terms."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise RetrievalTypeError(where, f"expected an int, got {type(value).__name__}")
    if not lo <= value <= hi:
        raise RetrievalTypeError(where, f"{value} is out of range [{lo}, {hi}]")
    return int(value)


# -- token amounts ------------------------------------------------------------------------


def encode_big_int(value: int) -> bytes:
    """go-state-types ``big.Int.Bytes``: empty for zero, else a sign byte (0
    positive, 1 negative) and the big-endian magnitude without leading zeros."""
    if value == 0:
        return b""
    magnitude = abs(value)
    return (b"\x01" if value < 0 else b"\x00") + magnitude.to_bytes((magnitude.bit_length() + 7) // 8, "big")


def decode_big_int(data: bytes, where: str = "big int") -> int:
    """The inverse of :func:`encode_big_int`, refusing every other byte form
    (go-state-types also reads ``00``, ``01`` and leading zero bytes, which
    its encoder never writes)."""
    if not data:
        return 0
    sign = data[0]
    if sign not in (0, 1):
        raise RetrievalTypeError(where, f"big int sign byte must be 0 or 1, got {sign}")
    if len(data) == 1:
        raise RetrievalTypeError(where, "big int not canonical: a sign byte and no magnitude "
                                        "(zero is empty bytes)")
    if data[1] == 0:
        raise RetrievalTypeError(where, "big int not canonical: its magnitude has a leading zero byte")
    magnitude = int.from_bytes(data[1:], "big")
    return -magnitude if sign else magnitude


def read_token_amount(node: Any, where: str) -> int:
    """A non-negative token amount (attoFIL) from its bytes node. Go's type
    can hold a negative amount; no deal has one, so it is refused."""
    value = decode_big_int(read_bytes(node, where), where)
    if value < 0:
        raise RetrievalTypeError(where, f"negative token amount {value}")
    return value


def check_token_amount(value: Any, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise RetrievalTypeError(where, f"expected an int (attoFIL), got {type(value).__name__}")
    if value < 0:
        raise RetrievalTypeError(where, f"negative token amount {value}")
    return int(value)


# -- addresses ------------------------------------------------------------------------------


class Protocol(enum.IntEnum):
    """The first byte of an address (go-address ``Protocol``)."""

    ID = 0
    SECP256K1 = 1
    ACTOR = 2
    BLS = 3
    DELEGATED = 4


#: payload lengths of the hashed protocols (go-address constants)
_PAYLOAD_HASH_LENGTH = 20
_BLS_PUBLIC_KEY_BYTES = 48
_MAX_SUBADDRESS_LEN = 54


def _address_error(raw: bytes) -> str | None:
    """Why ``raw`` is not an address in go-address's ``NewFromBytes`` terms, or None."""
    if not raw:
        return None  # the undefined address
    if len(raw) == 1:
        return "address of one byte (a protocol and no payload)"
    protocol, payload = raw[0], raw[1:]
    if protocol in (Protocol.ID, Protocol.DELEGATED):
        try:
            value, end = decode_uvarint(payload)
        except VarintError as exc:
            return f"address payload: {exc}"
        if value > INT64_MAX:
            return "address id or namespace must be below 2^63"
        if protocol == Protocol.ID and end != len(payload):
            return f"ID address has {len(payload) - end} bytes after its varint"
        if protocol == Protocol.DELEGATED and len(payload) - end > _MAX_SUBADDRESS_LEN:
            return f"delegated sub-address longer than {_MAX_SUBADDRESS_LEN} bytes"
    elif protocol in (Protocol.SECP256K1, Protocol.ACTOR):
        if len(payload) != _PAYLOAD_HASH_LENGTH:
            return f"{Protocol(protocol).name} address payload of {len(payload)} bytes, not 20"
    elif protocol == Protocol.BLS:
        if len(payload) != _BLS_PUBLIC_KEY_BYTES:
            return f"BLS address payload of {len(payload)} bytes, not 48"
    else:
        return f"unknown address protocol {protocol}"
    return None


@dataclass(frozen=True, slots=True)
class Address:
    """A Filecoin address in its byte form (go-address ``Address.Bytes``);
    empty bytes are the undefined address, which bindnode writes and
    cbor-gen refuses to."""

    raw: bytes = b""

    def __post_init__(self) -> None:
        if type(self.raw) is not bytes:
            raise RetrievalTypeError("Address", f"expected bytes, got {type(self.raw).__name__}")
        reason = _address_error(self.raw)
        if reason is not None:
            raise RetrievalTypeError("Address", reason)

    @classmethod
    def new_id(cls, actor_id: int) -> Address:
        """The ID address ``f0<actor_id>``."""
        check_int(actor_id, "Address", 0, INT64_MAX)
        return cls(bytes((Protocol.ID,)) + encode_uvarint(actor_id))

    @property
    def is_undef(self) -> bool:
        return not self.raw

    @property
    def protocol(self) -> Protocol:
        if not self.raw:
            raise RetrievalTypeError("Address", "the undefined address has no protocol")
        return Protocol(self.raw[0])

    def to_string(self, network: str = "f") -> str:
        """The text form (``f01000``, ``f1...``), as go-address's ``String``
        with ``network`` its prefix (``f`` mainnet, ``t`` testnets)."""
        if not self.raw:
            return "<empty>"
        protocol, payload = self.raw[0], self.raw[1:]
        checksum = hashlib.blake2b(self.raw, digest_size=4).digest()
        if protocol == Protocol.ID:
            return f"{network}0{decode_uvarint(payload)[0]}"
        if protocol == Protocol.DELEGATED:
            namespace, end = decode_uvarint(payload)
            return f"{network}4{namespace}f{b32encode(payload[end:] + checksum)}"
        return f"{network}{protocol}{b32encode(payload + checksum)}"

    def __str__(self) -> str:
        return self.to_string()


def read_address(node: Any, where: str) -> Address:
    raw = read_bytes(node, where)
    reason = _address_error(raw)
    if reason is not None:
        raise RetrievalTypeError(where, reason)
    return Address(raw)


# -- signatures -----------------------------------------------------------------------------


class SigType(enum.IntEnum):
    """go-state-types ``crypto.SigType`` (delegated signatures, type 3, are
    refused by go-retrieval-types' binding and so here)."""

    SECP256K1 = 1
    BLS = 2


#: go-state-types ``crypto.SignatureMaxLength``: type byte and data together
SIGNATURE_MAX_LENGTH = 200


@dataclass(frozen=True, slots=True)
class Signature:
    """A signature as go-retrieval-types binds it: one bytes value, the type
    byte then the signature data."""

    type: SigType
    data: bytes = b""

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "type", SigType(self.type))
        except ValueError:
            raise RetrievalTypeError("Signature", f"unknown signature type {self.type!r}") from None
        if type(self.data) is not bytes:
            raise RetrievalTypeError("Signature", f"data must be bytes, not {type(self.data).__name__}")
        if 1 + len(self.data) > SIGNATURE_MAX_LENGTH:
            raise RetrievalTypeError("Signature", f"longer than {SIGNATURE_MAX_LENGTH} bytes")

    def to_bytes(self) -> bytes:
        return bytes((self.type,)) + self.data

    @classmethod
    def read(cls, node: Any, where: str) -> Signature:
        raw = read_bytes(node, where)
        if not raw:
            raise RetrievalTypeError(where, "empty signature (no type byte)")
        if len(raw) > SIGNATURE_MAX_LENGTH:
            raise RetrievalTypeError(where, f"signature of {len(raw)} bytes, longer than "
                                            f"{SIGNATURE_MAX_LENGTH}")
        if raw[0] not in (SigType.SECP256K1, SigType.BLS):
            raise RetrievalTypeError(where, f"signature type {raw[0]} (only 1 secp256k1 and 2 BLS)")
        return cls(SigType(raw[0]), raw[1:])


# -- the payment-channel voucher (go-state-types builtin/v8/paych) ---------------------------


@dataclass(frozen=True, slots=True)
class ModVerifyParams:
    """``paych.ModVerifyParams``: a method the channel actor calls to check a
    voucher (tuple ``[Actor, Method, Data]``)."""

    actor: Address
    method: int
    data: bytes = b""

    FIELDS: ClassVar[tuple[str, ...]] = ("Actor", "Method", "Data")

    def __post_init__(self) -> None:
        if not isinstance(self.actor, Address):
            raise RetrievalTypeError("ModVerifyParams.Actor", "expected an Address")
        check_int(self.method, "ModVerifyParams.Method", 0, UINT64_MAX)
        if type(self.data) is not bytes:
            raise RetrievalTypeError("ModVerifyParams.Data", "expected bytes")

    def to_node(self) -> list[Any]:
        return [self.actor.raw, self.method, self.data]

    @classmethod
    def from_node(cls, node: Any, where: str = "ModVerifyParams") -> ModVerifyParams:
        actor, method, data = read_tuple(node, where, cls.FIELDS)
        return cls(read_address(actor, f"{where}.Actor"),
                   read_uint64(method, f"{where}.Method"),
                   read_bytes(data, f"{where}.Data"))


@dataclass(frozen=True, slots=True)
class Merge:
    """``paych.Merge``: a lane merged into the voucher's (tuple ``[Lane, Nonce]``)."""

    lane: int
    nonce: int

    def __post_init__(self) -> None:
        check_int(self.lane, "Merge.Lane", 0, UINT64_MAX)
        check_int(self.nonce, "Merge.Nonce", 0, UINT64_MAX)

    def to_node(self) -> list[int]:
        return [self.lane, self.nonce]

    @classmethod
    def from_node(cls, node: Any, where: str = "Merge") -> Merge:
        lane, nonce = read_tuple(node, where, ("Lane", "Nonce"))
        return cls(read_uint64(lane, f"{where}.Lane"), read_uint64(nonce, f"{where}.Nonce"))


@dataclass(frozen=True, slots=True)
class SignedVoucher:
    """``paych.SignedVoucher``: a payment-channel voucher, the money of a
    ``RetrievalDealPayment/1`` (tuple of eleven fields, in this order).
    Epochs are signed 64-bit; lanes, nonces and the method unsigned."""

    channel_addr: Address
    amount: int
    lane: int = 0
    nonce: int = 0
    time_lock_min: int = 0
    time_lock_max: int = 0
    secret_hash: bytes = b""
    extra: ModVerifyParams | None = None
    min_settle_height: int = 0
    merges: tuple[Merge, ...] = field(default_factory=tuple)
    signature: Signature | None = None

    FIELDS: ClassVar[tuple[str, ...]] = (
        "ChannelAddr", "TimeLockMin", "TimeLockMax", "SecretHash", "Extra", "Lane", "Nonce",
        "Amount", "MinSettleHeight", "Merges", "Signature")

    def __post_init__(self) -> None:
        w = "SignedVoucher"
        if not isinstance(self.channel_addr, Address):
            raise RetrievalTypeError(f"{w}.ChannelAddr", "expected an Address")
        check_token_amount(self.amount, f"{w}.Amount")
        check_int(self.lane, f"{w}.Lane", 0, UINT64_MAX)
        check_int(self.nonce, f"{w}.Nonce", 0, UINT64_MAX)
        for name, value in (("TimeLockMin", self.time_lock_min), ("TimeLockMax", self.time_lock_max),
                            ("MinSettleHeight", self.min_settle_height)):
            check_int(value, f"{w}.{name}", INT64_MIN, INT64_MAX)
        if type(self.secret_hash) is not bytes:
            raise RetrievalTypeError(f"{w}.SecretHash", "expected bytes")
        if self.extra is not None and not isinstance(self.extra, ModVerifyParams):
            raise RetrievalTypeError(f"{w}.Extra", "expected ModVerifyParams or None")
        merges = tuple(self.merges)
        if not all(isinstance(m, Merge) for m in merges):
            raise RetrievalTypeError(f"{w}.Merges", "expected Merge values")
        object.__setattr__(self, "merges", merges)
        if self.signature is not None and not isinstance(self.signature, Signature):
            raise RetrievalTypeError(f"{w}.Signature", "expected a Signature or None")

    def to_node(self) -> list[Any]:
        return [
            self.channel_addr.raw, self.time_lock_min, self.time_lock_max, self.secret_hash,
            None if self.extra is None else self.extra.to_node(), self.lane, self.nonce,
            encode_big_int(self.amount), self.min_settle_height, [m.to_node() for m in self.merges],
            None if self.signature is None else self.signature.to_bytes(),
        ]

    @classmethod
    def from_node(cls, node: Any, where: str = "SignedVoucher") -> SignedVoucher:
        (addr, tl_min, tl_max, secret, extra, lane, nonce, amount, min_settle, merges,
         signature) = read_tuple(node, where, cls.FIELDS)
        if not isinstance(merges, list):
            raise RetrievalTypeError(f"{where}.Merges", f"expected a list, got {kind_name(merges)}")
        return cls(
            channel_addr=read_address(addr, f"{where}.ChannelAddr"),
            time_lock_min=read_int(tl_min, f"{where}.TimeLockMin", INT64_MIN, INT64_MAX),
            time_lock_max=read_int(tl_max, f"{where}.TimeLockMax", INT64_MIN, INT64_MAX),
            secret_hash=read_bytes(secret, f"{where}.SecretHash"),
            extra=None if extra is None else ModVerifyParams.from_node(extra, f"{where}.Extra"),
            lane=read_uint64(lane, f"{where}.Lane"),
            nonce=read_uint64(nonce, f"{where}.Nonce"),
            amount=read_token_amount(amount, f"{where}.Amount"),
            min_settle_height=read_int(min_settle, f"{where}.MinSettleHeight", INT64_MIN, INT64_MAX),
            merges=tuple(Merge.from_node(m, f"{where}.Merges[{i}]") for i, m in enumerate(merges)),
            signature=None if signature is None else Signature.read(signature, f"{where}.Signature"),
        )
