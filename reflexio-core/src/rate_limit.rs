//! The AWS SDKs' *adaptive* retry mode: a client-side token bucket that every attempt waits on,
//! its fill rate cut (CUBIC) when the service throttles and grown back when it stops.
//!
//! The arithmetic is that of the two reference implementations, read from their sources:
//! smithy-rs `rust-runtime/aws-smithy-runtime/src/client/retries/client_rate_limiter.rs`
//! (`ClientRateLimiter`, the Rust SDK, retry behavior 2.1; snapshot 56ee88c5, 2026-08) and
//! botocore `botocore/retries/{adaptive,bucket,throttling}.py` (`ClientRateLimiter`,
//! `TokenBucket`, `CubicCalculator`, `RateClocker`; snapshot 0e6e2404, 2026-08). Both agree
//! on every constant and step; where they differ (the starting measured rate), this follows
//! smithy-rs's builder defaults, which its test vectors (ported from aws-sdk-go-v2) use.

use core::fmt;
use core::time::Duration;
use std::sync::Arc;

use crate::class::ErrorClass;
use crate::errors::{ConfigError, ConfigProblem};
use crate::sync::{Mutex, lock};
use crate::time::{SharedClock, VirtualClock};

/// How much of the rate is kept after a throttle: `rate * BETA` (AWS `BETA`).
const BETA: f64 = 0.7;
/// How fast the rate grows back after a throttle (AWS `SCALE_CONSTANT`, CUBIC's `C`).
const SCALE_CONSTANT: f64 = 0.4;
/// The weight of the newest time bucket in the measured send rate (AWS `SMOOTH`).
const SMOOTHING: f64 = 0.8;
/// The lowest fill rate, in tokens per second (AWS `MIN_FILL_RATE`).
const MIN_FILL_RATE: f64 = 0.5;
/// The lowest capacity of the bucket, in tokens (AWS `MIN_CAPACITY`): one attempt's token.
const MIN_CAPACITY: f64 = 1.0;
/// The send rate is measured over buckets of half a second (AWS `_TIME_BUCKET_RANGE`).
const TIME_BUCKET: f64 = 0.5;
/// The most a new rate may exceed the measured send rate by (botocore
/// `_MAX_RATE_ADJUST_SCALE`): a client never allows itself more than twice what it sends.
const MAX_RATE_ADJUST_SCALE: f64 = 2.0;
/// The largest rate a builder accepts, in tokens per second.
const MAX_RATE: f64 = 1e9;

