//! Retry budgets: a limit on retries shared by every call of a service, so that an outage does
//! not multiply the load on a failing dependency (the "retry storm").

use core::fmt;
use core::time::Duration;
use std::sync::Arc;

use crate::class::ErrorClass;
use crate::errors::{ConfigError, ConfigProblem};
use crate::sync::{AtomicU64, Mutex, Ordering, lock};
use crate::time::SharedClock;
use crate::time::VirtualClock;
use crate::window::{Epochs, WindowedCounter};

// Amounts are integers, so budgets are exact. The ratio model earns in billionths of a token
// (a per-call share of `percent` % is `percent * 10^7` of them: exact for every percent with up
// to 7 decimals; tower's `TpsBudget` truncates percentages below 1, tower#857) and spends in
// thousandths (costs are kept to 3 decimals, so a window's slot of spent tokens, 56 bits,
// holds 7.2 × 10¹³ tokens). The token bucket counts in thousandths, the precision gRFC A6
// gives `token_ratio`.

/// Billionths of a token: the ratio model's unit. A floor of `n` retries per second over a
/// window of `w` nanoseconds is exactly `n * w` of them.
const RATIO_UNIT: f64 = 1e9;

/// The ratio model's counts in its window.
const CALLS: usize = 0;
const SPENT: usize = 1;

/// Billionths of a token in a thousandth.
const MILLI_TO_RATIO_UNIT: u128 = 1_000_000;

/// The largest cost of one retry, in tokens, in either model.
const MAX_COST: f64 = 1e6;

/// The largest floor of a ratio budget, in billionths of a token (4.6 × 10⁹ tokens): with
/// every count held in 64 bits, the arithmetic cannot overflow below it.
const MAX_RESERVE: u128 = 1 << 62;

/// The largest amount of a token bucket, in tokens.
const MAX_BUCKET: f64 = 1e12;

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
/// [`StopReason::BudgetExhausted`](crate::StopReason::BudgetExhausted). A retry whose tokens
/// were taken but that never started (its call was dropped during the sleep, or stopped by the
/// circuit breaker after it) gives them back. Recording a call or a success takes no lock;
/// withdrawals from a ratio budget take one, held for a few loads, so two retries can never
/// both take the last token.
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
/// use reflexio::{testing::VirtualClock, RetryBudget};
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

// Behind the budget's one `Arc`: the size of the larger variant costs nothing per call.
#[allow(clippy::large_enum_variant)]
enum Inner {
    Ratio(Ratio),
    Bucket(Bucket),
}

