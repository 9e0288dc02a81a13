"""The benchmarks keep running: ``python -m benchmarks`` stops a module that
hangs, and the deploy scenario (two processes, the Go reference node, the
bare stream) runs end to end on a tiny file. No timing is asserted: only
that the runs end and print their figures."""

from __future__ import annotations

import argparse
import os
import re
import sys
import threading
import types
from dataclasses import replace
from pathlib import Path

import anyio
import pytest
import trio
from _support import DEADLINE
from test_interop_go import gonode  # noqa: F401 - the fixture building the Go node

from benchmarks import bench_deploy, results, scenario
from benchmarks.__main__ import parse_size, run_module
from benchmarks._report import Reporter
from benchmarks.scenario import Link, Scenario, ScenarioError


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


def test_the_full_run_measures_deployments_once():
    """``network`` runs the deploy measurement; the full run does not run it again."""
    from benchmarks.__main__ import full_run

    chosen = full_run(["deploy", "fsm", "network"])
    assert chosen == ["fsm", "network"]


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


# -- the harness: scenarios ---------------------------------------------------------------



def test_a_scenario_parses_from_key_value_pairs():
    s = scenario.parse_pairs("size=8MiB,dag=cbor-tree,fanout=4,block=64K,ch=3,direction=push,"
                             "transport=libp2p,latency=20ms,bw=100Mbit,loss=1%,rounds=2")
    assert s == Scenario(size=8 << 20, dag="cbor-tree", fanout=4, block_size=64 << 10,
                         channels=3, direction="push", transport="libp2p",
                         link=Link(latency=0.02, bandwidth=12.5e6, loss=0.01), rounds=2)
    assert Scenario.from_json(s.to_json()) == s
    assert s.key() == ("push libp2p 8 MiB cbor-tree/4 65536B blocks x3 "
                       "[+20 ms RTT, 100 Mbit/s, 1% loss]")


def test_scenario_units():
    assert scenario.parse_size("1MB") == 10 ** 6
    assert scenario.parse_size("2k") == 2048
    assert scenario.parse_rate("12MB/s") == 12e6
    assert scenario.parse_rate("8mbit") == 1e6
    assert scenario.parse_rate("1MiB") == 1 << 20
    assert scenario.parse_duration("20") == pytest.approx(0.02)
    assert scenario.parse_duration("0.1s") == pytest.approx(0.1)
    assert scenario.parse_loss("0.5%") == pytest.approx(0.005)


@pytest.mark.parametrize("text, says", [
    ("size=12 parsecs", "not a size"),
    ("dag=merkle", "unknown DAG shape"),
    ("direction=sideways", "pull or push"),
    ("transport=carrier-pigeon", "unknown transport"),
    ("channels=0", "at least 1"),
    ("channels=many", "whole number"),
    ("channels=65", "one client process per channel"),
    ("transport=inmem,latency=10ms", "needs a libp2p transport"),
    ("block=2MiB", "out of range"),
    ("loss=0.7", "not a loss rate"),
    ("bandwidth=fast", "not a bandwidth"),
    ("latency=soon", "not a duration"),
    ("colour=blue", "unknown scenario key 'colour'"),
    ("pull", "not key=value"),
])
def test_a_scenario_that_cannot_run_is_refused_with_its_reason(text, says):
    with pytest.raises(ScenarioError, match=says):
        scenario.parse_pairs(text)


def test_a_sweep_expands_over_the_options_given():
    points = scenario.expand("latency-sweep", {"dag": "modern", "size": 4 << 20})
    assert [p.link.latency for p in points] == scenario.SWEEPS["latency-sweep"][1]
    assert {(p.dag, p.size, p.sweep, p.transport) for p in points} == {
        ("modern", 4 << 20, "latency", "processes")}
    quick = scenario.expand("concurrency-sweep", quick=True)
    assert [p.channels for p in quick] == scenario.SWEEPS["concurrency-sweep"][2]
    assert quick[0].size == scenario.QUICK_SIZE
    [one] = scenario.expand(None, {"transport": "inmem"})
    assert one.transport == "inmem" and one.sweep is None


def test_only_dags_the_go_node_builds_run_it():
    assert Scenario().go_can_run
    assert not Scenario(dag="cbor-tree").go_can_run
    assert not Scenario(block_size=4096).go_can_run
    assert not Scenario(transport="libp2p").go_can_run
    assert not Scenario(go=False).go_can_run


