//! The algorithms behind pepperpy-core's native core, with no Python in them:
//! the cache table, its eviction policies (FIFO, S3-FIFO and its sketch)
//! and its entries' deadlines, the log-linear histogram and the
//! shared-memory metrics store of several processes. The PyO3 bindings in
//! the parent crate are a thin layer over these, so `cargo test` runs them
//! without an interpreter.

pub mod expiry;
mod ghost;
pub mod histogram;
pub mod policy;
pub mod shm;
pub mod sketch;
pub mod table;
#[cfg(test)]
mod testing;
