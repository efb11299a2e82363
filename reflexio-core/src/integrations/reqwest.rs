//! [`reqwest`] 0.13 (feature `reqwest`): [`Classify`] for [`reqwest::Error`] and
//! [`classify_response`] for responses that are failures (a 503, a 429 with `Retry-After`).
//! For reqwest 0.12, the feature `reqwest-0-12` gives the same in
//! `integrations::reqwest_0_12` (both can be on at once).
//!
//! A `reqwest` call fails in two ways, and both need classifying:
//!
//! - it returns `Err(reqwest::Error)`: no response at all (timeout, refused connection, reset),
//!   or an error made from a status by `error_for_status()`. The [`Classify`] impl below handles
//!   it, so the [`default_classifier`](crate::default_classifier) of a policy with error type
//!   `reqwest::Error` needs no configuration;
//! - it returns `Ok(response)` with an error status: [`classify_response`] says whether to retry
//!   it, and how long the server asked to wait. Give it to the builder's `.retry_if_ok(..)`:
//!
//! ```no_run
//! use reflexio::{integrations::reqwest::classify_response, AsyncRetryPolicy};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), reqwest::Error> {
//! let client = reqwest::Client::new();
//! let policy = AsyncRetryPolicy::<reqwest::Error>::builder()
//!     .retry_if_ok(classify_response)
//!     .build()
//!     .unwrap();
//! // A 429 or 503 is retried, no sooner than its `Retry-After`; when the policy stops on one,
//! // that response is returned.
//! let response = policy.call(|| client.get("http://127.0.0.1:8080/").send()).await?;
//! let body = response.error_for_status()?.text().await?;
//! # drop(body); Ok(()) }
//! ```
//!
//! # Examples
//!
//! Without `.retry_if_ok(..)`: turning an error status into an error that keeps its
//! `Retry-After`, so a policy retries it:
//!
//! ```no_run
//! use reflexio::{integrations::reqwest::classify_response, AsyncRetryPolicy};
//! use reflexio::{Classification, Classify};
//!
//! #[derive(Debug)]
//! enum FetchError {
//!     Transport(reqwest::Error),
//!     /// An error status, with its class and `Retry-After`.
//!     Status(Classification),
//! }
//!
//! impl Classify for FetchError {
//!     fn classification(&self) -> Classification {
//!         match self {
//!             FetchError::Transport(e) => e.classification(),
//!             FetchError::Status(c) => *c,
//!         }
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), FetchError> {
//! let client = reqwest::Client::new();
//! let policy = AsyncRetryPolicy::builder().build().unwrap();
//! let body = policy
//!     .call(|| async {
//!         let response = client
//!             .get("http://127.0.0.1:8080/")
//!             .send()
//!             .await
//!             .map_err(FetchError::Transport)?;
//!         match classify_response(&response) {
//!             Some(c) => Err(FetchError::Status(c)),
//!             None => response.text().await.map_err(FetchError::Transport),
//!         }
//!     })
//!     .await?;
//! # drop(body); Ok(()) }
//! ```

use ::reqwest::{Error, Response};

use super::reqwest_common::{Kinds, classify};
use crate::class::Classification;
use crate::classify::Classify;

/// Classifies a `reqwest` error:
///
/// | error | class |
/// |---|---|
/// | a timeout (`is_timeout()`) | `Transient` |
/// | a failure to connect (`is_connect()`) | `Transient` |
/// | a status, from `error_for_status()` | [`classify_status`](crate::http::classify_status) (`Retry-After` is gone by then: see [`classify_response`]) |
/// | an invalid request (`is_builder()`), too many redirects (`is_redirect()`), an undecodable body (`is_decode()`) | `Permanent` |
/// | sending the request or reading the body failed (`is_request()`, `is_body()`) | the first `std::io::Error` of its source chain (a reset is `Transient`), else `Transient`: the connection broke |
/// | anything else | its source chain, see [`classify_error_chain`](crate::classify_error_chain) (`Unknown` if nothing is recognised) |
///
/// Retrying a request whose connection broke mid-way may repeat its side effects: retry only
/// idempotent requests, or make them idempotent (an idempotency key).
///
/// ```no_run
/// use reflexio::AsyncRetryPolicy;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), reqwest::Error> {
/// let client = reqwest::Client::new();
/// // The default classifier uses this impl: no `.classifier(..)` needed.
/// let policy = AsyncRetryPolicy::<reqwest::Error>::builder().build().unwrap();
/// let text = policy
///     .call(|| async {
///         let response = client.get("http://127.0.0.1:8080/").send().await?;
///         response.error_for_status()?.text().await
///     })
///     .await?;
/// # drop(text); Ok(()) }
/// ```
impl Classify for Error {
    fn classification(&self) -> Classification {
        let kinds = Kinds {
            timeout_or_connect: self.is_timeout() || self.is_connect(),
            status: self.status().map(|s| s.as_u16()),
            unusable: self.is_builder() || self.is_redirect() || self.is_decode(),
            exchange_broke: self.is_request() || self.is_body(),
        };
        classify(&kinds, self)
    }
}

/// Classifies a response: `None` for a success (1xx, 2xx, 3xx), else the class of its status
/// (see [`classify_status`](crate::http::classify_status)) with the delay of its `Retry-After` header, if any.
///
/// So a 429 or a 503 with `Retry-After: 2` is retried no sooner than 2 s later (the policy's
/// attempt caps and deadline still apply, and a `Retry-After` that would overrun the deadline
/// stops the retries at once), while a 404 is `Permanent` and not retried.
///
/// Its signature is that of a result classifier, `Fn(&Response) -> Option<Classification>`:
/// pass it to the builder's `.retry_if_ok(..)`.
///
/// ```no_run
/// use reflexio::integrations::reqwest::classify_response;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), reqwest::Error> {
/// let response = reqwest::get("http://127.0.0.1:8080/").await?;
/// match classify_response(&response) {
///     None => println!("success: {}", response.text().await?),
///     Some(c) if c.class.is_retryable() => println!("retry in at least {:?}", c.retry_after),
///     Some(c) => println!("failed for good: {}", c.class),
/// }
/// # Ok(()) }
/// ```
#[must_use]
pub fn classify_response(response: &Response) -> Option<Classification> {
    super::http::classify_parts(response.status(), response.headers())
}
