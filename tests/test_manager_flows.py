"""Every flow of the seed's interfaces, end to end over the in-memory network.

Each test asserts the exact event sequence and status sequence both sides'
subscribers saw, and the exact byte counters. Per-block events are written
as ``blocks(n, ...)`` so the expectation stays readable.
"""

from __future__ import annotations

import anyio
import pytest
from _support import (
    ALL,
    DEADLINE,
    Gate,
    IgnoreAll,
    LabelVoucher,
    Node,
    NoteResult,
    PayEveryN,
    Payment,
    harness,
    make_dag,
    pay_when_asked,
    quiesce,
    validating,
)

from datatransfer.errors import ChannelNotFound, Unsupported
from datatransfer.ipld.cid import CID
from datatransfer.types import ChannelID
from registry import NOT_HANDLED, Voucher
from statemachine import FINAL_STATUSES, EventCode, IllegalTransition
from statemachine import Status as S

pytestmark = pytest.mark.anyio

RECV = ["DataReceived", "DataReceivedProgress"]
SEND = ["DataQueued", "DataQueuedProgress", "DataSent", "DataSentProgress"]


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request):
    return request.param


def blocks(n: int, per_block: list[str]) -> list[str]:
    return per_block * n


async def settle(*nodes: Node, chid: ChannelID) -> None:
    """Wait until both sides are final, then until subscribers caught up."""
    for node in nodes:
        try:
            await node.manager.wait(chid, timeout=DEADLINE)
        except ChannelNotFound:
            pass
    for node in nodes:
        assert node.manager.events.flush(DEADLINE)


def assert_holds_dag(node: Node, cids: list[CID]) -> None:
    for cid in cids:
        cid.verify(node.blockstore.get(cid))


# ---------------------------------------------------------------- push and pull


async def test_pull_completes_with_exact_events_and_counters():
    async with harness() as h:
        a = await h.node("a", setup=validating())
        b = await h.node("b", setup=validating())
        root, size, order = make_dag(b.blockstore, leaves=8)
        n = len(order)
        chid = await a.manager.open_pull_channel(b.peer, LabelVoucher(), root, ALL)
        await settle(a, b, chid=chid)

        assert a.recorder.codes(chid) == (
            ["Open", "Opened", "NewVoucherResult", "Accept"] + blocks(n, RECV)
            + ["FinishTransfer", "ResponderCompletes", "CleanupComplete"]
        )
        assert a.recorder.statuses(chid) == [
            "Requested", "Ongoing", "TransferFinished", "Completing", "Completed"]
        assert b.recorder.codes(chid) == (
            ["Open", "NewVoucherResult", "Accept"] + blocks(n, SEND)
            + ["Complete", "CleanupComplete"]
        )
        assert b.recorder.statuses(chid) == ["Requested", "Ongoing", "Completing", "Completed"]
        sa, sb = a.manager.channel_state(chid), b.manager.channel_state(chid)
        assert (sa.received, sa.sent, sb.sent, sb.queued, sb.received) == (size, 0, size, size, 0)
        assert (sa.received_index, sb.sent_index) == (n, n)
        assert sa.is_pull and sa.sender == b.peer and sa.recipient == a.peer
        assert sa.last_voucher_result == NoteResult("accepted")
        assert sb.voucher == LabelVoucher("ok")
        assert_holds_dag(a, order)


