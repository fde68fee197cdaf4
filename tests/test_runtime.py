"""Application: validation, ordering, faults, cancellation, health, signals."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pepperpy_core import Application
from pepperpy_core.errors import (
    CircularDependencyError,
    DuplicateModuleError,
    MissingDependencyError,
    VersionConflictError,
)
from pepperpy_core.module import BaseModule, DependentModule, ModuleConfig, ModuleState
from pepperpy_core.runtime import ShutdownError, StartupError
from tests.asyncutil import run, until


class Probe(DependentModule):
    """Records its lifecycle in a shared log and checks its dependencies."""

    def __init__(
        self,
        name: str,
        log: list[str],
        *deps: BaseModule,
        version: str = "1.0.0",
        requires: tuple[str, ...] = (),
        fail_start: bool = False,
        fail_stop: bool = False,
        start_delay: float = 0.0,
        stop_delay: float = 0.0,
    ) -> None:
        super().__init__(ModuleConfig(name=name, version=version, dependencies=list(requires)))
        self.log = log
        self.depends_on(*deps)
        self.fail_start = fail_start
        self.fail_stop = fail_stop
        self.start_delay = start_delay
        self.stop_delay = stop_delay
        self.entered = asyncio.Event()
        self.leaving = asyncio.Event()
        self.ok = True

    async def initialize(self) -> None:
        for dep in self.dependencies():
            assert dep.state is ModuleState.READY, f"{self.name} started before {dep.name}"
        self.log.append(f"start {self.name}")
        self.entered.set()
        await asyncio.sleep(self.start_delay)
        if self.fail_start:
            raise ConnectionError(f"{self.name} cannot start")

    async def cleanup(self) -> None:
        self.log.append(f"stop {self.name}")
        self.leaving.set()
        await asyncio.sleep(self.stop_delay)
        if self.fail_stop:
            raise OSError(f"{self.name} cannot stop")

    async def health_check(self) -> bool:
        return self.ok and await super().health_check()


def starts(log: list[str]) -> list[str]:
    return [e.split()[1] for e in log if e.startswith("start ")]


def stops(log: list[str]) -> list[str]:
    return [e.split()[1] for e in log if e.startswith("stop ")]


# --- ordering ------------------------------------------------------------------------


def test_chain_starts_in_order_and_stops_in_reverse() -> None:
    log: list[str] = []
    a = Probe("a", log)
    b = Probe("b", log, a)
    c = Probe("c", log, b)
    app = Application(c)
    assert app.plan() == ["a", "b", "c"]

    async def main() -> None:
        async with app:
            assert all(m.state is ModuleState.READY for m in (a, b, c))

    run(main())
    assert starts(log) == ["a", "b", "c"]
    assert stops(log) == ["c", "b", "a"]
    assert set(app.start_durations) == set(app.stop_durations) == {"a", "b", "c"}


def test_independent_modules_start_at_the_same_time() -> None:
    barrier = asyncio.Barrier(10)
    log: list[str] = []

    class Wide(DependentModule):
        async def initialize(self) -> None:
            # Passes only if all ten are inside initialize() together.
            await barrier.wait()
            log.append(self.name)

    root = Probe("root", [])
    leaves = []
    for i in range(10):
        leaf = Wide(ModuleConfig(name=f"leaf{i}"))
        leaf.depends_on(root)
        leaves.append(leaf)
    app = Application(*leaves, start_timeout=5)

    async def main() -> None:
        await app.start()
        await app.stop()

    run(main())
    assert len(log) == 10


def test_plain_lifecycle_objects_are_accepted_and_reported() -> None:
    events: list[tuple[str, str, str]] = []

    class Plain:
        name = "plain"

        def __init__(self) -> None:
            self.up = False

        async def initialize(self) -> None:
            self.up = True

        async def cleanup(self) -> None:
            self.up = False

    plain = Plain()
    app = Application(plain)
    app.add_listener(lambda m, old, new: events.append((m.name, old.value, new.value)))

    async def main() -> None:
        async with app:
            assert plain.up

    run(main())
    assert not plain.up
    assert events == [
        ("plain", "created", "initializing"),
        ("plain", "initializing", "ready"),
        ("plain", "ready", "cleaning_up"),
        ("plain", "cleaning_up", "closed"),
    ]


def test_listeners_see_base_module_transitions() -> None:
    events: list[tuple[str, str]] = []
    a = Probe("a", [])
    app = Application(a)
    app.add_listener(lambda m, old, new: events.append((m.name, new.value)))
    run(app.start())
    run(app.stop())
    assert events == [("a", "initializing"), ("a", "ready"), ("a", "cleaning_up"), ("a", "closed")]


@pytest.mark.parametrize("how", ["its class's dependencies()", "an instance's dependencies"])
def test_refuses_a_dependency_that_is_not_a_module(how: str) -> None:
    class Custom(BaseModule):
        async def _initialize(self) -> None:
            pass

        async def _cleanup(self) -> None:
            pass

        def dependencies(self) -> list[Any]:
            return [42]

    if how == "its class's dependencies()":
        module: Any = Custom(ModuleConfig(name="custom"))
    else:
        module = DependentModule(ModuleConfig(name="custom"))
        module.dependencies = lambda: [42]
    with pytest.raises(TypeError, match="custom depends on int, which has no async initialize"):
        Application(module).plan()


def test_refuses_what_is_not_a_module() -> None:
    with pytest.raises(TypeError, match="async initialize"):
        Application(object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="start_timeout"):
        Application(start_timeout=0)
    with pytest.raises(TypeError, match="stop_timeout"):
        Application(stop_timeout="1")  # type: ignore[arg-type]


# --- validation ----------------------------------------------------------------------


def test_cycle_is_refused_before_anything_starts() -> None:
    log: list[str] = []
    a = Probe("a", log)
    b = Probe("b", log, a)
    c = Probe("c", log, b)
    a.depends_on(c)
    app = Application(Probe("top", log, a))
    with pytest.raises(CircularDependencyError) as info:
        run(app.start())
    assert set(info.value.cycle) == {"a", "b", "c"}
    assert info.value.cycle[0] == info.value.cycle[-1]
    assert log == []


def test_missing_requirement_is_refused() -> None:
    log: list[str] = []
    app = Application(Probe("api", log, requires=("ghost>=1",)))
    with pytest.raises(MissingDependencyError, match="api requires ghost>=1") as info:
        run(app.start())
    assert "'ghost'" in str(info.value)
    assert log == []


def test_duplicate_names_are_refused() -> None:
    log: list[str] = []
    app = Application(Probe("db", log), Probe("db", log))
    with pytest.raises(DuplicateModuleError, match="two modules are named 'db'"):
        run(app.start())
    assert log == []


def test_version_conflict_names_both_sides() -> None:
    log: list[str] = []
    cache = Probe("cache", log, version="1.4.0")
    api = Probe("api", log, cache, requires=("cache>=2,<3",))
    app = Application(api)
    with pytest.raises(VersionConflictError) as info:
        run(app.start())
    error = info.value
    assert (error.dependent, error.dependency, error.version) == ("api", "cache", "1.4.0")
    assert str(error) == "api requires cache<3,>=2, but cache is version 1.4.0"
    assert log == []


def test_requirements_by_name_also_order_the_start() -> None:
    log: list[str] = []
    db = Probe("db", log, version="2.0")
    api = Probe("api", log, requires=("db>=2",))
    app = Application(api, db)
    assert app.plan() == ["db", "api"]
    run(app.start())
    assert starts(log) == ["db", "api"]
    run(app.stop())


# --- faults ----------------------------------------------------------------------------


def test_failed_start_rolls_back_in_reverse_and_touches_nothing_else() -> None:
    log: list[str] = []
    a = Probe("a", log)
    b = Probe("b", log, a)
    d = Probe("d", log, a, start_delay=0.01)
    failing = Probe("x", log, b, fail_start=True)
    after = Probe("after", log, failing)
    app = Application(after, d)

    with pytest.raises(StartupError) as info:
        run(app.start())
    error = info.value
    assert error.module == "x"
    assert isinstance(error.__cause__, ConnectionError)
    assert "after" not in starts(log)
    assert "after" not in stops(log)
    # The failed module is cleaned up (it may hold half-made work), then what
    # started, most recent first; the in-flight "d" was cancelled and cleaned.
    assert stops(log)[0] == "x"
    assert stops(log)[-1] == "a"
    assert stops(log).index("b") < stops(log).index("a")
    assert set(stops(log)) == {"x", "b", "d", "a"}
    assert after.state is ModuleState.CREATED


def test_rollback_failures_are_attached() -> None:
    log: list[str] = []
    a = Probe("a", log, fail_stop=True)
    b = Probe("b", log, a, fail_start=True)
    with pytest.raises(StartupError) as info:
        run(Application(b).start())
    assert [str(e) for e in info.value.rollback_errors] == ["a cannot stop"]
    assert "also failed during rollback" in str(info.value)


def test_hanging_start_against_its_timeout() -> None:
    log: list[str] = []
    a = Probe("a", log)
    slow = Probe("slow", log, a, start_delay=3600)
    with pytest.raises(StartupError) as info:
        run(Application(slow, start_timeout=0.05).start())
    assert isinstance(info.value.__cause__, TimeoutError)
    assert "slow did not start within 0.05 s" in str(info.value.__cause__)
    assert stops(log) == ["slow", "a"]


def test_hanging_stop_against_its_timeout_and_the_rest_go_on() -> None:
    log: list[str] = []
    a = Probe("a", log)
    hang = Probe("hang", log, a, stop_delay=3600)
    other = Probe("other", log, a)
    app = Application(hang, other, stop_timeout=0.05)

    async def main() -> None:
        await app.start()
        with pytest.raises(ShutdownError) as info:
            await app.stop()
        [error] = info.value.exceptions
        assert isinstance(error, TimeoutError)
        assert "hang did not stop within 0.05 s" in str(error)

    run(main())
    assert set(stops(log)) == {"hang", "other", "a"}
    assert stops(log)[-1] == "a"


def test_three_failing_cleanups_are_raised_together_after_all_ran() -> None:
    log: list[str] = []
    base = Probe("base", log, fail_stop=True)
    mods = [Probe(f"m{i}", log, base, fail_stop=i < 2) for i in range(4)]
    app = Application(*mods)

    async def main() -> None:
        await app.start()
        with pytest.raises(ShutdownError) as info:
            await app.stop()
        messages = sorted(str(e) for e in info.value.exceptions)
        assert messages == ["base cannot stop", "m0 cannot stop", "m1 cannot stop"]
        notes = [e.__notes__[-1] for e in info.value.exceptions]
        assert all(n.startswith("while stopping module") for n in notes)
        assert isinstance(info.value, ExceptionGroup)

    run(main())
    assert sorted(stops(log)) == ["base", "m0", "m1", "m2", "m3"]
    assert stops(log)[-1] == "base"


def test_a_slow_cleanup_does_not_block_its_siblings() -> None:
    log: list[str] = []
    release = asyncio.Event()
    fast_done = asyncio.Event()

    class Slow(Probe):
        async def cleanup(self) -> None:
            await super().cleanup()
            await release.wait()
            self.log.append("done slow")

    class Fast(Probe):
        async def cleanup(self) -> None:
            await super().cleanup()
            fast_done.set()

    app = Application(Slow("slow", log), Probe("fast", log), Fast("fast2", log))

    async def main() -> None:
        await app.start()
        stopping = asyncio.create_task(app.stop())
        await fast_done.wait()  # finished while "slow" is still stopping
        assert "done slow" not in log
        release.set()
        await stopping

    run(main())
    assert log[-1] == "done slow"


def test_cancelling_the_task_during_start_cleans_up() -> None:
    log: list[str] = []
    a = Probe("a", log)
    hang = Probe("hang", log, a, start_delay=3600)

    async def main() -> None:
        app = Application(hang)
        task = asyncio.create_task(app.start())
        await hang.entered.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(main())
    assert set(stops(log)) == {"hang", "a"}
    assert stops(log)[-1] == "a"


def test_cancelling_the_task_during_stop_still_runs_every_cleanup() -> None:
    log: list[str] = []
    a = Probe("a", log, stop_delay=0.05)
    b = Probe("b", log, a, stop_delay=0.05)

    async def main() -> None:
        app = Application(b)
        await app.start()
        task = asyncio.create_task(app.stop())
        await asyncio.sleep(0.01)  # loop time: inside b's 0.05 s stop (timers keep order)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(main())
    assert stops(log) == ["b", "a"]


# --- health ------------------------------------------------------------------------------


def test_health_report() -> None:
    log: list[str] = []

    class Checked(Probe):
        result: Any = True
        delay = 0.0

        async def health_check(self) -> bool:
            await asyncio.sleep(self.delay)
            if isinstance(self.result, BaseException):
                raise self.result
            return bool(self.result) if self.result is not None else self.result  # type: ignore[return-value]

    db = Checked("db", log)
    cache = Checked("cache", log)
    api = Checked("api", log, db, cache)
    app = Application(api, health_timeout=0.05)

    async def main() -> None:
        report = await app.health()
        assert report.status == "unhealthy"
        assert report.modules["db"].detail == "not running"
        await app.start()
        report = await app.health()
        assert report.healthy
        assert all(m.status == "healthy" for m in report.modules.values())
        assert all(m.latency >= 0 for m in report.modules.values())

        db.result = False
        report = await app.health()
        assert report.modules["db"].status == "unhealthy"
        assert report.modules["db"].detail == "health_check returned False"
        assert report.modules["api"].status == "degraded"
        assert report.modules["api"].detail == "dependency db is not healthy"
        assert report.modules["cache"].status == "healthy"
        assert report.status == "unhealthy"

        db.result = RuntimeError("disk full")
        cache.delay = 3600
        report = await app.health()
        assert "raised RuntimeError('disk full')" in report.modules["db"].detail
        assert report.modules["cache"].detail == "health_check timed out after 0.05 s"
        assert report.modules["api"].detail == "dependency db, cache is not healthy"
        await app.stop()

    run(main())


def test_a_health_check_of_the_application_is_judged_as_a_modules() -> None:
    """add_health_check: reported beside the modules under its name, healthy
    only on True in time; bad names and checks are refused with nothing
    added; a name clash with a module is refused either way round; the
    returned function removes it (once)."""
    db = Probe("db", [])
    app = Application(db, health_timeout=0.05)
    verdict: list[object] = [True]

    async def disk() -> object:
        value = verdict[0]
        if isinstance(value, BaseException):
            raise value
        if value == "hang":
            await asyncio.sleep(3600)
        return value

    async def main() -> None:
        remove = app.add_health_check("disk", disk)
        report = await app.health()
        assert report.modules["disk"].status == "healthy"  # judged whatever the phase
        assert report.status == "unhealthy"  # the application is not running
        await app.start()
        assert (await app.health()).healthy
        for value, detail in [
            (False, "health_check returned False"),
            (1, "health_check returned 1"),
            (OSError("full"), "health_check raised OSError('full')"),
            ("hang", "health_check timed out after 0.05 s"),
        ]:
            verdict[0] = value
            report = await app.health()
            assert report.modules["disk"].status == "unhealthy"
            assert report.modules["disk"].detail == detail
            assert report.modules["db"].status == "healthy"  # nothing depends on a check
            assert report.unready() == ["disk"]
            assert report.status == "unhealthy"
        remove()
        remove()  # a second time: nothing
        report = await app.health()
        assert "disk" not in report.modules
        assert report.healthy
        await app.stop()

    run(main())


def test_bad_health_checks_are_refused_and_nothing_is_added() -> None:
    db = Probe("db", [])
    app = Application(db)

    async def ok() -> bool:
        return True

    with pytest.raises(TypeError, match="must be a str, not int"):
        app.add_health_check(3, ok)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must not be empty"):
        app.add_health_check("", ok)
    with pytest.raises(TypeError, match="must be callable, not str"):
        app.add_health_check("disk", "ok")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="a module and a health check are both named 'db'"):
        app.add_health_check("db", ok)
    app.add_health_check("disk", ok)
    with pytest.raises(ValueError, match="a health check named 'disk' is already added"):
        app.add_health_check("disk", ok)
    report = run(app.health())
    assert sorted(report.modules) == ["db", "disk"]
    # A module added later under a check's name: refused when the graph is planned.
    app.add(Probe("disk", []))
    with pytest.raises(ValueError, match="a module and a health check are both named 'disk'"):
        app.plan()


def test_dependency_health_is_judged_once_by_the_application() -> None:
    """A DependentModule's own health_check is its own; the Application
    reports it degraded when a dependency is not healthy, also for an override
    that returns ``await super().health_check()``."""
    log: list[str] = []

    class Api(Probe):
        async def health_check(self) -> bool:
            return await super().health_check()

    db = Probe("db", log)
    api = Api("api", log, db)

    async def main() -> None:
        app = Application(api)
        async with app:
            assert (await app.health()).status == "healthy"
            db.ok = False
            report = await app.health()
            assert await api.health_check()  # its own health
            assert report.modules["api"].status == "degraded"
            assert report.modules["api"].detail == "dependency db is not healthy"
            assert report.modules["db"].status == "unhealthy"

    run(main())


# --- the spec's APIModule -------------------------------------------------------------------


class CacheModule(BaseModule):
    def __init__(self) -> None:
        super().__init__()
        self.ready_before_api = False


class APIModule(DependentModule):
    def __init__(self, cache: CacheModule):
        super().__init__()
        self.cache = cache

    async def initialize(self):
        # Initialize dependencies first
        await self.cache.initialize()

        # Initialize this module
        await self.setup_api()

    async def setup_api(self) -> None:  # stand-in
        self.cache.ready_before_api = self.cache.state is ModuleState.READY


def test_spec_api_module_initializes_its_cache_first() -> None:
    cache = CacheModule()
    api = APIModule(cache)
    assert api.dependencies() == [cache]
    run(api.initialize())
    assert cache.ready_before_api

    cache2 = CacheModule()
    app = Application(APIModule(cache2))
    assert app.plan() == ["CacheModule", "APIModule"]
    run(app.start())
    assert cache2.ready_before_api
    run(app.stop())


# --- signals ---------------------------------------------------------------------------------


def test_sigterm_runs_every_cleanup_and_exits_zero() -> None:
    child = textwrap.dedent(
        """
        import asyncio, sys
        from pepperpy_core import Application
        from pepperpy_core.module import BaseModule, ModuleConfig

        class M(BaseModule):
            async def initialize(self):
                print("up", self.name, flush=True)
            async def cleanup(self):
                await asyncio.sleep(0.01)
                print("down", self.name, flush=True)

        app = Application(M(ModuleConfig(name="one")), M(ModuleConfig(name="two")))

        async def main():
            app.add_listener(lambda m, o, n: n.value == "ready" and print("ready", flush=True))
            await app.run()

        asyncio.run(main())
        print("exited", flush=True)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", child],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    assert proc.stdout is not None
    seen = []
    while len([line for line in seen if line == "ready"]) < 2:
        line = proc.stdout.readline().strip()
        assert line, proc.stderr.read() if proc.stderr else ""
        seen.append(line)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    lines = out.split()
    assert lines.count("down") == 2
    assert out.strip().endswith("exited")


