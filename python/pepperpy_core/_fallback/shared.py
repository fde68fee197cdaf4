"""The pure-Python SharedStore and the metrics it makes: the same API as
the extension's (``rust/shared.rs``) over ``_fallback.shm``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pepperpy_core._fallback import shm
from pepperpy_core._fallback.metrics import Counter, Gauge, Histogram, counter_step, finite, seconds

__all__ = ["SharedStore", "after_fork"]

after_fork = shm.after_fork


class _Cell:
    """A series' slot in this process's segment, found again after a fork."""

    __slots__ = ("_epoch", "_series", "_slot", "_store")

    def __init__(self, store: shm._Store, series: shm.Series) -> None:
        self._store = store
        self._series = series
        self._epoch = shm.fork_epoch()
        self._slot = store.slot(series)

    def slot(self) -> shm.Slot:
        epoch = shm.fork_epoch()
        if self._epoch != epoch:
            self._slot = self._store.slot(self._series)
            self._epoch = epoch
        return self._slot


class _SharedCounter(Counter):
    """A Counter whose value is this process's, in a shared directory."""

    __slots__ = ("_cell",)

    def __init__(self, cell: _Cell) -> None:
        super().__init__()
        self._cell = cell

    def inc(self, n: int | None = None) -> None:
        self._cell.slot().add(counter_step(n))

    @property
    def value(self) -> int:
        return self._cell.slot().count()

    def __repr__(self) -> str:
        return f"Counter(value={self.value})"


class _SharedGauge(Gauge):
    """A Gauge whose value is this process's, in a shared directory."""

    __slots__ = ("_cell",)

    def __init__(self, cell: _Cell) -> None:
        super().__init__()
        self._cell = cell

    def set(self, value: float) -> None:
        self._cell.slot().set(finite("value", value))

    def inc(self, amount: float = 1.0) -> None:
        step = finite("step", amount)
        self._cell.slot().update(lambda v: v + step)

    def dec(self, amount: float = 1.0) -> None:
        step = finite("step", amount)
        self._cell.slot().update(lambda v: v - step)

    @property
    def value(self) -> float:
        return self._cell.slot().gauge()

    def __repr__(self) -> str:
        return f"Gauge(value={self.value!r})"


class _TotalsHistogram(Histogram):
    """A Histogram read from totals; quantiles are interpolated within the
    exported buckets (as the extension's shared histograms do)."""

    __slots__ = ()

    def _totals(self) -> shm.Totals:
        raise NotImplementedError

    @property
    def count(self) -> int:
        return self._totals().count

    @property
    def sum(self) -> float:
        return self._totals().sum

    @property
    def min(self) -> float | None:
        totals = self._totals()
        return totals.min if totals.count else None

    @property
    def max(self) -> float | None:
        totals = self._totals()
        return totals.max if totals.count else None

    def quantile(self, q: float) -> float | None:
        q = float(q)
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile needs 0 <= q <= 1, got {q}")
        return self._totals().quantile(q)

    def buckets(self) -> list[tuple[float, int]]:
        return self._totals().cumulative()

    def __repr__(self) -> str:
        totals = self._totals()
        return f"Histogram(count={totals.count}, sum={totals.sum})"


class _SharedHistogram(_TotalsHistogram):
    """A Histogram whose values are this process's, in a shared directory."""

    __slots__ = ("_cell",)

    def __init__(self, cell: _Cell, bounds: list[float]) -> None:
        super().__init__(bounds)
        self._cell = cell

    def _totals(self) -> shm.Totals:
        return self._cell.slot().totals()

    def observe(self, seconds_: float) -> None:
        self._record(seconds(seconds_))

    def _record(self, seconds_: float) -> None:
        self._cell.slot().observe(seconds_)


class _ViewHistogram(_TotalsHistogram):
    """The aggregate of several processes: read, never observed."""

    __slots__ = ("_view",)

    def __init__(self, totals: shm.Totals) -> None:
        super().__init__(list(totals.bounds))
        self._view = totals

    def _totals(self) -> shm.Totals:
        return self._view

    def observe(self, seconds_: float) -> None:
        self._record(seconds_)

    def _record(self, seconds_: float) -> None:
        raise RuntimeError(
            "this histogram is the aggregate of several processes: it is read, not observed"
        )


