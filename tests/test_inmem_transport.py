"""The in-memory network carrying graphsync engines: data flow, decisions,
and every fault the network injects, aimed at the engine's traffic.

A recording fake of ``TransportEvents`` stands in for the Manager; its hooks
return the decisions a test wants (and may act on the network, e.g. cut a link
at block N). Each node is the real graphsync engine with one block per
graphsync message, so a frame of blocks is one block. The data-transfer
messages are real ones (they travel in graphsync extensions); each carries a
label (:func:`msg` for the receiver's, :func:`answer` for the sender's) that
:func:`label` reads back. Every test runs on asyncio and trio.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from _support import DEADLINE

from datatransfer.ipld import dagcbor
from datatransfer.ipld.blockstore import MemoryBlockstore
from datatransfer.ipld.cid import CID, DAG_CBOR, RAW
from datatransfer.ipld.selector import ALL_SELECTOR_NODE, all_selector, blocks
from datatransfer.messages import (
    TransferRequest,
    TransferResponse,
    complete_response,
    new_request,
    restart_existing_channel_request,
    voucher_request,
    voucher_result_response,
)
from datatransfer.types import ChannelID, PeerID
from transport.base import (
    PROCEED,
    Decision,
    PeerUnreachable,
    Transport,
    UnknownTransportChannel,
)
from transport.carrier import EngineCarrier
from transport.graphsync.framing import encode_frame, split_frames
from transport.graphsync.message import GraphsyncMessage, GraphsyncResponse, decode_message
from transport.graphsync.status import ResponseStatus
from transport.inmem import PACKET_KINDS, InMemoryNetwork, InMemoryNode, Packet

R_PEER = PeerID(b"\x00\x04recv")  # the data receiver
S_PEER = PeerID(b"\x00\x04send")  # the data sender
X_PEER = PeerID(b"\x00\x04xtra")
PULL = ChannelID(R_PEER, S_PEER, 1)  # receiver initiates
PUSH = ChannelID(S_PEER, R_PEER, 7)  # sender initiates
TIMEOUT = DEADLINE


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request):
    return request.param


# -- helpers --------------------------------------------------------------------


def msg(text: str, chid: ChannelID = PULL) -> TransferRequest:
    """A data-transfer message labelled ``text`` (a voucher request)."""
    return voucher_request(chid.id, voucher_type="test/label", voucher={"Label": text})


def answer(text: str, chid: ChannelID = PULL) -> TransferResponse:
    """A data-transfer response labelled ``text`` (a voucher result)."""
    return voucher_result_response(chid.id, accepted=True, voucher_result_type="test/label",
                                   voucher_result={"Label": text})


def opening(text: str, root: CID, chid: ChannelID = PULL) -> TransferRequest:
    """A pull's opening request labelled ``text``."""
    return new_request(chid.id, base_cid=root, selector=ALL_SELECTOR_NODE,
                       voucher_type="test/label", voucher={"Label": text}, pull=True)


def label(message: Any) -> str:
    """The label :func:`msg`, :func:`answer` or :func:`opening` put in."""
    node = message.voucher if isinstance(message, TransferRequest) else message.voucher_result
    return node["Label"]


class Recorder:
    """A fake Manager: records every event; ``hooks[name](*args)`` (sync or
    async) decides (None -> PROCEED) or acts."""

    def __init__(self, **hooks: Callable[..., Any]) -> None:
        self.log: list[tuple] = []
        self.hooks = hooks
        self._changed: anyio.Event | None = None

    async def _event(self, name: str, *args: Any) -> Any:
        self.log.append((name, *args))
        if self._changed is not None:
            self._changed.set()
            self._changed = None
        hook = self.hooks.get(name)
        if hook is None:
            return None
        result = hook(*args)
        if inspect.isawaitable(result):
            result = await result
        return result

    def entries(self, name: str, chid: ChannelID | None = None) -> list[tuple]:
        return [e for e in self.log if e[0] == name and (chid is None or e[1] == chid)]

    def names(self, chid: ChannelID | None = None) -> list[str]:
        return [e[0] for e in self.log if chid is None or e[1] == chid]

    def labels(self, name: str) -> list[str]:
        """The labels of the messages these events carried (last argument)."""
        return [label(e[-1]) for e in self.entries(name)]

    async def wait(
        self, name: str, chid: ChannelID | None = None, count: int = 1, timeout: float = 5
    ) -> tuple:
        with anyio.fail_after(timeout):
            while True:
                found = self.entries(name, chid)
                if len(found) >= count:
                    return found[count - 1]
                if self._changed is None:
                    self._changed = anyio.Event()
                await self._changed.wait()

    # TransportEvents
    async def on_message(self, sender, message):
        await self._event("on_message", sender, message)

    async def on_request_received(self, channel_id, sender, message, root=None, selector=None):
        return await self._event("on_request_received", channel_id, sender, message) or PROCEED

    async def on_response_received(self, channel_id, response):
        await self._event("on_response_received", channel_id, response)

    async def on_channel_opened(self, channel_id):
        await self._event("on_channel_opened", channel_id)

    async def on_data_queued(self, channel_id, cid, size, index):
        return await self._event("on_data_queued", channel_id, cid, size, index) or PROCEED

    async def on_data_sent(self, channel_id, cid, size, index):
        await self._event("on_data_sent", channel_id, cid, size, index)

    async def on_data_skipped(self, channel_id, cid, size, index):
        await self._event("on_data_skipped", channel_id, cid, size, index)

    async def on_data_received(self, channel_id, cid, size, index):
        return await self._event("on_data_received", channel_id, cid, size, index) or PROCEED

    async def on_channel_completed(self, channel_id, error):
        await self._event("on_channel_completed", channel_id, error)

    async def on_request_cancelled(self, channel_id, reason):
        await self._event("on_request_cancelled", channel_id, reason)

    async def on_disconnected(self, channel_id, reason):
        await self._event("on_disconnected", channel_id, reason)

    async def on_peer_lost(self, peer, reason, notified):
        pass  # not a channel's event (each node hears it as the other stops)

    async def on_send_data_error(self, channel_id, reason):
        await self._event("on_send_data_error", channel_id, reason)

    async def on_receive_data_error(self, channel_id, reason):
        await self._event("on_receive_data_error", channel_id, reason)


