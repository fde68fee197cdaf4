//! Deadlines for a cache's entries, kept beside the policy: an entry expires
//! at the earlier of its write deadline (set when it is written: a time to
//! live) and its idle deadline (moved on by each read: a time to idle).
//!
//! Times are seconds as `f64` from whatever clock the caller reads; nothing
//! here reads a clock or runs on a thread. [`Timers`] maps the table's slot
//! numbers to deadlines and files them in a min-heap, lazily: a record whose
//! entry left or was written again (its stamp is no longer the slot's) is
//! skipped when it surfaces, and one whose idle deadline moved later is filed
//! again then. So a read costs no heap work (unless the clock went back and
//! the deadline moved earlier), a write one push, and finding what is due at
//! `now` pops only what is due or stale. The heap is rebuilt when stale
//! records outnumber live ones, so it stays in proportion to the entries.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// When an entry expires: the earlier of the two (`f64::INFINITY` for none).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Deadline {
    pub write: f64,
    pub idle: f64,
}

impl Deadline {
    /// No deadline at all.
    pub const NEVER: Deadline = Deadline {
        write: f64::INFINITY,
        idle: f64::INFINITY,
    };

    /// The moment the entry expires.
    #[inline]
    pub fn at(self) -> f64 {
        self.write.min(self.idle)
    }

    /// Whether the entry has expired at `now` (expired at its deadline, not after).
    #[inline]
    pub fn due(self, now: f64) -> bool {
        now >= self.at()
    }

    pub fn is_never(self) -> bool {
        self.at() == f64::INFINITY
    }
}

/// A heap record: slot `slot`, written with `stamp`, is due no sooner than `at`.
#[derive(Clone, Copy)]
struct Record {
    at: f64,
    stamp: u64,
    slot: u32,
}

impl PartialEq for Record {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Record {}

impl PartialOrd for Record {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Record {
    /// Reversed, so that `BinaryHeap` (a max-heap) gives the earliest first;
    /// ties go to the older stamp.
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .at
            .total_cmp(&self.at)
            .then_with(|| other.stamp.cmp(&self.stamp))
    }
}

/// What a slot with a deadline keeps.
#[derive(Clone, Copy)]
struct Timer {
    deadline: Deadline,
    /// The write that set it (its records carry the same stamp).
    stamp: u64,
    /// No record of this stamp in the heap is earlier than this.
    filed: f64,
}

/// The deadlines of a table's entries, by slot.
#[derive(Default)]
pub struct Timers {
    /// Slot -> its timer; None: no deadline.
    slots: Vec<Option<Timer>>,
    heap: BinaryHeap<Record>,
    /// Entries with a deadline.
    live: usize,
    stamps: u64,
}

impl Timers {
    pub fn new() -> Self {
        Self::default()
    }

    /// How many entries have a deadline.
    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// The deadline of the entry in slot `at`, if it has one.
    #[inline]
    pub fn get(&self, at: u32) -> Option<Deadline> {
        self.slots
            .get(at as usize)
            .copied()
            .flatten()
            .map(|t| t.deadline)
    }

    /// Gives the entry in slot `at` the deadline of a write (none: `NEVER`).
    pub fn set(&mut self, at: u32, deadline: Deadline) {
        if deadline.is_never() {
            self.forget(at);
            return;
        }
        let index = at as usize;
        if index >= self.slots.len() {
            self.slots.resize(index + 1, None);
        }
        if self.slots[index].is_none() {
            self.live += 1;
        }
        self.stamps = self.stamps.wrapping_add(1);
        let stamp = self.stamps;
        self.slots[index] = Some(Timer {
            deadline,
            stamp,
            filed: deadline.at(),
        });
        self.file(at, deadline.at(), stamp);
    }

    fn file(&mut self, slot: u32, at: f64, stamp: u64) {
        self.heap.push(Record { at, stamp, slot });
        if self.heap.len() > 2 * self.live + 32 {
            self.compact();
        }
    }

