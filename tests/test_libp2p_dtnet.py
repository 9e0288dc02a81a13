"""The libp2p host and the data-transfer message network, two hosts in one
process on 127.0.0.1 (trio: py-libp2p needs it)."""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
from _support import DEADLINE
from libp2p.network.stream.exceptions import StreamError

from datatransfer.ipld import dagcbor
from datatransfer.ipld.cid import CID, DAG_CBOR
from datatransfer.messages import (
    PROTOCOL_ID,
    cancel_request,
    cancel_response,
    complete_response,
    encode_message,
    new_request,
    new_response,
    restart_existing_channel_request,
    restart_request,
    restart_response,
    update_request,
    update_response,
    voucher_request,
    voucher_result_response,
)
from datatransfer.types import ChannelID, PeerID
from transport.base import PeerUnreachable
from transport.libp2p import (
    IDENTITY_FILE,
    DataTransferNetwork,
    IdentityError,
    RetryPolicy,
    add_peer_addrs,
    connect,
    format_peer_addr,
    libp2p_id,
    load_or_create_identity,
    open_host,
    parse_peer_addr,
    peer_addrs,
    peer_id_of,
)
from transport.libp2p.dtnet import _ItemScanner

LOCAL = ("/ip4/127.0.0.1/tcp/0",)
TIMEOUT = DEADLINE
FAST_RETRY = RetryPolicy(attempts=3, min_delay=0.05, max_delay=0.2, factor=2.0, open_timeout=3.0)

ALL_SELECTOR = {"R": {"l": {"none": {}}, ":>": {"a": {">": {"@": {}}}}}}
BASE = CID.of(b"libp2p dtnet test root", codec=DAG_CBOR)
VOUCHER = {"PayloadCID": BASE, "ID": 42, "Price": b"\x00\x01\x86\xa0", "Note": "hi"}


@pytest.fixture
def anyio_backend() -> str:
    return "trio"


def requests(channel: ChannelID) -> list[Any]:
    return [
        new_request(
            1, base_cid=BASE, selector=ALL_SELECTOR, voucher_type="V/1", voucher=VOUCHER, pull=True
        ),
        new_request(
            2, base_cid=BASE, selector=ALL_SELECTOR, voucher_type="V/1", voucher=VOUCHER, pull=False
        ),
        restart_request(
            1, base_cid=BASE, selector=ALL_SELECTOR, voucher_type="V/1", voucher=VOUCHER, pull=True
        ),
        update_request(1, paused=True),
        update_request(1, paused=False),
        voucher_request(1, voucher_type="V/1", voucher={"amount": 12345}),
        cancel_request(2),
        restart_existing_channel_request(channel),
    ]


def responses() -> list[Any]:
    return [
        new_response(1, accepted=True),
        new_response(2, accepted=False, voucher_result_type="R/1", voucher_result="no"),
        restart_response(1, accepted=True, paused=True),
        voucher_result_response(
            1,
            accepted=True,
            paused=True,
            voucher_result_type="R/1",
            voucher_result={"owed": b"\x01\x00"},
        ),
        update_response(1, paused=False),
        complete_response(1, accepted=True),
        cancel_response(2),
    ]


@dataclass
class Node:
    net: DataTransferNetwork
    inbox: list[tuple[PeerID, Any]] = field(default_factory=list)
    changed: anyio.Event = field(default_factory=anyio.Event)

    @property
    def peer_id(self) -> PeerID:
        return self.net.peer_id

    async def on_message(self, sender: PeerID, message: Any) -> None:
        self.inbox.append((sender, message))
        self.changed.set()
        self.changed = anyio.Event()

    async def wait_for(self, count: int) -> list[tuple[PeerID, Any]]:
        while len(self.inbox) < count:
            await self.changed.wait()
        return self.inbox


