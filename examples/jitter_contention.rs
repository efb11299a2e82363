//! The contention simulation of Marc Brooker's "Exponential Backoff And Jitter" (AWS
//! Architecture Blog, 2015; its simulator is aws-samples/aws-arch-backoff-simulator), with
//! reflexio's own strategies computing every backoff.
//!
//! ```sh
//! cargo run --release --example jitter_contention --features simulation,plots
//! ```
//!
//! N clients start at t = 0 and each makes one optimistic-concurrency update of a single row:
//! read the version, write it back; the write succeeds only if the version did not change
//! meanwhile (then it increments). Every message takes `|Normal(10 ms, 2 ms)|` one way. A client
//! whose write fails backs off and starts over (read, then write); `attempt` counts its failures
//! from 1. Base 5 ms, cap 2 s. Only writes count as calls. For N = 10, 20, ..., 190 the tables
//! average 100 seeded runs: total calls, and completion time (the time of the last successful
//! write). Then a few strategies of ours try to beat the best of the five at N = 100.
//!
//! It is a discrete-event simulation, message by message like the original: each backoff is
//! `Strategy::delay` of a reflexio strategy, given the `BackoffContext` a policy would give it
//! (the failure count and the previous delay). Deterministic: the same tables on every run.

#[path = "support/rng.rs"]
mod rng;

use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::path::Path;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::executor::LocalPool;
use futures::task::LocalSpawnExt;
use plotters::prelude::*;
use reflexio::strategies::{
    BackoffContext, Strategy, decorrelated_jitter, equal_jitter, exponential, full_jitter, no_delay,
};
use reflexio::testing::VirtualClock;
use reflexio::{AsyncRetryPolicy, ConcurrencyError, ErrorClass};
use rng::Rng;

/// The post's parameters.
const BASE: Duration = Duration::from_millis(5);
const CAP: Duration = Duration::from_secs(2);
const NET_MEAN: Duration = Duration::from_millis(10);
const NET_SD: Duration = Duration::from_millis(2);
const RUNS: u64 = 100;
const CLIENTS: [usize; 19] = [
    10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120, 130, 140, 150, 160, 170, 180, 190,
];
/// The challenge: beat the best of the five here, on fresh seeds too.
const CHALLENGE_N: usize = 100;
const CONFIRM_RUNS: u64 = 1000;
const CONFIRM_SEED_OFFSET: u64 = 1_000_000;

/// A named strategy.
struct Contender {
    name: String,
    strategy: Arc<dyn Strategy>,
}

fn contender(name: &str, strategy: impl Strategy + 'static) -> Contender {
    Contender {
        name: name.to_owned(),
        strategy: Arc::new(strategy),
    }
}

/// The five strategies of the post, with its parameters.
fn the_post() -> Vec<Contender> {
    vec![
        contender("none", no_delay()),
        // reflexio's `exponential()` is `min(max, base × 2^(attempt-1))`: a base of 2 × 5 ms is
        // the post's `min(cap, 5 ms × 2^attempt)`, exactly.
        contender("exponential", exponential().base(BASE * 2).max(CAP)),
        contender("full", full_jitter().base(BASE).max(CAP)),
        contender("equal", equal_jitter().base(BASE).max(CAP)),
        contender("decorrelated", decorrelated_jitter().base(BASE).max(CAP)),
    ]
}

/// `uniform(0, 2 × mean × shrink^(attempt-1))`: a backoff that *shrinks* as the client keeps
/// failing. Under pure contention every failure means another client finished, so the fewer
/// clients remain, the faster each may retry; see BENCHMARKS.md. It must know the scale of the
/// contention (`mean`), so it is tuned for one N.
fn shrinking(mean: Duration, shrink: f64) -> impl Strategy + 'static {
    move |ctx: &BackoffContext, u: f64| {
        let exponent = i32::try_from(ctx.attempt.saturating_sub(1)).unwrap_or(i32::MAX);
        mean.mul_f64(2.0 * u * shrink.powi(exponent))
    }
}

/// Our two entries, chosen by the search below (at N = 100, on the table's seeds) and shown
/// at every N in the main tables.
fn ours() -> Vec<Contender> {
    let ms = Duration::from_millis;
    vec![
        contender(
            "ours: full 80ms/300ms",
            full_jitter().base(ms(80)).max(ms(300)),
        ),
        contender("ours: shrinking 300ms×0.8", shrinking(ms(300), 0.8)),
    ]
}

