"""One scheduler for start, stop and rollback.

``run_phase`` runs one call per node (a module's ``initialize`` or
``cleanup``) in dependency order (forward, a node once every dependency in
the set succeeded; backward, once every dependent in the set has ended, well
or not), and tells its caller how each call ended: it is an async iterator
of ``Ended`` outcomes, a list of those that ended since the last, and a
node's successors are launched only once the caller has taken its outcome.
Independent nodes run concurrently, each as its own Task, and a per-node
timeout cancels a call that runs too long; a call that has not ended a whole
timeout after its cancellation (it ignores it, or waits for something that
waits for this phase) is left behind and reported, so that with a timeout
every phase ends. Completions arrive through one queue, so the cost of
waiting does not grow with the number of calls in flight; the per-node
bookkeeping lives on the nodes themselves.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import sys
import time
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from pepperpy_core.errors import PhaseCancelled, PhaseTimeout
from pepperpy_core.runtime.graph import Node


@dataclass(slots=True)
class Ended:
    """How the node's call ended (``error`` None: it returned) after ``seconds``;
    a NotStarted when it never began to run (its ``began`` is False again)."""

    node: Node
    error: BaseException | None
    seconds: float


_clock = time.perf_counter
_log = logging.getLogger("pepperpy_core.runtime")


class NotStarted(asyncio.CancelledError):
    """A call cancelled before its coroutine ran at all: the node's
    ``began`` is False again, and nothing of it needs undoing."""


def _unstarted(task: asyncio.Task[Any]) -> bool:
    """Whether ``task``'s coroutine has not begun to run (cancelled now, it never will)."""
    coro = task.get_coro()
    return inspect.iscoroutine(coro) and inspect.getcoroutinestate(coro) == "CORO_CREATED"


def _task_maker(loop: asyncio.AbstractEventLoop) -> Callable[[Any], asyncio.Task[Any]]:
    """How the phase makes a call's Task: on 3.12+ its first step runs at
    once, eagerly (a call that never waits is done before the Task is
    returned, and costs the loop no scheduling), unless the loop makes its
    tasks with a factory of its own."""
    if sys.version_info >= (3, 12) and loop.get_task_factory() is None:
        return functools.partial(asyncio.Task, loop=loop, eager_start=True)
    return loop.create_task


class _Returned:
    """A call that returned in its eager first step, as ``finish`` reads it."""

    __slots__ = ()

    def done(self) -> bool:
        return True

    def cancelled(self) -> bool:
        return False

    def exception(self) -> None:
        return None


_RETURNED: Final = _Returned()


def _escape(exc: BaseException) -> None:
    raise exc


def _done(completed: Callable[[Node], None], node: Node, task: asyncio.Task[Any]) -> None:
    if node.task is task:  # (not a call the phase has stopped waiting for)
        completed(node)


def _late_end(name: str, task: asyncio.Task[Any]) -> None:
    """How a call left behind ended, at last: logged, never lost."""
    if task.cancelled():
        _log.warning("%s, left behind, ended cancelled", name)
    elif task.exception() is not None:
        _log.error("%s, left behind, ended with %r", name, task.exception())
    else:
        _log.warning("%s, left behind, ended", name)


