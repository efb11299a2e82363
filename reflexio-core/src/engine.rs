//! The decision engine: after a failure, stop (and why) or wait how long.
//!
//! [`Engine`] is pure: no clock reads, no sleeping, no I/O; the elapsed time and the random
//! numbers are passed in. The sync loop, the async loop and `#[retry]` all drive it: through
//! [`Attempts`], which adds the clock, the event hook, the breaker and the budget, or, for a
//! *lean* policy that has none of those ([`Config::lean`]), through [`Engine::next_lean`]
//! alone (the loops of the sync and async `call`, and the async [`Call`](crate::call::Call)
//! state that `#[retry]` drives).

use core::cell::Cell;
use core::fmt;
use core::marker::PhantomData;
use core::time::Duration;
use std::hash::{BuildHasher, RandomState};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::budget::{Reserved, RetryBudget};
use crate::circuit::{Admission, CircuitBreaker, Transition};
use crate::class::{Classification, ErrorClass};
use crate::classify::Classifier;
use crate::clock::saturating_nanos;
use crate::errors::{AttemptTimedOut, CircuitOpen, RetryError};
use crate::event::{EventKind, RetryEvent};
use crate::ok::OkClassifier;
use crate::stop::StopReason;
use crate::strategies::{BackoffContext, Strategy};
use crate::time::{Stamp, TimeSource};

/// The engine's answer after a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    Retry(Duration),
    Stop(StopReason),
}

/// An async attempt timeout, with the conversion of its error into `E`.
pub(crate) type AttemptTimeout<E> = (Duration, fn(AttemptTimedOut) -> E);

/// A circuit breaker, with the conversion of its rejection into `E`.
pub(crate) type Breaker<E> = (CircuitBreaker, fn(CircuitOpen) -> E);

/// The event hook, as stored.
pub(crate) type Hook = Arc<dyn Fn(&RetryEvent<'_>) + Send + Sync>;

/// Sees an error as a `std::error::Error`, for the events' `std_error`.
pub(crate) type AsStdError<E> = fn(&E) -> &(dyn std::error::Error + 'static);

/// Everything a policy is configured with; shared by both policies.
pub(crate) struct Config<E> {
    pub(crate) classifier: Arc<dyn Classifier<E> + Send + Sync>,
    pub(crate) default_strategy: Arc<dyn Strategy>,
    pub(crate) class_strategies: [Option<Arc<dyn Strategy>>; 8],
    pub(crate) max_attempts: u32,
    pub(crate) class_caps: [Option<u32>; 8],
    pub(crate) max_unknown_retries: Option<u32>,
    /// Per class, built once from the above: the strategy (the class's own or the default),
    /// and the most failures of the class that may still be retried (0 for a class never
    /// retried; the class cap, and for `Unknown` the lower of it and its own cap), so that a
    /// decision checks one number where it checked three conditions; and whether the
    /// strategy reads its random number ([`Strategy::uses_random`]).
    pub(crate) strategies: [Arc<dyn Strategy>; 8],
    pub(crate) limits: [u32; 8],
    pub(crate) random: [bool; 8],
    /// No breaker, budget or hook (see [`Config::lean`]), worked out once at build.
    pub(crate) is_lean: bool,
    pub(crate) deadline: Option<Duration>,
    /// The longest delay a server may ask for (`Retry-After`, gRPC pushback).
    pub(crate) max_server_delay: Duration,
    pub(crate) operation: Option<Arc<str>>,
    pub(crate) hook: Option<Hook>,
    pub(crate) error_chain: Option<AsStdError<E>>,
    pub(crate) seed: Option<u64>,
    pub(crate) budget: Option<RetryBudget>,
    pub(crate) breaker: Option<CircuitBreaker>,
    /// Turns a circuit rejection into `E`; set together with `breaker`.
    pub(crate) circuit_open: Option<fn(CircuitOpen) -> E>,
    /// The async attempt timeout and how to turn it into `E`.
    pub(crate) attempt_timeout: Option<AttemptTimeout<E>>,
    pub(crate) abort: Option<Arc<dyn Fn() -> bool + Send + Sync>>,
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
            strategies: self.strategies.clone(),
            limits: self.limits,
            random: self.random,
            is_lean: self.is_lean,
            deadline: self.deadline,
            max_server_delay: self.max_server_delay,
            operation: self.operation.clone(),
            hook: self.hook.clone(),
            error_chain: self.error_chain,
            seed: self.seed,
            budget: self.budget.clone(),
            breaker: self.breaker.clone(),
            circuit_open: self.circuit_open,
            attempt_timeout: self.attempt_timeout,
            abort: self.abort.clone(),
            calls: self.calls.clone(),
            time: self.time.clone(),
        }
    }
}

