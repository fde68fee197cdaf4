"""TieredCache: local copies of a store that many processes share, kept
coherent, and one load per key across all of them.

The store is any ``protocols.RemoteStore`` (``redis.RedisCache`` is the
first); nothing here knows Redis.

- Reads take the local copy, else the store's value, which is then kept
  locally for no longer than the store will keep it (its time left to live,
  counted on both the monotonic and the wall clock: the store may expire it
  by this host's wall clock, which can be stepped).
- Writes and deletes go to the store, which announces the keys to every
  TieredCache on it; each drops its copies when the announcement arrives. A
  reply about a key that changed while it was on its way (announced, or
  written or deleted here) is not kept locally, so a process never keeps the
  value a concurrent write replaced; a change of another key does not stop
  it being kept.
- Local copies are served only while the announcements are being received:
  when the subscription is lost (the store is down, or the listener fails),
  they are dropped and reads go to the store, until it is back.
- ``load(key, loader)``: one ``loader()`` per key across every process. In
  a process, concurrent callers share one load (single flight); across
  processes, the store's load lock decides who loads, the others wait for the
  owner's announcement (or for its lock to expire, if it died), then read
  what it stored. A store that cannot be reached is a miss: the loader runs
  here, and nothing reaches the caller that the loader could answer.
- An unreachable store is noticed once: for a second afterwards the tier
  does not try it (no request waits its timeout for nothing), and the log
  says when it went and when it came back, once each.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Final, Generic, TypeVar, overload

from pepperpy_core._seconds import seconds
from pepperpy_core._singleflight import SingleFlight
from pepperpy_core.cache import LocalCache, Peek, _now
from pepperpy_core.errors import CacheUnavailableError
from pepperpy_core.protocols import CacheProtocol, RemoteStore
from pepperpy_core.stores import Invalidation, Stored

__all__ = ["TieredCache"]

V = TypeVar("V")
D = TypeVar("D")

_log: Final = logging.getLogger("pepperpy_core.tier")
_MISSING: Final = object()
#: Seconds the tier leaves an unreachable store alone before trying it again.
RETRY_AFTER: Final = 1.0
# A store's time left is whole milliseconds, rounded down from its clock.
_STORE_CLOCK_RESOLUTION: Final = 0.001
_STORE_METHODS: Final = ("fetch", "write", "remove", "claim", "commit", "release", "subscribe")


def _not_served(key: object, default: object = None, /) -> Any:
    """``peek`` while local copies are not served: every read is a miss."""
    return default


class _Changes:
    """Which keys changed while requests about them were out: a reply is
    kept locally only if its key did not change meanwhile. Only keys with a
    request out are followed, so that this stays as small as what is in flight."""

    __slots__ = ("_epoch", "_out")

    def __init__(self) -> None:
        self._epoch = 0  # moves when every key changed at once (copies were cleared)
        self._out: dict[str, list[int]] = {}  # key -> [requests out, changes since]

    def watch(self, keys: Iterable[str]) -> tuple[int, dict[str, int]]:
        """Follow ``keys`` for a request going out; what ``unchanged`` compares with."""
        out = self._out
        marks: dict[str, int] = {}
        for key in keys:
            entry = out.get(key)
            if entry is None:
                entry = out[key] = [0, 0]
            entry[0] += 1
            marks[key] = entry[1]
        return self._epoch, marks

    def unchanged(self, since: tuple[int, dict[str, int]], key: str) -> bool:
        """Whether ``key`` has not changed since ``watch`` returned ``since``."""
        epoch, marks = since
        entry = self._out.get(key)
        return epoch == self._epoch and entry is not None and marks.get(key) == entry[1]

    def unwatch(self, keys: Iterable[str]) -> None:
        """The request ``watch`` followed ``keys`` for is back."""
        out = self._out
        for key in keys:
            entry = out[key]
            entry[0] -= 1
            if not entry[0]:
                del out[key]

    def changed(self, key: str) -> None:
        entry = self._out.get(key)
        if entry is not None:
            entry[1] += 1

    def everything(self) -> None:
        self._epoch += 1


def _check_key(key: object) -> str:
    if type(key) is not str:
        raise TypeError(f"a tier's key must be a str, not {type(key).__name__}")
    return key


class TieredCache(Generic[V]):
    """A local cache in front of a store shared by many processes, kept
    coherent across them (see this module's doc)."""

    def __init__(
        self,
        local: LocalCache[str, V] | CacheProtocol[str, V] | int,
        remote: RemoteStore[V],
        *,
        lock_ttl: float = 10.0,
        wait_poll: float = 0.05,
    ) -> None:
        missing = [m for m in _STORE_METHODS if not callable(getattr(remote, m, None))]
        if missing:
            raise TypeError(
                f"remote must be a shared store (a RedisCache, or anything with the "
                f"RemoteStore protocol's methods); {type(remote).__name__} has no "
                f"{', '.join(missing)}"
            )
        self.local: LocalCache[str, V] = (
            local if isinstance(local, LocalCache) else LocalCache(local)
        )
        self.remote = remote
        self.lock_ttl = seconds(lock_ttl, "lock_ttl")
        self.wait_poll = seconds(wait_poll, "wait_poll")
        # Changes to keys with requests out (ours or announced): a reply is
        # kept locally only if its key did not change meanwhile.
        self._changes = _Changes()
        self._origin = secrets.token_hex(8)  # our announcements, skipped on arrival
        self._listener: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self._arrivals: dict[str, asyncio.Event] = {}  # keys a load waits to hear of
        self._flights: SingleFlight[V] = SingleFlight(self)
        self._down = False  # the store did not answer last time
        self._retry_at = 0.0  # when to try it again
        self._listener_failed = False  # logged, until it listens again
        self.received = 0  # announcements from other writers, so far
        self.peek = _not_served

    #: The local copy of a key (else ``default``), without waiting for
    #: anything: the local cache's own read while copies are served.
    peek: Peek[str, V]

    @property
    def listening(self) -> bool:
        """Whether announcements are being received now: local copies are
        served only then."""
        return self._subscribed.is_set()

    @property
    def name(self) -> str:
        """How logs and errors name this tier."""
        return f"TieredCache({getattr(self.remote, 'prefix', type(self.remote).__name__)!r})"

    # --- local copies -----------------------------------------------------------------------

    def _keep(self, key: str, stored: Stored[V], since: tuple[float, float]) -> None:
        """Keep a copy of what the store holds, for no longer than the store
        will: its time left, counted from ``since`` (when the request was
        sent, which is before the store measured it) on both clocks (the
        store's may be this host's wall clock, stepped meanwhile), less the
        store's clock resolution."""
        if self.peek is _not_served:
            return
        ends = None
        if stored.ttl is not None:
            left = stored.ttl - _STORE_CLOCK_RESOLUTION
            ends = (since[0] + left, since[1] + left)
            now = _now()
            if ends[0] <= now[0] or ends[1] <= now[1]:
                return
        self.local._put(key, stored.value, self.local.ttl, ends)
        self.peek = self.local.peek  # a first time to live changes how it reads

    def _serve_local(self) -> None:
        self._clear_local()  # announcements may have been missed until now
        self.peek = self.local.peek
        self._subscribed.set()

    def _stop_serving_local(self) -> None:
        self._subscribed.clear()
        self.peek = _not_served
        self._clear_local()
        for arrived in self._arrivals.values():
            arrived.set()  # a load waiting to hear from another looks again now

    def _clear_local(self) -> None:
        self._changes.everything()
        self.local.clear()

    # --- the store, and when it is down -----------------------------------------------------

    def _skipping(self) -> bool:
        """Whether the store was unreachable a moment ago (then it is not tried)."""
        return self._down and time.monotonic() < self._retry_at

    def _went_down(self, error: CacheUnavailableError) -> None:
        if not self._down:
            _log.warning("%s: %s; loaders answer until it is back", self.name, error)
        self._down = True
        self._retry_at = time.monotonic() + RETRY_AFTER

    def _came_up(self) -> None:
        if self._down:
            self._down = False
            _log.warning("%s: the store answers again", self.name)

    def _unavailable(self) -> CacheUnavailableError:
        return CacheUnavailableError(f"{self.name}: the store did not answer a moment ago")

    async def _fetch(self, keys: Sequence[str]) -> dict[str, Stored[V]]:
        """The store's values of ``keys`` (kept locally, unless a change was
        announced meanwhile); nothing when it cannot be reached."""
        if self._skipping():
            return {}
        self._listen()
        changes = self._changes
        since = changes.watch(keys)
        sent = _now()
        try:
            found = await self.remote.fetch(keys)
            self._came_up()
            for key, stored in found.items():
                if changes.unchanged(since, key):
                    self._keep(key, stored, sent)
        except CacheUnavailableError as error:
            self._went_down(error)
            return {}
        finally:
            changes.unwatch(keys)
        return found

    # --- reads --------------------------------------------------------------------------------

    @overload
    async def get(self, key: str, default: None = None, /) -> V | None: ...
    @overload
    async def get(self, key: str, default: V | D, /) -> V | D: ...
    async def get(self, key: str, default: object = None, /) -> object:
        """The local copy, else the store's value (then kept locally), else
        ``default``; a store that cannot be reached is a miss."""
        local: Any = self.peek(key, _MISSING)
        if local is not _MISSING:
            return local
        stored = (await self._fetch([_check_key(key)])).get(key)
        return default if stored is None else stored.value

    async def get_many(self, keys: Iterable[str]) -> dict[str, V]:
        """Local copies, and the rest from the store in one round trip. Every
        key is checked before any is read: a key that is not a str, or an
        iterable that raises, reads (and so uses) nothing."""
        found: dict[str, V] = {}
        missing: list[str] = []
        for key in [_check_key(key) for key in keys]:
            value: Any = self.peek(key, _MISSING)
            if value is _MISSING:
                missing.append(key)
            else:
                found[key] = value
        if missing:
            for key, stored in (await self._fetch(missing)).items():
                found[key] = stored.value
        return found

    # --- writes -------------------------------------------------------------------------------

    async def set(
        self, key: str, value: V, *, ttl: float | None = None, tags: Sequence[str] = ()
    ) -> None:
        """Write the store (which tells the other processes), then the local
        copy. CacheUnavailableError (the local copy dropped) if the store
        cannot be written; TypeError, and nothing written, if the value
        cannot be stored. ``tags`` name groups that ``invalidate_tag`` drops."""
        await self.set_many([(key, value)], ttl=ttl, tags=tags)

    async def set_many(
        self,
        items: Mapping[str, V] | Iterable[tuple[str, V]],
        *,
        ttl: float | None = None,
        tags: Sequence[str] = (),
    ) -> None:
        """``set`` for every pair, in one round trip and one announcement."""
        pairs = [
            (_check_key(k), v) for k, v in (items.items() if isinstance(items, Mapping) else items)
        ]
        if not pairs:
            return
        self._listen()
        changes = self._changes
        keys = [key for key, _ in pairs]
        for key in keys:
            changes.changed(key)  # a read of it out now may bring the old value
        since = changes.watch(keys)
        sent = _now()
        try:
            if self._skipping():
                raise self._unavailable()
            receivers = await self.remote.write(
                pairs, ttl=ttl, tags=tuple(tags), origin=self._origin
            )
        except BaseException as error:
            for key in keys:
                changes.changed(key)
                self.local.drop(key)
            if isinstance(error, CacheUnavailableError):
                self._went_down(error)
            raise
        else:
            self._came_up()
            # A key another process changed meanwhile: which write came last
            # is not known here, so no copy of it is kept.
            keep = [changes.unchanged(since, key) for key in keys]
            for key in keys:
                changes.changed(key)  # a read that went out meanwhile may bring the old value
            for (key, value), kept in zip(pairs, keep, strict=True):
                if kept:
                    self._keep(
                        key, Stored(value, ttl if ttl is not None else self.remote.ttl), sent
                    )
                else:
                    self.local.drop(key)
        finally:
            changes.unwatch(keys)
        if receivers == 0 and self._subscribed.is_set():
            # Our own listener should have heard it: the subscription is dead.
            self._restart_listener("an announcement reached no subscriber, not even this one")

    async def delete(self, key: str) -> bool:
        """Remove ``key`` here, in the store and in every other process's copies."""
        self._listen()
        self._changes.changed(_check_key(key))
        self.local.drop(key)
        try:
            if self._skipping():
                raise self._unavailable()
            existed = await self.remote.remove([key], origin=self._origin)
        finally:
            self._changes.changed(key)
            self.local.drop(key)
        return existed > 0

    async def invalidate_tag(self, tag: str) -> int:
        """Remove every key written with ``tag``, in the store and in every
        process's copies; how many there were."""
        if type(tag) is not str:
            raise TypeError(f"a tag must be a str, not {type(tag).__name__}")
        self._listen()
        self._changes.everything()  # which keys are known only from the reply
        try:
            keys = await self.remote.invalidate_tag(tag, origin=self._origin)
        finally:
            self._changes.everything()
        for key in keys:
            self.local.drop(key)
        return len(keys)

    def clear(self) -> None:
        """Forget the local copies (the store, which others share, keeps its keys)."""
        self._clear_local()

    # --- one load across processes --------------------------------------------------------------

    async def load(self, key: str, loader: Callable[[], Awaitable[V]]) -> V:
        """The value of ``key`` from the store, else from ``loader()``, run
        once across every process sharing the store (see this module's doc);
        the loaded value is stored. CircularLoadError if the loader waits for
        this very load."""
        _check_key(key)
        return await self._flights.run(key, lambda: self._load(key, loader))

    async def _load(self, key: str, loader: Callable[[], Awaitable[V]]) -> V:
        self._listen()
        # Registered before the first claim: the owner's announcement may
        # arrive while the claim's reply is on its way.
        arrived = self._arrivals.setdefault(key, asyncio.Event())
        try:
            while True:
                if self._skipping():
                    return await self._load_here(key, loader)
                arrived.clear()
                since = self._changes.watch((key,))
                sent = _now()
                try:
                    claim = await self.remote.claim(key, self.lock_ttl)
                    kept = self._changes.unchanged(since, key)
                except CacheUnavailableError as error:
                    self._went_down(error)
                    return await self._load_here(key, loader)
                finally:
                    self._changes.unwatch((key,))
                self._came_up()
                if claim.found is not None:
                    if kept:
                        self._keep(key, claim.found, sent)
                    return claim.found.value
                if claim.token is not None:
                    return await self._load_locked(key, loader, claim.token)
                # Another process loads: its announcement wakes us (or, if
                # it died, its lock runs out), then we look again.
                subscribed = self._subscribed.is_set()
                wait = claim.wait if subscribed else min(claim.wait, self.wait_poll)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await arrived.wait()
        finally:
            # One load per key at a time here (single flight): this one is done.
            if self._arrivals.get(key) is arrived:
                del self._arrivals[key]

    async def _load_here(self, key: str, loader: Callable[[], Awaitable[V]]) -> V:
        """The store cannot be reached: load here, and store it if it is back."""
        value = await loader()
        if not self._skipping():
            with contextlib.suppress(CacheUnavailableError):
                await self.set(key, value)
        return value

    async def _load_locked(self, key: str, loader: Callable[[], Awaitable[V]], token: str) -> V:
        renewing = asyncio.ensure_future(self._renew(key, token))
        try:
            value = await loader()
        except BaseException:
            renewing.cancel()
            # Waiters elsewhere try at once; a cancellation here leaves the
            # release running to its end in a task of its own.
            await _quietly(asyncio.shield(self.remote.release(key, token, origin=self._origin)))
            raise
        renewing.cancel()
        since = self._changes.watch((key,))
        sent = _now()
        try:
            await asyncio.shield(self.remote.commit(key, token, value, origin=self._origin))
        except CacheUnavailableError as error:
            self._went_down(error)
            _log.warning("%s: %r is kept only here (%s)", self.name, key, error)
        finally:
            kept = self._changes.unchanged(since, key)
            self._changes.unwatch((key,))
        if kept:
            self._keep(key, Stored(value, self.remote.ttl), sent)
        return value

    async def _renew(self, key: str, token: str) -> None:
        """Keep the lock while the loader runs (a third of its life at a time)."""
        while True:
            await asyncio.sleep(self.lock_ttl / 3)
            try:
                if not await self.remote.renew(key, token, self.lock_ttl):
                    _log.warning("%s: the lock of %r was lost while its loader ran", self.name, key)
                    return
            except CacheUnavailableError:
                continue

    # --- the subscription -------------------------------------------------------------------------

    def _listen(self) -> None:
        """Start listening for other processes' changes, if not yet."""
        if self._listener is None or self._listener.done():
            self._listener = asyncio.ensure_future(self._listening())

    def _restart_listener(self, why: str) -> None:
        _log.warning("%s: %s; subscribing again", self.name, why)
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.cancel()
        self._stop_serving_local()
        self._listen()

    async def subscribed(self) -> None:
        """Wait until announcements are being received (bound it with
        ``asyncio.timeout``: while the store is down, that is forever)."""
        self._listen()
        await self._subscribed.wait()

    async def _listening(self) -> None:
        backoff = 0.05
        while True:
            try:
                async with self.remote.subscribe() as announcements:
                    self._came_up()  # it answered
                    self._serve_local()
                    if self._listener_failed:
                        self._listener_failed = False
                        _log.warning("%s: receiving announcements again", self.name)
                    backoff = 0.05
                    async for announcement in announcements:
                        self._apply(announcement)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # whatever it is, the listener goes on
                if not self._listener_failed:
                    self._listener_failed = True
                    _log.warning(
                        "%s: lost the announcements (%r); local copies are not served "
                        "until they are back",
                        self.name,
                        error,
                    )
            finally:
                self._stop_serving_local()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    def _apply(self, announcement: Invalidation) -> None:
        mine = announcement.origin == self._origin
        if not mine:
            self.received += 1
        for key in announcement.keys:
            if not mine:
                self._changes.changed(key)
                self.local.drop(key)
            arrived = self._arrivals.get(key)
            if arrived is not None:
                arrived.set()

    async def aclose(self) -> None:
        """Stop listening (a later use starts again)."""
        listener, self._listener = self._listener, None
        while listener is not None and not listener.done():
            listener.cancel()  # again, if the client swallowed the first one
            await asyncio.wait([listener], timeout=0.1)
        self._stop_serving_local()

    def __getitem__(self, key: str) -> V:
        """The local copy of ``key`` (KeyError if there is none): what
        ``CachedModule.get_or_load`` reads first, without waiting."""
        value: Any = self.peek(key, _MISSING)
        if value is _MISSING:
            raise KeyError(key)
        return value  # type: ignore[no-any-return]

    def __len__(self) -> int:
        return len(self.local)

    def __repr__(self) -> str:
        return f"TieredCache({self.local!r}, {self.remote!r})"


async def _quietly(release: Awaitable[object]) -> None:
    """Await a release; a store that cannot be reached lets the lock expire by itself."""
    with contextlib.suppress(CacheUnavailableError):
        await release
