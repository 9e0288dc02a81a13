"""``datatransfer fsm``: the diagram shows every status and the expected edges.

The edges listed here are written out by hand from go-data-transfer v1.15's
``channels_fsm.go``; they cover every event at least once and every kind of
edge (a move, a self-loop that re-runs the entry handler, a record-only
self-loop).
"""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from datatransfer.cli import main
from statemachine import EventCode, rows

STATUSES = [
    "Requested", "Ongoing", "TransferFinished", "ResponderCompleted", "Finalizing",
    "Completing", "Completed", "Failing", "Failed", "Cancelling", "Cancelled",
    "InitiatorPaused", "ResponderPaused", "BothPaused", "ResponderFinalizing",
    "ResponderFinalizingTransferFinished",
]  # fmt: skip

# (source, target, label); a label ending in "(re-enter)" or "(record)" marks
# a transition that keeps the status.
EDGES = [
    ("Ongoing", "Requested", "Open"),
    ("Requested", "Requested", "Open (re-enter)"),
    ("Requested", "Ongoing", "Accept"),
    ("Ongoing", "Ongoing", "Restart (record)"),
    ("Failing", "Failing", "Opened (record)"),
    ("Requested", "Requested", "TransferRequestQueued (record)"),
    ("BothPaused", "Cancelling", "Cancel"),
    ("Completing", "Failing", "Error"),
    ("Ongoing", "Ongoing", "Disconnected (re-enter)"),
    ("Cancelling", "Cancelling", "Disconnected (re-enter)"),
    ("Ongoing", "Ongoing", "SendDataError (re-enter)"),
    ("Ongoing", "Ongoing", "ReceiveDataError (re-enter)"),
    ("Ongoing", "Ongoing", "RequestCancelled (re-enter)"),
    ("Finalizing", "Finalizing", "DataReceived (re-enter)"),
    ("TransferFinished", "TransferFinished", "DataSent (re-enter)"),
    ("TransferFinished", "TransferFinished", "DataQueued (re-enter)"),
    ("ResponderCompleted", "ResponderCompleted", "DataSentProgress (re-enter)"),
    ("ResponderFinalizing", "ResponderFinalizing", "DataReceivedProgress (re-enter)"),
    ("BothPaused", "BothPaused", "DataQueuedProgress (re-enter)"),
    ("Ongoing", "Ongoing", "NewVoucher (re-enter)"),
    ("Ongoing", "Ongoing", "NewVoucherResult (re-enter)"),
    ("Requested", "InitiatorPaused", "PauseInitiator"),
    ("Ongoing", "InitiatorPaused", "PauseInitiator"),
    ("ResponderPaused", "BothPaused", "PauseInitiator"),
    ("InitiatorPaused", "InitiatorPaused", "PauseInitiator (record)"),
    ("Ongoing", "ResponderPaused", "PauseResponder"),
    ("InitiatorPaused", "BothPaused", "PauseResponder"),
    ("InitiatorPaused", "Ongoing", "ResumeInitiator"),
    ("BothPaused", "ResponderPaused", "ResumeInitiator"),
    ("ResponderPaused", "Ongoing", "ResumeResponder"),
    ("BothPaused", "InitiatorPaused", "ResumeResponder"),
    ("Finalizing", "Completing", "ResumeResponder"),
    ("Ongoing", "TransferFinished", "FinishTransfer"),
    ("Requested", "Completing", "FinishTransfer"),
    ("ResponderCompleted", "Completing", "FinishTransfer"),
    ("ResponderFinalizing", "ResponderFinalizingTransferFinished", "FinishTransfer"),
    ("Failing", "Failing", "FinishTransfer (record)"),
    ("Ongoing", "ResponderFinalizing", "ResponderBeginsFinalization"),
    ("TransferFinished", "ResponderFinalizingTransferFinished", "ResponderBeginsFinalization"),
    ("Cancelling", "Cancelling", "ResponderBeginsFinalization (record)"),
    ("Ongoing", "ResponderCompleted", "ResponderCompletes"),
    ("ResponderPaused", "ResponderFinalizing", "ResponderCompletes"),
    ("TransferFinished", "Completing", "ResponderCompletes"),
    ("ResponderFinalizing", "ResponderCompleted", "ResponderCompletes"),
    ("ResponderFinalizingTransferFinished", "Completing", "ResponderCompletes"),
    ("Ongoing", "Finalizing", "BeginFinalizing"),
    ("Ongoing", "Completing", "Complete"),
    ("Cancelling", "Cancelled", "CleanupComplete"),
    ("Failing", "Failed", "CleanupComplete"),
    ("Completing", "Completed", "CleanupComplete"),
    ("Completing", "Completing", "CompleteCleanupOnRestart (re-enter)"),
]

