"""The Manager: drives every channel through the state machine.

It answers the application (open, pause, resume, cancel, vouchers), the
transport (requests, responses, data events) and the clock (timeouts,
restarts), and in each case does the same three things in the same order:

1. apply an event to the channel's record (:func:`statemachine.apply`; an
   event the table refuses changes nothing),
2. persist the record (progress counters are batched, see below) and publish
   the event to subscribers,
3. perform the effects: send a message, pause or resume the transport, clean
   up.

Every task the Manager starts belongs to the task group opened by
``async with Manager(...)``; leaving the block cancels them all, flushes the
store and stops the event bus.

Blocks received do not write one by one: their events (DataReceived,
DataReceivedProgress) are applied to the record in memory and published, and
the record is written every :attr:`ManagerConfig.save_progress_every` blocks,
with every status change, at each watchdog tick and when the Manager stops;
index and bytes are always written together. A restarted transfer asks the
sender to skip the blocks the store knows were received; counters only grow
with block indices above the highest already recorded, so no byte is counted
twice (after a crash, the blocks the store had not recorded yet move again
and are counted then). The sender writes its counters with each block's
progress event: the receiver's restart skips what it holds without saying
what those blocks weighed, so a sender's count lost in a crash could not be
made up.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import TaskGroup

from datatransfer import monitor
from datatransfer.channel import Channel, Encoded
from datatransfer.config import ManagerConfig
from datatransfer.errors import (
    ChannelNotFound,
    DataTransferError,
    Pause,
    ProtocolError,
    Rejected,
    RetryValidation,
    Unsupported,
)
from datatransfer.events import EventBus, Subscriber, Unsubscribe
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
from datatransfer.refusals import Refusals
from datatransfer.store import ChannelStore, SqliteChannelStore
from datatransfer.types import ChannelID, ChannelState, Event, PeerID
from registry import NOT_HANDLED, Registry, Voucher, VoucherResult
from registry.registry import RegistryError
from statemachine import (
    ABORTING_STATUSES,
    CLEANUP_STATUSES,
    COMPLETE_ANSWER_STATUSES,
    FINAL_STATUSES,
    FINALIZING_STATUSES,
    RESPONDER_FINALIZING_STATUSES,
    RESPONDER_HOLDS_STATUSES,
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
from transport.base import PROCEED, Decision, Transport, TransportError, TransportEvents

log = logging.getLogger("datatransfer.manager")

E = EventCode
S = Status

#: Longest the Manager waits, when it stops, for its last messages to be taken.
DRAIN_TIMEOUT = 2.0

#: Events that record a new block: progress, so they reset the restart count
#: (a block moved again after a restart does too: :meth:`Manager._moved_again`).
#: Their write is deferred to the *Progress event that follows (see module doc).
_DATA_EVENTS = frozenset({E.DataReceived, E.DataSent, E.DataQueued})


@dataclass(slots=True)
class _Runtime:
    """What the Manager knows about a channel beyond its stored record."""

    status_since: float = field(default_factory=time.monotonic)
    last_activity: float = field(default_factory=time.monotonic)
    dirty: bool = False
    #: Progress events applied since the record was last saved.
    unsaved_blocks: int = 0
    restart_scheduled: bool = False
    #: The data request was opened (or served) and has not ended.
    data_open: bool = False
    #: Whether the channel is written to the store: False for a request that
    #: waits for a voucher that passes validation (nothing a peer sends is
    #: stored before a validator accepted it).
    persist: bool = True
    #: Decoded vouchers / results, rebuilt when the lists grow.
    decoded: tuple[int, int, tuple[Any, ...], tuple[Any, ...]] | None = None
    waiters: list[anyio.Event] = field(default_factory=list)


def _now() -> float:
    return time.monotonic()


def _guarded(default: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The boundary around a transport callback: whatever goes wrong while
    handling what a transport reports (a peer's input the handler did not
    foresee) is refused and counted, and ``default`` is the answer; it never
    escapes into the transport's task group and takes the node down."""

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        async def guarded(self: Manager, channel_id: ChannelID, *args: Any) -> Any:
            try:
                return await fn(self, channel_id, *args)
            except Exception as exc:  # noqa: BLE001 - the boundary
                self._refuse_input(_refusal_kind(exc), self._peer_of(channel_id),
                                   f"{fn.__name__.lstrip('_')} for {channel_id}: {exc!r}")
                return default

        return guarded

    return wrap


def _malformed_new_request(request: TransferRequest, via_data: bool) -> str | None:
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


def _selector_node(selector: Any) -> Any:
    return selector_to_node(selector) if isinstance(selector, Selector) else selector


def _refusal_kind(exc: BaseException) -> str:
    """The metrics label of a refused input."""
    if isinstance(exc, ChannelNotFound):
        return "unknown-channel"
    if isinstance(exc, IllegalTransition):
        return "illegal-event"
    if isinstance(exc, DataTransferError):
        return "protocol"
    return "malformed"


