"""Selector AST, parser and serializer.

The selector kinds and their short keys (the IPLD selector spec's
representation, as DAG-CBOR and DAG-JSON carry them)::

    Matcher               "."  {"subset": {"[": from, "]": to}}? {"label": str}?
    ExploreAll            "a"  {">": next}
    ExploreFields         "f"  {"f>": {name: next, ...}}
    ExploreIndex          "i"  {"i": index, ">": next}
    ExploreRange          "r"  {"^": start, "$": end, ">": next}
    ExploreRecursive      "R"  {"l": {"none": {}} | {"depth": n}, ":>": sequence, "!": cond?}
    ExploreRecursiveEdge  "@"  {}
    ExploreUnion          "|"  [member, ...]
    ExploreInterpretAs    "~"  {"as": adl name, ">": next}

Each class exposes the same four operations as go-ipld-prime's ``Selector``
interface and with the same semantics, because graphsync peers must agree on
the exact order in which blocks are loaded:

* ``interests(node)``: ``None`` (explore every child) or the segments to look
  up, in order (duplicates kept, as Go keeps them);
* ``explore(node, seg)``: the selector for the child at ``seg`` or ``None``;
* ``match(node)``: the matched node (possibly a slice of it) or :data:`NOMATCH`.

Parsing (:func:`parse_selector`) is strict: besides what go-ipld-prime rejects
it refuses unknown keys, non-integer or out-of-int64 numbers, a negative index,
start or depth, and nesting deeper than :data:`MAX_SELECTOR_DEPTH`; each
problem raises :class:`SelectorError` naming it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from datatransfer.ipld.cid import CID
from datatransfer.ipld.selector import _nodes
from datatransfer.ipld.selector._nodes import LIST, MISSING, Segment
from datatransfer.ipld.selector.errors import SelectorError, TraversalError, UnsupportedSelector

__all__ = [
    "ALL_SELECTOR_NODE",
    "MAX_SELECTOR_DEPTH",
    "MAX_STATE_COST",
    "NOMATCH",
    "SUPPORTED_ADLS",
    "ExploreAll",
    "ExploreFields",
    "ExploreIndex",
    "ExploreInterpretAs",
    "ExploreRange",
    "ExploreRecursive",
    "ExploreRecursiveEdge",
    "ExploreUnion",
    "LinkCondition",
    "Matcher",
    "Selector",
    "all_selector",
    "parse_selector",
    "selector_to_node",
    "union_of",
]

#: Deepest nesting of selector clauses :func:`parse_selector` accepts.
MAX_SELECTOR_DEPTH = 100
#: Largest :attr:`Selector.cost` a traversal lets a selector's state reach
#: (clauses one node's evaluation runs through). A parsed selector's own
#: cost is bounded by its size on the wire; explored unions and recursions
#: can grow, and past this the traversal ends with a TraversalError.
MAX_STATE_COST = 4096

#: ADL names ``ExploreInterpretAs`` may use (as go-unixfsnode registers them).
SUPPORTED_ADLS = frozenset({"unixfs", "unixfs-preload"})

_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1


class _NoMatch:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NOMATCH"

    def __bool__(self) -> bool:
        return False


#: What ``Selector.match`` returns when a node is not matched (``None`` is a
#: valid node: the data-model null).
NOMATCH: Any = _NoMatch()


class Selector:
    """Base of every selector clause.

    ``cost`` is what one call of ``interests``, ``explore`` or ``match``
    costs, in clause evaluations: 1 for a clause that answers on its own,
    more for a union (each member answers) or a recursion state (its
    current clause answers). A traversal counts these as its work (see
    :class:`~datatransfer.ipld.selector.traversal.Traverser`), which is what
    bounds a hostile selector: the nodes it visits can each cost a lot.
    """

    __slots__ = ()
    cost: int = 1

    def interests(self, node: Any) -> Iterable[Segment] | None:
        return ()

    def explore(self, node: Any, seg: Segment) -> Selector | None:
        return None

    def match(self, node: Any) -> Any:
        return NOMATCH


# -- conditions ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LinkCondition:
    """Stop-at condition ``{"/": link}``: the child is a link equal to ``cid``
    (the only condition go-ipld-prime implements)."""

    cid: CID

    def matches(self, node: Any) -> bool:
        return type(node) is CID and node == self.cid


Condition = LinkCondition


# -- clauses ------------------------------------------------------------------


def _slice_bounds(start: int, stop: int, size: int) -> tuple[int, int] | None:
    """go-ipld-prime's ``sliceBounds``: adjust a subset range to a length."""
    if stop < 0:
        stop = size + stop
    elif size < stop:
        stop = size
    if start < 0:
        start = max(size + start, 0)
    if start > stop or start >= size:
        return None
    return start, stop


