"""Must pass ``mypy --strict``: the probes app and the middleware fit where
FastAPI and Starlette take an ASGI app or a middleware class."""

from __future__ import annotations

from typing import assert_type

from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount

from pepperpy_core import Application
from pepperpy_core.asgi import ASGIApp, ProbesApp, RequestMetrics, make_asgi_app

core = Application()
assert_type(make_asgi_app(core), ProbesApp)
probes: ASGIApp = make_asgi_app(core)
metered: ASGIApp = RequestMetrics(probes, registry=core.metrics)

api = FastAPI(lifespan=core.lifespan)
api.mount("/ops", make_asgi_app(core))
api.add_middleware(RequestMetrics, registry=core.metrics)

site = Starlette(
    lifespan=core.lifespan,
    routes=[Mount("/ops", app=make_asgi_app(core))],
    middleware=[Middleware(RequestMetrics, registry=core.metrics)],
)
