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
from datatransfer.markets.retrieval.wallet import HomeWallet

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
        assert v.nonce == 4  # 1, 2 and the forged 3 were signed before
        assert await payee2.redeem_voucher(channel, v, "deal-a") == 100

    run(after)


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
