"""Differential fuzzing: the extension, the fallback and a reference model,
driven with the same random operations, must agree on every observable.

For the caches (FIFOCache, and S3FIFOCache against ``S3Reference``): each
call's outcome (its value, or its exception's type and message), then the
entries in order, the length and the stats, and for S3FIFOCache each entry's
queue and frequency as a copy keeps them. Keys include
hostile ones: raising ``__hash__`` and ``__eq__``, many keys with one hash,
ints that share a hash, bytes that hash like a str, a str subclass, keys whose
hash changes after insertion, keys whose ``__eq__`` writes to the cache, and
keys that are not builtins but equal builtin keys (IntEnum and StrEnum members,
float and tuple subclasses, Decimal, a class whose Python ``__eq__`` equals an
int). Caches are made directly or as a subclass with an ``__init__`` of its
own, and copied (``copy.copy``) at random points.
For metrics: counters, gauges, histograms and whole registries fed the same inputs,
good and bad, compared by value, error and exposition text.

The example budget comes from the Hypothesis profile (``HYPOTHESIS_PROFILE=ci``
in CI, see conftest.py).
"""

from __future__ import annotations

import copy
import decimal
import enum
import math
import types
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from pepperpy_core import _backend
from pepperpy_core._fallback.cache import MAX_ROUNDS
from pepperpy_core._fallback.core import says
from pepperpy_core.errors import MetricError
from pepperpy_core.kinds import number
from pepperpy_core.metrics import RegistryBase
from tests.s3fifo_model import CountMin4

# Needs both backends in one process: the fallback pass leaves this file out.
BACKENDS = [_backend.load("native"), _backend.load("python")]
CHANGED = (
    "FIFOCache changed during the operation: a key's __eq__ modified the cache "
    f"each time it was compared (gave up after {MAX_ROUNDS} tries)"
)
S3_CHANGED = says("S3FIFOCache", "").changed
MISSING: Any = object()

# --- keys ------------------------------------------------------------------------


@dataclass(frozen=True)
class Collide:
    """Distinct keys with one hash: every lookup compares them."""

    n: int

    def __hash__(self) -> int:
        return 11


class EqBoom:
    """Keys that share a hash of their own and cannot be compared."""

    def __hash__(self) -> int:
        return 13

    def __eq__(self, other: object) -> bool:
        raise LookupError("eq boom")

    def __repr__(self) -> str:
        return "EqBoom()"


class HashBoom:
    def __hash__(self) -> int:
        raise ArithmeticError("hash boom")

    def __repr__(self) -> str:
        return "HashBoom()"


class CollideBoom:
    """A key of Collide's hash that cannot be compared: a lookup raises
    once a Collide is stored (Collide's __eq__ defers to it)."""

    def __hash__(self) -> int:
        return 11

    def __eq__(self, other: object) -> bool:
        raise LookupError("eq boom")

    def __repr__(self) -> str:
        return "CollideBoom()"


def _cut_short(wanted: list[Any]) -> Iterator[Any]:
    yield from wanted
    raise RuntimeError("iterator boom")


def failing(wanted: list[Any], bad: str, at: int) -> Iterable[Any]:
    """``wanted`` with a key that fails to hash or compare at ``at``, or
    cut short there by an iterator that raises."""
    if bad == "iterator":
        return _cut_short(wanted[:at])
    return [*wanted[:at], HashBoom() if bad == "hash" else CollideBoom(), *wanted[at:]]


#: A bad input to get_many: which, and where among the good keys.
BAD_GET_MANY = {
    "bad": st.sampled_from(["hash", "eq", "iterator"]),
    "at": st.integers(min_value=0, max_value=4),
}


class Rehash:
    """A key whose hash the test changes after it is stored."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.h = 100 + n

    def __hash__(self) -> int:
        return self.h

    def __repr__(self) -> str:
        return f"Rehash({self.n}, h={self.h})"


class Noisy:
    """A key whose __eq__ writes to the cache being used (the same write each
    time, so every implementation ends in the same state, however often it
    compares: for S3-FIFO, where an overwrite is a use, the write is an insert
    of a key that is absent)."""

    current: Any = None

    def __init__(self, n: int) -> None:
        self.n = n

    def __hash__(self) -> int:
        return 17

    def __eq__(self, other: object) -> bool:
        cache = Noisy.current
        if not isinstance(cache, S3_KINDS) or "noise" not in cache:
            cache.set("noise", 0)
        return isinstance(other, Noisy) and other.n == self.n

    def __repr__(self) -> str:
        return f"Noisy({self.n})"


class Text(str):
    """A str subclass: equal to its str, compared by Python code."""


class Small(enum.IntEnum):
    TWO = 2
    SEVEN = 7


class Word(enum.StrEnum):
    ALPHA = "alpha"


class Meters(float):
    pass


class Pair(NamedTuple):
    n: int
    name: str


class Same:
    """Equal to the int it holds through Python code, with no builtin value
    to read: the pure-Python cache finds it by a scan."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __hash__(self) -> int:
        return hash(self.n)

    def __eq__(self, other: object) -> bool:
        return other == self.n or (isinstance(other, Same) and other.n == self.n)

    def __repr__(self) -> str:
        return f"Same({self.n})"


REHASH = [Rehash(n) for n in range(3)]
EQBOOM = [EqBoom() for _ in range(2)]
NAN = float("nan")
SHARED = 2**61 - 1  # ints n and n + SHARED have one hash

