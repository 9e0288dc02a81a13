"""Timeouts and the restart policy (:mod:`datatransfer.monitor`), driven
directly: plain function calls with the time passed in, no event loop."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from datatransfer.config import ManagerConfig
from datatransfer.monitor import Action, Due, due, restart_delay
from statemachine import (
    ENDING_STATUSES,
    FINALIZING_STATUSES,
    MACHINE_STATUSES,
    ChannelRecord,
)
from statemachine import Status as S

CFG = ManagerConfig(accept_timeout=30, no_progress_timeout=60, finalization_timeout=90,
                    peer_pause_timeout=600)


def watch(status: S, *, initiator: bool = True, since: float = 0.0, active: float = 0.0,
          data_open: bool = False, **flags: bool) -> dict:
    """:func:`due`'s arguments for a channel: its record (with ``flags``) and timing."""
    return {"record": ChannelRecord(status=status, **flags), "is_initiator": initiator,
            "status_since": since, "last_activity": active, "data_open": data_open}


def check(w: dict, config: ManagerConfig, now: float) -> Due | None:
    return due(config=config, now=now, **w)


@pytest.mark.parametrize("status, initiator, flags, quiet, late, expected", [
    (S.Requested, True, {}, 30, 30.5, Action.FAIL),
    (S.Ongoing, True, {}, 60, 61, Action.RESTART),
    (S.Ongoing, False, {}, 60, 61, Action.FAIL),
    (S.TransferFinished, True, {}, 60, 61, Action.RESTART),
    (S.Finalizing, False, {}, 90, 91, Action.FAIL),
    (S.ResponderFinalizing, True, {"paid_while_finalizing": True}, 90, 91, Action.ASK_AGAIN),
    (S.InitiatorPaused, False, {"data_open": True}, 600, 601, Action.FAIL),
    # once the data request is gone, a paused peer gets the no-progress timeout
    (S.InitiatorPaused, False, {}, 60, 61, Action.FAIL),
])
def test_each_timeout_fires_just_after_its_limit(status, initiator, flags, quiet, late,
                                                 expected):
    w = watch(status, initiator=initiator, **flags)
    assert check(w, CFG, quiet) is None
    found = check(w, CFG, late)
    assert isinstance(found, Due) and found.action is expected, found
    assert found.reason


def test_nothing_is_due_for_ending_channels_or_ones_this_app_paused():
    for status in ENDING_STATUSES:
        assert check(watch(status), CFG, 1e9) is None
    assert check(watch(S.Ongoing, app_paused=True), CFG, 1e9) is None


@pytest.mark.parametrize("status, flags", [
    (S.Ongoing, {}), (S.InitiatorPaused, {"data_open": True}), (S.Finalizing, {}),
])
def test_nothing_is_due_while_the_data_request_waits_in_this_nodes_queue(status, flags):
    """The wait is this node's own (its limit of requests in progress), not
    the peer's: no timeout blames the peer, however long it lasts; the
    clock runs again once the request is served."""
    w = watch(status, initiator=False, **flags)
    assert check(w, CFG, 1e9) is not None
    assert check({**w, "queued_here": True}, CFG, 1e9) is None


def test_activity_and_a_new_status_restart_the_clock():
    assert check(watch(S.Ongoing, since=0, active=50), CFG, 100) is None
    assert check(watch(S.Ongoing, since=50, active=0), CFG, 100) is None
    assert check(watch(S.Ongoing, since=0, active=50), CFG, 111) is not None


def test_disabled_timeouts_never_fire():
    off = ManagerConfig(accept_timeout=None, no_progress_timeout=None,
                        finalization_timeout=None, peer_pause_timeout=None)
    for status in MACHINE_STATUSES:
        for initiator in (True, False):
            assert check(watch(status, initiator=initiator, data_open=True), off, 1e12) is None


statuses = st.sampled_from(MACHINE_STATUSES)
times = st.floats(min_value=0, max_value=1e6, allow_nan=False)


@given(statuses, st.booleans(), st.booleans(), st.booleans(), times, times, times,
       st.floats(min_value=0, max_value=1e6))
def test_once_due_a_timeout_stays_due_and_never_fires_early(
        status, initiator, data_open, paid, since, active, now, later):
    """Time only makes a timeout more due (same action), and nothing fires
    before the shortest limit that could apply has passed."""
    w = watch(status, initiator=initiator, since=since, active=active, data_open=data_open,
              paid_while_finalizing=paid)
    found = check(w, CFG, now)
    if found is not None:
        assert check(w, CFG, now + later) == found
        assert now - since > min(CFG.accept_timeout, CFG.no_progress_timeout)
    if status in FINALIZING_STATUSES and found is not None:
        assert found.action in (Action.FAIL, Action.ASK_AGAIN)


def test_restart_delay_doubles_up_to_its_bound_then_gives_up():
    cfg = ManagerConfig(restart_backoff=0.5, max_restart_backoff=3.0, max_restarts=5)
    assert [restart_delay(n, cfg) for n in range(6)] == [0.5, 1.0, 2.0, 3.0, 3.0, None]


def test_by_default_restarts_are_bounded_by_time_not_by_a_count():
    """A peer away for minutes (a server restarting) finds the channel still
    trying: by default restarts go on for 10 minutes without progress,
    however many tries that takes, then give up."""
    cfg = ManagerConfig()
    assert cfg.max_restarts is None and cfg.restart_window == 600.0
    assert restart_delay(1000, cfg, stalled_for=599.0) == cfg.max_restart_backoff
    assert restart_delay(3, cfg, stalled_for=600.0) is None
    with pytest.raises(ValueError):
        ManagerConfig(max_restarts=None, restart_window=None)


def test_an_initiator_whose_restart_went_unanswered_restarts_again():
    """A request replaced by a restart is no longer listened to; if the
    restart is lost, the accept timeout asks again instead of failing."""
    cfg = ManagerConfig(accept_timeout=10.0)
    rec = ChannelRecord()  # Requested
    kw = dict(is_initiator=True, status_since=0.0)
    assert due(rec, cfg, 11.0, last_activity=0.0, **kw).action is Action.FAIL
    assert due(rec, cfg, 11.0, last_activity=5.0, restarts=1, **kw) is None
    found = due(rec, cfg, 16.0, last_activity=5.0, restarts=1, **kw)
    assert found is not None and found.action is Action.RESTART
