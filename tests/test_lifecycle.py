"""Every lifecycle guarantee of BaseModule and Module (module/base.py)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from pepperpy_core.errors import CircularDependencyError, LifecycleError
from pepperpy_core.module import BaseModule, Module, ModuleConfig, ModuleState
from tests.asyncutil import run, until

S = ModuleState


class Recorder(BaseModule):
    """Counts its bodies and records the states it saw from inside them."""

    def __init__(self, fail_init: BaseException | None = None) -> None:
        super().__init__()
        self.inits = 0
        self.cleanups = 0
        self.seen: list[ModuleState] = []
        self.fail_init = fail_init

    async def initialize(self) -> None:
        self.inits += 1
        self.seen.append(self.state)
        await asyncio.sleep(0)
        if self.fail_init is not None:
            raise self.fail_init

    async def cleanup(self) -> None:
        self.cleanups += 1
        self.seen.append(self.state)
        await asyncio.sleep(0)


def transitions(module: BaseModule) -> list[tuple[ModuleState, ModuleState]]:
    log: list[tuple[ModuleState, ModuleState]] = []
    module.add_listener(lambda m, old, new: log.append((old, new)))
    return log


def test_states_in_order() -> None:
    m = Recorder()
    log = transitions(m)
    assert m.state is S.CREATED

    async def main() -> None:
        await m.initialize()
        assert m.state is S.READY
        await m.cleanup()

    run(main())
    assert m.state is S.CLOSED
    assert m.seen == [S.INITIALIZING, S.CLEANING_UP]
    assert log == [
        (S.CREATED, S.INITIALIZING),
        (S.INITIALIZING, S.READY),
        (S.READY, S.CLEANING_UP),
        (S.CLEANING_UP, S.CLOSED),
    ]


def test_initialize_on_ready_does_nothing() -> None:
    m = Recorder()

    async def main() -> None:
        await m.initialize()
        await m.initialize()

    run(main())
    assert m.inits == 1


def test_hundred_concurrent_initializes_run_the_body_once() -> None:
    m = Recorder()

    async def main() -> list[None]:
        return await asyncio.gather(*(m.initialize() for _ in range(100)))

    assert run(main()) == [None] * 100
    assert m.inits == 1
    assert m.state is S.READY


def test_hundred_concurrent_initializes_all_see_the_failure() -> None:
    boom = ConnectionError("db down")
    m = Recorder(fail_init=boom)

    async def main() -> list[BaseException | None]:
        return await asyncio.gather(*(m.initialize() for _ in range(100)), return_exceptions=True)

    results = run(main())
    assert m.inits == 1
    assert all(r is boom for r in results)
    assert m.state is S.FAILED


def test_exception_is_unchanged_and_logged_with_the_name(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Weird(Exception):
        pass

    err = Weird("half made")
    m = Recorder(fail_init=err)
    m.config = ModuleConfig(name="orders")
    with caplog.at_level(logging.INFO), pytest.raises(Weird) as info:
        run(m.initialize())
    assert info.value is err
    assert m.state is S.FAILED
    failed = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(failed) == 1
    assert failed[0].name == "pepperpy_core.module.orders"
    assert "initialize of orders failed after" in failed[0].getMessage()
    assert " ms" in failed[0].getMessage()


def test_transitions_are_logged_with_elapsed_time(caplog: pytest.LogCaptureFixture) -> None:
    m = Recorder()

    async def main() -> None:
        await m.initialize()
        await m.cleanup()

    with caplog.at_level(logging.INFO):
        run(main())
    messages = [r.getMessage() for r in caplog.records if r.name == "pepperpy_core.module.Recorder"]
    assert messages[0].startswith("initialized Recorder in ")
    assert messages[1].startswith("cleaned up Recorder in ")
    assert all(m.endswith(" ms") for m in messages)


def test_cleanup_runs_after_a_failed_initialize() -> None:
    m = Recorder(fail_init=OSError("x"))

    async def main() -> None:
        with pytest.raises(OSError, match="x"):
            await m.initialize()
        await m.cleanup()

    run(main())
    assert m.cleanups == 1
    assert m.state is S.CLOSED


def test_cleanup_on_created_or_closed_does_nothing() -> None:
    m = Recorder()

    async def main() -> None:
        await m.cleanup()
        assert m.state is S.CREATED
        await m.initialize()
        await m.cleanup()
        await m.cleanup()

    run(main())
    assert m.cleanups == 1


def test_initialize_again_after_cleanup_and_after_failure() -> None:
    m = Recorder(fail_init=ValueError("first"))

    async def main() -> None:
        with pytest.raises(ValueError, match="first"):
            await m.initialize()
        m.fail_init = None
        await m.initialize()  # FAILED -> READY
        assert m.state is S.READY
        await m.cleanup()
        await m.initialize()  # CLOSED -> READY

    run(main())
    assert m.inits == 3
    assert m.state is S.READY


def test_cancellation_mid_initialize_leaves_failed_and_waiters_told() -> None:
    started = asyncio.Event()

    class Slow(BaseModule):
        async def initialize(self) -> None:
            started.set()
            await asyncio.sleep(3600)

    m = Slow()

    async def main() -> None:
        task = asyncio.create_task(m.initialize())
        await started.wait()
        waiter = asyncio.create_task(m.initialize())
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        with pytest.raises(LifecycleError, match="cancelled"):
            await waiter
        assert m.state is S.FAILED

    run(main())


def test_a_cancelled_waiter_does_not_cancel_the_body() -> None:
    release = asyncio.Event()

    class Gate(BaseModule):
        async def initialize(self) -> None:
            await release.wait()

    m = Gate()

    async def main() -> None:
        owner = asyncio.create_task(m.initialize())
        await asyncio.sleep(0)
        waiter = asyncio.create_task(m.initialize())
        await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        release.set()
        await owner
        assert m.state is S.READY

    run(main())


def test_super_initialize_runs_the_parent_body_not_the_guard() -> None:
    calls: list[str] = []

    class Base(BaseModule):
        async def initialize(self) -> None:
            calls.append(f"base:{self.state.value}")

        async def cleanup(self) -> None:
            calls.append("base-cleanup")

    class Middle(Base):
        async def initialize(self) -> None:
            calls.append("middle")
            await super().initialize()

        async def cleanup(self) -> None:
            calls.append("middle-cleanup")
            await super().cleanup()

    class Leaf(Middle):
        async def initialize(self) -> None:
            calls.append("leaf")
            await super().initialize()
            calls.append("leaf-after")

        async def cleanup(self) -> None:
            await super().cleanup()
            calls.append("leaf-cleanup")

    m = Leaf()
    log = transitions(m)

    async def main() -> None:
        await m.initialize()
        await m.cleanup()

    run(main())
    assert calls == [
        "leaf",
        "middle",
        "base:initializing",
        "leaf-after",
        "middle-cleanup",
        "base-cleanup",
        "leaf-cleanup",
    ]
    assert log == [
        (S.CREATED, S.INITIALIZING),
        (S.INITIALIZING, S.READY),
        (S.READY, S.CLEANING_UP),
        (S.CLEANING_UP, S.CLOSED),
    ]


def test_a_module_that_overrides_nothing_still_has_states() -> None:
    class Plain(BaseModule):
        pass

    m = Plain()
    run(m.initialize())
    assert m.state is S.READY


def test_a_subclass_that_skips_super_init() -> None:
    class NoInit(BaseModule):
        def __init__(self) -> None:
            self.x = 1

        async def initialize(self) -> None:
            self.x = 2

    m = NoInit()
    run(m.initialize())
    assert (m.x, m.state, m.name) == (2, S.READY, "NoInit")


def test_initialize_must_be_async() -> None:
    with pytest.raises(TypeError, match="must be an async def"):

        class Sync(BaseModule):
            def initialize(self) -> None:  # type: ignore[override]
                pass


def test_async_with() -> None:
    m = Recorder()

    async def main() -> None:
        async with m as entered:
            assert entered is m
            assert m.state is S.READY
        assert m.state is S.CLOSED
        with pytest.raises(KeyError):
            async with m:
                raise KeyError("body")
        assert m.state is S.CLOSED

    run(main())
    assert (m.inits, m.cleanups) == (2, 2)


def test_async_with_cleans_up_when_initialize_fails() -> None:
    m = Recorder(fail_init=OSError("no"))

    async def main() -> None:
        with pytest.raises(OSError, match="no"):
            async with m:
                pytest.fail("the body must not run")

    run(main())
    assert m.cleanups == 1
    assert m.state is S.CLOSED


def test_initialize_while_cleaning_up_is_refused() -> None:
    m_box: list[BaseModule] = []

    class Reenter(BaseModule):
        async def cleanup(self) -> None:
            other = asyncio.create_task(self.initialize())
            with pytest.raises(LifecycleError, match="cleaning up"):
                await other

    m = Reenter()
    m_box.append(m)

    async def main() -> None:
        await m.initialize()
        await m.cleanup()

    run(main())
    assert m.state is S.CLOSED


def test_concurrent_cleanups_run_the_body_once() -> None:
    m = Recorder()

    async def main() -> None:
        await m.initialize()
        await asyncio.gather(*(m.cleanup() for _ in range(10)))

    run(main())
    assert m.cleanups == 1
    assert m.state is S.CLOSED


def test_cleanup_failure_leaves_failed_and_can_be_retried() -> None:
    class Flaky(BaseModule):
        attempts = 0

        async def cleanup(self) -> None:
            Flaky.attempts += 1
            if Flaky.attempts == 1:
                raise RuntimeError("close failed")

    m = Flaky()

    async def main() -> None:
        await m.initialize()
        with pytest.raises(RuntimeError, match="close failed"):
            await m.cleanup()
        assert m.state is S.FAILED
        await m.cleanup()

    run(main())
    assert m.state is S.CLOSED
    assert Flaky.attempts == 2


def test_cleanup_called_from_a_failing_initialize() -> None:
    class Undo(Recorder):
        async def initialize(self) -> None:
            try:
                raise OSError("half")
            except OSError:
                await self.cleanup()
                raise

    m = Undo()
    with pytest.raises(OSError, match="half"):
        run(m.initialize())
    assert m.cleanups == 1
    assert m.state is S.FAILED


def test_listener_errors_never_break_the_lifecycle(caplog: pytest.LogCaptureFixture) -> None:
    m = Recorder()

    def broken(module: BaseModule, old: ModuleState, new: ModuleState) -> None:
        raise ValueError("listener bug")

    remove = m.add_listener(broken)
    with caplog.at_level(logging.ERROR):
        run(m.initialize())
    assert m.state is S.READY
    assert any("listener" in r.getMessage() for r in caplog.records)
    remove()
    remove()  # twice is harmless
    log = transitions(m)
    run(m.cleanup())
    assert log == [(S.READY, S.CLEANING_UP), (S.CLEANING_UP, S.CLOSED)]


def test_health_check_default_and_override() -> None:
    class Pinger(BaseModule):
        async def health_check(self) -> bool:
            await asyncio.sleep(0)
            return self.state is S.READY and self.ok

        ok = True

    m = Recorder()
    p = Pinger()

    async def main() -> list[bool]:
        before = await m.health_check()
        await m.initialize()
        await p.initialize()
        after = await m.health_check()
        healthy = await p.health_check()
        p.ok = False
        return [before, after, healthy, await p.health_check()]

    assert run(main()) == [False, True, True, False]


def test_name_and_version_from_config_or_class() -> None:
    m = Recorder()
    assert (m.name, m.version) == ("Recorder", "0.0.0")
    m.config = ModuleConfig(name="db", version="2.1.0")
    assert (m.name, m.version) == ("db", "2.1.0")
    assert repr(m) == "<Recorder 'db' created>"

    class Typed(Module[ModuleConfig]):
        pass

    t = Typed(ModuleConfig(name="typed", version="1.0"))
    assert t.name == "typed"
    assert Typed().name == "Typed"


class Chain(BaseModule):
    """A module whose initialize awaits another module's."""

    def __init__(self, label: str) -> None:
        super().__init__(ModuleConfig(name=label))
        self.next: BaseModule | None = None
        self.pause = False

    async def initialize(self) -> None:
        if self.pause:
            await asyncio.sleep(0.01)
        if self.next is not None:
            await self.next.initialize()


