"""The ``unixfs`` and ``unixfs-preload`` ADLs of ``ExploreInterpretAs``.

This follows go-unixfsnode, block load for block load, because a graphsync
peer on the other side runs that code and both sides must load the same
blocks in the same order:

* A node that is not a DAG-PB node (a value of the PBNode shape
  ``{"Links": [...], "Data": bytes?}``; what a dag-pb block decodes to, or the
  same shape from another codec) is left as it is.
* A UnixFS ``File`` or ``Raw`` node becomes a :class:`UnixFSFile`: a *lazy*
  bytes node. ``unixfs`` loads nothing when reifying; ``unixfs-preload``
  reads the whole file once while reifying (loading every leaf).
* A ``Directory`` becomes a :class:`UnixFSMap` of entry name -> link (the
  links in block order; a name lookup finds the first entry of that name);
  a node without ``Data``, with ``Data`` that is not UnixFS, or of type
  ``Metadata``/``Symlink`` becomes the same map (go-unixfsnode's "pathed"
  PBNode).
* A ``HAMTShard`` raises :class:`UnsupportedADL` (not implemented).

Reading a file (when a matcher slices it, or when the traversal reads a
matched file as go-graphsync's visitor does) loads blocks the way
go-unixfsnode's reader does: the child sizes come from ``blocksizes`` (or the
link's ``Tsize`` for a raw child); a child whose size is not known is loaded
up front to measure it; children before the read offset are skipped; each
other child is loaded when the read reaches it. Every read starts from fresh
readers, so a child read twice is loaded twice (``unixfs-preload`` followed by
a matching read loads each leaf twice, as in Go).
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from typing import Any, Protocol

from datatransfer.ipld.cid import CID, RAW
from datatransfer.ipld.errors import IPLDError
from datatransfer.ipld.selector import _nodes
from datatransfer.ipld.selector._nodes import BYTES, MAP, MISSING, ADLNode, Segment
from datatransfer.ipld.selector.ast import (
    NOMATCH,
    ExploreRecursive,
    ExploreUnion,
    Matcher,
    Selector,
    _Recursion,
)
from datatransfer.ipld.selector.errors import BudgetExceeded, TraversalError, UnsupportedADL
from datatransfer.ipld.unixfs.pb import DataType, UnixFSData, UnixFSError

#: Deepest nesting of file nodes a read follows (UnixFS files are a handful
#: of levels deep; this bounds the reader's recursion).
ADL_MAX_DEPTH = 64

_READ_CHUNK = 1 << 20

# A generator that yields block requests (through the traversal) and
# returns a value.
Gen = Generator[Any, Any, Any]


class MissingBlock(TraversalError):
    """A block an ADL read needed was not available (the loader skipped it)."""

    def __init__(self, cid: CID) -> None:
        self.cid = cid
        super().__init__(f"block {cid} needed by a UnixFS read is missing")


class Loader(Protocol):
    def load_adl(self, cid: CID, depth: int) -> Gen:
        """Load and decode a block for an ADL read (``depth``: nesting level);
        returns the node or raises :class:`MissingBlock`."""


# -- nodes --------------------------------------------------------------------


def is_pbnode(node: Any) -> bool:
    """True for a value of the DAG-PB data-model shape."""
    if not isinstance(node, dict):
        return False
    links = node.get("Links", MISSING)
    if type(links) is not list:
        return False
    if len(node) > 2 or (len(node) == 2 and type(node.get("Data", MISSING)) is not bytes):
        return False
    for link in links:
        if not isinstance(link, dict) or type(link.get("Hash")) is not CID:
            return False
    return True


class UnixFSFile(ADLNode):
    """A UnixFS file as one (lazily loaded) bytes node. ``substrate`` is its
    root: a PBNode-shaped map, or bytes for a leaf-only file."""

    __slots__ = ("substrate",)
    kind = BYTES

    def __init__(self, substrate: Any) -> None:
        self.substrate = substrate

    def __repr__(self) -> str:
        return "UnixFSFile(<lazy>)"


class UnixFSSlice(ADLNode):
    """The ``[start:stop]`` slice of a :class:`UnixFSFile` a subset matcher
    selected, when the traversal does not read matched bytes."""

    __slots__ = ("file", "start", "stop")
    kind = BYTES

    def __init__(self, file: UnixFSFile, start: int, stop: int) -> None:
        self.file = file
        self.start = start
        self.stop = stop

    def __repr__(self) -> str:
        return f"UnixFSSlice(<lazy>[{self.start}:{self.stop}])"


class UnixFSMap(ADLNode):
    """A UnixFS directory (or a non-UnixFS DAG-PB node) as a map of link
    name -> link. ``entries`` keeps every link in block order, duplicates
    included (a missing name is the empty name)."""

    __slots__ = ("entries", "directory")
    kind = MAP

    def __init__(self, entries: list[tuple[str, CID]], directory: bool) -> None:
        self.entries = entries
        self.directory = directory

    def __repr__(self) -> str:
        return f"UnixFSMap({self.entries!r})"

    def children(self) -> Iterator[tuple[Segment, Any]]:
        return iter(self.entries)

    def lookup(self, seg: Segment) -> Any:
        name = _nodes.seg_text(seg)
        for key, link in self.entries:
            if key == name:
                return link
        return MISSING

    def as_dict(self) -> dict[str, CID]:
        """The entries as a dict (the first entry of each name)."""
        out: dict[str, CID] = {}
        for key, link in self.entries:
            out.setdefault(key, link)
        return out


def _entries(node: dict[str, Any]) -> list[tuple[str, CID]]:
    return [(link.get("Name", ""), link["Hash"]) for link in node["Links"]]


def _unixfs_data(node: dict[str, Any]) -> UnixFSData | None:
    data = node.get("Data")
    if data is None:
        return None
    try:
        return UnixFSData.decode(data)
    except (UnixFSError, IPLDError):
        return None


def reify(node: Any, adl: str, loader: Loader, depth: int) -> Gen:
    """Interpret ``node`` with ``adl``; a generator returning the new node."""
    if not is_pbnode(node):
        return node
    md = _unixfs_data(node)
    if md is None:
        return UnixFSMap(_entries(node), directory=False)
    if md.type in (DataType.FILE, DataType.RAW):
        file = UnixFSFile(node)
        if adl == "unixfs-preload":
            try:
                yield from read_all(file, loader, depth)
            except MissingBlock as exc:
                raise TraversalError(f"failed to reify node as {adl!r}: {exc}") from exc
        return file
    if md.type == DataType.DIRECTORY:
        return UnixFSMap(_entries(node), directory=True)
    if md.type == DataType.HAMT_SHARD:
        raise UnsupportedADL("HAMT-sharded UnixFS directories are not supported")
    return UnixFSMap(_entries(node), directory=False)


# -- readers (go-unixfsnode's file readers, as generators) --------------------


class _Reader:
    """A seekable reader whose operations are generators that may load."""

    def read(self, n: int) -> Gen:  # returns b"" at the end
        raise NotImplementedError

    def seek(self, offset: int) -> Gen:
        raise NotImplementedError

    def seek_end(self) -> Gen:  # returns the length
        raise NotImplementedError


class _BytesReader(_Reader):
    __slots__ = ("data", "offset")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offset = 0

    def read(self, n: int) -> Gen:
        if False:  # pragma: no cover - makes this a generator
            yield
        if self.offset >= len(self.data):
            return b""
        chunk = self.data[self.offset : self.offset + n]
        self.offset += len(chunk)
        return chunk

    def seek(self, offset: int) -> Gen:
        if False:  # pragma: no cover
            yield
        self.offset = offset

    def seek_end(self) -> Gen:
        if False:  # pragma: no cover
            yield
        self.offset = len(self.data)
        return self.offset


def _new_reader(node: Any, loader: Loader, depth: int) -> _Reader:
    """go-unixfsnode's ``NewUnixFSFile(node).AsLargeBytes()``."""
    if _nodes.kind_of(node) == BYTES and not isinstance(node, ADLNode):
        return _BytesReader(bytes(node))
    if not isinstance(node, dict) or type(node.get("Links")) is not list:
        raise TraversalError(
            f"UnixFS file child is not a DAG-PB node or bytes ({_nodes.kind_of(node)})"
        )
    if not node["Links"]:
        data = node.get("Data")
        if type(data) is not bytes:
            raise TraversalError("UnixFS file node has neither links nor Data")
        try:
            md = UnixFSData.decode(data)
        except (UnixFSError, IPLDError) as exc:
            raise TraversalError(f"UnixFS file node has bad Data: {exc}") from None
        return _BytesReader(md.data or b"")
    return _ShardReader(node, loader, depth)


