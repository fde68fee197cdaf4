//! The Python face of the shared-memory store (`pepperpy_core_algo::shm`):
//! `SharedStore`, through which a shared MetricsRegistry makes metrics that
//! write into this process's segment and reads the aggregate of every
//! process; and the cell by which such a metric finds its slot again after
//! a fork.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};

use pepperpy_core_algo::shm::{
    after_fork, fork_epoch, Kind, Mode, Previous, Series, Slot, Store, StoreError, Value,
};

use crate::exclusive::Exclusive;
use crate::metrics::{Counter, Gauge, Histogram};

pyo3::import_exception!(pepperpy_core.errors, MetricError);

fn to_py(error: StoreError) -> PyErr {
    match error {
        StoreError::Io(e) => PyOSError::new_err(e.to_string()),
        other => MetricError::new_err(other.to_string()),
    }
}

/// Where a metric keeps its value: in this process's memory, or in its
/// segment of a shared directory.
pub enum Cell<T> {
    Local(T),
    Shared(SharedCell),
}

/// A series' slot in this process's segment, found again in a new segment
/// after a fork (the parent's stays the parent's).
pub struct SharedCell {
    store: Arc<Store>,
    series: Arc<Series>,
    slot: Exclusive<(u64, Slot)>,
}

impl SharedCell {
    fn new(store: &Arc<Store>, series: Series) -> PyResult<Self> {
        let epoch = fork_epoch();
        let slot = store.slot(&series).map_err(to_py)?;
        Ok(SharedCell {
            store: store.clone(),
            series: Arc::new(series),
            slot: Exclusive::new((epoch, slot)),
        })
    }

    /// `f` of this process's slot.
    pub fn with<R>(&self, py: Python<'_>, f: impl FnOnce(&Slot) -> R) -> PyResult<R> {
        let mut held = self.slot.lock(py)?;
        let epoch = fork_epoch();
        if held.0 != epoch {
            // (pure Rust: no Python code runs while the slot is held)
            let slot = self.store.slot(&self.series).map_err(to_py)?;
            *held = (epoch, slot);
        }
        Ok(f(&held.1))
    }
}

enum ViewMetric {
    Counter(Py<Counter>),
    Gauge(Py<Gauge>),
    Histogram(Py<Histogram>),
}

struct View {
    values: Py<PyTuple>,
    metric: ViewMetric,
}

type Views = HashMap<String, HashMap<(usize, Option<u32>), View>>;

/// One process's access to a shared metrics directory (see
/// docs/multiprocess.md): the metrics it makes write into this process's
/// segment; `collect` reads every process's.
#[pyclass(frozen, module = "pepperpy_core._native")]
pub struct SharedStore {
    store: Arc<Store>,
    views: Exclusive<Views>,
}

fn previous(name: &str) -> PyResult<Previous> {
    match name {
        "discard" => Ok(Previous::Discard),
        "keep" => Ok(Previous::Keep),
        "error" => Ok(Previous::Error),
        other => Err(PyValueError::new_err(format!(
            "previous_run must be 'discard', 'keep' or 'error', not {other:?}"
        ))),
    }
}

fn series(
    kind: Kind,
    mode: Mode,
    namespace: &str,
    name: &str,
    labels: Vec<(String, String)>,
    description: &str,
    bounds: Vec<f64>,
) -> Series {
    Series {
        kind,
        mode,
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        labels,
        description: description.to_owned(),
        bounds,
    }
}

#[pymethods]
impl SharedStore {
    /// Opens (creating it if need be) and joins the directory; a previous
    /// run's files are handled as `previous_run` says ("discard", "keep" or
    /// "error").
    #[new]
    #[pyo3(signature = (directory, previous_run = "discard"))]
    fn new(directory: PathBuf, previous_run: &str) -> PyResult<Self> {
        let previous = previous(previous_run)?;
        if cfg!(not(unix)) {
            // Windows' file locks are mandatory: a reader could not read a
            // live worker's segment.
            return Err(MetricError::new_err(
                "shared metrics directories need POSIX file locks (flock)",
            ));
        }
        let store = Store::open(&directory, previous).map_err(to_py)?;
        Ok(SharedStore {
            store,
            views: Exclusive::new(HashMap::new()),
        })
    }

    /// The directory, made absolute.
    #[getter]
    fn directory(&self) -> PathBuf {
        self.store.dir().to_path_buf()
    }

    /// Warnings for the user since the last call (a previous run discarded).
    fn notices(&self) -> Vec<String> {
        self.store.take_notices()
    }

    /// This process's counter of the series, in the directory.
    fn counter(
        &self,
        py: Python<'_>,
        namespace: &str,
        name: &str,
        labels: Vec<(String, String)>,
        description: &str,
    ) -> PyResult<Py<Counter>> {
        let s = series(
            Kind::Counter,
            Mode::Sum,
            namespace,
            name,
            labels,
            description,
            vec![],
        );
        Py::new(py, Counter::shared(SharedCell::new(&self.store, s)?))
    }

