"""RequestMetrics: ASGI middleware that times every HTTP request.

- ``http_server_request_duration_seconds{method, route, status}``: a
  histogram (the Prometheus form of OpenTelemetry's
  ``http.server.request.duration``, with its bucket bounds), from the call
  to the app until it returns, the body sent. ``route`` is the template the
  router matched (``/items/{id}``), never the raw path; requests no route
  matched share one value, ``unmatched`` (see ``routes``), so a scanner
  cannot make a series per path. A method outside HTTP's own is ``_OTHER``,
  as OpenTelemetry says. An app that fails before it answers counts as a
  500, which the server then sends. Its ``_count`` counts the requests.
- ``http_server_active_requests``: a gauge of the requests in flight.

Websocket and lifespan calls pass through untouched. Each series is looked
up once; later requests with the same labels cost a dict lookup. Recording
never fails a request: a series the registry refuses (a clash) is logged
once and left out.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Final

from pepperpy_core.asgi.routes import template
from pepperpy_core.asgi.types import ASGIApp, Message, Receive, Scope, Send
from pepperpy_core.errors import MetricError
from pepperpy_core.metrics import Histogram, MetricsRegistry, RegistryBase

__all__ = ["ACTIVE", "BUCKETS", "DURATION", "RequestMetrics"]

_log: Final = logging.getLogger("pepperpy_core.asgi")

DURATION: Final = "http_server_request_duration_seconds"
ACTIVE: Final = "http_server_active_requests"
#: OpenTelemetry's advice for ``http.server.request.duration``.
BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
_METHODS: Final = frozenset(
    ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")
)


class RequestMetrics:
    """Times every HTTP request ``app`` answers into ``registry`` (see this
    module's doc); ``app.add_middleware(RequestMetrics, registry=...)`` or
    ``RequestMetrics(app, registry=...)``."""

    def __init__(self, app: ASGIApp, *, registry: MetricsRegistry) -> None:
        if not isinstance(registry, RegistryBase):
            raise TypeError(f"registry must be a MetricsRegistry, not {type(registry).__name__}")
        self.app = app
        self.registry = registry
        registry.describe(DURATION, "Duration of HTTP server requests, in seconds.")
        self._active = registry.gauge(ACTIVE, description="HTTP server requests in flight.")
        self._series: dict[tuple[str, str, int], Histogram | None] = {}
        #: Templates of mounts without parameters, per (prefix, route id).
        self._mounted: dict[tuple[str, int], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 0

        async def answering(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        path = scope.get("path", "")
        root = scope.get("root_path", "")
        active = self._active
        active.inc()
        began = time.perf_counter()
        try:
            await self.app(scope, receive, answering)
        finally:
            took = time.perf_counter() - began
            active.dec()
            method = scope.get("method", "")
            key = (
                method if method in _METHODS else "_OTHER",
                template(scope, path, root, self._mounted),
                status or 500,
            )
            try:
                histogram = self._series[key]
            except KeyError:
                histogram = self._series[key] = self._histogram(*key)
            if histogram is not None:
                histogram.observe(took)

    def _histogram(self, method: str, route: str, status: int) -> Histogram | None:
        labels = {"method": method, "route": route, "status": str(status)}
        try:
            return self.registry.histogram(DURATION, labels, buckets=BUCKETS)
        except MetricError:
            _log.exception("request durations for %s cannot be recorded", labels)
            return None
