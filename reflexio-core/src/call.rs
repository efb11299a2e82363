//! One async call's state, as `#[retry]`'s generated loop and the policy's own loop (for a
//! policy that is not lean, or has an attempt timeout) drive it.

use core::fmt;
use core::ops::ControlFlow;

use crate::class::{Classification, ErrorClass};
use crate::engine::{Attempts, Config, Engine, Next};
use crate::ok::{OkClassifier, first_outcome};
use crate::time::Stamp;

/// The state of one call, fed each attempt's outcome by a driver exactly like [`Attempts`]
/// (`begin`, `record` each outcome, `resume` after each sleep, until [`Next::Done`]), but made
/// in proportion to what the policy needs.
///
/// A *lean* policy (no breaker, budget or event hook: [`Config::lean`]) has nothing to do
/// before the first attempt but read the clock for a deadline, and nothing after a success:
/// the call starts `Fresh`, a success ends it at once, and only a failure makes the engine's
/// counts (`Lean`), which then decide each retry with no events, breaker or budget to drive.
/// Any other policy gets the full per-call state from the start.
///
/// Not public API: reachable only through the facade's hidden `__private` module.
#[doc(hidden)]
pub struct Call<'p, E, T, R> {
    config: &'p Config<E>,
    ok_rule: &'p R,
    state: State<'p, E, T, R>,
}

// The variants are not boxed: boxing would allocate on every call.
#[allow(clippy::large_enum_variant)]
enum State<'p, E, T, R> {
    /// A lean call before its first outcome: only the start time, when there is a deadline.
    Fresh(Option<Stamp>),
    /// A lean call after a failure: the engine's counts.
    Lean(Option<Stamp>, Engine),
    /// Everything: breaker permits, budget, events.
    Full(Attempts<'p, E, T, R>),
}

impl<E, T, R> fmt::Debug for Call<'_, E, T, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.state {
            State::Fresh(_) => f.write_str("Call(Fresh)"),
            State::Lean(_, engine) => f.debug_tuple("Call(Lean)").field(engine).finish(),
            State::Full(attempts) => f.debug_tuple("Call").field(attempts).finish(),
        }
    }
}

impl<'p, E, T, R> Call<'p, E, T, R> {
    /// A call of a policy with `config` and `ok_rule`: `Fresh` when the policy is lean.
    #[inline]
    pub(crate) fn new(config: &'p Config<E>, ok_rule: &'p R) -> Self {
        if config.lean() {
            Call {
                config,
                ok_rule,
                state: State::Fresh(config.lean_start()),
            }
        } else {
            Call::full(config, ok_rule)
        }
    }

    /// A call with the full per-call state from the start. Out of line: inlined, its stores
    /// would be made before the lean check and thrown away when it passes.
    #[inline(never)]
    fn full(config: &'p Config<E>, ok_rule: &'p R) -> Self {
        Call {
            config,
            ok_rule,
            state: State::Full(config.start(ok_rule, false)),
        }
    }
}

impl<E: fmt::Debug, T, R: OkClassifier<T>> Call<'_, E, T, R> {
    /// Starts the call: what to do first.
    #[inline]
    pub fn begin(&mut self) -> Next<T, E> {
        match &mut self.state {
            State::Full(attempts) => attempts.begin(),
            State::Fresh(_) | State::Lean(..) => Next::Attempt,
        }
    }

    /// After a sleep: what to do next.
    #[inline]
    pub fn resume(&mut self) -> Next<T, E> {
        match &mut self.state {
            State::Full(attempts) => attempts.resume(),
            State::Fresh(_) | State::Lean(..) => Next::Attempt,
        }
    }

    /// Feeds the outcome of one attempt and says what to do next.
    #[allow(
        clippy::inline_always,
        reason = "a success of a lean call is one check of the state and one of the `Ok` rule: \
                  inlined into the driver, it costs no call"
    )]
    #[inline(always)]
    pub fn record(&mut self, outcome: Result<T, E>) -> Next<T, E> {
        let State::Fresh(start) = self.state else {
            return self.record_later(outcome);
        };
        // The success path, small enough to inline into the drivers: one check of the rule.
        match first_outcome(self.ok_rule, &outcome) {
            ControlFlow::Break(()) => Next::Done(outcome),
            ControlFlow::Continue(rejected_ok) => self.first_failure(start, outcome, rejected_ok),
        }
    }

    /// Feeds the outcome of a later attempt, or of any attempt of a full call.
    #[inline(never)]
    fn record_later(&mut self, outcome: Result<T, E>) -> Next<T, E> {
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

    /// Feeds an outcome in any state; `forced` is its class when it is already known (a
    /// timeout, or an `Ok` value the rule rejected).
    #[allow(
        clippy::inline_always,
        reason = "one function per kind of call holds the whole decision, the engine's \
                  included: no call per step of it, no reload of the policy's fields (a tenth \
                  fewer instructions for an async `#[retry]` call with 4 retries)"
    )]
    #[inline(always)]
    fn step(&mut self, outcome: Result<T, E>, forced: Option<Classification>) -> Next<T, E> {
        match &mut self.state {
            State::Full(attempts) => attempts.record_as(outcome, forced),
            State::Lean(start, engine) => {
                let delay = engine.next_lean(self.config, self.ok_rule, &outcome, forced, *start);
                Next::after(delay, outcome)
            }
            State::Fresh(start) => {
                let start = *start;
                self.first_failure(start, outcome, forced)
            }
        }
    }

    /// The first failure of a lean call: makes the engine's counts, then decides with them.
    /// Cold: a call that succeeds at once never gets here.
    #[cold]
    fn first_failure(
        &mut self,
        start: Option<Stamp>,
        outcome: Result<T, E>,
        forced: Option<Classification>,
    ) -> Next<T, E> {
        self.state = State::Lean(start, Engine::new());
        self.step(outcome, forced)
    }
}

/// What the policy's async loop drives: a [`Call`], or the full [`Attempts`] of `execute`
/// (which needs their record of why the call stopped).
pub(crate) trait Driven<T, E> {
    fn record(&mut self, outcome: Result<T, E>) -> Next<T, E>;
    fn record_timeout(&mut self) -> Next<T, E>;
    fn resume(&mut self) -> Next<T, E>;
}

impl<E: fmt::Debug, T, R: OkClassifier<T>> Driven<T, E> for Call<'_, E, T, R> {
    #[inline]
    fn record(&mut self, outcome: Result<T, E>) -> Next<T, E> {
        Call::record(self, outcome)
    }
    fn record_timeout(&mut self) -> Next<T, E> {
        Call::record_timeout(self)
    }
    #[inline]
    fn resume(&mut self) -> Next<T, E> {
        Call::resume(self)
    }
}

impl<E: fmt::Debug, T, R: OkClassifier<T>> Driven<T, E> for Attempts<'_, E, T, R> {
    #[inline]
    fn record(&mut self, outcome: Result<T, E>) -> Next<T, E> {
        Attempts::record(self, outcome)
    }
    fn record_timeout(&mut self) -> Next<T, E> {
        Attempts::record_timeout(self)
    }
    fn resume(&mut self) -> Next<T, E> {
        Attempts::resume(self)
    }
}
