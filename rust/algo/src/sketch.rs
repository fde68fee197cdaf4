//! A count-min sketch of 4-bit counters, TinyLFU's (Einziger, Friedman and
//! Manes, ACM Transactions on Storage, 2017): how often a hash was counted,
//! approximately and with age, in O(1) per count.
//!
//! Four rows of `width` counters, `width` the power of two at least twice the
//! cache's maxsize, laid out as Caffeine lays its sketch out: in blocks of
//! 128 counters (64 bytes, one cache line), a hash's four counters in one
//! block, so that counting a key costs one cache miss, not four. A key is
//! counted by its table hash `x` (its Python hash, as unsigned, through
//! [`spread`], which the table computed already): its block is `x`'s top
//! `log2(width) - 5` bits, and row `r` counts it at
//! `block * 128 + r * 32 + ((x >> 5r) & 31)`. Exactly the arithmetic of
//! tests/s3fifo_model.py and of the pure twin, so that all make the same
//! decisions.
//!
//! Memory follows use, not maxsize: counters live in a small hash table of
//! 64-bit words (16 counters each) until it holds a sixteenth of the whole
//! array's words, which is then allocated. A cache of a huge maxsize holding
//! few keys keeps a sketch of a few words.

use hashbrown::HashTable;

use crate::table::spread;

/// A counter stops counting here (four bits).
pub const COUNTER_MAX: u8 = 15;
/// Counts between two halvings, per unit of maxsize.
pub const SAMPLE_RATIO: u64 = 10;

/// Every counter's high bit clear: a word shifted right by one, masked, is
/// every counter halved.
const HALF_MASK: u64 = 0x7777_7777_7777_7777;

enum Words {
    /// (word number, word), nonzero words only.
    Sparse(HashTable<(u64, u64)>),
    Dense(Vec<Block>),
}

/// A block of 128 counters on a cache line of its own.
#[derive(Clone, Copy, Default)]
#[repr(align(64))]
struct Block([u64; 8]);

// One block, one line: what the layout is for.
const _: () = assert!(std::mem::align_of::<Block>() == 64 && std::mem::size_of::<Block>() == 64);

/// Approximate per-hash counts, halved every `SAMPLE_RATIO * maxsize` counts.
pub struct Sketch {
    /// log2 of a row's width; 0 until the first count sizes the sketch.
    bits: u32,
    count: u64,
    sample: u64,
    words: Words,
}

impl Default for Sketch {
    fn default() -> Self {
        Sketch {
            bits: 0,
            count: 0,
            sample: 0,
            words: Words::Sparse(HashTable::new()),
        }
    }
}

impl Sketch {
    /// log2 of the width of the rows of a cache of `maxsize` (at least 1).
    pub fn width_bits(maxsize: usize) -> u32 {
        let want = (maxsize as u64).saturating_mul(2).max(2);
        (u64::BITS - (want - 1).leading_zeros()).max(1)
    }

    /// log2 of the number of 128-counter blocks (one block below a width
    /// of 32).
    fn block_bits(&self) -> u32 {
        self.bits.saturating_sub(5)
    }

    /// How many 64-bit words hold the blocks (8 a block).
    fn word_count(&self) -> u64 {
        8 << self.block_bits()
    }

    /// The number of the block of a mixed hash.
    #[inline(always)]
    fn block(&self, x: u64) -> u64 {
        x.checked_shr(64 - self.block_bits()).unwrap_or(0)
    }

    /// The counters (one per row) that count table hash `x`, as counter numbers.
    #[inline]
    fn counters(&self, x: u64) -> [u64; 4] {
        let base = self.block(x) << 7;
        [0u64, 1, 2, 3].map(|row| base + (row << 5) + ((x >> (5 * row)) & 31))
    }

    #[inline]
    fn word(&self, number: u64) -> u64 {
        match &self.words {
            Words::Dense(blocks) => blocks
                .get((number >> 3) as usize)
                .map_or(0, |b| b.0[(number & 7) as usize]),
            Words::Sparse(table) => table
                .find(spread(number), |e| e.0 == number)
                .map_or(0, |e| e.1),
        }
    }