def test_request_stop_ends_run() -> None:
    log: list[str] = []
    a = Probe("a", log)
    app = Application(a)

    async def main() -> None:
        runner = asyncio.create_task(app.run(signals=()))
        await a.entered.wait()
        app.request_stop()
        await runner

    run(main())
    assert stops(log) == ["a"]


# --- property: random DAGs -------------------------------------------------------------------


@st.composite
def dags(draw: st.DrawFn) -> tuple[int, list[list[int]], set[int], set[int]]:
    n = draw(st.integers(min_value=1, max_value=12))
    deps = [
        sorted(draw(st.sets(st.integers(min_value=0, max_value=i - 1), max_size=3))) if i else []
        for i in range(n)
    ]
    fail_start = draw(st.sets(st.integers(min_value=0, max_value=n - 1), max_size=2))
    fail_stop = draw(st.sets(st.integers(min_value=0, max_value=n - 1), max_size=2))
    return n, deps, fail_start, fail_stop


@settings(max_examples=60, deadline=None)
@given(dags())
def test_random_dags_start_topologically_and_stop_in_reverse(
    graph: tuple[int, list[list[int]], set[int], set[int]],
) -> None:
    n, deps, fail_start, fail_stop = graph
    log: list[str] = []
    mods: list[Probe] = []
    for i in range(n):
        mods.append(
            Probe(
                f"m{i}",
                log,
                *(mods[d] for d in deps[i]),
                fail_start=i in fail_start,
                fail_stop=i in fail_stop,
            )
        )
    app = Application(*mods)

    async def main() -> None:
        try:
            await app.start()
        except StartupError:
            assert fail_start
        else:
            assert not fail_start
            if fail_stop:
                with pytest.raises(ShutdownError) as info:
                    await app.stop()
                assert len(info.value.exceptions) == len(fail_stop)
            else:
                await app.stop()

    run(main())
    started = starts(log)
    stopped = stops(log)
    position = {name: i for i, name in enumerate(started)}
    for i in range(n):
        if f"m{i}" in position:
            for d in deps[i]:
                assert position[f"m{d}"] < position[f"m{i}"]
    # Everything that started was stopped, each once, dependents before deps.
    assert sorted(stopped) == sorted(started)
    stop_at = {name: i for i, name in enumerate(stopped)}
    for i in range(n):
        for d in deps[i]:
            if (
                f"m{i}" in stop_at
                and f"m{d}" in stop_at
                and f"m{i}" not in (f"m{k}" for k in fail_start)
            ):
                assert stop_at[f"m{i}"] < stop_at[f"m{d}"]


