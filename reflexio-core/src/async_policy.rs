//! The async policy, [`AsyncRetryPolicy`].

use core::fmt;
use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::task::Poll;

use core::ops::ControlFlow;

use crate::call::{Call, Lean, Next, Times};
use crate::errors::RetryError;
use crate::ok::first_outcome;
use crate::ok::{AcceptOk, OkClassifier, OkRule};
use crate::settings::Config;

/// A retry policy for async operations: the same decisions as
/// [`RetryPolicy`](crate::RetryPolicy), sleeping asynchronously between attempts.
///
/// It works on any executor: with the `tokio` feature (the default) it sleeps on tokio's timer,
/// so `tokio::time::pause()` works in tests; `.sleeper(..)` plugs in any other. Dropping the
/// future of [`call`](Self::call) cancels cleanly: the attempt or the sleep in flight is dropped
/// and nothing else happens.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use reflexio::{strategies::full_jitter, AsyncRetryPolicy, ServerError};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let policy = AsyncRetryPolicy::builder()
///     .strategy(full_jitter().base(Duration::from_millis(1)).max(Duration::from_millis(5)))
///     .operation("load_profile")
///     .build()
///     .unwrap();
///
/// let mut calls = 0;
/// let out = policy
///     .call(|| {
///         calls += 1;
///         let n = calls;
///         async move { if n < 3 { Err(ServerError::new("503")) } else { Ok(n) } }
///     })
///     .await;
/// assert_eq!(out, Ok(3));
/// # }
/// ```
pub struct AsyncRetryPolicy<E, R = AcceptOk> {
    pub(crate) config: Config<E>,
    pub(crate) ok_rule: R,
}

impl<E, R: Clone> Clone for AsyncRetryPolicy<E, R> {
    fn clone(&self) -> Self {
        AsyncRetryPolicy {
            config: self.config.clone(),
            ok_rule: self.ok_rule.clone(),
        }
    }
}

impl<E, R> fmt::Debug for AsyncRetryPolicy<E, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("AsyncRetryPolicy");
        self.config.debug_fields(&mut d);
        d.finish_non_exhaustive()
    }
}

impl<E, R> fmt::Display for AsyncRetryPolicy<E, R> {
    /// The same as [`describe`](AsyncRetryPolicy::describe).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.config.describe(f)
    }
}

impl<E, R> AsyncRetryPolicy<E, R> {
    pub(crate) fn from_parts(config: Config<E>, ok_rule: R) -> Self {
        AsyncRetryPolicy { config, ok_rule }
    }

    /// Calls `op` and awaits its future until it succeeds or the policy stops, sleeping
    /// asynchronously between attempts.
    ///
    /// Returns the value, or the last attempt's own error, untouched. The returned future is
    /// `Send` when `op`, its futures, `T` and `E` are; it does not box `op`'s future. Its cost
    /// is [`RetryPolicy::call`](crate::RetryPolicy::call)'s: a success costs the attempt (and a
    /// clock read for a deadline counted from the start) unless a breaker, budget or hook asks
    /// for more; with an
    /// [attempt timeout](crate::PolicyBuilder::attempt_timeout), every attempt also makes and
    /// polls its timer.
    ///
    /// # Errors
    ///
    /// The error of the last attempt, when the policy stops.
    pub async fn call<T, F, Fut>(&self, op: F) -> Result<T, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: fmt::Debug,
        R: OkClassifier<T>,
    {
        let config = &self.config;
        if config.lean() && config.settings.attempt_timeout.is_none() {
            return self.lean_call(op).await;
        }
        let mut call = Call::new(config, &self.ok_rule, false);
        let next = call.begin();
        drive_from(&mut call, next, op).await
    }

    /// A call of a lean policy with no attempt timeout: each attempt awaited as it is, a
    /// success returned at once, and each failure decided by the lean step ([`Lean::decide`],
    /// the step `Call` takes for a lean call too) in a loop of its own, where the general loop
    /// would go through the call's state, its `Next` and the attempt's timer at every step: a
    /// fifth of a failing call's work (BENCHMARKS.md, section 3).
    async fn lean_call<T, F, Fut>(&self, mut op: F) -> Result<T, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        R: OkClassifier<T>,
    {
        let config = &self.config;
        let start = Times::new(config, false);
        let mut outcome = op().await;
        let rejected = match first_outcome(&self.ok_rule, &outcome) {
            ControlFlow::Break(()) => return outcome,
            ControlFlow::Continue(rejected) => rejected,
        };
        let mut lean = Lean::new(start);
        let mut next = lean.decide(config, &self.ok_rule, &outcome, rejected);
        while let Some(delay) = next {
            // The outcome is dropped before the sleep: the future holds an attempt or a sleep,
            // never a result as well.
            drop(outcome);
            if !delay.is_zero() {
                config.time.sleep(delay).await;
            }
            outcome = op().await;
            next = lean.decide(config, &self.ok_rule, &outcome, None);
        }
        outcome
    }