@asynccontextmanager
async def nodes(tmp_path: Path, n: int = 2, **net_options: Any) -> AsyncIterator[list[Node]]:
    """``n`` running hosts, each with a started DataTransferNetwork; node 0
    is connected to every other node."""
    async with AsyncExitStack() as stack:
        out: list[Node] = []
        for i in range(n):
            key = load_or_create_identity(tmp_path / f"node{i}")
            host = await stack.enter_async_context(open_host(key, LOCAL))
            net_options.setdefault("retry", FAST_RETRY)
            node = Node(DataTransferNetwork(host, **net_options))
            node.net.start(node.on_message)
            out.append(node)
        for other in out[1:]:
            await connect(out[0].net.host, peer_addrs(other.net.host)[0])
        yield out


@asynccontextmanager
async def raw_stream(sender: Node, receiver: Node) -> AsyncIterator[Any]:
    stream = await sender.net.host.new_stream(libp2p_id(receiver.peer_id), [PROTOCOL_ID])
    try:
        yield stream
    finally:
        try:
            await stream.reset()
        except Exception:
            pass


async def finish(stream: Any, payload: bytes = b"", *, close: bool = True) -> None:
    """Write ``payload`` (maybe half-close), then read until the receiver
    ends the stream. A reset may look like EOF to py-libp2p's reader, so the
    tests check what the receiver counted; it counts before it ends the
    stream, so the counters are final once this returns."""
    try:
        if payload:
            await stream.write(payload)
        if close:
            await stream.close_write()
    except StreamError:
        pass  # the receiver already gave up on the stream
    try:
        while await stream.read(65536):
            pass
    except StreamError:  # EOF or reset
        pass


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- identity and addresses ------------------------------------------------------------


def test_identity_is_created_once_and_private(tmp_path: Path) -> None:
    first = load_or_create_identity(tmp_path)
    path = tmp_path / IDENTITY_FILE
    assert path.is_file()
    if os.name != "nt":
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = load_or_create_identity(tmp_path)
    assert peer_id_of(again) == peer_id_of(first)
    assert peer_id_of(first).to_base58().startswith("12D3KooW")  # Ed25519
    assert peer_id_of(load_or_create_identity(tmp_path / "other")) != peer_id_of(first)


def test_identity_file_is_narrowed_and_corruption_is_an_error(tmp_path: Path) -> None:
    load_or_create_identity(tmp_path)
    path = tmp_path / IDENTITY_FILE
    if os.name != "nt":
        path.chmod(0o644)
        load_or_create_identity(tmp_path)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.write_bytes(b"not a key")
    with pytest.raises(IdentityError):
        load_or_create_identity(tmp_path)
    assert path.read_bytes() == b"not a key"  # never silently replaced


def test_peer_addr_helpers(tmp_path: Path) -> None:
    peer = peer_id_of(load_or_create_identity(tmp_path))
    text = format_peer_addr("/ip4/127.0.0.1/tcp/4001", peer)
    assert text == f"/ip4/127.0.0.1/tcp/4001/p2p/{peer}"
    parsed, addrs = parse_peer_addr(text)
    assert parsed == peer and [str(a) for a in addrs] == ["/ip4/127.0.0.1/tcp/4001"]
    assert format_peer_addr(text, peer) == text  # an existing /p2p part is replaced
    assert parse_peer_addr(f"/p2p/{peer}") == (peer, [])
    for bad in ("/ip4/127.0.0.1/tcp/4001", "not a multiaddr", ""):
        with pytest.raises(ValueError):
            parse_peer_addr(bad)


@pytest.mark.anyio
async def test_identity_persists_across_host_restarts(tmp_path: Path) -> None:
    with anyio.fail_after(TIMEOUT):
        ids = []
        for _ in range(2):
            async with open_host(load_or_create_identity(tmp_path), LOCAL) as host:
                ids.append(PeerID(host.get_id().to_bytes()))
                (addr,) = peer_addrs(host)
                assert addr.startswith("/ip4/127.0.0.1/tcp/") and addr.endswith(f"/p2p/{ids[-1]}")
        assert ids[0] == ids[1] == peer_id_of(load_or_create_identity(tmp_path))


