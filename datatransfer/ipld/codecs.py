"""Codec registry keyed by multicodec code.

Built in: raw (0x55), dag-pb (0x70), dag-cbor (0x71) and dag-json (0x0129).
Built-in codec modules are imported on first use, so importing this module
is cheap and a codec module that is missing only matters when its code is
used (it is then reported as :class:`UnknownCodec`).

Every codec maps IPLD data-model values to bytes and back; see
:mod:`~datatransfer.ipld.dagcbor` for the Python form of the data model.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from typing import Any

from datatransfer.ipld.cid import CID
from datatransfer.ipld.errors import UnknownCodec

Encoder = Callable[[Any], bytes]
Decoder = Callable[[bytes], Any]

RAW = 0x55
DAG_PB = 0x70
DAG_CBOR = 0x71
DAG_JSON = 0x0129

# Built-in codecs: code -> module exposing ``encode`` and ``decode``.
_BUILTIN: dict[int, str] = {
    RAW: "datatransfer.ipld.raw",
    DAG_PB: "datatransfer.ipld.dagpb",
    DAG_CBOR: "datatransfer.ipld.dagcbor",
    DAG_JSON: "datatransfer.ipld.dagjson",
}

_codecs: dict[int, tuple[Encoder, Decoder]] = {}
_lock = threading.Lock()


def register(code: int, encode_fn: Encoder, decode_fn: Decoder, *, replace: bool = False) -> None:
    """Register a codec under multicodec ``code``.

    Registering a code that already has a codec (built-in or registered)
    raises :class:`ValueError` unless ``replace`` is true.
    """
    if not isinstance(code, int) or code < 0:
        raise ValueError(f"invalid multicodec code {code!r}")
    with _lock:
        if not replace and (code in _codecs or code in _BUILTIN):
            raise ValueError(f"codec 0x{code:x} is already registered")
        _codecs[code] = (encode_fn, decode_fn)
        _BUILTIN.pop(code, None)


def _lookup(code: int) -> tuple[Encoder, Decoder]:
    entry = _codecs.get(code)
    if entry is not None:
        return entry
    module_name = _BUILTIN.get(code)
    if module_name is None:
        raise UnknownCodec(code)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        raise UnknownCodec(code) from None
    entry = (module.encode, module.decode)
    with _lock:
        return _codecs.setdefault(code, entry)


def is_supported(code: int) -> bool:
    """True when ``code`` has a codec that can be loaded."""
    try:
        _lookup(code)
    except UnknownCodec:
        return False
    return True


def codes() -> list[int]:
    """Every code with a registered or built-in codec (loadable or not)."""
    return sorted(set(_codecs) | set(_BUILTIN))


def encode(codec: int, value: Any) -> bytes:
    """Encode ``value`` with the codec ``codec``."""
    return _lookup(codec)[0](value)


def decode(codec: int, data: bytes | bytearray | memoryview) -> Any:
    """Decode ``data`` with the codec ``codec``."""
    return _lookup(codec)[1](data)


def decode_block(cid: CID, data: bytes | bytearray | memoryview, *, verify: bool = False) -> Any:
    """Decode a block with the codec its CID names.

    With ``verify`` the bytes are first checked against the CID
    (:class:`~datatransfer.ipld.errors.HashMismatch` if they differ); by
    default they are assumed checked already (a blockstore verifies on put).
    """
    entry = _lookup(cid.codec)
    if verify:
        cid.verify(data)
    return entry[1](data)


def encode_block(
    codec: int,
    value: Any,
    hash_code: int = 0x12,
    version: int = 1,
) -> tuple[CID, bytes]:
    """Encode ``value`` and compute its CID; return ``(cid, bytes)``."""
    data = encode(codec, value)
    return CID.of(data, codec=codec, hash_code=hash_code, version=version), data