keys = st.one_of(
    st.integers(min_value=-3, max_value=12),
    st.integers(min_value=0, max_value=3).map(lambda k: 7 + k * SHARED),
    st.sampled_from([True, False, 1.0, 2.5, NAN, None]),
    st.sampled_from(["alpha", "beta", "gamma"]).map(lambda t: "".join([t[:1], t[1:]])),
    st.sampled_from([b"alpha", b"beta"]),
    st.sampled_from(["alpha", "beta"]).map(Text),
    st.sampled_from([Small.TWO, Small.SEVEN, Word.ALPHA, Meters(2.0), Meters(2.5)]),
    st.sampled_from([Pair(1, "a"), Pair(2, "c")]),
    st.integers(min_value=2, max_value=3).map(decimal.Decimal),
    st.integers(min_value=6, max_value=8).map(Same),
    st.builds(Collide, st.integers(min_value=0, max_value=4)),
    st.sampled_from([(1, "a"), (2, "b"), ("alpha", (1, 2))]),
    st.builds(lambda n: (Collide(n), 1), st.integers(min_value=0, max_value=2)),
    st.sampled_from(REHASH),
    st.sampled_from(EQBOOM),
    st.builds(Noisy, st.integers(min_value=0, max_value=2)),
    st.builds(HashBoom),
    st.builds(lambda: [1]),  # unhashable
)
values = st.integers(min_value=-5, max_value=50)


# --- the reference model -----------------------------------------------------------


def _hash(key: Any) -> int:
    """``hash(key)``, but for an unhashable key the error a dict raises on the
    running Python (3.14 words it differently): what the caches promise."""
    try:
        return hash(key)
    except TypeError:
        if type(key).__hash__ is None:
            {}.get(key)
        raise


class FakeClock:
    """A clock that moves only when told (at module level, so a pickle keeps it)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


#: The clock of every cache the fuzz makes (copies share it, as a copy does).
CLOCK = FakeClock()
INF = math.inf


def _seconds(value: Any, what: str) -> float | None:
    """The caches' check of a ttl or tti, as their messages word it."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{what} must be a number of seconds or None, not {type(value).__name__}")
    try:
        seconds = float(value)
    except OverflowError:  # an int beyond a float's range
        seconds = INF
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"{what} must be a finite number of seconds > 0, got {value!r}")
    return seconds


