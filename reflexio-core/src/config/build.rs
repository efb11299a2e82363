//! From configuration to builders: [`RetryPolicy::from_config`], [`AsyncRetryPolicy::from_config`]
//! and the registry of shared budgets and breakers, [`Policies`].

use std::collections::BTreeMap;

use super::{BreakerConfig, BudgetConfig, Deadline, NamedOr, RetryConfig, RetryConfigSet};
use super::{Kind, UnknownRetries};
use crate::async_policy::AsyncRetryPolicy;
use crate::budget::RetryBudget;
use crate::builder::{AsyncRetryPolicyBuilder, PolicyBuilder, RetryPolicyBuilder};
use crate::circuit::CircuitBreaker;
use crate::class::ErrorClass;
use crate::errors::{AttemptTimedOut, CircuitOpen, ConfigError, ConfigProblem};
use crate::policy::RetryPolicy;
use crate::time::VirtualClock;

/// Evaluates `$then` with `$s` bound to the strategy of `$config`, as its own type (so a policy
/// built from a configuration calls the same code as one built in Rust).
macro_rules! with_strategy {
    ($config:expr, |$s:ident| $then:expr) => {
        match $config.0 {
            Kind::DecorrelatedJitter($s) => $then,
            Kind::EqualJitter($s) => $then,
            Kind::TokenBackoff($s) => $then,
            Kind::FullJitter($s) => $then,
            Kind::Exponential($s) => $then,
            Kind::Constant($s) => $then,
            Kind::NoDelay($s) => $then,
        }
    };
}

impl BudgetConfig {
    /// Builds the budget these settings describe.
    ///
    /// # Errors
    ///
    /// The [`ConfigError`] of the budget's builder.
    ///
    /// ```
    /// use reflexio::config::BudgetConfig;
    ///
    /// let b: BudgetConfig = toml::from_str(r#"kind = "token_bucket"
    ///                                        capacity = 0"#).unwrap();
    /// assert_eq!(b.build().unwrap_err().problems()[0].setting(), "capacity");
    /// ```
    pub fn build(&self) -> Result<RetryBudget, ConfigError> {
        match self {
            BudgetConfig::Ratio {
                percent,
                min_retries_per_sec,
                window,
                cost,
            } => {
                let mut b = RetryBudget::ratio(*percent);
                if let Some(n) = min_retries_per_sec {
                    b = b.min_retries_per_sec(*n);
                }
                if let Some(w) = window {
                    b = b.window(*w);
                }
                for (&class, &tokens) in cost {
                    b = b.cost(class, tokens);
                }
                b.build()
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
                let mut b = RetryBudget::token_bucket(*capacity);
                if let Some(tokens) = cost_all {
                    b = b.cost_all(*tokens);
                }
                for (&class, &tokens) in cost {
                    b = b.cost(class, tokens);
                }
                if let Some(tokens) = failure_charge {
                    b = b.failure_charge(*tokens);
                }
                if let Some(tokens) = success_reward {
                    b = b.success_reward(*tokens);
                }
                if let Some(refund) = refund_on_success {
                    b = b.refund_on_success(*refund);
                }
                if let Some(tokens) = retry_above {
                    b = b.retry_above(*tokens);
                }
                b.build()
            }
            BudgetConfig::AwsStandard => Ok(RetryBudget::aws_standard()),
            BudgetConfig::Grpc {
                max_tokens,
                token_ratio,
            } => RetryBudget::grpc(*max_tokens, *token_ratio),
        }
    }
}

impl BreakerConfig {
    /// Builds the circuit breaker these settings describe, closed.
    ///
    /// # Errors
    ///
    /// The [`ConfigError`] of the breaker's builder.
    ///
    /// ```
    /// use reflexio::config::BreakerConfig;
    ///
    /// let b: BreakerConfig = toml::from_str("failure_rate = 1.5").unwrap();
    /// assert_eq!(b.build().unwrap_err().problems()[0].setting(), "failure_rate");
    /// ```
    pub fn build(&self) -> Result<CircuitBreaker, ConfigError> {
        let mut b = CircuitBreaker::builder();
        if let Some(rate) = self.failure_rate {
            b = b.failure_rate(rate);
        }
        if let Some(n) = self.min_calls {
            b = b.min_calls(n);
        }
        if let Some(w) = self.window {
            b = b.window(w);
        }
        if let Some(d) = self.open_for {
            b = b.open_for(d);
        }
        if let Some(d) = self.probe_timeout {
            b = b.probe_timeout(d);
        }
        if let Some(n) = self.probes {
            b = b.probes(n);
        }
        if let Some(classes) = &self.trip_on {
            b = b.trip_on(classes);
        }
        b.build()
    }
}

