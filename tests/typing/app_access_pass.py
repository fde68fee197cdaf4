"""Must pass ``mypy --strict``: a module reached from a route has its own
type, and the lifespan fits FastAPI's and Starlette's own signatures."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, assert_type

from fastapi import Depends, FastAPI
from starlette.applications import Starlette

from pepperpy_core import Application
from pepperpy_core.module import BaseModule


class Database(BaseModule):
    async def fetch(self, key: str) -> bytes:
        return key.encode()


core = Application(Database())
assert_type(core.module(Database), Database)
assert_type(core.module(Database, "db"), Database)
assert_type(core.provide(Database), Callable[[], Database])

api = FastAPI(lifespan=core.lifespan)

site = Starlette(lifespan=core.lifespan)


@api.get("/items/{key}")
async def item(key: str, db: Annotated[Database, Depends(core.provide(Database))]) -> bytes:
    assert_type(db, Database)
    return await db.fetch(key)
