//! The decision engine: after a failure, stop (and why) or wait how long.
//!
//! [`Engine`] is pure: no clock reads, no sleeping, no I/O. The time since the deadline's
//! origin is passed in, and the random numbers come from the policy's [`Randomness`] (a seeded
//! one repeats exactly). The one per-call state ([`Call`](crate::call::Call)) holds an engine
//! and asks it after every failure; everything impure (the clock, events, breaker, budget)
//! stays there.

use core::time::Duration;
use std::sync::Arc;

use crate::class::{Classification, ErrorClass};
use crate::random::{CallRng, Randomness};
use crate::stop::StopReason;
use crate::strategies::{BackoffContext, Strategy};
use crate::time::saturating_nanos;

/// The engine's answer after a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    Retry(Duration),
    Stop(StopReason),
}

/// What the engine decides with, built once per policy from its settings.
#[derive(Clone)]
pub(crate) struct Rules {
    /// Per class: its strategy (its own, or the default).
    pub(crate) strategies: [Arc<dyn Strategy>; 8],
    /// Per class: the most failures of the class that may still be retried (0 for a class
    /// never retried; the class cap, and for `Unknown` the lower of it and its own cap), so
    /// that a decision checks one number where it checked three conditions.
    pub(crate) limits: [u32; 8],
    /// Per class: whether the strategy reads its random number ([`Strategy::uses_random`]).
    pub(crate) random: [bool; 8],
    /// The class caps as set, to tell why a limit stopped a call.
    pub(crate) class_caps: [Option<u32>; 8],
    pub(crate) max_attempts: u32,
    pub(crate) deadline: Option<Duration>,
    /// How far from the deadline a retry must be scheduled for the time the engine is given to
    /// be trusted: zero for an exact clock; for one that lags (the coarse clock), a retry
    /// scheduled nearer than this is confirmed on an exact clock.
    pub(crate) deadline_guard: Duration,
    pub(crate) max_server_delay: Duration,
    pub(crate) randomness: Randomness,
    /// Per class: the delay of a strategy that always gives the same one and draws no random
    /// number ([`Strategy::constant_delay`]), in nanoseconds, or [`NOT_CONSTANT`]. Such a
    /// class's retry takes it as it is (at least the server's delay): no `dyn Strategy` call,
    /// no [`BackoffContext`], no conversions. A call failing 4 times under `no_delay()`, no
    /// deadline: 694 -> 517 instructions under callgrind (`benches/instructions.sh`), 44 a
    /// retry.
    pub(crate) constant_nanos: [u64; 8],
    /// The same delays as `Duration`s (zero where not constant), so that the fast path does
    /// not divide nanoseconds back into seconds.
    pub(crate) constant_delays: [Duration; 8],
    /// `deadline` in nanoseconds, saturating at `u64::MAX`, and `u64::MAX` without one: the
    /// cheap first check of every decision ([`Engine::decide`]), where `Duration` arithmetic
    /// normalises nanoseconds into seconds at every step.
    pub(crate) deadline_nanos: u64,
    /// From how many nanoseconds after the deadline's origin a retry's start may be near
    /// enough the deadline to stop it, or to need confirming: `deadline_nanos` less
    /// `deadline_guard` (saturating), so that a decision compares once where it added the
    /// guard first.
    pub(crate) near_deadline_nanos: u64,
    /// Not the engine's: whether the policy's clock is the coarse one, which the call state
    /// then reads inline (`call.rs`, `nanos_since`).
    #[cfg_attr(
        not(all(feature = "coarse-clock", target_os = "linux")),
        allow(dead_code, reason = "read only where the coarse clock is")
    )]
    pub(crate) coarse_clock: bool,
    /// Not the engine's: what the policy's clock adds to every measured time to round it up
    /// (`TimeSource::rounding`), in nanoseconds, read once at build.
    pub(crate) clock_rounding_nanos: u64,
}

/// No constant delay for this class (see [`Rules::constant_nanos`]): a delay of `u64::MAX`
/// nanoseconds or more takes the general path.
pub(crate) const NOT_CONSTANT: u64 = u64::MAX;

