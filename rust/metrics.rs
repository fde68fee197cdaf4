//! Counter, Gauge, Histogram and Timer: the Python face of [`crate::histogram`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use pyo3::exceptions::{PyOverflowError, PyRuntimeError, PyStopIteration, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyFloat;
use pyo3::PyErr;

use pepperpy_core_algo::histogram::Histogram as Core;
use pepperpy_core_algo::shm::{Slot, Totals};

use crate::exclusive::Exclusive;
use crate::shared::{Cell, SharedCell};

/// prometheus_client's default bucket bounds, in seconds.
pub const DEFAULT_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// A monotonically increasing count; increments are atomic. In a shared
/// registry its value is this process's, in the shared directory.
#[pyclass(frozen, weakref, module = "pepperpy_core._native")]
pub struct Counter {
    value: Cell<AtomicU64>,
}

impl Default for Counter {
    fn default() -> Self {
        Counter {
            value: Cell::Local(AtomicU64::new(0)),
        }
    }
}

fn overflow() -> PyErr {
    PyOverflowError::new_err("counter would exceed 2**64 - 1")
}

#[pymethods]
impl Counter {
    #[new]
    fn new() -> Self {
        Counter::default()
    }

    /// Adds `n` (an int >= 0).
    #[pyo3(signature = (n = None))]
    fn inc(&self, py: Python<'_>, n: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let n = match n {
            None => 1,
            Some(n) => step(n)?,
        };
        match &self.value {
            Cell::Local(value) => value
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_add(n))
                .map(|_| ())
                .map_err(|_| overflow()),
            Cell::Shared(cell) => cell
                .with(py, |slot| slot.add(n))
                .and_then(|added| added.map_err(|_| overflow())),
        }
    }

    #[getter]
    fn value(&self, py: Python<'_>) -> PyResult<u64> {
        match &self.value {
            Cell::Local(value) => Ok(value.load(Ordering::Relaxed)),
            Cell::Shared(cell) => cell.with(py, Slot::count),
        }
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!("Counter(value={})", self.value(py)?))
    }
}

impl Counter {
    /// The count now (what `value` reads).
    pub(crate) fn current(&self, py: Python<'_>) -> PyResult<u64> {
        self.value(py)
    }

    pub(crate) fn shared(cell: SharedCell) -> Self {
        Counter {
            value: Cell::Shared(cell),
        }
    }

    /// A counter holding `n`, or set to it if it is one (an aggregate).
    pub(crate) fn set_local(&self, n: u64) {
        if let Cell::Local(value) = &self.value {
            value.store(n, Ordering::Relaxed);
        }
    }
}

/// A value that goes up and down: the current number of something, a size,
/// a temperature. Updates are atomic (compare-and-swap on the f64's bits).
/// In a shared registry its value is this process's, in the shared directory.
#[pyclass(frozen, weakref, module = "pepperpy_core._native")]
pub struct Gauge {
    bits: Cell<AtomicU64>,
}

impl Default for Gauge {
    fn default() -> Self {
        Gauge {
            bits: Cell::Local(AtomicU64::new(0f64.to_bits())),
        }
    }
}

fn not_finite() -> PyErr {
    PyOverflowError::new_err("gauge value would not be finite")
}

fn finite(py: Python<'_>, what: &str, value: f64) -> PyResult<f64> {
    if value.is_finite() {
        Ok(value)
    } else {
        Err(PyValueError::new_err(format!(
            "a gauge {what} must be a finite number, got {}",
            float_text(py, value)
        )))
    }
}

impl Gauge {
    /// The value now (what `value` reads).
    pub(crate) fn current(&self, py: Python<'_>) -> PyResult<f64> {
        match &self.bits {
            Cell::Local(bits) => Ok(f64::from_bits(bits.load(Ordering::Relaxed))),
            Cell::Shared(cell) => cell.with(py, Slot::gauge),
        }
    }

    /// Applies `change` atomically; an OverflowError, and no change, when the
    /// result would not be finite.
    fn update(&self, py: Python<'_>, change: impl Fn(f64) -> f64) -> PyResult<()> {
        let done = match &self.bits {
            Cell::Local(bits) => bits
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                    let next = change(f64::from_bits(bits));
                    next.is_finite().then(|| next.to_bits())
                })
                .is_ok(),
            Cell::Shared(cell) => cell.with(py, |slot| slot.update(&change))?,
        };
        if done {
            Ok(())
        } else {
            Err(not_finite())
        }
    }

    pub(crate) fn shared(cell: SharedCell) -> Self {
        Gauge {
            bits: Cell::Shared(cell),
        }
    }

    /// Sets a gauge of this process's memory (an aggregate).
    pub(crate) fn set_local(&self, value: f64) {
        if let Cell::Local(bits) = &self.bits {
            bits.store(value.to_bits(), Ordering::Relaxed);
        }
    }
}

