"""The real network: a py-libp2p host and the data-transfer message protocol.

* :mod:`transport.libp2p.host`: the node's persistent identity, a host that
  speaks TCP + Noise + Yamux (what Go nodes use), peer addresses, connecting.
* :mod:`transport.libp2p.dtnet`: :class:`DataTransferNetwork`, data-transfer
  messages on ``/fil/datatransfer/1.2.0`` (one stream kept per peer; Go's
  reader, like ours, reads messages from a stream until it ends).
* :mod:`transport.libp2p.transport`: :class:`Libp2pTransport`, the Manager's
  transport: graphsync 2.0.0 plus the message protocol over one host.
* :mod:`transport.libp2p.admission`: which inbound connections the host
  accepts (handshake deadline, per-address caps, a reserve for newcomers).

py-libp2p is trio-based: run this under the trio backend.
"""

from transport.libp2p.admission import AdmissionGuard, AdmissionPolicy
from transport.libp2p.dtnet import DataTransferNetwork, MessageHandler, NetworkStats, RetryPolicy
from transport.libp2p.host import (
    DEFAULT_LISTEN,
    IDENTITY_FILE,
    IdentityError,
    add_peer_addrs,
    close_host,
    connect,
    format_peer_addr,
    libp2p_id,
    load_or_create_identity,
    make_host,
    open_host,
    parse_peer_addr,
    peer_addrs,
    peer_id_of,
)
from transport.libp2p.transport import GRAPHSYNC_PROTOCOL, Libp2pTransport

__all__ = [
    "DEFAULT_LISTEN",
    "AdmissionGuard",
    "AdmissionPolicy",
    "GRAPHSYNC_PROTOCOL",
    "Libp2pTransport",
    "IDENTITY_FILE",
    "DataTransferNetwork",
    "IdentityError",
    "MessageHandler",
    "NetworkStats",
    "RetryPolicy",
    "add_peer_addrs",
    "close_host",
    "connect",
    "format_peer_addr",
    "libp2p_id",
    "load_or_create_identity",
    "make_host",
    "open_host",
    "parse_peer_addr",
    "peer_addrs",
    "peer_id_of",
]
