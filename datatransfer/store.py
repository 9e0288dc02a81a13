"""Durable channel state: the :class:`ChannelStore` interface and its
implementations.

The Manager writes a channel here *before* it applies the record and performs
the effect an event describes (send a message, pause a request), so after a
crash the store never claims less than what the peer may have seen, and a
record the store refuses changes nothing. The interface is narrow on purpose
(save one channel, load one, list the live ones, count by status, the highest
transfer id of an initiator, keep a refused request) so that a networked
database shared by a fleet of nodes can implement it. Every implementation keeps a channel as its id plus
the DAG-CBOR document of :func:`encode_channel`, which keeps the schema
stable while the record grows.

:class:`SqliteChannelStore` is the embedded default (a file in the node's
home); :class:`MemoryChannelStore` keeps the documents in a dict (tests,
benchmarks, nodes that need no restart).

Refused requests. A request the node refused never became a channel, but
its operator should see it (``datatransfer ls --all``): :meth:`ChannelStore.keep_refused`
keeps it, as a channel in status Failed with the reason as its message,
apart from the channels and bounded in number (the newest ``limit`` are
kept), so a peer sending refused requests without end costs a bounded
store. :meth:`~ChannelStore.all` and :meth:`~ChannelStore.load` find them
(a channel of the same id takes precedence); :meth:`~ChannelStore.live`,
:meth:`~ChannelStore.count_by_status` and
:meth:`~ChannelStore.max_transfer_id` are about channels only.
"""

from __future__ import annotations

import sqlite3
import threading
from abc import ABC, abstractmethod
from collections import OrderedDict
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


def encode_channel(ch: Channel, record: ChannelRecord | None = None) -> bytes:
    """The channel's stored document, with ``record`` in place of its own if
    given; :class:`StoreError` if it cannot be encoded (e.g. a voucher nested
    too deep)."""
    rec = ch.record if record is None else record
    try:
        return _encode(ch, rec)
    except dagcbor.DagCborError as exc:
        raise StoreError(f"channel {ch.channel_id} cannot be stored: {exc}") from exc


def decode_channel(chid: ChannelID, doc: bytes) -> Channel:
    """The channel a stored document describes; :class:`StoreError` if it
    cannot be read."""
    try:
        return _decode(chid, doc)
    except (ValueError, KeyError, TypeError, dagcbor.DagCborError) as exc:
        raise StoreError(f"channel {chid}: unreadable record: {exc}") from exc


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
            "apause": rec.app_paused,
            "vpause": rec.paused_for_voucher,
            "revalid": rec.awaiting_validation,
            "paidfin": rec.paid_while_finalizing,
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
        app_paused=d["apause"],
        # (absent from records stored before these flags were)
        paused_for_voucher=d.get("vpause", False),
        awaiting_validation=d.get("revalid", False),
        paid_while_finalizing=d.get("paidfin", False),
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
    )


