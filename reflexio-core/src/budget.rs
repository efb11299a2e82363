//! Retry budgets: a limit on retries shared by every call of a service, so that an outage does
//! not multiply the load on a failing dependency (the "retry storm").

use core::fmt;
use core::time::Duration;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::class::ErrorClass;
use crate::clock::SharedClock;
use crate::errors::{ConfigError, ConfigProblem};
use crate::testing::VirtualClock;
use crate::window::{Epochs, WindowedCounter};

// Token amounts are kept in thousandths of a token, in integers: exact, and no truncation of
// small ratios (tower's `TpsBudget` truncates percentages below 1, tower#857).

/// A retry budget shared by calls, policies and threads: a cheap cloneable handle.
///
/// Two models:
///
/// - **Ratio over a window** ([`RetryBudget::ratio`], the default model): retries may add at
///   most `percent` % of the calls made in the last `window`, plus a floor of
///   `min_retries_per_sec` so that a quiet service can still retry. This is Finagle's
///   `RetryBudget` (20 % + 10/s over 10 s by default there), which tower's `TpsBudget` ports,
///   and the Google SRE book's advice (retries at most 10 % of requests keeps an outage's load
///   near 1.1× instead of nearly 3×).
/// - **Token bucket** ([`RetryBudget::token_bucket`]): a quota of tokens; each retry costs
///   tokens, successes give some back. [`aws_standard`](RetryBudget::aws_standard) and
///   [`grpc`](RetryBudget::grpc) preset the AWS SDK standard retry mode and gRPC retry
///   throttling (gRFC A6).
///
/// A policy with a budget (`.budget(budget.clone())`) asks it before every retry, after every
/// other check passed; an empty budget stops with
/// [`StopReason::BudgetExhausted`](crate::StopReason::BudgetExhausted). Recording a call or a
/// success is one atomic update, with no lock.
///
/// # Per-class cost
///
/// In the ratio model a retry costs 1 token whatever its class, `RateLimit` included: a server
/// that says "slow down" is overloaded, exactly when retries must not multiply. Change it with
/// [`RatioBudgetBuilder::cost`] (a cost of 0 lets a class bypass the budget).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use reflexio_core::{testing::VirtualClock, RetryBudget};
///
/// let clock = VirtualClock::new();
/// let budget = RetryBudget::ratio(10.0)
///     .min_retries_per_sec(0)
///     .window(Duration::from_secs(10))
///     .clock(clock)
///     .build()
///     .unwrap();
/// for _ in 0..100 {
///     budget.record_call();
/// }
/// assert_eq!(budget.available(), 10.0); // 10 % of 100 calls
/// ```
#[derive(Clone)]
pub struct RetryBudget {
    inner: Arc<Inner>,
}

enum Inner {
    Ratio(Ratio),
    Bucket(Bucket),
}

struct Ratio {
    /// Thousandths of a token each call deposits.
    per_call: u64,
    /// Thousandths of a token always available per window.
    reserve: u64,
    costs: [u64; 8],
    /// The slots in time of both windows.
    epochs: Epochs,
    calls: WindowedCounter,
    spent: WindowedCounter,
    clock: SharedClock,
    describe: String,
}

struct Bucket {
    balance: AtomicU64,
    capacity: u64,
    costs: [u64; 8],
    failure_charge: u64,
    success_reward: u64,
    refund_on_success: bool,
    /// Retry only while the balance (after charging the failure) is above this.
    threshold: u64,
    describe: String,
}

fn milli(tokens: f64) -> u64 {
    // Rounded, not truncated; `as` saturates for absurd values (validated before).
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let m = (tokens * 1000.0).round().max(0.0) as u64;
    m
}

impl RetryBudget {
    /// A ratio budget: retries may add `percent` % of recent calls. See [`RatioBudgetBuilder`]
    /// for the other settings and their defaults (a floor of 10 retries per second, a 10 s
    /// window).
    pub fn ratio(percent: f64) -> RatioBudgetBuilder {
        RatioBudgetBuilder {
            percent,
            min_retries_per_sec: 10,
            window: Duration::from_secs(10),
            costs: [1.0; 8],
            clock: None,
        }
    }

