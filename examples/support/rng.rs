//! A tiny seeded random number generator for the simulations: `SplitMix64` (Steele, Lea and
//! Flood 2014) with uniform, normal (Box–Muller) and exponential draws. The same seed gives the
//! same numbers on every platform, so the simulations print the same tables on every run.
#![allow(dead_code)] // each simulation uses a different subset

use std::time::Duration;

/// A seeded `SplitMix64` generator.
#[derive(Clone, Debug)]
pub(crate) struct Rng {
    state: u64,
    /// The second normal draw of the last Box–Muller pair.
    spare_normal: Option<f64>,
}

impl Rng {
    /// A generator for `seed`; `stream` separates generators made from the same seed.
    pub(crate) fn new(seed: u64, stream: u64) -> Self {
        let mut mix = Rng {
            state: seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03),
            spare_normal: None,
        };
        Rng {
            state: mix.next_u64(),
            spare_normal: None,
        }
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`, with 53 random bits.
    pub(crate) fn uniform(&mut self) -> f64 {
        #[allow(clippy::cast_precision_loss)] // 53 bits fit an f64 exactly
        let x = (self.next_u64() >> 11) as f64;
        x * f64::EPSILON / 2.0
    }

    /// A standard normal draw (Box–Muller: each pair of uniforms gives two).
    pub(crate) fn standard_normal(&mut self) -> f64 {
        if let Some(z) = self.spare_normal.take() {
            return z;
        }
        let u1 = 1.0 - self.uniform(); // (0, 1]: ln is finite
        let u2 = self.uniform();
        let r = (-2.0 * u1.ln()).sqrt();
        let (sin, cos) = (std::f64::consts::TAU * u2).sin_cos();
        self.spare_normal = Some(r * sin);
        r * cos
    }

    /// `|Normal(mean, sd)|`, the network delay of the AWS simulator.
    pub(crate) fn abs_normal(&mut self, mean: Duration, sd: Duration) -> Duration {
        let x = mean.as_secs_f64() + sd.as_secs_f64() * self.standard_normal();
        Duration::from_secs_f64(x.abs())
    }

    /// An exponential draw with the given mean (the gaps of a Poisson process).
    pub(crate) fn exponential(&mut self, mean: Duration) -> Duration {
        let u = 1.0 - self.uniform(); // (0, 1]
        Duration::from_secs_f64(-mean.as_secs_f64() * u.ln())
    }
}
