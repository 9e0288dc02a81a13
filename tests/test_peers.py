"""What a home keeps about peers (datatransfer/peers.py): the node's address
book (fed by every dial, loaded into the peerstore at start, bounded) and
the names of peer addresses (contacts)."""

from __future__ import annotations

import json
import multiprocessing

import anyio
import pytest

from datatransfer.node import Node
from datatransfer.peers import (
    ADDRESS_BOOK_FILE,
    MAX_ADDRS,
    AddressBook,
    ContactError,
    Contacts,
    check_name,
)
from datatransfer.types import PeerID

A = PeerID.from_base58("12D3KooWQGhxQiNzj89uu4dh2RG2UyppEWyCfsmiDiLid6uMSRyu")
B = PeerID.from_base58("12D3KooWEpH2GtXCL98o4WiHo5oYDbRMxNFXZLRYNMMM9wGYG5X8")
C = PeerID.from_base58("12D3KooWFZEsnvsA9AXNraj54MgEFLRmzm8fBBFetYnY1sm9i8kn")


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


# -- the address book ----------------------------------------------------------------


def test_address_book_round_trips_latest_address_first(tmp_path):
    book = AddressBook.load(tmp_path)
    assert len(book) == 0 and not (tmp_path / ADDRESS_BOOK_FILE).exists()
    book.record(A, ["/ip4/127.0.0.1/tcp/1"])
    book.record(A, ["/ip4/127.0.0.1/tcp/2"])
    book.record(A, ["/ip4/127.0.0.1/tcp/1"])  # seen again: moves to the front, once
    book.save()
    again = AddressBook.load(tmp_path)
    assert again.addrs(A) == ["/ip4/127.0.0.1/tcp/1", "/ip4/127.0.0.1/tcp/2"]
    assert again.addrs(B) == []
    assert [p for p, _ in again] == [A]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # no leftovers


def test_an_older_snapshot_never_overwrites_a_newer_one(tmp_path):
    """Writes go to worker threads and may end in any order: the file ends
    with the latest book."""
    book = AddressBook.load(tmp_path)
    book.record(A, ["/ip4/127.0.0.1/tcp/1"])
    old = book.snapshot()
    book.record(B, ["/ip4/127.0.0.1/tcp/2"])
    book.write(book.snapshot())
    book.write(old)  # finished last
    assert sorted(p for p, _ in AddressBook.load(tmp_path)) == sorted([A, B])


def test_address_book_keeps_the_latest_addresses_of_a_peer(tmp_path):
    book = AddressBook.load(tmp_path)
    for port in range(MAX_ADDRS + 3):
        book.record(A, [f"/ip4/127.0.0.1/tcp/{port}"])
    addrs = book.addrs(A)
    assert len(addrs) == MAX_ADDRS
    assert addrs[0] == f"/ip4/127.0.0.1/tcp/{MAX_ADDRS + 2}"


def test_address_book_forgets_old_peers_without_live_channels(tmp_path):
    clock = Clock()
    book = AddressBook.load(tmp_path, forget_after=100.0, clock=clock)
    book.record(A, ["/ip4/127.0.0.1/tcp/1"])
    book.record(B, ["/ip4/127.0.0.1/tcp/2"])
    clock.now += 50
    book.record(C, ["/ip4/127.0.0.1/tcp/3"])
    assert not book.prune(keep=())  # nobody is old yet
    clock.now += 60  # A and B 110 s old, C 60 s
    assert book.prune(keep={B})  # B has a live channel: kept however old
    assert sorted(p for p, _ in book) == sorted([B, C])


def test_address_book_is_capped_sparing_live_peers(tmp_path):
    clock = Clock()
    book = AddressBook.load(tmp_path, max_peers=2, clock=clock)
    for peer in (A, B):
        book.record(peer, ["/ip4/127.0.0.1/tcp/1"])
        clock.now += 1
    asked = []
    book.record(C, ["/ip4/127.0.0.1/tcp/3"], keep=lambda: asked.append(1) or {A})
    assert asked == [1]  # the live peers are asked only when over the cap
    # A (oldest, but live) and C (just dialled) stay; B, the oldest other, went
    assert sorted(p for p, _ in book) == sorted([A, C])


@pytest.mark.parametrize("content", ["{not json", '{"version": 1, "peers": []}',
                                     '{"version": 99, "peers": {}}',
                                     '{"version": 1, "peers": {"nobody": {"addrs": []}}}'])
