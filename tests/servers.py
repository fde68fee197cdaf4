"""Real servers for tests: found on the machine, started on a free loopback
port with a temporary directory, and stopped.

In CI (``CI=true``) a missing server fails the test (``.ci/run`` installs
it); on a developer's machine the test skips, saying how to install it.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import sys
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


def _ephemeral_low() -> int:
    """The lowest port the kernel hands out for outgoing connections."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


# Ports for servers come from below the kernel's ephemeral range, so no
# outgoing connection on the machine can take one between our check and the
# server's bind; a cluster node's bus port (P + 10000) stays below it too.
_HIGH = _ephemeral_low() - 1
_LOW = max(1024, _HIGH - 12000)
# Reservations: one abstract-namespace Unix socket per port number, bound for
# as long as this process lives. Every test process on the machine (another
# CI leg, the chroot's, which shares the network namespace) sees them, and the
# kernel drops them when the process ends, however it ends.
_RESERVED: dict[int, socket.socket] = {}


def _reserve(port: int) -> bool:
    """Claim ``port`` for this process, if no test process has it and nothing listens."""
    if port in _RESERVED:
        return False
    claim = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        claim.bind(f"\0pepperpy-core-tests-port-{port}")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", port))
    except OSError:
        claim.close()
        return False
    _RESERVED[port] = claim
    return True


def _release(port: int) -> None:
    claim = _RESERVED.pop(port, None)
    if claim is not None:
        claim.close()


def _reserved_ports(offsets: tuple[int, ...]) -> int:
    """A port P with P + each offset reserved for this process, for its lifetime."""
    if not sys.platform.startswith("linux"):  # no abstract sockets: the kernel's pick
        return _kernel_port()
    span = _HIGH - max(offsets) - _LOW
    for _ in range(4 * span):
        port = _LOW + random.randrange(span)
        claimed = [p for p in (port + o for o in offsets) if _reserve(p)]
        if len(claimed) == len(offsets):
            return port
        for p in claimed:
            _release(p)
    raise RuntimeError(f"no free port in {_LOW}-{_HIGH} for offsets {offsets}")


def _kernel_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_port() -> int:
    """A loopback TCP port nothing listens on, kept from every other test
    process (and from outgoing connections) while this process lives."""
    return _reserved_ports((0,))


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


def log_tail(path: Path, size: int = 2000) -> str:
    """The end of a server's log, to say why it went away."""
    try:
        return path.read_text(errors="replace")[-size:]
    except OSError as error:
        return f"(no log: {error})"


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
            raise RuntimeError(
                f"redis-server exited with {self.process.returncode}: "
                + log_tail(self.directory / "redis.log")
            )
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


def free_cluster_port() -> int:
    """A port P as ``free_port()`` gives, whose cluster bus port P+10000 is too."""
    return _reserved_ports((0, 10000))


class RedisCluster:
    """A Redis Cluster of its own: ``masters`` redis-servers on free loopback
    ports (no replicas, no persistence) joined by ``redis-cli --cluster
    create``; ready when every node says the cluster is ok and sees every
    slot and every node. A node can be killed and started again (same port,
    same nodes.conf), as a master that crashes and comes back."""

    def __init__(self, directory: Path, masters: int = 3) -> None:
        self.server = binary("redis-server", "redis-server")
        self.cli = binary("redis-cli", "redis-tools")
        self.directory = directory
        self.ports = [free_cluster_port() for _ in range(masters)]
        self.processes: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def start(self) -> None:
        for port in self.ports:
            self.start_node(port)
        created = subprocess.run(
            [
                self.cli,
                "--cluster",
                "create",
                *(f"127.0.0.1:{p}" for p in self.ports),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        if created.returncode != 0:
            raise RuntimeError(
                f"redis-cli --cluster create failed: {created.stdout}{created.stderr}"
            )
        wait_for(self.ready, "the cluster ok on every node", timeout=60)

    def start_node(self, port: int) -> None:
        """Start (or start again) the node on ``port`` and wait until it answers."""
        home = self.directory / str(port)
        home.mkdir(parents=True, exist_ok=True)
        self.processes[port] = subprocess.Popen(
            [
                self.server,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "2000",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(home),
                "--logfile",
                str(home / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: self._info(port) is not None, f"cluster node {port} answering", 30)

    def _info(self, port: int) -> dict[str, str] | None:
        import redis

        process = self.processes.get(port)
        if process is not None and process.poll() is not None:
            raise RuntimeError(
                f"cluster node {port} exited with {process.returncode}: "
                + log_tail(self.directory / str(port) / "redis.log")
            )
        client = redis.Redis(port=port, socket_timeout=5, decode_responses=True)
        try:
            text = client.execute_command("CLUSTER", "INFO")
        finally:
            client.close()
        lines = text.splitlines() if isinstance(text, str) else []
        return dict(line.split(":", 1) for line in lines if ":" in line)

    def ready(self) -> bool:
        """Whether every node says the cluster is ok, with every slot and node."""
        for port in self.ports:
            info = self._info(port) or {}
            if (
                info.get("cluster_state") != "ok"
                or info.get("cluster_slots_ok") != "16384"
                or info.get("cluster_known_nodes") != str(len(self.ports))
            ):
                return False
        return True

    def kill(self, port: int) -> None:
        """SIGKILL the node on ``port`` (a crash) and reap it."""
        process = self.processes.pop(port)
        process.kill()
        process.wait(10)

    def stop(self) -> None:
        for process in self.processes.values():
            stop(process)
        self.processes.clear()
