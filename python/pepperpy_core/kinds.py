"""The kinds of metric, each one object that knows everything of its kind:
the sample names it exposes, the text before each value, the lines of its
series, its help text when none was given, the metric a registry makes, its
row in ``snapshot()`` and its OpenTelemetry data.

A registry, the exposition and the OpenTelemetry bridge ask ``KINDS[kind]``
and never switch on the kind themselves. The native backend writes the same
sample lines in Rust (``rust/render.rs``, its twin of ``samples``). A new kind
(a Summary, say) is a class here, its metric in both backends (``rust/metrics.rs``
and ``_fallback/metrics.py``, with the stub), its arm in ``render.rs``, and
a test.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any, Final, Literal

from pepperpy_core.errors import MetricError

__all__ = ["KINDS", "MetricKind", "number", "samples"]

Kind = Literal["counter", "gauge", "histogram"]
#: The quantiles a snapshot reports for each histogram.
SNAPSHOT_QUANTILES: Final = (0.5, 0.9, 0.99)

Series = Iterable[tuple[tuple[str, ...], Any]]
Lines = dict[tuple[str, ...], tuple[str, ...]]
Make = Callable[[tuple[str, ...]], tuple[str, ...] | None]


def number(value: float) -> str:
    """A sample value or bound as both formats spell it."""
    if isinstance(value, int):
        return str(value)
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _words(name: str) -> str:
    return " ".join(w for w in name.replace(":", "_").split("_") if w)


def _number_points(sdk: Any, names: tuple[str, ...], children: Any, start: int, now: int) -> Any:
    """A counter's or gauge's OpenTelemetry points: one value per series."""
    return [
        sdk.NumberDataPoint(dict(zip(names, values, strict=True)), start, now, metric.value)
        for values, metric in children.items()
    ]


class MetricKind:
    """What every kind answers; each subclass is one kind."""

    name: Kind
    #: Label names a series of this kind may not use, and what they are for.
    reserved: Mapping[str, str] = MappingProxyType({})

    def check_name(self, name: str) -> None:
        """MetricError if ``name`` cannot name a metric of this kind."""

    def sample_base(self, name: str) -> str:
        """The family name the formats use."""
        return name

    def series_names(self, name: str) -> tuple[str, ...]:
        """Every sample name a family exposes in either format (as
        prometheus_client counts them)."""
        raise NotImplementedError

    def header_name(self, name: str, openmetrics: bool) -> str:
        """The name on the family's HELP and TYPE lines."""
        return self.sample_base(name)

    def default_help(self, name: str) -> str:
        """Help text for a family made without a description."""
        raise NotImplementedError

    def prefixes(self, name: str, inner: str, buckets: tuple[float, ...]) -> tuple[str, ...]:
        """The text before each of a series' values, its labels ``inner``."""
        raise NotImplementedError

    def lines_per_series(self, buckets: tuple[float, ...]) -> int:
        return 1

    def samples(
        self, children: Series, lines: Lines, make: Make, out: list[Any], encoded: bool
    ) -> None:
        """Append the sample lines of a family's series to ``out`` (UTF-8
        encoded if ``encoded``): each series' cached prefixes (``make(values)``
        makes those of a new one; None leaves it out), each followed by a
        value read from its metric. On an error, ``out`` is left as it was."""
        text: list[str] = []
        append = text.append
        write = self._write
        for values, metric in children:
            prefixes = lines.get(values)
            if prefixes is None:
                prefixes = make(values)
                if prefixes is None:
                    continue
                lines[values] = prefixes
            write(append, prefixes, metric)
        if text:
            joined = "".join(text)
            out.append(joined.encode() if encoded else joined)

    def _write(self, append: Callable[[str], None], prefixes: tuple[str, ...], metric: Any) -> None:
        raise NotImplementedError

    def new(self, core: Any, buckets: tuple[float, ...]) -> Any:
        """A new metric of this kind from a backend's RegistryCore."""
        raise NotImplementedError

    def shared(self, store: Any, namespace: str, family: Any, values: tuple[str, ...]) -> Any:
        """A new metric of this kind that writes into this process's segment
        of a shared directory (``store``: a backend's SharedStore)."""
        raise NotImplementedError

    def snapshot(self, metric: Any) -> dict[str, Any]:
        """The metric's values as plain data."""
        return {"value": metric.value}

    def otel(
        self,
        sdk: Any,
        names: tuple[str, ...],
        buckets: tuple[float, ...],
        children: Any,
        start: int,
        now: int,
    ) -> Any:
        """The OpenTelemetry data of a family's series (``sdk``: the SDK's
        metric data classes, handed in by the bridge)."""
        raise NotImplementedError


class _Counter(MetricKind):
    name: Kind = "counter"

    def check_name(self, name: str) -> None:
        if name == "_total":
            raise MetricError("a counter named '_total' has no name without its _total")

    def sample_base(self, name: str) -> str:
        return name.removesuffix("_total")

    def series_names(self, name: str) -> tuple[str, ...]:
        base = self.sample_base(name)
        return (base, f"{base}_total", f"{base}_created")

    def header_name(self, name: str, openmetrics: bool) -> str:
        base = self.sample_base(name)
        return base if openmetrics else f"{base}_total"

    def default_help(self, name: str) -> str:
        base = self.sample_base(name)
        return f"Count of {_words(base) or _words(name) or name}."

    def prefixes(self, name: str, inner: str, buckets: tuple[float, ...]) -> tuple[str, ...]:
        braced = f"{{{inner}}}" if inner else ""
        return (f"{self.sample_base(name)}_total{braced} ",)

    def _write(self, append: Callable[[str], None], prefixes: tuple[str, ...], metric: Any) -> None:
        append(f"{prefixes[0]}{metric.value}\n")

    def new(self, core: Any, buckets: tuple[float, ...]) -> Any:
        return core._new_counter()

    def shared(self, store: Any, namespace: str, family: Any, values: tuple[str, ...]) -> Any:
        labels = list(zip(family.label_names, values, strict=True))
        return store.counter(namespace, family.name, labels, family.description)

    def otel(
        self,
        sdk: Any,
        names: tuple[str, ...],
        buckets: tuple[float, ...],
        children: Any,
        start: int,
        now: int,
    ) -> Any:
        return sdk.Sum(
            _number_points(sdk, names, children, start, now), sdk.CUMULATIVE, is_monotonic=True
        )


