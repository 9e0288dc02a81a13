"""``Libp2pTransport``: the graphsync engine over a py-libp2p host.

* Graphsync messages travel on ``/ipfs/graphsync/2.0.0`` as uvarint-framed
  DAG-CBOR (4 MiB frame limit). Each node writes on its **own** outbound
  stream to a peer (opened on first use, kept, reopened after a failure) and
  reads whatever streams peers open to it; nothing is ever answered on an
  inbound stream (as go-graphsync).
* Data-transfer messages sent on their own go through
  :class:`~transport.libp2p.dtnet.DataTransferNetwork`
  (``/fil/datatransfer/1.2.0``).
* :meth:`serve` registers both protocols and runs the reading of every
  inbound graphsync stream inside its own task group (the libp2p handler only
  hands the stream over and waits); leaving ``serve`` unregisters them and
  resets the outbound streams.

py-libp2p is trio-only: run under the trio backend, with the host running
(``open_host``). A stream that sends an oversized or undecodable frame is
reset; the host keeps serving.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import anyio
import anyio.to_thread
from libp2p.abc import IHost, INetConn, INetStream, INetwork
from libp2p.custom_types import TProtocol
from libp2p.network.stream.exceptions import StreamEOF

from datatransfer.ipld.blockstore import Blockstore
from datatransfer.types import PeerID
from transport.base import PeerUnreachable
from transport.carrier import EngineCarrier
from transport.graphsync.engine import (
    DEFAULT_MAX_BACKLOG_BYTES,
    DEFAULT_MAX_QUEUED_PER_PEER,
    DEFAULT_MAX_REQUESTS_PER_PEER,
    GraphsyncEngine,
)
from transport.graphsync.framing import MAX_FRAME, encode_frame_pieces, read_frame
from transport.graphsync.message import (
    MAX_MESSAGE_ITEMS,
    PROTOCOL_ID,
    GraphsyncMessage,
    GraphsyncWireError,
    decode_message,
)
from transport.libp2p.dtnet import DataTransferNetwork, RetryPolicy
from transport.libp2p.host import (
    close_stream,
    forget_failed_dials,
    libp2p_id,
    peer_id_of,
    reset_stream,
)
from transport.libp2p.notifee import QuietNotifee

__all__ = ["GRAPHSYNC_PROTOCOL", "Libp2pTransport"]

log = logging.getLogger(__name__)

GRAPHSYNC_PROTOCOL = TProtocol(PROTOCOL_ID)
#: A read takes whatever the stream holds, up to this. py-libp2p's Yamux keeps
#: a stream's unread bytes in one bytearray: a read that leaves some behind
#: moves them (and every later append may copy them again), so a reader
#: that is a little behind would pay per byte in proportion to its backlog
#: (up to the 16 MiB window: about 2 s of CPU per GiB); taking everything
#: at once empties it.
READ_CHUNK = 16 * 1024 * 1024
#: Largest stream write that py-libp2p sends as one Yamux frame in one Noise
#: message: Noise carries at most 65535 - 16 (MAC) = 65519 plaintext bytes
#: and the Yamux header takes 12. Yamux cuts a larger write into frames of
#: 65524 payload bytes, each of which Noise then sends as two messages (65519
#: + 17 bytes): twice the encryptions, socket writes and reads per byte.
#: Writing in pieces of this size instead makes the same bytes about a third
#: cheaper to move (``python -m benchmarks libp2p`` shows both).
WRITE_PIECE = 65535 - 16 - 12
#: A read that still needs more than :data:`COALESCE_ABOVE` bytes of a frame
#: waits this long first. py-libp2p's Yamux answers every read with a window
#: update (an encrypted frame) crediting what it returned, and the sender
#: then writes about that much: reading each ~10 KB as it lands keeps both
#: sides busy with small frames. Letting a large frame's bytes gather first
#: takes both processes' CPU down by about 1 s/GiB (alternated 256 MiB runs);
#: the frame is late by at most this much per read.
COALESCE = 0.001
COALESCE_ABOVE = 128 * 1024
#: Frames of at least this many bytes are decoded on the event loop only
#: if they hold at most :data:`INLINE_ITEMS` DAG-CBOR items, else in a worker
#: thread (see :meth:`Libp2pTransport._decode`).
DECODE_IN_THREAD = 64 * 1024
#: Items a large frame may hold to be decoded on the event loop: a frame of
#: blocks holds a few dozen; walking this many costs under a millisecond.
INLINE_ITEMS = 1024
#: Block bytes per message this sender batches (go-graphsync's 512 KiB holds
#: a single 256 KiB UnixFS chunk, its 14 bytes of framing making two just
#: too many; this holds three). Every message costs both sides a frame, a
#: lock, a decode and a lane step: alternated 256 MiB runs took about 1 CPU
#: s/GiB off the sender and 1.5 off the receiver. Receivers, Go's
#: included, take frames up to 4 MiB.
MESSAGE_BLOCK_BYTES = 1024 * 1024


def _decode_verified(payload: bytes, max_items: int = MAX_MESSAGE_ITEMS) -> GraphsyncMessage:
    """A frame's message with its blocks hashed and checked."""
    msg = decode_message(payload, verify_blocks=False, max_items=max_items)
    return replace(msg, blocks=tuple(msg.verified_blocks())) if msg.blocks else msg


