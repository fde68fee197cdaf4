//! `FIFOCache` and `S3FIFOCache`: the Python faces of
//! [`pepperpy_core_algo::policy::Cache`] with the [`Fifo`] and [`S3Fifo`]
//! policies. One generic core ([`Core`]) does the work; a macro makes each
//! class, which only forwards to it (PyO3 classes cannot be generic).
//!
//! The one rule that keeps it safe against hostile keys and values: no Python
//! code runs while the table is held (see [`crate::exclusive`]). Hashes are
//! taken before locking. A key found by identity needs no comparison; keys of
//! one exact builtin type (str, int, float, bytes) compare in C code that can
//! neither call Python nor warn, so they compare under the lock; any other
//! pair is compared with the lock released, and the search is trusted only if
//! the table's version did not move meanwhile (a policy moving entries between
//! its lists does not move it: keys and slots stay). References that leave the
//! table (evicted, overwritten, popped, cleared) are dropped after the lock is
//! released, so a `__del__` that touches the cache finds it consistent.
//!
//! Expiry (a time to live per cache or per write, a time to idle per cache)
//! keeps each entry's deadline beside the policy ([`Timers`] in the algo
//! crate), only once a cache has one. Then every operation reads the clock
//! once, before it locks the table (an injected clock is user code), and
//! removes whatever is due at that time before it does anything else; a
//! cache without expiry pays one flag test before the lock and one after.
//!
//! `__new__` takes any arguments and makes an empty cache whose maxsize is 0;
//! `__init__` sets it, once. So a subclass's `__init__` may take arguments
//! of its own, and copy and pickle rebuild a cache with `cls.__new__(cls)`
//! and `__setstate__` without calling it. Until `__init__` has run, reads see
//! an empty cache and writes raise TypeError.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

use pyo3::exceptions::{PyAttributeError, PyKeyError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::pyclass::boolean_struct::True;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyMapping, PyString, PyTuple};
use pyo3::{ffi, intern, PyClass, PyTraverseError, PyVisit};

use pepperpy_core_algo::expiry::Deadline;
use pepperpy_core_algo::policy::{Cache, Fifo, Policy, S3Fifo, S3Meta};
use pepperpy_core_algo::table::{spread, Meta, Table, MAX_ENTRIES};

use crate::exclusive::{Exclusive, Guard};
use crate::raw::{enter, enter_status, install, install_slots, MappingSlots, MethodDef};

/// How many times one lookup may find the table changed while it compared
/// keys with the lock released before it gives up with RuntimeError (only a
/// key whose `__eq__` keeps modifying the cache gets there).
pub const MAX_ROUNDS: usize = 100;

/// What the binding needs of a policy beyond the algorithm: the name its
/// class's messages use, and what a copy keeps of its state.
pub trait Kind: Policy + Send + 'static {
    /// The class, as error messages name it.
    const CLASS: &'static str;
    /// What `__setstate__` says of a malformed state.
    const BAD_STATE: &'static str;
    /// Whether the state carries a fifth part, the policy's:
    /// `(metas: bytes, flag: bool)`, one byte per item.
    const KEEPS_POLICY: bool;

    /// An entry's meta as the byte a copy keeps.
    fn bits(meta: Self::Meta) -> u8;
    /// The meta a kept byte stands for; None for a byte no meta has.
    fn meta(bits: u8) -> Option<Self::Meta>;
    /// The policy's own state a copy keeps.
    fn flag(&self) -> bool;
    /// Takes back what [`Kind::flag`] gave, in a cache rebuilt from a state.
    fn restore(&mut self, flag: bool);
}

impl Kind for Fifo {
    const CLASS: &'static str = "FIFOCache";
    const BAD_STATE: &'static str =
        "FIFOCache state must be a (maxsize, items, attributes, slots[, expiry]) tuple";
    const KEEPS_POLICY: bool = false;

    fn bits(_: ()) -> u8 {
        0
    }
    fn meta(bits: u8) -> Option<()> {
        (bits == 0).then_some(())
    }
    fn flag(&self) -> bool {
        false
    }
    fn restore(&mut self, _: bool) {}
}

impl Kind for S3Fifo {
    const CLASS: &'static str = "S3FIFOCache";
    const BAD_STATE: &'static str =
        "S3FIFOCache state must be a (maxsize, items, attributes, slots, policy[, expiry]) tuple";
    const KEEPS_POLICY: bool = true;

    fn bits(meta: S3Meta) -> u8 {
        meta.bits()
    }
    fn meta(bits: u8) -> Option<S3Meta> {
        S3Meta::from_bits(bits)
    }
    fn flag(&self) -> bool {
        self.evicted_once()
    }
    fn restore(&mut self, flag: bool) {
        // The ghost's hashes and the sketch's counts are not kept: str hashes
        // differ between processes.
        self.forget_ghost();
        self.forget_sketch();
        self.set_evicted_once(flag);
    }
}

type Entries<P> = Cache<Py<PyAny>, Py<PyAny>, P>;

struct Inner<P: Policy> {
    /// 0 until `__init__` has run.
    maxsize: usize,
    cache: Entries<P>,
    hits: u64,
    misses: u64,
    inserts: u64,
    evictions: u64,
    expirations: u64,
    /// The time to live of a write that names none, and the time to idle.
    ttl: Option<f64>,
    tti: Option<f64>,
    /// The clock given to `__init__` (None: the monotonic clock).
    clock: Option<Py<PyAny>>,
    /// Entries may have deadlines (a ttl or tti was given, or a write had
    /// one): every operation reads the clock. Never set back.
    timed: bool,
}

impl<P: Policy> Default for Inner<P> {
    fn default() -> Self {
        Inner {
            maxsize: 0,
            cache: Cache::new(),
            hits: 0,
            misses: 0,
            inserts: 0,
            evictions: 0,
            expirations: 0,
            ttl: None,
            tti: None,
            clock: None,
            timed: false,
        }
    }
}

impl<P: Policy> Inner<P> {
    /// The deadline of an entry `written` now.
    fn deadline(&self, written: Written) -> Deadline {
        let now = written.now;
        match written.left {
            Some(left) => Deadline {
                write: now + left.write,
                idle: now + left.idle,
            },
            None => Deadline {
                write: written.ttl.or(self.ttl).map_or(f64::INFINITY, |t| now + t),
                idle: self.tti.map_or(f64::INFINITY, |t| now + t),
            },
        }
    }

    /// Whether a copy must keep what the cache knows of time.
    fn keeps_expiry(&self) -> bool {
        self.timed || self.clock.is_some()
    }
}

/// A write of a cache that keeps deadlines: when, and what decides its
/// entry's deadline (its own ttl, else the cache's; `left`: what a copy kept).
#[derive(Clone, Copy)]
struct Written {
    now: f64,
    ttl: Option<f64>,
    left: Option<Deadline>,
}

/// What an expiring cache's settings and entries' time left are, as a state
/// keeps them: (ttl, tti, clock, per item None or (write, idle) seconds left).
type ExpiryPart = (
    Option<f64>,
    Option<f64>,
    Option<Py<PyAny>>,
    Vec<Option<Deadline>>,
);

/// The default clock: monotonic seconds since this process first asked.
fn monotonic() -> f64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_secs_f64()
}

