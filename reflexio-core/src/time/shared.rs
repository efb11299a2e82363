//! The clock of objects shared between calls (budgets, circuit breakers): nanoseconds since the
//! object was made, on the real monotonic clock or a [`VirtualClock`].

use core::time::Duration;
use std::time::Instant;

use super::VirtualClock;

/// `d` in nanoseconds, saturating at `u64::MAX` (584 years).
pub(crate) fn saturating_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[derive(Clone, Debug)]
pub(crate) enum SharedClock {
    Real(Instant),
    Virtual(VirtualClock),
}

impl SharedClock {
    pub(crate) fn real() -> Self {
        SharedClock::Real(Instant::now())
    }

    pub(crate) fn now_nanos(&self) -> u64 {
        let d = match self {
            SharedClock::Real(origin) => origin.elapsed(),
            SharedClock::Virtual(clock) => clock.now(),
        };
        saturating_nanos(d)
    }
}
