"""Paid retrievals between two OS processes (issue 13): ``datatransfer serve``
with a priced ask and ``datatransfer retrieve``, each on its own home,
paying through the homes' demo wallets (HOME/paych.json).

Every case checks the money exactly: what the client says it paid, what the
provider's ledger redeemed, and what the bytes allow (price x bytes + unseal
price). Mid-retrieval is made deterministic by a relay (tests/_relay.py)
that stops forwarding the data after a point, as in test_interruptions.
"""

from __future__ import annotations

import re
import signal
import sys
from pathlib import Path

import pytest
from _processes import CLI, MIB, Proc, free_port, make_file, run, sha256, split_addr, wait_until
from test_interruptions import channels, dag, stored

from datatransfer.markets.retrieval.wallet import read_ledger

PRICE = 2  # attoFIL per byte
UNSEAL = 100
INTERVAL = MIB
INCREASE = MIB
SIZE = 6 * MIB + 77
#: What the relay forwards to the client before holding the data.
HOLD = 3 * MIB + MIB // 2
OVERCHARGING = Path(__file__).with_name("_overcharging_provider.py")


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("paid") / "src.bin"
    return path, make_file(path, SIZE, seed=1313)


def serve_paid(procs, home: Path, port: int, *extra: str) -> tuple[Proc, str]:
    p = procs([*CLI, "-v", "serve", "--home", str(home), "--no-api", *extra,
               "--listen", f"/ip4/127.0.0.1/tcp/{port}",
               "--price-per-byte", f"{PRICE}attoFIL", "--unseal-price", f"{UNSEAL}attoFIL",
               "--payment-interval", str(INTERVAL),
               "--payment-interval-increase", str(INCREASE)])
    addr = p.expect(lambda w: True)[0]
    assert split_addr(addr)[0] == port, p.describe()
    return p, addr


def redeemed(home: Path) -> list[int]:
    """What the provider's ledger redeemed, voucher by voucher (in nonce order)."""
    paid = read_ledger(home)["paid"]
    return [added for ch in paid.values()
            for _key, (_deal, added) in sorted(ch["redeemed"].items(),
                                               key=lambda kv: tuple(map(int, kv[0].split("/"))))]


def payments(stderr: str) -> list[tuple[int, int]]:
    """(amount, running total) of each payment the client reported."""
    return [(int(a), int(t)) for a, t in re.findall(
        r"SendFunds(?:LastPayment)?: paid (\d+) attoFIL \((\d+) attoFIL in all\)", stderr)]


def owed(stderr: str) -> list[int]:
    """Each amount the provider asked for, as the client reported it."""
    return [int(x) for x in re.findall(r"FundsNeeded\w*: (\d+) attoFIL owed", stderr)]


def expected_requests(size: int) -> list[int]:
    """The unseal price, then one payment per interval (growing by the
    increase), then the rest: what a provider at this ask asks for ``size``."""
    asks, released, interval = [UNSEAL], 0, INTERVAL
    while released + interval < size:
        asks.append(PRICE * interval)
        released += interval
        interval += INCREASE
    asks.append(PRICE * (size - released))
    return asks


def retrieve(home: Path, addr: str, cid: str, budget: int, out: Path) -> list[str]:
    return [*CLI, "retrieve", addr, cid, "--home", str(home), "--max-price",
            f"{budget}attoFIL", "-o", str(out)]


def test_paid_retrieval_pays_each_interval_and_exactly_the_price(tmp_path, procs, source):
    src, digest = source
    server_home, client_home = tmp_path / "server", tmp_path / "client"
    cid = run("add", src, "--home", server_home).stdout.split()[-1]
    size, _block = dag(server_home, cid)
    server, addr = serve_paid(procs, server_home, free_port())
    out = tmp_path / "out.bin"
    done = run(*retrieve(client_home, addr, cid, 10**9, out)[len(CLI):])
    assert sha256(out) == digest
    cost = UNSEAL + PRICE * size
    want = expected_requests(size)
    assert owed(done.stderr) == want, done.stderr
    assert [a for a, _ in payments(done.stderr)] == want, done.stderr
    assert payments(done.stderr)[-1][1] == cost
    assert done.stderr.strip().splitlines()[-1].endswith(f", paid {cost} attoFIL"), done.stderr
    for status in ("WaitForAcceptance", "FundsNeededUnseal", "Ongoing", "FundsNeeded", "FundsNeededLastPayment",
                   "BlocksComplete", "Completed"):
        assert f": {status}" in done.stderr, (status, done.stderr)
    wait_until(lambda: sum(redeemed(server_home)) == cost, "the provider to redeem the last voucher")
    assert redeemed(server_home) == want
    [ch] = channels(server_home)
    assert (ch["status"], ch["sent"]) == ("Completed", size), ch
    server.proc.send_signal(signal.SIGTERM)
    assert server.wait() == 0, server.describe()


