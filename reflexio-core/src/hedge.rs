//! Hedged requests ("The Tail at Scale", Dean and Barroso, CACM 2013): when an attempt is
//! slower than usual, start another one and take whichever answers first.
//!
//! [`Hedging`] says *how* a policy hedges (after a fixed delay, or after a latency percentile it
//! learns online, with at most N attempts in flight); it is a builder setting of the async
//! policy, shared by the policy's clones. [`AsyncRetryPolicy::call_idempotent`] is where the
//! caller says *that* the operation may run twice at once: only calls made through it hedge.
//!
//! Read top to bottom: [`Hedged`] is the state of one hedged call (the engine's counts, one
//! breaker admission per attempt in flight, the budget's tokens for the next launch), with
//! three step functions (`begin`, `on_outcome`, `on_due`); [`drive`] is the async loop that
//! runs the attempts' futures in a fixed array of pinned slots and calls them. The decisions
//! after a failure are the [`Engine`]'s, the guards the breaker's and the budget's own.

use core::fmt::{self, Write as _};
use core::time::Duration;
use std::future::{Future, poll_fn};
use std::pin::pin;
use std::sync::{Arc, OnceLock};
use std::task::Poll;

use crate::async_policy::AsyncRetryPolicy;
use crate::budget::Reserved;
use crate::call::{emit, event};
use crate::circuit::{Admission, Transition};
use crate::class::{Classification, ErrorClass};
use crate::engine::{Decision, Engine};
use crate::errors::{CircuitOpen, ConfigError, ConfigProblem, RetryError};
use crate::event::{EventKind, RetryEvent};
use crate::ok::{AcceptOk, OkClassifier};
use crate::settings::{Config, Deadline};
use crate::stop::StopReason;
use crate::strategies::fmt_duration;
use crate::sync::{AtomicU64, Mutex, Ordering, lock};
use crate::time::{Stamp, TimeSource};

/// The number of pinned slots a hedged call's future holds its attempts' futures in.
const SLOTS: usize = Hedging::MAX_IN_FLIGHT as usize;

/// How a policy hedges its idempotent calls: when to start another attempt while the
/// attempts in flight are still running, and how many may run at once.
///
/// Made by [`Hedging::after`] (a fixed delay) or [`Hedging::at_percentile`] (a delay learned
/// online from the latencies of the policy's successful attempts), given to the async policy
/// with [`hedging`](crate::PolicyBuilder::hedging), and used by
/// [`call_idempotent`](AsyncRetryPolicy::call_idempotent) and
/// [`execute_idempotent`](AsyncRetryPolicy::execute_idempotent) only. A cheap cloneable
/// handle: the learned latencies are shared by every clone, and every policy it is given to.
///
/// # What a hedged call does
///
/// - The first attempt starts at once. While fewer than `max_in_flight` attempts run, the
///   policy's `max_attempts` is not reached, and the deadline has not passed, another attempt
///   (a *hedge*) starts each time the hedging delay passes without an answer.
/// - The first success wins: every other attempt in flight is dropped (cancelled), and the
///   value is returned.
/// - A failure of a class that is never retried (`Auth`, `Permission`, `Permanent`), from any
///   attempt, ends the call with that error at once, as does the policy's abort condition.
/// - Any other failure lets the attempts still in flight go on, and schedules a replacement
///   after the policy's backoff, as a retry would be (gRPC's hedging policy, gRFC A6, does the
///   same: a non-fatal status lets the other hedges run); when a cap, the deadline, the
///   budget or the breaker stops retries, the attempts in flight still run, and the call
///   returns the first success or, once all have failed, the last error.
/// - Every hedge is an attempt: it counts toward `max_attempts`, starts only before the
///   deadline, takes a token from the [`RetryBudget`](crate::RetryBudget) as a retry does (at
///   the cost of a `Transient` retry: the attempt it hedges is slow, not failed), and is
///   admitted by the [`CircuitBreaker`](crate::CircuitBreaker) (each attempt in flight holds
///   its own admission: a half-open breaker with one probe admits no hedge of its probe). A
///   hedge the budget or the breaker refuses is simply not started. A cancelled attempt gives
///   its probe place back and reports no outcome to the breaker or the budget.
///
/// # Default
///
/// `max_in_flight` 2 (the attempt and one hedge, as in the paper and tower's `hedge`); for a
/// percentile: a 10 s window, at least 20 samples before it hedges, no bounds on the delay.
///
/// Share one `Hedging` only between policies on the same clock: its window rotates on the
/// clock of the first policy that reads it.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use reflexio::{testing::VirtualClock, AsyncRetryPolicy, Hedging, TransientError};
///
/// let clock = VirtualClock::new();
/// let policy = AsyncRetryPolicy::<TransientError>::builder()
///     .hedging(Hedging::after(Duration::from_millis(10)).build().unwrap())
///     .clock(clock.clone())
///     .build()
///     .unwrap();
/// # drop(policy);
/// ```
#[derive(Clone)]
pub struct Hedging {
    inner: Arc<HedgingInner>,
}

struct HedgingInner {
    delay: HedgeDelay,
    max_in_flight: u32,
    describe: String,
}