class ChannelStore(ABC):
    """Where a node's channels are kept. Implementations must be safe to call
    from worker threads, and :meth:`save` must be durable when it returns."""

    @abstractmethod
    def save(self, ch: Channel, *, record: ChannelRecord | None = None) -> None:
        """Insert or replace the channel, with ``record`` in place of its
        current record if given (the record about to be applied: see
        :meth:`Manager._fire <datatransfer.manager.Manager._fire>`). Raises
        :class:`StoreError` when the record cannot be stored."""

    @abstractmethod
    def load(self, chid: ChannelID) -> Channel | None:
        """The stored channel (else the refused request kept under that id),
        or None."""

    @abstractmethod
    def all(self) -> Iterator[Channel]:
        """Every stored channel, and the refused requests kept (see
        :meth:`keep_refused`)."""

    @abstractmethod
    def live(self) -> Iterator[Channel]:
        """Every stored channel that has not reached a final status."""

    @abstractmethod
    def count_by_status(self) -> dict[Status, int]:
        """How many channels the store holds in each status."""

    @abstractmethod
    def max_transfer_id(self, initiator: PeerID) -> int:
        """The highest transfer id this initiator has used (0 if none), so a
        restarted node never reuses one."""

    @abstractmethod
    def keep_refused(self, ch: Channel, limit: int) -> None:
        """Keep a request this node refused (``ch``: its channel as it would
        have been, in a final status, the reason as its message), apart
        from the channels; then drop the oldest kept beyond ``limit``.
        Raises :class:`StoreError` when it cannot be written."""

    def close(self) -> None:  # noqa: B027 - a store may hold nothing to release
        """Release the store's resources."""

    def __enter__(self) -> ChannelStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class MemoryChannelStore(ChannelStore):
    """Channels kept in this process only, as their stored documents (so a
    record that a durable store would refuse is refused here too)."""

    def __init__(self) -> None:
        self._docs: dict[ChannelID, tuple[Status, bytes]] = {}
        self._refused: OrderedDict[ChannelID, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def save(self, ch: Channel, *, record: ChannelRecord | None = None) -> None:
        doc = encode_channel(ch, record)
        status = (ch.record if record is None else record).status
        with self._lock:
            self._docs[ch.channel_id] = (status, doc)

    def load(self, chid: ChannelID) -> Channel | None:
        with self._lock:
            entry = self._docs.get(chid)
            doc = entry[1] if entry is not None else self._refused.get(chid)
        return None if doc is None else decode_channel(chid, doc)

    def all(self) -> Iterator[Channel]:
        with self._lock:
            items = [(chid, doc) for chid, (_, doc) in self._docs.items()]
            items += [(chid, doc) for chid, doc in self._refused.items() if chid not in self._docs]
        for chid, doc in items:
            yield decode_channel(chid, doc)

    def keep_refused(self, ch: Channel, limit: int) -> None:
        doc = encode_channel(ch)
        with self._lock:
            self._refused.pop(ch.channel_id, None)
            self._refused[ch.channel_id] = doc
            while len(self._refused) > max(limit, 0):
                self._refused.popitem(last=False)

    def live(self) -> Iterator[Channel]:
        with self._lock:
            items = [(c, d) for c, (st, d) in self._docs.items() if st not in FINAL_STATUSES]
        for chid, doc in items:
            yield decode_channel(chid, doc)

    def count_by_status(self) -> dict[Status, int]:
        counts: dict[Status, int] = {}
        with self._lock:
            for status, _ in self._docs.values():
                counts[status] = counts.get(status, 0) + 1
        return counts

    def max_transfer_id(self, initiator: PeerID) -> int:
        with self._lock:
            return max((c.id for c in self._docs if c.initiator == initiator), default=0)


class SqliteChannelStore(ChannelStore):
    """Channels persisted in sqlite (``":memory:"``: a database in memory).

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
            # refused requests (see the module docs): newest has the highest seq
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS refused ("
                " seq INTEGER PRIMARY KEY AUTOINCREMENT,"
                " initiator BLOB NOT NULL, responder BLOB NOT NULL, id INTEGER NOT NULL,"
                " doc BLOB NOT NULL, UNIQUE (initiator, responder, id))"
            )
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open channel store {self.path}: {exc}") from exc
        self._lock = threading.Lock()

    def save(self, ch: Channel, *, record: ChannelRecord | None = None) -> None:
        chid = ch.channel_id
        doc = encode_channel(ch, record)
        if record is None:
            record = ch.record
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO channels (initiator, responder, id, status, doc)"
                " VALUES (?, ?, ?, ?, ?)",
                (bytes(chid.initiator), bytes(chid.responder), chid.id,
                 int(record.status), doc),
            )

    def load(self, chid: ChannelID) -> Channel | None:
        key = (bytes(chid.initiator), bytes(chid.responder), chid.id)
        with self._lock:
            row = self._db.execute(
                "SELECT doc FROM channels WHERE initiator=? AND responder=? AND id=?", key
            ).fetchone()
            if row is None:
                row = self._db.execute(
                    "SELECT doc FROM refused WHERE initiator=? AND responder=? AND id=?", key
                ).fetchone()
        return None if row is None else decode_channel(chid, row[0])

    def all(self) -> Iterator[Channel]:
        with self._lock:
            rows = self._db.execute(
                "SELECT initiator, responder, id, doc FROM channels UNION ALL"
                " SELECT initiator, responder, id, doc FROM refused AS r WHERE NOT EXISTS"
                " (SELECT 1 FROM channels AS c WHERE c.initiator = r.initiator"
                " AND c.responder = r.responder AND c.id = r.id)"
            ).fetchall()
        for ini, resp, tid, doc in rows:
            yield decode_channel(ChannelID(PeerID(ini), PeerID(resp), tid), doc)

    def keep_refused(self, ch: Channel, limit: int) -> None:
        chid = ch.channel_id
        doc = encode_channel(ch)
        try:
            with self._lock:
                self._db.execute("BEGIN")
                try:
                    self._db.execute(
                        "INSERT OR REPLACE INTO refused (initiator, responder, id, doc)"
                        " VALUES (?, ?, ?, ?)",
                        (bytes(chid.initiator), bytes(chid.responder), chid.id, doc))
                    self._db.execute(
                        "DELETE FROM refused WHERE seq NOT IN"
                        " (SELECT seq FROM refused ORDER BY seq DESC LIMIT ?)", (max(limit, 0),))
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot keep the refused request {chid} in {self.path}: {exc}"
                             ) from exc

    def live(self) -> Iterator[Channel]:
        finals = tuple(int(x) for x in FINAL_STATUSES)
        return self._select(f" WHERE status NOT IN ({','.join('?' * len(finals))})", finals)

    def _select(self, where: str, params: tuple[Any, ...]) -> Iterator[Channel]:
        with self._lock:
            rows = self._db.execute(
                "SELECT initiator, responder, id, doc FROM channels" + where, params
            ).fetchall()
        for ini, resp, tid, doc in rows:
            yield decode_channel(ChannelID(PeerID(ini), PeerID(resp), tid), doc)

    def count_by_status(self) -> dict[Status, int]:
        with self._lock:
            rows = self._db.execute(
                "SELECT status, COUNT(*) FROM channels GROUP BY status").fetchall()
        return {Status(status): n for status, n in rows}

    def max_transfer_id(self, initiator: PeerID) -> int:
        with self._lock:
            row = self._db.execute(
                "SELECT MAX(id) FROM channels WHERE initiator=?", (bytes(initiator),)
            ).fetchone()
        return row[0] or 0

    def close(self) -> None:
        with self._lock:
            self._db.close()
