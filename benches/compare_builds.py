"""Two builds of the extension, compared in one run: ``python
benches/compare_builds.py PYTHON_A PYTHON_B [ROUNDS]`` runs
``native_round.py`` in each interpreter in turn (9 rounds by default) and
prints the medians and B / A. Used for abi3 against the per-version build
(see benches/README.md): install each build into a venv of its own first.
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
    runs: dict[str, list[dict[str, float]]] = {first: [], second: []}
    for _ in range(rounds):
        for python in (first, second):
            done = subprocess.run(
                [python, str(ROUND)], capture_output=True, text=True, check=True, cwd="/"
            )
            runs[python].append(json.loads(done.stdout))
    width = max(len(case) for case in runs[first][0])
    for case in runs[first][0]:
        a = statistics.median(r[case] for r in runs[first])
        b = statistics.median(r[case] for r in runs[second])
        print(f"{case:<{width}}  A {a:7.1f} ns  B {b:7.1f} ns  B/A {b / a:5.2f}x")


if __name__ == "__main__":
    main()
