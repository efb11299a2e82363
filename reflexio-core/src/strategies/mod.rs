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
//! use reflexio::ErrorClass;
//! use reflexio::strategies::{equal_jitter, BackoffContext, Strategy};
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
/// use reflexio::{strategies::BackoffContext, ErrorClass};
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
    /// call, before any `retry_after` raised it; `None` the first time. A policy remembers it to
    /// the nanosecond up to `u64::MAX - 1` ns (about 584 years), and longer delays as that.
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
/// use reflexio::{strategies::{BackoffContext, Strategy}, ErrorClass};
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

    /// Whether [`delay`](Self::delay) reads `u`. A policy draws no random number for a
    /// strategy that says `false`, and passes it `u = 0.0`. The default is `true`; the
    /// strategies of this module without jitter (`no_delay`, `constant`, `exponential`) say
    /// `false`.
    ///
    /// A custom strategy without jitter can say so too:
    ///
    /// ```
    /// use std::time::Duration;
    /// use reflexio::strategies::{full_jitter, no_delay, BackoffContext, Strategy};
    ///
    /// /// 100 ms more per failure.
    /// struct Linear;
    ///
    /// impl Strategy for Linear {
    ///     fn delay(&self, ctx: &BackoffContext, _u: f64) -> Duration {
    ///         Duration::from_millis(100).saturating_mul(ctx.attempt)
    ///     }
    ///     fn uses_random(&self) -> bool {
    ///         false
    ///     }
    /// }
    ///
    /// assert!(!Linear.uses_random());
    /// assert!(!no_delay().uses_random());
    /// assert!(full_jitter().uses_random());
    /// ```
    fn uses_random(&self) -> bool {
        true
    }

    /// The delay, when it is the same for every context (and, for a strategy that does not
    /// read `u`, every `u`): a policy then takes it as it is, without calling
    /// [`delay`](Self::delay) at each retry, for a strategy whose
    /// [`uses_random`](Self::uses_random) is `false`. The default is `None`; `no_delay` and
    /// `constant` say their delay. A strategy that says `Some(d)` must return `d` from every
    /// call of `delay`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use reflexio::strategies::{constant, exponential, no_delay, Strategy};
    ///
    /// assert_eq!(no_delay().constant_delay(), Some(Duration::ZERO));
    /// assert_eq!(constant(Duration::from_secs(1)).constant_delay(), Some(Duration::from_secs(1)));
    /// assert_eq!(exponential().constant_delay(), None);
    /// ```
    fn constant_delay(&self) -> Option<Duration> {
        None
    }

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

const NANOS_PER_SEC: u128 = 1_000_000_000;

// Delays are computed in whole nanoseconds, as `u128` (`Duration::as_nanos`): every `Duration`
// fits (`Duration::MAX` is about 1.8 × 10²⁸ ns), so growth, caps and jitter are exact integer
// arithmetic that saturates, with `f64` used only to scale a span by `u` (or by a non-integer
// factor).

/// 2⁶⁴, where `f64` conversions switch between a `u128`'s two halves.
const TWO_POW_64: f64 = 18_446_744_073_709_551_616.0;

/// The `Duration` of `n` nanoseconds (`n` never exceeds a `Duration`'s range here; saturates if
/// it did). The common case, under 584 years, is one `u64` conversion.
#[inline]
fn from_nanos(n: u128) -> Duration {
    match u64::try_from(n) {
        Ok(n) => Duration::from_nanos(n),
        Err(_) => u64::try_from(n / NANOS_PER_SEC).map_or(Duration::MAX, |secs| {
            #[allow(clippy::cast_possible_truncation, reason = "a remainder below 10⁹")]
            Duration::new(secs, (n % NANOS_PER_SEC) as u32)
        }),
    }
}

/// `x` as `f64`, from its two 64-bit halves: `u64` conversions are single instructions, where
/// a `u128` one is a library call, slower than the rest of a delay's arithmetic. Exact below 2⁶⁴ ns
/// (584 years); above, within an ulp.
#[allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    reason = "f64 scaling is approximate by design; the halves are taken on purpose"
)]
#[inline]
fn to_f64(x: u128) -> f64 {
    (x >> 64) as u64 as f64 * TWO_POW_64 + x as u64 as f64
}

/// A non-negative `f64` as whole nanoseconds, saturating; `NaN` and negatives give zero.
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "`as` from f64 saturates and maps NaN to zero, which is what is wanted"
)]
#[inline]
fn from_f64(x: f64) -> u128 {
    // Below 2⁶⁴, the `u64` conversion is exact and cheaper.
    if x < TWO_POW_64 {
        u128::from(x as u64)
    } else {
        x as u128
    }
}

/// `lo + (hi - lo) × u`, within `[lo, hi]` whatever `u` is (even outside `[0, 1)` or `NaN`):
/// `u = 0` gives exactly `lo`.
#[inline]
fn uniform(lo: u128, hi: u128, u: f64) -> u128 {
    if hi <= lo {
        return hi;
    }
    let span = hi - lo;
    // `from_f64` maps NaN and negatives to zero; `min` caps `u ≥ 1` (and any rounding up).
    lo + from_f64(to_f64(span) * u).min(span)
}

/// `min(max, base × factor^exponent)` in nanoseconds, saturating. A factor of 2 is a shift,
/// exact for every exponent; 1.5 (token backoff) reads a table of its powers; other factors
/// use `powi` (a few multiplications).
#[inline]
fn exponential_cap(base: u128, factor: f64, exponent: u32, max: u128) -> u128 {
    if base == 0 {
        return 0;
    }
    #[allow(
        clippy::float_cmp,
        reason = "2.0 and 1.5 are exact; other factors take `powi`"
    )]
    let growth = if factor == 2.0 {
        return if exponent < 128 && base <= max >> exponent {
            base << exponent
        } else {
            max
        };
    } else if factor == 1.5
        && let Some(&power) = POWERS_OF_1_5.get(exponent as usize)
    {
        power
    } else {
        match i32::try_from(exponent) {
            Ok(n) => factor.powi(n),
            Err(_) => factor.powf(f64::from(exponent)),
        }
    };
    let grown = to_f64(base) * growth;
    if grown >= to_f64(max) {
        max
    } else {
        from_f64(grown).min(max)
    }
}

/// `1.5ⁿ` for `n < 192`: beyond, even a 1 ns base exceeds every `Duration` (`1.5¹⁹² > 2⁹⁴`).
static POWERS_OF_1_5: [f64; 192] = {
    let mut table = [1.0; 192];
    let mut n = 1;
    while n < table.len() {
        table[n] = table[n - 1] * 1.5;
        n += 1;
    }
    table
};

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