class _StreamReader:
    """``receive_exact`` over a libp2p stream, buffered.

    Every received byte is copied once on its way out (a slice of the chunk
    it arrived in, or a join of several chunks), and not at all when a read
    returns exactly the bytes asked for: at hundreds of MB/s a whole-frame
    copy costs about as much as the muxer's own per-frame work. Reads for a
    large remainder wait :data:`COALESCE` first (see there).
    """

    __slots__ = ("stream", "chunk", "pos")

    def __init__(self, stream: INetStream) -> None:
        self.stream = stream
        self.chunk = b""  # the last chunk read; bytes before ``pos`` are consumed
        self.pos = 0

    async def _read(self, n: int) -> bytes:
        if n > COALESCE_ABOVE:
            await anyio.sleep(COALESCE)
        try:
            chunk = await self.stream.read(max(n, READ_CHUNK))
        except StreamEOF:
            chunk = b""
        if not chunk:
            raise anyio.EndOfStream
        return chunk

    async def receive_exact(self, n: int) -> bytes:
        chunk, pos = self.chunk, self.pos
        if len(chunk) - pos >= n:
            self.pos = pos + n
            return chunk if pos == 0 and n == len(chunk) else chunk[pos : pos + n]
        parts = [chunk[pos:]] if pos < len(chunk) else []
        have = len(chunk) - pos
        self.chunk, self.pos = b"", 0
        while True:
            chunk = await self._read(n - have)
            need = n - have
            if len(chunk) >= need:
                if len(chunk) > need:
                    self.chunk, self.pos = chunk, need
                    chunk = chunk[:need]
                if not parts:
                    return chunk
                parts.append(chunk)
                return b"".join(parts)
            parts.append(chunk)
            have += len(chunk)


async def _write_pieces(stream: INetStream, pieces: list[bytes]) -> None:
    """Write ``pieces`` as :data:`WRITE_PIECE`-byte writes: views of a large
    piece go out as they are, small pieces and the ends of large ones are
    gathered into one write (copying at most a write's worth per boundary).
    The caller holds the stream's lock, so frames never interleave."""
    pending = b""
    for piece in pieces:
        view = memoryview(piece)
        size = len(view)
        pos = 0
        if pending:
            pos = min(WRITE_PIECE - len(pending), size)
            pending += view[:pos]
            if len(pending) < WRITE_PIECE:
                continue
            await stream.write(pending)
            pending = b""
        while size - pos >= WRITE_PIECE:
            await stream.write(view[pos : pos + WRITE_PIECE])  # type: ignore[arg-type]
            pos += WRITE_PIECE
        if pos < size:
            pending = bytes(view[pos:])
    if pending:
        await stream.write(pending)


class _Outbound:
    __slots__ = ("lock", "stream")

    def __init__(self) -> None:
        self.lock = anyio.Lock()
        self.stream: INetStream | None = None


