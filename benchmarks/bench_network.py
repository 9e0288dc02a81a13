"""The network benchmark: transfers as deployed, then in-process figures.

First :mod:`benchmarks.bench_deploy`'s run (its ``--size``, ``--rounds``,
``--cprofile``): ``datatransfer serve`` and ``pull``/``push`` as two OS
processes on their homes' sqlite stores, beside the bare py-libp2p stream
between two processes and the Go reference node, with the ratios; its
in-process line (both Managers in this process over libp2p on memory
stores, the same file) is printed below them, labelled "in-process".

Then, in-process: 100 (quick: 20) concurrent pulls of small files (2 KiB)
from one server by one client over libp2p: how many completed (target:
all) and channels/s. When some do not complete, the reasons they ended with
are printed, with the responder's ``busy_refused`` count, and the run is
repeated with the per-peer request limit raised to the number of channels,
and says so, to show whether the limit is the cause.

The time of an in-process transfer runs from opening the channel until the
initiating Manager reports it Completed; importing the file is not counted.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections import Counter
from contextlib import AsyncExitStack
from functools import partial
from pathlib import Path
from typing import Any

import trio

from benchmarks import bench_deploy
from benchmarks._report import Reporter, deadline
from benchmarks.bench_libp2p import MIB
from benchmarks.bench_manager import CONFIG, BenchVoucher, Validator
from datatransfer.ipld.blockstore import MemoryBlockstore
from datatransfer.ipld.selector import ALL_SELECTOR_NODE
from datatransfer.ipld.unixfs import import_file
from datatransfer.manager import Manager
from statemachine import Status
from transport.libp2p import connect, load_or_create_identity, open_host, peer_addrs
from transport.libp2p.transport import Libp2pTransport

LOCAL = ("/ip4/127.0.0.1/tcp/0",)


class _Pair:
    """Server and client Managers on two libp2p hosts, connected."""

    def __init__(self, home: Path, **options: Any) -> None:
        self.home = home
        self.options = options
        self.stack = AsyncExitStack()

    async def __aenter__(self) -> _Pair:
        stack = await self.stack.__aenter__()
        managers = []
        hosts = []
        for name in ("server", "client"):
            key = load_or_create_identity(self.home / name)
            host = await stack.enter_async_context(open_host(key, LOCAL))
            transport = Libp2pTransport(host, MemoryBlockstore(), **self.options)
            manager = Manager(transport, config=CONFIG)
            manager.register_voucher_type(BenchVoucher, Validator())
            await stack.enter_async_context(manager)
            hosts.append(host)
            managers.append(manager)
        await connect(hosts[1], peer_addrs(hosts[0])[0])
        self.server, self.client = managers
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stack.__aexit__(*exc)


async def _large(kind: str, data: bytes, home: Path,
                 profile: str = "modern") -> tuple[float, Status, str]:
    """MiB/s of one ``kind`` ("pull"/"push") of ``data`` (UnixFS ``profile``);
    final status, message."""
    with deadline(f"the in-process {kind}"):
        return await _large_run(kind, data, home, profile)


async def _large_run(kind: str, data: bytes, home: Path,
                     profile: str) -> tuple[float, Status, str]:
    async with _Pair(home) as pair:
        source = pair.server if kind == "pull" else pair.client
        root = import_file(data, source.transport.blockstore, profile=profile)
        start = time.perf_counter()
        if kind == "pull":
            chid = await pair.client.open_pull_channel(
                pair.server.peer_id, BenchVoucher(), root, ALL_SELECTOR_NODE)
        else:
            chid = await pair.client.open_push_channel(
                pair.server.peer_id, BenchVoucher(), root, ALL_SELECTOR_NODE)
        state = await pair.client.wait(chid, timeout=600)
        elapsed = time.perf_counter() - start
    return len(data) / MIB / elapsed, state.status, state.message


async def _many(count: int, home: Path, **options: Any) -> tuple[int, float, Counter, int]:
    """``count`` concurrent small pulls: (completed, channels/s, reasons of
    the others, the server's busy_refused)."""
    with deadline(f"{count} concurrent pulls"):
        return await _many_run(count, home, **options)


async def _many_run(count: int, home: Path, **options: Any) -> tuple[int, float, Counter, int]:
    async with _Pair(home, **options) as pair:
        store = pair.server.transport.blockstore
        roots = [import_file(os.urandom(2048) + i.to_bytes(4, "big"), store, profile="modern")
                 for i in range(count)]
        start = time.perf_counter()
        chids = [await pair.client.open_pull_channel(pair.server.peer_id, BenchVoucher(),
                                                     root, ALL_SELECTOR_NODE)
                 for root in roots]
        done = 0
        reasons: Counter = Counter()
        for chid in chids:
            state = await pair.client.wait(chid, timeout=300)
            if state.status == Status.Completed:
                done += 1
            else:
                reasons[f"{state.status.name}: {state.message}"] += 1
        elapsed = time.perf_counter() - start
        busy = pair.server.transport.stats.busy_refused
    return done, count / elapsed, reasons, busy


def DEADLINE(quick: bool, size: int | None = None, rounds: int | None = None,  # noqa: N802
             cprofile: Path | None = None) -> float:
    """The deploy run's deadline, and the concurrent pulls'."""
    return bench_deploy.DEADLINE(quick, size, rounds, cprofile) + 600.0


def run(report: Reporter, quick: bool, size: int | None = None, rounds: int | None = None,
        cprofile: Path | None = None) -> None:
    bench_deploy.run(report, quick, size=size, rounds=rounds, cprofile=cprofile)
    count = 20 if quick else 100
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        done, rate, reasons, busy = trio.run(_many, count, home / "many")
        report.line(f"libp2p in-process: {count} concurrent pulls: completed", done,
                    f"of {count}")
        report.line(f"libp2p in-process: {count} concurrent pulls", rate, "channels/s")
        if done != count:
            print(f"   server refused {busy} requests Busy; the others ended:", flush=True)
            for reason, n in reasons.most_common():
                print(f"     {n} x {reason}", flush=True)
            done, rate, reasons, busy = trio.run(partial(
                _many, count, home / "many-unlimited", max_requests_per_peer=count))
            report.line(f"  same, max_requests_per_peer={count}: completed", done,
                        f"of {count}")
            report.line(f"  same, max_requests_per_peer={count}", rate, "channels/s")
            for reason, n in reasons.most_common():
                print(f"     {n} x {reason}", flush=True)


if __name__ == "__main__":
    import sys

    run(Reporter(), "--quick" in sys.argv)
