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

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from datatransfer.config import ManagerConfig
    from datatransfer.errors import (
        ChannelNotFound,
        DataTransferError,
        Pause,
        ProtocolError,
        Rejected,
        RetryValidation,
        TrioRequired,
        Unsupported,
    )
    from datatransfer.manager import Manager
    from datatransfer.types import ChannelID, ChannelState, Event, PeerID, TransferID
    from registry import NOT_HANDLED, Voucher, VoucherResult
    from statemachine import EventCode, IllegalTransition, Status

# Loaded on first use (PEP 562): importing a lower layer such as
# ``datatransfer.ipld.cid`` runs this file, and must not load the runtime
# (the Manager, anyio, transitions, the transports) with it.
_HOME = {
    "ManagerConfig": "datatransfer.config",
    "Manager": "datatransfer.manager",
    **dict.fromkeys(("ChannelNotFound", "DataTransferError", "Pause", "ProtocolError",
                     "Rejected", "RetryValidation", "TrioRequired", "Unsupported"),
                    "datatransfer.errors"),
    **dict.fromkeys(("ChannelID", "ChannelState", "Event", "PeerID", "TransferID"),
                    "datatransfer.types"),
    **dict.fromkeys(("NOT_HANDLED", "Voucher", "VoucherResult"), "registry"),
    **dict.fromkeys(("EventCode", "IllegalTransition", "Status"), "statemachine"),
}


def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module 'datatransfer' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOME})


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
    "TrioRequired",
    "Unsupported",
    "Voucher",
    "VoucherResult",
]
