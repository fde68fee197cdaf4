"""An Application's HTTP endpoints, served by aiohttp (the ``http`` extra).

What each endpoint answers (/metrics, /livez, /startupz, /readyz, /health)
is decided in ``endpoints``, which the ASGI app shares; this module carries
it over aiohttp. The server bounds what a client can hold: a request must
arrive complete within ``KEEPALIVE`` seconds of the connection (or of the
previous response), header lines are limited to aiohttp's 8190 bytes, and
every answer must be read within ``SEND_TIMEOUT`` seconds, else the
connection is closed and what it buffered freed. A /metrics body is handed to
the connection ``WRITE_PIECE`` bytes at a time, so a slow reader holds a few
hundred KiB besides the body it shares. Out of file descriptors, failed
accepts are logged once per burst, not once each (see ``accept_errors``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Awaitable, Iterable
from typing import TYPE_CHECKING, Final

from pepperpy_core.runtime.accept_errors import AcceptErrors
from pepperpy_core.runtime.endpoints import Endpoints, Served

if TYPE_CHECKING:
    from aiohttp import web

__all__ = ["HttpServer", "Responder", "Served", "parse_address", "require_aiohttp"]

_log: Final = logging.getLogger("pepperpy_core.http")

#: Where ``":port"`` listens: this machine only.
LOOPBACK: Final = "127.0.0.1"
#: Seconds a connection may stay without a complete request.
KEEPALIVE: Final = 5.0
#: Seconds stop() waits for requests in flight before closing their connections.
SHUTDOWN_GRACE: Final = 1.0
#: Seconds a client has to read a whole answer before its connection is closed.
SEND_TIMEOUT: Final = 30.0
#: Bytes of a /metrics body handed to a connection at a time.
WRITE_PIECE: Final = 64 * 1024
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


class HttpServer:
    """The endpoints for one application (``served``), between ``open()``
    and ``close()``."""

    def __init__(self, served: Served, host: str, port: int) -> None:
        self.endpoints = Endpoints(served)
        self._responder = Responder(self.endpoints)
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None
        self._accept_errors: AcceptErrors | None = None  # while listening
        self.port: int | None = None

    async def open(self) -> None:
        """Listen; OSError (the address in use, say) and nothing listening if not."""
        from aiohttp import web  # noqa: PLC0415

        routes = web.Application(handler_args={"keepalive_timeout": KEEPALIVE})
        # Every path and method reaches the endpoints, which answer 404 and 405
        # as the ASGI app does.
        routes.router.add_route("*", "/{path:.*}", self._responder.answer)
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
            await self.endpoints.close()  # renders left by requests cut off

    @property
    def cut_off(self) -> int:
        """Connections closed because their client did not read an answer in time."""
        return self._responder.cut_off

    @property
    def renders(self) -> int:
        """/metrics bodies rendered so far (concurrent scrapes share one)."""
        return self.endpoints.renders

    @property
    def bodies_held(self) -> int:
        """Distinct /metrics bodies being rendered or sent now."""
        return self.endpoints.bodies_held

    @property
    def scrapes_in_flight(self) -> int:
        """/metrics requests waiting for a body or sending one now."""
        return self.endpoints.scrapes_in_flight


class Responder:
    """Answers aiohttp requests from ``endpoints``, sending each within
    ``SEND_TIMEOUT`` seconds: for this module's server, and as routes of a
    user's own aiohttp app (``pepperpy_core.aiohttp``)."""

    def __init__(self, endpoints: Endpoints) -> None:
        self.endpoints = endpoints
        #: Connections closed because their client did not read an answer in time.
        self.cut_off = 0

    async def answer(self, request: web.Request, path: str | None = None) -> web.StreamResponse:
        """Answer ``request`` as the endpoint at ``path`` (default: its path)."""
        from aiohttp import web  # noqa: PLC0415

        async with self.endpoints.answer(
            request.path if path is None else path,
            request.method,
            request.query,
            request.headers.get("Accept"),
        ) as answer:
            response = web.StreamResponse(status=answer.status)
            response.headers["Content-Type"] = answer.content_type
            for name, value in answer.headers:
                response.headers[name] = value
            response.content_length = answer.length
            await self._within_deadline(request, _send(request, response, answer.body))
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


async def _send(
    request: web.Request, response: web.StreamResponse, chunks: Iterable[bytes]
) -> None:
    """Prepare ``response``, write ``chunks`` a piece at a time, and end it."""
    await response.prepare(request)
    last: memoryview | None = None
    if request.method != "HEAD":
        for chunk in chunks:
            view = memoryview(chunk)
            for start in range(0, len(view), WRITE_PIECE):
                if last is not None:
                    await response.write(last)
                    # When the socket takes it all, write() does not yield: without
                    # this, a scrape would send its whole body in one turn of the loop.
                    await asyncio.sleep(0)
                last = view[start : start + WRITE_PIECE]
    # The last piece goes with the end: write_eof() waits for a paused transport
    # only when it writes something, and write() only past 64 KiB, so a client
    # that reads nothing would otherwise pile small answers up without bound.
    await response.write_eof(b"" if last is None else last.tobytes())


def _bound_port(runner: web.AppRunner) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple):
            return int(address[1])
    raise RuntimeError("the HTTP server is not bound to a TCP port")
