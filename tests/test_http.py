"""An Application's HTTP endpoints: what each answers and when, from before
the first module starts to after the last one stops; bad addresses, clashing
registries, hostile clients, and nothing left behind after stop()."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import resource
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text

from pepperpy_core import Application
from pepperpy_core.errors import MetricError
from pepperpy_core.exposition import CONTENT_TYPES
from pepperpy_core.metrics import MetricsRegistry
from pepperpy_core.module import BaseModule, ModuleConfig
from pepperpy_core.module.metrics import MetricsModule
from pepperpy_core.runtime import StartupError, accept_errors
from pepperpy_core.runtime import app as app_module
from pepperpy_core.runtime import endpoints as endpoints_module
from pepperpy_core.runtime import http as http_module
from tests.asyncutil import run, until
from tests.hiding import hide

LOCAL = "127.0.0.1:0"
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
    "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


class Service(MetricsModule):
    """A module whose start, stop and health the test controls."""

    def __init__(self, name: str, **kwargs: Any) -> None:
        super().__init__(ModuleConfig(name=name), **kwargs)
        self.healthy = True
        self.gate_start: asyncio.Event | None = None
        self.gate_stop: asyncio.Event | None = None
        self.on_start: Callable[[], Awaitable[None]] | None = None
        self.on_stop: Callable[[], Awaitable[None]] | None = None
        self.starting = asyncio.Event()  # set when initialize() begins

    async def initialize(self) -> None:
        self.starting.set()
        if self.on_start is not None:
            await self.on_start()
        if self.gate_start is not None:
            await self.gate_start.wait()
        await super().initialize()

    async def cleanup(self) -> None:
        if self.on_stop is not None:
            await self.on_stop()
        if self.gate_stop is not None:
            await self.gate_stop.wait()
        await super().cleanup()

    async def health_check(self) -> bool:
        return self.healthy


async def get(port: int, path: str, **headers: str) -> tuple[int, str, str]:
    """(status, content type, body) of one GET on a fresh connection."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}{path}", headers=headers) as response,
    ):
        return response.status, response.headers.get("Content-Type", ""), await response.text()


