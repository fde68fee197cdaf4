"""/metrics: rendering 1,000 series against prometheus_client's
``generate_latest``, and one scrape's round trip over loopback against
prometheus_client's own HTTP server. Tables: ``bash benches/run.sh``."""

from __future__ import annotations

import asyncio
import http.client
import threading
from collections.abc import Callable, Iterator
from typing import Any

import prometheus_client
import pytest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from pepperpy_core import Application, _backend
from pepperpy_core.metrics import RegistryBase

SERIES = 500  # of each kind: 1,000 series in all
SAMPLES = (0.001, 0.02, 0.3, 4.0)


def _labels(i: int) -> dict[str, str]:
    return {"route": f"/r{i % 50}", "code": str(200 + i // 50)}


def _fill(registry: Any, series: int = SERIES) -> Any:
    for i in range(series):
        registry.counter("requests_total", _labels(i), description="Requests.").inc(i)
        latency = registry.histogram("latency_seconds", _labels(i), description="Latency.")
        for seconds in SAMPLES:
            latency.observe(seconds)
    return registry


def _prometheus_client(series: int = SERIES) -> prometheus_client.CollectorRegistry:
    registry = prometheus_client.CollectorRegistry()
    requests = prometheus_client.Counter(
        "requests_total", "Requests.", ["route", "code"], registry=registry
    )
    latency = prometheus_client.Histogram(
        "latency_seconds", "Latency.", ["route", "code"], registry=registry
    )
    for i in range(series):
        requests.labels(**_labels(i)).inc(i)
        for seconds in SAMPLES:
            latency.labels(**_labels(i)).observe(seconds)
    return registry


def _renderer(name: str, fmt: str, series: int) -> Callable[[], Any] | None:
    """The render of ``series`` series by subject ``name`` (only its registry
    is made: a big registry of another subject, alive meanwhile, slows the
    collector down for everyone); None if that backend is not built here."""
    if name == "prometheus_client":
        theirs = _prometheus_client(series)
        latest = prometheus_client.generate_latest if fmt == "prometheus" else generate_openmetrics
        return lambda: latest(theirs)
    for backend in _backend.available():
        if backend.name == name:
            registry = _fill(type("Registry", (RegistryBase, backend.RegistryCore), {})(), series)
            return lambda: registry.export(fmt)
    return None


@pytest.mark.parametrize("series", [SERIES, 10 * SERIES], ids=["1k", "10k"])
@pytest.mark.parametrize("fmt", ["prometheus", "openmetrics"])
@pytest.mark.parametrize("name", ["native", "python", "prometheus_client"])
def test_render(benchmark: Any, name: str, fmt: str, series: int) -> None:
    render = _renderer(name, fmt, series)
    if render is None:
        pytest.skip(f"backend {name} is not available here")
    assert b"latency_seconds_bucket" in (r.encode() if isinstance(r := render(), str) else r)
    benchmark.group = f"/metrics body ({fmt}), {2 * series:,} series, per render"
    benchmark(render)


# --- one scrape over loopback ---------------------------------------------------------


class _AppInThread:
    """An Application with HTTP on a free loopback port, in a thread of its own."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.app = Application(http="127.0.0.1:0")
        _fill(self.app.metrics)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.app.start(), self.loop).result(30)
        port = self.app.http_port
        assert port is not None
        self.port = port

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.app.stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)
        self.loop.close()


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, int]]:
    ours = _AppInThread()
    theirs, thread = prometheus_client.start_http_server(
        0, addr="127.0.0.1", registry=_prometheus_client()
    )
    try:
        yield {"pepperpy": ours.port, "prometheus_client": theirs.server_port}
    finally:
        ours.close()
        theirs.shutdown()
        theirs.server_close()
        thread.join(30)


@pytest.mark.parametrize("name", ["pepperpy", "prometheus_client"])
def test_scrape_round_trip(benchmark: Any, servers: dict[str, int], name: str) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", servers[name], timeout=30)

    def scrape() -> bytes:
        connection.request("GET", "/metrics")
        response = connection.getresponse()
        body = response.read()
        assert response.status == 200
        return body

    assert b"latency_seconds_bucket" in scrape()
    benchmark.group = "GET /metrics over loopback, 1,000 series, per scrape"
    benchmark(scrape)
    connection.close()
