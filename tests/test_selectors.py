"""Selectors and traversal: the IPLD selector fixtures, strict parsing,
go-ipld-prime's visit and block-load order across blocks (DAG-CBOR and UnixFS
DAGs), budgets, the incremental traverser, and property tests."""

from __future__ import annotations

import random
import re
import struct
from pathlib import Path
from typing import Any

import pytest
from _fixtures import IPLD, fixture_files
from hypothesis import given
from hypothesis import strategies as st

from datatransfer.ipld import dagcbor, dagjson, dagpb
from datatransfer.ipld.cid import CID, DAG_CBOR, DAG_JSON, DAG_PB, RAW
from datatransfer.ipld.errors import HashMismatch, IPLDError
from datatransfer.ipld.selector import (
    ABSENT,
    ALL_SELECTOR_NODE,
    DEFAULT_MAX_BLOCKS,
    DEFAULT_MAX_DEPTH,
    BlockRequest,
    BudgetExceeded,
    ExploreAll,
    ExploreFields,
    ExploreIndex,
    ExploreRange,
    ExploreRecursive,
    ExploreRecursiveEdge,
    ExploreUnion,
    Matcher,
    PBMap,
    SelectorError,
    SkipBlock,
    TraversalError,
    Traverser,
    UnsupportedADL,
    UnsupportedSelector,
    Visit,
    all_selector,
    blocks,
    parse_selector,
    selector_to_node,
    walk,
)
from datatransfer.ipld.selector.unixfs import UnixFSFile, UnixFSMap
from datatransfer.ipld.unixfs import cat, import_bytes
from datatransfer.ipld.unixfs.pb import DataType, UnixFSData

# Parametrisation happens at collection time, before fixtures exist;
# test_fixture_folder checks this is the folder conftest's fixtures_dir gives.
FIXTURES = IPLD
SELECTOR_FIXTURES = FIXTURES / "selectors"

_TESTMARK = re.compile(r"^\[testmark\]:# \(([^)]+)\)\n```[^\n]*\n(.*?)^```", re.S | re.M)


def _testmark(path: Path) -> dict[str, str]:
    """The labelled code blocks of a testmark markdown file: label -> body."""
    return {m.group(1): m.group(2) for m in _TESTMARK.finditer(path.read_text())}


def _fixture_cases() -> list[tuple[str, str]]:
    cases = []
    for name in ("selector-fixtures-1.md", "selector-fixtures-adl.md"):
        (path,) = fixture_files(f"selectors/{name}")
        labels = _testmark(path)
        for fixture in sorted({label.split("/", 1)[0] for label in labels}):
            cases.append((name, fixture))
    return cases


FIXTURE_CASES = _fixture_cases()

# -- helpers -----------------------------------------------------------------


def put_cbor(store: dict[CID, bytes], value: Any) -> CID:
    data = dagcbor.encode(value)
    cid = CID.of(data, DAG_CBOR)
    store[cid] = data
    return cid


def loads(root: CID, selector: Any, store: dict[CID, bytes], **kw: Any) -> list[CID]:
    return [cid for cid, _ in blocks(root, selector, store.__getitem__, **kw)]


def visits(root: CID, selector: Any, store: dict[CID, bytes], **kw: Any) -> list[Visit]:
    return list(walk(root, selector, store.__getitem__, **kw))


def paths(vs: list[Visit], matched_only: bool = False) -> list[str]:
    return [v.path_text for v in vs if v.matched or not matched_only]


def naive_all_order(root: CID, store: dict[CID, bytes]) -> list[CID]:
    """The all selector's block order, computed independently: a plain
    recursive depth-first walk of the decoded data, links in the order the
    block's data holds them (DAG-PB: Links before Data)."""
    out: list[CID] = []

    def scan(value: Any) -> None:
        # Links are followed where they are children of a map or list (a
        # block that is just a link is visited, not followed).
        if isinstance(value, dict):
            kids = list(value.values())
        elif isinstance(value, list):
            kids = value
        else:
            return
        for kid in kids:
            if isinstance(kid, CID):
                block(kid)
            else:
                scan(kid)

    def block(cid: CID) -> None:
        out.append(cid)
        data = store[cid]
        if cid.codec == DAG_CBOR:
            scan(dagcbor.decode(data))
        elif cid.codec == DAG_PB:
            for link in dagpb.decode(data)["Links"]:
                block(link["Hash"])
        elif cid.codec == DAG_JSON:
            scan(dagjson.decode(data))

    block(root)
    return out


def visit_line(v: Visit) -> dict[str, Any]:
    """A visit in the fixtures' expect-visit form."""
    kind = v.kind
    node = None if kind in ("map", "list") else v.node
    return {"path": v.path_text, "node": {kind: node}, "matched": v.matched}


# -- the IPLD selector fixtures ---------------------------------------------


def test_fixture_folder(fixtures_dir: Path) -> None:
    assert fixtures_dir.resolve() == FIXTURES.resolve()
    names = {fixture for _, fixture in FIXTURE_CASES}
    # Every fixture of both files is exercised (the lists are read from the files).
    assert {
        "single-node",
        "simple-map",
        "explore-fields",
        "explore-fields-nested",
        "explore-index",
        "explore-range",
        "match-subset",
        "match-subset-extremities",
        "hello-recursion",
        "adl-interpreted",
    } <= names


@pytest.mark.parametrize(("filename", "fixture"), FIXTURE_CASES, ids=[f for _, f in FIXTURE_CASES])
def test_selector_fixture(fixtures_dir: Path, filename: str, fixture: str) -> None:
    labels = _testmark(fixtures_dir / "selectors" / filename)
    store: dict[CID, bytes] = {}
    root = None
    for label, body in labels.items():
        name, _, part = label.partition("/")
        if name != fixture or part in ("selector", "expect-visit"):
            continue
        # Blocks are given as (pretty-printed) DAG-JSON; store them canonical.
        data = dagjson.encode(dagjson.decode(body.encode(), strict=False))
        cid = CID.of(data, DAG_JSON)
        store[cid] = data
        if part in ("data", "root"):
            root = cid
        else:
            assert str(cid) == part, "a block's label is its CID"
    assert root is not None
    selector = parse_selector(dagjson.decode(labels[f"{fixture}/selector"].encode(), strict=False))
    expected = [
        dagjson.decode(line.encode(), strict=False)
        for line in labels[f"{fixture}/expect-visit"].splitlines()
        if line.strip()
    ]
    got = [visit_line(v) for v in walk(root, selector, store.__getitem__)]
    assert got == expected


