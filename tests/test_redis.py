"""RedisCache, TieredCache and RedisModule against a real redis-server on a
free loopback port (started here, without persistence, and stopped)."""

from __future__ import annotations

import asyncio
import importlib
import logging
import math
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from pepperpy_core.cache import FIFOCache, LocalCache
from pepperpy_core.errors import CacheUnavailableError, LifecycleError
from pepperpy_core.redis import RedisCache, RedisModule, TieredCache
from pepperpy_core.serializers import JSON, PICKLE
from tests.asyncutil import run, settled, until
from tests.hiding import hide
from tests.servers import RedisServer

# The local tier is a FIFOCache: run again on the fallback backend.
pytestmark = pytest.mark.backend


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    started = RedisServer(tmp_path_factory.mktemp("redis"))
    started.start()
    yield started
    started.stop()


@pytest.fixture
def url(server: RedisServer) -> str:
    """The server's URL, with an empty database."""
    if server.process is None:  # a test stopped it
        server.start()
    assert server.command("FLUSHALL") == b"+OK"
    return server.url


def stats(server: RedisServer, command: str) -> int:
    """How many times ``command`` ran since the last CONFIG RESETSTAT."""
    client = redis.Redis.from_url(server.url)
    try:
        found: dict[str, Any] = client.info("commandstats")
    finally:
        client.close()
    return int(found.get(f"cmdstat_{command}", {}).get("calls", 0))


class Point:
    """A value JSON cannot store."""

    def __init__(self, x: int) -> None:
        self.x = x

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Point) and other.x == self.x

    __hash__ = None  # type: ignore[assignment]


# --- RedisCache --------------------------------------------------------------------------------


def test_values_round_trip(url: str) -> None:
    async def main() -> None:
        cache: RedisCache[Any] = RedisCache(url=url, prefix="t:")
        values = [
            {"user": 1, "tags": ["a", "b"], "nested": {"ok": True, "none": None}},
            "text",
            42,
            1.5,
            -0.0,
            True,
            None,
            [],
            b"\x00raw bytes\xff",
            b"",
        ]
        for i, value in enumerate(values):
            await cache.set(f"k{i}", value)
            assert await cache.get(f"k{i}", "missing") == value
            assert type(await cache.get(f"k{i}")) is type(value)
        assert await cache.get("absent") is None
        assert await cache.get("absent", "fallback") == "fallback"
        assert await cache.delete("k0") is True
        assert await cache.delete("k0") is False
        assert await cache.get("k0", "gone") == "gone"
        await cache.aclose()

    run(main())


def test_prefix_keeps_caches_apart(url: str, server: RedisServer) -> None:
    async def main() -> None:
        a: RedisCache[int] = RedisCache(url=url, prefix="a:")
        b: RedisCache[int] = RedisCache(url=url, prefix="b:")
        await a.set("k", 1)
        await b.set("k", 2)
        assert (await a.get("k"), await b.get("k")) == (1, 2)
        await a.aclose()
        await b.aclose()

    run(main())
    assert server.command("EXISTS", "a:k") == b":1"


def test_ttl_expires_values(url: str, server: RedisServer) -> None:
    async def main() -> None:
        cache: RedisCache[str] = RedisCache(url=url, prefix="t:", ttl=60)
        await cache.set("default", "v")
        await cache.set("short", "v", ttl=0.05)
        await cache.set_many({"many": "v"}, ttl=0.05)
        await asyncio.sleep(0.2)  # time: four times the 0.05 s ttl
        assert await cache.get("short") is None
        assert await cache.get("many") is None
        assert await cache.get("default") == "v"
        await cache.aclose()

    run(main())
    ttl = int(server.command("PTTL", "t:default")[1:])
    assert 0 < ttl <= 60_000


@pytest.mark.parametrize(
    "value",
    [(1, 2), {1, 2}, {1: "int key"}, math.nan, math.inf, Point(1), object(), [1, (2, 3)]],
    ids=["tuple", "set", "int-key", "nan", "inf", "object", "bare-object", "nested-tuple"],
)
def test_json_refuses_what_would_not_come_back_equal(url: str, value: Any) -> None:
    async def main() -> None:
        cache: RedisCache[Any] = RedisCache(url=url, prefix="t:")
        await cache.set("k", "before")
        with pytest.raises(TypeError, match="PICKLE"):
            await cache.set("k", value)
        with pytest.raises(TypeError, match="PICKLE"):
            await cache.set_many({"other": 1, "k": value})
        assert await cache.get("k") == "before"  # nothing written
        assert await cache.get("other") is None
        await cache.aclose()

    run(main())


