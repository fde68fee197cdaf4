"""Expiry on FIFOCache and S3FIFOCache, run against both backends: a time to
live per cache (``ttl=``) or per write (``set(..., ttl=)``), a time to idle
(``tti=``) that reads move, an injected clock that moves only when told."""

from __future__ import annotations

import copy
import math
import pickle
import threading
from collections.abc import Callable
from typing import Any

import pytest

from pepperpy_core._backend import Backend

KINDS = ("FIFOCache", "S3FIFOCache")


class Clock:
    """A clock that moves only when told; counts its reads."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        return self.now


#: A clock pickled by reference: a clone unpickled reads the same time.
SHARED = Clock()


def shared_clock() -> float:
    return SHARED.now


@pytest.fixture(params=KINDS)
def cache_class(backend: Backend, request: pytest.FixtureRequest) -> Any:
    """Each cache class of the backend in turn."""
    return getattr(backend, request.param)


def stats_of(cache: Any) -> tuple[int, int, int, int, int]:
    s = cache.stats()
    return (s.hits, s.misses, s.inserts, s.evictions, s.expirations)


# --- time to live -----------------------------------------------------------------


def test_an_entry_lives_ttl_seconds_from_its_write(cache_class: Any) -> None:
    clock = Clock()
    cache = cache_class(4, ttl=10, clock=clock)
    cache["a"] = 1
    clock.now = 9.5
    assert cache.get("a") == 1
    clock.now = 10.0  # expired at its deadline, not after
    assert cache.get("a", "gone") == "gone"
    assert "a" not in cache
    assert len(cache) == 0
    assert stats_of(cache) == (1, 1, 1, 0, 1)
    with pytest.raises(KeyError):
        cache["a"]


def test_a_write_with_its_own_ttl_wins_over_the_cache_s(cache_class: Any) -> None:
    clock = Clock()
    cache = cache_class(4, ttl=10, clock=clock)
    cache.set("short", 1, ttl=2)
    cache.set("long", 2, ttl=20)
    cache.set("default", 3)
    clock.now = 2
    assert cache.keys() == ["long", "default"]
    clock.now = 10
    assert cache.keys() == ["long"]
    clock.now = 20
    assert cache.keys() == []
    assert cache.stats().expirations == 3


def test_a_cache_without_ttl_expires_only_what_was_written_with_one(cache_class: Any) -> None:
    clock = Clock()
    cache = cache_class(4, clock=clock)
    cache["kept"] = 1
    assert clock.reads == 0  # nothing can expire yet: the clock is not read
    cache.set("brief", 2, ttl=1)
    cache.set_many({"batch": 3}, ttl=2)
    clock.now = 1
    assert cache.items() == [("kept", 1), ("batch", 3)]
    clock.now = 1e9
    assert cache.items() == [("kept", 1)]
    assert stats_of(cache) == (0, 0, 3, 0, 2)


def test_a_cache_without_expiry_never_reads_its_clock(cache_class: Any) -> None:
    clock = Clock()
    cache = cache_class(2, clock=clock)
    cache.set_many([("a", 1), ("b", 2)])
    cache["c"] = 3
    assert cache.get("c") == 3
    assert cache["b"] == 2
    assert "a" not in cache
    assert cache.get_many(["b", "c"]) == {"b": 2, "c": 3}
    assert cache.pop("b") == 2
    assert (len(cache), cache.items(), copy.copy(cache).keys()) == (1, [("c", 3)], ["c"])
    assert clock.reads == 0


#: Operations on keys "a" and "b" of an expiring cache, each reading its clock once.
ONCE: dict[str, Callable[[Any], object]] = {
    "get": lambda c: c.get("a"),
    "getitem": lambda c: c["a"],
    "in": lambda c: "a" in c,
    "set": lambda c: c.set("b", 2),
    "set ttl": lambda c: c.set("b", 2, ttl=1),
    "setitem": lambda c: c.__setitem__("a", 2),
    "set_many": lambda c: c.set_many({"b": 2, "c": 3, "d": 4}),
    "get_many": lambda c: c.get_many(["a", "b", "c", "a"]),
    "pop": lambda c: c.pop("a"),
    "len": len,
    "items": lambda c: c.items(),
    "stats": lambda c: c.stats(),
}


@pytest.mark.parametrize("use", ONCE.values(), ids=ONCE.keys())
def test_every_operation_reads_the_clock_once(
    cache_class: Any, use: Callable[[Any], object]
) -> None:
    clock = Clock()
    cache = cache_class(4, tti=5, clock=clock)
    cache["a"] = 1
    reads = clock.reads
    use(cache)
    assert clock.reads == reads + 1


# --- time to idle -------------------------------------------------------------------


def test_a_read_keeps_an_idle_entry_and_in_does_not(cache_class: Any) -> None:
    clock = Clock()
    cache = cache_class(4, tti=2, clock=clock)
    cache["a"] = 1
    clock.now = 1.5
    assert cache.get("a") == 1  # idle until 3.5
    clock.now = 3.0
    assert "a" in cache  # not a read: the deadline stays 3.5
    clock.now = 3.5
    assert "a" not in cache
    assert stats_of(cache) == (1, 0, 1, 0, 1)


def test_every_kind_of_read_moves_the_idle_deadline(cache_class: Any) -> None:
    clock = Clock()
    cache = cache_class(4, tti=2, clock=clock)
    cache.set_many({"a": 1, "b": 2, "c": 3})
    clock.now = 1.5
    assert cache.get("a") == 1
    assert cache["b"] == 2
    assert cache.get_many(["c", "missing"]) == {"c": 3}
    clock.now = 3.4
    assert cache.keys() == ["a", "b", "c"]
    clock.now = 3.5
    assert cache.keys() == []


def test_ttl_bounds_an_entry_however_often_it_is_read(cache_class: Any) -> None:
    clock = Clock()
    cache = cache_class(4, ttl=5, tti=2, clock=clock)
    cache["a"] = 1
    for now in (1.0, 2.0, 3.0, 4.0, 4.5):
        clock.now = now
        assert cache.get("a") == 1
    clock.now = 5.0
    assert cache.get("a") is None


def test_an_overwrite_restarts_both_deadlines(cache_class: Any) -> None:
    clock = Clock()
    cache = cache_class(4, ttl=5, tti=2, clock=clock)
    cache["a"] = 1
    clock.now = 1.5
    cache["a"] = 2  # write deadline 6.5, idle deadline 3.5
    clock.now = 3.4
    assert cache.get("a") == 2  # idle deadline 5.4
    clock.now = 5.4
    assert cache.get("a") is None
    assert stats_of(cache) == (1, 1, 1, 0, 1)


def test_a_clock_that_goes_back_still_expires_what_is_due(cache_class: Any) -> None:
    # A read at an earlier time moves the idle deadline earlier.
    clock = Clock(10.0)
    cache = cache_class(4, tti=5, clock=clock)
    cache["a"] = 1  # idle until 15
    clock.now = 2.0
    assert cache.get("a") == 1  # idle until 7
    clock.now = 7.0
    assert cache.keys() == []
    assert cache.stats().expirations == 1


# --- when expired entries leave -------------------------------------------------------

#: Operations that do not touch keys "a" and "b": each removes what is due first.
OPERATIONS: dict[str, Callable[[Any], object]] = {
    "len": len,
    "keys": lambda c: c.keys(),
    "values": lambda c: c.values(),
    "items": lambda c: c.items(),
    "iter": list,
    "stats": lambda c: c.stats(),
    "in": lambda c: "other" in c,
    "get": lambda c: c.get("other"),
    "get_many": lambda c: c.get_many(["other"]),
    "set": lambda c: c.set("other", 0),
    "set_many": lambda c: c.set_many({"other": 0}),
    "pop": lambda c: c.pop("other", None),
    "repr": repr,
    "copy": copy.copy,
}


@pytest.mark.parametrize("operation", OPERATIONS.values(), ids=OPERATIONS.keys())
def test_whatever_comes_next_removes_what_is_due_first(
    cache_class: Any, operation: Callable[[Any], object]
) -> None:
    clock = Clock()
    cache = cache_class(8, ttl=5, clock=clock)
    cache.set_many({"a": 1, "b": 2})
    cache.set("c", 3, ttl=50)
    clock.now = 5
    operation(cache)
    assert cache.stats().expirations == 2
    assert [k for k in cache if k != "other"] == ["c"]


def test_expired_entries_make_room_before_anything_is_evicted(cache_class: Any) -> None:
    clock = Clock()
    cache = cache_class(3, clock=clock)
    cache.set("a", 1, ttl=1)
    cache.set("b", 2, ttl=1)
    cache["c"] = 3
    clock.now = 1
    cache["d"] = 4
    cache["e"] = 5
    assert sorted(cache.keys()) == ["c", "d", "e"]
    assert stats_of(cache) == (0, 0, 5, 0, 2)
    cache["f"] = 6  # full of live entries: now the policy evicts
    assert cache.stats().evictions == 1
    assert len(cache) == 3


def test_writing_an_expired_key_inserts_it_anew(cache_class: Any) -> None:
    clock = Clock()
    cache = cache_class(4, ttl=2, clock=clock)
    cache["a"] = 1
    clock.now = 1
    cache["b"] = 2
    clock.now = 2
    cache["a"] = 10  # "a" expired: a new key (FIFO: at the back; S3-FIFO: to small)
    fifo = cache_class.__name__ == "FIFOCache"
    assert cache.items() == ([("b", 2), ("a", 10)] if fifo else [("a", 10), ("b", 2)])
    assert stats_of(cache) == (0, 0, 3, 0, 1)
    clock.now = 3
    assert cache.items() == [("a", 10)]


def test_popping_an_expired_key_finds_nothing(cache_class: Any) -> None:
    clock = Clock()
    cache = cache_class(4, ttl=2, clock=clock)
    cache["a"] = 1
    clock.now = 2
    assert cache.pop("a", "none") == "none"
    with pytest.raises(KeyError):
        del cache["a"]
    assert stats_of(cache) == (0, 0, 1, 0, 1)


def test_clear_drops_expired_entries_without_counting_them(cache_class: Any) -> None:
    clock = Clock()
    cache = cache_class(4, ttl=2, clock=clock)
    cache["a"] = 1
    clock.now = 2
    cache.clear()
    assert stats_of(cache) == (0, 0, 1, 0, 0)
    cache["b"] = 2  # still expiring after a clear
    clock.now = 4
    assert cache.keys() == []


def test_entries_rewritten_many_times_expire_at_their_last_deadline(cache_class: Any) -> None:
    # Each write files a deadline; the stale ones are dropped as they pile
    # up (the heap stays in proportion to the entries), and each entry
    # still expires at its last one.
    clock = Clock()
    cache = cache_class(4, ttl=1000, clock=clock)
    for round_ in range(5000):
        clock.now = round_ / 8
        cache[round_ % 4] = round_
    clock.now = 1624.625  # the deadlines of keys 0 and 1
    assert sorted(cache.keys()) == [2, 3]
    timers = getattr(cache, "_timers", None)  # the pure-Python twin's, to look at
    if timers is not None:
        assert len(timers.heap) <= 2 * 4 + 33
    clock.now = 1624.875
    assert cache.keys() == []


# --- bad inputs ----------------------------------------------------------------------

BAD_SECONDS = [
    (-1, ValueError, "must be a finite number of seconds > 0, got -1"),
    (0, ValueError, "got 0"),
    (math.nan, ValueError, "got nan"),
    (math.inf, ValueError, "got inf"),
    (10**400, ValueError, "got 1000"),
    ("1", TypeError, "must be a number of seconds or None, not str"),
    (True, TypeError, "not bool"),
    ([], TypeError, "not list"),
]


@pytest.mark.parametrize("what", ["ttl", "tti"])
@pytest.mark.parametrize(("value", "error", "message"), BAD_SECONDS)
def test_a_bad_ttl_or_tti_leaves_the_cache_unmade(
    cache_class: Any, what: str, value: object, error: type[Exception], message: str
) -> None:
    cache = cache_class.__new__(cache_class)
    with pytest.raises(error, match=f"^{what} {message}" if message[0] == "m" else message):
        cache.__init__(3, **{what: value})
    assert cache.maxsize == 0
    cache.__init__(3)  # nothing was set: it can still be made
    assert cache.maxsize == 3


def test_a_clock_that_cannot_be_called_is_refused(cache_class: Any) -> None:
    with pytest.raises(TypeError, match=r"^clock must be a callable returning seconds, or None"):
        cache_class(3, ttl=1, clock=12.0)


@pytest.mark.parametrize(("value", "error", "message"), BAD_SECONDS)
def test_a_bad_ttl_on_a_write_changes_nothing(
    cache_class: Any, value: object, error: type[Exception], message: str
) -> None:
    clock = Clock()
    cache = cache_class(2, ttl=5, clock=clock)
    cache["a"] = 1
    before = (cache.items(), cache.stats())
    with pytest.raises(error, match=message):
        cache.set("b", 2, ttl=value)
    with pytest.raises(error, match=message):
        cache.set("a", 2, ttl=value)
    with pytest.raises(error, match=message):
        cache.set_many({"b": 2}, ttl=value)
    assert (cache.items(), cache.stats()) == before


BAD_READINGS = [
    (None, "must return a number of seconds, not NoneType"),
    ("1", "not str"),
    (True, "not bool"),
    (math.nan, "must return a finite number of seconds, got nan"),
    (-math.inf, "got -inf"),
    (10**400, "got 1000"),
]

#: Every operation that reads the clock of an expiring cache.
USES: dict[str, Callable[[Any], object]] = {
    "get": lambda c: c.get("a"),
    "getitem": lambda c: c["a"],
    "in": lambda c: "a" in c,
    "set": lambda c: c.set("b", 2),
    "setitem": lambda c: c.__setitem__("a", 2),
    "set_many": lambda c: c.set_many({"b": 2}),
    "get_many": lambda c: c.get_many(["a"]),
    "pop": lambda c: c.pop("a"),
    "delitem": lambda c: c.__delitem__("a"),
    "len": len,
    "items": lambda c: c.items(),
    "stats": lambda c: c.stats(),
    "copy": copy.copy,
}


@pytest.mark.parametrize("use", USES.values(), ids=USES.keys())
@pytest.mark.parametrize(("reading", "message"), BAD_READINGS)
def test_a_bad_clock_reading_is_a_type_error_that_changes_nothing(
    cache_class: Any, use: Callable[[Any], object], reading: object, message: str
) -> None:
    clock = Clock()
    cache = cache_class(2, ttl=5, clock=clock)
    cache["a"] = 1
    clock.now = 4.5
    before = (cache.items(), stats_of(cache))
    clock.now = reading  # type: ignore[assignment]
    pattern = f"^clock\\(\\) {message}" if message[0] == "m" else message
    with pytest.raises(TypeError, match=pattern):
        use(cache)
    clock.now = 4.5
    assert (cache.items(), stats_of(cache)) == before


def test_a_clock_that_raises_changes_nothing(cache_class: Any) -> None:
    broken = [False]

    def clock() -> float:
        if broken[0]:
            raise LookupError("no time")
        return 0.0

    cache = cache_class(2, clock=clock)
    cache["a"] = 1
    broken[0] = True
    with pytest.raises(LookupError, match="no time"):
        cache.set("b", 2, ttl=1)  # the first write with a deadline
    assert cache.items() == [("a", 1)]
    broken[0] = False
    cache.set("b", 2, ttl=1)
    broken[0] = True
    for use in USES.values():
        with pytest.raises(LookupError, match="no time"):
            use(cache)
    broken[0] = False
    assert (cache.items(), stats_of(cache)) == ([("a", 1), ("b", 2)], (0, 0, 2, 0, 0))


def test_the_clock_is_called_with_the_cache_unlocked(cache_class: Any) -> None:
    # A clock that uses the cache it serves (user code, as a key's __eq__):
    # it would be refused (or deadlock) if it ran under the cache's lock.
    inside = [False]
    seen: list[object] = []

    def clock() -> float:
        if not inside[0]:
            inside[0] = True
            try:
                seen.append(cache.get("a"))
                cache["c"] = 3
            finally:
                inside[0] = False
        return 0.0

    cache = cache_class(4, ttl=10, clock=clock)
    cache["a"] = 1
    assert cache.get("a") == 1
    assert seen == [None, 1]
    assert sorted(cache.keys()) == ["a", "c"]


# --- copy and pickle -------------------------------------------------------------------


@pytest.mark.parametrize("how", ["copy", "deepcopy", "pickle"])
def test_a_copy_keeps_the_settings_and_each_entry_s_time_left(cache_class: Any, how: str) -> None:
    SHARED.now = 100.0
    cache = cache_class(4, ttl=10, tti=4, clock=shared_clock)
    cache["a"] = 1
    cache.set("b", 2, ttl=2)
    SHARED.now = 101.0
    cache.get("a")  # idle until 105
    clone = {
        "copy": copy.copy,
        "deepcopy": copy.deepcopy,
        "pickle": lambda c: pickle.loads(pickle.dumps(c)),
    }[how](cache)
    assert clone.keys() == ["a", "b"]
    SHARED.now = 102.0
    assert clone.keys() == ["a"]  # "b" lived 2 s
    clone["c"] = 3  # the settings came along: 10 s to live, 4 to idle
    SHARED.now = 105.0
    assert clone.keys() == ["c"]
    SHARED.now = 106.0
    assert clone.keys() == []
    assert clone.stats().expirations == 3


def test_time_left_survives_a_pickle_counted_from_when_it_is_loaded(cache_class: Any) -> None:
    # A monotonic clock means nothing in another process: a pickle keeps
    # each entry's time left, and the loaded cache counts it from its own now.
    SHARED.now = 10.0
    cache = cache_class(4, ttl=5, clock=shared_clock)
    cache["a"] = 1
    data = pickle.dumps(cache)
    SHARED.now = 1000.0
    loaded = pickle.loads(data)
    SHARED.now = 1004.5
    assert loaded.get("a") == 1
    SHARED.now = 1005.0
    assert loaded.get("a") is None


def test_the_default_clock_is_monotonic_and_kept_out_of_pickles(cache_class: Any) -> None:
    cache = cache_class(4, ttl=1e9)
    cache["a"] = 1
    assert cache.get("a") == 1
    state = cache.__reduce__()[2]
    ttl, tti, clock, left = state[-1]
    assert (ttl, tti, clock) == (1e9, None, None)
    assert 0 < left[0][0] <= 1e9
    assert left[0][1] == math.inf
    assert pickle.loads(pickle.dumps(cache)).items() == [("a", 1)]


def test_a_cache_without_expiry_pickles_as_before(cache_class: Any) -> None:
    cache = cache_class(4)
    cache["a"] = 1
    state = cache.__reduce__()[2]
    assert len(state) == (4 if cache_class.__name__ == "FIFOCache" else 5)
    fresh = cache_class.__new__(cache_class)
    fresh.__setstate__(state)
    assert fresh.items() == [("a", 1)]


BAD_EXPIRY = [
    ("not a tuple", TypeError, "expiry must be a"),
    ((None, None, None), TypeError, "expiry must be a"),
    ((None, None, None, ()), TypeError, "expiry must be a"),
    ((-1.0, None, None, [None]), ValueError, "ttl must be a finite number"),
    ((None, "x", None, [None]), TypeError, "tti must be a number"),
    ((None, None, 5, [None]), TypeError, "clock must be a callable"),
    ((None, None, None, []), ValueError, "0 entries for 1 items"),
    ((None, None, None, [(1.0,)]), ValueError, "a bad entry"),
    ((None, None, None, [(1, 2.0)]), ValueError, "a bad entry"),
    ((None, None, None, [(0.0, 2.0)]), ValueError, "a bad entry"),
    ((None, None, None, [(math.nan, 2.0)]), ValueError, "a bad entry"),
    ((None, None, None, ["1"]), ValueError, "a bad entry"),
]


@pytest.mark.parametrize(("part", "error", "message"), BAD_EXPIRY)
def test_a_bad_expiry_state_is_refused_and_changes_nothing(
    cache_class: Any, part: object, error: type[Exception], message: str
) -> None:
    good = cache_class(4, ttl=5, clock=Clock())
    good["a"] = 1
    state = (*good.__reduce__()[2][:-1], part)
    fresh = cache_class.__new__(cache_class)
    with pytest.raises(error, match=message):
        fresh.__setstate__(state)
    assert fresh.maxsize == 0
    fresh.__setstate__(good.__reduce__()[2])
    assert fresh.items() == [("a", 1)]


# --- threads ---------------------------------------------------------------------------


def test_threads_on_an_expiring_cache_keep_it_whole(cache_class: Any) -> None:
    ticks = iter(range(10**9))
    lock = threading.Lock()

    def clock() -> float:
        with lock:
            return next(ticks) / 100

    cache = cache_class(64, ttl=2, tti=1, clock=clock)
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def work(seed: int) -> None:
        try:
            start.wait(timeout=60)
            for i in range(2000):
                key = (seed * 7 + i) % 200
                if i % 3 == 0:
                    cache.set(key, i, ttl=0.5 + i % 3)
                elif i % 3 == 1:
                    cache.get(key)
                else:
                    cache.pop(key, None)
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    assert not any(thread.is_alive() for thread in threads)
    items = cache.items()
    assert len(items) <= 64
    assert len({k for k, _ in items}) == len(items)
    stats = cache.stats()
    assert stats.expirations > 0
    assert stats.hits + stats.misses == 4 * len(range(1, 2000, 3))


def test_what_pure_readers_see_without_the_lock_is_always_a_deadline() -> None:
    """The pure caches' reads compare a timer's fields without the lock
    (``_unlocked_find``, ``_touch_seen``), so no step of a change made under
    it may leave anything but a float there, for a thread switch could come
    at any line: every line of a compaction is checked."""
    import sys
    from types import FrameType

    from pepperpy_core._fallback.expiry import Timers

    timers = Timers()
    for round_ in range(3):  # rewrites leave stale items: the heap compacts
        for key in range(40):
            timer, item = Timers.made(100.0 + key + round_, 50.0 + key)
            timers.file(key, timer, item)
    seen: list[int] = []

    def check(frame: FrameType, event: str, arg: object) -> Any:
        if frame.f_code.co_name != "_compact":
            return None
        if event == "line":
            seen.append(frame.f_lineno)
            for timer in timers.deadlines.values():
                assert all(type(field) is float for field in timer[:3]), timer
        return check

    compact = Timers._compact
    sys.settrace(lambda frame, event, arg: check if frame.f_code is compact.__code__ else None)
    try:
        timers._compact()
    finally:
        sys.settrace(None)
    assert len(seen) > 40  # every line of the loops, for every item
    assert len(timers.heap) == len(timers.deadlines) == 40
