"""MetricsModule: timers, successes and failures, automatic lifecycle metrics."""

from __future__ import annotations

import pytest

from pepperpy_core.metrics import MetricsRegistry
from pepperpy_core.module import MetricsModule, ModuleConfig
from tests.asyncutil import run

pytestmark = pytest.mark.backend


def test_timer_success_failure() -> None:
    m = MetricsModule(ModuleConfig(name="svc"))

    async def main() -> None:
        with m.timer("work_seconds"):
            pass
        async with m.timer("work_seconds"):
            pass

    run(main())
    m.record_success()
    m.record_failure("timeout")
    m.record_failure("timeout")
    m.record_failure("refused")
    assert m.metrics.histogram("work_seconds", {"module": "svc"}).count == 2
    assert m.successes() == 1
    assert (m.failures("timeout"), m.failures("refused"), m.failures("other")) == (2, 1, 0)
    with pytest.raises(TypeError, match="reason must be a str"):
        m.record_failure(ValueError("x"))  # type: ignore[arg-type]


def test_lifecycle_is_timed_and_counted_for_subclasses() -> None:
    class Flaky(MetricsModule):
        fail = True

        async def initialize(self) -> None:
            if self.fail:
                raise ConnectionError("no")

    registry = MetricsRegistry()
    m = Flaky(ModuleConfig(name="flaky"), registry=registry)

    async def main() -> None:
        with pytest.raises(ConnectionError):
            await m.initialize()
        m.fail = False
        await m.initialize()
        await m.cleanup()

    run(main())
    labels = {"module": "flaky"}
    assert (
        registry.histogram(
            "pepperpy_module_lifecycle_seconds", {**labels, "phase": "initialize"}
        ).count
        == 2
    )
    assert (
        registry.histogram(
            "pepperpy_module_lifecycle_seconds", {**labels, "phase": "cleanup"}
        ).count
        == 1
    )
    count = registry.counter
    assert (
        count(
            "pepperpy_module_lifecycle_total",
            {**labels, "phase": "initialize", "outcome": "failed"},
        ).value
        == 1
    )
    assert (
        count(
            "pepperpy_module_lifecycle_total", {**labels, "phase": "initialize", "outcome": "ok"}
        ).value
        == 1
    )
    assert (
        count(
            "pepperpy_module_lifecycle_total", {**labels, "phase": "cleanup", "outcome": "ok"}
        ).value
        == 1
    )
    assert "pepperpy_module_lifecycle_seconds_bucket" in registry.to_prometheus()


def test_timer_follows_the_module_name_when_the_config_is_replaced() -> None:
    from pepperpy_core.module import ModuleConfig

    module = MetricsModule(ModuleConfig(name="first"))
    with module.timer("op"):
        pass
    module.config = ModuleConfig(name="second")
    with module.timer("op"):
        pass
    with module.timer("op"):
        pass
    counts = {
        row["labels"]["module"]: row["count"]
        for row in module.metrics.snapshot()
        if row["name"] == "op"
    }
    assert counts == {"first": 1, "second": 2}