def test_an_unreadable_address_book_is_a_new_one(tmp_path, content, caplog):
    (tmp_path / ADDRESS_BOOK_FILE).write_text(content)
    book = AddressBook.load(tmp_path)
    assert len(book) == 0
    assert "address book" in caplog.text and "unreadable" in caplog.text
    book.record(A, ["/ip4/127.0.0.1/tcp/1"])
    book.save()
    assert AddressBook.load(tmp_path).addrs(A) == ["/ip4/127.0.0.1/tcp/1"]


def test_node_dials_feed_the_book_and_a_new_node_dials_from_it(tmp_path):
    """A node that dialled a peer, stopped, started again (a new peerstore):
    it reaches the peer by its id alone, from the home's address book."""
    from transport.libp2p import libp2p_id

    async def main() -> None:
        async with Node(tmp_path / "server") as server:
            addr = server.addrs()[0]
            async with Node(tmp_path / "client") as client:
                assert await client.connect(addr) == server.peer_id
            book = json.loads((tmp_path / "client" / ADDRESS_BOOK_FILE).read_text())
            assert list(book["peers"]) == [str(server.peer_id)]
            assert book["peers"][str(server.peer_id)]["addrs"] == [addr.rsplit("/p2p/", 1)[0]]
            async with Node(tmp_path / "client") as client:
                pid = libp2p_id(server.peer_id)
                assert [str(a) for a in client.host.get_peerstore().addrs(pid)] == [
                    addr.rsplit("/p2p/", 1)[0]]
                await client.host.connect(client.host.get_peerstore().peer_info(pid))
                assert client.transport.connected(server.peer_id)
            async with Node(tmp_path / "other") as other:  # another home knows nothing
                assert libp2p_id(server.peer_id) not in other.host.get_peerstore().peer_ids()

    anyio.run(main, backend="trio")


def test_node_start_prunes_the_book(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    book = AddressBook(home / ADDRESS_BOOK_FILE)
    book.record(A, ["/ip4/127.0.0.1/tcp/1"])
    book._entries[A].seen -= 10 ** 9  # dialled long ago, no live channel
    book.record(B, ["/ip4/127.0.0.1/tcp/2"])
    book.save()

    async def main() -> None:
        async with Node(home):
            pass

    anyio.run(main, backend="trio")
    assert [p for p, _ in AddressBook.load(home)] == [B]


# -- names ---------------------------------------------------------------------------

ADDR = f"/ip4/127.0.0.1/tcp/4001/p2p/{A}"


def test_contacts_add_get_remove(tmp_path):
    contacts = Contacts(tmp_path)
    assert contacts.all() == {}
    assert contacts.add("bob", ADDR) is None
    assert contacts.add("alice", ADDR.replace("4001", "4002")) is None
    assert list(contacts.all()) == ["alice", "bob"]
    assert Contacts(tmp_path).get("bob") == ADDR
    with pytest.raises(ContactError, match="a peer named bob exists .* --force"):
        contacts.add("bob", "/ip4/127.0.0.1/tcp/9/p2p/x")
    assert contacts.get("bob") == ADDR
    new = ADDR.replace("4001", "4003")
    assert contacts.add("bob", new, force=True) == ADDR
    assert contacts.get("bob") == new
    assert contacts.remove("bob") == new
    with pytest.raises(ContactError, match="no peer named bob"):
        contacts.remove("bob")
    assert list(Contacts(tmp_path).all()) == ["alice"]


@pytest.mark.parametrize("name", ["/ip4", "", "-x", "a b", "a/b", "x" * 65, "é"])
def test_bad_names_are_refused(name):
    with pytest.raises(ContactError):
        check_name(name)


def test_a_broken_contacts_file_is_an_error_not_replaced(tmp_path):
    (tmp_path / "contacts.json").write_text('{"version": 1, "contacts": {"a": 1}}')
    with pytest.raises(ContactError, match="is not a contacts file"):
        Contacts(tmp_path).all()
    with pytest.raises(ContactError, match="is not a contacts file"):
        Contacts(tmp_path).add("b", ADDR)
    assert "b" not in (tmp_path / "contacts.json").read_text()


def _add_many(home: str, prefix: str, count: int) -> None:
    contacts = Contacts(home)
    for i in range(count):
        contacts.add(f"{prefix}{i}", ADDR)


def test_processes_adding_at_once_lose_no_name(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_add_many, args=(str(tmp_path), p, 20)) for p in "xyz"]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    assert len(Contacts(tmp_path).all()) == 60
