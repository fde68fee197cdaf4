//! S3-FIFO's ghost: a FIFO of hashes with O(1) membership, laid out so that
//! each operation touches about one random cache line.
//!
//! The ring holds the full hashes in push order; the index is an
//! open-addressing table (Robin Hood linear probing, at most 7/8 full) of 8-byte
//! entries, each the top 32 bits of a hash (its tag) and the ring position of
//! that hash's latest push. A lookup compares tags in the index and reads the
//! ring only on a tag match, so membership is exact: equal full hashes.
//! Pushing a hash again makes it the newest; a ring entry that no index entry
//! points to (taken, or pushed again since) is stale and skipped when it
//! becomes the oldest. When the ring is full it is rewritten without its
//! stale entries (twice as large when live ones fill half of it).

/// An empty bucket of the index: its position is [`NO_POS`], which no ring
/// entry has.
const EMPTY: u64 = u64::MAX;
/// The position of no ring entry.
const NO_POS: u32 = u32::MAX;
/// The bits of an index entry that hold its hash's top bits.
const TAG: u64 = !(u32::MAX as u64);
/// Ring positions are below [`NO_POS`]. A ghost holds at most 0.9 x
/// `u32::MAX` hashes (a table's maxsize is below `u32::MAX`), so a full ring
/// of this size still has room.
const MAX_RING: usize = NO_POS as usize;
const MIN_RING: usize = 16;
/// A bucket number is the hash's top bits, which an entry's tag holds: the
/// index has at most 2^32 buckets (more than the ring's positions, so one is
/// always empty).
const MAX_INDEX_BITS: u32 = 32;
const MIN_INDEX_BITS: u32 = 4;

#[inline(always)]
fn prefetch(entry: &u64) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch has no architectural effect (it never faults), and
    // SSE, which it needs, is part of x86_64.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>((entry as *const u64).cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = entry;
}

#[inline(always)]
fn pos(entry: u64) -> usize {
    entry as u32 as usize
}

/// A FIFO of at most a given number of distinct hashes; see the module's
/// documentation.
#[derive(Default)]
pub struct Ghost {
    /// Empty until the first push, then 2^(64 - shift) buckets.
    index: Vec<u64>,
    shift: u32,
    /// The ring's capacity is its length; its entries are the `queued` from `head`.
    ring: Vec<u64>,
    head: usize,
    queued: usize,
    /// Index entries: the hashes remembered.
    live: usize,
}

impl Ghost {
    /// How many hashes are remembered.
    pub fn len(&self) -> usize {
        self.live
    }

    #[inline(always)]
    fn home(&self, hash: u64) -> usize {
        (hash >> self.shift) as usize
    }

    /// How far bucket `at` is from the home of the entry in it.
    #[inline(always)]
    fn distance(&self, entry: u64, at: usize) -> usize {
        at.wrapping_sub(self.home(entry)) & (self.index.len() - 1)
    }

    /// The bucket holding `hash`, or else where it would be inserted. The
    /// index must not be empty. Robin Hood order (each cluster sorted by
    /// home) ends a search at the first entry nearer its home than `hash`
    /// would be: short probes even at 7/8 load.
    #[inline]
    fn probe(&self, hash: u64) -> Result<usize, usize> {
        let mask = self.index.len() - 1;
        let mut at = self.home(hash);
        let mut distance = 0;
        loop {
            let entry = self.index[at];
            if entry == EMPTY || self.distance(entry, at) < distance {
                return Err(at);
            }
            if (entry ^ hash) & TAG == 0 && self.ring[pos(entry)] == hash {
                return Ok(at);
            }
            at = (at + 1) & mask;
            distance += 1;
        }
    }

    /// The bucket of the entry for ring position `p`, whose hash is `hash`;
    /// None when that ring entry is stale.
    #[inline]
    fn bucket_of(&self, hash: u64, p: usize) -> Option<usize> {
        let mask = self.index.len() - 1;
        let mut at = self.home(hash);
        let mut distance = 0;
        loop {
            let entry = self.index[at];
            if entry == EMPTY || self.distance(entry, at) < distance {
                return None;
            }
            if pos(entry) == p {
                return Some(at);
            }
            at = (at + 1) & mask;
            distance += 1;
        }
    }

    /// Puts `entry` in bucket `at`, where [`Ghost::probe`] would look for
    /// it, shifting the rest of the cluster on by one (which keeps it sorted).
    fn insert_at(&mut self, mut at: usize, mut entry: u64) {
        let mask = self.index.len() - 1;
        loop {
            let old = std::mem::replace(&mut self.index[at], entry);
            if old == EMPTY {
                return;
            }
            entry = old;
            at = (at + 1) & mask;
        }
    }