    /// A token bucket budget; see [`TokenBucketBuilder`].
    pub fn token_bucket(capacity: f64) -> TokenBucketBuilder {
        TokenBucketBuilder {
            capacity,
            costs: [1.0; 8],
            failure_charge: 0.0,
            success_reward: 0.0,
            refund_on_success: false,
            threshold: 0.0,
        }
    }

    /// The AWS SDKs' standard retry mode (retry behavior 2.1): a quota of 500 tokens per client;
    /// a retry after a throttling error (`RateLimit`) costs 5, after any other error 14; a
    /// success at the first attempt adds 1, a success after retries returns the last retry's
    /// cost; with too few tokens, no retry.
    ///
    /// ```
    /// use reflexio_core::{ErrorClass, RetryBudget};
    /// let budget = RetryBudget::aws_standard();
    /// assert!(budget.try_retry(ErrorClass::Transient));
    /// assert_eq!(budget.available(), 486.0);
    /// ```
    ///
    /// # Panics
    ///
    /// Never: the preset's parameters are valid.
    #[must_use]
    pub fn aws_standard() -> RetryBudget {
        RetryBudget::token_bucket(500.0)
            .cost_all(14.0)
            .cost(ErrorClass::RateLimit, 5.0)
            .success_reward(1.0)
            .refund_on_success(true)
            .build()
            .expect("valid preset")
    }

    /// gRPC retry throttling (gRFC A6): `max_tokens` (at most 1000) start full; every failed
    /// attempt takes 1 token, every success returns `token_ratio`; no retry while the count is
    /// at or below `max_tokens / 2`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when `max_tokens` is not in `(0, 1000]` or `token_ratio` is not a
    /// positive finite number.
    ///
    /// ```
    /// use reflexio_core::{ErrorClass, RetryBudget};
    /// let budget = RetryBudget::grpc(10.0, 0.1).unwrap();
    /// assert!(budget.try_retry(ErrorClass::Transient)); // 9 tokens left > 5
    /// for _ in 0..3 { assert!(budget.try_retry(ErrorClass::Transient)); } // 6 tokens left
    /// assert!(!budget.try_retry(ErrorClass::Transient)); // 5 left: at the threshold
    /// ```
    pub fn grpc(max_tokens: f64, token_ratio: f64) -> Result<RetryBudget, ConfigError> {
        let mut problems = Vec::new();
        if !(max_tokens > 0.0 && max_tokens <= 1000.0) {
            problems.push(ConfigProblem::Invalid {
                setting: "max_tokens",
                reason: format!("must be in (0, 1000] (got {max_tokens})"),
            });
        }
        if !(token_ratio.is_finite() && token_ratio > 0.0) {
            problems.push(ConfigProblem::Invalid {
                setting: "token_ratio",
                reason: format!("must be a positive number (got {token_ratio})"),
            });
        }
        ConfigError::from_problems(problems)?;
        RetryBudget::token_bucket(max_tokens)
            .cost_all(0.0)
            .failure_charge(1.0)
            .success_reward(token_ratio)
            .retry_above(max_tokens / 2.0)
            .build()
    }

    /// Records the start of a logical call (its first attempt). The ratio model deposits its
    /// share; the token bucket ignores it. Policies call this for you.
    pub fn record_call(&self) {
        if let Inner::Ratio(r) = &*self.inner {
            r.calls.add(r.epoch(), 1);
        }
    }

    /// Records a successful attempt; `retried_after` is the class of the last failure when the
    /// call succeeded after retries. Policies call this for you.
    pub fn record_success(&self, retried_after: Option<ErrorClass>) {
        if let Inner::Bucket(b) = &*self.inner {
            let reward = match retried_after {
                Some(class) if b.refund_on_success => b.costs[class.index()],
                _ => b.success_reward,
            };
            if reward > 0 {
                let _ = b
                    .balance
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                        Some(v.saturating_add(reward).min(b.capacity))
                    });
            }
        }
    }

    /// Asks for one retry after a failure of `class`: takes its cost and says yes, or says no
    /// and takes nothing (but for gRPC's per-failure charge). Policies call this for you.
    #[must_use]
    pub fn try_retry(&self, class: ErrorClass) -> bool {
        match &*self.inner {
            Inner::Ratio(r) => r.try_withdraw(class),
            Inner::Bucket(b) => b.try_withdraw(class),
        }
    }

    /// The tokens available for retries now.
    #[must_use]
    pub fn available(&self) -> f64 {
        #[allow(clippy::cast_precision_loss)] // a display value
        let milli = match &*self.inner {
            Inner::Ratio(r) => r.available(r.epoch()) as f64,
            Inner::Bucket(b) => b.balance.load(Ordering::Acquire) as f64,
        };
        milli / 1000.0
    }

    /// A one-line description with the parameters, for `describe()`.
    pub(crate) fn describe(&self) -> &str {
        match &*self.inner {
            Inner::Ratio(r) => &r.describe,
            Inner::Bucket(b) => &b.describe,
        }
    }
}

