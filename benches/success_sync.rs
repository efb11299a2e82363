//! The success path, sync: what wrapping a call that succeeds at once costs, against the bare
//! call and the peers. The first rows use each crate's defaults (reflexio's with only a
//! classifier set, as a user writes it; the peers' default builders), then reflexio's settings
//! that cost more (a deadline counted from the start, a hook). Run with
//! `cargo bench --bench success_sync`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
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

/// A `#[retry]` function with the defaults: only the classifier is set.
#[retry(classifier = transient)]
fn retried() -> Result<u64, Flaky> {
    Ok(black_box(42))
}

#[retry(classifier = transient, deadline = "60s")]
fn retried_with_deadline() -> Result<u64, Flaky> {
    Ok(black_box(42))
}

/// The builder with only the classifier set.
type Builder = reflexio::RetryPolicyBuilder<Flaky, fn(&Flaky) -> ErrorClass>;

/// The default policy with one change.
fn reflexio_policy(tune: impl FnOnce(Builder) -> Builder) -> RetryPolicy<Flaky> {
    let classify: fn(&Flaky) -> ErrorClass = transient;
    tune(RetryPolicy::builder().classifier(classify))
        .build()
        .expect("valid policy")
}

fn success_sync(c: &mut Criterion) {
    let mut g = c.benchmark_group("success_sync");
    g.bench_function("bare call", |b| b.iter(op));

    // Each crate's defaults.
    let policy = reflexio_policy(|b| b);
    g.bench_function("default: reflexio RetryPolicy::call", |b| {
        b.iter(|| policy.call(op));
    });
    g.bench_function("default: reflexio #[retry] fn", |b| b.iter(retried));
    g.bench_function("default: backon BlockingRetryable", |b| {
        use backon::BlockingRetryable;
        let builder = backon::ExponentialBuilder::default();
        b.iter(|| op.retry(builder).sleep(|_| {}).call());
    });
    // backoff: a fresh `ExponentialBackoff` per call (it is stateful); `retry` resets it, which
    // reads the clock for its `max_elapsed_time` (15 minutes by default).
    let proto = backoff::ExponentialBackoff::default();
    g.bench_function("default: backoff::retry", |b| {
        b.iter(|| backoff::retry(proto.clone(), || op().map_err(backoff::Error::transient)));
    });
    // retry has no default: no delay, 5 attempts.
    g.bench_function("default: retry::retry (NoDelay, 5 attempts)", |b| {
        b.iter(|| retry::retry(retry::delay::NoDelay.take(4), op));
    });

    // reflexio's settings that cost more, and the shape of the tuned rows before (jittered
    // exponential backoff, 5 attempts) for the peers.
    let policy = reflexio_policy(|b| b.deadline(Duration::from_secs(60)));
    g.bench_function(
        "reflexio RetryPolicy::call, .deadline(60 s) from the start",
        |b| {
            b.iter(|| policy.call(op));
        },
    );
    g.bench_function("reflexio #[retry] fn, deadline = 60s", |b| {
        b.iter(retried_with_deadline);
    });
    let policy = reflexio_policy(reflexio::PolicyBuilder::no_deadline);
    g.bench_function("reflexio RetryPolicy::call, no_deadline", |b| {
        b.iter(|| policy.call(op));
    });
    let policy = reflexio_policy(|b| {
        b.on_event(|event| {
            black_box(event);
        })
    });
    g.bench_function("reflexio RetryPolicy::call, on_event", |b| {
        b.iter(|| policy.call(op));
    });
    let builder = backon::ExponentialBuilder::new()
        .with_jitter()
        .with_min_delay(BASE)
        .with_max_delay(MAX)
        .with_max_times(4);
    g.bench_function("backon BlockingRetryable, jittered exponential", |b| {
        use backon::BlockingRetryable;
        b.iter(|| op.retry(builder).sleep(|_| {}).call());
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