@dataclass(frozen=True, slots=True)
class Matcher(Selector):
    """Match the current node; with ``subset`` a string or bytes node matches
    as its slice ``[from:to]`` (negative counts from the end, as in Go)."""

    subset: tuple[int, int] | None = None
    label: str | None = None

    def interests(self, node: Any) -> Iterable[Segment] | None:
        return ()

    def explore(self, node: Any, seg: Segment) -> Selector | None:
        return None

    def match(self, node: Any) -> Any:
        if self.subset is None:
            return node
        kind = _nodes.kind_of(node)
        if kind == _nodes.STRING:
            raw = node.encode("utf-8", "surrogatepass")
            bounds = _slice_bounds(self.subset[0], self.subset[1], len(raw))
            if bounds is None:
                return NOMATCH
            return raw[bounds[0] : bounds[1]].decode("utf-8", "replace")
        if kind == _nodes.BYTES and not isinstance(node, _nodes.ADLNode):
            bounds = _slice_bounds(self.subset[0], self.subset[1], len(node))
            if bounds is None:
                return NOMATCH
            return bytes(node[bounds[0] : bounds[1]])
        # Lazily loaded bytes (UnixFS files) are sliced by the traversal,
        # which can load the blocks the slice needs.
        return NOMATCH

    def slice_bounds(self, size: int) -> tuple[int, int] | None:
        assert self.subset is not None
        return _slice_bounds(self.subset[0], self.subset[1], size)


@dataclass(frozen=True, slots=True)
class ExploreAll(Selector):
    """Apply ``next`` to every child of a map or list."""

    next: Selector

    def interests(self, node: Any) -> Iterable[Segment] | None:
        return None

    def explore(self, node: Any, seg: Segment) -> Selector | None:
        return self.next


@dataclass(frozen=True, slots=True, eq=False)
class ExploreFields(Selector):
    """Apply a selector to each named field, in the order given (the order is
    part of the selector: two selectors naming the same fields in another
    order are not equal)."""

    fields: dict[str, Selector]

    def __eq__(self, other: object) -> bool:
        if type(other) is not ExploreFields:
            return NotImplemented
        return list(self.fields.items()) == list(other.fields.items())

    def __hash__(self) -> int:
        return hash(tuple(self.fields.items()))

    def interests(self, node: Any) -> Iterable[Segment] | None:
        return tuple(self.fields)

    def explore(self, node: Any, seg: Segment) -> Selector | None:
        return self.fields.get(seg if type(seg) is str else str(seg))


@dataclass(frozen=True, slots=True)
class ExploreIndex(Selector):
    """Apply ``next`` to one element of a list."""

    index: int
    next: Selector

    def interests(self, node: Any) -> Iterable[Segment] | None:
        return (self.index,)

    def explore(self, node: Any, seg: Segment) -> Selector | None:
        if _nodes.kind_of(node) != LIST or _nodes.go_index(seg) != self.index:
            return None
        return self.next


@dataclass(frozen=True, slots=True)
class ExploreRange(Selector):
    """Apply ``next`` to list elements ``start <= i < end``."""

    start: int
    end: int
    next: Selector

    def interests(self, node: Any) -> Iterable[Segment] | None:
        # Go lists every index start..end-1; only those present can be
        # looked up, so the list is cut to what the node holds (a hostile
        # "end" of 2**63 costs nothing).
        if _nodes.kind_of(node) == LIST:
            return range(self.start, min(self.end, _nodes.length(node)))
        # On a map Go looks each index up as its decimal text.
        found = []
        for key, _ in _nodes.children(node):
            idx = _nodes.go_index(key) if type(key) is str else None
            if idx is not None and str(idx) == key and self.start <= idx < self.end:
                found.append(idx)
        found.sort()
        return found

    def explore(self, node: Any, seg: Segment) -> Selector | None:
        if _nodes.kind_of(node) != LIST:
            return None
        idx = _nodes.go_index(seg)
        if idx is None or idx < self.start or idx >= self.end:
            return None
        return self.next


