"""Metrics: Counter, Histogram and Timer from the active backend, and the
MetricsRegistry that names them and exports them.

``registry.counter(name, labels)`` and ``registry.histogram(name, labels)`` get
or create one metric per name and label values; ``registry.timer(name)`` gives
a new Timer on that name's histogram, for ``with``, ``async with`` or as a
decorator of plain and ``async def`` functions. ``snapshot()`` returns plain
data; ``to_prometheus()`` the Prometheus text exposition format (0.0.4).

A name's kind, label names and buckets are fixed by its first use; asking for
the same name with another is a MetricError (a ValueError).
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal

from pepperpy_core._backend import ACTIVE
from pepperpy_core._fallback.metrics import call_key
from pepperpy_core.errors import MetricError

if TYPE_CHECKING:
    from pepperpy_core._fallback.metrics import (
        DEFAULT_BUCKETS,
        QUANTILE_RELATIVE_ERROR,
        Counter,
        Histogram,
        RegistryCore,
        Timer,
    )
else:
    Counter = ACTIVE.Counter
    Histogram = ACTIVE.Histogram
    Timer = ACTIVE.Timer
    RegistryCore = ACTIVE.RegistryCore
    DEFAULT_BUCKETS = list(ACTIVE.DEFAULT_BUCKETS)
    QUANTILE_RELATIVE_ERROR = ACTIVE.QUANTILE_RELATIVE_ERROR

__all__ = [
    "DEFAULT_BUCKETS",
    "QUANTILE_RELATIVE_ERROR",
    "Counter",
    "Histogram",
    "MetricsRegistry",
    "Timer",
]

Kind = Literal["counter", "histogram"]

_NAME: Final = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL: Final = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
#: The quantiles a snapshot reports for each histogram.
SNAPSHOT_QUANTILES: Final = (0.5, 0.9, 0.99)


def _check_name(name: object) -> str:
    if not isinstance(name, str):
        raise TypeError(f"a metric name must be a str, not {type(name).__name__}")
    if not _NAME.fullmatch(name):
        raise MetricError(f"metric name {name!r} breaks Prometheus' rule [a-zA-Z_:][a-zA-Z0-9_:]*")
    return name


def _check_labels(
    labels: Mapping[str, str] | None, kind: Kind
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(sorted label names, their values), every one checked."""
    if labels is None:
        return (), ()
    if not isinstance(labels, Mapping):
        raise TypeError(f"labels must be a mapping of str to str, not {type(labels).__name__}")
    names = tuple(sorted(labels))
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"a label name must be a str, not {type(name).__name__}")
        if not _LABEL.fullmatch(name) or name.startswith("__"):
            raise MetricError(
                f"label name {name!r} breaks Prometheus' rule [a-zA-Z_][a-zA-Z0-9_]* "
                "(and may not start with __)"
            )
        if kind == "histogram" and name == "le":
            raise MetricError("label name 'le' is reserved for histogram buckets")
        value = labels[name]
        if not isinstance(value, str):
            raise TypeError(f"label {name!r} must have a str value, not {type(value).__name__}")
    return names, tuple(labels[n] for n in names)


@dataclass
class _Family:
    name: str
    kind: Kind
    description: str
    label_names: tuple[str, ...]
    buckets: tuple[float, ...]
    children: dict[tuple[str, ...], Any] = field(default_factory=dict)


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if isinstance(value, int):
        return str(value)
    return repr(float(value))


def _labels_text(pairs: Sequence[tuple[str, str]]) -> str:
    if not pairs:
        return ""
    return "{" + ",".join(f'{k}="{_escape_label(v)}"' for k, v in pairs) + "}"


def _series(kind: Kind, name: str) -> tuple[str, ...]:
    """Every sample name a family exposes in either text format (as
    prometheus_client counts them): a counter's base name with ``_total`` and
    ``_created``; a histogram's ``_bucket``, ``_count``, ``_sum``, ``_created``."""
    if kind == "counter":
        base = name.removesuffix("_total")
        return (base, f"{base}_total", f"{base}_created")
    return (name, f"{name}_bucket", f"{name}_count", f"{name}_sum", f"{name}_created")


