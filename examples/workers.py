"""A web service of several worker processes that count together: a plain
ASGI app whose MetricsRegistry is shared through PEPPERPY_CORE_METRICS_DIR,
so /metrics from any worker shows every worker's requests.

    export PEPPERPY_CORE_METRICS_DIR=/run/myservice/metrics   # any empty or own dir
    uvicorn workers:app --app-dir examples --workers 4
    gunicorn workers:app --chdir examples -k uvicorn_worker.UvicornWorker -w 4

``python examples/workers.py [--port N]`` runs it under ``uvicorn --workers 2``
(on a free port unless given one), sends 20 requests, prints the total /metrics
reports, and stops.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable
from typing import Any

from pepperpy_core.exposition import CONTENT_TYPES, negotiate
from pepperpy_core.metrics import MetricsRegistry

# Shared when PEPPERPY_CORE_METRICS_DIR is set; this process's alone otherwise.
registry = MetricsRegistry()
registry.describe("http_requests_total", "Requests served, by path.")
in_flight = registry.gauge("http_requests_in_flight", description="Requests being served.")
latency = registry.histogram("http_request_seconds", description="Time to serve a request.")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


async def _respond(send: Send, body: bytes, content_type: str) -> None:
    headers = [(b"content-type", content_type.encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """``/metrics`` in the format the scraper asks for; anything else is
    counted and answered with the worker's process id."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["type"] != "http":
        return
    if scope["path"] == "/metrics":
        headers = dict(scope["headers"])
        fmt = negotiate(headers.get(b"accept", b"").decode("latin-1"))
        await _respond(send, registry.export(fmt).encode(), CONTENT_TYPES[fmt])
        return
    in_flight.inc()
    try:
        with latency.time():
            registry.counter("http_requests_total", {"path": scope["path"]}).inc()
            await _respond(send, f"served by {os.getpid()}\n".encode(), "text/plain")
    finally:
        in_flight.dec()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


def main() -> None:
    """Serve under ``uvicorn --workers 2``, send 20 requests, show the total."""
    parser = argparse.ArgumentParser(prog="workers.py", description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="0: a free one")
    port = parser.parse_args().port or _free_port()
    with tempfile.TemporaryDirectory() as directory:
        env = {**os.environ, "PEPPERPY_CORE_METRICS_DIR": directory}
        here = os.path.dirname(os.path.abspath(__file__))
        command = [sys.executable, "-m", "uvicorn", "workers:app", "--app-dir", here]
        command += ["--workers", "2", "--port", str(port), "--log-level", "warning"]
        server = subprocess.Popen(command, env=env)
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                try:
                    _get(f"{base}/metrics")
                    break
                except OSError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise
                    time.sleep(0.1)
            for _ in range(20):
                _get(f"{base}/hello")
            for line in _get(f"{base}/metrics").splitlines():
                if line.startswith("http_requests_total"):
                    print(line)
        finally:
            server.terminate()
            server.wait(30)


if __name__ == "__main__":
    main()
