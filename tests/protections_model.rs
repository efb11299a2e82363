//! Model-based tests of the shared protections (issue 11): random sequences of operations
//! against a [`CircuitBreaker`] and against [`RetryBudget`]s (ratio, AWS standard, gRPC), each
//! step checked against a plain sequential *reference model* of what their docs promise; then
//! concurrency smoke tests of the invariants that must hold under contention.
//!
//! The models are written from the documentation, not from the implementation: a breaker's
//! window is 10 slots of `window / 10` nanoseconds (the slot of `t` is `t / slot`, and the
//! window at `t` is its slot and the 9 before it), a failure rate is compared as an exact
//! fraction, a ratio budget counts in billionths of a token and a token bucket in
//! thousandths, all in integers.

use std::collections::BTreeMap;
use std::future::{Future, pending, poll_fn};
use std::panic::{AssertUnwindSafe, catch_unwind, panic_any};
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex, Once, RwLock};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use proptest::prelude::*;
use proptest::sample::{Index, select};
use reflexio::strategies::{constant, no_delay};
use reflexio::testing::VirtualClock;
use reflexio::{
    AsyncRetryPolicy, CircuitBreaker, CircuitOpen, CircuitState, ErrorClass, RetryBudget,
    RetryError, RetryPolicy, StopReason,
};

// ---------- shared pieces ----------

/// The error of every operation: a failure of a class, or the breaker's rejection (with its
/// `retry_in`, compared with the model's).
#[derive(Clone, Debug, PartialEq, Eq)]
enum SvcErr {
    Failed(ErrorClass),
    Open(Duration),
}

impl From<CircuitOpen> for SvcErr {
    fn from(e: CircuitOpen) -> Self {
        SvcErr::Open(e.retry_in())
    }
}

fn classify(e: &SvcErr) -> ErrorClass {
    match e {
        SvcErr::Failed(class) => *class,
        SvcErr::Open(_) => ErrorClass::Transient,
    }
}

type Reply = Result<(), SvcErr>;

/// A policy's call as `execute` reports it: the attempts made, and the value or the error
/// with why the policy stopped.
type Executed = (u32, Result<(), (StopReason, SvcErr)>);

fn executed(result: Result<(), RetryError<SvcErr>>, attempts: u32) -> Executed {
    match result {
        Ok(()) => (attempts, Ok(())),
        Err(e) => (e.attempts(), Err((e.stop_reason(), e.into_inner()))),
    }
}

/// Why a policy stops after its attempt number `attempt` failed with `class` (`unknown`
/// failures of `Unknown` so far), before it asks its breaker or budget: the documented order,
/// with no per-class cap and the default cap of 2 retries after `Unknown`.
fn engine_stop(
    class: ErrorClass,
    attempt: u32,
    max_attempts: u32,
    unknown: u32,
) -> Option<StopReason> {
    if !class.is_retryable() {
        Some(StopReason::NonRetryable)
    } else if class == ErrorClass::Unknown && unknown > 2 {
        Some(StopReason::MaxUnknownRetries)
    } else if attempt >= max_attempts {
        Some(StopReason::MaxAttempts)
    } else {
        None
    }
}

fn attempt_count(attempt: usize) -> u32 {
    u32::try_from(attempt).expect("a few attempts")
}

/// What one attempt of an operation returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Ok,
    Fail(ErrorClass),
}

impl Outcome {
    fn reply(self) -> Reply {
        match self {
            Outcome::Ok => Ok(()),
            Outcome::Fail(class) => Err(SvcErr::Failed(class)),
        }
    }
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        4 => Just(Outcome::Ok),
        4 => select(ErrorClass::ALL.to_vec()).prop_map(Outcome::Fail),
        // A class that trips by default, so that circuits open often.
        3 => Just(Outcome::Fail(ErrorClass::ServerError)),
    ]
}

fn index_of(class: ErrorClass) -> usize {
    ErrorClass::ALL
        .iter()
        .position(|c| *c == class)
        .expect("every class is in ALL")
}

/// A call's future, polled by hand.
type BoxFut<'a> = Pin<Box<dyn Future<Output = Reply> + 'a>>;

/// Polls once with a waker that does nothing: the tests decide when to poll again.
fn poll_once(fut: &mut BoxFut<'_>) -> Poll<Reply> {
    fut.as_mut().poll(&mut Context::from_waker(Waker::noop()))
}

/// Where a test gives a pending operation its outcome.
type Answer = Arc<Mutex<Option<Reply>>>;

/// An operation's future that stays pending until `answer` is set.
fn answered(answer: &Answer) -> impl Future<Output = Reply> + use<> {
    let answer = answer.clone();
    poll_fn(move |_| {
        answer
            .lock()
            .unwrap()
            .take()
            .map_or(Poll::Pending, Poll::Ready)
    })
}

/// The payload of the operations' own panics, kept out of the test output.
struct OpPanic;

fn quiet_op_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info.payload().downcast_ref::<OpPanic>().is_none() {
                previous(info);
            }
        }));
    });
}

/// The time on the model's side: the sum of every advance, read as the protections read it
/// (nanoseconds since the clock was made, saturating at `u64::MAX`).
#[derive(Clone, Copy, Debug, Default)]
struct Time {
    total: u128,
}

impl Time {
    fn now(self) -> u64 {
        u64::try_from(self.total).unwrap_or(u64::MAX)
    }
}

/// Huge jumps of the clock: 2^31 ns, 2^40 ns, a day, and 2^63 ns (two of those saturate a
/// `u64` of nanoseconds, which the protections then read as their time forever).
const HUGE: [u64; 4] = [1 << 31, 1 << 40, 86_400_000_000_000, 1 << 63];

/// A step of the virtual clock, resolved against the settings under test: a few nanoseconds,
/// whole slots, or just below, at or just above one of two durations of the settings (the
/// breaker's `open_for` and probe timeout, a budget's retry delay) or the window.
#[derive(Clone, Copy, Debug)]
enum Step {
    Nanos(u64),
    Slots(u64),
    NearA(i8),
    NearB(i8),
    NearWindow(i8),
    Huge(usize),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => any::<u64>().prop_map(Step::Nanos),
        3 => (1u64..=12).prop_map(Step::Slots),
        2 => (-1i8..=1).prop_map(Step::NearA),
        2 => (-1i8..=1).prop_map(Step::NearB),
        2 => (-1i8..=1).prop_map(Step::NearWindow),
        1 => (0..HUGE.len()).prop_map(Step::Huge),
    ]
}

/// The durations a [`Step`] is resolved against, in nanoseconds.
#[derive(Clone, Copy, Debug)]
struct Scales {
    slot: u64,
    window: u64,
    a: u64,
    b: u64,
}

impl Step {
    fn nanos(self, s: Scales) -> u64 {
        let near = |base: u64, delta: i8| {
            u64::try_from((i128::from(base) + i128::from(delta)).max(0)).unwrap_or(u64::MAX)
        };
        match self {
            // Up to two slots, any phase within them.
            Step::Nanos(n) => n % (2 * s.slot) + 1,
            Step::Slots(k) => k * s.slot,
            Step::NearA(d) => near(s.a, d),
            Step::NearB(d) => near(s.b, d),
            Step::NearWindow(d) => near(s.window, d),
            Step::Huge(i) => HUGE[i],
        }
    }
}

/// Where a case's clock starts: at 0 mostly, else far on, or 2^34 ns (17 s) before the
/// protections' clock saturates at `u64::MAX` nanoseconds.
fn origin() -> impl Strategy<Value = u64> {
    prop_oneof![
        6 => Just(0),
        1 => Just(1 << 40),
        1 => Just(u64::MAX - (1 << 34)),
    ]
}

/// Moves both the real clock and the model's.
fn advance(clock: &VirtualClock, time: &mut Time, nanos: u64) {
    clock.advance(Duration::from_nanos(nanos));
    time.total += u128::from(nanos);
}

/// A slot of a window: a tenth of it, as documented.
fn slot_of(window: u64) -> u64 {
    window / 10
}

// ---------- the circuit breaker's model ----------