def test_cycle_in_one_task_names_the_chain() -> None:
    a, b = Chain("a"), Chain("b")
    a.next, b.next = b, a
    with pytest.raises(CircularDependencyError) as info:
        run(a.initialize())
    assert info.value.cycle == ("a", "b", "a")
    assert str(info.value) == "circular dependency: a -> b -> a"
    assert (a.state, b.state) == (S.FAILED, S.FAILED)


def test_longer_cycle_and_self_cycle() -> None:
    a, b, c = Chain("a"), Chain("b"), Chain("c")
    a.next, b.next, c.next = b, c, a
    with pytest.raises(CircularDependencyError) as info:
        run(b.initialize())
    assert info.value.cycle == ("b", "c", "a", "b")
    solo = Chain("solo")
    solo.next = solo
    with pytest.raises(CircularDependencyError) as info:
        run(solo.initialize())
    assert info.value.cycle == ("solo", "solo")


def test_cycle_across_tasks_is_refused_not_deadlocked() -> None:
    a, b = Chain("a"), Chain("b")
    a.next, b.next = b, a
    a.pause = b.pause = True  # both are in flight before either awaits the other

    async def main() -> list[BaseException | None]:
        return await asyncio.gather(a.initialize(), b.initialize(), return_exceptions=True)

    results = run(main())
    errors = [r for r in results if isinstance(r, CircularDependencyError)]
    assert errors, results
    assert set(errors[0].cycle) == {"a", "b"}
    assert (a.state, b.state) == (S.FAILED, S.FAILED)


