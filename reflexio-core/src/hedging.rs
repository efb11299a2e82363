//! The hedging setting, [`Hedging`]: when a hedged call starts another attempt, and the
//! latency histogram a percentile delay is learned from. The hedged call itself is in
//! `hedge.rs`.

use core::fmt::{self, Write as _};
use core::time::Duration;
use std::sync::{Arc, OnceLock};

use crate::errors::{ConfigError, ConfigProblem};
use crate::strategies::fmt_duration;
use crate::sync::{AtomicU64, Mutex, Ordering, lock};
use crate::time::{Stamp, TimeSource};

/// How a policy hedges its idempotent calls: when to start another attempt while the
/// attempts in flight are still running, and how many may run at once.
///
/// Made by [`Hedging::after`] (a fixed delay) or [`Hedging::at_percentile`] (a delay learned
/// online from the latencies of the policy's successful attempts), given to the async policy
/// with [`hedging`](crate::PolicyBuilder::hedging), and used by
/// [`call_idempotent`](crate::AsyncRetryPolicy::call_idempotent) and
/// [`execute_idempotent`](crate::AsyncRetryPolicy::execute_idempotent) only. A cheap cloneable
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
    pub(crate) fn delay(&self, time: &TimeSource) -> Option<Duration> {
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
    pub(crate) fn record(&self, time: &TimeSource, latency: Duration) {
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
/// once per period, a clear under a lock); no allocation after creation. A writer stalled for
/// two whole periods between its check of the period and its adds counts one sample in the
/// newer period: the window is an estimate, and that sample one latency among many.
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

    /// Total samples of the periods `quantile` at `now` reads.
    fn live_total(w: &LatencyWindow, now: u64) -> u64 {
        let number = w.number(now);
        w.periods
            .iter()
            .filter(|p| {
                let n = p.number.load(Ordering::Acquire);
                n == number || n + 1 == number
            })
            .map(|p| p.total.load(Ordering::Relaxed))
            .sum()
    }

    #[test]
    fn threads_recording_across_a_rotation_lose_no_sample() {
        let w = LatencyWindow::new(Duration::from_secs(10));
        let s = 1_000_000_000;
        std::thread::scope(|scope| {
            for t in 0..8_u64 {
                let w = &w;
                scope.spawn(move || {
                    for i in 0..1000_u64 {
                        // Half in the first period, half in the second, interleaved: the
                        // second's first writers rotate its slot while others still write
                        // the first.
                        let now = if (i + t) % 2 == 0 { s } else { 11 * s };
                        w.record(now, Duration::from_micros(100 + i));
                    }
                });
            }
        });
        assert_eq!(live_total(&w, 11 * s), 8000);
        assert!(w.quantile(11 * s, 0.5, 8000).is_some());
    }

    #[test]
    fn a_clock_jump_past_any_wrap_forgets_the_old_samples_exactly() {
        let w = LatencyWindow::new(Duration::from_secs(10));
        w.record(0, Duration::from_millis(5));
        // Past 32-bit nanoseconds, past 2^32 seconds, and to the end of `u64` nanoseconds: each
        // jump lands two periods or more after the last reading.
        for now in [1_u64 << 35, (1 << 32) * 1_000_000_000, u64::MAX] {
            assert_eq!(
                w.quantile(now, 0.5, 1),
                None,
                "at {now}: old samples are gone"
            );
            w.record(now, Duration::from_millis(7));
            w.record(now, Duration::from_millis(7));
            let p = w.quantile(now, 0.5, 1).unwrap();
            assert!(p >= Duration::from_millis(7), "{p:?}");
            assert_eq!(live_total(&w, now), 2, "at {now}");
        }
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
