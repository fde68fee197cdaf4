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
import contextlib
import enum
import functools
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from types import TracebackType
from typing import Any, Final, Generic, Literal, Self, TypeVar

from pepperpy_core._callbacks import register
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
_INFO: Final = logging.INFO
_clock: Final = time.perf_counter

#: The guarded lifecycle calls running in this context, as a linked list
#: (outer, module, phase, body), innermost first: a cons cell costs one tuple,
#: where copying a whole stack per call would cost more than the guard itself.
#: The body tells a super() call (a different body) from a re-entry.
_Active = tuple["_Active | None", "BaseModule", Phase, Callable[[Any], Awaitable[None]]] | None
_ACTIVE: ContextVar[_Active] = ContextVar("pepperpy_core_active_lifecycle", default=None)


def _frames(active: _Active) -> list[tuple[BaseModule, Phase]]:
    """The (module, phase) of every active call, outermost first."""
    out: list[tuple[BaseModule, Phase]] = []
    while active is not None:
        out.append((active[1], active[2]))
        active = active[0]
    out.reverse()
    return out


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


class _Lifecycle:
    """A module's lifecycle record; ``busy`` while a body runs, ``waiters``
    the futures of callers waiting for that body's outcome."""

    __slots__ = (
        "busy",
        "listeners",
        "logger",
        "logger_config",
        "logger_name",
        "state",
        "waiters",
    )

    def __init__(self) -> None:
        self.state = ModuleState.CREATED
        self.busy = False
        self.waiters: list[asyncio.Future[None]] = []
        self.listeners: list[Listener] = []
        self.logger: logging.Logger | None = None
        self.logger_config: object = None
        self.logger_name = ""

    def settle(self, outcome: BaseException | None) -> None:
        """Hand the finished body's outcome to every caller still waiting."""
        waiters, self.waiters = self.waiters, []
        for waiter in waiters:
            if waiter.done():  # that caller was cancelled
                continue
            if outcome is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(outcome)


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


