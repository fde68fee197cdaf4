"""A bounded asyncio.run for tests: a hang fails the test instead of CI."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout=timeout)

    return asyncio.run(bounded())


async def until(check: Callable[[], bool], within: float = 5.0, poll: float = 0.002) -> None:
    """Wait until ``check()`` is true (TimeoutError after ``within`` seconds):
    for state another process or server changes, which no Event announces."""
    async with asyncio.timeout(within):
        while True:
            if check():
                return
            await asyncio.sleep(poll)


async def until_true(
    check: Callable[[], Awaitable[object]], within: float = 30.0, poll: float = 0.001
) -> None:
    """``until`` for a check that must await (a server's state)."""
    async with asyncio.timeout(within):
        while True:
            if await check():
                return
            await asyncio.sleep(poll)


async def settled(*tiers: Any, within: float = 60.0) -> None:
    """Wait until every TieredCache listens, and every announcement made so
    far arrived: one more from each (a delete), heard by all the others,
    comes after every earlier one."""
    for t in tiers:
        async with asyncio.timeout(within):
            await t.subscribed()
    before = [t.received for t in tiers]
    for t in tiers:
        await t.delete(f"__settle__{id(t)}")
    await until(
        lambda: all(t.received >= b + len(tiers) - 1 for t, b in zip(tiers, before, strict=True)),
        within=within,
    )
