"""The pure-Python caches' write token: a use nested in a write on the same
thread (what a signal handler or a finalizer does) is either done or refused
with RuntimeError, never a deadlock or a half-made change; a write that finds
the token taken by another thread waits for it and then happens. Every test
runs on FIFOCache and S3FIFOCache (``cls``), which share that machinery.

A profile hook stands in for the signal handler: it runs at every call a
cache method makes, on the same thread, nested in that method's frame. The
interpreter runs a signal handler as a C call returns and as a Python function
is entered, so the interrupting hook raises at those points.
"""

from __future__ import annotations

import copy
import inspect
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from pepperpy_core._fallback.cache import FIFOCache
from pepperpy_core._fallback.s3fifo import S3FIFOCache

CLASSES = [FIFOCache, S3FIFOCache]
#: The code of every method of the caches, their shared base's included.
_METHODS = {
    f.__code__
    for cls in CLASSES
    for klass in cls.__mro__
    for f in vars(klass).values()
    if hasattr(f, "__code__")
}
#: Where the pure-Python cache's own functions live.
_SOURCES = str(Path(inspect.getfile(FIFOCache)).parent)

Cache = FIFOCache[Any, Any] | S3FIFOCache[Any, Any]


@pytest.fixture(params=CLASSES, ids=[c.__name__ for c in CLASSES])
def cls(request: pytest.FixtureRequest) -> type[Cache]:
    """Each pure-Python cache class in turn."""
    made: type[Cache] = request.param
    return made


def _busy(cache: Cache) -> str:
    return cache._says.busy


def _changed(cache: Cache) -> str:
    return cache._says.changed


class _Key:
    """A key that is not plain (stored under a wrapper) with a fixed hash."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __hash__(self) -> int:
        return self.n

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Key) and other.n == self.n


_NESTED: dict[str, Callable[[Cache, int], object]] = {
    "set str": lambda c, n: c.set(f"nested-{n}", n),
    "set int": lambda c, n: c.set(10_000 + n, n),
    "set wrapped": lambda c, n: c.set(_Key(n), n),
    "pop": lambda c, n: c.pop(f"nested-{n - 1}", None),
    "stats": lambda c, n: c.stats(),
    "clear": lambda c, n: c.clear(),
}


def _check(cache: Cache, maxsize: int) -> None:
    keys = cache.keys()
    assert len(keys) <= maxsize
    assert len(keys) == len(set(keys))
    assert len(keys) == len(cache) == len(cache.values())
    for key in keys:
        assert key in cache
    stats = cache.stats()
    assert stats.inserts - stats.evictions >= len(cache)
    if isinstance(cache, S3FIFOCache):
        _check_queues(cache)


def _check_queues(cache: S3FIFOCache[Any, Any]) -> None:
    """S3FIFOCache's deques and count agree with its entries once repaired:
    each live entry once, in the deque it says, and the count of main's."""
    if cache._out_of_step:
        return  # repaired by the next insert
    data = cache._data
    live = [[e for e in q if data.get(e[2]) is e] for q in (cache._small, cache._main)]
    assert sorted(map(id, live[0] + live[1])) == sorted(map(id, data.values()))
    assert [e[3] for e in live[0]] == [False] * len(live[0])
    assert [e[3] for e in live[1]] == [True] * len(live[1])
    assert cache._nmain == len(live[1])


