//! The one per-call state, [`Call`], and its step function: every driver (the sync loop, the
//! async loop, the loop `#[retry]` generates) is "attempt, [`Call::record`], sleep,
//! [`Call::resume`]" around it. The step of a *lean* call (no breaker, budget or hook) is
//! [`Lean::decide`]; each policy's `call` also runs it in a loop of its own for lean policies,
//! where going through `Call` and its `Next` at every step cost a failing call 40 % more work
//! (`BENCHMARKS.md`, section 3). Both loops take the same step.
//!
//! A failed call, read top to bottom: the driver (`policy.rs` or `async_policy.rs`, or the
//! expansion of `#[retry]`) runs the attempt and hands its outcome to [`Call::record`]; the
//! call classifies it and asks the [`Engine`](crate::engine::Engine) (`engine.rs`) whether to
//! retry and after how long; the driver sleeps and calls [`Call::resume`], which admits the
//! next attempt. Everything the call holds on shared structures (a breaker's admission, a
//! budget's reserved tokens) is a guard owned here, so a call dropped at any await point, or a
//! panic in any user code, gives it back.

use core::fmt;
use core::ops::ControlFlow;
use core::time::Duration;
use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::budget::Reserved;
use crate::circuit::{Admission, Transition};
use crate::class::{Classification, ErrorClass};
use crate::engine::{Decision, Engine, NO_ATTEMPT_START};
use crate::errors::{CircuitOpen, RetryError};
use crate::event::{EventKind, RetryEvent};
use crate::ok::{OkClassifier, first_outcome};
use crate::settings::Config;
use crate::stop::StopReason;
use crate::time::saturating_nanos;
use crate::time::{Stamp, TimedAttempt, Timer};

/// What a driver does next.
#[derive(Debug)]
pub enum Next<T, E> {
    /// Make an attempt, then pass its outcome to [`Call::record`].
    Attempt,
    /// Sleep this long, then call [`Call::resume`].
    Sleep(Duration),
    /// The call is over: return this.
    Done(Result<T, E>),
}

/// The state of one call of a policy.
///
/// Made in proportion to what the policy needs. A *lean* policy (no breaker, budget, event
/// hook or rate limiter) has nothing to do before the first attempt (but read the clock for
/// a deadline counted from the start) and nothing after a success: the call starts `Fresh`, a
/// success ends it at once, and only a failure makes the engine's counts (`Lean`), which then
/// decide each retry. Any other policy gets the full state (`Full`) from the start.
///
/// `H` says where the full state is kept: [`Inline`] for the sync policy, whose call lives on
/// the thread's stack, [`Boxed`] for the async ones, whose call lives in the call's future:
/// every future has room for the largest state, so an inline full state would make every
/// call's future bigger, lean or not (`tests/future_size.rs`), for the sake of the policies
/// with a breaker, budget, hook or rate limiter, which then allocate once per call.
///
/// Not public API: reachable only through the facade's hidden `__private` module, for the
/// loop `#[retry]` generates.
pub struct Call<'p, E, T, R, H: Holding = Inline> {
    config: &'p Config<E>,
    ok_rule: &'p R,
    state: State<'p, E, T, H>,
}

#[allow(
    clippy::large_enum_variant,
    reason = "inline only where it costs no allocation"
)]
enum State<'p, E, T, H: Holding> {
    /// A lean call before its first outcome.
    Fresh(Times),
    /// A lean call after a failure: the engine's counts.
    Lean(Lean),
    /// Everything: breaker admissions, budget tokens, events.
    Full(H::Slot<Full<'p, E, T>>),
}

/// Where a [`Call`] keeps its full state: [`Inline`] or [`Boxed`]. Not public API.
pub trait Holding {
    /// The holder of an `X`.
    type Slot<X>: core::ops::DerefMut<Target = X>;
    /// Holds `x`.
    fn hold<X>(x: X) -> Self::Slot<X>;
}

/// The full state held in the call itself (the sync policy).
#[derive(Debug)]
pub enum Inline {}

/// The full state boxed (the async policy, and `#[retry]` async functions).
#[derive(Debug)]
pub enum Boxed {}

/// An `X` held in place: [`Inline`]'s slot.
pub struct InPlace<X>(X);

impl<X> core::ops::Deref for InPlace<X> {
    type Target = X;
    #[inline]
    fn deref(&self) -> &X {
        &self.0
    }
}

impl<X> core::ops::DerefMut for InPlace<X> {
    #[inline]
    fn deref_mut(&mut self) -> &mut X {
        &mut self.0
    }
}

impl Holding for Inline {
    type Slot<X> = InPlace<X>;
    #[inline]
    fn hold<X>(x: X) -> InPlace<X> {
        InPlace(x)
    }
}

impl Holding for Boxed {
    type Slot<X> = OnHeap<X>;
    #[inline]
    fn hold<X>(x: X) -> OnHeap<X> {
        OnHeap(Some(Box::new(x)))
    }
}

/// An `X` on the heap: [`Boxed`]'s slot. A `Box` whose drop is out of line, so that the drop
/// glue of a call's state (run when every async call's future is dropped, lean or not) is a
/// check small enough to inline, where a `Box<Full>` made it a call of its own.
pub struct OnHeap<X>(Option<Box<X>>);

impl<X> core::ops::Deref for OnHeap<X> {
    type Target = X;
    #[inline]
    fn deref(&self) -> &X {
        self.0.as_deref().expect("emptied only when dropped")
    }
}

impl<X> core::ops::DerefMut for OnHeap<X> {
    #[inline]
    fn deref_mut(&mut self) -> &mut X {
        self.0.as_deref_mut().expect("emptied only when dropped")
    }
}

