//! [`tonic`] (feature `tonic`): [`Classify`] for [`tonic::Status`], by gRPC
//! code, honouring the server's `grpc-retry-pushback-ms`.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use tonic::Status;
//! use reflexio_core::{Classify, ErrorClass};
//!
//! assert_eq!(Status::unavailable("down").classification().class, ErrorClass::Transient);
//! assert_eq!(Status::not_found("no such user").classification().class, ErrorClass::Permanent);
//!
//! let mut status = Status::resource_exhausted("slow down");
//! status.metadata_mut().insert("grpc-retry-pushback-ms", "1500".parse().unwrap());
//! let c = status.classification();
//! assert_eq!((c.class, c.retry_after), (ErrorClass::RateLimit, Some(Duration::from_millis(1500))));
//! ```
//!
//! With a policy: the default classifier uses this impl, so a policy whose error type is
//! `tonic::Status` needs no `.classifier(..)`. With a generated client, clone it in the closure
//! (`let mut c = client.clone(); async move { c.get_user(request()).await }`):
//!
//! ```
//! use reflexio_core::{testing::VirtualClock, AsyncRetryPolicy};
//! use tonic::Status;
//!
//! let policy = AsyncRetryPolicy::<Status>::builder()
//!     .operation("GetUser")
//!     .clock(VirtualClock::new())
//!     .build()
//!     .unwrap();
//! let mut calls = 0;
//! let reply = futures::executor::block_on(policy.call(|| {
//!     calls += 1;
//!     let n = calls;
//!     async move { if n == 1 { Err(Status::unavailable("restarting")) } else { Ok(n) } }
//! }));
//! assert_eq!(reply.unwrap(), 2);
//! ```

use std::time::Duration;

use ::tonic::{Code, Status};

use crate::class::{Classification, ErrorClass};
use crate::classify::Classify;

/// The metadata key (a trailer) by which a gRPC server pushes back on retries (gRFC A6).
///
/// ```
/// use reflexio_core::integrations::tonic::PUSHBACK_KEY;
///
/// // A server asking for 2 s before the next try:
/// let mut status = tonic::Status::unavailable("overloaded");
/// status.metadata_mut().insert(PUSHBACK_KEY, "2000".parse().unwrap());
/// ```
pub const PUSHBACK_KEY: &str = "grpc-retry-pushback-ms";

/// Classifies a gRPC status code.
///
/// | code | class |
/// |---|---|
/// | `Unavailable`, `DeadlineExceeded` | `Transient` |
/// | `ResourceExhausted` | `RateLimit` |
/// | `Aborted` | `Concurrency` |
/// | `Unauthenticated` | `Auth` |
/// | `PermissionDenied` | `Permission` |
/// | `InvalidArgument`, `NotFound`, `AlreadyExists`, `FailedPrecondition`, `Unimplemented`, `OutOfRange` | `Permanent` |
/// | `Internal`, `Unknown`, `DataLoss` | `ServerError` |
/// | `Cancelled`, `Ok` | `Unknown` |
///
/// `Cancelled` is `Unknown` (retried, under the `Unknown` cap): a caller that cancels drops the
/// retry loop too, so a `Cancelled` that reaches the policy came from elsewhere, often a proxy or
/// a server shutting down, where one more try may work. `Ok` is not an error at all.
///
/// ```
/// use tonic::Code;
/// use reflexio_core::{integrations::tonic::classify_code, ErrorClass};
///
/// assert_eq!(classify_code(Code::Aborted), ErrorClass::Concurrency);
/// assert_eq!(classify_code(Code::DataLoss), ErrorClass::ServerError);
/// ```
#[must_use]
pub const fn classify_code(code: Code) -> ErrorClass {
    match code {
        Code::Unavailable | Code::DeadlineExceeded => ErrorClass::Transient,
        Code::ResourceExhausted => ErrorClass::RateLimit,
        Code::Aborted => ErrorClass::Concurrency,
        Code::Unauthenticated => ErrorClass::Auth,
        Code::PermissionDenied => ErrorClass::Permission,
        Code::InvalidArgument
        | Code::NotFound
        | Code::AlreadyExists
        | Code::FailedPrecondition
        | Code::Unimplemented
        | Code::OutOfRange => ErrorClass::Permanent,
        Code::Internal | Code::Unknown | Code::DataLoss => ErrorClass::ServerError,
        Code::Cancelled | Code::Ok => ErrorClass::Unknown,
    }
}