impl RetryConfig {
    /// Applies every setting but the budget, the breaker and the attempt timeout (which need
    /// more of the builder's types) to `b`. `name` is the operation's name when the
    /// configuration gives none.
    fn apply<E, C, K, R>(
        &self,
        name: Option<&str>,
        mut b: PolicyBuilder<E, C, K, R>,
    ) -> PolicyBuilder<E, C, K, R> {
        if let Some(operation) = self.operation.as_deref().or(name) {
            b = b.operation(operation);
        }
        if let Some(n) = self.max_attempts {
            b = b.max_attempts(n.get());
        }
        match self.deadline {
            Some(Deadline::After(d)) => b = b.deadline(d),
            Some(Deadline::Off) => b = b.no_deadline(),
            None => {}
        }
        if let Some(d) = self.max_server_delay {
            b = b.max_server_delay(d);
        }
        match self.max_unknown_retries {
            Some(UnknownRetries::AtMost(n)) => b = b.max_unknown_retries(Some(n)),
            Some(UnknownRetries::NoCap) => b = b.max_unknown_retries(None),
            None => {}
        }
        if let Some(strategy) = &self.strategy {
            b = with_strategy!(strategy, |s| b.strategy(s));
        }
        for (&class, strategy) in &self.strategy_for {
            b = with_strategy!(strategy, |s| b.strategy_for(class, s));
        }
        for (&class, &n) in &self.max_retries_for {
            b = b.max_retries_for(class, n);
        }
        if let Some(seed) = self.seed {
            b = b.seed(seed);
        }
        b
    }

    /// The problems `build()` would find in these settings (the budget and breaker aside):
    /// a policy built with them and nothing else.
    fn problems(&self) -> Vec<ConfigProblem> {
        let mut b = self.apply(None, AsyncRetryPolicy::<Probe>::builder());
        if let Some(t) = self.attempt_timeout {
            b = b.attempt_timeout(t);
        }
        match b
            .classifier(|_: &Probe| ErrorClass::Unknown)
            .clock(VirtualClock::new())
            .build()
        {
            Ok(_) => Vec::new(),
            Err(e) => e.problems().to_vec(),
        }
    }
}

/// The error type of the policy [`RetryConfig::problems`] builds.
#[derive(Debug)]
struct Probe;

impl From<AttemptTimedOut> for Probe {
    fn from(_: AttemptTimedOut) -> Self {
        Probe
    }
}

/// A policy's settings with its budget and breaker built.
#[derive(Clone, Debug)]
struct Resolved {
    config: RetryConfig,
    budget: Option<RetryBudget>,
    breaker: Option<CircuitBreaker>,
}

/// Where named budgets and breakers are looked up.
type Named<'a, T> = Option<&'a BTreeMap<String, T>>;

impl Resolved {
    /// Builds the budget and breaker (looking names up in `budgets` and `breakers`) and checks
    /// every other setting; the problems, if any.
    fn new(
        config: &RetryConfig,
        budgets: Named<'_, RetryBudget>,
        breakers: Named<'_, CircuitBreaker>,
    ) -> Result<Resolved, Vec<ConfigProblem>> {
        let mut problems = Vec::new();
        let budget = resolve(
            config.budget.as_ref(),
            budgets,
            "budget",
            BudgetConfig::build,
            &mut problems,
        );
        let breaker = resolve(
            config.circuit_breaker.as_ref(),
            breakers,
            "circuit_breaker",
            BreakerConfig::build,
            &mut problems,
        );
        problems.extend(config.problems());
        if problems.is_empty() {
            Ok(Resolved {
                config: config.clone(),
                budget,
                breaker,
            })
        } else {
            Err(problems)
        }
    }

    fn sync_builder<E>(&self, name: Option<&str>) -> RetryPolicyBuilder<E>
    where
        E: From<CircuitOpen>,
    {
        let mut b = self.config.apply(name, RetryPolicy::builder());
        if let Some(budget) = &self.budget {
            b = b.budget(budget.clone());
        }
        if let Some(breaker) = &self.breaker {
            b = b.circuit_breaker(breaker.clone());
        }
        b
    }