impl fmt::Debug for RetryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryBudget")
            .field("model", &self.describe())
            .field("available", &self.available())
            .finish()
    }
}

impl fmt::Display for RetryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

impl Ratio {
    /// The current epoch of both windows.
    fn epoch(&self) -> u64 {
        self.epochs.epoch_at(self.clock.now_nanos())
    }

    /// The tokens available in `epoch`.
    fn available(&self, epoch: u64) -> u64 {
        let earned = self
            .calls
            .sum(epoch, 0)
            .saturating_mul(self.per_call)
            .saturating_add(self.reserve);
        earned.saturating_sub(self.spent.sum(epoch, 0))
    }

    fn try_withdraw(&self, class: ErrorClass) -> bool {
        let cost = self.costs[class.index()];
        if cost == 0 {
            return true;
        }
        let epoch = self.epoch();
        loop {
            // Read the slot we would write, then the balance, and take the tokens only if the
            // slot did not change meanwhile: concurrent withdrawals cannot both spend the
            // last tokens.
            let seen = self.spent.current(epoch);
            if self.available(epoch) < cost {
                return false;
            }
            if self.spent.try_add_exact(epoch, seen, cost) {
                return true;
            }
        }
    }
}

impl Bucket {
    fn try_withdraw(&self, class: ErrorClass) -> bool {
        let cost = self.costs[class.index()];
        let charge = self.failure_charge;
        let mut allowed = false;
        let _ = self
            .balance
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                let after_failure = v.saturating_sub(charge);
                allowed = after_failure >= cost && after_failure > self.threshold;
                if allowed {
                    Some(after_failure - cost)
                } else if charge > 0 {
                    Some(after_failure)
                } else {
                    None
                }
            });
        allowed
    }
}

/// Builds a ratio [`RetryBudget`], from [`RetryBudget::ratio`].
///
/// # Default
///
/// A floor of 10 retries per second, a 10 s window, a cost of 1 token per retry of any class.
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build()` is called"]
pub struct RatioBudgetBuilder {
    percent: f64,
    min_retries_per_sec: u32,
    window: Duration,
    costs: [f64; 8],
    clock: Option<VirtualClock>,
}

impl RatioBudgetBuilder {
    /// Retries always allowed per second of window, whatever the traffic (default 10).
    pub fn min_retries_per_sec(mut self, n: u32) -> Self {
        self.min_retries_per_sec = n;
        self
    }

    /// The window over which calls and retries are counted (default 10 s).
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// The tokens a retry after a failure of `class` costs (default 1; 0 bypasses the budget).
    pub fn cost(mut self, class: ErrorClass, tokens: f64) -> Self {
        self.costs[class.index()] = tokens;
        self
    }

    /// Counts time on a [`VirtualClock`] instead of the real clock.
    pub fn clock(mut self, clock: VirtualClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Builds the budget.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming every invalid setting: a percent that is not a finite number in
    /// `[0, 1000]`, a zero window, a negative or non-finite cost.
    pub fn build(self) -> Result<RetryBudget, ConfigError> {
        let mut problems = Vec::new();
        if !(self.percent.is_finite() && (0.0..=1000.0).contains(&self.percent)) {
            problems.push(ConfigProblem::Invalid {
                setting: "percent",
                reason: format!("must be a number in [0, 1000] (got {})", self.percent),
            });
        }
        if self.window.is_zero() {
            problems.push(ConfigProblem::Invalid {
                setting: "window",
                reason: "must be greater than zero".into(),
            });
        }
        check_costs(&self.costs, &mut problems);
        ConfigError::from_problems(problems)?;
        let reserve = milli(f64::from(self.min_retries_per_sec) * self.window.as_secs_f64());
        let describe = format!(
            "ratio budget ({}% of calls + {}/s over {:?})",
            self.percent, self.min_retries_per_sec, self.window
        );
        Ok(RetryBudget {
            inner: Arc::new(Inner::Ratio(Ratio {
                per_call: milli(self.percent / 100.0),
                reserve,
                costs: self.costs.map(milli),
                epochs: Epochs::new(self.window),
                calls: WindowedCounter::new(),
                spent: WindowedCounter::new(),
                clock: self
                    .clock
                    .map_or_else(SharedClock::real, SharedClock::Virtual),
                describe,
            })),
        })
    }
}

fn check_costs(costs: &[f64; 8], problems: &mut Vec<ConfigProblem>) {
    for class in ErrorClass::ALL {
        let c = costs[class.index()];
        if !(c.is_finite() && c >= 0.0) {
            problems.push(ConfigProblem::Invalid {
                setting: "cost",
                reason: format!("for `{class}` must be a non-negative number (got {c})"),
            });
        }
    }
}

/// Builds a token-bucket [`RetryBudget`], from [`RetryBudget::token_bucket`].
///
/// # Default
///
/// Starts full; a retry costs 1 token; failures charge nothing more, successes give nothing
/// back; a retry is allowed while its cost is available and the bucket is not empty.
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build()` is called"]
pub struct TokenBucketBuilder {
    capacity: f64,
    costs: [f64; 8],
    failure_charge: f64,
    success_reward: f64,
    refund_on_success: bool,
    threshold: f64,
}

