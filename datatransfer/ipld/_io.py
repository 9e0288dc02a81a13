"""Reading from blocking streams that may return short reads."""

from __future__ import annotations

from collections.abc import Callable


def read_exact(read: Callable[[int], bytes], n: int) -> bytes:
    """Read ``n`` bytes, calling ``read`` again after short reads; fewer than
    ``n`` bytes come back only at the end of the stream."""
    data = read(n)
    if len(data) == n:
        return bytes(data)
    parts = [data]
    have = len(data)
    while have < n:
        more = read(n - have)
        if not more:
            break
        parts.append(more)
        have += len(more)
    return b"".join(parts)
