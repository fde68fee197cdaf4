"""What /metrics carries with no wiring: every CachedModule's hits, misses,
loads and failed loads, every RetryModule's calls and attempts, as counters
of the application's registry labelled with the module."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text

from pepperpy_core import Application
from pepperpy_core.module import CachedModule, MetricsModule, ModuleConfig, RetryModule
from pepperpy_core.module.retry import RetryStats, no_retry_waits
from tests.asyncutil import run

pytestmark = pytest.mark.backend

CACHE = ("hits", "misses", "loads", "load_failures")
RETRY = ("calls", "attempts", "failures", "gave_up")


def counters(app: Application, kind: str, module: str) -> dict[str, float]:
    """The ``pepperpy_<kind>_*_total`` counters of ``module``, from both
    formats (which must agree), by the part of the name between."""
    found: list[dict[str, float]] = []
    for fmt, parse in (("prometheus", parse_text), ("openmetrics", parse_openmetrics)):
        seen: dict[str, float] = {}
        for family in parse(app.render_metrics(fmt)):
            for sample in family.samples:
                prefix = f"pepperpy_{kind}_"
                if sample.name.startswith(prefix) and sample.labels == {"module": module}:
                    assert family.type == "counter", family
                    if sample.name.endswith("_total"):
                        seen[sample.name[len(prefix) : -len("_total")]] = sample.value
        found.append(seen)
    assert found[0] == found[1]
    return found[0]


class Catalog(CachedModule):
    pass


class Flaky(RetryModule):
    def __init__(self) -> None:
        super().__init__(ModuleConfig(name="flaky"), max_retries=3)
        self.failures_left = 0

    async def call(self) -> str:
        async def once() -> str:
            if self.failures_left:
                self.failures_left -= 1
                raise ConnectionError("down")
            return "ok"

        return await self.retry(once)


@pytest.mark.parametrize("cache", [None, {}], ids=["own-fifocache", "a-dict"])
def test_a_cached_modules_loads_are_counted_on_metrics(cache: Any) -> None:
    async def main() -> None:
        catalog = Catalog(ModuleConfig(name="catalog"), cache=cache)
        app = Application(catalog)
        async with app:
            assert counters(app, "cache", "catalog") == dict.fromkeys(CACHE, 0)

            async def load() -> str:
                return "tea"

            async def broken() -> str:
                raise OSError("no disk")

            await catalog.get_or_load("1", load)  # a miss, a load
            await catalog.get_or_load("1", load)  # a hit
            await catalog.get_or_load("1", load)  # a hit
            with pytest.raises(OSError, match="no disk"):
                await catalog.get_or_load("2", broken)  # a miss, a failed load
            stats = catalog.cache_stats()
            assert (stats.hits, stats.misses, stats.loads, stats.failures) == (2, 2, 2, 1)
            assert counters(app, "cache", "catalog") == {
                "hits": 2,
                "misses": 2,
                "loads": 2,
                "load_failures": 1,
            }

    run(main())


def test_a_retry_modules_attempts_are_counted_on_metrics_and_never_fall() -> None:
    async def main() -> None:
        flaky = Flaky()
        app = Application(flaky)
        async with app:
            assert counters(app, "retry", "flaky") == dict.fromkeys(RETRY, 0)
            with no_retry_waits():
                flaky.failures_left = 2
                assert await flaky.call() == "ok"  # 3 attempts, 2 failed
                flaky.failures_left = 5
                with pytest.raises(ConnectionError):
                    await flaky.call()  # 3 attempts, all failed
            expected = {"calls": 2, "attempts": 6, "failures": 5, "gave_up": 1}
            assert counters(app, "retry", "flaky") == expected
            # Stats replaced (or reset) by the module, and used again before the
            # next scrape: all of the new counts are added, and nothing falls.
            flaky.stats = RetryStats()
            with no_retry_waits():
                flaky.failures_left = 1
                assert await flaky.call() == "ok"  # 2 attempts, 1 failed
            after = {"calls": 3, "attempts": 8, "failures": 6, "gave_up": 1}
            assert counters(app, "retry", "flaky") == after
            flaky.stats = RetryStats()
            assert counters(app, "retry", "flaky") == after

    run(main())


def test_a_module_that_is_both_is_counted_as_both_and_others_not_at_all() -> None:
    class Both(CachedModule, RetryModule):
        pass

    class Plain(RetryModule):
        """Its stats are not RetryStats: nothing to follow."""

    async def main() -> None:
        plain = Plain(ModuleConfig(name="plain"))
        plain.stats = "not stats"  # type: ignore[assignment]
        app = Application(Both(ModuleConfig(name="both")), plain)
        async with app:
            assert counters(app, "cache", "both") == dict.fromkeys(CACHE, 0)
            assert counters(app, "retry", "both") == dict.fromkeys(RETRY, 0)
            assert counters(app, "retry", "plain") == {}
            assert counters(app, "cache", "plain") == {}

    run(main())


def test_every_series_the_library_names_starts_with_pepperpy_and_the_users_keep_theirs() -> None:
    class Shop(MetricsModule, CachedModule, RetryModule):
        pass

    async def main() -> None:
        shop = Shop(ModuleConfig(name="shop"))
        app = Application(shop, Catalog(ModuleConfig(name="catalog")), Flaky())
        async with app:
            shop.record_success()
            shop.record_failure("timeout")
            with shop.timer("checkout_seconds"):
                shop.metrics.counter("orders_total").inc()
            await app.health()
            names = {
                family.name
                for fmt, parse in (("prometheus", parse_text), ("openmetrics", parse_openmetrics))
                for family in parse(app.render_metrics(fmt))
            }
        mine = {"orders", "checkout_seconds"}  # (counters' families drop "_total")
        assert mine <= names
        assert {n for n in names - mine if not n.startswith("pepperpy_")} == set()
        assert {"pepperpy_module_lifecycle_seconds", "pepperpy_module_successes"} <= names

    run(main())
