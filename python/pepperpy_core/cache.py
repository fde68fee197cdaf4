"""FIFOCache and S3FIFOCache: the bounded mappings, from the active backend;
LocalCache: any such local cache behind the async cache protocol; ``cached``:
a function's results kept in any of these caches (see ``_cached.py``).

``FIFOCache[K, V](maxsize)`` evicts the oldest inserted key when a new key
arrives at ``maxsize`` entries; overwriting keeps a key's position and reads
never reorder. Every operation is worst-case O(1).

``S3FIFOCache[K, V](maxsize)`` has the same methods and contract but evicts
by S3-FIFO (Yang et al., SOSP 2023) with TinyLFU's frequency sketch
(Einziger et al., 2017) gating its ghost: a new key enters a small FIFO (1%
of maxsize) and leaves from there unless it was read meanwhile, when it
moves to the main FIFO; main's oldest key goes back to main's end while it
was read since (up to three times), else it leaves. Keys that left small
unread are remembered by hash (about 0.9 x maxsize of them); one that comes
back goes to main if main has room or if a count-min sketch of insertions
counts it more often than main's next victim, else to small again. Reads and
overwrites count as uses, ``in`` does not. ``keys()``/``items()`` list
small's keys oldest first, then main's. Eviction is amortized O(1). It keeps
more of a skewed workload than FIFO or LRU (see benches/README.md); for
recency-shaped or write-heavy use FIFOCache is cheaper.

Both take ``ttl=`` (seconds an entry lives after a write; ``set(key, value,
ttl=...)`` per entry), ``tti=`` (seconds it lives after its last read or
write) and ``clock=`` (what they read the time from; ``time.monotonic`` by
default). An entry expires when the clock reads its deadline; an expired
entry is a miss, counted in ``stats().expirations``. There is no thread:
every operation of a cache whose entries may expire reads the clock once,
before it locks, and first removes what is due. A cache without expiry
never reads a clock. Copies and pickles keep the settings and each entry's
time left (counted again from when the copy is made or loaded).

Both backends behave the same; see ``_fallback/cache.py`` and
``_fallback/s3fifo.py`` for the documented contract of each method.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Final, Generic, Protocol, TypeVar, overload

from pepperpy_core._backend import ACTIVE
from pepperpy_core._cached import cached
from pepperpy_core._seconds import seconds_or_none
from pepperpy_core.protocols import CacheProtocol

if TYPE_CHECKING:
    from pepperpy_core._fallback.cache import CacheStats, FIFOCache, S3FIFOCache
else:
    CacheStats = ACTIVE.CacheStats
    FIFOCache = ACTIVE.FIFOCache
    S3FIFOCache = ACTIVE.S3FIFOCache

__all__ = ["CacheStats", "FIFOCache", "LocalCache", "S3FIFOCache", "cached"]

K = TypeVar("K")
V = TypeVar("V")
D = TypeVar("D")
K_contra = TypeVar("K_contra", contravariant=True)
V_co = TypeVar("V_co", covariant=True)

_MISSING: Final = object()


def _now() -> tuple[float, float]:
    """This instant by the monotonic clock and by the wall clock."""
    return time.monotonic(), time.time()


def _reading_or_none(value: object) -> float | None:
    """``value`` as a ``time.monotonic()`` reading, None kept; TypeError else."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise TypeError(f"until must be a time.monotonic() reading, not {value!r}")
    return float(value)


class Peek(Protocol[K_contra, V_co]):
    """A local read: the value of a key, or ``default``."""

    @overload
    def __call__(self, key: K_contra, default: None = None, /) -> V_co | None: ...
    @overload
    def __call__(self, key: K_contra, default: D, /) -> V_co | D: ...


