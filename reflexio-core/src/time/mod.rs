//! Time: the clock and sleeper of a policy ([`TimeSource`], [`Stamp`]), the clock of shared
//! structures ([`SharedClock`], in `shared.rs`), and the [`VirtualClock`] of tests and
//! simulations (`virtual_clock.rs`, public as `reflexio::testing::VirtualClock`).

mod shared;
mod timer;
mod virtual_clock;

pub(crate) use shared::{SharedClock, saturating_nanos};
pub use timer::{TimedAttempt, Timer};
pub use virtual_clock::VirtualClock;

use core::time::Duration;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// A point in time on the clock of the policy that stamped it (which knows which clock that
/// is): an `Instant` of std or tokio (a tokio `Instant` is a std one), or the nanoseconds of
/// the coarse clock since boot or of a virtual clock since its start. 16 bytes, as is an
/// `Option` of it (the enum's tag lives in the `Instant`'s niche): every async call's future
/// holds one. Nanoseconds are exact for 584 years: a virtual clock moved further than that
/// before a call stamps it at the saturated value, and that call's deadline is then not
/// counted (`tests/policy_sync.rs` checks one 500 years along).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Stamp {
    #[cfg_attr(
        all(
            feature = "coarse-clock",
            target_os = "linux",
            not(feature = "futures-timer")
        ),
        allow(dead_code, reason = "every clock of this build counts in nanoseconds")
    )]
    Instant(std::time::Instant),
    Nanos(u64),
}

/// The clock of policies that sleep on the thread or on their own timer: Linux's
/// `CLOCK_MONOTONIC_COARSE`, read through the vDSO without a system call and without reading
/// the hardware counter (3 ns on the machine issue 13 measured, 5 to 9 ns on the VM of
/// `BENCHMARKS.md`, where `Instant::now()`, the fine monotonic clock, takes 25 to 30 ns). Its resolution is the kernel's tick (1-4 ms, from
/// `clock_getres`): a deadline of seconds needs no more. Elapsed times are rounded *up* by one
/// tick, and a retry that the coarse clock schedules within a second of the deadline is
/// checked again on the fine clock (the coarse one lags by a tick, and by more on a loaded
/// virtual machine: 8-20 ms seen), so the deadline's promise holds as stated (no attempt starts
/// at or after it, no sleep reaches into it); a policy may stop up to one tick early, never
/// late.
#[cfg(all(feature = "coarse-clock", target_os = "linux"))]
pub(crate) mod coarse {
    use core::time::Duration;
    use std::sync::OnceLock;

    use rustix::time::{ClockId, Timespec};

    fn duration(t: Timespec) -> Duration {
        // A monotonic clock is never negative; `try_from` keeps that an assumption checked.
        Duration::new(
            u64::try_from(t.tv_sec).unwrap_or(0),
            u32::try_from(t.tv_nsec).unwrap_or(0),
        )
    }

    /// The time since boot, on the coarse clock.
    #[cfg(test)]
    pub(crate) fn now() -> Duration {
        duration(rustix::time::clock_gettime(ClockId::MonotonicCoarse))
    }

    /// [`now`] in nanoseconds (584 years of uptime fit).
    #[inline]
    pub(crate) fn now_nanos() -> u64 {
        let t = rustix::time::clock_gettime(ClockId::MonotonicCoarse);
        // A monotonic reading is never negative and its nanoseconds are below 10⁹, so plain
        // casts and arithmetic give what checked conversions and saturating arithmetic would,
        // for 584 years of uptime; the checks took 17 instructions a read, these 2 (every
        // failure of a call with a deadline reads the clock).
        #[allow(
            clippy::cast_sign_loss,
            reason = "never negative: a monotonic clock counts from boot"
        )]
        let (secs, nanos) = (t.tv_sec as u64, t.tv_nsec as u64);
        secs.wrapping_mul(1_000_000_000).wrapping_add(nanos)
    }

    /// The time since boot on the fine monotonic clock (`CLOCK_MONOTONIC`, the coarse
    /// clock's own timeline, read from the hardware counter): for the deadline's checks near
    /// its end, where the coarse clock's lag matters.
    #[inline]
    pub(crate) fn fine_now() -> Duration {
        duration(rustix::time::clock_gettime(ClockId::Monotonic))
    }

    /// The clock's resolution (the kernel tick), read once.
    pub(crate) fn resolution() -> Duration {
        static RESOLUTION: OnceLock<Duration> = OnceLock::new();
        *RESOLUTION.get_or_init(|| duration(rustix::time::clock_getres(ClockId::MonotonicCoarse)))
    }
}

