"""Node commands: serve, pull, push, ls and demo.

All use the node home (``--home``, else ``$DATATRANSFER_HOME``, else
``~/.datatransfer``): its identity, block store and channel store. A serving
node accepts the command line's open voucher (``py-data-transfer/open``,
see :mod:`datatransfer.node`); a real market registers its own voucher types
and validators instead. :func:`register` adds the commands to the top-level
group.
"""

from __future__ import annotations

import io
import math
import os
import random
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import click

from datatransfer.cli.blocks import _atomic_output, _home_option, _parse_cid
from datatransfer.config import ManagerConfig
from datatransfer.ipld.cid import CID
from datatransfer.ipld.selector import ALL_SELECTOR_NODE
from datatransfer.node import LOCAL_LISTEN, Node, channels_path, dag_size
from datatransfer.types import ChannelID, ChannelState
from statemachine import FINAL_STATUSES, Status

#: Client listen address for pull/push (peers reuse the connection we open).
CLIENT_LISTEN = "/ip4/0.0.0.0/tcp/0"
#: Exit status after SIGINT/SIGTERM stopped a pull or push.
INTERRUPTED = 130


def _run(fn: Callable[[], Awaitable[Any]]) -> Any:
    """Run ``fn`` under trio (py-libp2p needs it)."""
    return anyio.run(fn, backend="trio")


def _stderr_console():  # type: ignore[no-untyped-def]
    from rich.console import Console

    return Console(stderr=True)


def _parse_selector(text: str | None) -> Any:
    if text is None:
        return ALL_SELECTOR_NODE
    from datatransfer.ipld import dagjson
    from datatransfer.ipld.selector import SelectorError, parse_selector

    try:
        node = dagjson.decode(text.encode(), strict=False)
        parse_selector(node)
    except (ValueError, SelectorError) as exc:
        raise click.BadParameter(str(exc), param_hint="--selector") from None
    return node


def _check_addr(addr: str) -> None:
    from transport.libp2p import parse_peer_addr

    try:
        parse_peer_addr(addr)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="MULTIADDR") from None


async def _watch_signals(scope: anyio.CancelScope, hit: list[int]) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            hit.append(signum)
            scope.cancel()
            return


# -- serve ---------------------------------------------------------------------------


@click.command("serve")
@click.option("--listen", "listen", multiple=True, default=("/ip4/0.0.0.0/tcp/0",),
              show_default=True, help="Multiaddr to listen on (repeatable).")
@click.option("--metrics-port", type=click.IntRange(0, 65535), default=None,
              help="Serve Prometheus metrics on 127.0.0.1:PORT/metrics (0: any free port).")
@_home_option
def serve(listen: tuple[str, ...], metrics_port: int | None, home: Path | None) -> None:
    """Serve this home's blocks until SIGINT/SIGTERM.

    The first line of stdout is the node's address (with /p2p/<peer id>);
    other addresses and the metrics URL go to stderr. Requests carrying the
    open voucher are accepted.
    """

    async def main() -> None:
        node = Node(home, listen=listen, metrics=metrics_port is not None)
        try:
            await node.__aenter__()
        except Exception as exc:  # noqa: BLE001 - report, do not trace
            raise click.ClickException(f"cannot start node: {exc}") from None
        try:
            # signals are taken before the address is printed: whoever reads
            # it may stop the node at once
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                addrs = node.addrs()
                click.echo(addrs[0])
                sys.stdout.flush()
                for other in addrs[1:]:
                    click.echo(f"also listening on {other}", err=True)
                if metrics_port is not None:
                    try:
                        port = node.serve_metrics(metrics_port)
                    except OSError as exc:
                        raise click.ClickException(
                            f"cannot serve metrics on 127.0.0.1:{metrics_port}: {exc}") from None
                    click.echo(f"metrics: http://127.0.0.1:{port}/metrics", err=True)
                async for signum in signals:
                    click.echo(f"{signal.Signals(signum).name}: shutting down", err=True)
                    break
        finally:
            await node.__aexit__(None, None, None)

    _run(main)


# -- pull / push ---------------------------------------------------------------------


def _progress(description: str):  # type: ignore[no-untyped-def]
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=_stderr_console(),
        transient=False,
    )


