//! The strategies without jitter: exponential, constant and no delay.

use core::fmt;
use core::time::Duration;

use super::{BackoffContext, Strategy, exponential_cap, fmt_duration, from_nanos};

/// Exponential backoff without jitter: `min(max, base × factor^(attempt - 1))`, so the first
/// retry waits `base`. Predictable, but many clients failing together retry together: prefer a
/// jittered strategy for shared dependencies.
///
/// # Default
///
/// Base 250 ms, max 30 s, factor 2.
///
/// ```
/// use std::time::Duration;
/// use reflexio::{ErrorClass, strategies::{exponential, BackoffContext, Strategy}};
///
/// let s = exponential().base(Duration::from_millis(100)).factor(3.0);
/// let delays: Vec<_> = (1..=3).map(|n| s.delay(&BackoffContext::new(n, ErrorClass::Transient), 0.9)).collect();
/// assert_eq!(delays, [Duration::from_millis(100), Duration::from_millis(300), Duration::from_millis(900)]);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Exponential {
    base: Duration,
    max: Duration,
    factor: f64,
}

/// An [`Exponential`] strategy with base 250 ms, max 30 s and factor 2.
#[must_use]
pub const fn exponential() -> Exponential {
    Exponential {
        base: Duration::from_millis(250),
        max: Duration::from_secs(30),
        factor: 2.0,
    }
}

impl Exponential {
    /// Sets the first delay.
    #[must_use]
    pub const fn base(mut self, base: Duration) -> Self {
        self.base = base;
        self
    }

    /// Sets the largest delay.
    #[must_use]
    pub const fn max(mut self, max: Duration) -> Self {
        self.max = max;
        self
    }

    /// Sets the growth factor between consecutive delays. It must be finite and at least 1:
    /// `build()` reports anything else.
    #[must_use]
    pub const fn factor(mut self, factor: f64) -> Self {
        self.factor = factor;
        self
    }
}

#[cfg(feature = "serde")]
impl Exponential {
    /// The base, the max and the factor, for a configuration (`crate::config`) to write.
    pub(crate) fn parts(&self) -> (Duration, Duration, f64) {
        (self.base, self.max, self.factor)
    }
}

impl Default for Exponential {
    fn default() -> Self {
        exponential()
    }
}

impl Strategy for Exponential {
    fn uses_random(&self) -> bool {
        false
    }

    fn delay(&self, ctx: &BackoffContext, _u: f64) -> Duration {
        let (base, max) = (self.base.as_nanos(), self.max.as_nanos());
        let delay = exponential_cap(base, self.factor, ctx.attempt.saturating_sub(1), max);
        // With a valid factor the delay never shrinks below the base; the f64 arithmetic of a
        // factor other than 2 can round a huge base (beyond 2^53 ns) down by a few nanoseconds.
        from_nanos(if self.factor >= 1.0 {
            delay.max(base.min(max))
        } else {
            delay
        })
    }

    fn validate(&self) -> Result<(), String> {
        if self.factor.is_finite() && self.factor >= 1.0 {
            Ok(())
        } else {
            Err(format!(
                "the exponential factor must be finite and at least 1 (got {})",
                self.factor
            ))
        }
    }

    fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("exponential(base ")?;
        fmt_duration(self.base, f)?;
        write!(f, ", factor {}, max ", self.factor)?;
        fmt_duration(self.max, f)?;
        f.write_str(")")
    }
}

/// The same delay every time (capped at `max`, unbounded by default).
///
/// ```
/// use std::time::Duration;
/// use reflexio::{ErrorClass, strategies::{constant, BackoffContext, Strategy}};
///
/// let s = constant(Duration::from_secs(1));
/// assert_eq!(s.delay(&BackoffContext::new(u32::MAX, ErrorClass::Transient), 0.3), Duration::from_secs(1));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Constant {
    base: Duration,
    max: Duration,
}

/// A [`Constant`] strategy waiting `delay` every time.
#[must_use]
pub const fn constant(delay: Duration) -> Constant {
    Constant {
        base: delay,
        max: Duration::MAX,
    }
}

impl Constant {
    /// Sets the delay.
    #[must_use]
    pub const fn base(mut self, base: Duration) -> Self {
        self.base = base;
        self
    }

    /// Sets a cap on the delay.
    #[must_use]
    pub const fn max(mut self, max: Duration) -> Self {
        self.max = max;
        self
    }
}

#[cfg(feature = "serde")]
impl Constant {
    /// The delay (the base, capped by the max), for a configuration (`crate::config`) to write.
    pub(crate) fn fixed_delay(&self) -> Duration {
        self.base.min(self.max)
    }
}

impl Strategy for Constant {
    fn uses_random(&self) -> bool {
        false
    }

    fn delay(&self, _ctx: &BackoffContext, _u: f64) -> Duration {
        self.base.min(self.max)
    }

    fn constant_delay(&self) -> Option<Duration> {
        Some(self.base.min(self.max))
    }

    fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("constant(")?;
        fmt_duration(self.base.min(self.max), f)?;
        f.write_str(")")
    }
}

/// Retry at once. Useful in tests, and for conflicts that a re-read resolves.
///
/// ```
/// use std::time::Duration;
/// use reflexio::{ErrorClass, strategies::{no_delay, BackoffContext, Strategy}};
/// assert_eq!(no_delay().delay(&BackoffContext::new(7, ErrorClass::Concurrency), 0.9), Duration::ZERO);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NoDelay;

/// A [`NoDelay`] strategy.
#[must_use]
pub const fn no_delay() -> NoDelay {
    NoDelay
}

impl Strategy for NoDelay {
    fn uses_random(&self) -> bool {
        false
    }

    fn delay(&self, _ctx: &BackoffContext, _u: f64) -> Duration {
        Duration::ZERO
    }

    fn constant_delay(&self) -> Option<Duration> {
        Some(Duration::ZERO)
    }

    fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("no_delay")
    }
}
