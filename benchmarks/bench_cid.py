"""Per-block CID overhead and block-store throughput.

* ``CID.from_bytes`` beside the ``multiformats`` package's ``CID.decode`` of
  the same binary CID;
* ``CID.from_prefix`` (hash + build, what every received graphsync block
  costs) for 1 KiB and 256 KiB blocks, beside bare ``hashlib.sha256`` of the
  same bytes and beside ``multiformats`` doing the same job;
* block-store ``put`` / ``put_many`` / ``get`` blocks/s for the memory and
  SQLite stores, beside bare sha2-256 hashing of the same blocks (``put``
  must hash; ``get`` does not, so its baseline only gives scale).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from benchmarks._report import Reporter, rate
from datatransfer.ipld.blockstore import MemoryBlockstore, SqliteBlockstore
from datatransfer.ipld.cid import CID, DAG_CBOR, RAW

KIB = 1024


def _blocks(count: int, size: int) -> list[tuple[CID, bytes]]:
    out = []
    for i in range(count):
        data = i.to_bytes(8, "big") + os.urandom(size - 8)
        out.append((CID.of(data, RAW), data))
    return out


def _cid_parsing(report: Reporter, seconds: float) -> None:
    import multiformats

    raws = [bytes(CID.of(os.urandom(32), DAG_CBOR)) for _ in range(1000)]
    raws_v0 = [bytes(CID.of(os.urandom(32), 0x70, version=0)) for _ in range(1000)]

    def ours(items=raws) -> int:
        for r in items:
            CID.from_bytes(r)
        return len(items)

    def ref(items=raws) -> int:
        for r in items:
            multiformats.CID.decode(r)
        return len(items)

    report.line(
        "CID.from_bytes (v1)",
        rate(ours, seconds),
        "CIDs/s",
        "multiformats CID.decode",
        rate(ref, seconds),
    )
    report.line(
        "CID.from_bytes (v0)",
        rate(lambda: ours(raws_v0), seconds),
        "CIDs/s",
        "multiformats CID.decode",
        rate(lambda: ref(raws_v0), seconds),
    )
    texts = [str(CID.from_bytes(r)) for r in raws]

    def ours_text() -> int:
        for t in texts:
            CID.parse(t)
        return len(texts)

    def ref_text() -> int:
        for t in texts:
            multiformats.CID.decode(t)
        return len(texts)

    report.line(
        "CID.parse (base32 v1)",
        rate(ours_text, seconds),
        "CIDs/s",
        "multiformats CID.decode(str)",
        rate(ref_text, seconds),
    )


def _from_prefix(report: Reporter, seconds: float, size: int, count: int) -> None:
    import multiformats

    datas = [os.urandom(size) for _ in range(count)]
    prefix = CID.of(b"", RAW).prefix

    def ours() -> int:
        for d in datas:
            CID.from_prefix(prefix, d)
        return count

    def sha() -> int:
        for d in datas:
            hashlib.sha256(d).digest()
        return count

    def ref() -> int:
        for d in datas:
            multiformats.CID("base32", 1, "raw", multiformats.multihash.digest(d, "sha2-256"))
        return count

    label = f"{size // KIB} KiB"
    ours_rate = rate(ours, seconds)
    report.line(
        f"CID.from_prefix {label}", ours_rate, "blocks/s", "sha256 only", rate(sha, seconds)
    )
    report.line(
        f"CID.from_prefix {label}",
        ours_rate,
        "blocks/s",
        "multiformats digest+CID",
        rate(ref, seconds),
    )


def _stores(report: Reporter, seconds: float, size: int, count: int, tmp: Path) -> None:
    blocks = _blocks(count, size)
    label = f"{size // KIB} KiB"

    def sha() -> int:
        for _, d in blocks:
            hashlib.sha256(d).digest()
        return count

    sha_rate = rate(sha, seconds)
    serial = [0]

    def fresh_sqlite() -> SqliteBlockstore:
        serial[0] += 1
        return SqliteBlockstore(tmp / f"bench-{size}-{serial[0]}.db")

    makers = {"memory": MemoryBlockstore, "sqlite": fresh_sqlite}
    for name, make in makers.items():

        def put(make=make) -> int:
            with make() as s:
                for cid, d in blocks:
                    s.put(cid, d)
            return count

        def put_many(make=make) -> int:
            with make() as s:
                s.put_many(blocks)
            return count

        report.line(f"{name} put {label}", rate(put, seconds), "blocks/s", "sha256", sha_rate)
        report.line(
            f"{name} put_many {label}", rate(put_many, seconds), "blocks/s", "sha256", sha_rate
        )
        store = make()
        store.put_many(blocks)

        def get(store=store) -> int:
            for cid, _ in blocks:
                store.get(cid)
            return count

        report.line(f"{name} get {label}", rate(get, seconds), "blocks/s", "sha256", sha_rate)
        store.close()
        for f in tmp.glob("bench-*"):
            f.unlink()


def run(report: Reporter, quick: bool) -> None:
    seconds = 0.15 if quick else 1.0
    _cid_parsing(report, seconds)
    _from_prefix(report, seconds, KIB, 200)
    _from_prefix(report, seconds, 256 * KIB, 20 if quick else 50)
    with tempfile.TemporaryDirectory(prefix="bench-cid-") as tmp:
        _stores(report, seconds, KIB, 500 if quick else 5000, Path(tmp))
        _stores(report, seconds, 256 * KIB, 20 if quick else 200, Path(tmp))
