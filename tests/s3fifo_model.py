"""S3-FIFO (Yang et al., SOSP 2023), written to be read: the reference model
for hit-ratio runs and for differential fuzzing of a real implementation.
(The groundwork's model for issue 23, kept as it was written: the test of
S3FIFOCache's hit counts, tests/test_s3fifo.py, and benches/hitratio.py use it.)

Three FIFO queues: ``small`` (new keys; ~10% of maxsize), ``main`` (keys that
proved themselves) and ``ghost`` (the hashes, not the keys, of keys that left
``small`` unused; 90% of maxsize; a hash added again moves to newest). Each
cached key has a frequency capped at 3 (two bits). Queues are OrderedDicts,
oldest first.

- get, hit: freq = min(freq + 1, 3). Nothing moves. A miss changes nothing.
- set, present: the value is replaced in place and it counts as an access.
- set, new: room is made first (one key leaves when the cache is full); the
  key goes to ``main`` if its hash is in the ghost (the ghost forgets it),
  else to ``small`` (but to ``main`` while the cache has never evicted and
  ``small`` has its share, unless ``warmup_to_main=False``). Its freq starts at 0.
- making room: from ``main`` when ``main`` holds more than its share or
  ``small`` is empty, else from ``small``.
  - small: take the oldest; freq >= ``promote_at``: to ``main`` (newest) with
    freq 0, and go on; else it leaves, its hash goes to the ghost. Ends when
    one key has left or ``small`` is empty.
  - main: take the oldest; freq > 0: back as newest with freq - 1, go on;
    else it leaves. Ends when one key has left.
- pop/del: the key leaves its queue; the ghost is not touched.
- clear: everything, the ghost too, is forgotten (warm-up starts again).

Every choice above follows libCacheSim's S3FIFO.c (the paper's artifact):
small 10% of the cache, ghost 90%, move-to-main threshold 2, exactly one key
evicted per insertion, freq reset when promoted, and (``warmup_to_main``)
its 2024 revision's filling of ``main`` before the first eviction;
``warmup_to_main=False`` is the paper's original (S3FIFOv0.c).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
D = TypeVar("D")

MAX_FREQ = 3


@dataclass(frozen=True, kw_only=True)
class Stats:
    """Reads that hit or missed, keys inserted, keys evicted for room."""

    hits: int
    misses: int
    inserts: int
    evictions: int


class S3FIFO(Generic[K, V]):
    """A bounded mapping evicting by S3-FIFO; see the module's docstring."""

    def __init__(
        self,
        maxsize: int,
        *,
        small_ratio: float = 0.1,
        ghost_ratio: float = 0.9,
        promote_at: int = 2,
        max_freq: int = MAX_FREQ,
        warmup_to_main: bool = True,
    ) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be at least 1, got {maxsize}")
        self.maxsize = maxsize
        # At least one slot for small; main gets the rest (0 for maxsize 1).
        self.small_target = max(1, int(maxsize * small_ratio))
        self.main_target = maxsize - self.small_target
        self.ghost_size = int(maxsize * ghost_ratio)
        self.max_freq = max_freq
        self.promote_at = promote_at
        self.warmup_to_main = warmup_to_main
        self.small: OrderedDict[K, None] = OrderedDict()
        self.main: OrderedDict[K, None] = OrderedDict()
        self.ghost: OrderedDict[int, None] = OrderedDict()
        self.values: dict[K, V] = {}
        self.freq: dict[K, int] = {}
        self.evicted_once = False
        self.hits = self.misses = self.inserts = self.evictions = 0

    # --- reads ---------------------------------------------------------------

    def get(self, key: K, default: D | None = None) -> V | D | None:
        """The value of ``key`` (an access), or ``default``."""
        if key in self.values:
            self.hits += 1
            self.freq[key] = min(self.freq[key] + 1, self.max_freq)
            return self.values[key]
        self.misses += 1
        return default

    def __contains__(self, key: object) -> bool:
        return key in self.values

    def __len__(self) -> int:
        return len(self.values)

    def keys(self) -> list[K]:
        """Small oldest first, then main oldest first."""
        return [*self.small, *self.main]

    def stats(self) -> Stats:
        return Stats(
            hits=self.hits, misses=self.misses, inserts=self.inserts, evictions=self.evictions
        )

    # --- writes --------------------------------------------------------------

    def set(self, key: K, value: V) -> None:
        """Insert ``key``, or replace its value (an access)."""
        if key in self.values:
            self.values[key] = value
            self.freq[key] = min(self.freq[key] + 1, self.max_freq)
            return
        while len(self.values) >= self.maxsize:
            self._evict_one()
        h = hash(key)
        if h in self.ghost:
            del self.ghost[h]
            self.main[key] = None
        elif self.warmup_to_main and not self.evicted_once and len(self.small) >= self.small_target:
            self.main[key] = None
        else:
            self.small[key] = None
        self.values[key] = value
        self.freq[key] = 0
        self.inserts += 1

    def pop(self, key: K) -> V:
        """Remove ``key`` and return its value; KeyError if absent."""
        value = self.values.pop(key)
        del self.freq[key]
        if key in self.small:
            del self.small[key]
        else:
            del self.main[key]
        return value

    def clear(self) -> None:
        """Forget every key and the ghost; stats are kept."""
        self.small.clear()
        self.main.clear()
        self.ghost.clear()
        self.values.clear()
        self.freq.clear()
        self.evicted_once = False

    # --- eviction --------------------------------------------------------------

    def _evict_one(self) -> None:
        self.evicted_once = True
        if len(self.main) > self.main_target or not self.small:
            self._evict_main()
        else:
            self._evict_small()

    def _evict_small(self) -> None:
        while self.small:
            key, _ = self.small.popitem(last=False)
            if self.freq[key] >= self.promote_at:
                self.main[key] = None
                self.freq[key] = 0
                continue
            self._drop(key)
            if self.ghost_size:
                self.ghost.pop(hash(key), None)
                self.ghost[hash(key)] = None
                if len(self.ghost) > self.ghost_size:
                    self.ghost.popitem(last=False)
            return

    def _evict_main(self) -> None:
        # Terminates: each pass past a key lowers its freq.
        while self.main:
            key, _ = self.main.popitem(last=False)
            if self.freq[key] > 0:
                self.main[key] = None
                self.freq[key] -= 1
                continue
            self._drop(key)
            return

    def _drop(self, key: K) -> None:
        del self.values[key]
        del self.freq[key]
        self.evictions += 1

    def check(self) -> None:
        """Assert the invariants (for tests)."""
        assert len(self.values) <= self.maxsize
        assert set(self.values) == set(self.small) | set(self.main)
        assert not set(self.small) & set(self.main)
        assert set(self.freq) == set(self.values)
        assert all(0 <= f <= self.max_freq for f in self.freq.values())
        assert len(self.ghost) <= self.ghost_size
