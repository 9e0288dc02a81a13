"""Core value types: peer ids, channel ids, channel state snapshots, events.

All are immutable. A :class:`ChannelState` is a snapshot handed to
subscribers and callers; the engine never mutates one after handing it out,
so a subscriber running late still sees the state that went with its event.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from datatransfer.ipld.cid import CID
from datatransfer.ipld.multibase import b58decode, b58encode
from statemachine import EventCode, Status

TransferID = int


class PeerID(bytes):
    """A peer id: the raw multihash bytes of the peer's public key.

    Printed in base58btc like libp2p does; compares and hashes as bytes.
    """

    __slots__ = ()

    @classmethod
    def from_base58(cls, text: str) -> PeerID:
        """Parse the usual printed form (``12D3Koo...`` or ``Qm...``)."""
        return cls(b58decode(text))

    def to_base58(self) -> str:
        return b58encode(bytes(self))

    def __str__(self) -> str:
        return self.to_base58()

    def __repr__(self) -> str:
        return f"PeerID({self.to_base58()!r})"


@dataclass(frozen=True, slots=True)
class ChannelID:
    """Identifies a channel: the initiating peer, the responding peer and the
    initiator's transfer id. Unique because each initiator numbers its own."""

    initiator: PeerID
    responder: PeerID
    id: TransferID

    def other_party(self, peer: PeerID) -> PeerID:
        """The peer on the other side of the channel from ``peer``."""
        if peer == self.initiator:
            return self.responder
        if peer == self.responder:
            return self.initiator
        raise ValueError(f"{peer} is not a party of channel {self}")

    def __str__(self) -> str:
        return f"{self.initiator}-{self.responder}-{self.id}"


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened on a channel: the event code, a clarifying
    message and when it happened (seconds since the epoch)."""

    code: EventCode
    message: str = ""
    timestamp: float = field(default_factory=time.time)

    @property
    def name(self) -> str:
        return self.code.name


@dataclass(frozen=True, slots=True)
class ChannelState:
    """An immutable snapshot of one channel: its parameters plus its status.

    Has every field of the Go reference's ``ChannelState`` plus what restart
    needs (queued bytes and the highest block indices seen).
    """

    channel_id: ChannelID
    base_cid: CID
    selector: Any
    voucher: Any
    sender: PeerID
    recipient: PeerID
    total_size: int
    is_pull: bool
    self_peer: PeerID
    status: Status = Status.Requested
    sent: int = 0
    received: int = 0
    queued: int = 0
    message: str = ""
    vouchers: tuple[Any, ...] = ()
    voucher_results: tuple[Any, ...] = ()
    sent_index: int = 0
    received_index: int = 0
    queued_index: int = 0

    @property
    def transfer_id(self) -> TransferID:
        return self.channel_id.id

    @property
    def other_peer(self) -> PeerID:
        return self.channel_id.other_party(self.self_peer)

    @property
    def is_initiator(self) -> bool:
        return self.self_peer == self.channel_id.initiator

    @property
    def last_voucher(self) -> Any:
        """The most recent voucher sent on the channel (the opening one first)."""
        return self.vouchers[-1] if self.vouchers else self.voucher

    @property
    def last_voucher_result(self) -> Any:
        """The most recent voucher result, or None."""
        return self.voucher_results[-1] if self.voucher_results else None
