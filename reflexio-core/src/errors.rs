//! reflexio's own error types: marker errors that carry their class, and [`ConfigError`].

use core::fmt;
use core::time::Duration;
use std::borrow::Cow;

use crate::class::{Classification, ErrorClass};
use crate::classify::Classify;
use crate::stop::StopReason;

/// A message that costs nothing to build from a `&'static str`.
type Message = Cow<'static, str>;

macro_rules! marker_error {
    ($(#[$doc:meta])* $name:ident => $class:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq)]
        pub struct $name {
            message: Message,
        }

        impl $name {
            #[doc = concat!("A `", stringify!($name), "` with the given message.")]
            pub fn new(message: impl Into<Cow<'static, str>>) -> Self {
                $name { message: message.into() }
            }

            /// The message given at construction.
            #[must_use]
            pub fn message(&self) -> &str {
                &self.message
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($what, ": {}"), self.message)
            }
        }

        impl std::error::Error for $name {}

        impl Classify for $name {
            fn classification(&self) -> Classification {
                Classification::new(ErrorClass::$class)
            }
        }
    };
}

marker_error!(
    /// An error that must never be retried ([`ErrorClass::Permanent`]).
    ///
    /// ```
    /// use reflexio::{Classify, ErrorClass, PermanentError};
    /// let e = PermanentError::new("unknown customer");
    /// assert_eq!(e.classification().class, ErrorClass::Permanent);
    /// assert_eq!(e.to_string(), "permanent error: unknown customer");
    /// ```
    PermanentError => Permanent, "permanent error"
);
marker_error!(
    /// A conflicting concurrent change, like an HTTP 409 ([`ErrorClass::Concurrency`]).
    ///
    /// ```
    /// use reflexio::{Classify, ConcurrencyError, ErrorClass};
    /// assert_eq!(ConcurrencyError::new("version changed").classification().class, ErrorClass::Concurrency);
    /// ```
    ConcurrencyError => Concurrency, "concurrency conflict"
);
marker_error!(
    /// A server-side failure, like an HTTP 5xx ([`ErrorClass::ServerError`]).
    ///
    /// ```
    /// use reflexio::{Classify, ErrorClass, ServerError};
    /// assert_eq!(ServerError::new("502 from upstream").classification().class, ErrorClass::ServerError);
    /// ```
    ServerError => ServerError, "server error"
);
marker_error!(
    /// A failure expected to go away by itself, like a timeout ([`ErrorClass::Transient`]).
    ///
    /// ```
    /// use reflexio::{Classify, ErrorClass, TransientError};
    /// assert_eq!(TransientError::new("timed out").classification().class, ErrorClass::Transient);
    /// ```
    TransientError => Transient, "transient error"
);

/// The server asked us to slow down ([`ErrorClass::RateLimit`]), optionally saying for how long.
///
/// ```
/// use std::time::Duration;
/// use reflexio::{Classify, ErrorClass, RateLimitError};
///
/// let e = RateLimitError::new("quota exceeded").with_retry_after(Duration::from_secs(3));
/// let c = e.classification();
/// assert_eq!(c.class, ErrorClass::RateLimit);
/// assert_eq!(c.retry_after, Some(Duration::from_secs(3)));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimitError {
    message: Message,
    retry_after: Option<Duration>,
}

impl RateLimitError {
    /// A `RateLimitError` with the given message and no suggested delay.
    pub fn new(message: impl Into<Cow<'static, str>>) -> Self {
        RateLimitError {
            message: message.into(),
            retry_after: None,
        }
    }

    /// Sets how long the server asked us to wait.
    #[must_use]
    pub fn with_retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = Some(retry_after);
        self
    }

    /// The message given at construction.
    #[must_use]
    pub fn message(&self) -> &str {
        &self.message
    }

    /// How long the server asked us to wait, if it said.
    #[must_use]
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}

impl fmt::Display for RateLimitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rate limited: {}", self.message)?;
        if let Some(d) = self.retry_after {
            write!(f, " (retry after {d:?})")?;
        }
        Ok(())
    }
}

impl std::error::Error for RateLimitError {}

