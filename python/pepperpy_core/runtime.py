"""Application: runs a whole graph of modules.

``Application(*modules)`` takes any objects with async ``initialize()`` and
``cleanup()`` (inheriting from BaseModule or not) and everything reachable
through their dependencies (a DependentModule's attributes and
``depends_on``, and the names in a ModuleConfig's ``dependencies``).

- Before anything starts it refuses, naming the modules involved: cycles
  (CircularDependencyError), two modules with one name (DuplicateModuleError),
  requirements naming no module (MissingDependencyError) and versions that do
  not satisfy a requirement (VersionConflictError).
- ``start()`` initializes in dependency order, independent modules
  concurrently. When one fails (or passes ``start_timeout``) it starts
  nothing more, cancels the starts in flight, cleans up what it started (and
  the failed module, to release what it half made) in reverse order, and
  raises StartupError naming the failed module, with the original exception
  as its cause and any rollback failures attached.
- ``stop()`` cleans up in reverse dependency order, independent modules
  concurrently, and always runs every cleanup: a failing one does not stop
  the others, a slow one only delays the modules it depends on, and one past
  ``stop_timeout`` is cancelled and reported. Failures are raised together
  afterwards (ShutdownError, an ExceptionGroup). Cancelling the task running
  ``stop()`` does not interrupt the cleanups; it is re-raised when they end.
- ``async with app:`` starts and stops; ``await app.run()`` starts, waits for
  SIGINT or SIGTERM (or ``request_stop()``), then stops gracefully; a second
  signal cancels the cleanups still running.
- ``add_listener(fn)`` reports every module's transitions as
  ``fn(module, old, new)``; ``start_durations`` and ``stop_durations`` hold
  seconds per module name.
- ``await app.health()`` checks every module concurrently, each under
  ``health_timeout``: healthy, degraded (healthy itself, but a dependency is
  not) or unhealthy (its check failed, raised, timed out or it is not
  running), with a detail and the check's latency.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import signal
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from pepperpy_core._callbacks import register
from pepperpy_core.config import ModuleConfig
from pepperpy_core.errors import (
    CircularDependencyError,
    DuplicateModuleError,
    LifecycleError,
    MissingDependencyError,
    PepperpyError,
    VersionConflictError,
)
from pepperpy_core.module.base import BaseModule, ModuleState
from pepperpy_core.module.dependent import DependentModule
from pepperpy_core.protocols import Lifecycle, is_lifecycle

_log: Final = logging.getLogger("pepperpy_core.runtime")

#: Called as ``listener(module, old_state, new_state)``.
AppListener = Callable[[Any, ModuleState, ModuleState], None]
Status = Literal["healthy", "degraded", "unhealthy"]
_RANK: Final[dict[str, int]] = {"healthy": 0, "degraded": 1, "unhealthy": 2}


class StartupError(PepperpyError, RuntimeError):
    """Raised by ``Application.start()`` when a module fails to start; names
    it (``module``), has the original exception as ``__cause__`` and the
    failures of the rollback in ``rollback_errors``."""

    def __init__(self, module: str, cause: BaseException, rollback_errors: Sequence[BaseException]):
        self.module = module
        self.rollback_errors = tuple(rollback_errors)
        message = f"module {module!r} failed to start: {cause!r}"
        if self.rollback_errors:
            message += f"; {len(self.rollback_errors)} cleanup(s) also failed during rollback"
        super().__init__(message)


class ShutdownError(PepperpyError, ExceptionGroup[Exception]):
    """Raised by ``Application.stop()`` after every cleanup ran, when some
    failed or timed out; each exception carries a note naming its module."""


@dataclass(frozen=True)
class ModuleHealth:
    """One module's health: status, what was seen, and the check's seconds."""

    name: str
    status: Status
    detail: str
    latency: float


@dataclass(frozen=True)
class HealthReport:
    """Every module's health and the worst status among them."""

    status: Status
    modules: dict[str, ModuleHealth]

    @property
    def healthy(self) -> bool:
        return self.status == "healthy"


@dataclass(eq=False)
class _Node:
    module: Any
    name: str
    deps: list[_Node] = field(default_factory=list)
    dependents: list[_Node] = field(default_factory=list)
    running: bool = False  # initialize() finished and cleanup() not yet run
    # The phase in flight: when it began and its timeout's timer, if any.
    began: float = 0.0
    timer: asyncio.TimerHandle | None = None
    timed_out: bool = False


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _name_of(module: Any) -> str:
    name = getattr(module, "name", None)
    return name if isinstance(name, str) and name else type(module).__name__


