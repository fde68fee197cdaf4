"""Code that mypy must reject: each line marked ``# E: <message>`` in
tests/typing/fail/ gets exactly that error from ``mypy --strict``, and no
other line gets one. (What must pass is checked by CI's own mypy run.)"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

FAIL_DIR = Path(__file__).parent / "typing" / "fail"
FILES = sorted(FAIL_DIR.glob("*.py"))


def _expected(path: Path) -> dict[int, str]:
    out = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        match = re.search(r"# E: (.+)$", line)
        if match:
            out[number] = match.group(1).strip()
    return out


@pytest.fixture(scope="module")
def mypy_output() -> str:
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", *map(str, FILES)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    return result.stdout


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_mypy_rejects_exactly_the_marked_lines(path: Path, mypy_output: str) -> None:
    expected = _expected(path)
    assert expected, f"{path.name} marks no line"
    found: dict[int, list[str]] = {}
    for line in mypy_output.splitlines():
        match = re.match(rf".*{re.escape(path.name)}:(\d+): error: (.+)$", line)
        if match:
            found.setdefault(int(match.group(1)), []).append(match.group(2))
    assert set(found) == set(expected), mypy_output
    for number, message in expected.items():
        assert any(message in m for m in found[number]), (number, found[number])
