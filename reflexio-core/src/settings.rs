//! A policy's settings, as the builder collects them ([`Settings`]), and as a built policy
//! keeps them ([`Config`]), with `describe()`.
//!
//! A new setting is a field of [`Settings`] (with its default in `Settings::new`) and a builder
//! method; `describe` and `problems` when it has something to say.

use core::fmt;
use core::time::Duration;
use std::sync::Arc;

use crate::budget::RetryBudget;
use crate::circuit::CircuitBreaker;
use crate::class::ErrorClass;
use crate::classify::Classifier;
use crate::engine::{NOT_CONSTANT, Rules};
use crate::errors::{AttemptTimedOut, CircuitOpen, ConfigProblem};
use crate::event::RetryEvent;
use crate::hedging::Hedging;
use crate::random::Randomness;
use crate::rate_limit::AdaptiveRateLimiter;
use crate::strategies::{DecorrelatedJitter, Strategy, decorrelated_jitter, fmt_duration};
use crate::time::VirtualClock;
use crate::time::{CustomSleeper, Stamp, TimeSource, Timer, saturating_nanos};

/// The default strategy: the Python decorator's `decorrelated_jitter(max_s=5.0)`.
pub(crate) const DEFAULT_STRATEGY: DecorrelatedJitter =
    decorrelated_jitter().max(Duration::from_secs(5));

/// The default deadline, counted from a call's first failure (see [`Deadline`]).
pub(crate) const DEFAULT_DEADLINE: Duration = Duration::from_secs(60);

/// The default bound on a server's delay: a minute, the default deadline, so that a default
/// policy never waits longer for a server than it would wait in all.
pub(crate) const DEFAULT_MAX_SERVER_DELAY: Duration = Duration::from_secs(60);

