"""Must pass ``mypy --strict``: structural contracts accept what fits them."""

from __future__ import annotations

from collections.abc import Callable
from typing import assert_type

from pepperpy_core import FIFOCache, S3FIFOCache, _native
from pepperpy_core._fallback import cache as fallback
from pepperpy_core.cache import LocalCache
from pepperpy_core.config import ModuleConfig
from pepperpy_core.metrics import Counter, Gauge, Histogram, MetricsRegistry
from pepperpy_core.module import BaseModule, Module
from pepperpy_core.protocols import (
    AsyncCacheProtocol,
    CacheProtocol,
    ConfigProtocol,
    CounterProtocol,
    GaugeProtocol,
    HealthCheckable,
    HistogramProtocol,
    Lifecycle,
    ModuleProtocol,
    StateStore,
    TimerProtocol,
)


class NotAModule:
    """Has the right methods, inherits from nothing."""

    async def initialize(self) -> None: ...
    async def cleanup(self) -> None: ...


lifecycle: Lifecycle = NotAModule()
module_as_lifecycle: Lifecycle = BaseModule()
full: ModuleProtocol = BaseModule()
health: HealthCheckable = BaseModule()

cache: CacheProtocol[str, int] = FIFOCache[str, int](10)
native_cache: CacheProtocol[str, int] = _native.FIFOCache[str, int](10)
fallback_cache: CacheProtocol[str, int] = fallback.FIFOCache[str, int](10)
s3_cache: CacheProtocol[str, int] = S3FIFOCache[str, int](10)
native_s3_cache: CacheProtocol[str, int] = _native.S3FIFOCache[str, int](10)
fallback_s3_cache: CacheProtocol[str, int] = fallback.S3FIFOCache[str, int](10)
assert_type(cache.get("a"), int | None)

config: ConfigProtocol = ModuleConfig(name="x")
assert_type(ModuleConfig.from_dict({"name": "x"}), ModuleConfig)

counter: CounterProtocol = Counter()
gauge: GaugeProtocol = Gauge()
histogram: HistogramProtocol = Histogram()
timer: TimerProtocol = MetricsRegistry().timer("t")
native_timer: TimerProtocol = _native.Histogram().time()


class IntStore:
    def __init__(self) -> None:
        self.value = 0

    async def get_state(self) -> int:
        return self.value

    async def set_state(self, state: int) -> None:
        self.value = state

    async def update_state(self, updater: Callable[[int], int]) -> int:
        self.value = updater(self.value)
        return self.value


store: StateStore[int] = IntStore()


class Typed(Module[ModuleConfig]):
    async def initialize(self) -> None:
        assert_type(self.config, ModuleConfig)


async def state_module_is_a_state_store() -> None:
    from pepperpy_core.module import StateModule

    module: StateModule[int] = StateModule(initial=0)
    typed_store: StateStore[int] = module
    assert_type(await module.get_state(), int)
    assert_type(await typed_store.update_state(lambda s: s + 1), int)


local_async: AsyncCacheProtocol[str, int] = LocalCache[str, int](10)


async def redis_caches_are_async_caches() -> None:
    from pepperpy_core.redis import RedisCache, TieredCache

    remote: RedisCache[int] = RedisCache(url="redis://127.0.0.1:6379/0")
    as_protocol: AsyncCacheProtocol[str, int] = remote
    tiered: AsyncCacheProtocol[str, int] = TieredCache[int](FIFOCache[str, int](10), remote)
    assert_type(await as_protocol.get("k"), int | None)
    assert_type(await tiered.get("k", 0), int)


async def get_or_load_is_typed_by_its_loader() -> None:
    from pepperpy_core.module import CachedModule

    class Users(CachedModule):
        async def _initialize(self) -> None:
            pass

        async def _cleanup(self) -> None:
            pass

    async def load_name() -> str:
        return "ada"

    async def load_age() -> int:
        return 36

    users = Users(ModuleConfig(name="users"))
    assert_type(await users.get_or_load("name:1", load_name), str)
    assert_type(await users.get_or_load("age:1", load_age), int)


def cached_modules_take_typed_caches() -> None:
    from pepperpy_core.module import CachedModule

    CachedModule(ModuleConfig(name="a"), cache=FIFOCache[str, int](10))
    CachedModule(ModuleConfig(name="b"), cache=LocalCache[str, int](10))
    CachedModule(ModuleConfig(name="c"), cache={})