/// The AWS SDKs' adaptive retry mode: a client-side rate limiter shared by the calls to one
/// service, a cheap cloneable handle (one `Arc`).
///
/// Give it to policies with `.rate_limiter(limiter.clone())`: every attempt, the first one
/// included, then takes a token from its bucket, and waits (through the policy's sleeper, so a
/// [`VirtualClock`] drives it in tests) while the bucket is empty. The bucket is off until the
/// service first throttles (a failure classified [`ErrorClass::RateLimit`]); from then on:
///
/// - **Every response is measured.** The limiter counts responses in half-second buckets and
///   smooths their rate (`measured = 0.8 × bucket's rate + 0.2 × measured`).
/// - **A throttle cuts the rate (CUBIC).** The rate sent at (the lower of the measured rate and
///   the current fill rate) becomes `w_max`, the time is remembered, and the fill rate becomes
///   `0.7 × w_max` (`BETA`).
/// - **Anything else grows it back.** The fill rate follows CUBIC's curve,
///   `0.4 × (t - t_throttle - K)³ + w_max` with `K = ∛(w_max × (1 - 0.7) / 0.4)`
///   (`SCALE_CONSTANT` 0.4): a fast climb back to `w_max`, a plateau around it, then a probe
///   above it.
/// - **Bounds.** A new rate is at most twice the measured rate; the fill rate is at least
///   0.5 tokens/s and the bucket holds `max(rate, 1)` tokens (one second's worth).
/// - **A server's `Retry-After`** on a throttled response holds every token until the time it
///   names (bounded by the policy's
///   [`max_server_delay`](crate::PolicyBuilder::max_server_delay)): the whole client backs off,
///   not only the call that was told.
///
/// One token per attempt is retry behavior 2.1's cost (smithy-rs and botocore, each attempt
/// acquires a send token before it is sent); the retry quota of the standard mode is
/// [`RetryBudget::aws_standard`](crate::RetryBudget::aws_standard), which AWS's adaptive mode
/// uses too: give a policy both to get the AWS SDKs' adaptive mode whole.
///
/// Asking for a token never holds anything across a wait: [`try_acquire`](Self::try_acquire)
/// either takes a token (go now) or says how long to wait before asking again, so a call
/// dropped while it waits holds nothing, and an attempt that panics has spent its own token
/// only. The state is a few numbers behind a mutex, held for a clock reading and a few
/// arithmetic operations (never while user code runs; a poisoned lock is recovered).
///
/// # Limits
///
/// - Waiters are not queued: calls that wait together wake together and the first to ask again
///   takes the token (as in both AWS implementations). Over a long wait the order is not
///   first-come first-served.
/// - The limiter keeps its own clock (the real one, or the [`VirtualClock`] given to its
///   builder); a policy given a limiter must use the same clock (`build` checks it). Under
///   tokio's paused time, give both a `VirtualClock`: a limiter on the real clock would see
///   no time pass while the policy sleeps.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use reflexio::{testing::VirtualClock, AdaptiveRateLimiter, ErrorClass};
///
/// let clock = VirtualClock::new();
/// let limiter = AdaptiveRateLimiter::builder().clock(clock.clone()).build().unwrap();
/// assert_eq!(limiter.try_acquire(), Ok(())); // off until the first throttle
///
/// limiter.record_outcome(Some(ErrorClass::RateLimit)); // a 429: on, at the lowest rate
/// assert_eq!(limiter.fill_rate(), Some(0.5));
/// assert_eq!(limiter.try_acquire(), Err(Duration::from_secs(2))); // one token in 2 s
/// clock.advance(Duration::from_secs(2));
/// assert_eq!(limiter.try_acquire(), Ok(()));
/// ```
#[derive(Clone)]
pub struct AdaptiveRateLimiter {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    params: Params,
    clock: SharedClock,
    describe: String,
}

/// The constants of the update, as built.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Params {
    beta: f64,
    scale_constant: f64,
    smoothing: f64,
    min_fill_rate: f64,
    min_capacity: f64,
}

impl Params {
    const AWS: Params = Params {
        beta: BETA,
        scale_constant: SCALE_CONSTANT,
        smoothing: SMOOTHING,
        min_fill_rate: MIN_FILL_RATE,
        min_capacity: MIN_CAPACITY,
    };
}

/// The limiter's state; times in seconds on the limiter's clock. The names follow smithy-rs's
/// `Inner`.
#[derive(Clone, Debug, PartialEq)]
struct State {
    /// Off until the first throttle: until then every attempt goes at once.
    enabled: bool,
    /// Tokens per second.
    fill_rate: f64,
    max_capacity: f64,
    /// Tokens in the bucket, never negative.
    capacity: f64,
    /// When the bucket was last refilled.
    last_refill: Option<f64>,
    /// The smoothed rate of responses.
    measured_rate: f64,
    /// The start of the current half-second bucket, and the responses counted in it.
    last_bucket: f64,
    count: u64,
    /// CUBIC's `w_max`: the rate when the service last throttled, and when that was.
    last_max_rate: f64,
    last_throttle: f64,
    /// No token before this time (nanoseconds on the limiter's clock): a server's `Retry-After`.
    hold_until_nanos: u64,
}

impl State {
    /// The state of a limiter made at `now`, with the lowest rate.
    fn new(params: &Params, now: f64) -> Self {
        State {
            enabled: false,
            fill_rate: params.min_fill_rate,
            max_capacity: params.min_capacity,
            capacity: 0.0,
            last_refill: None,
            measured_rate: 0.0,
            last_bucket: (now / TIME_BUCKET).floor() * TIME_BUCKET,
            count: 0,
            last_max_rate: 0.0,
            last_throttle: now,
            hold_until_nanos: 0,
        }
    }

    /// Adds the tokens earned since the last refill, up to the capacity. Time never goes
    /// back: the clock is read with the state's lock held.
    fn refill(&mut self, now: f64) {
        if let Some(last) = self.last_refill {
            let earned = (now - last).max(0.0) * self.fill_rate;
            self.capacity = self.max_capacity.min(self.capacity + earned);
        }
        self.last_refill = Some(now);
    }

