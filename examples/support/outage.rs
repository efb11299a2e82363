//! The outage simulator of `examples/outage.rs`, shared with `tests/simulation.rs`.
//!
//! Clients send logical requests (Poisson arrivals) to one service through reflexio policies;
//! the service fails every attempt during an outage window, and sheds attempts beyond its
//! capacity. Everything runs in virtual time: every request is a task on a `LocalPool`, every
//! attempt's latency and every backoff a `VirtualClock` timer, so tens of thousands of
//! concurrent calls interleave as they would in real time, deterministically, in a fraction of
//! a second.
#![allow(dead_code)] // the example and the test use different parts

use std::cell::RefCell;
use std::ops::Range;
use std::rc::Rc;
use std::time::Duration;

use futures::executor::LocalPool;
use futures::task::LocalSpawnExt;
use reflexio::strategies::decorrelated_jitter;
use reflexio::testing::VirtualClock;
use reflexio::{
    AsyncRetryPolicy, CircuitBreaker, CircuitOpen, Classification, Classify, ErrorClass,
    RetryBudget,
};

use super::rng::Rng;

/// The service's capacity and the traffic are counted in slots of this length.
const SLOT: Duration = Duration::from_millis(100);

/// What is simulated.
#[derive(Clone, Debug)]
pub(crate) struct Scenario {
    /// Clients sending requests, each a Poisson process.
    pub(crate) clients: usize,
    /// Hosts the clients are spread over: each host has one policy (so one budget, one
    /// breaker) shared by its clients, as an application shares one client object.
    pub(crate) hosts: usize,
    /// Logical requests per second of each client.
    pub(crate) rate_per_client: f64,
    /// Requests are issued in `[0, run_for)`; the simulation runs until every one is over.
    pub(crate) run_for: Duration,
    /// When the service fails every attempt (on multiples of 100 ms).
    pub(crate) outage: Range<Duration>,
    /// The time every attempt takes, failed or not.
    pub(crate) latency: Duration,
    /// Attempts per second the service serves; beyond, it sheds them (a 503 after `latency`).
    pub(crate) capacity_per_sec: u32,
    /// The retrying policies' strategy: `decorrelated_jitter().base(..).max(..)`.
    pub(crate) backoff_base: Duration,
    pub(crate) backoff_max: Duration,
    pub(crate) seed: u64,
}

impl Scenario {
    /// Logical requests per second, all clients together.
    pub(crate) fn request_rate(&self) -> f64 {
        #[allow(clippy::cast_precision_loss)] // a few thousand clients
        let clients = self.clients as f64;
        self.rate_per_client * clients
    }
}

/// What protects the service: the five policies compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Guard {
    /// One attempt per request.
    NoRetries,
    /// 5 attempts, nothing else.
    Retries,
    /// 5 attempts and a ratio budget: `RetryBudget::ratio(10.0)` (10 % of the calls of the last
    /// 10 s, plus 10 retries a second).
    RatioBudget,
    /// 5 attempts and the AWS SDKs' standard token bucket (`RetryBudget::aws_standard()`).
    TokenBucket,
    /// 5 attempts and a circuit breaker (opens at 50 % failures over at least 20 calls in 10 s,
    /// open for 5 s, 1 probe).
    CircuitBreaker,
}

