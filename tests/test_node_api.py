"""``datatransfer.node.Node`` at its boundary: it needs trio and says so, and
its transfer calls check their arguments' types before dialling anyone."""

from __future__ import annotations

import asyncio

import anyio
import multiformats
import pytest
from _support import ALL, make_dag

from datatransfer import TrioRequired
from datatransfer.node import Node


async def _enter(home) -> None:
    async with Node(home):
        pass  # pragma: no cover - never entered outside trio


@pytest.mark.parametrize("run", [
    lambda main: anyio.run(main),  # anyio's default backend: asyncio
    lambda main: asyncio.run(main()),
], ids=["anyio-asyncio", "asyncio"])
def test_node_outside_trio_says_how_to_run_it(tmp_path, run):
    with pytest.raises(TrioRequired) as info:
        run(lambda: _enter(tmp_path / "home"))
    message = str(info.value)
    assert "needs the trio event loop" in message
    assert "trio.run(main)" in message and 'anyio.run(main, backend="trio")' in message
    assert isinstance(info.value, RuntimeError)
    home = tmp_path / "home"  # refused before it opened anything: no key, no stores
    assert not home.exists() or list(home.iterdir()) == []


def test_node_methods_check_types_before_dialling(tmp_path):
    async def main() -> None:
        async with Node(tmp_path / "a") as a, Node(tmp_path / "b") as b:
            root, _, _ = make_dag(b.blockstore, leaves=2)
            addr = b.addrs()[0]
            for call in (a.pull, a.push):
                with pytest.raises(TypeError, match=r"^root must be .*CID\.parse\("):
                    await call(addr, str(root))
                with pytest.raises(TypeError, match=r"^root must be .*multiformats"):
                    await call(addr, multiformats.CID.decode(bytes(root)))
                with pytest.raises(TypeError, match=r"^addr must be a multiaddr string"):
                    await call(b.peer_id, root)
                with pytest.raises(TypeError, match=r"^voucher must be a registry\.Voucher"):
                    await call(addr, root, ALL, {"Note": ""})
            with pytest.raises(TypeError, match=r"^addr must be"):
                await a.connect(123)
            assert a.manager is not None and a.manager.channels() == {}
            assert not a.host.get_network().connections  # nothing was dialled
            chid = await a.pull(addr, root)
            assert (await a.manager.wait(chid, timeout=20)).status.name == "Completed"

    anyio.run(main, backend="trio")


def test_node_calls_before_start_say_so(tmp_path):
    node = Node(tmp_path / "home")

    async def main() -> None:
        with pytest.raises(RuntimeError, match="not running"):
            await node.pull("/ip4/127.0.0.1/tcp/1/p2p/12D3KooWxx", make_dag_root(tmp_path))

    anyio.run(main, backend="trio")


def make_dag_root(tmp_path):
    from datatransfer.ipld.blockstore import MemoryBlockstore

    return make_dag(MemoryBlockstore(), leaves=1)[0]