// Behind the setting's one `Arc`: the size of the larger variant costs nothing per call.
#[allow(clippy::large_enum_variant)]
enum HedgeDelay {
    Fixed(Duration),
    Percentile {
        /// In `(0, 1)`.
        quantile: f64,
        latencies: LatencyWindow,
        min_samples: u64,
        min: Duration,
        max: Duration,
    },
}

/// The builder of a [`Hedging`], from [`Hedging::after`] or [`Hedging::at_percentile`].
#[derive(Clone, Debug)]
#[must_use = "a builder does nothing until `build()` is called"]
pub struct HedgingBuilder {
    fixed: Option<Duration>,
    percentile: f64,
    max_in_flight: u32,
    window: Duration,
    min_samples: u32,
    min_delay: Duration,
    max_delay: Duration,
}

impl Hedging {
    /// The most attempts a hedged call keeps in flight: its future holds room for this many
    /// attempts' futures, pinned in place (no allocation per attempt).
    pub const MAX_IN_FLIGHT: u32 = 4;

    /// Hedges after a fixed `delay`: the paper's "defer a secondary request until the first has
    /// been outstanding for more than" a known latency, and gRPC's `hedgingDelay`. Zero starts
    /// `max_in_flight` attempts at once.
    pub fn after(delay: Duration) -> HedgingBuilder {
        HedgingBuilder {
            fixed: Some(delay),
            ..HedgingBuilder::new(0.0)
        }
    }

    /// Hedges after the `percentile` (in `(0, 100)`, such as `95.0`) of the latencies of the
    /// policy's successful attempts over a rotating window, learned online as tower's `hedge`
    /// does: a call starting while there are fewer than `min_samples` latencies in the window
    /// does not hedge. Every `percentile` above `100 − x` sends at most about `x` % extra
    /// attempts while the latencies hold.
    ///
    /// The latencies go into a bounded log-linear histogram (8 buckets per power of two, so a
    /// delay is read within 12.5 % above the true percentile, from 1 µs to centuries: 416
    /// counters, two copies for the rotation), recorded with one atomic add and read at the
    /// start of each hedged call.
    pub fn at_percentile(percentile: f64) -> HedgingBuilder {
        HedgingBuilder::new(percentile)
    }

    /// The most attempts of one call in flight at once.
    #[must_use]
    pub fn max_in_flight(&self) -> u32 {
        self.inner.max_in_flight
    }

    /// The delay a call starting now would hedge after, on `time`; `None`: no hedge.
    fn delay(&self, time: &TimeSource) -> Option<Duration> {
        match &self.inner.delay {
            HedgeDelay::Fixed(d) => Some(*d),
            HedgeDelay::Percentile {
                quantile,
                latencies,
                min_samples,
                min,
                max,
            } => latencies
                .quantile(latencies.now(time), *quantile, *min_samples)
                .map(|d| d.clamp(*min, *max)),
        }
    }

    /// Learns the latency of a successful attempt.
    fn record(&self, time: &TimeSource, latency: Duration) {
        if let HedgeDelay::Percentile { latencies, .. } = &self.inner.delay {
            latencies.record(latencies.now(time), latency);
        }
    }

    /// A one-line description, for `describe()`.
    pub(crate) fn describe(&self) -> &str {
        &self.inner.describe
    }
}

impl fmt::Debug for Hedging {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Hedging")
            .field(&self.inner.describe)
            .finish()
    }
}

impl HedgingBuilder {
    fn new(percentile: f64) -> Self {
        HedgingBuilder {
            fixed: None,
            percentile,
            max_in_flight: 2,
            window: Duration::from_secs(10),
            min_samples: 20,
            min_delay: Duration::ZERO,
            max_delay: Duration::MAX,
        }
    }

    /// The most attempts of one call in flight at once, the first included: 2 to
    /// [`Hedging::MAX_IN_FLIGHT`] (default 2). Each hedge is still an attempt of the policy's
    /// `max_attempts`.
    pub fn max_in_flight(mut self, n: u32) -> Self {
        self.max_in_flight = n;
        self
    }

    /// The percentile's window (default 10 s): it is read over the latencies recorded in the
    /// current and the previous window-long period, so over the last one to two windows.
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// The fewest latencies in the window before a percentile delay hedges (default 20).
    pub fn min_samples(mut self, n: u32) -> Self {
        self.min_samples = n;
        self
    }

    /// Bounds a learned delay from below (default zero), so a fast spell cannot turn hedging
    /// into sending every request twice.
    pub fn min_delay(mut self, delay: Duration) -> Self {
        self.min_delay = delay;
        self
    }

    /// Bounds a learned delay from above (default none).
    pub fn max_delay(mut self, delay: Duration) -> Self {
        self.max_delay = delay;
        self
    }

