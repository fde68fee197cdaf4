//! `FIFOCache`: the Python face of [`pepperpy_core_algo::fifo::Fifo`].
//!
//! The one rule that keeps it safe against hostile keys and values: no Python
//! code runs while the table is held (see [`crate::exclusive`]). Hashes are
//! taken before locking. A key found by identity needs no comparison; keys of
//! one exact builtin type (str, int, float, bytes) compare in C code that can
//! neither call Python nor warn, so they compare under the lock; any other
//! pair is compared with the lock released, and the search is trusted only if
//! the table's version did not move meanwhile. References that leave the
//! table (evicted, overwritten, popped, cleared) are dropped after the lock is
//! released, so a `__del__` that touches the cache finds it consistent.

use std::collections::HashMap;

use pyo3::exceptions::{PyKeyError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyInt, PyList, PyMapping, PyTuple};
use pyo3::{ffi, intern, PyTraverseError, PyVisit};

use pepperpy_core_algo::fifo::{spread, Fifo, MAX_ENTRIES};

use crate::exclusive::{Exclusive, Guard};
use crate::raw::{enter, install, MethodDef};

/// How many times one lookup may find the table changed while it compared
/// keys with the lock released before it gives up with RuntimeError (only a
/// key whose `__eq__` keeps modifying the cache gets there).
pub const MAX_ROUNDS: usize = 100;

type Table = Fifo<Py<PyAny>, Py<PyAny>>;

#[derive(Default)]
struct Inner {
    table: Table,
    hits: u64,
    misses: u64,
    inserts: u64,
    evictions: u64,
}

/// Counters of a cache since it was made: reads that hit or missed, new keys
/// inserted and keys evicted to make room.
#[pyclass(frozen, eq, hash, get_all, module = "pepperpy_core._native")]
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CacheStats {
    hits: u64,
    misses: u64,
    inserts: u64,
    evictions: u64,
}

#[pymethods]
impl CacheStats {
    #[new]
    #[pyo3(signature = (*, hits, misses, inserts, evictions))]
    fn new(hits: u64, misses: u64, inserts: u64, evictions: u64) -> Self {
        CacheStats {
            hits,
            misses,
            inserts,
            evictions,
        }
    }

    fn __repr__(&self) -> String {
        format!(
            "CacheStats(hits={}, misses={}, inserts={}, evictions={})",
            self.hits, self.misses, self.inserts, self.evictions
        )
    }
}

/// A bounded mapping that evicts the oldest inserted key when a new key
/// arrives at `maxsize` entries. Thread-safe; every operation is O(1).
#[pyclass(frozen, generic, subclass, weakref, module = "pepperpy_core._native")]
pub struct FIFOCache {
    maxsize: usize,
    inner: Exclusive<Inner>,
}

/// An optional argument that tells "not given" from an explicit None.
pub struct Given<'py>(Option<Bound<'py, PyAny>>);

impl<'a, 'py> FromPyObject<'a, 'py> for Given<'py> {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        Ok(Given(Some(obj.to_owned())))
    }
}

fn changed() -> PyErr {
    PyRuntimeError::new_err(format!(
        "FIFOCache changed during the operation: a key's __eq__ modified the cache \
         each time it was compared (gave up after {MAX_ROUNDS} tries)"
    ))
}

/// The type of `obj` if it is exactly str, int, float or bytes: two objects
/// of one such type compare in C code that cannot run Python, warn or fail.
fn plain_type(obj: &Bound<'_, PyAny>) -> Option<*mut ffi::PyTypeObject> {
    let ty = obj.get_type_ptr();
    // Only the addresses of the builtin type objects are taken, and compared.
    let plain = ty == &raw mut ffi::PyUnicode_Type
        || ty == &raw mut ffi::PyLong_Type
        || ty == &raw mut ffi::PyFloat_Type
        || ty == &raw mut ffi::PyBytes_Type;
    plain.then_some(ty)
}

