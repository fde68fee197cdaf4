"""BaseModule and Module: the lifecycle every module has.

Subclasses override ``initialize()`` and ``cleanup()`` themselves, as the spec
does; ``__init_subclass__`` wraps each override in a guard, so for every
subclass:

- States go CREATED -> INITIALIZING -> READY -> CLEANING_UP -> CLOSED, and
  FAILED when ``initialize()`` (or ``cleanup()``) raises.
- ``initialize()`` on a READY module does nothing. Concurrent calls run the
  body once and all get its outcome (the very exception, for a failure);
  a waiter that is cancelled does not cancel the body.
- ``super().initialize()`` inside an override runs the parent's body, not the
  guard again; the same holds for ``cleanup()``.
- An exception leaves the module FAILED, is logged with the module's name and
  reaches the caller unchanged. Cancellation leaves it FAILED too.
- ``cleanup()`` on CREATED or CLOSED does nothing; on READY or FAILED it runs
  the body (so what a failed ``initialize()`` half made can be released) and
  leaves CLOSED. A CLOSED or FAILED module can be initialized again.
- Modules whose initializations wait on each other in a cycle (A awaits B
  awaits A, in one task or across tasks) get CircularDependencyError naming
  the chain as soon as the cycle closes, never a deadlock.
- ``async with module:`` initializes, then always cleans up.
- Every transition is logged on ``pepperpy_core.module.<name>`` with its
  elapsed time, and reported to listeners added with ``add_listener``.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, ClassVar, Final, Generic, Literal, Self, TypeVar

from pepperpy_core.config import ModuleConfig
from pepperpy_core.errors import CircularDependencyError, LifecycleError

C = TypeVar("C")
Phase = Literal["initialize", "cleanup"]


class ModuleState(enum.Enum):
    """Where a module is in its lifecycle."""

    CREATED = "created"
    INITIALIZING = "initializing"
    READY = "ready"
    CLEANING_UP = "cleaning_up"
    CLOSED = "closed"
    FAILED = "failed"


#: Called as ``listener(module, old_state, new_state)`` after each transition.
Listener = Callable[["BaseModule", ModuleState, ModuleState], None]

_log: Final = logging.getLogger("pepperpy_core.module")

#: The guarded lifecycle calls running in this context, innermost last, each
#: with the body the guard started (a super() call runs a different body).
_Active = tuple[tuple["BaseModule", Phase, Callable[[Any], Awaitable[None]]], ...]
_ACTIVE: ContextVar[_Active] = ContextVar("pepperpy_core_active_lifecycle", default=())

#: Which modules' initializations wait on which others' right now, across
#: tasks: module -> the modules it awaits. A cycle here is a deadlock.
#: Keyed by id(), so modules need not be hashable.
_WAITS_FOR: dict[int, list[BaseModule]] = {}


def _wait_on(waiter: BaseModule, target: BaseModule) -> None:
    _WAITS_FOR.setdefault(id(waiter), []).append(target)


def _done_waiting(waiter: BaseModule, target: BaseModule) -> None:
    waits = _WAITS_FOR[id(waiter)]
    waits.remove(target)
    if not waits:
        del _WAITS_FOR[id(waiter)]


@dataclass
class _Lifecycle:
    state: ModuleState = ModuleState.CREATED
    pending: asyncio.Future[None] | None = None
    listeners: list[Listener] = field(default_factory=list)


def _cycle_from(start: BaseModule, target: BaseModule) -> list[BaseModule] | None:
    """A path start -> ... -> target along _WAITS_FOR, if there is one."""
    stack: list[tuple[BaseModule, list[BaseModule]]] = [(start, [start])]
    seen: set[int] = set()
    while stack:
        node, path = stack.pop()
        if node is target:
            return path
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.extend((nxt, [*path, nxt]) for nxt in _WAITS_FOR.get(id(node), ()))
    return None


def _guard(raw: Callable[[Any], Awaitable[None]], phase: Phase) -> Callable[[Any], Awaitable[None]]:
    if not inspect.iscoroutinefunction(raw):
        raise TypeError(f"{raw.__qualname__} must be an async def method")

    @functools.wraps(raw)
    async def guarded(self: BaseModule) -> None:
        active = _ACTIVE.get()
        if active and active[-1][0] is self and active[-1][1] == phase and active[-1][2] is not raw:
            await raw(self)  # super().<phase>() inside an override
            return
        if phase == "initialize":
            await self._run_initialize(raw, active)
        else:
            await self._run_cleanup(raw, active)

    guarded.__pepperpy_guarded__ = True  # type: ignore[attr-defined]
    return guarded


class BaseModule:
    """The module contract: ``initialize()``, ``cleanup()`` and
    ``health_check()``, with the lifecycle guarantees in this module's doc.

    ``config`` may be a ModuleConfig or any object a subclass chooses (the
    spec's DBConfig is a plain dataclass); ``name`` and ``version`` come from
    a ModuleConfig when there is one, else from the class.
    """

    config: Any

    _guarded: ClassVar[tuple[str, ...]] = ("initialize", "cleanup")

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for phase in ("initialize", "cleanup"):
            raw = cls.__dict__.get(phase)
            if raw is not None and not getattr(raw, "__pepperpy_guarded__", False):
                setattr(cls, phase, _guard(raw, phase))

    def __init__(self, config: Any = None) -> None:
        self.config = config

    # --- identity ------------------------------------------------------------

    @property
    def name(self) -> str:
        """The config's name when it is a ModuleConfig, else the class name."""
        config = getattr(self, "config", None)
        if isinstance(config, ModuleConfig):
            return config.name
        return type(self).__name__

    @property
    def version(self) -> str:
        """The config's version when it is a ModuleConfig, else "0.0.0"."""
        config = getattr(self, "config", None)
        if isinstance(config, ModuleConfig):
            return config.version
        return "0.0.0"

    @property
    def state(self) -> ModuleState:
        """The current lifecycle state."""
        return self._lifecycle().state

    @property
    def logger(self) -> logging.Logger:
        """The module's logger: ``pepperpy_core.module.<name>``."""
        return _log.getChild(self.name)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} {self.state.value}>"

    # --- the contract ----------------------------------------------------------

    async def initialize(self) -> None:
        """Initialize the module (subclasses override; the base does nothing)."""

    async def cleanup(self) -> None:
        """Release what the module holds (subclasses override)."""

    async def health_check(self) -> bool:
        """Whether the module is healthy: by default, whether it is READY."""
        return self.state is ModuleState.READY

    async def __aenter__(self) -> Self:
        try:
            await self.initialize()
        except BaseException:
            await self.cleanup()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.cleanup()

    # --- listeners -------------------------------------------------------------

    def add_listener(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(module, old, new)`` after every transition; returns
        a function that removes it. A listener that raises is logged, never
        allowed to break the lifecycle."""
        listeners = self._lifecycle().listeners
        listeners.append(listener)

        def remove() -> None:
            if listener in listeners:
                listeners.remove(listener)

        return remove

    # --- the guard ---------------------------------------------------------------

    def _lifecycle(self) -> _Lifecycle:
        # Created on first use, so a subclass that skips super().__init__()
        # still gets every guarantee.
        try:
            lifecycle: _Lifecycle = self.__dict__["_pepperpy_lifecycle"]
        except KeyError:
            lifecycle = self.__dict__.setdefault("_pepperpy_lifecycle", _Lifecycle())
        return lifecycle

    def _transition(self, new: ModuleState) -> None:
        lifecycle = self._lifecycle()
        old, lifecycle.state = lifecycle.state, new
        for listener in list(lifecycle.listeners):
            try:
                listener(self, old, new)
            except Exception:
                self.logger.exception("state listener %r failed on %s -> %s", listener, old, new)

    async def _await_other(self, active: _Active, pending: asyncio.Future[None]) -> None:
        """Wait for this module's in-flight initialization, run by another
        caller, first refusing a wait that would close a cycle."""
        waiter = active[-1][0] if active else None
        if waiter is not None:
            path = _cycle_from(self, waiter)
            if path is not None:
                raise CircularDependencyError([m.name for m in (waiter, *path)])
            _wait_on(waiter, self)
        try:
            await asyncio.shield(pending)
        finally:
            if waiter is not None:
                _done_waiting(waiter, self)

    async def _run_initialize(
        self,
        raw: Callable[[Any], Awaitable[None]],
        active: _Active,
    ) -> None:
        lifecycle = self._lifecycle()
        for i, (module, phase, _) in enumerate(active):
            if module is self and phase == "initialize":
                chain = [m.name for m, p, _ in active[i:] if p == "initialize"] + [self.name]
                raise CircularDependencyError(chain)
        if lifecycle.state is ModuleState.READY:
            return
        if lifecycle.state is ModuleState.INITIALIZING and lifecycle.pending is not None:
            await self._await_other(active, lifecycle.pending)
            return
        if lifecycle.state is ModuleState.CLEANING_UP:
            raise LifecycleError(f"{self.name}: cannot initialize while it is cleaning up")

        pending: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        lifecycle.pending = pending
        waiter = active[-1][0] if active else None
        if waiter is not None:
            _wait_on(waiter, self)
        token = _ACTIVE.set((*active, (self, "initialize", raw)))
        self._transition(ModuleState.INITIALIZING)
        started = time.perf_counter()
        try:
            await raw(self)
        except BaseException as exc:
            elapsed = (time.perf_counter() - started) * 1e3
            self._transition(ModuleState.FAILED)
            if isinstance(exc, asyncio.CancelledError):
                self.logger.warning("initialize of %s cancelled after %.2f ms", self.name, elapsed)
                outcome: BaseException = LifecycleError(
                    f"{self.name}: initialization was cancelled"
                )
            else:
                self.logger.error(
                    "initialize of %s failed after %.2f ms: %r", self.name, elapsed, exc
                )
                outcome = exc
            pending.set_exception(outcome)
            pending.exception()  # retrieved: no warning when nobody else waits
            raise
        else:
            elapsed = (time.perf_counter() - started) * 1e3
            self._transition(ModuleState.READY)
            self.logger.info("initialized %s in %.2f ms", self.name, elapsed)
            pending.set_result(None)
        finally:
            _ACTIVE.reset(token)
            lifecycle.pending = None
            if waiter is not None:
                _done_waiting(waiter, self)

    async def _run_cleanup(
        self,
        raw: Callable[[Any], Awaitable[None]],
        active: _Active,
    ) -> None:
        lifecycle = self._lifecycle()
        if any(module is self for module, _, _ in active):
            # Called from this module's own initialize() (to undo half-made
            # work) or its own cleanup chain: run the body, leave the state.
            await raw(self)
            return
        while True:
            state = lifecycle.state
            if state in (ModuleState.CREATED, ModuleState.CLOSED):
                return
            in_flight = lifecycle.pending
            if in_flight is None:
                break
            # Another caller is initializing or cleaning up: let it finish.
            with _suppress_failure():
                await asyncio.shield(in_flight)
            if state is ModuleState.CLEANING_UP:
                return
        pending = asyncio.get_running_loop().create_future()
        lifecycle.pending = pending
        token = _ACTIVE.set((*active, (self, "cleanup", raw)))
        self._transition(ModuleState.CLEANING_UP)
        started = time.perf_counter()
        try:
            await raw(self)
        except BaseException as exc:
            elapsed = (time.perf_counter() - started) * 1e3
            self._transition(ModuleState.FAILED)
            self.logger.error("cleanup of %s failed after %.2f ms: %r", self.name, elapsed, exc)
            pending.set_result(None)
            raise
        else:
            elapsed = (time.perf_counter() - started) * 1e3
            self._transition(ModuleState.CLOSED)
            self.logger.info("cleaned up %s in %.2f ms", self.name, elapsed)
            pending.set_result(None)
        finally:
            _ACTIVE.reset(token)
            lifecycle.pending = None


class _suppress_failure:
    """Swallow the in-flight initialization's failure while cleanup waits on it
    (its caller already got it); cancellation of the waiter itself propagates."""

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        return exc is not None and not isinstance(exc, asyncio.CancelledError)


class Module(BaseModule, Generic[C]):
    """The everyday base class: a BaseModule whose ``config`` is typed.

    ``Module[DBConfig]`` types ``self.config`` as DBConfig; an unparameterized
    ``Module`` (as in the spec) leaves it Any.
    """

    config: C

    def __init__(self, config: C | None = None) -> None:
        super().__init__(config)


# BaseModule's own bodies get the guard too, for subclasses that override neither.
for _phase in ("initialize", "cleanup"):
    setattr(BaseModule, _phase, _guard(getattr(BaseModule, _phase), _phase))
del _phase
