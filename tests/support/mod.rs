//! Helpers shared by the integration tests: an event recorder and a scripted error type.
#![allow(dead_code, unreachable_pub)] // each test crate uses a different subset

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reflexio::{Classification, Classify, ErrorClass, EventKind, RetryEvent, StopReason};

/// An owned copy of a `RetryEvent`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub kind: EventKind,
    pub stop: Option<StopReason>,
    pub attempt: u32,
    pub class: Option<ErrorClass>,
    pub delay: Option<Duration>,
    pub elapsed: Duration,
    pub operation: Option<String>,
    pub error: Option<String>,
    pub rejected: bool,
    pub status: Option<u16>,
}

/// Records every event a policy reports. Clones share one record, so a hook (or a
/// `static EVENTS: LazyLock<Recorder>` named in `#[retry(on_event = EVENTS.hook())]`) records
/// into what the test reads.
#[derive(Clone, Default)]
pub struct Recorder(Arc<Mutex<Vec<Seen>>>);

impl Recorder {
    pub fn hook(&self) -> impl Fn(&RetryEvent<'_>) + Send + Sync + 'static {
        let recorder = self.clone();
        move |e: &RetryEvent<'_>| recorder.record(e)
    }

    pub fn record(&self, e: &RetryEvent<'_>) {
        self.0.lock().unwrap().push(Seen {
            kind: e.kind,
            stop: e.stop,
            attempt: e.attempt,
            class: e.class,
            delay: e.delay,
            elapsed: e.elapsed,
            operation: e.operation.map(str::to_owned),
            error: e.error.map(|d| format!("{d:?}")),
            rejected: e.rejected,
            status: e.status,
        });
    }

    pub fn events(&self) -> Vec<Seen> {
        self.0.lock().unwrap().clone()
    }

    /// `(kind, attempt)` of every event, the shape most tests assert.
    pub fn trace(&self) -> Vec<(EventKind, u32)> {
        self.events().iter().map(|e| (e.kind, e.attempt)).collect()
    }

    /// The events recorded so far, leaving the record empty (for a recorder shared by calls).
    pub fn take(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }

    pub fn last(&self) -> Seen {
        self.events().last().cloned().expect("at least one event")
    }
}

/// An error that says its class, and which call produced it (to check error identity).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scripted {
    pub class: ErrorClass,
    pub call: u32,
    pub retry_after: Option<Duration>,
}

impl Scripted {
    pub fn new(class: ErrorClass, call: u32) -> Self {
        Scripted {
            class,
            call,
            retry_after: None,
        }
    }
}

impl Classify for Scripted {
    fn classification(&self) -> Classification {
        let c = Classification::new(self.class);
        match self.retry_after {
            Some(d) => c.with_retry_after(d),
            None => c,
        }
    }
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}