impl Classify for RateLimitError {
    fn classification(&self) -> Classification {
        let c = Classification::new(ErrorClass::RateLimit);
        match self.retry_after {
            Some(d) => c.with_retry_after(d),
            None => c,
        }
    }
}

/// One setting of a policy builder that cannot work, found by `build()`.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum ConfigProblem {
    /// `max_attempts` is 0: the operation would never be called.
    ZeroMaxAttempts,
    /// The deadline is zero: no attempt could ever be retried.
    ZeroDeadline,
    /// The attempt timeout is zero: every attempt would time out at once.
    ZeroAttemptTimeout,
    /// An async policy has no way to sleep: neither the `tokio` nor the `futures-timer`
    /// feature is on, and neither `.sleeper(..)` nor `.clock(..)` is set.
    NoSleeper,
    /// A strategy's parameters are invalid (for example a `NaN` factor).
    InvalidStrategy {
        /// The class the strategy was set for, or `None` for the default strategy.
        class: Option<ErrorClass>,
        /// Why the strategy cannot work.
        reason: String,
    },
    /// Any other invalid setting, named with the reason.
    Invalid {
        /// The builder setting, as named in the API.
        setting: &'static str,
        /// Why it cannot work.
        reason: String,
    },
    /// A configuration (the `serde` feature's `config` module) refers to a budget, a circuit
    /// breaker or a policy by a name it does not declare.
    UnknownName {
        /// What the name was given for: `"budget"`, `"circuit_breaker"` or `"policy"`.
        setting: &'static str,
        /// The name.
        name: String,
    },
    /// A problem of one named entry of a configuration (the `serde` feature's
    /// `config::Policies`).
    InEntry {
        /// The entry's key path, such as `policies.fetch_user` or `budgets.users_db`.
        entry: String,
        /// The problem.
        problem: Box<ConfigProblem>,
    },
}

impl ConfigProblem {
    /// The builder setting this problem is about, as named in the API.
    #[must_use]
    pub fn setting(&self) -> &'static str {
        match self {
            ConfigProblem::ZeroMaxAttempts => "max_attempts",
            ConfigProblem::ZeroDeadline => "deadline",
            ConfigProblem::ZeroAttemptTimeout => "attempt_timeout",
            ConfigProblem::NoSleeper => "sleeper",
            ConfigProblem::InvalidStrategy { class: None, .. } => "strategy",
            ConfigProblem::InvalidStrategy { class: Some(_), .. } => "strategy_for",
            ConfigProblem::Invalid { setting, .. } | ConfigProblem::UnknownName { setting, .. } => {
                setting
            }
            ConfigProblem::InEntry { problem, .. } => problem.setting(),
        }
    }
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigProblem::ZeroMaxAttempts => f.write_str(
                "`max_attempts` must be at least 1 (it counts every call, the first included)",
            ),
            ConfigProblem::ZeroDeadline => f.write_str("`deadline` must be greater than zero"),
            ConfigProblem::ZeroAttemptTimeout => {
                f.write_str("`attempt_timeout` must be greater than zero")
            }
            ConfigProblem::NoSleeper => f.write_str(
                "`sleeper` is required: enable the `tokio` or `futures-timer` feature, \
                 or set `.sleeper(..)`",
            ),
            ConfigProblem::InvalidStrategy {
                class: None,
                reason,
            } => {
                write!(f, "`strategy` is invalid: {reason}")
            }
            ConfigProblem::InvalidStrategy {
                class: Some(class),
                reason,
            } => write!(f, "`strategy_for({class})` is invalid: {reason}"),
            ConfigProblem::Invalid { setting, reason } => write!(f, "`{setting}` {reason}"),
            ConfigProblem::UnknownName { setting, name } => {
                write!(
                    f,
                    "`{setting}` names `{name}`, which the configuration does not declare"
                )
            }
            ConfigProblem::InEntry { entry, problem } => write!(f, "in `{entry}`: {problem}"),
        }
    }
}

