//! Policies from configuration (the `serde` feature): operators tune retries without a rebuild.
//!
//! A file declares policies by name, and the budgets and circuit breakers they share; the
//! application reads it at start-up and builds each policy by name, adding what is code:
//!
//! ```
//! use reflexio::config::{from_deserializer, Policies, RetryConfigSet};
//!
//! const RETRY_TOML: &str = r#"
//! [budgets.users_db]          # retries may add 10 % to the calls, plus 5 per second
//! kind = "ratio"
//! percent = 10
//! min_retries_per_sec = 5
//!
//! [circuit_breakers.users_db]
//! failure_rate = 0.5
//! min_calls = 20
//! open_for = "30s"
//!
//! [policies.fetch_user]
//! max_attempts = 4
//! deadline = "10s"
//! strategy = { kind = "decorrelated_jitter", base = "100ms", max = "2s" }
//! strategy_for.rate_limit = { kind = "token_backoff", base = "1s", max = "20s" }
//! max_retries_for.rate_limit = 2
//! budget = "users_db"
//! circuit_breaker = "users_db"
//!
//! [policies.save_user]
//! max_attempts = 2
//! deadline = "none"
//! strategy = { kind = "constant", delay = "1m30s" }
//! budget = "users_db"                                  # the same budget as fetch_user's
//! "#;
//!
//! let set: RetryConfigSet = from_deserializer(toml::Deserializer::parse(RETRY_TOML)?)?;
//! let policies = Policies::from_config(&set)?;
//! let fetch_user = policies
//!     .builder::<std::io::Error>("fetch_user")?
//!     .on_event(|e| eprintln!("{e}")) // code: the event hook, a classifier, ...
//!     .build()?;
//! assert_eq!(fetch_user.describe(), "\
//! retry policy `fetch_user`
//!   max attempts: 4 (the first included)
//!   deadline: 10s
//!   longest server delay: 1m
//!   unknown errors: at most 2 retries
//!   default strategy: decorrelated_jitter(base 100ms, max 2s)
//!   rate_limit: token_backoff(base 1s, max 20s), at most 2 retries
//!   never retried: auth, permission, permanent
//!   budget: ratio budget (10% of calls + 5/s over 10s)
//!   circuit breaker (opens at 50% failures of [rate_limit, server_error, transient, unknown] over >= 20 calls, open for 30s, 1 probe(s))
//! ");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # What a configuration holds
//!
//! A [`RetryConfig`] holds every setting of a policy builder that is data: attempts, deadline,
//! the longest server delay, strategies and caps (default and per class, classes by their
//! `snake_case` names), the cap on `unknown` retries, the attempt timeout, the jitter seed, the
//! operation's name, and a budget and a circuit breaker. Every setting is optional: one left
//! out keeps the builder's default. The rest is code, added to the builder that
//! [`RetryPolicy::from_config`](crate::RetryPolicy::from_config) and [`Policies::builder`]
//! return: the classifier, the event hook, the `Ok` rule, an abort condition, a clock or a
//! sleeper.
//!
//! | key | value | builder |
//! |---|---|---|
//! | `operation` | a name (in [`Policies`], the policy's own name by default) | `operation` |
//! | `max_attempts` | at least 1 | `max_attempts` |
//! | `deadline` | a duration, or `"none"` | `deadline`, `no_deadline` |
//! | `max_server_delay` | a duration | `max_server_delay` |
//! | `max_unknown_retries` | a number, or `"none"` | `max_unknown_retries` |
//! | `strategy` | a [strategy](StrategyConfig) | `strategy` |
//! | `strategy_for.CLASS` | a [strategy](StrategyConfig) | `strategy_for` |
//! | `max_retries_for.CLASS` | a number | `max_retries_for` |
//! | `seed` | a number (in TOML, at most 2⁶³ - 1) | `seed` |
//! | `attempt_timeout` | a duration (async policies only) | `attempt_timeout` |
//! | `budget` | a [budget](BudgetConfig), or the name of one in `budgets` | `budget` |
//! | `circuit_breaker` | a [breaker](BreakerConfig), or the name of one in `circuit_breakers` | `circuit_breaker` |
//!
//! Durations are written as people write them: `"250ms"`, `"30s"`, `"1m30s"`, `"1.5s"`
//! (parsed by `humantime`). An unknown key is an error, so a misspelt setting is not silently
//! ignored.
//!
//! # Errors that name the key
//!
//! [`from_deserializer`] reads any serde format (TOML, JSON, YAML, ...) and names the key
//! path of a wrong value with what was expected: an unknown strategy, class or key,
//! `max_attempts = 0`, a negative or malformed duration, a parameter a strategy does not take.
//! Limits that need the whole setting (a failure rate in `(0, 1]`, an exponential factor of at
//! least 1, a budget's percent) are checked when the policies are built, and reported as the
//! builders report them, as a [`ConfigError`](crate::ConfigError) naming the entry.
//!
//! # Shared budgets and breakers
//!
//! A budget or a breaker protects a dependency only when every call to it counts in the same
//! one: declare it once under `budgets` or `circuit_breakers` and name it in each policy
//! (`budget = "users_db"`). [`Policies`] builds each of them once and gives every policy that
//! names it a clone of that one. A budget or breaker written inline in a policy is that
//! policy's own (built once per [`Policies`] entry, shared by every policy built from it).

