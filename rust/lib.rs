//! `pepperpy_core._native`: the hot paths of pepperpy-core. Only
//! `pepperpy_core._backend` imports it, and chooses between it and the
//! pure-Python fallback (`PEPPERPY_CORE_BACKEND`); the rest of the package
//! reaches these classes through that choice.

mod cache;
mod exclusive;
mod metrics;
mod raw;
mod registry;
mod render;
mod shared;

use pepperpy_core_algo::histogram;

use pyo3::prelude::*;

/// Declared usable without the GIL (free-threaded CPython), on purpose rather
/// than by PyO3's default: every piece of shared state is either an atomic
/// (Counter), behind `Exclusive` (a mutex on free-threaded builds; see
/// exclusive.rs), or a Python dict used through its own thread-safe API
/// (RegistryCore). No free-threaded interpreter could be installed where this
/// was built and tested; the GIL build is what the test suite exercises, and
/// CI compiles and lints the free-threaded one (`.ci/free-threaded.cfg`).
#[pymodule(gil_used = false)]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<cache::FIFOCache>()?;
    m.add_class::<cache::S3FIFOCache>()?;
    cache::install_methods(m.py())?;
    m.add_class::<cache::CacheStats>()?;
    m.add_class::<metrics::Counter>()?;
    m.add_class::<metrics::Gauge>()?;
    m.add_class::<metrics::Histogram>()?;
    m.add_class::<metrics::Timer>()?;
    m.add_class::<registry::RegistryCore>()?;
    m.add_class::<shared::SharedStore>()?;
    m.add_function(wrap_pyfunction!(shared::_after_fork, m)?)?;
    registry::install_methods(m.py())?;
    m.add("DEFAULT_BUCKETS", metrics::DEFAULT_BUCKETS.to_vec())?;
    m.add("QUANTILE_RELATIVE_ERROR", histogram::RELATIVE_ERROR)?;
    Ok(())
}
