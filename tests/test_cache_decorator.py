"""cache.cached: a function's results in any cache; async misses of one key
share one call (single flight), stored before its callers wake."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import threading
from collections.abc import Awaitable, Callable, Hashable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Generic, TypeVar, overload

import pytest

from pepperpy_core.cache import FIFOCache, LocalCache, cached
from pepperpy_core.errors import CacheUnavailableError, CircularLoadError
from pepperpy_core.module import CachedModule, ModuleConfig
from pepperpy_core.protocols import AsyncCacheProtocol, CacheProtocol
from pepperpy_core.redis import RedisCache
from pepperpy_core.tier import TieredCache
from tests.asyncutil import run, until
from tests.memstore import MemoryStore, Shared
from tests.servers import RedisServer

# The caches under test are FIFOCaches of the active backend: run on both.
pytestmark = pytest.mark.backend

K = TypeVar("K")
V = TypeVar("V")
D = TypeVar("D")
_NO_DEFAULT: Any = object()


class DictCache(Generic[K, V]):
    """A CacheProtocol on a plain dict (none of the library's caches)."""

    def __init__(self) -> None:
        self.data: dict[K, V] = {}

    @property
    def maxsize(self) -> int:
        return 1 << 30

    @overload
    def get(self, key: K, default: None = None, /) -> V | None: ...
    @overload
    def get(self, key: K, default: V | D, /) -> V | D: ...
    def get(self, key: K, default: object = None, /) -> object:
        return self.data.get(key, default)

    def __getitem__(self, key: K, /) -> V:
        return self.data[key]

    def set(self, key: K, value: V) -> None:
        self.data[key] = value

    def __setitem__(self, key: K, value: V, /) -> None:
        self.data[key] = value

    def __contains__(self, key: object, /) -> bool:
        return key in self.data

    def __len__(self) -> int:
        return len(self.data)

    @overload
    def pop(self, key: K) -> V: ...
    @overload
    def pop(self, key: K, default: V | D) -> V | D: ...
    def pop(self, key: K, default: object = _NO_DEFAULT) -> object:
        if default is _NO_DEFAULT:
            return self.data.pop(key)
        return self.data.pop(key, default)

    def clear(self) -> None:
        self.data.clear()

    def keys(self) -> list[K]:
        return list(self.data)

    def values(self) -> list[V]:
        return list(self.data.values())

    def items(self) -> list[tuple[K, V]]:
        return list(self.data.items())

    def get_many(self, keys: Iterable[K]) -> dict[K, V]:
        return {k: self.data[k] for k in keys if k in self.data}

    def set_many(self, items: Mapping[K, V] | Iterable[tuple[K, V]]) -> None:
        self.data.update(items)


_is_a_cache: CacheProtocol[Hashable, int] = DictCache[Hashable, int]()


def _tier(shared: Shared[Any]) -> TieredCache[Any]:
    return TieredCache(FIFOCache[str, Any](100), MemoryStore(shared))


def _str_key(k: int) -> str:
    return f"k{k}"


class Kind:
    """A kind of cache under test: how to make one, the key= it needs, how to read it."""

    def __init__(self, name: str, make: Callable[[], Any], key: Callable[[int], Hashable] | None):
        self.name, self.make, self.key = name, make, key

    def stored(self, cache: Any, k: int) -> Any:
        """What ``cache`` holds for the call ``f(k)`` (None if nothing)."""
        key = (k,) if self.key is None else self.key(k)
        if isinstance(cache, TieredCache):
            return cache.remote.shared.values.get(key)  # type: ignore[attr-defined]
        if isinstance(cache, LocalCache):
            return cache.peek(key)
        return cache.get(key)

    def __repr__(self) -> str:
        return self.name


KINDS = [
    Kind("FIFOCache", lambda: FIFOCache[Hashable, Any](100), None),
    Kind("dict-backed CacheProtocol", DictCache[Hashable, Any], None),
    Kind("LocalCache (async)", lambda: LocalCache[Hashable, Any](100), None),
    Kind("TieredCache", lambda: _tier(Shared()), _str_key),
    Kind("FIFOCache, key=", lambda: FIFOCache[Hashable, Any](100), _str_key),
]


async def _close(cache: object) -> None:
    if isinstance(cache, TieredCache):
        await cache.aclose()


def _decorate(kind: Kind, cache: Any, fn: Callable[[int], Any]) -> Any:
    decorator = cached(cache) if kind.key is None else cached(cache, key=kind.key)
    return decorator(fn)


# --- sync functions ------------------------------------------------------------------------


def test_a_sync_function_is_called_once_per_key_and_its_result_kept() -> None:
    cache = FIFOCache[Hashable, int](100)
    calls: list[tuple[int, int]] = []

    @cached(cache)
    def add(a: int, b: int = 0) -> int:
        calls.append((a, b))
        return a + b

    assert add(1, 2) == 3
    assert add(1, 2) == 3
    assert calls == [(1, 2)]
    assert cache.items() == [((1, 2), 3)]
    assert cache.stats().hits == 1


def test_the_default_key_is_cachetools_hashkey() -> None:
    cache = FIFOCache[Any, int](100)
    calls = 0

    @cached(cache)
    def f(a: int, b: int = 0, c: int = 0) -> int:
        nonlocal calls
        calls += 1
        return a + b + c

    assert f(1) == f(a=1) == 1  # positional and keyword: two keys
    assert calls == 2
    assert f(1, b=2, c=3) == f(1, c=3, b=2) == 6  # keyword order does not matter
    assert calls == 3
    assert f(1, 2) == 3  # nor is f(1, b=2) the same key as f(1, 2)
    assert calls == 4
    keys = cache.keys()
    assert keys[0] == (1,)
    assert keys[2][0] == 1
    assert keys[2][2:] == ("b", 2, "c", 3)
    assert repr(keys[2][1]) == "<keywords>"


@pytest.mark.parametrize(
    "kind", [k for k in KINDS if "async" not in k.name and "Tier" not in k.name]
)
def test_sync_functions_on_every_sync_cache(kind: Kind) -> None:
    cache = kind.make()
    calls: list[int] = []

    def square(k: int) -> int:
        calls.append(k)
        return k * k

    f = _decorate(kind, cache, square)
    assert [f(k) for k in (1, 2, 1, 2, 3)] == [1, 4, 1, 4, 9]
    assert calls == [1, 2, 3]
    assert kind.stored(cache, 2) == 4


def test_a_sync_error_is_not_cached() -> None:
    cache = FIFOCache[Hashable, int](100)
    outcomes: Iterator[ValueError | int] = iter([ValueError("first call fails"), 7])

    @cached(cache)
    def f(k: int) -> int:
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    with pytest.raises(ValueError, match="first call fails"):
        f(1)
    assert len(cache) == 0
    assert f(1) == 7
    assert f(1) == 7


# --- async functions: single flight ------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS, ids=repr)
def test_a_thousand_concurrent_callers_over_five_keys_call_once_per_key(kind: Kind) -> None:
    cache = kind.make()
    calls: dict[int, int] = {}
    release = asyncio.Event()

    async def load(k: int) -> str:
        calls[k] = calls.get(k, 0) + 1
        await release.wait()
        return f"value {k}"

    f = _decorate(kind, cache, load)

    async def caller(k: int) -> str:
        value: str = await f(k)
        # Stored before any caller woke: the first one to wake finds it too.
        assert kind.stored(cache, k) == value
        return value

    async def main() -> list[str]:
        everyone = asyncio.gather(*(caller(i % 5) for i in range(1000)))
        await until(lambda: len(calls) == 5)
        release.set()
        got = await everyone
        await _close(cache)
        return got

    got = run(main(), timeout=60)
    assert got == [f"value {i % 5}" for i in range(1000)]
    assert calls == dict.fromkeys(range(5), 1)


@pytest.mark.parametrize("kind", KINDS, ids=repr)
def test_a_caller_that_comes_as_the_call_ends_finds_the_value(kind: Kind) -> None:
    """The value is stored before the flight ends: a caller that runs between
    its end and its callers' waking (a task the call started last, in a
    context of its own) does not call again."""
    cache = kind.make()
    calls = 0
    late: list[asyncio.Task[str]] = []

    async def load(k: int) -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            task = asyncio.get_running_loop().create_task(f(k), context=contextvars.Context())
            late.append(task)
        return "v"

    f = _decorate(kind, cache, load)

    async def main() -> None:
        assert await f(1) == "v"
        assert await late[0] == "v"
        await _close(cache)

    run(main(), timeout=60)
    assert calls == 1


@pytest.mark.parametrize("kind", KINDS, ids=repr)
def test_a_hit_never_waits_for_the_flight_of_its_key(kind: Kind) -> None:
    cache = kind.make()
    release = asyncio.Event()

    started = asyncio.Event()

    async def load(k: int) -> str:
        started.set()
        await release.wait()
        return "loaded"

    f = _decorate(kind, cache, load)
    key = (1,) if kind.key is None else kind.key(1)

    async def main() -> None:
        flying = asyncio.ensure_future(f(1))
        await started.wait()  # the flight has begun; its call waits
        if inspect.iscoroutinefunction(cache.set):
            await cache.set(key, "stored meanwhile")
        else:
            cache[key] = "stored meanwhile"
        assert await f(1) == "stored meanwhile"  # the flight still waits
        assert not flying.done()
        release.set()
        assert await flying == "loaded"
        await _close(cache)

    run(main(), timeout=60)


@pytest.mark.parametrize("kind", KINDS, ids=repr)
def test_an_error_reaches_that_flights_callers_and_is_not_cached(kind: Kind) -> None:
    cache = kind.make()
    calls = 0
    release = asyncio.Event()
    error = ConnectionError("the backend is down")

    async def load(k: int) -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            await release.wait()
            raise error
        return "fine"

    f = _decorate(kind, cache, load)

    async def main() -> None:
        first = asyncio.gather(*(f(1) for _ in range(10)), return_exceptions=True)
        await until(lambda: calls == 1)
        release.set()
        outcomes = await first
        assert all(o is error for o in outcomes)
        assert kind.stored(cache, 1) is None
        assert await f(1) == "fine"  # the next call calls again
        assert kind.stored(cache, 1) == "fine"
        await _close(cache)

    run(main(), timeout=60)
    assert calls == 2


@pytest.mark.parametrize("kind", KINDS, ids=repr)
def test_a_cancelled_caller_leaves_the_call_to_the_others(kind: Kind) -> None:
    cache = kind.make()
    calls = 0
    release = asyncio.Event()

    async def load(k: int) -> str:
        nonlocal calls
        calls += 1
        await release.wait()
        return "v"

    f = _decorate(kind, cache, load)

    async def main() -> None:
        first = asyncio.ensure_future(f(1))
        second = asyncio.ensure_future(f(1))
        await until(lambda: calls == 1)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        release.set()
        assert await second == "v"
        assert kind.stored(cache, 1) == "v"
        await _close(cache)

    run(main(), timeout=60)
    assert calls == 1


@pytest.mark.parametrize("kind", KINDS, ids=repr)
def test_the_last_caller_leaving_cancels_the_call(kind: Kind) -> None:
    cache = kind.make()
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def load(k: int) -> str:
        started.set()
        try:
            await asyncio.Event().wait()  # until cancelled
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "never"

    f = _decorate(kind, cache, load)

    async def main() -> None:
        callers = [asyncio.ensure_future(f(1)) for _ in range(3)]
        await started.wait()
        for c in callers:
            c.cancel()
        await asyncio.gather(*callers, return_exceptions=True)
        await asyncio.wait_for(cancelled.wait(), 60)
        assert kind.stored(cache, 1) is None
        await _close(cache)

    run(main(), timeout=60)


@pytest.mark.parametrize("kind", KINDS, ids=repr)
def test_a_call_that_waits_for_its_own_key_is_an_error_at_once(kind: Kind) -> None:
    cache = kind.make()

    async def load(k: int) -> str:
        return f"{await f(k)}!"  # would wait for itself for ever

    f = _decorate(kind, cache, load)

    async def main() -> None:
        with pytest.raises(CircularLoadError, match=r"would wait for itself: .*cached .*\.load\["):
            await f(1)
        assert kind.stored(cache, 1) is None
        await _close(cache)

    run(main(), timeout=60)


def test_a_circle_through_two_functions_is_an_error_and_recursion_on_other_keys_is_not() -> None:
    cache = FIFOCache[Hashable, int](100)

    @cached(cache)
    async def a(n: int) -> int:
        return await b(n)

    @cached(cache, key=lambda n: ("b", n))
    async def b(n: int) -> int:
        return await a(n)

    @cached(cache, key=lambda n: ("fib", n))
    async def fib(n: int) -> int:
        return n if n < 2 else await fib(n - 1) + await fib(n - 2)

    async def main() -> None:
        with pytest.raises(
            CircularLoadError,
            match=r"\.b\[\('b', 1\)\] -> cached .*\.a\[\(1,\)\] -> cached .*\.b\[",
        ):
            await a(1)
        assert await fib(60) == 1548008755920

    run(main(), timeout=60)


def test_a_circle_through_a_cached_modules_load_is_an_error() -> None:
    module = CachedModule(ModuleConfig(name="reports"))

    @cached(FIFOCache[Hashable, str](10))
    async def report(k: int) -> str:
        return await module.get_or_load(k, lambda: report(k))

    with pytest.raises(CircularLoadError, match=r"reports\[1\] -> cached .*report\[\(1,\)\]"):
        run(report(1), timeout=60)


class _SlowCache(LocalCache[Hashable, Any]):
    """A local cache whose reads take a while: each waits for ``gate``."""

    def __init__(self) -> None:
        super().__init__(100)
        self.gate = asyncio.Event()
        self.reading = 0

    @overload
    async def get(self, key: Hashable, default: None = None, /) -> Any: ...
    @overload
    async def get(self, key: Hashable, default: Any, /) -> Any: ...
    async def get(self, key: Hashable, default: Any = None, /) -> Any:
        self.reading += 1
        await self.gate.wait()
        return self.peek(key, default)


def test_a_miss_read_before_the_value_was_stored_does_not_call_again() -> None:
    """A caller whose read began before the flight stored the value, and
    ends after it, is answered by what was stored (the flight reads again)."""
    cache = _SlowCache()
    calls = 0

    @cached(cache)
    async def f(k: int) -> str:
        nonlocal calls
        calls += 1
        return "v"

    async def main() -> None:
        cache.gate.set()
        assert await f(1) == "v"
        cache.clear()
        cache.gate.clear()
        late = asyncio.ensure_future(f(1))  # its read waits at the gate
        await until(lambda: cache.reading == 3)  # (f(1)'s read, its flight's, late's)
        cache.put((1,), "stored meanwhile")
        cache.gate.set()
        assert await late == "stored meanwhile"

    run(main(), timeout=60)
    assert calls == 1


class _Unreachable:
    """An async cache whose server cannot be reached."""

    async def get(self, key: Any, default: Any = None, /) -> Any:
        raise CacheUnavailableError("the cache server did not answer")

    async def set(self, key: Any, value: Any, *, ttl: float | None = None) -> None:
        raise CacheUnavailableError("the cache server did not answer")


def test_an_unreachable_cache_is_a_miss_and_the_function_answers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls = 0

    @cached(_Unreachable())
    async def f(k: int) -> int:
        nonlocal calls
        calls += 1
        return k * 10

    assert run(f(1)) == 10
    assert run(f(1)) == 10
    assert calls == 2
    assert "did not cache (1,)" in caplog.text


def test_a_tiered_cache_loads_once_across_processes() -> None:
    """Two tiers on one store (two processes): the function runs once per key
    across both, as the tier's own ``load`` does."""
    shared: Shared[Any] = Shared()
    here, there = _tier(shared), _tier(shared)
    calls: dict[str, int] = {}
    release = asyncio.Event()

    async def load(k: int) -> str:
        calls[f"k{k}"] = calls.get(f"k{k}", 0) + 1
        await release.wait()
        return f"value {k}"

    f_here = cached(here, key=_str_key)(load)
    f_there = cached(there, key=_str_key)(load)

    async def main() -> list[str]:
        everyone = asyncio.gather(
            *(f_here(i % 3) for i in range(300)), *(f_there(i % 3) for i in range(300))
        )
        await until(lambda: len(calls) == 3)
        release.set()
        got = await everyone
        await here.aclose()
        await there.aclose()
        return got

    got = run(main(), timeout=60)
    assert got == [f"value {i % 3}" for i in range(300)] * 2
    assert calls == {"k0": 1, "k1": 1, "k2": 1}
    assert shared.values == {"k0": "value 0", "k1": "value 1", "k2": "value 2"}


def test_a_tiered_cache_on_redis_loads_once_across_processes(tmp_path: Path) -> None:
    """As above, with a real redis-server: two tiers, each with its own client."""
    server = RedisServer(tmp_path)
    server.start()
    calls: dict[str, int] = {}

    async def load(k: int) -> str:
        calls[f"k{k}"] = calls.get(f"k{k}", 0) + 1
        return f"value {k}"

    async def main() -> list[str]:
        tiers: list[TieredCache[str]] = [
            TieredCache(FIFOCache[str, str](100), RedisCache[str](url=server.url, prefix="c:"))
            for _ in range(2)
        ]
        loaders = [cached(tier, key=_str_key)(load) for tier in tiers]
        try:
            return list(await asyncio.gather(*(loaders[i % 2](i % 3) for i in range(600))))
        finally:
            for tier in tiers:
                await tier.aclose()
                await tier.remote.aclose()  # type: ignore[attr-defined]

    try:
        got = run(main(), timeout=60)
    finally:
        server.stop()
    assert got == [f"value {i % 3}" for i in range(600)]
    assert calls == {"k0": 1, "k1": 1, "k2": 1}


def test_each_event_loop_has_flights_of_its_own() -> None:
    """Two threads, each running a loop, miss one key at once: each loop calls
    once, and neither waits for a task of the other's loop."""
    cache = FIFOCache[Hashable, str](100)
    inside = [threading.Event(), threading.Event()]
    both_inside = threading.Event()
    calls = 0
    lock = threading.Lock()

    @cached(cache)
    async def f(k: int) -> str:
        nonlocal calls
        with lock:
            calls += 1
            inside[calls - 1].set()
        await asyncio.to_thread(both_inside.wait, 60)
        return "v"

    results: list[str] = []

    def in_a_thread() -> None:
        results.append(run(f(1), timeout=60))

    first = threading.Thread(target=in_a_thread)
    first.start()
    assert inside[0].wait(60)
    second = threading.Thread(target=in_a_thread)
    second.start()
    entered = inside[1].wait(60)  # never, if the second loop joined the first's flight
    both_inside.set()
    first.join(60)
    second.join(60)
    assert entered
    assert results == ["v", "v"]
    assert calls == 2


# --- methods, key=, and what the wrapper is ------------------------------------------------


def test_methods_cache_per_instance() -> None:
    cache = FIFOCache[Hashable, int](100)
    calls: list[tuple[str, int]] = []

    class Repo:
        def __init__(self, name: str) -> None:
            self.name = name

        @cached(cache)
        def size(self, k: int) -> int:
            calls.append((self.name, k))
            return len(self.name) * k

        @cached(cache, key=lambda self, k: (self.name, "async", k))
        async def asize(self, k: int) -> int:
            calls.append((self.name, -k))
            return len(self.name) * k

    a, b = Repo("a"), Repo("bb")
    assert [a.size(2), b.size(2), a.size(2), b.size(2)] == [2, 4, 2, 4]
    assert run(a.asize(3)) == 3
    assert run(a.asize(3)) == 3
    assert calls == [("a", 2), ("bb", 2), ("a", -3)]
    assert (a, 2) in cache
    assert ("a", "async", 3) in cache


def test_the_wrapper_looks_like_the_function() -> None:
    cache = FIFOCache[Hashable, int](100)

    async def fetch(k: int) -> int:
        """Fetch k."""
        return k

    def compute(k: int) -> int:
        """Compute k."""
        return k

    for fn, is_async in ((fetch, True), (compute, False)):
        wrapped: Callable[..., Any] = cached(cache)(fn)
        assert wrapped.__wrapped__ is fn  # type: ignore[attr-defined]
        assert wrapped.__name__ == fn.__name__
        assert wrapped.__doc__ == fn.__doc__
        assert inspect.signature(wrapped) == inspect.signature(fn)
        assert inspect.iscoroutinefunction(wrapped) is is_async


def test_an_object_with_an_async_call_is_cached_as_async() -> None:
    class Fetch:
        calls = 0

        async def __call__(self, k: int) -> int:
            self.calls += 1
            return k

    fetch = Fetch()
    wrapped = cached(LocalCache[Hashable, int](10))(fetch)
    assert inspect.iscoroutinefunction(wrapped)
    assert run(wrapped(1)) == 1
    assert run(wrapped(1)) == 1
    assert fetch.calls == 1


def test_a_partial_of_an_async_function_is_cached_as_async() -> None:
    async def scale(factor: int, k: int) -> int:
        return factor * k

    wrapped = cached(LocalCache[Hashable, int](10))(functools.partial(scale, 3))
    assert run(wrapped(2)) == 6


# --- bad inputs: a clear error, nothing changed -------------------------------------------


def test_bad_caches_are_refused_at_once() -> None:
    def fn(k: int) -> int:
        return k

    with pytest.raises(TypeError, match=r"not the function .*fn: write @cached\(FIFOCache"):
        cached(fn)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="not the class FIFOCache: make one"):
        cached(FIFOCache)  # type: ignore[call-overload]
    for not_a_cache in (object(), 42, [], "cache", frozenset()):
        with pytest.raises(TypeError, match="cached needs a cache: a CacheProtocol"):
            cached(not_a_cache)  # type: ignore[call-overload]

    class HalfAsync:  # an async get with a sync set: neither kind of cache
        async def get(self, key: Any, default: Any = None) -> Any: ...
        def set(self, key: Any, value: Any) -> None: ...
        def __setitem__(self, key: Any, value: Any) -> None: ...

    with pytest.raises(TypeError, match="cached needs a cache"):
        cached(HalfAsync())


