//! A series' values in a segment: the writes of its owner (a counter's add,
//! a gauge's set, a histogram's observation under a sequence lock) and what
//! a reader takes from them.

use std::sync::atomic::{fence, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::format::{Kind, HISTOGRAM_HEAD};
use super::map::Mapping;

/// How long a reader waits for a histogram's writer that stays inside its
/// update (its sequence odd and unchanged) before it takes the values as
/// they are: a writer killed or stopped there never leaves, while a live one
/// that was only preempted comes back far sooner. (A count of tries was
/// spent in well under one preemption on a busy machine: a torn read.)
const STALLED: Duration = Duration::from_secs(1);

/// Where one series of this process keeps its values.
#[derive(Clone)]
pub struct Slot {
    pub(crate) map: Arc<Mapping>,
    /// Offset of the values in the mapping.
    pub(crate) at: usize,
    pub(crate) bounds: Arc<[f64]>,
}

/// A counter would pass 2**64 - 1.
#[derive(Debug, PartialEq, Eq)]
pub struct Overflow;

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

impl Slot {
    /// Adds `n` to a counter.
    pub fn add(&self, n: u64) -> Result<(), Overflow> {
        let Some(word) = self.map.word(self.at) else {
            return Ok(());
        };
        word.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_add(n))
            .map(|_| ())
            .map_err(|_| Overflow)
    }

    /// A counter's value here.
    pub fn count(&self) -> u64 {
        self.map.load(self.at, Ordering::Relaxed)
    }

    /// Sets a gauge.
    pub fn set(&self, value: f64) {
        self.map.store(self.at, value.to_bits(), Ordering::Relaxed);
        self.map.store(self.at + 8, now_ns(), Ordering::Relaxed);
    }

    /// Applies `change` to a gauge atomically; false, and no change, when
    /// the result would not be finite.
    pub fn update(&self, change: impl Fn(f64) -> f64) -> bool {
        let Some(word) = self.map.word(self.at) else {
            return true;
        };
        let done = word
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                let next = change(f64::from_bits(bits));
                next.is_finite().then(|| next.to_bits())
            })
            .is_ok();
        if done {
            self.map.store(self.at + 8, now_ns(), Ordering::Relaxed);
        }
        done
    }

    /// A gauge's value here.
    pub fn gauge(&self) -> f64 {
        f64::from_bits(self.map.load(self.at, Ordering::Relaxed))
    }

    /// Records one observation in a histogram (`value` finite and >= 0).
    pub fn observe(&self, value: f64) {
        let Some(seq) = self.map.word(self.at) else {
            return;
        };
        // The odd sequence is this process's writers' lock, too.
        let mut spins = 0u32;
        loop {
            let current = seq.load(Ordering::Relaxed);
            if current.is_multiple_of(2)
                && seq
                    .compare_exchange_weak(
                        current,
                        current.wrapping_add(1),
                        Ordering::Acquire,
                        Ordering::Relaxed,
                    )
                    .is_ok()
            {
                break;
            }
            backoff(&mut spins);
        }
        fence(Ordering::Release);
        let bucket = self.bounds.partition_point(|&b| b < value);
        let counts = self.at + 8 * HISTOGRAM_HEAD;
        if let Some(word) = self.map.word(counts + 8 * bucket) {
            word.fetch_add(1, Ordering::Relaxed);
        }
        let sum = f64::from_bits(self.map.load(self.at + 8, Ordering::Relaxed)) + value;
        self.map
            .store(self.at + 8, sum.to_bits(), Ordering::Relaxed);
        let min = f64::from_bits(self.map.load(self.at + 16, Ordering::Relaxed));
        if value < min {
            self.map
                .store(self.at + 16, value.to_bits(), Ordering::Relaxed);
        }
        let max = f64::from_bits(self.map.load(self.at + 24, Ordering::Relaxed));
        if value > max {
            self.map
                .store(self.at + 24, value.to_bits(), Ordering::Relaxed);
        }
        seq.fetch_add(1, Ordering::Release);
    }

    /// A histogram's values here, read consistently.
    pub fn totals(&self) -> Totals {
        let words = HISTOGRAM_HEAD + self.bounds.len() + 1;
        let raw = read_consistent(&self.map, self.at, words);
        Totals::from_words(&self.bounds, &raw)
    }
}