/// The settings of a breaker under test, all durations in nanoseconds.
#[derive(Clone, Debug)]
struct BreakerCfg {
    /// `failure_rate` as an exact fraction.
    rate: (u64, u64),
    min_calls: u32,
    window: u64,
    open_for: u64,
    probe_timeout: Option<u64>,
    probes: u32,
    /// `trip_on`; `None` keeps the default classes.
    trips: Option<Vec<ErrorClass>>,
    /// The delay between attempts of one of the policies: about `open_for`, or a slot.
    retry_delay: u64,
    /// Whether each step ends with a look at the next admission (see `BreakerRun::check`).
    peek: bool,
}

/// The default tripping classes (`CircuitBreakerBuilder::trip_on`'s docs).
const DEFAULT_TRIPS: [ErrorClass; 4] = [
    ErrorClass::ServerError,
    ErrorClass::Transient,
    ErrorClass::RateLimit,
    ErrorClass::Unknown,
];

impl BreakerCfg {
    fn probe_timeout(&self) -> u64 {
        // Documented default: `open_for`.
        self.probe_timeout.unwrap_or(self.open_for)
    }

    fn scales(&self) -> Scales {
        Scales {
            slot: slot_of(self.window),
            window: self.window,
            a: self.open_for,
            b: self.probe_timeout(),
        }
    }

    fn build(&self, clock: &VirtualClock) -> CircuitBreaker {
        #[allow(clippy::cast_precision_loss, reason = "small integers")]
        let rate = self.rate.0 as f64 / self.rate.1 as f64;
        let mut b = CircuitBreaker::builder()
            .failure_rate(rate)
            .min_calls(self.min_calls)
            .window(Duration::from_nanos(self.window))
            .open_for(Duration::from_nanos(self.open_for))
            .probes(self.probes)
            .clock(clock.clone());
        if let Some(t) = self.probe_timeout {
            b = b.probe_timeout(Duration::from_nanos(t));
        }
        if let Some(trips) = &self.trips {
            b = b.trip_on(trips);
        }
        b.build().expect("valid breaker settings")
    }
}

fn breaker_cfg() -> impl Strategy<Value = BreakerCfg> {
    let rates = vec![(1, 10), (1, 4), (1, 3), (1, 2), (2, 3), (3, 4), (1, 1)];
    let windows = vec![1_000, 1_234, 10_000, 1_000_000_000, 30_000_000_000];
    let trips = prop::sample::subsequence(ErrorClass::ALL.to_vec(), 0..=8);
    (
        (select(rates), 1u32..=6, select(windows)),
        (1u64..=40, prop::option::of(1u64..=40), 1u32..=3),
        (prop::option::weighted(0.3, trips), 0usize..4, any::<bool>()),
    )
        .prop_map(
            |(
                (rate, min_calls, window),
                (open_for, probe_timeout, probes),
                (trips, delay, peek),
            )| {
                // Open periods and probe timeouts from a tenth of a window to 4 windows.
                let tenth = window / 10;
                let open_for = open_for * tenth;
                BreakerCfg {
                    rate,
                    min_calls,
                    window,
                    open_for,
                    probe_timeout: probe_timeout.map(|t| t * tenth - 1),
                    probes,
                    trips,
                    retry_delay: [open_for - 1, open_for, open_for / 2 + 1, tenth][delay],
                    peek,
                }
            },
        )
}

/// Which kind of call the model let through, in which period (*generation*) of its state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Permit {
    Normal(u64),
    Probe(u64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Closed,
    Open {
        until: u64,
    },
    HalfOpen {
        /// Probes let through and not given back.
        admitted: u32,
        succeeded: u32,
        started: u64,
    },
}

/// The breaker as documented, one operation at a time.
#[derive(Debug)]
struct BreakerModel {
    rate: (u64, u64),
    min_calls: u64,
    slot: u64,
    open_for: u64,
    probe_timeout: u64,
    probes: u32,
    trips: [bool; 8],
    /// Counts every change of state.
    generation: u64,
    phase: Phase,
    /// Per slot number: (outcomes that count as successes, failures of a tripping class).
    window: BTreeMap<u64, (u64, u64)>,
}

impl BreakerModel {
    fn new(cfg: &BreakerCfg) -> Self {
        let mut trips = [false; 8];
        for class in cfg.trips.as_deref().unwrap_or(&DEFAULT_TRIPS) {
            trips[index_of(*class)] = true;
        }
        BreakerModel {
            rate: cfg.rate,
            min_calls: u64::from(cfg.min_calls),
            slot: slot_of(cfg.window),
            open_for: cfg.open_for,
            probe_timeout: cfg.probe_timeout(),
            probes: cfg.probes,
            trips,
            generation: 0,
            phase: Phase::Closed,
            window: BTreeMap::new(),
        }
    }

    /// `state()`: an open circuit whose open period is over reads as half-open.
    fn state(&self, now: u64) -> CircuitState {
        match self.phase {
            Phase::Closed => CircuitState::Closed,
            Phase::Open { until } if now < until => CircuitState::Open,
            Phase::Open { .. } | Phase::HalfOpen { .. } => CircuitState::HalfOpen,
        }
    }

    /// Lets a call through, or rejects it with the time until a probe may go (nanoseconds).
    fn admit(&mut self, now: u64) -> Result<Permit, u64> {
        match self.phase {
            Phase::Closed => Ok(Permit::Normal(self.generation)),
            Phase::Open { until } if now < until => Err(until - now),
            Phase::Open { .. } => Ok(self.half_open(now)),
            Phase::HalfOpen {
                admitted,
                succeeded,
                started,
            } => {
                if admitted < self.probes {
                    self.phase = Phase::HalfOpen {
                        admitted: admitted + 1,
                        succeeded,
                        started,
                    };
                    return Ok(Permit::Probe(self.generation));
                }
                // Every place is held: after the probe timeout a new period begins.
                let timeout_at = started.saturating_add(self.probe_timeout);
                if now < timeout_at {
                    Err(timeout_at - now)
                } else {
                    Ok(self.half_open(now))
                }
            }
        }
    }

    /// Whether an admission now, given back at once, leaves the breaker as it was: it is
    /// rejected, or admitted without beginning a new period.
    fn admission_is_neutral(&self, now: u64) -> bool {
        match self.phase {
            Phase::Closed => true,
            Phase::Open { until } => now < until,
            Phase::HalfOpen {
                admitted, started, ..
            } => admitted < self.probes || now < started.saturating_add(self.probe_timeout),
        }
    }

    /// Begins a half-open period and lets its first probe through.
    fn half_open(&mut self, now: u64) -> Permit {
        self.generation += 1;
        self.phase = Phase::HalfOpen {
            admitted: 1,
            succeeded: 0,
            started: now,
        };
        Permit::Probe(self.generation)
    }

    fn open(&mut self, now: u64) {
        self.generation += 1;
        self.phase = Phase::Open {
            until: now.saturating_add(self.open_for),
        };
    }

    fn failed(&self, outcome: Outcome) -> bool {
        matches!(outcome, Outcome::Fail(class) if self.trips[index_of(class)])
    }

    /// The outcome of a call let through with `permit`; ignored when its period is over.
    fn record(&mut self, permit: Permit, outcome: Outcome, now: u64) {
        let failed = self.failed(outcome);
        match (permit, self.phase) {
            (Permit::Normal(g), Phase::Closed) if g == self.generation => {
                let slot = now / self.slot;
                let counts = self.window.entry(slot).or_default();
                if failed {
                    counts.1 += 1;
                } else {
                    counts.0 += 1;
                }
                if failed || TRIP_ON_ANY_OUTCOME {
                    self.check_rate(slot, now);
                }
            }
            (
                Permit::Probe(g),
                Phase::HalfOpen {
                    admitted,
                    succeeded,
                    started,
                },
            ) if g == self.generation => {
                if failed {
                    self.open(now);
                } else if succeeded + 1 < self.probes {
                    self.phase = Phase::HalfOpen {
                        admitted,
                        succeeded: succeeded + 1,
                        started,
                    };
                } else {
                    // Every probe succeeded: closed, with the window forgotten.
                    self.generation += 1;
                    self.phase = Phase::Closed;
                    self.window.clear();
                }
            }
            _ => {} // a call of an earlier period
        }
    }

