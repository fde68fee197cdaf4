"""Metrics across worker processes: a shared MetricsRegistry (both backends)
against prometheus_client's multiprocess mode, on this machine, in one run.

    python benches/multiprocess.py [restarts]

- ``Counter.inc()``: a registry of one process (native), a shared registry
  (native, python) and prometheus_client with PROMETHEUS_MULTIPROC_DIR, in ns.
- A scrape of 8 live workers with 1,000 counter series each (the same
  1,000 series in every worker), in ms: ``to_prometheus()`` of a shared
  registry against ``generate_latest`` of a ``MultiProcessCollector``.
- The same scrape as workers come and go: each restart is a worker that
  increments 10 of the series and exits; the scrape time is taken after 0,
  100, 250, 500 and 1,000 (or ``restarts``) of them.

Workers are forked, and wait on a pipe while the scrapes run.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import time
import timeit
from collections.abc import Callable
from typing import Any

PROM_DIR = tempfile.mkdtemp(prefix="prom-multiproc-")
os.environ["PROMETHEUS_MULTIPROC_DIR"] = PROM_DIR  # read when prometheus_client loads

import prometheus_client  # noqa: E402
from prometheus_client import multiprocess  # noqa: E402

from pepperpy_core import _backend  # noqa: E402
from pepperpy_core.metrics import RegistryBase  # noqa: E402

FORK = multiprocessing.get_context("fork")
WORKERS = 8
SERIES = 1_000


def registry_class(backend: _backend.Backend) -> Any:
    """A MetricsRegistry of ``backend`` (whichever is active)."""

    class Registry(RegistryBase, backend.RegistryCore):  # type: ignore[misc, name-defined]
        _shared_store = backend.SharedStore

    return Registry


class Ours:
    """A shared MetricsRegistry of one backend."""

    def __init__(self, backend: _backend.Backend) -> None:
        self.backend = backend
        self.dir = tempfile.mkdtemp(prefix=f"pepperpy-shared-{backend.name}-")
        self.reader: Any = None

    def open(self) -> Any:
        return registry_class(self.backend)(shared_dir=self.dir)

    def work(self, series: range, ready: Any, done: Any) -> None:
        registry = self.open()
        for i in series:
            registry.counter("requests_total", {"path": f"/p{i}"}).inc()
        ready.send(True)
        done.recv()

    def scrape(self) -> str:
        if self.reader is None:
            self.reader = self.open()
        text: str = self.reader.to_prometheus()
        return text


class Theirs:
    """prometheus_client's multiprocess mode."""

    name = "prometheus_client"

    def __init__(self) -> None:
        self.registry = prometheus_client.CollectorRegistry()
        multiprocess.MultiProcessCollector(self.registry)

    def work(self, series: range, ready: Any, done: Any) -> None:
        counter = prometheus_client.Counter("requests", "Requests.", ["path"], registry=None)
        for i in series:
            counter.labels(path=f"/p{i}").inc()
        ready.send(True)
        done.recv()

    def scrape(self) -> str:
        return prometheus_client.generate_latest(self.registry).decode()


def median_ms(run: Callable[[], object], times: int) -> float:
    samples = []
    for _ in range(times):
        started = time.perf_counter()
        run()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def start_workers(subject: Any, count: int, series: range) -> list[tuple[Any, Any]]:
    out = []
    for _ in range(count):
        ready_r, ready_w = FORK.Pipe(duplex=False)
        done_r, done_w = FORK.Pipe(duplex=False)
        process = FORK.Process(target=subject.work, args=(series, ready_w, done_r))
        process.start()
        ready_r.recv()
        out.append((process, done_w))
    return out


def stop_workers(workers: list[tuple[Any, Any]]) -> None:
    for process, done in workers:
        done.send(True)
        process.join()


def inc_ns(inc: Callable[[], object]) -> float:
    number = 200_000
    best = min(timeit.repeat(inc, number=number, repeat=5))
    return best / number * 1e9


def main() -> None:
    restarts = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000
    backends = _backend.available()
    ours = [Ours(b) for b in backends]
    theirs = Theirs()

    print("## Counter.inc(), ns\n")
    local = backends[0].Counter()
    rows = [(f"{backends[0].name}, one process", inc_ns(local.inc))]
    for subject in ours:
        counter = subject.open().counter("bench_total")
        rows.append((f"{subject.backend.name}, shared", inc_ns(counter.inc)))
    prom = prometheus_client.Counter("bench", "Bench.", registry=None)
    rows.append(("prometheus_client, multiprocess", inc_ns(prom.inc)))
    print("| counter | ns per inc |\n|---|---:|")
    for name, ns in rows:
        print(f"| {name} | {ns:.1f} |")

    print(f"\n## Scrape of {WORKERS} live workers x {SERIES} series, ms (median of 20)\n")
    scrapes: dict[str, float] = {}
    for subject in [*ours, theirs]:
        name = getattr(subject, "name", None) or f"pepperpy {subject.backend.name}"
        workers = start_workers(subject, WORKERS, range(SERIES))
        text = subject.scrape()
        assert f'path="/p{SERIES - 1}"' in text
        scrapes[name] = median_ms(subject.scrape, 20)
        stop_workers(workers)
    print("| subject | ms per scrape |\n|---|---:|")
    for name, ms in scrapes.items():
        print(f"| {name} | {ms:.2f} |")

    print(f"\n## The scrape as workers restart, ms (median of 10; {SERIES} series)\n")
    marks = sorted({0, restarts // 10, restarts // 4, restarts // 2, restarts})
    curves: dict[str, list[float]] = {}
    for subject in [*ours, theirs]:
        name = getattr(subject, "name", None) or f"pepperpy {subject.backend.name}"
        # One worker lives throughout, holding every series.
        keeper = start_workers(subject, 1, range(SERIES))
        curve = []
        done = 0
        for mark in marks:
            while done < mark:
                stop_workers(
                    start_workers(subject, 1, range(done % 100 * 10, done % 100 * 10 + 10))
                )
                done += 1
            curve.append(median_ms(subject.scrape, 10))
        curves[name] = curve
        stop_workers(keeper)
    print("| subject | " + " | ".join(f"after {m}" for m in marks) + " |")
    print("|---|" + "---:|" * len(marks))
    for name, curve in curves.items():
        print(f"| {name} | " + " | ".join(f"{ms:.2f}" for ms in curve) + " |")
    for subject in ours:
        shutil.rmtree(subject.dir, ignore_errors=True)
    shutil.rmtree(PROM_DIR, ignore_errors=True)


if __name__ == "__main__":
    main()
