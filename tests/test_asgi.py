"""The probes app (``make_asgi_app``) and the lifespan: called directly as
ASGI, and served by uvicorn on its own and mounted in FastAPI and Starlette,
answering exactly as the aiohttp server does (and so do the routes
``pepperpy_core.aiohttp.attach`` adds to a user's aiohttp app)."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import textwrap
import types
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from fastapi import Depends, FastAPI, Request
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text
from starlette.applications import Starlette
from starlette.routing import Mount

from pepperpy_core import Application
from pepperpy_core.aiohttp import attach
from pepperpy_core.asgi import ProbesApp, make_asgi_app
from pepperpy_core.asgi import probes as probes_module
from pepperpy_core.asgi.routes import Route
from pepperpy_core.module import ModuleConfig, ModuleState
from pepperpy_core.module.metrics import MetricsModule
from tests.asgiutil import aiohttp_serving, call, fetch, http_scope, serving
from tests.asyncutil import run

pytestmark = pytest.mark.backend

OPENMETRICS = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"


class Service(MetricsModule):
    """A module whose health and start the test controls."""

    def __init__(self, name: str, fail: BaseException | None = None) -> None:
        super().__init__(ModuleConfig(name=name))
        self.healthy = True
        self.fail = fail

    async def initialize(self) -> None:
        if self.fail is not None:
            raise self.fail
        await super().initialize()

    async def health_check(self) -> bool:
        return self.healthy


# --- the same answers as the aiohttp server ---------------------------------------------

#: (method, path with query, headers): every kind of answer the endpoints give.
REQUESTS: list[tuple[str, str, dict[str, str]]] = [
    ("GET", "/livez", {}),
    ("GET", "/startupz", {}),
    ("GET", "/readyz", {}),
    ("GET", "/health", {}),
    ("GET", "/health?verbose", {}),
    ("GET", "/health?verbose=0", {}),
    ("GET", "/metrics", {}),
    ("GET", "/metrics", {"Accept": OPENMETRICS}),
    ("GET", "/metrics?format=openmetrics", {}),
    ("GET", "/metrics?format=openmetrics&format=json", {}),
    ("GET", "/metrics?format=json", {}),
    ("HEAD", "/readyz", {}),
    ("HEAD", "/health", {}),
    ("POST", "/metrics", {}),
    ("DELETE", "/livez", {}),
    ("GET", "/nope", {}),
    ("GET", "/", {}),
]
KEPT_HEADERS = ("content-type", "allow", "retry-after")


def normalized(status: int, headers: dict[str, str], body: bytes) -> tuple[Any, ...]:
    """An answer with what varies between two runs taken out: metric values
    and check latencies (the metrics are parsed, so they must parse)."""
    kind = headers.get("content-type", "")
    kept = tuple(headers.get(name) for name in KEPT_HEADERS)
    text = body.decode()
    if kind.startswith(("text/plain; version", "application/openmetrics")):
        parse = parse_openmetrics if kind.startswith("application") else parse_text
        names = sorted(
            (s.name, tuple(sorted(s.labels.items())))
            for family in parse(text)
            for s in family.samples
            if s.name.startswith(("pepperpy_module_up", "jobs"))
        )
        return status, kept, names
    if kind.startswith("application/json") and text:
        report = json.loads(text)
        for module in report["modules"].values():
            module.pop("latency", None)
        return status, kept, report
    return status, kept, text, headers.get("content-length")


class Quota:
    """A check added with ``add_health_check``, whose verdict the test sets."""

    def __init__(self) -> None:
        self.ok = True

    async def __call__(self) -> bool:
        return self.ok


async def transcript(base: str, db: Service, quota: Quota) -> list[tuple[Any, ...]]:
    """Every request of REQUESTS, healthy, then with ``db`` unhealthy, then
    with only the added check ``quota`` failing."""
    answers = []
    for db_ok, quota_ok in ((True, True), (False, True), (True, False)):
        db.healthy, quota.ok = db_ok, quota_ok
        for method, path, headers in REQUESTS:
            answers.append((method, path, normalized(*await fetch(base + path, method, **headers))))
    db.healthy = quota.ok = True
    return answers


Server = Callable[[Application], AbstractAsyncContextManager[str]]


@asynccontextmanager
async def aiohttp_server(core: Application) -> AsyncIterator[str]:
    async with core:
        yield f"http://127.0.0.1:{core.http_port}"


@asynccontextmanager
async def uvicorn_alone(core: Application) -> AsyncIterator[str]:
    async with serving(make_asgi_app(core)) as base:
        yield base


@asynccontextmanager
async def fastapi_mounted(core: Application) -> AsyncIterator[str]:
    api = FastAPI(lifespan=core.lifespan)
    api.mount("/ops", make_asgi_app(core))
    async with serving(api) as base:
        yield base + "/ops"


@asynccontextmanager
async def starlette_mounted(core: Application) -> AsyncIterator[str]:
    site = Starlette(lifespan=core.lifespan, routes=[Mount("/ops/probes", make_asgi_app(core))])
    async with serving(site) as base:
        yield base + "/ops/probes"


@asynccontextmanager
async def aiohttp_attached(core: Application) -> AsyncIterator[str]:
    """The routes ``attach`` adds to a user's own aiohttp app, under /ops."""
    site_app = web.Application()
    attach(site_app, core)
    async with aiohttp_serving(site_app) as base:
        yield base + "/ops"