@pytest.mark.parametrize("nested", sorted(_NESTED))
@pytest.mark.parametrize("outer_key", ["str", "int", "wrapped"])
def test_a_use_nested_in_a_write_is_done_or_refused(
    cls: type[Cache], nested: str, outer_key: str
) -> None:
    maxsize = 64
    cache: Cache = cls(maxsize)
    for n in range(maxsize):
        cache[f"seed-{n}"] = n
    if outer_key == "wrapped":
        cache[_Key(3)] = "seed"
    run = _NESTED[nested]
    outcomes: list[str] = []
    changed: list[str] = []
    counter = [0]

    def hook(frame: FrameType, event: str, arg: object) -> None:
        if event == "c_call" and frame.f_code in _METHODS:
            counter[0] += 1
            try:
                run(cache, counter[0])
            except RuntimeError as error:
                outcomes.append(str(error))
            else:
                outcomes.append("done")

    def work() -> None:
        sys.setprofile(hook)
        try:
            for n in range(40):
                key: object = {"str": f"outer-{n}", "int": n, "wrapped": _Key(n % 5)}[outer_key]
                try:
                    cache[key] = n
                except RuntimeError as error:
                    # Only a key that is compared with the token given back
                    # may find the cache changed at every try.
                    changed.append(str(error))
                    continue
                finally:
                    sys.setprofile(None)
                # The outer write happened, whatever ran inside it (a nested
                # clear may have run after it).
                assert cache.get(key, n) == n if nested == "clear" else cache[key] == n
                sys.setprofile(hook)
        finally:
            sys.setprofile(None)

    # On a thread, so that a deadlock fails the test instead of hanging it.
    errors: list[BaseException] = []
    thread = threading.Thread(target=lambda: _catching(work, errors))
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive(), "a nested use deadlocked"
    assert errors == []
    # Nested uses ran at points where the token was held (refused) and where
    # it was free (done): both paths were taken.
    assert set(outcomes) == {"done", _busy(cache)}
    assert set(changed) <= ({_changed(cache)} if outer_key == "wrapped" else set())
    _check(cache, maxsize)


def _catching(work: Callable[[], None], errors: list[BaseException]) -> None:
    try:
        work()
    except BaseException as error:  # reported by the test's thread
        errors.append(error)


def _hold_the_token_in_set(cache: Cache, inside: threading.Event, go: threading.Event) -> None:
    """Run ``cache.set`` on this thread and stop it while it holds the token
    (FIFOCache's in ``set`` itself, its fast path; S3FIFOCache's in ``_set``)."""

    def hook(frame: FrameType, event: str, arg: object) -> None:
        # A call in the cache made with the token taken.
        if event == "c_call" and frame.f_code in _METHODS and not cache._token:
            sys.setprofile(None)
            inside.set()
            assert go.wait(timeout=60)

    sys.setprofile(hook)
    try:
        cache.set("held-by-set", 1)
    finally:
        sys.setprofile(None)


@pytest.mark.parametrize(
    "other",
    [
        lambda c: c.set("from-other", 2),
        lambda c: c.set(_Key(1), 2),
        lambda c: c.pop("seed-3"),
        lambda c: c.clear(),
        lambda c: c.stats(),
    ],
    ids=["set str", "set wrapped", "pop", "clear", "stats"],
)
def test_a_write_waits_for_a_set_on_another_thread(
    cls: type[Cache], other: Callable[[Cache], object]
) -> None:
    cache: Cache = cls(4)
    for n in range(4):
        cache[f"seed-{n}"] = n
    before = cache.stats()
    inside, go, finished = threading.Event(), threading.Event(), threading.Event()
    errors: list[BaseException] = []
    holder = threading.Thread(
        target=lambda: _catching(lambda: _hold_the_token_in_set(cache, inside, go), errors)
    )
    holder.start()
    assert inside.wait(timeout=60)
    waiter = threading.Thread(
        target=lambda: _catching(lambda: (other(cache), finished.set())[0], errors)
    )
    waiter.start()
    # While the set holds the token the other write cannot have happened.
    assert not finished.wait(timeout=0.3)
    assert cache.get("seed-3") == 3  # reads never take the token
    go.set()
    holder.join(timeout=60)
    waiter.join(timeout=60)
    assert not holder.is_alive()
    assert not waiter.is_alive(), "the waiting write never woke"
    assert errors == []
    assert finished.is_set()
    _check(cache, 4)
    assert cache.stats().inserts >= before.inserts + 1


def _hold_the_token_in(
    cache: FIFOCache[Any, Any],
    run: Callable[[FIFOCache[Any, Any]], object],
    inside: threading.Event,
    go: threading.Event,
) -> None:
    """Run ``run(cache)`` on this thread and stop it at the first call a cache
    method makes with the token taken."""

    def hook(frame: FrameType, event: str, arg: object) -> None:
        if event == "c_call" and frame.f_code in _METHODS and not cache._token:
            sys.setprofile(None)
            inside.set()
            assert go.wait(timeout=60)

    sys.setprofile(hook)
    try:
        run(cache)
    finally:
        sys.setprofile(None)