/// The event hook, as stored.
pub(crate) type Hook = Arc<dyn Fn(&RetryEvent<'_>) + Send + Sync>;

/// Sees an error as a `std::error::Error`, for the events' `std_error`.
pub(crate) type AsStdError<E> = fn(&E) -> &(dyn std::error::Error + 'static);

/// When a call's deadline starts counting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Deadline {
    /// From the start of the call (`.deadline(d)`): the clock is read before the first attempt.
    FromStart(Duration),
    /// From the end of the first failed attempt (the default): a call that succeeds at once
    /// reads no clock, and retries still stop within the bound.
    FromFirstFailure(Duration),
}

impl Deadline {
    pub(crate) fn duration(self) -> Duration {
        match self {
            Deadline::FromStart(d) | Deadline::FromFirstFailure(d) => d,
        }
    }
}

/// Everything a user sets on a policy but its classifier, its `Ok` rule and the conversions
/// into its error type ([`Conversions`]).
#[derive(Clone)]
pub(crate) struct Settings {
    pub(crate) default_strategy: Arc<dyn Strategy>,
    pub(crate) class_strategies: [Option<Arc<dyn Strategy>>; 8],
    pub(crate) max_attempts: u32,
    pub(crate) class_caps: [Option<u32>; 8],
    pub(crate) max_unknown_retries: Option<u32>,
    pub(crate) deadline: Option<Deadline>,
    /// The longest delay a server may ask for (`Retry-After`, gRPC pushback).
    pub(crate) max_server_delay: Duration,
    pub(crate) operation: Option<Arc<str>>,
    pub(crate) hook: Option<Hook>,
    pub(crate) randomness: Randomness,
    pub(crate) clock: Option<VirtualClock>,
    pub(crate) sleeper: Option<CustomSleeper>,
    pub(crate) budget: Option<RetryBudget>,
    pub(crate) breaker: Option<CircuitBreaker>,
    /// Waited on before every attempt (the AWS SDKs' adaptive mode).
    pub(crate) rate_limiter: Option<AdaptiveRateLimiter>,
    pub(crate) attempt_timeout: Option<Duration>,
    pub(crate) abort: Option<Arc<dyn Fn() -> bool + Send + Sync>>,
    /// How `call_idempotent` hedges (async policies only).
    pub(crate) hedging: Option<Hedging>,
    /// Report `AttemptStarted` and `AttemptFinished` to the hook for every call.
    pub(crate) attempt_events: bool,
}

impl Settings {
    /// The defaults, listed on `PolicyBuilder`.
    pub(crate) fn new() -> Self {
        Settings {
            default_strategy: Arc::new(DEFAULT_STRATEGY),
            class_strategies: Default::default(),
            max_attempts: 6,
            class_caps: [None; 8],
            max_unknown_retries: Some(2),
            deadline: Some(Deadline::FromFirstFailure(DEFAULT_DEADLINE)),
            max_server_delay: DEFAULT_MAX_SERVER_DELAY,
            operation: None,
            hook: None,
            randomness: Randomness::Thread,
            clock: None,
            sleeper: None,
            budget: None,
            breaker: None,
            rate_limiter: None,
            attempt_timeout: None,
            abort: None,
            hedging: None,
            attempt_events: false,
        }
    }

    /// Every setting that cannot work.
    pub(crate) fn problems(&self) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        if self.max_attempts == 0 {
            problems.push(ConfigProblem::ZeroMaxAttempts);
        }
        if self.deadline.is_some_and(|d| d.duration().is_zero()) {
            problems.push(ConfigProblem::ZeroDeadline);
        }
        if self.max_server_delay.is_zero() {
            problems.push(ConfigProblem::Invalid {
                setting: "max_server_delay",
                reason: "must be greater than zero".into(),
            });
        }
        if let Err(reason) = self.default_strategy.validate() {
            problems.push(ConfigProblem::InvalidStrategy {
                class: None,
                reason,
            });
        }
        for class in ErrorClass::ALL {
            if let Some(Err(reason)) = self.class_strategies[class.index()]
                .as_ref()
                .map(|s| s.validate())
            {
                problems.push(ConfigProblem::InvalidStrategy {
                    class: Some(class),
                    reason,
                });
            }
        }
        if self.attempt_timeout.is_some_and(|t| t.is_zero()) {
            problems.push(ConfigProblem::ZeroAttemptTimeout);
        }
        if let Some(limiter) = &self.rate_limiter
            && !limiter.clock_matches(self.clock.as_ref())
        {
            problems.push(ConfigProblem::Invalid {
                setting: "rate_limiter",
                reason: "must count time on the policy's clock: give both the same \
                         `VirtualClock`, or neither one"
                    .into(),
            });
        }
        problems
    }

    /// What the engine decides with: per class, the strategy (the class's own or the default),
    /// the most failures that may still be retried, and whether the strategy draws a random
    /// number.
    pub(crate) fn rules(&self, time: &TimeSource) -> Rules {
        let strategies = ErrorClass::ALL.map(|class| {
            self.class_strategies[class.index()]
                .clone()
                .unwrap_or_else(|| self.default_strategy.clone())
        });
        let limits = ErrorClass::ALL.map(|class| {
            if !class.is_retryable() {
                return 0;
            }
            let cap = self.class_caps[class.index()].unwrap_or(u32::MAX);
            if class == ErrorClass::Unknown {
                cap.min(self.max_unknown_retries.unwrap_or(u32::MAX))
            } else {
                cap
            }
        });
        let random = strategies.each_ref().map(|s| s.uses_random());
        // A constant delay is taken as it is only from a strategy that draws no random number:
        // a draw would move a seeded policy's stream, which later delays depend on.
        let constant_delays = ErrorClass::ALL.map(|class| {
            let i = class.index();
            if random[i] {
                return None;
            }
            strategies[i]
                .constant_delay()
                .filter(|d| saturating_nanos(*d) != NOT_CONSTANT)
        });
        let deadline = self.deadline.map(Deadline::duration);
        let deadline_nanos = deadline.map_or(u64::MAX, saturating_nanos);
        Rules {
            strategies,
            limits,
            random,
            class_caps: self.class_caps,
            max_attempts: self.max_attempts,
            deadline,
            deadline_guard: time.deadline_guard(),
            max_server_delay: self.max_server_delay,
            randomness: self.randomness.clone(),
            constant_nanos: constant_delays.map(|d| d.map_or(NOT_CONSTANT, saturating_nanos)),
            constant_delays: constant_delays.map(Option::unwrap_or_default),
            deadline_nanos,
            near_deadline_nanos: deadline_nanos
                .saturating_sub(saturating_nanos(time.deadline_guard())),
            coarse_clock: time.is_coarse(),
            clock_rounding_nanos: saturating_nanos(time.rounding()),
        }
    }

    /// Writes the multi-line description of `describe()`.
    fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("retry policy")?;
        if let Some(op) = &self.operation {
            write!(f, " `{op}`")?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "  max attempts: {} (the first included)",
            self.max_attempts
        )?;
        f.write_str("  deadline: ")?;
        match self.deadline {
            Some(Deadline::FromStart(d)) => fmt_duration(d, f)?,
            Some(Deadline::FromFirstFailure(d)) => {
                fmt_duration(d, f)?;
                f.write_str(" from the first failure")?;
            }
            None => f.write_str("none")?,
        }
        writeln!(f)?;
        f.write_str("  longest server delay: ")?;
        fmt_duration(self.max_server_delay, f)?;
        writeln!(f)?;
        f.write_str("  unknown errors: ")?;
        match self.max_unknown_retries {
            Some(n) => writeln!(f, "at most {n} retries")?,
            None => writeln!(f, "no own cap")?,
        }
        f.write_str("  default strategy: ")?;
        self.default_strategy.describe(f)?;
        writeln!(f)?;
        for class in ErrorClass::ALL {
            let i = class.index();
            if !class.is_retryable() {
                continue;
            }
            if self.class_strategies[i].is_none() && self.class_caps[i].is_none() {
                continue;
            }
            write!(f, "  {class}: ")?;
            self.class_strategies[i]
                .as_ref()
                .unwrap_or(&self.default_strategy)
                .describe(f)?;
            if let Some(cap) = self.class_caps[i] {
                write!(f, ", at most {cap} retries")?;
            }
            writeln!(f)?;
        }
        writeln!(f, "  never retried: auth, permission, permanent")?;
        if let Some(b) = &self.budget {
            writeln!(f, "  budget: {}", b.describe())?;
        }
        if let Some(b) = &self.breaker {
            writeln!(f, "  {}", b.describe())?;
        }
        if let Some(l) = &self.rate_limiter {
            writeln!(f, "  {}", l.describe())?;
        }
        if let Some(t) = self.attempt_timeout {
            f.write_str("  attempt timeout: ")?;
            fmt_duration(t, f)?;
            writeln!(f)?;
        }
        if let Some(h) = &self.hedging {
            writeln!(f, "  hedging (idempotent calls): {}", h.describe())?;
        }
        if self.abort.is_some() {
            writeln!(f, "  abort condition: set")?;
        }
        match &self.randomness {
            Randomness::Seeded(seed, _) => writeln!(f, "  jitter seed: {seed}")?,
            Randomness::User(_) => writeln!(f, "  jitter: the policy's own generator")?,
            Randomness::Thread => {}
        }
        Ok(())
    }
}

