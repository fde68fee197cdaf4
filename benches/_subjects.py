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


class PlainDict(dict[Any, Any]):
    """An unbounded dict: the floor for every operation."""

    def __init__(self, maxsize: int) -> None:
        super().__init__()


def subjects() -> dict[str, Callable[[int], Any]]:
    """Name -> factory taking maxsize, for what is installed here."""
    found: dict[str, Callable[[int], Any]] = {b.name: b.FIFOCache for b in _backend.available()}
    if cachebox is not None:
        found["cachebox"] = cachebox.FIFOCache
    if cachetools is not None:
        found["cachetools"] = cachetools.FIFOCache
    found["dict"] = PlainDict
    found["spec-dict-fifo"] = SpecDictFIFO
    return found
