"""ModuleConfig: a module's name, version and dependencies, as a dataclass that
subclasses extend with their own fields.

``validate()`` reports every problem at once (ConfigError, a ValueError).
``to_dict()`` gives JSON data (sets and tuples as lists, Enums as their
values, mapping keys as text), and ``from_dict()`` builds the class it is
called on from such data, rejecting unknown keys, missing keys and wrong
types by field name, so ``from_dict(json.loads(json.dumps(c.to_dict()))) == c``.

Field types a ModuleConfig accepts: str, int, float, bool, None, Any (JSON
data), Literal, Enum subclasses, list, tuple (``tuple[T, ...]`` or fixed),
set and frozenset of those, dict keyed by str, int, float, bool or an Enum,
unions of those, and dataclasses whose fields are of those types. Anything
else is reported by ``validate()``.

Names are compared in one normalized form (``packaging``'s
``canonicalize_name``: ``my_cache``, ``My.Cache`` and ``my-cache`` are one
name), here and in the Application alike.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import functools
import json
import math
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from packaging.markers import UndefinedComparison, UndefinedEnvironmentName
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from pepperpy_core.errors import ConfigError

_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")
_KEY_TYPES: typing.Final = (str, int, float, bool)


def canonical(name: str) -> str:
    """The one form names are compared in (``packaging.utils.canonicalize_name``)."""
    lowered = name.lower()
    if "_" not in lowered and "." not in lowered and "--" not in lowered:
        return lowered  # already canonical: the regex is not needed (most names)
    return str(canonicalize_name(name))


@functools.lru_cache(maxsize=4096)
def _version(text: str) -> Version:
    """``Version(text)``, parsed once per string: an application validates
    every module's config before it starts, and parsing dominates that."""
    return Version(text)


@functools.lru_cache(maxsize=4096)
def _requirement(text: str) -> Requirement:
    """``Requirement(text)``, parsed once per string (see ``_version``)."""
    return Requirement(text)


def _applies(requirement: Requirement) -> bool:
    """Whether a requirement's marker (``; python_version < '3'``) holds here."""
    return requirement.marker is None or requirement.marker.evaluate()


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def _is_json(value: Any) -> bool:
    """Whether ``value`` is JSON data that comes back equal from a round trip."""
    try:
        return bool(json.loads(json.dumps(value, allow_nan=False)) == value)
    except (TypeError, ValueError, RecursionError):
        return False


# --- checking a value against its annotation -----------------------------------------


@functools.lru_cache(maxsize=1024)
def _cached_shape(annotation: Any) -> tuple[Any, tuple[Any, ...]]:
    return typing.get_origin(annotation), typing.get_args(annotation)


def _shape(annotation: Any) -> tuple[Any, tuple[Any, ...]]:
    """(origin, args) of an annotation, computed once per annotation: an
    application validates every module's config before it starts."""
    try:
        return _cached_shape(annotation)
    except TypeError:  # an unhashable annotation
        return typing.get_origin(annotation), typing.get_args(annotation)


def _problem(value: Any, annotation: Any, where: str) -> str | None:
    """Why ``value`` does not fit ``annotation``, or None if it does."""
    if annotation is str and type(value) is str:  # the common case, first
        return None
    if annotation is Any or annotation is object:
        return None if _is_json(value) else f"{where}: {type(value).__name__} is not JSON data"
    origin, args = _shape(annotation)
    if origin is list and args == (str,) and type(value) is list:  # dependencies, and the like
        for i, item in enumerate(value):
            if type(item) is not str:
                return f"{where}[{i}]: expected str, got {type(item).__name__}"
        return None
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
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        if isinstance(value, annotation):
            return None
        return f"{where}: expected {annotation.__name__}, got {type(value).__name__}"
    if dataclasses.is_dataclass(annotation) and isinstance(annotation, type):
        if not isinstance(value, annotation):
            return f"{where}: expected {annotation.__name__}, got {type(value).__name__}"
        hints = _hints(annotation)
        for f in dataclasses.fields(annotation):
            found = _problem(getattr(value, f.name), hints.get(f.name, Any), f"{where}.{f.name}")
            if found:
                return found
        return None
    container = origin or annotation
    if container in (list, tuple, set, frozenset, dict):
        if not isinstance(value, container):
            return f"{where}: expected {container.__name__}, got {type(value).__name__}"
        if container is dict:
            key_t, value_t = args or (Any, Any)
            if key_t is not Any and not _key_type_ok(key_t):
                return f"{where}: keys of type {_type_name(key_t)} are not supported"
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
    return f"{where}: fields of type {_type_name(annotation)} are not supported"


def _key_type_ok(annotation: Any) -> bool:
    return annotation in _KEY_TYPES or (
        isinstance(annotation, type) and issubclass(annotation, enum.Enum)
    )


# --- to and from JSON data ---------------------------------------------------------


def _key_text(key: Any) -> str:
    if isinstance(key, enum.Enum):
        key = key.value
    if isinstance(key, bool):
        return "true" if key else "false"
    return repr(key) if isinstance(key, float) else str(key)


