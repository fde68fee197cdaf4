"""FIFOCache behaviour, run against both backends through the ``backend`` fixture."""

from __future__ import annotations

import collections
import contextlib
import copy
import decimal
import enum
import gc
import pickle
import subprocess
import sys
import threading
import time
import types
import weakref
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import pytest

from pepperpy_core import _backend as _backend_module
from pepperpy_core._backend import Backend


def snapshot(cache: Any) -> tuple[list[Any], Any, int]:
    """Everything observable about a cache: items in order, stats, length."""
    return cache.items(), cache.stats(), len(cache)


def stats_tuple(cache: Any) -> tuple[int, int, int, int]:
    s = cache.stats()
    return (s.hits, s.misses, s.inserts, s.evictions)


#: The cache classes held to one contract (each on every backend); what
#: depends on the eviction policy is asserted per class (``per_kind``).
KINDS = ("FIFOCache", "S3FIFOCache")


@pytest.fixture(params=KINDS)
def cache_class(backend: Backend, request: pytest.FixtureRequest) -> Any:
    """Each cache class of the backend in turn."""
    return getattr(backend, request.param)


def kind_of(cache: Any) -> str:
    """Which of KINDS ``cache`` (a cache or a class) is or derives from."""
    cls = cache if isinstance(cache, type) else type(cache)
    return next(k.__name__ for k in cls.__mro__ if k.__name__ in KINDS)


def per_kind(cache: Any, **expected: Any) -> Any:
    """What ``expected`` says for the kind of ``cache`` (FIFOCache=...,
    S3FIFOCache=...)."""
    return expected[kind_of(cache)]


def changed_message(cache: Any) -> str:
    """What a cache of this kind says when a key's __eq__ keeps changing it."""
    says = getattr(_backend_module.load("python"), kind_of(cache))._says
    return str(says.changed)


# --- the FIFO contract -------------------------------------------------------


def test_new_key_at_maxsize_evicts_the_oldest(backend: Backend) -> None:
    cache = backend.FIFOCache(3)
    for key in "abcd":
        cache[key] = key.upper()
    assert cache.keys() == ["b", "c", "d"]
    assert cache.values() == ["B", "C", "D"]
    assert "a" not in cache
    assert len(cache) == 3
    assert stats_tuple(cache) == (0, 0, 4, 1)


def test_overwrite_keeps_position_and_does_not_evict(backend: Backend) -> None:
    cache = backend.FIFOCache(3)
    cache.set_many([("a", 1), ("b", 2), ("c", 3)])
    cache["a"] = 10
    assert cache.items() == [("a", 10), ("b", 2), ("c", 3)]
    cache["d"] = 4
    assert cache.items() == [("b", 2), ("c", 3), ("d", 4)]
    assert stats_tuple(cache) == (0, 0, 4, 1)


def test_reads_do_not_reorder(backend: Backend) -> None:
    cache = backend.FIFOCache(2)
    cache["a"] = 1
    cache["b"] = 2
    assert cache.get("a") == 1
    assert cache["a"] == 1
    assert "a" in cache
    cache["c"] = 3
    assert cache.keys() == ["b", "c"]


def test_get_default_and_getitem_keyerror(cache_class: Any) -> None:
    cache = cache_class(2)
    cache["a"] = 1
    assert cache.get("missing") is None
    assert cache.get("missing", 7) == 7
    with pytest.raises(KeyError) as info:
        cache["missing"]
    assert info.value.args == ("missing",)
    assert cache.get("a", 7) == 1
    assert stats_tuple(cache) == (1, 3, 1, 0)


def test_stored_none_is_a_hit(cache_class: Any) -> None:
    cache = cache_class(2)
    cache["a"] = None
    assert cache.get("a", 5) is None
    assert cache.stats().hits == 1


def test_pop_and_delitem(cache_class: Any) -> None:
    cache = cache_class(3)
    cache.set_many({"a": 1, "b": 2, "c": 3})
    assert cache.pop("b") == 2
    assert cache.pop("b", "gone") == "gone"
    assert cache.pop("b", None) is None
    with pytest.raises(KeyError):
        cache.pop("b")
    del cache["a"]
    with pytest.raises(KeyError):
        del cache["a"]
    assert cache.items() == [("c", 3)]
    with pytest.raises(TypeError):
        cache.pop("c", 1, 2)
    assert cache.items() == [("c", 3)]


def test_popped_slot_is_reused_in_order(backend: Backend) -> None:
    cache = backend.FIFOCache(3)
    cache.set_many([(1, 1), (2, 2), (3, 3)])
    cache.pop(2)
    cache[4] = 4
    cache[5] = 5
    assert cache.keys() == [3, 4, 5]


def test_clear_keeps_stats_and_maxsize(cache_class: Any) -> None:
    cache = cache_class(2)
    cache.set_many([(1, 1), (2, 2), (3, 3)])
    cache.get(3)
    before = cache.stats()
    cache.clear()
    assert len(cache) == 0
    assert cache.items() == []
    assert cache.stats() == before
    assert cache.maxsize == 2
    cache[9] = 9
    assert cache.items() == [(9, 9)]


def test_iteration_is_a_snapshot_of_keys(cache_class: Any) -> None:
    cache = cache_class(5)
    cache.set_many([(1, "a"), (2, "b")])
    seen = []
    for key in cache:
        seen.append(key)
        cache[key + 10] = "new"
    assert seen == [1, 2]
    assert list(cache) == [1, 2, 11, 12]


def test_get_many_and_set_many(backend: Backend) -> None:
    cache = backend.FIFOCache(4)
    cache.set_many(iter([("a", 1), ["b", 2]]))
    cache.set_many({"c": 3})
    assert cache.get_many(["a", "x", "c", "a"]) == {"a": 1, "c": 3}
    assert stats_tuple(cache) == (3, 1, 3, 0)
    cache.set_many([(k, k) for k in range(10)])
    assert cache.keys() == [6, 7, 8, 9]
    assert cache.get_many([]) == {}


def test_set_many_refuses_bad_pairs_before_changing_anything(cache_class: Any) -> None:
    cache = cache_class(4)
    cache["a"] = 1
    before = snapshot(cache)
    with pytest.raises(ValueError, match="pairs"):
        cache.set_many([("b", 2), ("c", 3, 4)])
    with pytest.raises(TypeError):
        cache.set_many([("b", 2), 5])
    with pytest.raises(TypeError):
        cache.set_many([("b", 2), ([], 3)])
    assert snapshot(cache) == before


def test_stats_record(backend: Backend) -> None:
    stats = backend.CacheStats(hits=1, misses=2, inserts=3, evictions=4)
    assert (stats.hits, stats.misses, stats.inserts, stats.evictions) == (1, 2, 3, 4)
    assert stats.expirations == 0  # a keyword with a default: older constructions still work
    assert stats == backend.CacheStats(hits=1, misses=2, inserts=3, evictions=4, expirations=0)
    assert stats != backend.CacheStats(hits=0, misses=2, inserts=3, evictions=4)
    assert stats != backend.CacheStats(hits=1, misses=2, inserts=3, evictions=4, expirations=5)
    assert hash(stats) == hash(backend.CacheStats(hits=1, misses=2, inserts=3, evictions=4))
    assert repr(stats) == "CacheStats(hits=1, misses=2, inserts=3, evictions=4, expirations=0)"
    expired = backend.CacheStats(hits=1, misses=2, inserts=3, evictions=4, expirations=5)
    assert expired.expirations == 5
    assert repr(expired).endswith(", expirations=5)")
    with pytest.raises(AttributeError):
        stats.hits = 5  # type: ignore[misc]
    with pytest.raises(TypeError):
        backend.CacheStats(1, 2, 3, 4)


