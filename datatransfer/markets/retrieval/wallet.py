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
atomically (a new file, fsynced, renamed over the old): the payer its
channels, lanes and nonces (a restarted client never signs a nonce twice),
the payee every voucher it redeemed, by (channel, lane, nonce), with the
deal it paid (redeeming the same voucher again adds nothing, so a restarted
provider that rebuilds a deal's funds from its channel record charges
nothing twice). The payee's redemptions go first to ``HOME/paych.journal``
(one line each, appended), folded into the ledger by the next process to
redeem, or when long (:func:`read_ledger` reads both).

What a payment round costs in writes (an fsync is milliseconds, rewriting
the ledger a few more, and a round stalls the data): the payer reserves
nonces :data:`NONCE_BLOCK` at a time, one durable write per block rather
than per voucher (:meth:`HomeWallet.create_voucher`); the payee appends
each redemption to the journal before it answers and fsyncs it when the
deal completes (:meth:`HomeWallet.redeem_voucher`, :meth:`HomeWallet.sync`).
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

__all__ = ["JOURNAL_FILE", "KEY_FILE", "LEDGER_FILE", "HomeWallet", "read_ledger",
           "secp256k1_address"]

KEY_FILE = "wallet.key"
LEDGER_FILE = "paych.json"

#: The payee's redemptions since the ledger was last written whole, a JSON
#: list a line: [channel, payer, lane, nonce, deal, added] (hex addresses).
JOURNAL_FILE = "paych.journal"

#: Nonces a payer reserves on a lane with one durable write.
NONCE_BLOCK = 32

#: Journal lines past which :meth:`HomeWallet.sync` folds it into the ledger.
JOURNAL_FOLD_LINES = 1024


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _apply(state: dict[str, Any], entry: list[Any]) -> None:
    """Apply one journal entry (a redemption) to a ledger; one already
    there (same channel, lane and nonce) changes nothing."""
    channel, payer, lane, nonce, deal, added = entry
    ch = state["paid"].setdefault(channel, {"payer": payer, "lanes": {}, "redeemed": {}})
    key = f"{lane}/{nonce}"
    if key in ch["redeemed"]:
        return
    totals = ch["lanes"].setdefault(str(lane), {"nonce": 0, "total": 0})
    totals["total"] += added
    totals["nonce"] = max(totals["nonce"], nonce)
    ch["redeemed"][key] = [deal, added]


