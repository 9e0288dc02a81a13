"""Commands that act on a running daemon: cancel, pause, resume, restart,
watch; and the daemon side of pull, push and ls.

When ``datatransfer serve`` holds the home, these commands go through its
control API (:mod:`datatransfer.daemon`) instead of opening the home
themselves, as kubo's CLI uses its daemon. This path is synchronous and on
the standard library's HTTP client: no libp2p, no event loop to start.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NoReturn

import click

from datatransfer.cli.blocks import _home_option
from datatransfer.cli.output import INTERRUPTED, progress_bar
from datatransfer.daemon.client import ControlClient, DaemonUnavailable
from datatransfer.daemon.protocol import ApiError
from datatransfer.home import resolve_home


def daemon_for(home: Path | None) -> ControlClient | None:
    """The client of the daemon holding ``home``, or None when none does."""
    try:
        return ControlClient.for_home(resolve_home(home))
    except ApiError as exc:
        fail(exc)


def need_daemon(home: Path | None) -> ControlClient:
    """The daemon's client; a one-line error when no daemon holds the home."""
    client = daemon_for(home)
    if client is None:
        raise click.ClickException(
            f"no daemon runs on {resolve_home(home)}: start one with `datatransfer serve` "
            "(this command acts on a running node)")
    return client


def fail(exc: ApiError | DaemonUnavailable) -> NoReturn:
    """Report an API error or an absent daemon as the command's failure."""
    raise click.ClickException(exc.message if isinstance(exc, ApiError) else str(exc))


def follow(client: ControlClient, names: Iterable[str],
           describe: Any = None) -> dict[str, dict[str, Any]]:
    """Show progress bars of the channels ``names`` names (every live one
    when empty) as the daemon streams their rows, until all have ended;
    return the last row of each by short id."""
    last: dict[str, dict[str, Any]] = {}
    bars: dict[str, Any] = {}
    with progress_bar() as progress:
        try:
            for row in client.watch(list(names)):
                key = row["id"]
                last[key] = row
                if key not in bars:
                    label = describe(row) if describe else f"{row['kind']} {key}"
                    bars[key] = progress.add_task(label, total=row["expected"])
                done = row["bytes"]
                total = row["expected"]
                if row["status"] == "Completed":
                    total = done
                progress.update(bars[key], completed=done, total=total)
        except (ApiError, DaemonUnavailable) as exc:
            fail(exc)
    return last


def transfer(client: ControlClient, addr: str, root: str, selector: str | None, *,
             pull: bool) -> dict[str, Any]:
    """Pull or push through the daemon, showing progress; the final row.
    Ctrl-C detaches: the channel goes on in the daemon.

    As a transfer without a daemon does, one that attached to a live channel
    (the daemon resumed it) which then failed (the peer ended its side and
    refused the restart) opens a new channel, once: the receiver skips what
    it holds, so only what is missing moves. A new channel's failure is the
    answer (reopening cannot mend a refusal), so this never loops."""
    row, resumed = _open(client, addr, root, selector, pull=pull)
    final = _follow_one(client, row, pull=pull)
    if resumed and final["status"] == "Failed":
        why = f" ({final['message']})" if final["message"] else ""
        click.echo(f"channel {final['id']} could not be resumed{why}; opening a new one",
                   err=True)
        row, _ = _open(client, addr, root, selector, pull=pull)
        final = _follow_one(client, row, pull=pull)
    return final


def _open(client: ControlClient, addr: str, root: str, selector: str | None, *,
          pull: bool) -> tuple[dict[str, Any], bool]:
    """Ask the daemon for the transfer: the channel's row and whether it is
    a live channel the daemon already had (resumed) rather than a new one."""
    try:
        opened = client.open(addr, root, selector, pull=pull)
    except (ApiError, DaemonUnavailable) as exc:
        fail(exc)
    row = opened["channel"]
    if opened["resumed"]:
        click.echo(f"resuming channel {row['id']}", err=True)
    return row, bool(opened["resumed"])


def _follow_one(client: ControlClient, row: dict[str, Any], *, pull: bool) -> dict[str, Any]:
    """Follow one channel to its end; its last row. Ctrl-C detaches."""
    try:
        return follow(client, [row["channel_id"]],
                      lambda _: "pull" if pull else "push").get(row["id"], row)
    except KeyboardInterrupt:
        click.echo(f"detached: channel {row['id']} goes on in the daemon "
                   f"(`datatransfer watch {row['id']}` follows it, "
                   f"`datatransfer cancel {row['id']}` stops it)", err=True)
        sys.exit(INTERRUPTED)


def _act(action: str, channel: str, home: Path | None) -> None:
    client = need_daemon(home)
    try:
        row = client.act(channel, action)
    except (ApiError, DaemonUnavailable) as exc:
        fail(exc)
    click.echo(f"{row['id']} {row['status']}")


def _action_command(action: str, doc: str) -> click.Command:
    @click.command(action, help=doc)
    @click.argument("channel")
    @_home_option
    def command(channel: str, home: Path | None) -> None:
        _act(action, channel, home)

    return command


cancel = _action_command("cancel", "Cancel CHANNEL (full or short id) on both sides; "
                         "needs the daemon (`datatransfer serve`).")
pause = _action_command("pause", "Pause CHANNEL's data flow from this side until `resume`; "
                        "needs the daemon.")
resume = _action_command("resume", "Release this side's pause of CHANNEL; needs the daemon.")
restart = _action_command("restart", "Reopen CHANNEL's data flow (after a disconnect), "
                          "moving only what is missing; needs the daemon.")


@click.command("watch")
@click.argument("channels", nargs=-1, metavar="[CHANNEL]...")
@click.option("--json", "as_json", is_flag=True, default=False,
              help="Print each channel row as it changes, one JSON object per line.")
@_home_option
def watch(channels: tuple[str, ...], as_json: bool, home: Path | None) -> None:
    """Follow the daemon's channels live: those named until they end, or
    every live channel until Ctrl-C. Exits 1 if a named channel did not
    complete."""
    client = need_daemon(home)
    try:
        if as_json:
            last: dict[str, dict[str, Any]] = {}
            try:
                for row in client.watch(list(channels)):
                    last[row["id"]] = row
                    click.echo(json.dumps(row))
            except (ApiError, DaemonUnavailable) as exc:
                fail(exc)
        else:
            last = follow(client, channels)
    except KeyboardInterrupt:
        sys.exit(INTERRUPTED)
    bad = [row for row in last.values() if row["status"] != "Completed"]
    if channels and bad:
        raise click.ClickException("; ".join(
            f"channel {row['id']} {row['status']}" + (f": {row['message']}" if row["message"]
                                                     else "") for row in bad))


def register(group: click.Group) -> None:
    """Add ``cancel``, ``pause``, ``resume``, ``restart`` and ``watch``."""
    for command in (cancel, pause, resume, restart, watch):
        group.add_command(command)


__all__ = ["cancel", "daemon_for", "follow", "need_daemon", "pause", "register",
           "restart", "resume", "transfer", "watch"]