def test_repr_and_maxsize(cache_class: Any) -> None:
    cache = cache_class(10)
    cache["a"] = 1
    assert repr(cache) == f"{kind_of(cache)}(maxsize=10, len=1)"
    assert cache.maxsize == 10


def test_generic_at_runtime(cache_class: Any) -> None:
    alias = cache_class[str, int]
    cache = alias(2)
    assert isinstance(cache, cache_class)
    cache["a"] = 1
    assert cache["a"] == 1


def test_keys_compare_as_in_a_dict(cache_class: Any) -> None:
    cache = cache_class(4)
    cache[1] = "int"
    assert cache[1.0] == "int"
    assert cache[True] == "int"
    cache[1.0] = "float"
    assert cache.items() == [(1, "float")]
    fresh = "".join(["ke", "y"])
    cache["key"] = "v"
    assert cache[fresh] == "v"
    nan = float("nan")
    cache[nan] = "nan"
    assert cache[nan] == "nan"  # found by identity, as in a dict
    other_nan = float("-nan")
    assert other_nan not in cache  # another NaN object is equal to nothing
    cache[(1, "a")] = "tuple"
    assert cache[(1, "a")] == "tuple"


def test_large_cache_does_not_preallocate(cache_class: Any) -> None:
    cache = cache_class(2**32 - 2)
    cache["a"] = 1
    assert len(cache) == 1


def test_unreferenced_cache_with_a_cycle_is_collected(cache_class: Any) -> None:
    class Holder:
        pass

    cache = cache_class(2)
    holder = Holder()
    cache["self"] = cache
    cache["holder"] = holder
    ref = weakref.ref(holder)
    del cache, holder
    gc.collect()
    assert ref() is None