def _order(value: Any) -> tuple[str, Any]:
    """A sort key for set items of any JSON kind: by type, then by value."""
    return (type(value).__name__, value if isinstance(value, int | float | str) else repr(value))


def _plain(value: Any) -> Any:
    """``value`` as JSON data."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return _plain(value.value)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted((_plain(v) for v in value), key=_order)
    if isinstance(value, dict):
        return {_key_text(k): _plain(v) for k, v in value.items()}
    return value


def _key_from_text(text: Any, annotation: Any) -> Any:
    """A mapping key read back from JSON text, as ``annotation`` wants it."""
    if not isinstance(text, str) or annotation in (Any, str):
        return text
    try:
        if annotation is bool:
            return {"true": True, "false": False}.get(text, text)
        if annotation in (int, float):
            return annotation(text)
        if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
            for member in annotation:
                if _key_text(member) == text:
                    return member
    except ValueError:
        pass
    return text  # reported as the wrong type by the caller's check


def _from_plain(
    value: Any, annotation: Any, where: str, problems: list[str], localns: dict[str, Any]
) -> Any:
    """Rebuild ``value`` (JSON data) as ``annotation`` where JSON lost the
    type: tuples and sets from lists, Enums from values, keys from text,
    dataclasses from dicts."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Union or origin is types.UnionType:
        for arg in args:
            candidate = _from_plain(value, arg, where, [], localns)
            if _problem(candidate, arg, where) is None:
                return candidate
        return value
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        if isinstance(value, annotation):
            return value
        try:
            return annotation(value)
        except (ValueError, TypeError):
            return value
    if dataclasses.is_dataclass(annotation) and isinstance(annotation, type):
        if isinstance(value, Mapping):
            if issubclass(annotation, ModuleConfig):
                try:
                    return annotation.from_dict(value)
                except ConfigError as exc:
                    problems.extend(f"{where}.{p}" for p in exc.problems)
                    return value
            return _build(annotation, value, where, problems, localns)
        return value
    container = origin or annotation
    if container in (tuple, set, frozenset) and isinstance(value, list):
        if container is tuple and args and args[-1] is not Ellipsis:
            types_ = [args[i] if i < len(args) else Any for i in range(len(value))]
        else:
            types_ = [args[0] if args else Any] * len(value)
        items = [
            _from_plain(v, t, f"{where}[{i}]", problems, localns)
            for i, (v, t) in enumerate(zip(value, types_, strict=True))
        ]
        try:
            return container(items)
        except TypeError:  # unhashable items for a set: reported by the check
            return value
    if container is list and isinstance(value, list) and args:
        return [
            _from_plain(v, args[0], f"{where}[{i}]", problems, localns) for i, v in enumerate(value)
        ]
    if container is dict and isinstance(value, dict):
        key_t, value_t = args or (Any, Any)
        return {
            _key_from_text(k, key_t): _from_plain(v, value_t, f"{where}[{k!r}]", problems, localns)
            for k, v in value.items()
        }
    return value