class Libp2pTransport(EngineCarrier):
    """A :class:`~transport.base.Transport` over a running libp2p host: the
    graphsync engine (:attr:`engine`, the same one the in-memory network
    carries in tests) with its frames on ``/ipfs/graphsync/2.0.0`` streams and
    its data-transfer messages on ``/fil/datatransfer/1.2.0``.

    ``dtnet``: the data-transfer message network to use (one is made from
    ``host`` with ``retry`` when not given). ``open_timeout`` bounds opening
    the graphsync stream to a peer, ``write_timeout`` each frame's write.
    An inbound stream stops being read while more than ``max_backlog_bytes``
    of received blocks wait to be handled (Yamux flow control then holds the
    sender back). ``max_block_bytes``: see :data:`MESSAGE_BLOCK_BYTES`. The
    other options are :class:`GraphsyncEngine`'s.
    """

    def __init__(
        self,
        host: IHost,
        blockstore: Blockstore,
        *,
        dtnet: DataTransferNetwork | None = None,
        retry: RetryPolicy | None = None,
        max_requests_per_peer: int = DEFAULT_MAX_REQUESTS_PER_PEER,
        max_queued_per_peer: int = DEFAULT_MAX_QUEUED_PER_PEER,
        max_block_bytes: int = MESSAGE_BLOCK_BYTES,
        max_frame: int = MAX_FRAME,
        open_timeout: float = 10.0,
        write_timeout: float = 30.0,
        complete_hold: float = 2.0,
        max_backlog_bytes: int = DEFAULT_MAX_BACKLOG_BYTES,
    ) -> None:
        self.host = host
        self.dtnet = dtnet or DataTransferNetwork(host, retry=retry)
        super().__init__(GraphsyncEngine(
            peer_id_of(host),
            blockstore,
            self._send_frame,
            self._send_dt_message,
            max_requests_per_peer=max_requests_per_peer,
            max_queued_per_peer=max_queued_per_peer,
            max_block_bytes=max_block_bytes,
            complete_hold=complete_hold,
            max_backlog_bytes=max_backlog_bytes,
        ))
        self.max_frame = max_frame
        self.open_timeout = open_timeout
        self.write_timeout = write_timeout
        self._out: dict[PeerID, _Outbound] = {}
        self._readers = 0
        self._notifee: _Notifee | None = None

    def _connection_lost(self, peer: PeerID) -> None:
        """The last connection to ``peer`` closed: forget the outbound
        stream, end the channels with it."""
        if self._tg is None:
            return
        try:
            if self.host.get_network().get_connections(libp2p_id(peer)):
                return  # another connection remains
        except Exception:  # noqa: BLE001
            pass
        entry = self._out.pop(peer, None)
        if entry is not None and entry.stream is not None:
            self._tg.start_soon(reset_stream, entry.stream)
        self.engine.peer_lost(peer, f"disconnected: lost connection to {peer}")

    # -- lifecycle -----------------------------------------------------------------

    def _attach(self) -> None:
        self.host.set_stream_handler(GRAPHSYNC_PROTOCOL, self._handle_stream)
        self.dtnet.start(self._on_dt_message)
        if self._tg is not None:
            self._tg.start_soon(self.dtnet.close_idle_streams)
        self._notifee = _Notifee(self)
        self.host.get_network().register_notifee(self._notifee)

    def _detach(self) -> None:
        try:
            self.host.remove_stream_handler(GRAPHSYNC_PROTOCOL)
            self.host.get_network().remove_notifee(self._notifee)
        except Exception:  # noqa: BLE001 - host already closed
            pass
        self.dtnet.stop()
        out, self._out = self._out, {}
        for entry in out.values():
            if entry.stream is not None and self._tg is not None:
                self._tg.start_soon(reset_stream, entry.stream)

    def resources(self) -> dict[str, int]:
        res = super().resources()
        res["inbound_streams"] = self._readers
        return res

    async def drain(self) -> None:
        await self.dtnet.settle()

    def connected(self, peer: PeerID) -> bool:
        try:
            return bool(self.host.get_network().get_connections(libp2p_id(peer)))
        except Exception:  # noqa: BLE001 - host closed, unknown peer
            return False

    # -- data-transfer messages ------------------------------------------------------

    async def _send_dt_message(self, peer: PeerID, message: Any) -> None:
        await self.dtnet.send_message(peer, message)

    async def _on_dt_message(self, sender: PeerID, message: Any) -> None:
        self.engine.handle_dt_message(sender, message)

    # -- graphsync: outbound -----------------------------------------------------------

    async def _send_frame(self, peer: PeerID, msg: GraphsyncMessage) -> None:
        data = encode_frame_pieces(msg, max_size=self.max_frame)
        entry = self._out.get(peer)
        if entry is None:
            entry = self._out[peer] = _Outbound()
        async with entry.lock:
            while True:
                kept = entry.stream
                stream = kept or await self._open_graphsync_stream(peer)
                entry.stream = stream
                try:
                    with anyio.fail_after(self.write_timeout):
                        await _write_pieces(stream, data)
                    return
                except Exception as exc:
                    entry.stream = None
                    await reset_stream(stream)
                    # A kept stream the peer reset (or whose connection died)
                    # while a connection to it remains: once more on a new
                    # stream, as go-graphsync does, or the message is lost
                    # (a lost Cancel leaves Go's response running).
                    if kept is None or isinstance(exc, TimeoutError) or not self.connected(peer):
                        raise PeerUnreachable(
                            f"graphsync stream to {peer} failed: {type(exc).__name__}: {exc}"
                        ) from exc
                    log.debug("graphsync stream to %s failed (%s): on a new stream", peer, exc)

    async def _open_graphsync_stream(self, peer: PeerID) -> INetStream:
        forget_failed_dials(self.host, peer)  # the Manager's restarts pace retries
        try:
            with anyio.fail_after(self.open_timeout):
                return await self.host.new_stream(libp2p_id(peer), [GRAPHSYNC_PROTOCOL])
        except Exception as exc:  # dial / negotiation failures, timeouts
            raise PeerUnreachable(
                f"cannot open a graphsync stream to {peer}: {type(exc).__name__}: {exc}"
            ) from exc

    # -- graphsync: inbound ------------------------------------------------------------

    async def _decode(self, payload: bytes) -> GraphsyncMessage:
        """Decode a frame and verify its blocks (each CID rebuilt by hashing).

        Decoding a hostile frame costs at most a walk over its heads (at most
        :data:`~transport.graphsync.message.MAX_MESSAGE_ITEMS` of them, about
        0.4 us each): a frame under :data:`DECODE_IN_THREAD` bytes is decoded
        inline, a larger one inline too if it holds at most
        :data:`INLINE_ITEMS` items (a frame of blocks: its cost is hashing
        them, which a thread would not make cheaper: a hop to a worker
        thread and back costs about as much CPU as hashing a 256 KiB block,
        and measured in two processes on two cores, decoding inline moved
        blocks faster with less CPU), else in a worker thread, where the
        walk gives the GIL back every few milliseconds instead of stalling
        every other peer. A frame that does not decode or verify is counted
        in ``stats.bad_frames`` and raises :class:`GraphsyncWireError`.
        """
        try:
            if len(payload) < DECODE_IN_THREAD:
                return _decode_verified(payload)
            try:
                return _decode_verified(payload, INLINE_ITEMS)
            except GraphsyncWireError:  # more items (or bad): the whole walk, apart
                return await anyio.to_thread.run_sync(_decode_verified, payload)
        except GraphsyncWireError:
            self.stats.bad_frames += 1
            raise

    async def _handle_stream(self, stream: INetStream) -> None:
        """libp2p's handler: hand the stream to our task group, wait for it."""
        tg = self._tg
        if tg is None:
            await reset_stream(stream)
            return
        done = anyio.Event()
        tg.start_soon(self._read_stream, stream, done)
        await done.wait()

    async def _read_stream(self, stream: INetStream, done: anyio.Event) -> None:
        self._readers += 1
        try:
            sender = PeerID(stream.muxed_conn.peer_id.to_bytes())
            reader = _StreamReader(stream)
            while True:
                try:
                    payload = await read_frame(reader.receive_exact, self.max_frame)
                except GraphsyncWireError as exc:
                    self.refusals.refuse("bad-frame", f"graphsync stream from {sender} refused: {exc}")
                    self.stats.bad_frames += 1
                    await reset_stream(stream)
                    return
                except Exception as exc:  # noqa: BLE001 - reset by the peer, lost connection
                    log.debug("graphsync stream from %s broke: %s", sender, exc)
                    return
                if payload is None:
                    await close_stream(stream)
                    return
                try:
                    msg = await self._decode(payload)
                except GraphsyncWireError as exc:
                    self.refusals.refuse("malformed-message",
                                         f"malformed graphsync message from {sender}: {exc}")
                    await reset_stream(stream)
                    return
                try:
                    self.engine.handle_message(sender, msg)
                except Exception as exc:  # noqa: BLE001 - a peer's input must not end the node
                    self.stats.lane_errors += 1
                    self.refusals.refuse("error",
                                         f"graphsync message from {sender} refused: {exc!r}")
                    await reset_stream(stream)
                    return
                await self.engine.wait_backlog()
        finally:
            self._readers -= 1
            done.set()


class _Notifee(QuietNotifee):
    """Tells the transport when a peer's last connection closes."""

    def __init__(self, transport: Libp2pTransport) -> None:
        self.transport = transport

    async def disconnected(self, network: INetwork, conn: INetConn) -> None:
        try:
            peer = PeerID(conn.muxed_conn.peer_id.to_bytes())
        except Exception:  # noqa: BLE001
            return
        self.transport._connection_lost(peer)
