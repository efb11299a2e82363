//! The sync policy, [`RetryPolicy`], and its driver: attempt, step, sleep.

use core::fmt;

use core::ops::ControlFlow;

use crate::call::{Call, Lean, Next, Times};
use crate::class::Classification;
use crate::errors::RetryError;
use crate::ok::first_outcome;
use crate::ok::{AcceptOk, OkClassifier, OkRule};
use crate::settings::Config;

/// A retry policy for synchronous operations: retries `op` with per-class strategies and limits,
/// blocking the thread between attempts.
///
/// Generic over the error type only (and, after `.retry_if_ok(..)`, the `Ok` rule `R`): the
/// classifier, strategies and hook sit behind trait objects (they run only on failure), so a
/// policy is a nameable type that fits in a `static`. It is `Send + Sync` and cheap to clone;
/// share it with `&'static`, `Arc` or a clone.
///
/// # Examples
///
/// ```
/// use std::sync::LazyLock;
/// use std::time::Duration;
/// use reflexio::{strategies::equal_jitter, RetryPolicy};
///
/// static POLICY: LazyLock<RetryPolicy<std::io::Error>> = LazyLock::new(|| {
///     RetryPolicy::builder()
///         .strategy(equal_jitter().base(Duration::from_millis(1)).max(Duration::from_millis(10)))
///         .max_attempts(4)
///         .build()
///         .expect("valid policy")
/// });
///
/// let mut calls = 0;
/// let out = POLICY.call(|| {
///     calls += 1;
///     if calls < 3 { Err(std::io::ErrorKind::ConnectionReset.into()) } else { Ok("done") }
/// });
/// assert_eq!(out.unwrap(), "done");
/// assert_eq!(calls, 3);
/// ```
pub struct RetryPolicy<E, R = AcceptOk> {
    config: Config<E>,
    ok_rule: R,
}

impl<E, R: Clone> Clone for RetryPolicy<E, R> {
    fn clone(&self) -> Self {
        RetryPolicy {
            config: self.config.clone(),
            ok_rule: self.ok_rule.clone(),
        }
    }
}

impl<E, R> fmt::Debug for RetryPolicy<E, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("RetryPolicy");
        self.config.debug_fields(&mut d);
        d.finish_non_exhaustive()
    }
}

impl<E, R> fmt::Display for RetryPolicy<E, R> {
    /// The same as [`describe`](RetryPolicy::describe).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.config.describe(f)
    }
}

/// Drives one call: attempt, step, sleep.
///
/// A lean call (no breaker, budget or hook) has nothing to do before its first attempt but
/// read the clock when a deadline counts from the start: a success is the attempt and one
/// check of the `Ok` rule, and a failure goes on in [`lean_after_first`]. Making a `Call`
/// before the attempt would keep its state in memory across it (the attempt could reach it,
/// for all the compiler knows), stored, reloaded and checked around every success.
#[allow(
    clippy::inline_always,
    reason = "a lean call's success path, inlined into the caller of `call`"
)]
#[inline(always)]
fn drive<E, T, R, F>(config: &Config<E>, ok_rule: &R, timed: bool, mut op: F) -> Result<T, E>
where
    F: FnMut() -> Result<T, E>,
    E: fmt::Debug,
    R: OkClassifier<T>,
{
    if !config.lean() {
        return drive_full(config, ok_rule, timed, op);
    }
    let start = Times::new(config, timed);
    let first = op();
    match first_outcome(ok_rule, &first) {
        ControlFlow::Break(()) => first,
        ControlFlow::Continue(rejected) => {
            lean_after_first(config, ok_rule, start, first, rejected, op)
        }
    }
}

/// The rest of a lean call whose first attempt failed: its own loop around the lean step
/// ([`Lean::decide`], the step `Call` takes for a lean call too), where the general loop
/// (`drive_from`) would go through the call's state and its `Next` at every step: a quarter of
/// a failing call's work (BENCHMARKS.md, section 3).
#[cold]
#[inline(never)]
fn lean_after_first<E, T, R, F>(
    config: &Config<E>,
    ok_rule: &R,
    start: Times,
    first: Result<T, E>,
    rejected: Option<Classification>,
    mut op: F,
) -> Result<T, E>
where
    F: FnMut() -> Result<T, E>,
    R: OkClassifier<T>,
{
    let mut lean = Lean::new(start);
    let (mut outcome, mut forced) = (first, rejected);
    loop {
        let Some(delay) = lean.decide(config, ok_rule, &outcome, forced) else {
            return outcome;
        };
        config.time.sleep_blocking(delay);
        (outcome, forced) = (op(), None);
    }
}

