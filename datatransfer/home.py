"""The node's home directory: where its block store and state live.

Chosen in this order: an explicit path, then ``$DATATRANSFER_HOME``, then
``~/.datatransfer``. It is created (with parents) when resolved.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from datatransfer.ipld.blockstore.sqlite import SqliteBlockstore

ENV_VAR = "DATATRANSFER_HOME"
DEFAULT_DIRNAME = ".datatransfer"
BLOCKSTORE_FILE = "blocks.sqlite"


def resolve_home(home: str | os.PathLike[str] | None = None) -> Path:
    """The home directory to use, created if missing."""
    if home is None or home == "":
        env = os.environ.get(ENV_VAR)
        path = Path(env) if env else Path.home() / DEFAULT_DIRNAME
    else:
        path = Path(home)
    path = path.expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def blockstore_path(home: str | os.PathLike[str] | None = None) -> Path:
    """Where the home's block store database lives."""
    return resolve_home(home) / BLOCKSTORE_FILE


def open_blockstore(home: str | os.PathLike[str] | None = None) -> SqliteBlockstore:
    """Open (creating if needed) the home's SQLite block store."""
    from datatransfer.ipld.blockstore.sqlite import SqliteBlockstore

    return SqliteBlockstore(blockstore_path(home))
