"""The Manager's boundary against hostile input (issue 9), in one process.

The peer here is the test itself, feeding the Manager what a transport
would hand it (the transport-facing callbacks), so each input is exactly
what a hostile peer could make the layer below deliver. Every refused input
must end in a refusal (counted, answered where the protocol answers), never
an exception out of the Manager, never a channel or a stored row for it.
"""

from __future__ import annotations

from dataclasses import replace

import anyio
import pytest
from _support import (
    ALL,
    DEADLINE,
    FAST,
    LabelVoucher,
    ScriptedValidator,
    harness,
    make_dag,
    quiesce,
)

from datatransfer.ipld import dagcbor
from datatransfer.ipld.cid import CID
from datatransfer.messages import (
    MAX_VALUE_DEPTH,
    InvalidMessage,
    MessageType,
    TransferRequest,
    TransferResponse,
    decode_message,
    to_node,
)
from datatransfer.messages.build import new_request, restart_request
from datatransfer.store import SqliteChannelStore, StoreError
from datatransfer.types import ChannelID, PeerID
from statemachine import Status as S

pytestmark = pytest.mark.anyio

STRANGER = PeerID(b"\x00\x08stranger")


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request):
    return request.param


def serving(validator: ScriptedValidator | None = None):
    def setup(manager) -> None:
        manager.register_voucher_type(LabelVoucher, validator or ScriptedValidator())
    return setup


def request(xfer: int, root: CID, *, pull: bool, selector=ALL, label="ok") -> TransferRequest:
    return new_request(xfer, base_cid=root, selector=selector, voucher_type=LabelVoucher.type_id,
                       voucher=LabelVoucher(label).to_node(), pull=pull)


class Spy:
    """Records what a Manager asks of its transport (sent messages, data
    requests opened), passing calls on."""

    def __init__(self, transport) -> None:
        self.sent: list = []
        self.opened: list = []
        real_send, real_open = transport.send_message, transport.open_channel

        async def send_message(peer, message):
            self.sent.append((peer, message))
            try:
                await real_send(peer, message)
            except Exception:  # noqa: BLE001 - the stranger is not on the network
                pass

        async def open_channel(*args, **kwargs):
            self.opened.append(args)
            await real_open(*args, **kwargs)

        transport.send_message = send_message
        transport.open_channel = open_channel


BAD_SELECTORS = [5, "all", {"zz": {}}, {"R": {"l": {"depth": -1}, ":>": {"@": {}}}}]


@pytest.mark.parametrize("selector", BAD_SELECTORS, ids=["int", "str", "unknown", "negative"])
@pytest.mark.parametrize("pull", [False, True], ids=["push", "pull"])
async def test_a_new_request_with_a_bad_selector_is_rejected_before_any_channel(selector, pull):
    validator = ScriptedValidator()
    async with harness() as h:
        b = await h.node("b", setup=serving(validator))
        spy = Spy(b.manager.transport)
        root = CID.of(b"x", codec=0x55)
        bad = request(7, root, pull=pull, selector=selector)
        await b.manager.transport_events.on_message(STRANGER, bad)
        if pull:  # (a pull also comes inside a data request)
            decision = await b.manager.transport_events.on_request_received(
                ChannelID(STRANGER, b.peer, 8), STRANGER, replace(bad, transfer_id=8))
            assert not decision.accept
        assert validator.calls == []  # no validator saw it
        assert b.manager.channels() == {}
        assert list(b.manager.store.all()) == []
        assert spy.opened == []
        # answered with a rejection where the protocol answers (the message protocol)
        (peer, answer), *_ = spy.sent
        assert peer == STRANGER and isinstance(answer, TransferResponse)
        assert not answer.accepted and answer.transfer_id == 7
        assert b.manager.refusals.counts["malformed-request"] >= 1


async def test_a_pull_on_the_message_protocol_is_answered_and_never_served_back():
    async with harness() as h:
        b = await h.node("b", setup=serving())
        spy = Spy(b.manager.transport)
        root = CID.of(b"the stranger's block", codec=0x55)  # b does not hold it
        await b.manager.transport_events.on_message(STRANGER, request(3, root, pull=True))
        # accepted as go-data-transfer accepts it (the validator approved),
        # answered on the message protocol...
        (peer, answer), = spy.sent
        assert peer == STRANGER and answer.type == MessageType.New and answer.accepted
        # ...and no data request opened back to the stranger: the node would
        # fetch and store whatever it names
        assert spy.opened == []
        assert not b.blockstore.has(root)