class Reference:
    """The contract written plainly: entries in a list, found by hash (as it
    was when stored), then identity, then the stored key's __eq__; a search
    during which the cache changed is redone, as the real ones do.

    Expiry: an entry with a deadline (its write deadline, and its idle
    deadline that reads move) is due when the clock reads at least the
    earlier of them. Each operation hashes its key, reads the clock (once
    the cache may have deadlines), finds the key, then removes every entry
    due (an expiration each), then acts as if they had never been there.

    ``get_many`` finds every key first, using none, then uses each entry
    found that is still there (its idle deadline only if no write gave it
    another since) and counts."""

    CHANGED = CHANGED

    def __init__(
        self,
        maxsize: int,
        ttl: float | None = None,
        tti: float | None = None,
        clock: FakeClock | None = None,
    ) -> None:
        self.maxsize = maxsize
        self.entries: list[list[Any]] = []  # [key, stored hash, value]
        self.version = 0
        self.hits = self.misses = self.inserts = self.evictions = self.expirations = 0
        self.ttl, self.tti, self.clock = ttl, tti, clock
        self.timed = ttl is not None or tti is not None
        # id(entry) -> (entry, write deadline, idle deadline, the write's
        # number), entries with one only
        self.deadlines: dict[int, tuple[list[Any], float, float, int]] = {}
        self.writes = 0

    # --- expiry ------------------------------------------------------------------

    def now(self, wanted: bool = False) -> float | None:
        if not (wanted or self.timed):
            return None
        assert self.clock is not None, "the fuzz gives every cache its clock"
        return float(self.clock())

    def _due(self, entry: list[Any], now: float) -> bool:
        found = self.deadlines.get(id(entry))
        return found is not None and now >= min(found[1], found[2])

    def _purge(self, now: float | None) -> None:
        if now is None:
            return
        for entry in list(self.entries):
            if self._due(entry, now):
                self._drop(entry)
                self.expirations += 1

    def _drop(self, entry: list[Any]) -> None:
        """Remove ``entry`` (not an eviction)."""
        # By identity: list.remove would compare entries, running keys' __eq__.
        del self.entries[next(i for i, e in enumerate(self.entries) if e is entry)]
        self.deadlines.pop(id(entry), None)
        self.version += 1

    def _present(self, entry: list[Any] | None) -> list[Any] | None:
        return entry if entry is not None and any(e is entry for e in self.entries) else None

    def _deadline(self, entry: list[Any], now: float, ttl: float | None) -> None:
        live = ttl if ttl is not None else self.ttl
        write = INF if live is None else now + live
        idle = INF if self.tti is None else now + self.tti
        if write == INF and idle == INF:
            self.deadlines.pop(id(entry), None)
        else:
            self.writes += 1
            self.deadlines[id(entry)] = (entry, write, idle, self.writes)
            self.timed = True

    def _touch(self, entry: list[Any], now: float | None) -> None:
        found = self.deadlines.get(id(entry))
        if now is not None and self.tti is not None and found is not None:
            self.deadlines[id(entry)] = (entry, found[1], now + self.tti, found[3])

    def _lookup(self, key: Any, use: bool, now: Any = MISSING) -> list[Any] | None:
        _hash(key)
        if now is MISSING:
            now = self.now()
        entry = self._find(key)
        self._purge(now)
        entry = self._present(entry)
        if entry is not None and use:
            self._touch(entry, now)
            self._use(entry)
        return entry

    def expiry(self) -> tuple[Any, ...]:
        """What a copy keeps of expiry (the last part of the state)."""
        now = self.now()
        left = []
        for entry in self.entries:
            found = self.deadlines.get(id(entry))
            assert found is None or now is not None
            left.append(None if found is None else (found[1] - now, found[2] - now))
        return (self.ttl, self.tti, self.clock, left)

    # --- the operations ------------------------------------------------------------

    def _find(self, key: Any) -> list[Any] | None:
        h = _hash(key)
        for _ in range(MAX_ROUNDS):
            version = self.version
            found = None
            for entry in list(self.entries):
                if entry[1] == h and (entry[0] is key or entry[0] == key):
                    found = entry
                    break
            if self.version == version:
                return found
        raise RuntimeError(self.CHANGED)

    @staticmethod
    def _use(entry: list[Any]) -> None:
        """A read or an overwrite found ``entry`` (FIFO: nothing changes)."""

    def get(self, key: Any, default: Any = None) -> Any:
        entry = self._lookup(key, True)
        if entry is None:
            self.misses += 1
            return default
        self.hits += 1
        return entry[2]

    def __getitem__(self, key: Any) -> Any:
        entry = self._lookup(key, True)
        if entry is None:
            self.misses += 1
            raise KeyError(key)
        self.hits += 1
        return entry[2]

    def __contains__(self, key: Any) -> bool:
        return self._lookup(key, False) is not None

    def set(self, key: Any, value: Any, ttl: Any = None) -> None:
        self._write(key, value, _seconds(ttl, "ttl"))

    __setitem__ = set

    def _write(self, key: Any, value: Any, ttl: float | None, now: Any = MISSING) -> list[Any]:
        h = _hash(key)
        if now is MISSING:
            now = self.now(wanted=ttl is not None)
        entry = self._present(self._find(key))
        self._purge(now)
        entry = self._store(key, h, value, self._present(entry))
        if now is not None:
            self._deadline(entry, now, ttl)
        return entry

    def _store(self, key: Any, h: int, value: Any, entry: list[Any] | None) -> list[Any]:
        """Overwrite ``entry``, or insert a new one for ``key``."""
        if entry is not None:
            entry[2] = value
            return entry
        if len(self.entries) >= self.maxsize:
            gone = self.entries.pop(0)
            self.deadlines.pop(id(gone), None)
            self.evictions += 1
        entry = [key, h, value]
        self.entries.append(entry)
        self.version += 1
        self.inserts += 1
        return entry

    def pop(self, key: Any, *default: Any) -> Any:
        entry = self._lookup(key, False)
        if entry is None:
            if default:
                return default[0]
            raise KeyError(key)
        self._drop(entry)
        return entry[2]

    def __delitem__(self, key: Any) -> None:
        self.pop(key)

    def clear(self) -> None:
        self.entries = []
        self.deadlines = {}
        self.version += 1

    def get_many(self, wanted: Iterable[Any]) -> dict[Any, Any]:
        now = self.now()
        found, entries, misses = [], [], 0
        for key in wanted:
            entry = self._lookup(key, False, now)
            if entry is None:
                misses += 1
            else:
                found.append((key, entry[2]))
                written = self.deadlines.get(id(entry))
                entries.append((entry, None if written is None else written[3]))
        result = dict(found)
        for entry, write in entries:
            if self._present(entry) is None:
                continue  # left meanwhile: its use is nothing
            self._use(entry)
            written = self.deadlines.get(id(entry))
            if written is not None and written[3] == write:
                self._touch(entry, now)
        self.hits += len(found)
        self.misses += misses
        return result

    def set_many(self, items: Any, ttl: Any = None) -> None:
        seconds = _seconds(ttl, "ttl")
        source = items.items() if hasattr(items, "items") else items
        pairs = []
        for pair in source:
            item = tuple(pair)
            if len(item) != 2:
                raise ValueError("set_many expects (key, value) pairs, got one of another length")
            _hash(item[0])
            pairs.append(item)
        # Every key compared before any is written: with the stored keys of
        # its hash, and the keys given with one another.
        for key, _ in pairs:
            self._find(key)
        dict.fromkeys(key for key, _ in pairs)
        now = self.now(wanted=seconds is not None)
        for key, value in pairs:
            self._write(key, value, seconds, now)

    def items(self) -> list[tuple[Any, Any]]:
        self._purge(self.now())
        return [(entry[0], entry[2]) for entry in self.entries]

    def __len__(self) -> int:
        self._purge(self.now())
        return len(self.entries)

    def counts(self) -> tuple[int, int, int, int, int]:
        self._purge(self.now())
        return (self.hits, self.misses, self.inserts, self.evictions, self.expirations)

    def _cloned(self) -> tuple[Any, float | None, list[Any]]:
        """A fresh cache with these settings, the time left of each entry
        (taken once what is due left) and when the clone counts it from."""
        self._purge(self.now())
        left = self.expiry()[3]
        clone = type(self)(self.maxsize, self.ttl, self.tti, self.clock)
        restored = self.ttl is not None or self.tti is not None or any(left)
        return clone, (self.now(wanted=True) if restored else None), left

    def _restore(self, entry: list[Any], now: float | None, left: Any) -> None:
        if now is None:
            return
        if left is None:
            self.deadlines.pop(id(entry), None)
            return
        self.writes += 1
        self.deadlines[id(entry)] = (entry, now + left[0], now + left[1], self.writes)
        self.timed = True

    def copied(self) -> Reference:
        """What copy.copy gives: the entries, in order, in a fresh cache, each
        with the time it had left."""
        clone, now, left = self._cloned()
        # What the entries were when the copy began: a key's __eq__ may write
        # to this cache while the clone is filled.
        for (key, _, value), kept in zip(_as_they_are(self.entries), left, strict=True):
            clone._restore(clone._write(key, value, None, now), now, kept)
        return clone


def _as_they_are(entries: list[list[Any]]) -> list[tuple[Any, ...]]:
    """A snapshot of ``entries`` (the list and each entry in it)."""
    return [tuple(entry) for entry in entries]