def test_adl_fixture_root_matches_car(fixtures_dir: Path) -> None:
    """The ADL fixture's root, re-encoded, is the root its CAR file names."""
    car = (fixtures_dir / "selectors" / "selector-fixtures-adl.car").read_bytes()
    assert car[:11] == bytes.fromhex("0aa16776657273696f6e02")  # CARv2 pragma
    data_offset = struct.unpack_from("<Q", car, 11 + 16)[0]
    length, pos = car[data_offset], data_offset + 1  # one-byte varint here
    header = dagcbor.decode(car[pos : pos + length])
    labels = _testmark(fixtures_dir / "selectors" / "selector-fixtures-adl.md")
    root = dagjson.encode(dagjson.decode(labels["adl-interpreted/root"].encode(), strict=False))
    assert header["roots"] == [CID.of(root, DAG_JSON)]


def test_adl_fixture_loads_only_what_the_slice_needs(fixtures_dir: Path) -> None:
    labels = _testmark(fixtures_dir / "selectors" / "selector-fixtures-adl.md")
    store: dict[CID, bytes] = {}
    leaves = []
    for label, body in sorted(labels.items()):
        part = label.split("/", 1)[1]
        if part in ("selector", "expect-visit"):
            continue
        data = dagjson.encode(dagjson.decode(body.encode(), strict=False))
        cid = CID.of(data, DAG_JSON)
        store[cid] = data
        if part == "root":
            root = cid
    root_node = dagjson.decode(store[root])
    leaves = [link["Hash"] for link in root_node["Links"]]
    sel = dagjson.decode(labels["adl-interpreted/selector"].encode(), strict=False)
    # Slice [14:42) of four 14-byte leaves: the first leaf is loaded to seek
    # into it (its declared blocksize is larger), the fourth is never reached.
    assert loads(root, sel, store) == [root, leaves[0], leaves[1], leaves[2]]


# -- parsing -------------------------------------------------------------------

M = {".": {}}


def _cid(n: int = 0) -> CID:
    return CID.of(bytes([n]), DAG_CBOR)


MALFORMED: list[tuple[Any, str]] = [
    ("a", "must be a map"),
    ([], "must be a map"),
    ({}, "single-entry"),
    ({".": {}, "a": {">": M}}, "single-entry"),
    ({"x": {}}, "unknown selector kind 'x'"),
    ({".": []}, "Matcher body must be a map"),
    ({".": {"bogus": 1}}, "unknown field"),
    ({".": {"subset": {"[": 1}}}, "missing its ']'"),
    ({".": {"subset": {"[": 5, "]": 2}}}, "greater than to"),
    ({".": {"subset": {"[": 1.0, "]": 2}}}, "must be an integer"),
    ({".": {"subset": {"[": True, "]": 2}}}, "must be an integer"),
    ({"a": {}}, "missing its '>'"),
    ({"a": {">": "x"}}, "must be a map"),
    ({"f": {}}, "missing its 'f>'"),
    ({"f": {"f>": []}}, "fields must be a map"),
    ({"f": {"f>": {"x": {"nope": {}}}}}, "unknown selector kind"),
    ({"i": {">": M}}, "missing its 'i'"),
    ({"i": {"i": -1, ">": M}}, "negative"),
    ({"i": {"i": "1", ">": M}}, "must be an integer"),
    ({"i": {"i": 1 << 63, ">": M}}, "int64"),
    ({"i": {"i": 1}}, "missing its '>'"),
    ({"r": {"^": 3, "$": 3, ">": M}}, "greater than start"),
    ({"r": {"^": 4, "$": 3, ">": M}}, "greater than start"),
    ({"r": {"^": -1, "$": 3, ">": M}}, "negative"),
    ({"r": {"^": 0, ">": M}}, "missing its '$'"),
    ({"|": {}}, "must be a list"),
    ({"|": [M, {"q": {}}]}, "unknown selector kind 'q'"),
    ({"@": {}}, "not inside an ExploreRecursive"),
    ({"a": {">": {"@": {}}}}, "not inside an ExploreRecursive"),
    ({"@": {"x": 1}}, "unknown field"),
    ({"R": {":>": {"a": {">": {"@": {}}}}}}, "missing its 'l'"),
    ({"R": {"l": {"none": {}}}}, "missing its ':>'"),
    ({"R": {"l": {"none": {}}, ":>": {"a": {">": M}}}}, "no ExploreRecursiveEdge"),
    ({"R": {"l": {"depth": -1}, ":>": {"@": {}}}}, "negative"),
    ({"R": {"l": {"depth": "3"}, ":>": {"@": {}}}}, "must be an integer"),
    ({"R": {"l": {"forever": {}}, ":>": {"@": {}}}}, "unknown recursion limit"),
    ({"R": {"l": {}, ":>": {"@": {}}}}, "single-entry"),
    ({"R": {"l": {"none": {}, "depth": 1}, ":>": {"@": {}}}}, "single-entry"),
    ({"R": {"l": {"none": {}}, ":>": {"@": {}}, "!": {"/": "bafy"}}}, "must hold a link"),
    ({"R": {"l": {"none": {}}, ":>": {"@": {}}, "!": {}}}, "single-entry"),
    # The recursion's edge may not escape it: the outer '@' belongs to no R.
    (
        {"|": [{"R": {"l": {"none": {}}, ":>": {"@": {}}}}, {"@": {}}]},
        "not inside an ExploreRecursive",
    ),
    ({"~": {">": M}}, "missing its 'as'"),
    ({"~": {"as": 1, ">": M}}, "must be a string"),
    ({"~": {"as": "unixfs"}}, "missing its '>'"),
]


@pytest.mark.parametrize(("node", "message"), MALFORMED, ids=range(len(MALFORMED)))
def test_malformed_selector(node: Any, message: str) -> None:
    with pytest.raises(SelectorError, match=re.escape(message)):
        parse_selector(node)


