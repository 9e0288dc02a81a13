"""The raw codec (multicodec 0x55): a block's bytes are its value."""

from __future__ import annotations

from datatransfer.ipld.errors import CodecError

CODE = 0x55


def encode(value: bytes | bytearray | memoryview) -> bytes:
    """A raw block is the bytes themselves; anything else is refused."""
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise CodecError(f"raw codec encodes bytes, not {type(value).__name__}")
    return bytes(value)


def decode(data: bytes | bytearray | memoryview) -> bytes:
    """The value of a raw block: its bytes."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CodecError(f"raw codec decodes bytes, not {type(data).__name__}")
    return bytes(data)
