"""The demo wallet two processes pay with (HomeWallet: a secp256k1 key in a
home, signed vouchers, each side's ledger in HOME/paych.json), the retrieval
query's encoding, and the command line's amounts."""

from __future__ import annotations

from dataclasses import replace

import click
import pytest
import trio

from datatransfer.cli.ask import fil, parse_fil
from datatransfer.ipld.cid import CID
from datatransfer.markets.retrieval import Address, PaymentError, RetrievalTypeError, SignedVoucher
from datatransfer.markets.retrieval.filecoin import Protocol
from datatransfer.markets.retrieval.query import Query, QueryResponse, QueryStatus
from datatransfer.markets.retrieval.wallet import (
    JOURNAL_FILE,
    NONCE_BLOCK,
    HomeWallet,
    read_ledger,
)

ROOT = CID.parse("QmYQyBLEkEqv77t6Z79E8NxVZUq5De3CPATnk4ns4cFAus")


def run(fn, *args):
    return trio.run(fn, *args)


def test_vouchers_verify_by_signer_and_redeem_once_per_deal(tmp_path):
    payer_home, payee_home = tmp_path / "payer", tmp_path / "payee"
    payer_home.mkdir()
    payee_home.mkdir()
    payer, payee = HomeWallet(payer_home), HomeWallet(payee_home)
    assert payer.address.protocol is Protocol.SECP256K1
    assert str(payer.address).startswith("f1")

    async def main() -> None:
        channel = await payer.open_channel(payee.address, 1000)
        lane = await payer.allocate_lane(channel)
        v1 = await payer.create_voucher(channel, lane, 300)
        v2 = await payer.create_voucher(channel, lane, 700)
        assert (v1.nonce, v2.nonce) == (1, 2)
        assert await payee.check_voucher(channel, v1) == 300
        assert await payee.redeem_voucher(channel, v1, "deal-a") == 300
        assert await payee.redeem_voucher(channel, v1, "deal-a") == 300  # idempotent
        with pytest.raises(PaymentError, match="another deal"):
            await payee.redeem_voucher(channel, v1, "deal-b")
        assert await payee.redeem_voucher(channel, v2, "deal-a") == 400
        assert payee.received() == 700 and payee.redemptions() == 2
        with pytest.raises(PaymentError, match="beyond"):
            await payer.create_voucher(channel, lane, 1001)
        # tampered amount: the signature no longer recovers the payer
        forged = replace(await payer.create_voucher(channel, lane, 900), amount=10**6)
        with pytest.raises(PaymentError, match="not signed by its payer|does not verify"):
            await payee.redeem_voucher(channel, forged, "deal-a")
        # another key signing on the channel
        other = HomeWallet(tmp_path)
        other._state["paying"][channel.raw.hex()] = dict(payer._state["paying"][channel.raw.hex()])
        stolen = await other.create_voucher(channel, lane, 950)
        with pytest.raises(PaymentError, match="not signed by its payer"):
            await payee.redeem_voucher(channel, replace(stolen, nonce=9), "deal-a")
        unsigned = SignedVoucher(channel_addr=channel, amount=1, lane=lane, nonce=20)
        with pytest.raises(PaymentError, match="not signed"):
            await payee.redeem_voucher(channel, unsigned, "deal-a")

    run(main)
    # both ledgers survive a restart: no nonce signed twice, no voucher counted twice
    payer2, payee2 = HomeWallet(payer_home), HomeWallet(payee_home)
    assert payer2.address == payer.address and payee2.received() == 700

    async def after() -> None:
        [channel_hex] = payer2._state["paying"]
        channel = Address(bytes.fromhex(channel_hex))
        v = await payer2.create_voucher(channel, 0, 800)
        # 1, 2 and the forged 3 were signed, out of 1..NONCE_BLOCK reserved
        assert v.nonce == NONCE_BLOCK + 1
        assert await payee2.redeem_voucher(channel, v, "deal-a") == 100

    run(after)


@pytest.fixture
def fsyncs(monkeypatch):
    """Every fsync of the process, counted (a durable write costs one)."""
    import os

    calls = []
    real = os.fsync

    def counted(fd):
        calls.append(fd)
        return real(fd)

    monkeypatch.setattr(os, "fsync", counted)
    return calls


