"""An asyncio event loop on a virtual clock, for tests about timeouts.

Whenever the loop would wait for its next timer with nothing else to do, the
clock jumps to that timer instead: ``asyncio.sleep(3600)`` passes at once,
and a timeout of 0.04 s fires after exactly 0.04 s of loop time, however busy
the machine is. I/O that is ready (sockets, a signal's wakeup byte) is still
handled first; with no timer pending the loop blocks on I/O for real.

Only code that measures time through the loop (``loop.time()``,
``call_later``, ``asyncio.sleep``, ``asyncio.timeout``) sees the virtual
clock; threads and other processes do not, so tests that use them keep a
real loop.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


#: Real seconds the loop may wait for I/O with no timer pending.
_IO_BOUND = 60.0


class _Clock:
    __slots__ = ("now",)

    def __init__(self) -> None:
        self.now = 0.0


class _Selector(selectors.DefaultSelector):  # type: ignore[misc,valid-type]
    """A selector that polls, and moves the clock on instead of waiting."""

    def __init__(self, clock: _Clock) -> None:
        super().__init__()
        self._clock = clock

    def select(self, timeout: float | None = None) -> list[Any]:
        ready: list[Any] = super().select(0)
        if ready or timeout == 0:
            return ready
        if timeout is None:  # no timer at all: only I/O can wake the loop
            ready = super().select(_IO_BOUND)
            if not ready:
                raise RuntimeError(
                    f"deadlock: no timer pending and no I/O for {_IO_BOUND} s of real time"
                )
            return list(ready)
        self._clock.now += timeout
        return []


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """A selector event loop whose ``time()`` is virtual (see the module doc)."""

    def __init__(self) -> None:
        self.clock = _Clock()
        super().__init__(_Selector(self.clock))

    def time(self) -> float:
        return self.clock.now


def run_virtual(coro: Coroutine[Any, Any, T], timeout: float = 3600) -> T:
    """``asyncio.run`` on a virtual clock, bounded by ``timeout`` seconds of
    loop time: a hang fails at once (the clock jumps to the bound), and so
    does a deadlock with no timer left (after a minute of real time)."""

    async def bounded() -> T:
        # Not wait_for: on a timeout it waits for the cancellation to end,
        # which a deadlocked call never does.
        task = asyncio.ensure_future(coro)
        await asyncio.wait([task], timeout=timeout)
        if not task.done():
            raise TimeoutError(f"still running after {timeout} s of loop time")
        return task.result()

    loop = VirtualClockLoop()
    try:
        return loop.run_until_complete(bounded())
    finally:
        try:
            _cancel_the_rest(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()


def _cancel_the_rest(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what is still running, as ``asyncio.run`` does, and give it an
    hour of loop time to end (a task that ignores cancellation is dropped)."""
    rest = asyncio.all_tasks(loop)
    for task in rest:
        task.cancel()
    if rest:
        ending = asyncio.gather(*rest, return_exceptions=True)
        loop.run_until_complete(asyncio.wait([ending], timeout=3600))
