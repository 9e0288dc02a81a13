"""The retrieval market's libp2p protocols beside data transfer: the
transports query (``/fil/retrieval/transports/1.0.0``, see
:mod:`~datatransfer.markets.retrieval.transports`), answered as boost
answers it and asked as Lassie asks it.

Lassie given a provider's address asks this first; without an answer it
falls back to probing the graphsync and data-transfer protocols, so the
answer is what tells it, as on the Filecoin network, that the node serves
graphsync retrievals and where.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import anyio
from libp2p.network.stream.exceptions import StreamEOF

from datatransfer.markets.retrieval.transports import (
    MAX_RESPONSE,
    TRANSPORTS_PROTOCOL,
    TransportsResponse,
)
from datatransfer.types import PeerID
from transport.libp2p.host import close_stream, libp2p_id, reset_stream

__all__ = ["query_transports", "serve_transports", "stop_transports"]

log = logging.getLogger(__name__)

#: Longest the answer's write may take (boost: 10 s), so a client that
#: never reads cannot hold a handler.
WRITE_TIMEOUT = 10.0
#: Longest a query waits for the whole answer (Lassie: 5 s).
READ_TIMEOUT = 5.0


def serve_transports(host: Any, addrs: Callable[[], Sequence[str]]) -> None:
    """Answer transports queries on ``host`` with the ``libp2p`` protocol at
    ``addrs()`` (read at each query: dialable addresses ending in
    ``/p2p/<peer id>``, as boost gives them)."""

    async def answer(stream: Any) -> None:
        try:
            data = TransportsResponse.libp2p(addrs()).encode()
            with anyio.fail_after(WRITE_TIMEOUT):
                await stream.write(data)
        except Exception as exc:  # noqa: BLE001 - the client went away, a bad address
            log.debug("transports query: no answer sent: %r", exc)
            await reset_stream(stream)
            return
        await close_stream(stream)

    host.set_stream_handler(TRANSPORTS_PROTOCOL, answer)


def stop_transports(host: Any) -> None:
    """Stop answering transports queries on ``host``."""
    host.remove_stream_handler(TRANSPORTS_PROTOCOL)


async def query_transports(host: Any, peer: PeerID) -> TransportsResponse:
    """Ask ``peer`` (connected, or in the peerstore) which retrieval
    transports it serves. Raises :class:`TimeoutError` when the answer does
    not come within :data:`READ_TIMEOUT`,
    :class:`~datatransfer.markets.retrieval.filecoin.RetrievalTypeError`
    for a malformed one, libp2p's errors when no stream opens."""
    stream = await host.new_stream(libp2p_id(peer), [TRANSPORTS_PROTOCOL])
    data = bytearray()
    try:
        with anyio.fail_after(READ_TIMEOUT):
            while len(data) <= MAX_RESPONSE:
                try:
                    chunk = await stream.read(MAX_RESPONSE + 1 - len(data))
                except StreamEOF:
                    break
                if not chunk:
                    break
                data += chunk
    finally:
        await close_stream(stream)
    return TransportsResponse.decode(bytes(data))
