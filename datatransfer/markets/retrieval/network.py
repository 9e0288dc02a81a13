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

from datatransfer.markets.retrieval.query import MAX_MESSAGE, QUERY_PROTOCOL, Query, QueryResponse
from datatransfer.markets.retrieval.transports import (
    MAX_RESPONSE,
    TRANSPORTS_PROTOCOL,
    TransportsResponse,
)
from datatransfer.types import PeerID
from transport.libp2p.host import close_stream, libp2p_id, reset_stream

__all__ = ["query_ask", "query_transports", "serve_query", "serve_transports",
           "stop_transports"]

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


async def _read_all(stream: Any, limit: int) -> bytes:
    """What ``stream`` sends until it closes (at most ``limit`` + 1 bytes)."""
    data = bytearray()
    while len(data) <= limit:
        try:
            chunk = await stream.read(limit + 1 - len(data))
        except StreamEOF:
            break
        if not chunk:
            break
        data += chunk
    return bytes(data)


def serve_query(host: Any, answer: Callable[[Query], QueryResponse]) -> None:
    """Answer retrieval queries (``/fil/retrieval/qry/1.0.0``) on ``host``
    with ``answer(query)``."""

    async def handle(stream: Any) -> None:
        try:
            with anyio.fail_after(WRITE_TIMEOUT):
                query = Query.decode(await _read_one(stream))
                await stream.write(answer(query).encode())
        except Exception as exc:  # noqa: BLE001 - a bad query, a client gone
            log.info("retrieval query: no answer sent: %s", exc)
            await reset_stream(stream)
            return
        await close_stream(stream)

    host.set_stream_handler(QUERY_PROTOCOL, handle)


async def _read_one(stream: Any) -> bytes:
    """One DAG-CBOR value from ``stream``, read until it decodes (the client
    keeps its side open for the answer, as go-fil-markets' does)."""
    data = bytearray()
    while len(data) <= MAX_MESSAGE:
        try:
            chunk = await stream.read(MAX_MESSAGE + 1 - len(data))
        except StreamEOF:
            break
        if not chunk:
            break
        data += chunk
        try:
            Query.decode(bytes(data))
        except ValueError:
            continue
        return bytes(data)
    return bytes(data)


async def query_ask(host: Any, peer: PeerID, query: Query) -> QueryResponse:
    """Ask ``peer`` (connected) for its ask on ``query``. Raises
    :class:`TimeoutError` when no answer comes within :data:`READ_TIMEOUT`,
    :class:`~datatransfer.markets.retrieval.filecoin.RetrievalTypeError`
    for a malformed one, libp2p's errors when no stream opens (a node that
    does not serve the query)."""
    stream = await host.new_stream(libp2p_id(peer), [QUERY_PROTOCOL])
    try:
        with anyio.fail_after(READ_TIMEOUT):
            await stream.write(query.encode())
            data = await _read_all(stream, MAX_MESSAGE)
    finally:
        await close_stream(stream)
    return QueryResponse.decode(data)
