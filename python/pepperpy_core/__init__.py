"""pepperpy-core: typed, protocol-first building blocks for asyncio applications."""

from __future__ import annotations

from pepperpy_core._backend import BACKEND
from pepperpy_core.cache import CacheStats, FIFOCache
from pepperpy_core.runtime import Application, HealthReport, ModuleHealth

__version__ = "0.1.0"

__all__ = [
    "BACKEND",
    "Application",
    "CacheStats",
    "FIFOCache",
    "HealthReport",
    "ModuleHealth",
    "__version__",
]
