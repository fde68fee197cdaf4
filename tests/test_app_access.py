"""An Application as a framework meets it: the lifespan a FastAPI or
Starlette app is given, and typed access to a module from a route."""

from __future__ import annotations

import pytest

from pepperpy_core import Application
from pepperpy_core.errors import StartupError
from pepperpy_core.module import BaseModule, DependentModule, ModuleConfig, ModuleState
from tests.asyncutil import run


class Database(BaseModule):
    pass


class Cache(DependentModule):
    def __init__(self, name: str, db: Database) -> None:
        super().__init__(ModuleConfig(name=name))
        self.db = db


class Broken(BaseModule):
    async def initialize(self) -> None:
        raise ConnectionError("no route to the broker")


def named(cls: type[BaseModule], name: str) -> BaseModule:
    return cls(ModuleConfig(name=name))


def test_module_is_the_one_module_of_a_class_dependencies_included() -> None:
    db = Database(ModuleConfig(name="db"))
    cache = Cache("cache", db)
    app = Application(cache)  # db is reached only as cache's dependency
    assert app.module(Database) is db
    assert app.module(Cache) is cache
    assert app.module(BaseModule, "db") is db
    assert app.module(Database) is db  # (remembered)


def test_module_refuses_what_it_cannot_tell_apart() -> None:
    first, second = named(Database, "first"), named(Database, "second")
    app = Application(first, second)
    with pytest.raises(LookupError, match=r"several modules are a Database \('first', 'second'\)"):
        app.module(Database)
    assert app.module(Database, "second") is second
    with pytest.raises(LookupError, match=r"no module is a Database named 'third'.*'first'"):
        app.module(Database, "third")
    with pytest.raises(LookupError, match=r"no module is a Cache.*none of that class"):
        app.module(Cache)
    with pytest.raises(TypeError, match="takes a class, not str"):
        app.module("db")  # type: ignore[arg-type]
    assert app.module(Database, "first") is first  # the errors changed nothing


def test_module_sees_modules_added_later() -> None:
    app = Application(named(Database, "first"))
    assert app.module(Database).name == "first"
    second = named(Database, "second")
    app.add(second)
    with pytest.raises(LookupError, match="several"):
        app.module(Database)
    assert app.module(Database, "second") is second


def test_provide_is_one_function_per_class_and_name() -> None:
    db = named(Database, "db")
    app = Application(db)
    provider = app.provide(Database)
    assert provider is app.provide(Database)  # FastAPI resolves it once per request
    assert provider is not app.provide(Database, "db")
    assert provider() is db
    assert provider.__name__ == "provide_Database"
    with pytest.raises(LookupError, match="no module is a Cache"):
        app.provide(Cache)()  # asked for when called: modules may be added before


def test_lifespan_starts_gives_every_module_by_name_and_stops() -> None:
    async def main() -> None:
        db = named(Database, "db")
        cache = Cache("cache", db)
        app = Application(cache)
        async with app.lifespan(object()) as state:
            assert app.phase == "running"
            assert state == {"db": db, "cache": cache}
            assert db.state is ModuleState.READY
        assert app.phase == "idle"
        assert db.state is ModuleState.CLOSED

    run(main())


def test_a_failed_start_leaves_the_lifespan_with_the_error_and_nothing_running() -> None:
    async def main() -> None:
        db = named(Database, "db")
        app = Application(db, named(Broken, "broker"))
        entered = False
        with pytest.raises(StartupError, match="broker") as caught:
            async with app.lifespan(object()):
                entered = True
        assert not entered
        assert isinstance(caught.value.__cause__, ConnectionError)
        assert app.phase == "idle"
        assert db.state in (ModuleState.CREATED, ModuleState.CLOSED)

    run(main())