def _guard(  # noqa: PLR0915 - one function, so the common path makes no extra calls
    raw: Callable[[Any], Awaitable[None]], phase: Phase
) -> Callable[[Any], Awaitable[None]]:
    """Wrap a lifecycle body in the state machine. The common case (a plain
    call from outside any lifecycle) runs here without another coroutine
    layer; nesting, waiting and failure go to BaseModule's helpers."""
    if not inspect.iscoroutinefunction(raw):
        raise TypeError(f"{raw.__qualname__} must be an async def method")
    is_init = phase == "initialize"
    done = ModuleState.READY if is_init else ModuleState.CLOSED
    running = ModuleState.INITIALIZING if is_init else ModuleState.CLEANING_UP

    @functools.wraps(raw)
    async def guarded(self: BaseModule) -> None:
        active = _ACTIVE.get()
        if active is not None and active[1] is self and active[2] == phase and active[3] is not raw:
            await raw(self)  # super().<phase>() inside an override
            return
        lifecycle = self.__dict__.get("_pepperpy_lifecycle") or self._lifecycle()
        state = lifecycle.state
        if active is None and not lifecycle.busy:
            # The common case: a top-level call on an idle module.
            if state is done or (state is ModuleState.CREATED and not is_init):
                return
            waiter = None
        else:
            ready = (
                self._may_initialize(lifecycle, active)
                if is_init
                else self._may_clean_up(lifecycle, active, raw)
            )
            if ready is not True:
                await ready
                return
            waiter = active[1] if (is_init and active is not None) else None
            if waiter is not None:
                _wait_on(waiter, self)
        token = _ACTIVE.set((active, self, phase, raw))
        lifecycle.busy = True
        if lifecycle.listeners:
            self._transition(lifecycle, running)
        else:
            lifecycle.state = running
        started = _clock()
        try:
            await raw(self)
        except BaseException as exc:
            self._failed(lifecycle, phase, exc, started)
            raise
        else:
            lifecycle.busy = False
            if lifecycle.listeners:
                self._transition(lifecycle, done)
            else:
                lifecycle.state = done
            logger = lifecycle.logger
            if logger is None or lifecycle.logger_config is not getattr(self, "config", None):
                logger = self._logger(lifecycle)
            if logger.isEnabledFor(_INFO):
                self._log_done(logger, "initialized" if is_init else "cleaned up", started)
            if lifecycle.waiters:
                lifecycle.settle(None)
        finally:
            _ACTIVE.reset(token)
            if waiter is not None:
                _done_waiting(waiter, self)

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
        return self._logger(self._lifecycle())

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
        return register(self._lifecycle().listeners, listener)

    # --- the guard ---------------------------------------------------------------

    def _lifecycle(self) -> _Lifecycle:
        # Created on first use, so a subclass that skips super().__init__()
        # still gets every guarantee.
        try:
            lifecycle: _Lifecycle = self.__dict__["_pepperpy_lifecycle"]
        except KeyError:
            lifecycle = self.__dict__.setdefault("_pepperpy_lifecycle", _Lifecycle())
        return lifecycle

    def _logger(self, lifecycle: _Lifecycle) -> logging.Logger:
        # Cached for the config object it was named after (the guard's fast
        # path checks only that object's identity): recomputing the name on
        # every transition cost more than the rest of the guard.
        config = getattr(self, "config", None)
        logger = lifecycle.logger
        if (
            logger is not None
            and lifecycle.logger_config is config
            and (not isinstance(config, ModuleConfig) or config.name == lifecycle.logger_name)
        ):
            return logger
        name = self.name
        logger = lifecycle.logger = _log.getChild(name)
        lifecycle.logger_config = config
        lifecycle.logger_name = name
        return logger

    def _log_done(self, logger: logging.Logger, verb: str, started: float) -> None:
        elapsed = (time.perf_counter() - started) * 1e3
        logger.info("%s %s in %.2f ms", verb, self.name, elapsed)

    def _transition(self, lifecycle: _Lifecycle, new: ModuleState) -> None:
        old, lifecycle.state = lifecycle.state, new
        if not lifecycle.listeners:
            return
        for listener in tuple(lifecycle.listeners):
            try:
                listener(self, old, new)
            except Exception:
                self._logger(lifecycle).exception(
                    "state listener %r failed on %s -> %s", listener, old, new
                )

    async def _await_outcome(self, lifecycle: _Lifecycle, active: _Active) -> None:
        """Wait for the body another caller is running, first refusing a wait
        that would close a cycle of initializations."""
        waiter = active[1] if active is not None else None
        if waiter is not None:
            path = _cycle_from(self, waiter)
            if path is not None:
                raise CircularDependencyError([m.name for m in (waiter, *path)])
            _wait_on(waiter, self)
        outcome: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        lifecycle.waiters.append(outcome)
        try:
            await outcome
        finally:
            if waiter is not None:
                _done_waiting(waiter, self)

    def _may_initialize(
        self, lifecycle: _Lifecycle, active: _Active
    ) -> Literal[True] | Awaitable[None]:
        """True when the caller should run the initialize body now; otherwise
        an awaitable that finishes the call (nothing to do, or another
        caller's outcome). Raises for a cycle or a module cleaning up."""
        frames = _frames(active)
        for i, (module, phase) in enumerate(frames):
            if module is self and phase == "initialize":
                chain = [m.name for m, p in frames[i:] if p == "initialize"] + [self.name]
                raise CircularDependencyError(chain)
        state = lifecycle.state
        if state is ModuleState.READY:
            return _nothing()
        if lifecycle.busy:
            if state is ModuleState.CLEANING_UP:
                raise LifecycleError(f"{self.name}: cannot initialize while it is cleaning up")
            return self._await_outcome(lifecycle, active)
        return True

    def _may_clean_up(
        self, lifecycle: _Lifecycle, active: _Active, raw: Callable[[Any], Awaitable[None]]
    ) -> Literal[True] | Awaitable[None]:
        """True when the caller should run the cleanup body now; otherwise an
        awaitable that finishes the call."""
        if active is not None and any(module is self for module, _ in _frames(active)):
            # cleanup() from this module's own initialize() (to undo half-made
            # work): run the body, leave the state to the initialize guard.
            return raw(self)
        state = lifecycle.state
        if state is ModuleState.CREATED or state is ModuleState.CLOSED:
            return _nothing()
        if lifecycle.busy:
            return self._clean_up_after_others(lifecycle)
        return True

    async def _clean_up_after_others(self, lifecycle: _Lifecycle) -> None:
        # Another caller is initializing or cleaning up: let it finish (its
        # own caller gets its error), then clean up unless it already did.
        while lifecycle.busy:
            state = lifecycle.state
            # Its own caller gets its error; cancellation of this caller is
            # a BaseException and still propagates.
            with contextlib.suppress(Exception):
                await self._await_outcome(lifecycle, None)
            if state is ModuleState.CLEANING_UP:
                return
        await self.cleanup()

    def _failed(
        self, lifecycle: _Lifecycle, phase: Phase, exc: BaseException, started: float
    ) -> None:
        elapsed = (time.perf_counter() - started) * 1e3
        lifecycle.busy = False
        self._transition(lifecycle, ModuleState.FAILED)
        logger = self._logger(lifecycle)
        if isinstance(exc, asyncio.CancelledError):
            logger.warning("%s of %s cancelled after %.2f ms", phase, self.name, elapsed)
            outcome: BaseException = LifecycleError(f"{self.name}: {phase} was cancelled")
        else:
            logger.error("%s of %s failed after %.2f ms: %r", phase, self.name, elapsed, exc)
            outcome = exc
        if phase == "cleanup":
            outcome = LifecycleError(f"{self.name}: cleanup failed: {exc!r}")
        lifecycle.settle(outcome)


async def _nothing() -> None:
    """An awaitable for a call that has nothing left to do."""


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
