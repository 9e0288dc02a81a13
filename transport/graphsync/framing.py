"""Graphsync frames: ``uvarint(length) || DAG-CBOR message``, many per stream.

go-graphsync reads frames with go-msgio's varint reader limited to
``network.MessageSizeMax`` (``1 << 22`` = 4 MiB): a declared length above
that fails the stream *before* the body is read; exactly 4 MiB is allowed.
The length varint must be minimal (go-varint refuses padding). A zero-length
frame reads as an empty message, which fails to decode.

Go's ``handleNewStream`` sets a 10 s read deadline before reading each
message and clears it after (its writes get ``SendMessageTimeout``, 10
minutes by default). That deadline also covers the wait *before* a frame, so
a Go reader resets a stream that stays idle for 10 s. :func:`read_frame`
keeps Go's 10 s (:data:`FRAME_READ_TIMEOUT`) but starts it at a frame's first
byte: idle time between frames is allowed (a paused transfer's stream sits
silent for long), a peer that starts a frame and then stalls (a slowloris)
gets :class:`FrameTimeout`.

Three ways to read frames, all refusing an oversized frame from its header:

* :func:`read_frame` / :func:`read_message` -- async, over a callable that
  reads exactly ``n`` bytes (e.g. anyio's ``BufferedByteReceiveStream.receive_exactly``);
* :class:`FrameDecoder` -- push bytes in as they arrive, get whole frames out;
* :func:`split_frames` -- a complete buffer, for tests and files
  (:func:`split_frame_pieces` -- the same, for a frame made of pieces).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio

from datatransfer.ipld.varint import MAX_VARINT_BYTES, encode_uvarint
from transport.graphsync.message import (
    GraphsyncMessage,
    GraphsyncWireError,
    decode_message,
    encode_message_segments,
)

__all__ = [
    "FRAME_READ_TIMEOUT",
    "MAX_FRAME",
    "FrameDecoder",
    "FrameTimeout",
    "encode_frame",
    "frame",
    "read_frame",
    "read_message",
    "split_frame_pieces",
    "split_frames",
]

#: Go's reader limit for one frame's payload (``network.MessageSizeMax``).
MAX_FRAME = 1 << 22
#: Seconds a frame may take from its first byte to its last (Go's read
#: deadline per message, which Go starts before the first byte).
FRAME_READ_TIMEOUT = 10.0


class FrameTimeout(GraphsyncWireError):
    """A frame began but did not complete within the read deadline: the
    peer stalled mid-frame. A :class:`GraphsyncWireError`, so a reader
    that resets the stream on bad frames resets it for this too."""


def frame(payload: bytes | bytearray | memoryview, *, max_size: int | None = MAX_FRAME) -> bytes:
    """Prefix ``payload`` with its uvarint length.

    Refuses (:class:`GraphsyncWireError`) a payload over ``max_size``: a Go
    peer would reset the stream on reading its header. ``max_size=None``
    disables the check.
    """
    return _prefix(len(payload), max_size) + bytes(payload)


def _prefix(n: int, max_size: int | None) -> bytes:
    """The uvarint length prefix of an ``n``-byte payload, refused over ``max_size``."""
    if max_size is not None and n > max_size:
        raise GraphsyncWireError(f"message of {n} bytes exceeds the {max_size}-byte frame limit")
    return encode_uvarint(n)


def encode_frame(msg: GraphsyncMessage, *, max_size: int | None = MAX_FRAME) -> bytes:
    """:func:`encode_message` then :func:`frame`: what Go's ``ToNet`` writes
    (joined from :func:`encode_frame_pieces`: each block's data is copied
    once, not once per step)."""
    return b"".join(encode_frame_pieces(msg, max_size=max_size))


def encode_frame_pieces(msg: GraphsyncMessage, *, max_size: int | None = MAX_FRAME) -> list[bytes]:
    """:func:`encode_frame`'s bytes as pieces that concatenate to them: the
    length prefix joined to the first piece of the message, and each large
    block's data a piece of its own, not copied
    (:func:`~transport.graphsync.message.encode_message_segments`), so a
    sender writes megabytes of blocks without building one frame."""
    pieces = encode_message_segments(msg)
    pieces[0] = _prefix(sum(len(p) for p in pieces), max_size) + pieces[0]
    return pieces


class _Header:
    """Incremental uvarint length parser that refuses early.

    The value can only grow with further bytes, so it is refused as soon as
    the bits seen so far exceed the limit.
    """

    __slots__ = ("value", "shift", "count", "max_size")

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self.value = 0
        self.shift = 0
        self.count = 0

    def push(self, byte: int) -> int | None:
        """Take one header byte; the length once complete, else None."""
        self.count += 1
        if self.count > MAX_VARINT_BYTES:
            raise GraphsyncWireError("frame length varint longer than 9 bytes")
        self.value |= (byte & 0x7F) << self.shift
        self.shift += 7
        if self.value > self.max_size:
            raise GraphsyncWireError(
                f"frame declares more than {self.max_size} bytes (at least {self.value})"
            )
        if byte & 0x80:
            return None
        if byte == 0 and self.count > 1:
            raise GraphsyncWireError("frame length varint is not minimally encoded")
        return self.value


class FrameDecoder:
    """Push-style frame reader: :meth:`feed` bytes, get complete payloads.

    A header declaring more than ``max_size`` raises :class:`GraphsyncWireError`
    as soon as enough of it has arrived, without waiting for (or buffering)
    the body. After an error the decoder stays failed. :meth:`close` at the
    end of the stream raises if it stopped inside a frame.
    """

    def __init__(self, max_size: int = MAX_FRAME) -> None:
        if max_size < 0:
            raise ValueError("max_size must be non-negative")
        self.max_size = max_size
        self._header = _Header(max_size)
        self._need: int | None = None  # body length once the header is complete
        self._buf = bytearray()
        self._error: GraphsyncWireError | None = None

    @property
    def at_boundary(self) -> bool:
        """True when no partial frame is buffered."""
        return self._need is None and self._header.count == 0

    @property
    def buffered(self) -> int:
        """Bytes of the current partial frame's body held so far."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """Consume ``data``; return the payloads of the frames it completed."""
        if self._error is not None:
            raise self._error
        try:
            return self._feed(memoryview(data).cast("B"))
        except GraphsyncWireError as exc:
            self._error = exc
            raise

    def _feed(self, view: memoryview) -> list[bytes]:
        out: list[bytes] = []
        pos, end = 0, len(view)
        while pos < end:
            if self._need is None:
                length = self._header.push(view[pos])
                pos += 1
                if length is None:
                    continue
                self._need = length
            take = min(self._need - len(self._buf), end - pos)
            self._buf += view[pos : pos + take]
            pos += take
            if len(self._buf) == self._need:
                out.append(bytes(self._buf))
                self._buf.clear()
                self._need = None
                self._header = _Header(self.max_size)
        return out

    def close(self) -> None:
        """Declare the end of the stream; raise if a frame is incomplete."""
        if self._error is not None:
            raise self._error
        if not self.at_boundary:
            self._error = GraphsyncWireError("stream ended inside a frame")
            raise self._error


