//! The tail-latency simulation: requests to a service with a long latency tail, without
//! hedging, hedged after a fixed delay, and hedged after a learned percentile.
//!
//! ```sh
//! cargo run --release --example hedging --features simulation
//! ```
//!
//! Every request is a task on a `futures` `LocalPool`, every latency and every hedging delay a
//! `VirtualClock` timer; the policies are the real `AsyncRetryPolicy` and `Hedging`, reading
//! the virtual clock. The output is the same on every run.

#[path = "support/rng.rs"]
mod rng;
#[path = "support/tail.rs"]
mod tail;

use std::time::{Duration, Instant};

use tail::{Hedge, Report, Scenario, simulate};

fn scenario() -> Scenario {
    Scenario {
        requests_per_sec: 2000.0,
        run_for: Duration::from_secs(100),
        median: Duration::from_millis(5),
        sigma: 0.25,
        slow_share: 0.01,
        slow_factor: 20.0,
        seed: 15,
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn row(r: &Report, base: &Report) -> String {
    format!(
        "| {} | {} | {} | {} | {:.1}x | {:.1} % |",
        r.hedge.name(),
        ms(r.p50),
        ms(r.p99),
        ms(r.p999),
        base.p999.as_secs_f64() / r.p999.as_secs_f64(),
        r.extra_load() * 100.0,
    )
}

fn main() {
    let started = Instant::now();
    let s = scenario();
    println!(
        "Tail-latency simulation (virtual time, seed {}: the same output on every run)",
        s.seed
    );
    println!(
        "- {:.0} requests/s (Poisson) for {} s; each attempt takes a lognormal time (median {}, sigma {}),",
        s.requests_per_sec,
        s.run_for.as_secs(),
        ms(s.median),
        s.sigma
    );
    println!(
        "  and {} % of attempts (hedges included, drawn independently) are {}x slower.",
        s.slow_share * 100.0,
        s.slow_factor
    );
    println!(
        "- Every request is `policy.call_idempotent(..)`; a hedge is cancelled when the other attempt wins.\n"
    );
    println!("| policy | p50 | p99 | p99.9 | p99.9 cut | extra load |");
    println!("|---|---:|---:|---:|---:|---:|");
    let base = simulate(&s, Hedge::None);
    println!("{}", row(&base, &base));
    for hedge in [
        Hedge::Fixed(Duration::from_millis(8)),
        Hedge::Percentile(95.0),
        Hedge::Percentile(97.0),
    ] {
        println!("{}", row(&simulate(&s, hedge), &base));
    }
    println!(
        "\nThe same for other tails: how slow the slow attempts are, and how wide the body is.\n"
    );
    println!(
        "| slow attempts | body sigma | p99.9, no hedging | p99.9, learned p95 | p99.9 cut | extra load |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for (factor, sigma) in [
        (10.0, 0.25),
        (20.0, 0.25),
        (50.0, 0.25),
        (20.0, 0.1),
        (20.0, 0.5),
    ] {
        let s = Scenario {
            slow_factor: factor,
            sigma,
            run_for: Duration::from_secs(50),
            ..s.clone()
        };
        let (none, hedged) = (
            simulate(&s, Hedge::None),
            simulate(&s, Hedge::Percentile(95.0)),
        );
        println!(
            "| 1 % {factor}x slower | {sigma} | {} | {} | {:.1}x | {:.1} % |",
            ms(none.p999),
            ms(hedged.p999),
            none.p999.as_secs_f64() / hedged.p999.as_secs_f64(),
            hedged.extra_load() * 100.0
        );
    }
    println!(
        "\n- extra load: attempts the service received / requests - 1 (cancelled hedges included);"
    );
    println!("- p99.9 cut: the p99.9 without hedging / this row's.");
    println!("\n(ran in {:.1} s)", started.elapsed().as_secs_f64());
}
