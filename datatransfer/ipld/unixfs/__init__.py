"""UnixFS: files as DAG-PB/raw block trees, the way IPFS stores them.

* :mod:`~datatransfer.ipld.unixfs.pb` -- the UnixFS ``Data`` protobuf.
* :mod:`~datatransfer.ipld.unixfs.importer` -- stream a file into blocks with
  the ``classic`` (Kubo's CIDv0 defaults) or ``modern`` (CIDv1, raw leaves,
  1 MiB chunks, 1024 links) profile.
* :mod:`~datatransfer.ipld.unixfs.exporter` -- read a file DAG back.
"""

from __future__ import annotations

from datatransfer.ipld.unixfs.exporter import cat, export_file, iter_file
from datatransfer.ipld.unixfs.importer import (
    CLASSIC,
    MODERN,
    PROFILES,
    Profile,
    batches,
    get_profile,
    import_bytes,
    import_file,
    iter_file_blocks,
)
from datatransfer.ipld.unixfs.pb import DataType, UnixFSData, UnixFSError, UnixTime

__all__ = [
    "CLASSIC",
    "MODERN",
    "PROFILES",
    "DataType",
    "Profile",
    "UnixFSData",
    "UnixFSError",
    "UnixTime",
    "batches",
    "cat",
    "export_file",
    "get_profile",
    "import_bytes",
    "import_file",
    "iter_file",
    "iter_file_blocks",
]
