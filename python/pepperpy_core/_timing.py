"""The timing decorator shared by both backends' Timer."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, ParamSpec, Protocol, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


class _TimesBlocks(Protocol):
    def time(self) -> Any: ...


def timed(histogram: _TimesBlocks, func: Callable[P, R]) -> Callable[P, R]:
    """Wrap ``func`` so that every call is timed into ``histogram``, including
    calls that raise; ``async def`` functions are timed until they return."""
    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def timed_coroutine(*args: Any, **kwargs: Any) -> Any:
            with histogram.time():
                return await func(*args, **kwargs)

        return timed_coroutine  # type: ignore[return-value]

    @functools.wraps(func)
    def timed_call(*args: P.args, **kwargs: P.kwargs) -> R:
        with histogram.time():
            return func(*args, **kwargs)

    return timed_call