class LocalCache(Generic[K, V]):
    """A local cache (a FIFOCache of ``maxsize`` entries, or any cache with
    the CacheProtocol's methods) behind the async cache protocol, with an
    optional time to live per entry. Nothing here waits: ``peek`` is the
    same read without ``await``: while no entry has a time to live, it is
    the cache's own ``get`` (no Python frame in between).

    An entry's time to live is counted on the monotonic clock and on the
    wall clock at once, and it ends by whichever reads its end first: a step
    of the wall clock (an NTP step, a VM restored from a snapshot) can only
    shorten it. A copy of a value that expires by a store's wall clock (Redis
    on this host) thus ends no later, whichever way the clock is stepped."""

    #: The value of a key if present and not expired, else ``default``.
    peek: Peek[K, V]

    def __init__(
        self, cache: CacheProtocol[K, V] | int = 1000, *, ttl: float | None = None
    ) -> None:
        if isinstance(cache, int) and not isinstance(cache, bool):
            made: CacheProtocol[K, V] = FIFOCache[K, V](cache)
        elif not isinstance(cache, int) and all(
            callable(getattr(cache, m, None)) for m in ("get", "pop", "clear", "__setitem__")
        ):
            made = cache
        else:
            raise TypeError(
                "LocalCache needs a maxsize or a cache with get, pop, clear and [] "
                f"(a FIFOCache), not {type(cache).__name__}"
            )
        self.cache = made
        self.ttl = seconds_or_none(ttl, "ttl")
        # Keys stored with a time to live: their ends by (monotonic, wall) clock.
        self._deadlines: dict[K, tuple[float, float]] = {}
        self._expiring = False
        self._reads_plainly()

    def _reads_plainly(self) -> None:
        """``peek`` is the cache's ``get`` unless entries can expire."""
        self._expiring = self.ttl is not None or bool(self._deadlines)
        self.peek = self._peek_expiring if self._expiring else self.cache.get

    @overload
    def _peek_expiring(self, key: K, default: None = None, /) -> V | None: ...
    @overload
    def _peek_expiring(self, key: K, default: D, /) -> V | D: ...
    def _peek_expiring(self, key: K, default: object = None, /) -> object:
        value = self.cache.get(key, _MISSING)
        if value is _MISSING:
            return default
        if self._deadlines:
            deadline = self._deadlines.get(key)
            if deadline is not None and (
                time.monotonic() >= deadline[0] or time.time() >= deadline[1]
            ):
                self._drop(key)
                return default
        return value

    def put(
        self, key: K, value: V, *, ttl: float | None = None, until: float | None = None
    ) -> None:
        """Store ``value`` under ``key``; ``ttl`` (else the default) bounds its
        life, and so does ``until``, a ``time.monotonic()`` reading (the time
        left until then is counted on both clocks, like a ttl)."""
        seconds = seconds_or_none(ttl, "ttl") if ttl is not None else self.ttl
        deadline = _reading_or_none(until)
        ends = None
        if deadline is not None:
            now = _now()
            ends = (deadline, deadline - now[0] + now[1])
        self._put(key, value, seconds, ends)

    def _put(
        self, key: K, value: V, seconds: float | None, ends: tuple[float, float] | None
    ) -> None:
        """Store ``value`` under ``key`` for ``seconds`` from now and until
        ``ends`` (by monotonic and by wall clock), whichever is first (None:
        no bound)."""
        if seconds is not None:
            now = _now()
            mine = (now[0] + seconds, now[1] + seconds)
            ends = mine if ends is None else (min(ends[0], mine[0]), min(ends[1], mine[1]))
        self.cache[key] = value
        self._ends(key, ends)

    def _ends(self, key: K, deadline: tuple[float, float] | None) -> None:
        """``key`` was just stored, to last until ``deadline`` (None: no end)."""
        if deadline is not None:
            if len(self._deadlines) > 2 * len(self.cache) + 64:
                self._prune()
            self._deadlines[key] = deadline
            if not self._expiring:
                self._reads_plainly()
        elif self._deadlines:
            self._deadlines.pop(key, None)

    def drop(self, key: K) -> bool:
        """Forget ``key``; whether it was there."""
        return self._drop(key)

    def clear(self) -> None:
        """Forget everything."""
        self.cache.clear()
        self._deadlines.clear()
        self._reads_plainly()

    def _drop(self, key: K) -> bool:
        self._deadlines.pop(key, None)
        return self.cache.pop(key, _MISSING) is not _MISSING

    def _prune(self) -> None:
        """Forget the deadlines of keys the cache has evicted."""
        cache = self.cache
        self._deadlines = {k: d for k, d in self._deadlines.items() if k in cache}

    # --- the async protocol ---------------------------------------------------------

    @overload
    async def get(self, key: K, default: None = None, /) -> V | None: ...
    @overload
    async def get(self, key: K, default: V | D, /) -> V | D: ...
    async def get(self, key: K, default: object = None, /) -> object:
        """``peek``, awaited."""
        return self.peek(key, default)

    async def set(self, key: K, value: V, *, ttl: float | None = None) -> None:
        """``put``, awaited."""
        self.put(key, value, ttl=ttl)

    async def delete(self, key: K) -> bool:
        """``drop``, awaited."""
        return self._drop(key)

    async def get_many(self, keys: Iterable[K]) -> dict[K, V]:
        """The keys that are present, with their values: the cache's own
        ``get_many`` (so a key that fails to hash or compare, or an iterable
        that raises, uses nothing), less what expired."""
        many = getattr(self.cache, "get_many", None)
        if many is None:  # a cache with no get_many of its own: read each
            return self._peek_each(list(keys))
        found: dict[K, V] = many(keys)
        if self._deadlines:
            now, wall = _now()
            deadlines = self._deadlines
            for key in [
                k
                for k in found
                if (d := deadlines.get(k)) is not None and (now >= d[0] or wall >= d[1])
            ]:
                self._drop(key)
                del found[key]
        return found

    def _peek_each(self, keys: list[K]) -> dict[K, V]:
        found: dict[K, V] = {}
        for key in keys:
            value = self.peek(key, _MISSING)
            if value is not _MISSING:
                found[key] = value  # type: ignore[assignment]
        return found

    async def set_many(
        self, items: Mapping[K, V] | Iterable[tuple[K, V]], *, ttl: float | None = None
    ) -> None:
        """Store every pair: the cache's own ``set_many`` (so a bad pair or
        key stores none), each with ``ttl`` (else the default)."""
        seconds = seconds_or_none(ttl, "ttl") if ttl is not None else self.ttl
        pairs = [tuple(pair) for pair in (items.items() if isinstance(items, Mapping) else items)]
        many = getattr(self.cache, "set_many", None)
        if many is None:  # a cache with no set_many of its own: write each
            for key, value in pairs:
                self.put(key, value, ttl=ttl)
            return
        many(pairs)
        deadline = None
        if seconds is not None:
            now = _now()
            deadline = (now[0] + seconds, now[1] + seconds)
        for key, _ in pairs:
            self._ends(key, deadline)

    def __getitem__(self, key: K) -> V:
        """The value of ``key``; KeyError if it is missing or expired."""
        value = self.peek(key, _MISSING)
        if value is _MISSING:
            raise KeyError(key)
        return value  # type: ignore[return-value]

    def __len__(self) -> int:
        return len(self.cache)

    def __repr__(self) -> str:
        return f"LocalCache({self.cache!r}, ttl={self.ttl})"
