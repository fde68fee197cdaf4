"""Capabilities under faults, and composed: one cooperative __init__ for all
of them (keyword arguments passed along the MRO), and one clear error when a
subclass skipped super().__init__()."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest

from pepperpy_core import FIFOCache
from pepperpy_core.errors import LifecycleError, ModuleSetupError
from pepperpy_core.metrics import MetricsRegistry
from pepperpy_core.module import (
    BaseModule,
    CachedModule,
    DependentModule,
    MetricsModule,
    ResourceModule,
    RetryModule,
    StateModule,
    no_retry_waits,
)
from tests.asyncutil import run

pytestmark = pytest.mark.backend  # the caches and registries come from the backend


# --- composing ------------------------------------------------------------------------------


def test_retry_and_state_compose_with_keyword_arguments() -> None:
    class A(RetryModule, StateModule[int]):
        def __init__(self) -> None:
            super().__init__(initial=0, max_retries=5, delay=0)

    a = A()
    assert a.max_retries == 5
    assert a.retry_policy().max_retries == 5

    async def main() -> None:
        assert await a.get_state() == 0
        assert await a.update_state(lambda s: s + 1) == 1

    run(main())


def test_cached_and_resource_compose_and_share_one_cache() -> None:
    class Both(CachedModule, ResourceModule):
        def __init__(self) -> None:
            super().__init__(maxsize=7, cache_size=7)

    both = Both()
    assert both.cache.maxsize == 7

    async def main() -> None:
        async def load() -> str:
            return "v"

        async with both:
            assert await both.get_or_load("k", load) == "v"
            assert both.cache["k"] == "v"
        assert len(both.cache) == 0

    run(main())


_CAPABILITIES: tuple[type[BaseModule], ...] = (
    CachedModule,
    ResourceModule,
    StateModule,
    RetryModule,
    MetricsModule,
    DependentModule,
)


def _orders() -> list[tuple[type[BaseModule], ...]]:
    """Every order of every pair and triple of capabilities, and every order of all six."""
    small = [o for k in (1, 2, 3) for o in itertools.permutations(_CAPABILITIES, k)]
    return small + list(itertools.permutations(_CAPABILITIES))


def test_every_capabilitys_argument_is_honoured_in_every_order() -> None:
    registry = MetricsRegistry()
    for bases in _orders():
        kind = type("Composed", bases, {})
        kwargs: dict[str, object] = {}
        if CachedModule in bases:
            kwargs["maxsize"] = 5
        if ResourceModule in bases and CachedModule not in bases:
            kwargs["cache_size"] = 6
        if StateModule in bases:
            kwargs["initial"] = 3
        if RetryModule in bases:
            kwargs.update(max_retries=7, delay=0.5)
        if MetricsModule in bases:
            kwargs["registry"] = registry
        module: Any = kind(**kwargs)
        order = [b.__name__ for b in bases]
        if CachedModule in bases:
            assert module.cache.maxsize == 5, order
        elif ResourceModule in bases:
            assert module.cache.maxsize == 6, order
        if StateModule in bases:
            assert run(module.get_state()) == 3, order
        if RetryModule in bases:
            assert (module.max_retries, module.delay) == (7, 0.5), order
            assert module.retry_policy().max_retries == 7, order
        if MetricsModule in bases:
            assert module.metrics is registry, order


@pytest.mark.parametrize("order", [(CachedModule, ResourceModule), (ResourceModule, CachedModule)])
def test_the_one_cache_in_either_order(order: tuple[type[BaseModule], ...]) -> None:
    kind: Any = type("Both", order, {})
    assert kind().cache.maxsize == 1000
    assert kind(maxsize=5).cache.maxsize == 5
    assert kind(cache_size=5).cache.maxsize == 5
    assert kind(maxsize=5, cache_size=5).cache.maxsize == 5
    ready = FIFOCache[str, int](3)
    assert kind(cache=ready).cache is ready
    with pytest.raises(TypeError, match=r"maxsize=5 and cache_size=6|cache_size=6 and maxsize=5"):
        kind(maxsize=5, cache_size=6)
    with pytest.raises(TypeError, match="a ready cache was passed too"):
        kind(cache=ready, cache_size=6)
    with pytest.raises(TypeError, match="cache must be a cache"):
        kind(cache=42)


def test_every_capability_at_once() -> None:
    class All(
        StateModule[int], RetryModule, CachedModule, ResourceModule, MetricsModule, DependentModule
    ):
        def __init__(self) -> None:
            super().__init__(initial=1, max_retries=2, maxsize=3, cache_size=3)

    module = All()

    async def main() -> None:
        with no_retry_waits():
            async with module:
                assert await module.get_state() == 1
                module.record_success()

    run(main())
    assert module.successes() == 1


def test_an_unknown_keyword_names_itself() -> None:
    with pytest.raises(TypeError, match="unexpected keyword arguments: colour"):
        StateModule(initial=1, colour="red")


@pytest.mark.parametrize(
    "capability",
    [StateModule, RetryModule, CachedModule, ResourceModule, MetricsModule, DependentModule],
    ids=lambda c: c.__name__,
)
def test_skipping_super_init_is_one_clear_error(capability: type[BaseModule]) -> None:
    class Forgetful(capability):  # type: ignore[valid-type,misc]
        def __init__(self) -> None:  # does not call super().__init__()
            self.x = 1

    with pytest.raises(ModuleSetupError) as info:
        Forgetful()
    message = str(info.value)
    assert capability.__name__ in message
    assert "call super().__init__(...) in Forgetful.__init__" in message


def test_a_plain_module_may_still_skip_super_init() -> None:
    class Plain(BaseModule):
        def __init__(self) -> None:
            self.x = 1

    module = Plain()
    run(module.initialize())
    assert module.state.value == "ready"


# --- CachedModule under faults ----------------------------------------------------------------


def test_a_load_running_at_cleanup_never_writes_afterwards() -> None:
    module = CachedModule()
    release = asyncio.Event()
    outcome: list[object] = []

    async def slow() -> str:
        await release.wait()
        return "stale"

    async def main() -> None:
        await module.initialize()
        caller = asyncio.ensure_future(module.get_or_load("k", slow))
        await asyncio.sleep(0)
        await module.cleanup()  # cancels the load and waits for it
        release.set()
        try:
            outcome.append(await caller)
        except LifecycleError as error:
            outcome.append(error)
        await module.initialize()
        await asyncio.sleep(0.01)  # time: a cancelled load that still wrote would have by now
        assert "k" not in module.cache

    run(main())
    assert isinstance(outcome[0], LifecycleError)


@pytest.mark.parametrize("when", ["before the load runs", "while it runs"])
def test_a_cancelled_caller_leaves_the_others_their_value(when: str) -> None:
    module = CachedModule()
    started = asyncio.Event()

    async def load() -> str:
        started.set()
        await asyncio.sleep(0.02)
        return "v"

    async def main() -> list[object]:
        await module.initialize()
        first = asyncio.ensure_future(module.get_or_load("k", load))
        others = [asyncio.ensure_future(module.get_or_load("k", load)) for _ in range(3)]
        if when == "while it runs":
            await started.wait()
        else:
            await asyncio.sleep(0)
        first.cancel()
        results = await asyncio.gather(first, *others, return_exceptions=True)
        return list(results)

    results = run(main())
    assert isinstance(results[0], asyncio.CancelledError)
    assert results[1:] == ["v", "v", "v"]
    assert module.cache_stats().loads == 1


# --- ResourceModule under faults ---------------------------------------------------------------


def test_a_cancelled_cleanup_keeps_the_resource_it_was_releasing() -> None:
    released: list[str] = []
    hold, releasing = asyncio.Event(), asyncio.Event()

    class Slow:
        async def aclose(self) -> None:
            releasing.set()
            await hold.wait()
            released.append("slow")

    class Quick:
        def close(self) -> None:
            released.append("quick")

    module = ResourceModule()

    async def main() -> None:
        await module.initialize()
        quick = module.add_resource(Quick())
        slow = module.add_resource(Slow())
        cleaning = asyncio.ensure_future(module.cleanup())
        await releasing.wait()
        cleaning.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cleaning
        assert module.resources == [quick, slow]  # neither lost nor released
        hold.set()
        await module.cleanup()
        assert module.resources == []

    run(main())
    assert released == ["slow", "quick"]


@pytest.mark.parametrize("order", [(CachedModule, ResourceModule), (ResourceModule, CachedModule)])
def test_the_one_cache_takes_the_policy_and_expiry_asked_for(
    order: tuple[type[BaseModule], ...],
) -> None:
    from pepperpy_core.cache import S3FIFOCache

    kind: Any = type("Both", order, {})
    made = kind(cache_size=5, policy="s3fifo", ttl=9).cache
    assert isinstance(made, S3FIFOCache)
    assert made.maxsize == 5
    assert made.__reduce__()[2][-1][:3] == (9.0, None, None)
    ready = FIFOCache[str, int](3)
    with pytest.raises(TypeError, match="a ready cache was passed too"):
        kind(cache=ready, policy="s3fifo")
