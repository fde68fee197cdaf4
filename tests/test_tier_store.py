"""TieredCache over a store of another kind than Redis (tests/memstore.py),
whose clock is the tier's: the tier's promises checked exactly, every way a
local copy can be made."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Iterator
from typing import Any
from unittest import mock

import pytest
from hypothesis import given
from hypothesis import strategies as st

import pepperpy_core.cache
from pepperpy_core.cache import LocalCache
from pepperpy_core.tier import TieredCache
from tests.asyncutil import run, settled, until
from tests.memstore import MemoryStore, Shared

pytestmark = pytest.mark.backend

KEYS = ("a", "b")
TTLS = st.sampled_from([None, 0.02, 5.0, 3600.0])

step = st.one_of(
    st.tuples(st.just("set"), st.sampled_from(KEYS), TTLS),
    st.tuples(st.just("set_many"), st.sampled_from(KEYS), TTLS),
    st.tuples(st.just("get"), st.sampled_from(KEYS), st.none()),
    st.tuples(st.just("get_many"), st.sampled_from(KEYS), st.none()),
    st.tuples(st.just("load"), st.sampled_from(KEYS), st.none()),
    st.tuples(st.just("load waited"), st.sampled_from(KEYS), st.none()),
    st.tuples(st.just("delete"), st.sampled_from(KEYS), st.none()),
    # The wall clock stepped (NTP, a VM restored from a snapshot), by seconds.
    st.tuples(st.just("step"), st.none(), st.sampled_from([-3600.0, -5.0, 5.0, 3600.0])),
)


class _Stepped:
    """A clock (``time.time`` by default) as it reads after the steps given
    to ``step``."""

    def __init__(self, real: Callable[[], float] = time.time) -> None:
        self.offset = 0.0
        self._real = real

    def __call__(self) -> float:
        return self._real() + self.offset

    def step(self, seconds: float) -> None:
        self.offset += seconds


def _tier(shared: Shared[Any], ttl: float | None, local_ttl: float | None) -> TieredCache[Any]:
    return TieredCache(LocalCache(100, ttl=local_ttl), MemoryStore(shared, ttl=ttl))


def _copies_outlive_nothing(tier: TieredCache[Any], shared: Shared[Any], by_wall: bool) -> None:
    """Every local copy ends no later than the store's value it copies, by
    the store's clock (the wall clock if ``by_wall``, else the monotonic)."""
    deadlines = tier.local._deadlines
    for key in KEYS:
        now = shared.clock()  # before the read: the copy, if any, is served after it
        if tier.peek(key) is None:
            continue
        assert shared.live(key, now), f"{key!r} is kept here, and gone from the store"
        assert tier.peek(key) == shared.values[key]
        if shared.deadlines[key] != float("inf"):
            ends = deadlines[key][1 if by_wall else 0]
            assert ends <= shared.deadlines[key], (key, deadlines, shared.deadlines)


@given(
    steps=st.lists(step, min_size=1, max_size=8),
    store_ttl=TTLS,
    local_ttl=st.sampled_from([None, 0.01, 3600.0]),
    by_wall=st.booleans(),
)
def test_no_local_copy_outlives_the_stored_value(
    steps: list[tuple[str, Any, float | None]],
    store_ttl: float | None,
    local_ttl: float | None,
    by_wall: bool,
) -> None:
    """Whatever the tiers do, and however the wall clock is stepped, no copy
    outlives its value in a store that expires by either clock."""
    wall = _Stepped()

    async def main() -> None:
        # (main runs under the patch below: time.time is the stepped clock)
        shared: Shared[Any] = Shared(clock=time.time if by_wall else time.monotonic)
        writer, reader = _tier(shared, store_ttl, local_ttl), _tier(shared, store_ttl, local_ttl)
        await settled(writer, reader)
        for n, (op, key, ttl) in enumerate(steps):
            value = f"{op}-{n}"
            if op == "set":
                await writer.set(key, value, ttl=ttl)
            elif op == "set_many":
                await writer.set_many({key: value}, ttl=ttl)
            elif op == "get":
                await reader.get(key)
            elif op == "get_many":
                await reader.get_many([key])
            elif op == "load":
                await writer.load(key, functools.partial(_now, value))
            elif op == "load waited":
                await _load_waited(writer, reader, shared, key, value)
            elif op == "step":
                assert ttl is not None
                wall.step(ttl)
            else:
                await writer.delete(key)
            await settled(writer, reader)
            _copies_outlive_nothing(writer, shared, by_wall)
            _copies_outlive_nothing(reader, shared, by_wall)
        await writer.aclose()
        await reader.aclose()

    with mock.patch.object(time, "time", wall):
        run(main())


async def _now(value: str) -> str:
    return value