@pytest.mark.parametrize(
    "held_by",
    [
        lambda c: c.set("held", 1),
        lambda c: c.set(_Key(2), 1),
        lambda c: c.pop("seed-1"),
    ],
    ids=["set str", "set wrapped", "pop"],
)
def test_the_token_names_its_holder_not_its_last_one(
    held_by: Callable[[FIFOCache[Any, Any]], object],
) -> None:
    """A thread that took the token before (a fast set names it) waits for
    another thread's hold like any other thread, and is never refused as if
    it held the token itself."""
    cache: FIFOCache[Any, Any] = FIFOCache(4)
    for n in range(4):
        cache[f"seed-{n}"] = n
    inside, go, took, finished = (threading.Event() for _ in range(4))
    errors: list[BaseException] = []

    def waiter_work() -> None:
        cache.set("waiter-first", 0)  # this thread takes (and names itself) first
        took.set()
        assert inside.wait(timeout=60)
        cache.set("waiter-second", 1)  # the token is out: a fast set that must wait
        cache.pop("seed-3", None)  # and a general write
        finished.set()

    waiter = threading.Thread(target=lambda: _catching(waiter_work, errors))
    waiter.start()
    assert took.wait(timeout=60)
    holder = threading.Thread(
        target=lambda: _catching(lambda: _hold_the_token_in(cache, held_by, inside, go), errors)
    )
    holder.start()
    assert inside.wait(timeout=60)
    assert not finished.wait(timeout=0.3)  # waiting, not refused
    go.set()
    holder.join(timeout=60)
    waiter.join(timeout=60)
    assert not holder.is_alive()
    assert not waiter.is_alive()
    assert errors == []
    assert finished.is_set()
    assert cache.get("waiter-second") == 1
    _check(cache, 4)


class _Interrupt(BaseException):
    """What a signal handler raises (KeyboardInterrupt, say)."""


_OPERATIONS: dict[str, Callable[[Cache, int], object]] = {
    "set str": lambda c, n: c.set(f"s-{n}", n),  # a new key each time, for every policy
    "set int": lambda c, n: c.set(n, n),
    "set wrapped": lambda c, n: c.set(_Key(n % 5), n),
    "set_many": lambda c, n: c.set_many([(f"m-{n}", n), (_Key(n % 3), n)]),
    "pop": lambda c, n: c.pop(f"k-{n - 1}", None),
    "clear": lambda c, n: c.clear(),
    "stats": lambda c, n: c.stats(),
}


def _in_the_cache(frame: FrameType, event: str) -> bool:
    """Whether a signal handler could run here, inside a cache method: as
    a C call it made returns, or as a function of the cache's own that it
    called is entered (not a collector's callback that runs meanwhile)."""
    if event == "c_return":
        return frame.f_code in _METHODS
    caller = frame.f_back
    return (
        event == "call"
        and frame.f_code.co_filename.startswith(_SOURCES)
        and caller is not None
        and caller.f_code in _METHODS
    )


def _interrupted_at(point: int, run: Callable[[], object]) -> bool:
    """Run ``run`` and raise _Interrupt at the ``point``-th place inside a
    cache method where a signal handler could run; whether there were
    that many."""
    calls = 0

    def hook(frame: FrameType, event: str, arg: object) -> None:
        nonlocal calls
        if _in_the_cache(frame, event):
            if calls == point:
                sys.setprofile(None)
                raise _Interrupt
            calls += 1

    sys.setprofile(hook)
    try:
        run()
    except _Interrupt:
        return True
    finally:
        sys.setprofile(None)
    return False


def _used_from_another_thread(cache: Cache) -> None:
    errors: list[BaseException] = []

    def use() -> None:
        cache.set("other", 1)
        cache.pop("other")

    # A daemon: a cache left locked fails the test instead of hanging the run.
    other = threading.Thread(target=lambda: _catching(use, errors), daemon=True)
    other.start()
    other.join(timeout=60)
    assert not other.is_alive(), "the cache stayed locked"
    assert errors == []


@pytest.mark.parametrize("operation", sorted(_OPERATIONS))
def test_an_exception_as_any_call_returns_leaves_the_cache_usable(
    cls: type[Cache], operation: str
) -> None:
    """A signal handler may raise as any call inside a write returns. The
    write is then cut short, but the cache is never left locked or busy: this
    thread and others go on using it, within its bound."""
    maxsize = 8
    cache: Cache = cls(maxsize)
    for n in range(maxsize):
        cache[f"k-{n}"] = n
    cache[_Key(1)] = "wrapped"
    run = _OPERATIONS[operation]
    point = 0
    while _interrupted_at(point, lambda: run(cache, point)):  # noqa: B023 - called at once
        _used_from_another_thread(cache)  # a lock or a token left taken hangs it
        cache.set(f"here-{point}", point)  # a busy flag left set refuses it
        assert cache.get(f"here-{point}") == point
        _check(cache, maxsize)
        point += 1
    assert point > 3  # each of the operation's calls was interrupted in turn


