"""A bare py-libp2p stream between two processes: the ceiling the deploy
benchmark (:mod:`benchmarks.bench_deploy`) compares transfers against.

The host is the one the node runs (``transport.libp2p.open_host``: TCP +
Noise + Yamux) and writes are :data:`~transport.libp2p.transport.WRITE_PIECE`
bytes, as the graphsync transport writes::

    python -m benchmarks._stream serve --home DIR      # prints its address
    python -m benchmarks._stream get ADDR N --home DIR # the server sends N bytes
    python -m benchmarks._stream put ADDR N --home DIR # this process sends N bytes

A client asks with one 9-byte header (``g`` or ``p``, then N as 8 bytes big
endian). For ``put`` the server answers one byte once it has read all N, so
the client's exit means every byte arrived. The client prints ``DONE N``.
"""

from __future__ import annotations

import argparse
import atexit
import gc
import os
import signal
import sys
from pathlib import Path
from typing import Any

import trio

from transport.libp2p import connect, libp2p_id, load_or_create_identity, open_host, peer_addrs
from transport.libp2p.transport import WRITE_PIECE

PROTOCOL = "/bench/stream/1.0.0"
LOCAL = "/ip4/127.0.0.1/tcp/0"
READ = 256 * 1024
HEADER = 9


class StreamError(RuntimeError):
    """The stream ended before the bytes it was to carry."""


async def _read_exactly(stream: Any, n: int) -> bytes:
    parts = []
    while n:
        chunk = await stream.read(min(n, READ))
        if not chunk:
            raise StreamError(f"stream ended {n} bytes short")
        parts.append(chunk)
        n -= len(chunk)
    return b"".join(parts)


async def _drain(stream: Any, n: int) -> int:
    """Read ``n`` bytes (fewer if the stream ends), keeping none of them."""
    got = 0
    while got < n:
        chunk = await stream.read(min(n - got, READ))
        if not chunk:
            break
        got += len(chunk)
    return got


async def _send(stream: Any, n: int) -> None:
    """Write ``n`` bytes as WRITE_PIECE-byte views of one random buffer."""
    piece = memoryview(os.urandom(WRITE_PIECE))
    while n:
        k = min(WRITE_PIECE, n)
        await stream.write(piece[:k])
        n -= k


async def _handle(stream: Any) -> None:
    try:
        header = await _read_exactly(stream, HEADER)
        n = int.from_bytes(header[1:], "big")
        if header[:1] == b"g":
            await _send(stream, n)
        else:
            got = await _drain(stream, n)
            await stream.write(b"k" if got == n else b"x")
        await stream.close()
    except Exception as exc:  # noqa: BLE001 - one client's failure is its own
        print(f"stream failed: {exc}", file=sys.stderr, flush=True)


async def serve(home: Path) -> None:
    async with open_host(load_or_create_identity(home), (LOCAL,)) as host:
        host.set_stream_handler(PROTOCOL, _handle)
        print(peer_addrs(host)[0], flush=True)
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                break


async def client(mode: str, addr: str, n: int, home: Path) -> None:
    async with open_host(load_or_create_identity(home), (LOCAL,)) as host:
        peer = await connect(host, addr)
        stream = await host.new_stream(libp2p_id(peer), [PROTOCOL])
        await stream.write((b"g" if mode == "get" else b"p") + n.to_bytes(8, "big"))
        if mode == "get":
            got = await _drain(stream, n)
        else:
            await _send(stream, n)
            got = n if await _read_exactly(stream, 1) == b"k" else -1
        await stream.close()
    if got != n:
        raise StreamError(f"{mode}: {got} of {n} bytes arrived")
    print(f"DONE {got}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks._stream")
    parser.add_argument("mode", choices=("serve", "get", "put"))
    parser.add_argument("addr", nargs="?")
    parser.add_argument("size", nargs="?", type=int)
    parser.add_argument("--home", type=Path, required=True)
    args = parser.parse_args()
    args.home.mkdir(parents=True, exist_ok=True)
    # as the `datatransfer` command does (datatransfer.cli): no collection of
    # py-libp2p's heap at exit, which would be timed as part of the transfer
    atexit.register(gc.freeze)
    if args.mode == "serve":
        trio.run(serve, args.home)
    else:
        if args.addr is None or args.size is None:
            parser.error(f"{args.mode} needs ADDR and N")
        trio.run(client, args.mode, args.addr, args.size, args.home)


if __name__ == "__main__":
    main()
