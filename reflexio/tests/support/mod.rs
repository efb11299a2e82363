//! Helpers shared by the macro tests: a scripted error type and an event recorder.
#![allow(dead_code, unreachable_pub)] // each test crate uses a different subset

use std::sync::Mutex;
use std::time::Duration;

use reflexio::{Classification, Classify, ErrorClass, EventKind, RetryEvent, StopReason};

/// An error that says its class.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scripted(pub ErrorClass);

impl Classify for Scripted {
    fn classification(&self) -> Classification {
        self.0.into()
    }
}

/// One recorded event: kind, attempt, class, delay, stop reason and operation.
pub type Seen = (
    EventKind,
    u32,
    Option<ErrorClass>,
    Option<Duration>,
    Option<StopReason>,
    Option<String>,
);

/// A recorder usable from a `static`, for `on_event = RECORDER.hook()`.
pub struct Recorder(Mutex<Vec<Seen>>);

impl Recorder {
    pub const fn new() -> Self {
        Recorder(Mutex::new(Vec::new()))
    }

    pub fn record(&self, e: &RetryEvent<'_>) {
        self.0.lock().unwrap().push((
            e.kind,
            e.attempt,
            e.class,
            e.delay,
            e.stop,
            e.operation.map(str::to_owned),
        ));
    }

    pub fn take(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }

    pub fn hook(&'static self) -> impl Fn(&RetryEvent<'_>) + Send + Sync + 'static {
        move |e| self.record(e)
    }
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}