/// A boxed sleep future, for custom async sleepers.
pub(crate) type BoxSleep = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// A custom async sleeper.
pub(crate) type CustomSleeper = Arc<dyn Fn(Duration) -> BoxSleep + Send + Sync>;

/// The clock and the sleeper of a policy.
#[derive(Clone)]
pub(crate) enum TimeSource {
    /// The coarse clock (`coarse-clock`, Linux; else `std::time::Instant`) and
    /// `std::thread::sleep`.
    Blocking,
    /// `tokio::time::Instant`, and `tokio::time::sleep` inside a tokio runtime, so
    /// `tokio::time::pause()` works, else `futures_timer::Delay` (see [`TimeSource::sleep`]).
    /// Outside a runtime, tokio's `Instant::now()` is `std::time::Instant::now()`.
    #[cfg(feature = "tokio")]
    Tokio,
    /// `std::time::Instant` and `futures_timer::Delay`, which works on any executor: the
    /// default of the async policy when the `tokio` feature is off.
    #[cfg(feature = "futures-timer")]
    #[cfg_attr(feature = "tokio", allow(dead_code))] // tokio is preferred when both are on
    FuturesTimer,
    /// A user's sleeper, timed like `Blocking`.
    Custom(CustomSleeper),
    /// A user's sleeper, timed on a virtual clock: for simulations where many calls run
    /// concurrently in virtual time (sleep with [`VirtualClock::timer`]).
    Simulated(CustomSleeper, VirtualClock),
    /// The test clock: sleeping advances it at once.
    Virtual(VirtualClock),
}

impl TimeSource {
    /// The async policy's source when neither `.clock(..)` nor `.sleeper(..)` is set: tokio's
    /// timer with the `tokio` feature (so `tokio::time::pause()` works; `futures-timer` outside
    /// a tokio runtime), else `futures-timer` with that feature, else none.
    #[cfg(feature = "tokio")]
    #[allow(clippy::unnecessary_wraps)] // `None` when no timer feature is on
    pub(crate) fn default_async() -> Option<TimeSource> {
        Some(TimeSource::Tokio)
    }

    #[cfg(all(not(feature = "tokio"), feature = "futures-timer"))]
    #[allow(clippy::unnecessary_wraps)] // the same signature as the other two
    pub(crate) fn default_async() -> Option<TimeSource> {
        Some(TimeSource::FuturesTimer)
    }

    #[cfg(not(any(feature = "tokio", feature = "futures-timer")))]
    pub(crate) fn default_async() -> Option<TimeSource> {
        None
    }

    pub(crate) fn now(&self) -> Stamp {
        match self {
            #[cfg(all(feature = "coarse-clock", target_os = "linux"))]
            TimeSource::Blocking | TimeSource::Custom(_) => Stamp::Nanos(coarse::now_nanos()),
            #[cfg(not(all(feature = "coarse-clock", target_os = "linux")))]
            TimeSource::Blocking | TimeSource::Custom(_) => {
                Stamp::Instant(std::time::Instant::now())
            }
            #[cfg(feature = "futures-timer")]
            TimeSource::FuturesTimer => Stamp::Instant(std::time::Instant::now()),
            #[cfg(feature = "tokio")]
            TimeSource::Tokio => Stamp::Instant(tokio::time::Instant::now().into_std()),
            TimeSource::Virtual(clock) | TimeSource::Simulated(_, clock) => {
                Stamp::Nanos(saturating_nanos(clock.now()))
            }
        }
    }

    /// Whether this source reads the coarse clock, whose times [`since`](Self::since) rounds
    /// up.
    #[inline]
    pub(crate) fn is_coarse(&self) -> bool {
        cfg!(all(feature = "coarse-clock", target_os = "linux"))
            && matches!(self, TimeSource::Blocking | TimeSource::Custom(_))
    }

    /// The amount [`since`](Self::since) adds to a measured time to round it up: the coarse
    /// clock's resolution for its stamps, zero for the others.
    pub(crate) fn rounding(&self) -> Duration {
        #[cfg(all(feature = "coarse-clock", target_os = "linux"))]
        if self.is_coarse() {
            return coarse::resolution();
        }
        Duration::ZERO
    }

