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
//!
//! `__new__` takes any arguments and makes an empty cache whose maxsize is 0;
//! `__init__` sets it, once. So a subclass's `__init__` may take arguments
//! of its own, and copy and pickle rebuild a cache with `cls.__new__(cls)`
//! and `__setstate__` without calling it. Until `__init__` has run, reads see
//! an empty cache and writes raise TypeError.

use std::collections::HashMap;

use pyo3::exceptions::{PyAttributeError, PyKeyError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyInt, PyList, PyMapping, PyString, PyTuple};
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
    /// 0 until `__init__` has run.
    maxsize: usize,
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

fn not_initialized() -> PyErr {
    PyTypeError::new_err(
        "FIFOCache.__init__ was not called: a subclass's __init__ must call \
         super().__init__(maxsize) before the cache is written",
    )
}

fn initialized() -> PyErr {
    PyTypeError::new_err("FIFOCache.__init__ was already called: a cache's maxsize is set once")
}

const BAD_STATE: &str = "FIFOCache state must be a (maxsize, items, attributes, slots) tuple";

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
    match key.hash() {
        // Reinterpreting the signed Python hash as unsigned keeps every bit.
        Ok(hash) => Ok(spread(hash as u64)),
        Err(error) => Err(as_a_dict_says(key, error)),
    }
}

