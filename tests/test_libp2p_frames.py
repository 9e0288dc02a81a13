"""The libp2p transport's frame paths, without a network: the buffered
reader, in-place frame encoding and block verification off the event loop
(the throughput work of issue 5; see ``python -m benchmarks network``)."""

from __future__ import annotations

import random
import threading
from types import SimpleNamespace
from typing import Any

import anyio
import pytest
from trio.testing import MockClock

import transport.graphsync.message as gsmessage
from datatransfer.ipld import dagcbor
from datatransfer.ipld.block import Block
from datatransfer.ipld.blockstore import MemoryBlockstore
from datatransfer.ipld.cid import CID
from transport.graphsync.framing import encode_frame, encode_frame_pieces
from transport.graphsync.message import (
    GraphsyncMessage,
    GraphsyncResponse,
    GraphsyncWireError,
    LinkMetadatum,
    RawBlock,
    encode_message,
)
from transport.graphsync.status import LinkAction, ResponseStatus
from transport.libp2p.transport import (
    COALESCE,
    COALESCE_ABOVE,
    DECODE_IN_THREAD,
    INLINE_ITEMS,
    WRITE_PIECE,
    Libp2pTransport,
    _StreamReader,
    _write_pieces,
)

pytestmark = pytest.mark.anyio

RAW = 0x55
BIG = bytes(range(256)) * 40  # 10 KiB: over dagcbor's 4 KiB in-place threshold


@pytest.fixture
def anyio_backend() -> str:
    return "trio"