async def _follow(node: Node, chid: ChannelID, root: CID, total: int | None,
                  description: str, *, pull: bool, exact_total: bool) -> ChannelState:
    """Show the channel's progress until it reaches a final status."""
    assert node.manager is not None
    manager = node.manager
    with _progress(description) as progress:
        task = progress.add_task(description, total=total)
        while True:
            state = manager.channel_state(chid)
            done = state.received if pull else state.sent
            if total is None and exact_total and pull:
                total = dag_size(root, node.blockstore)
                if total is not None:
                    progress.update(task, total=total)
            progress.update(task, completed=done)
            if state.status in FINAL_STATUSES:
                if state.status == Status.Completed:
                    progress.update(task, total=done, completed=done)
                return state
            try:
                await manager.wait(chid, timeout=0.2)
            except TimeoutError:
                pass


async def _transfer(home: Path | None, addr: str, root: CID, selector: Any, *, pull: bool,
                    listen: tuple[str, ...]) -> tuple[ChannelState | None, float]:
    config = ManagerConfig(auto_restart=False)
    node = Node(home, listen=listen, config=config)
    try:
        await node.__aenter__()
    except Exception as exc:  # noqa: BLE001
        raise click.ClickException(f"cannot start node: {exc}") from None
    hit: list[int] = []
    failure: list[str] = []
    state: ChannelState | None = None
    chid: ChannelID | None = None
    started = time.monotonic()
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_watch_signals, tg.cancel_scope, hit)
            total = None
            if not pull:
                total = dag_size(root, node.blockstore)
                if total is None:
                    failure.append(f"{root} is not in this home's block store")
            if not failure:
                try:
                    opener = node.pull if pull else node.push
                    chid = await opener(addr, root, selector)
                except Exception as exc:  # noqa: BLE001 - dial errors come in many types
                    failure.append(f"cannot reach {addr}: {exc}")
            if chid is not None:
                state = await _follow(node, chid, root, total, "pull" if pull else "push",
                                      pull=pull, exact_total=selector is ALL_SELECTOR_NODE)
            tg.cancel_scope.cancel()
    finally:
        if hit and chid is not None and node.manager is not None:
            with anyio.move_on_after(3, shield=True):
                try:
                    await node.manager.close_channel(chid)
                    await node.manager.wait(chid, timeout=2)
                except Exception:  # noqa: BLE001 - best effort on the way out
                    pass
        await node.__aexit__(None, None, None)
    if hit:
        click.echo(f"{signal.Signals(hit[0]).name}: transfer stopped", err=True)
        sys.exit(INTERRUPTED)
    if failure:
        raise click.ClickException(failure[0])
    return state, time.monotonic() - started


def _rate(nbytes: int, seconds: float) -> str:
    from rich.filesize import decimal

    rate = nbytes / seconds if seconds > 0 else math.inf
    return f"{decimal(nbytes)} in {seconds:.2f} s ({decimal(int(rate))}/s)"


def _finish(state: ChannelState | None, elapsed: float, pull: bool) -> None:
    if state is None:  # pragma: no cover - only when interrupted
        raise click.ClickException("transfer did not start")
    moved = state.received if pull else state.sent
    if state.status != Status.Completed:
        why = f": {state.message}" if state.message else ""
        raise click.ClickException(f"channel {state.channel_id} {state.status.name}{why}")
    click.echo(f"{state.status.name}: {_rate(moved, elapsed)}", err=True)


_listen_option = click.option(
    "--listen", "listen", multiple=True, default=(CLIENT_LISTEN,), show_default=True,
    help="Multiaddr this node listens on while the transfer runs (repeatable).")


