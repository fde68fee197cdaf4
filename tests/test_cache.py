"""FIFOCache behaviour, run against both backends through the ``backend`` fixture."""

from __future__ import annotations

import contextlib
import gc
import threading
import time
import weakref
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import pytest


def snapshot(cache: Any) -> tuple[list[Any], Any, int]:
    """Everything observable about a cache: items in order, stats, length."""
    return cache.items(), cache.stats(), len(cache)


def stats_tuple(cache: Any) -> tuple[int, int, int, int]:
    s = cache.stats()
    return (s.hits, s.misses, s.inserts, s.evictions)


# --- the FIFO contract -------------------------------------------------------


def test_new_key_at_maxsize_evicts_the_oldest(backend: ModuleType) -> None:
    cache = backend.FIFOCache(3)
    for key in "abcd":
        cache[key] = key.upper()
    assert cache.keys() == ["b", "c", "d"]
    assert cache.values() == ["B", "C", "D"]
    assert "a" not in cache
    assert len(cache) == 3
    assert stats_tuple(cache) == (0, 0, 4, 1)


def test_overwrite_keeps_position_and_does_not_evict(backend: ModuleType) -> None:
    cache = backend.FIFOCache(3)
    cache.set_many([("a", 1), ("b", 2), ("c", 3)])
    cache["a"] = 10
    assert cache.items() == [("a", 10), ("b", 2), ("c", 3)]
    cache["d"] = 4
    assert cache.items() == [("b", 2), ("c", 3), ("d", 4)]
    assert stats_tuple(cache) == (0, 0, 4, 1)


def test_reads_do_not_reorder(backend: ModuleType) -> None:
    cache = backend.FIFOCache(2)
    cache["a"] = 1
    cache["b"] = 2
    assert cache.get("a") == 1
    assert cache["a"] == 1
    assert "a" in cache
    cache["c"] = 3
    assert cache.keys() == ["b", "c"]


def test_get_default_and_getitem_keyerror(backend: ModuleType) -> None:
    cache = backend.FIFOCache(2)
    cache["a"] = 1
    assert cache.get("missing") is None
    assert cache.get("missing", 7) == 7
    with pytest.raises(KeyError) as info:
        cache["missing"]
    assert info.value.args == ("missing",)
    assert cache.get("a", 7) == 1
    assert stats_tuple(cache) == (1, 3, 1, 0)


def test_stored_none_is_a_hit(backend: ModuleType) -> None:
    cache = backend.FIFOCache(2)
    cache["a"] = None
    assert cache.get("a", 5) is None
    assert cache.stats().hits == 1


def test_pop_and_delitem(backend: ModuleType) -> None:
    cache = backend.FIFOCache(3)
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


def test_popped_slot_is_reused_in_order(backend: ModuleType) -> None:
    cache = backend.FIFOCache(3)
    cache.set_many([(1, 1), (2, 2), (3, 3)])
    cache.pop(2)
    cache[4] = 4
    cache[5] = 5
    assert cache.keys() == [3, 4, 5]


def test_clear_keeps_stats_and_maxsize(backend: ModuleType) -> None:
    cache = backend.FIFOCache(2)
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


def test_iteration_is_a_snapshot_of_keys(backend: ModuleType) -> None:
    cache = backend.FIFOCache(5)
    cache.set_many([(1, "a"), (2, "b")])
    seen = []
    for key in cache:
        seen.append(key)
        cache[key + 10] = "new"
    assert seen == [1, 2]
    assert list(cache) == [1, 2, 11, 12]


def test_get_many_and_set_many(backend: ModuleType) -> None:
    cache = backend.FIFOCache(4)
    cache.set_many(iter([("a", 1), ["b", 2]]))
    cache.set_many({"c": 3})
    assert cache.get_many(["a", "x", "c", "a"]) == {"a": 1, "c": 3}
    assert stats_tuple(cache) == (3, 1, 3, 0)
    cache.set_many([(k, k) for k in range(10)])
    assert cache.keys() == [6, 7, 8, 9]
    assert cache.get_many([]) == {}


def test_set_many_refuses_bad_pairs_before_changing_anything(backend: ModuleType) -> None:
    cache = backend.FIFOCache(4)
    cache["a"] = 1
    before = snapshot(cache)
    with pytest.raises(ValueError, match="pairs"):
        cache.set_many([("b", 2), ("c", 3, 4)])
    with pytest.raises(TypeError):
        cache.set_many([("b", 2), 5])
    with pytest.raises(TypeError):
        cache.set_many([("b", 2), ([], 3)])
    assert snapshot(cache) == before


