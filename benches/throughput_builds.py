"""``/metrics`` throughput of several builds in one run, rounds alternating so
that the machine's drift hits each alike: ``python benches/throughput_builds.py
SECONDS CONNECTIONS ROUNDS PYTHON [PYTHON ...]``.

Each PYTHON is the interpreter of a venv with a build installed (``pip install
. prometheus-client pytest`` in a checkout: the bench's registry module
imports both); each round serves the exposition benchmark's 1,000 series
from each build in turn (the native backend, a process of its own, see
``metrics_throughput.serve``) and loads it with ``wrk`` for SECONDS after a
one-second warm-up. Prints every round, then per build the range and median
of its requests per second and of its ratio to the first build's, round by
round.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benches.metrics_throughput import _load  # noqa: E402


def _round(python: str, seconds: int, connections: int) -> float:
    env = {**os.environ, "PEPPERPY_CORE_BACKEND": "native"}
    child = subprocess.Popen(
        [python, str(HERE / "metrics_throughput.py"), "serve"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd="/",  # each build's own package, not this checkout's
    )
    assert child.stdout is not None
    assert child.stdin is not None
    try:
        port = int(child.stdout.readline())  # printed once it listens
        _load(port, 1, connections, "text/plain")  # warm-up
        return _load(port, seconds, connections, "text/plain")
    finally:
        child.stdin.close()
        child.wait(30)


def main() -> None:
    seconds, connections, rounds = (int(a) for a in sys.argv[1:4])
    pythons = sys.argv[4:]
    rates: dict[str, list[float]] = {p: [] for p in pythons}
    for n in range(rounds):
        for python in pythons:
            rates[python].append(_round(python, seconds, connections))
            print(f"round {n + 1}: {rates[python][-1]:7.0f} req/s  {python}", flush=True)
    print(f"wrk -t1 -c{connections} -d{seconds}s, 1,000 series, {rounds} rounds")
    first = rates[pythons[0]]
    for python, seen in rates.items():
        ratios = [a / b for a, b in zip(seen, first, strict=True)]
        print(
            f"{min(seen):7.0f}-{max(seen):7.0f} req/s (median {statistics.median(seen):.0f}), "
            f"{min(ratios):.2f}-{max(ratios):.2f}x the first (median "
            f"{statistics.median(ratios):.2f}x): {python}"
        )


if __name__ == "__main__":
    main()
