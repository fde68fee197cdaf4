"""The pure-Python FIFOCache: the native table's algorithm, written so that no
user code runs while the cache's lock is held.

Storage: ``_data`` maps a *dict key* to the value, in insertion order, which
is the FIFO order (an overwrite keeps a dict key's place). A plain key is its
own dict key, so reading it is one dict lookup with no lock; any other key is
stored under a wrapper tuple and found through ``_wrapped`` (hash ->
wrappers) by comparing keys with no lock held (see ``keys.py``). ``_order``
lists the dict keys oldest first, so that the oldest is found in O(1);
entries removed by ``pop`` stay there, counted in ``_stale``, until they
reach the front or the list is rebuilt.

Writes find the dict key a key refers to without the lock wherever that runs
``__hash__``/``__eq__``, then take the lock and apply the change only if the
cache's version did not move meanwhile (else they look again, and after
MAX_ROUNDS changed attempts raise RuntimeError). The version moves before
any entry comes or goes, so an unchanged version means unchanged keys.
Values and keys that leave the cache are released after the lock. A
finalizer or signal handler that runs on the same thread in the middle of a
write and writes to the cache gets a RuntimeError instead of a deadlock or a
corrupt cache.

A write cut short by an exception (a signal handler's KeyboardInterrupt,
raised as a call returns or a function is entered) may leave ``_order`` and
``_stale`` out of step with ``_data``; every write catches that on its way
out and marks the order (an ``_OUT_OF_STEP`` entry in ``_stale``, which the
fast path of ``set`` tests anyway), as does an eviction that finds the order
empty or naming an entry that left uncounted. The next eviction then first
rebuilds the order from the dict's own order (with the lock released, like
every allocation), so later writes go on, the bound holds and the FIFO order
is exact again. One rebuild, O(n), per interrupted write; none otherwise.

"The lock" is a token (see ``CacheCore.__new__`` in ``core.py``): ``set``
with an exact str or int key takes it with one atomic ``list.pop`` and gives
it back with ``list.append``, a third of a lock round trip; every other write
takes a re-entrant lock first and then the token, waiting on a condition
while a ``set`` on another thread holds it. Whoever takes the token names
its thread in ``_holder`` first, so that a use nested in its work is refused;
free-threaded builds have no fast path (every write takes the lock).

Expiry (see ``core.py`` and ``expiry.py``): an expiring cache's reads and
writes all take the general paths, which read the clock before locking and
first remove what is due then.

A cache is made empty by ``__new__`` and given its maxsize by ``__init__``,
so a subclass's ``__init__`` may take any arguments and copy and pickle
rebuild it without calling that ``__init__``. Until ``FIFOCache.__init__``
has run, reads see an empty cache and writes raise TypeError.
"""

from __future__ import annotations

from _thread import get_ident
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Final, TypeVar, cast, overload

from pepperpy_core._fallback.core import (
    CORE_SLOTS,
    MAX_ENTRIES,
    MAX_ROUNDS,
    MISSING,
    CacheCore,
    CacheStats,
    Written,
    check_maxsize,
    says,
)
from pepperpy_core._fallback.expiry import Timer, Timers
from pepperpy_core._fallback.keys import Wrapper, is_plain, is_wrapper, key_of, wrap
from pepperpy_core._fallback.s3fifo import S3FIFOCache

__all__ = [
    "MAX_ENTRIES",
    "MAX_ROUNDS",
    "CacheStats",
    "FIFOCache",
    "S3FIFOCache",
    "check_maxsize",
]

K = TypeVar("K")
V = TypeVar("V")
T = TypeVar("T")

