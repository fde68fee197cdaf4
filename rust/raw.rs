//! Methods written as plain C entry points (`METH_FASTCALL`), and mapping
//! slots pointed at plain C functions, installed on a pyclass after PyO3 has
//! made it.
//!
//! Used only where a measured hot path needs it: a PyO3 method parses its
//! arguments generically, which for a call that is one lookup (a cache `get`,
//! a registry's `counter(name)`) costs as much as the lookup itself, and a
//! descriptor whose class is exactly the receiver's lets CPython take its
//! specialized call path. PyO3's slot trampolines are shared by every class
//! that has the slot, and once two classes share one it is no longer inlined
//! (measured: 36 to 50 more instructions per `cache[key]` or `key in cache`).
//! Every entry point goes through [`enter`] or [`enter_status`], so a panic
//! becomes a Python exception and never unwinds into the interpreter.

use std::cell::UnsafeCell;
use std::ffi::{c_int, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};

use pyo3::ffi;
use pyo3::panic::PanicException;
use pyo3::prelude::*;
use pyo3::types::PyType;

/// A `PyMethodDef` in a static, for [`install`].
pub struct MethodDef(UnsafeCell<ffi::PyMethodDef>);

// SAFETY: the definition is written once, when the static is built, and only
// read afterwards (CPython keeps the pointer and reads the fields).
unsafe impl Sync for MethodDef {}

impl MethodDef {
    /// `doc` starts with the signature line CPython turns into
    /// `__text_signature__`: `"name($self, ...)\n--\n\n..."`.
    pub const fn fastcall(
        name: &'static CStr,
        doc: &'static CStr,
        f: ffi::PyCFunctionFast,
    ) -> Self {
        MethodDef(UnsafeCell::new(ffi::PyMethodDef {
            ml_name: name.as_ptr(),
            ml_meth: ffi::PyMethodDefPointer { PyCFunctionFast: f },
            ml_flags: ffi::METH_FASTCALL,
            ml_doc: doc.as_ptr(),
        }))
    }

    /// As [`Self::fastcall`], for a method that takes keyword arguments.
    pub const fn fastcall_keywords(
        name: &'static CStr,
        doc: &'static CStr,
        f: ffi::PyCFunctionFastWithKeywords,
    ) -> Self {
        MethodDef(UnsafeCell::new(ffi::PyMethodDef {
            ml_name: name.as_ptr(),
            ml_meth: ffi::PyMethodDefPointer {
                PyCFunctionFastWithKeywords: f,
            },
            ml_flags: ffi::METH_FASTCALL | ffi::METH_KEYWORDS,
            ml_doc: doc.as_ptr(),
        }))
    }
}

/// The count of positional arguments in a vectorcall's `nargsf`: what the
/// C macro `PyVectorcall_NARGS` computes (the stable ABI of 3.11 has no such
/// function): the top bit, `PY_VECTORCALL_ARGUMENTS_OFFSET`, cleared.
pub const fn positional(nargsf: ffi::Py_ssize_t) -> isize {
    (nargsf as usize & !(1usize << (usize::BITS - 1))) as isize
}

/// Makes `def` a method of `ty`, replacing any attribute of that name.
pub fn install(ty: &Bound<'_, PyType>, def: &'static MethodDef) -> PyResult<()> {
    let py = ty.py();
    // SAFETY: `def` lives for the whole process (a static) and is never
    // written after it is built; `ty` is a live type object. The descriptor
    // only reads the definition.
    let descr = unsafe {
        let raw = ffi::PyDescr_NewMethod(ty.as_type_ptr(), def.0.get());
        Bound::from_owned_ptr_or_err(py, raw)?
    };
    // SAFETY: the name is a NUL-terminated static string (see MethodDef).
    let name = unsafe { CStr::from_ptr((*def.0.get()).ml_name) };
    ty.setattr(name.to_string_lossy().as_ref(), descr)
}

/// Runs the body of a raw entry point: its error becomes the raised
/// exception, a panic a PanicException, and NULL tells CPython either way.
///
/// # Safety
/// Called only from a C entry point that CPython invoked with the GIL held
/// (or, on free-threaded builds, with the thread attached).
pub unsafe fn enter(body: impl FnOnce(Python<'_>) -> PyResult<Py<PyAny>>) -> *mut ffi::PyObject {
    // SAFETY: the caller's contract (see above).
    unsafe {
        shield(
            |py| match body(py) {
                Ok(object) => object.into_ptr(),
                Err(error) => {
                    error.restore(py);
                    std::ptr::null_mut()
                }
            },
            std::ptr::null_mut(),
        )
    }
}

/// As [`enter`], for a slot that returns a status: the body's value, or -1
/// with the error (or a PanicException) raised.
///
/// # Safety
/// As [`enter`].
pub unsafe fn enter_status(body: impl FnOnce(Python<'_>) -> PyResult<c_int>) -> c_int {
    // SAFETY: the caller's contract (see above).
    unsafe {
        shield(
            |py| match body(py) {
                Ok(status) => status,
                Err(error) => {
                    error.restore(py);
                    -1
                }
            },
            -1,
        )
    }
}

/// Runs `body`, which hands back its raw result (a failure already raised);
/// a panic raises PanicException and gives `failed`. The raw result keeps
/// the unwinding boundary to one word: measured 10 ns cheaper per call than
/// moving a PyResult across it.
///
/// # Safety
/// As [`enter`].
#[inline(always)]
unsafe fn shield<T>(body: impl FnOnce(Python<'_>) -> T, failed: T) -> T {
    // SAFETY: the caller's contract (see `enter`).
    let py = unsafe { Python::assume_attached() };
    match catch_unwind(AssertUnwindSafe(|| body(py))) {
        Ok(raw) => raw,
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic in pepperpy_core._native".to_owned());
            PanicException::new_err(message).restore(py);
            failed
        }
    }
}

/// The mapping slots a class's `[key]`, `[key] = value`/`del [key]` and
/// `key in` reach, as plain C functions.
#[cfg_attr(Py_LIMITED_API, allow(dead_code))]
pub struct MappingSlots {
    pub subscript: ffi::binaryfunc,
    pub ass_subscript: ffi::objobjargproc,
    pub contains: ffi::objobjproc,
}

/// Points `ty`'s slots at `slots` (its `__getitem__`, `__setitem__`,
/// `__delitem__` and `__contains__` descriptors keep PyO3's functions, which
/// do the same). Subclasses made afterwards inherit them. The stable ABI
/// (abi3 builds) has no way to write a type's slots: there PyO3's stay.
#[cfg_attr(Py_LIMITED_API, allow(unused_variables))]
pub fn install_slots(ty: &Bound<'_, PyType>, slots: &MappingSlots) {
    #[cfg(not(Py_LIMITED_API))]
    // SAFETY: `ty` is a heap type PyO3 made with PyType_FromSpec, whose slot
    // tables are the type object's own memory (never null, never shared);
    // this runs at module initialization, before any instance or subclass
    // exists, and PyType_Modified drops what CPython cached about the type.
    unsafe {
        let raw = ty.as_type_ptr();
        let mapping = (*raw).tp_as_mapping;
        let sequence = (*raw).tp_as_sequence;
        if !mapping.is_null() && !sequence.is_null() {
            (*mapping).mp_subscript = Some(slots.subscript);
            (*mapping).mp_ass_subscript = Some(slots.ass_subscript);
            (*sequence).sq_contains = Some(slots.contains);
            ffi::PyType_Modified(raw);
        }
    }
}
