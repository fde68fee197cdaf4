"""One round of the caches' hot paths on both backends, printed as JSON (ns
per operation, and the ratios the goals are stated in): what
``compare_builds.py A B ROUNDS benches/cache_round.py`` runs in each
interpreter, alternating, to compare two builds (before and after a change).

Measured: a ``get`` hit against ``dict.get`` (str keys), and a set that
evicts (``cache[key] = 1`` over keys evicted one maxsize ago) against
cachetools' FIFOCache; for a build with expiry, the same on caches with a
time to live (nothing expires: the cost of checking).
"""

from __future__ import annotations

import json
import timeit
from collections.abc import Callable
from typing import Any

from pepperpy_core import _backend

try:
    import cachetools
except ImportError:
    cachetools = None

SIZE = 1000
KEYS = [f"key-{i}" for i in range(SIZE)]
FRESH = [f"new-{i}" for i in range(SIZE)]


def _ns(body: Callable[[], None], ops: int) -> float:
    return min(timeit.repeat(body, number=20, repeat=5)) / 20 / ops * 1e9


def _hits(get: Callable[[Any], Any]) -> float:
    def run() -> None:
        for key in KEYS:
            get(key)

    return _ns(run, SIZE)


def _evicting(cache: Any) -> float:
    for key in KEYS:
        cache[key] = 1
    turn = [0]

    def run() -> None:
        turn[0] += 1
        for key in FRESH if turn[0] % 2 else KEYS:
            cache[key] = 1

    return _ns(run, SIZE)


def _filled(cache: Any) -> Any:
    for key in KEYS:
        cache[key] = key
    return cache


def main() -> None:
    out: dict[str, float] = {}
    out["dict.get hit"] = _hits({k: k for k in KEYS}.get)
    expiry = True
    for backend in _backend.available():
        for kind in ("FIFOCache", "S3FIFOCache"):
            cls = getattr(backend, kind)
            name = f"{backend.name} {kind}"
            out[f"{name} get hit"] = _hits(_filled(cls(SIZE)).get)
            out[f"{name} set evicting"] = _evicting(cls(SIZE))
            try:
                timed = cls(SIZE, ttl=1e9)
            except TypeError:  # a build without expiry
                expiry = False
                continue
            out[f"{name} ttl get hit"] = _hits(_filled(timed).get)
            out[f"{name} ttl set evicting"] = _evicting(cls(SIZE, ttl=1e9))
    if cachetools is not None:
        out["cachetools FIFOCache set evicting"] = _evicting(cachetools.FIFOCache(SIZE))
    ratios: dict[str, float] = {}
    for key, value in out.items():
        if key.endswith("get hit") and key != "dict.get hit":
            ratios[f"{key} / dict.get"] = value / out["dict.get hit"]
    if cachetools is not None:
        for key, value in out.items():
            if key.endswith("set evicting") and not key.startswith("cachetools"):
                ratios[f"cachetools / {key}"] = out["cachetools FIFOCache set evicting"] / value
    out.update(ratios)
    out["has expiry"] = float(expiry)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