_leaf_ids = itertools.count()


def build_dag(store: MemoryBlockstore, width: int = 3, depth: int = 2, leaf_size: int = 300) -> CID:
    """A tree of dag-cbor nodes with raw leaves; ``1 + w + ... + w**depth`` blocks."""

    def make(level: int) -> CID:
        n = next(_leaf_ids)
        if level == depth:
            data = (f"leaf {n} ".encode() * leaf_size)[: leaf_size + n % 7]
            cid = CID.of(data, codec=RAW)
        else:
            links = [make(level + 1) for _ in range(width)]
            data = dagcbor.encode({"name": f"node {n}", "links": links})
            cid = CID.of(data, codec=DAG_CBOR)
        store.put(cid, data)
        return cid

    return make(0)


def traversal(store: MemoryBlockstore, root: CID, selector: Any = ALL_SELECTOR_NODE):
    """(cid, data) of every block the selector loads, in order."""
    return list(blocks(root, selector, store.get))


def indices(events: Recorder, name: str, chid: ChannelID) -> list[int]:
    return [e[4] for e in events.entries(name, chid)]


class Pair:
    """A sender S holding a DAG and an empty receiver R on one network; every
    packet the network accepts is logged in :attr:`wire`."""

    def __init__(self, *, skip_held: bool = True, **dag: int) -> None:
        self.net = InMemoryNetwork()
        self.wire: list[Packet] = []
        self.net.drop(lambda p: self.wire.append(p) and False)  # sees all, drops none
        self.s_store = MemoryBlockstore()
        self.r_store = MemoryBlockstore()
        self.root = build_dag(self.s_store, **dag)
        self.order = traversal(self.s_store, self.root)
        self.S = self.net.transport(S_PEER, self.s_store, max_block_bytes=1)
        self.R = self.net.transport(R_PEER, self.r_store, max_block_bytes=1, skip_held=skip_held)
        self.s_ev = Recorder()
        self.r_ev = Recorder()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[anyio.abc.TaskGroup]:
        with anyio.fail_after(TIMEOUT):
            async with anyio.create_task_group() as tg:
                await tg.start(self.S.serve, self.s_ev)
                await tg.start(self.R.serve, self.r_ev)
                yield tg
                tg.cancel_scope.cancel()

    async def pull(self, chid: ChannelID = PULL, skip: int = 0, text: str = "pull") -> None:
        await self.R.open_channel(S_PEER, chid, self.root, ALL_SELECTOR_NODE,
                                  opening(text, self.root, chid), skip)

    async def completed(self, chid: ChannelID = PULL) -> None:
        assert (await self.r_ev.wait("on_channel_completed", chid))[2] is None
        assert (await self.s_ev.wait("on_channel_completed", chid))[2] is None

    def assert_received_all(self, chid: ChannelID = PULL, first: int = 1) -> None:
        expected = list(enumerate(self.order, start=1))[first - 1 :]
        got = [(e[4], (e[2], e[3])) for e in self.r_ev.entries("on_data_received", chid)]
        assert got == [(i, (cid, len(data))) for i, (cid, data) in expected]
        for cid, data in self.order:
            assert self.r_store.get(cid) == data

    async def settle(self) -> None:
        """Wait until both nodes hold no per-channel state, lane or inbox."""
        with anyio.fail_after(DEADLINE):
            while not (self.S.is_idle() and self.R.is_idle()):
                await anyio.sleep(0.001)
        for node in (self.S, self.R):
            assert not any(node.resources().values()), node.resources()

    async def quiet(self, seconds: float = 0.05) -> None:
        """Let the network run, then check nothing moved meanwhile."""
        await anyio.sleep(seconds / 2)
        before = dict(self.net.stats.sent)
        await anyio.sleep(seconds / 2)
        assert dict(self.net.stats.sent) == before

    def sent_blocks(self) -> list[int]:
        """Indices of the blocks whose data S sent, in order."""
        return [i for p in self.wire if p.src == S_PEER for i in p.indices]


def block_at(index: int) -> Callable[[Packet], bool]:
    """The frame carrying block ``index`` of the sender's walk."""
    return lambda p: p.kind == "blocks" and index in p.indices


async def request_ended(node: InMemoryNode) -> None:
    """Until ``node`` moves no data any more: its request was cancelled by
    the receiver (go-data-transfer's graphsync transport tells its Manager
    nothing of that), or it finished first."""
    with anyio.fail_after(DEADLINE):
        while node.active_channels:
            await anyio.sleep(0.001)


async def refused(p: Pair, got: int, wanted: int) -> None:
    """Until the receiver refused block ``got`` where its traversal wanted
    block ``wanted`` (a receive error) and the sender's request ended."""
    entry = await p.r_ev.wait("on_receive_data_error", PULL)
    unexpected, expected = p.order[got - 1][0], p.order[wanted - 1][0]
    assert entry[2] == f"unexpected block {unexpected} (expected {expected} at index {wanted})"
    await request_ended(p.S)  # the receiver cancelled the request (or it finished)


def hold_sender_until_cancelled(p: Pair, at: int) -> None:
    """The sender queues block ``at`` (not the last) only once the receiver
    sent its cancel, so that it takes the cancel before it can finish
    (nothing paces the sender)."""

    async def hold(chid, cid, size, index):
        if index == at:
            with anyio.fail_after(DEADLINE):
                while not p.net.stats.sent["cancel"]:
                    await anyio.sleep(0.001)

    p.s_ev.hooks["on_data_queued"] = hold