/// How a policy turns its own errors (a circuit rejection, a timed-out attempt) into `E`, and
/// sees `E` as a `std::error::Error` for its events.
pub(crate) struct Conversions<E> {
    pub(crate) circuit_open: Option<fn(CircuitOpen) -> E>,
    pub(crate) timed_out: Option<fn(AttemptTimedOut) -> E>,
    pub(crate) error_chain: Option<AsStdError<E>>,
}

// Not derived: the derive would ask `E: Clone`.
impl<E> Clone for Conversions<E> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<E> Copy for Conversions<E> {}

impl<E> Conversions<E> {
    pub(crate) const NONE: Self = Conversions {
        circuit_open: None,
        timed_out: None,
        error_chain: None,
    };
}

/// A built policy's configuration, shared by both policies.
pub(crate) struct Config<E> {
    pub(crate) settings: Settings,
    pub(crate) classifier: Arc<dyn Classifier<E> + Send + Sync>,
    pub(crate) conversions: Conversions<E>,
    /// What the engine decides with, worked out once from `settings`.
    pub(crate) rules: Rules,
    /// No breaker, budget, hook or rate limiter (see [`Config::lean`]), worked out once at build.
    is_lean: bool,
    /// Lean, with no attempt timeout and no deadline counted from the start (see
    /// [`Config::starts_plain`]), worked out once at build.
    starts_plain: bool,
    /// Lean, with no attempt timeout (see [`Config::starts_lean`]), worked out once at build.
    starts_lean: bool,
    pub(crate) time: TimeSource,
}

impl<E> Clone for Config<E> {
    fn clone(&self) -> Self {
        Config {
            settings: self.settings.clone(),
            classifier: self.classifier.clone(),
            conversions: self.conversions,
            rules: self.rules.clone(),
            is_lean: self.is_lean,
            starts_plain: self.starts_plain,
            starts_lean: self.starts_lean,
            time: self.time.clone(),
        }
    }
}

