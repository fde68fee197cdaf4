//! Eviction policies over a [`Table`], and [`Cache`], a table with a policy.
//!
//! A policy decides three things: which list a new key joins ([`Policy::admit`]),
//! what a read or an overwrite does to an entry's meta, and which entry leaves
//! to make room ([`Policy::victim`], which may move others on the way). It
//! never sees a key or a value, so it cannot run user code.
//!
//! - [`Fifo`]: one list; the oldest inserted key leaves. Reads change nothing.
//! - [`S3Fifo`]: S3-FIFO (Yang et al., SOSP 2023) with a sketch-gated ghost:
//!   a small list for new keys, a main list for keys that proved themselves,
//!   a ghost of the hashes of keys that left the small list unused, a
//!   frequency per entry capped at 3, and TinyLFU's count-min sketch
//!   ([`Sketch`]) deciding whether a key back from the ghost displaces main's
//!   victim. Its reference model is tests/s3fifo_model.py.

use crate::expiry::{Deadline, Timers};
use crate::ghost::Ghost;
use crate::sketch::Sketch;
use crate::table::{Meta, Table};

/// How a cache chooses what to keep.
pub trait Policy: Default {
    type Meta: Meta;

    /// A read found the entry.
    fn on_hit(meta: &mut Self::Meta);

    /// An overwrite found the entry.
    fn on_overwrite(meta: &mut Self::Meta);

    /// The meta (so the list) of a new key of this hash, room already made
    /// (the policy may move entries to decide).
    fn admit<K, V>(
        &mut self,
        table: &mut Table<K, V, Self::Meta>,
        hash: u64,
        maxsize: usize,
    ) -> Self::Meta;

    /// The entry to remove to make room, having moved others on the way;
    /// None only for an empty table. The caller removes it and calls
    /// [`Policy::evicted`].
    fn victim<K, V>(&mut self, table: &mut Table<K, V, Self::Meta>, maxsize: usize) -> Option<u32>;

    /// The entry `victim` chose has left.
    fn evicted(&mut self, hash: u64, meta: Self::Meta, maxsize: usize);

    /// Forgets everything (the table was emptied).
    fn clear(&mut self);

    /// Called with the hash of a key that will be admitted once an entry is
    /// evicted (`admitting`), then with the evicted entry's: what the policy
    /// will read for them can start loading now.
    #[inline(always)]
    fn warm(&self, _hash: u64, _admitting: bool) {}
}

/// First in, first out: the oldest inserted key leaves; reads and overwrites
/// leave the order alone. Every operation is worst-case O(1).
#[derive(Default)]
pub struct Fifo;

impl Policy for Fifo {
    type Meta = ();

    #[inline(always)]
    fn on_hit(_: &mut ()) {}

    #[inline(always)]
    fn on_overwrite(_: &mut ()) {}

    #[inline(always)]
    fn admit<K, V>(&mut self, _: &mut Table<K, V, ()>, _: u64, _: usize) {}

    #[inline(always)]
    fn victim<K, V>(&mut self, table: &mut Table<K, V, ()>, _: usize) -> Option<u32> {
        table.front(0)
    }

    #[inline(always)]
    fn evicted(&mut self, _: u64, _: (), _: usize) {}

    fn clear(&mut self) {}
}

/// S3-FIFO's per-entry state: which list (bit 2: main) and the frequency
/// (bits 0-1, 0..=3).
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub struct S3Meta(u8);

/// The list of new keys.
pub const SMALL: usize = 0;
/// The list of keys read while in the small list, or back from the ghost.
pub const MAIN: usize = 1;
/// Frequencies stop counting here (two bits).
pub const MAX_FREQ: u8 = 3;
/// A key leaving the small list read at least this often moves to main.
pub const PROMOTE_AT: u8 = 1;

impl S3Meta {
    /// A fresh entry of the small list (`main` false) or of main.
    pub const fn new(main: bool) -> Self {
        S3Meta(if main { 4 } else { 0 })
    }

    /// The meta whose [`S3Meta::bits`] are `bits`; None when no meta has them.
    pub const fn from_bits(bits: u8) -> Option<Self> {
        if bits < 8 {
            Some(S3Meta(bits))
        } else {
            None
        }
    }

    /// `freq + 4 * in_main`: what a copy or a pickle keeps.
    pub const fn bits(self) -> u8 {
        self.0
    }

    pub const fn freq(self) -> u8 {
        self.0 & 3
    }

    pub const fn in_main(self) -> bool {
        self.0 & 4 != 0
    }

    #[inline(always)]
    fn bump(&mut self) {
        if self.0 & 3 != MAX_FREQ {
            self.0 += 1;
        }
    }
}

