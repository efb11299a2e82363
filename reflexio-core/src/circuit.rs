//! A circuit breaker shared between calls: stop calling a dependency that keeps failing, and
//! probe it again after a while.

use core::fmt;
use core::time::Duration;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::class::ErrorClass;
use crate::clock::SharedClock;
use crate::errors::{CircuitOpen, ConfigError, ConfigProblem};
use crate::testing::VirtualClock;
use crate::window::{Epochs, WindowedCounter};

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

/// Which kind of call a breaker let through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Permit {
    Normal,
    Probe,
}

/// A change of state, reported as an event by the policy whose call caused it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Transition {
    Opened,
    HalfOpened,
    Closed,
}

// The state word packs the state (2 bits), the probes admitted in half-open (31 bits) and the
// probes that succeeded (31 bits), so every transition is one compare-and-swap.
const CLOSED: u64 = 0;
const OPEN: u64 = 1;
const HALF_OPEN: u64 = 2;
const STATE_MASK: u64 = 0b11;
const FIELD_MASK: u64 = (1 << 31) - 1;

fn state_of(w: u64) -> u64 {
    w & STATE_MASK
}
fn admitted(w: u64) -> u64 {
    (w >> 2) & FIELD_MASK
}
fn succeeded(w: u64) -> u64 {
    (w >> 33) & FIELD_MASK
}
fn half_open(admitted: u64, succeeded: u64) -> u64 {
    HALF_OPEN | (admitted.min(FIELD_MASK) << 2) | (succeeded.min(FIELD_MASK) << 33)
}

/// A circuit breaker: closed, open, half-open, tripping on the failure rate of chosen classes.
///
/// While **closed**, every call goes through and its outcome is counted over a sliding window;
/// when at least `min_calls` were counted and the share of failures of a *tripping* class
/// reaches `failure_rate`, the circuit **opens**: calls fail fast with [`CircuitOpen`] without
/// calling the operation. After `open_for`, it is **half-open**: `probes` calls go through; if
/// they all succeed it closes (and forgets the window), if one fails it opens again.
///
/// Only failures of the tripping classes count as failures (by default `ServerError`,
/// `Transient`, `RateLimit` and `Unknown`): a `Permanent` 404 or an `Auth` error says nothing
/// about the dependency's health and counts as a success. Shared by cloning (one `Arc`); every
/// transition is a single atomic compare-and-swap, so it is exact under contention.
///
/// Give it to a policy with `.circuit_breaker(cb.clone())`; the policy's error type must
/// implement `From<CircuitOpen>` (the error returned when the first attempt is rejected).
/// State changes are reported as events (`CircuitOpened`, `CircuitHalfOpen`, `CircuitClosed`,
/// `CircuitRejected`) to the policy whose call caused them.
///
/// # Default
///
/// Failure rate 50 %, at least 10 calls, a 30 s window, open for 10 s, 1 probe.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use reflexio_core::{testing::VirtualClock, CircuitBreaker, CircuitState, ErrorClass};
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
    word: AtomicU64,
    opened_at: AtomicU64,
    reset_epoch: AtomicU64,
    /// The slots in time of both windows.
    epochs: Epochs,
    successes: WindowedCounter,
    failures: WindowedCounter,
    failure_rate: f64,
    min_calls: u64,
    open_for: u64,
    probes: u64,
    trips: [bool; 8],
    clock: SharedClock,
}

impl CircuitBreaker {
    /// A builder with the defaults above.
    pub fn builder() -> CircuitBreakerBuilder {
        CircuitBreakerBuilder {
            failure_rate: 0.5,
            min_calls: 10,
            window: Duration::from_secs(30),
            open_for: Duration::from_secs(10),
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
            OPEN if self.open_period_over() => CircuitState::HalfOpen,
            OPEN => CircuitState::Open,
            HALF_OPEN => CircuitState::HalfOpen,
            _ => CircuitState::Closed,
        }
    }

    fn open_period_over(&self) -> bool {
        let now = self.inner.clock.now_nanos();
        now.saturating_sub(self.inner.opened_at.load(Ordering::Acquire)) >= self.inner.open_for
    }

    fn remaining_open(&self) -> Duration {
        let now = self.inner.clock.now_nanos();
        let end = self
            .inner
            .opened_at
            .load(Ordering::Acquire)
            .saturating_add(self.inner.open_for);
        Duration::from_nanos(end.saturating_sub(now))
    }

    /// Whether a call made `after` from now would be rejected: open, and still open then.
    pub(crate) fn rejects_after(&self, after: Duration) -> bool {
        state_of(self.inner.word.load(Ordering::Acquire)) == OPEN && self.remaining_open() > after
    }

