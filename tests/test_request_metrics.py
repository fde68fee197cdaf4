"""RequestMetrics: every request timed under its route template (never its
raw path), in FastAPI and Starlette apps, wrapped from outside or added as
their middleware; requests in flight; failures; and through uvicorn."""

from __future__ import annotations

import asyncio
import logging
import random
import re
from collections.abc import Callable
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route

from pepperpy_core import Application
from pepperpy_core.asgi import ASGIApp, RequestMetrics, make_asgi_app
from pepperpy_core.asgi.metrics import ACTIVE, BUCKETS, DURATION
from pepperpy_core.asgi.routes import template
from pepperpy_core.asgi.types import Receive, Scope, Send
from pepperpy_core.errors import MetricError
from pepperpy_core.metrics import MetricsRegistry
from tests.asgiutil import call, fetch, serving
from tests.asyncutil import run

pytestmark = pytest.mark.backend


def counts(registry: MetricsRegistry) -> dict[tuple[str, str, str], int]:
    """Requests per (method, route, status), as the registry exports them."""
    out = {}
    for series in registry.snapshot():
        if series["name"] == DURATION:
            labels = series["labels"]
            out[labels["method"], labels["route"], labels["status"]] = series["count"]
    return out


async def hello(request: Request) -> Response:
    return PlainTextResponse("hi")