/// A call of a policy that is not lean. Out of line, so that `call` stays small enough to
/// inline.
#[inline(never)]
fn drive_full<E, T, R, F>(config: &Config<E>, ok_rule: &R, timed: bool, op: F) -> Result<T, E>
where
    F: FnMut() -> Result<T, E>,
    E: fmt::Debug,
    R: OkClassifier<T>,
{
    let mut call = Call::full(config, ok_rule, timed);
    let next = call.begin();
    drive_from(&mut call, next, op)
}

/// The loop of a call, from `next`: attempt, step, sleep.
#[inline(never)]
fn drive_from<E, T, R, F>(
    call: &mut Call<'_, E, T, R>,
    mut next: Next<T, E>,
    mut op: F,
) -> Result<T, E>
where
    F: FnMut() -> Result<T, E>,
    E: fmt::Debug,
    R: OkClassifier<T>,
{
    loop {
        next = match next {
            Next::Attempt => call.record(op()),
            Next::Sleep(delay) => {
                call.sleep_blocking(delay);
                match call.resume() {
                    Next::Attempt => call.record(op()),
                    next => next,
                }
            }
            Next::Done(result) => return result,
        };
    }
}

impl<E, R> RetryPolicy<E, R> {
    pub(crate) fn from_parts(config: Config<E>, ok_rule: R) -> Self {
        RetryPolicy { config, ok_rule }
    }

    /// Calls `op` until it succeeds or the policy stops, sleeping between attempts.
    ///
    /// Returns the value, or the last attempt's own error, untouched. A call whose first
    /// attempt succeeds allocates nothing and takes no lock.
    ///
    /// # Cost
    ///
    /// Without a breaker, a budget or an event hook, a success costs the call of `op` (and one
    /// read of the clock at the start with a [`deadline`](crate::PolicyBuilder::deadline)
    /// counted from it; the default one counts from the first failure and reads none); a
    /// failure costs one decision of the engine, with no allocation. The other settings add
    /// their own work to every call: the breaker's admission, the budget's counts, and an
    /// event (with a clock read) per attempt for a hook. `BENCHMARKS.md` has the figures.
    ///
    /// # Errors
    ///
    /// The error of the last attempt, when the policy stops.
    #[inline]
    pub fn call<T, F>(&self, op: F) -> Result<T, E>
    where
        F: FnMut() -> Result<T, E>,
        E: fmt::Debug,
        R: OkClassifier<T>,
    {
        drive(&self.config, &self.ok_rule, false, op)
    }

    /// Whether a call has nothing to do before its first attempt (`Config::starts_plain`: a
    /// lean policy without a deadline counted from the start, so no clock read at the
    /// start). Such a call's first attempt can run before the policy is even looked up, and
    /// the call go on in [`call_after_first`](RetryPolicy::call_after_first): what
    /// `#[retry]` functions do (`macro_support::retry_sync_cached`).
    #[inline]
    pub(crate) fn first_attempt_needs_nothing(&self) -> bool {
        self.config.starts_plain()
    }

    /// The rest of a [`call`](RetryPolicy::call) whose first attempt, `first`, already ran:
    /// what `call` does after its first attempt, for a policy whose calls need nothing before
    /// it ([`first_attempt_needs_nothing`](RetryPolicy::first_attempt_needs_nothing)).
    pub(crate) fn call_after_first<T, F>(&self, first: Result<T, E>, op: F) -> Result<T, E>
    where
        F: FnMut() -> Result<T, E>,
        R: OkClassifier<T>,
    {
        debug_assert!(
            self.first_attempt_needs_nothing(),
            "only a call needing nothing before its first attempt can run it first"
        );
        match first_outcome(&self.ok_rule, &first) {
            ControlFlow::Break(()) => first,
            ControlFlow::Continue(rejected) => {
                // No clock read: the policy needs no start time (`needs_start` is false).
                let start = Times::new(&self.config, false);
                lean_after_first(&self.config, &self.ok_rule, start, first, rejected, op)
            }
        }
    }

