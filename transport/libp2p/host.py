"""The libp2p host: identity, construction, addresses, connecting.

The host speaks what a Go Filecoin node speaks by default: TCP, secured with
Noise, multiplexed with Yamux. Nothing else is offered (in particular no
plaintext "security"), so a connection is either Noise+Yamux or refused.

py-libp2p runs on trio only; everything here must run under the trio backend
(``anyio.run(..., backend="trio")`` or ``trio.run``).

Identity: :func:`load_or_create_identity` keeps one Ed25519 key in the node's
home (``identity.key``, mode 0600, libp2p's protobuf private-key encoding, the
same bytes go-libp2p's ``crypto.MarshalPrivateKey`` produces), so a node keeps
its peer id across restarts.

Addresses: a *peer address* is a multiaddr ending in ``/p2p/<peer id>``, e.g.
``/ip4/127.0.0.1/tcp/4001/p2p/12D3KooW...``: what :func:`peer_addrs` prints and
:func:`parse_peer_addr` / :func:`connect` accept.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import stat
import tempfile
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import multiaddr
from libp2p import new_swarm
from libp2p.abc import IHost
from libp2p.crypto.ed25519 import create_new_key_pair as _new_ed25519_key_pair
from libp2p.crypto.keys import KeyPair
from libp2p.crypto.serialization import deserialize_private_key
from libp2p.crypto.x25519 import create_new_key_pair as _new_x25519_key_pair
from libp2p.host.basic_host import BasicHost
from libp2p.network.auto_connector import AutoConnector
from libp2p.network.config import ConnectionConfig, RetryConfig
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo, info_from_p2p_addr
from libp2p.peer.peerstore import PERMANENT_ADDR_TTL, PeerStore
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux

from datatransfer.types import PeerID
from transport.libp2p.admission import AdmissionGuard, AdmissionPolicy, GuardedTCP

log = logging.getLogger(__name__)

#: File name of the node's private key inside its home directory.
IDENTITY_FILE = "identity.key"

#: Listen address used when none is given: every IPv4 interface, a port the OS picks.
DEFAULT_LISTEN = "/ip4/0.0.0.0/tcp/0"

__all__ = [
    "DEFAULT_LISTEN",
    "IDENTITY_FILE",
    "IdentityError",
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
    "reset_stream",
]


class IdentityError(Exception):
    """The identity file exists but cannot be used (corrupt or unreadable)."""


# -- identity ------------------------------------------------------------------------


def load_or_create_identity(home: str | os.PathLike[str]) -> KeyPair:
    """The node's key pair, read from ``home/identity.key``; created on first use.

    A new key is Ed25519, written atomically (temporary file + rename) with
    mode 0600. An existing file that others can read is narrowed to 0600 (and
    a warning logged). Raises :class:`IdentityError` if the file exists but is
    not a valid libp2p private key: a broken identity is never silently
    replaced, since that would change the node's peer id.
    """
    home = Path(home)
    path = home / IDENTITY_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return _create_identity(path)
    except OSError as exc:
        raise IdentityError(f"cannot read identity {path}: {exc}") from exc
    mode = stat.S_IMODE(path.stat().st_mode)
    if os.name != "nt" and mode & 0o077:
        log.warning("identity %s had mode %o; narrowing to 0600", path, mode)
        os.chmod(path, 0o600)
    try:
        private_key = deserialize_private_key(data)
        public_key = private_key.get_public_key()
    except Exception as exc:  # the library raises assorted errors for bad bytes
        raise IdentityError(f"identity {path} is not a valid libp2p private key: {exc}") from exc
    return KeyPair(private_key, public_key)


def _create_identity(path: Path) -> KeyPair:
    path.parent.mkdir(parents=True, exist_ok=True)
    key_pair = _new_ed25519_key_pair()
    data = key_pair.private_key.serialize()
    fd, tmp = tempfile.mkstemp(prefix=".identity-", dir=path.parent)  # created 0600
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        try:
            # Another process may have won the race; keep the first identity.
            os.link(tmp, path)
        except FileExistsError:
            return load_or_create_identity(path.parent)
        except OSError:
            os.replace(tmp, path)  # file systems without hard links
            tmp = ""
    finally:
        if tmp:
            Path(tmp).unlink(missing_ok=True)
    log.info("created identity %s (peer id %s)", path, ID.from_pubkey(key_pair.public_key))
    return key_pair


def peer_id_of(key_pair_or_host: KeyPair | IHost) -> PeerID:
    """The peer id of a key pair or a host."""
    if isinstance(key_pair_or_host, KeyPair):
        return PeerID(ID.from_pubkey(key_pair_or_host.public_key).to_bytes())
    return PeerID(key_pair_or_host.get_id().to_bytes())


def libp2p_id(peer: PeerID | ID | bytes) -> ID:
    """Our :class:`~datatransfer.types.PeerID` (raw peer-id bytes) as libp2p's ``ID``."""
    if isinstance(peer, ID):
        return peer
    return ID(bytes(peer))


