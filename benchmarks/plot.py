"""The picture of a sweep: throughput against the swept variable (latency,
concurrent channels), ours beside Go's and the bare stream's, one panel per
sweep and direction.

matplotlib is the ``bench`` extra (``pip install 'py-data-transfer[bench]'``)
and imported only here, when ``--plot`` is given: nothing else needs it, and
it is larger than the rest of the project's dependencies together.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: How each case is drawn.
_STYLE = {"ours": ("py-data-transfer", "tab:blue", "o-"),
          "go": ("go-data-transfer (Go reference node)", "tab:orange", "s-"),
          "bare-stream": ("bare py-libp2p stream (ceiling)", "tab:gray", "^--"),
          "sha2-256": ("sha2-256 of the same bytes", "tab:gray", "^--")}
_AXES = {"latency": ("added round-trip time (ms)", lambda s: s["link"]["latency"] * 1e3),
         "concurrency": ("concurrent channels", lambda s: s["channels"])}


class PlotError(RuntimeError):
    """The picture cannot be drawn (matplotlib missing, or nothing swept)."""


def require() -> None:
    """Fail early, before any benchmark runs, when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise PlotError("--plot needs matplotlib: pip install 'py-data-transfer[bench]'") from None


def panels(doc: dict[str, Any]) -> dict[tuple[str, str], dict[str, list[tuple[float, float]]]]:
    """{(sweep, direction): {case: [(x, median MB/s), ...] sorted by x}}."""
    out: dict[tuple[str, str], dict[str, list[tuple[float, float]]]] = {}
    for r in doc["results"]:
        sc = r["scenario"]
        if sc.get("sweep") not in _AXES or r["median"] is None:
            continue
        x = _AXES[sc["sweep"]][1](sc)
        cases = out.setdefault((sc["sweep"], sc["direction"]), {})
        cases.setdefault(r["case"], []).append((x, r["median"]))
    for cases in out.values():
        for points in cases.values():
            points.sort()
    return out


def draw(doc: dict[str, Any], path: Path) -> None:
    """Write the picture of ``doc``'s sweeps to ``path`` (format from its suffix)."""
    require()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    found = panels(doc)
    if not found:
        raise PlotError("nothing to draw: no sweep among the results "
                        "(--scenario latency-sweep or concurrency-sweep)")
    fig, axes = plt.subplots(1, len(found), figsize=(5.5 * len(found), 4.2), squeeze=False)
    order = list(_AXES)
    ordered = sorted(found.items(), key=lambda kv: (order.index(kv[0][0]), kv[0][1]))
    for ax, ((sweep, direction), cases) in zip(axes[0], ordered, strict=True):
        for case, points in cases.items():
            label, color, style = _STYLE.get(case, (case, None, "x-"))
            ax.plot([p[0] for p in points], [p[1] for p in points], style, color=color,
                    label=label)
        ax.set_xlabel(_AXES[sweep][0])
        ax.set_ylabel("throughput (MB/s)")
        sample = next(r["scenario"] for r in doc["results"]
                      if r["scenario"].get("sweep") == sweep)
        ax.set_title(f"{direction}, {sample['size'] / (1 << 20):g} MiB {sample['dag']}, "
                     f"{sample['transport']}", fontsize=10)
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    m = doc["machine"]
    fig.suptitle(f"{m.get('cpu') or m['machine']}, {m['cpus']} CPUs; {doc['created']}",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
