//! Draws every backoff strategy as an SVG under `docs/`: its envelope per attempt (the delay with
//! `u = 0`, the lower bound, and with `u → 1`, the upper bound) and the delays of a few seeded
//! runs of a real policy on a virtual clock.
//!
//! ```sh
//! cargo run --example plot_strategies --features plots
//! ```
//!
//! The output is deterministic (fixed seeds), so the committed SVGs only change when a strategy
//! does.

use std::path::{Path, PathBuf};
use std::time::Duration;

use plotters::prelude::*;
use reflexio::strategies::{
    BackoffContext, Strategy, constant, decorrelated_jitter, equal_jitter, exponential,
    full_jitter, token_backoff,
};
use reflexio::testing::VirtualClock;
use reflexio::{ErrorClass, RetryPolicy, TransientError};

/// Attempts drawn on the x axis: the delay after attempt 1, 2, ..., `ATTEMPTS`.
const ATTEMPTS: u32 = 12;
/// Seeded runs drawn as samples.
const SEEDS: [u64; 4] = [1, 2, 3, 4];
/// The largest `u` below 1 that `f64` has: the upper bound of the envelope.
const U_MAX: f64 = 1.0 - f64::EPSILON / 2.0;

struct Plot {
    file: &'static str,
    title: &'static str,
    strategy: Box<dyn Fn() -> Box<dyn Strategy>>,
}

fn plots() -> Vec<Plot> {
    fn boxed<S: Strategy + Copy + 'static>(s: S) -> Box<dyn Fn() -> Box<dyn Strategy>> {
        Box::new(move || Box::new(s))
    }
    vec![
        Plot {
            file: "strategy-decorrelated-jitter.svg",
            title: "decorrelated_jitter() (the default: base 250 ms, max 30 s)",
            strategy: boxed(decorrelated_jitter()),
        },
        Plot {
            file: "strategy-full-jitter.svg",
            title: "full_jitter() (base 250 ms, max 30 s)",
            strategy: boxed(full_jitter()),
        },
        Plot {
            file: "strategy-equal-jitter.svg",
            title: "equal_jitter() (base 250 ms, max 30 s)",
            strategy: boxed(equal_jitter()),
        },
        Plot {
            file: "strategy-token-backoff.svg",
            title: "token_backoff() (base 250 ms, x1.5, max 20 s)",
            strategy: boxed(token_backoff()),
        },
        Plot {
            file: "strategy-exponential.svg",
            title: "exponential() (base 250 ms, x2, max 30 s, no jitter)",
            strategy: boxed(exponential()),
        },
        Plot {
            file: "strategy-constant.svg",
            title: "constant(2 s)",
            strategy: boxed(constant(Duration::from_secs(2))),
        },
    ]
}

/// The delays after attempts `1..=ATTEMPTS` when every random number is `u`, each attempt
/// seeing the previous delay (which decorrelated jitter grows from).
fn envelope(strategy: &dyn Strategy, u: f64) -> Vec<f64> {
    let mut prev = None;
    (1..=ATTEMPTS)
        .map(|attempt| {
            let mut ctx = BackoffContext::new(attempt, ErrorClass::Transient);
            if let Some(p) = prev {
                ctx = ctx.with_prev_delay(p);
            }
            let d = strategy.delay(&ctx, u);
            prev = Some(d);
            d.as_secs_f64()
        })
        .collect()
}

/// The delays a real policy sleeps, on a virtual clock, for an operation that always fails.
fn sample(plot: &Plot, seed: u64) -> Vec<f64> {
    let clock = VirtualClock::new();
    let strategy = (plot.strategy)();
    let policy = RetryPolicy::builder()
        .strategy(move |ctx: &BackoffContext, u: f64| strategy.delay(ctx, u))
        .max_attempts(ATTEMPTS + 1)
        .no_deadline()
        .seed(seed)
        .clock(clock.clone())
        .build()
        .expect("a valid policy");
    let out: Result<(), _> = policy.call(|| Err(TransientError::new("down")));
    assert!(out.is_err());
    clock.sleeps().iter().map(Duration::as_secs_f64).collect()
}

fn draw(plot: &Plot, dir: &Path) -> Result<PathBuf, Box<dyn std::error::Error>> {
    let strategy = (plot.strategy)();
    let lower = envelope(&*strategy, 0.0);
    let upper = envelope(&*strategy, U_MAX);
    let samples: Vec<Vec<f64>> = SEEDS.iter().map(|&seed| sample(plot, seed)).collect();
    let y_max = upper
        .iter()
        .chain(samples.iter().flatten())
        .fold(0.0_f64, |a, &b| a.max(b))
        * 1.1;

    let path = dir.join(plot.file);
    let root = SVGBackend::new(&path, (720, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(plot.title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(0.5f64..f64::from(ATTEMPTS) + 0.5, 0.0..y_max.max(0.1))?;
    chart
        .configure_mesh()
        .x_desc("after attempt n")
        .y_desc("delay (s)")
        .x_labels(ATTEMPTS as usize)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.1}"))
        .light_line_style(WHITE.mix(0.0))
        .draw()?;

    let xs = || (1..=ATTEMPTS).map(f64::from);
    let band = RGBColor(70, 130, 180);
    let mut area: Vec<(f64, f64)> = xs().zip(upper.iter().copied()).collect();
    let mut bottom: Vec<(f64, f64)> = xs().zip(lower.iter().copied()).collect();
    bottom.reverse();
    area.extend(bottom);
    chart.draw_series(std::iter::once(Polygon::new(area, band.mix(0.18))))?;
    chart
        .draw_series(LineSeries::new(
            xs().zip(upper.iter().copied()),
            band.stroke_width(2),
        ))?
        .label("upper bound (u → 1)")
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], band.stroke_width(2)));
    let dark = RGBColor(25, 60, 100);
    chart
        .draw_series(LineSeries::new(
            xs().zip(lower.iter().copied()),
            dark.stroke_width(2),
        ))?
        .label("lower bound (u = 0)")
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], dark.stroke_width(2)));

    let palette = [
        RGBColor(214, 96, 77),
        RGBColor(230, 159, 0),
        RGBColor(0, 158, 115),
        RGBColor(204, 121, 167),
    ];
    for (i, run) in samples.iter().enumerate() {
        let color = palette[i % palette.len()];
        let points: Vec<(f64, f64)> = xs().zip(run.iter().copied()).collect();
        chart.draw_series(LineSeries::new(points.clone(), color.mix(0.5)))?;
        let series = chart.draw_series(
            points
                .into_iter()
                .map(move |p| Circle::new(p, 3, color.filled())),
        )?;
        if i == 0 {
            series
                .label(format!("{} seeded runs of a policy", SEEDS.len()))
                .legend(move |(x, y)| Circle::new((x + 10, y), 3, color.filled()));
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()?;
    root.present()?;
    drop(chart);
    drop(root);
    Ok(path)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The repository's `docs/`, next to `examples/` (this package's folder).
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).with_file_name("docs");
    std::fs::create_dir_all(&dir)?;
    for plot in plots() {
        let path = draw(&plot, &dir)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