def test_shared_dependency_is_not_a_cycle() -> None:
    shared = Recorder()
    a, b = Chain("a"), Chain("b")
    a.next = b.next = shared
    a.pause = b.pause = True

    async def main() -> None:
        await asyncio.gather(a.initialize(), b.initialize())

    run(main())
    assert shared.inits == 1
    assert (a.state, b.state, shared.state) == (S.READY, S.READY, S.READY)


# --- the guard under faults (issue: the runtime and the lifecycle under faults) ----------


class Interrupt(BaseException):
    """A BaseException a listener may raise (as KeyboardInterrupt would)."""


@pytest.mark.parametrize("raised", [Interrupt, asyncio.CancelledError])
@pytest.mark.parametrize("at", [S.INITIALIZING, S.READY])
def test_a_listener_base_exception_settles_everything_first(
    raised: type[BaseException], at: ModuleState
) -> None:
    m = Recorder()

    def listener(module: BaseModule, old: ModuleState, new: ModuleState) -> None:
        if new is at:
            raise raised("from a listener")

    remove = m.add_listener(listener)

    async def main() -> None:
        callers = [asyncio.ensure_future(m.initialize()) for _ in range(3)]
        outcomes = await asyncio.gather(*callers, return_exceptions=True)
        # The body ran at most once, every caller got an outcome, and the
        # module is settled, not stuck with a body "running".
        assert m.inits == (0 if at is S.INITIALIZING else 1)
        assert m.state is (S.FAILED if at is S.INITIALIZING else S.READY)
        assert sum(isinstance(o, raised) for o in outcomes) >= 1, outcomes
        remove()
        await asyncio.wait_for(m.cleanup(), 1)
        await asyncio.wait_for(m.initialize(), 1)
        assert m.state is S.READY

    run(main())


