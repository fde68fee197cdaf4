"""The Redis tier against aiocache and cashews, on one redis-server started
here on a loopback port. Tables: ``bash benches/run.sh 3 redis_bench``.

- local hit: 10,000 reads of one present key per call (the async ones in one
  coroutine, so the event loop's own cost is spread over them);
- Redis hit: 200 sequential reads of a present key per call;
- get_many: 100 keys per call, against 100 single reads;
- a write (with its announcement) against a redis-py SET, 200 per call;
- a miss loaded under the shared lock against a GET + SET floor and the
  peers' stampede protection, 200 fresh keys per call;
- 1,000 callers of one cold key with a 10 ms loader, against 1,000 tasks
  awaiting one task (the asyncio floor), per call.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiocache import RedisCache as AiocacheRedis
from aiocache import SimpleMemoryCache, cached_stampede
from cashews import Cache as Cashews
from tests.servers import RedisServer

from pepperpy_core.cache import FIFOCache
from pepperpy_core.module import CachedModule, ModuleConfig
from pepperpy_core.redis import RedisCache, TieredCache

# A peer's close() calls redis-py's deprecated close(): not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

LOCAL_OPS = 10_000
REMOTE_OPS = 200
VALUE = {"id": 7, "name": "a user", "tags": ["x", "y"]}


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    started = RedisServer(Path(tempfile.mkdtemp()))
    started.start()
    yield started
    started.stop()


#: Closers of what the subjects opened, run before the loop closes.
_CLOSERS: list[Callable[[], Awaitable[Any]]] = []


@pytest.fixture(scope="module")
def loop(server: RedisServer) -> Iterator[asyncio.AbstractEventLoop]:
    """One event loop for every subject; what they opened is closed before
    the server stops."""
    made = asyncio.new_event_loop()
    yield made
    for close in reversed(_CLOSERS):
        made.run_until_complete(asyncio.wait_for(close(), 5))
    _CLOSERS.clear()
    made.run_until_complete(made.shutdown_asyncgens())
    made.close()


def _timed(
    loop: asyncio.AbstractEventLoop, body: Callable[[], Awaitable[None]]
) -> Callable[[], None]:
    return lambda: loop.run_until_complete(body())


# --- a local hit -------------------------------------------------------------------------------


def _copied(loop: asyncio.AbstractEventLoop, tier: TieredCache[Any]) -> None:
    """``tier`` holds a local copy of "k": its reads of it are local hits.
    (A write made before the tier listens keeps no copy.)"""

    async def copy() -> None:
        await tier.subscribed()
        await tier.set("k", VALUE)

    loop.run_until_complete(copy())
    assert tier.peek("k") == VALUE


def _local_subjects(loop: asyncio.AbstractEventLoop, url: str) -> dict[str, Callable[[], None]]:
    plain = FIFOCache[str, Any](100)
    plain["k"] = VALUE
    tier: TieredCache[Any] = TieredCache(FIFOCache(100), RedisCache(url=url, prefix="b:"))
    _copied(loop, tier)
    # Values with a time to live in Redis: the copies have one too.
    lived: TieredCache[Any] = TieredCache(
        FIFOCache(100), RedisCache(url=url, prefix="bt:", ttl=3600)
    )
    _copied(loop, lived)
    module = CachedModule(ModuleConfig(name="bench"), cache=tier)
    memory = SimpleMemoryCache()
    loop.run_until_complete(memory.set("k", VALUE))
    cashews_mem = Cashews()
    cashews_mem.setup("mem://")
    loop.run_until_complete(cashews_mem.set("k", VALUE))
    cashews_side = Cashews()
    cashews_side.setup(url, client_side=True)
    loop.run_until_complete(cashews_side.set("k", VALUE))
    loop.run_until_complete(cashews_side.get("k"))  # now held client-side
    _CLOSERS.extend(
        [
            *(tier.aclose, tier.remote.aclose, lived.aclose, lived.remote.aclose),
            *(memory.close, cashews_mem.close, cashews_side.close),
        ]
    )
    ops = range(LOCAL_OPS)

    def fifo() -> None:
        get = plain.get
        for _ in ops:
            get("k")

    def peek(tier: TieredCache[Any] = tier) -> None:
        get = tier.peek
        for _ in ops:
            get("k")

    async def awaited(get: Callable[..., Awaitable[Any]], *args: Any) -> None:
        for _ in ops:
            await get("k", *args)

    async def floor() -> None:  # an async def doing a dict read: any awaited call's least
        data = {"k": VALUE}

        async def read(key: str) -> Any:
            return data.get(key)

        for _ in ops:
            await read("k")

    async def loader() -> Any:
        return VALUE

    return {
        "FIFOCache.get": fifo,
        "tier.peek": peek,
        "tier.peek, with a ttl": lambda: peek(lived),
        "await tier.get": _timed(loop, lambda: awaited(tier.get)),
        "await get_or_load": _timed(loop, lambda: awaited(module.get_or_load, loader)),
        "async def floor": _timed(loop, floor),
        "aiocache memory": _timed(loop, lambda: awaited(memory.get)),
        "cashews memory": _timed(loop, lambda: awaited(cashews_mem.get)),
        "cashews client-side": _timed(loop, lambda: awaited(cashews_side.get)),
    }


LOCAL = [
    "FIFOCache.get",
    "tier.peek",
    "tier.peek, with a ttl",
    "await tier.get",
    "await get_or_load",
    "async def floor",
    "aiocache memory",
    "cashews memory",
    "cashews client-side",
]


@pytest.fixture(scope="module")
def local_subjects(
    loop: asyncio.AbstractEventLoop, server: RedisServer
) -> dict[str, Callable[[], None]]:
    return _local_subjects(loop, server.url)


@pytest.mark.parametrize("name", LOCAL)
def test_local_hit(
    benchmark: Any, local_subjects: dict[str, Callable[[], None]], name: str
) -> None:
    benchmark.group = "a local hit, per op, 10k per call"
    benchmark(local_subjects[name])


# --- a Redis hit -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def remote_subjects(
    loop: asyncio.AbstractEventLoop, server: RedisServer
) -> dict[str, Callable[[], None]]:
    url = server.url
    ours: RedisCache[Any] = RedisCache(url=url, prefix="r:")
    client = aioredis.Redis.from_url(url)
    aio = AiocacheRedis(endpoint="127.0.0.1", port=server.port, namespace="a")
    cash = Cashews()
    cash.setup(url)

    async def fill() -> None:
        await ours.set("k", VALUE)
        await client.set("raw", json.dumps(VALUE))
        await aio.set("k", VALUE)
        await cash.set("k", VALUE)
        await ours.set_many({f"m{i}": VALUE for i in range(100)})
        await aio.multi_set([(f"m{i}", VALUE) for i in range(100)])
        await cash.set_many({f"m{i}": VALUE for i in range(100)})

    loop.run_until_complete(fill())
    _CLOSERS.extend([ours.aclose, client.aclose, aio.close, cash.close])
    ops = range(REMOTE_OPS)
    many = [f"m{i}" for i in range(100)]

    async def redis_py() -> None:
        for _ in ops:
            json.loads(await client.get("raw"))

    async def sequential(get: Callable[[str], Awaitable[Any]]) -> None:
        for _ in ops:
            await get("k")

    async def hundred_singles() -> None:
        for key in many:
            await ours.get(key)

    return {
        "redis-py GET + json.loads": _timed(loop, redis_py),
        "RedisCache.get": _timed(loop, lambda: sequential(ours.get)),
        "aiocache": _timed(loop, lambda: sequential(aio.get)),
        "cashews": _timed(loop, lambda: sequential(cash.get)),
        "RedisCache.get_many(100)": _timed(loop, lambda: ours.get_many(many)),  # type: ignore[arg-type, return-value]
        "100 x RedisCache.get": _timed(loop, hundred_singles),
        "aiocache multi_get(100)": _timed(loop, lambda: aio.multi_get(many)),  # type: ignore[arg-type, return-value]
        "cashews get_many(100)": _timed(loop, lambda: cash.get_many(*many)),  # type: ignore[arg-type, return-value]
    }


@pytest.mark.parametrize(
    "name", ["redis-py GET + json.loads", "RedisCache.get", "aiocache", "cashews"]
)
def test_redis_hit(
    benchmark: Any, remote_subjects: dict[str, Callable[[], None]], name: str
) -> None:
    benchmark.group = "a Redis hit over loopback, per op, 200 per call"
    benchmark(remote_subjects[name])


@pytest.mark.parametrize(
    "name",
    [
        "RedisCache.get_many(100)",
        "100 x RedisCache.get",
        "aiocache multi_get(100)",
        "cashews get_many(100)",
    ],
)
def test_get_many(
    benchmark: Any, remote_subjects: dict[str, Callable[[], None]], name: str
) -> None:
    benchmark.group = "100 keys from Redis, per call"
    benchmark(remote_subjects[name])


# --- a write, announced ------------------------------------------------------------------------

#: A fresh key per call of every subject, so that misses stay misses.
_CALLS = iter(range(10**9))


@pytest.fixture(scope="module")
def write_subjects(
    loop: asyncio.AbstractEventLoop, server: RedisServer
) -> dict[str, Callable[[], None]]:
    url = server.url
    client = aioredis.Redis.from_url(url)
    ours: RedisCache[Any] = RedisCache(url=url, prefix="w:")
    tier: TieredCache[Any] = TieredCache(FIFOCache(1000), RedisCache(url=url, prefix="wt:"))
    loop.run_until_complete(tier.subscribed())
    aio = AiocacheRedis(endpoint="127.0.0.1", port=server.port, namespace="wa")
    cash = Cashews()
    cash.setup(url)
    _CLOSERS.extend(
        [client.aclose, ours.aclose, tier.aclose, tier.remote.aclose, aio.close, cash.close]
    )
    ops = range(REMOTE_OPS)

    async def redis_py() -> None:
        for i in ops:
            await client.set(f"raw{i}", json.dumps(VALUE))

    async def each(set_: Callable[[str, Any], Awaitable[Any]]) -> None:
        for i in ops:
            await set_(f"k{i}", VALUE)

    return {
        "redis-py SET + json.dumps": _timed(loop, redis_py),
        "RedisCache.set (announced)": _timed(loop, lambda: each(ours.set)),
        "TieredCache.set": _timed(loop, lambda: each(tier.set)),
        "aiocache set": _timed(loop, lambda: each(aio.set)),
        "cashews set": _timed(loop, lambda: each(cash.set)),
    }


@pytest.mark.parametrize(
    "name",
    [
        "redis-py SET + json.dumps",
        "RedisCache.set (announced)",
        "TieredCache.set",
        "aiocache set",
        "cashews set",
    ],
)
def test_write(benchmark: Any, write_subjects: dict[str, Callable[[], None]], name: str) -> None:
    benchmark.group = "a write to Redis over loopback, per op, 200 per call"
    benchmark(write_subjects[name])


# --- a miss, loaded under the shared lock ------------------------------------------------------


@pytest.fixture(scope="module")
def miss_subjects(
    loop: asyncio.AbstractEventLoop, server: RedisServer
) -> dict[str, Callable[[], None]]:
    url = server.url
    client = aioredis.Redis.from_url(url)
    tier: TieredCache[Any] = TieredCache(FIFOCache(10), RedisCache(url=url, prefix="mt:", ttl=60))
    loop.run_until_complete(tier.subscribed())
    aio_namespace = f"ms{id(loop)}"

    @cached_stampede(
        lease=10,
        ttl=60,
        cache=AiocacheRedis,
        endpoint="127.0.0.1",
        port=server.port,
        namespace=aio_namespace,
        noself=False,
    )
    async def aiocache_load(key: str) -> Any:
        return VALUE

    cash = Cashews()
    cash.setup(url)

    @cash(ttl=60, key="mc:{key}", lock=True, protected=True)
    async def cashews_load(key: str) -> Any:
        return VALUE

    async def loader() -> Any:
        return VALUE

    _CLOSERS.extend([client.aclose, tier.aclose, tier.remote.aclose, cash.close])
    ops = range(REMOTE_OPS)

    async def floor() -> None:  # the least any cache does on a miss: a GET, then a SET
        run = next(_CALLS)
        for i in ops:
            name = f"f:{run}:{i}"
            if await client.get(name) is None:
                await client.set(name, json.dumps(VALUE), px=60_000)

    async def each(load: Callable[[str], Awaitable[Any]]) -> None:
        run = next(_CALLS)
        for i in ops:
            await load(f"{run}:{i}")

    return {
        "GET + SET floor": _timed(loop, floor),
        "TieredCache.load": _timed(loop, lambda: each(lambda k: tier.load(k, loader))),
        "aiocache cached_stampede": _timed(loop, lambda: each(aiocache_load)),
        "cashews lock=True": _timed(loop, lambda: each(cashews_load)),
    }


@pytest.mark.parametrize(
    "name", ["GET + SET floor", "TieredCache.load", "aiocache cached_stampede", "cashews lock=True"]
)
def test_locked_miss(
    benchmark: Any, miss_subjects: dict[str, Callable[[], None]], name: str
) -> None:
    benchmark.group = "a miss loaded under the shared lock, per op, 200 per call"
    benchmark(miss_subjects[name])


# --- a thousand callers of one cold key --------------------------------------------------------


@pytest.fixture(scope="module")
def stampede_subjects(
    loop: asyncio.AbstractEventLoop, server: RedisServer
) -> dict[str, Callable[[], None]]:
    tier: TieredCache[Any] = TieredCache(FIFOCache(10), RedisCache(url=server.url, prefix="st:"))
    loop.run_until_complete(tier.subscribed())
    _CLOSERS.extend([tier.aclose, tier.remote.aclose])

    async def loader() -> Any:
        await asyncio.sleep(0.01)
        return VALUE

    async def floor() -> None:  # 1,000 tasks awaiting one task that takes 10 ms
        one = asyncio.ensure_future(loader())

        async def wait() -> Any:
            return await one

        await asyncio.gather(*(wait() for _ in range(1000)))

    async def thousand() -> None:
        key = f"cold:{next(_CALLS)}"
        await asyncio.gather(*(tier.load(key, loader) for _ in range(1000)))

    return {"asyncio floor": _timed(loop, floor), "TieredCache.load": _timed(loop, thousand)}


@pytest.mark.parametrize("name", ["asyncio floor", "TieredCache.load"])
def test_thousand_callers(
    benchmark: Any, stampede_subjects: dict[str, Callable[[], None]], name: str
) -> None:
    benchmark.group = "1,000 callers of one cold key, a 10 ms loader, per call"
    benchmark(stampede_subjects[name])
