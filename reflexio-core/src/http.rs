//! HTTP helpers that need no HTTP crate: status classification and `Retry-After` parsing.

use std::time::{Duration, SystemTime};

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
/// use reflexio::{http::classify_status, ErrorClass};
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
/// Accepts exactly the header's grammar:
///
/// - delay-seconds: one or more ASCII digits (`"120"`), with no sign, fraction or inner space.
///   A number too large for a `u64` saturates to `u64::MAX` seconds (a policy with a deadline
///   then stops rather than wait that long);
/// - an HTTP-date in any of the three formats RFC 9110 §5.6.7 asks recipients to accept:
///   IMF-fixdate (`"Sun, 06 Nov 1994 08:49:37 GMT"`), RFC 850 (`"Sunday, 06-Nov-94 08:49:37
///   GMT"`) and asctime (`"Sun Nov  6 08:49:37 1994"`, or `"Sun Nov 06 08:49:37 1994"`), each
///   byte for byte: names in their case, single spaces, two-digit fields. A date in the past
///   gives `Some(Duration::ZERO)`.
///
/// Spaces and tabs around the value are ignored: they are not part of a field value (RFC 9110
/// §5.5). Anything else gives `None`, and so do three dates the grammar allows but servers do
/// not send: a day name that disagrees with its date, a leap second (`:60`: servers format Unix
/// time, which has none), and a year before 1970. An RFC 850 two-digit year is 1970 to 2069.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use reflexio::http::parse_retry_after;
///
/// let now = UNIX_EPOCH + Duration::from_secs(784_111_767); // Sun, 06 Nov 1994 08:49:27 GMT
/// assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
/// assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now), Some(Duration::from_secs(10)));
/// assert_eq!(parse_retry_after("-1", now), None);
/// assert_eq!(parse_retry_after("Sun, +6 Nov 1994 08:49:37 GMT", now), None);
/// assert_eq!(parse_retry_after("soon", now), None);
/// ```
#[must_use]
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim_matches([' ', '\t']);
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Only digits: parsing fails on overflow alone.
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = parse_http_date(value)?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The instant of an HTTP-date, or `None` if `date` is not one.
///
/// The shape is checked here, the names and the calendar by `httpdate`: on its own, httpdate
/// (1.0.3) also reads strings outside the grammar. It takes any byte between an RFC 850 date
/// and its time, and trims whitespace around the date, line breaks and form feeds included.
fn parse_http_date(date: &str) -> Option<SystemTime> {
    if has_http_date_shape(date.as_bytes()) {
        httpdate::parse_http_date(date).ok()
    } else {
        None
    }
}

/// Whether `date` has the shape of an IMF-fixdate, an RFC 850 date or an asctime date.
///
/// In the templates, `#` is a digit, `_` a digit or a space (asctime's day is `2DIGIT / ( SP
/// DIGIT )`), `*` a letter of a day or month name, and any other byte stands for itself.
fn has_http_date_shape(date: &[u8]) -> bool {
    const IMF_FIXDATE: &[u8] = b"***, ## *** #### ##:##:## GMT";
    const ASCTIME: &[u8] = b"*** *** _# ##:##:## ####";
    // RFC 850's day name is spelled out, so its length varies: the rest has a fixed shape.
    const RFC_850_AFTER_DAY: &[u8] = b", ##-***-## ##:##:## GMT";
    fits(date, IMF_FIXDATE)
        || fits(date, ASCTIME)
        || date.len() > RFC_850_AFTER_DAY.len() && {
            let (day, rest) = date.split_at(date.len() - RFC_850_AFTER_DAY.len());
            day.iter().all(u8::is_ascii_alphabetic) && fits(rest, RFC_850_AFTER_DAY)
        }
}