@dataclass(frozen=True, slots=True)
class ExploreRecursiveEdge(Selector):
    """Where an ``ExploreRecursive`` sequence starts over."""

    def interests(self, node: Any) -> Iterable[Segment] | None:
        return ()

    def explore(self, node: Any, seg: Segment) -> Selector | None:
        # go-ipld-prime panics here; only degenerate selectors (a union with a
        # bare edge outside its recursion) get here.
        raise TraversalError("selector reached a recursion edge outside its recursion")


@dataclass(frozen=True, slots=True)
class ExploreUnion(Selector):
    """Apply every member; a node matches if any member matches it.

    A union never asks for the same thing twice: its interests are merged
    (a segment named by several members is visited once, all of them
    applying), and what it explores into is merged too (nested unions
    flattened, repeats dropped: :func:`union_of`). go-ipld-prime keeps
    repeats and visits a node once per repeat; merging is what keeps a
    union's work from multiplying with its nesting. Only a selector that
    repeats itself sees a difference: fewer visits. The parsed form keeps
    the members as written, so it serializes back to the same bytes.
    """

    members: tuple[Selector, ...]
    cost: int = field(init=False, repr=False, compare=False, hash=False)
    _hash: int = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "cost", _state_cost(1 + sum(m.cost for m in self.members)))
        object.__setattr__(self, "_hash", hash(self.members))

    def __hash__(self) -> int:
        return self._hash

    def interests(self, node: Any) -> Iterable[Segment] | None:
        out: dict[Segment, None] = {}
        for member in self.members:
            got = member.interests(node)
            if got is None:
                return None
            for seg in got:
                out[seg] = None
        return list(out)

    def explore(self, node: Any, seg: Segment) -> Selector | None:
        found = []
        for member in self.members:
            nxt = member.explore(node, seg)
            if nxt is not None:
                found.append(nxt)
        return union_of(found)

    def match(self, node: Any) -> Any:
        for member in self.members:
            got = member.match(node)
            if got is not NOMATCH:
                return got
        return NOMATCH


def _state_cost(cost: int) -> int:
    """``cost``, if a selector state may reach it (:data:`MAX_STATE_COST`)."""
    if cost > MAX_STATE_COST:
        raise TraversalError(
            f"selector grows past {MAX_STATE_COST} clauses (unions or recursions nested "
            "in each other that multiply as the traversal goes)")
    return cost


def _merged(members: Iterable[Selector]) -> tuple[Selector, ...]:
    out: dict[Selector, None] = {}
    for member in members:
        if type(member) is ExploreUnion:
            for inner in member.members:
                out[inner] = None
        else:
            out[member] = None
    return tuple(out)


def union_of(members: Iterable[Selector]) -> Selector | None:
    """The union of ``members`` merged (nested unions flattened, repeats
    dropped, order kept): None if there are none, the member itself if
    there is one."""
    merged = _merged(members)
    if not merged:
        return None
    if len(merged) == 1:
        return merged[0]
    return ExploreUnion(merged)


@dataclass(frozen=True, slots=True)
class ExploreInterpretAs(Selector):
    """Reify the node with the ADL ``adl`` (``"unixfs"`` or
    ``"unixfs-preload"``) and apply ``next`` to the result."""

    adl: str
    next: Selector

    @property
    def cost(self) -> int:  # type: ignore[override]
        return 1 + self.next.cost

    def interests(self, node: Any) -> Iterable[Segment] | None:
        return self.next.interests(node)

    def explore(self, node: Any, seg: Segment) -> Selector | None:
        return self.next


def _has_edge(sel: Selector) -> bool:
    if type(sel) is ExploreRecursiveEdge:
        return True
    if type(sel) is ExploreUnion:
        return any(_has_edge(m) for m in sel.members)
    return False


