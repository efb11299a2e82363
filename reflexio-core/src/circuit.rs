//! A circuit breaker shared between calls: stop calling a dependency that keeps failing, and
//! probe it again after a while.

use core::fmt;
use core::time::Duration;
use std::sync::Arc;

use crate::class::ErrorClass;
use crate::errors::{CircuitOpen, ConfigError, ConfigProblem};
use crate::sync::{AtomicU64, Mutex, Ordering, lock};
use crate::time::VirtualClock;
use crate::time::{SharedClock, saturating_nanos};
use crate::window::{Epochs, SLOTS, WindowedCounter};

/// The state of a [`CircuitBreaker`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CircuitState {
    /// Calls go through; outcomes are counted.
    Closed,
    /// Calls are rejected without calling the operation, until the open period ends.
    Open,
    /// A limited number of probe calls go through; their outcome closes or re-opens the circuit.
    HalfOpen,
}

/// Which kind of call a breaker let through, in which period (*generation*) of its state: an
/// outcome reported in a later period than its admission's is ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Permit {
    Normal(u64),
    Probe(u64),
}

/// A change of state, reported as an event by the policy whose call caused it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Transition {
    Opened,
    HalfOpened,
    Closed,
}

// The published state word: the state in 2 bits, the generation above them. The generation
// counts every transition, so a word names one period of one state, and an outcome from an
// earlier period cannot be mistaken for one of the current period (2^62 transitions: no wrap).
const CLOSED: u64 = 0;
const OPEN: u64 = 1;
const HALF_OPEN: u64 = 2;
const STATE_MASK: u64 = 0b11;

fn state_of(w: u64) -> u64 {
    w & STATE_MASK
}
fn generation_of(w: u64) -> u64 {
    w >> 2
}
fn word(state: u64, generation: u64) -> u64 {
    (generation << 2) | state
}

/// The breaker's counts in its window.
const FAILURES: usize = 0;
const SUCCESSES: usize = 1;

/// The most probes a half-open period can admit.
const MAX_PROBES: u32 = 1 << 20;

/// The half-open period's counts, changed only with the breaker's lock held.
#[derive(Debug, Default)]
struct HalfOpen {
    /// Probes admitted and not given back.
    admitted: u32,
    succeeded: u32,
    /// When the period began (nanoseconds on the breaker's clock).
    started: u64,
}

/// A circuit breaker: closed, open, half-open, tripping on the failure rate of chosen classes.
///
/// While **closed**, every call goes through and its outcome is counted over a sliding window;
/// when at least `min_calls` were counted and the share of failures of a *tripping* class
/// reaches `failure_rate`, the circuit **opens**: calls fail fast with [`CircuitOpen`] without
/// calling the operation. After `open_for`, it is **half-open**: `probes` calls go through; if
/// they all succeed it closes (and forgets the window), if one fails it opens again. A probe
/// that is cancelled or panics gives its place back; one that never reports back is replaced
/// after the [probe timeout](CircuitBreakerBuilder::probe_timeout).
///
/// Only failures of the tripping classes count as failures (by default `ServerError`,
/// `Transient`, `RateLimit` and `Unknown`): a `Permanent` 404 or an `Auth` error says nothing
/// about the dependency's health and counts as a success. Shared by cloning (one `Arc`). A
/// closed circuit admits a call with one atomic load and records its outcome in a lock-free
/// window; transitions, and admissions while open or half-open once the open period is over,
/// take a lock (they happen only while the dependency is failing), so they are exact under
/// contention.
///
/// Give it to a policy with `.circuit_breaker(cb.clone())`; the policy's error type must
/// implement `From<CircuitOpen>` (the error returned when the first attempt is rejected).
/// State changes are reported as events (`CircuitOpened`, `CircuitHalfOpen`, `CircuitClosed`,
/// `CircuitRejected`) to the policy whose call caused them.
///
/// # Limits
///
/// - An outcome is counted in the period it was admitted in, checked against the breaker's
///   generation just before it is counted: a thread that stalls between that check and the
///   count for a whole open period (at least `open_for`: a paused VM, a stopped process) has
///   its outcome counted in the next closed period.
/// - Time is kept in `u64` nanoseconds from the breaker's creation (584 years); at the end of
///   that range (reachable only with a [`VirtualClock`] jumped there) open periods and probe
///   timeouts are cut short.
///
/// # Default
///
/// Failure rate 50 %, at least 10 calls, a 30 s window, open for 10 s, 1 probe.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use reflexio::{testing::VirtualClock, CircuitBreaker, CircuitState, ErrorClass};
///
/// let clock = VirtualClock::new();
/// let cb = CircuitBreaker::builder().min_calls(4).failure_rate(0.5).clock(clock.clone()).build().unwrap();
/// for _ in 0..4 {
///     cb.record_outcome(Some(ErrorClass::ServerError));
/// }
/// assert_eq!(cb.state(), CircuitState::Open);
/// clock.advance(Duration::from_secs(10));
/// assert_eq!(cb.state(), CircuitState::HalfOpen);
/// ```
#[derive(Clone)]
pub struct CircuitBreaker {
    inner: Arc<Inner>,
}

