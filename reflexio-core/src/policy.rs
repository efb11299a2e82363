//! The policy builder and the sync policy, [`RetryPolicy`].

use core::fmt;
use core::marker::PhantomData;
use core::ops::ControlFlow;
use core::time::Duration;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use crate::async_policy::AsyncRetryPolicy;
use crate::budget::RetryBudget;
use crate::circuit::CircuitBreaker;
use crate::class::{Classification, ErrorClass};
use crate::classify::{Classifier, DefaultClassifier};
use crate::engine::{AsStdError, AttemptTimeout, Attempts, Breaker, Config, Engine, Hook, Next};
use crate::errors::{AttemptTimedOut, CircuitOpen, ConfigError, ConfigProblem, RetryError};
use crate::event::RetryEvent;
use crate::ok::{AcceptOk, OkClassifier, OkRule, first_outcome};
use crate::strategies::{Strategy, decorrelated_jitter};
use crate::testing::VirtualClock;
use crate::time::{CustomSleeper, Stamp, TimeSource};

/// The default strategy: the Python decorator's `decorrelated_jitter(max_s=5.0)`.
pub(crate) const DEFAULT_STRATEGY: crate::strategies::DecorrelatedJitter =
    decorrelated_jitter().max(Duration::from_secs(5));

/// The default bound on a server's delay: a minute, the default deadline, so that a default
/// policy never waits longer for a server than it would wait in all.
pub(crate) const DEFAULT_MAX_SERVER_DELAY: Duration = Duration::from_secs(60);

/// Marks a [`PolicyBuilder`] that builds a [`RetryPolicy`].
#[derive(Debug, Clone, Copy)]
pub struct Blocking;

/// Marks a [`PolicyBuilder`] that builds an [`AsyncRetryPolicy`].
#[derive(Debug, Clone, Copy)]
pub struct NonBlocking;

/// Builds a [`RetryPolicy`] (`K` = [`Blocking`]) or an [`AsyncRetryPolicy`]
/// (`K` = [`NonBlocking`]), classifying errors `E` with `C` and `Ok` values with `R`.
///
/// Made by [`RetryPolicy::builder`] or [`AsyncRetryPolicy::builder`]; see
/// [`RetryPolicyBuilder`] and [`AsyncRetryPolicyBuilder`].
///
/// # Default
///
/// | setting | default |
/// |---|---|
/// | `classifier` | [`default_classifier`](crate::default_classifier) (needs `E: Classify`) |
/// | `strategy` | `decorrelated_jitter().max(5 s)` for every class |
/// | `max_attempts` | 6 (total calls, the first included) |
/// | `max_retries_for` | no per-class cap |
/// | `max_unknown_retries` | `Some(2)` |
/// | `deadline` | 60 s, on a monotonic clock |
/// | `max_server_delay` | 60 s |
/// | `operation`, `on_event`, `seed` | none |
/// | `budget`, `circuit_breaker`, `abort_if`, `retry_if_ok`, `attempt_timeout` | none |
#[must_use = "a builder does nothing until `build()` is called"]
pub struct PolicyBuilder<E, C, K, R = AcceptOk> {
    classifier: C,
    default_strategy: Arc<dyn Strategy>,
    class_strategies: [Option<Arc<dyn Strategy>>; 8],
    max_attempts: u32,
    class_caps: [Option<u32>; 8],
    max_unknown_retries: Option<u32>,
    deadline: Option<Duration>,
    max_server_delay: Duration,
    operation: Option<Arc<str>>,
    hook: Option<Hook>,
    error_chain: Option<AsStdError<E>>,
    seed: Option<u64>,
    clock: Option<VirtualClock>,
    sleeper: Option<CustomSleeper>,
    budget: Option<RetryBudget>,
    breaker: Option<Breaker<E>>,
    attempt_timeout: Option<AttemptTimeout<E>>,
    abort: Option<Arc<dyn Fn() -> bool + Send + Sync>>,
    ok_rule: R,
    _marker: PhantomData<fn(&E) -> K>,
}

