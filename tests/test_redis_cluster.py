"""The Redis tier on a real Redis Cluster (three masters on loopback,
started here with redis-server and redis-cli from Debian's packages): keys
across hash slots, sharded announcements, one load per key, tags, and a
master that crashes mid-run and comes back."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio.cluster import RedisCluster as ClusterClient
from redis.crc import key_slot

from pepperpy_core.cache import FIFOCache
from pepperpy_core.errors import CacheUnavailableError
from pepperpy_core.module import CachedModule, ModuleConfig
from pepperpy_core.redis import RedisCache, RedisModule, TieredCache, make_client
from tests.asyncutil import run, settled, until
from tests.servers import RedisCluster, wait_for

pytestmark = pytest.mark.backend

#: Keys on several slots (and masters), and two that share one by a hash tag.
KEYS = ["alpha", "bravo", "charlie", "delta", "echo", "{user1}.name", "{user1}.mail"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    started = RedisCluster(tmp_path_factory.mktemp("cluster"))
    try:
        started.start()
        yield started
    finally:
        started.stop()


def tier(url: str, prefix: str = "c:", **kwargs: Any) -> TieredCache[Any]:
    client = make_client(url, 2.0, cluster=True)
    return TieredCache(FIFOCache(100), RedisCache(client, prefix=prefix, timeout=2.0), **kwargs)


async def close(*tiers: TieredCache[Any]) -> None:
    for t in tiers:
        await t.aclose()
        await t.remote.client.aclose()


def test_the_keys_span_several_slots() -> None:
    assert len({key_slot(f"c:{k}".encode()) for k in KEYS}) >= 5


def test_a_cache_on_a_cluster(cluster: RedisCluster) -> None:
    async def main() -> None:
        cache: RedisCache[Any] = RedisCache(
            make_client(cluster.url, 2.0, cluster=True), prefix="c:"
        )
        assert cache.cluster
        await cache.set_many({k: i for i, k in enumerate(KEYS)})
        assert await cache.get_many([*KEYS, "absent"]) == {k: i for i, k in enumerate(KEYS)}
        await cache.set_many(dict.fromkeys(KEYS, -1), ttl=30)
        found = await cache.fetch(KEYS)
        assert {k: s.value for k, s in found.items()} == dict.fromkeys(KEYS, -1)
        assert all(s.ttl is not None and 0 < s.ttl <= 30 for s in found.values())
        assert await cache.delete("alpha") is True
        assert await cache.get("alpha") is None
        await cache.client.aclose()

    run(main(), timeout=120)


def test_tiers_on_a_cluster_stay_coherent_through_sharded_announcements(
    cluster: RedisCluster,
) -> None:
    async def main() -> None:
        a, b = tier(cluster.url), tier(cluster.url)
        await settled(a, b)
        await a.set_many(dict.fromkeys(KEYS, "v1"))
        await settled(a, b)
        assert await b.get_many(KEYS) == dict.fromkeys(KEYS, "v1")
        assert all(b.peek(k) == "v1" for k in KEYS)  # kept locally
        await a.set_many(dict.fromkeys(KEYS, "v2"))  # announced on each key's slot
        await until(lambda: all(b.peek(k) is None for k in KEYS), within=60)
        assert await b.get_many(KEYS) == dict.fromkeys(KEYS, "v2")
        await close(a, b)

    run(main(), timeout=180)


def test_one_load_per_key_across_tiers_on_a_cluster(cluster: RedisCluster) -> None:
    async def main() -> None:
        tiers = [tier(cluster.url, prefix="l:") for _ in range(3)]
        await settled(*tiers)
        loads: dict[str, int] = {}

        def loader(key: str) -> Any:
            async def load() -> str:
                loads[key] = loads.get(key, 0) + 1
                await asyncio.sleep(0.05)
                return f"value of {key}"

            return load

        got = await asyncio.gather(
            *(t.load(k, loader(k)) for t in tiers for k in KEYS for _ in range(5))
        )
        assert got == [f"value of {k}" for _ in tiers for k in KEYS for _ in range(5)]
        assert loads == dict.fromkeys(KEYS, 1)
        await close(*tiers)

    run(main(), timeout=180)


def test_tags_across_slots(cluster: RedisCluster) -> None:
    async def main() -> None:
        a, b = tier(cluster.url, prefix="t:"), tier(cluster.url, prefix="t:")
        await settled(a, b)
        await a.set_many(dict.fromkeys(KEYS[:4], 1), tags=["report"])
        await a.set("other", 2)
        await settled(a, b)
        assert await b.get_many([*KEYS[:4], "other"]) == {**dict.fromkeys(KEYS[:4], 1), "other": 2}
        assert await a.invalidate_tag("report") == 4
        await until(lambda: all(b.peek(k) is None for k in KEYS[:4]), within=60)
        assert await b.get_many(KEYS[:4]) == {}
        # An untagged key stays in Redis. (Whether b still holds its copy is
        # not asked: a listener that lost its subscription on this busy
        # machine drops every copy, as it must.)
        assert await b.get("other") == 2
        assert await a.remote.get("other") == 2
        assert await a.invalidate_tag("report") == 0
        await close(a, b)

    run(main(), timeout=180)


def test_a_redis_module_for_a_cluster(cluster: RedisCluster) -> None:
    async def main() -> None:
        module = RedisModule(ModuleConfig(name="redis"), url=cluster.url, cluster=True)
        await module.initialize()
        assert isinstance(module.client, ClusterClient)
        assert await module.health_check()
        cache: RedisCache[str] = RedisCache(module, prefix="m:")
        await cache.set("k", "v")
        assert await cache.get("k") == "v"
        await module.cleanup()

    run(main(), timeout=120)


def test_a_master_killed_mid_run_costs_no_caller_an_error(tmp_path: Path) -> None:
    cluster = RedisCluster(tmp_path)
    cluster.start()
    try:

        async def main() -> None:
            t = tier(cluster.url, prefix="k:")
            module = CachedModule(ModuleConfig(name="reports"), cache=t)
            await module.initialize()
            await settled(t)
            loads = 0

            async def loader() -> str:
                nonlocal loads
                loads += 1
                return "fresh"

            assert await module.get_or_load("before", loader) == "fresh"
            client = t.remote.client
            assert isinstance(client, ClusterClient)
            node = client.get_node_from_key("k:alpha")  # the master of "alpha" crashes
            assert node is not None
            doomed = int(node.port)
            await asyncio.to_thread(cluster.kill, doomed)
            # Every key is asked for, whatever master it lived on: each caller
            # gets the loader's answer, never the outage.
            for round_ in range(3):
                got = await asyncio.gather(
                    *(module.get_or_load(f"{k}-{round_}", loader) for k in KEYS)
                )
                assert got == ["fresh"] * len(KEYS)
            with pytest.raises(CacheUnavailableError):
                await t.set("alpha", "x")  # a write says so; a read is a miss
            await asyncio.to_thread(cluster.start_node, doomed)
            await asyncio.to_thread(wait_for, cluster.ready, "the cluster back", 120)
            await settled(t)  # listening again, by itself
            await t.set("alpha", "back")
            assert await t.remote.get("alpha") == "back"
            await module.cleanup()
            await t.remote.client.aclose()

        run(main(), timeout=300)
    finally:
        cluster.stop()
