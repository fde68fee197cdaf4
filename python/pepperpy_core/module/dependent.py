"""DependentModule: a module that depends on others.

Its dependencies are the modules it holds in its public attributes (the
spec's ``APIModule(cache)`` keeps ``self.cache``), directly or in lists,
tuples or sets, plus any added with ``depends_on(...)``. Attributes whose
names start with ``_`` are private and not looked at. Version constraints come
from ``config.dependencies`` (requirement strings such as ``"cache>=1.0"``)
and are checked by the Application before anything starts.

``health_check()`` is the module's own health (by default: READY); how its
dependencies fare is judged once, by the Application, which reports a module
whose dependency is not healthy as degraded.
"""

from __future__ import annotations

from typing import Any

from pepperpy_core.module.base import BaseModule
from pepperpy_core.protocols import Lifecycle, is_lifecycle


class DependentModule(BaseModule):
    """A module with dependencies, found in its attributes and declared with
    ``depends_on``."""

    _pepperpy_capability = "DependentModule"

    def __init__(self, config: Any = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self._declared: list[Lifecycle] = []

    def depends_on(self, *modules: Lifecycle) -> None:
        """Declare dependencies that are not held in attributes."""
        for module in modules:
            if not is_lifecycle(module):
                raise TypeError(f"{type(module).__name__} has no async initialize() and cleanup()")
            if module is self:
                raise ValueError(f"{self.name} cannot depend on itself")
        declared = self._declared
        declared.extend(m for m in modules if not any(m is d for d in declared))

    def dependencies(self) -> list[Lifecycle]:
        """Every module this one depends on, each once: those held in public
        attributes (directly or in a list, tuple or set), in attribute order,
        then those declared with ``depends_on``."""
        found: list[Lifecycle] = []
        seen = {id(self)}
        candidates: list[object] = []
        # vars() gives this module a real attribute dict (slower reads in
        # CPython 3.11); the attributes are what a DependentModule is made of.
        for name, value in vars(self).items():
            if name[:1] == "_":
                continue
            if isinstance(value, list | tuple | set | frozenset):
                candidates.extend(value)
            else:
                candidates.append(value)
        candidates.extend(self._declared)
        for value in candidates:
            if id(value) not in seen and is_lifecycle(value):
                seen.add(id(value))
                found.append(value)  # type: ignore[arg-type]
        return found
