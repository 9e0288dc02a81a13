"""A data-transfer node built from its home directory.

:class:`Node` assembles everything one node needs, all kept in its home
(:func:`datatransfer.home.resolve_home`):

* its identity (``identity.key``): the same peer id across restarts,
* its block store (``blocks.sqlite``, the index, and ``blocks.sqlite.pack``,
  the blocks' bytes) and channel store (``channels.sqlite``), both SQLite in
  WAL mode, so other processes (``datatransfer add``/``cat``/
  ``ls``) may use the home while the node runs,
* its address book (``peers.json``, :mod:`datatransfer.peers`): the
  addresses of the peers it dialled, loaded into the libp2p peerstore at
  start, so the channels it restarts can reach their peers,
* a libp2p host listening on the given multiaddrs, the
  :class:`~transport.libp2p.transport.Libp2pTransport` over it, and the
  :class:`~datatransfer.manager.Manager`.

Use it as ``async with Node(home) as node:`` under the **trio** backend
(py-libp2p is trio-only): run the code that uses it with ``trio.run(main)``
or ``anyio.run(main, backend="trio")``. Entered under any other event loop
(asyncio) it raises :class:`~datatransfer.errors.TrioRequired` at once.
Its public calls check their arguments' types first, as the Manager's do
(a TypeError naming the argument).

Vouchers. A request carries a voucher, and the responder accepts it only if
it has a validator registered for the voucher's type. The command line uses
:class:`OpenVoucher` (type ``"py-data-transfer/open"``: "no deal, just move
the data"); a node accepts it with :class:`AcceptAll` unless told otherwise
(``open_validator=None`` refuses it). A real market registers its own voucher
types, validators, revalidators and voucher-result types in ``setup``, a
function ``Node`` calls with the :class:`~datatransfer.manager.Manager` just
before the Manager starts serving::

    def market(manager: Manager) -> None:
        manager.register_voucher_type(DealProposal, DealValidator())
        manager.register_revalidator(Payment, PaymentRevalidator())
        manager.register_voucher_result_type(DealResponse)

    async with Node(home, open_validator=None, setup=market) as node: ...

Registering on ``node.manager`` after ``async with`` is too late: from its
first moment the Manager answers requests and restarts the channels in its
store, and a voucher type it does not know yet is refused (a restarted
paid retrieval would fail for want of its revalidator).

Metrics. :class:`NodeMetrics` turns the Manager's events into Prometheus
metrics (channels by status, bytes and blocks sent and received, restarts,
errors, active graphsync requests); :meth:`Node.serve_metrics` exposes them
over HTTP on 127.0.0.1 only.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import multiaddr

from datatransfer.config import ManagerConfig
from datatransfer.core.channels import selector_node
from datatransfer.errors import TrioRequired
from datatransfer.home import CHANNELS_FILE, HomeLock, channels_path, open_blockstore, resolve_home
from datatransfer.ipld import dagpb
from datatransfer.ipld.cid import CID, DAG_PB
from datatransfer.ipld.selector import ALL_SELECTOR_NODE
from datatransfer.manager import Manager, require_cid, require_voucher
from datatransfer.peers import AddressBook
from datatransfer.store import ChannelStore, SqliteChannelStore
from datatransfer.types import ChannelID, ChannelState, Event, PeerID
from registry import Voucher
from statemachine import FINAL_STATUSES, EventCode, Status

log = logging.getLogger("datatransfer.node")

#: Where a node listens when nothing is said: loopback, a port the OS picks.
LOCAL_LISTEN = "/ip4/127.0.0.1/tcp/0"

__all__ = [
    "CHANNELS_FILE",
    "LOCAL_LISTEN",
    "AcceptAll",
    "Node",
    "NodeMetrics",
    "OpenVoucher",
    "channels_path",
    "dag_size",
    "describe_dial_failure",
    "dialable_addr",
]


@dataclass(frozen=True)
class OpenVoucher(Voucher):
    """The command line's voucher: asks for a transfer with no deal attached.

    ``note`` is free text shown to the responder's validator. Serving nodes
    accept it by default (:class:`AcceptAll`); a market replaces it with its
    own voucher type (deal proposal, payment) and validator.
    """

    type_id = "py-data-transfer/open"
    note: str = ""

    def to_node(self) -> Any:
        return {"Note": self.note}

    @classmethod
    def from_node(cls, node: Any) -> OpenVoucher:
        if not isinstance(node, dict) or not isinstance(node.get("Note", ""), str):
            raise ValueError(f"bad open voucher {node!r}")
        return cls(node.get("Note", ""))


class AcceptAll:
    """A validator that accepts every push and pull request (no result)."""

    async def validate_push(self, is_restart, chid, sender, voucher, root, selector):  # type: ignore[no-untyped-def]
        return None

    async def validate_pull(self, is_restart, chid, receiver, voucher, root, selector):  # type: ignore[no-untyped-def]
        return None


_DEFAULT = object()


def _require_trio(what: str) -> None:
    """Raise :class:`TrioRequired` unless running under trio (py-libp2p's
    loop); under asyncio it would fail deep inside libp2p instead."""
    import trio

    try:
        trio.lowlevel.current_task()
    except RuntimeError:
        raise TrioRequired(
            f"{what} needs the trio event loop (py-libp2p runs on trio only); "
            "run it with trio.run(main) or anyio.run(main, backend=\"trio\")") from None


def _require_addr(addr: object) -> str:
    """A peer address as text; TypeError naming ``addr`` otherwise."""
    if isinstance(addr, multiaddr.Multiaddr):
        return str(addr)
    if isinstance(addr, str):
        return addr
    raise TypeError(f"addr must be a multiaddr string such as "
                    f"'/ip4/127.0.0.1/tcp/4001/p2p/12D3Koo...', not {type(addr).__name__}")


def dag_size(root: CID, blockstore: Any) -> int | None:
    """Bytes of every block of the DAG under ``root`` as the root's links
    declare them (root block + the links' ``Tsize``), or None when the root
    is not in ``blockstore`` or does not say."""
    try:
        if not blockstore.has(root):
            return None
        data = blockstore.get(root)
    except Exception:  # noqa: BLE001 - a store error just means "unknown"
        return None
    if root.codec != DAG_PB:
        return len(data)
    try:
        links = dagpb.decode(data)["Links"]
    except Exception:  # noqa: BLE001
        return None
    total = len(data)
    for link in links:
        tsize = link.get("Tsize")
        if tsize is None:
            return None
        total += tsize
    return total


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and every exception behind it (causes, contexts, grouped ones)."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo.extend(getattr(e, "exceptions", None) or ())
        todo.extend(getattr(e, "errors", None) or ())
        todo.extend((e.__cause__, e.__context__))


_OTHER_ID = re.compile(r"(?:remote_peer_id_from_pubkey=|Peer ID mismatch: expected \S+, got )"
                       r"(\w+)")


def describe_dial_failure(addr: str, exc: BaseException) -> str:
    """One line saying why dialing ``addr`` (ending in /p2p/<peer id>)
    failed, in words people use rather than py-libp2p's."""
    peer = addr.rsplit("/p2p/", 1)[-1]
    causes = list(_causes(exc))
    for e in causes:
        m = _OTHER_ID.search(str(e))
        if m and m.group(1) != peer:
            return f"peer at {addr} is {m.group(1)}, not {peer}"
    for e in causes:
        if isinstance(e, TimeoutError) or type(e).__name__ == "TooSlowError":
            return f"cannot reach {addr}: no answer in time"
    for e in causes:
        if isinstance(e, OSError) and (e.errno or e.strerror):
            why = os.strerror(e.errno) if e.errno else str(e.strerror)
            return f"cannot reach {addr}: {why.lower()}"
    for e in causes:
        if "handshake" in str(e).lower() or "security" in str(e).lower():
            return f"cannot reach {addr}: the secure handshake failed"
    return f"cannot reach {addr}: the connection failed"


def _outbound_ipv4() -> str:
    """This machine's address on its default route (no packet is sent);
    127.0.0.1 when there is none."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: routing lookup only
            return s.getsockname()[0]
    except OSError:
        return "127.0.0.1"


def dialable_addr(addr: str) -> str:
    """``addr`` with a wildcard IP (0.0.0.0 / ::) replaced by one a peer can
    dial: this machine's outbound address (IPv4) or ::1 (IPv6)."""
    parts = str(addr).split("/")
    if len(parts) > 2 and parts[1] == "ip4" and parts[2] == "0.0.0.0":
        parts[2] = _outbound_ipv4()
    elif len(parts) > 2 and parts[1] == "ip6" and parts[2] in ("::", "0:0:0:0:0:0:0:0"):
        parts[2] = "::1"
    return "/".join(parts)


class Node:
    """One data-transfer node: identity, stores, libp2p host, transport and
    Manager, all from ``home`` (see the module docs).

    ``listen``: multiaddrs to listen on (default: loopback, any port).
    ``config``: the Manager's settings. ``open_validator``: the validator of
    :class:`OpenVoucher` requests (default :class:`AcceptAll`; None refuses
    them). ``metrics``: also build a :class:`NodeMetrics`. ``transport_options``
    go to :class:`~transport.libp2p.transport.Libp2pTransport`. ``setup``: called
    with the Manager before it starts serving, to register voucher types,
    validators, revalidators and subscribers (see the module docs); if it
    raises, the node does not start and the exception propagates.
    """

    def __init__(
        self,
        home: str | os.PathLike[str] | None = None,
        *,
        listen: Sequence[str] = (LOCAL_LISTEN,),
        config: ManagerConfig | None = None,
        open_validator: Any = _DEFAULT,
        metrics: bool = False,
        transport_options: dict[str, Any] | None = None,
        setup: Callable[[Manager], None] | None = None,
    ) -> None:
        self.home = resolve_home(home)
        self.listen = tuple(listen)
        self.config = config
        self.open_validator = AcceptAll() if open_validator is _DEFAULT else open_validator
        self.want_metrics = metrics
        self.transport_options = dict(transport_options or {})
        self.setup = setup
        self.blockstore: Any = None
        self.channel_store: ChannelStore | None = None
        self.host: Any = None
        self.transport: Any = None
        self.manager: Manager | None = None
        self.metrics: NodeMetrics | None = None
        self.address_book: AddressBook | None = None
        self._stack: AsyncExitStack | None = None
        self._metrics_server: Any = None

    # -- lifecycle -----------------------------------------------------------------

    async def __aenter__(self) -> Node:
        _require_trio("datatransfer.node.Node")
        from datatransfer.markets.retrieval.network import serve_transports
        from transport.libp2p import load_or_create_identity, open_host
        from transport.libp2p.host import check_ports_free
        from transport.libp2p.transport import Libp2pTransport

        stack = AsyncExitStack()
        await stack.__aenter__()
        try:
            stack.enter_context(HomeLock(self.home))  # one node per home
            check_ports_free(self.listen)
            key = load_or_create_identity(self.home)
            self.blockstore = stack.enter_context(open_blockstore(self.home))
            self.channel_store = stack.enter_context(SqliteChannelStore(self.home / CHANNELS_FILE))
            self.host = await stack.enter_async_context(open_host(key, self.listen))
            serve_transports(self.host, self.addrs)  # Lassie asks it first (see markets)
            self._load_address_book()  # before the Manager restarts stored channels
            self.transport = Libp2pTransport(self.host, self.blockstore, **self.transport_options)
            manager = Manager(self.transport, store=self.channel_store, config=self.config)
            if self.open_validator is not None:
                manager.register_voucher_type(OpenVoucher, self.open_validator)
            if self.want_metrics:
                self.metrics = NodeMetrics(manager, self.transport)
            if self.setup is not None:
                self.setup(manager)  # before it serves: nothing may arrive unregistered
            await manager.__aenter__()
            self.manager = manager
            await self._prune_address_book()
            stack.push_async_callback(self._stop_manager)
            stack.callback(self.stop_metrics)
        except BaseException:
            self.manager = None
            await stack.__aexit__(None, None, None)
            raise
        self._stack = stack
        return self

    def _load_address_book(self) -> None:
        """Put the addresses the home's address book keeps into the peerstore
        (a restarted channel dials its peer from there)."""
        from transport.libp2p import add_peer_addrs

        self.address_book = AddressBook.load(self.home)
        me = self.peer_id
        for peer, addrs in self.address_book:
            if peer == me:
                continue
            try:
                add_peer_addrs(self.host, peer, addrs)
            except Exception as exc:  # noqa: BLE001 - a bad entry: skip it, keep the rest
                log.warning("address book: skipped %s's addresses %s: %s", peer, addrs, exc)

    def _live_peers(self) -> set[PeerID]:
        """The other party of every live channel (their addresses are kept)."""
        if self.manager is None:
            return set()
        me = self.peer_id
        return {chid.responder if chid.initiator == me else chid.initiator
                for chid in self.manager.in_progress_channels()}

    async def _prune_address_book(self) -> None:
        book = self.address_book
        if book is not None and book.prune(self._live_peers()):
            await self._save_address_book()

    async def _save_address_book(self) -> None:
        """Write the book in a worker thread (an fsync: milliseconds the
        event loop, moving other channels' data, need not wait)."""
        import anyio.to_thread

        book = self.address_book
        assert book is not None
        try:
            await anyio.to_thread.run_sync(book.write, book.snapshot())
        except OSError as exc:  # the book is a cache: never fail a dial for it
            log.warning("cannot write the address book %s: %s", book.path, exc)

    async def _remember(self, peer: PeerID, addr: str) -> None:
        """Keep the address ``peer`` was just reached at (see :meth:`connect`)."""
        from transport.libp2p import parse_peer_addr

        if self.address_book is None or peer == self.peer_id:
            return
        addrs = [str(a) for a in parse_peer_addr(addr)[1]]
        if addrs:
            self.address_book.record(peer, addrs, keep=self._live_peers)
            await self._save_address_book()

    async def _stop_manager(self) -> None:
        manager, self.manager = self.manager, None
        if manager is not None:
            manager.events.flush(5)
            await manager.__aexit__(None, None, None)
            stats = getattr(self.transport, "stats", None)
            if stats is not None:
                # what moved, copies included: a resumed transfer shows here
                # whether it moved only what was missing
                log.info("block data this run: %d bytes sent, %d bytes received",
                         stats.block_bytes_sent, stats.block_bytes_received)

    async def __aexit__(self, *exc_info: Any) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.__aexit__(*exc_info)

    # -- identity and addresses ------------------------------------------------------

    @property
    def peer_id(self) -> PeerID:
        from transport.libp2p import peer_id_of

        return peer_id_of(self.host)

    def addrs(self) -> list[str]:
        """Every address a peer can dial this node at, ``/p2p/<peer id>``
        included, wildcard IPs replaced by concrete ones; the first is the one
        to hand out."""
        from transport.libp2p import format_peer_addr

        out: list[str] = []
        for a in self.host.get_addrs():
            a = str(a)
            candidates = [dialable_addr(a)]
            if a.startswith("/ip4/0.0.0.0/"):
                candidates.append("/ip4/127.0.0.1/" + a[len("/ip4/0.0.0.0/"):])
            for c in candidates:
                text = format_peer_addr(c, self.peer_id)
                if text not in out:
                    out.append(text)
        return out

    async def connect(self, addr: str) -> PeerID:
        """Dial a peer address (``.../p2p/<peer id>``); return its peer id.
        The address goes into the home's address book once the dial worked,
        so a later process on this home can dial the peer again (restarting
        a channel left live) without being told where it is.
        Raises ValueError for a malformed address, OSError-like errors from
        libp2p when the dial fails."""
        addr = _require_addr(addr)
        self._require_started()
        from transport.libp2p import connect

        multiaddr.Multiaddr(addr)  # raises for garbage before libp2p does
        peer = await connect(self.host, addr)
        await self._remember(peer, addr)
        return peer

    # -- transfers -----------------------------------------------------------------

    def live_channel(self, peer: PeerID, root: CID, selector: Any = ALL_SELECTOR_NODE, *,
                     pull: bool = True) -> ChannelID | None:
        """The newest live channel this node opened with ``peer`` for the same
        root, selector and direction (one an interrupted ``pull`` or ``push``
        left in the home), or None."""
        require_cid(root, "root")
        self._require_started()
        assert self.manager is not None
        want = selector_node(selector)
        for chid, state in sorted(self.manager.in_progress_channels().items(),
                                  key=lambda item: item[0].id, reverse=True):
            if (chid.initiator == self.peer_id and chid.responder == peer
                    and state.is_pull == pull and state.base_cid == root
                    and selector_node(state.selector) == want):
                return chid
        return None

    async def resume(self, addr: str, root: CID, selector: Any = ALL_SELECTOR_NODE, *,
                     pull: bool = True) -> ChannelID | None:
        """Connect to ``addr`` and restart this node's :meth:`live_channel`
        with that peer (a killed process, a server that went away), so only
        what is missing moves; None when there is none (open a new one then)."""
        require_cid(root, "root")
        self._require_started()
        assert self.manager is not None
        peer = await self.connect(addr)
        chid = self.live_channel(peer, root, selector, pull=pull)
        if chid is not None:
            await self.manager.restart_channel(chid)
        return chid

    async def pull(
        self, addr: str, root: CID, selector: Any = ALL_SELECTOR_NODE, voucher: Voucher | None = None
    ) -> ChannelID:
        """Connect to ``addr`` and open a pull of ``root`` (``selector``) with
        ``voucher`` (default an :class:`OpenVoucher`). ``root`` must be a
        :class:`~datatransfer.ipld.cid.CID` (``CID.parse(text)``); wrong types
        raise TypeError naming the argument before anything is dialled."""
        self._check_transfer(addr, root, voucher)
        peer = await self.connect(addr)
        assert self.manager is not None
        return await self.manager.open_pull_channel(peer, voucher or OpenVoucher(), root, selector)

    async def push(
        self, addr: str, root: CID, selector: Any = ALL_SELECTOR_NODE, voucher: Voucher | None = None
    ) -> ChannelID:
        """Connect to ``addr`` and offer it ``root`` (``selector``); arguments
        checked as :meth:`pull` checks them."""
        self._check_transfer(addr, root, voucher)
        peer = await self.connect(addr)
        assert self.manager is not None
        return await self.manager.open_push_channel(peer, voucher or OpenVoucher(), root, selector)

    def _check_transfer(self, addr: object, root: object, voucher: object) -> None:
        """The argument checks of :meth:`pull` and :meth:`push`, before any dial."""
        _require_addr(addr)
        require_cid(root, "root")
        if voucher is not None:
            require_voucher(voucher)
        self._require_started()

    def _require_started(self) -> None:
        if self.manager is None:
            raise RuntimeError("the node is not running: use it inside "
                               "`async with Node(home) as node:` (under trio)")

    # -- metrics -------------------------------------------------------------------

    def serve_metrics(self, port: int) -> int:
        """Serve the metrics over HTTP on 127.0.0.1:``port`` (0: any free
        port) until the node stops; return the port."""
        from prometheus_client import start_http_server

        if self.metrics is None:
            raise RuntimeError("node built without metrics=True")
        server, thread = start_http_server(port, addr="127.0.0.1", registry=self.metrics.registry)
        self._metrics_server = (server, thread)
        return int(server.server_port)

    def stop_metrics(self) -> None:
        entry, self._metrics_server = self._metrics_server, None
        if entry is not None:
            server, thread = entry
            server.shutdown()
            server.server_close()
            thread.join(5)


_ERROR_EVENTS = frozenset({EventCode.Error, EventCode.SendDataError, EventCode.ReceiveDataError})


class NodeMetrics:
    """Prometheus metrics of one node, fed by a Manager subscriber.

    Own registry (several nodes may live in one process). Metric names:
    ``datatransfer_channels{status}`` (gauge), ``datatransfer_bytes_sent_total``,
    ``datatransfer_bytes_received_total``, ``datatransfer_blocks_sent_total``,
    ``datatransfer_blocks_received_total``, ``datatransfer_restarts_total``,
    ``datatransfer_errors_total`` (counters),
    ``datatransfer_graphsync_requests_active{direction}`` (gauge: ``outgoing``
    requests this node made, ``incoming`` ones it serves) and
    ``datatransfer_graphsync_block_bytes_total{direction}`` (``sent``,
    ``received``: block data that crossed the network, every copy; the bytes
    counters above count each byte of a channel once, so the difference is
    what moved again, e.g. after a restart).

    Build it before the Manager starts: it seeds the channel gauge from the
    store, then follows the events.
    """

    def __init__(self, manager: Manager, transport: Any = None) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge

        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.channels = Gauge("datatransfer_channels", "Channels by status.", ["status"],
                              registry=r)
        self.bytes_sent = Counter("datatransfer_bytes_sent", "Bytes sent.", registry=r)
        self.bytes_received = Counter("datatransfer_bytes_received", "Bytes received.",
                                      registry=r)
        self.blocks_sent = Counter("datatransfer_blocks_sent", "Blocks sent.", registry=r)
        self.blocks_received = Counter("datatransfer_blocks_received", "Blocks received.",
                                       registry=r)
        self.restarts = Counter("datatransfer_restarts", "Channel restarts.", registry=r)
        self.errors = Counter("datatransfer_errors", "Channel and data errors.", registry=r)
        self.active = Gauge("datatransfer_graphsync_requests_active",
                            "Graphsync requests in progress.", ["direction"], registry=r)
        for status in Status:
            if status is not Status.ChannelNotFoundError:
                self.channels.labels(status=status.name).set(0)
        if transport is not None and hasattr(transport, "resources"):
            for direction in ("outgoing", "incoming"):
                self.active.labels(direction=direction).set_function(
                    _resource_reader(transport, direction))
        r.register(_RefusalCollector(manager, transport))
        self._lock = threading.Lock()
        self._status: dict[ChannelID, Status] = {}
        self._counts: dict[ChannelID, tuple[int, int]] = {}
        for status, count in manager.store.count_by_status().items():
            self.channels.labels(status=status.name).inc(count)
        for ch in manager.store.live():
            self._status[ch.channel_id] = ch.record.status
            self._counts[ch.channel_id] = (ch.record.sent, ch.record.received)
        manager.subscribe(self.on_event)

    def on_event(self, event: Event, state: ChannelState) -> None:
        """The Manager subscriber (runs on the event bus's worker thread)."""
        chid = state.channel_id
        code = event.code
        with self._lock:
            old = self._status.get(chid)
            if old != state.status:
                if old is not None:
                    self.channels.labels(status=old.name).dec()
                self.channels.labels(status=state.status.name).inc()
                self._status[chid] = state.status
            sent, received = self._counts.get(chid, (0, 0))
            if state.sent > sent:
                self.bytes_sent.inc(state.sent - sent)
                sent = state.sent
            if state.received > received:
                self.bytes_received.inc(state.received - received)
                received = state.received
            if state.status in FINAL_STATUSES:  # no more events: keep nothing
                self._status.pop(chid, None)
                self._counts.pop(chid, None)
            else:
                self._counts[chid] = (sent, received)
        if code == EventCode.DataSent:
            self.blocks_sent.inc()
        elif code == EventCode.DataReceived:
            self.blocks_received.inc()
        elif code == EventCode.Restart:
            self.restarts.inc()
        elif code in _ERROR_EVENTS:
            self.errors.inc()

    def render(self) -> str:
        """The metrics in Prometheus' text format."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry).decode()


class _RefusalCollector:
    """``datatransfer_refused_inputs_total{layer, kind}``: what the node
    refused from peers (see :mod:`datatransfer.refusals`): ``layer`` is
    ``channels`` (the Manager), ``graphsync`` (the engine and its streams)
    or ``messages`` (the data-transfer message protocol); and
    ``datatransfer_connections_refused_total{reason}``: inbound connections
    refused at accept (see :mod:`transport.libp2p.admission`), with
    ``reason="handshake-timeout"`` for those closed for taking too long;
    and ``datatransfer_graphsync_block_bytes_total{direction}`` (see
    :class:`NodeMetrics`)."""

    def __init__(self, manager: Manager, transport: Any) -> None:
        self.layers = [("channels", manager.refusals)]
        if transport is not None:
            if hasattr(transport, "refusals"):
                self.layers.append(("graphsync", transport.refusals))
            dtnet = getattr(transport, "dtnet", None)
            if dtnet is not None:
                self.layers.append(("messages", dtnet.refusals))
        self.admission = getattr(getattr(transport, "host", None), "admission", None)
        self.transport = transport

    def collect(self):  # type: ignore[no-untyped-def]
        from prometheus_client.core import CounterMetricFamily

        refused = CounterMetricFamily("datatransfer_refused_inputs",
                                      "Inputs from peers refused, by layer and kind.",
                                      labels=["layer", "kind"])
        for layer, refusals in self.layers:
            for kind, count in sorted(refusals.counts.items()):
                refused.add_metric([layer, kind], count)
        yield refused
        stats = getattr(self.transport, "stats", None)
        if stats is not None:
            wire = CounterMetricFamily("datatransfer_graphsync_block_bytes",
                                       "Block data bytes that crossed the network (every copy).",
                                       labels=["direction"])
            wire.add_metric(["sent"], stats.block_bytes_sent)
            wire.add_metric(["received"], stats.block_bytes_received)
            yield wire
        if self.admission is not None:
            conns = CounterMetricFamily("datatransfer_connections_refused",
                                        "Inbound connections refused, by reason.",
                                        labels=["reason"])
            for reason, count in sorted(self.admission.refused.items()):
                conns.add_metric([reason], count)
            conns.add_metric(["handshake-timeout"], self.admission.timed_out)
            yield conns

    def describe(self):  # type: ignore[no-untyped-def]
        return []


def _resource_reader(transport: Any, direction: str):  # type: ignore[no-untyped-def]
    def read() -> float:
        try:
            return float(transport.resources().get(direction, 0))
        except Exception:  # noqa: BLE001 - a scrape must not fail
            return 0.0

    return read
