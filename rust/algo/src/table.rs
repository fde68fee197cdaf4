//! The storage behind every cache policy, free of Python and of any policy:
//! a slab of entries threaded on one or two doubly linked lists, indexed by
//! a SwissTable of slot numbers. Every operation is O(1) whatever the number
//! of entries.
//!
//! The table never calls back into user code: the caller passes the full hash
//! and an equality closure, so the binding layer decides how keys compare.
//! A version number changes with every insertion and removal, so a caller
//! that compared keys with the table unlocked can tell whether what it saw
//! still holds. Moving an entry between or within lists keeps its key and
//! its slot, so it leaves the version alone.
//!
//! Each entry carries a small `meta` value of the policy's choosing, which
//! also says which list it is on ([`Meta::list`]); FIFO's is `()`, so its
//! slots stay 32 bytes.

use hashbrown::HashTable;

/// Marks the end of a linked list (and an empty list).
const NIL: u32 = u32::MAX;

/// Largest number of entries a table can hold (slot numbers are `u32`).
pub const MAX_ENTRIES: usize = (u32::MAX - 1) as usize;

/// What a policy keeps per entry. `LISTS` lists exist; an entry is on
/// `list()`, which is below `LISTS`. `Born` is what a slot keeps to tell its
/// entry from a later one in the same slot ([`Table::born`]).
pub trait Meta: Copy + Default {
    const LISTS: usize;
    type Born: Born;
    fn list(self) -> usize;
}

/// What a slot keeps of the table's version when its entry was stored, so
/// that a caller who let go of the table can tell, by [`Table::born`],
/// whether a slot it found still holds that entry. `()` for a policy whose
/// reads change nothing (its slots stay as small as they were); `u32` (the
/// low bits: an entry and a later one in its slot differ unless 2^32 entries
/// came and went in between) fits in S3-FIFO's padding.
pub trait Born: Copy + Eq + std::fmt::Debug {
    fn of(version: u64) -> Self;
}

impl Born for () {
    #[inline(always)]
    fn of(_: u64) {}
}

impl Born for u32 {
    #[inline(always)]
    fn of(version: u64) -> u32 {
        version as u32
    }
}

impl Meta for () {
    const LISTS: usize = 1;
    type Born = ();

    #[inline(always)]
    fn list(self) -> usize {
        0
    }
}

struct Slot<K, V, M: Meta> {
    hash: u64,
    key: K,
    value: V,
    prev: u32,
    next: u32,
    meta: M,
    born: M::Born,
}

#[derive(Clone, Copy)]
struct Ends {
    head: u32,
    tail: u32,
    len: usize,
}

const EMPTY: Ends = Ends {
    head: NIL,
    tail: NIL,
    len: 0,
};

/// A hash map whose entries are kept in insertion order on their list, with
/// O(1) insert, lookup, removal anywhere, and moving an entry to the back of
/// a list.
pub struct Table<K, V, M: Meta = ()> {
    slots: Vec<Option<Slot<K, V, M>>>,
    free: Vec<u32>,
    index: HashTable<u32>,
    ends: [Ends; 2],
    version: u64,
}

impl<K, V, M: Meta> Default for Table<K, V, M> {
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

impl<K, V, M: Meta> Table<K, V, M> {
    pub fn new() -> Self {
        const { assert!(M::LISTS >= 1 && M::LISTS <= 2) };
        Table {
            slots: Vec::new(),
            free: Vec::new(),
            index: HashTable::new(),
            ends: [EMPTY; 2],
            version: 0,
        }
    }

    /// Changes whenever an entry is inserted or removed (not when a value is
    /// replaced in place or an entry moves): equal versions mean the same keys
    /// in the same slots.
    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// How many entries are on `list`.
    pub fn list_len(&self, list: usize) -> usize {
        if M::LISTS == 1 {
            self.len()
        } else {
            self.ends[list].len
        }
    }

    /// The oldest entry of `list`.
    pub fn front(&self, list: usize) -> Option<u32> {
        let head = self.ends[list].head;
        (head != NIL).then_some(head)
    }

    fn slot(&self, at: u32) -> &Slot<K, V, M> {
        match &self.slots[at as usize] {
            Some(slot) => slot,
            None => unreachable!("slot {at} is linked but empty"),
        }
    }

