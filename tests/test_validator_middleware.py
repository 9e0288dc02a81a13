"""Validator middleware (issue 13, item 6): every validation of every voucher
type runs through the Manager's middleware in order (the peer filter, the
deal rate, logging); a refusal is answered as a rejection with a reason the
requesting peer reads, counted by its kind and kept for ``ls --all``. And
subscriptions filtered by event code and by voucher type.

Two Managers over the in-memory network (``_support.harness``); the deal
rate's window on trio's MockClock (virtual seconds, the Manager's clock); a
``datatransfer serve`` with ``--allow-peer`` in test_cli_serve_refuses_peers_not_allowed."""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from _processes import CLI, LOOPBACK, TIMEOUT, run
from _support import (
    ALL,
    DEADLINE,
    IgnoreAll,
    LabelVoucher,
    NoteResult,
    Payment,
    ScriptedValidator,
    harness,
    make_dag,
)
from trio.testing import MockClock

from datatransfer.events import EventBus
from datatransfer.manager import Manager
from datatransfer.types import ChannelID, ChannelState, Event, PeerID
from registry import (
    DealRate,
    DealRateExceeded,
    LogValidation,
    PeerDenied,
    PeerFilter,
    Refused,
    ValidationCall,
    Voucher,
    VoucherResult,
)
from registry.middleware import compose, parse_deal_rate, serve_middleware
from statemachine import EventCode
from statemachine import Status as S

E = EventCode


@dataclass(frozen=True)
class OtherVoucher(Voucher):
    type_id = "test/other"

    def to_node(self) -> Any:
        return {}

    @classmethod
    def from_node(cls, node: Any) -> OtherVoucher:
        return cls()


class Accepting:
    """Accepts every request (no result)."""

    async def validate_push(self, *args: Any) -> None:
        return None

    async def validate_pull(self, *args: Any) -> None:
        return None


class Telling(ScriptedValidator):
    """A validator whose voucher type tells a refused peer why (the hook
    the retrieval provider implements with a Rejected deal response)."""

    def rejection_result(self, voucher: Voucher, reason: str) -> VoucherResult:
        return NoteResult(f"refused: {reason}")


class Trace:
    """A middleware that records (its name, the call) and goes on."""

    def __init__(self, name: str, seen: list[tuple[str, ValidationCall]]) -> None:
        self.name = name
        self.seen = seen

    async def __call__(self, call: ValidationCall, next: Any) -> Any:
        self.seen.append((self.name, call))
        return await next(call)


def telling(*middleware: Any) -> Any:
    def setup(manager: Manager) -> None:
        manager.register_voucher_type(LabelVoucher, Telling())
        manager.add_middleware(*middleware)
    return setup


_seeds = iter(range(100, 10**6))


async def pull(a: Any, b: Any, voucher: Voucher | None = None) -> ChannelState:
    """Pull a DAG of its own (a new root each time) from ``b`` to ``a``."""
    voucher = voucher or LabelVoucher("ok")
    root, _, _ = make_dag(b.blockstore, leaves=2, seed=next(_seeds))
    chid = await a.manager.open_pull_channel(b.peer, voucher, root, ALL)
    return await a.manager.wait(chid, timeout=DEADLINE)


async def kept(node: Any, chid: ChannelID) -> ChannelState:
    """The responder's record of a request (kept right after its answer)."""
    with anyio.fail_after(DEADLINE):
        while chid not in node.manager.channels():
            await anyio.sleep(0.01)
    return node.manager.channels()[chid]


# ------------------------------------------------------------------ order and scope


@pytest.mark.anyio
async def test_every_voucher_type_runs_through_the_middleware_in_order() -> None:
    """Added before one type is registered and after another, the chain
    covers both, the first added outermost, for requests and for vouchers
    sent during a transfer; each call carries the peer and the Manager's
    clock."""
    seen: list[tuple[str, ValidationCall]] = []

    class Paid(IgnoreAll):
        async def revalidate(self, channel_id: ChannelID, voucher: Voucher) -> Any:
            return NoteResult("thanks")

    def setup(manager: Manager) -> None:
        manager.register_voucher_type(LabelVoucher, ScriptedValidator())
        manager.add_middleware(Trace("outer", seen))
        manager.add_middleware(Trace("inner", seen))
        manager.register_voucher_type(OtherVoucher, Accepting())
        manager.register_revalidator(Payment, Paid())

    async with harness() as h:
        a = await h.node("a")
        b = await h.node("b", setup=setup)
        before = anyio.current_time()
        assert (await pull(a, b, LabelVoucher("ok"))).status == S.Completed
        root, _, _ = make_dag(b.blockstore, leaves=3, seed=5)
        chid = await a.manager.open_pull_channel(b.peer, OtherVoucher(), root, ALL)
        await a.manager.send_voucher(chid, Payment(7))
        with anyio.fail_after(DEADLINE):
            while len(seen) < 6:
                await anyio.sleep(0.01)
        assert (await a.manager.wait(chid, timeout=DEADLINE)).status == S.Completed
        after = anyio.current_time()
    assert [(name, c.kind, c.voucher.type_id) for name, c in seen] == [
        ("outer", "pull", "test/voucher"), ("inner", "pull", "test/voucher"),
        ("outer", "pull", "test/other"), ("inner", "pull", "test/other"),
        ("outer", "revalidate", "test/payment"), ("inner", "revalidate", "test/payment"),
    ]
    assert all(c.peer == a.peer and before <= c.now <= after for _, c in seen)
    assert seen[4][1].channel_id == chid and seen[4][1].base_cid is None


