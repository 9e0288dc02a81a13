"""Data-transfer messages over libp2p streams: protocol ``/fil/datatransfer/1.2.0``.

Wire behaviour, as go-data-transfer v1.13+ and v2 do it
(``network/libp2p_impl.go``, ``message/message1_1prime``):

* Go's sender opens a **new stream** per message; its reader (and ours)
  decodes messages from a stream until it ends. So this sender keeps **one
  stream per peer** and writes each message on it (wire-compatible with Go
  and with older senders): a stream costs both sides a muxer frame pair, a
  protocol negotiation and a handler task, which at thousands of channels
  was most of the network's cost. A kept stream unused for
  :data:`IDLE_REUSE` seconds is ended (EOF) and the next message opens a new
  one (well below go-data-transfer v2's 10 s wait for a stream's next
  message, so a reader never times one out and a sender never writes on a
  stream its peer is about to reset); a write that fails on a kept stream (the peer
  closed or reset it, the connection was replaced) is tried once more on a
  new stream.
* The message is one DAG-CBOR value written straight onto the stream, with
  **no length prefix**: it delimits itself.
* The reader decodes messages one after another until the stream ends;
  a clean end (also a message cut short by the end, which Go ignores) just
  closes the stream; a decode error resets it.
* Opening a stream is retried with exponential backoff (Go: 5 attempts,
  1 s min, 5 min max, factor 5, jitter; 10 s to open, 10 s to write).
* When identify has told us that the peer speaks the protocol, the protocol
  is selected optimistically, as go-libp2p's ``NewStream`` does then: the
  multistream-select lines and the message go out in one write, without
  waiting for the peer's confirmation. A sender never waits for a round trip
  through a connection whose inbound direction is full of data (a receiver
  pausing a transfer that streams in: the answer to its negotiation queues
  behind everything the peer already sent, up to the muxer's 16 MiB window,
  so the pause message would go out only once that has arrived). The next
  send to that peer first reads that confirmation (so consecutive messages
  reach the peer's handler in order, as a negotiated send ensures); a
  refusal found then is logged and counted in ``stats.send_failures``.
  On a kept stream that is read once, before its second message.

Since there is no length prefix, the size limit (:data:`MAX_MESSAGE_SIZE` by
default) is enforced while reading: a small scanner follows the CBOR heads as
bytes arrive and refuses a message as soon as its declared lengths (a byte
string's length, an array's or map's item count) or the bytes buffered for it
exceed the limit. The stream is then reset; the bytes beyond are never read.
A malformed message resets the stream too. Neither stops the host from
serving other streams.

Only ``/fil/datatransfer/1.2.0`` is registered: 1.1.0 and 1.0.0 (cbor-gen
encodings) were dropped by Go in v1.13.0.

Messages sent to one peer by consecutive
:meth:`DataTransferNetwork.send_message` calls reach its handler in order
(one stream, or the previous stream's confirmation read first). Pass
``wait_for_receipt=True`` to return only once the receiver has handled the
message and those before it (the kept stream is closed after it and the
receiver closes its side once it has read everything). Do not wait for a
receipt while the receiving side may be waiting on you, or both wait until
the send timeout. After :meth:`DataTransferNetwork.stop` the reader delivers
no further message: a stream still open is reset at its next one.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import anyio
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.network.stream.exceptions import StreamEOF
from libp2p.utils import encode_delim, read_delim

from datatransfer.ipld.dagcbor import MAX_DEPTH
from datatransfer.messages import (
    MAX_MESSAGE_SIZE,
    PROTOCOL_ID,
    Message,
    MessageError,
    decode_message,
    encode_message,
)
from datatransfer.refusals import Refusals
from datatransfer.types import PeerID
from transport.base import PeerUnreachable, TransportError
from transport.libp2p.host import (
    close_stream,
    forget_failed_dials,
    libp2p_id,
    peer_id_of,
    reset_stream,
)

log = logging.getLogger(__name__)

__all__ = [
    "MAX_MESSAGE_SIZE",
    "PROTOCOL_ID",
    "DataTransferNetwork",
    "MessageHandler",
    "NetworkStats",
    "RetryPolicy",
]

#: ``async on_message(sender, message)``: where received messages go.
MessageHandler = Callable[[PeerID, Message], Awaitable[None]]

#: Bytes asked of the stream per read.
READ_CHUNK = 64 * 1024
#: multistream-select's header line.
MULTISTREAM = "/multistream/1.0.0"
#: Peers whose outbound stream is kept; beyond, the least recently used one
#: not sending at the moment is closed.
MAX_KEPT = 1024
#: Seconds a kept outbound stream may sit unused and still carry the next
#: message; :meth:`DataTransferNetwork.close_idle_streams` ends (EOF) those
#: unused longer. go-data-transfer v2's reader gives each next message 10 s
#: (its ``sendMessageTimeout``) and then resets the stream and reports an
#: error that fails Lassie's retrieval, so a kept stream must end cleanly
#: well before that (and before our own reader's ``read_timeout``).
IDLE_REUSE = 2.0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How :meth:`DataTransferNetwork.send_message` opens its stream.

    ``attempts`` tries in all; after failed attempt *k* (from 0) it waits
    ``min(min_delay * factor**k, max_delay)``, drawn uniformly from
    ``[min_delay, that]`` when ``jitter`` is set. Defaults are Go's.
    ``open_timeout`` bounds each attempt (dial + protocol negotiation),
    ``send_timeout`` the write (and the wait for a receipt).
    """

    attempts: int = 5
    min_delay: float = 1.0
    max_delay: float = 300.0
    factor: float = 5.0
    jitter: bool = True
    open_timeout: float = 10.0
    send_timeout: float = 10.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        if self.min_delay < 0 or self.max_delay < self.min_delay:
            raise ValueError("need 0 <= min_delay <= max_delay")

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt ``attempt`` (0-based)."""
        top = min(self.min_delay * self.factor**attempt, self.max_delay)
        if self.jitter and top > self.min_delay:
            return random.uniform(self.min_delay, top)
        return top


@dataclass(slots=True)
class NetworkStats:
    """Counters, for tests and monitoring."""

    sent: int = 0
    send_failures: int = 0
    received: int = 0
    refused_malformed: int = 0
    refused_oversized: int = 0
    timed_out: int = 0
    handler_errors: int = 0


# -- framing: where does the CBOR value end? ------------------------------------------


class _Oversized(Exception):
    pass


class _Malformed(Exception):
    pass


class _ItemScanner:
    """Finds the end of the first CBOR data item in a buffer that grows.

    Resumable: :meth:`feed` continues where the previous call stopped, so
    each byte's head is looked at once. It only follows the structure
    (heads, lengths, counts); the decoder checks everything else. Raises
    :class:`_Oversized` as soon as the item cannot fit in ``limit`` bytes
    (every item still owed takes at least one byte), :class:`_Malformed` for
    indefinite lengths, reserved head values and nesting deeper than the
    DAG-CBOR codec accepts.
    """

    __slots__ = ("limit", "pending", "pos", "stack")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.reset()

    def reset(self) -> None:
        self.pos = 0  # next unread byte (may run past the buffer inside a string)
        self.stack = [1]  # items still owed, per open container
        self.pending = 1  # sum of self.stack

    def feed(self, buf: bytes | bytearray) -> int | None:
        """The item's length once ``buf`` holds all of it, else None."""
        n = len(buf)
        pos, stack, pending = self.pos, self.stack, self.pending
        try:
            while True:
                while stack and stack[-1] == 0:
                    stack.pop()
                if pos > n:
                    return None
                if not stack:
                    return pos
                if pos == n:
                    return None
                initial = buf[pos]
                major, info = initial >> 5, initial & 0x1F
                if info < 24:
                    arg, head = info, 1
                elif info < 28:
                    size = 1 << (info - 24)
                    if pos + 1 + size > n:
                        return None
                    arg, head = int.from_bytes(buf[pos + 1 : pos + 1 + size], "big"), 1 + size
                else:
                    raise _Malformed(f"indefinite length or reserved head 0x{initial:02x}")
                stack[-1] -= 1
                pending -= 1
                pos += head
                if major == 2 or major == 3:  # byte / text string
                    pos += arg
                elif major == 4 or major == 5 or major == 6:  # array / map / tag
                    owed = arg if major == 4 else 2 * arg if major == 5 else 1
                    if owed:
                        stack.append(owed)
                        pending += owed
                        if len(stack) > MAX_DEPTH + 1:
                            raise _Malformed(f"nesting deeper than {MAX_DEPTH}")
                if pos + pending > self.limit:
                    raise _Oversized(
                        f"message needs at least {pos + pending} bytes (limit {self.limit})"
                    )
        finally:
            self.pos, self.pending = pos, pending


