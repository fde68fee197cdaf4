"""Deadlines for the pure-Python caches' entries: the twin of
``rust/algo/src/expiry.rs``, and the checks both backends make of what a
user gives (the same messages as the extension's).

An entry expires at the earlier of its write deadline (a time to live) and
its idle deadline (moved on by each read: a time to idle), when the clock
reads at least that. ``Timers`` keeps, per dict key, a *timer* list
``[write, idle, filed, dict key]`` and files timers in a min-heap of items
``[at, n, timer]``, lazily: an item whose timer is no longer its dict key's
(the entry left, or was written again) is skipped when it surfaces, and one
whose deadline moved later is filed again then. ``filed`` is the earliest
item of a timer in the heap, so that a deadline moved earlier (a clock that
went back) is filed at once. ``n`` makes every item unique, so the heap
compares floats and ints only (C code), never a timer or a key. The heap is
compacted in place when stale items outnumber live ones.

Nothing here allocates a container while the cache's lock is held (that
could start the garbage collector, whose finalizers are user code): items
are made before locking, ``heapq`` and ``list.append`` only resize.
"""

from __future__ import annotations

import heapq
import itertools
import math
import time
from collections.abc import Callable
from typing import Any, Final, cast

#: An entry's timer: [write deadline, idle deadline, earliest filed, dict key].
Timer = list[Any]
#: A heap item: [deadline it was filed at, unique number, timer].
Item = list[Any]

INF: Final = math.inf
#: The default clock (what the extension reads too: CLOCK_MONOTONIC).
monotonic: Final = time.monotonic
#: Marks a timer already kept during a compaction: a float object of its
#: own (found by identity), since readers without the lock compare with it;
#: as infinite, it sends a reader that moves a deadline to the locked path.
_KEPT: Final = float("inf")


def number(value: object) -> float | None:
    """``value`` as a float if it is an int (not a bool) or a float, read
    without calling any method of its class (an int beyond a float's range
    is infinite); None for anything else."""
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    try:
        return int.__float__(value)
    except OverflowError:
        return INF


def check_seconds(value: object, what: str) -> float | None:
    """``value`` as seconds > 0, None kept (no limit): TypeError for what is
    not a number, ValueError for one that is not finite and > 0."""
    if value is None:
        return None
    seconds = number(value)
    if seconds is None:
        raise TypeError(f"{what} must be a number of seconds or None, not {type(value).__name__}")
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"{what} must be a finite number of seconds > 0, got {value!r}")
    return seconds


def check_clock(clock: object) -> Callable[[], object] | None:
    """``clock`` if it is callable, None kept; TypeError otherwise."""
    if clock is None:
        return None
    if not callable(clock):
        raise TypeError(
            "clock must be a callable returning seconds, or None, not " + type(clock).__name__
        )
    return cast("Callable[[], object]", clock)


def reading(value: object) -> float:
    """What a clock returned, as seconds; TypeError for anything but a finite number."""
    seconds = number(value)
    if seconds is None:
        raise TypeError(f"clock() must return a number of seconds, not {type(value).__name__}")
    if not math.isfinite(seconds):
        raise TypeError(f"clock() must return a finite number of seconds, got {value!r}")
    return seconds


def check_expiry(part: object, count: int, bad_state: str) -> tuple[Any, ...]:
    """``(ttl, tti, clock, left)`` of a state's expiry part, ``left`` a list
    of None or (write, idle) seconds left (> 0, infinite for none) per item;
    TypeError or ValueError when malformed."""
    shape = f"{bad_state}: expiry must be a (ttl, tti, clock, left) tuple"
    if type(part) is not tuple or len(part) != 4:
        raise TypeError(shape)
    ttl = check_seconds(part[0], "ttl")
    tti = check_seconds(part[1], "tti")
    clock = check_clock(part[2])
    left = part[3]
    if type(left) is not list:
        raise TypeError(shape)
    if len(left) != count:
        raise ValueError(f"{bad_state}: expiry has {len(left)} entries for {count} items")
    for entry in left:
        if entry is None:
            continue
        if not (
            type(entry) is tuple
            and len(entry) == 2
            and all(type(s) is float and s > 0 for s in entry)
        ):
            raise ValueError(f"{bad_state}: expiry has a bad entry")
    return ttl, tti, clock, left


class Timers:
    """The deadlines of a cache's entries, by dict key (see the module's docstring)."""

    __slots__ = ("deadlines", "heap", "numbers")

    def __init__(self) -> None:
        self.deadlines: dict[object, Timer] = {}
        self.heap: list[Item] = []
        self.numbers = itertools.count()

    @staticmethod
    def made(write: float, idle: float) -> tuple[Timer, Item]:
        """A timer and its heap item, made before locking (``file`` them then)."""
        at = min(write, idle)
        timer: Timer = [write, idle, at, None]
        return timer, [at, 0, timer]

    def file(self, dkey: object, timer: Timer, item: Item) -> None:
        """Give the entry of ``dkey`` the ``timer`` of a write (lock held)."""
        timer[3] = dkey
        self.deadlines[dkey] = timer
        item[1] = next(self.numbers)
        heapq.heappush(self.heap, item)
        if len(self.heap) > 2 * len(self.deadlines) + 32:
            self._compact()

    def touch(self, dkey: object, idle: float, spare: Item) -> None:
        """Move the idle deadline of ``dkey``'s entry (a read; lock held);
        ``spare`` (made before locking) files it at once if it moved earlier."""
        timer = self.deadlines.get(dkey)
        if timer is None:
            return
        timer[1] = idle
        at = timer[0] if timer[0] < idle else idle
        if at < timer[2]:
            timer[2] = spare[0] = at
            spare[1] = next(self.numbers)
            spare[2] = timer
            heapq.heappush(self.heap, spare)

    def due(self, now: float) -> object:
        """The dict key of an entry due at ``now`` (the earliest), or
        ``_NONE_DUE``; the caller removes that entry and its timer."""
        heap = self.heap
        deadlines = self.deadlines
        while heap and heap[0][0] <= now:
            item = heapq.heappop(heap)
            timer: Timer = item[2]
            dkey = timer[3]
            if deadlines.get(dkey) is not timer:
                continue  # the entry left, or was written again
            at = timer[0] if timer[0] < timer[1] else timer[1]
            if now >= at:
                return dkey
            # Read since it was filed: file it again at its new deadline.
            timer[2] = item[0] = at
            item[1] = next(self.numbers)
            heapq.heappush(heap, item)
        return NONE_DUE

    def _compact(self) -> None:
        """Keep one item per live timer, in place, filed at its deadline."""
        heap = self.heap
        deadlines = self.deadlines
        kept = 0
        for i in range(len(heap)):
            item = heap[i]
            timer: Timer = item[2]
            if deadlines.get(timer[3]) is timer and timer[2] is not _KEPT:
                timer[2] = _KEPT
                heap[kept] = item
                kept += 1
        while len(heap) > kept:
            heap.pop()  # (a slice would be an allocation)
        for i in range(kept):
            item = heap[i]
            timer = item[2]
            timer[2] = item[0] = timer[0] if timer[0] < timer[1] else timer[1]
        heapq.heapify(heap)


#: What ``Timers.due`` returns when nothing is due. Never a dict key.
NONE_DUE: Final = object()