class RegistryBase:
    """What a MetricsRegistry adds to a backend's RegistryCore: the checks,
    the families, and the export. Mixed in before the core, so one backend's
    registry can be built beside another's (``MetricsRegistry`` uses the
    active backend's)."""

    if TYPE_CHECKING:  # provided by the backend's RegistryCore
        _counters: dict[object, Any]
        _histograms: dict[object, Any]

        def _new_counter(self) -> Any: ...
        def _new_histogram(self, bounds: Iterable[float]) -> Any: ...

    def __init__(self) -> None:
        super().__init__()
        self._families: dict[str, _Family] = {}
        self._series_owner: dict[str, str] = {}  # sample name -> family name
        self._lock = threading.Lock()

    def _lookup(
        self,
        kind: Literal["counter", "histogram", "timer"],
        name: str,
        labels: Mapping[str, str] | None = None,
        *,
        description: str = "",
        buckets: Iterable[float] | None = None,
    ) -> Any:
        if kind == "timer":
            histogram = self._lookup(
                "histogram", name, labels, description=description, buckets=buckets
            )
            return histogram.time()
        if kind == "counter" and buckets is not None:
            raise TypeError("a counter has no buckets")
        name = _check_name(name)
        if not isinstance(description, str):
            raise TypeError(f"description must be a str, not {type(description).__name__}")
        label_names, values = _check_labels(labels, kind)
        wanted: tuple[float, ...] = ()
        if kind == "histogram":
            # A throwaway Histogram checks and normalizes explicit bounds; the
            # common call (no buckets) builds nothing.
            wanted = tuple(
                DEFAULT_BUCKETS if buckets is None else self._new_histogram(buckets).bounds
            )
        with self._lock:
            family = self._families.get(name)
            if family is None:
                self._claim_series(kind, name)
                family = _Family(name, kind, description, label_names, wanted)
                self._families[name] = family
            elif family.kind != kind:
                raise MetricError(f"metric {name!r} is a {family.kind}, not a {kind}")
            elif family.label_names != label_names:
                raise MetricError(
                    f"metric {name!r} has labels {list(family.label_names)}, "
                    f"not {list(label_names)}"
                )
            elif buckets is not None and family.buckets != wanted:
                raise MetricError(
                    f"histogram {name!r} has buckets {list(family.buckets)}, not {list(wanted)}"
                )
            metric = family.children.get(values)
            if metric is None:
                metric = (
                    self._new_counter()
                    if kind == "counter"
                    else self._new_histogram(list(family.buckets))
                )
                family.children[values] = metric
            key = call_key(name, labels)
            if key is not None:  # the next call of this shape is a dict lookup
                remembered: dict[object, Any] = (
                    self._counters if kind == "counter" else self._histograms
                )
                remembered[key] = metric
            return metric

    def _claim_series(self, kind: Kind, name: str) -> None:
        """Reserve the sample names a new family exposes; MetricError naming
        both metrics if another family already exposes one of them."""
        series = _series(kind, name)
        for sample in series:
            owner = self._series_owner.get(sample)
            if owner is not None:
                other = self._families[owner]
                raise MetricError(
                    f"{kind} {name!r} would expose the series {sample!r}, which "
                    f"{other.kind} {owner!r} already exposes"
                )
        for sample in series:
            self._series_owner[sample] = name

    def _families_copy(self) -> list[tuple[_Family, list[tuple[tuple[str, ...], Any]]]]:
        with self._lock:
            return [(f, list(f.children.items())) for f in self._families.values()]

    def snapshot(self) -> list[dict[str, Any]]:
        """Every metric as plain data: name, kind, labels, and the value (a
        counter) or count, sum, min, max, quantiles and cumulative buckets."""
        out: list[dict[str, Any]] = []
        for family, children in self._families_copy():
            for values, metric in children:
                row: dict[str, Any] = {
                    "name": family.name,
                    "kind": family.kind,
                    "description": family.description,
                    "labels": dict(zip(family.label_names, values, strict=True)),
                }
                if family.kind == "counter":
                    row["value"] = metric.value
                else:
                    row.update(
                        count=metric.count,
                        sum=metric.sum,
                        min=metric.min,
                        max=metric.max,
                        quantiles={q: metric.quantile(q) for q in SNAPSHOT_QUANTILES},
                        buckets=metric.buckets(),
                    )
                out.append(row)
        return out

    def to_prometheus(self) -> str:
        """The registry in the Prometheus text exposition format, version 0.0.4."""
        lines: list[str] = []
        for family, children in self._families_copy():
            name = family.name
            if family.description:
                lines.append(f"# HELP {name} {_escape_help(family.description)}")
            lines.append(f"# TYPE {name} {family.kind}")
            for values, metric in children:
                pairs = list(zip(family.label_names, values, strict=True))
                if family.kind == "counter":
                    lines.append(f"{name}{_labels_text(pairs)} {metric.value}")
                    continue
                for upper, count in metric.buckets():
                    le = _labels_text([*pairs, ("le", _number(upper))])
                    lines.append(f"{name}_bucket{le} {count}")
                lines.append(f"{name}_sum{_labels_text(pairs)} {_number(metric.sum)}")
                lines.append(f"{name}_count{_labels_text(pairs)} {metric.count}")
        return "\n".join(lines) + "\n" if lines else ""


class MetricsRegistry(RegistryBase, RegistryCore):
    """Named counters and histograms, with plain-data and Prometheus export.

    Looking up a metric that exists (``counter(name)``, ``timer(name)``, also
    with labels) costs one dict lookup; the first lookup of each shape of call
    goes to ``_lookup``, which checks names and labels, refuses a metric whose
    series would collide with another's, and remembers the answer.
    """
