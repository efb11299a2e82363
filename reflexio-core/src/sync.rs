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

/// One turn of a wait for a slot another thread holds for a few instructions: a CPU hint, and
/// every 64th turn a yield, so a holder that was preempted gets the core back.
#[inline]
pub(crate) fn backoff(turn: &mut u32) {
    #[cfg(loom)]
    {
        let _ = turn;
        loom::thread::yield_now();
    }
    #[cfg(not(loom))]
    {
        *turn = turn.wrapping_add(1);
        if turn.is_multiple_of(64) {
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
    }
}