/// `value` as an `f64` if it is an int (not a bool) or a float, read without
/// calling any method of its class (an int beyond a float's range is
/// infinite); None for anything else.
fn number(value: &Bound<'_, PyAny>) -> Option<f64> {
    if let Ok(float) = value.cast::<PyFloat>() {
        return Some(float.value());
    }
    if !value.is_instance_of::<PyInt>() || value.is_instance_of::<PyBool>() {
        return None;
    }
    // SAFETY: `value` is a live int; PyLong_AsDouble reads its digits (no
    // method of a subclass) and reports an overflow as an error, taken here.
    let got = unsafe { ffi::PyLong_AsDouble(value.as_ptr()) };
    if got == -1.0 {
        if let Some(error) = PyErr::take(value.py()) {
            drop(error);
            return Some(f64::INFINITY);
        }
    }
    Some(got)
}

/// `value` as seconds > 0, None kept (no limit): TypeError for what is not
/// a number, ValueError for one that is not finite and > 0.
fn check_seconds(value: Option<&Bound<'_, PyAny>>, what: &str) -> PyResult<Option<f64>> {
    let Some(value) = value.filter(|v| !v.is_none()) else {
        return Ok(None);
    };
    let Some(seconds) = number(value) else {
        return Err(PyTypeError::new_err(format!(
            "{what} must be a number of seconds or None, not {}",
            value.get_type().name()?
        )));
    };
    if !(seconds.is_finite() && seconds > 0.0) {
        return Err(PyValueError::new_err(format!(
            "{what} must be a finite number of seconds > 0, got {}",
            value.repr()?
        )));
    }
    Ok(Some(seconds))
}

/// `clock` if it is callable, None kept; TypeError otherwise.
fn check_clock<'py>(clock: Option<&Bound<'py, PyAny>>) -> PyResult<Option<Bound<'py, PyAny>>> {
    match clock.filter(|c| !c.is_none()) {
        None => Ok(None),
        Some(clock) if clock.is_callable() => Ok(Some(clock.clone())),
        Some(clock) => Err(PyTypeError::new_err(format!(
            "clock must be a callable returning seconds, or None, not {}",
            clock.get_type().name()?
        ))),
    }
}

/// What a clock returned, as seconds; TypeError for anything but a finite number.
fn reading(value: &Bound<'_, PyAny>) -> PyResult<f64> {
    match number(value) {
        Some(seconds) if seconds.is_finite() => Ok(seconds),
        Some(_) => Err(PyTypeError::new_err(format!(
            "clock() must return a finite number of seconds, got {}",
            value.repr()?
        ))),
        None => Err(PyTypeError::new_err(format!(
            "clock() must return a number of seconds, not {}",
            value.get_type().name()?
        ))),
    }
}

/// Releases what left the table (after its guard), as `Bound`s (see [`Core::locate`]).
fn release(py: Python<'_>, gone: Vec<(Py<PyAny>, Py<PyAny>)>) {
    for (key, value) in gone {
        drop((key.into_bound(py), value.into_bound(py)));
    }
}

/// Counters of a cache since it was made: reads that hit or missed, new keys
/// inserted, keys evicted to make room and entries removed as expired.
#[pyclass(frozen, eq, hash, get_all, module = "pepperpy_core._native")]
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CacheStats {
    hits: u64,
    misses: u64,
    inserts: u64,
    evictions: u64,
    expirations: u64,
}

#[pymethods]
impl CacheStats {
    #[new]
    #[pyo3(signature = (*, hits, misses, inserts, evictions, expirations = 0))]
    fn new(hits: u64, misses: u64, inserts: u64, evictions: u64, expirations: u64) -> Self {
        CacheStats {
            hits,
            misses,
            inserts,
            evictions,
            expirations,
        }
    }

    fn __repr__(&self) -> String {
        format!(
            "CacheStats(hits={}, misses={}, inserts={}, evictions={}, expirations={})",
            self.hits, self.misses, self.inserts, self.evictions, self.expirations
        )
    }
}

/// An optional argument that tells "not given" from an explicit None.
pub struct Given<'py>(Option<Bound<'py, PyAny>>);

impl<'a, 'py> FromPyObject<'a, 'py> for Given<'py> {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        Ok(Given(Some(obj.to_owned())))
    }
}

fn not_initialized(class: &str) -> PyErr {
    PyTypeError::new_err(format!(
        "{class}.__init__ was not called: a subclass's __init__ must call \
         super().__init__(maxsize) before the cache is written"
    ))
}

fn initialized(class: &str) -> PyErr {
    PyTypeError::new_err(format!(
        "{class}.__init__ was already called: a cache's maxsize is set once"
    ))
}

fn changed(class: &str) -> PyErr {
    PyRuntimeError::new_err(format!(
        "{class} changed during the operation: a key's __eq__ modified the cache \
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

/// The metas of a state's policy part `(metas: bytes, flag: bool)` for
/// `count` items, and the flag; TypeError or ValueError when malformed.
fn policy_part<P: Kind>(part: &Bound<'_, PyAny>, count: usize) -> PyResult<(Vec<P::Meta>, bool)> {
    let bad = |why: &str| PyTypeError::new_err(format!("{}: {why}", P::BAD_STATE));
    let part = match part.cast_exact::<PyTuple>() {
        Ok(part) if part.len() == 2 => part,
        _ => return Err(bad("policy must be a (bytes, bool) tuple")),
    };
    let (metas, flag) = (part.get_item(0)?, part.get_item(1)?);
    let (Ok(metas), Ok(flag)) = (metas.cast_exact::<PyBytes>(), flag.cast_exact::<PyBool>()) else {
        return Err(bad("policy must be a (bytes, bool) tuple"));
    };
    let bytes = metas.as_bytes();
    if bytes.len() != count {
        return Err(PyValueError::new_err(format!(
            "{}: policy has {} entries for {count} items",
            P::BAD_STATE,
            bytes.len()
        )));
    }
    let metas = bytes
        .iter()
        .map(|&b| P::meta(b))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| {
            PyValueError::new_err(format!("{}: policy has a bad entry", P::BAD_STATE))
        })?;
    Ok((metas, flag.is_true()))
}

/// The settings and each item's time left of a state's expiry part
/// `(ttl, tti, clock, left)`, `left` a list of None or (write, idle)
/// seconds (> 0, infinite for none) per item; TypeError or ValueError when malformed.
fn expiry_part(part: &Bound<'_, PyAny>, count: usize, bad_state: &str) -> PyResult<ExpiryPart> {
    let bad = || {
        PyTypeError::new_err(format!(
            "{bad_state}: expiry must be a (ttl, tti, clock, left) tuple"
        ))
    };
    let part = match part.cast_exact::<PyTuple>() {
        Ok(part) if part.len() == 4 => part,
        _ => return Err(bad()),
    };
    let ttl = check_seconds(Some(&part.get_item(0)?), "ttl")?;
    let tti = check_seconds(Some(&part.get_item(1)?), "tti")?;
    let clock = check_clock(Some(&part.get_item(2)?))?.map(Bound::unbind);
    let left = part.get_item(3)?;
    let Ok(left) = left.cast_exact::<PyList>() else {
        return Err(bad());
    };
    if left.len() != count {
        return Err(PyValueError::new_err(format!(
            "{bad_state}: expiry has {} entries for {count} items",
            left.len()
        )));
    }
    let entry = |item: Bound<'_, PyAny>| -> Option<Option<Deadline>> {
        if item.is_none() {
            return Some(None);
        }
        let pair = item.cast_exact::<PyTuple>().ok().filter(|p| p.len() == 2)?;
        let seconds = |i: usize| -> Option<f64> {
            let got = pair.get_item(i).ok()?;
            let got = got.cast_exact::<PyFloat>().ok()?.value();
            (got > 0.0).then_some(got)
        };
        Some(Some(Deadline {
            write: seconds(0)?,
            idle: seconds(1)?,
        }))
    };
    let left = left
        .iter()
        .map(entry)
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| PyValueError::new_err(format!("{bad_state}: expiry has a bad entry")))?;
    Ok((ttl, tti, clock, left))
}