use core::num::NonZeroU32;
use core::time::Duration;
use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

use crate::class::ErrorClass;
use crate::strategies::{
    Constant, DecorrelatedJitter, EqualJitter, Exponential, FullJitter, NoDelay, Strategy,
    TokenBackoff, constant, decorrelated_jitter, equal_jitter, exponential, full_jitter, no_delay,
    token_backoff,
};

mod build;
mod names;
mod time;

pub use build::Policies;

use names::{BudgetKind, StrategyKind, list};

/// The data of one retry policy: every builder setting that is not code. Each setting left out
/// (`None`, or an empty map) keeps the builder's default; see the [module docs](self) for the
/// keys.
///
/// Build a policy with [`RetryPolicy::from_config`](crate::RetryPolicy::from_config) or
/// [`AsyncRetryPolicy::from_config`](crate::AsyncRetryPolicy::from_config), or declare it in a
/// [`RetryConfigSet`] to share budgets and breakers by name.
///
/// ```
/// use std::time::Duration;
/// use reflexio::config::{Deadline, RetryConfig, StrategyConfig};
/// use reflexio::{strategies::constant, ErrorClass, RetryPolicy};
///
/// let config: RetryConfig = toml::from_str(r#"
///     max_attempts = 3
///     deadline = "none"
///     strategy = { kind = "constant", delay = "1.5s" }
///     max_retries_for.rate_limit = 1
/// "#).unwrap();
/// assert_eq!(config.deadline, Some(Deadline::Off));
/// assert_eq!(config.strategy, Some(StrategyConfig::from(constant(Duration::from_millis(1500)))));
/// assert_eq!(config.max_retries_for[&ErrorClass::RateLimit], 1);
///
/// let policy = RetryPolicy::<std::io::Error>::from_config(&config).unwrap().build().unwrap();
/// assert!(policy.describe().contains("default strategy: constant(1.5s)"));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RetryConfig {
    /// The operation's name in every event and in `describe()`. In a [`RetryConfigSet`], the
    /// policy's own name when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// The total number of calls, the first included.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::attempts"
    )]
    pub max_attempts: Option<NonZeroU32>,
    /// The deadline of one call, or none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<Deadline>,
    /// The longest delay a server may ask for.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::positive"
    )]
    pub max_server_delay: Option<Duration>,
    /// The cap on retries after `unknown` failures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unknown_retries: Option<UnknownRetries>,
    /// The strategy of every class without one of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<StrategyConfig>,
    /// The strategies of single classes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub strategy_for: BTreeMap<ErrorClass, StrategyConfig>,
    /// The caps on retries after failures of single classes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub max_retries_for: BTreeMap<ErrorClass, u32>,
    /// The jitter's seed, for reproducible delays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// The longest an attempt may run (async policies only).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::positive"
    )]
    pub attempt_timeout: Option<Duration>,
    /// A retry budget: the policy's own, or one declared in [`RetryConfigSet::budgets`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<NamedOr<BudgetConfig>>,
    /// A circuit breaker: the policy's own, or one declared in
    /// [`RetryConfigSet::circuit_breakers`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<NamedOr<BreakerConfig>>,
}

