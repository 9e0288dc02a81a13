"""Data-model helpers shared by selectors and the traversal.

Nodes are plain Python values (None, bool, int, float, str, bytes, list, dict
with str keys, :class:`CID` for links) or :class:`ADLNode` instances that an
``ExploreInterpretAs`` clause produced. Path segments are ``str`` (map keys)
or ``int`` (list indexes); lookups follow go-ipld-prime's ``LookupBySegment``:
a string segment used on a list is parsed as a decimal integer, an integer
segment used on a map is looked up as its decimal text.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from datatransfer.ipld.cid import CID

NULL = "null"
BOOL = "bool"
INT = "int"
FLOAT = "float"
STRING = "string"
BYTES = "bytes"
LIST = "list"
MAP = "map"
LINK = "link"

Segment = str | int

#: Returned by :func:`lookup` when there is nothing at a segment.
MISSING: Any = type("Missing", (), {"__repr__": lambda self: "MISSING"})()

_INT_RE = re.compile(r"[+-]?[0-9]+\Z")
_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1


class ADLNode:
    """A node an ADL reified; ``kind`` is its data-model kind."""

    __slots__ = ()
    kind: str = MAP

    def children(self) -> Iterator[tuple[Segment, Any]]:  # pragma: no cover - abstract
        return iter(())

    def lookup(self, seg: Segment) -> Any:  # pragma: no cover - abstract
        return MISSING


class _Absent:
    __slots__ = ()

    def __repr__(self) -> str:
        return "ABSENT"

    def __bool__(self) -> bool:
        return False


#: An optional DAG-PB field the block does not have (go-ipld-prime's
#: ``datamodel.Absent``; its kind is null).
ABSENT: Any = _Absent()


class PBMap(dict):
    """A decoded DAG-PB ``PBNode`` or ``PBLink`` map.

    It is the plain dict the codec produced (only the fields the block has),
    but iterates and looks up the way go-codec-dagpb's typed nodes do, which
    is what go-ipld-prime traverses: every schema field in schema order
    (PBNode: Links, Data; PBLink: Hash, Name, Tsize), a missing optional field
    as :data:`ABSENT`.
    """

    __slots__ = ("schema",)

    def __init__(self, value: dict[str, Any], schema: tuple[str, ...]) -> None:
        super().__init__(value)
        self.schema = schema

    def children(self) -> Iterator[tuple[Segment, Any]]:
        get = self.get
        return ((name, get(name, ABSENT)) for name in self.schema)

    def lookup(self, seg: Segment) -> Any:
        name = seg if type(seg) is str else str(seg)
        if name in self.schema:
            return self.get(name, ABSENT)
        return MISSING


_PBNODE_FIELDS = ("Links", "Data")
_PBLINK_FIELDS = ("Hash", "Name", "Tsize")


def pb_view(node: Any) -> Any:
    """Wrap a value decoded from a dag-pb block (see :class:`PBMap`)."""
    if type(node) is not dict or type(node.get("Links")) is not list:
        return node
    links = [PBMap(link, _PBLINK_FIELDS) if type(link) is dict else link for link in node["Links"]]
    view = PBMap(node, _PBNODE_FIELDS)
    dict.__setitem__(view, "Links", links)
    return view


_KINDS: dict[type, str] = {
    type(None): NULL,
    bool: BOOL,
    int: INT,
    float: FLOAT,
    str: STRING,
    bytes: BYTES,
    list: LIST,
    dict: MAP,
    CID: LINK,
    PBMap: MAP,
    _Absent: NULL,
}


def kind_of(node: Any) -> str:
    """The data-model kind of ``node`` (``"map"``, ``"list"``, ``"link"``...)."""
    kind = _KINDS.get(type(node))
    if kind is not None:
        return kind
    if isinstance(node, ADLNode):
        return node.kind
    if isinstance(node, bool):
        return BOOL
    if isinstance(node, int):
        return INT
    if isinstance(node, (bytearray, memoryview)):
        return BYTES
    if isinstance(node, dict):
        return MAP
    if isinstance(node, (list, tuple)):
        return LIST
    if isinstance(node, str):
        return STRING
    if isinstance(node, float):
        return FLOAT
    if isinstance(node, CID):
        return LINK
    raise TypeError(f"not an IPLD data-model value: {type(node).__name__}")


def go_index(seg: Segment) -> int | None:
    """A segment as a list index the way Go's ``PathSegment.Index`` reads it
    (``strconv.ParseInt(s, 10, 64)``), or None."""
    if type(seg) is int:
        return seg
    if not _INT_RE.match(seg):
        return None
    value = int(seg)
    if not _INT64_MIN <= value <= _INT64_MAX:
        return None
    return value


def seg_text(seg: Segment) -> str:
    return seg if type(seg) is str else str(seg)


def lookup(node: Any, seg: Segment) -> Any:
    """The child of ``node`` at ``seg`` or :data:`MISSING`."""
    if type(node) is dict:
        return node.get(seg if type(seg) is str else str(seg), MISSING)
    if type(node) is list:
        idx = go_index(seg)
        if idx is None or idx < 0 or idx >= len(node):
            return MISSING
        return node[idx]
    if isinstance(node, (ADLNode, PBMap)):
        return node.lookup(seg)
    kind = kind_of(node)
    if kind == MAP:
        return node.get(seg_text(seg), MISSING)
    if kind == LIST:
        idx = go_index(seg)
        if idx is None or idx < 0 or idx >= len(node):
            return MISSING
        return node[idx]
    return MISSING


def children(node: Any) -> Iterator[tuple[Segment, Any]]:
    """Every ``(segment, child)`` of a map or list, in order."""
    if type(node) is dict:
        return iter(node.items())
    if type(node) is list:
        return enumerate(node)
    if isinstance(node, (ADLNode, PBMap)):
        return node.children()
    kind = kind_of(node)
    if kind == MAP:
        return iter(node.items())
    if kind == LIST:
        return enumerate(node)
    return iter(())


def length(node: Any) -> int:
    if isinstance(node, (ADLNode, PBMap)):
        return sum(1 for _ in node.children())
    return len(node)


def path_text(path: tuple[Segment, ...]) -> str:
    """A path as go-ipld-prime prints it: segments joined by ``/``."""
    return "/".join(seg if type(seg) is str else str(seg) for seg in path)
