"""An Application inside ASGI frameworks (FastAPI, Starlette, anything that
speaks ASGI), with no dependency beyond the standard library.

- ``FastAPI(lifespan=app.lifespan)``: see ``Application.lifespan``; routes
  reach a module with ``app.module(Database)`` or
  ``Depends(app.provide(Database))``.
- ``make_asgi_app(app)``: /metrics, /livez, /readyz, /startupz and /health
  as an ASGI app, answering as ``Application(http=...)`` does (both ask
  ``runtime.endpoints``), at the root of a server or mounted under any
  prefix (``api.mount("/ops", make_asgi_app(app))``).
- ``RequestMetrics(api, registry=...)``: request durations by method, route
  template and status, and the requests in flight.
"""

from __future__ import annotations

from pepperpy_core.asgi.metrics import RequestMetrics
from pepperpy_core.asgi.probes import ProbesApp, make_asgi_app
from pepperpy_core.asgi.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "ASGIApp",
    "Message",
    "ProbesApp",
    "Receive",
    "RequestMetrics",
    "Scope",
    "Send",
    "make_asgi_app",
]
