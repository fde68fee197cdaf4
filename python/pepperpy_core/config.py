"""ModuleConfig: a module's name, version and dependencies, as a dataclass that
subclasses extend with their own fields.

``validate()`` reports every problem at once (ConfigError, a ValueError).
``to_dict()`` gives JSON-safe data; ``from_dict()`` builds the class it is
called on, rejecting unknown keys, missing keys and wrong types by field name,
and ``from_dict(c.to_dict()) == c``. Field types are checked for str, int,
float, bool, None, list, tuple, dict, unions, Literal and nested dataclasses.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from packaging.requirements import InvalidRequirement, Requirement
from packaging.version import InvalidVersion, Version

from pepperpy_core.errors import ConfigError

_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")


@functools.lru_cache(maxsize=4096)
def _version(text: str) -> Version:
    """``Version(text)``, parsed once per string: an application validates
    every module's config before it starts, and parsing dominates that."""
    return Version(text)


@functools.lru_cache(maxsize=4096)
def _requirement(text: str) -> Requirement:
    """``Requirement(text)``, parsed once per string (see ``_version``)."""
    return Requirement(text)


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def _problem(value: Any, annotation: Any, where: str) -> str | None:
    """Why ``value`` does not fit ``annotation``, or None if it does."""
    if annotation is str and type(value) is str:  # the common case, first
        return None
    if annotation is Any or annotation is object:
        return None
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Union or origin is types.UnionType:
        if any(_problem(value, arg, where) is None for arg in args):
            return None
        return f"{where}: expected {_type_name(annotation)}, got {type(value).__name__}"
    if origin is typing.Literal:
        if value in args and all(type(value) is type(a) for a in args if a == value):
            return None
        return f"{where}: expected one of {list(args)}, got {value!r}"
    if annotation is None or annotation is type(None):
        return None if value is None else f"{where}: expected None, got {type(value).__name__}"
    if annotation is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return None if ok else f"{where}: expected float, got {type(value).__name__}"
    if annotation is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        return None if ok else f"{where}: expected int, got {type(value).__name__}"
    if annotation in (str, bool):
        ok = isinstance(value, annotation)
        return (
            None if ok else f"{where}: expected {annotation.__name__}, got {type(value).__name__}"
        )
    if dataclasses.is_dataclass(annotation) and isinstance(annotation, type):
        if isinstance(value, annotation):
            return None
        return f"{where}: expected {annotation.__name__}, got {type(value).__name__}"
    if origin in (list, tuple, dict) or annotation in (list, tuple, dict):
        container = origin or annotation
        if not isinstance(value, container):
            return f"{where}: expected {container.__name__}, got {type(value).__name__}"
        if container is dict:
            key_t, value_t = args or (Any, Any)
            for k, v in value.items():
                found = _problem(k, key_t, f"{where} key {k!r}") or _problem(
                    v, value_t, f"{where}[{k!r}]"
                )
                if found:
                    return found
            return None
        if container is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                return f"{where}: expected {len(args)} items, got {len(value)}"
            item_types = list(args)
        else:
            item_types = [args[0] if args else Any] * len(value)
        for i, (item, item_t) in enumerate(zip(value, item_types, strict=True)):
            found = _problem(item, item_t, f"{where}[{i}]")
            if found:
                return found
        return None
    if isinstance(annotation, type):
        ok = isinstance(value, annotation)
        return (
            None if ok else f"{where}: expected {annotation.__name__}, got {type(value).__name__}"
        )
    return None


def _plain(value: Any) -> Any:
    """``value`` as JSON-safe data."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _from_plain(value: Any, annotation: Any, where: str, problems: list[str]) -> Any:
    """Rebuild ``value`` (plain data) as ``annotation`` where JSON lost the type:
    tuples from lists, nested dataclasses from dicts."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Union or origin is types.UnionType:
        for arg in args:
            candidate = _from_plain(value, arg, where, [])
            if _problem(candidate, arg, where) is None:
                return candidate
        return value
    if (origin is tuple or annotation is tuple) and isinstance(value, list):
        homogeneous = bool(args) and args[-1] is Ellipsis
        return tuple(
            _from_plain(
                v,
                args[0] if homogeneous else (args[i] if i < len(args) else Any),
                f"{where}[{i}]",
                problems,
            )
            for i, v in enumerate(value)
        )
    if origin is list and isinstance(value, list) and args:
        return [_from_plain(v, args[0], f"{where}[{i}]", problems) for i, v in enumerate(value)]
    if origin is dict and isinstance(value, dict) and len(args) == 2:
        return {k: _from_plain(v, args[1], f"{where}[{k!r}]", problems) for k, v in value.items()}
    if (
        isinstance(annotation, type)
        and issubclass(annotation, ModuleConfig)
        and isinstance(value, Mapping)
    ):
        try:
            return annotation.from_dict(value)
        except ConfigError as exc:
            problems.extend(f"{where}.{p}" for p in exc.problems)
            return value
    return value