/// A configuration file's worth of policies, with the budgets and circuit breakers they share by
/// name. Build it with [`Policies::from_config`].
///
/// ```
/// use reflexio::config::{NamedOr, RetryConfigSet};
///
/// let set: RetryConfigSet = toml::from_str(r#"
///     [budgets.users_db]
///     kind = "ratio"
///     percent = 10
///
///     [policies.fetch_user]
///     budget = "users_db"
/// "#).unwrap();
/// assert_eq!(set.policies["fetch_user"].budget, Some(NamedOr::Named("users_db".into())));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RetryConfigSet {
    /// Budgets by name, for policies to share.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub budgets: BTreeMap<String, BudgetConfig>,
    /// Circuit breakers by name, for policies to share.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub circuit_breakers: BTreeMap<String, BreakerConfig>,
    /// Policies by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub policies: BTreeMap<String, RetryConfig>,
}

/// The deadline of a call: `"30s"`, or `"none"` for no deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deadline {
    /// No deadline (`"none"`): only the attempt caps bound a call.
    Off,
    /// A deadline, greater than zero.
    After(Duration),
}

/// The cap on retries after `unknown` failures: a number, or `"none"` for no cap of their own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnknownRetries {
    /// No cap of their own (`"none"`): only the other limits.
    NoCap,
    /// At most this many retries.
    AtMost(u32),
}

/// A setting given by the name of an entry declared elsewhere in the configuration, or written
/// in place: `budget = "users_db"` or `budget = { kind = "ratio", percent = 10 }`.
#[derive(Clone, Debug, PartialEq)]
pub enum NamedOr<T> {
    /// The name of an entry of [`RetryConfigSet::budgets`] or
    /// [`RetryConfigSet::circuit_breakers`].
    Named(String),
    /// The settings, written in place.
    Inline(T),
}

/// A backoff strategy by its constructor's name (`kind`), with its parameters: those left out
/// keep the constructor's defaults (see [`strategies`](crate::strategies)).
///
/// | `kind` | parameters |
/// |---|---|
/// | `decorrelated_jitter`, `equal_jitter`, `token_backoff`, `full_jitter` | `base`, `max` |
/// | `exponential` | `base`, `max`, `factor` |
/// | `constant` | `delay` (required) |
/// | `no_delay` | none |
///
/// In code, make one from the strategy itself; it is written with every parameter.
///
/// ```
/// use std::time::Duration;
/// use reflexio::config::StrategyConfig;
/// use reflexio::strategies::decorrelated_jitter;
///
/// let s: StrategyConfig = toml::from_str(r#"kind = "decorrelated_jitter"
///                                           base = "100ms""#).unwrap();
/// assert_eq!(s, StrategyConfig::from(decorrelated_jitter().base(Duration::from_millis(100))));
/// assert_eq!(s.to_string(), "decorrelated_jitter(base 100ms, max 30s)");
/// assert_eq!(
///     toml::to_string(&s).unwrap(),
///     "kind = \"decorrelated_jitter\"\nbase = \"100ms\"\nmax = \"30s\"\n"
/// );
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "StrategyFields", into = "StrategyFields")]
pub struct StrategyConfig(Kind);

/// The strategy of a [`StrategyConfig`], as its own type. (Its variants are not public: they
/// would share the names of the strategy types, and rustc then writes those types' full paths
/// in every diagnostic.)
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    DecorrelatedJitter(DecorrelatedJitter),
    EqualJitter(EqualJitter),
    TokenBackoff(TokenBackoff),
    FullJitter(FullJitter),
    Exponential(Exponential),
    Constant(Constant),
    NoDelay(NoDelay),
}

