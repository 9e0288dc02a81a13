"""The README's usage example runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import anyio

from datatransfer.ipld.blockstore import SqliteBlockstore
from datatransfer.ipld.unixfs import import_file
from datatransfer.types import PeerID

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_example_transfers_a_file(tmp_path, monkeypatch, capsys):
    code = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)
    with SqliteBlockstore("server.db") as store:  # the example's server store
        root = import_file(b"readme" * 50_000, store, profile="modern")
    anyio.run(namespace["main"], PeerID(b"\x00\x01s"), PeerID(b"\x00\x01c"), root)
    assert capsys.readouterr().out.split() == ["Completed", str(6 * 50_000)]
