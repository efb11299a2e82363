//! SQL error classification that needs no database crate: SQLSTATE codes and SQLite result
//! codes.
//!
//! Serialization failures and deadlocks are [`Concurrency`](ErrorClass::Concurrency): the
//! transaction can succeed if it is run again *from the start*, so retry the whole transaction,
//! not the failed statement. The `sqlx` feature classifies `sqlx::Error` with these functions
//! (see `integrations::sqlx`).
//!
//! # Examples
//!
//! ```
//! use reflexio::{sql::classify_sqlstate, ErrorClass};
//!
//! assert_eq!(classify_sqlstate("40001"), ErrorClass::Concurrency); // serialization_failure
//! assert_eq!(classify_sqlstate("23505"), ErrorClass::Permanent); // unique_violation
//! assert_eq!(classify_sqlstate("08006"), ErrorClass::Transient); // connection_failure
//! ```

// Product names (SQLite, PostgreSQL, MySQL, ODBC) and SQLSTATE are prose here, not code.
#![allow(clippy::doc_markdown)]

use crate::class::ErrorClass;

/// Classifies a SQLSTATE code (SQL standard, PostgreSQL, MySQL, ODBC).
///
/// | code | meaning | class |
/// |---|---|---|
/// | `40001` | serialization failure | `Concurrency` |
/// | `40P01` | deadlock detected (PostgreSQL) | `Concurrency` |
/// | class `08` | connection exception | `Transient` |
/// | `HYT00`, `HYT01` | timeout expired, connection timeout (ODBC) | `Transient` |
/// | `53300` | too many connections (PostgreSQL) | `Transient` |
/// | `57P03` | cannot connect now: the server is starting (PostgreSQL) | `Transient` |
/// | class `28` | invalid authorization specification | `Auth` |
/// | `42501` | insufficient privilege | `Permission` |
/// | classes `22`, `23`, `42` | data exception, integrity constraint violation, syntax error or access rule violation | `Permanent` |
/// | anything else | | `Unknown` |
///
/// `42501` is the one exception to "class 42 is `Permanent`": a missing privilege is the
/// [`Permission`](ErrorClass::Permission) class, which is never retried either, but tells the
/// reader what to fix. Codes are matched case-insensitively, with surrounding ASCII whitespace
/// ignored; anything else that is not five ASCII letters or digits is `Unknown`.
///
/// # Examples
///
/// ```
/// use reflexio::{sql::classify_sqlstate, ErrorClass};
///
/// assert_eq!(classify_sqlstate("40P01"), ErrorClass::Concurrency); // deadlock_detected
/// assert_eq!(classify_sqlstate("28P01"), ErrorClass::Auth); // invalid_password
/// assert_eq!(classify_sqlstate("42601"), ErrorClass::Permanent); // syntax_error
/// assert_eq!(classify_sqlstate("57P03"), ErrorClass::Transient); // cannot_connect_now
/// assert_eq!(classify_sqlstate("XX000"), ErrorClass::Unknown); // internal_error
/// ```
#[must_use]
pub fn classify_sqlstate(code: &str) -> ErrorClass {
    let code = code.trim_ascii();
    if code.len() != 5 || !code.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return ErrorClass::Unknown;
    }
    let mut upper = [0u8; 5];
    for (dst, src) in upper.iter_mut().zip(code.bytes()) {
        *dst = src.to_ascii_uppercase();
    }
    match &upper {
        b"40001" | b"40P01" => ErrorClass::Concurrency,
        b"HYT00" | b"HYT01" | b"53300" | b"57P03" | [b'0', b'8', ..] => ErrorClass::Transient,
        b"42501" => ErrorClass::Permission,
        [b'2', b'8', ..] => ErrorClass::Auth,
        [b'2', b'2' | b'3', ..] | [b'4', b'2', ..] => ErrorClass::Permanent,
        _ => ErrorClass::Unknown,
    }
}

