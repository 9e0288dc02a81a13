"""Validator middleware: what a provider wraps around every validator.

A middleware is an async callable ``middleware(call, next)`` that sees one
validation (:class:`ValidationCall`: a new or restarted push or pull, or a
voucher sent during a transfer), may refuse it by raising :class:`Refused`
(or let it through with ``await next(call)``), and returns what ``next``
returned: the adapters of prysm's p2p server, around validators instead of
message handlers. The Manager runs every validation of every registered
voucher type through its middleware, in the order added, the first
outermost; a voucher type registered later is covered too.

Nothing here reads a clock: the Manager stamps each call with its own time
(``call.now``, the event loop's clock), so :class:`DealRate` counts the
seconds the Manager's timeouts count, virtual ones under a mock clock too.

Built in: :class:`PeerFilter` (allow and deny lists), :class:`DealRate`
(new deals per peer per interval) and :class:`LogValidation`.
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

from datatransfer.errors import Pause, Rejected, RetryValidation
from datatransfer.ipld import multihash

if TYPE_CHECKING:
    from datatransfer.ipld.cid import CID
    from datatransfer.types import ChannelID, PeerID
    from registry.types import Voucher, VoucherResult

__all__ = [
    "DealRate",
    "DealRateExceeded",
    "LogValidation",
    "Next",
    "PeerDenied",
    "PeerFilter",
    "Refused",
    "ValidationCall",
    "ValidationMiddleware",
    "compose",
    "parse_deal_rate",
    "serve_middleware",
]

log = logging.getLogger("registry.middleware")

Kind = Literal["push", "pull", "revalidate"]


@dataclass(frozen=True, slots=True)
class ValidationCall:
    """One validation as middleware sees it.

    ``kind``: ``"push"`` or ``"pull"`` (a request: the validator's
    ``validate_push``/``validate_pull``) or ``"revalidate"`` (a voucher sent
    during a transfer: the revalidator's ``revalidate``). ``peer``: the
    other side of the channel. ``base_cid`` and ``selector`` are None for a
    revalidation. ``now``: the Manager's clock, in seconds."""

    kind: Kind
    channel_id: ChannelID
    peer: PeerID
    voucher: Voucher
    now: float
    is_restart: bool = False
    base_cid: CID | None = None
    selector: Any = None

    @property
    def is_new(self) -> bool:
        """A request for a new channel (not a restart, not a revalidation)."""
        return self.kind != "revalidate" and not self.is_restart

    def describe(self) -> str:
        what = "voucher" if self.kind == "revalidate" else (
            f"{'restarted ' if self.is_restart else ''}{self.kind} of {self.base_cid}")
        return f"{what} ({self.voucher.type_id}) on {self.channel_id} from {self.peer}"


#: What a middleware calls to go on: the next middleware, or the validator.
Next = Callable[[ValidationCall], Awaitable["VoucherResult | None"]]


class ValidationMiddleware(Protocol):
    """``await middleware(call, next)``: refuse (raise :class:`Refused`),
    or return ``await next(call)``. Plain async functions qualify."""

    async def __call__(self, call: ValidationCall, next: Next) -> VoucherResult | None: ...


class Refused(Rejected):
    """A middleware refused a validation. ``kind`` names it in the refusal
    counts and metrics; ``reason`` is what the node keeps, logs and (when the
    voucher type's validator builds a result for it, see
    :meth:`registry.Registry.rejection_result`) the requesting peer reads."""

    kind = "refused-by-middleware"

    def __init__(self, reason: str, result: Any = None) -> None:
        super().__init__(reason, result)


class PeerDenied(Refused):
    """The peer is on the deny list, or the allow list does not name it."""

    kind = "peer-denied"


class DealRateExceeded(Refused):
    """The peer asked for more new deals than :class:`DealRate` allows."""

    kind = "deal-rate-exceeded"


def compose(middleware: Sequence[ValidationMiddleware], last: Next) -> Next:
    """``last`` wrapped in ``middleware``, the first one outermost."""
    handler = last
    for mw in reversed(middleware):
        handler = _bind(mw, handler)
    return handler


def _bind(mw: ValidationMiddleware, nxt: Next) -> Next:
    async def step(call: ValidationCall) -> VoucherResult | None:
        return await mw(call, nxt)

    return step


def _peer(value: PeerID | str) -> PeerID:
    # (imported here: the registry loads no state machine, see test_layers)
    from datatransfer.types import PeerID

    if isinstance(value, PeerID):
        return value
    if isinstance(value, str):
        try:
            peer = PeerID.from_base58(value)
            if multihash.decode(peer)[2] != len(peer):
                raise ValueError("bytes after the multihash")
        except Exception as exc:  # noqa: BLE001 - base58 and multihash errors vary
            raise ValueError(f"not a peer id: {value!r} ({exc})") from None
        return peer
    raise TypeError(f"a peer must be a PeerID or its base58 text, not {type(value).__name__}")


class PeerFilter:
    """Refuse every validation from a peer in ``deny``, or (when ``allow``
    is given) from a peer not in ``allow``; deny wins. Covers restarts and
    vouchers too: a peer denied now is served nothing more."""

    def __init__(self, allow: Iterable[PeerID | str] | None = None,
                 deny: Iterable[PeerID | str] = ()) -> None:
        self.allow = None if allow is None else frozenset(_peer(p) for p in allow)
        self.deny = frozenset(_peer(p) for p in deny)

    async def __call__(self, call: ValidationCall, next: Next) -> VoucherResult | None:
        if call.peer in self.deny:
            raise PeerDenied(f"peer {call.peer} is on this node's deny list")
        if self.allow is not None and call.peer not in self.allow:
            raise PeerDenied(f"peer {call.peer} is not on this node's allow list")
        return await next(call)


class DealRate:
    """At most ``per_peer`` new deals (new push or pull requests) from one
    peer in any ``interval`` seconds of the Manager's clock; more are
    refused. Restarts and vouchers of admitted channels pass, and so does
    another voucher for a request still being validated (the same channel
    is one deal). Memory: one entry per peer seen in the last interval."""

    def __init__(self, per_peer: int, interval: float) -> None:
        if per_peer < 1:
            raise ValueError(f"a deal rate admits at least 1 deal, not {per_peer}")
        if not interval > 0:
            raise ValueError(f"a deal rate's interval must be positive, not {interval}")
        self.per_peer = per_peer
        self.interval = float(interval)
        # peer -> its admitted deals: (when, channel) oldest first, and their
        # channels; peers least recently seen first
        self._seen: OrderedDict[PeerID, tuple[deque[tuple[float, ChannelID]], set[ChannelID]]] = \
            OrderedDict()

    def __repr__(self) -> str:
        return f"DealRate({self.per_peer} per {self.interval:g} s)"

    async def __call__(self, call: ValidationCall, next: Next) -> VoucherResult | None:
        if call.is_new:
            self._admit(call)
        return await next(call)

    def _admit(self, call: ValidationCall) -> None:
        horizon = call.now - self.interval
        seen = self._seen
        while seen:  # forget peers quiet for an interval (least recently seen first)
            peer, (first, _) = next(iter(seen.items()))
            if first and first[-1][0] > horizon:
                break
            del seen[peer]
        deals, channels = seen.get(call.peer) or seen.setdefault(call.peer, (deque(), set()))
        while deals and deals[0][0] <= horizon:
            channels.discard(deals.popleft()[1])
        seen.move_to_end(call.peer)
        if call.channel_id in channels:
            return  # another voucher for a deal already counted
        if len(deals) >= self.per_peer:
            raise DealRateExceeded(
                f"peer {call.peer} asked for more than {self.per_peer} new deals "
                f"in {self.interval:g} s")
        deals.append((call.now, call.channel_id))
        channels.add(call.channel_id)


class LogValidation:
    """Log each validation and its outcome (accepted, paused, asked for
    another voucher, refused, failed) on ``logger`` at ``level``."""

    def __init__(self, logger: logging.Logger | None = None, level: int = logging.INFO) -> None:
        self.logger = logger or log
        self.level = level

    async def __call__(self, call: ValidationCall, next: Next) -> VoucherResult | None:
        if not self.logger.isEnabledFor(self.level):
            return await next(call)
        what = call.describe()
        try:
            result = await next(call)
        except Pause:
            self.logger.log(self.level, "paused %s", what)
            raise
        except RetryValidation:
            self.logger.log(self.level, "asked for another voucher: %s", what)
            raise
        except Rejected as exc:
            self.logger.log(self.level, "refused %s: %s", what, exc.reason)
            raise
        except Exception as exc:
            self.logger.log(self.level, "validation of %s failed: %r", what, exc)
            raise
        self.logger.log(self.level, "accepted %s", what)
        return result


_RATE = re.compile(r"\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)?\s*(s|m|min|h)?\s*")
_UNITS = {None: 1.0, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}


def parse_deal_rate(text: str) -> DealRate:
    """``"N/INTERVAL"`` as a :class:`DealRate`: ``10/60`` or ``10/1m`` (ten
    per minute), ``3/s``, ``100/h``; ValueError saying the form otherwise."""
    match = _RATE.fullmatch(text)
    if match is None or (match[2] is None and match[3] is None):
        raise ValueError(f"not a deal rate: {text!r} (N/SECONDS, e.g. 10/60, 10/1m or 3/s)")
    amount = float(match[2]) if match[2] is not None else 1.0
    return DealRate(int(match[1]), amount * _UNITS[match[3]])


def serve_middleware(allow: Iterable[PeerID | str] = (), deny: Iterable[PeerID | str] = (),
                     deal_rate: str | None = None) -> list[ValidationMiddleware]:
    """What ``datatransfer serve`` runs every validation through, in order:
    logging (shown with ``-v``), the peer filter (``allow`` empty: everyone
    not denied), the deal rate. ValueError for a bad peer id or rate."""
    allow, deny = list(allow), list(deny)
    chain: list[ValidationMiddleware] = [LogValidation()]
    if allow or deny:
        chain.append(PeerFilter(allow=allow or None, deny=deny))
    if deal_rate is not None:
        chain.append(parse_deal_rate(deal_rate))
    return chain
