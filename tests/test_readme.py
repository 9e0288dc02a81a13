"""Every code block of the README runs as written, or is checked another way.

``python`` blocks run, each in a fresh interpreter in an empty directory,
and must exit 0; when the paragraph before a block says what it prints
("It prints `...`"), the output must be exactly that. Shell blocks that are
not cheap to run (the whole suite, an hour of soak testing, minutes of
benchmarks) are listed in :data:`SHELL_BLOCKS` with the check that stands
in for running them and why. A block of any other kind, or a shell block
not listed, fails the test: whoever adds one says here how it is checked.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.S | re.M)


def blocks() -> list[tuple[str, str, str]]:
    """(info string, code, the text before the block) of every fenced block."""
    text = README.read_text()
    return [(m.group(1).strip(), m.group(2), text[: m.start()]) for m in FENCE.finditer(text)]


def _label(block: tuple[str, str, str]) -> str:
    lang, _, before = block
    return f"README.md:{before.count(chr(10)) + 1}-{lang or 'plain'}"


def claimed_output(before: str) -> str | None:
    """What the paragraph just before a block says it prints, if it says."""
    paragraph = before.rstrip().rsplit("\n\n", 1)[-1]
    found = re.findall(r"prints .*?`([^`]+)`", paragraph, re.S)
    return found[-1] if found else None


# -- shell blocks: how each is checked -------------------------------------------------


def _make_dry_run(target: str) -> str:
    if shutil.which("make") is None:
        pytest.skip("no make on PATH")
    return subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True,
                          text=True, check=True, timeout=60).stdout


def check_quick_start() -> None:
    """``make demo`` runs ``datatransfer demo`` after installing (that command
    runs, with a smaller file, in tests/test_cli_node.py::
    test_demo_transfers_and_prints_a_rate); ``make test`` runs this whole
    suite, ruff and lint-imports, and is what CI runs (``.ci/run``). Running
    either here would reinstall the package, and ``make test`` would run this
    test again. Checked: the targets exist and run those commands."""
    demo = _make_dry_run("demo")
    assert "pip install" in demo and "datatransfer demo" in demo
    test = _make_dry_run("test")
    assert "pip install" in test
    for command in ("-m pytest", "ruff check .", "lint-imports"):
        assert command in test, command
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    assert "def test_demo_transfers_and_prints_a_rate" in (
        ROOT / "tests" / "test_cli_node.py").read_text()


def check_command_line(code: str) -> None:
    """A synopsis with placeholders (MULTIADDR, CID, FILE), not commands to
    run as such; the commands themselves run in tests/test_cli_*.py.
    Checked: every command named exists and takes every option shown."""
    from datatransfer.cli import main

    runner = CliRunner()
    for line in code.splitlines():
        synopsis = line.split("#", 1)[0].split()
        if not synopsis:
            continue
        assert synopsis[0] == "datatransfer", line
        words = [w for w in synopsis[1:] if re.fullmatch(r"[a-z]+", w)]
        command = []
        for word in words:  # the command path: `car export` and the like
            trial = runner.invoke(main, [*command, word, "--help"])
            if trial.exit_code != 0:
                break
            command.append(word)
        if not command and "COMMAND" in synopsis:  # the top-level options
            usage = runner.invoke(main, ["--help"])
            assert usage.exit_code == 0, usage.output
            for option in re.findall(r"(?<![\w-])--?[a-z][a-z-]*", line.split("#", 1)[0]):
                assert option in usage.output, f"datatransfer has no {option}"
            continue
        assert command, f"no such command: {line}"
        usage = runner.invoke(main, [*command, "--help"])
        assert usage.exit_code == 0, usage.output
        for option in re.findall(r"--[a-z][a-z-]*", line):
            assert option in usage.output, f"{' '.join(command)} has no {option}"


def check_benchmarks() -> None:
    """Every benchmark takes minutes. Checked: ``make bench`` runs
    ``python -m benchmarks``, which parses the options shown."""
    assert "-m benchmarks" in _make_dry_run("bench")
    usage = subprocess.run([sys.executable, "-m", "benchmarks", "--help"], cwd=ROOT,
                           capture_output=True, text=True, timeout=60)
    assert usage.returncode == 0, usage.stderr
    assert "--quick" in usage.stdout and "names" in usage.stdout


def check_long_profile() -> None:
    """The soak run takes up to an hour. Checked: the ``long`` Hypothesis
    profile it names exists (tests/conftest.py) and runs more examples than
    the default one, and ``--timeout`` is pytest-timeout's option."""
    import pytest_timeout  # noqa: F401 - provides --timeout
    from hypothesis import settings

    assert settings.get_profile("long").max_examples > settings.get_profile(
        "default").max_examples


def check_paid_retrieval(code: str) -> None:
    """Runs as written (bash, in an empty directory, the installed
    ``datatransfer`` first on PATH): a paid retrieval between two nodes
    must give identical bytes, paid exactly price x bytes + unseal price."""
    import os
    import tempfile

    env = dict(os.environ)
    env.pop("DATATRANSFER_HOME", None)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run(["bash", "-euc", code], cwd=tmp, capture_output=True, text=True,
                              timeout=240, env=env)
        assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        assert proc.stdout.strip().splitlines()[-1] == "identical", proc.stdout
    paid = re.search(r"Completed: .*, paid (\d+) attoFIL", proc.stderr)
    size = re.search(r"ask: 1 attoFIL per byte for (\d+) bytes", proc.stderr)  # (the DAG's)
    assert paid and size, proc.stderr
    assert int(paid.group(1)) == 100 + int(size.group(1)), proc.stderr