struct Ratio {
    /// Billionths of a token each call deposits.
    per_call: u64,
    /// Billionths of a token always available per window.
    reserve: u64,
    /// Thousandths of a token per retry, by class.
    costs: [u64; 8],
    /// Held while a withdrawal decides: withdrawals are rare (one per retry), and deciding one
    /// at a time makes them exact.
    withdrawing: Mutex<()>,
    /// The slots in time of both windows.
    epochs: Epochs,
    /// The calls ([`CALLS`]) and the thousandths of a token spent ([`SPENT`]), over one
    /// window.
    counts: WindowedCounter<2>,
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

/// `tokens` in units of `1 / per_token` of a token, rounded.
fn units(tokens: f64, per_token: f64) -> u64 {
    // `as` saturates; the builders reject amounts whose units do not fit.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let u = (tokens * per_token).round().max(0.0) as u64;
    u
}

fn milli(tokens: f64) -> u64 {
    units(tokens, 1000.0)
}

/// Tokens taken for one retry, given back if the retry never starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Withdrawal {
    /// The ratio model's epoch of the withdrawal (unused by the token bucket).
    epoch: u64,
    amount: u64,
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
    /// use reflexio::{ErrorClass, RetryBudget};
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
    /// attempt takes 1 token, retried or not; every success returns `token_ratio` (truncated to
    /// 3 decimals, as A6 specifies: 0.5466 counts as 0.546); no retry while the count is at or
    /// below `max_tokens / 2`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when `max_tokens` is not in `(0, 1000]` or `token_ratio` is not a
    /// positive finite number.
    ///
    /// ```
    /// use reflexio::{ErrorClass, RetryBudget};
    /// let budget = RetryBudget::grpc(10.0, 0.1).unwrap();
    /// for left in [9.0, 8.0, 7.0, 6.0] {
    ///     budget.record_failure();
    ///     assert!(budget.try_retry(ErrorClass::Transient)); // above 5: retry
    ///     assert_eq!(budget.available(), left);
    /// }
    /// budget.record_failure();
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
        // Truncated to 3 decimals (A6); the nudge keeps a ratio such as 0.29, whose double
        // is just below it, at 0.290.
        let token_ratio = ((token_ratio * 1000.0 + 1e-6).floor() / 1000.0).min(MAX_BUCKET);
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
            r.counts.add(r.epoch(), CALLS, 1);
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
            b.deposit(reward);
        }
    }

    /// Records a failed attempt, retried or not: the token bucket takes its
    /// [`failure_charge`](TokenBucketBuilder::failure_charge) (gRPC: 1 token); the ratio model
    /// ignores it. Policies call this for you, before deciding whether to retry.
    pub fn record_failure(&self) {
        if let Inner::Bucket(b) = &*self.inner
            && b.failure_charge > 0
        {
            let _ = b
                .balance
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                    Some(v.saturating_sub(b.failure_charge))
                });
        }
    }

    /// Asks for one retry after a failure of `class`: takes its cost and says yes, or says no
    /// and takes nothing. Policies call this for you.
    #[must_use]
    pub fn try_retry(&self, class: ErrorClass) -> bool {
        self.withdraw(class).is_some()
    }

    /// [`try_retry`](Self::try_retry), returning what was taken so that a retry that never
    /// starts can give it back ([`refund`](Self::refund)).
    pub(crate) fn withdraw(&self, class: ErrorClass) -> Option<Withdrawal> {
        match &*self.inner {
            Inner::Ratio(r) => r.try_withdraw(class),
            Inner::Bucket(b) => b.try_withdraw(class),
        }
    }

    /// [`withdraw`](Self::withdraw) as a guard owned by the call: the tokens come back when
    /// the guard is dropped before [`Reserved::commit`] (the retry never started).
    pub(crate) fn reserve(&self, class: ErrorClass) -> Option<Reserved<'_>> {
        self.withdraw(class).map(|withdrawal| Reserved {
            budget: self,
            withdrawal,
        })
    }

    /// Gives back the tokens of a retry that never started.
    pub(crate) fn refund(&self, withdrawal: Withdrawal) {
        if withdrawal.amount == 0 {
            return;
        }
        match &*self.inner {
            Inner::Ratio(r) => r.counts.sub(withdrawal.epoch, SPENT, withdrawal.amount),
            Inner::Bucket(b) => b.deposit(withdrawal.amount),
        }
    }

    /// The tokens available for retries now.
    #[must_use]
    pub fn available(&self) -> f64 {
        #[allow(clippy::cast_precision_loss)] // a display value
        match &*self.inner {
            Inner::Ratio(r) => r.available(r.epoch()) as f64 / RATIO_UNIT,
            Inner::Bucket(b) => b.balance.load(Ordering::Acquire) as f64 / 1000.0,
        }
    }

    /// A one-line description with the parameters, for `describe()`.
    pub(crate) fn describe(&self) -> &str {
        match &*self.inner {
            Inner::Ratio(r) => &r.describe,
            Inner::Bucket(b) => &b.describe,
        }
    }
}

/// The tokens of a retry between the decision and the retry's start; see
/// [`RetryBudget::reserve`].
pub(crate) struct Reserved<'a> {
    budget: &'a RetryBudget,
    /// What to give back; an amount of zero once committed.
    withdrawal: Withdrawal,
}

impl Reserved<'_> {
    /// The retry started: the tokens are spent.
    pub(crate) fn commit(mut self) {
        self.withdrawal.amount = 0;
    }
}

impl Drop for Reserved<'_> {
    fn drop(&mut self) {
        self.budget.refund(self.withdrawal);
    }
}

impl fmt::Debug for Reserved<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Reserved").field(&self.withdrawal).finish()
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

    /// The billionths of a token available in `epoch` (exact: at most 10 × 2⁶⁴ calls times
    /// a share below 2⁶⁴, plus the floor, fits 128 bits).
    fn available(&self, epoch: u64) -> u128 {
        let [calls, spent] = self.counts.sums(epoch);
        let earned = u128::from(calls) * u128::from(self.per_call) + u128::from(self.reserve);
        earned.saturating_sub(u128::from(spent) * MILLI_TO_RATIO_UNIT)
    }

    fn try_withdraw(&self, class: ErrorClass) -> Option<Withdrawal> {
        let cost = self.costs[class.index()];
        if cost == 0 {
            // Nothing taken, nothing to give back: no epoch needed.
            return Some(Withdrawal {
                epoch: 0,
                amount: 0,
            });
        }
        // One withdrawal decides at a time: two cannot both spend the last tokens. Deposits
        // (calls) and refunds only add to what is available, so they need not wait. The clock
        // is read with the lock held: read before, a withdrawal that waited for the lock across
        // a slot boundary would decide on a window that no longer holds the slot the previous
        // withdrawal spent in (found in review, now a loom model).
        let _deciding = lock(&self.withdrawing);
        let epoch = self.epoch();
        if self.available(epoch) < u128::from(cost) * MILLI_TO_RATIO_UNIT {
            return None;
        }
        self.counts.add(epoch, SPENT, cost);
        Some(Withdrawal {
            epoch,
            amount: cost,
        })
    }
}

