//! The outage simulator of `examples/outage.rs` and `examples/metastable.rs`, shared with
//! `tests/simulation.rs`.
//!
//! Clients send logical requests (Poisson arrivals) to one service through reflexio policies.
//! Everything runs in virtual time: every request is a task on a `LocalPool`, every attempt's
//! latency and every backoff a `VirtualClock` timer, so tens of thousands of concurrent calls
//! interleave as they would in real time, deterministically, in a fraction of a second.
//!
//! This file holds what every scenario shares (the guards and their policies, the clients, the
//! error type, the [`Service`] trait) and the outage scenario's service: one that fails every
//! attempt during an outage window and sheds attempts beyond its capacity, with a latency that
//! does not depend on load. The queueing service of the metastable scenario is in
//! `metastable.rs`.
#![allow(dead_code)] // the examples and the tests use different parts

use std::cell::{Cell, RefCell};
use std::ops::Range;
use std::rc::Rc;
use std::time::Duration;

use futures::executor::LocalPool;
use futures::task::LocalSpawnExt;
use reflexio::strategies::decorrelated_jitter;
use reflexio::testing::VirtualClock;
use reflexio::{
    AdaptiveRateLimiter, AsyncRetryPolicy, AttemptTimedOut, CircuitBreaker, CircuitOpen,
    Classification, Classify, ErrorClass, Hedging, RetryBudget,
};

use super::rng::Rng;

/// The service's load and capacity are counted in slots of this length.
pub(crate) const SLOT: Duration = Duration::from_millis(100);

// ---------- what every scenario shares ----------

/// What protects the service: the policies compared, one row each.
///
/// To add a protection (an adaptive rate limiter, hedging): add a variant here, its row name
/// in [`Guard::name`], its policy in [`Guard::policy`], and list it in the `ALL` of the
/// scenarios it belongs to ([`Guard::ALL`] for both tables, or a list of its own).
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
    /// 5 attempts and gRPC's retry throttling (gRFC A6) with its example values:
    /// `RetryBudget::grpc(10.0, 0.1)` (every failed attempt takes a token, a success returns
    /// 0.1, no retry at or below 5 tokens).
    GrpcThrottling,
    /// 5 attempts and a circuit breaker (opens at 50 % failures over at least 20 calls in 10 s,
    /// open for 5 s, 1 probe).
    CircuitBreaker,
    /// The AWS SDKs' adaptive mode: 5 attempts, `RetryBudget::aws_standard()` and an
    /// `AdaptiveRateLimiter` (one per host, as the budget is) that every attempt takes a token
    /// from. It slows down only on failures classified `RateLimit` (a 429).
    Adaptive,
    /// 5 attempts and hedging at the 95th percentile of the latencies of successful attempts
    /// (`Hedging::at_percentile(95.0)`: after 20 samples, at most 2 attempts in flight), the
    /// calls made with `call_idempotent`. A hedge that loses is cancelled by its client; the
    /// service may still do its work.
    Hedging,
    /// [`Guard::Hedging`] and `RetryBudget::aws_standard()`: every hedge takes a token from
    /// the bucket as a `Transient` retry does, so a burst of hedges empties it.
    HedgingBudget,
    // New protections go here (see the type's docs).
}

impl Guard {
    /// The rows of the outage and metastable tables, in order.
    pub(crate) const ALL: [Guard; 6] = [
        Guard::NoRetries,
        Guard::Retries,
        Guard::RatioBudget,
        Guard::TokenBucket,
        Guard::GrpcThrottling,
        Guard::CircuitBreaker,
    ];

