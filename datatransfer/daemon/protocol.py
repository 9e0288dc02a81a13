"""The control API's vocabulary, shared by the daemon and its clients.

Kept free of the node, libp2p and trio so the command line can talk to a
running daemon without importing them (a pull through the daemon should
start within a fraction of a second).

The API is HTTP/1.1 + JSON on 127.0.0.1. ``serve`` writes where it listens
to :data:`API_FILE` in the home and a fresh random token to
:data:`TOKEN_FILE` (mode 0600: only the home's owner can read it); every
request carries ``Authorization: Bearer <token>``. Errors are JSON
``{"error": {"code": ..., "message": ...}}`` with the HTTP status of
:data:`ERROR_STATUS`. The routes are listed in :data:`ROUTES` (the README's
table is generated from the same list by a test).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - the client must not load the engine's types
    from datatransfer.types import ChannelID

#: File in the home naming the running daemon's API: ``{"url": ..., "pid": ...}``.
API_FILE = "api.json"
#: File in the home holding the API token (mode 0600).
TOKEN_FILE = "api.token"
#: Path prefix of every route (the API's version).
PREFIX = "/v0"
#: Largest request body the daemon reads.
MAX_BODY = 64 * 1024

#: Every error code the API answers with, and its HTTP status.
ERROR_STATUS: dict[str, int] = {
    "bad-request": 400,
    "unauthorized": 401,
    "not-found": 404,
    "channel-not-found": 404,
    "not-in-store": 404,
    "method-not-allowed": 405,
    "ambiguous-channel": 409,
    "illegal-transition": 409,
    "unsupported": 409,
    "too-large": 413,
    "internal": 500,
    "peer-unreachable": 502,
}

#: (method, path, request body, answer): the API's routes, in the README's order.
ROUTES: tuple[tuple[str, str, str, str], ...] = (
    ("GET", "/v0/node", "", "`{peer_id, addrs, pid, version}`"),
    ("GET", "/v0/channels", "", "array of channel rows; `?all=1` adds ended channels"),
    ("GET", "/v0/channels/{id}", "", "the channel row"),
    ("POST", "/v0/pull", "`{addr, root, selector?}`",
     "`{channel, resumed}`: a live channel for the same peer, root and selector is "
     "resumed instead of a new one opened"),
    ("POST", "/v0/push", "`{addr, root, selector?}`", "as `/v0/pull`"),
    ("POST", "/v0/channels/{id}/cancel", "", "the channel row"),
    ("POST", "/v0/channels/{id}/pause", "", "the channel row"),
    ("POST", "/v0/channels/{id}/resume", "", "the channel row"),
    ("POST", "/v0/channels/{id}/restart", "", "the channel row"),
    ("GET", "/v0/watch", "",
     "NDJSON stream, one channel row per line whenever one changes (blank lines "
     "keep the connection alive); `?channel={id}` (repeatable) follows those channels "
     "and ends once all have ended, otherwise every live channel, without end"),
)


class ApiError(Exception):
    """An error the control API answered (or would answer) with: ``code``
    is one of :data:`ERROR_STATUS`, ``message`` a sentence for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code if code in ERROR_STATUS else "internal"
        self.message = message

    @property
    def status(self) -> int:
        return ERROR_STATUS[self.code]

    def to_json(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


#: Characters of each peer id kept in a short channel id.
SHORT_PEER = 8


def short_channel_id(chid: ChannelID) -> str:
    """``<initiator tail>-<responder tail>-<transfer id>``: the last
    :data:`SHORT_PEER` characters of each peer id. Commands taking a channel
    id accept it as well as the full ``<initiator>-<responder>-<id>``."""
    return f"{str(chid.initiator)[-SHORT_PEER:]}-{str(chid.responder)[-SHORT_PEER:]}-{chid.id}"


def match_channel(text: str, chid: ChannelID) -> bool:
    """Whether ``text`` names ``chid``: its full form, or its short form (or
    any longer tails of the two peer ids)."""
    parts = text.strip().split("-")
    if len(parts) != 3 or not parts[2].isdigit() or not parts[0] or not parts[1]:
        return False
    return (int(parts[2]) == chid.id and str(chid.initiator).endswith(parts[0])
            and str(chid.responder).endswith(parts[1]))


def pick_channel(text: str, known: list[ChannelID]) -> ChannelID:
    """The one channel of ``known`` that ``text`` names; :class:`ApiError`
    (``channel-not-found`` or ``ambiguous-channel``) otherwise."""
    found = [chid for chid in known if match_channel(text, chid)]
    if not found:
        raise ApiError("channel-not-found", f"no channel {text}")
    if len(found) > 1:
        raise ApiError("ambiguous-channel",
                       f"{text} names {len(found)} channels; give more of the peer ids")
    return found[0]


def channel_row(state: Any, expected: int | None = None) -> dict[str, Any]:
    """One channel as the API and ``ls --json`` show it. ``state`` is a
    :class:`~datatransfer.types.ChannelState` or a stored channel (whose
    counters sit in its ``record``); ``expected`` the bytes the receiving
    side expects when known (for progress bars)."""
    chid = state.channel_id
    record = getattr(state, "record", state)
    sending = state.sender == state.self_peer
    return {
        "id": short_channel_id(chid),
        "channel_id": str(chid),
        "initiator": str(chid.initiator),
        "responder": str(chid.responder),
        "transfer_id": chid.id,
        "peer": str(state.other_peer),
        "kind": "pull" if state.is_pull else "push",
        "role": "initiator" if chid.initiator == state.self_peer else "responder",
        "sending": sending,
        "root": str(state.base_cid),
        "status": record.status.name,
        "bytes": record.sent if sending else record.received,
        "sent": record.sent,
        "received": record.received,
        "total_size": state.total_size,
        "expected": expected if expected is not None else (state.total_size or None),
        "message": record.message,
    }


__all__ = [
    "API_FILE",
    "ERROR_STATUS",
    "MAX_BODY",
    "PREFIX",
    "ROUTES",
    "SHORT_PEER",
    "TOKEN_FILE",
    "ApiError",
    "channel_row",
    "match_channel",
    "pick_channel",
    "short_channel_id",
]
