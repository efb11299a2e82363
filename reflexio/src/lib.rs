//! reflexio: retries that classify every error.
#![warn(missing_docs)]

#[doc(inline)]
pub use reflexio_core::*;
