//! One-line integrations with the crates Rust services are built on, each behind its own
//! optional feature, so nobody compiles what they do not use.
//!
//! | feature | module | what it gives |
//! |---|---|---|
//! | `tracing` | `tracing` | a hook emitting one structured `tracing` event per decision |
//! | `metrics` | `metrics` | a hook recording retry counters and a delay histogram |
//! | `http` | `http` | `Classify` for `http::StatusCode`, `retry_after(&HeaderMap)` |
//! | `reqwest` | `reqwest` | `Classify` for `reqwest::Error` (0.13), `classify_response` (429/503 with `Retry-After`) |
//! | `reqwest-0-12` | `reqwest_0_12` | the same for reqwest 0.12 |
//! | `tonic` | `tonic` | `Classify` for `tonic::Status`, honouring `grpc-retry-pushback-ms` |
//! | `sqlx` | `sqlx` | `Classify` for `sqlx::Error`, by SQLSTATE or `SQLite` result code |
//! | `tower` | `tower` | `RetryLayer`, a `tower::Layer` retrying through an `AsyncRetryPolicy` |
//!
//! SQLSTATE classification itself needs no crate: see [`crate::sql`].
//!
//! The modules are named after the crates they integrate, and live here rather than at the crate
//! root on purpose: a `use reflexio::*;` would otherwise bring a module `tracing` into scope next
//! to the `tracing` crate, and every `tracing::info!` of that file would become ambiguous
//! (E0659).
//!
//! Trait implementations for foreign types (`Classify for reqwest::Error`, ...) need no import:
//! enabling the feature is enough for [`default_classifier`](crate::default_classifier) to
//! classify those errors.

#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod http;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
#[cfg(feature = "reqwest")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
pub mod reqwest;
#[cfg(feature = "reqwest-0-12")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest-0-12")))]
pub mod reqwest_0_12;
#[cfg(any(feature = "reqwest", feature = "reqwest-0-12"))]
mod reqwest_common;
#[cfg(feature = "sqlx")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlx")))]
pub mod sqlx;
#[cfg(feature = "tonic")]
#[cfg_attr(docsrs, doc(cfg(feature = "tonic")))]
pub mod tonic;
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub mod tower;
#[cfg(feature = "tracing")]
#[cfg_attr(docsrs, doc(cfg(feature = "tracing")))]
pub mod tracing;