impl<E> Config<E> {
    pub(crate) fn strategy_for(&self, class: ErrorClass) -> &dyn Strategy {
        &*self.strategies[class.index()]
    }

    /// The per-class strategies, limits and use of randomness (see the fields) of these
    /// settings.
    pub(crate) fn per_class(
        default_strategy: &Arc<dyn Strategy>,
        class_strategies: &[Option<Arc<dyn Strategy>>; 8],
        class_caps: [Option<u32>; 8],
        max_unknown_retries: Option<u32>,
    ) -> ([Arc<dyn Strategy>; 8], [u32; 8], [bool; 8]) {
        let strategies = ErrorClass::ALL.map(|class| {
            class_strategies[class.index()]
                .clone()
                .unwrap_or_else(|| default_strategy.clone())
        });
        let limits = ErrorClass::ALL.map(|class| {
            if !class.is_retryable() {
                return 0;
            }
            let cap = class_caps[class.index()].unwrap_or(u32::MAX);
            if class == ErrorClass::Unknown {
                cap.min(max_unknown_retries.unwrap_or(u32::MAX))
            } else {
                cap
            }
        });
        let random = strategies.each_ref().map(|s| s.uses_random());
        (strategies, limits, random)
    }

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

    /// Writes the multi-line description of `describe()`.
    pub(crate) fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use crate::strategies::fmt_duration;
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
            Some(d) => fmt_duration(d, f)?,
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
            self.strategy_for(class).describe(f)?;
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
        if let Some((t, _)) = self.attempt_timeout {
            f.write_str("  attempt timeout: ")?;
            fmt_duration(t, f)?;
            writeln!(f)?;
        }
        if self.abort.is_some() {
            writeln!(f, "  abort condition: set")?;
        }
        if let Some(seed) = self.seed {
            writeln!(f, "  jitter seed: {seed}")?;
        }
        Ok(())
    }

    /// Whether a call needs nothing before its first attempt but, with a deadline, the time,
    /// and nothing after its success: no breaker, budget or hook. Its retries then need only
    /// the engine's counts ([`Engine::next_lean`]): no events to emit, no permits or tokens.
    #[inline]
    pub(crate) fn lean(&self) -> bool {
        self.is_lean
    }

    /// The error of an attempt that exceeded the policy's attempt timeout.
    ///
    /// # Panics
    ///
    /// If the policy has no attempt timeout (drivers ask only when one fired).
    pub(crate) fn timed_out(&self) -> E {
        let (timeout, into) = self
            .attempt_timeout
            .expect("only policies with an attempt timeout time out");
        into(AttemptTimedOut::new(timeout))
    }

    /// The time since `start`; zero for a call that did not read the clock when it started
    /// (nothing reads its elapsed time).
    #[inline]
    pub(crate) fn elapsed_since(&self, start: Option<Stamp>) -> Duration {
        start.map_or(Duration::ZERO, |start| self.time.since(start))
    }

    /// The start of a lean call: the time, read only when a deadline needs it.
    #[inline]
    pub(crate) fn lean_start(&self) -> Option<Stamp> {
        self.deadline.map(|_| self.time.now())
    }

    /// A uniform random number in `[0, 1)` for a jittered delay. A seeded policy draws from
    /// the call's own stream (`rng`, made on the first draw from the seed and the call's
    /// number), so each call's sequence is reproducible; an unseeded one draws from this
    /// thread's `SplitMix64` stream, which starts at a random point (std's hasher keys are
    /// random): no shared counter to contend on, and no per-call seeding.
    #[inline]
    fn uniform(&self, rng: &mut Option<SplitMix64>) -> f64 {
        match self.seed {
            Some(seed) => rng
                .get_or_insert_with(|| {
                    let call = self.calls.fetch_add(1, Ordering::Relaxed);
                    SplitMix64(seed ^ SplitMix64(call).next_u64())
                })
                .next_f64(),
            None => THREAD_RNG.with(|state| {
                let mut rng = match state.get() {
                    // This thread's first draw (or, once in 2^64, a state that wrapped to 0).
                    0 => SplitMix64(RandomState::new().hash_one(0_u64)),
                    s => SplitMix64(s),
                };
                let u = rng.next_f64();
                state.set(rng.0);
                u
            }),
        }
    }

    /// Starts one call: the per-call state the drivers feed outcomes into. `timed` reads the
    /// clock now even without a deadline or a hook (for `execute`'s elapsed time).
    pub(crate) fn start<'p, T, R>(&'p self, ok_rule: &'p R, timed: bool) -> Attempts<'p, E, T, R> {
        // The clock is read up front only when someone needs the elapsed time: a deadline, a
        // hook or `execute`. Otherwise a call that succeeds at once costs no clock read.
        let start =
            (timed || self.deadline.is_some() || self.hook.is_some()).then(|| self.time.now());
        Attempts {
            config: self,
            ok_rule,
            engine: Engine::new(),
            start,
            admission: None,
            reserved: None,
            kept: None,
            last_class: None,
            stop: None,
            elapsed_nanos: 0,
            _value: PhantomData,
        }
    }
}

