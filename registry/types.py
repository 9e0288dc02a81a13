"""What a voucher, a voucher result, a validator and a revalidator are.

A voucher proves a transfer is wanted (a deal proposal, a payment); a voucher
result is the responder's answer to one. Both are registered by a string type
identifier and travel as IPLD nodes, so each class says how to turn itself into
a data-model node and back. Validators and revalidators are async because a
real market consults its own database before it answers.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, Self, runtime_checkable

from datatransfer.ipld import dagcbor

if TYPE_CHECKING:
    from datatransfer.ipld.cid import CID
    from datatransfer.types import ChannelID, PeerID


class Registerable(ABC):
    """A value with a registered type identifier that encodes to IPLD.

    Subclasses set ``type_id`` and implement :meth:`to_node` and
    :meth:`from_node`; :meth:`from_node` raises ``ValueError`` (or a subclass)
    for a node of the wrong shape.
    """

    type_id: ClassVar[str]

    @abstractmethod
    def to_node(self) -> Any:
        """This value as an IPLD data-model node (dict, list, str, int, ...)."""

    @classmethod
    @abstractmethod
    def from_node(cls, node: Any) -> Self:
        """Rebuild a value from the node :meth:`to_node` produced."""

    def to_bytes(self) -> bytes:
        """This value as DAG-CBOR."""
        return dagcbor.encode(self.to_node())

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        """Decode DAG-CBOR bytes produced by :meth:`to_bytes`."""
        return cls.from_node(dagcbor.decode(data))


class Voucher(Registerable):
    """Base class of voucher types."""


class VoucherResult(Registerable):
    """Base class of voucher-result types."""


#: Returned by a revalidator method for a channel that is not its business, so
#: the engine asks the next registered revalidator (Go: ``handled == false``).
class _NotHandled:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NOT_HANDLED"

    def __bool__(self) -> bool:
        return False


NOT_HANDLED: Any = _NotHandled()


@runtime_checkable
class RequestValidator(Protocol):
    """Decides whether to accept a new (or restarted) transfer request.

    Return a voucher result (or None) to accept; raise ``Rejected`` to refuse,
    ``Pause(result)`` to accept but start paused, ``RetryValidation(result)``
    to keep the request waiting for another voucher.
    """

    async def validate_push(
        self,
        is_restart: bool,
        channel_id: ChannelID,
        sender: PeerID,
        voucher: Voucher,
        base_cid: CID,
        selector: Any,
    ) -> VoucherResult | None: ...

    async def validate_pull(
        self,
        is_restart: bool,
        channel_id: ChannelID,
        receiver: PeerID,
        voucher: Voucher,
        base_cid: CID,
        selector: Any,
    ) -> VoucherResult | None: ...


@runtime_checkable
class Revalidator(Protocol):
    """Asks for new vouchers while a transfer runs (pay-as-you-go retrieval).

    Each method returns :data:`NOT_HANDLED` for channels it does not manage;
    otherwise a voucher result (or None) and may raise ``Pause(result)`` to
    pause the transfer until the other side sends a voucher, or any other
    exception to fail the channel.
    """

    async def revalidate(self, channel_id: ChannelID, voucher: Voucher) -> VoucherResult | None:
        """A new voucher arrived; raise ``Pause`` to stay paused."""
        ...

    async def on_pull_data_sent(
        self, channel_id: ChannelID, additional_bytes: int
    ) -> VoucherResult | None:
        """The responder sent more bytes of a pull."""
        ...

    async def on_push_data_received(
        self, channel_id: ChannelID, additional_bytes: int
    ) -> VoucherResult | None:
        """The responder received more bytes of a push."""
        ...

    async def on_complete(self, channel_id: ChannelID) -> VoucherResult | None:
        """The transfer finished: raise ``Pause(result)`` to wait for a final
        voucher; a result returned is sent with the Complete message (Go's
        ``OnComplete``: ``ErrPause`` waits)."""
        ...