impl Meta for S3Meta {
    const LISTS: usize = 2;
    // A read bumps the freq: a use found earlier must find the same entry.
    type Born = u32;

    #[inline(always)]
    fn list(self) -> usize {
        ((self.0 >> 2) & 1) as usize
    }
}

/// The small list's share of `maxsize`: 1% (at least one).
pub fn small_share(maxsize: usize) -> usize {
    (maxsize / 100).max(1)
}

/// How many hashes the ghost remembers (as many as main's share, about).
pub fn ghost_size(maxsize: usize) -> usize {
    (maxsize as u128 * 9 / 10) as usize
}

/// S3-FIFO with a sketch-gated ghost. Amortized O(1): making room, or
/// finding main's victim to admit a key, may move several entries (each move
/// spends a unit of frequency a read paid for, or promotes a key once).
///
/// - read hit, overwrite: freq + 1, capped at 3. Nothing moves; the sketch
///   is not told.
/// - new key: the sketch counts its hash. If the ghost has the hash (it
///   forgets it): main if main is below its share, else main's CLOCK turns
///   until its oldest has freq 0 (the victim, left in place) and the key goes
///   to main only if the sketch counts it more often than the victim, else
///   to small. Not in the ghost: main until the first eviction when the small
///   list has its share (1%); else small.
/// - making room: from main when main holds more than its share or small is
///   empty, else from small. Small's oldest with freq >= 1 moves to main
///   (freq 0), else leaves and its hash joins the ghost; main's oldest with
///   freq > 0 goes back to main's end with freq - 1, else leaves.
#[derive(Default)]
pub struct S3Fifo {
    ghost: Ghost,
    sketch: Sketch,
    evicted_once: bool,
}

impl S3Fifo {
    /// Whether the cache has evicted since it was made or cleared (new keys
    /// then stop filling main directly).
    pub fn evicted_once(&self) -> bool {
        self.evicted_once
    }

    pub fn set_evicted_once(&mut self, evicted: bool) {
        self.evicted_once = evicted;
    }

    /// How many hashes the ghost holds.
    pub fn ghost_len(&self) -> usize {
        self.ghost.len()
    }

    /// Forgets the ghost's hashes.
    pub fn forget_ghost(&mut self) {
        self.ghost = Ghost::default();
    }

    /// Forgets what the sketch counted.
    pub fn forget_sketch(&mut self) {
        self.sketch = Sketch::default();
    }

    /// How often the sketch counted a key of this (table) hash, about.
    pub fn estimate(&self, hash: u64) -> u8 {
        self.sketch.estimate(hash)
    }

    /// Whether a key back from the ghost enters main: main has room, or the
    /// sketch counted it more often than main's victim (a tie keeps the victim).
    fn readmit<K, V>(
        &mut self,
        table: &mut Table<K, V, S3Meta>,
        hash: u64,
        maxsize: usize,
    ) -> bool {
        if table.list_len(MAIN) < maxsize - small_share(maxsize).min(maxsize) {
            return true;
        }
        match Self::from_main(table) {
            Some(victim) => self.sketch.estimate(hash) > self.sketch.estimate(table.hash(victim)),
            None => true,
        }
    }

    fn from_main<K, V>(table: &mut Table<K, V, S3Meta>) -> Option<u32> {
        while let Some(at) = table.front(MAIN) {
            let freq = table.meta(at).freq();
            if freq == 0 {
                return Some(at);
            }
            table.move_to_back(at, S3Meta(4 | (freq - 1)));
        }
        None
    }

    fn from_small<K, V>(table: &mut Table<K, V, S3Meta>) -> Option<u32> {
        while let Some(at) = table.front(SMALL) {
            if table.meta(at).freq() < PROMOTE_AT {
                return Some(at);
            }
            table.move_to_back(at, S3Meta::new(true));
        }
        None
    }
}

impl Policy for S3Fifo {
    type Meta = S3Meta;

    #[inline(always)]
    fn on_hit(meta: &mut S3Meta) {
        meta.bump();
    }

    #[inline(always)]
    fn on_overwrite(meta: &mut S3Meta) {
        meta.bump();
    }

    fn admit<K, V>(
        &mut self,
        table: &mut Table<K, V, S3Meta>,
        hash: u64,
        maxsize: usize,
    ) -> S3Meta {
        // The sketch counts the table's hash, as the pure twin and the model do.
        self.sketch.increment(hash, maxsize);
        let main = if self.ghost.take(hash) {
            self.readmit(table, hash, maxsize)
        } else {
            !self.evicted_once && table.list_len(SMALL) >= small_share(maxsize)
        };
        S3Meta::new(main)
    }

