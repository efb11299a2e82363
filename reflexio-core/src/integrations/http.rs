//! The [`http`] crate (feature `http`): [`Classify`] for [`StatusCode`] and
//! [`retry_after`] for a [`HeaderMap`].
//!
//! Statuses are classified by [`classify_status`]; `retry_after` reads the `Retry-After` header
//! with [`parse_retry_after`]. Both are what the `reqwest` integration, or your own client
//! wrapper, builds on.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use http::{HeaderMap, HeaderValue, StatusCode, header::RETRY_AFTER};
//! use reflexio::{integrations::http::retry_after, Classify, ErrorClass};
//!
//! assert_eq!(StatusCode::SERVICE_UNAVAILABLE.classification().class, ErrorClass::ServerError);
//!
//! let mut headers = HeaderMap::new();
//! headers.insert(RETRY_AFTER, HeaderValue::from_static("3"));
//! assert_eq!(retry_after(&headers), Some(Duration::from_secs(3)));
//! ```

use std::time::{Duration, SystemTime};

use ::http::header::RETRY_AFTER;
use ::http::{HeaderMap, StatusCode};

use crate::class::Classification;
use crate::classify::Classify;
use crate::http::{classify_status, parse_retry_after};

/// A status is classified by [`classify_status`]: 429 is `RateLimit`, 5xx `ServerError`, 408
/// `Transient`, 401/403 `Auth`/`Permission`, 400/404/422 `Permanent`, 409 `Concurrency`, and
/// anything else (including 2xx) `Unknown`.
///
/// A status alone carries no `Retry-After`; use [`classify_parts`] when the headers are at hand.
///
/// ```
/// use http::StatusCode;
/// use reflexio::{Classify, ErrorClass};
///
/// assert_eq!(StatusCode::TOO_MANY_REQUESTS.classification().class, ErrorClass::RateLimit);
/// assert_eq!(StatusCode::NOT_FOUND.classification().class, ErrorClass::Permanent);
/// ```
impl Classify for StatusCode {
    fn classification(&self) -> Classification {
        Classification::new(classify_status(self.as_u16())).with_status(self.as_u16())
    }
}

/// The delay asked for by the `Retry-After` header of `headers`, measured from now, or `None`
/// if the header is missing or unreadable (see [`parse_retry_after`] for the accepted forms: a
/// number of seconds or an HTTP-date; a date in the past gives zero).
///
/// With several `Retry-After` headers, the first one that parses wins.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use http::{HeaderMap, HeaderValue, header::RETRY_AFTER};
/// use reflexio::integrations::http::retry_after;
///
/// let mut headers = HeaderMap::new();
/// assert_eq!(retry_after(&headers), None);
/// headers.insert(RETRY_AFTER, HeaderValue::from_static("120"));
/// assert_eq!(retry_after(&headers), Some(Duration::from_secs(120)));
/// headers.insert(RETRY_AFTER, HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT"));
/// assert_eq!(retry_after(&headers), Some(Duration::ZERO)); // in the past: retry now
/// headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
/// assert_eq!(retry_after(&headers), None);
/// ```
#[must_use]
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    retry_after_at(headers, SystemTime::now())
}

/// [`retry_after`] with an explicit "now", for HTTP-dates in tests.
///
/// # Examples
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use http::{HeaderMap, HeaderValue, header::RETRY_AFTER};
/// use reflexio::integrations::http::retry_after_at;
///
/// let mut headers = HeaderMap::new();
/// headers.insert(RETRY_AFTER, HeaderValue::from_static("Thu, 01 Jan 1970 00:01:00 GMT"));
/// assert_eq!(retry_after_at(&headers, UNIX_EPOCH), Some(Duration::from_secs(60)));
/// ```
#[must_use]
pub fn retry_after_at(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    headers
        .get_all(RETRY_AFTER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| parse_retry_after(v, now))
}

/// Classifies a response from its status and headers: [`classify_status`] plus the
/// `Retry-After` delay, if any. Returns `None` for a success (1xx, 2xx or 3xx), which is not
/// retried.
///
/// Every client built on the `http` crate can use it on its response's parts; the `reqwest`
/// integration does.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use http::{HeaderMap, HeaderValue, StatusCode, header::RETRY_AFTER};
/// use reflexio::{integrations::http::classify_parts, ErrorClass};
///
/// let mut headers = HeaderMap::new();
/// assert_eq!(classify_parts(StatusCode::OK, &headers), None);
///
/// headers.insert(RETRY_AFTER, HeaderValue::from_static("2"));
/// let c = classify_parts(StatusCode::TOO_MANY_REQUESTS, &headers).unwrap();
/// assert_eq!((c.class, c.retry_after), (ErrorClass::RateLimit, Some(Duration::from_secs(2))));
/// ```
#[must_use]
pub fn classify_parts(status: StatusCode, headers: &HeaderMap) -> Option<Classification> {
    if !(status.is_client_error() || status.is_server_error()) {
        return None;
    }
    let c = Classification::new(classify_status(status.as_u16())).with_status(status.as_u16());
    Some(match retry_after(headers) {
        Some(delay) => c.with_retry_after(delay),
        None => c,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::class::ErrorClass;
    use ::http::HeaderValue;
    use std::time::UNIX_EPOCH;

    #[test]
    fn every_status_is_classified_like_its_number() {
        for n in 100..=999u16 {
            let status = StatusCode::from_u16(n).unwrap();
            assert_eq!(status.classification().class, classify_status(n), "{n}");
            assert_eq!(status.classification().retry_after, None);
        }
    }

    #[test]
    fn retry_after_takes_the_first_readable_value() {
        let mut headers = HeaderMap::new();
        headers.append(RETRY_AFTER, HeaderValue::from_bytes(b"\xff").unwrap());
        headers.append(RETRY_AFTER, HeaderValue::from_static("later"));
        headers.append(
            RETRY_AFTER,
            HeaderValue::from_static("Thu, 01 Jan 1970 00:00:10 GMT"),
        );
        headers.append(RETRY_AFTER, HeaderValue::from_static("99"));
        assert_eq!(
            retry_after_at(&headers, UNIX_EPOCH),
            Some(Duration::from_secs(10))
        );
    }

    #[test]
    fn only_error_statuses_are_classified() {
        let headers = HeaderMap::new();
        for ok in [100, 200, 204, 301, 304] {
            assert_eq!(
                classify_parts(StatusCode::from_u16(ok).unwrap(), &headers),
                None
            );
        }
        assert_eq!(
            classify_parts(StatusCode::BAD_GATEWAY, &headers),
            Some(Classification::new(ErrorClass::ServerError).with_status(502))
        );
        assert_eq!(
            classify_parts(StatusCode::IM_A_TEAPOT, &headers),
            Some(Classification::new(ErrorClass::Unknown).with_status(418))
        );
    }
}