async def _load_waited(
    owner: TieredCache[Any], waiter: TieredCache[Any], shared: Shared[Any], key: str, value: str
) -> None:
    """``waiter`` loads ``key`` while ``owner`` holds its lock and loads it."""
    gate = asyncio.Event()

    async def slow() -> str:
        await gate.wait()
        return value

    await owner.delete(key)  # so that the owner's load runs its loader
    owned = asyncio.ensure_future(owner.load(key, slow))
    await until(lambda: key in shared.locks, within=30)
    waited = asyncio.ensure_future(waiter.load(key, lambda: _now("waiter's")))
    await asyncio.sleep(0)
    gate.set()
    got = await owned
    assert await waited in (got, "waiter's")  # "waiter's": the value had already expired


@pytest.mark.parametrize("bad", ["soon", True, float("nan"), object()])
def test_a_deadline_that_is_no_reading_is_refused(bad: object) -> None:
    local: LocalCache[str, int] = LocalCache(10)
    local.put("k", 1)
    with pytest.raises(TypeError, match=r"until must be a time.monotonic\(\) reading"):
        local.put("k", 2, until=bad)  # type: ignore[arg-type]
    assert local.peek("k") == 1


def test_the_earlier_of_ttl_and_until_ends_a_copy() -> None:
    local: LocalCache[str, int] = LocalCache(10, ttl=3600)
    soon = time.monotonic() + 5
    local.put("k", 1, until=soon)
    assert local._deadlines["k"][0] == soon
    local.put("j", 1, until=soon + 7200)
    assert local._deadlines["j"][0] != soon + 7200  # the ttl's hour came first
    local.put("gone", 1, until=time.monotonic() - 1)
    assert local.peek("gone") is None


@pytest.mark.parametrize("read", ["peek", "get_many"])
def test_an_entry_ends_by_whichever_clock_reads_its_end_first(read: str) -> None:
    """A wall clock stepped forward ends an entry early; one stepped back
    keeps it no longer than the monotonic clock allows; ``until`` too."""
    wall, monotonic = _Stepped(), _Stepped(time.monotonic)
    local: LocalCache[str, int] = LocalCache(10, ttl=60)

    def seen(key: str) -> int | None:
        return local.peek(key) if read == "peek" else run(local.get_many([key])).get(key)

    with mock.patch.object(time, "time", wall), mock.patch.object(time, "monotonic", monotonic):
        local.put("k", 1)
        local.put("u", 2, until=time.monotonic() + 30)
        wall.step(-3600)
        assert (seen("k"), seen("u")) == (1, 2)
        wall.step(3600 + 29)
        assert (seen("k"), seen("u")) == (1, 2)
        wall.step(2)  # 31 s on by the wall clock: past ``until``
        assert (seen("k"), seen("u")) == (1, None)
        wall.step(30)
        assert seen("k") is None
        assert not local._deadlines
        local.put("k", 1)
        wall.step(-3600)
        monotonic.step(59)
        assert seen("k") == 1
        monotonic.step(2)
        assert seen("k") is None


class _HeldReplies(MemoryStore[Any]):
    """A store whose replies to reads and writes wait at ``gate`` once they
    are made, so that announcements can arrive while they are on their way."""

    def __init__(self, shared: Shared[Any]) -> None:
        super().__init__(shared)
        self.gate = asyncio.Event()
        self.waiting = asyncio.Event()

    async def _hold(self) -> None:
        self.waiting.set()
        await self.gate.wait()

    async def fetch(self, keys: Any) -> Any:
        found = await super().fetch(keys)
        await self._hold()
        return found

    async def write(self, items: Any, **options: Any) -> int:
        receivers = await super().write(items, **options)
        await self._hold()
        return receivers


async def _with_a_change_on_the_way(
    shared: Shared[Any], request: Any, held: _HeldReplies, change: Any, heard: TieredCache[Any]
) -> Any:
    """Run ``request`` and ``change`` while its reply is held; the reply goes
    on once ``heard`` has received the change's announcement."""
    before = heard.received
    on_its_way = asyncio.ensure_future(request)
    await held.waiting.wait()
    await change
    await until(lambda: heard.received > before, within=30)
    held.gate.set()
    return await on_its_way


@pytest.mark.parametrize("changed", ["another key", "the same key"])
def test_a_reply_is_kept_unless_its_own_key_changed_on_the_way(changed: str) -> None:
    """A read's (or a write's) reply is kept locally when only other keys
    changed while it was on its way; a change of its own key is why not."""

    async def main() -> None:
        shared: Shared[Any] = Shared()
        other = _tier(shared, None, None)
        for request in ("get", "set"):
            held = _HeldReplies(shared)
            tier: TieredCache[Any] = TieredCache(LocalCache(100), held)
            await settled(tier, other)
            await other.set("k", "old")
            await settled(tier, other)
            key = "k" if changed == "the same key" else "elsewhere"
            call = tier.get("k") if request == "get" else tier.set("k", "mine")
            await _with_a_change_on_the_way(shared, call, held, other.set(key, "new"), tier)
            if changed == "another key":
                assert tier.peek("k") == ("old" if request == "get" else "mine"), request
            else:
                assert tier.peek("k") is None, request  # which came last is not known here
            await tier.aclose()
        await other.aclose()

    run(main())


