"""One round of the native hot paths, printed as JSON (ns per operation):
what ``compare_builds.py`` runs in each interpreter it compares."""

from __future__ import annotations

import json
import timeit
from collections.abc import Callable

from pepperpy_core._native import Counter, FIFOCache, Histogram
from pepperpy_core.metrics import MetricsRegistry

KEYS = [f"k{i}" for i in range(1000)]
MISSING = [f"m{i}" for i in range(1000)]
FRESH = [f"f{i}" for i in range(1000)]


def _ns(body: Callable[[], None]) -> float:
    return min(timeit.repeat(body, number=20, repeat=3)) / 20 / 1000 * 1e9


def main() -> None:
    out: dict[str, float] = {}
    cache: FIFOCache[str, int] = FIFOCache(2000)
    for key in KEYS:
        cache[key] = 1
    get = cache.get

    def hits() -> None:
        for key in KEYS:
            get(key)

    def misses() -> None:
        for key in MISSING:
            get(key)

    out["get, a hit"] = _ns(hits)
    out["get, a miss"] = _ns(misses)
    evicting: FIFOCache[str, int] = FIFOCache(1000)
    turn = [0]

    def set_evicting() -> None:
        turn[0] += 1
        for key in FRESH if turn[0] % 2 else KEYS:
            evicting[key] = 1

    out["set with eviction, str keys"] = _ns(set_evicting)
    batch = KEYS[:100]

    def many() -> None:
        for _ in range(10):
            cache.get_many(batch)

    out["get_many of 100, per key"] = _ns(many)
    inc = Counter().inc

    def counting() -> None:
        for _ in KEYS:
            inc()

    out["Counter.inc()"] = _ns(counting)
    observe = Histogram().observe

    def observing() -> None:
        for _ in KEYS:
            observe(0.003)

    out["Histogram.observe()"] = _ns(observing)
    counter = MetricsRegistry().counter
    counter("x")

    def looked_up() -> None:
        for _ in KEYS:
            counter("x").inc()

    out["registry.counter(name).inc()"] = _ns(looked_up)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
