"""Run scenarios (:mod:`benchmarks.scenario`) and collect their results
(:mod:`benchmarks.results`).

Transports:

* ``processes``: ``datatransfer serve`` and ``pull``/``push`` as OS
  processes on their homes' sqlite stores, as :mod:`benchmarks.bench_deploy`
  runs them (its servers, clients and timing: start-up left out), beside the
  bare py-libp2p stream between two processes and, for UnixFS at the
  profile's block size, the Go reference node. One client process per
  channel, all started at once; throughput is every channel's bytes over
  the time from the first connection to the last exit (where the Python
  clients' start-ups do not overlap, the later ones' count);
* ``libp2p``: both Managers in this process on libp2p hosts (TCP, Noise,
  Yamux) and memory stores, the channels opened at once from one client;
* ``inmem``: the same over the in-memory network.

A shaped link puts a relay process (:mod:`benchmarks._shaper`) in front of
every server; clients dial the relay. The bare stream goes through the same
link, so its figure is the ceiling of that link. In-process channels come
from one peer and keep the Manager's per-peer limit (1,024 channels) unless
there are more, when the limit is lifted and the figure's label says so;
the Manager's timeouts are off, as in every benchmark (``bench_manager.CONFIG``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from benchmarks import _shaper, bench_deploy
from benchmarks._procs import CLI, Child, ChildError
from benchmarks._report import Reporter, deadline
from benchmarks.results import result
from benchmarks.scenario import MIB, PER_PEER_LIMIT, Link, Scenario

GIB = 1 << 30
#: Labels of the cases of a two-process scenario, as bench_deploy names them.
_CASES = {
    ("pull", "ours"): "datatransfer pull <- datatransfer serve",
    ("pull", "go"): "Go pull <- Go serve",
    ("pull", "bare-stream"): "bare py-libp2p stream, two processes",
    ("push", "ours"): "datatransfer push -> datatransfer serve",
    ("push", "go"): "Go push -> Go serve",
    ("push", "bare-stream"): "bare py-libp2p stream, two processes",
}


class HarnessError(RuntimeError):
    """A scenario could not run (the message says which and why)."""


def progress(text: str) -> None:
    """Progress goes to stderr: stdout holds only figures."""
    print(f"   {text}", file=sys.stderr, flush=True)


# -- DAGs ---------------------------------------------------------------------------------


def build_dag(data: bytes, s: Scenario, store: Any) -> Any:
    """Put ``data`` into ``store`` as the scenario's DAG; return its root CID."""
    from datatransfer.ipld import dagcbor
    from datatransfer.ipld.block import Block
    from datatransfer.ipld.cid import DAG_CBOR
    from datatransfer.ipld.unixfs import import_file

    if s.dag != "cbor-tree":
        return import_file(data, store, profile=s.dag, chunk_size=s.block_size)
    step = s.block_size or 256 * 1024
    level = []
    for i in range(0, max(len(data), 1), step):
        block = Block.of(dagcbor.encode({"data": data[i:i + step]}), codec=DAG_CBOR)
        store.put(block.cid, block.data)
        level.append(block.cid)
    while len(level) > 1:
        parents = []
        for i in range(0, len(level), s.fanout):
            block = Block.of(dagcbor.encode({"links": level[i:i + s.fanout]}), codec=DAG_CBOR)
            store.put(block.cid, block.data)
            parents.append(block.cid)
        level = parents
    return level[0]


def _home_files(tmp: Path, s: Scenario) -> bench_deploy.Files:
    """The file, imported into a home to serve and a home to push from: with
    ``datatransfer add`` where it can build the DAG, else built here,
    written as a CAR and ``datatransfer car import``-ed."""
    tmp.mkdir(parents=True, exist_ok=True)
    if s.dag in ("classic", "modern") and s.block_size is None:
        return bench_deploy._files(tmp, s.size, s.dag)
    from datatransfer.ipld.blockstore import MemoryBlockstore
    from datatransfer.ipld.car import write_car

    path = tmp / "file.bin"
    data = os.urandom(s.size)
    path.write_bytes(data)
    store = MemoryBlockstore()
    root = build_dag(data, s, store)
    car = tmp / "dag.car"
    write_car(car, [root], ((cid, store.get(cid)) for cid in store))
    source = tmp / "source-home"
    child = Child([*CLI, "car", "import", str(car), "--home", str(source)],
                  tmp / "car-import.log")
    _, rc, _ = child.finish(bench_deploy.client_deadline(s.size))
    if rc != 0:
        raise child.fail(f"exited with status {rc}")
    pusher = tmp / "pusher-home"
    shutil.copytree(source, pusher)
    return bench_deploy.Files(path, str(root), source, pusher, s.size, s.dag)