impl<X> Drop for OnHeap<X> {
    #[inline]
    fn drop(&mut self) {
        if let Some(x) = self.0.take() {
            free(x);
        }
    }
}

/// Drops a boxed full state, out of line (see [`OnHeap`]).
#[inline(never)]
fn free<X>(x: Box<X>) {
    drop(x);
}

/// The clock readings of a call: its start (when something needs it) and where its deadline
/// counts from.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Times {
    /// The call's start; for a deadline counted from the first failure (and no other need of
    /// the start), that failure's time instead.
    start: Option<Stamp>,
    /// The deadline's origin, in nanoseconds after `start` as the clock read them, unrounded:
    /// the first failure's time, for a deadline counted from it when the start was read for
    /// something else.
    origin_nanos: u64,
}

impl Times {
    /// No reading: a call that has not started.
    pub(crate) const NONE: Times = Times {
        start: None,
        origin_nanos: 0,
    };

    /// The readings of a call starting now. `timed` reads the clock whatever the policy (for
    /// `execute`'s elapsed time).
    #[inline]
    pub(crate) fn new<E>(config: &Config<E>, timed: bool) -> Self {
        Times {
            start: config.start(timed),
            origin_nanos: 0,
        }
    }

    /// [`at_failure_nanos`](Self::at_failure_nanos) as a `Duration`, for the tests.
    #[cfg(all(test, feature = "coarse-clock", target_os = "linux"))]
    fn at_failure<E>(&mut self, config: &Config<E>, attempt: u32, engine: &mut Engine) -> Duration {
        Duration::from_nanos(self.at_failure_nanos(config, attempt, engine))
    }

    /// At the end of failed attempt `attempt`: records the time since the start in `engine`
    /// (for `execute`'s error), and returns the time since the deadline's origin, in
    /// nanoseconds (every clock's time since a call's start fits: see
    /// `Engine::on_failure_nanos`). Reads the clock only when something needs it: a call with
    /// no deadline and no need of its start time reads none, and records nothing.
    #[allow(
        clippy::inline_always,
        reason = "part of the lean step, inlined with it; out of line, a call per failure"
    )]
    #[inline(always)]
    fn at_failure_nanos<E>(
        &mut self,
        config: &Config<E>,
        attempt: u32,
        engine: &mut Engine,
    ) -> u64 {
        match self.start {
            None if !config.deadline_from_first_failure() => 0,
            None => {
                // The first failure of a call whose deadline counts from it (and which needs
                // no start time of its own): the origin, now.
                self.start = Some(now(config));
                0
            }
            Some(start) => {
                let elapsed = nanos_since(config, start);
                engine.record_elapsed_nanos(elapsed);
                if attempt == 1 && config.deadline_from_first_failure() {
                    // The origin, as read: `since` rounds every measured time up (see
                    // `TimeSource::since`), and the origin must not take that rounding off the
                    // times measured from it.
                    self.origin_nanos = elapsed.saturating_sub(config.rules.clock_rounding_nanos);
                    return 0;
                }
                elapsed.saturating_sub(self.origin_nanos)
            }
        }
    }

    /// The engine's decision after the failure `c` of attempt `attempt`: the time since the
    /// deadline's origin from [`at_failure`](Self::at_failure), and a retry the clock schedules
    /// near the deadline confirmed by [`allows_exactly`].
    #[allow(
        clippy::inline_always,
        reason = "part of the lean step, inlined with it; out of line, a call per failure"
    )]
    #[inline(always)]
    fn decide<E>(
        &mut self,
        config: &Config<E>,
        engine: &mut Engine,
        attempt: u32,
        c: Classification,
    ) -> Decision {
        let since_origin = self.at_failure_nanos(config, attempt, engine);
        let times = &*self;
        engine.on_failure_nanos(&config.rules, c, since_origin, |delay| {
            times.allows_exactly(config, delay)
        })
    }

    /// Whether the deadline allows an attempt after `delay`, checked exactly (see
    /// [`allows_exactly`]); always, for a call that has not read its start.
    fn allows_exactly<E>(&self, config: &Config<E>, delay: Duration) -> bool {
        self.start.is_none_or(|start| {
            allows_exactly(
                config,
                start,
                Duration::from_nanos(self.origin_nanos),
                delay,
            )
        })
    }
}

/// The policy's clock, now: [`TimeSource::now`](crate::time::TimeSource::now), with the coarse
/// clock read inline (out of line, through the source's `match`, a read took 46
/// instructions under callgrind besides the clock's own; natively, 12 % of a failing default
/// call's time).
#[allow(
    clippy::inline_always,
    reason = "part of the lean step, inlined with it"
)]
#[inline(always)]
fn now<E>(config: &Config<E>) -> Stamp {
    #[cfg(all(feature = "coarse-clock", target_os = "linux"))]
    if config.rules.coarse_clock {
        return Stamp::Nanos(crate::time::coarse::now_nanos());
    }
    config.time.now()
}

/// The time since `start`, which the policy's clock stamped, in nanoseconds:
/// [`TimeSource::since`](crate::time::TimeSource::since), rounded up alike, with the coarse
/// clock read inline and its resolution read at build (out of line, `since` took 55
/// instructions under callgrind besides `now`'s and the clock's own, among them a `OnceLock`
/// check for the resolution; natively, 17 % of a failing default call's time).
#[allow(
    clippy::inline_always,
    reason = "part of the lean step, inlined with it"
)]
#[inline(always)]
fn nanos_since<E>(config: &Config<E>, start: Stamp) -> u64 {
    #[cfg(all(feature = "coarse-clock", target_os = "linux"))]
    if config.rules.coarse_clock
        && let Stamp::Nanos(start) = start
    {
        return crate::time::coarse::now_nanos()
            .saturating_sub(start)
            .saturating_add(config.rules.clock_rounding_nanos);
    }
    saturating_nanos(config.time.since(start))
}

