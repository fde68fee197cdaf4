#!/usr/bin/env bash
# Runs the benchmark suite RUNS times (default 3) and prints the README tables.
# Usage: bash benches/run.sh [RUNS] [pytest -k expression]
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-3}"
select="${2:-}"
mkdir -p .benchmarks
files=()
for i in $(seq 1 "$runs"); do
    out=".benchmarks/run$i.json"
    python -m pytest benches -q -p no:cacheprovider ${select:+-k "$select"} \
        --benchmark-min-rounds=30 --benchmark-json="$out" >/dev/null
    files+=("$out")
done
python benches/report.py "${files[@]}"
