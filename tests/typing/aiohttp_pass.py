"""Must pass ``mypy --strict``: a handler of a user's aiohttp app reaches the
attached Application, and through it a module, each with its own type."""

from __future__ import annotations

from typing import assert_type

from aiohttp import web

from pepperpy_core import Application
from pepperpy_core.aiohttp import CORE, attach
from pepperpy_core.module import BaseModule


class Database(BaseModule):
    async def fetch(self, key: str) -> bytes:
        return key.encode()


site = web.Application()
attach(site, Application(Database()), prefix="/ops")


async def item(request: web.Request) -> web.Response:
    core = request.app[CORE]
    assert_type(core, Application)
    db = core.module(Database)
    assert_type(db, Database)
    return web.Response(body=await db.fetch(request.match_info["key"]))


site.router.add_get("/items/{key}", item)
