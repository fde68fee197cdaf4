//! `RegistryCore`: the lookup half of `pepperpy_core.metrics.MetricsRegistry`.
//!
//! `counter(name)`, `gauge(name)`, `histogram(name)` and `timer(name)` (also with labels
//! given as a dict of str to str, and no keyword arguments) for a metric that
//! already exists cost one dict lookup: no name check, no bucket tuple, no
//! lock. Every other call (a new metric, keyword arguments, labels of another
//! shape) goes to the Python subclass's `_lookup(kind, *args, **kwargs)`,
//! which checks, creates and remembers the metric under the call's key (see
//! `call_key`), so that the next such call is a hit.

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString, PyTuple};
use pyo3::{ffi, intern};

use crate::metrics::{Counter, Gauge, Histogram, Timer};
use crate::raw::{enter, install, positional, MethodDef};

/// The lookups the Python registry has answered: call key -> metric.
#[pyclass(subclass, frozen, weakref, module = "pepperpy_core._native")]
pub struct RegistryCore {
    counters: Py<PyDict>,
    gauges: Py<PyDict>,
    histograms: Py<PyDict>,
}

#[pymethods]
impl RegistryCore {
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn new(
        py: Python<'_>,
        _args: &Bound<'_, PyTuple>,
        _kwargs: Option<&Bound<'_, PyDict>>,
    ) -> Self {
        RegistryCore {
            counters: PyDict::new(py).unbind(),
            gauges: PyDict::new(py).unbind(),
            histograms: PyDict::new(py).unbind(),
        }
    }

    /// Remembered counter lookups (filled by the Python registry).
    #[getter]
    fn _counters(&self, py: Python<'_>) -> Py<PyDict> {
        self.counters.clone_ref(py)
    }

    /// Remembered gauge lookups (filled by the Python registry).
    #[getter]
    fn _gauges(&self, py: Python<'_>) -> Py<PyDict> {
        self.gauges.clone_ref(py)
    }

    /// Remembered histogram lookups (filled by the Python registry).
    #[getter]
    fn _histograms(&self, py: Python<'_>) -> Py<PyDict> {
        self.histograms.clone_ref(py)
    }

    /// A new Counter of this backend.
    fn _new_counter(&self, py: Python<'_>) -> PyResult<Py<Counter>> {
        Py::new(py, Counter::default())
    }

    /// A new Gauge of this backend.
    fn _new_gauge(&self, py: Python<'_>) -> PyResult<Py<Gauge>> {
        Py::new(py, Gauge::default())
    }

    /// A new Histogram of this backend with these bucket bounds.
    fn _new_histogram(&self, bounds: &Bound<'_, PyAny>) -> PyResult<Py<Histogram>> {
        Py::new(bounds.py(), Histogram::with_bounds(bounds)?)
    }

    /// Appends the exposition lines of a family's series to the list `out`,
    /// as bytes when `encoded`, else as a str (see render.rs): `children`
    /// pairs of label values and this backend's metrics, `lines` the cached
    /// prefixes per series, `make(values)` those of a new series (or None).
    #[staticmethod]
    fn _samples(
        kind: &str,
        children: &Bound<'_, PyAny>,
        lines: &Bound<'_, PyDict>,
        make: &Bound<'_, PyAny>,
        out: &Bound<'_, PyList>,
        encoded: bool,
    ) -> PyResult<()> {
        crate::render::samples(kind, children, lines, make, out, encoded)
    }
}

/// The key a call is remembered under: the name alone, or the name followed
/// by each label name and value in the dict's order; None for any other
/// shape of call (which then always takes the Python path).
/// `pepperpy_core._fallback.metrics.call_key` builds the same keys.
fn call_key<'py>(
    name: &Bound<'py, PyAny>,
    labels: Option<&Bound<'py, PyAny>>,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    if !name.is_exact_instance_of::<PyString>() {
        return Ok(None);
    }
    let labels = match labels {
        None => return Ok(Some(name.clone())),
        Some(labels) if labels.is_none() => return Ok(Some(name.clone())),
        Some(labels) => match labels.cast_exact::<PyDict>() {
            Ok(labels) => labels,
            Err(_) => return Ok(None),
        },
    };
    let mut parts = Vec::with_capacity(1 + 2 * labels.len());
    parts.push(name.clone());
    // items() is a snapshot, so nothing can change the dict under the loop.
    for pair in labels.items().iter() {
        let (key, value) = pair.extract::<(Bound<'py, PyAny>, Bound<'py, PyAny>)>()?;
        if !key.is_exact_instance_of::<PyString>() || !value.is_exact_instance_of::<PyString>() {
            return Ok(None);
        }
        parts.push(key);
        parts.push(value);
    }
    Ok(Some(PyTuple::new(name.py(), parts)?.into_any()))
}