def _pushed_files(tmp: Path, s: Scenario) -> list[bench_deploy.Files]:
    """A file of its own for each pushing channel after the first: pushed to
    one sink, the same DAG twice would move only once (a receiver skips the
    blocks it holds), and the figure would count bytes never sent."""
    if s.direction != "push":
        return []
    return [_home_files(tmp / f"channel-{i}", s) for i in range(1, s.channels)]


def _own_file(argv: list[str], files: bench_deploy.Files,
              own: bench_deploy.Files) -> list[str]:
    """``argv`` of a client of ``files`` made a client of ``own`` instead."""
    swap = {files.cid: own.cid, str(files.path): str(own.path),
            str(files.pusher): str(own.pusher)}
    return [swap.get(arg, arg) for arg in argv]


# -- two processes ------------------------------------------------------------------------


def _relay_addr(addr: str, port: int) -> str:
    parts = addr.split("/")
    parts[parts.index("tcp") + 1] = str(port)
    return "/".join(parts)


def _shape(r: bench_deploy.Round, s: Scenario) -> list[Child]:
    """A relay in front of each server of the round; its address replaces the server's."""
    relays = []
    for key, addr in list(r.addrs.items()):
        child = Child(_shaper.argv(bench_deploy._port(addr), s.link), r.log(f"relay-{key}"))
        relays.append(child)
        port = int(child.expect(lambda w: w[0].isdigit(), bench_deploy.START).words[0])
        r.addrs[key] = _relay_addr(addr, port)
    return relays


def client_deadline(total: int, link: Link) -> float:
    """Deadline of a client run moving ``total`` bytes over ``link``:
    generous for a loaded 2-core machine, and for the link's cap."""
    slow = 2 * total / link.bandwidth if link.bandwidth else 0.0
    return bench_deploy.client_deadline(total) + slow + 200 * link.latency


def _clients(r: bench_deploy.Round, case: bench_deploy.Case, n: int, link: Link,
             pushed: list[bench_deploy.Files]) -> tuple[float, float, float]:
    """Run ``n`` clients of ``case`` at once: (seconds from the first
    connection to the last exit, CPU seconds of the clients, of the server)."""
    server = r.servers[case.server]
    deadline = client_deadline(r.files.size * n, link)
    before = server.cpu()
    children = []
    for i in range(n):
        argv = case.client(r, r.fresh(f"{case.kind}-client"))
        if case.kind == "push" and i:
            argv = _own_file(argv, r.files, pushed[i - 1])
        if r.gonode is not None and argv[0] == str(r.gonode):
            argv += ["-timeout", f"{deadline:.0f}s"]  # the last -timeout counts
            if link.shaped:
                argv.append("-only-via=true")  # not at the addresses identify announced
        child = Child(argv, r.log(case.kind))
        children.append((child, child.watch_connection(bench_deploy._port(r.addrs[case.server]))))
    ends, cpu, starts = [], 0.0, []
    for child, connected in children:
        end, rc, used = child.finish(deadline)
        lines = child.drain()
        if rc != 0:
            raise child.fail(f"exited with status {rc}")
        if case.done is not None:
            done = [ln.words for ln in lines if ln.words[:1] == [case.done]]
            if not done or done[-1][1] != "Completed":
                raise child.fail(f"ended {done[-1][1:] if done else 'without DONE'}")
        mark = connected()
        starts.append(mark.at if mark else child.started)
        cpu += used - (mark.cpu if mark else 0.0)
        ends.append(end)
    return max(ends) - min(starts), cpu, server.settled_cpu() - before


