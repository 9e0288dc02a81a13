"""The transport interface: how the Manager moves data and messages.

The Manager coordinates channels (validation, vouchers, statuses); a transport
moves blocks and data-transfer messages between peers. The split follows the
Go reference: the **data receiver** always opens the data request (for a pull
that is the initiator, for a push the responder), the **data sender** serves it
by traversing its blockstore with the channel's selector, and data-transfer
messages either travel on their own (:meth:`Transport.send_message`) or ride
along with the data request and its responses (the way graphsync carries them
in extensions).

Events flow back through :class:`TransportEvents`, which the Manager
implements. Several events return a :class:`Decision`, the Manager's answer:
a message to send along, whether to keep serving, and whether to pause.

Block indices count the blocks the sender's traversal loads, from 1, in
traversal order, including blocks skipped because of a restart; so "the
receiver holds blocks 1..k" is one number, and a restart asks the sender to
skip the first k blocks instead of listing every CID received.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from anyio.abc import TaskStatus

    from datatransfer.ipld.cid import CID
    from datatransfer.messages import TransferRequest, TransferResponse
    from datatransfer.types import ChannelID, PeerID

    Message = TransferRequest | TransferResponse


class TransportError(Exception):
    """A transport operation failed (peer unreachable, connection lost, ...)."""


class PeerUnreachable(TransportError):
    """The peer cannot be reached (not connected, partitioned, or gone)."""


class UnknownTransportChannel(TransportError):
    """The transport has no open request for this channel."""


@dataclass(frozen=True, slots=True)
class Decision:
    """The Manager's answer to a transport event.

    ``message``: a data-transfer message to send to the other peer along with
    the data (e.g. a voucher result asking for payment), or None.
    ``accept``: False refuses the request (after sending ``message``).
    ``pause``: True holds the data flow of this channel, on this side, until
    :meth:`Transport.resume_channel` is called.
    """

    message: Message | None = None
    accept: bool = True
    pause: bool = False


PROCEED = Decision()


class TransportEvents(Protocol):
    """What a transport tells the Manager. Every method is async and must not
    raise for ordinary channel conditions; the Manager records them."""

    async def on_message(self, sender: PeerID, message: Message) -> None:
        """A data-transfer message arrived on its own (not with data)."""

    async def on_request_received(
        self, channel_id: ChannelID, sender: PeerID, message: Message,
        root: CID | None = None, selector: Any = None,
    ) -> Decision:
        """A data request arrived from ``sender`` carrying a data-transfer
        message: a pull's New or Restart request, or a push responder's
        acceptance. A transport whose request names its root and selector
        apart from the message passes them, to be checked against the
        channel's. The decision says whether to serve it."""

    async def on_response_received(self, channel_id: ChannelID, response: TransferResponse) -> None:
        """A data-transfer response arrived along with the data flowing back
        (a pull's acceptance, a voucher result asking for payment)."""

    async def on_channel_opened(self, channel_id: ChannelID) -> None:
        """The data request this node opened was delivered to the sender."""

    async def on_data_queued(
        self, channel_id: ChannelID, cid: CID, size: int, index: int
    ) -> Decision:
        """The sender is about to send block ``index``; a pause decision holds
        it (and everything after it) until resumed."""

    async def on_data_sent(self, channel_id: ChannelID, cid: CID, size: int, index: int) -> None:
        """The sender handed block ``index`` to the network."""

    async def on_data_skipped(self, channel_id: ChannelID, cid: CID, size: int,
                              index: int) -> None:
        """A restarted request leaves block ``index`` out: the receiver
        holds it. Reported to the sender as it walks past it, and to the
        receiver for the held blocks beyond what its channel recorded (it
        resumes from what its store holds). Nothing moves; it lets either
        side's counters catch up with what moved before a crash."""

    async def on_data_received(
        self, channel_id: ChannelID, cid: CID, size: int, index: int
    ) -> Decision:
        """The receiver verified and stored block ``index``."""

    async def on_channel_completed(self, channel_id: ChannelID, error: str | None) -> None:
        """This side finished moving data for the channel: the sender sent the
        last block, or the receiver got it; ``error`` says why it ended early."""

    async def on_request_cancelled(self, channel_id: ChannelID, reason: str) -> None:
        """The other side cancelled the data request."""

    async def on_disconnected(self, channel_id: ChannelID, reason: str) -> None:
        """The connection carrying the channel was lost."""

    async def on_peer_lost(self, peer: PeerID, reason: str,
                           notified: frozenset[ChannelID]) -> None:
        """The connection with ``peer`` is gone. The channels in ``notified``
        had a data request here and hear of it on their own
        (:meth:`on_disconnected`); this is for the others with that peer,
        which the transport holds nothing for (an initiator that moved all
        its data and waits for the responder's last word)."""

    async def on_send_data_error(self, channel_id: ChannelID, reason: str) -> None:
        """Sending data failed (a transport error, not a protocol decision)."""

    async def on_receive_data_error(self, channel_id: ChannelID, reason: str) -> None:
        """Receiving data failed, e.g. a block that does not match its CID."""


class Transport(ABC):
    """One node's transport. Runs inside the Manager's task group via
    :meth:`serve`; every task it starts belongs to that scope."""

    #: Whether :meth:`pause_channel` / :meth:`resume_channel` work.
    supports_pause: bool = True

    @property
    @abstractmethod
    def peer_id(self) -> PeerID:
        """This node's peer id."""

    @abstractmethod
    async def serve(
        self, events: TransportEvents, *, task_status: TaskStatus[None]
    ) -> None:
        """Run the transport, delivering events to ``events``, until cancelled.
        Calls ``task_status.started()`` once it accepts requests."""

    async def drain(self) -> None:
        """Let what was sent reach its peers before the transport stops (a
        message sent on the way out, such as a cancel); the Manager calls it
        when it stops, with a time bound. Nothing to do by default."""
        return None

    def connected(self, peer: PeerID) -> bool:
        """Whether this node holds a connection to ``peer`` now, so a message
        would go out without dialing. A transport that cannot tell says
        True (the Manager then tries, and a send to a peer that is gone
        fails)."""
        return True

    @property
    def queued_channels(self) -> frozenset[ChannelID]:
        """Channels whose data request this node received and holds in its
        own queue, not served yet (its limit of requests in progress): the
        Manager does not blame their peer for the wait. None by default."""
        return frozenset()

    @abstractmethod
    async def send_message(self, peer: PeerID, message: Message) -> None:
        """Send a data-transfer message on its own; raises
        :class:`PeerUnreachable` if it cannot be delivered."""

    @abstractmethod
    async def open_channel(
        self,
        data_sender: PeerID,
        channel_id: ChannelID,
        root: CID,
        selector: Any,
        message: Message,
        skip_blocks: int = 0,
    ) -> None:
        """As the data receiver, ask ``data_sender`` to send the blocks
        ``selector`` reaches from ``root``, carrying ``message`` (a pull's
        request, or a push responder's acceptance). ``skip_blocks``: the
        receiver already holds the first that many blocks (restart)."""

    @abstractmethod
    async def close_channel(self, channel_id: ChannelID) -> None:
        """Stop moving data for the channel on both ends (cancel); idempotent."""

    @abstractmethod
    async def pause_channel(self, channel_id: ChannelID) -> None:
        """Hold the data flow of the channel from this side."""

    @abstractmethod
    async def resume_channel(self, channel_id: ChannelID, message: Message | None = None) -> None:
        """Release this side's hold, sending ``message`` along if given."""

    @abstractmethod
    async def cleanup_channel(self, channel_id: ChannelID) -> None:
        """Forget everything held for the channel (after it ended)."""