class _ChunkStream:
    """A stream whose reads return the given chunks, then EOF."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = list(chunks)

    async def read(self, n: int | None = None) -> bytes:
        return self.chunks.pop(0) if self.chunks else b""


class _TrickleStream:
    """A stream receiving ``piece`` bytes every ``every`` seconds (the
    sender's frames landing one by one); a read returns what has landed."""

    def __init__(self, total: int, piece: int, every: float) -> None:
        self.left, self.piece, self.every = total, piece, every
        self.landed = bytearray()
        self.arrived = anyio.Event()
        self.reads = 0

    async def produce(self) -> None:
        while self.left:
            await anyio.sleep(self.every)
            k = min(self.piece, self.left)
            self.landed += bytes(k)
            self.left -= k
            self.arrived.set()

    async def read(self, n: int | None = None) -> bytes:
        while not self.landed:
            self.arrived = anyio.Event()
            await self.arrived.wait()
        self.reads += 1
        out = bytes(self.landed[:n])
        del self.landed[:n]
        return out


class _StubHost:
    def get_id(self) -> Any:
        return SimpleNamespace(to_bytes=lambda: b"\x00\x06peer-a")


def _message(*sizes: int, seed: int = 0) -> GraphsyncMessage:
    rng = random.Random(seed)
    blocks = []
    for size in sizes:
        data = rng.randbytes(size)
        blocks.append(Block._hashed(CID.of(data, codec=RAW), data))
    meta = tuple(LinkMetadatum(b.cid, LinkAction.PRESENT) for b in blocks)
    rsp = GraphsyncResponse(b"\x07" * 16, ResponseStatus.PARTIAL_RESPONSE, meta, {})
    return GraphsyncMessage(responses=(rsp,), blocks=tuple(blocks))


# -- _StreamReader -------------------------------------------------------------------


async def test_reader_takes_everything_buffered_in_one_read() -> None:
    """A reader behind by megabytes empties the muxer's buffer in one read:
    py-libp2p's Yamux moves what a partial read leaves behind, each time."""
    stream = _TrickleStream(4 << 20, 4 << 20, 0)  # all of it landed at once
    reader = _StreamReader(stream)  # type: ignore[arg-type]
    async with anyio.create_task_group() as tg:
        tg.start_soon(stream.produce)
        for _ in range(16):  # sixteen 256 KiB frames
            assert await reader.receive_exact(256 * 1024) == bytes(256 * 1024)
    assert stream.reads == 1


@pytest.mark.parametrize(
    "anyio_backend",
    [pytest.param(("trio", {"clock": MockClock(autojump_threshold=0)}), id="trio-mockclock")],
)
async def test_reader_lets_a_large_frames_bytes_gather_before_reading() -> None:
    """Virtual time: 1 MiB landing in 16 KiB pieces every 0.2 ms. Read as
    they land, that is 64 reads (64 window updates the sender answers with
    64 small frames); waiting COALESCE before each large read takes a few
    pieces at a time, and the remainder under COALESCE_ABOVE as it lands."""
    total, piece = 1 << 20, 16 * 1024
    stream = _TrickleStream(total, piece, COALESCE / 5)
    reader = _StreamReader(stream)  # type: ignore[arg-type]
    async with anyio.create_task_group() as tg:
        tg.start_soon(stream.produce)
        assert await reader.receive_exact(total) == bytes(total)
    as_they_land = total // piece
    gathered = (total - COALESCE_ABOVE) // (5 * piece) + COALESCE_ABOVE // piece
    assert stream.reads <= gathered + 2 < as_they_land


@pytest.mark.parametrize("seed", range(5))
async def test_reader_returns_exact_bytes_whatever_the_chunking(seed: int) -> None:
    rng = random.Random(seed)
    data = rng.randbytes(50_000)
    cuts = sorted(rng.sample(range(1, len(data)), 40))
    chunks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    reader = _StreamReader(_ChunkStream(chunks))  # type: ignore[arg-type]
    got, pos = [], 0
    while pos < len(data):
        n = min(rng.choice([1, 2, 7, 100, 3000, 20_000]), len(data) - pos)
        part = await reader.receive_exact(n)
        assert len(part) == n
        got.append(part)
        pos += n
    assert b"".join(got) == data
    with pytest.raises(anyio.EndOfStream):
        await reader.receive_exact(1)


async def test_reader_hands_over_a_whole_chunk_without_copying_it() -> None:
    body = bytes(range(256)) * 4096
    reader = _StreamReader(_ChunkStream([b"\x05", body]))  # type: ignore[arg-type]
    assert await reader.receive_exact(1) == b"\x05"
    assert await reader.receive_exact(len(body)) is body


async def test_reader_raises_end_of_stream_inside_a_read() -> None:
    reader = _StreamReader(_ChunkStream([b"abc"]))  # type: ignore[arg-type]
    with pytest.raises(anyio.EndOfStream):
        await reader.receive_exact(4)


# -- encode_frame_pieces, _write_pieces --------------------------------------------------------


class _WriteStream:
    def __init__(self) -> None:
        self.writes: list[Any] = []

    async def write(self, data: Any) -> None:
        self.writes.append(data)


@pytest.mark.parametrize("sizes", [(), (0,), (100,), (20_000,), (1 << 20,), (300, 1 << 21)])
async def test_frames_are_written_in_noise_sized_pieces_without_copying_blocks(
    sizes: tuple[int, ...],
) -> None:
    msg = _message(*sizes)
    pieces = encode_frame_pieces(msg, max_size=1 << 23)
    frame = encode_frame(msg, max_size=1 << 23)
    assert b"".join(pieces) == frame
    stream = _WriteStream()
    await _write_pieces(stream, pieces)  # type: ignore[arg-type]
    assert b"".join(bytes(w) for w in stream.writes) == frame
    assert all(len(w) == WRITE_PIECE for w in stream.writes[:-1])
    assert 0 < len(stream.writes[-1]) <= WRITE_PIECE
    big = [b.data for b in msg.blocks if len(b.data) >= 2 * WRITE_PIECE]
    views = [w for w in stream.writes if isinstance(w, memoryview)]
    assert {id(v.obj) for v in views} == {id(d) for d in big}  # blocks written in place
    for data in big:
        assert sum(len(v) for v in views if v.obj is data) >= len(data) - 2 * WRITE_PIECE


def test_frame_over_the_limit_is_refused_before_sending() -> None:
    msg = _message(1000)
    size = len(encode_message(msg))
    assert len(b"".join(encode_frame_pieces(msg, max_size=size))) > size
    with pytest.raises(GraphsyncWireError, match=f"message of {size} bytes exceeds"):
        encode_frame_pieces(msg, max_size=size - 1)


def test_encode_segments_joins_to_encode_and_keeps_large_strings_whole() -> None:
    value = {"a": [1, BIG, None, b"small"], "bb": {"c": -5, "d": "text", "e": BIG[:4096]}}
    pieces = dagcbor.encode_segments(value)
    assert b"".join(pieces) == dagcbor.encode(value)
    assert sum(p is BIG for p in pieces) == 1 and not any(p == b"small" for p in pieces)
    assert dagcbor.encode_segments(b"") == [b"\x40"]


def test_encode_into_appends_what_encode_returns() -> None:
    value = {"a": [1, b"\x00" * 100_000, None], "bb": {"c": -5, "d": "text"}}
    out = bytearray(b"head")
    dagcbor.encode_into(value, out)
    assert bytes(out) == b"head" + dagcbor.encode(value)
    assert dagcbor.decode(bytes(out[4:])) == value


# -- block verification ----------------------------------------------------------------


def _recording_hash(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Record, for each block hashed, whether it ran on the main thread."""
    on_main: list[bool] = []
    real = gsmessage.block_from_wire

    def block_from_wire(prefix: Any, data: Any) -> Block:
        on_main.append(threading.current_thread() is threading.main_thread())
        return real(prefix, data)

    monkeypatch.setattr(gsmessage, "block_from_wire", block_from_wire)
    return on_main


async def test_large_frames_of_blocks_are_hashed_inline_and_many_items_go_to_a_thread(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A large frame holding few items costs its hashing, which a thread
    hop would not make cheaper: decoded inline. One holding more than
    INLINE_ITEMS items (a walk a hostile peer could make long) is decoded
    in a worker thread."""
    transport = Libp2pTransport(_StubHost(), MemoryBlockstore())  # type: ignore[arg-type]
    on_main = _recording_hash(monkeypatch)
    msg = _message(DECODE_IN_THREAD, 10)
    got = await transport._decode(encode_message(msg))
    assert got == msg
    assert all(type(b) is Block for b in got.blocks)
    assert on_main == [True, True]
    many = _message(DECODE_IN_THREAD, *[10] * (INLINE_ITEMS // 3))
    got = await transport._decode(encode_message(many))
    assert got == many
    assert on_main[2:] == [False] * len(many.blocks)  # refused inline before any hashing
    small = _message(100)
    assert await transport._decode(encode_message(small)) == small
    assert on_main[-1] is True
    assert transport.stats.bad_frames == 0


async def test_blocks_get_the_cid_of_their_bytes_and_bad_prefixes_are_refused() -> None:
    transport = Libp2pTransport(_StubHost(), MemoryBlockstore())  # type: ignore[arg-type]
    for size in (100, 2 * DECODE_IN_THREAD):  # a small frame, a large one of few items
        good = _message(size)
        (block,) = good.blocks
        tampered = bytes(size)
        got = await transport._decode(encode_message(
            GraphsyncMessage(good.requests, good.responses, (RawBlock(block.cid.prefix, tampered),))
        ))
        assert got.blocks == (Block._hashed(CID.of(tampered, codec=RAW), tampered),)
        assert got.blocks[0].cid != block.cid  # so the receiver will not take it
        unknown_hash = block.cid.prefix[:2] + b"\x7f\x20"
        with pytest.raises(GraphsyncWireError, match="bad CID prefix"):
            await transport._decode(encode_message(
                GraphsyncMessage(good.requests, good.responses, (RawBlock(unknown_hash, tampered),))
            ))
    assert transport.stats.bad_frames == 2
    with pytest.raises(GraphsyncWireError):
        await transport._decode(b"\xa1\x63gs2\x01")
    assert transport.stats.bad_frames == 3


# -- DAG-CBOR canonical check with large byte strings ------------------------------------


def test_large_byte_strings_decode_through_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_reference(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the reference decoder ran")

    monkeypatch.setattr(dagcbor, "_decode_reference", no_reference)
    value = {"a": [BIG, b"x", BIG[:5000]], "bb": {"c": BIG[::-1]}, "ccc": 7}
    assert dagcbor.decode(dagcbor.encode(value)) == value
    msg = _message(1 << 20, 3, 20_000)
    assert gsmessage.decode_message(encode_message(msg)) == msg


@pytest.mark.parametrize(
    "data",
    [
        # a 10 KiB string with a 4-byte length head where 2 bytes suffice
        b"\x5a" + len(BIG).to_bytes(4, "big") + BIG,
        # trailing byte after the string
        dagcbor.encode(BIG) + b"\x00",
        # keys out of canonical order ("bb" before "a"), large values
        b"\xa2\x62bb" + dagcbor.encode(BIG) + b"\x61a" + dagcbor.encode(BIG),
        # the second of two large strings with a non-minimal head
        b"\x82" + dagcbor.encode(BIG) + b"\x5b" + len(BIG).to_bytes(8, "big") + BIG,
    ],
    ids=["long-head", "trailing", "key-order", "second-long-head"],
)
def test_non_canonical_input_around_large_byte_strings_is_refused(data: bytes) -> None:
    with pytest.raises(dagcbor.DagCborError):
        dagcbor.decode(data)
    with pytest.raises(dagcbor.DagCborError):
        dagcbor.decode(memoryview(data))
