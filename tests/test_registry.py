"""The voucher registry: registration rules, typed lookups and DAG-CBOR round trips."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from datatransfer.errors import DataTransferError
from registry import (
    NOT_HANDLED,
    AlreadyRegistered,
    InvalidVoucher,
    Registry,
    UnknownVoucherType,
    Voucher,
    VoucherResult,
)


@dataclass(frozen=True)
class DealVoucher(Voucher):
    type_id = "test/DealProposal"
    deal_id: int
    label: str

    def to_node(self):
        return {"DealID": self.deal_id, "Label": self.label}

    @classmethod
    def from_node(cls, node):
        if not isinstance(node, dict) or not isinstance(node.get("DealID"), int):
            raise ValueError(f"not a deal voucher: {node!r}")
        return cls(node["DealID"], str(node.get("Label", "")))


@dataclass(frozen=True)
class PaymentVoucher(Voucher):
    type_id = "test/Payment"
    amount: int

    def to_node(self):
        return [self.amount]

    @classmethod
    def from_node(cls, node):
        (amount,) = node
        return cls(int(amount))


@dataclass(frozen=True)
class DealResponse(VoucherResult):
    type_id = "test/DealResponse"
    accepted: bool

    def to_node(self):
        return {"Accepted": self.accepted}

    @classmethod
    def from_node(cls, node):
        return cls(bool(node["Accepted"]))


class Validator:
    async def validate_push(self, is_restart, channel_id, sender, voucher, base_cid, selector):
        return None

    async def validate_pull(self, is_restart, channel_id, receiver, voucher, base_cid, selector):
        return DealResponse(True)


class Revalidator:
    async def revalidate(self, channel_id, voucher):
        return None

    async def on_pull_data_sent(self, channel_id, additional_bytes):
        return NOT_HANDLED

    async def on_push_data_received(self, channel_id, additional_bytes):
        return NOT_HANDLED

    async def on_complete(self, channel_id):
        return None


def test_voucher_round_trips_through_dag_cbor():
    voucher = DealVoucher(7, "hello")
    data = voucher.to_bytes()
    assert data == bytes.fromhex("a2654c6162656c6568656c6c6f664465616c494407")
    assert DealVoucher.from_bytes(data) == voucher


def test_register_and_look_up():
    reg = Registry()
    validator = Validator()
    reg.register_voucher_type(DealVoucher, validator)
    reg.register_voucher_result_type(DealResponse)
    assert reg.validator("test/DealProposal") is validator
    assert reg.decode_voucher("test/DealProposal", {"DealID": 3, "Label": "x"}) == DealVoucher(3, "x")
    assert reg.decode_voucher_result("test/DealResponse", {"Accepted": True}) == DealResponse(True)
    assert reg.revalidators() == []


def test_revalidator_may_share_the_validator_type_or_use_its_own():
    reg = Registry()
    reval = Revalidator()
    reg.register_voucher_type(DealVoucher, Validator())
    reg.register_revalidator(DealVoucher, reval)
    reg.register_revalidator(PaymentVoucher, reval)
    assert reg.revalidators() == [reval, reval]
    assert reg.revalidator("test/Payment") is reval
    # a revalidation-only type has no validator, so it cannot open a channel
    with pytest.raises(UnknownVoucherType):
        reg.validator("test/Payment")


@pytest.mark.parametrize(
    "register_twice",
    [
        lambda r: (r.register_voucher_type(DealVoucher, Validator()),
                   r.register_voucher_type(DealVoucher, Validator())),
        lambda r: (r.register_revalidator(PaymentVoucher, Revalidator()),
                   r.register_revalidator(PaymentVoucher, Revalidator())),
        lambda r: (r.register_voucher_result_type(DealResponse),
                   r.register_voucher_result_type(DealResponse)),
    ],
    ids=["voucher", "revalidator", "result"],
)
def test_registering_an_identifier_twice_is_an_error(register_twice):
    with pytest.raises(AlreadyRegistered):
        register_twice(Registry())


def test_another_class_cannot_take_a_registered_identifier():
    @dataclass(frozen=True)
    class Impostor(Voucher):
        type_id = "test/DealProposal"

        def to_node(self):
            return None

        @classmethod
        def from_node(cls, node):
            return cls()

    reg = Registry()
    reg.register_voucher_type(DealVoucher, Validator())
    with pytest.raises(AlreadyRegistered, match="test/DealProposal"):
        reg.register_revalidator(Impostor, Revalidator())


def test_unknown_type_identifier_is_named_in_the_error():
    reg = Registry()
    with pytest.raises(UnknownVoucherType) as info:
        reg.decode_voucher("fil/never-registered", {})
    assert info.value.type_id == "fil/never-registered"
    assert "fil/never-registered" in str(info.value)
    assert isinstance(info.value, DataTransferError)
    with pytest.raises(UnknownVoucherType, match="other/result"):
        reg.decode_voucher_result("other/result", {})


def test_malformed_voucher_node_is_a_typed_error():
    reg = Registry()
    reg.register_voucher_type(DealVoucher, Validator())
    reg.register_revalidator(PaymentVoucher, Revalidator())
    with pytest.raises(InvalidVoucher, match="test/DealProposal"):
        reg.decode_voucher("test/DealProposal", ["not", "a", "map"])
    with pytest.raises(InvalidVoucher, match="test/Payment"):
        reg.decode_voucher("test/Payment", [1, 2])


def test_registration_checks_types():
    reg = Registry()
    with pytest.raises(TypeError):
        reg.register_voucher_type(dict, Validator())  # not a Voucher
    with pytest.raises(TypeError):
        reg.register_voucher_type(DealVoucher, object())  # not a validator
    with pytest.raises(TypeError):
        reg.register_revalidator(DealVoucher, Validator())  # lacks revalidator methods
    assert not NOT_HANDLED
