"""BaseModule and Module: the lifecycle every module has.

Subclasses override ``initialize()`` and ``cleanup()`` themselves, as the spec
does (with or without parameters of their own); ``__init_subclass__`` wraps
each class's effective ``initialize`` and ``cleanup`` in a guard, even when
they come from a mixin that is not a BaseModule, so for every subclass:

- States go CREATED -> INITIALIZING -> READY -> CLEANING_UP -> CLOSED, and
  FAILED when ``initialize()`` (or ``cleanup()``) raises or is cancelled.
- ``initialize()`` on a READY module does nothing. Concurrent calls run the
  body once and all get its outcome (the very exception, for a failure); a
  waiter that is cancelled does not cancel the body. The same holds for
  ``cleanup()``.
- ``super().initialize()`` inside an override runs the parent's body, not the
  guard again; the same holds for ``cleanup()``.
- An exception leaves the module FAILED, is logged with the module's name and
  reaches the caller unchanged.
- ``cleanup()`` on CREATED or CLOSED does nothing; on READY or FAILED it runs
  the body (so what a failed ``initialize()`` half made can be released) and
  leaves CLOSED; during an ``initialize()`` it waits for it, then cleans up.
  A CLOSED or FAILED module can be initialized again.
- Modules whose bodies wait on each other in a cycle (A awaits B awaits A, in
  one task or across tasks) get CircularDependencyError naming the chain as
  soon as the cycle closes, never a deadlock.
- A task started inside a body (a watchdog) counts as part of that body only
  while the body runs; after it, the task is like any other.
- ``async with module:`` initializes, then always cleans up.
- Every transition is logged on ``pepperpy_core.module.<name>`` with its
  elapsed time, and reported to listeners added with ``add_listener``; a
  listener's Exception is logged and ignored, and a BaseException it raises
  (KeyboardInterrupt, ...) propagates only after the state is settled and
  every waiter has its outcome.

One mechanism tells who waits on whom: each module's record points at the
module whose body its own running body awaits right now (running it nested,
or waiting for its outcome), and a new wait first follows those pointers.
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
from types import TracebackType
from typing import Any, ClassVar, Final, Generic, Literal, Self, TypeVar, cast

from pepperpy_core._callbacks import register
from pepperpy_core.config import ModuleConfig
from pepperpy_core.errors import CircularDependencyError, LifecycleError, ModuleSetupError

C = TypeVar("C")
F = TypeVar("F", bound=Callable[..., Awaitable[None]])
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
#: Every logger there is, by name (grows when one is made).
_LOGGERS: Final = logging.Logger.manager.loggerDict
_INFO: Final = logging.INFO
_clock: Final = time.perf_counter
_GUARDED: Final = "__pepperpy_guarded__"

#: The bodies running in this context, innermost first, as a linked list of
#: (outer, record, phase, raw body, run id, module, depth): a tuple per nested
#: call. A frame is live while its record still runs that body (``running``
#: set and ``run_id`` equal), so a task that inherited the context from a body
#: that has since finished sees no live frame.
_Frame = tuple[
    "_Frame | None", "_Lifecycle", Phase, Callable[..., Awaitable[None]], int, "BaseModule", int
]
#: Every this many nested bodies (the spec's ``await self.dep.initialize()``
#: down a chain of modules), the next runs in a task of its own, on a fresh
#: stack: a chain of any length never reaches the interpreter's recursion
#: limit (each level costs four Python frames).
_HOP: Final = 50
_ACTIVE: ContextVar[_Frame | None] = ContextVar("pepperpy_core_active_lifecycle", default=None)


class _Lifecycle:
    """A module's lifecycle record."""

    __slots__ = (
        "awaiting",
        "constructed",
        "listeners",
        "logger",
        "logger_config",
        "logger_name",
        "loggers_seen",
        "run_id",
        "running",
        "state",
        "waiters",
    )

    def __init__(self) -> None:
        self.state = ModuleState.CREATED
        self.running: Phase | None = None  # the phase whose body runs now
        self.run_id = 0  # moves on with every body that starts
        # Made on first use: a graph of thousands of modules would otherwise
        # keep two empty lists per module alive for the collector to walk.
        self.waiters: list[asyncio.Future[None]] | None = None  # callers awaiting that body
        # The module whose body this module's running body awaits now.
        self.awaiting: BaseModule | None = None
        self.constructed = False  # BaseModule.__init__ ran
        self.listeners: list[Listener] | None = None
        self.logger: logging.Logger | None = None
        self.logger_config: object = None
        self.logger_name = ""
        self.loggers_seen = -1  # how many loggers existed when none was needed

    def settle(self, outcome: BaseException | None) -> None:
        """Hand the finished body's outcome to every caller still waiting."""
        waiters, self.waiters = self.waiters or (), None
        for waiter in waiters:
            if waiter.done():  # that caller was cancelled
                continue
            if outcome is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(outcome)