/// Whether the deadline allows a retry after `delay`, checked exactly: the engine's `confirm`
/// for a retry its clock scheduled near the deadline (see `Rules::deadline_guard`). `origin`
/// is the deadline's origin after `start`, as the clock read it (unrounded). The fine clock's
/// time since the origin is never less than the real one, however late the coarse clock that
/// stamped it.
#[cold]
#[inline(never)]
pub(crate) fn allows_exactly<E>(
    config: &Config<E>,
    start: Stamp,
    origin: Duration,
    delay: Duration,
) -> bool {
    let Some(deadline) = config.rules.deadline else {
        return true;
    };
    let exactly = config.time.since_exactly(start).saturating_sub(origin);
    exactly.saturating_add(delay) < deadline
}

/// The state of a lean call after its first failure: its clock readings and the engine.
#[derive(Debug)]
pub(crate) struct Lean {
    times: Times,
    engine: Engine,
}

impl Lean {
    /// The state of a lean call that started at `times`, at its first failure.
    #[inline]
    pub(crate) fn new(times: Times) -> Self {
        Lean {
            times,
            engine: Engine::new(),
        }
    }

    /// A lean call's step: the engine's decision after an attempt with this outcome, and
    /// nothing else (no events, breaker or budget). `None` when the call is over (the outcome
    /// is its result), `Some(delay)` to sleep and try again. `forced` is the outcome's class
    /// when it is already known (a timeout, or an `Ok` value the rule already rejected).
    #[allow(
        clippy::inline_always,
        reason = "the whole decision inlined into the drivers' loops: out of line, each pays a \
                  call and the reload of the policy's fields (BENCHMARKS.md, section 3)"
    )]
    #[inline(always)]
    pub(crate) fn decide<E, T, R: OkClassifier<T>>(
        &mut self,
        config: &Config<E>,
        ok_rule: &R,
        outcome: &Result<T, E>,
        forced: Option<Classification>,
    ) -> Option<Duration> {
        let attempt = self.engine.begin_attempt();
        let c = match (forced, outcome) {
            (Some(c), _) => c,
            (None, Ok(value)) => ok_rule.classify_ok(value)?,
            (None, Err(error)) => config.classifier.classify(error),
        };
        match self.times.decide(config, &mut self.engine, attempt, c) {
            Decision::Retry(delay) if !aborted(config) => Some(delay),
            Decision::Retry(_) => {
                self.engine.stopped(StopReason::Aborted);
                None
            }
            Decision::Stop(_) => None,
        }
    }
}

/// The full state of a call: the engine, and what the call holds on shared structures.
struct Full<'p, E, T> {
    engine: Engine,
    times: Times,
    /// The breaker's admission of the attempt in flight: a probe's place goes back to the
    /// breaker if the call is dropped, or a panic unwinds, before the outcome is recorded.
    admission: Option<Admission<'p>>,
    /// The budget's tokens for the retry being slept for: given back if it never starts.
    reserved: Option<Reserved<'p>>,
    /// With a breaker or a rate limiter, the last outcome, kept during the sleep: a retry the
    /// breaker then rejects, or that the deadline stops while it waits for the limiter's
    /// token, returns it, the last attempt's own result, rather than a `CircuitOpen`.
    kept: Option<Result<T, E>>,
}

impl<E, T, R, H: Holding> fmt::Debug for Call<'_, E, T, R, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.state {
            State::Fresh(_) => f.write_str("Call(Fresh)"),
            State::Lean(lean) => f.debug_tuple("Call(Lean)").field(&lean.engine).finish(),
            State::Full(full) => f.debug_tuple("Call(Full)").field(&full.engine).finish(),
        }
    }
}

impl<'p, E, T, R, H: Holding> Call<'p, E, T, R, H> {
    /// A call of a policy with `config` and `ok_rule`. `timed` reads the clock at the start
    /// whatever the policy (for `execute`'s elapsed time).
    #[inline]
    pub(crate) fn new(config: &'p Config<E>, ok_rule: &'p R, timed: bool) -> Self {
        if config.lean() {
            Call::lean(config, ok_rule, Times::new(config, timed))
        } else {
            Call::full(config, ok_rule, timed)
        }
    }

    /// A call that has not started: [`start`](Self::start) it before anything else. For a
    /// future made now and polled later, which reads the clock when first polled.
    #[inline]
    pub(crate) fn unstarted(config: &'p Config<E>, ok_rule: &'p R) -> Self {
        Call::lean(config, ok_rule, Times::NONE)
    }

    /// Starts an [`unstarted`](Self::unstarted) call now, as [`new`](Self::new) would make it.
    #[inline]
    pub(crate) fn start(&mut self, timed: bool) {
        let config = self.config;
        match &mut self.state {
            // In place: assigning a new state would run the old one's drop glue, out of line.
            State::Fresh(readings) if config.lean() => *readings = Times::new(config, timed),
            _ => *self = Call::full(config, self.ok_rule, timed),
        }
    }

    /// A lean call (see [`Call`]) that started at `times`.
    #[inline]
    pub(crate) fn lean(config: &'p Config<E>, ok_rule: &'p R, times: Times) -> Self {
        Call {
            config,
            ok_rule,
            state: State::Fresh(times),
        }
    }

    /// A call with the full state from the start. Out of line: inlined, its stores would be
    /// made before the lean check and thrown away when it passes.
    #[inline(never)]
    pub(crate) fn full(config: &'p Config<E>, ok_rule: &'p R, timed: bool) -> Self {
        // A hook's events report the time since the start.
        let timed = timed || config.settings.hook.is_some();
        Call {
            config,
            ok_rule,
            state: State::Full(H::hold(Full {
                engine: Engine::new(),
                times: Times::new(config, timed),
                admission: None,
                reserved: None,
                kept: None,
            })),
        }
    }

