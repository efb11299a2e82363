//! reflexio: retries that classify every error.
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
    pub use core::option::Option::{self, None, Some};
    pub use core::result::Result::{self, Err, Ok};
    pub use core::time::Duration;
    pub use reflexio_core::__private::*;
    pub use reflexio_core::{AsyncRetryPolicy, Classification, Classify, ErrorClass, RetryPolicy};
}
