"""RetryPolicy, retry_call, @retrying and RetryModule. Waits are zero via
no_retry_waits() or tiny delays: no test sleeps for real time to speak of."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from pepperpy_core.errors import RetryDeadlineError
from pepperpy_core.module import (
    RetryModule,
    RetryPolicy,
    no_retry_waits,
    retry_call,
    retrying,
)
from tests.asyncutil import run
from tests.virtualtime import run_virtual


class Flaky:
    """Fails ``failures`` times with ``error``, then returns ``value``."""

    def __init__(self, failures: int, error: BaseException | None = None) -> None:
        self.failures = failures
        self.calls = 0
        self.error = error or ConnectionError("refused")

    async def __call__(self, value: str = "ok") -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return value


def test_succeeds_after_failures() -> None:
    flaky = Flaky(2)
    with no_retry_waits():
        assert run(retry_call(RetryPolicy(max_retries=3), flaky, "v")) == "v"
    assert flaky.calls == 3


def test_gives_up_with_the_original_exception_and_attempt_count() -> None:
    err = ConnectionError("refused")
    flaky = Flaky(10, err)
    with no_retry_waits(), pytest.raises(ConnectionError) as info:
        run(retry_call(RetryPolicy(max_retries=4), flaky))
    assert info.value is err
    assert info.value.retry_attempts == 4  # type: ignore[attr-defined]
    assert "gave up after 4 attempt(s)" in info.value.__notes__[-1]
    assert flaky.calls == 4


def test_only_chosen_exceptions_are_retried() -> None:
    flaky = Flaky(1, KeyError("not retried"))
    with no_retry_waits(), pytest.raises(KeyError):
        run(retry_call(RetryPolicy(retry_on=(ConnectionError,)), flaky))
    assert flaky.calls == 1
    picky = Flaky(5, ConnectionError("temporary"))
    policy = RetryPolicy(max_retries=10, retry_if=lambda e: "temporary" in str(e))
    with no_retry_waits():
        assert run(retry_call(policy, picky)) == "ok"
    assert picky.calls == 6


@pytest.mark.parametrize("error", [KeyboardInterrupt(), SystemExit(1), asyncio.CancelledError()])
def test_never_retries_interrupts_or_cancellation(error: BaseException) -> None:
    flaky = Flaky(5, error)
    policy = RetryPolicy(max_retries=5, retry_on=(BaseException,))

    async def main() -> None:
        with no_retry_waits():
            await retry_call(policy, flaky)

    with pytest.raises(type(error)):
        asyncio.run(main())
    assert flaky.calls == 1


def test_backoff_with_cap_and_jitter() -> None:
    policy = RetryPolicy(delay=1.0, backoff=2.0, max_delay=5.0, jitter=0.0)
    assert [policy.wait_before(n) for n in range(2, 7)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    jittery = RetryPolicy(delay=1.0, backoff=1.0, jitter=0.5)
    waits = [jittery.wait_before(2) for _ in range(200)]
    assert all(0.5 <= w <= 1.5 for w in waits)
    assert len(set(waits)) > 1


def test_waits_are_really_taken_without_the_switch() -> None:
    slept: list[float] = []
    real_sleep = asyncio.sleep

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)
        await real_sleep(0)

    policy = RetryPolicy(max_retries=3, delay=0.25, backoff=2.0, jitter=0.0)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(asyncio, "sleep", fake_sleep)
        run(retry_call(policy, Flaky(2)))
    assert slept == [0.25, 0.5]


def test_attempt_timeout_is_retried() -> None:
    calls = 0

    async def sometimes_hangs() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.sleep(3600)
        return "done"

    with no_retry_waits():
        assert run(retry_call(RetryPolicy(attempt_timeout=0.05), sometimes_hangs)) == "done"
    assert calls == 2


def test_deadline_cancels_the_running_attempt() -> None:
    cancelled = asyncio.Event()
    attempts = 0

    async def hangs() -> None:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise ConnectionError("first")
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def main() -> None:
        with no_retry_waits(), pytest.raises(RetryDeadlineError) as info:
            await retry_call(RetryPolicy(max_retries=5, deadline=0.05), hangs)
        assert cancelled.is_set()
        assert info.value.attempts == 2
        assert isinstance(info.value.__cause__, ConnectionError)
        assert isinstance(info.value, TimeoutError)

    run(main())


def test_timeout_raised_by_the_call_itself_is_not_the_deadline() -> None:
    async def own_timeout() -> None:
        raise TimeoutError("upstream")

    with no_retry_waits(), pytest.raises(TimeoutError, match="upstream") as info:
        run(retry_call(RetryPolicy(max_retries=2, deadline=60), own_timeout))
    assert not isinstance(info.value, RetryDeadlineError)


def test_decorator() -> None:
    flaky = Flaky(1)

    @retrying(max_retries=2, delay=0)
    async def call(value: str) -> str:
        return await flaky(value)

    assert run(call("x")) == "x"
    assert call.__name__ == "call"


@pytest.mark.parametrize(
    ("settings", "error"),
    [
        ({"max_retries": 0}, ValueError),
        ({"max_retries": 1.5}, TypeError),
        ({"max_retries": True}, TypeError),
        ({"delay": -1}, ValueError),
        ({"delay": float("nan")}, ValueError),
        ({"delay": "1"}, TypeError),
        ({"backoff": 0.5}, ValueError),
        ({"jitter": 2}, ValueError),
        ({"attempt_timeout": -1}, ValueError),
        ({"deadline": float("inf")}, ValueError),
        ({"retry_on": ConnectionError}, TypeError),
        ({"retry_on": (int,)}, TypeError),
    ],
)
def test_bad_policies(settings: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        RetryPolicy(**settings)


class Network(RetryModule):
    def __init__(self, failures: int) -> None:
        super().__init__()
        self.max_retries = 3
        self.delay = 0.0
        self.flaky = Flaky(failures)
        self.connected = False

    async def initialize(self) -> None:
        await self.retry(self.connect)

    async def connect(self) -> None:
        await self.flaky()
        self.connected = True

    @RetryModule.retried
    async def fetch(self, key: str) -> str:
        return await self.flaky(key)


def test_module_initialize_uses_retry_and_counts(caplog: pytest.LogCaptureFixture) -> None:
    m = Network(failures=2)
    with caplog.at_level(logging.WARNING):
        run(m.initialize())
    assert m.connected
    assert (m.stats.calls, m.stats.attempts, m.stats.failures, m.stats.successes) == (1, 3, 2, 1)
    warnings = [r.getMessage() for r in caplog.records if r.name == "pepperpy_core.module.Network"]
    assert len(warnings) == 2
    assert "attempt 1 of 3 failed" in warnings[0]


def test_module_gives_up_after_max_retries() -> None:
    m = Network(failures=5)
    with pytest.raises(ConnectionError):
        run(m.initialize())
    assert m.stats.attempts == 3
    assert m.stats.gave_up == 1


def test_retried_method_decorator() -> None:
    m = Network(failures=1)
    assert run(m.fetch("k")) == "k"
    assert m.stats.attempts == 2


def test_module_settings_are_validated_when_used() -> None:
    m = Network(failures=0)
    m.max_retries = 0
    with pytest.raises(ValueError, match="max_retries"):
        run(m.retry(m.connect))


@pytest.mark.parametrize("attempt", [2, 3, 1025, 1026, 10**6, 10**18])
@pytest.mark.parametrize(
    ("delay", "backoff", "max_delay"),
    [(1.0, 2.0, 30.0), (5e-324, 2, 1e308), (1e-300, 1e300, 1e300), (0.5, 1.0, 30.0), (0, 2, 1)],
)
def test_the_wait_never_overflows(
    attempt: int, delay: float, backoff: float, max_delay: float
) -> None:
    policy = RetryPolicy(
        max_retries=10**18, delay=delay, backoff=backoff, max_delay=max_delay, jitter=0.1
    )
    wait = policy.wait_before(attempt)
    assert 0.0 <= wait <= max_delay * 1.1
    if attempt < 1000:  # small enough to compute directly
        expected = min(delay * float(backoff) ** (attempt - 2), max_delay)
        assert wait == pytest.approx(expected, rel=0.11, abs=1e-300)


def test_retrying_for_ever_goes_past_a_thousand_attempts() -> None:
    policy = RetryPolicy(max_retries=10**6, delay=0.001, max_delay=0.001, jitter=0)
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 1500:
            raise ConnectionError("not yet")
        return "up"

    assert run_virtual(retry_call(policy, flaky)) == "up"
    assert calls == 1500