/// For a key of an unhashable type, the error a dict raises on this Python
/// (3.14 words it differently from `hash()`), so that both backends, and a
/// dict, say the same; any other error as it was.
fn as_a_dict_says(key: &Bound<'_, PyAny>, error: PyErr) -> PyErr {
    let py = key.py();
    let unhashable = key
        .get_type()
        .getattr(intern!(py, "__hash__"))
        .is_ok_and(|hash| hash.is_none());
    if unhashable {
        if let Err(said) = PyDict::new(py).contains(key) {
            return said;
        }
    }
    error
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

/// A pair to insert, its key hashed: (key, hash, value).
type Checked<'py> = (Bound<'py, PyAny>, u64, Bound<'py, PyAny>);

/// (key, hash, value) for every pair of a mapping (through its `items()`, in
/// its order) or of an iterable of pairs, every key hashed: a bad pair or an
/// unhashable key fails before anything changes.
fn checked_pairs<'py>(items: &Bound<'py, PyAny>) -> PyResult<Vec<Checked<'py>>> {
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
    Ok(checked)
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
        let maxsize = inner.maxsize;
        if maxsize == 0 {
            return Err(not_initialized());
        }
        let value = value.clone().unbind();
        match found {
            Some(at) => released = Some(inner.table.replace(at, value)),
            None => {
                if inner.table.len() >= maxsize {
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
        if inner.maxsize == 0 {
            return Err(not_initialized());
        }
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

    fn maxsize_now(&self, py: Python<'_>) -> PyResult<usize> {
        Ok(self.inner.lock(py)?.maxsize)
    }

    fn require_init(&self, py: Python<'_>) -> PyResult<()> {
        match self.maxsize_now(py)? {
            0 => Err(not_initialized()),
            _ => Ok(()),
        }
    }

    /// Sets the maxsize of a cache that has none yet.
    fn init(&self, maxsize: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = maxsize.py();
        if self.maxsize_now(py)? != 0 {
            return Err(initialized());
        }
        let checked = check_maxsize(maxsize)?;
        let mut inner = self.inner.lock(py)?;
        if inner.maxsize != 0 {
            return Err(initialized());
        }
        inner.maxsize = checked;
        Ok(())
    }
}

#[pymethods]
impl FIFOCache {
    /// An empty cache, maxsize 0 until `__init__` sets it (so a subclass's
    /// `__init__` may take any arguments).
    #[new]
    #[pyo3(signature = (*args, **kwargs))]
    fn new(args: &Bound<'_, PyTuple>, kwargs: Option<&Bound<'_, PyDict>>) -> Self {
        let _ = (args, kwargs);
        FIFOCache {
            inner: Exclusive::new(Inner::default()),
        }
    }

    /// Gives the cache its maxsize; once (TypeError after, nothing changed).
    fn __init__(&self, maxsize: &Bound<'_, PyAny>) -> PyResult<()> {
        self.init(maxsize)
    }

    /// The most entries the cache holds (0 until `__init__` has run).
    #[getter]
    fn maxsize(&self, py: Python<'_>) -> PyResult<usize> {
        self.maxsize_now(py)
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
        let mut inner = self.inner.lock(py)?;
        if inner.maxsize == 0 {
            return Err(not_initialized());
        }
        let old = inner.table.take();
        drop(inner);
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
        let checked = checked_pairs(items)?;
        self.require_init(items.py())?;
        for (key, hash, value) in &checked {
            self.insert_hashed(key, *hash, value)?;
        }
        Ok(())
    }

    /// `copyreg.__newobj__(cls)` then `__setstate__`: no subclass `__init__`
    /// runs. Keeps the maxsize, the entries in order and a subclass's
    /// attributes (`__dict__` and `__slots__`); stats start afresh (for copy,
    /// deepcopy and pickle). TypeError for a cache whose `__init__` never ran.
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyTuple>> {
        let py = slf.py();
        let cache = slf.get();
        let maxsize = cache.maxsize_now(py)?;
        if maxsize == 0 {
            return Err(not_initialized());
        }
        let attributes = present(py, slf.getattr(intern!(py, "__dict__")))?;
        let copyreg = py.import(intern!(py, "copyreg"))?;
        let slots = PyDict::new(py);
        let names = copyreg.call_method1(intern!(py, "_slotnames"), (slf.get_type(),))?;
        for name in names.try_iter()? {
            let name = name?.cast_into::<PyString>()?;
            if let Some(value) = present(py, slf.getattr(&name))? {
                slots.set_item(name, value)?;
            }
        }
        let state = PyTuple::new(
            py,
            [
                maxsize.into_pyobject(py)?.into_any(),
                cache.items(py)?.into_any(),
                attributes.unwrap_or_else(|| py.None().into_bound(py)),
                if slots.is_empty() {
                    py.None().into_bound(py)
                } else {
                    slots.into_any()
                },
            ],
        )?;
        PyTuple::new(
            py,
            [
                copyreg.getattr(intern!(py, "__newobj__"))?,
                PyTuple::new(py, [slf.get_type()])?.into_any(),
                state.into_any(),
            ],
        )
    }

    /// Fills a cache made by `cls.__new__(cls)` from `__reduce__`'s state.
    /// TypeError for a cache whose `__init__` ran and, with ValueError, for a
    /// malformed state; nothing changed then.
    fn __setstate__(slf: &Bound<'_, Self>, state: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let cache = slf.get();
        if cache.maxsize_now(py)? != 0 {
            return Err(initialized());
        }
        let state = match state.cast_exact::<PyTuple>() {
            Ok(state) if state.len() == 4 => state,
            _ => return Err(PyTypeError::new_err(BAD_STATE)),
        };
        let maxsize = state.get_item(0)?;
        check_maxsize(&maxsize)?;
        let pairs = checked_pairs(&state.get_item(1)?)?;
        let attributes = state.get_item(2)?;
        let slots = state.get_item(3)?;
        for (name, part) in [("attributes", &attributes), ("slots", &slots)] {
            if !part.is_none() && !part.is_exact_instance_of::<PyDict>() {
                return Err(PyTypeError::new_err(format!(
                    "{BAD_STATE}: {name} must be a dict or None"
                )));
            }
        }
        let dict = intern!(py, "__dict__");
        if attributes.is_truthy()? && !slf.hasattr(dict)? {
            return Err(PyTypeError::new_err(format!(
                "{BAD_STATE}: {} has no __dict__",
                slf.get_type().name()?
            )));
        }
        cache.init(&maxsize)?;
        for (key, hash, value) in &pairs {
            cache.insert_hashed(key, *hash, value)?;
        }
        if attributes.is_truthy()? {
            slf.getattr(dict)?
                .call_method1(intern!(py, "update"), (attributes,))?;
        }
        if let Ok(slots) = slots.cast::<PyDict>() {
            // A list of the pairs: a __setattr__ may change the dict.
            for pair in slots.items() {
                let (name, value) = pair.extract::<(Bound<'_, PyAny>, Bound<'_, PyAny>)>()?;
                slf.call_method1(intern!(py, "__setattr__"), (name, value))?;
            }
        }
        Ok(())
    }

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        let py = slf.py();
        Ok(format!(
            "{}(maxsize={}, len={})",
            slf.get_type().name()?,
            slf.get().maxsize_now(py)?,
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

/// The attribute `got` fetched, or None if there is no such attribute.
fn present<'py>(
    py: Python<'py>,
    got: PyResult<Bound<'py, PyAny>>,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    match got {
        Ok(value) => Ok(Some(value)),
        Err(error) if error.is_instance_of::<PyAttributeError>(py) => Ok(None),
        Err(error) => Err(error),
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