/// A dict of the pairs. One function for every class, so that its loop has
/// one copy, with PyO3's `set_item` inlined in it.
#[inline(never)]
fn dict_of<'py>(
    py: Python<'py>,
    pairs: Vec<(Bound<'py, PyAny>, Py<PyAny>)>,
) -> PyResult<Bound<'py, PyDict>> {
    let out = PyDict::new(py);
    for (key, value) in pairs {
        out.set_item(key, value)?;
    }
    Ok(out)
}

/// The table locked, and the slot of the key looked for if it is there.
type Located<'s, P> = (Guard<'s, Inner<P>>, Option<u32>);

/// An entry `get_many` found, to use once every key is found: its slot, what
/// the slot kept of when the entry was stored, and the write whose deadline
/// it had (None: no deadline).
struct Found<P: Policy> {
    at: u32,
    born: <P::Meta as Meta>::Born,
    stamp: Option<u64>,
}

/// A write's slot, the value it replaced and the entry it evicted.
type Stored = (u32, Option<Py<PyAny>>, Option<(Py<PyAny>, Py<PyAny>)>);

/// The state both cache classes share; every method of theirs is one of its.
pub struct Core<P: Kind> {
    inner: Exclusive<Inner<P>>,
    /// `Inner::timed`, read before locking to know whether to read the clock.
    timed: AtomicBool,
    /// Whether `__init__` was given a clock (else the monotonic one is read
    /// without locking to find out).
    clocked: AtomicBool,
}

impl<P: Kind> Default for Core<P> {
    fn default() -> Self {
        Core {
            inner: Exclusive::new(Inner::default()),
            timed: AtomicBool::new(false),
            clocked: AtomicBool::new(false),
        }
    }
}

