//! The synchronisation primitives of the shared structures (windows, budgets, breakers): std's,
//! or loom's when the crate is built with `--cfg loom`, so the model checker explores every
//! interleaving of the same code (`.ci/run` runs those models).

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU64, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::{Mutex, MutexGuard};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU64, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::{Mutex, MutexGuard};

/// Locks `mutex`, ignoring poisoning: nothing that can panic runs while these locks are held
/// (no user code), and the data they guard is consistent after every store.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs a loom model exhaustively: every interleaving, with no bound on preemptions (the
/// models are small enough: all of them take about two seconds).
#[cfg(all(test, loom))]
pub(crate) fn model<F: Fn() + Sync + Send + 'static>(f: F) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = None;
    builder.check(f);
}