# -- the host ------------------------------------------------------------------------


def forget_failed_dials(host: IHost, peer: PeerID | ID | bytes) -> None:
    """Let the next dial of ``peer`` go out now. py-libp2p refuses to re-dial
    a peer for 60 s after a failed dial (its negative cache); our callers
    have their own retry and backoff, and a peer restarted on the same
    address must be reachable at once."""
    unblock = getattr(host.get_network(), "unblock_peer", None)
    if unblock is not None:
        unblock(libp2p_id(peer))


def make_host(
    key_pair: KeyPair,
    listen: Sequence[str] = (DEFAULT_LISTEN,),
    *,
    dial_retries: int = 0,
    admission: AdmissionPolicy | None = None,
) -> IHost:
    """A libp2p host with ``key_pair``'s identity: TCP + Noise + Yamux only.

    The host is not running yet; run it with ``async with host.run(addrs)`` or
    use :func:`open_host`. ``listen`` only selects the transports here (TCP);
    pass the same addresses to ``run``.

    ``dial_retries``: how many times the swarm itself re-dials an address that
    failed. 0 by default: callers that retry (the data-transfer network) run
    their own backoff, and the swarm's own retries would multiply with them.

    ``admission``: the limits on inbound connections (handshake deadline,
    connections in the handshake overall and per address, a reserve for new
    addresses, established connections per address; see
    :mod:`transport.libp2p.admission`). The host's
    :class:`~transport.libp2p.admission.AdmissionGuard` is its ``admission``
    attribute.
    """
    policy = admission or AdmissionPolicy()
    guard = AdmissionGuard(policy)
    listen_addrs = [multiaddr.Multiaddr(a) for a in listen]
    noise = NoiseTransport(key_pair, noise_privkey=_new_x25519_key_pair().private_key)
    swarm = new_swarm(
        key_pair=key_pair,
        sec_opt={NOISE_PROTOCOL_ID: noise},
        muxer_opt={YAMUX_PROTOCOL_ID: Yamux},
        listen_addrs=listen_addrs,
        transports=[GuardedTCP(guard)],
        peerstore_opt=_Peerstore(),
        retry_config=RetryConfig(max_retries=dial_retries),
        connection_config=ConnectionConfig(
            max_connections=policy.max_connections,
            # no pruning below the cap (it would cut transfers in progress)
            high_watermark=policy.max_connections,
            low_watermark=0,
            min_connections=0,
            inbound_upgrade_timeout=policy.handshake_timeout,
        ),
    )
    # py-libp2p re-dials the peers it knows whenever it holds fewer
    # connections than its watermarks ask for: a server would dial every
    # client that ever came by, again and again after it left. Peers connect
    # to a data-transfer node, and the node dials only when it has something
    # to send (as go-libp2p's connection manager, which never dials).
    swarm.auto_connector = _NoAutoDial(swarm)
    swarm.register_notifee(guard)
    host = BasicHost(network=swarm)
    host.admission = guard  # type: ignore[attr-defined]
    return host


class _Peerstore(PeerStore):
    """py-libp2p's peerstore, keeping the addresses this node was given for
    a peer (:func:`add_peer_addrs`, :func:`connect`) when the peer's own
    word replaces the others: identify, on every new connection, clears a
    peer's addresses and stores those it announces, which are not always
    where it can be reached (a relay, a NAT's forwarded port, a name)."""

    def __init__(self) -> None:
        super().__init__()
        self.given: dict[ID, list[multiaddr.Multiaddr]] = {}

    def give(self, peer_id: ID, addrs: Sequence[multiaddr.Multiaddr]) -> None:
        """Keep ``addrs`` for ``peer_id``, with no expiry."""
        kept = self.given.setdefault(peer_id, [])
        kept.extend(a for a in addrs if a not in kept)
        self.add_addrs(peer_id, addrs, PERMANENT_ADDR_TTL)

    def clear_addrs(self, peer_id: ID) -> None:
        super().clear_addrs(peer_id)
        self._restore(peer_id)

    def consume_peer_record(self, envelope: Any, ttl: int) -> bool:
        accepted = super().consume_peer_record(envelope, ttl)
        if accepted:
            self._restore(envelope.record().peer_id)
        return accepted

    def _restore(self, peer_id: ID) -> None:
        kept = self.given.get(peer_id)
        if kept:
            self.add_addrs(peer_id, kept, PERMANENT_ADDR_TTL)


