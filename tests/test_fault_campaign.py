"""The fault campaign: an Application of up to 30 modules in a random DAG,
each with an injected behaviour per phase (succeed, raise, hang past the
timeout, be slow, cancel itself; for health_check also return False), driven
by Hypothesis through random interleavings of start(), stop(), run() with
request_stop() and signals, health(), and concurrent calls.

After every step: no module is READY while a dependency is not; every module
whose initialize() began got exactly one cleanup() once the application is
idle, unless a second signal skipped it (and the ShutdownError names it as
skipped); after stop() nothing of the application's is left running; no call
outlived its timeouts plus a margin; a ShutdownError names exactly the
cleanups that failed.

The loop runs on a virtual clock (``tests/virtualtime.py``): a module that
hangs costs no real time, and "within its timeouts" is exact, however busy
the machine is.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from typing import Any, Literal

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from pepperpy_core import Application
from pepperpy_core.errors import LifecycleError, ShutdownError, StartupError
from pepperpy_core.module import DependentModule, ModuleConfig, ModuleState
from tests.virtualtime import VirtualClockLoop

S = ModuleState
T = 0.04  # every timeout of the application under test, in seconds
Behaviour = Literal["ok", "raise", "hang", "slow", "cancel"]
BEHAVIOURS: tuple[Behaviour, ...] = ("ok", "raise", "hang", "slow", "cancel")


class Faulty(DependentModule):
    """A module that does what its plan says in each phase, and counts."""

    def __init__(self, index: int) -> None:
        super().__init__(ModuleConfig(name=f"m{index}"))
        self.plan: dict[str, str] = {"initialize": "ok", "cleanup": "ok", "health": "ok"}
        self.began = 0
        self.cleaned = 0
        self.skipped = 0  # 1 while it owes a cleanup a forced shutdown skipped (and reported)

    async def _act(self, behaviour: str) -> None:
        if behaviour == "slow":
            await asyncio.sleep(T / 4)
        elif behaviour == "raise":
            raise RuntimeError(f"{self.name} fails")
        elif behaviour == "hang":
            await asyncio.sleep(3600)
        elif behaviour == "cancel":
            task = asyncio.current_task()
            assert task is not None
            task.cancel()
            await asyncio.sleep(0)

    async def initialize(self) -> None:
        for dep in self.dependencies():
            assert dep.state is S.READY, f"{self.name} began before {dep.name} was READY"
        self.began += 1
        await self._act(self.plan["initialize"])

    async def cleanup(self) -> None:
        self.cleaned += 1
        if self.skipped:  # the cleanup a forced shutdown skipped, run late
            self.skipped -= 1
        await self._act(self.plan["cleanup"])

    async def health_check(self) -> bool:
        behaviour = self.plan["health"]
        if behaviour == "false":
            return False
        await self._act(behaviour)
        return True


#: Where the coroutines of the application and its modules come from (the
#: harness's own tasks are left out of "nothing left running").
_APPLICATION_CODE = ("Application.", "Faulty.", "BaseModule.", "DependentModule.", "run_phase")


def _named(errors: list[ShutdownError]) -> set[str]:
    """The modules a ShutdownError names in its notes."""
    return {
        note.split("'")[1]
        for error in errors
        for failure in error.exceptions
        for note in getattr(failure, "__notes__", [])
        if note.startswith("while stopping module")
    }


def _skipped(errors: list[ShutdownError]) -> list[str]:
    """The modules whose cleanup a forced shutdown skipped, as it reports them."""
    suffix = " was not stopped: shutdown forced"
    return [
        str(failure).removesuffix(suffix)
        for error in errors
        for failure in error.exceptions
        if str(failure).endswith(suffix)
    ]


def _bound(modules: int) -> float:
    """The longest any one call of the application may take, in loop time:
    every module at most one timeout to start and one to stop, plus a margin."""
    return 2 * modules * T + T


class Campaign(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = VirtualClockLoop()
        self.modules: list[Faulty] = []
        self.app = Application()
        self.running: asyncio.Task[None] | None = None  # run(), while it runs

    def teardown(self) -> None:
        async def wind_down() -> None:
            if self.running is not None:
                self.app.request_stop()
                with contextlib.suppress(Exception):
                    await self.running
            for module in self.modules:
                module.plan = {"initialize": "ok", "cleanup": "ok", "health": "ok"}
            with contextlib.suppress(Exception):
                await self.app.stop()

        try:
            self.loop.run_until_complete(asyncio.wait_for(wind_down(), 30))
        finally:
            self.loop.close()

    # --- building --------------------------------------------------------------------------

    @initialize(
        size=st.integers(min_value=1, max_value=30),
        edges=st.lists(st.tuples(st.integers(0, 29), st.integers(0, 29)), max_size=60),
    )
    def build(self, size: int, edges: list[tuple[int, int]]) -> None:
        self.modules = [Faulty(i) for i in range(size)]
        for a, b in edges:
            low, high = sorted((a % size, b % size))
            if low != high:  # the higher depends on the lower: always a DAG
                self.modules[high].depends_on(self.modules[low])
        self.app = Application(*self.modules, start_timeout=T, stop_timeout=T, health_timeout=T)

    @rule(
        index=st.integers(0, 29),
        phase=st.sampled_from(["initialize", "cleanup", "health"]),
        behaviour=st.sampled_from([*BEHAVIOURS, "false"]),
    )
    def plan(self, index: int, phase: str, behaviour: str) -> None:
        if behaviour == "false" and phase != "health":
            behaviour = "raise"
        self.modules[index % len(self.modules)].plan[phase] = behaviour

    # --- driving -----------------------------------------------------------------------------

    def _call(self, *calls: Any) -> list[Any]:
        """Run the coroutines concurrently; their outcomes, timed."""

        async def together() -> list[Any]:
            return await asyncio.gather(*calls, return_exceptions=True)

        clock = self.loop.clock
        started = clock.now
        outcomes = self.loop.run_until_complete(
            asyncio.wait_for(together(), _bound(len(self.modules)) * 2)
        )
        spent = clock.now - started
        assert spent <= _bound(len(self.modules)) * len(calls), f"a call took {spent:.2f} s"
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                assert isinstance(outcome, StartupError | ShutdownError | LifecycleError), repr(
                    outcome
                )
        return outcomes

    def _check_shutdown(self, outcome: object, failing: set[str]) -> None:
        if isinstance(outcome, ShutdownError):
            named = _named([outcome])
            assert named == failing, (named, failing)
        else:
            assert not failing or (outcome is None and not failing)

    def _failing_cleanups(self) -> set[str]:
        return {
            m.name
            for m in self.modules
            if m.state is S.READY and m.plan["cleanup"] in ("raise", "hang", "cancel")
        }

    @precondition(lambda self: self.running is None)
    @rule()
    def start(self) -> None:
        self._call(self.app.start())

    @precondition(lambda self: self.running is None)
    @rule()
    def stop(self) -> None:
        failing = self._failing_cleanups() if self.app.phase == "running" else set()
        [outcome] = self._call(self.app.stop())
        if failing or isinstance(outcome, ShutdownError):
            self._check_shutdown(outcome, failing)
        self._nothing_running()

    @precondition(lambda self: self.running is None)
    @rule(callers=st.integers(min_value=2, max_value=3))
    def concurrent_starts(self, callers: int) -> None:
        outcomes = self._call(*(self.app.start() for _ in range(callers)))
        kinds = {type(o) for o in outcomes}
        assert len(kinds) == 1, outcomes  # one start, one outcome for all

    @precondition(lambda self: self.running is None)
    @rule(delay=st.sampled_from([0.0, T / 8, T / 2, T]))
    def stop_during_start(self, delay: float) -> None:
        async def race() -> None:
            starting = asyncio.ensure_future(self.app.start())
            await asyncio.sleep(delay)
            with contextlib.suppress(ShutdownError):
                await self.app.stop()
            # (The harness's own start() call, not the application's work,
            # may still wait to be told how the start ended.)
            self._nothing_running(besides=starting)
            with contextlib.suppress(StartupError, LifecycleError):
                await starting

        self._call(race())

    @precondition(lambda self: self.running is None)
    @rule()
    def start_and_health(self) -> None:
        self._call(self.app.start(), self.app.health(), self.app.health())

    @rule()
    def health(self) -> None:
        [report] = self._call(self.app.health())
        assert set(report.modules) == {m.name for m in self.modules}

    @precondition(lambda self: self.running is None)
    @rule()
    def run_in_background(self) -> None:
        self.running = self.loop.create_task(self.app.run(signals=(signal.SIGUSR1,)))
        self.loop.run_until_complete(asyncio.sleep(T / 2))

    @precondition(lambda self: self.running is not None)
    @rule(signals=st.integers(min_value=1, max_value=2), gap=st.sampled_from([0.0, T / 2]))
    def signal_the_run(self, signals: int, gap: float) -> None:
        running = self.running
        assert running is not None

        forced: list[ShutdownError] = []

        async def send() -> None:
            for _ in range(signals):
                if running.done():  # its handler is gone: the default would kill us
                    break
                os.kill(os.getpid(), signal.SIGUSR1)
                await asyncio.sleep(gap)
            try:
                await running
            except ShutdownError as error:
                forced.append(error)
            except StartupError:
                pass

        self._call(send())
        self.running = None
        if signals == 1:
            self._nothing_running()
        else:  # a second signal may cut the stop short: what it skips is named
            self._nothing_running(allowed=_named(forced))
            by_name = {m.name: m for m in self.modules}
            for name in _skipped(forced):
                by_name[name].skipped = 1  # (skipped again, it still owes one cleanup)

    @precondition(lambda self: self.running is not None)
    @rule()
    def request_stop(self) -> None:
        running = self.running
        assert running is not None
        self.app.request_stop()

        async def wait() -> None:
            with contextlib.suppress(StartupError, ShutdownError):
                await running

        self._call(wait())
        self.running = None
        self._nothing_running()

    # --- what must always hold ---------------------------------------------------------------

    def _nothing_running(
        self,
        allowed: set[str] = frozenset(),  # type: ignore[assignment]
        besides: asyncio.Future[None] | None = None,
    ) -> None:
        assert self.app.phase == "idle", self.app.phase
        for module in self.modules:
            if module.name in allowed or module.skipped:  # a forced stop left it, and said so
                continue
            assert module.state not in (S.READY, S.INITIALIZING, S.CLEANING_UP), module
        pending = [
            task
            for task in asyncio.all_tasks(self.loop)
            if not task.done()
            and task is not self.running
            and task is not besides
            and task.get_coro().__qualname__.startswith(_APPLICATION_CODE)  # type: ignore[union-attr]
        ]
        assert not pending, pending

    @invariant()
    def never_ready_before_a_dependency(self) -> None:
        for module in self.modules:
            if module.state is S.READY:
                for dep in module.dependencies():
                    assert dep.state is S.READY, f"{module.name} READY, {dep.name} {dep.state}"

    @invariant()
    def every_begun_initialize_got_one_cleanup(self) -> None:
        if self.app.phase != "idle" or self.running is not None:
            return
        for module in self.modules:
            assert module.began == module.cleaned + module.skipped, (
                module.name,
                module.began,
                module.cleaned,
                module.skipped,
            )


Campaign.TestCase.settings = settings(stateful_step_count=12, deadline=None)
TestCampaign = Campaign.TestCase


# --- what the campaign found, kept as explicit examples ------------------------------------------


def _replay(*steps: tuple[str, dict[str, Any]]) -> None:
    """Run the steps on a fresh campaign, checking the invariants after each."""
    campaign = Campaign()
    try:
        for name, arguments in steps:
            getattr(campaign, name)(**arguments)
            campaign.never_ready_before_a_dependency()
            campaign.every_begun_initialize_got_one_cleanup()
    finally:
        campaign.teardown()


def test_found_a_rollback_undoes_only_what_its_start_began() -> None:
    # m1 (depends on m0) failed to stop; on the next start m2 fails as m0
    # ends, so m1's initialize task is cancelled before it ran: its cleanup
    # must not run again.
    _replay(
        ("build", {"size": 3, "edges": [(0, 1)]}),
        ("start", {}),
        ("plan", {"index": 1, "phase": "cleanup", "behaviour": "raise"}),
        ("stop", {}),
        ("plan", {"index": 2, "phase": "initialize", "behaviour": "raise"}),
        ("start", {}),
    )


def test_found_a_module_a_forced_stop_skips_twice_owes_one_cleanup() -> None:
    _replay(
        ("build", {"size": 2, "edges": [(0, 1)]}),
        ("run_in_background", {}),
        ("plan", {"index": 1, "phase": "cleanup", "behaviour": "hang"}),
        ("signal_the_run", {"gap": T / 2, "signals": 2}),
        ("run_in_background", {}),
        ("signal_the_run", {"gap": T / 2, "signals": 2}),
        ("stop_during_start", {"delay": 0.0}),
    )
