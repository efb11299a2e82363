//! The outage simulator: clients call a service that fails completely for a while, through
//! six policies, and the table shows what each does to the service and to the clients.
//!
//! ```sh
//! cargo run --release --example outage --features simulation
//! ```
//!
//! Every request is a task on a `futures` `LocalPool`, every latency and every backoff a
//! `VirtualClock` timer: the policies are the real `AsyncRetryPolicy`, `RetryBudget` and
//! `CircuitBreaker`, reading the virtual clock. The output is the same on every run.

#[path = "support/outage.rs"]
mod outage;
#[path = "support/rng.rs"]
mod rng;

use std::time::{Duration, Instant};

use outage::{Clients, Guard, Report, Scenario, simulate};

fn scenario() -> Scenario {
    Scenario {
        clients: Clients {
            count: 1000,
            hosts: 4,
            rate_per_client: 1.0,
            run_for: Duration::from_secs(60),
            // The library's default strategy.
            backoff_base: Duration::from_millis(250),
            backoff_max: Duration::from_secs(5),
            attempt_timeout: None,
            seed: 4,
        },
        outage: Duration::from_secs(20)..Duration::from_secs(40),
        latency: Duration::from_millis(10),
        capacity_per_sec: 2000,
    }
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

fn row(r: &Report) -> String {
    let recovery = r.recovery.map_or_else(
        || "not within the run".to_owned(),
        |d| format!("{:.1} s", d.as_secs_f64()),
    );
    format!(
        "| {} | {:.2}x | {} | {} | {:.1} % | {} | {} | {} |",
        r.guard.name(),
        r.amplification(),
        r.peak_attempts_per_sec,
        r.attempts_after_outage,
        r.success_rate() * 100.0,
        ms(r.p50),
        ms(r.p99),
        recovery,
    )
}

fn main() {
    let started = Instant::now();
    let s = scenario();
    let c = &s.clients;
    let total_rate = c.request_rate();
    println!(
        "Outage simulation (virtual time, seed {}: the same output on every run)",
        c.seed
    );
    println!(
        "- {} clients on {} hosts, each client sending Poisson requests at {}/s ({total_rate:.0} requests/s in all) for {} s;",
        c.count,
        c.hosts,
        c.rate_per_client,
        c.run_for.as_secs()
    );
    println!("  each host has one policy (so one budget, one breaker) shared by its clients.");
    println!(
        "- The service: every attempt takes {}; from {} s to {} s it fails all of them (503, a ServerError);",
        ms(s.latency),
        s.outage.start.as_secs(),
        s.outage.end.as_secs()
    );
    println!(
        "  it serves at most {} attempts/s ({} per 100 ms) and sheds the rest (503 after {}).",
        s.capacity_per_sec,
        s.capacity_per_sec / 10,
        ms(s.latency)
    );
    println!(
        "- Retrying policies: 5 attempts, decorrelated jitter base {}, max {} s (the library's default), deadline 60 s.",
        ms(c.backoff_base),
        c.backoff_max.as_secs()
    );
    println!(
        "  Ratio budget: RetryBudget::ratio(10.0) (10 % of the last 10 s of calls + 10 retries/s). Token bucket:"
    );
    println!(
        "  RetryBudget::aws_standard() (500 tokens, a retry costs 14). gRPC throttling: RetryBudget::grpc(10.0, 0.1)"
    );
    println!(
        "  (a failure takes 1 token, a success returns 0.1, no retry at <= 5). Breaker: opens at 50 % failures over"
    );
    println!("  >= 20 calls in 10 s, open for 5 s, 1 probe.\n");

    println!(
        "| policy | load during the outage (attempts / request) | peak load (attempts/s) | load in the 1st s after | success | p50 latency | p99 latency | time to recover |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for guard in Guard::ALL {
        let r = simulate(&s, guard);
        println!("{}", row(&r));
    }
    println!();
    println!(
        "- load during the outage: attempts the service received from {} s to {} s / requests issued then;",
        s.outage.start.as_secs(),
        s.outage.end.as_secs()
    );
    println!(
        "- peak load: the most attempts the service received in 1 s (sliding by 100 ms), over the whole run;"
    );
    println!(
        "- load in the 1st s after: attempts the recovering service received from {} s to {} s (capacity {});",
        s.outage.end.as_secs(),
        s.outage.end.as_secs() + 1,
        s.capacity_per_sec
    );
    println!(
        "- success, latency: over every logical request of the run (a failure's latency is until the policy gave up);"
    );
    println!(
        "- time to recover: from the end of the outage until every later 1 s window (sliding by 100 ms) of requests"
    );
    println!("  issued has at least 99 % successes.");
    println!("\n(ran in {:.1} s)", started.elapsed().as_secs_f64());
}
