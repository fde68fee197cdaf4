"""Start then stop a random DAG of modules (about 3 dependencies each) with
the Application, and the same graph with mode-streaming's Service and
add_dependency. A fresh graph is built for every round, outside the timing."""

from __future__ import annotations

import asyncio
import gc
import random
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pepperpy_core import Application
from pepperpy_core.module import DependentModule, ModuleConfig

try:
    import mode
except ImportError:  # the comparison runs where mode-streaming is installed
    mode = None


def _dag(n: int, seed: int = 7) -> list[list[int]]:
    rng = random.Random(seed)
    return [sorted(rng.sample(range(i), min(i, 3))) for i in range(n)]


def _pepperpy_graph(n: int) -> Callable[[], Application]:
    deps = _dag(n)

    def build() -> Application:
        mods: list[DependentModule] = []
        for i in range(n):
            module = DependentModule(ModuleConfig(name=f"m{i}"))
            module.depends_on(*(mods[d] for d in deps[i]))
            mods.append(module)
        return Application(*mods)

    return build


async def _run_pepperpy(app: Application) -> None:
    await app.start()
    await app.stop()


def _mode_graph(n: int) -> Callable[[], Any]:
    deps = _dag(n)

    def build() -> Any:
        assert mode is not None
        services = [mode.Service() for _ in range(n)]
        for i, ds in enumerate(deps):
            for d in ds:
                services[i].add_dependency(services[d])
        dependents = {d for ds in deps for d in ds}
        root = mode.Service()
        for i in range(n):
            if i not in dependents:
                root.add_dependency(services[i])
        return root

    return build


async def _run_mode(root: Any) -> None:
    await root.start()
    await root.stop()


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


SUBJECTS = ["pepperpy"] + (["mode"] if mode is not None else [])


@pytest.mark.parametrize("size", [1_000, 10_000, 50_000])
@pytest.mark.parametrize("name", SUBJECTS)
def test_start_stop_dag(
    benchmark: Any, name: str, size: int, loop: asyncio.AbstractEventLoop
) -> None:
    build = _pepperpy_graph(size) if name == "pepperpy" else _mode_graph(size)
    go = _run_pepperpy if name == "pepperpy" else _run_mode

    def setup() -> tuple[tuple[Any], dict[str, Any]]:
        graph = build()
        gc.collect()  # start every round, for both subjects, from a collected heap
        return (graph,), {}

    benchmark.group = f"start + stop a random DAG of {size:,} modules"
    benchmark.pedantic(
        lambda graph: loop.run_until_complete(go(graph)), setup=setup, rounds=5, iterations=1
    )