def test_client_out_of_budget_stops_paying_and_gets_no_unpaid_blocks(tmp_path, procs, source):
    """The budget covers the unseal price and the first interval, not the
    second: the client pays the first, refuses the second (its own
    refusal), cancels; it holds no block past what the provider released."""
    src, _digest = source
    server_home, client_home = tmp_path / "server", tmp_path / "client"
    cid = run("add", src, "--home", server_home).stdout.split()[-1]
    size, block = dag(server_home, cid)
    _server, addr = serve_paid(procs, server_home, free_port())
    budget = UNSEAL + PRICE * INTERVAL + PRICE * (INTERVAL + INCREASE) - 1
    out = tmp_path / "out.bin"
    proc = run(*retrieve(client_home, addr, cid, budget, out)[len(CLI):], ok=False)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"Error: the deal needs {UNSEAL + PRICE * (2 * INTERVAL + INCREASE)} attoFIL in all, "
        f"over the budget of {budget}; deal cancelled"), proc.stderr
    assert not out.exists()
    paid = UNSEAL + PRICE * INTERVAL
    assert payments(proc.stderr)[-1][1] == paid
    wait_until(lambda: sum(redeemed(server_home)) == paid, "the provider to redeem")
    assert redeemed(server_home) == [UNSEAL, PRICE * INTERVAL]
    # the provider released the paid interval and the next one (asked for
    # after it was sent, as pay-as-you-go does), not a block more
    released = 2 * INTERVAL + INCREASE
    assert stored(client_home) <= released + block, stored(client_home)
    assert stored(client_home) < size
    [ch] = channels(server_home)
    assert ch["status"] in ("Cancelled", "Failed") and ch["sent"] <= released + block, ch


def test_client_refuses_a_provider_asking_more_than_the_bytes_cost(tmp_path, procs, source):
    src, _digest = source
    server_home, client_home = tmp_path / "server", tmp_path / "client"
    cid = run("add", src, "--home", server_home).stdout.split()[-1]
    server = procs([sys.executable, str(OVERCHARGING), str(server_home),
                    f"/ip4/127.0.0.1/tcp/{free_port()}"])
    addr = server.expect(lambda w: True)[0]
    out = tmp_path / "out.bin"
    proc = run(*retrieve(client_home, addr, cid, 10**9, out)[len(CLI):], ok=False)
    assert proc.returncode == 1, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: the provider asked for ") and last.endswith(
        "; deal cancelled"), proc.stderr
    assert payments(proc.stderr) == []  # (free of unseal: nothing was owed before)
    assert redeemed(server_home) == []
    assert not out.exists()


def test_a_client_that_stops_paying_is_held_then_failed_by_the_timeout(tmp_path, procs, source):
    """The client stops (SIGSTOP) once asked for its first interval's
    payment, its connection left open: the provider holds the data at the
    next unpaid boundary, then ends the channel on its no-progress timeout
    with the reason. Nothing past what was paid for, plus the one interval
    a provider sends before asking for it, left the provider."""
    src, _digest = source
    server_home, client_home = tmp_path / "server", tmp_path / "client"
    cid = run("add", src, "--home", server_home).stdout.split()[-1]
    size, block = dag(server_home, cid)
    _server, addr = serve_paid(procs, server_home, free_port(), "--no-progress-timeout", "3")
    client = procs(retrieve(client_home, addr, cid, 10**9, tmp_path / "out.bin"))
    wait_until(lambda: "FundsNeeded:" in "".join(client.stderr), "a request for payment")
    client.proc.send_signal(signal.SIGSTOP)
    try:
        wait_until(lambda: channels(server_home)[0]["status"] == "Failed",
                   "the provider to end the unpaid channel")
        [ch] = channels(server_home)
        assert "no progress for 3 s" in ch["message"], ch
        paid = redeemed(server_home)
        assert paid and paid[0] == UNSEAL, paid
        intervals = len(paid) - 1  # each paid for one interval, growing by the increase
        paid_bytes = (sum(paid) - UNSEAL) // PRICE
        assert paid_bytes == sum(INTERVAL + i * INCREASE for i in range(intervals))
        ahead = INTERVAL + intervals * INCREASE  # sent, then asked for
        assert ch["sent"] <= paid_bytes + ahead + block, (ch, paid)
        assert ch["sent"] < size, ch
    finally:
        client.proc.send_signal(signal.SIGKILL)
        client.proc.send_signal(signal.SIGCONT)
    client.wait()  # (stopped, it may hold its store's write lock)
    assert stored(client_home) <= ch["sent"]


# -- a restart of either side mid-retrieval charges nothing twice ------------------------


def mid_retrieval(relay, client_home: Path) -> None:
    """Wait until the relay holds the data and the client stored part of it."""
    wait_until(relay.holding.is_set, "the relay to hold the data")
    wait_until(lambda: stored(client_home) >= 2 * MIB, "the client to store part of the DAG")
    assert stored(client_home) < SIZE


