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
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import click

from datatransfer.cli.ask import AskTerms, ask_options, retrieval_setup
from datatransfer.cli.blocks import _home_option, _parse_cid
from datatransfer.cli.control import daemon_for, fail
from datatransfer.cli.control import transfer as transfer_via_daemon
from datatransfer.cli.output import (
    INTERRUPTED,
    adopt_libp2p_logger,
    check_output,
    force_option,
    is_stdout,
    message,
    open_output,
    progress_bar,
)
from datatransfer.cli.peers import complete_peer_name, resolve_peer_arg
from datatransfer.config import ManagerConfig
from datatransfer.daemon.client import DaemonUnavailable
from datatransfer.daemon.protocol import ApiError, channel_row, match_channel, short_channel_id
from datatransfer.home import channels_path
from datatransfer.ipld.cid import CID
from datatransfer.types import ChannelID, ChannelState
from statemachine import FINAL_STATUSES, Status

if TYPE_CHECKING:  # pragma: no cover
    # imported where used: `ls`, `--version` and `--help` need no node
    from datatransfer.node import Node

#: Client listen address for pull/push (peers reuse the connection we open).
CLIENT_LISTEN = "/ip4/0.0.0.0/tcp/0"


def _run(fn: Callable[[], Awaitable[Any]]) -> Any:
    """Run ``fn`` under trio (py-libp2p needs it), py-libp2p's log records
    going through the command line's one handler."""
    import transport.libp2p  # noqa: F401 - imports libp2p, which resets its logger

    adopt_libp2p_logger()
    return anyio.run(fn, backend="trio")


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