impl StrategyConfig {
    /// The strategy, to compute delays or describe it.
    ///
    /// ```
    /// use std::time::Duration;
    /// use reflexio::config::StrategyConfig;
    /// use reflexio::strategies::{constant, BackoffContext};
    /// use reflexio::ErrorClass;
    ///
    /// let s = StrategyConfig::from(constant(Duration::from_secs(1)));
    /// let ctx = BackoffContext::new(1, ErrorClass::Transient);
    /// assert_eq!(s.strategy().delay(&ctx, 0.5), Duration::from_secs(1));
    /// ```
    #[must_use]
    pub fn strategy(&self) -> &dyn Strategy {
        match &self.0 {
            Kind::DecorrelatedJitter(s) => s,
            Kind::EqualJitter(s) => s,
            Kind::TokenBackoff(s) => s,
            Kind::FullJitter(s) => s,
            Kind::Exponential(s) => s,
            Kind::Constant(s) => s,
            Kind::NoDelay(s) => s,
        }
    }
}

/// Its description, as in `describe()`: `decorrelated_jitter(base 100ms, max 30s)`.
impl fmt::Display for StrategyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.strategy().describe(f)
    }
}

macro_rules! strategy_from {
    ($($kind:ident),*) => {$(
        impl From<$kind> for StrategyConfig {
            fn from(s: $kind) -> Self {
                StrategyConfig(Kind::$kind(s))
            }
        }
    )*};
}

strategy_from!(
    DecorrelatedJitter,
    EqualJitter,
    TokenBackoff,
    FullJitter,
    Exponential,
    NoDelay
);

/// A constant strategy with a cap is the constant strategy of the capped delay.
impl From<Constant> for StrategyConfig {
    fn from(s: Constant) -> Self {
        StrategyConfig(Kind::Constant(constant(s.fixed_delay())))
    }
}

/// A retry budget by its model (`kind`), with its settings: those left out keep the builder's
/// defaults (see [`RetryBudget`](crate::RetryBudget)).
///
/// | `kind` | settings |
/// |---|---|
/// | `ratio` | `percent` (required), `min_retries_per_sec`, `window`, `cost` |
/// | `token_bucket` | `capacity` (required), `cost_all`, `cost`, `failure_charge`, `success_reward`, `refund_on_success`, `retry_above` |
/// | `aws_standard` | none |
/// | `grpc` | `max_tokens`, `token_ratio` (both required) |
///
/// `cost` is a table of costs by class: `cost = { rate_limit = 5 }`.
///
/// ```
/// use reflexio::config::BudgetConfig;
///
/// let b: BudgetConfig = toml::from_str(r#"kind = "grpc"
///                                        max_tokens = 10
///                                        token_ratio = 0.1"#).unwrap();
/// assert_eq!(b, BudgetConfig::Grpc { max_tokens: 10.0, token_ratio: 0.1 });
/// assert_eq!(b.build().unwrap().available(), 10.0);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "BudgetFields", into = "BudgetFields")]
#[non_exhaustive]
pub enum BudgetConfig {
    /// [`RetryBudget::ratio`](crate::RetryBudget::ratio).
    Ratio {
        /// The share of recent calls retries may add, in percent.
        percent: f64,
        /// Retries always allowed per second of window.
        min_retries_per_sec: Option<u32>,
        /// The window over which calls and retries are counted.
        window: Option<Duration>,
        /// The tokens a retry costs, by class of the failure.
        cost: BTreeMap<ErrorClass, f64>,
    },
    /// [`RetryBudget::token_bucket`](crate::RetryBudget::token_bucket).
    TokenBucket {
        /// The quota of tokens.
        capacity: f64,
        /// The cost of a retry after a failure of any class, before `cost`.
        cost_all: Option<f64>,
        /// The tokens a retry costs, by class of the failure.
        cost: BTreeMap<ErrorClass, f64>,
        /// Tokens every failed attempt takes.
        failure_charge: Option<f64>,
        /// Tokens a success returns.
        success_reward: Option<f64>,
        /// A success after retries returns the last retry's cost instead.
        refund_on_success: Option<bool>,
        /// Retry only while the balance is above this.
        retry_above: Option<f64>,
    },
    /// [`RetryBudget::aws_standard`](crate::RetryBudget::aws_standard).
    AwsStandard,
    /// [`RetryBudget::grpc`](crate::RetryBudget::grpc).
    Grpc {
        /// The tokens, at most 1000.
        max_tokens: f64,
        /// The tokens a success returns.
        token_ratio: f64,
    },
}

