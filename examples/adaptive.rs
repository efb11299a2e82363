//! The throttling simulator: a fleet of clients calls a service that answers 429 above a fixed
//! capacity, and for ten seconds they ask for more than it can take. Standard retries, the two
//! retry budgets and the AWS SDKs' adaptive mode (`AdaptiveRateLimiter`), side by side.
//!
//! ```sh
//! cargo run --release --example adaptive --features simulation
//! ```
//!
//! Every request is a task on a `futures` `LocalPool`, every latency, backoff and rate limiter
//! wait a `VirtualClock` timer: the policies are the real `AsyncRetryPolicy`, `RetryBudget` and
//! `AdaptiveRateLimiter`, reading the virtual clock. The output is the same on every run.

#[path = "support/rng.rs"]
mod rng;
#[path = "support/throttling.rs"]
mod throttling;

use std::time::{Duration, Instant};

use throttling::{Guard, Report, Scenario, simulate};

fn scenario() -> Scenario {
    Scenario {
        clients: 120,
        rate_per_client: 5.0,
        surge_rate_per_client: 12.5,
        surge: Duration::from_secs(10)..Duration::from_secs(20),
        run_for: Duration::from_secs(40),
        latency: Duration::from_millis(10),
        capacity_per_sec: 1000,
        // The AWS SDKs' default attempts, the library's default strategy.
        max_attempts: 3,
        backoff_base: Duration::from_millis(250),
        backoff_max: Duration::from_secs(5),
        seed: 15,
    }
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

fn row(r: &Report) -> String {
    format!(
        "| {} | {} | {:.0} | {:.1} % | {} | {} | {} | {:.1} s |",
        r.guard.name(),
        r.throttled,
        r.goodput(),
        r.success_rate() * 100.0,
        ms(r.p50),
        ms(r.p99),
        r.attempts,
        r.ended.as_secs_f64(),
    )
}

fn main() {
    let started = Instant::now();
    let s = scenario();
    println!(
        "Throttling simulation (virtual time, seed {}: the same output on every run)",
        s.seed
    );
    #[allow(clippy::cast_precision_loss)]
    let clients = s.clients as f64;
    println!(
        "- {} clients, each with its own policy (its own budget and rate limiter), each sending Poisson requests",
        s.clients
    );
    println!(
        "  at {}/s ({:.0}/s in all), and at {}/s ({:.0}/s) from {} s to {} s; requests issued for {} s;",
        s.rate_per_client,
        s.rate_per_client * clients,
        s.surge_rate_per_client,
        s.surge_rate_per_client * clients,
        s.surge.start.as_secs(),
        s.surge.end.as_secs(),
        s.run_for.as_secs()
    );
    println!(
        "- the service: every attempt takes {}; it serves {} attempts/s ({} per 100 ms) and answers the rest 429 (RateLimit);",
        ms(s.latency),
        s.capacity_per_sec,
        s.capacity_per_sec / 10
    );
    println!(
        "- every policy: {} attempts, decorrelated jitter base {}, max {} s; ratio budget: RetryBudget::ratio(10.0)",
        s.max_attempts,
        ms(s.backoff_base),
        s.backoff_max.as_secs()
    );
    println!(
        "  with a floor of 1 retry/s; token bucket: RetryBudget::aws_standard(); rate limiter: AdaptiveRateLimiter::new().\n"
    );
    println!(
        "| policy | throttled responses (429) | goodput (successes/s) | success | p50 latency | p99 latency | attempts | last request ended |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let reports: Vec<Report> = Guard::ALL.iter().map(|&g| simulate(&s, g)).collect();
    for r in &reports {
        println!("{}", row(r));
    }
    println!();
    println!(
        "- goodput: successful logical requests per second, from the start until the last request ended"
    );
    println!("  (or the end of the run, if later);");
    println!(
        "- latency: of every logical request, from its issue until it succeeded or its policy gave up."
    );
    println!("\nThe service's load: attempts received / served per second, averaged over 5 s.\n");
    let windows = s.run_for.as_secs().div_ceil(5);
    let header: Vec<String> = (0..windows)
        .map(|w| format!("{}-{} s", w * 5, w * 5 + 5))
        .collect();
    println!("| policy | {} |", header.join(" | "));
    println!("|---|{}", "---:|".repeat(header.len()));
    for r in &reports {
        let cells: Vec<String> = (0..windows)
            .map(|w| {
                let range = usize::try_from(w * 5).expect("a short run")..;
                let avg = |v: &[u32]| -> u32 {
                    v.get(range.clone())
                        .unwrap_or(&[])
                        .iter()
                        .take(5)
                        .sum::<u32>()
                        / 5
                };
                format!("{} / {}", avg(&r.received_per_sec), avg(&r.served_per_sec))
            })
            .collect();
        println!("| {} | {} |", r.guard.name(), cells.join(" | "));
    }
    println!("\n(ran in {:.1} s)", started.elapsed().as_secs_f64());
}