    /// Empties bucket `at`, moving the rest of its cluster back by one up to
    /// an entry at its home (no tombstones).
    fn remove_at(&mut self, mut at: usize) {
        let mask = self.index.len() - 1;
        loop {
            let next = (at + 1) & mask;
            let entry = self.index[next];
            if entry == EMPTY || self.distance(entry, next) == 0 {
                break;
            }
            self.index[at] = entry;
            at = next;
        }
        self.index[at] = EMPTY;
        self.live -= 1;
    }

    /// Doubles the index (up to [`MAX_INDEX_BITS`]); entries carry their
    /// homes in their tags, so the ring is not read.
    fn grow_index(&mut self) {
        let bits = if self.index.is_empty() {
            MIN_INDEX_BITS
        } else {
            64 - self.shift + 1
        };
        let Some(buckets) = 1usize.checked_shl(bits).filter(|_| bits <= MAX_INDEX_BITS) else {
            return;
        };
        let old = std::mem::replace(&mut self.index, vec![EMPTY; buckets]);
        self.shift = 64 - bits;
        let mask = buckets - 1;
        for entry in old.into_iter().filter(|&e| e != EMPTY) {
            let mut at = self.home(entry);
            let mut distance = 0;
            while self.index[at] != EMPTY && self.distance(self.index[at], at) >= distance {
                at = (at + 1) & mask;
                distance += 1;
            }
            self.insert_at(at, entry);
        }
    }

    /// Rewrites the full ring without its stale entries, oldest first from
    /// position 0, twice as large when live entries fill half of it (so at
    /// least half of it is free after).
    fn relayout(&mut self) {
        let cap = self.ring.len();
        let new_cap = if self.live * 2 >= cap {
            (cap * 2).clamp(MIN_RING, MAX_RING)
        } else {
            cap
        };
        // Old position -> new position, NO_POS for a stale entry.
        let mut moved = vec![NO_POS; cap];
        for &entry in self.index.iter().filter(|&&e| e != EMPTY) {
            moved[pos(entry)] = 0;
        }
        let mut ring = vec![0; new_cap];
        let mut kept = 0;
        let mut at = self.head;
        for _ in 0..self.queued {
            if moved[at] != NO_POS {
                moved[at] = kept as u32;
                ring[kept] = self.ring[at];
                kept += 1;
            }
            at = if at + 1 == cap { 0 } else { at + 1 };
        }
        for entry in self.index.iter_mut().filter(|e| **e != EMPTY) {
            *entry = (*entry & TAG) | u64::from(moved[pos(*entry)]);
        }
        self.ring = ring;
        self.head = 0;
        self.queued = kept;
    }

    /// Forgets the oldest ring entry (a hash only when the entry is live).
    fn pop_oldest(&mut self) {
        let at = self.head;
        let hash = self.ring[at];
        self.head = if at + 1 == self.ring.len() { 0 } else { at + 1 };
        self.queued -= 1;
        if let Some(bucket) = self.bucket_of(hash, at) {
            self.remove_at(bucket);
        }
    }

    /// Remembers `hash` as the newest, forgetting the oldest beyond `size`.
    pub fn push(&mut self, hash: u64, size: usize) {
        if size == 0 {
            return;
        }
        if self.queued == self.ring.len() {
            self.relayout();
        }
        if (self.live + 1) * 8 > self.index.len() * 7 {
            self.grow_index();
        }
        let mut at = self.head + self.queued;
        if at >= self.ring.len() {
            at -= self.ring.len();
        }
        let entry = (hash & TAG) | at as u64;
        match self.probe(hash) {
            Ok(bucket) => self.index[bucket] = entry,
            Err(bucket) => {
                self.insert_at(bucket, entry);
                self.live += 1;
            }
        }
        self.ring[at] = hash;
        self.queued += 1;
        while self.live > size {
            self.pop_oldest();
        }
    }

    /// Starts loading the bucket that a push or take of `hash` probes first
    /// (and, with `oldest`, the one forgetting the oldest probes), so that
    /// their cache misses overlap the caller's work.
    #[inline(always)]
    pub fn warm(&self, hash: u64, oldest: bool) {
        if self.index.is_empty() {
            return;
        }
        prefetch(&self.index[self.home(hash)]);
        if oldest && self.queued > 0 {
            prefetch(&self.index[self.home(self.ring[self.head])]);
        }
    }

