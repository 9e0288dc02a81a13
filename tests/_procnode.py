"""A data-transfer node in its own OS process, for tests/test_multiprocess.py.

Run as ``python tests/_procnode.py serve|pull|push ...``. Every line it prints on
stdout is one ``WORD args...`` record the test reads:

* ``ADDR <multiaddr>`` (first line once the node runs),
* ``CHANNEL <initiator> <id>`` (pull: the channel it opened),
* ``STATE <initiator> <id> <status> <sent> <received> <received_index>``
  whenever a channel's status or byte counts change,
* ``STATUS <status>`` (pull: each status change, from the Manager's events),
* ``PAID <amount>`` (pull --pay), ``CANCELLED <n>`` (serve, after ``cancel``),
* ``DONE <status> <received> <dag size or -1>`` (pull, at the end;
  push: ``DONE <status> <sent> <dag size or -1>``),
* ``EVENT <name> <initiator> <id> <sent> <received> <received_index>`` for
  the events that say a transfer broke or resumed (Disconnected, Restart,
  errors...), with the channel's counters at that moment,
* ``PULLED <initiator> <id> <status> <received> <dag size or -1>`` (serve,
  after ``pull``), ``RESOURCES key=value...`` (serve, after ``resources``).

Reachability, for tests that put tests/_relay.py between two nodes:
``serve --no-dial`` never dials a peer (it only uses connections peers
open, as if they sat behind a NAT); ``pull/push --only-via`` dials the peer
at the given address only, never at the addresses its identify announced.
Together they force every reconnection through the relay.

Limits, for the flood tests: ``serve --max-channels-per-peer N`` sets the
Manager's ``max_channels_per_peer``, ``--max-queued-per-peer N`` the graphsync
engine's queue of waiting requests per peer. ``RESOURCES`` says
``live_channels`` (all peers) and ``live_channels_peer_max`` (the most any
one peer has open).

``serve --accept-deals`` accepts every Filecoin retrieval deal proposal
for free (:class:`AcceptDeals`, saying ``DEAL <deal id> <payload cid>
<initiator> <id>``): a stand-in for the provider in the Lassie tests.

``pull --voucher-label L`` asks with a ``test/voucher`` (:class:`_support.LabelVoucher`)
instead of the open voucher (a ``datatransfer serve`` refuses it).

``pull`` takes a ``--selector`` (DAG-JSON) and can act on its channel once
it received some bytes: ``--pause-after N --pause-for S`` pauses it, says
``PAUSED <received> <status>``, waits S seconds, says ``RESUMING <status>
<received>`` and resumes it (unless it already ended: a peer that ignores the
pause finishes meanwhile); ``--cancel-after N`` closes it and says
``CANCELLING <received>``.

``serve`` reads commands from stdin, one a line: ``cancel`` (close every
channel in progress), ``pull <addr> <cid>`` (pull as well as serve: the
PULLED line says how it ended), ``resources`` (the transport's state and the
channels by peer), ``quit``; end of stdin also stops it, as do SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _support import DEADLINE, LabelVoucher, NoteResult, PayEveryN, Payment  # noqa: E402

from datatransfer.config import ManagerConfig  # noqa: E402
from datatransfer.ipld.cid import CID  # noqa: E402
from datatransfer.node import Node, dag_size  # noqa: E402
from datatransfer.types import ChannelID, ChannelState  # noqa: E402
from statemachine import FINAL_STATUSES  # noqa: E402

_SAY = threading.Lock()


class AcceptDeals:
    """``serve --accept-deals``: a stand-in for the retrieval provider that
    accepts every ``RetrievalDealProposal/1`` for free (answering
    ``Accepted``), so the Lassie tests reach the data path whatever the
    provider does; the real one is ``markets.retrieval.provider``."""

    async def validate_pull(self, is_restart, chid, receiver, voucher, root, selector):  # type: ignore[no-untyped-def]
        from datatransfer.markets.retrieval import DealResponse, DealStatus

        say("DEAL", voucher.deal_id, voucher.payload_cid, *_chid_words(chid))
        return DealResponse(DealStatus.ACCEPTED, voucher.deal_id)

    async def validate_push(self, is_restart, chid, sender, voucher, root, selector):  # type: ignore[no-untyped-def]
        from datatransfer.errors import Rejected

        raise Rejected("retrieval deals are pulls")


def _accept_deals(manager) -> None:  # type: ignore[no-untyped-def]
    from datatransfer.markets.retrieval import DealProposal, DealResponse

    manager.register_voucher_type(DealProposal, AcceptDeals())
    manager.register_voucher_result_type(DealResponse)


def say(*words: object) -> None:
    """One whole line per call: the event bus's worker thread and the trio
    thread both print, and ``print(*words)`` writes word by word."""
    line = " ".join(map(str, words)) + "\n"
    with _SAY:
        sys.stdout.write(line)
        sys.stdout.flush()


def _chid_words(chid: ChannelID) -> list[str]:
    return [str(chid.initiator), str(chid.id)]


class SlowSender:
    """A revalidator that sleeps after each block a pull sends (a slow link)."""

    def __init__(self, delay: float) -> None:
        self.delay = delay

    async def on_pull_data_sent(self, channel_id, additional_bytes):  # type: ignore[no-untyped-def]
        await anyio.sleep(self.delay)
        return None

    async def on_push_data_received(self, channel_id, additional_bytes):  # type: ignore[no-untyped-def]
        return None

    async def revalidate(self, channel_id, voucher):  # type: ignore[no-untyped-def]
        return None

    async def on_complete(self, channel_id):  # type: ignore[no-untyped-def]
        return None


#: Events printed as ``EVENT`` lines: the transfer broke, or resumed.
_WATCHED_EVENTS = frozenset({
    "Disconnected", "Restart", "Error", "SendDataError", "ReceiveDataError",
    "RequestCancelled",
})


def _say_events(node: Node) -> None:
    """Print an EVENT line for each watched event (the bus's worker thread)."""
    assert node.manager is not None

    def on_event(event, state) -> None:  # type: ignore[no-untyped-def]
        if event.code.name in _WATCHED_EVENTS:
            say("EVENT", event.code.name, *_chid_words(state.channel_id), state.sent,
                state.received, state.received_index)

    node.manager.subscribe(on_event)


def _resources(node: Node) -> list[str]:
    """The transport's state counters and live channels per peer."""
    assert node.manager is not None
    words = [f"{k}={v}" for k, v in sorted(node.transport.resources().items())]
    live: dict[str, int] = {}
    for st in node.manager.channels().values():
        if st.status not in FINAL_STATUSES:
            key = str(st.other_peer)
            live[key] = live.get(key, 0) + 1
    words.append(f"live_channels={sum(live.values())}")
    words.append(f"live_channels_peer_max={max(live.values(), default=0)}")
    words.append(f"channels={len(node.manager.channels())}")
    return words


async def _pull_and_report(node: Node, addr: str, cid: str, timeout: float) -> None:
    """Serve's ``pull`` command: pull, wait for a final status, say PULLED."""
    assert node.manager is not None
    root = CID.parse(cid)
    try:
        with anyio.fail_after(timeout):
            chid = await node.pull(addr, root)
            say("CHANNEL", *_chid_words(chid))
            state = await node.manager.wait(chid)
    except Exception as exc:  # noqa: BLE001 - reported to the test, not raised
        say("PULLED", "-", "-", "Error", 0, -1)
        say("MESSAGE", f"{type(exc).__name__}: {exc}".replace("\n", " "))
        return
    size = dag_size(root, node.blockstore)
    say("PULLED", *_chid_words(chid), state.status.name, state.received,
        -1 if size is None else size)
    if state.message:
        say("MESSAGE", state.message.replace("\n", " "))


def _dial_only_at(node: Node, addr: str) -> None:
    """Dial the peer of ``addr`` at that address only, never at the ones its
    identify announced (its real listen address): as if only ``addr`` were
    reachable, so every reconnection goes through it (a relay in the tests).
    Whatever the peerstore holds: identify replaces a peer's addresses with
    those it announces, so ``addr`` may be gone from it by the time a
    restart dials (under load it often was: the restart went around the
    relay)."""
    from transport.libp2p import libp2p_id, parse_peer_addr

    peer, (where, *_) = parse_peer_addr(addr)
    pid = libp2p_id(peer)
    peerstore = node.host.get_network().peerstore
    known = peerstore.addrs

    def addrs(peer_id):  # type: ignore[no-untyped-def]
        return [where] if peer_id == pid else known(peer_id)

    peerstore.addrs = addrs


def _never_dial(node: Node) -> None:
    """Use the connections peers open, never dial one (as if every peer sat
    behind a NAT): a lost connection is for the peer to make again."""
    from libp2p.network.exceptions import SwarmException

    swarm = node.host.get_network()

    async def dial_peer(peer_id):  # type: ignore[no-untyped-def]
        conns = [c for c in swarm.get_connections(peer_id) if not c.is_closed]
        if conns:
            return conns
        raise SwarmException(f"this node does not dial ({peer_id})")

    swarm.dial_peer = dial_peer


async def _report(node: Node, only: ChannelID | None = None) -> None:
    """Print a STATE line whenever a channel's status/counters change."""
    assert node.manager is not None
    last: dict[ChannelID, tuple] = {}
    while True:
        for chid, st in node.manager.channels().items():
            if only is not None and chid != only:
                continue
            key = (st.status.name, st.sent, st.received, st.received_index)
            if last.get(chid) != key:
                last[chid] = key
                say("STATE", *_chid_words(chid), *key)
        await anyio.sleep(0.05)


def _config(args: argparse.Namespace) -> ManagerConfig:
    limit = getattr(args, "max_channels_per_peer", None)
    extra = {} if limit is None else {"max_channels_per_peer": limit}
    return ManagerConfig(max_restarts=args.max_restarts, restart_backoff=0.2,
                         max_restart_backoff=getattr(args, "max_restart_backoff", 1.0),
                         no_progress_timeout=getattr(args, "no_progress_timeout", 60.0),
                         **extra)


async def serve(args: argparse.Namespace) -> None:
    options = {} if args.max_queued_per_peer is None else {
        "max_queued_per_peer": args.max_queued_per_peer}
    node = Node(args.home, listen=(args.listen,), config=_config(args),
                transport_options=options, setup=_accept_deals if args.accept_deals else None)
    await node.__aenter__()
    try:
        assert node.manager is not None
        manager = node.manager
        manager.register_voucher_result_type(NoteResult)
        if args.pay_interval:
            manager.register_revalidator(Payment, PayEveryN(args.pay_interval, final=True))
        elif args.slow:
            manager.register_revalidator(Payment, SlowSender(args.slow))
        _say_events(node)
        if args.no_dial:
            _never_dial(node)
        say("ADDR", node.addrs()[0])
        async with anyio.create_task_group() as tg:
            tg.start_soon(_report, node)

            async def signals() -> None:
                with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as sigs:
                    async for _ in sigs:
                        tg.cancel_scope.cancel()
                        return

            tg.start_soon(signals)
            while True:
                line = await anyio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)
                cmd = line.strip()
                if not line or cmd == "quit":
                    break
                if cmd == "cancel":
                    n = 0
                    for chid, st in manager.channels().items():
                        if st.status not in FINAL_STATUSES:
                            await manager.close_channel(chid)
                            n += 1
                    say("CANCELLED", n)
                elif cmd.startswith("pull "):
                    _, addr, cid = cmd.split()
                    tg.start_soon(_pull_and_report, node, addr, cid, args.pull_timeout)
                elif cmd == "resources":
                    say("RESOURCES", *_resources(node))
            await anyio.sleep(0.2)  # a last STATE line
            tg.cancel_scope.cancel()
    finally:
        await node.__aexit__(None, None, None)


