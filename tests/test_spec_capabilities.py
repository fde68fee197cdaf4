"""The spec's capability examples (spec/module.md), run as written with
stand-ins for the helpers it leaves undefined, asserting what its text says."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import pytest

from pepperpy_core.module import (
    CachedModule,
    MetricsModule,
    ResourceModule,
    RetryModule,
    StateModule,
)
from tests.asyncutil import run

pytestmark = pytest.mark.backend

# --- Module with Resources -------------------------------------------------------


class CacheModule(ResourceModule):
    def __init__(self, size: int = 1000):
        super().__init__()
        self.size = size
        self.cache = {}

    async def get(self, key: str) -> Any:
        return self.cache.get(key)

    async def set(self, key: str, value: Any):
        if len(self.cache) >= self.size:
            self.cache.pop(next(iter(self.cache)))
        self.cache[key] = value


def test_cache_module_drops_the_oldest_entry_when_full() -> None:
    async def main() -> None:
        cache = CacheModule(size=2)
        await cache.initialize()
        await cache.set("a", 1)
        await cache.set("b", 2)
        await cache.set("c", 3)
        assert await cache.get("a") is None
        assert (await cache.get("b"), await cache.get("c")) == (2, 3)
        await cache.cleanup()
        assert cache.cache == {}  # cleared on cleanup

    run(main())


# --- Module with State -------------------------------------------------------------


@dataclass
class ModuleState:
    is_active: bool
    last_update: float


class ServiceModule(StateModule[ModuleState]):
    async def initialize(self):
        await self.set_state(ModuleState(is_active=True, last_update=time.time()))

    async def update(self):
        state = await self.get_state()
        await self.set_state(ModuleState(is_active=state.is_active, last_update=time.time()))


def test_service_module_update_moves_last_update() -> None:
    async def main() -> None:
        service = ServiceModule()
        await service.initialize()
        first = await service.get_state()
        assert first.is_active
        await asyncio.sleep(0.01)  # time: the clock moves on before the update
        await service.update()
        second = await service.get_state()
        assert second.is_active
        assert second.last_update > first.last_update
        assert service.state_version == 2

    run(main())


# --- Module with Retry ---------------------------------------------------------------


class NetworkModule(RetryModule):
    def __init__(self, max_retries: int = 3, delay: float = 1.0):
        super().__init__()
        self.max_retries = max_retries
        self.delay = delay

    async def initialize(self):
        retries = 0
        while True:
            try:
                await self.connect()
                break
            except ConnectionError:
                retries += 1
                if retries >= self.max_retries:
                    raise
                await asyncio.sleep(self.delay)

    # stand-in: fails `failures` times
    failures = 0
    attempts = 0

    async def connect(self) -> None:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise ConnectionError(f"refused #{self.attempts}")


def test_network_module_gives_up_after_max_retries_and_reraises() -> None:
    module = NetworkModule(max_retries=3, delay=0.001)
    module.failures = 10
    with pytest.raises(ConnectionError, match="refused #3"):
        run(module.initialize())
    assert module.attempts == 3


def test_network_module_connects_after_failures() -> None:
    module = NetworkModule(max_retries=3, delay=0.001)
    module.failures = 2
    run(module.initialize())
    assert module.attempts == 3


# --- Module with Cache ---------------------------------------------------------------


class DataModule(CachedModule):
    def __init__(self):
        super().__init__()
        self.cache = {}

    async def get_data(self, key: str) -> Any:
        # Check cache
        if key in self.cache:
            return self.cache[key]

        # Get data
        data = await self.fetch_data(key)

        # Update cache
        self.cache[key] = data
        return data

    fetched: list[str]

    async def fetch_data(self, key: str) -> str:  # stand-in
        self.fetched.append(key)
        return key.upper()


def test_data_module_fetches_once_per_key() -> None:
    async def main() -> None:
        data = DataModule()
        data.fetched = []
        for key in ["a", "b", "a", "a", "b"]:
            assert await data.get_data(key) == key.upper()
        assert data.fetched == ["a", "b"]

    run(main())


# --- Module with Metrics ---------------------------------------------------------------


def spec_service(MetricsModule: type[MetricsModule]) -> type[MetricsModule]:
    """The spec's class, verbatim, over the base it is given: the library's
    MetricsModule, or one whose initialize fails, to see the failure path."""

    class ServiceModule(MetricsModule):
        async def initialize(self):
            # Start timer
            with self.timer("initialize"):
                try:
                    await super().initialize()
                    self.record_success()
                except Exception as e:
                    self.record_failure(str(e))
                    raise

    return ServiceModule


class Unreachable(MetricsModule):
    async def initialize(self) -> None:
        raise ConnectionError("db unreachable")


MeteredService = spec_service(MetricsModule)
FailingService = spec_service(Unreachable)


def test_metrics_example_records_a_success() -> None:
    service = MeteredService()
    run(service.initialize())
    assert service.successes() == 1
    histogram = service.metrics.histogram("initialize", {"module": "ServiceModule"})
    assert histogram.count == 1


def test_metrics_example_records_a_failure_with_its_reason() -> None:
    service = FailingService()
    with pytest.raises(ConnectionError):
        run(service.initialize())
    assert service.failures("db unreachable") == 1
    assert service.successes() == 0
    assert service.metrics.histogram("initialize", {"module": "ServiceModule"}).count == 1
