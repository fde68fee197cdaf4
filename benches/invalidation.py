"""How long a write in one TieredCache takes to drop the copy another one
holds: ``python benches/invalidation.py [ROUNDS]`` (starts its own
redis-server on a loopback port; the two tiers have clients of their own).

Each round: B reads the key (so it holds a copy), then A writes it; the
clock runs from the start of A's ``set()`` (one script: the SET and its
announcement, one round trip) until B's copy is gone, both loops being the
same one, spinning.
Prints the median, 99th percentile and maximum, and how often B's copy was
already gone when A's ``set()`` returned.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.servers import RedisServer

from pepperpy_core.cache import FIFOCache
from pepperpy_core.redis import RedisCache, TieredCache


async def _spin_until(check: Callable[[], bool]) -> None:
    while True:
        if check():
            return
        await asyncio.sleep(0)


async def measure(url: str, rounds: int) -> list[float]:
    a: TieredCache[int] = TieredCache(FIFOCache(10), RedisCache(url=url, prefix="i:"))
    b: TieredCache[int] = TieredCache(FIFOCache(10), RedisCache(url=url, prefix="i:"))
    await a.subscribed()
    await b.subscribed()
    seconds = []
    early = 0
    for n in range(rounds):
        await a.set("k", n)
        await _spin_until(lambda: b.peek("k") is None)  # A's message reached B
        assert await b.get("k") == n  # B holds the current value again
        began = time.perf_counter()
        await a.set("k", n + 1)
        early += b.peek("k") is None
        await _spin_until(lambda: b.peek("k") is None)
        seconds.append(time.perf_counter() - began)
    print(f"B's copy was gone when A's set() returned in {early} of {rounds} rounds")
    for t in (a, b):
        await t.aclose()
        await t.remote.aclose()
    return seconds


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    server = RedisServer(Path(tempfile.mkdtemp()))
    server.start()
    try:
        seconds = sorted(asyncio.run(measure(server.url, rounds)))
    finally:
        server.stop()
    median = statistics.median(seconds) * 1e6
    p99 = seconds[int(len(seconds) * 0.99) - 1] * 1e6
    print(
        f"from the start of set() to the other copy gone, {rounds} rounds: "
        f"median {median:.0f} us, p99 {p99:.0f} us, max {seconds[-1] * 1e6:.0f} us"
    )


if __name__ == "__main__":
    main()