    /// This process's gauge of the series, combined across processes as
    /// `mode` says ("sum", "max", "min", "latest" or "pid").
    fn gauge(
        &self,
        py: Python<'_>,
        namespace: &str,
        name: &str,
        labels: Vec<(String, String)>,
        description: &str,
        mode: &str,
    ) -> PyResult<Py<Gauge>> {
        let mode = Mode::from_name(mode)
            .ok_or_else(|| PyValueError::new_err(format!("no gauge mode is called {mode:?}")))?;
        let s = series(
            Kind::Gauge,
            mode,
            namespace,
            name,
            labels,
            description,
            vec![],
        );
        Py::new(py, Gauge::shared(SharedCell::new(&self.store, s)?))
    }

    /// This process's histogram of the series (`bounds` already checked).
    fn histogram(
        &self,
        py: Python<'_>,
        namespace: &str,
        name: &str,
        labels: Vec<(String, String)>,
        description: &str,
        bounds: Vec<f64>,
    ) -> PyResult<Py<Histogram>> {
        let s = series(
            Kind::Histogram,
            Mode::Sum,
            namespace,
            name,
            labels,
            description,
            bounds,
        );
        Py::new(py, Histogram::shared(SharedCell::new(&self.store, s)?))
    }

    /// Every family of `namespace` summed over the processes, after folding
    /// the dead: (name, kind, description, label names, bounds, gauge mode,
    /// {label values: metric}) each, the metrics this store's own aggregate
    /// objects (updated at each call; a gauge of mode "pid" gains a `pid`
    /// label).
    fn collect<'py>(&self, py: Python<'py>, namespace: &str) -> PyResult<Bound<'py, PyList>> {
        let families = self.store.collect(namespace).map_err(to_py)?;
        // Taken out, so that no guard is held while Python objects are made.
        let mut old = {
            let mut views = self.views.lock(py)?;
            views.remove(namespace).unwrap_or_default()
        };
        let mut next = HashMap::with_capacity(old.len());
        let out = PyList::empty(py);
        for family in families {
            let children = PyDict::new(py);
            for s in family.series {
                let key = (s.entry, s.pid);
                let view = match old.remove(&key) {
                    Some(view) => {
                        update(py, &view.metric, s.value)?;
                        view
                    }
                    None => {
                        let mut values: Vec<&str> =
                            s.series.labels.iter().map(|(_, v)| v.as_str()).collect();
                        let pid = s.pid.map(|p| p.to_string());
                        if let Some(pid) = &pid {
                            values.push(pid);
                        }
                        View {
                            values: PyTuple::new(py, values)?.unbind(),
                            metric: make(py, s.value)?,
                        }
                    }
                };
                match &view.metric {
                    ViewMetric::Counter(m) => children.set_item(view.values.bind(py), m)?,
                    ViewMetric::Gauge(m) => children.set_item(view.values.bind(py), m)?,
                    ViewMetric::Histogram(m) => children.set_item(view.values.bind(py), m)?,
                }
                next.insert(key, view);
            }
            let info = family.family;
            let mut label_names = info.label_names.clone();
            if info.mode == Mode::Pid {
                label_names.push("pid".to_owned());
            }
            out.append((
                info.name,
                info.kind.name(),
                info.description,
                PyTuple::new(py, label_names)?,
                PyTuple::new(py, info.bounds.iter().copied())?,
                info.mode.name(),
                children,
            ))?;
        }
        self.views.lock(py)?.insert(namespace.to_owned(), next);
        Ok(out)
    }
}

fn make(py: Python<'_>, value: Value) -> PyResult<ViewMetric> {
    Ok(match value {
        Value::Counter(n) => {
            let counter = Counter::default();
            counter.set_local(n);
            ViewMetric::Counter(Py::new(py, counter)?)
        }
        Value::Gauge(v, _) => {
            let gauge = Gauge::default();
            gauge.set_local(v);
            ViewMetric::Gauge(Py::new(py, gauge)?)
        }
        Value::Histogram(totals) => ViewMetric::Histogram(Py::new(py, Histogram::view(totals))?),
    })
}

fn update(py: Python<'_>, metric: &ViewMetric, value: Value) -> PyResult<()> {
    match (metric, value) {
        (ViewMetric::Counter(m), Value::Counter(n)) => m.get().set_local(n),
        (ViewMetric::Gauge(m), Value::Gauge(v, _)) => m.get().set_local(v),
        (ViewMetric::Histogram(m), Value::Histogram(t)) => m.get().set_view(py, t)?,
        _ => {}
    }
    Ok(())
}

/// Called in a child process after `os.fork()`: its metrics move to a
/// segment of its own at their next use, and the parent's lock is left to
/// the parent.
#[pyfunction]
pub fn _after_fork() {
    after_fork();
}