# --- get_many: a bad input reads nothing locally -----------------------------


class _HashBoom:
    def __hash__(self) -> int:
        raise ArithmeticError("hash boom")


class _EqBoom:
    """Equal hashes, and an ``__eq__`` that raises."""

    def __hash__(self) -> int:
        return 42

    def __eq__(self, other: object) -> bool:
        raise LookupError("eq boom")


def _cut_short(keys: list[Any]) -> Iterator[Any]:
    yield from keys
    raise RuntimeError("iterator boom")


def _seen(cache: Any) -> tuple[Any, Any]:
    """What a read would change of a cache: its state (S3-FIFO's freqs) and stats."""
    return cache.__reduce__()[2], cache.stats()


@pytest.mark.parametrize("kind", ["FIFOCache", "S3FIFOCache"])
@pytest.mark.parametrize("ttl", [None, 3600.0])
def test_a_local_get_many_that_fails_reads_nothing(kind: str, ttl: float | None) -> None:
    """LocalCache.get_many is its cache's: a key that fails to hash or
    compare, or an iterator that raises, leaves no hit, miss or use behind."""
    cache = getattr(pepperpy_core.cache, kind)(8)
    local: LocalCache[Any, Any] = LocalCache(cache, ttl=ttl)
    for key in ("a", "b", "c"):
        local.put(key, key)
    local.put(_EqBoom(), "eq")
    before = _seen(cache)
    for bad, error in (
        (["a", "x", "b", _HashBoom()], ArithmeticError),
        (["a", "x", "b", _EqBoom()], LookupError),
        (_cut_short(["a", "x", "b"]), RuntimeError),
    ):
        with pytest.raises(error, match="boom"):
            run(local.get_many(bad))
        assert _seen(cache) == before
    assert run(local.get_many(["a", "x", "b"])) == {"a": "a", "b": "b"}
    assert (cache.stats().hits, cache.stats().misses) == (2, 1)


def test_a_tier_get_many_that_fails_reads_nothing() -> None:
    """Every key is checked (a str) before any local copy is read."""

    async def main() -> None:
        cache = pepperpy_core.cache.S3FIFOCache[str, Any](8)
        tier: TieredCache[Any] = TieredCache(LocalCache(cache), MemoryStore(Shared()))
        await settled(tier)
        await tier.set_many({"a": 1, "b": 2})
        before = _seen(cache)
        with pytest.raises(TypeError, match="must be a str"):
            await tier.get_many(["a", "b", 5])  # type: ignore[list-item]
        with pytest.raises(RuntimeError, match="iterator boom"):
            await tier.get_many(_cut_short(["a", "b"]))
        assert _seen(cache) == before
        assert await tier.get_many(["a", "b"]) == {"a": 1, "b": 2}
        assert cache.stats().hits == 2
        await tier.aclose()

    run(main())


@pytest.mark.parametrize("kind", ["FIFOCache", "S3FIFOCache"])
@pytest.mark.parametrize("ttl", [None, 3600.0])
def test_a_local_set_many_that_fails_stores_nothing(kind: str, ttl: float | None) -> None:
    """LocalCache.set_many is its cache's: a bad pair or key stores no pair
    and gives no key a deadline."""
    cache = getattr(pepperpy_core.cache, kind)(8)
    local: LocalCache[Any, Any] = LocalCache(cache, ttl=ttl)
    local.put("a", 1)
    before = cache.items(), cache.stats(), dict(local._deadlines)
    for bad, error in (
        ([("b", 2), ([], 3)], TypeError),
        ([("b", 2), ("c", 3, 4)], ValueError),
        ([("b", 2), 5], TypeError),
        ([("b", 2), (_HashBoom(), 3)], ArithmeticError),
        ([("b", 2), (_EqBoom(), 3), (_EqBoom(), 4)], LookupError),
    ):
        with pytest.raises(error):
            run(local.set_many(bad, ttl=60))
        assert (cache.items(), cache.stats(), dict(local._deadlines)) == before
    run(local.set_many(iter([("b", 2), ["c", 3]]), ttl=60))
    assert cache.items()[-2:] == [("b", 2), ("c", 3)]
    assert set(local._deadlines) == ({"a", "b", "c"} if ttl else {"b", "c"})
