"""Modules: BaseModule and Module, their config and states, and the
capability modules of the spec."""

from __future__ import annotations

from pepperpy_core.config import ModuleConfig
from pepperpy_core.module.base import BaseModule, Listener, Module, ModuleState
from pepperpy_core.module.cached import CachedModule, LoadStats
from pepperpy_core.module.dependent import DependentModule
from pepperpy_core.module.metrics import MetricsModule
from pepperpy_core.module.resource import ResourceModule, Usage
from pepperpy_core.module.retry import (
    RetryModule,
    RetryPolicy,
    RetryStats,
    no_retry_waits,
    retry_call,
    retrying,
)
from pepperpy_core.module.state import StateChange, StateModule, Subscription

__all__ = [
    "BaseModule",
    "CachedModule",
    "DependentModule",
    "Listener",
    "LoadStats",
    "MetricsModule",
    "Module",
    "ModuleConfig",
    "ModuleState",
    "ResourceModule",
    "RetryModule",
    "RetryPolicy",
    "RetryStats",
    "StateChange",
    "StateModule",
    "Subscription",
    "Usage",
    "no_retry_waits",
    "retry_call",
    "retrying",
]
