//! reflexio: retries that classify every error.
//!
//! Each failure is sorted into an [`ErrorClass`], each class has its own backoff strategy and
//! limits, and one event hook reports every decision. Build a [`RetryPolicy`] (sync) or an
//! [`AsyncRetryPolicy`] with its builder, or put `#[retry]` on a function:
//!
//! ```
//! use reflexio::{retry, Classify};
//! use reflexio::strategies::no_delay;
//!
//! #[derive(Debug, Classify)]
//! enum FetchError {
//!     #[class(transient)]
//!     Timeout,
//!     #[class(permanent)]
//!     NotFound,
//! }
//!
//! #[retry(max_attempts = 3, strategy = no_delay())]
//! fn fetch(id: u64) -> Result<String, FetchError> {
//!     if id == 0 { Err(FetchError::NotFound) } else { Ok(format!("item {id}")) }
//! }
//!
//! assert_eq!(fetch(7).unwrap(), "item 7");
//! assert!(matches!(fetch(0), Err(FetchError::NotFound))); // not retried
//! ```
//!
//! # Features
//!
//! | feature | default | what |
//! |---|---|---|
//! | `macros` | yes | the [`retry`] attribute and the [`Classify`](derive@Classify) derive |
//! | `tokio` | yes | async sleeping on tokio's timer, so `tokio::time::pause()` works in tests |
#![warn(missing_docs)]

#[doc(inline)]
pub use reflexio_core::*;

#[cfg(feature = "macros")]
#[doc(inline)]
pub use reflexio_macros::{Classify, retry};

// Used by the code that `#[retry]` and `#[derive(Classify)]` generate. Not public API: no
// stability guarantee. The standard names are re-exported so generated code still works in a
// crate that shadows `Option`, `Result`, `core` or `std`.
#[doc(hidden)]
pub mod __private {
    pub use core::mem::drop;
    pub use core::ops::FnMut;
    pub use core::option::Option::{self, None, Some};
    pub use core::pin::pin;
    pub use core::result::Result::{self, Err, Ok};
    pub use core::time::Duration;
    pub use reflexio_core::__private::*;
    pub use reflexio_core::{AsyncRetryPolicy, Classification, Classify, ErrorClass, RetryPolicy};
}