class Manager:
    """The data-transfer manager of one node.

    Use as ``async with Manager(transport, store=...) as manager:``. The
    transport decides the node's peer id; the store keeps channels across
    restarts (``":memory:"`` keeps them for this process only).
    """

    def __init__(
        self,
        transport: Transport,
        *,
        store: ChannelStore | str | Path = ":memory:",
        registry: Registry | None = None,
        config: ManagerConfig | None = None,
        event_bus: EventBus | None = None,
    ) -> None:
        self.transport = transport
        #: What the transport calls (see :class:`TransportInputs`).
        self.transport_events = TransportInputs(self)
        self.store = store if isinstance(store, ChannelStore) else SqliteChannelStore(store)
        self.registry = registry or Registry()
        self.config = config or ManagerConfig()
        self.events = event_bus or EventBus()
        self._channels: dict[ChannelID, Channel] = {}
        self._runtime: dict[ChannelID, _Runtime] = {}
        self._tg: TaskGroup | None = None
        self._next_id = 0
        self._started = False
        #: Channels each peer has open here (not final) as their responder,
        #: and New requests of each peer now being validated: what
        #: ``max_channels_per_peer`` bounds (see :meth:`_channel_limit_reached`).
        self._live_from: dict[PeerID, set[ChannelID]] = {}
        self._validating: dict[PeerID, int] = {}
        #: Inputs from peers refused, by kind (see :meth:`_refuse_input`).
        self.refusals = Refusals(log)

    # ------------------------------------------------------------------ lifecycle

    @property
    def peer_id(self) -> PeerID:
        """This node's peer id (the transport's)."""
        return self.transport.peer_id

    async def __aenter__(self) -> Manager:
        self._tg_cm = anyio.create_task_group()
        self._tg = await self._tg_cm.__aenter__()
        try:
            await self._tg.start(self.transport.serve, self.transport_events)
            self._started = True  # before _load: it schedules restarts
            self._load()
            self._tg.start_soon(self._watchdog)
        except BaseException:
            self._started = False
            self._tg.cancel_scope.cancel()
            await self._tg_cm.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        self._started = False
        assert self._tg is not None
        # messages sent last (a cancel on the way out) reach their peers first
        with anyio.move_on_after(DRAIN_TIMEOUT, shield=True):
            await self.transport.drain()
        self._tg.cancel_scope.cancel()
        try:
            return await self._tg_cm.__aexit__(*exc_info)
        finally:
            self._flush()
            self._tg = None
            self.events.close()

    def _load(self) -> None:
        """Reload the live channels from the store and decide what to do with
        each. Ended channels stay in the store (see :meth:`_evict`)."""
        self._next_id = self.store.max_transfer_id(self.peer_id)
        now = _now()
        for ch in self.store.live():
            if ch.self_peer != self.peer_id:
                log.warning("store holds channel %s of another peer; ignored", ch.channel_id)
                continue
            chid = ch.channel_id
            self._channels[chid] = ch
            self._runtime[chid] = _Runtime(status_since=now, last_activity=now)
            self._track_live(ch)
            status = ch.record.status
            # A responder waiting for the final voucher, or paused without its
            # app having paused, waits for a voucher (records stored before the
            # flag was part of them do not say so).
            rec = ch.record
            rec.paused_for_voucher = rec.paused_for_voucher or not ch.is_initiator and (
                status == S.Finalizing or (status == S.ResponderPaused and not rec.app_paused))
            if status in CLEANUP_STATUSES:
                self._fire(ch, E.CompleteCleanupOnRestart)
            elif self.config.auto_restart and ch.is_initiator and not ch.record.app_paused:
                self._schedule_restart(ch, "node restarted", delay=0.0)

    # ------------------------------------------------------------------ registry

    def register_voucher_type(self, voucher_type: type[Voucher], validator: Any) -> None:
        """Accept requests carrying vouchers of this type, checked by ``validator``."""
        self.registry.register_voucher_type(voucher_type, validator)

    def register_revalidator(self, voucher_type: type[Voucher], revalidator: Any) -> None:
        """Use ``revalidator`` for vouchers of this type sent during a transfer."""
        self.registry.register_revalidator(voucher_type, revalidator)

    def register_voucher_result_type(self, result_type: type[VoucherResult]) -> None:
        """Decode voucher results of this type when they arrive."""
        self.registry.register_voucher_result_type(result_type)

    # ------------------------------------------------------------------ queries

    def channel_state(self, channel_id: ChannelID) -> ChannelState:
        """A snapshot of the channel; raises :class:`ChannelNotFound`."""
        return self._snapshot(self._lookup(channel_id))

    def channel_status(self, channel_id: ChannelID) -> Status:
        """The channel's status, or ``ChannelNotFoundError`` for an unknown id."""
        try:
            return self._lookup(channel_id).record.status
        except ChannelNotFound:
            return S.ChannelNotFoundError

    def in_progress_channels(self) -> dict[ChannelID, ChannelState]:
        """Snapshots of every channel that has not reached a final status."""
        return {
            chid: self._snapshot(ch)
            for chid, ch in self._channels.items()
            if ch.record.status not in FINAL_STATUSES
        }

    def channels(self) -> dict[ChannelID, ChannelState]:
        """Snapshots of every channel this node knows, final ones included
        (those ended a while ago are read from the store)."""
        out = {ch.channel_id: self._snapshot(ch) for ch in self.store.all()
               if ch.self_peer == self.peer_id and ch.channel_id not in self._channels}
        out.update((chid, self._snapshot(ch)) for chid, ch in self._channels.items())
        return out

    def subscribe(self, subscriber: Subscriber) -> Unsubscribe:
        """Call ``subscriber(event, state)`` for every event of every channel
        (delivery policy: :mod:`datatransfer.events`)."""
        return self.events.subscribe(subscriber)

    def subscribe_channel(self, channel_id: ChannelID, subscriber: Subscriber) -> Unsubscribe:
        """Call ``subscriber(event, state)`` for every event of one channel."""
        return self.events.subscribe_channel(channel_id, subscriber)

    async def wait(
        self,
        channel_id: ChannelID,
        statuses: Iterable[Status] = FINAL_STATUSES,
        timeout: float | None = None,
    ) -> ChannelState:
        """Wait until the channel reaches one of ``statuses`` (default: a final
        one) and return its snapshot; ``TimeoutError`` after ``timeout``. A
        channel that ends in a final status not among ``statuses`` never
        reaches them: its snapshot is returned then (check its ``status``)."""
        wanted = frozenset(statuses)
        ch = self._lookup(channel_id)
        with anyio.fail_after(timeout if timeout is not None else math.inf):
            while ch.record.status not in wanted and ch.record.status not in FINAL_STATUSES:
                rt = self._runtime[channel_id]
                ev = anyio.Event()
                rt.waiters.append(ev)
                await ev.wait()
                ch = self._lookup(channel_id)
        return self._snapshot(ch)

    # ------------------------------------------------------------------ opening

    async def open_push_channel(
        self, peer: PeerID, voucher: Voucher, base_cid: CID, selector: Any
    ) -> ChannelID:
        """Offer the blocks ``selector`` reaches from ``base_cid`` to ``peer``.

        Returns once the request is sent; the channel then moves on its own
        (watch it with :meth:`subscribe` or :meth:`wait`).
        """
        ch = self._create(peer, voucher, base_cid, selector, is_pull=False)
        request = self._new_request(ch, MessageType.New)
        try:
            await self._send(peer, request)
        except TransportError as exc:
            self._try_fire(ch, E.Error, error=f"unable to send request: {exc}")
        return ch.channel_id

    async def open_pull_channel(
        self, peer: PeerID, voucher: Voucher, base_cid: CID, selector: Any
    ) -> ChannelID:
        """Ask ``peer`` for the blocks ``selector`` reaches from ``base_cid``."""
        ch = self._create(peer, voucher, base_cid, selector, is_pull=True)
        await self._open_data(ch, self._new_request(ch, MessageType.New), skip=0)
        return ch.channel_id

    def _create(
        self, peer: PeerID, voucher: Voucher, base_cid: CID, selector: Any, *, is_pull: bool
    ) -> Channel:
        self._require_started()
        if peer == self.peer_id:
            raise ValueError("cannot open a channel to this node itself")
        if not isinstance(voucher, Voucher):
            raise TypeError(f"{voucher!r} is not a Voucher")
        self._next_id += 1
        chid = ChannelID(self.peer_id, peer, self._next_id)
        me = self.peer_id
        ch = Channel(
            channel_id=chid,
            self_peer=me,
            base_cid=base_cid,
            selector=selector,
            voucher=(voucher.type_id, voucher.to_node()),
            sender=peer if is_pull else me,
            recipient=me if is_pull else peer,
            is_pull=is_pull,
        )
        self._add(ch)
        return ch

    def _add(self, ch: Channel, *, persist: bool = True) -> None:
        self._channels[ch.channel_id] = ch
        self._runtime[ch.channel_id] = _Runtime(persist=persist)
        self._track_live(ch)
        self._fire(ch, E.Open)

    # ------------------------------------------------------------------ app actions

    async def send_voucher(self, channel_id: ChannelID, voucher: Voucher) -> None:
        """Send a new voucher to the responder (payment, final settlement)."""
        ch = self._lookup(channel_id)
        if not ch.is_initiator:
            raise Unsupported("only the initiator of a channel sends vouchers")
        self._require_live(ch, E.NewVoucher)
        encoded = (voucher.type_id, voucher.to_node())
        if ch.record.status in FINALIZING_STATUSES:
            self._flag(ch, paid_while_finalizing=True)  # (stored with the event)
        self._fire(ch, E.NewVoucher, voucher=encoded)
        request = voucher_request(channel_id.id, voucher_type=encoded[0], voucher=encoded[1])
        await self._send_or_disconnect(ch, request)

    async def close_channel(self, channel_id: ChannelID) -> None:
        """Cancel the channel on both sides."""
        ch = self._lookup(channel_id)
        self._require_live(ch, E.Cancel)
        if ch.record.status == S.Completing:  # succeeded; only cleanup is left
            raise IllegalTransition(ch.record.status, E.Cancel)
        self._fire(ch, E.Cancel, message="cancelled by this node")
        await self._tell_cancel(ch)

    async def pause_channel(self, channel_id: ChannelID) -> None:
        """Pause the data flow from this side until :meth:`resume_channel`.

        Raises :class:`Unsupported` on a transport that cannot pause, and on a
        request this node (the responder) has not accepted because it waits
        for a voucher that passes validation: a paused request can never be
        accepted. (An initiator that pauses such a request has it failed by
        the responder at once, with a rejection.)"""
        ch = self._lookup(channel_id)
        self._require_live(ch, E.PauseInitiator if ch.is_initiator else E.PauseResponder)
        if not self.transport.supports_pause:
            raise Unsupported("this transport cannot pause channels")
        rt = self._runtime[channel_id]
        if ch.record.awaiting_validation:  # (only a responder knows it is waiting)
            raise Unsupported(
                f"cannot pause channel {channel_id} before accepting it: the request waits "
                "for a voucher that passes validation (RetryValidation), and a paused request "
                "can never be accepted (the channel table accepts only from Requested); "
                "reject or cancel it instead")
        self._flag(ch, app_paused=True)
        self._fire(ch, E.PauseInitiator if ch.is_initiator else E.PauseResponder)
        if rt.data_open:
            await self._transport_call(ch, self.transport.pause_channel)
        await self._send_or_disconnect(ch, self._update_message(ch, paused=True))

    async def resume_channel(self, channel_id: ChannelID) -> None:
        """Release this side's pause."""
        ch = self._lookup(channel_id)
        self._require_live(ch, E.ResumeInitiator if ch.is_initiator else E.ResumeResponder)
        if not self.transport.supports_pause:
            raise Unsupported("this transport cannot pause channels")
        rt = self._runtime[channel_id]
        self._flag(ch, app_paused=False)
        # A responder's application that releases a request still waiting for
        # a voucher that passes validation lets its data flow (as Go does):
        # it took the channel on, so the channel is stored from now on.
        rt.persist = True
        finalizing = ch.record.status == S.Finalizing
        self._fire(ch, E.ResumeInitiator if ch.is_initiator else E.ResumeResponder)
        message = self._update_message(ch, paused=False)
        if finalizing and ch.record.status == S.Completing:
            # the responder waived the final voucher: tell the initiator we completed
            self._flag(ch, paused_for_voucher=False)
            message = self._result_response(MessageType.Complete, channel_id.id, True,
                                             False, None)
        if rt.data_open:
            try:
                await self.transport.resume_channel(channel_id, message)
            except TransportError as exc:
                self._try_fire(ch, E.Disconnected, error=str(exc))
        else:
            await self._send_or_disconnect(ch, message)
            if ch.is_initiator:
                await self.restart_channel(channel_id)

    async def restart_channel(self, channel_id: ChannelID) -> None:
        """Reopen the data flow of a channel after a disconnect, skipping the
        blocks the receiver already holds. Final channels are left alone."""
        ch = self._lookup(channel_id)
        status = ch.record.status
        if status in FINAL_STATUSES:
            return
        if status in CLEANUP_STATUSES:
            self._fire(ch, E.CompleteCleanupOnRestart)
            return
        # counted here, recorded as a Restart event when the responder accepts
        # (as Go does); only data moving again resets the count (see
        # ManagerConfig.max_restarts), so the count is of restarts in a row
        # that moved nothing, across node restarts too (it is stored)
        ch.restarts += 1
        self._save(ch)
        if not ch.is_initiator:
            # the initiator drives restarts: ask it to restart (as Go does)
            await self._send_or_disconnect(ch, restart_existing_channel_request(channel_id))
        elif ch.is_pull:  # we receive: reopen the data request
            await self._open_data(ch, self._new_request(ch, MessageType.Restart),
                                  skip=ch.record.received_index)
        else:  # we send: the responder reopens its data request to us
            await self._send_or_disconnect(ch, self._new_request(ch, MessageType.Restart))

    # ------------------------------------------------------------------ transport events
    # (called through :class:`TransportInputs`, which the transport holds)

    async def _on_message(self, sender: PeerID, message: Any) -> None:
        """A data-transfer message arrived on its own."""
        try:
            if isinstance(message, TransferRequest):
                await self._on_request_message(sender, message)
            elif isinstance(message, TransferResponse):
                chid = ChannelID(self.peer_id, sender, message.transfer_id)
                ch = self._channels.get(chid)
                if ch is None:
                    raise ChannelNotFound(chid)
                self._handle_response(ch, message)
            else:
                raise ProtocolError(f"not a data-transfer message: {type(message).__name__}")
        except Exception as exc:  # noqa: BLE001 - the boundary: see _refuse_input
            self._refuse_input(_refusal_kind(exc), sender, f"message refused: {exc}")

    async def _on_request_received(
        self, channel_id: ChannelID, sender: PeerID, message: Any,
        root: CID | None = None, selector: Any = None,
    ) -> Decision:
        """A data request arrived; decide whether to serve it. ``root`` and
        ``selector``: what the data request itself asks for, when the
        transport carries them apart from the message (graphsync does):
        they must be what the channel was validated for."""
        try:
            if root is not None:
                self._check_data_request(channel_id, message, root, selector)
            if isinstance(message, TransferRequest):
                if message.type == MessageType.New:
                    return await self._receive_new(channel_id, sender, message, via_data=True)
                if message.type == MessageType.Restart:
                    return await self._receive_restart(channel_id, sender, message)
                if message.type in (MessageType.Update, MessageType.Voucher, MessageType.Cancel):
                    return await self._receive_on_data_request(channel_id, sender, message)
                raise ProtocolError(f"data request carries a {message.type.name} request")
            if isinstance(message, TransferResponse):
                # a push responder pulls the data back from us, the initiator
                ch = self._channels.get(channel_id)
                if ch is None or not ch.is_initiator or not ch.is_sender:
                    raise ChannelNotFound(channel_id)
                self._handle_response(ch, message)
                if is_ending(ch.record.status):
                    return Decision(accept=False)
                self._runtime[channel_id].data_open = True
                paused = initiator_paused(ch.record.status)
                return Decision(pause=paused)
            raise ProtocolError(f"not a data-transfer message: {type(message).__name__}")
        except Exception as exc:  # noqa: BLE001 - the boundary: see _refuse_input
            self._refuse_input(_refusal_kind(exc), sender,
                               f"data request for {channel_id} refused: {exc}")
            return Decision(accept=False)

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
            ch = self._channels.get(chid)
            if ch is None:
                return  # refused below as an unknown channel
            want_root, want_selector = ch.base_cid, ch.selector
        if root != want_root:
            raise ProtocolError(f"data request for root {root}, not the channel's {want_root}")
        if _selector_node(selector) != _selector_node(want_selector):
            raise ProtocolError("data request with a selector other than the channel's")

    @_guarded(None)
    async def _on_response_received(self, channel_id: ChannelID, response: Any) -> None:
        """A data-transfer response arrived with the data flowing back."""
        ch = self._channels.get(channel_id)
        if ch is None or not isinstance(response, TransferResponse):
            self._refuse_input("unknown-channel", self._peer_of(channel_id),
                               f"response for unknown channel {channel_id} ignored")
            return
        self._handle_response(ch, response)

    @_guarded(None)
    async def _on_channel_opened(self, channel_id: ChannelID) -> None:
        ch = self._channels.get(channel_id)
        if ch is not None:
            self._runtime[channel_id].data_open = True
            self._try_fire(ch, E.Opened)

    @_guarded(Decision(accept=False))
    async def _on_data_queued(
        self, channel_id: ChannelID, cid: CID, size: int, index: int
    ) -> Decision:
        ch = self._channels.get(channel_id)
        if ch is None:
            return Decision(accept=False)
        if index <= ch.record.queued_index:
            self._moved_again(ch)  # re-sent after a restart: already counted
            return PROCEED
        self._progress(ch, E.DataQueued, E.DataQueuedProgress, index, size)
        if ch.is_initiator or not ch.is_pull:
            return PROCEED
        return await self._revalidate_progress(ch, "on_pull_data_sent", size)

    @_guarded(None)
    async def _on_data_sent(self, channel_id: ChannelID, cid: CID, size: int, index: int) -> None:
        ch = self._channels.get(channel_id)
        if ch is None:
            return
        if index > ch.record.sent_index:
            self._progress(ch, E.DataSent, E.DataSentProgress, index, size)
        else:
            self._moved_again(ch)

    @_guarded(Decision(accept=False))
    async def _on_data_received(
        self, channel_id: ChannelID, cid: CID, size: int, index: int
    ) -> Decision:
        ch = self._channels.get(channel_id)
        if ch is None:
            return Decision(accept=False)
        if ch.is_initiator and ch.record.status == S.Requested:
            self._try_fire(ch, E.Accept)  # data flows only once accepted: the answer was lost
        if index <= ch.record.received_index:
            self._moved_again(ch)
            return PROCEED
        self._progress(ch, E.DataReceived, E.DataReceivedProgress, index, size)
        if ch.is_initiator or ch.is_pull:
            return PROCEED
        return await self._revalidate_progress(ch, "on_push_data_received", size)

    @_guarded(None)
    async def _on_channel_completed(self, channel_id: ChannelID, error: str | None) -> None:
        ch = self._channels.get(channel_id)
        if ch is None:
            return
        self._runtime[channel_id].data_open = False
        status = ch.record.status
        if is_ending(status):
            return
        if error is not None:
            self._fail_here(ch, f"data transfer failed: {error}")
            return
        if ch.is_initiator:
            self._try_fire(ch, E.FinishTransfer)
            return
        await self._responder_completes(ch)

    @_guarded(None)
    async def _on_request_cancelled(self, channel_id: ChannelID, reason: str) -> None:
        await self._transport_trouble(channel_id, E.RequestCancelled, reason)

    @_guarded(None)
    async def _on_disconnected(self, channel_id: ChannelID, reason: str) -> None:
        await self._transport_trouble(channel_id, E.Disconnected, reason)

    @_guarded(None)
    async def _on_send_data_error(self, channel_id: ChannelID, reason: str) -> None:
        await self._transport_trouble(channel_id, E.SendDataError, reason)

    @_guarded(None)
    async def _on_receive_data_error(self, channel_id: ChannelID, reason: str) -> None:
        await self._transport_trouble(channel_id, E.ReceiveDataError, reason)

    async def _transport_trouble(self, channel_id: ChannelID, event: EventCode, reason: str) -> None:
        ch = self._channels.get(channel_id)
        if ch is None:
            return
        self._runtime[channel_id].data_open = False
        if is_ending(ch.record.status):
            return  # already ending: keep the reason it is ending for
        if not self._try_fire(ch, event, error=reason):
            return
        if ch.is_initiator and event != E.RequestCancelled:
            self._schedule_restart(ch, reason)

    # ------------------------------------------------------------------ requests

    async def _on_request_message(self, sender: PeerID, request: TransferRequest) -> None:
        kind = request.type
        if kind == MessageType.RestartExistingChannelRequest:
            chid = request.restart_channel
            if chid is None or chid.initiator != self.peer_id or chid.responder != sender:
                raise ProtocolError("restart-existing-channel request for a channel "
                                    f"{sender} does not respond to")
            await self.restart_channel(chid)
            return
        chid = ChannelID(sender, self.peer_id, request.transfer_id)
        if kind == MessageType.New:
            await self._receive_new(chid, sender, request, via_data=False)
            return
        if kind == MessageType.Restart:
            if request.pull:
                raise ProtocolError("a pull's restart request travels with the data request")
            decision = await self._receive_restart(chid, sender, request)
            ch = self._get(chid)
            if not decision.accept:
                await self._send_quietly(sender, decision.message)
                return
            await self._open_data(ch, decision.message, skip=ch.record.received_index)
            if decision.pause and self._runtime[chid].data_open:
                await self._transport_call(ch, self.transport.pause_channel)
            return
        ch = self._get(chid)
        if kind == MessageType.Cancel:
            # Ignored once the channel fails or is cancelled already (e.g. both
            # sides timed out and announced it): it keeps the reason it ends for.
            if ch.record.status not in FINAL_STATUSES | ABORTING_STATUSES:
                self._try_fire(ch, E.Cancel, message="cancelled by the other peer")
            return
        if kind == MessageType.Update:
            if request.paused and ch.record.awaiting_validation:
                await self._refuse_unaccepted_pause(ch)
                return
            self._try_fire(ch, E.PauseInitiator if request.paused else E.ResumeInitiator)
            return
        if kind == MessageType.Voucher:
            await self._receive_voucher(ch, request)
            return
        raise ProtocolError(f"unexpected request type {kind!r}")

    async def _receive_on_data_request(
        self, chid: ChannelID, sender: PeerID, request: TransferRequest
    ) -> Decision:
        """A data request for an existing channel carrying an update, a
        voucher or a cancel. A go-graphsync requester pauses by cancelling
        its request and resumes by sending it again with the resume message
        (go-data-transfer takes any request message there, not only New and
        Restart). The message is handled as if it came on its own; then the
        data request is refused if the message cancelled or the channel is
        over, else served (from the requester's skip count), held while this
        side pauses or waits for a voucher."""
        ch = self._get(chid)
        if not ch.is_sender:
            raise ProtocolError(f"data request for channel {chid}, whose data this node receives")
        await self._on_request_message(sender, request)
        status = ch.record.status
        if request.type == MessageType.Cancel or is_ending(status):
            return Decision(accept=False)
        rt = self._runtime[chid]
        rt.data_open = True
        hold = ch.record.awaiting_validation or status in RESPONDER_HOLDS_STATUSES
        return Decision(pause=hold)

    async def _receive_new(
        self, chid: ChannelID, sender: PeerID, request: TransferRequest, *, via_data: bool
    ) -> Decision:
        if chid in self._channels:
            raise ProtocolError(f"channel {chid} already exists")
        voucher_enc: Encoded = (request.voucher_type, request.voucher)
        malformed = _malformed_new_request(request, via_data)
        if malformed is not None:
            self._refuse_input("malformed-request", sender, f"request {chid} refused: {malformed}")
            outcome, result = "reject", None
        elif self._channel_limit_reached(chid, sender):
            outcome, result = "reject", None
        else:
            # counted while the validator runs, so that requests arriving
            # meanwhile cannot all pass the limit check at once
            self._validating[sender] = self._validating.get(sender, 0) + 1
            try:
                outcome, result = await self._validate(chid, sender, request, voucher_enc,
                                                       restart=False)
            finally:
                left = self._validating.pop(sender) - 1
                if left:
                    self._validating[sender] = left
        if outcome == "reject":
            response = self._result_response(MessageType.New, chid.id, False, False, result)
            if not via_data:
                await self._send_quietly(sender, response)
            return Decision(message=response, accept=False)
        me = self.peer_id
        ch = Channel(
            channel_id=chid,
            self_peer=me,
            base_cid=request.base_cid,
            selector=request.selector,
            voucher=voucher_enc,
            sender=me if request.pull else sender,
            recipient=sender if request.pull else me,
            is_pull=request.pull,
        )
        # A request waiting for a voucher that passes validation is kept in
        # memory only: nothing a stranger sends is stored before a validator
        # accepted it.
        self._add(ch, persist=outcome != "retry")
        if result is not None:
            self._fire(ch, E.NewVoucherResult, voucher_result=result)
        rt = self._runtime[chid]
        if outcome == "retry":
            self._flag(ch, awaiting_validation=True)
            response = self._result_response(MessageType.VoucherResult, chid.id, True, True, result)
        else:
            self._fire(ch, E.Accept)
            if outcome == "pause":
                self._flag(ch, paused_for_voucher=True)
                self._fire(ch, E.PauseResponder)
            response = self._result_response(
                MessageType.New, chid.id, True, outcome == "pause", result
            )
        hold = outcome in ("pause", "retry")
        if via_data:
            rt.data_open = True
            return Decision(message=response, pause=hold)
        if request.pull:
            # A pull asked for on the message protocol, not in a data request:
            # answered there, as go-data-transfer's receiver does; the data
            # flows only when the initiator opens its data request. A node
            # never opens one back for a pull: that would make it fetch and
            # store whatever a stranger names.
            await self._send_or_disconnect(ch, response)
            return PROCEED
        # a push: we receive, so we open the data request back to the initiator
        if outcome == "retry":
            await self._send_or_disconnect(ch, response)
        else:
            await self._open_data(ch, response, skip=0)
            if hold and rt.data_open:
                await self._transport_call(ch, self.transport.pause_channel)
        return PROCEED

    def _channel_limit_reached(self, chid: ChannelID, sender: PeerID) -> bool:
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
        self._refuse_input("too-many-channels", sender,
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

    async def _receive_restart(
        self, chid: ChannelID, sender: PeerID, request: TransferRequest
    ) -> Decision:
        ch = self._channels.get(chid)
        if ch is None:
            ch = self._revive(chid)  # (it may have ended a while ago)
        if ch is not None and ch.base_cid != request.base_cid:
            raise ProtocolError(f"restart of {chid} names another base CID")
        if ch is None or is_ending(ch.record.status):
            if ch is not None and ch.record.status in SUCCEEDED_STATUSES:
                # our completion message was lost: say it again. A pull's
                # initiator may have lost the end of the data too: serve it
                # again (it skips what it holds; a final channel counts nothing)
                if request.pull:  # a Completing cleanup must not cancel it
                    self._runtime[chid].data_open = True
                return Decision(message=self._response(ch, MessageType.Complete, True),
                                accept=request.pull)
            response = self._result_response(MessageType.Restart, chid.id, False, False, None)
            return Decision(message=response, accept=False)
        outcome, result = await self._validate(chid, sender, request, ch.voucher, restart=True)
        if result is not None:
            self._fire(ch, E.NewVoucherResult, voucher_result=result)
        if outcome == "reject":
            self._try_fire(ch, E.Error, error="restart request failed validation")
            return Decision(message=self._result_response(
                MessageType.Restart, chid.id, False, False, result), accept=False)
        self._fire(ch, E.Restart)
        rt = self._runtime[chid]
        if outcome == "pause" and not ch.record.paused_for_voucher:
            self._flag(ch, paused_for_voucher=True)
            self._try_fire(ch, E.PauseResponder)
        hold = is_paused(ch.record.status)
        rt.data_open = True
        return Decision(
            message=self._result_response(MessageType.Restart, chid.id, True,
                                          responder_paused(ch.record.status),
                                          result),
            pause=hold,
        )

    async def _validate(
        self,
        chid: ChannelID,
        sender: PeerID,
        request: TransferRequest,
        voucher_enc: Encoded,
        *,
        restart: bool,
    ) -> tuple[str, Encoded | None]:
        """Run the validator; outcome is accept, pause, retry or reject."""
        try:
            voucher = self.registry.decode_voucher(*voucher_enc)
            validator = self.registry.validator(voucher_enc[0])
        except RegistryError as exc:
            log.info("request %s refused: %s", chid, exc)
            return "reject", None
        validate = validator.validate_pull if request.pull else validator.validate_push
        try:
            result = await validate(restart, chid, sender, voucher, request.base_cid,
                                    request.selector)
        except Pause as exc:
            return "pause", self._encode_result(exc.result)
        except RetryValidation as exc:
            return ("reject" if restart else "retry"), self._encode_result(exc.result)
        except Rejected as exc:
            return "reject", self._encode_result(exc.result)
        except Exception as exc:  # a validator bug must not take the node down
            log.warning("validator for %s raised %r; request rejected", chid, exc)
            return "reject", None
        return "accept", self._encode_result(result)

    async def _receive_voucher(self, ch: Channel, request: TransferRequest) -> None:
        chid = ch.channel_id
        encoded: Encoded = (request.voucher_type, request.voucher)
        if ch.record.status in CLEANUP_STATUSES or not self._try_fire(
                ch, E.NewVoucher, voucher=encoded):
            return  # the channel ends or ended (e.g. the voucher crossed our completion)
        rt = self._runtime[chid]
        if ch.record.awaiting_validation:
            await self._revalidate_request(ch, encoded)
            return
        try:
            voucher = self.registry.decode_voucher(*encoded)
            revalidator = self.registry.revalidator(encoded[0])
        except RegistryError as exc:
            await self._fail(ch, f"voucher refused: {exc}",
                             self._result_response(MessageType.VoucherResult, chid.id, False,
                                                   False, None))
            return
        try:
            result = self._encode_result(await revalidator.revalidate(chid, voucher))
        except Pause as exc:
            result = self._encode_result(exc.result)
            if result is not None:
                self._fire(ch, E.NewVoucherResult, voucher_result=result)
            await self._send_or_disconnect(ch, self._revalidation_response(ch, True, True, result))
            return
        except Exception as exc:
            await self._fail(ch, f"voucher refused: {exc}",
                             self._revalidation_response(ch, False, False, None))
            return
        if result is not None:
            self._fire(ch, E.NewVoucherResult, voucher_result=result)
        if not ch.record.paused_for_voucher:
            await self._send_or_disconnect(ch, self._revalidation_response(ch, True, False, result))
            return
        self._flag(ch, paused_for_voucher=False)
        finalizing = ch.record.status == S.Finalizing
        response = self._revalidation_response(ch, True, False, result)
        self._try_fire(ch, E.ResumeResponder)
        if finalizing:
            await self._send_or_disconnect(ch, response)
        elif rt.data_open and not ch.record.app_paused:
            try:
                await self.transport.resume_channel(chid, response)
            except TransportError as exc:
                self._try_fire(ch, E.Disconnected, error=str(exc))
        else:
            await self._send_or_disconnect(ch, response)

    async def _revalidate_request(self, ch: Channel, encoded: Encoded) -> None:
        """A voucher for a request the validator asked to retry."""
        chid = ch.channel_id
        request = new_request(chid.id, base_cid=ch.base_cid, selector=ch.selector,
                              voucher_type=encoded[0], voucher=encoded[1], pull=ch.is_pull)
        outcome, result = await self._validate(chid, ch.other_peer, request, encoded,
                                               restart=False)
        if result is not None:
            self._fire(ch, E.NewVoucherResult, voucher_result=result)
        if outcome == "retry":
            await self._send_or_disconnect(ch, self._result_response(
                MessageType.VoucherResult, chid.id, True, True, result))
            return
        if outcome == "reject":
            await self._fail(ch, "voucher rejected by the validator", self._result_response(
                MessageType.New, chid.id, False, False, result))
            return
        rt = self._runtime[chid]
        rt.persist = True  # validated: from now on it is stored
        if not self._try_fire(ch, E.Accept):  # (pauses are refused while waiting)
            self._flag(ch, awaiting_validation=False)
            if not is_ending(ch.record.status):
                await self._fail(ch, f"cannot accept the request in {ch.record.status.name}",
                                 self._result_response(MessageType.New, chid.id, False,
                                                       False, None))
            return  # (or it ended while the validator ran)
        self._flag(ch, awaiting_validation=False)
        paused = outcome == "pause"
        if paused:
            self._flag(ch, paused_for_voucher=True)
            self._fire(ch, E.PauseResponder)
        response = self._result_response(MessageType.New, chid.id, True, paused, result)
        if ch.is_pull:  # the data request is held open: release it
            if paused:
                await self._send_or_disconnect(ch, response)
            else:
                try:
                    await self.transport.resume_channel(chid, response)
                except TransportError as exc:
                    self._try_fire(ch, E.Disconnected, error=str(exc))
        else:
            await self._open_data(ch, response, skip=0)
            if paused and rt.data_open:
                await self._transport_call(ch, self.transport.pause_channel)

    async def _refuse_unaccepted_pause(self, ch: Channel) -> None:
        """The initiator paused a request that still waits for a voucher that
        passes validation. Go's table (which ours equals) accepts a request
        only from Requested, and a pause moves it to InitiatorPaused, so it
        could never be accepted: rather than hold the channel until a
        timeout, fail it now and tell the initiator (a rejection)."""
        self._flag(ch, awaiting_validation=False)
        await self._fail(ch, (
            "the initiator paused the request before it was accepted (it waited for a "
            "voucher that passes validation); a paused request cannot be accepted"),
            self._result_response(MessageType.New, ch.channel_id.id, False, False, None))

    async def _revalidate_progress(self, ch: Channel, method: str, size: int) -> Decision:
        """Ask the revalidators about bytes moved on a channel we respond to."""
        chid = ch.channel_id
        for revalidator in self.registry.revalidators():
            try:
                result = await getattr(revalidator, method)(chid, size)
            except Pause as exc:
                encoded = self._encode_result(exc.result)
                if encoded is not None:
                    self._fire(ch, E.NewVoucherResult, voucher_result=encoded)
                self._flag(ch, paused_for_voucher=True)
                self._try_fire(ch, E.PauseResponder)
                return Decision(
                    message=self._result_response(MessageType.VoucherResult, chid.id, True,
                                                  True, encoded),
                    pause=True,
                )
            except Exception as exc:
                self._try_fire(ch, E.Error, error=f"revalidator failed: {exc}")
                return Decision(
                    message=self._result_response(MessageType.VoucherResult, chid.id, False,
                                                  False, None),
                    accept=False,
                )
            if result is NOT_HANDLED:
                continue
            encoded = self._encode_result(result)
            if encoded is None:
                return PROCEED
            self._fire(ch, E.NewVoucherResult, voucher_result=encoded)
            return Decision(message=self._result_response(MessageType.VoucherResult, chid.id,
                                                          True, False, encoded))
        return PROCEED

    async def _responder_completes(self, ch: Channel) -> None:
        """The responder moved all data: ask for a final voucher or complete."""
        chid = ch.channel_id
        result: Encoded | None = None
        for revalidator in self.registry.revalidators():
            try:
                outcome = await revalidator.on_complete(chid)
            except Exception as exc:
                await self._fail(ch, f"revalidator failed on completion: {exc}",
                                 self._response(ch, MessageType.Complete, False))
                return
            if outcome is NOT_HANDLED:
                continue
            result = self._encode_result(outcome)
            break
        if result is not None:
            self._fire(ch, E.NewVoucherResult, voucher_result=result)
            self._flag(ch, paused_for_voucher=True)
            self._fire(ch, E.BeginFinalizing)
            response = self._result_response(MessageType.Complete, chid.id, True, True, result)
        else:
            self._fire(ch, E.Complete)
            response = self._result_response(MessageType.Complete, chid.id, True, False, None)
        await self._send_or_disconnect(ch, response)

    # ------------------------------------------------------------------ responses

    def _handle_response(self, ch: Channel, response: TransferResponse) -> None:
        """Apply a response from the responder to our (the initiator's) channel."""
        if is_ending(ch.record.status):
            return  # ending: a late response (e.g. a second Complete) must not move it
        if response.voucher_result_type:
            self._fire(ch, E.NewVoucherResult,
                       voucher_result=(response.voucher_result_type, response.voucher_result))
        kind = response.type
        if kind == MessageType.Cancel:
            self._try_fire(ch, E.Cancel, message="cancelled by the other peer")
            return
        if not response.accepted and kind in VERDICTS:
            # (an Update or Cancel carries no verdict: Go leaves Acpt false)
            self._try_fire(ch, E.Error, error="rejected by the responder")
            return
        if kind == MessageType.Restart:
            self._try_fire(ch, E.Restart)
        # an accepted restart accepts too when the New answer was lost
        if kind in (MessageType.New, MessageType.Restart) and ch.record.status == S.Requested:
            self._fire(ch, E.Accept)
        if kind == MessageType.Complete:
            if response.paused and ch.record.status in RESPONDER_FINALIZING_STATUSES:
                return  # still finalizing (e.g. a short payment): nothing new
            self._try_fire(ch, E.ResponderBeginsFinalization if response.paused
                           else E.ResponderCompletes)
            return
        status = ch.record.status
        if response.paused:
            if not responder_paused(status):
                self._try_fire(ch, E.PauseResponder)
        elif responder_paused(status):
            self._try_fire(ch, E.ResumeResponder)

    # ------------------------------------------------------------------ effects

    async def _open_data(self, ch: Channel, message: Any, *, skip: int) -> None:
        """Open (or reopen) the data request as the receiver."""
        rt = self._runtime[ch.channel_id]
        rt.data_open = True
        rt.last_activity = _now()
        try:
            await self.transport.open_channel(
                ch.other_peer, ch.channel_id, ch.base_cid, ch.selector, message, skip
            )
        except TransportError as exc:
            rt.data_open = False
            reason = f"unable to open data request: {exc}"
            if ch.is_initiator and ch.record.status == S.Requested and ch.restarts == 0:
                self._try_fire(ch, E.Error, error=reason)
            else:
                await self._transport_trouble(ch.channel_id, E.Disconnected, reason)

    async def _send(self, peer: PeerID, message: Any) -> None:
        with anyio.fail_after(self.config.send_timeout):
            await self.transport.send_message(peer, message)

    async def _send_quietly(self, peer: PeerID, message: Any) -> None:
        try:
            await self._send(peer, message)
        except (TransportError, TimeoutError) as exc:
            log.info("could not send %s to %s: %s", type(message).__name__, peer, exc)

    async def _send_or_disconnect(self, ch: Channel, message: Any) -> None:
        """Send a control message; failure is recorded as a disconnect."""
        try:
            await self._send(ch.other_peer, message)
        except (TransportError, TimeoutError) as exc:
            await self._transport_trouble(ch.channel_id, E.Disconnected,
                                          f"unable to send message: {exc}")

    async def _transport_call(self, ch: Channel, method: Callable[[ChannelID], Any]) -> None:
        try:
            await method(ch.channel_id)
        except TransportError as exc:
            log.info("transport %s for %s failed: %s", method.__name__, ch.channel_id, exc)

    async def _tell_cancel(self, ch: Channel, *, only_if_connected: bool = False) -> None:
        if only_if_connected and not self.transport.connected(ch.other_peer):
            # the peer is gone (often why the channel failed): dialing it to
            # say so would be one dial per failed channel, thousands after a
            # node restarts on a store full of a departed peer's channels; a
            # peer that comes back and restarts the channel is refused then
            log.info("channel %s failed; %s is not connected, not told", ch.channel_id,
                     ch.other_peer)
            return
        if ch.is_initiator:
            message: Any = cancel_request(ch.channel_id.id)
        else:
            message = cancel_response(ch.channel_id.id)
        await self._send_quietly(ch.other_peer, message)

    def _fail_here(self, ch: Channel, reason: str) -> None:
        """Fail a channel for a cause found on this node (a timeout, restarts
        spent, the transport ending the data with an error) and tell the other
        peer with a cancel, as Go's ``CloseDataTransferChannelWithError`` does:
        otherwise the peer keeps the channel alive and may even complete it
        (e.g. a responder whose application later waives the final voucher)
        while this side has failed.

        Best effort, in the background: the failure stands and is stored
        whether or not the cancel arrives (the peer is often unreachable,
        which is why the channel failed), and the watchdog that calls this
        never waits on the network (the send is bounded by ``send_timeout``).
        A peer that already ends the channel ignores the cancel."""
        if self._try_fire(ch, E.Error, error=reason) and self._tg is not None:
            self._tg.start_soon(functools.partial(self._tell_cancel, ch, only_if_connected=True))

    async def _fail(self, ch: Channel, reason: str, response: Any) -> None:
        """Fail a channel we respond to, telling the initiator why."""
        self._try_fire(ch, E.Error, error=reason)
        await self._send_quietly(ch.other_peer, response)

    async def _cleanup(self, ch: Channel) -> None:
        """Release transport resources of a channel in a cleanup status, then
        fire CleanupComplete. Runs as a task of the Manager's group."""
        chid = ch.channel_id
        status = ch.record.status
        try:
            if status in ABORTING_STATUSES:
                await self.transport.close_channel(chid)
            if not (status == S.Completing and self._runtime[chid].data_open):
                # (a restart crossing our completion is being served again)
                await self.transport.cleanup_channel(chid)
        except TransportError as exc:
            log.info("cleanup of %s: %s", chid, exc)
        self._runtime[chid].data_open = False
        if ch.record.status in CLEANUP_STATUSES:
            self._try_fire(ch, E.CleanupComplete)

    def _schedule_restart(self, ch: Channel, reason: str, delay: float | None = None) -> None:
        rt = self._runtime[ch.channel_id]
        if rt.restart_scheduled or not self._started or self._tg is None:
            return
        if not self.config.auto_restart and delay == 0.0:
            return
        backoff = monitor.restart_delay(ch.restarts, self.config)
        if backoff is None:
            self._fail_here(
                ch, f"gave up after {ch.restarts} restarts without progress: {reason}")
            return
        if delay is None:
            delay = backoff
        rt.restart_scheduled = True
        self._tg.start_soon(self._restart_later, ch.channel_id, delay)

    async def _restart_later(self, chid: ChannelID, delay: float) -> None:
        await anyio.sleep(delay)
        rt = self._runtime[chid]
        rt.restart_scheduled = False
        ch = self._channels[chid]
        if is_ending(ch.record.status):
            return
        if ch.record.app_paused:
            return  # resumed later by the application, which restarts it
        await self.restart_channel(chid)

    # ------------------------------------------------------------------ watchdog

    async def _watchdog(self) -> None:
        cfg = self.config
        while True:
            await anyio.sleep(cfg.tick)
            self._flush()
            now = _now()
            self._evict(now)
            for ch in list(self._channels.values()):
                rt = self._runtime[ch.channel_id]
                found = monitor.due(ch.record, cfg, now, is_initiator=ch.is_initiator,
                                    status_since=rt.status_since,
                                    last_activity=rt.last_activity, data_open=rt.data_open)
                if found is None:
                    continue
                if found.action is monitor.Action.FAIL:
                    self._fail_here(ch, found.reason)
                    continue
                rt.last_activity = now
                if found.action is monitor.Action.ASK_AGAIN:
                    self._flag(ch, paid_while_finalizing=False)
                self._schedule_restart(ch, found.reason)

    # ------------------------------------------------------------------ firing

    def _fire(self, ch: Channel, event: EventCode, **args: Any) -> None:
        """Apply, persist, publish; start cleanup when a cleanup status is
        entered. Raises IllegalTransition (state unchanged) if refused."""
        chid = ch.channel_id
        before = ch.record.status
        row_kind = resolve(before, event).kind if before not in FINAL_STATUSES else None
        message = args.pop("message", None)
        rt = self._runtime[chid]
        if event in _DATA_EVENTS or event is E.DataReceivedProgress:
            # a counter: applied at once, written with the next save (the
            # receiver's bytes every save_progress_every blocks; the sender's
            # with their own progress event, below)
            apply(ch.record, event, **args)
            ch.restarts = 0
            rt.dirty = True
            if event is E.DataReceivedProgress:
                rt.unsaved_blocks += 1
                if rt.unsaved_blocks >= self.config.save_progress_every:
                    self._save(ch)
        else:
            # compute the new record, store it, then apply it: a record the
            # store refuses leaves the channel exactly as it was
            record = ch.record.copy()
            apply(record, event, **args)
            if message is not None:
                record.message = message
            if rt.persist:
                self.store.save(ch, record=record)
            ch.record = record
            rt.dirty = False
            rt.unsaved_blocks = 0
        now = _now()
        rt.last_activity = now
        after = ch.record.status
        if after != before:
            rt.status_since = now
            self._track_live(ch)
        text = ch.record.message if event in (E.Error, E.Cancel) or "error" in args else ""
        self.events.publish(Event(event, text or args.get("error", "") or ""), self._snapshot(ch))
        if after in CLEANUP_STATUSES and row_kind in (Kind.MOVE, Kind.REENTER):
            if self._tg is not None:
                self._tg.start_soon(self._cleanup, ch)
        if after != before and rt.waiters:
            waiters, rt.waiters = rt.waiters, []
            for waiter in waiters:
                waiter.set()

    def _try_fire(self, ch: Channel, event: EventCode, **args: Any) -> bool:
        """Fire an event the other peer or the transport caused; a refused
        event is logged, not raised (bad input must not stop the node)."""
        try:
            self._fire(ch, event, **args)
        except IllegalTransition as exc:
            log.info("channel %s: %s", ch.channel_id, exc)
            return False
        return True

    def _progress(self, ch: Channel, index_event: EventCode, bytes_event: EventCode,
                  index: int, size: int) -> None:
        self._try_fire(ch, index_event, index=index)
        if bytes_event in allowed_events(ch.record.status):
            self._try_fire(ch, bytes_event, delta=size)

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
        rt.last_activity = _now()
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

    def _save(self, ch: Channel) -> None:
        rt = self._runtime[ch.channel_id]
        if rt.persist:
            self.store.save(ch)
        rt.dirty = False
        rt.unsaved_blocks = 0

    def _flush(self) -> None:
        for chid, rt in self._runtime.items():
            if rt.dirty:
                self._save(self._channels[chid])

    # ------------------------------------------------------------------ helpers

    def _refuse_input(self, kind: str, peer: PeerID, text: str) -> None:
        """An input from ``peer`` was refused: count it (:attr:`refusals`,
        which the node's metrics export) and log it at WARNING, rate-limited.
        Whatever a peer sends ends here or in a typed answer, never as an
        exception out of the Manager's task group."""
        self.refusals.refuse(kind, f"from {peer}: {text}")

    def _peer_of(self, channel_id: ChannelID) -> PeerID:
        """The other party of a channel id a transport reported, for the
        refusal log; an id that does not name this node (a peer made it up)
        gives its responder instead of raising."""
        return channel_id.initiator if channel_id.responder == self.peer_id \
            else channel_id.responder

    def _get(self, channel_id: ChannelID) -> Channel:
        """A channel in memory (live, or ended a short while ago)."""
        ch = self._channels.get(channel_id)
        if ch is None:
            raise ChannelNotFound(channel_id)
        return ch

    def _lookup(self, channel_id: ChannelID) -> Channel:
        """A channel in memory, else one that ended and is only in the store."""
        ch = self._channels.get(channel_id) or self._stored(channel_id)
        if ch is None:
            raise ChannelNotFound(channel_id)
        return ch

    def _stored(self, channel_id: ChannelID) -> Channel | None:
        """This node's side of the channel as the store holds it, or None."""
        ch = self.store.load(channel_id)
        return ch if ch is not None and ch.self_peer == self.peer_id else None

    def _evict(self, now: float) -> None:
        """Forget, in memory, channels that ended more than
        :attr:`ManagerConfig.final_linger` seconds ago (they stay in the store,
        where the queries find them): a node's memory holds its live channels,
        not its history. A restart request for one brings it back
        (:meth:`_revive`)."""
        linger = self.config.final_linger
        for chid, ch in list(self._channels.items()):
            if ch.record.status in FINAL_STATUSES:
                rt = self._runtime[chid]
                if not rt.waiters and now - rt.status_since > linger:
                    del self._channels[chid]
                    del self._runtime[chid]

    def _revive(self, chid: ChannelID) -> Channel | None:
        """A channel that ended and was evicted, back in memory (None if the
        store does not hold it)."""
        ch = self._stored(chid)
        if ch is None:
            return None
        self._channels[chid] = ch
        self._runtime[chid] = _Runtime()
        return ch

    def _require_started(self) -> None:
        if not self._started:
            raise RuntimeError("the Manager is not running: use `async with Manager(...)`")

    def _require_live(self, ch: Channel, action: EventCode) -> None:
        """Refuse an application action on a channel that has ended."""
        self._require_started()
        status = ch.record.status
        if status in FINAL_STATUSES:
            raise IllegalTransition(status, action)

    def _snapshot(self, ch: Channel) -> ChannelState:
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

    @staticmethod
    def _encode_result(result: Any) -> Encoded | None:
        if result is None or result is NOT_HANDLED:
            return None
        if not isinstance(result, VoucherResult):
            raise TypeError(f"{result!r} is not a VoucherResult")
        return (result.type_id, result.to_node())

    def _new_request(self, ch: Channel, kind: MessageType) -> TransferRequest:
        return TransferRequest(
            type=kind,
            transfer_id=ch.channel_id.id,
            base_cid=ch.base_cid,
            selector=ch.selector,
            voucher=ch.voucher[1],
            voucher_type=ch.voucher[0],
            pull=ch.is_pull,
            paused=initiator_paused(ch.record.status),
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


class TransportInputs(TransportEvents):
    """What the transport reports to a :class:`Manager` (the
    :class:`~transport.base.TransportEvents` callbacks), kept apart from the
    application API: the Manager hands this object to its transport. Tests
    that play a transport (or a hostile peer behind one) call it directly
    through :attr:`Manager.transport_events`."""

    def __init__(self, manager: Manager) -> None:
        self._manager = manager

    async def on_message(self, sender: PeerID, message: Any) -> None:
        await self._manager._on_message(sender, message)

    async def on_request_received(self, channel_id: ChannelID, sender: PeerID, message: Any,
                                  root: CID | None = None, selector: Any = None) -> Decision:
        return await self._manager._on_request_received(channel_id, sender, message,
                                                         root, selector)

    async def on_response_received(self, channel_id: ChannelID, response: Any) -> None:
        await self._manager._on_response_received(channel_id, response)

    async def on_channel_opened(self, channel_id: ChannelID) -> None:
        await self._manager._on_channel_opened(channel_id)

    async def on_data_queued(self, channel_id: ChannelID, cid: CID, size: int,
                             index: int) -> Decision:
        return await self._manager._on_data_queued(channel_id, cid, size, index)

    async def on_data_sent(self, channel_id: ChannelID, cid: CID, size: int, index: int) -> None:
        await self._manager._on_data_sent(channel_id, cid, size, index)

    async def on_data_received(self, channel_id: ChannelID, cid: CID, size: int,
                               index: int) -> Decision:
        return await self._manager._on_data_received(channel_id, cid, size, index)

    async def on_channel_completed(self, channel_id: ChannelID, error: str | None) -> None:
        await self._manager._on_channel_completed(channel_id, error)

    async def on_request_cancelled(self, channel_id: ChannelID, reason: str) -> None:
        await self._manager._on_request_cancelled(channel_id, reason)

    async def on_disconnected(self, channel_id: ChannelID, reason: str) -> None:
        await self._manager._on_disconnected(channel_id, reason)

    async def on_send_data_error(self, channel_id: ChannelID, reason: str) -> None:
        await self._manager._on_send_data_error(channel_id, reason)

    async def on_receive_data_error(self, channel_id: ChannelID, reason: str) -> None:
        await self._manager._on_receive_data_error(channel_id, reason)
