"""IPLD selectors and selector traversal (go-ipld-prime semantics).

* :mod:`.ast` -- the selector clauses, :func:`parse_selector` (from a value
  decoded from DAG-CBOR or DAG-JSON), :func:`selector_to_node` and the
  Filecoin "all" selector.
* :mod:`.traversal` -- :func:`walk`, :func:`blocks` and the incremental
  :class:`Traverser`, visiting nodes and loading blocks in go-ipld-prime's
  order.
* :mod:`.unixfs` -- the ``unixfs`` / ``unixfs-preload`` ADLs of
  ``ExploreInterpretAs`` (imported on first use).
"""

from __future__ import annotations

from datatransfer.ipld.selector._nodes import ABSENT, PBMap
from datatransfer.ipld.selector.ast import (
    ALL_SELECTOR_NODE,
    MAX_SELECTOR_DEPTH,
    NOMATCH,
    SUPPORTED_ADLS,
    ExploreAll,
    ExploreFields,
    ExploreIndex,
    ExploreInterpretAs,
    ExploreRange,
    ExploreRecursive,
    ExploreRecursiveEdge,
    ExploreUnion,
    LinkCondition,
    Matcher,
    Selector,
    all_selector,
    parse_selector,
    selector_to_node,
)
from datatransfer.ipld.selector.errors import (
    BudgetExceeded,
    SelectorError,
    TraversalError,
    UnsupportedADL,
    UnsupportedSelector,
)
from datatransfer.ipld.selector.traversal import (
    DEFAULT_MAX_BLOCKS,
    DEFAULT_MAX_DEPTH,
    BlockRequest,
    SkipBlock,
    Traverser,
    Visit,
    blocks,
    walk,
)

__all__ = [
    "ABSENT",
    "ALL_SELECTOR_NODE",
    "DEFAULT_MAX_BLOCKS",
    "DEFAULT_MAX_DEPTH",
    "MAX_SELECTOR_DEPTH",
    "NOMATCH",
    "SUPPORTED_ADLS",
    "BlockRequest",
    "BudgetExceeded",
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
    "PBMap",
    "Selector",
    "SelectorError",
    "SkipBlock",
    "TraversalError",
    "Traverser",
    "UnsupportedADL",
    "UnsupportedSelector",
    "Visit",
    "all_selector",
    "blocks",
    "parse_selector",
    "selector_to_node",
    "walk",
]
