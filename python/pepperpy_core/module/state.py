"""StateModule[T]: typed state with atomic updates and change subscription.

- ``get_state()`` returns the current state; before any was set it returns
  the ``initial`` state given at construction, or raises StateNotSetError.
- ``set_state(state)`` replaces it; ``update_state(fn)`` applies ``fn`` to the
  current state and stores the result, atomically with respect to every other
  coroutine (nothing is awaited between the read and the write), and leaves
  the state unchanged when ``fn`` raises.
- ``state_version`` grows by one per change.
- ``on_change(callback)`` calls ``callback(change)`` synchronously, in order,
  for every change. ``subscribe(buffer=...)`` is an async iterator of changes.
  Policy for a slow subscriber: writers never wait for it; when it is more
  than ``buffer`` changes behind, its oldest pending changes are dropped and
  the next change it receives says how many it missed (``skipped``).
- ``cleanup()`` ends every subscription and forgets the state (back to the
  initial one); the version keeps counting.
"""

from __future__ import annotations

import asyncio
import inspect
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Generic, Self, TypeVar

from pepperpy_core._callbacks import register
from pepperpy_core.errors import StateNotSetError
from pepperpy_core.module.base import BaseModule

T = TypeVar("T")


class _Unset:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<unset>"


_UNSET: Final[Any] = _Unset()


@dataclass(frozen=True, slots=True)
class StateChange(Generic[T]):
    """One change: the version it made, the state before (None for the first)
    and after, and how many earlier changes this subscriber missed."""

    version: int
    old: T | None
    new: T
    skipped: int = 0


class Subscription(Generic[T]):
    """An async iterator of a StateModule's changes; also an async context
    manager that unsubscribes on exit. Iteration ends when the module cleans
    up or ``close()`` is called."""

    def __init__(self, owner: StateModule[T], buffer: int) -> None:
        self._owner = owner
        self._pending: deque[StateChange[T]] = deque()
        self._buffer = buffer
        self._skipped = 0
        self._wakeup = asyncio.Event()
        self._closed = False

    def _push(self, change: StateChange[T]) -> None:
        if self._closed:
            return
        if len(self._pending) >= self._buffer:
            self._pending.popleft()
            self._skipped += 1
        self._pending.append(change)
        self._wakeup.set()

    def close(self) -> None:
        """Stop receiving changes; pending ones are still delivered."""
        if not self._closed:
            self._closed = True
            self._owner._subscriptions.discard(self)
            self._wakeup.set()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> StateChange[T]:
        while not self._pending:
            if self._closed:
                raise StopAsyncIteration
            self._wakeup.clear()
            await self._wakeup.wait()
        change = self._pending.popleft()
        if self._skipped:
            skipped, self._skipped = self._skipped, 0
            change = StateChange(change.version, change.old, change.new, skipped)
        return change

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class StateModule(BaseModule, Generic[T]):
    """A module holding a typed state ``T`` (see this module's doc)."""

    _pepperpy_capability = "StateModule"

    def __init__(self, config: Any = None, *, initial: T = _UNSET, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self._initial: T = initial
        self._state: T = initial
        self._version = 0
        self._callbacks: list[Callable[[StateChange[T]], None]] = []
        self._subscriptions: set[Subscription[T]] = set()

    @property
    def state_version(self) -> int:
        """How many changes the state has seen."""
        return self._version

    async def get_state(self) -> T:
        """The current state; StateNotSetError before any was set."""
        if self._state is _UNSET:
            raise StateNotSetError(f"{self.name}: no state has been set yet")
        return self._state

    async def set_state(self, state: T) -> None:
        """Replace the state and notify every subscriber."""
        self._store(state)

    async def update_state(self, updater: Callable[[T], T]) -> T:
        """Store ``updater(current)`` and return it, atomically; a raising
        updater leaves the state as it was."""
        current = await self.get_state()
        new = updater(current)
        if inspect.isawaitable(new):
            if inspect.iscoroutine(new):
                new.close()
            raise TypeError("update_state needs a plain function, not an async one")
        self._store(new)
        return new

    def _store(self, state: T) -> None:
        old = self._state
        self._state = state
        self._version += 1
        change = StateChange(self._version, None if old is _UNSET else old, state)
        for callback in tuple(self._callbacks):
            try:
                callback(change)
            except Exception:
                self.logger.exception("state callback %r failed", callback)
        for subscription in tuple(self._subscriptions):
            subscription._push(change)

    def on_change(self, callback: Callable[[StateChange[T]], None]) -> Callable[[], None]:
        """Call ``callback(change)`` after every change; returns a function
        that removes it. A callback that raises is logged and skipped."""
        return register(self._callbacks, callback)

    def subscribe(self, buffer: int = 100) -> Subscription[T]:
        """An async iterator of every change from now on (see the policy for
        slow subscribers in this module's doc)."""
        if type(buffer) is not int or buffer < 1:
            raise ValueError(f"buffer must be an int >= 1, got {buffer!r}")
        subscription = Subscription(self, buffer)
        self._subscriptions.add(subscription)
        return subscription

    async def cleanup(self) -> None:
        """End every subscription and forget the state."""
        for subscription in tuple(self._subscriptions):
            subscription.close()
        self._state = self._initial
        await super().cleanup()  # capability modules compose as mixins