def split_frames(data: bytes | bytearray | memoryview, *, max_size: int = MAX_FRAME) -> list[bytes]:
    """All frame payloads in ``data``, which must end on a frame boundary
    (each payload copied once, straight out of ``data``)."""
    view = memoryview(data).cast("B")
    frames: list[bytes] = []
    pos, end = 0, len(view)
    while pos < end:
        header = _Header(max_size)
        length = None
        while length is None:
            if pos == end:
                raise GraphsyncWireError("stream ended inside a frame")
            length = header.push(view[pos])
            pos += 1
        if end - pos < length:
            raise GraphsyncWireError("stream ended inside a frame")
        frames.append(bytes(view[pos:pos + length]))
        pos += length
    return frames


def split_frame_pieces(pieces: list[bytes], *, max_size: int = MAX_FRAME) -> list[list[bytes]]:
    """:func:`split_frames` of ``b"".join(pieces)`` (the same payloads, the
    same refusals), each payload as a list of pieces: the pieces of one
    frame as :func:`encode_frame_pieces` gives them come out as its
    payload's pieces, the large ones not copied (for
    :func:`~transport.graphsync.message.decode_message`); anything else is
    joined and split, each payload a list of one piece."""
    first = pieces[0] if pieces else b""
    header = _Header(max_size)
    length = None
    pos = 0
    try:
        while length is None and pos < len(first):
            length = header.push(first[pos])
            pos += 1
    except GraphsyncWireError:
        length = None  # split_frames gives the verdict below
    if length is not None and sum(len(p) for p in pieces) - pos == length:
        return [[first[pos:], *pieces[1:]]]
    return [[payload] for payload in split_frames(b"".join(pieces), max_size=max_size)]