    /// Asks to make one call. Policies call this before every attempt.
    pub(crate) fn acquire(&self) -> Result<(Permit, Option<Transition>), CircuitOpen> {
        let inner = &*self.inner;
        let mut w = inner.word.load(Ordering::Acquire);
        loop {
            let (next, transition) = match state_of(w) {
                CLOSED => return Ok((Permit::Normal, None)),
                OPEN if self.open_period_over() => (half_open(1, 0), Some(Transition::HalfOpened)),
                HALF_OPEN if admitted(w) < inner.probes => {
                    (half_open(admitted(w) + 1, succeeded(w)), None)
                }
                _ => {
                    return Err(CircuitOpen::new(self.remaining_open()));
                }
            };
            match inner
                .word
                .compare_exchange(w, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Ok((Permit::Probe, transition)),
                Err(seen) => w = seen,
            }
        }
    }

    /// Records the outcome of a call let through with `permit`: `None` for a success,
    /// `Some(class)` for a failure.
    pub(crate) fn record(&self, permit: Permit, failure: Option<ErrorClass>) -> Option<Transition> {
        let inner = &*self.inner;
        let failed = failure.is_some_and(|c| inner.trips[c.index()]);
        let now = inner.clock.now_nanos();
        match permit {
            Permit::Probe => self.record_probe(failed, now),
            Permit::Normal => {
                let epoch = inner.epochs.epoch_at(now);
                if failed {
                    inner.failures.add(epoch, 1);
                } else {
                    inner.successes.add(epoch, 1);
                }
                if !failed || state_of(inner.word.load(Ordering::Acquire)) != CLOSED {
                    return None;
                }
                let since = inner.reset_epoch.load(Ordering::Acquire);
                let f = inner.failures.sum(epoch, since);
                let total = f.saturating_add(inner.successes.sum(epoch, since));
                #[allow(clippy::cast_precision_loss)] // counts far below 2^52
                let tripped =
                    total >= inner.min_calls && f as f64 >= inner.failure_rate * total as f64;
                if tripped {
                    inner.opened_at.store(now, Ordering::Release);
                    if inner
                        .word
                        .compare_exchange(CLOSED, OPEN, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                    {
                        return Some(Transition::Opened);
                    }
                }
                None
            }
        }
    }

    fn record_probe(&self, failed: bool, now: u64) -> Option<Transition> {
        let inner = &*self.inner;
        let mut w = inner.word.load(Ordering::Acquire);
        loop {
            if state_of(w) != HALF_OPEN {
                return None; // another probe already decided
            }
            let (next, transition) = if failed {
                inner.opened_at.store(now, Ordering::Release);
                (OPEN, Transition::Opened)
            } else if succeeded(w) + 1 >= inner.probes {
                (CLOSED, Transition::Closed)
            } else {
                (
                    half_open(admitted(w), succeeded(w) + 1),
                    Transition::HalfOpened,
                )
            };
            match inner
                .word
                .compare_exchange(w, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    return match transition {
                        Transition::Closed => {
                            // Forget the outcomes that opened the circuit.
                            let epoch = inner.epochs.epoch_at(now) + 1;
                            inner.reset_epoch.store(epoch, Ordering::Release);
                            Some(Transition::Closed)
                        }
                        Transition::Opened => Some(Transition::Opened),
                        Transition::HalfOpened => None,
                    };
                }
                Err(seen) => w = seen,
            }
        }
    }

    /// Records one outcome from outside a policy (a call you made yourself): `None` for a
    /// success, `Some(class)` for a failure. While open or half-open, outcomes recorded this
    /// way count as probes only if a probe is available; otherwise they are ignored.
    pub fn record_outcome(&self, failure: Option<ErrorClass>) {
        if let Ok((permit, _)) = self.acquire() {
            let _ = self.record(permit, failure);
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

    /// How many probes must succeed, in half-open, to close the circuit (default 1).
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
    /// `min_calls`, window or probes.
    pub fn build(self) -> Result<CircuitBreaker, ConfigError> {
        let mut problems = Vec::new();
        if !(self.failure_rate > 0.0 && self.failure_rate <= 1.0) {
            problems.push(ConfigProblem::Invalid {
                setting: "failure_rate",
                reason: format!("must be in (0, 1] (got {})", self.failure_rate),
            });
        }
        for (setting, zero) in [
            ("min_calls", self.min_calls == 0),
            ("window", self.window.is_zero()),
            ("probes", self.probes == 0),
        ] {
            if zero {
                problems.push(ConfigProblem::Invalid {
                    setting,
                    reason: "must be greater than zero".into(),
                });
            }
        }
        ConfigError::from_problems(problems)?;
        Ok(CircuitBreaker {
            inner: Arc::new(Inner {
                word: AtomicU64::new(CLOSED),
                opened_at: AtomicU64::new(0),
                reset_epoch: AtomicU64::new(0),
                epochs: Epochs::new(self.window),
                successes: WindowedCounter::new(),
                failures: WindowedCounter::new(),
                failure_rate: self.failure_rate,
                min_calls: self.min_calls,
                open_for: u64::try_from(self.open_for.as_nanos()).unwrap_or(u64::MAX),
                probes: u64::from(self.probes),
                trips: self.trips,
                clock: self
                    .clock
                    .map_or_else(SharedClock::real, SharedClock::Virtual),
            }),
        })
    }
}