    /// One token, or how long until there is one. Like smithy-rs, a shortfall that rounds to
    /// no time at all (below half a nanosecond) is granted, clamped at zero: a zero wait would
    /// make the caller ask again at the same instant, forever.
    fn acquire(&mut self, now: f64) -> Result<(), Duration> {
        if !self.enabled {
            return Ok(());
        }
        self.refill(now);
        if self.capacity >= 1.0 {
            self.capacity -= 1.0;
            return Ok(());
        }
        let wait = (1.0 - self.capacity) / self.fill_rate;
        let nanos = (wait * 1e9).round();
        if nanos < 1.0 {
            self.capacity = 0.0;
            return Ok(());
        }
        // `as` saturates: a wait beyond 584 years (a rate of 0.5/s never needs one) is capped.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        Err(Duration::from_nanos(nanos as u64))
    }

    /// Counts one response in the measured send rate (smithy-rs
    /// `update_tokens_retrieved_per_second`, botocore `RateClocker.record`).
    fn measure(&mut self, params: &Params, now: f64) {
        let bucket = (now / TIME_BUCKET).floor() * TIME_BUCKET;
        self.count = self.count.saturating_add(1);
        if bucket > self.last_bucket {
            #[allow(clippy::cast_precision_loss)] // a count of responses
            let rate = self.count as f64 / (bucket - self.last_bucket);
            self.measured_rate =
                rate * params.smoothing + self.measured_rate * (1.0 - params.smoothing);
            self.count = 0;
            self.last_bucket = bucket;
        }
    }

    /// CUBIC's `K`: the time after a throttle at which the curve is back at `w_max`.
    fn time_window(&self, params: &Params) -> f64 {
        (self.last_max_rate * (1.0 - params.beta) / params.scale_constant).cbrt()
    }

    /// The rate on CUBIC's curve at `now`, after the last throttle.
    fn cubic_success(&self, params: &Params, now: f64) -> f64 {
        let dt = now - self.last_throttle - self.time_window(params);
        params.scale_constant * dt.powi(3) + self.last_max_rate
    }

    /// Feeds one response at `now` (smithy-rs `update_rate_limiter`, botocore
    /// `on_receiving_response`).
    fn update(&mut self, params: &Params, now: f64, throttled: bool) {
        self.measure(params, now);
        let rate = if throttled {
            let sent_at = if self.enabled {
                self.measured_rate.min(self.fill_rate)
            } else {
                self.measured_rate
            };
            self.last_max_rate = sent_at;
            self.last_throttle = now;
            self.enabled = true;
            sent_at * params.beta
        } else {
            self.cubic_success(params, now)
        };
        let rate = rate.min(MAX_RATE_ADJUST_SCALE * self.measured_rate);
        // Tokens earned at the old rate are added before the rate changes.
        self.refill(now);
        self.fill_rate = rate.max(params.min_fill_rate);
        self.max_capacity = rate.max(params.min_capacity);
        self.capacity = self.capacity.min(self.max_capacity);
    }
}

/// Nanoseconds as seconds, the unit of the AWS formulas.
#[allow(clippy::cast_precision_loss)] // exact below 104 days, within a nanosecond's error after
fn seconds(nanos: u64) -> f64 {
    nanos as f64 / 1e9
}

impl AdaptiveRateLimiter {
    /// A limiter with the AWS SDKs' parameters, on the real clock.
    ///
    /// # Panics
    ///
    /// Never: the defaults are valid.
    #[must_use]
    pub fn new() -> Self {
        AdaptiveRateLimiter::builder()
            .build()
            .expect("the AWS parameters are valid")
    }

    /// A builder, to change the parameters or count time on a [`VirtualClock`].
    pub fn builder() -> AdaptiveRateLimiterBuilder {
        AdaptiveRateLimiterBuilder {
            params: Params::AWS,
            clock: None,
        }
    }

