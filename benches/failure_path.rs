//! The failure path: an operation that fails 4 times, then succeeds, under a policy of 5
//! attempts with zero delays (so nothing sleeps): the cost of 4 retry decisions and 5 calls,
//! against the peers. Sync and async (tokio current-thread runtime). Run with
//! `cargo bench --bench failure_path`.
//!
//! The first rows are each crate as a user sets it up for this: reflexio's policy with a
//! classifier, `no_delay()` and `max_attempts(5)` and nothing else (so with its default deadline,
//! 60 s from the first failure); the peers with a zero constant delay and 4 retries, no jitter.
//! Then reflexio without a deadline, with a hook, and with jitter against the peers' jittered
//! exponential backoff (from a zero base, with no-op sleepers where a crate takes one;
//! tokio-retry and tower always sleep on tokio's timer, here for zero time).

use std::cell::Cell;
use std::future::{Future, Ready, ready};
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use reflexio::strategies::{Strategy, full_jitter, no_delay};
use reflexio::{AsyncRetryPolicy, ErrorClass, RetryPolicy, retry};
use tower::retry::backoff::{Backoff, ExponentialBackoff, ExponentialBackoffMaker, MakeBackoff};
use tower::util::rng::HasherRng;
use tower::{Service, ServiceExt};

#[derive(Debug)]
struct Flaky;

fn transient(_: &Flaky) -> ErrorClass {
    ErrorClass::Transient
}

const FAILURES: u32 = 4;
const MAX: Duration = Duration::from_secs(10);

/// A fresh operation: fails `FAILURES` times, then returns the number of calls.
fn flaky() -> impl FnMut() -> Result<u32, Flaky> {
    let mut calls = 0;
    move || {
        calls += 1;
        if calls <= FAILURES {
            Err(Flaky)
        } else {
            Ok(black_box(calls))
        }
    }
}

/// The same, for async operations: each call returns a ready future.
fn flaky_async() -> impl FnMut() -> Ready<Result<u32, Flaky>> {
    let mut op = flaky();
    move || ready(op())
}

#[retry(max_attempts = 5, strategy = no_delay(), classifier = transient)]
fn retried(failures: &Cell<u32>) -> Result<u32, Flaky> {
    if failures.get() > 0 {
        failures.set(failures.get() - 1);
        Err(Flaky)
    } else {
        Ok(black_box(5))
    }
}

#[retry(max_attempts = 5, strategy = no_delay(), classifier = transient)]
async fn retried_async(failures: &Cell<u32>) -> Result<u32, Flaky> {
    if failures.get() > 0 {
        failures.set(failures.get() - 1);
        Err(Flaky)
    } else {
        Ok(black_box(5))
    }
}

fn sync_policy(
    strategy: impl Strategy + 'static,
    hook: bool,
    deadline: bool,
) -> RetryPolicy<Flaky> {
    let builder = RetryPolicy::builder()
        .classifier(transient)
        .strategy(strategy)
        .max_attempts(5);
    let builder = if deadline {
        builder
    } else {
        builder.no_deadline()
    };
    let builder = if hook {
        builder.on_event(|event| {
            black_box(event);
        })
    } else {
        builder
    };
    builder.build().expect("valid policy")
}

fn async_policy(
    strategy: impl Strategy + 'static,
    hook: bool,
    deadline: bool,
) -> AsyncRetryPolicy<Flaky> {
    let builder = AsyncRetryPolicy::builder()
        .classifier(transient)
        .strategy(strategy)
        .max_attempts(5);
    let builder = if deadline {
        builder
    } else {
        builder.no_deadline()
    };
    let builder = if hook {
        builder.on_event(|event| {
            black_box(event);
        })
    } else {
        builder
    };
    builder.build().expect("valid policy")
}

fn backon_builder() -> backon::ExponentialBuilder {
    backon::ExponentialBuilder::new()
        .with_jitter()
        .with_min_delay(Duration::ZERO)
        .with_max_delay(MAX)
        .with_max_times(4)
}

/// backon's constant backoff: zero delay, 4 retries, no jitter.
fn backon_constant() -> backon::ConstantBuilder {
    backon::ConstantBuilder::new()
        .with_delay(Duration::ZERO)
        .with_max_times(4)
}

