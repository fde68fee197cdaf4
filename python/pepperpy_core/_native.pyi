"""Stubs for the Rust extension ``pepperpy_core._native``."""

from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from os import PathLike
from pathlib import Path
from types import TracebackType
from typing import Any, Generic, Literal, ParamSpec, Self, TypeVar, final, overload

from typing_extensions import disjoint_base

_K = TypeVar("_K")
_V = TypeVar("_V")
_T = TypeVar("_T")
_P = ParamSpec("_P")
_R = TypeVar("_R")

__all__ = [
    "DEFAULT_BUCKETS",
    "QUANTILE_RELATIVE_ERROR",
    "CacheStats",
    "Counter",
    "FIFOCache",
    "Gauge",
    "Histogram",
    "RegistryCore",
    "S3FIFOCache",
    "SharedStore",
    "Timer",
    "_after_fork",
]

DEFAULT_BUCKETS: list[float]
QUANTILE_RELATIVE_ERROR: float

@final
class CacheStats:
    """Counters of a cache since it was made."""

    def __new__(
        cls, *, hits: int, misses: int, inserts: int, evictions: int, expirations: int = 0
    ) -> CacheStats: ...
    @property
    def hits(self) -> int: ...
    @property
    def misses(self) -> int: ...
    @property
    def inserts(self) -> int: ...
    @property
    def evictions(self) -> int: ...
    @property
    def expirations(self) -> int: ...
    def __eq__(self, other: object, /) -> bool: ...
    def __hash__(self) -> int: ...

