"""accept() failures of a listening server, logged once per burst.

Out of file descriptors (or kernel memory), asyncio's accept loop reports
every failed ``accept()`` to the loop's exception handler, which logs a
traceback each time: thousands a second while the limit lasts. While a
server listens, ``AcceptErrors`` stands in as the loop's exception handler:
such a failure on one of the server's sockets is logged once, further ones
are counted and summed up every ``SUMMARY_EVERY`` seconds while they go on;
a burst ends with an interval without any, and the next failure is logged
in full again. Every other report goes to the handler it replaced.

CPython 3.11 schedules a retry of the whole accept loop for every failure
of a burst (up to the backlog's size at once), and retries that meet a
socket closed meanwhile fail with a ValueError each: those are answered
quietly (counted in ``stale_retries``). After a burst, ``close()`` leaves
the handler in place for as long as such retries can be pending, and only
then gives the loop its handler back.
"""

from __future__ import annotations

import asyncio
import asyncio.constants
import errno
import logging
from collections.abc import Iterable
from typing import Any, Final

_log: Final = logging.getLogger("pepperpy_core.http")

#: Seconds between two summaries of one burst of failures.
SUMMARY_EVERY: Final = 10.0
#: What accept() fails with when the process or the system runs out of something.
_EXHAUSTED: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


class AcceptErrors:
    """The loop's exception handler between ``__init__`` and ``close()``
    (see this module's doc) for the sockets bound to ``addresses``."""

    def __init__(self, loop: asyncio.AbstractEventLoop, addresses: Iterable[object]) -> None:
        self._loop = loop
        self._addresses = set(addresses)
        self._previous = loop.get_exception_handler()
        self._counted = 0  # since the last line logged
        self._last: OSError | None = None
        self._summary: asyncio.TimerHandle | None = None
        #: Every accept() failure seen, logged or counted.
        self.failures = 0
        #: Retries of the accept loop that met the closed socket, answered quietly.
        self.stale_retries = 0
        loop.set_exception_handler(self)

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        error = context.get("exception")
        if isinstance(error, ValueError) and _is_accept_retry(context):
            self.stale_retries += 1
            return
        if isinstance(error, OSError) and error.errno in _EXHAUSTED and self._ours(context):
            self.failures += 1
            self._last = error
            if self._summary is None:
                _log.error(
                    "cannot accept connections on %s: %s; the server goes on, and "
                    "further failures are counted (summed up every %s s while they last)",
                    context["socket"].getsockname(),
                    error,
                    SUMMARY_EVERY,
                )
                self._summary = loop.call_later(SUMMARY_EVERY, self._summarise)
            else:
                self._counted += 1
            return
        if self._previous is not None:
            self._previous(loop, context)
        else:
            loop.default_exception_handler(context)

    def _ours(self, context: dict[str, Any]) -> bool:
        sock = context.get("socket")
        try:
            return sock is not None and sock.getsockname() in self._addresses
        except OSError:  # closed meanwhile
            return False

    def _summarise(self) -> None:
        """Log the failures counted since the last line; end the burst if none."""
        if not self._counted:
            self._summary = None
            return
        _log.error(
            "accept() failed %d more times in the last %s s (last: %s)",
            self._counted,
            SUMMARY_EVERY,
            self._last,
        )
        self._counted = 0
        self._summary = self._loop.call_later(SUMMARY_EVERY, self._summarise)

    def close(self) -> None:
        """Sum up what is counted, and give the loop its handler back (unless
        another replaced this one meanwhile): at once, or after a burst once
        the accept loop's retries can no longer be pending."""
        if self._summary is not None:
            self._summary.cancel()
            self._summary = None
            if self._counted:
                _log.error("accept() failed %d more times (last: %s)", self._counted, self._last)
                self._counted = 0
        if self.failures:
            self._loop.call_later(2 * asyncio.constants.ACCEPT_RETRY_DELAY, self._restore)
        else:
            self._restore()

    def _restore(self) -> None:
        if self._loop.get_exception_handler() is self:
            self._loop.set_exception_handler(self._previous)


def _is_accept_retry(context: dict[str, Any]) -> bool:
    """Whether ``context`` reports a retry of the loop's accept loop."""
    callback = getattr(context.get("handle"), "_callback", None)
    return getattr(callback, "__name__", "") == "_start_serving"
