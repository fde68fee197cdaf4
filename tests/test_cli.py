"""The command line: ``python -m pepperpy_core`` and the ``pepperpy-core`` script."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request

import pytest

import pepperpy_core

pytestmark = pytest.mark.backend


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pepperpy_core", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
        env=dict(os.environ),
    )


def test_info_reports_version_backend_and_python() -> None:
    out = _cli("info")
    assert out.returncode == 0, out.stderr
    rows = dict(line.split(None, 1) for line in out.stdout.splitlines())
    assert rows["pepperpy-core"] == pepperpy_core.__version__
    assert rows["backend"] == pepperpy_core.BACKEND
    assert rows["python"].startswith("CPython 3.")
    if pepperpy_core.BACKEND == "native":
        assert rows["extension"].endswith((".so", ".pyd"))
    else:
        assert rows["extension"] == "not loaded"


def test_demo_runs_the_whole_application() -> None:
    out = _cli("demo", "--requests", "300", "--keys", "40")
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert f"backend: {pepperpy_core.BACKEND}" in text
    assert "starting 4 modules: database -> cache -> stats -> api" in text
    assert "database connected after 3 attempts (2 refused" in text
    assert "served 300 of 300 requests" in text
    assert "Health: healthy" in text
    for table in ("Start-up", "Metrics", "Shutdown (reverse order)"):
        assert table in text
    assert "latency p50 / p90 / p99" in text
    assert text.rstrip().endswith("all modules stopped cleanly")
    assert "attempt 1 of 5 failed" in out.stderr  # the retries are logged


def test_demo_stops_cleanly_on_ctrl_c() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "pepperpy_core", "demo", "--requests", "100000000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("database connected"):
            break
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted: stopping cleanly" in out
    assert "all modules stopped cleanly" in out


@pytest.mark.parametrize("stop_with", [signal.SIGINT, signal.SIGTERM])
def test_demo_serve_keeps_the_endpoints_up_until_a_signal(stop_with: signal.Signals) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "pepperpy_core", "demo", "--requests", "50", "--serve", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    try:
        assert proc.stdout is not None
        base = None
        for line in proc.stdout:
            if line.startswith("serving on "):
                base = line.split()[2]
            if line.startswith("Ctrl-C stops"):
                break
        assert base is not None, "no address printed"
        assert base.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(f"{base}/readyz", timeout=10) as response:
            assert response.status == 200
        with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:
            text = response.read().decode()
        assert 'pepperpy_module_up{module="api"} 1.0' in text
        assert 'request_seconds_count{module="api"}' in text
    finally:
        proc.send_signal(stop_with)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "all modules stopped cleanly" in out
    port = int(base.rsplit(":", 1)[1])
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0  # nothing listens any more


def test_bench_is_quick_and_prints_ratios() -> None:
    out = _cli("bench", "--ops", "300")
    assert out.returncode == 0, out.stderr
    assert "FIFOCache set with eviction" in out.stdout
    assert f"x {pepperpy_core.BACKEND}" in out.stdout
    assert "spec dict FIFO" in out.stdout
    assert "[ 1/" in out.stdout  # progress


@pytest.mark.parametrize(
    "args",
    [
        (),
        ("frobnicate",),
        ("info", "--bogus"),
        ("demo", "--requests", "0"),
        ("demo", "--keys", "x"),
        ("bench", "--ops", "-1"),
        ("demo", "--serve", "70000"),
        ("demo", "--serve", "http"),
        ("demo", "--serve"),
    ],
)
def test_bad_arguments_are_a_usage_error(args: tuple[str, ...]) -> None:
    out = _cli(*args)
    assert out.returncode == 2
    assert "usage:" in out.stderr


@pytest.mark.parametrize("command", [(), ("info",), ("demo",), ("bench",)])
def test_help_on_every_command(command: tuple[str, ...]) -> None:
    out = _cli(*command, "--help")
    assert out.returncode == 0
    assert out.stdout.startswith("usage: pepperpy-core")


def test_console_script_is_installed() -> None:
    script = shutil.which("pepperpy-core", path=os.path.dirname(sys.executable))
    assert script is not None
    out = subprocess.run([script, "info"], capture_output=True, text=True, check=False, timeout=60)
    assert out.returncode == 0
    assert "backend" in out.stdout


def test_a_closed_pipe_is_not_a_traceback() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "pepperpy_core", "demo", "--requests", "200"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    proc.stdout.readline()
    proc.stdout.close()  # like `| head -1`
    _, err = proc.communicate(timeout=60)
    assert "Traceback" not in err
    assert proc.returncode in (0, 1)
