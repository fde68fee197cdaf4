"""What the lifecycle guard costs: initialize() + cleanup() of a module with
empty bodies against awaiting two bare coroutines. Each call runs 1,000
cycles inside one event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from pepperpy_core.module import BaseModule

OPS = 1_000


class Empty(BaseModule):
    async def initialize(self) -> None:
        pass

    async def cleanup(self) -> None:
        pass


async def _start() -> None:
    pass


async def _stop() -> None:
    pass


async def _guarded() -> None:
    module = Empty()
    for _ in range(OPS):
        await module.initialize()
        await module.cleanup()


async def _bare() -> None:
    for _ in range(OPS):
        await _start()
        await _stop()


CYCLES: dict[str, Callable[[], Awaitable[None]]] = {
    "bare-coroutines": _bare,
    "module": _guarded,
}


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.mark.parametrize("name", list(CYCLES))
def test_initialize_cleanup(benchmark: Any, name: str, loop: asyncio.AbstractEventLoop) -> None:
    cycle = CYCLES[name]
    benchmark.group = "initialize() + cleanup() of an empty module"
    benchmark(lambda: loop.run_until_complete(cycle()))
