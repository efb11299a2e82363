//! `RetryBudget` under contention: 1 and 2 threads recording the outcomes of calls that each fail
//! once, are retried and succeed (`record_call`, `try_retry`, `record_success`), against a token
//! bucket behind a `Mutex` with the same rules (the AWS SDK standard retry quota), and the ratio
//! model against tower's `TpsBudget` (the same 20 % + 10/s over 10 s). Each thread
//! records the same number of calls; the time is per call recorded, per thread. Run with
//! `cargo bench --bench budget`.

use std::hint::black_box;
use std::sync::{Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, SamplingMode, criterion_group, criterion_main};
use reflexio::{ErrorClass, RetryBudget};

/// The budget interface the workload needs.
trait Budget: Sync {
    fn record_call(&self);
    fn try_retry(&self, class: ErrorClass) -> bool;
    fn record_success(&self, retried_after: Option<ErrorClass>);
}

impl Budget for RetryBudget {
    fn record_call(&self) {
        RetryBudget::record_call(self);
    }
    fn try_retry(&self, class: ErrorClass) -> bool {
        RetryBudget::try_retry(self, class)
    }
    fn record_success(&self, retried_after: Option<ErrorClass>) {
        RetryBudget::record_success(self, retried_after);
    }
}

/// The AWS standard retry quota behind a `Mutex`, in thousandths of a token like reflexio's:
/// 500 tokens; a retry costs 14 (5 after a `RateLimit`); a success returns the last retry's
/// cost, or 1 at the first attempt.
struct MutexBucket {
    balance: Mutex<u64>,
}

impl MutexBucket {
    const CAPACITY: u64 = 500_000;

    fn new() -> Self {
        MutexBucket {
            balance: Mutex::new(Self::CAPACITY),
        }
    }

    fn cost(class: ErrorClass) -> u64 {
        if class == ErrorClass::RateLimit {
            5_000
        } else {
            14_000
        }
    }
}

impl Budget for MutexBucket {
    fn record_call(&self) {}

    fn try_retry(&self, class: ErrorClass) -> bool {
        let mut balance = self.balance.lock().expect("not poisoned");
        let cost = Self::cost(class);
        if *balance >= cost {
            *balance -= cost;
            true
        } else {
            false
        }
    }

    fn record_success(&self, retried_after: Option<ErrorClass>) {
        let reward = retried_after.map_or(1_000, Self::cost);
        let mut balance = self.balance.lock().expect("not poisoned");
        *balance = (*balance + reward).min(Self::CAPACITY);
    }
}

/// tower's ratio budget (`TpsBudget`: a deposit per call, a withdrawal per retry, over a
/// sliding window), the peer of `RetryBudget::ratio`.
struct TowerTps(tower::retry::budget::TpsBudget);

impl Budget for TowerTps {
    fn record_call(&self) {
        tower::retry::budget::Budget::deposit(&self.0);
    }
    fn try_retry(&self, _: ErrorClass) -> bool {
        tower::retry::budget::Budget::withdraw(&self.0)
    }
    fn record_success(&self, _: Option<ErrorClass>) {}
}

/// A circuit breaker behind the same interface: each call is admitted and succeeds.
struct Breaker(reflexio::CircuitBreaker);

impl Budget for Breaker {
    fn record_call(&self) {
        self.0.record_outcome(None);
    }
    fn try_retry(&self, _: ErrorClass) -> bool {
        false
    }
    fn record_success(&self, _: Option<ErrorClass>) {}
}

/// One call that fails once, is retried (if the budget allows) and succeeds.
fn one_call(budget: &dyn Budget) {
    budget.record_call();
    if black_box(budget.try_retry(ErrorClass::Transient)) {
        budget.record_success(Some(ErrorClass::Transient));
    }
}

/// `threads` threads record `iters` calls each, started together; the slowest thread's time.
fn contend(budget: &dyn Budget, threads: usize, iters: u64) -> Duration {
    if threads == 1 {
        let start = Instant::now();
        for _ in 0..iters {
            one_call(budget);
        }
        return start.elapsed();
    }
    let barrier = Barrier::new(threads);
    thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    let start = Instant::now();
                    for _ in 0..iters {
                        one_call(budget);
                    }
                    start.elapsed()
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("worker"))
            .max()
            .unwrap_or_default()
    })
}

fn budgets(c: &mut Criterion) {
    let mut g = c.benchmark_group("budget_one_call");
    // Every sample runs the same number of iterations, so the threads' start-up is amortised
    // alike in all of them.
    g.sampling_mode(SamplingMode::Flat);
    for threads in [1, 2] {
        let aws = RetryBudget::aws_standard();
        g.bench_with_input(
            BenchmarkId::new("reflexio token_bucket (aws_standard)", threads),
            &threads,
            |b, &t| b.iter_custom(|n| contend(&aws, t, n)),
        );
        let ratio = RetryBudget::ratio(20.0).build().expect("valid budget");
        g.bench_with_input(
            BenchmarkId::new("reflexio ratio (20 %, 10 s window)", threads),
            &threads,
            |b, &t| b.iter_custom(|n| contend(&ratio, t, n)),
        );
        // The same shape: 20 % of the calls of the last 10 s, plus 10 retries a second.
        let tower = TowerTps(tower::retry::budget::TpsBudget::new(
            Duration::from_secs(10),
            10,
            0.2,
        ));
        g.bench_with_input(
            BenchmarkId::new("tower TpsBudget (20 %, 10 s window)", threads),
            &threads,
            |b, &t| b.iter_custom(|n| contend(&tower, t, n)),
        );
        // The breaker on a closed circuit: one call admitted and its success recorded, the
        // work a guarded call adds to every call.
        let breaker = Breaker(
            reflexio::CircuitBreaker::builder()
                .build()
                .expect("valid breaker"),
        );
        g.bench_with_input(
            BenchmarkId::new("reflexio CircuitBreaker (closed, a success)", threads),
            &threads,
            |b, &t| b.iter_custom(|n| contend(&breaker, t, n)),
        );
        let mutex = MutexBucket::new();
        g.bench_with_input(
            BenchmarkId::new("Mutex token bucket", threads),
            &threads,
            |b, &t| b.iter_custom(|n| contend(&mutex, t, n)),
        );
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = budgets
}
criterion_main!(benches);
