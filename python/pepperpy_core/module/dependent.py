"""DependentModule: a module that depends on others.

Its dependencies are the modules it holds in its public attributes (the
spec's ``APIModule(cache)`` keeps ``self.cache``), directly or in lists,
tuples or sets, plus any added with ``depends_on(...)``. Attributes whose
names start with ``_`` are private and not looked at. Version constraints come
from ``config.dependencies`` (requirement strings such as ``"cache>=1.0"``)
and are checked by the Application before anything starts.

``health_check()`` is the module's own check (``own_health_check()``, by
default: READY) and every dependency's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from pepperpy_core.module.base import BaseModule
from pepperpy_core.protocols import Lifecycle, is_lifecycle


class DependentModule(BaseModule):
    """A module with dependencies, found in its attributes and declared with
    ``depends_on``."""

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        self._declared: list[Lifecycle] = []

    def depends_on(self, *modules: Lifecycle) -> None:
        """Declare dependencies that are not held in attributes."""
        for module in modules:
            if not is_lifecycle(module):
                raise TypeError(f"{type(module).__name__} has no async initialize() and cleanup()")
            if module is self:
                raise ValueError(f"{self.name} cannot depend on itself")
        declared = self.__dict__.setdefault("_declared", [])
        declared.extend(m for m in modules if not any(m is d for d in declared))

    def dependencies(self) -> list[Lifecycle]:
        """Every module this one depends on, each once: those held in public
        attributes (directly or in a list, tuple or set), in attribute order,
        then those declared with ``depends_on``."""
        found: list[Lifecycle] = []
        seen = {id(self)}

        def add(value: object) -> None:
            if id(value) not in seen and is_lifecycle(value):
                seen.add(id(value))
                found.append(value)  # type: ignore[arg-type]

        for name, value in vars(self).items():
            if name.startswith("_"):
                continue
            if isinstance(value, list | tuple | set | frozenset):
                for item in value:
                    add(item)
            else:
                add(value)
        for module in self.__dict__.get("_declared", ()):
            add(module)
        return found

    async def own_health_check(self) -> bool:
        """This module's own health, without its dependencies: by default,
        whether it is READY. Override this for checks that do I/O."""
        return await BaseModule.health_check(self)

    async def health_check(self) -> bool:
        """Healthy when this module is and every dependency is."""
        checks: Iterable[Any] = [
            dep.health_check() for dep in self.dependencies() if hasattr(dep, "health_check")
        ]
        results = await asyncio.gather(self.own_health_check(), *checks, return_exceptions=True)
        return all(result is True for result in results)
