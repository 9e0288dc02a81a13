"""Block commands: add and cat UnixFS files, export and import CAR files.

All of them work on the node home's block store (``--home``, else
``$DATATRANSFER_HOME``, else ``~/.datatransfer``). :func:`register` adds them
to the top-level command group.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import click

from datatransfer.cli.output import check_output, force_option, open_output
from datatransfer.home import open_blockstore
from datatransfer.ipld.cid import CID
from datatransfer.ipld.errors import IPLDError


def _home_option(fn: Callable) -> Callable:
    return click.option(
        "--home",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Node home directory (default: $DATATRANSFER_HOME or ~/.datatransfer).",
    )(fn)


def _parse_cid(text: str) -> CID:
    try:
        return CID.parse(text)
    except IPLDError:
        raise click.BadParameter(f"not a CID: {text!r}", param_hint="CID") from None


@contextmanager
def _atomic_output(path: Path) -> Iterator[IO[bytes]]:
    """A file that appears at ``path`` only if the block completes."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.part")
    fh = open(tmp, "xb")  # closed below; created with the usual permissions
    try:
        with fh:
            yield fh
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


@contextmanager
def _input(path: str) -> Iterator[IO[bytes] | str]:
    """Binary stdin for ``-``, else the path itself (opened by the callee)."""
    if path == "-":
        with click.open_file("-", "rb") as fh:
            yield fh
    else:
        yield path


@contextmanager
def _errors() -> Iterator[None]:
    """Report library errors as a clean command failure."""
    from datatransfer.ipld.blockstore import BlockNotFound

    try:
        yield
    except BlockNotFound as exc:
        raise click.ClickException(f"{exc} (is the whole DAG in this home?)") from None
    except (IPLDError, OSError) as exc:
        raise click.ClickException(str(exc)) from None


@click.command("add")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@click.option(
    "--profile",
    type=click.Choice(["classic", "modern"]),
    default="classic",
    show_default=True,
    help="classic: CIDv0, 256 KiB chunks, 174 links; modern: CIDv1, raw leaves, "
    "1 MiB chunks, 1024 links.",
)
@_home_option
def add(path: str, profile: str, home: Path | None) -> None:
    """Import a file (``-`` for stdin) as UnixFS; print its root CID."""
    from datatransfer.ipld.unixfs import import_file

    with _errors(), open_blockstore(home) as store, _input(path) as source:
        root = import_file(source, store, profile)
    click.echo(str(root))


@click.command("cat")
@click.argument("cid")
@click.option(
    "-o",
    "--output",
    "output",
    type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
    default=None,
    help="Write to this file instead of stdout (- for stdout); refuses an existing "
    "file unless --force.",
)
@force_option
@_home_option
def cat(cid: str, output: Path | None, force: bool, home: Path | None) -> None:
    """Write the bytes of the UnixFS file CID."""
    from datatransfer.ipld.unixfs import export_file

    root = _parse_cid(cid)
    check_output(output, force, "'-o' / '--output'")
    with _errors(), open_blockstore(home) as store, open_output(output or "-") as out:
        export_file(root, store, out)


@click.group("car")
def car() -> None:
    """Export and import CARv1 files."""


@car.command("export")
@click.argument("cid")
@click.argument("out", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path))
@click.option(
    "--selector",
    default=None,
    help='Selector as JSON (default: everything, {"R":{"l":{"none":{}},":>":{"a":{">":{"@":{}}}}}}).',
)
@force_option
@_home_option
def car_export(cid: str, out: Path, selector: str | None, force: bool,
               home: Path | None) -> None:
    """Write the DAG under CID to the CAR file OUT (- for stdout).

    An existing OUT is refused unless --force.
    """
    from datatransfer.ipld.car import export_car

    root = _parse_cid(cid)
    node = None
    if selector is not None:
        try:
            node = json.loads(selector)
        except ValueError as exc:
            raise click.BadParameter(f"not JSON: {exc}", param_hint="--selector") from None
    check_output(out, force, "OUT")
    with _errors(), open_blockstore(home) as store, open_output(out) as fh:
        count = export_car(root, store, fh, selector=node)
    click.echo(f"exported {count} blocks", err=True)


@car.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@_home_option
def car_import(path: str, home: Path | None) -> None:
    """Store every block of a CAR file; print its roots."""
    from datatransfer.ipld.car import import_car

    with _errors(), open_blockstore(home) as store, _input(path) as source:
        roots, count = import_car(source, store)
    click.echo(f"imported {count} blocks", err=True)
    for root in roots:
        click.echo(str(root))


def register(group: click.Group) -> None:
    """Add ``add``, ``cat`` and ``car`` to ``group``."""
    group.add_command(add)
    group.add_command(cat)
    group.add_command(car)


__all__ = ["add", "car", "cat", "register"]
