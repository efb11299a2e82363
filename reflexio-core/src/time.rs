//! Where a policy reads time and how it sleeps.

use core::time::Duration;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::testing::VirtualClock;

/// A point in time on one of the clocks a policy can use.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Stamp {
    Std(std::time::Instant),
    #[cfg(feature = "tokio")]
    Tokio(tokio::time::Instant),
    Virtual(Duration),
}

/// A boxed sleep future, for custom async sleepers.
pub(crate) type BoxSleep = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// A custom async sleeper.
pub(crate) type CustomSleeper = Arc<dyn Fn(Duration) -> BoxSleep + Send + Sync>;

/// The clock and the sleeper of a policy.
#[derive(Clone)]
pub(crate) enum TimeSource {
    /// `std::time::Instant` and `std::thread::sleep`.
    Blocking,
    /// `tokio::time::Instant` and `tokio::time::sleep`, so `tokio::time::pause()` works.
    #[cfg(feature = "tokio")]
    Tokio,
    /// A user's sleeper, timed with `std::time::Instant`.
    Custom(CustomSleeper),
    /// The test clock: sleeping advances it at once.
    Virtual(VirtualClock),
}

impl TimeSource {
    pub(crate) fn now(&self) -> Stamp {
        match self {
            TimeSource::Blocking | TimeSource::Custom(_) => Stamp::Std(std::time::Instant::now()),
            #[cfg(feature = "tokio")]
            TimeSource::Tokio => Stamp::Tokio(tokio::time::Instant::now()),
            TimeSource::Virtual(clock) => Stamp::Virtual(clock.now()),
        }
    }

    /// Time elapsed since `start`, which this same source stamped.
    pub(crate) fn since(&self, start: Stamp) -> Duration {
        match (self.now(), start) {
            (Stamp::Std(now), Stamp::Std(start)) => now.saturating_duration_since(start),
            #[cfg(feature = "tokio")]
            (Stamp::Tokio(now), Stamp::Tokio(start)) => now.saturating_duration_since(start),
            (Stamp::Virtual(now), Stamp::Virtual(start)) => now.saturating_sub(start),
            // A stamp from another source cannot happen: a policy's source never changes.
            _ => Duration::ZERO,
        }
    }

    /// Sleeps by blocking the thread (the sync policy).
    pub(crate) fn sleep_blocking(&self, delay: Duration) {
        match self {
            TimeSource::Virtual(clock) => clock.sleep(delay),
            _ => std::thread::sleep(delay),
        }
    }

    /// Sleeps asynchronously (the async policy). The future is held inline: no allocation
    /// except for a custom sleeper, which returns a boxed future.
    pub(crate) async fn sleep(&self, delay: Duration) {
        match self {
            #[cfg(feature = "tokio")]
            TimeSource::Tokio => tokio::time::sleep(delay).await,
            TimeSource::Custom(sleeper) => sleeper(delay).await,
            TimeSource::Virtual(clock) => clock.sleep(delay),
            // The builder never gives the async policy a blocking source.
            TimeSource::Blocking => std::thread::sleep(delay),
        }
    }
}
