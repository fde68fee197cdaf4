"""The /metrics body of 1,000 and 10,000 series (half counters, half
histograms: the exposition benchmark's registry), rendered by each backend
built here, best of 20 renders: ``python benches/render_speed.py``. Run it
with another build's interpreter to compare builds."""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benches.test_exposition_bench import _fill
from pepperpy_core import _backend
from pepperpy_core.metrics import RegistryBase


def main() -> None:
    for series in (500, 5000):
        best: dict[str, float] = {}
        for backend in _backend.available():
            registry = _fill(type("R", (RegistryBase, backend.RegistryCore), {})(), series)
            registry.export("prometheus")  # label text made once, as a server's first scrape
            times = []
            for _ in range(20):
                started = time.perf_counter()
                registry.export("prometheus")
                times.append(time.perf_counter() - started)
            best[backend.name] = min(times)
        shown = ", ".join(f"{name} {seconds * 1e3:.2f} ms" for name, seconds in best.items())
        ratio = best["python"] / best["native"] if "native" in best else float("nan")
        print(f"{2 * series:,} series: {shown}; native {ratio:.1f}x faster")


if __name__ == "__main__":
    main()