@pytest.mark.parametrize(
    "node",
    [
        {"R": {"l": {"none": {}}, ":>": {"@": {}}, "!": {"&": {}}}},
        {"~": {"as": "hamt", ">": M}},
        {".": {"onlyIf": {"/": _cid()}}},
    ],
)
def test_unsupported_selector(node: Any) -> None:
    with pytest.raises(UnsupportedSelector):
        parse_selector(node)
    assert issubclass(UnsupportedSelector, SelectorError)
    assert issubclass(SelectorError, IPLDError)


def test_error_names_the_place() -> None:
    with pytest.raises(SelectorError, match=r"at a/>/f/f>/foo/i"):
        parse_selector({"a": {">": {"f": {"f>": {"foo": {"i": {"i": -2, ">": M}}}}}}})


def test_selector_nesting_limit() -> None:
    node: Any = M
    for _ in range(150):
        node = {"a": {">": node}}
    with pytest.raises(SelectorError, match="nested more than"):
        parse_selector(node)
    assert parse_selector(node, max_depth=200) is not None
    shallow: Any = M
    for _ in range(50):
        shallow = {"a": {">": shallow}}
    parse_selector(shallow)


ROUND_TRIP = [
    ALL_SELECTOR_NODE,
    {".": {}},
    {".": {"subset": {"[": -9, "]": 9223372036854775807}}},
    {".": {"label": "here"}},
    {"f": {"f>": {"z": M, "a": {"i": {"i": 3, ">": M}}, "m": {"r": {"^": 1, "$": 9, ">": M}}}}},
    {"|": [M, {"a": {">": M}}]},
    {"|": []},
    {"R": {"l": {"depth": 5}, ":>": {"|": [M, {"a": {">": {"@": {}}}}]}}},
    {"R": {"l": {"none": {}}, ":>": {"a": {">": {"@": {}}}}, "!": {"/": _cid(7)}}},
    {
        "~": {
            "as": "unixfs",
            ">": {"|": [M, {"R": {"l": {"depth": 1}, ":>": {"a": {">": {"@": {}}}}}}]},
        }
    },
    {"~": {"as": "unixfs-preload", ">": M}},
    {
        "R": {
            "l": {"none": {}},
            ":>": {"f": {"f>": {"y": {"@": {}}, "x": {"R": {"l": {"depth": 2}, ":>": {"@": {}}}}}}},
        }
    },
]


def test_edges_belong_to_the_innermost_recursion() -> None:
    inner = {"R": {"l": {"depth": 2}, ":>": {"f": {"f>": {"x": {"@": {}}}}}}}
    with pytest.raises(SelectorError, match="no ExploreRecursiveEdge"):
        parse_selector({"R": {"l": {"none": {}}, ":>": inner}})


@pytest.mark.parametrize("node", ROUND_TRIP, ids=range(len(ROUND_TRIP)))
def test_selector_round_trip(node: Any) -> None:
    sel = parse_selector(node)
    back = selector_to_node(sel)
    assert back == node
    # Field order is kept (it decides traversal order).
    assert dagjson.encode(back) == dagjson.encode(node)
    # Through both codecs (which put map keys, so ExploreFields names, in
    # their canonical order: the order a peer sees).
    via_cbor = dagcbor.decode(dagcbor.encode(back))
    assert selector_to_node(parse_selector(via_cbor)) == node
    assert parse_selector(via_cbor) == parse_selector(dagcbor.decode(dagcbor.encode(node)))
    assert selector_to_node(parse_selector(dagjson.decode(dagjson.encode(back)))) == node


def test_round_trip_keeps_field_order() -> None:
    node = {"f": {"f>": {"z": M, "a": M}}}
    assert list(selector_to_node(parse_selector(node))["f"]["f>"]) == ["z", "a"]
    assert parse_selector(node) != parse_selector({"f": {"f>": {"a": M, "z": M}}})
    assert parse_selector(node) == parse_selector({"f": {"f>": {"z": M, "a": M}}})


def test_all_selector() -> None:
    sel = all_selector()
    assert sel == ExploreRecursive(ExploreAll(ExploreRecursiveEdge()), None, None)
    assert selector_to_node(sel) == {"R": {"l": {"none": {}}, ":>": {"a": {">": {"@": {}}}}}}
    assert parse_selector(ALL_SELECTOR_NODE) == sel
    # The wire form Filecoin nodes send (DAG-CBOR, canonical key order).
    assert dagcbor.encode(ALL_SELECTOR_NODE).hex() == (
        "a16152a2616ca1646e6f6e65a0623a3ea16161a1613ea16140a0"
    )


def test_built_selectors_equal_parsed() -> None:
    built = ExploreFields({"a": Matcher(), "b": ExploreIndex(1, ExploreRange(0, 2, Matcher()))})
    parsed = parse_selector(selector_to_node(built))
    assert parsed == built
    assert ExploreUnion((Matcher(),)) == parse_selector({"|": [M]})


# -- traversal across dag-cbor blocks -------------------------------------------


@pytest.fixture
def tree() -> tuple[CID, dict[CID, bytes], dict[str, CID]]:
    """A three-level DAG with links in maps and lists, and one block (S)
    reached along two paths."""
    store: dict[CID, bytes] = {}
    c: dict[str, CID] = {}
    c["S"] = put_cbor(store, {"shared": True})
    c["X"] = put_cbor(store, {"leaf": "x", "s": c["S"]})
    c["Y"] = put_cbor(store, [1, 2, c["S"]])
    c["A"] = put_cbor(store, {"x": c["X"], "n": 1})
    for i in range(4):
        c[f"B{i}"] = put_cbor(store, {"i": i})
    c["root"] = put_cbor(
        store,
        {
            "a": c["A"],
            "b": [c["B0"], c["B1"], c["B2"], c["B3"]],
            "c": 5,
            "d": {"deep": [c["Y"]]},
        },
    )
    return c["root"], store, c


def test_all_selector_order(tree) -> None:
    root, store, c = tree
    got = loads(root, all_selector(), store)
    assert got == naive_all_order(root, store)
    # S is reached twice and loaded twice (go-ipld-prime's default).
    assert got == [
        c["root"],
        c["A"],
        c["X"],
        c["S"],
        c["B0"],
        c["B1"],
        c["B2"],
        c["B3"],
        c["Y"],
        c["S"],
    ]
    # With link_visit_once the second S is neither loaded nor visited.
    assert loads(root, all_selector(), store, link_visit_once=True) == got[:-1]


