"""A TCP relay for the two-process tests: a man in the middle that can cut.

The test process runs it (threads, loopback only) between a node and the
peer it dials: the dialer uses ``/ip4/127.0.0.1/tcp/<relay port>/p2p/<peer
id>``; libp2p's Noise handshake goes through untouched (the relay only moves
bytes, it cannot read them). What the relay adds:

* byte counters per direction (``"up"``: dialer to target, ``"down"``:
  target to dialer) and per *generation* (the connections accepted between
  two cuts), so a test can tell what was sent again after a reconnection;
* :meth:`Relay.hold_after`: once the first generation forwarded that many
  bytes in one direction, stop forwarding that direction (the target's
  writes back up, nothing more reaches the dialer); a test then watches the
  dialer's own progress and cuts, so the cut lands mid-transfer by the data
  that arrived, not by a sleep;
* :meth:`Relay.cut`: reset (RST, ``SO_LINGER`` 0) every connection, in both
  directions, and keep accepting new ones, which are forwarded normally.

Every thread is a daemon and :meth:`Relay.close` stops them all; use the
relay as a context manager.
"""

from __future__ import annotations

import select
import socket
import struct
import threading
from dataclasses import dataclass, field

__all__ = ["Relay"]

_POLL = 0.05
_CHUNK = 64 * 1024
_DIRECTIONS = ("up", "down")


@dataclass
class _Conn:
    generation: int
    client: socket.socket
    target: socket.socket
    dead: threading.Event = field(default_factory=threading.Event)
    pumps: list[threading.Thread] = field(default_factory=list)


def _abort(sock: socket.socket) -> None:
    """Close with an RST instead of a FIN."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class Relay:
    """Forward every connection to 127.0.0.1:``target_port``; see the module docs."""

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._listener.settimeout(_POLL)
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._conns: list[_Conn] = []
        self._closed = threading.Event()
        self.generation = 0
        #: bytes forwarded, per generation then direction
        self.forwarded: list[dict[str, int]] = [dict.fromkeys(_DIRECTIONS, 0)]
        #: connections accepted per generation
        self.accepted: list[int] = [0]
        #: connections reset by each cut
        self.cut_counts: list[int] = []
        self._hold: tuple[str, int] | None = None
        self.holding = threading.Event()
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True)
        self._acceptor.start()

    # -- control ---------------------------------------------------------------------

    def addr(self, peer_id: str) -> str:
        """The multiaddr a dialer uses to reach ``peer_id`` through the relay."""
        return f"/ip4/127.0.0.1/tcp/{self.port}/p2p/{peer_id}"

    def hold_after(self, direction: str, nbytes: int) -> None:
        """Stop forwarding ``direction`` on first-generation connections once
        ``nbytes`` went that way (checked per chunk of up to 64 KiB);
        :attr:`holding` is set when that happens. A cut ends the hold."""
        assert direction in _DIRECTIONS
        self._hold = (direction, nbytes)

    def cut(self) -> int:
        """Reset every open connection; return how many. Later connections
        belong to the next generation and are forwarded without a hold."""
        with self._lock:
            conns, self._conns = self._conns, []
            self.generation += 1
            self.forwarded.append(dict.fromkeys(_DIRECTIONS, 0))
            self.accepted.append(0)
            self._hold = None
        for conn in conns:
            conn.dead.set()  # the pumps stop within one poll
        for conn in conns:
            for pump in conn.pumps:
                pump.join(5)
            _abort(conn.client)
            _abort(conn.target)
        self.cut_counts.append(len(conns))
        return len(conns)

    def after_first_cut(self, direction: str) -> int:
        """Bytes forwarded in ``direction`` since the first cut."""
        with self._lock:
            return sum(gen[direction] for gen in self.forwarded[1:])

    def close(self) -> None:
        self._closed.set()
        self._acceptor.join(5)
        try:
            self._listener.close()
        except OSError:
            pass
        self.cut()

    def __enter__(self) -> Relay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- forwarding ------------------------------------------------------------------

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                target = socket.create_connection(self.target, timeout=5)
            except OSError:
                _abort(client)
                continue
            with self._lock:
                conn = _Conn(self.generation, client, target)
                self._conns.append(conn)
                self.accepted[conn.generation] += 1
            for sock in (client, target):
                sock.setblocking(False)
            for src, dst, direction in ((client, target, "up"), (target, client, "down")):
                pump = threading.Thread(target=self._pump, args=(conn, src, dst, direction),
                                        daemon=True)
                conn.pumps.append(pump)
            for pump in conn.pumps:
                pump.start()

    def _held(self, conn: _Conn, direction: str) -> bool:
        hold = self._hold
        if hold is None or conn.generation != 0 or hold[0] != direction:
            return False
        return self.forwarded[0][direction] >= hold[1]

    def _pump(self, conn: _Conn, src: socket.socket, dst: socket.socket, direction: str) -> None:
        """Move bytes ``src`` -> ``dst`` (non-blocking sockets, polled, so a
        cut stops the pump within one poll whatever it was waiting for)."""
        while not conn.dead.is_set():
            if self._held(conn, direction):
                self.holding.set()
                conn.dead.wait(_POLL)
                continue
            readable, _, _ = select.select([src], [], [], _POLL)
            if not readable:
                continue
            try:
                data = src.recv(_CHUNK)
            except BlockingIOError:
                continue
            except OSError:
                break
            if not data:
                try:
                    dst.shutdown(socket.SHUT_WR)  # pass the FIN on
                except OSError:
                    pass
                break
            view = memoryview(data)
            while view and not conn.dead.is_set():
                _, writable, _ = select.select([], [dst], [], _POLL)
                if not writable:
                    continue
                try:
                    n = dst.send(view)
                except BlockingIOError:
                    continue
                except OSError:
                    return
                view = view[n:]
            with self._lock:
                self.forwarded[conn.generation][direction] += len(data) - len(view)
