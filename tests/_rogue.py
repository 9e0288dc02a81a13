"""A misbehaving peer in its own OS process, for tests/test_multiprocess.py.

Built from the project's own pieces (the libp2p host of
:mod:`transport.libp2p.host`, the graphsync codec and framing of
:mod:`transport.graphsync`), but none of the engine's rules: it says on the
wire exactly what a test wants, including what an honest node never would.
Every line it prints on stdout is one ``WORD args...`` record:

``python tests/_rogue.py respond --home H --modes wrong,forged``
    Responders (one libp2p host, one peer id, per mode) that answer every
    new graphsync request with blocks the requester's traversal does not
    expect, after an accepting data-transfer response. ``wrong``: the
    metadata lists a block of random bytes as present (and it is sent), plus
    a second random block that no metadata mentions. ``forged``: the
    metadata names the requested root, but the block sent is random bytes
    (whose CID is another). Prints ``ADDR <mode> <multiaddr>`` per host,
    then ``REQUEST <mode> <n>`` for each new request and ``SENT <mode>
    <cid>`` for each block sent.

``python tests/_rogue.py flood --home H --addr A --cid C --count N``
    A client that opens ``N`` pull requests for ``C`` at once (each a new
    graphsync request carrying its own data-transfer pull request, distinct
    transfer ids, a few hundred per message) and never pays, cancels or
    closes them. It reads every response the node sends back and prints
    ``TALLY requests=<n> answered=<requests with any response>
    <status name>=<requests whose last status is it>...`` whenever that
    changes, and ``BUSY_FIRST <i>`` / ``BUSY_LAST <i>``: the lowest and
    highest request index answered Busy.

``python tests/_rogue.py dtflood --home H --addr A --cid C --count N``
    A client that opens ``N`` push channels at once through the data-transfer
    message protocol (``/fil/datatransfer/1.2.0``): ``N`` New push requests
    for ``C`` with the :class:`~datatransfer.node.OpenVoucher` a serving node
    accepts, distinct transfer ids, each on its own stream. It never answers
    the graphsync requests the node opens back for the channels it accepts,
    so they stay open. A push is accepted by the data request the node opens
    (its data-transfer extension carries the accepting response) and refused
    by a response on the message protocol. Prints ``DTFLOODED <n> <peer>``
    once every request is written and ``DTTALLY requests=<n>
    accepted=<a> rejected=<r>`` whenever that changes.

All stop at end of stdin or SIGTERM.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from datatransfer.ipld.block import Block  # noqa: E402
from datatransfer.ipld.cid import CID  # noqa: E402
from datatransfer.ipld.selector import ALL_SELECTOR_NODE  # noqa: E402
from datatransfer.messages import (  # noqa: E402
    PROTOCOL_ID,
    TransferResponse,
    encode_message,
    from_node,
    to_node,
)
from datatransfer.messages.build import new_request, new_response  # noqa: E402
from datatransfer.node import OpenVoucher  # noqa: E402
from transport.graphsync.framing import MAX_FRAME, encode_frame, read_frame  # noqa: E402
from transport.graphsync.message import (  # noqa: E402
    EXTENSION_DATA_TRANSFER,
    GraphsyncMessage,
    GraphsyncRequest,
    GraphsyncResponse,
    LinkMetadatum,
    decode_message,
)
from transport.graphsync.status import LinkAction, RequestType, ResponseStatus  # noqa: E402
from transport.libp2p import (  # noqa: E402
    DataTransferNetwork,
    connect,
    libp2p_id,
    load_or_create_identity,
    open_host,
    peer_id_of,
)
from transport.libp2p.host import format_peer_addr  # noqa: E402
from transport.libp2p.transport import GRAPHSYNC_PROTOCOL  # noqa: E402

LOOPBACK = "/ip4/127.0.0.1/tcp/0"
#: Requests per flood message: well under the 4 MiB frame limit.
FLOOD_BATCH = 200


def say(*words: object) -> None:
    sys.stdout.write(" ".join(map(str, words)) + "\n")
    sys.stdout.flush()


async def _frames(stream: Any):  # type: ignore[no-untyped-def]
    """Every graphsync message a stream carries, until it ends."""
    buf = bytearray()

    async def receive_exact(n: int) -> bytes:
        while len(buf) < n:
            try:
                chunk = await stream.read(max(n - len(buf), 65536))
            except Exception:  # noqa: BLE001 - EOF / reset: the stream ended
                chunk = b""
            if not chunk:
                raise anyio.EndOfStream
            buf.extend(chunk)
        out = bytes(buf[:n])
        del buf[:n]
        return out

    while True:
        payload = await read_frame(receive_exact, MAX_FRAME)
        if payload is None:
            return
        yield decode_message(payload)


async def _until_stdin_closes() -> None:
    await anyio.to_thread.run_sync(sys.stdin.read, abandon_on_cancel=True)


# -- respond -------------------------------------------------------------------------------


async def respond(args: argparse.Namespace) -> None:
    async with anyio.create_task_group() as tg:
        for mode in args.modes.split(","):
            await tg.start(_responder, Path(args.home) / mode, mode)
        await _until_stdin_closes()
        tg.cancel_scope.cancel()


async def _responder(home: Path, mode: str, *, task_status: Any) -> None:
    key = load_or_create_identity(home)
    async with open_host(key, (LOOPBACK,)) as host:
        count = 0
        out_streams: dict[Any, Any] = {}

        async def answer(peer: Any, req: GraphsyncRequest) -> None:
            dt = from_node(req.extensions[EXTENSION_DATA_TRANSFER])
            accept = new_response(dt.transfer_id, accepted=True)
            junk = Block.of(os.urandom(1024))
            extra = Block.of(os.urandom(1024))
            if mode == "wrong":
                meta = (LinkMetadatum(junk.cid, LinkAction.PRESENT),)
                blocks = (junk, extra)
            else:  # forged: the root the request names, other bytes
                meta = (LinkMetadatum(req.root, LinkAction.PRESENT),)
                blocks = (junk,)
            rsp = GraphsyncResponse(req.id, ResponseStatus.PARTIAL_RESPONSE, meta,
                                    {EXTENSION_DATA_TRANSFER: to_node(accept)})
            done = GraphsyncResponse(req.id, ResponseStatus.COMPLETED_FULL, (), {})
            stream = out_streams.get(peer)
            if stream is None:
                stream = out_streams[peer] = await host.new_stream(peer, [GRAPHSYNC_PROTOCOL])
            for block in blocks:
                say("SENT", mode, block.cid)
            await stream.write(encode_frame(GraphsyncMessage(responses=(rsp,), blocks=blocks)))
            await stream.write(encode_frame(GraphsyncMessage(responses=(done,))))

        async def handle(stream: Any) -> None:
            nonlocal count
            peer = stream.muxed_conn.peer_id
            try:
                async for msg in _frames(stream):
                    for req in msg.requests:
                        if req.type is RequestType.NEW:
                            count += 1
                            say("REQUEST", mode, count)
                            try:
                                await answer(peer, req)
                            except Exception as exc:  # noqa: BLE001 - the peer went away
                                out_streams.pop(peer, None)
                                say("ANSWER_FAILED", mode, type(exc).__name__)
            except Exception as exc:  # noqa: BLE001
                say("STREAM_ENDED", mode, type(exc).__name__)

        host.set_stream_handler(GRAPHSYNC_PROTOCOL, handle)
        host.set_stream_handler("/fil/datatransfer/1.2.0", _drain)
        say("ADDR", mode, format_peer_addr(host.get_addrs()[0], peer_id_of(host)))
        task_status.started()
        await anyio.sleep_forever()


async def _drain(stream: Any) -> None:
    """Data-transfer messages: read and ignored."""
    try:
        while await stream.read(65536):
            pass
    except Exception:  # noqa: BLE001
        pass


# -- flood ---------------------------------------------------------------------------------


async def flood(args: argparse.Namespace) -> None:
    key = load_or_create_identity(args.home)
    root = CID.parse(args.cid)
    async with open_host(key, (LOOPBACK,)) as host, anyio.create_task_group() as tg:
        me = peer_id_of(host)
        index: dict[bytes, int] = {}
        last: dict[bytes, ResponseStatus] = {}
        busy: list[int] = []
        shown: list[tuple] = []

        def tally() -> None:
            counts: dict[str, int] = {}
            for status in last.values():
                counts[status.name] = counts.get(status.name, 0) + 1
            key = (len(index), len(last), tuple(sorted(counts.items())))
            if shown and shown[-1] == key:
                return
            shown.append(key)
            if busy:
                say("BUSY_FIRST", min(busy))
                say("BUSY_LAST", max(busy))
            say("TALLY", f"requests={len(index)}", f"answered={len(last)}",
                *(f"{k}={v}" for k, v in sorted(counts.items())))

        async def handle(stream: Any) -> None:
            try:
                async for msg in _frames(stream):
                    for rsp in msg.responses:
                        i = index.get(rsp.request_id)
                        if i is None:
                            continue
                        last[rsp.request_id] = rsp.status
                        if rsp.status is ResponseStatus.BUSY:
                            busy.append(i)
                    tally()
            except Exception as exc:  # noqa: BLE001
                say("STREAM_ENDED", type(exc).__name__)

        host.set_stream_handler(GRAPHSYNC_PROTOCOL, handle)
        host.set_stream_handler("/fil/datatransfer/1.2.0", _drain)
        peer = await connect(host, args.addr)
        voucher = OpenVoucher("flood")
        requests = []
        for i in range(args.count):
            dt = new_request(i + 1, base_cid=root, selector=ALL_SELECTOR_NODE,
                             voucher_type=OpenVoucher.type_id, voucher=voucher.to_node(),
                             pull=True)
            req = GraphsyncRequest.new(root, ALL_SELECTOR_NODE,
                                       extensions={EXTENSION_DATA_TRANSFER: to_node(dt)})
            index[req.id] = i + 1
            requests.append(req)
        stream = await host.new_stream(libp2p_id(peer), [GRAPHSYNC_PROTOCOL])
        for start in range(0, len(requests), FLOOD_BATCH):
            batch = tuple(requests[start:start + FLOOD_BATCH])
            await stream.write(encode_frame(GraphsyncMessage(requests=batch)))
        say("FLOODED", len(requests), me)
        tally()
        await _until_stdin_closes()
        tg.cancel_scope.cancel()


# -- dtflood -------------------------------------------------------------------------------


async def dtflood(args: argparse.Namespace) -> None:
    key = load_or_create_identity(args.home)
    root = CID.parse(args.cid)
    async with open_host(key, (LOOPBACK,)) as host, anyio.create_task_group() as tg:
        me = peer_id_of(host)
        accepted: set[int] = set()
        rejected: set[int] = set()
        shown: list[tuple[int, int]] = []

        def tally() -> None:
            key = (len(accepted), len(rejected))
            if shown and shown[-1] == key:
                return
            shown.append(key)
            say("DTTALLY", f"requests={args.count}", f"accepted={len(accepted)}",
                f"rejected={len(rejected)}")

        def answered(rsp: Any) -> None:
            if not isinstance(rsp, TransferResponse):
                return
            if rsp.accepted:
                accepted.add(rsp.transfer_id)
                return
            rejected.add(rsp.transfer_id)

        async def on_graphsync(stream: Any) -> None:
            # the node's data requests for the pushes it accepted: never answered
            try:
                async for msg in _frames(stream):
                    for req in msg.requests:
                        ext = req.extensions.get(EXTENSION_DATA_TRANSFER)
                        if req.type is RequestType.NEW and ext is not None:
                            answered(from_node(ext))
                    tally()
            except Exception as exc:  # noqa: BLE001
                say("STREAM_ENDED", type(exc).__name__)

        async def on_message(sender: Any, message: Any) -> None:
            answered(message)
            tally()

        host.set_stream_handler(GRAPHSYNC_PROTOCOL, on_graphsync)
        # (a sender may write several messages on one stream: read as a node does)
        DataTransferNetwork(host, on_message).start()
        peer = libp2p_id(await connect(host, args.addr))
        voucher = OpenVoucher("dtflood")
        for i in range(args.count):
            dt = new_request(i + 1, base_cid=root, selector=ALL_SELECTOR_NODE,
                             voucher_type=OpenVoucher.type_id, voucher=voucher.to_node(),
                             pull=False)
            stream = await host.new_stream(peer, [PROTOCOL_ID])
            await stream.write(encode_message(dt))
            await stream.close()
        say("DTFLOODED", args.count, me)
        tally()
        await _until_stdin_closes()
        tg.cancel_scope.cancel()


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("respond")
    r.add_argument("--home", required=True)
    r.add_argument("--modes", default="wrong,forged")
    f = sub.add_parser("flood")
    f.add_argument("--home", required=True)
    f.add_argument("--addr", required=True)
    f.add_argument("--cid", required=True)
    f.add_argument("--count", type=int, required=True)
    d = sub.add_parser("dtflood")
    for name in ("--home", "--addr", "--cid"):
        d.add_argument(name, required=True)
    d.add_argument("--count", type=int, required=True)
    args = parser.parse_args()
    run = {"respond": respond, "flood": flood, "dtflood": dtflood}[args.cmd]
    anyio.run(run, args, backend="trio")


if __name__ == "__main__":
    main()
