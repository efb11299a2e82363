//! The async policy, [`AsyncRetryPolicy`].

use core::fmt;
use core::time::Duration;
use std::future::Future;

use crate::engine::{Attempts, Config, Step};
use crate::policy::{AsyncRetryPolicyBuilder, PolicyBuilder};

/// A retry policy for async operations: the same decisions as
/// [`RetryPolicy`](crate::RetryPolicy), sleeping asynchronously between attempts.
///
/// It works on any executor: with the `tokio` feature (the default) it sleeps on tokio's timer,
/// so `tokio::time::pause()` works in tests; `.sleeper(..)` plugs in any other. Dropping the
/// future of [`call`](Self::call) cancels cleanly: the attempt or the sleep in flight is dropped
/// and nothing else happens.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use reflexio_core::{strategies::full_jitter, AsyncRetryPolicy, ServerError};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let policy = AsyncRetryPolicy::builder()
///     .strategy(full_jitter().base(Duration::from_millis(1)).max(Duration::from_millis(5)))
///     .operation("load_profile")
///     .build()
///     .unwrap();
///
/// let mut calls = 0;
/// let out = policy
///     .call(|| {
///         calls += 1;
///         let n = calls;
///         async move { if n < 3 { Err(ServerError::new("503")) } else { Ok(n) } }
///     })
///     .await;
/// assert_eq!(out, Ok(3));
/// # }
/// ```
pub struct AsyncRetryPolicy<E> {
    config: Config<E>,
}

impl<E> Clone for AsyncRetryPolicy<E> {
    fn clone(&self) -> Self {
        AsyncRetryPolicy {
            config: self.config.clone(),
        }
    }
}

impl<E> fmt::Debug for AsyncRetryPolicy<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncRetryPolicy")
            .field("max_attempts", &self.config.max_attempts)
            .field("deadline", &self.config.deadline)
            .field("operation", &self.config.operation)
            .finish_non_exhaustive()
    }
}

impl<E> AsyncRetryPolicy<E> {
    pub(crate) fn from_config(config: Config<E>) -> Self {
        AsyncRetryPolicy { config }
    }

    /// A builder with the defaults listed on [`PolicyBuilder`].
    pub fn builder() -> AsyncRetryPolicyBuilder<E> {
        PolicyBuilder::new()
    }

    /// Calls `op` and awaits its future until it succeeds or the policy stops, sleeping
    /// asynchronously between attempts.
    ///
    /// Returns the value, or the last attempt's own error, untouched. The returned future is
    /// `Send` when `op`, its futures, `T` and `E` are; it does not box `op`'s future.
    ///
    /// # Errors
    ///
    /// The error of the last attempt, when the policy stops.
    pub async fn call<T, F, Fut>(&self, mut op: F) -> Result<T, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: fmt::Debug,
    {
        let mut attempts = self.config.start();
        loop {
            let result = op().await;
            match attempts.on_result(&result) {
                Step::Return => return result,
                Step::Sleep(delay) => {
                    drop(result);
                    self.__sleep(delay).await;
                }
            }
        }
    }

    /// Starts the per-call state that `#[retry]`-generated code drives. Not public API.
    #[doc(hidden)]
    #[must_use]
    pub fn __start(&self) -> Attempts<'_, E> {
        self.config.start()
    }

    /// Sleeps as the policy does between attempts. Not public API.
    #[doc(hidden)]
    pub async fn __sleep(&self, delay: Duration) {
        if !delay.is_zero() {
            self.config.time.sleep(delay).await;
        }
    }
}
