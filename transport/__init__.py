"""Transports: the interface the Manager drives, and its implementations.

``transport.inmem`` is the in-memory network for tests and fault injection;
the libp2p/graphsync transport lives beside it.
"""

from transport.base import (
    PROCEED,
    Decision,
    PeerUnreachable,
    Transport,
    TransportError,
    TransportEvents,
    UnknownTransportChannel,
)

__all__ = [
    "PROCEED",
    "Decision",
    "PeerUnreachable",
    "Transport",
    "TransportError",
    "TransportEvents",
    "UnknownTransportChannel",
]
