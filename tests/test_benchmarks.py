"""The benchmarks keep running: ``python -m benchmarks`` stops a module that
hangs, and the deploy scenario (two processes, the Go reference node, the
bare stream) runs end to end on a tiny file. No timing is asserted: only
that the runs end and print their figures."""

from __future__ import annotations

import argparse
import re
import sys
import threading
import types

import anyio
import pytest
import trio
from test_interop_go import gonode  # noqa: F401 - the fixture building the Go node

from benchmarks import bench_deploy
from benchmarks.__main__ import parse_size, run_module
from benchmarks._report import Reporter


def _args(**kw: object) -> argparse.Namespace:
    return argparse.Namespace(**{"quick": True, "size": None, "rounds": None, "cprofile": None,
                                 **kw})


def test_sizes_parse():
    assert parse_size("4096") == 4096
    assert parse_size("64K") == 64 * 1024
    assert parse_size("256MiB") == 256 << 20
    assert parse_size("1g") == 1 << 30
    for bad in ("", "0", "12 parsecs", "-1M"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_size(bad)


@pytest.mark.parametrize("hang", ["trio", "asyncio", "thread"])
def test_a_module_that_hangs_is_stopped_at_its_deadline(hang, capsys):
    """A scenario waiting forever (in an event loop or on a lock) ends
    at the module's deadline; the next module would run."""
    def run(report: Reporter, quick: bool) -> None:
        if hang == "trio":
            trio.run(trio.sleep_forever)
        elif hang == "asyncio":
            anyio.run(anyio.sleep_forever)
        else:
            threading.Event().wait()

    module = types.SimpleNamespace(run=run, DEADLINE=0.5)
    assert run_module("hangs", module, Reporter(), _args()) is False  # type: ignore[arg-type]
    assert "benchmark hangs did not finish within its deadline" in capsys.readouterr().err


def test_a_module_gets_the_options_its_run_takes():
    got = {}

    def run(report: Reporter, quick: bool, size: int | None = None) -> None:
        got.update(quick=quick, size=size)

    module = types.SimpleNamespace(run=run, DEADLINE=lambda quick, size=None: 60.0)
    assert run_module("opts", module, Reporter(), _args(size=4096, rounds=3))  # type: ignore[arg-type]
    assert got == {"quick": True, "size": 4096}


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_deploy_scenario_runs_end_to_end(request, capsys):
    """Every case of ``python -m benchmarks deploy`` once, on 64 KiB: our
    serve, pull and push as processes, the bare stream, the Go node (built
    by the interop tests' fixture: skipped without Go, failed in CI), the
    in-process line."""
    try:
        binary = request.getfixturevalue("gonode")
    except pytest.skip.Exception:  # no Go: our cases still run
        binary = None
    report = Reporter()
    bench_deploy.run(report, quick=True, size=64 * 1024, rounds=1, gonode=binary)
    go = binary is not None
    out = capsys.readouterr().out
    for case in bench_deploy.cases(go=go):
        assert f"| {case.kind}: {case.label} |" in out, out
    for kind in ("pull", "push"):
        assert f"| {kind}: in-process, memory stores" in out, out
    names = [line.name for line in report.lines]
    assert "two processes: datatransfer pull <- datatransfer serve" in names
    assert "two processes: datatransfer push -> datatransfer serve" in names
    assert sum(line.baseline_name is not None for line in report.lines) == (4 if go else 2)
    print(out, file=sys.stderr)  # the table, for whoever reads the test log


@pytest.mark.timeout(600)
def test_retrieval_benchmark_reports_paid_beside_free(capsys):
    """``python -m benchmarks retrieval --quick`` on 2 MiB: a free and a paid
    retrieval from two ``serve`` processes, the paid one's rate beside the
    free one's with their ratio, and what it paid (1 attoFIL per byte)."""
    from benchmarks import bench_retrieval

    report = Reporter()
    bench_retrieval.run(report, quick=True, size=2 * 1024 * 1024, rounds=1)
    out = capsys.readouterr().out
    assert re.search(r"retrieve 2 MiB, free +[\d.,]+ MB/s", out), out
    assert re.search(r"retrieve 2 MiB, paid \(1attoFIL/byte\) +[\d.,]+ MB/s +\| free: "
                     r"[\d.,]+ MB/s +\(ratio [\d.]+\)", out), out
    paid = int(re.search(r"paid: attoFIL per retrieval +(\d+)", out).group(1))
    assert 2 * 1024 * 1024 < paid < 2 * 1024 * 1024 + 64 * 1024  # the DAG's bytes