struct Inner {
    /// The published state and generation (see [`word`]): read without the lock by every
    /// admission, written only with it.
    word: AtomicU64,
    /// When the open period of the generation in `word` ends, in nanoseconds on `clock`;
    /// written before `word`, with the lock.
    open_until: AtomicU64,
    /// Held for every transition and every half-open admission: those happen only while the
    /// dependency is failing, and one at a time they are exact.
    half_open: Mutex<HalfOpen>,
    /// The slots in time of both windows.
    epochs: Epochs,
    /// The failures ([`FAILURES`]) and successes ([`SUCCESSES`]) over the window.
    outcomes: WindowedCounter<2>,
    /// One past the latest epoch a tripping failure was counted in (0: none since the last
    /// reset): a success with no failure left in the window needs no trip check.
    failures_until: AtomicU64,
    failure_rate: f64,
    min_calls: u64,
    open_for: u64,
    probe_timeout: u64,
    probes: u32,
    trips: [bool; 8],
    clock: SharedClock,
}

/// A call admitted by a breaker, owned by the call until its outcome is recorded. Dropped
/// without an outcome (the call was cancelled, or a panic unwound through it), a probe gives
/// its place back, so the next call can probe instead.
pub(crate) struct Admission<'a> {
    breaker: &'a CircuitBreaker,
    /// The permit, packed (see [`Permit::pack`]) to keep a call's future small; `NONE` once
    /// recorded.
    permit: u64,
}

impl Permit {
    /// The generation in the upper bits, the kind in the lowest two: 1 normal, 2 probe.
    fn pack(self) -> u64 {
        match self {
            Permit::Normal(generation) => (generation << 2) | 1,
            Permit::Probe(generation) => (generation << 2) | 2,
        }
    }

    fn unpack(packed: u64) -> Option<Permit> {
        match packed & 0b11 {
            1 => Some(Permit::Normal(packed >> 2)),
            2 => Some(Permit::Probe(packed >> 2)),
            _ => None,
        }
    }
}

impl Admission<'_> {
    const NONE: u64 = 0;

    /// Records the attempt's outcome: `None` for a success, `Some(class)` for a failure.
    pub(crate) fn record(mut self, failure: Option<ErrorClass>) -> Option<Transition> {
        let permit = Permit::unpack(core::mem::replace(&mut self.permit, Self::NONE))?;
        self.breaker.record(permit, failure)
    }
}

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        if let Some(Permit::Probe(generation)) = Permit::unpack(self.permit) {
            self.breaker.release_probe(generation);
        }
    }
}

impl fmt::Debug for Admission<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Admission")
            .field(&Permit::unpack(self.permit))
            .finish()
    }
}

