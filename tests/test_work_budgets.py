"""Work budgets (issue 9): what a hostile selector or frame can cost a node.

* DAG-CBOR decoding walks the heads first and refuses past an item count or
  depth before building anything;
* a traversal counts its work in clause evaluations, ends past a budget of
  work without reaching a block, and hands control back (``STEP``) every
  so often;
* unions merge what they repeat, so their work does not multiply with
  their nesting;
* the graphsync engine ends a request whose traversal spends its budget,
  or its peer's, with a graphsync error, while other requests go on.
"""

from __future__ import annotations

import tracemalloc

import anyio
import pytest
from _support import make_dag
from test_graphsync_engine import A, B, pair, pull_message, wait_done

from datatransfer.ipld import dagcbor
from datatransfer.ipld.block import Block
from datatransfer.ipld.cid import DAG_CBOR
from datatransfer.ipld.dagcbor import DagCborError
from datatransfer.ipld.selector import (
    ALL_SELECTOR_NODE,
    BlockRequest,
    BudgetExceeded,
    Traverser,
    parse_selector,
)
from datatransfer.ipld.selector.ast import MAX_STATE_COST, ExploreUnion, union_of
from datatransfer.ipld.selector.traversal import STEP
from datatransfer.types import ChannelID
from transport.budget import PeerWorkBudget
from transport.graphsync.message import MAX_MESSAGE_ITEMS, GraphsyncWireError, decode_message
from transport.graphsync.status import ResponseStatus

MIB = 1024 * 1024


# -- decoding ------------------------------------------------------------------------


def test_a_frame_of_millions_of_empty_lists_is_refused_before_it_is_built():
    n = 4 * MIB
    flat = b"\x9a" + n.to_bytes(4, "big") + b"\x80" * n
    groups = 4 * MIB // 24
    nested = b"\x9a" + groups.to_bytes(4, "big") + (b"\x97" + b"\x80" * 23) * groups
    for bomb in (flat, nested):
        tracemalloc.start()
        with pytest.raises(GraphsyncWireError, match=f"more than {MAX_MESSAGE_ITEMS} items"):
            decode_message(bomb)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        # no value was built: the peak is the scan's bookkeeping, not a list per item
        assert peak < 2 * MIB, peak


def test_the_scan_checks_canonical_form_and_limits_with_offsets():
    assert dagcbor.decode(dagcbor.encode([[1, 2], {"a": 1}]), max_items=6) == [[1, 2], {"a": 1}]
    with pytest.raises(DagCborError, match="more than 5 items"):
        dagcbor.decode(dagcbor.encode([[1, 2], {"a": 1}]), max_items=5)
    with pytest.raises(DagCborError, match="nesting deeper than 3 at byte 3"):
        dagcbor.scan(b"\x81" * 4 + b"\x01", max_depth=3)
    with pytest.raises(DagCborError, match="map keys not in canonical order at byte 5"):
        dagcbor.scan(b"\xa2\x62bb\x01\x61a\x02")
    dagcbor.scan(b"\xa2\x62bb\x01\x61a\x02", sorted_keys=False)  # any order allowed
    with pytest.raises(DagCborError, match="duplicate map key"):
        dagcbor.scan(b"\xa2\x61a\x01\x61a\x02", sorted_keys=False)
    with pytest.raises(DagCborError, match="array longer than the input"):
        dagcbor.scan(b"\x9a\x00\x10\x00\x00\x80")


# -- traversal -------------------------------------------------------------------------


def _list_block(n: int) -> Block:
    return Block.of(dagcbor.encode(list(range(n))), codec=DAG_CBOR)


def _walk(traverser: Traverser, block: Block) -> list:
    events = []
    while True:
        event = traverser.next()
        if event is None:
            return events
        events.append(event)
        if type(event) is BlockRequest:
            traverser.provide(block.data)


def test_a_traversal_ends_past_its_work_without_a_block():
    block = _list_block(5000)
    every = {"a": {">": {".": {}}}}
    t = Traverser(block.cid, every, visits=False, max_work_without_block=3000)
    with pytest.raises(BudgetExceeded, match="work-without-block > 3000"):
        _walk(t, block)
    assert 3000 < t.work < 3100
    # the same walk within a larger budget completes, and says what it cost
    t = Traverser(block.cid, every, visits=False, max_work_without_block=20_000)
    _walk(t, block)
    assert t.work > 10_000 and t.idle_work == t.work - t.free_work_per_block


def test_a_traversal_hands_control_back_every_step():
    block = _list_block(2000)
    t = Traverser(block.cid, {"a": {">": {".": {}}}}, visits=False, step_work=500)
    events = _walk(t, block)
    steps = sum(1 for e in events if e is STEP)
    assert steps == t.work // 500
    # without step_work nothing changes for callers
    t = Traverser(block.cid, {"a": {">": {".": {}}}}, visits=False)
    assert STEP not in _walk(t, block)