def test_a_listener_system_exit_leaves_the_module_settled() -> None:
    m = Recorder()

    def listener(module: BaseModule, old: ModuleState, new: ModuleState) -> None:
        if new is S.READY:
            raise SystemExit(3)

    remove = m.add_listener(listener)
    with pytest.raises(SystemExit):
        run(m.initialize())
    assert m.state is S.READY
    remove()
    run(m.cleanup())
    assert m.state is S.CLOSED


def test_a_task_started_in_initialize_is_like_any_other_afterwards() -> None:
    seen: list[object] = []

    class Conn(BaseModule):
        async def initialize(self) -> None:
            self.watchdog = asyncio.ensure_future(self.watch())

        async def watch(self) -> None:
            await until(lambda: self.state is S.READY)  # the initialize has finished
            await self.initialize()  # READY: nothing to do
            seen.append(self.state)
            await self.cleanup()  # a real cleanup, not the "from initialize" path
            seen.append(self.state)

    async def main() -> None:
        conn = Conn()
        await conn.initialize()
        await asyncio.wait_for(conn.watchdog, 1)

    run(main())
    assert seen == [S.READY, S.CLOSED]


def test_a_gathered_sub_initialization_that_awaits_its_parent_is_a_cycle() -> None:
    """While the parent's initialize runs, the tasks it awaits are part of
    it: a child that waits for the parent would deadlock, and is refused."""

    class Parent(BaseModule):
        def __init__(self) -> None:
            super().__init__(ModuleConfig(name="parent"))
            self.child = Child(self)

        async def initialize(self) -> None:
            await asyncio.gather(self.child.initialize())

    class Child(BaseModule):
        def __init__(self, parent: Parent) -> None:
            super().__init__(ModuleConfig(name="child"))
            self.parent = parent

        async def initialize(self) -> None:
            await self.parent.initialize()

    parent = Parent()
    with pytest.raises(CircularDependencyError) as info:
        run(parent.initialize(), timeout=5)
    assert info.value.cycle == ("parent", "child", "parent")


