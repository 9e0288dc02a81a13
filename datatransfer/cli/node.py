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
import json
import math
import os
import random
import re
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import click

from datatransfer.cli.blocks import _home_option, _parse_cid
from datatransfer.cli.output import (
    adopt_libp2p_logger,
    check_output,
    force_option,
    is_stdout,
    message,
    open_output,
)
from datatransfer.config import ManagerConfig
from datatransfer.home import channels_path
from datatransfer.ipld.cid import CID
from datatransfer.types import ChannelID, ChannelState
from statemachine import FINAL_STATUSES, Status

if TYPE_CHECKING:  # pragma: no cover
    # imported where used: `ls`, `--version` and `--help` need no node
    from datatransfer.node import Node

#: Client listen address for pull/push (peers reuse the connection we open).
CLIENT_LISTEN = "/ip4/0.0.0.0/tcp/0"
#: Exit status after SIGINT/SIGTERM stopped a pull or push.
INTERRUPTED = 130


def _run(fn: Callable[[], Awaitable[Any]]) -> Any:
    """Run ``fn`` under trio (py-libp2p needs it), py-libp2p's log records
    going through the command line's one handler."""
    import transport.libp2p  # noqa: F401 - imports libp2p, which resets its logger

    adopt_libp2p_logger()
    return anyio.run(fn, backend="trio")


def _stderr_console():  # type: ignore[no-untyped-def]
    from datatransfer.cli.output import console

    return console()


def _parse_selector(text: str | None) -> Any:
    from datatransfer.ipld.selector import ALL_SELECTOR_NODE

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


#: Multiaddr protocols naming a host to resolve, and the address family each asks for.
_DNS = {"dns": 0, "dns4": socket.AF_INET, "dns6": socket.AF_INET6}


def _check_addr(addr: str) -> str:
    """Check a peer address (usage error, exit 2, when it is not one); return
    its peer id (base58)."""
    import multiaddr

    def bad(why: str) -> click.BadParameter:
        return click.BadParameter(why, param_hint="MULTIADDR")

    try:
        ma = multiaddr.Multiaddr(addr)
        names = [p.name for p in ma.protocols()]
    except Exception:  # noqa: BLE001 - the multiaddr parser raises many types
        raise bad(f"not a multiaddr: {addr!r} (e.g. /ip4/192.0.2.1/tcp/4001/p2p/<peer id>)"
                  ) from None
    if not names or names[-1] != "p2p":
        raise bad(f"the address must end in /p2p/<peer id>: {addr}")
    if names[0] == "dnsaddr":
        raise bad("/dnsaddr addresses are not supported; use /dns, /dns4, /dns6, /ip4 or /ip6")
    if names[0] not in ("ip4", "ip6", *_DNS) or "tcp" not in names:
        raise bad(f"only TCP addresses can be dialed (/ip4, /ip6 or /dns…/tcp/PORT): {addr}")
    try:
        return str(ma.value_for_protocol("p2p"))
    except Exception:  # noqa: BLE001
        raise bad(f"bad peer id in {addr}") from None


async def _resolve_dns(addr: str) -> str:
    """``addr`` with a leading /dns, /dns4 or /dns6 part replaced by the first
    address the system resolver gives (py-libp2p's own resolver skips
    /etc/hosts); other addresses unchanged. Raises ``click.ClickException``
    when the name does not resolve."""
    parts = addr.split("/")
    if len(parts) < 3 or parts[1] not in _DNS:
        return addr
    host = parts[2]
    try:
        infos = await anyio.getaddrinfo(host, None, family=_DNS[parts[1]],
                                        type=socket.SOCK_STREAM)
    except OSError as exc:
        raise click.ClickException(f"cannot resolve {host}: {exc.strerror or exc}") from None
    if not infos:
        raise click.ClickException(f"cannot resolve {host}: no address")
    family, ip = infos[0][0], infos[0][4][0]
    parts[1:3] = ["ip6" if family == socket.AF_INET6 else "ip4", str(ip)]
    return "/".join(parts)


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and every exception behind it (causes, contexts, grouped ones)."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo.extend(getattr(e, "exceptions", None) or ())
        todo.extend(getattr(e, "errors", None) or ())
        todo.extend((e.__cause__, e.__context__))


_OTHER_ID = re.compile(r"(?:remote_peer_id_from_pubkey=|Peer ID mismatch: expected \S+, got )"
                       r"(\w+)")