    /// A readable, multi-line snapshot of the policy; see
    /// [`RetryPolicy::describe`](crate::RetryPolicy::describe).
    #[must_use]
    pub fn describe(&self) -> String {
        self.to_string()
    }

    /// The state of one call, which `#[retry]`'s generated loop drives.
    pub(crate) fn start_call<T>(&self) -> Call<'_, E, T, R> {
        Call::new(&self.config, &self.ok_rule, false)
    }
}

/// Drives a call from `next` (its `begin()`): attempt (under the attempt timeout, if any),
/// step, sleep. The loop `#[retry]` generates for an async function is this one, inlined in
/// the function.
async fn drive_from<E, T, R, F, Fut>(
    call: &mut Call<'_, E, T, R>,
    mut next: Next<T, E>,
    mut op: F,
) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: fmt::Debug,
    R: OkClassifier<T>,
{
    loop {
        next = match next {
            Next::Attempt => match timed_attempt(pin!(op()), pin!(call.timer())).await {
                Some(outcome) => call.record(outcome),
                None => call.record_timeout(),
            },
            Next::Sleep(delay) => {
                if !delay.is_zero() {
                    call.sleep(delay).await;
                }
                call.resume()
            }
            Next::Done(result) => return result,
        };
    }
}

impl<E> AsyncRetryPolicy<E> {
    /// Like [`call`](AsyncRetryPolicy::call), but the error tells why the policy stopped, after
    /// how many attempts and how long, with the last error inside ([`RetryError::into_inner`]).
    ///
    /// # Errors
    ///
    /// A [`RetryError`] wrapping the last attempt's error.
    pub async fn execute<T, F, Fut>(&self, op: F) -> Result<T, RetryError<E>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: fmt::Debug,
    {
        let mut call = Call::new(&self.config, &self.ok_rule, true);
        let next = call.begin();
        let result = drive_from(&mut call, next, op).await;
        call.finish(result)
    }
}

impl<E, T> AsyncRetryPolicy<E, OkRule<T>> {
    /// Like [`call`](AsyncRetryPolicy::call), but says why the policy stopped, on an error or
    /// on a value its `retry_if_ok` rule rejected; see
    /// [`RetryPolicy::execute`](crate::RetryPolicy::execute).
    ///
    /// # Errors
    ///
    /// A [`RetryError`] wrapping the last attempt's error or the last rejected value.
    pub async fn execute<F, Fut>(&self, op: F) -> Result<T, RetryError<E, T>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: fmt::Debug,
    {
        let mut call = Call::new(&self.config, &self.ok_rule, true);
        let next = call.begin();
        let result = drive_from(&mut call, next, op).await;
        call.finish_rejecting(result)
    }
}

/// Runs one attempt under its timer, if any: `None` when the timer fired first (the
/// attempt's future is then dropped by its owner). Not public API: drivers use it.
///
/// The caller pins both in its own frame (`pin!`), so the attempt's future is held once:
/// taken by value, it would be held again as a coroutine's argument.
pub fn timed_attempt<'a, Fut, Timer>(
    attempt: Pin<&'a mut Fut>,
    timer: Pin<&'a mut Option<Timer>>,
) -> impl Future<Output = Option<Fut::Output>> + 'a
where
    Fut: Future,
    Timer: Future<Output = ()>,
{
    let (mut attempt, mut timer) = (attempt, timer);
    poll_fn(move |cx| {
        if let Poll::Ready(out) = attempt.as_mut().poll(cx) {
            return Poll::Ready(Some(out));
        }
        if let Some(timer) = timer.as_mut().as_pin_mut()
            && timer.poll(cx).is_ready()
        {
            return Poll::Ready(None);
        }
        Poll::Pending
    })
}