def _live(frame: _Frame | None) -> _Frame | None:
    """The innermost frame of ``frame``'s chain whose body still runs."""
    while frame is not None:
        record = frame[1]
        if record.running is frame[2] and record.run_id == frame[4]:
            return frame
        frame = frame[0]
    return None


def _record(module: BaseModule) -> _Lifecycle:
    """A module's lifecycle record, made on first use, so that a subclass that
    skips super().__init__() still has one. Plain attribute access, never
    ``module.__dict__``: touching __dict__ turns CPython's compact attribute
    storage into a dict, and every attribute read of the module (self.cache,
    self._hits...) gets slower for good."""
    try:
        return module._pepperpy_lifecycle
    except AttributeError:
        record = module._pepperpy_lifecycle = _Lifecycle()
        return record


def _takes_only_self(raw: Callable[..., Any]) -> bool:
    params = list(inspect.signature(raw).parameters.values())
    return len(params) == 1 and params[0].kind in (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
    )


def _guard(raw: F, phase: Phase) -> F:  # noqa: PLR0915 - the common path inline, no calls
    """Wrap a lifecycle body in the state machine. The common case (a call
    from outside any body, on an idle module) runs here without another
    coroutine layer; everything else goes to ``_enter``. A body that takes
    only ``self`` (nearly all) gets a wrapper without ``*args``/``**kwargs``,
    whose packing cost a fifth of the guard."""
    if not inspect.iscoroutinefunction(raw):
        raise TypeError(f"{raw.__qualname__} must be an async def method")
    is_init = phase == "initialize"
    done = ModuleState.READY if is_init else ModuleState.CLOSED
    running = ModuleState.INITIALIZING if is_init else ModuleState.CLEANING_UP
    verb = "initialized" if is_init else "cleaned up"

    if _takes_only_self(raw):

        @functools.wraps(raw)
        async def guarded(self: BaseModule) -> None:
            try:
                record = self._pepperpy_lifecycle
            except AttributeError:  # a subclass that skipped super().__init__()
                record = _record(self)
            active = _ACTIVE.get()
            if active is not None or record.running is not None:
                await self._enter(record, raw, phase, _live(active), (), {})
                return
            state = record.state
            if state is done or (not is_init and state is ModuleState.CREATED):
                return
            # The common case, written out: each call or coroutine layer
            # more costs a tenth of the guard.
            record.running = phase
            record.run_id += 1
            started = _clock()
            outcome = self._transition(record, running) if record.listeners else None
            if outcome is None:
                record.state = running
                token = _ACTIVE.set((None, record, phase, raw, record.run_id, self, 1))
                try:
                    await raw(self)
                except BaseException as exc:
                    outcome = exc
                finally:
                    _ACTIVE.reset(token)
            record.running = None
            if outcome is not None:
                self._failed(record, phase, outcome, started)
                raise outcome
            if record.listeners or record.waiters:
                self._succeeded(record, is_init, started)
                return
            record.state = done
            logger = record.logger
            if logger is None and record.loggers_seen == len(_LOGGERS):
                if not _log.isEnabledFor(_INFO):
                    return  # nothing to log, and no logger made for it
            elif logger is not None and record.logger_config is getattr(self, "config", None):
                if logger.isEnabledFor(_INFO):
                    logger.info("%s %s in %.2f ms", verb, self.name, (_clock() - started) * 1e3)
                return
            logger = self._log_target(record, _INFO)
            if logger is not None:
                logger.info("%s %s in %.2f ms", verb, self.name, (_clock() - started) * 1e3)

    else:

        @functools.wraps(raw)
        async def guarded(self: BaseModule, *args: Any, **kwargs: Any) -> None:
            try:
                record = self._pepperpy_lifecycle
            except AttributeError:  # a subclass that skipped super().__init__()
                record = _record(self)
            active = _ACTIVE.get()
            if active is not None or record.running is not None:
                await self._enter(record, raw, phase, _live(active), args, kwargs)
                return
            state = record.state
            if state is done or (not is_init and state is ModuleState.CREATED):
                return
            await self._run_body(record, raw, phase, None, args, kwargs)

    setattr(guarded, _GUARDED, True)
    return cast("F", guarded)


