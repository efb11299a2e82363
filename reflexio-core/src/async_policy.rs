//! The async policy, [`AsyncRetryPolicy`].

use core::fmt;
use core::marker::PhantomData;
use core::ops::ControlFlow;
use core::time::Duration;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::call::{Boxed, Call, Next};
use crate::class::Classification;
use crate::errors::RetryError;
use crate::ok::{AcceptOk, OkClassifier, OkRule};
use crate::settings::Config;
use crate::time::{TimedAttempt, Timer};

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
    /// for more (their state is boxed, one allocation per call, so that it does not make every
    /// call's future bigger); with an
    /// [attempt timeout](crate::PolicyBuilder::attempt_timeout), every attempt also makes and
    /// polls its timer. Nothing happens, and no clock is read, until the future is first
    /// polled.
    ///
    /// # Errors
    ///
    /// The error of the last attempt, when the policy stops.
    pub fn call<T, F, Fut>(&self, op: F) -> impl Future<Output = Result<T, E>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: fmt::Debug,
        R: OkClassifier<T>,
    {
        Calling::<_, _, _, _, _, AsIs>::new(&self.config, &self.ok_rule, op)
    }

    /// A readable, multi-line snapshot of the policy; see
    /// [`RetryPolicy::describe`](crate::RetryPolicy::describe).
    #[must_use]
    pub fn describe(&self) -> String {
        self.to_string()
    }

    /// Whether the policy's calls start plain (see `Config::starts_plain`): what a `#[retry]`
    /// function's cell records, to run the first attempt before looking the policy up
    /// ([`CachedCalling`]).
    #[inline]
    pub(crate) fn starts_plain(&self) -> bool {
        self.config.starts_plain()
    }

    /// The state of one call, which `#[retry]`'s generated loop drives.
    pub(crate) fn start_call<T>(&self) -> Call<'_, E, T, R, Boxed> {
        Call::new(&self.config, &self.ok_rule, false)
    }
}