impl TokenBucketBuilder {
    /// The cost of a retry after a failure of `class`.
    pub fn cost(mut self, class: ErrorClass, tokens: f64) -> Self {
        self.costs[class.index()] = tokens;
        self
    }

    /// The cost of a retry after a failure of any class.
    pub fn cost_all(mut self, tokens: f64) -> Self {
        self.costs = [tokens; 8];
        self
    }

    /// Tokens every failed attempt takes, retried or not (gRPC: 1).
    pub fn failure_charge(mut self, tokens: f64) -> Self {
        self.failure_charge = tokens;
        self
    }

    /// Tokens a success returns (AWS: 1 for a first-try success; gRPC: `token_ratio`).
    pub fn success_reward(mut self, tokens: f64) -> Self {
        self.success_reward = tokens;
        self
    }

    /// A success after retries returns the last retry's cost instead of the reward (AWS).
    pub fn refund_on_success(mut self, refund: bool) -> Self {
        self.refund_on_success = refund;
        self
    }

    /// Retry only while the balance, after the failure charge, is above `tokens` (default 0:
    /// an empty bucket allows no retry; gRPC: `max_tokens / 2`). A retry also needs its cost.
    pub fn retry_above(mut self, tokens: f64) -> Self {
        self.threshold = tokens;
        self
    }

    /// Builds the budget, full.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming every negative or non-finite amount, or a zero capacity.
    pub fn build(self) -> Result<RetryBudget, ConfigError> {
        let mut problems = Vec::new();
        for (setting, v) in [
            ("capacity", self.capacity),
            ("failure_charge", self.failure_charge),
            ("success_reward", self.success_reward),
            ("retry_above", self.threshold),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                problems.push(ConfigProblem::Invalid {
                    setting,
                    reason: format!("must be a non-negative number (got {v})"),
                });
            }
        }
        if self.capacity <= 0.0 {
            problems.push(ConfigProblem::Invalid {
                setting: "capacity",
                reason: "must be greater than zero".into(),
            });
        }
        check_costs(&self.costs, &mut problems);
        ConfigError::from_problems(problems)?;
        let describe = format!("token bucket ({} tokens)", self.capacity);
        Ok(RetryBudget {
            inner: Arc::new(Inner::Bucket(Bucket {
                balance: AtomicU64::new(milli(self.capacity)),
                capacity: milli(self.capacity),
                costs: self.costs.map(milli),
                failure_charge: milli(self.failure_charge),
                success_reward: milli(self.success_reward),
                refund_on_success: self.refund_on_success,
                threshold: milli(self.threshold),
                describe,
            })),
        })
    }
}
