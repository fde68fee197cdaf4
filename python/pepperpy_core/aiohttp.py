"""An Application inside a user's own aiohttp app (the ``http`` extra).

``attach(web_app, core)`` makes ``core`` part of ``web_app``:

- a cleanup context starts the modules when ``web_app`` starts (a failed
  start fails it: ``web.run_app`` raises the StartupError) and stops them
  when it is cleaned up; under ``web.run_app`` a SIGTERM drains first, as
  the ASGI lifespan does (``Application(drain=...)``);
- the probes and /metrics are routes of ``web_app`` under ``prefix``
  (``/ops/readyz``, ...), answering exactly as ``Application(http=...)``
  does (both ask ``runtime.endpoints``); any other path under the prefix
  is the endpoints' own 404;
- ``request.app[CORE]`` is ``core``, typed, so that a handler reaches a
  module with ``request.app[CORE].module(Database)``.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from typing import Final

from pepperpy_core.runtime.http import require_aiohttp

require_aiohttp()

from aiohttp import web  # noqa: E402

from pepperpy_core.runtime.app import Application  # noqa: E402
from pepperpy_core.runtime.endpoints import PATHS, Endpoints  # noqa: E402
from pepperpy_core.runtime.http import Responder  # noqa: E402

__all__ = ["CORE", "attach"]

#: Where ``attach`` keeps the Application in the aiohttp app.
CORE: Final = web.AppKey("pepperpy_core", Application)


def attach(web_app: web.Application, core: Application, *, prefix: str | None = "/ops") -> None:
    """Run ``core`` with ``web_app`` and serve its probes and /metrics as
    routes under ``prefix`` ("" for the root, None for none); see this
    module's doc. TypeError or ValueError, and ``web_app`` unchanged, for
    what cannot be attached."""
    if not isinstance(web_app, web.Application):
        raise TypeError(f"attach() takes an aiohttp.web.Application, not {type(web_app).__name__}")
    if not isinstance(core, Application):
        raise TypeError(f"attach() takes an Application to run, not {type(core).__name__}")
    if prefix is not None:
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a str or None, not {type(prefix).__name__}")
        if prefix and (not prefix.startswith("/") or prefix.endswith("/")):
            raise ValueError(f'prefix must start with "/" and not end with one, got {prefix!r}')
    if web_app.frozen:
        raise RuntimeError("attach() needs an aiohttp app that has not started yet")
    if CORE in web_app:
        raise ValueError("an Application is attached to this aiohttp app already")
    from pepperpy_core.runtime.app import _Served  # noqa: PLC0415

    endpoints = Endpoints(_Served(core))

    async def running(_: web.Application) -> AsyncIterator[None]:
        try:
            async with core.lifespan():
                yield
        finally:
            await endpoints.close()

    web_app[CORE] = core
    web_app.cleanup_ctx.append(running)
    if prefix is None:
        return
    responder = Responder(endpoints)
    for path in PATHS:
        web_app.router.add_route("*", prefix + path, functools.partial(responder.answer, path=path))
    if prefix:  # the rest under the prefix: the endpoints' 404, as the ASGI app's
        web_app.router.add_route("*", prefix + "/{tail:.*}", functools.partial(_tail, responder))


async def _tail(responder: Responder, request: web.Request) -> web.StreamResponse:
    return await responder.answer(request, "/" + request.match_info["tail"])
