"""Strict DAG-JSON (multicodec 0x0129).

The IPLD data model maps onto Python as in :mod:`~datatransfer.ipld.dagcbor`:
None, bool, int, float, str, bytes, list, dict (str keys) and
:class:`~datatransfer.ipld.cid.CID` for links.

Canonical form, which :func:`encode` always writes and :func:`decode` (by
default) insists on, so one value has exactly one encoding:

* no whitespace; map keys sorted by their UTF-8 bytes (plain byte order, *not*
  DAG-CBOR's length-first order), no duplicate keys;
* strings as UTF-8 with only ``"``, ``\\`` and control characters escaped
  (``\\b \\f \\n \\r \\t``, else ``\\u00xx``), as ``JSON.stringify`` does;
* integers as bare digits, within the 64-bit range DAG-CBOR can hold
  (-2**64 .. 2**64-1);
* floats in the shortest form that reads back to the same double, laid out
  as ECMAScript's ``Number.prototype.toString`` does (plain decimal for
  1e-6 <= |x| < 1e21, else ``d.ddde±n``), with ``.0`` added to integral
  values so they stay floats; NaN and infinities are refused;
* links as ``{"/":"<cid>"}`` (CIDv0 in base58btc, CIDv1 in base32);
* bytes as ``{"/":{"bytes":"<base64>"}}`` (RFC 4648 standard alphabet, no
  padding, no multibase prefix).

Maps that look like a link or bytes but are not valid ones (the spec's
"reserved namespace" rules) are refused both when encoding and decoding.
Every problem raises :class:`DagJsonError`.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from decimal import Decimal
from typing import Any

from datatransfer.ipld.cid import CID
from datatransfer.ipld.errors import CodecError, IPLDError

CODE = 0x0129

_INT_MIN = -(1 << 64)
_INT_MAX = (1 << 64) - 1

#: Nesting limit for encoding and decoding.
MAX_DEPTH = 256

# JSON string quoting with non-ASCII left as UTF-8 (the C accelerator when present).
_quote = getattr(json.encoder, "c_encode_basestring", None) or json.encoder.py_encode_basestring


class DagJsonError(CodecError):
    """Bytes that are not (canonical) DAG-JSON, or a value DAG-JSON cannot hold."""


# -- encoding ---------------------------------------------------------------


def format_float(value: float) -> str:
    """The canonical DAG-JSON text of a finite float."""
    if not math.isfinite(value):
        raise DagJsonError(f"DAG-JSON cannot hold {value!r}")
    if value == 0.0:
        return "-0.0" if math.copysign(1.0, value) < 0 else "0.0"
    sign, digit_tuple, exp = Decimal(repr(value)).as_tuple()  # shortest round-trip digits
    digits = "".join(map(str, digit_tuple))
    stripped = digits.rstrip("0")
    exp += len(digits) - len(stripped)
    digits = stripped
    # value = (-1)**sign * int(digits) * 10**exp; ``point`` is where the decimal
    # point falls relative to the start of ``digits``.
    point = len(digits) + exp
    k = len(digits)
    if k <= point <= 21:
        body = digits + "0" * (point - k) + ".0"
    elif 0 < point <= 21:
        body = digits[:point] + "." + digits[point:]
    elif -6 < point <= 0:
        body = "0." + "0" * (-point) + digits
    else:
        e = point - 1
        esign = "+" if e >= 0 else "-"
        head = digits[0] if k == 1 else digits[0] + "." + digits[1:]
        body = f"{head}e{esign}{abs(e)}"
    return ("-" if sign else "") + body


def _b64(data: bytes | bytearray | memoryview) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _reserved(d: dict[str, Any]) -> bool:
    """True when ``d`` (a plain data-model map) would read back as, or collide
    with, a link or bytes form."""
    if "/" not in d or min(d) != "/":
        return False
    inner = d["/"]
    if isinstance(inner, str):
        return True
    return (
        isinstance(inner, dict)
        and "bytes" in inner
        and min(inner) == "bytes"
        and isinstance(inner["bytes"], str)
    )


def _encode(value: Any, out: list[str], depth: int) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(_quote(value))
    elif isinstance(value, int):
        if not _INT_MIN <= value <= _INT_MAX:
            raise DagJsonError(f"integer {value} is outside the 64-bit range")
        out.append(int.__repr__(value))
    elif isinstance(value, float):
        out.append(format_float(value))
    elif isinstance(value, CID):
        out.append('{"/":"')
        out.append(str(value))
        out.append('"}')
    elif isinstance(value, (bytes, bytearray, memoryview)):
        out.append('{"/":{"bytes":"')
        out.append(_b64(value))
        out.append('"}}')
    elif isinstance(value, (list, tuple)):
        if depth > MAX_DEPTH:
            raise DagJsonError(f"nesting deeper than {MAX_DEPTH}")
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _encode(item, out, depth + 1)
        out.append("]")
    elif isinstance(value, dict):
        if depth > MAX_DEPTH:
            raise DagJsonError(f"nesting deeper than {MAX_DEPTH}")
        for k in value:
            if not isinstance(k, str):
                raise DagJsonError(f"map keys must be strings, got {type(k).__name__}")
        if _reserved(value):
            raise DagJsonError(
                "map collides with DAG-JSON's reserved link/bytes form "
                f"(first key '/' holding {type(value['/']).__name__})"
            )
        out.append("{")
        # Code-point order of valid Unicode strings is UTF-8 byte order.
        for i, k in enumerate(sorted(value)):
            if i:
                out.append(",")
            out.append(_quote(k))
            out.append(":")
            _encode(value[k], out, depth + 1)
        out.append("}")
    else:
        raise DagJsonError(f"cannot encode {type(value).__name__} as DAG-JSON")


def encode(value: Any) -> bytes:
    """Encode an IPLD data-model value as canonical DAG-JSON."""
    out: list[str] = []
    _encode(value, out, 0)
    try:
        return "".join(out).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise DagJsonError(f"string is not valid Unicode: {exc.reason}") from None


# -- decoding ---------------------------------------------------------------


def _object(pairs: list[tuple[str, Any]]) -> Any:
    d = dict(pairs)
    if len(d) != len(pairs):
        seen: set[str] = set()
        for k, _ in pairs:
            if k in seen:
                raise DagJsonError(f"duplicate map key {k!r}")
            seen.add(k)
    if "/" not in d or min(d) != "/":
        return d
    inner = d["/"]
    if isinstance(inner, str):
        if len(d) != 1:
            raise DagJsonError('a link map {"/": ...} must have no other keys')
        try:
            return CID.parse(inner)
        except IPLDError as exc:
            raise DagJsonError(f"invalid CID in link {inner!r}: {exc}") from None
    if (
        isinstance(inner, dict)
        and "bytes" in inner
        and min(inner) == "bytes"
        and isinstance(inner["bytes"], str)
    ):
        if len(d) != 1 or len(inner) != 1:
            raise DagJsonError('a bytes map {"/": {"bytes": ...}} must have no other keys')
        text = inner["bytes"]
        try:
            return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise DagJsonError(f"invalid base64 in bytes: {exc}") from None
    return d


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise DagJsonError(f"number {text} is out of the float range")
    return value


def _int(text: str) -> int:
    value = int(text)
    if not _INT_MIN <= value <= _INT_MAX:
        raise DagJsonError(f"integer {text} is outside the 64-bit range")
    return value


def _constant(name: str) -> Any:
    raise DagJsonError(f"{name} is not allowed in DAG-JSON")


def decode(data: bytes | bytearray | memoryview, *, strict: bool = True) -> Any:
    """Decode one DAG-JSON value; raise :class:`DagJsonError`.

    With ``strict`` (the default) the input must be exactly the canonical
    encoding of the value it decodes to (no whitespace, sorted keys,
    canonical numbers, strings, links and bytes), so a block's bytes and CID
    follow from its value. ``strict=False`` accepts any valid JSON spelling
    (whitespace, key order, ``1E3``, padded base64, other multibases for CIDv1)
    but still refuses duplicate keys, malformed reserved forms, numbers out
    of range and lone surrogates.
    """
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DagJsonError(f"input is not UTF-8: {exc.reason} at byte {exc.start}") from None
    if text.startswith("\ufeff"):
        raise DagJsonError("byte order mark is not allowed")
    try:
        value = json.loads(
            text,
            object_pairs_hook=_object,
            parse_float=_float,
            parse_int=_int,
            parse_constant=_constant,
        )
    except DagJsonError:
        raise
    except json.JSONDecodeError as exc:
        raise DagJsonError(f"invalid JSON: {exc.msg} at char {exc.pos}") from None
    except RecursionError:
        raise DagJsonError("nesting too deep") from None
    except ValueError as exc:  # e.g. integer with too many digits
        raise DagJsonError(f"invalid JSON: {exc}") from None
    canonical = encode(value)  # also refuses lone surrogates and deep nesting
    if strict and canonical != bytes(data):
        raise DagJsonError(f"not canonical DAG-JSON (at byte {_first_diff(canonical, data)})")
    return value


def _first_diff(a: bytes, b: bytes | bytearray | memoryview) -> int:
    b = bytes(b)
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return min(len(a), len(b))