class _NoAutoDial(AutoConnector):
    """py-libp2p's auto-connector, never dialing (see :func:`make_host`)."""

    async def maybe_connect(self) -> None:
        return None

    async def run_background_task(self, nursery: Any) -> None:
        return None


#: Longest closing a host may take when its block is left (see :func:`close_host`).
CLOSE_TIMEOUT = 3.0
#: How long of that the host may spend closing its connections gracefully.
GRACEFUL_CLOSE = 1.5


class PortInUse(OSError):
    """A listen address's TCP port is taken by another listener."""


def check_ports_free(listen: Sequence[str]) -> None:
    """Refuse (:class:`PortInUse`) a listen multiaddr whose TCP port another
    listener holds. py-libp2p listens with ``SO_REUSEPORT`` (for hole
    punching), so a second node on a taken port would bind anyway and the
    kernel would split the connections between the two; this probe binds
    without it. Port 0 (any) is not checked."""
    for addr in listen:
        ma = multiaddr.Multiaddr(addr)
        protocols = {p.name for p in ma.protocols()}
        if "tcp" not in protocols:
            continue
        port = int(ma.value_for_protocol("tcp"))
        if port == 0:
            continue
        family, ip = ((socket.AF_INET6, ma.value_for_protocol("ip6")) if "ip6" in protocols
                      else (socket.AF_INET, ma.value_for_protocol("ip4")
                            if "ip4" in protocols else "0.0.0.0"))
        probe = socket.socket(family, socket.SOCK_STREAM)
        try:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((ip, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUse(errno.EADDRINUSE,
                                f"cannot listen on {addr}: port {port} is in use "
                                "(another node or program listens there)") from None
            raise
        finally:
            probe.close()


@asynccontextmanager
async def open_host(
    key_pair: KeyPair,
    listen: Sequence[str] = (DEFAULT_LISTEN,),
    *,
    dial_retries: int = 0,
    admission: AdmissionPolicy | None = None,
) -> AsyncIterator[IHost]:
    """Build a host (:func:`make_host`) and run it, listening on ``listen``,
    for the duration of the block; it is closed on exit, within
    :data:`CLOSE_TIMEOUT` whatever the peers do (see :func:`close_host`)."""
    host = make_host(key_pair, listen, dial_retries=dial_retries, admission=admission)
    async with host.run([multiaddr.Multiaddr(a) for a in listen]):
        try:
            yield host
        finally:
            await close_host(host)


async def close_host(host: IHost) -> None:
    """Stop listening, close every connection, close the host: shielded from
    cancellation and bounded by :data:`CLOSE_TIMEOUT`.

    The listeners are closed first (nothing new comes in). Then the host
    closes gracefully, for at most :data:`GRACEFUL_CLOSE`: each connection
    (all at once: py-libp2p's own close takes them in turn, 0.2 s each)
    says go-away, so what was written last (a cancel sent on the way out)
    still reaches the peer. A graceful close writes, though, and a write to
    a peer that stopped reading never ends. So whatever is still open then
    is cut: each connection's socket is closed under its muxer, which fails
    any write in flight at once. (Leaving the host's block without closing
    it would even leave the listener open.)
    """
    network = host.get_network()
    with anyio.move_on_after(CLOSE_TIMEOUT, shield=True):
        for listener in list(getattr(network, "listeners", {}).values()):
            try:
                await listener.close()
            except Exception as exc:  # noqa: BLE001
                log.debug("closing a listener: %s", exc)
        with anyio.move_on_after(GRACEFUL_CLOSE):
            try:
                # py-libp2p closes the connections one after another, each
                # pausing 0.2 s for its tasks: all at once first
                async with anyio.create_task_group() as tg:
                    for conns in list(getattr(network, "connections", {}).values()):
                        for conn in list(conns):
                            tg.start_soon(_close_connection, conn)
                await host.close()
                return
            except Exception as exc:  # noqa: BLE001
                log.debug("closing the host: %s", exc)
        for conns in list(getattr(network, "connections", {}).values()):
            for conn in list(conns):
                secured = getattr(getattr(conn, "muxed_conn", None), "secured_conn", None)
                if secured is None:
                    continue
                try:
                    await secured.close()
                except Exception as exc:  # noqa: BLE001 - already closed
                    log.debug("closing a connection: %s", exc)


async def _close_connection(conn: Any) -> None:
    try:
        await conn.close()
    except Exception as exc:  # noqa: BLE001 - py-libp2p logs and goes on, too
        log.debug("closing a connection: %s", exc)


# -- streams -------------------------------------------------------------------------

#: Longest a stream reset or close may take. Both queue behind whatever is
#: being written on the connection, and a peer that stops reading holds such
#: a write forever: unbounded, one stuck peer could keep a node from ever
#: shutting down.
RESET_TIMEOUT = 2.0


async def reset_stream(stream: Any) -> None:
    """Reset ``stream``: shielded from cancellation (a stream left half open
    leaks on both sides), but bounded by :data:`RESET_TIMEOUT`. Never raises."""
    with anyio.move_on_after(RESET_TIMEOUT, shield=True):
        try:
            await stream.reset()
        except Exception as exc:  # noqa: BLE001 - already reset, connection gone
            log.debug("stream reset failed: %s", exc)


async def close_stream(stream: Any) -> None:
    """Close ``stream`` (reset it if closing fails), bounded as :func:`reset_stream`."""
    with anyio.move_on_after(RESET_TIMEOUT, shield=True):
        try:
            await stream.close()
            return
        except Exception:  # noqa: BLE001
            pass
    await reset_stream(stream)


# -- addresses -----------------------------------------------------------------------


def format_peer_addr(addr: str | multiaddr.Multiaddr, peer: PeerID | ID) -> str:
    """``addr`` with ``/p2p/<peer>`` appended (replacing any ``/p2p`` part it had)."""
    ma = multiaddr.Multiaddr(str(addr))
    pid = libp2p_id(peer)
    try:
        existing = ma.value_for_protocol("p2p")
    except Exception:  # ProtocolLookupError when absent
        existing = None
    if existing:
        ma = ma.decapsulate(multiaddr.Multiaddr(f"/p2p/{existing}"))
    return str(ma.encapsulate(multiaddr.Multiaddr(f"/p2p/{pid.to_base58()}")))


def peer_addrs(host: IHost) -> list[str]:
    """The addresses a peer can dial this (running) host at, each ending in
    ``/p2p/<peer id>``. Listening on 0.0.0.0 shows the bound port but the
    wildcard address; use a concrete interface address to hand out."""
    return [str(a) for a in host.get_addrs()]


def parse_peer_addr(text: str) -> tuple[PeerID, list[multiaddr.Multiaddr]]:
    """Split a peer address into (peer id, [transport address]).

    A bare ``/p2p/<peer id>`` yields no transport address. Raises
    :class:`ValueError` if ``text`` is not a multiaddr or lacks the final
    ``/p2p/<peer id>`` part.
    """
    try:
        info = info_from_p2p_addr(multiaddr.Multiaddr(text))
    except ValueError:
        raise
    except Exception as exc:  # multiaddr parse errors are not all ValueErrors
        raise ValueError(f"not a peer multiaddr: {text!r}: {exc}") from exc
    addrs = [a for a in info.addrs if str(a) not in ("", "/")]
    return PeerID(info.peer_id.to_bytes()), addrs


def add_peer_addrs(
    host: IHost, peer: PeerID | ID, addrs: Iterable[str | multiaddr.Multiaddr]
) -> None:
    """Remember ``addrs`` for ``peer`` (without dialing), so a later stream to
    the peer can dial it. The addresses do not expire, and on a host of
    :func:`make_host` the peer's identify does not replace them."""
    mas = [multiaddr.Multiaddr(str(a)) for a in addrs]
    if mas:
        peerstore = host.get_peerstore()
        if isinstance(peerstore, _Peerstore):
            peerstore.give(libp2p_id(peer), mas)
        else:
            peerstore.add_addrs(libp2p_id(peer), mas, PERMANENT_ADDR_TTL)


async def connect(host: IHost, addr: str | PeerInfo) -> PeerID:
    """Dial a peer address (or ``PeerInfo``) unless already connected; return
    its peer id. The addresses are kept (no expiry) for later re-dials.

    Raises :class:`ValueError` for a malformed address and libp2p's
    ``SwarmException`` when the dial fails.
    """
    if isinstance(addr, PeerInfo):
        info = addr
    else:
        peer, addrs = parse_peer_addr(addr)
        info = PeerInfo(libp2p_id(peer), addrs)
    network = host.get_network()
    # Let an explicit connect re-dial a peer the swarm recently marked as failed.
    unblock = getattr(network, "unblock_peer", None)
    if unblock is not None:
        unblock(info.peer_id)
    if len(info.addrs) == 1 and not network.get_connections(info.peer_id):
        # The one address given, dialed directly: the swarm's dial of a peer
        # starts each address with a 250 ms head start over the next one
        # (happy eyeballs) and waits it out even after the last address has
        # connected, a quarter of a second added to every first contact.
        await network.dial_addr(info.addrs[0], info.peer_id)
    await host.connect(info)  # connected by now: keeps the addresses, waits until ready
    # host.connect stores the addresses with a 2-minute TTL; keep them.
    add_peer_addrs(host, info.peer_id, info.addrs)
    return PeerID(info.peer_id.to_bytes())
