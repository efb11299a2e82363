//! The jittered strategies: decorrelated, equal, token and full jitter.

use core::fmt;
use core::time::Duration;

use super::{BackoffContext, Strategy, exponential_cap, fmt_duration, from_nanos, uniform};

const DEFAULT_BASE: Duration = Duration::from_millis(250);
const DEFAULT_MAX: Duration = Duration::from_secs(30);
const TOKEN_MAX: Duration = Duration::from_secs(20);

/// Declares a strategy type with `base` and `max` and its `const fn` setters.
macro_rules! base_max_strategy {
    ($(#[$doc:meta])* $name:ident, $ctor:ident, $label:literal, max = $max:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq)]
        pub struct $name {
            /// The base and the max, in nanoseconds: the unit every delay is computed in, so
            /// a delay does not convert them first.
            base: u128,
            max: u128,
        }

        #[doc = concat!("A [`", stringify!($name), "`] with base 250 ms and max ",
                        stringify!($max), "; see its docs for the formula.")]
        #[must_use]
        pub const fn $ctor() -> $name {
            $name { base: DEFAULT_BASE.as_nanos(), max: $max.as_nanos() }
        }

        impl $name {
            /// Sets the base delay, the scale of every delay.
            #[must_use]
            pub const fn base(mut self, base: Duration) -> Self {
                self.base = base.as_nanos();
                self
            }

            /// Sets the largest delay this strategy ever returns.
            #[must_use]
            pub const fn max(mut self, max: Duration) -> Self {
                self.max = max.as_nanos();
                self
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("base", &from_nanos(self.base))
                    .field("max", &from_nanos(self.max))
                    .finish()
            }
        }

        impl Default for $name {
            fn default() -> Self {
                $ctor()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                Strategy::describe(self, f)
            }
        }

        impl $name {
            /// The base and the max, for a configuration (`crate::config`) to write.
            #[cfg(feature = "serde")]
            pub(crate) fn base_and_max(&self) -> (Duration, Duration) {
                (from_nanos(self.base), from_nanos(self.max))
            }

            fn describe_base_max(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!($label, "(base "))?;
                fmt_duration(from_nanos(self.base), f)?;
                f.write_str(", max ")?;
                fmt_duration(from_nanos(self.max), f)?;
                f.write_str(")")
            }
        }
    };
}

base_max_strategy!(
    /// Decorrelated jitter (AWS Architecture Blog, "Exponential Backoff And Jitter"):
    /// `min(max, uniform(base, max(base, 3 × prev)))`, with `prev = base` before the first retry.
    ///
    /// Never below `base` (unless `max < base`, then always `max`): the Python original can go
    /// below `base` when `3 × prev < base`; this one does not.
    ///
    /// ```
    /// use std::time::Duration;
    /// use reflexio::{ErrorClass, strategies::{decorrelated_jitter, BackoffContext, Strategy}};
    ///
    /// let s = decorrelated_jitter();
    /// let first = BackoffContext::new(1, ErrorClass::Transient);
    /// assert_eq!(s.delay(&first, 0.0), Duration::from_millis(250));
    /// assert_eq!(s.delay(&first, 0.5), Duration::from_millis(500)); // uniform(250 ms, 750 ms)
    /// let next = first.with_prev_delay(Duration::from_millis(500));
    /// assert_eq!(s.delay(&next, 0.5), Duration::from_millis(875)); // uniform(250 ms, 1.5 s)
    /// ```
    DecorrelatedJitter, decorrelated_jitter, "decorrelated_jitter", max = DEFAULT_MAX
);

impl Strategy for DecorrelatedJitter {
    fn delay(&self, ctx: &BackoffContext, u: f64) -> Duration {
        let base = self.base;
        let prev = ctx.prev_delay.map_or(base, |d| d.as_nanos());
        // A `Duration` is under 2⁹⁴ ns, so `3 × prev` cannot overflow a `u128`.
        let upper = (prev * 3).max(base);
        from_nanos(uniform(base, upper, u).min(self.max))
    }

    fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.describe_base_max(f)
    }
}

base_max_strategy!(
    /// Equal jitter: `cap = min(max, base × 2^attempt)`, delay uniform in `[cap/2, cap]`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use reflexio::{ErrorClass, strategies::{equal_jitter, BackoffContext, Strategy}};
    ///
    /// let ctx = BackoffContext::new(1, ErrorClass::Transient); // cap = 500 ms
    /// assert_eq!(equal_jitter().delay(&ctx, 0.5), Duration::from_millis(375));
    /// ```
    EqualJitter, equal_jitter, "equal_jitter", max = DEFAULT_MAX
);

impl Strategy for EqualJitter {
    fn delay(&self, ctx: &BackoffContext, u: f64) -> Duration {
        let cap = exponential_cap(self.base, 2.0, ctx.attempt, self.max);
        from_nanos(uniform(cap / 2, cap, u))
    }

    fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.describe_base_max(f)
    }
}

base_max_strategy!(
    /// Token backoff: `cap = min(max, base × 1.5^attempt)`, delay uniform in `[cap/2, cap]`.
    /// Grows slowly; suited to rate limits. Its default max is 20 s.
    ///
    /// ```
    /// use std::time::Duration;
    /// use reflexio::{ErrorClass, strategies::{token_backoff, BackoffContext, Strategy}};
    ///
    /// let ctx = BackoffContext::new(2, ErrorClass::RateLimit); // cap = 562.5 ms
    /// assert_eq!(token_backoff().delay(&ctx, 1.0), Duration::from_micros(562_500));
    /// ```
    TokenBackoff, token_backoff, "token_backoff", max = TOKEN_MAX
);

impl Strategy for TokenBackoff {
    fn delay(&self, ctx: &BackoffContext, u: f64) -> Duration {
        let cap = exponential_cap(self.base, 1.5, ctx.attempt, self.max);
        from_nanos(uniform(cap / 2, cap, u))
    }

    fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.describe_base_max(f)
    }
}

base_max_strategy!(
    /// Full jitter: `uniform(0, min(max, base × 2^attempt))`. Does the least total work when
    /// many clients contend.
    ///
    /// ```
    /// use std::time::Duration;
    /// use reflexio::{ErrorClass, strategies::{full_jitter, BackoffContext, Strategy}};
    ///
    /// let ctx = BackoffContext::new(2, ErrorClass::Transient); // cap = 1 s
    /// assert_eq!(full_jitter().delay(&ctx, 0.0), Duration::ZERO);
    /// assert_eq!(full_jitter().delay(&ctx, 0.25), Duration::from_millis(250));
    /// ```
    FullJitter, full_jitter, "full_jitter", max = DEFAULT_MAX
);

impl Strategy for FullJitter {
    fn delay(&self, ctx: &BackoffContext, u: f64) -> Duration {
        let cap = exponential_cap(self.base, 2.0, ctx.attempt, self.max);
        from_nanos(uniform(0, cap, u))
    }

    fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.describe_base_max(f)
    }
}