/// Which remembered table a method reads, and what a hit returns.
#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
    Timer,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
            Kind::Timer => "timer",
        }
    }
}

/// The body of the four raw methods.
///
/// # Safety
/// As for any fastcall entry point: `slf` is a live `RegistryCore` (or
/// subclass) instance, `args` holds `nargsf`'s count of live objects followed
/// by one per name in `kwnames` (NULL when there are none).
unsafe fn lookup(
    kind: Kind,
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: see this function's contract.
    unsafe {
        enter(|py| {
            let slf = Bound::from_borrowed_ptr(py, slf);
            let nargs = positional(nargsf);
            let arg = |i: isize| Bound::from_borrowed_ptr(py, *args.offset(i));
            if kwnames.is_null() && (nargs == 1 || nargs == 2) {
                let labels = (nargs == 2).then(|| arg(1));
                if let Some(key) = call_key(&arg(0), labels.as_ref())? {
                    let core = slf.cast_unchecked::<RegistryCore>().get();
                    let table = match kind {
                        Kind::Counter => &core.counters,
                        Kind::Gauge => &core.gauges,
                        Kind::Histogram | Kind::Timer => &core.histograms,
                    };
                    if let Some(found) = table.bind(py).get_item(key)? {
                        if let Kind::Timer = kind {
                            let histogram = found.cast_into::<Histogram>()?.unbind();
                            return Ok(Py::new(py, Timer::for_histogram(histogram))?.into_any());
                        }
                        return Ok(found.unbind());
                    }
                }
            }
            // Everything else: the Python registry's own checks and creation.
            let mut forwarded = vec![PyString::new(py, kind.name()).into_any()];
            forwarded.extend((0..nargs).map(arg));
            let kwargs = if kwnames.is_null() {
                None
            } else {
                let names = Bound::from_borrowed_ptr(py, kwnames).cast_into::<PyTuple>()?;
                let kwargs = PyDict::new(py);
                for (i, name) in names.iter().enumerate() {
                    kwargs.set_item(name, arg(nargs + i as isize))?;
                }
                Some(kwargs)
            };
            let method = slf.getattr(intern!(py, "_lookup"))?;
            Ok(method
                .call(PyTuple::new(py, forwarded)?, kwargs.as_ref())?
                .unbind())
        })
    }
}

unsafe extern "C" fn counter(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython calls this as the fastcall method it was installed as.
    unsafe { lookup(Kind::Counter, slf, args, nargsf, kwnames) }
}

unsafe extern "C" fn gauge(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: as for `counter`.
    unsafe { lookup(Kind::Gauge, slf, args, nargsf, kwnames) }
}

unsafe extern "C" fn histogram(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: as for `counter`.
    unsafe { lookup(Kind::Histogram, slf, args, nargsf, kwnames) }
}

unsafe extern "C" fn timer(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: as for `counter`.
    unsafe { lookup(Kind::Timer, slf, args, nargsf, kwnames) }
}

static COUNTER: MethodDef = MethodDef::fastcall_keywords(
    c"counter",
    c"counter($self, name, labels=None, *, description='')\n--\n\n\
      The counter called `name` with these label values, made on first use.",
    counter,
);

static GAUGE: MethodDef = MethodDef::fastcall_keywords(
    c"gauge",
    c"gauge($self, name, labels=None, *, description='', mode=None)\n--\n\n\
      The gauge called `name` with these label values, made on first use.",
    gauge,
);

static HISTOGRAM: MethodDef = MethodDef::fastcall_keywords(
    c"histogram",
    c"histogram($self, name, labels=None, *, description='', buckets=None)\n--\n\n\
      The histogram called `name` with these label values, made on first use.",
    histogram,
);

static TIMER: MethodDef = MethodDef::fastcall_keywords(
    c"timer",
    c"timer($self, name, labels=None, *, description='', buckets=None)\n--\n\n\
      A new Timer recording into the histogram called `name`.",
    timer,
);

/// Adds the raw lookup methods to the class.
pub fn install_methods(py: Python<'_>) -> PyResult<()> {
    let ty = py.get_type::<RegistryCore>();
    for def in [&COUNTER, &GAUGE, &HISTOGRAM, &TIMER] {
        install(&ty, def)?;
    }
    Ok(())
}
