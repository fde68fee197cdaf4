"""ResourceModule: resources registered with a module are released in reverse
order on cleanup.

- ``add_resource(resource, close=None)``: an object with ``aclose()`` or
  ``close()`` (sync or async), or any object with an explicit ``close``
  callable; refused at once (TypeError) when there is nothing to call.
- ``enter_resource(cm)``: enters a sync or async context manager now and
  exits it on cleanup; returns what it entered.
- ``add_callback(fn, *args)``: a plain (or async) callback run on cleanup.
- Cleanup releases everything in reverse order of registration; when some
  releases fail the rest still run, and the failures are raised together
  afterwards as ResourceReleaseError (an ExceptionGroup). A cleanup that is
  cancelled keeps what it has not released yet, the resource it was
  releasing included, so a later cleanup releases it.
- ``use(resource)`` (a context manager) counts how often and how many times
  at once each resource is used; ``usage()`` reports it. Counts follow the
  object, not its address: a new object that reuses a dead one's address
  starts from zero.
- ``cache`` is a FIFOCache of ``cache_size`` entries (1000 by default),
  cleared on cleanup; subclasses may replace it (the spec's CacheModule puts
  a dict there). A module that is also a CachedModule has one ``cache``,
  whatever the order of the bases.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from dataclasses import dataclass
from typing import Any, TypeVar

from pepperpy_core.errors import ResourceReleaseError
from pepperpy_core.module._shared_cache import make_cache, want_cache
from pepperpy_core.module.base import BaseModule

R = TypeVar("R")


@dataclass
class Usage:
    """How a resource was used: times in all, and right now."""

    uses: int = 0
    active: int = 0


@dataclass
class _Entry:
    resource: object
    release: Callable[[], object]
    label: str


def _label(resource: object) -> str:
    return f"{type(resource).__name__}@{id(resource):x}"


def _forget(entries: dict[int, tuple[object, Usage]], key: int, _ref: object) -> None:
    entries.pop(key, None)


class _UsageTable:
    """Usage per object, by identity. An entry keeps its object's address
    from being reused while it exists: a weak reference whose callback drops
    the entry as the object dies (before its memory can be reused), or, for
    objects that cannot be weakly referenced, a strong one until cleanup."""

    __slots__ = ("_entries",)

    def __init__(self) -> None:
        self._entries: dict[int, tuple[object, Usage]] = {}

    def of(self, resource: object) -> Usage:
        key = id(resource)
        found = self._entries.get(key)
        if found is not None:
            return found[1]
        usage = Usage()
        try:
            holder: object = weakref.ref(resource, functools.partial(_forget, self._entries, key))
        except TypeError:  # (an int, a str, a tuple...)
            holder = resource
        self._entries[key] = (holder, usage)
        return usage

    def get(self, resource: object) -> Usage | None:
        found = self._entries.get(id(resource))
        return None if found is None else found[1]

    def clear(self) -> None:
        self._entries.clear()


class ResourceModule(BaseModule):
    """A module that owns resources and releases them on cleanup."""

    _pepperpy_capability = "ResourceModule"

    def __init__(self, config: Any = None, *, cache_size: int | None = None, **kwargs: Any) -> None:
        want_cache(self, "cache_size", cache_size)  # before: see _shared_cache
        super().__init__(config, **kwargs)
        make_cache(self)
        self.cache: Any
        self._resources: list[_Entry] = []
        self._usage = _UsageTable()

    def add_resource(self, resource: R, close: Callable[[], object] | None = None) -> R:
        """Release ``resource`` on cleanup with ``close``, else its
        ``aclose()`` or ``close()``; returns ``resource``."""
        release: Callable[[], object]
        if close is not None:
            if not callable(close):
                raise TypeError(f"close must be callable, not {type(close).__name__}")
            release = close
        elif callable(getattr(resource, "aclose", None)):
            release = resource.aclose  # type: ignore[attr-defined]
        elif callable(getattr(resource, "close", None)):
            release = resource.close  # type: ignore[attr-defined]
        else:
            raise TypeError(
                f"{type(resource).__name__} has no close() or aclose(); pass close= explicitly"
            )
        self._resources.append(_Entry(resource, release, _label(resource)))
        return resource

    async def enter_resource(
        self, cm: AbstractAsyncContextManager[R] | AbstractContextManager[R]
    ) -> R:
        """Enter ``cm`` now and exit it on cleanup; returns what it entered."""
        if isinstance(cm, AbstractAsyncContextManager):
            entered = await cm.__aenter__()
            async_cm = cm

            def exit_() -> object:
                return async_cm.__aexit__(None, None, None)

        elif isinstance(cm, AbstractContextManager):
            entered = cm.__enter__()
            sync_cm = cm

            def exit_() -> object:
                return sync_cm.__exit__(None, None, None)

        else:
            raise TypeError(f"{type(cm).__name__} is not a context manager")
        self._resources.append(_Entry(cm, exit_, _label(cm)))
        return entered

    def add_callback(self, fn: Callable[..., object], /, *args: Any) -> None:
        """Call ``fn(*args)`` (awaiting it if it is async) on cleanup."""
        if not callable(fn):
            raise TypeError(f"{type(fn).__name__} is not callable")
        self._resources.append(
            _Entry(fn, lambda: fn(*args), getattr(fn, "__qualname__", _label(fn)))
        )

    @property
    def resources(self) -> list[object]:
        """What is registered, oldest first."""
        return [entry.resource for entry in self._resources]

    @contextlib.contextmanager
    def use(self, resource: R) -> Iterator[R]:
        """Count a use of ``resource`` for the length of the block."""
        usage = self._usage.of(resource)
        usage.uses += 1
        usage.active += 1
        try:
            yield resource
        finally:
            usage.active -= 1

    @contextlib.asynccontextmanager
    async def ause(self, resource: R) -> AsyncIterator[R]:
        """``use()`` for ``async with``."""
        with self.use(resource):
            yield resource

    def usage(self, resource: object) -> Usage:
        """How ``resource`` has been used (zeros if never)."""
        usage = self._usage.get(resource) or Usage()
        return Usage(usage.uses, usage.active)

    async def cleanup(self) -> None:
        """Release every resource in reverse order; raise the failures together."""
        entries = self._resources
        failures: list[Exception] = []
        while entries:
            entry = entries.pop()
            try:
                outcome = entry.release()
                if inspect.isawaitable(outcome):
                    await outcome
            except asyncio.CancelledError:
                entries.append(entry)  # not released: kept for the next cleanup
                raise
            except Exception as error:
                error.add_note(f"while releasing {entry.label}")
                self.logger.error("releasing %s failed: %r", entry.label, error)
                failures.append(error)
        self._usage.clear()
        clear: Callable[[], object] | None = getattr(self.cache, "clear", None)
        if callable(clear):
            clear()
        await super().cleanup()  # capability modules compose as mixins
        if failures:
            raise ResourceReleaseError(
                f"{self.name}: {len(failures)} resource(s) failed to release", failures
            )