fn backoff_proto() -> backoff::ExponentialBackoff {
    backoff::ExponentialBackoffBuilder::new()
        .with_initial_interval(Duration::ZERO)
        .with_max_interval(MAX)
        .with_max_elapsed_time(Some(Duration::from_secs(60)))
        .build()
}

fn failure_sync(c: &mut Criterion) {
    let mut g = c.benchmark_group("failure_sync");
    g.bench_function("bare: 5 calls, no retry logic", |b| {
        b.iter(|| {
            let mut op = flaky();
            for _ in 0..FAILURES {
                black_box(op().is_err());
            }
            op()
        });
    });
    // As a user sets each crate up for this.
    let policy = sync_policy(no_delay(), false, true);
    g.bench_function("default: reflexio call, no_delay", |b| {
        b.iter(|| policy.call(flaky()));
    });
    g.bench_function("default: reflexio #[retry] fn, no_delay", |b| {
        b.iter(|| retried(&Cell::new(FAILURES)));
    });
    let constant = backon_constant();
    g.bench_function("default: backon BlockingRetryable, zero constant", |b| {
        use backon::BlockingRetryable;
        b.iter(|| flaky().retry(constant).sleep(|_| {}).call());
    });
    g.bench_function("default: retry::retry, NoDelay", |b| {
        b.iter(|| retry::retry(retry::delay::NoDelay.take(4), flaky()));
    });
    g.bench_function("default: backoff::retry, zero constant", |b| {
        b.iter(|| {
            let mut op = flaky();
            backoff::retry(backoff::backoff::Constant::new(Duration::ZERO), || {
                op().map_err(backoff::Error::transient)
            })
        });
    });

    let policy = sync_policy(no_delay(), false, false);
    g.bench_function("reflexio call, no_delay, no_deadline", |b| {
        b.iter(|| policy.call(flaky()));
    });
    let policy = sync_policy(no_delay(), true, false);
    g.bench_function("reflexio call, no_delay, no_deadline, on_event", |b| {
        b.iter(|| policy.call(flaky()));
    });
    let policy = sync_policy(full_jitter().base(Duration::ZERO).max(MAX), false, false);
    g.bench_function("reflexio call, full_jitter(0), no_deadline", |b| {
        b.iter(|| policy.call(flaky()));
    });
    let builder = backon_builder();
    g.bench_function("backon BlockingRetryable, jittered exponential", |b| {
        use backon::BlockingRetryable;
        b.iter(|| flaky().retry(builder).sleep(|_| {}).call());
    });
    let proto = backoff_proto();
    g.bench_function("backoff::retry, jittered exponential", |b| {
        b.iter(|| {
            let mut op = flaky();
            backoff::retry(proto.clone(), || op().map_err(backoff::Error::transient))
        });
    });
    g.bench_function("retry::retry, jittered exponential", |b| {
        b.iter(|| {
            retry::retry(
                retry::delay::Exponential::from_millis(0)
                    .map(retry::delay::jitter)
                    .take(4),
                flaky(),
            )
        });
    });
    g.finish();
}

/// A no-op sleeper for backoff's async `Retry`.
struct NoSleep;

impl backoff::future::Sleeper for NoSleep {
    type Sleep = Ready<()>;
    fn sleep(&self, _: Duration) -> Ready<()> {
        ready(())
    }
}

/// tower's retry: a `Policy` retrying every error up to 4 times on tower's exponential backoff
/// with jitter (a tokio `Sleep`, here of zero time).
#[derive(Clone)]
struct TowerPolicy {
    retries_left: u32,
    backoff: ExponentialBackoff<HasherRng>,
}

impl<Req: Copy, Res, E> tower::retry::Policy<Req, Res, E> for TowerPolicy {
    type Future = tokio::time::Sleep;

    fn retry(&mut self, _: &mut Req, result: &mut Result<Res, E>) -> Option<Self::Future> {
        if result.is_ok() || self.retries_left == 0 {
            return None;
        }
        self.retries_left -= 1;
        Some(self.backoff.next_backoff())
    }

    fn clone_request(&mut self, req: &Req) -> Option<Req> {
        Some(*req)
    }
}

