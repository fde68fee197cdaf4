"""Every contract of pepperpy-core as a ``typing.Protocol``: checked
structurally, so any object with the right methods fits, whether or not it
inherits from the library's classes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, Self, TypeVar, overload, runtime_checkable

if TYPE_CHECKING:
    from pepperpy_core.stores import Claim, Invalidation, Stored

K = TypeVar("K")
V = TypeVar("V")
T = TypeVar("T")
D = TypeVar("D")


@runtime_checkable
class Lifecycle(Protocol):
    """Something that can be started and stopped."""

    async def initialize(self) -> None: ...
    async def cleanup(self) -> None: ...


_LIFECYCLE_TYPES: dict[type, bool] = {}


def is_lifecycle(obj: object) -> bool:
    """``isinstance(obj, Lifecycle)``, answered per type from a cache: the
    runtime Protocol check costs microseconds, too much for large graphs."""
    kind = type(obj)
    known = _LIFECYCLE_TYPES.get(kind)
    if known is None:
        known = not isinstance(obj, type) and all(
            callable(getattr(kind, method, None)) for method in ("initialize", "cleanup")
        )
        _LIFECYCLE_TYPES[kind] = known
    return known


@runtime_checkable
class HealthCheckable(Protocol):
    """Something that can say whether it is healthy; it may do I/O."""

    async def health_check(self) -> bool: ...


@runtime_checkable
class ModuleProtocol(Lifecycle, HealthCheckable, Protocol):
    """A full module: lifecycle, health, a name and a version."""

    @property
    def name(self) -> str: ...
    @property
    def version(self) -> str: ...


class ConfigProtocol(Protocol):
    """A configuration that checks itself and round-trips through plain data."""

    def validate(self) -> None: ...
    def to_dict(self) -> dict[str, Any]: ...
    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self: ...


class StateStore(Protocol[T]):
    """Typed state, read and replaced asynchronously."""

    async def get_state(self) -> T: ...
    async def set_state(self, state: T) -> None: ...
    async def update_state(self, updater: Callable[[T], T]) -> T: ...


class CacheProtocol(Protocol[K, V]):
    """A bounded mapping: what both FIFOCache backends provide."""

    @property
    def maxsize(self) -> int: ...
    @overload
    def get(self, key: K, default: None = None, /) -> V | None: ...
    @overload
    def get(self, key: K, default: V | D, /) -> V | D: ...
    def __getitem__(self, key: K, /) -> V: ...
    def set(self, key: K, value: V) -> None: ...
    def __setitem__(self, key: K, value: V, /) -> None: ...
    def __contains__(self, key: object, /) -> bool: ...
    def __len__(self) -> int: ...
    @overload
    def pop(self, key: K) -> V: ...
    @overload
    def pop(self, key: K, default: V | D) -> V | D: ...
    def clear(self) -> None: ...
    def keys(self) -> list[K]: ...
    def values(self) -> list[V]: ...
    def items(self) -> list[tuple[K, V]]: ...
    def get_many(self, keys: Iterable[K]) -> dict[K, V]: ...
    def set_many(self, items: Mapping[K, V] | Iterable[tuple[K, V]]) -> None: ...


class AsyncCacheProtocol(Protocol[K, V]):
    """A cache reached with ``await``: a local cache behind ``LocalCache``, a
    RedisCache, a TieredCache. ``get`` returns ``default`` for a missing key;
    ``ttl`` is in seconds (None: the cache's default, which may be none)."""

    @overload
    async def get(self, key: K, default: None = None, /) -> V | None: ...
    @overload
    async def get(self, key: K, default: V | D, /) -> V | D: ...
    async def set(self, key: K, value: V, *, ttl: float | None = None) -> None: ...
    async def delete(self, key: K) -> bool: ...
    async def get_many(self, keys: Iterable[K]) -> dict[K, V]: ...
    async def set_many(
        self, items: Mapping[K, V] | Iterable[tuple[K, V]], *, ttl: float | None = None
    ) -> None: ...


class RemoteStore(Protocol[V]):
    """A store many processes share, behind a TieredCache (``redis.RedisCache``
    is one): reads with the time each value has left, writes and deletes that
    announce the keys they change to every subscriber (``origin`` names the
    writer, so it can skip its own announcements), a load lock per key, and
    the announcements as a subscription. Every call raises
    CacheUnavailableError when the store cannot be reached in time."""

    #: Seconds a written value lives when a write gives no ``ttl`` (None: for ever).
    ttl: float | None

    async def fetch(self, keys: Sequence[str]) -> dict[str, Stored[V]]:
        """The keys present (and readable), with their values and time left."""
        ...

    async def write(
        self,
        items: Sequence[tuple[str, V]],
        *,
        ttl: float | None = None,
        tags: Sequence[str] = (),
        origin: str,
    ) -> int:
        """Store every pair (all or nothing: a value it cannot store is a
        TypeError before anything is written), tag them, announce them; how
        many subscribers the announcement reached."""
        ...

    async def remove(self, keys: Sequence[str], *, origin: str) -> int:
        """Delete the keys and announce them; how many existed."""
        ...

    async def invalidate_tag(self, tag: str, *, origin: str) -> tuple[str, ...]:
        """Delete every key written with ``tag`` and announce them; those keys."""
        ...

    async def claim(self, key: str, lock_ttl: float) -> Claim[V]:
        """The stored value, or the key's load lock for ``lock_ttl`` seconds,
        or how long another's lock has left, in one round trip."""
        ...

    async def commit(self, key: str, token: str, value: V, *, origin: str) -> None:
        """Store what the lock's owner loaded, release the lock if ``token``
        still holds it, and announce the key, in one round trip."""
        ...

    async def release(self, key: str, token: str, *, origin: str) -> None:
        """Release the lock without a value (the load failed) and announce
        the key, so that waiters try again at once."""
        ...

    async def renew(self, key: str, token: str, lock_ttl: float) -> bool:
        """Extend the lock to ``lock_ttl`` seconds if ``token`` still holds it."""
        ...

    def subscribe(self) -> AbstractAsyncContextManager[AsyncIterator[Invalidation]]:
        """The announcements, from the moment the context is entered: the
        iterator ends or raises CacheUnavailableError when the subscription
        is lost (every announcement in between may be missed)."""
        ...


class CounterProtocol(Protocol):
    """A monotonically increasing count."""

    def inc(self, n: int | None = None) -> None: ...
    @property
    def value(self) -> int: ...


class GaugeProtocol(Protocol):
    """A value that goes up and down."""

    def set(self, value: float) -> None: ...
    def inc(self, amount: float = 1.0) -> None: ...
    def dec(self, amount: float = 1.0) -> None: ...
    @property
    def value(self) -> float: ...


class HistogramProtocol(Protocol):
    """A distribution of durations in seconds."""

    def observe(self, seconds: float) -> None: ...
    @property
    def count(self) -> int: ...
    @property
    def sum(self) -> float: ...
    def quantile(self, q: float) -> float | None: ...


class TimerProtocol(Protocol):
    """A context manager (sync and async) that times one block."""

    def __enter__(self) -> Any: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        /,
    ) -> bool | None: ...
    def __aenter__(self) -> Awaitable[Any]: ...
    def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        /,
    ) -> Awaitable[bool | None]: ...