    /// Builds the setting.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming every setting that cannot work: a percentile outside
    /// `(0, 100)`, `max_in_flight` outside `2..=4`, a zero window or `min_samples`, a
    /// `min_delay` above `max_delay`.
    pub fn build(self) -> Result<Hedging, ConfigError> {
        let mut problems = Vec::new();
        let invalid = |setting, reason: String| ConfigProblem::Invalid { setting, reason };
        if !(2..=Hedging::MAX_IN_FLIGHT).contains(&self.max_in_flight) {
            problems.push(invalid(
                "max_in_flight",
                format!(
                    "must be in 2..={} (got {})",
                    Hedging::MAX_IN_FLIGHT,
                    self.max_in_flight
                ),
            ));
        }
        if self.fixed.is_none() {
            if !(self.percentile > 0.0 && self.percentile < 100.0) {
                problems.push(invalid(
                    "percentile",
                    format!("must be in (0, 100) (got {})", self.percentile),
                ));
            }
            if self.window.is_zero() {
                problems.push(invalid("window", "must be greater than zero".into()));
            }
            if self.min_samples == 0 {
                problems.push(invalid("min_samples", "must be at least 1".into()));
            }
            if self.min_delay > self.max_delay {
                problems.push(invalid("min_delay", "must not be above `max_delay`".into()));
            }
        }
        ConfigError::from_problems(problems)?;
        let (delay, mut describe) = if let Some(d) = self.fixed {
            (HedgeDelay::Fixed(d), format!("after {}", Show(d)))
        } else {
            let delay = HedgeDelay::Percentile {
                quantile: self.percentile / 100.0,
                latencies: LatencyWindow::new(self.window),
                min_samples: u64::from(self.min_samples),
                min: self.min_delay,
                max: self.max_delay,
            };
            let describe = format!(
                "after the p{} latency over {}",
                self.percentile,
                Show(self.window)
            );
            (delay, describe)
        };
        let _ = write!(describe, ", at most {} in flight", self.max_in_flight);
        Ok(Hedging {
            inner: Arc::new(HedgingInner {
                delay,
                max_in_flight: self.max_in_flight,
                describe,
            }),
        })
    }
}

/// A duration as `describe()` shows it.
struct Show(Duration);

impl fmt::Display for Show {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_duration(self.0, f)
    }
}

/// Buckets per power of two of a latency histogram.
const SUB_BUCKETS: u64 = 8;
/// Latencies are counted in units of 1024 ns; a `u64` of them has 54 significant bits, so
/// `(54 - 2) * 8` buckets hold every value.
const BUCKETS: usize = 416;
const UNIT_SHIFT: u32 = 10;

/// The bucket of a latency of `nanos`: linear below 8 units, then 8 per power of two.
fn bucket(nanos: u64) -> usize {
    let v = nanos >> UNIT_SHIFT;
    if v < SUB_BUCKETS {
        #[allow(clippy::cast_possible_truncation)] // below 8
        return v as usize;
    }
    let exp = u64::from(v.ilog2()); // at least 3
    let mantissa = (v >> (exp - 3)) & (SUB_BUCKETS - 1);
    #[allow(clippy::cast_possible_truncation)] // at most 415
    let b = ((exp - 2) * SUB_BUCKETS + mantissa) as usize;
    b.min(BUCKETS - 1)
}

/// The largest latency of bucket `b`, in nanoseconds (saturating).
fn bucket_end(b: usize) -> u64 {
    let b = b as u64;
    let units = if b < SUB_BUCKETS {
        b + 1
    } else {
        let exp = b / SUB_BUCKETS + 2;
        let mantissa = b % SUB_BUCKETS;
        (SUB_BUCKETS + mantissa + 1).saturating_mul(1 << (exp - 3))
    };
    units.saturating_mul(1 << UNIT_SHIFT)
}

/// The latencies of one period of the window.
struct Period {
    /// The period's number plus one (0: never used).
    number: AtomicU64,
    counts: [AtomicU64; BUCKETS],
    total: AtomicU64,
}

/// Latencies over a rotating window: two periods of `window`, written in the current one and
/// read over both, each cleared when time comes back to it. Recording is two atomic adds (and,
/// once per period, a clear under a lock); no allocation after creation.
struct LatencyWindow {
    period_nanos: u64,
    periods: [Period; 2],
    /// Held to clear a period for reuse.
    rotating: Mutex<()>,
    /// The time the window counts from: the first reading of a policy's clock.
    base: OnceLock<Stamp>,
}

impl LatencyWindow {
    fn new(window: Duration) -> Self {
        let period = || Period {
            number: AtomicU64::new(0),
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            total: AtomicU64::new(0),
        };
        LatencyWindow {
            period_nanos: u64::try_from(window.as_nanos()).unwrap_or(u64::MAX).max(1),
            periods: [period(), period()],
            rotating: Mutex::new(()),
            base: OnceLock::new(),
        }
    }

    /// Nanoseconds since the window's base, on the policy's clock.
    fn now(&self, time: &TimeSource) -> u64 {
        let base = *self.base.get_or_init(|| time.now());
        u64::try_from(time.since(base).as_nanos()).unwrap_or(u64::MAX)
    }

    fn number(&self, now: u64) -> u64 {
        now / self.period_nanos + 1
    }