def test_all_selector_visits(tree) -> None:
    root, store, c = tree
    vs = visits(root, all_selector(), store)
    # DAG-CBOR keeps map keys in canonical (length-first) order: "s" before "leaf".
    assert paths(vs)[:8] == ["", "a", "a/n", "a/x", "a/x/s", "a/x/s/shared", "a/x/leaf", "b"]
    assert not any(v.matched for v in vs)
    by_path = {v.path_text: v for v in vs}
    assert by_path["a/x"].node == {"leaf": "x", "s": c["S"]}
    assert by_path["a/x"].block == c["X"] and by_path["a/x"].block_path == ("a", "x")
    assert by_path["a/n"].block == c["A"]
    assert by_path[""].block == root
    assert by_path["d/deep/0/2/shared"].node is True
    assert by_path["b/2"].path == ("b", 2)


def test_explore_fields_across_blocks(tree) -> None:
    root, store, c = tree
    sel = {"f": {"f>": {"a": {"f": {"f>": {"x": {"f": {"f>": {"leaf": M}}}}}}}}}
    assert loads(root, sel, store) == [root, c["A"], c["X"]]
    vs = visits(root, sel, store)
    assert [(v.path_text, v.matched) for v in vs] == [
        ("", False),
        ("a", False),
        ("a/x", False),
        ("a/x/leaf", True),
    ]
    assert vs[-1].node == "x"


def test_matcher_on_a_link_loads_it(tree) -> None:
    root, store, c = tree
    vs = visits(root, {"f": {"f>": {"a": M}}}, store)
    assert vs[-1].matched and vs[-1].node == {"x": c["X"], "n": 1}
    assert loads(root, {"f": {"f>": {"a": M}}}, store) == [root, c["A"]]


def test_explore_index_and_range_across_blocks(tree) -> None:
    root, store, c = tree
    sel = {"f": {"f>": {"b": {"i": {"i": 2, ">": M}}}}}
    assert loads(root, sel, store) == [root, c["B2"]]
    assert paths(visits(root, sel, store), matched_only=True) == ["b/2"]
    sel = {"f": {"f>": {"b": {"r": {"^": 1, "$": 3, ">": M}}}}}
    assert loads(root, sel, store) == [root, c["B1"], c["B2"]]
    # An end far past the list costs nothing.
    sel = {"f": {"f>": {"b": {"r": {"^": 2, "$": 1 << 62, ">": M}}}}}
    assert loads(root, sel, store) == [root, c["B2"], c["B3"]]
    # Index and range on a map select nothing.
    assert loads(root, {"i": {"i": 0, ">": M}}, store) == [root]
    assert loads(root, {"r": {"^": 0, "$": 9, ">": M}}, store) == [root]
    # A numeric field name selects a list element (Go parses it as an index).
    sel = {"f": {"f>": {"b": {"f": {"f>": {"3": M, "x": M}}}}}}
    assert loads(root, sel, store) == [root, c["B3"]]


def test_union_across_blocks(tree) -> None:
    root, store, c = tree
    sel = {"|": [{"f": {"f>": {"b": {"i": {"i": 0, ">": M}}}}}, {"f": {"f>": {"a": M}}}]}
    # Interests are the members' in order: b first, then a.
    assert loads(root, sel, store) == [root, c["B0"], c["A"]]
    # The same field named twice is explored once: go-ipld-prime explores
    # it twice, but a union that repeats itself is how a few KB of selector
    # fan out into millions of visits, so repeats are merged.
    sel = {"|": [{"f": {"f>": {"a": M}}}, {"f": {"f>": {"a": M}}}]}
    assert loads(root, sel, store) == [root, c["A"]]
    sel = {"|": [{"f": {"f>": {"a": M}}}, {"f": {"f>": {"a": {".": {"label": "x"}}}}}]}
    assert loads(root, sel, store) == [root, c["A"]]  # one visit, both members apply
    # Union of an explore-all and a field: one pass in node order, matching both ways.
    sel = {"|": [{"a": {">": M}}, {"f": {"f>": {"a": {"a": {">": M}}}}}]}
    vs = visits(root, sel, store)
    assert paths(vs) == ["", "a", "a/n", "a/x", "b", "c", "d"]
    assert loads(root, sel, store) == [root, c["A"], c["X"]]


def test_depth_limited_recursion_across_blocks() -> None:
    store: dict[CID, bytes] = {}
    chain = [put_cbor(store, {"end": True})]
    for i in range(9):
        chain.append(put_cbor(store, {"n": i, "next": chain[-1]}))
    chain.reverse()  # chain[0] is the head
    head = chain[0]
    for depth in (1, 2, 3, 5):
        sel = {"R": {"l": {"depth": depth}, ":>": {"a": {">": {"@": {}}}}}}
        # Each level is one node, and each node below the head is a block.
        assert loads(head, sel, store) == chain[:depth]
        vs = visits(head, sel, store)
        assert max(len(v.path) for v in vs) == depth - 1
    # Depth 0 behaves as depth 1 (as in Go).
    assert (
        loads(head, {"R": {"l": {"depth": 0}, ":>": {"a": {">": {"@": {}}}}}}, store) == chain[:1]
    )
    # Following only "next": a depth of n reaches n blocks.
    sel = {"R": {"l": {"depth": 4}, ":>": {"f": {"f>": {"next": {"@": {}}}}}}}
    assert loads(head, sel, store) == chain[:4]
    sel = {"R": {"l": {"none": {}}, ":>": {"f": {"f>": {"next": {"@": {}}}}}}}
    assert loads(head, sel, store) == chain


def test_recursion_with_matcher_union() -> None:
    store: dict[CID, bytes] = {}
    leaf = put_cbor(store, "leaf")
    mid = put_cbor(store, [leaf, 7])
    root = put_cbor(store, {"m": mid})
    sel = {"R": {"l": {"none": {}}, ":>": {"|": [M, {"a": {">": {"@": {}}}}]}}}
    vs = visits(root, sel, store)
    assert [(v.path_text, v.matched) for v in vs] == [
        ("", True),
        ("m", True),
        ("m/0", True),
        ("m/1", True),
    ]
    assert vs[2].node == "leaf"


