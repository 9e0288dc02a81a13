"""Typed errors of selectors and traversals.

Everything raised for bad input is an :class:`~datatransfer.ipld.errors.IPLDError`
(a :class:`ValueError`), so a graphsync peer can refuse a hostile request by
catching one base class.
"""

from __future__ import annotations

from datatransfer.ipld.errors import IPLDError


class SelectorError(IPLDError):
    """A selector document that is malformed (unknown kind, missing or mistyped
    field, recursion edge outside a recursion, empty range, ...)."""


class UnsupportedSelector(SelectorError):
    """A well-formed selector using something this library does not implement
    (a stop-at condition kind other than link equality, an unknown ADL name,
    a matcher ``onlyIf`` condition)."""


class TraversalError(IPLDError):
    """A traversal could not continue (bad ADL data, a missing block an ADL
    needed, a degenerate selector reaching a bare recursion edge)."""


class BudgetExceeded(TraversalError):
    """A traversal went past one of its limits.

    ``kind`` is ``"blocks"`` (blocks loaded), ``"depth"`` (links followed from
    the root to one block), ``"nodes"`` (nodes visited) or ``"adl-depth"``
    (nesting of a UnixFS file being read); ``limit`` is the limit and ``path``
    the path (tuple of segments) where it fired.
    """

    def __init__(self, kind: str, limit: int, path: tuple = ()) -> None:
        self.kind = kind
        self.limit = limit
        self.path = path
        where = "/".join(str(s) for s in path)
        super().__init__(f"traversal budget exceeded: {kind} > {limit} at path {where!r}")


class UnsupportedADL(TraversalError):
    """An ADL (``~`` interpret-as) name or a UnixFS node kind this library cannot
    interpret (for example a HAMT-sharded directory)."""