    /// The rows of the metastable tables: [`Guard::ALL`], then adaptive mode and hedging, bare
    /// and with a budget.
    pub(crate) const METASTABLE: [Guard; 9] = [
        Guard::NoRetries,
        Guard::Retries,
        Guard::RatioBudget,
        Guard::TokenBucket,
        Guard::GrpcThrottling,
        Guard::CircuitBreaker,
        Guard::Adaptive,
        Guard::Hedging,
        Guard::HedgingBudget,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Guard::NoRetries => "no retries",
            Guard::Retries => "5 attempts, no budget",
            Guard::RatioBudget => "5 attempts + ratio budget 10 %",
            Guard::TokenBucket => "5 attempts + token bucket (AWS standard)",
            Guard::GrpcThrottling => "5 attempts + gRPC retry throttling",
            Guard::CircuitBreaker => "5 attempts + circuit breaker",
            Guard::Adaptive => "5 attempts + adaptive mode (token bucket + rate limiter)",
            Guard::Hedging => "5 attempts + hedging at p95",
            Guard::HedgingBudget => "5 attempts + hedging at p95 + token bucket (AWS standard)",
        }
    }

    /// The policy of one host, on the simulation's clock.
    pub(crate) fn policy(
        self,
        p: &Clients,
        clock: &VirtualClock,
        host: u64,
    ) -> AsyncRetryPolicy<CallError> {
        let timers = clock.clone();
        let builder = AsyncRetryPolicy::builder()
            .strategy(
                decorrelated_jitter()
                    .base(p.backoff_base)
                    .max(p.backoff_max),
            )
            .max_attempts(if self == Guard::NoRetries { 1 } else { 5 })
            .seed(p.seed ^ host)
            .clock(clock.clone())
            // `move |d| timers.timer(d)` does not compile: `timer`'s future borrows the clock.
            .sleeper(move |d| {
                let clock = timers.clone();
                async move { clock.timer(d).await }
            });
        let builder = match p.attempt_timeout {
            Some(timeout) => builder.attempt_timeout(timeout),
            None => builder,
        };
        let builder = match self {
            Guard::NoRetries | Guard::Retries => builder,
            Guard::RatioBudget => builder.budget(
                RetryBudget::ratio(10.0)
                    .clock(clock.clone())
                    .build()
                    .expect("a valid budget"),
            ),
            Guard::TokenBucket => builder.budget(RetryBudget::aws_standard()),
            Guard::GrpcThrottling => {
                builder.budget(RetryBudget::grpc(10.0, 0.1).expect("a valid budget"))
            }
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
            Guard::Adaptive => builder.budget(RetryBudget::aws_standard()).rate_limiter(
                AdaptiveRateLimiter::builder()
                    .clock(clock.clone())
                    .build()
                    .expect("a valid limiter"),
            ),
            Guard::Hedging => builder.hedging(
                Hedging::at_percentile(95.0)
                    .build()
                    .expect("a valid hedging setting"),
            ),
            Guard::HedgingBudget => builder.budget(RetryBudget::aws_standard()).hedging(
                Hedging::at_percentile(95.0)
                    .build()
                    .expect("a valid hedging setting"),
            ),
        };
        builder.build().expect("a valid policy")
    }
}

/// The clients' side of a scenario: the traffic and the retrying policies' settings.
#[derive(Clone, Debug)]
pub(crate) struct Clients {
    /// Clients sending requests, each a Poisson process.
    pub(crate) count: usize,
    /// Hosts the clients are spread over: each host has one policy (so one budget, one
    /// breaker) shared by its clients, as an application shares one client object.
    pub(crate) hosts: usize,
    /// Logical requests per second of each client.
    pub(crate) rate_per_client: f64,
    /// Requests are issued in `[0, run_for)`; the simulation runs until every one is over.
    pub(crate) run_for: Duration,
    /// The retrying policies' strategy: `decorrelated_jitter().base(..).max(..)`.
    pub(crate) backoff_base: Duration,
    pub(crate) backoff_max: Duration,
    /// `.attempt_timeout(..)` of every policy, if any.
    pub(crate) attempt_timeout: Option<Duration>,
    pub(crate) seed: u64,
}

impl Clients {
    /// Logical requests per second, all clients together.
    pub(crate) fn request_rate(&self) -> f64 {
        #[allow(clippy::cast_precision_loss)] // a few thousand clients
        let clients = self.count as f64;
        self.rate_per_client * clients
    }

