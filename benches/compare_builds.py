"""Two builds of the extension, compared in one run: ``python
benches/compare_builds.py PYTHON_A PYTHON_B [ROUNDS] [SCRIPT]`` runs SCRIPT
(``native_round.py`` by default; ``cache_round.py`` for both backends'
caches) in each interpreter in turn (9 rounds by default) and prints the
medians and B / A. Used for abi3 against the per-version build, and for a
change against the build before it (see benches/README.md): install each
build into a venv of its own first.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

ROUND = Path(__file__).with_name("native_round.py")


def main() -> None:
    first, second = sys.argv[1:3]
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 9
    script = Path(sys.argv[4]).resolve() if len(sys.argv) > 4 else ROUND
    runs: dict[str, list[dict[str, float]]] = {first: [], second: []}
    for _ in range(rounds):
        for python in (first, second):
            done = subprocess.run(
                [python, str(script)], capture_output=True, text=True, check=True, cwd="/"
            )
            runs[python].append(json.loads(done.stdout))
    cases = list(dict.fromkeys([*runs[first][0], *runs[second][0]]))
    width = max(len(case) for case in cases)
    for case in cases:
        a = _median(runs[first], case)
        b = _median(runs[second], case)
        unit = "x " if "/" in case or case.startswith("has ") else "ns"
        shown_a = f"{a:7.2f} {unit}" if a is not None else "      -   "
        shown_b = f"{b:7.2f} {unit}" if b is not None else "      -   "
        change = f"  B/A {b / a:5.2f}x" if a and b is not None else ""
        print(f"{case:<{width}}  A {shown_a}  B {shown_b}{change}")


def _median(runs: list[dict[str, float]], case: str) -> float | None:
    values = [r[case] for r in runs if case in r]
    return statistics.median(values) if values else None


if __name__ == "__main__":
    main()
