"""The retrieval transports query, ``/fil/retrieval/transports/1.0.0``.

A retrieval client (Lassie) opens a stream on this protocol and reads one
DAG-CBOR value: which retrieval protocols the provider serves, and where.
The provider writes it and closes the stream; the client sends nothing.
The schema (Lassie v0.25.0 ``pkg/internal/lp2ptransports``, boost
``retrievalmarket/types``)::

    type Multiaddr bytes
    type Protocol struct { Name String  Addresses [Multiaddr] }
    type QueryResponse struct { Protocols [Protocol] }

Names Lassie knows: ``"libp2p"`` (graphsync + data transfer: what this
node serves), ``"http"``, ``"bitswap"`` (others are skipped). Boost gives
its libp2p addresses with ``/p2p/<peer id>``, and so do we: Lassie then
dials exactly those. Encoding is byte-identical to Go's binding
(tests/data/transports-vectors.json, from tests/interop/transportsvector);
decoding is as strict as Go's and, on purpose, a little more (map keys
must be in canonical order, as DAG-CBOR says).

No I/O here: :mod:`datatransfer.markets.retrieval.network` serves it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import multiaddr

from datatransfer.ipld import dagcbor
from datatransfer.markets.retrieval.filecoin import RetrievalTypeError, kind_name, read_map

__all__ = [
    "LIBP2P",
    "TRANSPORTS_PROTOCOL",
    "TransportProtocol",
    "TransportsResponse",
]

#: The libp2p protocol id of the query.
TRANSPORTS_PROTOCOL = "/fil/retrieval/transports/1.0.0"
#: The protocol name of graphsync retrieval over libp2p (Lassie: GraphsyncFilecoinV1).
LIBP2P = "libp2p"
#: Most bytes a response may take (Go reads one value from the stream; a
#: provider lists a few addresses).
MAX_RESPONSE = 64 * 1024


def _addr_bytes(addr: str, where: str) -> bytes:
    try:
        data = multiaddr.Multiaddr(addr).to_bytes()
    except Exception as exc:  # noqa: BLE001 - py-multiaddr raises many types
        raise RetrievalTypeError(where, f"not a multiaddr: {addr!r} ({exc})") from None
    if not data:
        raise RetrievalTypeError(where, "empty multiaddr")
    return data


def _addr_text(data: Any, where: str) -> str:
    """A multiaddr's text from its bytes; refused unless they are exactly
    a multiaddr's (Go's ``NewMultiaddrBytes`` rule; py-multiaddr alone
    takes an empty one)."""
    if type(data) is not bytes:
        raise RetrievalTypeError(where, f"expected bytes, got {kind_name(data)}")
    if not data:
        raise RetrievalTypeError(where, "empty multiaddr")
    try:
        text = str(multiaddr.Multiaddr(data))
        same = multiaddr.Multiaddr(text).to_bytes() == data
    except Exception as exc:  # noqa: BLE001
        raise RetrievalTypeError(where, f"not a multiaddr: {exc}") from None
    if not same:
        raise RetrievalTypeError(where, f"not a multiaddr in its binary form: {data.hex()}")
    return text


@dataclass(frozen=True, slots=True)
class TransportProtocol:
    """One protocol a provider serves: its name and the multiaddrs (text)
    to reach it at."""

    name: str
    addresses: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise RetrievalTypeError("Protocol.Name",
                                     f"expected a string, got {type(self.name).__name__}")
        object.__setattr__(self, "addresses", tuple(str(a) for a in self.addresses))
        for i, a in enumerate(self.addresses):
            _addr_bytes(a, f"Protocol.Addresses[{i}]")

    def to_node(self) -> dict[str, Any]:
        return {"Name": self.name,
                "Addresses": [_addr_bytes(a, "Protocol.Addresses") for a in self.addresses]}

    @classmethod
    def from_node(cls, node: Any, where: str = "Protocol") -> TransportProtocol:
        m = read_map(node, where, ("Name", "Addresses"))
        name = m["Name"]
        if type(name) is not str:
            raise RetrievalTypeError(f"{where}.Name", f"expected a string, got {kind_name(name)}")
        addrs = m["Addresses"]
        if not isinstance(addrs, list):
            raise RetrievalTypeError(f"{where}.Addresses", f"expected a list, got {kind_name(addrs)}")
        return cls(name, tuple(_addr_text(a, f"{where}.Addresses[{i}]")
                               for i, a in enumerate(addrs)))


@dataclass(frozen=True, slots=True)
class TransportsResponse:
    """The answer to a transports query (Go: ``QueryResponse``)."""

    protocols: tuple[TransportProtocol, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "protocols", tuple(self.protocols))
        for p in self.protocols:
            if not isinstance(p, TransportProtocol):
                raise RetrievalTypeError("QueryResponse.Protocols",
                                         f"expected TransportProtocol, got {type(p).__name__}")

    @classmethod
    def libp2p(cls, addrs: Iterable[str]) -> TransportsResponse:
        """What a node serving graphsync retrievals at ``addrs`` answers."""
        return cls((TransportProtocol(LIBP2P, tuple(addrs)),))

    def to_node(self) -> dict[str, Any]:
        return {"Protocols": [p.to_node() for p in self.protocols]}

    def encode(self) -> bytes:
        """The DAG-CBOR bytes written on the stream (Go's, byte for byte)."""
        return dagcbor.encode(self.to_node())

    @classmethod
    def from_node(cls, node: Any) -> TransportsResponse:
        m = read_map(node, "QueryResponse", ("Protocols",))
        protocols = m["Protocols"]
        if not isinstance(protocols, list):
            raise RetrievalTypeError("QueryResponse.Protocols",
                                     f"expected a list, got {kind_name(protocols)}")
        return cls(tuple(TransportProtocol.from_node(p, f"QueryResponse.Protocols[{i}]")
                         for i, p in enumerate(protocols)))

    @classmethod
    def decode(cls, data: bytes) -> TransportsResponse:
        """Read a response; :class:`RetrievalTypeError` names what is wrong."""
        if len(data) > MAX_RESPONSE:
            raise RetrievalTypeError("QueryResponse", f"{len(data)} bytes, more than {MAX_RESPONSE}")
        try:
            node = dagcbor.decode(data)
        except dagcbor.DagCborError as exc:
            raise RetrievalTypeError("QueryResponse", f"not DAG-CBOR: {exc}") from None
        return cls.from_node(node)