    /// The arrival times of every request, each with its client's host, in order.
    fn arrivals(&self) -> Vec<(Duration, usize)> {
        let mean_gap = Duration::from_secs_f64(1.0 / self.rate_per_client);
        let mut all = Vec::new();
        for client in 0..self.count {
            let mut rng = Rng::new(self.seed, client as u64);
            let mut t = rng.exponential(mean_gap);
            while t < self.run_for {
                all.push((t, client % self.hosts));
                t += rng.exponential(mean_gap);
            }
        }
        all.sort_unstable();
        all
    }
}

/// How an attempt fails.
#[derive(Debug)]
pub(crate) enum CallError {
    /// The service failed it (an outage, an error burst): HTTP 503.
    Down,
    /// Over capacity, shed (or dropped from the queue after waiting too long): HTTP 503.
    Overloaded,
    /// Over capacity, refused at once with HTTP 429 Too Many Requests (no `Retry-After`):
    /// classified `RateLimit`, the one signal an `AdaptiveRateLimiter` slows down on.
    Throttled,
    /// The client stopped waiting after the policy's attempt timeout.
    TimedOut(AttemptTimedOut),
    /// The circuit breaker rejected the call without calling the service.
    Rejected(CircuitOpen),
}

impl Classify for CallError {
    fn classification(&self) -> Classification {
        match self {
            CallError::Down | CallError::Overloaded => ErrorClass::ServerError.into(),
            CallError::Throttled => ErrorClass::RateLimit.into(),
            CallError::TimedOut(timeout) => timeout.classification(),
            CallError::Rejected(open) => open.classification(),
        }
    }
}

impl From<CircuitOpen> for CallError {
    fn from(open: CircuitOpen) -> Self {
        CallError::Rejected(open)
    }
}

impl From<AttemptTimedOut> for CallError {
    fn from(timeout: AttemptTimedOut) -> Self {
        CallError::TimedOut(timeout)
    }
}

/// A simulated service: what one attempt does, in virtual time.
pub(crate) trait Service {
    /// One attempt. The policy drops the future when the attempt times out: whatever the
    /// service does for it then is up to the service.
    fn attempt(&self) -> impl Future<Output = Result<(), CallError>>;
}

/// One logical request, as its client saw it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Request {
    pub(crate) issued: Duration,
    pub(crate) took: Duration,
    pub(crate) ok: bool,
    /// Attempts sent to the service (a call the breaker rejected sends none).
    pub(crate) attempts: u32,
}

impl Request {
    pub(crate) fn done(&self) -> Duration {
        self.issued + self.took
    }
}

/// Runs the clients of `c` against `service`, each host through `guard`'s policy, until every
/// request is over; returns them in the order they ended.
pub(crate) fn run_clients<S: Service + 'static>(
    c: &Clients,
    guard: Guard,
    clock: &VirtualClock,
    service: &Rc<S>,
) -> Vec<Request> {
    let policies: Vec<Rc<AsyncRetryPolicy<CallError>>> = (0..c.hosts)
        .map(|host| Rc::new(guard.policy(c, clock, host as u64)))
        .collect();
    let requests: Rc<RefCell<Vec<Request>>> = Rc::default();

    let mut pool = LocalPool::new();
    let spawner = pool.spawner();
    let load = {
        let clock = clock.clone();
        let service = Rc::clone(service);
        let spawner = spawner.clone();
        let requests = Rc::clone(&requests);
        let arrivals = c.arrivals();
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
                    let attempts = Cell::new(0);
                    let attempt = || {
                        attempts.set(attempts.get() + 1);
                        service.attempt()
                    };
                    let out = if matches!(guard, Guard::Hedging | Guard::HedgingBudget) {
                        policy.call_idempotent(attempt).await
                    } else {
                        policy.call(attempt).await
                    };
                    requests.borrow_mut().push(Request {
                        issued,
                        took: clock.now().saturating_sub(issued),
                        ok: out.is_ok(),
                        attempts: attempts.get(),
                    });
                };
                spawner.spawn_local(request).expect("the pool is running");
            }
        }
    };
    spawner.spawn_local(load).expect("the pool is running");
    clock.run(|| pool.run_until_stalled());
    Rc::try_unwrap(requests).map_or_else(|shared| shared.borrow().clone(), RefCell::into_inner)
}

