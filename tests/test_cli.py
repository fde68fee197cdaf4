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
    for table in ("Start-up: modules in the order they began", "Metrics", "Shutdown: modules"):
        assert table in text
    assert "latency p50 / p90 / p99" in text
    assert text.rstrip().endswith("all modules stopped cleanly")
    assert "attempt 1 of 5 failed" in out.stderr  # the retries are logged


def _table(text: str, title: str) -> list[list[str]]:
    """The rows of the table under ``title`` (cells split on blanks)."""
    lines = text.split(title, 1)[1].splitlines()
    rows = []
    for line in lines[3:]:  # title line rest, header, rule
        if not line.strip():
            break
        rows.append(line.split())
    return rows


def test_demo_tables_show_what_their_titles_say() -> None:
    text = _cli("demo", "--requests", "200").stdout
    startup = _table(text, "Start-up: modules in the order they began")
    began = [float(row[2]) for row in startup]  # "began at" in ms
    assert began == sorted(began)
    # The database and the two modules without dependencies begin together;
    # the api begins after the database (its retries) is ready.
    assert startup[-1][0] == "api"
    assert began[-1] >= float(startup[0][4]) - 1.0  # after the database took its time
    shutdown = [row[0] for row in _table(text, "Shutdown: modules in the order")]
    assert shutdown[0] == "api"  # dependents first
    assert sorted(shutdown) == ["api", "cache", "database", "stats"]


def _interrupt(after: str | None, sig: signal.Signals, *args: str) -> tuple[int, str, str]:
    """Start the demo, wait for a line starting with ``after`` (or not at
    all), send ``sig``; (status, stdout, stderr)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "pepperpy_core", "demo", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    assert proc.stdout is not None
    seen = []
    if after is not None:
        for line in proc.stdout:
            seen.append(line)
            if line.startswith(after):
                break
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    return proc.returncode, "".join(seen) + out, err


@pytest.mark.parametrize(("sig", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_demo_stops_cleanly_on_a_signal_in_the_middle(sig: signal.Signals, status: int) -> None:
    code, out, err = _interrupt("database connected", sig, "--requests", "100000000")
    assert code == status, err
    assert f"{sig.name}: stopping cleanly" in out
    assert "all modules stopped cleanly" in out
    assert "Traceback" not in err
    assert "served " not in out  # stopped in the middle, not after the last request


@pytest.mark.parametrize("after", ["pepperpy-core", "starting", "Start-up", "database connected"])
def test_ctrl_c_at_any_moment_is_a_quiet_130(after: str) -> None:
    code, out, err = _interrupt(after, signal.SIGINT, "--requests", "100000000")
    assert code == 130, err
    assert "Traceback" not in err
    assert "KeyboardInterrupt" not in err
    if "Start-up" in out:  # started: it was stopped cleanly
        assert "all modules stopped cleanly" in out


#: Runs the command line as ``python -m pepperpy_core`` does, with an import
#: hook that says when ``argv[1]`` is about to be imported and waits there
#: (on stdin, which never sends anything) until a signal interrupts it.
_PAUSED_AT_IMPORT = """
import runpy, sys

WHERE = sys.argv.pop(1)

class Pause:
    def find_spec(self, name, path=None, target=None):
        if name == WHERE:
            sys.meta_path.remove(self)
            print("importing", name, flush=True)
            sys.stdin.readline()
        return None

sys.meta_path.insert(0, Pause())
runpy.run_module("pepperpy_core", run_name="__main__", alter_sys=True)
"""


@pytest.mark.parametrize(
    "module",
    [
        "argparse",  # the command line's first import
        "pepperpy_core._backend",  # choosing the backend (loads the extension)
        "pepperpy_core._demo",  # the demo
        "asyncio",  # what the demo runs on
    ],
)
def test_ctrl_c_during_the_imports_is_a_quiet_130(module: str) -> None:
    # Once the interpreter has started (a signal before then is Python's
    # own business), Ctrl-C at any import is a quiet 130.
    proc = subprocess.Popen(
        [sys.executable, "-c", _PAUSED_AT_IMPORT, module, "demo", "--requests", "100000000"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()  # the hook waits there: a readiness signal
    if first != f"importing {module}\n":
        proc.kill()
        pytest.fail(f"the hook never paused: {first!r} {proc.communicate()}")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert "KeyboardInterrupt" not in err


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
    assert proc.returncode == 128 + stop_with, err
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


def test_a_closed_pipe_is_a_quiet_success() -> None:
    for args in (("demo", "--requests", "200"), ("info",), ("bench", "--ops", "300")):
        proc = subprocess.Popen(
            [sys.executable, "-m", "pepperpy_core", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        proc.stdout.readline()
        proc.stdout.close()  # like `| head -1`
        _, err = proc.communicate(timeout=120)
        assert "Traceback" not in err, args
        assert "BrokenPipe" not in err, args
        assert proc.returncode == 0, (args, err)


@pytest.mark.parametrize("value", ["bogus", "NATIVE!", "1"])
def test_a_bad_backend_choice_is_one_line_and_status_2(value: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "pepperpy_core", "info"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env={**os.environ, "PEPPERPY_CORE_BACKEND": value},
    )
    assert out.returncode == 2
    assert out.stdout == ""
    lines = out.stderr.splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("pepperpy-core: error: PEPPERPY_CORE_BACKEND must be one of")


def test_version() -> None:
    out = _cli("--version")
    assert (out.returncode, out.stdout) == (0, f"pepperpy-core {pepperpy_core.__version__}\n")


@pytest.mark.parametrize(
    ("args", "usage"),
    [
        (("--bogus",), "usage: pepperpy-core [-h]"),
        (("demo", "--bogus"), "usage: pepperpy-core demo"),
        (("info", "extra"), "usage: pepperpy-core info"),
        (("bench", "--ops", "1", "--what"), "usage: pepperpy-core bench"),
    ],
)
def test_unknown_arguments_are_named_with_the_right_usage(
    args: tuple[str, ...], usage: str
) -> None:
    out = _cli(*args)
    assert out.returncode == 2
    assert out.stderr.startswith(usage), out.stderr
    assert "unrecognized arguments" in out.stderr