/// A circuit breaker's settings: those left out keep the builder's defaults (see
/// [`CircuitBreaker`](crate::CircuitBreaker)).
///
/// ```
/// use reflexio::config::BreakerConfig;
/// use reflexio::ErrorClass;
///
/// let b: BreakerConfig = toml::from_str(r#"failure_rate = 0.25
///                                         open_for = "1m"
///                                         trip_on = ["server_error", "transient"]"#).unwrap();
/// assert_eq!(b.trip_on, Some(vec![ErrorClass::ServerError, ErrorClass::Transient]));
/// assert!(b.build().is_ok());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct BreakerConfig {
    /// The share of failures, in `(0, 1]`, that opens the circuit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_rate: Option<f64>,
    /// The fewest calls in the window before the circuit may open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_calls: Option<u32>,
    /// The sliding window over which outcomes are counted.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "time::opt")]
    pub window: Option<Duration>,
    /// How long the circuit stays open before probing.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "time::opt")]
    pub open_for: Option<Duration>,
    /// How long a half-open period waits for its probes.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "time::opt")]
    pub probe_timeout: Option<Duration>,
    /// How many probes must succeed to close the circuit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probes: Option<u32>,
    /// The classes whose failures count toward opening.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trip_on: Option<Vec<ErrorClass>>,
}

/// Why a configuration could not be read: the key path of the wrong value, and what was wrong
/// with it. From [`from_deserializer`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadError {
    path: String,
    message: String,
}

impl LoadError {
    /// The key path of the wrong value, such as `policies.fetch_user.strategy.kind` (`.` for
    /// the document itself).
    #[must_use]
    pub fn path(&self) -> &str {
        &self.path
    }

    /// What was wrong, as the format's deserializer says it (with a line and column where it
    /// gives them).
    #[must_use]
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path == "." {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for LoadError {}

/// Reads a configuration ([`RetryConfigSet`], [`RetryConfig`], ...) from any serde
/// deserializer, naming the key path of a wrong value in the error.
///
/// # Errors
///
/// A [`LoadError`] with the key path and the deserializer's message.
///
/// ```
/// use reflexio::config::{from_deserializer, RetryConfigSet};
///
/// let text = r#"
///     [policies.fetch_user]
///     strategy = { kind = "decorelated_jitter" }
/// "#;
/// let err = from_deserializer::<RetryConfigSet, _>(toml::Deserializer::parse(text).unwrap())
///     .unwrap_err();
/// assert_eq!(err.path(), "policies.fetch_user.strategy.kind");
/// assert!(err.message().contains("unknown strategy `decorelated_jitter`, expected `decorrelated_jitter`, "));
/// ```
pub fn from_deserializer<'de, T, D>(deserializer: D) -> Result<T, LoadError>
where
    T: Deserialize<'de>,
    D: Deserializer<'de>,
{
    serde_path_to_error::deserialize(deserializer).map_err(|e| LoadError {
        path: e.path().to_string(),
        message: e.inner().to_string(),
    })
}

impl<T: Serialize> Serialize for NamedOr<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            NamedOr::Named(name) => s.serialize_str(name),
            NamedOr::Inline(value) => value.serialize(s),
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for NamedOr<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(core::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = NamedOr<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "the name of an entry declared in the configuration, or a table of settings",
                )
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(NamedOr::Named(v.to_owned()))
            }

            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(NamedOr::Inline)
            }
        }
        d.deserialize_any(V(core::marker::PhantomData))
    }
}

