//! What the unit tests of several modules share: a seeded generator and
//! the sketch of tests/s3fifo_model.py written plainly.

use crate::sketch::{mix64, SEEDS};

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
/// counter, rows as wide as the power of two at least twice maxsize.
pub struct PlainSketch {
    bits: u32,
    rows: Vec<Vec<u8>>,
    sample: usize,
    count: usize,
}

impl PlainSketch {
    pub fn new(maxsize: usize) -> Self {
        let bits = (2 * maxsize).next_power_of_two().trailing_zeros().max(1);
        PlainSketch {
            bits,
            rows: vec![vec![0; 1 << bits]; 4],
            sample: 10 * maxsize,
            count: 0,
        }
    }

    /// Counts since the last halving.
    pub fn count(&self) -> u64 {
        self.count as u64
    }

    fn slots(&self, k: u64) -> [usize; 4] {
        let x = mix64(k);
        SEEDS.map(|s| (x.wrapping_mul(s) >> (64 - self.bits)) as usize)
    }

    pub fn estimate(&self, k: u64) -> u8 {
        let at = self.slots(k);
        (0..4).map(|r| self.rows[r][at[r]]).min().unwrap_or(0)
    }

    pub fn increment(&mut self, k: u64) {
        let at = self.slots(k);
        let low = self.estimate(k);
        for (row, &i) in self.rows.iter_mut().zip(&at) {
            if low < 15 && row[i] == low {
                row[i] = low + 1;
            }
        }
        self.count += 1;
        if self.count >= self.sample {
            self.rows.iter_mut().flatten().for_each(|c| *c >>= 1);
            self.count /= 2;
        }
    }
}