/// `stored == key` for two objects of the same plain type, or None when it
/// must be left to a comparison outside the lock.
fn plain_eq(
    stored: &Py<PyAny>,
    key: &Bound<'_, PyAny>,
    ty: *mut ffi::PyTypeObject,
) -> Option<bool> {
    let stored = stored.bind(key.py());
    if stored.get_type_ptr() != ty {
        return None;
    }
    // SAFETY: both pointers are live objects of one of the four exact types
    // of `plain_type`, whose equality is C code that cannot fail; a result
    // of -1 (which would carry an error) is not trusted and is left to a
    // comparison outside the lock.
    match unsafe { ffi::PyObject_RichCompareBool(stored.as_ptr(), key.as_ptr(), ffi::Py_EQ) } {
        1 => Some(true),
        0 => Some(false),
        _ => None,
    }
}

fn hash_of(key: &Bound<'_, PyAny>) -> PyResult<u64> {
    // Reinterpreting the signed Python hash as unsigned keeps every bit.
    Ok(spread(key.hash()? as u64))
}

/// A (key, value) pair from any iterable of length two.
fn split_pair<'py>(pair: &Bound<'py, PyAny>) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    let bad_length =
        || PyValueError::new_err("set_many expects (key, value) pairs, got one of another length");
    if let Ok(tuple) = pair.cast::<PyTuple>() {
        return match tuple.len() {
            2 => Ok((tuple.get_item(0)?, tuple.get_item(1)?)),
            _ => Err(bad_length()),
        };
    }
    let item = pair.try_iter()?.collect::<PyResult<Vec<_>>>()?;
    let Ok::<[Bound<'py, PyAny>; 2], _>([key, value]) = item.try_into() else {
        return Err(bad_length());
    };
    Ok((key, value))
}

fn check_maxsize(maxsize: &Bound<'_, PyAny>) -> PyResult<usize> {
    if !maxsize.is_exact_instance_of::<PyInt>() {
        return Err(PyTypeError::new_err(format!(
            "maxsize must be an int, not {}",
            maxsize.get_type().name()?
        )));
    }
    match maxsize.extract::<i128>() {
        Ok(n) if n >= 1 && n <= MAX_ENTRIES as i128 => Ok(n as usize),
        Ok(n) if n < 1 => Err(PyValueError::new_err(format!(
            "maxsize must be at least 1, got {n}"
        ))),
        _ => Err(PyValueError::new_err(format!(
            "maxsize must be at most {MAX_ENTRIES}, got {maxsize}"
        ))),
    }
}

