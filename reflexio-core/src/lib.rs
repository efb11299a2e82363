//! The runtime of [reflexio](https://docs.rs/reflexio): error classes, classifiers, backoff
//! strategies, the retry decision engine and its sync and async drivers.
//!
//! Depend on the `reflexio` facade rather than on this crate: it re-exports everything here,
//! plus the `#[retry]` attribute.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use reflexio::{strategies::{constant, token_backoff}, ErrorClass, RetryPolicy, RateLimitError};
//!
//! let policy = RetryPolicy::builder()
//!     .strategy(constant(Duration::from_millis(1)))
//!     .strategy_for(ErrorClass::RateLimit, token_backoff().base(Duration::from_millis(1)))
//!     .max_attempts(5)
//!     .build()
//!     .unwrap();
//!
//! let mut calls = 0;
//! let out = policy.call(|| {
//!     calls += 1;
//!     if calls == 1 { Err(RateLimitError::new("slow down")) } else { Ok(calls) }
//! });
//! assert_eq!(out, Ok(2));
//! ```
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings))))]

mod async_policy;
mod budget;
mod builder;
mod call;
mod chain;
mod circuit;
mod class;
mod classify;
#[cfg(feature = "serde")]
pub mod config;
mod engine;
mod errors;
mod event;
mod hedge;
mod hedging;
pub mod http;
pub mod integrations;
mod macro_support;
mod ok;
mod policy;
mod random;
mod rate_limit;
mod settings;
pub mod sql;
mod stop;
pub mod strategies;
mod sync;
pub mod testing;
mod time;
mod window;

pub use async_policy::AsyncRetryPolicy;
pub use budget::{RatioBudgetBuilder, RetryBudget, TokenBucketBuilder};
pub use builder::{
    AsyncRetryPolicyBuilder, Blocking, NonBlocking, PolicyBuilder, RetryPolicyBuilder,
};
pub use chain::classify_error_chain;
pub use circuit::{CircuitBreaker, CircuitBreakerBuilder, CircuitState};
pub use class::{Classification, ErrorClass};
pub use classify::{Classifier, Classify, DefaultClassifier, classify_io_kind, default_classifier};
pub use errors::{
    AttemptTimedOut, CircuitOpen, ConcurrencyError, ConfigError, ConfigProblem, PermanentError,
    RateLimitError, RetryError, ServerError, TransientError,
};
pub use event::{EventKind, RetryEvent};
pub use hedging::{Hedging, HedgingBuilder};
pub use ok::{AcceptOk, OkClassifier, OkRule};
pub use policy::RetryPolicy;
pub use rate_limit::{AdaptiveRateLimiter, AdaptiveRateLimiterBuilder};
pub use stop::StopReason;

/// The `rand` family's core traits, for [`PolicyBuilder::rng`].
pub use rand_core;

/// Items used by code that `#[retry]` generates. Not public API: no stability guarantee.
#[doc(hidden)]
pub mod __private {
    pub use crate::macro_support::*;
}