    /// The stamp of the write whose deadline the entry in slot `at` has;
    /// stamps are never given twice (not even after [`Timers::clear`]).
    #[inline]
    pub fn stamp(&self, at: u32) -> Option<u64> {
        self.slots
            .get(at as usize)
            .copied()
            .flatten()
            .map(|t| t.stamp)
    }

    /// Moves the idle deadline of the entry in slot `at` (a read); nothing
    /// if it has no deadline. A later deadline is filed when its record
    /// surfaces; an earlier one (a clock that went back) at once.
    #[inline]
    pub fn touch(&mut self, at: u32, idle: f64) {
        let Some(Some(timer)) = self.slots.get_mut(at as usize) else {
            return;
        };
        timer.deadline.idle = idle;
        let moved = timer.deadline.at();
        if moved < timer.filed {
            timer.filed = moved;
            let stamp = timer.stamp;
            self.file(at, moved, stamp);
        }
    }

    /// The entry in slot `at` left (or has no deadline any more).
    pub fn forget(&mut self, at: u32) {
        if let Some(slot) = self.slots.get_mut(at as usize) {
            if slot.take().is_some() {
                self.live -= 1;
            }
        }
    }

    /// A slot whose entry is due at `now` (the earliest), or None when none
    /// is. The caller removes that entry (and calls [`Timers::forget`]).
    pub fn next_due(&mut self, now: f64) -> Option<u32> {
        while let Some(&top) = self.heap.peek() {
            // A NaN `now` finds nothing due (the bindings never pass one).
            if top.at.partial_cmp(&now).is_none_or(Ordering::is_gt) {
                return None;
            }
            self.heap.pop();
            let Some(Some(timer)) = self.slots.get_mut(top.slot as usize) else {
                continue; // the entry left
            };
            if timer.stamp != top.stamp {
                continue; // written again since: a newer record stands for it
            }
            if timer.deadline.due(now) {
                return Some(top.slot);
            }
            // Read since it was filed: file it again at its new deadline
            // (other records of it may be earlier: `filed` errs late, which
            // only costs a spare record if the clock goes back).
            timer.filed = timer.deadline.at();
            self.heap.push(Record {
                at: timer.filed,
                ..top
            });
        }
        None
    }

    /// Forgets every deadline; the stamps go on from where they were, so
    /// that a stamp read before still names no later write.
    pub fn clear(&mut self) {
        *self = Timers {
            stamps: self.stamps,
            ..Timers::default()
        };
    }

    /// Rebuilds the heap from the live deadlines, one record each.
    fn compact(&mut self) {
        let records: Vec<Record> = self
            .slots
            .iter_mut()
            .enumerate()
            .filter_map(|(slot, found)| {
                found.as_mut().map(|timer| {
                    timer.filed = timer.deadline.at();
                    Record {
                        at: timer.filed,
                        stamp: timer.stamp,
                        slot: slot as u32,
                    }
                })
            })
            .collect();
        self.heap = BinaryHeap::from(records);
    }

    #[cfg(test)]
    fn heap_len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ttl(at: f64) -> Deadline {
        Deadline {
            write: at,
            idle: f64::INFINITY,
        }
    }

    fn due(t: &mut Timers, now: f64) -> Vec<u32> {
        let mut out = Vec::new();
        while let Some(at) = t.next_due(now) {
            t.forget(at);
            out.push(at);
        }
        out
    }

    #[test]
    fn entries_are_due_at_their_deadline_earliest_first() {
        let mut t = Timers::new();
        t.set(3, ttl(30.0));
        t.set(1, ttl(10.0));
        t.set(2, ttl(20.0));
        assert_eq!(due(&mut t, 9.5), Vec::<u32>::new());
        assert_eq!(due(&mut t, 20.0), vec![1, 2]);
        assert_eq!(t.len(), 1);
        assert_eq!(due(&mut t, f64::NAN), Vec::<u32>::new());
        assert_eq!(due(&mut t, 1e9), vec![3]);
        assert!(t.is_empty());
    }

