"""A request the node refuses is visible: counted in the metrics
(``datatransfer_refused_inputs_total{layer="channels", kind="rejected-request"}``),
kept in the channel store (Failed, the reason its message: ``ls --all``
lists it; the newest ``keep_refused`` only) and logged once at WARNING, the
default level. Before, a network client such as Lassie (whose voucher type
a plain node does not take) was refused with only an INFO line.

Between two nodes over libp2p in one process, and between a
``datatransfer serve`` and a client process (the store contract is tested
in test_store.py, the Manager's side in test_manager_flows.py)."""

from __future__ import annotations

import json
import logging
import re
import time
import urllib.request
from pathlib import Path

import anyio
import pytest
from _processes import CLI, LOOPBACK, PROCNODE, TIMEOUT, run
from _support import ALL, DEADLINE, LabelVoucher, ScriptedValidator, make_dag

from datatransfer.config import ManagerConfig
from datatransfer.ipld.blockstore import MemoryBlockstore
from datatransfer.node import Node
from statemachine import Status as S

UNKNOWN_OPEN = ("refused: unknown voucher type 'py-data-transfer/open' "
                "(no validator takes it)")


def refused_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if "refused a pull of" in line]


def test_a_refused_request_is_counted_kept_and_logged_once(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.WARNING)

    async def main():  # type: ignore[no-untyped-def]
        async with Node(tmp_path / "server", open_validator=None, metrics=True) as server, \
                Node(tmp_path / "client") as client:
            assert server.manager is not None and client.manager is not None
            root, _, _ = make_dag(server.blockstore, leaves=2)
            chid = await client.pull(server.addrs()[0], root)
            state = await client.manager.wait(chid, timeout=DEADLINE)
            with anyio.fail_after(DEADLINE):  # the server answers, then keeps the record
                while chid not in server.manager.channels():
                    await anyio.sleep(0.01)
            assert server.metrics is not None
            return chid, state, server.manager.channels(), server.metrics.render()

    chid, client_state, server_channels, metrics = anyio.run(main, backend="trio")
    assert (client_state.status, client_state.message) == (S.Failed, "rejected by the responder")
    kept = server_channels[chid]
    assert (kept.status, kept.message, kept.received, kept.sent) == (S.Failed, UNKNOWN_OPEN, 0, 0)
    assert ('datatransfer_refused_inputs_total{kind="rejected-request",layer="channels"} 1.0'
            in metrics), metrics
    # the channels gauge counts channels, not refusals (no Failed channel here)
    assert 'datatransfer_channels{status="Failed"} 0.0' in metrics
    lines = [r for r in caplog.records if "refused a pull of" in r.getMessage()]
    assert len(lines) == 1, caplog.text
    assert lines[0].levelno == logging.WARNING and "\n" not in lines[0].getMessage()
    assert str(chid) in lines[0].getMessage() and "py-data-transfer/open" in lines[0].getMessage()


def test_only_the_newest_refusals_are_kept(tmp_path: Path) -> None:
    """A peer refused without end costs a bounded store."""
    config = ManagerConfig(keep_refused=2)

    def setup(manager):  # type: ignore[no-untyped-def]
        manager.register_voucher_type(LabelVoucher, ScriptedValidator())

    async def main():  # type: ignore[no-untyped-def]
        async with Node(tmp_path / "server", setup=setup, config=config) as server, \
                Node(tmp_path / "client") as client:
            assert server.manager is not None and client.manager is not None
            root, _, _ = make_dag(MemoryBlockstore(), leaves=1)
            chids = []
            for _ in range(4):
                chid = await client.pull(server.addrs()[0], root, ALL, LabelVoucher("reject"))
                await client.manager.wait(chid, timeout=DEADLINE)
                chids.append(chid)
            with anyio.fail_after(DEADLINE):
                while chids[-1] not in server.manager.channels():
                    await anyio.sleep(0.01)
            return chids, server.manager.channels(), server.manager.refusals.counts

    chids, kept, counts = anyio.run(main, backend="trio")
    assert set(kept) == set(chids[2:])
    assert {st.message for st in kept.values()} == {
        "refused: rejected by the validator: not today"}
    assert counts["rejected-request"] == 4


@pytest.mark.timeout(300)
def test_serve_shows_a_refused_request_in_metrics_ls_and_its_log(tmp_path: Path, procs) -> None:
    """Two processes: a ``datatransfer serve`` (which takes only the open
    voucher) refuses a pull carrying another voucher type."""
    home = tmp_path / "server"
    src = tmp_path / "f.bin"
    src.write_bytes(b"refused\n" * 1000)
    cid = run("add", src, "--home", home).stdout.split()[-1]
    serve = procs([*CLI, "serve", "--home", str(home), "--listen", LOOPBACK,
                   "--metrics-port", "0"])
    addr = serve.expect(lambda w: w[0].startswith("/ip4/"))[0]
    client = procs([*PROCNODE, "pull", "--home", str(tmp_path / "client"), "--addr", addr,
                    "--cid", cid, "--voucher-label", "ok", "--max-restarts", "0"])
    done = client.expect(lambda w: w[0] == "DONE")
    assert done[1] == "Failed", client.describe()

    rows: list[dict] = []
    deadline = time.monotonic() + TIMEOUT
    while not rows and time.monotonic() < deadline:  # (kept right after the answer)
        rows = json.loads(run("ls", "--all", "--json", "--home", home).stdout)
    assert len(rows) == 1, rows
    assert (rows[0]["status"], rows[0]["message"]) == (
        "Failed", "refused: unknown voucher type 'test/voucher' (no validator takes it)")
    assert rows[0]["root"] == cid and rows[0]["bytes"] == 0
    assert json.loads(run("ls", "--json", "--home", home).stdout) == []  # not live

    url = next(m.group(0) for line in serve.stderr
               if (m := re.search(r"http://127\.0\.0\.1:\d+/metrics", line)))
    with urllib.request.urlopen(url, timeout=TIMEOUT) as rsp:
        metrics = rsp.read().decode()
    assert ('datatransfer_refused_inputs_total{kind="rejected-request",layer="channels"} 1.0'
            in metrics), metrics
    lines = refused_lines("".join(serve.stderr))
    assert len(lines) == 1 and lines[0].startswith("WARNING"), serve.describe()
    assert "test/voucher" in lines[0] and "no validator takes it" in lines[0]
    # the node gone, ls reads the store itself: the refusal is still there
    serve.kill()
    assert json.loads(run("ls", "--all", "--json", "--home", home).stdout) == rows
