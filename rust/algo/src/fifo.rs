//! The bounded-FIFO algorithm, free of Python: an insertion-ordered slab of
//! entries threaded on a doubly linked list, indexed by a SwissTable of slot
//! numbers. Every operation is O(1) whatever the number of entries.
//!
//! The table never calls back into user code: the caller passes the full hash
//! and an equality closure, so the binding layer decides how keys compare.
//! A version number changes with every insertion and removal, so a caller
//! that compared keys with the table unlocked can tell whether what it saw
//! still holds.

use hashbrown::HashTable;

/// Marks the end of the linked list (and an empty list).
const NIL: u32 = u32::MAX;

/// Largest number of entries a table can hold (slot numbers are `u32`).
pub const MAX_ENTRIES: usize = (u32::MAX - 1) as usize;

struct Slot<K, V> {
    hash: u64,
    key: K,
    value: V,
    prev: u32,
    next: u32,
}

/// An insertion-ordered hash map with O(1) insert, lookup, removal anywhere
/// and removal of the oldest entry.
pub struct Fifo<K, V> {
    slots: Vec<Option<Slot<K, V>>>,
    free: Vec<u32>,
    index: HashTable<u32>,
    head: u32,
    tail: u32,
    version: u64,
}

impl<K, V> Default for Fifo<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

/// Spreads a hash so that both the bucket bits (low) and the tag bits (high)
/// of the SwissTable vary: Python hashes of small ints are the ints themselves.
/// Every step is a bijection, so equal results mean equal input hashes.
pub fn spread(hash: u64) -> u64 {
    let mut x = hash;
    x ^= x >> 32;
    x = x.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 29;
    x
}

impl<K, V> Fifo<K, V> {
    pub fn new() -> Self {
        Fifo {
            slots: Vec::new(),
            free: Vec::new(),
            index: HashTable::new(),
            head: NIL,
            tail: NIL,
            version: 0,
        }
    }

    /// Changes whenever an entry is inserted or removed (not when a value is
    /// replaced in place): equal versions mean the same keys in the same slots.
    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    fn slot(&self, at: u32) -> &Slot<K, V> {
        match &self.slots[at as usize] {
            Some(slot) => slot,
            None => unreachable!("slot {at} is linked but empty"),
        }
    }

    fn slot_mut(&mut self, at: u32) -> &mut Slot<K, V> {
        match &mut self.slots[at as usize] {
            Some(slot) => slot,
            None => unreachable!("slot {at} is linked but empty"),
        }
    }

    /// The slot holding an entry whose hash is `hash` and for which `eq(key)`
    /// is true. `eq` is only called for entries with exactly that hash.
    pub fn find(&self, hash: u64, mut eq: impl FnMut(&K) -> bool) -> Option<u32> {
        let slots = &self.slots;
        self.index
            .find(hash, |&at| match &slots[at as usize] {
                Some(slot) => slot.hash == hash && eq(&slot.key),
                None => false,
            })
            .copied()
    }

