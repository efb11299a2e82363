//! A small run of the tail-latency simulator (`examples/hedging.rs`, same code): hedging cuts
//! the p99.9 of a long-tailed service several times over for a few percent more attempts.
//! Virtual time, seeded: deterministic and fast in debug mode.

#[path = "../examples/support/rng.rs"]
mod rng;
#[path = "../examples/support/tail.rs"]
mod tail;

use std::time::Duration;

use tail::{Hedge, Scenario, simulate};

/// 20 000 requests; attempts take 5 ms (lognormal, sigma 0.25), 1 % of them 20x more.
fn scenario() -> Scenario {
    Scenario {
        requests_per_sec: 1000.0,
        run_for: Duration::from_secs(20),
        median: Duration::from_millis(5),
        sigma: 0.25,
        slow_share: 0.01,
        slow_factor: 20.0,
        seed: 3,
    }
}

#[test]
fn hedging_cuts_the_tail_for_a_few_percent_more_attempts() {
    let s = scenario();
    let none = simulate(&s, Hedge::None);
    assert!(none.requests > 19_000, "{none:?}");
    assert_eq!(
        none.attempts, none.requests as u64,
        "one attempt per request"
    );
    assert!(
        none.p999 > Duration::from_millis(80),
        "the slow mode: {none:?}"
    );

    for hedge in [
        Hedge::Fixed(Duration::from_millis(8)),
        Hedge::Percentile(95.0),
    ] {
        let r = simulate(&s, hedge);
        assert_eq!(r.requests, none.requests, "{r:?}");
        let cut = none.p999.as_secs_f64() / r.p999.as_secs_f64();
        assert!(cut > 7.0, "p99.9 cut only {cut:.1}x: {r:?}");
        assert!(r.p99 < Duration::from_millis(15), "{r:?}");
        assert!(
            r.extra_load() > 0.01 && r.extra_load() < 0.05,
            "extra load {:.3}: {r:?}",
            r.extra_load()
        );
        // The body is untouched: the median request is never hedged.
        let p50 = r.p50.as_secs_f64() / none.p50.as_secs_f64();
        assert!((p50 - 1.0).abs() < 0.02, "{r:?} vs {none:?}");
    }
}

#[test]
fn the_simulation_is_deterministic() {
    let s = Scenario {
        run_for: Duration::from_secs(5),
        ..scenario()
    };
    let hedge = Hedge::Percentile(95.0);
    assert_eq!(simulate(&s, hedge), simulate(&s, hedge));
}
