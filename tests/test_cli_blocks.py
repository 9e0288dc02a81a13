"""The block commands (add, cat, car export/import) and the node home."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from datatransfer.cli.blocks import register
from datatransfer.home import (
    BLOCKSTORE_FILE,
    ENV_VAR,
    blockstore_path,
    open_blockstore,
    resolve_home,
)
from datatransfer.ipld.car import ALL_SELECTOR, CarReader
from datatransfer.ipld.cid import CID


@click.group()
def cli() -> None:
    """Test group holding the block commands."""


register(cli)


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def _run(runner: CliRunner, *args: str, ok: bool = True, **kwargs):
    result = runner.invoke(cli, [str(a) for a in args], catch_exceptions=False, **kwargs)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def _content(size: int) -> bytes:
    """Byte i is i % 251: no two 256 KiB or 1 MiB chunks are equal."""
    return (bytes(range(251)) * (size // 251 + 1))[:size]


@pytest.mark.parametrize(
    "profile, size",
    [("classic", 0), ("classic", 12), ("classic", 600_000), ("modern", 1), ("modern", 2_500_000)],
)
def test_add_then_cat(runner, tmp_path, profile, size):
    home = tmp_path / "home"
    src = tmp_path / "in.bin"
    data = _content(size)
    src.write_bytes(data)
    result = _run(runner, "add", src, "--profile", profile, "--home", home)
    root = CID.parse(result.stdout.strip().splitlines()[-1])
    assert root.version == (0 if profile == "classic" else 1)
    assert (home / BLOCKSTORE_FILE).exists()
    # To stdout, binary-safe.
    assert _run(runner, "cat", root, "--home", home).stdout_bytes == data
    # To a file.
    out = tmp_path / "out.bin"
    _run(runner, "cat", root, "-o", out, "--home", home)
    assert out.read_bytes() == data


def test_hello_world_cid(runner, tmp_path):
    src = tmp_path / "hello.txt"
    src.write_bytes(b"hello world\n")
    result = _run(runner, "add", src, "--home", tmp_path / "h")
    assert (
        result.stdout.strip().splitlines()[-1] == "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"
    )
    result = _run(runner, "add", src, "--profile", "modern", "--home", tmp_path / "h")
    assert result.stdout.strip() == "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4"


def test_add_from_stdin(runner, tmp_path):
    result = _run(runner, "add", "-", "--home", tmp_path, input=b"hello world\n")
    assert result.stdout.strip() == "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"


def test_car_export_import_roundtrip(runner, tmp_path):
    home_a, home_b = tmp_path / "a", tmp_path / "b"
    src = tmp_path / "in.bin"
    data = _content(700_000)
    src.write_bytes(data)
    root = _run(runner, "add", src, "--home", home_a).stdout.strip()
    car_file = tmp_path / "out.car"
    result = _run(runner, "car", "export", root, car_file, "--home", home_a)
    assert "exported 4 blocks" in result.stderr
    with CarReader(car_file) as reader:
        assert [str(r) for r in reader.roots] == [root]
        assert len(list(reader)) == 4  # three leaves and the root
    result = _run(runner, "car", "import", car_file, "--home", home_b)
    assert result.stdout.strip() == root
    assert "imported 4 blocks" in result.stderr
    assert _run(runner, "cat", root, "--home", home_b).stdout_bytes == data
    # The same with an explicit selector ("all").
    car2 = tmp_path / "sel.car"
    _run(
        runner,
        "car",
        "export",
        root,
        car2,
        "--selector",
        json.dumps(ALL_SELECTOR),
        "--home",
        home_a,
    )
    assert car2.read_bytes() == car_file.read_bytes()
    # And a selector that stops at the root.
    car3 = tmp_path / "root-only.car"
    _run(runner, "car", "export", root, car3, "--selector", '{".": {}}', "--home", home_a)
    with CarReader(car3) as reader:
        assert [str(cid) for cid, _ in reader] == [root]


def test_home_from_environment(runner, tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "envhome"))
    result = _run(runner, "add", "-", input=b"abc")
    assert (tmp_path / "envhome" / BLOCKSTORE_FILE).exists()
    assert _run(runner, "cat", result.stdout.strip()).stdout_bytes == b"abc"


def test_errors(runner, tmp_path):
    home = tmp_path / "h"
    result = _run(runner, "cat", "not-a-cid", "--home", home, ok=False)
    assert result.exit_code == 2 and "CID" in result.output
    missing = str(CID.of(b"nothing here"))
    result = _run(runner, "cat", missing, "--home", home, ok=False)
    assert result.exit_code == 1 and "block not found" in result.output
    out = tmp_path / "x.car"
    result = _run(runner, "car", "export", missing, out, "--home", home, ok=False)
    assert result.exit_code == 1 and not out.exists()
    assert not list(tmp_path.glob("*.part"))
    result = _run(
        runner, "car", "export", missing, out, "--selector", "{", "--home", home, ok=False
    )
    assert result.exit_code == 2 and "not JSON" in result.output
    bad = tmp_path / "bad.car"
    bad.write_bytes(b"\x05junk!")
    result = _run(runner, "car", "import", bad, "--home", home, ok=False)
    assert result.exit_code == 1 and "CAR header" in result.output
    result = _run(runner, "add", tmp_path / "absent", "--home", home, ok=False)
    assert result.exit_code == 2
    result = _run(runner, "cat", missing, "-o", tmp_path / "o.bin", "--home", home, ok=False)
    assert result.exit_code == 1 and not (tmp_path / "o.bin").exists()


def test_cat_of_non_file(runner, tmp_path):
    home = tmp_path / "h"
    src = tmp_path / "in.bin"
    src.write_bytes(b"x")
    with open_blockstore(home) as store:
        from datatransfer.ipld import dagcbor

        block = dagcbor.encode({"a": 1})
        cid = CID.of(block, codec=0x71)
        store.put(cid, block)
    result = _run(runner, "cat", cid, "--home", home, ok=False)
    assert result.exit_code == 1 and "not a UnixFS" in result.output


def test_register_adds_commands():
    assert {"add", "cat", "car"} <= set(cli.commands)
    assert {"export", "import"} == set(cli.commands["car"].commands)


# -- home -------------------------------------------------------------------------------


def test_resolve_home(tmp_path, monkeypatch):
    explicit = tmp_path / "explicit" / "nested"
    assert resolve_home(explicit) == explicit and explicit.is_dir()
    assert resolve_home(str(explicit)) == explicit
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "env"))
    assert resolve_home() == tmp_path / "env" and (tmp_path / "env").is_dir()
    assert resolve_home(explicit) == explicit  # the argument wins
    monkeypatch.delenv(ENV_VAR)
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert resolve_home(None) == tmp_path / "user" / ".datatransfer"
    assert blockstore_path(explicit) == explicit / BLOCKSTORE_FILE


def test_open_blockstore(tmp_path):
    with open_blockstore(tmp_path) as store:
        cid = CID.of(b"x")
        store.put(cid, b"x")
    with open_blockstore(Path(tmp_path)) as store:
        assert store.get(cid) == b"x"