async def wait_parked(node: InMemoryNode) -> None:
    """Until ``node``'s engine holds a channel whose requester cancelled
    (go-data-transfer's graphsync transport tells its Manager nothing)."""
    with anyio.fail_after(DEADLINE):
        while node.resources()["parked"] != 1:
            await anyio.sleep(0.001)


# -- flows ------------------------------------------------------------------------


def test_is_a_transport():
    net = InMemoryNetwork()
    t = net.transport(R_PEER, MemoryBlockstore())
    assert isinstance(t, Transport) and isinstance(t, EngineCarrier)
    assert isinstance(t, InMemoryNode) and t.network is net
    assert t.peer_id == R_PEER and t.supports_pause
    with pytest.raises(ValueError):
        net.transport(R_PEER, MemoryBlockstore())


@pytest.mark.anyio
async def test_pull_moves_every_block_in_traversal_order():
    p = Pair()
    p.s_ev.hooks["on_request_received"] = lambda *a: Decision(message=answer("accepted"))
    n = len(p.order)
    assert n == 13
    async with p.running():
        await p.pull()
        await p.completed()
        await p.settle()
    p.assert_received_all()
    # The sender's view: every block queued then sent, same indices and sizes.
    expected = [(i, cid, len(data)) for i, (cid, data) in enumerate(p.order, start=1)]
    for name in ("on_data_queued", "on_data_sent"):
        assert [(e[4], e[2], e[3]) for e in p.s_ev.entries(name, PULL)] == expected
    [(_, chid, sender, message)] = p.s_ev.entries("on_request_received")
    assert (chid, sender, label(message)) == (PULL, R_PEER, "pull")
    r_names = p.r_ev.names(PULL)
    assert r_names[0] == "on_channel_opened"
    assert r_names[1] == "on_response_received"
    assert p.r_ev.labels("on_response_received") == ["accepted"]
    assert r_names[-1] == "on_channel_completed"
    assert p.net.stats.sent["blocks"] == n == p.net.stats.delivered["blocks"]
    # the packets describe what the frames carry
    assert p.sent_blocks() == list(range(1, n + 1))
    assert [c for pk in p.wire for c in pk.cids] == [cid for cid, _ in p.order]
    [request] = [pk for pk in p.wire if pk.kind == "request"]
    assert (request.src, request.channel_id, request.root) == (R_PEER, PULL, p.root)
    assert {pk.channel_id for pk in p.wire} == {PULL}
    assert {pk.request_id for pk in p.wire} == {request.request_id}
    assert p.wire[-1].terminal and p.wire[-1].status is ResponseStatus.COMPLETED_FULL
    assert not p.s_ev.entries("on_receive_data_error") and not p.r_ev.entries("on_disconnected")


@pytest.mark.anyio
async def test_frames_cross_as_the_senders_pieces_yet_read_as_their_bytes():
    """A frame nobody rewrites reaches the receiver as the pieces its sender
    encoded (a block's data of 4 KiB or more a piece of its own): decoded
    and hashed there, but not copied. Its ``payload`` is still the frame's
    bytes for whoever reads it."""
    p = Pair(width=2, depth=1, leaf_size=6000)
    async with p.running():
        await p.pull()
        await p.completed()
        await p.settle()
    p.assert_received_all()
    leaves = [(cid, data) for cid, data in p.order if cid.codec == RAW]
    assert leaves and all(len(data) >= 4096 for _, data in leaves)
    for cid, _ in leaves:  # the very bytes the sender holds: no copy on the way
        assert p.r_store.get(cid) is p.s_store.get(cid)
    for pk in p.wire:
        if pk.kind != "message":
            [body] = split_frames(pk.payload)
            assert encode_frame(decode_message(body)) == pk.payload
            assert [b.cid for b in decode_message(body).blocks] == list(pk.cids)


@pytest.mark.anyio
async def test_push_flow_request_by_message_then_receiver_opens():
    p = Pair(width=4, depth=1)

    async def open_on_push(sender, message):
        # The push request arrives on its own; the receiver opens the data
        # request from inside its callback, its acceptance riding it.
        assert sender == S_PEER and label(message) == "push"
        await p.R.open_channel(S_PEER, PUSH, p.root, all_selector(),
                               answer("accept-push", PUSH))

    p.r_ev.hooks["on_message"] = open_on_push
    async with p.running():
        await p.S.send_message(R_PEER, msg("push", PUSH))
        await p.completed(PUSH)
        await p.settle()
    p.assert_received_all(PUSH)
    [(_, chid, sender, message)] = p.s_ev.entries("on_request_received")
    assert (chid, sender, label(message)) == (PUSH, R_PEER, "accept-push")
    assert p.wire[0].kind == "message" and p.wire[0].channel_id == PUSH


@pytest.mark.anyio
async def test_restart_with_skip_blocks_sends_only_the_rest():
    p = Pair()
    k = 5
    p.r_store.put_many(p.order[:k])
    async with p.running():
        await p.pull(skip=k)
        await p.completed()
        await p.settle()
    p.assert_received_all(first=k + 1)
    assert indices(p.s_ev, "on_data_sent", PULL) == list(range(k + 1, len(p.order) + 1))
    assert p.sent_blocks() == list(range(k + 1, len(p.order) + 1))
    assert p.net.stats.sent["blocks"] == len(p.order) - k
    [request] = [pk for pk in p.wire if pk.kind == "request"]
    assert request.skip_blocks == k
    # the skipped blocks are announced, not sent
    announced = [link for pk in p.wire for link in pk.links if not link.sent]
    assert [(link.index, link.cid) for link in announced] == [
        (i, cid) for i, (cid, _) in enumerate(p.order[:k], start=1)]


@pytest.mark.anyio
async def test_restart_skipping_everything_completes_without_blocks():
    p = Pair(width=2, depth=1)
    p.r_store.put_many(p.order)
    async with p.running():
        await p.pull(skip=len(p.order) + 3)
        await p.completed()
    assert p.net.stats.sent["blocks"] == 0


