//! Small runs of the outage simulator (`examples/outage.rs`) and of the metastable-failure
//! simulator (`examples/metastable.rs`), same code: the headline figures of the five policies,
//! asserted. Virtual time, seeded: deterministic and fast in debug mode.

#[path = "../examples/support/metastable.rs"]
mod metastable;
#[path = "../examples/support/outage.rs"]
mod outage;
#[path = "../examples/support/rng.rs"]
mod rng;

use std::time::Duration;

use metastable::{Metastable, MetastableReport, Trigger, simulate_metastable};
use outage::{Clients, Guard, Scenario, simulate};

/// 200 requests/s on one host; the service fails everything from 2 s to 32 s. The outage is
/// long next to the ratio budget's 10 s window, so the budget reaches its steady state.
fn scenario() -> Scenario {
    Scenario {
        clients: Clients {
            count: 200,
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

// ---------- metastable failures ----------

/// 200 requests/s on one host, to a service of 4 workers at 15 ms a request (266 requests/s: a
/// 75 % load); every attempt times out after 200 ms. From 5 s to 9 s every request takes twice
/// as long (133 requests/s), then the service is as fast as before until the end, at 30 s.
fn metastable(trigger_kind: Trigger) -> Metastable {
    Metastable {
        clients: Clients {
            count: 200,
            hosts: 1,
            rate_per_client: 1.0,
            run_for: Duration::from_secs(30),
            // The library's default strategy.
            backoff_base: Duration::from_millis(250),
            backoff_max: Duration::from_secs(5),
            attempt_timeout: Some(Duration::from_millis(200)),
            seed: 15,
        },
        workers: 4,
        service_time: Duration::from_millis(15),
        queue_timeout: None,
        reject_above: None,
        trigger: Duration::from_secs(5)..Duration::from_secs(9),
        trigger_kind,
    }
}

#[test]
fn naive_retries_keep_a_slowed_service_down_after_the_slowdown_and_protections_let_it_recover() {
    let s = metastable(Trigger::Slowdown(2));
    assert!((s.load() - 0.75).abs() < 1e-9, "{}", s.load());
    let none = simulate_metastable(&s, Guard::NoRetries);
    let retries = simulate_metastable(&s, Guard::Retries);
    let ratio = simulate_metastable(&s, Guard::RatioBudget);
    let bucket = simulate_metastable(&s, Guard::TokenBucket);
    let grpc = simulate_metastable(&s, Guard::GrpcThrottling);
    let breaker = simulate_metastable(&s, Guard::CircuitBreaker);
    let offered = s.clients.request_rate();

    // Without retries the backlog of the slowdown drains at the spare capacity (67/s): the
    // service recovers within seconds, and serves most requests after the slowdown.
    let none_recovery = none.recovery.expect("no retries recover");
    assert!(none_recovery <= Duration::from_secs(5), "{none:?}");
    assert!(none.goodput_after > 0.75 * offered, "{none:?}");

    // Naive retries: every attempt times out and is retried, 5 attempts a request, 3.75 times
    // the capacity: the queue grows for the rest of the run and nothing succeeds any more,
    // while nearly all the service's work is for clients that gave up.
    assert_eq!(retries.recovery, None, "{retries:?}");
    assert!(retries.goodput_after < 0.01 * offered, "{retries:?}");
    assert!(retries.attempts_after > 4.9, "{retries:?}");
    assert!(retries.final_wait > Duration::from_secs(10), "{retries:?}");
    assert!(retries.wasted > 0.9, "{retries:?}");

    // The budgets and the breaker get out of it, and the queue is short again at the end.
    for r in [&ratio, &bucket, &grpc, &breaker] {
        let recovery = r.recovery.expect("recovers within the run");
        assert!(recovery >= none_recovery, "{r:?}");
        assert!(r.final_wait < Duration::from_millis(200), "{r:?}");
        assert!(r.attempts_after < 1.1, "{r:?}");
    }
    // The token buckets run dry at once (AWS: 35 retries of 14 tokens; gRPC: 5 failures) and
    // recover about as fast as no retries; the breaker within its open period (5 s) of it.
    for r in [&bucket, &grpc] {
        assert!(
            r.recovery.unwrap() <= none_recovery + Duration::from_secs(1),
            "{r:?}"
        );
    }
    assert!(
        breaker.recovery.unwrap() <= none_recovery + Duration::from_secs(5),
        "{breaker:?}"
    );
}

#[test]
fn after_an_error_burst_only_naive_retries_turn_it_into_an_overload() {
    let s = metastable(Trigger::Errors);
    let none = simulate_metastable(&s, Guard::NoRetries);
    let retries = simulate_metastable(&s, Guard::Retries);
    let bucket = simulate_metastable(&s, Guard::TokenBucket);
    let grpc = simulate_metastable(&s, Guard::GrpcThrottling);
    let ratio = simulate_metastable(&s, Guard::RatioBudget);

    // The errors cost no more than successes: without retries the load stays at 75 % and the
    // service is healthy the moment the burst ends.
    assert_eq!(none.recovery, Some(Duration::ZERO), "{none:?}");
    assert_eq!(bucket.recovery, Some(Duration::ZERO), "{bucket:?}");
    assert_eq!(grpc.recovery, Some(Duration::ZERO), "{grpc:?}");
    assert!(
        ratio.recovery.unwrap() <= Duration::from_secs(1),
        "{ratio:?}"
    );
    // Retrying the burst's errors 5 times builds the queue that keeps it down.
    assert_eq!(retries.recovery, None, "{retries:?}");
    assert!(
        retries.goodput_after < 0.01 * s.clients.request_rate(),
        "{retries:?}"
    );
}

#[test]
fn the_metastable_simulation_is_deterministic() {
    let mut s = metastable(Trigger::Slowdown(2));
    s.clients.run_for = Duration::from_secs(15);
    for guard in [Guard::Retries, Guard::RatioBudget, Guard::CircuitBreaker] {
        assert_eq!(
            simulate_metastable(&s, guard),
            simulate_metastable(&s, guard)
        );
    }
}

#[test]
fn a_server_queue_timeout_above_the_client_timeout_does_not_save_naive_retries() {
    let mut s = metastable(Trigger::Slowdown(2));
    s.queue_timeout = Some(Duration::from_millis(500));
    let none = simulate_metastable(&s, Guard::NoRetries);
    let retries = simulate_metastable(&s, Guard::Retries);

    // The bound caps the backlog at 500 ms of waiting: without retries it drains in under 2 s
    // (unbounded: about 4 s, in the test above).
    assert!(
        none.recovery.expect("no retries recover") <= Duration::from_secs(2),
        "{none:?}"
    );
    // With retries the queue stays at the bound: the service drops what waited longer and
    // serves the rest 300 ms after its client gave up.
    assert_eq!(retries.recovery, None, "{retries:?}");
    assert!(retries.dropped > 10_000, "{retries:?}");
    assert!(retries.wasted > 0.8, "{retries:?}");
    assert!(
        retries.final_wait > Duration::from_millis(450),
        "{retries:?}"
    );
    assert!(
        retries.final_wait <= Duration::from_millis(500) + s.service_time * 20,
        "{retries:?}"
    );
}

#[test]
fn the_adaptive_limiter_sees_no_timeout_and_hedging_without_a_budget_melts_a_busy_service() {
    let s = metastable(Trigger::Slowdown(2));
    let bucket = simulate_metastable(&s, Guard::TokenBucket);
    let adaptive = simulate_metastable(&s, Guard::Adaptive);
    let hedging = simulate_metastable(&s, Guard::Hedging);
    let hedging_budget = simulate_metastable(&s, Guard::HedgingBudget);

    // Every failure here is a client-side timeout (`Transient`): the limiter never turns on,
    // and adaptive mode is its token bucket alone, to the last figure.
    assert_eq!(
        MetastableReport {
            guard: Guard::TokenBucket,
            ..adaptive.clone()
        },
        bucket
    );
    assert_eq!(adaptive.rejected, 0, "{adaptive:?}");

    // Hedging at p95 with 5 attempts: the queue never drains, every attempt times out, and
    // nearly all the work is for clients that gave up.
    assert_eq!(hedging.recovery, None, "{hedging:?}");
    assert!(
        hedging.goodput_after < 0.01 * s.clients.request_rate(),
        "{hedging:?}"
    );
    assert!(hedging.attempts_after > 4.9, "{hedging:?}");
    assert!(hedging.wasted > 0.9, "{hedging:?}");
    // The token bucket stops the hedges with the retries: it recovers, about one attempt per
    // request, at the cost of a slower recovery than the bucket without hedging.
    let recovery = hedging_budget.recovery.expect("recovers within the run");
    assert!(recovery >= bucket.recovery.unwrap(), "{hedging_budget:?}");
    assert!(hedging_budget.attempts_after < 1.1, "{hedging_budget:?}");
    assert!(
        hedging_budget.final_wait < Duration::from_millis(200),
        "{hedging_budget:?}"
    );
}

#[test]
fn hedging_without_a_budget_collapses_a_service_at_75_percent_with_no_trigger() {
    let mut s = metastable(Trigger::Slowdown(1)); // slows nothing
    s.clients.run_for = Duration::from_secs(10);
    s.trigger = Duration::from_secs(5)..Duration::from_secs(6);
    let none = simulate_metastable(&s, Guard::NoRetries);
    let hedging = simulate_metastable(&s, Guard::Hedging);
    let hedging_budget = simulate_metastable(&s, Guard::HedgingBudget);

    assert!(
        none.success_rate() >= 1.0,
        "every request succeeds: {none:?}"
    );
    assert_eq!(none.recovery, Some(Duration::ZERO), "{none:?}");
    // A queue that outgrows the learned p95 makes every call hedge: twice the load, then
    // timeouts and retries. Nothing triggered it.
    assert_eq!(hedging.recovery, None, "{hedging:?}");
    assert!(hedging.goodput_during < 1.0, "{hedging:?}");
    assert!(hedging.success_rate() < 0.5, "{hedging:?}");
    assert!(hedging.attempts_after > 4.9, "{hedging:?}");
    // With the token bucket the hedges stop when it runs low: the queue still has bursts of
    // timeouts on this small service (4 workers), but nothing like the collapse.
    assert!(hedging_budget.success_rate() > 0.9, "{hedging_budget:?}");
    assert!(hedging_budget.attempts_after < 1.1, "{hedging_budget:?}");
}

#[test]
fn with_429s_adaptive_mode_sends_what_the_service_takes_and_queues_the_rest_on_the_client() {
    let mut s = metastable(Trigger::Slowdown(2));
    s.reject_above = Some(Duration::from_millis(100));
    // Every waiting call wakes when a token may be free (the limiter queues no waiter): a
    // long run of adaptive mode's backlog is slow to simulate in debug.
    s.clients.run_for = Duration::from_secs(15);
    let none = simulate_metastable(&s, Guard::NoRetries);
    let bucket = simulate_metastable(&s, Guard::TokenBucket);
    let adaptive = simulate_metastable(&s, Guard::Adaptive);

    // Admission control keeps the queue short: nothing goes metastable, not even retries.
    for r in [&none, &bucket, &adaptive] {
        assert_eq!(r.recovery, Some(Duration::ZERO), "{r:?}");
        assert!(r.final_wait < Duration::from_millis(100), "{r:?}");
        assert!(r.attempts_after < 1.05, "{r:?}");
    }
    assert!(none.success_rate() < 0.97, "{none:?}");
    assert!(bucket.rejected > none.rejected, "{bucket:?}");
    // The limiter is cut by every 429 and grows back along CUBIC's curve: it is refused about
    // 20 times less, and every request succeeds in the end...
    assert!(adaptive.rejected * 10 < bucket.rejected, "{adaptive:?}");
    assert!(adaptive.success_rate() > 0.999, "{adaptive:?}");
    // ...but it sends far less than the slowed service serves (no retries: 138/s), and the
    // requests wait for their tokens long after the trigger: the clients are not served
    // promptly again within the run.
    assert!(
        adaptive.goodput_during < 0.5 * none.goodput_during,
        "{adaptive:?}"
    );
    assert!(adaptive.p50 > Duration::from_secs(1), "{adaptive:?}");
    assert_eq!(adaptive.prompt_recovery, None, "{adaptive:?}");
    assert_eq!(none.prompt_recovery, Some(Duration::ZERO), "{none:?}");
}