def test_stop_at_link_condition() -> None:
    store: dict[CID, bytes] = {}
    chain = [put_cbor(store, {"end": True})]
    for i in range(6):
        chain.append(put_cbor(store, {"n": i, "next": chain[-1]}))
    chain.reverse()
    sel = {"R": {"l": {"none": {}}, ":>": {"a": {">": {"@": {}}}}, "!": {"/": chain[4]}}}
    assert loads(chain[0], sel, store) == chain[:4]
    # A condition that never matches changes nothing.
    sel["R"]["!"] = {"/": _cid(99)}
    assert loads(chain[0], sel, store) == chain


def test_nested_recursions() -> None:
    store: dict[CID, bytes] = {}
    inner = put_cbor(store, {"x": {"x": {"x": 1}}})
    root = put_cbor(store, {"y": {"y": inner}})
    # The outer recursion walks "y"s; once "x" starts, the inner one walks "x"s (depth 2).
    sel = {
        "R": {
            "l": {"none": {}},
            ":>": {
                "f": {
                    "f>": {
                        "y": {"@": {}},
                        "x": {"R": {"l": {"depth": 2}, ":>": {"f": {"f>": {"x": {"@": {}}}}}}},
                    }
                }
            },
        }
    }
    got = paths(visits(root, sel, store))
    assert got == ["", "y", "y/y", "y/y/x", "y/y/x/x"]


def test_dag_pb_links_before_data() -> None:
    """DAG-PB nodes are walked as go-codec-dagpb's typed nodes: every schema
    field in schema order, Links before Data, a missing optional field
    visited as ABSENT (kind null)."""
    store: dict[CID, bytes] = {}
    leaf = dagpb.encode({"Links": []})
    leaf_cid = CID.of(leaf, DAG_PB)
    store[leaf_cid] = leaf
    raw = b"raw bytes"
    raw_cid = CID.of(raw, RAW)
    store[raw_cid] = raw
    node = dagpb.encode(
        {
            "Links": [{"Hash": leaf_cid, "Name": "l", "Tsize": 4}, {"Hash": raw_cid, "Name": "r"}],
            "Data": b"root data",
        }
    )
    root = CID.of(node, DAG_PB)
    store[root] = node
    vs = visits(root, all_selector(), store)
    assert paths(vs) == [
        "",
        "Links",
        "Links/0",
        "Links/0/Hash",
        "Links/0/Hash/Links",
        "Links/0/Hash/Data",
        "Links/0/Name",
        "Links/0/Tsize",
        "Links/1",
        "Links/1/Hash",
        "Links/1/Name",
        "Links/1/Tsize",
        "Data",
    ]
    by_path = {v.path_text: v for v in vs}
    assert by_path["Links/1/Hash"].node == raw
    assert by_path["Data"].node == b"root data"
    assert by_path["Links/1/Tsize"].node is ABSENT and by_path["Links/1/Tsize"].kind == "null"
    assert by_path["Links/0/Hash/Data"].node is ABSENT
    # The node itself is the codec's plain dict (only the fields present).
    assert by_path["Links/0/Hash"].node == {"Links": []}
    assert isinstance(by_path[""].node, PBMap) and dict(by_path[""].node)["Data"] == b"root data"
    # Looking up an absent field finds ABSENT (as in Go), a non-field nothing.
    sel = {"f": {"f>": {"Links": {"i": {"i": 1, ">": {"f": {"f>": {"Tsize": M, "Nope": M}}}}}}}}
    assert [(v.path_text, v.matched) for v in visits(root, sel, store)] == [
        ("", False),
        ("Links", False),
        ("Links/1", False),
        ("Links/1/Tsize", True),
    ]
    assert loads(root, all_selector(), store) == [root, leaf_cid, raw_cid]


# -- UnixFS DAGs ---------------------------------------------------------------

FILE_DATA = random.Random(20240601).randbytes(1 << 20)


@pytest.fixture(scope="module", params=["classic", "modern"])
def unixfs_file(request) -> tuple[CID, dict[CID, bytes]]:
    """A 1 MiB file in 4 KiB chunks, two levels of parents (16 links each)."""
    root, blks = import_bytes(FILE_DATA, request.param, chunk_size=4096, max_links=16)
    return root, dict(blks)


def _file_tree(root: CID, store: dict[CID, bytes]) -> list[tuple[CID, int, int]]:
    """Every block of a file DAG in depth-first order with the byte range
    [start, end) of the file it covers, from the tree alone."""
    out: list[tuple[CID, int, int]] = []

    def size(cid: CID) -> int:
        if cid.codec == RAW:
            return len(store[cid])
        node = dagpb.decode(store[cid])
        if not node["Links"]:
            return len(UnixFSData.decode(node["Data"]).data or b"")
        return sum(size(link["Hash"]) for link in node["Links"])

    def visit(cid: CID, start: int) -> int:
        entry = [cid, start, start]
        out.append(entry)  # type: ignore[arg-type]
        if cid.codec == RAW:
            end = start + len(store[cid])
        else:
            node = dagpb.decode(store[cid])
            end = start
            if not node["Links"]:
                end += len(UnixFSData.decode(node["Data"]).data or b"")
            for link in node["Links"]:
                end = visit(link["Hash"], end)
        entry[2] = end
        return end

    visit(root, 0)
    assert size(root) == len(FILE_DATA)
    return [tuple(e) for e in out]  # type: ignore[misc]


def test_unixfs_all_selector_order(unixfs_file) -> None:
    root, store = unixfs_file
    got = loads(root, all_selector(), store)
    assert got == naive_all_order(root, store)
    assert len(got) == len(store) == 256 + 16 + 1
    assert got[0] == root
    # Every block is loaded once and after its parent.
    assert len(set(got)) == len(got)
    assert cat(root, _Store(store)) == FILE_DATA


class _Store:
    """A minimal blockstore view of a dict for the UnixFS exporter."""

    def __init__(self, blocks: dict[CID, bytes]) -> None:
        self.blocks = blocks

    def get(self, cid: CID) -> bytes:
        return self.blocks[cid]


