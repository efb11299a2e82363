//! The metastable-failure simulator: a service with a queue at 75 % of its capacity, clients
//! with a per-attempt timeout, and a few seconds of trouble. Without retries the service
//! recovers when the trouble ends; with naive retries it does not: timed-out attempts are
//! retried, the service keeps serving the ones their clients gave up on, and the extra load
//! keeps the queue full long after the trigger (Bronson et al., "Metastable Failures in
//! Distributed Systems", `HotOS` 2021). The table shows which protection gets out of it.
//!
//! ```sh
//! cargo run --release --example metastable --features simulation
//! ```
//!
//! The machinery is the outage simulator's (`examples/support/outage.rs`): real
//! `AsyncRetryPolicy`, `RetryBudget` and `CircuitBreaker` instances on a `futures` `LocalPool`,
//! in virtual time. The output is the same on every run.

#[path = "support/metastable.rs"]
mod metastable;
#[path = "support/outage.rs"]
mod outage;
#[path = "support/rng.rs"]
mod rng;

use std::time::{Duration, Instant};

use metastable::{Metastable, MetastableReport, Trigger, simulate_metastable};
use outage::{Clients, Guard};

fn scenario(trigger_kind: Trigger, queue_timeout: Option<Duration>) -> Metastable {
    Metastable {
        clients: Clients {
            count: 1000,
            hosts: 4,
            rate_per_client: 0.75,
            run_for: Duration::from_secs(60),
            // The library's default strategy.
            backoff_base: Duration::from_millis(250),
            backoff_max: Duration::from_secs(5),
            attempt_timeout: Some(Duration::from_millis(200)),
            seed: 15,
        },
        workers: 10,
        service_time: Duration::from_millis(10),
        queue_timeout,
        trigger: Duration::from_secs(10)..Duration::from_secs(14),
        trigger_kind,
    }
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

fn row(r: &MetastableReport) -> String {
    let recovery = r.recovery.map_or_else(
        || "never (within the run)".to_owned(),
        |d| format!("{:.1} s", d.as_secs_f64()),
    );
    format!(
        "| {} | {} | {:.0} | {:.0} | {:.2} | {:.0} | {} | {} | {:.0} % | {} |",
        r.guard.name(),
        recovery,
        r.goodput_during,
        r.goodput_after,
        r.attempts_after,
        r.load_after,
        ms(r.p50),
        ms(r.p99),
        r.wasted * 100.0,
        ms(r.final_wait),
    )
}

fn table(s: &Metastable) {
    println!(
        "| policy | time to recover | goodput during the trigger (req/s) | goodput after (req/s) | attempts / request after | load after (attempts/s) | p50 latency | p99 latency | wasted work | queue wait at the end |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for guard in Guard::ALL {
        println!("{}", row(&simulate_metastable(s, guard)));
    }
    println!();
}

fn main() {
    let started = Instant::now();
    let slow = scenario(Trigger::Slowdown(2), None);
    let c = &slow.clients;
    println!(
        "Metastable-failure simulation (virtual time, seed {}: the same output on every run)",
        c.seed
    );
    println!(
        "- {} clients on {} hosts, each sending Poisson requests at {}/s ({:.0} requests/s in all) for {} s;",
        c.count,
        c.hosts,
        c.rate_per_client,
        c.request_rate(),
        c.run_for.as_secs()
    );
    println!("  each host has one policy (so one budget, one breaker) shared by its clients.");
    println!(
        "- The service: {} workers, one FIFO queue, exponential service times of mean {}: capacity {:.0} requests/s,",
        slow.workers,
        ms(slow.service_time),
        slow.capacity()
    );
    println!(
        "  a load of {:.0} %. It serves the requests whose client has given up, as real servers do.",
        slow.load() * 100.0
    );
    println!(
        "- Every attempt times out after {} (a Transient failure); retrying policies: 5 attempts, decorrelated",
        ms(c.attempt_timeout.expect("an attempt timeout"))
    );
    println!(
        "  jitter base {}, max {} s (the library's default). Ratio budget: RetryBudget::ratio(10.0). Token bucket:",
        ms(c.backoff_base),
        c.backoff_max.as_secs()
    );
    println!(
        "  RetryBudget::aws_standard(). gRPC throttling: RetryBudget::grpc(10.0, 0.1). Breaker: opens at 50 % failures"
    );
    println!("  over >= 20 calls in 10 s, open for 5 s, 1 probe.\n");

    println!(
        "Trigger: from {} s to {} s every request takes twice as long (capacity {:.0}/s, below the load);",
        slow.trigger.start.as_secs(),
        slow.trigger.end.as_secs(),
        slow.capacity() / 2.0
    );
    println!("the service serves every request it queued.\n");
    table(&slow);

    let bound = Duration::from_millis(500);
    println!(
        "The same, but the service drops (503) a request that waited more than {} in its queue, unserved.\n",
        ms(bound)
    );
    table(&scenario(Trigger::Slowdown(2), Some(bound)));

    let errors = scenario(Trigger::Errors, None);
    println!(
        "Trigger: from {} s to {} s every request fails (after its usual service time).\n",
        errors.trigger.start.as_secs(),
        errors.trigger.end.as_secs()
    );
    table(&errors);

    println!(
        "- time to recover: from the end of the trigger until every later 1 s window (sliding by 100 ms) of requests"
    );
    println!(
        "  issued has at least 95 % successes; \"never\": the run's last window ({} s) still has fewer;",
        c.run_for.as_secs()
    );
    println!(
        "- goodput: logical requests that succeeded, per second, by the time they ended (offered: {:.0}/s);",
        c.request_rate()
    );
    println!(
        "- attempts / request after, load after: over the requests issued, and the attempts the service received,"
    );
    println!("  from the end of the trigger to the end of the run;");
    println!(
        "- latency: of every logical request of the run (a failure's latency is until the policy gave up);"
    );
    println!(
        "- wasted work: the share of the workers' time spent on attempts whose client had timed out;"
    );
    println!(
        "- queue wait at the end: the longest wait in the queue of an attempt received in the run's last second."
    );
    println!("\n(ran in {:.1} s)", started.elapsed().as_secs_f64());
}