def _dial_failure(addr: str, peer: str, exc: BaseException) -> str:
    """One line saying why dialing ``addr`` failed, without py-libp2p's words."""
    causes = list(_causes(exc))
    for e in causes:
        m = _OTHER_ID.search(str(e))
        if m and m.group(1) != peer:
            return f"peer at {addr} is {m.group(1)}, not {peer}"
    for e in causes:
        if isinstance(e, TimeoutError) or type(e).__name__ == "TooSlowError":
            return f"cannot reach {addr}: no answer in time"
    for e in causes:
        if isinstance(e, OSError) and (e.errno or e.strerror):
            why = os.strerror(e.errno) if e.errno else str(e.strerror)
            return f"cannot reach {addr}: {why.lower()}"
    for e in causes:
        if "handshake" in str(e).lower() or "security" in str(e).lower():
            return f"cannot reach {addr}: the secure handshake failed"
    return f"cannot reach {addr}: the connection failed"


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
        from datatransfer.node import Node

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
    from datatransfer.node import dag_size

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
    from datatransfer.ipld.selector import ALL_SELECTOR_NODE
    from datatransfer.node import Node, dag_size

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
    resumed = False
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
                peer = _check_addr(addr)
                try:
                    dial = await _resolve_dns(addr)
                    chid = await node.resume(dial, root, selector, pull=pull)
                    resumed = chid is not None
                    if chid is not None:
                        click.echo(f"resuming channel {short_channel_id(chid)}", err=True)
                    else:
                        opener = node.pull if pull else node.push
                        chid = await opener(dial, root, selector)
                except click.ClickException as exc:
                    failure.append(exc.message)
                except Exception as exc:  # noqa: BLE001 - dial errors come in many types
                    failure.append(_dial_failure(addr, peer, exc))
            if chid is not None:
                state = await _follow(node, chid, root, total, "pull" if pull else "push",
                                      pull=pull, exact_total=selector is ALL_SELECTOR_NODE)
                if resumed and state is not None and state.status == Status.Failed:
                    # the peer no longer has it (refused the restart): start over
                    click.echo(f"channel {short_channel_id(chid)} could not be resumed "
                               f"({state.message}); opening a new one", err=True)
                    opener = node.pull if pull else node.push
                    chid = await opener(dial, root, selector)
                    state = await _follow(node, chid, root, total,
                                          "pull" if pull else "push", pull=pull,
                                          exact_total=selector is ALL_SELECTOR_NODE)
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
@click.option("-o", "--output", "output",
              type=click.Path(dir_okay=False, allow_dash=True, path_type=Path), default=None,
              help="Write the file (UnixFS) here once the pull completed (- for stdout).")
@click.option("--car", "car", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
              default=None,
              help="Write a CARv1 of exactly the blocks the selector reached, root first, "
              "in traversal order (- for stdout).")
@force_option
@click.option("--selector", default=None,
              help="Selector as (DAG-)JSON (default: the whole DAG).")
@_listen_option
@_home_option
def pull(multiaddr: str, cid: str, output: Path | None, car: Path | None, force: bool,
         selector: str | None, listen: tuple[str, ...], home: Path | None) -> None:
    """Fetch the DAG under CID from the peer at MULTIADDR into this home.

    MULTIADDR ends in /p2p/<peer id> (as `serve` prints it). Exits 0 only
    when the channel completed; the channel id is printed last (on stderr
    when -o - or --car - puts data on stdout). Existing output files are
    refused unless --force.
    """
    _check_addr(multiaddr)
    root = _parse_cid(cid)
    sel = _parse_selector(selector)
    if is_stdout(output) and is_stdout(car):
        raise click.UsageError("-o - and --car - cannot both write to stdout")
    check_output(output, force, "'-o' / '--output'")
    check_output(car, force, "'--car'")
    state, elapsed = _run(lambda: _transfer(home, multiaddr, root, sel, pull=True,
                                            listen=listen))
    _finish(state, elapsed, pull=True)
    if output is not None or car is not None:
        from datatransfer.cli.blocks import _errors
        from datatransfer.home import open_blockstore
        from datatransfer.ipld.unixfs import export_file

        with _errors(), open_blockstore(home) as store:
            if car is not None:
                with open_output(car) as fh:
                    count = write_selected_car(root, sel, store, fh)
                click.echo(f"wrote {count} blocks to {'stdout' if is_stdout(car) else car}",
                           err=True)
            if output is not None:
                with open_output(output) as fh:
                    export_file(root, store, fh)
    message(str(state.channel_id), to_stdout=not (is_stdout(output) or is_stdout(car)))