fn backoff(spins: &mut u32) {
    *spins = spins.saturating_add(1);
    if *spins > 4096 {
        // Long inside: a preempted or stopped writer; no core spent on it.
        std::thread::sleep(Duration::from_micros(100));
    } else if spins.is_multiple_of(64) {
        std::thread::yield_now();
    } else {
        std::hint::spin_loop();
    }
}

/// `words` words of a histogram's values at `at`, read under its sequence
/// lock (as they are once its writers made no progress for [`STALLED`]).
pub fn read_consistent(map: &Mapping, at: usize, words: usize) -> Vec<u64> {
    read_consistent_within(map, at, words, STALLED)
}

/// [`read_consistent`], giving up on writers stalled for `stalled`. The
/// wait is bounded however busy the writers are: each of their updates
/// moves the sequence, and after ten times `stalled` in all the values are
/// taken as they are too.
pub(super) fn read_consistent_within(
    map: &Mapping,
    at: usize,
    words: usize,
    stalled: Duration,
) -> Vec<u64> {
    let mut out = vec![0u64; words];
    let mut spins = 0u32;
    // (when the wait began, the sequence last seen, when it was first seen)
    let mut waiting: Option<(Instant, u64, Instant)> = None;
    loop {
        let before = map.load(at, Ordering::Acquire);
        if before.is_multiple_of(2) {
            for (i, word) in out.iter_mut().enumerate().skip(1) {
                *word = map.load(at + 8 * i, Ordering::Relaxed);
            }
            fence(Ordering::Acquire);
            if map.load(at, Ordering::Relaxed) == before {
                return out;
            }
        }
        let now = Instant::now();
        let (began, seen, since) = waiting.get_or_insert((now, before, now));
        if before != *seen {
            (*seen, *since) = (before, now);
        }
        if now.duration_since(*since) >= stalled || now.duration_since(*began) >= stalled * 10 {
            break;
        }
        backoff(&mut spins);
    }
    for (i, word) in out.iter_mut().enumerate().skip(1) {
        *word = map.load(at + 8 * i, Ordering::Relaxed);
    }
    out
}

/// A histogram's values: per-bucket counts (+Inf last), sum, min and max.
#[derive(Clone, Debug, PartialEq)]
pub struct Totals {
    pub bounds: Arc<[f64]>,
    pub counts: Vec<u64>,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
}

