"""The module graph: discovery, validation, names and order.

Everything here happens before anything starts. Modules are found from the
roots through ``dependencies()`` (any object may offer it; a DependentModule
returns the modules it holds and those declared with ``depends_on``) and
through the requirement strings of a ModuleConfig. Refused, naming what is
wrong: an object that is not a lifecycle, an ``initialize``/``cleanup`` that
is not ``async def``, a module held in a public attribute of another module
that does not make it a dependency (it would never start), two modules with
one (normalized) name, a requirement naming no module, a version that does
not satisfy a requirement, a cycle.
"""

from __future__ import annotations

import gc
import inspect
from collections.abc import Iterable, Iterator
from typing import Any

from pepperpy_core.config import ModuleConfig, _version, canonical
from pepperpy_core.errors import (
    CircularDependencyError,
    DuplicateModuleError,
    MissingDependencyError,
    VersionConflictError,
)
from pepperpy_core.module.base import ModuleState
from pepperpy_core.module.dependent import DependentModule
from pepperpy_core.protocols import is_lifecycle

#: type -> problem with its initialize/cleanup ("" when none); checked once per type.
_CHECKED: dict[type, str] = {}


class Node:
    """One module in the graph, with what the runtime knows of it."""

    __slots__ = (
        "began",
        "dependents",
        "deps",
        "index",
        "key",
        "mark",
        "module",
        "name",
        "pending",
        "prior",
        "run",
        "started",
        "state",
        "task",
        "timer",
        "why",
    )

    def __init__(self, module: Any, name: str, index: int) -> None:
        self.module = module
        self.name = name
        self.key = canonical(name)
        self.index = index  # position in discovery order
        self.mark = 0  # while ordering: 1 on the current path, 2 done
        self.deps: list[Node] = []
        self.dependents: list[Node] = []
        self.state = ModuleState.CREATED  # as the runtime last set it
        self.began = False  # its call in the current phase began to run
        self.prior = ModuleState.CREATED  # its state before the current phase's call
        # The scheduler's bookkeeping for the phase running now (kept here
        # rather than in dicts keyed by id(): a large graph pays per lookup).
        self.run: object = None  # the phase run this node takes part in
        self.pending = 0  # nodes it still waits for in that run
        self.task: Any = None  # its call's task while in flight
        self.started = 0.0
        self.timer: Any = None
        self.why = ""  # "timeout" or "ours" when the scheduler cancelled its call

    def current_state(self) -> ModuleState:
        """The module's own state when it keeps one (a BaseModule: it may be
        shared with another application that stopped it), else the runtime's."""
        state = getattr(self.module, "state", None)
        return state if isinstance(state, ModuleState) else self.state

    def __repr__(self) -> str:
        return f"<Node {self.name} {self.state.value}>"


def name_of(module: Any) -> str:
    """A module's name: its ``name`` when that is a non-empty str, else its class's."""
    name = getattr(module, "name", None)
    return name if isinstance(name, str) and name else type(module).__name__


def _async_problem(module: Any) -> str:
    kind = type(module)
    known = _CHECKED.get(kind)
    if known is None:
        bad = [
            phase
            for phase in ("initialize", "cleanup")
            if not inspect.iscoroutinefunction(getattr(module, phase, None))
        ]
        known = _CHECKED[kind] = (
            " and ".join(f"{phase}()" for phase in bad) + " must be async def" if bad else ""
        )
    return known


def _link(node: Node, dep: Node) -> None:
    if dep not in node.deps:  # Node compares by identity
        node.deps.append(dep)
        dep.dependents.append(node)


def discover(roots: Iterable[Any]) -> list[Node]:
    """Every module reachable from ``roots``, linked to the modules it holds
    (``dependencies()``), in discovery order."""
    nodes: dict[int, Node] = {}
    order: list[Node] = []
    found: list[list[Any]] = []  # each node's dependencies, as order has them
    pending = list(roots)
    pending.reverse()
    while pending:
        module = pending.pop()
        if id(module) in nodes:
            continue
        node = Node(module, name_of(module), len(order))
        nodes[id(module)] = node
        order.append(node)
        problem = _async_problem(module)
        if problem:
            raise TypeError(f"module {node.name!r} ({type(module).__name__}): {problem}")
        find = getattr(module, "dependencies", None)
        deps = find() if callable(find) else []
        if type(deps) is not list:
            deps = list(deps)
        if getattr(find, "__func__", None) is not _DISCOVERING:
            # (DependentModule's own returns only lifecycles: checked there)
            for dep in deps:
                if not is_lifecycle(dep):
                    raise TypeError(
                        f"{node.name} depends on {type(dep).__name__}, which has no "
                        "async initialize() and cleanup()"
                    )
        found.append(deps)
        pending.extend(reversed(deps))
    for node, deps in zip(order, found, strict=True):
        for dep in deps:
            _link(node, nodes[id(dep)])
    _check_held(order, nodes)
    return order


