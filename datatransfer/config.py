"""Manager settings, with the defaults a node uses when nothing is said."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ManagerConfig:
    """Timeouts and restart policy of a :class:`~datatransfer.manager.Manager`.

    Every timeout is in seconds; ``None`` disables it. They exist so that no
    channel is stuck forever when the other side vanishes or stops answering:
    each ends the channel in ``Failed`` with a message that says why.
    """

    #: Restart in-progress channels when the Manager starts on an existing store.
    auto_restart: bool = True
    #: How long an opened channel may wait in ``Requested`` for the answer.
    accept_timeout: float | None = 30.0
    #: How long a running channel may go without any data or message. Channels
    #: paused by this node's own application are exempt (it chose to wait).
    no_progress_timeout: float | None = 60.0
    #: How long a responder waits for an initiator that paused the channel
    #: (``InitiatorPaused``/``BothPaused``) to resume it. A pause is the other
    #: application's choice (Go's channel monitor stops watching a paused
    #: channel), so the no-progress timeout does not apply meanwhile; but the
    #: peer may pause and then vanish without a word, so the wait is bounded.
    #: Once the connection to the peer is lost, the no-progress timeout
    #: applies again.
    peer_pause_timeout: float | None = 600.0
    #: How long the finalization states may wait for the final voucher.
    finalization_timeout: float | None = 60.0
    #: Restarts tried in a row without progress before the channel fails.
    #: Every restart counts: after a disconnect, a timeout, the application's
    #: ``restart_channel`` or this node starting again on its store. The count
    #: is stored with the channel and goes back to 0 when a block moves after
    #: a restart (a new one, or one sent again: a restarted request skips what
    #: the receiver holds, so it moves only blocks the receiver lacked). So a
    #: node that restarts again and again keeps its channels as long as each
    #: round moves data, and gives up on one that moves nothing. ``None``: no
    #: count; :attr:`restart_window` bounds the restarts.
    max_restarts: int | None = None
    #: How long, in seconds, a channel keeps restarting while no data moves
    #: (from the first restart that moved nothing; progress starts it anew)
    #: before it fails. The backoff between tries is exponential, bounded by
    #: :attr:`max_restart_backoff`, so a peer that is away for minutes (a
    #: server being restarted, a network outage) finds its channels still
    #: trying when it is back. ``None``: only :attr:`max_restarts` bounds them.
    restart_window: float | None = 600.0
    #: First delay before an automatic restart; doubles with each attempt.
    restart_backoff: float = 0.2
    #: Upper bound of the restart delay.
    max_restart_backoff: float = 5.0
    #: How often the watchdog checks timeouts and flushes progress to the store.
    tick: float = 0.1
    #: A receiver's progress (blocks received, bytes counted) is written to
    #: the store every this many blocks, at every status change, at each
    #: watchdog tick and when the Manager stops; not after every block (one
    #: sqlite commit per block). After a crash the store may lag what arrived
    #: by up to this many blocks (or one tick): the restart asks for those
    #: blocks again and counts them then, once.
    save_progress_every: int = 64
    #: Longest time sending one control message may take.
    send_timeout: float = 10.0
    #: Most channels one peer may have open (not in a final status) on this
    #: node as their responder; ``None``: no limit. A New request (push or
    #: pull) from a peer at the limit is refused with a rejection saying why,
    #: before any validator sees it and without storing anything; restarts of
    #: the peer's existing channels are always served. Without a bound any
    #: peer could make the node hold channels (memory, rows in the store, a
    #: data request opened back for each push) for as long as it likes,
    #: simply by opening them: the transport bounds a peer's data requests,
    #: not its channels. 1024 leaves any sane market, and many concurrent
    #: retrievals from one client, unaffected.
    max_channels_per_peer: int | None = 1024
    #: Seconds an ended channel stays in memory (for late messages about it
    #: and for callers that look at it right after it ended); then only the
    #: store holds it, and the queries read it from there. A node's memory
    #: holds its live channels, not its history.
    final_linger: float = 30.0
    #: How many refused requests (New requests a validator refused, or whose
    #: voucher type no validator takes) the store keeps for ``ls --all``,
    #: newest first; older ones are dropped (they stay counted in the metrics).
    keep_refused: int = 100

    def __post_init__(self) -> None:
        if self.max_restarts is None and self.restart_window is None:
            raise ValueError("max_restarts and restart_window cannot both be None: a channel "
                             "whose peer never comes back must end")
        if self.keep_refused < 0:
            raise ValueError(f"keep_refused must be at least 0, not {self.keep_refused}")
        if self.max_channels_per_peer is not None and self.max_channels_per_peer < 1:
            raise ValueError(
                f"max_channels_per_peer must be at least 1 (or None), "
                f"not {self.max_channels_per_peer}")
