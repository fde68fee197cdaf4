"""Metrics: Counter, Gauge, Histogram and Timer from the active backend, and
the MetricsRegistry that names them and exports them.

``registry.counter(name, labels)``, ``registry.gauge(name, labels)`` and
``registry.histogram(name, labels)`` get or create one metric per name and
label values; ``registry.timer(name)`` gives a new Timer on that name's
histogram, for ``with``, ``async with`` or as a decorator of plain and
``async def`` functions. ``snapshot()`` returns plain data;
``to_prometheus()`` the Prometheus text format 0.0.4 and
``to_openmetrics()`` OpenMetrics 1.0.0 (see ``exposition``). Collectors
added with ``add_collector(fn)`` run before each export, to set gauges
from the state they read.

A name's kind, label names, buckets and gauge mode are fixed by its first
use; asking for the same name with another is a MetricError (a ValueError). A metric made
without a description is exported with help text made from its kind and name
("Durations of op, in seconds."); ``snapshot()`` still reports none given.

Several worker processes: ``MetricsRegistry(shared_dir=PATH)``, or the
environment variable ``PEPPERPY_CORE_METRICS_DIR`` for every registry made
without one, keeps the values in shared memory under PATH
(docs/multiprocess.md). Each process's metrics write their own values (a
metric's ``value`` is this process's); every export, ``snapshot()`` and the
OpenTelemetry bridge read the aggregate of every process of the service,
the processes that exited included: counters and histograms sum, and each
gauge combines as its ``mode`` says (``gauge(name, mode=...)``: ``"sum"``,
the default, ``"max"``, ``"min"``, ``"latest"``, or ``"pid"`` for one series
per process labelled ``pid``). An exited process's gauges are dropped. The
aggregate's histogram quantiles are interpolated within its buckets.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final, Literal

from pepperpy_core._backend import ACTIVE
from pepperpy_core._callbacks import register
from pepperpy_core._fallback.metrics import call_key
from pepperpy_core.errors import MetricError
from pepperpy_core.exposition import (
    CLAIMS_LOCK,
    Family,
    Format,
    SampleWriter,
    Snapshot,
    render,
    utf8,
)
from pepperpy_core.kinds import KINDS, Kind

if TYPE_CHECKING:
    from pepperpy_core._fallback.metrics import (
        DEFAULT_BUCKETS,
        QUANTILE_RELATIVE_ERROR,
        Counter,
        Gauge,
        Histogram,
        RegistryCore,
        Timer,
    )
    from pepperpy_core.exposition import Exposition, _Member
else:
    Counter = ACTIVE.Counter
    Gauge = ACTIVE.Gauge
    Histogram = ACTIVE.Histogram
    Timer = ACTIVE.Timer
    RegistryCore = ACTIVE.RegistryCore
    DEFAULT_BUCKETS = list(ACTIVE.DEFAULT_BUCKETS)
    QUANTILE_RELATIVE_ERROR = ACTIVE.QUANTILE_RELATIVE_ERROR

__all__ = [
    "DEFAULT_BUCKETS",
    "QUANTILE_RELATIVE_ERROR",
    "SHARED_DIR_ENV",
    "Counter",
    "Gauge",
    "Histogram",
    "MetricsRegistry",
    "Timer",
]

#: A collector: called before each export, to bring gauges up to date.
Collector = Callable[[], None]
#: Makes every registry made without ``shared_dir`` share this directory.
SHARED_DIR_ENV: Final = "PEPPERPY_CORE_METRICS_DIR"
#: How a shared registry combines a gauge's values across processes.
GaugeMode = Literal["sum", "max", "min", "latest", "pid"]
_GAUGE_MODES: Final = ("sum", "max", "min", "latest", "pid")
#: What a shared registry does with a directory a previous run left.
PreviousRun = Literal["discard", "keep", "error"]
_log: Final = logging.getLogger("pepperpy_core.metrics")

_NAME: Final = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL: Final = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


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
        reserved = KINDS[kind].reserved.get(name)
        if reserved:
            raise MetricError(f"label name {name!r} is reserved for {reserved}")
        value = labels[name]
        if not isinstance(value, str):
            raise TypeError(f"label {name!r} must have a str value, not {type(value).__name__}")
        utf8(value, f"the value of label {name!r}")
    return names, tuple(labels[n] for n in names)


def _check_mode(mode: object) -> str:
    if not isinstance(mode, str):
        raise TypeError(f"a gauge mode must be a str, not {type(mode).__name__}")
    if mode not in _GAUGE_MODES:
        raise MetricError(
            f"a gauge mode is one of {', '.join(map(repr, _GAUGE_MODES))}, not {mode!r}"
        )
    return mode


def _open_store(
    store_class: Any, directory: object, previous_run: object, namespace: object
) -> Any:
    """A SharedStore of ``directory``, its warnings logged."""
    if not isinstance(directory, (str, os.PathLike)):
        raise TypeError(f"shared_dir must be a str or a path, not {type(directory).__name__}")
    if not isinstance(namespace, str):
        raise TypeError(f"namespace must be a str, not {type(namespace).__name__}")
    utf8(namespace, "the namespace")
    if previous_run not in ("discard", "keep", "error"):
        raise ValueError(f"previous_run must be 'discard', 'keep' or 'error', not {previous_run!r}")
    store = store_class(os.fspath(directory), previous_run)
    for notice in store.notices():
        _log.warning("%s", notice)
    return store


def _check_description(description: object) -> str:
    if not isinstance(description, str):
        raise TypeError(f"description must be a str, not {type(description).__name__}")
    return utf8(description, "the description")


class RegistryBase:
    """What a MetricsRegistry adds to a backend's RegistryCore: the checks,
    the families, and the export. Mixed in before the core, so one backend's
    registry can be built beside another's (``MetricsRegistry`` uses the
    active backend's)."""

    if TYPE_CHECKING:  # provided by the backend's RegistryCore
        _counters: dict[object, Any]
        _gauges: dict[object, Any]
        _histograms: dict[object, Any]

        def _new_counter(self) -> Any: ...
        def _new_gauge(self) -> Any: ...
        def _new_histogram(self, bounds: Iterable[float]) -> Any: ...

        _samples: SampleWriter

    #: The SharedStore class of the registry's backend (None: the active one's).
    _shared_store: Any = None

    def __init__(
        self,
        shared_dir: str | os.PathLike[str] | None = None,
        *,
        namespace: str = "",
        previous_run: PreviousRun = "discard",
    ) -> None:
        super().__init__()
        directory = shared_dir if shared_dir is not None else os.environ.get(SHARED_DIR_ENV)
        #: This process's access to the shared directory, or None.
        self._store: Any = (
            _open_store(
                self._shared_store or ACTIVE.SharedStore, directory, previous_run, namespace
            )
            if directory
            else None
        )
        self._namespace = namespace
        #: The families of the aggregate, by name (a shared registry's exports).
        self._shared_families: dict[str, Family] = {}
        self._families: dict[str, Family] = {}
        self._series_owner: dict[str, str] = {}  # sample name -> family name
        self._lock = threading.Lock()
        self._collectors: list[Collector] = []
        self._descriptions: dict[str, str] = {}  # described before being made
        self._groups: list[tuple[Exposition, _Member]] = []

    def _lookup(
        self,
        kind: Literal["counter", "gauge", "histogram", "timer"],
        name: str,
        labels: Mapping[str, str] | None = None,
        *,
        description: str = "",
        buckets: Iterable[float] | None = None,
        mode: GaugeMode | None = None,
    ) -> Any:
        if kind == "timer":
            histogram = self._lookup(
                "histogram", name, labels, description=description, buckets=buckets
            )
            return histogram.time()
        if kind != "histogram" and buckets is not None:
            raise TypeError(f"a {kind} has no buckets")
        if kind != "gauge" and mode is not None:
            raise TypeError(f"a {kind} has no mode")
        name = _check_name(name)
        KINDS[kind].check_name(name)
        description = _check_description(description)
        wanted_mode = _check_mode(mode) if mode is not None else None
        label_names, values = _check_labels(labels, kind)
        if wanted_mode == "pid" and "pid" in label_names:
            raise MetricError(
                "label name 'pid' is reserved for the process id of a gauge of mode 'pid'"
            )
        wanted: tuple[float, ...] = ()
        if kind == "histogram":
            # A throwaway Histogram checks and normalizes explicit bounds; the
            # common call (no buckets) builds nothing.
            wanted = tuple(
                DEFAULT_BUCKETS if buckets is None else self._new_histogram(buckets).bounds
            )
        with self._lock:
            family = self._families.get(name)
            made = family is None
            if family is None:
                family = Family(
                    name,
                    kind,
                    description,
                    label_names,
                    wanted,
                    render=self._samples,
                    mode=wanted_mode or "sum",
                )
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
            elif wanted_mode is not None and family.mode != wanted_mode:
                raise MetricError(f"gauge {name!r} has mode {family.mode!r}, not {wanted_mode!r}")
            metric = family.children.get(values)
            if metric is None:
                # A new series: claimed (with its family, if new) before anything is kept.
                self._claim(family, values, made)
                if made:
                    self._families[name] = family
                    family.description = description or self._descriptions.pop(name, "")
                if self._store is None:
                    metric = KINDS[kind].new(self, family.buckets)
                else:
                    metric = KINDS[kind].shared(self._store, self._namespace, family, values)
                family.children[values] = metric
            if description and not family.description:
                family.description = description
            key = call_key(name, labels)
            if key is not None:  # the next call of this shape is a dict lookup
                remembered: dict[object, Any] = (
                    self._counters
                    if kind == "counter"
                    else self._gauges
                    if kind == "gauge"
                    else self._histograms
                )
                remembered[key] = metric
            return metric

    def _claim(self, family: Family, values: tuple[str, ...], made: bool) -> None:
        """Reserve a new series (and the sample names of its family, when
        ``made``), here and in every exposition this registry is part of;
        MetricError naming both owners, and nothing reserved, if another
        family already exposes one of those names or another registry that
        series."""
        series = KINDS[family.kind].series_names(family.name) if made else ()
        for sample in series:
            owner = self._series_owner.get(sample)
            if owner is not None:
                other = self._families[owner]
                raise MetricError(
                    f"{family.kind} {family.name!r} would expose the series {sample!r}, which "
                    f"{other.kind} {owner!r} already exposes"
                )
        if made or "module" in family.label_names:  # else the family's claim covers it
            with CLAIMS_LOCK:
                for group, member in self._groups:
                    group._check(member, family, (values,))
                for group, member in self._groups:
                    group._commit(member, family, (values,))
        for sample in series:
            self._series_owner[sample] = family.name

    def _join(self, group: Exposition, member: _Member) -> None:
        """Become part of ``group``: its checks see every family and series
        made here, now and later (MetricError, and nothing joined, on a
        conflict)."""
        with self._lock, CLAIMS_LOCK:
            families = list(self._families.values())
            for family in families:
                group._check(member, family, family.children)
            for family in families:
                group._commit(member, family, family.children)
            self._groups.append((group, member))

    def _leave(self, group: Exposition) -> None:
        with self._lock:
            self._groups = [(g, m) for g, m in self._groups if g is not group]

    def describe(self, name: str, description: str) -> None:
        """Give the metric ``name`` its help text, now or when it is made; as
        with its kind and labels, the first description given is kept."""
        name = _check_name(name)
        description = _check_description(description)
        if not description:
            return
        with self._lock:
            family = self._families.get(name)
            if family is None:
                self._descriptions.setdefault(name, description)
            elif not family.description:
                family.description = description

    # --- export --------------------------------------------------------------------

    def add_collector(self, collector: Collector) -> Callable[[], None]:
        """Call ``collector()`` before every export (to set gauges from what
        it reads); returns a function that removes it. An exception from a
        collector propagates to the caller of the export."""
        if not callable(collector):
            raise TypeError(f"a collector must be callable, not {type(collector).__name__}")
        return register(self._collectors, collector)

    @property
    def shared_dir(self) -> str | None:
        """The shared directory (absolute), or None for a registry of this
        process alone."""
        return None if self._store is None else str(self._store.directory)

    def collect(self) -> Snapshot:
        """Run the collectors, then copy every family's series: what an
        export, an Exposition and the OpenTelemetry bridge read. A shared
        registry's are the aggregate of every process."""
        for collector in tuple(self._collectors):
            collector()
        if self._store is not None:
            return self._collect_shared()
        with self._lock:
            return [(f, f.children.copy()) for f in self._families.values()]

    def _collect_shared(self) -> Snapshot:
        rows = self._store.collect(self._namespace)
        for notice in self._store.notices():
            _log.warning("%s", notice)
        out: Snapshot = []
        with self._lock:
            for name, kind, description, label_names, bounds, mode, children in rows:
                family = self._shared_families.get(name)
                if family is None or (family.kind, family.label_names, family.buckets) != (
                    kind,
                    label_names,
                    bounds,
                ):
                    family = Family(
                        name, kind, "", label_names, bounds, render=self._samples, mode=mode
                    )
                    self._shared_families[name] = family
                local = self._families.get(name)
                family.description = (
                    (local.description if local is not None else "")
                    or self._descriptions.get(name, "")
                    or description
                )
                out.append((family, children))
        return out

    def snapshot(self) -> list[dict[str, Any]]:
        """Every metric as plain data: name, kind, labels, and the value (a
        counter or gauge) or count, sum, min, max, quantiles and cumulative
        buckets (a histogram)."""
        out: list[dict[str, Any]] = []
        for family, children in self.collect():
            for values, metric in children.items():
                row: dict[str, Any] = {
                    "name": family.name,
                    "kind": family.kind,
                    "description": family.description,
                    "labels": dict(zip(family.label_names, values, strict=True)),
                }
                row.update(KINDS[family.kind].snapshot(metric))
                out.append(row)
        return out

    def export(self, fmt: Format = "prometheus") -> str:
        """The registry as text in ``fmt``: ``"prometheus"`` (0.0.4) or
        ``"openmetrics"`` (1.0.0)."""
        if fmt not in ("prometheus", "openmetrics"):
            raise ValueError(f"format must be 'prometheus' or 'openmetrics', not {fmt!r}")
        return render([(self.collect(), "")], fmt)

    def to_prometheus(self) -> str:
        """The registry in the Prometheus text exposition format, version 0.0.4."""
        return self.export("prometheus")

    def to_openmetrics(self) -> str:
        """The registry in the OpenMetrics text format 1.0.0 (ends ``# EOF``)."""
        return self.export("openmetrics")


class MetricsRegistry(RegistryBase, RegistryCore):
    """Named counters, gauges and histograms, with plain-data and text export.

    ``MetricsRegistry(shared_dir=PATH)`` (or ``PEPPERPY_CORE_METRICS_DIR``)
    shares the metrics of every process of a service through PATH (see this
    module's doc); ``namespace`` keeps several shared registries of one
    process apart, and ``previous_run`` says what to do with numbers a
    previous run of the service left there: ``"discard"`` them (logged),
    ``"keep"`` them, or refuse with an ``"error"``.

    Looking up a metric that exists (``counter(name)``, ``timer(name)``, also
    with labels) costs one dict lookup; the first lookup of each shape of call
    goes to ``_lookup``, which checks names and labels, refuses a metric whose
    series would collide with another's, and remembers the answer.
    """