impl Rules {
    /// Why a class that reached its limit (`failures` above it) stops, in the documented
    /// order: never retried, then the class's own cap, then the `Unknown` cap.
    #[cold]
    fn limit_reason(&self, class: ErrorClass, failures: u32) -> StopReason {
        if !class.is_retryable() {
            StopReason::NonRetryable
        } else if self.class_caps[class.index()].is_some_and(|cap| failures > cap) {
            StopReason::MaxRetriesForClass
        } else {
            StopReason::MaxUnknownRetries
        }
    }

    /// Whether the deadline has passed `elapsed` nanoseconds after its origin, exactly: the
    /// check behind the cheap one (`elapsed >= deadline_nanos`), which is also true without a
    /// deadline and for one beyond `u64::MAX` nanoseconds.
    #[cold]
    #[inline(never)]
    fn deadline_passed(&self, elapsed: u64) -> bool {
        self.deadline
            .is_some_and(|deadline| Duration::from_nanos(elapsed) >= deadline)
    }

    /// Whether a retry after `delay`, `elapsed` nanoseconds after the deadline's origin, would
    /// start at or after the deadline, exactly, with a retry scheduled within
    /// `deadline_guard` of it confirmed by `confirm`: the check behind the cheap one, which
    /// lets through every retry that starts more than `deadline_guard` before it.
    #[cold]
    #[inline(never)]
    fn reaches_deadline(
        &self,
        elapsed: u64,
        delay: Duration,
        confirm: impl FnOnce(Duration) -> bool,
    ) -> bool {
        let Some(deadline) = self.deadline else {
            return false;
        };
        let reach = Duration::from_nanos(elapsed).saturating_add(delay);
        reach >= deadline
            || (reach.saturating_add(self.deadline_guard) >= deadline && !confirm(delay))
    }
}

/// The classes a policy may retry, [`ErrorClass::ALL`]'s last five: the per-class counts keep
/// only theirs (a class never retried stops at its first failure, counting nothing).
const RETRYABLE: usize = 5;

/// The index of a retryable class among [`RETRYABLE`]'s; `None` for a class never retried.
#[inline]
fn retryable_index(class: ErrorClass) -> Option<usize> {
    class.index().checked_sub(ErrorClass::ALL.len() - RETRYABLE)
}

/// No previous delay for this class yet. Delays are kept to the nanosecond up to
/// `u64::MAX - 1` ns (584 years); longer ones are remembered as that.
const NO_DELAY_YET: u64 = u64::MAX;

/// The per-call retry state: counts, history and how the call ended; no time, no I/O.
#[derive(Debug)]
pub(crate) struct Engine {
    /// Attempts made so far (the number of the attempt that just ended).
    attempt: u32,
    /// Failures of each retryable class ([`retryable_index`]).
    class_failures: [u32; RETRYABLE],
    /// Each retryable class's previous delay in nanoseconds, [`NO_DELAY_YET`] before the
    /// first: half the size of `Option<Duration>`, and this state lives in every async call's
    /// future.
    prev_delay: [u64; RETRYABLE],
    /// The call's own random stream, for a seeded policy: made on the first draw.
    rng: CallRng,
    /// The class of the last failure.
    last_class: Option<ErrorClass>,
    /// Why the call stopped, once it did.
    stop: Option<StopReason>,
    /// The time from the call's start to its last decision, in nanoseconds, for `execute`'s
    /// error ([`Engine::record_elapsed`]).
    elapsed_nanos: u64,
    /// Not a count of the engine's: the start of the attempt in flight, in microseconds after
    /// the call's start ([`NO_ATTEMPT_START`] when none), for the call's attempt events. Kept
    /// here because it fits in this struct's padding: the async call's future, which makes
    /// room for the call's full state, does not grow.
    pub(crate) attempt_started_us: u32,
}

/// No attempt start recorded (see [`Engine::attempt_started_us`]).
pub(crate) const NO_ATTEMPT_START: u32 = u32::MAX;

impl Engine {
    pub(crate) const fn new() -> Self {
        Engine {
            attempt: 0,
            class_failures: [0; RETRYABLE],
            prev_delay: [NO_DELAY_YET; RETRYABLE],
            rng: 0,
            last_class: None,
            stop: None,
            elapsed_nanos: 0,
            attempt_started_us: NO_ATTEMPT_START,
        }
    }