def _replace_edge(sel: Selector, replacement: Selector | None) -> Selector | None:
    if type(sel) is ExploreRecursiveEdge:
        return replacement
    if type(sel) is ExploreUnion:
        return union_of(
            got for got in (_replace_edge(m, replacement) for m in sel.members)
            if got is not None
        )
    return sel


class _Recursion(Selector):
    """Run-time state of an ``ExploreRecursive``: the clause being applied now
    (``current``) and the depth left (``None`` for no limit)."""

    __slots__ = ("sequence", "current", "depth", "stop_at", "_reset", "cost", "_key", "_hash")

    def __init__(
        self,
        sequence: Selector,
        current: Selector,
        depth: int | None,
        stop_at: Condition | None,
    ) -> None:
        self.sequence = sequence
        self.current = current
        self.depth = depth
        self.stop_at = stop_at
        self._reset: _Recursion | None = None
        self.cost = _state_cost(1 + current.cost)
        # Equal states are one state: a union merges them (see ExploreUnion).
        self._key = (sequence, current, depth, stop_at)
        self._hash = hash(self._key)

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if type(other) is not _Recursion:
            return NotImplemented
        return self._hash == other._hash and self._key == other._key

    def __hash__(self) -> int:
        return self._hash

    def __repr__(self) -> str:
        return f"_Recursion(current={self.current!r}, depth={self.depth!r})"

    def interests(self, node: Any) -> Iterable[Segment] | None:
        return self.current.interests(node)

    def match(self, node: Any) -> Any:
        return self.current.match(node)

    def explore(self, node: Any, seg: Segment) -> Selector | None:
        if self.stop_at is not None:
            target = _nodes.lookup(node, seg)
            if target is not MISSING and self.stop_at.matches(target):
                return None
        current = self.current
        if type(current) is ExploreRecursiveEdge:
            return None
        nxt = current.explore(node, seg)
        if nxt is None:
            return None
        if not _has_edge(nxt):
            return _Recursion(self.sequence, nxt, self.depth, self.stop_at)
        if self.depth is None:
            if type(nxt) is ExploreRecursiveEdge:
                # The common case (the "all" selector): back to the start,
                # a state equal to the first one; reuse it.
                reset = self._reset
                if reset is None:
                    reset = _Recursion(self.sequence, self.sequence, None, self.stop_at)
                    reset._reset = reset
                    self._reset = reset
                return reset
            return _Recursion(self.sequence, _replace_edge(nxt, self.sequence), None, self.stop_at)  # type: ignore[arg-type]
        if self.depth < 2:
            return _replace_edge(nxt, None)
        return _Recursion(
            self.sequence, _replace_edge(nxt, self.sequence), self.depth - 1, self.stop_at
        )  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class ExploreRecursive(Selector):
    """Apply ``sequence`` repeatedly: each ``ExploreRecursiveEdge`` inside it
    starts the sequence over, up to ``limit`` times (``None``: no limit),
    never exploring a child the ``stop_at`` condition matches."""

    sequence: Selector
    limit: int | None = None
    stop_at: Condition | None = None
    _start: _Recursion = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "_start", _Recursion(self.sequence, self.sequence, self.limit, self.stop_at)
        )

    @property
    def cost(self) -> int:  # type: ignore[override]
        return self._start.cost

    def interests(self, node: Any) -> Iterable[Segment] | None:
        return self._start.interests(node)

    def explore(self, node: Any, seg: Segment) -> Selector | None:
        return self._start.explore(node, seg)

    def match(self, node: Any) -> Any:
        return self._start.match(node)


# -- parsing ------------------------------------------------------------------


def _where(path: Sequence[str]) -> str:
    return "/".join(path) if path else "(root)"


