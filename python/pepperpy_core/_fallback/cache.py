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
corrupt cache: the re-entrant lock knows its owner, and the token records the
thread that took it (``_holder``).

A write cut short by an exception (a signal handler's KeyboardInterrupt,
raised as a call returns or a function is entered) may leave ``_order`` and
``_stale`` out of step with ``_data``; every write catches that on its way
out and marks the order (an ``_OUT_OF_STEP`` entry in ``_stale``, which the
fast path of ``set`` tests anyway), as does an eviction that finds the order
empty or naming an entry that left uncounted. The next eviction then first
rebuilds the order from the dict's own order (with the lock released, like
every allocation), so later writes go on, the bound holds and the FIFO order
is exact again. One rebuild, O(n), per interrupted write; none otherwise.

"The lock" is a token (see ``FIFOCache.__new__``): ``set`` with an exact str
or int key takes it with one atomic ``list.pop`` and gives it back with
``list.append``, a third of a lock round trip; every other write takes a
re-entrant lock first and then the token, waiting on a condition while a
``set`` on another thread holds it. Whoever takes the token first writes its
thread's id in ``_holder``, having seen the token free: with the GIL no other
thread runs between that test and the take (a thread switch happens only as
a call returns or a loop jumps back), so while the token is out ``_holder``
names its taker. Free-threaded builds have no such guarantee, so there every
write takes the lock (no fast path): slower, and exact.