def test_unions_merge_repeats_so_their_work_does_not_multiply():
    member = {"a": {">": {".": {}}}}
    sel = parse_selector({"|": [member] * 50})
    assert sel.cost == 51  # parsed as written
    explored = sel.explore([1, 2], 0)
    assert not isinstance(explored, ExploreUnion)  # 50 equal members: one
    assert union_of([parse_selector(member)] * 3) == parse_selector(member)
    block = _list_block(100)
    t = Traverser(block.cid, sel, visits=False)
    _walk(t, block)
    # each element explored by the merged union once, not 50 times over
    assert t.work < 100 * 60


def test_a_selector_state_cannot_grow_past_the_cap():
    wide = {"|": [{"f": {"f>": {f"k{i}": {".": {}}}}} for i in range(MAX_STATE_COST)]}
    with pytest.raises(Exception, match="grows past"):
        parse_selector(wide)


# -- the peer's bucket -------------------------------------------------------------------


def test_a_peer_bucket_refills_at_its_rate():
    budget = PeerWorkBudget(capacity=1000, rate=100.0)
    assert budget.take(b"p", 800, now=0.0)
    assert not budget.take(b"p", 300, now=0.0)  # 200 left
    assert budget.take(b"q", 1000, now=0.0)  # another peer has its own
    assert budget.take(b"p", 300, now=1.0)  # 200 + 100
    assert budget.level(b"p", now=1.0) == 0
    assert budget.level(b"p", now=100.0) == 1000  # never past the capacity


# -- the engine --------------------------------------------------------------------------

@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request):
    return request.param


@pytest.mark.anyio
async def test_the_engine_ends_a_request_that_walks_without_blocks_and_serves_others():
    async with pair(max_work_without_block=5000, step_work=200) as (a, b):
        heavy = _list_block(20_000)
        b.store.put_many([heavy])
        root, _, order = make_dag(b.store, leaves=4)
        bomb = ChannelID(A, B, 1)
        honest = ChannelID(A, B, 2)
        every = {"a": {">": {".": {}}}}
        await a.engine.open_channel(B, bomb, heavy.cid, every, pull_message(1, heavy.cid))
        await a.engine.open_channel(B, honest, root, ALL_SELECTOR_NODE, pull_message(2, root))
        await wait_done((b, bomb), (b, honest))
        errors = [e for e in b.events.log if e[0] == "completed" and e[1]]
        assert len(errors) == 1 and "work-without-block" in errors[0][1]
        rsp = [r for m in b.wire for r in m.responses if r.status.is_terminal]
        assert {r.status for r in rsp} == {ResponseStatus.UNKNOWN, ResponseStatus.COMPLETED_FULL}
        assert all(cid in a.store for cid in order)  # the honest pull got everything


@pytest.mark.anyio
async def test_the_engine_ends_requests_of_a_peer_whose_budget_is_spent():
    budget = PeerWorkBudget(capacity=3000, rate=0.0)
    async with pair(peer_work=budget, step_work=200) as (a, b):
        heavy = _list_block(5000)
        b.store.put_many([heavy])
        every = {"a": {">": {".": {}}}}
        chid = ChannelID(A, B, 1)
        await a.engine.open_channel(B, chid, heavy.cid, every, pull_message(1, heavy.cid))
        await wait_done((b, chid))
        (error,) = [e[1] for e in b.events.log if e[0] == "completed"]
        assert "traversal budget exceeded" in error
        assert b.engine.stats.work_refused == 1
        assert b.engine.refusals.counts["work-budget"] == 1


@pytest.mark.anyio
async def test_a_traversal_lets_other_tasks_run_while_it_walks():
    async with pair(step_work=100) as (a, b):
        heavy = _list_block(30_000)
        b.store.put_many([heavy])
        ticks = 0
        stop = anyio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                await anyio.sleep(0)

        async with anyio.create_task_group() as tg:
            tg.start_soon(ticker)
            chid = ChannelID(A, B, 1)
            await a.engine.open_channel(B, chid, heavy.cid, {"a": {">": {".": {}}}},
                                        pull_message(1, heavy.cid))
            await wait_done((a, chid), (b, chid))
            stop.set()
        # the walk visited 30,000 elements; the ticker ran between its steps
        assert ticks > 100



def test_full_buckets_of_departed_peers_are_forgotten():
    """Buckets of peers that stopped spending (full again) are dropped once
    many are held; those still spending are kept, and a forgotten peer's
    budget is what a full bucket gives."""
    budget = PeerWorkBudget(capacity=100, rate=10.0)
    for i in range(1100):
        assert budget.take(f"old{i}".encode(), 50, now=0.0)
    for i in range(1100):  # later: the old buckets refilled meanwhile
        assert budget.take(f"new{i}".encode(), 50, now=100.0)
    assert set(budget._buckets) == {f"new{i}".encode() for i in range(1100)}
    assert budget.level(b"old0", now=100.0) == 100
    assert budget.level(b"new1099", now=100.0) == 50