    /// A readable, multi-line snapshot of the policy: limits, per-class strategies with their
    /// parameters, deadline, budget and breaker.
    ///
    /// ```
    /// use reflexio::{RetryPolicy, TransientError};
    /// let policy = RetryPolicy::<TransientError>::builder().operation("sync_users").build().unwrap();
    /// let text = policy.describe();
    /// assert!(text.starts_with("retry policy `sync_users`"));
    /// assert!(text.contains("max attempts: 6"));
    /// assert!(text.contains("deadline: 1m from the first failure"));
    /// assert!(text.contains("decorrelated_jitter(base 250ms, max 5s)"));
    /// ```
    #[must_use]
    pub fn describe(&self) -> String {
        self.to_string()
    }
}

impl<E> RetryPolicy<E> {
    /// Like [`call`](RetryPolicy::call), but the error tells why the policy stopped, after how
    /// many attempts and how long, with the last error inside ([`RetryError::into_inner`]).
    ///
    /// # Errors
    ///
    /// A [`RetryError`] wrapping the last attempt's error.
    pub fn execute<T, F>(&self, op: F) -> Result<T, RetryError<E>>
    where
        F: FnMut() -> Result<T, E>,
        E: fmt::Debug,
    {
        let mut call = Call::new(&self.config, &self.ok_rule, true);
        let next = call.begin();
        let result = drive_from(&mut call, next, op);
        call.finish(result)
    }
}

impl<E, T> RetryPolicy<E, OkRule<T>> {
    /// Like [`call`](RetryPolicy::call), but says why the policy stopped: when it stops on a
    /// value its `retry_if_ok` rule rejected (a 503 response, after the last attempt or at the
    /// deadline), that is an error too, with the value inside ([`RetryError::rejected`]).
    ///
    /// ```
    /// use reflexio::{http::classify_status, strategies::no_delay, RetryPolicy, StopReason};
    ///
    /// let policy = RetryPolicy::<std::io::Error>::builder()
    ///     .strategy(no_delay())
    ///     .max_attempts(2)
    ///     .retry_if_ok(|status: &u16| (*status >= 500).then(|| classify_status(*status)))
    ///     .build()
    ///     .unwrap();
    /// let err = policy.execute(|| Ok(503)).unwrap_err();
    /// assert_eq!((err.stop_reason(), err.rejected()), (StopReason::MaxAttempts, Some(&503)));
    /// assert!(err.to_string().ends_with(" on a rejected value (server_error)"));
    /// ```
    ///
    /// # Errors
    ///
    /// A [`RetryError`] wrapping the last attempt's error or the last rejected value.
    pub fn execute<F>(&self, op: F) -> Result<T, RetryError<E, T>>
    where
        F: FnMut() -> Result<T, E>,
        E: fmt::Debug,
    {
        let mut call = Call::new(&self.config, &self.ok_rule, true);
        let next = call.begin();
        let result = drive_from(&mut call, next, op);
        call.finish_rejecting(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AsyncRetryPolicy, CircuitBreaker, ErrorClass, RetryBudget};
    use core::time::Duration;
    use std::io;

    /// Which policies are lean decides which loop their calls take (the lean one, or the full
    /// per-call state); `tests/lean_parity.rs` checks that both decide alike, relying on this.
    #[test]
    fn policies_without_breaker_budget_or_hook_are_lean() {
        let base = || RetryPolicy::<io::Error>::builder();
        assert!(base().build().unwrap().config.lean());
        assert!(base().no_deadline().build().unwrap().config.lean());
        assert!(
            base()
                .retry_if_ok(|_: &u32| None::<ErrorClass>)
                .build()
                .unwrap()
                .config
                .lean()
        );
        assert!(!base().on_event(|_| {}).build().unwrap().config.lean());
        let budget = RetryBudget::ratio(10.0).build().unwrap();
        assert!(!base().budget(budget).build().unwrap().config.lean());
        let breaker = CircuitBreaker::builder().build().unwrap();
        assert!(
            !base()
                .circuit_breaker(breaker)
                .build()
                .unwrap()
                .config
                .lean()
        );

        let base = || AsyncRetryPolicy::<io::Error>::builder();
        assert!(base().build().unwrap().config.lean());
        assert!(
            base()
                .attempt_timeout(Duration::from_secs(1))
                .build()
                .unwrap()
                .config
                .lean()
        );
        assert!(!base().on_event(|_| {}).build().unwrap().config.lean());
    }
}
