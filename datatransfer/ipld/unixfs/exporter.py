"""Read a UnixFS file DAG back as its bytes.

Handles raw leaves, DAG-PB leaves of type File or Raw (old Kubo wrote Raw
leaves), nested File nodes with data and links, inline identity CIDs and
empty files. Sizes are checked on the way: a node's ``blocksizes`` must match
its links one to one and each child's actual length, and ``filesize`` must
equal the bytes under the node, so a DAG that lies about its sizes is refused
(:class:`UnixFSError`) rather than silently giving other bytes.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Iterator
from typing import IO, Any

from datatransfer.ipld import dagpb
from datatransfer.ipld.blockstore import block_loader
from datatransfer.ipld.cid import CID, DAG_PB, RAW
from datatransfer.ipld.unixfs.pb import DataType, UnixFSData, UnixFSError

#: Deepest file tree accepted (a 1024-wide tree of 1 MiB chunks 8 deep holds
#: far more than any disk).
MAX_DEPTH = 32

_FILE_TYPES = (DataType.FILE, DataType.RAW)


def _walk(cid: CID, load: Callable[[CID], bytes], depth: int) -> Generator[bytes, None, int]:
    if depth > MAX_DEPTH:
        raise UnixFSError(f"file DAG deeper than {MAX_DEPTH} levels")
    block = load(cid)
    if cid.codec == RAW:
        if block:
            yield block
        return len(block)
    if cid.codec != DAG_PB:
        raise UnixFSError(f"{cid} is {cid.codec_name}, not a UnixFS (dag-pb or raw) block")
    node = dagpb.decode(block)
    if "Data" not in node:
        raise UnixFSError(f"{cid} has no UnixFS Data")
    fs = UnixFSData.decode(node["Data"])
    if fs.type not in _FILE_TYPES:
        raise UnixFSError(f"{cid} is a UnixFS {fs.type.name.lower()}, not a file")
    links = node["Links"]
    if links and len(fs.blocksizes) != len(links):
        raise UnixFSError(f"{cid} has {len(links)} links but {len(fs.blocksizes)} blocksizes")
    total = 0
    if fs.data:
        yield fs.data
        total += len(fs.data)
    for link, expected in zip(links, fs.blocksizes, strict=False):
        got = yield from _walk(link["Hash"], load, depth + 1)
        if got != expected:
            raise UnixFSError(
                f"child {link['Hash']} of {cid} holds {got} bytes, blocksizes says {expected}"
            )
        total += got
    if fs.filesize is not None and fs.filesize != total:
        raise UnixFSError(f"{cid} holds {total} bytes, filesize says {fs.filesize}")
    return total


def iter_file(cid: CID, blockstore: Any) -> Iterator[bytes]:
    """Yield the bytes of the UnixFS file ``cid`` in order, one block at a time.

    ``blockstore`` is a :class:`~datatransfer.ipld.blockstore.Blockstore` or
    any ``get(cid) -> bytes`` callable; a missing block raises whatever it
    raises (``BlockNotFound`` for a blockstore).
    """
    yield from _walk(cid, block_loader(blockstore), 0)


def export_file(cid: CID, blockstore: Any, out: IO[bytes] | str | os.PathLike) -> int:
    """Write the bytes of the UnixFS file ``cid`` to ``out`` (a binary stream or
    a path); return how many were written."""
    if isinstance(out, (str, os.PathLike)):
        with open(out, "wb") as fh:
            return export_file(cid, blockstore, fh)
    written = 0
    write = out.write
    for piece in iter_file(cid, blockstore):
        write(piece)
        written += len(piece)
    return written


def cat(cid: CID, blockstore: Any) -> bytes:
    """The whole file in memory (small files and tests)."""
    return b"".join(iter_file(cid, blockstore))