def _run_processes(s: Scenario, gonode: Path | None, tmp: Path) -> dict[str, dict[str, list]]:
    """Samples of each case: {case: {"mb_s", "sender", "receiver"}} (CPU s/GiB)."""
    wanted = ["bare-stream", "ours"] + (["go"] if gonode is not None and s.go_can_run else [])
    todo = {c.label: c for c in bench_deploy.cases(go="go" in wanted) if c.kind == s.direction}
    chosen = {name: todo[_CASES[(s.direction, name)]] for name in wanted}
    files = _home_files(tmp, s)
    pushed = _pushed_files(tmp, s)
    samples: dict[str, dict[str, list]] = {
        name: {"mb_s": [], "sender": [], "receiver": []} for name in wanted}
    total = s.size * s.channels
    for i in range(s.rounds):
        (tmp / f"round-{i}").mkdir()
        r = bench_deploy.Round(tmp / f"round-{i}", files, gonode if "go" in wanted else None)
        relays: list[Child] = []
        try:
            bench_deploy._start_servers(r, sorted({c.server for c in chosen.values()}))
            if s.link.shaped:
                relays = _shape(r, s)
            for name, case in chosen.items():
                progress(f"{s.key()}: {name} (round {i + 1} of {s.rounds})")
                seconds, client_cpu, server_cpu = _clients(r, case, s.channels, s.link, pushed)
                send, recv = ((server_cpu, client_cpu) if s.direction == "pull"
                              else (client_cpu, server_cpu))
                samples[name]["mb_s"].append(total / 1e6 / seconds)
                samples[name]["sender"].append(send / (total / GIB))
                samples[name]["receiver"].append(recv / (total / GIB))
        finally:
            for relay in relays:
                relay.stop()
            bench_deploy._stop_servers(r)
    return samples


# -- in-process ---------------------------------------------------------------------------


async def _in_process(s: Scenario, datas: list[bytes], home: Path) -> tuple[float, float]:
    """Seconds and CPU seconds (this process: both nodes) of ``s.channels``
    concurrent transfers in this process (building the DAGs left out)."""
    from contextlib import AsyncExitStack

    from benchmarks.bench_manager import CONFIG, BenchVoucher, Validator
    from datatransfer.config import ManagerConfig
    from datatransfer.ipld.blockstore import MemoryBlockstore
    from datatransfer.ipld.selector import ALL_SELECTOR_NODE
    from datatransfer.manager import Manager
    from datatransfer.types import PeerID
    from statemachine import Status
    from transport.inmem import InMemoryNetwork

    async with AsyncExitStack() as stack:
        stores = [MemoryBlockstore(), MemoryBlockstore()]
        if s.transport == "inmem":
            net = InMemoryNetwork()
            transports = [net.transport(PeerID(b"\x00\x06server"), stores[0]),
                          net.transport(PeerID(b"\x00\x06client"), stores[1])]
        else:
            transports = await _libp2p_pair(stack, s, stores, home)
        config = CONFIG if _lifted(s) else replace(
            CONFIG, max_channels_per_peer=ManagerConfig().max_channels_per_peer)
        server, client = (Manager(t, config=config) for t in transports)
        for m in (server, client):
            m.register_voucher_type(BenchVoucher, Validator())
            await stack.enter_async_context(m)
        source = stores[0] if s.direction == "pull" else stores[1]
        roots = [build_dag(data, s, source) for data in datas]
        open_channel = (client.open_pull_channel if s.direction == "pull"
                        else client.open_push_channel)
        start, cpu = time.perf_counter(), time.process_time()
        chids = [await open_channel(server.peer_id, BenchVoucher(), root, ALL_SELECTOR_NODE)
                 for root in roots]
        for chid in chids:
            state = await client.wait(chid)
            if state.status != Status.Completed:
                raise HarnessError(f"{s.key()}: a channel ended {state.status.name}: "
                                   f"{state.message}")
        return time.perf_counter() - start, time.process_time() - cpu


async def _libp2p_pair(stack: Any, s: Scenario, stores: list[Any], home: Path) -> list[Any]:
    from transport.libp2p import connect, load_or_create_identity, open_host, peer_addrs
    from transport.libp2p.transport import Libp2pTransport

    hosts = []
    for name in ("server", "client"):
        key = load_or_create_identity(home / name)
        hosts.append(await stack.enter_async_context(open_host(key, ("/ip4/127.0.0.1/tcp/0",))))
    addr = str(peer_addrs(hosts[0])[0])
    if s.link.shaped:
        relay = Child(_shaper.argv(bench_deploy._port(addr), s.link), home / "relay.log")
        stack.callback(relay.stop)
        port = int(relay.expect(lambda w: w[0].isdigit(), bench_deploy.START).words[0])
        addr = _relay_addr(addr, port)
    await connect(hosts[1], addr)
    return [Libp2pTransport(h, store) for h, store in zip(hosts, stores, strict=True)]