impl<E> AsyncRetryPolicy<E> {
    /// Like [`call`](AsyncRetryPolicy::call), but the error tells why the policy stopped, after
    /// how many attempts and how long, with the last error inside ([`RetryError::into_inner`]).
    ///
    /// # Errors
    ///
    /// A [`RetryError`] wrapping the last attempt's error.
    pub fn execute<T, F, Fut>(&self, op: F) -> impl Future<Output = Result<T, RetryError<E>>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: fmt::Debug,
    {
        Calling::<_, _, _, _, _, WithError>::new(&self.config, &self.ok_rule, op)
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
    pub fn execute<F, Fut>(&self, op: F) -> impl Future<Output = Result<T, RetryError<E, T>>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: fmt::Debug,
    {
        Calling::<_, _, _, _, _, WithRejected>::new(&self.config, &self.ok_rule, op)
    }
}

/// What a call's future returns from the call's result: the result as it is (`call`), or
/// `execute`'s, which says why the policy stopped.
pub(crate) trait Finish<T, E> {
    type Output;
    /// Whether the call reads the clock at its start whatever the policy (`execute`'s error
    /// reports the time since the start).
    const TIMED: bool;
    fn finish<R: OkClassifier<T>>(
        call: &Call<'_, E, T, R, Boxed>,
        result: Result<T, E>,
    ) -> Self::Output;
}

/// `call`'s result: as it is.
pub(crate) enum AsIs {}

/// `execute`'s error, with why the policy stopped.
enum WithError {}

/// `execute`'s error for a policy with a `retry_if_ok` rule: a value it stopped on too.
enum WithRejected {}

impl<T, E: fmt::Debug> Finish<T, E> for AsIs {
    type Output = Result<T, E>;
    const TIMED: bool = false;
    #[inline]
    fn finish<R: OkClassifier<T>>(
        _: &Call<'_, E, T, R, Boxed>,
        result: Result<T, E>,
    ) -> Self::Output {
        result
    }
}

impl<T, E: fmt::Debug> Finish<T, E> for WithError {
    type Output = Result<T, RetryError<E>>;
    const TIMED: bool = true;
    fn finish<R: OkClassifier<T>>(
        call: &Call<'_, E, T, R, Boxed>,
        result: Result<T, E>,
    ) -> Self::Output {
        call.finish(result)
    }
}

impl<T, E: fmt::Debug> Finish<T, E> for WithRejected {
    type Output = Result<T, RetryError<E, T>>;
    const TIMED: bool = true;
    fn finish<R: OkClassifier<T>>(
        call: &Call<'_, E, T, R, Boxed>,
        result: Result<T, E>,
    ) -> Self::Output {
        call.finish_rejecting(result)
    }
}

pin_project_lite::pin_project! {
    /// Where a call's future is, with what it waits on: the attempt in flight and its timer,
    /// or the sleep before the next one. One enum: the attempt's timer and the sleep share
    /// their slot, and its tag is a plain one (a future has no spare values for a niche), so
    /// dropping a finished call's future reads one byte, where a `Timer` field of its own
    /// was dropped by its glue, out of line, on every call.
    #[project = StepProj]
    enum Step<Fut> {
        /// Not polled yet.
        Start,
        /// An attempt in flight, with no attempt timeout: no timer made, moved or dropped.
        Attempt { #[pin] attempt: Fut },
        /// An attempt in flight under its timer (the policy's attempt timeout).
        TimedAttempt { #[pin] attempt: TimedAttempt<Fut> },
        /// Sleeping before the next attempt.
        Sleep { #[pin] timer: Timer },
        /// Returned its output.
        Done,
    }
}

pin_project_lite::pin_project! {
    /// The future of `call` and `execute`: the driver of an async call, "attempt, step, sleep"
    /// around the call's state ([`Call`]), written by hand rather than as an `async fn`.
    ///
    /// An `async fn` holding the call's state, the attempt and a timer, around an inner one
    /// for lean policies, took 536 bytes over the wrapped future; here the attempt's timer and
    /// the sleep share one slot, and the full state of a policy with a breaker, budget or hook
    /// is boxed ([`Boxed`]): 256 bytes. The projection code is `pin-project-lite`'s (see
    /// `time/timer.rs`).
    ///
    /// Fields drop in their order here: the attempt in flight (and its timer) before the
    /// call's state, so that a call dropped mid-attempt, or unwound by a panic, ends its
    /// attempt before its breaker admission gives the probe's place back (else a new probe
    /// could start while this one still runs).
    #[project = CallingProj]
    pub(crate) struct Calling<'p, E, T, R, F, Fut, M> {
        #[pin]
        step: Step<Fut>,
        call: Call<'p, E, T, R, Boxed>,
        op: F,
        finish: PhantomData<fn() -> M>,
    }
}

impl<'p, E, T, R, F, Fut, M> Calling<'p, E, T, R, F, Fut, M> {
    #[inline]
    pub(crate) fn new(config: &'p Config<E>, ok_rule: &'p R, op: F) -> Self {
        Calling {
            step: Step::Start,
            call: Call::unstarted(config, ok_rule),
            op,
            finish: PhantomData,
        }
    }
}

impl<E, T, R, F, Fut, M> Calling<'_, E, T, R, F, Fut, M>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: fmt::Debug,
    R: OkClassifier<T>,
    M: Finish<T, E>,
{
    /// The first poll of a call whose first attempt already ran and failed with `outcome`
    /// (its class `forced` when already known: see `Call::first_outcome`), on a policy whose
    /// calls start plain: the call goes on from it.
    pub(crate) fn poll_after_first(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        outcome: Result<T, E>,
        forced: Option<Classification>,
    ) -> Poll<M::Output> {
        let mut this = self.project();
        debug_assert!(!M::TIMED && this.call.starts_plain());
        this.step.set(Step::Done);
        match after_first_failure(&mut this, cx, outcome, forced) {
            Ok(next) => poll_steps(this, cx, Some(next)),
            Err(poll) => poll,
        }
    }
}

/// A new attempt, made by `op` into the step and polled at once; once it is ready, it is
/// dropped (the step `Done`) before its outcome is returned. Pending, it stays in the step.
#[allow(
    clippy::inline_always,
    reason = "the success path of the first poll, inlined with it"
)]
#[inline(always)]
fn attempt_now<F, Fut>(
    mut step: Pin<&mut Step<Fut>>,
    op: &mut F,
    cx: &mut Context<'_>,
) -> Poll<Fut::Output>
where
    F: FnMut() -> Fut,
    Fut: Future,
{
    step.set(Step::Attempt { attempt: op() });
    let StepProj::Attempt { attempt } = step.as_mut().project() else {
        unreachable!("just set")
    };
    let outcome = core::task::ready!(attempt.poll(cx));
    step.set(Step::Done);
    Poll::Ready(outcome)
}

/// A lean call's step (see `Call::decide_lean`), from `first`, the outcome of its attempt in
/// flight, or, without one, from making its next attempt: with the outcome kept here until it
/// is returned or dropped, and each retry after no delay (there is no attempt timer) made and
/// polled at once in this loop of its own; through the general steps of the future
/// ([`poll_steps`]), each such retry took a quarter more work (BENCHMARKS.md). `Ok(delay)`:
/// sleep, then go on; `Err`: what `poll` returns.
#[allow(
    clippy::inline_always,
    reason = "the lean call's whole loop inlined where it starts and resumes \
              (`after_first_failure`, `poll_steps`)"
)]
#[inline(always)]
fn lean_attempts<E, T, R, F, Fut, M>(
    mut step: Pin<&mut Step<Fut>>,
    call: &mut Call<'_, E, T, R, Boxed>,
    op: &mut F,
    cx: &mut Context<'_>,
    first: Option<Result<T, E>>,
) -> Result<Duration, Poll<M::Output>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: fmt::Debug,
    R: OkClassifier<T>,
    M: Finish<T, E>,
{
    let mut first = first;
    loop {
        let outcome = if let Some(outcome) = first.take() {
            outcome
        } else {
            let Poll::Ready(outcome) = attempt_now(step.as_mut(), op, cx) else {
                return Err(Poll::Pending);
            };
            outcome
        };
        let Some(delay) = call.decide_lean(&outcome) else {
            return Err(Poll::Ready(M::finish(call, outcome)));
        };
        drop(outcome);
        if !delay.is_zero() || call.timed_attempts() {
            return Ok(delay);
        }
    }
}

