"""The bridge from a MetricsRegistry to OpenTelemetry (the ``otel`` extra).

``bridge(registry, meter_provider)`` makes every reader of an OpenTelemetry
SDK MeterProvider (periodic exporters, the Prometheus reader, the
InMemoryMetricReader) see the registry's metrics at each collection, beside
the provider's own instruments, in one instrumentation scope:

- a counter as a monotonic, cumulative Sum (named without ``_total``, as
  OpenTelemetry names counters);
- a gauge as a Gauge;
- a histogram as a cumulative explicit-bucket Histogram with its bounds,
  per-bucket counts, sum, min and max.

Labels become attributes. The registry's collectors run at each collection,
in the thread that collects (a periodic reader's own thread); if one raises,
the error is logged and that collection carries the provider's metrics
without the registry's.

The OpenTelemetry Python SDK has no public hook for metrics produced
outside its instruments (no MetricProducer), so the bridge wraps the
provider's ``_measurement_consumer.collect``, the one method every reader's
collection goes through; it checks for it and raises a RuntimeError naming
it if an SDK release no longer has it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Final

from pepperpy_core import __version__
from pepperpy_core.exposition import Family
from pepperpy_core.kinds import KINDS
from pepperpy_core.metrics import RegistryBase

try:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import (
        AggregationTemporality,
        Gauge,
        Histogram,
        HistogramDataPoint,
        Metric,
        MetricsData,
        NumberDataPoint,
        ResourceMetrics,
        ScopeMetrics,
        Sum,
    )
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope
except ImportError as exc:  # tests/test_otel.py hides the SDK to check this
    raise ImportError(
        "the OpenTelemetry bridge needs opentelemetry-sdk: install the extra with "
        "`pip install 'pepperpy-core[otel]'`",
        name="opentelemetry.sdk",
    ) from exc

__all__ = ["bridge"]

_log: Final = logging.getLogger("pepperpy_core.otel")
_TOUCHPOINT: Final = "MeterProvider._measurement_consumer.collect"
#: The attribute on a measurement consumer holding its bridged registries.
_BRIDGED: Final = "_pepperpy_bridged"
#: The SDK's metric data classes, as the kinds build their data with them.
_SDK: Final = SimpleNamespace(
    NumberDataPoint=NumberDataPoint,
    HistogramDataPoint=HistogramDataPoint,
    Sum=Sum,
    Gauge=Gauge,
    Histogram=Histogram,
    CUMULATIVE=AggregationTemporality.CUMULATIVE,
)


@dataclass(eq=False)
class _Bridged:
    registry: RegistryBase
    scope: InstrumentationScope
    started_ns: int


def bridge(
    registry: RegistryBase, meter_provider: MeterProvider, *, scope: str = "pepperpy_core"
) -> Callable[[], None]:
    """Make ``registry`` readable by every reader of ``meter_provider``, as
    the instrumentation scope ``scope``; returns a function that undoes it.
    TypeError for what is not a registry or an SDK MeterProvider; ValueError
    if ``scope`` is already bridged on this provider."""
    if not isinstance(registry, RegistryBase):
        raise TypeError(f"bridge() needs a MetricsRegistry, not {type(registry).__name__}")
    if not isinstance(meter_provider, MeterProvider):
        raise TypeError(
            "bridge() needs an opentelemetry.sdk.metrics.MeterProvider, "
            f"not {type(meter_provider).__name__}"
        )
    given: object = scope
    if not isinstance(given, str) or not given:
        raise ValueError(f"scope must be a non-empty str, got {scope!r}")

    consumer = getattr(meter_provider, "_measurement_consumer", None)
    original = getattr(consumer, "collect", None)
    if not callable(original):
        raise RuntimeError(
            f"this opentelemetry-sdk's MeterProvider has no {_TOUCHPOINT}, which the "
            "pepperpy-core bridge extends; use an opentelemetry-sdk release that has it"
        )
    with _LOCK:
        bridged: list[_Bridged] | None = getattr(consumer, _BRIDGED, None)
        if bridged is None:
            bridged = []
            _install(meter_provider, consumer, original, bridged)
        if any(b.scope.name == scope for b in bridged):
            raise ValueError(f"scope {scope!r} is already bridged to this MeterProvider")
        entry = _Bridged(registry, InstrumentationScope(scope, __version__), time.time_ns())
        bridged.append(entry)

    def unbridge() -> None:
        """Stop exporting the registry to this provider (again: nothing)."""
        with _LOCK:
            if entry in bridged:
                bridged.remove(entry)

    return unbridge


_LOCK: Final = threading.Lock()


def _install(
    provider: MeterProvider,
    consumer: Any,
    original: Callable[..., MetricsData | None],
    bridged: list[_Bridged],
) -> None:
    """Wrap the consumer's collect once; readers added later pick the wrapper
    up from the consumer, those already attached are pointed at it."""

    def collect(reader: Any, timeout_millis: float = 10_000) -> MetricsData | None:
        data = original(reader, timeout_millis=timeout_millis)
        with _LOCK:
            entries = list(bridged)
        try:
            ours = [s for s in (_scope_metrics(e) for e in entries) if s.metrics]
        except Exception:
            _log.exception("collecting a bridged MetricsRegistry failed; exporting without it")
            return data
        if not ours:
            return data
        if data is None or not data.resource_metrics:
            resource = provider._sdk_config.resource
            return MetricsData([ResourceMetrics(resource, ours, "")])
        first, *rest = data.resource_metrics
        merged = ResourceMetrics(first.resource, [*first.scope_metrics, *ours], first.schema_url)
        return MetricsData([merged, *rest])

    setattr(consumer, _BRIDGED, bridged)
    consumer.collect = collect
    for reader in getattr(provider, "_metric_readers", ()):
        if getattr(reader, "_collect", None) == original:
            reader._set_collect_callback(collect)


def _scope_metrics(entry: _Bridged) -> ScopeMetrics:
    now = time.time_ns()
    metrics = [
        _metric(family, children, entry.started_ns, now)
        for family, children in entry.registry.collect()
        if children
    ]
    return ScopeMetrics(entry.scope, metrics, "")


def _metric(family: Family, children: dict[tuple[str, ...], Any], start: int, now: int) -> Metric:
    data = KINDS[family.kind].otel(_SDK, family.label_names, family.buckets, children, start, now)
    return Metric(family.sample_base, family.description, "", data)
