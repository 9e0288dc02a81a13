"""``datatransfer peers``: names for peer addresses (the home's contacts).

``peers add NAME MULTIADDR`` names an address, ``peers ls`` lists the names,
``peers rm NAME`` forgets one; ``pull`` and ``push`` take a NAME wherever
they take a MULTIADDR (:func:`resolve_peer_arg`). Names are kept in the home
(``contacts.json``, see :mod:`datatransfer.peers`), and any process may
change them while a node runs on the home.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from datatransfer.cli.blocks import _home_option

__all__ = ["complete_peer_name", "peers", "register", "resolve_peer_arg"]


def _contacts(home: Path | None):  # type: ignore[no-untyped-def]
    from datatransfer.home import resolve_home
    from datatransfer.peers import Contacts

    return Contacts(resolve_home(home))


def resolve_peer_arg(text: str, home: Path | None) -> str:
    """The multiaddr ``text`` stands for: ``text`` itself when it is one
    (starts with '/'; checked later, as any address), else the address the
    home's contacts give that name. An unknown or malformed name is a usage
    error (exit 2) saying how to add one."""
    from datatransfer.peers import ContactError, check_name

    if text.startswith("/"):
        return text

    def bad(why: str) -> click.BadParameter:
        return click.BadParameter(why, param_hint="MULTIADDR")

    try:
        check_name(text)
    except ContactError:
        raise bad(f"not a multiaddr (they start with '/') nor a peer name: {text!r}") from None
    try:
        addr = _contacts(home).get(text)
    except ContactError as exc:
        raise click.ClickException(str(exc)) from None
    if addr is None:
        raise bad(f"not a multiaddr, nor a peer named in this home: {text!r} (name one "
                  f"with: datatransfer peers add {text} /ip4/HOST/tcp/PORT/p2p/PEER_ID)")
    return addr


def complete_peer_name(ctx: click.Context, param: click.Parameter,
                       incomplete: str) -> list[str]:
    """Shell completion of a NAME: the home's peer names starting with
    ``incomplete`` (the home of ``--home`` if given before, else the default)."""
    if incomplete.startswith("/"):
        return []
    try:
        names = _contacts(ctx.params.get("home")).all()
    except Exception:  # noqa: BLE001 - completion must never fail
        return []
    return [name for name in names if name.startswith(incomplete)]


@click.group("peers")
def peers() -> None:
    """Names for peer addresses: pull and push take a NAME for a MULTIADDR."""


@peers.command("add")
@click.argument("name")
@click.argument("multiaddr")
@click.option("--force", "-f", is_flag=True, default=False,
              help="Replace the address of a name that exists.")
@_home_option
def add(name: str, multiaddr: str, force: bool, home: Path | None) -> None:
    """Name the peer address MULTIADDR (ending in /p2p/<peer id>) NAME.

    NAME: letters, digits, '.', '_', '-' or '@', starting with a letter or
    digit. A name that exists is refused unless --force.
    """
    from datatransfer.cli.node import _check_addr
    from datatransfer.peers import ContactError, NameTaken, check_name

    try:
        check_name(name)
    except ContactError as exc:
        raise click.BadParameter(str(exc), param_hint="NAME") from None
    _check_addr(multiaddr)
    try:
        old = _contacts(home).add(name, multiaddr, force=force)
    except NameTaken as exc:
        raise click.BadParameter(str(exc), param_hint="NAME") from None
    except ContactError as exc:
        raise click.ClickException(str(exc)) from None
    if old is not None and old != multiaddr:
        click.echo(f"{name} was {old}", err=True)
    click.echo(f"{name} {multiaddr}")


@peers.command("ls")
@click.option("--json", "as_json", is_flag=True, default=False,
              help="Print a JSON array of {name, peer, addr} instead of a table.")
@_home_option
def ls(as_json: bool, home: Path | None) -> None:
    """List the named peers of this home: name, peer id, address."""
    from datatransfer.peers import ContactError

    contacts = _contacts(home)
    try:
        named = contacts.all()
    except ContactError as exc:
        raise click.ClickException(str(exc)) from None
    rows = [{"name": name, "peer": addr.rsplit("/p2p/", 1)[-1], "addr": addr}
            for name, addr in named.items()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no named peers (add one: datatransfer peers add NAME MULTIADDR)", err=True)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"peers named in {contacts.path.parent}")
    for column in ("name", "peer", "address"):
        table.add_column(column, overflow="fold", no_wrap=column == "name")
    for row in rows:
        table.add_row(row["name"], row["peer"], row["addr"])
    Console().print(table)


@peers.command("rm")
@click.argument("name", shell_complete=complete_peer_name)
@_home_option
def rm(name: str, home: Path | None) -> None:
    """Forget the peer name NAME (the peer's channels and blocks stay)."""
    from datatransfer.peers import ContactError, UnknownName

    try:
        addr = _contacts(home).remove(name)
    except UnknownName as exc:
        raise click.BadParameter(str(exc), param_hint="NAME") from None
    except ContactError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"removed {name} {addr}", err=True)


def register(group: click.Group) -> None:
    """Add the ``peers`` group to ``group``."""
    group.add_command(peers)
