//! A small run of the throttling simulator (`examples/adaptive.rs`, same code): adaptive mode
//! against standard retries, asserted. Virtual time, seeded: deterministic and fast in debug.

#[path = "../examples/support/rng.rs"]
mod rng;
#[path = "../examples/support/throttling.rs"]
mod throttling;

use std::time::Duration;

use throttling::{Guard, Scenario, simulate};

/// 100 clients at 3 requests/s (300/s), at 8/s (800/s) from 4 s to 8 s, against a service
/// that serves 500 attempts/s and answers 429 beyond.
fn scenario() -> Scenario {
    Scenario {
        clients: 100,
        rate_per_client: 3.0,
        surge_rate_per_client: 8.0,
        surge: Duration::from_secs(4)..Duration::from_secs(8),
        run_for: Duration::from_secs(20),
        latency: Duration::from_millis(10),
        capacity_per_sec: 500,
        max_attempts: 3,
        backoff_base: Duration::from_millis(250),
        backoff_max: Duration::from_secs(5),
        seed: 15,
    }
}

#[test]
fn adaptive_mode_is_throttled_far_less_than_standard_retries_for_as_much_goodput() {
    let s = scenario();
    let standard = simulate(&s, Guard::Retries);
    let adaptive = simulate(&s, Guard::Adaptive);
    eprintln!("{standard:?}\n{adaptive:?}");

    // The surge is throttled: standard retries make it worse (each 429 retried twice).
    assert!(standard.throttled > 1000, "{standard:?}");
    assert!(standard.success_rate() < 0.97, "{standard:?}");
    // Adaptive mode: at most 10 % of standard's 429s, at least its goodput, every request
    // served (later: the clients queue what the service cannot take yet).
    assert!(
        adaptive.throttled * 10 <= standard.throttled,
        "{} vs {}",
        adaptive.throttled,
        standard.throttled
    );
    assert!(
        adaptive.goodput() >= standard.goodput(),
        "{adaptive:?} vs {standard:?}"
    );
    assert!(adaptive.success_rate() > 0.999, "{adaptive:?}");
    assert!(adaptive.attempts < standard.attempts);
    // The price: the queue's latency.
    assert!(adaptive.p99 > standard.p99);
    // Deterministic: the same run, the same report.
    assert_eq!(simulate(&s, Guard::Adaptive), adaptive);
}
