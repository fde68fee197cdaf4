"""A read-through cache with single-flight loading, measured, and exported in
the Prometheus text format.

    python examples/cache_and_metrics.py
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from pepperpy_core import FIFOCache
from pepperpy_core.metrics import MetricsRegistry
from pepperpy_core.module import CachedModule, ModuleConfig

registry = MetricsRegistry()


class Users(CachedModule):
    """Users by id, loaded from a slow backend at most once per id at a time."""

    def __init__(self) -> None:
        super().__init__(ModuleConfig(name="users"), maxsize=50)
        self.lookups = 0

    async def get(self, user_id: int) -> dict[str, object]:
        with registry.timer("user_lookup_seconds", {"module": self.name}):
            user = await self.get_or_load(user_id, lambda: self.fetch(user_id))
        registry.counter("user_requests_total").inc()
        return dict(user)

    async def fetch(self, user_id: int) -> dict[str, object]:
        self.lookups += 1
        await asyncio.sleep(0.001)
        return {"id": user_id, "name": f"user-{user_id}"}


async def main() -> None:
    # A FIFOCache on its own: bounded, oldest out first, O(1).
    sessions: FIFOCache[str, int] = FIFOCache(maxsize=2)
    sessions.set_many({"alice": 1, "bob": 2})
    sessions["carol"] = 3
    print("sessions:", sessions.items(), sessions.stats())

    async with Users() as users:
        # 100 concurrent requests over 10 ids: 10 backend lookups.
        await asyncio.gather(*(users.get(i % 10) for i in range(100)))
        print("backend lookups:", users.lookups, users.cache_stats())
    print(registry.to_prometheus(), end="")


if __name__ == "__main__":
    argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    ).parse_args()  # no options: --help, and anything else is a usage error
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(130)
