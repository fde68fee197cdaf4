"""Must pass ``mypy --strict``: the probes app fits where FastAPI and
Starlette take an ASGI app."""

from __future__ import annotations

from typing import assert_type

from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.routing import Mount

from pepperpy_core import Application
from pepperpy_core.asgi import ASGIApp, ProbesApp, make_asgi_app

core = Application()
assert_type(make_asgi_app(core), ProbesApp)
probes: ASGIApp = make_asgi_app(core)

api = FastAPI(lifespan=core.lifespan)
api.mount("/ops", make_asgi_app(core))

site = Starlette(
    lifespan=core.lifespan,
    routes=[Mount("/ops", app=make_asgi_app(core))],
)