impl CircuitBreaker {
    /// A builder with the defaults above.
    pub fn builder() -> CircuitBreakerBuilder {
        CircuitBreakerBuilder {
            failure_rate: 0.5,
            min_calls: 10,
            window: Duration::from_secs(30),
            open_for: Duration::from_secs(10),
            probe_timeout: None,
            probes: 1,
            trips: [
                false, false, false, false, true, true, true, true, // Auth..Concurrency: no
            ],
            clock: None,
        }
    }

    /// The current state (an open circuit whose open period is over reads as half-open).
    #[must_use]
    pub fn state(&self) -> CircuitState {
        let w = self.inner.word.load(Ordering::Acquire);
        match state_of(w) {
            OPEN if self.remaining_open() == Duration::ZERO => CircuitState::HalfOpen,
            OPEN => CircuitState::Open,
            HALF_OPEN => CircuitState::HalfOpen,
            _ => CircuitState::Closed,
        }
    }

    fn now(&self) -> u64 {
        self.inner.clock.now_nanos()
    }

    fn remaining_open(&self) -> Duration {
        let until = self.inner.open_until.load(Ordering::Acquire);
        Duration::from_nanos(until.saturating_sub(self.now()))
    }

    /// Whether a call made `after` from now would be rejected: open, and still open then.
    pub(crate) fn rejects_after(&self, after: Duration) -> bool {
        state_of(self.inner.word.load(Ordering::Acquire)) == OPEN && self.remaining_open() > after
    }

    /// Asks to make one call. Policies call this before every attempt.
    pub(crate) fn admit(&self) -> Result<(Admission<'_>, Option<Transition>), CircuitOpen> {
        let (permit, transition) = self.acquire()?;
        Ok((
            Admission {
                breaker: self,
                permit: permit.pack(),
            },
            transition,
        ))
    }

    fn acquire(&self) -> Result<(Permit, Option<Transition>), CircuitOpen> {
        let inner = &*self.inner;
        let w = inner.word.load(Ordering::Acquire);
        match state_of(w) {
            CLOSED => Ok((Permit::Normal(generation_of(w)), None)),
            OPEN => {
                // Rejected without the lock while the open period lasts: `open_until` was
                // written before the word, so a read between two equal words belongs to it.
                let until = inner.open_until.load(Ordering::Acquire);
                let now = self.now();
                if now < until && inner.word.load(Ordering::Acquire) == w {
                    return Err(CircuitOpen::new(Duration::from_nanos(until - now)));
                }
                self.acquire_locked()
            }
            _ => self.acquire_locked(),
        }
    }

    #[cold]
    fn acquire_locked(&self) -> Result<(Permit, Option<Transition>), CircuitOpen> {
        let inner = &*self.inner;
        let mut half = lock(&inner.half_open);
        let w = inner.word.load(Ordering::Acquire);
        let now = self.now();
        let generation = generation_of(w);
        match state_of(w) {
            CLOSED => Ok((Permit::Normal(generation), None)),
            OPEN => {
                let until = inner.open_until.load(Ordering::Acquire);
                if now < until {
                    return Err(CircuitOpen::new(Duration::from_nanos(until - now)));
                }
                Ok((
                    self.half_open(&mut half, generation, now),
                    Some(Transition::HalfOpened),
                ))
            }
            _ if half.admitted < inner.probes => {
                half.admitted += 1;
                Ok((Permit::Probe(generation), None))
            }
            _ => {
                // Every probe is out. One that never reports back (a hung operation, a
                // leaked future) must not wedge the circuit: after the probe timeout a new
                // half-open period begins, and the old period's probes no longer count.
                let timeout_at = half.started.saturating_add(inner.probe_timeout);
                if now < timeout_at {
                    return Err(CircuitOpen::new(Duration::from_nanos(timeout_at - now)));
                }
                Ok((
                    self.half_open(&mut half, generation, now),
                    Some(Transition::HalfOpened),
                ))
            }
        }
    }