/// The error of a policy builder's `build()`: every setting that cannot work, reported at once.
///
/// Settings that are merely ineffective (a per-class cap above `max_attempts`, a cap on a class
/// that is never retried) are not errors.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use reflexio::{ConfigError, RetryPolicy, TransientError};
///
/// let err: ConfigError = RetryPolicy::<TransientError>::builder()
///     .max_attempts(0)
///     .deadline(Duration::ZERO)
///     .build()
///     .unwrap_err();
/// assert_eq!(err.problems().len(), 2);
/// assert_eq!(
///     err.to_string(),
///     "invalid retry policy: `max_attempts` must be at least 1 (it counts every call, the first \
///      included); `deadline` must be greater than zero"
/// );
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct ConfigError {
    problems: Vec<ConfigProblem>,
}

impl ConfigError {
    pub(crate) fn from_problems(problems: Vec<ConfigProblem>) -> Result<(), ConfigError> {
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { problems })
        }
    }

    /// Every problem found, in the order the settings are checked.
    #[must_use]
    pub fn problems(&self) -> &[ConfigProblem] {
        &self.problems
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid retry policy: ")?;
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// The error of a call rejected by an open [`CircuitBreaker`](crate::CircuitBreaker), without
/// calling the operation.
///
/// A policy with a circuit breaker returns it, converted with `From<CircuitOpen>` into the
/// policy's error type, when an attempt of a call is rejected.
///
/// ```
/// use std::time::Duration;
/// let e = reflexio::CircuitOpen::new(Duration::from_secs(3));
/// assert_eq!(e.retry_in(), Duration::from_secs(3));
/// assert_eq!(e.to_string(), "circuit breaker is open: call rejected (probing again in 3s)");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CircuitOpen {
    retry_in: Duration,
}

impl CircuitOpen {
    /// A rejection by a circuit that stays open for `retry_in` more.
    #[must_use]
    pub const fn new(retry_in: Duration) -> Self {
        CircuitOpen { retry_in }
    }

    /// How long until the circuit lets a probe through.
    #[must_use]
    pub const fn retry_in(&self) -> Duration {
        self.retry_in
    }
}

impl fmt::Display for CircuitOpen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("circuit breaker is open: call rejected (probing again in ")?;
        crate::strategies::fmt_duration(self.retry_in, f)?;
        f.write_str(")")
    }
}

impl std::error::Error for CircuitOpen {}

/// A rejected call is `Transient`: the dependency may recover, after `retry_in`.
impl Classify for CircuitOpen {
    fn classification(&self) -> Classification {
        Classification::new(ErrorClass::Transient).with_retry_after(self.retry_in)
    }
}

/// So that `io::Result` operations can use a circuit breaker: the kind is `Other`.
impl From<CircuitOpen> for std::io::Error {
    fn from(e: CircuitOpen) -> Self {
        std::io::Error::other(e)
    }
}

/// The error of an async attempt that ran longer than the policy's `attempt_timeout`: it was
/// dropped (cancelled) and counts as a [`Transient`](ErrorClass::Transient) failure.
///
/// ```
/// use std::time::Duration;
/// let e = reflexio::AttemptTimedOut::new(Duration::from_millis(500));
/// assert_eq!(e.to_string(), "attempt timed out after 500ms");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttemptTimedOut {
    timeout: Duration,
}

impl AttemptTimedOut {
    /// An attempt cancelled after `timeout`.
    #[must_use]
    pub const fn new(timeout: Duration) -> Self {
        AttemptTimedOut { timeout }
    }

    /// The timeout that was exceeded.
    #[must_use]
    pub const fn timeout(&self) -> Duration {
        self.timeout
    }
}

impl fmt::Display for AttemptTimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("attempt timed out after ")?;
        crate::strategies::fmt_duration(self.timeout, f)
    }
}

impl std::error::Error for AttemptTimedOut {}

impl Classify for AttemptTimedOut {
    fn classification(&self) -> Classification {
        Classification::new(ErrorClass::Transient)
    }
}

/// So that `io::Result` operations can use an attempt timeout: the kind is `TimedOut`.
impl From<AttemptTimedOut> for std::io::Error {
    fn from(e: AttemptTimedOut) -> Self {
        std::io::Error::new(std::io::ErrorKind::TimedOut, e)
    }
}