/// Checks that a `kind`'s table has the parameters that kind takes, and those it needs.
fn check_params(
    kind: &str,
    given: &[(&'static str, bool)],
    takes: &[&str],
    needs: &[&str],
) -> Result<(), String> {
    for &(name, present) in given {
        if present && !takes.contains(&name) {
            return Err(format!(
                "`{name}` is not a setting of `{kind}`, which takes {}",
                list(takes, "and")
            ));
        }
    }
    for need in needs {
        if !given
            .iter()
            .any(|&(name, present)| present && name == *need)
        {
            return Err(format!("`{kind}` needs `{need}`"));
        }
    }
    Ok(())
}

/// A strategy's table as written: its `kind` and every parameter any kind takes.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StrategyFields {
    kind: StrategyKind,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "time::opt")]
    base: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "time::opt")]
    max: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    factor: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "time::opt")]
    delay: Option<Duration>,
}

impl TryFrom<StrategyFields> for StrategyConfig {
    type Error = String;

    fn try_from(f: StrategyFields) -> Result<Self, String> {
        use StrategyKind as K;
        /// Sets `base` and `max` when given.
        macro_rules! base_max {
            ($strategy:expr) => {{
                let mut s = $strategy;
                if let Some(base) = f.base {
                    s = s.base(base);
                }
                if let Some(max) = f.max {
                    s = s.max(max);
                }
                s
            }};
        }
        let given = [
            ("base", f.base.is_some()),
            ("max", f.max.is_some()),
            ("factor", f.factor.is_some()),
            ("delay", f.delay.is_some()),
        ];
        let (takes, needs): (&[&str], &[&str]) = match f.kind {
            K::Exponential => (&["base", "max", "factor"], &[]),
            K::Constant => (&["delay"], &["delay"]),
            K::NoDelay => (&[], &[]),
            _ => (&["base", "max"], &[]),
        };
        check_params(names::Named::name(f.kind), &given, takes, needs)?;
        Ok(match f.kind {
            K::DecorrelatedJitter => base_max!(decorrelated_jitter()).into(),
            K::EqualJitter => base_max!(equal_jitter()).into(),
            K::TokenBackoff => base_max!(token_backoff()).into(),
            K::FullJitter => base_max!(full_jitter()).into(),
            K::Exponential => {
                let s = base_max!(exponential());
                f.factor.map_or(s, |factor| s.factor(factor)).into()
            }
            K::Constant => constant(f.delay.unwrap_or_default()).into(),
            K::NoDelay => no_delay().into(),
        })
    }
}

impl From<StrategyConfig> for StrategyFields {
    fn from(s: StrategyConfig) -> Self {
        let fields = |kind, (base, max)| StrategyFields {
            kind,
            base: Some(base),
            max: Some(max),
            factor: None,
            delay: None,
        };
        match s.0 {
            Kind::DecorrelatedJitter(s) => {
                fields(StrategyKind::DecorrelatedJitter, s.base_and_max())
            }
            Kind::EqualJitter(s) => fields(StrategyKind::EqualJitter, s.base_and_max()),
            Kind::TokenBackoff(s) => fields(StrategyKind::TokenBackoff, s.base_and_max()),
            Kind::FullJitter(s) => fields(StrategyKind::FullJitter, s.base_and_max()),
            Kind::Exponential(s) => {
                let (base, max, factor) = s.parts();
                StrategyFields {
                    factor: Some(factor),
                    ..fields(StrategyKind::Exponential, (base, max))
                }
            }
            Kind::Constant(s) => StrategyFields {
                kind: StrategyKind::Constant,
                base: None,
                max: None,
                factor: None,
                delay: Some(s.fixed_delay()),
            },
            Kind::NoDelay(_) => StrategyFields {
                kind: StrategyKind::NoDelay,
                base: None,
                max: None,
                factor: None,
                delay: None,
            },
        }
    }
}

/// A budget's table as written: its `kind` and every setting any kind takes.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BudgetFields {
    kind: BudgetKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    percent: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    min_retries_per_sec: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "time::opt")]
    window: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    capacity: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cost_all: Option<f64>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    cost: BTreeMap<ErrorClass, f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    failure_charge: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    success_reward: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refund_on_success: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    retry_above: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_tokens: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token_ratio: Option<f64>,
}

