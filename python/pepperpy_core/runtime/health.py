"""Health: every module's check, run concurrently, and dependencies judged once.

A module is unhealthy when it is not running (by its own state, when it has
one: a module another application stopped is not running here either), or
its ``health_check()`` returns anything but True, raises (CancelledError
included, unless the ``health()`` call itself is being cancelled) or passes
the timeout. A module that is healthy itself but has a dependency that is
not is degraded. A module without ``health_check()`` is healthy while it
runs. The application as a whole is unhealthy unless it is running: while it
starts or stops, its modules may be healthy, and it is not.

Checks of the application's own (``Application.add_health_check``: a disk,
a quota, a peer no module owns) are judged as a module's ``health_check()``
is, whatever the phase, and are reported beside the modules under their names.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from pepperpy_core.module.base import ModuleState
from pepperpy_core.runtime.graph import Node

Status = Literal["healthy", "degraded", "unhealthy"]
#: A health check: healthy when the awaitable it returns gives True.
Check = Callable[[], Awaitable[object]]
_RANK: Final[dict[str, int]] = {"healthy": 0, "degraded": 1, "unhealthy": 2}


@dataclass(frozen=True)
class ModuleHealth:
    """One module's health: status, what was seen, and the check's seconds."""

    name: str
    status: Status
    detail: str
    latency: float


@dataclass(frozen=True)
class HealthReport:
    """Every module's health (and each added check's, under its name), the
    application's phase, and the overall status: the worst of them, and
    unhealthy unless the phase is running."""

    status: Status
    modules: dict[str, ModuleHealth]
    phase: str = "running"

    @property
    def healthy(self) -> bool:
        return self.status == "healthy"

    def unready(self) -> list[str]:
        """The modules that are not healthy, by name."""
        return [name for name, m in self.modules.items() if m.status != "healthy"]

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-safe data: status, phase, and per module its
        status, detail and latency in seconds."""
        return {
            "status": self.status,
            "phase": self.phase,
            "modules": {
                name: {"status": m.status, "detail": m.detail, "latency": m.latency}
                for name, m in self.modules.items()
            },
        }


async def _check(node: Node, seconds_each: float | None) -> ModuleHealth:
    if node.current_state() is not ModuleState.READY:
        return ModuleHealth(node.name, "unhealthy", "not running", 0.0)
    check = getattr(node.module, "health_check", None)
    if check is None:
        return ModuleHealth(node.name, "healthy", "running (no health_check)", 0.0)
    return await _run(node.name, check, seconds_each)


async def _run(name: str, check: Check, seconds_each: float | None) -> ModuleHealth:
    """``check()``'s verdict: healthy only when it returns True in time."""
    started = time.perf_counter()
    try:
        async with asyncio.timeout(seconds_each):
            ok = await check()
    except TimeoutError:
        detail = f"health_check timed out after {seconds_each} s"
        return ModuleHealth(name, "unhealthy", detail, time.perf_counter() - started)
    except Exception as error:
        detail = f"health_check raised {error!r}"
        return ModuleHealth(name, "unhealthy", detail, time.perf_counter() - started)
    latency = time.perf_counter() - started
    if ok is True:
        return ModuleHealth(name, "healthy", "ok", latency)
    return ModuleHealth(name, "unhealthy", f"health_check returned {ok!r}", latency)


async def check_all(
    nodes: Sequence[Node],
    seconds_each: float | None,
    phase: str = "running",
    checks: Mapping[str, Check] | None = None,
) -> HealthReport:
    """Every node's health and every one of ``checks``, checked concurrently,
    each within ``seconds_each`` (nodes in dependency order, then the
    checks), for an application in ``phase``. Each check runs in a task of
    its own, so a check that cancels itself (or raises a BaseException) makes
    only its own entry unhealthy; cancelling ``health()`` itself cancels them all."""
    started = time.perf_counter()
    extra = dict(checks or {})
    names = [n.name for n in nodes] + list(extra)
    tasks = [asyncio.ensure_future(_check(n, seconds_each)) for n in nodes]
    tasks += [asyncio.ensure_future(_run(name, c, seconds_each)) for name, c in extra.items()]
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    report: dict[str, ModuleHealth] = {}
    for name, outcome in zip(names, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            if isinstance(outcome, asyncio.CancelledError):
                detail = "health_check was cancelled"
            else:
                detail = f"health_check raised {outcome!r}"
            took = time.perf_counter() - started
            report[name] = ModuleHealth(name, "unhealthy", detail, took)
        else:
            report[name] = outcome
    for node in nodes:  # dependencies come first, so degradation travels up
        mine = report[node.name]
        sick = [d.name for d in node.deps if report[d.name].status != "healthy"]
        if sick and mine.status == "healthy":
            detail = f"dependency {', '.join(sick)} is not healthy"
            report[node.name] = ModuleHealth(node.name, "degraded", detail, mine.latency)
    worst: Status = "healthy" if phase == "running" else "unhealthy"
    for result in report.values():
        if _RANK[result.status] > _RANK[worst]:
            worst = result.status
    return HealthReport(worst, report, phase)
