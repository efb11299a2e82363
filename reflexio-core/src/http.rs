//! HTTP helpers that need no HTTP crate: status classification and `Retry-After` parsing.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::class::ErrorClass;

/// Classifies an HTTP status code.
///
/// | status | class |
/// |---|---|
/// | 401 | `Auth` |
/// | 403 | `Permission` |
/// | 400, 404, 422 | `Permanent` |
/// | 409 | `Concurrency` |
/// | 408 | `Transient` |
/// | 429 | `RateLimit` |
/// | 500..=599 | `ServerError` |
/// | anything else | `Unknown` |
///
/// ```
/// use reflexio_core::{http::classify_status, ErrorClass};
/// assert_eq!(classify_status(429), ErrorClass::RateLimit);
/// assert_eq!(classify_status(503), ErrorClass::ServerError);
/// assert_eq!(classify_status(418), ErrorClass::Unknown);
/// ```
#[must_use]
pub const fn classify_status(status: u16) -> ErrorClass {
    match status {
        401 => ErrorClass::Auth,
        403 => ErrorClass::Permission,
        400 | 404 | 422 => ErrorClass::Permanent,
        409 => ErrorClass::Concurrency,
        408 => ErrorClass::Transient,
        429 => ErrorClass::RateLimit,
        500..=599 => ErrorClass::ServerError,
        _ => ErrorClass::Unknown,
    }
}

/// Parses the value of a `Retry-After` header (RFC 9110 §10.2.3) into a delay from `now`.
///
/// Accepts delay-seconds (`"120"`) and an HTTP-date in any of the three formats RFC 9110 asks
/// recipients to accept: IMF-fixdate (`"Sun, 06 Nov 1994 08:49:37 GMT"`), RFC 850
/// (`"Sunday, 06-Nov-94 08:49:37 GMT"`) and asctime (`"Sun Nov  6 08:49:37 1994"`). A date in the
/// past gives `Some(Duration::ZERO)`. Garbage, negative or fractional seconds give `None`.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use reflexio_core::http::parse_retry_after;
///
/// let now = UNIX_EPOCH + Duration::from_secs(784_111_767); // Sun, 06 Nov 1994 08:49:27 GMT
/// assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
/// assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now), Some(Duration::from_secs(10)));
/// assert_eq!(parse_retry_after("-1", now), None);
/// assert_eq!(parse_retry_after("soon", now), None);
/// ```
#[must_use]
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    if value.bytes().all(|b| b.is_ascii_digit()) {
        // Saturate absurdly long values rather than failing: the policy's deadline bounds them.
        return Some(Duration::from_secs(
            value.parse::<u64>().unwrap_or(u64::MAX),
        ));
    }
    let at = parse_http_date(value)?;
    let at = UNIX_EPOCH.checked_add(Duration::from_secs(at))?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const LONG_DAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// Seconds since the Unix epoch of an HTTP-date, or `None` if it is not one.
fn parse_http_date(s: &str) -> Option<u64> {
    let parts: Vec<&str> = s.split_ascii_whitespace().collect();
    match parts.as_slice() {
        // IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT
        [wd, day, mon, year, time, "GMT"] if wd.len() == 4 && wd.ends_with(',') => {
            if !DAYS.contains(&&wd[..3]) || day.len() != 2 || year.len() != 4 {
                return None;
            }
            to_unix(year.parse().ok()?, month(mon)?, day.parse().ok()?, time)
        }
        // RFC 850: Sunday, 06-Nov-94 08:49:37 GMT
        [wd, date, time, "GMT"] if wd.ends_with(',') => {
            if !LONG_DAYS.contains(&&wd[..wd.len() - 1]) {
                return None;
            }
            let mut it = date.split('-');
            let (day, mon, yy) = (it.next()?, it.next()?, it.next()?);
            if it.next().is_some() || day.len() != 2 || yy.len() != 2 {
                return None;
            }
            let yy: u64 = yy.parse().ok()?;
            // RFC 9110: a two-digit year more than 50 years in the future is in the past century.
            let year = if yy < 70 { 2000 + yy } else { 1900 + yy };
            to_unix(year, month(mon)?, day.parse().ok()?, time)
        }
        // asctime: Sun Nov  6 08:49:37 1994
        [wd, mon, day, time, year] if wd.len() == 3 => {
            if !DAYS.contains(wd) || year.len() != 4 {
                return None;
            }
            to_unix(year.parse().ok()?, month(mon)?, day.parse().ok()?, time)
        }
        _ => None,
    }
}

fn month(name: &str) -> Option<u64> {
    MONTHS.iter().position(|m| *m == name).map(|i| i as u64 + 1)
}

fn to_unix(year: u64, month: u64, day: u64, time: &str) -> Option<u64> {
    let mut hms = time.split(':');
    let (h, m, s) = (hms.next()?, hms.next()?, hms.next()?);
    if hms.next().is_some() || h.len() != 2 || m.len() != 2 || s.len() != 2 {
        return None;
    }
    let (h, m, s): (u64, u64, u64) = (h.parse().ok()?, m.parse().ok()?, s.parse().ok()?);
    // 60 allows a leap second.
    if !(1970..=9999).contains(&year)
        || day == 0
        || day > days_in_month(year, month)
        || h > 23
        || m > 59
        || s > 60
    {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + s)
}

fn days_in_month(year: u64, month: u64) -> u64 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => {
            29
        }
        2 => 28,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date, for years from 1970
/// (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn statuses_map_as_documented() {
        assert_eq!(classify_status(401), ErrorClass::Auth);
        assert_eq!(classify_status(403), ErrorClass::Permission);
        for s in [400, 404, 422] {
            assert_eq!(classify_status(s), ErrorClass::Permanent);
        }
        assert_eq!(classify_status(409), ErrorClass::Concurrency);
        assert_eq!(classify_status(408), ErrorClass::Transient);
        assert_eq!(classify_status(429), ErrorClass::RateLimit);
        for s in [500, 502, 503, 504, 599] {
            assert_eq!(classify_status(s), ErrorClass::ServerError);
        }
        for s in [0, 200, 302, 418, 600, u16::MAX] {
            assert_eq!(classify_status(s), ErrorClass::Unknown);
        }
    }

    #[test]
    fn all_three_date_formats_give_the_same_instant() {
        let now = at(784_111_777 - 30); // 30 s before Sun, 06 Nov 1994 08:49:37 GMT
        let want = Some(Duration::from_secs(30));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
            want
        );
        assert_eq!(
            parse_retry_after("Sunday, 06-Nov-94 08:49:37 GMT", now),
            want
        );
        assert_eq!(parse_retry_after("Sun Nov  6 08:49:37 1994", now), want);
    }

    #[test]
    fn known_dates_convert_exactly() {
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(
            parse_http_date("Tue, 29 Feb 2000 12:00:00 GMT"),
            Some(951_825_600)
        );
        assert_eq!(
            parse_http_date("Sat, 28 Nov 2026 13:00:00 GMT"),
            Some(1_795_870_800)
        );
    }

    #[test]
    fn past_dates_mean_now_and_garbage_means_none() {
        let now = at(2_000_000_000);
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
            Some(Duration::ZERO)
        );
        for bad in [
            "",
            " ",
            "-5",
            "1.5",
            "+3",
            "10s",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 31 Feb 1994 08:49:37 GMT",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 25:49:37 GMT",
            "Sun, 6 Nov 1994 08:49:37 GMT",
            "tomorrow",
        ] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
        assert_eq!(parse_retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(Duration::from_secs(u64::MAX))
        );
    }
}