def test_unixfs_file_as_bytes(unixfs_file) -> None:
    root, store = unixfs_file
    order = [cid for cid, _, _ in _file_tree(root, store)]
    sel = {"~": {"as": "unixfs", ">": M}}
    vs = visits(root, sel, store)
    assert len(vs) == 1 and vs[0].matched and vs[0].path == ()
    assert vs[0].node == FILE_DATA
    # Reading a matched file loads its blocks depth-first, each once.
    assert loads(root, sel, store) == order
    # Without reading matched bytes the node stays lazy and nothing loads.
    vs = visits(root, sel, store, read_matched_bytes=False)
    assert isinstance(vs[0].node, UnixFSFile) and vs[0].kind == "bytes"
    assert loads(root, sel, store, read_matched_bytes=False) == [root]


def test_unixfs_preload_loads_twice(unixfs_file) -> None:
    root, store = unixfs_file
    order = [cid for cid, _, _ in _file_tree(root, store)]
    sel = {"~": {"as": "unixfs-preload", ">": M}}
    # Preloading reads the file once, the matched-bytes read reads it again
    # from fresh readers (go-unixfsnode keeps no loaded children).
    assert loads(root, sel, store) == order + order[1:]
    assert loads(root, sel, store, read_matched_bytes=False) == order
    assert visits(root, sel, store)[0].node == FILE_DATA


@pytest.mark.parametrize(
    ("start", "stop"),
    [
        (0, 1),
        (0, 4096),
        (4096, 8192),
        (4095, 4097),
        (100_000, 300_000),
        (-5000, -10),
        (1 << 20, 1 << 21),
    ],
)
def test_unixfs_slice_loads_only_needed_blocks(unixfs_file, start: int, stop: int) -> None:
    root, store = unixfs_file
    sel = {"~": {"as": "unixfs", ">": {".": {"subset": {"[": start, "]": stop}}}}}
    size = len(FILE_DATA)
    lo = max(size + start, 0) if start < 0 else start
    hi = size + stop if stop < 0 else min(stop, size)
    vs = visits(root, sel, store)
    if lo >= size:
        assert [v.matched for v in vs] == [False]
        assert loads(root, sel, store) == [root]
        return
    assert vs[0].matched and vs[0].node == FILE_DATA[lo:hi]
    # The blocks whose byte range meets [lo, hi), depth-first; the root's
    # filesize and blocksizes let the reader skip everything else.
    want = [cid for cid, s, e in _file_tree(root, store) if cid == root or (s < hi and e > lo)]
    assert loads(root, sel, store) == want


def _unixfs_dir(store: dict[CID, bytes], entries: list[tuple[str, CID, int]]) -> CID:
    node = {
        "Links": [{"Hash": cid, "Name": name, "Tsize": size} for name, cid, size in entries],
        "Data": UnixFSData(DataType.DIRECTORY).encode(),
    }
    data = dagpb.encode(node)
    cid = CID.of(data, DAG_PB)
    store[cid] = data
    return cid


def test_unixfs_directory_paths() -> None:
    store: dict[CID, bytes] = {}
    a_root, a_blocks = import_bytes(b"A" * 10_000, "classic", chunk_size=4096)
    b_root, b_blocks = import_bytes(b"B" * 10_000, "modern", chunk_size=4096)
    store.update(a_blocks)
    store.update(b_blocks)
    sub = _unixfs_dir(store, [("b.txt", b_root, 10_000)])
    top = _unixfs_dir(store, [("a.txt", a_root, 10_000), ("sub", sub, 10_100)])
    # go-unixfsnode's UnixFSPathSelector("sub/b.txt").
    sel = {
        "~": {
            "as": "unixfs",
            ">": {
                "f": {
                    "f>": {
                        "sub": {
                            "~": {
                                "as": "unixfs",
                                ">": {"f": {"f>": {"b.txt": {"~": {"as": "unixfs", ">": M}}}}},
                            }
                        }
                    }
                }
            },
        }
    }
    vs = visits(top, sel, store)
    assert [(v.path_text, v.matched) for v in vs] == [
        ("", False),
        ("sub", False),
        ("sub/b.txt", True),
    ]
    assert vs[-1].node == b"B" * 10_000
    assert isinstance(vs[0].node, UnixFSMap) and vs[0].node.as_dict() == {
        "a.txt": a_root,
        "sub": sub,
    }
    assert loads(top, sel, store) == [top, sub, *naive_all_order(b_root, store)]
    # Explore-all over the directory: entries by name in block order.
    sel = {"~": {"as": "unixfs", ">": {"a": {">": M}}}}
    vs = visits(top, sel, store, read_matched_bytes=False)
    assert paths(vs) == ["", "a.txt", "sub"]
    assert loads(top, sel, store, read_matched_bytes=False) == [top, a_root, sub]


def test_unixfs_non_pb_node_is_unchanged(tree) -> None:
    root, store, c = tree
    vs = visits(root, {"~": {"as": "unixfs", ">": {"f": {"f>": {"c": M}}}}}, store)
    assert [(v.path_text, v.node) for v in vs][1] == ("c", 5)


def test_unixfs_hamt_is_unsupported() -> None:
    store: dict[CID, bytes] = {}
    data = dagpb.encode({"Links": [], "Data": UnixFSData(DataType.HAMT_SHARD, fanout=256).encode()})
    cid = CID.of(data, DAG_PB)
    store[cid] = data
    with pytest.raises(UnsupportedADL):
        visits(cid, {"~": {"as": "unixfs", ">": M}}, store)


# -- budgets -------------------------------------------------------------------


def test_default_budgets() -> None:
    t = Traverser(_cid(), all_selector())
    assert t.max_blocks == DEFAULT_MAX_BLOCKS and t.max_depth == DEFAULT_MAX_DEPTH
    assert DEFAULT_MAX_BLOCKS > 0 and DEFAULT_MAX_DEPTH > 0


def test_block_budget_on_wide_dag() -> None:
    store: dict[CID, bytes] = {}
    leaves = [put_cbor(store, i) for i in range(100)]
    root = put_cbor(store, leaves)
    assert len(loads(root, all_selector(), store, max_blocks=101)) == 101
    seen = []
    with pytest.raises(BudgetExceeded) as info:
        for cid, _ in blocks(root, all_selector(), store.__getitem__, max_blocks=50):
            seen.append(cid)
    assert info.value.kind == "blocks" and info.value.limit == 50
    assert seen == [root, *leaves[:49]]
    assert info.value.path == (49,)


