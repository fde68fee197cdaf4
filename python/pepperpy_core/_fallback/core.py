"""What the pure-Python caches share: finding a key with no user code run
under the lock, the lock itself, the maxsize, the stats, copy and pickle.

Each policy's class keeps its entries its own way (``cache.py``: FIFOCache,
``s3fifo.py``: S3FIFOCache) and writes its own reads and writes on top of
this; see ``cache.py``'s docstring for the whole design. What they have in
common:

- ``_data`` maps a *dict key* to what the class stores for a key (FIFO: the
  value; S3-FIFO: an entry list). A plain key is its own dict key, any other
  is stored under a wrapper tuple and found through ``_wrapped`` (hash ->
  wrappers) by comparing keys with no lock held (see ``keys.py``).
- Writes find the dict key a key refers to without the lock wherever that
  runs ``__hash__``/``__eq__``, then take the lock and apply the change only
  if ``_version`` did not move meanwhile. The version moves before any entry
  comes or goes, and only then (an insert moves it and nothing else, so
  ``inserts = version - other``).
- "The lock" is a token taken with ``list.pop`` and given back with
  ``list.append``, behind a re-entrant lock for every path but a class's own
  fast ``set`` (see ``CacheCore.__new__``). A use nested in a write on the
  same thread (a finalizer, a signal handler) is refused with RuntimeError.
- Expiry (``expiry.py``): once an entry may have a deadline (a ttl or tti
  given to ``__init__``, or a write with its own ttl), ``_timers`` holds the
  deadlines and every operation reads the clock once, before it locks, and
  first removes what is due then. The lock-free paths step aside at no cost
  to a cache without expiry: ``get``/``[]``/``get_many``/``in`` read
  ``_reads``, which is ``_data`` until then and an empty dict after, so an
  expiring cache's reads all go through ``_missed``; a class's fast ``set``
  tests ``_fast_str``/``_fast_int``, which become None.
"""

from __future__ import annotations

import contextlib
import copyreg
import sys
import threading
from _thread import get_ident
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, ClassVar, Final, Generic, NamedTuple, Self, TypeVar, cast, overload

from pepperpy_core._fallback.expiry import (
    INF,
    NONE_DUE,
    Item,
    Timer,
    Timers,
    check_clock,
    check_expiry,
    check_seconds,
    monotonic,
    reading,
)
from pepperpy_core._fallback.keys import Wrapper, is_plain, is_wrapper, key_of, plain_form

K = TypeVar("K")
V = TypeVar("V")
T = TypeVar("T")

#: Largest maxsize, the same bound as the native table's.
MAX_ENTRIES = 2**32 - 2
#: How many times one operation may find the cache changed while it compared
#: keys with the lock released before it gives up (as the native table).
MAX_ROUNDS: Final = 100
#: Seconds between checks of the token by a writer waiting for it.
_RECHECK: Final = 0.01
#: How pickle and copy make an empty instance of a class (``cls.__new__(cls)``).
_NEWOBJ: Final[Callable[..., object]] = getattr(copyreg, "__newobj__")  # noqa: B009 - not in the stubs
#: The names of a class's ``__slots__``, as pickle's default reduction finds them.
_SLOT_NAMES: Final[Callable[[type], list[str]]] = getattr(copyreg, "_slotnames")  # noqa: B009


class Says(NamedTuple):
    """What a cache class's errors say (named as the native class names itself)."""

    not_initialized: str
    initialized: str
    bad_state: str
    changed: str
    busy: str


def says(name: str, state: str) -> Says:
    """The messages of the class ``name`` whose pickle state is ``state``."""
    return Says(
        not_initialized=(
            f"{name}.__init__ was not called: a subclass's __init__ must call "
            "super().__init__(maxsize) before the cache is written"
        ),
        initialized=f"{name}.__init__ was already called: a cache's maxsize is set once",
        bad_state=f"{name} state must be a {state} tuple",
        changed=(
            f"{name} changed during the operation: a key's __eq__ modified the cache "
            f"each time it was compared (gave up after {MAX_ROUNDS} tries)"
        ),
        busy=(
            f"{name} was used by a finalizer or signal handler in the middle of "
            "another operation on the same thread; retry after that operation returns"
        ),
    )