async def raw_app(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def starlette_app(core: Application) -> Starlette:
    return Starlette(
        lifespan=core.lifespan,
        routes=[
            Route("/items/{id:int}", hello),
            Mount("/v1", routes=[Route("/things/{tid}", hello)]),
            Mount("/users/{uid}", app=Starlette(routes=[Route("/posts/{pid}", hello)])),
            Mount("/static", app=raw_app),
            Mount("/ops", app=make_asgi_app(core)),
        ],
    )


def fastapi_app(core: Application) -> FastAPI:
    api = FastAPI(lifespan=core.lifespan)

    @api.get("/items/{id}")
    async def item(id: int) -> str:
        return "hi"

    router = APIRouter(prefix="/v1")

    @router.get("/things/{tid}")
    async def thing(tid: str) -> str:
        return "hi"

    api.include_router(router)
    api.mount("/users/{uid}", Starlette(routes=[Route("/posts/{pid}", hello)]))
    api.mount("/static", raw_app)
    api.mount("/ops", make_asgi_app(core))
    return api


def wrapped(app: Starlette, registry: MetricsRegistry) -> ASGIApp:
    return RequestMetrics(app, registry=registry)


def added(app: Starlette, registry: MetricsRegistry) -> ASGIApp:
    app.add_middleware(RequestMetrics, registry=registry)
    return app


APPS = {"starlette": starlette_app, "fastapi": fastapi_app}
WAYS = {"wrapped": wrapped, "added": added}


@pytest.mark.parametrize("way", WAYS.values(), ids=WAYS.keys())
@pytest.mark.parametrize("make", APPS.values(), ids=APPS.keys())
def test_each_request_is_labelled_with_its_route_template(
    make: Callable[[Application], Starlette],
    way: Callable[[Starlette, MetricsRegistry], ASGIApp],
) -> None:
    async def main() -> None:
        core = Application()
        registry = MetricsRegistry()
        app = way(make(core), registry)
        async with core:
            for i in range(3):
                assert (await call(app, f"/items/{i}")).status == 200
                assert (await call(app, f"/v1/things/t{i}")).status == 200
                assert (await call(app, f"/users/u{i}/posts/p{i}")).status == 200
                assert (await call(app, f"/static/file{i}.css")).status == 204
                assert (await call(app, "/ops/livez")).status == 200
                assert (await call(app, f"/nowhere/{i}")).status == 404
            assert (await call(app, "/ops/readyz", method="HEAD")).status == 200
            assert (await call(app, "/items/1", method="POST")).status == 405
            assert (await call(app, "/ops/nothing")).status == 404
        assert counts(registry) == {
            ("GET", "/items/{id}", "200"): 3,
            ("GET", "/v1/things/{tid}", "200"): 3,
            ("GET", "/users/{uid}/posts/{pid}", "200"): 3,
            ("GET", "/static/{path}", "204"): 3,
            ("GET", "/ops/livez", "200"): 3,
            ("GET", "unmatched", "404"): 3,
            ("HEAD", "/ops/readyz", "200"): 1,
            ("POST", "/items/{id}", "405"): 1,
            ("GET", "/ops/{path}", "404"): 1,
        }
        assert registry.gauge(ACTIVE).value == 0

    run(main())


def test_a_scanner_makes_one_series_whatever_it_asks() -> None:
    async def main() -> None:
        registry = MetricsRegistry()
        app = RequestMetrics(fastapi_app(Application()), registry=registry)
        chars = "abcdefghijklmnopqrstuvwxyz0123456789-_."
        rng = random.Random(24)
        for _ in range(300):
            depth = rng.randint(1, 4)
            path = "".join("/" + "".join(rng.choices(chars, k=8)) for _ in range(depth))
            method = rng.choice(["GET", "POST", "PROPFIND", "X" * 40, "get"])
            await call(app, path, method=method)
        methods = {key[0] for key in counts(registry)}
        routes = {key[1] for key in counts(registry)}
        assert routes == {"unmatched"}
        assert methods <= {"GET", "POST", "_OTHER"}
        assert sum(counts(registry).values()) == 300

    run(main())


def test_a_mount_with_parameters_never_labels_with_their_values() -> None:
    async def main() -> None:
        registry = MetricsRegistry()
        inner = Starlette(routes=[Mount("/b/{bid}", app=raw_app)])
        site = Starlette(routes=[Mount("/a/{aid}", app=inner), Mount("/fixed", app=inner)])
        app = RequestMetrics(site, registry=registry)
        for i in range(5):
            await call(app, f"/a/{i}/b/{i}/x")
            await call(app, f"/fixed/b/{i}/y")
        assert counts(registry) == {
            ("GET", "/a/{aid}/b/{bid}/{path}", "204"): 5,
            ("GET", "/fixed/b/{bid}/{path}", "204"): 5,
        }

    run(main())


def test_a_root_path_the_server_sets_is_not_part_of_the_route() -> None:
    async def main() -> None:
        registry = MetricsRegistry()
        app = RequestMetrics(starlette_app(Application()), registry=registry)
        assert (await call(app, "/items/3", root_path="/behind-proxy")).status == 200
        assert (await call(app, "/users/u/posts/p", root_path="/behind-proxy")).status == 200
        assert set(counts(registry)) == {
            ("GET", "/items/{id}", "200"),
            ("GET", "/users/{uid}/posts/{pid}", "200"),
        }

    run(main())


def test_requests_in_flight_are_a_gauge() -> None:
    async def main() -> None:
        registry = MetricsRegistry()
        arrived = asyncio.Event()
        release = asyncio.Event()
        waiting = 0

        async def slow(request: Request) -> Response:
            nonlocal waiting
            waiting += 1
            if waiting == 3:
                arrived.set()
            await release.wait()
            return PlainTextResponse("late")

        app = RequestMetrics(Starlette(routes=[Route("/slow", slow)]), registry=registry)
        active = registry.gauge(ACTIVE)
        calls = [asyncio.ensure_future(call(app, "/slow")) for _ in range(3)]
        await arrived.wait()
        assert active.value == 3
        release.set()
        await asyncio.gather(*calls)
        assert active.value == 0
        assert counts(registry) == {("GET", "/slow", "200"): 3}

    run(main())


def test_an_app_that_fails_counts_as_a_500_and_its_error_goes_on() -> None:
    async def main() -> None:
        registry = MetricsRegistry()

        async def broken(request: Request) -> Response:
            raise RuntimeError("bug")

        async def silent(scope: Scope, receive: Receive, send: Send) -> None:
            return  # never answers: the server sends a 500

        site = Starlette(routes=[Route("/broken", broken), Mount("/silent", app=silent)])
        app = RequestMetrics(site, registry=registry)
        with pytest.raises(RuntimeError, match="bug"):
            await call(app, "/broken")
        with pytest.raises(ValueError, match="not enough values"):  # nothing was sent
            await call(app, "/silent/x")
        assert counts(registry) == {
            ("GET", "/broken", "500"): 1,
            ("GET", "/silent/{path}", "500"): 1,
        }
        assert registry.gauge(ACTIVE).value == 0

    run(main())


def test_lifespan_and_websocket_calls_pass_through_untouched() -> None:
    async def main() -> None:
        registry = MetricsRegistry()
        seen: list[tuple[str, Any]] = []

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            seen.append((scope["type"], receive))

        async def receive() -> dict[str, Any]:
            return {}

        async def send(message: Any) -> None:
            pass

        metered = RequestMetrics(app, registry=registry)
        await metered({"type": "lifespan"}, receive, send)
        await metered({"type": "websocket", "path": "/ws"}, receive, send)
        assert seen == [("lifespan", receive), ("websocket", receive)]
        assert counts(registry) == {}

    run(main())


def test_the_histogram_has_opentelemetrys_buckets_and_observes_seconds() -> None:
    async def main() -> None:
        registry = MetricsRegistry()
        app = RequestMetrics(starlette_app(Application()), registry=registry)
        await call(app, "/items/1")
        text = registry.to_openmetrics()
        (family,) = [f for f in parse_openmetrics(text) if f.name == DURATION]
        assert family.type == "histogram"
        bounds = sorted(float(s.labels["le"]) for s in family.samples if s.name.endswith("_bucket"))
        assert bounds == [*BUCKETS, float("inf")]
        (total,) = [s.value for s in family.samples if s.name.endswith("_sum")]
        assert 0 < total < 60  # seconds, not nanoseconds

    run(main())


def test_a_registry_is_required_and_a_clash_is_refused_where_it_is_made(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with pytest.raises(TypeError, match="must be a MetricsRegistry, not dict"):
        RequestMetrics(raw_app, registry={})  # type: ignore[arg-type]
    taken = MetricsRegistry()
    taken.counter(ACTIVE)
    with pytest.raises(MetricError, match=ACTIVE):
        RequestMetrics(raw_app, registry=taken)

    async def main() -> None:
        # A duration metric made by hand with other labels: requests are still
        # served, the failure logged once per series.
        registry = MetricsRegistry()
        registry.histogram(DURATION, {"path": "/"})
        app = RequestMetrics(starlette_app(Application()), registry=registry)
        with caplog.at_level(logging.ERROR, logger="pepperpy_core.asgi"):
            for _ in range(3):
                assert (await call(app, "/items/1")).status == 200
        assert len(caplog.records) == 1
        assert "cannot be recorded" in caplog.records[0].getMessage()

    run(main())


def test_served_by_uvicorn_the_durations_reach_the_applications_metrics() -> None:
    async def main() -> None:
        core = Application()
        api = fastapi_app(core)
        api.add_middleware(RequestMetrics, registry=core.metrics)
        async with serving(api) as base:
            for i in range(4):
                assert (await fetch(f"{base}/items/{i}"))[0] == 200
            assert (await fetch(f"{base}/no/such/{i}"))[0] == 404
            status, _, body = await fetch(
                f"{base}/ops/metrics", Accept="application/openmetrics-text"
            )
        assert status == 200
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for f in parse_openmetrics(body.decode())
            for s in f.samples
        }
        labels = (("method", "GET"), ("route", "/items/{id}"), ("status", "200"))
        assert samples[f"{DURATION}_count", labels] == 4
        unmatched = (("method", "GET"), ("route", "unmatched"), ("status", "404"))
        assert samples[f"{DURATION}_count", unmatched] == 1
        assert samples[ACTIVE, ()] == 1  # the scrape itself
        assert all("/items/0" not in str(key) for key in samples)

    run(main(), timeout=60)


def test_a_mount_whose_regex_leaves_the_tail_out_gives_an_empty_tail() -> None:
    class Optional:  # a router's mount whose path group may not take part
        path_format = "/x/{path}"
        path_regex = re.compile(r"^/x(?:/(?P<path>.*))?$")

    class Router:
        routes = (Optional(),)

    scope = {"root_path": "/x", "router": Router(), "route": None}
    assert template(scope, "/x", "", {}) == "/x/{path}"
