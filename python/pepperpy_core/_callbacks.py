"""Registering callbacks: the one helper every ``add_listener`` shares."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F")


def register(callbacks: list[F], callback: F) -> Callable[[], None]:
    """Append ``callback`` and return a function that removes it (calling it
    again, or after the callback is gone, does nothing)."""
    callbacks.append(callback)

    def remove() -> None:
        if callback in callbacks:
            callbacks.remove(callback)

    return remove