class _DeferredReader(_Reader):
    """A child not loaded yet: loads on its first read or seek."""

    __slots__ = ("cid", "loader", "depth", "inner")

    def __init__(self, cid: CID, loader: Loader, depth: int) -> None:
        self.cid = cid
        self.loader = loader
        self.depth = depth
        self.inner: _Reader | None = None

    def _resolve(self) -> Gen:
        if self.inner is None:
            node = yield from self.loader.load_adl(self.cid, self.depth)
            self.inner = _new_reader(node, self.loader, self.depth)
        return self.inner

    def read(self, n: int) -> Gen:
        inner = yield from self._resolve()
        return (yield from inner.read(n))

    def seek(self, offset: int) -> Gen:
        inner = yield from self._resolve()
        yield from inner.seek(offset)

    def seek_end(self) -> Gen:
        inner = yield from self._resolve()
        return (yield from inner.seek_end())


class _MultiReader(_Reader):
    __slots__ = ("readers",)

    def __init__(self, readers: list[_Reader]) -> None:
        self.readers = readers

    def read(self, n: int) -> Gen:
        while self.readers:
            chunk = yield from self.readers[0].read(n)
            if chunk:
                return chunk
            self.readers.pop(0)
        return b""


class _ShardReader(_Reader):
    """A file node with links: its children are read in order."""

    __slots__ = ("node", "loader", "depth", "offset", "rdr", "_md", "_unpacked")

    def __init__(self, node: dict[str, Any], loader: Loader, depth: int) -> None:
        if depth > ADL_MAX_DEPTH:
            raise BudgetExceeded("adl-depth", ADL_MAX_DEPTH)
        self.node = node
        self.loader = loader
        self.depth = depth
        self.offset = 0
        self.rdr: _MultiReader | None = None
        self._md: UnixFSData | None = None
        self._unpacked = False

    def _unpack(self) -> UnixFSData | None:
        if not self._unpacked:
            self._unpacked = True
            self._md = _unixfs_data(self.node)
        return self._md

    def _link_size(self, link: dict[str, Any], position: int) -> Gen:
        cid = link["Hash"]
        if cid.codec == RAW:
            tsize = link.get("Tsize")
            if type(tsize) is not int:
                raise TraversalError(f"raw UnixFS child {cid} has no Tsize")
            return tsize, None
        md = self._unpack()
        if md is not None and position < len(md.blocksizes):
            return md.blocksizes[position], None
        child = _DeferredReader(cid, self.loader, self.depth + 1)
        end = yield from child.seek_end()
        yield from child.seek(0)
        return end, child

    def _length(self) -> Gen:
        md = self._unpack()
        if md is not None and md.filesize is not None:
            return md.filesize
        total = 0
        for position, link in enumerate(self.node["Links"]):
            try:
                size, _ = yield from self._link_size(link, position)
            except BudgetExceeded:
                raise
            except IPLDError:
                return 0  # go-unixfsnode gives up and reports 0
            total += size
        return total

    def _make_reader(self) -> Gen:
        readers: list[_Reader] = []
        at = 0
        for position, link in enumerate(self.node["Links"]):
            size, child = yield from self._link_size(link, position)
            if self.offset >= at + size:
                at += size
                continue
            if child is None:
                child = _DeferredReader(link["Hash"], self.loader, self.depth + 1)
            if at < self.offset:
                yield from child.seek(self.offset - at)
            at += size
            readers.append(child)
        if not readers:
            return None
        return _MultiReader(readers)

    def read(self, n: int) -> Gen:
        if self.rdr is None:
            self.rdr = yield from self._make_reader()
            if self.rdr is None:
                return b""
        chunk = yield from self.rdr.read(n)
        self.offset += len(chunk)
        return chunk

    def seek(self, offset: int) -> Gen:
        if False:  # pragma: no cover
            yield
        self.rdr = None
        self.offset = offset

    def seek_end(self) -> Gen:
        self.rdr = None
        self.offset = yield from self._length()
        return self.offset