#[pymethods]
impl Gauge {
    #[new]
    fn new() -> Self {
        Gauge::default()
    }

    /// Sets the value (a finite number).
    fn set(&self, py: Python<'_>, value: f64) -> PyResult<()> {
        let value = finite(py, "value", value)?;
        match &self.bits {
            Cell::Local(bits) => bits.store(value.to_bits(), Ordering::Relaxed),
            Cell::Shared(cell) => cell.with(py, |slot| slot.set(value))?,
        }
        Ok(())
    }

    /// Adds `amount` (a finite number, 1 by default).
    #[pyo3(signature = (amount = 1.0))]
    fn inc(&self, py: Python<'_>, amount: f64) -> PyResult<()> {
        let amount = finite(py, "step", amount)?;
        self.update(py, |v| v + amount)
    }

    /// Subtracts `amount` (a finite number, 1 by default).
    #[pyo3(signature = (amount = 1.0))]
    fn dec(&self, py: Python<'_>, amount: f64) -> PyResult<()> {
        let amount = finite(py, "step", amount)?;
        self.update(py, |v| v - amount)
    }

    #[getter]
    fn value(&self, py: Python<'_>) -> PyResult<f64> {
        self.current(py)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "Gauge(value={})",
            float_text(py, self.current(py)?)
        ))
    }
}

/// A counter step: an int (or `__index__`) from 0 to 2**63 - 1.
fn step(n: &Bound<'_, PyAny>) -> PyResult<u64> {
    let negative = || {
        PyValueError::new_err(format!(
            "a counter only goes up: inc() needs n >= 0, got {n}"
        ))
    };
    match n.extract::<i64>() {
        Ok(v) => u64::try_from(v).map_err(|_| negative()),
        Err(err) if err.is_instance_of::<PyOverflowError>(n.py()) && n.lt(0)? => Err(negative()),
        Err(err) => Err(err),
    }
}

/// `value` as Python writes it (`repr(float)`), so that both backends' messages
/// read the same: `nan`, `-1.0`, `1e-300`.
fn float_text(py: Python<'_>, value: f64) -> String {
    match PyFloat::new(py, value).repr() {
        Ok(text) => text.to_string(),
        Err(_) => format!("{value:?}"),
    }
}

/// The bucket bounds from any iterable of real numbers (each as `float()`
/// would read it), checked: finite, >= 0 and strictly increasing.
fn check_bounds(py: Python<'_>, buckets: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<f64>> {
    let bounds = match buckets {
        None => DEFAULT_BUCKETS.to_vec(),
        Some(items) => items
            .try_iter()?
            .map(|item| item?.extract::<f64>())
            .collect::<PyResult<Vec<f64>>>()?,
    };
    if let Some(bad) = bounds.iter().find(|b| !b.is_finite() || **b < 0.0) {
        return Err(PyValueError::new_err(format!(
            "bucket bounds must be finite and >= 0 (+Inf is always added), got {}",
            float_text(py, *bad)
        )));
    }
    if bounds.windows(2).any(|w| w[0] >= w[1]) {
        return Err(PyValueError::new_err(
            "bucket bounds must be strictly increasing",
        ));
    }
    Ok(bounds)
}

fn check_seconds(py: Python<'_>, seconds: f64) -> PyResult<f64> {
    if seconds.is_finite() && seconds >= 0.0 {
        Ok(seconds)
    } else {
        Err(PyValueError::new_err(format!(
            "a duration must be finite and >= 0 seconds, got {}",
            float_text(py, seconds)
        )))
    }
}

/// Distribution of durations in seconds, with quantiles whose relative error
/// is at most 1/128 (see `QUANTILE_RELATIVE_ERROR`). In a shared registry its
/// values are this process's, in the shared directory, and (as for the
/// aggregate a shared registry exports) quantiles are interpolated within
/// the exported buckets.
#[pyclass(frozen, weakref, module = "pepperpy_core._native")]
pub struct Histogram {
    inner: HistogramCell,
}

enum HistogramCell {
    Local(Exclusive<Core>),
    Shared(SharedCell),
    /// The aggregate of several processes: read, never observed.
    View(Exclusive<Totals>),
}

