"""The caches compared by the benchmarks, each behind the same small adapter:
``set(key, value)`` through ``__setitem__`` and ``get`` through ``.get``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pepperpy_core import _backend
from pepperpy_core._bench import SpecDictFIFO

try:
    import cachebox
except ImportError:
    cachebox = None

try:
    import cachetools
except ImportError:
    cachetools = None

try:
    import moka_py
except ImportError:
    moka_py = None

try:
    import theine
except ImportError:
    theine = None

try:
    import lru
except ImportError:
    lru = None


class _Moka:
    """moka-py behind ``[]=``; ``get`` is moka's own method (no Python layer).
    moka-py has no ``[]`` or ``in``; its writes pay this adapter's call."""

    __slots__ = ("_cache", "get")

    def __init__(self, maxsize: int) -> None:
        self._cache = moka_py.Moka(maxsize)
        self.get = self._cache.get

    def __setitem__(self, key: Any, value: Any) -> None:
        self._cache.set(key, value)

    def __len__(self) -> int:
        self._cache.run_pending_tasks()
        return int(self._cache.count())


class _Theine:
    """theine 2 behind ``[]=``; ``get`` is theine's own (it returns a pair)."""

    __slots__ = ("_cache", "get")

    def __init__(self, maxsize: int) -> None:
        self._cache = theine.Cache(maxsize)
        self.get = self._cache.get

    def __setitem__(self, key: Any, value: Any) -> None:
        self._cache.set(key, value)

    def __len__(self) -> int:
        return len(self._cache)  # theine 2.x counts after applying its write buffer


def plain_dict(maxsize: int) -> dict[Any, Any]:
    """An unbounded, exact dict (a subclass would lose CPython's dict
    specializations): the floor for every operation."""
    return {}


#: Subjects without ``[]`` and ``in`` (left out of those groups).
NO_SUBSCRIPT = frozenset({"moka-py", "theine"})


def s3_subjects() -> dict[str, Callable[[int], Any]]:
    """S3FIFOCache of each backend, by name (``native-s3fifo``, ``python-s3fifo``)."""
    return {f"{b.name}-s3fifo": b.S3FIFOCache for b in _backend.available()}


def subjects() -> dict[str, Callable[[int], Any]]:
    """Name -> factory taking maxsize, for what is installed here."""
    found: dict[str, Callable[[int], Any]] = {b.name: b.FIFOCache for b in _backend.available()}
    if cachebox is not None:
        found["cachebox"] = cachebox.FIFOCache
    if cachetools is not None:
        found["cachetools"] = cachetools.FIFOCache
    if lru is not None:
        found["lru-dict"] = lru.LRU
    if moka_py is not None:
        found["moka-py"] = _Moka
    if theine is not None:
        found["theine"] = _Theine
    found["dict"] = plain_dict
    found["spec-dict-fifo"] = SpecDictFIFO
    return found