/// What the server's `grpc-retry-pushback-ms` says, read by [`pushback`].
///
/// ```
/// use std::time::Duration;
/// use reflexio_core::integrations::tonic::{pushback, Pushback};
///
/// let mut status = tonic::Status::resource_exhausted("quota");
/// status.metadata_mut().insert("grpc-retry-pushback-ms", "100".parse().unwrap());
/// match pushback(&status) {
///     Some(Pushback::RetryAfter(d)) => assert_eq!(d, Duration::from_millis(100)),
///     other => panic!("{other:?}"),
/// }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pushback {
    /// Retry no sooner than this.
    RetryAfter(Duration),
    /// Do not retry: the value was negative or not a number.
    Stop,
}

/// Reads the `grpc-retry-pushback-ms` metadata of a status: `None` if absent, else a
/// [`Pushback`]. Per gRFC A6, a non-negative integer is the minimum delay in milliseconds, and
/// a negative or unparseable value means "do not retry".
///
/// ```
/// use std::time::Duration;
/// use tonic::Status;
/// use reflexio_core::integrations::tonic::{pushback, Pushback};
///
/// let mut status = Status::unavailable("busy");
/// assert_eq!(pushback(&status), None);
/// status.metadata_mut().insert("grpc-retry-pushback-ms", "250".parse().unwrap());
/// assert_eq!(pushback(&status), Some(Pushback::RetryAfter(Duration::from_millis(250))));
/// status.metadata_mut().insert("grpc-retry-pushback-ms", "-1".parse().unwrap());
/// assert_eq!(pushback(&status), Some(Pushback::Stop));
/// ```
#[must_use]
pub fn pushback(status: &Status) -> Option<Pushback> {
    let value = status.metadata().get(PUSHBACK_KEY)?;
    let parsed = value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()));
    Some(match parsed {
        // Only digits: an overflow saturates (the policy's deadline bounds it).
        Some(ms) => Pushback::RetryAfter(Duration::from_millis(ms.parse().unwrap_or(u64::MAX))),
        None => Pushback::Stop,
    })
}