fn run<F, Fut>(rt: &tokio::runtime::Runtime, iters: u64, mut make: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future,
{
    rt.block_on(async {
        let start = Instant::now();
        for _ in 0..iters {
            black_box(make().await);
        }
        start.elapsed()
    })
}

fn failure_async(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let mut g = c.benchmark_group("failure_async");
    g.bench_function("bare: 5 awaits, no retry logic", |b| {
        b.iter_custom(|n| {
            run(&rt, n, || async {
                let mut op = flaky_async();
                for _ in 0..FAILURES {
                    black_box(op().await.is_err());
                }
                op().await
            })
        });
    });
    // As a user sets each crate up for this.
    let policy = async_policy(no_delay(), false, true);
    g.bench_function("default: reflexio call, no_delay", |b| {
        b.iter_custom(|n| run(&rt, n, || policy.call(flaky_async())));
    });
    g.bench_function("default: reflexio #[retry] async fn, no_delay", |b| {
        b.iter_custom(|n| {
            run(&rt, n, || async {
                let failures = Cell::new(FAILURES);
                retried_async(&failures).await
            })
        });
    });
    let constant = backon_constant();
    g.bench_function("default: backon Retryable, zero constant", |b| {
        use backon::Retryable;
        b.iter_custom(|n| {
            run(&rt, n, || {
                flaky_async().retry(constant).sleep(|_| ready(()))
            })
        });
    });

    let policy = async_policy(no_delay(), false, false);
    g.bench_function("reflexio call, no_delay, no_deadline", |b| {
        b.iter_custom(|n| run(&rt, n, || policy.call(flaky_async())));
    });
    let policy = async_policy(no_delay(), true, false);
    g.bench_function("reflexio call, no_delay, no_deadline, on_event", |b| {
        b.iter_custom(|n| run(&rt, n, || policy.call(flaky_async())));
    });
    let policy = async_policy(full_jitter().base(Duration::ZERO).max(MAX), false, false);
    g.bench_function("reflexio call, full_jitter(0), no_deadline", |b| {
        b.iter_custom(|n| run(&rt, n, || policy.call(flaky_async())));
    });

    let builder = backon_builder();
    g.bench_function("backon Retryable, jittered exponential", |b| {
        use backon::Retryable;
        b.iter_custom(|n| run(&rt, n, || flaky_async().retry(builder).sleep(|_| ready(()))));
    });
    g.bench_function("tokio-retry Retry::start", |b| {
        use tokio_retry::strategy::{ExponentialBackoff, jitter};
        b.iter_custom(|n| {
            run(&rt, n, || {
                let strategy = ExponentialBackoff::from_millis(0)
                    .max_delay(MAX)
                    .map(jitter)
                    .take(4);
                tokio_retry::Retry::start(strategy, flaky_async())
            })
        });
    });
    let proto = backoff_proto();
    g.bench_function("backoff future::Retry", |b| {
        use backoff::backoff::Backoff as _;
        b.iter_custom(|n| {
            run(&rt, n, || {
                let mut backoff = proto.clone();
                backoff.reset();
                let mut op = flaky_async();
                backoff::future::Retry::new(
                    NoSleep,
                    backoff,
                    |_: Flaky, _: Duration| {},
                    move || {
                        let out = op();
                        async move { out.await.map_err(backoff::Error::transient) }
                    },
                )
            })
        });
    });
    bench_tower(&mut g, &rt);
    g.finish();
}

/// tower's `Retry` service: a fresh service per call, counting its own calls.
fn bench_tower(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    rt: &tokio::runtime::Runtime,
) {
    let mut maker = ExponentialBackoffMaker::new(Duration::ZERO, MAX, 1.0, HasherRng::default())
        .expect("valid backoff");
    let tower_policy = TowerPolicy {
        retries_left: 4,
        backoff: maker.make_backoff(),
    };
    g.bench_function("tower retry::Retry service", |b| {
        b.iter_custom(|n| {
            run(rt, n, || {
                let calls = Cell::new(0);
                let svc = tower::retry::Retry::new(
                    tower_policy.clone(),
                    tower::service_fn(move |()| {
                        calls.set(calls.get() + 1);
                        ready(if calls.get() <= FAILURES {
                            Err(Flaky)
                        } else {
                            Ok(black_box(calls.get()))
                        })
                    }),
                );
                async move {
                    let mut svc = svc;
                    svc.ready().await?.call(()).await
                }
            })
        });
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = failure_sync, failure_async
}
criterion_main!(benches);