    #[test]
    fn a_write_again_replaces_the_deadline_and_never_clears_it() {
        let mut t = Timers::new();
        t.set(0, ttl(10.0));
        t.set(0, ttl(50.0));
        assert_eq!(due(&mut t, 20.0), Vec::<u32>::new());
        assert_eq!(t.get(0), Some(ttl(50.0)));
        t.set(0, Deadline::NEVER);
        assert_eq!(t.get(0), None);
        assert_eq!(due(&mut t, 1e9), Vec::<u32>::new());
        assert!(t.is_empty());
    }

    #[test]
    fn a_touch_moves_the_idle_deadline_and_the_write_deadline_still_holds() {
        let mut t = Timers::new();
        t.set(
            0,
            Deadline {
                write: 100.0,
                idle: 10.0,
            },
        );
        t.touch(0, 25.0);
        assert_eq!(due(&mut t, 20.0), Vec::<u32>::new());
        t.touch(0, 200.0);
        assert_eq!(due(&mut t, 99.0), Vec::<u32>::new());
        assert_eq!(due(&mut t, 100.0), vec![0]);
        t.touch(0, 1.0); // no deadline any more: nothing to move
        assert_eq!(t.get(0), None);
    }

    #[test]
    fn a_forgotten_slot_reused_is_not_mistaken_for_its_old_entry() {
        let mut t = Timers::new();
        t.set(4, ttl(10.0));
        t.forget(4);
        t.set(4, ttl(40.0));
        assert_eq!(due(&mut t, 10.0), Vec::<u32>::new());
        assert_eq!(due(&mut t, 40.0), vec![4]);
    }

    #[test]
    fn the_heap_stays_in_proportion_to_the_entries() {
        let mut t = Timers::new();
        for round in 0..10_000u32 {
            t.set(round % 8, ttl(1e6 + f64::from(round)));
        }
        assert_eq!(t.len(), 8);
        assert!(t.heap_len() <= 2 * 8 + 33, "{}", t.heap_len());
        let mut expired = due(&mut t, 2e6);
        expired.sort_unstable();
        assert_eq!(expired, (0..8).collect::<Vec<_>>());
    }

    /// Pseudo-random operations against a plain list of deadlines.
    #[test]
    fn matches_a_model_under_random_operations() {
        let mut rng = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut t = Timers::new();
        let mut model: Vec<Option<Deadline>> = vec![None; 16];
        let mut now = 0.0;
        for _ in 0..50_000 {
            let slot = (next() % 16) as u32;
            match next() % 5 {
                0 => {
                    t.forget(slot);
                    model[slot as usize] = None;
                }
                1 => {
                    let idle = now + (next() % 20) as f64;
                    t.touch(slot, idle);
                    if let Some(d) = &mut model[slot as usize] {
                        d.idle = idle;
                    }
                }
                2 => now += (next() % 4) as f64,
                3 => {
                    let mut got = due(&mut t, now);
                    got.sort_unstable();
                    let want: Vec<u32> = (0..16u32)
                        .filter(|&s| model[s as usize].is_some_and(|d| d.due(now)))
                        .collect();
                    for &s in &want {
                        model[s as usize] = None;
                    }
                    assert_eq!(got, want);
                }
                _ => {
                    let d = Deadline {
                        write: now + 1.0 + (next() % 30) as f64,
                        idle: if next() % 2 == 0 {
                            f64::INFINITY
                        } else {
                            now + 1.0 + (next() % 10) as f64
                        },
                    };
                    t.set(slot, d);
                    model[slot as usize] = Some(d);
                }
            }
            for s in 0..16u32 {
                assert_eq!(t.get(s), model[s as usize]);
            }
            assert_eq!(t.len(), model.iter().flatten().count());
        }
    }
}
