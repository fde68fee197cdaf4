"""Application: runs a whole graph of modules.

``Application(*modules)`` takes any objects with async ``initialize()`` and
``cleanup()`` (inheriting from BaseModule or not) and everything reachable
through their dependencies; see ``graph.py`` for what is refused before
anything starts.

- ``start()`` initializes in dependency order, independent modules
  concurrently. When one fails (or passes ``start_timeout``) it starts
  nothing more, cancels the starts in flight, cleans up every module whose
  ``initialize()`` began (the failed ones too, to release what they half
  made), dependents first, and raises StartupError naming the module, with
  the original exception as its cause and any rollback failures attached.
  Concurrent ``start()`` calls start the graph once and share its outcome.
- ``stop()`` cleans up every running module in reverse dependency order,
  independent ones concurrently, and always runs every cleanup: a failing one
  does not stop the others, a slow one only delays the modules it depends
  on, one past ``stop_timeout`` is cancelled and reported. Failures are
  raised together afterwards (ShutdownError). ``stop()`` during ``start()``
  cancels the start and waits for its rollback; ``stop()`` returns only when
  nothing is running. Cancelling the task that awaits ``stop()`` does not
  interrupt the cleanups; it is re-raised when they end.
- The application's own work never waits for itself: code that runs for a
  start or a stop (a module's ``initialize()`` or ``cleanup()``, and every
  task such code started, a watchdog say) may call ``stop()``, which then
  schedules the stop (cancelling a start in flight) and returns at once,
  since the stop may be waiting for that very code; ``start()`` from there
  during a start or a stop is a LifecycleError. A call that ignores its
  cancellation after a timeout is given as long again, then left behind
  and reported, so that with timeouts set every phase ends.
- ``async with app:`` starts and stops. ``await app.run()`` starts, waits for
  SIGINT or SIGTERM (or ``request_stop()``, or a ``stop()`` from anywhere),
  then stops, and returns the signal received (None if none was). If a
  cleanup failed it raises the ShutdownError instead, whose ``signal``
  names that signal. A first signal during start cancels the starts in
  flight and rolls back; a second signal cancels the cleanups still running
  (of the stop or of the rollback) and skips the rest, which are
  reported.
- ``Application(drain=seconds)``: a stop asked by SIGTERM (any signal but
  SIGINT) or ``request_stop()`` while running, or by an ASGI server (see
  ``lifespan``), first drains: /readyz answers 503 at once, everything else
  serves on for ``drain`` seconds, then the modules stop. A second signal
  or ``request_stop()``, or a ``stop()``, ends the drain at once. See
  ``drain.py`` for the default (5 s inside Kubernetes, else 0) and why.
- The runtime reports the same transitions for every module, whatever its
  class, to listeners added with ``add_listener(fn)``: ``fn(module, old,
  new)``. ``start_durations`` and ``stop_durations`` hold seconds per module.
- ``await app.health()`` checks every module (see ``health.py``).
- ``app.metrics`` is the application's own MetricsRegistry, where the
  runtime keeps per-module series (see ``observe.py``);
  ``render_metrics(fmt)`` exports it with every module's registry.
- Inside an ASGI framework: ``FastAPI(lifespan=app.lifespan)`` (or
  Starlette's) starts the modules on the server's startup and stops them on
  its shutdown; a failed start fails the startup. The lifespan state holds
  every module by name. ``app.module(Database)`` is the one module of that
  class, typed as such; ``app.provide(Database)`` the same as a function of
  no arguments, for FastAPI's ``Depends``. ``pepperpy_core.asgi`` serves the
  probes and /metrics as an ASGI app; ``pepperpy_core.aiohttp.attach`` runs
  the application and serves them inside a user's own aiohttp app.
- ``Application(..., http="127.0.0.1:9464")`` serves /metrics and health
  probes (see ``http.py``; needs the ``http`` extra) from before the first
  module starts until after the last one stops; port 0 picks a free port,
  which ``http_port`` tells. A start that cannot listen, or whose modules'
  registries clash, raises (OSError, MetricError) before any module starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar

from pepperpy_core._callbacks import register
from pepperpy_core._seconds import seconds_or_none
from pepperpy_core.errors import (
    LifecycleError,
    ShutdownError,
    StartInterrupted,
    StartupError,
)
from pepperpy_core.exposition import Exposition, Format, render_chunks
from pepperpy_core.metrics import MetricsRegistry
from pepperpy_core.module.base import ModuleState
from pepperpy_core.protocols import Lifecycle, is_lifecycle
from pepperpy_core.runtime.drain import Drain, SignalRelay, drain_seconds
from pepperpy_core.runtime.graph import Node, plan
from pepperpy_core.runtime.health import Check, HealthReport, check_all
from pepperpy_core.runtime.observe import RuntimeMetrics, open_exposition
from pepperpy_core.runtime.scheduler import Ended, NotStarted, run_phase

if TYPE_CHECKING:
    from pepperpy_core.runtime.http import HttpServer

_log: Final = logging.getLogger("pepperpy_core.runtime")

#: Called as ``listener(module, old_state, new_state)``.
AppListener = Callable[[Any, ModuleState, ModuleState], None]
Phase = Literal["idle", "starting", "running", "stopping"]
M = TypeVar("M")
_INTERRUPTED: Final = "start() was interrupted: the application was stopped while it was starting"
#: The applications whose start or stop the running code works for: their
#: phase tasks set it, and every task started from them (each module's
#: initialize() or cleanup(), and the tasks those start) inherits it.
_WORKING_FOR: ContextVar[tuple[Application, ...]] = ContextVar(
    "pepperpy_core_working_for", default=()
)


class Application:
    """A graph of modules started, stopped and checked together (see this
    module's doc)."""

    def __init__(
        self,
        *modules: Lifecycle,
        start_timeout: float | None = None,
        stop_timeout: float | None = None,
        health_timeout: float = 5.0,
        http: str | None = None,
        drain: float | None = None,
    ) -> None:
        self._drain = Drain(drain_seconds(drain))
        self._address: tuple[str, int] | None = None
        if http is not None:
            from pepperpy_core.runtime.http import parse_address, require_aiohttp  # noqa: PLC0415

            self._address = parse_address(http)
            require_aiohttp()
        self.start_timeout = seconds_or_none(start_timeout, "start_timeout")
        self.stop_timeout = seconds_or_none(stop_timeout, "stop_timeout")
        self.health_timeout = seconds_or_none(health_timeout, "health_timeout")
        self._roots: list[Lifecycle] = []
        self._nodes: list[Node] | None = None
        self._listeners: list[AppListener] = []
        self._checks: dict[str, Check] = {}
        self._phase: Phase = "idle"
        self._start_task: asyncio.Task[None] | None = None
        self._start_callers = 0
        self._rolling_back = False  # the start failed and is undoing itself
        self._stop_task: asyncio.Task[None] | None = None
        # A stop scheduled from inside that no stop() has awaited yet: the
        # next stop() raises its error, so that it is never lost.
        self._unawaited_stop: asyncio.Task[None] | None = None
        self._stop_requested: asyncio.Event | None = None
        self._interrupt: BaseException | None = None
        self.start_durations: dict[str, float] = {}
        self.stop_durations: dict[str, float] = {}
        # (its own namespace when PEPPERPY_CORE_METRICS_DIR shares registries)
        self.metrics = MetricsRegistry(namespace="pepperpy.application")
        self._runtime_metrics = RuntimeMetrics(self.metrics, lambda: self._nodes)
        self._runtime_metrics.watch(self.start_durations, self.stop_durations)
        self._exposition: Exposition | None = None
        self._http: HttpServer | None = None  # while listening
        self._held: asyncio.Task[None] | None = None  # a SIGTERM held for the drain
        #: module() answers, per (class, name), until the graph changes.
        self._found: dict[tuple[type[Any], str | None], Any] = {}
        self._providers: dict[tuple[type[Any], str | None], Callable[[], Any]] = {}
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
        if self._phase != "idle":
            raise RuntimeError("cannot add modules to a running application")
        self._roots.extend(modules)
        self._nodes = None
        self._found.clear()

    def _plan(self) -> list[Node]:
        if self._nodes is None:
            nodes = plan(self._roots)
            for node in nodes:
                if node.name in self._checks:
                    raise ValueError(f"a module and a health check are both named {node.name!r}")
            self._nodes = nodes
        return self._nodes

    def plan(self) -> list[str]:
        """Validate the graph and return the module names in a start order."""
        return [node.name for node in self._plan()]

    @property
    def modules(self) -> list[Any]:
        """Every module, dependencies first."""
        return [node.module for node in self._plan()]

    def module(self, kind: type[M], name: str | None = None) -> M:
        """The one module that is a ``kind`` (and named ``name``, if given),
        typed as ``kind``; LookupError naming the candidates when none is, or
        several are and no name tells them apart."""
        if not isinstance(kind, type):
            raise TypeError(f"module() takes a class, not {type(kind).__name__}")
        found = self._found.get((kind, name))
        if isinstance(found, kind):
            return found
        nodes = [n for n in self._plan() if isinstance(n.module, kind)]
        matches = [n for n in nodes if name is None or n.name == name]
        if len(matches) != 1:
            wanted = kind.__name__ if name is None else f"{kind.__name__} named {name!r}"
            if not matches:
                seen = ", ".join(repr(n.name) for n in nodes) or "none of that class"
                raise LookupError(f"no module is a {wanted} (modules of that class: {seen})")
            names = ", ".join(repr(n.name) for n in matches)
            raise LookupError(f"several modules are a {wanted} ({names}): give a name")
        module: M = matches[0].module
        self._found[kind, name] = module
        return module

    def provide(self, kind: type[M], name: str | None = None) -> Callable[[], M]:
        """``module(kind, name)`` as a function of no arguments, for FastAPI's
        ``Depends``; the same function for the same arguments, so that FastAPI
        resolves it once per request."""
        key = (kind, name)
        provider = self._providers.get(key)
        if provider is None:

            def provider() -> M:
                return self.module(kind, name)

            provider.__name__ = provider.__qualname__ = f"provide_{kind.__name__}"
            self._providers[key] = provider
        return provider

    def lifespan(self, app: object = None) -> AbstractAsyncContextManager[dict[str, Any]]:
        """For ``FastAPI(lifespan=...)`` and ``Starlette(lifespan=...)`` (which
        pass their ``app``): start on entry, giving every module by name as
        the lifespan state, and stop on exit. A failed start raises there, so
        the server reports ``lifespan.startup.failed`` and exits. With a
        drain, a SIGTERM is held back from the server until the drain ends
        (the server would stop accepting connections at once), or, when no
        signal came, the lifespan shutdown drains (see ``drain.py``)."""
        return self._lifespan()

    @asynccontextmanager
    async def _lifespan(self) -> AsyncIterator[dict[str, Any]]:
        await self.start()
        relay = SignalRelay(asyncio.get_running_loop(), self._hold_term, self._drain.end)
        try:
            with relay.installed() if self.drain else contextlib.nullcontext(relay):
                yield {node.name: node.module for node in self._plan()}
            if not relay.interrupted and self._phase == "running":
                self._drain.begin()  # (a SIGTERM may have begun it: then it is over)
                await self._drain.wait()
        finally:
            await self.stop()
            held, self._held = self._held, None
            if held is not None:  # the drain is over: it hands the signal on, if it has not
                await held

    def _hold_term(self, hand_on: Callable[[], None]) -> None:
        """A SIGTERM for the server: handed on once the drain is over."""
        if self._drain.under_way:  # a second one: no more waiting
            self._drain.end()
        elif self._phase == "running" and not self._drain.begun:
            self._drain.begin()
            self._held = asyncio.ensure_future(self._hand_on_after_drain(hand_on))
        else:
            hand_on()

    async def _hand_on_after_drain(self, hand_on: Callable[[], None]) -> None:
        await self._drain.wait()
        hand_on()

    @property
    def drain(self) -> float:
        """Seconds a stop asked by a supervisor waits, /readyz answering 503,
        before the modules stop (``Application(drain=...)``)."""
        return self._drain.seconds

    @property
    def draining(self) -> bool:
        """True from the moment a drained stop is asked for until the
        application has stopped: /readyz answers 503 meanwhile."""
        return self._drain.begun and self._phase != "idle"

    @property
    def phase(self) -> Phase:
        """Where the application is: idle, starting, running or stopping."""
        return self._phase

    @property
    def started(self) -> bool:
        """True once ``start()`` has finished, until ``stop()`` has."""
        return self._phase in ("running", "stopping")

    @property
    def http_port(self) -> int | None:
        """The port the HTTP endpoints listen on, or None when they do not."""
        return self._http.port if self._http is not None else None

    # --- listeners -------------------------------------------------------------------

    def add_listener(self, listener: AppListener) -> Callable[[], None]:
        """Call ``listener(module, old, new)`` on every module's transitions;
        an Exception from it is logged, a BaseException is raised once the
        start or stop it interrupted has settled."""
        return register(self._listeners, listener)

    def _move(self, node: Node, new: ModuleState) -> None:
        old, node.state = node.state, new
        if not self._listeners:
            return
        for listener in tuple(self._listeners):
            try:
                listener(node.module, old, new)
            except Exception:
                _log.exception("application listener %r failed", listener)
            except BaseException as exc:
                self._interrupt = self._interrupt or exc

    def _raise_interrupt(self) -> None:
        interrupt, self._interrupt = self._interrupt, None
        if interrupt is not None:
            raise interrupt

    # --- start -------------------------------------------------------------------------

    async def start(self) -> None:
        """Start every module in dependency order (see this module's doc)."""
        if self._phase in ("starting", "stopping") and self in _WORKING_FOR.get():
            doing = "start" if self._phase == "starting" else "stop"
            raise LifecycleError(
                f"start() called by the application's own {doing}, which it would wait "
                "for (from a module's initialize() or cleanup(), or a task one started)"
            )
        while self._phase != "starting":
            if self._phase == "running":
                return
            if self._phase == "stopping" and self._stop_task is not None:
                await asyncio.wait([self._stop_task])  # then start afresh
                continue
            self._plan()  # refuse a bad graph here, before anything starts
            self._unawaited_stop = None  # (logged when it failed)
            self._phase = "starting"
            self._start_task = asyncio.ensure_future(self._starting())
            self._start_task.add_done_callback(self._settle_phase)
        task = self._start_task
        assert task is not None
        self._start_callers += 1
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.done():  # the start itself was cancelled: stop() or a signal
                raise StartInterrupted(_INTERRUPTED) from None
            self._start_callers -= 1
            if self._start_callers == 0:  # the last caller gave up: roll back
                self._cancel_start()  # (a rollback under way goes on to its end)
                await asyncio.wait([task])
            raise
        else:
            self._start_callers -= 1

    async def _starting(self) -> None:
        _WORKING_FOR.set((*_WORKING_FOR.get(), self))  # this task's own context
        nodes = self._plan()
        await self._open_outside(nodes)
        for node in nodes:
            node.began = False
        failure: tuple[Node, BaseException] | None = None
        cancelled = False
        try:
            outcomes = run_phase(
                nodes,
                forward=True,
                call=self._initialize,
                seconds_each=self.start_timeout,
                stop_on_failure=True,
                verb="start",
            )
            async with contextlib.aclosing(outcomes):
                async for batch in outcomes:
                    for ended in batch:
                        if (error := self._started(ended)) is not None and failure is None:
                            failure = (ended.node, error)
        except asyncio.CancelledError:
            cancelled = True
        if failure is None and not cancelled:
            self._phase = "running"
            _log.info("started %d module(s)", len(nodes))
            self._raise_interrupt()
            return
        if failure is not None:
            node, cause = failure
            _log.error("module %s failed to start: %r; rolling back", node.name, cause)
        else:
            _log.warning("start cancelled; rolling back")
        self._rolling_back = True
        try:
            errors = await self._clean_up([n for n in nodes if n.began])
        finally:
            try:
                await self._close_outside()
            finally:
                self._rolling_back = False
                self._phase = "idle"
        self._raise_interrupt()
        if failure is not None:
            node, cause = failure
            raise StartupError(node.name, cause, errors) from cause
        raise asyncio.CancelledError

    # --- stop --------------------------------------------------------------------------

    async def _clean_up(self, nodes: list[Node]) -> list[Exception]:
        """Clean ``nodes`` up, dependents first; the failures, each noted with
        its module. Cancelled (forced): the cleanups in flight are cancelled,
        the rest skipped, and all of them reported."""
        errors: list[Exception] = []
        ended: set[int] = set()
        try:
            outcomes = run_phase(
                nodes,
                forward=False,
                call=self._clean,
                seconds_each=self.stop_timeout,
                stop_on_failure=False,
                verb="stop",
            )
            async with contextlib.aclosing(outcomes):
                async for batch in outcomes:
                    for outcome in batch:
                        ended.add(id(outcome.node))
                        error = self._stopped(outcome)
                        if error is not None:
                            errors.append(error)
        except asyncio.CancelledError:
            for node in (n for n in nodes if id(n) not in ended):
                error = LifecycleError(f"{node.name} was not stopped: shutdown forced")
                error.add_note(f"while stopping module {node.name!r}")
                self._move(node, ModuleState.FAILED)
                errors.append(error)
        return errors

    def _initialize(self, node: Node) -> Awaitable[None]:
        """The start phase's call: the module is initializing from now."""
        node.prior = node.state
        self._move(node, ModuleState.INITIALIZING)
        call: Awaitable[None] = node.module.initialize()
        return call

    def _clean(self, node: Node) -> Awaitable[None]:
        """The stop phase's call: the module is cleaning up from now."""
        self._move(node, ModuleState.CLEANING_UP)
        call: Awaitable[None] = node.module.cleanup()
        return call

    def _started(self, ended: Ended) -> BaseException | None:
        """Apply how a module's start ended; the failure to report, if it is
        one (not a call cancelled because another failed or the start was stopped)."""
        node, error = ended.node, ended.error
        if isinstance(error, NotStarted):  # nothing of it to undo
            self._move(node, node.prior)
            return None
        self.start_durations[node.name] = ended.seconds
        if error is None:
            self._move(node, ModuleState.READY)
            return None
        self._move(node, ModuleState.FAILED)
        return None if isinstance(error, asyncio.CancelledError) else error

    def _stopped(self, ended: Ended) -> Exception | None:
        """Apply how a module's stop ended; the error to report, noted with the module."""
        node, error = ended.node, ended.error
        self.stop_durations[node.name] = ended.seconds
        if error is None:
            self._move(node, ModuleState.CLOSED)
            return None
        if isinstance(error, Exception):
            outcome: Exception = error
        elif isinstance(error, NotStarted):  # forced before it began: as a skipped one
            outcome = LifecycleError(f"{node.name} was not stopped: shutdown forced")
        elif isinstance(error, asyncio.CancelledError):
            outcome = LifecycleError(f"stopping {node.name} was cancelled: shutdown forced")
        else:  # KeyboardInterrupt and the like: reported too
            outcome = LifecycleError(f"stopping {node.name} raised {error!r}")
            outcome.__cause__ = error
        outcome.add_note(f"while stopping module {node.name!r}")
        _log.error("module %s failed to stop: %r", node.name, outcome)
        self._move(node, ModuleState.FAILED)
        return outcome

    async def stop(self) -> None:
        """Clean up every started module (see this module's doc)."""
        self._drain.end()
        if self._stop_requested is not None:
            self._stop_requested.set()  # run() goes on to the stop
        if self in _WORKING_FOR.get():
            # The stop may wait for the very code that asks for it: schedule it.
            if self._phase == "starting":
                self._cancel_start()
            elif self._phase == "running":
                self._begin_stop()
                self._unawaited_stop = self._stop_task
            return
        unawaited, self._unawaited_stop = self._unawaited_stop, None
        if self._phase == "idle":
            if unawaited is not None and not unawaited.cancelled():
                unawaited.result()  # its ShutdownError, if it had one
            return
        if self._phase == "starting" and self._start_task is not None:
            task = self._start_task
            self._cancel_start()
            try:
                await asyncio.wait([task])
            except asyncio.CancelledError:
                await asyncio.wait([task])  # the rollback goes on to the end
                raise
            return
        if self._phase == "running":
            self._begin_stop()
        stopping = self._stop_task
        assert stopping is not None
        try:
            await asyncio.shield(stopping)
        except asyncio.CancelledError:
            if not stopping.done():  # our caller was cancelled: the cleanups go on
                await asyncio.wait([stopping])
            raise

    def _begin_stop(self) -> None:
        self._phase = "stopping"
        self._stop_task = asyncio.ensure_future(self._stopping())
        self._stop_task.add_done_callback(self._settle_phase)

    async def _stopping(self) -> None:
        _WORKING_FOR.set((*_WORKING_FOR.get(), self))  # this task's own context
        running = [n for n in self._plan() if n.state is ModuleState.READY]
        try:
            errors = await self._clean_up(running)
        finally:
            try:
                await self._close_outside()
            finally:
                self._phase = "idle"
                self._drain.reset()
        self._raise_interrupt()
        if errors:
            raise ShutdownError(f"{len(errors)} module(s) failed to stop", errors)
        _log.info("stopped every module")

    def _cancel_start(self) -> None:
        """Cancel the starts in flight; a rollback already under way goes on
        (only ``_force`` cuts it short)."""
        task = self._start_task
        if self._phase == "starting" and task is not None and not self._rolling_back:
            task.cancel()

    def _settle_phase(self, task: asyncio.Task[None]) -> None:
        """When a start or stop task ends, however it ends (cancelled even
        before its first step, which skips its own code), the phase says
        what is left running. Its error is marked seen: whoever awaits
        ``start()`` or ``stop()`` gets it, and a stop scheduled from inside
        the application may have nobody awaiting it (the runtime has logged
        each failure already)."""
        if not task.cancelled():
            task.exception()
        if task is self._start_task and self._phase == "starting":
            self._phase = "idle"
        elif task is self._stop_task and self._phase == "stopping":
            running = any(n.state is ModuleState.READY for n in self._plan())
            self._phase = "running" if running else "idle"

    def _force(self) -> None:
        """Cancel the cleanups still running (of a stop or of a rollback)."""
        for task in (self._stop_task, self._start_task):
            if task is not None and not task.done():
                task.cancel()

    async def __aenter__(self) -> Application:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- run until a signal --------------------------------------------------------------

    def request_stop(self) -> None:
        """Make ``run()`` stop gracefully, as SIGTERM does (after the drain);
        during a drain, end it."""
        if self._drain.under_way:
            self._drain.end()
            return
        self._ask_stop(drain=True)

    def _ask_stop(self, *, drain: bool) -> None:
        """Make ``run()`` stop, draining first if ``drain`` and it runs."""
        if self._stop_requested is not None:
            if drain and self._phase == "running":
                self._drain.begin()
            self._stop_requested.set()
        self._cancel_start()

    async def run(
        self, signals: Iterable[signal.Signals] = (signal.SIGINT, signal.SIGTERM)
    ) -> signal.Signals | None:
        """Start, wait for a signal or ``request_stop()``, then stop; the
        first signal received (None if none was), so that a program can exit
        with 128 plus its number, as shells expect."""
        loop = asyncio.get_running_loop()
        requested = self._stop_requested = asyncio.Event()
        installed: list[signal.Signals] = []
        received = 0
        first: signal.Signals | None = None

        def on_signal(sig: signal.Signals) -> None:
            nonlocal received, first
            received += 1
            if received == 1:
                first = sig
                _log.warning("received %s: stopping gracefully", sig.name)
                # Ctrl-C is someone at a terminal, whom no load balancer serves.
                self._ask_stop(drain=sig is not signal.SIGINT)
                return
            if self._drain.under_way:
                _log.warning("received %s again: ending the drain", sig.name)
                self._drain.end()
                return
            busy = self._phase in ("starting", "stopping")
            _log.warning(
                "received %s again: %s",
                sig.name,
                "cancelling the cleanups still running" if busy else "already stopping",
            )
            self._force()

        for sig in signals:
            loop.add_signal_handler(sig, on_signal, sig)
            installed.append(sig)
        try:
            try:
                await self.start()
            except StartInterrupted:
                return first  # a signal during start: rolled back
            await requested.wait()
            await self._drain.wait()  # (none unless one was begun)
        finally:
            try:
                await self.stop()
            except ShutdownError as error:
                error.signal = first
                raise
            finally:
                for sig in installed:
                    loop.remove_signal_handler(sig)
                self._stop_requested = None
        return first

    # --- health --------------------------------------------------------------------------

    def add_health_check(self, name: str, check: Check) -> Callable[[], None]:
        """Judge ``check()`` with the modules, under ``name``, in ``health()``,
        ``/health`` and ``/readyz``: healthy when it returns True within
        ``health_timeout``. Returns a function that removes it."""
        if not isinstance(name, str):
            raise TypeError(f"a health check's name must be a str, not {type(name).__name__}")
        if not name:
            raise ValueError("a health check's name must not be empty")
        if not callable(check):
            raise TypeError(f"a health check must be callable, not {type(check).__name__}")
        if name in self._checks:
            raise ValueError(f"a health check named {name!r} is already added")
        if any(node.name == name for node in self._plan()):
            raise ValueError(f"a module and a health check are both named {name!r}")
        self._checks[name] = check

        def remove() -> None:
            if self._checks.get(name) is check:
                del self._checks[name]

        return remove

    async def health(self) -> HealthReport:
        """Every module's health and every added check's, run concurrently (see health.py)."""
        report = await check_all(self._plan(), self.health_timeout, self._phase, self._checks)
        self._runtime_metrics.observe_health(report)
        return report

    # --- out of the process ----------------------------------------------------------------

    def render_metrics(self, fmt: Format = "prometheus") -> str:
        """The application's registry and every module's as text in ``fmt``
        (``"prometheus"``, 0.0.4, or ``"openmetrics"``, 1.0.0)."""
        if fmt not in ("prometheus", "openmetrics"):
            raise ValueError(f"format must be 'prometheus' or 'openmetrics', not {fmt!r}")
        if self._exposition is not None:
            return self._exposition.render(fmt)
        once = open_exposition(self.metrics, self._plan())
        try:
            return once.render(fmt)
        finally:
            once.close()

    async def _open_outside(self, nodes: list[Node]) -> None:
        """Join the registries into one exposition, then listen (if asked);
        on any failure, nothing is left open."""
        self._exposition = open_exposition(self.metrics, nodes)
        if self._address is None:
            return
        from pepperpy_core.runtime.http import HttpServer  # noqa: PLC0415

        server = HttpServer(_Served(self), *self._address)
        try:
            await server.open()
        except BaseException:
            self._exposition.close()
            self._exposition = None
            raise
        self._http = server

    async def _close_outside(self) -> None:
        """Stop listening, then release the registries."""
        server, self._http = self._http, None
        try:
            if server is not None:
                await server.close()
        finally:
            if self._exposition is not None:
                self._exposition.close()
                self._exposition = None


class _Served:
    """An application as its HTTP endpoints see it (``http.Served``)."""

    __slots__ = ("_app",)

    def __init__(self, app: Application) -> None:
        self._app = app

    @property
    def phase(self) -> Phase:
        return self._app.phase

    @property
    def draining(self) -> bool:
        return self._app.draining

    def health(self) -> Awaitable[HealthReport]:
        return self._app.health()

    def metrics(self, fmt: Format, lines: int) -> Iterator[bytes]:
        exposition = self._app._exposition
        if exposition is None:  # closed meanwhile: what render_metrics() says now
            yield self._app.render_metrics(fmt).encode()
            return
        yield from render_chunks(exposition.collect(), fmt, lines)

    def scraped(self, fmt: Format) -> None:
        self._app._runtime_metrics.count_scrape(fmt)
