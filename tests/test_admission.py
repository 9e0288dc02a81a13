"""Who may connect (issue 9): transport/libp2p/admission.py and bounded
stream teardown in transport/libp2p/host.py.

A listening host must not be locked out by connections that never finish
their handshake, by one address opening many, or by its own history (py-
libp2p keeps a closed connection's slot); and closing a stream or a host
must end in bounded time whatever the peer does.
"""

from __future__ import annotations

import math

import pytest
import trio
import trio.testing
from _support import DEADLINE

from transport.libp2p import (
    AdmissionGuard,
    AdmissionPolicy,
    connect,
    load_or_create_identity,
    open_host,
    peer_addrs,
)
from transport.libp2p.host import RESET_TIMEOUT, reset_stream

LOOPBACK = "/ip4/127.0.0.1/tcp/0"


@pytest.fixture
def anyio_backend():
    return "trio"  # py-libp2p


def test_admission_caps_pending_per_address_and_keeps_a_reserve_for_newcomers():
    guard = AdmissionGuard(AdmissionPolicy(max_pending=6, max_pending_per_address=3, reserve=2,
                                           max_established_per_address=5))
    flood = [guard.admit(("10.0.0.1", p)) for p in range(10)]
    assert sum(e is not None for e in flood) == 3  # per address
    assert guard.refused["pending-per-address"] == 7
    assert guard.admit(("10.0.0.2", 1)) is not None  # 4 pending
    # the last 2 slots are the reserve's: only for an address with nothing pending
    assert guard.admit(("10.0.0.2", 2)) is None
    assert guard.refused["pending"] == 1
    assert guard.admit(("10.0.0.3", 1)) is not None
    assert guard.admit(("10.0.0.4", 1)) is not None
    assert guard.pending == 6
    assert guard.admit(("10.0.0.5", 1)) is None  # full
    for entry in filter(None, flood):
        guard._release(entry)
    assert guard.pending == 3


def _key(tmp_path, name):
    return load_or_create_identity(tmp_path / name)


async def _silent_sockets(port: int, n: int, source: str) -> list[trio.SocketStream]:
    out = []
    for _ in range(n):
        sock = trio.socket.socket()
        await sock.bind((source, 0))
        await sock.connect(("127.0.0.1", port))
        out.append(trio.SocketStream(sock))
    return out


@pytest.mark.anyio
async def test_silent_connections_do_not_lock_out_an_honest_peer(tmp_path):
    policy = AdmissionPolicy(handshake_timeout=1.0, max_pending=16, max_pending_per_address=4,
                             reserve=4)
    async with open_host(_key(tmp_path, "server"), (LOOPBACK,), admission=policy) as server:
        guard: AdmissionGuard = server.admission
        port = int(server.get_addrs()[0].value_for_protocol("tcp"))
        # 60 connections from one address that never start the handshake
        silent = await _silent_sockets(port, 60, "127.0.0.2")
        with trio.fail_after(DEADLINE):
            while sum(guard.refused.values()) < 56:
                await trio.sleep(0.01)
        assert guard.pending <= 4
        async with open_host(_key(tmp_path, "client"), (LOOPBACK,)) as client:
            with trio.fail_after(DEADLINE):
                await connect(client, peer_addrs(server)[0])
        # the silent ones are closed after the handshake deadline
        with trio.fail_after(DEADLINE):
            for sock in silent:
                while await sock.receive_some(1024):
                    pass
        assert guard.timed_out >= 1
        for sock in silent:
            await sock.aclose()


@pytest.mark.anyio
async def test_closed_connections_give_their_slot_back(tmp_path):
    async with open_host(_key(tmp_path, "server"), (LOOPBACK,)) as server:
        guard: AdmissionGuard = server.admission
        network = server.get_network()
        for i in range(4):
            async with open_host(_key(tmp_path, f"client{i}"), (LOOPBACK,)) as client:
                with trio.fail_after(DEADLINE):
                    await connect(client, peer_addrs(server)[0])
                    while guard.established != 1:
                        await trio.sleep(0.01)
        with trio.fail_after(DEADLINE):
            while guard.established or guard.pending:
                await trio.sleep(0.01)
            # py-libp2p's own inbound slots are free again (it would keep
            # them until it stops: 250 visits would lock everyone out)
            while network._inbound_limiter.borrowed_tokens:
                await trio.sleep(0.01)


class _StuckStream:
    async def reset(self) -> None:
        await trio.sleep(math.inf)  # behind a write nobody reads


def test_a_stream_reset_stuck_behind_a_write_ends_in_bounded_time():
    clock = trio.testing.MockClock(autojump_threshold=0)

    async def main() -> float:
        start = trio.current_time()
        with trio.CancelScope() as scope:
            scope.cancel()  # even when the caller is being cancelled (shutdown)
            await reset_stream(_StuckStream())
        return trio.current_time() - start

    took = trio.run(main, clock=clock)
    assert took == pytest.approx(RESET_TIMEOUT)
