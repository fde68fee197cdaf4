"""The pure-Python S3FIFOCache: the native S3-FIFO policy
(``rust/algo/src/policy.rs``) over the machinery FIFOCache's twin uses
(``core.py``: keys found with no user code under the lock, the lock, stats,
copy and pickle).

Storage: ``_data`` maps a dict key (see ``core.py``) to its *entry*, a list
``[value, 3 - freq, dict key, in main, hash]``. ``_small`` and ``_main`` are deques
of entries, oldest first; an entry in a deque is live while
``_data.get(entry[2]) is entry`` (identity: C code), so a key that leaves by
``pop`` or ``del`` leaves a stale entry behind (emptied of its value and
key), skipped when it reaches the front and swept out when stale ones
dominate. ``_nmain`` counts the live
entries of main. ``_ghost`` holds the hashes of keys that left small unused,
oldest first (an OrderedDict of ints: C code); ``_sketch`` (``sketch.py``)
counts every new key's hash, and decides whether a key back from the ghost
may displace main's victim.

Reads take no lock: a hit is one dict lookup and, while the entry's freq is
below 3, one decrement of its headroom (two threads reading one key at once
may count once, or go past 3: the frequency is a hint, the stats are exact as
FIFOCache's). Writes take
the lock, but for ``set`` with an exact str or int key, which takes the token
alone as FIFOCache's does. A write cut short by an exception (a signal handler's
KeyboardInterrupt) may leave an entry out of its deque or ``_nmain`` wrong; it
marks ``_out_of_step`` on its way out, as does an eviction that finds a deque
empty while the counts say otherwise, and the next insert of a new key first
rebuilds the deques and the count from ``_data``: the live entries keep their
order, any lost go to the back of their queue (where snapshots list them
meanwhile).
"""

from __future__ import annotations

from _thread import get_ident
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from typing import Any, Final, TypeVar, cast, overload

from pepperpy_core._fallback.core import (
    CORE_SLOTS,
    MAX_ROUNDS,
    MISSING,
    CacheCore,
    Written,
    says,
)
from pepperpy_core._fallback.expiry import Timer, Timers
from pepperpy_core._fallback.keys import Wrapper, is_plain, key_of, wrap
from pepperpy_core._fallback.sketch import Sketch

K = TypeVar("K")
V = TypeVar("V")
T = TypeVar("T")

_SAYS: Final = says("S3FIFOCache", "(maxsize, items, attributes, slots, policy[, expiry])")
#: Frequencies stop counting here; a key leaving small read this often moves to main.
MAX_FREQ: Final = 3
PROMOTE_AT: Final = 1
_S3_SLOTS: Final = frozenset(
    {
        "_evicted_once",
        "_ghost",
        "_ghost_size",
        "_main",
        "_main_share",
        "_nmain",
        "_out_of_step",
        "_sketch",
        "_small",
        "_small_share",
    }
)

#: An entry: [value, headroom, dict key, in main, hash when stored]. The
#: headroom is MAX_FREQ - freq, so that a hit tests and bumps it as cheaply
#: as Python allows (``if e[1]: e[1] -= 1``; a saturated key costs one test).
Entry = list[Any]
#: The wrapper group of a plain key (none: never used).
_NO_GROUP: Final[list[Wrapper]] = []
#: The dict key of an entry that left while a deque still holds it (which so
#: holds neither its value nor its key). Never a dict key.
_LEFT: Final = object()


