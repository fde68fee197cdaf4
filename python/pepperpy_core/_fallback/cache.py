"""The pure-Python FIFOCache: a dict in insertion order, a deque that finds the
oldest key in O(1), and a re-entrant lock.

A plain dict already keeps FIFO order (an overwrite keeps a key's place), but
finding its oldest key with ``next(iter(d))`` scans the holes that deletions
leave at the front, so the deque remembers insertion order. Keys removed by
``pop`` stay in the deque as stale entries, counted in ``_stale`` and skipped
on eviction; the deque is rebuilt when stale entries outnumber live ones.
OrderedDict would do the bookkeeping itself, but iterating it compares keys,
so a key whose ``__eq__`` uses the cache could not even be listed.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Final, Generic, TypeVar, overload

K = TypeVar("K")
V = TypeVar("V")
T = TypeVar("T")

#: Largest maxsize, the same bound as the native table's.
MAX_ENTRIES = 2**32 - 2


class _Missing(Enum):
    MISSING = 0


_MISSING: Final = _Missing.MISSING


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheStats:
    """Counters of a cache since it was made: reads that hit or missed, new keys
    inserted and keys evicted to make room."""

    hits: int
    misses: int
    inserts: int
    evictions: int


def check_maxsize(maxsize: object) -> int:
    """Return ``maxsize`` if it is an int in [1, MAX_ENTRIES]; raise otherwise."""
    if type(maxsize) is not int:
        raise TypeError(f"maxsize must be an int, not {type(maxsize).__name__}")
    if maxsize < 1:
        raise ValueError(f"maxsize must be at least 1, got {maxsize}")
    if maxsize > MAX_ENTRIES:
        raise ValueError(f"maxsize must be at most {MAX_ENTRIES}, got {maxsize}")
    return maxsize


def _pairs(items: Mapping[K, V] | Iterable[tuple[K, V]]) -> list[tuple[K, V]]:
    """The (key, value) pairs of ``items``, each key hashed once to fail early."""
    source = items.items() if isinstance(items, Mapping) else items
    pairs: list[tuple[K, V]] = []
    for pair in source:
        item = tuple(pair)
        if len(item) != 2:
            raise ValueError("set_many expects (key, value) pairs, got one of another length")
        hash(item[0])
        pairs.append((item[0], item[1]))
    return pairs


class FIFOCache(Generic[K, V]):
    """A bounded mapping that evicts the oldest inserted key when a new key
    arrives at ``maxsize`` entries. Thread-safe; every operation is O(1).

    Overwriting a key keeps its position and reads never reorder. Values that
    leave the cache are released after the lock is, so their ``__del__`` may
    use the cache.
    """

    __slots__ = (
        "__weakref__",
        "_data",
        "_evictions",
        "_hits",
        "_inserts",
        "_lock",
        "_maxsize",
        "_misses",
        "_order",
        "_stale",
    )

    def __init__(self, maxsize: int) -> None:
        self._maxsize = check_maxsize(maxsize)
        self._data: dict[K, V] = {}
        self._order: deque[K] = deque()
        self._stale: dict[K, int] = {}
        # Re-entrant: a key's __eq__ may use the cache from inside an operation.
        self._lock = threading.RLock()
        self._hits = 0
        self._misses = 0
        self._inserts = 0
        self._evictions = 0

    @property
    def maxsize(self) -> int:
        """The most entries the cache holds."""
        return self._maxsize

    @overload
    def get(self, key: K, default: None = None) -> V | None: ...
    @overload
    def get(self, key: K, default: V | T) -> V | T: ...
    def get(self, key: K, default: V | T | None = None) -> V | T | None:
        """The value of ``key``, or ``default``; counts a hit or a miss."""
        # acquire/release with try/finally: half the cost of ``with`` on 3.11.
        self._lock.acquire()
        try:
            value = self._data.get(key, _MISSING)
            if value is _MISSING:
                self._misses += 1
                return default
            self._hits += 1
            return value
        finally:
            self._lock.release()

    def __getitem__(self, key: K) -> V:
        self._lock.acquire()
        try:
            value = self._data.get(key, _MISSING)
            if value is _MISSING:
                self._misses += 1
                raise KeyError(key)
            self._hits += 1
            return value
        finally:
            self._lock.release()

    def set(self, key: K, value: V) -> None:
        """Insert or overwrite ``key``; a new key at maxsize evicts the oldest."""
        released: object = None
        self._lock.acquire()
        try:
            data = self._data
            if key in data:
                released = data[key]
                data[key] = value
            else:
                # Insert first: a key whose __eq__ raises then changes nothing.
                # Every reader takes the lock, so none sees the extra entry.
                data[key] = value
                self._order.append(key)
                self._inserts += 1
                if len(data) > self._maxsize:
                    released = self._evict_oldest()
                    self._evictions += 1
        finally:
            self._lock.release()
        # What left the cache is released here, after the lock.
        del released

    __setitem__ = set

    def _evict_oldest(self) -> tuple[K, V]:
        """Remove the oldest live entry; the caller holds the lock."""
        order = self._order
        stale = self._stale
        while True:
            key = order.popleft()
            if stale and key in stale:
                left = stale.pop(key) - 1
                if left:
                    stale[key] = left
                continue
            return key, self._data.pop(key)

    def _forget(self, key: K) -> None:
        """Record that one deque entry of ``key`` is stale; the caller holds
        the lock and has just removed ``key`` from ``_data``."""
        stale = self._stale
        stale[key] = stale.get(key, 0) + 1
        if len(self._order) > 2 * len(self._data) + 32:
            self._order = deque(self._data)
            stale.clear()

    def __delitem__(self, key: K) -> None:
        with self._lock:
            value = self._data.pop(key)
            self._forget(key)
        del value

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._data

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)

    def __iter__(self) -> Iterator[K]:
        return iter(self.keys())

    @overload
    def pop(self, key: K) -> V: ...
    @overload
    def pop(self, key: K, default: V | T) -> V | T: ...
    def pop(self, key: K, default: V | T | _Missing = _MISSING) -> V | T:
        """Remove ``key`` and return its value; without a default a missing key
        is a KeyError."""
        with self._lock:
            value = self._data.pop(key, _MISSING)
            if value is not _MISSING:
                self._forget(key)
        if value is not _MISSING:
            return value
        if default is _MISSING:
            raise KeyError(key)
        return default

    def clear(self) -> None:
        """Remove every entry; the stats are kept."""
        with self._lock:
            old = (self._data, self._order, self._stale)
            self._data, self._order, self._stale = {}, deque(), {}
        del old

    def keys(self) -> list[K]:
        """The keys, oldest first (a snapshot)."""
        with self._lock:
            return list(self._data)

    def values(self) -> list[V]:
        """The values, oldest first (a snapshot)."""
        with self._lock:
            return list(self._data.values())

    def items(self) -> list[tuple[K, V]]:
        """The (key, value) pairs, oldest first (a snapshot)."""
        with self._lock:
            return list(self._data.items())

    def stats(self) -> CacheStats:
        """Hits, misses, inserts and evictions so far."""
        with self._lock:
            return CacheStats(
                hits=self._hits,
                misses=self._misses,
                inserts=self._inserts,
                evictions=self._evictions,
            )

    def get_many(self, keys: Iterable[K]) -> dict[K, V]:
        """The present keys among ``keys`` with their values; each key counts as
        a hit or a miss, and nothing is counted if a key fails to hash or compare."""
        wanted = list(keys)
        found: dict[K, V] = {}
        misses = 0
        with self._lock:
            data = self._data
            for key in wanted:
                value = data.get(key, _MISSING)
                if value is _MISSING:
                    misses += 1
                else:
                    found[key] = value
            self._hits += len(wanted) - misses
            self._misses += misses
        return found

    def set_many(self, items: Mapping[K, V] | Iterable[tuple[K, V]]) -> None:
        """Set every pair of a mapping or an iterable of pairs, in order. Every
        key is hashed first, so an unhashable key changes nothing."""
        for key, value in _pairs(items):
            self.set(key, value)

    def __repr__(self) -> str:
        return f"FIFOCache(maxsize={self._maxsize}, len={len(self._data)})"
