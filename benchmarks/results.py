"""The harness's JSON results and their comparison with an earlier run.

Schema (``"schema": "py-data-transfer-bench/1"``; every key always present,
``null`` where it does not apply)::

    {
      "schema": "py-data-transfer-bench/1",
      "created": "2026-12-03T17:00:00Z",      # UTC, when the run started
      "command": ["python", "-m", "benchmarks", ...],
      "quick": false,
      "machine": {"platform", "machine", "cpu", "cpus", "memory_bytes",
                  "loadavg": [1, 5, 15 min at the start]},
      "versions": {"python", "py-data-transfer", "libp2p", "trio", "anyio",
                   "cbor2", "git": commit or null, "go": `go version` or null},
      "results": [                             # one per scenario and case
        {"key": "pull processes 16 MiB unixfs-classic ... :: ours",
         "scenario": {Scenario fields, "link": {"latency", "bandwidth", "loss"}},
         "case": "ours" | "go" | "bare-stream" | "sha2-256" | ...,
         "label": what ran, in words,
         "unit": "MB/s", "higher_is_better": true,
         "samples": [every measurement, in run order],
         "median": median of the samples,
         "cpu_s_per_gib": {"sender": [...], "receiver": [...]} or null,
         "baseline": the "key" of the result it is compared with, or null}
      ],
      "lines": [                               # figures of benchmark modules
        {"key": "section :: name[ vs baseline_name]", "section", "name", "value", "unit",
         "higher_is_better", "samples": [...], "baseline_name",
         "baseline_value"}
      ]
    }

``--compare OLD.json`` matches results and lines by ``key`` and prints
new / old of each median (for "higher is better" figures, > 1 is better);
the results other results name as their baseline (other programs: the bare
stream, sha2-256) are not judged, only used.
A change is flagged as a regression only beyond the noise: beyond the
``--factor`` (default 1.10, asv's default) and beyond the spread of the
samples of either run; and where the figure has a baseline measured in the
same run, only if its ratio to that baseline moved the same way beyond the
noise too (a machine that got slower slows both).
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import shutil
import statistics
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

SCHEMA = "py-data-transfer-bench/1"
DEFAULT_FACTOR = 1.10
_PACKAGES = ("py-data-transfer", "libp2p", "trio", "anyio", "cbor2")
_REPO = Path(__file__).resolve().parent.parent


class ResultsError(ValueError):
    """A results file that is not of this schema (the message says where)."""


def higher_is_better(unit: str) -> bool:
    """Rates and counts are better higher; times, sizes and costs lower."""
    u = unit.strip().lower()
    return "/s" in u or u.startswith("of ") or u in ("ratio", "events/s", "x")


# -- what the run was on ------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    mem = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
                break
    except OSError:
        pass
    try:
        load = list(os.getloadavg())
    except OSError:
        load = None
    return {"platform": platform.platform(), "machine": platform.machine(), "cpu": cpu,
            "cpus": os.cpu_count(), "memory_bytes": mem, "loadavg": load}


def _command_output(argv: list[str], cwd: Path | None = None) -> str | None:
    if shutil.which(argv[0]) is None:
        return None
    try:
        out = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def versions() -> dict[str, Any]:
    out: dict[str, Any] = {"python": sys.version.split()[0]}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    git = _REPO / ".git"
    out["git"] = _command_output(["git", "rev-parse", "HEAD"], _REPO) if git.exists() else None
    out["go"] = _command_output(["go", "version"])
    return out


def new_document(command: list[str], quick: bool) -> dict[str, Any]:
    now = _dt.datetime.now(_dt.UTC).replace(microsecond=0)
    return {"schema": SCHEMA, "created": now.isoformat().replace("+00:00", "Z"),
            "command": command, "quick": quick, "machine": machine(), "versions": versions(),
            "results": [], "lines": []}


# -- entries ------------------------------------------------------------------------------


def _median(values: list[float]) -> float | None:
    finite = [v for v in values if v == v]
    return statistics.median(finite) if finite else None


def result(scenario: dict[str, Any], scenario_key: str, case: str, label: str, unit: str,
           samples: list[float], *, cpu: dict[str, list[float]] | None = None,
           baseline: str | None = None) -> dict[str, Any]:
    """One entry of ``results``; its ``key`` is ``scenario_key :: case``."""
    return {"key": f"{scenario_key} :: {case}", "scenario": scenario, "case": case,
            "label": label, "unit": unit, "higher_is_better": higher_is_better(unit),
            "samples": list(samples), "median": _median(samples), "cpu_s_per_gib": cpu,
            "baseline": baseline}


def line(section: str, name: str, value: float, unit: str, samples: list[float] | None = None,
         baseline_name: str | None = None, baseline_value: float | None = None
         ) -> dict[str, Any]:
    """One entry of ``lines`` (a benchmark module's printed figure); its key
    names the baseline too (a figure may be printed beside two)."""
    versus = f" vs {baseline_name}" if baseline_name else ""
    return {"key": f"{section} :: {name}{versus}", "section": section, "name": name, "value": value,
            "unit": unit, "higher_is_better": higher_is_better(unit),
            "samples": list(samples) if samples else [value],
            "baseline_name": baseline_name, "baseline_value": baseline_value}


# -- validation ---------------------------------------------------------------------------

_NUM = (int, float)
_OPT_NUM = (int, float, type(None))
_RESULT_KEYS = {"key": str, "scenario": dict, "case": str, "label": str, "unit": str,
                "higher_is_better": bool, "samples": list, "median": _OPT_NUM,
                "cpu_s_per_gib": (dict, type(None)), "baseline": (str, type(None))}
_LINE_KEYS = {"key": str, "section": str, "name": str, "value": _NUM, "unit": str,
              "higher_is_better": bool, "samples": list, "baseline_name": (str, type(None)),
              "baseline_value": _OPT_NUM}
_TOP_KEYS = {"schema": str, "created": str, "command": list, "quick": bool, "machine": dict,
             "versions": dict, "results": list, "lines": list}


def _check_keys(where: str, obj: Any, keys: dict[str, Any]) -> None:
    if not isinstance(obj, dict):
        raise ResultsError(f"{where}: not an object")
    for name, kind in keys.items():
        if name not in obj:
            raise ResultsError(f"{where}: no {name!r}")
        if not isinstance(obj[name], kind) or (kind is _NUM and isinstance(obj[name], bool)):
            raise ResultsError(f"{where}.{name}: {type(obj[name]).__name__} "
                               "is not of the schema's type")


def validate(doc: Any) -> None:
    """Raise :class:`ResultsError` unless ``doc`` follows the schema above."""
    _check_keys("results file", doc, _TOP_KEYS)
    if doc["schema"] != SCHEMA:
        raise ResultsError(f"schema {doc['schema']!r}, not {SCHEMA!r}")
    for name in ("platform", "cpus"):
        if name not in doc["machine"]:
            raise ResultsError(f"machine: no {name!r}")
    if "python" not in doc["versions"]:
        raise ResultsError("versions: no 'python'")
    keys = {r.get("key") for r in doc["results"] if isinstance(r, dict)}
    for i, r in enumerate(doc["results"]):
        _check_keys(f"results[{i}]", r, _RESULT_KEYS)
        if not all(isinstance(v, _NUM) for v in r["samples"]) or not r["samples"]:
            raise ResultsError(f"results[{i}].samples: not a non-empty list of numbers")
        if r["baseline"] is not None and r["baseline"] not in keys:
            raise ResultsError(f"results[{i}].baseline: no result {r['baseline']!r}")
        if "link" not in r["scenario"]:
            raise ResultsError(f"results[{i}].scenario: no 'link'")
    for i, ln in enumerate(doc["lines"]):
        _check_keys(f"lines[{i}]", ln, _LINE_KEYS)


# -- comparison ---------------------------------------------------------------------------


@dataclass
class Change:
    """One figure in both runs: new / old, and whether that is beyond noise."""

    key: str
    unit: str
    old: float
    new: float
    ratio: float            # new / old
    noise: float            # the relative change taken as noise
    verdict: str            # "regressed", "improved" or "same"
    baseline: tuple[float, float] | None = None  # ratio to its baseline, old and new

    def render(self) -> str:
        mark = {"regressed": "REGRESSED", "improved": "improved", "same": ""}[self.verdict]
        text = (f"{self.key:<70} {self.old:>10.4g} -> {self.new:>10.4g} {self.unit:<8} "
                f"x{self.ratio:.2f} (noise +-{self.noise:.0%})")
        if self.baseline is not None:
            text += f"; vs its baseline {self.baseline[0]:.2f} -> {self.baseline[1]:.2f}"
        return f"{text}  {mark}".rstrip()


def _spread(samples: list[float]) -> float:
    """Relative spread of samples: (max - min) / median (0 for one sample)."""
    good = [s for s in samples if s == s]
    if len(good) < 2:
        return 0.0
    mid = statistics.median(good)
    return (max(good) - min(good)) / mid if mid else 0.0


def judge(old: list[float], new: list[float], higher: bool, factor: float = DEFAULT_FACTOR,
          baseline: tuple[float, float] | None = None) -> tuple[float, float, str]:
    """(new / old medians, the noise band, the verdict) of one figure."""
    o, n = _median(old), _median(new)
    if not o or n is None:
        return float("nan"), 0.0, "same"
    ratio = n / o
    noise = max(factor - 1, _spread(old), _spread(new))
    better = ratio if higher else (1 / ratio if ratio else float("inf"))
    if better < 1 / (1 + noise):
        verdict = "regressed"
    elif better > 1 + noise:
        verdict = "improved"
    else:
        return ratio, noise, "same"
    if baseline is not None and baseline[0]:
        relative = baseline[1] / baseline[0]
        relative = relative if higher else (1 / relative if relative else float("inf"))
        # unless its ratio to the same-run baseline moved the same way, the
        # baseline moved with it: the machine, not the code
        if (relative < 1 / (1 + noise)) != (verdict == "regressed") or (
                1 / (1 + noise) <= relative <= 1 + noise):
            verdict = "same"
    return ratio, noise, verdict


def _entries(doc: dict[str, Any]) -> dict[str, tuple[list[float], str, bool, float | None]]:
    """key -> (samples, unit, higher is better, ratio to its baseline), for
    the figures of our code (the baselines, other programs, are not judged)."""
    out: dict[str, tuple[list[float], str, bool, float | None]] = {}
    medians = {r["key"]: r["median"] for r in doc["results"]}
    baselines = {r["baseline"] for r in doc["results"]}
    for r in doc["results"]:
        if r["key"] in baselines:
            continue
        base = medians.get(r["baseline"]) if r["baseline"] else None
        rel = r["median"] / base if base and r["median"] is not None else None
        out[r["key"]] = (r["samples"], r["unit"], r["higher_is_better"], rel)
    for ln in doc["lines"]:
        bv = ln["baseline_value"]
        out[ln["key"]] = (ln["samples"], ln["unit"], ln["higher_is_better"],
                          ln["value"] / bv if bv else None)
    return out


def compare(old: dict[str, Any], new: dict[str, Any],
            factor: float = DEFAULT_FACTOR) -> tuple[list[Change], list[str], list[str]]:
    """(the changes of figures in both, keys only in old, keys only in new)."""
    a, b = _entries(old), _entries(new)
    changes = []
    for key in (k for k in b if k in a):
        (os_, unit, higher, orel), (ns, _, _, nrel) = a[key], b[key]
        base = (orel, nrel) if orel is not None and nrel is not None else None
        ratio, noise, verdict = judge(os_, ns, higher, factor, base)
        if ratio != ratio:
            continue
        changes.append(Change(key, unit, _median(os_) or 0.0, _median(ns) or 0.0, ratio,
                              noise, verdict, base))
    return changes, [k for k in a if k not in b], [k for k in b if k not in a]


def print_comparison(old: dict[str, Any], new: dict[str, Any], old_name: str,
                     factor: float = DEFAULT_FACTOR) -> int:
    """Print the comparison; return how many figures regressed."""
    changes, gone, added = compare(old, new, factor)
    print(f"\n== compared with {old_name} ({old['created']}, "
          f"{old['machine'].get('cpu') or old['machine']['platform']}) ==", flush=True)
    for c in changes:
        print(c.render())
    for key in gone:
        print(f"{key:<70} only in {old_name}")
    for key in added:
        print(f"{key:<70} new")
    regressed = sum(c.verdict == "regressed" for c in changes)
    print(f"{len(changes)} figures compared: {regressed} regressed, "
          f"{sum(c.verdict == 'improved' for c in changes)} improved", flush=True)
    return regressed


def load(path: Path) -> dict[str, Any]:
    """A results file, validated."""
    import json

    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ResultsError(f"cannot read {path}: {exc}") from None
    validate(doc)
    return doc