    fn async_builder<E>(&self, name: Option<&str>) -> AsyncRetryPolicyBuilder<E>
    where
        E: From<CircuitOpen> + From<AttemptTimedOut>,
    {
        let mut b = self.config.apply(name, AsyncRetryPolicy::builder());
        if let Some(budget) = &self.budget {
            b = b.budget(budget.clone());
        }
        if let Some(breaker) = &self.breaker {
            b = b.circuit_breaker(breaker.clone());
        }
        if let Some(t) = self.config.attempt_timeout {
            b = b.attempt_timeout(t);
        }
        b
    }
}

/// The budget or breaker `setting` of a policy: looked up by name in `named` (none without a
/// registry), or built from its inline settings. Problems go to `problems`.
fn resolve<T: Clone, C>(
    setting: Option<&NamedOr<C>>,
    named: Named<'_, T>,
    what: &'static str,
    build: impl FnOnce(&C) -> Result<T, ConfigError>,
    problems: &mut Vec<ConfigProblem>,
) -> Option<T> {
    let found = match setting? {
        NamedOr::Named(name) => named.and_then(|m| m.get(name)).cloned().ok_or_else(|| {
            vec![ConfigProblem::UnknownName {
                setting: what,
                name: name.clone(),
            }]
        }),
        NamedOr::Inline(settings) => build(settings).map_err(|e| e.problems().to_vec()),
    };
    found.map_err(|p| problems.extend(p)).ok()
}

fn fail<T>(problems: Vec<ConfigProblem>) -> Result<T, ConfigError> {
    Err(ConfigError::from_problems(problems).expect_err("called with problems"))
}

impl<E> RetryPolicy<E> {
    /// A builder with the settings of `config` (the `serde` feature), to which code adds what
    /// is not data (a classifier, an event hook, an `Ok` rule, ...) before `build()`.
    ///
    /// An inline budget or circuit breaker is built anew by each call: to share one between
    /// policies, declare it by name in a [`RetryConfigSet`] and use
    /// [`Policies`]. The error type must convert from [`CircuitOpen`], since the configuration
    /// may add a breaker without a rebuild.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming every problem of the configuration, as `build()` would: a
    /// budget or breaker given by name (there is no registry to find it in), an attempt
    /// timeout (async policies only), invalid settings.
    ///
    /// ```
    /// use reflexio::{config::RetryConfig, RetryPolicy};
    ///
    /// let config: RetryConfig = toml::from_str(r#"
    ///     operation = "sync_users"
    ///     max_attempts = 2
    ///     strategy = { kind = "no_delay" }
    /// "#).unwrap();
    /// let policy = RetryPolicy::<std::io::Error>::from_config(&config)?
    ///     .on_event(|e| eprintln!("{e}"))
    ///     .build()?;
    /// let mut calls = 0;
    /// let _ = policy.call(|| { calls += 1; Err::<(), _>(std::io::ErrorKind::TimedOut.into()) });
    /// assert_eq!(calls, 2);
    /// # Ok::<(), reflexio::ConfigError>(())
    /// ```
    pub fn from_config(config: &RetryConfig) -> Result<RetryPolicyBuilder<E>, ConfigError>
    where
        E: From<CircuitOpen>,
    {
        let blocking = blocking_problem(config);
        match Resolved::new(config, None, None) {
            Ok(resolved) if blocking.is_none() => Ok(resolved.sync_builder(None)),
            Ok(_) => fail(blocking.into_iter().collect()),
            Err(mut problems) => {
                problems.extend(blocking);
                fail(problems)
            }
        }
    }
}

impl<E> AsyncRetryPolicy<E> {
    /// A builder with the settings of `config` (the `serde` feature), to which code adds what
    /// is not data (a classifier, an event hook, an `Ok` rule, a sleeper, ...) before
    /// `build()`.
    ///
    /// As [`RetryPolicy::from_config`], and the error type must convert from
    /// [`AttemptTimedOut`] too, since the configuration may add an attempt timeout.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming every problem of the configuration, as `build()` would: a
    /// budget or breaker given by name, invalid settings.
    ///
    /// ```
    /// use reflexio::{config::RetryConfig, AsyncRetryPolicy};
    ///
    /// let config: RetryConfig = toml::from_str(r#"attempt_timeout = "2s""#).unwrap();
    /// let policy = AsyncRetryPolicy::<std::io::Error>::from_config(&config)?.build()?;
    /// assert!(policy.describe().contains("attempt timeout: 2s"));
    /// # Ok::<(), reflexio::ConfigError>(())
    /// ```
    pub fn from_config(config: &RetryConfig) -> Result<AsyncRetryPolicyBuilder<E>, ConfigError>
    where
        E: From<CircuitOpen> + From<AttemptTimedOut>,
    {
        match Resolved::new(config, None, None) {
            Ok(resolved) => Ok(resolved.async_builder(None)),
            Err(problems) => fail(problems),
        }
    }
}

