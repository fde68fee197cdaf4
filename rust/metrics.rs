//! Counter, Gauge, Histogram and Timer: the Python face of [`crate::histogram`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use pyo3::exceptions::{PyOverflowError, PyRuntimeError, PyStopIteration, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyFloat;

use pepperpy_core_algo::histogram::Histogram as Core;

use crate::exclusive::Exclusive;

/// prometheus_client's default bucket bounds, in seconds.
pub const DEFAULT_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// A monotonically increasing count; increments are atomic.
#[pyclass(frozen, weakref, module = "pepperpy_core._native")]
#[derive(Default)]
pub struct Counter {
    value: AtomicU64,
}

#[pymethods]
impl Counter {
    #[new]
    fn new() -> Self {
        Counter {
            value: AtomicU64::new(0),
        }
    }

    /// Adds `n` (an int >= 0).
    #[pyo3(signature = (n = None))]
    fn inc(&self, n: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let n = match n {
            None => 1,
            Some(n) => step(n)?,
        };
        self.value
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_add(n))
            .map(|_| ())
            .map_err(|_| PyOverflowError::new_err("counter would exceed 2**64 - 1"))
    }

    #[getter]
    fn value(&self) -> u64 {
        self.value.load(Ordering::Relaxed)
    }

    fn __repr__(&self) -> String {
        format!("Counter(value={})", self.value())
    }
}

impl Counter {
    /// The count now (what `value` reads).
    pub(crate) fn current(&self) -> u64 {
        self.value.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down: the current number of something, a size,
/// a temperature. Updates are atomic (compare-and-swap on the f64's bits).
#[pyclass(frozen, weakref, module = "pepperpy_core._native")]
#[derive(Default)]
pub struct Gauge {
    bits: AtomicU64,
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
    pub(crate) fn current(&self) -> f64 {
        f64::from_bits(self.bits.load(Ordering::Relaxed))
    }

    /// Applies `change` atomically; an OverflowError, and no change, when the
    /// result would not be finite.
    fn update(&self, change: impl Fn(f64) -> f64) -> PyResult<()> {
        self.bits
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                let next = change(f64::from_bits(bits));
                next.is_finite().then(|| next.to_bits())
            })
            .map(|_| ())
            .map_err(|_| PyOverflowError::new_err("gauge value would not be finite"))
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
        self.bits.store(value.to_bits(), Ordering::Relaxed);
        Ok(())
    }

    /// Adds `amount` (a finite number, 1 by default).
    #[pyo3(signature = (amount = 1.0))]
    fn inc(&self, py: Python<'_>, amount: f64) -> PyResult<()> {
        let amount = finite(py, "step", amount)?;
        self.update(|v| v + amount)
    }

    /// Subtracts `amount` (a finite number, 1 by default).
    #[pyo3(signature = (amount = 1.0))]
    fn dec(&self, py: Python<'_>, amount: f64) -> PyResult<()> {
        let amount = finite(py, "step", amount)?;
        self.update(|v| v - amount)
    }

    #[getter]
    fn value(&self) -> f64 {
        f64::from_bits(self.bits.load(Ordering::Relaxed))
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!("Gauge(value={})", float_text(py, self.value()))
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
/// is at most 1/128 (see `QUANTILE_RELATIVE_ERROR`).
#[pyclass(frozen, weakref, module = "pepperpy_core._native")]
pub struct Histogram {
    inner: Exclusive<Core>,
}

impl Histogram {
    /// The cumulative buckets (+Inf last) and the sum, read under one lock.
    pub(crate) fn exported(&self, py: Python<'_>) -> PyResult<(Vec<(f64, u64)>, f64)> {
        let inner = self.inner.lock(py)?;
        Ok((inner.cumulative_buckets(), inner.sum()))
    }

    pub(crate) fn with_bounds(bounds: &Bound<'_, PyAny>) -> PyResult<Self> {
        Ok(Histogram {
            inner: Exclusive::new(Core::new(check_bounds(bounds.py(), Some(bounds))?)),
        })
    }

    fn record(&self, py: Python<'_>, seconds: f64) -> PyResult<()> {
        self.inner.lock(py)?.observe(seconds);
        Ok(())
    }
}

#[pymethods]
impl Histogram {
    #[new]
    #[pyo3(signature = (buckets = None))]
    fn new(py: Python<'_>, buckets: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        Ok(Histogram {
            inner: Exclusive::new(Core::new(check_bounds(py, buckets)?)),
        })
    }

    /// Records one duration (finite, >= 0, in seconds).
    fn observe(&self, py: Python<'_>, seconds: f64) -> PyResult<()> {
        let seconds = check_seconds(py, seconds)?;
        self.record(py, seconds)
    }

    #[getter]
    fn count(&self, py: Python<'_>) -> PyResult<u64> {
        Ok(self.inner.lock(py)?.count())
    }

    #[getter]
    fn sum(&self, py: Python<'_>) -> PyResult<f64> {
        Ok(self.inner.lock(py)?.sum())
    }

    /// The smallest sample, or None before the first.
    #[getter]
    fn min(&self, py: Python<'_>) -> PyResult<Option<f64>> {
        Ok(self.inner.lock(py)?.min_max().map(|(min, _)| min))
    }

    /// The largest sample, or None before the first.
    #[getter]
    fn max(&self, py: Python<'_>) -> PyResult<Option<f64>> {
        Ok(self.inner.lock(py)?.min_max().map(|(_, max)| max))
    }

    /// The estimated q-quantile (q in [0, 1]), or None before the first sample.
    fn quantile(&self, py: Python<'_>, q: f64) -> PyResult<Option<f64>> {
        if !(0.0..=1.0).contains(&q) {
            return Err(PyValueError::new_err(format!(
                "quantile needs 0 <= q <= 1, got {}",
                float_text(py, q)
            )));
        }
        Ok(self.inner.lock(py)?.quantile(q))
    }

    /// The exported bucket bounds, without the implied +Inf.
    #[getter]
    fn bounds(&self, py: Python<'_>) -> PyResult<Vec<f64>> {
        Ok(self.inner.lock(py)?.bounds().to_vec())
    }

    /// (upper bound, cumulative count) for each exported bucket, +Inf last.
    fn buckets(&self, py: Python<'_>) -> PyResult<Vec<(f64, u64)>> {
        Ok(self.inner.lock(py)?.cumulative_buckets())
    }

    /// A new Timer that records into this histogram.
    fn time(slf: &Bound<'_, Self>) -> Timer {
        Timer::for_histogram(slf.clone().unbind())
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let (count, sum) = {
            let inner = self.inner.lock(py)?;
            (inner.count(), inner.sum())
        };
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