    fn record(&self, now: u64, latency: Duration) {
        let number = self.number(now);
        #[allow(clippy::cast_possible_truncation)] // 0 or 1
        let period = &self.periods[(number % 2) as usize];
        if period.number.load(Ordering::Acquire) != number {
            let _rotating = lock(&self.rotating);
            if period.number.load(Ordering::Acquire) != number {
                for c in &period.counts {
                    c.store(0, Ordering::Relaxed);
                }
                period.total.store(0, Ordering::Relaxed);
                period.number.store(number, Ordering::Release);
            }
        }
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        period.counts[bucket(nanos)].fetch_add(1, Ordering::Relaxed);
        period.total.fetch_add(1, Ordering::Relaxed);
    }

    /// The `quantile` of the latencies of the current and the previous period, rounded up to
    /// its bucket's end; `None` with fewer than `min_samples` of them.
    fn quantile(&self, now: u64, quantile: f64, min_samples: u64) -> Option<Duration> {
        let number = self.number(now);
        let live = |p: &Period| {
            let n = p.number.load(Ordering::Acquire);
            n == number || n + 1 == number
        };
        let [a, b] = &self.periods;
        let (a, b) = (live(a).then_some(a), live(b).then_some(b));
        let total = |p: Option<&Period>| p.map_or(0, |p| p.total.load(Ordering::Relaxed));
        let samples = total(a) + total(b);
        if samples < min_samples || samples == 0 {
            return None;
        }
        #[allow(
            clippy::cast_precision_loss,
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss
        )]
        let rank = ((quantile * samples as f64).ceil() as u64).clamp(1, samples);
        let count =
            |p: Option<&Period>, i: usize| p.map_or(0, |p| p.counts[i].load(Ordering::Relaxed));
        let mut seen = 0;
        for i in 0..BUCKETS {
            seen += count(a, i) + count(b, i);
            if seen >= rank {
                return Some(Duration::from_nanos(bucket_end(i)));
            }
        }
        // Counts added between the totals and the buckets were read: the largest bucket seen.
        (0..BUCKETS)
            .rev()
            .find(|&i| count(a, i) + count(b, i) > 0)
            .map(|i| Duration::from_nanos(bucket_end(i)))
    }
}

impl<E, R> AsyncRetryPolicy<E, R> {
    /// Calls `op`, **which the caller states is idempotent** (safe to run more than once,
    /// and concurrently), hedging it as the policy's [`hedging`](crate::PolicyBuilder::hedging)
    /// setting says, and retrying it as [`call`](Self::call) does. See [`Hedging`] for what a
    /// hedged call does; without a hedging setting this is `call`, one attempt at a time.
    ///
    /// The statement is made here, at the call, and not in the policy, because only the code
    /// that calls the operation knows whether running it twice is safe (a `GET` is, a `POST`
    /// that charges a card is not), and one policy (one budget, one breaker, one learned
    /// latency) usually serves both kinds of call of a dependency: [`call`](Self::call) never
    /// runs two attempts at once, whatever the policy's hedging setting, and keeps its cost
    /// and its future's size.
    ///
    /// The returned future holds room for [`Hedging::MAX_IN_FLIGHT`] attempts' futures (pinned in
    /// place, no allocation per attempt): box the operation's future if it is large.
    ///
    /// # Errors
    ///
    /// The error of the attempt that ended the call: a never-retried failure of any attempt,
    /// or, when the policy stops, the last failure once no attempt is in flight.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use reflexio::{AsyncRetryPolicy, Hedging, TransientError};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// let policy = AsyncRetryPolicy::<TransientError>::builder()
    ///     .hedging(Hedging::after(Duration::from_millis(10)).build().unwrap())
    ///     .build()
    ///     .unwrap();
    /// let mut calls = 0;
    /// let out = policy
    ///     .call_idempotent(|| {
    ///         calls += 1;
    ///         // The first attempt hangs for a second; the hedge answers in 2 ms.
    ///         let latency = if calls == 1 { 1000 } else { 2 };
    ///         async move {
    ///             tokio::time::sleep(Duration::from_millis(latency)).await;
    ///             Ok::<_, TransientError>(latency)
    ///         }
    ///     })
    ///     .await;
    /// assert_eq!(out, Ok(2)); // after 12 ms, the hedge's answer
    /// # }
    /// ```
    pub async fn call_idempotent<T, F, Fut>(&self, op: F) -> Result<T, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: fmt::Debug,
        R: OkClassifier<T>,
    {
        let mut call = Hedged::new(&self.config, &self.ok_rule);
        drive(&mut call, op).await
    }
}

impl<E> AsyncRetryPolicy<E> {
    /// Like [`call_idempotent`](Self::call_idempotent), but the error tells why the policy
    /// stopped, after how many attempts (hedges included) and how long.
    ///
    /// # Errors
    ///
    /// A [`RetryError`] wrapping the error of the attempt that ended the call.
    pub async fn execute_idempotent<T, F, Fut>(&self, op: F) -> Result<T, RetryError<E>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: fmt::Debug,
    {
        let mut call = Hedged::new(&self.config, &AcceptOk);
        let result = drive(&mut call, op).await;
        result.map_err(|error| RetryError {
            last: Err(error),
            stop: call
                .engine
                .stop_reason()
                .unwrap_or(StopReason::NonRetryable),
            attempts: call.engine.attempts(),
            last_class: call.engine.last_class(),
            elapsed: call.now(),
        })
    }
}

