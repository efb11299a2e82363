//! `#[retry]` with the policy's shared guards: a retry budget, a circuit breaker, and an
//! attempt timeout (async only).

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use reflexio::strategies::no_delay;
use reflexio::{AttemptTimedOut, CircuitBreaker, CircuitOpen, Classify, RetryBudget, retry};

#[derive(Debug, PartialEq, Classify)]
enum Failure {
    #[class(transient)]
    Down,
    #[class(from_source)]
    Open(CircuitOpen),
    #[class(from_source)]
    TimedOut(AttemptTimedOut),
}

impl From<CircuitOpen> for Failure {
    fn from(e: CircuitOpen) -> Self {
        Failure::Open(e)
    }
}

impl From<AttemptTimedOut> for Failure {
    fn from(e: AttemptTimedOut) -> Self {
        Failure::TimedOut(e)
    }
}

#[test]
fn a_budget_bounds_the_retries() {
    static CALLS: AtomicU32 = AtomicU32::new(0);
    static BUDGET: LazyLock<RetryBudget> =
        LazyLock::new(|| RetryBudget::token_bucket(2.0).build().unwrap());

    #[retry(strategy = no_delay(), max_attempts = 10, budget = BUDGET.clone())]
    fn always_down() -> Result<(), Failure> {
        CALLS.fetch_add(1, Ordering::SeqCst);
        Err(Failure::Down)
    }

    assert_eq!(always_down(), Err(Failure::Down));
    // Two tokens pay for two retries: three calls instead of ten.
    assert_eq!(CALLS.load(Ordering::SeqCst), 3);
}

#[test]
fn a_circuit_breaker_rejects_calls_once_open() {
    static CALLS: AtomicU32 = AtomicU32::new(0);
    static BREAKER: LazyLock<CircuitBreaker> = LazyLock::new(|| {
        CircuitBreaker::builder()
            .min_calls(2)
            .failure_rate(0.5)
            .build()
            .unwrap()
    });

    #[retry(strategy = no_delay(), max_attempts = 2, circuit_breaker = BREAKER.clone())]
    fn always_down() -> Result<(), Failure> {
        CALLS.fetch_add(1, Ordering::SeqCst);
        Err(Failure::Down)
    }

    assert_eq!(always_down(), Err(Failure::Down));
    assert_eq!(CALLS.load(Ordering::SeqCst), 2);
    // Two failures out of two calls: the breaker is open, the next call is not made.
    assert!(matches!(always_down(), Err(Failure::Open(_))));
    assert_eq!(CALLS.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn an_attempt_timeout_cancels_slow_attempts() {
    static CALLS: AtomicU32 = AtomicU32::new(0);

    #[retry(strategy = no_delay(), max_attempts = 3, attempt_timeout = "1s")]
    async fn slow_then_fast() -> Result<u32, Failure> {
        let n = CALLS.fetch_add(1, Ordering::SeqCst) + 1;
        if n < 3 {
            tokio::time::sleep(Duration::from_secs(10)).await;
        }
        Ok(n)
    }

    let start = tokio::time::Instant::now();
    assert_eq!(slow_then_fast().await, Ok(3));
    assert_eq!(start.elapsed(), Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn attempt_timeout_takes_a_const() {
    const TIMEOUT: Duration = Duration::from_millis(1500);
    static CALLS: AtomicU32 = AtomicU32::new(0);

    #[retry(strategy = no_delay(), max_attempts = 3, attempt_timeout = TIMEOUT)]
    async fn by_const() -> Result<u32, Failure> {
        let n = CALLS.fetch_add(1, Ordering::SeqCst) + 1;
        if n < 3 {
            tokio::time::sleep(Duration::from_secs(10)).await;
        }
        Ok(n)
    }

    let start = tokio::time::Instant::now();
    assert_eq!(by_const().await, Ok(3));
    assert_eq!(start.elapsed(), Duration::from_secs(3));
}

#[tokio::test(start_paused = true)]
async fn attempt_timeout_takes_a_duration_expression() {
    static CALLS: AtomicU32 = AtomicU32::new(0);

    #[retry(strategy = no_delay(), max_attempts = 3, attempt_timeout = Duration::from_millis(700))]
    async fn by_expression() -> Result<u32, Failure> {
        let n = CALLS.fetch_add(1, Ordering::SeqCst) + 1;
        if n < 3 {
            tokio::time::sleep(Duration::from_secs(10)).await;
        }
        Ok(n)
    }

    let start = tokio::time::Instant::now();
    assert_eq!(by_expression().await, Ok(3));
    assert_eq!(start.elapsed(), Duration::from_millis(1400));
}
