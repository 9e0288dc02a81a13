"""Channel timeouts and the restart policy, as pure functions.

Go keeps these apart from the channel rules (``channelmonitor/``); here they
are functions of a channel's record and what the Manager knows of its timing, its
:class:`~datatransfer.config.ManagerConfig` and the current time, which is
passed in: they never read the clock, never await and change nothing. The
Manager's watchdog calls :func:`due` for each live channel on every tick and
carries out what it returns; :func:`restart_delay` says how long to wait
before the next restart, or that the channel should give up.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from datatransfer.config import ManagerConfig
from statemachine import (
    FINALIZING_STATUSES,
    ChannelRecord,
    Status,
    initiator_paused,
    is_ending,
)


class Action(enum.Enum):
    """What a due timeout asks of the Manager."""

    #: Fail the channel here with the reason (and tell the peer if connected).
    FAIL = "fail"
    #: Restart the channel (an initiator that stopped hearing from its peer).
    RESTART = "restart"
    #: Restart to ask again: the final voucher was paid and not answered.
    ASK_AGAIN = "ask-again"


@dataclass(frozen=True, slots=True)
class Due:
    action: Action
    reason: str


def due(record: ChannelRecord, config: ManagerConfig, now: float, *, is_initiator: bool,
        status_since: float, last_activity: float, data_open: bool = False,
        restarts: int = 0, queued_here: bool = False) -> Due | None:
    """The timeout that has run out at ``now`` for the channel whose record
    is ``record`` (its status and its flags: paused by this node's
    application, paid while finalizing), if any. ``status_since``: when it
    entered its status; ``last_activity``: when data or a message last moved
    on it (monotonic seconds); ``data_open``: its data request is open;
    ``restarts``: restarts since data last moved; ``queued_here``: its
    data request waits in this node's own queue (its limit of requests in
    progress), so the wait is this node's and no timeout blames the peer."""
    status = record.status
    if is_ending(status) or record.app_paused or queued_here:
        return None
    waited = now - max(last_activity, status_since)
    if status == Status.Requested and config.accept_timeout is not None:
        if now - status_since > config.accept_timeout:
            if is_initiator and restarts:
                # the request was replaced by a restart, which may have been
                # lost (the answer to the request it replaced is no longer
                # taken): ask again, within the restart budget, rather than
                # fail a channel the peer may have served
                if now - last_activity > config.accept_timeout:
                    return Due(Action.RESTART, f"no answer for {config.accept_timeout:g} s "
                               "to the restarted request")
                return None
            return Due(Action.FAIL, f"timed out after {config.accept_timeout:g} s waiting "
                       "for the request to be accepted")
        return None
    if status in FINALIZING_STATUSES and config.finalization_timeout is not None:
        if waited <= config.finalization_timeout:
            return None
        if record.paid_while_finalizing:
            # paid, no answer: it may be lost; a restart asks again
            return Due(Action.ASK_AGAIN, "no answer to the final voucher")
        return Due(Action.FAIL, f"timed out after {config.finalization_timeout:g} s "
                   "waiting for the final voucher")
    if not is_initiator and data_open and initiator_paused(status):
        # A pause is the other application's choice; bounded, since the peer
        # may pause and vanish. (A disconnect ends the exemption: a peer that
        # comes back restarts the channel; one that does not must not hold it.)
        if config.peer_pause_timeout is not None and waited > config.peer_pause_timeout:
            return Due(Action.FAIL, f"the other peer paused the channel and did not "
                       f"resume it within {config.peer_pause_timeout:g} s")
        return None
    if config.no_progress_timeout is not None and waited > config.no_progress_timeout:
        # An initiator waiting for the other side's end (TransferFinished,
        # ResponderCompleted) restarts too: a lost Complete is said again.
        if is_initiator:
            return Due(Action.RESTART, f"no progress for {config.no_progress_timeout:g} s")
        return Due(Action.FAIL, f"no progress for {config.no_progress_timeout:g} s: the "
                   "other peer stopped answering")
    return None


def restart_delay(restarts: int, config: ManagerConfig,
                  stalled_for: float = 0.0) -> float | None:
    """Seconds to wait before the next restart of a channel that restarted
    ``restarts`` times, for ``stalled_for`` seconds, without progress; None
    once it should give up (:attr:`ManagerConfig.max_restarts` tries, or
    :attr:`ManagerConfig.restart_window` seconds). The delay doubles each
    time, up to :attr:`ManagerConfig.max_restart_backoff`."""
    if config.max_restarts is not None and restarts >= config.max_restarts:
        return None
    if config.restart_window is not None and stalled_for >= config.restart_window:
        return None
    return min(config.restart_backoff * (2 ** min(restarts, 64)), config.max_restart_backoff)
