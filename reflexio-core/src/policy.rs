//! The policy builder and the sync policy, [`RetryPolicy`].

use core::fmt;
use core::marker::PhantomData;
use core::time::Duration;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use crate::async_policy::AsyncRetryPolicy;
use crate::class::ErrorClass;
use crate::classify::{Classifier, DefaultClassifier};
use crate::engine::{Attempts, Config, Hook, Step};
use crate::errors::{ConfigError, ConfigProblem};
use crate::event::RetryEvent;
use crate::strategies::{Strategy, decorrelated_jitter};
use crate::testing::VirtualClock;
use crate::time::{CustomSleeper, TimeSource};

/// The default strategy: the Python decorator's `decorrelated_jitter(max_s=5.0)`.
pub(crate) const DEFAULT_STRATEGY: crate::strategies::DecorrelatedJitter =
    decorrelated_jitter().max(Duration::from_secs(5));

/// Builds a [`RetryPolicy`] or an [`AsyncRetryPolicy`] (`P`), classifying errors `E` with `C`.
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
/// | `operation`, `on_event`, `seed` | none |
#[must_use = "a builder does nothing until `build()` is called"]
pub struct PolicyBuilder<E, C, P> {
    classifier: C,
    default_strategy: Arc<dyn Strategy>,
    class_strategies: [Option<Arc<dyn Strategy>>; 8],
    max_attempts: u32,
    class_caps: [Option<u32>; 8],
    max_unknown_retries: Option<u32>,
    deadline: Option<Duration>,
    operation: Option<Arc<str>>,
    hook: Option<Hook>,
    seed: Option<u64>,
    clock: Option<VirtualClock>,
    sleeper: Option<CustomSleeper>,
    _marker: PhantomData<fn(&E) -> P>,
}

/// The builder of a [`RetryPolicy`], from [`RetryPolicy::builder`].
pub type RetryPolicyBuilder<E, C = DefaultClassifier> = PolicyBuilder<E, C, RetryPolicy<E>>;

/// The builder of an [`AsyncRetryPolicy`], from [`AsyncRetryPolicy::builder`].
pub type AsyncRetryPolicyBuilder<E, C = DefaultClassifier> =
    PolicyBuilder<E, C, AsyncRetryPolicy<E>>;

impl<E, P> PolicyBuilder<E, DefaultClassifier, P> {
    pub(crate) fn new() -> Self {
        PolicyBuilder {
            classifier: DefaultClassifier,
            default_strategy: Arc::new(DEFAULT_STRATEGY),
            class_strategies: Default::default(),
            max_attempts: 6,
            class_caps: [None; 8],
            max_unknown_retries: Some(2),
            deadline: Some(Duration::from_secs(60)),
            operation: None,
            hook: None,
            seed: None,
            clock: None,
            sleeper: None,
            _marker: PhantomData,
        }
    }
}

