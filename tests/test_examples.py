"""Each program in examples/ runs to completion and does what it says."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

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
    tested = {"service.py", "cache_and_metrics.py", "retry_and_state.py"}
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
