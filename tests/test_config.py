"""ModuleConfig: validation, to_dict / from_dict, subclasses."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest

from pepperpy_core.errors import ConfigError, PepperpyError
from pepperpy_core.module import ModuleConfig


@dataclass
class DBConfig(ModuleConfig):
    host: str = "localhost"
    port: int = 5432
    tags: tuple[str, ...] = ()
    pool: dict[str, int] = field(default_factory=dict)
    mode: Literal["ro", "rw"] = "rw"
    timeout: float | None = None


@dataclass
class Required(ModuleConfig):
    token: str = ""
    limit: int = field(kw_only=True, default=1)


def test_the_spec_example() -> None:
    config = ModuleConfig(name="custom", version="1.0.0", dependencies=[])
    config.validate()
    assert config.to_dict() == {"name": "custom", "version": "1.0.0", "dependencies": []}


def test_valid_config_with_requirements() -> None:
    config = ModuleConfig(name="api", version="2.0.0rc1", dependencies=["cache>=1.0,<2", "db"])
    config.validate()
    assert [r.name for r in config.requirements()] == ["cache", "db"]
    assert str(config.requirements()[0].specifier) == "<2,>=1.0"


def test_validate_reports_every_problem_at_once() -> None:
    config = ModuleConfig(
        name="bad name!",
        version="one.two",
        dependencies=["cache>=", "bad name!", "db", "DB", 5],  # type: ignore[list-item]
    )
    with pytest.raises(ConfigError) as info:
        config.validate()
    problems = info.value.problems
    assert any(p.startswith("name:") for p in problems)
    assert any(p.startswith("version: 'one.two'") for p in problems)
    assert any(p.startswith("dependencies[0]: 'cache>='") for p in problems)
    assert any("listed twice" in p for p in problems)
    assert any(p.startswith("dependencies[4]") and "expected str" in p for p in problems)
    assert len(problems) >= 5
    message = str(info.value)
    assert all(p in message for p in problems)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, PepperpyError)


def test_wrong_field_types_are_named() -> None:
    config = DBConfig(name="db", port="5432", mode="admin")  # type: ignore[arg-type]
    with pytest.raises(ConfigError) as info:
        config.validate()
    assert "port: expected int, got str" in info.value.problems
    assert any(p.startswith("mode: expected one of ['ro', 'rw']") for p in info.value.problems)


def test_self_dependency_and_nan() -> None:
    config = DBConfig(name="db", dependencies=["db>=1"], timeout=float("nan"))
    with pytest.raises(ConfigError) as info:
        config.validate()
    assert any("cannot depend on itself" in p for p in info.value.problems)
    assert any(p.startswith("timeout:") and "finite" in p for p in info.value.problems)


def test_round_trip_base_and_subclass() -> None:
    base = ModuleConfig(name="cache", version="1.2.3", dependencies=["db>=1"])
    assert ModuleConfig.from_dict(base.to_dict()) == base
    db = DBConfig(
        name="db",
        host="db.internal",
        port=6543,
        tags=("primary", "eu"),
        pool={"min": 1, "max": 10},
        mode="ro",
        timeout=2.5,
    )
    data = db.to_dict()
    assert json.loads(json.dumps(data)) == data  # JSON-safe
    assert data["tags"] == ["primary", "eu"]
    again = DBConfig.from_dict(json.loads(json.dumps(data)))
    assert type(again) is DBConfig
    assert again == db


def test_from_dict_rejects_unknown_missing_and_wrong_types_together() -> None:
    with pytest.raises(ConfigError) as info:
        DBConfig.from_dict({"host": 1, "port": True, "colour": "red", "tags": "x"})
    problems = info.value.problems
    assert "colour: unknown key" in problems
    assert "name: missing" in problems
    assert "host: expected str, got int" in problems
    assert "port: expected int, got bool" in problems
    assert "tags: expected tuple, got str" in problems


def test_from_dict_checks_values_too() -> None:
    with pytest.raises(ConfigError, match="not a PEP 440 version"):
        ModuleConfig.from_dict({"name": "x", "version": "latest"})


@pytest.mark.parametrize("data", [None, [("name", "x")], "name=x"])
def test_from_dict_needs_a_mapping(data: Any) -> None:
    with pytest.raises(ConfigError, match="expected a mapping"):
        ModuleConfig.from_dict(data)


def test_from_dict_required_subclass_fields() -> None:
    assert Required.from_dict({"name": "r"}) == Required(name="r")
    with pytest.raises(ConfigError, match="limit: expected int"):
        Required.from_dict({"name": "r", "limit": "1"})


def test_defaults_are_filled_in() -> None:
    db = DBConfig.from_dict({"name": "db"})
    assert (db.host, db.port, db.version, db.dependencies) == ("localhost", 5432, "0.1.0", [])


def test_unhashable_field_values_are_reported_not_crashing() -> None:
    config = ModuleConfig(name=["db"], dependencies=[{"x": 1}])  # type: ignore[arg-type]
    with pytest.raises(ConfigError) as info:
        config.validate()
    assert "name: expected str, got list" in info.value.problems
    assert any(p.startswith("dependencies[0]: expected str") for p in info.value.problems)
