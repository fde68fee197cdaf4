"""ModuleConfig: validation, to_dict / from_dict, subclasses."""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st

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


# --- one name form, markers, long versions, the JSON round trip ------------------------------


@pytest.mark.parametrize("spelling", ["my-cache", "My.Cache", "MY__CACHE", "my_cache>=1"])
def test_a_module_requiring_itself_in_any_spelling_is_told_so(spelling: str) -> None:
    config = ModuleConfig(name="my_cache", dependencies=[spelling])
    with pytest.raises(ConfigError) as info:
        config.validate()
    assert any("cannot depend on itself" in p for p in info.value.problems)


def test_a_requirement_whose_marker_does_not_hold_is_left_out() -> None:
    config = ModuleConfig(name="a", dependencies=["j>=1; python_version<'3'", "db"])
    config.validate()
    assert [r.name for r in config.requirements()] == ["db"]


def test_an_oversized_version_is_a_config_error() -> None:
    for config in (
        ModuleConfig(name="a", version="1" * 5000),
        ModuleConfig(name="a", dependencies=["b>=" + "1" * 5000]),
    ):
        with pytest.raises(ConfigError, match=r"not a PEP 440 version|not a requirement"):
            config.validate()


def test_a_class_defined_in_a_function_resolves() -> None:
    @dataclass
    class Inner:
        size: int = 1

    @dataclass
    class Local(ModuleConfig, localns=locals()):
        inner: Inner = field(default_factory=Inner)

    config = Local(name="local", inner=Inner(size=3))
    config.validate()
    assert Local.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ConfigError, match=r"inner.size: expected int, got str"):
        Local(name="local", inner=Inner(size="3")).validate()  # type: ignore[arg-type]


def test_a_class_in_a_function_without_its_scope_is_told_how_to_name_it() -> None:
    @dataclass
    class Inner:
        size: int = 1

    @dataclass
    class Local(ModuleConfig):
        inner: Inner = field(default_factory=Inner)

    with pytest.raises(ConfigError, match=r"Local\(ModuleConfig, localns=locals\(\)\)"):
        Local(name="local").validate()
    with pytest.raises(TypeError, match="localns must be a mapping, not list"):

        class Bad(ModuleConfig, localns=[]):  # type: ignore[arg-type]
            pass


def test_an_unsupported_field_type_is_reported() -> None:
    @dataclass
    class Odd(ModuleConfig):
        value: complex = 1j

    with pytest.raises(ConfigError, match="fields of type complex are not supported"):
        Odd(name="odd").validate()


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


@dataclass(frozen=True)
class Point:
    x: int
    y: float = 0.0


@dataclass
class Everything(ModuleConfig):
    text: str = ""
    count: int = 0
    ratio: float = 0.0
    flag: bool = False
    nothing: None = None
    anything: Any = None
    mode: Literal["a", "b"] = "a"
    colour: Colour = Colour.RED
    level: Level = Level.LOW
    items: list[int] = field(default_factory=list)
    pair: tuple[str, int] = ("", 0)
    many: tuple[float, ...] = ()
    tags: set[str] = field(default_factory=set)
    frozen: frozenset[int] = frozenset()
    by_name: dict[str, list[bool]] = field(default_factory=dict)
    by_id: dict[int, str] = field(default_factory=dict)
    by_level: dict[Level, float] = field(default_factory=dict)
    by_flag: dict[bool, int] = field(default_factory=dict)
    maybe: int | None = None
    either: int | str = 0
    point: Point = field(default_factory=lambda: Point(0))
    points: list[Point] = field(default_factory=list)
    nested: ModuleConfig | None = None


finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | finite | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=6,
)
points = st.builds(Point, st.integers(), finite)
everything = st.builds(
    Everything,
    name=st.sampled_from(["e", "every-thing", "e.1"]),
    text=st.text(max_size=8),
    count=st.integers(),
    ratio=finite,
    flag=st.booleans(),
    anything=json_values,
    mode=st.sampled_from(["a", "b"]),
    colour=st.sampled_from(Colour),
    level=st.sampled_from(Level),
    items=st.lists(st.integers(), max_size=4),
    pair=st.tuples(st.text(max_size=4), st.integers()),
    many=st.lists(finite, max_size=4).map(tuple),
    tags=st.sets(st.text(max_size=4), max_size=4),
    frozen=st.frozensets(st.integers(), max_size=4),
    by_name=st.dictionaries(st.text(max_size=4), st.lists(st.booleans(), max_size=3), max_size=3),
    by_id=st.dictionaries(st.integers(), st.text(max_size=4), max_size=3),
    by_level=st.dictionaries(st.sampled_from(Level), finite, max_size=2),
    by_flag=st.dictionaries(st.booleans(), st.integers(), max_size=2),
    maybe=st.none() | st.integers(),
    either=st.integers() | st.text(max_size=4),
    point=points,
    points=st.lists(points, max_size=3),
    nested=st.none() | st.builds(ModuleConfig, name=st.sampled_from(["n", "n-2"])),
)


@given(config=everything)
def test_every_accepted_field_type_round_trips_through_json(config: Everything) -> None:
    config.validate()
    data = config.to_dict()
    text = json.dumps(data, allow_nan=False)  # JSON data, nothing else
    again = Everything.from_dict(json.loads(text))
    assert again == config
    assert type(again.tags) is set
    assert type(again.frozen) is frozenset
    assert type(again.pair) is tuple
    assert type(again.colour) is Colour
    assert all(type(k) is int for k in again.by_id)
    assert all(type(k) is Level for k in again.by_level)
    assert type(again.point) is Point
