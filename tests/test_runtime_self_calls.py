"""The application's own work never waits for itself.

A module's ``initialize()`` or ``cleanup()``, or a task one of them started,
may ask the application to stop: the stop may be waiting for that very code,
so ``stop()`` schedules it and returns. ``start()`` from there during a start
or a stop would wait for itself and is refused. And with timeouts set, a call
that ignores its cancellation cannot hold a phase up for ever: it is left
behind and reported.

These run on a virtual clock (tests/virtualtime.py): a deadlock fails at once
(the clock jumps to the bound) instead of after real seconds.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable

import pytest

from pepperpy_core import Application
from pepperpy_core.errors import (
    LifecycleError,
    PhaseTimeout,
    ShutdownError,
    StartInterrupted,
    StartupError,
)
from pepperpy_core.module import BaseModule, DependentModule, ModuleConfig, ModuleState
from tests.virtualtime import run_virtual

S = ModuleState


class Hook(DependentModule):
    """A module that runs ``on_start`` / ``on_stop`` (given the app) in its bodies."""

    def __init__(self, name: str, *deps: BaseModule) -> None:
        super().__init__(ModuleConfig(name=name))
        self.depends_on(*deps)
        self.app: Application | None = None
        self.on_start: Callable[[Application], Awaitable[None]] | None = None
        self.on_stop: Callable[[Application], Awaitable[None]] | None = None
        self.inits = self.cleanups = 0
        self.after_stop_call = False  # the body went on after the call returned

    async def initialize(self) -> None:
        self.inits += 1
        if self.on_start is not None:
            assert self.app is not None
            await self.on_start(self.app)
            self.after_stop_call = True

    async def cleanup(self) -> None:
        self.cleanups += 1
        if self.on_stop is not None:
            assert self.app is not None
            await self.on_stop(self.app)
            self.after_stop_call = True


def _app(*modules: Hook, **options: float) -> Application:
    app = Application(*modules, **options)  # type: ignore[arg-type]
    for module in modules:
        module.app = app
    return app


async def _stop(app: Application) -> None:
    await app.stop()


@pytest.mark.parametrize("stop_timeout", [None, 1.0])
def test_stop_from_a_modules_initialize_cancels_the_start(stop_timeout: float | None) -> None:
    db, api = Hook("db"), Hook("api")
    api.depends_on(db)
    db.on_start = _stop

    async def main() -> None:
        app = _app(db, api, stop_timeout=stop_timeout)  # type: ignore[arg-type]
        with pytest.raises(StartInterrupted):
            await app.start()
        assert app.phase == "idle"
        assert db.after_stop_call  # stop() returned; the start is cancelled, then rolled back
        assert (db.inits, db.cleanups, api.inits) == (1, 1, 0)
        assert db.state is S.CLOSED

    run_virtual(main())


def test_stop_from_a_cleanup_returns_and_the_stop_ends() -> None:
    db, api = Hook("db"), Hook("api")
    api.depends_on(db)
    api.on_stop = _stop

    async def main() -> None:
        app = _app(db, api)
        await app.start()
        await app.stop()
        assert api.after_stop_call
        assert (db.state, api.state) == (S.CLOSED, S.CLOSED)
        assert app.phase == "idle"

    run_virtual(main())


def test_stop_from_a_task_that_cleanup_cancels_and_awaits() -> None:
    db = Hook("db")
    watchdog: list[asyncio.Task[None]] = []

    async def watch(app: Application) -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            await app.stop()  # from a task the module started

    async def start_watching(app: Application) -> None:
        watchdog.append(asyncio.ensure_future(watch(app)))

    async def stop_watching(app: Application) -> None:
        watchdog[0].cancel()
        await asyncio.wait(watchdog)

    db.on_start = start_watching
    db.on_stop = stop_watching

    async def main() -> None:
        app = _app(db)
        await app.start()
        await app.stop()
        assert db.state is S.CLOSED
        assert db.after_stop_call
        assert watchdog[0].cancelled()

    run_virtual(main())


def test_a_watchdog_that_stops_the_application_ends_run() -> None:
    db = Hook("db")
    watchdogs: list[asyncio.Task[None]] = []

    async def watch(app: Application) -> None:
        await asyncio.sleep(5)  # then it finds something wrong
        await app.stop()

    async def start_watching(app: Application) -> None:
        watchdogs.append(asyncio.ensure_future(watch(app)))

    db.on_start = start_watching

    async def main() -> None:
        app = _app(db)
        assert await app.run(signals=(signal.SIGUSR1,)) is None
        assert app.phase == "idle"
        assert db.state is S.CLOSED

    run_virtual(main())


def test_a_stop_scheduled_from_inside_reports_its_failures_to_the_next_stop() -> None:
    db, api = Hook("db"), Hook("api")
    watchdogs: list[asyncio.Task[None]] = []

    async def fail(app: Application) -> None:
        raise OSError("db cannot stop")

    async def watch(app: Application) -> None:
        await asyncio.sleep(1)
        await app.stop()

    async def start_watching(app: Application) -> None:
        watchdogs.append(asyncio.ensure_future(watch(app)))

    db.on_stop = fail
    api.on_start = start_watching

    async def main() -> None:
        app = _app(db, api)
        await app.start()
        await asyncio.sleep(2)  # loop time: the watchdog's stop has ended
        assert app.phase == "idle"
        with pytest.raises(ShutdownError) as caught:
            await app.stop()  # the stop the watchdog scheduled: its outcome
        assert [str(e) for e in caught.value.exceptions] == ["db cannot stop"]
        await app.stop()  # told once

    run_virtual(main())


@pytest.mark.parametrize("where", ["initialize", "cleanup"])
def test_start_from_the_applications_own_phase_is_refused(where: str) -> None:
    db = Hook("db")
    seen: list[BaseException] = []

    async def start(app: Application) -> None:
        try:
            await app.start()
        except LifecycleError as error:
            seen.append(error)
            raise

    if where == "initialize":
        db.on_start = start
    else:
        db.on_stop = start

    async def main() -> None:
        app = _app(db)
        if where == "initialize":
            with pytest.raises(StartupError) as caught:
                await app.start()
            assert isinstance(caught.value.__cause__, LifecycleError)
        else:
            await app.start()
            with pytest.raises(ShutdownError):
                await app.stop()
        assert "would wait for" in str(seen[0])
        assert app.phase == "idle"

    run_virtual(main())


@pytest.mark.parametrize("phase", ["start", "stop"])
def test_a_call_that_ignores_its_cancellation_is_left_behind(
    phase: str, caplog: pytest.LogCaptureFixture
) -> None:
    db, api = Hook("db"), Hook("api")
    api.depends_on(db)
    release = asyncio.Event()

    async def stubborn(app: Application) -> None:
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                continue  # ignores every cancellation

    if phase == "start":
        db.on_start = stubborn
    else:
        api.on_stop = stubborn

    async def main() -> None:
        app = _app(db, api, start_timeout=2.0, stop_timeout=2.0)
        if phase == "start":
            with pytest.raises(StartupError) as started:
                await app.start()
            cause = started.value.__cause__
        else:
            await app.start()
            with pytest.raises(ShutdownError) as stopped:
                await app.stop()
            (cause,) = stopped.value.exceptions
            assert db.state is S.CLOSED  # the rest went on
        assert isinstance(cause, PhaseTimeout)
        assert "left behind" in str(cause)
        assert app.phase == "idle"
        release.set()  # it ends at last: said in the log
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert any("left behind, ended" in r.getMessage() for r in caplog.records)

    run_virtual(main())