    fn slot_mut(&mut self, at: u32) -> &mut Slot<K, V, M> {
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

    /// The hash of the entry in slot `at`.
    pub fn hash(&self, at: u32) -> u64 {
        self.slot(at).hash
    }

    pub fn value(&self, at: u32) -> &V {
        &self.slot(at).value
    }

    pub fn meta(&self, at: u32) -> M {
        self.slot(at).meta
    }

    /// What slot `at` keeps of when its entry was stored ([`Born`]); None
    /// when the slot is empty (or beyond the table, which may have been
    /// emptied since the caller found it).
    pub fn born(&self, at: u32) -> Option<M::Born> {
        match self.slots.get(at as usize) {
            Some(Some(slot)) => Some(slot.born),
            _ => None,
        }
    }

    /// The entry's meta, for a change that keeps it on its list, and its value.
    #[inline]
    pub fn meta_and_value(&mut self, at: u32) -> (&mut M, &V) {
        let slot = self.slot_mut(at);
        (&mut slot.meta, &slot.value)
    }

    /// Replaces the value in place (the entry keeps its position) and returns
    /// the old one.
    pub fn replace(&mut self, at: u32, value: V) -> V {
        std::mem::replace(&mut self.slot_mut(at).value, value)
    }

    /// Links slot `at`, whose links are already (tail of `list`, NIL), at the
    /// back of `list`.
    #[inline]
    fn link_back(&mut self, at: u32, list: usize) {
        let tail = self.ends[list].tail;
        if tail == NIL {
            self.ends[list].head = at;
        } else {
            self.slot_mut(tail).next = at;
        }
        self.ends[list].tail = at;
        if M::LISTS > 1 {
            self.ends[list].len += 1;
        }
    }

    /// Joins `prev` and `next`, the neighbours on `list` of an entry taken off it.
    #[inline]
    fn unlink(&mut self, prev: u32, next: u32, list: usize) {
        if prev == NIL {
            self.ends[list].head = next;
        } else {
            self.slot_mut(prev).next = next;
        }
        if next == NIL {
            self.ends[list].tail = prev;
        } else {
            self.slot_mut(next).prev = prev;
        }
        if M::LISTS > 1 {
            self.ends[list].len -= 1;
        }
    }

    /// Appends a new entry at the back of `meta.list()`. The caller has checked
    /// that no equal key is present; the table holds at most [`MAX_ENTRIES`].
    pub fn push_back(&mut self, hash: u64, key: K, value: V, meta: M) -> u32 {
        self.version = self.version.wrapping_add(1);
        let slot = Slot {
            hash,
            key,
            value,
            prev: self.ends[meta.list()].tail,
            next: NIL,
            meta,
            born: M::Born::of(self.version),
        };
        let at = match self.free.pop() {
            Some(at) => {
                self.slots[at as usize] = Some(slot);
                at
            }
            None => {
                assert!(self.slots.len() < MAX_ENTRIES, "cache table is full");
                self.slots.push(Some(slot));
                (self.slots.len() - 1) as u32
            }
        };
        self.link_back(at, meta.list());
        let slots = &self.slots;
        self.index
            .insert_unique(hash, at, |&i| match &slots[i as usize] {
                Some(slot) => slot.hash,
                None => unreachable!("indexed slot {i} is empty"),
            });
        at
    }

    /// Moves the entry in slot `at` to the back of `meta.list()` with `meta`:
    /// its key and slot stay, so the version does not move.
    pub fn move_to_back(&mut self, at: u32, meta: M) {
        let tail = self.ends[meta.list()].tail;
        let slot = self.slot_mut(at);
        let (prev, next, list) = (slot.prev, slot.next, slot.meta.list());
        slot.meta = meta;
        if tail == at {
            return; // already the newest of its list
        }
        slot.prev = tail;
        slot.next = NIL;
        self.unlink(prev, next, list);
        self.link_back(at, meta.list());
    }

    /// Removes the entry in slot `at`, returning its key, value and meta.
    pub fn remove(&mut self, at: u32) -> (K, V, M) {
        let (_, key, value, meta) = self.remove_entry(at);
        (key, value, meta)
    }

    /// Removes the entry in slot `at`, returning its hash, key, value and meta.
    pub fn remove_entry(&mut self, at: u32) -> (u64, K, V, M) {
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
        self.unlink(slot.prev, slot.next, slot.meta.list());
        self.free.push(at);
        (hash, slot.key, slot.value, slot.meta)
    }

    /// Entries list by list, each oldest first, with their meta.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V, M)> + '_ {
        self.slots().map(|at| {
            let slot = self.slot(at);
            (&slot.key, &slot.value, slot.meta)
        })
    }

