"""One scheduler for start, stop and rollback.

``run_phase`` runs one call per node (a module's ``initialize`` or
``cleanup``) in dependency order: forward, a node once every dependency in
the set succeeded; backward, once every dependent in the set has ended (well
or not). Independent nodes run concurrently, each as its own Task, and a
per-node timeout cancels a call that runs too long. Completions arrive
through one queue, so the cost of waiting does not grow with the number of
calls in flight.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from pepperpy_core.runtime.graph import Node

#: Called with a node when its call is launched.
Begin = Callable[[Node], None]
#: Called with a node, how its call ended (None: it returned) and its seconds.
End = Callable[[Node, BaseException | None, float], None]


class PhaseTimeout(TimeoutError):
    """A node's call ran past the phase's timeout and was cancelled."""


class PhaseCancelled(RuntimeError):
    """A node's call was cancelled by something other than the runtime (by
    itself, say): a failure like any other."""


class _Completions:
    """Tasks report here when done; the owner takes them in batches."""

    __slots__ = ("_done", "_nodes", "_wakeup")

    def __init__(self) -> None:
        self._nodes: dict[asyncio.Future[Any], Node] = {}
        self._done: deque[asyncio.Future[Any]] = deque()
        self._wakeup = asyncio.Event()

    def track(self, node: Node, task: asyncio.Future[Any]) -> None:
        self._nodes[task] = node
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Future[Any]) -> None:
        self._done.append(task)
        self._wakeup.set()

    def take_now(self) -> list[tuple[Node, asyncio.Future[Any]]]:
        batch = [(self._nodes.pop(task), task) for task in self._done]
        self._done.clear()
        return batch

    async def take(self) -> list[tuple[Node, asyncio.Future[Any]]]:
        while not self._done:
            self._wakeup.clear()
            await self._wakeup.wait()
        return self.take_now()


async def run_phase(  # noqa: PLR0915 - the scheduler's state lives in one frame
    nodes: Sequence[Node],
    *,
    forward: bool,
    call: Callable[[Node], Awaitable[Any]],
    seconds_each: float | None,
    stop_on_failure: bool,
    begin: Begin,
    end: End,
    verb: str = "finish",
) -> list[Node]:
    """Run ``call(node)`` for every node in order; returns the nodes never
    launched (after a failure with ``stop_on_failure``, or when cancelled).

    A call that fails reports its exception; one cancelled after ``seconds_each`` a
    PhaseTimeout; one cancelled because another failed (``stop_on_failure``)
    or because the task running this was cancelled, a CancelledError; one
    cancelled by anything else (itself), a PhaseCancelled. When
    that task is cancelled, every call in flight is cancelled and waited for
    (a second cancellation stops the waiting), then CancelledError is raised.
    """
    members = {id(n) for n in nodes}
    if forward:
        waiting = {id(n): sum(1 for d in n.deps if id(d) in members) for n in nodes}
    else:
        waiting = {id(n): sum(1 for d in n.dependents if id(d) in members) for n in nodes}
    loop = asyncio.get_running_loop()
    done = _Completions()
    in_flight: dict[int, tuple[asyncio.Future[Any], float, asyncio.TimerHandle | None]] = {}
    timed_out: set[int] = set()
    cancelled: set[int] = set()  # calls this scheduler cancelled
    launched: set[int] = set()
    stopped = False

    def launch(node: Node) -> None:
        launched.add(id(node))
        begin(node)
        task = asyncio.ensure_future(call(node))
        timer = None
        if seconds_each is not None:
            timer = loop.call_later(seconds_each, _expire, task, id(node), timed_out)
        in_flight[id(node)] = (task, time.perf_counter(), timer)
        done.track(node, task)

    def finish(node: Node, task: asyncio.Future[Any]) -> BaseException | None:
        _, started, timer = in_flight.pop(id(node))
        if timer is not None:
            timer.cancel()
        if task.cancelled():
            if id(node) in timed_out:
                error: BaseException | None = PhaseTimeout(
                    f"{node.name} did not {verb} within {seconds_each} s"
                )
            elif id(node) in cancelled:
                error = asyncio.CancelledError()
            else:
                error = PhaseCancelled(f"{node.name} was cancelled while it tried to {verb}")
        else:
            error = task.exception()
        end(node, error, time.perf_counter() - started)
        return error

    for node in nodes:
        if waiting[id(node)] == 0:
            launch(node)
    try:
        while in_flight:
            for node, task in await done.take():
                error = finish(node, task)
                if error is not None and stop_on_failure:
                    if not stopped:
                        stopped = True
                        for key, (other, _, _) in in_flight.items():
                            cancelled.add(key)
                            other.cancel()
                    continue
                if error is not None and forward:
                    continue  # its dependents never start
                if stopped:
                    continue
                for successor in node.dependents if forward else node.deps:
                    key = id(successor)
                    if key in waiting:
                        waiting[key] -= 1
                        if waiting[key] == 0:
                            launch(successor)
    except asyncio.CancelledError:
        for key, (task, _, _) in in_flight.items():
            cancelled.add(key)
            task.cancel()
        try:
            while in_flight:
                for node, task in await done.take():
                    finish(node, task)
        except asyncio.CancelledError:
            # Cancelled again: stop waiting for calls that ignore cancellation.
            for node in [n for n in nodes if id(n) in in_flight]:
                _, started, timer = in_flight.pop(id(node))
                if timer is not None:
                    timer.cancel()
                end(node, asyncio.CancelledError(), time.perf_counter() - started)
        raise
    return [n for n in nodes if id(n) not in launched]


def _expire(task: asyncio.Future[Any], key: int, timed_out: set[int]) -> None:
    timed_out.add(key)
    task.cancel()