def check_lassie_retrieval(code: str) -> None:
    """Runs as written (bash, in an empty directory, ``datatransfer`` and
    Lassie v0.25.0, built as tests/test_interop_lassie.py builds it, first
    on PATH): Lassie's CAR, imported, gives the file back."""
    import os
    import tempfile

    from _gobuild import build_module_command, require_go
    from test_interop_lassie import LASSIE_MODULE, LASSIE_VERSION

    go = require_go("the README's Lassie retrieval")
    lassie = build_module_command(go, LASSIE_MODULE, LASSIE_VERSION, "./cmd/lassie", "lassie")
    with tempfile.TemporaryDirectory() as tmp:
        bin_dir = Path(tmp, "bin")
        bin_dir.mkdir()
        (bin_dir / "lassie").symlink_to(lassie.resolve())
        work = Path(tmp, "work")
        work.mkdir()
        env = {k: v for k, v in os.environ.items()
               if k != "DATATRANSFER_HOME" and not k.startswith(("LASSIE_", "GOLOG_"))}
        env["PATH"] = os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent),
                                       env.get("PATH", "")])
        proc = subprocess.run(["bash", "-euc", code], cwd=work, capture_output=True, text=True,
                              timeout=300, env=env)
        assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        assert proc.stdout.strip().splitlines()[-1] == "identical", proc.stdout


def check_retrieval_config(code: str) -> None:
    """The home's config.toml gives serve's ask: checked by reading it as
    ``serve`` does, in a home that holds it."""
    import tempfile

    from datatransfer.cli.ask import AskTerms, retrieval_setup

    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "config.toml").write_text(code)
        _setup, line = retrieval_setup(Path(tmp), AskTerms(), lambda: None)
    assert line is not None and line.startswith(
        "retrieval ask: 1 attoFIL per byte, unseal 100 attoFIL, a payment every 1048576 bytes "
        "(+1048576)"), line


#: Each shell block of the README, exactly as written, with its check.
SHELL_BLOCKS: dict[str, Callable[[str], None]] = {
    "make demo    # install into .venv, start two nodes on 127.0.0.1, pull 64 MiB between "
    "them over libp2p (progress shown)\n"
    "make test    # install into .venv and run the whole test suite\n":
        lambda code: check_quick_start(),
    "make bench                     # or: .venv/bin/python -m benchmarks [--quick] [NAME ...]\n":
        lambda code: check_benchmarks(),
    "HYPOTHESIS_PROFILE=long .venv/bin/pytest --timeout 3600\n":
        lambda code: check_long_profile(),
}

#: The README's other blocks (not shell, not Python), by kind.
OTHER_BLOCKS: dict[str, Callable[[str], None]] = {"toml": check_retrieval_config}


def _shell_check(code: str) -> Callable[[str], None] | None:
    if code.startswith("datatransfer "):
        return check_command_line
    if code.startswith("head -c 3000000 /dev/urandom > movie.bin\n"):
        return check_paid_retrieval
    if code.startswith("head -c 2000000 /dev/urandom > photo.bin\n"):
        return check_lassie_retrieval
    return SHELL_BLOCKS.get(code)


# -- the tests ---------------------------------------------------------------------------


def test_the_readme_has_code_blocks_of_each_kind():
    kinds = {lang for lang, _, _ in blocks()}
    assert {"python", "sh"} <= kinds, kinds


def test_every_block_is_handled():
    """A new block fails here until this file says how it is checked."""
    for lang, code, _ in blocks():
        if lang == "python" or lang in OTHER_BLOCKS:
            continue
        assert lang in ("sh", "bash"), f"README block of kind {lang!r} is not checked: {code!r}"
        assert _shell_check(code) is not None, (
            f"README shell block not checked by tests/test_readme.py:\n{code}")


@pytest.mark.parametrize("block", [b for b in blocks() if b[0] in ("sh", "bash")], ids=_label)
def test_shell_block(block):
    _, code, _ = block
    check = _shell_check(code)
    assert check is not None
    check(code)


@pytest.mark.parametrize("block", [b for b in blocks() if b[0] in OTHER_BLOCKS], ids=_label)
def test_other_block(block):
    lang, code, _ = block
    OTHER_BLOCKS[lang](code)


@pytest.mark.parametrize("block", [b for b in blocks() if b[0] == "python"], ids=_label)
def test_python_block_runs_as_written(block, tmp_path):
    _, code, before = block
    script = tmp_path / "block.py"
    script.write_text(code)
    work = tmp_path / "cwd"
    work.mkdir()
    proc = subprocess.run([sys.executable, str(script)], cwd=work, capture_output=True,
                          text=True, timeout=240)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.stdout.strip(), "the example shows nothing: it must print what it did"
    claim = claimed_output(before)
    if claim is not None:
        assert proc.stdout.strip() == claim, (proc.stdout, claim)
