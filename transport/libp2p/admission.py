"""Who may connect: admission of inbound TCP connections before libp2p sees them.

py-libp2p (0.8.1) gives every inbound connection one slot of a single
limiter (``max_connections - min_connections``, 250 by default) from accept
until the swarm stops: connections still in the Noise handshake share the
slots of established ones, a connection that never finishes its handshake
holds one for the upgrade timeout, and a slot is not even given back when
its connection closes. About 250 TCP connections that never speak (reopened
as they are closed) therefore lock every honest peer out, and so, slowly,
does ordinary use.

:class:`AdmissionGuard` sits between the TCP listener and the swarm (a
:class:`GuardedTCP` transport hands it each accepted socket first) and
decides with what it knows at accept time, the remote address:

* a connection must finish its handshake (security and muxer) within
  ``handshake_timeout``, else it is closed;
* at most ``max_pending`` connections may be in the handshake at once, and
  at most ``max_pending_per_address`` from one IP address;
* the last ``reserve`` of those pending slots are kept for addresses that
  have nothing pending, so a new peer can connect while one address floods;
* at most ``max_established_per_address`` established connections per IP;
* a closed connection gives its swarm slot back at once.

A refused connection is closed at accept: it costs no handshake and no
swarm slot. Counts of what was refused are in :attr:`AdmissionGuard.refused`.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import trio
from libp2p.abc import INetConn, INetwork
from libp2p.transport.tcp.tcp import TCP, TCPListener

from transport.libp2p.notifee import QuietNotifee

__all__ = ["AdmissionGuard", "AdmissionPolicy", "GuardedTCP"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AdmissionPolicy:
    """The limits :class:`AdmissionGuard` applies (see the module docs).

    ``max_connections`` raises py-libp2p's own cap on connections (inbound
    and outbound) from its default of 300, since inbound ones are now
    bounded per address here.
    """

    handshake_timeout: float = 10.0
    max_pending: int = 64
    max_pending_per_address: int = 8
    reserve: int = 16
    max_established_per_address: int = 64
    max_connections: int = 1024

    def __post_init__(self) -> None:
        if not 0 <= self.reserve < self.max_pending:
            raise ValueError("reserve must be at least 0 and less than max_pending")
        if min(self.max_pending_per_address, self.max_established_per_address) < 1:
            raise ValueError("per-address limits must be at least 1")
        if self.handshake_timeout <= 0:
            raise ValueError("handshake_timeout must be positive")


class _Admitted:
    __slots__ = ("address", "ip", "scope", "established")

    def __init__(self, address: tuple[str, int]) -> None:
        self.address = address
        self.ip = address[0]
        self.scope: trio.CancelScope | None = None
        self.established = False


class AdmissionGuard(QuietNotifee):
    """Admits or refuses inbound connections; see the module docs.

    Register it as a notifee of the swarm (:func:`~transport.libp2p.host.make_host`
    does), so it learns when a connection finished its handshake and when
    it closed.
    """

    def __init__(self, policy: AdmissionPolicy | None = None) -> None:
        self.policy = policy or AdmissionPolicy()
        self.pending = 0
        self._pending_by_ip: Counter[str] = Counter()
        self._established_by_ip: Counter[str] = Counter()
        self._by_address: dict[tuple[str, int], _Admitted] = {}
        #: Connections refused at accept, by reason.
        self.refused: Counter[str] = Counter()
        #: Connections closed because their handshake took too long.
        self.timed_out = 0

    @property
    def established(self) -> int:
        return sum(self._established_by_ip.values())

    # -- admission -------------------------------------------------------------------

    def admit(self, address: tuple[str, int]) -> _Admitted | None:
        """Take a pending slot for a connection from ``address``, or None
        (with the reason counted). Synchronous: nothing runs between the
        check and the taking."""
        policy = self.policy
        ip = address[0]
        pending_here = self._pending_by_ip[ip]
        if pending_here >= policy.max_pending_per_address:
            return self._refuse("pending-per-address")
        if self._established_by_ip[ip] >= policy.max_established_per_address:
            return self._refuse("established-per-address")
        cap = policy.max_pending if pending_here == 0 else policy.max_pending - policy.reserve
        if self.pending >= cap:
            return self._refuse("pending")
        self.pending += 1
        self._pending_by_ip[ip] += 1
        entry = _Admitted(address)
        self._by_address[address] = entry
        return entry

    def _refuse(self, reason: str) -> None:
        self.refused[reason] += 1
        return None

    def _release(self, entry: _Admitted) -> None:
        if self._by_address.get(entry.address) is entry:
            del self._by_address[entry.address]
        if entry.established:
            _decrement(self._established_by_ip, entry.ip)
        else:
            self.pending -= 1
            _decrement(self._pending_by_ip, entry.ip)

    def wrap(self, handler: Callable[[Any], Awaitable[None]]) -> Callable[[Any], Awaitable[None]]:
        """The listener's connection handler around the swarm's ``handler``."""

        async def guarded(stream: Any) -> None:
            address = stream.get_remote_address()
            entry = self.admit(tuple(address)) if address else None
            if entry is None:
                try:
                    await stream.close()
                except Exception:  # noqa: BLE001 - already gone
                    pass
                return
            try:
                deadline = trio.current_time() + self.policy.handshake_timeout
                with trio.CancelScope(deadline=deadline) as scope:
                    entry.scope = scope
                    await handler(stream)  # returns when the connection ends
                if scope.cancelled_caught and not entry.established:
                    self.timed_out += 1
            finally:
                self._release(entry)

        return guarded

    # -- what the swarm tells ------------------------------------------------------------

    def _entry_of(self, conn: INetConn) -> _Admitted | None:
        try:
            address = conn.muxed_conn.get_remote_address()
        except Exception:  # noqa: BLE001
            return None
        return self._by_address.get(tuple(address)) if address else None

    async def connected(self, network: INetwork, conn: INetConn) -> None:
        entry = self._entry_of(conn)
        if entry is None or entry.established:
            return
        entry.established = True
        self.pending -= 1
        _decrement(self._pending_by_ip, entry.ip)
        self._established_by_ip[entry.ip] += 1
        if entry.scope is not None:
            entry.scope.deadline = math.inf  # the handshake is done

    async def disconnected(self, network: INetwork, conn: INetConn) -> None:
        entry = self._entry_of(conn)
        if entry is not None and entry.scope is not None:
            # ends the swarm's handler, which would otherwise keep its slot
            # until the swarm stops
            entry.scope.cancel()


def _decrement(counter: Counter[str], key: str) -> None:
    left = counter[key] - 1
    if left > 0:
        counter[key] = left
    else:
        del counter[key]


class GuardedTCP(TCP):
    """py-libp2p's TCP transport whose listeners ask ``guard`` first."""

    def __init__(self, guard: AdmissionGuard, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.guard = guard

    def create_listener(self, handler_function: Any) -> TCPListener:
        return TCPListener(self.guard.wrap(handler_function))
