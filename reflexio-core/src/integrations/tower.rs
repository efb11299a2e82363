//! [`tower`](https://docs.rs/tower) (feature `tower`): [`RetryLayer`], a `tower::Layer` that
//! retries requests through an [`AsyncRetryPolicy`], so every reflexio feature (classes,
//! per-class strategies and caps, deadline, `Retry-After`, one event hook) works in a tower,
//! axum or tonic stack.
//!
//! It depends only on `tower-layer` and `tower-service`, the two small crates `tower` itself
//! re-exports, so it works with `tower::ServiceBuilder` without compiling `tower`.
//!
//! # Examples
//!
//! ```
//! use std::future::{Ready, ready};
//! use std::task::{Context, Poll};
//! use reflexio::{integrations::tower::RetryLayer, AsyncRetryPolicy, ServerError};
//! use tower_layer::Layer;
//! use tower_service::Service;
//!
//! /// A service that answers requests with their length.
//! #[derive(Clone)]
//! struct Len;
//! impl Service<String> for Len {
//!     type Response = usize;
//!     type Error = ServerError;
//!     type Future = Ready<Result<usize, ServerError>>;
//!     fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ServerError>> {
//!         Poll::Ready(Ok(()))
//!     }
//!     fn call(&mut self, request: String) -> Self::Future {
//!         ready(Ok(request.len()))
//!     }
//! }
//!
//! let policy = AsyncRetryPolicy::<ServerError>::builder().max_attempts(3).build().unwrap();
//! let mut service = RetryLayer::new(policy).layer(Len);
//! // With tower: `ServiceBuilder::new().layer(RetryLayer::new(policy)).service(Len)`.
//! let n = futures::executor::block_on(service.call("hello".to_string())).unwrap();
//! assert_eq!(n, 5);
//! ```

use core::fmt;
use core::future::{Future, poll_fn};
use core::pin::Pin;
use core::task::{Context, Poll};
use std::sync::Arc;

use tower_layer::Layer;
use tower_service::Service;

use crate::async_policy::AsyncRetryPolicy;
use crate::ok::{AcceptOk, OkClassifier};

/// A `tower::Layer` that wraps a service in [`Retry`], retrying each request through an
/// [`AsyncRetryPolicy`] whose error type is the service's.
///
/// A policy with `.retry_if_ok(..)` retries some responses too (an HTTP 503 response, say):
/// its rule sees each `Ok` response, and the last one is returned when the policy stops.
///
/// The request type must be `Clone` (each attempt sends its own copy) and the service `Clone`
/// (each retry calls a clone, made ready first, as tower requires). Only `Err` results are
/// retried; the error is classified by the policy's classifier, so with the default one the
/// service's error type implements [`Classify`](crate::Classify): `tower::BoxError` (a
/// `Box<dyn Error + Send + Sync>`) does, by walking its source chain.
///
/// Put the layer *outside* the layers it should retry through (a timeout, a concurrency limit):
/// those are then applied to every attempt.
///
/// A rustc limitation to know about: with an error type holding a trait object, such as
/// `tower::BoxError`, `tokio::spawn(async move { service.oneshot(request).await })` fails to
/// compile ("one type is more general than the other", rust-lang/rust#90656), because the
/// compiler cannot prove inside the async block that the error type is `'static`. Spawn the
/// future itself, `tokio::spawn(service.oneshot(request))`, or call
/// `service.ready().await?.call(request)` inside the block: both compile.
///
/// ```
/// use std::time::Duration;
/// use reflexio::{integrations::tower::RetryLayer, AsyncRetryPolicy, TransientError};
///
/// let layer = RetryLayer::new(
///     AsyncRetryPolicy::<TransientError>::builder()
///         .deadline(Duration::from_secs(5))
///         .build()
///         .unwrap(),
/// );
/// let same_policy = layer.clone(); // cheap: the policy is shared
/// # drop(same_policy);
/// ```
pub struct RetryLayer<E, R = AcceptOk> {
    policy: Arc<AsyncRetryPolicy<E, R>>,
}

impl<E, R> RetryLayer<E, R> {
    /// A layer retrying through `policy`, shared by every service it wraps.
    ///
    /// ```
    /// use reflexio::{integrations::tower::RetryLayer, AsyncRetryPolicy, ServerError};
    ///
    /// let layer = RetryLayer::new(AsyncRetryPolicy::<ServerError>::builder().build().unwrap());
    /// # drop(layer);
    /// ```
    #[must_use]
    pub fn new(policy: AsyncRetryPolicy<E, R>) -> Self {
        RetryLayer {
            policy: Arc::new(policy),
        }
    }
}

impl<E, R> Clone for RetryLayer<E, R> {
    fn clone(&self) -> Self {
        RetryLayer {
            policy: self.policy.clone(),
        }
    }
}

impl<E, R> fmt::Debug for RetryLayer<E, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryLayer")
            .field("policy", &self.policy)
            .finish()
    }
}

impl<S, E, R> Layer<S> for RetryLayer<E, R> {
    type Service = Retry<S, E, R>;