impl FIFOCache {
    /// Locks the table and finds `key` in it. References the search had to
    /// take go into `keep`, which the caller declares before the guard so that
    /// they are released after it.
    fn locate<'s>(
        &'s self,
        key: &Bound<'_, PyAny>,
        hash: u64,
        keep: &mut Vec<Py<PyAny>>,
    ) -> PyResult<(Guard<'s, Inner>, Option<u32>)> {
        let key_ptr = key.as_ptr();
        // Fast path: the stored key is the very object looked up (interned
        // strings, small ints, reused keys), or no other key has this hash.
        let guard = self.inner.lock(key.py())?;
        let mut other = false;
        let found = guard.table.find(hash, |stored| {
            let same = stored.as_ptr() == key_ptr;
            other |= !same;
            same
        });
        if found.is_some() || !other {
            return Ok((guard, found));
        }
        drop(guard);
        self.locate_by_eq(key, hash, keep)
    }

    /// The slow path of [`Self::locate`]: every key with this hash is
    /// compared once, in probe order; the verdicts are trusted when the table
    /// did not change while they were reached, and reused when it did.
    fn locate_by_eq<'s>(
        &'s self,
        key: &Bound<'_, PyAny>,
        hash: u64,
        keep: &mut Vec<Py<PyAny>>,
    ) -> PyResult<(Guard<'s, Inner>, Option<u32>)> {
        let py = key.py();
        let key_ptr = key.as_ptr();
        let plain = plain_type(key);
        // Stored key address -> whether it equals `key`. Every address here
        // belongs to a reference held in `keep`, so none is reused meanwhile.
        let mut verdicts: HashMap<usize, bool> = HashMap::new();
        for _ in 0..MAX_ROUNDS {
            let guard = self.inner.lock(py)?;
            let version = guard.table.version();
            let mut unknown: Vec<Py<PyAny>> = Vec::new();
            let found = guard.table.find(hash, |stored| {
                let ptr = stored.as_ptr();
                if ptr == key_ptr {
                    return true;
                }
                if let Some(&same) = verdicts.get(&(ptr as usize)) {
                    return same;
                }
                if let Some(same) = plain.and_then(|ty| plain_eq(stored, key, ty)) {
                    return same;
                }
                unknown.push(stored.clone_ref(py));
                false
            });
            if found.is_some() || unknown.is_empty() {
                keep.append(&mut unknown);
                return Ok((guard, found));
            }
            drop(guard);
            let mut equal = None;
            for stored in &unknown {
                // As a dict does: the stored key's __eq__ first.
                let same = stored.bind(py).eq(key)?;
                verdicts.insert(stored.as_ptr() as usize, same);
                if same {
                    equal = Some(stored.as_ptr());
                    break;
                }
            }
            keep.append(&mut unknown);
            let guard = self.inner.lock(py)?;
            if guard.table.version() == version {
                let found = equal.and_then(|ptr| guard.table.find(hash, |s| s.as_ptr() == ptr));
                return Ok((guard, found));
            }
            // The table changed while a key was compared: search again.
        }
        Err(changed())
    }

    fn lookup(&self, key: &Bound<'_, PyAny>) -> PyResult<Option<Py<PyAny>>> {
        let hash = hash_of(key)?;
        let mut keep = Vec::new();
        let (mut inner, found) = self.locate(key, hash, &mut keep)?;
        Ok(match found {
            Some(at) => {
                inner.hits += 1;
                Some(inner.table.value(at).clone_ref(key.py()))
            }
            None => {
                inner.misses += 1;
                None
            }
        })
    }

    fn insert(&self, key: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        self.insert_hashed(key, hash_of(key)?, value)
    }

    fn insert_hashed(
        &self,
        key: &Bound<'_, PyAny>,
        hash: u64,
        value: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let mut keep = Vec::new();
        let mut released: Option<Py<PyAny>> = None;
        let mut evicted: Option<(Py<PyAny>, Py<PyAny>)> = None;
        let (mut inner, found) = self.locate(key, hash, &mut keep)?;
        let value = value.clone().unbind();
        match found {
            Some(at) => released = Some(inner.table.replace(at, value)),
            None => {
                if inner.table.len() >= self.maxsize {
                    evicted = inner.table.pop_front();
                    inner.evictions += 1;
                }
                inner.table.push_back(hash, key.clone().unbind(), value);
                inner.inserts += 1;
            }
        }
        drop(inner);
        drop(released);
        drop(evicted);
        Ok(())
    }

    fn remove(&self, key: &Bound<'_, PyAny>) -> PyResult<Option<Py<PyAny>>> {
        let hash = hash_of(key)?;
        let mut keep = Vec::new();
        let (mut inner, found) = self.locate(key, hash, &mut keep)?;
        let removed = found.map(|at| inner.table.remove(at));
        drop(inner);
        Ok(removed.map(|(_key, value)| value))
    }

    fn snapshot<T>(
        &self,
        py: Python<'_>,
        each: impl Fn(&Py<PyAny>, &Py<PyAny>) -> T,
    ) -> PyResult<Vec<T>> {
        let inner = self.inner.lock(py)?;
        Ok(inner.table.iter().map(|(k, v)| each(k, v)).collect())
    }

    fn len(&self, py: Python<'_>) -> PyResult<usize> {
        Ok(self.inner.lock(py)?.table.len())
    }
}