    /// The timer of one attempt, started now ([`Timer::Off`], which never fires, when the
    /// policy has no attempt timeout). It borrows nothing, so the call can record the attempt
    /// while the timer lives.
    #[inline]
    pub fn timer(&self) -> Timer {
        self.config.attempt_timer()
    }

    /// The attempt `attempt` under the policy's attempt timeout, whose timer starts now: for
    /// the loop `#[retry]` generates for an async function, when
    /// [`timed_attempts`](Self::timed_attempts).
    #[inline]
    pub fn timed<Fut>(&self, attempt: Fut) -> TimedAttempt<Fut> {
        TimedAttempt::new(attempt, self.timer())
    }

    /// Whether each attempt runs under a timer (the policy has an attempt timeout).
    #[inline]
    pub fn timed_attempts(&self) -> bool {
        self.config.settings.attempt_timeout.is_some()
    }

    /// Sleeps as the policy does between attempts, from now. The async drivers do not call it
    /// for a zero delay (a timer made and dropped for nothing).
    #[inline]
    pub fn sleep(&self, delay: Duration) -> Timer {
        self.config.time.sleep(delay)
    }

    /// Sleeps by blocking the thread, as the sync policy does between attempts (not at all for
    /// a zero delay).
    #[inline]
    pub(crate) fn sleep_blocking(&self, delay: Duration) {
        self.config.time.sleep_blocking(delay);
    }
}