@pytest.mark.anyio
async def test_restart_without_the_skipped_blocks_locally_is_a_receive_error():
    p = Pair()
    hold_sender_until_cancelled(p, at=5)
    async with p.running():
        await p.pull(skip=2)
        entry = await p.r_ev.wait("on_receive_data_error", PULL)
        assert "local store" in entry[2]
        # the receiver cancels the request; the sender's side hears nothing
        # of it (as go-data-transfer's graphsync transport) and keeps the
        # channel for its owner to clean up
        await wait_parked(p.S)
        assert p.net.stats.delivered["cancel"] == 1
        await p.S.cleanup_channel(PULL)
        await p.settle()
    assert not p.r_ev.entries("on_channel_completed")
    assert not p.s_ev.entries("on_channel_completed")


@pytest.mark.anyio
async def test_selector_node_and_repeated_block():
    # A root linking the same leaf twice loads it twice: indices 1, 2, 3.
    # (skip_held off: the second pull asks again for what the first stored)
    p = Pair(width=1, depth=0, skip_held=False)
    leaf = CID.of(b"shared leaf", codec=RAW)
    p.s_store.put(leaf, b"shared leaf")
    root_data = dagcbor.encode({"a": leaf, "b": leaf})
    root = CID.of(root_data, codec=DAG_CBOR)
    p.s_store.put(root, root_data)
    only_a = {"f": {"f>": {"a": {".": {}}}}}
    async with p.running():
        await p.R.open_channel(S_PEER, PULL, root, ALL_SELECTOR_NODE, opening("all", root))
        await p.completed(PULL)
        assert [e[2] for e in p.r_ev.entries("on_data_received", PULL)] == [root, leaf, leaf]
        assert indices(p.r_ev, "on_data_received", PULL) == [1, 2, 3]
        assert p.sent_blocks() == [1, 2, 3]
        chid2 = ChannelID(R_PEER, S_PEER, 2)
        await p.R.open_channel(S_PEER, chid2, root, only_a, opening("a only", root, chid2))
        await p.completed(chid2)
        assert indices(p.r_ev, "on_data_received", chid2) == [1, 2]
        await p.settle()


@pytest.mark.anyio
async def test_response_carrying_a_request_goes_to_on_message():
    p = Pair(width=1, depth=1)
    req = restart_existing_channel_request(PULL)
    p.s_ev.hooks["on_request_received"] = lambda *a: Decision(message=req)
    async with p.running():
        await p.pull()
        await p.completed()
    assert p.r_ev.entries("on_message") == [("on_message", S_PEER, req)]
    assert not p.r_ev.entries("on_response_received")
    [carrier] = [pk for pk in p.wire if pk.message == req]
    assert carrier.kind == "response" and carrier.channel_id == PULL


# -- decisions: pause, resume, reject, cancel ------------------------------------------


@pytest.mark.anyio
async def test_pause_on_request_until_sender_resumes():
    p = Pair()
    p.s_ev.hooks["on_request_received"] = lambda *a: Decision(message=answer("need-voucher"),
                                                               pause=True)
    async with p.running():
        await p.pull()
        await p.r_ev.wait("on_response_received", PULL)
        await p.quiet()
        assert p.net.stats.sent["blocks"] == 0
        # The receiver's resume only releases its own hold.
        await p.R.resume_channel(PULL)
        await p.quiet()
        assert p.net.stats.sent["blocks"] == 0
        await p.S.resume_channel(PULL, message=answer("voucher-ok"))
        await p.completed()
        await p.settle()
    p.assert_received_all()
    names = p.r_ev.names()
    # The message sent with the resume arrives before the first block.
    assert p.r_ev.labels("on_response_received") == ["need-voucher", "voucher-ok"]
    assert len(names) - names[::-1].index("on_response_received") - 1 < names.index(
        "on_data_received")


@pytest.mark.anyio
async def test_pause_at_queued_block_then_sender_resumes():
    p = Pair()
    p.s_ev.hooks["on_data_queued"] = lambda chid, cid, size, index: (
        Decision(message=answer("pay-me"), pause=True) if index == 4 else None
    )
    async with p.running():
        await p.pull()
        await p.r_ev.wait("on_response_received", PULL)
        await p.quiet()
        assert indices(p.r_ev, "on_data_received", PULL) == [1, 2, 3]
        # The message was sent before block 4 and block 4 is held.
        assert p.r_ev.labels("on_response_received") == ["pay-me"]
        assert p.wire[-1].status is ResponseStatus.PAUSED
        with pytest.raises(UnknownTransportChannel):
            await p.S.resume_channel(ChannelID(R_PEER, S_PEER, 99))
        await p.S.resume_channel(PULL)
        await p.completed()
        await p.settle()
    p.assert_received_all()
    # Block 4 was decided once, not asked again on resume.
    assert indices(p.s_ev, "on_data_queued", PULL) == list(range(1, len(p.order) + 1))


@pytest.mark.anyio
async def test_receiver_pauses_by_decision_and_resumes_with_a_message():
    p = Pair()
    p.r_ev.hooks["on_data_received"] = lambda chid, cid, size, index: (
        Decision(message=msg("voucher"), pause=True) if index == 2 else None
    )
    async with p.running():
        await p.pull()
        await p.s_ev.wait("on_message")
        await p.quiet()
        # Blocks in flight when the pause arrived still land; then nothing.
        held = indices(p.r_ev, "on_data_received", PULL)
        assert 2 <= len(held) < len(p.order)
        assert held == list(range(1, len(held) + 1))
        assert not p.r_ev.entries("on_channel_completed")
        # The receiver paused as a go-graphsync requester does: it cancelled.
        assert [pk.kind for pk in p.wire if pk.src == R_PEER][-2:] == ["update", "cancel"]
        # The sender's own resume does not lift the receiver's hold.
        await p.S.resume_channel(PULL)
        await p.quiet()
        assert indices(p.r_ev, "on_data_received", PULL) == held
        # The receiver resumes by asking again: the same request, the message in it.
        await p.R.resume_channel(PULL, message=msg("voucher-2"))
        await p.completed()
        await p.settle()
    p.assert_received_all()
    assert p.s_ev.labels("on_message") == ["voucher"]
    first, again = p.s_ev.entries("on_request_received")
    assert (label(first[3]), label(again[3])) == ("pull", "voucher-2")
    requests = [pk for pk in p.wire if pk.kind == "request"]
    assert [r.request_id for r in requests] == [requests[0].request_id] * 2
    assert requests[1].skip_blocks == len(held)


