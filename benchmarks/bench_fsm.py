"""State machine throughput with 10,000 live channels.

A plan of random *legal* events over 10,000 channel records is generated
first (outside the timing), then replayed three times in the same run:

* through :func:`statemachine.apply` (status changes through the shared
  ``transitions`` machine, status-keeping rows through its precomputed fast
  path; argument checks and data effects included) -- the figure we care
  about;
* through :func:`statemachine.machine.apply_via_transitions`, the old path:
  every event fired through ``transitions``' ``Event.trigger``, as ``apply``
  did before it had a fast path -- printed beside it with the ratio;
* through a plain dict ``(status, event) -> status`` lookup built from the
  same table, status only -- the cheapest possible transition, so that ratio
  is the cost of the library and the effects.

The two library replays must end with identical records, and all three with
the same statuses.

Events are weighted the way a real transfer produces them (mostly data and
progress events).  CleanupComplete is left out so that channels stay live: a
final channel accepts nothing, and the point is to measure live channels.

A second line compares the memory one channel costs (its record) with one
``transitions`` machine per channel, the design we avoided.
"""

from __future__ import annotations

import gc
import random
import time
import tracemalloc
from typing import Any

from transitions import Machine

from benchmarks._report import Reporter
from statemachine import ChannelRecord, EventCode, Kind, Status, allowed_events, apply, rows
from statemachine.machine import apply_via_transitions

CHANNELS = 10_000
E = EventCode

DATA_EVENTS = (
    E.DataSentProgress, E.DataReceivedProgress, E.DataQueuedProgress,
    E.DataSent, E.DataReceived, E.DataQueued,
)  # fmt: skip
DATA_SHARE = 0.8

_ERROR: dict[str, Any] = {"error": "transport hiccup"}
_VOUCHER: dict[str, Any] = {"voucher": b"voucher"}
_RESULT: dict[str, Any] = {"voucher_result": b"result"}
_NONE: dict[str, Any] = {}


def _args(event: EventCode, rng: random.Random, step: int) -> dict[str, Any]:
    if event in (E.DataSentProgress, E.DataReceivedProgress, E.DataQueuedProgress):
        return {"delta": rng.randrange(1, 1 << 18)}
    if event in (E.DataSent, E.DataReceived, E.DataQueued):
        return {"index": step}
    if event in (E.Error, E.Disconnected, E.SendDataError, E.ReceiveDataError, E.RequestCancelled):
        return _ERROR
    if event is E.NewVoucher:
        return _VOUCHER
    if event is E.NewVoucherResult:
        return _RESULT
    return _NONE


def _plan(events: int, seed: int = 1) -> Plan:
    """A sequence of (channel, event, args), each legal when replayed in order."""
    rng = random.Random(seed)
    table = {(row.source, row.event): row.target for row in rows()}
    data: dict[Status, list[EventCode]] = {}
    other: dict[Status, list[EventCode]] = {}
    for status in Status:
        legal = allowed_events(status) - {E.CleanupComplete}
        data[status] = sorted(legal & set(DATA_EVENTS))
        other[status] = sorted(legal - set(DATA_EVENTS))
    statuses = [Status.Requested] * CHANNELS
    plan = []
    for step in range(events):
        channel = rng.randrange(CHANNELS)
        status = statuses[channel]
        pool = data[status] if data[status] and rng.random() < DATA_SHARE else other[status]
        event = rng.choice(pool)
        statuses[channel] = table[(status, event)]
        plan.append((channel, event, _args(event, rng, step)))
    return plan


Plan = list[tuple[int, EventCode, dict[str, Any]]]


def _replay_library(plan: Plan, fn: Any = apply) -> tuple[float, list[ChannelRecord]]:
    records = [ChannelRecord() for _ in range(CHANNELS)]
    gc.collect()
    start = time.perf_counter()
    for channel, event, args in plan:
        fn(records[channel], event, **args)
    elapsed = time.perf_counter() - start
    return len(plan) / elapsed, records


def _replay_dict(plan: Plan) -> tuple[float, list[Status]]:
    table = {(row.source, row.event): row.target for row in rows()}
    statuses = [Status.Requested] * CHANNELS
    gc.collect()
    start = time.perf_counter()
    for channel, event, _args in plan:
        statuses[channel] = table[(statuses[channel], event)]
    elapsed = time.perf_counter() - start
    return len(plan) / elapsed, statuses


def _bytes(build: Any) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        keep = build()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    del keep
    return after - before


def _machine_per_channel() -> Any:
    """What one channel would cost with a machine of its own (the avoided design)."""

    class Model:
        status = Status.Requested

    model = Model()
    machine = Machine(
        model=model,
        states=[s for s in Status if s is not Status.ChannelNotFoundError],
        initial=Status.Requested,
        auto_transitions=False,
        model_attribute="status",
    )
    for row in rows():
        machine.add_transition(
            row.event.name, row.source, row.target if row.kind is Kind.MOVE else None
        )
    return model, machine


def run(report: Reporter, quick: bool) -> None:
    events = 60_000 if quick else 200_000
    repeats = 2 if quick else 3
    plan = _plan(events)
    apply_via_transitions(ChannelRecord(), EventCode.Accept)  # build the reference machine now
    best_lib = best_old = best_dict = 0.0
    for _ in range(repeats):
        lib_rate, lib_records = _replay_library(plan)
        old_rate, old_records = _replay_library(plan, apply_via_transitions)
        dict_rate, dict_statuses = _replay_dict(plan)
        if lib_records != old_records:
            raise AssertionError("apply and apply_via_transitions disagree on the records")
        lib_statuses = [r.status for r in lib_records]
        if lib_statuses != dict_statuses:
            raise AssertionError("the library and the dict replay disagree on final statuses")
        best_lib = max(best_lib, lib_rate)
        best_old = max(best_old, old_rate)
        best_dict = max(best_dict, dict_rate)
    live = sum(
        1 for s in lib_statuses if s not in (Status.Completed, Status.Failed, Status.Cancelled)
    )
    report.line(
        f"fsm events applied, {CHANNELS:,} channels ({live:,} live)",
        best_lib,
        "events/s",
        "old path (all through transitions)",
        best_old,
    )
    report.line(
        f"fsm events applied, {CHANNELS:,} channels ({live:,} live)",
        best_lib,
        "events/s",
        "dict-lookup transition (status only)",
        best_dict,
    )
    samples = 1000
    per_record = _bytes(lambda: [ChannelRecord() for _ in range(samples)]) / samples
    per_machine = _bytes(_machine_per_channel)
    report.line(
        "fsm memory per channel (shared machine: record only)",
        per_record,
        "bytes",
        "one transitions.Machine per channel",
        per_machine,
    )