def _make(value: shm.Value) -> Any:
    if isinstance(value, shm.Totals):
        return _ViewHistogram(value)
    if isinstance(value, int):
        counter = Counter()
        counter._value = value
        return counter
    gauge = Gauge()
    gauge._value = value[0]
    return gauge


def _update(metric: Any, value: shm.Value) -> None:
    if isinstance(value, shm.Totals):
        metric._view = value
    elif isinstance(value, int):
        metric._value = value
    else:
        metric._value = value[0]


Row = tuple[str, str, str, tuple[str, ...], tuple[float, ...], str, dict[tuple[str, ...], Any]]


class SharedStore:
    """One process's access to a shared metrics directory (see
    docs/multiprocess.md): the metrics it makes write into this process's
    segment; ``collect`` reads every process's."""

    def __init__(self, directory: str | os.PathLike[str], previous_run: str = "discard") -> None:
        self._store = shm.open_store(directory, previous_run)
        self._views: dict[str, dict[tuple[int, int | None], tuple[tuple[str, ...], Any]]] = {}

    @property
    def directory(self) -> Path:
        """The directory, made absolute."""
        return self._store.directory

    def notices(self) -> list[str]:
        """Warnings for the user since the last call (a previous run discarded)."""
        out, self._store.notices = self._store.notices, []
        return out

    def _series(
        self,
        kind: str,
        mode: str,
        namespace: str,
        name: str,
        labels: list[tuple[str, str]],
        description: str,
        bounds: tuple[float, ...] = (),
    ) -> shm.Series:
        return shm.Series(kind, mode, namespace, name, tuple(labels), description, bounds)

    def counter(
        self, namespace: str, name: str, labels: list[tuple[str, str]], description: str
    ) -> Counter:
        """This process's counter of the series, in the directory."""
        series = self._series("counter", "sum", namespace, name, labels, description)
        return _SharedCounter(_Cell(self._store, series))

    def gauge(
        self,
        namespace: str,
        name: str,
        labels: list[tuple[str, str]],
        description: str,
        mode: str,
    ) -> Gauge:
        """This process's gauge of the series, combined as ``mode`` says."""
        if mode not in shm.MODES:
            raise ValueError(f"no gauge mode is called {mode!r}")
        series = self._series("gauge", mode, namespace, name, labels, description)
        return _SharedGauge(_Cell(self._store, series))

    def histogram(
        self,
        namespace: str,
        name: str,
        labels: list[tuple[str, str]],
        description: str,
        bounds: list[float],
    ) -> Histogram:
        """This process's histogram of the series (``bounds`` already checked)."""
        series = self._series(
            "histogram", "sum", namespace, name, labels, description, tuple(bounds)
        )
        return _SharedHistogram(_Cell(self._store, series), bounds)

    def collect(self, namespace: str) -> list[Row]:
        """Every family of ``namespace`` summed over the processes (as the
        extension's ``SharedStore.collect``)."""
        families = self._store.collect(namespace)
        old = self._views.pop(namespace, {})
        new: dict[tuple[int, int | None], tuple[tuple[str, ...], Any]] = {}
        out: list[Row] = []
        for family, rows in families:
            children: dict[tuple[str, ...], Any] = {}
            for entry, pid, value in rows:
                view = old.pop((entry, pid), None)
                if view is None:
                    series = self._store.series(entry)
                    values = tuple(v for _, v in series.labels)
                    if pid is not None:
                        values = (*values, str(pid))
                    view = (values, _make(value))
                else:
                    _update(view[1], value)
                children[view[0]] = view[1]
                new[(entry, pid)] = view
            names = family.label_names + (("pid",) if family.mode == "pid" else ())
            out.append(
                (
                    family.name,
                    family.kind,
                    family.description,
                    names,
                    family.bounds,
                    family.mode,
                    children,
                )
            )
        self._views[namespace] = new
        return out