/// The builder of a [`RetryPolicy`], from [`RetryPolicy::builder`].
pub type RetryPolicyBuilder<E, C = DefaultClassifier, R = AcceptOk> =
    PolicyBuilder<E, C, Blocking, R>;

/// The builder of an [`AsyncRetryPolicy`], from [`AsyncRetryPolicy::builder`].
pub type AsyncRetryPolicyBuilder<E, C = DefaultClassifier, R = AcceptOk> =
    PolicyBuilder<E, C, NonBlocking, R>;

impl<E, K> PolicyBuilder<E, DefaultClassifier, K> {
    pub(crate) fn new() -> Self {
        PolicyBuilder {
            classifier: DefaultClassifier,
            default_strategy: Arc::new(DEFAULT_STRATEGY),
            class_strategies: Default::default(),
            max_attempts: 6,
            class_caps: [None; 8],
            max_unknown_retries: Some(2),
            deadline: Some(Duration::from_secs(60)),
            max_server_delay: DEFAULT_MAX_SERVER_DELAY,
            operation: None,
            hook: None,
            error_chain: None,
            seed: None,
            clock: None,
            sleeper: None,
            budget: None,
            breaker: None,
            attempt_timeout: None,
            abort: None,
            ok_rule: AcceptOk,
            _marker: PhantomData,
        }
    }
}

impl<E, C, K, R> PolicyBuilder<E, C, K, R> {
    /// Sets how errors are classified: a closure `|e: &E| -> ErrorClass` (or `-> Classification`),
    /// or any [`Classifier`].
    ///
    /// ```
    /// use reflexio::{ErrorClass, RetryPolicy};
    ///
    /// #[derive(Debug)]
    /// struct Timeout;
    /// let policy = RetryPolicy::builder()
    ///     .classifier(|_: &Timeout| ErrorClass::Transient)
    ///     .build()
    ///     .unwrap();
    /// # let _: &RetryPolicy<Timeout> = &policy;
    /// ```
    pub fn classifier<C2>(self, classifier: C2) -> PolicyBuilder<E, C2, K, R>
    where
        C2: Classifier<E> + Send + Sync + 'static,
    {
        self.map(|_, ok_rule| (classifier, ok_rule))
    }

    /// The same settings with the classifier and `Ok` rule mapped by `f`.
    fn map<C2, R2>(self, f: impl FnOnce(C, R) -> (C2, R2)) -> PolicyBuilder<E, C2, K, R2> {
        let (classifier, ok_rule) = f(self.classifier, self.ok_rule);
        PolicyBuilder {
            classifier,
            default_strategy: self.default_strategy,
            class_strategies: self.class_strategies,
            max_attempts: self.max_attempts,
            class_caps: self.class_caps,
            max_unknown_retries: self.max_unknown_retries,
            deadline: self.deadline,
            max_server_delay: self.max_server_delay,
            operation: self.operation,
            hook: self.hook,
            error_chain: self.error_chain,
            seed: self.seed,
            clock: self.clock,
            sleeper: self.sleeper,
            budget: self.budget,
            breaker: self.breaker,
            attempt_timeout: self.attempt_timeout,
            abort: self.abort,
            ok_rule,
            _marker: PhantomData,
        }
    }

    /// Sets the strategy of every class that has no strategy of its own.
    pub fn strategy(mut self, strategy: impl Strategy + 'static) -> Self {
        self.default_strategy = Arc::new(strategy);
        self
    }

    /// Sets the strategy of one class, overriding [`strategy`](Self::strategy) for it.
    ///
    /// ```
    /// use std::time::Duration;
    /// use reflexio::{strategies::{constant, token_backoff}, ErrorClass, RetryPolicy, TransientError};
    ///
    /// let policy = RetryPolicy::<TransientError>::builder()
    ///     .strategy(constant(Duration::from_millis(100)))
    ///     .strategy_for(ErrorClass::RateLimit, token_backoff().max(Duration::from_secs(10)))
    ///     .build()
    ///     .unwrap();
    /// # drop(policy);
    /// ```
    pub fn strategy_for(mut self, class: ErrorClass, strategy: impl Strategy + 'static) -> Self {
        self.class_strategies[class.index()] = Some(Arc::new(strategy));
        self
    }