def test_a_cbor_tree_holds_the_bytes_in_blocks_of_the_size_asked():
    from benchmarks.harness import build_dag
    from datatransfer.ipld import dagcbor
    from datatransfer.ipld.blockstore import MemoryBlockstore
    from datatransfer.ipld.car import walk_all

    data = bytes(range(256)) * 40  # 10,240 bytes: 10 leaves of 1,000 + one of 240
    store = MemoryBlockstore()
    root = build_dag(data, Scenario(dag="cbor-tree", fanout=3, block_size=1000), store)
    nodes = [dagcbor.decode(block) for _, block in walk_all(root, store)]
    leaves = [n["data"] for n in nodes if "data" in n]
    assert b"".join(leaves) == data
    assert max(len(x) for x in leaves) == 1000
    assert all(len(n["links"]) <= 3 for n in nodes if "links" in n)


def test_each_pushing_channel_pushes_a_file_of_its_own(tmp_path):
    """Channels pushing to one sink push distinct DAGs: the same DAG twice
    would move once (the sink skips blocks it holds) while the figure
    counted it twice. Each client's argv names its own CID, file and home."""
    from benchmarks.harness import _home_files, _own_file, _pushed_files

    s = Scenario(direction="push", channels=3, size=4096, dag="cbor-tree", block_size=1024)
    first = _home_files(tmp_path, s)
    others = _pushed_files(tmp_path, s)
    assert len(others) == 2
    assert len({f.cid for f in [first, *others]}) == 3
    assert len({f.pusher for f in [first, *others]}) == 3
    argv = ["push", "/ip4/x", first.cid, "--home", str(first.pusher), "-file", str(first.path)]
    assert _own_file(argv, first, others[1]) == [
        "push", "/ip4/x", others[1].cid, "--home", str(others[1].pusher),
        "-file", str(others[1].path)]
    assert _pushed_files(tmp_path / "pull", replace(s, direction="pull")) == []


# -- the harness: the shaped link ---------------------------------------------------------


@pytest.mark.parametrize("link", [Link(), Link(latency=0.01), Link(bandwidth=50e6),
                                  Link(loss=0.05, latency=0.002)], ids=str)
def test_the_shaped_link_delivers_every_byte_in_order(link):
    """Both directions, end of stream passed on; nothing lost however the
    link is shaped (loss only delays)."""
    from benchmarks._shaper import relay

    payload = os.urandom(3 * 1024 * 1024 + 17)

    async def main() -> tuple[bytes, bytes]:
        async def echo(stream: trio.SocketStream) -> None:
            async for chunk in stream:
                await stream.send_all(chunk)
            await stream.send_eof()

        got_back = bytearray()
        with trio.fail_after(DEADLINE):
            async with trio.open_nursery() as nursery:
                [listener] = await trio.open_tcp_listeners(0, host="127.0.0.1")
                target = listener.socket.getsockname()[1]
                nursery.start_soon(trio.serve_listeners, echo, [listener])
                port = await nursery.start(relay, target, link)
                stream = await trio.open_tcp_stream("127.0.0.1", port)

                async def send() -> None:
                    await stream.send_all(payload)
                    await stream.send_eof()
                nursery.start_soon(send)
                async for chunk in stream:
                    got_back += chunk
                nursery.cancel_scope.cancel()
        return payload, bytes(got_back)

    sent, back = trio.run(main)
    assert back == sent


# -- the harness: results and their comparison --------------------------------------------


def _doc(values: dict[str, list[float]], bare: list[float] | None = None) -> dict:
    doc = results.new_document(["python", "-m", "benchmarks"], quick=True)
    s = Scenario()
    base = None
    if bare is not None:
        doc["results"].append(results.result(s.to_json(), s.key(), "bare-stream", "bare",
                                             "MB/s", bare))
        base = f"{s.key()} :: bare-stream"
    for case, samples in values.items():
        doc["results"].append(results.result(s.to_json(), s.key(), case, case, "MB/s",
                                             samples, cpu={"sender": [1.0], "receiver": [2.0]},
                                             baseline=base))
    doc["lines"].append(results.line("fsm", "events with 10,000 live channels", 80000.0,
                                     "events/s", baseline_name="dict", baseline_value=1e6))
    doc["lines"].append(results.line("small_pull", "1 KiB pull", 0.5, "s"))
    return doc