/// An attempt in flight.
struct InFlight<'p> {
    number: u32,
    hedge: bool,
    /// When it started, since the call's start.
    started: Duration,
    /// Its own admission by the breaker: dropped unrecorded when the attempt is cancelled.
    admission: Option<Admission<'p>>,
}

/// The next launch, when its time comes.
struct Scheduled<'p> {
    /// Since the call's start.
    at: Duration,
    hedge: bool,
    /// A retry's budget tokens, taken when it was decided (a hedge takes its own at launch).
    reserved: Option<Reserved<'p>>,
}

/// What the driver does next.
enum Step<T, E> {
    /// Start an attempt in this slot.
    Launch(usize),
    /// Nothing in flight: sleep this long (as the policy does between retries), then
    /// [`Hedged::on_due`].
    Sleep(Duration),
    /// Poll the attempts in flight and the timer of the next launch.
    Wait,
    Done(Result<T, E>),
}

/// The state of one hedged call.
struct Hedged<'p, E, T, R> {
    config: &'p Config<E>,
    ok_rule: &'p R,
    hedging: Option<&'p Hedging>,
    /// The hedging delay of this call, read once at its start.
    hedge_delay: Option<Duration>,
    max_in_flight: usize,
    engine: Engine,
    start: Stamp,
    /// Where the deadline counts from, since the start: 0 for `.deadline(..)`, the first
    /// failure for the default deadline (unknown before it).
    origin: Option<Duration>,
    slots: [Option<InFlight<'p>>; SLOTS],
    in_flight: usize,
    next: Option<Scheduled<'p>>,
    /// A stop of the policy (a cap, the deadline, the budget, the breaker): no more launches.
    no_more: bool,
    /// The last failure, returned when the call ends without a success.
    kept: Option<Result<T, E>>,
}

impl<'p, E: fmt::Debug, T, R: OkClassifier<T>> Hedged<'p, E, T, R> {
    fn new(config: &'p Config<E>, ok_rule: &'p R) -> Self {
        let hedging = config.settings.hedging.as_ref();
        Hedged {
            config,
            ok_rule,
            hedging,
            hedge_delay: hedging.and_then(|h| h.delay(&config.time)),
            max_in_flight: hedging.map_or(1, |h| h.inner.max_in_flight as usize),
            engine: Engine::new(),
            start: config.time.now(),
            origin: match config.settings.deadline {
                Some(Deadline::FromStart(_)) => Some(Duration::ZERO),
                _ => None,
            },
            slots: Default::default(),
            in_flight: 0,
            next: None,
            no_more: false,
            kept: None,
        }
    }

    fn now(&self) -> Duration {
        self.config.time.since(self.start)
    }

    fn hook(&self) -> bool {
        self.config.settings.hook.is_some()
    }

