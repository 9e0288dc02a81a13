"""The multibase encodings CIDs are printed in.

base32 (lower, unpadded, prefix ``b``) is the CIDv1 default and base58btc
(prefix ``z``, or bare for CIDv0) the CIDv0 one; base16 and the base64 forms
are accepted on input because users paste them.
"""

from __future__ import annotations

import base64
import binascii

from datatransfer.ipld.errors import CIDError

_B58_ALPHABET = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {c: i for i, c in enumerate(_B58_ALPHABET)}


def b58encode(data: bytes) -> str:
    """Bitcoin-alphabet base58, leading zero bytes kept as ``1``."""
    zeros = len(data) - len(data.lstrip(b"\0"))
    n = int.from_bytes(data, "big")
    out = bytearray()
    while n:
        n, rem = divmod(n, 58)
        out.append(_B58_ALPHABET[rem])
    out.extend(b"1" * zeros)
    out.reverse()
    return out.decode("ascii")


def b58decode(text: str) -> bytes:
    """Inverse of :func:`b58encode`; raises :class:`CIDError` on bad characters."""
    raw = text.encode("ascii", "replace")
    n = 0
    for c in raw:
        try:
            n = n * 58 + _B58_INDEX[c]
        except KeyError:
            raise CIDError(f"invalid base58 character {chr(c)!r}") from None
    zeros = len(raw) - len(raw.lstrip(b"1"))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    return b"\0" * zeros + body


def b32encode(data: bytes) -> str:
    """RFC 4648 base32, lower case, no padding (multibase ``b``)."""
    return base64.b32encode(data).decode("ascii").rstrip("=").lower()


def b32decode(text: str) -> bytes:
    """Decode unpadded base32 in either case."""
    try:
        upper = text.upper()
        return base64.b32decode(upper + "=" * (-len(upper) % 8))
    except (binascii.Error, ValueError) as exc:
        raise CIDError(f"invalid base32: {exc}") from None


def decode(text: str) -> bytes:
    """Decode a multibase string (prefix character plus body)."""
    if not text:
        raise CIDError("empty multibase string")
    prefix, body = text[0], text[1:]
    try:
        if prefix in "bB":
            return b32decode(body)
        if prefix == "z":
            return b58decode(body)
        if prefix in "fF":
            return bytes.fromhex(body)
        if prefix == "m":
            return base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
        if prefix == "u":
            return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError) as exc:
        raise CIDError(f"invalid multibase body: {exc}") from None
    raise CIDError(f"unsupported multibase prefix {prefix!r}")