SERVERS: dict[str, Server] = {
    "uvicorn": uvicorn_alone,
    "fastapi-mounted": fastapi_mounted,
    "starlette-mounted": starlette_mounted,
    "aiohttp-attached": aiohttp_attached,
}


@pytest.mark.parametrize("server", SERVERS.values(), ids=SERVERS.keys())
def test_every_server_answers_as_the_aiohttp_side_server_does(server: Server) -> None:
    async def main() -> None:
        answers = []
        for serve, http in ((aiohttp_server, "127.0.0.1:0"), (server, None)):
            db = Service("db")
            db.metrics.counter("jobs_total", {"queue": "mail"}).inc(3)
            core = Application(db, Service("web"), http=http)
            quota = Quota()
            core.add_health_check("quota", quota)
            async with serve(core) as base:
                assert core.phase == "running"
                answers.append(await transcript(base, db, quota))
            assert core.phase == "idle"
        expected, got = answers
        assert got == expected
        # What the transcript holds, so that equal means something:
        by_request = {(m, p): a for m, p, a in expected[: len(REQUESTS)]}
        assert by_request["GET", "/readyz"][0] == 200
        assert by_request["POST", "/metrics"][:2] == (
            405,
            ("text/plain; charset=utf-8", "GET, HEAD", None),
        )
        assert by_request["GET", "/nope"][0] == 404
        assert ("jobs_total", (("module", "db"), ("queue", "mail"))) in by_request[
            "GET", "/metrics"
        ][2]
        unhealthy = {(m, p): a for m, p, a in expected[len(REQUESTS) : 2 * len(REQUESTS)]}
        assert unhealthy["GET", "/readyz"][0] == 503
        assert unhealthy["GET", "/health?verbose"][2]["modules"]["db"]["detail"] == (
            "health_check returned False"
        )
        # A check the application added is judged and named as a module is.
        over = {(m, p): a for m, p, a in expected[2 * len(REQUESTS) :]}
        assert over["GET", "/readyz"][:3:2] == (
            503,
            "not ready:\n  quota: unhealthy (health_check returned False)\n",
        )
        assert over["GET", "/health"][:3:2] == (
            503,
            {
                "status": "unhealthy",
                "phase": "running",
                "modules": {
                    "db": {"status": "healthy"},
                    "web": {"status": "healthy"},
                    "quota": {"status": "unhealthy"},
                },
            },
        )

    run(main(), timeout=120)


# --- called directly --------------------------------------------------------------------


def test_the_app_names_the_endpoint_it_answered_as_routers_do() -> None:
    async def main() -> None:
        core = Application(Service("db"))
        probes = make_asgi_app(core)
        async with core:
            answered = await call(probes, "/readyz", root_path="/ops")
            assert (answered.status, answered.body) == (200, b"ready\n")
            route = answered.scope["route"]
            assert isinstance(route, Route)
            assert route.path_format == "/readyz"
            missed = await call(probes, "/readyzz", root_path="/ops")
            assert missed.status == 404
            assert "route" not in missed.scope
            # A root path is taken off only at a segment's end: "/opsx/livez" is no
            # endpoint under "/ops".
            elsewhere = await call(probes, "x/livez", root_path="/ops")
            assert (elsewhere.scope["path"], elsewhere.status) == ("/opsx/livez", 404)

    run(main())