    fn state(&self) -> crate::sync::MutexGuard<'_, State> {
        // `lock` recovers a poisoned mutex: the state is consistent after every store, and
        // nothing that can panic runs while it is held.
        lock(&self.inner.state)
    }

    /// Asks for the token of one attempt: `Ok(())` took it (send now); `Err(wait)` took
    /// nothing: ask again after `wait`. Policies call this before every attempt.
    ///
    /// # Errors
    ///
    /// `Err(wait)` when the bucket is empty, or a server's `Retry-After` holds it.
    pub fn try_acquire(&self) -> Result<(), Duration> {
        // The clock is read with the lock held, here and below: read before, a thread that
        // waited for the lock would refill from a time before the last refill's, and count
        // the time between the two twice.
        let mut s = self.state();
        let now = self.inner.clock.now_nanos();
        if now < s.hold_until_nanos {
            return Err(Duration::from_nanos(s.hold_until_nanos - now));
        }
        s.acquire(seconds(now))
    }

    /// Feeds the outcome of one attempt: `None` for a success, else the failure's class. A
    /// `RateLimit` failure is a throttle (the rate is cut); anything else lets it grow back.
    /// Policies call this for you.
    pub fn record_outcome(&self, failure: Option<ErrorClass>) {
        let throttled = failure == Some(ErrorClass::RateLimit);
        let mut s = self.state();
        let now = seconds(self.inner.clock.now_nanos());
        s.update(&self.inner.params, now, throttled);
    }

    /// A server asked to wait `delay` (a `Retry-After` on a throttled response): no token is
    /// given before then, to any call. Policies call this for you, with the delay bounded by
    /// their `max_server_delay`.
    pub fn record_retry_after(&self, delay: Duration) {
        let mut s = self.state();
        let now = self.inner.clock.now_nanos();
        let until = now.saturating_add(crate::time::saturating_nanos(delay));
        s.hold_until_nanos = s.hold_until_nanos.max(until);
    }

    /// What a policy feeds after an attempt: the outcome, and for a throttled response the
    /// server's delay, if any, bounded by `bound` (the policy's `max_server_delay`).
    pub(crate) fn observe(
        &self,
        failure: Option<ErrorClass>,
        retry_after: Option<Duration>,
        bound: Duration,
    ) {
        self.record_outcome(failure);
        if failure == Some(ErrorClass::RateLimit)
            && let Some(delay) = retry_after
        {
            self.record_retry_after(delay.min(bound));
        }
    }

    /// Gives back the token of an attempt that never started (the circuit breaker rejected
    /// it after the limiter let it through).
    pub(crate) fn give_back(&self) {
        let mut s = self.state();
        if s.enabled {
            s.capacity = (s.capacity + 1.0).min(s.max_capacity);
        }
    }

    /// The fill rate in tokens (attempts) per second; `None` while the limiter is off (no
    /// throttle seen yet: attempts are not limited).
    #[must_use]
    pub fn fill_rate(&self) -> Option<f64> {
        let s = self.state();
        s.enabled.then_some(s.fill_rate)
    }

    /// The smoothed rate of responses per second, as the limiter measured it.
    #[must_use]
    pub fn measured_rate(&self) -> f64 {
        self.state().measured_rate
    }

    /// The tokens in the bucket now (`None` while the limiter is off).
    #[must_use]
    pub fn available(&self) -> Option<f64> {
        let mut s = self.state();
        if !s.enabled {
            return None;
        }
        s.refill(seconds(self.inner.clock.now_nanos()));
        Some(s.capacity)
    }

    /// Whether `policy_clock`, a policy's virtual clock (if it has one), is the limiter's
    /// clock: both virtual and the same, or both real.
    pub(crate) fn clock_matches(&self, policy_clock: Option<&VirtualClock>) -> bool {
        match (&self.inner.clock, policy_clock) {
            (SharedClock::Virtual(mine), Some(theirs)) => mine.same_as(theirs),
            (SharedClock::Virtual(_), None) | (_, Some(_)) => false,
            (_, None) => true,
        }
    }

    /// A one-line description with the parameters, for `describe()`.
    pub(crate) fn describe(&self) -> &str {
        &self.inner.describe
    }
}

impl Default for AdaptiveRateLimiter {
    fn default() -> Self {
        AdaptiveRateLimiter::new()
    }
}

impl fmt::Debug for AdaptiveRateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.state();
        f.debug_struct("AdaptiveRateLimiter")
            .field("enabled", &s.enabled)
            .field("fill_rate", &s.fill_rate)
            .field("capacity", &s.capacity)
            .field("measured_rate", &s.measured_rate)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for AdaptiveRateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// Builds an [`AdaptiveRateLimiter`], from [`AdaptiveRateLimiter::builder`].