async def test_a_push_request_inside_a_data_request_is_refused():
    async with harness() as h:
        b = await h.node("b", setup=serving())
        root, _, _ = make_dag(b.blockstore, leaves=2)
        chid = ChannelID(STRANGER, b.peer, 1)
        decision = await b.manager.transport_events.on_request_received(chid, STRANGER,
                                                       request(1, root, pull=False))
        assert not decision.accept
        assert b.manager.channels() == {}


async def test_a_data_request_must_name_the_validated_root_and_selector():
    async with harness() as h:
        b = await h.node("b", setup=serving())
        root, _, _ = make_dag(b.blockstore, leaves=2)
        other, _, _ = make_dag(b.blockstore, leaves=3, seed=9)
        new = request(1, root, pull=True)
        # the data request asks for another root than its message
        d1 = await b.manager.transport_events.on_request_received(ChannelID(STRANGER, b.peer, 1), STRANGER, new,
                                                 other, ALL)
        # or walks another selector
        sel = {"a": {">": {".": {}}}}
        d2 = await b.manager.transport_events.on_request_received(ChannelID(STRANGER, b.peer, 2), STRANGER,
                                                 replace(new, transfer_id=2), root, sel)
        assert not d1.accept and not d2.accept
        assert b.manager.channels() == {}
        # the same, consistent, is served
        d3 = await b.manager.transport_events.on_request_received(ChannelID(STRANGER, b.peer, 3), STRANGER,
                                                 replace(new, transfer_id=3), root, ALL)
        assert d3.accept
        # and a later data request for that channel (a Go requester's resume)
        # must name it again
        update = TransferRequest(type=MessageType.Update, transfer_id=3, paused=False)
        d4 = await b.manager.transport_events.on_request_received(ChannelID(STRANGER, b.peer, 3), STRANGER,
                                                 update, other, ALL)
        assert not d4.accept
        assert b.manager.refusals.counts["protocol"] >= 3


def test_a_voucher_nested_past_the_limit_is_refused_whole_on_the_wire():
    root = CID.of(b"x", codec=0x55)
    deep = 1
    for _ in range(MAX_VALUE_DEPTH + 1):
        deep = [deep]
    node = to_node(request(1, root, pull=False))
    node["Request"]["Vouch"] = deep
    with pytest.raises(InvalidMessage, match="nests deeper than"):
        decode_message(dagcbor.encode(node))
    node["Request"]["Vouch"] = deep[0]  # at the limit: fine
    assert decode_message(dagcbor.encode(node)).voucher == deep[0]


async def test_unknown_channels_and_illegal_events_are_refused_and_counted():
    async with harness() as h:
        b = await h.node("b", setup=serving())
        for mtype in (MessageType.Update, MessageType.Cancel, MessageType.Voucher):
            await b.manager.transport_events.on_message(STRANGER, TransferRequest(
                type=mtype, transfer_id=99, voucher_type="t" if mtype == MessageType.Voucher
                else "", voucher=None))
        await b.manager.transport_events.on_message(STRANGER, TransferResponse(
            type=MessageType.Complete, transfer_id=5, accepted=True))
        chid = ChannelID(STRANGER, b.peer, 99)
        for callback in ("on_channel_completed", "on_disconnected"):
            await getattr(b.manager.transport_events, callback)(chid, "whatever")
        assert b.manager.refusals.counts["unknown-channel"] >= 4
        assert b.manager.channels() == {}


class FailingStore(SqliteChannelStore):
    """Refuses every save while ``failing`` is set."""

    failing = False

    def save(self, ch, *, record=None):  # type: ignore[override]
        if self.failing:
            raise StoreError("disk full")
        super().save(ch, record=record)


async def test_a_record_the_store_refuses_is_not_applied():
    store = FailingStore()
    async with harness() as h:
        a = await h.node("a", setup=serving())
        b = await h.node("b", setup=serving(ScriptedValidator()), store=store)
        root, _, _ = make_dag(a.blockstore, leaves=2)
        chid = await a.manager.open_push_channel(b.peer, LabelVoucher("pause"), root, ALL)
        with anyio.fail_after(DEADLINE):
            while b.manager.channel_status(chid) != S.ResponderPaused:
                await anyio.sleep(0.005)
        before = b.manager.channel_state(chid)
        stored = store.load(chid).record
        store.failing = True
        with pytest.raises(StoreError):
            await b.manager.close_channel(chid)
        after = b.manager.channel_state(chid)
        assert after.status == before.status == S.ResponderPaused
        assert after.message == before.message
        assert store.load(chid).record == stored
        store.failing = False
        await b.manager.close_channel(chid)
        assert (await b.manager.wait(chid, timeout=DEADLINE)).status == S.Cancelled