    /// The slots of the entries, in the order of [`Table::iter`].
    pub fn slots(&self) -> Slots<'_, K, V, M> {
        Slots {
            table: self,
            list: 0,
            at: self.ends[0].head,
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

pub struct Slots<'a, K, V, M: Meta> {
    table: &'a Table<K, V, M>,
    list: usize,
    at: u32,
}

impl<K, V, M: Meta> Iterator for Slots<'_, K, V, M> {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        while self.at == NIL {
            if self.list + 1 >= M::LISTS {
                return None;
            }
            self.list += 1;
            self.at = self.table.ends[self.list].head;
        }
        let at = self.at;
        self.at = self.table.slot(at).next;
        Some(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hash [`spread`] was given.
    fn unspread(spread: u64) -> u64 {
        let mut x = spread;
        x ^= (x >> 29) ^ (x >> 58);
        // The inverse of 0x9E37_79B9_7F4A_7C15 modulo 2^64.
        x = x.wrapping_mul(0xF1DE_83E1_9937_733D);
        x ^ (x >> 32)
    }

    /// `spread` is a bijection: the ghost and the sketch, which see table
    /// hashes, tell apart every two Python hashes.
    #[test]
    fn unspread_inverts_spread() {
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        for h in [0, 1, 7, u64::MAX, 1 << 63, 0x9E37_79B9_7F4A_7C15] {
            assert_eq!(unspread(spread(h)), h);
        }
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            assert_eq!(unspread(spread(x)), x);
        }
    }

    /// A two-list meta for the tests: the list is the value itself.
    #[derive(Clone, Copy, Default, Debug, PartialEq)]
    struct Two(usize);

    impl Meta for Two {
        const LISTS: usize = 2;
        type Born = u32;
        fn list(self) -> usize {
            self.0
        }
    }

    fn keys<M: Meta>(t: &Table<u64, u64, M>) -> Vec<u64> {
        t.iter().map(|(k, _, _)| *k).collect()
    }

    #[test]
    fn fifo_slots_stay_32_bytes() {
        // Two Python object pointers, the hash and two links: the meta of a
        // FIFO entry costs nothing (the Option uses the pointer's niche).
        assert_eq!(
            std::mem::size_of::<Option<Slot<std::ptr::NonNull<u8>, std::ptr::NonNull<u8>, ()>>>(),
            32
        );
    }

    #[test]
    fn a_two_list_slot_keeps_its_birth_in_its_padding() {
        // S3-FIFO's meta is one byte: the u32 of Born fits in what padding
        // took before it (the hash, two pointers, two links and the meta).
        assert_eq!(
            std::mem::size_of::<Option<Slot<std::ptr::NonNull<u8>, std::ptr::NonNull<u8>, Two8>>>(),
            40
        );
    }

    /// A one-byte two-list meta with a Born, the shape of S3-FIFO's.
    #[derive(Clone, Copy, Default, Debug, PartialEq)]
    struct Two8(u8);

    impl Meta for Two8 {
        const LISTS: usize = 2;
        type Born = u32;
        fn list(self) -> usize {
            usize::from(self.0 & 1)
        }
    }

    #[test]
    fn a_slot_used_again_tells_its_new_entry_from_the_old() {
        let mut t: Table<u64, u64, Two> = Table::new();
        let at = t.push_back(spread(1), 1, 10, Two(0));
        let born = t.born(at);
        assert!(born.is_some());
        t.move_to_back(at, Two(1)); // a move keeps the entry
        assert_eq!(t.born(at), born);
        t.remove(at);
        assert_eq!(t.born(at), None);
        assert_eq!(t.push_back(spread(1), 1, 10, Two(0)), at);
        assert_ne!(t.born(at), born);
        t.take();
        assert_eq!(t.born(at), None); // beyond an emptied table
        assert_eq!(t.push_back(spread(1), 1, 10, Two(0)), at);
        assert_ne!(t.born(at), born);
    }