def _check_timeout(name: str, value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds or None")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number of seconds > 0, got {value}")
    return float(value)


class Application:
    """A graph of modules started, stopped and checked together (see this
    module's doc)."""

    def __init__(
        self,
        *modules: Lifecycle,
        start_timeout: float | None = None,
        stop_timeout: float | None = None,
        health_timeout: float = 5.0,
    ) -> None:
        self.start_timeout = _check_timeout("start_timeout", start_timeout)
        self.stop_timeout = _check_timeout("stop_timeout", stop_timeout)
        self.health_timeout = _check_timeout("health_timeout", health_timeout)
        self._roots: list[Lifecycle] = []
        self._nodes: list[_Node] | None = None
        self._listeners: list[AppListener] = []
        self._hooked: set[int] = set()
        self._started: list[_Node] = []
        self._stop_requested: asyncio.Event | None = None
        self._stop_task: asyncio.Task[list[Exception]] | None = None
        self.start_durations: dict[str, float] = {}
        self.stop_durations: dict[str, float] = {}
        self.add(*modules)

    # --- the graph ---------------------------------------------------------------

    def add(self, *modules: Lifecycle) -> None:
        """Add modules (and what they depend on) before the application starts."""
        for module in modules:
            if not is_lifecycle(module):
                raise TypeError(
                    f"an Application runs objects with async initialize() and cleanup(), "
                    f"not {type(module).__name__}"
                )
        if self._started:
            raise RuntimeError("cannot add modules to a running application")
        self._roots.extend(modules)
        self._nodes = None

    def _discover(self) -> list[_Node]:
        nodes: dict[int, _Node] = {}
        order: list[_Node] = []
        found: list[tuple[_Node, list[Any]]] = []
        pending = list(self._roots)
        while pending:
            module = pending.pop()
            if id(module) in nodes:
                continue
            node = _Node(module, _name_of(module))
            nodes[id(module)] = node
            order.append(node)
            find = getattr(module, "dependencies", None)
            deps = list(find()) if callable(find) else []
            for dep in deps:
                if not is_lifecycle(dep):
                    raise TypeError(
                        f"{node.name} depends on {type(dep).__name__}, which has no "
                        "async initialize() and cleanup()"
                    )
            found.append((node, deps))
            pending.extend(reversed(deps))
        for node, deps in found:
            for dep in deps:
                _link(node, nodes[id(dep)])
        return order

    def _plan(self) -> list[_Node]:
        if self._nodes is not None:
            return self._nodes
        nodes = self._discover()
        by_name: dict[str, _Node] = {}
        for node in nodes:
            other = by_name.setdefault(_canonical(node.name), node)
            if other is not node:
                raise DuplicateModuleError(
                    f"two modules are named {node.name!r}: {other.module!r} and {node.module!r}"
                )
        for node in nodes:
            config = getattr(node.module, "config", None)
            if not isinstance(config, ModuleConfig):
                continue
            config.validate()
            for requirement in config.requirements():
                target = by_name.get(_canonical(requirement.name))
                if target is None:
                    raise MissingDependencyError(
                        f"{node.name} requires {requirement}, but no module is named "
                        f"{requirement.name!r}"
                    )
                version = str(getattr(target.module, "version", "0.0.0"))
                if not requirement.specifier.contains(version, prereleases=True):
                    raise VersionConflictError(node.name, str(requirement), target.name, version)
                _link(node, target)
        ordered = _topological(nodes)
        if self._listeners:
            for node in ordered:
                self._hook(node)
        self._nodes = ordered
        return ordered

    def plan(self) -> list[str]:
        """Validate the graph and return the module names in a start order."""
        return [node.name for node in self._plan()]

    @property
    def modules(self) -> list[Any]:
        """Every module, dependencies first."""
        return [node.module for node in self._plan()]

    # --- listeners ---------------------------------------------------------------

    def add_listener(self, listener: AppListener) -> Callable[[], None]:
        """Call ``listener(module, old, new)`` on every module's transitions."""
        # Modules are hooked only once someone listens: a listener on every
        # module would otherwise cost every transition of every module.
        for node in self._nodes or ():
            self._hook(node)
        return register(self._listeners, listener)

    def _hook(self, node: _Node) -> None:
        if isinstance(node.module, BaseModule) and id(node.module) not in self._hooked:
            self._hooked.add(id(node.module))
            node.module.add_listener(self._forward)

    def _forward(self, module: Any, old: ModuleState, new: ModuleState) -> None:
        for listener in tuple(self._listeners):
            try:
                listener(module, old, new)
            except Exception:
                _log.exception("application listener %r failed", listener)

    def _emit(self, node: _Node, old: ModuleState, new: ModuleState) -> None:
        # BaseModules report their own transitions; other objects through us.
        if not isinstance(node.module, BaseModule):
            self._forward(node.module, old, new)

    # --- start -------------------------------------------------------------------

    def _launch(
        self,
        node: _Node,
        phase: Callable[[], Awaitable[Any]],
        timeout: float | None,
        done: _Completions,
    ) -> asyncio.Future[Any]:
        """Run ``phase()`` (a module's initialize or cleanup) as a Task that
        reports to ``done``, and return it; a timeout cancels it and is remembered. No
        wrapper coroutine: at 10,000 modules every object a start allocates
        shows up again in the garbage collector's passes."""
        node.began = time.perf_counter()
        node.timed_out = False
        task = asyncio.ensure_future(phase())
        done.track(node, task)
        if timeout is not None:
            node.timer = asyncio.get_running_loop().call_later(timeout, _expire, node, task)
        return task

    def _start_outcome(self, node: _Node, task: asyncio.Future[Any]) -> BaseException | None:
        """Record how a start ended; the error, if it failed."""
        self.start_durations[node.name] = time.perf_counter() - node.began
        if node.timer is not None:
            node.timer.cancel()
            node.timer = None
        if task.cancelled():
            error: BaseException | None = (
                TimeoutError(f"{node.name} did not start within {self.start_timeout} s")
                if node.timed_out
                else asyncio.CancelledError()
            )
        else:
            error = task.exception()
        if error is None:
            node.running = True
            self._emit(node, ModuleState.INITIALIZING, ModuleState.READY)
        else:
            self._emit(node, ModuleState.INITIALIZING, ModuleState.FAILED)
        return error

    async def start(self) -> None:
        """Start every module in dependency order (see this module's doc)."""
        nodes = self._plan()
        if self._started:
            return
        waiting = {id(n): len(n.deps) for n in nodes}
        done = _Completions()
        in_flight: dict[int, asyncio.Future[Any]] = {}
        attempted: list[_Node] = []
        failure: tuple[_Node, BaseException] | None = None

        def launch(node: _Node) -> None:
            attempted.append(node)
            self._emit(node, ModuleState.CREATED, ModuleState.INITIALIZING)
            in_flight[id(node)] = self._launch(
                node, node.module.initialize, self.start_timeout, done
            )

        for node in nodes:
            if not node.deps:
                launch(node)
        try:
            while in_flight:
                for node, task in await done.take():
                    del in_flight[id(node)]
                    error = self._start_outcome(node, task)
                    if error is None:
                        self._started.append(node)
                        if failure is None:
                            for dependent in node.dependents:
                                waiting[id(dependent)] -= 1
                                if waiting[id(dependent)] == 0:
                                    launch(dependent)
                    elif failure is None:
                        # Start nothing more; what is in flight is cancelled
                        # and reports here like the rest.
                        failure = (node, error)
                        for other in in_flight.values():
                            other.cancel()
        except asyncio.CancelledError:
            for task in in_flight.values():
                task.cancel()
            await asyncio.gather(*in_flight.values(), return_exceptions=True)
            for node, task in done.take_now():
                if self._start_outcome(node, task) is None:
                    self._started.append(node)
            await self._rollback(attempted)
            raise
        if failure is not None:
            node, cause = failure
            _log.error("module %s failed to start: %r; rolling back", node.name, cause)
            errors = await self._rollback(attempted)
            raise StartupError(node.name, cause, errors) from cause
        _log.info("started %d module(s)", len(self._started))

    async def _rollback(self, attempted: list[_Node]) -> list[Exception]:
        """Clean up what started and what failed, most recent first."""
        started_ids = {id(n) for n in self._started}
        failed = [n for n in reversed(attempted) if id(n) not in started_ids]
        order = [*failed, *reversed(self._started)]
        self._started = []
        errors: list[Exception] = []
        for node in order:
            error = await self._stop_one(node)
            if error is not None:
                errors.append(error)
        return errors

    # --- stop --------------------------------------------------------------------

    def _stop_outcome(self, node: _Node, task: asyncio.Future[Any]) -> Exception | None:
        """Record how a stop ended; the error, if it failed (never raised)."""
        node.running = False
        self.stop_durations[node.name] = time.perf_counter() - node.began
        if node.timer is not None:
            node.timer.cancel()
            node.timer = None
        outcome: Exception | None = None
        if task.cancelled():
            if node.timed_out:
                outcome = TimeoutError(f"{node.name} did not stop within {self.stop_timeout} s")
            else:  # forced by a second signal: reported, never let loose
                outcome = LifecycleError(f"stopping {node.name} was cancelled")
        else:
            error = task.exception()
            if isinstance(error, Exception):
                outcome = error
            elif error is not None:  # KeyboardInterrupt and the like: reported too
                outcome = LifecycleError(f"stopping {node.name} raised {error!r}")
                outcome.__cause__ = error
        if outcome is None:
            self._emit(node, ModuleState.CLEANING_UP, ModuleState.CLOSED)
            return None
        outcome.add_note(f"while stopping module {node.name!r}")
        _log.error("module %s failed to stop: %r", node.name, outcome)
        self._emit(node, ModuleState.CLEANING_UP, ModuleState.FAILED)
        return outcome

    async def _stop_one(self, node: _Node) -> Exception | None:
        """Stop one module on its own (the rollback does them in order)."""
        done = _Completions()
        self._emit(node, ModuleState.READY, ModuleState.CLEANING_UP)
        self._launch(node, node.module.cleanup, self.stop_timeout, done)
        [(_, task)] = await done.take()
        return self._stop_outcome(node, task)

    async def _stop_all(self) -> list[Exception]:
        running = list(self._started)
        self._started = []
        ids = {id(n) for n in running}
        # A module stops once every running module that depends on it has.
        waiting = {id(n): sum(1 for d in n.dependents if id(d) in ids) for n in running}
        done = _Completions()
        in_flight: dict[int, asyncio.Future[Any]] = {}
        stopped: set[int] = set()
        errors: list[Exception] = []

        def launch(node: _Node) -> None:
            self._emit(node, ModuleState.READY, ModuleState.CLEANING_UP)
            in_flight[id(node)] = self._launch(node, node.module.cleanup, self.stop_timeout, done)

        def collect(node: _Node, task: asyncio.Future[Any]) -> None:
            del in_flight[id(node)]
            stopped.add(id(node))
            error = self._stop_outcome(node, task)
            if error is not None:
                errors.append(error)

        for node in reversed(running):
            if waiting[id(node)] == 0:
                launch(node)
        try:
            while in_flight:
                for node, task in await done.take():
                    collect(node, task)
                    for dep in node.deps:
                        if id(dep) in waiting:
                            waiting[id(dep)] -= 1
                            if waiting[id(dep)] == 0:
                                launch(dep)
        except asyncio.CancelledError:
            # Forced: cancel the cleanups still running, skip the rest.
            for task in in_flight.values():
                task.cancel()
            await asyncio.gather(*in_flight.values(), return_exceptions=True)
            for node, task in done.take_now():
                collect(node, task)
            for node in running:
                if id(node) not in stopped:
                    node.running = False
                    errors.append(LifecycleError(f"{node.name} was not stopped: shutdown forced"))
        return errors

    async def stop(self) -> None:
        """Clean up every started module (see this module's doc)."""
        if not self._started:
            return
        task = self._stop_task = asyncio.ensure_future(self._stop_all())
        try:
            errors = await asyncio.shield(task)
        except asyncio.CancelledError:
            if not task.done():
                # Our caller was cancelled: the cleanups go on to the end.
                await asyncio.wait([task])
            raise
        finally:
            self._stop_task = None
        if errors:
            raise ShutdownError(f"{len(errors)} module(s) failed to stop", errors)
        _log.info("stopped every module")

    async def __aenter__(self) -> Application:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- run until a signal --------------------------------------------------------

    def request_stop(self) -> None:
        """Make ``run()`` stop gracefully, as SIGTERM does."""
        if self._stop_requested is not None:
            self._stop_requested.set()

    async def run(
        self, signals: Iterable[signal.Signals] = (signal.SIGINT, signal.SIGTERM)
    ) -> None:
        """Start, wait for a signal or ``request_stop()``, then stop."""
        loop = asyncio.get_running_loop()
        stop = self._stop_requested = asyncio.Event()
        installed: list[signal.Signals] = []
        received = 0

        def on_signal(sig: signal.Signals) -> None:
            nonlocal received
            received += 1
            if received == 1:
                _log.warning("received %s: stopping gracefully", sig.name)
                stop.set()
            else:
                _log.warning("received %s again: cancelling the cleanups still running", sig.name)
                if self._stop_task is not None:
                    self._stop_task.cancel()

        for sig in signals:
            loop.add_signal_handler(sig, on_signal, sig)
            installed.append(sig)
        try:
            await self.start()
            await stop.wait()
        finally:
            try:
                await self.stop()
            finally:
                for sig in installed:
                    loop.remove_signal_handler(sig)
                self._stop_requested = None

    # --- health --------------------------------------------------------------------

    async def _check(self, node: _Node) -> ModuleHealth:
        module = node.module
        if not node.running:
            return ModuleHealth(node.name, "unhealthy", "not running", 0.0)
        check = getattr(module, "health_check", None)
        if isinstance(module, DependentModule) and (
            type(module).health_check is DependentModule.health_check
        ):
            check = module.own_health_check  # dependencies are judged below
        if check is None:
            return ModuleHealth(node.name, "healthy", "running (no health_check)", 0.0)
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.health_timeout):
                ok = await check()
        except TimeoutError:
            detail = f"health_check timed out after {self.health_timeout} s"
            return ModuleHealth(node.name, "unhealthy", detail, time.perf_counter() - started)
        except Exception as error:
            detail = f"health_check raised {error!r}"
            return ModuleHealth(node.name, "unhealthy", detail, time.perf_counter() - started)
        latency = time.perf_counter() - started
        if ok is True:
            return ModuleHealth(node.name, "healthy", "ok", latency)
        return ModuleHealth(node.name, "unhealthy", f"health_check returned {ok!r}", latency)

    async def health(self) -> HealthReport:
        """Every module's health, checked concurrently (see this module's doc)."""
        nodes = self._plan()
        results = await asyncio.gather(*(self._check(n) for n in nodes))
        report = {n.name: r for n, r in zip(nodes, results, strict=True)}
        for node in nodes:  # dependencies first, so degradation travels up
            mine = report[node.name]
            sick = [d.name for d in node.deps if report[d.name].status != "healthy"]
            if sick and mine.status == "healthy":
                detail = f"dependency {', '.join(sick)} is not healthy"
                report[node.name] = ModuleHealth(node.name, "degraded", detail, mine.latency)
        worst: Status = "healthy"
        for result in report.values():
            if _RANK[result.status] > _RANK[worst]:
                worst = result.status
        return HealthReport(worst, report)