# ------------------------------------------------------------------ the peer filter


@pytest.mark.anyio
async def test_a_denied_peer_is_refused_with_a_reason_it_reads_counted_and_kept() -> None:
    validator = Telling()

    def setup(manager: Manager) -> None:
        manager.register_voucher_type(LabelVoucher, validator)
        manager.add_middleware(PeerFilter(deny=[a_peer]))

    async with harness() as h:
        a_peer = PeerID(b"\x00\x08" + b"a".ljust(8, b"_"))
        a = await h.node("a")
        c = await h.node("c")
        b = await h.node("b", setup=setup)
        assert a.peer == a_peer
        refused = await pull(a, b)
        record = await kept(b, refused.channel_id)
        served = await pull(c, b)
    reason = f"peer {a.peer} is on this node's deny list"
    assert (refused.status, refused.message) == (S.Failed, "rejected by the responder")
    assert refused.voucher_results == (NoteResult(f"refused: {reason}"),)
    assert (record.status, record.message) == (S.Failed, f"refused: {reason}")
    assert b.manager.refusals.counts == {"peer-denied": 1}
    assert [call[0] for call in validator.calls] == ["pull"]  # c's only: a never reached it
    assert served.status == S.Completed


@pytest.mark.anyio
async def test_an_allow_list_refuses_everyone_else_and_deny_wins() -> None:
    async with harness() as h:
        a = await h.node("a")
        c = await h.node("c")
        d = await h.node("d")
        b = await h.node("b", setup=telling(PeerFilter(allow=[a.peer.to_base58(), d.peer],
                                                       deny=[str(d.peer)])))
        states = [await pull(x, b) for x in (a, c, d)]
    assert [s.status for s in states] == [S.Completed, S.Failed, S.Failed]
    assert states[1].voucher_results == (
        NoteResult(f"refused: peer {c.peer} is not on this node's allow list"),)
    assert states[2].voucher_results == (
        NoteResult(f"refused: peer {d.peer} is on this node's deny list"),)
    assert b.manager.refusals.counts["peer-denied"] == 2


@pytest.mark.anyio
async def test_a_voucher_refused_during_a_transfer_fails_the_channel_and_is_counted() -> None:
    """Middleware sees vouchers sent during a transfer (``revalidate``)."""

    async def no_payments(call: ValidationCall, next: Any) -> Any:
        if call.kind == "revalidate":
            raise PeerDenied(f"no vouchers from {call.peer}")
        return await next(call)

    class Paid(IgnoreAll):
        async def revalidate(self, channel_id: ChannelID, voucher: Voucher) -> Any:
            raise AssertionError("the middleware refuses first")

    def setup(manager: Manager) -> None:
        manager.register_voucher_type(LabelVoucher, ScriptedValidator())
        manager.register_revalidator(Payment, Paid())
        manager.add_middleware(no_payments)

    async with harness() as h:
        a = await h.node("a")
        b = await h.node("b", setup=setup)
        root, _, _ = make_dag(a.blockstore, leaves=2)
        chid = await a.manager.open_push_channel(b.peer, LabelVoucher("pause"), root, ALL)
        await a.manager.wait(chid, {S.ResponderPaused}, timeout=DEADLINE)
        await a.manager.send_voucher(chid, Payment(1))
        state = await b.manager.wait(chid, timeout=DEADLINE)
    assert (state.status, state.message) == (
        S.Failed, f"voucher refused: no vouchers from {a.peer}")
    assert b.manager.refusals.counts["peer-denied"] == 1


