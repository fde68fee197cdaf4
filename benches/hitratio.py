"""Hit ratio of S3FIFOCache and its peers on every trace of ``traces.py``, at
capacities of 1% and 10% of each trace's keys; prints markdown tables.

Each request is a read-through: ``get(key)``; on a miss, ``set(key, 1)``.
The hit ratio is hits / requests (the cold start included). Peers are the
``bench`` extra's (``pip install -e '.[bench]'``); those missing are left out.

    python benches/hitratio.py                    # about 3 minutes on the CI machine
    python benches/hitratio.py --requests 200000  # quicker
    python benches/hitratio.py --backend python   # the pure-Python classes (slower)
    python benches/hitratio.py --model            # also the reference model
                                                  # (tests/s3fifo_model.py): equal hits

theine and moka-py are not deterministic (their buffers drain on their own
schedule): their figures move by a few tenths of a point between runs. The
others are exact for a given trace.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pepperpy_core import _backend
from traces import Trace, all_traces  # beside this script (its folder is sys.path[0])

#: Runs one trace through a fresh cache of a capacity; returns (hits, final len).
Runner = Callable[[Sequence[int], int], tuple[int, int]]


def _read_through(
    get: Callable[[int], object], put: Callable[[int, int], object], requests: Sequence[int]
) -> int:
    hits = 0
    for key in requests:
        if get(key) is None:
            put(key, 1)
        else:
            hits += 1
    return hits


def _plain(make: Callable[[int], Any], put: str = "__setitem__") -> Runner:
    """A runner for a cache with ``get`` (None on a miss) and ``put``."""

    def run(requests: Sequence[int], capacity: int) -> tuple[int, int]:
        cache = make(capacity)
        return _read_through(cache.get, getattr(cache, put), requests), len(cache)

    return run


def _moka(module: Any) -> Runner:
    def run(requests: Sequence[int], capacity: int) -> tuple[int, int]:
        cache = module.Moka(capacity)
        hits = _read_through(cache.get, cache.set, requests)
        cache.run_pending_tasks()
        return hits, int(cache.count())

    return run


def _theine(module: Any) -> Runner:
    def run(requests: Sequence[int], capacity: int) -> tuple[int, int]:
        cache = module.Cache(capacity)
        get, put = cache.get, cache.set
        hits = 0
        for key in requests:
            if get(key)[1]:  # theine 2's get returns (value, found)
                hits += 1
            else:
                put(key, 1)
        size = len(cache)
        cache.close()
        return hits, size

    return run


def _optional(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def peers() -> dict[str, Runner]:
    """The peers installed here, by name."""
    found: dict[str, Runner] = {}
    if (lru := _optional("lru")) is not None:
        found["lru-dict"] = _plain(lru.LRU)
    if (cachetools := _optional("cachetools")) is not None:
        found["cachetools LRU"] = _plain(cachetools.LRUCache)
        found["cachetools FIFO"] = _plain(cachetools.FIFOCache)
    if (moka := _optional("moka_py")) is not None:
        found["moka-py"] = _moka(moka)
    if (theine := _optional("theine")) is not None:
        found["theine"] = _theine(theine)
    return found


S3 = "S3FIFOCache"
LRU = ("lru-dict", "cachetools LRU")


@dataclass
class Row:
    trace: Trace
    capacity: int
    ratios: dict[str, float]


def measure(traces: list[Trace], subjects: dict[str, Runner], shares: Sequence[float]) -> list[Row]:
    """Every subject on every trace at every share of the keys, with progress on stderr."""
    rows = []
    for share in shares:
        for trace in traces:
            capacity = max(1, int(trace.keys * share))
            ratios = {}
            for name, run in subjects.items():
                started = time.perf_counter()
                hits, size = run(trace.requests, capacity)
                ratios[name] = hits / len(trace.requests)
                print(
                    f"  {trace.name} cap={capacity} {name}: {ratios[name]:.4f} "
                    f"(len {size}, {time.perf_counter() - started:.1f}s)",
                    file=sys.stderr,
                )
            rows.append(Row(trace, capacity, ratios))
    return rows


def table(rows: list[Row], names: list[str], peer_names: list[str]) -> str:
    """The markdown table, the best of each row in bold, with the verdicts."""
    head = ["trace", "capacity", *names, "best peer", "S3 >= best peer", "S3 > LRU"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [row.trace.name, f"{row.capacity:,}"]
        top = max(row.ratios.values())
        for name in names:
            text = f"{row.ratios[name]:.4f}"
            cells.append(f"**{text}**" if row.ratios[name] == top else text)
        s3 = row.ratios[S3]
        best = max(((row.ratios[n], n) for n in peer_names), default=(0.0, "-"))
        lru = max((row.ratios[n] for n in LRU if n in row.ratios), default=0.0)
        verdicts = ["yes" if s3 >= best[0] else "NO", "yes" if s3 > lru else "NO"]
        cells += [f"{best[1]} {best[0]:.4f}", *verdicts]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=23)
    parser.add_argument("--backend", choices=["native", "python"], default="native")
    parser.add_argument("--model", action="store_true", help="also tests/s3fifo_model.py")
    args = parser.parse_args()
    backend = _backend.load(args.backend)
    traces = list(all_traces(args.keys, args.requests, args.seed))
    print(
        f"keys={args.keys:,} requests={args.requests:,} seed={args.seed}; python "
        f"{sys.version.split()[0]}; pepperpy backend {backend.name}"
    )
    for trace in traces:
        print(f"- {trace.name}: {trace.distinct:,} distinct keys, digest {trace.digest}")
    found = peers()
    subjects: dict[str, Runner] = {S3: _plain(backend.S3FIFOCache, "set"), **found}
    subjects["FIFOCache"] = _plain(backend.FIFOCache, "set")
    if args.model:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
        from s3fifo_model import S3FIFO

        subjects["model"] = _plain(S3FIFO, "set")
    rows = measure(traces, subjects, (0.01, 0.1))
    print()
    print(table(rows, list(subjects), list(found)))


if __name__ == "__main__":
    main()