pub(crate) fn slot_of(t: Duration) -> usize {
    usize::try_from(t.as_nanos() / SLOT.as_nanos()).expect("a short simulation")
}

pub(crate) fn bump(counts: &RefCell<Vec<u32>>, slot: usize) -> u32 {
    let mut counts = counts.borrow_mut();
    if counts.len() <= slot {
        counts.resize(slot + 1, 0);
    }
    counts[slot] += 1;
    counts[slot]
}

/// The `p` quantile (nearest rank) of sorted durations.
pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// The recovery time after `from`: the smallest `k × 100 ms` such that, for every window
/// `[from + j × 100 ms, … + 1 s)` with `j ≥ k` that ends within `run_for`, at least `share`
/// of the requests issued in it succeeded (`None`: the last such window still fails).
pub(crate) fn recovery(
    requests: &[Request],
    from: Duration,
    run_for: Duration,
    share: f64,
) -> Option<Duration> {
    recovery_by(requests, from, run_for, share, |r| r.ok)
}

/// [`recovery`], counting as good the requests `good` accepts.
pub(crate) fn recovery_by(
    requests: &[Request],
    from: Duration,
    run_for: Duration,
    share: f64,
    good: impl Fn(&Request) -> bool,
) -> Option<Duration> {
    let window = Duration::from_secs(1);
    let healthy = |start: Duration| {
        let (total, ok) = requests
            .iter()
            .filter(|r| r.issued >= start && r.issued < start + window)
            .fold((0u32, 0u32), |(t, o), r| (t + 1, o + u32::from(good(r))));
        f64::from(ok) >= share * f64::from(total)
    };
    let last_start = run_for.saturating_sub(window);
    let mut starts = Vec::new();
    let mut start = from;
    while start <= last_start {
        starts.push(start);
        start += SLOT;
    }
    // The first start after the last unhealthy window.
    let last_bad = starts.iter().rposition(|&start| !healthy(start));
    match last_bad {
        None => Some(Duration::ZERO),
        Some(i) if i + 1 < starts.len() => Some(starts[i + 1].saturating_sub(from)),
        Some(_) => None,
    }
}

// ---------- the outage scenario ----------

/// What is simulated.
#[derive(Clone, Debug)]
pub(crate) struct Scenario {
    pub(crate) clients: Clients,
    /// When the service fails every attempt (on multiples of 100 ms).
    pub(crate) outage: Range<Duration>,
    /// The time every attempt takes, failed or not.
    pub(crate) latency: Duration,
    /// Attempts per second the service serves; beyond, it sheds them (a 503 after `latency`).
    pub(crate) capacity_per_sec: u32,
}

/// The outage's service, and its count of the attempts it saw.
struct Shedding {
    clock: VirtualClock,
    outage: Range<Duration>,
    latency: Duration,
    per_slot: u32,
    /// Attempts received and attempts served, per slot.
    received: RefCell<Vec<u32>>,
    served: RefCell<Vec<u32>>,
}

impl Service for Shedding {
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
    let service = Rc::new(Shedding {
        clock: clock.clone(),
        outage: s.outage.clone(),
        latency: s.latency,
        per_slot: s.capacity_per_sec / 10,
        received: RefCell::default(),
        served: RefCell::default(),
    });
    let requests = run_clients(&s.clients, guard, &clock, &service);
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
        p50: percentile(&took, 0.50),
        p99: percentile(&took, 0.99),
        recovery: recovery(requests, s.outage.end, s.clients.run_for, 0.99),
    }
}