impl Totals {
    pub fn empty(bounds: Arc<[f64]>) -> Totals {
        let n = bounds.len() + 1;
        Totals {
            bounds,
            counts: vec![0; n],
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }

    /// From a histogram's value words (sequence, sum, min, max, counts).
    pub fn from_words(bounds: &Arc<[f64]>, words: &[u64]) -> Totals {
        let word = |i: usize| words.get(i).copied().unwrap_or(0);
        Totals {
            bounds: bounds.clone(),
            counts: (0..=bounds.len())
                .map(|i| word(HISTOGRAM_HEAD + i))
                .collect(),
            sum: f64::from_bits(word(1)),
            min: f64::from_bits(word(2)),
            max: f64::from_bits(word(3)),
        }
    }

    /// The value words of these totals (sequence 0).
    pub fn to_words(&self) -> Vec<u64> {
        let mut out = vec![
            0,
            self.sum.to_bits(),
            self.min.to_bits(),
            self.max.to_bits(),
        ];
        out.extend(&self.counts);
        out
    }

    /// Adds `other`'s observations (same bounds).
    pub fn add(&mut self, other: &Totals) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine = mine.saturating_add(*theirs);
        }
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().fold(0u64, |a, b| a.saturating_add(*b))
    }

    /// Smallest and largest observation, or None before the first.
    pub fn min_max(&self) -> Option<(f64, f64)> {
        (self.count() > 0).then_some((self.min, self.max))
    }

    /// (upper bound, cumulative count) per bucket, +Inf last.
    pub fn cumulative_buckets(&self) -> Vec<(f64, u64)> {
        let mut total = 0u64;
        self.bounds
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(&self.counts)
            .map(|(upper, n)| {
                total = total.saturating_add(*n);
                (upper, total)
            })
            .collect()
    }

    /// The `q`-quantile estimated from the buckets (linear within the
    /// bucket that holds the nearest rank, as Prometheus' histogram_quantile
    /// does, clamped to [min, max]); None before the first observation.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let (min, max) = self.min_max()?;
        if q <= 0.0 {
            return Some(min);
        }
        if q >= 1.0 {
            return Some(max);
        }
        let count = self.count();
        let rank = (q * count as f64).ceil().clamp(1.0, count as f64);
        let mut below = 0u64;
        for (i, &n) in self.counts.iter().enumerate() {
            let through = below.saturating_add(n);
            if n > 0 && through as f64 >= rank {
                let lower = if i == 0 {
                    min
                } else {
                    self.bounds[i - 1].max(min)
                };
                let upper = self.bounds.get(i).copied().unwrap_or(max).min(max);
                let share = (rank - below as f64) / n as f64;
                return Some((lower + (upper - lower) * share).clamp(min, max));
            }
            below = through;
        }
        Some(max)
    }
}

/// A series' values as a reader takes them from one segment.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Counter(u64),
    /// The value, and when it was last changed (ns since 1970).
    Gauge(f64, u64),
    Histogram(Totals),
}

impl Value {
    /// The value of a `kind` series from its value words.
    pub fn from_words(kind: Kind, bounds: &Arc<[f64]>, words: &[u64]) -> Value {
        let word = |i: usize| words.get(i).copied().unwrap_or(0);
        match kind {
            Kind::Counter => Value::Counter(word(0)),
            Kind::Gauge => Value::Gauge(f64::from_bits(word(0)), word(1)),
            Kind::Histogram => Value::Histogram(Totals::from_words(bounds, words)),
        }
    }

    /// Reads the `kind` series whose values are at `at` in `map`.
    pub fn read(kind: Kind, bounds: &Arc<[f64]>, map: &Mapping, at: usize) -> Value {
        match kind {
            Kind::Counter => Value::Counter(map.load(at, Ordering::Relaxed)),
            Kind::Gauge => Value::Gauge(
                f64::from_bits(map.load(at, Ordering::Relaxed)),
                map.load(at + 8, Ordering::Relaxed),
            ),
            Kind::Histogram => {
                let words = read_consistent(map, at, HISTOGRAM_HEAD + bounds.len() + 1);
                Value::Histogram(Totals::from_words(bounds, &words))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_quantiles_interpolate_within_min_and_max() {
        let bounds: Arc<[f64]> = Arc::from(vec![1.0, 2.0]);
        let mut t = Totals::empty(bounds);
        assert_eq!(t.quantile(0.5), None);
        t.counts = vec![2, 2, 0];
        t.min = 0.5;
        t.max = 1.5;
        t.sum = 4.0;
        assert_eq!(t.quantile(0.0), Some(0.5));
        assert_eq!(t.quantile(1.0), Some(1.5));
        assert_eq!(t.quantile(0.5), Some(1.0));
        assert_eq!(t.quantile(0.75), Some(1.25));
        assert_eq!(
            t.cumulative_buckets(),
            vec![(1.0, 2), (2.0, 4), (f64::INFINITY, 4)]
        );
    }
}