@pytest.mark.anyio
async def test_connect_keeps_the_dialed_address_when_identify_replaces_the_others(
        tmp_path: Path, relay_to) -> None:  # type: ignore[no-untyped-def]
    """A peer reached at an address it does not announce (through a relay
    here; a NAT's forwarded port, a name) is re-dialed there: its identify,
    which arrives after the dial and replaces the peer's addresses with
    those it announces, does not drop the one given to connect."""
    with anyio.fail_after(TIMEOUT):
        async with open_host(load_or_create_identity(tmp_path / "a"), LOCAL) as a, \
                open_host(load_or_create_identity(tmp_path / "b"), LOCAL) as b:
            (announced,) = peer_addrs(b)
            port = int(announced.split("/")[4])
            relay = relay_to(port)
            await connect(a, relay.addr(b.get_id().to_base58()))
            store = a.get_peerstore()

            def known() -> list[str]:
                return [str(x) for x in store.addrs(b.get_id())]

            while not any(f"/tcp/{port}" in x for x in known()):  # identify has come
                await anyio.sleep(0.01)
            assert any(f"/tcp/{relay.port}" in x for x in known()), known()


# -- framing ---------------------------------------------------------------------------


def test_scanner_finds_item_ends_across_chunks() -> None:
    frames = [encode_message(m) for m in requests(ChannelID(PeerID(b"a"), PeerID(b"b"), 3))]
    stream = b"".join(frames)
    for step in (1, 7, 64, len(stream)):
        scanner, buf, found = _ItemScanner(1 << 20), bytearray(), []
        for i in range(0, len(stream), step):
            buf += stream[i : i + step]
            while buf and (end := scanner.feed(buf)) is not None:
                found.append(bytes(buf[:end]))
                del buf[:end]
                scanner.reset()
        assert found == frames and not buf


@pytest.mark.parametrize(
    "head",
    [
        bytes([0x5A]) + (100 << 20).to_bytes(4, "big"),  # byte string of 100 MiB
        bytes([0x9B]) + (1 << 40).to_bytes(8, "big"),  # array of 2^40 items
        bytes([0xA1, 0x61, 0x6B, 0x5A]) + (5 << 20).to_bytes(4, "big"),  # {"k": 5 MiB}
    ],
)
def test_scanner_refuses_declared_oversize_from_the_head(head: bytes) -> None:
    from transport.libp2p.dtnet import _Oversized

    with pytest.raises(_Oversized):
        _ItemScanner(4 << 20).feed(head)


def test_scanner_refuses_indefinite_lengths_and_deep_nesting() -> None:
    from transport.libp2p.dtnet import _Malformed

    for data in (b"\x9f\x01\xff", b"\xbf", b"\x5f", b"\xff", b"\x81" * (dagcbor.MAX_DEPTH + 2)):
        with pytest.raises(_Malformed):
            _ItemScanner(1 << 20).feed(data)


# -- messages over the network ---------------------------------------------------------


@pytest.mark.anyio
async def test_every_message_kind_travels_both_ways(tmp_path: Path) -> None:
    with anyio.fail_after(TIMEOUT):
        async with nodes(tmp_path) as (a, b):
            await a.net.connect_with_retry(b.peer_id)
            channel = ChannelID(a.peer_id, b.peer_id, 7)
            sent = requests(channel) + responses()
            # a -> b in order: each send returns once b has handled the message.
            for message in sent:
                await a.net.send_message(b.peer_id, message, wait_for_receipt=True)
            assert b.inbox == [(a.peer_id, m) for m in sent]
            # b -> a all at once (b dials back over the connection a opened).
            async with anyio.create_task_group() as tg:
                for message in sent:
                    tg.start_soon(b.net.send_message, a.peer_id, message)
            got = await a.wait_for(len(sent))
            assert {s for s, _ in got} == {b.peer_id}
            key = encode_message
            assert sorted(key(m) for _, m in got) == sorted(key(m) for m in sent)
            assert a.net.stats.received == b.net.stats.received == len(sent)
            assert a.net.stats.sent == b.net.stats.sent == len(sent)


