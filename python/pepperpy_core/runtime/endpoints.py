"""What the HTTP endpoints answer, whichever server carries them: the aiohttp
server (``http``) and the ASGI app (``pepperpy_core.asgi``) hand each request's
path, method, query and Accept header to ``Endpoints.answer`` and send what
it gives, so both answer with the same statuses, headers and bodies.

- ``GET /metrics``: every registry of the application, in the text format
  0.0.4, or OpenMetrics 1.0.0 when the Accept header ranks it first;
  ``?format=prometheus`` or ``?format=openmetrics`` overrides the header (for
  scrapers and people that cannot set it); another format is a 400.
- ``GET /livez``: 200 while the event loop answers.
- ``GET /startupz``: 503 until ``start()`` has finished, then 200.
- ``GET /readyz``: 200 when the application runs, does not drain to stop
  and no module is unhealthy; 503 otherwise, the body naming what is not ready.
- ``GET /health``: the overall status, the phase and each module's status as
  JSON; ``?verbose`` adds each module's detail and check latency (details
  quote exceptions, which may name hosts and users: asked for, never given);
  503 when unhealthy.
- HEAD answers as GET does, without the body; another method is a 405 that
  says ``Allow: GET, HEAD``; another path a 404.

Probes never wait for a start or a stop, and concurrent readiness and health
requests share one run of the checks. /metrics is rendered on the event loop
(collectors may touch what the loop owns) but ``RENDER_SLICE`` lines at a
time, the loop serving other requests between slices; scrapes that arrive
while a render is in flight share its body; a render that every waiting
scrape has left is cancelled. At most ``MAX_BODIES`` distinct bodies are held
at once (being rendered or sent): a scrape that would need another is a 503
with ``Retry-After: 1``, at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol

from pepperpy_core.exposition import CONTENT_TYPES, Format, negotiate

if TYPE_CHECKING:
    from pepperpy_core.runtime.health import HealthReport

_log: Final = logging.getLogger("pepperpy_core.http")

#: The endpoints' paths, as a server routes them.
PATHS: Final = ("/metrics", "/livez", "/startupz", "/readyz", "/health")
#: Lines of /metrics rendered between two turns of the event loop (about a
#: millisecond's work once each series' label text is made).
RENDER_SLICE: Final = 2048
#: Distinct /metrics bodies held at once, being rendered or sent.
MAX_BODIES: Final = 4
_FORMATS: Final[dict[str, Format]] = {
    "prometheus": "prometheus",
    "text": "prometheus",
    "openmetrics": "openmetrics",
}
_TEXT: Final = "text/plain; charset=utf-8"
_JSON: Final = "application/json; charset=utf-8"
_METHODS: Final = ("GET", "HEAD")
_FALSE: Final = ("0", "false", "no")


class Served(Protocol):
    """What the endpoints answer for: an Application hands the server one."""

    @property
    def phase(self) -> str:
        """``idle``, ``starting``, ``running`` or ``stopping``."""
        ...

    @property
    def draining(self) -> bool:
        """True while a stop drains (see ``drain.py``): not ready."""
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


@dataclass(frozen=True, slots=True)
class Answer:
    """One response: status, Content-Type, the body in pieces, other headers."""

    status: int
    content_type: str
    body: Sequence[bytes]
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def length(self) -> int:
        """The body's length in bytes (its Content-Length, also for HEAD)."""
        return sum(len(piece) for piece in self.body)


def text(status: int, body: str, *headers: tuple[str, str]) -> Answer:
    """A text/plain answer; text UTF-8 cannot encode (lone surrogates, from
    module names or health details) is escaped, never a failed answer."""
    return Answer(status, _TEXT, (body.encode("utf-8", "backslashreplace"),), headers)