    /// Every entry whose hash is exactly `hash`, as (slot, key), in probe order.
    pub fn same_hash(&self, hash: u64) -> impl Iterator<Item = (u32, &K)> + '_ {
        let slots = &self.slots;
        self.index
            .iter_hash(hash)
            .filter_map(move |&at| match &slots[at as usize] {
                Some(slot) if slot.hash == hash => Some((at, &slot.key)),
                _ => None,
            })
    }

    pub fn value(&self, at: u32) -> &V {
        &self.slot(at).value
    }

    /// Replaces the value in place (the entry keeps its position) and returns
    /// the old one.
    pub fn replace(&mut self, at: u32, value: V) -> V {
        std::mem::replace(&mut self.slot_mut(at).value, value)
    }

    /// Appends a new newest entry. The caller has checked that no equal key is
    /// present; the table holds at most [`MAX_ENTRIES`].
    pub fn push_back(&mut self, hash: u64, key: K, value: V) -> u32 {
        self.version = self.version.wrapping_add(1);
        let slot = Slot {
            hash,
            key,
            value,
            prev: self.tail,
            next: NIL,
        };
        let at = match self.free.pop() {
            Some(at) => {
                self.slots[at as usize] = Some(slot);
                at
            }
            None => {
                assert!(self.slots.len() < MAX_ENTRIES, "FIFO table is full");
                self.slots.push(Some(slot));
                (self.slots.len() - 1) as u32
            }
        };
        if self.tail == NIL {
            self.head = at;
        } else {
            self.slot_mut(self.tail).next = at;
        }
        self.tail = at;
        let slots = &self.slots;
        self.index
            .insert_unique(hash, at, |&i| match &slots[i as usize] {
                Some(slot) => slot.hash,
                None => unreachable!("indexed slot {i} is empty"),
            });
        at
    }

    /// Removes the entry in slot `at`, returning its key and value.
    pub fn remove(&mut self, at: u32) -> (K, V) {
        self.version = self.version.wrapping_add(1);
        let hash = self.slot(at).hash;
        match self.index.find_entry(hash, |&i| i == at) {
            Ok(entry) => {
                entry.remove();
            }
            Err(_) => unreachable!("slot {at} is not indexed"),
        }
        let slot = match self.slots[at as usize].take() {
            Some(slot) => slot,
            None => unreachable!("slot {at} is empty"),
        };
        if slot.prev == NIL {
            self.head = slot.next;
        } else {
            self.slot_mut(slot.prev).next = slot.next;
        }
        if slot.next == NIL {
            self.tail = slot.prev;
        } else {
            self.slot_mut(slot.next).prev = slot.prev;
        }
        self.free.push(at);
        (slot.key, slot.value)
    }

    /// Removes and returns the oldest entry.
    pub fn pop_front(&mut self) -> Option<(K, V)> {
        if self.head == NIL {
            None
        } else {
            Some(self.remove(self.head))
        }
    }

    /// Entries oldest first.
    pub fn iter(&self) -> Iter<'_, K, V> {
        Iter {
            fifo: self,
            at: self.head,
        }
    }

    /// Empties the table and hands back everything it held, so the caller
    /// chooses when the entries are dropped. The version still moves on.
    pub fn take(&mut self) -> Self {
        let version = self.version.wrapping_add(1);
        let old = std::mem::take(self);
        self.version = version;
        old
    }
}

pub struct Iter<'a, K, V> {
    fifo: &'a Fifo<K, V>,
    at: u32,
}

impl<'a, K, V> Iterator for Iter<'a, K, V> {
    type Item = (&'a K, &'a V);

