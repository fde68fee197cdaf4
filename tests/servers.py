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
