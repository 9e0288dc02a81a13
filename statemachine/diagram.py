"""Diagrams of the channel state machine, generated from the transition table.

The table is the only source: every machine status becomes a node and every
row an edge labelled with its event, so the picture cannot drift from the
rules.  Rows that keep the status are drawn as self-loops and marked with
their kind: ``(re-enter)`` when the status's entry handler runs again,
``(record)`` when only data is recorded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from statemachine.status import FINAL_STATUSES, MACHINE_STATUSES, Status
from statemachine.table import Kind, Row, rows

FORMATS: tuple[str, ...] = ("mermaid", "dot")

_LEGEND = (
    "Generated from statemachine.table; one edge per (status, event) row.",
    "'(re-enter)': status unchanged, its entry handler runs again (Go ToNoChange).",
    "'(record)': status unchanged, only the event's data is recorded (Go ToJustRecord).",
    "Final statuses (Completed, Failed, Cancelled) accept no event.",
)


def edge_label(row: Row) -> str:
    """The label of ``row``'s edge: the event name, plus its kind when the status stays."""
    if row.kind is Kind.MOVE:
        return row.event.name
    return f"{row.event.name} ({row.kind.value})"


def mermaid(table: Iterable[Row] | None = None) -> str:
    """A mermaid ``stateDiagram-v2`` of the machine."""
    lines = ["stateDiagram-v2"]
    lines += [f"    %% {text}" for text in _LEGEND]
    lines.append(f"    [*] --> {Status.Requested.name}")
    lines += [f"    {status.name}" for status in MACHINE_STATUSES]
    for row in rows() if table is None else table:
        lines.append(f"    {row.source.name} --> {row.target.name} : {edge_label(row)}")
    lines += [
        f"    {status.name} --> [*]" for status in MACHINE_STATUSES if status in FINAL_STATUSES
    ]
    return "\n".join(lines) + "\n"


_DOT_STYLE = {Kind.MOVE: "solid", Kind.REENTER: "dotted", Kind.RECORD: "dashed"}


def dot(table: Iterable[Row] | None = None) -> str:
    """A Graphviz ``digraph`` of the machine (final statuses drawn with a double border)."""
    lines = ["digraph channel {"]
    lines += [f"    // {text}" for text in _LEGEND]
    lines.append("    rankdir=LR;")
    lines.append('    node [shape=box, style=rounded, fontname="Helvetica"];')
    lines.append('    edge [fontname="Helvetica", fontsize=10];')
    for status in MACHINE_STATUSES:
        extra = " [peripheries=2]" if status in FINAL_STATUSES else ""
        lines.append(f'    "{status.name}"{extra};')
    for row in rows() if table is None else table:
        lines.append(
            f'    "{row.source.name}" -> "{row.target.name}"'
            f' [label="{edge_label(row)}", style={_DOT_STYLE[row.kind]}];'
        )
    lines.append("}")
    return "\n".join(lines) + "\n"


_RENDERERS: dict[str, Callable[[], str]] = {"mermaid": mermaid, "dot": dot}


def render(fmt: str = "mermaid") -> str:
    """The diagram in ``fmt`` (one of :data:`FORMATS`)."""
    try:
        return _RENDERERS[fmt]()
    except KeyError:
        raise ValueError(f"unknown diagram format {fmt!r}; expected one of {FORMATS}") from None
