"""Single flight: one run of a loader per key at a time, shared by every
concurrent caller, and never a wait on itself.

``SingleFlight.run(key, load)`` starts ``load()`` in a task of its own unless
one runs for ``key`` already, and waits for its outcome. Each caller waits on
a future of its own, which the load settles when it ends: a caller that is
cancelled stops waiting and the load goes on for the others (when the last
caller leaves, the load is cancelled: nobody wants it any more), and a
thousand callers cost a thousand futures woken in one pass, nothing more. A
load cancelled as a whole (``cancel_all``) gives every waiter a
LifecycleError.

Loads that wait for each other are tracked: the code a load runs (and every
task it starts) knows its load through a context variable, and each wait
records which load waits for which. A wait that would close a circle (a
loader asking for its own key, or A's loader for B while B's waits for A,
in one process, through any number of single flights) raises
CircularLoadError at once, where it would otherwise wait for ever.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from contextvars import ContextVar
from typing import Any, Generic, TypeVar

from pepperpy_core.errors import CircularLoadError, LifecycleError

V = TypeVar("V")


class _Flight:
    """One load under way: what it is for, its task, who waits for its
    outcome, and the loads it waits for itself."""

    __slots__ = ("key", "owner", "task", "waiters", "waiting")

    def __init__(self, owner: SingleFlight[Any], key: Hashable) -> None:
        self.owner = owner
        self.key = key
        self.task: asyncio.Task[Any] | None = None
        self.waiters: list[asyncio.Future[Any]] = []
        self.waiting: list[_Flight] = []

    def settle(self, task: asyncio.Task[Any]) -> None:
        """Hand the load's outcome to every caller still waiting."""
        waiters, self.waiters = self.waiters, []
        if task.cancelled():
            error: BaseException | None = LifecycleError(
                f"{self.owner.name}: the load of {self.key!r} was cancelled"
            )
        else:
            error = task.exception()
        for waiter in waiters:
            if waiter.done():  # that caller was cancelled
                continue
            if error is None:
                waiter.set_result(task.result())
            else:
                waiter.set_exception(error)

    def __repr__(self) -> str:
        return f"{self.owner.name}[{self.key!r}]"


#: The load whose loader the running code belongs to.
_CURRENT: ContextVar[_Flight | None] = ContextVar("pepperpy_core_current_load", default=None)


def _path(start: _Flight, goal: _Flight) -> list[_Flight] | None:
    """The loads from ``start`` to ``goal`` along the waits, if they lead there."""
    stack: list[tuple[_Flight, list[_Flight]]] = [(start, [start])]
    seen: set[int] = set()
    while stack:
        flight, path = stack.pop()
        if flight is goal:
            return path
        if id(flight) in seen:
            continue
        seen.add(id(flight))
        stack.extend((nxt, [*path, nxt]) for nxt in flight.waiting)
    return None


class SingleFlight(Generic[V]):
    """One load per key at a time (see this module's doc); errors name the
    loads by ``owner``'s ``name`` (read when needed: a module's may change)."""

    def __init__(self, owner: object) -> None:
        self._owner = owner
        self._flights: dict[Hashable, _Flight] = {}

    @property
    def name(self) -> str:
        """Whose loads these are."""
        name = getattr(self._owner, "name", None)
        return name if isinstance(name, str) else type(self._owner).__name__

    def __contains__(self, key: Hashable) -> bool:
        return key in self._flights

    def __len__(self) -> int:
        return len(self._flights)

    async def run(self, key: Hashable, load: Callable[[], Awaitable[V]]) -> V:
        """The value of the load for ``key`` under way, or of ``load()``,
        started now; CircularLoadError if that load waits for this caller."""
        flight = self._flights.get(key)
        if flight is None:
            flight = self._flights[key] = _Flight(self, key)
            task = flight.task = asyncio.ensure_future(self._fly(flight, load))
            task.add_done_callback(flight.settle)
        current = _CURRENT.get()
        if current is not None:
            path = _path(flight, current)
            if path is not None:
                names = " -> ".join(repr(f) for f in [current, *path])
                raise CircularLoadError(f"a load would wait for itself: {names}", path)
            current.waiting.append(flight)
        waiter: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        flight.waiters.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if flight.task is not None and all(w.done() for w in flight.waiters):
                flight.task.cancel()  # the last caller left
            raise
        finally:
            if current is not None:
                current.waiting.remove(flight)

    async def _fly(self, flight: _Flight, load: Callable[[], Awaitable[V]]) -> V:
        _CURRENT.set(flight)  # this task's own context, and its children's
        try:
            return await load()
        finally:
            if self._flights.get(flight.key) is flight:
                del self._flights[flight.key]

    def cancel_all(self) -> list[asyncio.Task[Any]]:
        """Cancel every load under way and forget them; their tasks, to await."""
        flights, self._flights = self._flights, {}
        tasks = [f.task for f in flights.values() if f.task is not None]
        for task in tasks:
            task.cancel()
        return tasks
