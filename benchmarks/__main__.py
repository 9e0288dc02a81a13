"""Run every benchmark module: ``python -m benchmarks [--quick] [NAME ...]``.

Each ``benchmarks/bench_*.py`` module defines ``run(report, quick)``; NAME
selects modules by the part after ``bench_``.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil

import benchmarks
from benchmarks._report import Reporter


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    parser.add_argument("--quick", action="store_true", help="smaller inputs, shorter runs")
    args = parser.parse_args()
    found = sorted(
        m.name[len("bench_"):]
        for m in pkgutil.iter_modules(benchmarks.__path__)
        if m.name.startswith("bench_")
    )
    unknown = set(args.names) - set(found)
    if unknown:
        parser.error(f"unknown benchmark(s) {sorted(unknown)}; known: {found}")
    report = Reporter()
    for name in args.names or found:
        module = importlib.import_module(f"benchmarks.bench_{name}")
        report.section(name)
        module.run(report, args.quick)


if __name__ == "__main__":
    main()
