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
    """Wait until every TieredCache listens and has heard every other one's
    announcements made so far: each deletes a marker key, and each waits to
    hear every other's marker by that key (the tier's arrival events), which
    one store delivers after everything its writer announced before it."""
    for t in tiers:
        async with asyncio.timeout(within):
            await t.subscribed()
    markers = {id(t): f"__settle__{id(t)}" for t in tiers}
    heard = {
        (id(t), id(o)): t._arrivals.setdefault(markers[id(o)], asyncio.Event())
        for t in tiers
        for o in tiers
        if o is not t
    }
    try:
        for t in tiers:
            await t.delete(markers[id(t)])
        async with asyncio.timeout(within):
            for event in heard.values():
                await event.wait()
    finally:
        for t in tiers:
            for o in tiers:
                if o is not t and t._arrivals.get(markers[id(o)]) is heard[(id(t), id(o))]:
                    del t._arrivals[markers[id(o)]]
