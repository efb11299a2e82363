//! Settings written as names: error classes (`rate_limit`), strategy and budget kinds.

use core::fmt;
use core::marker::PhantomData;

use serde::de::{self, Deserializer, Visitor};
use serde::ser::Serializer;

use crate::class::ErrorClass;

/// A closed set of values, each with a `snake_case` name.
pub(super) trait Named: Copy + 'static {
    /// What the values are, for messages: `error class`, `strategy`.
    const WHAT: &'static str;
    /// Every value.
    const ALL: &'static [Self];
    /// The value's name.
    fn name(self) -> &'static str;
}

impl Named for ErrorClass {
    const WHAT: &'static str = "error class";
    const ALL: &'static [Self] = &ErrorClass::ALL;
    fn name(self) -> &'static str {
        self.as_str()
    }
}

/// Declares an enum of unit variants with their names, serialised by name.
macro_rules! named {
    ($(#[$doc:meta])* $name:ident, $what:literal { $($(#[$vdoc:meta])* $variant:ident = $text:literal,)* }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub(super) enum $name {
            $($(#[$vdoc])* $variant,)*
        }

        impl Named for $name {
            const WHAT: &'static str = $what;
            const ALL: &'static [Self] = &[$($name::$variant,)*];
            fn name(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)*
                }
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                serialize(*self, s)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                deserialize(d)
            }
        }
    };
}

named!(
    /// The `kind` of a strategy.
    StrategyKind, "strategy" {
        DecorrelatedJitter = "decorrelated_jitter",
        EqualJitter = "equal_jitter",
        TokenBackoff = "token_backoff",
        FullJitter = "full_jitter",
        Exponential = "exponential",
        Constant = "constant",
        NoDelay = "no_delay",
    }
);

named!(
    /// The `kind` of a budget.
    BudgetKind, "budget kind" {
        Ratio = "ratio",
        TokenBucket = "token_bucket",
        AwsStandard = "aws_standard",
        Grpc = "grpc",
    }
);

/// `` `a`, `b` or `c` `` (with `conjunction` "or"), `nothing` for no name.
pub(super) fn list(names: &[&str], conjunction: &str) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    match quoted.split_last() {
        None => "nothing".to_owned(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} {conjunction} {last}", rest.join(", ")),
    }
}

fn serialize<T: Named, S: Serializer>(value: T, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(value.name())
}

fn deserialize<'de, T: Named, D: Deserializer<'de>>(d: D) -> Result<T, D::Error> {
    d.deserialize_str(NameVisitor(PhantomData))
}

struct NameVisitor<T>(PhantomData<T>);

impl<T: Named> NameVisitor<T> {
    fn names() -> String {
        let names: Vec<&str> = T::ALL.iter().map(|v| v.name()).collect();
        list(&names, "or")
    }
}

impl<T: Named> Visitor<'_> for NameVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the name of a {}: {}", T::WHAT, Self::names())
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        T::ALL
            .iter()
            .copied()
            .find(|value| value.name() == v)
            .ok_or_else(|| {
                E::custom(format_args!(
                    "unknown {} `{v}`, expected {}",
                    T::WHAT,
                    Self::names()
                ))
            })
    }
}

/// Classes by their `snake_case` names ([`ErrorClass::as_str`]): `rate_limit`, `server_error`.
impl serde::Serialize for ErrorClass {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize(*self, s)
    }
}

/// Classes by their `snake_case` names ([`ErrorClass::as_str`]); an unknown name is an error
/// that lists the eight.
impl<'de> serde::Deserialize<'de> for ErrorClass {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize(d)
    }
}