/// Classifies an SQLite result code, primary (`5`, `SQLITE_BUSY`) or extended (`517`,
/// `SQLITE_BUSY_SNAPSHOT`): only its low byte, the primary code, decides.
///
/// | primary code | class |
/// |---|---|
/// | `SQLITE_BUSY` (5), `SQLITE_LOCKED` (6) | `Concurrency`: another connection holds the lock |
/// | `SQLITE_PROTOCOL` (15) | `Transient` |
/// | `SQLITE_PERM` (3), `SQLITE_READONLY` (8) | `Permission` |
/// | `SQLITE_AUTH` (23) | `Auth` |
/// | `SQLITE_ERROR` (1: syntax, missing table), `SQLITE_TOOBIG` (18), `SQLITE_CONSTRAINT` (19), `SQLITE_MISMATCH` (20), `SQLITE_RANGE` (25) | `Permanent` |
/// | anything else (I/O errors, a full or corrupt database, ...) | `Unknown` |
///
/// # Examples
///
/// ```
/// use reflexio::{sql::classify_sqlite_code, ErrorClass};
///
/// assert_eq!(classify_sqlite_code(5), ErrorClass::Concurrency); // SQLITE_BUSY
/// assert_eq!(classify_sqlite_code(517), ErrorClass::Concurrency); // SQLITE_BUSY_SNAPSHOT
/// assert_eq!(classify_sqlite_code(2067), ErrorClass::Permanent); // SQLITE_CONSTRAINT_UNIQUE
/// ```
#[must_use]
pub const fn classify_sqlite_code(code: i32) -> ErrorClass {
    match code & 0xff {
        5 | 6 => ErrorClass::Concurrency,
        15 => ErrorClass::Transient,
        3 | 8 => ErrorClass::Permission,
        23 => ErrorClass::Auth,
        1 | 18 | 19 | 20 | 25 => ErrorClass::Permanent,
        _ => ErrorClass::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_map_as_documented() {
        for code in ["40001", "40P01", "40p01"] {
            assert_eq!(classify_sqlstate(code), ErrorClass::Concurrency, "{code}");
        }
        for code in [
            "08000", "08001", "08003", "08004", "08006", "08P01", "HYT00", "HYT01", "hyt00",
            "53300", "57P03",
        ] {
            assert_eq!(classify_sqlstate(code), ErrorClass::Transient, "{code}");
        }
        for code in ["28000", "28P01"] {
            assert_eq!(classify_sqlstate(code), ErrorClass::Auth, "{code}");
        }
        assert_eq!(classify_sqlstate("42501"), ErrorClass::Permission);
        for code in [
            "22001", "22003", "22012", "22P02", "23000", "23502", "23503", "23505", "23514",
            "42601", "42703", "42P01", "42000", "42S02",
        ] {
            assert_eq!(classify_sqlstate(code), ErrorClass::Permanent, "{code}");
        }
        for code in [
            "00000", "40000", "40002", "40003", "53000", "53100", "53200", "57014", "57P01",
            "XX000", "HY000", "25P02",
        ] {
            assert_eq!(classify_sqlstate(code), ErrorClass::Unknown, "{code}");
        }
    }

    #[test]
    fn malformed_sqlstates_are_unknown() {
        for code in ["", "4000", "400011", "40 01", "4000!", "é0001", "0800"] {
            assert_eq!(classify_sqlstate(code), ErrorClass::Unknown, "{code:?}");
        }
        assert_eq!(classify_sqlstate(" 40001 "), ErrorClass::Concurrency);
    }

    #[test]
    fn sqlite_codes_use_the_primary_byte() {
        // Extended codes: BUSY_RECOVERY 261, BUSY_SNAPSHOT 517, LOCKED_SHAREDCACHE 262,
        // READONLY_DBMOVED 1032, CONSTRAINT_UNIQUE 2067, CONSTRAINT_PRIMARYKEY 1555,
        // CONSTRAINT_NOTNULL 1299, IOERR_READ 266, CORRUPT 11, FULL 13.
        for code in [5, 6, 261, 517, 262] {
            assert_eq!(
                classify_sqlite_code(code),
                ErrorClass::Concurrency,
                "{code}"
            );
        }
        assert_eq!(classify_sqlite_code(15), ErrorClass::Transient);
        for code in [3, 8, 1032] {
            assert_eq!(classify_sqlite_code(code), ErrorClass::Permission, "{code}");
        }
        assert_eq!(classify_sqlite_code(23), ErrorClass::Auth);
        for code in [1, 18, 19, 20, 25, 2067, 1555, 1299] {
            assert_eq!(classify_sqlite_code(code), ErrorClass::Permanent, "{code}");
        }
        for code in [0, 2, 10, 11, 13, 14, 266, -1, i32::MAX] {
            assert_eq!(classify_sqlite_code(code), ErrorClass::Unknown, "{code}");
        }
    }

    #[test]
    fn sqlite_primary_codes_map_as_documented() {
        for primary in 0..=255 {
            let want = match primary {
                5 | 6 => ErrorClass::Concurrency,
                15 => ErrorClass::Transient,
                3 | 8 => ErrorClass::Permission,
                23 => ErrorClass::Auth,
                1 | 18 | 19 | 20 | 25 => ErrorClass::Permanent,
                _ => ErrorClass::Unknown,
            };
            assert_eq!(classify_sqlite_code(primary), want, "{primary}");
        }
    }

    /// Property tests: SQLSTATEs from random characters, then mangled.
    mod properties {
        use super::*;
        use proptest::prelude::{any, prop_assert_eq, prop_oneof, proptest};
        use proptest::sample::select;
        use proptest::strategy::Strategy;

        /// The table of `classify_sqlstate`'s documentation, for an uppercase five-character
        /// code.
        fn documented(code: &str) -> ErrorClass {
            match code {
                "40001" | "40P01" => ErrorClass::Concurrency,
                "HYT00" | "HYT01" | "53300" | "57P03" => ErrorClass::Transient,
                "42501" => ErrorClass::Permission,
                _ => match &code[..2] {
                    "08" => ErrorClass::Transient,
                    "28" => ErrorClass::Auth,
                    "22" | "23" | "42" => ErrorClass::Permanent,
                    _ => ErrorClass::Unknown,
                },
            }
        }

        /// Five-character codes, often near the documented ones.
        fn code() -> impl Strategy<Value = String> {
            prop_oneof![
                proptest::string::string_regex("[0-9A-Za-z]{5}").unwrap(),
                proptest::string::string_regex("(08|22|23|28|42|40|53|57|HY|hy)[0-9A-Za-z]{3}")
                    .unwrap(),
                select(vec![
                    "40001", "40P01", "40p01", "HYT00", "hyt01", "53300", "57P03", "42501"
                ])
                .prop_map(str::to_owned),
            ]
        }

        /// Characters that are not ASCII letters or digits: signs, separators, whitespace,
        /// letters and digits of other scripts, and anything at all.
        fn foreign_char() -> impl Strategy<Value = char> {
            prop_oneof![
                select(vec![
                    '+', '-', '.', ' ', '\t', '\n', '\0', '\u{a0}', '\u{3000}', '\u{660}',
                    '\u{ff10}', '\u{ff21}', 'é', 'İ', 'ß', '\u{212a}',
                ]),
                any::<char>(),
            ]
            .prop_filter("not an ASCII letter or digit", |c| {
                !c.is_ascii_alphanumeric()
            })
        }

        proptest! {
            #[test]
            fn a_code_is_classified_by_the_table_in_any_case_and_padding(
                code in code(),
                before in proptest::string::string_regex("[ \t\n\r]{0,3}").unwrap(),
                after in proptest::string::string_regex("[ \t\n\r]{0,3}").unwrap(),
            ) {
                let want = documented(&code.to_ascii_uppercase());
                prop_assert_eq!(classify_sqlstate(&code), want);
                prop_assert_eq!(classify_sqlstate(&code.to_ascii_lowercase()), want);
                prop_assert_eq!(classify_sqlstate(&format!("{before}{code}{after}")), want);
            }

            #[test]
            fn a_foreign_character_inserted_or_substituted_makes_a_code_unknown(
                code in code(), at in 0usize..6, c in foreign_char(), substitute in any::<bool>(),
            ) {
                let mut chars: Vec<char> = code.chars().collect();
                if substitute {
                    chars[at % 5] = c;
                } else if c.is_ascii_whitespace() && (at == 0 || at == 5) {
                    // Around the code, ASCII whitespace is ignored.
                    return Ok(());
                } else {
                    chars.insert(at, c);
                }
                let mangled: String = chars.into_iter().collect();
                prop_assert_eq!(classify_sqlstate(&mangled), ErrorClass::Unknown, "{:?}", mangled);
            }

            #[test]
            fn a_code_padded_with_non_ascii_whitespace_is_unknown(
                code in code(),
                pad in select(vec!['\u{85}', '\u{a0}', '\u{2000}', '\u{2028}', '\u{3000}', '\u{feff}']),
            ) {
                prop_assert_eq!(classify_sqlstate(&format!("{pad}{code}")), ErrorClass::Unknown);
                prop_assert_eq!(classify_sqlstate(&format!("{code}{pad}")), ErrorClass::Unknown);
            }

            #[test]
            fn any_string_that_is_not_five_ascii_alphanumerics_is_unknown(
                s in prop_oneof![
                    any::<String>(),
                    proptest::string::string_regex("(?s).{0,2000}").unwrap(),
                    proptest::string::string_regex("[0-9A-Za-z]{0,4}|[0-9A-Za-z]{6,12}").unwrap(),
                ],
            ) {
                let trimmed = s.trim_ascii();
                let want = if trimmed.len() == 5 && trimmed.bytes().all(|b| b.is_ascii_alphanumeric()) {
                    documented(&trimmed.to_ascii_uppercase())
                } else {
                    ErrorClass::Unknown
                };
                prop_assert_eq!(classify_sqlstate(&s), want, "{:?}", s);
            }

            #[test]
            fn only_the_low_byte_of_an_sqlite_code_decides(
                primary in 0i32..=255, extended in any::<i32>(),
            ) {
                let code = (extended << 8) | primary;
                prop_assert_eq!(classify_sqlite_code(code), classify_sqlite_code(primary));
            }
        }
    }
}