def test_a_payer_reserves_nonces_a_block_per_durable_write(tmp_path, fsyncs):
    """N vouchers on a lane cost ceil(N / NONCE_BLOCK) durable writes, not
    N (each one an fsync stalling a payment round); a payer restarted
    after a reservation (killed: no close) starts above every nonce it
    reserved, so none is signed twice, and the payee takes the gap."""
    payer_home, payee_home = tmp_path / "payer", tmp_path / "payee"
    payer_home.mkdir()
    payee_home.mkdir()
    payer, payee = HomeWallet(payer_home), HomeWallet(payee_home)
    n = 2 * NONCE_BLOCK + 5

    async def main() -> tuple[Address, list[int]]:
        channel = await payer.open_channel(payee.address, 10**6)
        lane = await payer.allocate_lane(channel)
        before = len(fsyncs)
        vouchers = [await payer.create_voucher(channel, lane, 10 * (i + 1)) for i in range(n)]
        assert len(fsyncs) - before == -(-n // NONCE_BLOCK)
        for v in vouchers:
            await payee.redeem_voucher(channel, v, "deal-a")
        return channel, [v.nonce for v in vouchers]

    channel, nonces = run(main)
    assert nonces == list(range(1, n + 1))
    again = HomeWallet(payer_home)  # the payer's process died after its reservation

    async def after() -> None:
        v = await again.create_voucher(channel, 0, 10 * n + 7)
        assert v.nonce == 3 * NONCE_BLOCK + 1  # above all reserved: 65..96 only skipped
        assert await payee.redeem_voucher(channel, v, "deal-a") == 7

    run(after)


def test_a_failed_reservation_signs_nothing_it_did_not_reserve(tmp_path, monkeypatch):
    """A reservation whose write fails raises and reserves nothing: the
    next voucher tries to reserve again (it is not signed on a nonce the
    ledger may not hold)."""
    payer = HomeWallet(tmp_path)

    async def main() -> None:
        channel = await payer.open_channel(payer.address, 100)
        real = payer._save

        def failing() -> None:
            raise OSError("disk full")

        monkeypatch.setattr(payer, "_save", failing)
        with pytest.raises(OSError):
            await payer.create_voucher(channel, 0, 1)
        monkeypatch.setattr(payer, "_save", real)
        v = await payer.create_voucher(channel, 0, 1)
        assert v.nonce == 1
        assert read_ledger(tmp_path)["paying"][channel.raw.hex()]["nonces"]["0"] == NONCE_BLOCK

    run(main)


def test_redemptions_are_journalled_and_synced_once(tmp_path, fsyncs):
    """A payee appends each redemption to its journal (no fsync, no
    rewrite of the ledger: a payment round waits on neither) and fsyncs
    once in sync(). Killed without a sync, the process loses nothing: the
    next wallet on the home reads every redemption (and redeeming any
    again adds nothing); a line torn by a machine crash is left out."""
    payer_home, payee_home = tmp_path / "payer", tmp_path / "payee"
    payer_home.mkdir()
    payee_home.mkdir()
    payer, payee = HomeWallet(payer_home), HomeWallet(payee_home)

    async def main() -> tuple[Address, list[SignedVoucher]]:
        channel = await payer.open_channel(payee.address, 10**6)
        vouchers = [await payer.create_voucher(channel, 0, 100 * (i + 1)) for i in range(20)]
        before = len(fsyncs)
        for v in vouchers:
            assert await payee.redeem_voucher(channel, v, "deal-a") == 100
        assert len(fsyncs) - before <= 1  # (the home's directory, when the journal is made)
        assert len((payee_home / JOURNAL_FILE).read_bytes().splitlines()) == 20
        before = len(fsyncs)
        await payee.sync()
        await payee.sync()  # nothing new: nothing to do
        assert len(fsyncs) - before == 1
        return channel, vouchers

    channel, vouchers = run(main)
    assert read_ledger(payee_home) == payee._state
    with (payee_home / JOURNAL_FILE).open("ab") as fh:
        fh.write(b'["torn')  # the machine went down mid-line
    restarted = HomeWallet(payee_home)  # (the process was killed)
    assert restarted.received() == 2000 and restarted.redemptions() == 20

    async def after() -> None:
        for v in vouchers:
            assert await restarted.redeem_voucher(channel, v, "deal-a") == 100  # idempotent
        with pytest.raises(PaymentError, match="another deal"):
            await restarted.redeem_voucher(channel, vouchers[3], "deal-b")
        v = await payer.create_voucher(channel, 0, 2500)
        assert await restarted.redeem_voucher(channel, v, "deal-a") == 500

    run(after)
    # the earlier journal, torn line and all, was folded into the ledger
    # before the first line was appended: the new one is read
    assert len((payee_home / JOURNAL_FILE).read_bytes().splitlines()) == 1
    assert HomeWallet(payee_home).received() == 2500


def test_query_round_trips_and_refuses_missing_fields():
    q = Query(ROOT)
    assert Query.decode(q.encode()) == q
    r = QueryResponse(QueryStatus.AVAILABLE, size=5, payment_address=Address.new_id(1001),
                      min_price_per_byte=2, max_payment_interval=1 << 20,
                      max_payment_interval_increase=1 << 20, unseal_price=100)
    assert QueryResponse.decode(r.encode()) == r
    from datatransfer.ipld import dagcbor

    node = dagcbor.decode(r.encode())
    del node["Size"]
    with pytest.raises(RetrievalTypeError, match="missing field Size"):
        QueryResponse.decode(dagcbor.encode(node))


@pytest.mark.parametrize("text,atto", [("0", 0), ("1", 10**18), ("0.5FIL", 5 * 10**17),
                                       ("0.5 fil", 5 * 10**17), ("5000attoFIL", 5000),
                                       ("1e-18", 1)])
def test_amounts(text, atto):
    assert parse_fil(text) == atto


@pytest.mark.parametrize("text", ["-1", "abc", "0.5attoFIL", "1e-19", "nan"])
def test_bad_amounts(text):
    with pytest.raises(click.BadParameter):
        parse_fil(text)


def test_amounts_shown():
    assert fil(1048576) == "1048576 attoFIL"
    assert fil(5 * 10**17) == "0.5 FIL"