class S3FIFOCache(CacheCore[K, V]):
    """A bounded mapping that evicts by S3-FIFO: new keys enter a small FIFO,
    keys read there move to a main FIFO, which keeps keys while they are
    read; a ghost of recently evicted keys' hashes readmits them to main
    when a frequency sketch (TinyLFU's) counts them more often than main's
    victim. Thread-safe; every operation is O(1), eviction amortized.

    A read or an overwrite counts as a use; ``in`` does not. Values that
    leave the cache are released after the lock is, so their ``__del__`` may
    use the cache.
    """

    __slots__ = tuple(sorted(_S3_SLOTS))
    _says = _SAYS
    _own_slots = CORE_SLOTS | _S3_SLOTS
    _policy_parts = 1

    _data: dict[object, Entry]
    _reads: dict[object, Entry]
    _evicted_once: bool
    _ghost: OrderedDict[int, None]
    _ghost_size: int
    _main: deque[Entry]
    _main_share: int
    _nmain: int
    _out_of_step: bool
    _sketch: Sketch
    _small: deque[Entry]
    _small_share: int

    def _fresh(self) -> None:
        self._small = deque()
        self._main = deque()
        self._nmain = 0
        self._ghost = OrderedDict()
        self._sketch = Sketch(1)
        self._evicted_once = False
        self._out_of_step = False
        self._small_share = self._main_share = self._ghost_size = 0

    def _initialized(self) -> None:
        maxsize = self._maxsize
        self._small_share = max(1, maxsize // 100)
        self._main_share = maxsize - self._small_share
        self._ghost_size = maxsize * 9 // 10
        self._sketch = Sketch(maxsize)
        self._out_of_step = False  # left by a write refused meanwhile; no entries yet

    # --- reads ---------------------------------------------------------------------

    @overload
    def get(self, key: K, default: None = None, /) -> V | None: ...
    @overload
    def get(self, key: K, default: V | T, /) -> V | T: ...
    def get(self, key: K, default: V | T | None = None, /) -> V | T | None:
        """The value of ``key`` (a use of it), or ``default``; counts a hit or a miss."""
        try:
            entry = self._reads[key]
        except KeyError as error:
            found = self._missed(key, error)
            if found is MISSING:
                self._misses += 1
                return default
            entry = cast("Entry", found)
        if entry[1]:
            entry[1] -= 1
        self._hits += 1
        return entry[0]  # type: ignore[no-any-return]

    def __getitem__(self, key: K) -> V:
        try:
            entry = self._reads[key]
        except KeyError as error:
            found = self._missed(key, error)
            if found is MISSING:
                self._misses += 1
                raise KeyError(key) from None
            entry = cast("Entry", found)
        if entry[1]:
            entry[1] -= 1
        self._hits += 1
        return entry[0]  # type: ignore[no-any-return]

    def get_many(self, keys: Iterable[K]) -> dict[K, V]:
        """The present keys among ``keys`` with their values, each a use (as
        by ``get``); each key counts as a hit or a miss. Every key is found
        first (its hash and compares run then), and only then used: a key
        that fails to hash or compare, or an iterable that raises, changes
        nothing but what expired by time."""
        found: list[tuple[K, V]] = []
        used: list[Entry] = []
        misses = 0
        now = self._now() if self._timers is not None else None  # once for every key
        # With a tti a use moves an idle deadline: the look keeps the timers.
        seen: list[Timer] | None = [] if self._tti is not None else None
        for key in keys:
            try:
                entry = self._reads[key]
            except KeyError as error:
                got = self._missed(key, error, now, seen)
                if got is MISSING:
                    misses += 1
                    continue
                entry = cast("Entry", got)
            found.append((key, entry[0]))
            used.append(entry)
        result = dict(found)  # may compare the keys: before anything is used
        # An entry that left meanwhile is no one's: its use is nothing.
        for entry in used:
            if entry[1]:
                entry[1] -= 1
        if seen and now is not None:
            self._touch_seen(seen, now)
        self._hits += len(found)
        self._misses += misses
        return result

    def keys(self) -> list[K]:
        """The keys, small's oldest first, then main's (a snapshot)."""
        # The dict keys are taken within the copy (a pop empties the entry it
        # removes); the wrappers among them keep their keys.
        if self._timers is not None:
            self._expire_now()
        dkeys, version = self._copied(_live_dkeys)
        if not self._wrapped and self._version == version:
            return cast("list[K]", dkeys)
        return [key_of(dkey) for dkey in dkeys]

    def values(self) -> list[V]:
        """The values, in the order of ``keys()`` (a snapshot)."""
        if self._timers is not None:
            self._expire_now()
        (_, values), _ = self._copied(_live_pairs)
        return values

    def items(self) -> list[tuple[K, V]]:
        """The (key, value) pairs, in the order of ``keys()`` (a snapshot)."""
        if self._timers is not None:
            self._expire_now()
        (dkeys, values), version = self._copied(_live_pairs)
        if self._wrapped or self._version != version:
            dkeys = [key_of(dkey) for dkey in dkeys]
        return cast("list[tuple[K, V]]", list(zip(dkeys, values, strict=True)))

    # --- writes ----------------------------------------------------------------------

    def set(self, key: K, value: V, *, ttl: float | None = None) -> None:
        """Insert ``key``, or overwrite it (a use); a new key at maxsize evicts
        one. ``ttl``: this entry's time to live instead of the cache's."""
        if ttl is None:
            S3FIFOCache.__setitem__(self, key, value)  # this class's, whatever a subclass overrides
        else:
            self._write(key, value, ttl)

    def __setitem__(self, key: K, value: V) -> None:
        """``set`` without a ttl of its own: the fast path."""
        kind = type(key)
        if kind is not self._fast_str and kind is not self._fast_int:
            self._write(key, value, None)
            return
        # An exact str or int key, written out as FIFOCache.__setitem__ does (see
        # there): the token taken directly, this thread named its holder
        # first. The entry is made first: allocating a list could start the
        # collector, whose finalizers must not run while the token is held.
        made: Entry = [value, MAX_FREQ, key, False, hash(key)]
        token = self._token
        me = get_ident()
        if not token:
            self._set(key, value, made[4])  # waits there, or refuses a nested use
            return
        self._holder = me  # nothing between the test and the take lets another thread run
        try:
            token.pop()
        except BaseException:
            # Taken, then a signal handler raised as pop returned: give it back.
            try:
                token.append(True)
            finally:
                if self._waiting:
                    self._wake()
            raise
        general = False
        try:
            data = self._data
            wrapped = self._wrapped
            if wrapped and made[4] in wrapped:
                general = True  # a stored key that is not plain has its hash
            elif key in data:
                # Locals whose names start with _ hold what leaves the cache
                # until this frame ends, after the token is given back.
                entry = data[key]
                _replaced = entry[0]
                entry[0] = value
                if entry[1]:
                    entry[1] -= 1
            elif self._out_of_step or not self._maxsize:
                general = True  # repaired, or refused, there
            else:
                _gone = self._insert(made, True, _NO_GROUP)
                general = _gone is MISSING
        except BaseException:
            self._out_of_step = True  # cut short: the queues may be out of step
            raise
        finally:
            try:
                token.append(True)
            finally:  # even if a signal handler raises as append returns
                if self._waiting:
                    self._wake()
        if general:
            self._set(key, value, made[4])

    def _own_setitem(self) -> Callable[[Any, K, V], None]:
        return S3FIFOCache.__setitem__

    def _set(
        self,
        key: K,
        value: V,
        hashed: int,
        written: Written | None = None,
        place: int | None = None,
    ) -> None:
        """``set`` for any key, its hash taken; ``written``: the write's time
        and deadlines, in a cache whose entries may have some; with ``place``
        (what a pickle keeps of an entry), the entry then moves to the back of
        that queue with that freq."""
        if not self._maxsize:
            raise TypeError(_SAYS.not_initialized)
        written, timer, timers = self._prepare(written)
        plain = is_plain(key)
        # Made before locking: allocating under the lock could start the
        # garbage collector, whose finalizers are user code.
        fresh: object = key if plain else wrap(key, hashed)
        made: Entry = [value, MAX_FREQ, fresh, False, hashed]
        spare: Entry = [None] * 5 if place is not None else made
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
                if dkey is not MISSING:
                    entry = data[dkey]
                    released = entry[0]
                    entry[0] = value
                    if entry[1]:
                        entry[1] -= 1
                elif self._out_of_step:
                    # Where a new key goes depends on the counts, and making
                    # room on the deques: repair them first.
                    rebuild = True
                else:
                    entry = made
                    gone = self._insert(entry, plain, group)
                    rebuild = gone is MISSING
                if place is not None and not rebuild:
                    self._place(entry, place, spare)
                if not rebuild:
                    self._give_deadline(entry[2], written, timer)
            except BaseException:
                self._out_of_step = True
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
        raise RuntimeError(_SAYS.changed)

    # --- the policy (the caller holds the lock) --------------------------------------

    def _insert(self, entry: Entry, plain: bool, group: list[Wrapper]) -> object:
        """Store a new entry, making room first; what left to make room (or
        None), or MISSING, nothing inserted and the order marked, if the
        queues prove out of step."""
        data = self._data
        self._version += 1  # before anything comes or goes
        gone: object = None
        if len(data) >= self._maxsize:
            gone = self._evict()
            if gone is MISSING:
                self._other += 1  # nothing was inserted
                return gone
        # The sketch counts it. Back from the ghost (which forgets it): main
        # if the sketch lets it in; else main until the first eviction when
        # small has its share; else small. (Written out here and in _evict: a
        # call is a fifth of an insert.)
        self._sketch.increment(entry[4])
        ghost = self._ghost
        if entry[4] in ghost:
            del ghost[entry[4]]
            entry[3] = self._readmit(entry[4])
        else:
            small = len(data) - self._nmain
            entry[3] = not self._evicted_once and small >= self._small_share
        # Findable first, then stored: a write cut short in between leaves a
        # wrapper with no entry, which _stored drops.
        if not plain:
            self._wrapped.setdefault(entry[4], group).append(cast("Wrapper", entry[2]))
        data[entry[2]] = entry
        if entry[3]:
            self._main.append(entry)
            self._nmain += 1
        else:
            self._small.append(entry)
        return gone

    def _readmit(self, hashed: int) -> bool:
        """Whether a key back from the ghost enters main: main has room, or the
        sketch counted it more often than main's victim (a tie keeps the
        victim), found by turning main's CLOCK as _evict does and left in place."""
        if self._nmain < self._main_share:
            return True
        data = self._data
        main = self._main
        while main:
            entry = main[0]
            if data.get(entry[2]) is not entry:
                main.popleft()  # stale
            elif entry[1] < MAX_FREQ:  # read since: back to main's end, freq - 1
                entry[1] += 1
                main.append(main.popleft())
            else:
                sketch = self._sketch
                return sketch.estimate(hashed) > sketch.estimate(entry[4])
        if self._nmain:
            self._out_of_step = True  # the count says main has entries
        return True

    def _evict(self) -> object:
        """Remove one entry to make room and return it (released after the
        lock); MISSING, nothing removed and the order marked, if the queues
        prove out of step with the entries."""
        self._evicted_once = True
        data = self._data
        while True:
            if self._nmain > self._main_share or len(data) == self._nmain:
                main = self._main
                while main:
                    entry = main.popleft()
                    if data.get(entry[2]) is not entry:
                        continue  # stale
                    if entry[1] < MAX_FREQ:  # read since: back to main's end, freq - 1
                        entry[1] += 1
                        main.append(entry)
                        continue
                    del data[entry[2]]
                    self._nmain -= 1
                    if self._wrapped:
                        self._unlink(entry[2])
                    if self._timers is not None:
                        self._forget_deadline(entry[2])
                    return entry
                break
            small = self._small
            while small:
                entry = small.popleft()
                if data.get(entry[2]) is not entry:
                    continue  # stale
                if entry[1] <= MAX_FREQ - PROMOTE_AT:  # read: to main, freq 0
                    entry[1] = MAX_FREQ
                    entry[3] = True
                    self._main.append(entry)
                    self._nmain += 1
                    continue
                del data[entry[2]]
                if self._wrapped:
                    self._unlink(entry[2])
                if self._timers is not None:
                    self._forget_deadline(entry[2])
                # Its hash becomes the ghost's newest; the oldest goes beyond
                # the ghost's size.
                size = self._ghost_size
                if size:
                    ghost = self._ghost
                    if entry[4] in ghost:
                        ghost.move_to_end(entry[4])
                    else:
                        ghost[entry[4]] = None
                        if len(ghost) > size:
                            ghost.popitem(last=False)
                return entry
            if len(data) != self._nmain:
                break
            # Every key of small moved to main: main's turn.
        self._out_of_step = True
        return MISSING

    def _place(self, entry: Entry, bits: int, spare: Entry) -> None:
        """Move ``entry`` to the back of the queue ``bits`` names, with its
        freq (``bits`` = freq + 4 * in main); ``spare`` stands in for it when
        it is not the newest of its queue (the old list goes stale)."""
        data = self._data
        was = entry[3]
        queue = self._main if was else self._small
        if queue and queue[-1] is entry:
            queue.pop()
        else:
            spare[:] = entry
            data[entry[2]] = spare
            entry[0], entry[2] = None, _LEFT  # stale now: holds nothing
            entry = spare
        entry[1] = MAX_FREQ - (bits & 3)
        entry[3] = bits >= 4
        (self._main if entry[3] else self._small).append(entry)
        self._nmain += entry[3] - was

    def _rebuild(self) -> None:
        """Make the deques hold exactly the live entries (in their order; any
        lost ones after them) and ``_nmain`` count main's, no longer marked out
        of step. Built with the lock released and swapped in if no entry came
        or went meanwhile; after MAX_ROUNDS tries that met changes, built
        under the lock (a collector's finalizer it might start is then
        refused, as any nested use)."""
        for attempt in range(MAX_ROUNDS + 1):
            version = self._version
            built: tuple[deque[Entry], deque[Entry]] | None = None
            if attempt < MAX_ROUNDS:
                try:
                    built = _queues(self)
                except RuntimeError:  # changed during the copy
                    continue
            self._acquire()
            try:
                done = built is None or self._version == version
                if done:
                    if built is None:
                        built = _queues(self)
                    small, main = built
                    built = (self._small, self._main)  # released after the lock
                    self._small, self._main, self._nmain = small, main, len(main)
                    self._out_of_step = False
            except BaseException:
                self._out_of_step = True
                raise
            finally:  # the release, inline (see _acquire)
                try:
                    self._token.append(True)
                finally:
                    self._lock.release()
            del built
            if done:
                return

    # --- removal -----------------------------------------------------------------------

    def _discard(self, dkey: object, gone: list[object]) -> None:
        self._version += 1  # before the entry leaves
        self._other += 1
        entry = self._data.pop(dkey)
        self._nmain -= entry[3]
        self._unlink(dkey)
        self._forget_deadline(dkey)
        # A deque holds the entry until it reaches the front: empty it now.
        gone.append(entry[0])
        gone.append(dkey)
        entry[0], entry[2] = None, _LEFT

    def _mark_out_of_step(self) -> None:
        self._out_of_step = True

    def _queued(self) -> int:
        return len(self._small) + len(self._main)

    def clear(self) -> None:
        """Remove every entry and forget the ghost and the sketch; the stats are kept."""
        if not self._maxsize:
            raise TypeError(_SAYS.not_initialized)
        timers = Timers() if self._timers is not None else None
        fresh: tuple[Any, ...] = (
            {},
            deque(),
            deque(),
            OrderedDict(),
            Sketch(self._maxsize),
            {},
            {},
            timers,
        )
        self._acquire()
        try:
            old = (
                self._data,
                self._small,
                self._main,
                self._ghost,
                self._sketch,
                self._wrapped,
                self._mixed,
                self._timers,
            )
            self._version += 1
            self._other += 1
            (
                self._data,
                self._small,
                self._main,
                self._ghost,
                self._sketch,
                self._wrapped,
                self._mixed,
                self._timers,
            ) = fresh
            if self._timers is None:
                self._reads = self._data
            self._dropped += len(old[0])
            self._nmain = 0
            self._evicted_once = self._out_of_step = False
        except BaseException:
            self._out_of_step = True
            raise
        finally:  # the release, inline (see _acquire)
            try:
                self._token.append(True)
            finally:
                self._lock.release()
        del old

    # --- copy and pickle -----------------------------------------------------------

    def _state(self) -> tuple[list[object], list[V], tuple[object, ...]]:
        """The dict keys and values and, per item, ``freq + 4 * in main``, and
        whether the cache has evicted (the ghost and the sketch are not kept:
        str hashes differ between processes)."""
        (dkeys, values, bits), _ = self._copied(_live_state)
        return dkeys, values, ((bits, self._evicted_once),)

    def _check_policy(self, parts: tuple[Any, ...], count: int) -> object:
        bad = _SAYS.bad_state
        (policy,) = parts
        if (
            type(policy) is not tuple
            or len(policy) != 2
            or type(policy[0]) is not bytes
            or type(policy[1]) is not bool
        ):
            raise TypeError(f"{bad}: policy must be a (bytes, bool) tuple")
        bits: bytes = policy[0]
        if len(bits) != count:
            raise ValueError(f"{bad}: policy has {len(bits)} entries for {count} items")
        if any(b >= 8 for b in bits):
            raise ValueError(f"{bad}: policy has a bad entry")
        return policy

    def _restore(
        self, pairs: list[tuple[K, V, int]], policy: object, written: list[Written] | None
    ) -> None:
        bits, evicted_once = cast("tuple[bytes, bool]", policy)
        for i, ((key, value, hashed), placed) in enumerate(zip(pairs, bits, strict=True)):
            self._set(key, value, hashed, None if written is None else written[i], placed)
        fresh: OrderedDict[int, None] = OrderedDict()
        sketch = Sketch(self._maxsize)
        self._acquire()
        try:
            fresh, self._ghost = self._ghost, fresh
            sketch, self._sketch = self._sketch, sketch
            self._evicted_once = evicted_once
        finally:  # the release, inline (see _acquire)
            try:
                self._token.append(True)
            finally:
                self._lock.release()
        del fresh, sketch


def _live(cache: S3FIFOCache[Any, Any]) -> list[Entry]:
    """The live entries, small's then main's, oldest first (any that a write
    cut short left out of the deques after them, as a rebuild places them)."""
    data = cache._data
    live = [entry for entry in (*cache._small, *cache._main) if data.get(entry[2]) is entry]
    if len(live) == len(data):
        return live
    small, main = _queues(cache)
    return [*small, *main]


def _live_dkeys(cache: S3FIFOCache[Any, Any]) -> list[object]:
    return [entry[2] for entry in _live(cache)]


def _live_pairs(cache: S3FIFOCache[Any, V]) -> tuple[list[object], list[V]]:
    entries = _live(cache)
    return [entry[2] for entry in entries], [entry[0] for entry in entries]


def _live_state(cache: S3FIFOCache[Any, V]) -> tuple[list[object], list[V], bytes]:
    """Dict keys, values, and per entry freq + 4 * in main."""
    entries = _live(cache)
    bits = bytes(MAX_FREQ - min(max(entry[1], 0), MAX_FREQ) + 4 * entry[3] for entry in entries)
    return [entry[2] for entry in entries], [entry[0] for entry in entries], bits


def _queues(cache: S3FIFOCache[Any, Any]) -> tuple[deque[Entry], deque[Entry]]:
    """Deques of the live entries, each once, in their order, then any entry
    that no deque holds (lost by a write cut short) at the back of its queue."""
    data = cache._data
    small: deque[Entry] = deque()
    main: deque[Entry] = deque()
    seen: set[int] = set()
    for entry in (*cache._small, *cache._main):
        if data.get(entry[2]) is entry and id(entry) not in seen:
            seen.add(id(entry))
            (main if entry[3] else small).append(entry)
    for entry in list(data.values()):
        if id(entry) not in seen:
            (main if entry[3] else small).append(entry)
    return small, main
