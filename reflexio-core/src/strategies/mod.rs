//! Backoff strategies: how long to wait before the next attempt.
//!
//! A [`Strategy`] is a pure function of a [`BackoffContext`] and one uniform random number
//! `u` in `[0, 1)` supplied by the policy: the same context and `u` always give the same delay.
//! So every strategy has a deterministic envelope, `u = 0` giving its lower bound and `u → 1`
//! its upper bound, and tests need no randomness.
//!
//! | constructor | delay after attempt `n` (`b` = base, `m` = max) | defaults |
//! |---|---|---|
//! | [`decorrelated_jitter()`] | `min(m, uniform(b, max(b, 3 × prev)))`, `prev = b` at first | 250 ms, 30 s |
//! | [`equal_jitter()`] | `cap = min(m, b × 2ⁿ)`, `uniform(cap/2, cap)` | 250 ms, 30 s |
//! | [`token_backoff()`] | `cap = min(m, b × 1.5ⁿ)`, `uniform(cap/2, cap)` | 250 ms, 20 s |
//! | [`full_jitter()`] | `uniform(0, min(m, b × 2ⁿ))` | 250 ms, 30 s |
//! | [`exponential()`] | `min(m, b × factorⁿ⁻¹)`, no jitter | 250 ms, 30 s, factor 2 |
//! | [`constant(d)`](constant()) | `d` | |
//! | [`no_delay()`] | zero | |
//!
//! Arithmetic saturates: any attempt number up to `u32::MAX` and any durations give a delay,
//! never a panic, and never one above `max`.
//!
//! Which to use: decorrelated jitter (the default) spreads retries of many clients well and grows
//! gently; full jitter does the least total work under contention; equal jitter guarantees at
//! least half the exponential delay; token backoff grows slowly, for rate limits; exponential and
//! constant are predictable, for a single client.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use reflexio_core::ErrorClass;
//! use reflexio_core::strategies::{equal_jitter, BackoffContext, Strategy};
//!
//! let s = equal_jitter().base(Duration::from_millis(100)).max(Duration::from_secs(1));
//! let ctx = BackoffContext::new(3, ErrorClass::Transient); // cap = 100 ms × 2³ = 800 ms
//! assert_eq!(s.delay(&ctx, 0.0), Duration::from_millis(400));
//! assert_eq!(s.delay(&ctx, 0.5), Duration::from_millis(600));
//! ```

use core::fmt;
use core::time::Duration;

use crate::class::ErrorClass;

mod fixed;
mod jitter;

pub use fixed::{Constant, Exponential, NoDelay, constant, exponential, no_delay};
pub use jitter::{
    DecorrelatedJitter, EqualJitter, FullJitter, TokenBackoff, decorrelated_jitter, equal_jitter,
    full_jitter, token_backoff,
};

/// What a strategy knows when it computes a delay.
///
/// ```
/// use std::time::Duration;
/// use reflexio_core::{strategies::BackoffContext, ErrorClass};
///
/// let ctx = BackoffContext::new(2, ErrorClass::ServerError).with_prev_delay(Duration::from_millis(300));
/// assert_eq!(ctx.attempt, 2);
/// assert_eq!(ctx.prev_delay, Some(Duration::from_millis(300)));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackoffContext {
    /// The 1-based number of the attempt that just failed (1 before the first retry).
    pub attempt: u32,
    /// The class of that failure.
    pub class: ErrorClass,
    /// The delay this strategy computed the last time it was asked for this class in the same
    /// call, before any `retry_after` raised it; `None` the first time.
    pub prev_delay: Option<Duration>,
    /// The delay the server asked for, if any. The policy waits at least this long whatever the
    /// strategy says; a strategy may use it to do more.
    pub retry_after: Option<Duration>,
}

impl BackoffContext {
    /// A context for the failure of attempt `attempt`, with no history and no server delay.
    #[must_use]
    pub const fn new(attempt: u32, class: ErrorClass) -> Self {
        BackoffContext {
            attempt,
            class,
            prev_delay: None,
            retry_after: None,
        }
    }

    /// Sets the previous delay.
    #[must_use]
    pub const fn with_prev_delay(mut self, prev_delay: Duration) -> Self {
        self.prev_delay = Some(prev_delay);
        self
    }

