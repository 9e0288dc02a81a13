"""Run every benchmark module: ``python -m benchmarks [--quick] [NAME ...]``.

Each ``benchmarks/bench_*.py`` module defines ``run(report, quick)``; NAME
selects modules by the part after ``bench_``. ``--size``, ``--rounds`` and
``--cprofile`` go to the modules whose ``run`` takes them (``deploy``).

Every module runs under a deadline (its ``DEADLINE``: seconds, or a function
of the same arguments as ``run`` less the report; else
:data:`DEFAULT_DEADLINE`): past it the module is stopped with
:class:`DeadlineExceeded` and the next one runs. A module that fails is
reported on stderr in one line; the exit status is then 1.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
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
from benchmarks._report import Reporter

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


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    parser.add_argument("--quick", action="store_true", help="smaller inputs, shorter runs")
    parser.add_argument("--size", type=parse_size, default=None,
                        help="deploy: the file's size (e.g. 256MiB; quick: 32MiB)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="deploy: alternated rounds, figures are medians (default 2)")
    parser.add_argument("--cprofile", type=Path, default=None, metavar="DIR",
                        help="deploy: also profile our serve and pull/push processes "
                        "(cProfile files in DIR, top lines printed)")
    args = parser.parse_args()
    if args.rounds is not None and args.rounds < 1:
        parser.error("--rounds must be at least 1")
    found = sorted(
        m.name[len("bench_"):]
        for m in pkgutil.iter_modules(benchmarks.__path__)
        if m.name.startswith("bench_")
    )
    unknown = set(args.names) - set(found)
    if unknown:
        parser.error(f"unknown benchmark(s) {sorted(unknown)}; known: {found}")
    report = Reporter()
    start = time.perf_counter()
    failed = [name for name in args.names or found
              if not run_module(name, importlib.import_module(f"benchmarks.bench_{name}"),
                                report, args)]
    print(f"\nbenchmarks took {time.perf_counter() - start:.0f} s"
          + (f"; failed: {', '.join(failed)}" if failed else ""), file=sys.stderr, flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