class Missing(Enum):
    MISSING = 0


MISSING: Final = Missing.MISSING


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheStats:
    """Counters of a cache since it was made: reads that hit or missed, new keys
    inserted, keys evicted to make room and entries removed as expired."""

    hits: int
    misses: int
    inserts: int
    evictions: int
    expirations: int = 0


def hash_of(key: object) -> int:
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


def pairs_of(items: Mapping[K, V] | Iterable[tuple[K, V]]) -> list[tuple[K, V, int]]:
    """(key, value, hash) for every pair of a mapping (through ``items()``) or
    of an iterable of pairs, each key hashed once to fail before any change."""
    source = items.items() if isinstance(items, Mapping) else items
    pairs: list[tuple[K, V, int]] = []
    for pair in source:
        item = tuple(pair)
        if len(item) != 2:
            raise ValueError("set_many expects (key, value) pairs, got one of another length")
        pairs.append((item[0], item[1], hash_of(item[0])))
    return pairs


#: The key types a class's fast ``set`` writes without the lock: exact str
#: and int; none on free-threaded CPython, where no test of the token is
#: sure to be followed by its take (see CacheCore.__new__).
_GIL: Final = getattr(sys, "_is_gil_enabled", lambda: True)()
FAST_STR: Final[type | None] = str if _GIL else None
FAST_INT: Final[type | None] = int if _GIL else None


#: The slots of CacheCore, never part of a subclass's pickled attributes.
CORE_SLOTS: Final = frozenset(
    {
        "_clock",
        "_data",
        "_dropped",
        "_expired",
        "_fast_int",
        "_fast_str",
        "_gate",
        "_hits",
        "_holder",
        "_lock",
        "_maxsize",
        "_misses",
        "_mixed",
        "_other",
        "_owns",
        "_reads",
        "_timers",
        "_token",
        "_ttl",
        "_tti",
        "_version",
        "_waiting",
        "_wrapped",
    }
)
#: What an expiring cache's reads look in: nothing is ever found (or stored) here.
_NEVER: Final[dict[object, Any]] = {}
#: What ``_unlocked_find`` returns when the read must take the lock.
_LOCKED: Final = object()
#: A write's time and its entry's deadlines: (now, write deadline, idle deadline).
Written = tuple[float, float, float]
#: What ``_prepare`` makes before a write locks.
Prepared = tuple[Written | None, tuple[Timer, Item] | None, Timers | None]