class Endpoints:
    """The endpoints above for one application (``served``); a server keeps
    one per listener and calls ``close()`` when it stops."""

    def __init__(self, served: Served) -> None:
        self._app = served
        self._checking: asyncio.Future[HealthReport] | None = None
        #: The render in flight per format, which every scrape arriving meanwhile shares.
        self._rendering: dict[Format, asyncio.Task[list[bytes]]] = {}
        #: Every body being rendered or sent, and how many requests hold it.
        self._holders: dict[asyncio.Task[list[bytes]], int] = {}
        #: /metrics bodies rendered so far (concurrent scrapes share one).
        self.renders = 0

    @asynccontextmanager
    async def answer(
        self, path: str, method: str, query: Mapping[str, str], accept: str | None
    ) -> AsyncIterator[Answer]:
        """The answer to ``method path?query``; a /metrics body is held
        (counted against ``MAX_BODIES``) until the block ends."""
        if path not in PATHS:
            yield text(404, f"no endpoint at {path!r}; there are {', '.join(PATHS)}\n")
        elif method not in _METHODS:
            yield text(405, f"{method} is not allowed; use GET or HEAD\n", ("Allow", "GET, HEAD"))
        elif path == "/metrics":
            async with self._metrics(query.get("format"), accept) as answer:
                yield answer
        elif path == "/livez":
            yield text(200, "ok\n")
        elif path == "/startupz":
            yield self._startupz()
        elif path == "/readyz":
            yield await self._readyz()
        else:
            yield await self._health(query.get("verbose", "no").lower() not in _FALSE)

    @property
    def bodies_held(self) -> int:
        """Distinct /metrics bodies being rendered or sent now."""
        return len(self._holders)

    @property
    def scrapes_in_flight(self) -> int:
        """/metrics requests waiting for a body or sending one now."""
        return sum(self._holders.values())

    @property
    def renders_in_flight(self) -> int:
        """/metrics bodies being rendered now."""
        return len(self._rendering)

    async def close(self) -> None:
        """Cancel the renders still in flight and wait for them to end."""
        renders = list(self._rendering.values())
        for task in renders:
            task.cancel()
        await asyncio.gather(*renders, return_exceptions=True)

    # --- the probes ----------------------------------------------------------------

    def _startupz(self) -> Answer:
        if self._app.phase in ("running", "stopping"):
            return text(200, "started\n")
        return text(503, f"not started: the application is {self._app.phase}\n")

    async def _readyz(self) -> Answer:
        unready = self._not_running()
        if unready is not None:
            return unready
        report = await self._shared_health()
        unready = self._not_running()
        if unready is not None:
            return unready
        if report.status == "unhealthy":
            lines = [
                f"{name}: {m.status} ({m.detail})"
                for name, m in report.modules.items()
                if m.status != "healthy"
            ]
            return text(503, "not ready:\n" + "".join(f"  {line}\n" for line in lines))
        return text(200, "ready\n")

    def _not_running(self) -> Answer | None:
        """The 503 of an application that is not running, or drains to stop."""
        phase = self._app.phase
        if phase != "running":
            return text(503, f"not ready: the application is {phase}\n")
        if self._app.draining:
            return text(503, "not ready: draining before the stop\n")
        return None

    async def _health(self, verbose: bool) -> Answer:
        report = await self._shared_health()
        status = 503 if report.status == "unhealthy" else 200
        data = report.to_dict()
        if not verbose:
            data["modules"] = {name: {"status": m.status} for name, m in report.modules.items()}
        # ensure_ascii (the default) escapes lone surrogates too: the body always encodes.
        return Answer(status, _JSON, (json.dumps(data, allow_nan=False).encode(),))

    def _shared_health(self) -> Awaitable[HealthReport]:
        """The health check in flight, or a new one: one run serves every
        request that arrives while it runs; a client that leaves does not
        cancel it for the others."""
        checking = self._checking
        if checking is None or checking.done():
            checking = self._checking = asyncio.ensure_future(self._app.health())
        return asyncio.shield(checking)

    # --- /metrics ------------------------------------------------------------------

    @asynccontextmanager
    async def _metrics(self, asked: str | None, accept: str | None) -> AsyncIterator[Answer]:
        if asked is not None:
            chosen = _FORMATS.get(asked.lower())
            if chosen is None:
                known = ", ".join(sorted(_FORMATS))
                yield text(400, f"unknown format {asked!r}; use one of {known}\n")
                return
            fmt = chosen
        else:
            fmt = negotiate(accept)
        rendering = self._rendering.get(fmt)
        if rendering is None:
            if len(self._holders) >= MAX_BODIES:
                busy = "too many /metrics answers in flight; try again\n"
                yield text(503, busy, ("Retry-After", "1"))
                return
            rendering = self._rendering[fmt] = asyncio.ensure_future(self._render(fmt))
            self.renders += 1  # (counted as it is made: its task may not have run yet)
            rendering.add_done_callback(self._rendered)
        self._holders[rendering] = self._holders.get(rendering, 0) + 1
        try:
            try:
                # Shielded: a client that leaves does not cancel it for the others.
                chunks: list[bytes] | None = await asyncio.shield(rendering)
            except Exception:  # logged once by the render
                chunks = None
            if chunks is None:
                yield text(500, "collecting metrics failed; see the application's log\n")
            else:
                self._app.scraped(fmt)
                yield Answer(200, CONTENT_TYPES[fmt], chunks)
        finally:
            self._release(rendering)

    def _release(self, rendering: asyncio.Task[list[bytes]]) -> None:
        left = self._holders[rendering] - 1
        if left:
            self._holders[rendering] = left
            return
        del self._holders[rendering]  # the body goes with its last reader
        if not rendering.done():  # a render no scrape waits for any more
            rendering.cancel()
            self._forget(rendering)  # now: a scrape arriving next must not share it

    def _forget(self, task: asyncio.Task[list[bytes]]) -> None:
        for fmt, rendering in list(self._rendering.items()):
            if rendering is task:
                del self._rendering[fmt]

    def _rendered(self, task: asyncio.Task[list[bytes]]) -> None:
        self._forget(task)
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