@pytest.mark.anyio
async def test_a_restart_from_a_peer_denied_since_fails_the_channel_and_is_counted() -> None:
    """Restarts are validated anew, through the middleware too."""
    gate = PeerFilter()

    async with harness() as h:
        a = await h.node("a")
        b = await h.node("b", setup=telling(gate))
        root, _, _ = make_dag(b.blockstore, leaves=2)
        chid = await a.manager.open_pull_channel(b.peer, LabelVoucher("pause"), root, ALL)
        await a.manager.wait(chid, {S.ResponderPaused}, timeout=DEADLINE)
        gate.deny = frozenset({a.peer})
        await a.manager.restart_channel(chid)
        state = await b.manager.wait(chid, timeout=DEADLINE)
    assert (state.status, state.message) == (
        S.Failed, f"restart request failed validation: peer {a.peer} is on this node's deny list")
    assert b.manager.refusals.counts == {"peer-denied": 1}


def test_peer_lists_check_their_ids() -> None:
    with pytest.raises(ValueError, match="not a peer id: 'nope'"):
        PeerFilter(deny=["nope"])
    with pytest.raises(TypeError, match="a peer must be a PeerID or its base58 text"):
        PeerFilter(allow=[42])  # type: ignore[list-item]


# ------------------------------------------------------------------ the deal rate


def _call(peer: PeerID, chid: int, now: float, kind: str = "pull",
          restart: bool = False) -> ValidationCall:
    return ValidationCall(kind, ChannelID(peer, MINE, chid), peer,  # type: ignore[arg-type]
                          LabelVoucher(), now, restart)


MINE = PeerID(b"\x00\x08mine____")
P = PeerID(b"\x00\x08p_______")
Q = PeerID(b"\x00\x08q_______")


@pytest.mark.anyio
async def test_deal_rate_counts_new_deals_per_peer_in_a_sliding_window() -> None:
    rate = DealRate(2, 10.0)
    passed: list[ValidationCall] = []

    async def validator(call: ValidationCall) -> None:
        passed.append(call)

    chain = compose([rate], validator)
    await chain(_call(P, 1, 0.0))
    await chain(_call(P, 2, 4.0))
    with pytest.raises(DealRateExceeded,
                       match=f"^rejected: peer {P} asked for more than 2 new deals in 10 s$"):
        await chain(_call(P, 3, 9.0))
    await chain(_call(Q, 1, 9.0))  # each peer its own
    await chain(_call(P, 1, 9.5, restart=True))  # restarts and vouchers pass
    await chain(_call(P, 1, 9.5, kind="revalidate"))
    await chain(_call(P, 2, 9.9))  # another voucher for a deal counted: the same deal
    await chain(_call(P, 4, 10.0))  # the first left the window
    with pytest.raises(DealRateExceeded):
        await chain(_call(P, 5, 13.9))
    await chain(_call(P, 5, 14.0))
    assert [(c.channel_id.id, c.now) for c in passed if c.peer == P and c.is_new] == [
        (1, 0.0), (2, 4.0), (2, 9.9), (4, 10.0), (5, 14.0)]
    await chain(_call(Q, 2, 100.0))
    assert list(rate._seen) == [Q]  # peers quiet for an interval are forgotten


@pytest.mark.parametrize(("text", "per", "interval"), [
    ("10/60", 10, 60.0), ("10/1m", 10, 60.0), ("3/s", 3, 1.0), (" 5 / 2.5s ", 5, 2.5),
    ("100/h", 100, 3600.0), ("1/2min", 1, 120.0)])
def test_parse_deal_rate(text: str, per: int, interval: float) -> None:
    rate = parse_deal_rate(text)
    assert (rate.per_peer, rate.interval) == (per, interval)


@pytest.mark.parametrize("text", ["10", "10/", "ten/60", "10/60d", "0/60", "5/0"])
def test_parse_deal_rate_refuses_bad_rates(text: str) -> None:
    with pytest.raises(ValueError, match="deal rate"):
        parse_deal_rate(text)


@pytest.mark.parametrize(
    "anyio_backend",
    [pytest.param(("trio", {"clock": MockClock(autojump_threshold=0)}), id="trio-mockclock")],
)
@pytest.mark.anyio
async def test_a_peer_over_the_deal_rate_is_refused_until_the_window_passes() -> None:
    """On the Manager's clock (virtual here): two new pulls a minute."""
    async with harness() as h:
        a = await h.node("a")
        c = await h.node("c")
        b = await h.node("b", setup=telling(DealRate(2, 60)))
        start = anyio.current_time()
        states = [await pull(a, b) for _ in range(3)]
        other = await pull(c, b)
        assert anyio.current_time() - start < 60
        await anyio.sleep(60)
        later = await pull(a, b)
    assert [s.status for s in states] == [S.Completed, S.Completed, S.Failed]
    why = f"peer {a.peer} asked for more than 2 new deals in 60 s"
    assert states[2].voucher_results == (NoteResult(f"refused: {why}"),)
    assert (other.status, later.status) == (S.Completed, S.Completed)
    assert b.manager.refusals.counts["deal-rate-exceeded"] == 1
    assert b.manager.channels()[states[2].channel_id].message == f"refused: {why}"