    /// Whether `hash` was remembered; it is forgotten either way.
    pub fn take(&mut self, hash: u64) -> bool {
        if self.live == 0 {
            return false;
        }
        match self.probe(hash) {
            Ok(bucket) => {
                self.remove_at(bucket);
                true
            }
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Rng;
    use std::collections::VecDeque;

    /// The ghost written plainly, as tests/s3fifo_model.py has it.
    #[derive(Default)]
    struct Model(VecDeque<u64>);

    impl Model {
        fn push(&mut self, hash: u64, size: usize) {
            if size == 0 {
                return;
            }
            self.0.retain(|&h| h != hash);
            self.0.push_back(hash);
            if self.0.len() > size {
                self.0.pop_front();
            }
        }

        fn take(&mut self, hash: u64) -> bool {
            let before = self.0.len();
            self.0.retain(|&h| h != hash);
            self.0.len() != before
        }
    }

    /// Asserts the structure is consistent: one index entry per live hash,
    /// each reachable from its home and pointing into the ring's entries.
    fn check(g: &Ghost) {
        let mut live = 0;
        for (at, &entry) in g.index.iter().enumerate() {
            if entry == EMPTY {
                continue;
            }
            live += 1;
            let hash = g.ring[pos(entry)];
            assert_eq!(hash & TAG, entry & TAG, "tag of bucket {at}");
            assert_eq!(g.probe(hash), Ok(at), "bucket {at} reachable");
            let distance = g.distance(entry, at);
            if distance > 0 {
                let before = (at + g.index.len() - 1) & (g.index.len() - 1);
                let prev = g.index[before];
                assert!(
                    prev != EMPTY && g.distance(prev, before) + 1 >= distance,
                    "sorted at {at}"
                );
            }
            let offset = (pos(entry) + g.ring.len() - g.head) % g.ring.len();
            assert!(offset < g.queued, "position {} in the ring", pos(entry));
        }
        assert_eq!(live, g.live);
        assert!(g.live * 8 <= g.index.len() * 7);
    }

    #[test]
    fn forgets_the_oldest_and_refreshes_a_hash_pushed_again() {
        let mut g = Ghost::default();
        for hash in 0..5 {
            g.push(hash, 3);
        }
        assert_eq!(g.len(), 3);
        assert!(!g.take(1));
        g.push(2, 3); // 2 becomes the newest: 3 is the oldest now
        g.push(9, 3);
        assert!(!g.take(3));
        assert!(g.take(2) && g.take(4) && g.take(9));
        assert_eq!(g.len(), 0);
        // Stale ring entries are dropped when the ring is full: it stays
        // in proportion, and so does the index.
        for round in 0..10_000 {
            g.push(round, 3);
            assert!(g.take(round));
        }
        assert!(g.ring.len() <= MIN_RING && g.index.len() <= 1 << MIN_INDEX_BITS);
        g.push(7, 0);
        assert_eq!(g.len(), 0);
    }

    /// Random pushes and takes against the model, over hashes made to share
    /// tags and homes (so clusters form, wrap, and tags match without the
    /// hashes being equal), at sizes that make the ring and index grow and
    /// the ring compact.
    #[test]
    fn matches_the_model_under_random_operations() {
        for (seed, size, keys) in [
            (1, 1, 4),
            (2, 3, 10),
            (3, 17, 60),
            (4, 100, 300),
            (5, 1000, 1500),
            (6, 40, 41),
        ] {
            let mut rng = Rng(0x9E37_79B9 * seed);
            let mut g = Ghost::default();
            let mut model = Model::default();
            for step in 0..30_000 {
                let k = rng.next() % keys;
                // Low keys differ only below the tag; others share a few
                // top bits, so they crowd a few homes.
                let hash = if k.is_multiple_of(3) {
                    0xABCD_0000_0000_0000 | k
                } else {
                    (k << 58) | (k.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 6)
                };
                if rng.next().is_multiple_of(3) {
                    assert_eq!(g.take(hash), model.take(hash), "seed {seed} step {step}");
                } else {
                    g.push(hash, size);
                    model.push(hash, size);
                }
                assert_eq!(g.len(), model.0.len(), "seed {seed} step {step}");
                if step % 97 == 0 {
                    check(&g);
                    // The live ring entries, oldest first, are the model's queue.
                    let live: Vec<u64> = (0..g.queued)
                        .map(|i| (g.head + i) % g.ring.len())
                        .filter(|&at| g.bucket_of(g.ring[at], at).is_some())
                        .map(|at| g.ring[at])
                        .collect();
                    assert_eq!(live, model.0.iter().copied().collect::<Vec<_>>());
                }
            }
            assert!(g.ring.len() <= 4 * size.max(MIN_RING));
        }
    }

    #[test]
    fn a_full_ring_of_live_entries_grows_and_keeps_the_order() {
        let mut g = Ghost::default();
        let mut model = Model::default();
        for hash in 0..1000u64 {
            let hash = hash.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            g.push(hash, 700);
            model.push(hash, 700);
        }
        check(&g);
        assert_eq!(g.len(), 700);
        for &hash in &model.0 {
            assert!(g.take(hash));
        }
        assert_eq!(g.len(), 0);
    }
}
