//! A small run of the outage simulator (`examples/outage.rs`, same code): the headline figures
//! of the five policies, asserted. Virtual time, seeded: deterministic and fast in debug mode.

#[path = "../examples/support/outage.rs"]
mod outage;
#[path = "../examples/support/rng.rs"]
mod rng;

use std::time::Duration;

use outage::{Clients, Guard, Scenario, simulate};

/// 200 requests/s on one host; the service fails everything from 2 s to 32 s. The outage is
/// long next to the ratio budget's 10 s window, so the budget reaches its steady state.
fn scenario() -> Scenario {
    Scenario {
        clients: Clients {
            clients: 200,
            hosts: 1,
            rate_per_client: 1.0,
            run_for: Duration::from_secs(40),
            // Short backoffs: all 5 attempts of a request fit well inside the outage.
            backoff_base: Duration::from_millis(10),
            backoff_max: Duration::from_millis(100),
            attempt_timeout: None,
            seed: 7,
        },
        outage: Duration::from_secs(2)..Duration::from_secs(32),
        latency: Duration::from_millis(10),
        capacity_per_sec: 400,
    }
}

#[test]
fn retries_multiply_an_outage_and_budgets_hold_it_near_one_attempt_per_request() {
    let s = scenario();
    let none = simulate(&s, Guard::NoRetries);
    let retries = simulate(&s, Guard::Retries);
    let ratio = simulate(&s, Guard::RatioBudget);
    let bucket = simulate(&s, Guard::TokenBucket);

    // One attempt per request, exactly.
    assert!(none.outage_requests > 5_500, "{none:?}");
    assert_eq!(none.outage_attempts, none.outage_requests as u64);
    assert!((none.amplification() - 1.0).abs() < f64::EPSILON);

    // 5 attempts and nothing else: about 5x (a few requests straddle the outage's ends).
    assert!(retries.amplification() > 4.9, "{retries:?}");

    // The ratio budget: retries of at most 10 % of the calls plus the floor (10 retries/s per
    // host), plus what the budget had saved before the outage (10 % of 2 s of calls + the
    // floor's 100-token reserve over the 10 s window).
    let request_rate = s.clients.request_rate();
    let outage_secs = s.outage.end.saturating_sub(s.outage.start).as_secs_f64();
    let saved = 0.1 * request_rate * s.outage.start.as_secs_f64() + 100.0;
    let bound = 1.0 + 0.10 + 10.0 / request_rate + saved / (request_rate * outage_secs);
    assert!(
        ratio.amplification() <= bound,
        "{:.3} > {bound:.3}: {ratio:?}",
        ratio.amplification()
    );
    assert!(
        ratio.amplification() > 1.05,
        "the budget does allow retries"
    );

    // The AWS token bucket: 500 tokens, 14 a retry, no success to refill it during the outage.
    assert!(
        bucket.outage_attempts <= bucket.outage_requests as u64 + 500 / 14,
        "{bucket:?}"
    );

    // Retries carry the requests of the outage's last moments past its end; the budgets
    // succeed about as often as no retries, and recover as fast: at once.
    assert!(retries.success_rate() > none.success_rate());
    for r in [&none, &retries, &ratio, &bucket] {
        assert!(r.success_rate() >= none.success_rate(), "{r:?}");
        assert_eq!(r.recovery, Some(Duration::ZERO), "{r:?}");
    }
    // Retries cost latency: the p99 of the retrying policy holds its backoffs.
    assert!(retries.p99 > none.p99);
}

#[test]
fn the_breaker_sheds_the_load_and_recovers_within_its_open_period() {
    let s = scenario();
    let none = simulate(&s, Guard::NoRetries);
    let breaker = simulate(&s, Guard::CircuitBreaker);

    // Open, it rejects calls without calling the service: far below one attempt per request.
    assert!(breaker.amplification() < 0.2, "{breaker:?}");
    // The recovered service waits for the next probe: at most one open period (5 s).
    let recovery = breaker
        .recovery
        .expect("recovers before the end of the run");
    assert!(recovery <= Duration::from_secs(5), "{breaker:?}");
    // Meanwhile calls are rejected: fewer successes than with no retries at all.
    assert!(breaker.success_rate() < none.success_rate(), "{breaker:?}");
}

#[test]
fn the_simulation_is_deterministic() {
    let mut s = scenario();
    s.clients.run_for = Duration::from_secs(12);
    s.outage = Duration::from_secs(4)..Duration::from_secs(8);
    for guard in [Guard::RatioBudget, Guard::CircuitBreaker] {
        assert_eq!(simulate(&s, guard), simulate(&s, guard));
    }
}
