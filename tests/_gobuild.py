"""Building the Go programs some tests run, into ``.interop-build/``.

Without ``go`` on PATH a test that needs one is skipped, loudly (the reason
says what did not run); with ``INTEROP_REQUIRE_GO=1`` (CI) that is a failure
instead. A build failure is always a failure. Builds use the toolchain on
PATH (``GOTOOLCHAIN=local``) and the modules their go.sum pins
(``-mod=readonly``); binaries are replaced atomically, so concurrent
sessions never run half a binary.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BUILD_DIR = REPO / ".interop-build"
#: The cold build of a large module (Lassie: about 400 packages) on a 2-core
#: machine with empty caches takes minutes.
BUILD_TIMEOUT = 1500


def require_go(what: str) -> str:
    """The ``go`` command, or skip (fail under INTEROP_REQUIRE_GO) saying
    that ``what`` did not run."""
    go = shutil.which("go")
    if go is None:
        msg = f"GO NOT ON PATH: {what} did NOT run; install Go >= 1.24 to run them"
        if os.environ.get("INTEROP_REQUIRE_GO"):
            pytest.fail(msg)
        pytest.skip(msg)
    return go


def _env() -> dict[str, str]:
    return dict(os.environ, GOTOOLCHAIN="local", GOFLAGS="-mod=readonly")


def _build(go: str, src: Path, package: str, target: Path, modfile: str | None = None) -> Path:
    BUILD_DIR.mkdir(exist_ok=True)
    tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    flags = [f"-modfile={modfile}"] if modfile else []
    proc = subprocess.run([go, "build", *flags, "-o", str(tmp), package], cwd=src, env=_env(),
                          capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        pytest.fail(f"go build of {package} in {src} failed (rc={proc.returncode}):\n"
                    f"{proc.stdout}\n{proc.stderr}")
    os.replace(tmp, target)
    return target


def build_local(go: str, src: Path, name: str, modfile: str | None = None) -> Path:
    """Build the program in ``src`` (this repository's tests/interop/...)
    into ``.interop-build/<name>`` (rebuilt each time: Go's build cache makes
    that a link step once warm), with its go.mod or, given ``modfile``, with
    that one (and the go.sum beside it of the same name: one program built
    against two versions of a module)."""
    return _build(go, src, ".", BUILD_DIR / name, modfile)


def build_module_command(go: str, module: str, version: str, package: str, name: str) -> Path:
    """Build ``package`` (e.g. ``./cmd/lassie``) of ``module@version`` from
    the Go module proxy, with the module's own go.mod and go.sum, into
    ``.interop-build/<name>-<version>``; kept across sessions (a version's
    source never changes). ``go install module/...@version`` would need the
    proxy's version list, which some modules' proxies refuse: the exact
    version is downloaded instead and built where it lies."""
    target = BUILD_DIR / f"{name}-{version}"
    if target.exists():
        return target
    proc = subprocess.run([go, "mod", "download", "-json", f"{module}@{version}"], env=_env(),
                          capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    if proc.returncode != 0:
        pytest.fail(f"go mod download {module}@{version} failed (rc={proc.returncode}):\n"
                    f"{proc.stdout}\n{proc.stderr}")
    src = Path(json.loads(proc.stdout)["Dir"])
    return _build(go, src, package, target)