async def test_a_request_waiting_for_a_valid_voucher_is_not_stored_until_accepted():
    validator = ScriptedValidator()
    async with harness() as h:
        a = await h.node("a", setup=serving())
        b = await h.node("b", setup=serving(validator))
        root, _, _ = make_dag(b.blockstore, leaves=2)
        chid = await a.manager.open_pull_channel(b.peer, LabelVoucher("retry"), root, ALL)
        with anyio.fail_after(DEADLINE):
            while chid not in b.manager.in_progress_channels():
                await anyio.sleep(0.005)
        await quiesce(0.1)
        assert b.manager.store.load(chid) is None  # in memory only
        await a.manager.send_voucher(chid, LabelVoucher("ok"))
        assert (await a.manager.wait(chid, timeout=DEADLINE)).status == S.Completed
        assert b.manager.store.load(chid) is not None  # validated: stored


async def test_ended_channels_leave_memory_and_stay_queryable_from_the_store():
    config = replace(FAST, final_linger=0.05)
    async with harness(config) as h:
        a = await h.node("a", setup=serving())
        b = await h.node("b", setup=serving())
        root, _, _ = make_dag(b.blockstore, leaves=3)
        chid = await a.manager.open_pull_channel(b.peer, LabelVoucher("ok"), root, ALL)
        assert (await a.manager.wait(chid, timeout=DEADLINE)).status == S.Completed
        with anyio.fail_after(DEADLINE):
            while chid in b.manager.core.channels or chid in a.manager.core.channels:
                await anyio.sleep(0.01)
        for node in (a, b):
            assert node.manager.channel_status(chid) == S.Completed
            assert node.manager.channel_state(chid).status == S.Completed
            assert chid in node.manager.channels()
            assert chid not in node.manager.in_progress_channels()
            assert (await node.manager.wait(chid, timeout=DEADLINE)).status == S.Completed
        # a restart for it (the initiator lost the end) brings it back and is
        # answered as for any completed channel
        again = restart_request(chid.id, base_cid=root, selector=ALL,
                                voucher_type=LabelVoucher.type_id,
                                voucher=LabelVoucher("ok").to_node(), pull=True)
        decision = await b.manager.transport_events.on_request_received(chid, a.peer, again, root, ALL)
        assert decision.message is not None and decision.message.type == MessageType.Complete
        assert chid in b.manager.core.channels


async def test_a_node_restarted_on_a_store_of_ended_channels_does_not_load_them():
    store = SqliteChannelStore()
    async with harness() as h:
        a = await h.node("a", setup=serving())
        b = await h.node("b", setup=serving(), store=store)
        root, _, _ = make_dag(b.blockstore, leaves=2)
        done = [await a.manager.open_pull_channel(b.peer, LabelVoucher("ok"), root, ALL)
                for _ in range(3)]
        for chid in done:
            assert (await a.manager.wait(chid, timeout=DEADLINE)).status == S.Completed
    async with harness() as h:
        b2 = await h.node("b", setup=serving(), store=store)
        assert b2.manager.core.channels == {}  # memory holds live channels only
        assert set(done) <= set(b2.manager.channels())


async def test_a_local_failure_does_not_dial_a_peer_that_is_gone():
    config = replace(FAST, no_progress_timeout=0.2, finalization_timeout=0.2)
    async with harness(config) as h:
        a = await h.node("a", setup=serving())
        b = await h.node("b", setup=serving(ScriptedValidator()))
        root, _, _ = make_dag(b.blockstore, leaves=2)
        chid = await a.manager.open_pull_channel(b.peer, LabelVoucher("pause"), root, ALL)
        with anyio.fail_after(DEADLINE):
            while b.manager.channel_status(chid) != S.ResponderPaused:
                await anyio.sleep(0.005)
        spy = Spy(b.manager.transport)
        b.manager.transport.connected = lambda peer: False  # the peer went away
        h.net.disconnect(a.peer, b.peer)
        # b's own watchdog would fail a paused channel only after the pause
        # timeout; the initiator's cancel never arrives: fail it as a timeout does
        await b.manager._run(b.manager.core._fail_here(b.manager.core.channels[chid],
                                                       "timed out (test)"))
        assert (await b.manager.wait(chid, timeout=DEADLINE)).status == S.Failed
        await quiesce(0.1)
        assert spy.sent == []  # not told: no dial for a peer that is gone