impl<E: fmt::Debug, T, R: OkClassifier<T>, H: Holding> Call<'_, E, T, R, H> {
    /// Starts the call: what to do first.
    #[inline]
    pub fn begin(&mut self) -> Next<T, E> {
        match &mut self.state {
            State::Full(full) => full.admit(self.config),
            State::Fresh(_) | State::Lean(..) => Next::Attempt,
        }
    }

    /// After a sleep: what to do next.
    #[inline]
    pub fn resume(&mut self) -> Next<T, E> {
        match &mut self.state {
            State::Full(full) => full.admit(self.config),
            State::Fresh(_) | State::Lean(..) => Next::Attempt,
        }
    }

    /// Feeds the outcome of one attempt and says what to do next: the step function.
    #[allow(
        clippy::inline_always,
        reason = "a lean call's whole step (a success's one check, a failure's decision) \
                  inlined into the driver: out of line, each step pays a call, a reload of the \
                  policy's fields and the moves of the outcome (BENCHMARKS.md, section 3)"
    )]
    #[inline(always)]
    pub fn record(&mut self, outcome: Result<T, E>) -> Next<T, E> {
        match &self.state {
            // The success path, small enough to inline into the drivers.
            State::Fresh(_) => match first_outcome(self.ok_rule, &outcome) {
                ControlFlow::Break(()) => Next::Done(outcome),
                ControlFlow::Continue(forced) => self.first_failure(outcome, forced),
            },
            State::Lean(..) => self.step(outcome, None),
            State::Full(_) => self.record_full(outcome),
        }
    }

    /// Feeds the outcome of an attempt of a full call.
    #[inline(never)]
    fn record_full(&mut self, outcome: Result<T, E>) -> Next<T, E> {
        self.step(outcome, None)
    }

    /// Feeds an attempt that exceeded the policy's attempt timeout: a `Transient` failure.
    ///
    /// # Panics
    ///
    /// If the policy has no attempt timeout (drivers call it only when one fired).
    pub fn record_timeout(&mut self) -> Next<T, E> {
        let error = self.config.timed_out();
        self.step(Err(error), Some(ErrorClass::Transient.into()))
    }

    /// The first failure of a lean call: makes the engine's counts, then decides with them.
    /// Cold: a call that succeeds at once never gets here.
    #[cold]
    #[inline(never)]
    fn first_failure(
        &mut self,
        outcome: Result<T, E>,
        forced: Option<Classification>,
    ) -> Next<T, E> {
        if let State::Fresh(times) = self.state {
            self.become_lean(times);
        }
        self.step(outcome, forced)
    }

    /// Whether the policy's calls start plain (see `Config::starts_plain`): an
    /// [`unstarted`](Self::unstarted) call is then already as [`start`](Self::start) (not
    /// timed) would make it.
    #[inline]
    pub(crate) fn starts_plain(&self) -> bool {
        self.config.starts_plain()
    }

    /// What `outcome`, the first attempt's of a call that has not failed yet, is: a success,
    /// which ends the call (`Break`), or a failure (an error, or a value the `Ok` rule
    /// rejects), with its class when already known (a rejected value's), to pass to
    /// [`decide_first_failure`](Self::decide_first_failure).
    #[inline]
    pub(crate) fn first_outcome(
        &self,
        outcome: &Result<T, E>,
    ) -> ControlFlow<(), Option<Classification>> {
        first_outcome(self.ok_rule, outcome)
    }

    /// [`decide_lean`](Self::decide_lean) for the first failure of a lean call, which the
    /// driver already gave the `Ok` rule ([`first_outcome`](Self::first_outcome)): the rule
    /// runs once per outcome. `forced` is the outcome's class when already known.
    ///
    /// # Panics
    ///
    /// On a call that already failed, or is not lean.
    #[allow(
        clippy::inline_always,
        reason = "a lean call's whole step inlined into the driver, as `record`'s"
    )]
    #[inline(always)]
    pub(crate) fn decide_first_failure(
        &mut self,
        outcome: &Result<T, E>,
        forced: Option<Classification>,
    ) -> Option<Duration> {
        let State::Fresh(times) = &self.state else {
            unreachable!("a first failure")
        };
        let (config, ok_rule, times) = (self.config, self.ok_rule, *times);
        self.become_lean(times)
            .decide(config, ok_rule, outcome, forced)
    }

    /// Whether the policy's calls start lean (see `Config::starts_lean`).
    #[inline]
    pub(crate) fn starts_lean(&self) -> bool {
        self.config.starts_lean()
    }

    /// [`start`](Self::start), out of line: for a call whose start reads the clock, from a
    /// first poll that is inlined where the future is awaited.
    #[inline(never)]
    pub(crate) fn start_reading(&mut self, timed: bool) {
        self.start(timed);
    }

    /// Whether the call is lean (see [`Call`]): its step is then [`decide_lean`](Self::decide_lean).
    #[inline]
    pub(crate) fn is_lean(&self) -> bool {
        !matches!(self.state, State::Full(_))
    }

    /// A lean call's step, the outcome left with the driver: `None` when the call is over
    /// (the outcome is its result), `Some(delay)` to sleep and try again. The same step as
    /// [`record`](Self::record)'s for a lean call, without moving the outcome in and out of a
    /// [`Next`]: the async driver's success path took twice the work through it. The first
    /// failure makes the engine's counts here, inline (out of line, as `record`'s
    /// `first_failure` is, a failing async call took 34 instructions more; the async driver's
    /// success path is no longer for it).
    ///
    /// # Panics
    ///
    /// On a call that is not lean ([`is_lean`](Self::is_lean)).
    #[allow(
        clippy::inline_always,
        reason = "a lean call's whole step inlined into the driver, as `record`'s"
    )]
    #[inline(always)]
    pub(crate) fn decide_lean(&mut self, outcome: &Result<T, E>) -> Option<Duration> {
        match &mut self.state {
            State::Fresh(_) => match first_outcome(self.ok_rule, outcome) {
                ControlFlow::Break(()) => None,
                ControlFlow::Continue(forced) => self.decide_first_failure(outcome, forced),
            },
            State::Lean(lean) => lean.decide(self.config, self.ok_rule, outcome, None),
            State::Full(_) => unreachable!("a full call's step is `record`"),
        }
    }

    /// A fresh call (started at `times`) becomes lean: the engine's counts are made.
    #[inline]
    fn become_lean(&mut self, times: Times) -> &mut Lean {
        debug_assert!(matches!(self.state, State::Fresh(_)));
        // The fresh state holds no resource (`Times` is `Copy`): forgotten rather than
        // dropped, as an assignment would, through the state's drop glue, out of line.
        core::mem::forget(core::mem::replace(
            &mut self.state,
            State::Lean(Lean::new(times)),
        ));
        let State::Lean(lean) = &mut self.state else {
            unreachable!("just made lean")
        };
        lean
    }

    /// Feeds an outcome in any state; `forced` is its class when it is already known (a
    /// timeout, or an `Ok` value the rule rejected).
    #[allow(
        clippy::inline_always,
        reason = "one function per kind of call holds the whole decision, the engine's \
                  included: no call per step of it, no reload of the policy's fields"
    )]
    #[inline(always)]
    fn step(&mut self, outcome: Result<T, E>, forced: Option<Classification>) -> Next<T, E> {
        let config = self.config;
        let lean = match &mut self.state {
            State::Full(full) => return full.record(config, self.ok_rule, outcome, forced),
            State::Lean(lean) => lean,
            State::Fresh(_) => return self.first_failure(outcome, forced),
        };
        match lean.decide(config, self.ok_rule, &outcome, forced) {
            Some(delay) => Next::Sleep(delay),
            None => Next::Done(outcome),
        }
    }

    /// The engine's record of the call (it has one once an attempt failed).
    fn engine(&self) -> Option<&Engine> {
        match &self.state {
            State::Fresh(_) => None,
            State::Lean(lean) => Some(&lean.engine),
            State::Full(full) => Some(&full.engine),
        }
    }

    /// Turns the final result into `execute`'s: the error with why and when the policy stopped.
    pub(crate) fn finish(&self, result: Result<T, E>) -> Result<T, RetryError<E>> {
        result.map_err(|error| self.stopped(Err(error)))
    }

    /// [`finish`](Self::finish) for a policy that retries some `Ok` values: a value the
    /// policy stopped on (it was rejected, and not retried) is an error too.
    pub(crate) fn finish_rejecting(&self, result: Result<T, E>) -> Result<T, RetryError<E, T>> {
        let stopped = self.engine().and_then(Engine::stop_reason).is_some();
        match result {
            Ok(value) if !stopped => Ok(value),
            Ok(value) => Err(self.stopped(Ok(value))),
            Err(error) => Err(self.stopped(Err(error))),
        }
    }

    fn stopped<V>(&self, last: Result<V, E>) -> RetryError<E, V> {
        let engine = self.engine();
        RetryError {
            last,
            stop: engine
                .and_then(Engine::stop_reason)
                .unwrap_or(StopReason::NonRetryable),
            attempts: engine.map_or(1, Engine::attempts),
            last_class: engine.and_then(Engine::last_class),
            elapsed: engine.map_or(Duration::ZERO, Engine::elapsed),
        }
    }
}

/// Whether the policy's `abort_if` condition says to stop.
#[inline]
fn aborted<E>(config: &Config<E>) -> bool {
    config.settings.abort.as_ref().is_some_and(|abort| abort())
}

