"""``/metrics`` throughput: an Application serving 1,000 series (the
exposition benchmark's registry) on a loopback port, loaded by ``wrk``
(Debian's ``wrk`` package), once per backend, each in a process of its own:
``python benches/metrics_throughput.py [SECONDS] [CONNECTIONS]``.

Prints requests per second per backend and format, and native / python.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def serve() -> None:
    """In the child: serve the registry until stdin closes; print the port first."""
    sys.path.insert(0, str(ROOT))
    from benches.test_exposition_bench import _fill
    from pepperpy_core import Application

    async def main() -> None:
        app = Application(http="127.0.0.1:0")
        _fill(app.metrics)
        async with app:
            print(app.http_port, flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

    asyncio.run(main())


def _load(port: int, seconds: int, connections: int, accept: str) -> float:
    wrk = shutil.which("wrk")
    if wrk is None:
        sys.exit("wrk is not installed (apt-get install wrk)")
    done = subprocess.run(
        [
            wrk,
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "-H",
            f"Accept: {accept}",
            f"http://127.0.0.1:{port}/metrics",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    found = re.search(r"Requests/sec:\s+([\d.]+)", done.stdout)
    if found is None or "Non-2xx" in done.stdout:
        sys.exit(f"wrk did not report clean answers:\n{done.stdout}")
    return float(found.group(1))


def main(seconds: int, connections: int) -> None:
    accepts = {"prometheus": "text/plain", "openmetrics": "application/openmetrics-text"}
    rates: dict[tuple[str, str], float] = {}
    for backend in ("native", "python"):
        env = {**os.environ, "PEPPERPY_CORE_BACKEND": backend}
        child = subprocess.Popen(
            [sys.executable, __file__, "serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert child.stdout is not None
        assert child.stdin is not None
        try:
            port = int(child.stdout.readline())  # printed once it listens
            for fmt, accept in accepts.items():
                _load(port, 1, connections, accept)  # warm-up
                rates[backend, fmt] = _load(port, seconds, connections, accept)
        finally:
            child.stdin.close()
            child.wait(30)
    print(f"wrk -t1 -c{connections} -d{seconds}s, 1,000 series")
    for fmt in accepts:
        native, python = rates["native", fmt], rates["python", fmt]
        print(
            f"{fmt:>11}: native {native:8.0f} req/s, python {python:8.0f} req/s: "
            f"{native / python:.2f}x"
        )


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        serve()
    else:
        main(
            int(sys.argv[1]) if len(sys.argv) > 1 else 5,
            int(sys.argv[2]) if len(sys.argv) > 2 else 8,
        )