impl<E> Config<E> {
    /// The configuration of checked `settings` (see [`Settings::problems`]).
    pub(crate) fn new(
        settings: Settings,
        classifier: Arc<dyn Classifier<E> + Send + Sync>,
        conversions: Conversions<E>,
        time: TimeSource,
    ) -> Self {
        let is_lean = settings.breaker.is_none()
            && settings.budget.is_none()
            && settings.hook.is_none()
            && settings.rate_limiter.is_none();
        let starts_lean = is_lean && settings.attempt_timeout.is_none();
        let mut config = Config {
            rules: settings.rules(&time),
            is_lean,
            starts_plain: false,
            starts_lean,
            settings,
            classifier,
            conversions,
            time,
        };
        config.starts_plain = starts_lean && !config.needs_start(false);
        config
    }

    /// Whether a call needs nothing before its first attempt but, with a deadline counted
    /// from the start, the time, and nothing after its success: no breaker, budget or hook.
    /// Its retries then need only the engine's counts: no events to emit, no permits or tokens.
    #[inline]
    pub(crate) fn lean(&self) -> bool {
        self.is_lean
    }

    /// Whether a call starts with nothing to do before its first attempt: lean, no attempt
    /// timer to make, no clock to read (no deadline counted from the start). Worked out at
    /// build, so that the async call's future checks one flag at its first poll (and
    /// [`starts_lean`](Self::starts_lean) when it is false) where it checked three fields.
    #[inline]
    pub(crate) fn starts_plain(&self) -> bool {
        self.starts_plain
    }

    /// Whether a call's first attempt needs nothing made before it but, maybe, a clock
    /// reading: lean, no attempt timer. Such a call's future runs its first attempt from the
    /// first poll, inline.
    #[inline]
    pub(crate) fn starts_lean(&self) -> bool {
        self.starts_lean
    }

    /// The clock reading a call starts with: for a deadline counted from the start, or when
    /// `timed` (a hook's events and `execute`'s error report the time since the start).
    #[inline]
    pub(crate) fn start(&self, timed: bool) -> Option<Stamp> {
        self.needs_start(timed).then(|| self.time.now())
    }

    /// Whether a call reads the clock when it starts (see [`Config::start`]).
    #[inline]
    pub(crate) fn needs_start(&self, timed: bool) -> bool {
        timed || matches!(self.settings.deadline, Some(Deadline::FromStart(_)))
    }

    /// The time since `start`; zero for a call that did not read the clock when it started.
    #[inline]
    pub(crate) fn since(&self, start: Option<Stamp>) -> Duration {
        start.map_or(Duration::ZERO, |start| self.time.since(start))
    }

    /// Whether the deadline counts from the first failure (the default) rather than from the
    /// start: the clock is then read at the first failure, not before the first attempt.
    #[inline]
    pub(crate) fn deadline_from_first_failure(&self) -> bool {
        matches!(self.settings.deadline, Some(Deadline::FromFirstFailure(_)))
    }

    /// The timer of one attempt, started now: [`Timer::Off`] when the policy has no attempt
    /// timeout.
    #[inline]
    pub(crate) fn attempt_timer(&self) -> Timer {
        match self.settings.attempt_timeout {
            Some(timeout) => self.time.timer(timeout),
            None => Timer::Off,
        }
    }

    /// The error of an attempt that exceeded the policy's attempt timeout.
    ///
    /// # Panics
    ///
    /// If the policy has no attempt timeout (drivers ask only when one fired).
    pub(crate) fn timed_out(&self) -> E {
        let (Some(timeout), Some(into)) =
            (self.settings.attempt_timeout, self.conversions.timed_out)
        else {
            panic!("only policies with an attempt timeout time out")
        };
        into(AttemptTimedOut::new(timeout))
    }

    /// The error of a call the breaker rejected before its first attempt.
    ///
    /// # Panics
    ///
    /// If the policy has no breaker (the builder sets the conversion with the breaker).
    pub(crate) fn circuit_open(&self, open: CircuitOpen) -> E {
        let into = self
            .conversions
            .circuit_open
            .expect("a policy with a circuit breaker has a conversion");
        into(open)
    }

    /// Writes the multi-line description of `describe()`.
    pub(crate) fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.settings.describe(f)
    }

    /// The fields of the policies' `Debug`.
    pub(crate) fn debug_fields(&self, f: &mut fmt::DebugStruct<'_, '_>) {
        f.field("max_attempts", &self.settings.max_attempts)
            .field("deadline", &self.settings.deadline)
            .field("operation", &self.settings.operation);
    }
}
