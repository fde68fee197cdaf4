"""An Application's HTTP endpoints, served by aiohttp (the ``http`` extra).

- ``GET /metrics``: every registry of the application (see ``observe``), in
  the text format 0.0.4, or OpenMetrics 1.0.0 when the Accept header ranks
  it first; ``?format=prometheus`` or ``?format=openmetrics`` overrides the
  header (for scrapers and people that cannot set it).
- ``GET /livez``: 200 while the event loop answers.
- ``GET /startupz``: 503 until ``start()`` has finished, then 200.
- ``GET /readyz``: 200 when the application runs and no module is
  unhealthy; 503 otherwise, the body naming what is not ready.
- ``GET /health``: the HealthReport as JSON; 503 when a module is unhealthy.
- HEAD works wherever GET does; another method is 405, another path 404.

Probes answer during start and stop without waiting for either, and
concurrent readiness and health requests share one run of the checks.
Probes also answer while big scrapes run: /metrics is rendered on the event
loop (collectors may touch what the loop owns) but ``RENDER_SLICE`` lines at
a time, the loop serving other requests between slices, and scrapes that
arrive while a render is in flight share its body instead of rendering again.
The server bounds what a client can hold: a request must arrive complete
within ``KEEPALIVE`` seconds of the connection (or of the previous response),
header lines are limited to aiohttp's 8190 bytes, and every answer must be
read within ``SEND_TIMEOUT`` seconds, else the connection is closed and what
it buffered freed. A /metrics body is handed to the connection
``WRITE_PIECE`` bytes at a time, so a slow reader holds a few hundred KiB
besides the body it shares; at most ``MAX_BODIES`` distinct bodies are held
at once (rendered or sent), and a scrape that would need another is answered
503 at once. Out of file descriptors, failed accepts are logged once per
burst, not once each (see ``accept_errors``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeVar

from pepperpy_core.exposition import CONTENT_TYPES, Format, negotiate
from pepperpy_core.runtime.accept_errors import AcceptErrors

if TYPE_CHECKING:
    from aiohttp import web

    from pepperpy_core.runtime.health import HealthReport

_log: Final = logging.getLogger("pepperpy_core.http")
_F = TypeVar("_F", bound=Callable[..., Any])

#: Where ``":port"`` listens: this machine only.
LOOPBACK: Final = "127.0.0.1"
#: Seconds a connection may stay without a complete request.
KEEPALIVE: Final = 5.0
#: Seconds stop() waits for requests in flight before closing their connections.
SHUTDOWN_GRACE: Final = 1.0
#: Lines of /metrics rendered between two turns of the event loop (about a
#: millisecond's work once each series' label text is made).
RENDER_SLICE: Final = 2048
#: Seconds a client has to read a whole answer before its connection is closed.
SEND_TIMEOUT: Final = 30.0
#: Bytes of a /metrics body handed to a connection at a time.
WRITE_PIECE: Final = 64 * 1024
#: Distinct /metrics bodies held at once, being rendered or sent.
MAX_BODIES: Final = 4
_FORMATS: Final[dict[str, Format]] = {
    "prometheus": "prometheus",
    "text": "prometheus",
    "openmetrics": "openmetrics",
}
_EXTRA_HINT: Final = (
    "serving HTTP needs aiohttp: install the extra with `pip install 'pepperpy-core[http]'`"
)


def require_aiohttp() -> None:
    """ImportError naming the ``http`` extra when aiohttp is missing."""
    try:
        import aiohttp.web  # noqa: F401, PLC0415
    except ImportError as exc:
        raise ImportError(_EXTRA_HINT, name="aiohttp") from exc


def parse_address(address: object) -> tuple[str, int]:
    """``"host:port"`` (``"[::1]:port"`` for IPv6) as (host, port); no host
    (``":9464"``) means loopback and port 0 a free port. TypeError or
    ValueError saying what is wrong."""
    if not isinstance(address, str):
        raise TypeError(f'http must be a "host:port" str, not {type(address).__name__}')
    host, sep, port_text = address.rpartition(":")
    if not sep:
        raise ValueError(f'http must be "host:port" (e.g. "127.0.0.1:9464"), got {address!r}')
    if not host:
        host = LOOPBACK
    elif host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"http has a bad IPv6 address in {address!r}") from None
    elif ":" in host:
        raise ValueError(f'http: write an IPv6 address in brackets ("[::1]:9464"), got {address!r}')
    if not port_text.isascii() or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"http needs a port from 0 to 65535, got {port_text!r} in {address!r}")
    return host, int(port_text)


def _middleware(function: _F) -> _F:
    """Mark ``function`` as an aiohttp middleware (what ``web.middleware`` does),
    without importing aiohttp before the ``http`` extra is asked for."""
    function.__middleware_version__ = 1  # type: ignore[attr-defined]
    return function


class Served(Protocol):
    """What the endpoints answer for: an Application hands the server one."""

    @property
    def phase(self) -> str:
        """``idle``, ``starting``, ``running`` or ``stopping``."""
        ...

    def health(self) -> Awaitable[HealthReport]:
        """Run every health check once."""
        ...

    def metrics(self, fmt: Format, lines: int) -> Iterator[bytes]:
        """The /metrics body in ``fmt``, UTF-8 encoded, about ``lines`` lines per piece."""
        ...

    def scraped(self, fmt: Format) -> None:
        """Count one /metrics answer."""
        ...


class HttpServer:
    """The endpoints above for one application (``served``), between
    ``open()`` and ``close()``."""

    def __init__(self, served: Served, host: str, port: int) -> None:
        self._app = served
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None
        self._checking: asyncio.Future[HealthReport] | None = None
        #: The render in flight per format, which every scrape arriving meanwhile shares.
        self._rendering: dict[Format, asyncio.Task[list[bytes]]] = {}
        #: Every body being rendered or sent, and how many requests hold it.
        self._holders: dict[asyncio.Task[list[bytes]], int] = {}
        #: /metrics bodies rendered so far (concurrent scrapes share one).
        self.renders = 0
        #: Connections closed because their client did not read an answer in time.
        self.cut_off = 0
        self._accept_errors: AcceptErrors | None = None  # while listening
        self.port: int | None = None

    async def open(self) -> None:
        """Listen; OSError (the address in use, say) and nothing listening if not."""
        from aiohttp import web  # noqa: PLC0415

        routes = web.Application(
            handler_args={"keepalive_timeout": KEEPALIVE}, middlewares=[self._send_in_time]
        )
        for path, handler in (
            ("/metrics", self._metrics),
            ("/livez", self._livez),
            ("/startupz", self._startupz),
            ("/readyz", self._readyz),
            ("/health", self._health),
        ):
            routes.router.add_get(path, handler)
        runner = web.AppRunner(
            routes, access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_GRACE
        )
        await runner.setup()
        try:
            site = web.TCPSite(
                runner,
                self._host,
                self._port,
                backlog=1024,
                reuse_address=True,
            )
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = _bound_port(runner)
        self._accept_errors = AcceptErrors(asyncio.get_running_loop(), runner.addresses)
        _log.info("serving metrics and probes on http://%s:%d", self._host, self.port)

    async def close(self) -> None:
        """Stop listening, let requests in flight end (at most ``SHUTDOWN_GRACE``
        seconds), then close every connection. Completes even if cancelled
        (and then re-raises the cancellation)."""
        runner, self._runner = self._runner, None
        self.port = None
        if runner is None:
            return
        closing = asyncio.ensure_future(self._cleanup(runner))
        try:
            await asyncio.shield(closing)
        except asyncio.CancelledError:
            await asyncio.wait([closing])
            raise

    async def _cleanup(self, runner: web.AppRunner) -> None:
        try:
            await runner.cleanup()
        finally:
            if self._accept_errors is not None:
                self._accept_errors.close()
                self._accept_errors = None
            renders = list(self._rendering.values())  # left by requests cut off
            for task in renders:
                task.cancel()
            await asyncio.gather(*renders, return_exceptions=True)

    # --- handlers ------------------------------------------------------------------

    @_middleware
    async def _send_in_time(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """Send what a handler returns (unless it sent it) within the deadline."""
        response = await handler(request)
        if not response.prepared:
            await self._within_deadline(request, _send(request, response, ()))
        return response

    async def _within_deadline(self, request: web.Request, sending: Awaitable[None]) -> None:
        """Await ``sending``; past ``SEND_TIMEOUT`` seconds, or when the client
        has left, close the connection (dropping what it buffers)."""
        try:
            async with asyncio.timeout(SEND_TIMEOUT):
                await sending
        except TimeoutError:
            self.cut_off += 1
            _log.debug("a client did not read its answer in %s s: connection closed", SEND_TIMEOUT)
        except ConnectionError:
            pass  # the client left
        else:
            return
        transport = request.transport
        if transport is not None:
            transport.abort()

    async def _metrics(self, request: web.Request) -> web.StreamResponse:
        from aiohttp import web  # noqa: PLC0415

        asked = request.query.get("format")
        if asked is not None:
            fmt = _FORMATS.get(asked.lower())
            if fmt is None:
                known = ", ".join(sorted(_FORMATS))
                return _text(400, f"unknown format {asked!r}; use one of {known}\n")
        else:
            fmt = negotiate(request.headers.get("Accept"))
        rendering = self._rendering.get(fmt)
        if rendering is None:
            if len(self._holders) >= MAX_BODIES:
                busy = _text(503, "too many /metrics answers in flight; try again\n")
                busy.headers["Retry-After"] = "1"
                return busy
            rendering = self._rendering[fmt] = asyncio.ensure_future(self._render(fmt))
            self.renders += 1  # (counted as it is made: its task may not have run yet)
            rendering.add_done_callback(self._rendered)
        self._holders[rendering] = self._holders.get(rendering, 0) + 1
        try:
            try:
                # Shielded: a client that leaves does not cancel it for the others.
                chunks = await asyncio.shield(rendering)
            except Exception:  # logged once by the render
                return _text(500, "collecting metrics failed; see the application's log\n")
            self._app.scraped(fmt)
            response = web.StreamResponse(headers={"Content-Type": CONTENT_TYPES[fmt]})
            response.content_length = sum(len(chunk) for chunk in chunks)
            await self._within_deadline(request, _send(request, response, chunks))
            return response
        finally:
            self._release(rendering)

    async def _livez(self, request: web.Request) -> web.Response:
        return _text(200, "ok\n")

    async def _startupz(self, request: web.Request) -> web.Response:
        if self._app.phase in ("running", "stopping"):
            return _text(200, "started\n")
        return _text(503, f"not started: the application is {self._app.phase}\n")

    async def _readyz(self, request: web.Request) -> web.Response:
        phase = self._app.phase
        if phase != "running":
            return _text(503, f"not ready: the application is {phase}\n")
        report = await self._shared_health()
        if self._app.phase != "running":
            return _text(503, f"not ready: the application is {self._app.phase}\n")
        if report.status == "unhealthy":
            lines = [
                f"{name}: {m.status} ({m.detail})"
                for name, m in report.modules.items()
                if m.status != "healthy"
            ]
            return _text(503, "not ready:\n" + "".join(f"  {line}\n" for line in lines))
        return _text(200, "ready\n")

    async def _health(self, request: web.Request) -> web.Response:
        from aiohttp import web  # noqa: PLC0415

        report = await self._shared_health()
        status = 503 if report.status == "unhealthy" else 200
        return web.json_response(report.to_dict(), status=status, dumps=_dumps)

    @property
    def bodies_held(self) -> int:
        """Distinct /metrics bodies being rendered or sent now."""
        return len(self._holders)

    @property
    def scrapes_in_flight(self) -> int:
        """/metrics requests waiting for a body or sending one now."""
        return sum(self._holders.values())

    def _release(self, rendering: asyncio.Task[list[bytes]]) -> None:
        left = self._holders[rendering] - 1
        if left:
            self._holders[rendering] = left
        else:
            del self._holders[rendering]  # the body goes with its last reader

    def _rendered(self, task: asyncio.Task[list[bytes]]) -> None:
        for fmt, rendering in list(self._rendering.items()):
            if rendering is task:
                del self._rendering[fmt]
        if not task.cancelled():
            task.exception()  # logged by the render, even when no one waits

    async def _render(self, fmt: Format) -> list[bytes]:
        """The body as encoded pieces, rendered a slice at a time."""
        try:
            chunks = []
            for piece in self._app.metrics(fmt, RENDER_SLICE):
                chunks.append(piece)
                await asyncio.sleep(0)  # probes and other requests answer here
        except Exception:
            _log.exception("collecting metrics failed")
            raise
        return chunks

    def _shared_health(self) -> Awaitable[HealthReport]:
        """The health check in flight, or a new one: one run serves every
        request that arrives while it runs; a client that leaves does not
        cancel it for the others."""
        checking = self._checking
        if checking is None or checking.done():
            checking = self._checking = asyncio.ensure_future(self._app.health())
        return asyncio.shield(checking)


async def _send(
    request: web.Request, response: web.StreamResponse, chunks: Iterable[bytes]
) -> None:
    """Prepare ``response``, write ``chunks`` a piece at a time, and end it."""
    await response.prepare(request)
    if request.method != "HEAD":
        for chunk in chunks:
            view = memoryview(chunk)
            for start in range(0, len(view), WRITE_PIECE):
                await response.write(view[start : start + WRITE_PIECE])
                # When the socket takes it all, write() does not yield: without
                # this, a scrape would send its whole body in one turn of the loop.
                await asyncio.sleep(0)
    await response.write_eof()


def _dumps(value: Any) -> str:
    return json.dumps(value, allow_nan=False)


def _text(status: int, body: str) -> web.Response:
    from aiohttp import web  # noqa: PLC0415

    # Bodies quote module names and health details, which may hold lone
    # surrogates (from os.fsdecode, say): escaped, never a failed answer.
    return web.Response(
        status=status,
        body=body.encode("utf-8", "backslashreplace"),
        content_type="text/plain",
        charset="utf-8",
    )


def _bound_port(runner: web.AppRunner) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple):
            return int(address[1])
    raise RuntimeError("the HTTP server is not bound to a TCP port")
