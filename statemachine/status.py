"""Channel statuses and the events that move a channel between them.

The numbers are part of the protocol's public surface (the Go reference
persists them and reports them to subscribers), so they follow the
go-data-transfer v1 numbering exactly and must never be renumbered.  Go v2's
``Queued`` and ``AwaitingAcceptance`` statuses are deliberately absent: this
engine speaks the v1 protocol.

The status groups (final, cleanup, transferring) live here rather than beside
the transition table because other packages ask about them without needing
the table itself.
"""

from __future__ import annotations

from enum import IntEnum


class Status(IntEnum):
    """Where a data-transfer channel stands.

    Every member except :attr:`ChannelNotFoundError` is a node of the state
    machine.  ``ChannelNotFoundError`` is only ever an *answer* to "what is the
    status of channel X?" when X is unknown; no channel is ever in it.
    """

    #: Asked for, not yet accepted by the other side.
    Requested = 0
    #: Accepted; data is moving.
    Ongoing = 1
    #: This side has sent/received everything; waiting for the responder to confirm.
    TransferFinished = 2
    #: The responder said it is done; this side may still be moving data.
    ResponderCompleted = 3
    #: Responder side: all data is done, waiting for the initiator's final voucher.
    Finalizing = 4
    #: Success; transport resources are being released.
    Completing = 5
    #: Success; final.
    Completed = 6
    #: Failure; transport resources are being released.
    Failing = 7
    #: Failure; final.
    Failed = 8
    #: Cancelled; transport resources are being released.
    Cancelling = 9
    #: Cancelled; final.
    Cancelled = 10
    #: Paused by the initiator (only the initiator can resume it).
    InitiatorPaused = 11
    #: Paused by the responder (only the responder can resume it).
    ResponderPaused = 12
    #: Paused by both sides; each must resume its own pause.
    BothPaused = 13
    #: Initiator side: the responder is waiting for a final voucher.
    ResponderFinalizing = 14
    #: Initiator side: as ResponderFinalizing, and all data has moved.
    ResponderFinalizingTransferFinished = 15
    #: Not a channel status: the answer for a channel that does not exist.
    ChannelNotFoundError = 16


class EventCode(IntEnum):
    """What can happen to a channel.  Numbered as in go-data-transfer v1.15.

    The seed API documents a single ``Progress`` event; later versions split
    it into :attr:`DataQueuedProgress`, :attr:`DataSentProgress` and
    :attr:`DataReceivedProgress` (see :data:`PROGRESS_EVENTS`).  There is no
    ``Progress`` member because giving it any number would collide with the
    numbering every v1.15 peer and store uses.
    """

    #: A channel is created (or re-created) on this node.
    Open = 0
    #: The other side accepted the request.
    Accept = 1
    #: The channel is being restarted after a disconnect or a node restart.
    Restart = 2
    #: A block arrived; carries the running count of blocks received.
    DataReceived = 3
    #: A block went out; carries the running count of blocks sent.
    DataSent = 4
    #: One side cancelled.
    Cancel = 5
    #: The transfer failed; carries the error.
    Error = 6
    #: Transport resources were released; ends the cleanup statuses.
    CleanupComplete = 7
    #: A voucher was received or sent.
    NewVoucher = 8
    #: A voucher result was received or sent.
    NewVoucherResult = 9
    #: The initiator paused.
    PauseInitiator = 10
    #: The initiator resumed.
    ResumeInitiator = 11
    #: The responder paused.
    PauseResponder = 12
    #: The responder resumed.
    ResumeResponder = 13
    #: This side finished sending/receiving.
    FinishTransfer = 14
    #: The responder reported it has completed.
    ResponderCompletes = 15
    #: The responder reported it is waiting for a final voucher.
    ResponderBeginsFinalization = 16
    #: Responder side: data done, now waiting for the initiator's final voucher.
    BeginFinalizing = 17
    #: The peer could not be reached; a signal for restart logic, not a failure.
    Disconnected = 18
    #: Both sides are done.
    Complete = 19
    #: On node restart, nudges channels that were cleaning up to finish cleanup.
    CompleteCleanupOnRestart = 20
    #: A block was read and queued for sending; carries the running count.
    DataQueued = 21
    #: Bytes newly queued for sending (not counting re-sends).
    DataQueuedProgress = 22
    #: Bytes newly sent (not counting re-sends).
    DataSentProgress = 23
    #: Bytes newly received (first arrival of each block only).
    DataReceivedProgress = 24
    #: Deprecated by the Go reference in favour of RequestCancelled; kept only
    #: so the numbering stays intact.  No status accepts it.
    RequestTimedOut = 25
    #: The transport failed to send data.
    SendDataError = 26
    #: The transport failed to receive data.
    ReceiveDataError = 27
    #: The transport queued the request.
    TransferRequestQueued = 28
    #: The transport request was cancelled by whoever opened it.
    RequestCancelled = 29
    #: This node sent its request for data to the peer.
    Opened = 30


