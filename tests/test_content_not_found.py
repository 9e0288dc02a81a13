"""A pull of a root the responder does not hold: go-graphsync's responder
ends the request with status 34 (RequestFailedContentNotFound), and so does
ours (the engine-level checks of the wire are in test_graphsync_engine.py).
Here both channels end Failed saying so, over the in-memory network and
between two nodes over libp2p."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from _support import ALL, DEADLINE, FAST, LabelVoucher, ScriptedValidator, harness, make_dag

from datatransfer.ipld.blockstore import MemoryBlockstore
from datatransfer.manager import Manager
from statemachine import Status as S


def validating(manager: Manager) -> None:
    manager.register_voucher_type(LabelVoucher, ScriptedValidator())


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_a_pull_of_a_root_the_responder_lacks_fails_as_content_not_found(anyio_backend):
    async with harness(FAST) as h:
        a = await h.node("a", setup=validating)
        b = await h.node("b", setup=validating)
        root, _, _ = make_dag(MemoryBlockstore(), leaves=3)  # held by neither
        chid = await a.manager.open_pull_channel(b.peer, LabelVoucher("ok"), root, ALL)
        sa = await a.manager.wait(chid, timeout=DEADLINE)
        sb = await b.manager.wait(chid, timeout=DEADLINE)
        assert (sa.status, sb.status) == (S.Failed, S.Failed)
        assert sb.message == f"data transfer failed: content not found: {root} is not held here"
        assert "content not found" in sa.message, sa.message
        assert (sa.received, sb.sent) == (0, 0)


def test_a_pull_of_a_root_the_server_lacks_over_libp2p(tmp_path: Path) -> None:
    from datatransfer.node import Node

    async def main():  # type: ignore[no-untyped-def]
        async with Node(tmp_path / "server") as server, Node(tmp_path / "client") as client:
            assert client.manager is not None and server.manager is not None
            root, _, _ = make_dag(MemoryBlockstore(), leaves=3)
            chid = await client.pull(server.addrs()[0], root)
            got = await client.manager.wait(chid, timeout=DEADLINE)
            return got, await server.manager.wait(chid, timeout=DEADLINE), root

    client_state, server_state, root = anyio.run(main, backend="trio")
    assert (client_state.status, server_state.status) == (S.Failed, S.Failed)
    assert server_state.message == f"data transfer failed: content not found: {root} is not held here"
    assert "content not found" in client_state.message, client_state.message
