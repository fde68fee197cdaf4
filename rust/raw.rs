//! Methods written as plain C entry points (`METH_FASTCALL`), installed on a
//! pyclass after PyO3 has made it.
//!
//! Used only where a measured hot path needs it: a PyO3 method parses its
//! arguments generically, which for a call that is one lookup (a cache `get`,
//! a registry's `counter(name)`) costs as much as the lookup itself, and a
//! descriptor whose class is exactly the receiver's lets CPython take its
//! specialized call path. Every entry point goes through [`enter`], so a
//! panic becomes a Python exception and never unwinds into the interpreter.

use std::cell::UnsafeCell;
use std::ffi::CStr;
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
    let py = unsafe { Python::assume_attached() };
    // The closure hands back a bare pointer (a failure already raised), so
    // the unwinding boundary moves one word: measured 10 ns cheaper per
    // call than moving a PyResult across it.
    let guarded = catch_unwind(AssertUnwindSafe(|| match body(py) {
        Ok(object) => object.into_ptr(),
        Err(error) => {
            error.restore(py);
            std::ptr::null_mut()
        }
    }));
    match guarded {
        Ok(pointer) => pointer,
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic in pepperpy_core._native".to_owned());
            PanicException::new_err(message).restore(py);
            std::ptr::null_mut()
        }
    }
}
