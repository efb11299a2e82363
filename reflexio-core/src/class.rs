//! Error classes and the result of classifying an error.

use core::fmt;
use core::time::Duration;

/// The coarse class of a failure, which decides whether and how it is retried.
///
/// The eight classes are those of the Python original, with the same meaning:
///
/// | class | retried? | typical source |
/// |---|---|---|
/// | [`Auth`](ErrorClass::Auth) | never | 401, bad credentials |
/// | [`Permission`](ErrorClass::Permission) | never | 403, permission denied |
/// | [`Permanent`](ErrorClass::Permanent) | never | 400, 404, 422, invalid input |
/// | [`Concurrency`](ErrorClass::Concurrency) | yes | 409, serialization failure, deadlock |
/// | [`RateLimit`](ErrorClass::RateLimit) | yes | 429, quota exceeded, throttling |
/// | [`ServerError`](ErrorClass::ServerError) | yes | 5xx |
/// | [`Transient`](ErrorClass::Transient) | yes | timeouts, connection resets, 408 |
/// | [`Unknown`](ErrorClass::Unknown) | yes, under its own cap | anything unrecognised |
///
/// # Examples
///
/// ```
/// use reflexio::ErrorClass;
///
/// assert!(ErrorClass::Transient.is_retryable());
/// assert!(!ErrorClass::Permanent.is_retryable());
/// assert_eq!(ErrorClass::RateLimit.to_string(), "rate_limit");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ErrorClass {
    /// Authentication failed (HTTP 401). Never retried.
    Auth,
    /// The caller is not allowed (HTTP 403). Never retried.
    Permission,
    /// The request can never succeed as sent (HTTP 400, 404, 422). Never retried.
    Permanent,
    /// A conflicting concurrent change (HTTP 409, SQL serialization failure).
    Concurrency,
    /// The server asked us to slow down (HTTP 429).
    RateLimit,
    /// The server failed (HTTP 5xx).
    ServerError,
    /// A failure expected to go away by itself: timeouts, resets, refused connections.
    Transient,
    /// Not recognised. Retried, but under its own cap (`max_unknown_retries`).
    Unknown,
}

impl ErrorClass {
    /// Every class, in declaration order.
    pub const ALL: [ErrorClass; 8] = [
        ErrorClass::Auth,
        ErrorClass::Permission,
        ErrorClass::Permanent,
        ErrorClass::Concurrency,
        ErrorClass::RateLimit,
        ErrorClass::ServerError,
        ErrorClass::Transient,
        ErrorClass::Unknown,
    ];

    /// Whether failures of this class may be retried at all.
    ///
    /// `Auth`, `Permission` and `Permanent` are never retried; every other class is.
    ///
    /// ```
    /// use reflexio::ErrorClass;
    /// let retryable: Vec<_> = ErrorClass::ALL.into_iter().filter(|c| c.is_retryable()).collect();
    /// assert_eq!(retryable.len(), 5);
    /// ```
    #[must_use]
    pub const fn is_retryable(self) -> bool {
        !matches!(
            self,
            ErrorClass::Auth | ErrorClass::Permission | ErrorClass::Permanent
        )
    }

    /// The class's `snake_case` name, stable and low-cardinality: fit for logs and metric labels.
    ///
    /// ```
    /// use reflexio::ErrorClass;
    /// assert_eq!(ErrorClass::ServerError.as_str(), "server_error");
    /// ```
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Auth => "auth",
            ErrorClass::Permission => "permission",
            ErrorClass::Permanent => "permanent",
            ErrorClass::Concurrency => "concurrency",
            ErrorClass::RateLimit => "rate_limit",
            ErrorClass::ServerError => "server_error",
            ErrorClass::Transient => "transient",
            ErrorClass::Unknown => "unknown",
        }
    }

    /// Position in [`ErrorClass::ALL`], used to index per-class tables.
    pub(crate) const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The result of classifying an error: its [`ErrorClass`] and, optionally, how long the server
/// asked us to wait before trying again (an HTTP `Retry-After`, a gRPC pushback).
///
/// A policy never waits less than `retry_after` before the next attempt, and never lets it
/// bypass its limits: the attempt caps and the deadline still apply.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use reflexio::{Classification, ErrorClass};
///
/// let c = Classification::new(ErrorClass::RateLimit).with_retry_after(Duration::from_secs(2));
/// assert_eq!(c.class, ErrorClass::RateLimit);
/// assert_eq!(c.retry_after, Some(Duration::from_secs(2)));
///
/// let plain: Classification = ErrorClass::Transient.into();
/// assert_eq!(plain.retry_after, None);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Classification {
    /// The class of the error.
    pub class: ErrorClass,
    /// A delay suggested by the server; the next attempt waits at least this long.
    pub retry_after: Option<Duration>,
    /// The protocol status the class was read from (an HTTP status, a gRPC status code), for
    /// events and log lines: with a `retry_if_ok` rule it is what tells which response was
    /// rejected.
    pub status: Option<u16>,
}

impl Classification {
    /// A classification with no suggested delay.
    #[must_use]
    pub const fn new(class: ErrorClass) -> Self {
        Classification {
            class,
            retry_after: None,
            status: None,
        }
    }

    /// Sets the protocol status the class was read from.
    ///
    /// ```
    /// use reflexio::{http::classify_status, Classification};
    /// let c = Classification::new(classify_status(503)).with_status(503);
    /// assert_eq!(c.status, Some(503));
    /// ```
    #[must_use]
    pub const fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    /// Sets the server-suggested delay.
    #[must_use]
    pub const fn with_retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = Some(retry_after);
        self
    }
}

impl From<ErrorClass> for Classification {
    fn from(class: ErrorClass) -> Self {
        Classification::new(class)
    }
}