    fn event(&self, kind: EventKind, attempt: u32, hedge: bool) -> RetryEvent<'p> {
        let mut e = event(self.config, kind, attempt, self.now());
        e.hedge = hedge;
        e
    }

    /// The first attempt, if the breaker admits it.
    fn begin(&mut self) -> Step<T, E> {
        match self.admit() {
            Ok(admission) => {
                if let Some(budget) = &self.config.settings.budget {
                    budget.record_call();
                }
                Step::Launch(self.launch(admission, false))
            }
            Err(open) => self.rejected(open),
        }
    }

    /// The attempt timer of an attempt starting now, if the policy has an attempt timeout.
    fn attempt_timer(&self) -> Option<impl Future<Output = ()> + Send + use<'p, E, T, R>> {
        let config = self.config;
        config
            .settings
            .attempt_timeout
            .map(move |timeout| config.time.timer(timeout))
    }

    /// The time of the next launch, since the start.
    fn next_at(&self) -> Option<Duration> {
        self.next.as_ref().map(|n| n.at)
    }

    /// A timer that fires at `at` since the start.
    fn timer_until(&self, at: Duration) -> impl Future<Output = ()> + Send + use<'p, E, T, R> {
        let config = self.config;
        config.time.timer(at.saturating_sub(self.now()))
    }

    fn sleep(&self, delay: Duration) -> impl Future<Output = ()> + Send + use<'p, E, T, R> {
        self.config.time.sleep(delay)
    }

    fn admit(&self) -> Result<Option<Admission<'p>>, CircuitOpen> {
        let Some(breaker) = &self.config.settings.breaker else {
            return Ok(None);
        };
        let (admission, transition) = breaker.admit()?;
        self.emit_transition(transition, self.engine.attempts().saturating_add(1), None);
        Ok(Some(admission))
    }

    /// Records the start of an attempt; returns its slot.
    fn launch(&mut self, admission: Option<Admission<'p>>, hedge: bool) -> usize {
        let number = self.engine.begin_attempt();
        // The first attempt starts with the call: no clock reading.
        let now = if number == 1 {
            Duration::ZERO
        } else {
            self.now()
        };
        let slot = self
            .slots
            .iter()
            .position(Option::is_none)
            .expect("a launch only with a free slot");
        self.slots[slot] = Some(InFlight {
            number,
            hedge,
            started: now,
            admission,
        });
        self.in_flight += 1;
        if self.hook() {
            emit(
                self.config,
                &self.event(EventKind::AttemptStarted, number, hedge),
            );
        }
        // The next hedge, if one may follow.
        if self.next.is_none()
            && !self.no_more
            && self.in_flight < self.max_in_flight
            && self.engine.attempts() < self.config.rules.max_attempts
            && let Some(delay) = self.hedge_delay
        {
            self.next = Some(Scheduled {
                at: now.saturating_add(delay),
                hedge: true,
                reserved: None,
            });
        }
        slot
    }

    /// The scheduled launch is due.
    fn on_due(&mut self) -> Step<T, E> {
        let Some(next) = self.next.take() else {
            return self.idle();
        };
        if next.hedge {
            let now = self.now();
            let past_deadline = match (self.origin, self.config.rules.deadline) {
                (Some(origin), Some(deadline)) => now.saturating_sub(origin) >= deadline,
                _ => false,
            };
            let aborted = self
                .config
                .settings
                .abort
                .as_ref()
                .is_some_and(|abort| abort());
            if self.no_more
                || past_deadline
                || self.in_flight >= self.max_in_flight
                || self.engine.attempts() >= self.config.rules.max_attempts
                || aborted
            {
                return self.idle();
            }
            let reserved = match &self.config.settings.budget {
                Some(budget) => match budget.reserve(ErrorClass::Transient) {
                    Some(reserved) => Some(reserved),
                    None => return self.idle(),
                },
                None => None,
            };
            let Ok(admission) = self.admit() else {
                return self.idle(); // the tokens go back with `reserved`
            };
            if let Some(reserved) = reserved {
                reserved.commit();
            }
            return Step::Launch(self.launch(admission, true));
        }
        match self.admit() {
            Ok(admission) => {
                if let Some(reserved) = next.reserved {
                    reserved.commit();
                }
                Step::Launch(self.launch(admission, false))
            }
            Err(_) if self.in_flight > 0 => {
                self.no_more = true;
                Step::Wait
            }
            Err(open) => self.rejected(open),
        }
    }

    /// Nothing to launch now: wait for the attempts in flight, if any.
    fn idle(&mut self) -> Step<T, E> {
        if self.in_flight > 0 || self.next.is_some() {
            return Step::Wait;
        }
        Step::Done(self.kept.take().expect("a failure was kept"))
    }

    /// The breaker rejected a retry with nothing in flight (or the first attempt).
    #[cold]
    fn rejected(&mut self, open: CircuitOpen) -> Step<T, E> {
        self.next = None;
        self.engine.stopped(StopReason::CircuitOpen);
        let attempt = self.engine.attempts().saturating_add(1);
        if self.hook() {
            emit(
                self.config,
                &self.event(EventKind::CircuitRejected, attempt, false),
            );
            let mut gave_up = self.event(EventKind::GaveUp, attempt, false);
            gave_up.stop = Some(StopReason::CircuitOpen);
            gave_up.class = self.engine.last_class();
            emit(self.config, &gave_up);
        }
        let kept = self.kept.take();
        Step::Done(kept.unwrap_or_else(|| Err(self.config.circuit_open(open))))
    }

    /// The attempt in `slot` ended: `None` when its attempt timeout fired first.
    fn on_outcome(&mut self, slot: usize, outcome: Option<Result<T, E>>) -> Step<T, E> {
        let mut attempt = self.slots[slot].take().expect("an attempt in flight");
        self.in_flight -= 1;
        let now = self.now();
        let duration = now.saturating_sub(attempt.started);
        let (outcome, forced) = match outcome {
            Some(outcome) => (outcome, None),
            None => (
                Err(self.config.timed_out()),
                Some(Classification::from(ErrorClass::Transient)),
            ),
        };
        let failure = match (forced, &outcome) {
            (Some(c), _) => Some(c),
            (None, Ok(value)) => self.ok_rule.classify_ok(value),
            (None, Err(error)) => Some(self.config.classifier.classify(error)),
        };
        if self.hook() {
            let mut e = self.failure_event(EventKind::AttemptFinished, &attempt, failure, &outcome);
            e.duration = Some(duration);
            emit(self.config, &e);
        }
        let Some(c) = failure else {
            return self.succeed(attempt, duration, outcome);
        };
        if let Some(admission) = attempt.admission.take() {
            let t = admission.record(Some(c.class));
            self.emit_transition(t, attempt.number, Some(c.class));
        }
        if let Some(budget) = &self.config.settings.budget {
            budget.record_failure();
        }
        let origin = *self.origin.get_or_insert(now);
        let mut decision =
            self.engine
                .on_failure(&self.config.rules, c, now.saturating_sub(origin));
        let mut reserved = None;
        if let Decision::Retry(delay) = decision {
            decision = if self.no_more {
                // An earlier failure stopped the launches: the engine kept its reason.
                Decision::Stop(self.engine.stop_reason().unwrap_or(StopReason::MaxAttempts))
            } else {
                match self.protect(c.class, delay) {
                    Ok(r) => {
                        reserved = r;
                        decision
                    }
                    Err(reason) => {
                        self.engine.stopped(reason);
                        Decision::Stop(reason)
                    }
                }
            };
        }
        let ends_now = matches!(
            decision,
            Decision::Stop(StopReason::NonRetryable | StopReason::Aborted)
        ) || (self.in_flight == 0 && matches!(decision, Decision::Stop(_)));
        if ends_now {
            self.cancel_rest();
            if self.hook() {
                let mut e = self.failure_event(EventKind::GaveUp, &attempt, Some(c), &outcome);
                if let Decision::Stop(reason) = decision {
                    e.stop = Some(reason);
                }
                emit(self.config, &e);
            }
            return Step::Done(outcome);
        }
        match decision {
            Decision::Retry(delay) => {
                let at = now.saturating_add(delay);
                // With nothing in flight, a scheduled hedge has nothing left to hedge: the
                // retry replaces it. Otherwise the earlier launch serves as the replacement
                // (and the retry's tokens go back).
                if self.in_flight == 0 || self.next.as_ref().is_none_or(|n| n.at > at) {
                    self.next = Some(Scheduled {
                        at,
                        hedge: false,
                        reserved,
                    });
                }
                if self.hook() {
                    let mut e = self.failure_event(EventKind::Retry, &attempt, Some(c), &outcome);
                    // The time until the next launch, the retry's or an earlier hedge's.
                    e.delay = self.next_at().map(|at| at.saturating_sub(now));
                    emit(self.config, &e);
                }
                self.kept = Some(outcome);
                if self.in_flight == 0 {
                    Step::Sleep(delay)
                } else {
                    Step::Wait
                }
            }
            Decision::Stop(_) => {
                // No more launches; the attempts in flight go on.
                self.no_more = true;
                self.next = None;
                self.kept = Some(outcome);
                Step::Wait
            }
        }
    }

    fn succeed(
        &mut self,
        attempt: InFlight<'p>,
        duration: Duration,
        outcome: Result<T, E>,
    ) -> Step<T, E> {
        if let Some(admission) = attempt.admission {
            let t = admission.record(None);
            self.emit_transition(t, attempt.number, None);
        }
        if let Some(budget) = &self.config.settings.budget {
            budget.record_success(self.engine.last_class());
        }
        if let Some(hedging) = self.hedging {
            hedging.record(&self.config.time, duration);
        }
        self.cancel_rest();
        if self.hook() {
            emit(
                self.config,
                &self.event(EventKind::Success, attempt.number, attempt.hedge),
            );
        }
        Step::Done(outcome)
    }

    /// Drops every other attempt's state (their admissions give their probe places back and
    /// record nothing) and the next launch (its tokens go back), reporting the cancellations.
    fn cancel_rest(&mut self) {
        self.next = None;
        if self.in_flight == 0 {
            return;
        }
        let now = self.now();
        let hook = self.hook();
        // Taking an attempt out drops its admission: a probe's place goes back, unrecorded.
        for attempt in self.slots.iter_mut().filter_map(Option::take) {
            if hook {
                let mut e = event(
                    self.config,
                    EventKind::AttemptCancelled,
                    attempt.number,
                    now,
                );
                e.hedge = attempt.hedge;
                e.duration = Some(now.saturating_sub(attempt.started));
                emit(self.config, &e);
            }
        }
        self.in_flight = 0;
    }

    /// What may still stop a retry the engine allowed (see `Call`'s): the abort condition,
    /// the breaker open past the delay, an empty budget; else the retry's tokens.
    fn protect(
        &self,
        class: ErrorClass,
        delay: Duration,
    ) -> Result<Option<Reserved<'p>>, StopReason> {
        let settings = &self.config.settings;
        if settings.abort.as_ref().is_some_and(|abort| abort()) {
            return Err(StopReason::Aborted);
        }
        if let Some(breaker) = &settings.breaker
            && breaker.rejects_after(delay)
        {
            return Err(StopReason::CircuitOpen);
        }
        match &settings.budget {
            Some(budget) => budget
                .reserve(class)
                .map(Some)
                .ok_or(StopReason::BudgetExhausted),
            None => Ok(None),
        }
    }

    fn failure_event<'a>(
        &self,
        kind: EventKind,
        attempt: &InFlight<'_>,
        c: Option<Classification>,
        outcome: &'a Result<T, E>,
    ) -> RetryEvent<'a>
    where
        'p: 'a,
    {
        let mut e: RetryEvent<'a> = self.event(kind, attempt.number, attempt.hedge);
        if let Some(c) = c {
            let error = outcome.as_ref().err();
            e.class = Some(c.class);
            e.status = c.status;
            e.rejected = error.is_none();
            e.error = error.map(|e| e as &dyn fmt::Debug);
            e.std_error = error
                .zip(self.config.conversions.error_chain)
                .map(|(e, as_std)| as_std(e));
        }
        e
    }

    fn emit_transition(
        &self,
        transition: Option<Transition>,
        attempt: u32,
        class: Option<ErrorClass>,
    ) {
        if let Some(t) = transition
            && self.hook()
        {
            let kind = match t {
                Transition::Opened => EventKind::CircuitOpened,
                Transition::HalfOpened => EventKind::CircuitHalfOpen,
                Transition::Closed => EventKind::CircuitClosed,
            };
            let mut e = self.event(kind, attempt, false);
            e.class = class;
            emit(self.config, &e);
        }
    }
}

