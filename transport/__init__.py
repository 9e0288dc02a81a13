"""Transports: the interface the Manager drives, and its implementations.

``transport.graphsync`` is the graphsync engine every node runs;
``transport.libp2p`` carries it over libp2p, ``transport.inmem`` over an
in-memory network with fault injection (for tests).
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
