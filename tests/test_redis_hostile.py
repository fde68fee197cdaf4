"""The Redis tier against hostile data and a failing server (a real
redis-server on loopback): whatever is in Redis, whatever arrives on the
channel, whatever key a user picks, a read is a value or a miss, a wait is
bounded, and what the loader can answer reaches the caller."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from hypothesis import given, settings
from hypothesis import strategies as st

from pepperpy_core.cache import FIFOCache
from pepperpy_core.errors import CacheUnavailableError, CorruptValueError
from pepperpy_core.module import CachedModule, ModuleConfig
from pepperpy_core.redis import RedisCache, TieredCache, _Names
from pepperpy_core.serializers import JSON, PICKLE
from tests.asyncutil import run, settled, until, until_true
from tests.servers import RedisServer

pytestmark = pytest.mark.backend

DEEP = b"j" + b"[" * 100_000 + b"]" * 100_000  # JSON nested past any recursion limit


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    started = RedisServer(tmp_path)
    started.start()
    yield started
    if started.process is not None:
        started.process.send_signal(signal.SIGCONT)  # if a test stopped it
    started.stop()


def tier(url: str, **kwargs: Any) -> TieredCache[Any]:
    return TieredCache(FIFOCache(100), RedisCache(url=url, prefix="h:", timeout=0.5), **kwargs)


async def close(*tiers: TieredCache[Any]) -> None:
    for t in tiers:
        await t.aclose()
        await t.remote.aclose()


# --- what a serializer reads back --------------------------------------------------------------


@pytest.mark.parametrize("serializer", [JSON, PICKLE], ids=repr)
@pytest.mark.parametrize(
    "data",
    [DEEP, b"jNaN", b"j-Infinity", b"j[1, NaN]", b"j\xff\xfe", b"j" + b"9" * 5000, b"", b"x"],
    ids=["deep", "NaN", "-Infinity", "NaN in a list", "not UTF-8", "huge int", "empty", "tag"],
)
def test_whatever_the_bytes_a_reader_says_corrupt(serializer: Any, data: bytes) -> None:
    with pytest.raises(CorruptValueError):
        serializer.loads(data)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_what_a_reader_refuses_a_writer_refuses(value: float) -> None:
    with pytest.raises(TypeError):
        JSON.dumps(value)
    with pytest.raises(TypeError):
        JSON.dumps([value])


def test_a_value_nested_too_deep_is_refused_before_anything_is_written() -> None:
    deep: Any = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(TypeError, match="nested too deep"):
        JSON.dumps(deep)


# --- hostile values in Redis -------------------------------------------------------------------


def test_a_deeply_nested_value_in_redis_is_a_counted_miss_everywhere(
    server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        raw = aioredis.Redis.from_url(server.url)
        await raw.set("h:bad", DEEP)
        t = tier(server.url)
        module = CachedModule(ModuleConfig(name="reports"), cache=t)

        async def loader() -> str:
            return "loaded"

        with caplog.at_level(logging.WARNING, "pepperpy_core.redis"):
            assert await t.remote.get("bad", "miss") == "miss"
            assert await t.remote.get_many(["bad"]) == {}
            assert await t.get("bad", "miss") == "miss"
            assert await t.get_many(["bad"]) == {}
            assert await module.get_or_load("bad", loader) == "loaded"
        assert t.remote.unreadable >= 5  # each read counted
        said = [r for r in caplog.records if "cannot read" in r.getMessage()]
        assert len(said) == 1  # and said once
        assert await raw.get("h:bad") != DEEP  # the load replaced it
        await close(t)
        await raw.aclose()

    run(main())


@pytest.mark.parametrize(
    "key",
    [chr(0xDCE9), "caf" + chr(0xDCE9) + ".txt", "x" + chr(0xD800)],
    ids=["lone", "fsdecode", "high"],
)
def test_a_key_that_is_not_utf8_is_a_clear_error_and_nothing_changes(
    server: RedisServer, key: str
) -> None:
    async def main() -> None:
        t = tier(server.url)
        for call in (
            lambda: t.remote.get(key),
            lambda: t.remote.set(key, 1),
            lambda: t.remote.delete(key),
            lambda: t.remote.get_many([key]),
            lambda: t.set(key, 1),
            lambda: t.get_many([key]),
            lambda: t.load(key, _value("v")),
            lambda: t.set("ok", 1, tags=[key]),
        ):
            with pytest.raises(ValueError, match="valid UTF-8"):
                await call()
        raw = aioredis.Redis.from_url(server.url)
        assert await raw.dbsize() == 0
        await raw.aclose()
        await close(t)

    run(main())


# --- user keys never meet the cache's own ------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(first=st.text(max_size=12), second=st.text(max_size=12), cluster=st.booleans())
def test_no_key_takes_the_name_of_another_keys_lock_tag_or_channel(
    first: str, second: str, cluster: bool
) -> None:
    names = _Names("app:", cluster)
    own = {names.lock(second), names.tag(second), names.channel(), names.channel(7)}
    assert names.value(first) not in own
    if first != second:
        assert names.value(first) != names.value(second)
        assert names.lock(first) != names.lock(second)
    if cluster:  # a key's lock lives in its slot, so one script reaches both
        assert _slot(names.lock(first)) == names.slot(first)


def _slot(name: str) -> int:
    from redis.crc import key_slot

    return int(key_slot(name.encode()))


@pytest.mark.parametrize(
    "hostile", ["__lock__:report-42", "\0l:report-42", "\0\0l:report-42", "\0i", "\0t:x"]
)
def test_a_user_key_named_like_a_lock_does_not_stop_loads(
    server: RedisServer, hostile: str
) -> None:
    async def main() -> None:
        t = tier(server.url)
        await t.set(hostile, "a user's value")
        loads = 0

        async def loader() -> str:
            nonlocal loads
            loads += 1
            return "report"

        async with asyncio.timeout(30):  # (a collision waited for ever)
            assert await t.load("report-42", loader) == "report"
        assert loads == 1
        assert await t.remote.get(hostile) == "a user's value"
        await close(t)

    run(main())


def test_a_lock_that_would_never_expire_is_bounded(server: RedisServer) -> None:
    async def main() -> None:
        t = tier(server.url, lock_ttl=0.3)
        raw = aioredis.Redis.from_url(server.url)
        await raw.set(_Names("h:", cluster=False).lock("k"), "not a token of ours")  # no expiry
        async with asyncio.timeout(30):
            assert await t.load("k", _value("v")) == "v"
        await raw.aclose()
        await close(t)

    run(main())


# --- the announcements -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "message",
    [b"[" * 100_000 + b"]" * 100_000, b"\xff", b"{}", b'{"o": 1, "k": 2}', b"x" * 100, b"null"],
    ids=["deep", "not UTF-8", "empty object", "wrong types", "junk", "null"],
)
def test_a_hostile_message_on_the_channel_is_counted_and_the_tier_listens_on(
    server: RedisServer, message: bytes
) -> None:
    async def main() -> None:
        reader, writer = tier(server.url), tier(server.url)
        await settled(reader, writer)
        raw = aioredis.Redis.from_url(server.url)
        assert await raw.publish(_Names("h:", cluster=False).channel(), message) == 2
        await writer.set("k", "v1")
        assert await reader.get("k") == "v1"
        await writer.set("k", "v2")  # announced after the hostile message
        await until(lambda: reader.peek("k") is None, within=30)
        assert reader.listening
        assert reader.remote.malformed == 1
        await raw.aclose()
        await close(reader, writer)

    run(main())


def test_a_listener_that_loses_its_connection_serves_no_copies_until_it_is_back(
    server: RedisServer,
) -> None:
    async def main() -> None:
        reader, writer = tier(server.url), tier(server.url)
        await settled(reader, writer)
        await writer.set("k", "v1")
        await settled(reader, writer)  # (its announcement, heard before the read)
        assert await reader.get("k") == "v1"
        assert reader.peek("k") == "v1"
        raw = aioredis.Redis.from_url(server.url)
        await raw.client_kill_filter(_type="pubsub")  # both listeners' connections
        await until(lambda: not reader.listening or reader.peek("k") is None, within=30)
        assert reader.peek("k") is None  # while it may miss announcements: no copies
        await settled(reader, writer)  # back, by itself
        assert await reader.get("k") == "v1"
        await writer.set("k", "v2")
        await until(lambda: reader.peek("k") is None, within=30)  # and announcements flow
        await raw.aclose()
        await close(reader, writer)

    run(main())


# --- local copies never outlive Redis's --------------------------------------------------------

# Seconds the values below live in Redis: short, so that the tests see them
# go, and far longer than a loopback round trip, so that a copy is always
# made (a copy is kept only for the time the value has left once the reply
# is read).
_BRIEF = 1.0


@pytest.mark.parametrize("how", ["get", "get_many", "load found", "load waited"])
def test_a_local_copy_never_outlives_the_value_in_redis(server: RedisServer, how: str) -> None:
    async def main() -> None:
        reader, writer = tier(server.url), tier(server.url)
        await settled(reader, writer)
        raw = aioredis.Redis.from_url(server.url)
        if how == "load waited":
            gate = asyncio.Event()

            async def slow() -> str:
                await gate.wait()
                return "v"

            writer.remote.ttl = _BRIEF
            await raw.delete("h:k")  # (the settling deletes announce keys of their own)
            owner = asyncio.ensure_future(writer.load("k", slow))
            await until(lambda: "k" in writer._flights, within=30)
            await until_locked(raw)
            waiting = asyncio.ensure_future(reader.load("k", _value("never")))
            await asyncio.sleep(0)
            gate.set()
            assert await owner == "v"
            assert await waiting == "v"
        else:
            await raw.set("h:k", b'j"v"', px=int(_BRIEF * 1000))
            if how == "get":
                assert await reader.get("k") == "v"
            elif how == "get_many":
                assert await reader.get_many(["k"]) == {"k": "v"}
            else:
                assert await reader.load("k", _value("never")) == "v"
        await _outlived_by_none(raw, reader)
        await raw.aclose()
        await close(reader, writer)

    run(main())


@pytest.mark.parametrize("how", ["set", "set_many", "load owned"])
def test_a_writers_own_copy_never_outlives_what_it_wrote(server: RedisServer, how: str) -> None:
    async def main() -> None:
        writer = tier(server.url)
        writer.remote.ttl = _BRIEF
        await settled(writer)
        raw = aioredis.Redis.from_url(server.url)
        if how == "set":
            await writer.set("k", "v")
        elif how == "set_many":
            await writer.set_many({"k": "v"})
        else:
            assert await writer.load("k", _value("v")) == "v"
        await _outlived_by_none(raw, writer)
        await raw.aclose()
        await close(writer)

    run(main())


async def _outlived_by_none(raw: aioredis.Redis, copier: TieredCache[str]) -> None:
    """``copier`` keeps a copy of ``k`` while Redis has it, and none after."""
    assert copier.peek("k") == "v"
    await until_true(lambda: _gone(raw, "h:k"))
    # Redis no longer has it: the local copy went no later.
    assert copier.peek("k") is None


async def until_locked(raw: aioredis.Redis, key: str = "k") -> None:
    await until_true(lambda: raw.exists(_Names("h:", cluster=False).lock(key)))


async def _gone(raw: aioredis.Redis, name: str) -> bool:
    return not await raw.exists(name)


# --- a server that dies or stops while a load waits --------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSTOP], ids=["killed", "stopped"])
def test_a_waiter_whose_server_goes_away_runs_the_loader(
    server: RedisServer, sig: signal.Signals
) -> None:
    async def main() -> None:
        owner, waiter = tier(server.url), tier(server.url)
        await settled(owner, waiter)
        gate = asyncio.Event()

        async def slow() -> str:
            await gate.wait()
            return "from the owner"

        owning = asyncio.ensure_future(owner.load("k", slow))
        raw = aioredis.Redis.from_url(server.url)
        await until_locked(raw)
        await raw.aclose()
        claimed = asyncio.Event()
        claim = waiter.remote.claim

        async def claim_noted(*args: Any, **kwargs: Any) -> Any:
            try:
                return await claim(*args, **kwargs)
            finally:
                claimed.set()

        waiter.remote.claim = claim_noted  # type: ignore[method-assign]
        waiting = asyncio.ensure_future(waiter.load("k", _value("from the waiter")))
        await claimed.wait()  # told that the owner loads: it waits for the announcement now
        assert not waiting.done()
        assert server.process is not None
        os.kill(server.process.pid, sig)
        async with asyncio.timeout(30):
            assert await waiting == "from the waiter"  # never CacheUnavailableError
        gate.set()
        async with asyncio.timeout(30):
            assert await owning == "from the owner"
        if sig == signal.SIGSTOP:
            os.kill(server.process.pid, signal.SIGCONT)
        else:
            await asyncio.to_thread(server.process.wait)
            server.process = None
        await close(owner, waiter)

    run(main(), timeout=90)


def _value(value: str) -> Any:
    async def load() -> str:
        return value

    return load


def test_an_unreachable_store_costs_one_timeout_not_one_per_request(
    server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        t = tier(server.url)
        await t.subscribed()
        server.stop()
        with caplog.at_level(logging.WARNING, "pepperpy_core.tier"):
            values = await asyncio.gather(*(t.load(f"k{i}", _value("v")) for i in range(200)))
        assert values == ["v"] * 200
        went = [r for r in caplog.records if "loaders answer" in r.getMessage()]
        assert len(went) == 1  # said once, not once per request
        with pytest.raises(CacheUnavailableError):
            await t.set("k", 1)
        await close(t)

    run(main(), timeout=60)