def test_pickle_is_opt_in_and_reads_json_too(url: str) -> None:
    async def main() -> None:
        safe: RedisCache[Any] = RedisCache(url=url, prefix="t:")
        trusting: RedisCache[Any] = RedisCache(url=url, prefix="t:", serializer=PICKLE)
        await trusting.set("point", Point(3))
        await safe.set("json", {"a": [1]})
        assert await trusting.get("point") == Point(3)
        assert await trusting.get("json") == {"a": [1]}
        assert await safe.get("point", "miss") == "miss"  # never unpickled
        with pytest.raises(TypeError, match="cannot pickle"):
            await trusting.set("lambda", lambda: 1)
        await safe.aclose()
        await trusting.aclose()

    run(main())


@pytest.mark.parametrize(
    "raw",
    [b"garbage", b"", b"j{not json", b"p\x80\x04junk", b"\xff\xfe"],
    ids=["untagged", "empty", "bad-json", "pickle-tag", "binary"],
)
def test_a_corrupt_value_is_a_logged_miss(
    url: str, server: RedisServer, raw: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        writer = aioredis.Redis.from_url(url)
        await writer.set("t:bad", raw)
        await writer.rpush("t:list", "x")  # a key of another type
        await writer.aclose()
        cache: RedisCache[Any] = RedisCache(url=url, prefix="t:")
        await cache.set("good", 1)
        with caplog.at_level(logging.WARNING, "pepperpy_core.redis"):
            assert await cache.get("bad", "miss") == "miss"
            assert await cache.get("list", "miss") == "miss"
            assert await cache.get_many(["bad", "good"]) == {"good": 1}
        assert "t:bad" in caplog.text
        assert "t:list" in caplog.text
        await cache.aclose()

    run(main())


@pytest.mark.parametrize("key", [1, b"k", None, ("a",)])
def test_keys_must_be_str(url: str, key: Any) -> None:
    async def main() -> None:
        cache: RedisCache[Any] = RedisCache(url=url, prefix="t:")
        for call in (
            lambda: cache.get(key),
            lambda: cache.set(key, 1),
            lambda: cache.delete(key),
            lambda: cache.get_many(["ok", key]),
            lambda: cache.set_many([("ok", 1), (key, 1)]),
        ):
            with pytest.raises(TypeError, match="must be a str"):
                await call()
        assert await cache.get("ok") is None  # nothing of the batch written
        await cache.aclose()

    run(main())


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"url": "redis://x", "client": aioredis.Redis()}, TypeError),
        ({"client": "redis://127.0.0.1"}, TypeError),
        ({"prefix": 3}, TypeError),
        ({"ttl": 0}, ValueError),
        ({"ttl": "1"}, TypeError),
        ({"timeout": None}, TypeError),
        ({"timeout": -1}, ValueError),
        ({"serializer": object()}, TypeError),
    ],
)
def test_bad_construction_is_refused(kwargs: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        RedisCache(**kwargs)


def test_many_keys_take_one_round_trip(url: str, server: RedisServer) -> None:
    async def main() -> None:
        cache: RedisCache[int] = RedisCache(url=url, prefix="t:")
        keys = [f"k{i}" for i in range(100)]
        server.command("CONFIG", "RESETSTAT")
        await cache.set_many({k: i for i, k in enumerate(keys)})
        await cache.set_many({k: i for i, k in enumerate(keys)}, ttl=30)
        found = await cache.get_many([*keys, "absent"])
        assert found == {k: i for i, k in enumerate(keys)}
        await cache.aclose()

    run(main())
    assert stats(server, "mget") == 1
    # Each set_many is one script (the values and their announcement): the
    # first is sent whole (EVAL after NOSCRIPT), the second by its digest.
    assert stats(server, "evalsha") + stats(server, "eval") <= 3
    assert stats(server, "publish") == 2  # one announcement each
    assert stats(server, "set") == 200  # run inside the scripts
    assert stats(server, "get") == 0  # no per-key reads


# --- outages, timeouts, cancellation -----------------------------------------------------------


def test_an_unreachable_server_is_cache_unavailable_quickly(url: str) -> None:
    async def main() -> None:
        from tests.servers import free_port

        # A timeout far past the test's own bound: a refused connection must
        # be reported as such, never waited out.
        cache: RedisCache[int] = RedisCache(
            url=f"redis://127.0.0.1:{free_port()}/0", prefix="t:", timeout=3600
        )
        for call in (lambda: cache.get("k"), lambda: cache.set("k", 1), lambda: cache.delete("k")):
            with pytest.raises(CacheUnavailableError, match="could not run"):
                await call()
        await cache.aclose()

    run(main())


def test_every_call_is_bounded_by_the_timeout(url: str, server: RedisServer) -> None:
    async def main() -> None:
        cache: RedisCache[int] = RedisCache(url=url, prefix="t:", timeout=0.2)
        await cache.set("k", 1)
        server.command("CLIENT", "PAUSE", "1500", "ALL")  # the server stops answering
        with pytest.raises(CacheUnavailableError, match=r"within 0\.2 s"):
            await cache.get("k")  # cut by the timeout, long before the pause ends
        server.command("CLIENT", "UNPAUSE")
        assert await cache.get("k") == 1  # and it recovers by itself
        await cache.aclose()

    run(main())


def test_a_caller_cancelled_mid_call_leaves_no_half_read_connection(
    url: str, server: RedisServer
) -> None:
    """redis-py issues 2665 and 4121: a command cancelled while its reply
    was on the way left the reply on a pooled connection, for the next
    command to read as its own."""

    async def main() -> None:
        client = aioredis.Redis.from_url(url, max_connections=1)  # one connection for all
        cache: RedisCache[str] = RedisCache(client, prefix="t:", timeout=5)
        await cache.set_many({"a": "value of a", "b": "value of b"})
        for delay in (0.0, 0.001, 0.01, 0.05):
            server.command("CLIENT", "PAUSE", "200", "ALL")
            reading = asyncio.ensure_future(cache.get("a"))
            await asyncio.sleep(delay)
            reading.cancel()
            with pytest.raises(asyncio.CancelledError):
                await reading
            await asyncio.sleep(0.25)  # time: the 200 ms pause is over (or the reads wait)
            for _ in range(3):
                assert await cache.get("b") == "value of b"
                assert await cache.get("a") == "value of a"
        await client.aclose()

    run(main())


# --- TieredCache -------------------------------------------------------------------------------


def tier(url: str, prefix: str = "t:", **kwargs: Any) -> TieredCache[Any]:
    return TieredCache(FIFOCache(100), RedisCache(url=url, prefix=prefix), **kwargs)


def test_reads_fill_the_local_cache_and_writes_reach_both(url: str) -> None:
    async def main() -> None:
        t = tier(url)
        await t.subscribed()
        await t.remote.set("k", "from redis")
        await settled(t)  # (the write announced "k"; heard before the read below)
        assert t.peek("k") is None
        assert await t.get("k") == "from redis"
        assert t.peek("k") == "from redis"  # kept locally
        assert t["k"] == "from redis"
        await t.set("w", {"x": 1})
        assert t.peek("w") == {"x": 1}
        assert await t.remote.get("w") == {"x": 1}
        await t.set_many({"m1": 1, "m2": 2})
        assert await t.get_many(["m1", "m2", "k", "absent"]) == {
            "m1": 1,
            "m2": 2,
            "k": "from redis",
        }
        # A copy with a time to live is kept too (that it never outlives the
        # value in Redis: test_redis_hostile.py and test_tier_store.py).
        await t.set("brief", "for a minute", ttl=60)
        assert t.peek("brief") == "for a minute"
        assert await t.delete("w") is True
        assert t.peek("w") is None
        assert await t.remote.get("w") is None
        with pytest.raises(KeyError):
            t["w"]
        await t.aclose()
        await t.remote.aclose()

    run(main())


def test_a_write_in_one_process_drops_the_copies_in_the_others(url: str) -> None:
    async def main() -> None:
        a, b, c = tier(url), tier(url), tier(url)
        for t in (a, b, c):
            await t.set("shared", "v1")
        await settled(a, b, c)
        for t in (a, b, c):
            assert await t.get("shared") == "v1"
        await a.set("shared", "v2")
        await until(lambda: b.peek("shared") is None and c.peek("shared") is None, poll=0.0005)
        assert a.peek("shared") == "v2"  # its own message does not drop it
        assert await b.get("shared") == "v2"
        await c.delete("shared")
        await settled(a, b, c)
        assert a.peek("shared") is None
        assert b.peek("shared") is None
        for t in (a, b, c):
            await t.aclose()
            await t.remote.aclose()

    run(main())


def test_a_read_that_raced_a_write_is_not_kept(url: str) -> None:
    """A value read from Redis while another write was announced must not
    end up in the local cache (it may be the old one)."""

    async def main() -> None:
        reader, writer = tier(url), tier(url)
        await settled(reader, writer)
        await writer.set("k", "old")
        await settled(reader, writer)
        real_fetch = reader.remote.fetch

        async def slow_fetch(keys: Any) -> Any:
            found = await real_fetch(keys)  # reads "old"
            await writer.set("k", "new")  # announced while the read is in flight
            await settled(reader, writer)
            return found

        reader.remote.fetch = slow_fetch  # type: ignore[method-assign]
        assert await reader.get("k") == "old"
        reader.remote.fetch = real_fetch  # type: ignore[method-assign]
        assert reader.peek("k") is None  # not kept
        assert await reader.get("k") == "new"
        for t in (reader, writer):
            await t.aclose()
            await t.remote.aclose()

    run(main())


def test_tiers_agree_with_redis_after_random_concurrent_use(url: str) -> None:
    """Property: after any interleaving of reads, writes and deletes from
    three tiers, once the messages have arrived, every local copy equals
    what Redis holds."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    operation = st.tuples(
        st.integers(0, 2),  # which tier
        st.sampled_from(["get", "set", "delete", "get_many", "set_many"]),
        st.sampled_from(["a", "b", "c"]),
        st.integers(0, 5),
    )

    @settings(max_examples=25, deadline=None)
    @given(ops=st.lists(operation, min_size=1, max_size=25))
    def check(ops: list[tuple[int, str, str, int]]) -> None:
        async def main() -> None:
            tiers = [tier(url, prefix="p:") for _ in range(3)]
            try:
                await settled(*tiers)

                async def one(i: int, op: str, key: str, value: int) -> None:
                    t = tiers[i]
                    if op == "get":
                        await t.get(key)
                    elif op == "set":
                        await t.set(key, value)
                    elif op == "delete":
                        await t.delete(key)
                    elif op == "get_many":
                        await t.get_many([key, "a"])
                    else:
                        await t.set_many({key: value, "c": value + 1})

                await asyncio.gather(*(one(*op) for op in ops))
                await settled(*tiers)
                for t in tiers:
                    for key in ("a", "b", "c"):
                        local = t.peek(key, "absent")
                        if local != "absent":
                            assert local == await t.remote.get(key), (key, local)
            finally:
                for t in tiers:
                    await t.aclose()
                    await t.remote.aclose()
                client = aioredis.Redis.from_url(url)
                await client.flushall()
                await client.aclose()

        run(main())

    check()


def test_the_tier_survives_an_outage_and_listens_again(url: str, server: RedisServer) -> None:
    async def main() -> None:
        a, b = tier(url), tier(url)
        for t in (a, b):
            t.remote.timeout = 0.3
        await settled(a, b)
        await a.set("k", "v1")
        await settled(a, b)
        assert await b.get("k") == "v1"
        assert b.peek("k") == "v1"
        await asyncio.to_thread(server.stop)
        # Not listening, the tiers serve no local copy: announcements may be missed.
        await until(lambda: not a.listening and not b.listening, within=30)
        assert b.peek("k") is None
        assert await b.get("k", "miss") == "miss"  # unreachable: a miss
        with pytest.raises(CacheUnavailableError):
            await a.set("k", "v2")
        assert a.peek("k") is None  # a failed write leaves no local copy
        await asyncio.to_thread(server.start)
        await settled(a, b)
        assert b.peek("k") is None  # messages may have been missed: cleared
        await a.set("k", "v3")
        assert await b.get("k") == "v3"
        await settled(a, b)
        await a.set("k", "v4")
        await settled(a, b)
        assert b.peek("k") is None  # invalidations flow again
        for t in (a, b):
            await t.aclose()
            await t.remote.aclose()

    run(main(), timeout=60)


# --- RedisModule -------------------------------------------------------------------------------


def test_redis_module_owns_the_client(url: str, server: RedisServer) -> None:
    async def main() -> None:
        module = RedisModule(url=url, timeout=0.5)
        with pytest.raises(LifecycleError, match="no Redis client"):
            module.client  # noqa: B018
        await module.initialize()
        client = module.client
        assert await client.ping()
        assert await module.health_check() is True
        cache: RedisCache[int] = RedisCache(module, prefix="t:")
        await cache.set("k", 1)
        assert await cache.get("k") == 1
        server.stop()
        assert await module.health_check() is False
        server.start()
        assert await module.health_check() is True
        await module.cleanup()
        assert module.resources == []
        with pytest.raises(LifecycleError):
            module.client  # noqa: B018
        assert await module.health_check() is False

    run(main(), timeout=60)


def test_redis_module_refuses_to_start_without_a_server() -> None:
    async def main() -> None:
        from tests.servers import free_port

        module = RedisModule(url=f"redis://127.0.0.1:{free_port()}/0", timeout=0.3)
        with pytest.raises(CacheUnavailableError, match="PING"):
            await module.initialize()
        assert module.resources == []

    run(main())


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [({"url": 3}, TypeError), ({"timeout": 0}, ValueError), ({"timeout": None}, TypeError)],
)
def test_redis_module_refuses_bad_settings(kwargs: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        RedisModule(**kwargs)


@pytest.mark.parametrize("module", ["pepperpy_core.redis", "pepperpy_core.module.redis"])
def test_without_redis_py_the_import_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, module: str
) -> None:
    hide(monkeypatch, "redis")
    for name in [n for n in sys.modules if n.startswith("pepperpy_core") and "redis" in n]:
        monkeypatch.delitem(sys.modules, name)  # every module of ours that imports redis-py
    with pytest.raises(ImportError, match=r"pepperpy-core\[redis\]"):
        importlib.import_module(module)


def test_local_cache_adapter() -> None:
    async def main() -> None:
        local: LocalCache[str, int] = LocalCache(3, ttl=60)
        await local.set("a", 1)
        await local.set("short", 2, ttl=0.01)
        await local.set_many({"b": 3})
        assert await local.get("a") == 1
        await asyncio.sleep(0.05)  # time: five times the 0.01 s ttl
        assert await local.get("short", -1) == -1  # expired
        assert await local.get_many(["a", "b", "short"]) == {"a": 1, "b": 3}
        assert await local.delete("a") is True
        assert await local.delete("a") is False
        with pytest.raises(KeyError):
            local["a"]
        for many in range(200):  # evicted keys' deadlines do not pile up
            local.put(f"k{many}", many, ttl=60)
        assert len(local._deadlines) <= 2 * len(local) + 64 + 1
        plain: LocalCache[str, int] = LocalCache(3)  # nothing expires: reads are get()
        plain.put("forever", 1)
        plain.put("brief", 2, ttl=0.01)  # from now on reads check deadlines
        await asyncio.sleep(0.05)  # time: five times the 0.01 s ttl
        assert (plain.peek("forever"), plain.peek("brief")) == (1, None)
        plain.clear()
        plain.put("again", 3)
        assert plain.peek("again") == 3
        with pytest.raises(TypeError, match="maxsize"):
            LocalCache("nope")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="ttl"):
            LocalCache(3, ttl=-1)

    run(main())


def test_json_is_the_default() -> None:
    assert RedisCache(url="redis://127.0.0.1:1/0").serializer is JSON


def test_closing_a_tier_ends_its_listener_whatever_the_client_does(url: str) -> None:
    """The listener's cancellation can be swallowed inside redis-py (its
    asyncio.wait_for on Python 3.11); closing must still end it, also when
    the client was closed first, and repeatedly."""

    async def main() -> None:
        for close_client_first in (True, False, True, False):
            t = tier(url)
            await t.subscribed()
            await t.set("k", 1)
            if close_client_first:
                await t.remote.aclose()
            async with asyncio.timeout(5):
                await t.aclose()
            assert t._listener is None
            leftover = [
                task
                for task in asyncio.all_tasks()
                if "_listening" in getattr(task.get_coro(), "__qualname__", "")
            ]
            assert leftover == []
            await t.remote.aclose()

    run(main())


def test_a_tier_closes_after_its_loop_was_paused_between_runs(
    server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Code that drives a loop with run_until_complete() leaves the listener
    suspended between runs, its deadlines passing; closing must still end it
    (and the pings it sent meanwhile are not messages)."""
    loop = asyncio.new_event_loop()
    try:
        t = tier(server.url)
        loop.run_until_complete(t.set("k", 1))

        async def reads() -> None:
            for _ in range(1000):
                await t.get("k")

        for _ in range(3):
            loop.run_until_complete(reads())
            time.sleep(1.2)  # time: the loop does not run; the listener's timers pass
        loop.run_until_complete(t.remote.aclose())
        loop.run_until_complete(asyncio.wait_for(t.aclose(), 5))
        assert t._listener is None
        assert "malformed" not in caplog.text
    finally:
        loop.close()