def read_ledger(home: str | os.PathLike[str]) -> dict[str, Any]:
    """The wallet's ledger in ``home`` as the wallet has it: the ledger file
    with the journal's redemptions applied (a torn last line, from a crash
    mid-write, is left out). Writes nothing: a reader may use it while a
    node runs on the home."""
    home = Path(home)
    state: dict[str, Any] = {"paying": {}, "paid": {}}
    path = home / LEDGER_FILE
    try:
        if path.exists():
            state = json.loads(path.read_text())
        journal = home / JOURNAL_FILE
        lines = journal.read_bytes().splitlines() if journal.exists() else []
    except (OSError, ValueError) as exc:
        raise PaymentError(f"cannot read the wallet's ledger in {home}: {exc}") from None
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            break  # torn by a crash: nothing after it was acknowledged
        _apply(state, entry)
    return state


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
        self._journal_path = self.home / JOURNAL_FILE
        #: (channel, lane) -> the last nonce this process signed on it (the
        #: ledger holds the highest reserved, at or above it)
        self._signed: dict[tuple[str, int], int] = {}
        #: the journal, open for appending (once something is redeemed), and
        #: whether it holds lines not yet fsynced
        self._journal: int | None = None
        self._journal_unsynced = False
        self._journal_lines = 0
        #: how many times the ledger was written durably (fsynced)
        self.durable_writes = 0
        self._state = read_ledger(self.home)

    @property
    def address(self) -> Address:
        return self._address

    def _save(self) -> None:
        """Write the whole ledger durably: a new file, fsynced, renamed over
        the old, so a reader sees the old or the new ledger whole."""
        tmp = self._path.with_suffix(".tmp")
        with tmp.open("w") as fh:
            json.dump(self._state, fh, indent=1, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self._path)
        self.durable_writes += 1

    def _append(self, entry: list[Any]) -> None:
        """Append one redemption to the journal (see :meth:`redeem_voucher`)."""
        if self._journal is None:
            # (not when the wallet is made: only a node holding the home's
            # lock writes) fold what an earlier process journalled into the
            # ledger, dropping a line a crash tore, so that the lines
            # appended now are not read after it
            if self._journal_path.exists() and self._journal_path.stat().st_size:
                self._save()
                os.truncate(self._journal_path, 0)
            self._journal = os.open(self._journal_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND,
                                    0o600)
            _fsync_dir(self.home)  # (the journal's name survives a machine crash)
        line = (json.dumps(entry, separators=(",", ":")) + "\n").encode()
        if os.write(self._journal, line) != len(line):
            raise PaymentError(f"short write to the wallet's journal {self._journal_path}")
        self._journal_unsynced = True
        self._journal_lines += 1

    async def sync(self) -> None:
        """Make every redemption so far durable: one fsync of the journal,
        if it holds lines not yet synced (a provider calls it before it
        tells a client a deal completed). A long journal is folded into
        the ledger then."""
        if self._journal is None or not self._journal_unsynced:
            return
        if self._journal_lines >= JOURNAL_FOLD_LINES:
            self._save()
            os.ftruncate(self._journal, 0)
            self._journal_lines = 0
        os.fsync(self._journal)
        self._journal_unsynced = False

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
        # The ledger holds the highest nonce reserved on the lane, written
        # durably before any voucher with a nonce up to it exists: a
        # restarted payer starts above it, so a nonce is never signed twice;
        # those reserved and never signed are only skipped (a payee takes
        # any nonce above the last it redeemed). A block of NONCE_BLOCK
        # nonces costs one fsync instead of one per voucher.
        reserved = ch["nonces"].get(str(lane), 0)
        key = (channel.raw.hex(), lane)
        last = self._signed.get(key)
        nonce = (reserved if last is None else last) + 1
        if nonce > reserved:
            ch["nonces"][str(lane)] = nonce + NONCE_BLOCK - 1
            try:
                self._save()
            except BaseException:
                ch["nonces"][str(lane)] = reserved  # not reserved: none of it may be signed
                raise
        self._signed[key] = nonce
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
        """Redeem ``voucher`` for ``deal`` (idempotent per (channel, lane,
        nonce)). The redemption is appended to the journal before this
        returns, so that the process dying at any point after loses none;
        it is not fsynced here (an fsync, and before it rewriting the whole
        ledger, per payment round stalled the data for milliseconds each
        time), but by :meth:`sync`, which a provider calls before it tells
        the client the deal completed.

        Why that charges nothing twice and releases nothing unpaid: a line
        written is the kernel's once this returns, so a process crash loses
        none; only the machine going down can lose redemptions, and only
        those since the last fsync, all of deals that had not completed
        (their ``Completed`` waits for :meth:`sync`); a line torn by the
        crash is left out (it was the last). A lost redemption costs the
        client nothing: the provider rebuilds a deal's funds from the
        vouchers in its channel record, redeeming them again (the ledger,
        going back to an earlier state, takes them again: their nonces are
        above the ones it kept), and a voucher it lost with the record is
        asked for again, which the client answers with the same cumulative
        voucher (:mod:`~datatransfer.markets.retrieval.client`), never a
        second payment. Vouchers are cumulative per lane, so what a lane
        pays is its highest voucher, whatever was redeemed before: nothing
        redeemed twice adds twice. Data goes out only for funds redeemed
        in this process, on vouchers the client signed: the client paid for
        it. What a machine crash can cost is the provider's: a lost lane
        total lets a voucher already redeemed for an unfinished deal be
        redeemed once more (for another deal), as a channel store written
        without fsync (sqlite's ``synchronous=NORMAL``) can lose that
        deal's record the same way."""
        ch, key = self._check(channel, voucher)
        done = ch["redeemed"].get(key)
        if done is not None:
            if done[0] != deal:
                raise PaymentError(f"voucher (lane {voucher.lane}, nonce {voucher.nonce}) of "
                                   f"channel {channel} was redeemed for another deal")
            return int(done[1])
        lane = ch["lanes"].get(str(voucher.lane), {"nonce": 0, "total": 0})
        added = max(0, voucher.amount - lane["total"])
        entry = [channel.raw.hex(), ch["payer"], voucher.lane, voucher.nonce, deal, added]
        self._append(entry)  # before it counts: a failed write redeems nothing
        _apply(self._state, entry)
        log.info("redeemed voucher %s of channel %s for %s: +%d attoFIL (lane total %d)",
                 key, channel, deal, added, lane["total"] + added)
        return added

    # -- reading the ledger --------------------------------------------------------

    def received(self) -> int:
        """attoFIL redeemed in all, over every channel paying this wallet."""
        return sum(added for ch in self._state["paid"].values()
                   for _deal, added in ch["redeemed"].values())

    def redemptions(self) -> int:
        """How many vouchers were redeemed (each once)."""
        return sum(len(ch["redeemed"]) for ch in self._state["paid"].values())
