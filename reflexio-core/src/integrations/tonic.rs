//! [`tonic`] (feature `tonic`): [`Classify`] for [`tonic::Status`], by gRPC
//! code, honouring the server's `grpc-retry-pushback-ms`.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use tonic::Status;
//! use reflexio::{Classify, ErrorClass};
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
//! use reflexio::{testing::VirtualClock, AsyncRetryPolicy};
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
/// use reflexio::integrations::tonic::PUSHBACK_KEY;
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
/// use reflexio::{integrations::tonic::classify_code, ErrorClass};
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
/// use reflexio::integrations::tonic::{pushback, Pushback};
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
    /// Do not retry: the value was negative, or not a valid pushback at all.
    Stop,
}

/// Reads the `grpc-retry-pushback-ms` metadata of a status: `None` if absent, else a
/// [`Pushback`].
///
/// gRFC A6 makes the value "an ASCII encoded signed 32-bit integer with no unnecessary leading
/// zeros" of milliseconds, and a negative or unparseable value the server asking the client not
/// to retry at all. So `0` to `2147483647` (ASCII digits only, no leading zero) is the minimum
/// delay, and everything else is [`Pushback::Stop`]: a negative number, a sign (`+5`, `-0`), a
/// leading zero (`007`), whitespace, a fraction, a value past `i32::MAX`, or no number at all.
///
/// ```
/// use std::time::Duration;
/// use tonic::Status;
/// use reflexio::integrations::tonic::{pushback, Pushback};
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
    Some(parse_pushback(value.as_bytes()))
}

/// A `grpc-retry-pushback-ms` value, read as [`pushback`] documents.
fn parse_pushback(value: &[u8]) -> Pushback {
    let canonical = match value {
        [b'0'] => true,
        [b'1'..=b'9', rest @ ..] => rest.iter().all(u8::is_ascii_digit),
        _ => false,
    };
    // Digits only: parsing fails past `i32::MAX` alone, a value A6 does not allow.
    let ms = canonical
        .then(|| std::str::from_utf8(value).ok()?.parse::<i32>().ok())
        .flatten();
    match ms {
        Some(ms) => Pushback::RetryAfter(Duration::from_millis(u64::from(ms.unsigned_abs()))),
        None => Pushback::Stop,
    }
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
/// use reflexio::{Classify, ErrorClass};
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
        for (value, ms) in [
            ("0", 0),
            ("1", 1),
            ("2500", 2500),
            ("2147483647", 2_147_483_647),
        ] {
            let c = with_pushback(Code::Unavailable, value).classification();
            assert_eq!(
                c,
                Classification::new(ErrorClass::Transient)
                    .with_retry_after(Duration::from_millis(ms)),
                "{value:?}"
            );
        }
    }

    #[test]
    fn a_negative_or_malformed_pushback_stops() {
        for value in [
            "-1",
            "-0",
            "-2147483648",
            "1.5",
            "1.",
            "1e3",
            "abc",
            "",
            "+5",
            "0x10",
            // Whitespace, which A6's integer has none of.
            " 7 ",
            "7 ",
            "\t7",
            "1 0",
            // Leading zeros, which A6 rules out.
            "00",
            "007",
            // Past a signed 32-bit integer.
            "2147483648",
            "4294967296",
            "99999999999999999999999",
        ] {
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

    /// Property tests: every value A6 allows, and hostile others.
    mod properties {
        use super::*;
        use proptest::prelude::{any, prop_assert, prop_assert_eq, prop_oneof, proptest};
        use proptest::sample::select;
        use proptest::strategy::Strategy;

        /// Whether `value` was read as what A6 allows: refused, or the canonical writing of a
        /// delay up to `i32::MAX` milliseconds.
        fn stopped_or_canonical(value: &[u8]) -> bool {
            match parse_pushback(value) {
                Pushback::Stop => true,
                Pushback::RetryAfter(d) => {
                    d.as_millis() <= 2_147_483_647 && d.as_millis().to_string().as_bytes() == value
                }
            }
        }

        fn hostile_char() -> impl Strategy<Value = char> {
            prop_oneof![
                select(vec![
                    '+',
                    '-',
                    ' ',
                    '\t',
                    '\n',
                    '\r',
                    '.',
                    ',',
                    '_',
                    'e',
                    'x',
                    '0',
                    '9',
                    '\u{a0}',
                    '\u{3000}',
                    '\u{660}',
                    '\u{966}',
                    '\u{ff10}',
                    '\u{1d7ce}',
                ]),
                any::<char>(),
            ]
        }

        proptest! {
            #[test]
            fn every_non_negative_i32_is_its_delay(ms in 0..=i32::MAX) {
                let want = Pushback::RetryAfter(Duration::from_millis(u64::from(ms.unsigned_abs())));
                prop_assert_eq!(parse_pushback(ms.to_string().as_bytes()), want);
                // And through a status's metadata, as a server sends it.
                let c = with_pushback(Code::Unavailable, &ms.to_string()).classification();
                prop_assert_eq!(c.retry_after, Some(Duration::from_millis(u64::from(ms.unsigned_abs()))));
            }

            #[test]
            fn negatives_and_values_past_i32_stop(
                n in prop_oneof![
                    i64::MIN..0,
                    (i64::from(i32::MAX) + 1)..=i64::MAX,
                ],
                big in proptest::string::string_regex("[1-9][0-9]{10,60}").unwrap(),
            ) {
                prop_assert_eq!(parse_pushback(n.to_string().as_bytes()), Pushback::Stop);
                prop_assert_eq!(parse_pushback(big.as_bytes()), Pushback::Stop);
                let c = with_pushback(Code::Unavailable, &n.to_string()).classification();
                prop_assert_eq!(c, Classification::new(ErrorClass::Permanent));
            }

            #[test]
            fn a_sign_space_zero_or_foreign_character_inserted_stops_or_writes_another_number(
                ms in 0..=i32::MAX, at in any::<usize>(), c in hostile_char(),
            ) {
                let mut chars: Vec<char> = ms.to_string().chars().collect();
                chars.insert(at % (chars.len() + 1), c);
                let value: String = chars.into_iter().collect();
                prop_assert!(stopped_or_canonical(value.as_bytes()), "{:?}", value);
                if !c.is_ascii_digit() {
                    prop_assert_eq!(parse_pushback(value.as_bytes()), Pushback::Stop, "{:?}", value);
                }
            }

            #[test]
            fn any_bytes_stop_or_are_a_canonical_delay(
                value in prop_oneof![
                    proptest::collection::vec(any::<u8>(), 0..64),
                    proptest::collection::vec(any::<u8>(), 0..4096),
                    proptest::string::string_regex("[0-9 +.-]{0,12}").unwrap().prop_map(String::into_bytes),
                    any::<String>().prop_map(String::into_bytes),
                ],
            ) {
                prop_assert!(stopped_or_canonical(&value), "{:?}", value);
            }
        }
    }
}