class _Parser:
    def __init__(self, adls: frozenset[str] | set[str], max_depth: int) -> None:
        self.adls = adls
        self.max_depth = max_depth
        # One counter of edges found per enclosing ExploreRecursive.
        self.recursions: list[int] = []

    def fail(self, path: Sequence[str], why: str) -> SelectorError:
        return SelectorError(f"invalid selector at {_where(path)}: {why}")

    def body(self, node: Any, path: list[str], kind: str) -> dict[str, Any]:
        if type(node) is not dict:
            raise self.fail(path, f"{kind} body must be a map, not {_nodes.kind_of(node)}")
        return node

    def keys(self, body: dict[str, Any], path: list[str], kind: str, allowed: set[str]) -> None:
        extra = sorted(set(body) - allowed)
        if extra:
            raise self.fail(path, f"unknown field(s) {extra} in {kind}")

    def required(self, body: dict[str, Any], key: str, path: list[str], kind: str) -> Any:
        if key not in body:
            raise self.fail(path, f"{kind} is missing its {key!r} field")
        return body[key]

    def integer(self, value: Any, path: list[str], what: str) -> int:
        if type(value) is not int:
            raise self.fail(path, f"{what} must be an integer, not {_nodes.kind_of(value)}")
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise self.fail(path, f"{what} {value} is outside the int64 range")
        return value

    def selector(self, node: Any, path: list[str], depth: int) -> Selector:
        if depth > self.max_depth:
            raise self.fail(path, f"selector nested more than {self.max_depth} levels deep")
        if type(node) is not dict:
            raise self.fail(
                path, f"a selector is a keyed union and must be a map, not {_nodes.kind_of(node)}"
            )
        if len(node) != 1:
            raise self.fail(
                path,
                f"a selector is a keyed union and must be a single-entry map, not {len(node)} entries",
            )
        ((key, value),) = node.items()
        sub = [*path, key]
        method = _KINDS.get(key)
        if method is None:
            raise self.fail(path, f"unknown selector kind {key!r}")
        return method(self, value, sub, depth)

    # each parse method: (value, path, depth) -> Selector

    def matcher(self, value: Any, path: list[str], depth: int) -> Selector:
        body = self.body(value, path, "Matcher")
        self.keys(body, path, "Matcher", {"subset", "label", "onlyIf"})
        if "onlyIf" in body:
            raise UnsupportedSelector(
                f"invalid selector at {_where(path)}: Matcher onlyIf conditions are not supported"
            )
        label = body.get("label")
        if label is not None and type(label) is not str:
            raise self.fail(path, "Matcher label must be a string")
        subset = None
        if "subset" in body:
            spath = [*path, "subset"]
            sbody = self.body(body["subset"], spath, "Matcher subset")
            self.keys(sbody, spath, "Matcher subset", {"[", "]"})
            start = self.integer(
                self.required(sbody, "[", spath, "Matcher subset"), spath, "subset from '['"
            )
            stop = self.integer(
                self.required(sbody, "]", spath, "Matcher subset"), spath, "subset to ']'"
            )
            if stop >= 0 and start > stop:
                raise self.fail(spath, f"subset from {start} is greater than to {stop}")
            subset = (start, stop)
        return Matcher(subset, label)

    def explore_all(self, value: Any, path: list[str], depth: int) -> Selector:
        body = self.body(value, path, "ExploreAll")
        self.keys(body, path, "ExploreAll", {">"})
        nxt = self.required(body, ">", path, "ExploreAll")
        return ExploreAll(self.selector(nxt, [*path, ">"], depth + 1))

    def explore_fields(self, value: Any, path: list[str], depth: int) -> Selector:
        body = self.body(value, path, "ExploreFields")
        self.keys(body, path, "ExploreFields", {"f>"})
        fields = self.required(body, "f>", path, "ExploreFields")
        fpath = [*path, "f>"]
        if type(fields) is not dict:
            raise self.fail(
                fpath, f"ExploreFields fields must be a map, not {_nodes.kind_of(fields)}"
            )
        parsed = {
            name: self.selector(sub, [*fpath, name], depth + 1) for name, sub in fields.items()
        }
        return ExploreFields(parsed)

    def explore_index(self, value: Any, path: list[str], depth: int) -> Selector:
        body = self.body(value, path, "ExploreIndex")
        self.keys(body, path, "ExploreIndex", {"i", ">"})
        index = self.integer(
            self.required(body, "i", path, "ExploreIndex"), path, "ExploreIndex index"
        )
        if index < 0:
            raise self.fail(path, f"ExploreIndex index {index} is negative")
        nxt = self.required(body, ">", path, "ExploreIndex")
        return ExploreIndex(index, self.selector(nxt, [*path, ">"], depth + 1))

    def explore_range(self, value: Any, path: list[str], depth: int) -> Selector:
        body = self.body(value, path, "ExploreRange")
        self.keys(body, path, "ExploreRange", {"^", "$", ">"})
        start = self.integer(
            self.required(body, "^", path, "ExploreRange"), path, "ExploreRange start"
        )
        end = self.integer(self.required(body, "$", path, "ExploreRange"), path, "ExploreRange end")
        if start < 0:
            raise self.fail(path, f"ExploreRange start {start} is negative")
        if start >= end:
            raise self.fail(path, f"ExploreRange end {end} must be greater than start {start}")
        nxt = self.required(body, ">", path, "ExploreRange")
        return ExploreRange(start, end, self.selector(nxt, [*path, ">"], depth + 1))

    def explore_union(self, value: Any, path: list[str], depth: int) -> Selector:
        if type(value) is not list:
            raise self.fail(path, f"ExploreUnion must be a list, not {_nodes.kind_of(value)}")
        members = tuple(
            self.selector(sub, [*path, str(i)], depth + 1) for i, sub in enumerate(value)
        )
        return ExploreUnion(members)

    def explore_recursive(self, value: Any, path: list[str], depth: int) -> Selector:
        body = self.body(value, path, "ExploreRecursive")
        self.keys(body, path, "ExploreRecursive", {"l", ":>", "!"})
        limit_node = self.required(body, "l", path, "ExploreRecursive")
        lpath = [*path, "l"]
        if type(limit_node) is not dict or len(limit_node) != 1:
            raise self.fail(
                lpath,
                "ExploreRecursive limit must be a single-entry map ({'none': {}} or {'depth': n})",
            )
        ((lkey, lvalue),) = limit_node.items()
        if lkey == "none":
            if lvalue != {} or type(lvalue) is not dict:
                raise self.fail(lpath, "recursion limit 'none' must be an empty map")
            limit = None
        elif lkey == "depth":
            limit = self.integer(lvalue, lpath, "recursion depth")
            if limit < 0:
                raise self.fail(lpath, f"recursion depth {limit} is negative")
        else:
            raise self.fail(lpath, f"unknown recursion limit kind {lkey!r}")
        seq_node = self.required(body, ":>", path, "ExploreRecursive")
        self.recursions.append(0)
        try:
            sequence = self.selector(seq_node, [*path, ":>"], depth + 1)
        finally:
            edges = self.recursions.pop()
        if edges == 0:
            raise self.fail(path, "ExploreRecursive sequence has no ExploreRecursiveEdge '@'")
        stop_at = None
        if "!" in body:
            stop_at = self.condition(body["!"], [*path, "!"])
        return ExploreRecursive(sequence, limit, stop_at)

    def condition(self, value: Any, path: list[str]) -> Condition:
        if type(value) is not dict or len(value) != 1:
            raise self.fail(
                path, "a stop-at condition is a keyed union and must be a single-entry map"
            )
        ((key, arg),) = value.items()
        if key == "/":
            if type(arg) is not CID:
                raise self.fail(
                    path, f"link condition '/' must hold a link, not {_nodes.kind_of(arg)}"
                )
            return LinkCondition(arg)
        raise UnsupportedSelector(
            f"invalid selector at {_where(path)}: stop-at condition kind {key!r} is not supported "
            "(only link equality '/')"
        )

    def explore_edge(self, value: Any, path: list[str], depth: int) -> Selector:
        body = self.body(value, path, "ExploreRecursiveEdge")
        self.keys(body, path, "ExploreRecursiveEdge", set())
        if not self.recursions:
            raise self.fail(path, "ExploreRecursiveEdge '@' is not inside an ExploreRecursive")
        self.recursions[-1] += 1
        return ExploreRecursiveEdge()

    def interpret_as(self, value: Any, path: list[str], depth: int) -> Selector:
        body = self.body(value, path, "ExploreInterpretAs")
        self.keys(body, path, "ExploreInterpretAs", {"as", ">"})
        adl = self.required(body, "as", path, "ExploreInterpretAs")
        if type(adl) is not str:
            raise self.fail(
                path, f"ExploreInterpretAs 'as' must be a string, not {_nodes.kind_of(adl)}"
            )
        nxt = self.required(body, ">", path, "ExploreInterpretAs")
        sel = ExploreInterpretAs(adl, self.selector(nxt, [*path, ">"], depth + 1))
        if adl not in self.adls:
            raise UnsupportedSelector(
                f"invalid selector at {_where(path)}: unknown ADL {adl!r} "
                f"(supported: {sorted(self.adls)})"
            )
        return sel


