"""The Manager: the driver of the channel core.

Every rule about channels lives in :class:`~datatransfer.core.ChannelCore`,
which does no I/O: each input (an application call, what the transport
reports, a timer) is a generator of effects. The Manager owns the task
group, feeds the core its inputs with the current time, and carries out the
effects in order: it writes the store, publishes to subscribers, sends
messages, opens, pauses and resumes data requests, runs the application's
validators and revalidators, arms timers, and sends each outcome back.

Every task the Manager starts belongs to the task group opened by
``async with Manager(...)``; leaving the block cancels them all, flushes the
store and stops the event bus.

Blocks do not write one by one: their events (DataReceived and
DataReceivedProgress on the receiver; DataQueued, DataSent and their
progress on the sender) are applied to the record in memory and published,
and the record is written every :attr:`ManagerConfig.save_progress_every`
blocks, with every status change, at each watchdog tick and when the
Manager stops; indices and bytes are always written together. A restarted
transfer asks the sender to skip the blocks the receiver's store holds;
counters only grow with block indices above the highest already recorded,
so no byte is counted twice. After a crash, the receiver's blocks its store
had not recorded yet move again and are counted then, once; the sender is
told of each block the restart skips (``on_data_skipped``) and counts those
above what it recorded, which a crash had lost.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import TaskGroup

from datatransfer.channel import Channel, Encoded
from datatransfer.config import ManagerConfig
from datatransfer.core import Answer, ChannelCore, Steps, refusal_kind
from datatransfer.core import effects as fx
from datatransfer.errors import ChannelNotFound, Pause, Rejected, RetryValidation
from datatransfer.events import EventBus, Subscriber, Unsubscribe
from datatransfer.ipld.cid import CID
from datatransfer.refusals import Refusals
from datatransfer.store import ChannelStore, SqliteChannelStore
from datatransfer.types import ChannelID, ChannelState, Event, PeerID
from registry import NOT_HANDLED, Registry, Voucher, VoucherResult
from registry.middleware import Next, Refused, ValidationCall, ValidationMiddleware, compose
from registry.registry import RegistryError
from statemachine import FINAL_STATUSES, EventCode, IllegalTransition, Status
from transport.base import PROCEED, Decision, Transport, TransportError, TransportEvents

log = logging.getLogger("datatransfer.manager")

E = EventCode
S = Status

#: Longest the Manager waits, when it stops, for its last messages to be taken.
DRAIN_TIMEOUT = 2.0


def _now() -> float:
    """The event loop's clock: the one the Manager's sleeps (the watchdog's
    tick, restart backoffs) run on, so the core's timeouts and restart window
    count the same seconds (under trio's MockClock too)."""
    return anyio.current_time()


def _decision(answer: Answer | None) -> Decision:
    if answer is None or answer is fx.PROCEED:
        return PROCEED
    return Decision(message=answer.message, accept=answer.accept, pause=answer.pause)


def _validator_call(validate: Callable[..., Any]) -> Next:
    """The innermost step of the middleware: the validator itself."""
    async def call(c: ValidationCall) -> VoucherResult | None:
        return await validate(c.is_restart, c.channel_id, c.peer, c.voucher, c.base_cid,
                              c.selector)  # type: ignore[no-any-return]
    return call


def _revalidator_call(revalidator: Any) -> Next:
    """The innermost step of the middleware around a revalidation."""
    async def call(c: ValidationCall) -> VoucherResult | None:
        return await revalidator.revalidate(c.channel_id, c.voucher)  # type: ignore[no-any-return]
    return call


def _type_ids(voucher_types: Iterable[str | type[Voucher]] | None) -> frozenset[str] | None:
    if voucher_types is None:
        return None
    if isinstance(voucher_types, (str, type)):
        voucher_types = (voucher_types,)
    ids = set()
    for vt in voucher_types:
        if isinstance(vt, type) and issubclass(vt, Voucher):
            ids.add(vt.type_id)
        elif isinstance(vt, str):
            ids.add(vt)
        else:
            raise TypeError(f"a voucher type must be a Voucher subclass or its type id, "
                            f"not {_kind(vt)}")
    return frozenset(ids)


def _encode_result(result: Any) -> Encoded | None:
    if result is None or result is NOT_HANDLED:
        return None
    if not isinstance(result, VoucherResult):
        raise TypeError(f"{result!r} is not a VoucherResult")
    return (result.type_id, result.to_node())


# ------------------------------------------------------------------ argument checks
#
# The public calls check their arguments' types first, so a wrong one fails
# at the call with a TypeError naming the argument and saying how to build
# the right one, not later inside a task group.


def _kind(value: object) -> str:
    t = type(value)
    return t.__name__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def require_peer_id(value: object, name: str = "peer") -> PeerID:
    """``value`` if it is a :class:`PeerID`; else a TypeError naming ``name``."""
    if isinstance(value, PeerID):
        return value
    if isinstance(value, str):
        hint = f"parse the printed form with PeerID.from_base58({value!r})"
    elif isinstance(value, (bytes, bytearray, memoryview)):
        hint = "wrap the raw multihash bytes with PeerID(data)"
    else:
        hint = "use manager.peer_id, a peer id from a channel, or PeerID.from_base58(text)"
    raise TypeError(f"{name} must be a datatransfer.types.PeerID, not {_kind(value)}: {hint}")


def require_cid(value: object, name: str = "base_cid") -> CID:
    """``value`` if it is a :class:`~datatransfer.ipld.cid.CID`; else a
    TypeError naming ``name`` and saying how to convert it."""
    if isinstance(value, CID):
        return value
    if isinstance(value, str):
        hint = f"parse the text with CID.parse({value!r})"
    elif isinstance(value, (bytes, bytearray, memoryview)):
        hint = "decode binary CIDs with CID.from_bytes(data)"
    elif type(value).__module__.split(".")[0] == "multiformats":
        hint = "convert it with CID.parse(str(cid)) or CID.from_bytes(bytes(cid))"
    else:
        hint = "build one with CID.parse(text), CID.from_bytes(data) or CID.of(block)"
    raise TypeError(
        f"{name} must be a datatransfer.ipld.cid.CID, not {_kind(value)}: {hint} "
        "(from datatransfer.ipld.cid import CID)")


def require_channel_id(value: object, name: str = "channel_id") -> ChannelID:
    """``value`` if it is a :class:`ChannelID`; else a TypeError naming ``name``."""
    if isinstance(value, ChannelID):
        return value
    raise TypeError(
        f"{name} must be a datatransfer.types.ChannelID, not {_kind(value)}: use the id "
        "open_pull_channel/open_push_channel returned, or one from manager.channels()")


def require_voucher(value: object, name: str = "voucher") -> Voucher:
    """``value`` if it is a :class:`~registry.Voucher` instance; else a
    TypeError naming ``name``."""
    if isinstance(value, Voucher):
        return value
    hint = (" (a class was passed: pass an instance)" if isinstance(value, type)
            and issubclass(value, Voucher) else "")
    raise TypeError(f"{name} must be a registry.Voucher instance, not {_kind(value)}{hint}")


class Manager:
    """The data-transfer manager of one node.

    Use as ``async with Manager(transport, store=...) as manager:``. The
    transport decides the node's peer id; the store keeps channels across
    restarts (``":memory:"`` keeps them for this process only).

    The public calls check their arguments' types before anything else: a
    peer must be a :class:`PeerID`, a voucher a :class:`~registry.Voucher`,
    a root a :class:`datatransfer.ipld.cid.CID` (not its text, not a
    ``multiformats.CID``: convert with ``CID.parse``) and a channel id a
    :class:`ChannelID`; anything else raises a ``TypeError`` naming the
    argument.
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
        self.store = store if isinstance(store, ChannelStore) else SqliteChannelStore(store)
        self.registry = registry or Registry()
        self.config = config or ManagerConfig()
        self.events = event_bus or EventBus()
        #: Every rule about channels (no I/O); this class carries out its effects.
        self.core = ChannelCore(transport.peer_id, self.registry, self.config,
                                supports_pause=transport.supports_pause)
        #: What the transport calls (see :class:`TransportInputs`).
        self.transport_events = TransportInputs(self)
        self._tg: TaskGroup | None = None
        self._waiters: dict[ChannelID, list[anyio.Event]] = {}
        #: Inputs from peers refused, by kind (see :class:`~datatransfer.core.effects.Refuse`).
        self.refusals = Refusals(log)
        self._perform = {
            fx.Persist: self._persist,
            fx.LoadStored: self._load_stored,
            fx.Publish: self._publish,
            fx.Send: self._send,
            fx.OpenData: self._open_data,
            fx.PauseData: self._pause_data,
            fx.ResumeData: self._resume_data,
            fx.CloseData: self._close_data,
            fx.CleanupData: self._cleanup_data,
            fx.IsConnected: self._is_connected,
            fx.Validate: self._validate,
            fx.Revalidate: self._revalidate,
            fx.RevalidateProgress: self._revalidate_progress,
            fx.RevalidateComplete: self._revalidate_complete,
            fx.ArmRestart: self._arm_restart,
            fx.Spawn: self._spawn,
            fx.Refuse: self._refuse,
            fx.Note: self._note,
        }

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
            self.core.running = True  # before loading: it schedules restarts
            await self._run(self.core.load(self.store.live(),
                                           self.store.max_transfer_id(self.peer_id)))
            self._tg.start_soon(self._watchdog)
        except BaseException:
            self.core.running = False
            self._tg.cancel_scope.cancel()
            await self._tg_cm.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        self.core.running = False
        assert self._tg is not None
        # messages sent last (a cancel on the way out) reach their peers first
        with anyio.move_on_after(DRAIN_TIMEOUT, shield=True):
            await self.transport.drain()
        self._tg.cancel_scope.cancel()
        try:
            return await self._tg_cm.__aexit__(*exc_info)
        finally:
            self._tg = None
            self._run_now(self.core.flush())
            self.events.close()

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

    def add_middleware(self, *middleware: ValidationMiddleware) -> None:
        """Run every validation (new and restarted requests, vouchers during a
        transfer) of every voucher type through ``middleware``, in order, the
        first outermost, after any added before: a peer filter, a deal rate,
        logging (:mod:`registry.middleware`). A middleware refuses by raising
        :class:`registry.Refused`: counted by its kind, kept for ``ls --all``
        and answered as a rejection."""
        self.registry.add_middleware(*middleware)

    # ------------------------------------------------------------------ queries

    def channel_state(self, channel_id: ChannelID) -> ChannelState:
        """A snapshot of the channel; raises :class:`ChannelNotFound`."""
        require_channel_id(channel_id)
        return self.core.snapshot(self._lookup(channel_id))

    def channel_status(self, channel_id: ChannelID) -> Status:
        """The channel's status, or ``ChannelNotFoundError`` for an unknown id."""
        require_channel_id(channel_id)
        try:
            return self._lookup(channel_id).record.status
        except ChannelNotFound:
            return S.ChannelNotFoundError

    def in_progress_channels(self) -> dict[ChannelID, ChannelState]:
        """Snapshots of every channel that has not reached a final status."""
        return {
            chid: self.core.snapshot(ch)
            for chid, ch in self.core.channels.items()
            if ch.record.status not in FINAL_STATUSES
        }

    def channels(self) -> dict[ChannelID, ChannelState]:
        """Snapshots of every channel this node knows, final ones included
        (those ended a while ago are read from the store)."""
        live = self.core.channels
        out = {ch.channel_id: self.core.snapshot(ch) for ch in self.store.all()
               if ch.self_peer == self.peer_id and ch.channel_id not in live}
        out.update((chid, self.core.snapshot(ch)) for chid, ch in live.items())
        return out

    def subscribe(self, subscriber: Subscriber, *,
                  events: Iterable[EventCode] | None = None,
                  voucher_types: Iterable[str | type[Voucher]] | None = None) -> Unsubscribe:
        """Call ``subscriber(event, state)`` for every event of every channel
        (delivery policy: :mod:`datatransfer.events`), or only for events
        whose code is in ``events`` and of channels opened with a voucher of
        one of ``voucher_types`` (classes or type ids): a market follows its
        own deals, the events it acts on, and pays nothing for the rest."""
        return self.events.subscribe(subscriber, events=events,
                                     voucher_types=_type_ids(voucher_types))

    def subscribe_channel(self, channel_id: ChannelID, subscriber: Subscriber, *,
                          events: Iterable[EventCode] | None = None) -> Unsubscribe:
        """Call ``subscriber(event, state)`` for every event of one channel
        (or only those whose code is in ``events``)."""
        require_channel_id(channel_id)
        return self.events.subscribe_channel(channel_id, subscriber, events=events)

    async def wait(
        self,
        channel_id: ChannelID,
        statuses: Iterable[Status] = FINAL_STATUSES,
        timeout: float | None = None,
        *,
        until: Callable[[ChannelState], bool] | None = None,
    ) -> ChannelState:
        """Wait until the channel reaches one of ``statuses`` (default: a final
        one) and return its snapshot; ``TimeoutError`` after ``timeout``. A
        channel that ends in a final status not among ``statuses`` never
        reaches them: its snapshot is returned then (check its ``status``).

        ``until``: return as well as soon as it holds for the channel's
        snapshot, checked now and after each of the channel's events (a
        client that acts on voucher results waits for the next one without
        polling)."""
        require_channel_id(channel_id)
        wanted = frozenset(statuses)
        ch = self._lookup(channel_id)
        with anyio.fail_after(timeout if timeout is not None else math.inf):
            while ch.record.status not in wanted and ch.record.status not in FINAL_STATUSES:
                if until is not None and until(self.core.snapshot(ch)):
                    break
                ev = anyio.Event()
                self._waiters.setdefault(channel_id, []).append(ev)
                try:
                    await ev.wait()
                finally:
                    left = self._waiters.get(channel_id)
                    if left is not None and ev in left:
                        left.remove(ev)
                        if not left:
                            del self._waiters[channel_id]
                ch = self._lookup(channel_id)
        return self.core.snapshot(ch)

    # ------------------------------------------------------------------ the application

    async def open_push_channel(
        self, peer: PeerID, voucher: Voucher, base_cid: CID, selector: Any
    ) -> ChannelID:
        """Offer the blocks ``selector`` reaches from ``base_cid`` to ``peer``.

        Returns once the request is sent; the channel then moves on its own
        (watch it with :meth:`subscribe` or :meth:`wait`).
        """
        require_peer_id(peer)
        require_voucher(voucher)
        require_cid(base_cid)
        encoded = self._encode_voucher(voucher)
        return await self._run(self.core.open(peer, encoded, base_cid, selector, is_pull=False))

    async def open_pull_channel(
        self, peer: PeerID, voucher: Voucher, base_cid: CID, selector: Any
    ) -> ChannelID:
        """Ask ``peer`` for the blocks ``selector`` reaches from ``base_cid``."""
        require_peer_id(peer)
        require_voucher(voucher)
        require_cid(base_cid)
        encoded = self._encode_voucher(voucher)
        return await self._run(self.core.open(peer, encoded, base_cid, selector, is_pull=True))

    async def send_voucher(self, channel_id: ChannelID, voucher: Voucher) -> None:
        """Send a new voucher to the responder (payment, final settlement)."""
        require_channel_id(channel_id)
        require_voucher(voucher)
        self._in_memory(channel_id, lambda ch: E.NewVoucher)
        await self._run(self.core.send_voucher(channel_id, self._encode_voucher(voucher)))

    async def close_channel(self, channel_id: ChannelID) -> None:
        """Cancel the channel on both sides."""
        require_channel_id(channel_id)
        self._in_memory(channel_id, lambda ch: E.Cancel)
        await self._run(self.core.close(channel_id))

    async def pause_channel(self, channel_id: ChannelID) -> None:
        """Pause the data flow from this side until :meth:`resume_channel`.

        Raises :class:`Unsupported` on a transport that cannot pause, and on a
        request this node (the responder) has not accepted because it waits
        for a voucher that passes validation: a paused request can never be
        accepted. (An initiator that pauses such a request has it failed by
        the responder at once, with a rejection.)"""
        require_channel_id(channel_id)
        self._in_memory(channel_id, lambda ch: E.PauseInitiator if ch.is_initiator
                        else E.PauseResponder)
        await self._run(self.core.pause(channel_id))

    async def resume_channel(self, channel_id: ChannelID) -> None:
        """Release this side's pause."""
        require_channel_id(channel_id)
        self._in_memory(channel_id, lambda ch: E.ResumeInitiator if ch.is_initiator
                        else E.ResumeResponder)
        await self._run(self.core.resume(channel_id))

    async def restart_channel(self, channel_id: ChannelID) -> None:
        """Reopen the data flow of a channel after a disconnect, skipping the
        blocks the receiver already holds. Final channels are left alone."""
        require_channel_id(channel_id)
        if channel_id not in self.core.channels:
            self._lookup(channel_id)  # ChannelNotFound, or one that ended: nothing to do
            return
        await self._run(self.core.restart(channel_id))

    def _in_memory(self, channel_id: ChannelID, action: Callable[[Channel], EventCode]) -> None:
        """Refuse an application action on a channel that is not in memory:
        unknown (:class:`ChannelNotFound`), or ended a while ago."""
        if channel_id in self.core.channels:
            return
        ch = self._lookup(channel_id)
        raise IllegalTransition(ch.record.status, action(ch))

    @staticmethod
    def _encode_voucher(voucher: Voucher) -> Encoded:
        if not isinstance(voucher, Voucher):
            raise TypeError(f"{voucher!r} is not a Voucher")
        return (voucher.type_id, voucher.to_node())

    # ------------------------------------------------------------------ running the core

    async def _run(self, steps: Steps) -> Any:
        """Carry out the effects of one input of the core, in order, sending
        each outcome back; return the input's result. A store that refuses a
        record raises into the core (the channel stays as it was) and then
        out of here."""
        core = self.core
        perform = self._perform
        outcome: Any = None
        error: BaseException | None = None
        while True:
            core.now = _now()
            try:
                effect = steps.send(outcome) if error is None else steps.throw(error)
            except StopIteration as stop:
                return stop.value
            outcome, error = None, None
            try:
                outcome = perform[type(effect)](effect)
                if effect.waits:  # its performer is a coroutine function
                    outcome = await outcome
            except Exception as exc:  # (a store failure, or a bug in an effect)
                error = exc

    def _run_now(self, steps: Steps) -> None:
        """Run an input whose effects complete without waiting (flushing the
        store when the Manager stops); anything else it yields is dropped."""
        outcome: Any = None
        while True:
            self.core.now = _now()
            try:
                effect = steps.send(outcome)
            except StopIteration:
                return
            outcome = None
            if isinstance(effect, fx.Persist):
                self._persist(effect)

    async def _watchdog(self) -> None:
        while True:
            await anyio.sleep(self.config.tick)
            await self._run(self.core.tick(frozenset(self._waiters),
                                           self.transport.queued_channels))

    # ------------------------------------------------------------------ effects

    def _persist(self, effect: fx.Persist) -> None:
        self.store.save(effect.channel, record=effect.record)

    def _load_stored(self, effect: fx.LoadStored) -> Channel | None:
        return self.store.load(effect.channel_id)

    def _publish(self, effect: fx.Publish) -> None:
        state = effect.state
        self.events.publish(Event(effect.event, effect.message), state)
        waiters = self._waiters.pop(state.channel_id, None)
        if waiters:
            for waiter in waiters:
                waiter.set()

    async def _send(self, effect: fx.Send) -> str | None:
        try:
            with anyio.fail_after(self.config.send_timeout):
                await self.transport.send_message(effect.peer, effect.message)
        except (TransportError, TimeoutError) as exc:
            return str(exc) or type(exc).__name__
        return None

    async def _open_data(self, effect: fx.OpenData) -> str | None:
        return await self._transport_call(self.transport.open_channel, effect.peer,
                                          effect.channel_id, effect.root, effect.selector,
                                          effect.message, effect.skip)

    async def _pause_data(self, effect: fx.PauseData) -> str | None:
        return await self._transport_call(self.transport.pause_channel, effect.channel_id)

    async def _resume_data(self, effect: fx.ResumeData) -> str | None:
        return await self._transport_call(self.transport.resume_channel, effect.channel_id,
                                          effect.message)

    async def _close_data(self, effect: fx.CloseData) -> str | None:
        return await self._transport_call(self.transport.close_channel, effect.channel_id)

    async def _cleanup_data(self, effect: fx.CleanupData) -> str | None:
        return await self._transport_call(self.transport.cleanup_channel, effect.channel_id)

    @staticmethod
    async def _transport_call(method: Callable[..., Any], *args: Any) -> str | None:
        """Call a transport method; its TransportError is the effect's outcome."""
        try:
            await method(*args)
        except TransportError as exc:
            return str(exc)
        return None

    def _is_connected(self, effect: fx.IsConnected) -> bool:
        return bool(self.transport.connected(effect.peer))

    async def _validate(self, effect: fx.Validate) -> tuple[Any, ...]:
        """Run the validator, through the middleware: accept, pause, retry or
        reject, and the result (and why, for a rejection: the core logs it
        and keeps the request; and a middleware's refusal kind, to count it
        by)."""
        chid, request, restart = effect.channel_id, effect.request, effect.restart
        try:
            voucher = self.registry.decode_voucher(*effect.voucher)
            validator = self.registry.validator(effect.voucher[0])
        except RegistryError as exc:
            return "reject", None, f"{exc} (no validator takes it)"
        validate = validator.validate_pull if request.pull else validator.validate_push
        try:
            if self.registry.middleware:
                call = ValidationCall("pull" if request.pull else "push", chid, effect.sender,
                                      voucher, _now(), restart, request.base_cid,
                                      request.selector)
                result = await compose(self.registry.middleware, _validator_call(validate))(call)
            else:
                result = await validate(restart, chid, effect.sender, voucher, request.base_cid,
                                        request.selector)
            return "accept", _encode_result(result)
        except Pause as exc:
            return "pause", _encode_result(exc.result)
        except RetryValidation as exc:
            if restart:
                return ("reject", _encode_result(exc.result),
                        "the validator asked for another voucher on a restart")
            return "retry", _encode_result(exc.result)
        except Refused as exc:
            return ("reject", self._refusal_result(voucher, exc), exc.reason, exc.kind)
        except Rejected as exc:
            return "reject", _encode_result(exc.result), f"rejected by the validator: {exc.reason}"
        except Exception as exc:  # a validator bug must not take the node down
            if restart:  # (a New request's refusal is logged by the core, with this reason)
                log.warning("validator for %s raised %r; restart rejected", chid, exc)
            return "reject", None, f"the validator failed: {exc!r}"

    def _refusal_result(self, voucher: Voucher, refused: Refused) -> Encoded | None:
        """What tells the peer why a middleware refused it: the refusal's own
        result, else the one the voucher type's handler builds (a bug there
        leaves the refusal bare, never fails it)."""
        result = refused.result
        if result is None:
            try:
                result = self.registry.rejection_result(voucher, refused.reason)
            except Exception as exc:  # noqa: BLE001 - the refusal stands without it
                log.warning("cannot build the result of a refusal of %s: %r",
                            voucher.type_id, exc)
                return None
        try:
            return _encode_result(result)
        except Exception as exc:  # noqa: BLE001
            log.warning("cannot encode the result of a refusal of %s: %r", voucher.type_id, exc)
            return None

    async def _revalidate(self, effect: fx.Revalidate) -> tuple[str, Any]:
        try:
            voucher = self.registry.decode_voucher(*effect.voucher)
            revalidator = self.registry.revalidator(effect.voucher[0])
        except RegistryError as exc:
            return "unknown", exc
        chid = effect.channel_id
        try:
            if self.registry.middleware:
                peer = self.core.peer_of(chid)
                call = ValidationCall("revalidate", chid, peer, voucher, _now())
                result = await compose(self.registry.middleware,
                                       _revalidator_call(revalidator))(call)
            else:
                result = await revalidator.revalidate(chid, voucher)
            return "accept", _encode_result(result)
        except Pause as exc:
            return "pause", _encode_result(exc.result)
        except Refused as exc:  # counted here: the core fails the channel
            self.refusals.refuse(exc.kind, f"from {self.core.peer_of(chid)}: voucher "
                                 f"{voucher.type_id} on {chid} refused: {exc.reason}")
            return "fail", exc.reason
        except Exception as exc:
            return "fail", exc

    async def _revalidate_progress(self, effect: fx.RevalidateProgress) -> tuple[str, Any]:
        for revalidator in self.registry.revalidators():
            try:
                result = await getattr(revalidator, effect.method)(effect.channel_id,
                                                                   effect.size)
                if result is NOT_HANDLED:
                    continue
                return "accept", _encode_result(result)
            except Pause as exc:
                return "pause", _encode_result(exc.result)
            except Exception as exc:
                return "fail", exc
        return "none", None

    async def _revalidate_complete(self, effect: fx.RevalidateComplete) -> tuple[str, Any]:
        for revalidator in self.registry.revalidators():
            try:
                outcome = await revalidator.on_complete(effect.channel_id)
                if outcome is NOT_HANDLED:
                    continue
                return "accept", _encode_result(outcome)
            except Pause as exc:
                return "pause", _encode_result(exc.result)
            except Exception as exc:
                return "fail", exc
        return "none", None

    def _arm_restart(self, effect: fx.ArmRestart) -> None:
        if self._tg is not None:
            self._tg.start_soon(self._restart_later, effect.channel_id, effect.delay)

    async def _restart_later(self, channel_id: ChannelID, delay: float) -> None:
        await anyio.sleep(delay)
        await self._run(self.core.restart_due(channel_id))

    def _spawn(self, effect: fx.Spawn) -> None:
        if self._tg is None:
            effect.steps.close()
            return
        self._tg.start_soon(self._run, effect.steps)

    def _refuse(self, effect: fx.Refuse) -> None:
        self.refusals.refuse(effect.kind, f"from {effect.peer}: {effect.text}")
        if effect.keep is not None:
            try:
                self.store.keep_refused(effect.keep, self.config.keep_refused)
            except Exception as exc:  # noqa: BLE001 - a record for people: never fail the answer
                log.warning("cannot keep the refused request %s: %s",
                            effect.keep.channel_id, exc)

    @staticmethod
    def _note(effect: fx.Note) -> None:
        log.info("%s", effect.text)

    # ------------------------------------------------------------------ lookups

    def _lookup(self, channel_id: ChannelID) -> Channel:
        """A channel in memory, else one that ended and is only in the store."""
        ch = self.core.channels.get(channel_id)
        if ch is None:
            ch = self.store.load(channel_id)
            if ch is None or ch.self_peer != self.peer_id:
                raise ChannelNotFound(channel_id)
        return ch


def _guarded(default: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The boundary around a transport callback: whatever goes wrong while
    handling what a transport reports (a peer's input the core did not
    foresee) is refused and counted, and ``default`` is the answer; it never
    escapes into the transport's task group and takes the node down."""

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        async def guarded(self: TransportInputs, channel_id: ChannelID, *args: Any) -> Any:
            try:
                return await fn(self, channel_id, *args)
            except Exception as exc:  # noqa: BLE001 - the boundary
                manager = self._manager
                manager.refusals.refuse(
                    refusal_kind(exc),
                    f"from {manager.core.peer_of(channel_id)}: "
                    f"{fn.__name__} for {channel_id}: {exc!r}")
                return default

        return guarded

    return wrap


class TransportInputs(TransportEvents):
    """What the transport reports to a :class:`Manager` (the
    :class:`~transport.base.TransportEvents` callbacks), kept apart from the
    application API: each becomes an input of the core. Tests that play a
    transport (or a hostile peer behind one) call it directly through
    :attr:`Manager.transport_events`."""

    def __init__(self, manager: Manager) -> None:
        self._manager = manager
        self._core = manager.core
        self._run = manager._run

    async def on_message(self, sender: PeerID, message: Any) -> None:
        await self._run(self._core.message(sender, message))

    async def on_request_received(self, channel_id: ChannelID, sender: PeerID, message: Any,
                                  root: CID | None = None, selector: Any = None) -> Decision:
        return _decision(await self._run(self._core.request_received(
            channel_id, sender, message, root, selector)))

    @_guarded(None)
    async def on_response_received(self, channel_id: ChannelID, response: Any) -> None:
        await self._run(self._core.response_received(channel_id, response))

    @_guarded(None)
    async def on_channel_opened(self, channel_id: ChannelID) -> None:
        await self._run(self._core.channel_opened(channel_id))

    @_guarded(Decision(accept=False))
    async def on_data_queued(self, channel_id: ChannelID, cid: CID, size: int,
                             index: int) -> Decision:
        return _decision(await self._run(self._core.data_queued(channel_id, size, index)))

    @_guarded(None)
    async def on_data_sent(self, channel_id: ChannelID, cid: CID, size: int, index: int) -> None:
        await self._run(self._core.data_sent(channel_id, size, index))

    @_guarded(None)
    async def on_data_skipped(self, channel_id: ChannelID, cid: CID, size: int,
                              index: int) -> None:
        await self._run(self._core.data_skipped(channel_id, size, index))

    @_guarded(Decision(accept=False))
    async def on_data_received(self, channel_id: ChannelID, cid: CID, size: int,
                               index: int) -> Decision:
        return _decision(await self._run(self._core.data_received(channel_id, size, index)))

    @_guarded(None)
    async def on_channel_completed(self, channel_id: ChannelID, error: str | None) -> None:
        await self._run(self._core.channel_completed(channel_id, error))

    @_guarded(None)
    async def on_request_cancelled(self, channel_id: ChannelID, reason: str) -> None:
        await self._run(self._core.transport_trouble(channel_id, E.RequestCancelled, reason))

    @_guarded(None)
    async def on_disconnected(self, channel_id: ChannelID, reason: str) -> None:
        await self._run(self._core.transport_trouble(channel_id, E.Disconnected, reason))

    @_guarded(None)
    async def on_peer_lost(self, peer: PeerID, reason: str,
                           notified: frozenset[ChannelID]) -> None:
        await self._run(self._core.peer_lost(peer, reason, notified))

    @_guarded(None)
    async def on_send_data_error(self, channel_id: ChannelID, reason: str) -> None:
        await self._run(self._core.transport_trouble(channel_id, E.SendDataError, reason))

    @_guarded(None)
    async def on_receive_data_error(self, channel_id: ChannelID, reason: str) -> None:
        await self._run(self._core.transport_trouble(channel_id, E.ReceiveDataError, reason))
