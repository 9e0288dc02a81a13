"""One contract for the transport the Manager drives: channel scenarios that
assert what any transport must give (final statuses, bytes counted once,
the blocks stored), not one transport's event order. They run on the
graphsync engine carried by the in-memory network (frames as bytes, under
its fault rules); :class:`~transport.libp2p.transport.Libp2pTransport`
carries the same engine (both are :class:`~transport.carrier.EngineCarrier`;
``test_libp2p_transport`` runs transfers over real libp2p hosts and checks
that they give the event sequences the in-memory network gives).
"""

from __future__ import annotations

import anyio
import pytest
from _support import (
    ALL,
    DEADLINE,
    Gate,
    LabelVoucher,
    PayEveryN,
    harness,
    make_dag,
    pay_when_asked,
    quiesce,
    validating,
)

from statemachine import Status as S

pytestmark = pytest.mark.anyio

@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request):
    return request.param


async def ended(*pairs) -> list:
    out = []
    for node, chid in pairs:
        out.append(await node.manager.wait(chid, timeout=DEADLINE))
    return out


def holds(node, order) -> bool:
    return all(node.blockstore.has(c) for c in order)


async def test_pull_and_push_complete_with_every_byte_counted_once():
    async with harness() as h:
        a = await h.node("a", setup=validating())
        b = await h.node("b", setup=validating())
        root, size, order = make_dag(b.blockstore, leaves=12)
        pull = await a.manager.open_pull_channel(b.peer, LabelVoucher(), root, ALL)
        sa, sb = await ended((a, pull), (b, pull))
        assert (sa.status, sb.status) == (S.Completed, S.Completed)
        assert sa.received == sb.sent == size
        assert holds(a, order)
        root2, size2, order2 = make_dag(a.blockstore, leaves=5, seed=7)
        push = await a.manager.open_push_channel(b.peer, LabelVoucher(), root2, ALL)
        sa, sb = await ended((a, push), (b, push))
        assert (sa.status, sb.status) == (S.Completed, S.Completed)
        assert sb.received == sa.sent == size2
        assert holds(b, order2)


async def test_a_rejected_request_fails_and_moves_nothing():
    async with harness() as h:
        a = await h.node("a", setup=validating())
        b = await h.node("b", setup=validating())
        root, _, order = make_dag(b.blockstore, leaves=3)
        chid = await a.manager.open_pull_channel(b.peer, LabelVoucher("reject"), root, ALL)
        (sa,) = await ended((a, chid))
        assert sa.status == S.Failed and sa.received == 0
        assert not any(a.blockstore.has(c) for c in order)


async def pull_held(h, at: int, leaves: int):  # type: ignore[no-untyped-def]
    """Nodes a and b, a pull from b whose sender is held before block
    ``at``: (a, b, gate, channel, bytes, blocks in order)."""
    gate = Gate(at=at)
    a = await h.node("a", setup=validating())
    b = await h.node("b", setup=validating(gate, LabelVoucher))
    root, size, order = make_dag(b.blockstore, leaves=leaves)
    chid = await a.manager.open_pull_channel(b.peer, LabelVoucher(), root, ALL)
    with anyio.fail_after(DEADLINE):
        await gate.reached.wait()
    return a, b, gate, chid, size, order


@pytest.mark.parametrize("who", ["initiator", "responder"])
async def test_pause_holds_the_data_and_resume_finishes_it(who):
    async with harness() as h:
        a, b, gate, chid, size, order = await pull_held(h, at=3, leaves=8)
        pauser = a if who == "initiator" else b
        await pauser.manager.pause_channel(chid)
        paused = S.InitiatorPaused if who == "initiator" else S.ResponderPaused
        await a.manager.wait(chid, {paused}, timeout=DEADLINE)
        gate.open.set()
        await quiesce(0.2)
        held = a.manager.channel_state(chid).received_index
        assert held < len(order)  # nothing flows past the pause
        await pauser.manager.resume_channel(chid)
        sa, sb = await ended((a, chid), (b, chid))
        assert (sa.status, sb.status) == (S.Completed, S.Completed)
        assert sa.received == size and holds(a, order)


@pytest.mark.parametrize("who", ["initiator", "responder"])
async def test_cancel_mid_transfer_ends_both_sides(who):
    async with harness() as h:
        a, b, gate, chid, size, _ = await pull_held(h, at=3, leaves=8)
        await (a if who == "initiator" else b).manager.close_channel(chid)
        gate.open.set()
        sa, sb = await ended((a, chid), (b, chid))
        assert (sa.status, sb.status) == (S.Cancelled, S.Cancelled)
        assert sa.received < size


async def test_paid_retrieval_with_a_final_voucher():
    reval = PayEveryN(3000, final=True)
    async with harness() as h:
        a = await h.node("a", setup=validating())
        b = await h.node("b", setup=validating(reval))
        root, size, order = make_dag(b.blockstore, leaves=8)
        chid = await a.manager.open_pull_channel(b.peer, LabelVoucher(), root, ALL)
        paid = await pay_when_asked(a.manager, chid)
        sa, sb = await ended((a, chid), (b, chid))
        assert (sa.status, sb.status) == (S.Completed, S.Completed)
        assert paid[-1] == size and sa.received == size


async def test_a_cut_mid_pull_restarts_and_counts_each_byte_once():
    async with harness() as h:
        a, b, gate, chid, size, order = await pull_held(h, at=4, leaves=10)
        h.net.disconnect(a.peer, b.peer)
        gate.open.set()
        await quiesce(0.05)
        h.net.connect(a.peer, b.peer)
        sa, sb = await ended((a, chid), (b, chid))
        assert (sa.status, sb.status) == (S.Completed, S.Completed), (sa.message, sb.message)
        assert sa.received == size and holds(a, order)

