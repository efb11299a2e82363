//! `RetryLayer` in a real `tower::ServiceBuilder` stack, under a concurrency limit (which
//! panics if a service is called without being made ready first).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use reflexio::http::classify_status;
use reflexio::integrations::tower::RetryLayer;
use reflexio::strategies::constant;
use reflexio::testing::VirtualClock;
use reflexio::{AsyncRetryPolicy, PermanentError, TransientError};
use tower::{BoxError, Service, ServiceBuilder, ServiceExt, service_fn};

/// A service failing its first `fail_first` calls with `TransientError`, then echoing the
/// request doubled; a request of 0 is always rejected as permanent.
fn flaky(
    fail_first: u32,
    calls: Arc<AtomicU32>,
) -> impl Service<
    u32,
    Response = u32,
    Error = BoxError,
    Future = impl Future<Output = Result<u32, BoxError>> + Send,
> + Clone
+ Send
+ 'static {
    service_fn(move |request: u32| {
        let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            if request == 0 {
                return Err(BoxError::from(PermanentError::new(
                    "zero is not a valid id",
                )));
            }
            if n <= fail_first {
                return Err(BoxError::from(TransientError::new("connection reset")));
            }
            Ok(request * 2)
        }
    })
}

fn policy(clock: &VirtualClock) -> AsyncRetryPolicy<BoxError> {
    AsyncRetryPolicy::builder()
        .strategy(constant(Duration::from_millis(100)))
        .max_attempts(4)
        .clock(clock.clone())
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_service_builder_stack_retries_transient_errors() {
    let calls = Arc::new(AtomicU32::new(0));
    let clock = VirtualClock::new();
    let mut service = ServiceBuilder::new()
        .layer(RetryLayer::new(policy(&clock)))
        .concurrency_limit(1)
        .service(flaky(2, calls.clone()));

    let response = service.ready().await.unwrap().call(21).await.unwrap();
    assert_eq!(response, 42);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(clock.sleeps(), [Duration::from_millis(100); 2]);

    // The next request goes through the same stack, and succeeds at once.
    let response = service.ready().await.unwrap().call(5).await.unwrap();
    assert_eq!(response, 10);
    assert_eq!(calls.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn permanent_errors_come_back_at_once_and_untouched() {
    let calls = Arc::new(AtomicU32::new(0));
    let clock = VirtualClock::new();
    let service = ServiceBuilder::new()
        .layer(RetryLayer::new(policy(&clock)))
        .service(flaky(0, calls.clone()));
    let err = service.oneshot(0).await.unwrap_err();
    assert!(err.downcast_ref::<PermanentError>().is_some(), "{err:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(clock.sleeps().is_empty());
}

#[tokio::test]
async fn exhausted_retries_return_the_last_error() {
    let calls = Arc::new(AtomicU32::new(0));
    let clock = VirtualClock::new();
    let service = ServiceBuilder::new()
        .layer(RetryLayer::new(policy(&clock)))
        .concurrency_limit(1)
        .service(flaky(u32::MAX, calls.clone()));
    let err = service.oneshot(1).await.unwrap_err();
    assert!(err.downcast_ref::<TransientError>().is_some(), "{err:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    assert_eq!(clock.sleeps().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_share_one_layer_and_the_future_is_send() {
    let calls = Arc::new(AtomicU32::new(0));
    let clock = VirtualClock::new();
    let layer = RetryLayer::new(policy(&clock));
    let service = ServiceBuilder::new()
        .layer(layer.clone())
        .concurrency_limit(2)
        .service(flaky(3, calls.clone()));
    let tasks: Vec<_> = (1..=8u32)
        .map(|i| tokio::spawn(service.clone().oneshot(i)))
        .collect();
    for (i, task) in (1..=8u32).zip(tasks) {
        assert_eq!(task.await.unwrap().unwrap(), i * 2);
    }
    // 8 successes plus the first 3 calls, which failed and were retried.
    assert_eq!(calls.load(Ordering::SeqCst), 11);
    assert_eq!(clock.sleeps().len(), 3);
}

/// A service answering with HTTP-like status codes: `503` for the first `busy` calls, then `200`.
fn statuses(
    busy: u32,
    calls: Arc<AtomicU32>,
) -> impl Service<
    (),
    Response = u16,
    Error = BoxError,
    Future = impl Future<Output = Result<u16, BoxError>> + Send,
> + Clone
+ Send
+ 'static {
    service_fn(move |()| {
        let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
        async move { Ok::<_, BoxError>(if n <= busy { 503 } else { 200 }) }
    })
}

#[tokio::test]
async fn a_policy_with_retry_if_ok_retries_responses_too() {
    let calls = Arc::new(AtomicU32::new(0));
    let clock = VirtualClock::new();
    let policy = AsyncRetryPolicy::<BoxError>::builder()
        .strategy(constant(Duration::from_millis(100)))
        .max_attempts(3)
        .clock(clock.clone())
        .retry_if_ok(|status: &u16| (*status >= 500).then(|| classify_status(*status)))
        .build()
        .unwrap();
    let layer = RetryLayer::new(policy);

    let service = ServiceBuilder::new()
        .layer(layer.clone())
        .service(statuses(2, calls.clone()));
    assert_eq!(service.oneshot(()).await.unwrap(), 200);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(clock.sleeps(), [Duration::from_millis(100); 2]);

    // Out of attempts: the last response comes back as it is.
    let calls = Arc::new(AtomicU32::new(0));
    let service = ServiceBuilder::new()
        .layer(layer)
        .service(statuses(u32::MAX, calls.clone()));
    assert_eq!(service.oneshot(()).await.unwrap(), 503);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}