thread_local! {
    /// The state of this thread's random stream, for unseeded policies; 0 until its first
    /// use. Initialised by a constant, so reading it is a plain thread-local load (a lazy
    /// initialiser would be a call and a check on every read).
    static THREAD_RNG: Cell<u64> = const { Cell::new(0) };
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
        // 53 bits fit an f64 exactly; 2^-53 scales them into [0, 1), exactly, in one multiply
        // (`x * EPSILON / 2.0` is two: floats are not reassociated).
        const TWO_POW_MINUS_53: f64 = f64::EPSILON / 2.0;
        #[allow(clippy::cast_precision_loss)]
        let x = (self.next_u64() >> 11) as f64;
        x * TWO_POW_MINUS_53
    }
}

/// The per-call retry state: counts and history, no time, no I/O.
#[derive(Debug)]
pub(crate) struct Engine {
    /// Attempts made so far (the number of the attempt that just ended).
    attempt: u32,
    class_failures: [u32; 8],
    /// Each class's previous delay in nanoseconds, [`NO_DELAY_YET`] before the first: half the
    /// size of `[Option<Duration>; 8]`, and this state lives in every async call's future.
    prev_delay: [u64; 8],
    /// The call's own random stream, for a seeded policy: made on the first draw.
    rng: Option<SplitMix64>,
}

/// No previous delay for this class yet. Delays are kept to the nanosecond up to
/// `u64::MAX - 1` ns (584 years); longer ones are remembered as that.
const NO_DELAY_YET: u64 = u64::MAX;

impl Engine {
    pub(crate) const fn new() -> Self {
        Engine {
            attempt: 0,
            class_failures: [0; 8],
            prev_delay: [NO_DELAY_YET; 8],
            rng: None,
        }
    }