/// One candidate per `(a, b)` in milliseconds, named `"{label} {a}ms/{b}ms"`.
fn family<S: Strategy + 'static>(
    label: &str,
    params: &[(u64, u64)],
    make: impl Fn(Duration, Duration) -> S,
) -> Vec<Contender> {
    let ms = Duration::from_millis;
    params
        .iter()
        .map(|&(a, b)| contender(&format!("{label} {a}ms/{b}ms"), make(ms(a), ms(b))))
        .collect()
}

/// The candidates tried at N = 100: the post's jittered strategies with other base/cap (full
/// jitter with base × 2 ≥ cap does not grow: always `uniform(0, cap)`), and shrinking backoffs.
fn candidates() -> Vec<Contender> {
    let mut out = family(
        "full",
        &[
            (20, 1000),
            (80, 500),
            (40, 300),
            (80, 300),
            (200, 400),
            (400, 800),
        ],
        |b, c| full_jitter().base(b).max(c),
    );
    out.extend(family("equal", &[(80, 1000), (40, 200)], |b, c| {
        equal_jitter().base(b).max(c)
    }));
    out.extend(family(
        "decorrelated",
        &[(40, 1000), (80, 300), (40, 200)],
        |b, c| decorrelated_jitter().base(b).max(c),
    ));
    for (mean, shrink) in [(600, 0.7), (300, 0.8), (460, 0.6)] {
        let name = format!("shrinking {mean}ms×{shrink}");
        out.push(contender(
            &name,
            shrinking(Duration::from_millis(mean), shrink),
        ));
    }
    out
}

/// What one run (or an average of runs) measured.
#[derive(Clone, Copy, Debug, Default)]
struct Outcome {
    /// Writes made by all clients.
    calls: f64,
    /// The time of the last successful write, in milliseconds.
    completion_ms: f64,
    /// Of an average: the standard errors of the two means.
    calls_se: f64,
    completion_se_ms: f64,
}

/// A message, delivered at a point in time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Message {
    /// A client's read reaches the row.
    Read { client: usize },
    /// The version read reaches the client.
    ReadReply { client: usize, version: u64 },
    /// A client's write of `version` reaches the row.
    Write { client: usize, version: u64 },
    /// The outcome of the write reaches the client.
    WriteReply { client: usize, ok: bool },
}