    fn victim<K, V>(&mut self, table: &mut Table<K, V, S3Meta>, maxsize: usize) -> Option<u32> {
        self.evicted_once = true;
        let main_share = maxsize - small_share(maxsize).min(maxsize);
        loop {
            if table.list_len(MAIN) > main_share || table.list_len(SMALL) == 0 {
                // None only when main is empty too: an empty table.
                return Self::from_main(table);
            }
            if let Some(at) = Self::from_small(table) {
                return Some(at);
            }
            // Every key of small moved to main: main's turn.
        }
    }

    fn evicted(&mut self, hash: u64, meta: S3Meta, maxsize: usize) {
        if !meta.in_main() {
            self.ghost.push(hash, ghost_size(maxsize));
        }
    }

    fn clear(&mut self) {
        *self = S3Fifo::default();
    }

    #[inline(always)]
    fn warm(&self, hash: u64, admitting: bool) {
        // Admitting follows an eviction, whose hash may push out the oldest.
        self.ghost.warm(hash, admitting);
    }
}

/// A table run by a policy, with the entries' deadlines once one has any:
/// what the bindings hold.
pub struct Cache<K, V, P: Policy> {
    table: Table<K, V, P::Meta>,
    policy: P,
    /// None until an entry is first given a deadline (a cache that never
    /// expires keeps no more than its table and policy).
    timers: Option<Box<Timers>>,
}

impl<K, V, P: Policy> Default for Cache<K, V, P> {
    fn default() -> Self {
        Cache {
            table: Table::new(),
            policy: P::default(),
            timers: None,
        }
    }
}

