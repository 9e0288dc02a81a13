"""What the package ships: type hints (PEP 561), the license its metadata
declares, and run-time dependencies that the run-time code imports (the
reference implementations the tests compare against are extras only)."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PACKAGES = ("datatransfer", "registry", "statemachine", "transport")
TEST_ONLY = ("dag_cbor", "multiformats")


@pytest.mark.parametrize("package", PACKAGES)
def test_package_ships_py_typed(package):
    assert (ROOT / package / "py.typed").is_file()
    assert "py.typed" in PYPROJECT["tool"]["setuptools"]["package-data"]["*"]


def test_license_files_match_the_metadata():
    project = PYPROJECT["project"]
    assert project["license"] == "MIT OR Apache-2.0"
    files = project["license-files"]
    for name in files:
        assert (ROOT / name).is_file(), name
    assert "Permission is hereby granted, free of charge" in (ROOT / "LICENSE-MIT").read_text()
    assert "Apache License\n                           Version 2.0" in (
        ROOT / "LICENSE-APACHE").read_text()
    summary = (ROOT / "LICENSE").read_text()
    assert "MIT OR Apache-2.0" in summary and "LICENSE-MIT" in summary


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_reference_implementations_are_not_run_time_dependencies():
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            used = _imports(path) & set(TEST_ONLY)
            assert not used, f"{path.relative_to(ROOT)} imports {used} at run time"
    declared = " ".join(PYPROJECT["project"]["dependencies"])
    extras = PYPROJECT["project"]["optional-dependencies"]
    for dist in ("dag-cbor", "multiformats"):
        assert dist not in declared
        assert any(d.startswith(dist) for d in extras["test"])
        assert any(d.startswith(dist) for d in extras["bench"])
