//! The decision engine: after a failure, stop (and why) or wait how long.
//!
//! [`Engine`] is pure: no clock reads, no sleeping, no I/O; the elapsed time and the random
//! numbers are passed in. The sync loop, the async loop and `#[retry]` all drive it through
//! [`Attempts`], which adds the clock, the event hook and the policy's configuration.

use core::fmt;
use core::time::Duration;
use std::hash::{BuildHasher, RandomState};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::class::{Classification, ErrorClass};
use crate::classify::Classifier;
use crate::event::{EventKind, RetryEvent};
use crate::strategies::{BackoffContext, Strategy};
use crate::time::{Stamp, TimeSource};

/// Why a policy stopped retrying.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StopReason {
    /// The error's class is never retried (`Auth`, `Permission`, `Permanent`).
    NonRetryable,
    /// Every allowed attempt (`max_attempts`) was made.
    MaxAttempts,
    /// The class's own retry cap (`max_retries_for`) was reached.
    MaxRetriesForClass,
    /// The cap on `Unknown` failures (`max_unknown_retries`) was reached.
    MaxUnknownRetries,
    /// The deadline passed, or waiting for the next attempt would reach it.
    DeadlineExceeded,
}

impl StopReason {
    /// The reason's `snake_case` name, for logs and metric labels.
    ///
    /// ```
    /// assert_eq!(reflexio_core::StopReason::MaxAttempts.as_str(), "max_attempts");
    /// ```
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            StopReason::NonRetryable => "non_retryable",
            StopReason::MaxAttempts => "max_attempts",
            StopReason::MaxRetriesForClass => "max_retries_for_class",
            StopReason::MaxUnknownRetries => "max_unknown_retries",
            StopReason::DeadlineExceeded => "deadline_exceeded",
        }
    }
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The engine's answer after a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    Retry(Duration),
    Stop(StopReason),
}

/// The event hook, as stored.
pub(crate) type Hook = Arc<dyn Fn(&RetryEvent<'_>) + Send + Sync>;

/// Everything a policy is configured with; shared by both policies.
pub(crate) struct Config<E> {
    pub(crate) classifier: Arc<dyn Classifier<E> + Send + Sync>,
    pub(crate) default_strategy: Arc<dyn Strategy>,
    pub(crate) class_strategies: [Option<Arc<dyn Strategy>>; 8],
    pub(crate) max_attempts: u32,
    pub(crate) class_caps: [Option<u32>; 8],
    pub(crate) max_unknown_retries: Option<u32>,
    pub(crate) deadline: Option<Duration>,
    pub(crate) operation: Option<Arc<str>>,
    pub(crate) hook: Option<Hook>,
    pub(crate) seed: Option<u64>,
    /// Numbers the calls that need randomness, so a seeded policy gives each call its own
    /// (reproducible) jitter sequence.
    pub(crate) calls: Arc<AtomicU64>,
    pub(crate) time: TimeSource,
}

impl<E> Clone for Config<E> {
    fn clone(&self) -> Self {
        Config {
            classifier: self.classifier.clone(),
            default_strategy: self.default_strategy.clone(),
            class_strategies: self.class_strategies.clone(),
            max_attempts: self.max_attempts,
            class_caps: self.class_caps,
            max_unknown_retries: self.max_unknown_retries,
            deadline: self.deadline,
            operation: self.operation.clone(),
            hook: self.hook.clone(),
            seed: self.seed,
            calls: self.calls.clone(),
            time: self.time.clone(),
        }
    }
}

impl<E> Config<E> {
    pub(crate) fn strategy_for(&self, class: ErrorClass) -> &dyn Strategy {
        match &self.class_strategies[class.index()] {
            Some(s) => &**s,
            None => &*self.default_strategy,
        }
    }

    fn rng_seed(&self) -> u64 {
        let call = self.calls.fetch_add(1, Ordering::Relaxed);
        match self.seed {
            Some(seed) => seed ^ SplitMix64(call).next_u64(),
            // A fresh random key per call, without any dependency: std's hasher keys are random.
            None => RandomState::new().hash_one(call),
        }
    }

    /// Starts one call: the per-call state the drivers feed outcomes into.
    pub(crate) fn start(&self) -> Attempts<'_, E> {
        // The clock is read up front only when someone needs the elapsed time: a deadline or a
        // hook. Otherwise a call that succeeds at once costs no clock read.
        let start = (self.deadline.is_some() || self.hook.is_some()).then(|| self.time.now());
        Attempts {
            config: self,
            engine: Engine::new(),
            start,
        }
    }
}

/// `SplitMix64` (Steele, Lea, Flood 2014): tiny, fast, statistically good, and the same on every
/// platform, so seeded runs repeat exactly.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SplitMix64(pub(crate) u64);

