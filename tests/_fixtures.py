"""The IPLD fixture files the codec, selector and CAR tests read.

They live in this repository, packed (``tests/data/ipld-fixtures.json.xz``;
origin and license in ``tests/data/IPLD-FIXTURES-NOTICE.md``), and are
unpacked once per test process into a temporary folder, laid out as
upstream has them (``codec/``, ``selectors/``, ``car/``).
:func:`fixture_files` refuses to return nothing: a group of parametrized
fixture tests must never collect an empty set without failing.
"""

from __future__ import annotations

import atexit
import base64
import json
import lzma
import shutil
import tempfile
from pathlib import Path

PACKED = Path(__file__).resolve().parent / "data" / "ipld-fixtures.json.xz"


def _unpack() -> Path:
    doc = json.loads(lzma.decompress(PACKED.read_bytes()))
    root = Path(tempfile.mkdtemp(prefix="ipld-fixtures-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    for rel, data in doc["files"].items():
        path = root / rel
        if root not in path.resolve().parents:
            raise ValueError(f"fixture path {rel!r} leaves the fixture folder")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
    return root


#: The unpacked fixture folder.
IPLD: Path = _unpack()


def fixture_files(pattern: str) -> list[Path]:
    """The fixture files matching ``pattern`` (a glob below :data:`IPLD`),
    sorted; raises when there are none."""
    found = sorted(IPLD.glob(pattern))
    if not found:
        raise LookupError(f"no IPLD fixture files match {pattern!r} in {IPLD}")
    return found