    /// Begins a half-open period after `generation`, admitting its first probe.
    fn half_open(&self, half: &mut HalfOpen, generation: u64, now: u64) -> Permit {
        *half = HalfOpen {
            admitted: 1,
            succeeded: 0,
            started: now,
        };
        let next = generation + 1;
        self.inner
            .word
            .store(word(HALF_OPEN, next), Ordering::Release);
        Permit::Probe(next)
    }

    /// Opens the circuit after `generation`, for `open_for` from `now`. With the lock held.
    fn open(&self, generation: u64, now: u64) -> Transition {
        let inner = &*self.inner;
        inner
            .open_until
            .store(now.saturating_add(inner.open_for), Ordering::Release);
        inner
            .word
            .store(word(OPEN, generation + 1), Ordering::Release);
        Transition::Opened
    }

    /// Records the outcome of a call let through with `permit`: `None` for a success,
    /// `Some(class)` for a failure.
    fn record(&self, permit: Permit, failure: Option<ErrorClass>) -> Option<Transition> {
        let inner = &*self.inner;
        let failed = failure.is_some_and(|c| inner.trips[c.index()]);
        match permit {
            Permit::Probe(generation) => self.record_probe(generation, failed),
            Permit::Normal(generation) => {
                let closed = word(CLOSED, generation);
                if inner.word.load(Ordering::Acquire) != closed {
                    return None; // admitted before the circuit last opened: stale
                }
                let now = self.now();
                let epoch = inner.epochs.epoch_at(now);
                // Every outcome is checked, a success too: one that brings the count to
                // `min_calls` while the failures' share already reaches the rate opens the
                // circuit, as documented.
                if failed {
                    inner.outcomes.add(epoch, FAILURES, 1);
                    inner
                        .failures_until
                        .fetch_max(epoch.saturating_add(SLOTS as u64), Ordering::AcqRel);
                } else {
                    inner.outcomes.add(epoch, SUCCESSES, 1);
                    // No failure in the window (the common case of a healthy dependency):
                    // nothing to check. Read with a read-modify-write, not a load, so that it
                    // is ordered against a racing failure's `fetch_max`: one of the two then
                    // sees the other's count (two loads could both miss it).
                    if inner.failures_until.fetch_add(0, Ordering::AcqRel) <= epoch {
                        return None;
                    }
                }
                let [f, successes] = inner.outcomes.sums(epoch);
                if f == 0 {
                    return None;
                }
                let total = f.saturating_add(successes);
                #[allow(clippy::cast_precision_loss)] // a ratio: 2^-52 relative error at most
                let tripped =
                    total >= inner.min_calls && f as f64 >= inner.failure_rate * total as f64;
                if !tripped {
                    return None;
                }
                let _half = lock(&inner.half_open);
                (inner.word.load(Ordering::Acquire) == closed).then(|| self.open(generation, now))
            }
        }
    }

    fn record_probe(&self, generation: u64, failed: bool) -> Option<Transition> {
        let inner = &*self.inner;
        let mut half = lock(&inner.half_open);
        if inner.word.load(Ordering::Acquire) != word(HALF_OPEN, generation) {
            return None; // a probe of an earlier period, or another probe already decided
        }
        let now = self.now();
        if failed {
            return Some(self.open(generation, now));
        }
        half.succeeded += 1;
        if half.succeeded < inner.probes {
            return None;
        }
        // Close with empty windows: the outcomes that opened the circuit are forgotten, and
        // every outcome from now on counts (no normal call is admitted until the word below).
        inner.outcomes.clear();
        inner.failures_until.store(0, Ordering::Release);
        inner
            .word
            .store(word(CLOSED, generation + 1), Ordering::Release);
        Some(Transition::Closed)
    }

