//! The lock around a cache's table.
//!
//! With the GIL, every access to the table already happens on the one thread
//! that holds the GIL, and the cache never runs Python code (which could let
//! the GIL go) while it holds the table. An atomic mutex would then only add
//! two atomic read-modify-writes to every operation, about a fifth of a `get`
//! on the machines measured, so GIL builds use a plain flag that catches a
//! broken rule instead. Free-threaded builds use a real mutex.

#[cfg(not(Py_GIL_DISABLED))]
mod imp {
    use std::cell::{Cell, UnsafeCell};
    use std::ops::{Deref, DerefMut};

    use pyo3::Python;

    pub struct TableLock<T> {
        held: Cell<bool>,
        value: UnsafeCell<T>,
    }

    // SAFETY: in a GIL build every method of TableLock takes a `Python` token,
    // so it only runs on the thread holding the GIL; the GIL's acquire and
    // release order all accesses from different threads, and `held` refuses a
    // second guard on the same thread. Hence `&TableLock` never gives two
    // threads (or two guards) access to `value` at once.
    unsafe impl<T: Send> Sync for TableLock<T> {}

    pub struct TableGuard<'a, T> {
        lock: &'a TableLock<T>,
    }

    impl<T> TableLock<T> {
        pub fn new(value: T) -> Self {
            TableLock {
                held: Cell::new(false),
                value: UnsafeCell::new(value),
            }
        }

        pub fn try_lock(&self, _py: Python<'_>) -> Option<TableGuard<'_, T>> {
            if self.held.replace(true) {
                None
            } else {
                Some(TableGuard { lock: self })
            }
        }

        /// # Safety
        /// The caller holds the GIL (as the garbage collector's callbacks do)
        /// without a `Python` token to show for it.
        pub unsafe fn try_lock_in_gc(&self) -> Option<TableGuard<'_, T>> {
            if self.held.replace(true) {
                None
            } else {
                Some(TableGuard { lock: self })
            }
        }

        pub fn lock(&self, py: Python<'_>) -> TableGuard<'_, T> {
            match self.try_lock(py) {
                Some(guard) => guard,
                None => panic!("cache table locked twice on one thread"),
            }
        }
    }

    impl<T> Deref for TableGuard<'_, T> {
        type Target = T;
        fn deref(&self) -> &T {
            // SAFETY: this guard is the only one alive (see the Sync impl).
            unsafe { &*self.lock.value.get() }
        }
    }

    impl<T> DerefMut for TableGuard<'_, T> {
        fn deref_mut(&mut self) -> &mut T {
            // SAFETY: this guard is the only one alive (see the Sync impl).
            unsafe { &mut *self.lock.value.get() }
        }
    }

    impl<T> Drop for TableGuard<'_, T> {
        fn drop(&mut self) {
            self.lock.held.set(false);
        }
    }
}

#[cfg(Py_GIL_DISABLED)]
mod imp {
    use pyo3::Python;

    pub type TableGuard<'a, T> = parking_lot::MutexGuard<'a, T>;

    pub struct TableLock<T>(parking_lot::Mutex<T>);

    impl<T> TableLock<T> {
        pub fn new(value: T) -> Self {
            TableLock(parking_lot::Mutex::new(value))
        }

        pub fn try_lock(&self, _py: Python<'_>) -> Option<TableGuard<'_, T>> {
            self.0.try_lock()
        }

        /// # Safety
        /// None beyond the GIL build's; kept unsafe so both builds agree.
        pub unsafe fn try_lock_in_gc(&self) -> Option<TableGuard<'_, T>> {
            self.0.try_lock()
        }

        pub fn lock(&self, _py: Python<'_>) -> TableGuard<'_, T> {
            self.0.lock()
        }
    }
}

pub use imp::{TableGuard, TableLock};
