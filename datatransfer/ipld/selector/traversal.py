"""Selector traversal over blocks, in go-ipld-prime's exact order.

The walk is depth-first and pre-order: a node is visited, then its children
are explored in order (map entries in the block's order, list elements by
index; the order an ``ExploreFields`` lists its fields when it names them).
A DAG-PB node decodes as ``{"Links": [...], "Data": ...}``, so its links come
before its data. A child that is a link and that the selector explores is
loaded (block bytes verified against the CID, decoded by its codec) and the
loaded node is visited at the link's path; nothing is visited for the link
itself. A link reached twice is loaded twice (go-ipld-prime's default, which
graphsync relies on), unless ``link_visit_once`` is set.

Three ways to drive a traversal:

* :func:`walk` -- ``walk(root, selector, loader)`` yields :class:`Visit`
  events; ``loader(cid) -> bytes`` is called for each block as it is needed
  (raise :class:`SkipBlock` to skip a missing block as go-graphsync does with
  ``traversal.SkipMe``; any other exception ends the walk).
* :func:`blocks` -- the same, yielding each loaded ``(cid, data)`` in load
  order (a graphsync responder sends these).
* :class:`Traverser` -- the incremental form: :meth:`Traverser.next` returns
  the next :class:`Visit`, or a :class:`BlockRequest` which the caller answers
  with :meth:`Traverser.provide` (bytes) or :meth:`Traverser.skip` before
  calling ``next`` again, or ``None`` when the traversal is complete. A
  graphsync requester answers each request with the next block received from
  the network, so a block nobody asked for is caught at once.

``skip_first_blocks=n`` (graphsync ``do-not-send-first-blocks``): the
traversal still loads and walks the first ``n`` blocks, but their
:class:`BlockRequest` has ``send=False``; :func:`blocks` does not yield them.
A restarting requester answers those requests from its own store.

Budgets: ``max_blocks`` (blocks loaded, including the root and blocks loaded
by a UnixFS read), ``max_depth`` (links followed from the root to a block),
``max_nodes`` (nodes visited, unlimited by default) and
``max_work_without_block`` (work done since the last block was loaded);
going past one raises :class:`BudgetExceeded`. The walk keeps its own stack,
so deep DAGs do not hit Python's recursion limit.

Work. Nodes alone do not measure what a traversal costs: one node's visit
under a union of recursions evaluates every clause of the selector's
current state. :attr:`Traverser.work` counts clause evaluations (each
node's selector's :attr:`~datatransfer.ipld.selector.ast.Selector.cost`
when it is visited, and the parent selector's for each child explored), so
a budget of work bounds CPU whatever the selector. Someone serving strangers
sets ``max_work_without_block`` (a selector that walks and walks without
ever reaching a block is either broken or an attack) and ``step_work``:
after that much work without an event :meth:`Traverser.next` returns
:data:`STEP`, so an event loop can let others run before calling it again.
``idle_work`` counts the work done past ``free_work_per_block`` since each
block load, for a per-peer account of what the peer's selectors cost
beyond moving data.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import Any

from datatransfer.ipld import codecs
from datatransfer.ipld.cid import CID, DAG_PB
from datatransfer.ipld.selector import _nodes
from datatransfer.ipld.selector._nodes import MISSING, ADLNode, PBMap, Segment
from datatransfer.ipld.selector.ast import NOMATCH, ExploreInterpretAs, Selector, parse_selector
from datatransfer.ipld.selector.errors import BudgetExceeded

__all__ = [
    "DEFAULT_FREE_WORK_PER_BLOCK",
    "DEFAULT_MAX_BLOCKS",
    "DEFAULT_MAX_DEPTH",
    "STEP",
    "BlockRequest",
    "SkipBlock",
    "Traverser",
    "Visit",
    "blocks",
    "walk",
]

#: Default limit on blocks loaded by one traversal (a 64 GiB file in 256 KiB
#: chunks is about 263k blocks).
DEFAULT_MAX_BLOCKS = 1 << 22
#: Default limit on links followed from the root to any block.
DEFAULT_MAX_DEPTH = 1024

#: Work a traversal may do after each block load before it counts as idle
#: (see :attr:`Traverser.idle_work`): a UnixFS node with 174 links is about
#: a thousand clause evaluations.
DEFAULT_FREE_WORK_PER_BLOCK = 4096


class _Step:
    __slots__ = ()

    def __repr__(self) -> str:
        return "STEP"


#: What :meth:`Traverser.next` returns after ``step_work`` work without an
#: event: nothing happened yet, call again (after letting others run).
STEP: Any = _Step()

Path = tuple[Segment, ...]
Loader = Callable[[CID], bytes]


class SkipBlock(Exception):  # noqa: N818 - named after go-ipld-prime's SkipMe
    """Raised by a loader for a block it does not have: the traversal skips
    that link and carries on (go-ipld-prime's ``SkipMe``)."""


@dataclass(frozen=True, slots=True)
class Visit:
    """One node reached by the traversal.

    ``path`` is the tuple of segments from the root (``str`` map keys, ``int``
    list indexes; :attr:`path_text` joins them with ``/``). ``node`` is the
    node, or for a match the matched value (a subset matcher's slice; a
    UnixFS file's bytes). ``matched`` says whether the selector matched here.
    ``block`` is the CID of the block the node came from (the root for the
    root block) and ``block_path`` the path of that block's link.
    """

    path: Path
    node: Any
    matched: bool
    block: CID
    block_path: Path

    @property
    def path_text(self) -> str:
        return _nodes.path_text(self.path)

    @property
    def kind(self) -> str:
        return _nodes.kind_of(self.node)


@dataclass(frozen=True, slots=True)
class BlockRequest:
    """The traversal needs the block ``cid``.

    ``index`` counts loads from 0 (the root is 0); ``send`` is False for the
    first ``skip_first_blocks`` loads; ``first`` is False when the same CID was
    already requested earlier in this traversal; ``adl`` is True for a load
    made by a UnixFS read rather than by following a link; ``path`` is where
    the link is (for an ADL load: the path of the file node); ``depth`` the
    number of links from the root.
    """

    cid: CID
    index: int
    path: Path
    depth: int
    send: bool
    first: bool
    adl: bool = False


_NOTHING: Any = object()
_SKIP: Any = object()
_SKIPPED: Any = object()


def _select(node: Any, interests: Any) -> Iterator[tuple[Segment, Any]]:
    lookup = _nodes.lookup
    for seg in interests:
        value = lookup(node, seg)
        if value is not MISSING:
            yield seg, value


class Traverser:
    """An incremental selector traversal from ``root``; see the module docs.

    ``selector`` is a parsed :class:`Selector` or its data-model form.
    ``verify``: check each provided block against its CID (turn off only for
    blocks from a store that verified them). ``visits``: produce
    :class:`Visit` events (off for a blocks-only walk). ``read_matched_bytes``:
    read a matched UnixFS file (loading its blocks) and report its bytes, as
    go-graphsync's visitors do; off, the matched node stays a lazy
    :class:`~datatransfer.ipld.selector.unixfs.UnixFSFile` and nothing is
    loaded for it.
    """

    def __init__(
        self,
        root: CID,
        selector: Selector | Any,
        *,
        max_blocks: int | None = DEFAULT_MAX_BLOCKS,
        max_depth: int | None = DEFAULT_MAX_DEPTH,
        max_nodes: int | None = None,
        max_work_without_block: int | None = None,
        step_work: int | None = None,
        free_work_per_block: int = DEFAULT_FREE_WORK_PER_BLOCK,
        skip_first_blocks: int = 0,
        verify: bool = True,
        visits: bool = True,
        read_matched_bytes: bool = True,
        link_visit_once: bool = False,
    ) -> None:
        if not isinstance(root, CID):
            raise TypeError(f"root must be a CID, not {type(root).__name__}")
        if not isinstance(selector, Selector):
            selector = parse_selector(selector)
        if skip_first_blocks < 0:
            raise ValueError("skip_first_blocks must not be negative")
        self.root = root
        self.selector = selector
        self.max_blocks = max_blocks
        self.max_depth = max_depth
        self.max_nodes = max_nodes
        self.max_work_without_block = max_work_without_block
        self.step_work = step_work
        self.free_work_per_block = free_work_per_block
        self.skip_first_blocks = skip_first_blocks
        self.verify = verify
        self.visits = visits
        self.read_matched_bytes = read_matched_bytes
        self.link_visit_once = link_visit_once
        #: Blocks requested so far (including skipped ones).
        self.loads = 0
        #: Nodes visited so far.
        self.nodes = 0
        #: Clause evaluations so far (see the module docs).
        self.work = 0
        #: Work done past ``free_work_per_block`` since each block load.
        self.idle_work = 0
        self._work_at_block = 0
        self._work_at_event = 0
        #: True when the root block itself was skipped (not available).
        self.root_missing = False
        self._requested: set[CID] = set()
        self._visited_links: set[CID] = set()
        self._gen = self._run()
        self._pending: BlockRequest | None = None
        self._answer: Any = _NOTHING
        self._finished = False
        self._error: BaseException | None = None
        self._adl_path: Path = ()
        self._adl_depth = 0

    # -- driving ---------------------------------------------------------------

    @property
    def pending(self) -> BlockRequest | None:
        """The block request waiting for an answer, if any."""
        return self._pending

    @property
    def done(self) -> bool:
        return self._finished

    def next(self) -> Visit | BlockRequest | None:
        """Advance to the next event; ``None`` once the traversal is complete.

        Raises what stopped the traversal (again on every later call): a
        :class:`BudgetExceeded`, a codec error for an undecodable block, a
        :class:`~datatransfer.ipld.selector.errors.TraversalError`...
        """
        if self._finished:
            if self._error is not None:
                raise self._error
            return None
        send = None
        if self._pending is not None:
            if self._answer is _NOTHING:
                raise RuntimeError(
                    f"block {self._pending.cid} was requested: call provide() or skip() first"
                )
            send = self._answer
            self._answer = _NOTHING
            self._pending = None
        try:
            event = self._gen.send(send)
        except StopIteration:
            self._finished = True
            return None
        except BaseException as exc:
            self._finished = True
            self._error = exc
            raise
        self._work_at_event = self.work
        if type(event) is BlockRequest:
            self._pending = event
        return event

    def _charge(self, cost: int, path: Path) -> Any:
        """Count ``cost`` work; returns :data:`STEP` when a step is due."""
        before = self.work - self._work_at_block
        self.work += cost
        since = before + cost
        free = self.free_work_per_block
        if since > free:
            self.idle_work += since - max(before, free)
        limit = self.max_work_without_block
        if limit is not None and since > limit:
            raise BudgetExceeded("work-without-block", limit, path)
        step = self.step_work
        if step is not None and self.work - self._work_at_event >= step:
            self._work_at_event = self.work
            return STEP
        return None

    def provide(self, data: bytes | bytearray | memoryview) -> None:
        """Answer the pending :class:`BlockRequest` with the block's bytes.

        With ``verify`` (the default) bytes that do not hash to the CID raise
        :class:`~datatransfer.ipld.errors.HashMismatch` and the request stays
        pending.
        """
        request = self._pending
        if request is None or self._answer is not _NOTHING:
            raise RuntimeError("no block request is waiting for an answer")
        if self.verify:
            request.cid.verify(data)
        self._answer = data

    def skip(self) -> None:
        """Answer the pending request with "not available": the link is
        skipped (a missing root ends the traversal with nothing visited)."""
        if self._pending is None or self._answer is not _NOTHING:
            raise RuntimeError("no block request is waiting for an answer")
        self._answer = _SKIP

    def close(self) -> None:
        """Abandon the traversal."""
        self._gen.close()
        self._finished = True
        self._pending = None

    # -- loading ---------------------------------------------------------------

    def _load(self, cid: CID, path: Path, depth: int, adl: bool) -> Generator[Any, Any, Any]:
        if self.max_depth is not None and depth > self.max_depth:
            raise BudgetExceeded("depth", self.max_depth, path)
        index = self.loads
        if self.max_blocks is not None and index >= self.max_blocks:
            raise BudgetExceeded("blocks", self.max_blocks, path)
        self.loads = index + 1
        self._work_at_block = self.work
        first = cid not in self._requested
        if first:
            self._requested.add(cid)
        answer = yield BlockRequest(
            cid, index, path, depth, index >= self.skip_first_blocks, first, adl
        )
        if answer is _SKIP:
            return _SKIPPED
        node = codecs.decode_block(cid, answer)
        if cid.codec == DAG_PB:
            node = _nodes.pb_view(node)
        return node

    def load_adl(self, cid: CID, depth: int) -> Generator[Any, Any, Any]:
        """Block loads of a UnixFS read (the ADL's loader)."""
        from datatransfer.ipld.selector.unixfs import MissingBlock

        node = yield from self._load(cid, self._adl_path, self._adl_depth + depth, True)
        if node is _SKIPPED:
            raise MissingBlock(cid)
        return node

    # -- the walk --------------------------------------------------------------

    def _run(self) -> Generator[Any, Any, None]:
        root = yield from self._load(self.root, (), 0, False)
        if root is _SKIPPED:
            self.root_missing = True
            return
        max_nodes = self.max_nodes
        emit = self.visits
        link_once = self.link_visit_once
        children = _nodes.children
        charge = self._charge
        # Each frame: [node, selector, path, depth, block, block_path, iterator]
        stack: list[list[Any]] = []
        pending: tuple[Any, ...] | None = (root, self.selector, (), 0, self.root, ())
        while True:
            if pending is not None:
                node, sel, path, depth, block, block_path = pending
                pending = None
                self.nodes += 1
                if max_nodes is not None and self.nodes > max_nodes:
                    raise BudgetExceeded("nodes", max_nodes, path)
                if charge(sel.cost, path) is not None:
                    yield STEP
                if type(sel) is ExploreInterpretAs:
                    node, sel = yield from self._reify(node, sel, path, depth)
                if isinstance(node, ADLNode) and node.kind == _nodes.BYTES:
                    # Matching (and reading) a lazy file may load blocks, so
                    # it happens even when no visit events are wanted.
                    matched = yield from self._match_lazy(sel, node, path, depth)
                elif emit:
                    matched = sel.match(node)
                if emit:
                    if matched is NOMATCH:
                        yield Visit(path, node, False, block, block_path)
                    else:
                        yield Visit(path, matched, True, block, block_path)
                t = type(node)
                if (
                    t is dict
                    or t is list
                    or t is PBMap
                    or (isinstance(node, ADLNode) and node.kind == _nodes.MAP)
                ):
                    interests = sel.interests(node)
                    if interests is None:
                        it = children(node)
                    else:
                        it = _select(node, interests)
                    stack.append([node, sel, path, depth, block, block_path, it])
            if not stack:
                return
            frame = stack[-1]
            parent, psel = frame[0], frame[1]
            for seg, value in frame[6]:
                if charge(psel.cost, frame[2]) is not None:
                    yield STEP
                nxt = psel.explore(parent, seg)
                if nxt is None:
                    continue
                cpath = frame[2] + (seg,)
                if type(value) is CID:
                    if link_once:
                        if value in self._visited_links:
                            continue
                        self._visited_links.add(value)
                    cdepth = frame[3] + 1
                    child = yield from self._load(value, cpath, cdepth, False)
                    if child is _SKIPPED:
                        continue
                    pending = (child, nxt, cpath, cdepth, value, cpath)
                else:
                    pending = (value, nxt, cpath, frame[3], frame[4], frame[5])
                break
            else:
                stack.pop()

    def _reify(self, node: Any, sel: ExploreInterpretAs, path: Path, depth: int):
        from datatransfer.ipld.selector import unixfs

        self._adl_path, self._adl_depth = path, depth
        new = yield from unixfs.reify(node, sel.adl, self, 0)
        return new, sel.next

    def _match_lazy(self, sel: Selector, node: Any, path: Path, depth: int):
        from datatransfer.ipld.selector import unixfs

        if not isinstance(node, unixfs.UnixFSFile):
            return sel.match(node)
        self._adl_path, self._adl_depth = path, depth
        return (yield from unixfs.match_file(sel, node, self, 0, self.read_matched_bytes))


# -- simple drivers -----------------------------------------------------------


def _answer(traverser: Traverser, request: BlockRequest, loader: Loader) -> None:
    try:
        data = loader(request.cid)
    except SkipBlock:
        traverser.skip()
        return
    traverser.provide(data)


def walk(
    root: CID,
    selector: Selector | Any,
    loader: Loader,
    *,
    max_blocks: int | None = DEFAULT_MAX_BLOCKS,
    max_depth: int | None = DEFAULT_MAX_DEPTH,
    **options: Any,
) -> Iterator[Visit]:
    """Every :class:`Visit` of a traversal, loading blocks with ``loader``.

    ``options`` are :class:`Traverser`'s (``max_nodes``, ``verify``,
    ``read_matched_bytes``, ``link_visit_once``, ``skip_first_blocks``).
    """
    traverser = Traverser(root, selector, max_blocks=max_blocks, max_depth=max_depth, **options)
    while True:
        event = traverser.next()
        if event is None:
            return
        if type(event) is BlockRequest:
            _answer(traverser, event, loader)
        elif event is not STEP:
            yield event


def blocks(
    root: CID,
    selector: Selector | Any,
    loader: Loader,
    *,
    max_blocks: int | None = DEFAULT_MAX_BLOCKS,
    max_depth: int | None = DEFAULT_MAX_DEPTH,
    skip_first_blocks: int = 0,
    **options: Any,
) -> Iterator[tuple[CID, bytes]]:
    """Every block the traversal loads, ``(cid, data)`` in load order, once
    per load (a block loaded twice is yielded twice). With
    ``skip_first_blocks=n`` the first ``n`` loads are walked but not yielded.
    A block the loader skips (:class:`SkipBlock`) is not yielded.
    """
    options.setdefault("visits", False)
    traverser = Traverser(
        root,
        selector,
        max_blocks=max_blocks,
        max_depth=max_depth,
        skip_first_blocks=skip_first_blocks,
        **options,
    )
    while True:
        event = traverser.next()
        if event is None:
            return
        if type(event) is BlockRequest:
            try:
                data = loader(event.cid)
            except SkipBlock:
                traverser.skip()
                continue
            traverser.provide(data)
            if event.send:
                yield event.cid, bytes(data)
