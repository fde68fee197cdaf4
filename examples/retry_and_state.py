"""Typed, versioned state that other code watches, fed by a flaky source that
is retried with backoff and a deadline.

    python examples/retry_and_state.py
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import dataclass

from pepperpy_core.errors import RetryDeadlineError
from pepperpy_core.module import RetryPolicy, StateModule, retry_call


@dataclass(frozen=True)
class Prices:
    eur: float
    usd: float


class PriceBoard(StateModule[Prices]):
    """The latest prices; subscribers see every change in order."""


class FlakyFeed:
    """Fails every other call, and hangs on the fifth."""

    def __init__(self) -> None:
        self.calls = 0

    async def fetch(self, step: int) -> Prices:
        self.calls += 1
        if self.calls == 5:
            await asyncio.sleep(3600)
        if self.calls % 2:
            raise ConnectionError(f"feed hiccup #{self.calls}")
        return Prices(eur=1.0 + step / 100, usd=1.1 + step / 100)


async def main() -> None:
    board = PriceBoard()
    feed = FlakyFeed()
    policy = RetryPolicy(max_retries=3, delay=0.001, attempt_timeout=0.05, deadline=1.0)

    async def watch() -> list[int]:
        versions = []
        async with board.subscribe() as changes:
            async for change in changes:
                print(f"v{change.version}: {change.old} -> {change.new}")
                versions.append(change.version)
                if change.version == 3:
                    return versions
        return versions

    watcher = asyncio.create_task(watch())
    await asyncio.sleep(0)
    async with board:
        for step in range(3):
            try:
                prices = await retry_call(policy, feed.fetch, step)
            except RetryDeadlineError as error:
                print("gave up:", error)
                continue
            await board.set_state(prices)
        print("watcher saw versions", await watcher)
        print("feed calls:", feed.calls, "state version:", board.state_version)


if __name__ == "__main__":
    argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    ).parse_args()  # no options: --help, and anything else is a usage error
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(130)
