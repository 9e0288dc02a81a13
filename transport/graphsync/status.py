"""Graphsync's enumerations: response status codes, request types, link actions.

Values and their meaning follow go-graphsync v0.17 (``responsecode.go``,
``graphsync.go``) and the 2.0.0 wire schema (``message/ipldbind/schema.ipldsch``).
On the wire a status is a CBOR integer, a request type and a link action a
one-letter string; a value outside these sets makes Go's decoder reject the
whole message, and so does :func:`~transport.graphsync.message.decode_message`.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum


class ResponseStatus(IntEnum):
    """A graphsync response status code (Go: ``graphsync.ResponseStatusCode``).

    1x codes are informational (the request goes on), 2x successful ends, 3x
    failed ends. :attr:`is_success`, :attr:`is_failure` and :attr:`is_terminal`
    are *properties* (Go's ``IsSuccess()``... are methods).
    """

    #: Go: RequestAcknowledged -- received, being worked on.
    ACKNOWLEDGED = 10
    #: Go: AdditionalPeers -- other peers may satisfy the request.
    ADDITIONAL_PEERS = 11
    #: Go: NotEnoughGas -- fulfilling the request requires payment.
    NOT_ENOUGH_GAS = 12
    #: Go: OtherProtocol -- a response of another protocol is in the extensions.
    OTHER_PROTOCOL = 13
    #: Go: PartialResponse -- blocks and metadata of a response in progress.
    PARTIAL_RESPONSE = 14
    #: Go: RequestPaused -- no more data until unpaused.
    PAUSED = 15
    #: Go: RequestCompletedFull -- everything the selector asked for was sent.
    COMPLETED_FULL = 20
    #: Go: RequestCompletedPartial -- done, but some blocks were missing.
    COMPLETED_PARTIAL = 21
    #: Go: RequestRejected -- the responder did not accept the request.
    REJECTED = 30
    #: Go: RequestFailedBusy -- try again later.
    BUSY = 31
    #: Go: RequestFailedUnknown -- failed for an unspecified reason.
    UNKNOWN = 32
    #: Go: RequestFailedLegal -- failed for legal reasons.
    LEGAL = 33
    #: Go: RequestFailedContentNotFound -- the responder lacks the root.
    CONTENT_NOT_FOUND = 34
    #: Go: RequestCancelled -- the responder stopped processing the request.
    CANCELLED = 35

    @property
    def is_success(self) -> bool:
        """A successful end: :attr:`COMPLETED_FULL` or :attr:`COMPLETED_PARTIAL`."""
        return self in _SUCCESS

    @property
    def is_failure(self) -> bool:
        """A failed end: rejected, busy, unknown, legal, not found, cancelled."""
        return self in _FAILURE

    @property
    def is_terminal(self) -> bool:
        """The response ends the request (success or failure)."""
        return self in _SUCCESS or self in _FAILURE

    @property
    def go_name(self) -> str:
        """Go's constant name, e.g. ``RequestCompletedFull`` (for logs)."""
        return _GO_NAMES[self]


_SUCCESS = frozenset({ResponseStatus.COMPLETED_FULL, ResponseStatus.COMPLETED_PARTIAL})
_FAILURE = frozenset(
    {
        ResponseStatus.REJECTED,
        ResponseStatus.BUSY,
        ResponseStatus.UNKNOWN,
        ResponseStatus.LEGAL,
        ResponseStatus.CONTENT_NOT_FOUND,
        ResponseStatus.CANCELLED,
    }
)
_GO_NAMES = {
    ResponseStatus.ACKNOWLEDGED: "RequestAcknowledged",
    ResponseStatus.ADDITIONAL_PEERS: "AdditionalPeers",
    ResponseStatus.NOT_ENOUGH_GAS: "NotEnoughGas",
    ResponseStatus.OTHER_PROTOCOL: "OtherProtocol",
    ResponseStatus.PARTIAL_RESPONSE: "PartialResponse",
    ResponseStatus.PAUSED: "RequestPaused",
    ResponseStatus.COMPLETED_FULL: "RequestCompletedFull",
    ResponseStatus.COMPLETED_PARTIAL: "RequestCompletedPartial",
    ResponseStatus.REJECTED: "RequestRejected",
    ResponseStatus.BUSY: "RequestFailedBusy",
    ResponseStatus.UNKNOWN: "RequestFailedUnknown",
    ResponseStatus.LEGAL: "RequestFailedLegal",
    ResponseStatus.CONTENT_NOT_FOUND: "RequestFailedContentNotFound",
    ResponseStatus.CANCELLED: "RequestCancelled",
}


class RequestType(StrEnum):
    """What a request entry asks (wire: ``"n"``, ``"c"``, ``"u"``)."""

    #: A new request: root, selector, priority and extensions.
    NEW = "n"
    #: Cancel the request with this id (carries nothing else).
    CANCEL = "c"
    #: More extensions for a request in progress (e.g. unpause, a voucher).
    UPDATE = "u"


class LinkAction(StrEnum):
    """What the responder did with one link of the traversal (``meta`` entries)."""

    #: The block was present and is in this message (or an earlier one).
    PRESENT = "p"
    #: The block was present but not sent (already sent: a duplicate).
    DUPLICATE_NOT_SENT = "d"
    #: The responder does not have the block; that part of the DAG is skipped.
    MISSING = "m"
    #: The DAG under this link was already traversed in full for this request.
    DUPLICATE_DAG_SKIPPED = "s"

    @property
    def did_follow_link(self) -> bool:
        """Go's ``DidFollowLink``: the traversal went through this link
        (:attr:`PRESENT` or :attr:`DUPLICATE_NOT_SENT`)."""
        return self is LinkAction.PRESENT or self is LinkAction.DUPLICATE_NOT_SENT
