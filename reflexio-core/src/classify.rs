//! Turning an error into a [`Classification`]: the [`Classifier`] and [`Classify`] traits.

use std::io;

use crate::class::{Classification, ErrorClass};

/// Something that classifies errors of type `E`.
///
/// Implemented for every closure or function `Fn(&E) -> C` where `C: Into<Classification>`, so both
/// a closure returning an [`ErrorClass`] and one returning a [`Classification`] work, and for
/// [`default_classifier`], which asks the error itself through [`Classify`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use reflexio::{Classification, Classifier, ErrorClass};
///
/// #[derive(Debug)]
/// struct HttpError { status: u16 }
///
/// let by_class = |e: &HttpError| reflexio::http::classify_status(e.status);
/// assert_eq!(by_class.classify(&HttpError { status: 503 }).class, ErrorClass::ServerError);
///
/// let with_delay = |_: &HttpError| {
///     Classification::new(ErrorClass::RateLimit).with_retry_after(Duration::from_secs(1))
/// };
/// assert_eq!(with_delay.classify(&HttpError { status: 429 }).retry_after, Some(Duration::from_secs(1)));
/// ```
#[diagnostic::on_unimplemented(
    message = "no classifier for errors of type `{E}`: `{Self}` cannot classify them",
    label = "`{E}` needs a classifier",
    note = "without `.classifier(..)`, a policy uses the error's own class: implement \
            `reflexio::Classify` for `{E}` (or `#[derive(reflexio::Classify)]`)",
    note = "or call `.classifier(|e: &{E}| ErrorClass::Transient)`: any closure returning an \
            `ErrorClass` or a `Classification`",
    note = "for a type of another crate, such as `anyhow::Error` (the orphan rule forbids \
            implementing `Classify` for it), classify in a closure, e.g. over its source chain: \
            `.classifier(|e: &{E}| reflexio::classify_error_chain(e.as_ref()))`"
)]
pub trait Classifier<E: ?Sized> {
    /// Classifies one error.
    fn classify(&self, error: &E) -> Classification;
}

impl<E: ?Sized, F, C> Classifier<E> for F
where
    F: Fn(&E) -> C,
    C: Into<Classification>,
{
    fn classify(&self, error: &E) -> Classification {
        self(error).into()
    }
}

/// An error type that knows its own class.
///
/// Implement it (or `#[derive(Classify)]`) for your error types, and [`default_classifier`] (the
/// default of every policy) classifies them with no further configuration.
///
/// # Examples
///
/// ```
/// use reflexio::{Classification, Classify, ErrorClass};
///
/// #[derive(Debug)]
/// enum DbError { Deadlock, SyntaxError }
///
/// impl Classify for DbError {
///     fn classification(&self) -> Classification {
///         match self {
///             DbError::Deadlock => ErrorClass::Concurrency.into(),
///             DbError::SyntaxError => ErrorClass::Permanent.into(),
///         }
///     }
/// }
///
/// assert_eq!(DbError::Deadlock.classification().class, ErrorClass::Concurrency);
/// assert_eq!(DbError::SyntaxError.classification().class, ErrorClass::Permanent);
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not implement `Classify`, so `default_classifier` cannot classify it",
    label = "`{Self}` does not know its error class",
    note = "implement `reflexio::Classify` for `{Self}` (or `#[derive(reflexio::Classify)]`), \
            or pass a classifier: `.classifier(|e: &{Self}| ErrorClass::Transient)`"
)]
pub trait Classify {
    /// The class of this error, with any server-suggested delay.
    fn classification(&self) -> Classification;
}

impl<T: Classify + ?Sized> Classify for &T {
    fn classification(&self) -> Classification {
        (**self).classification()
    }
}

/// The type of [`default_classifier`]: classifies any error that implements [`Classify`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DefaultClassifier;

impl<E: Classify + ?Sized> Classifier<E> for DefaultClassifier {
    #[inline]
    fn classify(&self, error: &E) -> Classification {
        error.classification()
    }
}

/// The default classifier: asks the error itself, through its [`Classify`] implementation.
///
/// It is a value, usable wherever a classifier is expected, like the Python original's
/// `default_classifier`. Every policy uses it unless told otherwise, so a policy for an error type
/// that does not implement `Classify` needs `.classifier(..)`.
///
/// # Examples
///
/// ```
/// use reflexio::{default_classifier, Classifier, ErrorClass};
///
/// let e = std::io::Error::from(std::io::ErrorKind::TimedOut);
/// assert_eq!(default_classifier.classify(&e).class, ErrorClass::Transient);
/// ```
#[allow(non_upper_case_globals)] // a value that reads like the function it replaces
pub const default_classifier: DefaultClassifier = DefaultClassifier;