@pytest.mark.anyio
async def test_explicit_pause_from_either_side():
    p = Pair(width=4, depth=2)

    async def pause_sender(chid, cid, size, index):
        if index == 3:
            await p.S.pause_channel(chid)

    p.s_ev.hooks["on_data_sent"] = pause_sender
    async with p.running():
        await p.pull()
        await p.s_ev.wait("on_data_sent", PULL, count=3)
        await p.quiet()
        assert indices(p.s_ev, "on_data_sent", PULL) == [1, 2, 3]
        # Now the receiver holds too: both must release.
        await p.R.pause_channel(PULL)
        await p.R.pause_channel(PULL)  # twice is fine
        await p.S.resume_channel(PULL)
        await p.quiet()
        assert indices(p.s_ev, "on_data_sent", PULL) == [1, 2, 3]
        await p.R.resume_channel(PULL)
        await p.completed()
        await p.settle()
    p.assert_received_all()
    with pytest.raises(UnknownTransportChannel):
        await p.R.pause_channel(PULL)


@pytest.mark.anyio
async def test_reject():
    p = Pair()
    p.s_ev.hooks["on_request_received"] = lambda *a: Decision(message=answer("no"),
                                                               accept=False)
    async with p.running():
        await p.pull()
        entry = await p.r_ev.wait("on_channel_completed", PULL)
        assert "rejected" in entry[2]
        await p.settle()
    assert p.r_ev.names(PULL) == [
        "on_channel_opened",
        "on_response_received",
        "on_channel_completed",
    ]
    assert p.r_ev.labels("on_response_received") == ["no"]
    assert p.s_ev.names() == ["on_request_received"]
    assert p.net.stats.sent["blocks"] == 0 and len(p.r_store) == 0
    assert p.wire[-1].status is ResponseStatus.REJECTED and "rejected" in p.wire[-1].error


@pytest.mark.anyio
@pytest.mark.parametrize("how", ["close", "decision"])
async def test_cancel_by_receiver(how):
    p = Pair()
    gate = anyio.Event()

    async def at_received(chid, cid, size, index):
        if index == 3:
            if how == "decision":
                return Decision(accept=False)
            await gate.wait()  # the test closes the channel meanwhile
        return None

    p.r_ev.hooks["on_data_received"] = at_received
    hold_sender_until_cancelled(p, at=5)
    async with p.running():
        await p.pull()
        await p.r_ev.wait("on_data_received", PULL, count=3)
        if how == "close":
            await p.R.close_channel(PULL)
            await p.R.close_channel(PULL)  # idempotent
            gate.set()
        # The sender's request ends (a requester's cancel is no event there,
        # as in go-data-transfer's graphsync transport: the channel's own
        # Cancel message ends the channel); its owner cleans up.
        await wait_parked(p.S)
        assert [pk.kind for pk in p.wire if pk.src == R_PEER].count("cancel") == 1
        await p.S.cleanup_channel(PULL)
        await p.settle()
    assert indices(p.r_ev, "on_data_received", PULL) == [1, 2, 3]
    assert not p.r_ev.entries("on_channel_completed")
    assert not p.s_ev.entries("on_channel_completed")
    assert not p.r_ev.entries("on_request_cancelled")
    assert not p.s_ev.entries("on_request_cancelled")


@pytest.mark.anyio
@pytest.mark.parametrize("how", ["close", "decision"])
async def test_cancel_by_sender(how):
    p = Pair()

    async def at_queued(chid, cid, size, index):
        if index == 5:
            if how == "decision":
                return Decision(message=answer("bye"), accept=False)
            await p.S.close_channel(chid)
        return None

    p.s_ev.hooks["on_data_queued"] = at_queued
    async with p.running():
        await p.pull()
        entry = await p.r_ev.wait("on_request_cancelled", PULL)
        assert entry[2]
        await p.settle()
    assert indices(p.r_ev, "on_data_received", PULL) == [1, 2, 3, 4]
    assert indices(p.s_ev, "on_data_sent", PULL) == [1, 2, 3, 4]
    assert not p.r_ev.entries("on_channel_completed")
    assert p.wire[-1].status is ResponseStatus.CANCELLED
    if how == "decision":
        assert p.r_ev.labels("on_response_received")[-1] == "bye"


@pytest.mark.anyio
async def test_missing_block_at_sender_completes_with_error_on_both_sides():
    p = Pair()
    victim = p.order[6][0]
    p.s_store.delete(victim)
    async with p.running():
        await p.pull()
        r_err = (await p.r_ev.wait("on_channel_completed", PULL))[2]
        s_err = (await p.s_ev.wait("on_channel_completed", PULL))[2]
        assert str(victim) in r_err and r_err == s_err
        await p.settle()
    assert indices(p.r_ev, "on_data_received", PULL) == [1, 2, 3, 4, 5, 6]
    assert p.wire[-1].terminal and p.wire[-1].error == s_err


