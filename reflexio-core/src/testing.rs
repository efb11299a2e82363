//! Test support: a virtual clock, so tests never sleep for real backoff delays, and simulations
//! run thousands of concurrent calls in virtual time.

pub use crate::time::VirtualClock;
