"""A data-transfer node in its own OS process, for tests/test_multiprocess.py.

Run as ``python tests/_procnode.py serve|pull ...``. Every line it prints on
stdout is one ``WORD args...`` record the test reads:

* ``ADDR <multiaddr>`` (first line once the node runs),
* ``CHANNEL <initiator> <id>`` (pull: the channel it opened),
* ``STATE <initiator> <id> <status> <sent> <received> <received_index>``
  whenever a channel's status or byte counts change,
* ``STATUS <status>`` (pull: each status change, from the Manager's events),
* ``PAID <amount>`` (pull --pay), ``CANCELLED <n>`` (serve, after ``cancel``),
* ``DONE <status> <received> <dag size or -1>`` (pull, at the end).

``serve`` reads commands from stdin, one a line: ``cancel`` (close every
channel in progress), ``quit``; end of stdin also stops it, as do
SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _support import NoteResult, PayEveryN, Payment  # noqa: E402

from datatransfer.config import ManagerConfig  # noqa: E402
from datatransfer.ipld.cid import CID  # noqa: E402
from datatransfer.node import Node, dag_size  # noqa: E402
from datatransfer.types import ChannelID, ChannelState  # noqa: E402
from statemachine import FINAL_STATUSES  # noqa: E402


def say(*words: object) -> None:
    print(*words, flush=True)


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
    return ManagerConfig(max_restarts=args.max_restarts, restart_backoff=0.2,
                         max_restart_backoff=1.0, no_progress_timeout=60.0)


async def serve(args: argparse.Namespace) -> None:
    node = Node(args.home, listen=(args.listen,), config=_config(args))
    await node.__aenter__()
    try:
        assert node.manager is not None
        manager = node.manager
        manager.register_voucher_result_type(NoteResult)
        if args.pay_interval:
            manager.register_revalidator(Payment, PayEveryN(args.pay_interval, final=True))
        elif args.slow:
            manager.register_revalidator(Payment, SlowSender(args.slow))
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
        root = CID.parse(args.cid)
        chid = await node.pull(args.addr, root)
        say("CHANNEL", *_chid_words(chid))
        state: ChannelState
        async with anyio.create_task_group() as tg:
            tg.start_soon(_report, node, chid)
            paid = 0
            with anyio.fail_after(args.timeout):
                while True:
                    state = manager.channel_state(chid)
                    if state.status in FINAL_STATUSES:
                        break
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


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--home", required=True)
    s.add_argument("--listen", default="/ip4/127.0.0.1/tcp/0")
    s.add_argument("--pay-interval", type=int, default=0)
    s.add_argument("--slow", type=float, default=0.0)
    s.add_argument("--max-restarts", type=int, default=5)
    p = sub.add_parser("pull")
    p.add_argument("--home", required=True)
    p.add_argument("--addr", required=True)
    p.add_argument("--cid", required=True)
    p.add_argument("--pay", action="store_true")
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("--max-restarts", type=int, default=20)
    args = parser.parse_args()
    anyio.run(serve if args.cmd == "serve" else pull, args, backend="trio")


if __name__ == "__main__":
    main()
