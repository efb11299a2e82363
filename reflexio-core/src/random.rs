//! The random numbers of jittered delays.
//!
//! Unseeded policies draw from this thread's `SplitMix64` stream (`rand_xoshiro`'s: a named,
//! documented, value-stable algorithm), started at a random point: nothing shared between
//! threads to contend on, no per-call seeding. A seeded policy gives each call its own stream,
//! from the seed and the call's number, so a run repeats exactly. A policy can also be handed
//! any generator of the `rand` family (`rand_core::Rng`): every draw of every call then comes
//! from it, in order, which is what deterministic simulators (turmoil, madsim) need.

use core::cell::Cell;
use core::fmt;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use rand_core::{Rng, SeedableRng};
use rand_xoshiro::SplitMix64;

/// A generator a user gave the policy, shared by its calls.
pub(crate) type SharedRng = Arc<Mutex<dyn Rng + Send>>;

/// Where a policy's random numbers come from.
#[derive(Clone, Default)]
pub(crate) enum Randomness {
    /// This thread's stream.
    #[default]
    Thread,
    /// One stream per call, from the seed and the call's number (counted by the policy and
    /// its clones).
    Seeded(u64, Arc<AtomicU64>),
    /// The user's generator.
    User(SharedRng),
}

impl fmt::Debug for Randomness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Randomness::Thread => f.write_str("Thread"),
            Randomness::Seeded(seed, _) => f.debug_tuple("Seeded").field(seed).finish(),
            Randomness::User(_) => f.write_str("User"),
        }
    }
}

/// The random stream of one call of a seeded policy: its `SplitMix64` state, 0 until the
/// call's first draw makes it (or, once in 2^64 draws, a state that wrapped to 0: the stream
/// is then made again, from the policy's next call number). Not an `Option`: the engine that
/// holds it lives in every async call's future, and the `Option` took 8 bytes more.
pub(crate) type CallRng = u64;

thread_local! {
    /// The state of this thread's stream; 0 until its first use. Initialised by a constant,
    /// so reading it is a plain thread-local load (a lazy initialiser would be a call and a
    /// check on every read).
    static THREAD_STATE: Cell<u64> = const { Cell::new(0) };
}

impl Randomness {
    /// A seeded source: each call's stream from `seed` and the call's number.
    pub(crate) fn seeded(seed: u64) -> Self {
        Randomness::Seeded(seed, Arc::new(AtomicU64::new(0)))
    }

    /// A uniform number in `[0, 1)`, from this call's stream `rng` when seeded.
    #[inline]
    pub(crate) fn uniform(&self, rng: &mut CallRng) -> f64 {
        let bits = match self {
            Randomness::Thread => THREAD_STATE.with(|state| {
                let start = match state.get() {
                    // This thread's first draw (or, once in 2^64, a state that wrapped to 0).
                    0 => RandomState::new().hash_one(0_u64),
                    s => s,
                };
                let mut stream = SplitMix64::seed_from_u64_exact(start);
                let bits = stream.next_u64();
                state.set(u64::from_le_bytes(stream.state()));
                bits
            }),
            Randomness::Seeded(seed, calls) => {
                let state = match *rng {
                    0 => {
                        let call = calls.fetch_add(1, Ordering::Relaxed);
                        seed ^ SplitMix64::seed_from_u64_exact(call).next_u64()
                    }
                    state => state,
                };
                let mut stream = SplitMix64::seed_from_u64_exact(state);
                let bits = stream.next_u64();
                *rng = u64::from_le_bytes(stream.state());
                bits
            }
            Randomness::User(user) => user
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .next_u64(),
        };
        unit(bits)
    }
}

/// A stream whose state is exactly `state` (`seed_from_u64` would mix it first).
trait Exact {
    fn seed_from_u64_exact(state: u64) -> Self;
}

impl Exact for SplitMix64 {
    #[inline]
    fn seed_from_u64_exact(state: u64) -> Self {
        SplitMix64::from_seed(state.to_le_bytes())
    }
}

/// The top 53 bits of `bits` as a uniform number in `[0, 1)`: 53 bits fit an `f64` exactly, and
/// `2^-53` scales them, exactly, in one multiply.
#[inline]
fn unit(bits: u64) -> f64 {
    const TWO_POW_MINUS_53: f64 = f64::EPSILON / 2.0;
    #[allow(clippy::cast_precision_loss)] // 53 bits: exact
    let x = (bits >> 11) as f64;
    x * TWO_POW_MINUS_53
}

#[cfg(test)]
#[allow(
    clippy::float_cmp,
    reason = "exact draws: the same bits give the same float"
)]
mod tests {
    use super::*;

    /// The published `SplitMix64` reference outputs (Vigna's `splitmix64.c`, seed 1234567):
    /// seeded sequences depend on exactly this algorithm.
    #[test]
    fn the_stream_is_splitmix64() {
        let mut s = SplitMix64::seed_from_u64_exact(1_234_567);
        let first: Vec<u64> = (0..3).map(|_| s.next_u64()).collect();
        assert_eq!(
            first,
            [
                6_457_827_717_110_365_317,
                3_203_168_211_198_807_973,
                9_817_491_932_198_370_423
            ]
        );
    }

    #[test]
    fn seeded_calls_get_their_own_reproducible_streams() {
        let draw = |r: &Randomness| {
            let mut a: CallRng = 0;
            let mut b: CallRng = 0;
            [r.uniform(&mut a), r.uniform(&mut a), r.uniform(&mut b)]
        };
        let (x, y) = (draw(&Randomness::seeded(7)), draw(&Randomness::seeded(7)));
        assert_eq!(x, y);
        assert_ne!(x[0], x[2], "two calls share a stream");
        assert!(x.iter().all(|u| (0.0..1.0).contains(u)));
    }

    #[test]
    fn a_user_generator_gives_every_draw_in_order() {
        struct Counter(u64);
        impl rand_core::TryRng for Counter {
            type Error = core::convert::Infallible;
            fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
                unreachable!("only 64-bit draws are made")
            }
            fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
                self.0 += 1 << 62;
                Ok(self.0)
            }
            fn try_fill_bytes(&mut self, _: &mut [u8]) -> Result<(), Self::Error> {
                unreachable!("only 64-bit draws are made")
            }
        }
        let r = Randomness::User(Arc::new(Mutex::new(Counter(0))));
        let (mut a, mut b): (CallRng, CallRng) = (0, 0);
        assert_eq!(
            [r.uniform(&mut a), r.uniform(&mut b), r.uniform(&mut a)],
            [0.25, 0.5, 0.75]
        );
    }

    #[test]
    fn thread_draws_are_uniform_enough() {
        let r = Randomness::Thread;
        let mut none: CallRng = 0;
        let n = 10_000;
        let below_half = (0..n).filter(|_| r.uniform(&mut none) < 0.5).count();
        assert!((4_500..5_500).contains(&below_half), "{below_half}");
    }
}
