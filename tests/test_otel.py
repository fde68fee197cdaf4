"""The OpenTelemetry bridge, read by the SDK's own InMemoryMetricReader."""

from __future__ import annotations

import importlib
import math
import sys
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    Histogram,
    InMemoryMetricReader,
    Metric,
    Sum,
)

from pepperpy_core.metrics import MetricsRegistry
from pepperpy_core.otel import bridge
from tests.hiding import hide

pytestmark = pytest.mark.backend


def metrics(reader: InMemoryMetricReader, scope: str = "pepperpy_core") -> dict[str, Metric]:
    data = reader.get_metrics_data()
    if data is None:  # nothing at all to report
        return {}
    return {
        metric.name: metric
        for resource in data.resource_metrics
        for scoped in resource.scope_metrics
        if scoped.scope.name == scope
        for metric in scoped.metrics
    }


def points(metric: Metric) -> dict[tuple[tuple[str, Any], ...], Any]:
    return {tuple(sorted(p.attributes.items())): p for p in metric.data.data_points}  # type: ignore[union-attr]


@pytest.fixture
def provider() -> Any:
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    yield meter_provider, reader
    meter_provider.shutdown()


def test_each_kind_arrives_as_its_opentelemetry_kind(provider: Any) -> None:
    meter_provider, reader = provider
    registry = MetricsRegistry()
    registry.counter("requests_total", {"route": "/a"}, description="Requests.").inc(3)
    registry.counter("requests_total", {"route": "/b"}).inc()
    registry.gauge("queue_depth", description="Waiting.").set(4.5)
    latency = registry.histogram("latency_seconds", {"db": "main"}, buckets=[0.1, 1.0])
    for seconds in (0.05, 0.5, 0.7, 3.0):
        latency.observe(seconds)
    bridge(registry, meter_provider)

    found = metrics(reader)
    assert set(found) == {"requests", "queue_depth", "latency_seconds"}

    requests = found["requests"]
    assert requests.description == "Requests."
    assert isinstance(requests.data, Sum)
    assert requests.data.is_monotonic
    assert requests.data.aggregation_temporality == AggregationTemporality.CUMULATIVE
    assert {k: p.value for k, p in points(requests).items()} == {
        (("route", "/a"),): 3,
        (("route", "/b"),): 1,
    }

    depth = found["queue_depth"]
    assert isinstance(depth.data, Gauge)
    assert [p.value for p in depth.data.data_points] == [4.5]

    histogram = found["latency_seconds"]
    assert isinstance(histogram.data, Histogram)
    assert histogram.data.aggregation_temporality == AggregationTemporality.CUMULATIVE
    (point,) = histogram.data.data_points
    assert point.attributes == {"db": "main"}
    assert list(point.explicit_bounds) == [0.1, 1.0]
    assert list(point.bucket_counts) == [1, 2, 1]
    assert point.count == 4
    assert point.sum == pytest.approx(4.25)
    assert (point.min, point.max) == (0.05, 3.0)


def test_values_follow_the_registry_and_start_times_hold(provider: Any) -> None:
    meter_provider, reader = provider
    registry = MetricsRegistry()
    counter = registry.counter("jobs_total")
    empty = registry.histogram("idle_seconds")
    bridge(registry, meter_provider)
    first = metrics(reader)
    counter.inc(2)
    empty.observe(0.2)
    second = metrics(reader)
    (a,) = first["jobs"].data.data_points  # type: ignore[union-attr]
    (b,) = second["jobs"].data.data_points  # type: ignore[union-attr]
    assert (a.value, b.value) == (0, 2)
    assert a.start_time_unix_nano == b.start_time_unix_nano
    assert b.time_unix_nano >= a.time_unix_nano
    (before,) = first["idle_seconds"].data.data_points  # type: ignore[union-attr]
    assert before.count == 0
    assert (before.min, before.max) == (math.inf, -math.inf)
    (after,) = second["idle_seconds"].data.data_points  # type: ignore[union-attr]
    assert after.count == 1


def test_the_providers_own_instruments_are_still_there(provider: Any) -> None:
    meter_provider, reader = provider
    meter_provider.get_meter("app").create_counter("sdk_requests").add(5)
    registry = MetricsRegistry()
    registry.counter("ours_total").inc()
    bridge(registry, meter_provider)
    assert [p.value for p in metrics(reader, "app")["sdk_requests"].data.data_points] == [5]  # type: ignore[union-attr]
    assert "ours" in metrics(reader)