class S3Reference(Reference):
    """S3-FIFO with a sketch-gated ghost written plainly on Reference's
    search: entries ``[key, stored hash, value, in main, freq]`` in two
    lists, small's and main's, oldest first; the ghost a list of stored
    hashes; the model's sketch. Every rule is the one of
    rust/algo/src/policy.rs and of s3fifo_model.py. An expired entry leaves
    its list as a popped one does (not to the ghost; the sketch is not told)."""

    CHANGED = S3_CHANGED

    def __init__(
        self,
        maxsize: int,
        ttl: float | None = None,
        tti: float | None = None,
        clock: FakeClock | None = None,
    ) -> None:
        super().__init__(maxsize, ttl, tti, clock)
        self.small: list[list[Any]] = []
        self.main: list[list[Any]] = []
        self.ghost: list[int] = []
        self.sketch = CountMin4(2 * maxsize, 10 * maxsize)
        self.evicted_once = False
        self.small_share = max(1, maxsize // 100)
        self.ghost_size = maxsize * 9 // 10

    @property  # type: ignore[override]
    def entries(self) -> list[list[Any]]:
        return self.small + self.main

    @entries.setter
    def entries(self, value: list[list[Any]]) -> None:
        assert value == []  # Reference.__init__ and clear

    @staticmethod
    def _use(entry: list[Any]) -> None:
        entry[4] = min(entry[4] + 1, 3)

    def _store(self, key: Any, h: int, value: Any, entry: list[Any] | None) -> list[Any]:
        if entry is not None:
            entry[2] = value
            self._use(entry)
            return entry
        if len(self.entries) >= self.maxsize:
            self._evict()
        self.sketch.increment(h)
        if h in self.ghost:
            self.ghost.remove(h)
            main = self._readmit(h)
        else:
            main = not self.evicted_once and len(self.small) >= self.small_share
        entry = [key, h, value, main, 0]
        (self.main if main else self.small).append(entry)
        self.version += 1
        self.inserts += 1
        return entry

    def _victim(self) -> list[Any]:
        """Main's CLOCK turned until its oldest has freq 0: that entry, in place."""
        while self.main[0][4]:
            entry = self.main.pop(0)
            entry[4] -= 1
            self.main.append(entry)
        return self.main[0]

    def _readmit(self, h: int) -> bool:
        if len(self.main) < self.maxsize - self.small_share or not self.main:
            return True
        return self.sketch.estimate(h) > self.sketch.estimate(self._victim()[1])

    def _evict(self) -> None:
        self.evicted_once = True
        while True:
            if len(self.main) > self.maxsize - self.small_share or not self.small:
                entry = self._victim()
                self.main.pop(0)
                break
            entry = self.small.pop(0)
            if entry[4] >= 1:
                entry[3], entry[4] = True, 0
                self.main.append(entry)
                continue
            if self.ghost_size:
                if entry[1] in self.ghost:
                    self.ghost.remove(entry[1])
                self.ghost.append(entry[1])
                del self.ghost[: -self.ghost_size]
            break
        self.deadlines.pop(id(entry), None)
        self.evictions += 1
        self.version += 1

    def _drop(self, entry: list[Any]) -> None:
        queue = self.main if entry[3] else self.small
        del queue[next(i for i, e in enumerate(queue) if e is entry)]
        self.deadlines.pop(id(entry), None)
        self.version += 1

    def clear(self) -> None:
        self.small, self.main, self.ghost = [], [], []
        self.sketch = CountMin4(2 * self.maxsize, 10 * self.maxsize)
        self.deadlines = {}
        self.evicted_once = False
        self.version += 1

    def policy(self) -> tuple[bytes, bool]:
        """What a copy keeps of the policy (the fifth part of the state)."""
        return bytes(e[4] + 4 * e[3] for e in self.entries), self.evicted_once

    def copied(self) -> S3Reference:
        """What copy.copy gives: each entry set again, then moved to the back
        of its queue with its freq and given the time it had left; the ghost
        and the sketch are not kept."""
        clone, now, left = self._cloned()
        for (key, _, value, main, freq), kept in zip(_as_they_are(self.entries), left, strict=True):
            entry = clone._write(key, value, None, now)
            for queue in (clone.small, clone.main):
                if any(e is entry for e in queue):
                    del queue[next(i for i, e in enumerate(queue) if e is entry)]
            entry[3], entry[4] = main, freq
            (clone.main if main else clone.small).append(entry)
            clone._restore(entry, now, kept)
        clone.evicted_once = self.evicted_once
        clone.ghost = []
        clone.sketch = CountMin4(2 * self.maxsize, 10 * self.maxsize)
        return clone


S3_KINDS = (S3Reference, *(b.S3FIFOCache for b in BACKENDS))


#: The cache classes and their references.
KINDS = ("FIFOCache", "S3FIFOCache")
REFERENCES: dict[str, type[Reference]] = {"FIFOCache": Reference, "S3FIFOCache": S3Reference}


def _subclass(base: type) -> type:
    class Named(base):  # type: ignore[misc, valid-type]
        """A subclass whose __init__ takes arguments of its own."""

        def __init__(self, name: str, size: int, **expiry: Any) -> None:
            super().__init__(size, **expiry)
            self.name = name

    return Named


SUBCLASSES = {(b.name, kind): _subclass(getattr(b, kind)) for b in BACKENDS for kind in KINDS}

#: How the fuzz's caches expire: None, no expiry argument at all (no clock:
#: the writes' own ttl are left out); else the settings, with CLOCK.
EXPIRY = st.sampled_from(
    [None, {}, {"ttl": 3.0}, {"tti": 2.0}, {"ttl": 5.0, "tti": 1.5}, {"ttl": 1, "tti": 4}]
)
#: A write's own ttl: good ones, and ones every cache refuses alike.
TTLS = st.sampled_from([0.5, 1.0, 2.5, 4, None, 0, -1.0, math.nan, math.inf, "1", True, 10**400])
#: How far the clock moves in one step.
STEPS = st.sampled_from([0.5, 1.0, 1.5, 2.0, 3.0])


def made(kind: str, maxsize: int, expiry: dict[str, Any] | None, subclass: bool) -> list[Any]:
    """The reference and a cache of ``kind`` per backend, expiring as said."""
    CLOCK.now = 0.0
    settings = {} if expiry is None else {**expiry, "clock": CLOCK}
    caches = [
        SUBCLASSES[b.name, kind]("fuzz", maxsize, **settings)
        if subclass
        else getattr(b, kind)(maxsize, **settings)
        for b in BACKENDS
    ]
    return [REFERENCES[kind](maxsize, **settings), *caches]


def counts(cache: Any) -> tuple[int, int, int, int, int]:
    if isinstance(cache, Reference):
        return cache.counts()
    s = cache.stats()
    return (s.hits, s.misses, s.inserts, s.evictions, s.expirations)


def expiry_part(cache: Any) -> tuple[Any, ...]:
    """What a copy keeps of a cache's expiry: () for a cache without any."""
    if isinstance(cache, Reference):
        return (cache.expiry(),) if cache.timed or cache.clock is not None else ()
    state = cache.__reduce__()[2]
    return state[5:] if isinstance(cache, S3_KINDS) else state[4:]


def outcome(subject: Any, call: Callable[[Any], Any]) -> tuple[Any, ...]:
    """What a call did: ("ok", its value as identities) or ("raised", type,
    message). Noisy keys write to whichever cache is being called."""
    Noisy.current = subject
    try:
        result = call(subject)
    except Exception as error:  # compared below, whatever it is
        return ("raised", type(error).__name__, str(error))
    if isinstance(result, dict):
        return ("ok", [(id(k), v) for k, v in result.items()])
    return ("ok", result if isinstance(result, int | None) else id(result))


class CacheAgreement(RuleBasedStateMachine):
    kind = "FIFOCache"

    def __init__(self) -> None:
        super().__init__()
        self.subjects: list[Any] = []
        self.expiring = False

    @initialize(
        maxsize=st.integers(min_value=1, max_value=6), subclass=st.booleans(), expiry=EXPIRY
    )
    def make(self, maxsize: int, subclass: bool, expiry: dict[str, Any] | None) -> None:
        for key in REHASH:
            key.h = 100 + key.n
        self.expiring = expiry is not None
        self.subjects = made(self.kind, maxsize, expiry, subclass)

    def agree(self, call: Callable[[Any], Any]) -> None:
        seen = [outcome(s, call) for s in self.subjects]
        assert all(o == seen[0] for o in seen), seen

    @rule(key=keys, value=values)
    def set(self, key: Any, value: int) -> None:
        self.agree(lambda c: c.set(key, value))

    @rule(key=keys, value=values)
    def setitem(self, key: Any, value: int) -> None:
        self.agree(lambda c: c.__setitem__(key, value))

    @precondition(lambda self: self.expiring)
    @rule(key=keys, value=values, ttl=TTLS)
    def set_ttl(self, key: Any, value: int, ttl: Any) -> None:
        self.agree(lambda c: c.set(key, value, ttl=ttl))

    @precondition(lambda self: self.expiring)
    @rule(pairs=st.lists(st.tuples(keys, values), max_size=3), ttl=TTLS)
    def set_many_ttl(self, pairs: list[tuple[Any, int]], ttl: Any) -> None:
        self.agree(lambda c: c.set_many(pairs, ttl=ttl))

    @precondition(lambda self: self.expiring)
    @rule(seconds=STEPS)
    def advance(self, seconds: float) -> None:
        CLOCK.now += seconds

    @rule(key=keys, default=st.none() | values)
    def get(self, key: Any, default: int | None) -> None:
        self.agree(lambda c: c.get(key, default))

    @rule(key=keys)
    def getitem(self, key: Any) -> None:
        self.agree(lambda c: c[key])

    @rule(key=keys)
    def contains(self, key: Any) -> None:
        self.agree(lambda c: key in c)

    @rule(key=keys, with_default=st.booleans())
    def pop(self, key: Any, with_default: bool) -> None:
        self.agree(lambda c: c.pop(key, -1) if with_default else c.pop(key))

    @rule(key=keys)
    def delitem(self, key: Any) -> None:
        self.agree(lambda c: c.__delitem__(key))

    @rule(wanted=st.lists(keys, max_size=4))
    def get_many(self, wanted: list[Any]) -> None:
        self.agree(lambda c: c.get_many(iter(wanted)))

    @rule(wanted=st.lists(keys, max_size=4), **BAD_GET_MANY)
    def get_many_failing(self, wanted: list[Any], bad: str, at: int) -> None:
        self.agree(lambda c: c.get_many(failing(wanted, bad, at)))

    @rule(
        pairs=st.lists(st.tuples(keys, values), max_size=4),
        shape=st.sampled_from(["list", "dict", "proxy", "bad", "not pairs"]),
    )
    def set_many(self, pairs: list[tuple[Any, int]], shape: str) -> None:
        def items() -> Any:
            if shape == "list":
                return list(pairs)
            if shape in {"dict", "proxy"}:
                try:
                    mapping = dict(pairs)
                except Exception:  # unhashable or uncomparable keys: as pairs
                    return list(pairs)
                return mapping if shape == "dict" else types.MappingProxyType(mapping)
            if shape == "bad":
                return [*pairs, (1, 2, 3)]
            return [*pairs, 5]

        self.agree(lambda c: c.set_many(items()))

    @rule()
    def clear(self) -> None:
        self.agree(lambda c: c.clear())

    @rule()
    def copied(self) -> None:
        clones: list[Any] = []
        self.agree(
            lambda c: clones.append(c.copied() if isinstance(c, Reference) else copy.copy(c))
        )
        if len(clones) == len(self.subjects):
            for original, clone in zip(self.subjects, clones, strict=True):
                assert type(clone) is type(original)
                assert getattr(clone, "name", None) == getattr(original, "name", None)
            self.subjects = clones

    @rule(index=st.integers(min_value=0, max_value=2), h=st.integers(min_value=100, max_value=104))
    def rehash(self, index: int, h: int) -> None:
        REHASH[index].h = h  # stored entries keep the hash they were stored with

    @invariant()
    def same_entries_length_and_stats(self) -> None:
        if not self.subjects:
            return
        reference = self.subjects[0]
        want = [(id(k), v) for k, v in reference.items()]
        for cache in self.subjects[1:]:
            assert [(id(k), v) for k, v in cache.items()] == want
            assert [id(k) for k in list(cache)] == [i for i, _ in want]
            assert cache.values() == [v for _, v in want]
            assert len(cache) == len(want) <= cache.maxsize
            assert counts(cache) == counts(reference)
            assert expiry_part(cache) == expiry_part(reference)
            if isinstance(reference, S3Reference):
                assert cache.__reduce__()[2][4] == reference.policy()


CacheAgreement.TestCase.settings = settings(stateful_step_count=40)
TestCacheAgreement = CacheAgreement.TestCase


class S3CacheAgreement(CacheAgreement):
    """The same operations and keys for S3FIFOCache (maxsize up to 12, so that
    small, main and the ghost all have room) against S3Reference."""

    kind = "S3FIFOCache"

    @initialize(
        maxsize=st.integers(min_value=1, max_value=12), subclass=st.booleans(), expiry=EXPIRY
    )
    def make(self, maxsize: int, subclass: bool, expiry: dict[str, Any] | None) -> None:
        super().make(maxsize, subclass, expiry)


S3CacheAgreement.TestCase.settings = settings(stateful_step_count=60)
TestS3CacheAgreement = S3CacheAgreement.TestCase

#: Few keys, some sharing a hash: they come back often enough to be read
#: twice in small, promoted, reinserted in main, readmitted from the ghost.
policy_keys = st.one_of(
    st.integers(min_value=0, max_value=15),
    st.builds(Collide, st.integers(min_value=0, max_value=3)),
    st.sampled_from([7 + k * SHARED for k in range(3)]),
)


class S3PolicyAgreement(RuleBasedStateMachine):
    """S3-FIFO's decisions, step by step: both backends and S3Reference on
    keys that recur, compared after every step by entries in order, each
    entry's queue and freq (as a copy keeps them) and the stats."""

    def __init__(self) -> None:
        super().__init__()
        self.subjects: list[Any] = []
        self.expiring = False

    @initialize(maxsize=st.integers(min_value=1, max_value=12), expiry=EXPIRY)
    def make(self, maxsize: int, expiry: dict[str, Any] | None) -> None:
        self.expiring = expiry is not None
        self.subjects = made("S3FIFOCache", maxsize, expiry, subclass=False)

    def agree(self, call: Callable[[Any], Any]) -> None:
        seen = [outcome(s, call) for s in self.subjects]
        assert all(o == seen[0] for o in seen), seen

    @rule(key=policy_keys, value=values)
    def set(self, key: Any, value: int) -> None:
        self.agree(lambda c: c.set(key, value))

    @rule(key=policy_keys)
    def get(self, key: Any) -> None:
        self.agree(lambda c: c.get(key))

    @precondition(lambda self: self.expiring)
    @rule(key=policy_keys, value=values, ttl=st.sampled_from([0.5, 1.0, 3.0]))
    def set_ttl(self, key: Any, value: int, ttl: float) -> None:
        self.agree(lambda c: c.set(key, value, ttl=ttl))

    @precondition(lambda self: self.expiring)
    @rule(seconds=STEPS)
    def advance(self, seconds: float) -> None:
        CLOCK.now += seconds

    @rule(wanted=st.lists(policy_keys, max_size=3))
    def get_many(self, wanted: list[Any]) -> None:
        self.agree(lambda c: c.get_many(wanted))

    @rule(wanted=st.lists(policy_keys, max_size=3), **BAD_GET_MANY)
    def get_many_failing(self, wanted: list[Any], bad: str, at: int) -> None:
        self.agree(lambda c: c.get_many(failing(wanted, bad, at)))

    @rule(key=policy_keys)
    def pop(self, key: Any) -> None:
        self.agree(lambda c: c.pop(key, None))

    @rule(key=policy_keys)
    def contains(self, key: Any) -> None:
        self.agree(lambda c: key in c)

    @rule()
    def copied(self) -> None:
        self.subjects = [
            s.copied() if isinstance(s, Reference) else copy.copy(s) for s in self.subjects
        ]

    @rule()
    def clear(self) -> None:
        # The ghost, the sketch and the warm-up start again.
        self.agree(lambda c: c.clear())

    @invariant()
    def same_entries_policy_and_stats(self) -> None:
        if not self.subjects:
            return
        reference = self.subjects[0]
        want = [(id(k), v) for k, v in reference.items()]
        for cache in self.subjects[1:]:
            assert [(id(k), v) for k, v in cache.items()] == want
            assert cache.__reduce__()[2][4] == reference.policy()
            assert counts(cache) == counts(reference)
            assert expiry_part(cache) == expiry_part(reference)


S3PolicyAgreement.TestCase.settings = settings(stateful_step_count=100)
TestS3PolicyAgreement = S3PolicyAgreement.TestCase


# --- metrics -------------------------------------------------------------------------

numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=0, max_value=1e4),
    st.integers(min_value=-(2**65), max_value=2**65),
    st.sampled_from([True, False, None, "1", 1e-300, -1e-300, -0.0, 5e-324, 2.0**-34, 2.0**22]),
)


