"""The channel store contract, run against every implementation: what the
Manager relies on (and what a networked store for a fleet must provide)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from datatransfer.channel import Channel
from datatransfer.ipld.cid import CID
from datatransfer.ipld.selector import ALL_SELECTOR_NODE
from datatransfer.store import (
    ChannelStore,
    MemoryChannelStore,
    SqliteChannelStore,
    StoreError,
)
from datatransfer.types import ChannelID, PeerID
from statemachine import ChannelRecord, Status

A, B, C = PeerID(b"\x00\x01a"), PeerID(b"\x00\x01b"), PeerID(b"\x00\x01c")
ROOT = CID.of(b"root", codec=0x55)


@pytest.fixture(params=["sqlite-file", "sqlite-memory", "memory"])
def store(request, tmp_path: Path) -> Iterator[ChannelStore]:
    made = {
        "sqlite-file": lambda: SqliteChannelStore(tmp_path / "channels.sqlite"),
        "sqlite-memory": lambda: SqliteChannelStore(),
        "memory": MemoryChannelStore,
    }[request.param]()
    with made:
        yield made


def channel(initiator: PeerID, responder: PeerID, tid: int, status: Status = Status.Ongoing,
            voucher: object = None) -> Channel:
    return Channel(
        channel_id=ChannelID(initiator, responder, tid), self_peer=initiator, base_cid=ROOT,
        selector=ALL_SELECTOR_NODE, voucher=("t/v", {"x": 1} if voucher is None else voucher),
        sender=responder, recipient=initiator, is_pull=True, total_size=99,
        record=ChannelRecord(status=status, received=10, received_index=2,
                             vouchers=[("t/v", {"x": 2})], app_paused=True,
                             paused_for_voucher=True, awaiting_validation=False,
                             paid_while_finalizing=True),
        restarts=1)


def test_round_trip_keeps_every_field(store):
    ch = channel(A, B, 7)
    store.save(ch)
    got = store.load(ch.channel_id)
    assert got == ch
    assert got is not ch
    assert store.load(ChannelID(A, B, 8)) is None


def test_save_replaces_and_record_overrides(store):
    ch = channel(A, B, 1)
    store.save(ch)
    newer = ch.record.copy()
    newer.status = Status.Completed
    newer.received = 20
    store.save(ch, record=newer)
    got = store.load(ch.channel_id)
    assert (got.record.status, got.record.received) == (Status.Completed, 20)
    assert ch.record.status == Status.Ongoing  # the channel itself untouched
    assert len(list(store.all())) == 1


def test_live_counts_and_transfer_ids(store):
    store.save(channel(A, B, 1, Status.Ongoing))
    store.save(channel(A, C, 5, Status.Completed))
    store.save(channel(A, B, 3, Status.Failed))
    store.save(channel(B, A, 9, Status.ResponderPaused))
    assert sorted(c.channel_id.id for c in store.live()) == [1, 9]
    assert store.count_by_status() == {Status.Ongoing: 1, Status.Completed: 1,
                                       Status.Failed: 1, Status.ResponderPaused: 1}
    assert store.max_transfer_id(A) == 5
    assert store.max_transfer_id(B) == 9
    assert store.max_transfer_id(C) == 0


def test_a_record_that_cannot_be_stored_is_refused_and_changes_nothing(store):
    ch = channel(A, B, 1)
    store.save(ch)
    deep: object = 1
    for _ in range(300):
        deep = [deep]
    bad = channel(A, B, 1, Status.Completed, voucher=deep)
    with pytest.raises(StoreError, match="cannot be stored"):
        store.save(bad)
    assert store.load(ch.channel_id) == ch


def test_records_stored_before_the_protocol_flags_read_with_them_cleared(store):
    """A document written before the record held its protocol flags (no
    ``vpause``/``revalid``/``paidfin`` keys) still reads."""
    from datatransfer.ipld import dagcbor
    from datatransfer.store import decode_channel, encode_channel

    ch = channel(A, B, 4)
    doc = dagcbor.decode(encode_channel(ch))
    for key in ("vpause", "revalid", "paidfin"):
        del doc[key]
    old = decode_channel(ch.channel_id, dagcbor.encode(doc))
    assert old.record.app_paused is True
    assert (old.record.paused_for_voucher, old.record.awaiting_validation,
            old.record.paid_while_finalizing) == (False, False, False)


def refused(initiator: PeerID, tid: int, why: str = "no validator") -> Channel:
    ch = channel(initiator, A, tid, Status.Failed)
    ch.record = ChannelRecord(status=Status.Failed, message=f"refused: {why}")
    return ch


def test_refused_requests_are_kept_apart_bounded_newest_first(store):
    """Refused requests are listed and loaded, never live nor counted as
    channels; past the limit the oldest go, a channel of the same id wins."""
    ok = channel(A, B, 1, Status.Completed)
    store.save(ok)
    for tid in range(1, 6):
        store.keep_refused(refused(C, tid, f"why {tid}"), limit=3)
    kept = {ch.channel_id.id: ch.record.message for ch in store.all()
            if ch.channel_id.initiator == C}
    assert kept == {3: "refused: why 3", 4: "refused: why 4", 5: "refused: why 5"}
    assert store.load(ChannelID(C, A, 5)) == refused(C, 5, "why 5")
    assert store.load(ChannelID(C, A, 1)) is None
    assert list(store.live()) == []
    assert store.count_by_status() == {Status.Completed: 1}
    assert store.max_transfer_id(C) == 0
    # kept again (the same id refused twice): one record, now the newest
    store.keep_refused(refused(C, 3, "again"), limit=3)
    store.keep_refused(refused(C, 6), limit=3)
    assert sorted(ch.channel_id.id for ch in store.all() if ch.channel_id.initiator == C) == [3, 5, 6]
    # the same id accepted later: the channel is what all() and load() give
    later = channel(C, A, 6, Status.Ongoing)
    store.save(later)
    assert store.load(later.channel_id) == later
    assert [ch for ch in store.all() if ch.channel_id == later.channel_id] == [later]
    store.keep_refused(refused(C, 7), limit=0)
    assert [ch.channel_id for ch in store.all() if ch.record.message.startswith("refused")] == []


def test_refused_requests_survive_reopening_a_sqlite_store(tmp_path):
    path = tmp_path / "channels.sqlite"
    with SqliteChannelStore(path) as first:
        first.keep_refused(refused(C, 9, "unknown voucher type"), limit=10)
    with SqliteChannelStore(path) as again:
        assert [ch.record.message for ch in again.all()] == ["refused: unknown voucher type"]
