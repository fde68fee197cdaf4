"""Each program in examples/ runs to completion and does what it says."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.asgiutil import answers, fetch
from tests.asyncutil import run, until_true
from tests.servers import free_port

pytestmark = pytest.mark.backend

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _run(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env=dict(os.environ),
    )


def test_every_example_has_a_test() -> None:
    tested = {
        "service.py",
        "cache_and_metrics.py",
        "retry_and_state.py",
        "fastapi_service.py",
        "workers.py",
    }
    assert {p.name for p in EXAMPLES.glob("*.py")} == tested


def test_service_runs_and_stops_cleanly() -> None:
    out = _run("service.py", "--seconds", "1.2")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "broker connected after 2 attempts" in lines
    assert any(line.startswith("health: healthy") for line in lines)
    # Stopped in reverse dependency order: the worker, then the broker's resources.
    assert lines.index("connection closed") > next(
        i for i, line in enumerate(lines) if line.startswith("worker stopped after")
    )
    assert lines[-1] == "service stopped"  # its time was up: no signal


@pytest.mark.parametrize(("sig", "status"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_service_stops_on_a_signal_and_exits_like_the_demo(
    sig: signal.Signals, status: int
) -> None:
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "service.py")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("broker connected"):
            break
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == status, err
    assert "Traceback" not in err
    assert "connection closed" in out
    assert out.rstrip().endswith(f"service stopped by {sig.name}")


@pytest.mark.parametrize(
    ("name", "args", "message"),
    [
        ("service.py", ("--seconds", "-1"), "must be a finite number of seconds > 0"),
        ("service.py", ("--seconds", "nan"), "must be a finite number of seconds > 0"),
        ("service.py", ("--seconds", "soon"), "not a number"),
        ("service.py", ("--bogus",), "unrecognized arguments: --bogus"),
        ("cache_and_metrics.py", ("--bogus",), "unrecognized arguments: --bogus"),
        ("retry_and_state.py", ("x",), "unrecognized arguments: x"),
        ("fastapi_service.py", ("--port", "x"), "invalid int value: 'x'"),
        ("fastapi_service.py", ("--drain", "-1"), "drain must be a finite number of seconds >= 0"),
    ],
)
def test_examples_refuse_bad_arguments(name: str, args: tuple[str, ...], message: str) -> None:
    out = _run(name, *args)
    assert out.returncode == 2
    assert out.stdout == ""
    assert out.stderr.startswith(f"usage: {name}")
    assert message in out.stderr


def test_cache_and_metrics() -> None:
    out = _run("cache_and_metrics.py")
    assert out.returncode == 0, out.stderr
    assert "sessions: [('bob', 2), ('carol', 3)]" in out.stdout
    assert "backend lookups: 10 " in out.stdout
    assert 'user_lookup_seconds_count{module="users"} 100' in out.stdout
    assert "user_requests_total 100" in out.stdout


def test_retry_and_state() -> None:
    out = _run("retry_and_state.py")
    assert out.returncode == 0, out.stderr
    assert "watcher saw versions [1, 2, 3]" in out.stdout
    assert "state version: 3" in out.stdout
    assert "attempt 1 of 3 failed" in out.stderr


def test_fastapi_service_serves_counts_drains_and_stops() -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [
            sys.executable,
            str(EXAMPLES / "fastapi_service.py"),
            "--port",
            str(port),
            "--drain",
            "3600",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    async def main() -> None:
        await until_true(lambda: answers(base + "/ops/readyz", 200), within=60)
        for _ in range(2):
            status, _, body = await fetch(base + "/products/tea")
            assert (status, json.loads(body)) == (
                200,
                {"sku": "tea", "name": "Green tea", "stock": 12},
            )
        assert (await fetch(base + "/products/nope"))[0] == 404
        status, _, body = await fetch(base + "/ops/metrics")
        seen = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body.decode())
            for s in family.samples
        }
        catalog, inventory = (("module", "catalog"),), (("module", "inventory"),)
        assert seen["pepperpy_cache_hits_total", catalog] == 1
        assert seen["pepperpy_cache_loads_total", catalog] == 2  # tea, nope
        assert seen["pepperpy_retry_calls_total", inventory] == 2
        assert seen["pepperpy_retry_attempts_total", inventory] == 4  # each call retried once
        route = (("method", "GET"), ("route", "/products/{sku}"))
        assert seen["http_server_request_duration_seconds_count", (*route, ("status", "200"))] == 2
        assert seen["http_server_request_duration_seconds_count", (*route, ("status", "404"))] == 1
        proc.send_signal(signal.SIGTERM)
        await until_true(lambda: answers(base + "/ops/readyz", 503), within=30)
        assert (await fetch(base + "/products/cake"))[0] == 200  # serving through the drain
        proc.send_signal(signal.SIGTERM)  # ends the drain

    try:
        run(main(), timeout=120)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert "Application shutdown complete" in err, err
    assert "Traceback" not in err
    assert proc.returncode == -signal.SIGTERM  # uvicorn ends by the signal it caught


def test_workers_share_their_requests_count() -> None:
    out = _run("workers.py", "--port", str(free_port()))
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ['http_requests_total{path="/hello"} 20']
