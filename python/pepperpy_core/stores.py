"""What a remote store and a TieredCache hand each other.

A TieredCache keeps local copies of a store shared by many processes (see
``tier``); the store is anything with the methods of
``protocols.RemoteStore`` (``redis.RedisCache`` is the first). These are the
plain values that cross that seam.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

V = TypeVar("V")

__all__ = ["Claim", "Invalidation", "Stored"]


@dataclass(frozen=True, slots=True)
class Stored(Generic[V]):
    """A value read from a store, with the seconds it has left to live
    there (None: it does not expire)."""

    value: V
    ttl: float | None


@dataclass(frozen=True, slots=True)
class Claim(Generic[V]):
    """One attempt at loading a key, in one round trip: the value someone
    already stored (``found``), or the key's load lock, taken for us
    (``token``), or how many seconds the lock another holds has left
    (``wait``)."""

    found: Stored[V] | None = None
    token: str | None = None
    wait: float = 0.0


@dataclass(frozen=True, slots=True)
class Invalidation:
    """Keys that changed in the store, announced by the writer ``origin``."""

    origin: str
    keys: tuple[str, ...]
