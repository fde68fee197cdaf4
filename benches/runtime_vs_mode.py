"""Start + stop of a random DAG of modules, pepperpy-core against mode,
rounds alternating between the two so that a shared machine's drift hits
both alike: ``python benches/runtime_vs_mode.py [ROUNDS]``.

Each round builds a fresh graph for each subject and collects garbage
before it is timed (as ``test_runtime_bench.py`` does). Prints, per size,
each subject's median time per module, the median of the per-round ratios
(mode / pepperpy: how many times faster), and how the 10,000 run compares
with the 1,000 one.
"""

from __future__ import annotations

import asyncio
import gc
import platform
import statistics
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benches.test_runtime_bench import (
    _mode_graph,
    _pepperpy_graph,
    _run_mode,
    _run_pepperpy,
)

SIZES = (1_000, 10_000, 50_000)


def _timed(
    loop: asyncio.AbstractEventLoop,
    build: Callable[[], Any],
    go: Callable[[Any], Coroutine[Any, Any, None]],
) -> float:
    graph = build()
    gc.collect()
    started = time.perf_counter()
    loop.run_until_complete(go(graph))
    return time.perf_counter() - started


def main(rounds: int) -> None:
    loop = asyncio.new_event_loop()
    print(f"{platform.python_implementation()} {platform.python_version()}, {rounds} rounds")
    medians: dict[int, float] = {}
    for size in SIZES:
        ours, theirs = _pepperpy_graph(size), _mode_graph(size)
        times: dict[str, list[float]] = {"pepperpy": [], "mode": []}
        for _ in range(rounds if size < 50_000 else max(3, rounds // 2)):
            times["pepperpy"].append(_timed(loop, ours, _run_pepperpy))
            times["mode"].append(_timed(loop, theirs, _run_mode))
        pairs = zip(times["pepperpy"], times["mode"], strict=True)
        ratio = statistics.median(m / p for p, m in pairs)
        medians[size] = statistics.median(times["pepperpy"])
        print(
            f"{size:>6,} modules: pepperpy {medians[size] / size * 1e6:5.1f} us/module, "
            f"mode {statistics.median(times['mode']) / size * 1e6:5.1f} us/module: "
            f"{ratio:.2f}x faster"
        )
    print(f"the 10,000 run costs {medians[10_000] / medians[1_000]:.1f}x the 1,000 run")
    loop.close()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 9)