///
/// # Default
///
/// The AWS SDKs' parameters: `beta` 0.7, `scale_constant` 0.4, `smoothing` 0.8,
/// `min_fill_rate` 0.5 tokens/s, `min_capacity` 1 token; the real clock.
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build()` is called"]
pub struct AdaptiveRateLimiterBuilder {
    params: Params,
    clock: Option<VirtualClock>,
}

impl AdaptiveRateLimiterBuilder {
    /// The share of the rate kept after a throttle, in `(0, 1)` (default 0.7).
    pub fn beta(mut self, beta: f64) -> Self {
        self.params.beta = beta;
        self
    }

    /// CUBIC's `C`: how fast the rate grows back after a throttle, positive (default 0.4).
    pub fn scale_constant(mut self, c: f64) -> Self {
        self.params.scale_constant = c;
        self
    }

    /// The weight of the newest half-second in the measured rate, in `(0, 1]` (default 0.8).
    pub fn smoothing(mut self, smoothing: f64) -> Self {
        self.params.smoothing = smoothing;
        self
    }

    /// The lowest fill rate in tokens per second, positive (default 0.5): however hard the
    /// service throttles, a client still sends this many attempts a second.
    pub fn min_fill_rate(mut self, rate: f64) -> Self {
        self.params.min_fill_rate = rate;
        self
    }

    /// The smallest bucket, in tokens, at least 1 (default 1): one attempt's token.
    pub fn min_capacity(mut self, tokens: f64) -> Self {
        self.params.min_capacity = tokens;
        self
    }

    /// Counts time on a [`VirtualClock`] instead of the real clock. A policy given the limiter
    /// must be given the same clock.
    pub fn clock(mut self, clock: VirtualClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Builds the limiter.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming every invalid parameter: `beta` not in `(0, 1)`,
    /// `scale_constant` not positive, `smoothing` not in `(0, 1]`, `min_fill_rate` not
    /// positive, `min_capacity` below 1, or a rate or capacity above 10⁹ (or not finite).
    pub fn build(self) -> Result<AdaptiveRateLimiter, ConfigError> {
        let p = self.params;
        let mut problems = Vec::new();
        let mut check = |ok: bool, setting: &'static str, rule: &str, value: f64| {
            if !ok {
                problems.push(ConfigProblem::Invalid {
                    setting,
                    reason: format!("must be {rule} (got {value})"),
                });
            }
        };
        check(p.beta > 0.0 && p.beta < 1.0, "beta", "in (0, 1)", p.beta);
        check(
            p.scale_constant > 0.0 && p.scale_constant <= MAX_RATE,
            "scale_constant",
            "positive, at most 1e9",
            p.scale_constant,
        );
        check(
            p.smoothing > 0.0 && p.smoothing <= 1.0,
            "smoothing",
            "in (0, 1]",
            p.smoothing,
        );
        check(
            p.min_fill_rate > 0.0 && p.min_fill_rate <= MAX_RATE,
            "min_fill_rate",
            "positive, at most 1e9",
            p.min_fill_rate,
        );
        check(
            (1.0..=MAX_RATE).contains(&p.min_capacity),
            "min_capacity",
            "in [1, 1e9]",
            p.min_capacity,
        );
        ConfigError::from_problems(problems)?;
        // The fine monotonic clock, not the coarse one budgets and breakers read: a wait is
        // computed to the nanosecond, and a clock a tick (1-4 ms) behind would wake a waiter
        // before its token, for another wait. One reading per attempt costs 25 ns.
        let clock = self.clock.map_or_else(
            || SharedClock::Real(std::time::Instant::now()),
            SharedClock::Virtual,
        );
        let state = State::new(&p, seconds(clock.now_nanos()));
        let describe = if p == Params::AWS {
            "adaptive rate limiter (AWS: beta 0.7, scale 0.4, min 0.5/s)".to_owned()
        } else {
            format!(
                "adaptive rate limiter (beta {}, scale {}, smoothing {}, min {}/s, min capacity {})",
                p.beta, p.scale_constant, p.smoothing, p.min_fill_rate, p.min_capacity
            )
        };
        Ok(AdaptiveRateLimiter {
            inner: Arc::new(Inner {
                state: Mutex::new(state),
                params: p,
                clock,
                describe,
            }),
        })
    }
}

#[cfg(all(test, not(loom)))]
#[allow(
    clippy::unreadable_literal,
    reason = "the AWS test vectors, digit for digit as published, to be compared by eye"
)]
mod tests {
    use super::*;

    /// `a` and `b` agree to 1e-9, relative (the AWS tests' `assert_relative_eq!`).
    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
    }

    fn zero_state() -> State {
        // smithy-rs's `ClientRateLimiter::builder().build()`: everything zero.
        State::new(&Params::AWS, 0.0)
    }

    /// aws-sdk-go-v2's `adaptive_ratelimit_test.go` vectors, as smithy-rs ports them
    /// (`test_calculated_rate_with_successes`): `w_max` 10, throttled at 5 s; the curve
    /// starts at `0.7 × 10` and is back at 10 after `K = ∛(10 × 0.3 / 0.4) = 1.957 s`.
    #[test]
    fn the_cubic_curve_matches_the_aws_vectors() {
        let mut s = zero_state();
        s.last_max_rate = 10.0;
        s.last_throttle = 5.0;
        let p = Params::AWS;
        assert!(close(s.time_window(&p), 7.5f64.cbrt()));
        for (t, expected) in [
            (5.0, 7.0),
            (6.0, 9.64893600966),
            (7.0, 10.000030849917364),
            (8.0, 10.453284520772092),
            (9.0, 13.408697022224185),
            (10.0, 21.26626835427364),
            (11.0, 36.425998516920465),
        ] {
            let rate = s.cubic_success(&p, t);
            assert!(close(rate, expected), "at {t}: {rate} vs {expected}");
        }
    }

    /// `test_calculated_rate_with_throttles`: the same curve, with throttles at 7 s and 8 s,
    /// each `rate × 0.7` and a new `w_max` and origin (computed as the Go test does, on the
    /// calculated rate rather than a measured one).
    #[test]
    fn throttles_cut_the_curve_as_the_aws_vectors_say() {
        let mut s = zero_state();
        s.last_max_rate = 10.0;
        s.last_throttle = 5.0;
        let p = Params::AWS;
        let mut rate = 0.0;
        for (throttled, t, expected) in [
            (false, 5.0, 7.0),
            (false, 6.0, 9.64893600966),
            (true, 7.0, 6.754255206761999),
            (true, 8.0, 4.727978644733399),
            (false, 9.0, 4.670125557970046),
            (false, 10.0, 4.770870456867401),
            (false, 11.0, 6.011819748005445),
            (false, 12.0, 10.792973431384178),
        ] {
            if throttled {
                rate *= p.beta;
                s.last_throttle = t;
                s.last_max_rate = rate;
            } else {
                rate = s.cubic_success(&p, t);
            }
            assert!(close(rate, expected), "at {t}: {rate} vs {expected}");
        }
    }

    /// smithy-rs `test_client_sending_rates`: one response every 200 ms, throttled at 2.0 s and
    /// 3.2 s; the measured rate (half-second buckets, smoothing 0.8) and the fill rate after
    /// each, through the whole update.
    #[test]
    fn the_measured_and_fill_rates_match_the_aws_vectors() {
        let p = Params::AWS;
        let mut s = zero_state();
        for (i, (throttled, measured, fill)) in [
            (false, 0.0, 0.5),
            (false, 0.0, 0.5),
            (false, 4.800000000000001, 0.5),
            (false, 4.800000000000001, 0.5),
            (false, 4.16, 0.5),
            (false, 4.16, 0.6912),
            (false, 4.16, 1.0975999999999997),
            (false, 5.632000000000001, 1.6384000000000005),
            (false, 5.632000000000001, 2.3328),
            (true, 4.3264, 3.0284799999999996),
            (false, 4.3264, 3.48663917347026),
            (false, 4.3264, 3.821874416040255),
            (false, 5.66528, 4.053385727709987),
            (false, 5.66528, 4.200373108479454),
            (false, 4.333056, 4.282036558348658),
            (true, 4.333056, 2.99742559084406),
            (false, 4.333056, 3.4522263943863463),
        ]
        .into_iter()
        .enumerate()
        {
            // 0.2, 0.4, ... as the sum of 200 ms sleeps in nanoseconds, as the test's clock.
            let t = seconds((i as u64 + 1) * 200_000_000);
            s.update(&p, t, throttled);
            assert!(close(s.measured_rate, measured), "{i}: {s:?}");
            assert!(close(s.fill_rate, fill), "{i}: {s:?}");
        }
    }

    /// smithy-rs `test_capacity_never_goes_negative` / `..._after_sufficient_refill`: after a
    /// throttle at 0 (rate 0.5/s), 0.1 s gives 0.05 tokens, so the token is 1.9 s away; the
    /// capacity is never taken below zero, and concurrent askers all get the same wait.
    #[test]
    fn an_empty_bucket_says_how_long_until_a_token() {
        let p = Params::AWS;
        let mut s = zero_state();
        s.update(&p, 0.0, true);
        assert!(s.enabled);
        for _ in 0..10 {
            assert_eq!(s.acquire(0.1), Err(Duration::from_millis(1900)));
        }
        assert!(close(s.capacity, 0.05));
        assert_eq!(s.acquire(2.1), Ok(()));
        assert!(s.capacity.abs() < 1e-9);
        // A sub-nanosecond shortfall is granted, not a zero wait.
        s.capacity = 1.0 - 1e-12;
        s.last_refill = Some(3.0);
        assert_eq!(s.acquire(3.0), Ok(()));
        assert!(s.capacity >= 0.0);
    }

    fn limiter(clock: &VirtualClock) -> AdaptiveRateLimiter {
        AdaptiveRateLimiter::builder()
            .clock(clock.clone())
            .build()
            .unwrap()
    }

    /// The bucket on the virtual clock: off until a throttle; then one token per `1 / rate`
    /// seconds, at most `max(rate, 1)` saved up; a `Retry-After` holds every token.
    #[test]
    fn the_bucket_follows_the_virtual_clock() {
        let clock = VirtualClock::new();
        let l = limiter(&clock);
        for _ in 0..100 {
            assert_eq!(l.try_acquire(), Ok(()));
        }
        assert_eq!(l.fill_rate(), None);
        assert_eq!(l.available(), None);

        l.record_outcome(Some(ErrorClass::RateLimit));
        assert_eq!(l.fill_rate(), Some(0.5));
        assert_eq!(l.try_acquire(), Err(Duration::from_secs(2)));
        clock.advance(Duration::from_millis(500));
        assert_eq!(l.try_acquire(), Err(Duration::from_millis(1500)));
        // A long quiet time saves up one token only (the capacity is 1 at 0.5/s).
        clock.advance(Duration::from_secs(60));
        assert_eq!(l.available(), Some(1.0));
        assert_eq!(l.try_acquire(), Ok(()));
        assert_eq!(l.try_acquire(), Err(Duration::from_secs(2)));

        // A server's delay holds the bucket, full or not, until the time it names.
        clock.advance(Duration::from_secs(2));
        l.record_retry_after(Duration::from_secs(3));
        assert_eq!(l.try_acquire(), Err(Duration::from_secs(3)));
        l.record_retry_after(Duration::from_secs(1)); // a shorter one does not shorten it
        clock.advance(Duration::from_secs(1));
        assert_eq!(l.try_acquire(), Err(Duration::from_secs(2)));
        clock.advance(Duration::from_secs(2));
        assert_eq!(l.try_acquire(), Ok(()));
    }

    /// Successes after a throttle grow the rate back along CUBIC's curve (the limiter's own
    /// clock and measured rate, through the public API); a throttle cuts it to 0.7 of what
    /// was sent.
    #[test]
    fn throttles_cut_the_rate_and_successes_grow_it_back() {
        let clock = VirtualClock::new();
        let l = limiter(&clock);
        // 20 responses a second for 5 s, all fine: the limiter is off, but measures
        // (20 × (1 - 0.2¹⁰) after ten half-second buckets).
        for _ in 0..100 {
            clock.advance(Duration::from_millis(50));
            l.record_outcome(None);
        }
        let w_max = l.measured_rate();
        assert!(close(w_max, 20.0 * (1.0 - 0.2f64.powi(10))), "{l:?}");
        l.record_outcome(Some(ErrorClass::RateLimit));
        assert!(close(l.fill_rate().unwrap(), 0.7 * w_max));
        let k = (w_max * 0.3 / 0.4).cbrt(); // 2.47 s
        for second in 1..=6 {
            // 1 s more at 20 responses a second, none a throttle (a 503 is not one).
            for _ in 0..20 {
                clock.advance(Duration::from_millis(50));
                l.record_outcome(Some(ErrorClass::ServerError));
            }
            let expected = 0.4 * (f64::from(second) - k).powi(3) + w_max;
            let rate = l.fill_rate().unwrap();
            assert!(close(rate, expected), "{second} s: {rate} vs {expected}");
        }
        // Below `w_max` until K, then above: 18.7, 20.0, 20.1, 21.4, 26.5, 37.6.
        assert!(l.fill_rate().unwrap() > 37.0);
    }

    #[test]
    fn many_threads_share_one_bucket_exactly() {
        let clock = VirtualClock::new();
        let l = limiter(&clock);
        l.record_outcome(Some(ErrorClass::RateLimit));
        clock.advance(Duration::from_secs(2)); // exactly one token
        for round in 0..3 {
            let granted: usize = std::thread::scope(|scope| {
                let handles: Vec<_> = (0..8)
                    .map(|_| {
                        scope.spawn(|| {
                            (0..100)
                                .filter(|_| {
                                    l.record_outcome(None);
                                    l.try_acquire().is_ok()
                                })
                                .count()
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).sum()
            });
            // However the threads interleave, the time is frozen: one token, one grant.
            assert_eq!(granted, 1, "round {round}");
            let rate = l.fill_rate().unwrap();
            let wait = l.try_acquire().unwrap_err();
            clock.advance(wait);
            assert!(rate >= 0.5 && l.available().unwrap() <= rate.max(1.0));
        }
    }

    /// A thread that panics holding the lock (it cannot happen through the API: no user code
    /// runs under it) does not wedge the limiter.
    #[test]
    fn a_poisoned_lock_is_recovered() {
        let clock = VirtualClock::new();
        let l = limiter(&clock);
        let inner = Arc::clone(&l.inner);
        let _ = std::thread::spawn(move || {
            let _guard = inner.state.lock();
            panic!("poison");
        })
        .join();
        assert!(l.inner.state.is_poisoned());
        l.record_outcome(Some(ErrorClass::RateLimit));
        assert_eq!(l.try_acquire(), Err(Duration::from_secs(2)));
    }

    #[test]
    fn bad_parameters_are_config_errors() {
        let err = AdaptiveRateLimiter::builder()
            .beta(1.0)
            .scale_constant(0.0)
            .smoothing(f64::NAN)
            .min_fill_rate(-1.0)
            .min_capacity(0.5)
            .build()
            .unwrap_err();
        let settings: Vec<_> = err.problems().iter().map(ConfigProblem::setting).collect();
        assert_eq!(
            settings,
            [
                "beta",
                "scale_constant",
                "smoothing",
                "min_fill_rate",
                "min_capacity"
            ]
        );
        let custom = AdaptiveRateLimiter::builder().beta(0.5).build().unwrap();
        assert!(custom.describe().contains("beta 0.5"), "{custom}");
        assert!(AdaptiveRateLimiter::new().describe().contains("AWS"));
    }

    /// A policy with a limiter has the full per-call state (it asks before every attempt and
    /// feeds every outcome); `describe` lists it.
    #[test]
    fn a_policy_with_a_limiter_is_not_lean() {
        let policy = crate::AsyncRetryPolicy::<std::io::Error>::builder()
            .rate_limiter(AdaptiveRateLimiter::new())
            .sleeper(|_| async {})
            .build()
            .unwrap();
        assert!(!policy.config.lean());
        assert!(policy.describe().contains("adaptive rate limiter (AWS"));
    }

    #[test]
    fn a_breaker_rejection_gives_the_token_back() {
        let clock = VirtualClock::new();
        let l = limiter(&clock);
        l.record_outcome(Some(ErrorClass::RateLimit));
        clock.advance(Duration::from_secs(2));
        assert_eq!(l.try_acquire(), Ok(()));
        l.give_back();
        assert_eq!(l.available(), Some(1.0));
        l.give_back(); // never above the capacity
        assert_eq!(l.available(), Some(1.0));
    }
}