/// Classifies an [`io::ErrorKind`].
///
/// Timeouts, refused, reset or aborted connections, `NotConnected`, `BrokenPipe`, `Interrupted`,
/// `WouldBlock` and `UnexpectedEof` are [`Transient`](ErrorClass::Transient); invalid input or
/// data, `NotFound` and `Unsupported` are [`Permanent`](ErrorClass::Permanent);
/// `PermissionDenied` is [`Permission`](ErrorClass::Permission); every other kind is
/// [`Unknown`](ErrorClass::Unknown).
///
/// ```
/// use std::io::ErrorKind;
/// use reflexio::{classify_io_kind, ErrorClass};
/// assert_eq!(classify_io_kind(ErrorKind::ConnectionReset), ErrorClass::Transient);
/// assert_eq!(classify_io_kind(ErrorKind::NotFound), ErrorClass::Permanent);
/// ```
#[must_use]
pub fn classify_io_kind(kind: io::ErrorKind) -> ErrorClass {
    use io::ErrorKind as K;
    match kind {
        K::TimedOut
        | K::ConnectionRefused
        | K::ConnectionReset
        | K::ConnectionAborted
        | K::NotConnected
        | K::BrokenPipe
        | K::Interrupted
        | K::WouldBlock
        | K::UnexpectedEof => ErrorClass::Transient,
        K::InvalidInput | K::InvalidData | K::NotFound | K::Unsupported => ErrorClass::Permanent,
        K::PermissionDenied => ErrorClass::Permission,
        _ => ErrorClass::Unknown,
    }
}

/// `std::io::Error` is classified by its kind, see [`classify_io_kind`].
impl Classify for io::Error {
    fn classification(&self) -> Classification {
        classify_io_kind(self.kind()).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::errors::{PermanentError, RateLimitError, ServerError, TransientError};
    use std::error::Error as StdError;
    use std::time::Duration;

    #[test]
    fn io_kinds_map_as_documented() {
        use io::ErrorKind as K;
        for k in [
            K::TimedOut,
            K::ConnectionRefused,
            K::ConnectionReset,
            K::ConnectionAborted,
            K::NotConnected,
            K::BrokenPipe,
            K::Interrupted,
            K::WouldBlock,
            K::UnexpectedEof,
        ] {
            assert_eq!(
                io::Error::from(k).classification().class,
                ErrorClass::Transient,
                "{k:?}"
            );
        }
        for k in [K::InvalidInput, K::InvalidData, K::NotFound, K::Unsupported] {
            assert_eq!(classify_io_kind(k), ErrorClass::Permanent, "{k:?}");
        }
        assert_eq!(
            classify_io_kind(K::PermissionDenied),
            ErrorClass::Permission
        );
        assert_eq!(classify_io_kind(K::OutOfMemory), ErrorClass::Unknown);
        assert_eq!(classify_io_kind(K::Other), ErrorClass::Unknown);
    }

    #[derive(Debug)]
    struct Outer(ServerError);
    impl std::fmt::Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("outer")
        }
    }
    impl StdError for Outer {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn boxed_errors_walk_the_source_chain() {
        let direct: Box<dyn StdError + Send + Sync> =
            Box::new(RateLimitError::new("slow down").with_retry_after(Duration::from_secs(7)));
        assert_eq!(
            direct.classification(),
            Classification::new(ErrorClass::RateLimit).with_retry_after(Duration::from_secs(7))
        );

        let io_inside: Box<dyn StdError + Send + Sync> =
            Box::new(io::Error::other(PermanentError::new("bad")));
        // The outer io::Error (kind Other) is recognised first: Unknown, as documented.
        assert_eq!(io_inside.classification().class, ErrorClass::Unknown);

        let nested: Box<dyn StdError + Send + Sync> = Box::new(Outer(ServerError::new("500")));
        assert_eq!(nested.classification().class, ErrorClass::ServerError);

        let unknown: Box<dyn StdError + Send + Sync> = "plain string error".into();
        assert_eq!(unknown.classification().class, ErrorClass::Unknown);
    }

    #[test]
    #[allow(clippy::trivially_copy_pass_by_ref, clippy::items_after_statements)] // the shape under test
    fn closures_returning_class_or_classification_are_classifiers() {
        fn classify_with<E>(c: &impl Classifier<E>, e: &E) -> Classification {
            c.classify(e)
        }
        assert_eq!(
            classify_with(&|_: &u8| ErrorClass::Concurrency, &1).class,
            ErrorClass::Concurrency
        );
        fn by_fn(e: &u16) -> Classification {
            crate::http::classify_status(*e).into()
        }
        assert_eq!(classify_with(&by_fn, &404).class, ErrorClass::Permanent);
        assert_eq!(
            classify_with(&default_classifier, &TransientError::new("x")).class,
            ErrorClass::Transient
        );
    }
}