    #[test]
    fn remove_from_the_middle_relinks() {
        let mut t: Table<u64, u64> = Table::new();
        for k in 0..5 {
            t.push_back(spread(k), k, k * 10, ());
        }
        for k in [2, 0, 4] {
            let at = t.find(spread(k), |&x| x == k).expect("present");
            assert_eq!(t.remove(at), (k, k * 10, ()));
        }
        assert_eq!(keys(&t), vec![1, 3]);
        t.push_back(spread(7), 7, 70, ());
        assert_eq!(keys(&t), vec![1, 3, 7]);
        assert_eq!(t.len(), 3);
        assert_eq!(t.list_len(0), 3);
    }

    #[test]
    fn colliding_hashes_are_told_apart_by_eq() {
        let mut t: Table<u64, u64> = Table::new();
        for k in 0..100 {
            t.push_back(42, k, k, ());
        }
        for k in 0..100 {
            let at = t.find(42, |&x| x == k).expect("present");
            assert_eq!(*t.value(at), k);
        }
        assert!(t.find(42, |&x| x == 1000).is_none());
    }

    #[test]
    fn same_hash_lists_every_colliding_entry_and_nothing_else() {
        let mut t: Table<u64, u64> = Table::new();
        for k in 0..10_000 {
            t.push_back(7, k, k, ());
        }
        t.push_back(8, 99_999, 0, ());
        let mut seen: Vec<u64> = t.same_hash(7).map(|(_, k)| *k).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..10_000).collect::<Vec<_>>());
        assert_eq!(t.same_hash(9).count(), 0);
    }

    #[test]
    fn two_lists_keep_their_own_order_and_lengths() {
        let mut t: Table<u64, u64, Two> = Table::new();
        for k in 0..6 {
            t.push_back(spread(k), k, k, Two((k % 2) as usize));
        }
        assert_eq!(keys(&t), vec![0, 2, 4, 1, 3, 5]);
        assert_eq!((t.list_len(0), t.list_len(1)), (3, 3));
        let at = t.front(0).expect("list 0 has entries");
        assert_eq!(t.remove(at), (0, 0, Two(0)));
        assert_eq!(keys(&t), vec![2, 4, 1, 3, 5]);
        assert_eq!(t.front(1).map(|at| *t.value(at)), Some(1));
    }

    #[test]
    fn moving_an_entry_relinks_it_and_keeps_the_version() {
        let mut t: Table<u64, u64, Two> = Table::new();
        for k in 0..4 {
            t.push_back(spread(k), k, k, Two(0));
        }
        let version = t.version();
        let at = t.find(spread(1), |&x| x == 1).expect("present");
        t.move_to_back(at, Two(1));
        assert_eq!(keys(&t), vec![0, 2, 3, 1]);
        let first = t.front(0).expect("list 0 has entries");
        t.move_to_back(first, Two(0));
        assert_eq!(keys(&t), vec![2, 3, 0, 1]);
        assert_eq!((t.list_len(0), t.list_len(1)), (3, 1));
        assert_eq!(t.meta(at), Two(1));
        assert_eq!(t.version(), version);
        // A moved entry is still found where it is and removed from its list.
        assert_eq!(t.find(spread(1), |&x| x == 1), Some(at));
        t.remove(at);
        assert_eq!((t.list_len(0), t.list_len(1)), (3, 0));
        assert_eq!(t.front(1), None);
    }

    #[test]
    fn version_moves_on_insert_remove_and_take_only() {
        let mut t: Table<u64, u64> = Table::new();
        let v0 = t.version();
        let at = t.push_back(spread(1), 1, 1, ());
        let v1 = t.version();
        assert_ne!(v0, v1);
        t.replace(at, 2);
        *t.meta_and_value(at).0 = ();
        assert_eq!(t.version(), v1);
        t.remove(at);
        let v2 = t.version();
        assert_ne!(v1, v2);
        t.push_back(spread(3), 3, 3, ());
        drop(t.take());
        assert_ne!(t.version(), v2);
        assert!(t.is_empty());
    }

    #[test]
    fn take_leaves_an_empty_table() {
        let mut t: Table<u64, u64, Two> = Table::new();
        t.push_back(spread(1), 1, 1, Two(1));
        let old = t.take();
        assert_eq!(old.len(), 1);
        assert!(t.is_empty());
        assert_eq!((t.front(0), t.front(1)), (None, None));
        assert_eq!((t.list_len(0), t.list_len(1)), (0, 0));
        t.push_back(spread(2), 2, 2, Two(0));
        assert_eq!(t.iter().count(), 1);
    }
}
