//! A log-linear histogram of non-negative durations, free of Python.
//!
//! Every power of two between 2^MIN_EXP and 2^MAX_EXP seconds is split into
//! 2^SUB_BITS equal sub-buckets, read straight off the bits of the `f64`. A
//! quantile is the midpoint of the sub-bucket that holds the nearest-rank
//! sample, clamped to [min, max], so its relative error against that sample
//! is at most 2^-(SUB_BITS+1) (1/128) for samples in [2^MIN_EXP, 2^MAX_EXP).
//! Octaves are allocated on first use, so an idle histogram is small.
//!
//! Exported (Prometheus) buckets are counted exactly, apart from the
//! log-linear ones, so `_bucket{le=...}` never carries an estimate.

/// Sub-buckets per power of two: 2^SUB_BITS.
pub const SUB_BITS: u32 = 6;
const SUB: usize = 1 << SUB_BITS;
/// Smallest value with bounded error: 2^-34 s, about 58 picoseconds.
pub const MIN_EXP: i32 = -34;
/// Values from 2^22 s (about 48 days) up are counted but only as "large".
pub const MAX_EXP: i32 = 22;
const OCTAVES: usize = (MAX_EXP - MIN_EXP) as usize;

/// The bound on a quantile's relative error, for samples in range.
pub const RELATIVE_ERROR: f64 = 1.0 / (2u64 << SUB_BITS) as f64;

#[derive(Clone, Debug, PartialEq)]
pub struct Histogram {
    octaves: Vec<Option<Box<[u64; SUB]>>>,
    below: u64,
    above: u64,
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
    bounds: Vec<f64>,
    bound_counts: Vec<u64>,
}

fn two_pow(exp: i32) -> f64 {
    f64::powi(2.0, exp)
}

impl Histogram {
    /// `bounds`: the exported upper bounds, finite and strictly increasing
    /// (checked by the caller); `+Inf` is implied.
    pub fn new(bounds: Vec<f64>) -> Self {
        let n = bounds.len() + 1;
        Histogram {
            octaves: vec![None; OCTAVES],
            below: 0,
            above: 0,
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            bounds,
            bound_counts: vec![0; n],
        }
    }

    /// Records `value`, finite and >= 0 (checked by the caller).
    pub fn observe(&mut self, value: f64) {
        let bits = value.to_bits();
        let exp = ((bits >> 52) & 0x7ff) as i32 - 1023;
        if value < two_pow(MIN_EXP) {
            self.below += 1;
        } else if exp >= MAX_EXP {
            self.above += 1;
        } else {
            let octave = (exp - MIN_EXP) as usize;
            let sub = ((bits >> (52 - SUB_BITS)) as usize) & (SUB - 1);
            self.octaves[octave].get_or_insert_with(|| Box::new([0; SUB]))[sub] += 1;
        }
        let at = self.bounds.partition_point(|&b| b < value);
        self.bound_counts[at] += 1;
        self.count += 1;
        self.sum += value;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn sum(&self) -> f64 {
        self.sum
    }

    /// Smallest and largest sample, or None before the first.
    pub fn min_max(&self) -> Option<(f64, f64)> {
        (self.count > 0).then_some((self.min, self.max))
    }

    /// The estimated `q`-quantile, `q` in [0, 1] (checked by the caller), or
    /// None before the first sample. q = 0 and q = 1 are the exact min and max.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let (min, max) = self.min_max()?;
        if q <= 0.0 {
            return Some(min);
        }
        if q >= 1.0 {
            return Some(max);
        }
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = self.below;
        if seen >= rank {
            return Some(min);
        }
        for (octave, subs) in self.octaves.iter().enumerate() {
            let Some(subs) = subs else { continue };
            let base = two_pow(MIN_EXP + octave as i32);
            let width = base / SUB as f64;
            for (sub, &n) in subs.iter().enumerate() {
                seen += n;
                if seen >= rank {
                    let mid = base + width * (sub as f64 + 0.5);
                    return Some(mid.clamp(min, max));
                }
            }
        }
        Some(max)
    }

    /// (upper bound, cumulative count) per exported bucket, `+Inf` last.
    pub fn cumulative_buckets(&self) -> Vec<(f64, u64)> {
        let mut total = 0;
        let uppers = self.bounds.iter().copied().chain([f64::INFINITY]);
        uppers
            .zip(&self.bound_counts)
            .map(|(upper, &n)| {
                total += n;
                (upper, total)
            })
            .collect()
    }

    pub fn bounds(&self) -> &[f64] {
        &self.bounds
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nearest_rank(sorted: &[f64], q: f64) -> f64 {
        let n = sorted.len();
        let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
        sorted[rank - 1]
    }

    #[test]
    fn quantiles_within_the_stated_bound() {
        let mut state: u64 = 0x9E37_79B9;
        let mut samples = Vec::new();
        let mut h = Histogram::new(vec![0.001, 0.1, 1.0]);
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            // 1 ns .. ~1 hour, log-uniform.
            let exp = (state % 4_000) as f64 / 4_000.0 * 12.5 - 9.0;
            let v = 10f64.powf(exp);
            samples.push(v);
            h.observe(v);
        }
        samples.sort_by(f64::total_cmp);
        for q in [0.0, 0.001, 0.1, 0.5, 0.9, 0.99, 0.999, 1.0] {
            let want = nearest_rank(&samples, q);
            let got = h.quantile(q).expect("has samples");
            assert!(((got - want) / want).abs() <= RELATIVE_ERROR, "q={q}");
        }
    }

    #[test]
    fn exported_buckets_are_exact_and_cumulative() {
        let mut h = Histogram::new(vec![0.5, 1.0]);
        for v in [0.0, 0.5, 0.75, 1.0, 2.0, 1e12] {
            h.observe(v);
        }
        assert_eq!(
            h.cumulative_buckets(),
            vec![(0.5, 2), (1.0, 4), (f64::INFINITY, 6)]
        );
        assert_eq!(h.count(), 6);
        assert_eq!(h.min_max(), Some((0.0, 1e12)));
        assert_eq!(h.quantile(1.0), Some(1e12));
    }

    #[test]
    fn empty_has_no_quantile() {
        let h = Histogram::new(vec![]);
        assert_eq!(h.quantile(0.5), None);
        assert_eq!(h.cumulative_buckets(), vec![(f64::INFINITY, 0)]);
    }
}
