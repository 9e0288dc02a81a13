"""The event bus delivery policy: order per subscriber, isolation from
subscribers that raise or block, bounded backlog, unsubscribe."""

from __future__ import annotations

import threading
import time

import pytest
from _support import DEADLINE

from datatransfer.events import EventBus
from datatransfer.ipld.cid import CID
from datatransfer.types import ChannelID, ChannelState, Event, PeerID
from statemachine import EventCode, Status

A = PeerID(b"\x00\x04peer-a")
B = PeerID(b"\x00\x04peer-b")
ROOT = CID.of(b"root")


def state(n: int, status: Status = Status.Ongoing) -> ChannelState:
    chid = ChannelID(A, B, n)
    return ChannelState(chid, ROOT, None, None, A, B, 0, False, A, status=status)


def test_events_reach_each_subscriber_in_order():
    bus = EventBus()
    seen: dict[str, list] = {"x": [], "y": []}
    bus.subscribe(lambda e, s: seen["x"].append((s.channel_id.id, e.message)))
    bus.subscribe(lambda e, s: seen["y"].append((s.channel_id.id, e.message)))
    expected = []
    for i in range(500):
        chid = i % 5
        bus.publish(Event(EventCode.DataReceived, str(i)), state(chid))
        expected.append((chid, str(i)))
    assert bus.flush(DEADLINE)
    assert seen["x"] == expected
    assert seen["y"] == expected
    bus.close()


def test_per_channel_subscriber_sees_only_its_channel():
    bus = EventBus()
    got = []
    bus.subscribe_channel(ChannelID(A, B, 2), lambda e, s: got.append(e.message))
    for i in range(20):
        bus.publish(Event(EventCode.DataSent, str(i)), state(i % 4))
    assert bus.flush(DEADLINE)
    assert got == [str(i) for i in range(20) if i % 4 == 2]
    assert bus.subscriber_count(ChannelID(A, B, 2)) == 1
    assert bus.subscriber_count(ChannelID(A, B, 3)) == 0
    bus.close()


def test_unsubscribe_stops_delivery():
    bus = EventBus()
    got = []
    unsubscribe = bus.subscribe(lambda e, s: got.append(e.message))
    bus.publish(Event(EventCode.Open, "1"), state(1))
    assert bus.flush(DEADLINE)
    unsubscribe()
    unsubscribe()  # idempotent
    bus.publish(Event(EventCode.Open, "2"), state(1))
    assert bus.flush(DEADLINE)
    assert got == ["1"]
    bus.close()


def test_a_raising_subscriber_does_not_disturb_others_and_stays_subscribed(caplog):
    bus = EventBus()
    good = []
    calls = []

    def bad(event, _state):
        calls.append(event.message)
        raise RuntimeError("subscriber bug")

    bus.subscribe(bad)
    bus.subscribe(lambda e, s: good.append(e.message))
    for i in range(10):
        bus.publish(Event(EventCode.Accept, str(i)), state(1))
    assert bus.flush(DEADLINE)
    assert good == [str(i) for i in range(10)]
    assert calls == good  # still subscribed after raising
    assert bus.errors == 10
    assert "subscriber bug" in caplog.text
    bus.close()


def test_a_blocking_subscriber_stalls_neither_publisher_nor_others():
    bus = EventBus(queue_limit=1_000)
    release = threading.Event()
    returned = threading.Event()
    fast = []

    def blocked(event, _state):
        release.wait(DEADLINE)
        returned.set()

    bus.subscribe(blocked)
    bus.subscribe(lambda e, s: fast.append(e.message))
    for i in range(200):
        bus.publish(Event(EventCode.DataQueued, str(i)), state(1))
    # publishing never waited on the blocked subscriber: it is still blocked
    assert not returned.is_set()
    deadline = time.monotonic() + DEADLINE
    while len(fast) < 200 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(fast) == 200  # delivered while the other subscriber is blocked
    assert not returned.is_set()
    release.set()
    assert bus.flush(DEADLINE)
    bus.close()


def test_a_burst_is_kept_whole_for_healthy_subscribers():
    bus = EventBus(queue_limit=5, stall_seconds=5)
    got = []
    bus.subscribe(lambda e, s: got.append(e.message))
    for i in range(1_000):
        bus.publish(Event(EventCode.DataSent, str(i)), state(1))
    assert bus.flush(DEADLINE)
    assert got == [str(i) for i in range(1_000)]
    assert bus.dropped == []
    bus.close()


def test_a_stuck_subscriber_is_dropped_loudly(caplog):
    bus = EventBus(queue_limit=5, stall_seconds=0.1)
    release = threading.Event()
    entered = threading.Event()
    fast = []

    def stuck(event, _state):
        entered.set()
        release.wait(10)

    bus.subscribe(stuck)
    bus.subscribe(lambda e, s: fast.append(e.message))
    bus.publish(Event(EventCode.Open, "first"), state(1))
    assert entered.wait(5)
    time.sleep(0.2)
    for i in range(20):
        bus.publish(Event(EventCode.DataSent, str(i)), state(1))
    assert len(bus.dropped) == 1 and "stuck" in bus.dropped[0]
    assert "dropping event subscriber" in caplog.text
    assert bus.subscriber_count() == 1
    release.set()
    assert bus.flush(DEADLINE)
    assert fast == ["first"] + [str(i) for i in range(20)]
    bus.close()


def test_idle_workers_exit_and_close_joins_them():
    bus = EventBus(idle_seconds=0.05)
    bus.subscribe(lambda e, s: None)
    bus.publish(Event(EventCode.Open), state(1))
    assert bus.flush(DEADLINE)
    deadline = time.monotonic() + 5
    while any(t.name.startswith("dt-events-test_idle") for t in threading.enumerate()):
        assert time.monotonic() < deadline, "idle event worker never exited"
        time.sleep(0.02)
    assert bus.close()
    with pytest.raises(RuntimeError):
        bus.subscribe(lambda e, s: None)
