"""The benchmarks: ``python -m benchmarks [--quick] [NAME ...]`` (installed:
``datatransfer bench``).

Each ``benchmarks/bench_*.py`` module defines ``run(report, quick)``; NAME
selects modules by the part after ``bench_`` (none: every module whose
``IN_FULL_RUN`` is not False). ``--size``, ``--rounds`` and ``--cprofile``
go to the modules whose ``run`` takes them (``deploy``, ``network``).

Scenarios (``--scenario``, or any scenario option; :mod:`benchmarks.scenario`)
run through :mod:`benchmarks.harness`. ``--json`` writes every figure
(:mod:`benchmarks.results` documents the schema), ``--compare OLD.json``
compares with an earlier run, ``--plot`` draws the sweeps
(:mod:`benchmarks.plot`). Figures go to stdout; progress to stderr; the
libraries' log records are counted, or written to ``--log FILE``.

Every module runs under a deadline (its ``DEADLINE``: seconds, or a function
of the same arguments as ``run`` less the report; else
:data:`DEFAULT_DEADLINE`): past it the module is stopped with
:class:`DeadlineExceeded` and the next one runs. A module that fails is
reported on stderr in one line; the exit status is then 1, as it is when
``--compare`` finds a regression.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import logging
import pkgutil
import re
import signal
import sys
import time
import traceback
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any

import benchmarks
from benchmarks import harness, plot, results, scenario
from benchmarks._procs import ChildError
from benchmarks._report import Reporter
from benchmarks.results import DEFAULT_FACTOR
from benchmarks.scenario import DAGS, DIRECTIONS, SWEEPS, TRANSPORTS, ScenarioError

#: Seconds a module may run when it does not say (the slowest full module,
#: network, takes about 5 minutes on a quiet 2-core machine).
DEFAULT_DEADLINE = 1800.0
_UNITS = {"": 1, "k": 1024, "kib": 1024, "m": 1 << 20, "mib": 1 << 20, "g": 1 << 30,
          "gib": 1 << 30}


class DeadlineExceeded(Exception):
    """A benchmark module ran past its deadline (a scenario waiting forever)."""


def parse_size(text: str) -> int:
    """Bytes from ``4096``, ``64K``, ``256MiB``, ``1G``... (powers of 1024)."""
    m = re.fullmatch(r"\s*(\d+)\s*([a-zA-Z]*)\s*", text)
    if m is None or m.group(2).lower() not in _UNITS or int(m.group(1)) < 1:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 1048576, 64K, 256MiB)")
    return int(m.group(1)) * _UNITS[m.group(2).lower()]


def _options(module: ModuleType, args: argparse.Namespace) -> dict[str, Any]:
    accepted = inspect.signature(module.run).parameters
    return {name: getattr(args, name) for name in ("size", "rounds", "cprofile")
            if name in accepted and getattr(args, name) is not None}


def _deadline(module: ModuleType, quick: bool, options: dict[str, Any]) -> float:
    limit = getattr(module, "DEADLINE", DEFAULT_DEADLINE)
    return float(limit(quick, **options) if callable(limit) else limit)


#: Set when the running module's deadline passed.
_expired_flag: list[bool] = [False]


def _expired(signum: int, frame: FrameType | None) -> None:
    """Interrupt the module as Ctrl-C would: through the SIGINT handler in
    place, so that an event loop (trio, asyncio) stops at a point where it
    can (an exception raised here could land inside its scheduler)."""
    _expired_flag[0] = True
    handler = signal.getsignal(signal.SIGINT)
    if not callable(handler):
        raise DeadlineExceeded
    handler(signal.SIGINT, frame)  # raises now, or (trio) once it is safe to


def run_module(name: str, module: ModuleType, report: Reporter,
               args: argparse.Namespace) -> bool:
    """Run one module under its deadline; False (said on stderr) if it failed."""
    options = _options(module, args)
    limit = _deadline(module, args.quick, options)
    report.section(name)
    previous = signal.signal(signal.SIGALRM, _expired)
    _expired_flag[0] = False
    signal.setitimer(signal.ITIMER_REAL, limit)
    try:
        module.run(report, args.quick, **options)
        return True
    except BaseException as exc:  # noqa: BLE001 - the loop may wrap the interrupt
        expired = _expired_flag[0] and _caused_by(exc, (KeyboardInterrupt, DeadlineExceeded))
        if isinstance(exc, KeyboardInterrupt) and not expired:
            raise
        if expired:
            why = f"did not finish within its deadline of {limit:.0f} s; stopped"
        else:
            why = f"failed: {type(exc).__name__}: {exc}"
            traceback.print_exc(file=sys.stderr)
        print(f"benchmark {name} {why}", file=sys.stderr, flush=True)
        return False
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _caused_by(exc: BaseException,
               kind: type[BaseException] | tuple[type[BaseException], ...]) -> bool:
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, kind):
            return True
        todo.extend(getattr(e, "exceptions", ()))
        todo.extend((e.__cause__, e.__context__))
    return False


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Run the benchmark modules (NAME ...; default all), or scenarios "
        "(--scenario, or any scenario option). Figures go to stdout, progress to stderr.")
    parser.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    parser.add_argument("--quick", action="store_true", help="smaller inputs, shorter runs")
    parser.add_argument("--size", type=parse_size, default=None,
                        help="deploy, network and scenarios: the file's size (e.g. 256MiB)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="deploy, network and scenarios: alternated rounds, figures "
                        "are medians (deploy: 2; scenarios: 1)")
    parser.add_argument("--cprofile", type=Path, default=None, metavar="DIR",
                        help="deploy, network: also profile our serve and pull/push "
                        "processes (cProfile files in DIR, top lines printed)")
    s = parser.add_argument_group("scenarios (benchmarks/scenario.py)")
    s.add_argument("--scenario", action="append", default=None, metavar="NAME|KEY=VALUE,...",
                   help=f"a named sweep ({', '.join(SWEEPS)}) or key=value pairs "
                   "(size=8MiB,dag=cbor-tree,latency=20ms); repeatable")
    s.add_argument("--dag", choices=DAGS, help="UnixFS profile or a dag-cbor tree "
                   "(default classic)")
    s.add_argument("--block-size", type=_scenario_type(scenario.parse_size),
                   help="bytes per leaf block (default: the profile's)")
    s.add_argument("--fanout", type=int, help="links per cbor-tree node (default 16)")
    s.add_argument("--channels", type=int, help="concurrent channels (default 1)")
    s.add_argument("--direction", choices=DIRECTIONS, help="pull (default) or push")
    s.add_argument("--transport", choices=TRANSPORTS,
                   help="inmem, libp2p (both nodes in this process) or processes "
                   "(default: serve and pull/push as OS processes)")
    s.add_argument("--latency", type=_scenario_type(scenario.parse_duration),
                   help="round-trip time added by the relay (20ms, 0.1s)")
    s.add_argument("--bandwidth", type=_scenario_type(scenario.parse_rate),
                   help="bandwidth cap each way (100Mbit, 12MB)")
    s.add_argument("--loss", type=_scenario_type(scenario.parse_loss),
                   help="fraction of segments lost (0.01 or 1%%)")
    s.add_argument("--no-go", dest="go", action="store_false", default=None,
                   help="leave out the Go reference node")
    o = parser.add_argument_group("results")
    o.add_argument("--json", type=Path, metavar="OUT.json",
                   help="write every figure, sample and baseline, with the machine "
                   "and versions (schema: benchmarks/results.py)")
    o.add_argument("--compare", type=Path, metavar="OLD.json",
                   help="print new/old of every figure also in OLD.json; exit status 1 "
                   "if one regressed beyond the noise")
    o.add_argument("--factor", type=float, default=DEFAULT_FACTOR,
                   help=f"--compare: the smallest change flagged (default {DEFAULT_FACTOR})")
    o.add_argument("--plot", type=Path, metavar="OUT.png",
                   help="draw throughput against each swept variable, ours beside "
                   "Go's (PNG or SVG; needs matplotlib: the bench extra)")
    o.add_argument("--log", type=Path, metavar="FILE",
                   help="write the libraries' log records here (default: counted, "
                   "kept out of the output)")
    return parser


def _scenario_type(parse: Any) -> Any:
    """An argparse type from a scenario parser (its message kept)."""
    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ScenarioError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    convert.__name__ = parse.__name__.removeprefix("parse_")
    return convert


_SCENARIO_OPTIONS = ("dag", "block_size", "fanout", "channels", "direction", "transport",
                     "latency", "bandwidth", "loss", "go")


def _scenarios(args: argparse.Namespace) -> list[scenario.Scenario]:
    given = {name: getattr(args, name) for name in _SCENARIO_OPTIONS
             if getattr(args, name) is not None}
    if args.size is not None:
        given["size"] = args.size
    if args.rounds is not None:
        given["rounds"] = args.rounds
    texts = args.scenario or ([None] if given.keys() - {"size", "rounds"} else [])
    return [s for text in texts for s in scenario.expand(text, given, quick=args.quick)]


class _LogCounter(logging.Handler):
    """Counts the libraries' log records instead of printing them among the figures."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


