"""Typed errors of the IPLD layer.

Every malformed input raises a subclass of :class:`IPLDError` (itself a
:class:`ValueError`), so callers can refuse bad data without catching
unrelated exceptions.
"""

from __future__ import annotations


class IPLDError(ValueError):
    """Base class of every error the IPLD layer raises for bad input."""


class VarintError(IPLDError):
    """A varint is truncated, longer than 9 bytes or not minimally encoded."""


class CIDError(IPLDError):
    """Bytes or text that are not a valid CID."""


class MultihashError(IPLDError):
    """An unknown hash function or a digest of the wrong length."""


class HashMismatch(IPLDError):
    """Block bytes do not hash to the CID they were offered under."""

    def __init__(self, cid: object, actual: object | None = None) -> None:
        self.cid = cid
        self.actual = actual
        detail = f" (bytes hash to {actual})" if actual is not None else ""
        super().__init__(f"block bytes do not match CID {cid}{detail}")


class CodecError(IPLDError):
    """Bytes that are not valid in a codec, or a value the codec cannot encode."""


class UnknownCodec(CodecError):
    """A multicodec code this library has no codec for."""

    def __init__(self, code: int) -> None:
        self.code = code
        super().__init__(f"unknown or unsupported codec 0x{code:x}")