async def run_phase(  # noqa: PLR0915 - the scheduler's state lives in one frame
    nodes: Sequence[Node],
    *,
    forward: bool,
    call: Callable[[Node], Awaitable[Any]],
    seconds_each: float | None,
    stop_on_failure: bool,
    verb: str = "finish",
) -> AsyncGenerator[list[Ended], None]:
    """Run ``call(node)`` for every node in order, yielding how the calls
    ended, those that ended since the last yield at a time; nodes never
    launched (after a failure with ``stop_on_failure``, or when cancelled)
    have no outcome.

    A call that fails ends with its exception; one cancelled after
    ``seconds_each`` with a PhaseTimeout; one cancelled because another failed
    (``stop_on_failure``) or because the task iterating was cancelled, with a
    CancelledError (a NotStarted if it never began to run, and then its
    ``began`` is False); one cancelled by anything else (itself), with a
    PhaseCancelled. ``began`` is set on each node launched. When the task
    iterating is cancelled, every call in flight is cancelled and its outcome
    still yielded as it ends (a second cancellation stops the waiting: the
    calls left get an Ended with a CancelledError at once), then
    CancelledError is raised.
    """
    run = object()
    for node in nodes:
        node.run = run
        node.task = None
        node.why = ""
    for node in nodes:
        linked = node.deps if forward else node.dependents
        pending = len(linked)
        for other in linked:
            if other.run is not run:
                pending -= 1
        node.pending = pending
    loop = asyncio.get_running_loop()
    new_task = _task_maker(loop)
    # A call run eagerly runs inside this task: a cancellation it (or
    # ``call`` itself) asks for, say a module's initialize() calling
    # stop(), arrives only at this task's next wait; the launches stop at
    # once and that wait is made.
    me = asyncio.current_task()
    asked = me.cancelling() if me is not None else 0
    interrupted = False
    finished: deque[Node] = deque()
    wakeup = asyncio.Event()
    in_flight = 0
    launched: list[Node] = []
    stopped = False

    def completed(node: Node) -> None:
        finished.append(node)
        wakeup.set()

    def expire(node: Node) -> None:
        node.why = node.why or ("unstarted" if _unstarted(node.task) else "timeout")
        node.task.cancel()
        node.timer = loop.call_later(seconds_each, abandon, node)  # type: ignore[arg-type]

    def abandon(node: Node) -> None:
        # Cancelled a whole timeout ago and still running: stop waiting.
        task, node.task, node.timer = node.task, None, None
        task.add_done_callback(functools.partial(_late_end, node.name))
        node.why = "abandoned"
        completed(node)

    def launch(node: Node) -> None:
        nonlocal in_flight, interrupted
        launched.append(node)
        node.began = True
        in_flight += 1
        node.started = _clock()
        task: asyncio.Future[Any]
        try:
            task = node.task = new_task(call(node))
        except (KeyboardInterrupt, SystemExit) as exc:
            # Raised by the call's eager first step: it ends the call, and
            # leaves the loop as it would have from a step the loop ran.
            task = node.task = loop.create_future()
            task.set_exception(exc)
            loop.call_soon(_escape, exc)
        if me is not None and me.cancelling() > asked:
            interrupted = True
        if task.done():  # it ran to its end eagerly
            if not task.cancelled() and task.exception() is None:
                # Only that it returned is kept: a phase that launches
                # thousands of calls at once does not hold thousands of tasks.
                node.task = _RETURNED
            completed(node)
            return
        if seconds_each is not None:
            node.timer = loop.call_later(seconds_each, expire, node)
        task.add_done_callback(functools.partial(_done, completed, node))

    def finish(node: Node) -> Ended:
        nonlocal in_flight
        in_flight -= 1
        task = node.task
        node.task = None
        if node.timer is not None:
            node.timer.cancel()
            node.timer = None
        if node.why == "abandoned":
            error: BaseException | None = PhaseTimeout(
                f"{node.name} did not {verb} within {seconds_each} s, nor end within "
                f"{seconds_each} s of being cancelled: left behind"
            )
        elif task.cancelled():
            if node.why == "unstarted":
                node.began = False
                error = NotStarted()
            elif node.why == "timeout":
                error = PhaseTimeout(f"{node.name} did not {verb} within {seconds_each} s")
            elif node.why == "ours":
                error = asyncio.CancelledError()
            else:
                error = PhaseCancelled(f"{node.name} was cancelled while it tried to {verb}")
        else:
            error = task.exception()
        return Ended(node, error, _clock() - node.started)

    def cancel_in_flight() -> None:
        for node in launched:
            if node.task is not None and not node.task.done():
                node.why = node.why or ("unstarted" if _unstarted(node.task) else "ours")
                node.task.cancel()
                if seconds_each is not None and node.timer is None:
                    node.timer = loop.call_later(seconds_each, abandon, node)

    try:
        for node in nodes:
            if node.pending == 0 and not interrupted:
                launch(node)
        while in_flight:
            while not finished:
                wakeup.clear()
                await wakeup.wait()
            if interrupted:
                await asyncio.sleep(0)  # raises the CancelledError asked for
            batch = [finish(node) for node in finished]
            finished.clear()
            yield batch
            for ended in batch:
                node, error = ended.node, ended.error
                if error is not None and stop_on_failure:
                    if not stopped:
                        stopped = True
                        cancel_in_flight()
                    continue
                if (error is not None and forward) or stopped:
                    continue  # its dependents never start
                for successor in node.dependents if forward else node.deps:
                    if successor.run is run:
                        successor.pending -= 1
                        if successor.pending == 0 and not interrupted:
                            launch(successor)
        if interrupted:
            await asyncio.sleep(0)
    except asyncio.CancelledError:
        cancel_in_flight()
        try:
            while in_flight:
                while not finished:
                    wakeup.clear()
                    await wakeup.wait()
                batch = [finish(node) for node in finished]
                finished.clear()
                yield batch
        except asyncio.CancelledError:
            # Cancelled again: stop waiting for calls that ignore cancellation.
            batch = []
            for node in launched:
                if node.task is not None:
                    if node.timer is not None:
                        node.timer.cancel()
                        node.timer = None
                    node.task = None
                    batch.append(Ended(node, asyncio.CancelledError(), _clock() - node.started))
            yield batch
        raise
    finally:
        for node in nodes:
            node.run = None
