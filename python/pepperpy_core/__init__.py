"""pepperpy-core: typed, protocol-first building blocks for asyncio applications.

The names below are imported on first use, so that ``import pepperpy_core``
(and the command line) works before the backend is chosen; a bad
``PEPPERPY_CORE_BACKEND`` is reported when the first of them is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "BACKEND",
    "Application",
    "CacheStats",
    "FIFOCache",
    "HealthReport",
    "ModuleHealth",
    "S3FIFOCache",
    "__version__",
]

if TYPE_CHECKING:
    from pepperpy_core._backend import BACKEND
    from pepperpy_core.cache import CacheStats, FIFOCache, S3FIFOCache
    from pepperpy_core.runtime import Application, HealthReport, ModuleHealth

_WHERE = {
    "BACKEND": "pepperpy_core._backend",
    "CacheStats": "pepperpy_core.cache",
    "FIFOCache": "pepperpy_core.cache",
    "S3FIFOCache": "pepperpy_core.cache",
    "Application": "pepperpy_core.runtime",
    "HealthReport": "pepperpy_core.runtime",
    "ModuleHealth": "pepperpy_core.runtime",
}


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'pepperpy_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(where), name)
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])
