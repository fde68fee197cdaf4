"""How a single-flight load fills a cache: shared by ``CachedModule.get_or_load``
and ``cache.cached``, so both treat every kind of cache alike.

A sync cache is written with ``cache[key] = value`` by its caller. An async
cache (one whose ``set`` is a coroutine) is read again inside the load (a
value stored meanwhile is the answer) and written with ``await``; a cache
with an async ``load`` of its own (a TieredCache) loads through it, one load
across processes. A remote cache that cannot be reached is a miss, and its
write is skipped (logged): a caller that the loader can answer never sees
the outage.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Final, Protocol, TypeGuard, TypeVar

from pepperpy_core.errors import CacheUnavailableError
from pepperpy_core.protocols import AsyncCacheProtocol

#: What a read returns for a missing key (no cached value is ever this).
MISSING: Final = object()
_log: Final = logging.getLogger("pepperpy_core.cached")

V = TypeVar("V")


class Named(Protocol):
    """Whoever loads: logs name it (read when logging: a module's name may change)."""

    @property
    def name(self) -> str: ...


class Loading(Protocol):
    """A cache that loads a missing key itself, once across processes (a TieredCache)."""

    async def load(self, key: Any, loader: Callable[[], Awaitable[Any]]) -> Any: ...


def awaited(cache: object) -> TypeGuard[AsyncCacheProtocol[Any, Any]]:
    """Whether ``cache`` is read and written with ``await`` (its ``set`` is a coroutine)."""
    return inspect.iscoroutinefunction(getattr(cache, "set", None))


def loading(cache: AsyncCacheProtocol[Any, Any]) -> TypeGuard[Loading]:
    """Whether ``cache`` loads missing keys itself (has an async ``load``)."""
    return inspect.iscoroutinefunction(getattr(cache, "load", None))


async def load_async(
    cache: AsyncCacheProtocol[Any, Any],
    key: Hashable,
    loader: Callable[[], Awaitable[V]],
    who: Named,
    keep: Callable[[], bool],
) -> V:
    """The value of ``key`` in an async cache, else ``loader()``'s, then stored
    there if ``keep()`` still says so (run inside the key's single flight)."""
    if loading(cache):  # a TieredCache: one load across processes
        loaded: V = await cache.load(key, loader)
        return loaded
    try:
        found = await cache.get(key, MISSING)
    except CacheUnavailableError as error:
        _log.warning("%s: %s loads %r without it", error, who.name, key)
        found = MISSING
    if found is not MISSING:
        stored: V = found
        return stored
    value = await loader()
    if keep():
        try:
            await cache.set(key, value)
        except CacheUnavailableError as error:
            _log.warning("%s: %s did not cache %r", error, who.name, key)
    return value