impl<P: Kind> Core<P> {
    /// Locks the table and finds `key` in it. References the search had to
    /// take go into `keep`, which the caller declares before the guard so that
    /// they are released after it.
    ///
    /// Every reference a core method lets go of is a `Bound` when it does
    /// (or moves out to the caller): dropping a `Py` in a raw entry point,
    /// where PyO3 does not know the thread is attached, would queue the
    /// decref (and a value's `__del__`) until PyO3's next call.
    fn locate<'s, 'py>(
        &'s self,
        key: &Bound<'py, PyAny>,
        hash: u64,
        keep: &mut Vec<Bound<'py, PyAny>>,
    ) -> PyResult<Located<'s, P>> {
        // Never None without TIMED_BAILS; a clear error, not a panic, if it were.
        self.locate_unless::<false>(key, hash, keep)?
            .ok_or_else(|| changed(P::CLASS))
    }

    /// [`Self::locate`]; with `TIMED_BAILS`, None (and no key compared) in
    /// a cache that keeps deadlines, whose operation must read the clock
    /// first. One test under the lock: what a cache without expiry pays.
    #[inline(always)]
    fn locate_unless<'s, 'py, const TIMED_BAILS: bool>(
        &'s self,
        key: &Bound<'py, PyAny>,
        hash: u64,
        keep: &mut Vec<Bound<'py, PyAny>>,
    ) -> PyResult<Option<Located<'s, P>>> {
        let key_ptr = key.as_ptr();
        // Fast path: the stored key is the very object looked up (interned
        // strings, small ints, reused keys), or no other key has this hash.
        let guard = self.inner.lock(key.py())?;
        if TIMED_BAILS && guard.timed {
            return Ok(None);
        }
        let mut other = false;
        let found = guard.cache.table().find(hash, |stored| {
            let same = stored.as_ptr() == key_ptr;
            other |= !same;
            same
        });
        if found.is_some() || !other {
            return Ok(Some((guard, found)));
        }
        drop(guard);
        let (guard, found) = self.locate_by_eq(key, hash, keep)?;
        if TIMED_BAILS && guard.timed {
            return Ok(None); // made timed while keys were compared
        }
        Ok(Some((guard, found)))
    }

    /// The slow path of [`Self::locate`]: every key with this hash is
    /// compared once, in probe order; the verdicts are trusted when the table
    /// did not change while they were reached, and reused when it did.
    fn locate_by_eq<'s, 'py>(
        &'s self,
        key: &Bound<'py, PyAny>,
        hash: u64,
        keep: &mut Vec<Bound<'py, PyAny>>,
    ) -> PyResult<(Guard<'s, Inner<P>>, Option<u32>)> {
        let py = key.py();
        let key_ptr = key.as_ptr();
        let plain = plain_type(key);
        // Stored key address -> whether it equals `key`. Every address here
        // belongs to a reference held in `keep`, so none is reused meanwhile.
        let mut verdicts: HashMap<usize, bool> = HashMap::new();
        for _ in 0..MAX_ROUNDS {
            let guard = self.inner.lock(py)?;
            let table = guard.cache.table();
            let version = table.version();
            let mut unknown: Vec<Bound<'py, PyAny>> = Vec::new();
            let found = table.find(hash, |stored| {
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
                unknown.push(stored.bind(py).clone());
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
                let same = stored.eq(key)?;
                verdicts.insert(stored.as_ptr() as usize, same);
                if same {
                    equal = Some(stored.as_ptr());
                    break;
                }
            }
            keep.append(&mut unknown);
            let guard = self.inner.lock(py)?;
            let table = guard.cache.table();
            if table.version() == version {
                let found = equal.and_then(|ptr| table.find(hash, |s| s.as_ptr() == ptr));
                return Ok((guard, found));
            }
            // The table changed while a key was compared: search again.
        }
        Err(changed(P::CLASS))
    }

    /// The time of an operation: None when the cache keeps no deadlines and
    /// `wanted` is false. Read before the table is locked (a clock given to
    /// `__init__` is user code); the flag is only a hint: an operation
    /// that finds the table timed under the lock without a time reads it then.
    #[inline(always)]
    fn now(&self, py: Python<'_>, wanted: bool) -> PyResult<Option<f64>> {
        if !wanted && !self.timed.load(Ordering::Relaxed) {
            return Ok(None);
        }
        self.read_clock(py).map(Some)
    }

    /// The clock's reading, with the table released while a given clock runs.
    #[inline(never)]
    fn read_clock(&self, py: Python<'_>) -> PyResult<f64> {
        if !self.clocked.load(Ordering::Relaxed) {
            return Ok(monotonic());
        }
        let clock = self.inner.lock(py)?.clock.as_ref().map(|c| c.clone_ref(py));
        match clock {
            None => Ok(monotonic()),
            Some(clock) => reading(&clock.into_bound(py).call0()?),
        }
    }

    /// Under the lock, with the operation's time: removes every entry due at
    /// `now` into `gone` and returns `found` unless it was one of them.
    fn expire(
        inner: &mut Inner<P>,
        now: f64,
        found: Option<u32>,
        gone: &mut Vec<(Py<PyAny>, Py<PyAny>)>,
    ) -> Option<u32> {
        let found = found.filter(|&at| !inner.cache.deadline(at).is_some_and(|d| d.due(now)));
        inner.expirations += inner.cache.expire(now, gone) as u64;
        found
    }

    /// Locks the table, first removing what is due (into `gone`) at the
    /// operation's time, which it returns (`now`, or read if the table proves timed).
    fn lock_expired<'s>(
        &'s self,
        py: Python<'_>,
        now: Option<f64>,
        gone: &mut Vec<(Py<PyAny>, Py<PyAny>)>,
    ) -> PyResult<(Guard<'s, Inner<P>>, Option<f64>)> {
        let mut inner = self.inner.lock(py)?;
        let now = match now {
            Some(now) => now,
            None if inner.timed => {
                drop(inner);
                let now = self.read_clock(py)?;
                inner = self.inner.lock(py)?;
                now
            }
            None => return Ok((inner, None)),
        };
        Self::expire(&mut inner, now, None, gone);
        Ok((inner, Some(now)))
    }

    /// The value of `key` (a use of it), counting a hit or a miss.
    #[inline]
    fn lookup(&self, key: &Bound<'_, PyAny>) -> PyResult<Option<Py<PyAny>>> {
        let hash = hash_of(key)?;
        let mut keep = Vec::new();
        let Some((mut inner, found)) = self.locate_unless::<true>(key, hash, &mut keep)? else {
            return self.lookup_timed(key, hash);
        };
        Ok(match found {
            Some(at) => {
                inner.hits += 1;
                Some(inner.cache.hit(at).clone_ref(key.py()))
            }
            None => {
                inner.misses += 1;
                None
            }
        })
    }

    /// [`Self::lookup`] in a cache that keeps deadlines: an entry due is a
    /// miss (and an expiration); a hit moves the entry's idle deadline.
    #[inline(never)]
    fn lookup_timed(&self, key: &Bound<'_, PyAny>, hash: u64) -> PyResult<Option<Py<PyAny>>> {
        let py = key.py();
        let now = self.read_clock(py)?;
        let mut keep = Vec::new();
        let mut gone = Vec::new();
        let (mut inner, found) = self.locate(key, hash, &mut keep)?;
        let found = Self::expire(&mut inner, now, found, &mut gone);
        let value = match found {
            Some(at) => {
                inner.hits += 1;
                let value = inner.cache.hit(at).clone_ref(py);
                if let Some(tti) = inner.tti {
                    inner.cache.touch(at, now + tti);
                }
                Some(value)
            }
            None => {
                inner.misses += 1;
                None
            }
        };
        drop(inner);
        release(py, gone);
        Ok(value)
    }

    #[inline]
    fn insert(
        &self,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
        ttl: Option<f64>,
    ) -> PyResult<()> {
        let hash = hash_of(key)?;
        // Without a ttl of its own, the write learns under the lock whether
        // the cache keeps deadlines (see insert_hashed).
        let written = match ttl {
            Some(_) => Some(Written {
                now: self.read_clock(key.py())?,
                ttl,
                left: None,
            }),
            None => None,
        };
        self.insert_hashed(key, hash, value, None, written)
    }

    /// Sets `key`; with `place`, the entry then moves to the back of that
    /// meta's list with it (a copy being rebuilt). `written`: the time of the
    /// write and what decides its deadline, for a cache that keeps them.
    fn insert_hashed(
        &self,
        key: &Bound<'_, PyAny>,
        hash: u64,
        value: &Bound<'_, PyAny>,
        place: Option<P::Meta>,
        written: Option<Written>,
    ) -> PyResult<()> {
        if let Some(written) = written {
            return self.insert_timed(key, hash, value, place, written);
        }
        let py = key.py();
        let mut keep = Vec::new();
        let Some((mut inner, found)) = self.locate_unless::<true>(key, hash, &mut keep)? else {
            // The cache keeps deadlines: the write reads the clock first.
            let written = Written {
                now: self.read_clock(py)?,
                ttl: None,
                left: None,
            };
            return self.insert_timed(key, hash, value, place, written);
        };
        let (_, released, evicted) = Self::store(&mut inner, key, hash, value, found, place)?;
        drop(inner);
        drop(released.map(|value| value.into_bound(py)));
        drop(evicted.map(|(key, value)| (key.into_bound(py), value.into_bound(py))));
        Ok(())
    }

    /// [`Self::insert_hashed`] in a cache that keeps deadlines (or a write
    /// that brings one): what is due leaves first, and the entry gets its own.
    #[inline(never)]
    fn insert_timed(
        &self,
        key: &Bound<'_, PyAny>,
        hash: u64,
        value: &Bound<'_, PyAny>,
        place: Option<P::Meta>,
        written: Written,
    ) -> PyResult<()> {
        let py = key.py();
        let mut keep = Vec::new();
        let mut gone = Vec::new();
        let (mut inner, found) = self.locate(key, hash, &mut keep)?;
        if inner.maxsize == 0 {
            return Err(not_initialized(P::CLASS));
        }
        let found = Self::expire(&mut inner, written.now, found, &mut gone);
        let (at, released, evicted) = Self::store(&mut inner, key, hash, value, found, place)?;
        let deadline = inner.deadline(written);
        inner.cache.set_deadline(at, deadline);
        if inner.cache.timed() && !inner.timed {
            inner.timed = true;
            self.timed.store(true, Ordering::Relaxed);
        }
        drop(inner);
        drop(released.map(|value| value.into_bound(py)));
        drop(evicted.map(|(key, value)| (key.into_bound(py), value.into_bound(py))));
        release(py, gone);
        Ok(())
    }

    /// Under the lock: overwrites the entry `found`, or inserts `key` (a
    /// full table evicts one first), then places it (a copy being rebuilt).
    /// Its slot, and what left the table, for the caller to release after the lock.
    #[inline(always)]
    fn store(
        inner: &mut Inner<P>,
        key: &Bound<'_, PyAny>,
        hash: u64,
        value: &Bound<'_, PyAny>,
        found: Option<u32>,
        place: Option<P::Meta>,
    ) -> PyResult<Stored> {
        let maxsize = inner.maxsize;
        if maxsize == 0 {
            return Err(not_initialized(P::CLASS));
        }
        let value = value.clone().unbind();
        let mut released = None;
        let mut evicted = None;
        let at = match found {
            Some(at) => {
                released = Some(inner.cache.overwrite(at, value));
                at
            }
            None => {
                let (at, gone) = inner
                    .cache
                    .insert(hash, key.clone().unbind(), value, maxsize);
                if gone.is_some() {
                    inner.evictions += 1;
                    evicted = gone;
                }
                inner.inserts += 1;
                at
            }
        };
        if let Some(meta) = place {
            inner.cache.place(at, meta);
        }
        Ok((at, released, evicted))
    }

    fn remove<'py>(&self, key: &Bound<'py, PyAny>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let py = key.py();
        let hash = hash_of(key)?;
        let mut now = self.now(py, false)?;
        let mut keep = Vec::new();
        let mut gone = Vec::new();
        let (mut inner, found) = loop {
            let (inner, found) = self.locate(key, hash, &mut keep)?;
            if now.is_some() || !inner.timed {
                break (inner, found);
            }
            drop(inner);
            now = Some(self.read_clock(py)?);
        };
        if inner.maxsize == 0 {
            return Err(not_initialized(P::CLASS));
        }
        let found = match now {
            Some(now) => Self::expire(&mut inner, now, found, &mut gone),
            None => found,
        };
        let removed = found.map(|at| inner.cache.remove(at));
        drop(inner);
        release(py, gone);
        Ok(removed.map(|(stored, value)| {
            drop(stored.into_bound(py));
            value.into_bound(py)
        }))
    }

    fn snapshot<T>(
        &self,
        py: Python<'_>,
        each: impl Fn(&Py<PyAny>, &Py<PyAny>, P::Meta) -> T,
    ) -> PyResult<Vec<T>> {
        let now = self.now(py, false)?;
        let mut gone = Vec::new();
        let (inner, _) = self.lock_expired(py, now, &mut gone)?;
        let out = inner
            .cache
            .table()
            .iter()
            .map(|(k, v, m)| each(k, v, m))
            .collect();
        drop(inner);
        release(py, gone);
        Ok(out)
    }

    fn len(&self, py: Python<'_>) -> PyResult<usize> {
        let now = self.now(py, false)?;
        let mut gone = Vec::new();
        let len = self.lock_expired(py, now, &mut gone)?.0.cache.len();
        release(py, gone);
        Ok(len)
    }

    fn maxsize(&self, py: Python<'_>) -> PyResult<usize> {
        Ok(self.inner.lock(py)?.maxsize)
    }

    fn require_init(&self, py: Python<'_>) -> PyResult<()> {
        match self.maxsize(py)? {
            0 => Err(not_initialized(P::CLASS)),
            _ => Ok(()),
        }
    }

    /// Sets the maxsize, and what decides entries' deadlines, of a cache
    /// that has none yet (TypeError or ValueError, nothing changed, otherwise).
    fn init(
        &self,
        maxsize: &Bound<'_, PyAny>,
        ttl: Option<&Bound<'_, PyAny>>,
        tti: Option<&Bound<'_, PyAny>>,
        clock: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let py = maxsize.py();
        if self.maxsize(py)? != 0 {
            return Err(initialized(P::CLASS));
        }
        let checked = check_maxsize(maxsize)?;
        let ttl = check_seconds(ttl, "ttl")?;
        let tti = check_seconds(tti, "tti")?;
        let clock = check_clock(clock)?.map(Bound::unbind);
        self.init_checked(py, checked, ttl, tti, clock)
    }

    fn init_checked(
        &self,
        py: Python<'_>,
        maxsize: usize,
        ttl: Option<f64>,
        tti: Option<f64>,
        clock: Option<Py<PyAny>>,
    ) -> PyResult<()> {
        let mut inner = self.inner.lock(py)?;
        if inner.maxsize != 0 {
            drop(inner);
            drop(clock.map(|clock| clock.into_bound(py)));
            return Err(initialized(P::CLASS));
        }
        inner.maxsize = maxsize;
        inner.ttl = ttl;
        inner.tti = tti;
        self.clocked.store(clock.is_some(), Ordering::Relaxed);
        inner.clock = clock;
        if ttl.is_some() || tti.is_some() {
            inner.timed = true;
            self.timed.store(true, Ordering::Relaxed);
        }
        Ok(())
    }

    #[inline]
    fn getitem(&self, key: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        match self.lookup(key)? {
            Some(value) => Ok(value),
            None => Err(PyKeyError::new_err((key.clone().unbind(),))),
        }
    }

    #[inline]
    fn delitem(&self, key: &Bound<'_, PyAny>) -> PyResult<()> {
        match self.remove(key)? {
            Some(_) => Ok(()),
            None => Err(PyKeyError::new_err((key.clone().unbind(),))),
        }
    }

    #[inline]
    fn contains(&self, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        let hash = hash_of(key)?;
        let mut keep = Vec::new();
        match self.locate_unless::<true>(key, hash, &mut keep)? {
            Some((_inner, found)) => Ok(found.is_some()),
            None => self.contains_timed(key, hash),
        }
    }

    #[inline(never)]
    fn contains_timed(&self, key: &Bound<'_, PyAny>, hash: u64) -> PyResult<bool> {
        let py = key.py();
        let now = self.read_clock(py)?;
        let mut keep = Vec::new();
        let mut gone = Vec::new();
        let (mut inner, found) = self.locate(key, hash, &mut keep)?;
        let found = Self::expire(&mut inner, now, found, &mut gone);
        drop(inner);
        release(py, gone);
        Ok(found.is_some())
    }

    fn pop(&self, key: &Bound<'_, PyAny>, default: Given<'_>) -> PyResult<Py<PyAny>> {
        match (self.remove(key)?, default.0) {
            (Some(value), _) => Ok(value.unbind()),
            (None, Some(default)) => Ok(default.unbind()),
            (None, None) => Err(PyKeyError::new_err((key.clone().unbind(),))),
        }
    }

    fn clear(&self, py: Python<'_>) -> PyResult<()> {
        let mut inner = self.inner.lock(py)?;
        if inner.maxsize == 0 {
            return Err(not_initialized(P::CLASS));
        }
        let old = inner.cache.take();
        drop(inner);
        drop(old);
        Ok(())
    }

    fn keys<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        PyList::new(py, self.snapshot(py, |k, _, _| k.clone_ref(py))?)
    }

    fn values<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        PyList::new(py, self.snapshot(py, |_, v, _| v.clone_ref(py))?)
    }

    fn items<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let pairs = self.snapshot(py, |k, v, _| (k.clone_ref(py), v.clone_ref(py)))?;
        PyList::new(py, pairs)
    }

    fn stats(&self, py: Python<'_>) -> PyResult<CacheStats> {
        let now = self.now(py, false)?;
        let mut gone = Vec::new();
        let (inner, _) = self.lock_expired(py, now, &mut gone)?;
        let stats = CacheStats {
            hits: inner.hits,
            misses: inner.misses,
            inserts: inner.inserts,
            evictions: inner.evictions,
            expirations: inner.expirations,
        };
        drop(inner);
        release(py, gone);
        Ok(stats)
    }

    /// The present keys among `keys` with their values, in two phases so
    /// that a key that fails to hash or compare (or an iterable that raises)
    /// changes nothing but what time removed: first every key is found, all
    /// user code runs and the result is built, with no use made of what is
    /// found; then, under the lock once, each entry found is used (a hit:
    /// S3-FIFO's freq, the idle deadline) and the hits and misses are
    /// counted. The lock is let go between the phases, so an entry found may
    /// have left meanwhile, its slot perhaps taken by another: its
    /// [`Found::born`] tells, and its use is then nothing. Its idle deadline
    /// moves only if no write gave it a later one since ([`Found::stamp`]).
    fn get_many<'py>(&self, keys: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyDict>> {
        let py = keys.py();
        let mut now = self.now(py, false)?;
        let mut found = Vec::new();
        let mut uses: Vec<Found<P>> = Vec::new();
        let mut keep = Vec::new();
        let mut gone = Vec::new();
        let mut misses = 0u64;
        for key in keys.try_iter()? {
            let key = key?;
            let hash = hash_of(&key)?;
            let (mut inner, at) = loop {
                let (inner, at) = self.locate(&key, hash, &mut keep)?;
                if now.is_some() || !inner.timed {
                    break (inner, at);
                }
                drop(inner);
                now = Some(self.read_clock(py)?);
            };
            let at = match now {
                Some(now) => Self::expire(&mut inner, now, at, &mut gone),
                None => at,
            };
            match at.and_then(|at| Some((at, inner.cache.born(at)?))) {
                Some((at, born)) => {
                    let value = inner.cache.table().value(at).clone_ref(py);
                    uses.push(Found {
                        at,
                        born,
                        stamp: inner.cache.stamp(at),
                    });
                    drop(inner);
                    found.push((key, value));
                }
                None => misses += 1,
            }
        }
        release(py, gone);
        let out = dict_of(py, found)?;
        let mut inner = self.inner.lock(py)?;
        let idle = now.zip(inner.tti).map(|(now, tti)| now + tti);
        for found in &uses {
            inner.cache.hit_if(found.at, found.born);
            if let (Some(idle), Some(stamp)) = (idle, found.stamp) {
                inner.cache.touch_if(found.at, stamp, idle);
            }
        }
        inner.hits += uses.len() as u64;
        inner.misses += misses;
        Ok(out)
    }

    fn set_many(&self, items: &Bound<'_, PyAny>, ttl: Option<f64>) -> PyResult<()> {
        let py = items.py();
        let checked = checked_pairs(items)?;
        self.require_init(py)?;
        self.compare_first(py, &checked)?;
        let now = self.now(py, ttl.is_some())?;
        for (key, hash, value) in &checked {
            let written = now.map(|now| Written {
                now,
                ttl,
                left: None,
            });
            self.insert_hashed(key, *hash, value, None, written)?;
        }
        Ok(())
    }

    /// Before `set_many` writes: every comparison its writes run Python code
    /// for, each key with the stored keys of its hash and the keys given with
    /// one another, so that one that raises fails with nothing written. Which
    /// keys meet a stored key that only Python compares is found under the
    /// lock once (what a plain batch pays); those are compared with it
    /// released. (A key compared again by a write may still raise there if
    /// its `__eq__` answers differently, or if the cache changed meanwhile.)
    fn compare_first(&self, py: Python<'_>, checked: &[Checked<'_>]) -> PyResult<()> {
        let mut odd = false;
        let mut compare = Vec::new();
        {
            let inner = self.inner.lock(py)?;
            let table = inner.cache.table();
            for (i, (key, hash, _)) in checked.iter().enumerate() {
                let plain = plain_type(key);
                odd |= plain.is_none();
                let key_ptr = key.as_ptr();
                let mut unknown = false;
                let found = table.find(*hash, |stored| {
                    if stored.as_ptr() == key_ptr {
                        return true;
                    }
                    let same = plain.and_then(|ty| plain_eq(stored, key, ty));
                    unknown |= same.is_none();
                    same == Some(true)
                });
                if found.is_none() && unknown {
                    compare.push(i);
                }
            }
        }
        let mut keep = Vec::new();
        for i in compare {
            let (key, hash, _) = &checked[i];
            drop(self.locate(key, *hash, &mut keep)?);
        }
        if odd {
            let given = PyDict::new(py);
            for (key, _, _) in checked {
                given.set_item(key, py.None())?;
            }
        }
        Ok(())
    }

    /// `(maxsize, items, attributes, slots[, policy][, expiry])` of
    /// [`reduce`]: the items, the policy's part and the expiry part (for a
    /// cache that keeps one: its settings and each item's time left) from
    /// one look at the table, taken once what is due has left.
    fn state<'py>(&self, py: Python<'py>) -> PyResult<State<'py>> {
        let now = self.now(py, false)?;
        let mut gone = Vec::new();
        let (maxsize, entries, flag, expiry) = {
            let (inner, now) = self.lock_expired(py, now, &mut gone)?;
            let cache = &inner.cache;
            let entries: Vec<_> = cache
                .table()
                .iter()
                .map(|(k, v, m)| (k.clone_ref(py), v.clone_ref(py), P::bits(m)))
                .collect();
            let expiry: Option<ExpiryPart> = inner.keeps_expiry().then(|| {
                // An entry has a deadline only in a timed cache, so `now` is known.
                let now = now.unwrap_or(0.0);
                let left = cache
                    .table()
                    .slots()
                    .map(|at| {
                        let deadline = cache.deadline(at)?;
                        Some(Deadline {
                            write: deadline.write - now,
                            idle: deadline.idle - now,
                        })
                    })
                    .collect();
                let clock = inner.clock.as_ref().map(|c| c.clone_ref(py));
                (inner.ttl, inner.tti, clock, left)
            });
            (inner.maxsize, entries, cache.policy().flag(), expiry)
        };
        release(py, gone);
        if maxsize == 0 {
            return Err(not_initialized(P::CLASS));
        }
        let bits: Vec<u8> = entries.iter().map(|e| e.2).collect();
        let items = PyList::new(py, entries.into_iter().map(|(k, v, _)| (k, v)))?;
        let policy = (PyBytes::new(py, &bits), flag)
            .into_pyobject(py)?
            .into_any();
        let expiry = match expiry {
            None => None,
            Some((ttl, tti, clock, left)) => {
                let left = left
                    .into_iter()
                    .map(|l| l.map(|l| (l.write, l.idle)))
                    .collect::<Vec<_>>();
                Some((ttl, tti, clock, left).into_pyobject(py)?.into_any())
            }
        };
        Ok((maxsize, items, policy, expiry))
    }

    /// Rebuilds the entries, the policy's state and the entries' deadlines
    /// from a checked state; `now` is the time the deadlines are counted
    /// from (the items' `left`, one per item, is what a copy kept).
    fn restore(
        &self,
        py: Python<'_>,
        pairs: &[Checked<'_>],
        metas: Option<(Vec<P::Meta>, bool)>,
        left: Option<(f64, Vec<Option<Deadline>>)>,
    ) -> PyResult<()> {
        let written = |i: usize| {
            left.as_ref().map(|(now, left)| Written {
                now: *now,
                ttl: None,
                left: Some(left[i].unwrap_or(Deadline::NEVER)),
            })
        };
        let Some((metas, flag)) = metas else {
            for (i, (key, hash, value)) in pairs.iter().enumerate() {
                self.insert_hashed(key, *hash, value, None, written(i))?;
            }
            return Ok(());
        };
        for (i, ((key, hash, value), meta)) in pairs.iter().zip(metas).enumerate() {
            self.insert_hashed(key, *hash, value, Some(meta), written(i))?;
        }
        self.inner.lock(py)?.cache.policy_mut().restore(flag);
        Ok(())
    }

    fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        // The table is never held while Python code (and so the collector)
        // runs; try_lock only guards against a future change to that rule.
        // SAFETY: the collector calls __traverse__ with the GIL held.
        if let Some(inner) = unsafe { self.inner.try_lock_in_gc() } {
            for (key, value, _) in inner.cache.table().iter() {
                visit.call(key)?;
                visit.call(value)?;
            }
            if let Some(clock) = &inner.clock {
                visit.call(clock)?;
            }
        }
        Ok(())
    }

    fn clear_in_gc(&self) {
        // SAFETY: the collector calls __clear__ with the GIL held.
        let taken: Option<(Table<_, _, _>, Option<Py<PyAny>>)> =
            unsafe { self.inner.try_lock_in_gc() }
                .map(|mut inner| (inner.cache.take(), inner.clock.take()));
        drop(taken);
    }
}

