"""The probes and /metrics as an ASGI app: ``make_asgi_app(app)``.

It answers /metrics, /livez, /startupz, /readyz and /health exactly as the
aiohttp server does (both ask ``runtime.endpoints``), relative to where it is
mounted (``scope["root_path"]``), and names the endpoint it answered in
``scope["route"]`` as routers do, so that request metrics label it.

Served on its own (``uvicorn pkg:probes``), it also runs the application
through the ASGI lifespan: the modules start on ``lifespan.startup`` (a
failure is sent as ``lifespan.startup.failed`` with the traceback, and the
server exits) and stop on ``lifespan.shutdown``; the lifespan state gains
every module by name. Mounted in FastAPI or Starlette, which pass no
lifespan to mounted apps, the host's ``lifespan=app.lifespan`` does that.

An answer must be taken by the server within ``SEND_TIMEOUT`` seconds;
after that the app stops sending and returns, the response unfinished, and
the server closes the connection (uvicorn logs it). A /metrics body is sent
``WRITE_PIECE`` bytes at a time, other requests served in between.
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Final
from urllib.parse import parse_qsl

from pepperpy_core.asgi.routes import Route
from pepperpy_core.asgi.types import Receive, Scope, Send
from pepperpy_core.runtime.endpoints import PATHS, Answer, Endpoints

if TYPE_CHECKING:
    from pepperpy_core.runtime.app import Application

__all__ = ["SEND_TIMEOUT", "WRITE_PIECE", "ProbesApp", "make_asgi_app"]

_log: Final = logging.getLogger("pepperpy_core.asgi")

#: Seconds a server may take to accept a whole answer before it is abandoned.
SEND_TIMEOUT: Final = 30.0
#: Bytes of a /metrics body handed to the server at a time.
WRITE_PIECE: Final = 64 * 1024
_ROUTES: Final = {path: Route(path) for path in PATHS}


def make_asgi_app(app: Application) -> ProbesApp:
    """The probes and /metrics of ``app`` as an ASGI app (see this module's doc)."""
    from pepperpy_core.runtime.app import Application  # noqa: PLC0415

    if not isinstance(app, Application):
        raise TypeError(f"make_asgi_app() takes an Application, not {type(app).__name__}")
    return ProbesApp(app)


class ProbesApp:
    """An ASGI app answering for one Application (see this module's doc)."""

    def __init__(self, app: Application) -> None:
        from pepperpy_core.runtime.app import _Served  # noqa: PLC0415

        self.application = app
        self.endpoints = Endpoints(_Served(app))
        #: Answers abandoned because the server did not take them in time.
        self.cut_off = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, send)
        elif kind == "lifespan":
            await self._lifespan(scope, receive, send)
        elif kind == "websocket":
            await receive()  # websocket.connect, refused:
            await send({"type": "websocket.close", "code": 1008})
        else:
            raise ValueError(f"the probes app serves http, not {kind!r}")

    async def _http(self, scope: Scope, send: Send) -> None:
        path: str = scope["path"]
        root: str = scope.get("root_path", "")
        if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("", "/"):
            path = path[len(root) :]
        route = _ROUTES.get(path)
        if route is not None:
            scope["route"] = route
        query: dict[str, str] = {}
        for name, value in parse_qsl(scope.get("query_string", b"").decode("latin-1"), True):
            query.setdefault(name, value)  # the first, as aiohttp's query.get() gives
        accept = None
        for name, value in scope.get("headers", ()):
            if name == b"accept":
                accept = value.decode("latin-1")
                break
        method: str = scope["method"]
        async with self.endpoints.answer(path, method, query, accept) as answer:
            try:
                async with asyncio.timeout(SEND_TIMEOUT):
                    await _send(send, answer, head=method == "HEAD")
            except TimeoutError:
                self.cut_off += 1
                _log.debug("the server did not take an answer in %s s: abandoned", SEND_TIMEOUT)
            except OSError:
                pass  # the client left (ASGI 2.4 servers raise on send then)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with AsyncExitStack() as running:
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    try:
                        state = await running.enter_async_context(self.application.lifespan())
                    except Exception as error:
                        failed = "".join(traceback.format_exception(error))
                        await send({"type": "lifespan.startup.failed", "message": failed})
                        return
                    if "state" in scope:
                        scope["state"].update(state)
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    try:
                        await running.aclose()
                    except Exception as error:
                        failed = "".join(traceback.format_exception(error))
                        await send({"type": "lifespan.shutdown.failed", "message": failed})
                        return
                    await send({"type": "lifespan.shutdown.complete"})
                    return

    async def close(self) -> None:
        """Cancel the /metrics renders still in flight."""
        await self.endpoints.close()


async def _send(send: Send, answer: Answer, *, head: bool) -> None:
    headers = [
        (b"content-type", answer.content_type.encode("latin-1")),
        (b"content-length", str(answer.length).encode("latin-1")),
    ]
    headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in answer.headers]
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    if head:
        await send({"type": "http.response.body", "body": b""})
        return
    last = b""
    for body in answer.body:
        for start in range(0, len(body), WRITE_PIECE):
            if last:
                await send({"type": "http.response.body", "body": last, "more_body": True})
                # A server that takes it all does not yield: without this, a
                # scrape would send its whole body in one turn of the loop.
                await asyncio.sleep(0)
            last = body[start : start + WRITE_PIECE]
    await send({"type": "http.response.body", "body": last})