impl<'p, E: fmt::Debug, T> Full<'p, E, T> {
    /// Asks the rate limiter, if any, for the next attempt's token, then the breaker, if any,
    /// for the attempt.
    fn admit(&mut self, config: &'p Config<E>) -> Next<T, E> {
        if let Some(limiter) = &config.settings.rate_limiter
            && let Err(wait) = limiter.try_acquire()
        {
            return self.wait_for_token(config, wait);
        }
        let next_attempt = self.engine.attempts().saturating_add(1);
        let Some(breaker) = &config.settings.breaker else {
            self.start_attempt(config);
            self.attempt_event(config, next_attempt);
            return Next::Attempt;
        };
        match breaker.admit() {
            Ok((admission, transition)) => {
                self.admission = Some(admission);
                self.start_attempt(config);
                self.emit_transition(config, transition, next_attempt, None);
                self.attempt_event(config, next_attempt);
                Next::Attempt
            }
            Err(open) => {
                if let Some(limiter) = &config.settings.rate_limiter {
                    // The attempt never starts: its token goes back.
                    limiter.give_back();
                }
                self.reject(config, open, next_attempt)
            }
        }
    }

    /// With [attempt events](crate::PolicyBuilder::attempt_events), reports the start of
    /// attempt `attempt` and notes the time. One check of a flag without them.
    #[inline]
    fn attempt_event(&mut self, config: &Config<E>, attempt: u32) {
        if config.settings.attempt_events {
            self.attempt_started(config, attempt);
        }
    }

    #[cold]
    #[inline(never)]
    fn attempt_started(&mut self, config: &Config<E>, attempt: u32) {
        if config.settings.hook.is_some() {
            // A hook's call reads the clock at its start, so `times.start` is set.
            let elapsed = config.since(self.times.start);
            // Microseconds, saturating at 71 minutes (see `Engine::attempt_started_us`).
            self.engine.attempt_started_us = u32::try_from(elapsed.as_micros())
                .unwrap_or(NO_ATTEMPT_START - 1)
                .min(NO_ATTEMPT_START - 1);
            emit(
                config,
                &event(config, EventKind::AttemptStarted, attempt, elapsed),
            );
        }
    }

    /// Reports the end of the attempt whose start [`attempt_started`](Self::attempt_started)
    /// noted.
    #[cold]
    #[inline(never)]
    fn attempt_finished(
        &mut self,
        config: &Config<E>,
        attempt: u32,
        failure: Option<Classification>,
        outcome: &Result<T, E>,
    ) {
        let elapsed = config.since(self.times.start);
        let started = core::mem::replace(&mut self.engine.attempt_started_us, NO_ATTEMPT_START);
        let mut e = event(config, EventKind::AttemptFinished, attempt, elapsed);
        e.duration = Some(elapsed.saturating_sub(Duration::from_micros(u64::from(started))));
        if let Some(c) = failure {
            let error = outcome.as_ref().err();
            e.class = Some(c.class);
            e.status = c.status;
            e.rejected = error.is_none();
            e.error = error.map(|e| e as &dyn fmt::Debug);
            e.std_error = error
                .zip(config.conversions.error_chain)
                .map(|(e, as_std)| as_std(e));
        }
        emit(config, &e);
    }

    /// The next attempt starts: its budget tokens are spent, and the last outcome is no
    /// longer needed. The first attempt counts the call in the budget (a call the breaker
    /// rejects never reaches the dependency, so it earns no share of retries for the others).
    fn start_attempt(&mut self, config: &Config<E>) {
        if self.engine.attempts() == 0
            && let Some(budget) = &config.settings.budget
        {
            budget.record_call();
        }
        if let Some(reserved) = self.reserved.take() {
            reserved.commit();
        }
        self.kept = None;
    }

    /// The rate limiter has no token for the next attempt before `wait`. Before a retry, the
    /// wait counts against the deadline as the backoff does: one that would reach it stops the
    /// call now with the last outcome. Before the first attempt there is no outcome to return:
    /// the call waits (see `PolicyBuilder::rate_limiter`).
    #[cold]
    fn wait_for_token(&mut self, config: &Config<E>, wait: Duration) -> Next<T, E> {
        if self.kept.is_some() && !self.times.allows_exactly(config, wait) {
            // The retry never starts: its budget tokens go back.
            self.reserved = None;
            self.engine.stopped(StopReason::DeadlineExceeded);
            if config.settings.hook.is_some() {
                let attempt = self.engine.attempts().saturating_add(1);
                let elapsed = config.since(self.times.start);
                let mut gave_up = event(config, EventKind::GaveUp, attempt, elapsed);
                gave_up.stop = Some(StopReason::DeadlineExceeded);
                gave_up.class = self.engine.last_class();
                emit(config, &gave_up);
            }
            if let Some(kept) = self.kept.take() {
                return Next::Done(kept);
            }
        }
        Next::Sleep(wait)
    }

    #[cold]
    fn reject(&mut self, config: &Config<E>, open: CircuitOpen, attempt: u32) -> Next<T, E> {
        // The retry never starts: its tokens go back to the budget.
        self.reserved = None;
        self.engine.stopped(StopReason::CircuitOpen);
        let elapsed = config.since(self.times.start);
        self.engine.record_elapsed(elapsed);
        if config.settings.hook.is_some() {
            emit(
                config,
                &event(config, EventKind::CircuitRejected, attempt, elapsed),
            );
            let mut gave_up = event(config, EventKind::GaveUp, attempt, elapsed);
            gave_up.stop = Some(StopReason::CircuitOpen);
            gave_up.class = self.engine.last_class();
            emit(config, &gave_up);
        }
        // A rejected retry returns the last attempt's own result; only a rejected first
        // attempt, which has none, returns the breaker's error.
        let kept = self.kept.take();
        Next::Done(kept.unwrap_or_else(|| Err(config.circuit_open(open))))
    }

