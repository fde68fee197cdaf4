"""The backend switch: PEPPERPY_CORE_BACKEND picks the implementation."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

import pepperpy_core
from pepperpy_core import cache

pytestmark = pytest.mark.backend


def _run(code: str, backend: str | None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("PEPPERPY_CORE_BACKEND", None)
    if backend is not None:
        env["PEPPERPY_CORE_BACKEND"] = backend
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_active_backend_is_the_one_asked_for() -> None:
    asked = os.environ.get("PEPPERPY_CORE_BACKEND", "auto").strip().lower()
    if asked in {"native", "python"}:
        assert asked == pepperpy_core.BACKEND
    assert pepperpy_core.BACKEND in {"native", "python"}
    expected = (
        "pepperpy_core._native"
        if pepperpy_core.BACKEND == "native"
        else ("pepperpy_core._fallback.cache")
    )
    assert cache.FIFOCache.__module__ == expected
    assert cache.S3FIFOCache.__module__ == expected.replace(".cache", ".s3fifo")


def test_python_backend_never_imports_the_extension() -> None:
    out = _run(
        """
        import sys, pepperpy_core
        print(pepperpy_core.BACKEND, "pepperpy_core._native" in sys.modules)
        """,
        "python",
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["python", "False"]


@pytest.mark.parametrize("value", ["rust", "1", "fast"])
def test_unknown_backend_value_is_refused(value: str) -> None:
    # ``import pepperpy_core`` alone succeeds (its names load on first use).
    out = _run("import pepperpy_core; from pepperpy_core import FIFOCache", value)
    assert out.returncode == 1
    assert "PEPPERPY_CORE_BACKEND must be one of auto, native, python" in out.stderr
    assert repr(value) in out.stderr


_HIDE_EXTENSION = """
import importlib.abc, sys
class _Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "pepperpy_core._native":
            raise ImportError("hidden for the test")
        return None
sys.meta_path.insert(0, _Hide())
"""


def test_native_without_extension_says_how_to_build_it() -> None:
    out = _run(_HIDE_EXTENSION + "from pepperpy_core import FIFOCache", "native")
    assert out.returncode == 1
    assert "pip install" in out.stderr
    assert "PEPPERPY_CORE_BACKEND=python" in out.stderr


def test_auto_falls_back_when_the_extension_is_missing() -> None:
    out = _run(_HIDE_EXTENSION + "import pepperpy_core; print(pepperpy_core.BACKEND)", None)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "python"