    #[inline]
    fn get(&self, counter: u64) -> u8 {
        ((self.word(counter >> 4) >> ((counter & 15) * 4)) & 15) as u8
    }

    fn set(&mut self, counter: u64, value: u8) {
        let number = counter >> 4;
        let shift = (counter & 15) * 4;
        let put = |word: u64| (word & !(15 << shift)) | (u64::from(value) << shift);
        match &mut self.words {
            Words::Dense(blocks) => {
                if let Some(b) = blocks.get_mut((number >> 3) as usize) {
                    b.0[(number & 7) as usize] = put(b.0[(number & 7) as usize]);
                }
            }
            Words::Sparse(table) => match table.find_mut(spread(number), |e| e.0 == number) {
                Some(entry) => entry.1 = put(entry.1),
                None => {
                    table.insert_unique(spread(number), (number, put(0)), |e| spread(e.0));
                }
            },
        }
    }

    /// An upper bound (with high probability exact) of how often table
    /// hash `x` was counted.
    pub fn estimate(&self, x: u64) -> u8 {
        if self.bits == 0 {
            return 0;
        }
        self.counters(x)
            .iter()
            .map(|&c| self.get(c))
            .min()
            .unwrap_or(0)
    }

    /// Counts table hash `x` once in the sketch of a cache of `maxsize`:
    /// only the counters at the minimum are raised (conservative update).
    #[inline]
    pub fn increment(&mut self, x: u64, maxsize: usize) {
        if self.bits == 0 {
            self.bits = Self::width_bits(maxsize);
            self.sample = (maxsize as u64).saturating_mul(SAMPLE_RATIO).max(1);
        }
        let block = self.block(x);
        match &mut self.words {
            Words::Dense(blocks) => {
                if let Some(b) = blocks.get_mut(block as usize) {
                    Self::bump_block(&mut b.0, x);
                }
            }
            Words::Sparse(_) => self.bump_sparse(self.counters(x)),
        }
        self.count += 1;
        if self.count >= self.sample {
            self.halve();
        }
    }

    /// The conservative update on the whole array (the common case, kept
    /// free of the sparse form's lookups): one block, one cache line.
    #[inline(always)]
    fn bump_block(words: &mut [u64; 8], x: u64) {
        // Row r's counter: word 2r + bit 4 of its 5 bits, nibble their low 4.
        let at = [0u64, 1, 2, 3].map(|row| {
            let c = x >> (5 * row);
            ((2 * row + ((c >> 4) & 1)) as usize, (c & 15) * 4)
        });
        let counts = at.map(|(w, shift)| ((words[w] >> shift) & 15) as u8);
        let low = counts[0].min(counts[1]).min(counts[2]).min(counts[3]);
        if low >= COUNTER_MAX {
            return;
        }
        // Without branches: which counters are at the minimum is random, and
        // a mispredicted branch costs more than a store.
        for ((w, shift), count) in at.into_iter().zip(counts) {
            words[w] += u64::from(count == low) << shift;
        }
    }

    fn bump_sparse(&mut self, at: [u64; 4]) {
        let counts = at.map(|c| self.get(c));
        let low = counts.iter().copied().min().unwrap_or(0);
        if low < COUNTER_MAX {
            for (c, count) in at.into_iter().zip(counts) {
                if count == low {
                    self.set(c, low + 1);
                }
            }
            self.densify_if_due();
        }
    }

    /// Swaps the sparse words for the whole array once they are a sixteenth
    /// of it.
    fn densify_if_due(&mut self) {
        let total = self.word_count();
        let Words::Sparse(table) = &self.words else {
            return;
        };
        // A sparse word costs two to four dense ones (its number, the
        // table's slack): at a sixteenth of the words, the table is a
        // quarter of the array at most, and freeing it leaves little behind.
        if (table.len() as u64).saturating_mul(16) < total {
            return;
        }
        let mut dense = vec![Block::default(); (total / 8) as usize];
        for &(number, word) in table.iter() {
            if let Some(b) = dense.get_mut((number >> 3) as usize) {
                b.0[(number & 7) as usize] = word;
            }
        }
        self.words = Words::Dense(dense);
    }

