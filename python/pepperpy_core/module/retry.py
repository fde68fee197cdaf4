"""Retries: RetryPolicy, ``retry_call`` and ``@retrying`` for any awaitable
call, and RetryModule, whose ``retry()`` uses the module's own settings.

- ``max_retries`` is the total number of attempts (as in the spec's loop);
  between attempts the wait is ``delay * backoff**(n-1)``, capped at
  ``max_delay``, then spread by ``jitter`` (a fraction: 0.1 waits between 90%
  and 110% of it).
- ``attempt_timeout`` bounds each attempt (a TimeoutError, retried like any
  other failure); ``deadline`` bounds the whole call: when it passes, the
  running attempt is cancelled and RetryDeadlineError (a TimeoutError) is
  raised from the last failure.
- ``retry_on`` (exception types) and ``retry_if`` (a predicate) choose what is
  retried; anything else propagates at once. Cancellation, KeyboardInterrupt
  and SystemExit are never retried.
- After the last attempt the original exception reaches the caller, with
  ``retry_attempts`` set on it and a note saying how many attempts were made.
- Every failed attempt is logged (warning) and counted in ``RetryStats``.
- ``no_retry_waits()`` (a context manager) makes every wait zero seconds, for
  tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import random
from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field, fields, replace
from typing import Any, Concatenate, Final, ParamSpec, TypeVar

from pepperpy_core.errors import RetryDeadlineError
from pepperpy_core.module.base import BaseModule

P = ParamSpec("P")
R = TypeVar("R")
M = TypeVar("M", bound="RetryModule")

_log: Final = logging.getLogger("pepperpy_core.retry")
_NO_WAITS: ContextVar[bool] = ContextVar("pepperpy_core_no_retry_waits", default=False)


@contextlib.contextmanager
def no_retry_waits() -> Iterator[None]:
    """Within this block (and tasks started in it), retries wait 0 seconds."""
    token = _NO_WAITS.set(True)
    try:
        yield
    finally:
        _NO_WAITS.reset(token)


def _check_number(name: str, value: object, *, minimum: float, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number, not {type(value).__name__}")
    if not math.isfinite(value) or value < minimum:
        raise ValueError(f"{name} must be a finite number >= {minimum}, got {value}")


def _capped_growth(start: float, factor: float, times: int, cap: float) -> float:
    """``min(start * factor ** times, cap)`` without ever overflowing."""
    if start <= 0 or cap <= 0:
        return 0.0
    growth = max(times, 0) * math.log(factor)  # the log of factor ** times
    if math.log(start) + growth >= math.log(cap):
        return float(cap)
    if growth < 700:  # factor ** times is a finite float: exact arithmetic
        return float(start * float(factor) ** max(times, 0))
    return math.exp(math.log(start) + growth)


@dataclass(frozen=True)
class RetryPolicy:
    """How to retry: attempts, waits, time limits and what to retry."""

    max_retries: int = 3
    delay: float = 1.0
    backoff: float = 2.0
    max_delay: float = 30.0
    jitter: float = 0.1
    attempt_timeout: float | None = None
    deadline: float | None = None
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    retry_if: Callable[[BaseException], bool] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int):
            raise TypeError(f"max_retries must be an int, not {type(self.max_retries).__name__}")
        if self.max_retries < 1:
            raise ValueError(f"max_retries is the number of attempts, >= 1; got {self.max_retries}")
        _check_number("delay", self.delay, minimum=0)
        _check_number("backoff", self.backoff, minimum=1)
        _check_number("max_delay", self.max_delay, minimum=0)
        _check_number("jitter", self.jitter, minimum=0)
        if self.jitter > 1:
            raise ValueError(f"jitter is a fraction in [0, 1], got {self.jitter}")
        _check_number("attempt_timeout", self.attempt_timeout, minimum=0, allow_none=True)
        _check_number("deadline", self.deadline, minimum=0, allow_none=True)
        retry_on: object = self.retry_on
        if not isinstance(retry_on, tuple) or not all(
            isinstance(t, type) and issubclass(t, BaseException) for t in retry_on
        ):
            raise TypeError("retry_on must be a tuple of exception types")

    def wait_before(self, attempt: int) -> float:
        """Seconds to wait before attempt number ``attempt`` (2, 3, ...);
        finite for any attempt, however many (computed in logarithms, which
        ``backoff ** n`` would overflow past a thousand attempts)."""
        base = _capped_growth(self.delay, self.backoff, attempt - 2, self.max_delay)
        if self.jitter:
            base *= 1 + random.uniform(-self.jitter, self.jitter)
        return max(base, 0.0)

    def should_retry(self, error: BaseException) -> bool:
        """Whether ``error`` is worth another attempt."""
        if not isinstance(error, Exception) or isinstance(error, asyncio.CancelledError):
            return False
        if not isinstance(error, self.retry_on):
            return False
        return self.retry_if is None or bool(self.retry_if(error))


@dataclass
class RetryStats:
    """Counters of one RetryModule (or one ``retry_call`` caller)."""

    calls: int = 0
    attempts: int = 0
    failures: int = 0
    successes: int = 0
    gave_up: int = 0


def _mark(error: BaseException, attempts: int) -> None:
    with contextlib.suppress(AttributeError, TypeError):
        error.retry_attempts = attempts  # type: ignore[attr-defined]
    error.add_note(f"(gave up after {attempts} attempt(s))")


async def retry_call(
    policy: RetryPolicy,
    fn: Callable[P, Awaitable[R]],
    /,
    *args: P.args,
    **kwargs: P.kwargs,
) -> R:
    """Await ``fn(*args, **kwargs)`` under ``policy``; see this module's doc."""
    return await _retry(policy, fn, args, kwargs, _log, None)