    /// Sets the total number of calls of the operation, the first included (default 6).
    /// `build()` rejects 0.
    pub fn max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = max_attempts;
        self
    }

    /// Caps the retries after failures of one class: with `n = 2`, at most 3 attempts end in
    /// that class. `n = 0` stops at its first failure.
    pub fn max_retries_for(mut self, class: ErrorClass, retries: u32) -> Self {
        self.class_caps[class.index()] = Some(retries);
        self
    }

    /// Caps the retries after `Unknown` failures (default `Some(2)`); `None` leaves only the
    /// other limits.
    pub fn max_unknown_retries(mut self, retries: Option<u32>) -> Self {
        self.max_unknown_retries = retries;
        self
    }

    /// Sets the deadline of one call (default 60 s), measured on a monotonic clock from the
    /// start of the call. No attempt starts at or after it, and the policy never sleeps into it:
    /// when the next delay would reach it, the policy stops at once with
    /// [`StopReason::DeadlineExceeded`](crate::StopReason::DeadlineExceeded). An attempt already
    /// running is not interrupted. `build()` rejects zero.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// Bounds the delay a server may ask for (an HTTP `Retry-After`, a gRPC
    /// `grpc-retry-pushback-ms`, any classification's `retry_after`; default 60 s). A server
    /// delay is a floor under the strategy's own delay, which the strategy's `max` does not
    /// cap; when a server asks for more than this bound, the call stops at once with
    /// [`StopReason::ServerDelayTooLong`](crate::StopReason::ServerDelayTooLong) (or
    /// `DeadlineExceeded`, when the wait would also reach the deadline) and the last error, rather than sleep as long as the server likes (even with no deadline) or
    /// retry sooner than it asked. `build()` rejects zero.
    ///
    /// ```
    /// use std::time::Duration;
    /// use reflexio::{strategies::no_delay, RateLimitError, RetryPolicy, StopReason};
    ///
    /// let policy = RetryPolicy::builder()
    ///     .strategy(no_delay())
    ///     .no_deadline()
    ///     .max_server_delay(Duration::from_secs(30))
    ///     .build()
    ///     .unwrap();
    /// let err = policy
    ///     .execute(|| Err::<(), _>(RateLimitError::new("slow down").with_retry_after(Duration::from_secs(3600))))
    ///     .unwrap_err();
    /// assert_eq!((err.stop_reason(), err.attempts()), (StopReason::ServerDelayTooLong, 1));
    /// ```
    pub fn max_server_delay(mut self, bound: Duration) -> Self {
        self.max_server_delay = bound;
        self
    }

    /// Removes the deadline: only the attempt caps bound the call. A call that succeeds at once
    /// then reads no clock at all.
    pub fn no_deadline(mut self) -> Self {
        self.deadline = None;
        self
    }

    /// Names the operation in every event.
    pub fn operation(mut self, operation: &str) -> Self {
        self.operation = Some(Arc::from(operation));
        self
    }

    /// Sets the hook called synchronously with every [`RetryEvent`].
    ///
    /// A hook that panics is contained: the panic is printed by the panic hook as usual, and the
    /// decision stands (the value is still returned, the error still retried or returned).
    pub fn on_event<F>(mut self, hook: F) -> Self
    where
        F: Fn(&RetryEvent<'_>) + Send + Sync + 'static,
    {
        self.hook = Some(Arc::new(hook));
        self
    }

    /// Tells the policy how to see `E` as a [`std::error::Error`], so that every event carries it
    /// ([`RetryEvent::std_error`]) and log lines show its message and its sources
    /// ([`RetryEvent::error_message`]: `connect failed: connection refused`) rather than its
    /// `Debug`, which is often a struct dump, and for `anyhow::Error` with `RUST_BACKTRACE=1` a
    /// backtrace in every retry line. `|e| e` for a type that implements `Error`;
    /// `|e| e.as_ref()` for `anyhow::Error`.
    ///
    /// A generic builder cannot find this out by itself: it asks nothing of `E` but `Debug`
    /// (hooks need that much), and Rust cannot ask a generic type whether it implements a
    /// trait. `#[retry]` functions can, since their error type is concrete: they set this
    /// themselves when the error implements `Error` or `AsRef<dyn Error>` (`anyhow::Error`).
    ///
    /// ```
    /// use reflexio::RetryPolicy;
    ///
    /// let policy = RetryPolicy::<std::io::Error>::builder()
    ///     .error_chain(|e| e)
    ///     .on_event(|e| {
    ///         if let Some(error) = e.error_message() {
    ///             eprintln!("{error}");
    ///         }
    ///     })
    ///     .build()
    ///     .unwrap();
    /// # drop(policy);
    /// ```
    pub fn error_chain(mut self, as_std_error: AsStdError<E>) -> Self {
        self.error_chain = Some(as_std_error);
        self
    }

    /// Makes the jitter reproducible: two policies with the same seed, called the same way in
    /// the same order, wait exactly the same delays. Each call still gets its own sequence.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Reads time from, and sleeps on, a [`VirtualClock`] instead of the real clock.
    pub fn clock(mut self, clock: VirtualClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Shares a [`RetryBudget`] with other calls and policies: before every retry the policy
    /// asks it for tokens, and stops with
    /// [`StopReason::BudgetExhausted`](crate::StopReason::BudgetExhausted) when there are none.
    pub fn budget(mut self, budget: RetryBudget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Guards calls with a [`CircuitBreaker`]: while it is open, calls fail fast without
    /// calling the operation, with the error `E::from(CircuitOpen)`. When a failure leaves the
    /// circuit open for longer than the next delay, the call stops at once with that failure's
    /// own error instead of sleeping into a rejection; either way it stops with
    /// [`StopReason::CircuitOpen`](crate::StopReason::CircuitOpen).
    pub fn circuit_breaker(mut self, breaker: CircuitBreaker) -> Self
    where
        E: From<CircuitOpen>,
    {
        self.breaker = Some((breaker, E::from));
        self
    }

    /// Checks `abort` before every sleep; when it returns true the policy stops with
    /// [`StopReason::Aborted`](crate::StopReason::Aborted) and returns the last error. Use it
    /// with a shutdown flag or a cancellation token.
    ///
    /// ```
    /// use std::sync::{atomic::{AtomicBool, Ordering}, Arc};
    /// use reflexio::{strategies::no_delay, RetryPolicy, StopReason, TransientError};
    ///
    /// let shutting_down = Arc::new(AtomicBool::new(true));
    /// let flag = shutting_down.clone();
    /// let policy = RetryPolicy::builder()
    ///     .strategy(no_delay())
    ///     .abort_if(move || flag.load(Ordering::Relaxed))
    ///     .build()
    ///     .unwrap();
    /// let err = policy.execute(|| Err::<(), _>(TransientError::new("down"))).unwrap_err();
    /// assert_eq!((err.stop_reason(), err.attempts()), (StopReason::Aborted, 1));
    /// ```
    pub fn abort_if<F>(mut self, abort: F) -> Self
    where
        F: Fn() -> bool + Send + Sync + 'static,
    {
        self.abort = Some(Arc::new(abort));
        self
    }

    /// Retries some `Ok` values too: `rule` returns `None` for a success, or the class of a
    /// value that is really a failure (an HTTP response with status 503, say). Such a value is
    /// retried like an error of that class; when the policy stops, the last value is returned
    /// as `Ok`. The policy's type then names `T`: `RetryPolicy<E, OkRule<T>>`.
    ///
    /// ```
    /// use reflexio::{http::classify_status, strategies::no_delay, RetryPolicy};
    ///
    /// let policy = RetryPolicy::<std::io::Error>::builder()
    ///     .strategy(no_delay())
    ///     .retry_if_ok(|status: &u16| (*status >= 500).then(|| classify_status(*status)))
    ///     .build()
    ///     .unwrap();
    /// let mut replies = vec![200, 503, 503].into_iter().rev();
    /// assert_eq!(policy.call(|| Ok(replies.next().unwrap())).unwrap(), 200);
    /// ```
    pub fn retry_if_ok<T, F, Cl>(self, rule: F) -> PolicyBuilder<E, C, K, OkRule<T>>
    where
        F: Fn(&T) -> Option<Cl> + Send + Sync + 'static,
        Cl: Into<Classification>,
    {
        self.map(|classifier, _| (classifier, OkRule::new(rule)))
    }

    fn check(&self) -> Result<(), ConfigError> {
        ConfigError::from_problems(self.problems())
    }

    fn problems(&self) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        if self.max_attempts == 0 {
            problems.push(ConfigProblem::ZeroMaxAttempts);
        }
        if self.deadline == Some(Duration::ZERO) {
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
        if self.attempt_timeout.is_some_and(|(t, _)| t.is_zero()) {
            problems.push(ConfigProblem::ZeroAttemptTimeout);
        }
        problems
    }

    fn into_parts(self, time: TimeSource) -> Result<(Config<E>, R), ConfigError>
    where
        C: Classifier<E> + Send + Sync + 'static,
    {
        self.check()?;
        let (breaker, circuit_open) = match self.breaker {
            Some((b, into)) => (Some(b), Some(into)),
            None => (None, None),
        };
        let (strategies, limits, random) = Config::<E>::per_class(
            &self.default_strategy,
            &self.class_strategies,
            self.class_caps,
            self.max_unknown_retries,
        );
        let config = Config {
            classifier: self.classifier.__into_shared(),
            default_strategy: self.default_strategy,
            class_strategies: self.class_strategies,
            max_attempts: self.max_attempts,
            class_caps: self.class_caps,
            max_unknown_retries: self.max_unknown_retries,
            strategies,
            limits,
            random,
            is_lean: breaker.is_none() && self.budget.is_none() && self.hook.is_none(),
            deadline: self.deadline,
            max_server_delay: self.max_server_delay,
            operation: self.operation,
            hook: self.hook,
            error_chain: self.error_chain,
            seed: self.seed,
            budget: self.budget,
            breaker,
            circuit_open,
            attempt_timeout: self.attempt_timeout,
            abort: self.abort,
            calls: Arc::new(AtomicU64::new(0)),
            time,
        };
        Ok((config, self.ok_rule))
    }
}

impl<E, C, R> PolicyBuilder<E, C, Blocking, R> {
    /// Builds the policy.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming every setting that cannot work.
    // The bound is on the method, not the `impl`: an error type with no classifier then gets
    // `Classify`'s own message (implement it, derive it, or call `.classifier(..)`), where a
    // bound on the `impl` gave "the method `build` exists but its trait bounds were not
    // satisfied".
    pub fn build(self) -> Result<RetryPolicy<E, R>, ConfigError>
    where
        C: Classifier<E> + Send + Sync + 'static,
    {
        let time = match &self.clock {
            Some(clock) => TimeSource::Virtual(clock.clone()),
            None => TimeSource::Blocking,
        };
        let (config, ok_rule) = self.into_parts(time)?;
        Ok(RetryPolicy { config, ok_rule })
    }
}

impl<E, C, R> PolicyBuilder<E, C, NonBlocking, R> {
    /// Sleeps with a custom async sleeper instead of the default (tokio's timer with the
    /// `tokio` feature, else `futures-timer` with that feature): any
    /// `Fn(Duration) -> impl Future<Output = ()>`, for another executor.
    ///
    /// With a [`clock`](Self::clock) too, the policy reads time on that [`VirtualClock`] and
    /// sleeps with this sleeper: give it [`VirtualClock::timer`] to simulate many concurrent
    /// calls in virtual time (see [`VirtualClock::run`]).
    ///
    /// ```
    /// use std::time::Duration;
    /// use reflexio::{AsyncRetryPolicy, TransientError};
    ///
    /// let policy = AsyncRetryPolicy::<TransientError>::builder()
    ///     .sleeper(|d: Duration| async move { std::thread::sleep(d) }) // a blocking stand-in
    ///     .build()
    ///     .unwrap();
    /// let out = futures::executor::block_on(policy.call(|| async { Ok::<_, TransientError>(1) }));
    /// assert_eq!(out, Ok(1));
    /// ```
    pub fn sleeper<S, F>(mut self, sleeper: S) -> Self
    where
        S: Fn(Duration) -> F + Send + Sync + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        self.sleeper = Some(Arc::new(move |d| Box::pin(sleeper(d))));
        self
    }

    /// Cancels an attempt that runs longer than `timeout`: its future is dropped and the
    /// attempt counts as a `Transient` failure, with the error `E::from(AttemptTimedOut)`.
    /// The timer is the policy's own sleeper, so it needs no specific runtime (and follows a
    /// [`VirtualClock`] or tokio's paused time in tests). `build()` rejects zero.
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self
    where
        E: From<AttemptTimedOut>,
    {
        self.attempt_timeout = Some((timeout, E::from));
        self
    }
}

impl<E, C, R> PolicyBuilder<E, C, NonBlocking, R> {
    /// Builds the policy.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming every setting that cannot work, including a missing async
    /// sleeper when both the `tokio` and `futures-timer` features are off and neither
    /// `.sleeper(..)` nor `.clock(..)` is set.
    pub fn build(self) -> Result<AsyncRetryPolicy<E, R>, ConfigError>
    where
        C: Classifier<E> + Send + Sync + 'static,
    {
        let time = match (&self.clock, &self.sleeper) {
            (Some(clock), Some(sleeper)) => TimeSource::Simulated(sleeper.clone(), clock.clone()),
            (Some(clock), None) => TimeSource::Virtual(clock.clone()),
            (None, Some(sleeper)) => TimeSource::Custom(sleeper.clone()),
            (None, None) => {
                let Some(time) = TimeSource::default_async() else {
                    let mut problems = self.problems();
                    problems.push(ConfigProblem::NoSleeper);
                    return Err(ConfigError::from_problems(problems).unwrap_err());
                };
                time
            }
        };
        let (config, ok_rule) = self.into_parts(time)?;
        Ok(AsyncRetryPolicy::from_parts(config, ok_rule))
    }
}

impl<E, C, K, R> fmt::Debug for PolicyBuilder<E, C, K, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicyBuilder")
            .field("max_attempts", &self.max_attempts)
            .field("deadline", &self.deadline)
            .field("operation", &self.operation)
            .finish_non_exhaustive()
    }
}

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
        f.debug_struct("RetryPolicy")
            .field("max_attempts", &self.config.max_attempts)
            .field("deadline", &self.config.deadline)
            .field("operation", &self.config.operation)
            .finish_non_exhaustive()
    }
}