def test_a_second_signal_forces_the_stop() -> None:
    log: list[str] = []
    a = Probe("a", log)
    stuck = Probe("stuck", log, a, stop_delay=3600)
    app = Application(stuck)

    async def main() -> None:
        runner = asyncio.create_task(app.run(signals=(signal.SIGUSR1,)))
        await stuck.entered.wait()
        await until(lambda: app.phase == "running")
        os.kill(os.getpid(), signal.SIGUSR1)  # graceful: "stuck" hangs in cleanup
        await stuck.leaving.wait()
        os.kill(os.getpid(), signal.SIGUSR1)  # forced
        with pytest.raises(ShutdownError) as info:
            await runner
        messages = [str(e) for e in info.value.exceptions]
        assert "stopping stuck was cancelled: shutdown forced" in messages
        assert "a was not stopped: shutdown forced" in messages

    run(main())


def test_run_returns_the_signal_that_stopped_it() -> None:
    async def main() -> tuple[Any, Any]:
        log: list[str] = []
        app = Application(Probe("a", log))
        running = asyncio.ensure_future(app.run(signals=(signal.SIGUSR1,)))
        await until(lambda: app.phase == "running")
        app.request_stop()
        by_request = await running
        running = asyncio.ensure_future(app.run(signals=(signal.SIGUSR1,)))
        await until(lambda: app.phase == "running")
        os.kill(os.getpid(), signal.SIGUSR1)
        by_signal = await running
        return by_request, by_signal

    assert run(main()) == (None, signal.SIGUSR1)


