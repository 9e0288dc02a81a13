"""What a home knows about peers: the node's address book, and names.

Two JSON files in the home, each rewritten whole and atomically (a
temporary file in the home, fsync, ``os.replace``), so a reader sees the old
file or the new one, never half of one:

* ``peers.json``, the **address book**: for each peer this node dialled, the
  addresses it was reached at and when. :class:`~datatransfer.node.Node`
  loads it into its libp2p peerstore when it starts, before its Manager
  restarts the channels in its store; libp2p keeps addresses in memory
  only, so without it a ``serve`` started on a home whose channel a killed
  ``pull`` left could not dial the peer ("No known addresses to peer").
  Only the node holding the home's lock writes it. Bounded: a peer with no
  live channel is forgotten :data:`FORGET_AFTER` seconds after it was last
  dialled, and past :data:`MAX_PEERS` peers the ones dialled longest ago go
  first; the peers of live channels are always kept. Each peer keeps its
  :data:`MAX_ADDRS` latest addresses. A file that cannot be read is set
  aside with a warning (it is a cache: the next dial learns the address
  again), never a reason not to start.
* ``contacts.json``, **names** people give peer addresses (``datatransfer
  peers add NAME MULTIADDR``, then ``pull NAME CID``). Any process may
  change it, while a node runs too: each change is a read-modify-write
  under an ``flock`` of ``contacts.lock``. Unlike the address book it is
  the user's data: a broken file is an error, not replaced.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datatransfer.types import PeerID

log = logging.getLogger("datatransfer.peers")

#: The address book's file name in the home.
ADDRESS_BOOK_FILE = "peers.json"
#: The contacts' file name in the home, and the lock file serialising changes.
CONTACTS_FILE = "contacts.json"
CONTACTS_LOCK = "contacts.lock"
#: Most peers the address book keeps beside the peers of live channels.
MAX_PEERS = 256
#: Most addresses kept per peer (the latest first).
MAX_ADDRS = 8
#: Seconds after its last dial a peer with no live channel is forgotten (30 days).
FORGET_AFTER = 30 * 24 * 3600.0

FORMAT_VERSION = 1

__all__ = [
    "ADDRESS_BOOK_FILE",
    "CONTACTS_FILE",
    "FORGET_AFTER",
    "MAX_ADDRS",
    "MAX_PEERS",
    "AddressBook",
    "ContactError",
    "Contacts",
    "NameTaken",
    "UnknownName",
    "check_name",
]


def write_json_atomic(path: Path, doc: Any) -> None:
    """Write ``doc`` to ``path`` so that a reader (another process, or this
    one after a crash) finds either the previous content or this one."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(doc, out, indent=1, sort_keys=True)
            out.write("\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
        tmp = ""
    finally:
        if tmp:
            Path(tmp).unlink(missing_ok=True)


# -- the address book ----------------------------------------------------------------


@dataclass
class _Entry:
    addrs: list[str]
    seen: float


class AddressBook:
    """Addresses of the peers this node dialled (``peers.json``; see the module
    docs). ``clock`` gives the time in seconds (tests pass their own)."""

    def __init__(self, path: Path, *, max_peers: int = MAX_PEERS,
                 forget_after: float = FORGET_AFTER,
                 clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.max_peers = max_peers
        self.forget_after = forget_after
        self.clock = clock
        self._entries: dict[PeerID, _Entry] = {}
        self._changes = 0  # changes made; the last one written, under the lock:
        self._written = 0
        self._write_lock = threading.Lock()

    @classmethod
    def load(cls, home: str | os.PathLike[str], **options: Any) -> AddressBook:
        """The home's address book; empty when there is none or it is unreadable."""
        book = cls(Path(home) / ADDRESS_BOOK_FILE, **options)
        try:
            doc = json.loads(book.path.read_text(encoding="utf-8"))
            peers = doc["peers"]
            if doc.get("version") != FORMAT_VERSION or not isinstance(peers, dict):
                raise ValueError(f"not an address book of version {FORMAT_VERSION}")
            for text, entry in peers.items():
                addrs = [a for a in entry["addrs"] if isinstance(a, str)]
                book._entries[PeerID.from_base58(text)] = _Entry(addrs, float(entry["seen"]))
        except FileNotFoundError:
            pass
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("address book %s is unreadable (%s); starting a new one",
                        book.path, exc)
            book._entries.clear()
        return book

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[tuple[PeerID, list[str]]]:
        """(peer, addresses, the latest first) for every peer, most recent first."""
        for peer, entry in sorted(self._entries.items(), key=lambda kv: -kv[1].seen):
            yield peer, list(entry.addrs)

    def addrs(self, peer: PeerID) -> list[str]:
        """The addresses kept for ``peer`` (the latest first); [] when none."""
        entry = self._entries.get(peer)
        return list(entry.addrs) if entry else []

    def record(self, peer: PeerID, addrs: Iterable[str],
               keep: Callable[[], Iterable[PeerID]] = tuple) -> None:
        """Note that ``peer`` was reached at ``addrs`` (transport addresses,
        no ``/p2p`` part) now. When that makes the book too big, it is pruned,
        sparing ``peer`` and the peers ``keep()`` names (those of live
        channels; only asked then)."""
        entry = self._entries.pop(peer, None)
        old = entry.addrs if entry else []
        merged = list(dict.fromkeys([*map(str, addrs), *old]))[:MAX_ADDRS]
        self._entries[peer] = _Entry(merged, self.clock())
        self._changes += 1
        if len(self._entries) > self.max_peers:
            self.prune({peer, *keep()})

    def prune(self, keep: Iterable[PeerID]) -> bool:
        """Forget peers not in ``keep`` dialled longer than ``forget_after``
        ago, then the oldest others while there are more than ``max_peers``;
        return whether any went."""
        keep = set(keep)
        before = len(self._entries)
        limit = self.clock() - self.forget_after
        for peer in [p for p, e in self._entries.items() if p not in keep and e.seen < limit]:
            del self._entries[peer]
        extra = len(self._entries) - self.max_peers
        if extra > 0:
            oldest = sorted((e.seen, bytes(p)) for p, e in self._entries.items() if p not in keep)
            for _, raw in oldest[:extra]:
                del self._entries[PeerID(raw)]
        if len(self._entries) != before:
            self._changes += 1
            return True
        return False

    def snapshot(self) -> tuple[int, dict[str, Any]]:
        """The book as it is now, for :meth:`write` (possibly in another
        thread: the file write and its fsync take milliseconds)."""
        peers = {str(p): {"addrs": list(e.addrs), "seen": e.seen}
                 for p, e in self._entries.items()}
        return self._changes, {"version": FORMAT_VERSION, "peers": peers}

    def write(self, snapshot: tuple[int, dict[str, Any]]) -> None:
        """Write a :meth:`snapshot` to the file (atomically), unless a later
        one was written already (writes from several threads end in order)."""
        version, doc = snapshot
        with self._write_lock:
            if version < self._written:
                return
            write_json_atomic(self.path, doc)
            self._written = version

    def save(self) -> None:
        """Write the book to its file (atomically)."""
        self.write(self.snapshot())


# -- names -----------------------------------------------------------------------------


class ContactError(ValueError):
    """A bad or unknown peer name, a name taken, or a contacts file that
    cannot be used; the message is one line saying which."""


class NameTaken(ContactError):
    """A name given to another address already (replace it with ``force``)."""


class UnknownName(ContactError):
    """No address has that name."""


#: A peer name: a letter or digit first (so never a multiaddr's '/'), then
#: letters, digits, '.', '_', '-' or '@'; at most 64 characters.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")


def check_name(name: str) -> str:
    """``name`` if it can name a peer; :class:`ContactError` saying why not."""
    if name.startswith("/"):
        raise ContactError(f"a peer name cannot start with '/' (that is a multiaddr): {name}")
    if not _NAME.fullmatch(name):
        raise ContactError(
            f"bad peer name {name!r}: use up to 64 letters, digits, '.', '_', '-' or '@', "
            "starting with a letter or digit")
    return name


class Contacts:
    """Names of peer addresses kept in a home (``contacts.json``; see the
    module docs). Addresses are stored as given (checked by the caller)."""

    def __init__(self, home: str | os.PathLike[str]) -> None:
        self.path = Path(home) / CONTACTS_FILE
        self._lock_path = Path(home) / CONTACTS_LOCK

    def all(self) -> dict[str, str]:
        """Every name and its address, sorted by name."""
        doc = self._read()
        return dict(sorted(doc.items()))

    def get(self, name: str) -> str | None:
        """The address named ``name``, or None."""
        return self._read().get(name)

    def add(self, name: str, addr: str, *, force: bool = False) -> str | None:
        """Name ``addr`` ``name``; a name taken is refused unless ``force``.
        Returns the address the name had before (None if it was new)."""
        check_name(name)
        with self._locked():
            doc = self._read()
            old = doc.get(name)
            if old is not None and not force:
                raise NameTaken(f"a peer named {name} exists ({old}); use --force to "
                                   "replace it")
            doc[name] = addr
            self._write(doc)
        return old

    def remove(self, name: str) -> str:
        """Forget ``name``; return the address it had. Unknown names raise."""
        with self._locked():
            doc = self._read()
            if name not in doc:
                raise UnknownName(f"no peer named {name} in {self.path.parent}")
            addr = doc.pop(name)
            self._write(doc)
        return addr

    def _read(self) -> dict[str, str]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise ContactError(f"cannot read {self.path}: {exc.strerror or exc}") from None
        try:
            doc = json.loads(text)
            contacts = doc["contacts"]
            if doc.get("version") != FORMAT_VERSION or not isinstance(contacts, dict) or not all(
                    isinstance(k, str) and isinstance(v, str) for k, v in contacts.items()):
                raise ValueError(f"not a contacts file of version {FORMAT_VERSION}")
        except (ValueError, KeyError, TypeError) as exc:
            raise ContactError(f"{self.path} is not a contacts file ({exc}); "
                               "fix or remove it") from None
        return dict(contacts)

    def _write(self, contacts: dict[str, str]) -> None:
        try:
            write_json_atomic(self.path, {"version": FORMAT_VERSION, "contacts": contacts})
        except OSError as exc:
            raise ContactError(f"cannot write {self.path}: {exc.strerror or exc}") from None

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the contacts' lock: read-modify-write by one process at a time."""
        try:
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise ContactError(f"cannot open {self._lock_path}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)
