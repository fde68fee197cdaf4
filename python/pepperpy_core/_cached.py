"""``cached(cache, key=...)``: a function's results kept in a cache (see ``cache.py``).

A call makes a key from its arguments and reads the cache; a hit is returned
as it is. A miss of a sync function calls it and stores the result. A miss
of an async function runs in the key's single flight (``_singleflight``):
concurrent callers share one call, whose result is stored before any of
them is answered; a failure stores nothing and reaches that flight's callers;
a call that waits for its own key is CircularLoadError. The flight fills the
cache as ``CachedModule.get_or_load`` does (``_loading``): a cache with an
async ``load`` (a TieredCache) loads through it, once across processes.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import reprlib
from collections.abc import Awaitable, Callable, Coroutine, Hashable
from itertools import chain
from typing import Any, Final, Generic, ParamSpec, Protocol, TypeVar, overload

from pepperpy_core._loading import MISSING, awaited, load_async
from pepperpy_core._singleflight import SingleFlight
from pepperpy_core.errors import CacheUnavailableError

P = ParamSpec("P")
V = TypeVar("V")
K_contra = TypeVar("K_contra", contravariant=True)


class _Keywords:
    """Separates the positional arguments from the keyword ones in a default key."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<keywords>"


_KWARGS: Final = _Keywords()


class _Store(Protocol[K_contra, V]):
    """What ``cached`` uses of a sync cache (every CacheProtocol has it)."""

    def get(self, key: K_contra, default: None, /) -> V | None: ...
    def __setitem__(self, key: K_contra, value: V, /) -> None: ...


class _AsyncStore(Protocol[K_contra, V]):
    """What ``cached`` uses of an async cache (every AsyncCacheProtocol has it)."""

    async def get(self, key: K_contra, default: None, /) -> V | None: ...
    async def set(self, key: K_contra, value: V, *, ttl: float | None = None) -> None: ...


class _DecorateAsync(Protocol[V]):
    """Caches an async function in an async cache (with the default key)."""

    def __call__(
        self, fn: Callable[P, Coroutine[Any, Any, V]], /
    ) -> Callable[P, Coroutine[Any, Any, V]]: ...


class _Decorate(Protocol[V]):
    """Caches a sync or async function in a sync cache (with the default key)."""

    @overload
    def __call__(
        self, fn: Callable[P, Coroutine[Any, Any, V]], /
    ) -> Callable[P, Coroutine[Any, Any, V]]: ...
    @overload
    def __call__(self, fn: Callable[P, V], /) -> Callable[P, V]: ...


class _DecorateKeyedAsync(Protocol[P, V]):
    """Caches an async function taking what the key function takes, in an async cache."""

    def __call__(
        self, fn: Callable[P, Coroutine[Any, Any, V]], /
    ) -> Callable[P, Coroutine[Any, Any, V]]: ...


class _DecorateKeyed(Protocol[P, V]):
    """Caches a function taking what the key function takes, in a sync cache."""

    @overload
    def __call__(
        self, fn: Callable[P, Coroutine[Any, Any, V]], /
    ) -> Callable[P, Coroutine[Any, Any, V]]: ...
    @overload
    def __call__(self, fn: Callable[P, V], /) -> Callable[P, V]: ...


@overload
def cached(cache: _AsyncStore[tuple[Any, ...], V], /) -> _DecorateAsync[V]: ...
@overload
def cached(cache: _Store[tuple[Any, ...], V], /) -> _Decorate[V]: ...
@overload
def cached(
    cache: _AsyncStore[K_contra, V], /, *, key: Callable[P, K_contra]
) -> _DecorateKeyedAsync[P, V]: ...
@overload
def cached(
    cache: _Store[K_contra, V], /, *, key: Callable[P, K_contra]
) -> _DecorateKeyed[P, V]: ...
def cached(cache: Any, /, *, key: Callable[..., Hashable] | None = None) -> Any:
    """Keep a function's results in ``cache`` (any CacheProtocol, or an
    AsyncCacheProtocol for async functions), under ``key(*args, **kwargs)``
    (default: the arguments, cachetools' ``hashkey``); async misses of one
    key share one call. TypeError at once for a bad cache or key."""
    is_async_cache = _check_cache(cache)
    if key is not None and not callable(key):
        raise TypeError(f"cached: key must be a function of the arguments, not {key!r}")
    make_key = _hashkey if key is None else key

    def decorate(fn: Callable[..., Any], /) -> Callable[..., Any]:
        if not callable(fn):
            raise TypeError(f"cached: can only decorate a function, not {fn!r}")
        if _is_async(fn):
            return _cache_async(fn, cache, is_async_cache, make_key)
        if is_async_cache:
            raise TypeError(
                f"cached: {_name(fn)} is not async, and {type(cache).__name__} is read "
                "with await: decorate an async def, or use a sync cache (a FIFOCache)"
            )
        return _cache_sync(fn, cache, make_key)

    return decorate