# --- modules held but not part of the application ---------------------------------------------


class Plain(BaseModule):
    """Not a DependentModule: what it holds is not a dependency."""

    def __init__(self, name: str, requires: tuple[str, ...] = (), **held: object) -> None:
        super().__init__(ModuleConfig(name=name, dependencies=list(requires)))
        for attribute, value in held.items():
            setattr(self, attribute, value)


class Slotted(BaseModule):
    __slots__ = ("db",)

    def __init__(self, db: BaseModule) -> None:
        super().__init__(ModuleConfig(name="slotted"))
        self.db = db


@pytest.mark.parametrize(
    "holder",
    [
        lambda db: Plain("api", db=db),
        lambda db: Plain("api", replicas=[db]),
        Slotted,
        lambda db: Plain("api", requires=("db>=1",), db=db),
    ],
    ids=["attribute", "in a list", "slot", "required by name"],
)
def test_a_held_module_outside_the_application_is_refused(holder: Any) -> None:
    db = Probe("db", [])
    api = holder(db)
    started: list[str] = []
    api.add_listener(lambda m, old, new: started.append(m.name))
    app = Application(api)
    with pytest.raises(MissingDependencyError) as caught:
        app.plan()
    message = str(caught.value)
    assert "holds module 'db'" in message
    assert "would never start" in message
    assert "DependentModule" in message
    with pytest.raises(MissingDependencyError):
        run(app.start())
    assert started == []  # refused before anything starts
    assert Application(api, db).plan()  # passed too: fine


def test_a_module_held_privately_is_its_holders_business() -> None:
    db = Probe("db", [])
    api = Plain("api", _db=db)
    assert Application(api).plan() == ["api"]


def test_a_dependent_module_starts_what_it_holds() -> None:
    log: list[str] = []
    db = Probe("db", log)

    class Api(DependentModule):
        def __init__(self) -> None:
            super().__init__(ModuleConfig(name="api"))
            self.db = db

    assert Application(Api()).plan() == ["db", "api"]