async def test_push_completes_with_exact_events_and_counters():
    async with harness() as h:
        a = await h.node("a", setup=validating())
        b = await h.node("b", setup=validating())
        root, size, order = make_dag(a.blockstore, leaves=5, seed=3)
        n = len(order)
        chid = await a.manager.open_push_channel(b.peer, LabelVoucher(), root, ALL)
        await settle(a, b, chid=chid)

        assert a.recorder.codes(chid) == (
            ["Open", "NewVoucherResult", "Accept"] + blocks(n, SEND)
            + ["FinishTransfer", "ResponderCompletes", "CleanupComplete"]
        )
        assert a.recorder.statuses(chid) == [
            "Requested", "Ongoing", "TransferFinished", "Completing", "Completed"]
        assert b.recorder.codes(chid) == (
            ["Open", "NewVoucherResult", "Accept", "Opened"] + blocks(n, RECV)
            + ["Complete", "CleanupComplete"]
        )
        assert b.recorder.statuses(chid) == ["Requested", "Ongoing", "Completing", "Completed"]
        assert a.manager.channel_state(chid).sent == size
        assert b.manager.channel_state(chid).received == size
        assert_holds_dag(b, order)


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize("label", ["reject", "boom"])
async def test_rejected_pull_fails_initiator_and_leaves_only_a_record_of_the_refusal(label):
    """The responder holds no channel for a refused request (no event, nothing
    live); the store keeps it Failed with the reason, for ``ls --all``."""
    async with harness() as h:
        a = await h.node("a", setup=validating())
        b = await h.node("b", setup=validating())
        root, _, _ = make_dag(b.blockstore, leaves=2)
        chid = await a.manager.open_pull_channel(b.peer, LabelVoucher(label), root, ALL)
        await settle(a, chid=chid)
        result = ["NewVoucherResult"] if label == "reject" else []
        assert a.recorder.codes(chid) == ["Open", "Opened", *result, "Error", "CleanupComplete"]
        state = a.manager.channel_state(chid)
        assert state.status == S.Failed and state.message == "rejected by the responder"
        kept = b.manager.channel_state(chid)
        why = ("rejected by the validator: not today" if label == "reject"
               else "the validator failed: RuntimeError('validator bug')")
        assert (kept.status, kept.message) == (S.Failed, f"refused: {why}")
        assert b.recorder.codes(chid) == [] and not b.manager.in_progress_channels()
        assert b.manager.refusals.counts["rejected-request"] == 1


async def test_rejected_push_fails_initiator():
    async with harness() as h:
        a = await h.node("a", setup=validating())
        b = await h.node("b", setup=validating())
        root, _, _ = make_dag(a.blockstore, leaves=2)
        chid = await a.manager.open_push_channel(b.peer, LabelVoucher("reject"), root, ALL)
        await settle(a, chid=chid)
        assert a.recorder.codes(chid) == ["Open", "NewVoucherResult", "Error", "CleanupComplete"]
        assert a.manager.channel_state(chid).sent == 0
        kept = b.manager.channel_state(chid)  # the refusal, kept for ls --all
        assert (kept.status, kept.message) == (S.Failed,
                                               "refused: rejected by the validator: not today")
        assert not kept.is_pull and kept.recipient == b.peer


async def test_unknown_voucher_type_is_rejected():
    class Stranger(Voucher):
        type_id = "test/never-registered"

        def to_node(self):
            return {}

        @classmethod
        def from_node(cls, node):
            return cls()

    async with harness() as h:
        a = await h.node("a", setup=validating())
        b = await h.node("b", setup=validating())
        root, _, _ = make_dag(b.blockstore, leaves=2)
        chid = await a.manager.open_pull_channel(b.peer, Stranger(), root, ALL)
        await settle(a, chid=chid)
        assert a.manager.channel_state(chid).status == S.Failed
        # no channel on b, only the record of the refusal, with the reason
        assert {c: (st.status, st.message) for c, st in b.manager.channels().items()} == {
            chid: (S.Failed, "refused: unknown voucher type 'test/never-registered' "
                   "(no validator takes it)")}
        assert not b.manager.in_progress_channels() and b.recorder.codes(chid) == []
        kept = b.manager.store.load(chid)
        assert kept is not None and kept.voucher == ("test/never-registered", {})
        assert kept.selector == ALL


async def test_a_refused_requests_large_voucher_is_not_kept():
    """A refused request is kept for people to read, not as a store any peer
    can fill: a voucher (or selector) over 4 KiB is kept as null."""

    class Bulky(Voucher):
        type_id = "test/bulky"

        def to_node(self):
            return {"Pad": "x" * 10_000}

        @classmethod
        def from_node(cls, node):
            return cls()

    async with harness() as h:
        a = await h.node("a", setup=validating())
        b = await h.node("b", setup=validating())
        root, _, _ = make_dag(b.blockstore, leaves=2)
        chid = await a.manager.open_pull_channel(b.peer, Bulky(), root, ALL)
        await settle(a, chid=chid)
        kept = b.manager.store.load(chid)
        assert kept is not None and kept.voucher == ("test/bulky", None)
        assert kept.selector == ALL and kept.record.message.startswith("refused: unknown voucher")