    /// The number of attempts made so far.
    pub(crate) fn attempts(&self) -> u32 {
        self.attempt
    }

    /// The class of the last failure.
    pub(crate) fn last_class(&self) -> Option<ErrorClass> {
        self.last_class
    }

    /// Why the call stopped, if it did.
    pub(crate) fn stop_reason(&self) -> Option<StopReason> {
        self.stop
    }

    /// The time from the call's start to its last decision.
    pub(crate) fn elapsed(&self) -> Duration {
        Duration::from_nanos(self.elapsed_nanos)
    }

    /// Records the time from the call's start to this decision (the call state measures it:
    /// the engine is given only the time since the deadline's origin).
    #[inline]
    pub(crate) fn record_elapsed(&mut self, elapsed: Duration) {
        self.elapsed_nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
    }

    /// [`record_elapsed`](Self::record_elapsed), in nanoseconds.
    #[inline]
    pub(crate) fn record_elapsed_nanos(&mut self, elapsed: u64) {
        self.elapsed_nanos = elapsed;
    }

    /// Records the start of an attempt and returns its 1-based number.
    #[inline]
    pub(crate) fn begin_attempt(&mut self) -> u32 {
        self.attempt = self.attempt.saturating_add(1);
        self.attempt
    }

    /// Records a stop decided outside the engine (an abort, the breaker, the budget).
    pub(crate) fn stopped(&mut self, reason: StopReason) {
        self.stop = Some(reason);
    }

