"""Metrics against prometheus_client and a plain Python counter. Each call does
1,000 operations; tables: ``bash benches/run.sh``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import prometheus_client  # the bench extra installs it
import pytest

from pepperpy_core import _backend
from pepperpy_core.metrics import RegistryBase

OPS = 1_000


class PlainCounter:
    """The least a Python counter can be: a slot and ``+=`` (no thread safety)."""

    __slots__ = ("v",)

    def __init__(self) -> None:
        self.v = 0

    def inc(self, n: int = 1) -> None:
        self.v += n


def _counters() -> dict[str, Callable[[], Any]]:
    found: dict[str, Callable[[], Any]] = {b.name: b.Counter for b in _backend.available()}
    found["plain-python"] = PlainCounter
    found["prometheus_client"] = lambda: prometheus_client.Counter(
        "bench_total", "bench", registry=None
    )
    return found


def _histograms() -> dict[str, Callable[[], Any]]:
    found: dict[str, Callable[[], Any]] = {b.name: b.Histogram for b in _backend.available()}
    found["prometheus_client"] = lambda: prometheus_client.Histogram(
        "bench_seconds", "bench", registry=None
    )
    return found


COUNTERS = _counters()
HISTOGRAMS = _histograms()


@pytest.mark.parametrize("name", list(COUNTERS))
def test_counter_inc(benchmark: Any, name: str) -> None:
    inc = COUNTERS[name]().inc
    loop = range(OPS)

    def run() -> None:
        for _ in loop:
            inc()

    benchmark.group = "Counter.inc()"
    benchmark(run)


@pytest.mark.parametrize("name", list(HISTOGRAMS))
def test_histogram_observe(benchmark: Any, name: str) -> None:
    observe = HISTOGRAMS[name]().observe
    values = [0.0001 * (i % 200) for i in range(OPS)]

    def run() -> None:
        for v in values:
            observe(v)

    benchmark.group = "Histogram.observe()"
    benchmark(run)


@pytest.mark.parametrize("name", list(HISTOGRAMS))
def test_timer_empty_block(benchmark: Any, name: str) -> None:
    time = HISTOGRAMS[name]().time
    loop = range(OPS)

    def run() -> None:
        for _ in loop:
            with time():
                pass

    benchmark.group = "timer: enter + exit of an empty block"
    benchmark(run)


def _registries() -> dict[str, Any]:
    """A registry per backend, each holding a counter "x" and a histogram "op"."""
    found: dict[str, Any] = {}
    for backend in _backend.available():
        registry = type("Registry", (RegistryBase, backend.RegistryCore), {})()
        registry.counter("x")
        registry.histogram("op")
        found[backend.name] = registry
    return found


REGISTRIES = _registries()


@pytest.mark.parametrize("name", [*REGISTRIES, "prometheus_client"])
def test_registry_counter_inc(benchmark: Any, name: str) -> None:
    """``registry.counter("x").inc()`` against prometheus_client's ``c.inc()``
    on a counter already held in a variable."""
    loop = range(OPS)
    if name == "prometheus_client":
        held = prometheus_client.Counter("held_total", "bench", registry=None)

        def run() -> None:
            for _ in loop:
                held.inc()

    else:
        counter = REGISTRIES[name].counter

        def run() -> None:
            for _ in loop:
                counter("x").inc()

    benchmark.group = "registry.counter(name).inc() (prometheus_client: a held c.inc())"
    benchmark(run)


@pytest.mark.parametrize("name", [*REGISTRIES, "prometheus_client"])
def test_registry_timer(benchmark: Any, name: str) -> None:
    """``with registry.timer("op"): pass`` against prometheus_client's ``with
    h.time(): pass`` on a histogram already held in a variable."""
    loop = range(OPS)
    if name == "prometheus_client":
        time = prometheus_client.Histogram("held_seconds", "bench", registry=None).time

        def run() -> None:
            for _ in loop:
                with time():
                    pass

    else:
        timer = REGISTRIES[name].timer

        def run() -> None:
            for _ in loop:
                with timer("op"):
                    pass

    benchmark.group = "with registry.timer(name): pass (prometheus_client: a held h.time())"
    benchmark(run)