_SAYS: Final = says("FIFOCache", "(maxsize, items, attributes, slots[, expiry])")
_CHANGED: Final = _SAYS.changed
_BUSY: Final = _SAYS.busy
NOT_INITIALIZED: Final = _SAYS.not_initialized
INITIALIZED: Final = _SAYS.initialized
BAD_STATE: Final = _SAYS.bad_state
_MISSING: Final = MISSING
#: In ``_stale`` while ``_order`` may be out of step with ``_data``; also
#: what _skip_stale returns then. Never a dict key; hashed by identity (C).
_OUT_OF_STEP: Final = object()
#: This class's own slots, never part of a subclass's pickled attributes.
_FIFO_SLOTS: Final = frozenset({"_evicted", "_order", "_stale"})


class FIFOCache(CacheCore[K, V]):
    """A bounded mapping that evicts the oldest inserted key when a new key
    arrives at ``maxsize`` entries. Thread-safe; every operation is O(1).

    Overwriting a key keeps its position and reads never reorder. Values that
    leave the cache are released after the lock is, so their ``__del__`` may
    use the cache.
    """

    __slots__ = tuple(sorted(_FIFO_SLOTS))
    _says = _SAYS
    _own_slots = CORE_SLOTS | _FIFO_SLOTS

    _data: dict[object, V]
    _reads: dict[object, V]
    _evicted: object
    _order: deque[object]
    _stale: dict[object, int]

    def _fresh(self) -> None:
        self._order = deque()
        self._stale = {}
        self._evicted = None  # the value _evict_oldest took, until released

    def _initialized(self) -> None:
        # Left by a write refused meanwhile; no entries, no order: in step.
        self._stale.pop(_OUT_OF_STEP, None)

    # --- changes (the caller holds the lock) ----------------------------------------
    # A write cut short (an exception leaves it with the lock held) marks the
    # order out of step on its way out: see the module's docstring.

    def _skip_stale(self, oldest: object) -> object:
        """The first dict key from ``oldest`` on in ``_order`` that is not a
        leftover of ``pop``/``del``; _OUT_OF_STEP if the order is marked so,
        or (marked then) runs out first."""
        order = self._order
        stale = self._stale
        if _OUT_OF_STEP in stale:
            return _OUT_OF_STEP
        while stale and oldest in stale:
            left = stale.pop(oldest) - 1
            if left:
                stale[oldest] = left
            if not order:
                stale[_OUT_OF_STEP] = 1
                return _OUT_OF_STEP
            oldest = order.popleft()
        return oldest

    def _evict_oldest(self) -> object:
        """Remove the oldest entry and return its dict key; its value stays
        referenced by ``_evicted`` until the caller takes it after the lock.
        _MISSING, nothing removed and the order marked, if the order is or
        proves out of step with the entries."""
        order = self._order
        if not order:
            self._stale[_OUT_OF_STEP] = 1
            return _MISSING
        oldest = order.popleft()
        if self._stale:
            oldest = self._skip_stale(oldest)
        evicted = self._data.pop(oldest, _MISSING)
        if evicted is _MISSING:  # marked, ran out, or an entry left uncounted
            self._stale[_OUT_OF_STEP] = 1
            return _MISSING
        self._evicted = evicted
        self._unlink(oldest)
        self._forget_deadline(oldest)
        return oldest

    def _rebuild(self) -> None:
        """Make ``_order`` the dict's own order, with nothing stale (so no
        longer marked out of step). Built with the lock released and swapped
        in if no entry came or went meanwhile; after MAX_ROUNDS tries that
        met changes, built under the lock (a collector's finalizer it might
        start is then refused, as any nested use)."""
        for attempt in range(MAX_ROUNDS + 1):
            version = self._version
            order: deque[object] | None = None
            if attempt < MAX_ROUNDS:
                try:
                    order = deque(self._data)
                except RuntimeError:  # changed during the copy (free-threaded builds)
                    continue
            stale: dict[object, int] = {}
            self._acquire()
            try:
                done = order is None or self._version == version
                if done:
                    if order is None:
                        order = deque(self._data)
                    order, self._order = self._order, order
                    stale, self._stale = self._stale, stale
            except BaseException:
                self._stale[_OUT_OF_STEP] = 1
                raise
            finally:  # the release, inline (see _acquire)
                try:
                    self._token.append(True)
                finally:
                    self._lock.release()
            del order, stale  # the replaced ones (or the unused fresh ones)
            if done:
                return

    # --- reads ---------------------------------------------------------------------

    @overload
    def get(self, key: K, default: None = None, /) -> V | None: ...
    @overload
    def get(self, key: K, default: V | T, /) -> V | T: ...
    def get(self, key: K, default: V | T | None = None, /) -> V | T | None:
        """The value of ``key``, or ``default``; counts a hit or a miss."""
        try:
            value = self._reads[key]
        except KeyError as error:
            found = self._missed(key, error)
            if found is _MISSING:
                self._misses += 1
                return default
            value = cast("V", found)
        self._hits += 1
        return value

    def __getitem__(self, key: K) -> V:
        try:
            value = self._reads[key]
        except KeyError as error:
            found = self._missed(key, error)
            if found is _MISSING:
                self._misses += 1
                raise KeyError(key) from None
            value = cast("V", found)
        self._hits += 1
        return value

    def keys(self) -> list[K]:
        """The keys, oldest first (a snapshot)."""
        if self._timers is not None:
            self._expire_now()
        if not self._wrapped:
            dkeys, version = self._copied(_dkeys)
            # No wrapper was stored since the snapshot was taken: nothing to
            # map (a wrapper's removal moves the version on).
            if not self._wrapped and self._version == version:
                return cast("list[K]", dkeys)
        # Mapped within the copy: a pop empties the wrapper it removes.
        keys, _ = self._copied(_keys)
        return keys

    def values(self) -> list[V]:
        """The values, oldest first (a snapshot)."""
        if self._timers is not None:
            self._expire_now()
        values, _ = self._copied(_values)
        return values

    def items(self) -> list[tuple[K, V]]:
        """The (key, value) pairs, oldest first (a snapshot)."""
        # Keys, then values: neither copy allocates an object the collector
        # tracks while it walks the dict, so no finalizer runs in the middle.
        if self._timers is not None:
            self._expire_now()
        if not self._wrapped:
            (dkeys, values), version = self._copied(_keys_and_values)
            if not self._wrapped and self._version == version:
                return cast("list[tuple[K, V]]", list(zip(dkeys, values, strict=True)))
        (keys, values), _ = self._copied(_mapped_keys_and_values)
        return list(zip(keys, values, strict=True))

    def _state(self) -> tuple[list[object], list[V], tuple[object, ...]]:
        (dkeys, values), _ = self._copied(_keys_and_values)
        return dkeys, values, ()

    def _restore(
        self, pairs: list[tuple[K, V, int]], policy: object, written: list[Written] | None
    ) -> None:
        for i, (key, value, hashed) in enumerate(pairs):
            self._set(key, value, hashed, None if written is None else written[i])

    def get_many(self, keys: Iterable[K]) -> dict[K, V]:
        """The present keys among ``keys`` with their values; each key counts as
        a hit or a miss. Every key is found first (its hash and compares run
        then), with no use made of it: a key that fails to hash or compare, or
        an iterable that raises, changes nothing but what expired by time."""
        found: list[tuple[K, V]] = []
        misses = 0
        now = self._now() if self._timers is not None else None  # once for every key
        # With a tti a use moves an idle deadline: the look keeps the timers.
        seen: list[Timer] | None = [] if self._tti is not None else None
        for key in keys:
            try:
                value = self._reads[key]
            except KeyError as error:
                got = self._missed(key, error, now, seen)
                if got is _MISSING:
                    misses += 1
                    continue
                value = cast("V", got)
            found.append((key, value))
        result = dict(found)  # may compare the keys: before anything is used
        if seen and now is not None:
            self._touch_seen(seen, now)
        self._hits += len(found)
        self._misses += misses
        return result

    # --- writes ----------------------------------------------------------------------

    def set(self, key: K, value: V, *, ttl: float | None = None) -> None:
        """Insert or overwrite ``key``; a new key at maxsize evicts the oldest.
        ``ttl``: this entry's time to live instead of the cache's."""
        if ttl is None:
            FIFOCache.__setitem__(self, key, value)  # this class's, whatever a subclass overrides
        else:
            self._write(key, value, ttl)

    def __setitem__(self, key: K, value: V) -> None:  # noqa: PLR0915 - the hot path, inline on purpose
        """``set`` without a ttl of its own: the fast path (a keyword-only
        parameter would cost a fifth of it on every call)."""
        kind = type(key)
        if kind is not self._fast_str and kind is not self._fast_int:
            self._write(key, value, None)
            return
        # The common case written out (each method call costs a fifth of a
        # set): an exact str or int key. Nothing is allocated or called into
        # Python while the token is held.
        token = self._token
        me = get_ident()
        if not token:
            self._set(key, value, hash(key))  # waits there, or refuses a nested use
            return
        # Nothing between the test and the take lets another thread run, so
        # the take succeeds and ``_holder`` names this thread from before it
        # (see CacheCore.__new__).
        self._holder = me
        try:
            token.pop()
        except BaseException:
            # Taken, then a signal handler raised as pop returned: give it
            # back (inline, see _acquire).
            try:
                token.append(True)
            finally:
                if self._waiting:
                    self._wake()
            raise
        general = False
        try:
            wrapped = self._wrapped
            data = self._data
            if wrapped and hash(key) in wrapped:
                general = True  # a stored key that is not plain has its hash
            elif key in data:
                # Locals whose names start with _ hold what leaves the cache
                # until this frame ends, after the token is given back.
                _replaced = data[key]
                data[key] = value
            elif len(data) < self._maxsize:
                # These three are never separated by a signal handler (it
                # runs only as a call returns); the version first, so that a
                # reader never trusts a search that missed this insert.
                self._version += 1  # an insert (see __new__)
                data[key] = value
                self._order.append(key)
            else:
                # Evict first: a reader never sees more than maxsize entries.
                self._version += 1  # before the entry leaves
                _gone = self._order.popleft()
                if self._stale:
                    _gone = self._skip_stale(_gone)
                _evicted: object = data.pop(_gone, _MISSING)
                if _evicted is _MISSING:
                    # The order is (marked) out of step: nothing was
                    # inserted, the general path rebuilds it first.
                    self._other += 1
                    self._stale[_OUT_OF_STEP] = 1
                    general = True
                else:
                    if wrapped and _gone.__class__ is tuple:
                        self._unlink(_gone)
                    data[key] = value
                    self._order.append(key)
        except IndexError:
            # The order ran out (out of step, or the cache was never given a
            # maxsize): as above.
            self._other += 1
            self._stale[_OUT_OF_STEP] = 1
            general = True
        except BaseException:
            self._stale[_OUT_OF_STEP] = 1  # cut short: the order may be out of step
            raise
        finally:
            try:
                token.append(True)
            finally:  # even if a signal handler raises as append returns
                if self._waiting:
                    self._wake()
        if general:
            # Compared there, with the token given back.
            self._set(key, value, hash(key))

    def _set(self, key: K, value: V, hashed: int, written: Written | None = None) -> None:
        """``set`` for any key, its hash taken; ``written``: the write's time
        and deadlines, in a cache whose entries may have some."""
        if not self._maxsize:
            raise TypeError(NOT_INITIALIZED)
        written, made, timers = self._prepare(written)
        plain = is_plain(key)
        # Made before locking: allocating under the lock could start the
        # garbage collector, whose finalizers are user code.
        fresh: object = key if plain else wrap(key, hashed)
        group: list[Wrapper] = []
        for _ in range(MAX_ROUNDS):
            released: object = None
            gone: object = None
            expired: list[object] = []
            rebuild = False
            dkey = self._locate(key, hashed, plain)
            try:
                data = self._data
                self._settle(written, timers, expired)
                dkey = self._stored(dkey)
                if dkey is not _MISSING:
                    released = data[dkey]
                    data[dkey] = value
                    self._give_deadline(dkey, written, made)
                elif len(data) >= self._maxsize and _OUT_OF_STEP in self._stale:
                    rebuild = True
                else:
                    self._version += 1  # as in set: before anything comes or goes
                    if len(data) >= self._maxsize:
                        gone = self._evict_oldest()
                        released, self._evicted = self._evicted, None
                    if gone is _MISSING:
                        self._other += 1  # nothing was inserted
                        rebuild = True
                    else:
                        # Findable first, then stored: a write cut short in
                        # between leaves a wrapper with no entry, which
                        # _stored drops.
                        if not plain:
                            self._wrapped.setdefault(hashed, group).append(cast("Wrapper", fresh))
                        data[fresh] = value
                        self._order.append(fresh)
                        self._give_deadline(fresh, written, made)
            except BaseException:
                self._stale[_OUT_OF_STEP] = 1
                raise
            finally:  # the release, inline (see _acquire)
                try:
                    self._token.append(True)
                finally:
                    self._lock.release()
            del released, gone, expired
            if not rebuild:
                return
            self._rebuild()
        raise RuntimeError(_CHANGED)

    def _discard(self, dkey: object, gone: list[object]) -> None:
        self._version += 1  # before the entry leaves
        self._other += 1
        gone.append(self._data.pop(dkey))
        self._unlink(dkey)
        self._forget_deadline(dkey)
        stale = self._stale
        stale[dkey] = stale.get(dkey, 0) + 1
        if is_wrapper(dkey):
            # _order and _stale keep the wrapper until it is reached, not the key.
            holder = cast("Wrapper", dkey)[2]
            gone.append(holder.key)
            holder.key = None

    def _mark_out_of_step(self) -> None:
        self._stale[_OUT_OF_STEP] = 1

    def _queued(self) -> int:
        return len(self._order)

    def clear(self) -> None:
        """Remove every entry; the stats are kept."""
        if not self._maxsize:
            raise TypeError(NOT_INITIALIZED)
        timers = Timers() if self._timers is not None else None
        fresh: tuple[Any, ...] = ({}, deque(), {}, {}, {}, timers)
        self._acquire()
        try:
            old = (
                self._data,
                self._order,
                self._stale,
                self._wrapped,
                self._mixed,
                self._timers,
            )
            self._version += 1
            self._other += 1
            (self._data, self._order, self._stale, self._wrapped, self._mixed, self._timers) = fresh
            if self._timers is None:
                self._reads = self._data
            self._dropped += len(old[0])
        except BaseException:
            self._stale[_OUT_OF_STEP] = 1
            raise
        finally:  # the release, inline (see _acquire)
            try:
                self._token.append(True)
            finally:
                self._lock.release()
        del old

    def _own_setitem(self) -> Callable[[Any, K, V], None]:
        return FIFOCache.__setitem__


def _dkeys(cache: FIFOCache[Any, Any]) -> list[object]:
    return list(cache._data)


def _values(cache: FIFOCache[Any, V]) -> list[V]:
    return list(cache._data.values())


def _keys_and_values(cache: FIFOCache[Any, V]) -> tuple[list[object], list[V]]:
    data = cache._data
    return list(data), list(data.values())


def _keys(cache: FIFOCache[K, Any]) -> list[K]:
    return [key_of(dkey) for dkey in cache._data]


def _mapped_keys_and_values(cache: FIFOCache[K, V]) -> tuple[list[K], list[V]]:
    data = cache._data
    return [key_of(dkey) for dkey in data], list(data.values())