/// What woke the driver.
enum Woke<T, E> {
    /// The attempt in this slot ended (`None`: its attempt timeout fired).
    Ended(usize, Option<Result<T, E>>),
    /// The next launch is due.
    Due,
}

/// Drives one hedged call: the attempts' futures in pinned slots (with their attempt
/// timers), the timer of the next launch, the sleep between retries when nothing is in
/// flight. Polls every attempt in flight at each wake: with at most four, cheaper than
/// tracking which one woke (and it needs no `futures` dependency, no allocation).
async fn drive<E, T, R, F, Fut>(call: &mut Hedged<'_, E, T, R>, mut op: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: fmt::Debug,
    R: OkClassifier<T>,
{
    let mut attempts = [pin!(None), pin!(None), pin!(None), pin!(None)];
    let mut timers = [pin!(None), pin!(None), pin!(None), pin!(None)];
    let mut launch_timer = pin!(None);
    let mut launch_at: Option<Duration> = None;
    let mut step = call.begin();
    loop {
        step = match step {
            Step::Launch(slot) => {
                attempts[slot].set(Some(op()));
                timers[slot].set(call.attempt_timer());
                Step::Wait
            }
            Step::Sleep(delay) => {
                call.sleep(delay).await;
                launch_at = None;
                launch_timer.set(None);
                call.on_due()
            }
            Step::Done(result) => {
                // The losers are dropped (cancelled) here, before the result is returned.
                for attempt in &mut attempts {
                    attempt.set(None);
                }
                return result;
            }
            Step::Wait => {
                let woke = poll_fn(|cx| {
                    for slot in 0..SLOTS {
                        let Some(attempt) = attempts[slot].as_mut().as_pin_mut() else {
                            continue;
                        };
                        if let Poll::Ready(out) = attempt.poll(cx) {
                            return Poll::Ready(Woke::Ended(slot, Some(out)));
                        }
                        if let Some(timer) = timers[slot].as_mut().as_pin_mut()
                            && timer.poll(cx).is_ready()
                        {
                            return Poll::Ready(Woke::Ended(slot, None));
                        }
                    }
                    // Armed only once the attempts are pending: an attempt that is ready at
                    // once (a cache hit) makes no timer.
                    let at = call.next_at();
                    if at != launch_at {
                        launch_at = at;
                        launch_timer.set(at.map(|at| call.timer_until(at)));
                    }
                    if let Some(timer) = launch_timer.as_mut().as_pin_mut()
                        && timer.poll(cx).is_ready()
                    {
                        return Poll::Ready(Woke::Due);
                    }
                    Poll::Pending
                })
                .await;
                match woke {
                    Woke::Ended(slot, out) => {
                        attempts[slot].set(None);
                        timers[slot].set(None);
                        call.on_outcome(slot, out)
                    }
                    Woke::Due => {
                        launch_at = None;
                        launch_timer.set(None);
                        call.on_due()
                    }
                }
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_ordered_and_within_an_eighth() {
        let mut last = 0;
        for b in 0..BUCKETS {
            let end = bucket_end(b);
            assert!(end >= last, "bucket {b}");
            last = end;
        }
        for nanos in [
            0,
            1_000,
            7_999,
            10_000,
            1_000_000,
            12_345_678,
            9_000_000_000,
        ] {
            let b = bucket(nanos);
            let end = bucket_end(b);
            assert!(end >= nanos, "{nanos} in bucket {b} ending at {end}");
            // Within an eighth above (plus one unit of 1024 ns below 8 units).
            assert!(end <= nanos + nanos / 8 + 1024 + 1024, "{nanos}: {end}");
        }
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn the_window_reads_a_percentile_of_two_periods_and_forgets_older_ones() {
        let w = LatencyWindow::new(Duration::from_secs(10));
        let ms = Duration::from_millis;
        for i in 1..=100 {
            w.record(0, ms(i));
        }
        let p95 = w.quantile(1, 0.95, 20).unwrap();
        assert!(p95 >= ms(95) && p95 <= ms(95) * 9 / 8, "{p95:?}");
        assert_eq!(w.quantile(1, 0.95, 101), None, "too few samples");
        // The next period still reads the previous one.
        let s = 1_000_000_000;
        assert!(w.quantile(15 * s, 0.5, 1).is_some());
        // Two periods later, it is forgotten.
        assert_eq!(w.quantile(25 * s, 0.5, 1), None);
        w.record(25 * s, ms(1000));
        let p50 = w.quantile(25 * s, 0.5, 1).unwrap();
        assert!(p50 >= ms(1000) && p50 <= ms(1125), "{p50:?}");
    }

    #[test]
    fn bad_settings_are_config_errors() {
        let err = Hedging::at_percentile(100.0)
            .max_in_flight(5)
            .window(Duration::ZERO)
            .build()
            .unwrap_err();
        assert_eq!(err.problems().len(), 3, "{err}");
        assert!(
            Hedging::after(Duration::ZERO)
                .max_in_flight(1)
                .build()
                .is_err()
        );
        assert_eq!(
            Hedging::after(Duration::from_millis(10))
                .build()
                .unwrap()
                .describe(),
            "after 10ms, at most 2 in flight"
        );
    }
}
