"""Modules: BaseModule and Module, their config and states."""

from __future__ import annotations

from pepperpy_core.config import ModuleConfig
from pepperpy_core.module.base import BaseModule, Listener, Module, ModuleState

__all__ = ["BaseModule", "Listener", "Module", "ModuleConfig", "ModuleState"]
