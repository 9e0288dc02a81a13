"""A shaped link on loopback: a userspace TCP relay adding latency, a
bandwidth cap and loss between a dialer and the node it dials.

It runs as its own process, so that its work does not share a core's
interpreter with either node::

    python -m benchmarks._shaper TARGET_PORT [--latency S] [--bandwidth B/S]
        [--loss FRACTION] [--seed N]

prints ``PORT`` (where it listens, 127.0.0.1) and relays every connection
to 127.0.0.1:TARGET_PORT until SIGINT or SIGTERM. The dialer uses
``/ip4/127.0.0.1/tcp/PORT/p2p/<peer id>``; Noise goes through untouched.

Each direction is a pipeline: a reader takes up to :data:`CHUNK` bytes,
holds them for their serialisation time at the bandwidth cap (so that the
sender's writes back up as on a slow link), stamps them with their delivery
time (``latency / 2`` later) and a writer sends them then, in order. At most
:data:`WINDOW` bytes are in flight per direction, as a TCP receive window
bounds a real connection (Linux's default maximum is about 6 MiB): a long
link then limits one connection's throughput to about WINDOW / RTT, as it
would. The relay is a TCP proxy, so it cannot drop bytes; a lost segment
(each of a chunk's :data:`MSS`-byte segments with probability ``loss``)
delays its chunk, and so everything behind it, by a retransmission timeout
(:data:`RTO_MIN` plus the added round trip), as TCP's in-order delivery
would.
"""

from __future__ import annotations

import argparse
import math
import random
import signal
import sys
from functools import partial

import trio

from benchmarks.scenario import Link, parse_duration, parse_loss, parse_rate

CHUNK = 64 * 1024
WINDOW = 4 * 1024 * 1024
MSS = 1448
RTO_MIN = 0.2


class _Window:
    """Bytes in flight one way; a reader waits while the window is full."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.used = 0
        self.changed = trio.Event()

    async def take(self, n: int) -> None:
        while self.used and self.used + n > self.size:
            await self.changed.wait()
        self.used += n

    def give(self, n: int) -> None:
        self.used -= n
        self.changed.set()
        self.changed = trio.Event()


def _lost(n: int, loss: float, rng: random.Random) -> bool:
    """Whether any of the segments carrying ``n`` bytes was lost."""
    return bool(loss) and rng.random() < 1 - (1 - loss) ** math.ceil(n / MSS)


async def _pipe(src: trio.abc.Stream, dst: trio.abc.Stream, link: Link,
                rng: random.Random) -> None:
    """Move bytes ``src`` -> ``dst`` through the shaped link, until ``src`` ends."""
    window = _Window(WINDOW)
    send, receive = trio.open_memory_channel[tuple[float, bytes] | None](math.inf)
    one_way = link.latency / 2

    async def reader() -> None:
        free = trio.current_time()  # when the link finishes its last chunk
        last = 0.0                  # delivery time of the last chunk (in order)
        try:
            while True:
                data = await src.receive_some(CHUNK)
                if not data:
                    break
                await window.take(len(data))
                now = trio.current_time()
                if link.bandwidth:
                    free = max(free, now) + len(data) / link.bandwidth
                    await trio.sleep_until(free)
                    now = free
                at = now + one_way
                if _lost(len(data), link.loss, rng):
                    at += RTO_MIN + link.latency
                last = max(last, at)
                send.send_nowait((last, data))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        send.send_nowait(None)

    async def writer() -> None:
        try:
            while True:
                item = await receive.receive()
                if item is None:
                    break
                at, data = item
                await trio.sleep_until(at)
                await dst.send_all(data)
                window.give(len(data))
            if isinstance(dst, trio.SocketStream):
                await dst.send_eof()  # pass the FIN on
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        nursery.start_soon(writer)


async def _relay_one(client: trio.SocketStream, target: int, link: Link,
                     rng: random.Random) -> None:
    try:
        upstream = await trio.open_tcp_stream("127.0.0.1", target)
    except OSError:
        await client.aclose()
        return
    async with client, upstream:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_pipe, client, upstream, link, rng)
            nursery.start_soon(_pipe, upstream, client, link, rng)


async def relay(target: int, link: Link, *, seed: int = 0,
                task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    """Relay connections on a new 127.0.0.1 port to ``target`` through
    ``link`` until cancelled; ``task_status.started`` gets the port."""
    rng = random.Random(seed)
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(partial(_relay_one, target=target, link=link, rng=rng),
                               listeners)


async def _main(target: int, link: Link, seed: int) -> None:
    async with trio.open_nursery() as nursery:
        port = await nursery.start(partial(relay, target, link, seed=seed))
        print(port, flush=True)
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                break
        nursery.cancel_scope.cancel()


def argv(target: int, link: Link, seed: int = 0) -> list[str]:
    """The command line of a relay process to ``target`` through ``link``."""
    out = [sys.executable, "-m", "benchmarks._shaper", str(target),
           "--latency", f"{link.latency}s", "--loss", repr(link.loss), "--seed", str(seed)]
    if link.bandwidth:
        out += ["--bandwidth", f"{link.bandwidth:.0f}"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks._shaper")
    parser.add_argument("target", type=int, help="the port on 127.0.0.1 to relay to")
    parser.add_argument("--latency", type=parse_duration, default=0.0,
                        help="round-trip time added (20ms, 0.1s; a number is ms)")
    parser.add_argument("--bandwidth", type=parse_rate, default=None,
                        help="bytes per second each way (100Mbit, 12MB)")
    parser.add_argument("--loss", type=parse_loss, default=0.0,
                        help="fraction of segments lost (0.01 or 1%%)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    trio.run(_main, args.target, Link(args.latency, args.bandwidth, args.loss), args.seed)


if __name__ == "__main__":
    main()