def attempt(call: Callable[[], Any]) -> tuple[Any, ...]:
    try:
        result = call()
    except Exception as error:  # compared across backends
        return ("raised", type(error).__name__, str(error))
    return ("ok", result)


def state(h: Any) -> tuple[Any, ...]:
    return (
        h.count,
        h.sum,
        h.min,
        h.max,
        h.buckets(),
        [h.quantile(q) for q in (0.0, 0.01, 0.5, 0.9, 0.999, 1.0)],
    )


@given(steps=st.lists(numbers, max_size=30))
def test_counters_agree(steps: list[Any]) -> None:
    counters = [b.Counter() for b in BACKENDS]
    for n in steps:
        seen = [attempt(lambda c=c, n=n: c.inc(n)) for c in counters]
        assert seen[0] == seen[1], n
        assert counters[0].value == counters[1].value


@given(
    ops=st.lists(
        st.tuples(
            st.sampled_from(["set", "inc", "dec", "inc()", "dec()"]),
            numbers | st.sampled_from([1e308, -1e308, 2**1100]),
        ),
        max_size=30,
    )
)
def test_gauges_agree(ops: list[tuple[str, Any]]) -> None:
    gauges = [b.Gauge() for b in BACKENDS]
    for op, n in ops:
        if op.endswith("()"):
            seen = [attempt(lambda g=g, op=op: getattr(g, op[:-2])()) for g in gauges]
        else:
            seen = [attempt(lambda g=g, op=op, n=n: getattr(g, op)(n)) for g in gauges]
        assert seen[0] == seen[1], (op, n)
        assert gauges[0].value == gauges[1].value
        assert repr(gauges[0]) == repr(gauges[1])


