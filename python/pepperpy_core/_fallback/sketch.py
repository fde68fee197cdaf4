"""The pure twin of ``rust/algo/src/sketch.rs``: TinyLFU's count-min sketch
(Einziger, Friedman and Manes, 2017) of 4-bit counters that S3FIFOCache asks
whether a key back from its ghost may displace main's victim.

Four rows of ``width`` counters (the power of two at least twice maxsize),
one array of ``4 * width`` in blocks of 128 (Caffeine's layout: a hash's
four counters in one block): a hash ``h`` (Python's, taken mod 2**64) is
spread into ``x`` as the native table spreads it; its block is ``x``'s top
``log2(width) - 5`` bits, and row ``r`` counts it at ``block * 128 + r * 32
+ ((x >> 5r) & 31)``. The arithmetic of tests/s3fifo_model.py and of the
native sketch, so that all decide alike.
Counters live in a dict until it holds 1/256 of the array's counters (a
cache of a huge maxsize holding few keys allocates no more than it counts).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Final

#: A counter stops counting here (four bits).
COUNTER_MAX: Final = 15
_M64: Final = (1 << 64) - 1
#: Counts between two halvings, per unit of maxsize.
SAMPLE_RATIO: Final = 10
#: Each counter halved, by byte.
_HALF: Final = bytes(i >> 1 for i in range(256))


class Sketch:
    """Approximate per-hash counts, halved every ``SAMPLE_RATIO * maxsize`` counts."""

    __slots__ = ("_count", "_counts", "_dense_at", "_sample", "_shift", "_size")

    def __init__(self, maxsize: int) -> None:
        block_bits = max(0, (2 * maxsize - 1).bit_length() - 5)
        self._size = 128 << block_bits
        self._shift = 64 - block_bits  # x >> 64 is 0: the one block
        # A dict entry (and its int key) costs some 100 bytes, a counter of
        # the array one: the dict gives way at 1/256 of the array's counters
        # (under half the array's size; freed, it leaves little behind).
        self._dense_at = max(1, self._size // 256)
        self._counts: defaultdict[int, int] | bytearray = defaultdict(int)
        self._count = 0
        self._sample = max(1, SAMPLE_RATIO * maxsize)

    def _at(self, h: int) -> tuple[int, int, int, int]:
        x = h & _M64
        x = ((x ^ (x >> 32)) * 0x9E3779B97F4A7C15) & _M64
        x ^= x >> 29
        block = x >> self._shift << 7
        return (
            block + (x & 31),
            block + 32 + ((x >> 5) & 31),
            block + 64 + ((x >> 10) & 31),
            block + 96 + ((x >> 15) & 31),
        )

    def estimate(self, h: int) -> int:
        """An upper bound (with high probability exact) of ``h``'s count."""
        counts = self._counts
        a, b, c, d = self._at(h)
        return min(counts[a], counts[b], counts[c], counts[d])

    def increment(self, h: int) -> None:
        """Count ``h`` once: only the counters at the minimum are raised."""
        # _at written out: a call and a tuple are a tenth of this.
        x = h & _M64
        x = ((x ^ (x >> 32)) * 0x9E3779B97F4A7C15) & _M64
        x ^= x >> 29
        a = x >> self._shift << 7
        b = a + 32 + ((x >> 5) & 31)
        c = a + 64 + ((x >> 10) & 31)
        d = a + 96 + ((x >> 15) & 31)
        a += x & 31
        counts = self._counts
        ca, cb, cc, cd = counts[a], counts[b], counts[c], counts[d]
        # min() is a call: twice the cost of comparisons.
        low = ca if ca < cb else cb
        low2 = cc if cc < cd else cd
        low = low if low < low2 else low2
        if low < COUNTER_MAX:
            up = low + 1
            if ca == low:
                counts[a] = up
            if cb == low:
                counts[b] = up
            if cc == low:
                counts[c] = up
            if cd == low:
                counts[d] = up
            if type(counts) is not bytearray and len(counts) >= self._dense_at:
                self._densify()
        self._count += 1
        if self._count >= self._sample:
            self._halve()

    def _densify(self) -> None:
        counts = self._counts
        if isinstance(counts, bytearray):
            return
        dense = bytearray(self._size)
        for at, count in counts.items():
            dense[at] = count
        self._counts = dense

    def _halve(self) -> None:
        counts = self._counts
        if isinstance(counts, bytearray):
            self._counts = counts.translate(_HALF)
        else:
            self._counts = defaultdict(int, {at: n >> 1 for at, n in counts.items() if n > 1})
        self._count //= 2

    def is_dense(self) -> bool:
        """Whether the whole array is allocated."""
        return type(self._counts) is bytearray
