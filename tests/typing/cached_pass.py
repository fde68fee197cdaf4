"""Type-checked by ``mypy --strict`` in CI, never run: ``cache.cached`` keeps
the function's parameters, and its return is what the cache holds."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Hashable
from typing import Any, assert_type

from pepperpy_core.cache import FIFOCache, LocalCache, cached
from pepperpy_core.protocols import AsyncCacheProtocol, CacheProtocol
from pepperpy_core.redis import RedisCache, TieredCache

ints = FIFOCache[Hashable, int](100)


@cached(ints)
def add(a: int, b: int = 0, *, scale: int = 1) -> int:
    return (a + b) * scale


assert_type(add(1), int)
assert_type(add(1, 2, scale=3), int)
plain: Callable[[int, int], int] = add  # the parameters are kept


@cached(ints)
async def fetch(user_id: int) -> int:
    return user_id


async def awaited_forms() -> None:
    call = assert_type(fetch(1), Coroutine[Any, Any, int])
    assert_type(await call, int)


def _user_key(user_id: int, *, detail: bool = False) -> str:
    return f"user:{user_id}:{detail}"


names = FIFOCache[str, str](100)


@cached(names, key=_user_key)
def user_name(user_id: int, *, detail: bool = False) -> str:
    return str(user_id)


assert_type(user_name(1, detail=True), str)


@cached(names, key=_user_key)
async def fetch_name(user_id: int, *, detail: bool = False) -> str:
    return str(user_id)


async def keyed_async() -> None:
    assert_type(await fetch_name(1), str)


# Any CacheProtocol (a key type wider than the key made is fine), and async caches.
async def any_cache(
    cache: CacheProtocol[object, float], local: AsyncCacheProtocol[Hashable, bytes]
) -> None:
    @cached(cache)
    def ratio(a: int, b: int) -> float:
        return a / b

    @cached(local)
    async def blob(path: str) -> bytes:
        return path.encode()

    assert_type(ratio(1, 2), float)
    assert_type(await blob("x"), bytes)


@cached(LocalCache[Hashable, list[str]](10))
async def tags(item: int) -> list[str]:
    return [str(item)]


async def tiered(store: RedisCache[dict[str, int]]) -> None:
    tier = TieredCache[dict[str, int]](FIFOCache[str, dict[str, int]](100), store)

    def report_key(report_id: int) -> str:
        return f"report:{report_id}"

    @cached(tier, key=report_key)
    async def report(report_id: int) -> dict[str, int]:
        return {"id": report_id}

    assert_type(await report(1), dict[str, int])
    # A lambda key types the parameters as Any: the function still checks.
    lax = cached(tier, key=lambda report_id: f"report:{report_id}")(report)
    assert_type(await lax(1), dict[str, int])


class Repo:
    @cached(ints)
    def size(self, k: int) -> int:
        return k

    @cached(names, key=lambda self, k: f"repo:{k}")
    async def name(self, k: int) -> str:
        return str(k)


async def methods(repo: Repo) -> None:
    assert_type(repo.size(1), int)
    assert_type(await repo.name(1), str)
