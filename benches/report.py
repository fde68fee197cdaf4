"""Turn a pytest-benchmark JSON file into the README's ratio table.

Run: ``python benches/report.py .benchmarks/cache.json``.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict


def main(path: str) -> None:
    with open(path) as f:
        data = json.load(f)
    groups: dict[str, dict[str, float]] = defaultdict(dict)
    for bench in data["benchmarks"]:
        name = bench["params"]["name"]
        groups[bench["group"]][name] = bench["stats"]["median"]
    for group, medians in groups.items():
        ops = 10_000 if "100 keys" in group else 1_000
        base = medians.get("dict")
        print(f"\n{group}: median ns per operation")
        print("| subject | ns/op | x dict | x native |")
        print("|---|---:|---:|---:|")
        native = medians.get("native")
        for name, median in sorted(medians.items(), key=lambda kv: kv[1]):
            per_op = median / ops * 1e9
            vs_dict = f"{median / base:.2f}" if base else "-"
            vs_native = f"{median / native:.2f}" if native else "-"
            print(f"| {name} | {per_op:.1f} | {vs_dict} | {vs_native} |")


if __name__ == "__main__":
    main(sys.argv[1])
