"""A demo wallet kept in a node's home, so that two OS processes can pay
each other for retrievals: :class:`HomeWallet`, a :class:`Payments`.

What is real: a secp256k1 key (``HOME/wallet.key``) whose Filecoin ``f1``
address is the payer, and vouchers signed as Filecoin signs them (secp256k1
over the BLAKE2b-256 of the voucher's bytes without its signature, 65 bytes
``r || s || v``). A provider recovers the signer from the signature, so it
needs nothing from the client beforehand, and no one without the key can
make a voucher.

What is not: nothing is locked on a chain. A "payment channel" here is an
address the payer makes up (an actor address hashed from payer, payee and a
random nonce) and binds to itself: its funds are the payer's own limit,
which the provider cannot see. A provider therefore learns that the payer
signed a promise for the amount, not that the money exists. On-chain payment
channels (the paych actor, a Lotus node) are out of scope.

Both sides keep their half of the ledger in ``HOME/paych.json``, written
atomically at every change: the payer its channels, lanes and nonces (a
restarted client never signs a nonce twice), the payee every voucher it
redeemed, by (channel, lane, nonce), with the deal it paid (redeeming the
same voucher again adds nothing, so a restarted provider that rebuilds a
deal's funds from its channel record charges nothing twice).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
from dataclasses import replace
from pathlib import Path
from typing import Any

from datatransfer.ipld import dagcbor
from datatransfer.markets.retrieval.errors import PaymentError
from datatransfer.markets.retrieval.filecoin import (
    Address,
    Protocol,
    Signature,
    SignedVoucher,
    SigType,
)

log = logging.getLogger("datatransfer.markets.retrieval")

__all__ = ["KEY_FILE", "LEDGER_FILE", "HomeWallet", "secp256k1_address"]

KEY_FILE = "wallet.key"
LEDGER_FILE = "paych.json"


def _blake2b(data: bytes, size: int) -> bytes:
    return hashlib.blake2b(data, digest_size=size).digest()


def secp256k1_address(public_key: bytes) -> Address:
    """The ``f1`` address of an uncompressed (65-byte) secp256k1 public key."""
    return Address(bytes((Protocol.SECP256K1,)) + _blake2b(public_key, 20))


def signing_bytes(voucher: SignedVoucher) -> bytes:
    """What a voucher's signature covers: its DAG-CBOR without the signature
    (go-state-types ``SignedVoucher.SigningBytes``)."""
    node = voucher.to_node()
    node[-1] = None
    return dagcbor.encode(node)


def _signer(voucher: SignedVoucher) -> Address:
    """The ``f1`` address whose key signed ``voucher``."""
    from coincurve import PublicKey

    sig = voucher.signature
    if sig is None:
        raise PaymentError("the voucher is not signed")
    if sig.type is not SigType.SECP256K1 or len(sig.data) != 65:
        raise PaymentError("the voucher's signature is not a 65-byte secp256k1 one")
    try:
        key = PublicKey.from_signature_and_message(
            sig.data, signing_bytes(voucher), hasher=lambda m: _blake2b(m, 32))
    except Exception as exc:  # noqa: BLE001 - coincurve raises ValueError and others
        raise PaymentError(f"the voucher's signature does not verify: {exc}") from None
    return secp256k1_address(key.format(compressed=False))


class HomeWallet:
    """:class:`~datatransfer.markets.retrieval.payments.Payments` kept in a
    directory (a node's home): see the module docs for what it is and is
    not. One process at a time (the node's home lock)."""

    def __init__(self, home: str | os.PathLike[str]) -> None:
        from coincurve import PrivateKey

        self.home = Path(home)
        key_path = self.home / KEY_FILE
        if key_path.exists():
            self._key = PrivateKey(bytes.fromhex(key_path.read_text().strip()))
        else:
            self._key = PrivateKey(secrets.token_bytes(32))
            fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(self._key.secret.hex() + "\n")
        self._address = secp256k1_address(self._key.public_key.format(compressed=False))
        self._path = self.home / LEDGER_FILE
        self._state: dict[str, Any] = {"paying": {}, "paid": {}}
        if self._path.exists():
            try:
                self._state = json.loads(self._path.read_text())
            except (OSError, ValueError) as exc:
                raise PaymentError(f"cannot read the wallet's ledger {self._path}: {exc}"
                                   ) from None

    @property
    def address(self) -> Address:
        return self._address

    def _save(self) -> None:
        tmp = self._path.with_suffix(".tmp")
        with tmp.open("w") as fh:
            json.dump(self._state, fh, indent=1, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self._path)

    # -- paying --------------------------------------------------------------------

    async def open_channel(self, payee: Address, funds: int) -> Address:
        if funds < 0:
            raise PaymentError(f"cannot promise a negative amount {funds}")
        seed = self._address.raw + payee.raw + secrets.token_bytes(8)
        channel = Address(bytes((Protocol.ACTOR,)) + _blake2b(seed, 20))
        self._state["paying"][channel.raw.hex()] = {
            "payee": payee.raw.hex(), "funds": funds, "next_lane": 0, "nonces": {}}
        self._save()
        return channel

    def _paying(self, channel: Address) -> dict[str, Any]:
        try:
            return self._state["paying"][channel.raw.hex()]
        except KeyError:
            raise PaymentError(f"{self._address} does not pay from channel {channel}") from None

    async def allocate_lane(self, channel: Address) -> int:
        ch = self._paying(channel)
        lane = ch["next_lane"]
        ch["next_lane"] = lane + 1
        self._save()
        return int(lane)

    async def create_voucher(self, channel: Address, lane: int, total: int) -> SignedVoucher:
        ch = self._paying(channel)
        if total > ch["funds"]:
            raise PaymentError(f"payment channel {channel} holds {ch['funds']} attoFIL, "
                               f"a total of {total} on lane {lane} is beyond it")
        nonce = ch["nonces"].get(str(lane), 0) + 1
        ch["nonces"][str(lane)] = nonce
        self._save()  # before the voucher exists: a nonce is never signed twice
        unsigned = SignedVoucher(channel_addr=channel, amount=total, lane=lane, nonce=nonce)
        data = self._key.sign_recoverable(signing_bytes(unsigned),
                                          hasher=lambda m: _blake2b(m, 32))
        return replace(unsigned, signature=Signature(SigType.SECP256K1, data))

    # -- being paid ----------------------------------------------------------------

    def _check(self, channel: Address, voucher: SignedVoucher) -> tuple[dict[str, Any], str]:
        if voucher.channel_addr != channel:
            raise PaymentError(f"voucher for channel {voucher.channel_addr}, "
                               f"paid as one of {channel}")
        if channel.is_undef or channel.protocol is not Protocol.ACTOR:
            raise PaymentError(f"{channel} is not a payment channel address")
        if voucher.merges or voucher.extra is not None or voucher.secret_hash:
            raise PaymentError("vouchers with merges, extra or a secret are not supported")
        signer = _signer(voucher).raw.hex()
        ch = self._state["paid"].get(channel.raw.hex())
        if ch is not None and ch["payer"] != signer:
            raise PaymentError(f"voucher of channel {channel} not signed by its payer")
        if ch is None:
            ch = {"payer": signer, "lanes": {}, "redeemed": {}}
        key = f"{voucher.lane}/{voucher.nonce}"
        if key not in ch["redeemed"]:
            lane = ch["lanes"].get(str(voucher.lane), {"nonce": 0, "total": 0})
            if voucher.nonce <= lane["nonce"]:
                raise PaymentError(f"voucher nonce {voucher.nonce} on lane {voucher.lane} is "
                                   f"not above the last redeemed, {lane['nonce']}")
        return ch, key

    async def check_voucher(self, channel: Address, voucher: SignedVoucher) -> int:
        self._check(channel, voucher)
        return voucher.amount

    async def redeem_voucher(self, channel: Address, voucher: SignedVoucher, deal: str) -> int:
        ch, key = self._check(channel, voucher)
        done = ch["redeemed"].get(key)
        if done is not None:
            if done[0] != deal:
                raise PaymentError(f"voucher (lane {voucher.lane}, nonce {voucher.nonce}) of "
                                   f"channel {channel} was redeemed for another deal")
            return int(done[1])
        lane = ch["lanes"].setdefault(str(voucher.lane), {"nonce": 0, "total": 0})
        added = max(0, voucher.amount - lane["total"])
        lane["total"] += added
        lane["nonce"] = voucher.nonce
        ch["redeemed"][key] = [deal, added]
        self._state["paid"][channel.raw.hex()] = ch
        self._save()
        log.info("redeemed voucher %s of channel %s for %s: +%d attoFIL (lane total %d)",
                 key, channel, deal, added, lane["total"])
        return added

    # -- reading the ledger --------------------------------------------------------

    def received(self) -> int:
        """attoFIL redeemed in all, over every channel paying this wallet."""
        return sum(added for ch in self._state["paid"].values()
                   for _deal, added in ch["redeemed"].values())

    def redemptions(self) -> int:
        """How many vouchers were redeemed (each once)."""
        return sum(len(ch["redeemed"]) for ch in self._state["paid"].values())