    /// The number of attempts made so far.
    pub(crate) fn attempts(&self) -> u32 {
        self.attempt
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
    /// A random number is drawn only for a strategy that reads one ([`Config::uniform`]).
    #[allow(
        clippy::inline_always,
        reason = "the decision of every retry, lean or full: out of line, each paid a call and \
                  the reload of the policy's fields (see `next_lean`)"
    )]
    #[inline(always)]
    pub(crate) fn on_failure<E>(
        &mut self,
        config: &Config<E>,
        c: Classification,
        elapsed: Duration,
    ) -> Decision {
        let class = c.class;
        let i = class.index();
        self.class_failures[i] = self.class_failures[i].saturating_add(1);
        let failures = self.class_failures[i];

        // Never retried, the class's cap, the `Unknown` cap, all in one compare (`n` retries
        // of a class means at most `n + 1` attempts end in that class).
        if failures > config.limits[i] {
            return Decision::Stop(config.limit_reason(class, failures));
        }
        if self.attempt >= config.max_attempts {
            return Decision::Stop(StopReason::MaxAttempts);
        }
        if let Some(deadline) = config.deadline
            && elapsed >= deadline
        {
            return Decision::Stop(StopReason::DeadlineExceeded);
        }

        // A strategy without jitter costs no random number.
        let u = if config.random[i] {
            config.uniform(&mut self.rng)
        } else {
            0.0
        };
        let mut ctx = BackoffContext::new(self.attempt, class);
        ctx.prev_delay = match self.prev_delay[i] {
            NO_DELAY_YET => None,
            nanos => Some(Duration::from_nanos(nanos)),
        };
        ctx.retry_after = c.retry_after;
        let computed = config.strategy_for(class).delay(&ctx, u);
        self.prev_delay[i] = u64::try_from(computed.as_nanos())
            .unwrap_or(u64::MAX)
            .min(NO_DELAY_YET - 1);
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
        // A server asking for more than the bound stops the call now (when the deadline did
        // not already): sleeping that long could park the caller for as long as the server
        // likes, and retrying sooner would ignore what it asked.
        if let Some(server) = c.retry_after
            && server > config.max_server_delay
        {
            return Decision::Stop(StopReason::ServerDelayTooLong);
        }
        Decision::Retry(delay)
    }

    /// The whole decision after one attempt of a *lean* policy (no breaker, budget or hook:
    /// [`Config::lean`]): `None` to return `outcome` (a success, or a failure the policy gives
    /// up on), `Some(delay)` to sleep and try again. No events and no per-call bookkeeping
    /// beyond the engine's counts, so the drivers' loops for lean policies are a few
    /// instructions around the engine. `forced` is the class of an `Ok` value the rule already
    /// rejected (the rule runs once per value) or of a timeout; `start` is when the call
    /// started ([`Config::lean_start`]: read only for a deadline), and the clock is read again
    /// only to decide on a failure.
    #[allow(
        clippy::inline_always,
        reason = "the lean loops' whole per-retry work: out of line (it has three callers per \
                  error type: the sync and async `call` loops and `Call`), each decision paid a \
                  call and reloaded the policy's fields (a sixth more instructions for a sync \
                  call with 4 retries)"
    )]
    #[inline(always)]
    pub(crate) fn next_lean<E, T, R: OkClassifier<T>>(
        &mut self,
        config: &Config<E>,
        ok_rule: &R,
        outcome: &Result<T, E>,
        forced: Option<Classification>,
        start: Option<Stamp>,
    ) -> Option<Duration> {
        self.begin_attempt();
        let c = match (forced, outcome) {
            (Some(c), _) => c,
            (None, Ok(value)) => ok_rule.classify_ok(value)?,
            (None, Err(error)) => config.classifier.classify(error),
        };
        match self.on_failure(config, c, config.elapsed_since(start)) {
            Decision::Retry(delay) if !config.abort.as_ref().is_some_and(|abort| abort()) => {
                Some(delay)
            }
            Decision::Retry(_) | Decision::Stop(_) => None,
        }
    }
}

/// What a driver does next.
#[doc(hidden)]
#[derive(Debug)]
pub enum Next<T, E> {
    /// Make an attempt, then pass its outcome to the state's `record` ([`Attempts::record`],
    /// [`Call::record`](crate::call::Call::record)).
    Attempt,
    /// Sleep this long, then call the state's `resume`.
    Sleep(Duration),
    /// The call is over: return this.
    Done(Result<T, E>),
}

