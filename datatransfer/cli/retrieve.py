"""``datatransfer retrieve``: a Filecoin retrieval deal, free or paid, from a
provider such as ``datatransfer serve``.

Payments between two of our nodes go through each home's demo wallet
(:mod:`datatransfer.markets.retrieval.wallet`: a secp256k1 key, signed
vouchers, nothing locked on a chain).
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import click

from datatransfer.cli.ask import fil, parse_fil
from datatransfer.cli.blocks import _home_option, _parse_cid
from datatransfer.cli.node import (
    _check_addr,
    _follow,
    _rate,
    _run,
    _watch_signals,
    resolve_dns,
    write_outputs,
)
from datatransfer.cli.output import (
    INTERRUPTED,
    check_output,
    console,
    force_option,
    is_stdout,
    message,
)
from datatransfer.cli.peers import complete_peer_name, resolve_peer_arg
from datatransfer.ipld.cid import CID

# -- retrieve --------------------------------------------------------------------------


def _status_name(status: Any) -> str:
    return str(status.go_name).removeprefix("DealStatus")


def _describe(event: Any) -> str:
    """One line for a deal event."""
    from datatransfer.markets.retrieval import DealStatus

    text = f"deal {event.deal_id}: {_status_name(event.status)}"
    if event.status in (DealStatus.SEND_FUNDS, DealStatus.SEND_FUNDS_LAST_PAYMENT):
        text += (f": paid {fil(event.owed)} ({fil(event.paid)} in all) for "
                 f"{event.received} bytes received")
    elif event.owed:
        text += f": {fil(event.owed)} owed"
    if event.message:
        text += f": {event.message}"
    return text


async def _retrieve(home: Path | None, addr: str, root: CID, budget: int,
                    listen: tuple[str, ...]) -> tuple[Any, float, bool]:
    """Run the deal in an embedded node; (result, seconds, interrupted)."""
    from datatransfer.config import ManagerConfig
    from datatransfer.daemon.protocol import short_channel_id
    from datatransfer.home import resolve_home
    from datatransfer.markets.retrieval import (
        Ask,
        RetrievalError,
        RetrievalTypeError,
        register_client,
    )
    from datatransfer.markets.retrieval.network import query_ask
    from datatransfer.markets.retrieval.query import Query, QueryStatus
    from datatransfer.markets.retrieval.wallet import HomeWallet
    from datatransfer.node import Node, describe_dial_failure

    wallet = HomeWallet(resolve_home(home)) if budget > 0 else None
    clients: list[Any] = []
    node = Node(home, listen=listen, config=ManagerConfig(auto_restart=False),
                setup=lambda manager: clients.append(register_client(manager, wallet)))
    try:
        await node.__aenter__()
    except Exception as exc:  # noqa: BLE001 - report, do not trace
        raise click.ClickException(f"cannot start node: {exc}") from None
    client = clients[0]
    assert node.manager is not None
    manager = node.manager
    hit: list[int] = []
    failure: list[str] = []
    result: Any = None
    chid: list[Any] = []
    started = time.monotonic()

    def on_event(event: Any) -> None:
        if event.channel_id is not None and not chid:
            chid.append(event.channel_id)
        console().print(_describe(event), markup=False, highlight=False, soft_wrap=True)

    client.subscribe(on_event)

    async def progress(total: int | None) -> None:
        while not chid:  # (the deal's first event names it)
            await anyio.sleep(0.05)
        await _follow(node, chid[0], root, total, "retrieve", pull=True, exact_total=False)

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_watch_signals, tg.cancel_scope, hit)
            try:
                peer = await node.connect(resolve_dns(addr))
            except Exception as exc:  # noqa: BLE001 - dial errors come in many types
                failure.append(describe_dial_failure(addr, exc))
            if not failure:
                try:
                    answer = await query_ask(node.host, peer, Query(root))
                except (TimeoutError, RetrievalTypeError) as exc:
                    failure.append(f"the provider's answer to the retrieval query: {exc}")
                except Exception as exc:  # noqa: BLE001 - libp2p: no such protocol, reset
                    failure.append(f"the provider does not answer retrieval queries "
                                   f"({type(exc).__name__}: {exc})")
            if not failure and answer.status is not QueryStatus.AVAILABLE:
                failure.append(f"the provider does not offer {root}"
                               + (f": {answer.message}" if answer.message else ""))
            if not failure:
                try:
                    ask = Ask(price_per_byte=answer.min_price_per_byte,
                              unseal_price=answer.unseal_price,
                              payment_interval=answer.max_payment_interval,
                              payment_interval_increase=answer.max_payment_interval_increase,
                              payment_address=answer.payment_address)
                except ValueError as exc:
                    failure.append(f"the provider's ask cannot be taken: {exc}")
            if not failure:
                size = f" for {answer.size} bytes" if answer.size else ""
                console().print(
                    "ask: free" if ask.is_free else
                    f"ask: {fil(ask.price_per_byte)} per byte{size}, unseal "
                    f"{fil(ask.unseal_price)}, a payment every {ask.payment_interval} bytes "
                    f"(+{ask.payment_interval_increase}), paid to {ask.payment_address}",
                    markup=False, highlight=False, soft_wrap=True)
                if not ask.is_free and budget == 0:
                    failure.append(f"the provider asks {fil(ask.price_per_byte)} per byte; "
                                   "give --max-price to pay (0 retrieves free content only)")
            if not failure:
                tg.start_soon(progress, answer.size or None)
                live = node.live_channel(peer, root)
                if live is not None and client.deal_proposal(live) is None:
                    live = None  # (a plain pull of the same root)
                try:
                    if live is not None:
                        chid.append(live)
                        click.echo(f"resuming channel {short_channel_id(live)}", err=True)
                        await manager.restart_channel(live)
                        result = await client.resume(live, ask=ask, budget=budget)
                    else:
                        result = await client.retrieve(peer, root, ask=ask, budget=budget)
                except RetrievalError as exc:
                    failure.append(str(exc))
            tg.cancel_scope.cancel()
    finally:
        # an interrupted deal stays live in the home: the same command run
        # again resumes it and pays only for what was not paid
        await node.__aexit__(None, None, None)
    if hit:
        name = signal.Signals(hit[0]).name
        if chid and result is None:
            click.echo(f"{name}: interrupted; run the same command again to resume channel "
                       f"{short_channel_id(chid[0])}", err=True)
        return None, 0.0, True
    if failure:
        raise click.ClickException(failure[0])
    return result, time.monotonic() - started, False


@click.command("retrieve")
@click.argument("multiaddr", shell_complete=complete_peer_name)
@click.argument("cid")
@click.option("--max-price", "max_price", default="0", show_default=True, metavar="FIL",
              help="The most to pay in all, e.g. 0.001 or 0.001FIL (a bare number is FIL, "
              "as in Lotus) or 5000000attoFIL; 0: free retrievals only.")
@click.option("-o", "--output", "output",
              type=click.Path(dir_okay=False, allow_dash=True, path_type=Path), default=None,
              help="Write the file (UnixFS) here once retrieved (- for stdout).")
@click.option("--car", "car", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
              default=None, help="Write a CARv1 of the DAG, root first, in traversal order "
              "(- for stdout).")
@force_option
@click.option("--listen", "listen", multiple=True, default=("/ip4/0.0.0.0/tcp/0",),
              show_default=True, help="Multiaddr this node listens on meanwhile (repeatable).")
@_home_option
def retrieve(multiaddr: str, cid: str, max_price: str, output: Path | None, car: Path | None,
             force: bool, listen: tuple[str, ...], home: Path | None) -> None:
    """Retrieve the DAG under CID from the retrieval provider at MULTIADDR
    (a `datatransfer serve`, or a name given with `datatransfer peers add`)
    into this home, on a Filecoin retrieval deal.

    The provider's ask is queried first; a paid deal is paid as it goes
    (a payment each interval, from this home's demo wallet), never more than
    --max-price in all nor more than the ask's price for the bytes received.
    Every deal status and payment is shown on stderr. Exits 0 only when the
    deal completed; the channel id is printed last. Existing output files
    are refused unless --force. An interrupted deal is resumed by running
    the same command again.
    """
    multiaddr = resolve_peer_arg(multiaddr, home)
    _check_addr(multiaddr)
    root = _parse_cid(cid)
    budget = parse_fil(max_price, "--max-price")
    if is_stdout(output) and is_stdout(car):
        raise click.UsageError("-o - and --car - cannot both write to stdout")
    check_output(output, force, "'-o' / '--output'")
    check_output(car, force, "'--car'")
    result, elapsed, interrupted = _run(lambda: _retrieve(home, multiaddr, root, budget, listen))
    if interrupted:
        sys.exit(INTERRUPTED)
    click.echo(f"Completed: {_rate(result.received, elapsed)}, paid {fil(result.paid)}",
               err=True)
    from datatransfer.ipld.selector import ALL_SELECTOR_NODE

    write_outputs(home, root, ALL_SELECTOR_NODE, output, car)
    message(str(result.channel_id), to_stdout=not (is_stdout(output) or is_stdout(car)))


__all__ = ["retrieve"]