_KINDS = {
    ".": _Parser.matcher,
    "a": _Parser.explore_all,
    "f": _Parser.explore_fields,
    "i": _Parser.explore_index,
    "r": _Parser.explore_range,
    "|": _Parser.explore_union,
    "R": _Parser.explore_recursive,
    "@": _Parser.explore_edge,
    "~": _Parser.interpret_as,
}


def parse_selector(
    node: Any,
    *,
    adls: Iterable[str] = SUPPORTED_ADLS,
    max_depth: int = MAX_SELECTOR_DEPTH,
) -> Selector:
    """Parse a selector from its data-model form (a value decoded from DAG-CBOR
    or DAG-JSON). Raises :class:`SelectorError` (or its subclass
    :class:`UnsupportedSelector`) naming the problem and where it is."""
    return _Parser(frozenset(adls), max_depth).selector(node, [], 0)


# -- serializing --------------------------------------------------------------


def _to_node(sel: Selector, depth: int) -> Any:
    if depth > 10_000:
        raise SelectorError("selector nested too deeply to serialize")
    t = type(sel)
    if t is Matcher:
        body: dict[str, Any] = {}
        if sel.subset is not None:
            body["subset"] = {"[": sel.subset[0], "]": sel.subset[1]}
        if sel.label is not None:
            body["label"] = sel.label
        return {".": body}
    if t is ExploreAll:
        return {"a": {">": _to_node(sel.next, depth + 1)}}
    if t is ExploreFields:
        return {"f": {"f>": {k: _to_node(v, depth + 1) for k, v in sel.fields.items()}}}
    if t is ExploreIndex:
        return {"i": {"i": sel.index, ">": _to_node(sel.next, depth + 1)}}
    if t is ExploreRange:
        return {"r": {"^": sel.start, "$": sel.end, ">": _to_node(sel.next, depth + 1)}}
    if t is ExploreUnion:
        return {"|": [_to_node(m, depth + 1) for m in sel.members]}
    if t is ExploreRecursive:
        limit = {"none": {}} if sel.limit is None else {"depth": sel.limit}
        body = {"l": limit, ":>": _to_node(sel.sequence, depth + 1)}
        if sel.stop_at is not None:
            body["!"] = {"/": sel.stop_at.cid}
        return {"R": body}
    if t is ExploreRecursiveEdge:
        return {"@": {}}
    if t is ExploreInterpretAs:
        return {"~": {"as": sel.adl, ">": _to_node(sel.next, depth + 1)}}
    raise SelectorError(f"cannot serialize {t.__name__} (only parsed selector clauses)")