@functools.lru_cache(maxsize=4096)
def _base_problems(name: object, version: object, dependencies: tuple[object, ...]) -> list[str]:
    """Problems with the name, version and requirement strings, computed once
    per distinct triple: an application checks every module's config before
    it starts, and parsing dominated that. (Types are checked by the caller.)"""
    found: list[str] = []
    if isinstance(name, str) and not _NAME.fullmatch(name):
        found.append(
            f"name: {name!r} must be letters, digits, '.', '_' or '-', "
            "starting and ending with a letter or digit"
        )
    if isinstance(version, str):
        try:
            _version(version)
        except InvalidVersion:
            found.append(f"version: {version!r} is not a PEP 440 version")
    seen: set[str] = set()
    for i, spec in enumerate(dependencies):
        if not isinstance(spec, str):
            continue
        try:
            req = _requirement(spec)
        except InvalidRequirement as exc:
            found.append(f"dependencies[{i}]: {spec!r} is not a requirement ({exc})")
            continue
        key = req.name.lower()
        if key == str(name).lower():
            found.append(f"dependencies[{i}]: {spec!r}: a module cannot depend on itself")
        if key in seen:
            found.append(f"dependencies[{i}]: {req.name!r} is listed twice")
        seen.add(key)
    return found


@dataclass
class ModuleConfig:
    """A module's name, PEP 440 version and dependencies (requirement strings
    such as ``"cache>=1.0,<2"``). Subclasses add fields of their own."""

    name: str
    version: str = "0.1.0"
    dependencies: list[str] = field(default_factory=list)

    _hints: ClassVar[dict[type, dict[str, Any]]] = {}

    @classmethod
    def _field_types(cls) -> dict[str, Any]:
        hints = ModuleConfig._hints.get(cls)
        if hints is None:
            hints = typing.get_type_hints(cls)
            ModuleConfig._hints[cls] = hints
        return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(cls)}

    def problems(self) -> list[str]:
        """Every problem with this configuration; empty when it is valid."""
        found: list[str] = []
        types_ = self._field_types()
        for field_name, annotation in types_.items():
            problem = _problem(getattr(self, field_name), annotation, field_name)
            if problem:
                found.append(problem)
        dependencies: object = self.dependencies
        deps = tuple(dependencies) if isinstance(dependencies, list | tuple) else ()
        try:
            found.extend(_base_problems(self.name, self.version, deps))
        except TypeError:  # an unhashable value (already reported as a wrong type)
            found.extend(_base_problems.__wrapped__(self.name, self.version, deps))
        for field_name in types_:
            value = getattr(self, field_name)
            if isinstance(value, float) and not math.isfinite(value):
                found.append(f"{field_name}: {value} is not a finite number")
        return found

    def validate(self) -> None:
        """Raise ConfigError listing every problem, or return if there is none."""
        found = self.problems()
        if found:
            raise ConfigError(found, subject=f"{type(self).__name__} {self.name!r}")

    def requirements(self) -> list[Requirement]:
        """``dependencies`` parsed (call validate() first for clear errors)."""
        return [_requirement(spec) for spec in self.dependencies]

    def to_dict(self) -> dict[str, Any]:
        """Every field as JSON-safe data (tuples become lists)."""
        result: dict[str, Any] = _plain(self)
        return result

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Build this class from ``data``; unknown keys, missing keys, wrong
        types and invalid values are all reported in one ConfigError."""
        if not isinstance(data, Mapping):
            raise ConfigError(
                [f"expected a mapping, got {type(data).__name__}"], subject=cls.__name__
            )
        types_ = cls._field_types()
        problems: list[str] = []
        unknown = sorted(str(k) for k in data if k not in types_)
        problems.extend(f"{k}: unknown key" for k in unknown)
        required = [
            f.name
            for f in dataclasses.fields(cls)
            if f.init
            and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
        ]
        problems.extend(f"{k}: missing" for k in required if k not in data)
        values: dict[str, Any] = {}
        for name, annotation in types_.items():
            if name not in data:
                continue
            value = _from_plain(data[name], annotation, name, problems)
            problem = _problem(value, annotation, name)
            if problem:
                problems.append(problem)
            values[name] = value
        if problems:
            raise ConfigError(problems, subject=cls.__name__)
        built = cls(**values)
        built.validate()
        return built
