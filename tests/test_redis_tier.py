"""The Redis tier in an application: one load per key across real
processes, a lock owner that dies, and Redis stopped and restarted under a
running application (a real redis-server, started here)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from pepperpy_core import Application
from pepperpy_core.cache import FIFOCache
from pepperpy_core.module import CachedModule, DependentModule, ModuleConfig
from pepperpy_core.redis import RedisCache, RedisModule, TieredCache, _Names
from tests.asyncutil import run, until, until_true
from tests.servers import RedisServer

# The local tier is a FIFOCache: run again on the fallback backend.
pytestmark = pytest.mark.backend

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    started = RedisServer(tmp_path)
    started.start()
    yield started
    started.stop()


def worker(url: str, key: str, callers: int, lock_ttl: float, mode: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.redis_worker", url, key, str(callers), str(lock_ttl), mode],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


async def release(client: aioredis.Redis, processes: int) -> None:
    """Wait until ``processes`` workers are ready, then let them all go."""
    for _ in range(processes):
        assert await client.blpop(["ready"], timeout=60) is not None, "a worker never got ready"
    await client.rpush("go", *["go"] * processes)


def test_one_load_across_processes_and_callers(server: RedisServer) -> None:
    processes, callers = 4, 25

    async def main() -> list[Any]:
        client = aioredis.Redis.from_url(server.url, socket_timeout=None)  # (BLPOP waits long)
        started = [worker(server.url, "report", callers, 5.0, "load") for _ in range(processes)]
        try:
            await release(client, processes)
            outputs = [await asyncio.to_thread(p.communicate, timeout=60) for p in started]
        finally:
            for p in started:
                if p.poll() is None:
                    p.kill()
        for p, (_, err) in zip(started, outputs, strict=True):
            assert p.returncode == 0, err
        loads = int(await client.get("loads") or 0)
        await client.aclose()
        assert loads == 1  # one loader call for 4 x 25 callers
        return [json.loads(out) for out, _ in outputs]

    results = run(main(), timeout=120)
    values = [value for got in results for value in got]
    assert len(values) == processes * callers
    assert all(v == values[0] for v in values)  # every caller got the owner's value


def test_a_thousand_callers_of_one_cold_key_run_one_load(server: RedisServer) -> None:
    # With the default client (a pool of 100 connections in redis-py 8):
    # callers beyond the pool never make a load of their own.
    async def main() -> None:
        tier: TieredCache[Any] = TieredCache(FIFOCache(10), RedisCache(url=server.url, prefix="m:"))
        loads = 0

        async def loader() -> str:
            nonlocal loads
            loads += 1
            await asyncio.sleep(0.01)
            return "report"

        got = await asyncio.gather(*(tier.load("cold", loader) for _ in range(1000)))
        assert got == ["report"] * 1000
        assert loads == 1
        await tier.aclose()
        await tier.remote.aclose()

    run(main(), timeout=120)


def test_many_keys_from_many_processes_one_load_each(server: RedisServer) -> None:
    processes, keys = 3, 200

    async def main() -> None:
        client = aioredis.Redis.from_url(server.url, socket_timeout=None)  # (BLPOP waits long)
        started = [worker(server.url, "k", keys, 10.0, "keys") for _ in range(processes)]
        try:
            await release(client, processes)
            outputs = [await asyncio.to_thread(p.communicate, timeout=120) for p in started]
        finally:
            for p in started:
                if p.poll() is None:
                    p.kill()
        for p, (_, err) in zip(started, outputs, strict=True):
            assert p.returncode == 0, err  # no caller got an error
        assert int(await client.get("loads") or 0) == keys  # one load per key, all processes
        await client.aclose()

    run(main(), timeout=240)


def test_when_the_lock_owner_dies_another_process_loads(server: RedisServer) -> None:
    lock_ttl = 1.0

    async def main() -> None:
        client = aioredis.Redis.from_url(server.url, socket_timeout=None)  # (BLPOP waits long)
        doomed = worker(server.url, "report", 1, lock_ttl, "die")
        try:
            await release(client, 1)
            owner = await client.blpop(["owner"], timeout=60)  # it holds the lock, loading
            assert owner is not None
            doomed.send_signal(signal.SIGKILL)
        finally:
            if doomed.poll() is None:
                doomed.kill()
            await asyncio.to_thread(doomed.communicate, timeout=30)
        tier: TieredCache[Any] = TieredCache(
            FIFOCache(10), RedisCache(url=server.url, prefix="w:"), lock_ttl=lock_ttl
        )
        module = CachedModule(ModuleConfig(name="survivor"), cache=tier)
        await module.initialize()

        async def loader() -> str:
            await client.incr("loads")
            return "loaded by the survivor"

        # The dead owner's lock expires after lock_ttl: the survivor loads then.
        assert await module.get_or_load("report", loader) == "loaded by the survivor"
        assert int(await client.get("loads") or 0) == 2  # the dead one's, and ours
        assert await tier.remote.get("report") == "loaded by the survivor"
        await module.cleanup()
        await tier.remote.aclose()
        await client.aclose()

    run(main(), timeout=120)


def test_a_failing_loader_lets_the_next_process_try(server: RedisServer) -> None:
    async def main() -> None:
        tiers = [
            TieredCache(FIFOCache(10), RedisCache(url=server.url, prefix="w:"), lock_ttl=5)
            for _ in range(2)
        ]
        attempts: list[int] = []

        async def failing() -> str:
            attempts.append(0)
            await asyncio.sleep(0.1)
            raise ConnectionError("the database is away")

        async def working() -> str:
            attempts.append(1)
            return "fine"

        raw = aioredis.Redis.from_url(server.url)
        try:
            first = asyncio.ensure_future(tiers[0].load("k", failing))
            await until_true(lambda: raw.exists(_Names("w:", cluster=False).lock("k")))
            second = asyncio.ensure_future(tiers[1].load("k", working))
            with pytest.raises(ConnectionError):
                await first
            assert await second == "fine"
            assert attempts == [0, 1]
        finally:
            await raw.aclose()
            for t in tiers:
                await t.aclose()
                await t.remote.aclose()

    run(main())


def test_a_cancelled_owner_releases_its_lock(server: RedisServer) -> None:
    async def main() -> None:
        t: TieredCache[Any] = TieredCache(
            FIFOCache(10), RedisCache(url=server.url, prefix="w:"), lock_ttl=30
        )
        began = asyncio.Event()

        async def slow() -> str:
            began.set()
            await asyncio.sleep(3600)
            return "never"

        loading = asyncio.ensure_future(t.load("k", slow))
        await began.wait()
        client = aioredis.Redis.from_url(server.url, socket_timeout=None)  # (BLPOP waits long)
        lock = _Names("w:", cluster=False).lock("k")
        assert await client.exists(lock) == 1
        loading.cancel()  # its only caller: the load ends
        with pytest.raises(asyncio.CancelledError):
            await loading
        # The release runs to its end in a task of its own: not left for 30 s.
        await until_true(lambda: _absent(client, lock))
        await client.aclose()
        await t.aclose()
        await t.remote.aclose()

    run(main())


async def _absent(client: aioredis.Redis, name: str) -> bool:
    return not await client.exists(name)


# --- Redis stopped under a running application ----------------------------------------------


class Reports(DependentModule, CachedModule):
    """Serves reports from a loader, cached in a Redis tier."""

    def __init__(self, redis_module: RedisModule) -> None:
        tier: TieredCache[Any] = TieredCache(
            FIFOCache(100), RedisCache(redis_module, prefix="app:", timeout=0.3)
        )
        super().__init__(ModuleConfig(name="reports"), cache=tier)
        self.depends_on(redis_module)
        self.loads = 0

    async def report(self, key: str) -> str:
        async def loader() -> str:
            self.loads += 1
            return f"report {key} #{self.loads}"

        return str(await self.get_or_load(key, loader))


def test_redis_stopped_and_restarted_under_a_running_application(server: RedisServer) -> None:
    async def main() -> None:
        redis_module = RedisModule(ModuleConfig(name="redis"), url=server.url, timeout=0.3)
        reports = Reports(redis_module)
        app = Application(reports, health_timeout=1)
        other: TieredCache[Any] = TieredCache(
            FIFOCache(10), RedisCache(url=server.url, prefix="app:", timeout=0.3)
        )
        async with app:
            tier = reports.cache
            assert isinstance(tier, TieredCache)
            async with asyncio.timeout(5):
                await tier.subscribed()
            assert await reports.report("a") == "report a #1"
            health = await app.health()
            assert health.status == "healthy"

            server.stop()
            assert await reports.report("a") == "report a #1"  # the local copy
            assert await reports.report("b") == "report b #2"  # the loader, no error
            health = await app.health()
            assert health.modules["redis"].status == "unhealthy"
            assert health.modules["reports"].status == "degraded"

            server.start()
            async with asyncio.timeout(10):
                await tier.subscribed()  # reconnected by itself
            assert (await app.health()).status == "healthy"
            assert await reports.report("c") == "report c #3"
            async with asyncio.timeout(5):
                await other.subscribed()
            await other.set("c", "rewritten elsewhere")
            await until(lambda: tier.peek("c") is None)  # invalidations flow again
            assert await reports.report("c") == "rewritten elsewhere"
        await other.aclose()
        await other.remote.aclose()
        assert tier._listener is None  # the module's cleanup stopped it

    run(main(), timeout=120)


def test_loads_leave_nothing_behind(server: RedisServer) -> None:
    async def main() -> None:
        tier: TieredCache[Any] = TieredCache(FIFOCache(10), RedisCache(url=server.url, prefix="n:"))

        async def loader() -> str:
            return "v"

        for i in range(50):
            await tier.load(f"k{i}", loader)
        assert tier._arrivals == {}  # (a key per load was kept for ever)
        assert len(tier._flights) == 0
        await tier.aclose()
        await tier.remote.aclose()

    run(main())
