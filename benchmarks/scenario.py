"""What the harness measures: a scenario, parsed from the command line.

A scenario is one transfer set-up: file size, DAG shape, block size,
concurrent channels, pull or push, transport and link. It is written either
as options (``--size 8MiB --dag modern --latency 20ms ...``) or as one
``--scenario`` text, a named sweep (:data:`SWEEPS`) or ``key=value`` pairs
joined by commas (``size=8MiB,dag=cbor-tree,latency=20ms``); the keys are
the fields of :class:`Scenario` (``block``, ``bw`` and ``ch`` are short
for ``block_size``, ``bandwidth`` and ``channels``).

Kept apart from the runners so that the parser is tested without a network.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

MIB = 1 << 20
DAGS = ("classic", "modern", "cbor-tree")
DIRECTIONS = ("pull", "push")
TRANSPORTS = ("inmem", "libp2p", "processes")
#: One client process per channel in a two-process scenario: more would
#: measure the machine's scheduler, not the transfer.
MAX_PROCESS_CHANNELS = 64
#: In-process channels all come from one peer: past the Manager's per-peer
#: limit (1,024) the harness lifts it, and the results say so.
PER_PEER_LIMIT = 1024
_SIZE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kib": 1 << 10, "m": MIB, "mib": MIB,
               "g": 1 << 30, "gib": 1 << 30, "kb": 1000, "mb": 1000 ** 2, "gb": 1000 ** 3}
_BIT_UNITS = {"kbit": 1e3 / 8, "mbit": 1e6 / 8, "gbit": 1e9 / 8}
_TIME_UNITS = {"": 1e-3, "ms": 1e-3, "s": 1.0, "us": 1e-6}
_ALIASES = {"block": "block_size", "bw": "bandwidth", "ch": "channels",
            "file_size": "size"}


class ScenarioError(ValueError):
    """A scenario that cannot be run as written (the message says which part)."""


def parse_size(text: str) -> int:
    """Bytes from ``4096``, ``64K``, ``256MiB``, ``1G`` (powers of 1024;
    ``kB``, ``MB``, ``GB`` are powers of 1000)."""
    m = re.fullmatch(r"\s*(\d+)\s*([a-zA-Z]*)\s*", str(text))
    if m is None or m.group(2).lower() not in _SIZE_UNITS or int(m.group(1)) < 1:
        raise ScenarioError(f"not a size: {text!r} (e.g. 1048576, 64K, 256MiB)")
    return int(m.group(1)) * _SIZE_UNITS[m.group(2).lower()]


def parse_rate(text: str) -> float:
    """Bytes per second from ``100Mbit``, ``12MB``, ``10MiB`` (per second;
    a trailing ``/s`` or ``ps`` is allowed)."""
    body = re.sub(r"(/s|ps)\s*$", "", str(text).strip(), flags=re.IGNORECASE)
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([a-zA-Z]*)", body)
    if m is not None and float(m.group(1)) > 0:
        unit = m.group(2).lower()
        if unit in _BIT_UNITS:
            return float(m.group(1)) * _BIT_UNITS[unit]
        if unit in _SIZE_UNITS:
            return float(m.group(1)) * _SIZE_UNITS[unit]
    raise ScenarioError(f"not a bandwidth: {text!r} (e.g. 100Mbit, 12MB, 10MiB per second)")


def parse_duration(text: str) -> float:
    """Seconds from ``20ms``, ``0.1s``, ``250us``; a bare number is milliseconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*", str(text))
    if m is None or m.group(2) not in _TIME_UNITS:
        raise ScenarioError(f"not a duration: {text!r} (e.g. 20ms, 0.1s; a number is ms)")
    return float(m.group(1)) * _TIME_UNITS[m.group(2)]