impl<E, T, R, F, Fut, M> Future for Calling<'_, E, T, R, F, Fut, M>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: fmt::Debug,
    R: OkClassifier<T>,
    M: Finish<T, E>,
{
    type Output = M::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<M::Output> {
        let mut this = self.project();
        // A plain start is a lean one: tested first, the common case reads one flag.
        let plain = !M::TIMED && this.call.starts_plain();
        if (plain || this.call.starts_lean())
            && matches!(this.step.as_mut().project(), StepProj::Start)
        {
            // The common case, small enough to inline where the future is awaited: a lean
            // start (no attempt timer to make) and the first attempt, straight from the first
            // poll. Out of line, with the other steps, it took a call and a large stack frame.
            // Not `Start` any more before any user code runs (see `poll_steps`).
            this.step.set(Step::Done);
            if !plain {
                // A clock reading first (a deadline counted from the start, or `execute`'s
                // elapsed time); a plain start has none: the unstarted call is already the
                // started one.
                this.call.start_reading(M::TIMED);
            }
            let Poll::Ready(outcome) = attempt_now(this.step.as_mut(), this.op, cx) else {
                return Poll::Pending;
            };
            return match this.call.first_outcome(&outcome) {
                ControlFlow::Break(()) => Poll::Ready(M::finish(this.call, outcome)),
                ControlFlow::Continue(forced) => {
                    match after_first_failure(&mut this, cx, outcome, forced) {
                        Ok(next) => poll_steps(this, cx, Some(next)),
                        Err(poll) => poll,
                    }
                }
            };
        }
        poll_steps(this, cx, None)
    }
}

