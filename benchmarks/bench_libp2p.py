"""Loopback throughput of a bare py-libp2p stream (TCP + Noise + Yamux).

Two hosts in one process (trio), one stream, 64 MiB (quick: 16 MiB) written
and read to the end: the ceiling any transfer over py-libp2p can reach on
this machine, and the baseline issue 5's targets are measured against. The
writes are :data:`~transport.libp2p.transport.WRITE_PIECE` bytes, as the
graphsync transport writes: each goes out as one Yamux frame in one Noise
message (larger writes are cut by Yamux into frames Noise must split in
two; the same bytes in 256 KiB writes are shown beside it). Also the same
bytes over a plain trio TCP socket on loopback (what Noise + Yamux +
py-libp2p cost), and the rate of data-transfer messages sent one stream
each, waiting for the receipt.
"""

from __future__ import annotations

import tempfile
import time
from functools import partial
from pathlib import Path

import trio

from benchmarks._report import Reporter, deadline
from datatransfer.messages import update_request
from datatransfer.types import PeerID
from transport.libp2p import (
    DataTransferNetwork,
    connect,
    libp2p_id,
    load_or_create_identity,
    open_host,
    peer_addrs,
)
from transport.libp2p.transport import WRITE_PIECE

LOCAL = ("/ip4/127.0.0.1/tcp/0",)
PROTOCOL = "/bench/bulk/1.0.0"
WRITE = 256 * 1024
MIB = 1024 * 1024


async def _libp2p_stream(total: int, home: Path, piece: int = WRITE_PIECE) -> float:
    """MiB/s of ``total`` bytes over one libp2p stream in ``piece``-byte
    writes (views of one buffer: no copies)."""
    done = trio.Event()
    received = 0

    async def sink(stream) -> None:  # type: ignore[no-untyped-def]
        nonlocal received
        try:
            while True:
                chunk = await stream.read(WRITE)
                if not chunk:
                    break
                received += len(chunk)
        except Exception:
            pass
        await stream.close()
        done.set()

    key_a = load_or_create_identity(home / "a")
    key_b = load_or_create_identity(home / "b")
    async with open_host(key_a, LOCAL) as a, open_host(key_b, LOCAL) as b:
        b.set_stream_handler(PROTOCOL, sink)
        await connect(a, peer_addrs(b)[0])
        stream = await a.new_stream(b.get_id(), [PROTOCOL])
        block = memoryview(b"\xa5" * piece)
        start = time.perf_counter()
        left = total
        while left:
            n = min(piece, left)
            await stream.write(block[:n])  # type: ignore[arg-type]
            left -= n
        await stream.close()
        with deadline("the bare stream's reader"):
            await done.wait()
        elapsed = time.perf_counter() - start
    if received != total:
        raise RuntimeError(f"received {received} of {total} bytes")
    return total / MIB / elapsed


async def _tcp_socket(total: int) -> float:
    """MB/s of ``total`` bytes over a plain trio TCP socket on loopback."""
    done = trio.Event()

    async def sink(stream: trio.SocketStream) -> None:
        got = 0
        while chunk := await stream.receive_some(WRITE):
            got += len(chunk)
        if got != total:
            raise RuntimeError(f"received {got} of {total} bytes")
        done.set()

    async with trio.open_nursery() as nursery:
        (listener,) = await nursery.start(
            partial(trio.serve_tcp, sink, 0, host="127.0.0.1")  # type: ignore[arg-type]
        )
        port = listener.socket.getsockname()[1]
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        block = b"\xa5" * WRITE
        start = time.perf_counter()
        for _ in range(total // WRITE):
            await stream.send_all(block)
        await stream.send_eof()
        with deadline("the TCP socket's reader"):
            await done.wait()
        elapsed = time.perf_counter() - start
        await stream.aclose()
        nursery.cancel_scope.cancel()
    return total / MIB / elapsed


async def _messages(count: int, home: Path) -> float:
    """Data-transfer messages per second, one stream each, with receipts."""
    got = 0

    async def on_message(sender: PeerID, message: object) -> None:
        nonlocal got
        got += 1

    async with (
        open_host(load_or_create_identity(home / "c"), LOCAL) as a,
        open_host(load_or_create_identity(home / "d"), LOCAL) as b,
    ):
        net_a = DataTransferNetwork(a, on_message)
        net_b = DataTransferNetwork(b, on_message)
        net_b.start()
        await connect(a, peer_addrs(b)[0])
        peer = PeerID(libp2p_id(b.get_id()).to_bytes())
        message = update_request(1, paused=True)
        await net_a.send_message(peer, message, wait_for_receipt=True)  # warm up
        start = time.perf_counter()
        for _ in range(count):
            await net_a.send_message(peer, message, wait_for_receipt=True)
        elapsed = time.perf_counter() - start
    if got != count + 1:
        raise RuntimeError(f"received {got} of {count + 1} messages")
    return count / elapsed


def run(report: Reporter, quick: bool) -> None:
    size = (16 if quick else 64) * MIB
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        tcp = trio.run(_tcp_socket, size)
        bare = trio.run(_libp2p_stream, size, home)
        report.line(
            f"libp2p stream (Noise+Yamux), {size // MIB} MiB",
            bare,
            "MiB/s",
            "plain TCP socket",
            tcp,
        )
        coarse = trio.run(_libp2p_stream, size, home, WRITE)
        report.line("  same, 256 KiB writes", coarse, "MiB/s",
                    f"{WRITE_PIECE}-byte writes", bare)
        rate = trio.run(_messages, 50 if quick else 200, home)
        report.line("dt message, own stream + receipt", rate, "msg/s")


if __name__ == "__main__":
    import sys

    run(Reporter(), "--quick" in sys.argv)