/// The problem of an attempt timeout in a configuration built into a blocking policy.
fn blocking_problem(config: &RetryConfig) -> Option<ConfigProblem> {
    config.attempt_timeout.map(|_| ConfigProblem::Invalid {
        setting: "attempt_timeout",
        reason: "applies only to async policies: build this one as an `AsyncRetryPolicy`, \
                 or remove the setting"
            .into(),
    })
}

/// The policies of a [`RetryConfigSet`], with its named budgets and circuit breakers built once
/// each: every policy that names one gets a clone of the same (they share its counts). Give
/// the application one `Policies`, loaded at start-up, and build each policy from it by name.
///
/// # Examples
///
/// ```
/// use reflexio::config::{Policies, RetryConfigSet};
/// use reflexio::StopReason;
///
/// let set: RetryConfigSet = toml::from_str(r#"
///     [budgets.users_db]
///     kind = "token_bucket"
///     capacity = 1
///
///     [policies.fetch_user]
///     strategy = { kind = "no_delay" }
///     budget = "users_db"
///
///     [policies.save_user]
///     strategy = { kind = "no_delay" }
///     budget = "users_db"
/// "#).unwrap();
/// let policies = Policies::from_config(&set)?;
/// let fetch_user = policies.builder::<std::io::Error>("fetch_user")?.build()?;
/// let save_user = policies.builder::<std::io::Error>("save_user")?.build()?;
///
/// let timeout = || Err::<(), _>(std::io::Error::from(std::io::ErrorKind::TimedOut));
/// // fetch_user spends the budget's one token on its one retry...
/// assert_eq!(fetch_user.execute(timeout).unwrap_err().stop_reason(), StopReason::BudgetExhausted);
/// // ...so save_user, sharing it, cannot retry at all.
/// let err = save_user.execute(timeout).unwrap_err();
/// assert_eq!((err.stop_reason(), err.attempts()), (StopReason::BudgetExhausted, 1));
/// assert_eq!(policies.budget("users_db").unwrap().available(), 0.0);
/// # Ok::<(), reflexio::ConfigError>(())
/// ```
///
/// With `#[retry]`, whose policy is built once per function, keep each policy in a `static`
/// (a `LazyLock` built from a `Policies` in a `OnceLock`, filled at start-up) and name it with
/// `#[retry(policy = FETCH_USER)]`: the README of the `reflexio` crate shows it whole.
#[derive(Clone, Debug)]
pub struct Policies {
    entries: BTreeMap<String, Resolved>,
    budgets: BTreeMap<String, RetryBudget>,
    breakers: BTreeMap<String, CircuitBreaker>,
}

impl Policies {
    /// Builds every budget and circuit breaker of `set` once, and checks every policy.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] with every problem of every entry, each as a
    /// [`ConfigProblem::InEntry`] naming the entry (`budgets.users_db`,
    /// `policies.fetch_user`): invalid settings, and names of budgets or breakers that `set`
    /// does not declare ([`ConfigProblem::UnknownName`]).
    ///
    /// ```
    /// use reflexio::config::{Policies, RetryConfigSet};
    ///
    /// let set: RetryConfigSet = toml::from_str(r#"
    ///     [policies.fetch_user]
    ///     budget = "users"
    /// "#).unwrap();
    /// let err = Policies::from_config(&set).unwrap_err();
    /// assert_eq!(err.to_string(), "invalid retry policy: in `policies.fetch_user`: \
    ///                              `budget` names `users`, which the configuration does not declare");
    /// ```
    pub fn from_config(set: &RetryConfigSet) -> Result<Policies, ConfigError> {
        let mut problems = Vec::new();
        let budgets = build_all(&set.budgets, "budgets", BudgetConfig::build, &mut problems);
        let breakers = build_all(
            &set.circuit_breakers,
            "circuit_breakers",
            BreakerConfig::build,
            &mut problems,
        );
        let mut policies = BTreeMap::new();
        for (name, config) in &set.policies {
            match Resolved::new(config, Some(&budgets), Some(&breakers)) {
                Ok(resolved) => {
                    policies.insert(name.clone(), resolved);
                }
                Err(mut p) => {
                    // A name declared with invalid settings is reported at its declaration.
                    p.retain(|p| match p {
                        ConfigProblem::UnknownName { setting, name } => match *setting {
                            "budget" => !set.budgets.contains_key(name),
                            _ => !set.circuit_breakers.contains_key(name),
                        },
                        _ => true,
                    });
                    problems.extend(in_entry("policies", name, p));
                }
            }
        }
        ConfigError::from_problems(problems)?;
        Ok(Policies {
            entries: policies,
            budgets,
            breakers,
        })
    }