def _fresh_order(cache: Cache, maxsize: int) -> None:
    """Writes go on from this thread and another, within the bound, and the
    order is whole again: for FIFO, maxsize new keys leave only them, in
    order; for S3-FIFO, the cache goes on as a clean copy of it does (every
    key, its queue and freq, in order)."""
    errors: list[BaseException] = []

    def insert(prefix: str) -> None:
        for n in range(4 * maxsize):
            cache[f"{prefix}-{n}"] = n
            cache[_Key(1_000 + n)] = n
            cache.set_many([(n, n)])
            assert len(cache) <= maxsize

    other = threading.Thread(target=lambda: _catching(lambda: insert("there"), errors), daemon=True)
    other.start()
    other.join(timeout=60)
    assert not other.is_alive(), "the cache stayed locked"
    assert errors == []
    insert("here")
    if isinstance(cache, S3FIFOCache):
        clone = copy.copy(cache)
        for n in range(4 * maxsize):
            for each in (cache, clone):
                each[f"fresh-{n}"] = n
                each.get(f"fresh-{n // 2}")
            assert cache.items() == clone.items()
            assert cache.__reduce__()[2][4] == clone.__reduce__()[2][4]
            _check(cache, maxsize)
        return
    fresh = [f"fresh-{n}" for n in range(maxsize)]
    for key in fresh:
        cache[key] = key
    assert cache.keys() == fresh
    _check(cache, maxsize)


@pytest.mark.parametrize("maxsize", [1, 2, 3, 8])
@pytest.mark.parametrize("operation", sorted(_OPERATIONS))
def test_writes_cut_short_in_a_row_never_break_later_ones(
    cls: type[Cache], operation: str, maxsize: int
) -> None:
    """Every place of an operation where a signal handler could raise, in
    turn, three times over, with nothing in between: later writes neither
    raise nor break the bound, and the order repairs itself."""
    cache: Cache = cls(maxsize)
    for n in range(maxsize):
        cache[f"k-{n}"] = n
    cache[_Key(1)] = "wrapped"
    cache.pop(f"k-{maxsize - 1}", None)  # a stale entry in the order
    cache["k-0"] = "again"
    run = _OPERATIONS[operation]
    cut = 0
    for _ in range(3):
        point = 0
        while _interrupted_at(point, lambda: run(cache, point)):  # noqa: B023 - called at once
            point += 1
        cut += point
    assert cut >= 9  # three or more places, three times over
    _fresh_order(cache, maxsize)


def _cut_after(name: str, run: Callable[[], object]) -> bool:
    """Run ``run``, raising _Interrupt as the first C call named ``name``
    that a cache method makes returns; whether one did."""

    def hook(frame: FrameType, event: str, arg: object) -> None:
        named = getattr(arg, "__name__", "") == name
        if event == "c_return" and frame.f_code in _METHODS and named:
            sys.setprofile(None)
            raise _Interrupt

    sys.setprofile(hook)
    try:
        run()
    except _Interrupt:
        return True
    finally:
        sys.setprofile(None)
    return False


@pytest.mark.parametrize("maxsize", [1, 4])
@pytest.mark.parametrize("name", ["popleft", "pop", "append"])
def test_an_eviction_cut_short_after_the_order_pops(
    cls: type[Cache], maxsize: int, name: str
) -> None:
    """The reported case: Ctrl-C as an eviction's ``popleft()`` (or the
    entry's ``pop``, or a deque's ``append``) returns, more times in a row
    than there are entries."""
    cache: Cache = cls(maxsize)
    for n in range(maxsize):
        cache[f"k-{n}"] = n
    for n in range(3 * maxsize):
        key: object = f"new-{n}" if n % 2 else _Key(n)
        assert _cut_after(name, lambda: cache.set(key, n))  # noqa: B023 - called at once
        assert len(cache) <= maxsize
    _fresh_order(cache, maxsize)
