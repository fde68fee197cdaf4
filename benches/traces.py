"""Seeded, deterministic request traces for hit-ratio runs (``hitratio.py``).

Each trace is a list of int keys over a universe of ``keys`` keys (capacities
are a share of that universe). Popularity ranks are mapped to keys through a
seeded permutation, so that hot keys are not the small ints. The same
(kind, keys, requests, seed) always gives the same list; ``digest`` names it.

- ``zipf-S``: independent draws, P(rank r) proportional to 1 / (r + 1) ** S.
- ``scan``: Zipf(1.0) in blocks of 40 000 requests, each followed by a scan
  of 20 000 keys never requested before nor after (one-hit wonders, a third
  of the requests); ``keys`` counts only the Zipf universe.
- ``loop``: 0, 1, ..., keys - 1, 0, 1, ... (through the permutation): a loop
  larger than any cache of 1% or 10% of the keys.
- ``shift``: Zipf(1.0) whose hot set moves: the trace is cut into 10 phases
  and in phase p rank r names key perm[(r + p * keys // 20) % keys], so each
  phase's hottest keys were cold (rank >= 5% of the keys) in the one before.
"""

from __future__ import annotations

import hashlib
import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass

SCAN_BLOCK = 40_000
SCAN_LENGTH = 20_000
SHIFT_PHASES = 10


@dataclass(frozen=True)
class Trace:
    """A named request sequence over a universe of ``keys`` keys."""

    name: str
    keys: int
    requests: list[int]

    @property
    def distinct(self) -> int:
        return len(set(self.requests))

    @property
    def digest(self) -> str:
        """A short fingerprint of the exact sequence (to check a rerun)."""
        data = ",".join(map(str, self.requests)).encode()
        return hashlib.sha256(data).hexdigest()[:12]


def _cum_weights(keys: int, skew: float) -> list[float]:
    return list(itertools.accumulate(1.0 / (rank + 1) ** skew for rank in range(keys)))


def _ranks(rng: random.Random, keys: int, skew: float, count: int) -> list[int]:
    return rng.choices(range(keys), cum_weights=_cum_weights(keys, skew), k=count)


def _permutation(rng: random.Random, keys: int) -> list[int]:
    perm = list(range(keys))
    rng.shuffle(perm)
    return perm


def zipf(skew: float, keys: int, requests: int, seed: int) -> Trace:
    rng = random.Random(seed)
    perm = _permutation(rng, keys)
    ranks = _ranks(rng, keys, skew, requests)
    return Trace(f"zipf-{skew}", keys, [perm[r] for r in ranks])


def scan(keys: int, requests: int, seed: int) -> Trace:
    rng = random.Random(seed)
    perm = _permutation(rng, keys)
    ranks = iter(_ranks(rng, keys, 1.0, requests))
    fresh = itertools.count(keys)  # scan keys: beyond the Zipf universe, each used once
    out: list[int] = []
    while len(out) < requests:
        out.extend(perm[r] for r in itertools.islice(ranks, SCAN_BLOCK))
        out.extend(itertools.islice(fresh, SCAN_LENGTH))
    return Trace("scan+zipf", keys, out[:requests])


def loop(keys: int, requests: int, seed: int) -> Trace:
    rng = random.Random(seed)
    perm = _permutation(rng, keys)
    return Trace("loop", keys, [perm[i % keys] for i in range(requests)])


def shift(keys: int, requests: int, seed: int) -> Trace:
    rng = random.Random(seed)
    perm = _permutation(rng, keys)
    ranks = _ranks(rng, keys, 1.0, requests)
    phase_length = -(-requests // SHIFT_PHASES)
    step = keys // 20
    out = [perm[(r + (i // phase_length) * step) % keys] for i, r in enumerate(ranks)]
    return Trace("shift", keys, out)


def all_traces(keys: int = 100_000, requests: int = 1_000_000, seed: int = 23) -> Iterator[Trace]:
    """Every trace of the benchmark, in table order."""
    for skew in (0.8, 1.0, 1.2):
        yield zipf(skew, keys, requests, seed)
    yield scan(keys, requests, seed)
    yield loop(keys, requests, seed)
    yield shift(keys, requests, seed)