class _BoundedCache(Generic[_K, _V]):
    """What FIFOCache and S3FIFOCache both offer (a stub-only base: at run
    time each class defines its own methods)."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Self: ...
    def __init__(
        self,
        maxsize: int,
        *,
        ttl: float | None = None,
        tti: float | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None: ...
    @property
    def maxsize(self) -> int: ...
    @overload
    def get(self, key: _K, default: None = None, /) -> _V | None: ...
    @overload
    def get(self, key: _K, default: _V | _T, /) -> _V | _T: ...
    def __getitem__(self, key: _K, /) -> _V: ...
    def set(self, key: _K, value: _V, *, ttl: float | None = None) -> None: ...
    def __setitem__(self, key: _K, value: _V, /) -> None: ...
    def __delitem__(self, key: _K, /) -> None: ...
    def __contains__(self, key: object, /) -> bool: ...
    def __len__(self) -> int: ...
    def __iter__(self) -> Iterator[_K]: ...
    @overload
    def pop(self, key: _K) -> _V: ...
    @overload
    def pop(self, key: _K, default: _V | _T) -> _V | _T: ...
    def clear(self) -> None: ...
    def keys(self) -> list[_K]: ...
    def values(self) -> list[_V]: ...
    def items(self) -> list[tuple[_K, _V]]: ...
    def stats(self) -> CacheStats: ...
    def get_many(self, keys: Iterable[_K]) -> dict[_K, _V]: ...
    def set_many(
        self, items: Mapping[_K, _V] | Iterable[tuple[_K, _V]], *, ttl: float | None = None
    ) -> None: ...
    def __reduce__(self) -> tuple[Any, ...]: ...
    def __setstate__(self, state: tuple[Any, ...], /) -> None: ...
    def __class_getitem__(cls, key: Any) -> Any: ...

@disjoint_base
class FIFOCache(_BoundedCache[_K, _V]):
    """Bounded FIFO mapping; every operation is O(1) and thread-safe.

    ``ttl``/``tti``/``clock``: entries expire ``ttl`` seconds after a write
    (``set(..., ttl=)`` per entry) or ``tti`` after their last read or write;
    an expired entry is a miss. Costs nothing while no entry can expire.

    Subclasses may add methods and take their own ``__init__`` arguments
    (calling ``super().__init__(maxsize)``); the cache's own operations never
    call a subclass's overrides (as a dict's do not).
    """

@disjoint_base
class S3FIFOCache(_BoundedCache[_K, _V]):
    """Bounded mapping evicting by S3-FIFO; O(1) (eviction amortized), thread-safe.

    A read or an overwrite counts as a use; ``keys()`` lists the small
    queue's keys oldest first, then the main queue's. Expiry as FIFOCache's.

    Subclasses may add methods and take their own ``__init__`` arguments
    (calling ``super().__init__(maxsize)``); the cache's own operations never
    call a subclass's overrides (as a dict's do not).
    """

@final
class Counter:
    """A monotonically increasing count; increments are atomic."""

    def __new__(cls) -> Counter: ...
    def inc(self, n: int | None = None) -> None: ...
    @property
    def value(self) -> int: ...

@final
class Histogram:
    """Distribution of durations in seconds; quantile error at most 1/128."""

    def __new__(cls, buckets: Iterable[float] | None = None) -> Histogram: ...
    def observe(self, seconds: float) -> None: ...
    @property
    def count(self) -> int: ...
    @property
    def sum(self) -> float: ...
    @property
    def min(self) -> float | None: ...
    @property
    def max(self) -> float | None: ...
    @property
    def bounds(self) -> list[float]: ...
    def quantile(self, q: float) -> float | None: ...
    def buckets(self) -> list[tuple[float, int]]: ...
    def time(self) -> Timer: ...

@final
class Timer:
    """Times one block at a time into a Histogram; decorates functions."""

    def __new__(cls, histogram: Histogram) -> Timer: ...
    @property
    def histogram(self) -> Histogram: ...
    def __enter__(self) -> Timer: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        /,
    ) -> Literal[False]: ...
    def __aenter__(self) -> Awaitable[Timer]: ...
    def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        /,
    ) -> Awaitable[Literal[False]]: ...
    def __call__(self, func: Callable[_P, _R]) -> Callable[_P, _R]: ...

@disjoint_base
class RegistryCore:
    """The lookup half of a MetricsRegistry: hits cost one dict lookup; any
    other call goes to the subclass's ``_lookup(kind, *args, **kwargs)``."""

    def __new__(cls, *_args: Any, **_kwargs: Any) -> RegistryCore: ...
    def counter(
        self, name: str, labels: Mapping[str, str] | None = None, *, description: str = ""
    ) -> Counter: ...
    def gauge(
        self,
        name: str,
        labels: Mapping[str, str] | None = None,
        *,
        description: str = "",
        mode: Literal["sum", "max", "min", "latest", "pid"] | None = None,
    ) -> Gauge: ...
    def histogram(
        self,
        name: str,
        labels: Mapping[str, str] | None = None,
        *,
        description: str = "",
        buckets: Iterable[float] | None = None,
    ) -> Histogram: ...
    def timer(
        self,
        name: str,
        labels: Mapping[str, str] | None = None,
        *,
        description: str = "",
        buckets: Iterable[float] | None = None,
    ) -> Timer: ...

@final
class Gauge:
    """A value that goes up and down; updates are atomic."""

    def __new__(cls) -> Gauge: ...
    def set(self, value: float) -> None: ...
    def inc(self, amount: float = 1.0) -> None: ...
    def dec(self, amount: float = 1.0) -> None: ...
    @property
    def value(self) -> float: ...

@final
class SharedStore:
    """One process's access to a shared metrics directory (see
    docs/multiprocess.md)."""

    def __new__(
        cls, directory: str | PathLike[str], previous_run: str = "discard"
    ) -> SharedStore: ...
    @property
    def directory(self) -> Path: ...
    def notices(self) -> list[str]: ...
    def counter(
        self, namespace: str, name: str, labels: Sequence[tuple[str, str]], description: str
    ) -> Counter: ...
    def gauge(
        self,
        namespace: str,
        name: str,
        labels: Sequence[tuple[str, str]],
        description: str,
        mode: str,
    ) -> Gauge: ...
    def histogram(
        self,
        namespace: str,
        name: str,
        labels: Sequence[tuple[str, str]],
        description: str,
        bounds: Sequence[float],
    ) -> Histogram: ...
    def collect(
        self, namespace: str
    ) -> list[
        tuple[
            str,
            str,
            str,
            tuple[str, ...],
            tuple[float, ...],
            str,
            dict[tuple[str, ...], Counter | Gauge | Histogram],
        ]
    ]: ...

def _after_fork() -> None: ...
