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

use metastable::{Metastable, MetastableReport, PROMPT, Trigger, simulate_metastable};
use outage::{Clients, Guard};

fn scenario(
    trigger_kind: Trigger,
    queue_timeout: Option<Duration>,
    reject_above: Option<Duration>,
) -> Metastable {
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
        reject_above,
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

/// Every row of a table, each simulation on a thread of its own (they share nothing).
fn reports(s: &Metastable, guards: &[Guard]) -> Vec<MetastableReport> {
    std::thread::scope(|scope| {
        let runs: Vec<_> = guards
            .iter()
            .map(|&guard| scope.spawn(move || simulate_metastable(s, guard)))
            .collect();
        runs.into_iter()
            .map(|run| run.join().expect("a simulation does not panic"))
            .collect()
    })
}

fn table(s: &Metastable) -> Vec<MetastableReport> {
    table_of(s, &Guard::METASTABLE)
}

fn table_of(s: &Metastable, guards: &[Guard]) -> Vec<MetastableReport> {
    println!(
        "| policy | time to recover | goodput during the trigger (req/s) | goodput after (req/s) | attempts / request after | load after (attempts/s) | p50 latency | p99 latency | wasted work | queue wait at the end |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let reports = reports(s, guards);
    for r in &reports {
        println!("{}", row(r));
    }
    println!();
    reports
}

/// The figures the main table has no column for, of the rows `guards`.
fn more(reports: &[MetastableReport], guards: &[Guard]) {
    println!(
        "| policy | time to recover promptly (95 % succeed within {}) | requests that succeeded | attempts refused (429) | attempts dropped (503) |",
        ms(PROMPT)
    );
    println!("|---|---:|---:|---:|---:|");
    for r in reports.iter().filter(|r| guards.contains(&r.guard)) {
        let prompt = r.prompt_recovery.map_or_else(
            || "never (within the run)".to_owned(),
            |d| format!("{:.1} s", d.as_secs_f64()),
        );
        println!(
            "| {} | {} | {:.1} % | {} | {} |",
            r.guard.name(),
            prompt,
            r.success_rate() * 100.0,
            r.rejected,
            r.dropped
        );
    }
    println!();
}

/// What the columns mean.
fn legend(c: &Clients) {
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
        "- queue wait at the end: the longest wait in the queue of an attempt received in the run's last second"
    );
    println!("  (with admission control: the wait it would have had, refused or not);");
    println!(
        "- time to recover promptly: the same, counting only the requests that succeeded within {}.",
        ms(PROMPT)
    );
}

/// Table 5: the rows that fall over without a trigger, next to some that do not.
fn no_trigger() {
    let mut calm = scenario(Trigger::Slowdown(1), None, None);
    calm.clients.run_for = Duration::from_secs(10);
    calm.trigger = Duration::from_secs(5)..Duration::from_secs(6);
    println!(
        "No trigger at all: the same service at 75 % load, never slowed, for {} s (\"during the trigger\": from {} s to {} s;",
        calm.clients.run_for.as_secs(),
        calm.trigger.start.as_secs(),
        calm.trigger.end.as_secs()
    );
    println!("\"after\": from then to the end).\n");
    let calm_reports = table_of(
        &calm,
        &[
            Guard::NoRetries,
            Guard::Retries,
            Guard::TokenBucket,
            Guard::Hedging,
            Guard::HedgingBudget,
        ],
    );
    more(&calm_reports, &Guard::METASTABLE);
}

fn main() {
    let started = Instant::now();
    let slow = scenario(Trigger::Slowdown(2), None, None);
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
    println!(
        "  over >= 20 calls in 10 s, open for 5 s, 1 probe. Adaptive mode: RetryBudget::aws_standard() and an"
    );
    println!(
        "  AdaptiveRateLimiter (one per host) that every attempt takes a token from; it slows down on RateLimit"
    );
    println!(
        "  failures (429) only, never on a client-side timeout (Transient). Hedging: Hedging::at_percentile(95.0)"
    );
    println!(
        "  (20 samples first, 2 attempts in flight), calls through call_idempotent; a cancelled hedge stays queued.\n"
    );

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
    table(&scenario(Trigger::Slowdown(2), Some(bound), None));

    let errors = scenario(Trigger::Errors, None, None);
    println!(
        "Trigger: from {} s to {} s every request fails (after its usual service time).\n",
        errors.trigger.start.as_secs(),
        errors.trigger.end.as_secs()
    );
    table(&errors);

    let admit = Duration::from_millis(100);
    let throttling = scenario(Trigger::Slowdown(2), None, Some(admit));
    println!(
        "Trigger: the slowdown again, but the service refuses at once, with a 429 Too Many Requests (RateLimit), an"
    );
    println!(
        "attempt that would wait more than {} in its queue (admission control): the signal the rate limiter reacts to.\n",
        ms(admit)
    );
    let throttled = table(&throttling);
    more(&throttled, &Guard::METASTABLE);

    no_trigger();

    legend(c);
    println!("\n(ran in {:.1} s)", started.elapsed().as_secs_f64());
}
