"""The Manager's mutable view of one channel.

A :class:`Channel` is the channel's fixed parameters plus the state machine's
:class:`~statemachine.ChannelRecord`. Only the Manager mutates it, and only
through :func:`statemachine.apply`; everyone else gets immutable
:class:`~datatransfer.types.ChannelState` snapshots. Vouchers are kept as they
travel, ``(type_id, node)`` pairs, so a channel can be stored and reloaded
without the registry; :meth:`Channel.snapshot` decodes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from datatransfer.ipld.cid import CID
from datatransfer.types import ChannelID, ChannelState, PeerID
from statemachine import ChannelRecord

#: A voucher or voucher result as it travels: its type identifier and node.
Encoded = tuple[str, Any]


@dataclass(slots=True)
class Channel:
    """Parameters and state of one channel (mutable; owned by the Manager)."""

    channel_id: ChannelID
    self_peer: PeerID
    base_cid: CID
    selector: Any
    voucher: Encoded
    sender: PeerID
    recipient: PeerID
    is_pull: bool
    total_size: int = 0
    record: ChannelRecord = field(default_factory=ChannelRecord)
    #: Restarts since the last progress; reset when data moves.
    restarts: int = 0

    @property
    def is_initiator(self) -> bool:
        return self.self_peer == self.channel_id.initiator

    @property
    def is_sender(self) -> bool:
        return self.self_peer == self.sender

    @property
    def other_peer(self) -> PeerID:
        return self.channel_id.other_party(self.self_peer)

    def snapshot(self, voucher: Any, vouchers: tuple[Any, ...],
                 voucher_results: tuple[Any, ...]) -> ChannelState:
        """An immutable snapshot, with the vouchers and results as the caller
        decoded them (the Manager decodes through its registry and caches)."""
        rec = self.record
        return ChannelState(
            channel_id=self.channel_id,
            base_cid=self.base_cid,
            selector=self.selector,
            voucher=voucher,
            sender=self.sender,
            recipient=self.recipient,
            total_size=self.total_size,
            is_pull=self.is_pull,
            self_peer=self.self_peer,
            status=rec.status,
            sent=rec.sent,
            received=rec.received,
            queued=rec.queued,
            message=rec.message,
            vouchers=vouchers,
            voucher_results=voucher_results,
            sent_index=rec.sent_index,
            received_index=rec.received_index,
            queued_index=rec.queued_index,
        )