#[pymethods]
impl FIFOCache {
    #[new]
    fn new(maxsize: &Bound<'_, PyAny>) -> PyResult<Self> {
        Ok(FIFOCache {
            maxsize: check_maxsize(maxsize)?,
            inner: Exclusive::new(Inner::default()),
        })
    }

    /// The most entries the cache holds.
    #[getter]
    fn maxsize(&self) -> usize {
        self.maxsize
    }

    fn __getitem__(&self, key: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        match self.lookup(key)? {
            Some(value) => Ok(value),
            None => Err(PyKeyError::new_err((key.clone().unbind(),))),
        }
    }

    /// Inserts or overwrites `key`; a new key at maxsize evicts the oldest.
    fn set(&self, key: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        self.insert(key, value)
    }

    fn __setitem__(&self, key: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        self.insert(key, value)
    }

    fn __delitem__(&self, key: &Bound<'_, PyAny>) -> PyResult<()> {
        match self.remove(key)? {
            Some(_) => Ok(()),
            None => Err(PyKeyError::new_err((key.clone().unbind(),))),
        }
    }

    fn __contains__(&self, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        let hash = hash_of(key)?;
        let mut keep = Vec::new();
        let (_inner, found) = self.locate(key, hash, &mut keep)?;
        Ok(found.is_some())
    }

    fn __len__(&self, py: Python<'_>) -> PyResult<usize> {
        self.len(py)
    }

    fn __iter__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let keys = PyList::new(py, self.snapshot(py, |k, _| k.clone_ref(py))?)?;
        Ok(keys.try_iter()?.into_any().unbind())
    }

    /// Removes `key` and returns its value; without a default a missing key
    /// is a KeyError.
    #[pyo3(signature = (key, default = Given(None)))]
    fn pop(&self, key: &Bound<'_, PyAny>, default: Given<'_>) -> PyResult<Py<PyAny>> {
        match (self.remove(key)?, default.0) {
            (Some(value), _) => Ok(value),
            (None, Some(default)) => Ok(default.unbind()),
            (None, None) => Err(PyKeyError::new_err((key.clone().unbind(),))),
        }
    }

    /// Removes every entry; the stats are kept.
    fn clear(&self, py: Python<'_>) -> PyResult<()> {
        let old = self.inner.lock(py)?.table.take();
        drop(old);
        Ok(())
    }

    /// The keys, oldest first (a snapshot).
    fn keys<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        PyList::new(py, self.snapshot(py, |k, _| k.clone_ref(py))?)
    }

    /// The values, oldest first (a snapshot).
    fn values<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        PyList::new(py, self.snapshot(py, |_, v| v.clone_ref(py))?)
    }

    /// The (key, value) pairs, oldest first (a snapshot).
    fn items<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let pairs = self.snapshot(py, |k, v| (k.clone_ref(py), v.clone_ref(py)))?;
        PyList::new(py, pairs)
    }

    /// Hits, misses, inserts and evictions so far.
    fn stats(&self, py: Python<'_>) -> PyResult<CacheStats> {
        let inner = self.inner.lock(py)?;
        Ok(CacheStats {
            hits: inner.hits,
            misses: inner.misses,
            inserts: inner.inserts,
            evictions: inner.evictions,
        })
    }

    /// The present keys among `keys` with their values; each key counts as a
    /// hit or a miss, and nothing is counted if a key fails to hash or compare.
    fn get_many<'py>(&self, keys: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyDict>> {
        let py = keys.py();
        let mut found = Vec::new();
        let mut keep = Vec::new();
        let (mut hits, mut misses) = (0u64, 0u64);
        for key in keys.try_iter()? {
            let key = key?;
            let hash = hash_of(&key)?;
            let (inner, at) = self.locate(&key, hash, &mut keep)?;
            match at {
                Some(at) => {
                    let value = inner.table.value(at).clone_ref(py);
                    drop(inner);
                    hits += 1;
                    found.push((key, value));
                }
                None => misses += 1,
            }
        }
        let out = PyDict::new(py);
        for (key, value) in found {
            out.set_item(key, value)?;
        }
        let mut inner = self.inner.lock(py)?;
        inner.hits += hits;
        inner.misses += misses;
        Ok(out)
    }

    /// Sets every pair of a mapping (through its `items()`, in its order) or
    /// of an iterable of pairs. Every pair is read and every key hashed
    /// first, so a bad pair or an unhashable key changes nothing.
    fn set_many(&self, items: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = items.py();
        let source = if items.cast::<PyMapping>().is_ok() {
            items.call_method0(intern!(py, "items"))?
        } else {
            items.clone()
        };
        let mut checked = Vec::new();
        for pair in source.try_iter()? {
            let (key, value) = split_pair(&pair?)?;
            let hash = hash_of(&key)?;
            checked.push((key, hash, value));
        }
        for (key, hash, value) in &checked {
            self.insert_hashed(key, *hash, value)?;
        }
        Ok(())
    }

    /// An independent cache of the same class, maxsize and entries in the
    /// same order, with fresh stats (for copy, deepcopy and pickle).
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyTuple>> {
        let py = slf.py();
        let items = slf.get().items(py)?;
        // A Python subclass's own attributes travel as the state.
        let state = slf
            .getattr(intern!(py, "__dict__"))
            .unwrap_or_else(|_| py.None().into_bound(py));
        PyTuple::new(
            py,
            [
                slf.get_type().into_any(),
                PyTuple::new(py, [slf.get().maxsize])?.into_any(),
                state,
                py.None().into_bound(py),
                items.try_iter()?.into_any(),
            ],
        )
    }

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        let py = slf.py();
        Ok(format!(
            "{}(maxsize={}, len={})",
            slf.get_type().name()?,
            slf.get().maxsize,
            slf.get().len(py)?
        ))
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        // The table is never held while Python code (and so the collector)
        // runs; try_lock only guards against a future change to that rule.
        // SAFETY: the collector calls __traverse__ with the GIL held.
        if let Some(inner) = unsafe { self.inner.try_lock_in_gc() } {
            for (key, value) in inner.table.iter() {
                visit.call(key)?;
                visit.call(value)?;
            }
        }
        Ok(())
    }

    fn __clear__(&self) {
        // SAFETY: the collector calls __clear__ with the GIL held.
        let taken = unsafe { self.inner.try_lock_in_gc() }.map(|mut inner| inner.table.take());
        drop(taken);
    }
}