@pytest.mark.anyio
async def test_several_messages_on_one_stream_are_all_delivered(tmp_path: Path) -> None:
    with anyio.fail_after(TIMEOUT):
        async with nodes(tmp_path) as (a, b):
            sent = responses()
            async with raw_stream(a, b) as stream:
                await finish(stream, b"".join(encode_message(m) for m in sent))
            assert b.net.stats.refused_malformed == 0
            assert await b.wait_for(len(sent)) == [(a.peer_id, m) for m in sent]


@pytest.mark.anyio
async def test_messages_to_a_peer_share_one_kept_stream_in_order(tmp_path: Path) -> None:
    """A stream per message (as Go sends) cost both sides a negotiation and a
    handler task per message; the sender keeps one stream per peer, and a
    receipt covers every message before it."""
    with anyio.fail_after(TIMEOUT):
        async with nodes(tmp_path) as (a, b):
            opened = 0
            real_open = a.net._open_stream

            async def counting_open(*args: Any, **kwargs: Any) -> Any:
                nonlocal opened
                opened += 1
                return await real_open(*args, **kwargs)

            a.net._open_stream = counting_open  # type: ignore[method-assign]
            sent = [update_request(i, paused=bool(i % 2)) for i in range(1, 31)]
            for message in sent[:-1]:
                await a.net.send_message(b.peer_id, message)
            await a.net.send_message(b.peer_id, sent[-1], wait_for_receipt=True)
            assert b.inbox == [(a.peer_id, m) for m in sent]
            assert opened == 1
            # the receipt closed the stream: the next message opens another
            await a.net.send_message(b.peer_id, cancel_request(9))
            assert (await b.wait_for(len(sent) + 1))[-1] == (a.peer_id, cancel_request(9))
            assert opened == 2 and a.net.stats.send_failures == 0


@pytest.mark.anyio
async def test_an_idle_kept_stream_is_ended_before_a_reader_times_it_out(tmp_path: Path) -> None:
    """go-data-transfer v2 gives a stream's next message 10 s, then resets
    it and fails Lassie's retrieval: a kept stream left idle is ended (EOF)
    after IDLE_REUSE seconds, with no message sent to prompt it."""
    from transport.libp2p.dtnet import IDLE_REUSE

    assert IDLE_REUSE < 5
    with anyio.fail_after(TIMEOUT):
        async with nodes(tmp_path) as (a, b), anyio.create_task_group() as tg:
            tg.start_soon(a.net.close_idle_streams)
            await a.net.send_message(b.peer_id, cancel_request(1))
            await b.wait_for(1)
            entry = a.net._out[b.peer_id]
            assert entry.stream is not None
            while entry.stream is not None:
                await anyio.sleep(0.05)
            await a.net.send_message(b.peer_id, cancel_request(2))  # on a new stream
            assert (await b.wait_for(2))[-1] == (a.peer_id, cancel_request(2))
            assert a.net.stats.send_failures == 0
            tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_a_stopped_network_takes_no_message_from_a_kept_stream(tmp_path: Path) -> None:
    with anyio.fail_after(TIMEOUT):
        async with nodes(tmp_path) as (a, b):
            await a.net.send_message(b.peer_id, cancel_request(1))
            await b.wait_for(1)
            b.net.stop()
            await a.net.send_message(b.peer_id, cancel_request(2))
            await a.net.settle()  # returns once b has read the stream to its end or reset it
            assert b.inbox == [(a.peer_id, cancel_request(1))]