def test_results_follow_the_schema_through_json():
    import json

    doc = _doc({"ours": [50.0, 52.0], "go": [60.0]}, bare=[80.0])
    results.validate(json.loads(json.dumps(doc)))
    assert doc["machine"]["cpus"] and doc["versions"]["python"]
    assert doc["results"][1]["median"] == 51.0
    assert doc["results"][1]["higher_is_better"] and not doc["lines"][1]["higher_is_better"]


@pytest.mark.parametrize("spoil, says", [
    (lambda d: d.update(schema="other/1"), "schema 'other/1'"),
    (lambda d: d.pop("machine"), "no 'machine'"),
    (lambda d: d["results"][0].pop("samples"), r"results\[0\]: no 'samples'"),
    (lambda d: d["results"][0].update(samples=[]), "non-empty list of numbers"),
    (lambda d: d["results"][0].update(samples=["fast"]), "non-empty list of numbers"),
    (lambda d: d["results"][1].update(baseline="nothing :: here"), "no result 'nothing"),
    (lambda d: d["lines"][0].update(value="high"), r"lines\[0\].value: str"),
    (lambda d: d["results"][0]["scenario"].pop("link"), "no 'link'"),
])
def test_a_results_file_off_the_schema_is_refused(spoil, says):
    doc = _doc({"ours": [50.0]}, bare=[80.0])
    spoil(doc)
    with pytest.raises(results.ResultsError, match=says):
        results.validate(doc)


def test_a_change_within_the_noise_is_not_flagged():
    assert results.judge([100.0], [95.0], higher=True)[2] == "same"
    assert results.judge([100.0], [85.0], higher=True)[2] == "regressed"
    assert results.judge([100.0], [120.0], higher=True)[2] == "improved"
    # lower is better (seconds)
    assert results.judge([1.0], [1.3], higher=False)[2] == "regressed"
    assert results.judge([1.0], [0.8], higher=False)[2] == "improved"
    # the samples of one run spread wider than the change: noise
    ratio, noise, verdict = results.judge([100.0, 60.0, 80.0], [68.0], higher=True)
    assert verdict == "same" and noise == pytest.approx(0.5)
    # a wider --factor tolerates more
    assert results.judge([100.0], [85.0], higher=True, factor=1.2)[2] == "same"


def test_a_change_its_same_run_baseline_shared_is_the_machine():
    # everything 30% slower, the bare stream too: not a regression
    assert results.judge([100.0], [70.0], True, baseline=(0.5, 0.5))[2] == "same"
    # ours slower, the baseline not: a regression
    assert results.judge([100.0], [70.0], True, baseline=(0.5, 0.35))[2] == "regressed"
    # ours slower, the baseline slower still: the machine
    assert results.judge([100.0], [70.0], True, baseline=(0.13, 0.23))[2] == "same"


def test_compare_matches_figures_by_key_and_lists_the_rest(capsys):
    old = _doc({"ours": [50.0, 51.0], "gone": [1.0]}, bare=[80.0])
    new = _doc({"ours": [30.0, 31.0], "added": [2.0]}, bare=[80.0])
    new["lines"][1]["value"] = new["lines"][1]["samples"][0] = 1.0  # 0.5 s -> 1 s
    changes, gone, added = results.compare(old, new)
    verdicts = {c.key.split(" :: ")[-1]: c.verdict for c in changes}
    assert verdicts == {"ours": "regressed",
                        "events with 10,000 live channels vs dict": "same", "1 KiB pull": "regressed"}
    assert [k.split(" :: ")[-1] for k in gone] == ["gone"]
    assert [k.split(" :: ")[-1] for k in added] == ["added"]
    assert results.print_comparison(old, new, "old.json") == 2
    out = capsys.readouterr().out
    assert "REGRESSED" in out and "2 regressed" in out


# -- the harness: the picture, the command line, the log ----------------------------------


