"""CAR v1 (Content Addressable aRchive): a stream of blocks with a header.

Layout::

    varint(len(header)) | header (DAG-CBOR {"roots": [CID, ...], "version": 1})
    varint(len(cid) + len(data)) | cid | data      -- once per block

:class:`CarReader` streams: it reads one section at a time from any binary
stream, checks each block against its CID (:class:`HashMismatch`) and refuses
a malformed header or section with :class:`CarError`. Sizes are bounded
(``max_header_size``, ``max_section_size``) so a hostile file cannot make it
allocate without limit. A block whose CID names a hash function this library
cannot compute is refused with :class:`UnverifiableBlock` unless the reader
was opened with ``allow_unverified=True``.

:class:`CarWriter` writes the header at once and then one section per
:meth:`~CarWriter.put`, skipping blocks already written.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import IO, Any, NamedTuple

from datatransfer.ipld import dagcbor, multihash
from datatransfer.ipld._io import read_exact
from datatransfer.ipld.blockstore import block_loader
from datatransfer.ipld.cid import CID, DAG_PB, RAW
from datatransfer.ipld.errors import CIDError, HashMismatch, IPLDError, MultihashError
from datatransfer.ipld.varint import MAX_VARINT_BYTES, decode_uvarint, encode_uvarint

#: Largest header accepted when reading.
MAX_HEADER_SIZE = 1 << 20
#: Largest section (CID plus block) accepted when reading; generous next to
#: the 2 MiB block limit of Bitswap and graphsync.
MAX_SECTION_SIZE = 8 << 20


class CarError(IPLDError):
    """A CAR file that is malformed, truncated or of an unsupported version."""


class UnverifiableBlock(CarError):
    """A block whose CID uses a hash function this library cannot compute."""

    def __init__(self, cid: CID) -> None:
        self.cid = cid
        super().__init__(
            f"cannot verify block {cid}: unsupported hash function 0x{cid.hash_code:x}"
        )


class CarSection(NamedTuple):
    """One block of a CAR and where it sits in the file."""

    cid: CID
    data: bytes
    #: Offset of the section (its length varint) from the start of the file.
    offset: int
    #: Length of the whole section, varint included.
    length: int
    #: Offset of the block bytes (after the CID).
    data_offset: int


def _read_varint(read) -> tuple[int, int] | None:
    """Read a varint; ``(value, byte_count)``, or None at a clean end of input."""
    raw = bytearray()
    while True:
        b = read(1)
        if not b:
            if raw:
                raise CarError("truncated section length")
            return None
        raw += b
        if b[0] < 0x80:
            break
        if len(raw) >= MAX_VARINT_BYTES:
            raise CarError("section length varint longer than 9 bytes")
    try:
        value, _ = decode_uvarint(raw)
    except IPLDError as exc:
        raise CarError(f"bad section length: {exc}") from None
    return value, len(raw)


def decode_header(data: bytes) -> list[CID]:
    """Check a CARv1 header's bytes; return its roots."""
    try:
        header = dagcbor.decode(data)
    except IPLDError as exc:
        raise CarError(f"CAR header is not DAG-CBOR: {exc}") from None
    if not isinstance(header, dict):
        raise CarError("CAR header is not a map")
    version = header.get("version")
    if version == 2:
        raise CarError("CARv2 is not supported (only CARv1)")
    if type(version) is not int or version != 1:
        raise CarError(f"unsupported CAR version {version!r}")
    extra = header.keys() - {"version", "roots"}
    if extra:
        raise CarError(f"unexpected CAR header field(s) {sorted(extra)}")
    roots = header.get("roots")
    if not isinstance(roots, list) or not all(isinstance(r, CID) for r in roots):
        raise CarError("CAR header roots must be a list of CIDs")
    return roots


def encode_header(roots: Iterable[CID]) -> bytes:
    """The bytes of a CARv1 header (length prefix included)."""
    roots = list(roots)
    if not all(isinstance(r, CID) for r in roots):
        raise CarError("CAR roots must be CIDs")
    body = dagcbor.encode({"roots": roots, "version": 1})
    return encode_uvarint(len(body)) + body


