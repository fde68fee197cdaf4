//! `pepperpy_core._native`: the hot paths of pepperpy-core. Python code never
//! imports this module directly; `pepperpy_core.cache` and
//! `pepperpy_core.metrics` choose between it and the pure-Python fallback.

mod cache;
pub mod fifo;
mod lock;

use pyo3::prelude::*;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<cache::FIFOCache>()?;
    m.add_class::<cache::CacheStats>()?;
    Ok(())
}