def test_the_picture_has_a_panel_per_sweep_and_direction(tmp_path):
    pytest.importorskip("matplotlib", reason="the bench extra draws the picture")
    from benchmarks import plot

    doc = results.new_document(["x"], quick=True)
    for sweep, variable, points in (("latency", "latency", [0.0, 0.05]),
                                    ("concurrency", "channels", [1, 4])):
        for v in points:
            s = scenario.build(Scenario(sweep=sweep), **{variable: v})
            for case, mb_s in (("ours", 30.0), ("go", 50.0), ("bare-stream", 90.0)):
                doc["results"].append(results.result(s.to_json(), s.key(), case, case, "MB/s",
                                                     [mb_s + v]))
    found = plot.panels(doc)
    assert set(found) == {("latency", "pull"), ("concurrency", "pull")}
    assert found[("latency", "pull")]["go"] == [(0.0, 50.0), (50.0, 50.05)]
    out = tmp_path / "sweep.png"
    plot.draw(doc, out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(plot.PlotError, match="no sweep"):
        plot.draw(results.new_document(["x"], quick=True), tmp_path / "none.png")


def test_matplotlib_is_imported_only_to_draw():
    import ast

    import benchmarks

    for path in Path(benchmarks.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in tree.body:  # module level only: functions import lazily
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n.startswith("matplotlib") for n in names), path


def test_datatransfer_bench_is_the_harness():
    from click.testing import CliRunner

    from datatransfer.cli import main

    runner = CliRunner()
    usage = runner.invoke(main, ["bench", "--help"])
    assert usage.exit_code == 0, usage.output
    assert "usage: datatransfer bench" in usage.output and "--scenario" in usage.output
    bad = runner.invoke(main, ["bench", "--scenario", "colour=blue"])
    assert bad.exit_code == 2
    assert "unknown scenario key 'colour'" in bad.output


def test_library_log_records_stay_out_of_the_output(capsys, tmp_path):
    import logging

    from benchmarks.__main__ import _keep_logs_out

    saved = (logging.getLogger().handlers[:], logging.getLogger().level, logging.lastResort)
    quiet = logging.getLogger("quietlib.bench-test")
    quiet.propagate = False  # as py-libp2p's logger keeps to itself
    try:
        counter = _keep_logs_out(None)
        logging.getLogger("bench-test.library").warning("refused: busy")
        quiet.warning("stream reset")
        assert counter is not None and counter.count == 2
        log = tmp_path / "libs.log"
        _keep_logs_out(log)
        quiet.error("kept in the file")
        assert "kept in the file" in log.read_text()
    finally:
        root = logging.getLogger()
        for h in root.handlers[:]:
            root.removeHandler(h)
            h.close()
        for h in saved[0]:
            root.addHandler(h)
        root.setLevel(saved[1])
        logging.lastResort = saved[2]
    captured = capsys.readouterr()
    assert "busy" not in captured.out + captured.err
    assert "stream reset" not in captured.out + captured.err


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_quick_two_process_scenario_writes_its_results(request, tmp_path):
    """``python -m benchmarks --quick`` with a two-process scenario through a
    shaped link: it completes, stdout holds only figures, and the JSON is
    well formed, with our case, the bare stream and (with Go) the Go node.
    No figure is checked: only that there is one."""
    import json
    import subprocess

    try:
        request.getfixturevalue("gonode")  # built as the interop tests build it
        go = True
    except pytest.skip.Exception:  # no Go: our cases still run
        go = False
    out = tmp_path / "out.json"
    argv = [sys.executable, "-m", "benchmarks", "--quick", "--size", "256K", "--scenario",
            "direction=push,channels=2,latency=4ms,bandwidth=400Mbit,loss=0.1%",
            "--json", str(out)] + ([] if go else ["--no-go"])
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=540,
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(out.read_text())
    results.validate(doc)
    cases = {r["case"] for r in doc["results"]}
    assert cases == ({"ours", "bare-stream", "go"} if go else {"ours", "bare-stream"})
    for r in doc["results"]:
        assert r["scenario"]["direction"] == "push" and r["scenario"]["channels"] == 2
        assert len(r["samples"]) == 1 and r["median"] > 0
        assert set(r["cpu_s_per_gib"]) == {"sender", "receiver"}
    for line in filter(None, proc.stdout.splitlines()):
        assert line.startswith("== scenario: ") or " MB/s" in line, line
    assert "progress" not in proc.stdout
    print(proc.stdout, file=sys.stderr)


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
