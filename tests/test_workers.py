"""Real servers of several worker processes sharing one MetricsRegistry
through PEPPERPY_CORE_METRICS_DIR (examples/workers.py): uvicorn --workers,
gunicorn with uvicorn workers recycled by max_requests, a worker killed with
SIGKILL, promtool and a real Prometheus scraping the aggregate."""

from __future__ import annotations

import concurrent.futures
import http.client
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.asyncutil import run
from tests.servers import free_port, stop, wait_for
from tests.test_prometheus import Prometheus, promtool, ready

pytestmark = pytest.mark.backend

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _get(url: str, accept: str = "") -> str:
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(request, timeout=30) as response:
        return str(response.read().decode())


def _served(base: str) -> float:
    """http_requests_total{path="/hello"} as /metrics reports it (0 if absent)."""
    for family in text_string_to_metric_families(_get(f"{base}/metrics")):
        for sample in family.samples:
            if sample.name == "http_requests_total" and sample.labels == {"path": "/hello"}:
                return sample.value
    return 0.0


class Server:
    """A server of several workers on a free loopback port, serving
    examples/workers.py with its metrics shared in ``directory``."""

    def __init__(self, command: list[str], directory: Path, port: int) -> None:
        self.directory = directory
        self.base = f"http://127.0.0.1:{port}"
        env = {**os.environ, "PEPPERPY_CORE_METRICS_DIR": str(directory)}
        self.process = subprocess.Popen(
            command, env=env, cwd=EXAMPLES, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for(self._up, f"{command[2]} answering on {self.base}", timeout=60)

    def _up(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"the server exited with {self.process.returncode}")
        _get(f"{self.base}/metrics")
        return True

    def hello(self) -> int:
        """One request on a connection of its own; the pid of the worker.
        A connection a worker accepted as it was stopping (max_requests) is
        closed before the request is read, and the request sent again."""
        for _ in range(10):
            try:
                return int(_get(f"{self.base}/hello").split()[-1])
            except (http.client.RemoteDisconnected, ConnectionResetError):
                continue
        raise AssertionError("10 connections in a row were closed unanswered")

    def files(self) -> list[str]:
        return sorted(os.listdir(self.directory))


@pytest.fixture
def uvicorn(tmp_path: Path) -> Iterator[Server]:
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "workers:app", "--workers", "4"]
    command += ["--port", str(port), "--log-level", "warning"]
    server = Server(command, tmp_path / "metrics", port)
    yield server
    stop(server.process)


def test_uvicorn_workers_count_exactly_and_a_sigkilled_worker_keeps_its_counts(
    uvicorn: Server,
) -> None:
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        pids = list(pool.map(lambda _: uvicorn.hello(), range(400)))
    assert len(set(pids)) >= 2, "the requests reached one worker only"
    # Whichever worker answers /metrics reports every worker's requests.
    assert {_served(uvicorn.base) for _ in range(20)} == {400.0}
    victim = pids[-1]
    os.kill(victim, signal.SIGKILL)
    # Every request it served had completed: none of them is lost.
    assert {_served(uvicorn.base) for _ in range(20)} == {400.0}
    for _ in range(100):
        uvicorn.hello()
    assert _served(uvicorn.base) == 500.0
    assert not any(f.startswith(f"{victim}-") for f in uvicorn.files())
    checked = promtool(_get(f"{uvicorn.base}/metrics"))
    assert (checked.returncode, checked.stdout, checked.stderr) == (0, "", "")


def test_gunicorn_recycling_workers_two_hundred_times_keeps_exact_totals(
    tmp_path: Path,
) -> None:
    port = free_port()
    command = [sys.executable, "-m", "gunicorn", "workers:app", "--preload"]
    command += ["-k", "uvicorn_worker.UvicornWorker", "-w", "2", "-b", f"127.0.0.1:{port}"]
    command += ["--max-requests", "3", "--max-requests-jitter", "0", "--log-level", "warning"]
    server = Server(command, tmp_path / "metrics", port)
    try:
        # uvicorn checks max_requests on its 0.1 s tick: a worker serves 3
        # requests or more. Requests go on until 200 workers have served.
        most = 0
        pids: set[int] = set()
        sent = 0
        while len(pids) < 201:
            assert sent < 100_000, f"only {len(pids)} workers in {sent} requests"
            pids.add(server.hello())
            sent += 1
            if sent % 50 == 0:
                most = max(most, len(server.files()))
        assert _served(server.base) == sent
        # lock, run, retained, the arbiter's segment (it imported the app:
        # --preload), two workers and the ones exited since the last fold.
        assert most <= 8, server.files()
        size = sum((server.directory / f).stat().st_size for f in server.files())
        assert size < 512 * 1024
    finally:
        stop(server.process)


def test_a_real_prometheus_scrapes_the_workers_aggregate(uvicorn: Server, tmp_path: Path) -> None:
    for _ in range(40):
        uvicorn.hello()
    port = int(uvicorn.base.rsplit(":", 1)[1])

    async def main() -> None:
        prometheus = Prometheus(tmp_path, port)
        try:
            async with aiohttp.ClientSession() as session:
                await prometheus.until(session, ready(prometheus), "prometheus ready")
                for job in ("negotiated", "text"):
                    query = f'http_requests_total{{job="{job}",path="/hello"}}'

                    async def check(session: aiohttp.ClientSession, query: str = query) -> Any:
                        return await prometheus.value(session, query) == 40.0

                    await prometheus.until(session, check, f"{query} == 40")
        finally:
            prometheus.close()

    run(main(), timeout=120)