impl<E, C, P> PolicyBuilder<E, C, P> {
    /// Sets how errors are classified: a closure `|e: &E| -> ErrorClass` (or `-> Classification`),
    /// or any [`Classifier`].
    ///
    /// ```
    /// use reflexio_core::{ErrorClass, RetryPolicy};
    ///
    /// #[derive(Debug)]
    /// struct Timeout;
    /// let policy = RetryPolicy::builder()
    ///     .classifier(|_: &Timeout| ErrorClass::Transient)
    ///     .build()
    ///     .unwrap();
    /// # let _: &RetryPolicy<Timeout> = &policy;
    /// ```
    pub fn classifier<C2>(self, classifier: C2) -> PolicyBuilder<E, C2, P>
    where
        C2: Classifier<E> + Send + Sync + 'static,
    {
        PolicyBuilder {
            classifier,
            default_strategy: self.default_strategy,
            class_strategies: self.class_strategies,
            max_attempts: self.max_attempts,
            class_caps: self.class_caps,
            max_unknown_retries: self.max_unknown_retries,
            deadline: self.deadline,
            operation: self.operation,
            hook: self.hook,
            seed: self.seed,
            clock: self.clock,
            sleeper: self.sleeper,
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
    /// use reflexio_core::{strategies::{constant, token_backoff}, ErrorClass, RetryPolicy, TransientError};
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

    fn check(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        if self.max_attempts == 0 {
            problems.push(ConfigProblem::ZeroMaxAttempts);
        }
        if self.deadline == Some(Duration::ZERO) {
            problems.push(ConfigProblem::ZeroDeadline);
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
        ConfigError::from_problems(problems)
    }

    fn into_config(self, time: TimeSource) -> Result<Config<E>, ConfigError>
    where
        C: Classifier<E> + Send + Sync + 'static,
    {
        self.check()?;
        Ok(Config {
            classifier: Arc::new(self.classifier),
            default_strategy: self.default_strategy,
            class_strategies: self.class_strategies,
            max_attempts: self.max_attempts,
            class_caps: self.class_caps,
            max_unknown_retries: self.max_unknown_retries,
            deadline: self.deadline,
            operation: self.operation,
            hook: self.hook,
            seed: self.seed,
            calls: Arc::new(AtomicU64::new(0)),
            time,
        })
    }
}

impl<E, C> PolicyBuilder<E, C, RetryPolicy<E>>
where
    C: Classifier<E> + Send + Sync + 'static,
{
    /// Builds the policy.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming every setting that cannot work.
    pub fn build(self) -> Result<RetryPolicy<E>, ConfigError> {
        let time = match &self.clock {
            Some(clock) => TimeSource::Virtual(clock.clone()),
            None => TimeSource::Blocking,
        };
        Ok(RetryPolicy {
            config: self.into_config(time)?,
        })
    }
}

impl<E, C> PolicyBuilder<E, C, AsyncRetryPolicy<E>> {
    /// Sleeps with a custom async sleeper instead of the default (tokio's timer with the
    /// `tokio` feature, else `futures-timer` with that feature): any
    /// `Fn(Duration) -> impl Future<Output = ()>`, for another executor.
    /// A [`clock`](Self::clock) takes precedence.
    ///
    /// ```
    /// use std::time::Duration;
    /// use reflexio_core::{AsyncRetryPolicy, TransientError};
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
}

impl<E, C> PolicyBuilder<E, C, AsyncRetryPolicy<E>>
where
    C: Classifier<E> + Send + Sync + 'static,
{
    /// Builds the policy.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming every setting that cannot work, including a missing async
    /// sleeper when both the `tokio` and `futures-timer` features are off and neither
    /// `.sleeper(..)` nor `.clock(..)` is set.
    pub fn build(self) -> Result<AsyncRetryPolicy<E>, ConfigError> {
        let time = match (&self.clock, &self.sleeper) {
            (Some(clock), _) => TimeSource::Virtual(clock.clone()),
            (None, Some(sleeper)) => TimeSource::Custom(sleeper.clone()),
            (None, None) => {
                let Some(time) = TimeSource::default_async() else {
                    let mut problems = self
                        .check()
                        .err()
                        .map(|e| e.problems().to_vec())
                        .unwrap_or_default();
                    problems.push(ConfigProblem::Invalid {
                        setting: "sleeper",
                        reason: "is required: enable the `tokio` or `futures-timer` feature, \
                                 or set `.sleeper(..)`"
                            .into(),
                    });
                    return Err(ConfigError::from_problems(problems).unwrap_err());
                };
                time
            }
        };
        Ok(AsyncRetryPolicy::from_config(self.into_config(time)?))
    }
}

impl<E, C, P> fmt::Debug for PolicyBuilder<E, C, P> {
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
/// Generic over the error type only: the classifier, strategies and hook sit behind trait
/// objects (they run only on failure), so a policy is a nameable type that fits in a `static`.
/// It is `Send + Sync` and cheap to clone; share it with `&'static`, `Arc` or a clone.
///
/// # Examples
///
/// ```
/// use std::sync::LazyLock;
/// use std::time::Duration;
/// use reflexio_core::{strategies::equal_jitter, RetryPolicy};
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
pub struct RetryPolicy<E> {
    config: Config<E>,
}

impl<E> Clone for RetryPolicy<E> {
    fn clone(&self) -> Self {
        RetryPolicy {
            config: self.config.clone(),
        }
    }
}

impl<E> fmt::Debug for RetryPolicy<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryPolicy")
            .field("max_attempts", &self.config.max_attempts)
            .field("deadline", &self.config.deadline)
            .field("operation", &self.config.operation)
            .finish_non_exhaustive()
    }
}

impl<E> RetryPolicy<E> {
    /// A builder with the defaults listed on [`PolicyBuilder`].
    pub fn builder() -> RetryPolicyBuilder<E> {
        PolicyBuilder::new()
    }

    /// Calls `op` until it succeeds or the policy stops, sleeping between attempts.
    ///
    /// Returns the value, or the last attempt's own error, untouched. A call whose first
    /// attempt succeeds allocates nothing and takes no lock.
    ///
    /// # Errors
    ///
    /// The error of the last attempt, when the policy stops.
    #[inline]
    pub fn call<T, F>(&self, mut op: F) -> Result<T, E>
    where
        F: FnMut() -> Result<T, E>,
        E: fmt::Debug,
    {
        let mut attempts = self.config.start();
        loop {
            let result = op();
            match attempts.on_result(&result) {
                Step::Return => return result,
                Step::Sleep(delay) => {
                    drop(result);
                    if !delay.is_zero() {
                        self.config.time.sleep_blocking(delay);
                    }
                }
            }
        }
    }

    /// Starts the per-call state that `#[retry]`-generated code drives. Not public API.
    #[doc(hidden)]
    #[must_use]
    pub fn __start(&self) -> Attempts<'_, E> {
        self.config.start()
    }

    /// Sleeps as the policy does between attempts. Not public API.
    #[doc(hidden)]
    pub fn __sleep(&self, delay: Duration) {
        if !delay.is_zero() {
            self.config.time.sleep_blocking(delay);
        }
    }
}