class _Completions:
    """Tasks report here when done and the owner takes them in batches:
    waiting costs the same however many are in flight (asyncio.wait over
    thousands of tasks would not)."""

    def __init__(self) -> None:
        self._nodes: dict[asyncio.Future[Any], _Node] = {}
        self._done: deque[asyncio.Future[Any]] = deque()
        self._wakeup = asyncio.Event()

    def track(self, node: _Node, task: asyncio.Future[Any]) -> None:
        self._nodes[task] = node
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Future[Any]) -> None:
        self._done.append(task)
        self._wakeup.set()

    def take_now(self) -> list[tuple[_Node, asyncio.Future[Any]]]:
        batch = [(self._nodes.pop(task), task) for task in self._done]
        self._done.clear()
        return batch

    async def take(self) -> list[tuple[_Node, asyncio.Future[Any]]]:
        while not self._done:
            self._wakeup.clear()
            await self._wakeup.wait()
        return self.take_now()


def _expire(node: _Node, task: asyncio.Future[Any]) -> None:
    """A phase ran past its timeout: cancel it, remembering why."""
    node.timed_out = True
    task.cancel()


def _link(node: _Node, dep: _Node) -> None:
    if not any(d is dep for d in node.deps):
        node.deps.append(dep)
        dep.dependents.append(node)


def _topological(nodes: list[_Node]) -> list[_Node]:
    """Dependencies first, in discovery order otherwise; a cycle is an error
    naming it."""
    order: list[_Node] = []
    state: dict[int, int] = {}  # 1: on the current path, 2: done
    for root in nodes:
        if state.get(id(root)) == 2:
            continue
        path: list[_Node] = []
        stack: list[tuple[_Node, int]] = [(root, 0)]
        while stack:
            node, index = stack.pop()
            if index == 0:
                state[id(node)] = 1
                path.append(node)
            if index < len(node.deps):
                stack.append((node, index + 1))
                dep = node.deps[index]
                mark = state.get(id(dep))
                if mark == 1:
                    start = next(i for i, n in enumerate(path) if n is dep)
                    raise CircularDependencyError([n.name for n in path[start:]] + [dep.name])
                if mark is None:
                    stack.append((dep, 0))
            else:
                state[id(node)] = 2
                path.pop()
                order.append(node)
    return order
