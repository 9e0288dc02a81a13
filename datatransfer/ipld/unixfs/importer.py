"""Import a byte stream as a UnixFS file DAG (balanced layout, fixed-size chunks).

Two named profiles, matching IPIP-499 (the names Kubo, Boxo and the JS
importer use are accepted too):

``classic`` (``unixfs-v0-2015``)
    CIDv0; leaves are DAG-PB nodes with UnixFS type File holding the chunk;
    256 KiB chunks; 174 links per node.
``modern`` (``unixfs-v1-2025``)
    CIDv1; raw leaves (codec raw); 1 MiB chunks; 1024 links per node.

In both, a file of one chunk is that single leaf (a raw block in ``modern``),
and an empty file is one empty leaf: the DAG-PB node ``{Type: File,
filesize: 0}`` in ``classic`` (``QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH``)
and the empty raw block in ``modern``. Larger files get a balanced tree: every
leaf at the same depth, each parent filled left to right with up to
``max_links`` children. Parents hold UnixFS ``{Type: File, filesize,
blocksizes}`` and links with an empty ``Name`` and a ``Tsize`` of the whole
subtree. The root CIDs equal Kubo's/Boxo's and the JS ``ipfs-unixfs-importer``'s
for the same profile (see ``tests/test_unixfs.py``).

Import streams: chunks are read one at a time and hashed once, and the only
state kept is, per tree level, the links of the parent not yet complete.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import IO, Any

from datatransfer.ipld import protobuf as pb
from datatransfer.ipld._io import read_exact
from datatransfer.ipld.block import Block
from datatransfer.ipld.cid import CID, DAG_PB, RAW
from datatransfer.ipld.dagpb import encode_data_field, encode_link
from datatransfer.ipld.unixfs.pb import DataType, UnixFSData, UnixFSError

KiB = 1024
MiB = 1024 * KiB

#: Largest chunk accepted: blocks over 2 MiB are refused by Bitswap peers.
MAX_CHUNK_SIZE = 2 * MiB - 2 * KiB

#: Flush blocks to the store in batches of about this many bytes.
DEFAULT_BATCH_BYTES = 8 * MiB


@dataclass(frozen=True)
class Profile:
    """How a file is cut and laid out; see the module docstring."""

    name: str
    cid_version: int
    raw_leaves: bool
    chunk_size: int
    max_links: int

    def __post_init__(self) -> None:
        if self.cid_version not in (0, 1):
            raise ValueError(f"cid_version must be 0 or 1, not {self.cid_version}")
        if self.raw_leaves and self.cid_version == 0:
            raise ValueError("raw leaves need CIDv1")
        if not 1 <= self.chunk_size <= MAX_CHUNK_SIZE:
            raise ValueError(f"chunk_size must be in [1, {MAX_CHUNK_SIZE}], not {self.chunk_size}")
        if self.max_links < 2:
            raise ValueError(f"max_links must be at least 2, not {self.max_links}")


CLASSIC = Profile("classic", cid_version=0, raw_leaves=False, chunk_size=256 * KiB, max_links=174)
MODERN = Profile("modern", cid_version=1, raw_leaves=True, chunk_size=1 * MiB, max_links=1024)

PROFILES: dict[str, Profile] = {
    "classic": CLASSIC,
    "modern": MODERN,
    "unixfs-v0-2015": CLASSIC,
    "unixfs-v1-2025": MODERN,
}

Source = str | os.PathLike | bytes | bytearray | memoryview | IO[bytes] | Iterable[bytes]


def get_profile(
    profile: str | Profile = "classic",
    *,
    chunk_size: int | None = None,
    max_links: int | None = None,
) -> Profile:
    """Resolve a profile by name (or pass one through), with optional overrides."""
    if isinstance(profile, Profile):
        base = profile
    else:
        try:
            base = PROFILES[profile]
        except KeyError:
            raise ValueError(
                f"unknown UnixFS profile {profile!r}; known: {sorted(PROFILES)}"
            ) from None
    changes: dict[str, Any] = {}
    if chunk_size is not None:
        changes["chunk_size"] = chunk_size
    if max_links is not None:
        changes["max_links"] = max_links
    return replace(base, **changes) if changes else base


# -- chunking -------------------------------------------------------------------


def _read_chunks(read, size: int) -> Iterator[bytes]:
    """Fixed-size chunks from a ``read(n)`` callable; never an empty chunk."""
    while True:
        chunk = read_exact(read, size)
        if chunk:
            yield chunk
        if len(chunk) < size:
            return


def _rechunk(pieces: Iterable[bytes | bytearray | memoryview], size: int) -> Iterator[bytes]:
    """Fixed-size chunks from an iterable of arbitrary pieces."""
    buf = bytearray()
    for piece in pieces:
        if len(buf) == 0 and len(piece) == size:
            yield bytes(piece)
            continue
        buf += piece
        if len(buf) >= size:
            view = memoryview(buf)
            start = 0
            while len(buf) - start >= size:
                yield bytes(view[start : start + size])
                start += size
            view.release()
            del buf[:start]
    if buf:
        yield bytes(buf)


def chunks(source: Source, size: int) -> Iterator[bytes]:
    """Cut ``source`` into chunks of ``size`` bytes (the last may be shorter).

    ``source`` is a path, a bytes-like object, a binary stream (anything with
    ``read``) or an iterable of bytes-like pieces. A path is opened and closed
    here; a stream is read to its end and left open.
    """
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as fh:
            yield from _read_chunks(fh.read, size)
    elif isinstance(source, (bytes, bytearray, memoryview)):
        yield from _read_chunks(io.BytesIO(source).read, size)
    elif hasattr(source, "read"):
        yield from _read_chunks(source.read, size)
    else:
        yield from _rechunk(source, size)


# -- layout ---------------------------------------------------------------------


class _Entry:
    """A finished child node: its CID, subtree size (Tsize) and file bytes."""

    __slots__ = ("cid", "tsize", "filesize")

    def __init__(self, cid: CID, tsize: int, filesize: int) -> None:
        self.cid = cid
        self.tsize = tsize
        self.filesize = filesize


_FILE_LEAF_TYPE = pb.key(1, pb.VARINT) + pb.encode_varint(int(DataType.FILE))
_DATA_TAG = pb.key(2, pb.LEN)
_FILESIZE_TAG = pb.key(3, pb.VARINT)
_BLOCKSIZE_TAG = pb.key(4, pb.VARINT)
_NODE_DATA_TAG = pb.key(1, pb.LEN)  # PBNode.Data
_LEAF_FIXED = len(_FILE_LEAF_TYPE) + len(_DATA_TAG) + len(_FILESIZE_TAG)


class _Builder:
    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self.levels: list[list[_Entry]] = []

    def leaf(self, chunk: bytes) -> tuple[_Entry, Block]:
        """Turn a chunk into a leaf block."""
        n = len(chunk)
        if self.profile.raw_leaves:
            cid = CID.of(chunk, codec=RAW, version=1)
            return _Entry(cid, n, n), Block._hashed(cid, chunk)
        # DAG-PB node whose Data is UnixFS {Type: File, Data: chunk, filesize: n},
        # written around the chunk with a single copy.
        nvar = pb.encode_varint(n)
        inner_len = _LEAF_FIXED + 2 * len(nvar) + n
        head = _NODE_DATA_TAG + pb.encode_varint(inner_len) + _FILE_LEAF_TYPE + _DATA_TAG + nvar
        block = b"".join((head, chunk, _FILESIZE_TAG, nvar))
        cid = CID.of(block, codec=DAG_PB, version=self.profile.cid_version)
        return _Entry(cid, len(block), n), Block._hashed(cid, bytes(block))

    def empty(self) -> Block:
        """The root of an empty file."""
        if self.profile.raw_leaves:
            return Block.of(b"", codec=RAW)
        data = UnixFSData(DataType.FILE, filesize=0).encode()
        block = encode_data_field(data) + data
        return Block.of(block, codec=DAG_PB, version=self.profile.cid_version)

    def parent(self, children: list[_Entry]) -> tuple[_Entry, Block]:
        parts = [encode_link(child.cid, "", child.tsize) for child in children]
        filesize = 0
        data = bytearray(_FILE_LEAF_TYPE)
        sizes = bytearray()
        tsize = 0
        for child in children:
            filesize += child.filesize
            tsize += child.tsize
            sizes += _BLOCKSIZE_TAG
            sizes += pb.encode_varint(child.filesize)
        data += _FILESIZE_TAG
        data += pb.encode_varint(filesize)
        data += sizes
        parts.append(encode_data_field(data))
        parts.append(bytes(data))
        block = b"".join(parts)
        cid = CID.of(block, codec=DAG_PB, version=self.profile.cid_version)
        return _Entry(cid, tsize + len(block), filesize), Block._hashed(cid, bytes(block))

    def push(self, level: int, entry: _Entry) -> Iterator[Block]:
        """Add a node at ``level``; build parents of levels that fill up."""
        max_links = self.profile.max_links
        levels = self.levels
        while True:
            if len(levels) == level:
                levels.append([])
            row = levels[level]
            row.append(entry)
            if len(row) < max_links:
                return
            entry, block = self.parent(row)
            levels[level] = []
            yield block
            level += 1

    def finish(self) -> Iterator[Block]:
        """Close every open parent; the last block yielded is the root."""
        levels = self.levels
        if not levels or not any(levels):
            yield self.empty()
            return
        level = 0
        while True:
            row = levels[level]
            higher = any(levels[level + 1 :])
            if row:
                if len(row) == 1 and not higher:
                    return  # row[0] is the root, already yielded
                entry, block = self.parent(row)
                levels[level] = []
                if len(levels) == level + 1:
                    levels.append([])
                levels[level + 1].append(entry)
                yield block
            level += 1


def iter_file_blocks(
    source: Source,
    profile: str | Profile = "classic",
    *,
    chunk_size: int | None = None,
    max_links: int | None = None,
) -> Iterator[Block]:
    """Yield every ``(cid, block)`` of the UnixFS file DAG of ``source``.

    Children come before their parents and the root is the last block. A
    chunk that repeats gives the same block again (stores ignore duplicates).
    """
    prof = get_profile(profile, chunk_size=chunk_size, max_links=max_links)
    builder = _Builder(prof)
    leaf = builder.leaf
    push = builder.push
    for chunk in chunks(source, prof.chunk_size):
        entry, block = leaf(chunk)
        yield block
        yield from push(0, entry)
    yield from builder.finish()


def batches(
    blocks: Iterable[Block], batch_bytes: int = DEFAULT_BATCH_BYTES
) -> Iterator[list[Block]]:
    """Group blocks into lists of about ``batch_bytes`` (for ``put_many``)."""
    batch: list[Block] = []
    pending = 0
    for item in blocks:
        batch.append(item)
        pending += len(item[1])
        if pending >= batch_bytes:
            yield batch
            batch = []
            pending = 0
    if batch:
        yield batch


def import_file(
    source: Source,
    blockstore: Any,
    profile: str | Profile = "classic",
    *,
    chunk_size: int | None = None,
    max_links: int | None = None,
    batch_bytes: int = DEFAULT_BATCH_BYTES,
    background: bool = True,
) -> CID:
    """Import ``source`` into ``blockstore`` as a UnixFS file; return the root CID.

    Blocks are written with ``blockstore.put_many`` in batches of about
    ``batch_bytes``; the root's batch is written last, so a store never holds
    a root without its children. With ``background`` (the default) batches
    are written by one helper thread while the next ones are cut and hashed,
    so the store's own verification (a second hash of every block) and its
    I/O overlap the import; at most one batch is in flight, so memory stays
    bounded by three batches plus the open parents whatever the file size.
    An error from the store is raised here.
    """
    blocks = iter_file_blocks(source, profile, chunk_size=chunk_size, max_links=max_links)
    root: CID | None = None
    pool: ThreadPoolExecutor | None = None
    in_flight: Future | None = None
    held: list[Block] | None = None  # the latest batch, written once the next exists
    try:
        for batch in batches(blocks, batch_bytes):
            root = batch[-1][0]
            if held is not None:
                if not background:
                    blockstore.put_many(held)
                else:
                    if in_flight is not None:
                        in_flight.result()  # one batch in flight at most; raises its error
                    if pool is None:
                        pool = ThreadPoolExecutor(1, thread_name_prefix="unixfs-import")
                    in_flight = pool.submit(blockstore.put_many, held)
            held = batch
        if in_flight is not None:
            in_flight.result()
        if held is not None:
            blockstore.put_many(held)  # the last batch (the only one for small files)
    finally:
        blocks.close()  # closes a file opened from a path, even on error
        if pool is not None:
            pool.shutdown(wait=True)
    if root is None:  # pragma: no cover - iter_file_blocks always yields a root
        raise UnixFSError("import produced no blocks")
    return root


def import_bytes(
    data: bytes, profile: str | Profile = "classic", **kwargs: Any
) -> tuple[CID, list[Block]]:
    """Import ``data`` in memory; return the root CID and every block."""
    blocks = list(iter_file_blocks(data, profile, **kwargs))
    return blocks[-1][0], blocks


__all__ = [
    "CLASSIC",
    "MODERN",
    "PROFILES",
    "Profile",
    "batches",
    "chunks",
    "get_profile",
    "import_bytes",
    "import_file",
    "iter_file_blocks",
]