impl<T, E> Next<T, E> {
    /// What follows a decision: sleep `delay` and try again, or return `outcome`. The outcome
    /// is dropped before a sleep: a call's future holds either an attempt or a sleep, never a
    /// kept result as well.
    #[inline]
    pub(crate) fn after(delay: Option<Duration>, outcome: Result<T, E>) -> Self {
        match delay {
            Some(delay) => Next::Sleep(delay),
            None => Next::Done(outcome),
        }
    }
}

/// The full state of one call of a policy, fed each attempt's outcome by a driver (the sync
/// loop, sync `#[retry]` functions, `execute`, and the async [`Call`](crate::call::Call) of a
/// policy that is not lean):
///
/// ```text
/// let mut next = attempts.begin();
/// loop {
///     next = match next {
///         Next::Attempt => attempts.record(op()),
///         Next::Sleep(d) => { sleep(d); attempts.resume() }
///         Next::Done(result) => return result,
///     };
/// }
/// ```
///
/// Not public API: reachable only through the facade's hidden `__private` module.
#[doc(hidden)]
pub struct Attempts<'p, E, T, R> {
    config: &'p Config<E>,
    ok_rule: &'p R,
    engine: Engine,
    start: Option<Stamp>,
    /// The breaker's admission of the attempt in flight: a probe's place goes back to the
    /// breaker if the call is dropped, or a panic unwinds, before the outcome is recorded.
    admission: Option<Admission<'p>>,
    /// The budget's tokens for the retry being slept for: given back if it never starts.
    reserved: Option<Reserved<'p>>,
    /// With a breaker, the last outcome, kept during the sleep: a retry the breaker then
    /// rejects returns it, the last attempt's own result, rather than a `CircuitOpen`.
    kept: Option<Result<T, E>>,
    last_class: Option<ErrorClass>,
    stop: Option<StopReason>,
    /// The time from the start to the last decision, in nanoseconds (8 bytes where a
    /// `Duration` takes 16, in every call's future), for `execute`'s error.
    elapsed_nanos: u64,
    /// The attempts' success type, which the `Ok` rule classifies.
    _value: PhantomData<fn(&T)>,
}

impl<E, T, R> fmt::Debug for Attempts<'_, E, T, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Attempts")
            .field("engine", &self.engine)
            .field("stop", &self.stop)
            .finish_non_exhaustive()
    }
}

