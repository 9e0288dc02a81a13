"""Durable channel state in sqlite.

The Manager writes a channel here *before* it performs the effect an event
describes (send a message, pause a request), so after a crash the store never
claims less than what the peer may have seen. Each channel is one row: its id
columns plus a DAG-CBOR document of everything else, which keeps the schema
stable while the record grows.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from datatransfer.channel import Channel
from datatransfer.errors import DataTransferError
from datatransfer.ipld import dagcbor
from datatransfer.ipld.cid import CID
from datatransfer.types import ChannelID, PeerID
from statemachine import FINAL_STATUSES, ChannelRecord, Status

SCHEMA_VERSION = 1


class StoreError(DataTransferError):
    """The channel store cannot be opened or holds a record it cannot read."""


def _encode(ch: Channel, rec: ChannelRecord) -> bytes:
    return dagcbor.encode(
        {
            "self": bytes(ch.self_peer),
            "base": ch.base_cid,
            "sel": ch.selector,
            "voucher": list(ch.voucher),
            "sender": bytes(ch.sender),
            "recipient": bytes(ch.recipient),
            "pull": ch.is_pull,
            "total": ch.total_size,
            "restarts": ch.restarts,
            "apause": ch.app_paused,
            "status": int(rec.status),
            "msg": rec.message,
            "sent": rec.sent,
            "recv": rec.received,
            "queued": rec.queued,
            "sent_i": rec.sent_index,
            "recv_i": rec.received_index,
            "queued_i": rec.queued_index,
            "vouchers": [list(v) for v in rec.vouchers],
            "results": [list(r) for r in rec.voucher_results],
        }
    )


def _decode(chid: ChannelID, data: bytes) -> Channel:
    d = dagcbor.decode(data)
    record = ChannelRecord(
        status=Status(d["status"]),
        message=d["msg"],
        sent=d["sent"],
        received=d["recv"],
        queued=d["queued"],
        sent_index=d["sent_i"],
        received_index=d["recv_i"],
        queued_index=d["queued_i"],
        vouchers=[tuple(v) for v in d["vouchers"]],
        voucher_results=[tuple(r) for r in d["results"]],
    )
    base = d["base"]
    if not isinstance(base, CID):
        raise StoreError(f"channel {chid}: base CID is not a link")
    return Channel(
        channel_id=chid,
        self_peer=PeerID(d["self"]),
        base_cid=base,
        selector=d["sel"],
        voucher=tuple(d["voucher"]),
        sender=PeerID(d["sender"]),
        recipient=PeerID(d["recipient"]),
        is_pull=d["pull"],
        total_size=d["total"],
        record=record,
        restarts=d["restarts"],
        app_paused=d["apause"],
    )


class ChannelStore:
    """Channels persisted in sqlite (``":memory:"`` for tests).

    Thread-safe; each :meth:`save` is its own committed transaction.
    """

    def __init__(self, path: str | Path = ":memory:") -> None:
        self.path = str(path)
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise StoreError(f"channel store {self.path} has schema {version}, "
                                 f"this version reads {SCHEMA_VERSION}")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS channels ("
                " initiator BLOB NOT NULL, responder BLOB NOT NULL, id INTEGER NOT NULL,"
                " status INTEGER NOT NULL, doc BLOB NOT NULL,"
                " PRIMARY KEY (initiator, responder, id))"
            )
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open channel store {self.path}: {exc}") from exc
        self._lock = threading.Lock()

    def save(self, ch: Channel, *, record: ChannelRecord | None = None) -> None:
        """Write the channel durably (insert or replace), with ``record`` in
        place of its current record if given (the record about to be applied:
        see :meth:`Manager._fire <datatransfer.manager.Manager._fire>`).
        Raises :class:`StoreError` when the record cannot be stored."""
        chid = ch.channel_id
        if record is None:
            record = ch.record
        try:
            doc = _encode(ch, record)
        except dagcbor.DagCborError as exc:
            raise StoreError(f"channel {chid} cannot be stored: {exc}") from exc
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO channels (initiator, responder, id, status, doc)"
                " VALUES (?, ?, ?, ?, ?)",
                (bytes(chid.initiator), bytes(chid.responder), chid.id,
                 int(record.status), doc),
            )

    def load(self, chid: ChannelID) -> Channel | None:
        with self._lock:
            row = self._db.execute(
                "SELECT doc FROM channels WHERE initiator=? AND responder=? AND id=?",
                (bytes(chid.initiator), bytes(chid.responder), chid.id),
            ).fetchone()
        return None if row is None else self._read(chid, row[0])

    def all(self) -> Iterator[Channel]:
        """Every stored channel."""
        with self._lock:
            rows = self._db.execute(
                "SELECT initiator, responder, id, doc FROM channels"
            ).fetchall()
        for ini, resp, tid, doc in rows:
            yield self._read(ChannelID(PeerID(ini), PeerID(resp), tid), doc)

    def live(self) -> Iterator[Channel]:
        """Every stored channel that has not reached a final status."""
        finals = tuple(int(x) for x in FINAL_STATUSES)
        with self._lock:
            rows = self._db.execute(
                "SELECT initiator, responder, id, doc FROM channels"
                f" WHERE status NOT IN ({','.join('?' * len(finals))})", finals
            ).fetchall()
        for ini, resp, tid, doc in rows:
            yield self._read(ChannelID(PeerID(ini), PeerID(resp), tid), doc)

    def count_by_status(self) -> dict[Status, int]:
        """How many channels the store holds in each status."""
        with self._lock:
            rows = self._db.execute(
                "SELECT status, COUNT(*) FROM channels GROUP BY status").fetchall()
        return {Status(status): n for status, n in rows}

    def max_transfer_id(self, initiator: PeerID) -> int:
        """The highest transfer id this initiator has used (0 if none), so a
        restarted node never reuses one."""
        with self._lock:
            row = self._db.execute(
                "SELECT MAX(id) FROM channels WHERE initiator=?", (bytes(initiator),)
            ).fetchone()
        return row[0] or 0

    def _read(self, chid: ChannelID, doc: bytes) -> Channel:
        try:
            return _decode(chid, doc)
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"channel {chid}: unreadable record: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> ChannelStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
