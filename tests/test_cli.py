"""The command line: ``python -m pepperpy_core``."""

from __future__ import annotations

import os
import subprocess
import sys

import pepperpy_core


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pepperpy_core", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
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


def test_no_command_or_unknown_command_is_a_usage_error() -> None:
    for args in ((), ("frobnicate",), ("info", "--bogus")):
        out = _cli(*args)
        assert out.returncode == 2
        assert "usage:" in out.stderr


def test_help() -> None:
    out = _cli("--help")
    assert out.returncode == 0
    assert "info" in out.stdout
    out = _cli("info", "--help")
    assert out.returncode == 0
    assert "usage:" in out.stdout