class CacheCore(Generic[K, V]):
    """The machinery of a pure-Python cache; a policy's class adds its storage."""

    __slots__ = ("__weakref__", *sorted(CORE_SLOTS))

    #: The class's messages.
    _says: ClassVar[Says]
    #: The class's own slots, CORE_SLOTS included (left out of a pickle's attributes).
    _own_slots: ClassVar[frozenset[str]]
    #: Parts of the pickle state after (maxsize, items, attributes, slots).
    _policy_parts: ClassVar[int] = 0

    _clock: Callable[[], object] | None
    _data: dict[object, Any]
    _dropped: int
    _expired: int
    _fast_int: type | None
    _fast_str: type | None
    _gate: threading.Condition
    _hits: int
    _holder: int
    _lock: threading.RLock
    _maxsize: int
    _misses: int
    _mixed: dict[int, object]
    _other: int
    _owns: Callable[[], bool]
    _reads: dict[object, Any]
    _timers: Timers | None
    _token: list[bool]
    _ttl: float | None
    _tti: float | None
    _version: int
    _waiting: bool
    _wrapped: dict[int, list[Wrapper]]

    def __new__(cls, *args: Any, **kwargs: Any) -> Self:
        """An empty cache, maxsize 0 until ``__init__`` sets it (so a subclass's
        ``__init__`` may take any arguments)."""
        self = super().__new__(cls)
        self._maxsize = 0
        self._data = self._reads = {}
        self._wrapped = {}
        # hash -> a plain stored key that a key which is not plain and has no
        # plain_form was found equal to by a scan, so that it is found again
        # without one; checked before each use.
        self._mixed = {}
        # Who may change the table: the holder of the one token in ``_token``
        # (taking it is list.pop, giving it back list.append: atomic, and a
        # third of a lock's cost). A class's fast ``set`` takes it directly;
        # every other change first takes ``_lock``, an RLock so that a nested
        # use on this thread (a finalizer or a signal handler run
        # mid-operation) sees that it holds it already and is refused instead
        # of deadlocking, then the token, waiting on ``_gate`` while a ``set``
        # on another thread has it. Whoever takes the token first writes its
        # thread's id in ``_holder``, having seen the token free: with the GIL
        # no other thread runs between that test and the take (a switch
        # happens only as a call returns or a loop jumps back), so while the
        # token is out ``_holder`` names its taker, and a use nested in that
        # taker's work is refused (_holds_token) rather than left waiting for
        # its own thread.
        self._token = [True]
        self._holder = 0
        self._lock = threading.RLock()
        # Its C method (private, but what threading.Condition relies on).
        self._owns = getattr(self._lock, "_is_owned")  # noqa: B009 - not in the stubs
        self._gate = threading.Condition(threading.Lock())
        self._waiting = False
        # Moves on at every change (readers comparing keys with the lock
        # released check it). An insert only moves the version, so that a
        # write counts once: inserts = version - other, and evictions are the
        # inserts that are neither still here nor dropped by pop/del/clear.
        self._version = 0
        self._other = 0  # version moves that were not inserts
        self._dropped = 0  # entries removed by pop, del or clear
        self._hits = 0
        self._misses = 0
        self._expired = 0  # entries removed as expired
        # Expiry (see the module's docstring): none until __init__ gives it.
        self._ttl = self._tti = None
        self._clock = None
        self._timers = None
        self._fast_str, self._fast_int = FAST_STR, FAST_INT
        self._fresh()
        return self

    def _fresh(self) -> None:
        """Set the policy's own slots of an empty cache."""

    def _initialized(self) -> None:
        """The maxsize was just set (the cache is empty); called with the lock
        held."""

    def __init__(
        self,
        maxsize: int,
        *,
        ttl: float | None = None,
        tti: float | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        """Give the cache its maxsize and what decides entries' deadlines: a
        time to live (``ttl``, seconds from a write) and a time to idle
        (``tti``, seconds from the last read or write), read from ``clock``
        (``time.monotonic`` by default); once (TypeError after, nothing changed)."""
        if self._maxsize:
            raise TypeError(self._says.initialized)
        checked = check_maxsize(maxsize)
        seconds = (check_seconds(ttl, "ttl"), check_seconds(tti, "tti"))
        given = check_clock(clock)
        timers = Timers() if seconds != (None, None) else None
        self._acquire()
        try:
            if self._maxsize:
                raise TypeError(self._says.initialized)
            self._maxsize = checked
            self._ttl, self._tti = seconds
            self._clock = given
            if timers is not None:
                self._timed(timers)
            self._initialized()
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
            raise RuntimeError(self._says.busy)
        try:
            # A set on this thread that holds the token, interrupted by this
            # nested use, might be waited for by the lock's holder: check first.
            if not lock.acquire(blocking=False):
                if self._holds_token():
                    raise RuntimeError(self._says.busy)
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
            raise RuntimeError(self._says.busy)
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
        """The dict key of the stored key equal to ``key``, or MISSING; runs
        keys' ``__eq__``, so never under the lock."""
        if not plain and key in self._data:  # equal to a plain stored key
            found = self._plain_equal_to(key, hashed)
            if found is not MISSING:
                return found
        group = self._wrapped.get(hashed)
        if group:
            for wrapper in tuple(group):
                stored = wrapper[2].key
                if stored is None:
                    continue  # popped meanwhile (a key that is None is plain, never wrapped)
                # As a dict does: identity, then the stored key's __eq__.
                if stored is key or stored == key:
                    return wrapper
        return MISSING

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
        known = mixed.get(hashed, MISSING)
        if known is not MISSING and known in data and known == key:
            return known
        for stored in list(data):
            if not is_wrapper(stored) and hash(stored) == hashed and stored == key:
                if len(mixed) > 2 * len(data) + 64:
                    # Only entries still stored are kept: a scan per distinct
                    # key at most, and the memo stays in proportion.
                    mixed = self._mixed = {h: k for h, k in mixed.items() if k in data}
                mixed[hashed] = stored
                return stored
        return MISSING

    def _read(self, key: object) -> object:
        """The dict key of ``key`` when the plain lookup missed and keys that
        are not plain are stored; retried while the cache changes under the
        comparison."""
        hashed = hash(key)
        for _ in range(MAX_ROUNDS):
            version = self._version
            group = self._wrapped.get(hashed)
            found: object = MISSING
            if group:
                for wrapper in tuple(group):
                    stored = wrapper[2].key
                    if stored is not None and (stored is key or stored == key):
                        found = wrapper
                        break
            if self._version == version:
                return found
        raise RuntimeError(self._says.changed)

    def _locate(self, key: object, hashed: int, plain: bool) -> object:
        """Take the lock and return the dict key of ``key`` (or MISSING),
        found as of now. The caller releases the lock."""
        for _ in range(MAX_ROUNDS):
            if plain:
                self._acquire()
                if key in self._data:
                    return key
                if not (self._wrapped and hashed in self._wrapped):
                    return MISSING
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
        raise RuntimeError(self._says.changed)

    def _missed(
        self,
        key: object,
        error: KeyError,
        now: float | None = None,
        seen: list[Timer] | None = None,
    ) -> object:
        """After the plain lookup raised KeyError: re-raise one that a key's
        ``__eq__`` raised (its traceback goes deeper than the lookup), else
        what is stored for an equal key that is not plain, or MISSING. A
        read, but with ``seen`` a look (see ``_timed_find``)."""
        traceback = error.__traceback__
        if traceback is not None and traceback.tb_next is not None:
            raise error
        if self._timers is not None:
            return self._timed_find(key, seen is None, now, seen)
        if not self._wrapped:
            return MISSING
        dkey = self._read(key)
        return MISSING if dkey is MISSING else self._data.get(dkey, MISSING)

    # --- expiry ------------------------------------------------------------------------

    def _now(self) -> float:
        """The clock's reading; TypeError for anything but a finite number."""
        clock = self._clock
        return monotonic() if clock is None else reading(clock())

    def _written(self, ttl: float | None, now: float) -> Written:
        """A write at ``now`` and its entry's deadlines (``ttl``, else the cache's)."""
        live = ttl if ttl is not None else self._ttl
        tti = self._tti
        return (now, INF if live is None else now + live, INF if tti is None else now + tti)

    def _timed(self, timers: Timers) -> None:
        """From now on entries may have deadlines (lock held): the lock-free
        paths step aside (see the module's docstring)."""
        if self._timers is None:
            self._timers = timers
            self._reads = _NEVER
            self._fast_str = self._fast_int = None

    def _expire(self, now: float, gone: list[object]) -> None:
        """Remove every entry due at ``now`` (lock held); what they held goes
        to ``gone``, released by the caller after the lock."""
        timers = self._timers
        if timers is None:
            return
        while True:
            dkey = timers.due(now)
            if dkey is NONE_DUE:
                return
            self._discard(dkey, gone)
            self._expired += 1

    def _expire_now(self) -> float:
        """Remove what is due now; the time it read."""
        now = self._now()
        gone: list[object] = []
        self._acquire()
        try:
            self._expire(now, gone)
        finally:  # the release, inline (see _acquire)
            try:
                self._token.append(True)
            finally:
                self._lock.release()
        del gone
        return now

    def _timed_find(
        self, key: object, use: bool, now: float | None = None, seen: list[Timer] | None = None
    ) -> object:
        """What is stored for ``key`` in an expiring cache, or MISSING, once
        what is due at ``now`` (read if not given) was removed; with ``use``
        (a read) the entry's idle deadline moves on; the timer of the entry
        found, if it has one, goes to ``seen`` if given (for ``_touch_seen``
        after a look). Without the lock, as the reads of a cache without
        expiry are, when nothing is due (as of one look at the heap) and the
        read moves no deadline earlier."""
        if now is None:
            now = self._now()
        tti = self._tti
        idle = now + tti if use and tti is not None else None
        timers = self._timers
        if timers is not None:
            heap = timers.heap
            try:
                nothing_due = not heap or heap[0][0] > now
            except IndexError:  # emptied meanwhile by another thread
                nothing_due = False
            if nothing_due:
                found = self._unlocked_find(key, now, idle, timers, seen)
                if found is not _LOCKED:
                    return found
        return self._locked_find(key, now, idle, seen)

    def _unlocked_find(
        self,
        key: object,
        now: float,
        idle: float | None,
        timers: Timers,
        seen: list[Timer] | None = None,
    ) -> object:
        """``_timed_find`` when nothing is due: what is stored for ``key``, or
        MISSING; _LOCKED when the locked path must decide."""
        data = self._data
        dkey: object = key
        stored = data.get(key, MISSING)
        if stored is MISSING:
            if not self._wrapped:
                return MISSING
            dkey = self._read(key)
            if dkey is MISSING:
                return MISSING
            stored = data.get(dkey, MISSING)
            if stored is MISSING:
                return _LOCKED  # removed meanwhile
        timer = timers.deadlines.get(dkey)
        if timer is None:
            return stored
        if now >= (timer[0] if timer[0] < timer[1] else timer[1]):
            return _LOCKED  # due (its heap item was filed later)
        if idle is not None:
            if (timer[0] if timer[0] < idle else idle) < timer[2]:
                return _LOCKED  # an earlier deadline: the heap must hear of it
            timer[1] = idle
        if seen is not None:
            seen.append(timer)
        return stored

    def _locked_find(
        self, key: object, now: float, idle: float | None, seen: list[Timer] | None = None
    ) -> object:
        """``_timed_find`` under the lock: what is due leaves first."""
        hashed = hash_of(key)
        gone: list[object] = []
        spare: Item = [0.0, 0, None]
        timer: Timer | None = None
        dkey = self._locate(key, hashed, is_plain(key))
        try:
            self._expire(now, gone)
            dkey = self._stored(dkey)
            if dkey is MISSING:
                return MISSING
            timers = self._timers
            if timers is not None:
                if idle is not None:
                    timers.touch(dkey, idle, spare)
                timer = timers.deadlines.get(dkey)
            stored = self._data[dkey]
        finally:  # the release, inline (see _acquire)
            try:
                self._token.append(True)
            finally:
                self._lock.release()
        if seen is not None and timer is not None:
            seen.append(timer)  # after the lock: a list may grow
        return stored

    def _touch_seen(self, seen: list[Timer], now: float) -> None:
        """The second phase of ``get_many`` in a cache with a tti: the idle
        deadline of each entry its look found (``seen``: their timers) moves
        on from ``now``, the look's time, unless a write gave the entry a new
        timer since (its deadline, later, stands) or it left (a timer no
        longer filed is nothing)."""
        tti = self._tti
        if tti is None:
            return
        idle = now + tti
        early: list[Timer] = []
        for timer in seen:
            if (timer[0] if timer[0] < idle else idle) < timer[2]:
                early.append(timer)  # an earlier deadline: the heap must hear of it
            else:
                timer[1] = idle  # without the lock, as _unlocked_find
        if not early:
            return
        spares: list[Item] = [[0.0, 0, None] for _ in early]  # made before locking
        self._acquire()
        try:
            timers = self._timers
            if timers is not None:
                for i in range(len(early)):
                    timer = early[i]
                    if timers.deadlines.get(timer[3]) is timer:
                        timers.touch(timer[3], idle, spares[i])
        finally:  # the release, inline (see _acquire)
            try:
                self._token.append(True)
            finally:
                self._lock.release()

    def _write(self, key: K, value: V, ttl: object) -> None:
        """``set`` by the general path: ``ttl`` checked, the key hashed, then
        the clock read if the entry may have a deadline."""
        seconds = check_seconds(ttl, "ttl")
        hashed = hash_of(key)
        written = None
        if seconds is not None or self._timers is not None:
            written = self._written(seconds, self._now())
        self._set(key, value, hashed, written)

    def _set(self, key: K, value: V, hashed: int, written: Written | None = None) -> None:
        """``set`` for any key, its hash taken (each class has its own)."""
        raise NotImplementedError  # pragma: no cover - each class has its own

    def _discard(self, dkey: object, gone: list[object]) -> None:
        """Remove the stored entry of ``dkey`` (not an eviction; lock held),
        moving the version on; what it held goes to ``gone``."""
        raise NotImplementedError  # pragma: no cover - each class has its own

    def _own_setitem(self) -> Callable[[Any, K, V], None]:
        """The policy class's ``__setitem__``, whatever a subclass overrides."""
        raise NotImplementedError  # pragma: no cover - each class has its own

    def set_many(
        self, items: Mapping[K, V] | Iterable[tuple[K, V]], *, ttl: float | None = None
    ) -> None:
        """Set every pair of a mapping (through its ``items()``, in its order) or
        of an iterable of pairs, each with ``ttl`` if given. Every pair is read,
        every key hashed and compared first, so a bad pair, an unhashable key
        or one whose ``__eq__`` raises changes nothing."""
        seconds = check_seconds(ttl, "ttl")
        pairs = pairs_of(items)
        if not self._maxsize:
            raise TypeError(self._says.not_initialized)
        self._compare_first(pairs)
        if seconds is not None or self._timers is not None:
            written = self._written(seconds, self._now())
            for key, value, hashed in pairs:
                self._set(key, value, hashed, written)
            return
        fast = self._own_setitem()
        for key, value, hashed in pairs:
            kind = type(key)
            if kind is str or kind is int:
                fast(self, key, value)
            else:
                self._set(key, value, hashed)

    def _compare_first(self, pairs: list[tuple[K, V, int]]) -> None:
        """Before ``set_many`` writes: every comparison its writes run Python
        code for, each key with the stored keys of its hash and the keys
        given with one another, so that one that raises fails with nothing
        written. (A key compared again by a write may still raise there if
        its ``__eq__`` answers differently, or if the cache changed meanwhile.)"""
        wrapped = self._wrapped
        odd = False
        for key, _, hashed in pairs:
            kind = type(key)
            if kind is str or kind is int or is_plain(key):
                if wrapped and hashed in wrapped:
                    self._find(key, hashed, True)  # the stored keys' __eq__
            else:
                odd = True
                self._find(key, hashed, False)
        if odd:
            dict.fromkeys([key for key, _, _ in pairs])  # as the writes meet each other

    def _mark_out_of_step(self) -> None:
        """A change was cut short (lock held): the order may not match ``_data``."""
        raise NotImplementedError  # pragma: no cover - each class has its own

    def _queued(self) -> int:
        """How many places the order holds, the left ones included."""
        raise NotImplementedError  # pragma: no cover - each class has its own

    def _rebuild(self) -> None:
        """Make the order hold only what is stored (it takes the lock)."""
        raise NotImplementedError  # pragma: no cover - each class has its own

    def _remove(self, key: object) -> object:
        """Remove ``key``; its value, or MISSING if it was not there."""
        hashed = hash_of(key)
        if not self._maxsize:
            raise TypeError(self._says.not_initialized)
        now = self._now() if self._timers is not None else None
        expired: list[object] = []
        gone: list[object] = []  # the value first; released after the lock
        dkey = self._locate(key, hashed, is_plain(key))
        try:
            if now is not None:
                self._expire(now, expired)
            dkey = self._stored(dkey)
            if dkey is not MISSING:
                self._discard(dkey, gone)
                self._dropped += 1
        except BaseException:
            self._mark_out_of_step()
            raise
        finally:  # the release, inline (see _acquire)
            try:
                self._token.append(True)
            finally:
                self._lock.release()
        del expired
        if self._queued() > 2 * len(self._data) + 32:
            self._rebuild()  # amortized: the order has grown by that many removals
        return gone[0] if gone else MISSING

    def __delitem__(self, key: K) -> None:
        if self._remove(key) is MISSING:
            raise KeyError(key)

    @overload
    def pop(self, key: K) -> V: ...
    @overload
    def pop(self, key: K, default: V | T) -> V | T: ...
    def pop(self, key: K, default: V | T | Missing = MISSING) -> V | T:
        """Remove ``key`` and return its value; without a default a missing key
        is a KeyError."""
        value = self._remove(key)
        if value is not MISSING:
            return cast("V", value)
        if default is MISSING:
            raise KeyError(key)
        return default

    def _forget_deadline(self, dkey: object) -> None:
        """The entry of ``dkey`` left (lock held)."""
        timers = self._timers
        if timers is not None:
            timers.deadlines.pop(dkey, None)

    def _prepare(self, written: Written | None) -> Prepared:
        """Before locking, for a write: its time and deadlines (read now, in a
        cache whose entries may have some, if not given), the timer to file
        for it, and the Timers a cache's first deadline needs."""
        if written is None and self._timers is not None:
            written = self._written(None, self._now())
        if written is None or (written[1] == INF and written[2] == INF):
            return written, None, None
        fresh = Timers() if self._timers is None else None
        return written, Timers.made(written[1], written[2]), fresh

    def _settle(self, written: Written | None, fresh: Timers | None, gone: list[object]) -> None:
        """First in a write, lock held: what is due leaves (into ``gone``), and
        a first deadline makes the cache expiring."""
        if written is not None:
            self._expire(written[0], gone)
        if fresh is not None:
            self._timed(fresh)

    def _give_deadline(
        self, dkey: object, written: Written | None, made: tuple[Timer, Item] | None
    ) -> None:
        """The entry of ``dkey`` was just written (lock held): file the timer
        ``made`` for it before locking, or forget its deadline if it has none."""
        if written is None:
            return
        if made is None:
            self._forget_deadline(dkey)
            return
        timers = self._timers
        if timers is not None:
            timers.file(dkey, *made)

    # --- changes (the caller holds the lock) ----------------------------------------

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
        """``dkey`` if its entry is stored, else MISSING; a wrapper left
        without an entry by a write cut short is forgotten."""
        if dkey is MISSING or dkey in self._data:
            return dkey
        self._unlink(dkey)
        return MISSING

    # --- reads ---------------------------------------------------------------------

    def __contains__(self, key: object) -> bool:
        if key in self._reads:
            return True
        if self._timers is not None:
            return self._timed_find(key, False) is not MISSING
        return bool(self._wrapped) and self._read(key) is not MISSING

    def __len__(self) -> int:
        if self._timers is not None:
            self._expire_now()
        return len(self._data)

    def keys(self) -> list[K]:  # pragma: no cover - each class has its own
        raise NotImplementedError

    def __iter__(self) -> Iterator[K]:
        return iter(self.keys())

    def _copied(self, copy: Callable[[Self], T]) -> tuple[T, int]:
        """``copy(self)`` and the version it was taken at, with no entry come
        or gone during it: a finalizer the collector runs mid-copy may write
        to the cache (the copy is then taken again), and after MAX_ROUNDS
        such tries it is taken under the lock."""
        for _ in range(MAX_ROUNDS):
            version = self._version
            try:
                got = copy(self)
            except RuntimeError:  # "dictionary changed during iteration"
                continue
            if self._version == version:
                return got, version
        self._acquire()
        try:
            return copy(self), self._version
        finally:  # the release, inline (see _acquire)
            try:
                self._token.append(True)
            finally:
                self._lock.release()

    def stats(self) -> CacheStats:
        """Hits, misses, inserts, evictions and expirations so far."""
        now = self._now() if self._timers is not None else None
        gone: list[object] = []
        self._acquire()
        try:
            if now is not None:
                self._expire(now, gone)
            counts = (
                self._hits,
                self._misses,
                self._version,
                self._other,
                self._dropped,
                self._expired,
            )
            size = len(self._data)
        finally:  # the release, inline (see _acquire)
            try:
                self._token.append(True)
            finally:
                self._lock.release()
        del gone
        hits, misses, version, other, dropped, expired = counts
        inserts = version - other
        evictions = inserts - size - dropped - expired
        return CacheStats(
            hits=hits, misses=misses, inserts=inserts, evictions=evictions, expirations=expired
        )

    # --- copy and pickle -----------------------------------------------------------

    def _state(self) -> tuple[list[object], list[V], tuple[object, ...]]:
        """The dict keys and values, in order, and the policy's parts of a
        pickle state, from one snapshot."""
        raise NotImplementedError  # pragma: no cover - each class has its own

    def _check_policy(self, parts: tuple[Any, ...], count: int) -> object:
        """What ``_restore`` needs of the policy's parts of a state for
        ``count`` items; TypeError or ValueError if malformed."""
        return None

    def _restore(
        self, pairs: list[tuple[K, V, int]], policy: object, written: list[Written] | None
    ) -> None:
        """Fill the (initialized, empty) cache from a checked state; ``written``:
        each item's write, when it has deadlines."""
        raise NotImplementedError  # pragma: no cover - each class has its own

    def __reduce__(self) -> tuple[Any, ...]:
        """``copyreg.__newobj__(cls)`` then ``__setstate__``: no subclass
        ``__init__`` runs. Keeps the maxsize, the entries in order (and what
        the policy knows of them), the expiry settings and each entry's time
        left, and a subclass's attributes (``__dict__`` and ``__slots__``);
        stats start afresh (for copy, deepcopy and pickle). TypeError for a
        cache whose ``__init__`` never ran."""
        if not self._maxsize:
            raise TypeError(self._says.not_initialized)
        attributes = getattr(self, "__dict__", None)
        slots: dict[str, object] = {}
        for name in _SLOT_NAMES(type(self)):
            if name not in self._own_slots:
                with contextlib.suppress(AttributeError):  # a slot never set
                    slots[name] = getattr(self, name)
        timers = self._timers
        now = self._expire_now() if timers is not None else 0.0
        dkeys, values, policy = self._state()
        items = [(key_of(dkey), value) for dkey, value in zip(dkeys, values, strict=True)]
        state: tuple[object, ...] = (self._maxsize, items, attributes, slots or None, *policy)
        if timers is not None or self._clock is not None:
            deadlines = timers.deadlines if timers is not None else {}
            left = [_left(deadlines.get(dkey), now) for dkey in dkeys]
            state = (*state, (self._ttl, self._tti, self._clock, left))
        return (_NEWOBJ, (type(self),), state)

    def __setstate__(self, state: tuple[Any, ...], /) -> None:
        """Fill a cache made by ``cls.__new__(cls)`` from ``__reduce__``'s
        state. TypeError for a cache whose ``__init__`` ran and, with
        ValueError, for a malformed state; nothing changed then."""
        says = self._says
        if self._maxsize:
            raise TypeError(says.initialized)
        parts = 4 + self._policy_parts
        if type(state) is not tuple or len(state) not in {parts, parts + 1}:
            raise TypeError(says.bad_state)
        maxsize, items, attributes, slots = state[:4]
        checked = check_maxsize(maxsize)
        pairs = pairs_of(items)
        for name, part in (("attributes", attributes), ("slots", slots)):
            if part is not None and type(part) is not dict:
                raise TypeError(f"{says.bad_state}: {name} must be a dict or None")
        policy = self._check_policy(state[4:parts], len(pairs)) if self._policy_parts else None
        ttl, tti, clock, left = (
            check_expiry(state[parts], len(pairs), says.bad_state)
            if len(state) > parts
            else (None, None, None, [])
        )
        if attributes and not hasattr(self, "__dict__"):
            raise TypeError(f"{says.bad_state}: {type(self).__name__} has no __dict__")
        written: list[Written] | None = None
        if ttl is not None or tti is not None or any(entry is not None for entry in left):
            # Time left is counted from now, read before anything changes.
            now = monotonic() if clock is None else reading(clock())
            written = [
                (now, INF, INF) if entry is None else (now, now + entry[0], now + entry[1])
                for entry in left
            ]
        CacheCore.__init__(self, checked, ttl=ttl, tti=tti, clock=clock)
        self._restore(pairs, policy, written)
        if attributes:
            vars(self).update(attributes)
        if slots:
            for name, value in list(slots.items()):  # a __setattr__ may change the dict
                setattr(self, name, value)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(maxsize={self._maxsize}, len={len(self)})"


def _left(timer: Timer | None, now: float) -> tuple[float, float] | None:
    """What a copy keeps of an entry's deadlines: the seconds left of each."""
    return None if timer is None else (timer[0] - now, timer[1] - now)
