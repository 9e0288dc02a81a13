"""The scale benchmark's round (benchmarks/bench_scale.py) at a tiny size,
so it cannot rot: a real ``serve`` and client processes, every pull
completed, the figures it reports present. No timing is asserted."""

from __future__ import annotations

import random

from benchmarks.bench_scale import _round, _Server
from datatransfer.home import open_blockstore
from datatransfer.ipld.unixfs import import_file


def test_a_small_scale_round_completes_every_pull(tmp_path):
    home = tmp_path / "server"
    rng = random.Random(3)
    with open_blockstore(home) as store:
        roots = [str(import_file(rng.randbytes(1000), store)) for _ in range(3)]
    server = _Server(home)
    try:
        result = _round(tmp_path, server, roots, clients=2, per_client=5, tag="t")
    finally:
        server.stop()
    assert result["total"] == 10
    assert result["completed"] == 10, result["reasons"]
    assert result["cpu"] > 0 and result["rss_idle"] > 0 and result["rate"] > 0