# ------------------------------------------------------------------ logging


@pytest.mark.anyio
async def test_log_validation_logs_every_outcome(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="registry.middleware")
    async with harness() as h:
        a = await h.node("a")
        b = await h.node("b", setup=telling(LogValidation(), PeerFilter(deny=[h_peer("z")])))
        ok = await pull(a, b, LabelVoucher("ok"))
        no = await pull(a, b, LabelVoucher("reject"))
    lines = [r.getMessage() for r in caplog.records if r.name == "registry.middleware"]
    assert len(lines) == 2, lines
    assert lines[0].startswith("accepted pull of ") and str(ok.channel_id) in lines[0]
    assert lines[0].endswith(f"(test/voucher) on {ok.channel_id} from {a.peer}")
    assert lines[1].startswith("refused pull of ") and lines[1].endswith(": not today")
    assert str(no.channel_id) in lines[1]


def h_peer(name: str) -> PeerID:
    return PeerID(b"\x00\x08" + name.encode().ljust(8, b"_"))


def test_a_refusal_is_a_rejection_with_its_kind() -> None:
    assert issubclass(Refused, Exception)
    assert (PeerDenied.kind, DealRateExceeded.kind) == ("peer-denied", "deal-rate-exceeded")
    assert [type(m).__name__ for m in serve_middleware()] == ["LogValidation"]
    assert [type(m).__name__ for m in serve_middleware([str(P)], (), "2/s")] == [
        "LogValidation", "PeerFilter", "DealRate"]


# ------------------------------------------------------------------ the retrieval market


@pytest.mark.anyio
async def test_a_retrieval_client_denied_by_the_provider_reads_why() -> None:
    from datatransfer.markets.retrieval import DealRejected, register_client, register_provider

    async with harness() as h:
        holder: dict[str, Any] = {}

        def provider(manager: Manager) -> None:
            register_provider(manager, holder["bs"])
            manager.add_middleware(PeerFilter(deny=[h_peer("a")]))

        from datatransfer.ipld.blockstore import MemoryBlockstore

        holder["bs"] = bs = MemoryBlockstore()
        root, _, _ = make_dag(bs, leaves=2)
        p = await h.node("p", blockstore=bs, setup=provider)
        a = await h.node("a")
        client = register_client(a.manager)
        with anyio.fail_after(DEADLINE), pytest.raises(DealRejected) as info:
            await client.retrieve(p.peer, root)
    assert info.value.reason == f"peer {a.peer} is on this node's deny list"
    assert p.manager.refusals.counts == {"peer-denied": 1}


# ------------------------------------------------------------------ filtered subscriptions


class Collect:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen: list[tuple[str, str, ChannelID]] = []

    def __call__(self, event: Event, state: ChannelState) -> None:
        vtype = getattr(state.voucher, "type_id", None)
        with self.lock:
            self.seen.append((event.code.name, vtype, state.channel_id))


@pytest.mark.anyio
async def test_subscriptions_filtered_by_event_and_voucher_type() -> None:
    deals, accepts, both, every = Collect(), Collect(), Collect(), Collect()

    def setup(manager: Manager) -> None:
        manager.register_voucher_type(LabelVoucher, ScriptedValidator())
        manager.register_voucher_type(OtherVoucher, Accepting())
        manager.subscribe(deals, voucher_types={LabelVoucher})
        manager.subscribe(accepts, events={E.Accept, E.CleanupComplete})
        manager.subscribe(both, events=[E.Accept], voucher_types=["test/other"])
        manager.subscribe(every)

    async with harness() as h:
        a = await h.node("a")
        b = await h.node("b", setup=setup)
        one = (await pull(a, b, LabelVoucher())).channel_id
        root, _, _ = make_dag(b.blockstore, leaves=3, seed=9)
        two = await a.manager.open_pull_channel(b.peer, OtherVoucher(), root, ALL)
        await a.manager.wait(two, timeout=DEADLINE)
        await b.manager.wait(two, timeout=DEADLINE)
        await b.manager.wait(one, timeout=DEADLINE)
        assert b.manager.events.flush(DEADLINE)
    assert {(v, c) for _, v, c in every.seen} == {("test/voucher", one), ("test/other", two)}
    assert deals.seen == [s for s in every.seen if s[2] == one]
    assert accepts.seen == [s for s in every.seen if s[0] in ("Accept", "CleanupComplete")]
    assert [s[0] for s in accepts.seen] == ["Accept", "CleanupComplete"] * 2
    assert both.seen == [("Accept", "test/other", two)]


