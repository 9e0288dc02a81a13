"""Failures a node finds on its own, told to the peer; requests paused
before they were accepted; registering voucher types before a Node serves.

Over the in-memory network (Managers from :func:`_support.harness`), except
the last test, which runs two :class:`datatransfer.node.Node` over libp2p.
Timeouts a test does not exercise are long or off, so a channel that ends
within a test's bound ended through the path under test.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import anyio
import pytest
from _support import (
    ALL,
    DEADLINE,
    FAST,
    LabelVoucher,
    NoteResult,
    ScriptedValidator,
    harness,
    make_dag,
    quiesce,
)

from datatransfer.config import ManagerConfig
from datatransfer.errors import Unsupported
from datatransfer.manager import Manager
from datatransfer.messages import MessageType, TransferRequest, TransferResponse
from statemachine import Status as S

pytestmark = pytest.mark.anyio

#: No timeout fires unless a test sets one.
QUIET = replace(FAST, accept_timeout=None, no_progress_timeout=None,
                finalization_timeout=None, peer_pause_timeout=None)


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return request.param


def validating(manager: Manager) -> None:
    manager.register_voucher_type(LabelVoucher, ScriptedValidator())


def is_cancel(message: Any) -> bool:
    return (isinstance(message, TransferRequest | TransferResponse)
            and message.type == MessageType.Cancel)


# ---------------------------------------------------------------- local failures


async def test_responder_giving_up_on_a_paused_initiator_announces_it() -> None:
    """The initiator's application paused a pull (its own pause: no timeout
    applies to it) and the responder gave up waiting for it to resume.
    Unannounced, the initiator would stay paused forever; told with a
    cancel, it ends Cancelled at once."""
    async with harness(QUIET) as h:
        a = await h.node("a", setup=validating)
        b = await h.node("b", setup=validating,
                         config=replace(QUIET, peer_pause_timeout=0.2))
        root, _, _ = make_dag(b.blockstore, leaves=4)
        chid = await a.manager.open_pull_channel(b.peer, LabelVoucher("pause"), root, ALL)
        await a.manager.wait(chid, {S.ResponderPaused}, timeout=DEADLINE)
        await a.manager.pause_channel(chid)
        assert a.manager.channel_status(chid) is S.BothPaused
        sb = await b.manager.wait(chid, timeout=DEADLINE)
        assert (sb.status, sb.message) == (
            S.Failed, "the other peer paused the channel and did not resume it within 0.2 s")
        sa = await a.manager.wait(chid, timeout=DEADLINE)
        assert (sa.status, sa.message) == (S.Cancelled, "cancelled by the other peer")


async def test_a_paused_initiator_is_not_failed_for_lack_of_progress() -> None:
    """A pause is the initiator's application's choice (a client deciding
    whether to pay, say): the responder's no-progress timeout must not end
    the channel while it lasts. Go's channel monitor stops watching a paused
    channel; a Go client pausing for minutes must find its channel alive."""
    async with harness(QUIET) as h:
        a = await h.node("a", setup=validating)
        b = await h.node("b", setup=validating,
                         config=replace(QUIET, no_progress_timeout=0.1))
        root, size, _ = make_dag(b.blockstore, leaves=4)
        chid = await a.manager.open_pull_channel(b.peer, LabelVoucher("pause"), root, ALL)
        await a.manager.wait(chid, {S.ResponderPaused}, timeout=DEADLINE)
        await a.manager.pause_channel(chid)
        await b.manager.wait(chid, {S.BothPaused}, timeout=DEADLINE)
        # many no-progress periods pass on the responder's clock
        await quiesce(1.0)
        assert b.manager.channel_status(chid) is S.BothPaused
        await a.manager.resume_channel(chid)
        await b.manager.wait(chid, {S.ResponderPaused}, timeout=DEADLINE)
        assert b.manager.channel_state(chid).message != "the other peer stopped answering"


async def test_a_paused_initiator_that_is_gone_is_not_waited_for() -> None:
    """The exemption lasts while the initiator is connected: once the
    connection is lost (an initiator that comes back restarts the channel),
    the responder's no-progress timeout applies again, so a client that
    paused and vanished -- its cancel lost with the connection -- does not
    hold the channel for the whole peer_pause_timeout."""
    async with harness(QUIET) as h:
        a = await h.node("a", setup=validating)
        b = await h.node("b", setup=validating,
                         config=replace(QUIET, no_progress_timeout=0.2))
        root, _, _ = make_dag(b.blockstore, leaves=4)
        chid = await a.manager.open_pull_channel(b.peer, LabelVoucher("pause"), root, ALL)
        await a.manager.wait(chid, {S.ResponderPaused}, timeout=DEADLINE)
        await a.manager.pause_channel(chid)
        await b.manager.wait(chid, {S.BothPaused}, timeout=DEADLINE)
        h.net.disconnect(a.peer, b.peer)
        sb = await b.manager.wait(chid, timeout=DEADLINE)
        assert (sb.status, sb.message) == (
            S.Failed, "no progress for 0.2 s: the other peer stopped answering")


async def test_unreachable_peer_does_not_hold_the_watchdog() -> None:
    """The announcement of a local failure hangs (the peer cannot be
    reached; the send is bounded only by the long send_timeout). The
    failure is recorded at once, and the watchdog goes on failing other
    channels meanwhile; leaving the Manager cancels the pending send."""
    config = replace(QUIET, accept_timeout=0.1, send_timeout=60)
    async with harness(config) as h:
        a = await h.node("a", setup=validating)
        b = await h.node("b", setup=validating)
        h.net.drop(lambda packet: packet.dst == b.peer)  # b never hears of it
        hanging: list[Any] = []
        send = a.manager.transport.send_message

        async def send_message(peer: Any, message: Any) -> None:
            if is_cancel(message):
                hanging.append(message)
                await anyio.sleep_forever()
            await send(peer, message)

        a.manager.transport.send_message = send_message  # type: ignore[method-assign]
        root, _, _ = make_dag(a.blockstore, leaves=2)
        first = await a.manager.open_push_channel(b.peer, LabelVoucher(), root, ALL)
        s1 = await a.manager.wait(first, timeout=DEADLINE)
        assert s1.status is S.Failed
        assert s1.message == "timed out after 0.1 s waiting for the request to be accepted"
        with anyio.fail_after(DEADLINE):
            while not hanging:
                await anyio.sleep(0.005)
        second = await a.manager.open_push_channel(b.peer, LabelVoucher(), root, ALL)
        s2 = await a.manager.wait(second, timeout=DEADLINE)
        assert s2.status is S.Failed and s2.message == s1.message
        with anyio.fail_after(DEADLINE):
            while len(hanging) < 2:
                await anyio.sleep(0.005)
        assert [m.transfer_id for m in hanging] == [first.id, second.id]
        assert a.manager.store.load(first).record.status is S.Failed


# ---------------------------------------------------------------- pause before accept


@pytest.mark.parametrize("pull", [True, False], ids=["pull", "push"])
async def test_initiator_pausing_a_request_awaiting_a_voucher_fails_it_at_once(
        pull: bool) -> None:
    """The responder's validator asked for another voucher (RetryValidation),
    so the request waits in Requested; the initiator's application paused it.
    Go's table (ours equals it) accepts a request only from Requested, so a
    voucher passing validation later could never be accepted: the channel
    used to wait in InitiatorPaused / BothPaused until a timeout (forever on
    the initiator, whose own pause exempts it). The responder now fails it
    at once, saying why, and rejects it to the initiator."""
    async with harness(QUIET) as h:
        a = await h.node("a", setup=validating)
        b = await h.node("b", setup=validating)
        source = b if pull else a
        root, _, _ = make_dag(source.blockstore, leaves=4)
        open_channel = a.manager.open_pull_channel if pull else a.manager.open_push_channel
        chid = await open_channel(b.peer, LabelVoucher("retry"), root, ALL)
        await a.manager.wait(chid, {S.ResponderPaused}, timeout=DEADLINE)
        assert b.manager.channel_status(chid) is S.Requested
        await a.manager.pause_channel(chid)
        sb = await b.manager.wait(chid, timeout=DEADLINE)
        assert sb.status is S.Failed
        assert sb.message == (
            "the initiator paused the request before it was accepted (it waited for a "
            "voucher that passes validation); a paused request cannot be accepted")
        sa = await a.manager.wait(chid, timeout=DEADLINE)
        assert (sa.status, sa.message) == (S.Failed, "rejected by the responder")
        assert "Accept" not in b.recorder.codes(chid)
        assert sa.received == 0 and sb.received == 0


async def test_responder_cannot_pause_a_request_awaiting_a_voucher() -> None:
    """The responder's own application cannot pause a request it has not
    accepted (a typed error, nothing changes); the voucher that passes
    validation then starts the transfer as usual."""
    async with harness(QUIET) as h:
        a = await h.node("a", setup=validating)
        b = await h.node("b", setup=validating)
        root, size, _ = make_dag(b.blockstore, leaves=4)
        chid = await a.manager.open_pull_channel(b.peer, LabelVoucher("retry"), root, ALL)
        await a.manager.wait(chid, {S.ResponderPaused}, timeout=DEADLINE)
        with pytest.raises(Unsupported, match="before accepting it"):
            await b.manager.pause_channel(chid)
        assert b.manager.channel_status(chid) is S.Requested
        await a.manager.send_voucher(chid, LabelVoucher("ok"))
        sa = await a.manager.wait(chid, timeout=DEADLINE)
        sb = await b.manager.wait(chid, timeout=DEADLINE)
        assert (sa.status, sb.status) == (S.Completed, S.Completed)
        assert sa.received == size
        assert b.manager.channel_state(chid).last_voucher_result == NoteResult("accepted")


# ---------------------------------------------------------------- Node setup


def test_node_setup_registers_custom_vouchers_before_serving(tmp_path: Any) -> None:
    """A Node's ``setup`` registers a custom voucher type and validator on
    the Manager before it serves: a pull carrying that voucher is validated
    by it and completes (without the hook there was no way to register
    before the node started answering)."""
    from datatransfer.node import Node

    calls: list[tuple[str, Any]] = []

    class Recording(ScriptedValidator):
        async def validate_pull(self, is_restart, channel_id, receiver, voucher,  # type: ignore[no-untyped-def]
                                base_cid, selector):
            calls.append(("pull", voucher))
            return await super().validate_pull(is_restart, channel_id, receiver, voucher,
                                               base_cid, selector)

    def server_setup(manager: Manager) -> None:
        calls.append(("setup", manager.channels()))
        manager.register_voucher_result_type(NoteResult)
        manager.register_voucher_type(LabelVoucher, Recording())

    def client_setup(manager: Manager) -> None:
        manager.register_voucher_result_type(NoteResult)

    config = ManagerConfig(accept_timeout=10, no_progress_timeout=10)

    async def main() -> tuple[Any, Any]:
        async with Node(tmp_path / "server", open_validator=None, setup=server_setup,
                        config=config) as server, \
                Node(tmp_path / "client", setup=client_setup, config=config) as client:
            assert server.manager is not None and client.manager is not None
            root, _, _ = make_dag(server.blockstore, leaves=3, leaf_size=100)
            chid = await client.pull(server.addrs()[0], root, ALL, LabelVoucher("ok"))
            state = await client.manager.wait(chid, timeout=DEADLINE)
            return state, server.manager.channel_state(chid)

    client_state, server_state = anyio.run(main, backend="trio")
    assert (client_state.status, server_state.status) == (S.Completed, S.Completed)
    assert client_state.last_voucher_result == NoteResult("accepted")
    assert calls == [("setup", {}), ("pull", LabelVoucher("ok"))]
