"""Core value types: ChannelID, ChannelState, PeerID, Event."""

from __future__ import annotations

import dataclasses

import pytest

from datatransfer.errors import ChannelNotFound, DataTransferError, Pause, RetryValidation
from datatransfer.ipld.cid import CID
from datatransfer.types import ChannelID, ChannelState, Event, PeerID
from statemachine import EventCode, Status

A = PeerID.from_base58("12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA")
B = PeerID(b"\x00\x05other")
C = PeerID(b"\x00\x05third")


def test_peer_id_prints_base58_and_round_trips():
    assert str(A) == "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"
    assert PeerID.from_base58(str(B)) == B
    assert isinstance(A, bytes)


def test_other_party():
    chid = ChannelID(A, B, 5)
    assert chid.other_party(A) == B
    assert chid.other_party(B) == A
    with pytest.raises(ValueError):
        chid.other_party(C)
    assert {chid: 1}[ChannelID(A, B, 5)] == 1


def test_channel_state_is_an_immutable_snapshot():
    chid = ChannelID(A, B, 1)
    st = ChannelState(chid, CID.of(b"x"), {".": {}}, "v0", B, A, 10, True, A)
    assert st.transfer_id == 1
    assert st.other_peer == B
    assert st.is_initiator
    assert st.last_voucher == "v0"
    assert st.last_voucher_result is None
    st2 = dataclasses.replace(st, vouchers=("v0", "v1"), voucher_results=("r",), received=5)
    assert st2.last_voucher == "v1" and st2.last_voucher_result == "r"
    assert st.received == 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        st.status = Status.Completed  # type: ignore[misc]


def test_event_defaults():
    ev = Event(EventCode.Accept)
    assert ev.name == "Accept" and ev.message == "" and ev.timestamp > 0


def test_sentinel_errors_are_typed_and_carry_results():
    err = ChannelNotFound(ChannelID(A, B, 9))
    assert isinstance(err, DataTransferError) and isinstance(err, KeyError)
    assert "channel not found" in str(err)
    assert Pause("r").result == "r"
    assert RetryValidation("q").result == "q"
