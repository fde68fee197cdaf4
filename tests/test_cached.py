"""CachedModule.get_or_load: single flight, failures, cancellation, stats."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from pepperpy_core.errors import CircularLoadError
from pepperpy_core.module import CachedModule, LoadStats, ModuleConfig
from tests.asyncutil import run
from tests.virtualtime import run_virtual

pytestmark = pytest.mark.backend


def test_hundred_callers_one_load() -> None:
    m = CachedModule()
    loads = 0

    async def loader() -> str:
        nonlocal loads
        loads += 1
        await asyncio.sleep(0.01)
        return "value"

    async def main() -> list[str]:
        return await asyncio.gather(*(m.get_or_load("k", loader) for _ in range(100)))

    assert run(main()) == ["value"] * 100
    assert loads == 1
    assert m.cache.items() == [("k", "value")]  # a snapshot reads without counting
    assert m.cache_stats() == LoadStats(hits=0, misses=100, loads=1, failures=0)
    assert run(m.get_or_load("k", loader)) == "value"
    assert m.cache_stats().hits == 1


async def _load_42() -> int:
    return 42


def test_the_modules_own_cache_counts_every_read_of_it_once() -> None:
    m = CachedModule(maxsize=4)
    assert run(m.get_or_load("a", _load_42)) == 42  # a miss, a load
    assert run(m.get_or_load("a", _load_42)) == 42  # a hit
    assert m.cache_stats() == LoadStats(hits=1, misses=1, loads=1, failures=0)
    # The cache's own counts are the module's: a direct read counts there too.
    assert m.cache.get("a") == 42
    assert m.cache.get("b") is None
    assert m.cache_stats() == LoadStats(hits=2, misses=2, loads=1, failures=0)
    stats = m.cache.stats()
    assert (stats.hits, stats.misses) == (2, 2)
    run(m.cleanup())  # the cache is cleared; counts are kept
    assert m.cache_stats() == LoadStats(hits=2, misses=2, loads=1, failures=0)


@pytest.mark.parametrize("kind", ["passed in", "replaced by a dict"])
def test_any_other_cache_has_get_or_load_counted_by_the_module(kind: str) -> None:
    from pepperpy_core.cache import FIFOCache

    shared: FIFOCache[str, int] = FIFOCache(4)
    shared["elsewhere"] = 1
    shared.get("elsewhere")  # a read by someone else: not the module's
    if kind == "passed in":
        m = CachedModule(cache=shared)
    else:
        m = CachedModule()
        m.cache = {}  # as the spec's DataModule does
    assert run(m.get_or_load("a", _load_42)) == 42
    assert run(m.get_or_load("a", _load_42)) == 42
    assert run(m.get_or_load("a", _load_42)) == 42
    assert m.cache_stats() == LoadStats(hits=2, misses=1, loads=1, failures=0)


def test_failing_loader_reaches_every_waiter_and_caches_nothing() -> None:
    m = CachedModule()
    err = ConnectionError("backend down")

    async def loader() -> str:
        await asyncio.sleep(0.01)
        raise err

    async def main() -> list[BaseException | str]:
        return await asyncio.gather(
            *(m.get_or_load("k", loader) for _ in range(10)), return_exceptions=True
        )

    results = run(main())
    assert all(r is err for r in results)
    assert "k" not in m.cache
    assert m.cache_stats().failures == 1

    async def ok() -> str:
        return "fine"

    assert run(m.get_or_load("k", ok)) == "fine"  # a later call loads again


def test_cancelled_caller_does_not_cancel_the_load() -> None:
    m = CachedModule()
    release = asyncio.Event()

    async def loader() -> str:
        await release.wait()
        return "v"

    async def main() -> str:
        first = asyncio.create_task(m.get_or_load("k", loader))
        second = asyncio.create_task(m.get_or_load("k", loader))
        await asyncio.sleep(0)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        release.set()
        return await second

    assert run(main()) == "v"
    assert m.cache["k"] == "v"
    assert m.cache_stats().loads == 1


def test_cache_size_eviction_and_cleanup() -> None:
    m = CachedModule(maxsize=2)

    async def main() -> None:
        await m.initialize()
        for key in "abc":

            async def load(key: str = key) -> str:
                return key.upper()

            assert await m.get_or_load(key, load) == key.upper()
        assert m.cache.keys() == ["b", "c"]
        await m.cleanup()

    run(main())
    assert len(m.cache) == 0


def test_works_with_a_dict_in_place_of_the_cache() -> None:
    class DictCached(CachedModule):
        def __init__(self) -> None:
            super().__init__()
            self.cache = {}

    m = DictCached()

    async def loader() -> int:
        return 7

    assert run(m.get_or_load("k", loader)) == 7
    assert m.cache == {"k": 7}


# --- loads that would wait for themselves ----------------------------------------------------


def test_a_loader_that_asks_for_its_own_key_is_an_error_at_once() -> None:
    module = CachedModule()

    async def main() -> None:
        async def loader() -> str:
            return str(await module.get_or_load("k", loader))

        with pytest.raises(CircularLoadError, match=r"CachedModule\['k'\] -> CachedModule\['k'\]"):
            await module.get_or_load("k", loader)
        assert "k" not in module.cache  # nothing cached; the module goes on
        assert await module.get_or_load("k", _value("v")) == "v"
        assert module.cache_stats().failures == 1

    run_virtual(main())


def test_two_loads_that_wait_for_each_other_from_two_callers() -> None:
    module = CachedModule()
    both_started = asyncio.Event()
    started: list[str] = []

    def loader_of(key: str, other: str) -> Callable[[], Awaitable[str]]:
        async def load() -> str:
            started.append(key)
            if len(started) == 2:
                both_started.set()
            await both_started.wait()  # each waits for the other only then
            return f"{key}+{await module.get_or_load(other, loader_of(other, key))}"

        return load

    async def main() -> None:
        outcomes = await asyncio.gather(
            module.get_or_load("a", loader_of("a", "b")),
            module.get_or_load("b", loader_of("b", "a")),
            return_exceptions=True,
        )
        errors = [o for o in outcomes if isinstance(o, CircularLoadError)]
        assert len(errors) == 2  # the circle is refused; both callers learn it
        assert "'a'" in str(errors[0])
        assert "'b'" in str(errors[0])

    run_virtual(main())


def test_a_circle_through_two_modules_and_a_task() -> None:
    first, second = (
        CachedModule(ModuleConfig(name="first")),
        CachedModule(ModuleConfig(name="second")),
    )

    async def main() -> None:
        async def load_first() -> str:
            # In a task of its own: it inherits which load it works for.
            return await asyncio.ensure_future(second.get_or_load("x", load_second))

        async def load_second() -> str:
            return await first.get_or_load("x", load_first)

        with pytest.raises(
            CircularLoadError, match=r"second\['x'\] -> first\['x'\] -> second\['x'\]"
        ):
            await first.get_or_load("x", load_first)

    run_virtual(main())


def test_independent_loads_inside_a_loader_are_fine() -> None:
    module = CachedModule()

    async def main() -> None:
        async def outer() -> str:
            parts = await asyncio.gather(
                module.get_or_load("b", _value("B")), module.get_or_load("c", _value("C"))
            )
            return "".join(parts)

        assert await module.get_or_load("a", outer) == "BC"
        assert await module.get_or_load("a", outer) == "BC"

    run_virtual(main())


def _value(value: str) -> Callable[[], Awaitable[str]]:
    async def load() -> str:
        return value

    return load


# --- choosing the module's cache: policy and expiry --------------------------------


def test_policy_chooses_the_cache_the_module_makes() -> None:
    from pepperpy_core.cache import FIFOCache, S3FIFOCache

    assert isinstance(CachedModule().cache, FIFOCache)
    assert isinstance(CachedModule(policy="fifo").cache, FIFOCache)
    made = CachedModule(maxsize=50, policy="s3fifo").cache
    assert isinstance(made, S3FIFOCache)
    assert made.maxsize == 50


def test_an_s3fifo_module_cache_counts_get_or_load_as_a_fifo_one_does() -> None:
    m = CachedModule(maxsize=4, policy="s3fifo")
    assert run(m.get_or_load("a", _load_42)) == 42
    assert run(m.get_or_load("a", _load_42)) == 42
    assert m.cache_stats() == LoadStats(hits=1, misses=1, loads=1, failures=0)


@pytest.mark.parametrize("policy", ["fifo", "s3fifo"])
def test_ttl_and_tti_make_the_module_s_cache_expire(policy: str) -> None:
    m = CachedModule(maxsize=8, policy=policy, ttl=30, tti=5.5)  # type: ignore[arg-type]
    assert run(m.get_or_load("a", _load_42)) == 42
    ttl, tti, clock, left = m.cache.__reduce__()[2][-1]
    assert (ttl, tti, clock) == (30.0, 5.5, None)
    assert 0 < left[0][1] <= 5.5 <= left[0][0] <= 30
    only_ttl = CachedModule(ttl=2).cache.__reduce__()[2][-1]
    assert only_ttl[:3] == (2.0, None, None)


@pytest.mark.parametrize(
    "settings",
    [{"policy": "s3fifo"}, {"policy": "fifo"}, {"ttl": 5}, {"tti": 5}],
    ids=["s3fifo", "fifo", "ttl", "tti"],
)
def test_a_ready_cache_beside_a_policy_or_expiry_is_refused(settings: dict[str, object]) -> None:
    from pepperpy_core.cache import FIFOCache

    ready = FIFOCache[str, int](3)
    with pytest.raises(TypeError, match="a ready cache was passed too"):
        CachedModule(cache=ready, **settings)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("settings", "error", "message"),
    [
        ({"policy": "lru"}, ValueError, "policy must be one of 'fifo', 's3fifo', not 'lru'"),
        ({"policy": 3}, TypeError, "policy must be one of"),
        ({"ttl": -1}, ValueError, "ttl must be a finite number of seconds > 0"),
        ({"tti": "1"}, TypeError, "tti must be a number of seconds or None, not str"),
        ({"ttl": float("nan")}, ValueError, "ttl must be a finite number"),
    ],
)
def test_a_bad_policy_or_expiry_is_refused(
    settings: dict[str, object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        CachedModule(**settings)  # type: ignore[arg-type]