def resolve_dns(addr: str) -> str:
    """``addr`` with a leading /dns, /dns4 or /dns6 part replaced by the first
    address the system resolver gives (py-libp2p's own resolver skips
    /etc/hosts); other addresses unchanged. Raises ``click.ClickException``
    when the name does not resolve."""
    parts = addr.split("/")
    if len(parts) < 3 or parts[1] not in _DNS:
        return addr
    host = parts[2]
    try:
        infos = socket.getaddrinfo(host, None, family=_DNS[parts[1]], type=socket.SOCK_STREAM)
    except OSError as exc:
        raise click.ClickException(f"cannot resolve {host}: {exc.strerror or exc}") from None
    if not infos:
        raise click.ClickException(f"cannot resolve {host}: no address")
    family, ip = infos[0][0], infos[0][4][0]
    parts[1:3] = ["ip6" if family == socket.AF_INET6 else "ip4", str(ip)]
    return "/".join(parts)


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
@click.option("--api-port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="Port of the control API on 127.0.0.1 (0: any free port).")
@click.option("--no-api", is_flag=True, default=False,
              help="Run without the control API (other commands then cannot use this node).")
@click.option("--allow-peer", "allow_peers", multiple=True, metavar="PEER_ID",
              help="Serve only these peers (repeatable; default: every peer not denied).")
@click.option("--deny-peer", "deny_peers", multiple=True, metavar="PEER_ID",
              help="Refuse every request and voucher of this peer (repeatable).")
@click.option("--deal-rate", metavar="N/INTERVAL", default=None,
              help="At most N new transfers per peer per INTERVAL (10/60, 10/1m, 3/s); "
                   "more are refused.")
@click.option("--no-progress-timeout", type=click.FloatRange(min=0, min_open=True),
              default=ManagerConfig().no_progress_timeout, show_default=True, metavar="SECONDS",
              help="End a channel that moved nothing for this long (its peer gone).")
@ask_options
@_home_option
def serve(listen: tuple[str, ...], metrics_port: int | None, api_port: int, no_api: bool,
          allow_peers: tuple[str, ...], deny_peers: tuple[str, ...], deal_rate: str | None,
          no_progress_timeout: float, home: Path | None, ask_terms: AskTerms) -> None:
    """Run a node on this home until SIGINT/SIGTERM: serve its blocks and
    its control API.

    The first line of stdout is the node's address (with /p2p/<peer id>);
    other addresses, the API and metrics URLs go to stderr. While it runs,
    `pull`, `push`, `ls`, `cancel`, `pause`, `resume`, `restart` and `watch`
    on the same home go through its control API (URL in HOME/api.json,
    token in HOME/api.token, readable by the owner only). Requests carrying
    the open voucher are accepted; Filecoin retrieval clients (Lassie) are
    told where graphsync is served (/fil/retrieval/transports/1.0.0).
    Every request and voucher passes the peer lists and the deal rate
    first (refusals are counted, logged and listed by `ls --all`; `-v` logs
    every validation). Retrieval deals are served free, or at the ask the price options (or
    the home's config.toml [retrieval]) give, paid to this home's wallet.
    """
    from registry.middleware import serve_middleware

    try:
        middleware = serve_middleware(allow_peers, deny_peers, deal_rate)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    nodes: list[Node] = []
    retrieval, ask_line = retrieval_setup(home, ask_terms, lambda: nodes[0])

    async def main() -> None:
        from datatransfer.daemon.server import ControlServer
        from datatransfer.node import Node

        def setup(manager: Any) -> None:
            manager.add_middleware(*middleware)
            retrieval(manager)

        node = Node(home, listen=listen, metrics=metrics_port is not None,
                    config=ManagerConfig(no_progress_timeout=no_progress_timeout),
                    setup=setup)
        nodes.append(node)
        try:
            await node.__aenter__()
        except Exception as exc:  # noqa: BLE001 - report, do not trace
            raise click.ClickException(f"cannot start node: {exc}") from None
        try:
            # signals are taken before the address is printed: whoever reads
            # it may stop the node at once
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async with anyio.create_task_group() as tg:
                    api = None
                    if not no_api:
                        try:
                            api = await tg.start(ControlServer(node, port=api_port).serve)
                        except OSError as exc:
                            raise click.ClickException(
                                f"cannot serve the control API on 127.0.0.1:{api_port}: "
                                f"{exc.strerror or exc}") from None
                    addrs = node.addrs()
                    click.echo(addrs[0])
                    sys.stdout.flush()
                    for other in addrs[1:]:
                        click.echo(f"also listening on {other}", err=True)
                    if ask_line is not None:
                        click.echo(ask_line, err=True)
                    if api is not None:
                        click.echo(f"control API: {api}", err=True)
                    if metrics_port is not None:
                        try:
                            port = node.serve_metrics(metrics_port)
                        except OSError as exc:
                            raise click.ClickException(
                                f"cannot serve metrics on 127.0.0.1:{metrics_port}: {exc}"
                            ) from None
                        click.echo(f"metrics: http://127.0.0.1:{port}/metrics", err=True)
                    async for signum in signals:
                        click.echo(f"{signal.Signals(signum).name}: shutting down", err=True)
                        break
                    tg.cancel_scope.cancel()
        finally:
            await node.__aexit__(None, None, None)

    _run(main)


# -- pull / push ---------------------------------------------------------------------


async def _follow(node: Node, chid: ChannelID, root: CID, total: int | None,
                  description: str, *, pull: bool, exact_total: bool) -> ChannelState:
    """Show the channel's progress until it reaches a final status."""
    from datatransfer.node import dag_size

    assert node.manager is not None
    manager = node.manager
    with progress_bar() as progress:
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
    from datatransfer.node import Node, dag_size, describe_dial_failure

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
                _check_addr(addr)
                try:
                    dial = resolve_dns(addr)
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
                    failure.append(describe_dial_failure(addr, exc))
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
        # an interrupted channel stays live in the home (not cancelled): the
        # same command run again resumes it and moves only what is missing
        await node.__aexit__(None, None, None)
    if hit:
        name = signal.Signals(hit[0]).name
        if chid is not None and (state is None or state.channel_id != chid
                                 or state.status not in FINAL_STATUSES):
            click.echo(f"{name}: interrupted; run the same command again to resume channel "
                       f"{short_channel_id(chid)}", err=True)
        else:
            click.echo(f"{name}: transfer stopped", err=True)
        sys.exit(INTERRUPTED)
    if failure:
        raise click.ClickException(failure[0])
    return state, time.monotonic() - started


def _rate(nbytes: int, seconds: float) -> str:
    from rich.filesize import decimal

    rate = nbytes / seconds if seconds > 0 else math.inf
    return f"{decimal(nbytes)} in {seconds:.2f} s ({decimal(int(rate))}/s)"


def _finish(row: dict[str, Any] | None, elapsed: float) -> None:
    """Report how the channel (its API row) ended; fail unless Completed."""
    if row is None:  # pragma: no cover - only when interrupted
        raise click.ClickException("transfer did not start")
    if row["status"] != "Completed":
        why = f": {row['message']}" if row["message"] else ""
        raise click.ClickException(f"channel {row['channel_id']} {row['status']}{why}")
    click.echo(f"Completed: {_rate(row['bytes'], elapsed)}", err=True)


def _run_transfer(home: Path | None, addr: str, root: CID, selector: str | None, *,
                  pull: bool, listen: tuple[str, ...]) -> dict[str, Any]:
    """The pull or push through the daemon holding the home, or in an
    embedded node when none does; its final row, reported."""
    client = daemon_for(home)
    started = time.monotonic()
    if client is not None:
        row = transfer_via_daemon(client, resolve_dns(addr), str(root), selector, pull=pull)
        _finish(row, time.monotonic() - started)
        return row
    sel = _parse_selector(selector)
    state, elapsed = _run(lambda: _transfer(home, addr, root, sel, pull=pull, listen=listen))
    row = channel_row(state) if state is not None else None
    _finish(row, elapsed)
    assert row is not None
    return row


_listen_option = click.option(
    "--listen", "listen", multiple=True, default=(CLIENT_LISTEN,), show_default=True,
    help="Multiaddr this node listens on while the transfer runs (repeatable).")


@click.command("pull")
@click.argument("multiaddr", shell_complete=complete_peer_name)
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

    MULTIADDR ends in /p2p/<peer id> (as `serve` prints it), or is a name
    given to one with `datatransfer peers add`. Exits 0 only
    when the channel completed; the channel id is printed last (on stderr
    when -o - or --car - puts data on stdout). Existing output files are
    refused unless --force.
    """
    multiaddr = resolve_peer_arg(multiaddr, home)
    _check_addr(multiaddr)
    root = _parse_cid(cid)
    sel = _parse_selector(selector)
    if is_stdout(output) and is_stdout(car):
        raise click.UsageError("-o - and --car - cannot both write to stdout")
    check_output(output, force, "'-o' / '--output'")
    check_output(car, force, "'--car'")
    row = _run_transfer(home, multiaddr, root, selector, pull=True, listen=listen)
    write_outputs(home, root, sel, output, car)
    message(row["channel_id"], to_stdout=not (is_stdout(output) or is_stdout(car)))


def write_outputs(home: Path | None, root: CID, selector: Any, output: Path | None,
                  car: Path | None) -> None:
    """Write what a finished pull or retrieval left in the home: the CAR of
    the selected blocks to ``car``, the UnixFS file to ``output`` (either
    may be ``-``, stdout; the caller checked they may be written)."""
    if output is None and car is None:
        return
    from datatransfer.cli.blocks import _errors
    from datatransfer.home import open_blockstore
    from datatransfer.ipld.unixfs import export_file

    with _errors(), open_blockstore(home) as store:
        if car is not None:
            with open_output(car) as fh:
                count = write_selected_car(root, selector, store, fh)
            click.echo(f"wrote {count} blocks to {'stdout' if is_stdout(car) else car}",
                       err=True)
        if output is not None:
            with open_output(output) as fh:
                export_file(root, store, fh)


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
@click.argument("multiaddr", shell_complete=complete_peer_name)
@click.argument("cid")
@click.option("--selector", default=None,
              help="Selector as (DAG-)JSON (default: the whole DAG).")
@_listen_option
@_home_option
def push(multiaddr: str, cid: str, selector: str | None, listen: tuple[str, ...],
         home: Path | None) -> None:
    """Send the DAG under CID from this home to the peer at MULTIADDR.

    MULTIADDR ends in /p2p/<peer id>, or is a name given to one with
    `datatransfer peers add`. Exits 0 only when the channel completed.
    """
    multiaddr = resolve_peer_arg(multiaddr, home)
    _check_addr(multiaddr)
    root = _parse_cid(cid)
    _parse_selector(selector)
    row = _run_transfer(home, multiaddr, root, selector, pull=False, listen=listen)
    click.echo(row["channel_id"])


# -- ls ------------------------------------------------------------------------------


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
    client = daemon_for(home)
    if client is not None:
        try:
            if channels:
                rows = [client.channel(text) for text in channels]
            else:
                rows = client.channels(every=show_all)
        except (ApiError, DaemonUnavailable) as exc:
            fail(exc)
        _show_rows(rows, as_json, 0, f"channels of the daemon on {path.parent}")
        return
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
    _show_rows([channel_row(ch) for ch in stored], as_json, hidden, f"channels in {path.parent}")


def _show_rows(rows: list[dict[str, Any]], as_json: bool, hidden: int, title: str) -> None:
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if hidden:
        click.echo(f"{hidden} ended channel{'s' if hidden > 1 else ''} not shown (--all lists "
                   "them)", err=True)
    if not rows:
        click.echo("no channels" if not hidden else "no live channels", err=True)
        return
    _print_table(rows, title)


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
