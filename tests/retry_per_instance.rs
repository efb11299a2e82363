//! `#[retry(policy = &self.policy)]`: the expression is evaluated at every call, so each
//! instance retries under its own policy, with its own attempt limit and its own circuit
//! breaker. (The other keys are evaluated once for the whole program, so they cannot read
//! `self` or an argument: see `tests/ui/frozen-*.rs`.)

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use async_trait::async_trait;
use reflexio::strategies::no_delay;
use reflexio::{
    AsyncRetryPolicy, CircuitBreaker, CircuitOpen, CircuitState, Classify, RetryPolicy, retry,
};

#[derive(Debug, PartialEq, Classify)]
enum Failure {
    #[class(transient)]
    Down,
    #[class(from_source)]
    Open(CircuitOpen),
}

impl From<CircuitOpen> for Failure {
    fn from(e: CircuitOpen) -> Self {
        Failure::Open(e)
    }
}

/// A breaker that opens once half of at least `min_calls` calls failed.
fn breaker(min_calls: u32) -> CircuitBreaker {
    CircuitBreaker::builder()
        .min_calls(min_calls)
        .failure_rate(0.5)
        .build()
        .unwrap()
}

struct Client {
    policy: RetryPolicy<Failure>,
    breaker: CircuitBreaker,
    calls: AtomicU32,
}

impl Client {
    /// A client whose breaker opens after two failed attempts.
    fn new(max_attempts: u32) -> Client {
        Client::with_breaker(max_attempts, breaker(2))
    }

    /// A client whose breaker stays closed in these tests.
    fn closed(max_attempts: u32) -> Client {
        Client::with_breaker(max_attempts, breaker(1000))
    }

    fn with_breaker(max_attempts: u32, breaker: CircuitBreaker) -> Client {
        Client {
            policy: RetryPolicy::builder()
                .strategy(no_delay())
                .max_attempts(max_attempts)
                .circuit_breaker(breaker.clone())
                .build()
                .unwrap(),
            breaker,
            calls: AtomicU32::new(0),
        }
    }

    #[retry(policy = &self.policy)]
    fn fetch(&self) -> Result<(), Failure> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Err(Failure::Down)
    }

    fn calls(&self) -> u32 {
        self.calls.swap(0, Ordering::SeqCst)
    }
}

#[test]
fn each_instance_retries_under_its_own_policy() {
    let few = Client::closed(2);
    let many = Client::closed(5);
    // `few` is called first: a policy kept from the first call would give `many` two attempts.
    assert_eq!(few.fetch(), Err(Failure::Down));
    assert_eq!(few.calls(), 2);
    assert_eq!(many.fetch(), Err(Failure::Down));
    assert_eq!(many.calls(), 5);
    assert_eq!(many.fetch(), Err(Failure::Down));
    assert_eq!(few.fetch(), Err(Failure::Down));
    assert_eq!((few.calls(), many.calls()), (2, 5));
}

#[test]
fn each_instance_has_its_own_circuit_breaker() {
    let a = Client::new(2);
    let b = Client::new(2);
    // Two failed attempts open `a`'s breaker: its next call is rejected without an attempt.
    assert_eq!(a.fetch(), Err(Failure::Down));
    assert_eq!(a.breaker.state(), CircuitState::Open);
    assert_eq!(a.calls(), 2);
    assert!(matches!(a.fetch(), Err(Failure::Open(_))));
    assert_eq!(a.calls(), 0);
    // `b`'s breaker is still closed, and `b`'s calls go through.
    assert_eq!(b.breaker.state(), CircuitState::Closed);
    assert_eq!(b.fetch(), Err(Failure::Down));
    assert_eq!(b.calls(), 2);
}

/// A policy chosen by an argument, and one behind an `Arc` (deref coercion), work as well.
#[retry(policy = &client.policy)]
fn fetch_with(client: &Client) -> Result<(), Failure> {
    client.calls.fetch_add(1, Ordering::SeqCst);
    Err(Failure::Down)
}

struct Shared {
    policy: Arc<RetryPolicy<Failure>>,
}

impl Shared {
    #[retry(policy = self.policy)]
    fn fetch(&self, calls: &AtomicU32) -> Result<(), Failure> {
        calls.fetch_add(1, Ordering::SeqCst);
        Err(Failure::Down)
    }
}

#[test]
fn a_policy_from_an_argument_or_behind_an_arc() {
    let (few, many) = (Client::closed(2), Client::closed(3));
    assert!(fetch_with(&few).is_err());
    assert!(fetch_with(&many).is_err());
    assert_eq!((few.calls(), many.calls()), (2, 3));

    let calls = AtomicU32::new(0);
    let shared = Shared {
        policy: Arc::new(
            RetryPolicy::builder()
                .strategy(no_delay())
                .max_attempts(4)
                .build()
                .unwrap(),
        ),
    };
    assert!(shared.fetch(&calls).is_err());
    assert_eq!(calls.load(Ordering::SeqCst), 4);
}

struct AsyncClient {
    policy: AsyncRetryPolicy<Failure>,
    calls: AtomicU32,
}

impl AsyncClient {
    fn new(max_attempts: u32, min_calls: u32) -> AsyncClient {
        AsyncClient {
            policy: AsyncRetryPolicy::builder()
                .strategy(no_delay())
                .max_attempts(max_attempts)
                .circuit_breaker(breaker(min_calls))
                .build()
                .unwrap(),
            calls: AtomicU32::new(0),
        }
    }

    #[retry(policy = &self.policy)]
    async fn fetch(&self) -> Result<(), Failure> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Err(Failure::Down)
    }
}

fn assert_send<T: Send>(t: T) -> T {
    t
}

#[test]
fn async_instances_retry_under_their_own_policies() {
    // `few`'s breaker opens after two failed attempts, `many`'s stays closed.
    let few = AsyncClient::new(2, 2);
    let many = AsyncClient::new(5, 1000);
    futures::executor::block_on(async {
        assert_eq!(assert_send(few.fetch()).await, Err(Failure::Down));
        assert_eq!(many.fetch().await, Err(Failure::Down));
        assert!(matches!(few.fetch().await, Err(Failure::Open(_))));
        assert_eq!(many.fetch().await, Err(Failure::Down));
    });
    assert_eq!(few.calls.load(Ordering::SeqCst), 2);
    assert_eq!(many.calls.load(Ordering::SeqCst), 10);
}

#[async_trait]
trait Fetch {
    async fn fetch(&self) -> Result<(), Failure>;
}

#[async_trait]
impl Fetch for AsyncClient {
    #[retry(policy = &self.policy)]
    async fn fetch(&self) -> Result<(), Failure> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Err(Failure::Down)
    }
}

#[test]
fn async_trait_instances_too() {
    let few = AsyncClient::new(2, 1000);
    let many = AsyncClient::new(4, 1000);
    futures::executor::block_on(async {
        assert_eq!(Fetch::fetch(&few).await, Err(Failure::Down));
        assert_eq!(Fetch::fetch(&many).await, Err(Failure::Down));
    });
    assert_eq!(few.calls.load(Ordering::SeqCst), 2);
    assert_eq!(many.calls.load(Ordering::SeqCst), 4);
}