async def _retry(
    policy: RetryPolicy,
    fn: Callable[..., Awaitable[R]],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    logger: logging.Logger,
    stats: RetryStats | None,
) -> R:
    name = getattr(fn, "__qualname__", repr(fn))
    attempts = 0
    last: BaseException | None = None
    if stats is not None:
        stats.calls += 1
    deadline = asyncio.timeout(policy.deadline)
    try:
        async with deadline:
            while True:
                attempts += 1
                if stats is not None:
                    stats.attempts += 1
                try:
                    async with asyncio.timeout(policy.attempt_timeout):
                        result = await fn(*args, **kwargs)
                except BaseException as error:
                    if not policy.should_retry(error):
                        raise
                    last = error
                    if stats is not None:
                        stats.failures += 1
                    if attempts >= policy.max_retries:
                        if stats is not None:
                            stats.gave_up += 1
                        logger.error(
                            "%s: attempt %d of %d failed, giving up: %r",
                            name,
                            attempts,
                            policy.max_retries,
                            error,
                        )
                        _mark(error, attempts)
                        raise
                    wait = 0.0 if _NO_WAITS.get() else policy.wait_before(attempts + 1)
                    logger.warning(
                        "%s: attempt %d of %d failed (%r); retrying in %.3f s",
                        name,
                        attempts,
                        policy.max_retries,
                        error,
                        wait,
                    )
                    await asyncio.sleep(wait)
                else:
                    if stats is not None:
                        stats.successes += 1
                    if attempts > 1:
                        logger.info("%s: succeeded on attempt %d", name, attempts)
                    return result
    except TimeoutError:
        if not deadline.expired():
            raise  # a TimeoutError of fn's own, or the last attempt's timeout
        if stats is not None:
            stats.gave_up += 1
        logger.error(
            "%s: deadline of %.3f s passed after %d attempt(s)", name, policy.deadline, attempts
        )
        raise RetryDeadlineError(
            f"{name}: deadline of {policy.deadline} s passed after {attempts} attempt(s)",
            attempts,
        ) from last


def retrying(
    policy: RetryPolicy | None = None, **settings: Any
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Decorate an async function so that every call is retried under
    ``policy`` (or a RetryPolicy built from ``settings``)."""
    chosen = replace(policy, **settings) if policy is not None else RetryPolicy(**settings)

    def decorate(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        @functools.wraps(fn)
        async def retried(*args: P.args, **kwargs: P.kwargs) -> R:
            return await _retry(chosen, fn, args, kwargs, _log, None)

        return retried

    return decorate


class RetryModule(BaseModule):
    """A module with retries built in: ``await self.retry(fn, *args)`` uses the
    module's ``max_retries``, ``delay`` and the other RetryPolicy fields. They
    may be given as keyword arguments (``RetryModule(max_retries=5)``), set as
    plain attributes (as the spec's NetworkModule does) or left at the class
    defaults below; they are validated on use. ``stats`` counts attempts."""

    _pepperpy_capability = "RetryModule"

    max_retries: int = 3
    delay: float = 1.0
    backoff: float = 2.0
    max_delay: float = 30.0
    jitter: float = 0.1
    attempt_timeout: float | None = None
    deadline: float | None = None
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    retry_if: Callable[[BaseException], bool] | None = None

    def __init__(self, config: Any = None, **kwargs: Any) -> None:
        settings = {f.name for f in fields(RetryPolicy)}
        given = {name: kwargs.pop(name) for name in list(kwargs) if name in settings}
        super().__init__(config, **kwargs)
        for name, value in given.items():
            setattr(self, name, value)
        self.stats = RetryStats()

    def retry_policy(self) -> RetryPolicy:
        """The policy from the module's current settings (validated)."""
        return RetryPolicy(**{f.name: getattr(self, f.name) for f in fields(RetryPolicy)})

    async def retry(self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Await ``fn(*args, **kwargs)``, retrying under the module's policy."""
        return await _retry(self.retry_policy(), fn, args, kwargs, self.logger, self.stats)

    @staticmethod
    def retried(
        method: Callable[Concatenate[M, P], Awaitable[R]],
    ) -> Callable[Concatenate[M, P], Awaitable[R]]:
        """Decorate a method so that every call goes through ``self.retry``."""

        @functools.wraps(method)
        async def wrapper(self: M, /, *args: P.args, **kwargs: P.kwargs) -> R:
            return await self.retry(functools.partial(method, self), *args, **kwargs)

        return wrapper
