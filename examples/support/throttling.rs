//! The throttling simulator of `examples/adaptive.rs`, shared with
//! `tests/simulation_adaptive.rs`.
//!
//! Clients send logical requests (Poisson arrivals) to one service that serves a fixed number
//! of attempts a second and answers the rest with a 429 (a `RateLimit` failure); for a while
//! the clients send more than it can take. The same machinery as the outage simulator
//! (`outage.rs`): every request is a task on a `LocalPool`, every attempt's latency, backoff and
//! rate limiter wait a `VirtualClock` timer, the policies the real ones; deterministic.
#![allow(dead_code)] // the example and the test use different parts

use std::cell::RefCell;
use std::ops::Range;
use std::rc::Rc;
use std::time::Duration;

use futures::executor::LocalPool;
use futures::task::LocalSpawnExt;
use reflexio::strategies::decorrelated_jitter;
use reflexio::testing::VirtualClock;
use reflexio::{AdaptiveRateLimiter, AsyncRetryPolicy, RateLimitError, RetryBudget};

use super::rng::Rng;

/// The service's capacity is counted in slots of this length.
const SLOT: Duration = Duration::from_millis(100);

/// What is simulated.
#[derive(Clone, Debug)]
pub(crate) struct Scenario {
    /// Clients sending requests, each a Poisson process, each with its own policy (so its own
    /// budget and rate limiter), as each process of a fleet has its own SDK client.
    pub(crate) clients: usize,
    /// Logical requests per second of each client, outside the surge and during it.
    pub(crate) rate_per_client: f64,
    pub(crate) surge_rate_per_client: f64,
    /// When the clients send at the surge rate.
    pub(crate) surge: Range<Duration>,
    /// Requests are issued in `[0, run_for)`; the simulation runs until every one is over.
    pub(crate) run_for: Duration,
    /// The time every attempt takes, served or throttled.
    pub(crate) latency: Duration,
    /// Attempts per second the service serves; beyond, it answers 429 (after `latency`).
    pub(crate) capacity_per_sec: u32,
    /// The policies' attempts and strategy: `decorrelated_jitter().base(..).max(..)`.
    pub(crate) max_attempts: u32,
    pub(crate) backoff_base: Duration,
    pub(crate) backoff_max: Duration,
    pub(crate) seed: u64,
}

/// What protects the service: the policies compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Guard {
    /// Retries, nothing else.
    Retries,
    /// Retries and a ratio budget per client: `RetryBudget::ratio(10.0)` with a floor of
    /// 1 retry a second (the default floor, 10 a second, is more than a client sends).
    RatioBudget,
    /// Retries and the AWS SDKs' standard token bucket (`RetryBudget::aws_standard()`).
    TokenBucket,
    /// The AWS SDKs' adaptive mode: the standard token bucket and an `AdaptiveRateLimiter`.
    Adaptive,
    /// The rate limiter alone, without a budget.
    LimiterOnly,
}

impl Guard {
    pub(crate) const ALL: [Guard; 5] = [
        Guard::Retries,
        Guard::RatioBudget,
        Guard::TokenBucket,
        Guard::Adaptive,
        Guard::LimiterOnly,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Guard::Retries => "standard retries, no budget",
            Guard::RatioBudget => "+ ratio budget 10 %",
            Guard::TokenBucket => "+ token bucket (AWS standard)",
            Guard::Adaptive => "adaptive (AWS: token bucket + rate limiter)",
            Guard::LimiterOnly => "rate limiter only",
        }
    }

    /// The policy of one client, on the simulation's clock.
    fn policy(
        self,
        s: &Scenario,
        clock: &VirtualClock,
        client: u64,
    ) -> AsyncRetryPolicy<RateLimitError> {
        let timers = clock.clone();
        let builder = AsyncRetryPolicy::builder()
            .strategy(
                decorrelated_jitter()
                    .base(s.backoff_base)
                    .max(s.backoff_max),
            )
            .max_attempts(s.max_attempts)
            .seed(s.seed ^ client)
            .clock(clock.clone())
            // `move |d| timers.timer(d)` does not compile: `timer`'s future borrows the clock.
            .sleeper(move |d| {
                let clock = timers.clone();
                async move { clock.timer(d).await }
            });
        let limiter = || {
            AdaptiveRateLimiter::builder()
                .clock(clock.clone())
                .build()
                .expect("a valid limiter")
        };
        let builder = match self {
            Guard::Retries => builder,
            Guard::RatioBudget => builder.budget(
                RetryBudget::ratio(10.0)
                    .min_retries_per_sec(1)
                    .clock(clock.clone())
                    .build()
                    .expect("a valid budget"),
            ),
            Guard::TokenBucket => builder.budget(RetryBudget::aws_standard()),
            Guard::Adaptive => builder
                .budget(RetryBudget::aws_standard())
                .rate_limiter(limiter()),
            Guard::LimiterOnly => builder.rate_limiter(limiter()),
        };
        builder.build().expect("a valid policy")
    }
}

/// The service, and its counts per slot.
struct Service {
    clock: VirtualClock,
    latency: Duration,
    per_slot: u32,
    /// Attempts received, and attempts served, per slot.
    received: RefCell<Vec<u32>>,
    served: RefCell<Vec<u32>>,
}

fn slot_of(t: Duration) -> usize {
    usize::try_from(t.as_nanos() / SLOT.as_nanos()).expect("a short simulation")
}

fn bump(counts: &RefCell<Vec<u32>>, slot: usize) -> u32 {
    let mut counts = counts.borrow_mut();
    if counts.len() <= slot {
        counts.resize(slot + 1, 0);
    }
    counts[slot] += 1;
    counts[slot]
}

