"""The event bus: delivers every channel event to subscribers.

Delivery policy (why it is built this way):

* ``publish`` never blocks and never runs subscriber code. The engine calls it
  from its hot path; a slow or broken subscriber must not stall transfers.
* Each subscription has its own FIFO queue and at most one worker thread
  draining it, so every subscriber sees the events of a channel in the order
  they happened, and one that blocks delays only itself. Workers start when
  events arrive and exit after ``idle_seconds`` without events, so thousands
  of quiet per-channel subscriptions cost no threads.
* A subscriber that raises is logged (logger ``datatransfer.events``) and
  counted in :attr:`EventBus.errors`; it stays subscribed and receives the
  next events.
* A subscription may name the event codes and the channels' voucher types
  it wants (a market follows its own deals only): the bus checks both in
  ``publish``, so a filtered-out event costs no queue entry and no thread.
* A subscriber is judged stuck when more than ``queue_limit`` events wait for
  it *and* its current call has been running for over ``stall_seconds``: it is
  unsubscribed, its queue is dropped, and this is logged as an error and
  recorded in :attr:`EventBus.dropped` (never silently). This bounds the memory
  a stuck subscriber can hold, while a burst that a healthy subscriber has not
  yet drained is kept whole.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from statemachine import EventCode

if TYPE_CHECKING:
    from datatransfer.types import ChannelID, ChannelState, Event

log = logging.getLogger("datatransfer.events")

_UNSET = object()

Subscriber = Callable[["Event", "ChannelState"], object]
Unsubscribe = Callable[[], None]


def _codes(events: Iterable[EventCode] | EventCode | None) -> frozenset[EventCode] | None:
    if events is None:
        return None
    if isinstance(events, EventCode):
        events = (events,)
    codes = frozenset(events)
    for code in codes:
        if not isinstance(code, EventCode):
            raise TypeError(f"events must be statemachine.EventCode members, not {code!r}")
    return codes


def _voucher_type(state: ChannelState) -> object:
    """The type id of the voucher that opened the channel (a voucher of a
    type this node does not decode stays ``(type_id, node)``)."""
    voucher = state.voucher
    if isinstance(voucher, tuple):
        return voucher[0] if voucher else None
    return getattr(voucher, "type_id", None)


class _Subscription:
    __slots__ = ("bus", "fn", "channel_id", "codes", "voucher_types", "queue", "worker",
                 "active", "name", "busy_since")

    def __init__(self, bus: EventBus, fn: Subscriber, channel_id: ChannelID | None,
                 codes: frozenset[EventCode] | None = None,
                 voucher_types: frozenset[str] | None = None) -> None:
        self.bus = bus
        self.fn = fn
        self.channel_id = channel_id
        self.codes = codes
        self.voucher_types = voucher_types
        self.queue: deque[tuple[Event, ChannelState]] = deque()
        self.worker: threading.Thread | None = None
        self.active = True
        self.name = getattr(fn, "__qualname__", repr(fn))
        self.busy_since: float | None = None


class EventBus:
    """Fan-out of ``(event, channel_state)`` to subscribers; see module docs."""

    def __init__(
        self, queue_limit: int = 10_000, idle_seconds: float = 1.0, stall_seconds: float = 10.0
    ) -> None:
        self.queue_limit = queue_limit
        self.stall_seconds = stall_seconds
        self.idle_seconds = idle_seconds
        self._lock = threading.Condition()
        self._all: list[_Subscription] = []
        self._by_channel: dict[ChannelID, list[_Subscription]] = {}
        self._pending = 0  # queued plus in-flight deliveries, for flush()
        self._closed = False
        #: Exceptions raised by subscribers since the bus started.
        self.errors = 0
        #: Names of subscribers dropped for falling too far behind.
        self.dropped: list[str] = []

    # -- subscribing ---------------------------------------------------------

    def subscribe(self, fn: Subscriber, *, events: Iterable[EventCode] | None = None,
                  voucher_types: Iterable[str] | None = None) -> Unsubscribe:
        """Receive every event of every channel, or only those whose code is
        in ``events``, of channels opened with a voucher whose type id is in
        ``voucher_types``; returns the unsubscribe call."""
        vtypes = None
        if voucher_types is not None:
            vtypes = frozenset((voucher_types,) if isinstance(voucher_types, str)
                               else voucher_types)
            for vt in vtypes:
                if not isinstance(vt, str):
                    raise TypeError(f"voucher_types must be type id strings, not {vt!r}")
        return self._add(fn, None, _codes(events), vtypes)

    def subscribe_channel(self, channel_id: ChannelID, fn: Subscriber, *,
                          events: Iterable[EventCode] | None = None) -> Unsubscribe:
        """Receive the events of one channel only (of those codes only, if
        ``events`` is given); returns the unsubscribe call."""
        return self._add(fn, channel_id, _codes(events))

    def _add(self, fn: Subscriber, channel_id: ChannelID | None,
             codes: frozenset[EventCode] | None = None,
             voucher_types: frozenset[str] | None = None) -> Unsubscribe:
        if not callable(fn):
            raise TypeError(f"subscriber {fn!r} is not callable")
        sub = _Subscription(self, fn, channel_id, codes, voucher_types)
        with self._lock:
            if self._closed:
                raise RuntimeError("event bus is closed")
            if channel_id is None:
                self._all.append(sub)
            else:
                self._by_channel.setdefault(channel_id, []).append(sub)

        def unsubscribe() -> None:
            with self._lock:
                self._remove(sub)

        return unsubscribe

    def _remove(self, sub: _Subscription) -> None:
        # caller holds the lock
        if not sub.active:
            return
        sub.active = False
        if sub.channel_id is None:
            self._all.remove(sub)
        else:
            subs = self._by_channel.get(sub.channel_id, [])
            subs.remove(sub)
            if not subs:
                self._by_channel.pop(sub.channel_id, None)
        self._pending -= len(sub.queue)
        sub.queue.clear()
        self._lock.notify_all()

    def subscriber_count(self, channel_id: ChannelID | None = None) -> int:
        """How many subscriptions receive events of ``channel_id`` (or all)."""
        with self._lock:
            if channel_id is None:
                return len(self._all) + sum(len(v) for v in self._by_channel.values())
            return len(self._all) + len(self._by_channel.get(channel_id, ()))

    # -- publishing ------------------------------------------------------------

    def publish(self, event: Event, state: ChannelState) -> None:
        """Queue ``(event, state)`` for every interested subscriber. Never blocks."""
        with self._lock:
            if self._closed:
                return
            targets = self._all + self._by_channel.get(state.channel_id, [])
            now = time.monotonic()
            vtype: object = _UNSET
            for sub in targets:
                if sub.codes is not None and event.code not in sub.codes:
                    continue
                if sub.voucher_types is not None:
                    if vtype is _UNSET:
                        vtype = _voucher_type(state)
                    if vtype not in sub.voucher_types:
                        continue
                if (
                    len(sub.queue) >= self.queue_limit
                    and sub.busy_since is not None
                    and now - sub.busy_since > self.stall_seconds
                ):
                    log.error(
                        "dropping event subscriber %s: stuck for %.1f s in one call with "
                        "%d events undelivered (limit %d)",
                        sub.name, now - sub.busy_since, len(sub.queue), self.queue_limit,
                    )
                    self.dropped.append(sub.name)
                    self._remove(sub)
                    continue
                sub.queue.append((event, state))
                self._pending += 1
                if sub.worker is None:
                    sub.worker = threading.Thread(
                        target=self._drain, args=(sub,), name=f"dt-events-{sub.name}", daemon=True
                    )
                    sub.worker.start()
                else:
                    self._lock.notify_all()

    def _drain(self, sub: _Subscription) -> None:
        while True:
            with self._lock:
                if not sub.queue and sub.active and not self._closed:
                    self._lock.wait_for(
                        lambda: sub.queue or not sub.active or self._closed, self.idle_seconds
                    )
                if not sub.queue or not sub.active:
                    sub.worker = None
                    return
                event, state = sub.queue.popleft()
                sub.busy_since = time.monotonic()
            try:
                sub.fn(event, state)
            except Exception:
                with self._lock:
                    self.errors += 1
                log.exception("event subscriber %s raised on %s", sub.name, event.code.name)
            finally:
                with self._lock:
                    sub.busy_since = None
                    self._pending -= 1
                    self._lock.notify_all()

    # -- lifecycle -----------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued event has been delivered (or its subscriber
        removed). Returns False if ``timeout`` passed first."""
        with self._lock:
            return self._lock.wait_for(lambda: self._pending <= 0, timeout)

    def close(self, timeout: float = 5.0) -> bool:
        """Deliver what is queued (up to ``timeout``), then stop all workers and
        refuse new subscriptions. Returns False if some events were not delivered."""
        delivered = self.flush(timeout)
        with self._lock:
            self._closed = True
            subs = self._all + [s for v in self._by_channel.values() for s in v]
            for sub in subs:
                self._remove(sub)
            workers = [s.worker for s in subs if s.worker is not None]
            self._lock.notify_all()
        for worker in workers:
            if worker is not threading.current_thread():
                worker.join(timeout)
        return delivered
