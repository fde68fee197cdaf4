"""A RemoteStore in memory, shared by the tiers of one test: a second store
behind TieredCache (beside RedisCache), on a clock of the tier's host: the
monotonic one, or the wall clock (as Redis's on the same host).

Every call yields to the loop once on its way in and once on its way out, as
a network round trip would, and measures time in between: what it reports
is what it did at that moment, so a tier's bookkeeping can be checked
against it exactly (``deadlines``).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import secrets
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from pepperpy_core.stores import Claim, Invalidation, Stored

V = TypeVar("V")


@dataclass
class Shared(Generic[V]):
    """What every client of one store sees: values, when each expires (a
    reading of ``clock``; inf: never), locks, tags, subscribers."""

    clock: Callable[[], float] = time.monotonic

    values: dict[str, V] = field(default_factory=dict)
    deadlines: dict[str, float] = field(default_factory=dict)
    locks: dict[str, tuple[str, float]] = field(default_factory=dict)
    tags: dict[str, set[str]] = field(default_factory=dict)
    subscribers: list[asyncio.Queue[Invalidation]] = field(default_factory=list)

    def live(self, key: str, now: float) -> bool:
        if key in self.values and self.deadlines[key] <= now:
            del self.values[key], self.deadlines[key]
        return key in self.values

    def stored(self, key: str, now: float) -> Stored[V]:
        left = self.deadlines[key] - now
        return Stored(self.values[key], None if math.isinf(left) else left)

    def put(self, key: str, value: V, ttl: float | None, now: float) -> None:
        self.values[key] = value
        self.deadlines[key] = math.inf if ttl is None else now + ttl

    def announce(self, origin: str, keys: Sequence[str]) -> int:
        for queue in self.subscribers:
            queue.put_nowait(Invalidation(origin, tuple(keys)))
        return len(self.subscribers)


class MemoryStore(Generic[V]):
    """One client of ``shared``, with the RemoteStore protocol's methods."""

    def __init__(self, shared: Shared[V], *, ttl: float | None = None) -> None:
        self.shared = shared
        self.ttl = ttl

    async def _arrive(self) -> float:
        await asyncio.sleep(0)  # the request on its way
        return self.shared.clock()

    async def fetch(self, keys: Sequence[str]) -> dict[str, Stored[V]]:
        now = await self._arrive()
        found = {k: self.shared.stored(k, now) for k in keys if self.shared.live(k, now)}
        await asyncio.sleep(0)  # the reply on its way
        return found

    async def write(
        self,
        items: Sequence[tuple[str, V]],
        *,
        ttl: float | None = None,
        tags: Sequence[str] = (),
        origin: str,
    ) -> int:
        now = await self._arrive()
        for key, value in items:
            self.shared.put(key, value, ttl if ttl is not None else self.ttl, now)
            for tag in tags:
                self.shared.tags.setdefault(tag, set()).add(key)
        receivers = self.shared.announce(origin, [k for k, _ in items])
        await asyncio.sleep(0)
        return receivers

    async def remove(self, keys: Sequence[str], *, origin: str) -> int:
        now = await self._arrive()
        existed = [k for k in keys if self.shared.live(k, now)]
        for key in existed:
            del self.shared.values[key], self.shared.deadlines[key]
        self.shared.announce(origin, keys)
        await asyncio.sleep(0)
        return len(existed)

    async def invalidate_tag(self, tag: str, *, origin: str) -> tuple[str, ...]:
        keys = tuple(sorted(self.shared.tags.pop(tag, set())))
        await self.remove(keys, origin=origin)
        return keys

    async def claim(self, key: str, lock_ttl: float) -> Claim[V]:
        now = await self._arrive()
        if self.shared.live(key, now):
            claim: Claim[V] = Claim(found=self.shared.stored(key, now))
        else:
            held = self.shared.locks.get(key)
            if held is not None and held[1] > now:
                claim = Claim(wait=held[1] - now)
            else:
                token = secrets.token_hex(8)
                self.shared.locks[key] = (token, now + lock_ttl)
                claim = Claim(token=token)
        await asyncio.sleep(0)
        return claim

    async def commit(self, key: str, token: str, value: V, *, origin: str) -> None:
        now = await self._arrive()
        self.shared.put(key, value, self.ttl, now)
        if self.shared.locks.get(key, ("", 0.0))[0] == token:
            del self.shared.locks[key]
        self.shared.announce(origin, [key])
        await asyncio.sleep(0)

    async def release(self, key: str, token: str, *, origin: str) -> None:
        await self._arrive()
        if self.shared.locks.get(key, ("", 0.0))[0] == token:
            del self.shared.locks[key]
        self.shared.announce(origin, [key])
        await asyncio.sleep(0)

    async def renew(self, key: str, token: str, lock_ttl: float) -> bool:
        now = await self._arrive()
        ours = self.shared.locks.get(key, ("", 0.0))[0] == token
        if ours:
            self.shared.locks[key] = (token, now + lock_ttl)
        await asyncio.sleep(0)
        return ours

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[AsyncIterator[Invalidation]]:
        queue: asyncio.Queue[Invalidation] = asyncio.Queue()
        self.shared.subscribers.append(queue)

        async def announcements() -> AsyncIterator[Invalidation]:
            while True:
                yield await queue.get()

        try:
            yield announcements()
        finally:
            self.shared.subscribers.remove(queue)