fn fits(s: &[u8], template: &[u8]) -> bool {
    s.len() == template.len()
        && s.iter().zip(template).all(|(&c, &t)| match t {
            b'#' => c.is_ascii_digit(),
            b'_' => c == b' ' || c.is_ascii_digit(),
            b'*' => c.is_ascii_alphabetic(),
            _ => c == t,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

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

    /// Every `u16`, not a sample: 65 536 cases are cheaper than a property test's shrinking.
    #[test]
    fn every_u16_maps_as_documented() {
        let client_errors = [
            (400, ErrorClass::Permanent),
            (401, ErrorClass::Auth),
            (403, ErrorClass::Permission),
            (404, ErrorClass::Permanent),
            (408, ErrorClass::Transient),
            (409, ErrorClass::Concurrency),
            (422, ErrorClass::Permanent),
            (429, ErrorClass::RateLimit),
        ];
        for status in 0..=u16::MAX {
            let want = if (500..=599).contains(&status) {
                ErrorClass::ServerError
            } else {
                // Informational, success and redirect statuses, numbers that are not statuses
                // (below 100, from 600) and the other 4xx say nothing about retrying.
                client_errors
                    .iter()
                    .find(|(s, _)| *s == status)
                    .map_or(ErrorClass::Unknown, |(_, class)| *class)
            };
            assert_eq!(classify_status(status), want, "{status}");
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
        assert_eq!(
            parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"),
            Some(at(0))
        );
        assert_eq!(
            parse_http_date("Tue, 29 Feb 2000 12:00:00 GMT"),
            Some(at(951_825_600))
        );
        assert_eq!(
            parse_http_date("Sat, 28 Nov 2026 13:00:00 GMT"),
            Some(at(1_795_870_800))
        );
        assert_eq!(
            parse_http_date("Fri, 31 Dec 9999 23:59:59 GMT"),
            Some(at(253_402_300_799))
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

    #[test]
    fn dates_outside_the_grammar_are_refused() {
        let now = at(0);
        for bad in [
            // The issue's example: signs where digits go.
            "Sun, +6 Nov 1994 +8:+9:+7 GMT",
            "Sun, -6 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-+4 08:49:37 GMT",
            "Sun Nov +6 08:49:37 1994",
            // What httpdate 1.0.3 alone takes: any byte between an RFC 850 date and its time,
            // and line breaks, vertical tabs and form feeds around a date.
            "Sunday, 06-Nov-94X08:49:37 GMT",
            "Sunday, 06-Nov-94\t08:49:37 GMT",
            "Sun, 06 Nov 1994 08:49:37 GMT\n",
            "\r\nSun, 06 Nov 1994 08:49:37 GMT",
            "\u{b}Sun, 06 Nov 1994 08:49:37 GMT\u{c}",
            // Spacing, case and field widths other than the grammar's.
            "Sun,  06 Nov 1994 08:49:37 GMT",
            "Sun, 06\tNov 1994 08:49:37 GMT",
            "Sun Nov 6 08:49:37 1994",
            "Sun Nov  6  08:49:37 1994",
            "Sun Nov  6 8:49:37 1994",
            "sun, 06 nov 1994 08:49:37 gmt",
            "SUN, 06 NOV 1994 08:49:37 GMT",
            "Sun, 06 Nov 94 08:49:37 GMT",
            "Sunday, 06-Nov-1994 08:49:37 GMT",
            "Sun, 06-Nov-94 08:49:37 GMT",
            "Sun, 06 Nov 1994 08:49 GMT",
            "Sun, 06 Nov 1994 08:49:37",
            "Sun, 06 Nov 1994 08:49:37 GMT+1",
            // Unicode digits and spaces.
            "Sun, \u{660}6 Nov 1994 08:49:37 GMT",
            "Sun, ０6 Nov 1994 08:49:37 GMT",
            "Sun,\u{a0}06 Nov 1994 08:49:37 GMT",
            "\u{a0}Sun, 06 Nov 1994 08:49:37 GMT",
            // In the grammar, but never sent (see `parse_retry_after`).
            "Mon, 06 Nov 1994 08:49:37 GMT",
            "Sat, 31 Dec 2016 23:59:60 GMT",
            "Mon, 01 Jan 1900 00:00:00 GMT",
        ] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
        // Both asctime day forms, and spaces and tabs around a date.
        let want = Some(Duration::from_secs(784_111_777));
        assert_eq!(parse_retry_after("Sun Nov 06 08:49:37 1994", now), want);
        assert_eq!(
            parse_retry_after(" \tSun, 06 Nov 1994 08:49:37 GMT\t ", now),
            want
        );
    }

    #[test]
    fn delay_seconds_are_digits_only() {
        let now = at(0);
        for bad in [
            "+0",
            "-0",
            "+7",
            "-7",
            "1.0",
            "1.",
            ".5",
            "1e3",
            "1_000",
            "1,000",
            "1 2",
            "1\t2",
            "0x10",
            "7\n",
            "\r7",
            "\u{b}7",
            "\u{a0}7",
            "7\u{3000}",
            "\u{663}",
            "３",
            "١٢٣",
        ] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
        for (value, secs) in [
            ("0", 0),
            ("007", 7),
            ("\t7\t", 7),
            ("18446744073709551615", u64::MAX),
            ("18446744073709551616", u64::MAX),
        ] {
            assert_eq!(
                parse_retry_after(value, now),
                Some(Duration::from_secs(secs)),
                "{value:?}"
            );
        }
    }

    /// Property tests: dates built from random fields, then mangled.
    mod properties {
        use super::*;
        use proptest::prelude::{Just, any, prop_assert, prop_assert_eq, prop_oneof, proptest};
        use proptest::sample::select;
        use proptest::strategy::Strategy;

        const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
        const LONG_DAYS: [&str; 7] = [
            "Thursday",
            "Friday",
            "Saturday",
            "Sunday",
            "Monday",
            "Tuesday",
            "Wednesday",
        ];
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        /// The last second an HTTP-date can name: Fri, 31 Dec 9999 23:59:59 GMT.
        const LAST: u64 = 253_402_300_799;

        /// A civil date and time of day, in UTC.
        #[derive(Clone, Copy, Debug)]
        struct Civil {
            year: u64,
            month: u64,
            day: u64,
            hour: u64,
            min: u64,
            sec: u64,
        }

        fn days_in_month(year: u64, month: u64) -> u64 {
            match month {
                4 | 6 | 9 | 11 => 30,
                2 if year.is_multiple_of(4)
                    && (!year.is_multiple_of(100) || year.is_multiple_of(400)) =>
                {
                    29
                }
                2 => 28,
                _ => 31,
            }
        }

        /// Days from 1970-01-01 to a date from 1970 on (Howard Hinnant's `days_from_civil`).
        fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
            let y = if month <= 2 { year - 1 } else { year };
            let (era, yoe) = (y / 400, y % 400);
            let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
            let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
            era * 146_097 + doe - 719_468
        }

        /// The inverse of `days_from_civil` (Hinnant's `civil_from_days`).
        fn civil_from_secs(secs: u64) -> Civil {
            let z = secs / 86_400 + 719_468;
            let (era, doe) = (z / 146_097, z % 146_097);
            let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
            let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
            let mp = (5 * doy + 2) / 153;
            let month = if mp < 10 { mp + 3 } else { mp - 9 };
            let tod = secs % 86_400;
            Civil {
                year: yoe + era * 400 + u64::from(month <= 2),
                month,
                day: doy - (153 * mp + 2) / 5 + 1,
                hour: tod / 3600,
                min: tod / 60 % 60,
                sec: tod % 60,
            }
        }

        impl Civil {
            fn secs(self) -> u64 {
                days_from_civil(self.year, self.month, self.day) * 86_400
                    + self.hour * 3600
                    + self.min * 60
                    + self.sec
            }

            fn weekday(self) -> usize {
                usize::try_from(days_from_civil(self.year, self.month, self.day) % 7).unwrap()
            }

            fn month_name(self) -> &'static str {
                MONTHS[usize::try_from(self.month - 1).unwrap()]
            }

            /// Every way the grammar writes this instant: IMF-fixdate, RFC 850 (if its two-digit
            /// year reads back as this year) and asctime with either day form.
            fn renderings(self) -> Vec<String> {
                let Civil {
                    year,
                    day,
                    hour,
                    min,
                    sec,
                    ..
                } = self;
                let (wd, mon) = (DAYS[self.weekday()], self.month_name());
                let time = format!("{hour:02}:{min:02}:{sec:02}");
                let mut all = vec![
                    format!("{wd}, {day:02} {mon} {year:04} {time} GMT"),
                    format!("{wd} {mon} {day:2} {time} {year:04}"),
                    format!("{wd} {mon} {day:02} {time} {year:04}"),
                ];
                if (1970..2070).contains(&year) {
                    let long = LONG_DAYS[self.weekday()];
                    all.push(format!(
                        "{long}, {day:02}-{mon}-{:02} {time} GMT",
                        year % 100
                    ));
                }
                all
            }
        }

        /// Valid dates and times from random fields.
        fn civil() -> impl Strategy<Value = Civil> {
            (
                // Half in the years an RFC 850 date can write.
                prop_oneof![1970u64..2070, 1970u64..=9999],
                1u64..=12,
                1u64..=31,
                0u64..24,
                0u64..60,
                0u64..60,
            )
                .prop_filter("a day of that month", |&(y, m, d, ..)| {
                    d <= days_in_month(y, m)
                })
                .prop_map(|(year, month, day, hour, min, sec)| Civil {
                    year,
                    month,
                    day,
                    hour,
                    min,
                    sec,
                })
        }

        /// Characters that break parsers: signs, spaces and line breaks, separators, exponent
        /// and radix letters, digits of other scripts, and anything at all.
        fn hostile_char() -> impl Strategy<Value = char> {
            prop_oneof![
                select(vec![
                    '+',
                    '-',
                    ' ',
                    '\t',
                    '\n',
                    '\r',
                    '\u{b}',
                    '\u{c}',
                    '\0',
                    '.',
                    ',',
                    ':',
                    '_',
                    'e',
                    'x',
                    '0',
                    '9',
                    '\u{a0}',
                    '\u{2009}',
                    '\u{3000}',
                    '\u{660}',
                    '\u{966}',
                    '\u{ff10}',
                    '\u{1d7ce}',
                    'é',
                    'İ',
                ]),
                any::<char>(),
            ]
        }

        /// Spaces and tabs, which a field value does not include.
        fn ows() -> impl Strategy<Value = String> {
            proptest::string::string_regex("[ \t]{0,3}").unwrap()
        }

        /// The instant a string parses to, measured from the epoch.
        fn parse(s: &str) -> Option<u64> {
            parse_retry_after(s, UNIX_EPOCH).map(|d| d.as_secs())
        }

        /// Whether `s` is refused, or read as what the grammar writes: its digits (delay-seconds),
        /// or one of the ways the grammar writes the instant it is read as.
        fn refused_or_canonical(s: &str) -> bool {
            let Some(secs) = parse(s) else {
                return true;
            };
            let value = s.trim_matches([' ', '\t']);
            value.bytes().all(|b| b.is_ascii_digit())
                || secs <= LAST
                    && civil_from_secs(secs)
                        .renderings()
                        .iter()
                        .any(|r| r == value)
        }

        #[derive(Clone, Debug)]
        enum Edit {
            Insert(char),
            Delete,
            Replace(char),
        }

        fn edit(s: &str, at: usize, edit: &Edit) -> String {
            let mut chars: Vec<char> = s.chars().collect();
            let at = at % (chars.len() + 1);
            match *edit {
                Edit::Insert(c) => chars.insert(at, c),
                Edit::Delete | Edit::Replace(_) if at == chars.len() => {}
                Edit::Delete => {
                    chars.remove(at);
                }
                Edit::Replace(c) => chars[at] = c,
            }
            chars.into_iter().collect()
        }

        proptest! {
            #[test]
            fn a_date_from_random_fields_reads_back_as_its_instant(
                civil in civil(), form in 0usize..4, before in ows(), after in ows(),
                ahead in 0u64..1_000_000,
            ) {
                let renderings = civil.renderings();
                let date = &renderings[form % renderings.len()];
                let value = format!("{before}{date}{after}");
                let secs = civil.secs();
                prop_assert_eq!(parse(&value), Some(secs), "{:?}", value);
                // And as a delay from a `now` before it.
                let now = at(secs.saturating_sub(ahead));
                let want = Duration::from_secs(secs - secs.saturating_sub(ahead));
                prop_assert_eq!(parse_retry_after(&value, now), Some(want));
            }

            #[test]
            fn every_instant_reads_back_in_every_form(secs in 0..=LAST) {
                let civil = civil_from_secs(secs);
                prop_assert_eq!(civil.secs(), secs);
                for date in civil.renderings() {
                    prop_assert_eq!(parse(&date), Some(secs), "{:?}", date);
                }
            }

            #[test]
            fn any_single_edit_of_a_date_breaks_it_or_writes_another_date(
                civil in civil(), form in 0usize..4, c in hostile_char(),
            ) {
                let renderings = civil.renderings();
                let date = &renderings[form % renderings.len()];
                let len = date.len(); // ASCII
                for at in 0..=len {
                    // An inserted or deleted character changes a field's width: the grammar
                    // has none to spare. Only spaces and tabs may go around a date.
                    if !(matches!(c, ' ' | '\t') && (at == 0 || at == len)) {
                        let mangled = edit(date, at, &Edit::Insert(c));
                        prop_assert_eq!(parse(&mangled), None, "{:?}", mangled);
                    }
                    if at < len {
                        let mangled = edit(date, at, &Edit::Delete);
                        prop_assert_eq!(parse(&mangled), None, "{:?}", mangled);
                        // A replaced one may write another date ("Jun" for "Jan", a digit for a
                        // digit, asctime's " 6" for "06"), but only in the grammar's own words.
                        let mangled = edit(date, at, &Edit::Replace(c));
                        prop_assert!(refused_or_canonical(&mangled), "{:?}", mangled);
                    }
                }
            }

            #[test]
            fn a_mangled_date_is_refused_or_is_the_grammar_s_own_writing_of_its_instant(
                civil in civil(), form in 0usize..4,
                edits in proptest::collection::vec(
                    (any::<usize>(), prop_oneof![
                        hostile_char().prop_map(Edit::Insert),
                        Just(Edit::Delete),
                        hostile_char().prop_map(Edit::Replace),
                        // A digit for a digit, a letter for a letter: the likeliest to slip through.
                        select(('0'..='9').chain('A'..='Z').chain('a'..='z').collect::<Vec<_>>())
                            .prop_map(Edit::Replace),
                    ]),
                    1..4,
                ),
            ) {
                let renderings = civil.renderings();
                let mut s = renderings[form % renderings.len()].clone();
                for (at, e) in &edits {
                    s = edit(&s, *at, e);
                }
                prop_assert!(refused_or_canonical(&s), "{:?}", s);
            }

            #[test]
            fn a_sign_space_or_foreign_digit_for_a_digit_breaks_a_date(
                civil in civil(), form in 0usize..4, at in any::<usize>(),
                c in prop_oneof![
                    select(vec!['+', '-', ' ', '\t', '\u{a0}', '\u{660}', '\u{ff10}', '\u{1d7ce}']),
                    hostile_char().prop_filter("not a digit", |c| !c.is_ascii_digit()),
                ],
            ) {
                let renderings = civil.renderings();
                let date = &renderings[form % renderings.len()];
                let digits: Vec<usize> = date
                    .char_indices()
                    .filter(|(_, d)| d.is_ascii_digit())
                    .map(|(i, _)| i)
                    .collect();
                let mangled = edit(date, digits[at % digits.len()], &Edit::Replace(c));
                // The one exception: asctime's "06" becoming " 6".
                if !renderings.contains(&mangled) {
                    prop_assert_eq!(parse(&mangled), None, "{:?}", mangled);
                }
            }

            #[test]
            fn delay_seconds_read_as_their_number_and_saturate(
                digits in proptest::string::string_regex("[0-9]{1,60}").unwrap(),
                before in ows(), after in ows(),
            ) {
                let want = digits.parse::<u64>().unwrap_or(u64::MAX);
                let value = format!("{before}{digits}{after}");
                prop_assert_eq!(parse(&value), Some(want));
            }

            #[test]
            fn a_sign_fraction_inner_space_or_foreign_digit_breaks_delay_seconds(
                digits in proptest::string::string_regex("[0-9]{1,30}").unwrap(),
                at in any::<usize>(), c in hostile_char(),
            ) {
                let at = at % (digits.len() + 1);
                if !(c.is_ascii_digit() || matches!(c, ' ' | '\t') && (at == 0 || at == digits.len())) {
                    let mangled = edit(&digits, at, &Edit::Insert(c));
                    prop_assert_eq!(parse(&mangled), None, "{:?}", mangled);
                }
            }

            #[test]
            fn any_string_gives_nothing_or_what_the_grammar_allows(
                s in prop_oneof![
                    any::<String>(),
                    proptest::string::string_regex("(?s).{0,4000}").unwrap(),
                    proptest::string::string_regex("[0-9 +.,:\t-]{0,40}").unwrap(),
                ],
            ) {
                prop_assert!(refused_or_canonical(&s), "{:?}", s);
            }
        }
    }
}
