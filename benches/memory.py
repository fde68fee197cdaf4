"""Resident memory of 1,000,000 int entries: each cache in a fresh process.

Run: ``python benches/memory.py``. Keys and values are the same int objects
(made before the measurement starts), so the figure is the container's own.
"""

from __future__ import annotations

import subprocess
import sys

N = 1_000_000
CHILD = """
import resource, sys
from benches._subjects import s3_subjects, subjects
keys = list(range(10**7, 10**7 + {n}))
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()
before = rss()
cache = {{**subjects(), **s3_subjects()}}[sys.argv[1]]({n})
for k in keys:
    cache[k] = k
print(rss() - before)
"""


def main() -> None:
    rows = []
    names = ("dict", "native", "python", "native-s3fifo", "python-s3fifo", "cachebox", "cachetools")
    for name in names:
        out = subprocess.run(
            [sys.executable, "-c", CHILD.format(n=N), name],
            capture_output=True,
            text=True,
            check=True,
        )
        rows.append((name, int(out.stdout)))
    base = dict(rows)["dict"]
    print(f"{'cache':<12} {'MiB':>8} {'x dict':>7}")
    for name, size in rows:
        print(f"{name:<12} {size / 2**20:8.1f} {size / base:7.2f}")


if __name__ == "__main__":
    main()