impl<K, V, P: Policy> Cache<K, V, P> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn table(&self) -> &Table<K, V, P::Meta> {
        &self.table
    }

    pub fn policy(&self) -> &P {
        &self.policy
    }

    pub fn policy_mut(&mut self) -> &mut P {
        &mut self.policy
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// The value of the entry in slot `at`, read as a use (a hit).
    #[inline]
    pub fn hit(&mut self, at: u32) -> &V {
        let (meta, value) = self.table.meta_and_value(at);
        P::on_hit(meta);
        value
    }

    /// What slot `at` keeps of when its entry was stored (see
    /// [`crate::table::Born`]); None when it is empty.
    #[inline]
    pub fn born(&self, at: u32) -> Option<<P::Meta as Meta>::Born> {
        self.table.born(at)
    }

    /// A use, as [`Cache::hit`], of the entry found in slot `at` when its
    /// [`Cache::born`] was `born`; nothing if that entry has left (whatever
    /// holds the slot now). Whether it was there.
    pub fn hit_if(&mut self, at: u32, born: <P::Meta as Meta>::Born) -> bool {
        if self.table.born(at) != Some(born) {
            return false;
        }
        P::on_hit(self.table.meta_and_value(at).0);
        true
    }

    /// Replaces the value of the entry in slot `at` (a use; it keeps its
    /// place) and returns the old one.
    pub fn overwrite(&mut self, at: u32, value: V) -> V {
        P::on_overwrite(self.table.meta_and_value(at).0);
        self.table.replace(at, value)
    }

    /// Inserts a key the caller found absent; at `maxsize` entries one entry
    /// leaves first, and is returned. `maxsize` is at least 1.
    pub fn insert(&mut self, hash: u64, key: K, value: V, maxsize: usize) -> (u32, Option<(K, V)>) {
        let evicted = if self.table.len() >= maxsize {
            self.policy.warm(hash, true);
            self.evict(maxsize)
        } else {
            None
        };
        let meta = self.policy.admit(&mut self.table, hash, maxsize);
        (self.table.push_back(hash, key, value, meta), evicted)
    }

    fn evict(&mut self, maxsize: usize) -> Option<(K, V)> {
        let at = self.policy.victim(&mut self.table, maxsize)?;
        self.policy.warm(self.table.hash(at), false);
        let (hash, key, value, meta) = self.table.remove_entry(at);
        self.forget_deadline(at);
        self.policy.evicted(hash, meta, maxsize);
        Some((key, value))
    }

    /// Removes the entry in slot `at` (not an eviction: the policy is not told).
    pub fn remove(&mut self, at: u32) -> (K, V) {
        let (key, value, _) = self.table.remove(at);
        self.forget_deadline(at);
        (key, value)
    }

    #[inline]
    fn forget_deadline(&mut self, at: u32) {
        if let Some(timers) = &mut self.timers {
            timers.forget(at);
        }
    }

    /// Whether any entry was ever given a deadline (then every operation
    /// asks what is due).
    #[inline(always)]
    pub fn timed(&self) -> bool {
        self.timers.is_some()
    }

    /// The deadline of the entry in slot `at`, if it has one.
    pub fn deadline(&self, at: u32) -> Option<Deadline> {
        self.timers.as_ref().and_then(|timers| timers.get(at))
    }

    /// Gives the entry in slot `at` the deadline of a write (`NEVER`: none).
    pub fn set_deadline(&mut self, at: u32, deadline: Deadline) {
        match &mut self.timers {
            Some(timers) => timers.set(at, deadline),
            None if deadline.is_never() => {}
            None => self.timers.insert(Box::default()).set(at, deadline),
        }
    }

    /// Moves the idle deadline of the entry in slot `at` (a read).
    #[inline]
    pub fn touch(&mut self, at: u32, idle: f64) {
        if let Some(timers) = &mut self.timers {
            timers.touch(at, idle);
        }
    }

    /// The write whose deadline the entry in slot `at` has (a stamp no other
    /// write of this cache has had), if it has one.
    #[inline]
    pub fn stamp(&self, at: u32) -> Option<u64> {
        self.timers.as_ref().and_then(|timers| timers.stamp(at))
    }

    /// [`Cache::touch`], if the entry in slot `at` still has the deadline of
    /// the write `stamp` (else it left, or a write since set a later one).
    pub fn touch_if(&mut self, at: u32, stamp: u64, idle: f64) {
        if let Some(timers) = &mut self.timers {
            if timers.stamp(at) == Some(stamp) {
                timers.touch(at, idle);
            }
        }
    }

    /// Removes every entry due at `now` (not evictions: the policy is not
    /// told) into `out`; how many.
    pub fn expire(&mut self, now: f64, out: &mut Vec<(K, V)>) -> usize {
        let mut count = 0;
        while let Some(at) = self.timers.as_mut().and_then(|timers| timers.next_due(now)) {
            out.push(self.remove(at));
            count += 1;
        }
        count
    }

    /// Puts the entry in slot `at` at the back of `meta`'s list with `meta`
    /// (rebuilding a copy).
    pub fn place(&mut self, at: u32, meta: P::Meta) {
        self.table.move_to_back(at, meta);
    }

    /// Empties the cache (the policy and the deadlines forget too) and
    /// hands back the entries.
    pub fn take(&mut self) -> Table<K, V, P::Meta> {
        self.policy.clear();
        if let Some(timers) = &mut self.timers {
            timers.clear();
        }
        self.table.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::spread;
    use crate::testing::{PlainSketch, Rng};
    use std::collections::VecDeque;

    fn h(k: u64) -> u64 {
        spread(k)
    }

    /// `set` as the bindings do it: overwrite when present, else insert.
    fn set<P: Policy>(
        c: &mut Cache<u64, u64, P>,
        k: u64,
        v: u64,
        maxsize: usize,
    ) -> Option<(u64, u64)> {
        if let Some(at) = c.table().find(h(k), |&x| x == k) {
            c.overwrite(at, v);
            return None;
        }
        c.insert(h(k), k, v, maxsize).1
    }

    fn get<P: Policy>(c: &mut Cache<u64, u64, P>, k: u64) -> Option<u64> {
        let at = c.table().find(h(k), |&x| x == k)?;
        Some(*c.hit(at))
    }

    fn items<P: Policy>(c: &Cache<u64, u64, P>) -> Vec<(u64, u64)> {
        c.table().iter().map(|(k, v, _)| (*k, *v)).collect()
    }

    #[test]
    fn fifo_evicts_oldest_and_keeps_position_on_overwrite() {
        let mut c: Cache<u64, u64, Fifo> = Cache::new();
        assert_eq!(set(&mut c, 1, 10, 2), None);
        assert_eq!(set(&mut c, 2, 20, 2), None);
        assert_eq!(get(&mut c, 1), Some(10));
        assert_eq!(set(&mut c, 1, 11, 2), None);
        assert_eq!(set(&mut c, 3, 30, 2), Some((1, 11)));
        assert_eq!(items(&c), vec![(2, 20), (3, 30)]);
    }

    #[test]
    fn take_empties_the_cache_and_its_policy() {
        let mut c: Cache<u64, u64, S3Fifo> = Cache::new();
        for k in 0..30 {
            set(&mut c, k, k, 10);
        }
        assert!(c.policy().evicted_once());
        assert!(c.policy().ghost_len() > 0);
        assert_eq!(c.policy().estimate(h(29)), 1);
        let old = c.take();
        assert_eq!(old.len(), 10);
        assert!(c.is_empty());
        assert!(!c.policy().evicted_once());
        assert_eq!(c.policy().ghost_len(), 0);
        assert_eq!(c.policy().estimate(h(29)), 0);
    }

    #[test]
    fn a_use_found_before_is_nothing_once_its_entry_left() {
        let idle = |idle| Deadline {
            write: f64::INFINITY,
            idle,
        };
        let mut c: Cache<u64, u64, S3Fifo> = Cache::new();
        for k in 0..10 {
            set(&mut c, k, k, 10);
        }
        let at = c.table().find(h(3), |&x| x == 3).expect("present");
        let born = c.born(at).expect("stored");
        c.set_deadline(at, idle(10.0));
        let stamp = c.stamp(at).expect("a deadline");
        assert!(c.hit_if(at, born));
        assert_eq!(c.table().meta(at).freq(), 1);
        c.touch_if(at, stamp, 20.0);
        assert_eq!(c.deadline(at), Some(idle(20.0)));
        // Written again: the same entry, the write's deadline stands.
        c.overwrite(at, 33);
        c.set_deadline(at, idle(40.0));
        c.touch_if(at, stamp, 25.0);
        assert_eq!(c.deadline(at), Some(idle(40.0)));
        assert!(c.hit_if(at, born));
        // Gone, then the same key in the same slot: another entry.
        c.remove(at);
        assert!(!c.hit_if(at, born));
        assert_eq!(c.insert(h(3), 3, 3, 10).0, at);
        c.set_deadline(at, idle(50.0));
        assert!(!c.hit_if(at, born));
        c.touch_if(at, stamp, 25.0);
        assert_eq!(
            (c.table().meta(at).freq(), c.deadline(at)),
            (0, Some(idle(50.0)))
        );
        // Emptied and filled again alike: neither the births nor the stamps repeat.
        let (born, stamp) = (
            c.born(at).expect("stored"),
            c.stamp(at).expect("a deadline"),
        );
        drop(c.take());
        assert!(!c.hit_if(at, born));
        for k in 0..10 {
            set(&mut c, k, k, 10);
        }
        let again = c.table().find(h(3), |&x| x == 3).expect("present");
        c.set_deadline(again, idle(60.0));
        assert_eq!(again, at);
        assert!(!c.hit_if(at, born));
        c.touch_if(at, stamp, 25.0);
        assert_eq!(
            (c.table().meta(at).freq(), c.deadline(at)),
            (0, Some(idle(60.0)))
        );
    }

    /// Pseudo-random operations against a VecDeque model.
    #[test]
    fn fifo_matches_a_model_under_random_operations() {
        let mut rng = Rng(0x1234_5678);
        let maxsize = 16;
        let mut c: Cache<u64, u64, Fifo> = Cache::new();
        let mut model: VecDeque<(u64, u64)> = VecDeque::new();
        for step in 0..20_000u64 {
            let k = rng.next() % 40;
            match rng.next() % 4 {
                0 => {
                    let got = c.table().find(h(k), |&x| x == k).map(|at| c.remove(at));
                    let want = model
                        .iter()
                        .position(|&(mk, _)| mk == k)
                        .and_then(|i| model.remove(i));
                    assert_eq!(got, want);
                }
                1 => {
                    let want = model.iter().find(|e| e.0 == k).map(|e| e.1);
                    assert_eq!(get(&mut c, k), want);
                }
                _ => {
                    set(&mut c, k, step, maxsize);
                    if let Some(e) = model.iter_mut().find(|e| e.0 == k) {
                        e.1 = step;
                    } else {
                        if model.len() >= maxsize {
                            model.pop_front();
                        }
                        model.push_back((k, step));
                    }
                }
            }
            assert_eq!(items(&c), model.iter().copied().collect::<Vec<_>>());
        }
    }

    /// S3-FIFO with a sketch-gated ghost written plainly (as
    /// tests/s3fifo_model.py): queues of (key, value, freq), the ghost a
    /// queue of hashes.
    struct Model {
        maxsize: usize,
        small: VecDeque<(u64, u64, u8)>,
        main: VecDeque<(u64, u64, u8)>,
        ghost: VecDeque<u64>,
        sketch: PlainSketch,
        evicted_once: bool,
        evictions: usize,
        /// Keys back from the ghost with main full: [kept out, admitted].
        gated: [usize; 2],
    }

    impl Model {
        fn new(maxsize: usize) -> Self {
            Model {
                maxsize,
                small: VecDeque::new(),
                main: VecDeque::new(),
                ghost: VecDeque::new(),
                sketch: PlainSketch::new(maxsize),
                evicted_once: false,
                evictions: 0,
                gated: [0; 2],
            }
        }

        fn small_target(&self) -> usize {
            (self.maxsize / 100).max(1)
        }

        /// Turns main's CLOCK until its oldest has freq 0: that key, left in place.
        fn main_victim(&mut self) -> Option<u64> {
            while let Some(&(k, v, f)) = self.main.front() {
                if f == 0 {
                    return Some(k);
                }
                self.main.pop_front();
                self.main.push_back((k, v, f - 1));
            }
            None
        }

        fn len(&self) -> usize {
            self.small.len() + self.main.len()
        }

        fn entry(&mut self, k: u64) -> Option<&mut (u64, u64, u8)> {
            self.small
                .iter_mut()
                .chain(self.main.iter_mut())
                .find(|e| e.0 == k)
        }

        fn get(&mut self, k: u64) -> Option<u64> {
            let e = self.entry(k)?;
            e.2 = (e.2 + 1).min(3);
            Some(e.1)
        }

        fn set(&mut self, k: u64, v: u64) {
            if let Some(e) = self.entry(k) {
                e.1 = v;
                e.2 = (e.2 + 1).min(3);
                return;
            }
            while self.len() >= self.maxsize {
                self.evict_one();
            }
            self.sketch.increment(k);
            let small_target = self.small_target();
            if let Some(i) = self.ghost.iter().position(|&g| g == h(k)) {
                self.ghost.remove(i);
                let admit = self.main.len() < self.maxsize - small_target || {
                    let wins = self.main_victim().is_none_or(|victim| {
                        self.sketch.estimate(k) > self.sketch.estimate(victim)
                    });
                    self.gated[usize::from(wins)] += 1;
                    wins
                };
                if admit {
                    self.main.push_back((k, v, 0));
                } else {
                    self.small.push_back((k, v, 0));
                }
            } else if !self.evicted_once && self.small.len() >= small_target {
                self.main.push_back((k, v, 0));
            } else {
                self.small.push_back((k, v, 0));
            }
        }

        fn evict_one(&mut self) {
            self.evicted_once = true;
            let main_target = self.maxsize - self.small_target();
            if self.main.len() > main_target || self.small.is_empty() {
                if self.main_victim().is_some() {
                    self.main.pop_front();
                    self.evictions += 1;
                }
            } else {
                while let Some((k, v, f)) = self.small.pop_front() {
                    if f >= 1 {
                        self.main.push_back((k, v, 0));
                        continue;
                    }
                    self.evictions += 1;
                    let size = self.maxsize * 9 / 10;
                    if size > 0 {
                        if let Some(i) = self.ghost.iter().position(|&g| g == h(k)) {
                            self.ghost.remove(i);
                        }
                        self.ghost.push_back(h(k));
                        if self.ghost.len() > size {
                            self.ghost.pop_front();
                        }
                    }
                    return;
                }
            }
        }

        fn pop(&mut self, k: u64) -> Option<u64> {
            for q in [&mut self.small, &mut self.main] {
                if let Some(i) = q.iter().position(|e| e.0 == k) {
                    return q.remove(i).map(|e| e.1);
                }
            }
            None
        }

        fn items(&self) -> Vec<(u64, u64, u8)> {
            self.small.iter().chain(self.main.iter()).copied().collect()
        }
    }

    fn s3_items(c: &Cache<u64, u64, S3Fifo>) -> Vec<(u64, u64, u8)> {
        c.table()
            .iter()
            .map(|(k, v, m)| (*k, *v, m.freq()))
            .collect()
    }

    #[test]
    fn s3fifo_matches_a_model_under_random_operations() {
        let sizes = [
            (1, 1, 4),
            (2, 2, 6),
            (3, 10, 30),
            (4, 16, 40),
            (5, 37, 120),
            (6, 250, 900),
        ];
        for (seed, maxsize, keys) in sizes {
            let mut gated = [0; 2];
            let mut rng = Rng(0x9E37_79B9 * seed);
            let mut c: Cache<u64, u64, S3Fifo> = Cache::new();
            let mut model = Model::new(maxsize);
            let mut evictions = 0;
            for step in 0..20_000u64 {
                // Skewed keys, so that some are read often enough to be kept.
                let k = (rng.next() % keys) * (rng.next() % keys) / keys;
                match rng.next() % 10 {
                    0 => {
                        let got = c.table().find(h(k), |&x| x == k).map(|at| c.remove(at).1);
                        assert_eq!(got, model.pop(k));
                    }
                    1 if step % 997 == 0 => {
                        drop(c.take());
                        gated = [gated[0] + model.gated[0], gated[1] + model.gated[1]];
                        model = Model {
                            evictions: model.evictions,
                            ..Model::new(maxsize)
                        };
                    }
                    1..=5 => assert_eq!(get(&mut c, k), model.get(k), "step {step}"),
                    _ => {
                        evictions += usize::from(set(&mut c, k, step, maxsize).is_some());
                        model.set(k, step);
                    }
                }
                assert_eq!(
                    s3_items(&c),
                    model.items(),
                    "maxsize {maxsize}, step {step}"
                );
                assert_eq!(c.table().list_len(SMALL), model.small.len());
                assert_eq!(c.policy().ghost_len(), model.ghost.len());
                assert_eq!(c.policy().evicted_once(), model.evicted_once);
                assert!(c.len() <= maxsize);
            }
            assert_eq!(evictions, model.evictions);
            assert!(evictions > 100, "the run evicted ({evictions})");
            let gated = [gated[0] + model.gated[0], gated[1] + model.gated[1]];
            if maxsize >= 10 {
                // The sketch both kept keys out and let them in.
                assert!(gated[0] > 0 && gated[1] > 0, "maxsize {maxsize}: {gated:?}");
            }
        }
    }

    #[test]
    fn s3fifo_keeps_keys_read_again_and_forgets_one_hit_wonders() {
        let mut c: Cache<u64, u64, S3Fifo> = Cache::new();
        let maxsize = 10;
        for k in 0..10 {
            set(&mut c, k, k, maxsize);
        }
        // Warm-up: the first key filled small's share, the rest went to main.
        let metas: Vec<bool> = c.table().iter().map(|(_, _, m)| m.in_main()).collect();
        assert_eq!(
            metas,
            [false, true, true, true, true, true, true, true, true, true]
        );
        for k in 1..10 {
            get(&mut c, k);
        }
        // A scan of new keys goes through small and leaves from there.
        for k in 100..200 {
            set(&mut c, k, k, maxsize);
        }
        let kept: Vec<u64> = items(&c).into_iter().map(|(k, _)| k).collect();
        assert_eq!(&kept[1..], &[1, 2, 3, 4, 5, 6, 7, 8, 9]);
        assert_eq!(kept[0], 199);
        // A key back from the ghost goes straight to main.
        set(&mut c, 198, 0, maxsize);
        let at = c.table().find(h(198), |&x| x == 198).expect("admitted");
        assert!(c.table().meta(at).in_main());
    }

    #[test]
    fn s3fifo_promotes_keys_read_once_in_small() {
        let mut c: Cache<u64, u64, S3Fifo> = Cache::new();
        let maxsize = 200; // small's share is 2
        for k in 0..200 {
            set(&mut c, k, k, maxsize);
        }
        set(&mut c, 1000, 0, maxsize); // evicts 0 (small, unread): 0's hash to the ghost
        assert_eq!(c.policy().ghost_len(), 1);
        // 1 is small's oldest now; read once, it moves to main instead of leaving.
        get(&mut c, 1);
        set(&mut c, 1001, 0, maxsize);
        let at = c.table().find(h(1), |&x| x == 1).expect("kept");
        assert_eq!(c.table().meta(at), S3Meta::new(true));
        assert!(c.table().find(h(1000), |&x| x == 1000).is_none());
    }

    #[test]
    fn a_key_back_from_the_ghost_displaces_mains_victim_only_if_counted_more() {
        let mut c: Cache<u64, u64, S3Fifo> = Cache::new();
        let maxsize = 10; // small 1, main 9
        for k in 0..10 {
            set(&mut c, k, k, maxsize);
        }
        set(&mut c, 10, 10, maxsize); // 0 leaves small unread: to the ghost
                                      // 0 is back: counted twice, main's victim (1) once. 10 leaves small.
        set(&mut c, 0, 0, maxsize);
        let at = c.table().find(h(0), |&x| x == 0).expect("admitted");
        assert!(c.table().meta(at).in_main());
        assert_eq!(
            (c.policy().estimate(h(0)), c.policy().estimate(h(1))),
            (2, 1)
        );
        // 10 comes back, counted twice. Main is over its share: 1 (unread)
        // leaves to make room. Then the CLOCK turns 2..=9 (read: freq 1 -> 0)
        // and stops at 0, the victim, counted twice too: a tie keeps it, and
        // 10 goes to small.
        for k in 2..10 {
            get(&mut c, k);
        }
        set(&mut c, 10, 10, maxsize);
        let order: Vec<(u64, u8)> = c.table().iter().map(|(k, _, m)| (*k, m.bits())).collect();
        let mut want = vec![(10, 0), (0, 4)];
        want.extend((2..10).map(|k| (k, 4)));
        assert_eq!(order, want);
        // 10 leaves small again, comes back counted three times: it wins.
        set(&mut c, 13, 13, maxsize); // 10 leaves small to the ghost
        set(&mut c, 10, 10, maxsize); // 13 leaves small to the ghost
        assert_eq!(
            (c.policy().estimate(h(10)), c.policy().estimate(h(0))),
            (3, 2)
        );
        let at = c.table().find(h(10), |&x| x == 10).expect("admitted");
        assert!(c.table().meta(at).in_main());
        assert_eq!(c.table().front(MAIN), c.table().find(h(0), |&x| x == 0));
    }

    fn ttl(at: f64) -> Deadline {
        Deadline {
            write: at,
            idle: f64::INFINITY,
        }
    }

    #[test]
    fn expired_entries_leave_without_telling_the_policy() {
        let mut c: Cache<u64, u64, S3Fifo> = Cache::new();
        let maxsize = 10;
        for k in 0..10 {
            let (at, _) = c.insert(h(k), k, k, maxsize);
            c.set_deadline(at, ttl(f64::from(k as u32)));
        }
        assert!(c.timed());
        let mut out = Vec::new();
        assert_eq!(c.expire(4.0, &mut out), 5);
        let mut gone: Vec<u64> = out.iter().map(|e| e.0).collect();
        gone.sort_unstable();
        assert_eq!(gone, vec![0, 1, 2, 3, 4]);
        assert_eq!(c.len(), 5);
        // Not evictions: no hash went to the ghost, and warm-up goes on.
        assert_eq!(c.policy().ghost_len(), 0);
        assert!(!c.policy().evicted_once());
        assert_eq!(c.expire(4.5, &mut out), 0);
    }

    #[test]
    fn an_evicted_or_removed_entry_takes_its_deadline_with_it() {
        let mut c: Cache<u64, u64, Fifo> = Cache::new();
        let (at, _) = c.insert(h(1), 1, 1, 1);
        c.set_deadline(at, ttl(5.0));
        // 2 evicts 1 and may reuse its slot: it must not inherit the deadline.
        let (at2, gone) = c.insert(h(2), 2, 2, 1);
        assert_eq!(gone, Some((1, 1)));
        assert_eq!(c.deadline(at2), None);
        let mut out = Vec::new();
        assert_eq!(c.expire(10.0, &mut out), 0);
        c.set_deadline(at2, ttl(5.0));
        let (k, v) = c.remove(at2);
        assert_eq!((k, v), (2, 2));
        assert_eq!(c.expire(10.0, &mut out), 0);
        let (at3, _) = c.insert(h(3), 3, 3, 1);
        c.set_deadline(at3, ttl(5.0));
        drop(c.take());
        assert!(c.timed(), "a cache that kept deadlines stays timed");
        let (at4, _) = c.insert(h(4), 4, 4, 1);
        assert_eq!(c.deadline(at4), None);
        assert_eq!(c.expire(10.0, &mut out), 0);
    }

    #[test]
    fn a_cache_without_deadlines_keeps_none() {
        let mut c: Cache<u64, u64, Fifo> = Cache::new();
        let (at, _) = c.insert(h(1), 1, 1, 4);
        c.set_deadline(at, Deadline::NEVER);
        c.touch(at, 3.0);
        assert!(!c.timed());
        assert_eq!(c.expire(f64::MAX, &mut Vec::new()), 0);
    }

    #[test]
    fn meta_bits_round_trip() {
        for bits in 0..8 {
            let meta = S3Meta::from_bits(bits).expect("valid");
            assert_eq!(meta.bits(), bits);
            assert_eq!(meta.freq(), bits & 3);
            assert_eq!(meta.in_main(), bits >= 4);
            assert_eq!(meta.list(), usize::from(bits >= 4));
        }
        assert_eq!(S3Meta::from_bits(8), None);
        let mut m = S3Meta::new(false);
        for _ in 0..10 {
            S3Fifo::on_hit(&mut m);
        }
        assert_eq!(m, S3Meta::from_bits(3).expect("valid"));
    }

    #[test]
    fn shares() {
        assert_eq!((small_share(1), ghost_size(1)), (1, 0));
        assert_eq!((small_share(19), ghost_size(19)), (1, 17));
        assert_eq!((small_share(199), ghost_size(199)), (1, 179));
        assert_eq!((small_share(1000), ghost_size(1000)), (10, 900));
        assert_eq!(ghost_size(u32::MAX as usize), 3_865_470_565);
    }
}
