"""ResourceModule: registration, reverse-order release, failures together."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator

import pytest

from pepperpy_core.cache import FIFOCache
from pepperpy_core.errors import ResourceReleaseError
from pepperpy_core.module import ModuleState, ResourceModule
from tests.asyncutil import run

pytestmark = pytest.mark.backend

log: list[str] = []


class SyncClose:
    def __init__(self, name: str, fail: bool = False) -> None:
        self.name = name
        self.fail = fail

    def close(self) -> None:
        log.append(self.name)
        if self.fail:
            raise OSError(f"{self.name} stuck")


class AsyncClose:
    def __init__(self, name: str) -> None:
        self.name = name

    async def aclose(self) -> None:
        log.append(self.name)


class AsyncCloseMethod:
    async def close(self) -> None:
        log.append("async-close")


@contextlib.contextmanager
def sync_cm(name: str) -> Iterator[str]:
    log.append(f"enter {name}")
    yield name
    log.append(f"exit {name}")


@contextlib.asynccontextmanager
async def async_cm(name: str) -> AsyncIterator[str]:
    log.append(f"enter {name}")
    yield name
    log.append(f"exit {name}")


def test_released_in_reverse_order_of_every_kind() -> None:
    log.clear()
    m = ResourceModule()

    async def main() -> None:
        await m.initialize()
        m.add_resource(SyncClose("sync"))
        m.add_resource(AsyncClose("async"))
        m.add_resource(AsyncCloseMethod())
        assert await m.enter_resource(sync_cm("s")) == "s"
        assert await m.enter_resource(async_cm("a")) == "a"
        m.add_resource(object(), close=lambda: log.append("explicit"))
        m.add_callback(log.append, "callback")

        async def async_callback() -> None:
            log.append("async-callback")

        m.add_callback(async_callback)
        assert len(m.resources) == 8
        await m.cleanup()

    run(main())
    assert log == [
        "enter s",
        "enter a",
        "async-callback",
        "callback",
        "explicit",
        "exit a",
        "exit s",
        "async-close",
        "async",
        "sync",
    ]
    assert m.resources == []
    assert m.state is ModuleState.CLOSED


def test_failures_do_not_stop_the_others_and_are_raised_together() -> None:
    log.clear()
    m = ResourceModule()
    m.add_resource(SyncClose("a", fail=True))
    m.add_resource(SyncClose("b"))
    m.add_resource(SyncClose("c", fail=True))

    async def main() -> None:
        await m.initialize()
        with pytest.raises(ResourceReleaseError) as info:
            await m.cleanup()
        group = info.value
        assert isinstance(group, ExceptionGroup)
        assert [str(e) for e in group.exceptions] == ["c stuck", "a stuck"]
        assert "2 resource(s) failed" in str(group)
        assert "while releasing SyncClose@" in group.exceptions[0].__notes__[0]

    run(main())
    assert log == ["c", "b", "a"]
    assert m.state is ModuleState.FAILED
    assert m.resources == []


def test_refuses_what_it_cannot_release() -> None:
    m = ResourceModule()
    with pytest.raises(TypeError, match="no close"):
        m.add_resource(object())
    with pytest.raises(TypeError, match="close must be callable"):
        m.add_resource(object(), close="nope")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not a context manager"):
        run(m.enter_resource(object()))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not callable"):
        m.add_callback(5)  # type: ignore[arg-type]
    assert m.resources == []


def test_usage_counts() -> None:
    m = ResourceModule()
    conn = m.add_resource(SyncClose("conn"))
    with m.use(conn):
        with m.use(conn):
            assert m.usage(conn).active == 2
        assert m.usage(conn).active == 1

    async def main() -> None:
        async with m.ause(conn):
            assert m.usage(conn).active == 1

    run(main())
    usage = m.usage(conn)
    assert (usage.uses, usage.active) == (3, 0)
    assert m.usage(object()).uses == 0


def test_cache_is_a_fifo_cache_of_the_given_size_and_cleared() -> None:
    m = ResourceModule(cache_size=2)
    assert isinstance(m.cache, FIFOCache)
    assert m.cache.maxsize == 2
    m.cache["a"] = 1

    async def main() -> None:
        await m.initialize()
        await m.cleanup()

    run(main())
    assert len(m.cache) == 0
    with pytest.raises(ValueError, match="maxsize"):
        ResourceModule(cache_size=0)


def test_subclass_cleanup_with_super() -> None:
    log.clear()

    class Pool(ResourceModule):
        async def initialize(self) -> None:
            self.add_resource(SyncClose("conn"))

        async def cleanup(self) -> None:
            log.append("pool cleanup")
            await super().cleanup()

    m = Pool()

    async def main() -> None:
        async with m:
            pass

    run(main())
    assert log == ["pool cleanup", "conn"]


def test_capability_modules_compose_their_cleanups() -> None:
    from pepperpy_core.module import CachedModule, StateModule

    log.clear()

    class All(StateModule[int], CachedModule, ResourceModule):
        pass

    m = All(initial=0)

    async def main() -> None:
        await m.initialize()
        m.add_resource(SyncClose("r"))
        m.cache["k"] = 1
        await m.set_state(5)
        await m.cleanup()
        assert await m.get_state() == 0

    run(main())
    assert log == ["r"]
    assert len(m.cache) == 0
    assert m.state is ModuleState.CLOSED


def test_usage_follows_the_object_not_its_address() -> None:
    module = ResourceModule()

    class Conn:
        pass

    seen: set[int] = set()
    for _ in range(200):  # addresses get reused as objects come and go
        conn = Conn()
        reused = id(conn) in seen
        assert module.usage(conn).uses == 0, "a new object reports another's uses"
        with module.use(conn):
            pass
        assert module.usage(conn).uses == 1
        seen.add(id(conn))
        del conn
        if reused:
            break
    else:
        pytest.fail("no address was reused: the test proved nothing")


def test_usage_of_objects_without_weak_references() -> None:
    module = ResourceModule()
    key = ("pool", 1)  # a tuple: no weak reference
    with module.use(key), module.use(key):
        assert module.usage(key).active == 2
    assert module.usage(key).uses == 2
    assert module.usage(("pool", 2)).uses == 0