async def test_retry_validation_waits_for_another_voucher():
    async with harness() as h:
        a = await h.node("a", setup=validating())
        b = await h.node("b", setup=validating())
        root, size, order = make_dag(b.blockstore, leaves=4)
        n = len(order)
        chid = await a.manager.open_pull_channel(b.peer, LabelVoucher("retry"), root, ALL)
        await a.manager.wait(chid, {S.ResponderPaused}, timeout=DEADLINE)
        assert b.manager.channel_status(chid) == S.Requested
        assert a.manager.channel_state(chid).last_voucher_result == NoteResult(
            "send another voucher")
        await a.manager.send_voucher(chid, LabelVoucher("ok"))
        await settle(a, b, chid=chid)
        assert a.recorder.codes(chid) == (
            ["Open", "Opened", "NewVoucherResult", "PauseResponder", "NewVoucher",
             "NewVoucherResult", "ResumeResponder"] + blocks(n, RECV)
            + ["FinishTransfer", "ResponderCompletes", "CleanupComplete"])
        assert b.recorder.codes(chid) == (
            ["Open", "NewVoucherResult", "NewVoucher", "NewVoucherResult", "Accept"]
            + blocks(n, SEND) + ["Complete", "CleanupComplete"])
        assert a.manager.channel_state(chid).received == size
        assert b.manager.channel_state(chid).vouchers == (LabelVoucher("ok"),)


async def test_a_request_waiting_for_a_voucher_then_refused_is_kept_as_refused():
    """Asked to retry, the request lives in memory only; the voucher the
    validator then refuses makes it a refused request like any other:
    counted, and kept in the store with the reason."""
    async with harness() as h:
        a = await h.node("a", setup=validating())
        b = await h.node("b", setup=validating())
        root, _, _ = make_dag(b.blockstore, leaves=2)
        chid = await a.manager.open_pull_channel(b.peer, LabelVoucher("retry"), root, ALL)
        await a.manager.wait(chid, {S.ResponderPaused}, timeout=DEADLINE)
        assert b.manager.store.load(chid) is None  # not stored while it waits
        await a.manager.send_voucher(chid, LabelVoucher("reject"))
        assert (await a.manager.wait(chid, timeout=DEADLINE)).status == S.Failed
        assert (await b.manager.wait(chid, timeout=DEADLINE)).status == S.Failed
        kept = b.manager.store.load(chid)
        assert kept is not None and (kept.record.status, kept.record.message) == (
            S.Failed, "refused: rejected by the validator: not today")
        assert b.manager.refusals.counts["rejected-request"] == 1


async def test_accept_and_pause_then_a_voucher_resumes():
    reval = PayEveryN(10**9)  # never pauses on data; accepts any payment
    async with harness() as h:
        a = await h.node("a", setup=validating())
        b = await h.node("b", setup=validating(reval))
        root, size, order = make_dag(b.blockstore, leaves=4)
        n = len(order)
        chid = await a.manager.open_pull_channel(b.peer, LabelVoucher("pause"), root, ALL)
        await a.manager.wait(chid, {S.ResponderPaused}, timeout=DEADLINE)
        await b.manager.wait(chid, {S.ResponderPaused}, timeout=DEADLINE)
        assert a.manager.channel_state(chid).received == 0
        await a.manager.send_voucher(chid, Payment(0))
        await settle(a, b, chid=chid)
        assert a.recorder.statuses(chid) == [
            "Requested", "Ongoing", "ResponderPaused", "Ongoing", "TransferFinished",
            "Completing", "Completed"]
        assert b.recorder.codes(chid) == (
            ["Open", "NewVoucherResult", "Accept", "PauseResponder", "NewVoucher",
             "NewVoucherResult", "ResumeResponder"] + blocks(n, SEND)
            + ["Complete", "CleanupComplete"])
        assert a.manager.channel_state(chid).received == size


# ---------------------------------------------------------------- revalidation


