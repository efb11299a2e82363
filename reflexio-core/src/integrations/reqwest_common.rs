//! What `integrations::reqwest` (reqwest 0.13) and `integrations::reqwest_0_12` share: both
//! majors describe a failed call with the same predicates (`is_timeout()`, `is_connect()`,
//! `status()`, `is_builder()`, ...), and both are built on `http` 1, so their responses go to
//! the same `integrations::http::classify_parts`. Each version's module only reads its own
//! error into a [`Kinds`]; the decision is made once, here.

use std::error::Error as StdError;

use crate::chain::classify_error_chain;
use crate::class::{Classification, ErrorClass};
use crate::http::classify_status;

/// What a reqwest error says about itself, read through the predicates named on each field.
pub(super) struct Kinds {
    /// `is_timeout() || is_connect()`.
    pub(super) timeout_or_connect: bool,
    /// `status()`: the error was made from a status by `error_for_status()`.
    pub(super) status: Option<u16>,
    /// `is_builder() || is_redirect() || is_decode()`: trying again cannot help.
    pub(super) unusable: bool,
    /// `is_request() || is_body()`: sending the request or reading the body failed.
    pub(super) exchange_broke: bool,
}

/// The classification documented on the `Classify` impls of both versions.
pub(super) fn classify(kinds: &Kinds, error: &(dyn StdError + 'static)) -> Classification {
    if kinds.timeout_or_connect {
        return ErrorClass::Transient.into();
    }
    if let Some(status) = kinds.status {
        return classify_status(status).into();
    }
    if kinds.unusable {
        return ErrorClass::Permanent.into();
    }
    let chain = classify_error_chain(error);
    if kinds.exchange_broke && chain.class == ErrorClass::Unknown {
        return ErrorClass::Transient.into();
    }
    chain
}