def test_bad_keys_and_functions_are_refused_at_once() -> None:
    cache = FIFOCache[Hashable, int](10)
    with pytest.raises(TypeError, match="key must be a function of the arguments, not 'k'"):
        cached(cache, key="k")  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="can only decorate a function, not 42"):
        cached(cache)(42)  # type: ignore[call-overload]

    def compute(k: int) -> int:
        return k

    with pytest.raises(TypeError, match=r"compute is not async, and LocalCache is read with await"):
        cached(LocalCache[Hashable, int](10))(compute)  # type: ignore[arg-type]
    assert len(cache) == 0


@pytest.mark.parametrize("kind", KINDS[:3], ids=repr)
def test_an_unhashable_key_is_a_type_error_that_says_so(kind: Kind) -> None:
    cache = kind.make()
    calls = 0

    async def afn(k: Any) -> int:
        nonlocal calls
        calls += 1
        return 1

    def sfn(k: Any) -> int:
        nonlocal calls
        calls += 1
        return 1

    message = r"cache key \(\[1, 2\],\) is unhashable \(unhashable type: 'list'\); pass"
    with pytest.raises(TypeError, match=message):
        run(cached(cache)(afn)([1, 2]))
    if "async" not in kind.name:
        with pytest.raises(TypeError, match=message):
            cached(cache)(sfn)([1, 2])
    with pytest.raises(TypeError, match=r"key \{\} is unhashable"):
        run(cached(cache, key=lambda k: {})(afn)(1))
    assert calls == 0
    assert len(cache) == 0


def test_a_sync_function_that_returns_a_coroutine_is_refused_and_nothing_kept() -> None:
    cache = FIFOCache[Hashable, Any](10)

    async def later() -> int:
        return 1

    def not_async(k: int) -> Awaitable[int]:
        return later()

    wrapped = cached(cache)(not_async)
    with pytest.raises(TypeError, match="not_async returned a coroutine, which can be awaited"):
        wrapped(1)
    assert len(cache) == 0


def test_an_async_cache_typed_by_the_protocol_is_accepted() -> None:
    local: AsyncCacheProtocol[Hashable, int] = LocalCache[Hashable, int](10)

    @cached(local)
    async def f(k: int) -> int:
        return k + 1

    async def main() -> None:
        assert await f(1) == 2
        assert await local.get((1,)) == 2

    run(main())
