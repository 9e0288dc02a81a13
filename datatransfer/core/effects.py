"""What the channel core asks its driver to do: the effect vocabulary.

The core (:mod:`datatransfer.core.channels`) never performs I/O. Each of its
inputs is a generator of the effects below; the driver (the Manager, or a
test's synchronous model of a few peers) carries out each effect in order
and sends its outcome back into the generator, which then goes on. Effects
with no outcome get ``None`` back. Between two steps of one input other
inputs may run (a validator is awaited, a message is sent), so the core
re-checks what it needs after every effect whose outcome it waits for.

Outcomes are plain values, never exceptions, except for :class:`Persist`:
a store that refuses a record raises into the generator, which leaves the
channel exactly as it was (the record is persisted before it is applied).

Some effects are *instant* (``Effect.waits`` is False): the driver performs
them and resumes the core at once, with no other input in between (writing
the store, publishing, arming a timer, spawning a task, counting a
refusal). The core relies on that: a record is persisted and then applied
with nothing in between. The others may wait (the network, a validator),
and other inputs run meanwhile.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, ClassVar

from datatransfer.channel import Channel, Encoded
from datatransfer.ipld.cid import CID
from datatransfer.messages import TransferRequest
from datatransfer.types import ChannelID, ChannelState, PeerID
from statemachine import ChannelRecord, EventCode


@dataclass(frozen=True, slots=True)
class Effect:
    """Base class of every effect."""

    #: Whether other inputs may run while this effect is carried out.
    waits: ClassVar[bool] = True


# -- the store and subscribers ----------------------------------------------


@dataclass(frozen=True, slots=True)
class Persist(Effect):
    """Write ``channel`` with ``record`` (its current record if None).
    A failure raises into the core: the record is then not applied."""

    waits: ClassVar[bool] = False

    channel: Channel
    record: ChannelRecord | None = None


@dataclass(frozen=True, slots=True)
class LoadStored(Effect):
    """Read a channel that is no longer in memory. Outcome: the
    :class:`Channel` or None."""

    waits: ClassVar[bool] = False

    channel_id: ChannelID


@dataclass(frozen=True, slots=True)
class Publish(Effect):
    """Tell subscribers that ``event`` happened; ``state`` is the channel
    right after it. The driver stamps the time."""

    waits: ClassVar[bool] = False

    event: EventCode
    message: str
    state: ChannelState


# -- the network --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send(Effect):
    """Send a data-transfer message on its own. Outcome: None, or why the
    message could not be sent."""

    peer: PeerID
    message: Any


@dataclass(frozen=True, slots=True)
class OpenData(Effect):
    """Open (or reopen) the data request of a channel this node receives
    for, carrying ``message``; the sender skips the first ``skip`` blocks.
    Outcome: None, or why it could not be opened."""

    channel_id: ChannelID
    peer: PeerID
    root: CID
    selector: Any
    message: Any
    skip: int


@dataclass(frozen=True, slots=True)
class PauseData(Effect):
    """Hold the channel's data flow on this side. Outcome: None or a reason
    (nothing to do about it: the pause is also told in a message)."""

    channel_id: ChannelID


@dataclass(frozen=True, slots=True)
class ResumeData(Effect):
    """Release the channel's data flow, sending ``message`` with it.
    Outcome: None, or why it failed."""

    channel_id: ChannelID
    message: Any


@dataclass(frozen=True, slots=True)
class CloseData(Effect):
    """End the channel's data request (cancelled or failed). Outcome: None or
    a reason."""

    channel_id: ChannelID


@dataclass(frozen=True, slots=True)
class CleanupData(Effect):
    """Release what the transport holds for the channel. Outcome: None or a
    reason."""

    channel_id: ChannelID


@dataclass(frozen=True, slots=True)
class IsConnected(Effect):
    """Outcome: whether the transport is connected to ``peer`` now."""

    waits: ClassVar[bool] = False

    peer: PeerID


# -- the application's validators -----------------------------------------------


@dataclass(frozen=True, slots=True)
class Validate(Effect):
    """Run the validator registered for the voucher's type on a New or
    Restart request. Outcome: ``(verdict, result)``, verdict one of
    ``"accept"``, ``"pause"``, ``"retry"`` (RetryValidation) or
    ``"reject"``; ``result`` an encoded voucher result or None. A rejection
    may say why as a third item, ``("reject", result, reason)``: the
    refused request is then kept and logged with that reason; and what to
    count it as as a fourth (a validator middleware's refusal kind, e.g.
    ``"peer-denied"``; else ``"rejected-request"``)."""

    channel_id: ChannelID
    sender: PeerID
    request: TransferRequest
    voucher: Encoded
    restart: bool


@dataclass(frozen=True, slots=True)
class Revalidate(Effect):
    """Run the revalidator of a voucher that arrived during a transfer.
    Outcome: ``(verdict, value)``: ``("accept", result)``,
    ``("pause", result)``, ``("fail", reason)`` (the revalidator refused or
    raised) or ``("unknown", reason)`` (no such voucher type or revalidator)."""

    channel_id: ChannelID
    voucher: Encoded


@dataclass(frozen=True, slots=True)
class RevalidateProgress(Effect):
    """Ask the revalidators about ``size`` more bytes moved (``method`` is
    ``on_pull_data_sent`` or ``on_push_data_received``). A sender asks as a
    block is queued, its bytes already counted in ``queued`` and not yet in
    ``sent``; a pause holds that block (it goes when resumed). Outcome:
    ``(verdict, value)``: ``("none", None)`` when none answered,
    ``("accept", result)``, ``("pause", result)`` or ``("fail", reason)``."""

    channel_id: ChannelID
    method: str
    size: int


@dataclass(frozen=True, slots=True)
class RevalidateComplete(Effect):
    """Ask the revalidators whether the responder needs a final voucher.
    Outcome: ``("none", None)`` or ``("accept", result)`` (complete, the
    result, if any, sent with the Complete message), ``("pause", result)``
    (wait for a final voucher) or ``("fail", reason)``."""

    channel_id: ChannelID


# -- time and tasks ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ArmRestart(Effect):
    """Call :meth:`ChannelCore.restart_due` for the channel after ``delay``
    seconds."""

    waits: ClassVar[bool] = False

    channel_id: ChannelID
    delay: float


@dataclass(frozen=True, slots=True)
class Spawn(Effect):
    """Run ``steps`` (more of the core's effects) apart from this input, in
    the driver's task group: cleanup, and telling a peer about a failure,
    which must not hold up the input that caused them."""

    waits: ClassVar[bool] = False

    steps: Generator[Effect, Any, Any]


# -- refusals and notes --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Refuse(Effect):
    """An input from ``peer`` was refused: count it and log it. ``keep``: a
    refused request, as the channel it would have been (Failed, the reason
    its message), for the store to keep where ``ls --all`` shows it
    (bounded: :meth:`~datatransfer.store.ChannelStore.keep_refused`)."""

    waits: ClassVar[bool] = False

    kind: str
    peer: PeerID
    text: str
    keep: Channel | None = None


@dataclass(frozen=True, slots=True)
class Note(Effect):
    """Something an operator may want to read (logged at INFO)."""

    waits: ClassVar[bool] = False

    text: str


@dataclass(frozen=True, slots=True)
class Answer:
    """What the core returns to a transport input that needs an answer
    (a data request, a block): the transport's :class:`~transport.base.Decision`
    in the core's own terms."""

    message: Any = None
    accept: bool = True
    pause: bool = False


PROCEED = Answer()

#: An input of the core: a generator of effects that returns the input's result.
Steps = Generator[Effect, Any, Any]