@pytest.mark.anyio
async def test_unknown_channel_and_cleanup():
    p = Pair(width=2, depth=1)
    other = ChannelID(R_PEER, S_PEER, 42)
    async with p.running():
        with pytest.raises(UnknownTransportChannel):
            await p.S.pause_channel(other)
        with pytest.raises(UnknownTransportChannel):
            await p.R.resume_channel(other, message=msg("x"))
        await p.R.close_channel(other)
        await p.R.cleanup_channel(other)
        await p.pull()
        await p.completed()
        await p.R.cleanup_channel(PULL)
        await p.S.cleanup_channel(PULL)
        await p.settle()
        # Cleaning up a live channel cancels it.
        p.s_ev.hooks["on_request_received"] = lambda *a: Decision(pause=True)
        chid = ChannelID(R_PEER, S_PEER, 3)
        await p.pull(chid)
        await p.s_ev.wait("on_request_received", chid)
        assert p.S.active_channels == {chid}
        await p.R.cleanup_channel(chid)
        with anyio.fail_after(DEADLINE):
            while p.S.active_channels:
                await anyio.sleep(0.001)
        await p.S.cleanup_channel(chid)
        await p.settle()
    assert p.wire[-1].kind == "cancel" and p.wire[-1].channel_id == chid


# -- faults -------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_dropped_block_is_detected_and_restart_completes():
    p = Pair()
    p.net.drop(block_at(4), count=1)
    async with p.running():
        await p.pull()
        await refused(p, got=5, wanted=4)
        # Nothing but the three verified blocks was stored.
        assert sorted(p.r_store) == sorted(cid for cid, _ in p.order[:3])
        assert not p.r_ev.entries("on_channel_completed")
        assert p.net.stats.dropped["blocks"] == 1
        # Restart from what the receiver holds.
        held = max(indices(p.r_ev, "on_data_received", PULL))
        assert held == 3
        await p.pull(skip=held)
        await p.completed()
        await p.settle()
    p.assert_received_all()


@pytest.mark.anyio
async def test_last_block_lost_is_detected_on_complete():
    """The frame carrying the last block loses it (and its announcement)
    but still ends the request: the receiver notices the missing block."""
    p = Pair(width=2, depth=1)
    n = len(p.order)

    def without_blocks(pk: Packet) -> Packet:
        end = GraphsyncResponse(pk.request_id, pk.status)
        return p.net.frame(pk.src, pk.dst, GraphsyncMessage(responses=(end,)))

    p.net.tamper(without_blocks, block_at(n))
    async with p.running():
        await p.pull()
        entry = await p.r_ev.wait("on_receive_data_error", PULL)
        assert "never received" in entry[2] and str(p.order[-1][0]) in entry[2]
        await p.s_ev.wait("on_channel_completed", PULL)
        await p.settle()
    assert not p.r_ev.entries("on_channel_completed")
    assert p.net.stats.tampered["blocks"] == 1
    assert indices(p.r_ev, "on_data_received", PULL) == list(range(1, n))


@pytest.mark.anyio
async def test_duplicated_requests_and_ends_are_ignored():
    p = Pair()
    p.net.duplicate(lambda pk: pk.kind == "request" or pk.terminal)
    async with p.running():
        await p.pull()
        await p.completed()
        await p.settle()
    p.assert_received_all()
    assert p.net.stats.duplicated["request"] == 1
    assert p.net.stats.duplicated["blocks"] == 1  # the last block, with the end
    assert len(p.s_ev.entries("on_request_received")) == 1
    assert len(p.r_ev.entries("on_channel_completed")) == 1
    assert len(p.r_ev.entries("on_data_received")) == len(p.order)


@pytest.mark.anyio
async def test_duplicated_block_is_refused_and_not_counted_twice():
    """Graphsync runs over reliable streams: a block arriving again where
    the receiver's traversal asks for the next one is refused (the request
    ends with a receive error), never stored or counted twice."""
    p = Pair()
    p.net.duplicate(block_at(3), count=1)
    async with p.running():
        await p.pull()
        await refused(p, got=3, wanted=4)
        await p.S.cleanup_channel(PULL)
        await p.settle()
    assert p.net.stats.duplicated["blocks"] == 1
    assert indices(p.r_ev, "on_data_received", PULL) == [1, 2, 3]
    assert sorted(p.r_store) == sorted(cid for cid, _ in p.order[:3])


@pytest.mark.anyio
async def test_delay_keeps_link_order():
    p = Pair()
    p.net.delay(0.1, block_at(2))
    arrived: dict[int, float] = {}
    p.r_ev.hooks["on_data_received"] = lambda chid, cid, size, index: arrived.setdefault(
        index, anyio.current_time()) and None
    async with p.running():
        start = anyio.current_time()
        await p.pull()
        await p.completed()
        await p.settle()
    # Block 2 is late, and nothing behind it overtook it (the receiver would
    # have refused a block out of order).
    assert arrived[2] - start >= 0.1
    assert sorted(arrived) == list(range(1, len(p.order) + 1))
    assert all(arrived[i] >= arrived[2] for i in range(3, len(p.order) + 1))
    p.assert_received_all()
    assert p.net.stats.delayed["blocks"] == 1


@pytest.mark.anyio
async def test_corrupted_block_in_flight_is_refused():
    p = Pair()
    p.net.corrupt(block_at(3), count=1)
    bad_cid = p.order[2][0]
    async with p.running():
        await p.pull()
        entry = await p.r_ev.wait("on_receive_data_error", PULL)
        # its data hashes to another CID: the announced block never came
        assert f"block {bad_cid} (index 3) was not sent" in entry[2]
        await request_ended(p.S)
        await p.S.cleanup_channel(PULL)
        await p.settle()
    assert bad_cid not in p.r_store
    assert indices(p.r_ev, "on_data_received", PULL) == [1, 2]
    assert p.net.stats.tampered["blocks"] == 1