def selector_to_node(sel: Selector) -> Any:
    """The data-model form of a selector (encode it with DAG-CBOR for the wire)."""
    return _to_node(sel, 0)


# -- the Filecoin "all" selector ----------------------------------------------

#: ``{"R": {"l": {"none": {}}, ":>": {"a": {">": {"@": {}}}}}}``: every node,
#: following every link, depth-first (what Filecoin retrieval and go-fil-
#: markets send for a whole DAG). Treat as read-only.
ALL_SELECTOR_NODE: dict[str, Any] = {"R": {"l": {"none": {}}, ":>": {"a": {">": {"@": {}}}}}}

_ALL = parse_selector(ALL_SELECTOR_NODE)


def all_selector() -> Selector:
    """The parsed Filecoin "all" selector (explore everything recursively)."""
    return _ALL


def iter_clauses(sel: Selector) -> Iterator[Selector]:
    """Every clause of a selector tree, depth-first."""
    stack = [sel]
    while stack:
        cur = stack.pop()
        yield cur
        t = type(cur)
        if t in (ExploreAll, ExploreIndex, ExploreRange, ExploreInterpretAs):
            stack.append(cur.next)
        elif t is ExploreFields:
            stack.extend(reversed(list(cur.fields.values())))
        elif t is ExploreUnion:
            stack.extend(reversed(cur.members))
        elif t is ExploreRecursive:
            stack.append(cur.sequence)
