"""The exception hierarchy: every error pepperpy-core raises on purpose
derives from PepperpyError, and from the builtin it refines where one fits."""

from __future__ import annotations


class PepperpyError(Exception):
    """Base of every error raised by pepperpy-core itself."""


class MetricError(PepperpyError, ValueError):
    """Raised by a MetricsRegistry when a metric or label name breaks
    Prometheus' naming rules, or a name is reused with another kind, other
    label names or other buckets."""
