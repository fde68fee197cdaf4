"""What an Application reports about its modules as metrics, and the one
exposition of its registry and every module's.

The runtime's own series live in ``app.metrics`` and are set when they are
exported (by a collector), so starting and stopping pay nothing for them:

- ``pepperpy_module_up{module}``: 1 while the module runs, else 0.
- ``pepperpy_module_state{module, state}``: 1 for the module's state, 0 for
  the others (a state set).
- ``pepperpy_module_start_seconds{module}`` and ``..._stop_seconds``: how
  long its last ``initialize()`` and ``cleanup()`` took.
- ``pepperpy_module_health{module, status}``: the last ``health()`` verdict
  as a state set (absent before the first).
- ``pepperpy_health_check_seconds{module}``: a histogram of health check
  latencies, observed by every ``health()``.
- ``pepperpy_scrapes_total{format}``: scrapes served over HTTP.
- Every CachedModule's ``cache_stats()``, with no wiring:
  ``pepperpy_cache_hits_total``, ``..._misses_total``, ``..._loads_total``
  and ``..._load_failures_total`` ``{module}``; every RetryModule's
  ``stats``: ``pepperpy_retry_calls_total``, ``..._attempts_total``,
  ``..._failures_total`` (failed attempts) and ``..._gave_up_total``
  ``{module}``. They follow the module's own counts; a count that went back
  (its stats replaced) is counted on from zero, so the series never fall.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Final

from pepperpy_core.exposition import Exposition, encodable, utf8
from pepperpy_core.metrics import Counter, Gauge, Histogram, MetricsRegistry, RegistryBase
from pepperpy_core.module.base import ModuleState
from pepperpy_core.module.cached import CachedModule
from pepperpy_core.module.retry import RetryModule, RetryStats
from pepperpy_core.runtime.graph import Node
from pepperpy_core.runtime.health import HealthReport

_STATES: Final = tuple(ModuleState)
_STATUSES: Final = ("healthy", "degraded", "unhealthy")
_HELP: Final = {
    "pepperpy_module_up": "1 while the module runs, else 0.",
    "pepperpy_module_state": "1 for the module's lifecycle state, 0 for the others.",
    "pepperpy_module_start_seconds": "Seconds the module's last initialize() took.",
    "pepperpy_module_stop_seconds": "Seconds the module's last cleanup() took.",
    "pepperpy_module_health": "1 for the module's last health status, 0 for the others.",
    "pepperpy_health_check_seconds": "Latency of the module's health checks.",
    "pepperpy_scrapes_total": "Metrics scrapes served over HTTP, by format.",
}
#: The counts a capability keeps, exported as counters: (metric, the count, help).
_CACHE_COUNTS: Final = (
    ("pepperpy_cache_hits_total", "hits", "Reads of the module's cache that found the key."),
    ("pepperpy_cache_misses_total", "misses", "Reads of the module's cache that did not."),
    ("pepperpy_cache_loads_total", "loads", "Loads get_or_load ran (concurrent calls share one)."),
    ("pepperpy_cache_load_failures_total", "failures", "Loads get_or_load ran that raised."),
)
_RETRY_COUNTS: Final = (
    ("pepperpy_retry_calls_total", "calls", "Calls made through the module's retry()."),
    ("pepperpy_retry_attempts_total", "attempts", "Attempts retry() made, first ones included."),
    ("pepperpy_retry_failures_total", "failures", "Attempts that failed and could be retried."),
    ("pepperpy_retry_gave_up_total", "gave_up", "retry() calls that gave up."),
)
#: Health check latencies: a check is usually fast, and times out at seconds.
HEALTH_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class _Following:
    """A counter that follows a count kept elsewhere (a module's stats)."""

    __slots__ = ("counter", "seen")

    def __init__(self, counter: Counter) -> None:
        self.counter = counter
        self.seen = 0

    def follow(self, count: int) -> None:
        # A count that went back was started again from zero: all of it is new.
        new = count - self.seen if count >= self.seen else count
        if new:
            self.counter.inc(new)
        self.seen = count


class _ModuleGauges:
    """One module's gauges, made on its first export and kept."""

    __slots__ = ("cache", "health", "retry", "start", "states", "stop", "up")

    def __init__(self, metrics: RuntimeMetrics, name: str) -> None:
        self.up = metrics.gauge("pepperpy_module_up", module=name)
        self.states = [
            metrics.gauge("pepperpy_module_state", module=name, state=s.value) for s in _STATES
        ]
        self.start: Gauge | None = None
        self.stop: Gauge | None = None
        self.health: list[Gauge] | None = None
        self.cache: list[_Following] | None = None
        self.retry: list[_Following] | None = None

    def follow(self, metrics: RuntimeMetrics, name: str, module: object) -> None:
        """Move the capability counters on to the module's own counts."""
        if isinstance(module, CachedModule):
            if self.cache is None:
                self.cache = metrics.following(_CACHE_COUNTS, name)
            stats = module.cache_stats()
            for (_, count, _), following in zip(_CACHE_COUNTS, self.cache, strict=True):
                following.follow(getattr(stats, count))
        retried = getattr(module, "stats", None) if isinstance(module, RetryModule) else None
        if isinstance(retried, RetryStats):
            if self.retry is None:
                self.retry = metrics.following(_RETRY_COUNTS, name)
            for (_, count, _), following in zip(_RETRY_COUNTS, self.retry, strict=True):
                following.follow(getattr(retried, count))


class RuntimeMetrics:
    """The runtime's series in ``registry`` (see this module's doc)."""

    def __init__(self, registry: MetricsRegistry, nodes: Callable[[], list[Node] | None]) -> None:
        self.registry = registry
        self._nodes = nodes
        self._gauges: dict[str, _ModuleGauges] = {}
        self._latency: dict[str, Histogram] = {}
        self._durations: tuple[dict[str, float], dict[str, float]] = ({}, {})
        self._health: HealthReport | None = None
        for name, text in _HELP.items():
            registry.describe(name, text)
        for name, _, text in (*_CACHE_COUNTS, *_RETRY_COUNTS):
            registry.describe(name, text)
        for fmt in ("prometheus", "openmetrics"):  # both exported from the start, at 0
            registry.counter("pepperpy_scrapes_total", {"format": fmt})
        registry.add_collector(self._collect)

    def gauge(self, name: str, **labels: str) -> Gauge:
        """The runtime's gauge ``name`` with these labels."""
        return self.registry.gauge(name, labels)

    def watch(self, start: dict[str, float], stop: dict[str, float]) -> None:
        """Read start and stop durations from these dicts at export time."""
        self._durations = (start, stop)

    def observe_health(self, report: HealthReport) -> None:
        """Keep ``report`` for export and record each check's latency."""
        self._health = report
        for module, result in report.modules.items():
            histogram = self._latency.get(module)
            if histogram is None:
                if not encodable(module):  # start() refuses it; health() still answers
                    continue
                histogram = self._latency[module] = self.registry.histogram(
                    "pepperpy_health_check_seconds", {"module": module}, buckets=HEALTH_BUCKETS
                )
            histogram.observe(result.latency)

    def following(self, counts: tuple[tuple[str, str, str], ...], module: str) -> list[_Following]:
        """A counter per count, labelled with ``module``, following it."""
        labels = {"module": module}
        return [_Following(self.registry.counter(name, labels)) for name, _, _ in counts]

    def count_scrape(self, fmt: str) -> None:
        """Count one scrape served in ``fmt``."""
        self.registry.counter("pepperpy_scrapes_total", {"format": fmt}).inc()

    def _collect(self) -> None:
        nodes = self._nodes()
        if not nodes:
            return
        started, stopped = self._durations
        report = self._health
        for node in nodes:
            name = node.name
            gauges = self._gauges.get(name)
            if gauges is None:
                gauges = self._gauges[name] = _ModuleGauges(self, name)
            state = node.current_state()
            gauges.follow(self, name, node.module)
            gauges.up.set(1.0 if state is ModuleState.READY else 0.0)
            for value, gauge in zip(_STATES, gauges.states, strict=True):
                gauge.set(1.0 if value is state else 0.0)
            if name in started:
                if gauges.start is None:
                    gauges.start = self.gauge("pepperpy_module_start_seconds", module=name)
                gauges.start.set(started[name])
            if name in stopped:
                if gauges.stop is None:
                    gauges.stop = self.gauge("pepperpy_module_stop_seconds", module=name)
                gauges.stop.set(stopped[name])
            verdict = report.modules.get(name) if report is not None else None
            if verdict is not None:
                if gauges.health is None:
                    gauges.health = [
                        self.gauge("pepperpy_module_health", module=name, status=s)
                        for s in _STATUSES
                    ]
                for status, gauge in zip(_STATUSES, gauges.health, strict=True):
                    gauge.set(1.0 if status == verdict.status else 0.0)


def module_registries(nodes: Iterable[Node]) -> list[tuple[RegistryBase, list[str]]]:
    """Each distinct registry the modules hold as ``metrics``, with the
    names of the modules that hold it, in start order."""
    found: dict[int, tuple[RegistryBase, list[str]]] = {}
    for node in nodes:
        registry: Any = getattr(node.module, "metrics", None)
        if isinstance(registry, RegistryBase):
            found.setdefault(id(registry), (registry, []))[1].append(node.name)
    return list(found.values())


def open_exposition(own: MetricsRegistry, nodes: Iterable[Node]) -> Exposition:
    """One exposition of ``own`` and every module's registry (a registry held
    by one module gains its ``module`` label); MetricError naming both
    owners, and nothing left attached, when two of them clash, or naming the
    module whose name cannot be a label value (the runtime's series carry
    every module's name)."""
    nodes = list(nodes)
    for node in nodes:
        utf8(node.name, "the module name")
    group = Exposition()
    try:
        group.add(own, "the application", exclusive=True)
        for registry, holders in module_registries(nodes):
            if registry is own:
                continue
            if len(holders) == 1:
                group.add(registry, f"module {holders[0]!r}", module=holders[0])
            else:
                owners = ", ".join(repr(h) for h in holders)
                group.add(registry, f"the registry shared by modules {owners}")
    except BaseException:
        group.close()
        raise
    return group
