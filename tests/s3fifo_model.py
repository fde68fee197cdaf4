"""S3-FIFO with a sketch-gated ghost, written to be read: the reference model
for hit-ratio runs and for differential fuzzing of a real implementation
(tests/test_s3fifo.py and benches/hitratio.py use it).

S3-FIFO (Yang et al., "FIFO queues are all you need for cache eviction",
SOSP 2023) plus the count-min sketch of TinyLFU (Einziger, Friedman and
Manes, ACM Transactions on Storage, 2017), which here decides only whether
a key the ghost remembers may enter ``main``. The hit path is S3-FIFO's: a
2-bit freq bump on the key's entry, nothing else; the sketch is touched only
when a new key is inserted.

Three FIFO queues: ``small`` (new keys; 1% of maxsize, at least 1), ``main``
(the rest) and ``ghost`` (the hashes, not the keys, of keys that left
``small`` unused; 90% of maxsize; a hash added again moves to newest). Each
cached key has a freq capped at 3 (two bits). Queues are OrderedDicts,
oldest first. A count-min sketch (4 rows of ``width`` 4-bit counters, width
the power of two >= 2 x maxsize) counts insertions per key hash.

- get, hit: freq = min(freq + 1, 3). Nothing moves. A miss changes nothing.
- set, present: the value is replaced in place and it counts as an access.
- set, new: room is made first (one key leaves when the cache is full). The
  sketch counts the key (below). If its hash is in the ghost, the ghost
  forgets it and the key may enter ``main``: if ``main`` holds less than its
  share it does; else main's victim is found (the CLOCK below, stopping
  before removing) and the key enters ``main`` only if est(key) >
  est(victim) (a tie keeps the victim's side), else it goes to ``small``. A
  key not in the ghost goes to ``small`` (to ``main`` while the cache has
  never evicted and ``small`` has its share, unless ``warmup_to_main=False``).
  Its freq starts at 0.
- making room: from ``main`` when ``main`` holds more than its share or
  ``small`` is empty, else from ``small``.
  - small: take the oldest; freq >= ``promote_at`` (1): to ``main`` (newest)
    with freq 0, and go on; else it leaves, its hash goes to the ghost. Ends
    when one key has left or ``small`` is empty.
  - main (CLOCK): while the oldest has freq > 0, it goes back as newest with
    freq - 1; the oldest (freq 0) is the victim; it leaves.
- sketch: h = spread(hash(key) mod 2**64) (the native table's hash); its
  block is h's top log2(width) - 5 bits (one block, the 0th, below a width
  of 32), and row i's counter is ``block * 128 + i * 32 + ((h >> 5i) & 31)``:
  all four in one 64-byte block. est = the min of the 4 counters.
  Increment (conservative): each of the 4 counters that equals the min is
  raised by one, unless the min is already 15. Every increment is counted;
  when the count reaches 10 x maxsize, every counter is halved (>> 1) and
  so is the count.
- pop/del: the key leaves its queue; ghost and sketch are not touched.
- clear: everything (ghost, sketch, warm-up) is forgotten.

From libCacheSim's S3FIFO.c (the paper's artifact): the ghost of 90%,
exactly one key evicted per insertion, freq reset when promoted, and
(``warmup_to_main``) its 2024 revision's filling of ``main`` before the
first eviction (``warmup_to_main=False`` is the paper's original). The small
share of 1%, promotion at one read and the sketch's gate were chosen on the
traces of benches/traces.py (issue 23): the paper's 10% and two reads, with
every ghost hit readmitted, lost to W-TinyLFU at capacities of 10%.
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
#: A sketch counter stops counting here (four bits).
COUNTER_MAX = 15
_M64 = (1 << 64) - 1


def spread(x: int) -> int:
    """The native table's hash of a 64-bit hash: its high bits mixed into
    its low ones and all of them through a multiply (rust/algo/src/table.rs)."""
    x ^= x >> 32
    x = (x * 0x9E3779B97F4A7C15) & _M64
    return x ^ (x >> 29)


class CountMin4:
    """Approximate per-hash counts in 4 x width 4-bit counters, halved with age.

    Caffeine's layout: the counters are in blocks of 128 (64 bytes), and a
    hash's four are in one block, so that counting one costs one cache line.
    Block b holds row i's 32 counters at b * 128 + i * 32.
    """

    def __init__(self, width: int, sample: int) -> None:
        bits = max(1, (width - 1).bit_length())
        self.block_bits = max(0, bits - 5)
        self.counters = bytearray(128 << self.block_bits)
        self.sample = sample
        self.count = 0

    def _slots(self, h: int) -> list[int]:
        x = spread(h & _M64)
        block = x >> (64 - self.block_bits) << 7
        return [block + (row << 5) + ((x >> (5 * row)) & 31) for row in range(4)]

    def estimate(self, h: int) -> int:
        """An upper bound (with high probability exact) of h's count."""
        return min(self.counters[i] for i in self._slots(h))

    def increment(self, h: int) -> None:
        """Count h once: raise only the counters at the min (conservative)."""
        slots = self._slots(h)
        low = min(self.counters[i] for i in slots)
        if low < COUNTER_MAX:
            for i in slots:
                if self.counters[i] == low:
                    self.counters[i] = low + 1
        self.count += 1
        if self.count >= self.sample:
            for i in range(len(self.counters)):
                self.counters[i] >>= 1
            self.count //= 2

    def clear(self) -> None:
        self.counters[:] = bytes(len(self.counters))
        self.count = 0


@dataclass(frozen=True, kw_only=True)
class Stats:
    """Reads that hit or missed, keys inserted, keys evicted for room."""

    hits: int
    misses: int
    inserts: int
    evictions: int


class S3FIFO(Generic[K, V]):
    """A bounded mapping evicting by S3-FIFO with a sketch-gated ghost; see
    the module's docstring."""

    def __init__(
        self,
        maxsize: int,
        *,
        small_ratio: float = 0.01,
        ghost_ratio: float = 0.9,
        promote_at: int = 1,
        max_freq: int = MAX_FREQ,
        sketch_ratio: int = 2,
        sample_ratio: int = 10,
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
        self.sketch = CountMin4(sketch_ratio * maxsize, sample_ratio * maxsize)
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
        self.sketch.increment(h)
        if h in self.ghost:
            del self.ghost[h]
            if self._admit(h):
                self.main[key] = None
            else:
                self.small[key] = None
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
        """Forget every key, the ghost and the sketch; stats are kept."""
        self.small.clear()
        self.main.clear()
        self.ghost.clear()
        self.sketch.clear()
        self.values.clear()
        self.freq.clear()
        self.evicted_once = False

    # --- admission and eviction ------------------------------------------------

    def _admit(self, h: int) -> bool:
        """May a ghost-remembered key enter main: room there, or more frequent than its victim."""
        if len(self.main) < self.main_target:
            return True
        victim = self._main_victim()
        if victim is None:
            return True
        return self.sketch.estimate(h) > self.sketch.estimate(hash(victim))

    def _main_victim(self) -> K | None:
        """Turn main's CLOCK until its oldest key has freq 0; that key (it stays)."""
        # Terminates: each pass past a key lowers its freq.
        while self.main:
            key = next(iter(self.main))
            if self.freq[key] == 0:
                return key
            self.main.move_to_end(key)
            self.freq[key] -= 1
        return None

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
        victim = self._main_victim()
        if victim is not None:
            del self.main[victim]
            self._drop(victim)

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
        assert all(c <= COUNTER_MAX for c in self.sketch.counters)
