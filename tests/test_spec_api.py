"""The spec's API Reference: every method exists, with that signature."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from pepperpy_core.module import BaseModule, ModuleConfig, StateModule

REFERENCE = [
    (BaseModule, "initialize", ["self"], True),
    (BaseModule, "cleanup", ["self"], True),
    (BaseModule, "health_check", ["self"], True),
    (ModuleConfig, "validate", ["self"], False),
    (ModuleConfig, "to_dict", ["self"], False),
    (StateModule, "get_state", ["self"], True),
    (StateModule, "set_state", ["self", "state"], True),
    (StateModule, "update_state", ["self", "updater"], True),
]


@pytest.mark.parametrize(("cls", "name", "params", "is_async"), REFERENCE)
def test_reference_method(cls: type, name: str, params: list[str], is_async: bool) -> None:
    method = getattr(cls, name)
    assert list(inspect.signature(method).parameters) == params
    assert inspect.iscoroutinefunction(method) is is_async


def test_from_dict_is_a_classmethod_taking_data() -> None:
    raw: Any = inspect.getattr_static(ModuleConfig, "from_dict")
    assert isinstance(raw, classmethod)
    assert list(inspect.signature(ModuleConfig.from_dict).parameters) == ["data"]


def test_health_check_returns_a_bool() -> None:
    import asyncio

    assert asyncio.run(BaseModule().health_check()) is False


def test_state_module_is_generic() -> None:
    assert StateModule[int] is not StateModule
    assert StateModule[int]().state_version == 0