_CONTAINERS = (list, tuple, set, frozenset)
#: The dependencies() that makes every module held publicly a dependency.
_DISCOVERING = DependentModule.dependencies


def _held_modules(module: Any) -> Iterator[object]:
    """The lifecycles ``module`` refers to: its attributes' values, and the
    items of those that are lists, tuples or sets. Read through the
    collector's traversal, which (unlike ``vars()``) leaves CPython's compact
    attribute storage as it is, so the module's attribute reads stay fast."""
    for value in gc.get_referents(module):
        values = value.values() if type(value) is dict else (value,)  # a dict: made already
        for item in values:
            if isinstance(item, _CONTAINERS):
                yield from (i for i in item if is_lifecycle(i))
            elif is_lifecycle(item):
                yield item


def _public_names(module: Any, held: object) -> list[str]:
    """The public attributes of ``module`` that hold ``held`` (directly or in a container)."""
    attributes = dict(vars(module)) if hasattr(module, "__dict__") else {}
    for kind in type(module).__mro__:
        for slot in kind.__dict__.get("__slots__", ()):
            if slot not in attributes and hasattr(module, slot):
                attributes[slot] = getattr(module, slot)
    return [
        name
        for name, value in attributes.items()
        if name[:1] != "_"
        and (value is held or (isinstance(value, _CONTAINERS) and any(v is held for v in value)))
    ]


def _check_held(nodes: list[Node], by_id: dict[int, Node]) -> None:
    """Refuse a module that another holds in a public attribute without it
    being part of the graph: it would never start while its holder runs."""
    for node in nodes:
        if getattr(type(node.module), "dependencies", None) is _DISCOVERING:
            continue  # what it holds publicly is a dependency already
        for value in _held_modules(node.module):
            if id(value) in by_id:
                continue
            names = _public_names(node.module, value)
            if not names:  # private: the holder's own business (it may run it itself)
                continue
            held = name_of(value)
            raise MissingDependencyError(
                f"module {node.name!r} holds module {held!r} in its attribute "
                f"{names[0]!r}, but {held!r} is not part of the application, so it would "
                f"never start: make {type(node.module).__name__} a DependentModule (or "
                f"call depends_on) so that {held!r} starts first, or pass {held!r} to "
                "Application() too"
            )


def _check_names_and_requirements(nodes: list[Node]) -> None:
    by_key: dict[str, Node] = {}
    for node in nodes:
        other = by_key.setdefault(node.key, node)
        if other is not node:
            raise DuplicateModuleError(
                f"two modules are named {node.name!r}: {other.module!r} and {node.module!r}"
            )
    for node in nodes:
        config = getattr(node.module, "config", None)
        if not isinstance(config, ModuleConfig):
            continue
        config.validate()
        for requirement in config.requirements():
            target = by_key.get(canonical(requirement.name))
            if target is None:
                raise MissingDependencyError(
                    f"{node.name} requires {requirement}, but no module is named "
                    f"{requirement.name!r}"
                )
            version = str(getattr(target.module, "version", "0.0.0"))
            try:
                satisfied = requirement.specifier.contains(_version(version), prereleases=True)
            except ValueError:  # not a PEP 440 version at all
                satisfied = False
            if not satisfied:
                raise VersionConflictError(node.name, str(requirement), target.name, version)
            _link(node, target)


def _topological(nodes: list[Node]) -> list[Node]:
    """Dependencies first, in discovery order otherwise; a cycle is an error
    naming it."""
    order: list[Node] = []
    for root in nodes:
        if root.mark == 2:
            continue
        path: list[Node] = []
        stack: list[tuple[Node, int]] = [(root, 0)]
        while stack:
            node, index = stack.pop()
            if index == 0:
                node.mark = 1
                path.append(node)
            deps = node.deps
            while index < len(deps):  # the next dependency not done yet
                dep = deps[index]
                index += 1
                seen = dep.mark
                if seen == 1:
                    start = next(i for i, n in enumerate(path) if n is dep)
                    raise CircularDependencyError([n.name for n in path[start:]] + [dep.name])
                if seen == 0:
                    stack.append((node, index))
                    stack.append((dep, 0))
                    break
            else:
                node.mark = 2
                path.pop()
                order.append(node)
    return order


def plan(roots: Iterable[Any]) -> list[Node]:
    """The validated graph of ``roots``, dependencies first."""
    nodes = discover(roots)
    _check_names_and_requirements(nodes)
    return _topological(nodes)