    /// The time since `start`, exactly, whatever clock stamped it: for a coarse stamp, the fine
    /// clock's time since it (the coarse clock runs behind the fine one on the same timeline,
    /// so this is never less than the real time since `start`); for any other, [`since`].
    ///
    /// [`since`]: Self::since
    pub(crate) fn since_exactly(&self, start: Stamp) -> Duration {
        #[cfg(all(feature = "coarse-clock", target_os = "linux"))]
        if let (true, Stamp::Nanos(start)) = (self.is_coarse(), start) {
            return coarse::fine_now().saturating_sub(Duration::from_nanos(start));
        }
        self.since(start)
    }

    /// How near the deadline a retry may be scheduled by this source's clock before it is
    /// confirmed on the fine clock: a second for the coarse clock, which lags the real time by
    /// a kernel tick (1-4 ms), and by more on a loaded virtual machine (8-20 ms seen); zero for
    /// the exact clocks.
    pub(crate) fn deadline_guard(&self) -> Duration {
        match self {
            #[cfg(all(feature = "coarse-clock", target_os = "linux"))]
            TimeSource::Blocking | TimeSource::Custom(_) => Duration::from_secs(1),
            _ => Duration::ZERO,
        }
    }

    /// Time elapsed since `start`, which this same source stamped.
    pub(crate) fn since(&self, start: Stamp) -> Duration {
        match (self.now(), start) {
            (Stamp::Instant(now), Stamp::Instant(start)) => now.saturating_duration_since(start),
            (Stamp::Nanos(now), Stamp::Nanos(start)) => {
                Duration::from_nanos(now.saturating_sub(start)).saturating_add(self.rounding())
            }
            // A stamp from another source cannot happen: a policy's source never changes.
            _ => Duration::ZERO,
        }
    }

    /// Sleeps by blocking the thread (the sync policy); not at all for a zero delay (a system
    /// call for nothing).
    #[inline]
    pub(crate) fn sleep_blocking(&self, delay: Duration) {
        if delay.is_zero() {
            return;
        }
        match self {
            TimeSource::Virtual(clock) => clock.sleep(delay),
            _ => std::thread::sleep(delay),
        }
    }

    /// Sleeps asynchronously (the async policy): the [`Timer`] of a sleep of `delay`, started
    /// now. Held inline: no allocation except for a custom sleeper, which returns a boxed
    /// future, and `futures-timer`'s delay.
    ///
    /// A zero delay is not slept: no timer is made (tokio's would round it up to a
    /// millisecond). A virtual clock moves at once (the sleep is recorded now, and the timer
    /// has elapsed).
    ///
    /// The tokio source looks for a runtime at each sleep, not when the policy is built: one
    /// policy serves tokio tasks and plain executors alike, and tokio's timer, the one
    /// `tokio::time::pause()` controls, is used whenever there is a runtime to drive it. Without
    /// one, `tokio::time::sleep` would panic, so the sleep goes to `futures-timer` instead: it
    /// needs no runtime (one helper thread, started on first use, fires its timers), has no
    /// dependencies of its own, and is the timer the `futures-timer` feature already uses. A
    /// thread of our own would do the same with more code to get right.
    pub(crate) fn sleep(&self, delay: Duration) -> Timer {
        if delay.is_zero() {
            return Timer::Elapsed;
        }
        match self {
            #[cfg(feature = "tokio")]
            TimeSource::Tokio => {
                if tokio::runtime::Handle::try_current().is_ok() {
                    Timer::Tokio {
                        sleep: tokio::time::sleep(delay),
                    }
                } else {
                    Timer::Delay {
                        delay: futures_timer::Delay::new(delay),
                    }
                }
            }
            #[cfg(feature = "futures-timer")]
            TimeSource::FuturesTimer => Timer::Delay {
                delay: futures_timer::Delay::new(delay),
            },
            TimeSource::Custom(sleeper) | TimeSource::Simulated(sleeper, _) => Timer::Boxed {
                sleep: sleeper(delay),
            },
            TimeSource::Virtual(clock) => {
                clock.sleep(delay);
                Timer::Elapsed
            }
            // The builder never gives the async policy a blocking source.
            TimeSource::Blocking => {
                std::thread::sleep(delay);
                Timer::Elapsed
            }
        }
    }

