//! `Exclusive<T>`: one holder at a time for the state behind a cache, a
//! histogram or a timer.
//!
//! The rule every user of it keeps: no Python code runs while a guard is
//! alive (no key comparison that could call `__eq__`, no reference dropped
//! that could run `__del__`, no Python object allocated that could start the
//! garbage collector). Hence no guard is ever taken twice on one thread.
//!
//! With the GIL, every access already happens on the one thread holding the
//! GIL, and by the rule above the GIL is never given up while a guard lives.
//! An atomic mutex would only add two atomic read-modify-writes to every
//! operation (a fifth of a cache `get` on the machines measured), so GIL
//! builds use a plain flag that catches a broken rule as a RuntimeError.
//! Free-threaded builds use a real mutex.

use pyo3::exceptions::PyRuntimeError;
use pyo3::PyErr;

// Free-threaded builds block on the mutex instead of refusing.
#[cfg_attr(Py_GIL_DISABLED, allow(dead_code))]
fn reentered() -> PyErr {
    // Unreachable while the rule holds; a clear error, never a panic, if a
    // future change breaks it.
    PyRuntimeError::new_err(
        "pepperpy_core: object used again while this thread was already using it",
    )
}

#[cfg(not(Py_GIL_DISABLED))]
mod imp {
    use std::cell::{Cell, UnsafeCell};
    use std::ops::{Deref, DerefMut};

    use pyo3::{PyResult, Python};

    pub struct Exclusive<T> {
        held: Cell<bool>,
        value: UnsafeCell<T>,
    }

    // SAFETY: in a GIL build every way into `value` goes through `lock`,
    // which takes a `Python` token, or `try_lock_in_gc`, which is called with
    // the GIL held; so it only runs on the thread holding the GIL. The GIL's
    // acquire and release order the accesses of different threads, and
    // `held` refuses a second guard on the same thread. Hence `&Exclusive`
    // never gives two threads (or two guards) access to `value` at once.
    unsafe impl<T: Send> Sync for Exclusive<T> {}

    pub struct Guard<'a, T> {
        lock: &'a Exclusive<T>,
    }

    impl<T> Exclusive<T> {
        pub fn new(value: T) -> Self {
            Exclusive {
                held: Cell::new(false),
                value: UnsafeCell::new(value),
            }
        }

        pub fn lock(&self, _py: Python<'_>) -> PyResult<Guard<'_, T>> {
            if self.held.replace(true) {
                Err(super::reentered())
            } else {
                Ok(Guard { lock: self })
            }
        }

        /// # Safety
        /// The caller holds the GIL (as the garbage collector's callbacks do)
        /// without a `Python` token to show for it.
        pub unsafe fn try_lock_in_gc(&self) -> Option<Guard<'_, T>> {
            if self.held.replace(true) {
                None
            } else {
                Some(Guard { lock: self })
            }
        }
    }

    impl<T> Deref for Guard<'_, T> {
        type Target = T;
        fn deref(&self) -> &T {
            // SAFETY: this guard is the only one alive (see the Sync impl).
            unsafe { &*self.lock.value.get() }
        }
    }

    impl<T> DerefMut for Guard<'_, T> {
        fn deref_mut(&mut self) -> &mut T {
            // SAFETY: this guard is the only one alive (see the Sync impl).
            unsafe { &mut *self.lock.value.get() }
        }
    }

    impl<T> Drop for Guard<'_, T> {
        fn drop(&mut self) {
            self.lock.held.set(false);
        }
    }
}

#[cfg(Py_GIL_DISABLED)]
mod imp {
    use pyo3::{PyResult, Python};

    pub type Guard<'a, T> = parking_lot::MutexGuard<'a, T>;

    pub struct Exclusive<T>(parking_lot::Mutex<T>);

    impl<T> Exclusive<T> {
        pub fn new(value: T) -> Self {
            Exclusive(parking_lot::Mutex::new(value))
        }

        pub fn lock(&self, _py: Python<'_>) -> PyResult<Guard<'_, T>> {
            // A holder never runs Python code, so it lets go within a few
            // hundred instructions; waiting attached to the interpreter is
            // shorter than detaching would be.
            Ok(self.0.lock())
        }

        /// # Safety
        /// None beyond the GIL build's; kept unsafe so both builds agree.
        pub unsafe fn try_lock_in_gc(&self) -> Option<Guard<'_, T>> {
            self.0.try_lock()
        }
    }
}

pub use imp::{Exclusive, Guard};
