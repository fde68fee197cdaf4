"""Durations given by users (timeouts, times to live), checked one way everywhere."""

from __future__ import annotations

import math


def seconds_or_none(value: object, what: str) -> float | None:
    """``value`` as seconds, None kept (no limit); TypeError for what is not a
    number, ValueError for one that is not finite and > 0."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{what} must be a number of seconds or None, not {type(value).__name__}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{what} must be a finite number of seconds > 0, got {value!r}")
    return float(value)


def seconds(value: object, what: str) -> float:
    """``seconds_or_none`` for a duration that must be given."""
    checked = seconds_or_none(value, what)
    if checked is None:
        raise TypeError(f"{what} must be a number of seconds, not None")
    return checked