async def pull(args: argparse.Namespace) -> None:
    node = Node(args.home, listen=("/ip4/127.0.0.1/tcp/0",), config=_config(args))
    await node.__aenter__()
    try:
        assert node.manager is not None
        manager = node.manager
        manager.register_voucher_result_type(NoteResult)
        last_status: list[str] = []

        def on_event(event, state) -> None:  # type: ignore[no-untyped-def]
            # every status change, in order (the event bus's worker thread)
            if not last_status or last_status[-1] != state.status.name:
                last_status.append(state.status.name)
                say("STATUS", state.status.name)

        manager.subscribe(on_event)
        _say_events(node)
        if args.only_via:
            _dial_only_at(node, args.addr)
        root = CID.parse(args.cid)
        voucher = None if args.voucher_label is None else LabelVoucher(args.voucher_label)
        if args.selector is None:
            chid = await node.pull(args.addr, root, voucher=voucher)
        else:
            from datatransfer.ipld import dagjson

            chid = await node.pull(args.addr, root,
                                   dagjson.decode(args.selector.encode(), strict=False),
                                   voucher=voucher)
        say("CHANNEL", *_chid_words(chid))
        state: ChannelState
        async with anyio.create_task_group() as tg:
            tg.start_soon(_report, node, chid)
            paid = 0
            acted = False
            with anyio.fail_after(args.timeout):
                while True:
                    state = manager.channel_state(chid)
                    if state.status in FINAL_STATUSES:
                        break
                    if not acted and args.pause_after and state.received >= args.pause_after:
                        acted = True
                        await manager.pause_channel(chid)
                        state = manager.channel_state(chid)
                        say("PAUSED", state.received, state.status.name)
                        await anyio.sleep(args.pause_for)
                        state = manager.channel_state(chid)
                        say("RESUMING", state.status.name, state.received)
                        if state.status not in FINAL_STATUSES:
                            await manager.resume_channel(chid)
                        continue
                    if not acted and args.cancel_after and state.received >= args.cancel_after:
                        acted = True
                        say("CANCELLING", state.received)
                        await manager.close_channel(chid)
                        continue
                    if args.pay:
                        asks = [r for r in state.voucher_results
                                if isinstance(r, NoteResult)
                                and r.note.startswith(("pay", "final"))]
                        if paid < len(asks):
                            amount = int(asks[paid].note.split()[1])
                            paid += 1
                            await manager.send_voucher(chid, Payment(amount))
                            say("PAID", amount)
                    await anyio.sleep(0.01)
            await anyio.sleep(0.1)
            tg.cancel_scope.cancel()
        size = dag_size(root, node.blockstore)
        say("DONE", state.status.name, state.received, -1 if size is None else size)
        if state.message:
            say("MESSAGE", state.message.replace("\n", " "))
    finally:
        await node.__aexit__(None, None, None)