    fn layer(&self, inner: S) -> Retry<S, E, R> {
        Retry {
            inner,
            policy: self.policy.clone(),
        }
    }
}

/// The service made by [`RetryLayer`]: calls `S`, retrying failed requests through the policy.
///
/// ```
/// use std::future::{Ready, ready};
/// use std::task::{Context, Poll};
/// use reflexio::{integrations::tower::Retry, AsyncRetryPolicy, ServerError};
/// use tower_service::Service;
///
/// #[derive(Clone)]
/// struct Echo;
/// impl Service<u32> for Echo {
///     type Response = u32;
///     type Error = ServerError;
///     type Future = Ready<Result<u32, ServerError>>;
///     fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ServerError>> {
///         Poll::Ready(Ok(()))
///     }
///     fn call(&mut self, n: u32) -> Self::Future { ready(Ok(n)) }
/// }
///
/// let mut service = Retry::new(Echo, AsyncRetryPolicy::builder().build().unwrap());
/// assert_eq!(futures::executor::block_on(service.call(7)), Ok(7));
/// let _inner: &Echo = service.get_ref();
/// ```
pub struct Retry<S, E, R = AcceptOk> {
    inner: S,
    policy: Arc<AsyncRetryPolicy<E, R>>,
}

impl<S, E, R> Retry<S, E, R> {
    /// Wraps `inner`, retrying through `policy`; the same as `RetryLayer::new(policy).layer(inner)`.
    ///
    /// ```
    /// use reflexio::{integrations::tower::Retry, AsyncRetryPolicy, ServerError};
    ///
    /// let inner = String::from("any service");
    /// let retry = Retry::new(inner, AsyncRetryPolicy::<ServerError>::builder().build().unwrap());
    /// assert_eq!(retry.get_ref(), "any service");
    /// ```
    #[must_use]
    pub fn new(inner: S, policy: AsyncRetryPolicy<E, R>) -> Self {
        Retry {
            inner,
            policy: Arc::new(policy),
        }
    }

    /// The wrapped service.
    ///
    /// ```
    /// # use reflexio::{integrations::tower::Retry, AsyncRetryPolicy, ServerError};
    /// let retry = Retry::new(7_u8, AsyncRetryPolicy::<ServerError>::builder().build().unwrap());
    /// assert_eq!(*retry.get_ref(), 7);
    /// ```
    #[must_use]
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    ///
    /// ```
    /// # use reflexio::{integrations::tower::Retry, AsyncRetryPolicy, ServerError};
    /// let mut retry = Retry::new(7_u8, AsyncRetryPolicy::<ServerError>::builder().build().unwrap());
    /// *retry.get_mut() += 1;
    /// assert_eq!(*retry.get_ref(), 8);
    /// ```
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The wrapped service, consuming the wrapper.
    ///
    /// ```
    /// # use reflexio::{integrations::tower::Retry, AsyncRetryPolicy, ServerError};
    /// let retry = Retry::new(7_u8, AsyncRetryPolicy::<ServerError>::builder().build().unwrap());
    /// assert_eq!(retry.into_inner(), 7);
    /// ```
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, E, R> Clone for Retry<S, E, R> {
    fn clone(&self) -> Self {
        Retry {
            inner: self.inner.clone(),
            policy: self.policy.clone(),
        }
    }
}

impl<S: fmt::Debug, E, R> fmt::Debug for Retry<S, E, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry")
            .field("inner", &self.inner)
            .field("policy", &self.policy)
            .finish()
    }
}

/// The future of [`Retry`]'s `call`: boxed, `Send`, `'static`, as axum and tonic need.
///
/// ```
/// use reflexio::integrations::tower::RetryFuture;
///
/// fn assert_send_static<F: Send + 'static>() {}
/// assert_send_static::<RetryFuture<String, std::io::Error>>();
/// ```
pub type RetryFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'static>>;

impl<S, Req, E, R> Service<Req> for Retry<S, E, R>
where
    S: Service<Req, Error = E> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
    Req: Clone + Send + 'static,
    E: fmt::Debug + Send + 'static,
    R: OkClassifier<S::Response> + Send + Sync + 'static,
{
    type Response = S::Response;
    type Error = E;
    type Future = RetryFuture<S::Response, E>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), E>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        // `self.inner` was made ready by `poll_ready`: the first attempt takes it, and leaves a
        // clone behind for the next request (tower's documented clone-and-swap idiom). Every
        // retry calls a fresh clone, made ready first.
        let template = self.inner.clone();
        let mut ready = Some(core::mem::replace(&mut self.inner, template.clone()));
        let policy = self.policy.clone();
        Box::pin(async move {
            policy
                .call(move || {
                    let service = ready.take().ok_or_else(|| template.clone());
                    let request = request.clone();
                    async move {
                        let mut service = match service {
                            Ok(ready) => ready,
                            Err(mut fresh) => {
                                poll_fn(|cx| fresh.poll_ready(cx)).await?;
                                fresh
                            }
                        };
                        service.call(request).await
                    }
                })
                .await
        })
    }
}