impl Guard {
    pub(crate) const ALL: [Guard; 5] = [
        Guard::NoRetries,
        Guard::Retries,
        Guard::RatioBudget,
        Guard::TokenBucket,
        Guard::CircuitBreaker,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Guard::NoRetries => "no retries",
            Guard::Retries => "5 attempts, no budget",
            Guard::RatioBudget => "5 attempts + ratio budget 10 %",
            Guard::TokenBucket => "5 attempts + token bucket (AWS standard)",
            Guard::CircuitBreaker => "5 attempts + circuit breaker",
        }
    }

    /// The policy of one host, on the simulation's clock.
    fn policy(self, s: &Scenario, clock: &VirtualClock, host: u64) -> AsyncRetryPolicy<CallError> {
        let timers = clock.clone();
        let builder = AsyncRetryPolicy::builder()
            .strategy(
                decorrelated_jitter()
                    .base(s.backoff_base)
                    .max(s.backoff_max),
            )
            .max_attempts(if self == Guard::NoRetries { 1 } else { 5 })
            .seed(s.seed ^ host)
            .clock(clock.clone())
            // `move |d| timers.timer(d)` does not compile: `timer`'s future borrows the clock.
            .sleeper(move |d| {
                let clock = timers.clone();
                async move { clock.timer(d).await }
            });
        let builder = match self {
            Guard::NoRetries | Guard::Retries => builder,
            Guard::RatioBudget => builder.budget(
                RetryBudget::ratio(10.0)
                    .clock(clock.clone())
                    .build()
                    .expect("a valid budget"),
            ),
            Guard::TokenBucket => builder.budget(RetryBudget::aws_standard()),
            Guard::CircuitBreaker => builder.circuit_breaker(
                CircuitBreaker::builder()
                    .failure_rate(0.5)
                    .min_calls(20)
                    .window(Duration::from_secs(10))
                    .open_for(Duration::from_secs(5))
                    .clock(clock.clone())
                    .build()
                    .expect("a valid breaker"),
            ),
        };
        builder.build().expect("a valid policy")
    }
}

/// How an attempt fails.
#[derive(Debug)]
pub(crate) enum CallError {
    /// The outage: HTTP 503.
    Down,
    /// Over capacity, shed: HTTP 503.
    Overloaded,
    /// The circuit breaker rejected the call without calling the service.
    Rejected(CircuitOpen),
}

impl Classify for CallError {
    fn classification(&self) -> Classification {
        match self {
            CallError::Down | CallError::Overloaded => ErrorClass::ServerError.into(),
            CallError::Rejected(open) => open.classification(),
        }
    }
}

impl From<CircuitOpen> for CallError {
    fn from(open: CircuitOpen) -> Self {
        CallError::Rejected(open)
    }
}

