"""py-data-transfer: move content-addressed data between peers.

The public API, importable from here:

* :class:`Manager` (``async with Manager(transport, store=...)``) and its
  :class:`ManagerConfig`;
* value types :class:`ChannelID`, :class:`ChannelState`, :class:`Event`,
  :class:`PeerID`; the enums :class:`Status` and :class:`EventCode`;
* the typed errors (:class:`DataTransferError` and its subclasses,
  :class:`IllegalTransition` from the state machine);
* :class:`Voucher`, :class:`VoucherResult`, :data:`NOT_HANDLED` for
  validators and revalidators (see :mod:`registry`).

Transports live in the top-level :mod:`transport` package, the IPLD layer in
:mod:`datatransfer.ipld`.
"""

from datatransfer.config import ManagerConfig
from datatransfer.errors import (
    ChannelNotFound,
    DataTransferError,
    Pause,
    ProtocolError,
    Rejected,
    RetryValidation,
    Unsupported,
)
from datatransfer.manager import Manager
from datatransfer.types import ChannelID, ChannelState, Event, PeerID, TransferID
from registry import NOT_HANDLED, Voucher, VoucherResult
from statemachine import EventCode, IllegalTransition, Status

__all__ = [
    "NOT_HANDLED",
    "ChannelID",
    "ChannelNotFound",
    "ChannelState",
    "DataTransferError",
    "Event",
    "EventCode",
    "IllegalTransition",
    "Manager",
    "ManagerConfig",
    "Pause",
    "PeerID",
    "ProtocolError",
    "Rejected",
    "RetryValidation",
    "Status",
    "TransferID",
    "Unsupported",
    "Voucher",
    "VoucherResult",
]
