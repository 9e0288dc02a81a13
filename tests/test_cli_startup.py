"""The light commands import only what they use (issue 11, item 7).

``datatransfer --version``, ``ls`` and ``--help`` run in a fresh interpreter
that lists the modules it imported when it exits: none may import
py-libp2p, trio, the node or the Manager (``pull`` and ``serve`` need them,
imported when they run); ``--version`` not even the command modules or
rich. Also: the lazily loaded command table lists every command.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from _processes import TIMEOUT, child_env

from datatransfer.store import SqliteChannelStore

ROOT = Path(__file__).resolve().parent.parent
#: Imported by none of the light commands.
HEAVY = ("libp2p", "trio", "transport.libp2p", "datatransfer.node", "datatransfer.manager",
         "datatransfer.core")
#: Not imported by ``--version`` either.
COMMANDS = ("datatransfer.cli.node", "datatransfer.cli.blocks", "rich")


def imported(tmp_path: Path, *args: str) -> set[str]:
    """The modules ``datatransfer ARGS`` has imported when it exits, in a
    fresh interpreter (``sys.modules``, written out at exit)."""
    out = tmp_path / "modules.json"
    code = (f"import atexit, json, sys; atexit.register(lambda: open({str(out)!r}, 'w')"
            ".write(json.dumps(sorted(sys.modules))))\n"
            "from datatransfer.cli import main; main()")
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=TIMEOUT, env=child_env(), cwd=ROOT)  # -c: cwd on sys.path
    assert proc.returncode == 0, proc.stderr[-3000:]
    return set(json.loads(out.read_text()))


def heavy(modules: set[str], names: tuple[str, ...] = HEAVY) -> list[str]:
    return sorted(m for m in modules if any(m == n or m.startswith(n + ".") for n in names))


def test_version_imports_no_command(tmp_path: Path) -> None:
    modules = imported(tmp_path, "--version")
    assert "click" in modules  # the listing works
    assert heavy(modules, HEAVY + COMMANDS) == []


@pytest.mark.parametrize("args", [(), ("--all", "--json")])
def test_ls_imports_no_node(tmp_path: Path, args: tuple[str, ...]) -> None:
    SqliteChannelStore(tmp_path / "channels.sqlite").close()  # read, empty
    modules = imported(tmp_path, "ls", "--home", str(tmp_path), *args)
    assert "datatransfer.store" in modules
    assert heavy(modules) == []


def test_help_imports_no_node(tmp_path: Path) -> None:
    modules = imported(tmp_path, "--help")
    assert "datatransfer.cli.node" in modules  # every command's help line
    assert heavy(modules) == []


def test_every_command_is_listed() -> None:
    """The table of lazily imported commands names exactly the commands the
    modules register (a command missing from it would not run)."""
    import click

    from datatransfer.cli import COMMAND_MODULES, _load, main

    for module in set(COMMAND_MODULES.values()):
        _load(module)
    assert set(main.commands) == set(COMMAND_MODULES) | {"completion"}
    ctx = click.Context(main)
    for name in COMMAND_MODULES:
        assert main.get_command(ctx, name) is main.commands[name]


def test_python_m_datatransfer_is_the_command() -> None:
    proc = subprocess.run([sys.executable, "-m", "datatransfer", "--version"], capture_output=True,
                          text=True, timeout=TIMEOUT, env=child_env(), cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("datatransfer ")
