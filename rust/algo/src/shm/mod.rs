//! The shared-memory metrics store: several processes of one service write
//! their own values into files under one directory, and any of them reads
//! the aggregate. The format, the liveness check, the fold of the dead and
//! the run check are described in docs/multiprocess.md.

mod dir;
pub mod format;
mod map;
pub mod run;
mod store;
pub mod values;

use std::fmt;
use std::io;

pub use dir::Previous;
pub use format::{Kind, Mode, Series};
pub use store::{after_fork, fork_epoch, Family, FamilyOut, SeriesOut, Store};
pub use values::{Overflow, Slot, Totals, Value};

/// Why a store could not do what was asked.
#[derive(Debug)]
pub enum StoreError {
    Io(io::Error),
    /// A file in the directory is not in this format (or is damaged).
    Format(String),
    /// The directory holds a previous run and the store was told to refuse it.
    PreviousRun(String),
    /// A series' name, labels or description do not fit the format.
    TooLarge,
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Io(e) => write!(f, "{e}"),
            StoreError::Format(what) | StoreError::PreviousRun(what) => f.write_str(what),
            StoreError::TooLarge => f.write_str(
                "a series' name, label or description is too long for the shared format \
                 (65535 bytes each, 65534 labels or bounds)",
            ),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<io::Error> for StoreError {
    fn from(e: io::Error) -> Self {
        StoreError::Io(e)
    }
}

impl From<format::FormatError> for StoreError {
    fn from(e: format::FormatError) -> Self {
        StoreError::Format(e.0)
    }
}

#[cfg(test)]
mod tests;
