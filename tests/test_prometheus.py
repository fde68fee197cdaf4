"""A real Prometheus scrapes a running Application over loopback, in both
formats, from the side server and from the ASGI app mounted in FastAPI
under uvicorn, and its query API returns the numbers the application
counted; ``promtool check metrics`` accepts what /metrics serves."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from fastapi import FastAPI

from pepperpy_core import Application
from pepperpy_core.asgi import RequestMetrics, make_asgi_app
from pepperpy_core.module import CachedModule, ModuleConfig
from pepperpy_core.module.metrics import MetricsModule
from tests.asgiutil import serving
from tests.asyncutil import run
from tests.servers import binary, free_port, stop

CONFIG = """\
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  # Prometheus 2.x asks for OpenMetrics first: this job gets OpenMetrics.
  - job_name: negotiated
    metrics_path: {path}
    static_configs:
      - targets: ["127.0.0.1:{port}"]
  # This one asks for the text format 0.0.4 by name.
  - job_name: text
    metrics_path: {path}
    params:
      format: [prometheus]
    static_configs:
      - targets: ["127.0.0.1:{port}"]
"""


class Shop(MetricsModule):
    """A module that counts orders and times checkouts."""

    def __init__(self) -> None:
        super().__init__(ModuleConfig(name="shop"))

    async def initialize(self) -> None:
        await super().initialize()
        self.metrics.counter("orders_total", description="Orders taken.").inc(7)
        checkout = self.metrics.histogram(
            "checkout_seconds", description="Checkout time.", buckets=[0.1, 1.0]
        )
        for seconds in (0.05, 0.2, 0.3, 2.0, 0.01):
            checkout.observe(seconds)


class Prometheus:
    """A Prometheus server of its own: temporary config and storage, a free
    loopback port, stopped by ``close()``."""

    def __init__(self, directory: Path, target_port: int, path: str = "/metrics") -> None:
        config = directory / "prometheus.yml"
        config.write_text(CONFIG.format(port=target_port, path=path))
        self.port = free_port()
        self.log = directory / "prometheus.log"
        with self.log.open("wb") as log:
            self.process = self._start(config, directory, log)
        self.base = f"http://127.0.0.1:{self.port}"

    def _start(self, config: Path, directory: Path, log: Any) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                binary("prometheus", "prometheus"),
                f"--config.file={config}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )

    def close(self) -> None:
        stop(self.process)

    async def until(self, session: aiohttp.ClientSession, check: Any, what: str) -> Any:
        """Poll ``check(session)`` until it returns something true (30 s at most)."""
        deadline = time.monotonic() + 30
        last: object = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"prometheus exited: {self.log.read_text()[-2000:]}")
            try:
                result = await check(session)
            except aiohttp.ClientError as error:  # not listening yet
                last = error
            else:
                if result:
                    return result
                last = result
            await asyncio.sleep(0.2)
        raise AssertionError(f"{what}: not seen within 30 s (last: {last!r})")

    async def value(self, session: aiohttp.ClientSession, query: str) -> float | None:
        """The value of an instant query with one series, or None."""
        async with session.get(f"{self.base}/api/v1/query", params={"query": query}) as response:
            body = await response.json()
        assert body["status"] == "success", body
        result = body["data"]["result"]
        if len(result) != 1:
            return None
        return float(result[0]["value"][1])


def test_a_real_prometheus_scrapes_both_formats(tmp_path: Path) -> None:
    binary("prometheus", "prometheus")

    async def main() -> None:
        app = Application(Shop(), http="127.0.0.1:0")
        async with app, aiohttp.ClientSession() as session:
            port = app.http_port
            assert port is not None
            prometheus = Prometheus(tmp_path, port)
            try:
                await prometheus.until(session, ready(prometheus), "prometheus ready")
                for job in ("negotiated", "text"):

                    def equals(query: str, wanted: float) -> Any:
                        async def check(session: aiohttp.ClientSession) -> bool:
                            return await prometheus.value(session, query) == wanted

                        return check

                    where = f'job="{job}",module="shop"'
                    await prometheus.until(session, equals(f'up{{job="{job}"}}', 1), f"{job} up")
                    await prometheus.until(
                        session, equals(f"orders_total{{{where}}}", 7), f"{job} counter"
                    )
                    await prometheus.until(
                        session, equals(f"checkout_seconds_count{{{where}}}", 5), f"{job} count"
                    )
                    await prometheus.until(
                        session,
                        equals(f'checkout_seconds_bucket{{{where},le="1.0"}}', 4),
                        f"{job} bucket",
                    )
                    await prometheus.until(
                        session,
                        equals(f'pepperpy_module_up{{job="{job}",module="shop"}}', 1),
                        f"{job} runtime gauge",
                    )
                # Each format was really served to Prometheus, and ingested
                # (a scrape is counted once it is served: seen by the next).
                for fmt in ("openmetrics", "prometheus"):
                    query = f'max(pepperpy_scrapes_total{{format="{fmt}"}}) > 0'
                    await prometheus.until(
                        session, lambda s, q=query: prometheus.value(s, q), f"{fmt} served"
                    )
                async with session.get(f"{prometheus.base}/api/v1/targets") as response:
                    targets = (await response.json())["data"]["activeTargets"]
                assert {t["labels"]["job"] for t in targets} == {"negotiated", "text"}
                assert all(t["health"] == "up" and t["lastError"] == "" for t in targets), targets
            finally:
                prometheus.close()

    run(main(), timeout=120)


class Catalog(CachedModule):
    """Counted on /metrics with no wiring."""


def test_a_real_prometheus_scrapes_the_asgi_app_mounted_in_fastapi(tmp_path: Path) -> None:
    binary("prometheus", "prometheus")
    catalog = Catalog(ModuleConfig(name="catalog"))
    core = Application(Shop(), catalog)
    api = FastAPI(lifespan=core.lifespan)
    api.add_middleware(RequestMetrics, registry=core.metrics)
    api.mount("/ops", make_asgi_app(core))

    @api.get("/items/{item_id}")
    async def item(item_id: str) -> str:
        async def load() -> str:
            return item_id * 2

        return await catalog.get_or_load(item_id, load)

    async def main() -> None:
        async with serving(api) as base, aiohttp.ClientSession() as session:
            for item_id in ("1", "2", "1"):  # two misses and loads, a hit
                async with session.get(f"{base}/items/{item_id}") as response:
                    assert response.status == 200
            port = int(base.rsplit(":", 1)[1])
            prometheus = Prometheus(tmp_path, port, path="/ops/metrics")
            try:
                await prometheus.until(session, ready(prometheus), "prometheus ready")

                def equals(query: str, wanted: float) -> Any:
                    async def check(session: aiohttp.ClientSession) -> bool:
                        return await prometheus.value(session, query) == wanted

                    return check

                for job in ("negotiated", "text"):
                    found = {
                        f'up{{job="{job}"}}': 1,
                        f'orders_total{{job="{job}",module="shop"}}': 7,
                        f'pepperpy_module_up{{job="{job}",module="catalog"}}': 1,
                        f'pepperpy_cache_hits_total{{job="{job}",module="catalog"}}': 1,
                        f'pepperpy_cache_loads_total{{job="{job}",module="catalog"}}': 2,
                        (
                            "http_server_request_duration_seconds_count"
                            f'{{job="{job}",method="GET",route="/items/{{item_id}}",status="200"}}'
                        ): 3,
                    }
                    for query, wanted in found.items():
                        await prometheus.until(session, equals(query, wanted), f"{job}: {query}")
                # Prometheus's own scrapes are requests too, under the mount's route.
                scraped = 'http_server_request_duration_seconds_count{route="/ops/metrics"} > 0'
                await prometheus.until(
                    session, lambda s: prometheus.value(s, scraped), "scrapes counted"
                )
                async with session.get(f"{prometheus.base}/api/v1/targets") as response:
                    targets = (await response.json())["data"]["activeTargets"]
                assert {t["scrapeUrl"].split("?")[0] for t in targets} == {f"{base}/ops/metrics"}
                assert all(t["health"] == "up" and t["lastError"] == "" for t in targets), targets
            finally:
                prometheus.close()

    run(main(), timeout=120)


def ready(prometheus: Prometheus) -> Any:
    async def check(session: aiohttp.ClientSession) -> bool:
        async with session.get(f"{prometheus.base}/-/ready") as response:
            return response.status == 200

    return check


def promtool(text: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary("promtool", "prometheus"), "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("fmt", ["prometheus", "openmetrics"])
def test_promtool_accepts_what_the_application_serves(fmt: Any) -> None:
    binary("promtool", "prometheus")

    async def main() -> str:
        shop = Shop()
        app = Application(shop, http="127.0.0.1:0")
        async with app:
            shop.record_success()
            shop.record_failure("timeout")
            await app.health()
            async with aiohttp.ClientSession() as session:
                url = f"http://127.0.0.1:{app.http_port}/metrics?format={fmt}"
                async with session.get(url) as response:
                    return await response.text()

    text = run(main())
    checked = promtool(text)
    if fmt == "prometheus":
        assert (checked.returncode, checked.stdout, checked.stderr) == (0, "", "")
        return
    # promtool 2.x reads its input as the text format: OpenMetrics parses,
    # and the only finding is that a counter's _total samples have no HELP
    # of their own (OpenMetrics puts it on the family, without _total).
    assert "error" not in checked.stderr.lower(), checked.stderr
    findings = [line for line in checked.stderr.splitlines() if line]
    assert findings, "expected promtool to read OpenMetrics as the text format"
    assert all(line.endswith("_total no help text") for line in findings), findings


class Undescribed(MetricsModule):
    """The spec's API, which takes no help text: every kind made without one."""

    def __init__(self) -> None:
        super().__init__(ModuleConfig(name="plain"))

    async def initialize(self) -> None:
        await super().initialize()
        with self.timer("op"):
            pass
        self.metrics.counter("jobs_total").inc()
        self.metrics.counter("http_requests", {"code": "200"}).inc()
        self.metrics.gauge("queue_depth").set(3)
        self.metrics.histogram("fetch_seconds").observe(0.2)


@pytest.mark.parametrize("fmt", ["prometheus", "openmetrics"])
def test_promtool_accepts_metrics_made_without_help_text(fmt: Any) -> None:
    binary("promtool", "prometheus")

    async def main() -> str:
        app = Application(Undescribed(), http="127.0.0.1:0")
        async with app, aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{app.http_port}/metrics?format={fmt}"
            async with session.get(url) as response:
                return await response.text()

    text = run(main())
    assert "# HELP op Durations of op, in seconds.\n" in text
    assert "# HELP queue_depth Current queue depth.\n" in text
    checked = promtool(text)
    if fmt == "prometheus":
        assert (checked.returncode, checked.stdout, checked.stderr) == (0, "", "")
        return
    # As above: only the counters' _total samples, read as the text format.
    findings = [line for line in checked.stderr.splitlines() if line]
    assert "error" not in checked.stderr.lower(), checked.stderr
    assert {"http_requests_total no help text", "jobs_total no help text"} <= set(findings)
    assert all(line.endswith("_total no help text") for line in findings), findings
