"""The application runtime: the module graph (``graph``), one scheduler for
start, stop and rollback (``scheduler``), health (``health``) and the
Application that ties them together (``app``)."""

from __future__ import annotations

from pepperpy_core.errors import ShutdownError, StartupError
from pepperpy_core.runtime.app import Application, AppListener
from pepperpy_core.runtime.health import HealthReport, ModuleHealth, Status

__all__ = [
    "AppListener",
    "Application",
    "HealthReport",
    "ModuleHealth",
    "ShutdownError",
    "StartupError",
    "Status",
]