impl TryFrom<BudgetFields> for BudgetConfig {
    type Error = String;

    fn try_from(f: BudgetFields) -> Result<Self, String> {
        use BudgetKind as K;
        let given = [
            ("percent", f.percent.is_some()),
            ("min_retries_per_sec", f.min_retries_per_sec.is_some()),
            ("window", f.window.is_some()),
            ("capacity", f.capacity.is_some()),
            ("cost_all", f.cost_all.is_some()),
            ("cost", !f.cost.is_empty()),
            ("failure_charge", f.failure_charge.is_some()),
            ("success_reward", f.success_reward.is_some()),
            ("refund_on_success", f.refund_on_success.is_some()),
            ("retry_above", f.retry_above.is_some()),
            ("max_tokens", f.max_tokens.is_some()),
            ("token_ratio", f.token_ratio.is_some()),
        ];
        let (takes, needs): (&[&str], &[&str]) = match f.kind {
            K::Ratio => (
                &["percent", "min_retries_per_sec", "window", "cost"],
                &["percent"],
            ),
            K::TokenBucket => (
                &[
                    "capacity",
                    "cost_all",
                    "cost",
                    "failure_charge",
                    "success_reward",
                    "refund_on_success",
                    "retry_above",
                ],
                &["capacity"],
            ),
            K::AwsStandard => (&[], &[]),
            K::Grpc => (
                &["max_tokens", "token_ratio"],
                &["max_tokens", "token_ratio"],
            ),
        };
        check_params(names::Named::name(f.kind), &given, takes, needs)?;
        Ok(match f.kind {
            K::Ratio => BudgetConfig::Ratio {
                percent: f.percent.unwrap_or_default(),
                min_retries_per_sec: f.min_retries_per_sec,
                window: f.window,
                cost: f.cost,
            },
            K::TokenBucket => BudgetConfig::TokenBucket {
                capacity: f.capacity.unwrap_or_default(),
                cost_all: f.cost_all,
                cost: f.cost,
                failure_charge: f.failure_charge,
                success_reward: f.success_reward,
                refund_on_success: f.refund_on_success,
                retry_above: f.retry_above,
            },
            K::AwsStandard => BudgetConfig::AwsStandard,
            K::Grpc => BudgetConfig::Grpc {
                max_tokens: f.max_tokens.unwrap_or_default(),
                token_ratio: f.token_ratio.unwrap_or_default(),
            },
        })
    }
}

impl From<BudgetConfig> for BudgetFields {
    fn from(b: BudgetConfig) -> Self {
        let mut f = BudgetFields {
            kind: BudgetKind::AwsStandard,
            percent: None,
            min_retries_per_sec: None,
            window: None,
            capacity: None,
            cost_all: None,
            cost: BTreeMap::new(),
            failure_charge: None,
            success_reward: None,
            refund_on_success: None,
            retry_above: None,
            max_tokens: None,
            token_ratio: None,
        };
        match b {
            BudgetConfig::Ratio {
                percent,
                min_retries_per_sec,
                window,
                cost,
            } => {
                f.kind = BudgetKind::Ratio;
                f.percent = Some(percent);
                f.min_retries_per_sec = min_retries_per_sec;
                f.window = window;
                f.cost = cost;
            }
            BudgetConfig::TokenBucket {
                capacity,
                cost_all,
                cost,
                failure_charge,
                success_reward,
                refund_on_success,
                retry_above,
            } => {
                f.kind = BudgetKind::TokenBucket;
                f.capacity = Some(capacity);
                f.cost_all = cost_all;
                f.cost = cost;
                f.failure_charge = failure_charge;
                f.success_reward = success_reward;
                f.refund_on_success = refund_on_success;
                f.retry_above = retry_above;
            }
            BudgetConfig::AwsStandard => {}
            BudgetConfig::Grpc {
                max_tokens,
                token_ratio,
            } => {
                f.kind = BudgetKind::Grpc;
                f.max_tokens = Some(max_tokens);
                f.token_ratio = Some(token_ratio);
            }
        }
        f
    }
}