@pytest.mark.anyio
async def test_bad_block_in_sender_store_is_refused():
    p = Pair(width=3, depth=1)
    victim, data = p.order[2]
    assert victim.codec == RAW
    p.s_store._blocks[victim] = data + b"tampered"  # bypass verification
    async with p.running():
        await p.pull()
        entry = await p.r_ev.wait("on_receive_data_error", PULL)
        assert f"block {victim} (index 3) was not sent" in entry[2]
        await request_ended(p.S)
        await p.S.cleanup_channel(PULL)
        await p.settle()
    assert victim not in p.r_store


@pytest.mark.anyio
async def test_disconnect_mid_transfer_then_reconnect_and_restart():
    # (skip_held off: blocks past 4 may be stored already; the restart skips exactly 4)
    p = Pair(skip_held=False)

    def cut_at(chid, cid, size, index):
        if index == 4:
            p.net.disconnect(R_PEER, S_PEER)

    p.r_ev.hooks["on_data_received"] = cut_at
    async with p.running():
        await p.pull()
        await p.r_ev.wait("on_disconnected", PULL)
        await p.s_ev.wait("on_disconnected", PULL)
        await p.settle()
        assert not p.net.reachable(R_PEER, S_PEER)
        with pytest.raises(PeerUnreachable):
            await p.R.send_message(S_PEER, msg("hello?"))
        with pytest.raises(PeerUnreachable):
            await p.S.send_message(R_PEER, answer("hello?"))
        with pytest.raises(PeerUnreachable):
            await p.pull(skip=4)
        assert p.R.active_channels == frozenset()
        assert not p.r_ev.entries("on_channel_completed")
        assert indices(p.r_ev, "on_data_received", PULL) == [1, 2, 3, 4]
        # Reconnect and restart from block 4.
        del p.r_ev.hooks["on_data_received"]
        p.net.connect(R_PEER, S_PEER)
        await p.R.send_message(S_PEER, msg("back"))
        await p.s_ev.wait("on_message")
        await p.pull(skip=4, text="restart")
        await p.completed()
        await p.settle()
    p.assert_received_all(first=1)
    assert len(p.r_ev.entries("on_disconnected")) == 1
    assert len(p.s_ev.entries("on_disconnected")) == 1


@pytest.mark.anyio
async def test_partition_and_heal():
    p = Pair()
    x_ev = Recorder()
    X = p.net.transport(X_PEER, MemoryBlockstore())

    def split_at(chid, cid, size, index):
        if index == 2:
            p.net.partition([R_PEER], [S_PEER, X_PEER])

    p.r_ev.hooks["on_data_received"] = split_at
    async with p.running() as tg:
        await tg.start(X.serve, x_ev)
        await p.pull()
        await p.r_ev.wait("on_disconnected", PULL)
        await p.s_ev.wait("on_disconnected", PULL)
        with pytest.raises(PeerUnreachable):
            await p.R.send_message(X_PEER, msg("x"))
        await p.S.send_message(X_PEER, msg("same side"))  # same side still talks
        await x_ev.wait("on_message")
        p.net.heal()
        await p.R.send_message(S_PEER, msg("healed"))
        await p.s_ev.wait("on_message")
        await p.settle()
    assert not p.r_ev.entries("on_channel_completed")


@pytest.mark.anyio
async def test_node_whose_serve_is_cancelled_goes_offline():
    p = Pair(width=4, depth=2)
    gate = anyio.Event()
    s_scope = anyio.CancelScope()
    s_done = anyio.Event()

    async def run_sender(*, task_status=anyio.TASK_STATUS_IGNORED):
        with s_scope:
            await p.S.serve(p.s_ev, task_status=task_status)
        s_done.set()

    async def stall(chid, cid, size, index):
        if index == 5:
            await gate.wait()  # cancelled with the sender's serve

    p.s_ev.hooks["on_data_sent"] = stall
    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as tg:
            await tg.start(run_sender)
            await tg.start(p.R.serve, p.r_ev)
            await p.pull()
            await p.s_ev.wait("on_data_sent", PULL, count=5)
            assert p.net.is_online(S_PEER)
            s_scope.cancel()
            with anyio.fail_after(DEADLINE):
                await s_done.wait()  # serve returns promptly
            assert not p.net.is_online(S_PEER) and not p.S.online
            assert not any(p.S.resources().values()), p.S.resources()
            entry = await p.r_ev.wait("on_disconnected", PULL)
            assert "offline" in entry[2]
            with pytest.raises(PeerUnreachable):
                await p.R.send_message(S_PEER, msg("anyone?"))
            with pytest.raises(PeerUnreachable):
                await p.pull(ChannelID(R_PEER, S_PEER, 2))
            with pytest.raises(PeerUnreachable):
                await p.S.send_message(R_PEER, answer("from the dead"))
            assert p.R.active_channels == frozenset()
            # The node comes back: serving again works.
            p.s_ev.hooks.clear()
            await tg.start(p.S.serve, p.s_ev)
            await p.pull(skip=max(indices(p.r_ev, "on_data_received", PULL)))
            await p.completed()
            tg.cancel_scope.cancel()
    p.assert_received_all()


@pytest.mark.anyio
async def test_no_task_outlives_serve():
    baseline = len(anyio.get_running_tasks())
    p = Pair()
    gate = anyio.Event()

    async def slow(chid, cid, size, index):
        if index == 6:
            await gate.wait()

    p.r_ev.hooks["on_data_received"] = slow
    p.net.delay(0.5, block_at(9))
    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as tg:
            await tg.start(p.S.serve, p.s_ev)
            await tg.start(p.R.serve, p.r_ev)
            await p.pull()
            await p.r_ev.wait("on_data_received", PULL, count=6)
            with anyio.fail_after(DEADLINE):  # block 9 waits on its link
                while not p.R.resources()["inbox"]:
                    await anyio.sleep(0.001)
            assert len(anyio.get_running_tasks()) > baseline + 2
            tg.cancel_scope.cancel()
    assert len(anyio.get_running_tasks()) == baseline
    assert not p.S.online and not p.R.online
    assert p.S.is_idle() and p.R.is_idle()