def read_all(file: UnixFSFile, loader: Loader, depth: int) -> Gen:
    """Read a whole file from a fresh reader (returns the bytes)."""
    reader = _new_reader(file.substrate, loader, depth)
    out = bytearray()
    while True:
        chunk = yield from reader.read(_READ_CHUNK)
        if not chunk:
            return bytes(out)
        out += chunk


def _read_section(reader: _Reader, start: int, stop: int) -> Gen:
    yield from reader.seek(start)
    out = bytearray()
    want = stop - start
    while len(out) < want:
        chunk = yield from reader.read(want - len(out))
        if not chunk:
            break
        out += chunk
    return bytes(out)


def match_file(sel: Selector, file: UnixFSFile, loader: Loader, depth: int, read: bool) -> Gen:
    """``sel.match(file)`` for a lazy file node, loading what go-ipld-prime's
    matcher (and, with ``read``, go-graphsync's visitor) would load. Returns
    the matched node (bytes when read) or :data:`NOMATCH`."""
    t = type(sel)
    if t is Matcher:
        if sel.subset is None:
            if not read:
                return file
            try:
                return (yield from read_all(file, loader, depth))
            except MissingBlock:
                return file  # Go logs the failed read and carries on
        reader = _new_reader(file.substrate, loader, depth)
        size = yield from reader.seek_end()
        yield from reader.seek(0)
        bounds = sel.slice_bounds(size)
        if bounds is None:
            return NOMATCH
        if not read:
            return UnixFSSlice(file, bounds[0], bounds[1])
        try:
            return (yield from _read_section(reader, bounds[0], bounds[1]))
        except MissingBlock:
            return UnixFSSlice(file, bounds[0], bounds[1])
    if t is ExploreUnion:
        for member in sel.members:
            got = yield from match_file(member, file, loader, depth, read)
            if got is not NOMATCH:
                return got
        return NOMATCH
    if t is _Recursion:
        return (yield from match_file(sel.current, file, loader, depth, read))
    if t is ExploreRecursive:
        return (yield from match_file(sel._start, file, loader, depth, read))
    return NOMATCH