/// One client's retry state, as a policy keeps it for one call.
#[derive(Clone, Copy, Default)]
struct Client {
    failures: u32,
    prev_delay: Option<Duration>,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// One run: `clients` clients, all starting at t = 0, until every update is done.
fn simulate(clients: usize, strategy: &dyn Strategy, seed: u64) -> Outcome {
    let mut net = Rng::new(seed, 1);
    let mut jitter = Rng::new(seed, 2);
    let mut state = vec![Client::default(); clients];
    let mut row = 0u64;
    let mut calls = 0u64;
    let mut last_write = 0u64;
    // Ordered by delivery time, then by sending order (ties are rare: times are in ns).
    let mut queue = BinaryHeap::new();
    let mut sent = 0u64;
    let mut post = |queue: &mut BinaryHeap<_>, at: u64, message: Message| {
        queue.push(Reverse((at, sent, message)));
        sent += 1;
    };
    for client in 0..clients {
        let at = nanos(net.abs_normal(NET_MEAN, NET_SD));
        post(&mut queue, at, Message::Read { client });
    }
    while let Some(Reverse((now, _, message))) = queue.pop() {
        let hop = nanos(net.abs_normal(NET_MEAN, NET_SD));
        match message {
            Message::Read { client } => {
                let reply = Message::ReadReply {
                    client,
                    version: row,
                };
                post(&mut queue, now + hop, reply);
            }
            Message::ReadReply { client, version } => {
                post(&mut queue, now + hop, Message::Write { client, version });
            }
            Message::Write { client, version } => {
                calls += 1;
                let ok = version == row;
                if ok {
                    row += 1;
                    last_write = now;
                }
                post(&mut queue, now + hop, Message::WriteReply { client, ok });
            }
            Message::WriteReply { ok: true, .. } => {}
            Message::WriteReply { client, ok: false } => {
                let c = &mut state[client];
                c.failures += 1;
                let mut ctx = BackoffContext::new(c.failures, ErrorClass::Concurrency);
                if let Some(prev) = c.prev_delay {
                    ctx = ctx.with_prev_delay(prev);
                }
                let delay = strategy.delay(&ctx, jitter.uniform());
                c.prev_delay = Some(delay);
                post(
                    &mut queue,
                    now + hop + nanos(delay),
                    Message::Read { client },
                );
            }
        }
    }
    assert_eq!(row, clients as u64, "every client updated the row once");
    #[allow(clippy::cast_precision_loss)] // counts and ns far below 2^52
    Outcome {
        calls: calls as f64,
        completion_ms: last_write as f64 / 1e6,
        ..Outcome::default()
    }
}

/// Runs one simulation: `clients` clients with one strategy and one seed.
type Simulator = fn(usize, &Contender, u64) -> Outcome;

/// The average of `runs` runs with seeds `first_seed..` (the same seeds for every strategy).
fn average(sim: Simulator, clients: usize, c: &Contender, first_seed: u64, runs: u64) -> Outcome {
    let outcomes: Vec<Outcome> = (0..runs)
        .map(|run| sim(clients, c, (clients as u64) << 32 | (first_seed + run)))
        .collect();
    #[allow(clippy::cast_precision_loss)]
    let n = runs as f64;
    let mean_se = |pick: fn(&Outcome) -> f64| {
        let mean = outcomes.iter().map(pick).sum::<f64>() / n;
        let var = outcomes
            .iter()
            .map(|o| (pick(o) - mean).powi(2))
            .sum::<f64>()
            / (n - 1.0);
        (mean, (var / n).sqrt())
    };
    let (calls, calls_se) = mean_se(|o| o.calls);
    let (completion_ms, completion_se_ms) = mean_se(|o| o.completion_ms);
    Outcome {
        calls,
        completion_ms,
        calls_se,
        completion_se_ms,
    }
}

fn des(clients: usize, c: &Contender, seed: u64) -> Outcome {
    simulate(clients, &*c.strategy, seed)
}

/// The same clients as real `AsyncRetryPolicy` calls: spawned on a `LocalPool`, each attempt's
/// messages awaited as `VirtualClock` timers and each backoff slept by the policy on them.
fn with_policies(clients: usize, c: &Contender, seed: u64) -> Outcome {
    struct Row {
        clock: VirtualClock,
        net: RefCell<Rng>,
        version: Cell<u64>,
        calls: Cell<u64>,
        last_write: Cell<Duration>,
    }
    impl Row {
        /// One message's trip.
        async fn hop(&self) {
            let delay = self.net.borrow_mut().abs_normal(NET_MEAN, NET_SD);
            self.clock.timer(delay).await;
        }

        /// One attempt: read the version, write it back, hear the outcome.
        async fn update(&self) -> Result<(), ConcurrencyError> {
            self.hop().await;
            let seen = self.version.get();
            self.hop().await;
            self.hop().await;
            self.calls.set(self.calls.get() + 1);
            let ok = seen == self.version.get();
            if ok {
                self.version.set(seen + 1);
                self.last_write.set(self.clock.now());
            }
            self.hop().await;
            if ok {
                Ok(())
            } else {
                Err(ConcurrencyError::new("the version changed"))
            }
        }
    }

    let clock = VirtualClock::new();
    let row = Rc::new(Row {
        clock: clock.clone(),
        net: RefCell::new(Rng::new(seed, 1)),
        version: Cell::new(0),
        calls: Cell::new(0),
        last_write: Cell::new(Duration::ZERO),
    });
    let strategy = Arc::clone(&c.strategy);
    let timers = clock.clone();
    let policy: Rc<AsyncRetryPolicy<ConcurrencyError>> = Rc::new(
        AsyncRetryPolicy::builder()
            .strategy(move |ctx: &BackoffContext, u: f64| strategy.delay(ctx, u))
            .max_attempts(u32::MAX)
            .no_deadline()
            .seed(seed)
            .clock(clock.clone())
            // `move |d| timers.timer(d)` does not compile: `timer`'s future borrows the clock.
            .sleeper(move |d| {
                let clock = timers.clone();
                async move { clock.timer(d).await }
            })
            .build()
            .expect("a valid policy"),
    );
    let mut pool = LocalPool::new();
    for _ in 0..clients {
        let (row, policy) = (Rc::clone(&row), Rc::clone(&policy));
        pool.spawner()
            .spawn_local(async move {
                let out = policy.call(|| row.update()).await;
                out.expect("no attempt cap, no deadline: every update succeeds");
            })
            .expect("the pool is running");
    }
    clock.run(|| pool.run_until_stalled());
    assert_eq!(
        row.version.get(),
        clients as u64,
        "every client updated the row once"
    );
    #[allow(clippy::cast_precision_loss)]
    Outcome {
        calls: row.calls.get() as f64,
        completion_ms: row.last_write.get().as_secs_f64() * 1e3,
        ..Outcome::default()
    }
}

/// Runs `jobs` on every core (each job is independent and seeded: the order does not matter),
/// the last first: the sweeps list their largest jobs last, so no core is left with a long one
/// at the end.
fn parallel<T: Send>(jobs: usize, job: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let next = AtomicUsize::new(0);
    let results = Mutex::new((0..jobs).map(|_| None).collect::<Vec<Option<T>>>());
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let taken = next.fetch_add(1, Ordering::Relaxed);
                    if taken >= jobs {
                        break;
                    }
                    let i = jobs - 1 - taken;
                    let out = job(i);
                    results.lock().expect("no job panicked")[i] = Some(out);
                }
            });
        }
    });
    results
        .into_inner()
        .expect("no job panicked")
        .into_iter()
        .map(|r| r.expect("every job ran"))
        .collect()
}