def parse_loss(text: str) -> float:
    """A fraction of segments lost, from ``0.01`` or ``1%`` (below 50%)."""
    t = str(text).strip()
    try:
        value = float(t[:-1]) / 100 if t.endswith("%") else float(t)
    except ValueError:
        value = -1.0
    if not 0 <= value < 0.5:
        raise ScenarioError(f"not a loss rate: {text!r} (a fraction below 0.5, or 0-49%)")
    return value


@dataclass(frozen=True)
class Link:
    """A shaped link between the nodes (:mod:`benchmarks._shaper`).

    ``latency``: round-trip time added, seconds (half each way);
    ``bandwidth``: bytes per second each way (None: unlimited);
    ``loss``: fraction of TCP segments lost, modelled as a retransmission
    delay (the relay is a TCP proxy: bytes cannot be dropped, only late)."""

    latency: float = 0.0
    bandwidth: float | None = None
    loss: float = 0.0

    @property
    def shaped(self) -> bool:
        return bool(self.latency or self.bandwidth or self.loss)

    def label(self) -> str:
        parts = [f"+{self.latency * 1e3:g} ms RTT"] if self.latency else []
        if self.bandwidth:
            parts.append(f"{self.bandwidth * 8 / 1e6:g} Mbit/s")
        if self.loss:
            parts.append(f"{self.loss * 100:g}% loss")
        return ", ".join(parts) or "loopback"


@dataclass(frozen=True)
class Scenario:
    """One transfer set-up. ``sweep`` names the sweep it belongs to (the
    plot draws one panel per sweep), ``rounds`` how often each case runs
    (cases alternate within a round)."""

    size: int = 16 * MIB
    dag: str = "classic"
    block_size: int | None = None  # None: the profile's (classic 256 KiB,
    # modern 1 MiB, cbor-tree 256 KiB)
    fanout: int = 16               # links per node of the cbor-tree
    channels: int = 1
    direction: str = "pull"
    transport: str = "processes"
    link: Link = field(default_factory=Link)
    rounds: int = 1
    go: bool = True                # also run the Go reference node, where it can
    sweep: str | None = None

    def __post_init__(self) -> None:
        check(self)

    def key(self) -> str:
        """What a later run's result is matched on (:func:`benchmarks.results.compare`)."""
        block = f"{self.block_size}B blocks" if self.block_size else "default blocks"
        dag = f"cbor-tree/{self.fanout}" if self.dag == "cbor-tree" else f"unixfs-{self.dag}"
        return (f"{self.direction} {self.transport} {self.size / MIB:g} MiB {dag} {block} "
                f"x{self.channels} [{self.link.label()}]")

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["link"] = asdict(self.link)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Scenario:
        values = dict(data)
        values["link"] = Link(**values.get("link", {}))
        return cls(**values)

    @property
    def go_can_run(self) -> bool:
        """The Go node imports files as UnixFS classic or modern only, at
        their own block sizes, and runs as its own process."""
        return (self.go and self.transport == "processes" and self.dag in ("classic", "modern")
                and self.block_size is None)


def check(s: Scenario) -> None:
    """Raise :class:`ScenarioError` for a scenario that cannot run."""
    if s.dag not in DAGS:
        raise ScenarioError(f"unknown DAG shape {s.dag!r}; known: {', '.join(DAGS)}")
    if s.direction not in DIRECTIONS:
        raise ScenarioError(f"direction must be pull or push, not {s.direction!r}")
    if s.transport not in TRANSPORTS:
        raise ScenarioError(f"unknown transport {s.transport!r}; known: {', '.join(TRANSPORTS)}")
    if s.size < 1:
        raise ScenarioError("the file size must be at least 1 byte")
    if s.block_size is not None and not 1 <= s.block_size <= MIB:
        raise ScenarioError(f"block size {s.block_size} out of range 1 B - 1 MiB "
                            "(graphsync's largest block)")
    if s.fanout < 2:
        raise ScenarioError(f"a cbor-tree needs a fanout of at least 2, not {s.fanout}")
    if s.channels < 1:
        raise ScenarioError("channels must be at least 1")
    if s.transport == "processes" and s.channels > MAX_PROCESS_CHANNELS:
        raise ScenarioError(f"{s.channels} channels: a two-process scenario runs one client "
                            f"process per channel, at most {MAX_PROCESS_CHANNELS}")
    if s.transport == "inmem" and s.link.shaped:
        raise ScenarioError("a shaped link needs a libp2p transport (libp2p or processes): "
                            "the in-memory network has no TCP connection to relay")
    if s.rounds < 1:
        raise ScenarioError("rounds must be at least 1")