    /// Decides what follows the failure `c` of the current attempt, `elapsed` after the
    /// deadline's origin (taken as `u64::MAX` nanoseconds, 584 years, beyond): see
    /// [`on_failure_nanos`](Self::on_failure_nanos).
    #[allow(
        clippy::inline_always,
        reason = "the decision of every retry: out of line, each pays a call and the reload of \
                  the policy's fields"
    )]
    #[inline(always)]
    pub(crate) fn on_failure(
        &mut self,
        rules: &Rules,
        c: Classification,
        elapsed: Duration,
        confirm: impl FnOnce(Duration) -> bool,
    ) -> Decision {
        self.on_failure_nanos(rules, c, saturating_nanos(elapsed), confirm)
    }

    /// Decides what follows the failure `c` of the current attempt, `elapsed` nanoseconds
    /// after the deadline's origin.
    ///
    /// Order: non-retryable class; the class's retry cap; the `Unknown` cap; the global attempt
    /// cap (no sleep after the last allowed attempt); the deadline already passed; the delay
    /// from the class's strategy, at least the server's `retry_after`; the deadline (stop now
    /// rather than sleep into it); a server delay over the bound. A random number is drawn
    /// only for a strategy that reads one.
    ///
    /// Times are in nanoseconds: every clock's time since a call's start fits in a `u64`
    /// (584 years; the clocks count from boot, and a virtual clock's stamps saturate there).
    #[allow(
        clippy::inline_always,
        reason = "the decision of every retry: out of line, each pays a call and the reload of \
                  the policy's fields"
    )]
    #[inline(always)]
    pub(crate) fn on_failure_nanos(
        &mut self,
        rules: &Rules,
        c: Classification,
        elapsed: u64,
        confirm: impl FnOnce(Duration) -> bool,
    ) -> Decision {
        let decision = self.decide(rules, c, elapsed, confirm);
        if let Decision::Stop(reason) = decision {
            self.stop = Some(reason);
        }
        decision
    }

    #[allow(clippy::inline_always, reason = "the body of `on_failure`")]
    #[inline(always)]
    fn decide(
        &mut self,
        rules: &Rules,
        c: Classification,
        elapsed: u64,
        confirm: impl FnOnce(Duration) -> bool,
    ) -> Decision {
        let class = c.class;
        let i = class.index();
        self.last_class = Some(class);
        let Some(r) = retryable_index(class) else {
            return Decision::Stop(StopReason::NonRetryable);
        };
        self.class_failures[r] = self.class_failures[r].saturating_add(1);
        let failures = self.class_failures[r];

        // The class's cap, the `Unknown` cap, both in one compare (`n` retries of a class means
        // at most `n + 1` attempts end in that class).
        if failures > rules.limits[i] {
            return Decision::Stop(rules.limit_reason(class, failures));
        }
        if self.attempt >= rules.max_attempts {
            return Decision::Stop(StopReason::MaxAttempts);
        }
        // One compare, true only near a deadline's end (or past 584 years without one); the
        // exact check behind it.
        if elapsed >= rules.deadline_nanos && rules.deadline_passed(elapsed) {
            return Decision::Stop(StopReason::DeadlineExceeded);
        }

        // The delay and its nanoseconds (saturating), which the class's strategy sees as its
        // previous delay next time.
        let constant = rules.constant_nanos[i];
        let (delay, nanos) = if constant == NOT_CONSTANT {
            self.strategy_delay(rules, c, r)
        } else {
            // A constant strategy (`no_delay()`, `constant(..)`): its delay, computed at build,
            // is what `delay` would return, and it reads no random number.
            self.prev_delay[r] = constant;
            let delay = rules.constant_delays[i];
            match c.retry_after {
                Some(server) => (delay.max(server), constant.max(saturating_nanos(server))),
                None => (delay, constant),
            }
        };

        // The next attempt must start strictly before the deadline: sleeping up to it (or past
        // it) would only delay the failure. Near it, on a clock that lags, `confirm` checks the
        // retry again on an exact one. The cheap compare lets through, exactly, every retry
        // that starts more than the guard before the deadline (and every one without a
        // deadline): the sum saturates, and the threshold is at most the deadline less the
        // guard, so the exact check runs whenever it could stop.
        if elapsed.saturating_add(nanos) >= rules.near_deadline_nanos
            && rules.reaches_deadline(elapsed, delay, confirm)
        {
            return Decision::Stop(StopReason::DeadlineExceeded);
        }
        // A server asking for more than the bound stops the call now (when the deadline did
        // not already): sleeping that long could park the caller for as long as the server
        // likes, and retrying sooner would ignore what it asked.
        if let Some(server) = c.retry_after
            && server > rules.max_server_delay
        {
            return Decision::Stop(StopReason::ServerDelayTooLong);
        }
        Decision::Retry(delay)
    }

    /// The delay from the class's strategy (class index `r` among the retryable ones), at
    /// least the server's, and its nanoseconds (saturating); records the strategy's own delay
    /// as the class's previous one.
    #[allow(clippy::inline_always, reason = "part of the body of `on_failure`")]
    #[inline(always)]
    fn strategy_delay(&mut self, rules: &Rules, c: Classification, r: usize) -> (Duration, u64) {
        let i = c.class.index();
        // A strategy without jitter costs no random number.
        let u = if rules.random[i] {
            rules.randomness.uniform(&mut self.rng)
        } else {
            0.0
        };
        let mut ctx = BackoffContext::new(self.attempt, c.class);
        ctx.prev_delay = match self.prev_delay[r] {
            NO_DELAY_YET => None,
            nanos => Some(Duration::from_nanos(nanos)),
        };
        ctx.retry_after = c.retry_after;
        let computed = rules.strategies[i].delay(&ctx, u);
        let nanos = saturating_nanos(computed);
        self.prev_delay[r] = nanos.min(NO_DELAY_YET - 1);
        match c.retry_after {
            Some(server) => (computed.max(server), nanos.max(saturating_nanos(server))),
            None => (computed, nanos),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::{Deadline, Settings};
    use crate::strategies::{constant, exponential, full_jitter, no_delay};

    fn rules(edit: impl FnOnce(&mut Settings)) -> Rules {
        let mut settings = Settings::new();
        settings.default_strategy = Arc::new(no_delay());
        settings.deadline = None;
        edit(&mut settings);
        settings.rules(&crate::time::TimeSource::Blocking)
    }

    const S: Duration = Duration::from_secs(1);
    const MS: Duration = Duration::from_millis(1);

    fn class(c: ErrorClass) -> Classification {
        Classification::new(c)
    }

    /// Feeds failures of `classes` in turn, each `elapsed` as given, until a stop.
    fn run(rules: &Rules, failures: &[(ErrorClass, Duration)]) -> (Vec<Duration>, StopReason) {
        let mut engine = Engine::new();
        let mut delays = Vec::new();
        for &(c, elapsed) in failures {
            engine.begin_attempt();
            match engine.on_failure(rules, class(c), elapsed, |_| true) {
                Decision::Retry(d) => delays.push(d),
                Decision::Stop(reason) => {
                    assert_eq!(engine.stop_reason(), Some(reason));
                    assert_eq!(engine.last_class(), Some(c));
                    return (delays, reason);
                }
            }
        }
        panic!("no stop after {failures:?}");
    }

    #[test]
    fn the_retryable_classes_are_the_last_five() {
        for class in ErrorClass::ALL {
            assert_eq!(
                retryable_index(class).is_some(),
                class.is_retryable(),
                "{class}"
            );
        }
    }

    #[test]
    fn never_retried_classes_stop_at_once() {
        let r = rules(|_| {});
        for c in [
            ErrorClass::Auth,
            ErrorClass::Permission,
            ErrorClass::Permanent,
        ] {
            assert_eq!(
                run(&r, &[(c, Duration::ZERO)]),
                (vec![], StopReason::NonRetryable)
            );
        }
    }

    #[test]
    fn max_attempts_counts_the_first() {
        let r = rules(|s| s.max_attempts = 3);
        let t = (ErrorClass::Transient, Duration::ZERO);
        assert_eq!(
            run(&r, &[t; 5]),
            (vec![Duration::ZERO; 2], StopReason::MaxAttempts)
        );
    }

    #[test]
    fn class_caps_then_the_unknown_cap() {
        let r = rules(|s| {
            s.class_caps[ErrorClass::RateLimit.index()] = Some(1);
            s.max_unknown_retries = Some(2);
        });
        let rl = (ErrorClass::RateLimit, Duration::ZERO);
        assert_eq!(run(&r, &[rl; 3]).1, StopReason::MaxRetriesForClass);
        let unknown = (ErrorClass::Unknown, Duration::ZERO);
        let (delays, stop) = run(&r, &[unknown; 4]);
        assert_eq!((delays.len(), stop), (2, StopReason::MaxUnknownRetries));
        // The caps count failures of their own class only.
        let mixed = [rl, unknown, unknown, rl];
        assert_eq!(
            run(&r, &mixed),
            (vec![Duration::ZERO; 3], StopReason::MaxRetriesForClass)
        );
    }

    #[test]
    fn the_deadline_stops_before_a_sleep_would_reach_it() {
        let r = rules(|s| {
            s.default_strategy = Arc::new(constant(300 * MS));
            s.deadline = Some(Deadline::FromStart(S));
        });
        let t = |ms: u32| (ErrorClass::Transient, ms * MS);
        // 0 + 300 < 1000, 400 + 300 < 1000, 699 + 300 < 1000, 700 + 300 = 1000: stop.
        assert_eq!(
            run(&r, &[t(0), t(400), t(699), t(700)]),
            (vec![300 * MS; 3], StopReason::DeadlineExceeded)
        );
        assert_eq!(run(&r, &[t(1000)]).1, StopReason::DeadlineExceeded);
    }

    #[test]
    fn server_delays_are_a_floor_and_have_a_bound() {
        let r = rules(|s| {
            s.default_strategy = Arc::new(constant(100 * MS));
            s.max_server_delay = 10 * S;
        });
        let mut engine = Engine::new();
        engine.begin_attempt();
        let asked = class(ErrorClass::RateLimit).with_retry_after(2 * S);
        assert_eq!(
            engine.on_failure(&r, asked, Duration::ZERO, |_| true),
            Decision::Retry(2 * S)
        );
        engine.begin_attempt();
        let small = class(ErrorClass::RateLimit).with_retry_after(MS);
        assert_eq!(
            engine.on_failure(&r, small, Duration::ZERO, |_| true),
            Decision::Retry(100 * MS)
        );
        engine.begin_attempt();
        let too_long = class(ErrorClass::RateLimit).with_retry_after(11 * S);
        assert_eq!(
            engine.on_failure(&r, too_long, Duration::ZERO, |_| true),
            Decision::Stop(StopReason::ServerDelayTooLong)
        );
    }

    #[test]
    fn strategies_see_their_own_class_history() {
        let r = rules(|s| {
            s.default_strategy = Arc::new(exponential().base(MS).max(S));
            s.class_strategies[ErrorClass::RateLimit.index()] = Some(Arc::new(constant(7 * MS)));
        });
        let t = (ErrorClass::Transient, Duration::ZERO);
        let rl = (ErrorClass::RateLimit, Duration::ZERO);
        let (delays, _) = run(&r, &[t, rl, t, rl, (ErrorClass::Permanent, S)]);
        // Exponential over the attempt number: 1 ms, (7 ms), 4 ms, (7 ms).
        assert_eq!(delays, [MS, 7 * MS, 4 * MS, 7 * MS]);
    }

    #[test]
    fn seeded_jitter_repeats_and_differs_between_calls() {
        let r = rules(|s| {
            s.default_strategy = Arc::new(full_jitter().base(S).max(60 * S));
            s.randomness = crate::random::Randomness::seeded(9);
            s.max_attempts = 5;
        });
        let t = (ErrorClass::Transient, Duration::ZERO);
        let first = run(&r, &[t; 5]).0;
        let second = run(&r, &[t; 5]).0;
        assert_ne!(first, second, "each call has its own stream");
        let again = rules(|s| {
            s.default_strategy = Arc::new(full_jitter().base(S).max(60 * S));
            s.randomness = crate::random::Randomness::seeded(9);
            s.max_attempts = 5;
        });
        assert_eq!(run(&again, &[t; 5]).0, first, "the same seed repeats");
        for (n, d) in first.iter().enumerate() {
            assert!(*d < S * (1 << (n + 1)), "{d:?} above full jitter's cap");
        }
    }

    #[test]
    fn the_call_records_its_elapsed_time_and_outside_stops() {
        let r = rules(|_| {});
        let mut engine = Engine::new();
        engine.begin_attempt();
        let _ = engine.on_failure(&r, class(ErrorClass::Transient), 3 * S, |_| true);
        engine.record_elapsed(5 * S);
        assert_eq!((engine.elapsed(), engine.attempts()), (5 * S, 1));
        engine.stopped(StopReason::Aborted);
        assert_eq!(engine.stop_reason(), Some(StopReason::Aborted));
    }

    /// The constant strategies are taken from `Rules` (`constant_nanos`); the others, and a
    /// constant strategy that says it reads a random number, are asked at every retry.
    #[test]
    fn constant_strategies_are_known_at_build() {
        /// Constant, but says it draws: the draw must still happen (it moves a seeded stream).
        struct Draws;
        impl Strategy for Draws {
            fn delay(&self, _: &BackoffContext, _: f64) -> Duration {
                MS
            }
            fn constant_delay(&self) -> Option<Duration> {
                Some(MS)
            }
        }
        let r = rules(|s| {
            s.default_strategy = Arc::new(full_jitter());
            s.class_strategies[ErrorClass::Transient.index()] = Some(Arc::new(no_delay()));
            s.class_strategies[ErrorClass::RateLimit.index()] = Some(Arc::new(constant(7 * MS)));
            s.class_strategies[ErrorClass::ServerError.index()] =
                Some(Arc::new(constant(Duration::MAX)));
        });
        let at = |c: ErrorClass| r.constant_nanos[c.index()];
        assert_eq!(at(ErrorClass::Transient), 0);
        assert_eq!(at(ErrorClass::RateLimit), 7_000_000);
        assert_eq!(r.constant_delays[ErrorClass::RateLimit.index()], 7 * MS);
        // Beyond `u64::MAX` nanoseconds, and with jitter: the strategy decides.
        assert_eq!(at(ErrorClass::ServerError), NOT_CONSTANT);
        assert_eq!(at(ErrorClass::Unknown), NOT_CONSTANT);

        let r = rules(|s| s.default_strategy = Arc::new(Draws));
        assert_eq!(
            r.constant_nanos[ErrorClass::Transient.index()],
            NOT_CONSTANT
        );
    }

    /// The engine's decision as it was made before the fast paths, with `Duration` arithmetic
    /// throughout and every strategy asked: the reference the fast paths must match.
    fn reference_decide(
        engine: &mut Engine,
        rules: &Rules,
        c: Classification,
        elapsed: Duration,
        confirm: impl FnOnce(Duration) -> bool,
    ) -> Decision {
        let decision = (|| {
            let class = c.class;
            let i = class.index();
            engine.last_class = Some(class);
            let Some(r) = retryable_index(class) else {
                return Decision::Stop(StopReason::NonRetryable);
            };
            engine.class_failures[r] = engine.class_failures[r].saturating_add(1);
            let failures = engine.class_failures[r];
            if failures > rules.limits[i] {
                return Decision::Stop(rules.limit_reason(class, failures));
            }
            if engine.attempt >= rules.max_attempts {
                return Decision::Stop(StopReason::MaxAttempts);
            }
            if let Some(deadline) = rules.deadline
                && elapsed >= deadline
            {
                return Decision::Stop(StopReason::DeadlineExceeded);
            }
            let u = if rules.random[i] {
                rules.randomness.uniform(&mut engine.rng)
            } else {
                0.0
            };
            let mut ctx = BackoffContext::new(engine.attempt, class);
            ctx.prev_delay = match engine.prev_delay[r] {
                NO_DELAY_YET => None,
                nanos => Some(Duration::from_nanos(nanos)),
            };
            ctx.retry_after = c.retry_after;
            let computed = rules.strategies[i].delay(&ctx, u);
            engine.prev_delay[r] = u64::try_from(computed.as_nanos())
                .unwrap_or(u64::MAX)
                .min(NO_DELAY_YET - 1);
            let delay = match c.retry_after {
                Some(server) => computed.max(server),
                None => computed,
            };
            if let Some(deadline) = rules.deadline {
                let reach = elapsed.saturating_add(delay);
                if reach >= deadline
                    || (reach.saturating_add(rules.deadline_guard) >= deadline && !confirm(delay))
                {
                    return Decision::Stop(StopReason::DeadlineExceeded);
                }
            }
            if let Some(server) = c.retry_after
                && server > rules.max_server_delay
            {
                return Decision::Stop(StopReason::ServerDelayTooLong);
            }
            Decision::Retry(delay)
        })();
        if let Decision::Stop(reason) = decision {
            engine.stop = Some(reason);
        }
        decision
    }

    mod parity {
        use super::*;
        use crate::time::{TimeSource, VirtualClock};
        use proptest::prelude::{Just, any, prop, prop_assert_eq, prop_oneof, proptest};
        use proptest::strategy::Strategy as Gen;

        const SEC: u64 = 1_000_000_000;

        /// A duration in nanoseconds, biased to the edges: zero, around a second, near and at
        /// `u64::MAX` nanoseconds, and beyond (up to `Duration::MAX`).
        fn nanos() -> impl Gen<Value = Duration> {
            prop_oneof![
                Just(Duration::ZERO),
                (0..5 * SEC).prop_map(Duration::from_nanos),
                (0..3 * SEC).prop_map(|n| Duration::from_nanos(u64::MAX - n)),
                Just(Duration::from_nanos(u64::MAX)),
                Just(Duration::from_nanos(u64::MAX) + Duration::from_nanos(1)),
                Just(Duration::MAX),
            ]
        }

        /// 0: `no_delay`, 1: `constant`, 2: `exponential`, 3: `full_jitter`.
        fn strategy(kind: u8, d: Duration) -> Arc<dyn Strategy> {
            match kind {
                0 => Arc::new(no_delay()),
                1 => Arc::new(constant(d)),
                2 => Arc::new(exponential().base(d.min(S)).max(d)),
                _ => Arc::new(full_jitter().base(d.min(S)).max(d)),
            }
        }

        #[derive(Clone, Debug)]
        struct Setup {
            default: (u8, Duration),
            transient: Option<(u8, Duration)>,
            max_attempts: u32,
            unknown_cap: Option<u32>,
            deadline: Option<Duration>,
            coarse: bool,
            max_server_delay: Duration,
        }

        fn setup() -> impl Gen<Value = Setup> {
            (
                (0u8..4, nanos()),
                proptest::option::of((0u8..4, nanos())),
                1u32..8,
                proptest::option::of(0u32..3),
                proptest::option::of(nanos()),
                any::<bool>(),
                nanos().prop_filter("a bound above zero", |d| !d.is_zero()),
            )
                .prop_map(
                    |(default, transient, max_attempts, unknown_cap, deadline, coarse, bound)| {
                        Setup {
                            default,
                            transient,
                            max_attempts,
                            unknown_cap,
                            deadline: deadline.filter(|d| !d.is_zero()),
                            coarse,
                            max_server_delay: bound,
                        }
                    },
                )
        }

        fn build(setup: &Setup) -> Rules {
            let mut settings = Settings::new();
            settings.default_strategy = strategy(setup.default.0, setup.default.1);
            settings.class_strategies[ErrorClass::Transient.index()] =
                setup.transient.map(|(kind, d)| strategy(kind, d));
            settings.max_attempts = setup.max_attempts;
            settings.max_unknown_retries = setup.unknown_cap;
            settings.deadline = setup.deadline.map(Deadline::FromStart);
            settings.max_server_delay = setup.max_server_delay;
            settings.randomness = crate::random::Randomness::seeded(7);
            // The coarse clock's source has a guard of a second; a virtual clock's, none.
            let time = if setup.coarse {
                TimeSource::Blocking
            } else {
                TimeSource::Virtual(VirtualClock::new())
            };
            settings.rules(&time)
        }

        /// One failure: its class, server delay, time since the deadline's origin (near the
        /// deadline's end more often than not), and what the exact clock would say.
        fn failure() -> impl Gen<Value = (ErrorClass, Option<Duration>, u64, bool)> {
            (
                prop::sample::select(ErrorClass::ALL.to_vec()),
                proptest::option::weighted(0.3, nanos()),
                prop_oneof![
                    Just(0),
                    0..10 * SEC,
                    (0..3 * SEC).prop_map(|n| u64::MAX - n),
                    Just(u64::MAX),
                ],
                any::<bool>(),
            )
        }

        proptest! {
            /// The nanosecond checks and the constant strategies' delays decide exactly as the
            /// `Duration` arithmetic and the strategies' own `delay` did: the same decisions,
            /// the same confirmations asked (and for the same delay), the same counts and
            /// history.
            #[test]
            fn the_fast_paths_decide_as_the_reference(
                setup in setup(),
                failures in proptest::collection::vec(failure(), 1..10),
                offset in prop_oneof![Just(None), (0..2 * SEC).prop_map(Some)],
            ) {
                let (fast_rules, reference_rules) = (build(&setup), build(&setup));
                let (mut fast, mut reference) = (Engine::new(), Engine::new());
                for (class, retry_after, mut elapsed, exact) in failures {
                    // Near the deadline's end, where the checks are decided.
                    if let (Some(offset), Some(deadline)) = (offset, setup.deadline) {
                        elapsed = saturating_nanos(deadline).saturating_sub(offset);
                    }
                    let mut c = Classification::new(class);
                    c.retry_after = retry_after;
                    fast.begin_attempt();
                    reference.begin_attempt();
                    let (mut asked_fast, mut asked_reference) = (None, None);
                    let decided = fast.on_failure_nanos(&fast_rules, c, elapsed, |d| {
                        asked_fast = Some(d);
                        exact
                    });
                    let expected = reference_decide(
                        &mut reference,
                        &reference_rules,
                        c,
                        Duration::from_nanos(elapsed),
                        |d| {
                            asked_reference = Some(d);
                            exact
                        },
                    );
                    prop_assert_eq!(decided, expected);
                    prop_assert_eq!(asked_fast, asked_reference);
                    prop_assert_eq!(format!("{fast:?}"), format!("{reference:?}"));
                    if matches!(decided, Decision::Stop(_)) {
                        break;
                    }
                }
            }
        }
    }
}