impl Service {
    /// One attempt: served or throttled on arrival, answered after `latency`.
    async fn attempt(&self) -> Result<(), RateLimitError> {
        let slot = slot_of(self.clock.now());
        bump(&self.received, slot);
        let outcome = if self.served.borrow().get(slot).copied().unwrap_or(0) >= self.per_slot {
            Err(RateLimitError::new("429 Too Many Requests"))
        } else {
            bump(&self.served, slot);
            Ok(())
        };
        self.clock.timer(self.latency).await;
        outcome
    }
}

/// One logical request, as its client saw it.
#[derive(Clone, Copy, Debug)]
struct Request {
    issued: Duration,
    took: Duration,
    ok: bool,
}

/// What one simulation measured.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Report {
    pub(crate) guard: Guard,
    /// Logical requests issued, and how many succeeded.
    pub(crate) requests: usize,
    pub(crate) succeeded: usize,
    /// Attempts the service received, and how many it answered with a 429.
    pub(crate) attempts: u64,
    pub(crate) throttled: u64,
    /// When the last request ended, or the end of the run if later.
    pub(crate) ended: Duration,
    /// Attempts the service received, and served, in each second.
    pub(crate) received_per_sec: Vec<u32>,
    pub(crate) served_per_sec: Vec<u32>,
    /// Latency percentiles of the logical requests, successes and failures alike.
    pub(crate) p50: Duration,
    pub(crate) p99: Duration,
}

impl Report {
    /// Successful logical requests per second, from the start until the last request ended.
    pub(crate) fn goodput(&self) -> f64 {
        #[allow(clippy::cast_precision_loss)] // counts far below 2^52
        let ok = self.succeeded as f64;
        ok / self.ended.as_secs_f64()
    }

    /// The share of logical requests that succeeded.
    pub(crate) fn success_rate(&self) -> f64 {
        #[allow(clippy::cast_precision_loss)]
        let r = self.succeeded as f64 / self.requests as f64;
        r
    }
}

/// The arrival times of every request, each with its client, in order: a Poisson process per
/// client, at the surge rate during the surge (a thinned process: exact, and the same draws
/// outside the surge whatever its rate).
fn arrivals(s: &Scenario) -> Vec<(Duration, usize)> {
    let top = s.rate_per_client.max(s.surge_rate_per_client);
    let mean_gap = Duration::from_secs_f64(1.0 / top);
    let mut all = Vec::new();
    for client in 0..s.clients {
        let mut rng = Rng::new(s.seed, client as u64);
        let mut t = rng.exponential(mean_gap);
        while t < s.run_for {
            let rate = if s.surge.contains(&t) {
                s.surge_rate_per_client
            } else {
                s.rate_per_client
            };
            if rng.uniform() < rate / top {
                all.push((t, client));
            }
            t += rng.exponential(mean_gap);
        }
    }
    all.sort_unstable();
    all
}

/// Runs the scenario with one guard.
pub(crate) fn simulate(s: &Scenario, guard: Guard) -> Report {
    let clock = VirtualClock::new();
    let service = Rc::new(Service {
        clock: clock.clone(),
        latency: s.latency,
        per_slot: s.capacity_per_sec / 10,
        received: RefCell::default(),
        served: RefCell::default(),
    });
    let policies: Vec<Rc<AsyncRetryPolicy<RateLimitError>>> = (0..s.clients)
        .map(|client| Rc::new(guard.policy(s, &clock, client as u64)))
        .collect();
    let requests: Rc<RefCell<Vec<Request>>> = Rc::default();

    let mut pool = LocalPool::new();
    let spawner = pool.spawner();
    let load = {
        let clock = clock.clone();
        let service = Rc::clone(&service);
        let spawner = spawner.clone();
        let requests = Rc::clone(&requests);
        let arrivals = arrivals(s);
        async move {
            for (at, client) in arrivals {
                clock.timer(at.saturating_sub(clock.now())).await;
                let (clock, service, policy, requests) = (
                    clock.clone(),
                    Rc::clone(&service),
                    Rc::clone(&policies[client]),
                    Rc::clone(&requests),
                );
                let request = async move {
                    let issued = clock.now();
                    let out = policy.call(|| service.attempt()).await;
                    requests.borrow_mut().push(Request {
                        issued,
                        took: clock.now().saturating_sub(issued),
                        ok: out.is_ok(),
                    });
                };
                spawner.spawn_local(request).expect("the pool is running");
            }
        }
    };
    spawner.spawn_local(load).expect("the pool is running");
    let ended = clock.run(|| pool.run_until_stalled());

    let per_sec = |counts: &RefCell<Vec<u32>>| -> Vec<u32> {
        counts.borrow().chunks(10).map(|c| c.iter().sum()).collect()
    };
    let requests = requests.borrow();
    let sum = |counts: &RefCell<Vec<u32>>| counts.borrow().iter().map(|&n| u64::from(n)).sum();
    let (attempts, served): (u64, u64) = (sum(&service.received), sum(&service.served));
    let mut took: Vec<Duration> = requests.iter().map(|r| r.took).collect();
    took.sort_unstable();
    let percentile = |p: f64| {
        #[allow(
            clippy::cast_precision_loss,
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss
        )]
        let rank = ((p * took.len() as f64).ceil() as usize).clamp(1, took.len());
        took[rank - 1]
    };
    Report {
        guard,
        requests: requests.len(),
        succeeded: requests.iter().filter(|r| r.ok).count(),
        attempts,
        throttled: attempts - served,
        ended: ended.max(s.run_for),
        p50: percentile(0.50),
        p99: percentile(0.99),
        received_per_sec: per_sec(&service.received),
        served_per_sec: per_sec(&service.served),
    }
}
