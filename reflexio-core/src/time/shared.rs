//! The clock of objects shared between calls (budgets, circuit breakers): nanoseconds since the
//! object was made, on the real monotonic clock or a [`VirtualClock`].
//!
//! The real clock is Linux's coarse monotonic clock where the `coarse-clock` feature has it
//! (3 to 9 ns a read, depending on the machine, where `Instant::now()` takes 25 to 30; see `time/mod.rs`): budgets count in slots of
//! seconds and breakers stay open for seconds, so a resolution of one kernel tick (1-4 ms) is
//! plenty. A breaker may then reopen, and a budget slot roll over, up to one tick late.

use core::time::Duration;
use std::time::Instant;

use super::VirtualClock;

/// `d` in nanoseconds, saturating at `u64::MAX` (584 years).
pub(crate) fn saturating_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[derive(Clone, Debug)]
pub(crate) enum SharedClock {
    /// The coarse clock's reading, in nanoseconds, when the object was made.
    #[cfg(all(feature = "coarse-clock", target_os = "linux"))]
    Coarse(u64),
    #[cfg_attr(all(feature = "coarse-clock", target_os = "linux"), allow(dead_code))]
    Real(Instant),
    Virtual(VirtualClock),
}

impl SharedClock {
    #[cfg(all(feature = "coarse-clock", target_os = "linux"))]
    pub(crate) fn real() -> Self {
        SharedClock::Coarse(super::coarse::now_nanos())
    }

    #[cfg(not(all(feature = "coarse-clock", target_os = "linux")))]
    pub(crate) fn real() -> Self {
        SharedClock::Real(Instant::now())
    }

    #[inline]
    pub(crate) fn now_nanos(&self) -> u64 {
        match self {
            #[cfg(all(feature = "coarse-clock", target_os = "linux"))]
            SharedClock::Coarse(origin) => super::coarse::now_nanos().saturating_sub(*origin),
            SharedClock::Real(origin) => saturating_nanos(origin.elapsed()),
            SharedClock::Virtual(clock) => saturating_nanos(clock.now()),
        }
    }
}
