"""Wrong argument types at the public API fail at the call.

A ``str`` root, a ``multiformats.CID``, a printed peer id or a made-up
channel id raise a ``TypeError`` that names the argument and says how to
build the right value, before anything runs (no channel, no event, no task
that fails later inside a task group).
"""

from __future__ import annotations

import re

import multiformats
import pytest
from _support import ALL, LabelVoucher, harness, make_dag, validating

from datatransfer.ipld.blockstore import MemoryBlockstore
from datatransfer.ipld.cid import CID
from datatransfer.manager import Manager
from datatransfer.types import ChannelID, PeerID
from transport.inmem import InMemoryNetwork

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


async def _pair(h):
    a = await h.node("a", setup=validating())
    b = await h.node("b", setup=validating())
    root, _, _ = make_dag(b.blockstore, leaves=2)  # b serves a pull
    assert make_dag(a.blockstore, leaves=2)[0] == root  # a offers a push
    return a, b, root


def _raises(name: str, *hints: str):
    """TypeError whose message names ``name`` first and carries every hint."""
    pattern = "^" + re.escape(name) + " must be " + "".join(
        f"(?=.*{re.escape(h)})" for h in hints)
    return pytest.raises(TypeError, match=pattern)


@pytest.mark.parametrize("method", ["open_pull_channel", "open_push_channel"])
async def test_open_refuses_a_root_that_is_not_our_cid(method):
    async with harness() as h:
        a, b, root = await _pair(h)
        open_ = getattr(a.manager, method)
        with _raises("base_cid", "not str", f"CID.parse({str(root)!r})"):
            await open_(b.peer, LabelVoucher(), str(root), ALL)
        mf = multiformats.CID.decode(bytes(root))
        with _raises("base_cid", "multiformats", "CID.parse(str(cid))"):
            await open_(b.peer, LabelVoucher(), mf, ALL)
        with _raises("base_cid", "CID.from_bytes"):
            await open_(b.peer, LabelVoucher(), bytes(root), ALL)
        with _raises("base_cid", "not NoneType"):
            await open_(b.peer, LabelVoucher(), None, ALL)
        assert a.manager.channels() == {}  # nothing was started
        # the conversions the messages name give a root that works
        assert CID.parse(str(mf)) == root
        chid = await open_(b.peer, LabelVoucher(), CID.parse(str(mf)), ALL)
        assert (await a.manager.wait(chid, timeout=10)).status.name == "Completed"


@pytest.mark.parametrize("method", ["open_pull_channel", "open_push_channel"])
async def test_open_refuses_a_peer_that_is_not_a_peer_id(method):
    async with harness() as h:
        a, b, root = await _pair(h)
        open_ = getattr(a.manager, method)
        with _raises("peer", "not str", "PeerID.from_base58"):
            await open_(str(b.peer), LabelVoucher(), root, ALL)
        with _raises("peer", "not bytes", "PeerID(data)"):
            await open_(bytes(b.peer), LabelVoucher(), root, ALL)
        assert a.manager.channels() == {}


@pytest.mark.parametrize("method", ["open_pull_channel", "open_push_channel"])
async def test_open_refuses_a_voucher_that_is_not_one(method):
    async with harness() as h:
        a, b, root = await _pair(h)
        open_ = getattr(a.manager, method)
        with _raises("voucher", "not dict"):
            await open_(b.peer, {"Label": "ok"}, root, ALL)
        with _raises("voucher", "pass an instance"):
            await open_(b.peer, LabelVoucher, root, ALL)
        assert a.manager.channels() == {}


async def test_channel_calls_refuse_what_is_not_a_channel_id():
    async with harness() as h:
        a, b, root = await _pair(h)
        chid = await a.manager.open_pull_channel(b.peer, LabelVoucher("pause"), root, ALL)
        for bad in (str(chid), (chid.initiator, chid.responder, chid.id), chid.id):
            kind = type(bad).__name__
            for call in ("close_channel", "pause_channel", "resume_channel", "restart_channel"):
                with _raises("channel_id", f"not {kind}", "open_pull_channel"):
                    await getattr(a.manager, call)(bad)
            with _raises("channel_id", f"not {kind}"):
                await a.manager.send_voucher(bad, LabelVoucher())
            with _raises("channel_id", f"not {kind}"):
                await a.manager.wait(bad, timeout=1)
            with _raises("channel_id", f"not {kind}"):
                a.manager.channel_state(bad)
            with _raises("channel_id", f"not {kind}"):
                a.manager.channel_status(bad)
            with _raises("channel_id", f"not {kind}"):
                a.manager.subscribe_channel(bad, lambda event, state: None)
        with _raises("voucher", "not str"):
            await a.manager.send_voucher(chid, "ok")
        # the right id still works
        assert isinstance(a.manager.channel_state(chid).channel_id, ChannelID)
        await a.manager.close_channel(chid)
        assert (await a.manager.wait(chid, timeout=10)).status.name == "Cancelled"


def test_checks_need_no_running_manager():
    """The checks come first: they fire before the Manager is even started."""
    net = InMemoryNetwork()
    m = Manager(net.transport(PeerID(b"\x00\x01a"), MemoryBlockstore()))
    coro = m.open_pull_channel(PeerID(b"\x00\x01b"), LabelVoucher(), "bafy", ALL)
    with _raises("base_cid", "CID.parse('bafy')"):
        coro.send(None)