A cache is made empty by ``__new__`` and given its maxsize by ``__init__``,
so a subclass's ``__init__`` may take any arguments and copy and pickle
rebuild it without calling that ``__init__``. Until ``FIFOCache.__init__``
has run, reads see an empty cache and writes raise TypeError.
"""

from __future__ import annotations

import contextlib
import copyreg
import sys
import threading
from _thread import get_ident
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final, Generic, Self, TypeVar, cast, overload

from pepperpy_core._fallback.keys import Wrapper, is_plain, is_wrapper, key_of, plain_form, wrap

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
#: The key types ``set`` writes without the lock: exact str and int, none on
#: free-threaded CPython (see the module's docstring).
_GIL: Final = getattr(sys, "_is_gil_enabled", lambda: True)()
_FAST_STR: Final[type | None] = str if _GIL else None
_FAST_INT: Final[type | None] = int if _GIL else None
#: Seconds between checks of the token by a writer waiting for it.
_RECHECK: Final = 0.01
_BUSY: Final = (
    "FIFOCache was used by a finalizer or signal handler in the middle of "
    "another operation on the same thread; retry after that operation returns"
)
NOT_INITIALIZED: Final = (
    "FIFOCache.__init__ was not called: a subclass's __init__ must call "
    "super().__init__(maxsize) before the cache is written"
)
INITIALIZED: Final = "FIFOCache.__init__ was already called: a cache's maxsize is set once"
BAD_STATE: Final = "FIFOCache state must be a (maxsize, items, attributes, slots) tuple"
#: How pickle and copy make an empty instance of a class (``cls.__new__(cls)``).
_NEWOBJ: Final[Callable[..., object]] = getattr(copyreg, "__newobj__")  # noqa: B009 - not in the stubs
#: The names of a class's ``__slots__``, as pickle's default reduction finds them.
_SLOT_NAMES: Final[Callable[[type], list[str]]] = getattr(copyreg, "_slotnames")  # noqa: B009


class _Missing(Enum):
    MISSING = 0


_MISSING: Final = _Missing.MISSING
#: In ``_stale`` while ``_order`` may be out of step with ``_data``; also
#: what _skip_stale returns then. Never a dict key; hashed by identity (C).
_OUT_OF_STEP: Final = object()


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheStats:
    """Counters of a cache since it was made: reads that hit or missed, new keys
    inserted and keys evicted to make room."""

    hits: int
    misses: int
    inserts: int
    evictions: int


def _hash(key: object) -> int:
    """``hash(key)``; for a key of an unhashable type, the error a dict raises
    on this Python (3.14 words it differently from ``hash()``)."""
    try:
        return hash(key)
    except TypeError:
        if getattr(type(key), "__hash__", None) is None:
            _EMPTY.get(key)  # raises what a dict says
        raise


_EMPTY: Final[dict[object, object]] = {}


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
        pairs.append((item[0], item[1], _hash(item[0])))
    return pairs


#: This class's own slots, never part of a subclass's pickled attributes.
_OWN_SLOTS: Final = frozenset(
    {
        "_data",
        "_dropped",
        "_evicted",
        "_gate",
        "_hits",
        "_holder",
        "_lock",
        "_maxsize",
        "_misses",
        "_mixed",
        "_order",
        "_other",
        "_owns",
        "_stale",
        "_token",
        "_version",
        "_waiting",
        "_wrapped",
    }
)


class FIFOCache(Generic[K, V]):
    """A bounded mapping that evicts the oldest inserted key when a new key
    arrives at ``maxsize`` entries. Thread-safe; every operation is O(1).

    Overwriting a key keeps its position and reads never reorder. Values that
    leave the cache are released after the lock is, so their ``__del__`` may
    use the cache.
    """

    __slots__ = ("__weakref__", *sorted(_OWN_SLOTS))

    _data: dict[object, V]
    _dropped: int
    _evicted: object
    _gate: threading.Condition
    _hits: int
    _holder: int
    _lock: threading.RLock
    _maxsize: int
    _misses: int
    _mixed: dict[int, object]
    _order: deque[object]
    _other: int
    _owns: Callable[[], bool]
    _stale: dict[object, int]
    _token: list[bool]
    _version: int
    _waiting: bool
    _wrapped: dict[int, list[Wrapper]]

    def __new__(cls, *args: Any, **kwargs: Any) -> Self:
        """An empty cache, maxsize 0 until ``__init__`` sets it (so a subclass's
        ``__init__`` may take any arguments)."""
        self = super().__new__(cls)
        self._maxsize = 0
        self._data = {}
        self._order = deque()
        self._stale = {}
        self._wrapped = {}
        # hash -> a plain stored key that a key which is not plain and has no
        # plain_form was found equal to by a scan, so that it is found again
        # without one; checked before each use.
        self._mixed = {}
        # Who may change the table: the holder of the one token in ``_token``
        # (taking it is list.pop, giving it back list.append: atomic, and a
        # third of a lock's cost). The str/int path of ``set`` takes it
        # directly; every other change first takes ``_lock``, an RLock so
        # that a nested use on this thread (a finalizer or a signal handler
        # run mid-operation) sees that it holds it already and is refused
        # instead of deadlocking, then the token, waiting on ``_gate`` while
        # a ``set`` on another thread has it. ``_holder`` names the thread
        # that took the token last (see the module's docstring).
        self._token = [True]
        self._holder = 0
        self._lock = threading.RLock()
        # Its C method (private, but what threading.Condition relies on).
        self._owns = getattr(self._lock, "_is_owned")  # noqa: B009 - not in the stubs
        self._gate = threading.Condition(threading.Lock())
        self._waiting = False
        self._evicted = None  # the value _evict_oldest took, until released
        # Moves on at every change (readers comparing keys with the lock
        # released check it). An insert only moves the version, so that a
        # write counts once: inserts = version - other, and evictions are the
        # inserts that are neither still here nor dropped by pop/del/clear.
        self._version = 0
        self._other = 0  # version moves that were not inserts
        self._dropped = 0  # entries removed by pop, del or clear
        self._hits = 0
        self._misses = 0
        return self

    def __init__(self, maxsize: int) -> None:
        """Give the cache its maxsize; once (TypeError after, nothing changed)."""
        if self._maxsize:
            raise TypeError(INITIALIZED)
        checked = check_maxsize(maxsize)
        self._acquire()
        try:
            if self._maxsize:
                raise TypeError(INITIALIZED)
            self._maxsize = checked
            # Left by a write refused meanwhile; no entries, no order: in step.
            self._stale.pop(_OUT_OF_STEP, None)
        finally:  # the release, inline (see _acquire)
            try:
                self._token.append(True)
            finally:
                self._lock.release()

    @property
    def maxsize(self) -> int:
        """The most entries the cache holds (0 until ``__init__`` has run)."""
        return self._maxsize

    # --- the lock ------------------------------------------------------------------

    def _acquire(self) -> None:
        """Take the lock and the token, or raise RuntimeError when this thread
        already holds either (a nested use).

        Every release is written out where it happens, the token then the
        lock, with C calls only: a signal handler may raise as any Python
        function is entered, and a release helper cut short there would
        leave the lock held for good."""
        lock = self._lock
        owns = self._owns
        if owns():
            raise RuntimeError(_BUSY)
        try:
            # A set on this thread that holds the token, interrupted by this
            # nested use, might be waited for by the lock's holder: check first.
            if not lock.acquire(blocking=False):
                if self._holds_token():
                    raise RuntimeError(_BUSY)
                lock.acquire()
            self._take_token()
        except BaseException:
            # Refused, or raised by a signal handler as an acquire returned:
            # this call took the lock if this thread holds it now (it did
            # not before).
            if owns():
                lock.release()
            raise

    def _take_token(self) -> None:
        """Take the token, waiting while a ``set`` on another thread has it."""
        if self._try_take():
            return
        if self._holds_token():
            raise RuntimeError(_BUSY)
        gate = self._gate
        with gate:
            # Set before each try: a set that gives the token back after the
            # try sees the flag and wakes this thread (see _wake). The wait
            # also times out, so that a wake-up lost to an exception raised
            # by a signal handler in the waker costs a moment, not a hang.
            self._waiting = True
            try:
                while not self._try_take():
                    gate.wait(_RECHECK)
            finally:
                self._waiting = False

    def _try_take(self) -> bool:
        """Take the token if it is free, recording this thread as its holder."""
        token = self._token
        me = get_ident()
        if not token:
            return False
        # Nothing between the test and the take lets another thread run.
        self._holder = me
        try:
            token.pop()
        except IndexError:
            return False
        except BaseException:
            # Taken, then a signal handler raised as pop returned (pop
            # itself raises nothing else): give it back.
            token.append(True)
            raise
        return True

    def _wake(self) -> None:
        """Wake the thread waiting in _take_token (the token is back)."""
        with self._gate:
            self._gate.notify()

    def _holds_token(self) -> bool:
        """Whether this thread holds the token: a use nested in a write of
        this thread's, which waiting for the token would deadlock."""
        return not self._token and self._holder == get_ident()

    # --- finding a key (never under the lock) ----------------------------------------

    def _find(self, key: object, hashed: int, plain: bool) -> object:
        """The dict key of the stored key equal to ``key``, or _MISSING; runs
        keys' ``__eq__``, so never under the lock."""
        if not plain and key in self._data:  # equal to a plain stored key
            found = self._plain_equal_to(key, hashed)
            if found is not _MISSING:
                return found
        group = self._wrapped.get(hashed)
        if group:
            for wrapper in tuple(group):
                stored = wrapper[2].key
                # As a dict does: identity, then the stored key's __eq__.
                if stored is key or stored == key:
                    return wrapper
        return _MISSING

    def _plain_equal_to(self, key: object, hashed: int) -> object:
        """A plain object equal to the plain stored key that ``key`` (not
        plain) equals, which serves as its dict key: ``key``'s plain form
        (an IntEnum member's int) in O(1); for a key of a class with no plain
        form whose ``__eq__`` (Python code) equals a builtin value, the stored
        key itself, remembered per hash after a scan of the entries."""
        data = self._data
        candidate = plain_form(key)
        if (
            candidate is not None
            and hash(candidate) == hashed
            and candidate in data
            and candidate == key
        ):
            return candidate
        mixed = self._mixed
        known = mixed.get(hashed, _MISSING)
        if known is not _MISSING and known in data and known == key:
            return known
        for stored in list(data):
            if not is_wrapper(stored) and hash(stored) == hashed and stored == key:
                if len(mixed) > 2 * len(data) + 64:
                    # Only entries still stored are kept: a scan per distinct
                    # key at most, and the memo stays in proportion.
                    mixed = self._mixed = {h: k for h, k in mixed.items() if k in data}
                mixed[hashed] = stored
                return stored
        return _MISSING

    def _read(self, key: object) -> object:
        """The dict key of ``key`` when the plain lookup missed and keys that
        are not plain are stored; retried while the cache changes under the
        comparison."""
        hashed = hash(key)
        for _ in range(MAX_ROUNDS):
            version = self._version
            group = self._wrapped.get(hashed)
            found: object = _MISSING
            if group:
                for wrapper in tuple(group):
                    stored = wrapper[2].key
                    if stored is key or stored == key:
                        found = wrapper
                        break
            if self._version == version:
                return found
        raise RuntimeError(_CHANGED)

    def _locate(self, key: object, hashed: int, plain: bool) -> object:
        """Take the lock and return the dict key of ``key`` (or _MISSING),
        found as of now. The caller releases the lock."""
        for _ in range(MAX_ROUNDS):
            if plain:
                self._acquire()
                if key in self._data:
                    return key
                if not (self._wrapped and hashed in self._wrapped):
                    return _MISSING
                version = self._version
                try:  # the release, inline (see _acquire)
                    self._token.append(True)
                finally:
                    self._lock.release()
            else:
                version = self._version
            dkey = self._find(key, hashed, plain)
            self._acquire()
            if self._version == version:
                return dkey
            try:  # the release, inline (see _acquire)
                self._token.append(True)
            finally:
                self._lock.release()
        raise RuntimeError(_CHANGED)

    # --- changes (the caller holds the lock) ----------------------------------------
    # A write cut short (an exception leaves it with the lock held) marks the
    # order out of step on its way out: see the module's docstring.

    def _unlink(self, dkey: object) -> None:
        """Forget a wrapper that left ``_data``."""
        if is_wrapper(dkey):
            wrapper = cast("Wrapper", dkey)
            group = self._wrapped.get(wrapper[1])
            if group is not None and wrapper in group:  # (absent: a write cut short)
                group.remove(wrapper)  # tuples compare by identity of their holder
            if not group:
                self._wrapped.pop(wrapper[1], None)

    def _stored(self, dkey: object) -> object:
        """``dkey`` if its entry is stored, else _MISSING; a wrapper left
        without an entry by a write cut short is forgotten."""
        if dkey is _MISSING or dkey in self._data:
            return dkey
        self._unlink(dkey)
        return _MISSING

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
            value = self._data[key]
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
            value = self._data[key]
        except KeyError as error:
            found = self._missed(key, error)
            if found is _MISSING:
                self._misses += 1
                raise KeyError(key) from None
            value = cast("V", found)
        self._hits += 1
        return value

    def _missed(self, key: object, error: KeyError) -> object:
        """After the plain lookup raised KeyError: re-raise one that a key's
        ``__eq__`` raised (its traceback goes deeper than the lookup), else
        the value of an equal key that is not plain, or _MISSING."""
        traceback = error.__traceback__
        if traceback is not None and traceback.tb_next is not None:
            raise error
        if not self._wrapped:
            return _MISSING
        dkey = self._read(key)
        return _MISSING if dkey is _MISSING else self._data.get(dkey, _MISSING)

    def __contains__(self, key: object) -> bool:
        if key in self._data:
            return True
        return bool(self._wrapped) and self._read(key) is not _MISSING

    def __len__(self) -> int:
        return len(self._data)

    def __iter__(self) -> Iterator[K]:
        return iter(self.keys())

    def _copied(self, copy: Callable[[dict[object, V]], T]) -> tuple[T, int]:
        """``copy(entries)`` and the version it was taken at, with no entry
        come or gone during it: a finalizer the collector runs mid-copy may
        write to the cache (the copy is then taken again), and after
        MAX_ROUNDS such tries it is taken under the lock."""
        for _ in range(MAX_ROUNDS):
            version = self._version
            try:
                got = copy(self._data)
            except RuntimeError:  # "dictionary changed during iteration"
                continue
            if self._version == version:
                return got, version
        self._acquire()
        try:
            return copy(self._data), self._version
        finally:  # the release, inline (see _acquire)
            try:
                self._token.append(True)
            finally:
                self._lock.release()

    def keys(self) -> list[K]:
        """The keys, oldest first (a snapshot)."""
        dkeys, version = self._copied(list)
        # No wrapper was stored since the snapshot was taken: nothing to map
        # (a wrapper's removal moves the version on).
        if not self._wrapped and self._version == version:
            return cast("list[K]", dkeys)
        return [key_of(dkey) for dkey in dkeys]

    def values(self) -> list[V]:
        """The values, oldest first (a snapshot)."""
        values, _ = self._copied(_values)
        return values

    def items(self) -> list[tuple[K, V]]:
        """The (key, value) pairs, oldest first (a snapshot)."""
        # Keys, then values: neither copy allocates an object the collector
        # tracks while it walks the dict, so no finalizer runs in the middle.
        (dkeys, values), version = self._copied(_keys_and_values)
        if self._wrapped or self._version != version:
            dkeys = [key_of(dkey) for dkey in dkeys]
        return cast("list[tuple[K, V]]", list(zip(dkeys, values, strict=True)))

    def stats(self) -> CacheStats:
        """Hits, misses, inserts and evictions so far."""
        self._acquire()
        try:
            counts = (self._hits, self._misses, self._version, self._other, self._dropped)
            size = len(self._data)
        finally:  # the release, inline (see _acquire)
            try:
                self._token.append(True)
            finally:
                self._lock.release()
        hits, misses, version, other, dropped = counts
        inserts = version - other
        evictions = inserts - size - dropped
        return CacheStats(hits=hits, misses=misses, inserts=inserts, evictions=evictions)

    def get_many(self, keys: Iterable[K]) -> dict[K, V]:
        """The present keys among ``keys`` with their values; each key counts as
        a hit or a miss, and nothing is counted if a key fails to hash or compare."""
        found: list[tuple[K, V]] = []
        misses = 0
        for key in keys:
            try:
                value = self._data[key]
            except KeyError as error:
                got = self._missed(key, error)
                if got is _MISSING:
                    misses += 1
                    continue
                value = cast("V", got)
            found.append((key, value))
        result = dict(found)  # may compare the keys: before anything is counted
        self._hits += len(found)
        self._misses += misses
        return result

    # --- writes ----------------------------------------------------------------------

    def set(self, key: K, value: V) -> None:  # noqa: PLR0915 - the hot path, inline on purpose
        """Insert or overwrite ``key``; a new key at maxsize evicts the oldest."""
        kind = type(key)
        if kind is not _FAST_STR and kind is not _FAST_INT:
            self._set(key, value, _hash(key))
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
        # the take succeeds and ``_holder`` names this thread from before it:
        # a use nested anywhere until the give-back is refused (_holds_token)
        # rather than left waiting for its own thread.
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
                order = self._order
                _gone = order.popleft()
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
                    order.append(key)
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

    __setitem__ = set

    def _set(self, key: K, value: V, hashed: int) -> None:
        """``set`` for any key, its hash taken."""
        if not self._maxsize:
            raise TypeError(NOT_INITIALIZED)
        plain = is_plain(key)
        # Made before locking: allocating under the lock could start the
        # garbage collector, whose finalizers are user code.
        fresh: object = key if plain else wrap(key, hashed)
        group: list[Wrapper] = []
        for _ in range(MAX_ROUNDS):
            released: object = None
            gone: object = None
            rebuild = False
            dkey = self._locate(key, hashed, plain)
            try:
                data = self._data
                dkey = self._stored(dkey)
                if dkey is not _MISSING:
                    released = data[dkey]
                    data[dkey] = value
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
            except BaseException:
                self._stale[_OUT_OF_STEP] = 1
                raise
            finally:  # the release, inline (see _acquire)
                try:
                    self._token.append(True)
                finally:
                    self._lock.release()
            del released, gone
            if not rebuild:
                return
            self._rebuild()
        raise RuntimeError(_CHANGED)

    def _remove(self, key: object) -> object:
        """Remove ``key``; its value, or _MISSING if it was not there."""
        hashed = _hash(key)
        if not self._maxsize:
            raise TypeError(NOT_INITIALIZED)
        dkey = self._locate(key, hashed, is_plain(key))
        try:
            value: object = _MISSING
            dkey = self._stored(dkey)
            if dkey is not _MISSING:
                self._version += 1  # before the entry leaves
                self._other += 1
                value = self._data.pop(dkey)
                self._dropped += 1
                self._unlink(dkey)
                stale = self._stale
                stale[dkey] = stale.get(dkey, 0) + 1
        except BaseException:
            self._stale[_OUT_OF_STEP] = 1
            raise
        finally:  # the release, inline (see _acquire)
            try:
                self._token.append(True)
            finally:
                self._lock.release()
        if len(self._order) > 2 * len(self._data) + 32:
            self._rebuild()  # amortized: the order has grown by that many pops
        return value

    def __delitem__(self, key: K) -> None:
        if self._remove(key) is _MISSING:
            raise KeyError(key)

    @overload
    def pop(self, key: K) -> V: ...
    @overload
    def pop(self, key: K, default: V | T) -> V | T: ...
    def pop(self, key: K, default: V | T | _Missing = _MISSING) -> V | T:
        """Remove ``key`` and return its value; without a default a missing key
        is a KeyError."""
        value = self._remove(key)
        if value is not _MISSING:
            return cast("V", value)
        if default is _MISSING:
            raise KeyError(key)
        return default

    def clear(self) -> None:
        """Remove every entry; the stats are kept."""
        if not self._maxsize:
            raise TypeError(NOT_INITIALIZED)
        fresh: tuple[Any, ...] = ({}, deque(), {}, {}, {})
        self._acquire()
        try:
            old = (self._data, self._order, self._stale, self._wrapped, self._mixed)
            self._version += 1
            self._other += 1
            self._data, self._order, self._stale, self._wrapped, self._mixed = fresh
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

    def set_many(self, items: Mapping[K, V] | Iterable[tuple[K, V]]) -> None:
        """Set every pair of a mapping (through its ``items()``, in its order) or
        of an iterable of pairs. Every pair is read and every key hashed first,
        so a bad pair or an unhashable key changes nothing."""
        pairs = _pairs(items)
        if not self._maxsize:
            raise TypeError(NOT_INITIALIZED)
        fast = FIFOCache.set  # this class's, whatever a subclass overrides
        for key, value, hashed in pairs:
            kind = type(key)
            if kind is str or kind is int:
                fast(self, key, value)
            else:
                self._set(key, value, hashed)

    # --- copy and pickle -----------------------------------------------------------

    def __reduce__(self) -> tuple[Any, ...]:
        """``copyreg.__newobj__(cls)`` then ``__setstate__``: no subclass
        ``__init__`` runs. Keeps the maxsize, the entries in order and a
        subclass's attributes (``__dict__`` and ``__slots__``); stats start
        afresh (for copy, deepcopy and pickle). TypeError for a cache whose
        ``__init__`` never ran."""
        if not self._maxsize:
            raise TypeError(NOT_INITIALIZED)
        attributes = getattr(self, "__dict__", None)
        slots: dict[str, object] = {}
        for name in _SLOT_NAMES(type(self)):
            if name not in _OWN_SLOTS:
                with contextlib.suppress(AttributeError):  # a slot never set
                    slots[name] = getattr(self, name)
        state = (self._maxsize, self.items(), attributes, slots or None)
        return (_NEWOBJ, (type(self),), state)

    def __setstate__(self, state: tuple[Any, ...], /) -> None:
        """Fill a cache made by ``cls.__new__(cls)`` from ``__reduce__``'s
        state. TypeError for a cache whose ``__init__`` ran and, with
        ValueError, for a malformed state; nothing changed then."""
        if self._maxsize:
            raise TypeError(INITIALIZED)
        if type(state) is not tuple or len(state) != 4:
            raise TypeError(BAD_STATE)
        maxsize, items, attributes, slots = state
        checked = check_maxsize(maxsize)
        pairs = _pairs(items)
        for name, part in (("attributes", attributes), ("slots", slots)):
            if part is not None and type(part) is not dict:
                raise TypeError(f"{BAD_STATE}: {name} must be a dict or None")
        if attributes and not hasattr(self, "__dict__"):
            raise TypeError(f"{BAD_STATE}: {type(self).__name__} has no __dict__")
        FIFOCache.__init__(self, checked)
        for key, value, hashed in pairs:
            self._set(key, value, hashed)
        if attributes:
            vars(self).update(attributes)
        if slots:
            for name, value in list(slots.items()):  # a __setattr__ may change the dict
                setattr(self, name, value)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(maxsize={self._maxsize}, len={len(self._data)})"


def _values(data: dict[object, V]) -> list[V]:
    return list(data.values())


def _keys_and_values(data: dict[object, V]) -> tuple[list[object], list[V]]:
    return list(data), list(data.values())