# --- bad input ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("maxsize", "error", "message"),
    [
        (0, ValueError, "at least 1, got 0"),
        (-5, ValueError, "at least 1, got -5"),
        (2**32 - 1, ValueError, "at most"),
        (2**70, ValueError, "at most"),
        (1.5, TypeError, "must be an int, not float"),
        (10.0, TypeError, "must be an int, not float"),
        ("10", TypeError, "must be an int, not str"),
        (None, TypeError, "must be an int, not NoneType"),
        (True, TypeError, "must be an int, not bool"),
    ],
)
def test_bad_maxsize_is_refused(
    cache_class: Any, maxsize: object, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        cache_class(maxsize)


def test_maxsize_is_required(cache_class: Any) -> None:
    with pytest.raises(TypeError):
        cache_class()


@pytest.mark.parametrize("key", [[], {}, {1}, ([],)])
def test_unhashable_key_is_a_typeerror_and_changes_nothing(cache_class: Any, key: Any) -> None:
    cache = cache_class(3)
    cache.set_many([("a", 1), ("b", 2)])
    cache.get("a")
    before = snapshot(cache)
    for call in (
        lambda: cache.get(key),
        lambda: cache[key],
        lambda: cache.set(key, 1),
        lambda: cache.__setitem__(key, 1),
        lambda: key in cache,
        lambda: cache.pop(key),
        lambda: cache.pop(key, None),
        lambda: cache.__delitem__(key),
        lambda: cache.get_many(["a", key]),
        lambda: cache.set_many([("c", 3), (key, 1)]),
    ):
        with pytest.raises(TypeError, match="unhashable"):
            call()
        assert snapshot(cache) == before


class HashBoom:
    def __hash__(self) -> int:
        raise ArithmeticError("hash boom")


class EqBoom:
    """Equal hashes, and an ``__eq__`` that raises: every lookup that meets
    another instance fails."""

    def __hash__(self) -> int:
        return 42

    def __eq__(self, other: object) -> bool:
        raise LookupError("eq boom")


def test_key_whose_hash_raises(cache_class: Any) -> None:
    cache = cache_class(2)
    cache.set_many([("a", 1), ("b", 2)])
    before = snapshot(cache)
    for call in (
        lambda: cache.get(HashBoom()),
        lambda: cache.set(HashBoom(), 1),
        lambda: HashBoom() in cache,
        lambda: cache.pop(HashBoom(), None),
        lambda: cache.get_many(["a", HashBoom()]),
        lambda: cache.set_many([("c", 3), (HashBoom(), 1)]),
    ):
        with pytest.raises(ArithmeticError, match="hash boom"):
            call()
        assert snapshot(cache) == before


def test_key_whose_eq_raises(cache_class: Any) -> None:
    cache = cache_class(2)
    stored = EqBoom()
    cache[stored] = "first"
    cache["b"] = 2
    before = snapshot(cache)
    for call in (
        lambda: cache.get(EqBoom()),
        lambda: cache[EqBoom()],
        lambda: cache.set(EqBoom(), 1),
        lambda: EqBoom() in cache,
        lambda: cache.pop(EqBoom(), None),
        lambda: cache.get_many(["b", EqBoom()]),
    ):
        with pytest.raises(LookupError, match="eq boom"):
            call()
        assert snapshot(cache) == before
    # The very object stored is found by identity, without calling __eq__.
    assert cache[stored] == "first"


@pytest.mark.parametrize(
    ("pairs", "stored"),
    [
        ([("b", 2), (EqBoom(), 3)], True),
        ([("b", 2), ("a", 5), (42, 3)], True),  # a plain key: the stored key's __eq__ runs
        ([("b", 2), ("c", 3), (EqBoom(), 3), ("d", 4)], True),
        ([("b", 2), (EqBoom(), 3), (EqBoom(), 4)], False),  # against each other
    ],
    ids=["stored", "plain key", "middle", "each other"],
)
@pytest.mark.parametrize("ttl", [None, 60])
def test_set_many_compares_every_key_before_writing(
    cache_class: Any, pairs: list[tuple[Any, Any]], stored: bool, ttl: int | None
) -> None:
    """A key whose comparison raises, with a stored key or with another key
    given, fails the set_many before any pair is written."""
    cache = cache_class(4)
    cache["a"] = 1
    if stored:
        cache[EqBoom()] = "stored"
    before = snapshot(cache)
    with pytest.raises(LookupError, match="eq boom"):
        cache.set_many(pairs, ttl=ttl)
    assert snapshot(cache) == before


# --- get_many: a bad input uses nothing; a use whose entry left is nothing ----


class _Clock:
    """A clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class _Meddles:
    """A stored key whose ``__eq__`` runs ``act`` once (when armed), then
    is equal only to itself."""

    def __init__(self) -> None:
        self.act: Any = None

    def __hash__(self) -> int:
        return 99

    def __eq__(self, other: object) -> bool:
        act, self.act = self.act, None
        if act is not None:
            act()
        return self is other


#: What _filled stores: str keys, then a stored EqBoom and a _Meddles
#: (shared by every cache made, so that two caches' items compare equal).
_FILL = [f"k{n}" for n in range(6)]
_EQBOOM = EqBoom()
_MEDDLES = _Meddles()
#: A get_many's good keys: five hits and a miss.
_WANTED = ["k1", "absent", "k3", "k5", "k0", "k4"]


def _filled(cache_class: Any, tti: bool, clock: _Clock) -> Any:
    """A full cache (maxsize 8), written at time 0; with ``tti``, entries
    idle for 10 seconds expire."""
    clock.now = 0.0
    cache = cache_class(8, tti=10, clock=clock) if tti else cache_class(8)
    for n, key in enumerate(_FILL):
        cache[key] = n
    cache[_EQBOOM] = "eq"
    cache[_MEDDLES] = "meddles"
    return cache


def _future(cache: Any, clock: _Clock) -> list[Any]:
    """What the state of ``cache`` decides from time 6 on: its copy state
    (entries in order; S3-FIFO: each one's queue and freq; each one's time
    left), its stats but the hits and misses, which entries outlive an
    idle time of 12 seconds, and which survive each of a run of inserts."""
    clock.now = 6.0
    stats = cache.stats()
    seen: list[Any] = [
        cache.__reduce__()[2],
        (stats.inserts, stats.evictions, stats.expirations),
    ]
    clock.now = 12.0
    seen.append(cache.keys())
    for n in range(12):
        cache[f"new{n}"] = n
        seen.append(cache.keys())
    stats = cache.stats()
    seen.append((stats.inserts, stats.evictions, stats.expirations))
    return seen


def _hits_and_misses(cache: Any) -> tuple[int, int]:
    stats = cache.stats()
    return stats.hits, stats.misses


def _raising_iterator(keys: list[Any]) -> Iterator[Any]:
    yield from keys
    raise RuntimeError("iterator boom")


#: Bad inputs to get_many with the good keys before position ``k`` ahead of
#: the bad one, and the error each raises.
_BAD_GET_MANY: dict[str, tuple[Any, type[Exception], str]] = {
    "hash raises": (
        lambda k: [*_WANTED[:k], HashBoom(), *_WANTED[k:]],
        ArithmeticError,
        "hash boom",
    ),
    "unhashable": (lambda k: [*_WANTED[:k], [], *_WANTED[k:]], TypeError, "unhashable"),
    "eq raises": (lambda k: [*_WANTED[:k], EqBoom(), *_WANTED[k:]], LookupError, "eq boom"),
    "iterator raises": (
        lambda k: _raising_iterator(_WANTED[:k]),
        RuntimeError,
        "iterator boom",
    ),
}


@pytest.mark.parametrize("tti", [False, True], ids=["no-expiry", "tti"])
@pytest.mark.parametrize("bad", list(_BAD_GET_MANY))
def test_get_many_that_fails_uses_nothing(cache_class: Any, tti: bool, bad: str) -> None:
    """Whichever key fails, the keys before it were not used: no freq moved
    (S3-FIFO's evictions), no idle deadline moved (tti), nothing counted;
    the cache's whole future is that of a twin never read."""
    make, error, message = _BAD_GET_MANY[bad]
    clock = _Clock()
    expected = _future(_filled(cache_class, tti, clock), clock)
    for k in range(len(_WANTED) + 1):
        cache = _filled(cache_class, tti, clock)
        clock.now = 4.0
        with pytest.raises(error, match=message):
            cache.get_many(make(k))
        assert _hits_and_misses(cache) == (0, 0), k
        assert _future(cache, clock) == expected, k
    # The same keys, good: each hit is a use that this comparison sees.
    cache = _filled(cache_class, tti, clock)
    clock.now = 4.0
    assert cache.get_many(_WANTED) == {k: int(k[1]) for k in _WANTED if k != "absent"}
    if tti or kind_of(cache) == "S3FIFOCache":
        assert _future(cache, clock) != expected


def _pop_and_write_again(cache: Any) -> None:
    cache["k1"] = cache.pop("k1")  # the same key and value objects, likely the same slot


def _another_key_in_its_place(cache: Any) -> None:
    del cache["k1"]
    cache["other"] = "other"


def _overwrite(cache: Any) -> None:
    cache["k1"] = "new"


def _clear_and_fill_again(cache: Any) -> None:
    cache.clear()
    for n, key in enumerate(_FILL):
        cache[key] = n
    cache[_EQBOOM] = "eq"
    cache[_MEDDLES] = "meddles"


#: What a key's __eq__ does to the cache in the middle of a get_many (at
#: time 6, the get_many's clock read at 4), and which of the keys read
#: before (k1, k3) are still the entries read then.
_MEDDLING: dict[str, tuple[Any, list[str]]] = {
    "k1 popped and written again": (_pop_and_write_again, ["k3"]),
    "k1 gone, another key written": (_another_key_in_its_place, ["k3"]),
    "k1 overwritten": (_overwrite, ["k1", "k3"]),
    "cleared and filled again": (_clear_and_fill_again, []),
}


@pytest.mark.parametrize("tti", [False, True], ids=["no-expiry", "tti"])
@pytest.mark.parametrize("meddling", list(_MEDDLING))
def test_get_many_drops_the_use_of_an_entry_that_left_meanwhile(
    cache_class: Any, tti: bool, meddling: str
) -> None:
    """A key's __eq__ that removes or rewrites an entry get_many found
    earlier: that use is nothing, never a use of whatever took its place;
    a write since moves the idle deadline, the read does not move it back."""
    act, still = _MEDDLING[meddling]
    clock = _Clock()
    twin = _filled(cache_class, tti, clock)
    clock.now = 4.0
    twin.get_many([key for key in still if key != "k1"])
    clock.now = 6.0
    act(twin)
    if "k1" in still:
        twin.get("k1")  # at 6: the write's own idle deadline
    cache = _filled(cache_class, tti, clock)

    def meddle() -> None:
        clock.now = 6.0
        act(cache)

    _MEDDLES.act = meddle
    clock.now = 4.0
    try:
        assert cache.get_many(["k1", "k3", _Meddles()]) == {"k1": 1, "k3": 3}
        assert _MEDDLES.act is None  # it ran
    finally:
        _MEDDLES.act = None
    assert _hits_and_misses(cache) == (2, 1)
    assert _future(cache, clock) == _future(twin, clock)


@dataclass(frozen=True)
class Collider:
    """Distinct values that all hash alike."""

    n: int

    def __hash__(self) -> int:
        return 7


def test_many_keys_with_one_hash(backend: Backend) -> None:
    cache = backend.FIFOCache(50)
    for n in range(80):
        cache[Collider(n)] = n
    assert len(cache) == 50
    assert [k.n for k in cache] == list(range(30, 80))
    for n in range(30, 80):
        assert cache[Collider(n)] == n
    assert Collider(5) not in cache
    assert cache.pop(Collider(40)) == 40
    cache[Collider(40)] = "back"
    assert cache.keys()[-1] == Collider(40)
    assert len(set(cache.keys())) == len(cache)


# --- hostile keys and values: re-entrancy ------------------------------------


class ReadsCache:
    """A key whose ``__eq__`` reads the cache it is stored in."""

    cache: Any = None

    def __init__(self, n: int) -> None:
        self.n = n

    def __hash__(self) -> int:
        return 99

    def __eq__(self, other: object) -> bool:
        assert self.cache is not None
        self.cache.get("other")
        _ = "other" in self.cache
        return isinstance(other, ReadsCache) and other.n == self.n


def test_key_eq_that_reads_the_cache_gets_the_right_answer(cache_class: Any) -> None:
    cache = cache_class(4)
    ReadsCache.cache = cache
    cache["other"] = 0
    cache[ReadsCache(1)] = "one"
    cache[ReadsCache(2)] = "two"
    assert cache[ReadsCache(1)] == "one"
    assert cache[ReadsCache(2)] == "two"
    assert cache.get(ReadsCache(3)) is None
    cache[ReadsCache(1)] = "uno"
    assert [v for _, v in cache.items()] == [0, "uno", "two"]


class WritesCache:
    """A key whose ``__eq__`` inserts a fresh key into the cache each time,
    so every comparison evicts something."""

    cache: Any = None

    def __init__(self, n: int) -> None:
        self.n = n

    def __hash__(self) -> int:
        return 5

    def __eq__(self, other: object) -> bool:
        assert self.cache is not None
        self.cache[object()] = "noise"
        return isinstance(other, WritesCache) and other.n == self.n


def test_key_eq_that_writes_the_cache_never_corrupts_it(cache_class: Any) -> None:
    cache = cache_class(8)
    WritesCache.cache = cache

    def consistent() -> None:
        assert len(cache) <= 8
        keys = cache.keys()
        assert len({id(k) for k in keys}) == len(keys) == len(cache)

    for n in range(6):
        # A clear refusal (RecursionError is one) is allowed; a hang, a crash
        # or a corrupt cache is not.
        with contextlib.suppress(RuntimeError):
            cache[WritesCache(n)] = n
        consistent()
    for n in range(8):
        try:
            got = cache.get(WritesCache(n))
        except RuntimeError:
            pass
        else:
            # Found while present, or missed because the noise evicted it.
            assert got in (n, None)
            assert n < 6 or got is None
        consistent()


class ClearsCache:
    """A key whose ``__eq__`` empties the cache."""

    cache: Any = None

    def __hash__(self) -> int:
        return 3

    def __eq__(self, other: object) -> bool:
        assert self.cache is not None
        self.cache.clear()
        return False


def test_key_eq_that_clears_the_cache(cache_class: Any) -> None:
    cache = cache_class(4)
    ClearsCache.cache = cache
    cache[ClearsCache()] = 1
    cache["x"] = 2
    with contextlib.suppress(RuntimeError):
        cache[ClearsCache()] = 3
    assert len(cache) <= 4
    items = cache.items()
    assert [cache[k] for k, _ in items] == [v for _, v in items]


class TouchesCacheOnDel:
    """A value whose finalizer reads and writes the cache that held it."""

    def __init__(self, cache: Any, log: list[str], name: str) -> None:
        self.cache = cache
        self.log = log
        self.name = name

    def __del__(self) -> None:
        self.log.append(self.name)
        self.cache.get("probe")
        self.cache[f"from-del-{self.name}"] = len(self.cache)


def test_value_del_that_touches_the_cache_on_eviction(cache_class: Any) -> None:
    cache = cache_class(3)
    log: list[str] = []
    cache["a"] = TouchesCacheOnDel(cache, log, "a")
    cache["b"] = 1
    cache["c"] = 2
    cache["d"] = 3  # evicts "a"; its __del__ inserts a key, evicting another
    assert log == ["a"]
    assert len(cache) == 3
    # S3-FIFO: "a" is small's, "b" and "c" main's (warm-up); "d" evicts "a"
    # from small, and the key from __del__ evicts "d", small's again.
    assert cache.keys() == per_kind(
        cache, FIFOCache=["c", "d", "from-del-a"], S3FIFOCache=["from-del-a", "b", "c"]
    )


def test_value_del_that_touches_the_cache_on_overwrite_pop_and_clear(
    cache_class: Any,
) -> None:
    cache = cache_class(10)
    log: list[str] = []
    cache["a"] = TouchesCacheOnDel(cache, log, "a")
    cache["a"] = "replaced"
    assert log == ["a"]
    cache["b"] = TouchesCacheOnDel(cache, log, "b")
    del cache["b"]
    assert log == ["a", "b"]
    cache["c"] = TouchesCacheOnDel(cache, log, "c")
    cache.clear()
    assert log == ["a", "b", "c"]
    assert cache.keys() == ["from-del-c"]


class _Gone:
    """A key with no __eq__ of its own, sharing a hash with _Pops."""

    def __hash__(self) -> int:
        return 5


class _Pops:
    """A probe whose __eq__ pops the stored key it is compared with."""

    cache: Any = None

    def __hash__(self) -> int:
        return 5

    def __eq__(self, other: object) -> bool:
        self.cache.pop(other, None)
        return False


@pytest.mark.parametrize(
    "use",
    [
        lambda c: c.get(_Pops()),
        lambda c: _Pops() in c,
        lambda c: c.__setitem__(_Pops(), 1),
        lambda c: c.pop(_Pops(), None),
        lambda c: c.get_many([_Pops()]),
    ],
    ids=["get", "in", "[]=", "pop", "get_many"],
)
def test_a_key_that_leaves_during_a_lookup_is_freed_when_it_returns(
    cache_class: Any, use: Any
) -> None:
    """The references a lookup took to compare keys go when it returns, not
    at some later call: the stored key popped by the probe's __eq__ is freed
    (and its finalizer run) by then."""
    cache = cache_class(4)
    _Pops.cache = cache
    stored = _Gone()
    freed = weakref.ref(stored)
    cache[stored] = "stored"
    del stored
    use(cache)
    assert freed() is None
    assert len(cache) <= 1


# --- threads -----------------------------------------------------------------


@dataclass(frozen=True)
class FrozenKey:
    """A key whose ``__eq__`` and ``__hash__`` are Python code, so the GIL can
    move to another thread in the middle of a cache operation."""

    a: int
    b: str


def _hammer(cache: Any, make_key: Any, seconds: float, threads: int = 8) -> None:
    maxsize = cache.maxsize
    stop = time.monotonic() + seconds
    reads = [0] * threads
    errors: list[BaseException] = []
    too_big: list[int] = []

    def work(t: int) -> None:
        n = t * 7919
        try:
            while time.monotonic() < stop:
                for _ in range(200):
                    n = (n * 1103515245 + 12345) % 2**31
                    key = make_key(n % 300)
                    op = n % 10
                    if op < 5:
                        cache.get(key)
                        reads[t] += 1
                    elif op < 8:
                        cache[key] = n
                    elif op == 8:
                        cache.pop(key, None)
                    else:
                        got = cache.get_many([key, make_key((n + 1) % 300)])
                        reads[t] += 2
                        assert len(got) <= 2
                    size = len(cache)
                    if size > maxsize:
                        too_big.append(size)
        except BaseException as exc:  # reported below, in the main thread
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=seconds + 60)
    assert not any(w.is_alive() for w in workers), "a worker thread hung"
    assert errors == []
    assert too_big == []
    stats = cache.stats()
    assert stats.hits + stats.misses == sum(reads)
    assert len(cache) <= maxsize
    keys = cache.keys()
    assert len(set(keys)) == len(keys)
    assert stats.inserts - stats.evictions >= len(cache)


def test_threads_with_int_keys(cache_class: Any) -> None:
    _hammer(cache_class(64), lambda n: n, seconds=2.0)


def test_threads_with_frozen_dataclass_keys(cache_class: Any) -> None:
    _hammer(cache_class(64), lambda n: FrozenKey(n, "k"), seconds=2.0)


# --- the backend-contract regressions ----------------------------------------


class _ReadOnlyMapping(Mapping[str, int]):
    """A Mapping that is no dict and whose iteration order is its own."""

    def __init__(self, pairs: list[tuple[str, int]]) -> None:
        self._pairs = pairs

    def __getitem__(self, key: str) -> int:
        return dict(self._pairs)[key]

    def __iter__(self) -> Iterator[str]:
        return iter([k for k, _ in self._pairs])

    def __len__(self) -> int:
        return len(self._pairs)


@pytest.mark.parametrize(
    "make",
    [
        lambda: types.MappingProxyType({"ab": 1, "cd": 2}),
        lambda: collections.UserDict({"ab": 1, "cd": 2}),
        lambda: _ReadOnlyMapping([("ab", 1), ("cd", 2)]),
    ],
    ids=["mappingproxy", "userdict", "abc-mapping"],
)
def test_set_many_takes_any_mapping_through_its_items(cache_class: Any, make: Any) -> None:
    cache = cache_class(4)
    cache.set_many(make())
    assert cache.items() == [("ab", 1), ("cd", 2)]


def test_set_many_follows_a_mappings_own_order(cache_class: Any) -> None:
    ordered = collections.OrderedDict([("a", 1), ("b", 2), ("c", 3)])
    ordered.move_to_end("a")
    cache = cache_class(4)
    cache.set_many(ordered)
    assert cache.keys() == ["b", "c", "a"]


def test_set_many_of_a_dict_that_a_key_hash_mutates(cache_class: Any) -> None:
    source: dict[Any, int] = {}

    class Grows:
        def __hash__(self) -> int:
            source[object()] = 0  # changes the dict being read
            return 5

    source[Grows.__new__(Grows)] = 1
    source["x"] = 2
    cache = cache_class(4)
    cache["a"] = 0
    before = snapshot(cache)
    with pytest.raises(RuntimeError, match="changed size during iteration"):
        cache.set_many(source)
    assert snapshot(cache) == before


def _set_or_refusal(cache: Any, key: Any, value: Any) -> str:
    """ "set", or the message of the RuntimeError the set raised."""
    try:
        cache[key] = value
    except RuntimeError as error:
        return str(error)
    return "set"


class _CountsEq:
    """Keys that all share one hash and count the comparisons they take part in."""

    calls = 0

    def __init__(self, n: int) -> None:
        self.n = n

    def __hash__(self) -> int:
        return 12345

    def __eq__(self, other: object) -> bool:
        _CountsEq.calls += 1
        return isinstance(other, _CountsEq) and other.n == self.n


def test_any_number_of_keys_with_one_hash(cache_class: Any) -> None:
    # 10,000 ints that share a hash (hash(n) is n mod 2**61 - 1).
    step = 2**61 - 1
    cache = cache_class(20_000)
    keys = [7 + i * step for i in range(10_000)]
    for i, key in enumerate(keys):
        cache[key] = i
    assert len(cache) == 10_000
    assert {hash(k) for k in keys} == {7}
    for i in (0, 1, 4_999, 9_999):
        assert cache[keys[i]] == i
    assert cache.get(7 + 10_000 * step) is None


def test_a_lookup_compares_each_colliding_key_at_most_once(cache_class: Any) -> None:
    cache = cache_class(2_000)
    stored = [_CountsEq(n) for n in range(1_000)]
    for key in stored:
        cache[key] = key.n
    for probe in (0, 500, 999, 5_000):
        _CountsEq.calls = 0
        got = cache.get(_CountsEq(probe))
        assert got == (probe if probe < 1_000 else None)
        # As a dict: one comparison per colliding key at most, never a retry.
        assert _CountsEq.calls <= len(stored)


_BYTES_WARNING = """
import threading
from pepperpy_core import _backend
cache = getattr(_backend.load({name!r}), {kind!r})(8)
cache[b"abc"] = 1
try:
    cache["abc"] = 2  # the same hash as b"abc": comparing them warns
except BytesWarning as warning:
    print("raised:", warning)
print("items:", cache.items())
sizes = []
thread = threading.Thread(target=lambda: sizes.append(len(cache)))
thread.start()
thread.join()
print("len from another thread:", sizes)
"""


@pytest.mark.parametrize("flag", ["-b", "-bb"])
def test_bytes_against_str_under_bytes_warnings(
    backend: Backend, cache_class: Any, flag: str
) -> None:
    out = subprocess.run(
        [
            sys.executable,
            flag,
            "-c",
            _BYTES_WARNING.format(name=backend.name, kind=kind_of(cache_class)),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "Panic" not in out.stderr
    if flag == "-bb":  # the warning is an error: it reaches the caller, nothing changes
        assert "raised: Comparison between bytes and string" in out.stdout
        assert "items: [(b'abc', 1)]" in out.stdout
        assert "len from another thread: [1]" in out.stdout
    else:  # the warning is printed, and the keys are told apart, as in a dict
        assert "Comparison between bytes and string" in out.stderr
        assert "items: [(b'abc', 1), ('abc', 2)]" in out.stdout
        assert "len from another thread: [2]" in out.stdout


class _MutableHash:
    def __init__(self, h: int) -> None:
        self.h = h

    def __hash__(self) -> int:
        return self.h


def test_key_whose_hash_changes_after_insertion(cache_class: Any) -> None:
    cache = cache_class(3)
    key = _MutableHash(1)
    cache[key] = "moved"
    key.h = 2  # the entry is now unreachable by lookup, as in a dict
    assert key not in cache
    assert cache.get(key) is None
    assert len(cache) == 1
    cache["a"] = 1
    cache["b"] = 2
    assert len(cache) == 3  # it still counts
    cache["c"] = 3  # and is evicted in its turn, without an error
    assert cache.keys() == per_kind(cache, FIFOCache=["a", "b", "c"], S3FIFOCache=["c", "a", "b"])
    for n in range(10):
        cache[n] = n
    assert len(cache) == 3


def test_copy_deepcopy_and_pickle_give_an_independent_cache(
    backend: Backend, cache_class: Any
) -> None:
    cache = cache_class(3)
    cache.set_many([("a", [1]), ("b", [2])])
    cache.get("a")
    for clone in (copy.copy(cache), copy.deepcopy(cache), pickle.loads(pickle.dumps(cache))):
        assert type(clone) is type(cache)
        assert clone.maxsize == 3
        assert clone.items() == cache.items()
        assert clone.stats() == backend.CacheStats(hits=0, misses=0, inserts=2, evictions=0)
        clone["c"] = [3]
        clone["d"] = [4]  # evicts from the clone only
        assert cache.keys() == ["a", "b"]
        # S3-FIFO: the clone keeps "a" in small (read once), "b" in main;
        # "c" joins main (warm-up); making room for "d" moves "a" to main,
        # which, over its share, evicts its oldest unread key, "b".
        assert clone.keys() == per_kind(
            cache, FIFOCache=["b", "c", "d"], S3FIFOCache=["d", "c", "a"]
        )
    shallow = copy.copy(cache)
    deep = copy.deepcopy(cache)
    assert shallow["a"] is cache["a"]
    assert deep["a"] == cache["a"]
    assert deep["a"] is not cache["a"]


def test_a_cache_that_holds_itself_deep_copies(cache_class: Any) -> None:
    cache = cache_class(2)
    cache["me"] = cache
    clone = copy.deepcopy(cache)
    assert clone["me"] is clone


def test_subclasses_keep_their_class_and_attributes(cache_class: Any) -> None:
    class Named(cache_class):  # type: ignore[misc]
        def set(self, key: Any, value: Any) -> None:
            raise AssertionError("the cache's own operations never call overrides")

    cache = Named(2)
    cache.label = "hot"
    cache.set_many([("a", 1), ("b", 2), ("c", 3)])
    cache["d"] = 4
    kept = per_kind(cache, FIFOCache=["c", "d"], S3FIFOCache=["d", "b"])
    assert cache.keys() == kept
    assert repr(cache) == "Named(maxsize=2, len=2)"
    clone = copy.deepcopy(cache)
    assert type(clone) is Named
    assert clone.label == "hot"
    assert clone.keys() == kept


def test_weak_references(backend: Backend) -> None:
    for make in (
        lambda: backend.FIFOCache(1),
        lambda: backend.S3FIFOCache(1),
        backend.Counter,
        backend.Histogram,
        lambda: backend.Histogram().time(),
    ):
        obj = make()
        ref = weakref.ref(obj)
        assert ref() is obj
        del obj
        gc.collect()
        assert ref() is None


def test_pop_default_by_position_or_keyword(cache_class: Any) -> None:
    cache = cache_class(2)
    cache["a"] = 1
    assert cache.pop("x", None) is None
    assert cache.pop("x", default=5) == 5
    assert cache.pop("a", default=5) == 1
    with pytest.raises(TypeError):
        cache.get("a", default=1)  # get's arguments are positional, as dict.get's


def test_eq_that_waits_on_a_thread_using_the_cache(cache_class: Any) -> None:
    cache = cache_class(8)

    class WaitsForAWriter:
        def __hash__(self) -> int:
            return 77

        def __eq__(self, other: object) -> bool:
            writer = threading.Thread(target=cache.set, args=("from-thread", 1))
            writer.start()
            writer.join(timeout=10)
            assert not writer.is_alive(), "the other thread could not use the cache"
            return other is self

    first = WaitsForAWriter()
    cache[first] = "first"
    done: list[BaseException | None] = []

    def lookup() -> None:
        try:
            cache[WaitsForAWriter()] = "second"
            cache.get(WaitsForAWriter())
            done.append(None)
        except BaseException as exc:  # reported below
            done.append(exc)

    worker = threading.Thread(target=lookup)
    worker.start()
    worker.join(timeout=30)
    assert not worker.is_alive(), "deadlock: __eq__ ran while the cache was locked"
    assert done == [None]
    assert cache["from-thread"] == 1


def test_a_write_from_eq_never_loses_the_outer_write(cache_class: Any) -> None:
    cache = cache_class(4)

    class Clears:
        def __hash__(self) -> int:
            return 3

        def __eq__(self, other: object) -> bool:
            cache.clear()
            return False

    cache[Clears()] = 1
    cache["x"] = 2
    key = Clears()
    outcome = _set_or_refusal(cache, key, 3)
    assert outcome in {"set", changed_message(cache)}
    if outcome == "set":
        assert any(k is key for k, _ in cache.items()), "set returned but the key is absent"
    assert len(cache) <= 4


class _Collects:
    """Colliding keys whose __hash__ and __eq__ run the garbage collector, as
    any allocation in them may: the finalizers of pending garbage then run in
    the middle of the cache operation that hashes or compares the key."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __hash__(self) -> int:
        gc.collect(0)
        return self.n % 3

    def __eq__(self, other: object) -> bool:
        gc.collect(0)
        return isinstance(other, _Collects) and other.n == self.n

    def __repr__(self) -> str:
        return f"K{self.n}"


def test_finalizers_run_by_the_collector_mid_operation(cache_class: Any) -> None:
    cache = cache_class(16)
    unraisable: list[BaseException | None] = []

    class Cycle:
        """Garbage in a reference cycle whose finalizer changes the cache."""

        def __init__(self, n: int) -> None:
            self.me = self
            self.n = n

        def __del__(self) -> None:
            if self.n % 7 == 0:
                cache.clear()
            else:
                cache[f"del-{self.n}"] = self.n
                cache.pop(f"del-{self.n - 3}", None)

    old_hook = sys.unraisablehook
    sys.unraisablehook = lambda info: unraisable.append(info.exc_value)
    try:
        for n in range(120):
            key = _Collects(n % 40)
            Cycle(n)  # garbage, collected inside the key's __hash__ or __eq__
            outcome = _set_or_refusal(cache, key, n)
            assert outcome in {"set", changed_message(cache)}
            if outcome == "set":
                assert any(k is key for k in list(cache)), f"set({key}) returned, key absent"
            if n % 5 == 0:
                Cycle(n + 1)
                cache.pop(_Collects((n + 3) % 40), None)
            keys = cache.keys()
            assert len(keys) <= 16
            assert len(keys) == len(set(map(repr, keys)))
    finally:
        sys.unraisablehook = old_hook
        cache.clear()
        gc.collect()
    # A finalizer that ran inside another write on its thread is refused
    # with a RuntimeError, never let loose on a half-made change.
    assert all(isinstance(e, RuntimeError) and "finalizer" in str(e) for e in unraisable)


# --- snapshots while the collector runs finalizers ---------------------------


_SNAPSHOTS: dict[str, Any] = {
    "keys": lambda c: c.keys(),
    "values": lambda c: [(v, v) for v in c.values()],
    "items": lambda c: c.items(),
    "iter": list,
    "copy": lambda c: copy.copy(c).items(),
    "pickle": lambda c: pickle.loads(pickle.dumps(c)).items(),
}


@pytest.mark.parametrize("taking", sorted(_SNAPSHOTS))
def test_a_snapshot_is_consistent_while_finalizers_write(cache_class: Any, taking: str) -> None:
    """The collector may run at any allocation, and with it a finalizer that
    writes to the cache being copied: a snapshot is still a snapshot (every
    key once, each with its own value), never "dictionary changed during
    iteration"."""
    cache = cache_class(5_000)
    for n in range(2_000):
        cache[n] = n
    budget, writes = [0], [0]

    class Cycle:
        """Garbage whose finalizer writes to the cache and makes more garbage
        (so that the next collection finds some), within a budget."""

        def __init__(self) -> None:
            self.me = self

        def __del__(self) -> None:
            if budget[0] > 0:
                budget[0] -= 1
                writes[0] += 1
                cache.pop(writes[0], None)
                cache[f"del-{writes[0]}"] = f"del-{writes[0]}"
                Cycle()

    take = _SNAPSHOTS[taking]
    threshold = gc.get_threshold()
    gc.collect()
    gc.set_threshold(1)  # a collection at nearly every tracked allocation
    try:
        for _ in range(5):
            budget[0] = 20
            Cycle()
            got = take(cache)
            assert len(got) <= cache.maxsize
            if taking in {"keys", "iter"}:
                assert len(set(got)) == len(got)
            else:
                assert all(key == value for key, value in got)
                assert len({key for key, _ in got}) == len(got)
    finally:
        gc.set_threshold(*threshold)
        budget[0] = 0  # the garbage left stops writing
        gc.collect()
    assert writes[0] > 5  # finalizers did write while the snapshots were taken


# --- keys equal to a stored plain key: O(1) ----------------------------------


class _Level(enum.IntEnum):
    LOW = 7


class _Colour(enum.StrEnum):
    RED = "k7"


class _Meters(float):
    """A float subclass, as numpy's float64 is."""


class _Pair(NamedTuple):
    n: int
    name: str


def _profile_events(call: Any) -> int:
    """How many calls and returns (Python and C) ``call`` makes: a measure of
    work that does not depend on the machine's speed."""
    count = 0

    def hook(frame: Any, event: str, arg: object) -> None:
        nonlocal count
        count += 1

    sys.setprofile(hook)
    try:
        call()
    finally:
        sys.setprofile(None)
    return count


_STAND_INS: dict[str, tuple[object, object]] = {
    "IntEnum": (_Level.LOW, 7),
    "StrEnum": (_Colour.RED, "k7"),
    "float subclass": (_Meters(7.0), 7),
    "namedtuple": (_Pair(7, "k7"), (7, "k7")),
    "Decimal": (decimal.Decimal(7), 7),
}


@pytest.mark.parametrize("name", sorted(_STAND_INS))
def test_a_key_equal_to_a_stored_plain_key_costs_the_same_at_any_size(
    cache_class: Any, name: str
) -> None:
    """set, get and pop with a key that is not a builtin but equals a stored
    builtin key (an IntEnum member and its int) do as much work with 50
    entries as with 5,000: no scan of the entries."""
    key, plain = _STAND_INS[name]
    costs = []
    for size in (50, 5_000):
        cache = cache_class(4 * size)
        for n in range(size):
            cache[n + 100] = n
            cache[f"k{n + 100}"] = n
            cache[(n + 100, "k")] = n
        cache[plain] = "stored"
        set_cost = _profile_events(lambda: cache.set(key, "set"))  # noqa: B023 - called at once
        assert cache[plain] == "set"
        assert [k for k, v in cache.items() if v == "set"] == [plain]  # the stored key stays
        get_cost = _profile_events(lambda: cache.get(key))  # noqa: B023 - called at once
        pop_cost = _profile_events(lambda: cache.pop(key))  # noqa: B023 - called at once
        assert plain not in cache
        assert len(cache) == 3 * size
        costs.append((set_cost, get_cost, pop_cost))
    assert costs[0] == costs[1]


class _Odd:
    """A key of a class whose Python ``__eq__`` equals a builtin value: the
    one kind the pure-Python cache finds by a scan, once per key."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __hash__(self) -> int:
        return hash(self.n)

    def __eq__(self, other: object) -> bool:
        return other == self.n or (isinstance(other, _Odd) and other.n == self.n)


def test_keys_found_by_a_scan_are_remembered(cache_class: Any) -> None:
    """After one pass (a scan per key on the pure-Python cache), a second
    pass over more distinct such keys than any small memo holds does as
    much work with 100 entries as with 5,000."""
    costs = []
    for size in (100, 5_000):
        cache = cache_class(2 * size)
        for n in range(size):
            cache[n + 1_000] = n  # ahead of the keys matched: a scan walks them all
        for n in range(100):
            cache[n] = n
        keys = [_Odd(n) for n in range(100)]
        for key in keys:
            cache[key] = "first"
        assert [cache[n] for n in range(100)] == ["first"] * 100
        set_again = cache.set
        costs.append(sum(_profile_events(lambda k=k, s=set_again: s(k, "again")) for k in keys))
        assert [cache[n] for n in range(100)] == ["again"] * 100
        assert len(cache) == size + 100
    assert costs[0] == costs[1]


# --- subclasses --------------------------------------------------------------


def _subclasses(base: Any, suffix: str) -> dict[str, Any]:
    """Subclasses of ``base`` that pickle can find (module-level names)."""

    class Named(base):  # type: ignore[misc, valid-type]
        def __init__(self, name: str, size: int) -> None:
            super().__init__(size)
            self.name = name

    class Slotted(base):  # type: ignore[misc, valid-type]
        __slots__ = ("__secret", "tag", "unset")

        def __init__(self, size: int, tag: str) -> None:
            super().__init__(maxsize=size)
            self.tag = tag
            self.__secret = tag * 2

        def secret(self) -> str:
            return self.__secret

    class WithDict(base):  # type: ignore[misc, valid-type]
        pass

    class Forgetful(base):  # type: ignore[misc, valid-type]
        def __init__(self, size: int) -> None:
            self.size = size  # never calls FIFOCache.__init__

    made = {}
    for cls in (Named, Slotted, WithDict, Forgetful):
        # Where pickle finds it; __name__ stays, as private names are
        # mangled with it.
        cls.__qualname__ = f"_{cls.__name__}_{suffix}"
        globals()[cls.__qualname__] = cls
        made[cls.__name__] = cls
    return made


_SUBCLASSES = {
    (name, kind): _subclasses(getattr(_backend_module.load(name), kind), f"{kind}_{name}")
    for name in ("native", "python")
    if name in {b.name for b in _backend_module.available()}
    for kind in KINDS
}
_COPIES: dict[str, Any] = {
    "copy": copy.copy,
    "deepcopy": copy.deepcopy,
    "pickle": lambda c: pickle.loads(pickle.dumps(c)),
    "pickle protocol 0": lambda c: pickle.loads(pickle.dumps(c, protocol=0)),
}


def _built(backend: Backend, base: Any, kind: str) -> Any:
    classes = _SUBCLASSES[backend.name, kind_of(base)]
    if kind == "Named":
        cache = classes["Named"]("hot", 3)
    elif kind == "Slotted":
        cache = classes["Slotted"](3, "t")
    else:
        cache = classes["WithDict"](3)
        cache.label = "plain"
    cache.set_many([("a", [1]), (2, [2]), ("c", [3]), ("d", [4])])  # evicts "a" (both kinds)
    cache.get("c")
    return cache


@pytest.mark.parametrize("how", sorted(_COPIES))
@pytest.mark.parametrize("kind", ["Named", "Slotted", "WithDict"])
def test_subclasses_copy_and_pickle(
    backend: Backend, cache_class: Any, kind: str, how: str
) -> None:
    cache = _built(backend, cache_class, kind)
    clone = _COPIES[how](cache)
    assert type(clone) is type(cache)
    assert clone.maxsize == 3
    # S3-FIFO: "a" small's, 2 and "c" main's (warm-up); "d" evicts "a", joins small.
    order = per_kind(cache, FIFOCache=[2, "c", "d"], S3FIFOCache=["d", 2, "c"])
    assert clone.items() == [(k, [{"c": 3, "d": 4}.get(k, k)]) for k in order]
    assert clone.stats() == backend.CacheStats(hits=0, misses=0, inserts=3, evictions=0)
    if kind == "Named":
        assert clone.name == "hot"
    elif kind == "Slotted":
        assert (clone.tag, clone.secret()) == ("t", "tt")
        assert not hasattr(clone, "unset")
        assert not hasattr(clone, "__dict__")
    else:
        assert clone.label == "plain"
    clone["e"] = [5]  # the clone evicts in its own order, alone
    # S3-FIFO: the clone kept "d" in small, unread: "e" evicts it.
    assert clone.keys() == per_kind(cache, FIFOCache=["c", "d", "e"], S3FIFOCache=["e", 2, "c"])
    assert cache.keys() == order
    with pytest.raises(TypeError, match="already called"):
        cache_class.__init__(clone, 5)


def test_a_subclass_that_never_calls_init(backend: Backend, cache_class: Any) -> None:
    """Reads see an empty cache; writes (and copies) raise a TypeError that
    says what to do; calling FIFOCache.__init__ afterwards makes it whole."""
    cache = _SUBCLASSES[backend.name, kind_of(cache_class)]["Forgetful"](3)
    assert cache.size == 3
    assert (len(cache), cache.keys(), cache.values(), cache.items(), list(cache)) == (
        0,
        [],
        [],
        [],
        [],
    )
    assert cache.get("a", 5) == 5
    assert "a" not in cache
    assert cache.get_many(["a"]) == {}
    assert cache.maxsize == 0
    assert repr(cache) == "Forgetful(maxsize=0, len=0)"
    writes = [
        lambda: cache.set("a", 1),
        lambda: cache.__setitem__(1, 1),
        lambda: cache.__setitem__(("t", 1), 1),
        lambda: cache.set(FrozenKey(1, "k"), 1),
        lambda: cache.set_many([("a", 1)]),
        lambda: cache.set_many([]),
        lambda: cache.pop("a", None),
        lambda: cache.__delitem__("a"),
        cache.clear,
        lambda: copy.copy(cache),
        lambda: pickle.dumps(cache),
    ]
    for write in writes:
        with pytest.raises(TypeError, match=rf"^{kind_of(cache)}\.__init__ was not called.*super"):
            write()
        assert len(cache) == 0
    assert cache.stats() == backend.CacheStats(hits=0, misses=2, inserts=0, evictions=0)
    cache_class.__init__(cache, 2)
    cache.set_many([("a", 1), ("b", 2), ("c", 3)])
    assert cache.items() == per_kind(
        cache, FIFOCache=[("b", 2), ("c", 3)], S3FIFOCache=[("c", 3), ("b", 2)]
    )


def test_init_runs_once(cache_class: Any) -> None:
    cache = cache_class(maxsize=2)
    cache.set_many([("a", 1), ("b", 2)])
    before = snapshot(cache)
    for again in (lambda: cache.__init__(5), lambda: cache_class.__init__(cache, 0)):
        with pytest.raises(TypeError, match=rf"^{kind_of(cache)}\.__init__ was already called"):
            again()
        assert snapshot(cache) == before
        assert cache.maxsize == 2
    with pytest.raises(TypeError):
        cache_class(2, 3)


def _shaped(cache_class: Any, state: Any) -> Any:
    """A FIFOCache state (maxsize, items, attributes, slots) as ``cache_class``
    takes it: S3FIFOCache's adds the policy's part, fitting the items."""
    if kind_of(cache_class) == "FIFOCache" or type(state) is not tuple or len(state) != 4:
        return state
    count = len(state[1]) if isinstance(state[1], list) else 0
    return (*state, (bytes(count), False))


@pytest.mark.parametrize(
    ("state", "error", "message"),
    [
        ("not a tuple", TypeError, "state must be"),
        ((3, []), TypeError, "state must be"),
        ((0, [], None, None), ValueError, "at least 1"),
        ((3.0, [], None, None), TypeError, "must be an int"),
        ((3, [("a", 1), ("b",)], None, None), ValueError, "pairs"),
        ((3, [("a", 1), ([], 2)], None, None), TypeError, "unhashable"),
        ((3, 5, None, None), TypeError, "not iterable"),
        ((3, [], [], None), TypeError, "attributes must be a dict"),
        ((3, [], None, ("tag",)), TypeError, "slots must be a dict"),
        ((3, [], {"x": 1}, None), TypeError, "has no __dict__"),
    ],
)
def test_a_bad_state_is_refused_and_changes_nothing(
    cache_class: Any, state: Any, error: type[Exception], message: str
) -> None:
    fresh = cache_class.__new__(cache_class)
    with pytest.raises(error, match=message):
        fresh.__setstate__(_shaped(cache_class, state))
    assert (fresh.maxsize, fresh.items()) == (0, [])
    fresh.__setstate__(_shaped(cache_class, (2, [("a", 1)], None, None)))
    assert (fresh.maxsize, fresh.items()) == (2, [("a", 1)])
    with pytest.raises(TypeError, match="already called"):
        fresh.__setstate__(_shaped(cache_class, (2, [("b", 1)], None, None)))
    assert fresh.items() == [("a", 1)]


@pytest.mark.parametrize(
    ("state", "error", "message"),
    [
        ((3, [("a", 1)], None, None), TypeError, r"a \(maxsize.*policy\[, expiry\]\) tuple$"),
        ((3, [("a", 1)], None, None, None), TypeError, "policy must be a"),
        ((3, [("a", 1)], None, None, (b"\x00",)), TypeError, "policy must be a"),
        ((3, [("a", 1)], None, None, (bytearray(1), False)), TypeError, "policy must be a"),
        ((3, [("a", 1)], None, None, (b"\x00", 0)), TypeError, "policy must be a"),
        ((3, [("a", 1)], None, None, (b"", False)), ValueError, "0 entries for 1 items"),
        ((3, [("a", 1)], None, None, (b"\x08", False)), ValueError, "a bad entry"),
        ((3, [("a", 1), ([], 2)], None, None, (b"", False)), TypeError, "unhashable"),
    ],
)
def test_a_bad_s3fifo_policy_state_is_refused_and_changes_nothing(
    backend: Backend, state: Any, error: type[Exception], message: str
) -> None:
    fresh = backend.S3FIFOCache.__new__(backend.S3FIFOCache)
    with pytest.raises(error, match=message):
        fresh.__setstate__(state)
    assert (fresh.maxsize, fresh.items()) == (0, [])
    # freq 2 in small, freq 1 in main: kept as given.
    fresh.__setstate__((3, [("a", 1), ("b", 2)], None, None, (b"\x02\x05", True)))
    assert fresh.items() == [("a", 1), ("b", 2)]
    assert fresh.__reduce__()[2][4] == (b"\x02\x05", True)
