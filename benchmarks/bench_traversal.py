"""Selector traversal: blocks per second of the Filecoin "all" selector over
large in-memory DAGs, beside plain sha2-256 hashing of the same blocks.

Two DAGs: a UnixFS file (classic profile: DAG-PB leaves, small chunks so
there are many blocks) and a DAG-CBOR tree (maps with links in lists).
"""

from __future__ import annotations

import hashlib
import random
import time

from benchmarks._report import Reporter
from datatransfer.ipld import dagcbor
from datatransfer.ipld.cid import CID, DAG_CBOR
from datatransfer.ipld.selector import all_selector, blocks, walk
from datatransfer.ipld.unixfs import import_bytes


def _unixfs_dag(n_leaves: int) -> tuple[CID, dict[CID, bytes]]:
    data = random.Random(1).randbytes(n_leaves * 1024)
    root, blks = import_bytes(data, "classic", chunk_size=1024)
    return root, dict(blks)


def _cbor_dag(n_blocks: int, fanout: int = 16) -> tuple[CID, dict[CID, bytes]]:
    store: dict[CID, bytes] = {}
    level: list[CID] = []
    for i in range(n_blocks - n_blocks // fanout):
        value = {"i": i, "name": f"leaf-{i}", "payload": i.to_bytes(8, "big") * 8}
        data = dagcbor.encode(value)
        cid = CID.of(data, DAG_CBOR)
        store[cid] = data
        level.append(cid)
    while len(level) > 1:
        parents = []
        for start in range(0, len(level), fanout):
            value = {"kids": level[start : start + fanout], "n": start}
            data = dagcbor.encode(value)
            cid = CID.of(data, DAG_CBOR)
            store[cid] = data
            parents.append(cid)
        level = parents
    return level[0], store


def _time(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _bench_dag(report: Reporter, label: str, root: CID, store: dict[CID, bytes]) -> None:
    n = len(store)
    total = sum(len(b) for b in store.values())
    values = list(store.values())
    sel = all_selector()
    get = store.__getitem__

    def hash_all() -> None:
        sha = hashlib.sha256
        for data in values:
            sha(data).digest()

    def traverse(verify: bool) -> int:
        count = 0
        for _ in blocks(root, sel, get, verify=verify, max_blocks=None):
            count += 1
        return count

    def visit_all() -> int:
        return sum(1 for _ in walk(root, sel, get, verify=False, max_blocks=None))

    assert traverse(False) == n
    hash_rate = n / min(_time(hash_all) for _ in range(3))
    print(f"  {label}: {n:,} blocks, {total / 2**20:,.1f} MiB", flush=True)
    report.line(
        f"{label}: sha2-256 of every block",
        hash_rate,
        "blocks/s",
    )
    report.line(
        f"{label}: all-selector traversal (verify)",
        n / _time(lambda: traverse(True)),
        "blocks/s",
        "sha2-256",
        hash_rate,
    )
    report.line(
        f"{label}: all-selector traversal (no verify)",
        n / _time(lambda: traverse(False)),
        "blocks/s",
        "sha2-256",
        hash_rate,
    )
    start = time.perf_counter()
    visits = visit_all()
    elapsed = time.perf_counter() - start
    report.line(f"{label}: walk with visit events", n / elapsed, "blocks/s", "sha2-256", hash_rate)
    report.line(f"{label}: visit events", visits / elapsed, "visits/s")


def run(report: Reporter, quick: bool) -> None:
    n = 5_000 if quick else 30_000
    root, store = _unixfs_dag(n)
    _bench_dag(report, "unixfs classic 1 KiB chunks", root, store)
    root, store = _cbor_dag(n)
    _bench_dag(report, "dag-cbor tree fanout 16", root, store)