/// The averages of every contender at every N: `rows[i].1[j]` is contender `j` at `ns[i]`.
fn sweep(
    sim: Simulator,
    ns: &[usize],
    contenders: &[Contender],
    runs: u64,
) -> Vec<(usize, Vec<Outcome>)> {
    let k = contenders.len();
    let flat = parallel(ns.len() * k, |i| {
        average(sim, ns[i / k], &contenders[i % k], 0, runs)
    });
    ns.iter()
        .enumerate()
        .map(|(i, &n)| (n, flat[i * k..(i + 1) * k].to_vec()))
        .collect()
}

/// The row of one N.
fn at_n(rows: &[(usize, Vec<Outcome>)], n: usize) -> &[Outcome] {
    &rows
        .iter()
        .find(|(m, _)| *m == n)
        .expect("N is in the table")
        .1
}

/// A Markdown table: one row per N, one column per contender.
fn print_table(
    title: &str,
    names: &[&str],
    rows: &[(usize, Vec<Outcome>)],
    pick: fn(&Outcome) -> f64,
) {
    println!("{title}\n");
    println!("| N | {} |", names.join(" | "));
    println!("|---:|{}", "---:|".repeat(names.len()));
    for (n, outcomes) in rows {
        let cells: Vec<String> = outcomes.iter().map(|o| format!("{:.0}", pick(o))).collect();
        println!("| {n} | {} |", cells.join(" | "));
    }
    println!();
}

#[allow(clippy::cast_precision_loss)] // N ≤ 1600
fn as_f64(n: usize) -> f64 {
    n as f64
}

/// The exponent `k` of the least-squares fit `calls = a × N^k` (a line on a log-log scale).
fn growth_exponent(points: &[(f64, f64)]) -> f64 {
    let n = as_f64(points.len());
    let (sx, sy) = points
        .iter()
        .fold((0.0, 0.0), |(sx, sy), (x, y)| (sx + x.ln(), sy + y.ln()));
    let (mx, my) = (sx / n, sy / n);
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (x, y) in points {
        sxy += (x.ln() - mx) * (y.ln() - my);
        sxx += (x.ln() - mx) * (x.ln() - mx);
    }
    sxy / sxx
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    println!(
        "Contention simulation of \"Exponential Backoff And Jitter\" (Brooker, AWS Architecture Blog 2015)"
    );
    println!(
        "N clients start at t = 0; each makes one optimistic-concurrency update of one row (read the version,"
    );
    println!(
        "write it back; the write fails if the version changed). Every message takes |Normal(10 ms, 2 ms)| one"
    );
    println!(
        "way. Backoff after the n-th failed write, base 5 ms, cap 2000 ms. calls = writes; completion = time of"
    );
    println!(
        "the last successful write. Each figure is the average of {RUNS} seeded runs (the same seeds for every"
    );
    println!("strategy).\n");

    let mut contenders = the_post();
    contenders.extend(ours());
    let names: Vec<&str> = contenders.iter().map(|c| c.name.as_str()).collect();
    let rows = sweep(des, &CLIENTS, &contenders, RUNS);
    print_table("Total calls (writes)", &names, &rows, |o| o.calls);
    print_table("Completion time (ms)", &names, &rows, |o| o.completion_ms);
    for n in [CHALLENGE_N, 190] {
        let at = at_n(&rows, n);
        let se: Vec<String> = names
            .iter()
            .zip(at)
            .map(|(name, o)| {
                format!(
                    "{name} ±{:.0} calls, ±{:.0} ms",
                    o.calls_se, o.completion_se_ms
                )
            })
            .collect();
        println!("Standard errors at N = {n}: {}", se.join("; "));
    }
    println!();

    growth(&contenders, &rows);
    challenge(&contenders[..5], &rows);
    cross_check(&contenders[..5], &rows);

    if std::env::args().any(|a| a == "--plot") {
        // The repository's `docs/`, next to `examples/` (this package's folder).
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).with_file_name("docs");
        for (file, title, pick) in [
            (
                "jitter-contention-calls.svg",
                "Total calls (writes)",
                (|o: &Outcome| o.calls) as fn(&Outcome) -> f64,
            ),
            (
                "jitter-contention-time.svg",
                "Completion time (ms)",
                |o: &Outcome| o.completion_ms,
            ),
        ] {
            let path = dir.join(file);
            plot(&path, title, &names, &rows, pick)?;
            println!("wrote {}", path.display());
        }
    }
    println!("(ran in {:.1} s)", started.elapsed().as_secs_f64());
    Ok(())
}