/// The error of `execute`: the last attempt's own error (or, for a policy that retries some
/// `Ok` values, the last value it rejected), with why and when the policy stopped.
///
/// `V` is the type of a rejected value: [`Infallible`](core::convert::Infallible) (the
/// default) for a policy without [`retry_if_ok`](crate::PolicyBuilder::retry_if_ok), whose
/// `execute` can only stop on an error.
///
/// Its `Display` says why the policy stopped; the last error is its
/// [`source`](std::error::Error::source), so a chain printer (`anyhow`'s `{:#}`) shows it once.
///
/// # Examples
///
/// ```
/// use std::error::Error as _;
/// use reflexio::{strategies::no_delay, ErrorClass, RetryPolicy, StopReason, TransientError};
///
/// let policy = RetryPolicy::builder().strategy(no_delay()).max_attempts(3).build().unwrap();
/// let err = policy.execute(|| Err::<(), _>(TransientError::new("down"))).unwrap_err();
/// assert_eq!(err.stop_reason(), StopReason::MaxAttempts);
/// assert_eq!(err.attempts(), 3);
/// assert_eq!(err.last_class(), Some(ErrorClass::Transient));
/// assert!(err.to_string().starts_with("gave up after 3 attempts (max_attempts) in "));
/// assert_eq!(err.source().unwrap().to_string(), "transient error: down");
/// assert_eq!(err.into_inner().message(), "down");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryError<E, V = core::convert::Infallible> {
    /// The last attempt's error, or the value the policy rejected last.
    pub(crate) last: Result<V, E>,
    pub(crate) stop: StopReason,
    pub(crate) attempts: u32,
    pub(crate) last_class: Option<ErrorClass>,
    pub(crate) elapsed: Duration,
}

impl<E, V> RetryError<E, V> {
    /// Why the policy stopped.
    #[must_use]
    pub fn stop_reason(&self) -> StopReason {
        self.stop
    }

    /// How many attempts were made (0 when an open circuit rejected the first one).
    #[must_use]
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The class of the last failure, if an attempt was made.
    #[must_use]
    pub fn last_class(&self) -> Option<ErrorClass> {
        self.last_class
    }

    /// The time from the start of the call to the decision to stop.
    #[must_use]
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }

    /// The last attempt's error, when the policy stopped on an error.
    #[must_use]
    pub fn error(&self) -> Option<&E> {
        self.last.as_ref().err()
    }

    /// The value the policy rejected last (its `retry_if_ok` rule classified it as a
    /// failure), when the policy stopped on such a value.
    #[must_use]
    pub fn rejected(&self) -> Option<&V> {
        self.last.as_ref().ok()
    }

    /// The last outcome: `Ok` with the value the policy rejected last, or `Err` with the last
    /// attempt's error.
    ///
    /// # Errors
    ///
    /// The last attempt's error, when the policy stopped on one.
    pub fn into_last(self) -> Result<V, E> {
        self.last
    }
}

impl<E> RetryError<E> {
    /// The last attempt's error.
    #[must_use]
    pub fn inner(&self) -> &E {
        match &self.last {
            Err(error) => error,
            Ok(never) => match *never {},
        }
    }

    /// The last attempt's error, by value.
    #[must_use]
    pub fn into_inner(self) -> E {
        match self.last {
            Err(error) => error,
            Ok(never) => match never {},
        }
    }
}

impl<E, V> fmt::Display for RetryError<E, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "gave up after {} attempt{} ({}) in ",
            self.attempts,
            if self.attempts == 1 { "" } else { "s" },
            self.stop
        )?;
        crate::strategies::fmt_duration(self.elapsed, f)?;
        if self.last.is_ok() {
            f.write_str(" on a rejected value")?;
            if let Some(class) = self.last_class {
                write!(f, " ({class})")?;
            }
        }
        Ok(())
    }
}

impl<E, V> std::error::Error for RetryError<E, V>
where
    E: std::error::Error + 'static,
    V: fmt::Debug,
{
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.last
            .as_ref()
            .err()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}