def test_closing_a_tier_survives_a_client_that_swallows_cancellation(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fault injection for the class above: a pub/sub read that turns a
    cancellation into an ordinary return, as asyncio.wait_for does on 3.11
    when the inner call finishes at the same moment."""
    from redis.asyncio.client import PubSub

    real = PubSub.get_message
    swallowed = 0
    inside = 0  # listeners waiting in get_message now

    async def swallowing(self: PubSub, *args: Any, **kwargs: Any) -> Any:
        nonlocal swallowed, inside
        inside += 1
        try:
            return await real(self, *args, **kwargs)
        except asyncio.CancelledError:
            swallowed += 1
            return None
        finally:
            inside -= 1

    monkeypatch.setattr(PubSub, "get_message", swallowing)

    async def main() -> None:
        t = tier(url)
        await t.subscribed()
        await until(lambda: inside > 0)  # the listener waits in get_message now
        async with asyncio.timeout(5):
            await t.aclose()
        assert swallowed >= 1
        assert t._listener is None
        await t.remote.aclose()

    run(main())


# --- tags --------------------------------------------------------------------------------------


def test_invalidating_a_tag_drops_its_keys_everywhere(url: str, server: RedisServer) -> None:
    async def main() -> None:
        a, b = tier(url, prefix="g:"), tier(url, prefix="g:")
        await settled(a, b)
        await a.set("q1", 1, tags=["reports"])
        await a.set_many({"q2": 2, "q3": 3}, tags=["reports", "2026"])
        await a.set("other", 4, tags=["2026"])
        await settled(a, b)
        assert await b.get_many(["q1", "q2", "q3", "other"]) == {
            "q1": 1,
            "q2": 2,
            "q3": 3,
            "other": 4,
        }
        assert await a.invalidate_tag("reports") == 3
        await until(lambda: all(b.peek(k) is None for k in ("q1", "q2", "q3")), within=30)
        assert a.peek("q2") is None  # its own copies too
        assert await b.get_many(["q1", "q2", "q3", "other"]) == {"other": 4}
        assert await a.invalidate_tag("reports") == 0  # forgotten with its keys
        assert await b.invalidate_tag("2026") == 3  # q2, q3 (gone already) and other
        assert await a.get("other") is None
        await close_tiers(a, b)

    run(main())


def test_a_tag_lives_as_long_as_its_longest_key(url: str, server: RedisServer) -> None:
    async def main() -> None:
        cache: RedisCache[int] = RedisCache(url=url, prefix="g:")
        await cache.set("short", 1, ttl=10, tags=["t"])
        first = int(server.command("PTTL", "g:\0t:t")[1:])
        assert 0 < first <= 10_000
        await cache.set("long", 2, ttl=100, tags=["t"])
        assert 10_000 < int(server.command("PTTL", "g:\0t:t")[1:]) <= 100_000
        await cache.set("again", 3, ttl=1, tags=["t"])  # never shortens it
        assert int(server.command("PTTL", "g:\0t:t")[1:]) > 10_000
        await cache.set("forever", 4, tags=["t"])  # no expiry: neither has the tag
        assert server.command("PTTL", "g:\0t:t") == b":-1"
        assert set(await cache.invalidate_tag("t")) == {"short", "long", "again", "forever"}
        await cache.aclose()

    run(main())


@pytest.mark.parametrize(
    ("tags", "error"), [([1], TypeError), (["caf\udce9"], ValueError), ([b"x"], TypeError)]
)
def test_a_bad_tag_writes_nothing(url: str, server: RedisServer, tags: Any, error: Any) -> None:
    async def main() -> None:
        cache: RedisCache[int] = RedisCache(url=url, prefix="g:")
        with pytest.raises(error):
            await cache.set("k", 1, tags=tags)
        assert await cache.get("k") is None
        await cache.aclose()

    run(main())


async def close_tiers(*tiers: TieredCache[Any]) -> None:
    for t in tiers:
        await t.aclose()
        await t.remote.aclose()