    /// Gives back the place of a probe of `generation` that ended without an outcome.
    fn release_probe(&self, generation: u64) {
        let inner = &*self.inner;
        let mut half = lock(&inner.half_open);
        if inner.word.load(Ordering::Acquire) == word(HALF_OPEN, generation) {
            half.admitted = half.admitted.saturating_sub(1);
        }
    }

    /// Records one outcome from outside a policy (a call you made yourself): `None` for a
    /// success, `Some(class)` for a failure. While open or half-open, outcomes recorded this
    /// way count as probes only if a probe is available; otherwise they are ignored.
    pub fn record_outcome(&self, failure: Option<ErrorClass>) {
        if let Ok((admission, _)) = self.admit() {
            let _ = admission.record(failure);
        }
    }

    pub(crate) fn describe(&self) -> String {
        let i = &*self.inner;
        let trips: Vec<&str> = ErrorClass::ALL
            .iter()
            .filter(|c| i.trips[c.index()])
            .map(|c| c.as_str())
            .collect();
        format!(
            "circuit breaker (opens at {}% failures of [{}] over >= {} calls, open for {:?}, {} probe(s))",
            i.failure_rate * 100.0,
            trips.join(", "),
            i.min_calls,
            Duration::from_nanos(i.open_for),
            i.probes
        )
    }
}

impl fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

/// Builds a [`CircuitBreaker`], from [`CircuitBreaker::builder`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build()` is called"]
pub struct CircuitBreakerBuilder {
    failure_rate: f64,
    min_calls: u64,
    window: Duration,
    open_for: Duration,
    probe_timeout: Option<Duration>,
    probes: u32,
    trips: [bool; 8],
    clock: Option<VirtualClock>,
}

impl CircuitBreakerBuilder {
    /// The share of failures, in `(0, 1]`, that opens the circuit (default 0.5).
    pub fn failure_rate(mut self, rate: f64) -> Self {
        self.failure_rate = rate;
        self
    }

    /// The fewest calls in the window before the circuit may open (default 10).
    pub fn min_calls(mut self, n: u32) -> Self {
        self.min_calls = u64::from(n);
        self
    }

    /// The sliding window over which outcomes are counted (default 30 s).
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// How long the circuit stays open before probing (default 10 s).
    pub fn open_for(mut self, open_for: Duration) -> Self {
        self.open_for = open_for;
        self
    }

    /// How long a half-open period waits for its probes (default: `open_for`). A probe that
    /// has not reported back by then (its operation hangs, or its future was leaked) no longer
    /// holds the circuit: a new half-open period begins with the next call, and outcomes of
    /// the earlier period's probes are ignored. Probes that are cancelled or panic give their
    /// place back at once; this bounds the rest.
    pub fn probe_timeout(mut self, timeout: Duration) -> Self {
        self.probe_timeout = Some(timeout);
        self
    }

    /// How many probes must succeed, in half-open, to close the circuit (default 1, at most
    /// 2²⁰).
    pub fn probes(mut self, probes: u32) -> Self {
        self.probes = probes;
        self
    }

    /// The classes whose failures count toward opening (default `ServerError`, `Transient`,
    /// `RateLimit`, `Unknown`); failures of other classes count as successes.
    pub fn trip_on(mut self, classes: &[ErrorClass]) -> Self {
        self.trips = [false; 8];
        for c in classes {
            self.trips[c.index()] = true;
        }
        self
    }

