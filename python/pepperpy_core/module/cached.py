"""CachedModule: a bounded cache with ``get_or_load(key, loader)``.

The module makes its cache: a FIFOCache of ``maxsize`` entries, or an
S3FIFOCache with ``policy="s3fifo"``, whose entries expire after ``ttl``
seconds from a write and ``tti`` seconds from their last use if given (see
the README's "Which cache" for when to choose which).

Concurrent callers for one missing key share one load: the loader runs once,
in its own task, and every caller gets its value. A loader that fails raises
its error in every waiting caller and caches nothing. A cancelled caller does
not cancel the load for the others. A loader that would wait for its own
load (directly, or through other loads) gets CircularLoadError at once (see
``_singleflight``). ``cache_stats()`` counts hits, misses,
loads and failed loads. The cache the module makes counts its own reads:
its hits and misses are the module's (a direct read of ``module.cache``
counts too), so a hit is counted once, in the cache. Any other cache (passed
in, or put in place of ``self.cache``) has its ``get_or_load`` reads counted
by the module. ``cleanup()`` cancels the loads still running (their
callers get a LifecycleError), waits for them, and clears the cache; a load
never writes into the cache after the cleanup that outlived it.

The spec's DataModule replaces ``self.cache`` with a dict; ``get_or_load``
works with any mapping whose ``[]`` raises KeyError for a missing key.

``CachedModule(cache=...)`` also takes an async cache (whose ``set`` is a
coroutine: a LocalCache, a RedisCache, a TieredCache): a miss is read from
it, and a loaded value written to it, with ``await``. A TieredCache loads
through its own ``load``, single-flight across processes too. A remote cache
that cannot be reached is a miss, and its writes are skipped: a caller that
the loader can answer never sees the outage. ``hits`` counts the answers
read from ``cache[key]`` without waiting (for a TieredCache, its local
copies); everything else is a miss.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Hashable, MutableMapping
from dataclasses import dataclass
from typing import Any, TypeVar

from pepperpy_core._loading import awaited, load_async
from pepperpy_core._singleflight import SingleFlight
from pepperpy_core.cache import FIFOCache, S3FIFOCache
from pepperpy_core.module._shared_cache import Policy, make_cache, want_cache
from pepperpy_core.module.base import BaseModule
from pepperpy_core.protocols import AsyncCacheProtocol, CacheProtocol

V = TypeVar("V")

#: What ``cache=`` takes: a FIFOCache or any cache with its methods, an async
#: cache (LocalCache, RedisCache, TieredCache), or a mapping (the spec's dict).
AnyCache = CacheProtocol[Any, Any] | AsyncCacheProtocol[Any, Any] | MutableMapping[Any, Any]


@dataclass(frozen=True)
class LoadStats:
    """get_or_load counters: hits, misses, loads run and loads that failed."""

    hits: int
    misses: int
    loads: int
    failures: int


class CachedModule(BaseModule):
    """A module with a bounded cache and single-flight loading.

    ``maxsize`` sizes the cache (1000 by default), ``policy`` chooses it
    ("fifo", the default: a FIFOCache; "s3fifo": an S3FIFOCache) and
    ``ttl``/``tti`` make its entries expire (seconds after a write / after
    their last use); or ``cache=`` passes a ready one (beside any of these:
    a TypeError). A module that is also a ResourceModule has one ``cache``,
    sized by ``maxsize`` or ``cache_size`` (giving both, unequal, is a TypeError).
    """

    _pepperpy_capability = "CachedModule"

    def __init__(
        self,
        config: Any = None,
        *,
        maxsize: int | None = None,
        cache: AnyCache | None = None,
        policy: Policy | None = None,
        ttl: float | None = None,
        tti: float | None = None,
        **kwargs: Any,
    ) -> None:
        # Before super().__init__(): see _shared_cache.
        want_cache(self, "maxsize", maxsize, cache, policy=policy, ttl=ttl, tti=tti)
        super().__init__(config, **kwargs)
        # The cache whose own stats count get_or_load's hits and misses: the
        # cache made for this module (None: the module counts them itself).
        self._counted: FIFOCache[Any, Any] | S3FIFOCache[Any, Any] | None = make_cache(self)
        self.cache: Any
        self._loading: SingleFlight[Any] = SingleFlight(self)
        self._generation = 0  # moves on at each cleanup; older loads write nothing
        self._hits = self._misses = self._loads = self._failures = 0

    async def get_or_load(self, key: Hashable, loader: Callable[[], Awaitable[V]]) -> V:
        """The cached value of ``key``, or the value ``loader()`` produces, which
        is then cached; concurrent calls for one key share one load. Typed
        as what ``loader`` returns: the cache holds what the loader made."""
        cache = self.cache
        try:
            value: V = cache[key]  # (what a loader of this key stored)
        except KeyError:
            return await self._load(key, loader)
        except TypeError:
            if hasattr(type(cache), "__getitem__"):
                raise  # an unhashable key, say
            return await self._load(key, loader)  # a cache read only with await
        if cache is not self._counted:
            self._hits += 1
        return value

    async def _load(self, key: Hashable, loader: Callable[[], Awaitable[V]]) -> V:
        if self.cache is not self._counted:
            self._misses += 1
        if key not in self._loading:
            self._loads += 1
        generation = self._generation
        loaded: V = await self._loading.run(key, lambda: self._run(key, loader, generation))
        return loaded

    async def _run(self, key: Hashable, loader: Callable[[], Awaitable[V]], generation: int) -> V:
        cache = self.cache
        try:
            if awaited(cache):
                return await load_async(
                    cache, key, loader, self, lambda: generation == self._generation
                )
            value = await loader()
        except BaseException:
            self._failures += 1
            raise
        if generation == self._generation:  # no cleanup since the load began
            cache[key] = value
        return value

    def cache_stats(self) -> LoadStats:
        """Hits, misses, loads and failed loads of get_or_load so far (hits and
        misses: with the cache the module made, every read of it)."""
        hits, misses = self._hits, self._misses
        if self._counted is not None:
            counted = self._counted.stats()
            hits += counted.hits
            misses += counted.misses
        return LoadStats(hits, misses, self._loads, self._failures)

    async def cleanup(self) -> None:
        """Cancel the loads still running and wait for them, then clear the cache."""
        self._generation += 1
        loading = self._loading.cancel_all()
        if loading:
            await asyncio.wait(loading)
        clear: Callable[[], object] | None = getattr(self.cache, "clear", None)
        if callable(clear) and not inspect.iscoroutinefunction(clear):
            clear()
        close = getattr(self.cache, "aclose", None)
        if inspect.iscoroutinefunction(close):  # a tier stops listening, say
            await close()
        await super().cleanup()  # capability modules compose as mixins