impl Bucket {
    fn try_withdraw(&self, class: ErrorClass) -> Option<Withdrawal> {
        let cost = self.costs[class.index()];
        self.balance
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                (v >= cost && v > self.threshold).then(|| v - cost)
            })
            .ok()
            .map(|_| Withdrawal {
                epoch: 0,
                amount: cost,
            })
    }

    /// Adds `amount` thousandths, up to the capacity.
    fn deposit(&self, amount: u64) {
        if amount > 0 {
            let _ = self
                .balance
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                    Some(v.saturating_add(amount).min(self.capacity))
                });
        }
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

    /// The tokens a retry after a failure of `class` costs (default 1; 0 bypasses the budget),
    /// kept to 3 decimals (rounded; a positive cost below 0.0005 is a `ConfigError`).
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
    /// `[0, 1000]`, or is positive but below the resolution of 10⁻⁷ %; a window shorter than
    /// 1 µs; a floor whose tokens over the window exceed 4.6 × 10⁹ (`min_retries_per_sec`
    /// times the window in seconds); a negative, non-finite or above 10⁶ cost.
    pub fn build(self) -> Result<RetryBudget, ConfigError> {
        let mut problems = Vec::new();
        if !(self.percent.is_finite() && (0.0..=1000.0).contains(&self.percent)) {
            problems.push(ConfigProblem::Invalid {
                setting: "percent",
                reason: format!("must be a number in [0, 1000] (got {})", self.percent),
            });
        } else if self.percent > 0.0 && units(self.percent / 100.0, RATIO_UNIT) == 0 {
            problems.push(ConfigProblem::Invalid {
                setting: "percent",
                reason: format!(
                    "is below the resolution of 0.0000001 % (got {}); use 0 for no share",
                    self.percent
                ),
            });
        }
        if self.window < Epochs::MIN_WINDOW {
            problems.push(ConfigProblem::Invalid {
                setting: "window",
                reason: format!("must be at least 1µs (got {:?})", self.window),
            });
        }
        // A floor of n/s over w ns is n * w billionths of a token: exact.
        let reserve = u128::from(self.min_retries_per_sec) * self.window.as_nanos();
        if reserve > MAX_RESERVE {
            problems.push(ConfigProblem::Invalid {
                setting: "min_retries_per_sec",
                reason: format!(
                    "times the window must be at most 4.6e9 retries (got {}/s over {:?})",
                    self.min_retries_per_sec, self.window
                ),
            });
        }
        check_costs(&self.costs, &mut problems);
        ConfigError::from_problems(problems)?;
        let reserve = u64::try_from(reserve).unwrap_or(u64::MAX); // at most 2^62: checked above
        let describe = format!(
            "ratio budget ({}% of calls + {}/s over {:?})",
            self.percent, self.min_retries_per_sec, self.window
        );
        Ok(RetryBudget {
            inner: Arc::new(Inner::Ratio(Ratio {
                per_call: units(self.percent / 100.0, RATIO_UNIT),
                reserve,
                costs: self.costs.map(milli),
                withdrawing: Mutex::new(()),
                epochs: Epochs::new(self.window),
                counts: WindowedCounter::new(),
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
        if !(c.is_finite() && (0.0..=MAX_COST).contains(&c)) {
            problems.push(ConfigProblem::Invalid {
                setting: "cost",
                reason: format!("for `{class}` must be a number in [0, 1e6] (got {c})"),
            });
        } else if c > 0.0 && milli(c) == 0 {
            problems.push(ConfigProblem::Invalid {
                setting: "cost",
                reason: format!(
                    "for `{class}` is below the resolution of 0.001 token (got {c}); use 0 to let the class bypass the budget"
                ),
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

    /// Tokens every failed attempt takes, retried or not (gRPC: 1), before the retry's own
    /// cost is checked.
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
    /// A [`ConfigError`] naming every negative, non-finite or above 10¹² amount (amounts are
    /// kept in thousandths of a token, in 64 bits), a zero capacity, or a cost above 10⁶.
    pub fn build(self) -> Result<RetryBudget, ConfigError> {
        let mut problems = Vec::new();
        for (setting, v) in [
            ("capacity", self.capacity),
            ("failure_charge", self.failure_charge),
            ("success_reward", self.success_reward),
            ("retry_above", self.threshold),
        ] {
            if !(v.is_finite() && (0.0..=MAX_BUCKET).contains(&v)) {
                problems.push(ConfigProblem::Invalid {
                    setting,
                    reason: format!("must be a number in [0, 1e12] (got {v})"),
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

#[cfg(all(test, loom))]
#[allow(clippy::float_cmp)] // amounts are exact integers underneath
mod loom_models {
    use super::*;
    use loom::thread;

    fn ratio_with(tokens: u32) -> RetryBudget {
        RetryBudget::ratio(0.0)
            .min_retries_per_sec(tokens)
            .window(Duration::from_secs(1))
            .clock(VirtualClock::new())
            .build()
            .unwrap()
    }

    /// Two retries race for the last token: exactly one gets it, in both models.
    #[test]
    fn the_last_token_goes_once() {
        crate::sync::model(|| {
            for budget in [
                ratio_with(1),
                RetryBudget::token_bucket(1.0).build().unwrap(),
            ] {
                let other = {
                    let budget = budget.clone();
                    thread::spawn(move || budget.try_retry(ErrorClass::Transient))
                };
                let mine = budget.try_retry(ErrorClass::Transient);
                let theirs = other.join().unwrap();
                assert!(mine ^ theirs, "{budget}: {mine} {theirs}");
                assert_eq!(budget.available(), 0.0);
            }
        });
    }

    /// A refund racing a withdrawal: the refunded token is either taken by it or left over,
    /// never lost or doubled.
    #[test]
    fn a_refund_racing_a_withdrawal() {
        crate::sync::model(|| {
            for budget in [
                ratio_with(1),
                RetryBudget::token_bucket(1.0).build().unwrap(),
            ] {
                let reserved = budget.reserve(ErrorClass::Transient).unwrap();
                let withdrawal = reserved.withdrawal;
                reserved.commit();
                let refunder = {
                    let budget = budget.clone();
                    thread::spawn(move || budget.refund(withdrawal))
                };
                let got = budget.try_retry(ErrorClass::Transient);
                refunder.join().unwrap();
                let left = budget.available();
                assert_eq!(left, if got { 0.0 } else { 1.0 }, "{budget}");
            }
        });
    }

    /// Calls deposit while two retries withdraw: no retry is granted beyond what the calls
    /// and the floor allow at the moment it decides, and every grant is counted.
    #[test]
    fn deposits_racing_withdrawals() {
        crate::sync::model(|| {
            let budget = RetryBudget::ratio(100.0)
                .min_retries_per_sec(0)
                .window(Duration::from_secs(1))
                .clock(VirtualClock::new())
                .build()
                .unwrap();
            let depositor = {
                let budget = budget.clone();
                thread::spawn(move || budget.record_call())
            };
            let taker = {
                let budget = budget.clone();
                thread::spawn(move || budget.try_retry(ErrorClass::Transient))
            };
            let mine = budget.try_retry(ErrorClass::Transient);
            depositor.join().unwrap();
            let theirs = taker.join().unwrap();
            // One call at 100 % is one token: at most one grant, and it is spent.
            assert!(!(mine && theirs));
            let left = budget.available();
            assert_eq!(left, if mine || theirs { 0.0 } else { 1.0 });
        });
    }

    /// gRPC's per-failure charges racing a success: no update is lost.
    #[test]
    fn grpc_charges_racing_a_success() {
        crate::sync::model(|| {
            let budget = RetryBudget::grpc(4.0, 1.0).unwrap();
            let charger = {
                let budget = budget.clone();
                thread::spawn(move || budget.record_failure())
            };
            let rewarder = {
                let budget = budget.clone();
                thread::spawn(move || budget.record_success(None))
            };
            budget.record_failure();
            charger.join().unwrap();
            rewarder.join().unwrap();
            // 4 - 2 failures + 1 success (capped at 4 if it came first): 3, or 2 if the
            // success landed while the bucket was full.
            let left = budget.available();
            assert!(left == 3.0 || left == 2.0, "{left}");
        });
    }

    /// Two withdrawals on either side of a slot boundary (the clock moves during the race):
    /// still one grant for the one token.
    #[test]
    fn the_last_token_goes_once_across_a_slot_boundary() {
        crate::sync::model(|| {
            let clock = VirtualClock::new();
            let budget = RetryBudget::ratio(0.0)
                .min_retries_per_sec(1)
                .window(Duration::from_secs(1))
                .clock(clock.clone())
                .build()
                .unwrap();
            let other = {
                let budget = budget.clone();
                thread::spawn(move || {
                    clock.advance(Duration::from_millis(100));
                    budget.try_retry(ErrorClass::Transient)
                })
            };
            let mine = budget.try_retry(ErrorClass::Transient);
            let theirs = other.join().unwrap();
            assert!(!(mine && theirs), "both got the last token");
        });
    }
}