# -- the network ----------------------------------------------------------------------


class _Outbound:
    """The stream kept for one peer, and what is known about it."""

    __slots__ = ("lock", "proto", "stream", "used")

    def __init__(self) -> None:
        self.lock = anyio.Lock()  # one message at a time on the stream
        self.stream: INetStream | None = None
        #: The protocol selected optimistically, its confirmation not read yet.
        self.proto: TProtocol | None = None
        self.used = 0.0  # anyio.current_time() of its last message


class DataTransferNetwork:
    """Sends and receives data-transfer messages through a libp2p host.

    ``on_message`` receives each decoded message with the sender's peer id,
    one at a time per stream (in the order the stream carried them); an
    exception it raises is logged and does not affect the stream. Call
    :meth:`start` (once the host runs) to accept streams, :meth:`stop` to
    refuse them again.
    """

    def __init__(
        self,
        host: IHost,
        on_message: MessageHandler | None = None,
        *,
        retry: RetryPolicy | None = None,
        max_message_size: int = MAX_MESSAGE_SIZE,
        read_timeout: float = 60.0,
        protocols: Sequence[str] = (PROTOCOL_ID,),
    ) -> None:
        if max_message_size < 1:
            raise ValueError("max_message_size must be positive")
        self._host = host
        self._on_message = on_message
        self.retry = retry or RetryPolicy()
        self.max_message_size = max_message_size
        #: Seconds a receiving stream may stay silent before it is reset.
        self.read_timeout = read_timeout
        self._protocols = [TProtocol(p) for p in protocols]
        self.stats = NetworkStats()
        #: Messages refused, by kind (logged without floods).
        self.refusals = Refusals(log)
        self._started = False
        #: Per peer: the kept outbound stream (see the module docs), least
        #: recently used first.
        self._out: dict[PeerID, _Outbound] = {}

    @property
    def host(self) -> IHost:
        return self._host

    @property
    def peer_id(self) -> PeerID:
        return peer_id_of(self._host)

    # -- lifecycle --------------------------------------------------------------------

    def start(self, on_message: MessageHandler | None = None) -> None:
        """Register the stream handler; ``on_message`` replaces the handler
        given to the constructor, if any."""
        if on_message is not None:
            self._on_message = on_message
        if self._on_message is None:
            raise ValueError("no on_message handler")
        for proto in self._protocols:
            self._host.set_stream_handler(proto, self._handle_stream)
        self._started = True

    def stop(self) -> None:
        """Stop accepting streams and messages: a stream still open is reset
        at its next message. The kept outbound streams are forgotten (the
        muxer reclaims them with their connections)."""
        self._out.clear()
        if not self._started:
            return
        for proto in self._protocols:
            self._host.remove_stream_handler(proto)
        self._started = False

    # -- sending ----------------------------------------------------------------------

    async def send_message(
        self, peer: PeerID, message: Message, *, wait_for_receipt: bool = False
    ) -> None:
        """Send ``message`` to ``peer`` on the stream kept for it (see the
        module docs), opening one if there is none.

        Opening a stream is retried per :attr:`retry`; raises
        :class:`PeerUnreachable` when every attempt failed, or when the
        stream broke while writing (the message may then have been lost; it
        is not resent, as in Go). With ``wait_for_receipt``, also closes the
        stream and waits (up to ``retry.send_timeout``) until the receiver
        has handled the messages on it and closed its side; raises
        :class:`TransportError` if the stream is reset instead (best effort:
        py-libp2p sometimes reports a reset as a clean end, so a refusal can
        look like a receipt).
        Raises :class:`ValueError` for a message larger than
        :attr:`max_message_size` (a receiver would refuse it).

        Without ``wait_for_receipt``, a new stream to a peer known (from
        identify) to speak the protocol gets it selected optimistically (see
        the module docs): the call then returns once the bytes are handed to
        the muxer, never waiting for the peer.
        """
        data = encode_message(message)
        if len(data) > self.max_message_size:
            raise ValueError(
                f"message is {len(data)} bytes, over the {self.max_message_size}-byte limit"
            )
        peer = PeerID(peer)
        entry = self._out.pop(peer, None) or _Outbound()
        self._out[peer] = entry  # most recently used last
        if len(self._out) > MAX_KEPT:
            await self._evict()
        async with entry.lock:
            stream = await self._kept(peer, entry)
            kept = stream is not None
            while True:
                payload = data
                if stream is None:
                    proto = None if wait_for_receipt else self._known_protocol(peer)
                    stream = await self._open_stream(peer, optimistic=proto)
                    entry.stream, entry.proto = stream, proto
                    if proto is not None:
                        payload = (encode_delim(MULTISTREAM.encode())
                                   + encode_delim(proto.encode()) + data)
                try:
                    with anyio.fail_after(self.retry.send_timeout):
                        await stream.write(payload)
                except BaseException as exc:
                    entry.stream = None
                    await reset_stream(stream)
                    if not isinstance(exc, Exception):
                        raise  # cancellation
                    if kept and not isinstance(exc, TimeoutError):
                        # the peer closed or reset the kept stream: once more on a new one
                        kept, stream = False, None
                        continue
                    self.stats.send_failures += 1
                    raise PeerUnreachable(
                        f"sending to {peer} failed: {_describe(exc)}") from exc
                break
            entry.used = anyio.current_time()
            if wait_for_receipt:
                entry.stream = None
                try:
                    with anyio.fail_after(self.retry.send_timeout):
                        await stream.close_write()
                        await self._await_receipt(stream)
                        await stream.close()
                except BaseException as exc:
                    await reset_stream(stream)
                    if not isinstance(exc, Exception):
                        raise
                    self.stats.send_failures += 1
                    if isinstance(exc, TransportError):
                        raise
                    raise PeerUnreachable(
                        f"sending to {peer} failed: {_describe(exc)}") from exc
        self.stats.sent += 1

    async def _kept(self, peer: PeerID, entry: _Outbound) -> INetStream | None:
        """The kept stream to ``peer`` if it may carry the next message: its
        optimistic selection confirmed (a refusal is counted, the stream
        dropped) and not idle longer than :data:`IDLE_REUSE` (then closed)."""
        stream = entry.stream
        if stream is None:
            return None
        if entry.proto is not None:
            if not await self._confirmed(peer, stream, entry.proto):
                entry.stream = None
                return None
            entry.proto = None
        if anyio.current_time() - entry.used > IDLE_REUSE:
            entry.stream = None
            await close_stream(stream)
            return None
        return stream

    async def close_idle_streams(self) -> None:
        """Run until cancelled: end (EOF, after reading an optimistic
        selection's confirmation) each kept stream unused for
        :data:`IDLE_REUSE` seconds, so no reader times one out."""
        while True:
            await anyio.sleep(IDLE_REUSE / 4)
            now = anyio.current_time()
            for peer, entry in list(self._out.items()):
                if (entry.stream is not None and not entry.lock.locked()
                        and now - entry.used > IDLE_REUSE):
                    await self._end_kept(peer, entry)

    async def _end_kept(self, peer: PeerID, entry: _Outbound) -> None:
        async with entry.lock:
            stream, proto = entry.stream, entry.proto
            if stream is None or anyio.current_time() - entry.used <= IDLE_REUSE:
                return  # a message went out meanwhile
            entry.stream = entry.proto = None
            if proto is None or await self._confirmed(peer, stream, proto):
                await close_stream(stream)

    async def _evict(self) -> None:
        """Close the kept streams of the least recently used peers beyond
        :data:`MAX_KEPT` (skipping those sending at the moment)."""
        streams = []
        for peer in list(self._out)[: len(self._out) - MAX_KEPT]:
            entry = self._out[peer]
            if not entry.lock.locked():
                del self._out[peer]
                if entry.stream is not None:
                    streams.append(entry.stream)
        for stream in streams:
            await close_stream(stream)

    async def settle(self) -> None:
        """Wait until each peer has taken the messages sent to it: close the
        stream kept for it (its optimistic selection confirmed first, see
        the module docs) and wait until the peer has closed its side, which
        it does once it has read them. Call it before the host closes its
        connections, so that a message sent on the way out (a cancel) is
        not cut off unread; bound it (a peer may never answer). Never
        raises."""
        entries, self._out = self._out, {}
        async with anyio.create_task_group() as tg:
            for peer, entry in entries.items():
                tg.start_soon(self._settle_one, peer, entry)

    async def _settle_one(self, peer: PeerID, entry: _Outbound) -> None:
        async with entry.lock:
            stream, proto = entry.stream, entry.proto
            entry.stream = None
        if stream is None:
            return
        if proto is not None and not await self._confirmed(peer, stream, proto):
            return
        try:
            await stream.close_write()
            await self._await_receipt(stream)
        except Exception as exc:  # noqa: BLE001 - reset, connection gone, refused
            log.debug("%s did not take the last messages: %s", peer, _describe(exc))
        await close_stream(stream)

    def _known_protocol(self, peer: PeerID) -> TProtocol | None:
        """Our protocol that identify says ``peer`` speaks, if it is
        connected (go-libp2p selects it optimistically then, too)."""
        pid = libp2p_id(peer)
        try:
            if not self._host.get_network().get_connections(pid):
                return None
            supported = set(self._host.get_peerstore().get_protocols(pid))
        except Exception:  # noqa: BLE001 - unknown peer
            return None
        for proto in self._protocols:
            if proto in supported:
                return proto
        return None

    async def _confirmed(self, peer: PeerID, stream: INetStream, proto: TProtocol) -> bool:
        """Read the peer's confirmation of an optimistic selection; False
        (logged, counted, the stream reset) if it refused or said nothing."""
        try:
            with anyio.fail_after(self.retry.open_timeout):
                answer = [(await read_delim(stream)).decode() for _ in range(2)]
        except Exception as exc:  # noqa: BLE001 - timeout, reset, peer gone
            answer = [f"no answer ({_describe(exc)})"]
        if answer != [MULTISTREAM, proto]:
            self.stats.send_failures += 1
            log.warning("%s did not confirm protocol %s for a message sent to it: %s",
                        peer, proto, " / ".join(answer))
            await reset_stream(stream)
            return False
        return True

    async def _await_receipt(self, stream: INetStream) -> None:
        try:
            while await stream.read(READ_CHUNK):
                pass  # nothing is expected; keep reading until the receiver closes
        except StreamEOF:
            return
        except Exception as exc:
            raise TransportError(f"receiver refused the message: {_describe(exc)}") from exc

    async def connect_with_retry(self, peer: PeerID) -> None:
        """Check that ``peer`` accepts data-transfer streams: open one (with
        the retry policy) and close it. Raises :class:`PeerUnreachable`."""
        stream = await self._open_stream(peer)
        await close_stream(stream)

    async def _open_stream(
        self, peer: PeerID, *, optimistic: TProtocol | None = None
    ) -> INetStream:
        """A stream to ``peer`` on our protocol; with ``optimistic``, a bare
        stream whose protocol the caller selects without waiting (the
        multistream-select lines go first in its write)."""
        pid = libp2p_id(peer)
        policy = self.retry
        last: Exception | None = None
        for attempt in range(policy.attempts):
            forget_failed_dials(self._host, pid)  # our backoff decides when to retry
            try:
                with anyio.fail_after(policy.open_timeout):
                    if optimistic is None:
                        return await self._host.new_stream(pid, self._protocols)
                    stream = await self._host.get_network().new_stream(pid)
                    stream.set_protocol(optimistic)
                    return stream
            except Exception as exc:  # dial errors, negotiation errors, timeouts
                last = exc
            if attempt + 1 == policy.attempts:
                break
            wait = policy.delay(attempt)
            log.warning(
                "cannot open a stream to %s (attempt %d of %d): %s; retrying in %.2fs",
                peer,
                attempt + 1,
                policy.attempts,
                _describe(last),
                wait,
            )
            await anyio.sleep(wait)
        self.stats.send_failures += 1
        raise PeerUnreachable(
            f"cannot open a stream to {peer} after {policy.attempts} attempts: {_describe(last)}"
        ) from last

    # -- receiving --------------------------------------------------------------------

    async def _handle_stream(self, stream: INetStream) -> None:
        """Read messages from an inbound stream until it ends. Never raises
        (except cancellation): whatever the peer sends, the host carries on."""
        try:
            sender = PeerID(stream.muxed_conn.peer_id.to_bytes())
        except Exception:
            await reset_stream(stream)
            return
        try:
            outcome = await self._read_messages(sender, stream)
        except Exception:  # a bug here must not take the connection down
            log.exception("data-transfer stream from %s failed", sender)
            outcome = "reset"
        if outcome == "close":
            await close_stream(stream)
        elif outcome == "reset":
            await reset_stream(stream)

    async def _read_messages(self, sender: PeerID, stream: INetStream) -> str:
        """Returns what to do with the stream: "close", "reset" or "" (gone)."""
        limit = self.max_message_size
        scanner = _ItemScanner(limit)
        buf = bytearray()
        while True:
            try:
                with anyio.fail_after(self.read_timeout):
                    chunk = await stream.read(min(READ_CHUNK, limit + 1 - len(buf)))
            except StreamEOF:
                chunk = b""
            except TimeoutError:
                self.stats.timed_out += 1
                log.info(
                    "data-transfer stream from %s idle for %ss; reset", sender, self.read_timeout
                )
                return "reset"
            except Exception as exc:  # reset by the peer, connection lost
                log.debug("data-transfer stream from %s broke: %s", sender, _describe(exc))
                return ""
            if not chunk:
                if buf:  # Go drops a message cut short by the end of the stream, too
                    self.stats.refused_malformed += 1
                    log.info("data-transfer stream from %s ended inside a message", sender)
                return "close"
            buf += chunk
            while buf:
                try:
                    end = scanner.feed(buf)
                except _Oversized as exc:
                    self.stats.refused_oversized += 1
                    self.refusals.refuse("oversized", f"refused a message from {sender}: {exc}")
                    return "reset"
                except _Malformed as exc:
                    self.stats.refused_malformed += 1
                    self.refusals.refuse(
                        "malformed", f"refused a malformed message from {sender}: {exc}")
                    return "reset"
                if end is None:
                    if len(buf) > limit:  # cannot happen (the scanner refuses first)
                        self.stats.refused_oversized += 1
                        return "reset"
                    break
                frame = bytes(buf[:end])
                del buf[:end]
                scanner.reset()
                try:
                    message = decode_message(frame)
                except MessageError as exc:
                    self.stats.refused_malformed += 1
                    self.refusals.refuse(
                        "malformed", f"refused a malformed message from {sender}: {exc}")
                    return "reset"
                if not self._started:
                    return "reset"  # stopped: no message is taken any more
                self.stats.received += 1
                await self._deliver(sender, message)

    async def _deliver(self, sender: PeerID, message: Message) -> None:
        handler = self._on_message
        if handler is None:
            return
        try:
            await handler(sender, message)
        except Exception:
            self.stats.handler_errors += 1
            log.exception("on_message failed for a message from %s", sender)


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "unknown error"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