class BaseModule:
    """The module contract: ``initialize()``, ``cleanup()`` and
    ``health_check()``, with the lifecycle guarantees in this module's doc.

    ``config`` may be a ModuleConfig or any object a subclass chooses (the
    spec's DBConfig is a plain dataclass); ``name`` and ``version`` come from
    a ModuleConfig when there is one, else from the class.

    Capability modules take their settings as keyword arguments and pass the
    rest along the MRO, so subclasses call ``super().__init__(...)`` once with
    every setting they want and the capabilities compose as mixins.
    """

    config: Any

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for phase in ("initialize", "cleanup"):
            # The method this class will really call (perhaps from a mixin
            # earlier in the MRO), guarded here if no class guarded it yet.
            effective = getattr(cls, phase)
            if not getattr(effective, _GUARDED, False):
                setattr(cls, phase, _guard(effective, phase))
        capabilities = _capabilities(cls)
        if capabilities and "__init__" in cls.__dict__:
            cls.__init__ = _checked_init(cls.__init__, cls.__name__, capabilities)  # type: ignore[method-assign]

    def __init__(self, config: Any = None, **kwargs: Any) -> None:
        if kwargs:
            unknown = ", ".join(sorted(kwargs))
            raise TypeError(f"{type(self).__name__}() got unexpected keyword arguments: {unknown}")
        self.config = config
        # Made with the module (not at its first start, when a large graph
        # would make thousands at once for the collector to walk); it also
        # tells _checked_init that this __init__ ran.
        _record(self).constructed = True

    _pepperpy_lifecycle: _Lifecycle
    #: The capability a class adds (set by each capability class itself).
    _pepperpy_capability: ClassVar[str] = ""

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
        return _record(self).state

    @property
    def logger(self) -> logging.Logger:
        """The module's logger: ``pepperpy_core.module.<name>``."""
        return self._logger(_record(self))

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
        a function that removes it. A listener's Exception is logged and
        ignored; see the module doc for BaseExceptions."""
        record = _record(self)
        if record.listeners is None:
            record.listeners = []
        return register(record.listeners, listener)

    # --- the guard ---------------------------------------------------------------

    async def _enter(
        self,
        record: _Lifecycle,
        raw: Callable[..., Awaitable[None]],
        phase: Phase,
        active: _Frame | None,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        """Every call but the common one: from inside a body, or on a module
        whose body is already running."""
        if (
            active is not None
            and active[1] is record
            and active[2] == phase
            and active[3] is not raw
        ):
            await raw(self, *args, **kwargs)  # super().<phase>() in an override
            return
        caller = _module_of(active)
        while True:
            running = record.running
            if running is None:
                state = record.state
                if phase == "initialize" and state is ModuleState.READY:
                    return
                if phase == "cleanup" and state in (ModuleState.CREATED, ModuleState.CLOSED):
                    return
                outer = _ACTIVE.get()
                body = self._run_body(record, raw, phase, caller, args, kwargs)
                if outer is not None and outer[6] % _HOP == 0:
                    await asyncio.ensure_future(body)  # a fresh stack (see _HOP)
                else:
                    await body
                return
            if phase == "initialize":
                if running == "cleanup":
                    raise LifecycleError(f"{self.name}: cannot initialize while it is cleaning up")
                await self._await_body(record, caller)
                return
            if running == "cleanup":
                await self._await_body(record, caller)
                return
            if _inside(active, record, "initialize"):
                # cleanup() from this module's own initialize() (to undo
                # half-made work): the body runs, the state is initialize's.
                await raw(self, *args, **kwargs)
                return
            # An initialize runs elsewhere: let it end (its callers get its
            # error), then clean up what it left.
            try:
                await self._await_body(record, caller)
            except asyncio.CancelledError:
                raise
            except Exception:
                self.logger.debug("cleanup waited for a failed initialize of %s", self.name)

    async def _await_body(self, record: _Lifecycle, caller: BaseModule | None) -> None:
        """Wait for the body another call runs, first refusing a wait that
        would close a cycle."""
        if caller is not None:
            chain: list[BaseModule] = []
            module: BaseModule | None = self
            while module is not None:
                chain.append(module)
                if module is caller:
                    raise CircularDependencyError([m.name for m in (*chain, self)])
                module = _record(module).awaiting
        outcome: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if record.waiters is None:
            record.waiters = []
        record.waiters.append(outcome)
        waiting = _record(caller) if caller is not None else None
        if waiting is not None:
            waiting.awaiting = self
        try:
            await outcome
        finally:
            if waiting is not None:
                waiting.awaiting = None

    async def _run_body(
        self,
        record: _Lifecycle,
        raw: Callable[..., Awaitable[None]],
        phase: Phase,
        caller: BaseModule | None,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        """Run one body through the state machine."""
        is_init = phase == "initialize"
        record.running = phase
        record.run_id += 1
        waiting = _record(caller) if caller is not None else None
        if waiting is not None:
            waiting.awaiting = self
        started = _clock()
        outcome: BaseException | None = None
        if record.listeners:
            outcome = self._transition(
                record, ModuleState.INITIALIZING if is_init else ModuleState.CLEANING_UP
            )
        else:
            record.state = ModuleState.INITIALIZING if is_init else ModuleState.CLEANING_UP
        if outcome is None:
            outer = _ACTIVE.get()
            depth = 1 if outer is None else outer[6] + 1
            token = _ACTIVE.set((outer, record, phase, raw, record.run_id, self, depth))
            try:
                await raw(self, *args, **kwargs)
            except BaseException as exc:
                outcome = exc
            finally:
                _ACTIVE.reset(token)
        if waiting is not None:
            waiting.awaiting = None
        record.running = None
        if outcome is None:
            self._succeeded(record, is_init, started)
            return
        self._failed(record, phase, outcome, started)
        raise outcome

    def _succeeded(self, record: _Lifecycle, is_init: bool, started: float) -> None:
        new = ModuleState.READY if is_init else ModuleState.CLOSED
        interrupt = None
        if record.listeners:
            interrupt = self._transition(record, new)
        else:
            record.state = new
        logger = self._log_target(record, _INFO)
        if logger is not None:
            elapsed = (_clock() - started) * 1e3
            logger.info(
                "%s %s in %.2f ms", "initialized" if is_init else "cleaned up", self.name, elapsed
            )
        if record.waiters:
            record.settle(None)
        if interrupt is not None:
            raise interrupt  # after the state and every waiter are settled

    def _failed(self, record: _Lifecycle, phase: Phase, exc: BaseException, started: float) -> None:
        elapsed = (_clock() - started) * 1e3
        interrupt = self._transition(record, ModuleState.FAILED)
        logger = self._logger(record)
        if isinstance(exc, asyncio.CancelledError):
            logger.warning("%s of %s cancelled after %.2f ms", phase, self.name, elapsed)
            outcome: BaseException = LifecycleError(f"{self.name}: {phase} was cancelled")
        else:
            logger.error("%s of %s failed after %.2f ms: %r", phase, self.name, elapsed, exc)
            outcome = exc
        record.settle(outcome)
        if interrupt is not None and interrupt is not exc:
            logger.error("a state listener raised %r while %s failed", interrupt, phase)

    def _transition(self, record: _Lifecycle, new: ModuleState) -> BaseException | None:
        """Set the state and tell the listeners; an Exception from one is
        logged, the first BaseException is returned for the caller to raise
        once everything is settled."""
        old, record.state = record.state, new
        interrupt = None
        for listener in tuple(record.listeners or ()):
            try:
                listener(self, old, new)
            except Exception:
                self._logger(record).exception(
                    "state listener %r failed on %s -> %s", listener, old, new
                )
            except BaseException as exc:
                interrupt = interrupt or exc
        return interrupt

    def _log_target(self, record: _Lifecycle, level: int) -> logging.Logger | None:
        """The logger to log ``level`` on, or None when nothing would be
        logged: the module's logger is then not even made (a graph of
        thousands of modules would otherwise leave thousands of loggers)."""
        logger = record.logger
        if logger is not None and record.logger_config is getattr(self, "config", None):
            return logger if logger.isEnabledFor(level) else None
        known = _LOGGERS
        if record.loggers_seen == len(known) and not _log.isEnabledFor(level):
            return None  # no logger was made since the last look, and the parent is off
        configured = known.get(f"{_log.name}.{self.name}")
        if not isinstance(configured, logging.Logger) and not _log.isEnabledFor(level):
            # A module logger nobody configured inherits its parent's level.
            record.loggers_seen = len(known)
            return None
        logger = self._logger(record)
        return logger if logger.isEnabledFor(level) else None

    def _logger(self, record: _Lifecycle) -> logging.Logger:
        # Cached for the config object it was named after (the guard's common
        # path checks only that object's identity): recomputing the name on
        # every transition cost more than the rest of the guard.
        config = getattr(self, "config", None)
        logger = record.logger
        if (
            logger is not None
            and record.logger_config is config
            and (not isinstance(config, ModuleConfig) or config.name == record.logger_name)
        ):
            return logger
        name = self.name
        logger = record.logger = _log.getChild(name)
        record.logger_config = config
        record.logger_name = name
        return logger


def _module_of(frame: _Frame | None) -> BaseModule | None:
    """The module whose body ``frame`` (a live frame) runs."""
    return None if frame is None else frame[5]


def _inside(frame: _Frame | None, record: _Lifecycle, phase: Phase) -> bool:
    """Whether a live frame of ``frame``'s chain runs ``record``'s ``phase``."""
    while frame is not None:
        if frame[1] is record and frame[2] == phase and _live(frame) is frame:
            return True
        frame = frame[0]
    return False


def _capabilities(cls: type) -> tuple[str, ...]:
    """The capabilities a class has, by name, most derived first."""
    return tuple(
        c.__dict__["_pepperpy_capability"]
        for c in cls.__mro__
        if c.__dict__.get("_pepperpy_capability")
    )


def _checked_init(
    init: Callable[..., None], owner: str, capabilities: tuple[str, ...]
) -> Callable[..., None]:
    """``init``, followed by a check that BaseModule.__init__ ran: every
    capability sets up its state there, so a subclass that skipped
    ``super().__init__()`` gets one clear error when it is constructed."""

    @functools.wraps(init)
    def __init__(self: BaseModule, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        record = getattr(self, "_pepperpy_lifecycle", None)
        if record is None or not record.constructed:
            raise ModuleSetupError(
                f"{owner}.__init__ did not call super().__init__(), so "
                f"{', '.join(capabilities)} never set up its state: call "
                f"super().__init__(...) in {owner}.__init__"
            )

    return __init__


class Module(BaseModule, Generic[C]):
    """The everyday base class: a BaseModule whose ``config`` is typed.

    ``Module[DBConfig]`` types ``self.config`` as DBConfig; an unparameterized
    ``Module`` (as in the spec) leaves it Any.
    """

    config: C

    def __init__(self, config: C | None = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)


# BaseModule's own bodies get the guard too, for subclasses that override neither.
for _phase in ("initialize", "cleanup"):
    setattr(BaseModule, _phase, _guard(getattr(BaseModule, _phase), _phase))
del _phase