def _build(
    cls: type[Any],
    data: Mapping[Any, Any],
    where: str,
    problems: list[str],
    localns: dict[str, Any],
) -> Any:
    """A dataclass from JSON data, or ``data`` itself when it has problems
    (added to ``problems``, each prefixed with ``where``)."""
    hints = _hints(cls, localns)
    prefix = f"{where}." if where else ""
    found: list[str] = []
    found.extend(
        f"{prefix}{k}: unknown key" for k in sorted(str(k) for k in data if k not in hints)
    )
    fields = [f for f in dataclasses.fields(cls) if f.init]
    required = [
        f.name
        for f in fields
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    found.extend(f"{prefix}{k}: missing" for k in required if k not in data)
    values: dict[str, Any] = {}
    for f in fields:
        if f.name not in data:
            continue
        annotation = hints.get(f.name, Any)
        value = _from_plain(data[f.name], annotation, f"{prefix}{f.name}", found, localns)
        problem = _problem(value, annotation, f"{prefix}{f.name}")
        if problem:
            found.append(problem)
        values[f.name] = value
    if found:
        problems.extend(found)
        return data
    return cls(**values)


def _hints(cls: type[Any], localns: dict[str, Any] | None = None) -> dict[str, Any]:
    """The resolved annotations of a dataclass, names defined in the function
    that defined it included; an annotation that cannot be resolved is
    reported as a ConfigError naming the field."""
    cached: dict[str, Any] | None = cls.__dict__.get("_pepperpy_hints")
    if cached is not None:
        return cached
    scope = {**(localns or {}), **cls.__dict__.get("_pepperpy_localns", {})}
    try:
        hints = typing.get_type_hints(cls, localns=scope)
    except NameError as exc:
        raise ConfigError(
            [
                f"{cls.__name__}: cannot resolve the annotation {exc.name!r} of a field "
                f"(a class defined in a function names its scope: `class "
                f"{cls.__name__}(ModuleConfig, localns=locals())`)"
            ],
            subject=f"class {cls.__name__}",
        ) from exc
    with contextlib.suppress(AttributeError, TypeError):  # else resolved each time
        cls._pepperpy_hints = hints
    return hints


# --- name, version and requirements -----------------------------------------------------


@functools.lru_cache(maxsize=16384)
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
        except ValueError as exc:  # a number too long to read (more than 4,300 digits)
            found.append(f"version: {version[:40]!r}... is not a PEP 440 version ({exc})")
    own = canonical(name) if isinstance(name, str) else None
    seen: set[str] = set()
    for i, spec in enumerate(dependencies):
        if not isinstance(spec, str):
            continue
        shown = spec if len(spec) <= 80 else spec[:77] + "..."
        try:
            req = _requirement(spec)
            req.specifier.contains("0", prereleases=True)  # parses every version in it
            _applies(req)
        except InvalidRequirement as exc:
            found.append(f"dependencies[{i}]: {shown!r} is not a requirement ({exc})")
            continue
        except (UndefinedComparison, UndefinedEnvironmentName) as exc:
            found.append(f"dependencies[{i}]: {shown!r}: its marker cannot be evaluated ({exc})")
            continue
        except ValueError as exc:
            found.append(f"dependencies[{i}]: {shown!r} is not a requirement ({exc})")
            continue
        key = canonical(req.name)
        if key == own:
            found.append(f"dependencies[{i}]: {shown!r}: a module cannot depend on itself")
        if key in seen:
            found.append(f"dependencies[{i}]: {req.name!r} is listed twice")
        seen.add(key)
    return found


@dataclass
class ModuleConfig:
    """A module's name, PEP 440 version and dependencies (requirement strings
    such as ``"cache>=1.0,<2"``, with markers if needed). Subclasses add fields
    of their own (see this module's doc for the types it accepts)."""

    name: str
    version: str = "0.1.0"
    dependencies: list[str] = field(default_factory=list)

    _pepperpy_localns: ClassVar[dict[str, Any]] = {}
    _pepperpy_fields: ClassVar[tuple[tuple[str, Any], ...]]

    def __init_subclass__(cls, *, localns: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        """``localns``: where the annotations' names live besides the class's
        module (``class Local(ModuleConfig, localns=locals())`` inside a
        function whose classes its fields name)."""
        super().__init_subclass__(**kwargs)
        if localns is not None:
            if not isinstance(localns, Mapping):
                raise TypeError(f"localns must be a mapping, not {type(localns).__name__}")
            cls._pepperpy_localns = dict(localns)

    @classmethod
    def _field_types(cls) -> tuple[tuple[str, Any], ...]:
        """(name, annotation) of every field, worked out once per class."""
        cached: tuple[tuple[str, Any], ...] | None = cls.__dict__.get("_pepperpy_fields")
        if cached is None:
            hints = _hints(cls)
            cached = tuple((f.name, hints.get(f.name, Any)) for f in dataclasses.fields(cls))
            cls._pepperpy_fields = cached
        return cached

    def problems(self) -> list[str]:
        """Every problem with this configuration; empty when it is valid."""
        found: list[str] = []
        try:
            types_ = self._field_types()
        except ConfigError as exc:
            return list(exc.problems)
        for field_name, annotation in types_:
            value = getattr(self, field_name)
            if annotation is str and type(value) is str:
                continue  # most fields, checked without a call
            problem = _problem(value, annotation, field_name)
            if problem:
                found.append(problem)
            elif isinstance(value, float) and not math.isfinite(value):
                found.append(f"{field_name}: {value} is not a finite number")
        dependencies: object = self.dependencies
        deps = tuple(dependencies) if isinstance(dependencies, list | tuple) else ()
        if not deps:  # nothing costly to remember: no cache entry per module name
            found.extend(_base_problems.__wrapped__(self.name, self.version, deps))
            return found
        try:
            found.extend(_base_problems(self.name, self.version, deps))
        except TypeError:  # an unhashable value (already reported as a wrong type)
            found.extend(_base_problems.__wrapped__(self.name, self.version, deps))
        return found

    def validate(self) -> None:
        """Raise ConfigError listing every problem, or return if there is none."""
        found = self.problems()
        if found:
            raise ConfigError(found, subject=f"{type(self).__name__} {self.name!r}")

    def requirements(self) -> list[Requirement]:
        """The requirements that apply here (markers evaluated), parsed; call
        validate() first for clear errors."""
        if not self.dependencies:
            return []
        parsed = (_requirement(spec) for spec in self.dependencies)
        return [req for req in parsed if _applies(req)]

    def to_dict(self) -> dict[str, Any]:
        """Every field as JSON data (see this module's doc)."""
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
        problems: list[str] = []
        built = _build(cls, data, "", problems, cls._pepperpy_localns)
        if problems:
            raise ConfigError(problems, subject=cls.__name__)
        config: Self = built
        config.validate()
        return config