async def test_pay_as_you_go_pull_with_final_voucher():
    reval = PayEveryN(3000, final=True)
    async with harness() as h:
        a = await h.node("a", setup=validating())
        b = await h.node("b", setup=validating(reval))
        root, size, order = make_dag(b.blockstore, leaves=8)  # 11 blocks, 8443 bytes
        chid = await a.manager.open_pull_channel(b.peer, LabelVoucher(), root, ALL)
        paid = await pay_when_asked(a.manager, chid)
        await settle(a, b, chid=chid)
        # the revalidator pauses on the block that brings the unpaid bytes to
        # 3000 or more; the final voucher settles the rest
        asked, segments, since, total, count = [], [], 0, 0, 0
        for cid in order:
            n = len(b.blockstore.get(cid))
            since, total, count = since + n, total + n, count + 1
            if since >= 3000:
                asked.append(total)
                segments.append(count)
                since = count = 0
        assert len(asked) == 2 and total == size
        assert paid == [*asked, size]
        pay = ["NewVoucherResult", "PauseResponder", "NewVoucher", "NewVoucherResult",
               "ResumeResponder"]
        # the sender pauses before sending the block that crossed the line, so
        # the initiator receives that block after it paid
        assert a.recorder.codes(chid) == (
            ["Open", "Opened", "NewVoucherResult", "Accept"] + blocks(segments[0] - 1, RECV)
            + pay + blocks(segments[1], RECV) + pay + blocks(count + 1, RECV)
            + ["FinishTransfer", "NewVoucherResult", "ResponderBeginsFinalization",
               "NewVoucher", "NewVoucherResult", "ResponderCompletes", "CleanupComplete"])
        assert a.recorder.statuses(chid) == [
            "Requested", "Ongoing", "ResponderPaused", "Ongoing", "ResponderPaused", "Ongoing",
            "TransferFinished", "ResponderFinalizingTransferFinished", "Completing",
            "Completed"]
        assert b.recorder.statuses(chid) == [
            "Requested", "Ongoing", "ResponderPaused", "Ongoing", "ResponderPaused", "Ongoing",
            "Finalizing", "Completing", "Completed"]
        assert b.recorder.codes(chid)[-4:] == [
            "NewVoucher", "NewVoucherResult", "ResumeResponder", "CleanupComplete"]
        sa, sb = a.manager.channel_state(chid), b.manager.channel_state(chid)
        assert (sa.received, sb.sent, sb.queued) == (size, size, size)
        assert [v.amount for v in sb.vouchers] == paid
        assert reval.paid[chid] == size and chid in reval.completed


async def test_pay_as_you_go_push():
    reval = PayEveryN(2500, final=True)
    async with harness() as h:
        a = await h.node("a", setup=validating())
        b = await h.node("b", setup=validating(reval))
        root, size, order = make_dag(a.blockstore, leaves=6, seed=9)
        chid = await a.manager.open_push_channel(b.peer, LabelVoucher(), root, ALL)
        paid = await pay_when_asked(a.manager, chid)
        await settle(a, b, chid=chid)
        # in a push the receiver pauses, so a block already in flight lands
        # after the pause: the revalidator then asks for the rest, and the
        # final voucher settles everything received
        assert paid == sorted(paid) and paid[-1] == size == reval.paid[chid]
        codes = b.recorder.codes(chid)
        assert codes.count("PauseResponder") >= 2
        # a payment may cross the responder's completion and arrive after it
        # ended; every voucher it recorded is one the initiator sent, in order
        received = [v.amount for v in b.manager.channel_state(chid).vouchers]
        assert received == paid[: len(received)] and received[-1] == size
        # the last payment settles either as the final voucher (the sender's
        # completion arrived while the responder waited: Finalizing) or as a
        # payment that resumed it before that completion was handled (the
        # engine: its completion rides the last block's message)
        assert b.recorder.statuses(chid)[-3:] in (["Finalizing", "Completing", "Completed"],
                                                  ["Ongoing", "Completing", "Completed"])
        assert a.manager.channel_state(chid).status == S.Completed
        assert b.manager.channel_state(chid).received == size
        assert a.manager.channel_state(chid).sent == size
        assert_holds_dag(b, order)


