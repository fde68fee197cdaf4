"""Shared fixtures: the backend parametrization and Hypothesis profiles.

Every suite that takes the ``backend`` fixture runs once per implementation:
the Rust extension and the pure-Python fallback. With
``PEPPERPY_CORE_BACKEND=python`` the extension is never imported, as on a
machine where it is missing.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("default", deadline=None)
settings.register_profile(
    "ci", deadline=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

PYTHON_ONLY = os.environ.get("PEPPERPY_CORE_BACKEND", "").strip().lower() == "python"
BACKENDS = ["python"] if PYTHON_ONLY else ["native", "python"]
_CACHE = {"native": "pepperpy_core._native", "python": "pepperpy_core._fallback.cache"}
_METRICS = {"native": "pepperpy_core._native", "python": "pepperpy_core._fallback.metrics"}


def implementation(name: str) -> ModuleType:
    """The module that holds backend ``name``'s FIFOCache and CacheStats."""
    return importlib.import_module(_CACHE[name])


def metrics_implementation(name: str) -> ModuleType:
    """The module that holds backend ``name``'s Counter, Histogram and Timer."""
    return importlib.import_module(_METRICS[name])


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> ModuleType:
    """Each backend's cache module in turn."""
    return implementation(request.param)


@pytest.fixture(params=BACKENDS)
def metrics_backend(request: pytest.FixtureRequest) -> ModuleType:
    """Each backend's metrics module in turn."""
    return metrics_implementation(request.param)
