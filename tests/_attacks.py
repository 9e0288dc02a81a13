"""Hostile peers in their own OS process, for tests/test_hostile.py and the
``hostile`` benchmark.

``python tests/_attacks.py KIND --home H --addr A [--cid C]`` attacks the
node at ``A`` until its stdin closes (or SIGTERM), printing one ``WORD
args...`` line per record: ``READY`` once the attack runs, ``ROUND <n>``
after each round, ``TALLY key=value...`` whenever its counts change. Kinds:

``malformed``
    Every request type, on both protocols, with a field wrong: selectors of
    the wrong type, of an unknown kind, nested past the limit; vouchers
    nested just under DAG-CBOR's depth limit; no base CID; update, voucher,
    cancel and restart requests and responses for channels that do not
    exist; unknown message types; graphsync requests with a malformed
    data-transfer extension, selector, root or restart extension; graphsync
    responses carrying blocks for requests the node never made. Prints
    ``SENT_BLOCK <cid>`` for each block it offers.
``dtpull``
    Pull requests on the message protocol (not inside graphsync) for a root
    only the attacker holds, while it answers any graphsync request with
    that block. Prints ``ROOT <cid>``, ``ANSWER accepted=<bool>`` for each
    answer on the message protocol and ``GS_REQUEST <n>`` if the node ever
    opens a data request to it (it must not).
``selector-bomb``
    Keeps 16 graphsync pull requests for ``C`` in flight with selectors
    built to make a traversal walk without end: recursions nested in
    recursions, and unions fanned out. ``TALLY`` counts the final statuses.
``frame-bomb``
    Graphsync frames of 4 MiB of valid CBOR made of millions of empty
    lists (flat, and nested so that the first head does not give them
    away), each on a new stream as the node resets the last.
``half-open``
    ``--count`` TCP connections to the node's port, from ``--source``
    (127.0.0.2: another address than the honest client's), that never start
    the security handshake, each reopened as soon as the node closes it.
``stall``
    Pulls ``C`` with a graphsync request and never reads what the node
    sends back: the node's writes to it block once the muxer's window is
    full. Prints ``STALLED`` once the node has sent it data.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _rogue import _drain, _frames, _until_stdin_closes, say  # noqa: E402

from datatransfer.ipld import dagcbor  # noqa: E402
from datatransfer.ipld.block import Block  # noqa: E402
from datatransfer.ipld.cid import CID  # noqa: E402
from datatransfer.ipld.selector import ALL_SELECTOR_NODE  # noqa: E402
from datatransfer.ipld.varint import encode_uvarint  # noqa: E402
from datatransfer.messages import (  # noqa: E402
    PROTOCOL_ID,
    TransferResponse,
    encode_message,
    from_node,
    to_node,
)
from datatransfer.messages.build import new_request, new_response  # noqa: E402
from datatransfer.node import OpenVoucher  # noqa: E402
from transport.graphsync.framing import encode_frame  # noqa: E402
from transport.graphsync.message import (  # noqa: E402
    EXTENSION_DATA_TRANSFER,
    EXTENSION_DO_NOT_SEND_FIRST_BLOCKS,
    GraphsyncMessage,
    GraphsyncRequest,
    GraphsyncResponse,
    LinkMetadatum,
    new_request_id,
)
from transport.graphsync.status import LinkAction, RequestType, ResponseStatus  # noqa: E402
from transport.libp2p import (  # noqa: E402
    DataTransferNetwork,
    connect,
    libp2p_id,
    load_or_create_identity,
    open_host,
    parse_peer_addr,
)
from transport.libp2p.transport import GRAPHSYNC_PROTOCOL  # noqa: E402

LOOPBACK = "/ip4/127.0.0.1/tcp/0"
FRAME_BOMB_SIZE = 4 * 1024 * 1024 - 64


# -- building blocks -----------------------------------------------------------------------


def _nested(depth: int, inner: Any) -> Any:
    for _ in range(depth):
        inner = [inner]
    return inner


def nested_recursion(levels: int) -> Any:
    """A recursion whose sequence holds a recursion whose sequence holds...:
    each level multiplies the states a traversal must evaluate per node."""
    sel: Any = {"a": {">": {"@": {}}}}
    for _ in range(levels):
        sel = {"|": [{"a": {">": {"@": {}}}}, {"R": {"l": {"none": {}}, ":>": sel}}]}
    return {"R": {"l": {"none": {}}, ":>": sel}}


def union_fanout(width: int) -> Any:
    """Unions of unions over the fields of the root's links, never following
    one: go-ipld-prime visits each link width * width times."""
    leaf = {".": {}}
    inner = {"|": [{"f": {"f>": {"Tsize": leaf, "Name": leaf, f"x{i}": leaf}}}
                   for i in range(width)]}
    return {"|": [{"f": {"f>": {"Links": {"a": {">": inner}}, f"y{i}": leaf}}}
                  for i in range(width)]}


BOMB_SELECTORS = [nested_recursion(12), union_fanout(40)]


def _request_node(**change: Any) -> dict[str, Any]:
    """A New push request's envelope node with ``change`` applied to its
    request fields (anything a valid message cannot hold)."""
    root = CID.of(b"hostile", codec=0x55)
    valid = new_request(1, base_cid=root, selector=ALL_SELECTOR_NODE,
                        voucher_type=OpenVoucher.type_id, voucher={"Note": ""}, pull=False)
    node = to_node(valid)
    node["Request"].update(change)
    return node


def malformed_messages() -> list[bytes]:
    """Data-transfer messages, each wrong in one way (see the module docs)."""
    ids = iter(range(10_000, 1_000_000))
    deep_voucher = _nested(250, 1)
    out = []
    for pull in (False, True):
        for sel in (5, "all", {"zz": {}}, _nested(120, {"a": {">": {"@": {}}}}),
                    {"R": {"l": {"depth": -1}, ":>": {"@": {}}}}):
            out.append(_request_node(XferID=next(ids), Pull=pull, Stor=sel))
        out.append(_request_node(XferID=next(ids), Pull=pull, Vouch=deep_voucher))
        out.append(_request_node(XferID=next(ids), Pull=pull, BCid=None))
        out.append(_request_node(XferID=next(ids), Pull=pull, VTyp="no/such-voucher"))
    for mtype in (1, 2, 4, 5):  # update, cancel, voucher, restart: unknown channels
        out.append(_request_node(XferID=next(ids), Type=mtype))
    out.append(_request_node(XferID=next(ids), Type=6,
                             RestartChannel=["x", "y", 3]))  # not our channel
    out.append(_request_node(XferID=next(ids), Type=9))  # no such type
    out.append(to_node(new_response(next(ids), accepted=True)))  # answer to nothing
    raw = [dagcbor.encode(n) for n in out]
    raw.append(b"\xff" * 32)
    raw.append(dagcbor.encode(_nested(255, 0)))
    raw.append(encode_message(new_request(next(ids), base_cid=CID.of(b"x", codec=0x55),
                                          selector=ALL_SELECTOR_NODE, voucher_type="t",
                                          voucher=None, pull=False))[:-3])  # truncated
    return raw


def malformed_frames(root: CID, junk: Block) -> list[bytes]:
    """Graphsync frames, each wrong in one way (see the module docs)."""
    dt_ok = to_node(new_request(77, base_cid=root, selector=ALL_SELECTOR_NODE,
                                voucher_type=OpenVoucher.type_id, voucher={"Note": ""},
                                pull=True))
    requests: list[dict[str, Any]] = []

    def request(**node: Any) -> None:
        base = {"id": new_request_id(), "type": "n", "root": root, "sel": ALL_SELECTOR_NODE,
                "ext": {EXTENSION_DATA_TRANSFER: dt_ok}}
        base.update(node)
        requests.append({k: v for k, v in base.items() if v is not None})

    request(ext={EXTENSION_DATA_TRANSFER: 7})
    request(ext={EXTENSION_DATA_TRANSFER: {"IsRq": True}})
    request(sel={"zz": {}})
    request(sel=_nested(120, {"a": {">": {"@": {}}}}))
    request(root=None)
    request(ext={EXTENSION_DATA_TRANSFER: dt_ok, EXTENSION_DO_NOT_SEND_FIRST_BLOCKS: "many"})
    request(ext={EXTENSION_DATA_TRANSFER: _request_node(Stor={"zz": {}}, Pull=True)})
    request(type="u")  # update of a request that does not exist
    request(type="c")
    frames = [encode_uvarint(len(b)) + b for b in
              (dagcbor.encode({"gs2": {"req": [r]}}) for r in requests)]
    # responses with blocks for requests the node never made
    meta = (LinkMetadatum(junk.cid, LinkAction.PRESENT),)
    rsp = GraphsyncResponse(new_request_id(), ResponseStatus.PARTIAL_RESPONSE, meta, {})
    frames.append(encode_frame(GraphsyncMessage(responses=(rsp,), blocks=(junk,))))
    frames.append(encode_frame(GraphsyncMessage(blocks=(junk,))))
    return frames


def frame_bombs() -> list[bytes]:
    """4 MiB frames of empty lists: one list of millions, and lists of 23."""
    n = FRAME_BOMB_SIZE - 5
    flat = b"\x9a" + n.to_bytes(4, "big") + b"\x80" * n
    groups = (FRAME_BOMB_SIZE - 5) // 24
    nested = b"\x9a" + groups.to_bytes(4, "big") + (b"\x97" + b"\x80" * 23) * groups
    return [encode_uvarint(len(p)) + p for p in (flat, nested)]


# -- the attacks ---------------------------------------------------------------------------


class Tally:
    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self._shown: tuple[tuple[str, int], ...] = ()

    def add(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n

    def show(self) -> None:
        now = tuple(sorted(self.counts.items()))
        if now != self._shown:
            self._shown = now
            say("TALLY", *(f"{k}={v}" for k, v in now))


async def _write_stream(host: Any, peer: Any, proto: Any, data: bytes, *,
                        read: bool = False) -> bytes:
    """Open a stream, write ``data``, close; the answer if ``read``."""
    with anyio.move_on_after(10):
        stream = await host.new_stream(peer, [proto])
        try:
            await stream.write(data)
            if read:
                await stream.close_write()
                return await _read_to_end(stream)
            await stream.close()
        except Exception:  # noqa: BLE001 - reset by the node: what we expect
            pass
    return b""


async def _read_to_end(stream: Any) -> bytes:
    data = bytearray()
    try:
        while chunk := await stream.read(65536):
            data.extend(chunk)
    except Exception:  # noqa: BLE001 - EOF / reset: the stream ended
        pass
    return bytes(data)


async def malformed(args: argparse.Namespace, host: Any, peer: Any, tg: Any) -> None:
    root = CID.parse(args.cid)
    messages = malformed_messages()
    tally = Tally()

    async def on_message(sender: Any, msg: Any) -> None:
        tally.add("answers")
        if isinstance(msg, TransferResponse) and not msg.accepted:
            tally.add("rejected")

    # (a node may write several messages on one stream: read as a node does)
    DataTransferNetwork(host, on_message).start()
    host.set_stream_handler(GRAPHSYNC_PROTOCOL, _drain)
    say("READY")
    rounds = 0
    while True:
        junk = Block.of(os.urandom(512))
        say("SENT_BLOCK", junk.cid)
        for data in messages:
            await _write_stream(host, peer, PROTOCOL_ID, data)
            tally.add("messages")
        for frame in malformed_frames(root, junk):
            await _write_stream(host, peer, GRAPHSYNC_PROTOCOL, frame)
            tally.add("frames")
        rounds += 1
        say("ROUND", rounds)
        tally.show()
        await anyio.sleep(0.05)


async def dtpull(args: argparse.Namespace, host: Any, peer: Any, tg: Any) -> None:
    block = Block.of(os.urandom(2048))
    say("ROOT", block.cid)
    say("SENT_BLOCK", block.cid)
    tally = Tally()
    out_streams: dict[Any, Any] = {}

    async def on_graphsync(stream: Any) -> None:
        remote = stream.muxed_conn.peer_id
        try:
            async for msg in _frames(stream):
                for req in msg.requests:
                    if req.type is not RequestType.NEW:
                        continue
                    tally.add("gs_requests")
                    say("GS_REQUEST", tally.counts["gs_requests"])
                    dt = from_node(req.extensions[EXTENSION_DATA_TRANSFER])
                    accept = new_response(dt.transfer_id, accepted=True)
                    rsp = GraphsyncResponse(
                        req.id, ResponseStatus.COMPLETED_FULL,
                        (LinkMetadatum(block.cid, LinkAction.PRESENT),),
                        {EXTENSION_DATA_TRANSFER: to_node(accept)})
                    out = out_streams.get(remote)
                    if out is None:
                        out = out_streams[remote] = await host.new_stream(
                            remote, [GRAPHSYNC_PROTOCOL])
                    await out.write(encode_frame(GraphsyncMessage(responses=(rsp,),
                                                                  blocks=(block,))))
        except Exception:  # noqa: BLE001
            pass

    async def on_message(sender: Any, msg: Any) -> None:
        if isinstance(msg, TransferResponse):
            say("ANSWER", f"accepted={msg.accepted}")
            tally.add("answers")

    host.set_stream_handler(GRAPHSYNC_PROTOCOL, on_graphsync)
    DataTransferNetwork(host, on_message).start()
    say("READY")
    rounds = 0
    xfer = 1
    while True:
        for _ in range(10):
            dt = new_request(xfer, base_cid=block.cid, selector=ALL_SELECTOR_NODE,
                             voucher_type=OpenVoucher.type_id,
                             voucher=OpenVoucher("dtpull").to_node(), pull=True)
            xfer += 1
            await _write_stream(host, peer, PROTOCOL_ID, encode_message(dt))
        rounds += 1
        say("ROUND", rounds)
        tally.show()
        await anyio.sleep(0.2)


async def selector_bomb(args: argparse.Namespace, host: Any, peer: Any, tg: Any) -> None:
    root = CID.parse(args.cid)
    tally = Tally()
    live: dict[bytes, int] = {}
    slots = anyio.Semaphore(args.count)

    async def on_graphsync(stream: Any) -> None:
        try:
            async for msg in _frames(stream):
                for rsp in msg.responses:
                    if rsp.request_id in live and rsp.status.is_terminal:
                        del live[rsp.request_id]
                        tally.add(rsp.status.name)
                        slots.release()
                tally.show()
        except Exception:  # noqa: BLE001
            pass

    host.set_stream_handler(GRAPHSYNC_PROTOCOL, on_graphsync)
    host.set_stream_handler(PROTOCOL_ID, _drain)
    stream = await host.new_stream(peer, [GRAPHSYNC_PROTOCOL])
    say("READY")
    xfer = 1
    while True:
        await slots.acquire()
        sel = BOMB_SELECTORS[xfer % len(BOMB_SELECTORS)]
        dt = new_request(xfer, base_cid=root, selector=sel, voucher_type=OpenVoucher.type_id,
                         voucher=OpenVoucher("bomb").to_node(), pull=True)
        req = GraphsyncRequest.new(root, sel, extensions={EXTENSION_DATA_TRANSFER: to_node(dt)})
        live[req.id] = xfer
        xfer += 1
        await stream.write(encode_frame(GraphsyncMessage(requests=(req,))))
        tally.add("sent")
        if xfer % 16 == 0:
            say("ROUND", xfer // 16)
            tally.show()


async def frame_bomb(args: argparse.Namespace, host: Any, peer: Any, tg: Any) -> None:
    bombs = frame_bombs()
    tally = Tally()
    host.set_stream_handler(GRAPHSYNC_PROTOCOL, _drain)
    say("READY")
    rounds = 0
    while True:
        for bomb in bombs:
            with anyio.move_on_after(20):
                try:
                    stream = await host.new_stream(peer, [GRAPHSYNC_PROTOCOL])
                    await stream.write(bomb)
                    tally.add("sent")
                    try:
                        while await stream.read(65536):
                            pass
                    except Exception:  # noqa: BLE001 - reset: refused
                        tally.add("reset")
                except Exception:  # noqa: BLE001
                    tally.add("failed")
        rounds += 1
        say("ROUND", rounds)
        tally.show()


async def stall(args: argparse.Namespace, host: Any, peer: Any, tg: Any) -> None:
    root = CID.parse(args.cid)
    got_stream = anyio.Event()

    async def on_graphsync(stream: Any) -> None:
        # take the node's stream and never read it: its writes pile up
        got_stream.set()
        await anyio.sleep_forever()

    host.set_stream_handler(GRAPHSYNC_PROTOCOL, on_graphsync)
    host.set_stream_handler(PROTOCOL_ID, _drain)
    dt = new_request(1, base_cid=root, selector=ALL_SELECTOR_NODE,
                     voucher_type=OpenVoucher.type_id, voucher=OpenVoucher("stall").to_node(),
                     pull=True)
    req = GraphsyncRequest.new(root, ALL_SELECTOR_NODE,
                               extensions={EXTENSION_DATA_TRANSFER: to_node(dt)})
    stream = await host.new_stream(peer, [GRAPHSYNC_PROTOCOL])
    await stream.write(encode_frame(GraphsyncMessage(requests=(req,))))
    say("READY")
    await got_stream.wait()
    say("STALLED")
    await anyio.sleep_forever()


async def half_open(args: argparse.Namespace) -> None:
    """Plain TCP connections that never speak, reopened when closed."""
    _, addrs = parse_peer_addr(args.addr)
    port = int(addrs[0].value_for_protocol("tcp"))
    tally = Tally()
    say("READY")

    async def hold() -> None:
        while True:
            try:
                conn = await anyio.connect_tcp("127.0.0.1", port, local_host=args.source)
            except OSError:
                tally.add("refused_at_connect")
                await anyio.sleep(0.05)
                continue
            tally.add("opened")
            async with conn:
                try:
                    await conn.receive()  # returns when the node closes it
                except Exception:  # noqa: BLE001
                    pass
            tally.add("closed_by_node")

    async with anyio.create_task_group() as tg:
        for _ in range(args.count):
            tg.start_soon(hold)
        rounds = 0
        while True:
            await anyio.sleep(1)
            rounds += 1
            say("ROUND", rounds)
            tally.show()


ATTACKS = {
    "malformed": malformed,
    "dtpull": dtpull,
    "selector-bomb": selector_bomb,
    "frame-bomb": frame_bomb,
    "stall": stall,
}


async def main_async(args: argparse.Namespace) -> None:
    async with anyio.create_task_group() as tg:
        async def stop_on_stdin() -> None:
            await _until_stdin_closes()
            tg.cancel_scope.cancel()

        tg.start_soon(stop_on_stdin)
        if args.kind == "half-open":
            await half_open(args)
            return
        key = load_or_create_identity(args.home)
        async with open_host(key, (LOOPBACK,)) as host:
            peer = libp2p_id(await connect(host, args.addr))
            await ATTACKS[args.kind](args, host, peer, tg)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=[*ATTACKS, "half-open"])
    parser.add_argument("--home", required=True)
    parser.add_argument("--addr", required=True)
    parser.add_argument("--cid", default=None)
    parser.add_argument("--count", type=int, default=16)
    parser.add_argument("--source", default="127.0.0.2",
                        help="local address the half-open connections come from")
    args = parser.parse_args()
    anyio.run(main_async, args, backend="trio")


if __name__ == "__main__":
    main()