def test_provider_killed_mid_retrieval_charges_nothing_twice(tmp_path, procs, relay_to, source):
    src, digest = source
    server_home, client_home = tmp_path / "server", tmp_path / "client"
    cid = run("add", src, "--home", server_home).stdout.split()[-1]
    size, _block = dag(server_home, cid)
    port = free_port()
    server, addr = serve_paid(procs, server_home, port)
    relay = relay_to(port)
    relay.hold_after("down", HOLD)
    out = tmp_path / "out.bin"
    client = procs(retrieve(client_home, relay.addr(split_addr(addr)[1]), cid, 10**9, out))
    mid_retrieval(relay, client_home)
    before = sum(redeemed(server_home))
    assert 0 < before < UNSEAL + PRICE * size
    server.proc.send_signal(signal.SIGKILL)
    server.wait()
    relay.cut()
    again, _ = serve_paid(procs, server_home, port)
    assert client.wait() == 0, client.describe()
    err = "".join(client.stderr)
    cost = UNSEAL + PRICE * size
    assert sha256(out) == digest
    assert payments(err)[-1][1] == cost, err
    assert err.strip().splitlines()[-1].endswith(f", paid {cost} attoFIL"), err
    wait_until(lambda: sum(redeemed(server_home)) == cost, "the provider to redeem the rest")
    assert sum(redeemed(server_home)) == cost  # each voucher once, across the restart
    again.proc.send_signal(signal.SIGTERM)
    assert again.wait() == 0, again.describe()


def test_client_killed_mid_retrieval_then_run_again_pays_only_the_rest(
        tmp_path, procs, relay_to, source):
    src, digest = source
    server_home, client_home = tmp_path / "server", tmp_path / "client"
    cid = run("add", src, "--home", server_home).stdout.split()[-1]
    size, _block = dag(server_home, cid)
    port = free_port()
    _server, addr = serve_paid(procs, server_home, port)
    relay = relay_to(port)
    relay.hold_after("down", HOLD)
    out = tmp_path / "out.bin"
    command = retrieve(client_home, relay.addr(split_addr(addr)[1]), cid, 10**9, out)
    first = procs(command)
    mid_retrieval(relay, client_home)
    first.proc.send_signal(signal.SIGKILL)
    first.wait()
    paid_first = payments("".join(first.stderr))[-1][1]
    assert 0 < paid_first < UNSEAL + PRICE * size
    [live] = channels(client_home)
    assert live["status"] not in ("Completed", "Failed", "Cancelled"), live
    relay.cut()
    again = run(*command[len(CLI):])
    assert f"resuming channel {live['id']}" in again.stderr, again.stderr
    cost = UNSEAL + PRICE * size
    assert sha256(out) == digest
    # the second run's payments continue the first's running total
    totals = [t for _a, t in payments(again.stderr)]
    assert totals and totals[0] > paid_first and totals[-1] == cost, again.stderr
    wait_until(lambda: sum(redeemed(server_home)) == cost, "the provider to redeem the rest")
    assert sum(redeemed(server_home)) == cost
    [ch] = channels(client_home)
    assert (ch["status"], ch["received"]) == ("Completed", size), ch


def test_free_retrieval_and_one_line_refusals(tmp_path, procs, source):
    """A free ``serve`` (the default) is retrieved from with no --max-price;
    a root it lacks, and a priced ask without --max-price, end in one
    ``Error:`` line (exit 1), the latter before any deal is proposed."""
    src, digest = source
    free_home, paid_home, client_home = tmp_path / "free", tmp_path / "paid", tmp_path / "c"
    cid = run("add", src, "--home", free_home).stdout.split()[-1]
    run("add", src, "--home", paid_home)
    free = procs([*CLI, "serve", "--home", str(free_home), "--no-api", "--listen",
                  "/ip4/127.0.0.1/tcp/0"])
    free_addr = free.expect(lambda w: True)[0]
    out, car = tmp_path / "out.bin", tmp_path / "out.car"
    done = run("retrieve", free_addr, cid, "--home", client_home, "-o", out, "--car", car)
    assert sha256(out) == digest and car.stat().st_size > SIZE
    assert "ask: free" in done.stderr and ": Accepted" in done.stderr, done.stderr
    assert done.stdout.strip().endswith("-1"), done.stdout  # the channel id, last
    again = run("retrieve", free_addr, cid, "--home", client_home, "-o", out, ok=False)
    assert again.returncode == 2 and "exists (use --force" in again.stderr, again.stderr
    other = tmp_path / "other.bin"
    make_file(other, 1000, seed=7)
    missing = run("add", other, "--home", tmp_path / "elsewhere").stdout.split()[-1]
    lacking = run("retrieve", free_addr, missing, "--home", tmp_path / "c2", ok=False)
    assert lacking.returncode == 1, lacking.stderr
    assert lacking.stderr.strip().splitlines()[-1] == (
        f"Error: the provider does not offer {missing}: {missing} is not held here")
    _paid, paid_addr = serve_paid(procs, paid_home, free_port())
    unpaid = run("retrieve", paid_addr, cid, "--home", tmp_path / "c3", ok=False)
    assert unpaid.returncode == 1
    assert unpaid.stderr.strip().splitlines()[-1] == (
        f"Error: the provider asks {PRICE} attoFIL per byte; give --max-price to pay "
        "(0 retrieves free content only)"), unpaid.stderr
    assert "deal " not in unpaid.stderr and redeemed(paid_home) == []
