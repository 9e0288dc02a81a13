"""An honest pull from a node under attack, beside the same pull with no attack.

For each attack class of the hostile-peer suite (``tests/_attacks.py``,
``tests/_rogue.py``): a fresh ``datatransfer serve`` in its own process with
a 16 MiB file (quick: 4 MiB); an honest ``datatransfer pull`` from another
process, timed alone; then the attacker starts from a third process, and once
it runs the same pull is timed again. The target (issue 9) is a ratio of at
most 2. Times are whole CLI runs (process start, dial, transfer, write out),
what a user waits for. The node's peak resident memory (VmHWM) after the
attacked pull is shown beside its peak after the pull alone; the worst
attack's is repeated at the end. Logs of the processes go to files in a
temporary directory, not to this report.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._report import Reporter

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-c", "from datatransfer.cli import main; main()"]
ATTACKS = [sys.executable, str(ROOT / "tests" / "_attacks.py")]
ROGUE = [sys.executable, str(ROOT / "tests" / "_rogue.py")]
LOOPBACK = "/ip4/127.0.0.1/tcp/0"
MIB = 1024 * 1024
WAIT = 120.0

#: attack class -> (argv after the script, the stdout word saying it runs)
CLASSES: dict[str, tuple[list[str], list[str], str]] = {
    "malformed requests": (ATTACKS, ["malformed"], "ROUND"),
    "pull on message protocol": (ATTACKS, ["dtpull"], "ROUND"),
    "selector work bombs": (ATTACKS, ["selector-bomb"], "ROUND"),
    "4 MiB frames of tiny items": (ATTACKS, ["frame-bomb"], "ROUND"),
    "300 half-open connections": (ATTACKS, ["half-open", "--count", "300"], "ROUND"),
    "graphsync request flood (2000)": (ROGUE, ["flood", "--count", "2000"], "FLOODED"),
    "channel flood (1000)": (ROGUE, ["dtflood", "--count", "1000"], "DTFLOODED"),
}


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("DATATRANSFER_HOME", None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM")


def _wait_for_word(path: Path, word: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if any(line.split()[:1] == [word] for line in path.read_text().splitlines()):
            return
        if proc.poll() is not None:
            raise RuntimeError(f"attacker exited rc={proc.returncode}: {path.read_text()}")
        time.sleep(0.05)
    raise RuntimeError(f"attacker never printed {word}")


class _Server:
    def __init__(self, home: Path, logs: Path) -> None:
        self.err = (logs / f"serve-{time.monotonic_ns()}.log").open("w")
        self.proc = subprocess.Popen(
            [*CLI, "serve", "--home", str(home), "--listen", LOOPBACK],
            stdout=subprocess.PIPE, stderr=self.err, text=True, env=_env())
        assert self.proc.stdout is not None
        try:
            self.addr = self.proc.stdout.readline().strip()
        except BaseException:  # the module's deadline: leave no node behind
            self.proc.kill()
            raise
        if not self.addr:
            raise RuntimeError("serve printed no address")

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=60)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        self.err.close()


def _pull(tmp: Path, addr: str, cid: str, digest: str, n: list[int]) -> float:
    n[0] += 1
    out = tmp / f"out{n[0]}.bin"
    start = time.perf_counter()
    proc = subprocess.run([*CLI, "pull", addr, cid, "-o", str(out), "--home",
                           str(tmp / f"client{n[0]}"), "--listen", LOOPBACK],
                          capture_output=True, text=True, env=_env(), timeout=600)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"honest pull failed: {proc.stderr[-2000:]}")
    if hashlib.sha256(out.read_bytes()).hexdigest() != digest:
        raise RuntimeError("honest pull: wrong bytes")
    out.unlink()
    return elapsed


def run(report: Reporter, quick: bool) -> None:
    size = (4 if quick else 16) * MIB
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        data = os.urandom(size)
        src = tmp / "src.bin"
        src.write_bytes(data)
        digest = hashlib.sha256(data).hexdigest()
        home = tmp / "server"
        cid = subprocess.run([*CLI, "add", str(src), "--home", str(home)], check=True,
                             capture_output=True, text=True, env=_env(),
                             timeout=600).stdout.split()[-1]
        pulls = [0]
        worst: tuple[int, str] = (0, "")
        for name, (script, argv, word) in CLASSES.items():
            server = _Server(home, tmp)
            try:
                _pull(tmp, server.addr, cid, digest, pulls)  # warm caches
                alone = _pull(tmp, server.addr, cid, digest, pulls)
                peak_alone = _peak_rss(server.proc.pid)
                out = tmp / f"attack-{pulls[0]}.out"
                with out.open("w") as fh:
                    attacker = subprocess.Popen(
                        [*script, *argv[:1], "--home", str(tmp / f"attacker{pulls[0]}"),
                         "--addr", server.addr, "--cid", cid, *argv[1:]],
                        stdin=subprocess.PIPE, stdout=fh, stderr=subprocess.STDOUT,
                        env=_env())
                try:
                    _wait_for_word(out, word, attacker)
                    attacked = _pull(tmp, server.addr, cid, digest, pulls)
                    peak = _peak_rss(server.proc.pid)
                finally:
                    assert attacker.stdin is not None
                    attacker.stdin.close()
                    try:
                        attacker.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        attacker.kill()
                        attacker.wait()
                if server.proc.poll() is not None:
                    raise RuntimeError(f"the node died under {name}")
            finally:
                server.close()
            report.line(f"pull {size // MIB} MiB under {name}", attacked, "s", "alone", alone)
            report.line("  node peak RSS", peak / MIB, "MiB", "after pull alone",
                        peak_alone / MIB)
            worst = max(worst, (peak, name))
        report.line(f"node peak RSS, worst ({worst[1]})", worst[0] / MIB, "MiB")


if __name__ == "__main__":
    run(Reporter(), "--quick" in sys.argv)