def _run_in_process(s: Scenario, tmp: Path) -> dict[str, dict[str, list]]:
    import trio

    datas = [os.urandom(s.size) for _ in range(s.channels)]
    total = s.size * s.channels
    out: dict[str, dict[str, list]] = {"ours": {"mb_s": [], "both": []}}
    if s.transport == "inmem":
        out["sha2-256"] = {"mb_s": []}
    for i in range(s.rounds):
        progress(f"{s.key()}: ours (round {i + 1} of {s.rounds})")

        async def one(i: int = i) -> tuple[float, float]:
            with deadline(s.key()):
                return await _in_process(s, datas, tmp / f"round-{i}")
        seconds, cpu = trio.run(one)
        out["ours"]["mb_s"].append(total / 1e6 / seconds)
        out["ours"]["both"].append(cpu / (total / GIB))
        if s.transport == "inmem":
            start = time.perf_counter()
            for data in datas:
                hashlib.sha256(data).digest()
            out["sha2-256"]["mb_s"].append(total / 1e6 / (time.perf_counter() - start))
    return out


# -- one scenario -------------------------------------------------------------------------


def run_scenario(s: Scenario, report: Reporter, gonode: Path | None) -> list[dict[str, Any]]:
    """Run ``s``; print its figures; return its results entries."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-harness-"))
    ok = False
    try:
        if s.transport == "processes":
            samples = _run_processes(s, gonode, tmp)
        else:
            samples = _run_in_process(s, tmp)
        ok = True
    except ChildError as exc:
        raise HarnessError(f"{s.key()}: {exc}") from None
    finally:
        if ok:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            progress(f"logs kept in {tmp}")
    return _entries(s, samples, report)


def _lifted(s: Scenario) -> bool:
    """Whether an in-process scenario lifts the Manager's per-peer limit."""
    return s.channels > PER_PEER_LIMIT


def _labels(s: Scenario) -> dict[str, str]:
    if s.transport == "processes":
        return {name: _CASES[(s.direction, name)] for name in ("ours", "go", "bare-stream")}
    lifted = "; per-peer channel limit lifted" if _lifted(s) else ""
    return {"ours": f"{s.direction}, both nodes in this process ({s.transport}{lifted})",
            "sha2-256": "sha2-256 of the same bytes"}


def _entries(s: Scenario, samples: dict[str, dict[str, list]],
             report: Reporter) -> list[dict[str, Any]]:
    key, scen = s.key(), s.to_json()
    labels = _labels(s)
    base_case = "bare-stream" if "bare-stream" in samples else (
        "sha2-256" if "sha2-256" in samples else None)
    base_key = f"{key} :: {base_case}" if base_case else None
    base_value = statistics.median(samples[base_case]["mb_s"]) if base_case else None
    out = []
    report.section(f"scenario: {key}")
    for name, got in samples.items():
        cpu = ({"sender": got["sender"], "receiver": got["receiver"]} if "sender" in got
               else {"both": got["both"]} if "both" in got else None)
        is_base = name == base_case
        out.append(result(scen, key, name, labels[name], "MB/s", got["mb_s"], cpu=cpu,
                          baseline=None if is_base else base_key))
        if not is_base:
            report.line(labels[name], statistics.median(got["mb_s"]), "MB/s",
                        labels[base_case] if base_case else None, base_value)
    if "go" in samples:
        report.line(labels["ours"], statistics.median(samples["ours"]["mb_s"]),
                    "MB/s", labels["go"], statistics.median(samples["go"]["mb_s"]))
    elif s.transport == "processes" and s.go:
        report.note("Go reference node", "not run" if s.go_can_run else
                    "not run: the Go node imports UnixFS classic/modern at their own blocks")
    return out


def run_all(scenarios: list[Scenario], report: Reporter,
            gonode_binary: Callable[[], tuple[Path | None, str]] = bench_deploy.gonode_binary
            ) -> list[dict[str, Any]]:
    """Run every scenario in order; the Go node is built once, if any needs it."""
    gonode = None
    if any(s.go_can_run for s in scenarios):
        gonode, why = gonode_binary()
        if gonode is None:
            report.note("Go reference node", f"skipped: {why}")
    out = []
    for s in scenarios:
        out.extend(run_scenario(s, report, gonode))
    return out


__all__ = ["HarnessError", "MIB", "build_dag", "run_all", "run_scenario"]