async def push(args: argparse.Namespace) -> None:
    node = Node(args.home, listen=("/ip4/127.0.0.1/tcp/0",), config=_config(args))
    await node.__aenter__()
    try:
        assert node.manager is not None
        manager = node.manager
        _say_events(node)
        if args.only_via:
            _dial_only_at(node, args.addr)
        root = CID.parse(args.cid)
        chid = await node.push(args.addr, root)
        say("CHANNEL", *_chid_words(chid))
        async with anyio.create_task_group() as tg:
            tg.start_soon(_report, node, chid)
            with anyio.fail_after(args.timeout):
                state = await manager.wait(chid)
            await anyio.sleep(0.1)
            tg.cancel_scope.cancel()
        size = dag_size(root, node.blockstore)
        say("DONE", state.status.name, state.sent, -1 if size is None else size)
        if state.message:
            say("MESSAGE", state.message.replace("\n", " "))
    finally:
        await node.__aexit__(None, None, None)


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--home", required=True)
    s.add_argument("--listen", default="/ip4/127.0.0.1/tcp/0")
    s.add_argument("--pay-interval", type=int, default=0)
    s.add_argument("--slow", type=float, default=0.0)
    s.add_argument("--max-restarts", type=int, default=5)
    s.add_argument("--pull-timeout", type=float, default=DEADLINE)
    s.add_argument("--no-dial", action="store_true")
    s.add_argument("--max-channels-per-peer", type=int, default=None)
    s.add_argument("--max-queued-per-peer", type=int, default=None)
    s.add_argument("--no-progress-timeout", type=float, default=60.0)
    s.add_argument("--accept-deals", action="store_true")
    for name in ("pull", "push"):
        p = sub.add_parser(name)
        p.add_argument("--home", required=True)
        p.add_argument("--addr", required=True)
        p.add_argument("--cid", required=True)
        p.add_argument("--timeout", type=float, default=DEADLINE)
        p.add_argument("--max-restarts", type=int, default=20)
        p.add_argument("--max-restart-backoff", type=float, default=1.0)
        p.add_argument("--only-via", action="store_true")
        if name == "pull":
            p.add_argument("--pay", action="store_true")
            p.add_argument("--selector", default=None)
            p.add_argument("--pause-after", type=int, default=0)
            p.add_argument("--pause-for", type=float, default=2.0)
            p.add_argument("--cancel-after", type=int, default=0)
            p.add_argument("--voucher-label", default=None)
    args = parser.parse_args()
    run = {"serve": serve, "pull": pull, "push": push}[args.cmd]
    anyio.run(run, args, backend="trio")


if __name__ == "__main__":
    main()
