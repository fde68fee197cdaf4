"""The Application under faults and odd call orders: each case that once
broke (a hang, a double start, a half-stopped graph) as a regression test,
and signals sent to real processes during start, while running and during
stop."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from pepperpy_core import Application
from pepperpy_core.errors import (
    CircularDependencyError,
    LifecycleError,
    ShutdownError,
    StartupError,
)
from pepperpy_core.module import BaseModule, DependentModule, ModuleConfig, ModuleState
from tests.asyncutil import run

S = ModuleState


class Step(DependentModule):
    """A module that records its bodies and can be told to fail or hang."""

    def __init__(self, name: str, *deps: BaseModule, log: list[str] | None = None) -> None:
        super().__init__(ModuleConfig(name=name))
        self.depends_on(*deps)
        self.log = log if log is not None else []
        self.start_delay = 0.0
        self.fail_start = False
        self.hang_start = False
        self.inits = 0
        self.cleanups = 0

    async def initialize(self) -> None:
        for dep in self.dependencies():
            assert dep.state is S.READY, f"{self.name} started before {dep.name}"
        self.inits += 1
        self.log.append(f"start {self.name}")
        if self.hang_start:
            await asyncio.Event().wait()
        await asyncio.sleep(self.start_delay)
        if self.fail_start:
            raise ConnectionError(f"{self.name} cannot start")

    async def cleanup(self) -> None:
        self.cleanups += 1
        self.log.append(f"stop {self.name}")


def test_two_concurrent_starts_start_the_graph_once() -> None:
    log: list[str] = []
    a = Step("a", log=log)
    b = Step("b", a, log=log)
    a.start_delay = 0.02

    async def main() -> None:
        app = Application(b)
        await asyncio.gather(app.start(), app.start(), app.start())
        assert (a.inits, b.inits) == (1, 1)
        assert app.phase == "running"
        await asyncio.gather(app.stop(), app.stop())
        assert (a.cleanups, b.cleanups) == (1, 1)
        assert app.phase == "idle"

    run(main())


def test_concurrent_starts_share_a_failure() -> None:
    a = Step("a")
    a.fail_start = True

    async def main() -> list[Any]:
        app = Application(a)
        return await asyncio.gather(app.start(), app.start(), return_exceptions=True)

    outcomes = run(main())
    assert all(isinstance(o, StartupError) for o in outcomes)
    assert outcomes[0] is outcomes[1]
    assert a.inits == 1


def test_stop_during_start_leaves_nothing_running() -> None:
    log: list[str] = []
    a = Step("a", log=log)
    b = Step("b", a, log=log)
    a.start_delay = 0.05
    seen: list[tuple[str, ModuleState]] = []

    async def main() -> None:
        app = Application(b)

        def check(module: Any, old: ModuleState, new: ModuleState) -> None:
            seen.append((module.name, new))
            if new is S.READY:  # never READY while a dependency is not
                for dep in module.dependencies():
                    assert dep.state is S.READY

        app.add_listener(check)
        starting = asyncio.ensure_future(app.start())
        await asyncio.sleep(0.01)  # loop time: inside a's 0.05 s start (timers keep order)
        await app.stop()
        assert app.phase == "idle"
        assert a.state in (S.CLOSED, S.FAILED)
        assert b.state is S.CREATED  # never began, never cleaned up
        assert b.inits == b.cleanups == 0
        with pytest.raises(LifecycleError, match="interrupted"):
            await starting
        await asyncio.sleep(0.1)  # time: nothing left to wake up and change them
        assert a.state in (S.CLOSED, S.FAILED)
        assert b.state is S.CREATED

    run(main())
    assert all(name != "b" for name, _ in seen)


def test_a_plain_def_lifecycle_is_refused_before_anything_starts() -> None:
    started: list[str] = []

    class Plain:
        name = "plain"

        async def initialize(self) -> None:
            started.append("plain")

        def cleanup(self) -> None:  # not async
            pass

    good = Step("good")
    app = Application(good, Plain())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"module 'plain' \(Plain\): cleanup\(\) must be async def"):
        run(app.start())
    assert good.inits == 0
    assert started == []


def test_the_rollback_cleans_up_only_modules_whose_initialize_began() -> None:
    log: list[str] = []
    a = Step("a", log=log)
    b = Step("b", log=log)
    c = Step("c", a, b, log=log)  # never begins: a fails first
    a.fail_start = True
    b.start_delay = 0.02

    with pytest.raises(StartupError, match="'a'"):
        run(Application(c).start())
    assert c.inits == 0
    assert c.cleanups == 0
    assert (a.cleanups, b.cleanups) == (1, 1)


# A loop with a task factory of its own makes tasks the plain way; on 3.12+
# without one, a module's initialize() runs its first step when launched.
TASKS = ["plain"] + (["eager"] if sys.version_info >= (3, 12) else [])


def _plain_tasks() -> None:
    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        return asyncio.Task(coro, loop=loop, **kwargs)

    asyncio.get_running_loop().set_task_factory(factory)


@pytest.mark.parametrize("tasks", TASKS)
def test_a_rollback_undoes_only_what_its_start_began(tasks: str) -> None:
    # Plain tasks: m1's task is made when m0 ends, in the same turn of the
    # loop as m2 fails: it is cancelled before its body ran. m1, FAILED
    # since its cleanup failed in the last stop, must not be cleaned up
    # again. Eager tasks: m1's initialize() ran as it was launched, so this
    # start began it, and its rollback undoes it.
    class Flaky(Step):
        fail_stop = False

        async def cleanup(self) -> None:
            await super().cleanup()
            if self.fail_stop:
                raise OSError(f"{self.name} cannot stop")

    m0 = Flaky("m0")
    m1 = Flaky("m1", m0)
    m2 = Flaky("m2")
    transitions: list[tuple[str, S, S]] = []

    async def main() -> None:
        if tasks == "plain":
            _plain_tasks()
        app = Application(m0, m2, m1)
        await app.start()
        m1.fail_stop = True
        with pytest.raises(ShutdownError):
            await app.stop()
        assert m1.state is S.FAILED
        m2.fail_start = True
        app.add_listener(lambda m, old, new: transitions.append((m.name, old, new)))
        with pytest.raises(StartupError, match="'m2'"):
            await app.start()

    run(main())
    if tasks == "plain":
        assert (m1.inits, m1.cleanups) == (1, 1)
        assert ("m1", S.INITIALIZING, S.FAILED) in transitions  # the app's view: back where it was
    else:
        assert (m1.inits, m1.cleanups) == (2, 2)
        assert ("m1", S.CLEANING_UP, S.FAILED) in transitions  # undone, and failed again
    assert m1.state is S.FAILED  # as the last stop left it
    assert (m0.inits, m0.cleanups, m2.inits, m2.cleanups) == (2, 2, 2, 2)


def test_a_start_caller_cancelled_during_the_rollback_leaves_it_to_finish() -> None:
    class SlowStop(Step):
        async def cleanup(self) -> None:
            stopping.set()
            await release.wait()
            await super().cleanup()

    stopping, release = asyncio.Event(), asyncio.Event()
    db = SlowStop("db")
    api = Step("api", db)
    api.fail_start = True

    async def main() -> None:
        app = Application(api)
        caller = asyncio.ensure_future(app.start())
        await stopping.wait()  # the rollback is under way: db's cleanup waits
        caller.cancel()
        await asyncio.sleep(0)
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await caller
        assert app.phase == "idle"

    run(main())
    assert (db.cleanups, db.state) == (1, S.CLOSED)


@pytest.mark.parametrize("tasks", TASKS)
@pytest.mark.parametrize("escaping", [KeyboardInterrupt, SystemExit])
@pytest.mark.parametrize("waits_first", [False, True], ids=["at once", "after a wait"])
def test_an_initialize_raising_past_the_loop_still_rolls_back(
    tasks: str, escaping: type[BaseException], waits_first: bool
) -> None:
    # KeyboardInterrupt and SystemExit leave the event loop from the step
    # that raised them; whether the loop ran that step or the scheduler ran
    # it eagerly, the caller gets them and nothing started is left running.
    class Exiting(Step):
        async def initialize(self) -> None:
            await super().initialize()
            if waits_first:
                await asyncio.sleep(0)
            raise escaping

    db = Step("db")
    api = Exiting("api", db)
    other = Step("other")

    async def main() -> None:
        if tasks == "plain":
            _plain_tasks()
        async with Application(api, other):
            pass

    with pytest.raises(escaping):
        asyncio.run(main())
    assert (db.inits, db.cleanups, other.inits, other.cleanups) == (1, 1, 1, 1)
    assert (db.state, other.state) == (S.CLOSED, S.CLOSED)


@pytest.mark.parametrize("how", ["raises CancelledError", "cancels its own task"])
def test_health_survives_a_check_that_raises_cancelled_error(how: str) -> None:
    class Sick(Step):
        async def health_check(self) -> bool:
            if how == "raises CancelledError":
                raise asyncio.CancelledError
            task = asyncio.current_task()
            assert task is not None
            task.cancel()
            await asyncio.sleep(0)
            return True

    sick = Sick("sick")
    fine = Step("fine")

    async def main() -> None:
        app = Application(sick, fine)
        async with app:
            report = await app.health()
            assert report.modules["sick"].status == "unhealthy"
            assert "cancelled" in report.modules["sick"].detail
            assert report.modules["fine"].status == "healthy"

    run(main())


def test_cancelling_health_itself_still_cancels() -> None:
    class Slow(Step):
        async def health_check(self) -> bool:
            await asyncio.sleep(10)
            return True

    async def main() -> None:
        app = Application(Slow("slow"), health_timeout=30)
        async with app:
            checking = asyncio.ensure_future(app.health())
            await asyncio.sleep(0.01)  # loop time: inside the 10 s check (timers keep their order)
            checking.cancel()
            with pytest.raises(asyncio.CancelledError):
                await checking

    run(main())


def test_start_after_stop_starts_again() -> None:
    a = Step("a")

    async def main() -> None:
        app = Application(a)
        for _ in range(3):
            await app.start()
            assert a.state is S.READY
            await app.stop()
            assert a.state is S.CLOSED
        assert (a.inits, a.cleanups) == (3, 3)

    run(main())


# --- signals sent to a real process -------------------------------------------------------

_APP = textwrap.dedent(
    """
    import asyncio, sys
    from pepperpy_core import Application
    from pepperpy_core.module import BaseModule, ModuleConfig

    where = sys.argv[1]  # "start", "run" or "stop": where the app is when signalled

    class M(BaseModule):
        def __init__(self, name, hang=False, slow_stop=False):
            super().__init__(ModuleConfig(name=name))
            self.hang, self.slow_stop = hang, slow_stop
        async def initialize(self):
            print("init", self.name, flush=True)
            if self.hang:
                await asyncio.Event().wait()  # never returns
        async def cleanup(self):
            print("cleanup", self.name, flush=True)
            if self.slow_stop:
                await asyncio.Event().wait()  # never returns either

    first = M("first", slow_stop=(where == "stop"))
    hang = M("hang", hang=(where == "start"))
    app = Application(first, hang)
    app.add_listener(lambda m, o, n: print("state", m.name, n.value, flush=True))

    async def main():
        try:
            await app.run()
        except Exception as error:
            print("run raised", type(error).__name__, flush=True)
        print("exited", flush=True)

    asyncio.run(main())
    """
)


def _spawn(where: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _APP, where],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )


def _read_until(proc: subprocess.Popen[str], wanted: str, seen: list[str]) -> None:
    assert proc.stdout is not None
    while wanted not in seen:  # (pytest's timeout ends a child that hangs)
        line = proc.stdout.readline().strip()
        assert line, (seen, proc.stderr.read() if proc.stderr else "")
        seen.append(line)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_a_start_that_never_ends_rolls_back_and_exits(
    sig: signal.Signals,
) -> None:
    proc = _spawn("start")
    seen: list[str] = []
    _read_until(proc, "init hang", seen)
    _read_until(proc, "state first ready", seen)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    lines = seen + out.splitlines()
    assert proc.returncode == 0, err
    assert "cleanup first" in lines  # what started is cleaned up
    assert "cleanup hang" in lines  # and the one whose start was cancelled
    assert lines[-1] == "exited"
    assert "cancelling the cleanups still running" not in err


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_while_running_stops_gracefully(sig: signal.Signals) -> None:
    proc = _spawn("run")
    seen: list[str] = []
    _read_until(proc, "state hang ready", seen)
    _read_until(proc, "state first ready", seen)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    lines = seen + out.splitlines()
    assert proc.returncode == 0, err
    assert {"cleanup first", "cleanup hang"} <= set(lines)
    assert lines[-1] == "exited"
    assert "run raised" not in out


def test_a_second_signal_during_a_stop_that_hangs_forces_it() -> None:
    proc = _spawn("stop")
    seen: list[str] = []
    _read_until(proc, "state first ready", seen)
    _read_until(proc, "state hang ready", seen)
    proc.send_signal(signal.SIGTERM)
    _read_until(proc, "cleanup first", seen)  # it hangs there
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    lines = seen + out.splitlines()
    assert "cancelling the cleanups still running" in err
    assert "run raised ShutdownError" in lines
    assert lines[-1] == "exited"


def test_a_second_signal_during_the_rollback_forces_it() -> None:
    script = _APP.replace(
        'first = M("first", slow_stop=(where == "stop"))',
        'first = M("first", slow_stop=True)',
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script, "start"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen: list[str] = []
    _read_until(proc, "init hang", seen)
    _read_until(proc, "state first ready", seen)
    proc.send_signal(signal.SIGTERM)
    _read_until(proc, "cleanup first", seen)  # the rollback hangs there
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    lines = seen + out.splitlines()
    assert "cancelling the cleanups still running" in err
    assert lines[-1] == "exited"


def test_stop_or_request_stop_during_a_rollback_lets_it_finish() -> None:
    class SlowStop(Step):
        async def cleanup(self) -> None:
            self.rolling_back.set()
            await asyncio.sleep(0.05)
            await super().cleanup()

    for how in ("stop", "request_stop"):
        a = SlowStop("a")
        a.rolling_back = asyncio.Event()
        b = Step("b", a)
        b.fail_start = True

        async def main(how: str = how, a: SlowStop = a, b: Step = b) -> None:
            app = Application(b)
            starting = asyncio.ensure_future(app.start())
            await a.rolling_back.wait()  # the rollback is under way
            if how == "stop":
                await app.stop()
            else:
                app.request_stop()
            with pytest.raises(StartupError):
                await starting
            assert a.state is S.CLOSED  # cleaned up, not cut short
            assert app.phase == "idle"

        run(main())


# --- what the runtime reports while it stops, and when modules are shared --------------------


def test_run_raises_the_failed_stop_and_names_the_signal() -> None:
    class Broken(Step):
        async def cleanup(self) -> None:
            await super().cleanup()
            raise OSError("cannot stop")

    async def main() -> None:
        app = Application(Broken("b"))
        started = asyncio.Event()
        app.add_listener(lambda m, old, new: new is S.READY and started.set())
        running = asyncio.ensure_future(app.run(signals=(signal.SIGUSR1,)))
        await started.wait()
        os.kill(os.getpid(), signal.SIGUSR1)
        with pytest.raises(ShutdownError) as caught:
            await running
        assert caught.value.signal is signal.SIGUSR1

    run(main())


def test_health_during_a_stop_is_unhealthy() -> None:
    gate = asyncio.Event()

    class Slow(Step):
        async def cleanup(self) -> None:
            await super().cleanup()
            await gate.wait()

    async def main() -> None:
        app = Application(Slow("slow"), Step("fast"))
        await app.start()
        assert (await app.health()).status == "healthy"
        stopping = asyncio.ensure_future(app.stop())
        await asyncio.sleep(0)
        report = await app.health()
        assert (report.phase, report.status) == ("stopping", "unhealthy")
        assert report.to_dict()["phase"] == "stopping"
        gate.set()
        await stopping

    run(main())


def test_a_module_shared_by_two_applications_reports_its_own_state() -> None:
    shared = Step("shared")

    async def main() -> None:
        first, second = Application(shared), Application(shared, Step("other"))
        await first.start()
        await second.start()
        await first.stop()  # closes the shared module
        report = await second.health()
        assert report.modules["shared"].detail == "not running"
        assert 'pepperpy_module_up{module="shared"} 0.0' in second.render_metrics()
        await second.stop()

    run(main())


def test_a_chain_of_thousands_of_modules_that_initialize_their_dependency() -> None:
    # The spec's pattern, `await self.dep.initialize()`, down a long chain.
    class Link(BaseModule):
        def __init__(self, index: int, dep: Link | None) -> None:
            super().__init__(ModuleConfig(name=f"link{index}"))
            self.dep = dep

        async def initialize(self) -> None:
            if self.dep is not None:
                await self.dep.initialize()

        async def cleanup(self) -> None:
            if self.dep is not None:
                await self.dep.cleanup()

    chain: list[Link] = []
    for index in range(2000):
        chain.append(Link(index, chain[-1] if chain else None))

    async def main() -> None:
        await chain[-1].initialize()
        assert {m.state for m in chain} == {S.READY}
        await chain[-1].cleanup()
        assert {m.state for m in chain} == {S.CLOSED}

    run(main())


def test_a_cycle_deep_down_a_long_chain_is_still_found() -> None:
    class Link(BaseModule):
        dep: BaseModule | None = None

        async def initialize(self) -> None:
            if self.dep is not None:
                await self.dep.initialize()

    chain = [Link(ModuleConfig(name=f"link{i}")) for i in range(180)]
    for low, high in itertools.pairwise(chain):
        high.dep = low
    chain[0].dep = chain[-1]  # the circle closes 180 bodies down

    with pytest.raises(CircularDependencyError):
        run(chain[-1].initialize())
