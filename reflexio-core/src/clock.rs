//! The clock of objects shared between calls (budgets, circuit breakers): nanoseconds since the
//! object was made, on the real monotonic clock or a [`VirtualClock`].

use std::time::Instant;

use crate::testing::VirtualClock;

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
        u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
    }
}
