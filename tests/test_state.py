"""StateModule[T]: get/set/update, atomicity, versions and subscriptions."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from pepperpy_core.errors import StateNotSetError
from pepperpy_core.module import StateChange, StateModule
from tests.asyncutil import run


@dataclass(frozen=True)
class Counter:
    n: int


def test_get_before_set_is_a_clear_error() -> None:
    m: StateModule[int] = StateModule()
    with pytest.raises(StateNotSetError, match="no state has been set"):
        run(m.get_state())
    assert isinstance(StateNotSetError("x"), LookupError)
    assert m.state_version == 0


def test_initial_state_and_set() -> None:
    m: StateModule[Counter] = StateModule(initial=Counter(0))

    async def main() -> None:
        assert await m.get_state() == Counter(0)
        await m.set_state(Counter(5))
        assert await m.get_state() == Counter(5)

    run(main())
    assert m.state_version == 1


def test_update_state_is_atomic_under_a_thousand_coroutines() -> None:
    m: StateModule[int] = StateModule(initial=0)

    async def bump() -> None:
        await asyncio.sleep(0)
        await m.update_state(lambda s: s + 1)

    async def main() -> int:
        await asyncio.gather(*(bump() for _ in range(1000)))
        return await m.get_state()

    assert run(main()) == 1000
    assert m.state_version == 1000


def test_a_raising_updater_changes_nothing() -> None:
    m: StateModule[int] = StateModule(initial=3)
    seen: list[StateChange[int]] = []
    m.on_change(seen.append)

    def boom(s: int) -> int:
        raise ArithmeticError("no")

    async def main() -> int:
        with pytest.raises(ArithmeticError):
            await m.update_state(boom)
        return await m.get_state()

    assert run(main()) == 3
    assert m.state_version == 0
    assert seen == []


def test_async_updater_is_refused() -> None:
    m: StateModule[int] = StateModule(initial=1)

    async def later(s: int) -> int:
        return s + 1

    with pytest.raises(TypeError, match="plain function"):
        run(m.update_state(later))  # type: ignore[arg-type]
    assert run(m.get_state()) == 1


def test_callbacks_see_every_change_in_order() -> None:
    m: StateModule[str] = StateModule()
    changes: list[StateChange[str]] = []
    remove = m.on_change(changes.append)

    async def main() -> None:
        await m.set_state("a")
        await m.update_state(lambda s: s + "b")
        remove()
        await m.set_state("ignored")

    run(main())
    assert changes == [StateChange(1, None, "a"), StateChange(2, "a", "ab")]


def test_failing_callback_does_not_stop_others() -> None:
    m: StateModule[int] = StateModule(initial=0)
    got: list[int] = []

    def bad(change: StateChange[int]) -> None:
        raise ValueError("bug")

    m.on_change(bad)
    m.on_change(lambda c: got.append(c.new))
    run(m.set_state(1))
    assert got == [1]


def test_subscription_sees_every_change_in_order() -> None:
    m: StateModule[int] = StateModule(initial=0)

    async def main() -> list[int]:
        seen: list[int] = []
        async with m.subscribe() as changes:

            async def consume() -> None:
                async for change in changes:
                    seen.append(change.new)
                    assert change.skipped == 0
                    if len(seen) == 50:
                        return

            consumer = asyncio.create_task(consume())
            for i in range(1, 51):
                await m.set_state(i)
                if i % 7 == 0:
                    await asyncio.sleep(0)
            await consumer
        return seen

    assert run(main()) == list(range(1, 51))


def test_slow_subscriber_loses_oldest_and_is_told_and_never_blocks() -> None:
    m: StateModule[int] = StateModule(initial=0)

    async def main() -> list[StateChange[int]]:
        changes = m.subscribe(buffer=3)
        for i in range(1, 11):  # the writer never waits for the reader
            await m.set_state(i)
        changes.close()
        return [c async for c in changes]

    got = run(main())
    assert [c.new for c in got] == [8, 9, 10]
    assert [c.skipped for c in got] == [7, 0, 0]
    assert [c.version for c in got] == [8, 9, 10]


def test_cleanup_ends_subscriptions_and_forgets_state() -> None:
    m: StateModule[int] = StateModule(initial=1)

    async def main() -> list[int]:
        await m.initialize()
        changes = m.subscribe()
        await m.set_state(2)
        await m.cleanup()
        got = [c.new async for c in changes]
        assert await m.get_state() == 1
        return got

    assert run(main()) == [2]


@pytest.mark.parametrize("buffer", [0, -1, 1.5, "3"])
def test_bad_buffer(buffer: object) -> None:
    with pytest.raises(ValueError, match="buffer"):
        StateModule().subscribe(buffer)  # type: ignore[arg-type]