@given(
    buckets=st.none() | st.lists(numbers, max_size=6),
    samples=st.lists(numbers, max_size=40),
    qs=st.lists(numbers, max_size=4),
)
def test_histograms_agree(buckets: list[Any] | None, samples: list[Any], qs: list[Any]) -> None:
    made = [attempt(lambda b=b: b.Histogram(buckets)) for b in BACKENDS]
    assert [m[0] for m in made] == [made[0][0]] * 2
    if made[0][0] == "raised":
        assert made[0] == made[1]
        return
    histograms = [m[1] for m in made]
    assert histograms[0].bounds == histograms[1].bounds
    for value in samples:
        seen = [attempt(lambda h=h, v=value: h.observe(v)) for h in histograms]
        assert seen[0] == seen[1], value
        assert state(histograms[0]) == state(histograms[1])
    for q in qs:
        seen = [attempt(lambda h=h, q=q: h.quantile(q)) for h in histograms]
        assert seen[0] == seen[1], q


def _registry(backend: _backend.Backend) -> Any:
    return type("Registry", (RegistryBase, backend.RegistryCore), {})()


names = st.sampled_from(["req", "req_count", "req_total", "jobs", "a:b", "bad name", "9x", "le"])
label_sets = st.none() | st.dictionaries(
    st.sampled_from(["route", "le", "__x", "bad-label", "code"]),
    st.sampled_from(["/", "a\nb", 'q"uote', "x\\y"]),
    max_size=2,
)