impl Histogram {
    /// The cumulative buckets (+Inf last) and the sum, read consistently.
    pub(crate) fn exported(&self, py: Python<'_>) -> PyResult<(Vec<(f64, u64)>, f64)> {
        self.read(
            py,
            |core| (core.cumulative_buckets(), core.sum()),
            |totals| (totals.cumulative_buckets(), totals.sum),
        )
    }

    pub(crate) fn with_bounds(bounds: &Bound<'_, PyAny>) -> PyResult<Self> {
        Ok(Histogram {
            inner: HistogramCell::Local(Exclusive::new(Core::new(check_bounds(
                bounds.py(),
                Some(bounds),
            )?))),
        })
    }

    pub(crate) fn shared(cell: SharedCell) -> Self {
        Histogram {
            inner: HistogramCell::Shared(cell),
        }
    }

    pub(crate) fn view(totals: Totals) -> Self {
        Histogram {
            inner: HistogramCell::View(Exclusive::new(totals)),
        }
    }

    /// Replaces an aggregate's totals.
    pub(crate) fn set_view(&self, py: Python<'_>, totals: Totals) -> PyResult<()> {
        if let HistogramCell::View(view) = &self.inner {
            *view.lock(py)? = totals;
        }
        Ok(())
    }

    fn record(&self, py: Python<'_>, seconds: f64) -> PyResult<()> {
        match &self.inner {
            HistogramCell::Local(core) => core.lock(py)?.observe(seconds),
            HistogramCell::Shared(cell) => cell.with(py, |slot| slot.observe(seconds))?,
            HistogramCell::View(_) => {
                return Err(PyRuntimeError::new_err(
                    "this histogram is the aggregate of several processes: it is read, \
                     not observed",
                ))
            }
        }
        Ok(())
    }

    /// `local` of this process's histogram, or `totals` of shared values.
    fn read<R>(
        &self,
        py: Python<'_>,
        local: impl FnOnce(&Core) -> R,
        totals: impl FnOnce(&Totals) -> R,
    ) -> PyResult<R> {
        match &self.inner {
            HistogramCell::Local(core) => {
                let core = core.lock(py)?;
                Ok(local(&core))
            }
            HistogramCell::Shared(cell) => {
                let now = cell.with(py, Slot::totals)?;
                Ok(totals(&now))
            }
            HistogramCell::View(view) => {
                let view = view.lock(py)?;
                Ok(totals(&view))
            }
        }
    }
}

#[pymethods]
impl Histogram {
    #[new]
    #[pyo3(signature = (buckets = None))]
    fn new(py: Python<'_>, buckets: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        Ok(Histogram {
            inner: HistogramCell::Local(Exclusive::new(Core::new(check_bounds(py, buckets)?))),
        })
    }

    /// Records one duration (finite, >= 0, in seconds).
    fn observe(&self, py: Python<'_>, seconds: f64) -> PyResult<()> {
        let seconds = check_seconds(py, seconds)?;
        self.record(py, seconds)
    }

    #[getter]
    fn count(&self, py: Python<'_>) -> PyResult<u64> {
        self.read(py, Core::count, Totals::count)
    }

    #[getter]
    fn sum(&self, py: Python<'_>) -> PyResult<f64> {
        self.read(py, Core::sum, |t| t.sum)
    }

    /// The smallest sample, or None before the first.
    #[getter]
    fn min(&self, py: Python<'_>) -> PyResult<Option<f64>> {
        self.read(
            py,
            |c| c.min_max().map(|(min, _)| min),
            |t| t.min_max().map(|(min, _)| min),
        )
    }

    /// The largest sample, or None before the first.
    #[getter]
    fn max(&self, py: Python<'_>) -> PyResult<Option<f64>> {
        self.read(
            py,
            |c| c.min_max().map(|(_, max)| max),
            |t| t.min_max().map(|(_, max)| max),
        )
    }

    /// The estimated q-quantile (q in [0, 1]), or None before the first sample.
    fn quantile(&self, py: Python<'_>, q: f64) -> PyResult<Option<f64>> {
        if !(0.0..=1.0).contains(&q) {
            return Err(PyValueError::new_err(format!(
                "quantile needs 0 <= q <= 1, got {}",
                float_text(py, q)
            )));
        }
        self.read(py, |c| c.quantile(q), |t| t.quantile(q))
    }

    /// The exported bucket bounds, without the implied +Inf.
    #[getter]
    fn bounds(&self, py: Python<'_>) -> PyResult<Vec<f64>> {
        self.read(py, |c| c.bounds().to_vec(), |t| t.bounds.to_vec())
    }

    /// (upper bound, cumulative count) for each exported bucket, +Inf last.
    fn buckets(&self, py: Python<'_>) -> PyResult<Vec<(f64, u64)>> {
        self.read(py, Core::cumulative_buckets, Totals::cumulative_buckets)
    }

    /// A new Timer that records into this histogram.
    fn time(slf: &Bound<'_, Self>) -> Timer {
        Timer::for_histogram(slf.clone().unbind())
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let (count, sum) = self.read(py, |c| (c.count(), c.sum()), |t| (t.count(), t.sum))?;
        Ok(format!(
            "Histogram(count={count}, sum={})",
            float_text(py, sum)
        ))
    }
}

