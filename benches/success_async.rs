//! The success path, async, on a tokio current-thread runtime: what wrapping a future that
//! succeeds at once costs, against the bare `.await` and the peers. The first rows use each
//! crate's defaults (reflexio's with only a classifier set; the peers' default builders, or 5
//! attempts with no delay where a crate has no default), then reflexio's settings that cost
//! more. Each sample runs its iterations inside one `block_on`, so only the awaits are timed.
//! Run with `cargo bench --bench success_async`.

use std::future::{Future, Ready, ready};
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use reflexio::{AsyncRetryPolicy, ErrorClass, retry};
use tower::retry::backoff::{Backoff, ExponentialBackoff, ExponentialBackoffMaker, MakeBackoff};
use tower::util::rng::HasherRng;
use tower::{Service, ServiceExt};

#[derive(Debug)]
struct Flaky;

fn transient(_: &Flaky) -> ErrorClass {
    ErrorClass::Transient
}

const BASE: Duration = Duration::from_millis(100);
const MAX: Duration = Duration::from_secs(10);

async fn op() -> Result<u64, Flaky> {
    Ok(black_box(42))
}

/// A `#[retry]` function with the defaults: only the classifier is set.
#[retry(classifier = transient)]
async fn retried() -> Result<u64, Flaky> {
    Ok(black_box(42))
}

#[retry(classifier = transient, deadline = "60s")]
async fn retried_with_deadline() -> Result<u64, Flaky> {
    Ok(black_box(42))
}

/// The builder with only the classifier set.
type Builder = reflexio::AsyncRetryPolicyBuilder<Flaky, fn(&Flaky) -> ErrorClass>;

/// The default policy with one change.
fn reflexio_policy(tune: impl FnOnce(Builder) -> Builder) -> AsyncRetryPolicy<Flaky> {
    let classify: fn(&Flaky) -> ErrorClass = transient;
    tune(AsyncRetryPolicy::builder().classifier(classify))
        .build()
        .expect("valid policy")
}

fn hedge_after_10ms() -> reflexio::Hedging {
    reflexio::Hedging::after(Duration::from_millis(10))
        .build()
        .expect("valid hedging")
}

/// A no-op sleeper for backoff's async `Retry`.
struct NoSleep;

impl backoff::future::Sleeper for NoSleep {
    type Sleep = Ready<()>;
    fn sleep(&self, _: Duration) -> Ready<()> {
        ready(())
    }
}

/// tower's retry: a `Policy` retrying every error up to 4 times, waiting on tower's own
/// exponential backoff with jitter (whose wait is a tokio `Sleep`).
#[derive(Clone)]
struct TowerPolicy {
    retries_left: u32,
    backoff: ExponentialBackoff<HasherRng>,
}

impl TowerPolicy {
    fn new(min: Duration) -> Self {
        let mut maker = ExponentialBackoffMaker::new(min, MAX, 1.0, HasherRng::default())
            .expect("valid backoff");
        TowerPolicy {
            retries_left: 4,
            backoff: maker.make_backoff(),
        }
    }
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

/// Times `iters` awaits of `make()` inside one `block_on`.
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

fn success_async(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let mut g = c.benchmark_group("success_async");
    g.bench_function("bare .await", |b| b.iter_custom(|n| run(&rt, n, op)));

    // Each crate's defaults.
    let policy = reflexio_policy(|b| b);
    g.bench_function("default: reflexio AsyncRetryPolicy::call", |b| {
        b.iter_custom(|n| run(&rt, n, || policy.call(op)));
    });
    g.bench_function("default: reflexio #[retry] async fn", |b| {
        b.iter_custom(|n| run(&rt, n, retried));
    });
    g.bench_function("default: backon Retryable", |b| {
        use backon::Retryable;
        let builder = backon::ExponentialBuilder::default();
        b.iter_custom(|n| run(&rt, n, || op.retry(builder).sleep(|_| ready(()))));
    });
    // tokio-retry has no default: no delay, 5 attempts.
    g.bench_function(
        "default: tokio-retry Retry::start (no delay, 5 attempts)",
        |b| {
            b.iter_custom(|n| {
                run(&rt, n, || {
                    let strategy = tokio_retry::strategy::FixedInterval::from_millis(0).take(4);
                    tokio_retry::Retry::start(strategy, op)
                })
            });
        },
    );
    let proto = backoff::ExponentialBackoff::default();
    g.bench_function("default: backoff future::Retry", |b| {
        use backoff::backoff::Backoff as _;
        b.iter_custom(|n| {
            run(&rt, n, || {
                let mut backoff = proto.clone();
                backoff.reset(); // as `backoff::future::retry` does
                backoff::future::Retry::new(
                    NoSleep,
                    backoff,
                    |_: Flaky, _: Duration| {},
                    || async { op().await.map_err(backoff::Error::transient) },
                )
            })
        });
    });

    // reflexio's settings that cost more, and the jittered exponential shape for the peers.
    let policy = reflexio_policy(|b| b.deadline(Duration::from_secs(60)));
    g.bench_function(
        "reflexio AsyncRetryPolicy::call, .deadline(60 s) from the start",
        |b| {
            b.iter_custom(|n| run(&rt, n, || policy.call(op)));
        },
    );
    g.bench_function("reflexio #[retry] async fn, deadline = 60s", |b| {
        b.iter_custom(|n| run(&rt, n, retried_with_deadline));
    });
    let policy = reflexio_policy(reflexio::PolicyBuilder::no_deadline);
    // The hedged path on a success before the delay (an operation ready at once: the hedge's
    // timer is never made).
    let hedged = reflexio_policy(|b| b.hedging(hedge_after_10ms()));
    g.bench_function("reflexio call_idempotent, hedge after 10 ms", |b| {
        b.iter_custom(|n| run(&rt, n, || hedged.call_idempotent(op)));
    });
    g.bench_function("reflexio AsyncRetryPolicy::call, no_deadline", |b| {
        b.iter_custom(|n| run(&rt, n, || policy.call(op)));
    });
    let builder = backon::ExponentialBuilder::new()
        .with_jitter()
        .with_min_delay(BASE)
        .with_max_delay(MAX)
        .with_max_times(4);
    g.bench_function("backon Retryable, jittered exponential", |b| {
        use backon::Retryable;
        b.iter_custom(|n| run(&rt, n, || op.retry(builder).sleep(|_| ready(()))));
    });

    g.bench_function("tokio-retry Retry::start, jittered exponential", |b| {
        use tokio_retry::strategy::{ExponentialBackoff, jitter};
        b.iter_custom(|n| {
            run(&rt, n, || {
                let strategy = ExponentialBackoff::from_millis(2)
                    .factor(50)
                    .max_delay(MAX)
                    .map(jitter)
                    .take(4);
                tokio_retry::Retry::start(strategy, op)
            })
        });
    });

    let svc = tower::retry::Retry::new(TowerPolicy::new(BASE), tower::service_fn(|()| op()));
    g.bench_function("tower retry::Retry service", |b| {
        b.iter_custom(|n| {
            run(&rt, n, || {
                let mut svc = svc.clone();
                async move { svc.ready().await?.call(()).await }
            })
        });
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = success_async
}
criterion_main!(benches);