    fn next(&mut self) -> Option<Self::Item> {
        if self.at == NIL {
            return None;
        }
        let slot = self.fifo.slot(self.at);
        self.at = slot.next;
        Some((&slot.key, &slot.value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    fn h(k: u64) -> u64 {
        spread(k)
    }

    fn insert(f: &mut Fifo<u64, u64>, k: u64, v: u64, maxsize: usize) -> Option<(u64, u64)> {
        if let Some(at) = f.find(h(k), |&x| x == k) {
            f.replace(at, v);
            return None;
        }
        let evicted = if f.len() >= maxsize {
            f.pop_front()
        } else {
            None
        };
        f.push_back(h(k), k, v);
        evicted
    }

    #[test]
    fn evicts_oldest_and_keeps_position_on_overwrite() {
        let mut f = Fifo::new();
        assert_eq!(insert(&mut f, 1, 10, 2), None);
        assert_eq!(insert(&mut f, 2, 20, 2), None);
        assert_eq!(insert(&mut f, 1, 11, 2), None);
        assert_eq!(insert(&mut f, 3, 30, 2), Some((1, 11)));
        let items: Vec<_> = f.iter().map(|(k, v)| (*k, *v)).collect();
        assert_eq!(items, vec![(2, 20), (3, 30)]);
    }

    #[test]
    fn remove_from_the_middle_relinks() {
        let mut f = Fifo::new();
        for k in 0..5 {
            insert(&mut f, k, k * 10, 10);
        }
        let at = f.find(h(2), |&x| x == 2).expect("2 is present");
        assert_eq!(f.remove(at), (2, 20));
        let at = f.find(h(0), |&x| x == 0).expect("0 is present");
        assert_eq!(f.remove(at), (0, 0));
        let at = f.find(h(4), |&x| x == 4).expect("4 is present");
        assert_eq!(f.remove(at), (4, 40));
        let keys: Vec<_> = f.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, vec![1, 3]);
        insert(&mut f, 7, 70, 10);
        let keys: Vec<_> = f.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, vec![1, 3, 7]);
        assert_eq!(f.len(), 3);
    }

    #[test]
    fn colliding_hashes_are_told_apart_by_eq() {
        let mut f: Fifo<u64, u64> = Fifo::new();
        for k in 0..100 {
            f.push_back(42, k, k);
        }
        for k in 0..100 {
            let at = f.find(42, |&x| x == k).expect("present");
            assert_eq!(*f.value(at), k);
        }
        assert!(f.find(42, |&x| x == 1000).is_none());
    }

    #[test]
    fn same_hash_lists_every_colliding_entry_and_nothing_else() {
        let mut f: Fifo<u64, u64> = Fifo::new();
        for k in 0..10_000 {
            f.push_back(7, k, k);
        }
        f.push_back(8, 99_999, 0);
        let mut seen: Vec<u64> = f.same_hash(7).map(|(_, k)| *k).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..10_000).collect::<Vec<_>>());
        assert_eq!(f.same_hash(9).count(), 0);
    }

    #[test]
    fn version_moves_on_insert_remove_and_take_only() {
        let mut f: Fifo<u64, u64> = Fifo::new();
        let v0 = f.version();
        let at = f.push_back(h(1), 1, 1);
        let v1 = f.version();
        assert_ne!(v0, v1);
        f.replace(at, 2);
        assert_eq!(f.version(), v1);
        f.remove(at);
        let v2 = f.version();
        assert_ne!(v1, v2);
        f.push_back(h(3), 3, 3);
        drop(f.take());
        assert_ne!(f.version(), v2);
        assert!(f.is_empty());
    }

    #[test]
    fn take_leaves_an_empty_table() {
        let mut f = Fifo::new();
        insert(&mut f, 1, 1, 3);
        let old = f.take();
        assert_eq!(old.len(), 1);
        assert!(f.is_empty());
        assert!(f.pop_front().is_none());
        insert(&mut f, 2, 2, 3);
        assert_eq!(f.iter().count(), 1);
    }

    /// Pseudo-random operations against a VecDeque model.
    #[test]
    fn matches_a_model_under_random_operations() {
        let mut state: u64 = 0x1234_5678;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let maxsize = 16;
        let mut f = Fifo::new();
        let mut model: VecDeque<(u64, u64)> = VecDeque::new();
        for step in 0..20_000u64 {
            let k = next() % 40;
            if next() % 4 == 0 {
                let got = f.find(h(k), |&x| x == k).map(|at| f.remove(at));
                let want = model
                    .iter()
                    .position(|&(mk, _)| mk == k)
                    .and_then(|i| model.remove(i));
                assert_eq!(got, want);
            } else {
                insert(&mut f, k, step, maxsize);
                if let Some(e) = model.iter_mut().find(|e| e.0 == k) {
                    e.1 = step;
                } else {
                    if model.len() >= maxsize {
                        model.pop_front();
                    }
                    model.push_back((k, step));
                }
            }
            let items: Vec<_> = f.iter().map(|(k, v)| (*k, *v)).collect();
            assert_eq!(items, model.iter().copied().collect::<Vec<_>>());
        }
    }
}