/// What [`Core::state`] gives [`reduce`]: maxsize, items, the policy's part
/// and, for a cache that keeps one, the expiry part.
type State<'py> = (
    usize,
    Bound<'py, PyList>,
    Bound<'py, PyAny>,
    Option<Bound<'py, PyAny>>,
);

/// A pyclass made by [`cache_class!`]: its core, whatever the policy.
pub trait CacheClass: PyClass<Frozen = True> + Sync {
    type Policy: Kind;
    fn core(&self) -> &Core<Self::Policy>;
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

/// `copyreg.__newobj__(cls)` then `__setstate__`, for any cache class.
fn reduce<'py, C: CacheClass>(cache: &Bound<'py, C>) -> PyResult<Bound<'py, PyTuple>> {
    let py = cache.py();
    let (maxsize, items, policy, expiry) = cache.get().core().state(py)?;
    let slf = cache.as_any();
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
    let mut parts = vec![
        maxsize.into_pyobject(py)?.into_any(),
        items.into_any(),
        attributes.unwrap_or_else(|| py.None().into_bound(py)),
        if slots.is_empty() {
            py.None().into_bound(py)
        } else {
            slots.into_any()
        },
    ];
    if C::Policy::KEEPS_POLICY {
        parts.push(policy);
    }
    parts.extend(expiry);
    let state = PyTuple::new(py, parts)?;
    PyTuple::new(
        py,
        [
            copyreg.getattr(intern!(py, "__newobj__"))?,
            PyTuple::new(py, [slf.get_type()])?.into_any(),
            state.into_any(),
        ],
    )
}

