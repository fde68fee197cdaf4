"""The pure-Python FIFOCache: the native table's algorithm, written so that no
user code runs while the cache's lock is held.

Storage: ``_data`` maps a *dict key* to an entry ``[dict key, value, key]``.
A key whose hash and ``==`` are C code that can neither call Python nor warn
(exact str, int, float, bool, None, and tuples of those) is its own dict key,
so reading it is one dict lookup with no lock. Any other key (a user class, a
str subclass, bytes, which warn against str under ``python -b``) is stored
under a private wrapper tuple whose hash and ``==`` are also C code, and is
found through ``_wrapped`` (its hash -> its entries) by comparing keys with
no lock held. The dict's insertion order is the FIFO order (an overwrite
changes the entry, not the dict); ``_order`` holds the entries in that order
so that the oldest is found in O(1), with entries that left (``pop``) skipped.

Writes find the entry a key refers to without the lock, where that needs
``__hash__``/``__eq__``, then take the lock and apply the change only if the
cache's version did not move meanwhile (else they look again, and after
MAX_ROUNDS changed attempts raise RuntimeError). Values and keys that leave
the cache are released after the lock. A finalizer or signal handler that
runs on the same thread in the middle of a write and writes to the cache gets
a RuntimeError instead of a deadlock or a corrupt cache.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final, Generic, TypeVar, cast, overload

K = TypeVar("K")
V = TypeVar("V")
T = TypeVar("T")

#: Largest maxsize, the same bound as the native table's.
MAX_ENTRIES = 2**32 - 2
#: How many times one operation may find the cache changed while it compared
#: keys with the lock released before it gives up (as the native table).
MAX_ROUNDS: Final = 100
_CHANGED: Final = (
    "FIFOCache changed during the operation: a key's __eq__ modified the cache "
    f"each time it was compared (gave up after {MAX_ROUNDS} tries)"
)
_BUSY: Final = (
    "FIFOCache was used by a finalizer or signal handler in the middle of "
    "another operation on the same thread; retry after that operation returns"
)


class _Missing(Enum):
    MISSING = 0


_MISSING: Final = _Missing.MISSING


class _Marker:
    """A private object that equals only itself (C-level identity)."""

    __slots__ = ()


#: First item of a wrapper tuple (the dict key of a key that is not plain).
_WRAPPED: Final = _Marker()
#: Put in an entry's first slot when it leaves the cache.
_GONE: Final = _Marker()

_PLAIN: Final = frozenset({str, int, float, bool, type(None)})

#: [dict key, value, key]
_Entry = list[Any]


def _is_plain(key: object) -> bool:
    """Whether hashing ``key`` and comparing it with any stored dict key is C
    code that cannot run Python or warn."""
    kind = type(key)
    if kind in _PLAIN:
        return True
    if kind is tuple:
        for item in cast("tuple[object, ...]", key):  # noqa: SIM110 - all() over a generator is slower
            if not _is_plain(item):
                return False
        return True
    return False


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


def _pairs(items: Mapping[K, V] | Iterable[tuple[K, V]]) -> list[tuple[K, V, int]]:
    """(key, value, hash) for every pair of a mapping (through ``items()``) or
    of an iterable of pairs, each key hashed once to fail before any change."""
    source = items.items() if isinstance(items, Mapping) else items
    pairs: list[tuple[K, V, int]] = []
    for pair in source:
        item = tuple(pair)
        if len(item) != 2:
            raise ValueError("set_many expects (key, value) pairs, got one of another length")
        pairs.append((item[0], item[1], hash(item[0])))
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
        "_busy",
        "_data",
        "_dead",
        "_evictions",
        "_hits",
        "_inserts",
        "_lock",
        "_maxsize",
        "_misses",
        "_order",
        "_version",
        "_wrapped",
    )

    def __init__(self, maxsize: int) -> None:
        self._maxsize = check_maxsize(maxsize)
        self._data: dict[Any, _Entry] = {}
        self._order: deque[_Entry] = deque()
        self._dead = 0  # entries in _order that left the cache
        self._wrapped: dict[int, dict[int, _Entry]] = {}  # hash -> {id(entry): entry}
        self._lock = threading.RLock()
        self._busy = False
        self._version = 0
        self._hits = 0
        self._misses = 0
        self._inserts = 0
        self._evictions = 0

    @property
    def maxsize(self) -> int:
        """The most entries the cache holds."""
        return self._maxsize

    # --- the lock ----------------------------------------------------------------

    def _acquire(self) -> None:
        # Re-entrant so that a nested use on this thread (a finalizer or a
        # signal handler run by the interpreter mid-operation) is refused
        # rather than deadlocked; other threads wait.
        self._lock.acquire()
        if self._busy:
            self._lock.release()
            raise RuntimeError(_BUSY)
        self._busy = True

    def _release(self) -> None:
        self._busy = False
        self._lock.release()

    # --- finding a key -----------------------------------------------------------

    def _compare_wrapped(self, key: object, hashed: int) -> _Entry | None:
        """The entry of a stored key that is not plain and equals ``key``;
        runs the stored keys' ``__eq__``, so never under the lock."""
        group = self._wrapped.get(hashed)
        if not group:
            return None
        for entry in tuple(group.values()):
            stored = entry[2]
            # As a dict does: identity, then the stored key's __eq__.
            if stored is key or stored == key:
                return entry
        return None

    def _read(self, key: object) -> _Entry | None:
        """The entry of ``key`` when the plain lookup missed and keys that are
        not plain are stored: compared with no lock, retried while the cache
        changes under the comparison."""
        hashed = hash(key)
        for _ in range(MAX_ROUNDS):
            version = self._version
            entry = self._compare_wrapped(key, hashed)
            if self._version == version:
                return entry
        raise RuntimeError(_CHANGED)

    def _locate(self, key: object, hashed: int, plain: bool) -> _Entry | None:
        """Take the lock and return the entry of ``key`` (or None), found as
        of now. The caller releases the lock."""
        for _ in range(MAX_ROUNDS):
            if plain:
                self._acquire()
                entry = self._data.get(key)
                if entry is not None or hashed not in self._wrapped:
                    return entry
                version = self._version
                self._release()
            else:
                version = self._version
            entry = self._data.get(key)  # a plain stored key equal to this one
            if entry is None and self._wrapped:
                entry = self._compare_wrapped(key, hashed)
            self._acquire()
            if self._version == version:
                return entry
            self._release()
        raise RuntimeError(_CHANGED)

    # --- changes (the caller holds the lock) ----------------------------------------

    def _unlink(self, entry: _Entry) -> None:
        """Remove a live entry from ``_data`` and ``_wrapped``."""
        dkey = entry[0]
        del self._data[dkey]
        if dkey is not entry[2]:  # a wrapper tuple: (_WRAPPED, hash, id(entry))
            group = self._wrapped[dkey[1]]
            del group[id(entry)]
            if not group:
                del self._wrapped[dkey[1]]
        entry[0] = _GONE
        self._version += 1

    def _evict_oldest(self) -> _Entry:
        order = self._order
        while True:
            entry = order.popleft()
            if entry[0] is _GONE:
                self._dead -= 1
                continue
            self._unlink(entry)
            self._evictions += 1
            return entry

    def _append(self, entry: _Entry, group: dict[int, _Entry] | None) -> _Entry | None:
        """Insert a new entry (its dict key and, if wrapped, its empty group
        made by the caller before locking); returns the evicted entry."""
        evicted = None
        if len(self._data) >= self._maxsize:
            evicted = self._evict_oldest()
        dkey = entry[0]
        self._data[dkey] = entry
        self._order.append(entry)
        if group is not None:
            self._wrapped.setdefault(dkey[1], group)[id(entry)] = entry
        self._version += 1
        self._inserts += 1
        return evicted

    # --- reads -------------------------------------------------------------------

    @overload
    def get(self, key: K, default: None = None, /) -> V | None: ...
    @overload
    def get(self, key: K, default: V | T, /) -> V | T: ...
    def get(self, key: K, default: V | T | None = None, /) -> V | T | None:
        """The value of ``key``, or ``default``; counts a hit or a miss."""
        entry = self._data.get(key)
        if entry is None and self._wrapped:
            entry = self._read(key)
        if entry is None:
            self._misses += 1
            return default
        self._hits += 1
        value: V = entry[1]
        return value

    def __getitem__(self, key: K) -> V:
        entry = self._data.get(key)
        if entry is None and self._wrapped:
            entry = self._read(key)
        if entry is None:
            self._misses += 1
            raise KeyError(key)
        self._hits += 1
        value: V = entry[1]
        return value

    def __contains__(self, key: object) -> bool:
        if key in self._data:
            return True
        return bool(self._wrapped) and self._read(key) is not None

    def __len__(self) -> int:
        return len(self._data)

    def __iter__(self) -> Iterator[K]:
        return iter(self.keys())

    def keys(self) -> list[K]:
        """The keys, oldest first (a snapshot)."""
        return [entry[2] for entry in list(self._data.values())]

    def values(self) -> list[V]:
        """The values, oldest first (a snapshot)."""
        return [entry[1] for entry in list(self._data.values())]

    def items(self) -> list[tuple[K, V]]:
        """The (key, value) pairs, oldest first (a snapshot)."""
        return [(entry[2], entry[1]) for entry in list(self._data.values())]

    def stats(self) -> CacheStats:
        """Hits, misses, inserts and evictions so far."""
        self._acquire()
        try:
            counts = (self._hits, self._misses, self._inserts, self._evictions)
        finally:
            self._release()
        hits, misses, inserts, evictions = counts
        return CacheStats(hits=hits, misses=misses, inserts=inserts, evictions=evictions)

    def get_many(self, keys: Iterable[K]) -> dict[K, V]:
        """The present keys among ``keys`` with their values; each key counts as
        a hit or a miss, and nothing is counted if a key fails to hash or compare."""
        found: list[tuple[K, V]] = []
        misses = 0
        data = self._data
        for key in keys:
            entry = data.get(key)
            if entry is None and self._wrapped:
                entry = self._read(key)
            if entry is None:
                misses += 1
            else:
                found.append((key, entry[1]))
        result = dict(found)  # may compare the keys: before anything is counted
        self._hits += len(found)
        self._misses += misses
        return result

    # --- writes ------------------------------------------------------------------

    def _set(self, key: K, value: V, hashed: int) -> None:
        plain = _is_plain(key)
        # Made before locking: allocating under the lock could start the
        # garbage collector, whose finalizers are user code.
        entry: _Entry = [key, value, key]
        group: dict[int, _Entry] | None = None
        if not plain:
            entry[0] = (_WRAPPED, hashed, id(entry))
            group = {}
        found = self._locate(key, hashed, plain)
        try:
            if found is not None:
                released: object = found[1]
                found[1] = value
            else:
                released = self._append(entry, group)
        finally:
            self._release()
        # What left the cache is released here, after the lock.
        del released

    def set(self, key: K, value: V) -> None:
        """Insert or overwrite ``key``; a new key at maxsize evicts the oldest."""
        self._set(key, value, hash(key))

    def __setitem__(self, key: K, value: V) -> None:
        self._set(key, value, hash(key))

    def _remove(self, key: object) -> tuple[Any, Any] | None:
        """Remove ``key``; its (key, value), or None if it was not there."""
        hashed = hash(key)
        entry = self._locate(key, hashed, _is_plain(key))
        removed = None
        try:
            if entry is not None:
                self._unlink(entry)
                # The entry stays in _order until it reaches the front; what
                # it held leaves now (and is released after the lock).
                removed = (entry[2], entry[1])
                entry[1] = entry[2] = None
                self._dead += 1
        finally:
            self._release()
        if self._dead > len(self._data) + 32:
            self._compact()
        return removed

    def _compact(self) -> None:
        """Rebuild ``_order`` from the dict's own order, dropping the entries
        that left; swapped in only if nothing changed while it was built."""
        version = self._version
        fresh = deque(self._data.values())
        self._acquire()
        try:
            if self._version == version:
                fresh, self._order = self._order, fresh
                self._dead = 0
        finally:
            self._release()
        del fresh

    def __delitem__(self, key: K) -> None:
        if self._remove(key) is None:
            raise KeyError(key)

    @overload
    def pop(self, key: K) -> V: ...
    @overload
    def pop(self, key: K, default: V | T) -> V | T: ...
    def pop(self, key: K, default: V | T | _Missing = _MISSING) -> V | T:
        """Remove ``key`` and return its value; without a default a missing key
        is a KeyError."""
        removed = self._remove(key)
        if removed is not None:
            value: V = removed[1]
            return value
        if default is _MISSING:
            raise KeyError(key)
        return default

    def clear(self) -> None:
        """Remove every entry; the stats are kept."""
        fresh: tuple[dict[Any, _Entry], deque[_Entry], dict[int, dict[int, _Entry]]]
        fresh = ({}, deque(), {})
        self._acquire()
        try:
            old = (self._data, self._order, self._wrapped)
            self._data, self._order, self._wrapped = fresh
            self._dead = 0
            self._version += 1
        finally:
            self._release()
        del old

    def set_many(self, items: Mapping[K, V] | Iterable[tuple[K, V]]) -> None:
        """Set every pair of a mapping (through its ``items()``, in its order) or
        of an iterable of pairs. Every pair is read and every key hashed first,
        so a bad pair or an unhashable key changes nothing."""
        for key, value, hashed in _pairs(items):
            self._set(key, value, hashed)

    # --- the rest ------------------------------------------------------------------

    def __reduce__(self) -> tuple[Any, ...]:
        """An independent cache of the same class, maxsize and entries in the
        same order, with fresh stats (for copy, deepcopy and pickle)."""
        state = getattr(self, "__dict__", None)
        return (type(self), (self._maxsize,), state, None, iter(self.items()))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(maxsize={self._maxsize}, len={len(self._data)})"
