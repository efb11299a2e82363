//! The size of the futures reflexio returns, against the future they wrap: the user's future is
//! held inline, once, never boxed, so the overhead is a constant whatever its size.
//!
//! `cargo test -p reflexio-tests --test future_size -- --nocapture` prints the figures (quoted in
//! BENCHMARKS.md).

use std::cell::Cell;
use std::hint::black_box;
use std::mem::size_of_val;

use reflexio::strategies::no_delay;
use reflexio::{AsyncRetryPolicy, ErrorClass, retry};

#[derive(Debug, PartialEq, Eq)]
struct Flaky;

fn transient(_: &Flaky) -> ErrorClass {
    ErrorClass::Transient
}

/// The overhead of a wrapper may not exceed this many bytes (issue 13's bound). It holds the
/// per-call state of a lean policy (the counters and previous delay of each of the 5 retried
/// classes, the clock readings: 112 B; a policy with a breaker, budget or hook boxes the rest),
/// one timer for a sleep or an attempt timeout (tokio's `Sleep`, 96 B), and the step the call
/// is at. `BENCHMARKS.md` says what a smaller one would take. Lower it when it shrinks; raise
/// it only knowingly.
const MAX_OVERHEAD: usize = 256;

/// Yields once, so a future that awaits it keeps its locals across a suspension point.
async fn suspend() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            std::task::Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    })
    .await;
}

/// A small operation: a few bytes of state.
async fn small(n: &Cell<u32>) -> Result<u32, Flaky> {
    suspend().await;
    n.set(n.get() + 1);
    Ok(black_box(n.get()))
}

/// A large operation: 4 KiB of state kept across a suspension point.
async fn large(n: &Cell<u32>) -> Result<u32, Flaky> {
    let buf = black_box([7_u8; 4096]);
    suspend().await;
    n.set(n.get() + 1);
    Ok(u32::from(black_box(&buf)[n.get() as usize % 4096]))
}

#[retry(max_attempts = 5, strategy = no_delay(), deadline = None, classifier = transient)]
async fn small_retried(n: &Cell<u32>) -> Result<u32, Flaky> {
    suspend().await;
    n.set(n.get() + 1);
    Ok(black_box(n.get()))
}

#[retry(max_attempts = 5, strategy = no_delay(), deadline = None, classifier = transient)]
async fn large_retried(n: &Cell<u32>) -> Result<u32, Flaky> {
    let buf = black_box([7_u8; 4096]);
    suspend().await;
    n.set(n.get() + 1);
    Ok(u32::from(black_box(&buf)[n.get() as usize % 4096]))
}

/// The sizes of one wrapper around a small and a large future: `(small, small wrapped, large,
/// large wrapped)`.
struct Sizes {
    name: &'static str,
    small: usize,
    small_wrapped: usize,
    large: usize,
    large_wrapped: usize,
}

impl Sizes {
    fn check(&self) {
        let Sizes {
            name,
            small,
            small_wrapped,
            large,
            large_wrapped,
        } = *self;
        let overhead = small_wrapped - small;
        println!(
            "{name}: wraps {small} B -> {small_wrapped} B, {large} B -> {large_wrapped} B \
             (overhead {overhead} B / {} B)",
            large_wrapped - large
        );
        // Boxed, the wrapper would be smaller than the large future it wraps.
        assert!(
            large_wrapped >= large,
            "{name}: the wrapped future is boxed"
        );
        // Held twice (an argument moved into a second local across an await), the large
        // future's overhead would grow by its own size.
        assert_eq!(
            large_wrapped - large,
            overhead,
            "{name}: the overhead depends on the wrapped future's size"
        );
        assert!(
            overhead <= MAX_OVERHEAD,
            "{name}: {overhead} B of overhead, more than {MAX_OVERHEAD} B"
        );
    }
}

#[test]
fn async_retry_policy_call_holds_the_future_inline() {
    let policy = AsyncRetryPolicy::builder()
        .classifier(transient)
        .strategy(no_delay())
        .max_attempts(5)
        .build()
        .unwrap();
    let n = Cell::new(0);
    Sizes {
        name: "AsyncRetryPolicy::call",
        small: size_of_val(&small(&n)),
        small_wrapped: size_of_val(&policy.call(|| small(&n))),
        large: size_of_val(&large(&n)),
        large_wrapped: size_of_val(&policy.call(|| large(&n))),
    }
    .check();
    Sizes {
        name: "AsyncRetryPolicy::execute",
        small: size_of_val(&small(&n)),
        small_wrapped: size_of_val(&policy.execute(|| small(&n))),
        large: size_of_val(&large(&n)),
        large_wrapped: size_of_val(&policy.execute(|| large(&n))),
    }
    .check();
}

#[test]
fn async_retry_functions_hold_the_body_inline() {
    let n = Cell::new(0);
    Sizes {
        name: "#[retry] async fn",
        small: size_of_val(&small(&n)),
        small_wrapped: size_of_val(&small_retried(&n)),
        large: size_of_val(&large(&n)),
        large_wrapped: size_of_val(&large_retried(&n)),
    }
    .check();
}

/// The figures above are of futures that really run: each succeeds after one suspension.
#[test]
fn the_measured_futures_run() {
    let policy = AsyncRetryPolicy::builder()
        .classifier(transient)
        .strategy(no_delay())
        .build()
        .unwrap();
    let n = Cell::new(0);
    futures::executor::block_on(async {
        assert_eq!(policy.call(|| small(&n)).await, Ok(1));
        assert_eq!(policy.call(|| large(&n)).await, Ok(7));
        assert_eq!(small_retried(&n).await, Ok(3));
        assert_eq!(large_retried(&n).await, Ok(7));
    });
}