    /// Feeds an outcome; `forced` is its class when it is already known.
    #[inline(never)]
    fn record<R: OkClassifier<T>>(
        &mut self,
        config: &'p Config<E>,
        ok_rule: &R,
        outcome: Result<T, E>,
        forced: Option<Classification>,
    ) -> Next<T, E> {
        let attempt = self.engine.begin_attempt();
        let failure = match (forced, &outcome) {
            (Some(c), _) => Some(c),
            (None, Ok(value)) => ok_rule.classify_ok(value),
            (None, Err(error)) => Some(config.classifier.classify(error)),
        };
        if self.engine.attempt_started_us != NO_ATTEMPT_START {
            self.attempt_finished(config, attempt, failure, &outcome);
        }
        let Some(c) = failure else {
            self.succeed(config, attempt);
            return Next::Done(outcome);
        };
        match self.fail(config, attempt, c, outcome.as_ref().err()) {
            Some(delay) => {
                // A retry the breaker rejects, or whose token would come after the deadline,
                // returns this outcome.
                if config.settings.breaker.is_some() || config.settings.rate_limiter.is_some() {
                    self.kept = Some(outcome);
                }
                Next::Sleep(delay)
            }
            None => Next::Done(outcome),
        }
    }

    fn succeed(&mut self, config: &Config<E>, attempt: u32) {
        if let Some(admission) = self.admission.take() {
            let t = admission.record(None);
            self.emit_transition(config, t, attempt, None);
        }
        if let Some(budget) = &config.settings.budget {
            budget.record_success(self.engine.last_class());
        }
        if let Some(limiter) = &config.settings.rate_limiter {
            limiter.observe(None, None, config.settings.max_server_delay);
        }
        if config.settings.hook.is_some() {
            let elapsed = config.since(self.times.start);
            emit(config, &event(config, EventKind::Success, attempt, elapsed));
        }
    }

    fn fail(
        &mut self,
        config: &'p Config<E>,
        attempt: u32,
        c: Classification,
        error: Option<&E>,
    ) -> Option<Duration> {
        if let Some(admission) = self.admission.take() {
            let t = admission.record(Some(c.class));
            self.emit_transition(config, t, attempt, Some(c.class));
        }
        // Every failed attempt is recorded, retried or not (gRPC's throttling charges each).
        if let Some(budget) = &config.settings.budget {
            budget.record_failure();
        }
        if let Some(limiter) = &config.settings.rate_limiter {
            limiter.observe(
                Some(c.class),
                c.retry_after,
                config.settings.max_server_delay,
            );
        }
        let mut decision = self.times.decide(config, &mut self.engine, attempt, c);
        let elapsed = self.engine.elapsed();
        if let Decision::Retry(delay) = decision
            && let Some(reason) = self.protect(config, c.class, delay)
        {
            self.engine.stopped(reason);
            decision = Decision::Stop(reason);
        }
        if config.settings.hook.is_some() {
            let mut event = event(config, EventKind::Retry, attempt, elapsed);
            event.class = Some(c.class);
            event.status = c.status;
            event.rejected = error.is_none();
            event.error = error.map(|e| e as &dyn fmt::Debug);
            event.std_error = error
                .zip(config.conversions.error_chain)
                .map(|(e, as_std)| as_std(e));
            match decision {
                Decision::Retry(d) => event.delay = Some(d),
                Decision::Stop(reason) => {
                    event.kind = EventKind::GaveUp;
                    event.stop = Some(reason);
                }
            }
            emit(config, &event);
        }
        match decision {
            Decision::Retry(d) => Some(d),
            Decision::Stop(_) => None,
        }
    }

    /// What may still stop a retry the engine allowed, in order: the abort condition, a
    /// circuit that will still be open after the delay, an empty budget. Otherwise the
    /// budget's tokens are reserved for the retry.
    fn protect(
        &mut self,
        config: &'p Config<E>,
        class: ErrorClass,
        delay: Duration,
    ) -> Option<StopReason> {
        if aborted(config) {
            return Some(StopReason::Aborted);
        }
        if let Some(breaker) = &config.settings.breaker
            && breaker.rejects_after(delay)
        {
            // The circuit is open and still will be after the delay: the retry would be
            // rejected, so stop now with this error instead of sleeping for nothing.
            return Some(StopReason::CircuitOpen);
        }
        if let Some(budget) = &config.settings.budget {
            match budget.reserve(class) {
                Some(reserved) => self.reserved = Some(reserved),
                None => return Some(StopReason::BudgetExhausted),
            }
        }
        None
    }

    /// Reports a breaker's change of state; `class` is the class of the failure that caused
    /// it, if one did.
    fn emit_transition(
        &self,
        config: &Config<E>,
        transition: Option<Transition>,
        attempt: u32,
        class: Option<ErrorClass>,
    ) {
        if let Some(t) = transition
            && config.settings.hook.is_some()
        {
            let kind = match t {
                Transition::Opened => EventKind::CircuitOpened,
                Transition::HalfOpened => EventKind::CircuitHalfOpen,
                Transition::Closed => EventKind::CircuitClosed,
            };
            let mut event = event(config, kind, attempt, config.since(self.times.start));
            event.class = class;
            emit(config, &event);
        }
    }
}

/// Calls the policy's hook, if any, with `event`.
pub(crate) fn emit<E>(config: &Config<E>, event: &RetryEvent<'_>) {
    if let Some(hook) = &config.settings.hook {
        // A panicking hook is contained: the panic is reported by the panic hook as usual, and
        // the decision it was told about stands (the value is still returned, the error still
        // retried or given back). Observability must not change behaviour.
        let _ = catch_unwind(AssertUnwindSafe(|| hook(event)));
    }
}

