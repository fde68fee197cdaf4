"""Shared fixtures: the backend parametrization and Hypothesis profiles.

Every test that takes the ``backend`` fixture runs once per implementation
(the Rust extension and the pure-Python fallback), with a
``pepperpy_core._backend.Backend`` whose classes it uses. Tests that reach the
active backend only through the package (``pepperpy_core.cache``, modules
that hold a FIFOCache or a registry) carry the ``backend`` marker.

``tests/run.sh`` runs everything once on the default backend, then, with
``PEPPERPY_CORE_BACKEND=python``, only what depends on the backend: the
extension is never imported then, as on a machine where it is missing.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

from pepperpy_core import _backend
from pepperpy_core._backend import Backend

settings.register_profile("default", deadline=None)
# CI runs the same examples every time (derandomize): a red run is a real
# regression, never a roll of the dice; what exploration finds is kept as an
# explicit example. ``fuzz`` explores, for a developer's machine.
settings.register_profile(
    "ci",
    deadline=None,
    max_examples=300,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "fuzz", deadline=None, max_examples=5000, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

# Subprocesses started by the tests (the command line, the examples, workers)
# must work as they would for a user: with Python's own buffering, whatever
# this machine sets (a PYTHONUNBUFFERED here once hid output that never
# reached a pipe).
os.environ.pop("PYTHONUNBUFFERED", None)

BACKENDS: list[Backend] = _backend.available()
PYTHON_ONLY = _backend.choice() == "python"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "backend: depends on the hot paths' backend (run again on the fallback)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not PYTHON_ONLY:
        return
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        uses = "backend" in getattr(item, "fixturenames", ())
        (keep if uses or item.get_closest_marker("backend") else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(params=BACKENDS, ids=[b.name for b in BACKENDS])
def backend(request: pytest.FixtureRequest) -> Backend:
    """Each backend in turn."""
    chosen: Backend = request.param
    return chosen