impl SplitMix64 {
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`, with 53 random bits.
    pub(crate) fn next_f64(&mut self) -> f64 {
        // 53 bits fit an f64 exactly; 2^-53 scales them into [0, 1).
        #[allow(clippy::cast_precision_loss)]
        let x = (self.next_u64() >> 11) as f64;
        x * f64::EPSILON / 2.0
    }
}

/// The per-call retry state: counts and history, no time, no I/O.
#[derive(Debug)]
pub(crate) struct Engine {
    /// Attempts made so far (the number of the attempt that just ended).
    attempt: u32,
    class_failures: [u32; 8],
    prev_delay: [Option<Duration>; 8],
    rng: Option<SplitMix64>,
}

impl Engine {
    pub(crate) const fn new() -> Self {
        Engine {
            attempt: 0,
            class_failures: [0; 8],
            prev_delay: [None; 8],
            rng: None,
        }
    }

    /// Records the start of an attempt and returns its 1-based number.
    pub(crate) fn begin_attempt(&mut self) -> u32 {
        self.attempt = self.attempt.saturating_add(1);
        self.attempt
    }

    /// Decides what follows the failure of the current attempt.
    ///
    /// Order: non-retryable class; the class's retry cap; the `Unknown` cap; the global attempt
    /// cap (no sleep after the last allowed attempt); the delay from the class's strategy, at
    /// least the server's `retry_after`; the deadline (stop now rather than sleep into it).
    /// `seed` is called at most once per call, the first time a random number is needed.
    pub(crate) fn on_failure<E>(
        &mut self,
        config: &Config<E>,
        c: Classification,
        elapsed: Duration,
        seed: impl FnOnce() -> u64,
    ) -> Decision {
        let class = c.class;
        let i = class.index();
        self.class_failures[i] = self.class_failures[i].saturating_add(1);
        let failures = self.class_failures[i];

        if !class.is_retryable() {
            return Decision::Stop(StopReason::NonRetryable);
        }
        // `n` retries of a class means at most `n + 1` attempts end in that class.
        if config.class_caps[i].is_some_and(|cap| failures > cap) {
            return Decision::Stop(StopReason::MaxRetriesForClass);
        }
        if class == ErrorClass::Unknown
            && config.max_unknown_retries.is_some_and(|cap| failures > cap)
        {
            return Decision::Stop(StopReason::MaxUnknownRetries);
        }
        if self.attempt >= config.max_attempts {
            return Decision::Stop(StopReason::MaxAttempts);
        }
        if let Some(deadline) = config.deadline
            && elapsed >= deadline
        {
            return Decision::Stop(StopReason::DeadlineExceeded);
        }

        let u = self
            .rng
            .get_or_insert_with(|| SplitMix64(seed()))
            .next_f64();
        let mut ctx = BackoffContext::new(self.attempt, class);
        ctx.prev_delay = self.prev_delay[i];
        ctx.retry_after = c.retry_after;
        let computed = config.strategy_for(class).delay(&ctx, u);
        self.prev_delay[i] = Some(computed);
        let delay = match c.retry_after {
            Some(server) => computed.max(server),
            None => computed,
        };

        // The next attempt must start strictly before the deadline: sleeping up to it (or past
        // it) would only delay the failure.
        if let Some(deadline) = config.deadline
            && elapsed.saturating_add(delay) >= deadline
        {
            return Decision::Stop(StopReason::DeadlineExceeded);
        }
        Decision::Retry(delay)
    }
}

/// What a driver does after an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[doc(hidden)]
pub enum Step {
    /// Return the attempt's result.
    Return,
    /// Sleep this long, then make another attempt.
    Sleep(Duration),
}

/// The state of one call of a policy, fed each attempt's outcome by a driver (the sync loop,
/// the async loop, or code generated by `#[retry]`).
///
/// Not public API: reachable only through the facade's hidden `__private` module.
#[doc(hidden)]
pub struct Attempts<'p, E> {
    config: &'p Config<E>,
    engine: Engine,
    start: Option<Stamp>,
}

impl<E> fmt::Debug for Attempts<'_, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Attempts")
            .field("engine", &self.engine)
            .finish_non_exhaustive()
    }
}

impl<E: fmt::Debug> Attempts<'_, E> {
    fn elapsed(&mut self) -> Duration {
        if let Some(start) = self.start {
            self.config.time.since(start)
        } else {
            // No deadline and no hook: time only matters from the first failure on.
            self.start = Some(self.config.time.now());
            Duration::ZERO
        }
    }

    fn emit(&self, event: &RetryEvent<'_>) {
        if let Some(hook) = &self.config.hook {
            // A panicking hook is contained: the panic is reported by the panic hook as usual,
            // and the decision it was told about stands (the value is still returned, the error
            // still retried or given back). Observability must not change behaviour.
            let _ = catch_unwind(AssertUnwindSafe(|| hook(event)));
        }
    }

    /// Feeds the outcome of one attempt and says what to do next. Emits the event.
    #[inline]
    pub fn on_result<T>(&mut self, result: &Result<T, E>) -> Step {
        let attempt = self.engine.begin_attempt();
        match result {
            Ok(_) => {
                if self.config.hook.is_some() {
                    let elapsed = self.elapsed();
                    self.emit(&RetryEvent {
                        kind: EventKind::Success,
                        stop: None,
                        attempt,
                        class: None,
                        delay: None,
                        elapsed,
                        operation: self.config.operation.as_deref(),
                        error: None,
                    });
                }
                Step::Return
            }
            Err(error) => self.on_error(attempt, error),
        }
    }

    #[cold]
    fn on_error(&mut self, attempt: u32, error: &E) -> Step {
        let classification = self.config.classifier.classify(error);
        let elapsed = self.elapsed();
        let config = self.config;
        let decision = self
            .engine
            .on_failure(config, classification, elapsed, || config.rng_seed());
        let (kind, stop, delay, next) = match decision {
            Decision::Retry(d) => (EventKind::Retry, None, Some(d), Step::Sleep(d)),
            Decision::Stop(reason) => (EventKind::GaveUp, Some(reason), None, Step::Return),
        };
        self.emit(&RetryEvent {
            kind,
            stop,
            attempt,
            class: Some(classification.class),
            delay,
            elapsed,
            operation: self.config.operation.as_deref(),
            error: Some(error),
        });
        next
    }
}
