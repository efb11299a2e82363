//! The success path, async, on a tokio current-thread runtime: what wrapping a future that
//! succeeds at once costs, against the bare `.await` and the peers, all with the same policy
//! shape (5 attempts, exponential backoff with jitter, no sleeping). Each sample runs its
//! iterations inside one `block_on`, so only the awaits are timed. Run with
//! `cargo bench --bench success_async`.

use std::future::{Future, Ready, ready};
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use reflexio::strategies::full_jitter;
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

#[retry(max_attempts = 5, strategy = full_jitter().base(BASE).max(MAX), deadline = None, classifier = transient)]
async fn retried() -> Result<u64, Flaky> {
    Ok(black_box(42))
}

#[retry(max_attempts = 5, strategy = full_jitter().base(BASE).max(MAX), classifier = transient)]
async fn retried_with_deadline() -> Result<u64, Flaky> {
    Ok(black_box(42))
}

fn reflexio_policy(deadline: bool) -> AsyncRetryPolicy<Flaky> {
    let builder = AsyncRetryPolicy::builder()
        .classifier(transient)
        .strategy(full_jitter().base(BASE).max(MAX))
        .max_attempts(5);
    let builder = if deadline {
        builder
    } else {
        builder.no_deadline()
    };
    builder.build().expect("valid policy")
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

    let policy = reflexio_policy(false);
    g.bench_function("reflexio AsyncRetryPolicy::call, no deadline", |b| {
        b.iter_custom(|n| run(&rt, n, || policy.call(op)));
    });
    let policy = reflexio_policy(true);
    g.bench_function("reflexio AsyncRetryPolicy::call, 60 s deadline", |b| {
        b.iter_custom(|n| run(&rt, n, || policy.call(op)));
    });
    g.bench_function("reflexio #[retry] async fn, no deadline", |b| {
        b.iter_custom(|n| run(&rt, n, retried));
    });
    g.bench_function("reflexio #[retry] async fn, 60 s deadline", |b| {
        b.iter_custom(|n| run(&rt, n, retried_with_deadline));
    });

    let builder = backon::ExponentialBuilder::new()
        .with_jitter()
        .with_min_delay(BASE)
        .with_max_delay(MAX)
        .with_max_times(4);
    g.bench_function("backon Retryable", |b| {
        use backon::Retryable;
        b.iter_custom(|n| run(&rt, n, || op.retry(builder).sleep(|_| ready(()))));
    });

    g.bench_function("tokio-retry Retry::start", |b| {
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

    let proto = backoff::ExponentialBackoffBuilder::new()
        .with_initial_interval(BASE)
        .with_max_interval(MAX)
        .with_max_elapsed_time(Some(Duration::from_secs(60)))
        .build();
    g.bench_function("backoff future::Retry", |b| {
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