/// A status is classified by its code ([`classify_code`]), then, if that class is retried, by
/// its `grpc-retry-pushback-ms` ([`pushback`]):
///
/// - a valid pushback becomes the classification's `retry_after`: the next attempt waits at least
///   that long (the policy's caps and deadline still apply);
/// - a negative or malformed pushback makes the status `Permanent`, so the policy stops at once
///   (reason `non_retryable`), as gRFC A6 asks ("the server asks the client not to retry");
/// - on a status whose class is never retried, the pushback is ignored.
///
/// ```
/// use tonic::Status;
/// use reflexio_core::{Classify, ErrorClass};
///
/// let mut status = Status::unavailable("draining");
/// status.metadata_mut().insert("grpc-retry-pushback-ms", "soon".parse().unwrap());
/// assert_eq!(status.classification().class, ErrorClass::Permanent);
/// ```
impl Classify for Status {
    fn classification(&self) -> Classification {
        let class = classify_code(self.code());
        if !class.is_retryable() {
            return class.into();
        }
        match pushback(self) {
            None => class.into(),
            Some(Pushback::RetryAfter(delay)) => Classification::new(class).with_retry_after(delay),
            Some(Pushback::Stop) => ErrorClass::Permanent.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_pushback(code: Code, value: &str) -> Status {
        let mut status = Status::new(code, "test");
        status
            .metadata_mut()
            .insert(PUSHBACK_KEY, value.parse().unwrap());
        status
    }

    #[test]
    fn every_code_maps_as_the_issue_says() {
        use Code as C;
        let table = [
            (C::Ok, ErrorClass::Unknown),
            (C::Cancelled, ErrorClass::Unknown),
            (C::Unknown, ErrorClass::ServerError),
            (C::InvalidArgument, ErrorClass::Permanent),
            (C::DeadlineExceeded, ErrorClass::Transient),
            (C::NotFound, ErrorClass::Permanent),
            (C::AlreadyExists, ErrorClass::Permanent),
            (C::PermissionDenied, ErrorClass::Permission),
            (C::ResourceExhausted, ErrorClass::RateLimit),
            (C::FailedPrecondition, ErrorClass::Permanent),
            (C::Aborted, ErrorClass::Concurrency),
            (C::OutOfRange, ErrorClass::Permanent),
            (C::Unimplemented, ErrorClass::Permanent),
            (C::Internal, ErrorClass::ServerError),
            (C::Unavailable, ErrorClass::Transient),
            (C::DataLoss, ErrorClass::ServerError),
            (C::Unauthenticated, ErrorClass::Auth),
        ];
        for (code, class) in table {
            let status = Status::new(code, "x");
            assert_eq!(
                status.classification(),
                Classification::new(class),
                "{code:?}"
            );
            // The numeric code from the wire maps the same way.
            assert_eq!(classify_code(Code::from_i32(code as i32)), class);
        }
        assert_eq!(classify_code(Code::from_i32(99)), ErrorClass::ServerError); // unknown number: Code::Unknown
    }

    #[test]
    fn a_valid_pushback_is_a_minimum_delay() {
        for (value, ms) in [("0", 0), ("1", 1), ("2500", 2500), (" 7 ", 7)] {
            let c = with_pushback(Code::Unavailable, value).classification();
            assert_eq!(
                c,
                Classification::new(ErrorClass::Transient)
                    .with_retry_after(Duration::from_millis(ms)),
                "{value:?}"
            );
        }
        let huge = with_pushback(Code::ResourceExhausted, "99999999999999999999999");
        assert_eq!(
            huge.classification().retry_after,
            Some(Duration::from_millis(u64::MAX))
        );
    }

    #[test]
    fn a_negative_or_malformed_pushback_stops() {
        for value in ["-1", "-0", "1.5", "1e3", "abc", "", "+5", "0x10"] {
            for code in [Code::Unavailable, Code::ResourceExhausted, Code::Aborted] {
                let c = with_pushback(code, value).classification();
                assert_eq!(
                    c,
                    Classification::new(ErrorClass::Permanent),
                    "{code:?} {value:?}"
                );
            }
        }
    }

    #[test]
    fn a_pushback_on_a_never_retried_code_changes_nothing() {
        let c = with_pushback(Code::InvalidArgument, "100").classification();
        assert_eq!(c, Classification::new(ErrorClass::Permanent));
        let c = with_pushback(Code::Unauthenticated, "-1").classification();
        assert_eq!(c, Classification::new(ErrorClass::Auth));
    }

    #[test]
    #[cfg(feature = "http")] // for building the trailers
    fn the_pushback_from_trailers_is_read() {
        // A status built from the trailers a server sent, as tonic's client does.
        let mut trailers = ::http::HeaderMap::new();
        trailers.insert("grpc-status", "14".parse().unwrap());
        trailers.insert("grpc-message", "overloaded".parse().unwrap());
        trailers.insert(PUSHBACK_KEY, "300".parse().unwrap());
        let status = Status::from_header_map(&trailers).expect("a status");
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(
            status.classification().retry_after,
            Some(Duration::from_millis(300))
        );
    }
}