    /// Opens the circuit when at least `min_calls` outcomes are in the window ending in `slot`
    /// and the failures' share reaches the rate.
    fn check_rate(&mut self, slot: u64, now: u64) {
        let (successes, failures) = self
            .window
            .range(slot.saturating_sub(9)..=slot)
            .fold((0, 0), |(s, f), (_, c)| (s + c.0, f + c.1));
        let total = successes + failures;
        let (num, den) = self.rate;
        if total >= self.min_calls && u128::from(failures * den) >= u128::from(num * total) {
            self.open(now);
        }
    }

    /// A call that ended without an outcome (cancelled, or its operation panicked): a probe
    /// gives its place back.
    fn release(&mut self, permit: Permit) {
        if let (
            Permit::Probe(g),
            Phase::HalfOpen {
                admitted,
                succeeded,
                started,
            },
        ) = (permit, self.phase)
            && g == self.generation
        {
            self.phase = Phase::HalfOpen {
                admitted: admitted.saturating_sub(1),
                succeeded,
                started,
            };
        }
    }

    /// A sync policy's call: `max_attempts` attempts, `delay` nanoseconds slept on the clock
    /// between them.
    fn call(
        &mut self,
        script: &[Outcome],
        max_attempts: u32,
        delay: u64,
        time: &mut Time,
    ) -> Executed {
        let mut permit = match self.admit(time.now()) {
            Ok(p) => p,
            Err(wait) => {
                let open = SvcErr::Open(Duration::from_nanos(wait));
                return (0, Err((StopReason::CircuitOpen, open)));
            }
        };
        let (mut attempt, mut unknown) = (1, 0);
        loop {
            let outcome = script.get(attempt - 1).copied().unwrap_or(Outcome::Ok);
            let attempts = attempt_count(attempt);
            self.record(permit, outcome, time.now());
            let Outcome::Fail(class) = outcome else {
                return (attempts, Ok(()));
            };
            let error = SvcErr::Failed(class);
            unknown += u32::from(class == ErrorClass::Unknown);
            if let Some(stop) = engine_stop(class, attempts, max_attempts, unknown) {
                return (attempts, Err((stop, error)));
            }
            // No sleep into a rejection: a circuit open for longer than the delay stops the
            // call at once.
            if let Phase::Open { until } = self.phase
                && until.saturating_sub(time.now()) > delay
            {
                return (attempts, Err((StopReason::CircuitOpen, error)));
            }
            time.total += u128::from(delay);
            match self.admit(time.now()) {
                Ok(p) => permit = p,
                // A rejected retry returns the last attempt's own error.
                Err(_) => return (attempts, Err((StopReason::CircuitOpen, error))),
            }
            attempt += 1;
        }
    }
}

/// Whether every counted outcome, not only a tripping failure, checks the failure rate. The
/// breaker's docs say it opens "when at least `min_calls` were counted and the share of
/// failures of a tripping class reaches `failure_rate`": a success (or a failure that does
/// not trip, which counts as one) that brings the count to `min_calls` while the share is
/// reached opens it. The implementation checks only after a tripping failure (see
/// `an_outcome_that_completes_min_calls_opens_a_failing_circuit`).
const TRIP_ON_ANY_OUTCOME: bool = true;

/// One operation on the breaker.
#[derive(Clone, Debug)]
enum BreakerOp {
    /// A sync policy's call (3 attempts) whose attempts return these outcomes (then `Ok`);
    /// with no delay between attempts, or with the settings' `retry_delay`.
    Call(Vec<Outcome>, bool),
    /// `record_outcome`.
    Record(Outcome),
    Advance(Step),
    /// Starts an async call (one attempt) whose operation stays pending: kept in flight.
    Start,
    /// Gives the operation of a call in flight its outcome, and polls the call to its end.
    Finish(Index, Outcome),
    /// Drops a call in flight: cancelled mid-attempt.
    Drop(Index),
    /// Polls a new call once, its operation pending, and drops it.
    CancelOnce,
    /// A sync call whose operation panics.
    Panic,
}

fn breaker_op() -> impl Strategy<Value = BreakerOp> {
    prop_oneof![
        4 => (prop::collection::vec(outcome(), 1..=3), any::<bool>())
            .prop_map(|(script, delayed)| BreakerOp::Call(script, delayed)),
        3 => outcome().prop_map(BreakerOp::Record),
        5 => step().prop_map(BreakerOp::Advance),
        3 => Just(BreakerOp::Start),
        2 => (any::<Index>(), outcome()).prop_map(|(i, o)| BreakerOp::Finish(i, o)),
        2 => any::<Index>().prop_map(BreakerOp::Drop),
        1 => Just(BreakerOp::CancelOnce),
        1 => Just(BreakerOp::Panic),
    ]
}

/// A call in flight: its future, where its operation's outcome goes, and the model's permit.
struct Flight<'a> {
    fut: BoxFut<'a>,
    answer: Answer,
    permit: Permit,
}

/// Calls kept in flight at most (they live on while the breaker moves on): one more cancels
/// the oldest.
const MAX_FLIGHTS: usize = 6;

/// The breaker, its policies and its model, driven step by step.
struct BreakerRun<'p> {
    cb: &'p CircuitBreaker,
    sync: &'p RetryPolicy<SvcErr>,
    /// Sleeps `retry_delay` between attempts, on the clock.
    delayed: &'p RetryPolicy<SvcErr>,
    retry_delay: u64,
    single: &'p AsyncRetryPolicy<SvcErr>,
    clock: &'p VirtualClock,
    /// Every operation invocation, sync or async.
    ran: Arc<AtomicU32>,
    model: BreakerModel,
    time: Time,
    flights: Vec<Flight<'p>>,
}

impl<'p> BreakerRun<'p> {
    fn ran(&self) -> u32 {
        self.ran.load(Ordering::SeqCst)
    }