def test_readers_added_later_see_the_registry_too() -> None:
    first = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[first], shutdown_on_exit=False)
    try:
        registry = MetricsRegistry()
        registry.gauge("level").set(1)
        bridge(registry, meter_provider)
        later = InMemoryMetricReader()
        meter_provider.add_metric_reader(later)
        assert "level" in metrics(first)
        assert "level" in metrics(later)
    finally:
        meter_provider.shutdown()


def test_collectors_run_at_collection_and_a_failure_keeps_the_sdk_data(
    provider: Any, caplog: pytest.LogCaptureFixture
) -> None:
    meter_provider, reader = provider
    meter_provider.get_meter("app").create_counter("sdk_requests").add(1)
    registry = MetricsRegistry()
    seen = registry.gauge("collections")
    broken = False

    def collect() -> None:
        if broken:
            raise RuntimeError("sensor unplugged")
        seen.inc()

    registry.add_collector(collect)
    bridge(registry, meter_provider)
    assert [p.value for p in metrics(reader)["collections"].data.data_points] == [1.0]  # type: ignore[union-attr]
    broken = True
    assert metrics(reader) == {}
    assert "sdk_requests" in metrics(reader, "app")
    assert "sensor unplugged" in caplog.text


def test_several_registries_in_scopes_of_their_own_and_unbridging(provider: Any) -> None:
    meter_provider, reader = provider
    db, web = MetricsRegistry(), MetricsRegistry()
    db.counter("queries_total").inc(2)
    web.counter("queries_total").inc(7)
    undo_db = bridge(db, meter_provider, scope="db")
    bridge(web, meter_provider, scope="web")
    with pytest.raises(ValueError, match="already bridged"):
        bridge(MetricsRegistry(), meter_provider, scope="db")
    assert metrics(reader, "db")["queries"].data.data_points[0].value == 2  # type: ignore[union-attr]
    assert metrics(reader, "web")["queries"].data.data_points[0].value == 7  # type: ignore[union-attr]
    undo_db()
    undo_db()  # a second time does nothing
    assert metrics(reader, "db") == {}
    assert "queries" in metrics(reader, "web")
    bridge(db, meter_provider, scope="db")  # the scope is free again
    assert "queries" in metrics(reader, "db")


@pytest.mark.parametrize(
    ("registry", "meter_provider", "scope", "error"),
    [
        ({}, "provider", "s", TypeError),
        ("registry", object(), "s", TypeError),
        ("registry", "provider", "", ValueError),
        ("registry", "provider", 3, ValueError),
    ],
)
def test_bad_arguments_are_refused(
    provider: Any, registry: Any, meter_provider: Any, scope: Any, error: type[Exception]
) -> None:
    real_provider, reader = provider
    registry = MetricsRegistry() if registry == "registry" else registry
    meter_provider = real_provider if meter_provider == "provider" else meter_provider
    with pytest.raises(error):
        bridge(registry, meter_provider, scope=scope)
    assert metrics(reader) == {}


def test_without_the_sdk_the_import_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    hide(monkeypatch, "opentelemetry")
    monkeypatch.delitem(sys.modules, "pepperpy_core.otel")
    with pytest.raises(ImportError, match=r"pepperpy-core\[otel\]"):
        importlib.import_module("pepperpy_core.otel")


def _work_shared(directory: str) -> None:
    registry = MetricsRegistry(shared_dir=directory)
    registry.counter("jobs_total").inc(5)
    registry.histogram("wait_seconds", buckets=[1.0]).observe(2.0)


def test_a_shared_registry_bridges_every_process(provider: Any, tmp_path: Any) -> None:
    import multiprocessing

    meter_provider, reader = provider
    registry = MetricsRegistry(shared_dir=tmp_path)
    registry.counter("jobs_total").inc(2)
    registry.histogram("wait_seconds", buckets=[1.0]).observe(0.5)
    worker = multiprocessing.get_context("fork").Process(target=_work_shared, args=(str(tmp_path),))
    worker.start()
    worker.join(60)
    assert worker.exitcode == 0
    bridge(registry, meter_provider)
    found = metrics(reader)
    assert {k: p.value for k, p in points(found["jobs"]).items()} == {(): 7}
    (wait,) = points(found["wait_seconds"]).values()
    assert (wait.count, wait.sum, wait.min, wait.max) == (2, 2.5, 0.5, 2.0)
    assert list(wait.bucket_counts) == [1, 1]
