"""UnixFS import and export throughput beside plain sha2-256 of the same bytes.

The importer hashes every block once. Putting a block into a block store
hashes it again (stores verify what they are given); ``import_file`` runs the
store writes on a helper thread so that second hash overlaps the import when
a second core is free. Lines:

* ``blocks only`` -- the importer alone (read, chunk, wrap, hash, link);
* ``import into MemoryBlockstore`` -- plus verification and storage;
* ``export`` -- reading the file back out of the store.

The runs of each line and of the sha2-256 baseline are interleaved and the
best of each is kept, so a busy machine skews both alike.
"""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Callable

from benchmarks._report import Reporter
from datatransfer.ipld.blockstore import MemoryBlockstore
from datatransfer.ipld.cid import CID
from datatransfer.ipld.unixfs import get_profile, import_file, iter_file, iter_file_blocks

MiB = 1024 * 1024


def _data(size: int) -> bytes:
    # Byte i is i % 251: deterministic, and no two chunks are equal (no dedup).
    return (bytes(range(251)) * (size // 251 + 1))[:size]


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _bench_profile(report: Reporter, name: str, data: bytes, repeat: int) -> None:
    size = len(data)
    mb = size / 1e6
    chunk = get_profile(name).chunk_size
    view = memoryview(data)
    result: list[tuple[MemoryBlockstore, CID]] = []

    def hash_all() -> None:
        sha256 = hashlib.sha256
        for off in range(0, size, chunk):
            sha256(view[off : off + chunk]).digest()

    def blocks_only() -> None:
        for _ in iter_file_blocks(io.BytesIO(data), name):
            pass

    def into_store() -> None:
        while result:
            result.pop()[0].close()
        store = MemoryBlockstore()
        result.append((store, import_file(io.BytesIO(data), store, name)))

    def export() -> None:
        store, root = result[-1]
        n = 0
        for piece in iter_file(root, store):
            n += len(piece)
        assert n == size

    steps = {"hash": hash_all, "blocks": blocks_only, "store": into_store, "export": export}
    best = dict.fromkeys(steps, float("inf"))
    for _ in range(repeat):
        for key, fn in steps.items():
            best[key] = min(best[key], _timed(fn))
    base = mb / best["hash"]
    label = f"unixfs {name}"
    report.line(
        f"{label}: blocks only ({size // MiB} MiB)", mb / best["blocks"], "MB/s", "sha2-256", base
    )
    report.line(
        f"{label}: import into MemoryBlockstore", mb / best["store"], "MB/s", "sha2-256", base
    )
    report.line(f"{label}: export from MemoryBlockstore", mb / best["export"], "MB/s")
    while result:
        result.pop()[0].close()


def run(report: Reporter, quick: bool) -> None:
    size = 64 * MiB if quick else 256 * MiB
    data = _data(size)
    for name in ("classic", "modern"):
        _bench_profile(report, name, data, 3)