    /// Starts an async call and polls it once: `Some` (kept by the caller) when admitted.
    fn start(&mut self) -> Result<Option<Flight<'p>>, TestCaseError> {
        let answer = Answer::default();
        let (a, ran) = (answer.clone(), self.ran.clone());
        let mut fut: BoxFut<'p> = Box::pin(self.single.call(move || {
            ran.fetch_add(1, Ordering::SeqCst);
            answered(&a)
        }));
        let before = self.ran();
        let now = self.time.now();
        match (poll_once(&mut fut), self.model.admit(now)) {
            (Poll::Pending, Ok(permit)) => {
                prop_assert_eq!(self.ran(), before + 1, "admitted: the operation runs");
                Ok(Some(Flight {
                    fut,
                    answer,
                    permit,
                }))
            }
            (Poll::Ready(Err(SvcErr::Open(d))), Err(wait)) => {
                prop_assert_eq!(d, Duration::from_nanos(wait), "retry_in");
                prop_assert_eq!(self.ran(), before, "rejected: the operation does not run");
                Ok(None)
            }
            (real, model) => Err(TestCaseError::fail(format!(
                "admission: breaker {real:?}, model {model:?}"
            ))),
        }
    }

    fn step(&mut self, op: &BreakerOp, scales: Scales) -> Result<(), TestCaseError> {
        let now = self.time.now();
        match op {
            BreakerOp::Call(script, delayed) => {
                let (policy, delay) = if *delayed {
                    (self.delayed, self.retry_delay)
                } else {
                    (self.sync, 0)
                };
                let before = self.ran();
                let real = policy.execute(|| {
                    let k = self.ran.fetch_add(1, Ordering::SeqCst) - before;
                    script
                        .get(k as usize)
                        .copied()
                        .unwrap_or(Outcome::Ok)
                        .reply()
                });
                let real = executed(real, self.ran() - before);
                let expected = self.model.call(script, 3, delay, &mut self.time);
                prop_assert_eq!(&real, &expected, "the call's result");
                prop_assert_eq!(self.ran() - before, expected.0, "attempts made");
            }
            BreakerOp::Record(outcome) => {
                self.cb.record_outcome(match outcome {
                    Outcome::Ok => None,
                    Outcome::Fail(class) => Some(*class),
                });
                // Documented: while open or half-open it counts as a probe only if one is
                // available, otherwise it is ignored.
                if let Ok(permit) = self.model.admit(now) {
                    self.model.record(permit, *outcome, now);
                }
            }
            BreakerOp::Advance(s) => advance(self.clock, &mut self.time, s.nanos(scales)),
            BreakerOp::Start => {
                if let Some(flight) = self.start()? {
                    if self.flights.len() == MAX_FLIGHTS {
                        // The oldest is cancelled to make room.
                        let old = self.flights.remove(0);
                        drop(old.fut);
                        self.model.release(old.permit);
                    }
                    self.flights.push(flight);
                }
            }
            BreakerOp::Finish(i, outcome) => {
                if !self.flights.is_empty() {
                    let mut flight = self.flights.remove(i.index(self.flights.len()));
                    *flight.answer.lock().unwrap() = Some(outcome.reply());
                    let real = poll_once(&mut flight.fut);
                    prop_assert_eq!(real, Poll::Ready(outcome.reply()), "a finished call");
                    self.model.record(flight.permit, *outcome, now);
                }
            }
            BreakerOp::Drop(i) => {
                if !self.flights.is_empty() {
                    let flight = self.flights.remove(i.index(self.flights.len()));
                    drop(flight.fut);
                    self.model.release(flight.permit);
                }
            }
            BreakerOp::CancelOnce => self.cancel_once()?,
            BreakerOp::Panic => {
                let before = self.ran();
                let real = catch_unwind(AssertUnwindSafe(|| {
                    self.sync.call(|| -> Reply {
                        self.ran.fetch_add(1, Ordering::SeqCst);
                        panic_any(OpPanic)
                    })
                }));
                match (real, self.model.admit(now)) {
                    (Err(_), Ok(permit)) => {
                        prop_assert_eq!(self.ran(), before + 1);
                        self.model.release(permit);
                    }
                    (Ok(Err(SvcErr::Open(d))), Err(wait)) => {
                        prop_assert_eq!(d, Duration::from_nanos(wait), "retry_in");
                        prop_assert_eq!(self.ran(), before);
                    }
                    (real, model) => {
                        return Err(TestCaseError::fail(format!(
                            "panicking call: breaker {:?}, model {model:?}",
                            real.map_err(|_| "panicked")
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    /// Polls a new call once and drops it: a probe's place goes back.
    fn cancel_once(&mut self) -> Result<(), TestCaseError> {
        if let Some(flight) = self.start()? {
            drop(flight.fut);
            self.model.release(flight.permit);
        }
        Ok(())
    }

    /// Checks the state and, when that changes nothing, whether the next call is admitted.
    fn check(&mut self, peek: bool) -> Result<(), TestCaseError> {
        let now = self.time.now();
        prop_assert_eq!(self.cb.state(), self.model.state(now), "state()");
        if peek && self.model.admission_is_neutral(now) {
            self.cancel_once()?;
        }
        Ok(())
    }
}

fn run_breaker(cfg: &BreakerCfg, origin: u64, ops: &[BreakerOp]) -> Result<(), TestCaseError> {
    quiet_op_panics();
    let clock = VirtualClock::new();
    let cb = cfg.build(&clock);
    let sync = RetryPolicy::builder()
        .classifier(classify)
        .strategy(no_delay())
        .max_attempts(3)
        .circuit_breaker(cb.clone())
        .clock(clock.clone())
        .build()
        .unwrap();
    let delayed = RetryPolicy::builder()
        .classifier(classify)
        .strategy(constant(Duration::from_nanos(cfg.retry_delay)))
        .max_attempts(3)
        .no_deadline()
        .circuit_breaker(cb.clone())
        .clock(clock.clone())
        .build()
        .unwrap();
    let single = AsyncRetryPolicy::builder()
        .classifier(classify)
        .max_attempts(1)
        .circuit_breaker(cb.clone())
        .clock(clock.clone())
        .build()
        .unwrap();
    let mut run = BreakerRun {
        cb: &cb,
        sync: &sync,
        delayed: &delayed,
        retry_delay: cfg.retry_delay,
        single: &single,
        clock: &clock,
        ran: Arc::default(),
        model: BreakerModel::new(cfg),
        time: Time::default(),
        flights: Vec::new(),
    };
    advance(&clock, &mut run.time, origin);
    let scales = cfg.scales();
    for (i, op) in ops.iter().enumerate() {
        let checked = run.step(op, scales).and_then(|()| run.check(cfg.peek));
        checked.map_err(|e| {
            TestCaseError::fail(format!(
                "step {i} ({op:?}) at {} ns: {e}\nmodel: {:?}",
                run.time.now(),
                run.model
            ))
        })?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(384))]

    /// Random sequences of calls (sync, async kept in flight and finished late or dropped,
    /// cancelled after one poll, panicking), recorded outcomes and clock steps: after each,
    /// the breaker's state, every admission (with its `retry_in`) and every call's result
    /// match the model.
    #[test]
    fn the_breaker_follows_its_model(
        cfg in breaker_cfg(),
        origin in origin(),
        ops in prop::collection::vec(breaker_op(), 1..100),
    ) {
        run_breaker(&cfg, origin, &ops)?;
    }
}

/// Issue 11, found by the model: the docs say the circuit opens "when at least `min_calls`
/// were counted and the share of failures of a tripping class reaches `failure_rate`", but
/// the rate is checked only after a tripping failure. A success, or a failure of a class that
/// does not trip, that brings the count to `min_calls` while the share is reached leaves the
/// circuit closed; and if the outcomes after it are successes the share falls again, so the
/// trip is missed, not delayed.
#[test]
fn an_outcome_that_completes_min_calls_opens_a_failing_circuit() {
    for second in [None, Some(ErrorClass::Permanent)] {
        let cb = CircuitBreaker::builder()
            .min_calls(2)
            .failure_rate(0.5)
            .clock(VirtualClock::new())
            .build()
            .unwrap();
        cb.record_outcome(Some(ErrorClass::ServerError));
        cb.record_outcome(second);
        assert_eq!(
            cb.state(),
            CircuitState::Open,
            "1 failure in 2 calls reaches 50 % (second outcome: {second:?})"
        );
    }

    // The same through a policy: 2 failures in 4 calls, the 4th a success.
    let clock = VirtualClock::new();
    let cb = CircuitBreaker::builder()
        .min_calls(4)
        .failure_rate(0.5)
        .clock(clock.clone())
        .build()
        .unwrap();
    let policy = RetryPolicy::builder()
        .classifier(classify)
        .max_attempts(1)
        .circuit_breaker(cb.clone())
        .clock(clock)
        .build()
        .unwrap();
    for outcome in [Outcome::Fail(ErrorClass::ServerError); 2]
        .into_iter()
        .chain([Outcome::Ok; 2])
    {
        let _ = policy.call(|| outcome.reply());
    }
    assert_eq!(cb.state(), CircuitState::Open, "2 failures in 4 calls");
    assert!(
        matches!(policy.call(|| Ok(())), Err(SvcErr::Open(_))),
        "an open circuit rejects the next call"
    );
}

// ---------- the retry budgets' models ----------

/// A budget under test.
#[derive(Clone, Debug)]
enum BudgetCfg {
    /// `RetryBudget::ratio`: the percent in units of 10⁻⁷ % (so the share of a call is exactly
    /// that many billionths of a token), the floor per second, the window in nanoseconds, the
    /// cost per class in billionths of a token.
    Ratio {
        percent_e7: u64,
        floor: u32,
        window: u64,
        costs: [u64; 8],
    },
    /// `RetryBudget::aws_standard()`.
    Aws,
    /// `RetryBudget::grpc(max_tokens, token_ratio)`, the ratio in units of 10⁻⁴.
    Grpc { max_tokens: u32, ratio_e4: u64 },
}

const BILLION: u64 = 1_000_000_000;

impl BudgetCfg {
    fn build(&self, clock: &VirtualClock) -> RetryBudget {
        #[allow(clippy::cast_precision_loss, reason = "below 2^53: exact")]
        match self {
            BudgetCfg::Ratio {
                percent_e7,
                floor,
                window,
                costs,
            } => {
                let mut b = RetryBudget::ratio(*percent_e7 as f64 / 1e7)
                    .min_retries_per_sec(*floor)
                    .window(Duration::from_nanos(*window))
                    .clock(clock.clone());
                for class in ErrorClass::ALL {
                    b = b.cost(class, costs[index_of(class)] as f64 / 1e9);
                }
                b.build().expect("valid ratio budget")
            }
            BudgetCfg::Aws => RetryBudget::aws_standard(),
            BudgetCfg::Grpc {
                max_tokens,
                ratio_e4,
            } => RetryBudget::grpc(f64::from(*max_tokens), *ratio_e4 as f64 / 1e4)
                .expect("valid gRPC settings"),
        }
    }

    fn window(&self) -> u64 {
        match self {
            BudgetCfg::Ratio { window, .. } => *window,
            _ => 10_000_000_000,
        }
    }

    fn scales(&self) -> Scales {
        let window = self.window();
        Scales {
            slot: slot_of(window),
            window,
            a: RETRY_DELAY_SLOTS * slot_of(window),
            b: BILLION,
        }
    }

    /// The policies' delay between attempts (async calls sleep it, pending, on the clock).
    fn delay(&self) -> Duration {
        Duration::from_nanos(RETRY_DELAY_SLOTS * slot_of(self.window()))
    }
}

/// The async policies' retry delay, in slots of the budget's window.
const RETRY_DELAY_SLOTS: u64 = 3;

fn budget_cfg() -> impl Strategy<Value = BudgetCfg> {
    let percents = vec![
        0,
        1,
        5_000_000,
        100_000_000,
        200_000_000,
        333_333_333,
        1_000_000_000,
        2_500_000_000,
    ];
    let windows = vec![1_000, 1_234, 1_000_000_000, 10_000_000_000];
    let cost = prop_oneof![
        6 => Just(BILLION),
        1 => Just(0),
        // The smallest cost: a thousandth of a token (costs are kept to 3 decimals).
        1 => Just(BILLION / 1000),
        1 => Just(BILLION / 2),
        1 => Just(5 * BILLION / 2),
        1 => Just(1_000_000 * BILLION),
    ];
    let ratio = (
        select(percents),
        select(vec![0u32, 1, 3, 10]),
        select(windows),
        prop::array::uniform8(cost),
    )
        .prop_map(|(percent_e7, floor, window, costs)| BudgetCfg::Ratio {
            percent_e7,
            floor,
            window,
            costs,
        });
    let ratios = vec![1, 5, 1000, 2900, 5000, 5466, 10_000, 15_000, 100_000];
    let grpc = (1u32..=1000, select(ratios)).prop_map(|(max_tokens, ratio_e4)| BudgetCfg::Grpc {
        max_tokens,
        ratio_e4,
    });
    prop_oneof![3 => ratio, 1 => Just(BudgetCfg::Aws), 2 => grpc]
}

/// The ratio model: retries may spend `percent` % of the calls of the last window plus the
/// floor, in billionths of a token.
#[derive(Debug)]
struct RatioModel {
    per_call: u64,
    reserve: u128,
    costs: [u64; 8],
    slot: u64,
    /// Per slot number: (calls, billionths spent).
    window: BTreeMap<u64, (u64, u64)>,
}

/// The token bucket model, in thousandths of a token.
#[derive(Debug)]
struct BucketModel {
    balance: u64,
    capacity: u64,
    costs: [u64; 8],
    failure_charge: u64,
    reward: u64,
    refund_on_success: bool,
    /// Retry only while the balance is above this.
    threshold: u64,
}

#[derive(Debug)]
enum BudgetModel {
    Ratio(RatioModel),
    Bucket(BucketModel),
}

/// Tokens taken for one retry: the slot they were taken in and the amount.
type Taken = (u64, u64);

impl BudgetModel {
    fn new(cfg: &BudgetCfg) -> Self {
        match cfg {
            BudgetCfg::Ratio {
                percent_e7,
                floor,
                window,
                costs,
            } => BudgetModel::Ratio(RatioModel {
                // percent / 100 tokens per call = percent_e7 * 10^-7 / 100 * 10^9 billionths.
                per_call: *percent_e7,
                // `floor` per second over the window: floor * window_ns / 10^9 tokens.
                reserve: u128::from(*floor) * u128::from(*window),
                costs: *costs,
                slot: slot_of(*window),
                window: BTreeMap::new(),
            }),
            // The AWS SDKs' standard mode (2026): 500 tokens, a retry costs 14 (5 after a
            // throttling error), a first-try success adds 1, a success after retries returns
            // the last retry's cost.
            BudgetCfg::Aws => {
                let mut costs = [14_000; 8];
                costs[index_of(ErrorClass::RateLimit)] = 5_000;
                BudgetModel::Bucket(BucketModel {
                    balance: 500_000,
                    capacity: 500_000,
                    costs,
                    failure_charge: 0,
                    reward: 1_000,
                    refund_on_success: true,
                    threshold: 0,
                })
            }
            // gRFC A6: starts full at max_tokens; every failure takes 1; every success returns
            // token_ratio truncated to 3 decimals; a retry only while above max_tokens / 2.
            BudgetCfg::Grpc {
                max_tokens,
                ratio_e4,
            } => BudgetModel::Bucket(BucketModel {
                balance: u64::from(*max_tokens) * 1000,
                capacity: u64::from(*max_tokens) * 1000,
                costs: [0; 8],
                failure_charge: 1000,
                reward: ratio_e4 / 10,
                refund_on_success: false,
                threshold: u64::from(*max_tokens) * 500,
            }),
        }
    }

    fn record_call(&mut self, now: u64) {
        if let BudgetModel::Ratio(r) = self {
            r.window.entry(now / r.slot).or_default().0 += 1;
        }
    }

    fn record_failure(&mut self) {
        if let BudgetModel::Bucket(b) = self {
            b.balance = b.balance.saturating_sub(b.failure_charge);
        }
    }

    fn record_success(&mut self, retried_after: Option<ErrorClass>) {
        if let BudgetModel::Bucket(b) = self {
            let reward = match retried_after {
                Some(class) if b.refund_on_success => b.costs[index_of(class)],
                _ => b.reward,
            };
            b.balance = (b.balance + reward).min(b.capacity);
        }
    }

    /// The available amount in the model's unit, and that unit per token.
    fn available(&self, now: u64) -> (u128, f64) {
        match self {
            BudgetModel::Ratio(r) => (r.available(now), 1e9),
            BudgetModel::Bucket(b) => (u128::from(b.balance), 1e3),
        }
    }

    fn try_retry(&mut self, class: ErrorClass, now: u64) -> Option<Taken> {
        match self {
            BudgetModel::Ratio(r) => {
                let cost = r.costs[index_of(class)];
                let slot = now / r.slot;
                if cost > 0 {
                    if r.available(now) < u128::from(cost) {
                        return None;
                    }
                    r.window.entry(slot).or_default().1 += cost;
                }
                Some((slot, cost))
            }
            BudgetModel::Bucket(b) => {
                let cost = b.costs[index_of(class)];
                if b.balance >= cost && b.balance > b.threshold {
                    b.balance -= cost;
                    Some((0, cost))
                } else {
                    None
                }
            }
        }
    }

    /// Gives back the tokens of a retry that never started.
    fn refund(&mut self, (slot, amount): Taken) {
        match self {
            BudgetModel::Ratio(r) => {
                if let Some(counts) = r.window.get_mut(&slot) {
                    counts.1 -= amount;
                }
            }
            BudgetModel::Bucket(b) => b.balance = (b.balance + amount).min(b.capacity),
        }
    }

    /// A sync policy's call with this budget: `max_attempts` attempts, no delay.
    fn call(&mut self, script: &[Outcome], max_attempts: u32, now: u64) -> Executed {
        self.record_call(now);
        let (mut last, mut unknown) = (None, 0);
        for attempt in 1.. {
            let outcome = script.get(attempt - 1).copied().unwrap_or(Outcome::Ok);
            let attempts = attempt_count(attempt);
            let Outcome::Fail(class) = outcome else {
                self.record_success(last);
                return (attempts, Ok(()));
            };
            last = Some(class);
            // Every failed attempt is recorded, retried or not.
            self.record_failure();
            unknown += u32::from(class == ErrorClass::Unknown);
            let error = SvcErr::Failed(class);
            if let Some(stop) = engine_stop(class, attempts, max_attempts, unknown) {
                return (attempts, Err((stop, error)));
            }
            if self.try_retry(class, now).is_none() {
                return (attempts, Err((StopReason::BudgetExhausted, error)));
            }
        }
        unreachable!("the loop returns")
    }
}

impl RatioModel {
    fn available(&self, now: u64) -> u128 {
        let slot = now / self.slot;
        let (calls, spent) = self
            .window
            .range(slot.saturating_sub(9)..=slot)
            .fold((0, 0), |(c, s), (_, w)| (c + w.0, s + w.1));
        (u128::from(calls) * u128::from(self.per_call) + self.reserve)
            .saturating_sub(u128::from(spent))
    }
}

#[derive(Clone, Debug)]
enum BudgetOp {
    RecordCall,
    RecordFailure,
    TryRetry(ErrorClass),
    RecordSuccess(Option<ErrorClass>),
    Advance(Step),
    /// A sync policy's call (4 attempts, no delay) with these outcomes (then `Ok`).
    Call(Vec<Outcome>),
    /// Starts an async call (2 attempts) whose first attempt fails with this class: if the
    /// budget grants the retry, the call sleeps (pending on the clock) and is kept in flight.
    Start(ErrorClass),
    /// Polls a call in flight: once its sleep is over, its retry succeeds.
    Poll(Index),
    /// Drops a call in flight during its sleep: its tokens come back.
    Drop(Index),
}

fn class() -> impl Strategy<Value = ErrorClass> {
    select(ErrorClass::ALL.to_vec())
}

fn budget_op() -> impl Strategy<Value = BudgetOp> {
    prop_oneof![
        4 => Just(BudgetOp::RecordCall),
        2 => Just(BudgetOp::RecordFailure),
        4 => class().prop_map(BudgetOp::TryRetry),
        2 => prop::option::of(class()).prop_map(BudgetOp::RecordSuccess),
        3 => step().prop_map(BudgetOp::Advance),
        3 => prop::collection::vec(outcome(), 1..=4).prop_map(BudgetOp::Call),
        2 => class().prop_map(BudgetOp::Start),
        1 => any::<Index>().prop_map(BudgetOp::Poll),
        1 => any::<Index>().prop_map(BudgetOp::Drop),
    ]
}

/// An async call sleeping before its retry.
struct Sleeping<'a> {
    fut: BoxFut<'a>,
    class: ErrorClass,
    taken: Taken,
    /// When its sleep ends, on the model's clock.
    wakes: u128,
}

struct BudgetRun<'p> {
    budget: &'p RetryBudget,
    sync: &'p RetryPolicy<SvcErr>,
    sleepy: &'p AsyncRetryPolicy<SvcErr>,
    clock: &'p VirtualClock,
    delay: Duration,
    ran: Arc<AtomicU32>,
    model: BudgetModel,
    time: Time,
    flights: Vec<Sleeping<'p>>,
}

impl<'p> BudgetRun<'p> {
    fn ran(&self) -> u32 {
        self.ran.load(Ordering::SeqCst)
    }

    fn step(&mut self, op: &BudgetOp, scales: Scales) -> Result<(), TestCaseError> {
        let now = self.time.now();
        match op {
            BudgetOp::RecordCall => {
                self.budget.record_call();
                self.model.record_call(now);
            }
            BudgetOp::RecordFailure => {
                self.budget.record_failure();
                self.model.record_failure();
            }
            BudgetOp::TryRetry(class) => {
                let real = self.budget.try_retry(*class);
                let model = self.model.try_retry(*class, now).is_some();
                prop_assert_eq!(real, model, "try_retry({:?})", class);
            }
            BudgetOp::RecordSuccess(after) => {
                self.budget.record_success(*after);
                self.model.record_success(*after);
            }
            BudgetOp::Advance(s) => advance(self.clock, &mut self.time, s.nanos(scales)),
            BudgetOp::Call(script) => {
                let before = self.ran();
                let real = self.sync.execute(|| {
                    let k = self.ran.fetch_add(1, Ordering::SeqCst) - before;
                    script
                        .get(k as usize)
                        .copied()
                        .unwrap_or(Outcome::Ok)
                        .reply()
                });
                let real = executed(real, self.ran() - before);
                let expected = self.model.call(script, 4, now);
                prop_assert_eq!(&real, &expected, "the call's result");
                prop_assert_eq!(self.ran() - before, expected.0, "attempts made");
            }
            BudgetOp::Start(class) => self.start(*class)?,
            BudgetOp::Poll(i) => {
                if !self.flights.is_empty() {
                    let i = i.index(self.flights.len());
                    let before = self.ran();
                    let real = poll_once(&mut self.flights[i].fut);
                    if self.time.total >= self.flights[i].wakes {
                        prop_assert_eq!(real, Poll::Ready(Ok(())), "the retry succeeds");
                        prop_assert_eq!(self.ran(), before + 1);
                        let flight = self.flights.remove(i);
                        self.model.record_success(Some(flight.class));
                    } else {
                        prop_assert_eq!(real, Poll::Pending, "still sleeping");
                        prop_assert_eq!(self.ran(), before);
                    }
                }
            }
            BudgetOp::Drop(i) => {
                if !self.flights.is_empty() {
                    let flight = self.flights.remove(i.index(self.flights.len()));
                    drop(flight.fut);
                    self.model.refund(flight.taken);
                }
            }
        }
        Ok(())
    }

    /// Starts an async call whose first attempt fails with `class`, polled once.
    fn start(&mut self, class: ErrorClass) -> Result<(), TestCaseError> {
        let (ran, mine) = (self.ran.clone(), Arc::new(AtomicU32::new(0)));
        let mut fut: BoxFut<'p> = Box::pin(self.sleepy.call(move || {
            ran.fetch_add(1, Ordering::SeqCst);
            // The call's own count: its first attempt fails, its retry succeeds.
            let first = mine.fetch_add(1, Ordering::SeqCst) == 0;
            std::future::ready(if first {
                Err(SvcErr::Failed(class))
            } else {
                Ok(())
            })
        }));
        let before = self.ran();
        let now = self.time.now();
        let real = poll_once(&mut fut);
        prop_assert_eq!(self.ran(), before + 1, "the first attempt runs");
        self.model.record_call(now);
        self.model.record_failure();
        let taken = if class.is_retryable() {
            self.model.try_retry(class, now)
        } else {
            None
        };
        match (real, taken) {
            (Poll::Pending, Some(taken)) => {
                if self.flights.len() == MAX_FLIGHTS {
                    let old = self.flights.remove(0);
                    drop(old.fut);
                    self.model.refund(old.taken);
                }
                self.flights.push(Sleeping {
                    fut,
                    class,
                    taken,
                    wakes: self.time.total + self.delay.as_nanos(),
                });
            }
            (Poll::Ready(Err(SvcErr::Failed(c))), None) if c == class => {}
            (real, model) => {
                return Err(TestCaseError::fail(format!(
                    "a failing async call: budget {real:?}, model {model:?}"
                )));
            }
        }
        Ok(())
    }
}

fn run_budget(cfg: &BudgetCfg, origin: u64, ops: &[BudgetOp]) -> Result<(), TestCaseError> {
    let clock = VirtualClock::new();
    let budget = cfg.build(&clock);
    let sync = RetryPolicy::builder()
        .classifier(classify)
        .strategy(no_delay())
        .max_attempts(4)
        .no_deadline()
        .budget(budget.clone())
        .clock(clock.clone())
        .build()
        .unwrap();
    let timer = clock.clone();
    let sleepy = AsyncRetryPolicy::builder()
        .classifier(classify)
        .strategy(constant(cfg.delay()))
        .max_attempts(2)
        .no_deadline()
        .budget(budget.clone())
        .clock(clock.clone())
        .sleeper(move |d| timer.timer(d))
        .build()
        .unwrap();
    let mut run = BudgetRun {
        budget: &budget,
        sync: &sync,
        sleepy: &sleepy,
        clock: &clock,
        delay: cfg.delay(),
        ran: Arc::default(),
        model: BudgetModel::new(cfg),
        time: Time::default(),
        flights: Vec::new(),
    };
    advance(&clock, &mut run.time, origin);
    let scales = cfg.scales();
    for (i, op) in ops.iter().enumerate() {
        let checked = run.step(op, scales).and_then(|()| {
            let (units, per_token) = run.model.available(run.time.now());
            #[allow(clippy::cast_precision_loss, reason = "compared to 1e-9")]
            let expected = units as f64 / per_token;
            let real = budget.available();
            prop_assert!(
                (real - expected).abs() <= 1e-9 * expected.max(1.0),
                "available(): budget {real}, model {expected} ({units} / {per_token})"
            );
            Ok(())
        });
        checked.map_err(|e| {
            TestCaseError::fail(format!(
                "step {i} ({op:?}) at {} ns: {e}\nmodel: {:?}",
                run.time.now(),
                run.model
            ))
        })?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(384))]

    /// Random sequences of the budget's own calls, policies' calls (sync; async sleeping
    /// before a retry, then woken or dropped) and clock steps: every `try_retry` answer, every
    /// call's result and attempts, and `available()` after each step match the model.
    #[test]
    fn budgets_follow_their_models(
        cfg in budget_cfg(),
        origin in origin(),
        ops in prop::collection::vec(budget_op(), 1..100),
    ) {
        run_budget(&cfg, origin, &ops)?;
    }
}