async def test_completion_result_rides_the_complete_message_without_waiting():
    """A revalidator whose ``on_complete`` returns a result (and does not
    raise Pause) completes the channel with that result on the Complete
    message, as Go's ``OnComplete`` without ``ErrPause``: a retrieval
    provider's "deal completed" answer. Nobody waits for a final voucher."""

    class Done(IgnoreAll):
        async def on_complete(self, channel_id):
            return NoteResult("done")

    async with harness() as h:
        a = await h.node("a", setup=validating())
        b = await h.node("b", setup=validating(Done()))
        root, size, _ = make_dag(b.blockstore, leaves=3)
        chid = await a.manager.open_pull_channel(b.peer, LabelVoucher(), root, ALL)
        await settle(a, b, chid=chid)
        sa, sb = a.manager.channel_state(chid), b.manager.channel_state(chid)
        assert (sa.status, sb.status) == (S.Completed, S.Completed)
        assert sa.voucher_results[-1] == NoteResult("done") == sb.voucher_results[-1]
        assert "Finalizing" not in b.recorder.statuses(chid)
        assert a.recorder.codes(chid)[-3:] == ["NewVoucherResult", "ResponderCompletes",
                                               "CleanupComplete"]


async def test_wait_until_a_condition_on_the_snapshot():
    """``wait(until=...)`` returns at the first event after which the
    condition holds (here: the second voucher result, a payment request in
    the middle of the transfer), not only at a status."""
    reval = PayEveryN(3000)
    async with harness() as h:
        a = await h.node("a", setup=validating())
        b = await h.node("b", setup=validating(reval))
        root, size, _ = make_dag(b.blockstore, leaves=8)
        chid = await a.manager.open_pull_channel(b.peer, LabelVoucher(), root, ALL)
        state = await a.manager.wait(chid, until=lambda s: len(s.voucher_results) >= 2,
                                     timeout=DEADLINE)
        assert state.voucher_results[1].note.startswith("pay")
        assert state.status not in FINAL_STATUSES
        # already true: returns at once
        again = await a.manager.wait(chid, until=lambda s: len(s.voucher_results) >= 2,
                                     timeout=DEADLINE)
        assert again.voucher_results[:2] == state.voucher_results[:2]
        await a.manager.close_channel(chid)


async def test_revalidator_that_handles_nothing_is_skipped():
    async with harness() as h:
        a = await h.node("a", setup=validating())
        b = await h.node("b", setup=validating(IgnoreAll()))
        root, size, _ = make_dag(b.blockstore, leaves=3)
        chid = await a.manager.open_pull_channel(b.peer, LabelVoucher(), root, ALL)
        await settle(a, b, chid=chid)
        assert a.manager.channel_state(chid).status == S.Completed
        assert "PauseResponder" not in b.recorder.codes(chid)
        assert NOT_HANDLED is not None


# ---------------------------------------------------------------- pause and resume


@pytest.mark.parametrize(
    "script, middle",
    [
        (["a.pause", "a.resume"], ["InitiatorPaused", "Ongoing"]),
        (["b.pause", "b.resume"], ["ResponderPaused", "Ongoing"]),
        (["a.pause", "b.pause", "a.resume", "b.resume"],
         ["InitiatorPaused", "BothPaused", "ResponderPaused", "Ongoing"]),
        (["a.pause", "b.pause", "b.resume", "a.resume"],
         ["InitiatorPaused", "BothPaused", "InitiatorPaused", "Ongoing"]),
        (["b.pause", "a.pause", "a.resume", "b.resume"],
         ["ResponderPaused", "BothPaused", "ResponderPaused", "Ongoing"]),
    ],
    ids=["initiator", "responder", "both-a-first", "both-b-resumes-first", "both-b-first"],
)
async def test_pause_and_resume_in_any_order(script, middle):
    """``middle`` is the status both sides reach after each step. The first
    pause lands while the sender is held at block 3; at least one side stays
    paused until the last step, so the transfer cannot finish early."""
    gate = Gate(at=3)
    async with harness() as h:
        a = await h.node("a", setup=validating())
        b = await h.node("b", setup=validating(gate, LabelVoucher))
        root, size, order = make_dag(b.blockstore, leaves=8)
        chid = await a.manager.open_pull_channel(b.peer, LabelVoucher(), root, ALL)
        with anyio.fail_after(DEADLINE):
            await gate.reached.wait()
        nodes = {"a": a, "b": b}
        for step, expected in zip(script, middle, strict=True):
            who, action = step.split(".")
            manager = nodes[who].manager
            await (manager.pause_channel if action == "pause" else manager.resume_channel)(chid)
            gate.open.set()
            if expected != "Ongoing":
                for node in (a, b):
                    await node.manager.wait(chid, {S[expected]}, timeout=DEADLINE)
        await settle(a, b, chid=chid)
        for node in (a, b):
            seen = node.recorder.statuses(chid)
            last_ongoing = len(seen) - 1 - seen[::-1].index("Ongoing")
            assert seen[2:last_ongoing + 1] == middle, (node.peer, seen)
            assert node.manager.channel_state(chid).status == S.Completed
        assert a.manager.channel_state(chid).received == size
        assert b.manager.channel_state(chid).sent == size
        assert_holds_dag(a, order)