@click.command("pull")
@click.argument("multiaddr")
@click.argument("cid")
@click.option("-o", "--output", "output", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Write the file (UnixFS) here once the pull completed.")
@click.option("--selector", default=None,
              help="Selector as (DAG-)JSON (default: the whole DAG).")
@_listen_option
@_home_option
def pull(multiaddr: str, cid: str, output: Path | None, selector: str | None,
         listen: tuple[str, ...], home: Path | None) -> None:
    """Fetch the DAG under CID from the peer at MULTIADDR into this home.

    Exits 0 only when the channel completed.
    """
    root = _parse_cid(cid)
    sel = _parse_selector(selector)
    _check_addr(multiaddr)
    state, elapsed = _run(lambda: _transfer(home, multiaddr, root, sel, pull=True,
                                            listen=listen))
    _finish(state, elapsed, pull=True)
    if output is not None:
        from datatransfer.cli.blocks import _errors
        from datatransfer.home import open_blockstore
        from datatransfer.ipld.unixfs import export_file

        with _errors(), open_blockstore(home) as store, _atomic_output(output) as fh:
            export_file(root, store, fh)
    click.echo(str(state.channel_id))


@click.command("push")
@click.argument("multiaddr")
@click.argument("cid")
@click.option("--selector", default=None,
              help="Selector as (DAG-)JSON (default: the whole DAG).")
@_listen_option
@_home_option
def push(multiaddr: str, cid: str, selector: str | None, listen: tuple[str, ...],
         home: Path | None) -> None:
    """Send the DAG under CID from this home to the peer at MULTIADDR.

    Exits 0 only when the channel completed.
    """
    root = _parse_cid(cid)
    sel = _parse_selector(selector)
    _check_addr(multiaddr)
    state, elapsed = _run(lambda: _transfer(home, multiaddr, root, sel, pull=False,
                                            listen=listen))
    _finish(state, elapsed, pull=False)
    click.echo(str(state.channel_id))


# -- ls ------------------------------------------------------------------------------


def _short(peer: Any) -> str:
    text = str(peer)
    return text if len(text) <= 12 else f"…{text[-6:]}"


@click.command("ls")
@_home_option
def ls(home: Path | None) -> None:
    """List the channels in this home's channel store."""
    from rich.console import Console
    from rich.filesize import decimal
    from rich.table import Table

    from datatransfer.store import SqliteChannelStore, StoreError

    path = channels_path(home)
    if not path.exists():
        click.echo("no channels", err=True)
        return
    try:
        with SqliteChannelStore(path) as store:
            channels = list(store.all())
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None
    if not channels:
        click.echo("no channels", err=True)
        return
    channels.sort(key=lambda ch: (str(ch.channel_id.initiator), ch.channel_id.id))
    table = Table(title=f"channels in {path.parent}")
    for name in ("id", "peer", "direction", "status", "bytes", "message"):
        table.add_column(name, overflow="fold",
                         justify="right" if name == "bytes" else "left")
    for ch in channels:
        chid = ch.channel_id
        sending = ch.sender == ch.self_peer
        kind = "pull" if ch.is_pull else "push"
        role = "out" if chid.initiator == ch.self_peer else "in"
        direction = f"{'send' if sending else 'receive'} ({kind} {role})"
        moved = ch.record.sent if sending else ch.record.received
        table.add_row(f"{_short(chid.initiator)}#{chid.id}", str(ch.other_peer), direction,
                      ch.record.status.name, decimal(moved), ch.record.message)
    Console().print(table)


# -- demo ----------------------------------------------------------------------------


@click.command("demo")
@click.option("--size", type=click.IntRange(1, None), default=64 * 1024 * 1024,
              show_default=True, help="Bytes of generated data to transfer.")
@click.option("--seed", type=int, default=None, help="Seed of the generated data.")
def demo(size: int, seed: int | None) -> None:
    """Two nodes on 127.0.0.1 in this process: import SIZE generated bytes on
    one, pull them with the other, check they are identical, print the rate."""
    from datatransfer.ipld.unixfs import export_file, import_file

    rng = random.Random(seed if seed is not None else int.from_bytes(os.urandom(8), "big"))
    data = rng.randbytes(size)

    async def main() -> tuple[ChannelState, float, bytes, CID]:
        with tempfile.TemporaryDirectory(prefix="datatransfer-demo-") as tmp:
            server_home, client_home = Path(tmp, "server"), Path(tmp, "client")
            async with Node(server_home, listen=(LOCAL_LISTEN,)) as server, \
                    Node(client_home, listen=(LOCAL_LISTEN,)) as client:
                root = await anyio.to_thread.run_sync(
                    lambda: import_file(io.BytesIO(data), server.blockstore))
                addr = server.addrs()[0]
                click.echo(f"server {addr}", err=True)
                click.echo(f"imported {size} bytes as {root}", err=True)
                started = time.monotonic()
                chid = await client.pull(addr, root)
                total = dag_size(root, server.blockstore)
                state = await _follow(client, chid, root, total, "demo pull", pull=True,
                                      exact_total=True)
                elapsed = time.monotonic() - started
                out = io.BytesIO()
                if state.status == Status.Completed:
                    export_file(root, client.blockstore, out)
            return state, elapsed, out.getvalue(), root

    state, elapsed, got, root = _run(main)
    if state.status != Status.Completed:
        why = f": {state.message}" if state.message else ""
        raise click.ClickException(f"demo pull {state.status.name}{why}")
    if got != data:
        raise click.ClickException(f"demo pull of {root}: bytes differ from the original")
    click.echo(f"pulled {root}: {len(got)} bytes identical")
    click.echo(f"rate: {_rate(state.received, elapsed)}")


def register(group: click.Group) -> None:
    """Add ``serve``, ``pull``, ``push``, ``ls`` and ``demo`` to ``group``."""
    for command in (serve, pull, push, ls, demo):
        group.add_command(command)


__all__ = ["demo", "ls", "pull", "push", "register", "serve"]