def refused(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def samples(
    text: str, fmt: str = "prometheus"
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    parse = parse_openmetrics if fmt == "openmetrics" else parse_text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in parse(text)
        for s in family.samples
    }


@asynccontextmanager
async def running(*modules: Any, **kwargs: Any) -> AsyncIterator[Application]:
    """A started application with HTTP on a free loopback port; on exit,
    stopped, and checked to leave no task and no listener behind."""
    before = asyncio.all_tasks()
    app = Application(*modules, http=LOCAL, **kwargs)
    await app.start()
    port = app.http_port
    assert port is not None
    try:
        yield app
    finally:
        await app.stop()
        assert app.http_port is None
        assert refused(port)
        await asyncio.sleep(0)
        assert asyncio.all_tasks() - before == set()


# --- the endpoints --------------------------------------------------------------------


def test_each_endpoint_answers() -> None:
    async def main() -> None:
        db = Service("db")
        async with running(db) as app:
            db.record_success()
            db.metrics.counter("queries_total").inc(3)
            port = app.http_port
            assert port is not None
            status, kind, body = await get(port, "/metrics")
            assert (status, kind) == (200, "text/plain; version=0.0.4; charset=utf-8")
            seen = samples(body)
            assert seen[("queries_total", (("module", "db"),))] == 3.0
            assert seen[("pepperpy_module_successes_total", (("module", "db"),))] == 1.0
            assert seen[("pepperpy_module_up", (("module", "db"),))] == 1.0
            assert seen[("pepperpy_module_state", (("module", "db"), ("state", "ready")))] == 1.0
            assert seen[("pepperpy_module_state", (("module", "db"), ("state", "created")))] == 0.0
            assert seen[("pepperpy_module_start_seconds", (("module", "db"),))] >= 0.0

            status, kind, body = await get(port, "/metrics", Accept=PROMETHEUS_ACCEPT)
            assert (status, kind) == (
                200,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )
            assert body.endswith("# EOF\n")
            seen = samples(body, "openmetrics")
            assert seen[("pepperpy_scrapes_total", (("format", "prometheus"),))] == 1.0
            assert seen[("queries_total", (("module", "db"),))] == 3.0

            for query, fmt in (("openmetrics", "openmetrics"), ("text", "prometheus")):
                status, kind, _ = await get(
                    port, f"/metrics?format={query}", Accept=PROMETHEUS_ACCEPT
                )
                assert (status, kind) == (200, CONTENT_TYPES[fmt])
            status, _, body = await get(port, "/metrics?format=json")
            assert status == 400
            assert "'json'" in body

            assert (await get(port, "/livez"))[::2] == (200, "ok\n")
            assert (await get(port, "/startupz"))[::2] == (200, "started\n")
            assert (await get(port, "/readyz"))[::2] == (200, "ready\n")
            status, kind, body = await get(port, "/health")
            assert (status, kind) == (200, "application/json; charset=utf-8")
            report = json.loads(body)  # no details unless asked: they quote exceptions
            assert report == {
                "status": "healthy",
                "phase": "running",
                "modules": {"db": {"status": "healthy"}},
            }
            status, kind, body = await get(port, "/health?verbose")
            assert (status, kind) == (200, "application/json; charset=utf-8")
            report = json.loads(body)
            assert report["status"] == "healthy"
            assert report["phase"] == "running"
            assert report["modules"]["db"]["status"] == "healthy"
            assert report["modules"]["db"]["detail"] == "ok"
            assert report["modules"]["db"]["latency"] >= 0
            assert json.loads((await get(port, "/health?verbose=0"))[2])["modules"] == {
                "db": {"status": "healthy"}
            }

            status, _, body = await get(port, "/metrics")
            seen = samples(body)
            assert seen[("pepperpy_health_check_seconds_count", (("module", "db"),))] == 4.0
            healthy = (("module", "db"), ("status", "healthy"))
            assert seen[("pepperpy_module_health", healthy)] == 1.0

    run(main())


def test_other_paths_and_methods_are_refused() -> None:
    async def main() -> None:
        async with running(Service("db")) as app, aiohttp.ClientSession() as session:
            base = f"http://127.0.0.1:{app.http_port}"
            async with session.get(f"{base}/nope") as response:
                assert response.status == 404
            async with session.get(f"{base}/") as response:
                assert response.status == 404
            for method in ("POST", "PUT", "DELETE", "PATCH"):
                async with session.request(method, f"{base}/metrics") as response:
                    assert response.status == 405
                    assert "GET" in response.headers["Allow"]
            async with session.head(f"{base}/readyz") as response:
                assert response.status == 200
                assert await response.read() == b""

    run(main())


def test_an_added_health_check_is_a_probe_like_a_module() -> None:
    async def main() -> None:
        ok = [True]

        async def quota() -> bool:
            return ok[0]

        async with running(Service("db")) as app:
            port = app.http_port
            assert port is not None
            app.add_health_check("quota", quota)
            assert (await get(port, "/readyz"))[0] == 200
            ok[0] = False
            status, _, body = await get(port, "/readyz")
            assert status == 503
            assert "quota: unhealthy (health_check returned False)" in body
            status, _, body = await get(port, "/health")
            report = json.loads(body)
            assert report["modules"]["quota"]["status"] == "unhealthy"
            assert report["modules"]["db"]["status"] == "healthy"

    run(main())


def test_an_unhealthy_module_makes_the_application_unready() -> None:
    async def main() -> None:
        db, web = Service("db"), Service("web")
        async with running(db, web) as app:
            port = app.http_port
            assert port is not None
            db.healthy = False
            status, _, body = await get(port, "/readyz")
            assert status == 503
            assert "db: unhealthy (health_check returned False)" in body
            assert "web" not in body
            status, _, body = await get(port, "/health")
            assert status == 503
            report = json.loads(body)
            assert report["modules"]["db"]["status"] == "unhealthy"
            assert report["modules"]["web"]["status"] == "healthy"
            seen = samples((await get(port, "/metrics"))[2])
            assert seen[("pepperpy_module_health", (("module", "db"), ("status", "unhealthy")))]
            assert not seen[("pepperpy_module_health", (("module", "db"), ("status", "healthy")))]
            db.healthy = True
            assert (await get(port, "/readyz"))[0] == 200

    run(main())


def test_concurrent_probes_share_one_run_of_the_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    asked = 0  # probes that have asked for the checks' outcome
    shared = endpoints_module.Endpoints._shared_health

    def counted(self: Any) -> Any:
        nonlocal asked
        asked += 1
        return shared(self)

    monkeypatch.setattr(endpoints_module.Endpoints, "_shared_health", counted)

    async def main() -> None:
        calls = 0
        release = asyncio.Event()
        checking = asyncio.Event()

        class Slow(BaseModule):
            async def health_check(self) -> bool:
                nonlocal calls
                calls += 1
                checking.set()
                await release.wait()
                return True

        async with running(Slow(), health_timeout=10) as app:
            port = app.http_port
            assert port is not None
            probes = [asyncio.ensure_future(get(port, "/readyz")) for _ in range(50)]
            await checking.wait()
            await until(lambda: asked == 50, within=30)  # every probe waits on the run
            release.set()
            answers = await asyncio.gather(*probes)
            assert {a[0] for a in answers} == {200}
            assert calls == 1

    run(main())


def test_concurrent_scrapes_share_one_render_and_later_ones_render_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    released = False
    rendered = app_module.render_chunks

    def held(*args: Any) -> Iterator[bytes]:
        while not released:  # until every scrape below has arrived
            yield b""
        yield from rendered(*args)

    monkeypatch.setattr(app_module, "render_chunks", held)
    monkeypatch.setattr(endpoints_module, "RENDER_SLICE", 50)

    async def main() -> None:
        nonlocal released
        db = Service("db")
        async with running(db) as app:
            server = app._http
            assert server is not None
            assert app.http_port is not None
            for i in range(300):  # several slices of text
                db.metrics.counter("jobs_total", {"i": str(i)}).inc(i)
            scrapes = [
                asyncio.ensure_future(get(app.http_port, path))
                for path in ["/metrics"] * 9 + ["/metrics?format=prometheus"]
            ]
            await until(lambda: server.scrapes_in_flight == 10)
            assert (server.renders, server.bodies_held) == (1, 1)
            assert (await get(app.http_port, "/livez"))[0] == 200  # answered meanwhile
            released = True
            answers = await asyncio.gather(*scrapes)
            assert {status for status, _, _ in answers} == {200}
            assert len({body for _, _, body in answers}) == 1
            assert samples(answers[0][2])[("jobs_total", (("i", "299"), ("module", "db")))] == 299
            assert (server.renders, server.bodies_held, server.scrapes_in_flight) == (1, 0, 0)
            db.metrics.counter("jobs_total", {"i": "299"}).inc()
            seen = samples((await get(app.http_port, "/metrics"))[2])
            assert seen[("jobs_total", (("i", "299"), ("module", "db")))] == 300  # not cached
            assert server.renders == 2

    run(main())


def test_stop_ends_a_render_in_flight(monkeypatch: pytest.MonkeyPatch) -> None:
    def endless(*args: Any) -> Iterator[bytes]:
        while True:
            yield b""

    monkeypatch.setattr(app_module, "render_chunks", endless)

    async def main() -> None:
        before = asyncio.all_tasks()
        app = Application(Service("db"), http=LOCAL)
        await app.start()
        server = app._http
        assert server is not None
        assert app.http_port is not None
        scrape = asyncio.ensure_future(get(app.http_port, "/metrics"))
        await until(lambda: server.scrapes_in_flight == 1)
        await app.stop()
        # The client's own task ends when it has seen the close (and its retry
        # refused): awaited before counting what is left, not raced.
        with pytest.raises(aiohttp.ClientError):
            await scrape
        assert (server.bodies_held, server.endpoints.renders_in_flight) == (0, 0)
        await asyncio.sleep(0)
        assert asyncio.all_tasks() - before == set()

    run(main())


# --- from before the first start to after the last stop ---------------------------------


def test_the_server_listens_before_the_first_start_and_after_the_last_stop() -> None:
    async def main() -> None:
        seen: dict[str, Any] = {}
        first = Service("first")
        app = Application(first, http=LOCAL)

        async def probe_at_start() -> None:
            port = app.http_port
            assert port is not None
            seen["start"] = (await get(port, "/livez"))[0], (await get(port, "/startupz"))[0]
            seen["start_ready"] = await get(port, "/readyz")
            state = samples((await get(port, "/metrics"))[2])
            seen["state"] = state[
                ("pepperpy_module_state", (("module", "first"), ("state", "initializing")))
            ]

        async def probe_at_stop() -> None:
            port = app.http_port
            assert port is not None
            seen["stop"] = (await get(port, "/livez"))[0], (await get(port, "/startupz"))[0]
            seen["stop_ready"] = await get(port, "/readyz")
            seen["stop_health"] = json.loads((await get(port, "/health"))[2])["phase"]

        first.on_start = probe_at_start
        first.on_stop = probe_at_stop
        await app.start()
        await app.stop()
        assert seen["start"] == (200, 503)
        assert seen["start_ready"][0] == 503
        assert "starting" in seen["start_ready"][2]
        assert seen["state"] == 1.0
        assert seen["stop"] == (200, 200)
        assert seen["stop_ready"][0] == 503
        assert "stopping" in seen["stop_ready"][2]
        assert seen["stop_health"] == "stopping"
        assert app.http_port is None

    run(main())


def test_scrapes_during_start_and_stop_never_hold_the_transitions() -> None:
    async def main() -> None:
        db = Service("db")
        db.gate_start = asyncio.Event()
        db.gate_stop = asyncio.Event()
        app = Application(db, http=LOCAL)
        starting = asyncio.ensure_future(app.start())
        try:
            await scrape_through(app, db, starting)
        finally:  # a failed check must not leave the rollback waiting
            db.gate_start.set()
            db.gate_stop.set()
            await app.stop()

    async def scrape_through(app: Application, db: Service, starting: Any) -> None:
        assert db.gate_start is not None
        assert db.gate_stop is not None
        await db.starting.wait()  # the server listens before the first start
        port = app.http_port
        assert port is not None
        # A client that sends a request and never reads the answer.
        _, idle_writer = await asyncio.open_connection("127.0.0.1", port)
        idle_writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        expected = {"/metrics": 200, "/livez": 200, "/readyz": 503, "/startupz": 503}
        for path, status in expected.items():
            assert (await get(port, path))[0] == status, path
        status, _, body = await get(port, "/health?verbose")  # not running yet: unhealthy
        assert status == 503
        assert json.loads(body)["modules"]["db"]["detail"] == "not running"
        db.gate_start.set()
        await asyncio.wait_for(starting, 5)
        stopping = asyncio.ensure_future(app.stop())
        await asyncio.sleep(0)  # the stop's first step runs before this resumes
        assert app.phase == "stopping"
        assert (await get(port, "/readyz"))[0] == 503
        assert (await get(port, "/metrics"))[0] == 200
        db.gate_stop.set()
        await asyncio.wait_for(stopping, 60)  # the client that never reads holds nothing up
        idle_writer.close()
        assert refused(port)


def test_a_failed_start_closes_the_server_after_the_rollback() -> None:
    async def main() -> None:
        db, web = Service("db"), Service("web")
        app = Application(db, web, http=LOCAL)
        ports: list[int] = []

        async def fail() -> None:
            port = app.http_port
            assert port is not None
            ports.append(port)
            raise ConnectionError("no route")

        async def note_rollback() -> None:
            port = app.http_port
            assert port is not None
            ports.append((await get(port, "/livez"))[0])

        web.on_start = fail
        db.on_stop = note_rollback
        with pytest.raises(StartupError, match="web"):
            await app.start()
        assert ports[1:] == [200]  # the rollback still served
        assert app.http_port is None
        assert refused(ports[0])
        assert app.phase == "idle"

    run(main())


def test_an_address_in_use_fails_the_start_before_any_module() -> None:
    async def main() -> None:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            started: list[str] = []
            db = Service("db")

            async def note() -> None:
                started.append("db")

            db.on_start = note
            app = Application(db, http=f"127.0.0.1:{port}")
            with pytest.raises(OSError, match=str(port)):
                await app.start()
            assert started == []
            assert app.phase == "idle"
            assert app.http_port is None
        async with running(db):  # a fresh address works afterwards
            assert started == ["db"]

    run(main())


def test_clashing_module_registries_fail_the_start_naming_both() -> None:
    async def main() -> None:
        a, b = Service("a"), Service("b")
        a.metrics.counter("jobs")
        b.metrics.gauge("jobs")
        started: list[str] = []

        async def note() -> None:
            started.append("x")

        a.on_start = b.on_start = note
        app = Application(a, b, http=LOCAL)
        with pytest.raises(MetricError, match=r"module 'b'.*module 'a'"):
            await app.start()
        assert started == []
        assert app.http_port is None
        assert app.phase == "idle"

    run(main())


def test_a_series_labelled_with_another_modules_name_fails_the_start() -> None:
    async def main() -> None:
        a, b = Service("a"), Service("b")
        a.metrics.counter("jobs_total", {"module": "b"}).inc()
        b.metrics.counter("jobs_total").inc()
        app = Application(a, b, http=LOCAL)
        with pytest.raises(MetricError, match=r"module 'b'.*module 'a'.*module='b'"):
            await app.start()
        assert (app.phase, app.http_port) == ("idle", None)
        c = Service("c")
        async with running(a, c) as other:  # without b, a's series is its own
            port = other.http_port
            assert port is not None
            seen = samples((await get(port, "/metrics"))[2])
            assert seen[("jobs_total", (("module", "b"),))] == 1.0
            with pytest.raises(MetricError, match=r"module 'c'.*module 'a'.*module='b'"):
                c.metrics.counter("jobs_total", {"module": "b"})

    run(main())


def test_a_clash_made_while_running_is_refused_where_it_is_made() -> None:
    async def main() -> None:
        a, b = Service("a"), Service("b")
        async with running(a, b) as app:
            a.metrics.counter("jobs").inc()
            with pytest.raises(MetricError, match=r"module 'b'.*module 'a'"):
                b.metrics.histogram("jobs")
            port = app.http_port
            assert port is not None
            assert (await get(port, "/metrics"))[0] == 200
        b.metrics.histogram("jobs")  # outside the application, its own business

    run(main())


# --- text UTF-8 cannot encode -----------------------------------------------------------

UNDECODED = os.fsdecode(b"caf\xe9.txt")  # a lone surrogate, as file names make


def test_a_refused_label_value_leaves_every_scrape_working() -> None:
    async def main() -> None:
        db = Service("db")
        async with running(db) as app:
            port = app.http_port
            assert port is not None
            db.record_failure("timeout")
            with pytest.raises(MetricError, match="UTF-8"):
                db.record_failure(UNDECODED)
            with pytest.raises(MetricError, match="UTF-8"):
                db.metrics.counter("files_total", {"file": UNDECODED})
            for fmt in ("prometheus", "openmetrics"):
                status, _, body = await get(port, f"/metrics?format={fmt}")
                assert status == 200
                seen = samples(body, fmt)
                assert (
                    seen[
                        (
                            "pepperpy_module_failures_total",
                            (("module", "db"), ("reason", "timeout")),
                        )
                    ]
                    == 1
                )
                assert not any("files" in name for name, _ in seen)

    run(main())


class Named:
    """A lifecycle that is no BaseModule: its name is any str it likes."""

    def __init__(self, name: str, metrics: MetricsRegistry | None) -> None:
        self.name = name
        if metrics is not None:
            self.metrics = metrics

    async def initialize(self) -> None:
        pass

    async def cleanup(self) -> None:
        pass


@pytest.mark.parametrize("registry", [False, True])
def test_a_module_name_utf8_cannot_encode_fails_the_start_before_any_module(
    registry: bool,
) -> None:
    async def main() -> None:
        started: list[str] = []
        good = Service("good")

        async def note() -> None:
            started.append("good")

        good.on_start = note
        # Without a registry, only the runtime's own series name the module.
        bad = Named(UNDECODED, MetricsRegistry() if registry else None)
        app = Application(good, bad, http=LOCAL)
        with pytest.raises(MetricError, match=r"module name 'caf\\udce9.txt'"):
            await app.start()
        assert (started, app.phase, app.http_port) == ([], "idle", None)
        with pytest.raises(MetricError, match="module name"):
            app.render_metrics()
        report = await app.health()  # answers, though it cannot label the bad one
        assert report.modules[UNDECODED].status == "unhealthy"

    run(main())


def test_a_probe_answer_holding_text_utf8_cannot_encode_is_escaped() -> None:
    class Odd:
        def __repr__(self) -> str:
            return UNDECODED

    async def main() -> None:
        db = Service("db")
        async with running(db) as app:
            port = app.http_port
            assert port is not None

            async def odd() -> Any:
                return Odd()

            db.health_check = odd  # type: ignore[method-assign]
            status, kind, body = await get(port, "/readyz")
            assert (status, kind) == (503, "text/plain; charset=utf-8")
            assert "health_check returned caf\\udce9.txt" in body

    run(main())


# --- the address ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "error", "match"),
    [
        (9464, TypeError, "host:port"),
        ("9464", ValueError, "host:port"),
        ("localhost:http", ValueError, "port from 0 to 65535"),
        ("localhost:70000", ValueError, "port from 0 to 65535"),
        ("localhost:-1", ValueError, "port from 0 to 65535"),
        ("localhost:", ValueError, "port from 0 to 65535"),
        ("::1:9464", ValueError, "brackets"),
        ("[nonsense]:9464", ValueError, "IPv6"),
        ("localhost:٩٤٦٤", ValueError, "port from 0 to 65535"),
    ],
)
def test_bad_addresses_are_refused_at_construction(
    address: Any, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        Application(Service("db"), http=address)


def test_no_host_means_loopback_and_ipv6_works() -> None:
    assert http_module.parse_address(":9464") == ("127.0.0.1", 9464)
    assert http_module.parse_address("[::1]:0") == ("::1", 0)

    async def main() -> None:
        app = Application(Service("db"), http=":0")
        async with app:
            port = app.http_port
            assert port is not None
            assert (await get(port, "/livez"))[0] == 200

    run(main())


def test_nothing_listens_unless_asked() -> None:
    async def main() -> None:
        app = Application(Service("db"))
        async with app:
            assert app.http_port is None
            assert "pepperpy_module_up" in app.render_metrics()

    run(main())


def test_without_aiohttp_asking_for_http_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    hide(monkeypatch, "aiohttp")
    with pytest.raises(ImportError, match=r"pepperpy-core\[http\]"):
        Application(Service("db"), http=LOCAL)
    Application(Service("db"))  # without http= nothing needs it


# --- hostile clients ------------------------------------------------------------------


async def raw(port: int, data: bytes, *, read_for: float = 5.0) -> bytes:
    """Send ``data`` on a new connection and read until the server closes it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    try:
        return await asyncio.wait_for(reader.read(), read_for)
    finally:
        writer.close()


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GARBAGE\r\n\r\n", b"400"),
        (b"GET /livez HTTP/9.9\r\n\r\n", b"400"),
        (b"GET /livez HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n", b"400"),
        (b"GET /livez HTTP/1.1\r\nBad Header\r\n\r\n", b"400"),
        (b"GET /livez HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", b"400"),
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", b"400"),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(64) + b"\r\n\r\n", b"400"),
    ],
)
def test_malformed_requests_are_refused(request_bytes: bytes, status: bytes) -> None:
    async def main() -> None:
        db = Service("db")
        async with running(db) as app:
            port = app.http_port
            assert port is not None
            answer = await raw(port, request_bytes)
            assert answer.split(b" ", 2)[1] == status, answer[:200]
            assert (await get(port, "/readyz"))[0] == 200
            assert db.state.value == "ready"

    run(main())


def test_a_client_that_sends_one_byte_a_second_is_cut_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http_module, "KEEPALIVE", 1.0)

    async def main() -> None:
        async with running(Service("db")) as app:
            port = app.http_port
            assert port is not None
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            closed = False
            # One byte every half second: the whole request would take 15 s,
            # and the server cuts the connection after KEEPALIVE (1 s).
            for byte in b"GET /livez HTTP/1.1\r\nHost: x\r\n":
                writer.write(bytes([byte]))
                try:
                    await writer.drain()
                    if await asyncio.wait_for(reader.read(), 0.5) == b"":
                        closed = True
                        break
                except TimeoutError:
                    continue
                except ConnectionError:
                    closed = True
                    break
            writer.close()
            assert closed, "the server kept the slow connection"
            assert (await get(port, "/livez"))[0] == 200

    run(main())


def test_a_thousand_concurrent_connections_are_all_served() -> None:
    wanted = 2 * 1000 + 200  # both ends of each connection live in this process
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        if hard != resource.RLIM_INFINITY and hard < wanted:
            pytest.fail(f"this test needs {wanted} open files; the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))

    async def main() -> None:
        db = Service("db")
        async with running(db) as app:
            port = app.http_port
            assert port is not None
            opened = await asyncio.gather(
                *(asyncio.open_connection("127.0.0.1", port) for _ in range(1000))
            )
            for _, writer in opened:  # every connection open at once, then all ask
                writer.write(b"GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            answers = await asyncio.gather(*(reader.read() for reader, _ in opened))
            for _, writer in opened:
                writer.close()
            assert all(a.startswith(b"HTTP/1.1 200") for a in answers)
            assert db.state.value == "ready"
            assert (await get(port, "/readyz"))[0] == 200

    try:
        run(main(), timeout=60)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def fill_big(module: Service, series: int = 2000) -> None:
    """Series enough for a body (8 MB) that no socket buffers take whole."""
    for i in range(series):
        module.metrics.gauge("big", {"k": f"{i:06d}" + "x" * 4000}).set(i)


def reader_that_never_reads(port: int, path: str = "/metrics") -> socket.socket:
    """A connection that sends a GET and then reads nothing (a small receive
    window, so the answer stays on the server's side)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    sock.setblocking(False)
    return sock


async def received(sock: socket.socket) -> bytes:
    """What ``sock`` still gets until the server closes it (or resets it)."""
    loop = asyncio.get_running_loop()
    got = []
    try:
        while chunk := await loop.sock_recv(sock, 1 << 20):
            got.append(chunk)
    except ConnectionResetError:
        pass
    return b"".join(got)


def test_a_client_that_never_reads_its_answer_is_cut_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http_module, "SEND_TIMEOUT", 0.5)

    async def main() -> None:
        db = Service("db")
        fill_big(db)
        async with running(db) as app:
            server = app._http
            assert server is not None
            assert app.http_port is not None
            body = len((await get(app.http_port, "/metrics"))[2])
            with reader_that_never_reads(app.http_port) as sock:
                await until(lambda: server.bodies_held == 1)
                await until(lambda: server.bodies_held == 0, within=30)  # let go
                assert server.cut_off == 1
                assert len(await received(sock)) < body  # closed before the end
            assert (await get(app.http_port, "/livez"))[0] == 200

    run(main())


def test_bodies_held_at_once_are_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(endpoints_module, "MAX_BODIES", 2)

    async def main() -> None:
        db = Service("db")
        fill_big(db)
        async with running(db) as app:
            server = app._http
            port = app.http_port
            assert server is not None
            assert port is not None
            stuck = []
            for held in (1, 2):  # each sent a body of its own, read by no one
                stuck.append(reader_that_never_reads(port))
                await until(lambda held=held: server.bodies_held == held)
                await until(
                    lambda held=held: (
                        server.renders == held and not server.endpoints.renders_in_flight
                    )
                )
            status, _, text = await get(port, "/metrics")
            assert status == 503
            assert "too many" in text
            assert (await get(port, "/livez"))[0] == 200
            assert server.renders == 2  # the refused scrape rendered nothing
            for sock in stuck:
                sock.close()
            await until(lambda: server.bodies_held == 0, within=30)
            assert (await get(port, "/metrics"))[0] == 200

    run(main())


def test_a_client_that_never_reads_small_answers_is_cut_off_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(http_module, "SEND_TIMEOUT", 0.5)

    async def main() -> None:
        async with running(Service("db")) as app:
            server = app._http
            assert server is not None
            assert app.http_port is not None
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", app.http_port))
            sock.setblocking(False)
            loop = asyncio.get_running_loop()
            # Pipelined probes, never read: the answers pile up on the server.
            request = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
            sending = asyncio.ensure_future(loop.sock_sendall(sock, request * 200_000))
            await until(lambda: server.cut_off == 1, within=30)
            with contextlib.suppress(ConnectionError):
                await sending  # the server closed the connection: it ends
            await received(sock)
            sock.close()
            assert (await get(app.http_port, "/livez"))[0] == 200

    run(main())


#: A server that runs out of file descriptors and counts the accept() failures
#: asyncio reports; it prints its port, then the count once it reaches argv[1],
#: and stops when its stdin closes.
FD_STARVED = """
import asyncio, asyncio.constants, logging, os, resource, sys
from pepperpy_core import Application

asyncio.constants.ACCEPT_RETRY_DELAY = 0.01  # many bursts of failures, quickly
logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")

async def main(wanted):
    async with Application(http="127.0.0.1:0") as app:
        loop = asyncio.get_running_loop()
        failures = 0
        enough = asyncio.Event()
        report = loop.call_exception_handler

        def counted(context):
            nonlocal failures
            if context.get("message") == "socket.accept() out of system resource":
                failures += 1
                if failures == wanted:
                    enough.set()
            report(context)

        loop.call_exception_handler = counted
        stdin = loop.run_in_executor(None, sys.stdin.read)
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        spare = len(os.listdir("/proc/self/fd")) + 4
        resource.setrlimit(resource.RLIMIT_NOFILE, (spare, hard))
        print(app.http_port, flush=True)
        await enough.wait()
        print(failures, flush=True)
        await stdin

asyncio.run(main(int(sys.argv[1])))
"""


def test_running_out_of_file_descriptors_is_logged_once_per_burst(tmp_path: Path) -> None:
    wanted = 3000
    log = tmp_path / "stderr"
    with log.open("w") as stderr:  # a file: a pipe nobody reads would block the logging
        server = subprocess.Popen(
            [sys.executable, "-c", FD_STARVED, str(wanted)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        with contextlib.ExitStack() as clients:
            for _ in range(40):
                clients.enter_context(socket.create_connection(("127.0.0.1", port), timeout=60))
            assert int(server.stdout.readline()) >= wanted  # the storm happened
        with socket.create_connection(("127.0.0.1", port), timeout=60) as again:
            again.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert again.recv(100).startswith(b"HTTP/1.1 200")  # served once fds are free
    finally:
        server.communicate("", timeout=60)
    err = log.read_text()
    assert server.returncode == 0, err[-3000:]
    about_accept = [line for line in err.splitlines() if "accept" in line]
    assert len(about_accept) == 2, (len(about_accept), about_accept[:4])
    assert "Traceback" not in err
    first, summary = about_accept
    assert "cannot accept connections on ('127.0.0.1'" in first
    assert "Too many open files" in first
    counted = int(summary.split("accept() failed ")[1].split()[0])
    assert counted + 1 >= wanted
    assert len(err.splitlines()) < 20


def test_accept_failures_are_summed_up_while_they_last(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(accept_errors, "SUMMARY_EVERY", 0.01)

    def logged(what: str) -> int:
        return sum(what in r.getMessage() for r in caplog.records)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        passed_on: list[str] = []

        def previous(loop: Any, context: dict[str, Any]) -> None:
            passed_on.append(context["message"])

        loop.set_exception_handler(previous)
        with socket.socket() as listening, socket.socket() as other:
            listening.bind(("127.0.0.1", 0))
            other.bind(("127.0.0.1", 0))
            handler = accept_errors.AcceptErrors(loop, [listening.getsockname()])

            def fail(sock: socket.socket = listening) -> None:
                loop.call_exception_handler(
                    {
                        "message": "socket.accept() out of system resource",
                        "exception": OSError(errno.EMFILE, "Too many open files"),
                        "socket": sock,
                    }
                )

            for _ in range(100):
                fail()
            assert logged("cannot accept") == 1
            fail(other)  # not this server's socket
            loop.call_exception_handler({"message": "something else"})
            assert passed_on == ["socket.accept() out of system resource", "something else"]
            await until(lambda: logged("failed 99 more times") == 1)
            await until(lambda: handler._summary is None)  # a quiet interval ends the burst
            fail()
            assert logged("cannot accept") == 2
            fail()
            handler.close()
            assert logged("failed 1 more times") == 1
            # After a burst, the loop's handler comes back once no retry of
            # the accept loop can be pending any more.
            await until(lambda: loop.get_exception_handler() is previous)
            assert handler.failures == 102

    run(main())


def test_stop_closes_connections_that_are_still_open() -> None:
    async def main() -> None:
        app = Application(Service("db"), http=LOCAL)
        before = asyncio.all_tasks()
        await app.start()
        port = app.http_port
        assert port is not None
        idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(20)]
        half = await asyncio.open_connection("127.0.0.1", port)
        half[1].write(b"GET /livez HTTP/1.1\r\nHo")
        kept = await asyncio.open_connection("127.0.0.1", port)
        kept[1].write(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await kept[0].readuntil(b"ok\n")).startswith(b"HTTP/1.1 200")
        await app.stop()
        for reader, writer in [*idle, half, kept]:
            await asyncio.wait_for(reader.read(), 60)  # returns: the server closed it
            writer.close()
        await asyncio.sleep(0)
        assert asyncio.all_tasks() - before == set()
        assert refused(port)

    run(main())
