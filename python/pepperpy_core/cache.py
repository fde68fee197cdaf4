"""FIFOCache: the bounded FIFO mapping, from the active backend.

``FIFOCache[K, V](maxsize)`` evicts the oldest inserted key when a new key
arrives at ``maxsize`` entries; overwriting keeps a key's position and reads
never reorder. Both backends behave the same; see ``_fallback/cache.py`` for
the documented contract of each method.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pepperpy_core._backend import ACTIVE

if TYPE_CHECKING:
    from pepperpy_core._fallback.cache import CacheStats, FIFOCache
else:
    CacheStats = ACTIVE.CacheStats
    FIFOCache = ACTIVE.FIFOCache

__all__ = ["CacheStats", "FIFOCache"]
