//! `FIFOCache`: the Python face of [`crate::fifo::Fifo`].
//!
//! The one rule that keeps it safe against hostile keys and values: no Python
//! code runs while the lock is held. Hashes are taken before locking; a key
//! comparison that may run Python code (`__eq__` of a user class) is made with
//! the lock released and the lookup is then redone; references that leave the
//! table (evicted, overwritten, popped, cleared) are dropped only after the
//! lock is released, so a `__del__` that touches the cache finds it unlocked
//! and consistent.

use pyo3::exceptions::{PyKeyError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use pyo3::{PyTraverseError, PyVisit};

use crate::fifo::{spread, Fifo, MAX_ENTRIES};
use crate::lock::{TableGuard, TableLock};

/// How many times one lookup may find the table changed under a key
/// comparison before it gives up with RuntimeError (only a key whose `__eq__`
/// keeps mutating the cache gets there).
const MAX_ROUNDS: usize = 100;

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
#[pyclass(frozen, generic, module = "pepperpy_core._native")]
pub struct FIFOCache {
    maxsize: usize,
    inner: TableLock<Inner>,
}

/// Exact builtins whose `==` is C code that cannot call back into Python, so
/// they can be compared while the lock is held.
fn is_plain(obj: &Bound<'_, PyAny>) -> bool {
    obj.is_exact_instance_of::<PyString>()
        || obj.is_exact_instance_of::<PyInt>()
        || obj.is_exact_instance_of::<PyFloat>()
        || obj.is_exact_instance_of::<PyBytes>()
        || obj.is_exact_instance_of::<PyBool>()
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
    ) -> PyResult<(TableGuard<'s, Inner>, Option<u32>)> {
        let key_ptr = key.as_ptr();
        // Fast path: the stored key is the very object looked up (interned
        // strings, small ints, reused keys), or no key has this hash.
        let guard = self.inner.lock(key.py());
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

    /// The slow path of [`Self::locate`]: keys with this hash that are other
    /// objects are compared with `==`, under the lock when that is C code,
    /// else with the lock released and the search redone.
    fn locate_by_eq<'s>(
        &'s self,
        key: &Bound<'_, PyAny>,
        hash: u64,
        keep: &mut Vec<Py<PyAny>>,
    ) -> PyResult<(TableGuard<'s, Inner>, Option<u32>)> {
        let py = key.py();
        let key_ptr = key.as_ptr();
        let plain = is_plain(key);
        let mut equal = std::ptr::null_mut();
        let mut unequal = Vec::new();
        for _ in 0..MAX_ROUNDS {
            let guard = self.inner.lock(py);
            let mut pending = None;
            let found = guard.table.find(hash, |stored| {
                let ptr = stored.as_ptr();
                if ptr == key_ptr || ptr == equal {
                    return true;
                }
                if unequal.contains(&ptr) {
                    return false;
                }
                let stored = stored.bind(py);
                if plain && is_plain(stored) {
                    if let Ok(same) = stored.eq(key) {
                        return same;
                    }
                }
                if pending.is_none() {
                    pending = Some(stored.clone().unbind());
                }
                false
            });
            match (found, pending) {
                (Some(at), pending) => {
                    keep.extend(pending);
                    return Ok((guard, Some(at)));
                }
                (None, None) => return Ok((guard, None)),
                (None, Some(stored)) => {
                    drop(guard);
                    // The stored key stays alive in `keep`, so its address
                    // cannot be reused by another object during the search.
                    let same = stored.bind(py).eq(key);
                    let ptr = stored.as_ptr();
                    keep.push(stored);
                    if same? {
                        equal = ptr;
                    } else {
                        unequal.push(ptr);
                    }
                }
            }
        }
        Err(PyRuntimeError::new_err(
            "FIFOCache changed during every comparison of a key; a key's __eq__ keeps mutating the cache",
        ))
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

    fn snapshot<T>(&self, py: Python<'_>, each: impl Fn(&Py<PyAny>, &Py<PyAny>) -> T) -> Vec<T> {
        let inner = self.inner.lock(py);
        inner.table.iter().map(|(k, v)| each(k, v)).collect()
    }
}

#[pymethods]
impl FIFOCache {
    #[new]
    fn new(maxsize: &Bound<'_, PyAny>) -> PyResult<Self> {
        Ok(FIFOCache {
            maxsize: check_maxsize(maxsize)?,
            inner: TableLock::new(Inner::default()),
        })
    }

    /// The most entries the cache holds.
    #[getter]
    fn maxsize(&self) -> usize {
        self.maxsize
    }

    #[pyo3(signature = (key, default=None))]
    fn get(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        default: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        Ok(match self.lookup(key)? {
            Some(value) => value,
            None => default.unwrap_or_else(|| py.None()),
        })
    }

    fn __getitem__(&self, key: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        match self.lookup(key)? {
            Some(value) => Ok(value),
            None => Err(PyKeyError::new_err(key.clone().unbind())),
        }
    }

    fn set(&self, key: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        self.insert(key, value)
    }

    fn __setitem__(&self, key: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        self.insert(key, value)
    }

    fn __delitem__(&self, key: &Bound<'_, PyAny>) -> PyResult<()> {
        match self.remove(key)? {
            Some(_) => Ok(()),
            None => Err(PyKeyError::new_err(key.clone().unbind())),
        }
    }

    fn __contains__(&self, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        let hash = hash_of(key)?;
        let mut keep = Vec::new();
        let (_inner, found) = self.locate(key, hash, &mut keep)?;
        Ok(found.is_some())
    }

    fn __len__(&self, py: Python<'_>) -> usize {
        self.inner.lock(py).table.len()
    }

    fn __iter__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let keys = PyList::new(py, self.snapshot(py, |k, _| k.clone_ref(py)))?;
        Ok(keys.try_iter()?.into_any().unbind())
    }

    /// Removes `key` and returns its value; without a default a missing key
    /// is a KeyError.
    #[pyo3(signature = (key, *default))]
    fn pop(&self, key: &Bound<'_, PyAny>, default: &Bound<'_, PyTuple>) -> PyResult<Py<PyAny>> {
        if default.len() > 1 {
            return Err(PyTypeError::new_err(format!(
                "pop expected at most 2 arguments, got {}",
                default.len() + 1
            )));
        }
        match self.remove(key)? {
            Some(value) => Ok(value),
            None if default.len() == 1 => Ok(default.get_item(0)?.unbind()),
            None => Err(PyKeyError::new_err(key.clone().unbind())),
        }
    }

    /// Removes every entry; the stats are kept.
    fn clear(&self, py: Python<'_>) {
        let old = self.inner.lock(py).table.take();
        drop(old);
    }

    fn keys<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        PyList::new(py, self.snapshot(py, |k, _| k.clone_ref(py)))
    }

    fn values<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        PyList::new(py, self.snapshot(py, |_, v| v.clone_ref(py)))
    }

    fn items<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let pairs = self.snapshot(py, |k, v| (k.clone_ref(py), v.clone_ref(py)));
        PyList::new(py, pairs)
    }

    fn stats(&self, py: Python<'_>) -> CacheStats {
        let inner = self.inner.lock(py);
        CacheStats {
            hits: inner.hits,
            misses: inner.misses,
            inserts: inner.inserts,
            evictions: inner.evictions,
        }
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
        let mut inner = self.inner.lock(py);
        inner.hits += hits;
        inner.misses += misses;
        Ok(out)
    }

    /// Sets every pair of a mapping or an iterable of pairs, in order. Every
    /// key is hashed first, so an unhashable key changes nothing.
    fn set_many(&self, items: &Bound<'_, PyAny>) -> PyResult<()> {
        let mut checked = Vec::new();
        if let Ok(dict) = items.cast::<PyDict>() {
            for (key, value) in dict.iter() {
                let hash = hash_of(&key)?;
                checked.push((key, hash, value));
            }
        } else {
            for pair in items.try_iter()? {
                let (key, value) = split_pair(&pair?)?;
                let hash = hash_of(&key)?;
                checked.push((key, hash, value));
            }
        }
        for (key, hash, value) in &checked {
            self.insert_hashed(key, *hash, value)?;
        }
        Ok(())
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "FIFOCache(maxsize={}, len={})",
            self.maxsize,
            self.__len__(py)
        )
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
        // The collector may run while this thread holds the table (it can only
        // start inside a C comparison that failed and built an exception): then
        // leave the entries for a later pass rather than lock twice.
        // SAFETY: the collector calls __clear__ with the GIL held.
        let taken = unsafe { self.inner.try_lock_in_gc() }.map(|mut inner| inner.table.take());
        drop(taken);
    }
}
