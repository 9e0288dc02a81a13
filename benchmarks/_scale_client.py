"""One client process of ``bench_scale``: a node on its own home that opens
N pulls at once from one server and waits for them all.

``python -m benchmarks._scale_client HOME ADDR N ROOT...``: prints ``READY``
once connected, waits for a line on stdin (so every client starts together),
opens the N pulls (root ``i % len(ROOTS)`` for the i-th), and prints one JSON
line: ``opened`` and ``done`` (seconds from the start line), the count of
each final status, and the messages of those that did not complete.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from typing import Any

import trio

from datatransfer.config import ManagerConfig
from datatransfer.ipld.cid import CID
from datatransfer.ipld.selector import ALL_SELECTOR_NODE
from datatransfer.node import Node, OpenVoucher

#: Seconds a pull may wait to be accepted (the default is 30 s), raised by
#: the scenario: the server serves 16 requests of a peer at a time and
#: queues the others (graphsync's 1,024 per peer), and only a served request
#: is answered, so the last of 1,000 pulls waits for the 999 before it:
#: longer than 30 s below about 330 channels/s. Equal to the benchmark's
#: deadline.
ACCEPT_TIMEOUT = 900.0


async def main(home: str, addr: str, count: int, roots: list[CID]) -> dict[str, Any]:
    async with Node(home, config=ManagerConfig(accept_timeout=ACCEPT_TIMEOUT)) as node:
        manager = node.manager
        assert manager is not None
        peer = await node.connect(addr)
        print("READY", flush=True)
        await trio.to_thread.run_sync(sys.stdin.readline)
        started = time.monotonic()
        chids = [await manager.open_pull_channel(peer, OpenVoucher(), roots[i % len(roots)],
                                                 ALL_SELECTOR_NODE) for i in range(count)]
        opened = time.monotonic() - started
        statuses: Counter[str] = Counter()
        reasons: Counter[str] = Counter()

        async def wait(chid: Any) -> None:
            state = await manager.wait(chid, timeout=ACCEPT_TIMEOUT)
            statuses[state.status.name] += 1
            if state.status.name != "Completed":
                reasons[state.message] += 1

        async with trio.open_nursery() as nursery:
            for chid in chids:
                nursery.start_soon(wait, chid)
        return {"opened": opened, "done": time.monotonic() - started,
                "statuses": dict(statuses), "reasons": dict(reasons.most_common(5))}


if __name__ == "__main__":
    home, addr, n, *root_texts = sys.argv[1:]
    result = trio.run(main, home, addr, int(n), [CID.parse(t) for t in root_texts])
    print(json.dumps(result), flush=True)