def test_block_budget_stops_exponential_dag() -> None:
    # Ten links per level to the same next block: 10**8 loads without a budget.
    store: dict[CID, bytes] = {}
    cid = put_cbor(store, "bottom")
    for _ in range(8):
        cid = put_cbor(store, [cid] * 10)
    with pytest.raises(BudgetExceeded, match="blocks"):
        for _ in blocks(cid, all_selector(), store.__getitem__, max_blocks=2000):
            pass


def test_depth_budget_on_deep_dag() -> None:
    store: dict[CID, bytes] = {}
    cid = put_cbor(store, None)
    for _ in range(60):
        cid = put_cbor(store, {"next": cid})
    assert len(loads(cid, all_selector(), store, max_depth=60)) == 61
    with pytest.raises(BudgetExceeded) as info:
        loads(cid, all_selector(), store, max_depth=10)
    assert info.value.kind == "depth" and len(info.value.path) == 11
    # Deep DAGs do not use Python's stack.
    store2: dict[CID, bytes] = {}
    cid = put_cbor(store2, None)
    for _ in range(3000):
        cid = put_cbor(store2, [cid])
    assert len(loads(cid, all_selector(), store2, max_depth=None)) == 3001


def test_node_budget_and_deep_selector() -> None:
    store: dict[CID, bytes] = {}
    value: Any = 1
    for _ in range(40):
        value = {"k": value}
    root = put_cbor(store, value)
    with pytest.raises(BudgetExceeded, match="nodes"):
        visits(root, all_selector(), store, max_nodes=20)
    # A selector nesting 40 explicit fields walks 40 levels in one block.
    sel: Any = M
    for _ in range(40):
        sel = {"f": {"f>": {"k": sel}}}
    vs = visits(root, sel, store)
    assert len(vs) == 41 and vs[-1].matched and vs[-1].node == 1
    with pytest.raises(BudgetExceeded):
        visits(root, sel, store, max_nodes=30)


# -- the incremental traverser -------------------------------------------------


def test_traverser_requests_match_load_order(tree) -> None:
    root, store, c = tree
    t = Traverser(root, all_selector())
    requested = []
    events = 0
    while (event := t.next()) is not None:
        events += 1
        if isinstance(event, BlockRequest):
            assert t.pending is event
            requested.append(event.cid)
            assert event.index == len(requested) - 1
            t.provide(store[event.cid])
    assert t.done and t.next() is None
    assert requested == naive_all_order(root, store)
    assert t.loads == len(requested)


def test_traverser_rejects_wrong_block(tree) -> None:
    root, store, c = tree
    t = Traverser(root, all_selector())
    request = t.next()
    assert isinstance(request, BlockRequest) and request.cid == root
    with pytest.raises(HashMismatch):
        t.provide(store[c["A"]])
    with pytest.raises(RuntimeError):
        t.next()  # still waiting for the right block
    t.provide(store[root])
    assert isinstance(t.next(), Visit)
    with pytest.raises(RuntimeError):
        t.provide(store[root])  # nothing pending


def test_traverser_flags(tree) -> None:
    root, store, c = tree
    t = Traverser(root, all_selector(), skip_first_blocks=3)
    reqs = []
    while (event := t.next()) is not None:
        if isinstance(event, BlockRequest):
            reqs.append(event)
            t.provide(store[event.cid])
    assert [r.send for r in reqs] == [False] * 3 + [True] * (len(reqs) - 3)
    assert [r.first for r in reqs].count(False) == 1  # the second load of S
    assert reqs[-1].cid == c["S"] and not reqs[-1].first
    assert reqs[1].path == ("a",) and reqs[1].depth == 1
    assert reqs[3].path == ("a", "x", "s") and reqs[3].depth == 3
    sent = [cid for cid, _ in blocks(root, all_selector(), store.__getitem__, skip_first_blocks=3)]
    assert sent == [r.cid for r in reqs[3:]]


def test_skip_missing_blocks(tree) -> None:
    root, store, c = tree
    partial = {k: v for k, v in store.items() if k != c["A"]}

    def loader(cid: CID) -> bytes:
        if cid not in partial:
            raise SkipBlock
        return partial[cid]

    vs = list(walk(root, all_selector(), loader))
    assert "a" not in paths(vs) and "b/0" in paths(vs)
    assert [cid for cid, _ in blocks(root, all_selector(), loader)] == [
        root,
        c["B0"],
        c["B1"],
        c["B2"],
        c["B3"],
        c["Y"],
        c["S"],
    ]
    # A missing root: nothing visited.
    t = Traverser(root, all_selector())
    assert isinstance(t.next(), BlockRequest)
    t.skip()
    assert t.next() is None and t.root_missing


def test_loader_errors_propagate(tree) -> None:
    root, store, c = tree

    def loader(cid: CID) -> bytes:
        if cid == c["B2"]:
            raise KeyError(cid)
        return store[cid]

    with pytest.raises(KeyError):
        list(walk(root, all_selector(), loader))


def test_bad_block_bytes() -> None:
    store: dict[CID, bytes] = {}
    bad = b"\xff\xff"
    cid = CID.of(bad, DAG_CBOR)
    store[cid] = bad
    with pytest.raises(IPLDError):
        visits(cid, all_selector(), store)
    root = put_cbor(store, [cid])
    t = Traverser(root, all_selector())
    with pytest.raises(IPLDError):
        while (event := t.next()) is not None:
            if isinstance(event, BlockRequest):
                t.provide(store[event.cid])
    with pytest.raises(IPLDError):
        t.next()  # the error sticks


def test_bare_edge_in_union_is_a_typed_error() -> None:
    store: dict[CID, bytes] = {}
    root = put_cbor(store, {"a": [1, 2]})
    sel = {"R": {"l": {"none": {}}, ":>": {"|": [{"@": {}}, {"a": {">": M}}]}}}
    with pytest.raises(TraversalError):
        visits(root, sel, store)


# -- property tests ------------------------------------------------------------

_KEYS = st.sampled_from(["a", "b", "0", "1", "Links", "x"])


class _LinkTo:
    def __init__(self, n: int) -> None:
        self.n = n


def _values(max_leaves: int = 12) -> st.SearchStrategy[Any]:
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-5, 5),
        st.text(max_size=3),
        st.binary(max_size=3),
        st.integers(0, 50).map(_LinkTo),
        st.integers(0, 50).map(_LinkTo),
    )
    return st.recursive(
        scalars,
        lambda kids: st.one_of(
            st.lists(kids, max_size=4), st.dictionaries(_KEYS, kids, max_size=4)
        ),
        max_leaves=max_leaves,
    )