#: The three events that together play the role of the seed's ``Progress``
#: event: each adds a byte delta to one counter of the channel.
PROGRESS_EVENTS: frozenset[EventCode] = frozenset(
    {EventCode.DataQueuedProgress, EventCode.DataSentProgress, EventCode.DataReceivedProgress}
)

#: The statuses that are nodes of the state machine (every status but
#: ChannelNotFoundError), in numeric order.
MACHINE_STATUSES: tuple[Status, ...] = tuple(
    s for s in Status if s is not Status.ChannelNotFoundError
)

#: Once here, a channel never changes again: every event is refused.
FINAL_STATUSES: frozenset[Status] = frozenset({Status.Completed, Status.Failed, Status.Cancelled})

#: Penultimate statuses: on entering one, the engine releases transport
#: resources and then fires CleanupComplete.
CLEANUP_STATUSES: frozenset[Status] = frozenset(
    {Status.Cancelling, Status.Completing, Status.Failing}
)

#: Statuses in which byte counters may still grow (the *Progress events are
#: accepted only here).
TRANSFERRING_STATUSES: frozenset[Status] = frozenset(
    {
        Status.Requested,
        Status.Ongoing,
        Status.InitiatorPaused,
        Status.ResponderPaused,
        Status.BothPaused,
        Status.ResponderCompleted,
        Status.ResponderFinalizing,
    }
)

#: Statuses that mean at least one side has paused the transfer.
PAUSED_STATUSES: frozenset[Status] = frozenset(
    {Status.InitiatorPaused, Status.ResponderPaused, Status.BothPaused}
)


#: Over, or releasing its resources: a channel here starts no new work and
#: ignores requests to pause, resume or cancel it.
ENDING_STATUSES: frozenset[Status] = FINAL_STATUSES | CLEANUP_STATUSES

#: The initiator holds the transfer (it paused, perhaps the responder too).
INITIATOR_PAUSED_STATUSES: frozenset[Status] = frozenset(
    {Status.InitiatorPaused, Status.BothPaused}
)

#: The responder holds the transfer (it paused, perhaps the initiator too).
RESPONDER_PAUSED_STATUSES: frozenset[Status] = frozenset(
    {Status.ResponderPaused, Status.BothPaused}
)

#: Waiting for the other side's last act (the final voucher, or its answer):
#: the finalization timeout applies here, not the no-progress one.
FINALIZING_STATUSES: frozenset[Status] = frozenset(
    {Status.Finalizing, Status.ResponderFinalizing, Status.ResponderFinalizingTransferFinished}
)

#: Seen from the initiator: the responder has sent everything and waits for
#: the final voucher.
RESPONDER_FINALIZING_STATUSES: frozenset[Status] = frozenset(
    {Status.ResponderFinalizing, Status.ResponderFinalizingTransferFinished}
)

#: The responder holds the data back: it paused, or it waits for the final
#: voucher (Finalizing on its side, ResponderFinalizing on the initiator's).
RESPONDER_HOLDS_STATUSES: frozenset[Status] = RESPONDER_PAUSED_STATUSES | frozenset(
    {Status.ResponderFinalizing, Status.Finalizing}
)

#: The transfer succeeded (only cleanup may be left).
SUCCEEDED_STATUSES: frozenset[Status] = frozenset({Status.Completing, Status.Completed})

#: Ending without success while resources are released.
ABORTING_STATUSES: frozenset[Status] = frozenset({Status.Cancelling, Status.Failing})

#: A responder's answer to a voucher here is a Complete message (all its data
#: has gone), not a VoucherResult.
COMPLETE_ANSWER_STATUSES: frozenset[Status] = frozenset(
    {Status.Finalizing, Status.Completing}
)


def is_ending(status: Status) -> bool:
    """True when the channel is over or releasing its resources."""
    return status in ENDING_STATUSES


def initiator_paused(status: Status) -> bool:
    """True when the initiator's pause holds the transfer."""
    return status in INITIATOR_PAUSED_STATUSES


def responder_paused(status: Status) -> bool:
    """True when the responder's pause holds the transfer."""
    return status in RESPONDER_PAUSED_STATUSES


def is_paused(status: Status) -> bool:
    """True when either side's pause holds the transfer."""
    return status in PAUSED_STATUSES


def is_final(status: Status) -> bool:
    """True when ``status`` is final: the channel is over and accepts nothing."""
    return status in FINAL_STATUSES


def is_cleanup(status: Status) -> bool:
    """True when ``status`` is a cleanup status: resources are being released."""
    return status in CLEANUP_STATUSES