async def test_pause_holds_the_data_until_resumed():
    gate = Gate(at=2)
    async with harness() as h:
        a = await h.node("a", setup=validating())
        b = await h.node("b", setup=validating(gate, LabelVoucher))
        root, size, order = make_dag(b.blockstore, leaves=8)
        chid = await a.manager.open_pull_channel(b.peer, LabelVoucher(), root, ALL)
        with anyio.fail_after(DEADLINE):
            await gate.reached.wait()
        await a.manager.pause_channel(chid)
        gate.open.set()
        await quiesce(0.2)
        held = a.manager.channel_state(chid).received_index
        assert held <= 3  # the block in flight may land; nothing after it
        await quiesce(0.2)
        assert a.manager.channel_state(chid).received_index == held
        assert a.manager.channel_status(chid) == S.InitiatorPaused
        await a.manager.resume_channel(chid)
        await settle(a, b, chid=chid)
        assert a.manager.channel_state(chid).received == size


async def test_responder_update_and_cancel_are_shaped_as_go_sends_them():
    """go-data-transfer's UpdateResponse and CancelResponse carry no verdict
    (Acpt false, and a cancel no pause flag): ours are the same, and an
    initiator takes such an update as the responder's pause, not a refusal."""
    from datatransfer.messages import cancel_response, update_response

    gate = Gate(at=3)
    async with harness() as h:
        a = await h.node("a", setup=validating())
        b = await h.node("b", setup=validating(gate, LabelVoucher))
        sent = []
        transport = b.manager.transport
        real_send = transport.send_message

        async def send_message(peer, message):
            sent.append(message)
            await real_send(peer, message)

        transport.send_message = send_message
        root, _, _ = make_dag(b.blockstore, leaves=8)
        chid = await a.manager.open_pull_channel(b.peer, LabelVoucher(), root, ALL)
        with anyio.fail_after(DEADLINE):
            await gate.reached.wait()
        await b.manager.pause_channel(chid)
        await a.manager.wait(chid, {S.ResponderPaused}, timeout=DEADLINE)
        await b.manager.close_channel(chid)
        gate.open.set()
        await settle(a, b, chid=chid)
        assert update_response(chid.id, paused=True) in sent, sent
        assert cancel_response(chid.id) in sent, sent
        assert a.manager.channel_status(chid) == S.Cancelled


# ---------------------------------------------------------------- cancel


@pytest.mark.parametrize("who", ["a", "b"])
async def test_cancel_mid_transfer_from_either_side(who):
    gate = Gate(at=3)
    async with harness() as h:
        a = await h.node("a", setup=validating())
        b = await h.node("b", setup=validating(gate, LabelVoucher))
        root, size, order = make_dag(b.blockstore, leaves=8)
        chid = await a.manager.open_pull_channel(b.peer, LabelVoucher(), root, ALL)
        with anyio.fail_after(DEADLINE):
            await gate.reached.wait()
        canceller = a if who == "a" else b
        await canceller.manager.close_channel(chid)
        gate.open.set()
        await settle(a, b, chid=chid)
        for node in (a, b):
            state = node.manager.channel_state(chid)
            assert state.status == S.Cancelled, (node.peer, state)
            assert node.recorder.statuses(chid)[-2:] == ["Cancelling", "Cancelled"]
        assert canceller.manager.channel_state(chid).message == "cancelled by this node"
        other = b if who == "a" else a
        assert other.manager.channel_state(chid).message == "cancelled by the other peer"
        assert a.manager.channel_state(chid).received < size
        with pytest.raises(IllegalTransition):
            await canceller.manager.close_channel(chid)