impl<E, R> fmt::Display for RetryPolicy<E, R> {
    /// The same as [`describe`](RetryPolicy::describe).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.config.describe(f)
    }
}

impl<E> RetryPolicy<E> {
    /// A builder with the defaults listed on [`PolicyBuilder`].
    pub fn builder() -> RetryPolicyBuilder<E> {
        PolicyBuilder::new()
    }
}

// Here, with the builder, rather than in `async_policy.rs`: the async policy's module then
// does not depend on this one (no module cycle).
impl<E> AsyncRetryPolicy<E> {
    /// A builder with the defaults listed on [`PolicyBuilder`].
    pub fn builder() -> AsyncRetryPolicyBuilder<E> {
        PolicyBuilder::new()
    }
}

/// Drives one call of a blocking policy.
#[inline]
fn drive<E, T, R, F>(attempts: &mut Attempts<'_, E, T, R>, time: &TimeSource, op: F) -> Result<T, E>
where
    F: FnMut() -> Result<T, E>,
    E: fmt::Debug,
    R: OkClassifier<T>,
{
    let next = attempts.begin();
    drive_from(next, attempts, time, op)
}

/// Drives one call of a blocking policy from `next`.
#[inline]
fn drive_from<E, T, R, F>(
    mut next: Next<T, E>,
    attempts: &mut Attempts<'_, E, T, R>,
    time: &TimeSource,
    mut op: F,
) -> Result<T, E>
where
    F: FnMut() -> Result<T, E>,
    E: fmt::Debug,
    R: OkClassifier<T>,
{
    loop {
        next = match next {
            Next::Attempt => attempts.record(op()),
            Next::Sleep(delay) => {
                if !delay.is_zero() {
                    time.sleep_blocking(delay);
                }
                attempts.resume()
            }
            Next::Done(result) => return result,
        };
    }
}

impl<E, R> RetryPolicy<E, R> {
    /// Calls `op` until it succeeds or the policy stops, sleeping between attempts.
    ///
    /// Returns the value, or the last attempt's own error, untouched. A call whose first
    /// attempt succeeds allocates nothing and takes no lock.
    ///
    /// # Cost
    ///
    /// Without a breaker, a budget or an event hook, a success costs the call of `op` and, when
    /// the policy has a deadline (60 s by default), one read of the clock at the start; a
    /// failure costs one decision of the engine, with no allocation. The other settings add
    /// their own work to every call: the breaker's admission, the budget's counts, and an
    /// event (with a clock read) per attempt for a hook. `BENCHMARKS.md` has the figures.
    ///
    /// # Errors
    ///
    /// The error of the last attempt, when the policy stops.
    #[inline]
    pub fn call<T, F>(&self, mut op: F) -> Result<T, E>
    where
        F: FnMut() -> Result<T, E>,
        E: fmt::Debug,
        R: OkClassifier<T>,
    {
        if self.config.lean() {
            // Nothing has to happen before the first attempt (a breaker's admission, a budget's
            // count) but reading the clock for a deadline, nor after its success (an event, a
            // budget's reward): a success costs a call of `op` (and one clock read with a
            // deadline), and the per-call state is made only after a failure.
            let start = self.config.lean_start();
            let first = op();
            return match first_outcome(&self.ok_rule, &first) {
                ControlFlow::Break(()) => first,
                ControlFlow::Continue(rejected_ok) => {
                    self.after_first(first, rejected_ok, start, op)
                }
            };
        }
        self.drive_call(op)
    }

    /// The rest of a lean call whose first attempt failed: the engine's decisions and the
    /// sleeps, nothing else (no events, breaker or budget to drive). Out of line, so that
    /// `call` stays small enough to inline.
    #[cold]
    #[inline(never)]
    fn after_first<T, F>(
        &self,
        first: Result<T, E>,
        rejected_ok: Option<Classification>,
        start: Option<Stamp>,
        mut op: F,
    ) -> Result<T, E>
    where
        F: FnMut() -> Result<T, E>,
        E: fmt::Debug,
        R: OkClassifier<T>,
    {
        let config = &self.config;
        let mut engine = Engine::new();
        let mut outcome = first;
        let mut forced = rejected_ok;
        loop {
            let Some(delay) = engine.next_lean(config, &self.ok_rule, &outcome, forced, start)
            else {
                return outcome;
            };
            forced = None;
            if !delay.is_zero() {
                config.time.sleep_blocking(delay);
            }
            outcome = op();
        }
    }

    /// A call of a policy that is not lean.
    #[inline(never)]
    fn drive_call<T, F>(&self, op: F) -> Result<T, E>
    where
        F: FnMut() -> Result<T, E>,
        E: fmt::Debug,
        R: OkClassifier<T>,
    {
        let mut attempts = self.config.start(&self.ok_rule, false);
        drive(&mut attempts, &self.config.time, op)
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
        let mut attempts = self.config.start(&self.ok_rule, true);
        let result = drive(&mut attempts, &self.config.time, op);
        attempts.finish(result)
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
        let mut attempts = self.config.start(&self.ok_rule, true);
        let result = drive(&mut attempts, &self.config.time, op);
        attempts.finish_rejecting(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    /// Which policies are lean decides which loop their calls take (the lean loops, or the full
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
