"""A worker process for the cross-process tests: a CachedModule on a
TieredCache, whose callers all ask for one key at once.

``python -m tests.redis_worker URL KEY CALLERS LOCK_TTL MODE``; MODE is
``load`` (the loader counts itself in Redis, sleeps, returns), ``die`` (the
loader counts itself, says so, and hangs until the process is killed) or
``keys`` (CALLERS keys ``KEY-0`` ... each asked for twice at once, through
the tier's own ``load``, with a 10 ms loader). Prints the values its callers
got, as JSON.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

import redis.asyncio as aioredis

from pepperpy_core.cache import FIFOCache
from pepperpy_core.module import CachedModule, ModuleConfig
from pepperpy_core.redis import RedisCache, TieredCache


async def main(url: str, key: str, callers: int, lock_ttl: float, mode: str) -> None:
    # The test's own counting and signalling (BLPOP waits past redis-py's 5 s default).
    client = aioredis.Redis.from_url(url, max_connections=10_000, socket_timeout=None)
    # A timeout for a busy shared machine: here a slow answer is not an outage.
    tier: TieredCache[object] = TieredCache(
        FIFOCache(100), RedisCache(url=url, prefix="w:", timeout=10), lock_ttl=lock_ttl
    )
    module = CachedModule(ModuleConfig(name=f"worker{os.getpid()}"), cache=tier)
    await module.initialize()

    async def loader() -> object:
        count = await client.incr("loads")
        if mode == "die":
            await client.rpush("owner", os.getpid())
            await asyncio.sleep(3600)
        await asyncio.sleep(0.01 if mode == "keys" else 0.3)
        return {"pid": os.getpid(), "load": count}

    await tier.subscribed()
    await client.rpush("ready", os.getpid())
    await client.blpop(["go"], timeout=30)
    if mode == "keys":
        names = [f"{key}-{i}" for i in range(callers)] * 2
        got = await asyncio.gather(*(tier.load(name, loader) for name in names))
    else:
        got = await asyncio.gather(*(module.get_or_load(key, loader) for _ in range(callers)))
    print(json.dumps(got), flush=True)
    await module.cleanup()
    await tier.remote.aclose()
    await client.aclose()


if __name__ == "__main__":
    url, key, callers, lock_ttl, mode = sys.argv[1:]
    asyncio.run(main(url, key, int(callers), float(lock_ttl), mode))