/// The first failure of a lean start, decided: then the retries after no delay in the lean
/// loop (a lean start has no attempt timer). `Ok`: what to do next (in [`poll_steps`]); `Err`:
/// what `poll` returns. Called straight from the inlined first poll (or `poll_after_first`):
/// a failing call whose retries need no sleep ends here, without `poll_steps`' frame.
///
/// Out of line: inlined into `poll_steps`, the lean loop it holds was compiled to write each
/// new attempt's future in two halves and read it back whole, a stalled store-to-load
/// forwarding at every retry (a failing call 34 → 51 ns in BENCHMARKS.md's section 3, with
/// fewer instructions).
#[inline(never)]
fn after_first_failure<E, T, R, F, Fut, M>(
    this: &mut CallingProj<'_, '_, E, T, R, F, Fut, M>,
    cx: &mut Context<'_>,
    outcome: Result<T, E>,
    forced: Option<Classification>,
) -> Result<Next<T, E>, Poll<M::Output>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: fmt::Debug,
    R: OkClassifier<T>,
    M: Finish<T, E>,
{
    match this.call.decide_first_failure(&outcome, forced) {
        None => Err(Poll::Ready(M::finish(this.call, outcome))),
        Some(delay) if delay.is_zero() => {
            drop(outcome);
            lean_attempts::<_, _, _, _, _, M>(this.step.as_mut(), this.call, this.op, cx, None)
                .map(Next::Sleep)
        }
        Some(delay) => Ok(Next::Sleep(delay)),
    }
}

/// The steps of a call's future (see [`Calling`]), from the step it is at, or from
/// `after_first`: what to do after the failed first attempt of a lean start, decided by
/// [`after_first_failure`].
#[inline(never)]
fn poll_steps<E, T, R, F, Fut, M>(
    mut this: CallingProj<'_, '_, E, T, R, F, Fut, M>,
    cx: &mut Context<'_>,
    after_first: Option<Next<T, E>>,
) -> Poll<M::Output>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: fmt::Debug,
    R: OkClassifier<T>,
    M: Finish<T, E>,
{
    let mut after_first = after_first;
    loop {
        let mut next = if let Some(next) = after_first.take() {
            next
        } else {
            match this.step.as_mut().project() {
                StepProj::Start => {
                    // Not `Start` any more before any user code runs: a poll after a panic in
                    // it (the operation, a hook, the breaker's admission) must not start the
                    // call over; it panics as a finished future's would.
                    // (A lean start without an attempt timeout never gets here: `poll` starts
                    // it.)
                    this.step.set(Step::Done);
                    this.call.start(M::TIMED);
                    this.call.begin()
                }
                StepProj::Sleep { timer } => {
                    if timer.poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    this.step.set(Step::Done);
                    this.call.resume()
                }
                StepProj::Done => panic!("a reflexio call's future polled after it completed"),
                step => {
                    let outcome = match step {
                        StepProj::Attempt { attempt } => match attempt.poll(cx) {
                            Poll::Ready(outcome) => Some(outcome),
                            Poll::Pending => return Poll::Pending,
                        },
                        StepProj::TimedAttempt { attempt } => match attempt.poll(cx) {
                            Poll::Ready(outcome) => outcome,
                            Poll::Pending => return Poll::Pending,
                        },
                        _ => unreachable!("the other steps are matched above"),
                    };
                    // The attempt and its timer are dropped before the outcome is recorded.
                    this.step.set(Step::Done);
                    match outcome {
                        Some(outcome) if this.call.is_lean() => {
                            match lean_attempts::<_, _, _, _, _, M>(
                                this.step.as_mut(),
                                this.call,
                                this.op,
                                cx,
                                Some(outcome),
                            ) {
                                Ok(delay) => Next::Sleep(delay),
                                Err(poll) => return poll,
                            }
                        }
                        Some(outcome) => this.call.record(outcome),
                        None => this.call.record_timeout(),
                    }
                }
            }
        };
        loop {
            match next {
                // A zero delay is not slept: no timer made, polled and dropped.
                Next::Sleep(delay) if delay.is_zero() => next = this.call.resume(),
                Next::Attempt if this.call.timed_attempts() => {
                    this.step.set(Step::TimedAttempt {
                        attempt: this.call.timed((this.op)()),
                    });
                    break;
                }
                Next::Attempt => {
                    this.step.set(Step::Attempt {
                        attempt: (this.op)(),
                    });
                    break;
                }
                Next::Sleep(delay) => {
                    this.step.set(Step::Sleep {
                        timer: this.call.sleep(delay),
                    });
                    break;
                }
                Next::Done(result) => {
                    this.step.set(Step::Done);
                    return Poll::Ready(M::finish(this.call, result));
                }
            }
        }
    }
}
