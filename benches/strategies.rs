//! Strategies: nanoseconds per delay computation. Each iteration computes the delays after
//! attempts 1 to 4 (the retries of a 5-attempt policy), drawing the random number as the engine
//! does (`SplitMix64`). The peers' backoffs are stateful iterators, built per call as their retry
//! loops build them, so their rows include that construction. Run with
//! `cargo bench --bench strategies`; divide by 4 for one delay.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use reflexio::ErrorClass;
use reflexio::strategies::{
    BackoffContext, Strategy, constant, decorrelated_jitter, equal_jitter, exponential,
    full_jitter, no_delay, token_backoff,
};

const BASE: Duration = Duration::from_millis(100);
const MAX: Duration = Duration::from_secs(10);
const RETRIES: u32 = 4;

/// `SplitMix64`, as the engine draws `u` (a copy: the engine's is private).
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        #[allow(clippy::cast_precision_loss)]
        let x = (z >> 11) as f64;
        x * f64::EPSILON / 2.0
    }
}

/// The delays after attempts 1 to 4 of one call, through `&dyn Strategy` as the engine calls
/// it, with each delay fed back as `prev_delay` (decorrelated jitter uses it).
fn four_delays(strategy: &dyn Strategy, rng: &mut SplitMix64) -> Duration {
    let mut total = Duration::ZERO;
    let mut prev = None;
    for attempt in 1..=RETRIES {
        let mut ctx = BackoffContext::new(attempt, ErrorClass::Transient);
        ctx.prev_delay = prev;
        let d = strategy.delay(black_box(&ctx), rng.next_f64());
        prev = Some(d);
        total += d;
    }
    total
}

fn strategies(c: &mut Criterion) {
    let mut g = c.benchmark_group("strategies_4_delays");
    let ours: [(&str, Box<dyn Strategy>); 7] = [
        (
            "reflexio decorrelated_jitter",
            Box::new(decorrelated_jitter().base(BASE).max(MAX)),
        ),
        (
            "reflexio equal_jitter",
            Box::new(equal_jitter().base(BASE).max(MAX)),
        ),
        (
            "reflexio full_jitter",
            Box::new(full_jitter().base(BASE).max(MAX)),
        ),
        (
            "reflexio token_backoff",
            Box::new(token_backoff().base(BASE).max(MAX)),
        ),
        (
            "reflexio exponential",
            Box::new(exponential().base(BASE).max(MAX)),
        ),
        ("reflexio constant", Box::new(constant(BASE))),
        ("reflexio no_delay", Box::new(no_delay())),
    ];
    let mut rng = SplitMix64(0x5EED);
    for (name, strategy) in &ours {
        g.bench_function(*name, |b| b.iter(|| four_delays(&**strategy, &mut rng)));
    }

    let builder = backon::ExponentialBuilder::new()
        .with_jitter()
        .with_min_delay(BASE)
        .with_max_delay(MAX)
        .with_max_times(4);
    g.bench_function("backon ExponentialBuilder (with_jitter)", |b| {
        use backon::BackoffBuilder;
        b.iter(|| black_box(builder).build().sum::<Duration>());
    });

    let proto = backoff::ExponentialBackoffBuilder::new()
        .with_initial_interval(BASE)
        .with_max_interval(MAX)
        .with_max_elapsed_time(Some(Duration::from_secs(60)))
        .build();
    g.bench_function("backoff ExponentialBackoff", |b| {
        use backoff::backoff::Backoff;
        b.iter(|| {
            let mut backoff = black_box(&proto).clone();
            backoff.reset();
            (0..RETRIES)
                .filter_map(|_| backoff.next_backoff())
                .sum::<Duration>()
        });
    });

    g.bench_function("tokio-retry ExponentialBackoff + jitter", |b| {
        use tokio_retry::strategy::{ExponentialBackoff, jitter};
        b.iter(|| {
            ExponentialBackoff::from_millis(black_box(2))
                .factor(50)
                .max_delay(MAX)
                .map(jitter)
                .take(4)
                .sum::<Duration>()
        });
    });

    g.bench_function("retry Exponential + jitter", |b| {
        b.iter(|| {
            retry::delay::Exponential::from_millis(black_box(100))
                .map(retry::delay::jitter)
                .take(4)
                .sum::<Duration>()
        });
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = strategies
}
criterion_main!(benches);