// ---------- under contention ----------

/// `SplitMix64`: each thread's own reproducible choices.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % n
    }
}

const THREADS: u64 = 8;

/// Counts the operations running, and the most ever running at once.
#[derive(Default)]
struct Running {
    now: AtomicU32,
    peak: AtomicU32,
}

/// One running operation, counted until dropped (returned, unwound, or its future dropped).
struct InOp(Arc<Running>);

impl Running {
    fn enter(self: &Arc<Self>) -> InOp {
        let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(n, Ordering::SeqCst);
        InOp(self.clone())
    }
}

impl Drop for InOp {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::SeqCst);
    }
}

/// An async call, one attempt, whose operation is counted in `running` and never ends.
fn hanging<'p>(policy: &'p AsyncRetryPolicy<SvcErr>, running: &Arc<Running>) -> BoxFut<'p> {
    let running = running.clone();
    Box::pin(policy.call(move || {
        let op = running.enter();
        async move {
            let _op = op;
            pending::<Reply>().await
        }
    }))
}

/// What the threads of the probing test share.
struct Probing<'a> {
    cb: &'a CircuitBreaker,
    clock: &'a VirtualClock,
    open_for: Duration,
    sync: &'a RetryPolicy<SvcErr>,
    single: &'a AsyncRetryPolicy<SvcErr>,
    running: &'a Arc<Running>,
    /// Held (shared) by every call; taken alone to move the clock.
    calls_in_progress: &'a RwLock<()>,
    failed: &'a AtomicU64,
    cancelled: &'a AtomicU64,
}