async def test_cancel_before_the_responder_answers():
    async with harness() as h:
        a = await h.node("a", setup=validating())
        b = await h.node("b", setup=validating())
        root, _, _ = make_dag(b.blockstore, leaves=2)
        # the responder's answer (a data-transfer message riding its response) is late
        h.net.delay(0.2, lambda p: p.kind == "response" and p.message is not None)
        chid = await a.manager.open_pull_channel(b.peer, LabelVoucher(), root, ALL)
        await a.manager.close_channel(chid)
        await settle(a, b, chid=chid)
        assert a.recorder.statuses(chid) == ["Requested", "Cancelling", "Cancelled"]
        assert h.net.stats.delayed["response"] >= 1
        assert b.manager.channel_status(chid) in (S.Cancelled, S.ChannelNotFoundError)


# ---------------------------------------------------------------- errors and bad input


async def test_corrupted_block_is_refused_and_the_transfer_recovers():
    async with harness() as h:
        a = await h.node("a", setup=validating())
        b = await h.node("b", setup=validating())
        root, size, order = make_dag(b.blockstore, leaves=6)
        h.net.corrupt(lambda p: 3 in p.indices, count=1)
        chid = await a.manager.open_pull_channel(b.peer, LabelVoucher(), root, ALL)
        await settle(a, b, chid=chid)
        codes = a.recorder.codes(chid)
        assert "ReceiveDataError" in codes and codes.count("Restart") == 1
        state = a.manager.channel_state(chid)
        assert state.status == S.Completed and state.received == size
        assert_holds_dag(a, order)


async def test_unreachable_peer_fails_the_open():
    async with harness() as h:
        a = await h.node("a", setup=validating())
        b = await h.node("b", setup=validating())
        root, _, _ = make_dag(a.blockstore, leaves=1)
        h.net.disconnect(a.peer, b.peer)
        chid = await a.manager.open_push_channel(b.peer, LabelVoucher(), root, ALL)
        await settle(a, chid=chid)
        state = a.manager.channel_state(chid)
        assert state.status == S.Failed
        assert state.message.startswith("unable to send request")


async def test_app_errors_are_typed():
    async with harness() as h:
        a = await h.node("a", setup=validating())
        b = await h.node("b", setup=validating())
        unknown = ChannelID(a.peer, b.peer, 999)
        assert a.manager.channel_status(unknown) == S.ChannelNotFoundError
        with pytest.raises(ChannelNotFound):
            a.manager.channel_state(unknown)
        with pytest.raises(ChannelNotFound):
            await a.manager.pause_channel(unknown)
        root, _, _ = make_dag(b.blockstore, leaves=2)
        chid = await a.manager.open_pull_channel(b.peer, LabelVoucher(), root, ALL)
        await settle(a, b, chid=chid)
        with pytest.raises(Unsupported):
            await b.manager.send_voucher(chid, Payment(1))  # only initiators send vouchers
        with pytest.raises(IllegalTransition):
            await a.manager.pause_channel(chid)  # Completed refuses everything
        with pytest.raises(ValueError):
            await a.manager.open_pull_channel(a.peer, LabelVoucher(), root, ALL)
        assert a.manager.in_progress_channels() == {}


async def test_malformed_and_unexpected_messages_do_not_stop_the_node():
    from datatransfer.messages import new_response, voucher_request

    async with harness() as h:
        a = await h.node("a", setup=validating())
        b = await h.node("b", setup=validating())
        root, size, _ = make_dag(b.blockstore, leaves=3)
        # a response and a voucher for channels nobody opened
        await b.manager.transport.send_message(
            a.peer, new_response(77, accepted=True, paused=False))
        await a.manager.transport.send_message(
            b.peer, voucher_request(5, voucher_type="test/payment", voucher={"Amount": 1}))
        await a.manager.transport_events.on_message(b.peer, object())  # not a message at all
        chid = await a.manager.open_pull_channel(b.peer, LabelVoucher(), root, ALL)
        await settle(a, b, chid=chid)
        assert a.manager.channel_state(chid).status == S.Completed
        assert a.manager.channel_state(chid).received == size


