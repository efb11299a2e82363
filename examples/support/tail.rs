//! The tail-latency simulator of `examples/hedging.rs`, shared with `tests/simulation_hedging.rs`.
//!
//! Requests arrive as a Poisson process at one service whose attempts take a lognormal time,
//! except a small share that are many times slower (a GC pause, a busy disk, a queue behind a
//! slow request: "The Tail at Scale"'s causes). Each request is one call of a real
//! `AsyncRetryPolicy`, through `call_idempotent`, with or without hedging. Everything runs in
//! virtual time, as the outage simulator does: every request a task on a `LocalPool`, every
//! latency and every hedging delay a `VirtualClock` timer. Deterministic, and fast.
#![allow(dead_code)] // the example and the test use different parts

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use futures::executor::LocalPool;
use futures::task::LocalSpawnExt;
use reflexio::strategies::constant;
use reflexio::testing::VirtualClock;
use reflexio::{AsyncRetryPolicy, Hedging, TransientError};

use super::rng::Rng;

/// What is simulated.
#[derive(Clone, Debug)]
pub(crate) struct Scenario {
    /// Requests per second (Poisson arrivals), for `run_for`.
    pub(crate) requests_per_sec: f64,
    pub(crate) run_for: Duration,
    /// The median of the lognormal body of an attempt's latency, and its log-scale spread.
    pub(crate) median: Duration,
    pub(crate) sigma: f64,
    /// The share of attempts that are `slow_factor` times slower (drawn independently for
    /// each attempt, a hedge included).
    pub(crate) slow_share: f64,
    pub(crate) slow_factor: f64,
    pub(crate) seed: u64,
}

/// How the requests are hedged.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Hedge {
    /// One attempt per request.
    None,
    /// `Hedging::after(delay)`.
    Fixed(Duration),
    /// `Hedging::at_percentile(p)` over a 10 s window, at least 100 samples.
    Percentile(f64),
}

impl Hedge {
    pub(crate) fn name(self) -> String {
        match self {
            Hedge::None => "no hedging".to_owned(),
            Hedge::Fixed(d) => format!("hedge after {} ms (fixed)", d.as_millis()),
            Hedge::Percentile(p) => format!("hedge after the learned p{p}"),
        }
    }

    fn policy(self, clock: &VirtualClock) -> AsyncRetryPolicy<TransientError> {
        let timers = clock.clone();
        let builder = AsyncRetryPolicy::builder()
            .strategy(constant(Duration::from_millis(10)))
            .max_attempts(2)
            .clock(clock.clone())
            .sleeper(move |d| {
                let clock = timers.clone();
                async move { clock.timer(d).await }
            });
        let hedging = match self {
            Hedge::None => return builder.build().expect("a valid policy"),
            Hedge::Fixed(d) => Hedging::after(d),
            Hedge::Percentile(p) => Hedging::at_percentile(p)
                .window(Duration::from_secs(10))
                .min_samples(100),
        };
        builder
            .hedging(hedging.build().expect("valid hedging"))
            .build()
            .expect("a valid policy")
    }
}

/// What one run measured.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Report {
    pub(crate) hedge: Hedge,
    pub(crate) requests: usize,
    /// Attempts the service received (hedges included).
    pub(crate) attempts: u64,
    pub(crate) p50: Duration,
    pub(crate) p99: Duration,
    pub(crate) p999: Duration,
}

impl Report {
    /// Attempts beyond one per request, as a share of the requests.
    pub(crate) fn extra_load(&self) -> f64 {
        #[allow(clippy::cast_precision_loss)] // counts far below 2^52
        let extra = self.attempts as f64 / self.requests as f64 - 1.0;
        extra
    }
}

/// The service: draws each attempt's latency, counts the attempts.
struct Service {
    clock: VirtualClock,
    rng: RefCell<Rng>,
    median: f64,
    sigma: f64,
    slow_share: f64,
    slow_factor: f64,
    attempts: RefCell<u64>,
}

impl Service {
    fn latency(&self) -> Duration {
        let mut rng = self.rng.borrow_mut();
        let mut secs = self.median * (self.sigma * rng.standard_normal()).exp();
        if rng.uniform() < self.slow_share {
            secs *= self.slow_factor;
        }
        Duration::from_secs_f64(secs)
    }

    fn attempt(&self) -> impl Future<Output = Result<(), TransientError>> + use<> {
        *self.attempts.borrow_mut() += 1;
        let timer = self.clock.timer(self.latency());
        async move {
            timer.await;
            Ok(())
        }
    }
}

/// Runs the scenario with one way of hedging.
pub(crate) fn simulate(s: &Scenario, hedge: Hedge) -> Report {
    let clock = VirtualClock::new();
    let service = Rc::new(Service {
        clock: clock.clone(),
        rng: RefCell::new(Rng::new(s.seed, 1)),
        median: s.median.as_secs_f64(),
        sigma: s.sigma,
        slow_share: s.slow_share,
        slow_factor: s.slow_factor,
        attempts: RefCell::new(0),
    });
    let policy = Rc::new(hedge.policy(&clock));
    let took: Rc<RefCell<Vec<Duration>>> = Rc::default();

    let mut pool = LocalPool::new();
    let spawner = pool.spawner();
    let load = {
        let (clock, service, spawner, took) = (
            clock.clone(),
            Rc::clone(&service),
            spawner.clone(),
            Rc::clone(&took),
        );
        let mut arrivals = Rng::new(s.seed, 0);
        let gap = Duration::from_secs_f64(1.0 / s.requests_per_sec);
        let run_for = s.run_for;
        async move {
            let mut at = arrivals.exponential(gap);
            while at < run_for {
                clock.timer(at.saturating_sub(clock.now())).await;
                let (clock, service, policy, took) = (
                    clock.clone(),
                    Rc::clone(&service),
                    Rc::clone(&policy),
                    Rc::clone(&took),
                );
                let request = async move {
                    let issued = clock.now();
                    let out = policy.call_idempotent(|| service.attempt()).await;
                    assert!(out.is_ok(), "the service always answers");
                    took.borrow_mut().push(clock.now().saturating_sub(issued));
                };
                spawner.spawn_local(request).expect("the pool is running");
                at += arrivals.exponential(gap);
            }
        }
    };
    spawner.spawn_local(load).expect("the pool is running");
    clock.run(|| pool.run_until_stalled());

    let mut took = took.take();
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
    let attempts = *service.attempts.borrow();
    Report {
        hedge,
        requests: took.len(),
        attempts,
        p50: percentile(0.50),
        p99: percentile(0.99),
        p999: percentile(0.999),
    }
}