    /// Sets the server-suggested delay.
    #[must_use]
    pub const fn with_retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = Some(retry_after);
        self
    }
}

/// A backoff strategy: a pure function from a [`BackoffContext`] and a uniform random number `u`
/// in `[0, 1)` to the delay before the next attempt.
///
/// Implemented by every constructor of this module and by closures
/// `Fn(&BackoffContext, f64) -> Duration`.
///
/// # Examples
///
/// A custom strategy as a closure, here linear backoff:
///
/// ```
/// use std::time::Duration;
/// use reflexio_core::{strategies::{BackoffContext, Strategy}, ErrorClass};
///
/// let linear = |ctx: &BackoffContext, _u: f64| Duration::from_millis(100).saturating_mul(ctx.attempt);
/// assert_eq!(linear.delay(&BackoffContext::new(3, ErrorClass::Transient), 0.7), Duration::from_millis(300));
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a backoff strategy",
    label = "expected a strategy",
    note = "use a constructor of `reflexio::strategies` (e.g. `decorrelated_jitter()`, \
            `constant(Duration::from_secs(1))`), or a closure `|ctx: &BackoffContext, u: f64| -> Duration`"
)]
pub trait Strategy: Send + Sync {
    /// The delay before the next attempt. `u` is uniform in `[0, 1)`; the same inputs must give
    /// the same output.
    fn delay(&self, ctx: &BackoffContext, u: f64) -> Duration;

    /// Checks the strategy's parameters; `build()` reports an `Err` as a
    /// [`ConfigProblem::InvalidStrategy`](crate::ConfigProblem::InvalidStrategy).
    ///
    /// # Errors
    ///
    /// The reason the parameters cannot work. The default accepts everything.
    fn validate(&self) -> Result<(), String> {
        Ok(())
    }

    /// Writes a one-line description with the parameters, for `describe()` and `Display` of a
    /// policy.
    ///
    /// # Errors
    ///
    /// Only those of the formatter.
    fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("custom strategy")
    }
}

impl<F> Strategy for F
where
    F: Fn(&BackoffContext, f64) -> Duration + Send + Sync,
{
    fn delay(&self, ctx: &BackoffContext, u: f64) -> Duration {
        self(ctx, u)
    }
}

/// A duration in seconds, as `f64`.
fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// A non-negative number of seconds as a `Duration`, saturating: `NaN` and negatives give zero,
/// anything too large gives `Duration::MAX`.
fn from_secs_saturating(x: f64) -> Duration {
    Duration::try_from_secs_f64(x).unwrap_or(if x > 0.0 {
        Duration::MAX
    } else {
        Duration::ZERO
    })
}

/// `lo + (hi - lo) * u`, kept within `[lo, hi]` whatever `u` is (even outside `[0, 1)` or `NaN`).
fn uniform(lo: Duration, hi: Duration, u: f64) -> Duration {
    if hi <= lo {
        return hi;
    }
    let u = if u.is_nan() { 0.0 } else { u.clamp(0.0, 1.0) };
    // Offsetting from `lo` keeps `u = 0` exactly at `lo`, whatever the magnitudes.
    lo.saturating_add(from_secs_saturating(secs(hi.saturating_sub(lo)) * u))
        .min(hi)
}

/// `min(max, base × factor^exponent)`, saturating.
fn exponential_cap(base: Duration, factor: f64, exponent: u32, max: Duration) -> Duration {
    if base.is_zero() {
        return Duration::ZERO;
    }
    let grown = secs(base) * factor.powf(f64::from(exponent));
    from_secs_saturating(grown).min(max)
}

/// Writes a duration compactly: `250ms`, `5s`, `1.5s`, `2m`.
pub(crate) fn fmt_duration(d: Duration, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    if d == Duration::MAX {
        f.write_str("unbounded")
    } else if d.subsec_nanos() == 0 && d.as_secs() >= 60 && d.as_secs().is_multiple_of(60) {
        write!(f, "{}m", d.as_secs() / 60)
    } else if d.subsec_nanos() == 0 {
        write!(f, "{}s", d.as_secs())
    } else if d < Duration::from_secs(1) && d.subsec_nanos().is_multiple_of(1_000_000) {
        write!(f, "{}ms", d.subsec_millis())
    } else {
        write!(f, "{d:?}")
    }
}

#[cfg(test)]
mod tests;
