//! The policy builder, [`PolicyBuilder`], for both policies.

use core::fmt;
use core::marker::PhantomData;
use core::time::Duration;
use std::sync::Arc;

use crate::async_policy::AsyncRetryPolicy;
use crate::budget::RetryBudget;
use crate::circuit::CircuitBreaker;
use crate::class::{Classification, ErrorClass};
use crate::classify::{Classifier, DefaultClassifier};
use crate::errors::{AttemptTimedOut, CircuitOpen, ConfigError, ConfigProblem};
use crate::event::RetryEvent;
use crate::hedging::Hedging;
use crate::ok::{AcceptOk, OkRule};
use crate::policy::RetryPolicy;
use crate::random::Randomness;
use crate::rate_limit::AdaptiveRateLimiter;
use crate::settings::{AsStdError, Config, Conversions, Deadline, Settings};
use crate::strategies::Strategy;
use crate::time::TimeSource;
use crate::time::VirtualClock;

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
/// | `deadline` | 60 s, counted from the first failure, on a monotonic clock |
/// | `max_server_delay` | 60 s |
/// | `operation`, `on_event`, `seed` | none |
/// | `budget`, `circuit_breaker`, `abort_if`, `retry_if_ok`, `attempt_timeout` | none |
#[must_use = "a builder does nothing until `build()` is called"]
pub struct PolicyBuilder<E, C, K, R = AcceptOk> {
    settings: Settings,
    classifier: C,
    /// A classifier already behind a trait object (`#[retry]`'s), kept as it is rather than
    /// wrapped again, which would cost a second dynamic call per classification.
    pub(crate) shared: Option<Arc<dyn Classifier<E> + Send + Sync>>,
    conversions: Conversions<E>,
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
            settings: Settings::new(),
            classifier: DefaultClassifier,
            shared: None,
            conversions: Conversions::NONE,
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
            settings: self.settings,
            classifier,
            shared: None,
            conversions: self.conversions,
            ok_rule,
            _marker: PhantomData,
        }
    }

    /// Sets the strategy of every class that has no strategy of its own.
    pub fn strategy(mut self, strategy: impl Strategy + 'static) -> Self {
        self.settings.default_strategy = Arc::new(strategy);
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
        self.settings.class_strategies[class.index()] = Some(Arc::new(strategy));
        self
    }

    /// Sets the total number of calls of the operation, the first included (default 6).
    /// `build()` rejects 0.
    pub fn max_attempts(mut self, max_attempts: u32) -> Self {
        self.settings.max_attempts = max_attempts;
        self
    }

    /// Caps the retries after failures of one class: with `n = 2`, at most 3 attempts end in
    /// that class. `n = 0` stops at its first failure.
    pub fn max_retries_for(mut self, class: ErrorClass, retries: u32) -> Self {
        self.settings.class_caps[class.index()] = Some(retries);
        self
    }

    /// Caps the retries after `Unknown` failures (default `Some(2)`); `None` leaves only the
    /// other limits.
    pub fn max_unknown_retries(mut self, retries: Option<u32>) -> Self {
        self.settings.max_unknown_retries = retries;
        self
    }

    /// Sets the deadline of one call, measured on a monotonic clock from the start of the
    /// call. No attempt starts at or after it, and the policy never sleeps into it: when the
    /// next delay would reach it, the policy stops at once with
    /// [`StopReason::DeadlineExceeded`](crate::StopReason::DeadlineExceeded). An attempt already
    /// running is not interrupted. `build()` rejects zero.
    ///
    /// Without this setting, a policy stops retrying 60 s after the call's **first failure**:
    /// the same promise, counted from the end of the first failed attempt instead of the start,
    /// so that a call that succeeds at once reads no clock at all. Setting a deadline reads the
    /// clock once at the start of every call (about 3 ns on Linux's coarse clock, the sync
    /// policy's; see `BENCHMARKS.md`).
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.settings.deadline = Some(Deadline::FromStart(deadline));
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
        self.settings.max_server_delay = bound;
        self
    }

    /// Sets a deadline counted from the end of the call's first failed attempt, as the default
    /// one (60 s) is: the same promise as [`deadline`](Self::deadline) (no attempt starts at or
    /// after it, no sleep reaches into it), with no clock read before a failure, so a call that
    /// succeeds at once reads no clock. The first attempt's own duration is not counted: bound
    /// it with an [attempt timeout](Self::attempt_timeout). `build()` rejects zero.
    ///
    /// ```
    /// use std::time::Duration;
    /// use reflexio::{strategies::constant, testing::VirtualClock, RetryPolicy, StopReason, TransientError};
    ///
    /// let clock = VirtualClock::new();
    /// let policy = RetryPolicy::builder()
    ///     .strategy(constant(Duration::from_secs(1)))
    ///     .max_attempts(100)
    ///     .deadline_after_first_failure(Duration::from_millis(2500))
    ///     .clock(clock.clone())
    ///     .build()
    ///     .unwrap();
    /// let err = policy
    ///     .execute(|| {
    ///         clock.advance(Duration::from_secs(10)); // each attempt takes 10 s
    ///         Err::<(), _>(TransientError::new("down"))
    ///     })
    ///     .unwrap_err();
    /// // The first failure (at 10 s) starts the deadline; the retry at 11 s starts within it,
    /// // and fails at 21 s, past it.
    /// assert_eq!((err.attempts(), err.stop_reason()), (2, StopReason::DeadlineExceeded));
    /// ```
    pub fn deadline_after_first_failure(mut self, deadline: Duration) -> Self {
        self.settings.deadline = Some(Deadline::FromFirstFailure(deadline));
        self
    }

    /// Removes the deadline, the default one (60 s from the first failure) included: only the
    /// attempt caps bound the call.
    pub fn no_deadline(mut self) -> Self {
        self.settings.deadline = None;
        self
    }

    /// Names the operation in every event.
    pub fn operation(mut self, operation: &str) -> Self {
        self.settings.operation = Some(Arc::from(operation));
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
        self.settings.hook = Some(Arc::new(hook));
        self
    }

    /// Also reports the start and the end of every attempt to the [`on_event`](Self::on_event)
    /// hook ([`EventKind::AttemptStarted`](crate::EventKind::AttemptStarted), then
    /// [`EventKind::AttemptFinished`](crate::EventKind::AttemptFinished) with the attempt's
    /// [`duration`](RetryEvent::duration) and its outcome's class, before the decision's own
    /// event), for observers who want per-attempt latency. Without a hook it does nothing; with
    /// one, each attempt costs one more clock reading and two more calls of the hook. Hedged
    /// calls ([`call_idempotent`](crate::AsyncRetryPolicy::call_idempotent)) report them
    /// whenever there is a hook, since their attempts overlap.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use std::time::Duration;
    /// use reflexio::{strategies::no_delay, testing::VirtualClock, EventKind, RetryPolicy, TransientError};
    ///
    /// let clock = VirtualClock::new();
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let sink = seen.clone();
    /// let policy = RetryPolicy::builder()
    ///     .strategy(no_delay())
    ///     .clock(clock.clone())
    ///     .attempt_events()
    ///     .on_event(move |e| sink.lock().unwrap().push((e.kind, e.attempt, e.duration)))
    ///     .build()
    ///     .unwrap();
    /// let mut calls = 0;
    /// let out = policy.call(|| {
    ///     calls += 1;
    ///     clock.advance(Duration::from_millis(7)); // the attempt's work
    ///     if calls < 2 { Err(TransientError::new("timed out")) } else { Ok(calls) }
    /// });
    /// assert_eq!(out, Ok(2));
    /// let ms7 = Some(Duration::from_millis(7));
    /// assert_eq!(*seen.lock().unwrap(), [
    ///     (EventKind::AttemptStarted, 1, None),
    ///     (EventKind::AttemptFinished, 1, ms7),
    ///     (EventKind::Retry, 1, None),
    ///     (EventKind::AttemptStarted, 2, None),
    ///     (EventKind::AttemptFinished, 2, ms7),
    ///     (EventKind::Success, 2, None),
    /// ]);
    /// ```
    pub fn attempt_events(mut self) -> Self {
        self.settings.attempt_events = true;
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
        self.conversions.error_chain = Some(as_std_error);
        self
    }

    /// Makes the jitter reproducible: two policies with the same seed, called the same way in
    /// the same order, wait exactly the same delays. Each call still gets its own sequence.
    pub fn seed(mut self, seed: u64) -> Self {
        self.settings.randomness = Randomness::seeded(seed);
        self
    }

    /// Draws the jitter's random numbers from `rng`, any generator of the `rand` family
    /// (`rand_core` 0.10's [`Rng`](rand_core::Rng), re-exported as `reflexio::rand_core`), in
    /// place of the policy's own streams: every draw of every call, in the order the calls make
    /// them. For deterministic simulations (turmoil, madsim) and seeded tests that share one
    /// generator. The generator sits behind a lock shared by the policy's clones, taken once per
    /// jittered delay. Replaces [`seed`](Self::seed), and is replaced by it.
    ///
    /// ```
    /// use std::time::Duration;
    /// use reflexio::{strategies::full_jitter, testing::VirtualClock, RetryPolicy, TransientError};
    /// use rand_xoshiro::{rand_core::SeedableRng, Xoshiro256PlusPlus};
    ///
    /// let run = || {
    ///     let clock = VirtualClock::new();
    ///     let policy = RetryPolicy::builder()
    ///         .strategy(full_jitter().base(Duration::from_millis(100)))
    ///         .rng(Xoshiro256PlusPlus::seed_from_u64(42))
    ///         .clock(clock.clone())
    ///         .max_attempts(4)
    ///         .build()
    ///         .unwrap();
    ///     let _ = policy.call(|| Err::<(), _>(TransientError::new("down")));
    ///     clock.sleeps()
    /// };
    /// assert_eq!(run(), run()); // the same generator, the same delays
    /// assert_eq!(run().len(), 3);
    /// ```
    pub fn rng<G>(mut self, rng: G) -> Self
    where
        G: rand_core::Rng + Send + 'static,
    {
        self.settings.randomness = Randomness::User(Arc::new(std::sync::Mutex::new(rng)));
        self
    }

    /// Reads time from, and sleeps on, a [`VirtualClock`] instead of the real clock.
    pub fn clock(mut self, clock: VirtualClock) -> Self {
        self.settings.clock = Some(clock);
        self
    }

    /// Waits on a shared [`AdaptiveRateLimiter`] before every attempt, the first included: the
    /// AWS SDKs' adaptive retry mode (add
    /// [`RetryBudget::aws_standard`](crate::RetryBudget::aws_standard) for their retry quota
    /// too). Every outcome feeds it: a failure classified `RateLimit` cuts its rate, and its
    /// `Retry-After` (bounded by [`max_server_delay`](Self::max_server_delay)) holds its
    /// tokens; anything else lets the rate grow back.
    ///
    /// The wait is a sleep through the policy's sleeper. Before a retry it counts against the
    /// deadline like the backoff does: a wait that would reach the deadline stops the call at
    /// once with [`StopReason::DeadlineExceeded`](crate::StopReason::DeadlineExceeded) and the
    /// last error. Before the first attempt there is no error to return yet: the wait is not
    /// cut by a deadline counted from the start (cancel the call, from a timeout, to bound it:
    /// a call dropped while it waits holds no token). The limiter and the policy must count
    /// time on the same clock (both real, or the same [`VirtualClock`]), else `build` returns a
    /// [`ConfigError`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use reflexio::{
    ///     strategies::constant, testing::VirtualClock, AdaptiveRateLimiter, RateLimitError,
    ///     RetryPolicy,
    /// };
    ///
    /// let clock = VirtualClock::new();
    /// let limiter = AdaptiveRateLimiter::builder().clock(clock.clone()).build().unwrap();
    /// let policy = RetryPolicy::builder()
    ///     .strategy(constant(Duration::from_millis(250)))
    ///     .rate_limiter(limiter.clone())
    ///     .clock(clock.clone())
    ///     .build()
    ///     .unwrap();
    /// let mut calls = 0;
    /// let out = policy.call(|| {
    ///     calls += 1;
    ///     if calls == 1 { Err(RateLimitError::new("429")) } else { Ok(calls) }
    /// });
    /// assert_eq!(out, Ok(2));
    /// // The 429 turned the limiter on at 0.5 tokens/s: after the 250 ms backoff, the retry
    /// // waited for its token (0.125 earned, 0.875 to go).
    /// assert_eq!(clock.sleeps(), [Duration::from_millis(250), Duration::from_millis(1750)]);
    /// ```
    pub fn rate_limiter(mut self, limiter: AdaptiveRateLimiter) -> Self {
        self.settings.rate_limiter = Some(limiter);
        self
    }

    /// Shares a [`RetryBudget`] with other calls and policies: before every retry the policy
    /// asks it for tokens, and stops with
    /// [`StopReason::BudgetExhausted`](crate::StopReason::BudgetExhausted) when there are none.
    pub fn budget(mut self, budget: RetryBudget) -> Self {
        self.settings.budget = Some(budget);
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
        self.settings.breaker = Some(breaker);
        self.conversions.circuit_open = Some(E::from);
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
        self.settings.abort = Some(Arc::new(abort));
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

    fn into_parts(self, time: TimeSource) -> Result<(Config<E>, R), ConfigError>
    where
        C: Classifier<E> + Send + Sync + 'static,
    {
        ConfigError::from_problems(self.settings.problems())?;
        let classifier = match self.shared {
            Some(shared) => shared,
            None => Arc::new(self.classifier),
        };
        let config = Config::new(self.settings, classifier, self.conversions, time);
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
        let time = match &self.settings.clock {
            Some(clock) => TimeSource::Virtual(clock.clone()),
            None => TimeSource::Blocking,
        };
        let (config, ok_rule) = self.into_parts(time)?;
        Ok(RetryPolicy::from_parts(config, ok_rule))
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
        self.settings.sleeper = Some(Arc::new(move |d| Box::pin(sleeper(d))));
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
        self.settings.attempt_timeout = Some(timeout);
        self.conversions.timed_out = Some(E::from);
        self
    }

    /// Hedges the calls that state their operation is idempotent
    /// ([`call_idempotent`](AsyncRetryPolicy::call_idempotent),
    /// [`execute_idempotent`](AsyncRetryPolicy::execute_idempotent)): see [`Hedging`].
    /// [`call`](AsyncRetryPolicy::call) and [`execute`](AsyncRetryPolicy::execute) never
    /// hedge, so the policy still serves operations that must not run twice.
    ///
    /// ```
    /// use std::time::Duration;
    /// use reflexio::{AsyncRetryPolicy, Hedging, TransientError};
    ///
    /// let policy = AsyncRetryPolicy::<TransientError>::builder()
    ///     .hedging(Hedging::at_percentile(95.0).min_delay(Duration::from_millis(2)).build().unwrap())
    ///     .build()
    ///     .unwrap();
    /// assert!(policy.describe().contains("hedging (idempotent calls): after the p95 latency"));
    /// ```
    pub fn hedging(mut self, hedging: Hedging) -> Self {
        self.settings.hedging = Some(hedging);
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
        let time = match (&self.settings.clock, &self.settings.sleeper) {
            (Some(clock), Some(sleeper)) => TimeSource::Simulated(sleeper.clone(), clock.clone()),
            (Some(clock), None) => TimeSource::Virtual(clock.clone()),
            (None, Some(sleeper)) => TimeSource::Custom(sleeper.clone()),
            (None, None) => {
                let Some(time) = TimeSource::default_async() else {
                    let mut problems = self.settings.problems();
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
            .field("max_attempts", &self.settings.max_attempts)
            .field("deadline", &self.settings.deadline)
            .field("operation", &self.settings.operation)
            .finish_non_exhaustive()
    }
}

impl<E> RetryPolicy<E> {
    /// A builder with the defaults listed on [`PolicyBuilder`].
    pub fn builder() -> RetryPolicyBuilder<E> {
        PolicyBuilder::new()
    }
}

// Here, with the builder, rather than beside the policies: their modules then do not depend
// on this one (no module cycle).
impl<E> AsyncRetryPolicy<E> {
    /// A builder with the defaults listed on [`PolicyBuilder`].
    pub fn builder() -> AsyncRetryPolicyBuilder<E> {
        PolicyBuilder::new()
    }
}