def _keep_logs_out(path: Path | None) -> _LogCounter | None:
    """Route log records away from stdout and stderr: into ``path``, or
    counted. Also logging's last resort, which would print the records of
    loggers with no handler (py-libp2p's keeps to itself) on stderr."""
    root = logging.getLogger()
    for handler in root.handlers[:]:
        root.removeHandler(handler)
    if path is not None:
        sink: logging.Handler = logging.FileHandler(path)
        sink.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        counter = None
    else:
        sink = counter = _LogCounter()
    sink.setLevel(logging.WARNING)
    root.addHandler(sink)
    root.setLevel(logging.WARNING)
    logging.lastResort = sink
    return counter


def full_run(found: list[str]) -> list[str]:
    """The modules ``python -m benchmarks`` runs with no names: all but those
    another one runs (``IN_FULL_RUN = False``: deploy, run by network)."""
    return [name for name in found
            if getattr(importlib.import_module(f"benchmarks.bench_{name}"), "IN_FULL_RUN", True)]


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    parser = _parser()
    if prog:
        parser.prog = prog
    args = parser.parse_args(argv)
    if args.rounds is not None and args.rounds < 1:
        parser.error("--rounds must be at least 1")
    try:
        scenarios = _scenarios(args)
    except ScenarioError as exc:
        parser.error(str(exc))
    old = None
    if args.compare is not None:
        try:
            old = results.load(args.compare)
        except results.ResultsError as exc:
            parser.error(str(exc))
    if args.plot is not None:
        try:
            plot.require()
        except plot.PlotError as exc:
            parser.error(str(exc))
    found = sorted(
        m.name[len("bench_"):]
        for m in pkgutil.iter_modules(benchmarks.__path__)
        if m.name.startswith("bench_")
    )
    unknown = set(args.names) - set(found)
    if unknown:
        parser.error(f"unknown benchmark(s) {sorted(unknown)}; known: {found}")
    names = args.names or ([] if scenarios else full_run(found))
    logs = _keep_logs_out(args.log)
    doc = results.new_document([parser.prog, *(sys.argv[1:] if argv is None else argv)],
                               args.quick)
    report = Reporter()
    start = time.perf_counter()
    failed = [name for name in names
              if not run_module(name, importlib.import_module(f"benchmarks.bench_{name}"),
                                report, args)]
    if scenarios:
        try:
            doc["results"] = harness.run_all(scenarios, report)
        except (harness.HarnessError, ChildError) as exc:
            print(f"scenarios failed: {exc}", file=sys.stderr, flush=True)
            failed.append("scenarios")
    doc["lines"] = [results.line(ln.section, ln.name, ln.value, ln.unit, ln.samples,
                                 baseline_name=ln.baseline_name,
                                 baseline_value=ln.baseline_value)
                    for ln in report.lines if not ln.section.startswith("scenario: ")]
    if args.json is not None:
        results.validate(doc)
        args.json.write_text(json.dumps(doc, indent=1) + "\n")
        print(f"results written to {args.json}", file=sys.stderr, flush=True)
    if args.plot is not None and doc["results"]:
        plot.draw(doc, args.plot)
        print(f"picture written to {args.plot}", file=sys.stderr, flush=True)
    regressed = 0
    if old is not None:
        regressed = results.print_comparison(old, doc, str(args.compare), args.factor)
    print(f"\nbenchmarks took {time.perf_counter() - start:.0f} s"
          + (f"; failed: {', '.join(failed)}" if failed else "")
          + (f"; {logs.count} log records of the libraries left out (--log FILE keeps them)"
             if logs is not None and logs.count else ""), file=sys.stderr, flush=True)
    sys.exit(1 if failed or regressed else 0)


if __name__ == "__main__":
    main()