ReceiveExact = Callable[[int], Awaitable[bytes]]


async def _receive(receive_exact: ReceiveExact, n: int) -> bytes | None:
    """``n`` bytes, or None when the stream ended first."""
    try:
        data = await receive_exact(n)
    except (anyio.IncompleteRead, anyio.EndOfStream):
        return None
    if len(data) != n:
        return None
    return bytes(data)


async def read_frame(
    receive_exact: ReceiveExact,
    max_size: int = MAX_FRAME,
    *,
    frame_timeout: float | None = FRAME_READ_TIMEOUT,
) -> bytes | None:
    """Read one frame's payload with ``receive_exact(n)``.

    ``receive_exact`` returns exactly ``n`` bytes; a shorter result (or
    anyio's ``IncompleteRead``/``EndOfStream``) means the stream ended.
    Returns None on a clean end before a new frame; raises
    :class:`GraphsyncWireError` for an end inside a frame, a bad length
    varint, or a length over ``max_size`` -- then before reading the body.
    Waiting for a frame's first byte has no limit; from it on, the whole
    frame must arrive within ``frame_timeout`` seconds (None: no limit), else
    :class:`FrameTimeout` (the caller resets the stream: its position is lost).
    Other exceptions from ``receive_exact`` propagate unchanged.
    """
    first = await _receive(receive_exact, 1)
    if first is None:
        return None
    if frame_timeout is None:
        return await _read_rest(receive_exact, max_size, first[0])
    with anyio.move_on_after(frame_timeout):
        return await _read_rest(receive_exact, max_size, first[0])
    raise FrameTimeout(
        f"frame started but not complete within {frame_timeout:g} s (peer stalled mid-frame)"
    )


async def _read_rest(receive_exact: ReceiveExact, max_size: int, first: int) -> bytes:
    """The rest of a frame whose first header byte is ``first``."""
    header = _Header(max_size)
    length = header.push(first)
    while length is None:
        b = await _receive(receive_exact, 1)
        if b is None:
            raise GraphsyncWireError("stream ended inside a frame header")
        length = header.push(b[0])
    if length == 0:
        return b""
    body = await _receive(receive_exact, length)
    if body is None:
        raise GraphsyncWireError(f"stream ended inside a {length}-byte frame")
    return body


async def read_message(
    receive_exact: ReceiveExact,
    max_size: int = MAX_FRAME,
    *,
    verify_blocks: bool = True,
    frame_timeout: float | None = FRAME_READ_TIMEOUT,
) -> GraphsyncMessage | None:
    """:func:`read_frame` then :func:`decode_message`; None on a clean end."""
    payload = await read_frame(receive_exact, max_size, frame_timeout=frame_timeout)
    if payload is None:
        return None
    return decode_message(payload, verify_blocks=verify_blocks)
