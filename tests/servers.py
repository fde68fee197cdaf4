"""Real servers for tests: found on the machine, started on a free loopback
port with a temporary directory, and stopped.

In CI (``CI=true``) a missing server fails the test (``.ci/run`` installs
it); on a developer's machine the test skips, saying how to install it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

T = TypeVar("T")


def binary(name: str, package: str) -> str:
    """The path of ``name``; outside CI, a skip that names the package."""
    path = shutil.which(name)
    if path is not None:
        return path
    how = f"{name} is not installed; install Debian's {package} package (apt-get install {package})"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{how}: .ci/run should have done so")
    pytest.skip(how)


def free_port() -> int:
    """A loopback TCP port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check: Callable[[], T | None], what: str, timeout: float = 30.0) -> T:
    """Poll ``check`` until it returns something other than None (or False)."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
        except Exception as error:  # not up yet: keep polling
            last = error
        else:
            if result is not None and result is not False:
                return result
        time.sleep(0.1)
    raise TimeoutError(f"{what} did not happen within {timeout} s (last error: {last!r})")


def stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate ``process`` and reap it (kill it if it will not go)."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


class RedisServer:
    """A redis-server of its own on a free loopback port, without persistence;
    ``stop()`` and ``start()`` again keep the port (for outage tests)."""

    def __init__(self, directory: Path) -> None:
        self.path = binary("redis-server", "redis-server")
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start and wait until it answers PING."""
        log = self.directory / "redis.log"
        self.process = subprocess.Popen(
            [
                self.path,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
                "--logfile",
                str(log),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(self.ping, f"redis-server on port {self.port} answering", timeout=20)

    def ping(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"redis-server exited with {self.process.returncode}")
        return self.command("PING") == b"+PONG"

    def command(self, *words: str) -> bytes:
        """One command over a fresh connection; the first line of the reply."""
        request = f"*{len(words)}\r\n" + "".join(f"${len(w.encode())}\r\n{w}\r\n" for w in words)
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            sock.sendall(request.encode())
            reply = b""
            while not reply.endswith(b"\r\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                reply += chunk
        return reply.split(b"\r\n", 1)[0]

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)
            self.process = None