def test_event_codes_used_by_flows_exist():
    for name in RECV + SEND:
        assert EventCode[name]


async def test_wait_for_a_status_a_channel_can_no_longer_reach_returns_its_end():
    """A rejected channel never reaches Ongoing: waiting for it returns the
    final snapshot instead of waiting forever."""
    async with harness() as h:
        a = await h.node("a", setup=validating())
        b = await h.node("b", setup=validating())
        root, _, _ = make_dag(b.blockstore, leaves=2)
        chid = await a.manager.open_pull_channel(b.peer, LabelVoucher("reject"), root, ALL)
        with anyio.fail_after(DEADLINE):
            state = await a.manager.wait(chid, {S.Ongoing})
        assert state.status == S.Failed


async def test_a_receiver_writes_its_progress_in_batches_not_per_block():
    """Receiving 267 blocks writes the record about once per
    ``save_progress_every`` blocks plus once per status change (no watchdog
    flush here: its tick is longer than the test), and the stored record
    ends exact."""
    from dataclasses import replace as dc_replace

    from _support import FAST

    from datatransfer.store import MemoryChannelStore

    class Counting(MemoryChannelStore):
        saves = 0

        def save(self, ch, *, record=None):
            type(self).saves += 1
            super().save(ch, record=record)

    config = dc_replace(FAST, tick=3600, save_progress_every=64)
    async with harness(config) as h:
        store = Counting()
        a = await h.node("a", store=store, setup=validating())
        b = await h.node("b", setup=validating())
        root, size, order = make_dag(b.blockstore, leaves=199)
        n = len(order)
        chid = await a.manager.open_pull_channel(b.peer, LabelVoucher(), root, ALL)
        await settle(a, b, chid=chid)
        statuses = len(a.recorder.statuses(chid))
        assert Counting.saves <= statuses + n // 64 + 2, (Counting.saves, statuses, n)
        stored = store.load(chid)
        assert (stored.record.received, stored.record.received_index) == (size, n)


async def test_a_request_waiting_for_validation_is_stored_once_the_app_resumes_it():
    """Nothing a peer sends is stored before a validator accepts it; but a
    responder whose application resumes such a request lets its data flow,
    so from then on the channel is stored (found again after a restart)."""
    from datatransfer.store import MemoryChannelStore

    async with harness() as h:
        a = await h.node("a", setup=validating())
        store = MemoryChannelStore()
        b = await h.node("b", store=store, setup=validating())
        root, _, _ = make_dag(b.blockstore, leaves=2)
        chid = await a.manager.open_pull_channel(b.peer, LabelVoucher("retry"), root, ALL)
        with anyio.fail_after(DEADLINE):
            while chid not in b.manager.channels():
                await anyio.sleep(0.01)
        assert store.load(chid) is None  # waiting for a voucher: not stored
        await b.manager.resume_channel(chid)
        await settle(a, b, chid=chid)
        assert store.load(chid) is not None
        assert store.load(chid).record.status == b.manager.channel_status(chid)


async def test_protocol_flags_are_stored_with_the_record():
    """The flags that qualify a status (paid while the responder finalizes,
    paused for a voucher) are fields of the record, written with it: a node
    restarted on its store knows them."""
    from datatransfer.store import MemoryChannelStore

    saved: list[tuple[str, bool, bool]] = []

    class Spy(MemoryChannelStore):
        def save(self, ch, *, record=None):
            rec = ch.record if record is None else record
            saved.append((ch.self_peer, rec.status.name, rec.paid_while_finalizing,
                          rec.paused_for_voucher))
            super().save(ch, record=record)

    store = Spy()
    async with harness() as h:
        a = await h.node("a", store=store, setup=validating())
        b = await h.node("b", store=store, setup=validating(PayEveryN(3000, final=True)))
        root, _, _ = make_dag(b.blockstore, leaves=8)
        chid = await a.manager.open_pull_channel(b.peer, LabelVoucher(), root, ALL)
        await pay_when_asked(a.manager, chid)
        await settle(a, b, chid=chid)
    assert any(peer == a.peer and status.startswith("ResponderFinalizing") and paid
               for peer, status, paid, _ in saved), saved
    assert any(peer == b.peer and status == "ResponderPaused" and pfv
               for peer, status, _, pfv in saved), saved
