"""The port helpers the server tests share: a port one test process gets is
nobody else's while that process lives, another test process's included
(Linux: reservations are abstract Unix sockets, as CI's machines have)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests import servers

ROOT = Path(__file__).resolve().parent.parent


def _claims_elsewhere(*ports: int) -> list[bool]:
    """Whether another process could reserve each of ``ports`` now."""
    code = (
        "import sys; from tests import servers; "
        "print(*[servers._reserve(int(p)) for p in sys.argv[1:]])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, *map(str, ports)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return [word == "True" for word in out.stdout.split()]


def test_a_free_port_is_below_the_ephemeral_range_and_nobody_elses() -> None:
    ports = [servers.free_port() for _ in range(20)]
    assert len(set(ports)) == 20
    low = servers._ephemeral_low()
    assert all(1024 <= p < low for p in ports)
    assert _claims_elsewhere(*ports) == [False] * 20
    # Nothing listens on them: a connection is refused.
    for port in ports[:3]:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()


def test_a_cluster_port_reserves_its_bus_port_too() -> None:
    port = servers.free_cluster_port()
    assert port + 10000 < servers._ephemeral_low()
    assert _claims_elsewhere(port, port + 10000) == [False, False]


def test_a_port_someone_listens_on_is_never_given() -> None:
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        taken = listening.getsockname()[1]
        # Below the ephemeral range, as our ports are: listen there directly.
        with socket.socket() as low:
            for candidate in range(servers._LOW, servers._HIGH):
                try:
                    low.bind(("127.0.0.1", candidate))
                except OSError:
                    continue
                break
            low.listen()
            assert not servers._reserve(low.getsockname()[1])
            assert not servers._reserve(taken)


def test_a_reservation_ends_with_its_process() -> None:
    code = "from tests import servers; print(servers.free_port())"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    port = int(out.stdout)
    assert _claims_elsewhere(port) == [True]
