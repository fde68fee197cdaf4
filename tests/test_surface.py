"""One surface: the extension, the pure-Python fallback and the stub
(``_native.pyi``) offer the same classes, methods and signatures.

Public methods are compared by parameter names, kinds and which have
defaults (the first parameter, ``self``, left out); special methods, which
the interpreter calls positionally, by how many arguments they take.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path
from typing import Any

import pytest

from pepperpy_core import _backend

STUB = Path(_backend.__file__).with_name("_native.pyi")
CLASSES = [
    "FIFOCache",
    "S3FIFOCache",
    "CacheStats",
    "Counter",
    "Gauge",
    "Histogram",
    "Timer",
    "RegistryCore",
]
#: Special methods that are part of the contract.
DUNDERS = {
    "__getitem__",
    "__setitem__",
    "__delitem__",
    "__contains__",
    "__len__",
    "__iter__",
    "__reduce__",
    "__enter__",
    "__exit__",
    "__aenter__",
    "__aexit__",
    "__call__",
    "__class_getitem__",
}
#: Private names the registry mixin relies on, so part of the contract too.
CORE_CONTRACT = {
    "_counters",
    "_gauges",
    "_histograms",
    "_new_counter",
    "_new_gauge",
    "_new_histogram",
}

Param = tuple[str, str, bool]  # name, kind, has a default


def _surface(cls: type) -> set[str]:
    return {n for n in dir(cls) if not n.startswith("_") or n in DUNDERS or n in CORE_CONTRACT}


def _runtime_params(function: Any) -> list[Param]:
    params = list(inspect.signature(function).parameters.values())
    if params and params[0].name in {"self", "cls"}:
        params = params[1:]
    return [(p.name, p.kind.name, p.default is not inspect.Parameter.empty) for p in params]


def _arity(params: list[Param]) -> int:
    return sum(1 for _, kind, _ in params if kind.startswith("POSITIONAL"))


def _native() -> _backend.Backend:
    # Not marked `backend`: the fallback pass (which must not import the
    # extension) leaves this file out; the first pass always has both.
    return _backend.load("native")


# --- the stub, read with ast --------------------------------------------------


def _stub_params(node: ast.FunctionDef) -> list[Param]:
    args = node.args
    out: list[Param] = []
    positional = [*args.posonlyargs, *args.args]
    first_default = len(positional) - len(args.defaults)
    for i, arg in enumerate(positional):
        kind = "POSITIONAL_ONLY" if i < len(args.posonlyargs) else "POSITIONAL_OR_KEYWORD"
        out.append((arg.arg, kind, i >= first_default))
    if args.vararg:
        out.append((args.vararg.arg, "VAR_POSITIONAL", False))
    for arg, default in zip(args.kwonlyargs, args.kw_defaults, strict=True):
        out.append((arg.arg, "KEYWORD_ONLY", default is not None))
    if args.kwarg:
        out.append((args.kwarg.arg, "VAR_KEYWORD", False))
    return out[1:]  # without self / cls


def _merge_overloads(variants: list[list[Param]]) -> list[Param]:
    """One signature for overloads: every parameter, optional when some
    overload leaves it out or gives it a default."""
    names: list[str] = []
    seen: dict[str, tuple[str, bool]] = {}
    for variant in variants:
        for name, kind, default in variant:
            if name not in seen:
                names.append(name)
                seen[name] = (kind, default)
            else:
                seen[name] = (kind, seen[name][1] or default)
    return [
        (n, seen[n][0], seen[n][1] or any(n not in {p[0] for p in v} for v in variants))
        for n in names
    ]


def _stub_classes() -> dict[str, dict[str, list[Param] | None]]:
    """class -> member -> signature (None for a property)."""
    tree = ast.parse(STUB.read_text(encoding="utf-8"))
    out: dict[str, dict[str, list[Param] | None]] = {}
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        members: dict[str, list[list[Param]] | None] = {}
        for item in node.body:
            if not isinstance(item, ast.FunctionDef):
                continue
            decorators = {ast.unparse(d) for d in item.decorator_list}
            if "property" in decorators:
                members[item.name] = None
                continue
            variants = members.setdefault(item.name, [])
            assert variants is not None
            variants.append(_stub_params(item))
        out[node.name] = {
            name: None if variants is None else _merge_overloads(variants)
            for name, variants in members.items()
        }
    return out


# --- the tests ------------------------------------------------------------------


@pytest.mark.parametrize("name", CLASSES)
def test_both_backends_offer_the_same_members(name: str) -> None:
    native, python = getattr(_native(), name), getattr(_backend.load("python"), name)
    assert _surface(native) == _surface(python)


@pytest.mark.parametrize("name", CLASSES)
def test_both_backends_take_the_same_arguments(name: str) -> None:
    native, python = getattr(_native(), name), getattr(_backend.load("python"), name)
    for member in sorted(_surface(native) & _surface(python)):
        a, b = inspect.getattr_static(native, member), inspect.getattr_static(python, member)
        if isinstance(b, property) or inspect.isdatadescriptor(a):
            assert inspect.isdatadescriptor(a), member
            assert inspect.isdatadescriptor(b), member
            continue
        if member in {"__call__", "__class_getitem__"}:
            continue  # tp_call and the generic alias hook report *args either way
        got, want = (
            _runtime_params(getattr(native, member)),
            _runtime_params(getattr(python, member)),
        )
        if member.startswith("__"):
            assert _arity(got) == _arity(want), (name, member, got, want)
        else:
            assert got == want, (name, member)


def test_constructors_take_the_same_arguments() -> None:
    native, python = _native(), _backend.load("python")
    for name in CLASSES:
        got = _runtime_params(getattr(native, name))
        want = _runtime_params(getattr(python, name))
        if name == "RegistryCore":  # the native one accepts and ignores a subclass's arguments
            assert want == []
            continue
        assert [(n, k, d) for n, k, d in got] == want, name


@pytest.mark.parametrize("name", CLASSES)
def test_the_stub_says_what_the_extension_does(name: str) -> None:
    stub = _stub_classes()[name]
    native = getattr(_native(), name)
    assert set(stub) - {"__new__", "__eq__", "__hash__", "__await__"} <= set(dir(native)) | {
        "__class_getitem__"
    }
    for member, params in stub.items():
        # __init__ is tp_init, which reports *args whatever it takes (the
        # behaviour tests call it).
        if member in {"__new__", "__init__", "__eq__", "__hash__", "__class_getitem__", "__call__"}:
            continue
        runtime = inspect.getattr_static(native, member)
        if params is None:
            assert inspect.isdatadescriptor(runtime), (name, member)
            continue
        got = _runtime_params(getattr(native, member))
        if member.startswith("__"):
            assert _arity(got) == _arity(params), (name, member, got, params)
        else:
            assert got == params, (name, member, got, params)


def test_module_constants_agree() -> None:
    native, python = _native(), _backend.load("python")
    assert native.DEFAULT_BUCKETS == python.DEFAULT_BUCKETS
    assert native.QUANTILE_RELATIVE_ERROR == python.QUANTILE_RELATIVE_ERROR