def test_filters_are_checked_when_subscribing() -> None:
    bus = EventBus()
    with pytest.raises(TypeError, match="events must be statemachine.EventCode members"):
        bus.subscribe(print, events=["Accept"])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="voucher_types must be type id strings"):
        bus.subscribe(print, voucher_types=[LabelVoucher])  # type: ignore[list-item]
    bus.close()


def test_a_filtered_subscriber_is_not_queued_events_it_does_not_want() -> None:
    """Filtered in ``publish``: an event no subscriber wants costs no queue
    entry and starts no worker thread."""
    from datatransfer.ipld.cid import CID

    bus = EventBus()
    got: list[str] = []
    bus.subscribe(lambda e, s: got.append(e.code.name), events={E.Accept},
                  voucher_types="test/voucher")
    state = ChannelState(channel_id=ChannelID(P, Q, 1), base_cid=CID.of(b"x"), selector=ALL,
                         voucher=("test/voucher", {}), sender=P, recipient=Q, total_size=0,
                         is_pull=True, self_peer=P)
    bus.publish(Event(E.Open), state)
    bus.publish(Event(E.Accept), ChannelState(**{**_fields(state), "voucher": LabelVoucher()}))
    bus.publish(Event(E.Accept), ChannelState(**{**_fields(state), "voucher": OtherVoucher()}))
    assert bus._pending <= 1
    assert bus.flush(DEADLINE)
    bus.publish(Event(E.Accept), state)  # undecoded: (type id, node)
    assert bus.close()
    assert got == ["Accept", "Accept"]


def _fields(state: ChannelState) -> dict[str, Any]:
    import dataclasses

    return {f.name: getattr(state, f.name) for f in dataclasses.fields(state)}


@pytest.mark.anyio
async def test_manager_subscribe_checks_voucher_types() -> None:
    async with harness() as h:
        a = await h.node("a")
        with pytest.raises(TypeError, match="a voucher type must be a Voucher subclass"):
            a.manager.subscribe(print, voucher_types=[42])  # type: ignore[list-item]


# ------------------------------------------------------------------ serve


@pytest.mark.timeout(300)
def test_cli_serve_refuses_peers_not_allowed(tmp_path: Path, procs: Any) -> None:
    """``serve --allow-peer`` naming another peer: a ``pull`` from this home
    is refused, the refusal listed by ``ls --all`` with the reason; a bad
    ``--deal-rate`` or peer id is a usage error."""
    bad = run("serve", "--deal-rate", "lots", "--home", tmp_path / "x", ok=False)
    assert bad.returncode == 2 and "not a deal rate: 'lots'" in bad.stderr
    bad = run("serve", "--deny-peer", "nope", "--home", tmp_path / "x", ok=False)
    assert bad.returncode == 2 and "not a peer id: 'nope'" in bad.stderr

    home = tmp_path / "server"
    src = tmp_path / "f.bin"
    src.write_bytes(b"allowed?\n" * 1000)
    cid = run("add", src, "--home", home).stdout.split()[-1]
    stranger = str(h_peer("stranger"))
    serve = procs([*CLI, "-v", "serve", "--home", str(home), "--listen", LOOPBACK,
                   "--allow-peer", stranger, "--deal-rate", "5/1m"])
    addr = serve.expect(lambda w: w[0].startswith("/ip4/"))[0]
    pulled = run("pull", addr, cid, "--home", tmp_path / "client", "-o", tmp_path / "out",
                 ok=False)
    assert pulled.returncode != 0, pulled.stdout
    rows: list[dict] = []
    deadline = time.monotonic() + TIMEOUT
    while not rows and time.monotonic() < deadline:  # (kept right after the answer)
        rows = json.loads(run("ls", "--all", "--json", "--home", home).stdout)
    assert len(rows) == 1, rows
    assert rows[0]["status"] == "Failed"
    assert rows[0]["message"].startswith("refused: peer ")
    assert rows[0]["message"].endswith(" is not on this node's allow list")
    serve.kill()
    log = "".join(serve.stderr)
    assert "registry.middleware: refused pull of" in log, log
