"""The one place that decides which implementation backs the hot paths.

``PEPPERPY_CORE_BACKEND`` is ``auto`` (the default: the Rust extension when it
imports, else the pure-Python fallback), ``native`` (the extension or an
ImportError that says how to build it) or ``python`` (the fallback, without
importing the extension at all). Everything else (the facades ``cache`` and
``metrics``, the command line, the tests and the benchmarks) asks this module
through ``ACTIVE`` or ``load()``.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Final, Literal

from pepperpy_core.errors import BackendChoiceError
from pepperpy_core.protocols import (
    CacheProtocol,
    CounterProtocol,
    GaugeProtocol,
    HistogramProtocol,
)

Name = Literal["native", "python"]
CHOICES: Final = ("auto", "native", "python")
ENVIRONMENT: Final = "PEPPERPY_CORE_BACKEND"
_FORK_HOOKS: list[Any] = []


@dataclass(frozen=True)
class Backend:
    """One implementation of the hot paths, as its classes."""

    name: Name
    FIFOCache: type[CacheProtocol[Any, Any]]
    S3FIFOCache: type[CacheProtocol[Any, Any]]
    CacheStats: type[Any]
    Counter: type[CounterProtocol]
    Gauge: type[GaugeProtocol]
    Histogram: type[HistogramProtocol]
    Timer: type[Any]
    RegistryCore: type[Any]
    #: One process's access to a shared metrics directory (docs/multiprocess.md).
    SharedStore: type[Any]
    DEFAULT_BUCKETS: tuple[float, ...]
    QUANTILE_RELATIVE_ERROR: float
    #: Where the classes come from (the extension or the fallback's package).
    origin: str


def _from(name: Name, cache: ModuleType, metrics: ModuleType, shared: ModuleType) -> Backend:
    after_fork = shared.after_fork if name == "python" else shared._after_fork
    if after_fork not in _FORK_HOOKS:
        # A forked child's metrics move to a segment of its own; registered
        # once per backend loaded, whichever is active.
        _FORK_HOOKS.append(after_fork)
        os.register_at_fork(after_in_child=after_fork)
    return Backend(
        name=name,
        FIFOCache=cache.FIFOCache,
        S3FIFOCache=cache.S3FIFOCache,
        CacheStats=cache.CacheStats,
        Counter=metrics.Counter,
        Gauge=metrics.Gauge,
        Histogram=metrics.Histogram,
        Timer=metrics.Timer,
        RegistryCore=metrics.RegistryCore,
        SharedStore=shared.SharedStore,
        DEFAULT_BUCKETS=tuple(metrics.DEFAULT_BUCKETS),
        QUANTILE_RELATIVE_ERROR=metrics.QUANTILE_RELATIVE_ERROR,
        origin=str(getattr(cache, "__file__", cache.__name__)),
    )


def load(name: Name) -> Backend:
    """Backend ``name``, importing the extension only when it is asked for;
    ImportError (saying how to build it) when the extension is missing."""
    if name == "python":
        from pepperpy_core._fallback import cache, metrics, shared  # noqa: PLC0415

        return _from("python", cache, metrics, shared)
    try:
        native = importlib.import_module("pepperpy_core._native")
    except ImportError as exc:
        raise ImportError(
            "the Rust extension pepperpy_core._native is not built; install the "
            "package with `pip install .` on a machine with a Rust toolchain, or set "
            f"{ENVIRONMENT}=python to use the pure-Python backend"
        ) from exc
    return _from("native", native, native, native)


def choice() -> str:
    """The value of PEPPERPY_CORE_BACKEND, normalized; BackendChoiceError if
    it names no backend."""
    value = os.environ.get(ENVIRONMENT, "auto").strip().lower() or "auto"
    if value not in CHOICES:
        raise BackendChoiceError(
            f"{ENVIRONMENT} must be one of {', '.join(CHOICES)}, got {value!r}"
        )
    return value


def _active() -> Backend:
    wanted = choice()
    if wanted == "python":
        return load("python")
    try:
        return load("native")
    except ImportError:
        if wanted == "native":
            raise
        return load("python")


ACTIVE: Final = _active()
BACKEND: Final[Name] = ACTIVE.name


def available() -> list[Backend]:
    """Every backend this process may use, the active one first: under
    ``PEPPERPY_CORE_BACKEND=python`` only the fallback (the extension is
    never imported), else the extension too when it is built."""
    if ACTIVE.name == "python":
        return [ACTIVE]
    return [ACTIVE, load("python")]