@given(
    calls=st.lists(
        st.tuples(
            st.sampled_from(["counter", "gauge", "histogram", "timer"]),
            names,
            label_sets,
            st.none() | st.lists(st.sampled_from([0.1, 1.0, 5.0]), unique=True, max_size=3),
            st.sampled_from(["", "Help\\ntext.", "plain"]),
            st.floats(min_value=0, max_value=10),
        ),
        max_size=12,
    )
)
def test_registries_agree(calls: list[tuple[str, str, Any, Any, str, float]]) -> None:
    registries = [_registry(b) for b in BACKENDS]
    for call in calls:
        seen = [attempt(lambda r=r, c=call: _use(r, *c)) for r in registries]
        assert seen[0] == seen[1], call
        if seen[0][0] == "raised":
            assert seen[0][1] in {"MetricError", "TypeError"}, seen[0]
    # Timers measure real time: their sums, and which bucket a duration falls
    # in (a block the scheduler interrupts may take milliseconds), differ
    # between runs; everything else must not.
    timed = {call[1] for call in calls if call[0] == "timer"}
    for fmt in ("prometheus", "openmetrics"):
        texts = [_without_times_text(r.export(fmt), timed) for r in registries]
        assert texts == [texts[0]] * 2
    snaps = [_without_times(r.snapshot(), timed) for r in registries]
    assert snaps[0] == snaps[1]


def _use(
    reg: Any, kind: str, name: str, labels: Any, buckets: Any, description: str, amount: float
) -> str:
    kwargs: dict[str, Any] = {"description": description}
    if kind in ("histogram", "timer") and buckets is not None:
        kwargs["buckets"] = sorted(buckets)
    metric = getattr(reg, kind)(name, labels, **kwargs)
    if kind == "counter":
        metric.inc(int(amount))
    elif kind == "gauge":
        metric.dec(amount)
    elif kind == "histogram":
        metric.observe(amount)
    else:
        with metric:
            pass
    return type(metric).__name__


def _without_times_text(text: str, timed: set[str]) -> list[str]:
    """The lines of ``text`` that do not depend on how long anything took."""
    kept = []
    for line in text.splitlines():
        if "_sum" in line:
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name.endswith("_bucket") and name.removesuffix("_bucket") in timed:
            continue
        kept.append(line)
    return kept