class CarReader:
    """Read a CARv1 stream: ``.roots``, then iterate ``(cid, data)`` pairs.

    The header is read when the reader is made. Iterating (or
    :meth:`sections`) consumes the stream, so a reader can be iterated once.
    When given a path, the reader opens the file and :meth:`close` (or the
    ``with`` statement) closes it; a stream passed in is left open.
    """

    def __init__(
        self,
        stream: IO[bytes] | str | os.PathLike,
        *,
        verify: bool = True,
        allow_unverified: bool = False,
        max_header_size: int = MAX_HEADER_SIZE,
        max_section_size: int = MAX_SECTION_SIZE,
    ) -> None:
        self._owned = isinstance(stream, (str, os.PathLike))
        self._stream: IO[bytes] = open(stream, "rb") if self._owned else stream  # type: ignore[arg-type]
        self._read = self._stream.read
        self.verify = verify
        self.allow_unverified = allow_unverified
        self.max_section_size = max_section_size
        self._consumed = False
        try:
            got = _read_varint(self._read)
            if got is None:
                raise CarError("empty CAR: no header")
            length, nbytes = got
            if length == 0:
                raise CarError("CAR header length is zero")
            if length > max_header_size:
                raise CarError(f"CAR header of {length} bytes exceeds {max_header_size}")
            body = read_exact(self._read, length)
            if len(body) != length:
                raise CarError("truncated CAR header")
            self.roots: list[CID] = decode_header(body)
            self.header_length = nbytes + length
        except BaseException:
            self.close()
            raise

    def sections(self) -> Iterator[CarSection]:
        """Yield every block with its position in the file."""
        if self._consumed:
            raise CarError("a CarReader can be iterated only once")
        self._consumed = True
        read = self._read
        offset = self.header_length
        max_size = self.max_section_size
        while True:
            got = _read_varint(read)
            if got is None:
                return
            length, nbytes = got
            if length == 0:
                raise CarError(f"zero-length section at offset {offset}")
            if length > max_size:
                raise CarError(f"section of {length} bytes at offset {offset} exceeds {max_size}")
            body = read_exact(read, length)
            if len(body) != length:
                raise CarError(f"truncated section at offset {offset}")
            try:
                cid, end = CID.read(body, 0)
            except CIDError as exc:
                raise CarError(f"bad CID in section at offset {offset}: {exc}") from None
            data = body[end:]
            if self.verify:
                self._check(cid, data)
            yield CarSection(cid, data, offset, nbytes + length, offset + nbytes + end)
            offset += nbytes + length

    def _check(self, cid: CID, data: bytes) -> None:
        try:
            ok = cid.matches(data)
        except MultihashError:
            if cid.hash_code == multihash.IDENTITY:  # data longer than any identity digest
                raise HashMismatch(cid) from None
            if self.allow_unverified:
                return
            raise UnverifiableBlock(cid) from None
        if not ok:
            raise HashMismatch(cid)

    def __iter__(self) -> Iterator[tuple[CID, bytes]]:
        for section in self.sections():
            yield section.cid, section.data

    def close(self) -> None:
        if self._owned:
            self._stream.close()

    def __enter__(self) -> CarReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def read_car(stream: IO[bytes], **options: Any) -> tuple[list[CID], Iterator[tuple[CID, bytes]]]:
    """Read a CARv1 stream: its roots and an iterator of ``(cid, data)``."""
    reader = CarReader(stream, **options)
    return reader.roots, iter(reader)


class CarWriter:
    """Write a CARv1 stream: the header now, then a section per :meth:`put`.

    Blocks already written are skipped (a CAR holds each block once). With
    ``verify`` each block is checked against its CID before it is written.
    When given a path, the writer creates the file and :meth:`close` closes it.
    """

    def __init__(
        self,
        stream: IO[bytes] | str | os.PathLike,
        roots: Iterable[CID],
        *,
        verify: bool = True,
    ) -> None:
        header = encode_header(roots)
        self._owned = isinstance(stream, (str, os.PathLike))
        self._stream: IO[bytes] = open(stream, "wb") if self._owned else stream  # type: ignore[arg-type]
        self.verify = verify
        self._seen: set[CID] = set()
        self.blocks_written = 0
        self.bytes_written = 0
        self._write(header)

    def _write(self, data: bytes) -> None:
        self._stream.write(data)
        self.bytes_written += len(data)

    def put(self, cid: CID, data: bytes | bytearray | memoryview) -> bool:
        """Write one block; return False (writing nothing) if it was already written."""
        if not isinstance(cid, CID):
            raise TypeError(f"expected a CID, got {type(cid).__name__}")
        if cid in self._seen:
            return False
        if self.verify:
            cid.verify(data)
        raw = cid.buffer
        self._write(encode_uvarint(len(raw) + len(data)) + raw)
        self._write(bytes(data) if not isinstance(data, bytes) else data)
        self._seen.add(cid)
        self.blocks_written += 1
        return True

    def put_many(self, blocks: Iterable[tuple[CID, bytes | bytearray | memoryview]]) -> None:
        for cid, data in blocks:
            self.put(cid, data)

    def close(self) -> None:
        if self._owned:
            self._stream.close()
        else:
            flush = getattr(self._stream, "flush", None)
            if flush is not None:
                flush()

    def __enter__(self) -> CarWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def write_car(
    stream: IO[bytes] | str | os.PathLike,
    roots: Iterable[CID],
    blocks: Iterable[tuple[CID, bytes | bytearray | memoryview]],
    *,
    verify: bool = True,
) -> int:
    """Write a whole CARv1; return how many blocks went in."""
    with CarWriter(stream, roots, verify=verify) as writer:
        writer.put_many(blocks)
        return writer.blocks_written


