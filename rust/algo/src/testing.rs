//! What the unit tests of several modules share: a seeded generator and
//! the sketch of tests/s3fifo_model.py written plainly.

use crate::table::spread;

/// xorshift64: reproducible pseudo-random operations.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// The sketch of tests/s3fifo_model.py, written plainly: one byte per
/// counter, in blocks of 128, rows 32 wide in each.
pub struct PlainSketch {
    block_bits: u32,
    counters: Vec<u8>,
    sample: usize,
    count: usize,
}

impl PlainSketch {
    pub fn new(maxsize: usize) -> Self {
        let bits = (2 * maxsize).next_power_of_two().trailing_zeros().max(1);
        let block_bits = bits.saturating_sub(5);
        PlainSketch {
            block_bits,
            counters: vec![0; 128 << block_bits],
            sample: 10 * maxsize,
            count: 0,
        }
    }

    /// Counts since the last halving.
    pub fn count(&self) -> u64 {
        self.count as u64
    }

    fn slots(&self, k: u64) -> [usize; 4] {
        let x = spread(k);
        let block = if self.block_bits == 0 {
            0
        } else {
            x >> (64 - self.block_bits)
        };
        [0, 1, 2, 3].map(|row| (block * 128 + row * 32 + ((x >> (5 * row)) & 31)) as usize)
    }

    pub fn estimate(&self, k: u64) -> u8 {
        self.slots(k)
            .iter()
            .map(|&i| self.counters[i])
            .min()
            .unwrap_or(0)
    }

    pub fn increment(&mut self, k: u64) {
        let low = self.estimate(k);
        for i in self.slots(k) {
            if low < 15 && self.counters[i] == low {
                self.counters[i] = low + 1;
            }
        }
        self.count += 1;
        if self.count >= self.sample {
            self.counters.iter_mut().for_each(|c| *c >>= 1);
            self.count /= 2;
        }
    }
}
