"""The Manager on the graphsync engine over the in-memory network.

* one large pull (UnixFS, modern profile): MB/s and blocks/s beside plain
  sha2-256 of the same bytes in the same run (target: >= 0.4);
* 1,000 concurrent small pulls between two nodes: all must complete;
  channels/s;
* memory per idle channel (open, accepted, paused waiting for a voucher),
  measured with tracemalloc on both nodes. Its 2,000 channels come from one
  peer, so the run lifts both per-peer limits (the Manager's
  ``max_channels_per_peer``, 1,024 by default, and the engine's
  ``max_requests_per_peer``) and says so on the line.

Each scenario fails past :data:`~benchmarks._report.SCENARIO_DEADLINE`.
"""

from __future__ import annotations

import hashlib
import os
import time
import tracemalloc
from typing import Any

import anyio

from benchmarks._report import Reporter, deadline
from datatransfer.config import ManagerConfig
from datatransfer.errors import Pause
from datatransfer.ipld.blockstore import MemoryBlockstore
from datatransfer.ipld.selector import ALL_SELECTOR_NODE
from datatransfer.ipld.unixfs import import_file
from datatransfer.manager import Manager
from datatransfer.types import PeerID
from registry import Voucher
from statemachine import Status
from transport.inmem import InMemoryNetwork


class BenchVoucher(Voucher):
    type_id = "bench/voucher"

    def __init__(self, pause: bool = False) -> None:
        self.pause = pause

    def to_node(self) -> Any:
        return {"Pause": self.pause}

    @classmethod
    def from_node(cls, node: Any) -> BenchVoucher:
        return cls(bool(node["Pause"]))


class Validator:
    async def validate_push(self, is_restart, chid, sender, voucher, base, selector):
        return None

    async def validate_pull(self, is_restart, chid, receiver, voucher, base, selector):
        if voucher.pause:
            raise Pause()
        return None


# no per-peer channel limit: the idle-memory figure holds 2,000 channels
# between the same two peers
CONFIG = ManagerConfig(accept_timeout=None, no_progress_timeout=None,
                       finalization_timeout=None, max_channels_per_peer=None)


def _pair(net: InMemoryNetwork, server_store: MemoryBlockstore,
          **engine: Any) -> tuple[Manager, Manager]:
    """A server and a client on the graphsync engine over ``net``
    (``engine``: options of the server's engine)."""
    server = Manager(net.transport(PeerID(b"\x00\x06server"), server_store, **engine),
                     config=CONFIG)
    client = Manager(net.transport(PeerID(b"\x00\x06client"), MemoryBlockstore()),
                     config=CONFIG)
    for m in (server, client):
        m.register_voucher_type(BenchVoucher, Validator())
    return server, client


async def _large_pull(report: Reporter, size: int) -> None:
    data = os.urandom(size)
    start = time.perf_counter()
    hashlib.sha256(data).digest()
    hash_rate = size / (time.perf_counter() - start) / 1e6
    store = MemoryBlockstore()
    root = import_file(data, store, profile="modern")
    blocks = store.size()
    net = InMemoryNetwork()
    server, client = _pair(net, store)
    async with server, client:
        start = time.perf_counter()
        chid = await client.open_pull_channel(server.peer_id, BenchVoucher(), root,
                                              ALL_SELECTOR_NODE)
        state = await client.wait(chid)
        elapsed = time.perf_counter() - start
    assert state.status == Status.Completed, state
    report.line(f"in-memory pull {size >> 20} MiB", size / elapsed / 1e6, "MB/s",
                "sha2-256 of the same bytes", hash_rate)
    report.line(f"in-memory pull {size >> 20} MiB", blocks / elapsed, "blocks/s")


async def _many_pulls(report: Reporter, count: int) -> None:
    store = MemoryBlockstore()
    roots = [import_file(os.urandom(2048) + i.to_bytes(4, "big"), store, profile="modern")
             for i in range(count)]
    net = InMemoryNetwork()
    server, client = _pair(net, store)
    async with server, client:
        start = time.perf_counter()
        chids = [await client.open_pull_channel(server.peer_id, BenchVoucher(), root,
                                                ALL_SELECTOR_NODE) for root in roots]
        done = 0
        for chid in chids:
            state = await client.wait(chid, timeout=300)
            done += state.status == Status.Completed
        elapsed = time.perf_counter() - start
    report.line(f"{count} concurrent pulls: completed", done, f"of {count}")
    report.line(f"{count} concurrent pulls", count / elapsed, "channels/s")


async def _idle_memory(report: Reporter, count: int) -> None:
    store = MemoryBlockstore()
    root = import_file(b"idle", store, profile="modern")
    net = InMemoryNetwork()
    # every request served (and paused) at once, none waiting in the engine's
    # per-peer queue (16 served by default)
    server, client = _pair(net, store, max_requests_per_peer=count)
    async with server, client:
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        chids = [await client.open_pull_channel(server.peer_id, BenchVoucher(pause=True),
                                                root, ALL_SELECTOR_NODE)
                 for _ in range(count)]
        for chid in chids:
            await client.wait(chid, {Status.ResponderPaused})
        await anyio.sleep(0.2)
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
    report.line(f"memory per idle channel ({count} from one peer, both nodes; "
                "per-peer limits lifted)", (after - before) / count, "bytes")


def run(report: Reporter, quick: bool) -> None:
    async def main() -> None:
        with deadline("the large in-memory pull"):
            await _large_pull(report, (128 if quick else 1024) << 20)
        with deadline("the concurrent pulls"):
            await _many_pulls(report, 200 if quick else 1000)
        with deadline("the idle channels"):
            await _idle_memory(report, 500 if quick else 2000)

    anyio.run(main)
