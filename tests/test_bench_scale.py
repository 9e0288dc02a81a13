"""The scale benchmark's round (benchmarks/bench_scale.py) scaled down, so it
cannot rot: a real ``serve`` and 3 client processes of 200 concurrent pulls
each, every pull completed, the figures it reports present. No timing is
asserted."""

from __future__ import annotations

import random

import pytest

from benchmarks.bench_scale import FILE_SIZE, MAX_PER_CLIENT, _round, _Server, _server_reasons
from datatransfer.home import open_blockstore
from datatransfer.ipld.unixfs import import_file


def test_three_clients_of_200_concurrent_pulls_all_complete(tmp_path):
    home = tmp_path / "server"
    rng = random.Random(3)
    with open_blockstore(home) as store:
        roots = [str(import_file(rng.randbytes(FILE_SIZE), store)) for _ in range(10)]
    server = _Server(home)
    try:
        result = _round(tmp_path, server, roots, clients=3, per_client=200, tag="t")
    finally:
        server.stop()
    assert result["total"] == 600
    assert result["completed"] == 600, result["reasons"]
    assert _server_reasons(home) == {}  # the server's side of every channel completed too
    assert result["peak_live"] > 0
    assert result["cpu"] > 0 and result["client_cpu"] > 0 and result["rss_idle"] > 0
    assert result["rate"] > 0


def test_a_round_beyond_the_servers_limits_is_refused_before_it_starts(tmp_path):
    with pytest.raises(ValueError, match="exceed the server's limits"):
        _round(tmp_path, None, [], clients=1, per_client=MAX_PER_CLIENT + 1,  # type: ignore[arg-type]
               tag="t")
