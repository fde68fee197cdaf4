"""Web apps in tests: an ASGI app called directly (no server, no
TestClient), or served (ASGI by a real uvicorn, aiohttp by its own runner)
on a free loopback port and asked over HTTP."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import uvicorn
from aiohttp import web

from pepperpy_core.asgi import ASGIApp
from tests.asyncutil import until


@dataclass
class Called:
    """What an app sent for one request, and the scope it left behind."""

    status: int
    headers: dict[str, str]
    body: bytes
    scope: dict[str, Any]
    messages: list[dict[str, Any]] = field(default_factory=list)


def http_scope(
    path: str,
    *,
    method: str = "GET",
    root_path: str = "",
    query: str = "",
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """An HTTP scope as a server makes it (path with its root path, as
    uvicorn and Starlette 0.35+ do)."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": root_path + path,
        "raw_path": (root_path + path).encode(),
        "root_path": root_path,
        "query_string": query.encode(),
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
        "server": ("127.0.0.1", 80),
        "client": ("127.0.0.1", 50000),
        "state": {},
    }


async def call(app: ASGIApp, path: str, **kwargs: Any) -> Called:
    """One request to ``app``, answered in full."""
    scope = http_scope(path, **kwargs)
    messages: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        messages.append(dict(message))

    await app(scope, receive, send)
    start, *body = messages
    assert start["type"] == "http.response.start", messages
    assert body
    assert all(m["type"] == "http.response.body" for m in body)
    assert all(m.get("more_body") for m in body[:-1])
    assert not body[-1].get("more_body", False)
    headers = {k.decode(): v.decode() for k, v in start.get("headers", [])}
    return Called(start["status"], headers, b"".join(m["body"] for m in body), scope, messages)


@asynccontextmanager
async def serving(app: ASGIApp, **config: Any) -> AsyncIterator[str]:
    """``app`` served by uvicorn (lifespan on) on a free loopback port: its
    base URL, once the startup has completed; on exit, shut down."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, lifespan="on", log_level="warning", **config))
    serve = asyncio.ensure_future(server.serve(sockets=[sock]))
    try:
        await until(lambda: server.started or serve.done(), within=30)
        assert server.started, "uvicorn did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(serve, 60)
        sock.close()


async def fetch(url: str, method: str = "GET", **headers: str) -> tuple[int, dict[str, str], bytes]:
    """(status, headers lower-cased, body) of one request on a fresh connection."""
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, headers=headers, allow_redirects=False) as response,
    ):
        body = await response.read()
        return response.status, {k.lower(): v for k, v in response.headers.items()}, body


async def answers(url: str, status: int, body: bytes | None = None) -> bool:
    """Whether ``url`` answers ``status`` (and ``body``, if given); False while
    nothing listens there."""
    try:
        got = await fetch(url)
    except aiohttp.ClientConnectionError:
        return False
    return got[0] == status and (body is None or got[2] == body)


@asynccontextmanager
async def aiohttp_serving(site_app: web.Application) -> AsyncIterator[str]:
    """``site_app`` served by aiohttp's runner on a free loopback port: its
    base URL; on exit, cleaned up."""
    runner = web.AppRunner(site_app, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        (address,) = [a for a in runner.addresses if isinstance(a, tuple)]
        yield f"http://127.0.0.1:{address[1]}"
    finally:
        await runner.cleanup()
