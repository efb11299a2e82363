//! Instructions per call, counted by callgrind: deterministic, so the default rows can be
//! compared on a shared machine where timings move by tens of percent. `benches/instructions.sh`
//! runs every row under `valgrind --tool=callgrind` twice (N and 2N calls) and prints the
//! difference divided by N, so the start-up and the policies' construction cancel out.
//!
//! ```sh
//! bash benches/instructions.sh          # every row
//! cargo bench --bench instructions -- ROW N   # one row, N calls (what the script runs)
//! ```
//!
//! Every row is a call as users write it with each crate's defaults: reflexio's policies with
//! only a classifier (and, on the failure rows, `no_delay()` and 5 attempts, so nothing sleeps);
//! the peers' default builders, or a zero constant delay and 5 attempts on the failure rows.
//! Async rows are polled on a no-op waker, with no runtime: only the retry crates' own work.

use std::future::{Future, Ready, ready};
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use reflexio::strategies::{full_jitter, no_delay};
use reflexio::{AsyncRetryPolicy, ErrorClass, RetryPolicy, retry};

#[derive(Debug)]
struct Flaky;

fn transient(_: &Flaky) -> ErrorClass {
    ErrorClass::Transient
}

#[allow(clippy::unnecessary_wraps)] // the shape of every retried operation
fn ok() -> Result<u64, Flaky> {
    Ok(black_box(42))
}

/// An operation failing 4 times, then succeeding.
fn flaky() -> impl FnMut() -> Result<u64, Flaky> {
    flaky_n(4)
}

/// An operation failing `n` times, then succeeding.
fn flaky_n(n: u64) -> impl FnMut() -> Result<u64, Flaky> {
    let mut calls = 0;
    move || {
        calls += 1;
        if black_box(calls) <= n {
            Err(Flaky)
        } else {
            Ok(calls)
        }
    }
}

fn flaky_async() -> impl FnMut() -> Ready<Result<u64, Flaky>> {
    let mut op = flaky();
    move || ready(op())
}

#[retry(classifier = transient)]
fn retried() -> Result<u64, Flaky> {
    Ok(black_box(42))
}

#[retry(classifier = transient)]
async fn retried_async() -> Result<u64, Flaky> {
    Ok(black_box(42))
}

#[retry(classifier = transient, strategy = no_delay(), max_attempts = 5)]
fn retried_flaky(calls: &mut u64) -> Result<u64, Flaky> {
    *calls += 1;
    if black_box(*calls) <= 4 {
        Err(Flaky)
    } else {
        Ok(*calls)
    }
}

/// Polls `fut` to completion on a no-op waker.
fn block<F: Future>(fut: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    let mut fut = pin!(fut);
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

#[allow(clippy::too_many_lines)] // one arm per row
fn main() {
    let args: Vec<String> = std::env::args().collect();
    // `cargo bench` passes `--bench`; the row and the count are the other arguments.
    let rest: Vec<&String> = args[1..].iter().filter(|a| !a.starts_with("--")).collect();
    let (Some(row), Some(n)) = (rest.first(), rest.get(1)) else {
        eprintln!("usage: instructions ROW N");
        return;
    };
    let n: u64 = n.parse().expect("a number of calls");

    let policy = RetryPolicy::builder()
        .classifier(transient)
        .build()
        .unwrap();
    let failing = RetryPolicy::builder()
        .classifier(transient)
        .strategy(no_delay())
        .max_attempts(5)
        .build()
        .unwrap();
    let failing_nodl = RetryPolicy::builder()
        .classifier(transient)
        .strategy(no_delay())
        .max_attempts(5)
        .no_deadline()
        .build()
        .unwrap();
    let failing_nodl = black_box(&failing_nodl);
    // The general path: a strategy the engine asks at every retry (jitter with a zero base,
    // so nothing sleeps).
    let failing_jitter = RetryPolicy::builder()
        .classifier(transient)
        .strategy(full_jitter().base(Duration::ZERO))
        .max_attempts(5)
        .no_deadline()
        .build()
        .unwrap();
    let failing_jitter = black_box(&failing_jitter);
    let async_policy = AsyncRetryPolicy::builder()
        .classifier(transient)
        .build()
        .unwrap();
    let async_failing = AsyncRetryPolicy::builder()
        .classifier(transient)
        .strategy(no_delay())
        .max_attempts(5)
        .build()
        .unwrap();
    let (policy, failing) = (black_box(&policy), black_box(&failing));
    let (async_policy, async_failing) = (black_box(&async_policy), black_box(&async_failing));
    let constant = backon::ConstantBuilder::new()
        .with_delay(Duration::ZERO)
        .with_max_times(4);

    let mut sum = 0_u64;
    let mut add = |r: Result<u64, Flaky>| sum = sum.wrapping_add(r.unwrap_or(0));
    for _ in 0..n {
        match row.as_str() {
            "success/bare" => add(ok()),
            "success/reflexio-call" => add(policy.call(ok)),
            "success/reflexio-retry" => add(retried()),
            "success/backon" => {
                use backon::BlockingRetryable;
                add(ok
                    .retry(backon::ExponentialBuilder::default())
                    .sleep(|_| {})
                    .call());
            }
            "success/retry" => {
                add(retry::retry(retry::delay::NoDelay.take(4), ok).map_err(|_| Flaky));
            }
            "failure/bare" => {
                let mut op = flaky();
                for _ in 0..4 {
                    black_box(op().is_err());
                }
                add(op());
            }
            "failure/reflexio-call" => add(failing.call(flaky())),
            "failure/reflexio-call-no-deadline" => add(failing_nodl.call(flaky())),
            "failure/reflexio-call-jitter" => add(failing_jitter.call(flaky())),
            "failure1/reflexio-call-no-deadline" => add(failing_nodl.call(flaky_n(1))),
            "failure2/reflexio-call-no-deadline" => add(failing_nodl.call(flaky_n(2))),
            "failure/reflexio-retry" => add(retried_flaky(&mut 0)),
            "failure/backon" => {
                use backon::BlockingRetryable;
                add(flaky().retry(constant).sleep(|_| {}).call());
            }
            "failure/retry" => {
                add(retry::retry(retry::delay::NoDelay.take(4), flaky()).map_err(|_| Flaky));
            }
            "async-success/bare" => add(block(async { ok() })),
            "async-success/reflexio-call" => add(block(async_policy.call(|| async { ok() }))),
            "async-success/reflexio-retry" => add(block(retried_async())),
            "async-success/backon" => {
                use backon::Retryable;
                let op = || async { ok() };
                add(block(
                    op.retry(backon::ExponentialBuilder::default())
                        .sleep(|_| ready(())),
                ));
            }
            "async-success/tokio-retry" => {
                let strategy = tokio_retry::strategy::FixedInterval::from_millis(0).take(4);
                add(block(tokio_retry::Retry::start(strategy, || async {
                    ok()
                })));
            }
            "async-failure/bare" => add(block(async {
                let mut op = flaky_async();
                for _ in 0..4 {
                    black_box(op().await.is_err());
                }
                op().await
            })),
            "async-failure/reflexio-call" => add(block(async_failing.call(flaky_async()))),
            "async-failure/backon" => {
                use backon::Retryable;
                add(block(flaky_async().retry(constant).sleep(|_| ready(()))));
            }
            other => panic!("no row {other}"),
        }
    }
    black_box(sum);
}
