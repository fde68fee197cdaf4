"""Turn pytest-benchmark JSON files into the README's tables.

Run: ``python benches/report.py .benchmarks/run1.json [run2.json ...]``.

Within each run every ratio is a ratio of medians measured in that run; with
several runs (this machine is shared and its speed drifts between runs), the
table shows, per subject, the run-by-run median of those ratios and the
median ns/op.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict

#: Operations in one benchmark call, per group (see the benchmark modules).
OPS_PER_CALL = {
    "of 100 keys": 1_000,
    "DAG of 1,000 modules": 1_000,  # ns per module
    "DAG of 10,000 modules": 10_000,
    "per render": 1,
    "per scrape": 1,
    "10k per call": 10_000,
    "200 per call": 200,
    "100 keys from Redis, per call": 1,
}
DEFAULT_OPS = 1_000


def _ops(group: str) -> int:
    for marker, ops in OPS_PER_CALL.items():
        if marker in group:
            return ops
    return DEFAULT_OPS


def load(path: str) -> dict[str, dict[str, float]]:
    """group -> subject -> median seconds per call, for one run."""
    with open(path) as f:
        data = json.load(f)
    groups: dict[str, dict[str, float]] = defaultdict(dict)
    for bench in data["benchmarks"]:
        groups[bench["group"]][bench["params"]["name"]] = bench["stats"]["median"]
    return groups


def main(paths: list[str]) -> None:
    runs = [load(p) for p in paths]
    for group in runs[0]:
        subjects = list(runs[0][group])
        ops = _ops(group)
        bases = (
            "dict",
            "prometheus_client",
            "bare-coroutines",
            "mode",
            "FIFOCache.get",
            "redis-py GET + json.loads",
            "100 x RedisCache.get",
            "native",
        )
        base = next((b for b in bases if b in subjects), subjects[0])
        print(f"\n{group} ({len(runs)} run(s)):\n")
        print(f"| subject | ns/op | x {base} | x native |")
        print("|---|---:|---:|---:|")
        rows = []
        for name in subjects:
            per_run = [r[group] for r in runs if name in r.get(group, {})]
            ns = statistics.median(g[name] for g in per_run) / ops * 1e9
            vs_base = statistics.median(g[name] / g[base] for g in per_run)
            vs_native = (
                statistics.median(g[name] / g["native"] for g in per_run)
                if "native" in subjects
                else float("nan")
            )
            rows.append((ns, name, vs_base, vs_native))
        for ns, name, vs_base, vs_native in sorted(rows):
            print(f"| {name} | {ns:.1f} | {vs_base:.2f} | {vs_native:.2f} |")


if __name__ == "__main__":
    main(sys.argv[1:])