    fn halve(&mut self) {
        match &mut self.words {
            Words::Dense(blocks) => {
                for word in blocks.iter_mut().flat_map(|b| b.0.iter_mut()) {
                    *word = (*word >> 1) & HALF_MASK;
                }
            }
            Words::Sparse(table) => table.retain(|e| {
                e.1 = (e.1 >> 1) & HALF_MASK;
                e.1 != 0
            }),
        }
        self.count /= 2;
    }

    /// Whether the whole array is allocated (for tests and memory checks).
    pub fn is_dense(&self) -> bool {
        matches!(self.words, Words::Dense(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::PlainSketch;

    #[test]
    fn indices_are_the_models() {
        // From tests/s3fifo_model.py: spread(h) and the four counters at
        // width 2048 (64 blocks), each in its row's 32 of the hash's block.
        let cases: [(u64, u64, [u64; 4]); 4] = [
            (0, 0, [0, 32, 64, 96]),
            (12345, 0xa12c_e22e_47be_81f7, [5143, 5167, 5184, 5245]),
            (u64::MAX, 0x80b5_83ef_05ac_1f58, [4120, 4154, 4167, 4216]),
            (
                (1 << 63) + 7,
                0x9329_9218_6245_f474,
                [4628, 4643, 4701, 4715],
            ),
        ];
        let mut s = Sketch::default();
        s.increment(1, 1000);
        assert_eq!(s.bits, 11);
        assert_eq!(s.word_count(), 4 * 2048 / 16);
        for (h, mixed, counters) in cases {
            assert_eq!(spread(h), mixed);
            let at = s.counters(mixed);
            assert_eq!(at, counters);
            for (row, c) in at.into_iter().enumerate() {
                assert_eq!(c / 128, at[0] / 128, "one block");
                assert_eq!(c % 128 / 32, row as u64, "the row's 32");
            }
        }
    }

    #[test]
    fn width_is_the_power_of_two_at_least_twice_maxsize() {
        assert_eq!(Sketch::width_bits(1), 1);
        assert_eq!(Sketch::width_bits(2), 2);
        assert_eq!(Sketch::width_bits(3), 3);
        assert_eq!(Sketch::width_bits(4), 3);
        assert_eq!(Sketch::width_bits(1000), 11);
        assert_eq!(Sketch::width_bits(1024), 11);
        assert_eq!(Sketch::width_bits(1025), 12);
        assert_eq!(Sketch::width_bits(u32::MAX as usize - 1), 33);
    }

    #[test]
    fn counts_as_the_plain_sketch_does_sparse_then_dense() {
        for maxsize in [1usize, 3, 50, 1000] {
            let mut s = Sketch::default();
            let mut p = PlainSketch::new(maxsize);
            let mut x = 0x2545_F491_4F6C_DD1Du64;
            let mut went_dense = false;
            for step in 0..30 * maxsize as u64 + 200 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Skewed: some hashes come back often enough to saturate.
                let h = (x % (4 * maxsize as u64 + 3)) % (1 + step % 7 * maxsize as u64);
                s.increment(spread(h), maxsize);
                p.increment(h);
                went_dense |= s.is_dense();
                assert_eq!(
                    s.estimate(spread(h)),
                    p.estimate(h),
                    "maxsize {maxsize}, step {step}"
                );
                assert_eq!(s.count, p.count());
            }
            for h in 0..8 * maxsize as u64 {
                assert_eq!(s.estimate(spread(h)), p.estimate(h));
            }
            assert!(went_dense, "maxsize {maxsize}");
        }
    }

    #[test]
    fn a_huge_maxsize_with_few_counts_stays_sparse() {
        let mut s = Sketch::default();
        for h in 0..1000 {
            s.increment(h, u32::MAX as usize - 1);
            s.increment(h, u32::MAX as usize - 1);
        }
        assert!(!s.is_dense());
        assert_eq!(s.estimate(7), 2);
        assert_eq!(Sketch::default().estimate(7), 0);
    }
}