def test_concurrent_cleanups_all_get_a_failure() -> None:
    class Broken(BaseModule):
        bodies = 0

        async def cleanup(self) -> None:
            Broken.bodies += 1
            await asyncio.sleep(0.01)
            raise OSError("close failed")

    m = Broken()

    async def main() -> list[BaseException | None]:
        await m.initialize()
        return await asyncio.gather(*(m.cleanup() for _ in range(5)), return_exceptions=True)

    outcomes = run(main())
    assert Broken.bodies == 1
    assert len(outcomes) == 5
    assert all(isinstance(o, OSError) and str(o) == "close failed" for o in outcomes), outcomes
    assert m.state is S.FAILED


def test_an_initialize_from_a_mixin_before_base_module_is_guarded() -> None:
    class Connects:
        bodies = 0

        async def initialize(self) -> None:
            type(self).bodies += 1
            await asyncio.sleep(0.01)

    class Conn(Connects, BaseModule):
        pass

    m = Conn()

    async def main() -> None:
        await asyncio.gather(*(m.initialize() for _ in range(100)))

    run(main())
    assert Conn.bodies == 1
    assert m.state is S.READY


def test_an_override_keeps_its_parameters() -> None:
    class Timed(BaseModule):
        async def initialize(self, limit: float = 1.0, *, retries: int = 0) -> None:
            self.got = (limit, retries)

    m = Timed()
    run(m.initialize(limit=2, retries=3))
    assert m.got == (2, 3)
    assert m.state is S.READY
    other = Timed()
    run(other.initialize())
    assert other.got == (1.0, 0)


def test_a_super_call_from_a_mixin_reaches_the_parent_body() -> None:
    order: list[str] = []

    class Base(BaseModule):
        async def initialize(self) -> None:
            order.append("base")

    class Mixin:
        async def initialize(self) -> None:
            order.append("mixin")
            await super().initialize()  # type: ignore[misc]

    class Both(Mixin, Base):
        pass

    m = Both()
    run(m.initialize())
    assert order == ["mixin", "base"]
    assert m.state is S.READY


def test_a_module_logger_configured_alone_still_logs(caplog: pytest.LogCaptureFixture) -> None:
    """The guard makes no logger while nothing would be logged, but a logger
    configured for one module logs its transitions though its parent is quiet."""
    quiet = logging.getLogger("pepperpy_core.module")
    loud = logging.getLogger("pepperpy_core.module.chatty")
    old = (quiet.level, loud.level)
    quiet.setLevel(logging.WARNING)
    loud.setLevel(logging.INFO)
    try:
        with caplog.at_level(logging.INFO, logger="pepperpy_core.module.chatty"):
            m = Recorder()
            m.config = ModuleConfig(name="chatty")
            run(m.initialize())
            other = Recorder()
            run(other.initialize())
    finally:
        quiet.setLevel(old[0])
        loud.setLevel(old[1])
    messages = [r.getMessage() for r in caplog.records]
    assert any(msg.startswith("initialized chatty in") for msg in messages), messages
    assert not any("Recorder" in msg for msg in messages)
