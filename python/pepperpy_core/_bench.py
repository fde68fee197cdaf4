"""``python -m pepperpy_core bench``: a quick comparison (well under a minute) of
both backends against a dict FIFO and, where installed, cachetools, cachebox
and prometheus_client. For the full, repeatable suites see ``benches/``."""

from __future__ import annotations

import importlib
import timeit
from collections.abc import Callable
from typing import Any, TextIO

from pepperpy_core import _backend


class SpecDictFIFO(dict[Any, Any]):
    """The spec's CacheModule: ``cache.pop(next(iter(cache)))`` before insert."""

    def __init__(self, maxsize: int) -> None:
        super().__init__()
        self.maxsize = maxsize

    def __setitem__(self, key: Any, value: Any) -> None:
        if len(self) >= self.maxsize:
            self.pop(next(iter(self)))
        super().__setitem__(key, value)


def _optional(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def _caches() -> dict[str, Callable[[int], Any]]:
    found: dict[str, Callable[[int], Any]] = {
        f"pepperpy {backend.name}": backend.FIFOCache for backend in _backend.available()
    }
    found["spec dict FIFO"] = SpecDictFIFO
    if (cachebox := _optional("cachebox")) is not None:
        found["cachebox"] = cachebox.FIFOCache
    if (cachetools := _optional("cachetools")) is not None:
        found["cachetools"] = cachetools.FIFOCache
    return found


def _time(run: Callable[[], None], ops: int) -> float:
    """Best of 5, in ns per operation."""
    return min(timeit.repeat(run, number=1, repeat=5)) / ops * 1e9


def _set_evicting(factory: Callable[[int], Any], ops: int) -> Callable[[], None]:
    maxsize = 1_000
    cache = factory(maxsize)
    keys = [f"k{i}" for i in range(ops + maxsize)]
    for key in keys[:maxsize]:
        cache[key] = 1
    fresh = keys[maxsize:]
    state = [0]

    def run() -> None:
        # Alternate between two key sets, so every set is a new key.
        batch = fresh if state[0] % 2 == 0 else keys[:ops]
        state[0] += 1
        for key in batch:
            cache[key] = 1

    return run


def _get_hit(factory: Callable[[int], Any], ops: int) -> Callable[[], None]:
    cache = factory(ops)
    keys = [f"k{i}" for i in range(ops)]
    for key in keys:
        cache[key] = 1
    get = cache.get

    def run() -> None:
        for key in keys:
            get(key)

    return run


def _metrics(ops: int) -> list[tuple[str, str, Callable[[], None]]]:
    cases: list[tuple[str, str, Callable[[], None]]] = []
    counters: dict[str, Any] = {}
    histograms: dict[str, Any] = {}
    for backend in _backend.available():
        counters[f"pepperpy {backend.name}"] = backend.Counter()
        histograms[f"pepperpy {backend.name}"] = backend.Histogram()
    if (prom := _optional("prometheus_client")) is not None:
        counters["prometheus_client"] = prom.Counter("bench_total", "b", registry=None)
        histograms["prometheus_client"] = prom.Histogram("bench_seconds", "b", registry=None)
    loop = range(ops)
    for name, counter in counters.items():
        inc = counter.inc

        def count(inc: Callable[[], None] = inc) -> None:
            for _ in loop:
                inc()

        cases.append(("Counter.inc()", name, count))
    for name, histogram in histograms.items():
        observe = histogram.observe

        def record(observe: Callable[[float], None] = observe) -> None:
            for _ in loop:
                observe(0.003)

        cases.append(("Histogram.observe()", name, record))
    return cases


def run_bench(out: TextIO, ops: int = 20_000) -> int:
    """Measure, showing progress, then print a table of ratios."""
    cases: list[tuple[str, str, Callable[[], None]]] = []
    for name, factory in _caches().items():
        cases.append(("FIFOCache get hit", name, _get_hit(factory, ops)))
        cases.append(("FIFOCache set with eviction", name, _set_evicting(factory, ops)))
    cases.extend(_metrics(ops))
    print(f"measuring {len(cases)} cases, {ops:,} operations each, best of 5", file=out)
    results: dict[str, list[tuple[str, float]]] = {}
    for i, (group, name, run) in enumerate(cases, start=1):
        ns = _time(run, ops)
        print(
            f"  [{i:2}/{len(cases)}] {group:<28} {name:<18} {ns:8.1f} ns/op", file=out, flush=True
        )
        results.setdefault(group, []).append((name, ns))
    for group, rows in results.items():
        first = f"pepperpy {_backend.BACKEND}"
        base = dict(rows).get(first) or rows[0][1]
        print(f"\n{group}", file=out)
        print(f"  {'subject':<18} {'ns/op':>9} {'x ' + _backend.BACKEND:>9}", file=out)
        for name, ns in sorted(rows, key=lambda r: r[1]):
            print(f"  {name:<18} {ns:9.1f} {ns / base:9.2f}", file=out)
    print("\n(one quick run on this machine; see the README for the full method)", file=out)
    return 0
