#!/usr/bin/env bash
# The whole test suite, once on the Rust extension and once on the pure-Python
# fallback. PEPPERPY_CORE_BACKEND=native makes a missing extension an import
# error instead of a silent fallback.
set -euo pipefail
cd "$(dirname "$0")/.."
PEPPERPY_CORE_BACKEND=native python -m pytest "$@"
PEPPERPY_CORE_BACKEND=python python -m pytest "$@"