# Edges that must NOT be drawn (refused transitions).
ABSENT = [
    ("Ongoing", "Ongoing", "Accept"),
    ("Ongoing", "Ongoing", "RequestTimedOut (re-enter)"),
    ("Finalizing", "Finalizing", "DataSentProgress (re-enter)"),
    ("Completed", "Requested", "Open"),
    ("Requested", "Requested", "CleanupComplete (re-enter)"),
]


def _run(*args: str) -> str:
    result = CliRunner().invoke(main, ["fsm", *args])
    assert result.exit_code == 0, result.output
    return result.output


def _mermaid_edge(src: str, dst: str, label: str) -> str:
    return f"{src} --> {dst} : {label}"


def _dot_edge(src: str, dst: str, label: str) -> str:
    return f'"{src}" -> "{dst}" [label="{label}"'


def test_default_format_is_mermaid() -> None:
    assert _run() == _run("--format", "mermaid")


def test_mermaid() -> None:
    out = _run("--format", "mermaid")
    lines = [line.strip() for line in out.splitlines()]
    assert lines[0] == "stateDiagram-v2"
    for status in STATUSES:
        assert status in lines, f"node {status} missing"
    assert "ChannelNotFoundError" not in out
    for edge in EDGES:
        assert _mermaid_edge(*edge) in lines, edge
    for edge in ABSENT:
        assert _mermaid_edge(*edge) not in lines, edge
    # final statuses are marked as ends, and have no outgoing event edges
    for final in ("Completed", "Failed", "Cancelled"):
        assert f"{final} --> [*]" in lines
        assert not any(line.startswith(f"{final} --> ") and ":" in line for line in lines)


def test_dot() -> None:
    out = _run("--format", "dot")
    assert out.startswith("digraph ")
    assert out.rstrip().endswith("}")
    for status in STATUSES:
        assert re.search(rf'^\s*"{status}"( \[[^\]]*\])?;$', out, re.M), f"node {status} missing"
    assert "ChannelNotFoundError" not in out
    for edge in EDGES:
        assert _dot_edge(*edge) in out, edge
    for edge in ABSENT:
        assert _dot_edge(*edge) not in out, edge
    for final in ("Completed", "Failed", "Cancelled"):
        assert f'"{final}" [peripheries=2];' in out
        assert f'"{final}" -> ' not in out


@pytest.mark.parametrize("fmt", ["mermaid", "dot"])
def test_every_event_is_drawn_somewhere_but_request_timed_out(fmt: str) -> None:
    out = _run("--format", fmt)
    for event in EventCode:
        drawn = re.search(rf"[:\"=] ?{event.name}\b", out) is not None
        assert drawn is (event is not EventCode.RequestTimedOut), event.name


@pytest.mark.parametrize("fmt", ["mermaid", "dot"])
def test_one_edge_per_table_row(fmt: str) -> None:
    """Completeness: the diagram draws every row of the table, once."""
    out = _run("--format", fmt)
    arrow = " --> " if fmt == "mermaid" else " -> "
    edges = [line for line in out.splitlines() if arrow in line and "[*]" not in line]
    assert len(edges) == len(list(rows()))
    assert len(set(edges)) == len(edges)


def test_bad_format_is_rejected() -> None:
    result = CliRunner().invoke(main, ["fsm", "--format", "png"])
    assert result.exit_code != 0
    assert "png" in result.output