# -- DAG export and import ------------------------------------------------------------

#: The Filecoin "all" selector: everything reachable from the root.
ALL_SELECTOR: dict[str, Any] = {"R": {"l": {"none": {}}, ":>": {"a": {">": {"@": {}}}}}}


def _links_of(value: Any, out: list[CID]) -> None:
    if isinstance(value, CID):
        out.append(value)
    elif isinstance(value, dict):
        for item in value.values():
            _links_of(item, out)
    elif isinstance(value, list):
        for item in value:
            _links_of(item, out)


def block_links(cid: CID, data: bytes) -> list[CID]:
    """The CIDs a block links to, in traversal order (raw blocks have none)."""
    if cid.codec == RAW:
        return []
    if cid.codec == DAG_PB:
        from datatransfer.ipld import dagpb

        return dagpb.links(data)
    from datatransfer.ipld.codecs import decode_block

    out: list[CID] = []
    _links_of(decode_block(cid, data), out)
    return out


def walk_all(root: CID, blockstore: Any) -> Iterator[tuple[CID, bytes]]:
    """Every block reachable from ``root``, each once, depth-first in link
    order with a node before its children (the "all" selector's order).

    ``blockstore`` is a block store or a ``get(cid) -> bytes`` callable.
    """
    load = block_loader(blockstore)
    seen: set[CID] = set()
    stack = [root]
    while stack:
        cid = stack.pop()
        if cid in seen:
            continue
        seen.add(cid)
        data = load(cid)
        yield cid, data
        stack.extend(reversed(block_links(cid, data)))


def _selector_blocks(root: CID, selector: Any, blockstore: Any) -> Iterator[tuple[CID, bytes]]:
    """Blocks the selector traversal loads from ``root``, in load order."""
    try:
        from datatransfer.ipld.selector import blocks, parse_selector
    except ImportError:  # pragma: no cover - the engine ships with the package
        if selector == ALL_SELECTOR:
            yield from walk_all(root, blockstore)
            return
        raise CarError("selector traversal is not available in this build") from None
    yield from blocks(root, parse_selector(selector), block_loader(blockstore))


def export_car(
    root: CID,
    blockstore: Any,
    out: IO[bytes] | str | os.PathLike,
    *,
    selector: Any = None,
) -> int:
    """Write the DAG under ``root`` as a CARv1 with ``root`` as its only root;
    return how many blocks were written.

    Without ``selector`` every reachable block goes in, once, in the "all"
    selector's order. With one (a selector node, e.g. parsed from JSON; bad
    ones raise :class:`~datatransfer.ipld.selector.SelectorError`) the blocks
    the selector traversal of :mod:`datatransfer.ipld.selector` loads go in,
    in load order, each once.
    """
    blocks = (
        walk_all(root, blockstore)
        if selector is None
        else _selector_blocks(root, selector, blockstore)
    )
    with CarWriter(out, [root], verify=False) as writer:
        writer.put_many(blocks)
        return writer.blocks_written


def import_car(
    stream: IO[bytes] | str | os.PathLike,
    blockstore: Any,
    *,
    batch_bytes: int = 8 << 20,
    **options: Any,
) -> tuple[list[CID], int]:
    """Store every block of a CARv1 in ``blockstore`` (in ``put_many`` batches);
    return the CAR's roots and how many blocks it held."""
    count = 0
    with CarReader(stream, **options) as reader:
        batch: list[tuple[CID, bytes]] = []
        pending = 0
        for cid, data in reader:
            batch.append((cid, data))
            pending += len(data)
            count += 1
            if pending >= batch_bytes:
                blockstore.put_many(batch)
                batch = []
                pending = 0
        if batch:
            blockstore.put_many(batch)
        return reader.roots, count


__all__ = [
    "ALL_SELECTOR",
    "CarError",
    "CarReader",
    "CarSection",
    "CarWriter",
    "UnverifiableBlock",
    "decode_header",
    "encode_header",
    "export_car",
    "import_car",
    "read_car",
    "walk_all",
    "write_car",
]