impl Probing<'_> {
    fn iteration(&self, rng: &mut Rng) {
        if self.cb.state() == CircuitState::Open {
            let _no_call_in_progress = self.calls_in_progress.write().unwrap();
            self.clock.advance(self.open_for);
        }
        let _call = self.calls_in_progress.read().unwrap();
        match rng.below(8) {
            0 | 1 => {
                let _ = self.sync.call(|| {
                    let _op = self.running.enter();
                    self.failed.fetch_add(1, Ordering::SeqCst);
                    Err::<(), _>(SvcErr::Failed(ErrorClass::ServerError))
                });
            }
            2 => {
                let _ = catch_unwind(AssertUnwindSafe(|| {
                    self.sync.call(|| -> Reply {
                        let _op = self.running.enter();
                        panic_any(OpPanic)
                    })
                }));
            }
            3..=6 => {
                let mut fut = hanging(self.single, self.running);
                if poll_once(&mut fut).is_pending() {
                    // Let through, its operation never ends: cancelled after one or a few
                    // polls.
                    self.cancelled.fetch_add(1, Ordering::SeqCst);
                    for _ in 0..rng.below(3) {
                        std::thread::yield_now();
                        assert!(poll_once(&mut fut).is_pending());
                    }
                }
            }
            _ => self.cb.record_outcome(Some(ErrorClass::Transient)),
        }
    }
}