/// How the work grows with N: the fitted exponent over the table, then the local exponent
/// between larger N (fewer runs: the figures are larger and steadier).
fn growth(contenders: &[Contender], rows: &[(usize, Vec<Outcome>)]) {
    const LARGE: [usize; 4] = [190, 400, 800, 1600];
    const LARGE_RUNS: u64 = 10;
    let large = sweep(des, &LARGE, &contenders[..5], LARGE_RUNS);
    println!(
        "Growth of the work, calls ≈ a × N^k: k fitted on N = 10..190 ({RUNS} runs), then k between"
    );
    println!("larger N ({LARGE_RUNS} runs each; calls in parentheses)\n");
    println!("| strategy | k, N = 10..190 | N = 190 → 400 | 400 → 800 | 800 → 1600 |");
    println!("|---|---:|---:|---:|---:|");
    for (s, c) in contenders.iter().enumerate() {
        let points: Vec<(f64, f64)> = rows.iter().map(|(n, o)| (as_f64(*n), o[s].calls)).collect();
        print!("| {} | {:.2} |", c.name, growth_exponent(&points));
        if s < 5 {
            for w in large.windows(2) {
                let (n0, c0) = (as_f64(w[0].0), w[0].1[s].calls);
                let (n1, c1) = (as_f64(w[1].0), w[1].1[s].calls);
                print!(
                    " {:.2} ({c0:.0} → {c1:.0}) |",
                    (c1 / c0).ln() / (n1 / n0).ln()
                );
            }
        } else {
            print!(" | | |");
        }
        println!();
    }
    println!();
}

/// Tries our candidates at N = 100 against the best of the post's five, on the table's seeds,
/// then confirms on fresh seeds.
fn challenge(post: &[Contender], rows: &[(usize, Vec<Outcome>)]) {
    let at = at_n(rows, CHALLENGE_N);
    let best = |pick: fn(&Outcome) -> f64, among: &mut dyn Iterator<Item = usize>| {
        among
            .min_by(|&a, &b| pick(&at[a]).total_cmp(&pick(&at[b])))
            .expect("strategies to compare")
    };
    let calls = |o: &Outcome| o.calls;
    let time = |o: &Outcome| o.completion_ms;
    let fewest = best(calls, &mut (0..post.len()));
    let soonest = best(time, &mut (0..post.len()));
    // The post's own comparison leaves out "none": the best time among the backoffs.
    let soonest_backoff = best(time, &mut (1..post.len()));
    println!(
        "Challenge at N = {CHALLENGE_N}: fewest calls {} ({:.0}); soonest completion {} ({:.0} ms), among the \
         backoffs {} ({:.0} ms)\n",
        post[fewest].name,
        at[fewest].calls,
        post[soonest].name,
        at[soonest].completion_ms,
        post[soonest_backoff].name,
        at[soonest_backoff].completion_ms,
    );
    let candidates = candidates();
    let tried = parallel(candidates.len(), |i| {
        average(des, CHALLENGE_N, &candidates[i], 0, RUNS)
    });
    let beats = |o: &Outcome, time_to_beat: f64| {
        o.calls < at[fewest].calls && o.completion_ms < time_to_beat
    };
    println!(
        "| candidate | calls | completion (ms) | fewer calls than {} and sooner than {}? | … and sooner than {}? |",
        post[fewest].name, post[soonest_backoff].name, post[soonest].name
    );
    println!("|---|---:|---:|---|---|");
    let yes = |b: bool| if b { "yes" } else { "no" };
    for (c, o) in candidates.iter().zip(&tried) {
        println!(
            "| {} | {:.0} | {:.0} | {} | {} |",
            c.name,
            o.calls,
            o.completion_ms,
            yes(beats(o, at[soonest_backoff].completion_ms)),
            yes(beats(o, at[soonest].completion_ms)),
        );
    }
    println!();

    // Fresh seeds: the chosen candidates may have been lucky on the table's seeds.
    let mut confirm: Vec<&Contender> = vec![&post[fewest], &post[soonest_backoff], &post[soonest]];
    let ours = ours();
    confirm.extend(ours.iter());
    let fresh = parallel(confirm.len(), |i| {
        average(
            des,
            CHALLENGE_N,
            confirm[i],
            CONFIRM_SEED_OFFSET,
            CONFIRM_RUNS,
        )
    });
    println!("Confirmation at N = {CHALLENGE_N} on {CONFIRM_RUNS} fresh seeds\n");
    println!("| strategy | calls | completion (ms) |");
    println!("|---|---:|---:|");
    for (c, o) in confirm.iter().zip(&fresh) {
        println!(
            "| {} | {:.0} ± {:.0} | {:.0} ± {:.0} |",
            c.name, o.calls, o.calls_se, o.completion_ms, o.completion_se_ms
        );
    }
    println!("(± one standard error of the mean)");
    println!();
}