def test_head_sends_no_body_and_the_length_of_the_get(monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> None:
        core = Application(Service("db"))
        probes = make_asgi_app(core)
        async with core:
            get = await call(probes, "/health")
            head = await call(probes, "/health", method="HEAD")
            assert head.status == get.status == 200
            assert head.body == b""
            assert head.headers["content-length"] == str(len(get.body)) != "0"

    run(main())


def test_a_big_body_is_sent_in_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(probes_module, "WRITE_PIECE", 1000)

    async def main() -> None:
        db = Service("db")
        for i in range(500):
            db.metrics.gauge("wide", {"k": f"{i:05d}" + "x" * 50}).set(i)
        core = Application(db)
        probes = make_asgi_app(core)
        async with core:
            scrape = await call(probes, "/metrics")
            pieces = [m["body"] for m in scrape.messages[1:]]
            assert len(pieces) > 30
            assert all(len(p) <= 1000 for p in pieces)
            assert int(scrape.headers["content-length"]) == len(scrape.body)
            seen = {
                s.labels["k"][:5]
                for f in parse_text(scrape.body.decode())
                for s in f.samples
                if s.name == "wide"
            }
            assert len(seen) == 500
            assert probes.endpoints.bodies_held == 0

    run(main())


def test_an_answer_the_server_never_takes_is_abandoned_and_released(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(probes_module, "SEND_TIMEOUT", 0.2)

    async def main() -> None:
        core = Application(Service("db"))
        probes = make_asgi_app(core)
        async with core:
            stuck = asyncio.Event()

            async def receive() -> dict[str, Any]:
                return {"type": "http.request", "body": b""}

            async def send(message: Any) -> None:
                if message["type"] == "http.response.body":
                    await stuck.wait()  # a client that reads nothing, forever

            await probes(http_scope("/metrics"), receive, send)
            assert probes.cut_off == 1
            assert probes.endpoints.bodies_held == 0
            assert (await call(probes, "/livez")).status == 200

    run(main())


def test_websockets_are_refused_and_other_scopes_are_errors() -> None:
    async def main() -> None:
        probes = make_asgi_app(Application())
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "websocket.connect"}

        async def send(message: Any) -> None:
            sent.append(message)

        await probes({"type": "websocket", "path": "/livez"}, receive, send)
        assert sent == [{"type": "websocket.close", "code": 1008}]
        with pytest.raises(ValueError, match="serves http, not 'webtransport'"):
            await probes({"type": "webtransport"}, receive, send)

    run(main())


def test_make_asgi_app_takes_an_application() -> None:
    with pytest.raises(TypeError, match="takes an Application, not FastAPI"):
        make_asgi_app(FastAPI())  # type: ignore[arg-type]
    assert isinstance(make_asgi_app(Application()), ProbesApp)


# --- the lifespan, as ASGI ----------------------------------------------------------------


async def lifespan(app: ProbesApp, *messages: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Drive ``app``'s lifespan with ``messages``; what it sent, and the state."""
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for message in messages:
        inbox.put_nowait({"type": message})
    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(message)

    await app(scope, inbox.get, send)
    return sent, scope["state"]


def test_the_lifespan_starts_fills_the_state_and_stops() -> None:
    async def main() -> None:
        db = Service("db")
        core = Application(db)
        probes = make_asgi_app(core)
        seen: list[str] = []

        async def receive_and_note() -> None:
            sent, state = await lifespan(probes, "lifespan.startup", "lifespan.shutdown")
            seen.extend(m["type"] for m in sent)
            assert state == {"db": db}

        await receive_and_note()
        assert seen == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
        assert db.state is ModuleState.CLOSED
        assert core.phase == "idle"

    run(main())


def test_a_failed_start_is_sent_as_startup_failed_with_the_error() -> None:
    async def main() -> None:
        db = Service("db")
        core = Application(db, Service("broker", fail=ConnectionError("no route to the broker")))
        sent, state = await lifespan(make_asgi_app(core), "lifespan.startup")
        (failed,) = sent
        assert failed["type"] == "lifespan.startup.failed"
        assert "StartupError" in failed["message"]
        assert "broker" in failed["message"]
        assert "ConnectionError: no route to the broker" in failed["message"]
        assert state == {}
        assert core.phase == "idle"
        assert db.state is not ModuleState.READY

    run(main())


def test_a_failed_stop_is_sent_as_shutdown_failed() -> None:
    class Stubborn(Service):
        async def cleanup(self) -> None:
            raise OSError("disk gone")

    async def main() -> None:
        core = Application(Stubborn("db"))
        sent, _ = await lifespan(make_asgi_app(core), "lifespan.startup", "lifespan.shutdown")
        assert [m["type"] for m in sent] == [
            "lifespan.startup.complete",
            "lifespan.shutdown.failed",
        ]
        assert "OSError: disk gone" in sent[1]["message"]
        assert core.phase == "idle"

    run(main())


# --- inside FastAPI, served by uvicorn ------------------------------------------------------


def test_routes_reach_modules_through_depends_and_the_lifespan_state() -> None:
    async def main() -> None:
        db = Service("db")
        core = Application(db)
        api = FastAPI(lifespan=core.lifespan)

        @api.get("/by-class")
        async def by_class(found: Service = Depends(core.provide(Service))) -> str:  # noqa: B008
            return f"{found.name} {found.state.value}"

        @api.get("/by-state")
        async def by_state(request: Request) -> str:
            found: Service = request.state.db
            return f"{found.name} {found is db}"

        async with serving(api) as base:
            assert (await fetch(base + "/by-class"))[2] == b'"db ready"'
            assert (await fetch(base + "/by-state"))[2] == b'"db True"'
        assert db.state is ModuleState.CLOSED

    run(main(), timeout=60)


FAILING_APP = """
from fastapi import FastAPI
from pepperpy_core import Application
from pepperpy_core.asgi import make_asgi_app
from pepperpy_core.module import BaseModule

class Broker(BaseModule):
    async def initialize(self) -> None:
        raise ConnectionError("no route to the broker")

core = Application(Broker())
api = FastAPI(lifespan=core.lifespan)
probes = make_asgi_app(core)
"""


@pytest.mark.parametrize("target", ["api", "probes"])
def test_a_failed_start_makes_uvicorn_exit_with_the_error(tmp_path: Path, target: str) -> None:
    (tmp_path / "failing.py").write_text(textwrap.dedent(FAILING_APP))
    done = subprocess.run(
        [sys.executable, "-m", "uvicorn", f"failing:{target}", "--port", "0"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 3, done.stderr  # uvicorn's STARTUP_FAILURE
    assert "ConnectionError: no route to the broker" in done.stderr
    assert "Application startup failed" in done.stderr
    assert "Broker" in done.stderr  # the module the StartupError names


# --- the README's apps, served ----------------------------------------------------------------

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_app(marker: str, name: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """``name`` from the README's python block that holds ``marker``, run as a module."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)
    (source,) = [b for b in blocks if marker in b]
    module = types.ModuleType(f"readme_{name}")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    exec(compile(source, f"README {name}", "exec"), module.__dict__)
    return module.__dict__[name]


@pytest.mark.parametrize(
    ("marker", "name"),
    [("FastAPI(lifespan=core.lifespan)", "api"), ("Starlette(", "site")],
    ids=["fastapi", "starlette"],
)
def test_the_readmes_apps_serve_routes_probes_and_metrics(
    marker: str, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = readme_app(marker, name, monkeypatch)

    async def main() -> None:
        async with serving(app) as base:
            for item_id, found in (("1", "tea"), ("2", "cake"), ("1", "tea"), ("9", None)):
                status, _, body = await fetch(f"{base}/items/{item_id}")
                assert (status, json.loads(body)) == (200, {"item": found})
            assert (await fetch(f"{base}/ops/readyz"))[::2] == (200, b"ready\n")
            assert (await fetch(f"{base}/ops/startupz"))[0] == 200
            assert (await fetch(f"{base}/nowhere"))[0] == 404
            status, _, body = await fetch(f"{base}/ops/metrics")
        assert status == 200
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in parse_text(body.decode())
            for s in family.samples
        }
        count = "http_server_request_duration_seconds_count"
        found = (("method", "GET"), ("route", "/items/{item_id}"), ("status", "200"))
        assert samples[count, found] == 4
        probe = (("method", "GET"), ("route", "/ops/readyz"), ("status", "200"))
        assert samples[count, probe] == 1
        unmatched = (("method", "GET"), ("route", "unmatched"), ("status", "404"))
        assert samples[count, unmatched] == 1
        assert samples["pepperpy_module_up", (("module", "db"),)] == 1

    run(main(), timeout=60)
