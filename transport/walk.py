"""The traversal steps every transport takes the same way.

The sender walks the selector over its store and sends the blocks it loads
(after a restart, not the first ones the receiver already holds). The
receiver runs its own traversal of the same selector, so it knows which
block must arrive next: a block nobody asked for is refused instead of
stored; the blocks skipped on restart it loads from its own store.
"""

from __future__ import annotations

from typing import Any, Protocol

from datatransfer.ipld.blockstore import Blockstore
from datatransfer.ipld.selector import BlockRequest, Traverser


class ReceiverState(Protocol):
    """The fields of a transport's receiver state that :func:`advance` uses."""

    traverser: Traverser
    expect: BlockRequest | None
    traversal_done: bool


def next_to_receive(state: Any, blockstore: Blockstore) -> str | None:
    """Walk ``state.traverser`` to the next block the sender must send and set
    ``state.expect`` to it (or ``state.traversal_done`` when none is left),
    loading restart-skipped blocks from ``blockstore``. Returns an error text,
    or None."""
    traverser = state.traverser
    while True:
        try:
            event = traverser.next()
        except Exception as exc:  # noqa: BLE001 - reported as the receive error
            return f"traversal failed: {exc}"
        if event is None:
            state.traversal_done = True
            state.expect = None
            return None
        if type(event) is not BlockRequest:
            continue
        if event.send:
            state.expect = event
            return None
        try:
            data = blockstore.get(event.cid)
        except Exception as exc:  # noqa: BLE001
            return (
                f"block {event.cid} (index {event.index + 1}) to skip on restart "
                f"is not in the local store: {exc}"
            )
        traverser.provide(data)


def next_to_send(traverser: Traverser, blockstore: Blockstore) -> tuple[BlockRequest, bytes] | str | None:
    """Walk ``traverser`` over ``blockstore`` to the next block to send: that
    block's request and bytes, None when the traversal is complete, or an
    error text. Blocks a restart skips are walked but not returned."""
    while True:
        try:
            event = traverser.next()
        except Exception as exc:  # noqa: BLE001 - any traversal failure ends it
            return f"traversal failed: {exc}"
        if event is None:
            return None
        if type(event) is not BlockRequest:
            continue
        try:
            data = blockstore.get(event.cid)
        except Exception as exc:  # noqa: BLE001 - BlockNotFound, closed store...
            return f"cannot load block {event.cid} (index {event.index + 1}): {exc}"
        traverser.provide(data)
        if event.send:
            return event, data
