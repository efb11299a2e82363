//! reflexio: retries that classify every error.
//!
//! Each failure is sorted into an [`ErrorClass`], each class has its own backoff strategy and
//! limits, and one event hook reports every decision. Build a [`RetryPolicy`] (sync) or an
//! [`AsyncRetryPolicy`] with its builder, or put `#[retry]` on a function:
//!
//! ```
//! # #[cfg(feature = "macros")] { // the example is `#[retry]`'s
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
//! # }
//! ```
//!
//! # Features
//!
//! Each integration supports one major version of the crate it integrates (the one in the
//! last column; reqwest's previous major has a feature of its own); it never turns on features
//! of that crate, so yours keep the TLS, drivers and runtime you chose.
//!
//! | feature | default | what | supports |
//! |---|---|---|---|
//! | `macros` | yes | the [`retry`] attribute and the [`Classify`](derive@Classify) derive | |
//! | `coarse-clock` | yes | the deadline clock of sync policies (and async ones with `.sleeper(..)`): Linux's `CLOCK_MONOTONIC_COARSE`, 3 to 9 ns a read depending on the machine instead of 25 to 30, one kernel tick (1-4 ms) of resolution, rounded up, and the fine clock read near a deadline, so a deadline is never passed; `std::time::Instant` elsewhere | rustix 1 (Linux only) |
//! | `tokio` | yes | async sleeping on tokio's timer inside a tokio runtime, so `tokio::time::pause()` works in tests, and on `futures-timer` outside one (turns `futures-timer` on) | tokio 1, futures-timer 3 |
//! | `futures-timer` | | async sleeping on `futures-timer` when `tokio` is off, on any executor | futures-timer 3 |
//! | `tracing` | | `integrations::tracing`: one structured event per retry decision | tracing 0.1 |
//! | `metrics` | | `integrations::metrics`: retry counters and a delay histogram | metrics 0.24 |
//! | `http` | | `integrations::http`: `Classify` for `http::StatusCode`, `retry_after(&HeaderMap)` | http 1 |
//! | `reqwest` | | `integrations::reqwest`: `Classify` for `reqwest::Error`, `classify_response` (turns `http` on) | reqwest 0.13 |
//! | `reqwest-0-12` | | `integrations::reqwest_0_12`: the same for reqwest's previous major (turns `http` on) | reqwest 0.12 |
//! | `tonic` | | `integrations::tonic`: `Classify` for `tonic::Status`, with `grpc-retry-pushback-ms` | tonic 0.14 |
//! | `sqlx` | | `integrations::sqlx`: `Classify` for `sqlx::Error` | sqlx 0.8 |
//! | `tower` | | `integrations::tower`: `RetryLayer`, a `tower::Layer` | tower 0.5 (`tower-layer` and `tower-service` 0.3) |
//! | `serde` | | `config`: policies, shared budgets and breakers from a configuration file | serde 1 |
//!
//! Without `tokio` or `futures-timer`, an [`AsyncRetryPolicy`] needs `.sleeper(..)` (or a
//! virtual `.clock(..)`); the sync [`RetryPolicy`] needs neither.
//!
#![doc = include_str!("guarantees.md")]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[doc(inline)]
pub use reflexio_core::*;

#[cfg(feature = "macros")]
#[cfg_attr(docsrs, doc(cfg(feature = "macros")))]
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
    pub use core::result::Result::{self, Err, Ok};
    pub use core::time::Duration;
    // Only the names the expansions use (and the traits whose unmet bounds name them in
    // compiler errors).
    pub use reflexio_core::__private::{
        ClassifiedByDefault, FromAttemptTimedOut, FromCircuitOpen, IsResult, Next, PolicyCell,
        RetryAfterField, async_builder, async_policy, attempt_result, attempt_timeout, built,
        call_async, call_async_cached, call_idempotent, circuit_breaker, classifier, classify_self,
        done, error_chain, error_chain_kinds, error_chain_probe, hedge_after, record, retry_sync,
        retry_sync_cached, source_classification, start_async, status_classification, sync_builder,
        sync_policy, with_retry_after, witness,
    };
    pub use reflexio_core::{AsyncRetryPolicy, Classification, Classify, ErrorClass, RetryPolicy};
}
