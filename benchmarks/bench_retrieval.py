"""A paid retrieval's throughput beside a free one, in the same run (issue 13):
``python -m benchmarks retrieval [--size 256MiB] [--rounds 3]``.

Two ``datatransfer serve`` processes hold the same file (one home imported,
then copied): one free, one with a priced ask at go-fil-markets' default
payment intervals (a payment after 1 MiB, each interval 1 MiB longer: 22
payments for 256 MiB, each a signed voucher written to both homes' ledgers).
Each round runs ``datatransfer retrieve`` against both, in alternating
order, each time into a fresh home, and takes the rate the command reports
(from its dial to the deal's completion: process start-up excluded). The
figures are medians over the rounds; the ratio paid / free is what the
payment rounds cost (the issue's target: under 10 %, a ratio above 0.90).
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._report import Reporter
from benchmarks.bench_deploy import write_random

MIB = 1 << 20
DEFAULT_SIZE = 256 * MIB
QUICK_SIZE = 8 * MIB
DEFAULT_ROUNDS = 3
CLI = [sys.executable, "-c", "from datatransfer.cli import main; main()"]
PRICE = "1attoFIL"


def DEADLINE(quick: bool, size: int | None = None, rounds: int | None = None) -> float:  # noqa: N802
    size = size or (QUICK_SIZE if quick else DEFAULT_SIZE)
    rounds = rounds or (1 if quick else DEFAULT_ROUNDS)
    return 120.0 + rounds * 2 * (60.0 + size / MIB)  # >= 1 MiB/s per retrieval


class RetrievalBenchError(RuntimeError):
    """A process of the benchmark failed (its stderr tail says why)."""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("DATATRANSFER_HOME", None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _serve(home: Path, log: Path, paid: bool) -> tuple[subprocess.Popen, str]:
    argv = [*CLI, "serve", "--home", str(home), "--no-api", "--listen", "/ip4/127.0.0.1/tcp/0"]
    if paid:
        argv += ["--price-per-byte", PRICE]
    with log.open("w") as err:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, text=True, env=_env())
    assert proc.stdout is not None
    addr = proc.stdout.readline().strip()
    if not addr.startswith("/ip4/"):
        proc.kill()
        raise RetrievalBenchError(f"serve did not start: {log.read_text()[-2000:]}")
    return proc, addr


def _retrieve(addr: str, cid: str, home: Path, size: int) -> tuple[float, int]:
    """(MB/s the command reports, attoFIL it paid)."""
    proc = subprocess.run([*CLI, "retrieve", addr, cid, "--home", str(home),
                           "--max-price", "1FIL"], capture_output=True, text=True, env=_env(),
                          timeout=60.0 + size / MIB)
    m = re.search(r"Completed: .* in ([\d.]+) s .*, paid (\d+) attoFIL", proc.stderr)
    if proc.returncode != 0 or m is None:
        raise RetrievalBenchError(f"retrieve exited {proc.returncode}: {proc.stderr[-2000:]}")
    return size / 1e6 / max(float(m.group(1)), 1e-9), int(m.group(2))


def run(report: Reporter, quick: bool, size: int | None = None,
        rounds: int | None = None) -> None:
    size = size or (QUICK_SIZE if quick else DEFAULT_SIZE)
    rounds = rounds or (1 if quick else DEFAULT_ROUNDS)
    tmp = Path(tempfile.mkdtemp(prefix="bench-retrieval-"))
    servers: list[subprocess.Popen] = []
    try:
        path = write_random(tmp / "file.bin", size)
        free_home, paid_home = tmp / "free", tmp / "paid"
        added = subprocess.run([*CLI, "add", str(path), "--home", str(free_home)],
                               capture_output=True, text=True, env=_env(), check=True)
        cid = added.stdout.split()[-1]
        path.unlink()
        shutil.copytree(free_home, paid_home)
        (paid_home / "identity.key").unlink(missing_ok=True)  # (its own peer id)
        free, free_addr = _serve(free_home, tmp / "free.log", paid=False)
        paid, paid_addr = _serve(paid_home, tmp / "paid.log", paid=True)
        servers += [free, paid]
        print(f"   {size / MIB:g} MiB random file, {rounds} round(s); logs in {tmp}",
              file=sys.stderr, flush=True)
        rates: dict[str, list[float]] = {"free": [], "paid": []}
        paid_total = 0
        for i in range(rounds):
            order = ["free", "paid"] if i % 2 == 0 else ["paid", "free"]
            for case in order:
                addr = free_addr if case == "free" else paid_addr
                started = time.monotonic()
                rate, amount = _retrieve(addr, cid, tmp / f"client-{case}-{i}", size)
                print(f"   round {i + 1}: {case} {rate:.1f} MB/s "
                      f"({time.monotonic() - started:.1f} s with start-up)",
                      file=sys.stderr, flush=True)
                rates[case].append(rate)
                shutil.rmtree(tmp / f"client-{case}-{i}", ignore_errors=True)
                if case == "paid":
                    paid_total = amount
        free_rate = statistics.median(rates["free"])
        paid_rate = statistics.median(rates["paid"])
        report.line(f"retrieve {size // MIB} MiB, free", free_rate, "MB/s")
        report.line(f"retrieve {size // MIB} MiB, paid ({PRICE}/byte)", paid_rate, "MB/s",
                    "free", free_rate)
        report.note("paid: attoFIL per retrieval", f"{paid_total}")
    finally:
        for proc in servers:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    run(Reporter(), "--quick" in sys.argv)
