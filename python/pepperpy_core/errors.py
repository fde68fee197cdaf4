"""The exception hierarchy: every error pepperpy-core raises on purpose
derives from PepperpyError, and from the builtin it refines where one fits.
Exceptions raised by a module's own code are never wrapped: they reach the
caller as they were raised."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from signal import Signals


class PepperpyError(Exception):
    """Base of every error raised by pepperpy-core itself."""


class ConfigError(PepperpyError, ValueError):
    """Raised by ``ModuleConfig.validate()`` and ``ModuleConfig.from_dict()``
    when a configuration is invalid; ``problems`` lists every problem found."""

    def __init__(self, problems: Iterable[str], *, subject: str = "configuration") -> None:
        self.problems: tuple[str, ...] = tuple(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid {subject} ({len(self.problems)} problem(s)):\n{lines}")


class LifecycleError(PepperpyError, RuntimeError):
    """Raised when a module is used against its lifecycle: initialized while
    it is being cleaned up, or waited on by a caller whose own initialization
    was cancelled."""


class StartInterrupted(LifecycleError):
    """Raised by ``Application.start()`` when a stop, a signal or
    ``request_stop()`` cancelled the start; the modules it began were
    cleaned up before it is raised."""


class ModuleSetupError(PepperpyError, TypeError):
    """Raised when a module with capabilities (StateModule, RetryModule, ...)
    is constructed by an ``__init__`` that never called ``super().__init__()``,
    so the capabilities' state was never set up; the message names the fix."""


class StateNotSetError(PepperpyError, LookupError):
    """Raised by ``StateModule.get_state()`` before any state was set (and no
    initial state was given)."""


class RetryDeadlineError(PepperpyError, TimeoutError):
    """Raised when a retried call runs past its overall deadline; the running
    attempt was cancelled. ``attempts`` counts the attempts started and the
    last attempt's error, if any, is the ``__cause__``."""

    def __init__(self, message: str, attempts: int) -> None:
        self.attempts = attempts
        super().__init__(message)


class ResourceReleaseError(PepperpyError, ExceptionGroup[Exception]):
    """Raised by ``ResourceModule.cleanup()`` after every resource was
    released, when some releases failed; holds each failure."""


class BackendChoiceError(PepperpyError, ImportError):
    """Raised on first use of the package when ``PEPPERPY_CORE_BACKEND``
    names no backend (``auto``, ``native`` and ``python`` do)."""


class PhaseTimeout(PepperpyError, TimeoutError):
    """A module's ``initialize()`` or ``cleanup()`` ran past the
    application's ``start_timeout`` or ``stop_timeout`` and was cancelled
    (the cause of a StartupError, or one of a ShutdownError's exceptions)."""


class PhaseCancelled(PepperpyError, RuntimeError):
    """A module's ``initialize()`` or ``cleanup()`` was cancelled by
    something other than the application (by itself, say): a failure like
    any other."""


class CorruptValueError(PepperpyError, ValueError):
    """Stored bytes a serializer cannot decode; remote caches treat them as
    a miss (and log it)."""


class CacheUnavailableError(PepperpyError, ConnectionError):
    """Raised by a remote cache (RedisCache) when its server cannot be
    reached or does not answer within the cache's timeout; the cause is the
    client's own error. A TieredCache and ``get_or_load`` treat it as a miss
    and carry on with the local cache and the loader."""


class DependencyError(PepperpyError):
    """Base of the errors about how modules depend on each other."""


class MissingDependencyError(DependencyError, LookupError):
    """Raised when a module requires another by name that is not there."""


class DuplicateModuleError(DependencyError, ValueError):
    """Raised when two different modules in one application share a name."""


class CircularDependencyError(DependencyError):
    """Raised when modules depend on each other in a cycle, at validation or
    when their initializations would wait on each other; ``cycle`` names the
    modules in order, the first repeated at the end."""

    def __init__(self, cycle: Sequence[str]) -> None:
        self.cycle: tuple[str, ...] = tuple(cycle)
        super().__init__("circular dependency: " + " -> ".join(self.cycle))


class CircularLoadError(PepperpyError, RuntimeError):
    """Raised by a single-flight load (``get_or_load``, a TieredCache's
    ``load``) whose loader would wait for its own load, directly (it asks
    for its own key) or through other loads; ``chain`` names the loads."""

    def __init__(self, message: str, chain: Sequence[object] = ()) -> None:
        self.chain: tuple[str, ...] = tuple(repr(c) for c in chain)
        super().__init__(message)


class VersionConflictError(DependencyError):
    """Raised when a module's version does not satisfy what a dependent
    module requires; names both modules, the requirement and the version."""

    def __init__(self, dependent: str, requirement: str, dependency: str, version: str) -> None:
        self.dependent = dependent
        self.requirement = requirement
        self.dependency = dependency
        self.version = version
        super().__init__(
            f"{dependent} requires {requirement}, but {dependency} is version {version}"
        )


class MetricError(PepperpyError, ValueError):
    """Raised by a MetricsRegistry when a metric or label name breaks
    Prometheus' naming rules, a name, label value or help text cannot be
    encoded as UTF-8, a name is reused with another kind, other label names
    or other buckets, or two metrics or registries would export one series."""


class StartupError(PepperpyError, RuntimeError):
    """Raised by ``Application.start()`` when a module fails to start, after
    the rollback: names the module (``module``), has the original exception
    as ``__cause__`` and the failures of the rollback in ``rollback_errors``."""

    def __init__(
        self, module: str, cause: BaseException, rollback_errors: Sequence[BaseException] = ()
    ) -> None:
        self.module = module
        self.rollback_errors = tuple(rollback_errors)
        message = f"module {module!r} failed to start: {cause!r}"
        if self.rollback_errors:
            message += f"; {len(self.rollback_errors)} cleanup(s) also failed during rollback"
        super().__init__(message)


class ShutdownError(PepperpyError, ExceptionGroup[Exception]):
    """Raised by ``Application.stop()`` after every cleanup ran, when some
    failed, timed out or were cut short; each exception carries a note naming
    its module. Raised by ``Application.run()`` too, whose ``signal`` then
    names the signal that began the stop (None if none did)."""

    #: The signal that made ``run()`` stop, when it was one.
    signal: Signals | None = None
