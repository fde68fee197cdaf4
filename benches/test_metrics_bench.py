"""Metrics against prometheus_client and a plain Python counter. Each call does
1,000 operations; tables: ``bash benches/run.sh``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from pepperpy_core._fallback import metrics as python_metrics

try:
    from pepperpy_core import _native as native_metrics
except ImportError:
    native_metrics = None  # type: ignore[assignment]

try:
    import prometheus_client
except ImportError:
    prometheus_client = None  # type: ignore[assignment]

OPS = 1_000


class PlainCounter:
    """The least a Python counter can be: a slot and ``+=`` (no thread safety)."""

    __slots__ = ("v",)

    def __init__(self) -> None:
        self.v = 0

    def inc(self, n: int = 1) -> None:
        self.v += n


def _counters() -> dict[str, Callable[[], Any]]:
    found: dict[str, Callable[[], Any]] = {}
    if native_metrics is not None:
        found["native"] = native_metrics.Counter
    found["python"] = python_metrics.Counter
    found["plain-python"] = PlainCounter
    if prometheus_client is not None:
        found["prometheus_client"] = lambda: prometheus_client.Counter(
            "bench_total", "bench", registry=None
        )
    return found


def _histograms() -> dict[str, Callable[[], Any]]:
    found: dict[str, Callable[[], Any]] = {}
    if native_metrics is not None:
        found["native"] = native_metrics.Histogram
    found["python"] = python_metrics.Histogram
    if prometheus_client is not None:
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