    /// Counts time on a [`VirtualClock`] instead of the real clock.
    pub fn clock(mut self, clock: VirtualClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Builds the breaker, closed.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming every invalid setting: a failure rate outside `(0, 1]`, zero
    /// `min_calls`, `open_for`, probe timeout or probes, more than 2²⁰ probes, a window
    /// shorter than 1 µs.
    pub fn build(self) -> Result<CircuitBreaker, ConfigError> {
        let probe_timeout = self.probe_timeout.unwrap_or(self.open_for);
        let mut problems = Vec::new();
        if !(self.failure_rate > 0.0 && self.failure_rate <= 1.0) {
            problems.push(ConfigProblem::Invalid {
                setting: "failure_rate",
                reason: format!("must be in (0, 1] (got {})", self.failure_rate),
            });
        }
        for (setting, zero) in [
            ("min_calls", self.min_calls == 0),
            ("open_for", self.open_for.is_zero()),
            ("probe_timeout", probe_timeout.is_zero()),
            ("probes", self.probes == 0),
        ] {
            if zero {
                problems.push(ConfigProblem::Invalid {
                    setting,
                    reason: "must be greater than zero".into(),
                });
            }
        }
        if self.probes > MAX_PROBES {
            problems.push(ConfigProblem::Invalid {
                setting: "probes",
                reason: format!("must be at most 1048576 (got {})", self.probes),
            });
        }
        if self.window < Epochs::MIN_WINDOW {
            problems.push(ConfigProblem::Invalid {
                setting: "window",
                reason: format!("must be at least 1µs (got {:?})", self.window),
            });
        }
        ConfigError::from_problems(problems)?;
        Ok(CircuitBreaker {
            inner: Arc::new(Inner {
                word: AtomicU64::new(word(CLOSED, 0)),
                open_until: AtomicU64::new(0),
                half_open: Mutex::new(HalfOpen::default()),
                epochs: Epochs::new(self.window),
                outcomes: WindowedCounter::new(),
                failures_until: AtomicU64::new(0),
                failure_rate: self.failure_rate,
                min_calls: self.min_calls,
                open_for: saturating_nanos(self.open_for),
                probe_timeout: saturating_nanos(probe_timeout),
                probes: self.probes,
                trips: self.trips,
                clock: self
                    .clock
                    .map_or_else(SharedClock::real, SharedClock::Virtual),
            }),
        })
    }
}

#[cfg(all(test, loom))]
mod loom_models {
    use super::*;
    use loom::thread;

    /// A breaker that lives for the whole model (admissions borrow it, and threads need
    /// `'static` borrows).
    fn leak(cb: CircuitBreaker) -> &'static CircuitBreaker {
        Box::leak(Box::new(cb))
    }

    /// Two calls admitted by a closed breaker that opens at 2 calls and 50 % failures.
    fn two_calls_at_min_calls() -> (
        &'static CircuitBreaker,
        Admission<'static>,
        Admission<'static>,
    ) {
        let cb = leak(
            CircuitBreaker::builder()
                .min_calls(2)
                .failure_rate(0.5)
                .clock(VirtualClock::new())
                .build()
                .unwrap(),
        );
        (cb, cb.admit().unwrap().0, cb.admit().unwrap().0)
    }

    fn half_open_breaker(probes: u32) -> (&'static CircuitBreaker, VirtualClock) {
        let clock = VirtualClock::new();
        let cb = CircuitBreaker::builder()
            .min_calls(1)
            .probes(probes)
            .clock(clock.clone())
            .build()
            .unwrap();
        cb.record_outcome(Some(ErrorClass::ServerError));
        clock.advance(Duration::from_secs(10));
        (leak(cb), clock)
    }

    /// Two calls race for the one probe of a half-open circuit: exactly one gets it.
    #[test]
    fn one_probe_for_two_callers() {
        crate::sync::model(|| {
            let (cb, _clock) = half_open_breaker(1);
            let other =
                thread::spawn(move || cb.admit().map(|(a, _)| core::mem::forget(a)).is_ok());
            let mine = cb.admit().map(|(a, _)| core::mem::forget(a)).is_ok();
            let theirs = other.join().unwrap();
            assert!(mine ^ theirs, "exactly one probe: {mine} {theirs}");
        });
    }