def _field_value(name: str, text: str) -> dict[str, Any]:
    """{field: value} for one ``key=value`` of a scenario text."""
    name = _ALIASES.get(name, name)
    if name == "size":
        return {"size": parse_size(text)}
    if name == "block_size":
        return {"block_size": None if text in ("", "default") else parse_size(text)}
    if name in ("channels", "fanout", "rounds"):
        try:
            return {name: int(text)}
        except ValueError:
            raise ScenarioError(f"{name} must be a whole number, not {text!r}") from None
    if name in ("dag", "direction", "transport"):
        return {name: text}
    if name == "go":
        return {"go": text.lower() in ("1", "yes", "true", "on")}
    if name == "latency":
        return {"latency": parse_duration(text)}
    if name == "bandwidth":
        return {"bandwidth": None if text in ("", "none", "0") else parse_rate(text)}
    if name == "loss":
        return {"loss": parse_loss(text)}
    known = sorted({f.name for f in fields(Scenario)} - {"link", "sweep"}
                   | {"latency", "bandwidth", "loss"} | set(_ALIASES))
    raise ScenarioError(f"unknown scenario key {name!r}; known: {', '.join(known)}")


def build(base: Scenario | None = None, **values: Any) -> Scenario:
    """``base`` with ``values`` replaced (``latency``, ``bandwidth`` and
    ``loss`` go into its link), checked."""
    base = base or Scenario()
    link_keys = {k: values.pop(k) for k in ("latency", "bandwidth", "loss") if k in values}
    link = replace(base.link, **link_keys) if link_keys else base.link
    return replace(base, link=link, **values)


def parse_pairs(text: str, base: Scenario | None = None) -> Scenario:
    """A scenario from ``key=value,key=value`` (over ``base``)."""
    values: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        if "=" not in part:
            raise ScenarioError(f"{part!r} is not key=value (nor a named scenario: "
                                f"{', '.join(SWEEPS)})")
        key, value = (s.strip() for s in part.split("=", 1))
        values.update(_field_value(key.replace("-", "_"), value))
    return build(base, **values)


#: Named scenarios: a sweep of one variable over a base.
SWEEPS = {
    "latency-sweep": ("latency", [0.0, 0.01, 0.025, 0.05, 0.1], [0.0, 0.025]),
    "concurrency-sweep": ("channels", [1, 2, 4, 8], [1, 2]),
}
#: The size of a scenario not given one (quick: :data:`QUICK_SIZE`).
DEFAULT_SIZE = 16 * MIB
QUICK_SIZE = 1 * MIB


def expand(text: str | None, given: dict[str, Any] | None = None, *,
           quick: bool = False) -> list[Scenario]:
    """The scenarios of one ``--scenario`` text over the options ``given``
    (``build``'s keywords): a named sweep's points, in order; the one
    scenario ``key=value`` pairs describe; the options' alone for None."""
    base = build(Scenario(size=QUICK_SIZE if quick else DEFAULT_SIZE), **dict(given or {}))
    if text in SWEEPS:
        variable, points, quick_points = SWEEPS[text]
        sweep = text.removesuffix("-sweep")
        return [build(base, sweep=sweep, **{variable: v})
                for v in (quick_points if quick else points)]
    return [parse_pairs(text, base) if text else base]