def _check_cache(cache: object) -> bool:
    """Whether ``cache`` is read with ``await``; TypeError if it is no cache."""
    if isinstance(cache, type):
        raise TypeError(f"cached needs a cache, not the class {cache.__name__}: make one")
    get = getattr(cache, "get", None)
    if awaited(cache) and inspect.iscoroutinefunction(get):
        return True
    if (
        callable(get)
        and not inspect.iscoroutinefunction(get)
        and not awaited(cache)
        and callable(getattr(cache, "__setitem__", None))
    ):
        return False
    if callable(cache) and get is None:
        raise TypeError(
            f"cached takes a cache, not the function {_name(cache)}: "
            "write @cached(FIFOCache(1000)), not @cached"
        )
    raise TypeError(
        "cached needs a cache: a CacheProtocol (get and []=, as a FIFOCache) or an "
        f"AsyncCacheProtocol (async get and set), not {type(cache).__name__}"
    )


def _is_async(fn: Callable[..., Any]) -> bool:
    """Whether calling ``fn`` makes a coroutine (an async def, or an object
    whose ``__call__`` is one)."""
    if inspect.iscoroutinefunction(fn):
        return True
    call = inspect.getattr_static(type(fn), "__call__", None)
    return not isinstance(fn, type) and inspect.iscoroutinefunction(call)


def _name(fn: object) -> str:
    name = getattr(fn, "__qualname__", None)
    return name if isinstance(name, str) else repr(fn)


def _hashkey(*args: Any, **kwargs: Any) -> tuple[Any, ...]:
    """cachetools' ``hashkey``: the positional arguments, then a marker and the
    keyword arguments sorted by name (``f(1)`` and ``f(x=1)`` differ)."""
    if not kwargs:
        return args
    return (*args, _KWARGS, *chain.from_iterable(sorted(kwargs.items())))


def _unhashable(fn: Callable[..., Any], key: object) -> None:
    """A TypeError that says so if ``key`` is unhashable (else nothing)."""
    try:
        hash(key)
    except TypeError as error:
        raise TypeError(
            f"cached: {_name(fn)}'s cache key {reprlib.repr(key)} is unhashable ({error}); "
            "pass hashable arguments, or key= a function that makes a hashable key"
        ) from error


def _cache_sync(
    fn: Callable[..., Any], cache: Any, make_key: Callable[..., Hashable]
) -> Callable[..., Any]:
    """Get, else call and set (no single flight: concurrent threads that miss
    one key may each call ``fn``, and the last one's result stays)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        key = make_key(*args, **kwargs)
        try:
            found = cache.get(key, MISSING)
        except TypeError:
            _unhashable(fn, key)
            raise
        if found is not MISSING:
            return found
        value = fn(*args, **kwargs)
        if inspect.iscoroutine(value):
            value.close()  # never awaited: no "was never awaited" warning
            raise TypeError(
                f"cached: {_name(fn)} returned a coroutine, which can be awaited only "
                "once: make it an async def, so that its result is cached"
            )
        cache[key] = value
        return value

    return wrapper


def _cache_async(
    fn: Callable[..., Awaitable[Any]],
    cache: Any,
    is_async_cache: bool,
    make_key: Callable[..., Hashable],
) -> Callable[..., Coroutine[Any, Any, Any]]:
    """Get, else one call per key at a time, stored inside its flight."""
    flights: _Flights[Any] = _Flights(f"cached {_name(fn)}")

    async def fill(key: Hashable, call: Callable[[], Awaitable[Any]]) -> Any:
        if is_async_cache:
            return await load_async(cache, key, call, flights, _always)
        value = await call()
        cache[key] = value  # before the flight's callers wake
        return value

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        key = make_key(*args, **kwargs)
        try:
            found = cache.get(key, MISSING)
            if is_async_cache:
                found = await found
        except TypeError:
            _unhashable(fn, key)
            raise
        except CacheUnavailableError:
            found = MISSING  # the flight tries it again, and says so
        if found is not MISSING:
            return found
        return await flights.run(key, lambda: fill(key, lambda: fn(*args, **kwargs)))

    return wrapper


def _always() -> bool:
    return True


class _Flights(Generic[V]):
    """A SingleFlight per event loop: a load is a task of one loop, and a
    caller on another loop (another thread) cannot wait for it."""

    __slots__ = ("_by_loop", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self._by_loop: dict[asyncio.AbstractEventLoop, SingleFlight[V]] = {}

    async def run(self, key: Hashable, load: Callable[[], Awaitable[V]]) -> V:
        """``SingleFlight.run`` on the running loop's flights."""
        loop = asyncio.get_running_loop()
        flights = self._by_loop.get(loop)
        if flights is None:
            for old in [other for other in list(self._by_loop) if other.is_closed()]:
                self._by_loop.pop(old, None)  # a loop that ended with a load cancelled
            flights = self._by_loop[loop] = SingleFlight(self)
        try:
            return await flights.run(key, load)
        finally:
            if not flights and self._by_loop.get(loop) is flights:
                del self._by_loop[loop]