def test_stats_record(backend: ModuleType) -> None:
    stats = backend.CacheStats(hits=1, misses=2, inserts=3, evictions=4)
    assert (stats.hits, stats.misses, stats.inserts, stats.evictions) == (1, 2, 3, 4)
    assert stats == backend.CacheStats(hits=1, misses=2, inserts=3, evictions=4)
    assert stats != backend.CacheStats(hits=0, misses=2, inserts=3, evictions=4)
    assert hash(stats) == hash(backend.CacheStats(hits=1, misses=2, inserts=3, evictions=4))
    assert repr(stats) == "CacheStats(hits=1, misses=2, inserts=3, evictions=4)"
    with pytest.raises(AttributeError):
        stats.hits = 5  # type: ignore[misc]
    with pytest.raises(TypeError):
        backend.CacheStats(1, 2, 3, 4)


def test_repr_and_maxsize(backend: ModuleType) -> None:
    cache = backend.FIFOCache(10)
    cache["a"] = 1
    assert repr(cache) == "FIFOCache(maxsize=10, len=1)"
    assert cache.maxsize == 10


def test_generic_at_runtime(backend: ModuleType) -> None:
    alias = backend.FIFOCache[str, int]
    cache = alias(2)
    assert isinstance(cache, backend.FIFOCache)
    cache["a"] = 1
    assert cache["a"] == 1


def test_keys_compare_as_in_a_dict(backend: ModuleType) -> None:
    cache = backend.FIFOCache(4)
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


def test_large_cache_does_not_preallocate(backend: ModuleType) -> None:
    cache = backend.FIFOCache(2**32 - 2)
    cache["a"] = 1
    assert len(cache) == 1


def test_unreferenced_cache_with_a_cycle_is_collected(backend: ModuleType) -> None:
    class Holder:
        pass

    cache = backend.FIFOCache(2)
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
    backend: ModuleType, maxsize: object, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        backend.FIFOCache(maxsize)


def test_maxsize_is_required(backend: ModuleType) -> None:
    with pytest.raises(TypeError):
        backend.FIFOCache()


@pytest.mark.parametrize("key", [[], {}, {1}, ([],)])
def test_unhashable_key_is_a_typeerror_and_changes_nothing(backend: ModuleType, key: Any) -> None:
    cache = backend.FIFOCache(3)
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


def test_key_whose_hash_raises(backend: ModuleType) -> None:
    cache = backend.FIFOCache(2)
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


def test_key_whose_eq_raises(backend: ModuleType) -> None:
    cache = backend.FIFOCache(2)
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


@dataclass(frozen=True)
class Collider:
    """Distinct values that all hash alike."""

    n: int

    def __hash__(self) -> int:
        return 7


def test_many_keys_with_one_hash(backend: ModuleType) -> None:
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


def test_key_eq_that_reads_the_cache_gets_the_right_answer(backend: ModuleType) -> None:
    cache = backend.FIFOCache(4)
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


def test_key_eq_that_writes_the_cache_never_corrupts_it(backend: ModuleType) -> None:
    cache = backend.FIFOCache(8)
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


def test_key_eq_that_clears_the_cache(backend: ModuleType) -> None:
    cache = backend.FIFOCache(4)
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


def test_value_del_that_touches_the_cache_on_eviction(backend: ModuleType) -> None:
    cache = backend.FIFOCache(3)
    log: list[str] = []
    cache["a"] = TouchesCacheOnDel(cache, log, "a")
    cache["b"] = 1
    cache["c"] = 2
    cache["d"] = 3  # evicts "a"; its __del__ inserts a key, evicting "b"
    assert log == ["a"]
    assert len(cache) == 3
    assert cache.keys() == ["c", "d", "from-del-a"]


def test_value_del_that_touches_the_cache_on_overwrite_pop_and_clear(
    backend: ModuleType,
) -> None:
    cache = backend.FIFOCache(10)
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


def test_threads_with_int_keys(backend: ModuleType) -> None:
    _hammer(backend.FIFOCache(64), lambda n: n, seconds=2.0)


def test_threads_with_frozen_dataclass_keys(backend: ModuleType) -> None:
    _hammer(backend.FIFOCache(64), lambda n: FrozenKey(n, "k"), seconds=2.0)
