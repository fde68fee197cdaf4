"""What request metrics cost per request: RequestMetrics against
prometheus-fastapi-instrumentator and starlette-exporter, each added as
middleware to the same app.

    python benches/request_metrics.py [--rounds 15] [--requests 2000] [--framework fastapi]

Every subject is a fresh app (FastAPI or Starlette) with one route,
``/items/{item_id}``, answering a short text; requests go to 100 distinct
ids, so every middleware must find the template (``/items/{item_id}``).
Requests are ASGI calls made directly (no server, no socket: what is
measured is the app and its middleware alone), a batch of ``--requests``
at a time, each batch timed in this thread's CPU time (what other processes
on a shared machine do not skew), after a garbage collection. Each round
runs one batch per subject, in a new random order. The overhead of a
middleware is the median time per request with it minus the bare app's;
the ratio is each peer's overhead over RequestMetrics'. Every subject is
also checked to have labelled the requests by template. Timing is
measured, never asserted.

Peers, as their users get them: the instrumentator's defaults (requests,
sizes and two latency histograms, status grouped as 2xx) and with its
latency histogram only, plus the in-progress gauge; starlette-exporter's
defaults (requests, duration, in progress; paths grouped by template).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from pepperpy_core.asgi import RequestMetrics
from pepperpy_core.metrics import MetricsRegistry

ASGI = Any  # an ASGI app; the peers' own types differ from one another
Built = tuple[ASGI, Callable[[], str]]  # the app, and its metrics as text
TEMPLATE = "/items/{item_id}"


def fastapi_app() -> Any:
    from fastapi import FastAPI

    api = FastAPI()

    @api.get(TEMPLATE, response_class=PlainTextResponse)
    async def item(item_id: int) -> str:
        return "ok"

    return api


def starlette_app() -> Any:
    async def item(request: Request) -> Response:
        return PlainTextResponse("ok")

    return Starlette(routes=[Route(TEMPLATE, item)])


def bare(make: Callable[[], Any]) -> Built:
    return make(), lambda: TEMPLATE


def pepperpy(make: Callable[[], Any]) -> Built:
    app = make()
    registry = MetricsRegistry()
    app.add_middleware(RequestMetrics, registry=registry)
    return app, registry.to_prometheus


def instrumentator(make: Callable[[], Any], *, latency_only: bool) -> Built:
    from prometheus_fastapi_instrumentator import Instrumentator, metrics

    app = make()
    registry = CollectorRegistry()
    if latency_only:
        chosen = Instrumentator(should_instrument_requests_inprogress=True, registry=registry)
        chosen.add(metrics.latency(registry=registry))
    else:
        chosen = Instrumentator(registry=registry)
    chosen.instrument(app)
    return app, lambda: generate_latest(registry).decode()


def exporter(make: Callable[[], Any]) -> Built:
    from starlette_exporter import PrometheusMiddleware

    app = make()
    app.add_middleware(PrometheusMiddleware)
    return app, lambda: generate_latest().decode()


SUBJECTS: dict[str, Callable[[Callable[[], Any]], Built]] = {
    "bare app": bare,
    "pepperpy RequestMetrics": pepperpy,
    "instrumentator (defaults)": lambda make: instrumentator(make, latency_only=False),
    "instrumentator (latency + in progress)": lambda make: instrumentator(make, latency_only=True),
    "starlette-exporter (defaults)": exporter,
}


def scopes() -> list[dict[str, Any]]:
    return [
        {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": f"/items/{i}",
            "raw_path": f"/items/{i}".encode(),
            "root_path": "",
            "query_string": b"",
            "headers": [(b"host", b"bench"), (b"user-agent", b"bench")],
            "server": ("127.0.0.1", 8000),
            "client": ("127.0.0.1", 50000),
            "state": {},
        }
        for i in range(100)
    ]


async def batch(app: ASGI, requests: int, templates: list[dict[str, Any]]) -> float:
    """CPU seconds per request over ``requests`` requests."""
    answered = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        nonlocal answered
        if message["type"] == "http.response.start":
            answered += message["status"] == 200

    count = len(templates)
    gc.collect()
    began = time.thread_time()
    for i in range(requests):
        await app(dict(templates[i % count]), receive, send)
    took = time.thread_time() - began
    assert answered == requests, answered
    return took / requests


async def main(rounds: int, requests: int, framework: str) -> None:
    make = fastapi_app if framework == "fastapi" else starlette_app
    built = {name: subject(make) for name, subject in SUBJECTS.items()}
    templates = scopes()
    for app, _ in built.values():  # warm up: middleware stacks built, series made
        await batch(app, 200, templates)
    for name, (_, exported) in built.items():
        text = exported()
        assert "/items/1" not in text, name  # labelled by template, never by path
        assert name == "bare app" or TEMPLATE in text, name
    times: dict[str, list[float]] = {name: [] for name in built}
    order = list(built)
    for _ in range(rounds):
        random.shuffle(order)
        for name in order:
            times[name].append(await batch(built[name][0], requests, templates))
    base = statistics.median(times["bare app"])
    ours = statistics.median(times["pepperpy RequestMetrics"]) - base
    print(f"{framework}, {rounds} rounds of {requests} requests; CPU time per request (median)")
    print("| subject | per request (µs) | overhead (µs) | overhead / RequestMetrics' |")
    print("|---|---:|---:|---:|")
    for name, seen in times.items():
        median = statistics.median(seen)
        extra = median - base
        ratio = "-" if name == "bare app" else f"{extra / ours:.1f}x"
        overhead = "-" if name == "bare app" else f"{extra * 1e6:.2f}"
        print(f"| {name} | {median * 1e6:.2f} | {overhead} | {ratio} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--framework", choices=["fastapi", "starlette"], default="fastapi")
    args = parser.parse_args()
    asyncio.run(main(args.rounds, args.requests, args.framework))
