"""CachedModule: a FIFOCache with ``get_or_load(key, loader)``.

Concurrent callers for one missing key share one load: the loader runs once,
in its own task, and every caller gets its value. A loader that fails raises
its error in every waiting caller and caches nothing. A cancelled caller does
not cancel the load for the others. ``cache_stats()`` counts hits, misses,
loads and failed loads. The cache is cleared on cleanup.

The spec's DataModule replaces ``self.cache`` with a dict; ``get_or_load``
works with any mapping whose ``[]`` raises KeyError for a missing key.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any

from pepperpy_core.cache import FIFOCache
from pepperpy_core.module.base import BaseModule


@dataclass(frozen=True)
class LoadStats:
    """get_or_load counters: hits, misses, loads run and loads that failed."""

    hits: int
    misses: int
    loads: int
    failures: int


class CachedModule(BaseModule):
    """A module with a bounded cache and single-flight loading."""

    def __init__(self, config: Any = None, *, maxsize: int = 1000) -> None:
        super().__init__(config)
        self.cache: Any = FIFOCache(maxsize)
        self._loading: dict[Hashable, asyncio.Task[Any]] = {}
        self._hits = self._misses = self._loads = self._failures = 0

    def _fields(self) -> None:
        if "_loading" not in self.__dict__:
            self._loading = {}
            self._hits = self._misses = self._loads = self._failures = 0

    async def get_or_load(self, key: Hashable, loader: Callable[[], Awaitable[Any]]) -> Any:
        """The cached value of ``key``, or the value ``loader()`` produces, which
        is then cached; concurrent calls for one key share one load."""
        try:
            value = self.cache[key]
        except KeyError:
            return await self._load(key, loader)
        self._hits += 1
        return value

    async def _load(self, key: Hashable, loader: Callable[[], Awaitable[Any]]) -> Any:
        self._fields()
        self._misses += 1
        task = self._loading.get(key)
        if task is None:
            self._loads += 1
            task = asyncio.ensure_future(self._run(key, loader))
            self._loading[key] = task
        return await asyncio.shield(task)

    async def _run(self, key: Hashable, loader: Callable[[], Awaitable[Any]]) -> Any:
        try:
            value = await loader()
        except BaseException:
            self._failures += 1
            raise
        else:
            self.cache[key] = value
            return value
        finally:
            self._loading.pop(key, None)

    def cache_stats(self) -> LoadStats:
        """Hits, misses, loads and failed loads of get_or_load so far."""
        self._fields()
        return LoadStats(self._hits, self._misses, self._loads, self._failures)

    async def cleanup(self) -> None:
        """Clear the cache; loads still running finish but are not awaited."""
        self._fields()
        clear: Callable[[], object] | None = getattr(self.cache, "clear", None)
        if callable(clear):
            clear()
        await super().cleanup()  # capability modules compose as mixins