/// 8 threads make probes of a circuit that never closes: calls that fail (re-opening it),
/// panic, or are cancelled after one or a few polls, and recorded failures. A thread that
/// finds the circuit open moves the clock past the open period, but only while no call is in
/// progress (each call holds a read lock, moving the clock the write lock): so every
/// operation running is a probe of the current half-open period, and no more than `probes`
/// may ever run at once. (Without that lock, probes of an earlier period may still be
/// running, as documented: their outcomes are ignored and they hold no place.) When the
/// threads are done, every place must be free again: exactly `probes` calls are let
/// through, twice.
#[test]
fn concurrent_probes_never_exceed_the_limit_and_give_their_places_back() {
    const PROBES: u32 = 3;
    const ITERATIONS: u64 = 10_000;
    quiet_op_panics();
    let clock = VirtualClock::new();
    let open_for = Duration::from_millis(1);
    let cb = CircuitBreaker::builder()
        .min_calls(1)
        .open_for(open_for)
        .probe_timeout(Duration::from_secs(86_400))
        .probes(PROBES)
        .clock(clock.clone())
        .build()
        .unwrap();
    cb.record_outcome(Some(ErrorClass::ServerError));
    assert_eq!(cb.state(), CircuitState::Open);
    let sync = RetryPolicy::builder()
        .classifier(classify)
        .strategy(no_delay())
        .max_attempts(2)
        .circuit_breaker(cb.clone())
        .clock(VirtualClock::new())
        .build()
        .unwrap();
    let single = AsyncRetryPolicy::builder()
        .classifier(classify)
        .max_attempts(1)
        .circuit_breaker(cb.clone())
        .clock(VirtualClock::new())
        .build()
        .unwrap();
    let running = Arc::new(Running::default());
    let (failed, cancelled) = (AtomicU64::new(0), AtomicU64::new(0));
    let shared = Probing {
        cb: &cb,
        clock: &clock,
        open_for,
        sync: &sync,
        single: &single,
        running: &running,
        calls_in_progress: &RwLock::new(()),
        failed: &failed,
        cancelled: &cancelled,
    };
    let barrier = Barrier::new(usize::try_from(THREADS).unwrap());
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (shared, barrier) = (&shared, &barrier);
            s.spawn(move || {
                let mut rng = Rng(t);
                barrier.wait();
                for _ in 0..ITERATIONS {
                    shared.iteration(&mut rng);
                }
            });
        }
    });
    let (failed, cancelled) = (failed.into_inner(), cancelled.into_inner());
    assert!(
        failed > 0 && cancelled > 0,
        "probes failed ({failed}) and were cancelled ({cancelled})"
    );
    let peak = running.peak.load(Ordering::SeqCst);
    assert!((1..=PROBES).contains(&peak), "{peak} probes ran at once");
    assert_eq!(running.now.load(Ordering::SeqCst), 0);

    // No place was leaked: `PROBES` calls are let through, the next is rejected, and once
    // they are dropped `PROBES` calls are let through again.
    clock.advance(open_for);
    for round in 0..2 {
        let mut held: Vec<_> = (0..PROBES).map(|_| hanging(&single, &running)).collect();
        for fut in &mut held {
            assert!(
                poll_once(fut).is_pending(),
                "round {round}: a probe's place was lost"
            );
        }
        let mut extra = hanging(&single, &running);
        assert!(
            matches!(poll_once(&mut extra), Poll::Ready(Err(SvcErr::Open(_)))),
            "round {round}: more than {PROBES} probes"
        );
        assert_eq!(running.now.load(Ordering::SeqCst), PROBES);
    }
    assert_eq!(running.now.load(Ordering::SeqCst), 0);
}