def write_selected_car(root: CID, selector: Any, blockstore: Any, out: Any) -> int:
    """Stream a CARv1 with root ``root`` of the blocks the ``selector``
    traversal from ``root`` loads, in load order, each once (as graphsync
    sent them); return how many went in. Reads one block at a time."""
    from datatransfer.ipld.blockstore import block_loader
    from datatransfer.ipld.car import CarWriter
    from datatransfer.ipld.selector import blocks, parse_selector

    with CarWriter(out, [root], verify=False) as writer:
        writer.put_many(blocks(root, parse_selector(selector), block_loader(blockstore)))
        return writer.blocks_written


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

    MULTIADDR ends in /p2p/<peer id>. Exits 0 only when the channel completed.
    """
    _check_addr(multiaddr)
    root = _parse_cid(cid)
    sel = _parse_selector(selector)
    state, elapsed = _run(lambda: _transfer(home, multiaddr, root, sel, pull=False,
                                            listen=listen))
    _finish(state, elapsed, pull=False)
    click.echo(str(state.channel_id))


# -- ls ------------------------------------------------------------------------------


#: Characters of each peer id kept in a short channel id.
SHORT_PEER = 8


def short_channel_id(chid: ChannelID) -> str:
    """``<initiator tail>-<responder tail>-<transfer id>``: the last
    :data:`SHORT_PEER` characters of each peer id. Commands taking a channel
    id accept it as well as the full ``<initiator>-<responder>-<id>``."""
    return f"{str(chid.initiator)[-SHORT_PEER:]}-{str(chid.responder)[-SHORT_PEER:]}-{chid.id}"


def match_channel(text: str, chid: ChannelID) -> bool:
    """Whether ``text`` names ``chid``: its full form, or its short form (or
    any longer tails of the two peer ids)."""
    parts = text.strip().split("-")
    if len(parts) != 3 or not parts[2].isdigit() or not parts[0] or not parts[1]:
        return False
    return (int(parts[2]) == chid.id and str(chid.initiator).endswith(parts[0])
            and str(chid.responder).endswith(parts[1]))


def _channel_row(ch: Any) -> dict[str, Any]:
    chid = ch.channel_id
    sending = ch.sender == ch.self_peer
    return {
        "id": short_channel_id(chid),
        "channel_id": str(chid),
        "initiator": str(chid.initiator),
        "responder": str(chid.responder),
        "transfer_id": chid.id,
        "peer": str(ch.other_peer),
        "kind": "pull" if ch.is_pull else "push",
        "role": "initiator" if chid.initiator == ch.self_peer else "responder",
        "sending": sending,
        "root": str(ch.base_cid),
        "status": ch.record.status.name,
        "bytes": ch.record.sent if sending else ch.record.received,
        "sent": ch.record.sent,
        "received": ch.record.received,
        "total_size": ch.total_size,
        "message": ch.record.message,
    }


@click.command("ls")
@click.argument("channels", nargs=-1, metavar="[CHANNEL]...")
@click.option("-a", "--all", "show_all", is_flag=True, default=False,
              help="Also list channels that ended (completed, failed, cancelled).")
@click.option("--json", "as_json", is_flag=True, default=False,
              help="Print a JSON array of channels (full and short ids, peers, root, "
              "status, bytes) instead of a table.")
@_home_option
def ls(channels: tuple[str, ...], show_all: bool, as_json: bool, home: Path | None) -> None:
    """List the channels in this home's channel store: the live ones, every
    one with --all, or those named (full or short id, as the id column shows
    it)."""
    from datatransfer.store import SqliteChannelStore, StoreError

    path = channels_path(home)
    stored: list[Any] = []
    if path.exists():
        try:
            with SqliteChannelStore(path) as store:
                stored = list(store.all())
        except StoreError as exc:
            raise click.ClickException(str(exc)) from None
    stored.sort(key=lambda ch: (str(ch.channel_id.initiator), ch.channel_id.id))
    hidden = 0
    if channels:
        chosen = []
        for text in channels:
            found = [ch for ch in stored if match_channel(text, ch.channel_id)]
            if not found:
                raise click.ClickException(f"no channel {text} in {path.parent}")
            if len(found) > 1:
                raise click.ClickException(
                    f"{text} names {len(found)} channels; give more of the peer ids")
            chosen.extend(found)
        stored = chosen
    elif not show_all:
        live = [ch for ch in stored if ch.record.status not in FINAL_STATUSES]
        hidden = len(stored) - len(live)
        stored = live
    rows = [_channel_row(ch) for ch in stored]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if hidden:
        click.echo(f"{hidden} ended channel{'s' if hidden > 1 else ''} not shown (--all lists "
                   "them)", err=True)
    if not rows:
        click.echo("no channels" if not hidden else "no live channels", err=True)
        return
    _print_table(rows, f"channels in {path.parent}")


def _print_table(rows: list[dict[str, Any]], title: str) -> None:
    from rich.console import Console
    from rich.filesize import decimal
    from rich.table import Table

    table = Table(title=title)
    for name in ("id", "peer", "direction", "root", "status", "bytes", "message"):
        table.add_column(name, overflow="fold", no_wrap=name in ("id", "peer", "bytes"),
                         min_width=16 if name == "root" else None,
                         justify="right" if name == "bytes" else "left")
    for row in rows:
        role = "out" if row["role"] == "initiator" else "in"
        direction = f"{'send' if row['sending'] else 'receive'} ({row['kind']} {role})"
        peer = row["peer"] if len(row["peer"]) <= 12 else f"…{row['peer'][-10:]}"
        table.add_row(row["id"], peer, direction, row["root"], row["status"],
                      decimal(row["bytes"]), row["message"])
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
    from datatransfer.node import LOCAL_LISTEN, Node, dag_size

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