/// `FIFOCache.get(key, default=None, /)`, a raw entry point: the read path of
/// a cache is one call, and PyO3's generic argument parsing was a third of
/// it (measured: 1.30x `dict.get` through PyO3, 0.97x this way).
unsafe extern "C" fn get(
    slf: *mut ffi::PyObject,
    args: *mut *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
) -> *mut ffi::PyObject {
    // SAFETY: CPython calls this as the METH_FASTCALL method it was installed
    // as on FIFOCache, so `slf` is a live FIFOCache (or subclass) instance
    // and `args` holds `nargs` live objects.
    unsafe {
        enter(|py| {
            if !(1..=2).contains(&nargs) {
                return Err(PyTypeError::new_err(format!(
                    "get expected 1 or 2 arguments, got {nargs}"
                )));
            }
            let slf = Bound::from_borrowed_ptr(py, slf);
            let cache = slf.cast_unchecked::<FIFOCache>().get();
            let key = Bound::from_borrowed_ptr(py, *args);
            Ok(match cache.lookup(&key)? {
                Some(value) => value,
                None if nargs == 2 => Bound::from_borrowed_ptr(py, *args.offset(1)).unbind(),
                None => py.None(),
            })
        })
    }
}

static GET: MethodDef = MethodDef::fastcall(
    c"get",
    c"get($self, key, default=None, /)\n--\n\n\
      The value of `key`, or `default`; counts a hit or a miss.",
    get,
);

/// Adds the raw methods to the class.
pub fn install_methods(py: Python<'_>) -> PyResult<()> {
    install(&py.get_type::<FIFOCache>(), &GET)
}