impl<E: fmt::Debug, T, R: OkClassifier<T>> Attempts<'_, E, T, R> {
    /// The time since the call started. Only a deadline, a hook's events and `execute`'s error
    /// use it, and each makes `start` read the clock when the call starts; without any of them
    /// nobody reads it, so a failure reads no clock either.
    fn elapsed(&self) -> Duration {
        self.config.elapsed_since(self.start)
    }

    fn emit(&self, event: &RetryEvent<'_>) {
        if let Some(hook) = &self.config.hook {
            // A panicking hook is contained: the panic is reported by the panic hook as usual,
            // and the decision it was told about stands (the value is still returned, the error
            // still retried or given back). Observability must not change behaviour.
            let _ = catch_unwind(AssertUnwindSafe(|| hook(event)));
        }
    }

    fn event(&self, kind: EventKind, attempt: u32, elapsed: Duration) -> RetryEvent<'_> {
        RetryEvent {
            kind,
            stop: None,
            attempt,
            class: None,
            delay: None,
            elapsed,
            operation: self.config.operation.as_deref(),
            error: None,
            rejected: false,
            status: None,
            std_error: None,
        }
    }

    /// Reports a breaker's change of state; `class` is the class of the failure that caused
    /// it, if one did.
    fn emit_transition(
        &mut self,
        transition: Option<Transition>,
        attempt: u32,
        class: Option<ErrorClass>,
    ) {
        if let Some(t) = transition
            && self.config.hook.is_some()
        {
            let kind = match t {
                Transition::Opened => EventKind::CircuitOpened,
                Transition::HalfOpened => EventKind::CircuitHalfOpen,
                Transition::Closed => EventKind::CircuitClosed,
            };
            let elapsed = self.elapsed();
            let mut event = self.event(kind, attempt, elapsed);
            event.class = class;
            self.emit(&event);
        }
    }

    /// Starts the call: asks the breaker for the first attempt, and counts the call in the
    /// budget if it is made (a call the breaker rejects never reaches the dependency, so it
    /// earns no share of retries for the others).
    #[inline]
    pub fn begin(&mut self) -> Next<T, E> {
        let next = self.admit();
        if let (Next::Attempt, Some(budget)) = (&next, &self.config.budget) {
            budget.record_call();
        }
        next
    }

    /// After a sleep: asks the breaker for the next attempt.
    pub fn resume(&mut self) -> Next<T, E> {
        self.admit()
    }

    #[inline]
    fn admit(&mut self) -> Next<T, E> {
        let Some(breaker) = &self.config.breaker else {
            self.start_attempt();
            return Next::Attempt;
        };
        let next_attempt = self.engine.attempts().saturating_add(1);
        match breaker.admit() {
            Ok((admission, transition)) => {
                self.admission = Some(admission);
                self.start_attempt();
                self.emit_transition(transition, next_attempt, None);
                Next::Attempt
            }
            Err(open) => self.reject(open, next_attempt),
        }
    }

    /// The next attempt starts: its budget tokens are spent, and the last outcome is no
    /// longer needed.
    #[inline]
    fn start_attempt(&mut self) {
        if let Some(reserved) = self.reserved.take() {
            reserved.commit();
        }
        self.kept = None;
    }

    #[cold]
    fn reject(&mut self, open: CircuitOpen, attempt: u32) -> Next<T, E> {
        // The retry never starts: its tokens go back to the budget.
        self.reserved = None;
        let elapsed = self.elapsed();
        self.elapsed_nanos = saturating_nanos(elapsed);
        self.stop = Some(StopReason::CircuitOpen);
        if self.config.hook.is_some() {
            self.emit(&self.event(EventKind::CircuitRejected, attempt, elapsed));
            let mut gave_up = self.event(EventKind::GaveUp, attempt, elapsed);
            gave_up.stop = Some(StopReason::CircuitOpen);
            gave_up.class = self.last_class;
            self.emit(&gave_up);
        }
        // A rejected retry returns the last attempt's own result; only a rejected first
        // attempt, which has none, returns the breaker's error.
        if let Some(last) = self.kept.take() {
            return Next::Done(last);
        }
        // The builder sets the conversion whenever it sets a breaker.
        let into = self
            .config
            .circuit_open
            .expect("a policy with a circuit breaker has a conversion");
        Next::Done(Err(into(open)))
    }

    /// Feeds the outcome of one attempt and says what to do next. Emits the event.
    #[inline]
    pub fn record(&mut self, outcome: Result<T, E>) -> Next<T, E> {
        self.record_as(outcome, None)
    }

    /// Feeds an attempt that exceeded the policy's attempt timeout: a `Transient` failure.
    ///
    /// # Panics
    ///
    /// If the policy has no attempt timeout (drivers call it only when one fired).
    pub fn record_timeout(&mut self) -> Next<T, E> {
        let error = self.config.timed_out();
        self.record_as(Err(error), Some(ErrorClass::Transient.into()))
    }

    /// Feeds an outcome; `forced` is its class when it is already known (a timeout, or an `Ok`
    /// value the `Ok` rule rejected).
    #[inline]
    pub(crate) fn record_as(
        &mut self,
        outcome: Result<T, E>,
        forced: Option<Classification>,
    ) -> Next<T, E> {
        let delay = self.decide(&outcome, forced);
        match delay {
            Some(delay) if self.config.breaker.is_some() => {
                self.kept = Some(outcome);
                Next::Sleep(delay)
            }
            _ => Next::after(delay, outcome),
        }
    }

    /// Decides what follows one attempt: `Some(delay)` to retry, `None` when the call is over.
    #[inline]
    fn decide(
        &mut self,
        outcome: &Result<T, E>,
        forced: Option<Classification>,
    ) -> Option<Duration> {
        let attempt = self.engine.begin_attempt();
        let failure = match (forced, outcome) {
            (Some(c), _) => Some(c),
            (None, Ok(value)) => self.ok_rule.classify_ok(value),
            (None, Err(error)) => Some(self.config.classifier.classify(error)),
        };
        match failure {
            None => {
                self.succeed(attempt);
                None
            }
            Some(c) => self.fail(attempt, c, outcome.as_ref().err()),
        }
    }

    #[inline]
    fn succeed(&mut self, attempt: u32) {
        if let Some(admission) = self.admission.take() {
            let t = admission.record(None);
            self.emit_transition(t, attempt, None);
        }
        if let Some(budget) = &self.config.budget {
            budget.record_success(self.last_class);
        }
        if self.config.hook.is_some() {
            let elapsed = self.elapsed();
            self.emit(&self.event(EventKind::Success, attempt, elapsed));
        }
    }

    #[cold]
    fn fail(&mut self, attempt: u32, c: Classification, error: Option<&E>) -> Option<Duration> {
        let elapsed = self.elapsed();
        self.elapsed_nanos = saturating_nanos(elapsed);
        self.last_class = Some(c.class);
        if let Some(admission) = self.admission.take() {
            let t = admission.record(Some(c.class));
            self.emit_transition(t, attempt, Some(c.class));
        }
        let config = self.config;
        // Every failed attempt is recorded, retried or not (gRPC's throttling charges each).
        if let Some(budget) = &config.budget {
            budget.record_failure();
        }
        let mut decision = self.engine.on_failure(config, c, elapsed);
        if let Decision::Retry(_) = decision {
            if config.abort.as_ref().is_some_and(|abort| abort()) {
                decision = Decision::Stop(StopReason::Aborted);
            } else if let Decision::Retry(delay) = decision
                && config
                    .breaker
                    .as_ref()
                    .is_some_and(|b| b.rejects_after(delay))
            {
                // The circuit is open and still will be after the delay: the retry would be
                // rejected, so stop now with this error instead of sleeping for nothing.
                decision = Decision::Stop(StopReason::CircuitOpen);
            } else if let Some(budget) = &config.budget {
                match budget.reserve(c.class) {
                    Some(reserved) => self.reserved = Some(reserved),
                    None => decision = Decision::Stop(StopReason::BudgetExhausted),
                }
            }
        }
        if config.hook.is_some() {
            let mut event = self.event(EventKind::Retry, attempt, elapsed);
            event.class = Some(c.class);
            event.status = c.status;
            event.rejected = error.is_none();
            event.error = error.map(|e| e as &dyn fmt::Debug);
            event.std_error = error.zip(config.error_chain).map(|(e, as_std)| as_std(e));
            match decision {
                Decision::Retry(d) => event.delay = Some(d),
                Decision::Stop(reason) => {
                    event.kind = EventKind::GaveUp;
                    event.stop = Some(reason);
                }
            }
            self.emit(&event);
        }
        match decision {
            Decision::Retry(d) => Some(d),
            Decision::Stop(reason) => {
                self.stop = Some(reason);
                None
            }
        }
    }

    /// Turns the final result into `execute`'s: the error with why and when the policy stopped.
    pub(crate) fn finish(&mut self, result: Result<T, E>) -> Result<T, RetryError<E>> {
        result.map_err(|error| self.stopped(Err(error)))
    }

    /// [`finish`](Self::finish) for a policy that retries some `Ok` values: a value the
    /// policy stopped on (it was rejected, and not retried) is an error too.
    pub(crate) fn finish_rejecting(&mut self, result: Result<T, E>) -> Result<T, RetryError<E, T>> {
        match result {
            Ok(value) if self.stop.is_none() => Ok(value),
            Ok(value) => Err(self.stopped(Ok(value))),
            Err(error) => Err(self.stopped(Err(error))),
        }
    }

    fn stopped<V>(&self, last: Result<V, E>) -> RetryError<E, V> {
        RetryError {
            last,
            stop: self.stop.unwrap_or(StopReason::NonRetryable),
            attempts: self.engine.attempts(),
            last_class: self.last_class,
            elapsed: Duration::from_nanos(self.elapsed_nanos),
        }
    }
}