# -- ordering between channels and messages -------------------------------------------


@pytest.mark.anyio
async def test_slow_callback_on_one_channel_does_not_block_another():
    # (skip_held off: both channels pull the same DAG into one store)
    p = Pair(skip_held=False)
    gate = anyio.Event()
    slow_chid = ChannelID(R_PEER, S_PEER, 10)
    fast_chid = ChannelID(R_PEER, S_PEER, 11)

    async def slow(chid, cid, size, index):
        if chid == slow_chid and index == 2:
            await gate.wait()

    p.r_ev.hooks["on_data_received"] = slow
    async with p.running():
        await p.pull(slow_chid)
        await p.r_ev.wait("on_data_received", slow_chid, count=2)
        await p.pull(fast_chid)
        await p.completed(fast_chid)
        assert not p.r_ev.entries("on_channel_completed", slow_chid)
        gate.set()
        await p.completed(slow_chid)
        await p.settle()
    for chid in (slow_chid, fast_chid):
        assert indices(p.r_ev, "on_data_received", chid) == list(range(1, len(p.order) + 1))


@pytest.mark.anyio
async def test_complete_message_does_not_overtake_earlier_channel_packets():
    p = Pair()

    async def finish(chid, error):
        await p.S.send_message(R_PEER, complete_response(PULL.id, accepted=True))

    async def slow(chid, cid, size, index):
        await anyio.sleep(0.002)

    p.s_ev.hooks["on_channel_completed"] = finish
    p.r_ev.hooks["on_data_received"] = slow
    async with p.running():
        await p.pull()
        await p.r_ev.wait("on_message")
        await p.completed()
        await p.settle()
    names = p.r_ev.names()
    assert names.index("on_channel_completed") < names.index("on_message")
    assert names.count("on_data_received") == len(p.order)


@pytest.mark.anyio
async def test_callbacks_of_a_channel_never_overlap():
    p = Pair()
    busy: set[tuple[str, ChannelID]] = set()
    overlaps = []

    def guard(side):
        async def hook(chid, *rest):
            key = (side, chid)
            if key in busy:
                overlaps.append(key)
            busy.add(key)
            await anyio.sleep(0)
            await anyio.sleep(0)
            busy.discard(key)

        return hook

    for name in ("on_data_queued", "on_data_sent", "on_message"):
        p.s_ev.hooks[name] = guard("S")
    for name in ("on_data_received", "on_response_received", "on_channel_opened"):
        p.r_ev.hooks[name] = guard("R")

    async def voucher_loop(chid, cid, size, index):
        await guard("R")(chid)
        if index % 3 == 0:
            await p.R.resume_channel(chid, message=msg(f"v{index}"))

    p.r_ev.hooks["on_data_received"] = voucher_loop
    p.s_ev.hooks["on_message"] = lambda sender, message: guard("S")(PULL)
    async with p.running():
        await p.pull()
        await p.completed()
        await p.settle()
    assert overlaps == []
    p.assert_received_all()
    assert p.s_ev.labels("on_message") == [f"v{i}" for i in range(3, len(p.order) + 1, 3)]


@pytest.mark.anyio
async def test_open_to_unknown_or_offline_peer_raises_and_leaves_nothing():
    p = Pair()
    async with p.running():
        with pytest.raises(PeerUnreachable):
            await p.R.open_channel(X_PEER, PULL, p.root, ALL_SELECTOR_NODE, opening("m", p.root))
        p.net.transport(X_PEER, MemoryBlockstore())  # registered, never served
        with pytest.raises(PeerUnreachable):
            await p.R.open_channel(X_PEER, PULL, p.root, ALL_SELECTOR_NODE, opening("m", p.root))
        with pytest.raises(PeerUnreachable):
            await p.R.send_message(X_PEER, msg("m"))
        await p.settle()
    # Not serving: every send fails.
    with pytest.raises(PeerUnreachable):
        await p.R.send_message(S_PEER, msg("m"))
    assert p.net.stats.sent == {}


# -- describing the engine's traffic ------------------------------------------------------


@pytest.mark.anyio
async def test_packets_name_each_kind_of_engine_traffic():
    """A pull paused by the receiver, resumed with a message, and a push
    request on its own: each packet's kind and description."""
    p = Pair(width=2, depth=1)
    p.r_ev.hooks["on_data_received"] = lambda chid, cid, size, index: (
        Decision(message=msg("pay"), pause=True) if index == 1 else None)
    hold_sender_until_cancelled(p, at=2)
    async with p.running():
        await p.pull()
        await p.s_ev.wait("on_message")
        await wait_parked(p.S)
        held = max(indices(p.r_ev, "on_data_received", PULL))  # (and blocks in flight)
        await p.R.resume_channel(PULL, message=msg("paid"))
        await p.completed()
        await p.S.send_message(R_PEER, msg("push", PUSH))
        await p.r_ev.wait("on_message")
        await p.settle()
    from_r = [pk for pk in p.wire if pk.src == R_PEER]
    assert [pk.kind for pk in from_r] == ["request", "update", "cancel", "request"]
    from_s = [pk for pk in p.wire if pk.src == S_PEER]
    assert (from_s[0].kind, from_s[-1].kind) == ("blocks", "message")
    update, again = from_r[1], from_r[3]
    assert label(update.message) == "pay" and update.channel_id == PULL
    assert label(again.message) == "paid" and again.request_id == p.wire[0].request_id
    assert again.skip_blocks == held
    # the resumed walk starts at the root again: indices start over, the
    # blocks the receiver holds announced, not sent
    walk = [(link.index, link.sent) for pk in p.wire[p.wire.index(again):]
            for link in pk.links]
    assert walk == [(i, i > held) for i in range(1, len(p.order) + 1)]
    assert p.wire[-1].channel_id == PUSH and p.wire[-1].request_id is None
    assert set(p.net.stats.sent) <= set(PACKET_KINDS)