    /// A probe dropped without an outcome, racing another caller: whichever order, the circuit
    /// is not wedged, and at most one probe is ever out.
    #[test]
    fn a_dropped_probe_racing_a_caller() {
        crate::sync::model(|| {
            let (cb, _clock) = half_open_breaker(1);
            let (probe, _) = cb.admit().unwrap();
            let dropper = thread::spawn(move || drop(probe));
            let got = cb.admit();
            dropper.join().unwrap();
            if let Ok((probe, _)) = got {
                assert!(cb.admit().is_err(), "one probe out");
                assert_eq!(probe.record(None), Some(Transition::Closed));
            } else {
                let (probe, _) = cb.admit().expect("the place was given back");
                assert_eq!(probe.record(None), Some(Transition::Closed));
            }
            assert_eq!(cb.state(), CircuitState::Closed);
        });
    }

    /// A probe's success racing another probe's failure (2 probes): the circuit ends closed
    /// only if no failure was recorded in its period, and a late outcome changes nothing.
    #[test]
    fn probe_outcomes_race() {
        crate::sync::model(|| {
            let (cb, _clock) = half_open_breaker(2);
            let (a, _) = cb.admit().unwrap();
            let (b, _) = cb.admit().unwrap();
            let t = thread::spawn(move || a.record(Some(ErrorClass::ServerError)));
            let tb = b.record(None);
            let ta = t.join().unwrap();
            // The failure always opens (the success alone cannot close: 2 are needed).
            assert_eq!(ta, Some(Transition::Opened));
            assert_eq!(tb, None);
            assert_eq!(cb.state(), CircuitState::Open);
        });
    }

    /// Two failures racing to trip a closed circuit open it once.
    #[test]
    fn concurrent_failures_open_once() {
        crate::sync::model(|| {
            let (cb, a, b) = two_calls_at_min_calls();
            let t = thread::spawn(move || a.record(Some(ErrorClass::ServerError)));
            let tb = b.record(Some(ErrorClass::ServerError));
            let ta = t.join().unwrap();
            let opened = [ta, tb]
                .iter()
                .filter(|t| **t == Some(Transition::Opened))
                .count();
            assert_eq!(opened, 1);
            assert_eq!(cb.state(), CircuitState::Open);
        });
    }

    /// Three threads: a probe cancelled, a probe succeeding and a new caller. The circuit ends
    /// closed or still half-open with a probe available, never wedged.
    #[test]
    fn cancel_record_and_admit_together() {
        crate::sync::model(|| {
            let (cb, _clock) = half_open_breaker(2);
            let (a, _) = cb.admit().unwrap();
            let (b, _) = cb.admit().unwrap();
            let canceller = thread::spawn(move || drop(a));
            let succeeder = thread::spawn(move || b.record(None));
            let newcomer = cb.admit().ok().map(|(c, _)| c.record(None));
            canceller.join().unwrap();
            let success = succeeder.join().unwrap();
            let closed = [success, newcomer.flatten()].contains(&Some(Transition::Closed));
            if closed {
                assert_eq!(cb.state(), CircuitState::Closed);
            } else {
                // Not closed yet: the cancelled probe's place is free again.
                assert_eq!(cb.state(), CircuitState::HalfOpen);
                let (d, _) = cb.admit().expect("a place for a probe");
                assert_eq!(d.record(None), Some(Transition::Closed));
            }
        });
    }

    /// A failure and a success racing on a closed circuit at `min_calls` 2 and 50 %: as in
    /// every sequential order, the circuit opens.
    #[test]
    fn a_failure_racing_a_success_opens_at_min_calls() {
        crate::sync::model(|| {
            let (cb, a, b) = two_calls_at_min_calls();
            let t = thread::spawn(move || a.record(Some(ErrorClass::ServerError)));
            let tb = b.record(None);
            let ta = t.join().unwrap();
            assert!(
                [ta, tb].contains(&Some(Transition::Opened)),
                "neither outcome opened the circuit"
            );
            assert_eq!(cb.state(), CircuitState::Open);
        });
    }
}