/// The service, and its count of the attempts it saw.
struct Service {
    clock: VirtualClock,
    outage: Range<Duration>,
    latency: Duration,
    per_slot: u32,
    /// Attempts received and attempts served, per slot.
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
    /// One attempt: the outcome is decided on arrival and given after `latency`.
    async fn attempt(&self) -> Result<(), CallError> {
        let now = self.clock.now();
        let slot = slot_of(now);
        bump(&self.received, slot);
        let outcome = if self.outage.contains(&now) {
            Err(CallError::Down)
        } else if self.served.borrow().get(slot).copied().unwrap_or(0) >= self.per_slot {
            Err(CallError::Overloaded)
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
    /// Logical requests issued during the outage, and attempts the service received then.
    pub(crate) outage_requests: usize,
    pub(crate) outage_attempts: u64,
    /// Attempts the service received in all.
    pub(crate) attempts: u64,
    /// The most attempts the service received in one second (sliding by 100 ms).
    pub(crate) peak_attempts_per_sec: u32,
    /// Attempts the service received in the first second after the outage.
    pub(crate) attempts_after_outage: u64,
    /// Latency percentiles of the logical requests, successes and failures alike.
    pub(crate) p50: Duration,
    pub(crate) p99: Duration,
    /// Time from the end of the outage until every later 1 s window of issued requests has
    /// at least 99 % successes (`None`: never, before the end of the run).
    pub(crate) recovery: Option<Duration>,
}

impl Report {
    /// Attempts per logical request during the outage.
    pub(crate) fn amplification(&self) -> f64 {
        #[allow(clippy::cast_precision_loss)] // counts far below 2^52
        let a = self.outage_attempts as f64 / self.outage_requests as f64;
        a
    }

    /// The share of logical requests that succeeded.
    pub(crate) fn success_rate(&self) -> f64 {
        #[allow(clippy::cast_precision_loss)]
        let r = self.succeeded as f64 / self.requests as f64;
        r
    }
}

/// The arrival times of every request, each with its client's host, in order.
fn arrivals(s: &Scenario) -> Vec<(Duration, usize)> {
    let mean_gap = Duration::from_secs_f64(1.0 / s.rate_per_client);
    let mut all = Vec::new();
    for client in 0..s.clients {
        let mut rng = Rng::new(s.seed, client as u64);
        let mut t = rng.exponential(mean_gap);
        while t < s.run_for {
            all.push((t, client % s.hosts));
            t += rng.exponential(mean_gap);
        }
    }
    all.sort_unstable();
    all
}

/// Runs the scenario with one guard.
///
/// # Panics
///
/// If the outage does not start and end on a multiple of 100 ms.
pub(crate) fn simulate(s: &Scenario, guard: Guard) -> Report {
    assert!(
        s.outage.start.as_nanos().is_multiple_of(SLOT.as_nanos())
            && s.outage.end.as_nanos().is_multiple_of(SLOT.as_nanos()),
        "the outage starts and ends on a slot boundary"
    );
    let clock = VirtualClock::new();
    let service = Rc::new(Service {
        clock: clock.clone(),
        outage: s.outage.clone(),
        latency: s.latency,
        per_slot: s.capacity_per_sec / 10,
        received: RefCell::default(),
        served: RefCell::default(),
    });
    let policies: Vec<Rc<AsyncRetryPolicy<CallError>>> = (0..s.hosts)
        .map(|host| Rc::new(guard.policy(s, &clock, host as u64)))
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
            for (at, host) in arrivals {
                clock.timer(at.saturating_sub(clock.now())).await;
                let (clock, service, policy, requests) = (
                    clock.clone(),
                    Rc::clone(&service),
                    Rc::clone(&policies[host]),
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
    clock.run(|| pool.run_until_stalled());

    let requests = requests.borrow();
    report(s, guard, &requests, &service.received.borrow())
}

fn report(s: &Scenario, guard: Guard, requests: &[Request], received: &[u32]) -> Report {
    let outage_slots = slot_of(s.outage.start)..slot_of(s.outage.end);
    let received_in = |slots: Range<usize>| -> u64 {
        slots
            .map(|i| u64::from(received.get(i).copied().unwrap_or(0)))
            .sum()
    };
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
    let peak = (0..received.len())
        .map(|i| {
            received[i..(i + 10).min(received.len())]
                .iter()
                .sum::<u32>()
        })
        .max()
        .unwrap_or(0);
    Report {
        guard,
        requests: requests.len(),
        succeeded: requests.iter().filter(|r| r.ok).count(),
        outage_requests: requests
            .iter()
            .filter(|r| s.outage.contains(&r.issued))
            .count(),
        outage_attempts: received_in(outage_slots.clone()),
        attempts: received_in(0..received.len()),
        peak_attempts_per_sec: peak,
        attempts_after_outage: received_in(outage_slots.end..outage_slots.end + 10),
        p50: percentile(0.50),
        p99: percentile(0.99),
        recovery: recovery(s, requests),
    }
}

/// The recovery time: the smallest `k × 100 ms` such that, for every window
/// `[outage end + j × 100 ms, … + 1 s)` with `j ≥ k` that ends within the run, at least 99 %
/// of the requests issued in it succeeded.
fn recovery(s: &Scenario, requests: &[Request]) -> Option<Duration> {
    let window = Duration::from_secs(1);
    let healthy = |from: Duration| {
        let (total, ok) = requests
            .iter()
            .filter(|r| r.issued >= from && r.issued < from + window)
            .fold((0u32, 0u32), |(t, o), r| (t + 1, o + u32::from(r.ok)));
        f64::from(ok) >= 0.99 * f64::from(total)
    };
    let last_start = s.run_for.saturating_sub(window);
    let mut starts = Vec::new();
    let mut from = s.outage.end;
    while from <= last_start {
        starts.push(from);
        from += SLOT;
    }
    // The first start after the last unhealthy window.
    let last_bad = starts.iter().rposition(|&from| !healthy(from));
    match last_bad {
        None => Some(Duration::ZERO),
        Some(i) if i + 1 < starts.len() => Some(starts[i + 1].saturating_sub(s.outage.end)),
        Some(_) => None,
    }
}
