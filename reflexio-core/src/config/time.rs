//! Durations written as people write them (`"250ms"`, `"30s"`, `"1m30s"`, `"1.5s"`), parsed
//! and written by `humantime`, and the other scalar settings with their own words (`"none"`).

use core::fmt;
use core::num::NonZeroU32;
use core::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::ser::Serializer;

use super::{Deadline, UnknownRetries};

const EXAMPLES: &str = r#"such as "250ms", "30s" or "1m30s""#;

/// Parses a duration; `positive` rejects zero.
fn parse<E: de::Error>(text: &str, positive: bool) -> Result<Duration, E> {
    if text.trim_start().starts_with('-') {
        return Err(E::custom(format_args!(
            "invalid duration \"{text}\": a duration cannot be negative; expected a duration {EXAMPLES}"
        )));
    }
    let duration = humantime::parse_duration(text).map_err(|e| {
        E::custom(format_args!(
            "invalid duration \"{text}\" ({e}): expected a duration {EXAMPLES}"
        ))
    })?;
    if positive && duration.is_zero() {
        return Err(E::custom(format_args!(
            "invalid duration \"{text}\": must be greater than zero"
        )));
    }
    Ok(duration)
}

/// A duration as `humantime` writes it: `250ms`, `1m 30s`.
pub(super) fn format(duration: Duration) -> String {
    humantime::format_duration(duration).to_string()
}

struct DurationVisitor {
    positive: bool,
}

impl Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.positive {
            write!(f, "a duration greater than zero, {EXAMPLES}")
        } else {
            write!(f, "a duration {EXAMPLES}")
        }
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
        parse(v, self.positive)
    }
}

/// `Option<Duration>` fields (with `default` and `skip_serializing_if`): any duration.
pub(super) mod opt {
    use super::{Deserializer, Duration, DurationVisitor, Serializer, format};

    #[allow(clippy::ref_option, reason = "the signature serde's `with` calls")]
    pub(crate) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&format(*d)),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        d.deserialize_str(DurationVisitor { positive: false })
            .map(Some)
    }
}

/// `Option<Duration>` fields that must be greater than zero.
pub(super) mod positive {
    use super::{Deserializer, Duration, DurationVisitor};

    pub(crate) use super::opt::serialize;

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        d.deserialize_str(DurationVisitor { positive: true })
            .map(Some)
    }
}

/// `max_attempts`: a whole number of at least 1.
pub(super) mod attempts {
    use super::{Deserializer, NonZeroU32, Serializer, Visitor, de, fmt};

    #[allow(
        clippy::ref_option,
        clippy::trivially_copy_pass_by_ref,
        reason = "the signature serde's `with` calls"
    )]
    pub(crate) fn serialize<S: Serializer>(
        n: &Option<NonZeroU32>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match n {
            Some(n) => s.serialize_u32(n.get()),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<NonZeroU32>, D::Error> {
        d.deserialize_u32(AttemptsVisitor).map(Some)
    }

    struct AttemptsVisitor;

    impl Visitor<'_> for AttemptsVisitor {
        type Value = NonZeroU32;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(
                "a number of attempts from 1 to 4294967295 (every call, the first included)",
            )
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<NonZeroU32, E> {
            u32::try_from(v)
                .ok()
                .and_then(NonZeroU32::new)
                .ok_or_else(|| E::invalid_value(de::Unexpected::Unsigned(v), &self))
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<NonZeroU32, E> {
            match u64::try_from(v) {
                Ok(v) => self.visit_u64(v),
                Err(_) => Err(E::invalid_value(de::Unexpected::Signed(v), &self)),
            }
        }
    }
}

/// Accepts the word `none`, or what `other` accepts.
fn none_or<E: de::Error, T>(
    v: &str,
    other: impl FnOnce(&str) -> Result<T, E>,
    none: T,
) -> Result<T, E> {
    if v == "none" { Ok(none) } else { other(v) }
}

impl serde::Serialize for Deadline {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Deadline::Off => s.serialize_str("none"),
            Deadline::After(d) => s.serialize_str(&format(*d)),
        }
    }
}

impl<'de> serde::Deserialize<'de> for Deadline {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Deadline;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(
                    f,
                    "a duration greater than zero {EXAMPLES}, or \"none\" for no deadline"
                )
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Deadline, E> {
                none_or(v, |v| parse(v, true).map(Deadline::After), Deadline::Off)
            }
        }
        d.deserialize_str(V)
    }
}

impl serde::Serialize for UnknownRetries {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            UnknownRetries::NoCap => s.serialize_str("none"),
            UnknownRetries::AtMost(n) => s.serialize_u32(*n),
        }
    }
}

impl<'de> serde::Deserialize<'de> for UnknownRetries {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = UnknownRetries;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number of retries (0 or more), or \"none\" for no cap of their own")
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<UnknownRetries, E> {
                u32::try_from(v)
                    .map(UnknownRetries::AtMost)
                    .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<UnknownRetries, E> {
                match u64::try_from(v) {
                    Ok(v) => self.visit_u64(v),
                    Err(_) => Err(E::invalid_value(de::Unexpected::Signed(v), &self)),
                }
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<UnknownRetries, E> {
                none_or(
                    v,
                    |v| Err(E::invalid_value(de::Unexpected::Str(v), &self)),
                    UnknownRetries::NoCap,
                )
            }
        }
        d.deserialize_any(V)
    }
}