/// The same N = 100 runs with the clients as real `AsyncRetryPolicy` calls on a `VirtualClock`:
/// the figures must agree with the event simulation's within the noise of 100 runs.
fn cross_check(post: &[Contender], rows: &[(usize, Vec<Outcome>)]) {
    let at = at_n(rows, CHALLENGE_N);
    let policies = parallel(post.len(), |i| {
        average(with_policies, CHALLENGE_N, &post[i], 0, RUNS)
    });
    println!(
        "Cross-check at N = {CHALLENGE_N}: the clients as AsyncRetryPolicy calls on a VirtualClock ({RUNS} runs)\n"
    );
    println!(
        "| strategy | calls (events) | calls (policies) | completion ms (events) | completion ms (policies) |"
    );
    println!("|---|---:|---:|---:|---:|");
    for (s, c) in post.iter().enumerate() {
        let (e, p) = (&at[s], &policies[s]);
        println!(
            "| {} | {:.0} ± {:.0} | {:.0} ± {:.0} | {:.0} ± {:.0} | {:.0} ± {:.0} |",
            c.name,
            e.calls,
            e.calls_se,
            p.calls,
            p.calls_se,
            e.completion_ms,
            e.completion_se_ms,
            p.completion_ms,
            p.completion_se_ms
        );
    }
    println!("(± one standard error of the mean; the two use different random streams)");
    println!();
}

/// A log-log chart of one figure against N, every contender a line.
fn plot(
    path: &Path,
    title: &str,
    names: &[&str],
    rows: &[(usize, Vec<Outcome>)],
    pick: fn(&Outcome) -> f64,
) -> Result<(), Box<dyn std::error::Error>> {
    let values = rows.iter().flat_map(|(_, o)| o.iter().map(pick));
    let (lo, hi) = values.fold((f64::MAX, 0.0_f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let root = SVGBackend::new(path, (760, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{title}, average of {RUNS} runs (log-log)"),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d((8.0..200.0).log_scale(), (lo * 0.8..hi * 1.25).log_scale())?;
    chart
        .configure_mesh()
        .light_line_style(WHITE.mix(0.0))
        .x_desc("clients N")
        .y_desc(title)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()?;
    let palette = [
        RGBColor(120, 120, 120),
        RGBColor(214, 96, 77),
        RGBColor(0, 114, 178),
        RGBColor(230, 159, 0),
        RGBColor(0, 158, 115),
        RGBColor(204, 121, 167),
        RGBColor(86, 180, 233),
    ];
    for (s, name) in names.iter().enumerate() {
        let color = palette[s % palette.len()];
        let points: Vec<(f64, f64)> = rows
            .iter()
            .map(|(n, o)| (as_f64(*n), pick(&o[s])))
            .collect();
        let dashed = s >= 5;
        chart
            .draw_series(LineSeries::new(
                points.clone(),
                color.stroke_width(if dashed { 1 } else { 2 }),
            ))?
            .label(*name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
        chart.draw_series(
            points
                .into_iter()
                .map(move |p| Circle::new(p, 2, color.filled())),
        )?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()?;
    root.present()?;
    Ok(())
}
