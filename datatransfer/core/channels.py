"""The channel core: every channel of a node, and every rule of the protocol
that is not in the state table, with no I/O.

:class:`ChannelCore` holds all channels of one node and the per-peer limits.
Its inputs are the application's calls, what the transport reports, the
outcomes of effects and the passing of time; each input is a generator that
yields effects (:mod:`datatransfer.core.effects`: send a message, open,
pause or resume data, persist, publish, run a validator, arm a timer) and
returns the input's result. It never awaits, never touches a socket or a
store, and never reads the clock: the driver sets :attr:`ChannelCore.now`
before every step (h11 and aioquic are built the same way; generators let
the rules read top to bottom although a validator's verdict arrives later).

The driver is :class:`~datatransfer.manager.Manager` in production; the core
property test drives the core with a synchronous model of a few peers.

Why the re-checks after some ``yield``: a step that waits for an outcome
(a validator, a send) lets other inputs run meanwhile, so a channel may have
ended or moved before the step resumes; the core looks again, as the
asynchronous code it replaced did after each ``await``.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable
from dataclasses import dataclass
from typing import Any

from datatransfer import monitor
from datatransfer.channel import Channel, Encoded
from datatransfer.config import ManagerConfig
from datatransfer.core.effects import (
    PROCEED,
    Answer,
    ArmRestart,
    CleanupData,
    CloseData,
    Effect,
    IsConnected,
    LoadStored,
    Note,
    OpenData,
    PauseData,
    Persist,
    Publish,
    Refuse,
    ResumeData,
    Revalidate,
    RevalidateComplete,
    RevalidateProgress,
    Send,
    Spawn,
    Validate,
)
from datatransfer.errors import ChannelNotFound, DataTransferError, ProtocolError, Unsupported
from datatransfer.ipld import dagcbor
from datatransfer.ipld.cid import CID
from datatransfer.ipld.selector import Selector, SelectorError, parse_selector, selector_to_node
from datatransfer.messages import (
    VERDICTS,
    MessageType,
    TransferRequest,
    TransferResponse,
    cancel_request,
    cancel_response,
    new_request,
    restart_existing_channel_request,
    update_request,
    update_response,
    voucher_request,
)
from datatransfer.types import ChannelID, ChannelState, PeerID
from registry import Registry
from registry.registry import RegistryError
from statemachine import (
    ABORTING_STATUSES,
    CLEANUP_STATUSES,
    COMPLETE_ANSWER_STATUSES,
    ENDING_STATUSES,
    FINAL_STATUSES,
    FINALIZING_STATUSES,
    RESPONDER_FINALIZING_STATUSES,
    RESPONDER_HOLDS_STATUSES,
    RESPONDER_PAUSED_STATUSES,
    SUCCEEDED_STATUSES,
    EventCode,
    IllegalTransition,
    Kind,
    Status,
    allowed_events,
    apply,
    initiator_paused,
    is_ending,
    is_paused,
    resolve,
    responder_paused,
)

E = EventCode
S = Status

#: A generator of effects returning ``T`` (see the module doc).
Steps = Generator[Effect, Any, Any]

#: The events a block raises (its index, its bytes): progress, so they
#: reset the restart count (a block moved again after a restart does too:
#: :meth:`ChannelCore._moved_again`), and they change counters only, so they
#: are applied at once and written with the next save (see :meth:`ChannelCore._fire`).
_COUNTER_EVENTS = frozenset({E.DataReceived, E.DataSent, E.DataQueued, E.DataReceivedProgress,
                             E.DataSentProgress, E.DataQueuedProgress})
#: One of these per block moved: what ``save_progress_every`` counts.
_BLOCK_EVENTS = frozenset({E.DataReceivedProgress, E.DataSentProgress})


@dataclass(slots=True)
class _Runtime:
    """What the core knows about a channel beyond its stored record."""

    status_since: float
    last_activity: float
    dirty: bool = False
    #: Progress events applied since the record was last saved.
    unsaved_blocks: int = 0
    restart_scheduled: bool = False
    #: When this run of restarts without progress began (None: data moved
    #: since); what ``restart_window`` bounds.
    stalled_since: float | None = None
    #: The data request was opened (or served) and has not ended.
    data_open: bool = False
    #: Whether the channel is written to the store: False for a request that
    #: waits for a voucher that passes validation (nothing a peer sends is
    #: stored before a validator accepted it).
    persist: bool = True
    #: Decoded vouchers / results, rebuilt when the lists grow.
    decoded: tuple[int, int, tuple[Any, ...], tuple[Any, ...]] | None = None


def malformed_new_request(request: TransferRequest, via_data: bool) -> str | None:
    """What makes a New request unusable before any validator sees it, or None.

    Every field a channel would keep is checked here, so a channel never
    exists for a request the node cannot carry out (a selector that does
    not parse would otherwise fail only when the data request is opened)."""
    if request.base_cid is None:
        return "no base CID"
    if via_data and not request.pull:
        return "a push request inside a data request (its data receiver opens that request)"
    try:
        parse_selector(request.selector)
    except SelectorError as exc:
        return f"malformed selector: {exc}"
    return None


def refusal_kind(exc: BaseException) -> str:
    """The metrics label of a refused input."""
    if isinstance(exc, ChannelNotFound):
        return "unknown-channel"
    if isinstance(exc, IllegalTransition):
        return "illegal-event"
    if isinstance(exc, DataTransferError):
        return "protocol"
    return "malformed"


#: Most DAG-CBOR bytes of a refused request's voucher or selector kept with it.
REFUSED_KEEP_BYTES = 4096


def _small(node: Any) -> Any:
    """``node`` if it encodes in at most :data:`REFUSED_KEEP_BYTES`, else None."""
    try:
        return node if len(dagcbor.encode(node)) <= REFUSED_KEEP_BYTES else None
    except Exception:  # noqa: BLE001 - what cannot be encoded is not kept
        return None


def selector_node(selector: Any) -> Any:
    """A selector in its data-model form, whether given parsed or as a node."""
    return selector_to_node(selector) if isinstance(selector, Selector) else selector


class ChannelCore:
    """Every channel of one node, as inputs in and effects out.

    ``supports_pause``: whether the transport can hold a data flow (the
    application's pause is refused otherwise). The driver sets :attr:`now`
    before each step and :attr:`running` while it runs.
    """

    def __init__(self, peer_id: PeerID, registry: Registry, config: ManagerConfig, *,
                 supports_pause: bool = True) -> None:
        self.peer_id = peer_id
        self.registry = registry
        self.config = config
        self.supports_pause = supports_pause
        #: The current time (monotonic seconds), set by the driver.
        self.now = 0.0
        #: Whether the driver runs (restarts are only scheduled then).
        self.running = False
        self.channels: dict[ChannelID, Channel] = {}
        self._runtime: dict[ChannelID, _Runtime] = {}
        self._next_id = 0
        #: Channels each peer has open here (not final) as their responder,
        #: and New requests of each peer now being validated: what
        #: ``max_channels_per_peer`` bounds (see :meth:`_channel_limit_reached`).
        self._live_from: dict[PeerID, set[ChannelID]] = {}
        self._validating: dict[PeerID, int] = {}
        #: When a block last moved on any channel with each peer (entries
        #: older than the no-progress timeout are dropped by :meth:`tick`).
        self._moved_with: dict[PeerID, float] = {}

    # ------------------------------------------------------------------ queries

    def get(self, channel_id: ChannelID) -> Channel:
        """A channel in memory (live, or ended a short while ago)."""
        ch = self.channels.get(channel_id)
        if ch is None:
            raise ChannelNotFound(channel_id)
        return ch

    def data_open(self, channel_id: ChannelID) -> bool:
        """Whether the channel's data request is open (or served)."""
        rt = self._runtime.get(channel_id)
        return rt is not None and rt.data_open

    def snapshot(self, ch: Channel) -> ChannelState:
        """An immutable view of ``ch`` with its vouchers decoded."""
        rt = self._runtime.get(ch.channel_id)
        rec = ch.record
        key = (len(rec.vouchers), len(rec.voucher_results))
        if rt is not None and rt.decoded is not None and rt.decoded[:2] == key:
            vouchers, results = rt.decoded[2], rt.decoded[3]
        else:
            vouchers = tuple(self._decode_voucher(v) for v in rec.vouchers)
            results = tuple(self._decode_result(r) for r in rec.voucher_results)
            if rt is not None:
                rt.decoded = (*key, vouchers, results)
        return ch.snapshot(self._decode_voucher(ch.voucher), vouchers, results)

    def peer_of(self, channel_id: ChannelID) -> PeerID:
        """The other party of a channel id a transport reported; an id that
        does not name this node (a peer made it up) gives its responder."""
        return channel_id.initiator if channel_id.responder == self.peer_id \
            else channel_id.responder

    # ------------------------------------------------------------------ loading

    def load(self, channels: Iterable[Channel], max_transfer_id: int) -> Steps:
        """Take the live channels a store held and decide what to do with each."""
        self._next_id = max_transfer_id
        for ch in channels:
            if ch.self_peer != self.peer_id:
                yield Note(f"store holds channel {ch.channel_id} of another peer; ignored")
                continue
            chid = ch.channel_id
            self.channels[chid] = ch
            self._runtime[chid] = _Runtime(status_since=self.now, last_activity=self.now)
            self._track_live(ch)
            status = ch.record.status
            # A responder waiting for the final voucher, or paused without its
            # app having paused, waits for a voucher (records stored before the
            # flag was part of them do not say so).
            rec = ch.record
            rec.paused_for_voucher = rec.paused_for_voucher or not ch.is_initiator and (
                status == S.Finalizing or (status == S.ResponderPaused and not rec.app_paused))
            if status in CLEANUP_STATUSES:
                yield from self._fire(ch, E.CompleteCleanupOnRestart)
            elif self.config.auto_restart and ch.is_initiator and not ch.record.app_paused:
                yield from self._schedule_restart(ch, "node restarted", delay=0.0)

    # ------------------------------------------------------------------ the application

    def open(self, peer: PeerID, voucher: Encoded, base_cid: CID, selector: Any, *,
             is_pull: bool) -> Steps:
        """Open a push (we send) or a pull (we receive) to ``peer``. Returns
        the new channel's id."""
        self._require_running()
        if peer == self.peer_id:
            raise ValueError("cannot open a channel to this node itself")
        self._next_id += 1
        chid = ChannelID(self.peer_id, peer, self._next_id)
        me = self.peer_id
        ch = Channel(
            channel_id=chid, self_peer=me, base_cid=base_cid, selector=selector,
            voucher=voucher, sender=peer if is_pull else me, recipient=me if is_pull else peer,
            is_pull=is_pull,
        )
        yield from self._add(ch)
        request = self._new_request(ch, MessageType.New)
        if is_pull:
            yield from self._open_data(ch, request, skip=0)
        else:
            failure = yield Send(peer, request)
            if failure is not None:
                yield from self._try_fire(ch, E.Error, error=f"unable to send request: {failure}")
        return chid

    def send_voucher(self, channel_id: ChannelID, voucher: Encoded) -> Steps:
        """The initiator sends a new voucher (payment, final settlement)."""
        ch = self.get(channel_id)
        if not ch.is_initiator:
            raise Unsupported("only the initiator of a channel sends vouchers")
        self._require_live(ch, E.NewVoucher)
        if ch.record.status in FINALIZING_STATUSES:
            self._flag(ch, paid_while_finalizing=True)  # (stored with the event)
        yield from self._fire(ch, E.NewVoucher, voucher=voucher)
        request = voucher_request(channel_id.id, voucher_type=voucher[0], voucher=voucher[1])
        yield from self._send_or_disconnect(ch, request)

    def close(self, channel_id: ChannelID) -> Steps:
        """Cancel the channel on both sides."""
        ch = self._lookup_live(channel_id, E.Cancel)
        if ch.record.status == S.Completing:  # succeeded; only cleanup is left
            raise IllegalTransition(ch.record.status, E.Cancel)
        yield from self._fire(ch, E.Cancel, message="cancelled by this node")
        yield from self._tell_cancel(ch)

    def pause(self, channel_id: ChannelID) -> Steps:
        """Pause the data flow from this side (see ``Manager.pause_channel``)."""
        ch = self.get(channel_id)
        self._require_live(ch, E.PauseInitiator if ch.is_initiator else E.PauseResponder)
        if not self.supports_pause:
            raise Unsupported("this transport cannot pause channels")
        rt = self._runtime[channel_id]
        if ch.record.awaiting_validation:  # (only a responder knows it is waiting)
            raise Unsupported(
                f"cannot pause channel {channel_id} before accepting it: the request waits "
                "for a voucher that passes validation (RetryValidation), and a paused request "
                "can never be accepted (the channel table accepts only from Requested); "
                "reject or cancel it instead")
        self._flag(ch, app_paused=True)
        yield from self._fire(ch, E.PauseInitiator if ch.is_initiator else E.PauseResponder)
        if rt.data_open:
            yield from self._transport_call(PauseData(channel_id))
        yield from self._send_or_disconnect(ch, self._update_message(ch, paused=True))

    def resume(self, channel_id: ChannelID) -> Steps:
        """Release this side's pause."""
        ch = self.get(channel_id)
        self._require_live(ch, E.ResumeInitiator if ch.is_initiator else E.ResumeResponder)
        if not self.supports_pause:
            raise Unsupported("this transport cannot pause channels")
        rt = self._runtime[channel_id]
        self._flag(ch, app_paused=False)
        # A responder's application that releases a request still waiting for
        # a voucher that passes validation lets its data flow (as Go does):
        # it took the channel on, so the channel is stored from now on.
        rt.persist = True
        finalizing = ch.record.status == S.Finalizing
        yield from self._fire(ch, E.ResumeInitiator if ch.is_initiator else E.ResumeResponder)
        message = self._update_message(ch, paused=False)
        if finalizing and ch.record.status == S.Completing:
            # the responder waived the final voucher: tell the initiator we completed
            self._flag(ch, paused_for_voucher=False)
            message = self._result_response(MessageType.Complete, channel_id.id, True,
                                             False, None)
        if rt.data_open:
            yield from self._resume_data(ch, message)
        else:
            yield from self._send_or_disconnect(ch, message)
            if ch.is_initiator:
                yield from self.restart(channel_id)

    def restart(self, channel_id: ChannelID) -> Steps:
        """Reopen the data flow of a channel, skipping the blocks the receiver
        already holds. Final channels are left alone."""
        ch = self.get(channel_id)
        status = ch.record.status
        if status in FINAL_STATUSES:
            return
        if status in CLEANUP_STATUSES:
            yield from self._fire(ch, E.CompleteCleanupOnRestart)
            return
        # counted here, recorded as a Restart event when the responder accepts
        # (as Go does); only data moving again resets the count (see
        # ManagerConfig.max_restarts), so the count is of restarts in a row
        # that moved nothing, across node restarts too (it is stored)
        ch.restarts += 1
        yield from self._save(ch)
        if not ch.is_initiator:
            # the initiator drives restarts: ask it to restart (as Go does)
            yield from self._send_or_disconnect(ch, restart_existing_channel_request(channel_id))
        elif ch.is_pull:  # we receive: reopen the data request
            yield from self._open_data(ch, self._new_request(ch, MessageType.Restart),
                                       skip=ch.record.received_index)
        else:  # we send: the responder reopens its data request to us
            yield from self._send_or_disconnect(ch, self._new_request(ch, MessageType.Restart))

    # ------------------------------------------------------------------ time

    def tick(self, keep: frozenset[ChannelID] = frozenset(),
             queued: frozenset[ChannelID] = frozenset()) -> Steps:
        """The watchdog: write what is dirty, forget channels that ended long
        ago (not those in ``keep``: someone waits on them), and act on every
        timeout that is due (:mod:`datatransfer.monitor`); ``queued``: the
        channels whose data request waits in this node's own queue."""
        yield from self.flush()
        self._evict(keep)
        cfg = self.config
        now = self.now
        if cfg.no_progress_timeout is not None:
            self._moved_with = {p: t for p, t in self._moved_with.items()
                                if now - t <= cfg.no_progress_timeout}
        for ch in list(self.channels.values()):
            rt = self._runtime[ch.channel_id]
            last_activity = rt.last_activity
            if (rt.data_open and ch.is_pull != ch.is_initiator
                    and ch.record.status == S.Ongoing):
                # We send its data: while blocks move to the same peer on its
                # other channels, the peer answers, and this one waits for
                # this node's own sending (the peer's requests are served a
                # few at a time over one stream): not the peer's silence.
                last_activity = max(last_activity, self._moved_with.get(ch.other_peer, 0.0))
            found = monitor.due(ch.record, cfg, now, is_initiator=ch.is_initiator,
                                status_since=rt.status_since,
                                last_activity=last_activity, data_open=rt.data_open,
                                restarts=ch.restarts,
                                queued_here=ch.channel_id in queued)
            if found is None:
                continue
            if found.action is monitor.Action.FAIL:
                yield from self._fail_here(ch, found.reason)
                continue
            rt.last_activity = now
            if found.action is monitor.Action.ASK_AGAIN:
                self._flag(ch, paid_while_finalizing=False)
            yield from self._schedule_restart(ch, found.reason)

    def restart_due(self, channel_id: ChannelID) -> Steps:
        """A restart armed with :class:`ArmRestart` is due."""
        rt = self._runtime.get(channel_id)
        if rt is None:
            return
        rt.restart_scheduled = False
        ch = self.channels[channel_id]
        if is_ending(ch.record.status):
            return
        if ch.record.app_paused:
            return  # resumed later by the application, which restarts it
        yield from self.restart(channel_id)

    def flush(self) -> Steps:
        """Write every channel with unsaved changes."""
        for chid, rt in list(self._runtime.items()):
            if rt.dirty:
                yield from self._save(self.channels[chid])

    # ------------------------------------------------------------------ the transport

    def message(self, sender: PeerID, message: Any) -> Steps:
        """A data-transfer message arrived on its own."""
        try:
            if isinstance(message, TransferRequest):
                yield from self._on_request_message(sender, message)
            elif isinstance(message, TransferResponse):
                chid = ChannelID(self.peer_id, sender, message.transfer_id)
                ch = self.channels.get(chid)
                if ch is None:
                    raise ChannelNotFound(chid)
                yield from self._handle_response(ch, message)
            else:
                raise ProtocolError(f"not a data-transfer message: {type(message).__name__}")
        except Exception as exc:  # noqa: BLE001 - the boundary: see Refuse
            yield Refuse(refusal_kind(exc), sender, f"message refused: {exc}")

    def request_received(self, channel_id: ChannelID, sender: PeerID, message: Any,
                         root: CID | None = None, selector: Any = None) -> Steps:
        """A data request arrived; returns an :class:`Answer`. ``root`` and
        ``selector``: what the data request itself asks for, when the
        transport carries them apart from the message (graphsync does):
        they must be what the channel was validated for."""
        try:
            if root is not None:
                self._check_data_request(channel_id, message, root, selector)
            if isinstance(message, TransferRequest):
                if message.type == MessageType.New:
                    return (yield from self._receive_new(channel_id, sender, message,
                                                         via_data=True))
                if message.type == MessageType.Restart:
                    return (yield from self._receive_restart(channel_id, sender, message))
                if message.type in (MessageType.Update, MessageType.Voucher, MessageType.Cancel):
                    return (yield from self._receive_on_data_request(channel_id, sender,
                                                                     message))
                raise ProtocolError(f"data request carries a {message.type.name} request")
            if isinstance(message, TransferResponse):
                # a push responder pulls the data back from us, the initiator
                ch = self.channels.get(channel_id)
                if ch is None or not ch.is_initiator or not ch.is_sender:
                    raise ChannelNotFound(channel_id)
                yield from self._handle_response(ch, message)
                if is_ending(ch.record.status):
                    return Answer(accept=False)
                self._runtime[channel_id].data_open = True
                return Answer(pause=initiator_paused(ch.record.status))
            raise ProtocolError(f"not a data-transfer message: {type(message).__name__}")
        except Exception as exc:  # noqa: BLE001 - the boundary: see Refuse
            yield Refuse(refusal_kind(exc), sender,
                         f"data request for {channel_id} refused: {exc}")
            return Answer(accept=False)

    def response_received(self, channel_id: ChannelID, response: Any) -> Steps:
        """A data-transfer response arrived with the data flowing back."""
        ch = self.channels.get(channel_id)
        if ch is None or not isinstance(response, TransferResponse):
            yield Refuse("unknown-channel", self.peer_of(channel_id),
                         f"response for unknown channel {channel_id} ignored")
            return
        yield from self._handle_response(ch, response)

    def channel_opened(self, channel_id: ChannelID) -> Steps:
        """The transport opened the channel's data request."""
        ch = self.channels.get(channel_id)
        if ch is not None:
            self._runtime[channel_id].data_open = True
            # Opened clears a stale message; on a channel already ending (a
            # slow dial outlived the accept timeout) it would erase the reason.
            if ch.record.status not in ENDING_STATUSES:
                yield from self._try_fire(ch, E.Opened)

    def data_queued(self, channel_id: ChannelID, size: int, index: int) -> Steps:
        """The sender queued block ``index`` of ``size`` bytes; returns an Answer."""
        ch = self.channels.get(channel_id)
        if ch is None:
            return Answer(accept=False)
        if index <= ch.record.queued_index:
            self._moved_again(ch)  # re-sent after a restart: already counted
            return PROCEED
        yield from self._progress(ch, E.DataQueued, E.DataQueuedProgress, index, size)
        if ch.is_initiator or not ch.is_pull:
            return PROCEED
        return (yield from self._revalidate_progress(ch, "on_pull_data_sent", size))

    def data_sent(self, channel_id: ChannelID, size: int, index: int) -> Steps:
        """Block ``index`` left this node."""
        ch = self.channels.get(channel_id)
        if ch is None:
            return
        if index > ch.record.sent_index:
            yield from self._progress(ch, E.DataSent, E.DataSentProgress, index, size)
        else:
            self._moved_again(ch)

    def data_skipped(self, channel_id: ChannelID, size: int, index: int) -> Steps:
        """A restarted request leaves out block ``index`` (``size`` bytes)
        because the receiver holds it: it moved before. Counted only if this
        node has no record of it (a crash lost progress not yet written, see
        ``save_progress_every``), so counters stay exact across a crash on
        either side, and nothing is counted twice."""
        ch = self.channels.get(channel_id)
        if ch is None:
            return
        if not ch.is_sender:
            if index > ch.record.received_index:
                yield from self._progress(ch, E.DataReceived, E.DataReceivedProgress, index,
                                          size)
            return
        if index > ch.record.queued_index:
            yield from self._progress(ch, E.DataQueued, E.DataQueuedProgress, index, size)
        if index > ch.record.sent_index:
            yield from self._progress(ch, E.DataSent, E.DataSentProgress, index, size)

    def data_received(self, channel_id: ChannelID, size: int, index: int) -> Steps:
        """Block ``index`` arrived and is stored; returns an Answer."""
        ch = self.channels.get(channel_id)
        if ch is None:
            return Answer(accept=False)
        if ch.is_initiator and ch.record.status == S.Requested:
            # data flows only once accepted: the answer was lost
            yield from self._try_fire(ch, E.Accept)
        if index <= ch.record.received_index:
            self._moved_again(ch)
            return PROCEED
        yield from self._progress(ch, E.DataReceived, E.DataReceivedProgress, index, size)
        if ch.is_initiator or ch.is_pull:
            return PROCEED
        return (yield from self._revalidate_progress(ch, "on_push_data_received", size))

    def channel_completed(self, channel_id: ChannelID, error: str | None) -> Steps:
        """The data request ended, with ``error`` or without."""
        ch = self.channels.get(channel_id)
        if ch is None:
            return
        self._runtime[channel_id].data_open = False
        if is_ending(ch.record.status):
            return
        if error is not None:
            yield from self._fail_here(ch, f"data transfer failed: {error}")
            return
        if ch.is_initiator:
            yield from self._try_fire(ch, E.FinishTransfer)
            return
        yield from self._responder_completes(ch)

    def transport_trouble(self, channel_id: ChannelID, event: EventCode, reason: str) -> Steps:
        """The transport lost the peer or the data request (``event`` is one
        of Disconnected, RequestCancelled, SendDataError, ReceiveDataError)."""
        ch = self.channels.get(channel_id)
        if ch is None:
            return
        self._runtime[channel_id].data_open = False
        if is_ending(ch.record.status):
            return  # already ending: keep the reason it is ending for
        if not (yield from self._try_fire(ch, event, error=reason)):
            return
        if ch.is_initiator and event != E.RequestCancelled:
            yield from self._schedule_restart(ch, reason)

    def peer_lost(self, peer: PeerID, reason: str,
                  notified: frozenset[ChannelID] = frozenset()) -> Steps:
        """The connection with ``peer`` is gone. The channels in ``notified``
        had a data request in the transport and hear of it on their own
        (:meth:`transport_trouble`). This input reaches this node's other
        live initiator channels with the peer: they restart as those do.
        Without it, a pusher that sent its last block into socket buffers
        the cut then lost (TransferFinished, no data request left) would wait
        for its no-progress timeout, while the responder, which heard of the
        cut, fails on its own timeout first and then refuses the restart."""
        for ch in list(self.channels.values()):
            chid = ch.channel_id
            rt = self._runtime[chid]
            if (ch.other_peer != peer or not ch.is_initiator or chid in notified
                    or is_ending(ch.record.status) or ch.record.app_paused
                    # a request never answered: its accept timeout decides
                    or ch.record.status == S.Requested
                    # restarting already, nothing moved since: it heard of
                    # this loss its own way (its data request failed first)
                    or rt.restart_scheduled or rt.stalled_since is not None):
                continue
            yield from self.transport_trouble(chid, E.Disconnected, reason)

    # ------------------------------------------------------------------ requests

    def _on_request_message(self, sender: PeerID, request: TransferRequest) -> Steps:
        kind = request.type
        if kind == MessageType.RestartExistingChannelRequest:
            chid = request.restart_channel
            if chid is None or chid.initiator != self.peer_id or chid.responder != sender:
                raise ProtocolError("restart-existing-channel request for a channel "
                                    f"{sender} does not respond to")
            yield from self.restart(chid)
            return
        chid = ChannelID(sender, self.peer_id, request.transfer_id)
        if kind == MessageType.New:
            yield from self._receive_new(chid, sender, request, via_data=False)
            return
        if kind == MessageType.Restart:
            if request.pull:
                raise ProtocolError("a pull's restart request travels with the data request")
            decision = yield from self._receive_restart(chid, sender, request)
            ch = self.get(chid)
            if not decision.accept:
                yield from self._send_quietly(sender, decision.message)
                return
            yield from self._open_data(ch, decision.message, skip=ch.record.received_index,
                                       then_pause=decision.pause)
            return
        ch = self.get(chid)
        if kind == MessageType.Cancel:
            # Ignored once the channel fails or is cancelled already (e.g. both
            # sides timed out and announced it): it keeps the reason it ends for.
            if ch.record.status not in FINAL_STATUSES | ABORTING_STATUSES:
                yield from self._try_fire(ch, E.Cancel, message="cancelled by the other peer")
            return
        if kind == MessageType.Update:
            if request.paused and ch.record.awaiting_validation:
                yield from self._refuse_unaccepted_pause(ch)
                return
            yield from self._try_fire(ch, E.PauseInitiator if request.paused
                                      else E.ResumeInitiator)
            return
        if kind == MessageType.Voucher:
            yield from self._receive_voucher(ch, request)
            return
        raise ProtocolError(f"unexpected request type {kind!r}")

    def _receive_on_data_request(self, chid: ChannelID, sender: PeerID,
                                 request: TransferRequest) -> Steps:
        """A data request for an existing channel carrying an update, a
        voucher or a cancel. A go-graphsync requester pauses by cancelling
        its request and resumes by sending it again with the resume message
        (go-data-transfer takes any request message there, not only New and
        Restart). The message is handled as if it came on its own; then the
        data request is refused if the message cancelled or the channel is
        over, else served (from the requester's skip count), held while this
        side pauses or waits for a voucher."""
        ch = self.get(chid)
        if not ch.is_sender:
            raise ProtocolError(f"data request for channel {chid}, whose data this node receives")
        yield from self._on_request_message(sender, request)
        status = ch.record.status
        if request.type == MessageType.Cancel or is_ending(status):
            return Answer(accept=False)
        self._runtime[chid].data_open = True
        hold = ch.record.awaiting_validation or status in RESPONDER_HOLDS_STATUSES
        return Answer(pause=hold)

    def _receive_new(self, chid: ChannelID, sender: PeerID, request: TransferRequest, *,
                     via_data: bool) -> Steps:
        if chid in self.channels:
            raise ProtocolError(f"channel {chid} already exists")
        voucher_enc: Encoded = (request.voucher_type, request.voucher)
        malformed = malformed_new_request(request, via_data)
        if malformed is not None:
            yield Refuse("malformed-request", sender, f"request {chid} refused: {malformed}")
            outcome, result = "reject", None
        elif (yield from self._channel_limit_reached(chid, sender)):
            outcome, result = "reject", None
        else:
            # counted while the validator runs, so that requests arriving
            # meanwhile cannot all pass the limit check at once
            self._validating[sender] = self._validating.get(sender, 0) + 1
            try:
                outcome, result, *why = yield Validate(chid, sender, request, voucher_enc, False)
            finally:
                left = self._validating.pop(sender) - 1
                if left:
                    self._validating[sender] = left
            if chid in self.channels:  # the same request twice, validated meanwhile
                raise ProtocolError(f"channel {chid} already exists")
            if outcome == "reject":
                yield self._refused(chid, sender, request, voucher_enc,
                                    why[0] if why else "refused by the validator", *why[1:])
        if outcome == "reject":
            response = self._result_response(MessageType.New, chid.id, False, False, result)
            if not via_data:
                yield from self._send_quietly(sender, response)
            return Answer(message=response, accept=False)
        me = self.peer_id
        ch = Channel(
            channel_id=chid, self_peer=me, base_cid=request.base_cid,
            selector=request.selector, voucher=voucher_enc,
            sender=me if request.pull else sender, recipient=sender if request.pull else me,
            is_pull=request.pull,
        )
        # A request waiting for a voucher that passes validation is kept in
        # memory only: nothing a stranger sends is stored before a validator
        # accepted it.
        yield from self._add(ch, persist=outcome != "retry")
        if result is not None:
            yield from self._fire(ch, E.NewVoucherResult, voucher_result=result)
        rt = self._runtime[chid]
        if outcome == "retry":
            self._flag(ch, awaiting_validation=True)
            response = self._result_response(MessageType.VoucherResult, chid.id, True, True,
                                             result)
        else:
            yield from self._fire(ch, E.Accept)
            if outcome == "pause":
                self._flag(ch, paused_for_voucher=True)
                yield from self._fire(ch, E.PauseResponder)
            response = self._result_response(
                MessageType.New, chid.id, True, outcome == "pause", result
            )
        hold = outcome in ("pause", "retry")
        if via_data:
            rt.data_open = True
            return Answer(message=response, pause=hold)
        if request.pull:
            # A pull asked for on the message protocol, not in a data request:
            # answered there, as go-data-transfer's receiver does; the data
            # flows only when the initiator opens its data request. A node
            # never opens one back for a pull: that would make it fetch and
            # store whatever a stranger names.
            yield from self._send_or_disconnect(ch, response)
            return PROCEED
        # a push: we receive, so we open the data request back to the initiator
        if outcome == "retry":
            yield from self._send_or_disconnect(ch, response)
        else:
            yield from self._open_data(ch, response, skip=0, then_pause=hold)
        return PROCEED

    def _refused(self, chid: ChannelID, sender: PeerID, request: TransferRequest,
                 voucher: Encoded, reason: str, kind: str = "rejected-request") -> Refuse:
        """A New request the validator refused (or whose voucher type has
        none): counted and logged, and kept for ``ls --all`` as the channel
        it would have been, Failed with the reason, since it never becomes a
        channel (a network client refused must not be invisible here). Its
        voucher and selector are kept only when small (else null): a peer's
        refused requests must cost the store little. ``kind``: what it is
        counted as (a validator middleware's refusal names its own)."""
        me = self.peer_id
        ch = Channel(
            channel_id=chid, self_peer=me, base_cid=request.base_cid,
            selector=_small(selector_node(request.selector)),
            voucher=(voucher[0], _small(voucher[1])),
            sender=me if request.pull else sender, recipient=sender if request.pull else me,
            is_pull=request.pull,
        )
        ch.record.status = S.Failed
        ch.record.message = f"refused: {reason}"
        what = "pull" if request.pull else "push"
        return Refuse(kind, sender,
                      f"refused a {what} of {request.base_cid} (channel {chid}, voucher "
                      f"{voucher[0]}): {reason}", keep=ch)

    def _channel_limit_reached(self, chid: ChannelID, sender: PeerID) -> Steps:
        """Whether to refuse a New request from a peer that already holds
        :attr:`ManagerConfig.max_channels_per_peer` channels here (live ones
        it opened, loaded from the store ones included, and New requests of
        its being validated). The only place the limit is checked: every
        New request, push or pull, on its own or
        carried by a data request, goes through :meth:`_receive_new`.
        Restarts never come here: a peer's existing channels are served.

        The rejection carries no result: the wire response has no text field,
        and a go-data-transfer v1 initiator drops a whole response whose
        result type it has not registered (its channel would then wait for
        its own timeout instead of failing at once). The reason is logged."""
        limit = self.config.max_channels_per_peer
        if limit is None:
            return False
        held = len(self._live_from.get(sender, ())) + self._validating.get(sender, 0)
        if held < limit:
            return False
        yield Refuse("too-many-channels", sender,
                     f"request {chid} refused: {limit} channels open from this peer")
        return True

    def _track_live(self, ch: Channel) -> None:
        """Keep the count of channels each peer has open here as their
        responder in step with the channel's status (called when a channel is
        added or loaded, and on every status change)."""
        if ch.is_initiator:
            return
        peer = ch.other_peer
        if ch.record.status not in FINAL_STATUSES:
            self._live_from.setdefault(peer, set()).add(ch.channel_id)
            return
        live = self._live_from.get(peer)
        if live is not None:
            live.discard(ch.channel_id)
            if not live:
                del self._live_from[peer]

    def _receive_restart(self, chid: ChannelID, sender: PeerID,
                         request: TransferRequest) -> Steps:
        ch = self.channels.get(chid)
        if ch is None:
            ch = yield from self._revive(chid)  # (it may have ended a while ago)
        if ch is not None and ch.base_cid != request.base_cid:
            raise ProtocolError(f"restart of {chid} names another base CID")
        if ch is None or is_ending(ch.record.status):
            if ch is not None and ch.record.status in SUCCEEDED_STATUSES:
                # our completion message was lost: say it again. A pull's
                # initiator may have lost the end of the data too: serve it
                # again (it skips what it holds; a final channel counts nothing)
                if request.pull:  # a Completing cleanup must not cancel it
                    self._runtime[chid].data_open = True
                return Answer(message=self._response(ch, MessageType.Complete, True),
                              accept=request.pull)
            response = self._result_response(MessageType.Restart, chid.id, False, False, None)
            return Answer(message=response, accept=False)
        outcome, result, *why = yield Validate(chid, sender, request, ch.voucher, True)
        if result is not None:
            yield from self._fire(ch, E.NewVoucherResult, voucher_result=result)
        if outcome == "reject":
            reason = f": {why[0]}" if why else ""
            if len(why) > 1:  # a middleware's refusal (a peer denied now): counted
                yield Refuse(why[1], sender, f"refused the restart of {chid}{reason}")
            yield from self._try_fire(ch, E.Error,
                                      error=f"restart request failed validation{reason}")
            return Answer(message=self._result_response(
                MessageType.Restart, chid.id, False, False, result), accept=False)
        yield from self._fire(ch, E.Restart)
        rt = self._runtime[chid]
        rec = ch.record
        if outcome == "pause" and not rec.paused_for_voucher:
            self._flag(ch, paused_for_voucher=True)
            yield from self._try_fire(ch, E.PauseResponder)
        elif outcome == "accept" and rec.paused_for_voucher and not rec.app_paused \
                and rec.status in RESPONDER_PAUSED_STATUSES:
            # validated anew, the restart decides whether the data waits for a
            # voucher (as in Go, whose restarted data request is paused only
            # if its validation pauses it); the block that was held is queued
            # again (see the Restart row) and its revalidation asked again
            self._flag(ch, paused_for_voucher=False)
            yield from self._try_fire(ch, E.ResumeResponder)
        hold = is_paused(ch.record.status)
        rt.data_open = True
        return Answer(
            message=self._result_response(MessageType.Restart, chid.id, True,
                                          responder_paused(ch.record.status), result),
            pause=hold,
        )

    def _receive_voucher(self, ch: Channel, request: TransferRequest) -> Steps:
        chid = ch.channel_id
        encoded: Encoded = (request.voucher_type, request.voucher)
        if ch.record.status in CLEANUP_STATUSES or not (
                yield from self._try_fire(ch, E.NewVoucher, voucher=encoded)):
            return  # the channel ends or ended (e.g. the voucher crossed our completion)
        rt = self._runtime[chid]
        if ch.record.awaiting_validation:
            yield from self._revalidate_request(ch, encoded)
            return
        verdict, value = yield Revalidate(chid, encoded)
        if verdict == "unknown":
            yield from self._fail(ch, f"voucher refused: {value}", self._result_response(
                MessageType.VoucherResult, chid.id, False, False, None))
            return
        if verdict == "fail":
            yield from self._fail(ch, f"voucher refused: {value}",
                                  self._revalidation_response(ch, False, False, None))
            return
        if value is not None:
            yield from self._fire(ch, E.NewVoucherResult, voucher_result=value)
        if verdict == "pause":
            yield from self._send_or_disconnect(
                ch, self._revalidation_response(ch, True, True, value))
            return
        if not ch.record.paused_for_voucher:
            yield from self._send_or_disconnect(
                ch, self._revalidation_response(ch, True, False, value))
            return
        self._flag(ch, paused_for_voucher=False)
        finalizing = ch.record.status == S.Finalizing
        response = self._revalidation_response(ch, True, False, value)
        yield from self._try_fire(ch, E.ResumeResponder)
        if finalizing:
            yield from self._send_or_disconnect(ch, response)
        elif rt.data_open and not ch.record.app_paused:
            yield from self._resume_data(ch, response)
        else:
            yield from self._send_or_disconnect(ch, response)

    def _revalidate_request(self, ch: Channel, encoded: Encoded) -> Steps:
        """A voucher for a request the validator asked to retry."""
        chid = ch.channel_id
        request = new_request(chid.id, base_cid=ch.base_cid, selector=ch.selector,
                              voucher_type=encoded[0], voucher=encoded[1], pull=ch.is_pull)
        outcome, result, *why = yield Validate(chid, ch.other_peer, request, encoded, False)
        if result is not None:
            yield from self._fire(ch, E.NewVoucherResult, voucher_result=result)
        if outcome == "retry":
            yield from self._send_or_disconnect(ch, self._result_response(
                MessageType.VoucherResult, chid.id, True, True, result))
            return
        if outcome == "reject":
            # never stored (it waited for this voucher): kept as a refused request
            reason = why[0] if why else "refused by the validator"
            yield self._refused(chid, ch.other_peer, request, encoded, reason, *why[1:])
            yield from self._fail(ch, "voucher rejected by the validator", self._result_response(
                MessageType.New, chid.id, False, False, result))
            return
        rt = self._runtime[chid]
        rt.persist = True  # validated: from now on it is stored
        if not (yield from self._try_fire(ch, E.Accept)):  # (pauses are refused while waiting)
            self._flag(ch, awaiting_validation=False)
            if not is_ending(ch.record.status):
                yield from self._fail(
                    ch, f"cannot accept the request in {ch.record.status.name}",
                    self._result_response(MessageType.New, chid.id, False, False, None))
            return  # (or it ended while the validator ran)
        self._flag(ch, awaiting_validation=False)
        paused = outcome == "pause"
        if paused:
            self._flag(ch, paused_for_voucher=True)
            yield from self._fire(ch, E.PauseResponder)
        response = self._result_response(MessageType.New, chid.id, True, paused, result)
        if ch.is_pull:  # the data request is held open: release it
            if paused:
                yield from self._send_or_disconnect(ch, response)
            else:
                yield from self._resume_data(ch, response)
        else:
            yield from self._open_data(ch, response, skip=0, then_pause=paused)

    def _refuse_unaccepted_pause(self, ch: Channel) -> Steps:
        """The initiator paused a request that still waits for a voucher that
        passes validation. Go's table (which ours equals) accepts a request
        only from Requested, and a pause moves it to InitiatorPaused, so it
        could never be accepted: rather than hold the channel until a
        timeout, fail it now and tell the initiator (a rejection)."""
        self._flag(ch, awaiting_validation=False)
        yield from self._fail(ch, (
            "the initiator paused the request before it was accepted (it waited for a "
            "voucher that passes validation); a paused request cannot be accepted"),
            self._result_response(MessageType.New, ch.channel_id.id, False, False, None))

    def _revalidate_progress(self, ch: Channel, method: str, size: int) -> Steps:
        """Ask the revalidators about bytes moved on a channel we respond to."""
        chid = ch.channel_id
        verdict, value = yield RevalidateProgress(chid, method, size)
        if verdict == "none":
            return PROCEED
        if verdict == "pause":
            if value is not None:
                yield from self._fire(ch, E.NewVoucherResult, voucher_result=value)
            self._flag(ch, paused_for_voucher=True)
            yield from self._try_fire(ch, E.PauseResponder)
            return Answer(message=self._result_response(MessageType.VoucherResult, chid.id,
                                                         True, True, value), pause=True)
        if verdict == "fail":
            yield from self._try_fire(ch, E.Error, error=f"revalidator failed: {value}")
            return Answer(message=self._result_response(MessageType.VoucherResult, chid.id,
                                                         False, False, None), accept=False)
        if value is None:
            return PROCEED
        yield from self._fire(ch, E.NewVoucherResult, voucher_result=value)
        return Answer(message=self._result_response(MessageType.VoucherResult, chid.id,
                                                     True, False, value))

    def _responder_completes(self, ch: Channel) -> Steps:
        """The responder moved all data: ask for a final voucher (the
        revalidator paused) or complete, with the revalidator's result if it
        gave one (Go's ``OnComplete``: a result with ``ErrPause`` waits, a
        result alone rides the Complete message)."""
        chid = ch.channel_id
        verdict, value = yield RevalidateComplete(chid)
        if verdict == "fail":
            yield from self._fail(ch, f"revalidator failed on completion: {value}",
                                  self._response(ch, MessageType.Complete, False))
            return
        if value is not None:
            yield from self._fire(ch, E.NewVoucherResult, voucher_result=value)
        waits = verdict == "pause"
        if waits:
            self._flag(ch, paused_for_voucher=True)
            yield from self._fire(ch, E.BeginFinalizing)
        else:
            yield from self._fire(ch, E.Complete)
        response = self._result_response(MessageType.Complete, chid.id, True, waits, value)
        yield from self._send_or_disconnect(ch, response)

    # ------------------------------------------------------------------ responses

    def _handle_response(self, ch: Channel, response: TransferResponse) -> Steps:
        """Apply a response from the responder to our (the initiator's) channel."""
        if is_ending(ch.record.status):
            return  # ending: a late response (e.g. a second Complete) must not move it
        if response.voucher_result_type:
            yield from self._fire(ch, E.NewVoucherResult, voucher_result=(
                response.voucher_result_type, response.voucher_result))
        kind = response.type
        if kind == MessageType.Cancel:
            yield from self._try_fire(ch, E.Cancel, message="cancelled by the other peer")
            return
        if not response.accepted and kind in VERDICTS:
            # (an Update or Cancel carries no verdict: Go leaves Acpt false)
            yield from self._try_fire(ch, E.Error, error="rejected by the responder")
            return
        if kind == MessageType.Restart:
            yield from self._try_fire(ch, E.Restart)
        # an accepted restart accepts too when the New answer was lost
        if kind in (MessageType.New, MessageType.Restart) and ch.record.status == S.Requested:
            yield from self._fire(ch, E.Accept)
        if kind == MessageType.Complete:
            if response.paused and ch.record.status in RESPONDER_FINALIZING_STATUSES:
                return  # still finalizing (e.g. a short payment): nothing new
            yield from self._try_fire(ch, E.ResponderBeginsFinalization if response.paused
                                      else E.ResponderCompletes)
            return
        status = ch.record.status
        if response.paused:
            if not responder_paused(status):
                yield from self._try_fire(ch, E.PauseResponder)
        elif responder_paused(status):
            yield from self._try_fire(ch, E.ResumeResponder)

    # ------------------------------------------------------------------ effects with outcomes

    def _open_data(self, ch: Channel, message: Any, *, skip: int,
                   then_pause: bool = False) -> Steps:
        """Open (or reopen) the data request as the receiver; hold it at once
        when ``then_pause`` (and it opened)."""
        rt = self._runtime[ch.channel_id]
        rt.data_open = True
        rt.last_activity = self.now
        failure = yield OpenData(ch.channel_id, ch.other_peer, ch.base_cid, ch.selector,
                                 message, skip)
        if failure is not None:
            rt.data_open = False
            reason = f"unable to open data request: {failure}"
            if ch.is_initiator and ch.record.status == S.Requested and ch.restarts == 0:
                yield from self._try_fire(ch, E.Error, error=reason)
            else:
                yield from self.transport_trouble(ch.channel_id, E.Disconnected, reason)
            return
        if then_pause and rt.data_open:
            yield from self._transport_call(PauseData(ch.channel_id))

    def _resume_data(self, ch: Channel, message: Any) -> Steps:
        failure = yield ResumeData(ch.channel_id, message)
        if failure is not None:
            yield from self._try_fire(ch, E.Disconnected, error=str(failure))

    def _send_quietly(self, peer: PeerID, message: Any) -> Steps:
        failure = yield Send(peer, message)
        if failure is not None:
            yield Note(f"could not send {type(message).__name__} to {peer}: {failure}")

    def _send_or_disconnect(self, ch: Channel, message: Any) -> Steps:
        """Send a control message; failure is recorded as a disconnect."""
        failure = yield Send(ch.other_peer, message)
        if failure is not None:
            yield from self.transport_trouble(ch.channel_id, E.Disconnected,
                                              f"unable to send message: {failure}")

    def _transport_call(self, effect: PauseData | CloseData | CleanupData) -> Steps:
        failure = yield effect
        if failure is not None:
            yield Note(f"transport {type(effect).__name__} for {effect.channel_id} failed: "
                       f"{failure}")

    def _tell_cancel(self, ch: Channel, *, only_if_connected: bool = False) -> Steps:
        if only_if_connected and not (yield IsConnected(ch.other_peer)):
            # the peer is gone (often why the channel failed): dialing it to
            # say so would be one dial per failed channel, thousands after a
            # node restarts on a store full of a departed peer's channels; a
            # peer that comes back and restarts the channel is refused then
            yield Note(f"channel {ch.channel_id} failed; {ch.other_peer} is not connected, "
                       "not told")
            return
        if ch.is_initiator:
            message: Any = cancel_request(ch.channel_id.id)
        else:
            message = cancel_response(ch.channel_id.id)
        yield from self._send_quietly(ch.other_peer, message)

    def _fail_here(self, ch: Channel, reason: str) -> Steps:
        """Fail a channel for a cause found on this node (a timeout, restarts
        spent, the transport ending the data with an error) and tell the other
        peer with a cancel, as Go's ``CloseDataTransferChannelWithError`` does:
        otherwise the peer keeps the channel alive and may even complete it
        (e.g. a responder whose application later waives the final voucher)
        while this side has failed.

        Best effort, apart from the input (:class:`Spawn`): the failure stands
        and is stored whether or not the cancel arrives (the peer is often
        unreachable, which is why the channel failed). A peer that already
        ends the channel ignores the cancel."""
        if (yield from self._try_fire(ch, E.Error, error=reason)):
            yield Spawn(self._tell_cancel(ch, only_if_connected=True))

    def _fail(self, ch: Channel, reason: str, response: Any) -> Steps:
        """Fail a channel we respond to, telling the initiator why."""
        yield from self._try_fire(ch, E.Error, error=reason)
        yield from self._send_quietly(ch.other_peer, response)

    def _cleanup(self, ch: Channel) -> Steps:
        """Release transport resources of a channel in a cleanup status, then
        fire CleanupComplete (spawned when a cleanup status is entered)."""
        chid = ch.channel_id
        status = ch.record.status
        if status in ABORTING_STATUSES:
            yield from self._transport_call(CloseData(chid))
        if not (status == S.Completing and self._runtime[chid].data_open):
            # (a restart crossing our completion is being served again)
            yield from self._transport_call(CleanupData(chid))
        self._runtime[chid].data_open = False
        if ch.record.status in CLEANUP_STATUSES:
            yield from self._try_fire(ch, E.CleanupComplete)

    def _schedule_restart(self, ch: Channel, reason: str, delay: float | None = None) -> Steps:
        rt = self._runtime[ch.channel_id]
        if rt.restart_scheduled or not self.running:
            return
        if not self.config.auto_restart and delay == 0.0:
            return
        if rt.stalled_since is None:
            rt.stalled_since = self.now
        stalled_for = self.now - rt.stalled_since
        backoff = monitor.restart_delay(ch.restarts, self.config, stalled_for)
        if backoff is None:
            yield from self._fail_here(
                ch, f"gave up after {ch.restarts} restarts in {stalled_for:.0f} s without "
                f"progress: {reason}")
            return
        rt.restart_scheduled = True
        yield ArmRestart(ch.channel_id, backoff if delay is None else delay)

    # ------------------------------------------------------------------ firing

    def _fire(self, ch: Channel, event: EventCode, **args: Any) -> Steps:
        """Apply, persist, publish; start cleanup when a cleanup status is
        entered. Raises IllegalTransition (state unchanged) if refused."""
        chid = ch.channel_id
        before = ch.record.status
        row_kind = resolve(before, event).kind if before not in FINAL_STATUSES else None
        message = args.pop("message", None)
        rt = self._runtime[chid]
        if event in _COUNTER_EVENTS:
            yield from self._count(ch, event, args)
        else:
            # compute the new record, store it, then apply it: a record the
            # store refuses leaves the channel exactly as it was
            record = ch.record.copy()
            apply(record, event, **args)
            if message is not None:
                record.message = message
            if rt.persist:
                yield Persist(ch, record)
            ch.record = record
            rt.dirty = False
            rt.unsaved_blocks = 0
        now = self.now
        rt.last_activity = now
        after = ch.record.status
        if after != before:
            rt.status_since = now
            self._track_live(ch)
        text = ch.record.message if event in (E.Error, E.Cancel) or "error" in args else ""
        yield Publish(event, text or args.get("error", "") or "", self.snapshot(ch))
        if after in CLEANUP_STATUSES and row_kind in (Kind.MOVE, Kind.REENTER):
            yield Spawn(self._cleanup(ch))

    def _try_fire(self, ch: Channel, event: EventCode, **args: Any) -> Steps:
        """Fire an event the other peer or the transport caused; a refused
        event is noted, not raised (bad input must not stop the node).
        Returns whether it fired."""
        try:
            yield from self._fire(ch, event, **args)
        except IllegalTransition as exc:
            yield Note(f"channel {ch.channel_id}: {exc}")
            return False
        return True

    def _count(self, ch: Channel, event: EventCode, args: dict[str, Any]) -> Steps:
        """Apply a counter event (a block's index or bytes): in memory at
        once, written every ``save_progress_every`` blocks (and with any
        status change, each tick, at the end). Not published here."""
        apply(ch.record, event, **args)
        ch.restarts = 0
        rt = self._runtime[ch.channel_id]
        rt.stalled_since = None
        rt.dirty = True
        if event in _BLOCK_EVENTS:
            rt.unsaved_blocks += 1
            if rt.unsaved_blocks >= self.config.save_progress_every:
                yield from self._save(ch)

    def _progress(self, ch: Channel, index_event: EventCode, bytes_event: EventCode,
                  index: int, size: int) -> Steps:
        """A block moved: its index event and its bytes event. While the
        channel transfers (the common case) both are counted and then
        published with one snapshot, taken once both are recorded (a block's
        index and bytes go together); otherwise each is fired on its own."""
        status = ch.record.status
        allowed = allowed_events(status)
        if status in CLEANUP_STATUSES or index_event not in allowed or bytes_event not in allowed:
            yield from self._try_fire(ch, index_event, index=index)
            if bytes_event in allowed_events(ch.record.status):
                yield from self._try_fire(ch, bytes_event, delta=size)
            return
        yield from self._count(ch, index_event, {"index": index})
        yield from self._count(ch, bytes_event, {"delta": size})
        self._runtime[ch.channel_id].last_activity = self.now
        self._moved_with[ch.other_peer] = self.now
        state = self.snapshot(ch)
        yield Publish(index_event, "", state)
        yield Publish(bytes_event, "", state)

    def _moved_again(self, ch: Channel) -> None:
        """A block this side had counted already moved again (after a
        restart, or after a crash left the store behind the blockstore).

        Counters do not change (no byte is counted twice), but it is progress
        for the restart budget and the no-progress timeout: a restarted
        request skips exactly the blocks the receiver holds, so every block
        it moves is one the receiver lacked. A data sender sees nothing else:
        its own indices ran ahead of what the receiver got before the restart,
        so without this a push whose node restarts a few times would give up
        although the receiver advances every round."""
        rt = self._runtime[ch.channel_id]
        rt.last_activity = self.now
        self._moved_with[ch.other_peer] = self.now
        rt.stalled_since = None
        if ch.restarts:
            ch.restarts = 0
            rt.dirty = True

    def _flag(self, ch: Channel, **flags: bool) -> None:
        """Set protocol flags of the channel's record (see
        :class:`~statemachine.table.ChannelRecord`); written with the next
        save (the event that follows, or the watchdog's next tick)."""
        for name, value in flags.items():
            setattr(ch.record, name, value)
        self._runtime[ch.channel_id].dirty = True

    def _save(self, ch: Channel) -> Steps:
        rt = self._runtime[ch.channel_id]
        if rt.persist:
            yield Persist(ch)
        rt.dirty = False
        rt.unsaved_blocks = 0

    # ------------------------------------------------------------------ channels in memory

    def _add(self, ch: Channel, *, persist: bool = True) -> Steps:
        self.channels[ch.channel_id] = ch
        self._runtime[ch.channel_id] = _Runtime(status_since=self.now,
                                                last_activity=self.now, persist=persist)
        self._track_live(ch)
        yield from self._fire(ch, E.Open)

    def _evict(self, keep: frozenset[ChannelID]) -> None:
        """Forget, in memory, channels that ended more than
        :attr:`ManagerConfig.final_linger` seconds ago (they stay in the store,
        where the queries find them): a node's memory holds its live channels,
        not its history. A restart request for one brings it back
        (:meth:`_revive`)."""
        linger = self.config.final_linger
        for chid, ch in list(self.channels.items()):
            if ch.record.status in FINAL_STATUSES and chid not in keep:
                if self.now - self._runtime[chid].status_since > linger:
                    del self.channels[chid]
                    del self._runtime[chid]

    def _revive(self, chid: ChannelID) -> Steps:
        """A channel that ended and was evicted, back in memory (None if the
        store does not hold it)."""
        ch = yield LoadStored(chid)
        if ch is None or ch.self_peer != self.peer_id:
            return None
        self.channels[chid] = ch
        self._runtime[chid] = _Runtime(status_since=self.now, last_activity=self.now)
        return ch

    def _require_running(self) -> None:
        if not self.running:
            raise RuntimeError("the Manager is not running: use `async with Manager(...)`")

    def _require_live(self, ch: Channel, action: EventCode) -> None:
        """Refuse an application action on a channel that has ended."""
        self._require_running()
        if ch.record.status in FINAL_STATUSES:
            raise IllegalTransition(ch.record.status, action)

    def _lookup_live(self, channel_id: ChannelID, action: EventCode) -> Channel:
        ch = self.get(channel_id)
        self._require_live(ch, action)
        return ch

    def _check_data_request(self, chid: ChannelID, message: Any, root: CID,
                            selector: Any) -> None:
        """Refuse a data request whose root or selector is not what its
        channel is (or its opening request asks) for: a validator approved
        those, and a peer must not have a node walk or send anything else
        (another root it holds, or a selector built to walk without end)."""
        if isinstance(message, TransferRequest) and message.type in (
                MessageType.New, MessageType.Restart):
            want_root, want_selector = message.base_cid, message.selector
        else:
            ch = self.channels.get(chid)
            if ch is None:
                return  # refused below as an unknown channel
            want_root, want_selector = ch.base_cid, ch.selector
        if root != want_root:
            raise ProtocolError(f"data request for root {root}, not the channel's {want_root}")
        if selector_node(selector) != selector_node(want_selector):
            raise ProtocolError("data request with a selector other than the channel's")

    # ------------------------------------------------------------------ messages

    def _decode_voucher(self, encoded: Encoded) -> Any:
        try:
            return self.registry.decode_voucher(*encoded)
        except RegistryError:
            return encoded

    def _decode_result(self, encoded: Encoded) -> Any:
        try:
            return self.registry.decode_voucher_result(*encoded)
        except RegistryError:
            return encoded

    def _new_request(self, ch: Channel, kind: MessageType) -> TransferRequest:
        return TransferRequest(
            type=kind, transfer_id=ch.channel_id.id, base_cid=ch.base_cid,
            selector=ch.selector, voucher=ch.voucher[1], voucher_type=ch.voucher[0],
            pull=ch.is_pull, paused=initiator_paused(ch.record.status),
        )

    def _update_message(self, ch: Channel, *, paused: bool) -> Any:
        if ch.is_initiator:
            return update_request(ch.channel_id.id, paused=paused)
        return update_response(ch.channel_id.id, paused=paused)

    def _response(self, ch: Channel, kind: MessageType, accepted: bool) -> TransferResponse:
        paused = responder_paused(ch.record.status)
        return self._result_response(kind, ch.channel_id.id, accepted, paused, None)

    def _revalidation_response(self, ch: Channel, accepted: bool, paused: bool,
                               result: Encoded | None) -> TransferResponse:
        kind = MessageType.Complete if ch.record.status in COMPLETE_ANSWER_STATUSES \
            else MessageType.VoucherResult
        return self._result_response(kind, ch.channel_id.id, accepted, paused, result)

    @staticmethod
    def _result_response(kind: MessageType, transfer_id: int, accepted: bool, paused: bool,
                         result: Encoded | None) -> TransferResponse:
        rtype, rnode = ("", None) if result is None else result
        return VERDICTS[kind](transfer_id, accepted=accepted, paused=paused,
                              voucher_result_type=rtype, voucher_result=rnode)
