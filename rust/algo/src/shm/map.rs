//! A shared mapping of a segment file, reached only a word at a time through
//! atomics: other processes read and write the same memory, so no `&[u8]`
//! or `&mut [u8]` over it is ever made.

use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

use memmap2::{MmapOptions, MmapRaw};

/// A read-write, shared mapping of the first `len` bytes of a file.
pub struct Mapping {
    raw: MmapRaw,
}

impl Mapping {
    /// Maps the first `len` bytes of `file` (which must be at least that
    /// long, and never be truncated while mapped: the protocol only ever
    /// grows and unlinks segment files).
    pub fn new(file: &File, len: usize) -> io::Result<Mapping> {
        let raw = MmapOptions::new().len(len).map_raw(file)?;
        Ok(Mapping { raw })
    }

    pub fn len(&self) -> usize {
        self.raw.len()
    }

    pub fn is_empty(&self) -> bool {
        self.raw.len() == 0
    }

    /// The 8-byte word at `at` as an atomic; None if `at` is not 8-aligned
    /// or not inside the mapping.
    pub fn word(&self, at: usize) -> Option<&AtomicU64> {
        if !at.is_multiple_of(8) || at.checked_add(8)? > self.raw.len() {
            return None;
        }
        let ptr = self.raw.as_mut_ptr().wrapping_add(at).cast::<u64>();
        // SAFETY: `ptr` is 8-aligned (the mapping starts on a page and `at`
        // is a multiple of 8) and the 8 bytes lie inside the mapping, which
        // lives as long as `&self`: the reference cannot outlive it. The file
        // is never truncated while mapped, so the pages stay backed. Every
        // access to this memory, from any process and either backend, is a
        // whole aligned 8-byte load or store (atomics here; one `memcpy` of
        // 8 aligned bytes in the pure backend), so there is no non-atomic
        // access to race with. No safe API operates atomically on memory
        // shared with other processes: this is the one place that needs it.
        Some(unsafe { AtomicU64::from_ptr(ptr) })
    }

    /// Loads the word at `at` (0 outside the mapping).
    pub fn load(&self, at: usize, order: Ordering) -> u64 {
        self.word(at).map_or(0, |w| w.load(order))
    }

    /// Stores `value` at `at`; false outside the mapping.
    pub fn store(&self, at: usize, value: u64, order: Ordering) -> bool {
        self.word(at).map(|w| w.store(value, order)).is_some()
    }

    /// `len` bytes from `at` (a multiple of 8), read word by word.
    pub fn read_bytes(&self, at: usize, len: usize) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(len.next_multiple_of(8));
        let mut word_at = at;
        while out.len() < len {
            out.extend_from_slice(&self.word(word_at)?.load(Ordering::Relaxed).to_le_bytes());
            word_at += 8;
        }
        out.truncate(len);
        Some(out)
    }

    /// Writes `bytes` (a multiple of 8 long) from `at`, word by word.
    pub fn write_bytes(&self, at: usize, bytes: &[u8]) -> bool {
        for (i, chunk) in bytes.chunks(8).enumerate() {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            if !self.store(at + 8 * i, u64::from_le_bytes(word), Ordering::Relaxed) {
                return false;
            }
        }
        true
    }
}
