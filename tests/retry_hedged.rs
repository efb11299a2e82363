//! `#[retry(hedge_after = .., idempotent = true)]`: an async function's calls hedged, on
//! tokio's paused clock.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use reflexio::strategies::no_delay;
use reflexio::{AsyncRetryPolicy, Hedging, TransientError, retry};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The first attempt takes a second, the later ones 3 ms.
async fn slow_then_fast(calls: &AtomicU32) -> Result<u32, TransientError> {
    let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
    tokio::time::sleep(if n == 1 { ms(1000) } else { ms(3) }).await;
    Ok(n)
}

#[retry(hedge_after = "10ms", idempotent = true, strategy = no_delay())]
async fn fetch(calls: &AtomicU32) -> Result<u32, TransientError> {
    slow_then_fast(calls).await
}

#[tokio::test(start_paused = true)]
async fn a_slow_call_is_hedged_and_the_hedge_wins() {
    let calls = AtomicU32::new(0);
    let t0 = tokio::time::Instant::now();
    assert_eq!(fetch(&calls).await, Ok(2));
    assert_eq!(
        t0.elapsed(),
        ms(13),
        "the hedge starts at 10 ms and takes 3"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

struct Service {
    calls: AtomicU32,
}

impl Service {
    #[retry(hedge_after = Duration::from_millis(10), idempotent = true)]
    async fn get(&self) -> Result<u32, TransientError> {
        slow_then_fast(&self.calls).await
    }
}

/// The hedged future is `Send`: it runs on a multi-threaded runtime's worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hedged_method_is_send() {
    let service = Arc::new(Service {
        calls: AtomicU32::new(0),
    });
    let task = tokio::spawn({
        let service = Arc::clone(&service);
        async move { service.get().await }
    });
    assert_eq!(task.await.unwrap(), Ok(2));
}

static POLICY: LazyLock<AsyncRetryPolicy<TransientError>> = LazyLock::new(|| {
    AsyncRetryPolicy::builder()
        .hedging(Hedging::after(ms(10)).build().unwrap())
        .build()
        .unwrap()
});

/// With `policy`, the policy says how to hedge, and `idempotent = true` lets this function's
/// calls hedge; without it, the same policy runs one attempt at a time.
#[retry(policy = &*POLICY, idempotent = true)]
async fn hedged_with_policy(calls: &AtomicU32) -> Result<u32, TransientError> {
    slow_then_fast(calls).await
}

#[retry(policy = &*POLICY)]
async fn not_hedged_with_policy(calls: &AtomicU32) -> Result<u32, TransientError> {
    slow_then_fast(calls).await
}

#[tokio::test(start_paused = true)]
async fn idempotent_lets_a_shared_policy_hedge() {
    let calls = AtomicU32::new(0);
    assert_eq!(hedged_with_policy(&calls).await, Ok(2));
    let calls = AtomicU32::new(0);
    let t0 = tokio::time::Instant::now();
    assert_eq!(not_hedged_with_policy(&calls).await, Ok(1));
    assert_eq!(t0.elapsed(), ms(1000));
}
