"""Each package imports cleanly in a fresh interpreter, loading only its own
layer and those below it (the tests import ``datatransfer`` first, which
would hide a cycle or an eager load). The static layer contract is checked
by ``lint-imports`` (pyproject.toml), which ``make test`` runs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

RUNTIME = ("anyio", "trio", "libp2p", "transitions", "datatransfer.manager", "transport")

#: module -> what importing it alone must not load
CASES = {
    "statemachine": ("anyio", "trio", "libp2p", "datatransfer.manager", "transport", "registry"),
    "registry": RUNTIME,
    "datatransfer": RUNTIME + ("registry", "statemachine", "datatransfer.ipld"),
    "datatransfer.ipld.cid": RUNTIME + ("registry", "statemachine", "cbor2"),
    "datatransfer.ipld": RUNTIME + ("registry", "statemachine"),
    "datatransfer.messages": ("anyio", "trio", "libp2p", "datatransfer.manager", "transport"),
    "datatransfer.markets.retrieval": RUNTIME + ("statemachine",),
    "transport": ("anyio", "trio", "libp2p", "datatransfer.manager"),
    "datatransfer.core": ("anyio", "trio", "libp2p", "asyncio", "datatransfer.manager",
                          "transport", "datatransfer.store", "datatransfer.events", "sqlite3"),
}


@pytest.mark.parametrize("module", sorted(CASES))
def test_imports_alone_without_loading_upper_layers(module: str) -> None:
    code = (f"import sys, json; import {module}; "
            f"print(json.dumps(sorted(sys.modules)))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    loaded = set(json.loads(proc.stdout))
    assert not loaded & set(CASES[module]), sorted(loaded & set(CASES[module]))


def test_public_names_resolve_lazily() -> None:
    """``from datatransfer import Manager`` still works: the package loads
    each public name on first use."""
    code = ("import sys, datatransfer; assert 'datatransfer.manager' not in sys.modules; "
            "from datatransfer import *; import datatransfer as d; "
            "missing = [n for n in d.__all__ if n not in dir(d)]; assert not missing, missing; "
            "print(d.Manager.__module__, d.Status.__module__)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["datatransfer.manager", "statemachine.status"]


def _status_tuples(path) -> list[str]:  # type: ignore[no-untyped-def]
    """``x in (S.A, S.B)``-style comparisons against literal status tuples."""
    import ast

    found = []
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if not isinstance(node, ast.Compare):
            continue
        for op, right in zip(node.ops, node.comparators, strict=True):
            if not isinstance(op, ast.In | ast.NotIn):
                continue
            if isinstance(right, ast.Tuple | ast.Set | ast.List) and any(
                    isinstance(e, ast.Attribute) and isinstance(e.value, ast.Name)
                    and e.value.id in {"S", "Status"} for e in right.elts):
                found.append(f"{path}:{node.lineno}")
    return found


def test_status_sets_are_named_in_the_state_machine_only() -> None:
    """Every "is the channel ending / paused / finalizing" question is a
    named set or predicate of :mod:`statemachine.status`, not a literal
    tuple in the code that asks it."""
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    found = [hit for package in ("datatransfer", "transport", "registry")
             for path in sorted((root / package).rglob("*.py"))
             for hit in _status_tuples(path)]
    assert found == []
