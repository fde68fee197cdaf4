"""A long-running service: an Application of modules that runs until SIGINT or
SIGTERM (or ``--seconds`` pass), reporting health periodically. It exits as
the demo does: 0 when its time is up, 128 plus the signal's number after a
signal (130 for Ctrl-C), once every module has stopped.

    python examples/service.py --seconds 2
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import sys

from pepperpy_core import Application
from pepperpy_core.module import (
    DependentModule,
    ModuleConfig,
    ResourceModule,
    RetryModule,
)


class Connection:
    """Stands in for a network client."""

    def __init__(self) -> None:
        self.open = True

    async def aclose(self) -> None:
        self.open = False
        print("connection closed")


class Broker(RetryModule, ResourceModule):
    """Connects with retries; the connection is released on cleanup."""

    def __init__(self) -> None:
        super().__init__(ModuleConfig(name="broker", version="3.2.0"))
        self.delay = 0.01
        self.attempts = 0
        self.connection: Connection | None = None

    async def connect(self) -> Connection:
        self.attempts += 1
        if self.attempts == 1:
            raise ConnectionError("broker still booting")
        return Connection()

    async def initialize(self) -> None:
        self.connection = self.add_resource(await self.retry(self.connect))
        print(f"broker connected after {self.attempts} attempts")

    async def health_check(self) -> bool:
        return self.connection is not None and self.connection.open


class Worker(DependentModule):
    """Processes jobs from the broker in the background."""

    def __init__(self, broker: Broker) -> None:
        super().__init__(ModuleConfig(name="worker", dependencies=["broker>=3"]))
        self.broker = broker
        self.processed = 0
        self._task: asyncio.Task[None] | None = None

    async def initialize(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(0.01)
            self.processed += 1

    async def cleanup(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        print(f"worker stopped after {self.processed} jobs")


async def main(seconds: float | None) -> int:
    app = Application(Worker(Broker()), stop_timeout=5)
    if seconds is not None:
        asyncio.get_running_loop().call_later(seconds, app.request_stop)

    async def report() -> None:
        while True:
            await asyncio.sleep(0.5)
            health = await app.health()
            print("health:", health.status, {n: m.status for n, m in health.modules.items()})

    reporter = asyncio.create_task(report())
    try:
        stopped_by = await app.run()  # until SIGINT/SIGTERM or request_stop()
    finally:
        reporter.cancel()
    print("service stopped" + (f" by {stopped_by.name}" if stopped_by else ""))
    return 0 if stopped_by is None else 128 + stopped_by


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds > 0, got {text}")
    return value


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=_seconds, default=None, help="stop after this long")
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    # Each line reaches a pipe (a supervisor, a log collector) as it is printed.
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    try:
        sys.exit(asyncio.run(main(arguments.seconds)))
    except KeyboardInterrupt:  # Ctrl-C before the application took over the signal
        sys.exit(130)
