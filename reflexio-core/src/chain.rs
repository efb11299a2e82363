//! Classifying a dynamic error (`dyn Error`) by its source chain: the error types reflexio
//! recognises, outermost first.

use std::error::Error as StdError;
use std::io;

use crate::class::{Classification, ErrorClass};
use crate::classify::Classify;
use crate::errors::{
    ConcurrencyError, PermanentError, RateLimitError, ServerError, TransientError,
};

/// Recognises the error types reflexio knows (its marker errors and `std::io::Error`).
fn recognise(error: &(dyn StdError + 'static)) -> Option<Classification> {
    if let Some(e) = error.downcast_ref::<io::Error>() {
        return Some(e.classification());
    }
    if let Some(e) = error.downcast_ref::<RateLimitError>() {
        return Some(e.classification());
    }
    if let Some(e) = error.downcast_ref::<TransientError>() {
        return Some(e.classification());
    }
    if let Some(e) = error.downcast_ref::<ServerError>() {
        return Some(e.classification());
    }
    if let Some(e) = error.downcast_ref::<ConcurrencyError>() {
        return Some(e.classification());
    }
    if let Some(e) = error.downcast_ref::<PermanentError>() {
        return Some(e.classification());
    }
    None
}

/// Classifies a dynamic error by walking its [`source()`](StdError::source) chain, outermost
/// first, and classifying the first error it recognises: reflexio's marker errors and
/// `std::io::Error`. Unknown if none is recognised.
///
/// ```
/// use reflexio::{classify_error_chain, ErrorClass, TransientError};
///
/// #[derive(Debug)]
/// struct Wrapper(TransientError);
/// impl std::fmt::Display for Wrapper {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str("wrapped") }
/// }
/// impl std::error::Error for Wrapper {
///     fn source(&self) -> Option<&(dyn std::error::Error + 'static)> { Some(&self.0) }
/// }
///
/// assert_eq!(classify_error_chain(&Wrapper(TransientError::new("t"))).class, ErrorClass::Transient);
/// ```
#[must_use]
pub fn classify_error_chain(error: &(dyn StdError + 'static)) -> Classification {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(c) = recognise(e) {
            return c;
        }
        next = e.source();
    }
    ErrorClass::Unknown.into()
}

/// Walks the `source()` chain, see [`classify_error_chain`].
impl Classify for Box<dyn StdError + Send + Sync> {
    fn classification(&self) -> Classification {
        classify_error_chain(&**self)
    }
}

/// Walks the `source()` chain, see [`classify_error_chain`].
impl Classify for Box<dyn StdError> {
    fn classification(&self) -> Classification {
        classify_error_chain(&**self)
    }
}
