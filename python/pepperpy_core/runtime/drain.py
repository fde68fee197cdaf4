"""The drain: a pause between a supervisor's request to stop and the modules
stopping, during which /readyz answers 503 and everything else serves on.

Kubernetes sends SIGTERM and, at the same moment, starts taking the pod out
of its Services' endpoints; kube-proxy, ingress controllers and load
balancers hear of it a moment later, and send requests until they do. A
process that stopped serving at once would refuse those. With a drain it
says it is not ready (so that whatever routes by readiness stops at once),
answers every request for ``drain`` seconds, and only then stops.

What drains: in ``Application.run()``, the first SIGTERM (any stop signal
but SIGINT) or ``request_stop()``; inside a server (an ASGI lifespan,
aiohttp's cleanup context), a SIGTERM held back from the server's own
handler until the drain ends (the server would otherwise stop accepting
connections at once), or the shutdown when no signal came first. What
does not: SIGINT (Ctrl-C: someone at a terminal, no load balancer),
``stop()``, leaving ``async with``. A second request to stop (a signal,
``request_stop()``) or ``stop()`` ends a drain under way at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any, Final

__all__ = ["IN_KUBERNETES", "Drain", "SignalRelay", "drain_seconds"]

_log: Final = logging.getLogger("pepperpy_core.runtime")

#: The drain when none is given and the process runs in a Kubernetes pod.
IN_KUBERNETES: Final = 5.0
#: Set by the kubelet in every container (whatever ``enableServiceLinks`` says).
_KUBERNETES_VARIABLE: Final = "KUBERNETES_SERVICE_HOST"

Handler = Callable[[int, FrameType | None], Any]


def drain_seconds(value: object) -> float:
    """``Application(drain=...)`` checked: seconds >= 0; None chooses
    ``IN_KUBERNETES`` inside a Kubernetes pod and 0 elsewhere.

    Why 5 s in Kubernetes: the endpoint change reaches kube-proxy and ingress
    controllers within a second or two, and the pod's default grace period is
    30 s, which must also cover the requests in flight and every module's
    cleanup; 5 s leaves them 25. Why 0 elsewhere: no one routes by readiness
    there, and ``uvicorn --reload`` restarts its worker with SIGTERM, which a
    drain would delay on every reload."""
    if value is None:
        return IN_KUBERNETES if os.environ.get(_KUBERNETES_VARIABLE) else 0.0
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"drain must be a number of seconds or None, not {type(value).__name__}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"drain must be a finite number of seconds >= 0, got {value!r}")
    return float(value)


class Drain:
    """One application's drain: begun once per run, over when its time is
    up or ``end()`` is called; ``begun`` stays true until ``reset()`` (the
    application has stopped), so /readyz stays 503 until then."""

    __slots__ = ("_over", "begun", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.begun = False
        self._over: asyncio.Event | None = None

    @property
    def under_way(self) -> bool:
        """Begun and not over yet."""
        return self._over is not None and not self._over.is_set()

    def begin(self) -> None:
        """Start draining (once: a drain already begun goes on; none of 0 s)."""
        if not self.begun and self.seconds > 0:
            self.begun = True
            self._over = asyncio.Event()
            _log.warning("draining for %s s before stopping: /readyz answers 503", self.seconds)

    def end(self) -> None:
        """End the drain under way at once (nothing if none is)."""
        if self._over is not None and not self._over.is_set():
            _log.info("drain ended early")
            self._over.set()

    async def wait(self) -> None:
        """Until the drain is over: its time is up or ``end()`` was called."""
        over = self._over
        if over is None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.seconds):
                await over.wait()
        over.set()

    def reset(self) -> None:
        """The application stopped: the next run may drain again."""
        self.begun = False
        self._over = None


class SignalRelay:
    """While a server runs the application (an ASGI server, or aiohttp's
    ``run_app``), SIGTERM and SIGINT pass through here before the server's
    own handler, wherever the server put it: set with ``signal.signal``
    (uvicorn, gunicorn's uvicorn worker) or with ``loop.add_signal_handler``
    (aiohttp's runner, or a program's own). SIGTERM goes to ``on_term`` with the
    function that hands it on (called after the drain); SIGINT is handed on
    at once, noted in ``interrupted``, and ``on_int`` called (it ends a
    drain). Nothing is chained outside the main thread or in front of no
    handler (the default, or ignored): then the shutdown drains instead."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        on_term: Callable[[Callable[[], None]], None],
        on_int: Callable[[], None],
    ) -> None:
        self._loop = loop
        self._on_term = on_term
        self._on_int = on_int
        #: Per signal: how to hand it on, and how to put the server's handler back.
        self._chained: dict[signal.Signals, tuple[Callable[[], None], Callable[[], None]]] = {}
        self.interrupted = False

    @contextlib.contextmanager
    def installed(self) -> Iterator[SignalRelay]:
        """Chain in front of the server's handlers, and put them back after
        (unless something replaced ours meanwhile)."""
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                link = self._chain_loops(sig) or self._chain_pythons(sig)
                if link is not None:
                    self._chained[sig] = link
        try:
            yield self
        finally:
            chained, self._chained = self._chained, {}
            for _, put_back in chained.values():
                put_back()

    def _received(self, sig: signal.Signals, hand_on: Callable[[], None]) -> None:
        """In the loop: a signal the server would have had."""
        if sig is signal.SIGTERM:
            self._on_term(hand_on)
        else:
            self.interrupted = True
            self._on_int()
            hand_on()

    def _chain_pythons(
        self, sig: signal.Signals
    ) -> tuple[Callable[[], None], Callable[[], None]] | None:
        before = signal.getsignal(sig)
        if not callable(before) or _loops_own(before):
            return None
        server: Handler = before

        def mine(signum: int, frame: FrameType | None) -> None:
            if sig is signal.SIGINT:
                # As if it had come straight there (default_int_handler raises here).
                self.interrupted = True
                self._loop.call_soon_threadsafe(self._on_int)
                server(signum, frame)
                return
            # A handler runs between two bytecodes of whatever the loop was
            # doing: only a thread-safe wakeup is safe here.
            self._loop.call_soon_threadsafe(self._on_term, lambda: server(signum, None))

        def put_back() -> None:
            if signal.getsignal(sig) is mine:
                signal.signal(sig, server)

        signal.signal(sig, mine)
        return (lambda: server(sig, None)), put_back

    def _chain_loops(
        self, sig: signal.Signals
    ) -> tuple[Callable[[], None], Callable[[], None]] | None:
        # asyncio keeps the handlers a loop dispatches in this registry; reading
        # it is the only way to chain in front of one and put it back.
        registry: object = getattr(self._loop, "_signal_handlers", None)
        if not isinstance(registry, dict) or not _loops_own(signal.getsignal(sig)):
            return None
        handlers: dict[int, object] = registry
        server = handlers.get(sig)
        callback = getattr(server, "_callback", None)
        if not isinstance(server, asyncio.Handle) or not callable(callback):
            return None
        args = tuple(server._args)

        def hand_on() -> None:
            self._loop.call_soon(callback, *args)  # as the loop would have

        self._loop.add_signal_handler(sig, self._received, sig, hand_on)
        mine = handlers.get(sig)

        def put_back() -> None:
            if handlers.get(sig) is mine:
                self._loop.add_signal_handler(sig, callback, *args)

        return hand_on, put_back


def _loops_own(handler: object) -> bool:
    """An event loop's stand-in handler (asyncio's, uvloop's): the loop
    dispatches that signal itself, whatever handler is installed."""
    return getattr(handler, "__name__", None) == "_sighandler_noop"