def _without_times(rows: list[dict[str, Any]], timed: set[str]) -> list[dict[str, Any]]:
    out = []
    for original in rows:
        row = dict(original)
        for field in ("sum", "min", "max", "quantiles"):
            row.pop(field, None)
        if "buckets" in row:
            if row["name"] in timed:
                row["buckets"] = row["buckets"][-1][1]  # the count, not the spread
            else:
                row["buckets"] = [count for _, count in row["buckets"]]
        out.append(row)
    return out


def test_the_fuzz_meets_every_kind_of_key() -> None:
    """The key strategy covers each hostile shape (a guard against a
    strategy that silently stops producing one)."""
    kinds = set()

    @settings(max_examples=400, database=None)
    @given(key=keys)
    def collect(key: Any) -> None:
        kinds.add(type(key).__name__)

    collect()
    assert {
        "Collide",
        "EqBoom",
        "HashBoom",
        "Rehash",
        "Noisy",
        "Text",
        "bytes",
        "list",
        "Small",
        "Word",
        "Meters",
        "Pair",
        "Decimal",
        "Same",
    } <= kinds


@pytest.mark.parametrize("kind", KINDS)
def test_a_copy_is_of_the_entries_it_began_with(kind: str) -> None:
    """A key whose ``__eq__`` writes to the original while the copy is
    filled changes the original, never the copy, in the same way in every
    implementation (the state machine's find, kept as an example)."""
    after = []
    try:
        for subject in [REFERENCES[kind](3), *(getattr(b, kind)(3) for b in BACKENDS)]:
            Noisy.current = subject
            subject.set_many([(Noisy(0), 0), (Noisy(1), 0), (0, 0)])
            began = [(id(k), v) for k, v in subject.items()]
            clone = subject.copied() if isinstance(subject, Reference) else copy.copy(subject)
            assert [(id(k), v) for k, v in clone.items()] == began
            after.append([(repr(k), v) for k, v in subject.items()])
    finally:
        Noisy.current = None
    assert ("'noise'", 0) in after[0]  # the original was written to meanwhile
    assert all(each == after[0] for each in after), after


def test_metric_errors_name_the_problem() -> None:
    for backend in BACKENDS:
        reg = _registry(backend)
        with pytest.raises(MetricError, match="breaks Prometheus"):
            reg.counter("bad name")
    assert math.isnan(NAN)


# Exact binary fractions of a large number: their shortest decimal forms
# are often two equally near ones (70368744177664.625: .62 or .63), which
# Python settles on the even digit.
_TIES = st.builds(math.ldexp, st.integers(1, 2**53), st.integers(-30, 20))


@example(values=[1e16, 1e15, 1e-4, 1e-5, -0.0, 0.1, 123.0, 1.5e-7, 2.5e300, -1e-320])
@example(values=[70368744177664.625, -70368744177664.625, 0.0, 5e-324, 1.7976931348623157e308])
@given(
    values=st.lists(
        st.floats(allow_nan=False, allow_infinity=False) | _TIES, min_size=1, max_size=20
    )
)
def test_every_backend_writes_a_float_as_python_does(values: list[float]) -> None:
    # The native renderer formats floats in Rust: byte for byte what
    # exposition.number (repr, +Inf/-Inf) writes, for any finite float.
    for backend in BACKENDS:
        registry = _registry(backend)
        for i, value in enumerate(values):
            registry.gauge("level", {"i": str(i)}).set(value)
            registry.histogram("spent_seconds", {"i": str(i)}).observe(abs(value))
        text = registry.to_prometheus()
        for i, value in enumerate(values):
            assert f'level{{i="{i}"}} {number(value)}\n' in text, (backend.name, value)
            total = registry.histogram("spent_seconds", {"i": str(i)}).sum
            assert f'spent_seconds_sum{{i="{i}"}} {number(total)}\n' in text, backend.name


class _Refused(Exception):
    """Raised by a series' label text maker below."""


@pytest.mark.parametrize("encoded", [True, False], ids=["bytes", "str"])
@pytest.mark.parametrize("before", [3, 3000], ids=["few", "past-a-flush"])
def test_a_sample_writer_appends_to_the_body_or_leaves_it_as_it_was(
    before: int, encoded: bool
) -> None:
    # Each backend's writer appends a family's lines (bytes to send, or a
    # str) to the parts of a body; a failure part-way (here making the label
    # text of series ``before``) leaves the parts as they were, even after the
    # native one has handed over bytes it buffered (over 64 KiB of them).
    head = "# TYPE jobs_total counter\n"
    bodies = []
    for backend in BACKENDS:
        registry = _registry(backend)
        for i in range(before + 1):
            registry.counter("jobs_total", {"job": f"{i:05d}" + "x" * 20}).inc(i)
        ((_, children),) = registry.collect()

        def make(values: tuple[str, ...]) -> tuple[str, ...]:
            if values[0].startswith(f"{before:05d}"):
                raise _Refused(values[0])
            return (f'jobs_total{{job="{values[0]}"}} ',)

        out: list[Any] = [head.encode() if encoded else head]
        with pytest.raises(_Refused):
            registry._samples("counter", children.items(), {}, make, out, encoded)
        assert out == [head.encode() if encoded else head], backend.name
        lines: dict[Any, Any] = {}
        del children[max(children)]
        registry._samples("counter", children.items(), lines, make, out, encoded)
        assert {type(part) for part in out} == {bytes if encoded else str}, backend.name
        bodies.append(b"".join(out).decode() if encoded else "".join(out))
        assert len(lines) == before
    assert bodies[0] == bodies[1]
    assert bodies[0].count("\n") == before + 1
    assert bodies[0].endswith(f'jobs_total{{job="{before - 1:05d}{"x" * 20}"}} {before - 1}\n')
