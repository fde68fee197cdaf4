"""MetricsModule: a module with its own MetricsRegistry.

- ``timer(name)``: a Timer on the histogram ``name`` (labelled with the
  module's name), for ``with`` and ``async with``.
- ``record_success()`` and ``record_failure(reason)``: counters
  ``pepperpy_module_successes_total`` and ``pepperpy_module_failures_total``
  (the latter per reason).
- ``initialize()`` and ``cleanup()`` are timed and counted automatically, for
  every subclass: ``pepperpy_module_lifecycle_seconds{phase}`` and
  ``pepperpy_module_lifecycle_total{phase, outcome}``, from the module's
  state transitions.

Every series the library names itself starts with ``pepperpy_``; those the
module's own code makes (``timer(name)``, ``metrics.counter(...)``) are
exported as named.
"""

from __future__ import annotations

import time
from typing import Any

from pepperpy_core.metrics import Histogram, MetricsRegistry, Timer
from pepperpy_core.module.base import BaseModule, ModuleState

_PHASES = {ModuleState.INITIALIZING: "initialize", ModuleState.CLEANING_UP: "cleanup"}
_LIFECYCLE_SECONDS = "pepperpy_module_lifecycle_seconds"
_LIFECYCLE = "pepperpy_module_lifecycle_total"
_SUCCESSES = "pepperpy_module_successes_total"
_FAILURES = "pepperpy_module_failures_total"
_HELP = {
    _LIFECYCLE_SECONDS: "Seconds the module's initialize() and cleanup() took.",
    _LIFECYCLE: "The module's initialize() and cleanup() calls, by outcome.",
    _SUCCESSES: "Successes the module recorded.",
    _FAILURES: "Failures the module recorded, by reason.",
}
_OUTCOMES = {ModuleState.READY: "ok", ModuleState.CLOSED: "ok", ModuleState.FAILED: "failed"}


class MetricsModule(BaseModule):
    """A module that measures itself (see this module's doc)."""

    _pepperpy_capability = "MetricsModule"

    def __init__(
        self, config: Any = None, *, registry: MetricsRegistry | None = None, **kwargs: Any
    ) -> None:
        super().__init__(config, **kwargs)
        # Under PEPPERPY_CORE_METRICS_DIR each module's registry is shared on
        # its own: the same module in every worker process sums together.
        self.metrics = (
            registry
            if registry is not None
            else MetricsRegistry(namespace=f"pepperpy.module.{self.name}")
        )
        for name, text in _HELP.items():
            self.metrics.describe(name, text)
        self._phase_started: tuple[str, float] | None = None
        # timer(name) is called on every request: its histograms are kept
        # per name, for the config (and so the module name) they were made for.
        self._timed: dict[str, Histogram] = {}
        self._timed_for: object = None
        self.add_listener(self._on_transition)

    def _labels(self, **extra: str) -> dict[str, str]:
        return {"module": self.name, **extra}

    def _on_transition(self, module: BaseModule, old: ModuleState, new: ModuleState) -> None:
        phase = _PHASES.get(new)
        if phase is not None:
            self._phase_started = (phase, time.perf_counter())
            return
        outcome = _OUTCOMES.get(new)
        if outcome is None or self._phase_started is None:
            return
        phase, started = self._phase_started
        self._phase_started = None
        labels = self._labels(phase=phase)
        self.metrics.histogram(_LIFECYCLE_SECONDS, labels).observe(time.perf_counter() - started)
        self.metrics.counter(_LIFECYCLE, {**labels, "outcome": outcome}).inc()

    def timer(self, name: str) -> Timer:
        """A new Timer on the histogram ``name``, labelled with the module."""
        if self._timed_for is self.config:
            histogram = self._timed.get(name)
            if histogram is not None:
                return histogram.time()
        else:
            self._timed = {}
            self._timed_for = self.config
        histogram = self._timed[name] = self.metrics.histogram(name, self._labels())
        return histogram.time()

    def record_success(self) -> None:
        """Count one success."""
        self.metrics.counter(_SUCCESSES, self._labels()).inc()

    def record_failure(self, reason: str) -> None:
        """Count one failure for ``reason``."""
        if not isinstance(reason, str):
            raise TypeError(f"reason must be a str, not {type(reason).__name__}")
        self.metrics.counter(_FAILURES, self._labels(reason=reason)).inc()

    def successes(self) -> int:
        """Successes recorded so far."""
        return self.metrics.counter(_SUCCESSES, self._labels()).value

    def failures(self, reason: str) -> int:
        """Failures recorded so far for ``reason``."""
        return self.metrics.counter(_FAILURES, self._labels(reason=reason)).value