/// What the threads of the spending test share.
struct Spending<'a> {
    budget: &'a RetryBudget,
    breaker_clock: &'a VirtualClock,
    sync: &'a RetryPolicy<SvcErr>,
    sleepy: &'a AsyncRetryPolicy<SvcErr>,
    /// Calls recorded in the budget (policies' calls, or `record_call`).
    calls: AtomicU64,
    /// Retries that started: every attempt of a policy's call after its first.
    retries: AtomicU64,
    /// Direct `try_retry` grants.
    grants: AtomicU64,
    /// Policy calls stopped by the budget.
    exhausted: AtomicU64,
}

/// 10 % of a call, and a floor of 5/s over 10 s: 50 tokens.
const PER_CALL: u64 = BILLION / 10;
const RESERVE: u64 = 50 * BILLION;

impl Spending<'_> {
    fn iteration(&self, rng: &mut Rng) {
        let mut attempts = 0;
        let mut attempt = || {
            attempts += 1;
            if attempts > 1 {
                self.retries.fetch_add(1, Ordering::SeqCst);
            }
            attempts
        };
        let choice = rng.below(10);
        match choice {
            0..=3 => {
                let script: Vec<Outcome> = (0..4)
                    .map(|_| match rng.below(10) {
                        0..=2 => Outcome::Ok,
                        3..=6 => Outcome::Fail(ErrorClass::ServerError),
                        7 | 8 => Outcome::Fail(ErrorClass::Transient),
                        _ => Outcome::Fail(ErrorClass::Permanent),
                    })
                    .collect();
                let out = self.sync.execute(|| script[attempt() - 1].reply());
                if out.is_err_and(|e| e.stop_reason() == StopReason::BudgetExhausted) {
                    self.exhausted.fetch_add(1, Ordering::SeqCst);
                }
            }
            4 => {
                // Panics at its first, second or third attempt.
                let panics_at = usize::try_from(rng.below(3)).unwrap() + 1;
                let _ = catch_unwind(AssertUnwindSafe(|| {
                    self.sync.call(|| -> Reply {
                        if attempt() == panics_at {
                            panic_any(OpPanic)
                        }
                        Err(SvcErr::Failed(ErrorClass::Transient))
                    })
                }));
            }
            5 | 6 => {
                // Fails, and is dropped while sleeping before its retry.
                let mut fut: BoxFut<'_> = Box::pin(self.sleepy.call(|| {
                    attempt();
                    std::future::ready(Err(SvcErr::Failed(ErrorClass::Transient)))
                }));
                let _ = poll_once(&mut fut);
                std::thread::yield_now();
            }
            7 => {
                // Dropped during its first attempt.
                let mut fut: BoxFut<'_> = Box::pin(self.sleepy.call(|| {
                    attempt();
                    pending::<Reply>()
                }));
                let _ = poll_once(&mut fut);
            }
            8 => {
                self.budget.record_call();
                self.calls.fetch_add(1, Ordering::SeqCst);
                if self.budget.try_retry(ErrorClass::Transient) {
                    self.grants.fetch_add(1, Ordering::SeqCst);
                }
            }
            _ => self.breaker_clock.advance(Duration::from_millis(1)),
        }
        // A policy's call is counted in the budget when its first attempt is made: one the
        // breaker rejected never reached the dependency, and earns nothing.
        if choice < 8 && attempts > 0 {
            self.calls.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// What the calls earned and what was spent, in billionths of a token; and what the
    /// budget says is left.
    fn accounts(&self) -> (u128, u128, u128) {
        let earned = self.calls.load(Ordering::SeqCst) * PER_CALL + RESERVE;
        let spent = self.retries.load(Ordering::SeqCst) + self.grants.load(Ordering::SeqCst);
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let left = (self.budget.available() * 1e9).round() as u128; // exact below 2^53
        (u128::from(earned), u128::from(spent * BILLION), left)
    }
}

/// 8 threads share one ratio budget (its clock stopped: one window) and one breaker: policy
/// calls that fail, succeed, panic mid-retry, or are dropped while sleeping before a retry
/// (their tokens come back), and direct `try_retry`s. Tokens are conserved exactly: what is
/// left is what the calls earned minus the retries that started and the direct grants; then
/// the threads spend what is left, and in all the budget granted no more than the calls
/// earned. The breaker is left with no place leaked: it closes after `probes` successes.
#[test]
fn concurrent_calls_spend_a_ratio_budget_exactly() {
    const ITERATIONS: u64 = 10_000;
    const PROBES: u32 = 2;
    quiet_op_panics();
    let budget = RetryBudget::ratio(10.0)
        .min_retries_per_sec(5)
        .window(Duration::from_secs(10))
        .clock(VirtualClock::new())
        .build()
        .unwrap();
    let breaker_clock = VirtualClock::new();
    let cb = CircuitBreaker::builder()
        .min_calls(20)
        .failure_rate(0.5)
        .window(Duration::from_secs(1))
        .open_for(Duration::from_millis(1))
        .probe_timeout(Duration::from_secs(86_400))
        .probes(PROBES)
        .clock(breaker_clock.clone())
        .build()
        .unwrap();
    let sync = RetryPolicy::builder()
        .classifier(classify)
        .strategy(no_delay())
        .max_attempts(4)
        .no_deadline()
        .budget(budget.clone())
        .circuit_breaker(cb.clone())
        .clock(VirtualClock::new())
        .build()
        .unwrap();
    let sleepy = AsyncRetryPolicy::builder()
        .classifier(classify)
        .strategy(constant(Duration::from_millis(1)))
        .max_attempts(4)
        .no_deadline()
        .budget(budget.clone())
        .circuit_breaker(cb.clone())
        .sleeper(|_| pending::<()>())
        .build()
        .unwrap();
    let shared = Spending {
        budget: &budget,
        breaker_clock: &breaker_clock,
        sync: &sync,
        sleepy: &sleepy,
        calls: AtomicU64::new(0),
        retries: AtomicU64::new(0),
        grants: AtomicU64::new(0),
        exhausted: AtomicU64::new(0),
    };
    let barrier = Barrier::new(usize::try_from(THREADS).unwrap());
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (shared, barrier) = (&shared, &barrier);
            s.spawn(move || {
                let mut rng = Rng(100 + t);
                barrier.wait();
                for _ in 0..ITERATIONS {
                    shared.iteration(&mut rng);
                }
            });
        }
    });
    assert!(
        shared.retries.load(Ordering::SeqCst) > 0 && shared.exhausted.load(Ordering::SeqCst) > 0,
        "the policies retried, and ran the budget dry, under contention"
    );
    let (earned, spent, left) = shared.accounts();
    assert!(spent <= earned, "granted {spent} billionths of {earned}");
    assert_eq!(left, earned - spent, "tokens lost or made up");

    // Spend what is left, from every thread at once: not one token more.
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                while budget.try_retry(ErrorClass::Transient) {
                    shared.grants.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
    });
    let (earned, spent, left) = shared.accounts();
    assert!(spent <= earned, "granted {spent} billionths of {earned}");
    assert!(earned - spent < u128::from(BILLION), "a token left unspent");
    assert_eq!(left, earned - spent);

    // The breaker lost no place: once its open period is over, `PROBES` successes close it.
    breaker_clock.advance(Duration::from_millis(1));
    for _ in 0..PROBES {
        if cb.state() != CircuitState::Closed {
            assert_eq!(sync.call(|| Ok(())), Ok(()), "a probe's place was lost");
        }
    }
    assert_eq!(cb.state(), CircuitState::Closed);
}
