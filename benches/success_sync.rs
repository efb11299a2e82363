//! The success path, sync: what wrapping a call that succeeds at once costs, against the bare
//! call and the peers, all with the same policy shape (5 attempts, exponential backoff with
//! jitter, no sleeping). Run with `cargo bench --bench success_sync`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use reflexio::strategies::full_jitter;
use reflexio::{ErrorClass, RetryPolicy, retry};

/// The error of every operation, classified `Transient` (never produced on this path).
#[derive(Debug)]
struct Flaky;

fn transient(_: &Flaky) -> ErrorClass {
    ErrorClass::Transient
}

const BASE: Duration = Duration::from_millis(100);
const MAX: Duration = Duration::from_secs(10);

/// The operation: returns a value the optimiser cannot see through.
#[allow(clippy::unnecessary_wraps)] // the shape of every retried operation
fn op() -> Result<u64, Flaky> {
    Ok(black_box(42))
}

#[retry(max_attempts = 5, strategy = full_jitter().base(BASE).max(MAX), deadline = None, classifier = transient)]
fn retried() -> Result<u64, Flaky> {
    Ok(black_box(42))
}

#[retry(max_attempts = 5, strategy = full_jitter().base(BASE).max(MAX), classifier = transient)]
fn retried_with_deadline() -> Result<u64, Flaky> {
    Ok(black_box(42))
}

fn reflexio_policy(deadline: bool, hook: bool) -> RetryPolicy<Flaky> {
    let mut builder = RetryPolicy::builder()
        .classifier(transient)
        .strategy(full_jitter().base(BASE).max(MAX))
        .max_attempts(5);
    if !deadline {
        builder = builder.no_deadline();
    }
    if hook {
        builder = builder.on_event(|event| {
            black_box(event);
        });
    }
    builder.build().expect("valid policy")
}

fn success_sync(c: &mut Criterion) {
    let mut g = c.benchmark_group("success_sync");
    g.bench_function("bare call", |b| b.iter(op));

    let policy = reflexio_policy(false, false);
    g.bench_function("reflexio RetryPolicy::call, no deadline", |b| {
        b.iter(|| policy.call(op));
    });
    let policy = reflexio_policy(true, false);
    g.bench_function("reflexio RetryPolicy::call, 60 s deadline", |b| {
        b.iter(|| policy.call(op));
    });
    let policy = reflexio_policy(false, true);
    g.bench_function("reflexio RetryPolicy::call, no deadline, on_event", |b| {
        b.iter(|| policy.call(op));
    });
    g.bench_function("reflexio #[retry] fn, no deadline", |b| b.iter(retried));
    g.bench_function("reflexio #[retry] fn, 60 s deadline", |b| {
        b.iter(retried_with_deadline);
    });

    // backon: the builder is `Copy` and built into a backoff (with its RNG) on every call.
    let builder = backon::ExponentialBuilder::new()
        .with_jitter()
        .with_min_delay(BASE)
        .with_max_delay(MAX)
        .with_max_times(4);
    g.bench_function("backon BlockingRetryable", |b| {
        use backon::BlockingRetryable;
        b.iter(|| op.retry(builder).sleep(|_| {}).call());
    });

    // backoff: a fresh `ExponentialBackoff` per call (it is stateful); `retry` resets it, which
    // reads the clock. Its `max_elapsed_time` plays the deadline (it cannot count attempts).
    let proto = backoff::ExponentialBackoffBuilder::new()
        .with_initial_interval(BASE)
        .with_max_interval(MAX)
        .with_max_elapsed_time(Some(Duration::from_secs(60)))
        .build();
    g.bench_function("backoff::retry", |b| {
        b.iter(|| backoff::retry(proto.clone(), || op().map_err(backoff::Error::transient)));
    });

    // retry: an iterator of delays per call.
    g.bench_function("retry::retry", |b| {
        b.iter(|| {
            retry::retry(
                retry::delay::Exponential::from_millis(100)
                    .map(retry::delay::jitter)
                    .take(4),
                op,
            )
        });
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = success_sync
}
criterion_main!(benches);
