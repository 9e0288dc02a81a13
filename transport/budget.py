"""What a peer's selectors may cost this node: a work budget per peer.

A traversal counts its work in clause evaluations
(:attr:`~datatransfer.ipld.selector.traversal.Traverser.idle_work` is the
part spent walking without reaching a block). One request's idle work is
bounded by the traversal itself (``max_work_without_block``); this bounds a
peer's across all its requests and over time, so that a peer cannot keep
the node busy by opening request after request whose selectors walk without
end: each peer has a bucket of work that refills at a steady rate, and a
traversal whose peer's bucket is empty ends with an error.

Pure: the caller passes the time in (the transport reads its event loop's
clock, which tests replace with trio's MockClock).
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["DEFAULT_PEER_WORK", "DEFAULT_PEER_WORK_RATE", "PeerWorkBudget"]

#: Idle work a peer may spend at once (about a second of one core).
DEFAULT_PEER_WORK = 500_000
#: Idle work a peer's budget regains per second (a few percent of a core).
DEFAULT_PEER_WORK_RATE = 50_000.0


@dataclass
class _Bucket:
    level: float
    at: float


@dataclass
class PeerWorkBudget:
    """Token buckets of idle traversal work, one per peer.

    ``capacity``: most work a peer may spend in a burst; ``rate``: work per
    second its bucket regains. Buckets of peers that have not spent for a
    while (full again) are forgotten, so a node keeps state only for peers
    that are spending.
    """

    capacity: int = DEFAULT_PEER_WORK
    rate: float = DEFAULT_PEER_WORK_RATE
    _buckets: dict[bytes, _Bucket] = field(default_factory=dict, repr=False)
    #: Bucket count past which full buckets are forgotten; doubles with the
    #: buckets still spending, so the sweep stays amortised O(1) per take.
    _sweep_at: int = field(default=1024, repr=False)

    def take(self, peer: bytes, work: int, now: float) -> bool:
        """Spend ``work`` from ``peer``'s bucket; False (nothing spent) when
        the bucket holds less."""
        if work <= 0:
            return True
        bucket = self._buckets.get(peer)
        if bucket is None:
            bucket = self._buckets[peer] = _Bucket(float(self.capacity), now)
        else:
            bucket.level = self._refilled(bucket, now)
            bucket.at = now
        if bucket.level < work:
            return False
        bucket.level -= work
        if len(self._buckets) > self._sweep_at:
            self._forget_full(now)
        return True

    def level(self, peer: bytes, now: float) -> float:
        """Work ``peer`` may spend now."""
        bucket = self._buckets.get(peer)
        return float(self.capacity) if bucket is None else self._refilled(bucket, now)

    def _refilled(self, bucket: _Bucket, now: float) -> float:
        return min(self.capacity, bucket.level + (now - bucket.at) * self.rate)

    def _forget_full(self, now: float) -> None:
        for peer in [p for p, b in self._buckets.items()
                     if self._refilled(b, now) >= self.capacity]:
            del self._buckets[peer]
        self._sweep_at = max(1024, 2 * len(self._buckets))