class _Gauge(MetricKind):
    name: Kind = "gauge"

    def series_names(self, name: str) -> tuple[str, ...]:
        return (name,)

    def default_help(self, name: str) -> str:
        return f"Current {_words(name) or name}."

    def prefixes(self, name: str, inner: str, buckets: tuple[float, ...]) -> tuple[str, ...]:
        braced = f"{{{inner}}}" if inner else ""
        return (f"{name}{braced} ",)

    def _write(self, append: Callable[[str], None], prefixes: tuple[str, ...], metric: Any) -> None:
        append(f"{prefixes[0]}{number(metric.value)}\n")

    def new(self, core: Any, buckets: tuple[float, ...]) -> Any:
        return core._new_gauge()

    def shared(self, store: Any, namespace: str, family: Any, values: tuple[str, ...]) -> Any:
        labels = list(zip(family.label_names, values, strict=True))
        return store.gauge(namespace, family.name, labels, family.description, family.mode)

    def otel(
        self,
        sdk: Any,
        names: tuple[str, ...],
        buckets: tuple[float, ...],
        children: Any,
        start: int,
        now: int,
    ) -> Any:
        return sdk.Gauge(_number_points(sdk, names, children, start, now))


class _Histogram(MetricKind):
    name: Kind = "histogram"
    reserved = MappingProxyType({"le": "histogram buckets"})

    def series_names(self, name: str) -> tuple[str, ...]:
        return (name, f"{name}_bucket", f"{name}_count", f"{name}_sum", f"{name}_created")

    def default_help(self, name: str) -> str:
        words = _words(name.removesuffix("_seconds")) or _words(name) or name
        return f"Durations of {words}, in seconds."

    def prefixes(self, name: str, inner: str, buckets: tuple[float, ...]) -> tuple[str, ...]:
        braced = f"{{{inner}}}" if inner else ""
        lead = f"{inner}," if inner else ""
        uppers = [*buckets, math.inf]
        lines = [f'{name}_bucket{{{lead}le="{number(u)}"}} ' for u in uppers]
        return (*lines, f"{name}_sum{braced} ", f"{name}_count{braced} ")

    def lines_per_series(self, buckets: tuple[float, ...]) -> int:
        return len(buckets) + 3

    def _write(self, append: Callable[[str], None], prefixes: tuple[str, ...], metric: Any) -> None:
        counts = metric.buckets()
        for prefix, (_, total) in zip(prefixes, counts, strict=False):
            append(f"{prefix}{total}\n")
        append(f"{prefixes[-2]}{number(metric.sum)}\n")
        append(f"{prefixes[-1]}{counts[-1][1]}\n")

    def new(self, core: Any, buckets: tuple[float, ...]) -> Any:
        return core._new_histogram(list(buckets))

    def shared(self, store: Any, namespace: str, family: Any, values: tuple[str, ...]) -> Any:
        labels = list(zip(family.label_names, values, strict=True))
        return store.histogram(
            namespace, family.name, labels, family.description, list(family.buckets)
        )

    def snapshot(self, metric: Any) -> dict[str, Any]:
        return {
            "count": metric.count,
            "sum": metric.sum,
            "min": metric.min,
            "max": metric.max,
            "quantiles": {q: metric.quantile(q) for q in SNAPSHOT_QUANTILES},
            "buckets": metric.buckets(),
        }

    def otel(
        self,
        sdk: Any,
        names: tuple[str, ...],
        buckets: tuple[float, ...],
        children: Any,
        start: int,
        now: int,
    ) -> Any:
        points = []
        bounds = list(buckets)
        for values, metric in children.items():
            counts = [total for _, total in metric.buckets()]
            count = counts[-1]
            points.append(
                sdk.HistogramDataPoint(
                    attributes=dict(zip(names, values, strict=True)),
                    start_time_unix_nano=start,
                    time_unix_nano=now,
                    count=count,
                    sum=metric.sum,
                    bucket_counts=[counts[0], *(b - a for a, b in itertools.pairwise(counts))],
                    explicit_bounds=bounds,
                    min=metric.min if count else math.inf,
                    max=metric.max if count else -math.inf,
                )
            )
        return sdk.Histogram(points, sdk.CUMULATIVE)


#: Every kind, by the name a Family carries.
KINDS: Final[dict[str, MetricKind]] = {k.name: k for k in (_Counter(), _Gauge(), _Histogram())}


def samples(
    kind: Kind, children: Series, lines: Lines, make: Make, out: list[Any], encoded: bool
) -> None:
    """``KINDS[kind].samples``: the pure-Python writer of a family's sample
    lines, appended to ``out`` (``rust/render.rs`` is the native backend's)."""
    KINDS[kind].samples(children, lines, make, out, encoded)