def _resolve(value: Any, cids: list[CID]) -> Any:
    if isinstance(value, _LinkTo):
        return cids[value.n % len(cids)] if cids else value.n
    if isinstance(value, list):
        return [_resolve(v, cids) for v in value]
    if isinstance(value, dict):
        return {k: _resolve(v, cids) for k, v in value.items()}
    return value


_LINK = st.integers(0, 50).map(_LinkTo)
_ITEM = st.one_of(_values(), _LINK, _LINK)
# Blocks are maps or lists (so links in them are followed), a few scalars.
_VALUES = st.one_of(
    st.lists(_ITEM, max_size=4),
    st.dictionaries(_KEYS, _ITEM, max_size=4),
    _values(),
)


@st.composite
def dags(draw: Any) -> tuple[CID, dict[CID, bytes]]:
    """Random DAG-CBOR blocks, each linking only to earlier ones; the last is the root."""
    store: dict[CID, bytes] = {}
    cids: list[CID] = []
    for _ in range(draw(st.integers(1, 7))):
        cids.append(put_cbor(store, _resolve(draw(_VALUES), cids)))
    return cids[-1], store


_small_int = st.integers(-3, 6)
_match = st.one_of(
    st.just({".": {}}),
    st.builds(lambda a, b: {".": {"subset": {"[": a, "]": b}}}, _small_int, _small_int),
)


def _selector_nodes() -> st.SearchStrategy[Any]:
    leaf = st.one_of(_match, st.just({"@": {}}), st.just(ALL_SELECTOR_NODE))

    def extend(kids: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        limit = st.one_of(st.just({"none": {}}), st.integers(0, 4).map(lambda d: {"depth": d}))
        return st.one_of(
            kids.map(lambda s: {"a": {">": s}}),
            st.dictionaries(_KEYS, kids, max_size=3).map(lambda f: {"f": {"f>": f}}),
            st.builds(lambda i, s: {"i": {"i": i, ">": s}}, _small_int, kids),
            st.builds(
                lambda a, b, s: {"r": {"^": a, "$": b, ">": s}}, _small_int, _small_int, kids
            ),
            st.lists(kids, max_size=3).map(lambda m: {"|": m}),
            st.builds(lambda lim, s: {"R": {"l": lim, ":>": s}}, limit, kids),
            st.builds(
                lambda lim, s: {"R": {"l": lim, ":>": {"a": {">": {"|": [s, {"@": {}}]}}}}},
                limit,
                kids,
            ),
            kids.map(lambda s: {"~": {"as": "unixfs", ">": s}}),
        )

    return st.recursive(leaf, extend, max_leaves=8)


_SELECTORS = st.one_of(
    _selector_nodes(),
    # Half the time inside a recursion that also explores everything, so
    # the selector gets applied deep in the DAG.
    st.builds(
        lambda lim, s: {"R": {"l": lim, ":>": {"|": [s, {"a": {">": {"@": {}}}}]}}},
        st.one_of(st.just({"none": {}}), st.integers(1, 6).map(lambda d: {"depth": d})),
        _selector_nodes(),
    ),
)


@given(dags(), _SELECTORS)
def test_random_selectors_on_random_dags(dag: tuple[CID, dict[CID, bytes]], node: Any) -> None:
    root, store = dag
    try:
        sel = parse_selector(node)
    except SelectorError:
        return
    # Whatever parses serializes back to the same thing.
    assert selector_to_node(sel) == node
    order: list[CID] = []
    try:
        for event in _drive(root, sel, store, order):
            assert isinstance(event, Visit)
            assert isinstance(event.matched, bool)
    except (BudgetExceeded, TraversalError):
        pass
    # Every block after the first was linked from a block loaded before it.
    assert not order or order[0] == root
    for i, cid in enumerate(order[1:], start=1):
        assert any(cid in _links_of(store[p]) for p in order[:i])


def _links_of(data: bytes) -> set[CID]:
    found: set[CID] = set()

    def scan(v: Any) -> None:
        if isinstance(v, CID):
            found.add(v)
        elif isinstance(v, list):
            for x in v:
                scan(x)
        elif isinstance(v, dict):
            for x in v.values():
                scan(x)

    scan(dagcbor.decode(data))
    return found


def _drive(root: CID, sel: Any, store: dict[CID, bytes], order: list[CID]):
    t = Traverser(root, sel, max_blocks=300, max_nodes=5000)
    while (event := t.next()) is not None:
        if isinstance(event, BlockRequest):
            order.append(event.cid)
            t.provide(store[event.cid])
        else:
            yield event


@given(dags())
def test_all_selector_on_random_dags(dag: tuple[CID, dict[CID, bytes]]) -> None:
    root, store = dag
    try:
        got = loads(root, all_selector(), store, max_blocks=200)
    except BudgetExceeded:
        return
    assert got == naive_all_order(root, store)
    # The visits cover every node of every loaded block exactly once per load.
    vs = visits(root, all_selector(), store)
    assert len({(v.path) for v in vs}) == len(vs)


_SELECTOR_KEYS = st.sampled_from(
    [
        ".",
        "a",
        "f",
        "i",
        "r",
        "R",
        "@",
        "|",
        "~",
        ">",
        "f>",
        "^",
        "$",
        ":>",
        "l",
        "!",
        "/",
        "none",
        "depth",
        "as",
        "subset",
        "[",
        "]",
        "label",
        "x",
    ]
)


@given(
    st.recursive(
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(-(2**64), 2**64),
            st.floats(allow_nan=False),
            st.text(max_size=4),
            st.binary(max_size=2),
            st.just(_cid(1)),
            st.just("unixfs"),
        ),
        lambda kids: st.one_of(
            st.lists(kids, max_size=3), st.dictionaries(_SELECTOR_KEYS, kids, max_size=3)
        ),
        max_leaves=15,
    )
)
def test_parse_arbitrary_nodes(node: Any) -> None:
    """Any data-model value either parses (and serializes back) or raises SelectorError."""
    try:
        sel = parse_selector(node)
    except SelectorError:
        return
    assert parse_selector(selector_to_node(sel)) == sel