@pytest.mark.parametrize(
    "payload",
    [
        b"\xff\x00garbage",  # not CBOR
        dagcbor.encode({"hello": "world"}),  # CBOR, not a message
        encode_message(update_request(1, paused=True)) + b"\x9f",  # good, then indefinite
    ],
    ids=["garbage", "not-a-message", "indefinite-after-good"],
)
@pytest.mark.anyio
async def test_malformed_input_resets_the_stream_and_the_host_carries_on(
    tmp_path: Path, payload: bytes
) -> None:
    with anyio.fail_after(TIMEOUT):
        async with nodes(tmp_path) as (a, b):
            async with raw_stream(a, b) as stream:
                await finish(stream, payload)
            assert b.net.stats.refused_malformed == 1
            good = cancel_request(9)
            await a.net.send_message(b.peer_id, good, wait_for_receipt=True)
            assert b.inbox[-1] == (a.peer_id, good)


@pytest.mark.anyio
async def test_message_cut_short_is_dropped_not_delivered(tmp_path: Path) -> None:
    with anyio.fail_after(TIMEOUT):
        async with nodes(tmp_path) as (a, b):
            frame = encode_message(new_response(3, accepted=True))
            async with raw_stream(a, b) as stream:
                await finish(stream, frame[: len(frame) // 2])  # closed, as Go does
            assert b.inbox == [] and b.net.stats.refused_malformed == 1


@pytest.mark.anyio
async def test_oversized_frames_are_refused_before_they_are_read(tmp_path: Path) -> None:
    limit = 64 * 1024
    with anyio.fail_after(TIMEOUT):
        async with nodes(tmp_path, max_message_size=limit) as (a, b):
            # Declares 100 MiB and sends 5 bytes: refused on the head alone,
            # the stream stays open on our side (no close_write).
            async with raw_stream(a, b) as stream:
                await finish(stream, bytes([0x5A]) + (100 << 20).to_bytes(4, "big"), close=False)
            assert b.net.stats.refused_oversized == 1
            # An array of 40 strings of 4 KiB: refused once the bytes exceed the limit.
            item = bytes([0x59]) + (4096).to_bytes(2, "big") + b"x" * 4096
            async with raw_stream(a, b) as stream:
                await finish(stream, bytes([0x98, 40]) + item * 40)
            assert b.net.stats.refused_oversized == 2
            assert b.inbox == []
            # Sending side: a message over the limit is not sent at all.
            huge = voucher_request(1, voucher_type="V/1", voucher=b"x" * limit)
            with pytest.raises(ValueError):
                await a.net.send_message(b.peer_id, huge)
            good = update_response(4, paused=True)
            await a.net.send_message(b.peer_id, good, wait_for_receipt=True)
            assert b.inbox == [(a.peer_id, good)]


@pytest.mark.anyio
async def test_handler_errors_are_contained(tmp_path: Path) -> None:
    with anyio.fail_after(TIMEOUT):
        async with nodes(tmp_path) as (a, b):
            calls: list[Any] = []

            async def flaky(sender: PeerID, message: Any) -> None:
                calls.append(message)
                if len(calls) == 1:
                    raise RuntimeError("handler bug")

            b.net.start(flaky)
            for message in responses()[:2]:
                await a.net.send_message(b.peer_id, message, wait_for_receipt=True)
            assert calls == responses()[:2]
            assert b.net.stats.handler_errors == 1


@pytest.mark.anyio
async def test_unreachable_peer_raises_after_retries(tmp_path: Path) -> None:
    with anyio.fail_after(TIMEOUT):
        async with nodes(tmp_path, n=1) as (a,):
            ghost = peer_id_of(load_or_create_identity(tmp_path / "ghost"))
            add_peer_addrs(a.net.host, ghost, [f"/ip4/127.0.0.1/tcp/{closed_port()}"])
            host = a.net.host
            attempts = 0
            real_new_stream = host.new_stream

            async def counting_new_stream(*args: Any, **kwargs: Any) -> Any:
                nonlocal attempts
                attempts += 1
                return await real_new_stream(*args, **kwargs)

            host.new_stream = counting_new_stream  # type: ignore[method-assign]
            start = anyio.current_time()
            with pytest.raises(PeerUnreachable):
                await a.net.send_message(ghost, cancel_request(1))
            assert attempts == FAST_RETRY.attempts
            assert anyio.current_time() - start >= 2 * FAST_RETRY.min_delay
            # No known address at all: the same typed error.
            nowhere = peer_id_of(load_or_create_identity(tmp_path / "nowhere"))
            with pytest.raises(PeerUnreachable):
                await a.net.send_message(nowhere, cancel_request(1))
            assert a.net.stats.send_failures == 2


@pytest.mark.anyio
async def test_peer_that_comes_back_is_reached_by_a_retry(tmp_path: Path) -> None:
    """The first attempt fails (b not yet listening); b starts during the
    backoff and the retry gets through."""
    with anyio.fail_after(TIMEOUT):
        retry = RetryPolicy(attempts=4, min_delay=0.3, max_delay=0.3, jitter=False)
        async with nodes(tmp_path, n=1, retry=retry) as (a,):
            key = load_or_create_identity(tmp_path / "late")
            port = closed_port()
            listen = (f"/ip4/127.0.0.1/tcp/{port}",)
            add_peer_addrs(a.net.host, peer_id_of(key), listen)
            first_failed = anyio.Event()
            real_new_stream = a.net.host.new_stream

            async def watched(*args: Any, **kwargs: Any) -> Any:
                try:
                    return await real_new_stream(*args, **kwargs)
                except Exception:
                    first_failed.set()
                    raise

            a.net.host.new_stream = watched  # type: ignore[method-assign]
            late = Node(None)  # type: ignore[arg-type]
            message = update_request(5, paused=False)
            async with anyio.create_task_group() as tg:
                tg.start_soon(a.net.send_message, peer_id_of(key), message)
                await first_failed.wait()
                async with open_host(key, listen) as host:
                    DataTransferNetwork(host, late.on_message).start()
                    await late.wait_for(1)
            assert late.inbox == [(a.peer_id, message)]


@pytest.mark.anyio
async def test_silent_peer_times_out_each_attempt(tmp_path: Path) -> None:
    """A TCP listener that accepts and never speaks: each attempt is cut
    off by ``open_timeout``, then PeerUnreachable; the host is unharmed."""
    retry = RetryPolicy(attempts=2, min_delay=0.05, max_delay=0.05, open_timeout=0.5)
    with anyio.fail_after(TIMEOUT):
        async with nodes(tmp_path, retry=retry) as (a, b):
            accepted: list[Any] = []

            async def hold(conn: Any) -> None:
                accepted.append(conn)
                await anyio.sleep_forever()

            listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
            port = listener.extra(anyio.abc.SocketAttribute.local_port)
            mute = peer_id_of(load_or_create_identity(tmp_path / "mute"))
            add_peer_addrs(a.net.host, mute, [f"/ip4/127.0.0.1/tcp/{port}"])
            async with anyio.create_task_group() as tg:
                tg.start_soon(listener.serve, hold)
                start = anyio.current_time()
                with pytest.raises(PeerUnreachable):
                    await a.net.send_message(mute, cancel_request(1))
                elapsed = anyio.current_time() - start
                tg.cancel_scope.cancel()
            # two attempts, each waited out its open_timeout (without one
            # the send would hang until the deadline above)
            assert elapsed >= 2 * retry.open_timeout
            assert len(accepted) == 2
            good = cancel_response(1)
            await a.net.send_message(b.peer_id, good, wait_for_receipt=True)
            assert b.inbox == [(a.peer_id, good)]