/// An event of `kind` with nothing else set.
pub(crate) fn event<E>(
    config: &Config<E>,
    kind: EventKind,
    attempt: u32,
    elapsed: Duration,
) -> RetryEvent<'_> {
    RetryEvent {
        kind,
        stop: None,
        attempt,
        class: None,
        delay: None,
        elapsed,
        operation: config.settings.operation.as_deref(),
        error: None,
        rejected: false,
        status: None,
        std_error: None,
        hedge: false,
        duration: None,
    }
}

#[cfg(all(test, feature = "coarse-clock", target_os = "linux"))]
mod coarse_tests {
    //! The deadline on Linux's coarse clock, whose readings lag the real time: by a tick
    //! (`clock_getres`), and on a loaded virtual machine by several.

    use super::*;
    use crate::classify::Classifier;
    use crate::settings::{Conversions, Deadline, Settings};
    use crate::time::{TimeSource, coarse};
    use std::sync::Arc;

    fn config(deadline: Deadline) -> Config<()> {
        let mut settings = Settings::new();
        settings.deadline = Some(deadline);
        let classifier: Arc<dyn Classifier<()> + Send + Sync> =
            Arc::new(|(): &()| ErrorClass::Transient);
        Config::new(
            settings,
            classifier,
            Conversions::NONE,
            TimeSource::Blocking,
        )
    }

    const DEADLINE: Duration = Duration::from_secs(60);
    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_retry_near_the_deadline_is_checked_on_the_fine_clock() {
        let config = config(Deadline::FromStart(DEADLINE));
        // A call that started 59.99 s ago (by both clocks: a stamp of the coarse clock's own
        // timeline, which the fine clock shares).
        let start = coarse::now().saturating_sub(DEADLINE.saturating_sub(10 * MS));
        let times = Times {
            start: Some(Stamp::Nanos(saturating_nanos(start))),
            origin_nanos: 0,
        };
        // A coarse reading 20 ms behind the real time: 59.97 s. A retry in 15 ms then looks
        // 15 ms early by it, and is 5 ms late (at least) by the fine clock: the engine asks for
        // it to be confirmed, and it is not.
        let lagging = DEADLINE.saturating_sub(30 * MS);
        let rules = &config.rules;
        assert_eq!(rules.deadline_guard, Duration::from_secs(1));
        let mut engine = Engine::new();
        engine.begin_attempt();
        let confirm = |delay| times.allows_exactly(&config, delay);
        let transient = Classification::new(ErrorClass::Transient);
        let mut strategy_settings = Settings::new();
        strategy_settings.default_strategy = Arc::new(crate::strategies::constant(15 * MS));
        strategy_settings.deadline = Some(Deadline::FromStart(DEADLINE));
        let rules = strategy_settings.rules(&TimeSource::Blocking);
        assert_eq!(
            engine.on_failure(&rules, transient, lagging, confirm),
            Decision::Stop(crate::stop::StopReason::DeadlineExceeded)
        );
        // Near the deadline, the fine clock allows what it should; far from it, the engine
        // does not ask.
        assert!(times.allows_exactly(&config, MS));
        let mut engine = Engine::new();
        engine.begin_attempt();
        let asked = core::cell::Cell::new(false);
        let decision = engine.on_failure(&rules, transient, Duration::ZERO, |_| {
            asked.set(true);
            true
        });
        assert_eq!((decision, asked.get()), (Decision::Retry(15 * MS), false));
    }

    #[test]
    fn the_inline_clock_reads_as_the_policy_s_source() {
        // The coarse clock, read inline: the same stamps and rounded times as the source's
        // own `now` and `since` (bracketed by them, the clock moving on meanwhile).
        let config = config(Deadline::FromFirstFailure(DEADLINE));
        assert!(config.rules.coarse_clock);
        let start = now(&config);
        assert!(matches!(start, Stamp::Nanos(_)));
        let before = saturating_nanos(config.time.since(start));
        let inline = nanos_since(&config, start);
        let after = saturating_nanos(config.time.since(start));
        assert!(
            before <= inline && inline <= after,
            "{before} {inline} {after}"
        );
        assert!(inline >= saturating_nanos(coarse::resolution()));
        // Any other source goes through the source itself: a virtual clock, standing still,
        // gives exactly its time.
        let clock = crate::time::VirtualClock::new();
        let mut settings = Settings::new();
        settings.deadline = Some(Deadline::FromFirstFailure(DEADLINE));
        let classifier: Arc<dyn Classifier<()> + Send + Sync> =
            Arc::new(|(): &()| ErrorClass::Transient);
        let time = TimeSource::Virtual(clock.clone());
        let config = Config::new(settings, classifier, Conversions::NONE, time);
        assert!(!config.rules.coarse_clock);
        let start = now(&config);
        clock.advance(3 * MS);
        assert_eq!(nanos_since(&config, start), 3_000_000);
    }

    #[test]
    fn the_origin_of_the_default_deadline_keeps_the_rounding_up() {
        // A call that read its start (for `execute` or a hook), with the default deadline.
        let config = config(Deadline::FromFirstFailure(DEADLINE));
        let mut times = Times::new(&config, true);
        let mut engine = Engine::new();
        assert_eq!(times.at_failure(&config, 1, &mut engine), Duration::ZERO);
        // At once after the first failure: the time since it is measured rounded up by a
        // tick, as every time on this clock is, so the deadline is never judged late. (Two
        // rounded readings subtracted would cancel the rounding out.)
        let since_origin = times.at_failure(&config, 2, &mut engine);
        assert!(
            since_origin >= coarse::resolution(),
            "{since_origin:?} < {:?}",
            coarse::resolution()
        );
    }
}
