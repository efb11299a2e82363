//! [`reqwest`] 0.12 (feature `reqwest-0-12`): [`Classify`] for [`reqwest::Error`] and
//! [`classify_response`], exactly as `integrations::reqwest` gives them for reqwest 0.13 (see
//! that module for the table and the recipes).
//!
//! reqwest 0.12 and 0.13 have the same error predicates and the same `http` 1 responses, so one
//! classification serves both; each is a separate crate to Rust, hence one feature per major.
//! Turn on the one your crate uses (both may be on, in a workspace that has both).
//!
//! ```no_run
//! # use reqwest012 as reqwest; // what your crate calls `reqwest` 0.12
//! use reflexio::{integrations::reqwest_0_12::classify_response, AsyncRetryPolicy};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), reqwest::Error> {
//! let client = reqwest::Client::new();
//! // `reqwest::Error` classifies itself; `.retry_if_ok(..)` retries a 429 or 503 response too.
//! let policy = AsyncRetryPolicy::<reqwest::Error>::builder()
//!     .retry_if_ok(classify_response)
//!     .build()
//!     .unwrap();
//! let response = policy.call(|| client.get("http://127.0.0.1:8080/").send()).await?;
//! let body = response.error_for_status()?.text().await?;
//! # drop(body); Ok(()) }
//! ```

use ::reqwest012 as reqwest;
use reqwest::{Error, Response};

use super::reqwest_common::{Kinds, classify};
use crate::class::Classification;
use crate::classify::Classify;

/// Classifies a `reqwest` 0.12 error as `integrations::reqwest` does a 0.13 one: a timeout or
/// a failure to connect is `Transient`, a status from `error_for_status()` is classified by
/// [`classify_status`](crate::http::classify_status), an invalid request, too many redirects or
/// an undecodable body is `Permanent`, and a request or body that broke mid-way is classified
/// by its source chain (`Transient` if nothing in it is recognised).
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

/// Classifies a reqwest 0.12 response: `None` for a success (1xx, 2xx, 3xx), else the class of
/// its status (see [`classify_status`](crate::http::classify_status)) with the delay of its
/// `Retry-After` header, if any. Pass it to the builder's `.retry_if_ok(..)`.
#[must_use]
pub fn classify_response(response: &Response) -> Option<Classification> {
    super::http::classify_parts(response.status(), response.headers())
}