    /// A timer for attempt timeouts, started now. Unlike [`sleep`](Self::sleep), a virtual
    /// timer does not advance the virtual clock or count as a sleep: it fires when the clock
    /// reaches its end, moved by the attempt itself (`advance`) or by anything else.
    pub(crate) fn timer(&self, timeout: Duration) -> Timer {
        match self {
            TimeSource::Virtual(clock) => Timer::Virtual {
                timer: clock.timer_after(timeout),
            },
            _ => self.sleep(timeout),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The coarse clock's elapsed time is rounded up by its resolution, so a deadline read on
    /// it is never passed, and it follows the fine clock to within that resolution.
    #[cfg(all(feature = "coarse-clock", target_os = "linux"))]
    #[test]
    fn the_coarse_clock_rounds_elapsed_times_up() {
        let resolution = coarse::resolution();
        assert!(resolution > Duration::ZERO && resolution <= Duration::from_millis(10));
        let source = TimeSource::Blocking;
        let fine = std::time::Instant::now();
        let start = source.now();
        assert!(matches!(start, Stamp::Nanos(_)));
        assert!(source.since(start) >= resolution, "rounded up even at once");
        std::thread::sleep(Duration::from_millis(30));
        let (coarse, fine) = (source.since(start), fine.elapsed());
        assert!(
            coarse >= fine.saturating_sub(resolution),
            "{coarse:?} vs {fine:?}"
        );
        assert!(coarse <= fine + 2 * resolution, "{coarse:?} vs {fine:?}");
    }

    #[test]
    fn the_default_async_source_follows_the_features() {
        let source = TimeSource::default_async();
        #[cfg(feature = "tokio")]
        assert!(matches!(source, Some(TimeSource::Tokio)));
        #[cfg(all(not(feature = "tokio"), feature = "futures-timer"))]
        assert!(matches!(source, Some(TimeSource::FuturesTimer)));
        #[cfg(not(any(feature = "tokio", feature = "futures-timer")))]
        assert!(source.is_none());
    }

    #[cfg(feature = "futures-timer")]
    #[test]
    fn futures_timer_sleeps_for_real_on_a_plain_executor() {
        let source = TimeSource::FuturesTimer;
        let start = source.now();
        futures::executor::block_on(source.sleep(Duration::from_millis(3)));
        assert!(source.since(start) >= Duration::from_millis(3));
    }

    /// Outside a tokio runtime the tokio source sleeps, and times attempts out, on
    /// `futures-timer`, where `tokio::time::sleep` would panic.
    #[cfg(feature = "tokio")]
    #[test]
    fn the_tokio_source_sleeps_without_a_runtime() {
        let source = TimeSource::Tokio;
        assert!(tokio::runtime::Handle::try_current().is_err());
        let start = source.now();
        futures::executor::block_on(async {
            source.sleep(Duration::from_millis(3)).await;
            source.timer(Duration::from_millis(2)).await;
        });
        assert!(source.since(start) >= Duration::from_millis(5));
    }

    /// Inside a runtime it is tokio's timer, the one `tokio::time::pause()` controls: an hour
    /// passes at once.
    #[cfg(feature = "tokio")]
    #[tokio::test(start_paused = true)]
    async fn the_tokio_source_sleeps_on_tokio_paused_time_in_a_runtime() {
        let source = TimeSource::Tokio;
        let real = std::time::Instant::now();
        let start = source.now();
        source.sleep(Duration::from_secs(3600)).await;
        source.timer(Duration::from_secs(60)).await;
        assert!(source.since(start) >= Duration::from_secs(3660));
        assert!(real.elapsed() < Duration::from_secs(5));
    }

    /// Without tokio, a policy built with no sleeper and no clock sleeps on `futures-timer`, on
    /// any executor. CI runs this with `--no-default-features --features futures-timer`.
    #[cfg(all(not(feature = "tokio"), feature = "futures-timer"))]
    #[test]
    fn without_tokio_the_async_policy_retries_on_futures_timer() {
        use crate::strategies::constant;
        use crate::{AsyncRetryPolicy, TransientError};

        let policy = AsyncRetryPolicy::builder()
            .strategy(constant(Duration::from_millis(2)))
            .max_attempts(3)
            .build()
            .expect("futures-timer is the default sleeper");
        let mut calls = 0;
        let started = std::time::Instant::now();
        let out = futures::executor::block_on(policy.call(|| {
            calls += 1;
            let n = calls;
            async move {
                if n < 3 {
                    Err(TransientError::new("flaky"))
                } else {
                    Ok(n)
                }
            }
        }));
        assert_eq!(out, Ok(3));
        assert!(started.elapsed() >= Duration::from_millis(4));
    }
}