/// Times one block at a time (`with`, `async with`) into a Histogram; the
/// clock is Rust's monotonic `Instant`. Calling it on a function returns a
/// wrapper that times every call, for plain and `async def` functions.
#[pyclass(frozen, weakref, module = "pepperpy_core._native")]
pub struct Timer {
    histogram: Py<Histogram>,
    started: Exclusive<Option<Instant>>,
}

impl Timer {
    pub(crate) fn for_histogram(histogram: Py<Histogram>) -> Self {
        Timer {
            histogram,
            started: Exclusive::new(None),
        }
    }

    fn start(&self, py: Python<'_>) -> PyResult<()> {
        let mut started = self.started.lock(py)?;
        if started.is_some() {
            return Err(PyRuntimeError::new_err(
                "this timer is already running; take a new one for each block",
            ));
        }
        *started = Some(Instant::now());
        Ok(())
    }

    fn stop(&self, py: Python<'_>) -> PyResult<()> {
        let now = Instant::now();
        let Some(started) = self.started.lock(py)?.take() else {
            return Err(PyRuntimeError::new_err(
                "timer stopped without being started",
            ));
        };
        let seconds = now.duration_since(started).as_secs_f64();
        self.histogram.get().record(py, seconds)
    }
}

#[pymethods]
impl Timer {
    #[new]
    fn new(histogram: Py<Histogram>) -> Self {
        Timer::for_histogram(histogram)
    }

    /// The histogram this timer records into.
    #[getter]
    fn histogram(&self, py: Python<'_>) -> Py<Histogram> {
        self.histogram.clone_ref(py)
    }

    fn __enter__(slf: Bound<'_, Self>) -> PyResult<Bound<'_, Self>> {
        slf.get().start(slf.py())?;
        Ok(slf)
    }

    fn __exit__(
        &self,
        py: Python<'_>,
        _exc_type: &Bound<'_, PyAny>,
        _exc: &Bound<'_, PyAny>,
        _tb: &Bound<'_, PyAny>,
    ) -> PyResult<bool> {
        self.stop(py)?;
        Ok(false)
    }

    fn __aenter__(slf: Bound<'_, Self>) -> PyResult<Ready> {
        slf.get().start(slf.py())?;
        Ok(Ready {
            value: slf.into_any().unbind(),
        })
    }

    fn __aexit__(
        &self,
        py: Python<'_>,
        _exc_type: &Bound<'_, PyAny>,
        _exc: &Bound<'_, PyAny>,
        _tb: &Bound<'_, PyAny>,
    ) -> PyResult<Ready> {
        self.stop(py)?;
        Ok(Ready {
            value: false.into_pyobject(py)?.to_owned().into_any().unbind(),
        })
    }

    /// Decorates `func` so that every call is timed (see pepperpy_core._timing).
    fn __call__(&self, py: Python<'_>, func: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let timed = py.import("pepperpy_core._timing")?.getattr("timed")?;
        Ok(timed.call1((self.histogram.clone_ref(py), func))?.unbind())
    }
}

/// An awaitable that is already done: what `__aenter__` / `__aexit__` return.
/// A private helper: the module does not export it.
#[pyclass(frozen, name = "_Ready", module = "pepperpy_core._native")]
pub struct Ready {
    value: Py<PyAny>,
}

#[pymethods]
impl Ready {
    fn __await__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// Finishes at once: StopIteration carries the value `await` returns.
    fn __next__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        Err(PyStopIteration::new_err((self.value.clone_ref(py),)))
    }

    fn send(&self, py: Python<'_>, _value: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        self.__next__(py)
    }
}
