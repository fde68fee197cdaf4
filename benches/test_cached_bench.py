"""CachedModule.get_or_load on a hit against a bare FIFOCache.get and a dict
lookup, each 1,000 times inside one coroutine on one event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from pepperpy_core.cache import FIFOCache
from pepperpy_core.module import CachedModule

OPS = 1_000
KEYS = [f"key-{i}" for i in range(OPS)]


async def _never() -> Any:
    raise AssertionError("every key is cached")


def _get_or_load() -> Callable[[], Awaitable[None]]:
    module = CachedModule(maxsize=OPS)
    for key in KEYS:
        module.cache[key] = key

    async def run() -> None:
        get_or_load = module.get_or_load
        for key in KEYS:
            await get_or_load(key, _never)

    return run


def _fifo_get() -> Callable[[], Awaitable[None]]:
    cache: FIFOCache[str, str] = FIFOCache(OPS)
    for key in KEYS:
        cache[key] = key

    async def run() -> None:
        get = cache.get
        for key in KEYS:
            get(key)

    return run


def _dict_get() -> Callable[[], Awaitable[None]]:
    cache = {key: key for key in KEYS}

    async def run() -> None:
        get = cache.get
        for key in KEYS:
            get(key)

    return run


def _bare_coroutine() -> Callable[[], Awaitable[None]]:
    """The floor for any async API: awaiting a coroutine that returns at once."""
    cache = {key: key for key in KEYS}

    async def hit(key: str) -> Any:
        return cache.get(key)

    async def run() -> None:
        for key in KEYS:
            await hit(key)

    return run


SUBJECTS = {
    "dict": _dict_get,
    "fifocache-get": _fifo_get,
    "async-dict-get": _bare_coroutine,
    "get_or_load": _get_or_load,
}


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.mark.parametrize("name", list(SUBJECTS))
def test_cache_hit(benchmark: Any, name: str, loop: asyncio.AbstractEventLoop) -> None:
    run = SUBJECTS[name]()
    benchmark.group = "cache hit inside a coroutine"
    benchmark(lambda: loop.run_until_complete(run()))