/// Fills a cache made by `cls.__new__(cls)` from [`reduce`]'s state.
fn setstate<C: CacheClass>(cache: &Bound<'_, C>, state: &Bound<'_, PyAny>) -> PyResult<()> {
    let py = cache.py();
    let core = cache.get().core();
    let slf = cache.as_any();
    let bad_state = C::Policy::BAD_STATE;
    if core.maxsize(py)? != 0 {
        return Err(initialized(C::Policy::CLASS));
    }
    let parts = 4 + usize::from(C::Policy::KEEPS_POLICY);
    let state = match state.cast_exact::<PyTuple>() {
        Ok(state) if state.len() == parts || state.len() == parts + 1 => state,
        _ => return Err(PyTypeError::new_err(bad_state)),
    };
    let maxsize = state.get_item(0)?;
    check_maxsize(&maxsize)?;
    let pairs = checked_pairs(&state.get_item(1)?)?;
    let attributes = state.get_item(2)?;
    let slots = state.get_item(3)?;
    for (name, part) in [("attributes", &attributes), ("slots", &slots)] {
        if !part.is_none() && !part.is_exact_instance_of::<PyDict>() {
            return Err(PyTypeError::new_err(format!(
                "{bad_state}: {name} must be a dict or None"
            )));
        }
    }
    let metas = match C::Policy::KEEPS_POLICY {
        true => Some(policy_part::<C::Policy>(&state.get_item(4)?, pairs.len())?),
        false => None,
    };
    let expiry = match state.len() > parts {
        true => Some(expiry_part(
            &state.get_item(parts)?,
            pairs.len(),
            bad_state,
        )?),
        false => None,
    };
    let dict = intern!(py, "__dict__");
    if attributes.is_truthy()? && !slf.hasattr(dict)? {
        return Err(PyTypeError::new_err(format!(
            "{bad_state}: {} has no __dict__",
            slf.get_type().name()?
        )));
    }
    let (ttl, tti, clock, left) = expiry.unwrap_or((None, None, None, Vec::new()));
    // Time left is counted from now, read before anything changes.
    let left = match ttl.is_some() || tti.is_some() || left.iter().any(Option::is_some) {
        true => {
            let now = match &clock {
                Some(clock) => reading(&clock.bind(py).call0()?)?,
                None => monotonic(),
            };
            Some((now, left))
        }
        false => None,
    };
    core.init_checked(py, check_maxsize(&maxsize)?, ttl, tti, clock)?;
    core.restore(py, &pairs, metas, left)?;
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

fn repr<C: CacheClass>(cache: &Bound<'_, C>) -> PyResult<String> {
    let py = cache.py();
    let core = cache.get().core();
    Ok(format!(
        "{}(maxsize={}, len={})",
        cache.as_any().get_type().name()?,
        core.maxsize(py)?,
        core.len(py)?
    ))
}

/// `get(key, default=None, /)`, a raw entry point: the read path of a cache
/// is one call, and PyO3's generic argument parsing was a third of it
/// (measured: 1.30x `dict.get` through PyO3, 0.97x this way).
///
/// # Safety
/// Installed (by [`install_methods`]) as a METH_FASTCALL method of `C` only.
unsafe extern "C" fn get<C: CacheClass>(
    slf: *mut ffi::PyObject,
    args: *mut *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
) -> *mut ffi::PyObject {
    // SAFETY: CPython calls this as the METH_FASTCALL method it was installed
    // as on `C`, so `slf` is a live `C` (or subclass) instance and `args`
    // holds `nargs` live objects.
    unsafe {
        enter(|py| {
            if !(1..=2).contains(&nargs) {
                return Err(PyTypeError::new_err(format!(
                    "get expected 1 or 2 arguments, got {nargs}"
                )));
            }
            let slf = Bound::from_borrowed_ptr(py, slf);
            let core = slf.cast_unchecked::<C>().get().core();
            let key = Bound::from_borrowed_ptr(py, *args);
            Ok(match core.lookup(&key)? {
                Some(value) => value,
                None if nargs == 2 => Bound::from_borrowed_ptr(py, *args.offset(1)).unbind(),
                None => py.None(),
            })
        })
    }
}

/// `cache[key]`, the mapping slot, raw (see [`crate::raw`]).
///
/// # Safety
/// Installed (by [`install_methods`]) as the mp_subscript slot of `C` only.
unsafe extern "C" fn subscript<C: CacheClass>(
    slf: *mut ffi::PyObject,
    key: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython calls the slot of a `C` (or subclass) instance with a
    // live key.
    unsafe {
        enter(|py| {
            let slf = Bound::from_borrowed_ptr(py, slf);
            let core = slf.cast_unchecked::<C>().get().core();
            core.getitem(&Bound::from_borrowed_ptr(py, key))
        })
    }
}

/// `cache[key] = value` and (`value` null) `del cache[key]`, raw.
///
/// # Safety
/// Installed (by [`install_methods`]) as the mp_ass_subscript slot of `C` only.
unsafe extern "C" fn ass_subscript<C: CacheClass>(
    slf: *mut ffi::PyObject,
    key: *mut ffi::PyObject,
    value: *mut ffi::PyObject,
) -> std::ffi::c_int {
    // SAFETY: CPython calls the slot of a `C` (or subclass) instance with a
    // live key and a live value or null.
    unsafe {
        enter_status(|py| {
            let slf = Bound::from_borrowed_ptr(py, slf);
            let core = slf.cast_unchecked::<C>().get().core();
            let key = Bound::from_borrowed_ptr(py, key);
            match value.is_null() {
                true => core.delitem(&key)?,
                false => core.insert(&key, &Bound::from_borrowed_ptr(py, value), None)?,
            }
            Ok(0)
        })
    }
}

/// `key in cache`, raw.
///
/// # Safety
/// Installed (by [`install_methods`]) as the sq_contains slot of `C` only.
unsafe extern "C" fn contains<C: CacheClass>(
    slf: *mut ffi::PyObject,
    key: *mut ffi::PyObject,
) -> std::ffi::c_int {
    // SAFETY: CPython calls the slot of a `C` (or subclass) instance with a
    // live key.
    unsafe {
        enter_status(|py| {
            let slf = Bound::from_borrowed_ptr(py, slf);
            let core = slf.cast_unchecked::<C>().get().core();
            Ok(core.contains(&Bound::from_borrowed_ptr(py, key))?.into())
        })
    }
}

/// A cache class over `Core<$policy>`: the methods forward to the core.
macro_rules! cache_class {
    ($(#[$doc:meta])* $name:ident, $policy:ty, $get:ident) => {
        $(#[$doc])*
        #[pyclass(frozen, generic, subclass, weakref, module = "pepperpy_core._native")]
        pub struct $name {
            core: Core<$policy>,
        }

        impl CacheClass for $name {
            type Policy = $policy;

            #[inline(always)]
            fn core(&self) -> &Core<$policy> {
                &self.core
            }
        }

        impl $name {
            const SLOTS: MappingSlots = MappingSlots {
                subscript: subscript::<$name>,
                ass_subscript: ass_subscript::<$name>,
                contains: contains::<$name>,
            };
        }

        static $get: MethodDef = MethodDef::fastcall(
            c"get",
            c"get($self, key, default=None, /)\n--\n\n\
              The value of `key`, or `default`; counts a hit or a miss.",
            get::<$name>,
        );

        #[pymethods]
        impl $name {
            /// An empty cache, maxsize 0 until `__init__` sets it (so a
            /// subclass's `__init__` may take any arguments).
            #[new]
            #[pyo3(signature = (*args, **kwargs))]
            fn new(args: &Bound<'_, PyTuple>, kwargs: Option<&Bound<'_, PyDict>>) -> Self {
                let _ = (args, kwargs);
                $name {
                    core: Core::default(),
                }
            }

            /// Gives the cache its maxsize and what decides entries'
            /// deadlines; once (TypeError after, nothing changed).
            #[pyo3(signature = (maxsize, *, ttl = None, tti = None, clock = None))]
            fn __init__(
                &self,
                maxsize: &Bound<'_, PyAny>,
                ttl: Option<&Bound<'_, PyAny>>,
                tti: Option<&Bound<'_, PyAny>>,
                clock: Option<&Bound<'_, PyAny>>,
            ) -> PyResult<()> {
                self.core.init(maxsize, ttl, tti, clock)
            }

            /// The most entries the cache holds (0 until `__init__` has run).
            #[getter]
            fn maxsize(&self, py: Python<'_>) -> PyResult<usize> {
                self.core.maxsize(py)
            }

            fn __getitem__(&self, key: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
                self.core.getitem(key)
            }

            /// Inserts or overwrites `key`; a new key at maxsize evicts one.
            /// `ttl`: this entry's time to live instead of the cache's.
            #[pyo3(signature = (key, value, *, ttl = None))]
            fn set(
                &self,
                key: &Bound<'_, PyAny>,
                value: &Bound<'_, PyAny>,
                ttl: Option<&Bound<'_, PyAny>>,
            ) -> PyResult<()> {
                let ttl = check_seconds(ttl, "ttl")?;
                self.core.insert(key, value, ttl)
            }

            fn __setitem__(
                &self,
                key: &Bound<'_, PyAny>,
                value: &Bound<'_, PyAny>,
            ) -> PyResult<()> {
                self.core.insert(key, value, None)
            }

            fn __delitem__(&self, key: &Bound<'_, PyAny>) -> PyResult<()> {
                self.core.delitem(key)
            }

            fn __contains__(&self, key: &Bound<'_, PyAny>) -> PyResult<bool> {
                self.core.contains(key)
            }

            fn __len__(&self, py: Python<'_>) -> PyResult<usize> {
                self.core.len(py)
            }

            fn __iter__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
                Ok(self.core.keys(py)?.try_iter()?.into_any().unbind())
            }

            /// Removes `key` and returns its value; without a default a
            /// missing key is a KeyError.
            #[pyo3(signature = (key, default = Given(None)))]
            fn pop(&self, key: &Bound<'_, PyAny>, default: Given<'_>) -> PyResult<Py<PyAny>> {
                self.core.pop(key, default)
            }

            /// Removes every entry; the stats are kept.
            fn clear(&self, py: Python<'_>) -> PyResult<()> {
                self.core.clear(py)
            }

            /// The keys, in the policy's order (a snapshot).
            fn keys<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
                self.core.keys(py)
            }

            /// The values, in the policy's order (a snapshot).
            fn values<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
                self.core.values(py)
            }

            /// The (key, value) pairs, in the policy's order (a snapshot).
            fn items<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
                self.core.items(py)
            }

            /// Hits, misses, inserts, evictions and expirations so far.
            fn stats(&self, py: Python<'_>) -> PyResult<CacheStats> {
                self.core.stats(py)
            }

            /// The present keys among `keys` with their values; each key
            /// counts as a hit or a miss. Every key is found before any is
            /// used, so a key that fails to hash or compare, or an iterable
            /// that raises, changes nothing but what expired by time.
            fn get_many<'py>(&self, keys: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyDict>> {
                self.core.get_many(keys)
            }

            /// Sets every pair of a mapping (through its `items()`, in its
            /// order) or of an iterable of pairs, each with `ttl` if given.
            /// Every pair is read, every key hashed and compared first, so a
            /// bad pair, an unhashable key or one whose `__eq__` raises
            /// changes nothing.
            #[pyo3(signature = (items, *, ttl = None))]
            fn set_many(
                &self,
                items: &Bound<'_, PyAny>,
                ttl: Option<&Bound<'_, PyAny>>,
            ) -> PyResult<()> {
                let ttl = check_seconds(ttl, "ttl")?;
                self.core.set_many(items, ttl)
            }

            /// `copyreg.__newobj__(cls)` then `__setstate__`: no subclass
            /// `__init__` runs. Keeps the maxsize, the entries in order (and
            /// what the policy knows of them) and a subclass's attributes
            /// (`__dict__` and `__slots__`); stats start afresh (for copy,
            /// deepcopy and pickle). TypeError for a cache whose `__init__`
            /// never ran.
            fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyTuple>> {
                reduce(slf)
            }

            /// Fills a cache made by `cls.__new__(cls)` from `__reduce__`'s
            /// state. TypeError for a cache whose `__init__` ran and, with
            /// ValueError, for a malformed state; nothing changed then.
            fn __setstate__(slf: &Bound<'_, Self>, state: &Bound<'_, PyAny>) -> PyResult<()> {
                setstate(slf, state)
            }

            fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
                repr(slf)
            }

            fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
                self.core.traverse(&visit)
            }

            fn __clear__(&self) {
                self.core.clear_in_gc()
            }
        }
    };
}

cache_class!(
    /// A bounded mapping that evicts the oldest inserted key when a new key
    /// arrives at `maxsize` entries. Thread-safe; every operation is O(1).
    FIFOCache,
    Fifo,
    FIFO_GET
);

cache_class!(
    /// A bounded mapping that evicts by S3-FIFO: new keys enter a small FIFO,
    /// keys read there move to a main FIFO, which keeps keys while they are
    /// read; a ghost of recently evicted keys' hashes readmits them to main
    /// when a frequency sketch (TinyLFU's) counts them more often than main's
    /// victim. Thread-safe; every operation is O(1), eviction amortized.
    S3FIFOCache,
    S3Fifo,
    S3FIFO_GET
);

/// Adds the raw methods and slots to the classes.
pub fn install_methods(py: Python<'_>) -> PyResult<()> {
    install(&py.get_type::<FIFOCache>(), &FIFO_GET)?;
    install_slots(&py.get_type::<FIFOCache>(), &FIFOCache::SLOTS);
    install(&py.get_type::<S3FIFOCache>(), &S3FIFO_GET)?;
    install_slots(&py.get_type::<S3FIFOCache>(), &S3FIFOCache::SLOTS);
    Ok(())
}