    /// A builder of the sync policy `name`, to which code adds what is not data before
    /// `build()`. Its operation is `name` unless the configuration names one. The error type
    /// must convert from [`CircuitOpen`], since the configuration may add a breaker without a
    /// rebuild.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when there is no policy `name`
    /// ([`ConfigProblem::UnknownName`]), or when it has an attempt timeout (async policies
    /// only).
    pub fn builder<E>(&self, name: &str) -> Result<RetryPolicyBuilder<E>, ConfigError>
    where
        E: From<CircuitOpen>,
    {
        let resolved = self.get(name)?;
        if let Some(p) = blocking_problem(&resolved.config) {
            return fail(in_entry("policies", name, vec![p]).collect());
        }
        Ok(resolved.sync_builder(Some(name)))
    }

    /// A builder of the async policy `name`, to which code adds what is not data before
    /// `build()`. Its operation is `name` unless the configuration names one. The error type
    /// must convert from [`CircuitOpen`] and [`AttemptTimedOut`], since the configuration may
    /// add a breaker or an attempt timeout without a rebuild.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when there is no policy `name` ([`ConfigProblem::UnknownName`]).
    ///
    /// ```
    /// use reflexio::config::{Policies, RetryConfigSet};
    ///
    /// let set: RetryConfigSet = toml::from_str(r#"
    ///     [policies.fetch_user]
    ///     attempt_timeout = "2s"
    /// "#).unwrap();
    /// let policies = Policies::from_config(&set)?;
    /// let policy = policies.async_builder::<std::io::Error>("fetch_user")?.build()?;
    /// assert!(policy.describe().starts_with("retry policy `fetch_user`"));
    /// assert!(policies.builder::<std::io::Error>("fetch_user").is_err()); // a timeout needs async
    /// assert!(policies.async_builder::<std::io::Error>("fetch_users").is_err());
    /// # Ok::<(), reflexio::ConfigError>(())
    /// ```
    pub fn async_builder<E>(&self, name: &str) -> Result<AsyncRetryPolicyBuilder<E>, ConfigError>
    where
        E: From<CircuitOpen> + From<AttemptTimedOut>,
    {
        Ok(self.get(name)?.async_builder(Some(name)))
    }

    fn get(&self, name: &str) -> Result<&Resolved, ConfigError> {
        self.entries.get(name).map_or_else(
            || {
                fail(vec![ConfigProblem::UnknownName {
                    setting: "policy",
                    name: name.to_owned(),
                }])
            },
            Ok,
        )
    }

    /// The configuration of the policy `name`.
    #[must_use]
    pub fn config(&self, name: &str) -> Option<&RetryConfig> {
        self.entries.get(name).map(|r| &r.config)
    }

    /// The names of the policies, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// The budget declared as `name` (a clone shares it).
    #[must_use]
    pub fn budget(&self, name: &str) -> Option<&RetryBudget> {
        self.budgets.get(name)
    }

    /// The circuit breaker declared as `name` (a clone shares it).
    #[must_use]
    pub fn circuit_breaker(&self, name: &str) -> Option<&CircuitBreaker> {
        self.breakers.get(name)
    }
}

/// Builds every entry of `table` (named `section` in the configuration).
fn build_all<C, T>(
    table: &BTreeMap<String, C>,
    section: &str,
    build: impl Fn(&C) -> Result<T, ConfigError>,
    problems: &mut Vec<ConfigProblem>,
) -> BTreeMap<String, T> {
    let mut entries = BTreeMap::new();
    for (name, settings) in table {
        match build(settings) {
            Ok(value) => {
                entries.insert(name.clone(), value);
            }
            Err(e) => problems.extend(in_entry(section, name, e.problems().to_vec())),
        }
    }
    entries
}

/// `problems` as problems of the entry `section.name`.
fn in_entry(
    section: &str,
    name: &str,
    problems: Vec<ConfigProblem>,
) -> impl Iterator<Item = ConfigProblem> {
    let entry = format!("{section}.{name}");
    problems
        .into_iter()
        .map(move |problem| ConfigProblem::InEntry {
            entry: entry.clone(),
            problem: Box::new(problem),
        })
}
