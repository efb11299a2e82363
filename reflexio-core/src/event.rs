//! The one structured event every retry decision reports.

use core::fmt;
use core::time::Duration;
use std::error::Error;

use crate::class::ErrorClass;
use crate::stop::StopReason;
use crate::strategies::fmt_duration;

/// What a [`RetryEvent`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EventKind {
    /// The attempt succeeded; the value is returned.
    Success,
    /// The attempt failed and another one is scheduled after `delay`.
    Retry,
    /// The attempt failed and the policy stopped, for the reason in `stop`; the last error is
    /// returned.
    GaveUp,
    /// The circuit breaker opened (after this attempt's failure, or a failed probe).
    CircuitOpened,
    /// The circuit breaker's open period ended: this attempt is a probe.
    CircuitHalfOpen,
    /// A successful probe closed the circuit breaker.
    CircuitClosed,
    /// The open circuit breaker rejected this attempt; the operation was not called. A
    /// `GaveUp` event with [`StopReason::CircuitOpen`] follows.
    CircuitRejected,
    /// An attempt started; [`hedge`](RetryEvent::hedge) tells whether it is a hedge (started
    /// because the attempts in flight were slow, not because one failed). Reported by hedged
    /// calls ([`AsyncRetryPolicy::call_idempotent`](crate::AsyncRetryPolicy::call_idempotent))
    /// to a policy with a hook.
    AttemptStarted,
    /// An attempt ended: [`duration`](RetryEvent::duration) is how long it ran, `class` its
    /// outcome (`None` for a success). The decision about it (`Success`, `Retry` or `GaveUp`)
    /// follows, unless other attempts are still in flight.
    AttemptFinished,
    /// An attempt was dropped before it ended, because another attempt of its hedged call
    /// won or ended the call; `duration` is how long it ran. Its outcome is never known, so it
    /// is not reported to the circuit breaker or the budget.
    AttemptCancelled,
}

impl EventKind {
    /// The kind's `snake_case` name, for logs and metric labels.
    ///
    /// ```
    /// assert_eq!(reflexio::EventKind::GaveUp.as_str(), "gave_up");
    /// ```
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            EventKind::Success => "success",
            EventKind::Retry => "retry",
            EventKind::GaveUp => "gave_up",
            EventKind::CircuitOpened => "circuit_opened",
            EventKind::CircuitHalfOpen => "circuit_half_open",
            EventKind::CircuitClosed => "circuit_closed",
            EventKind::CircuitRejected => "circuit_rejected",
            EventKind::AttemptStarted => "attempt_started",
            EventKind::AttemptFinished => "attempt_finished",
            EventKind::AttemptCancelled => "attempt_cancelled",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One retry decision, passed to the policy's `on_event` hook.
///
/// Every call reports one event per attempt: `Retry` for each failed attempt that is retried,
/// then one `Success` or one `GaveUp`. A policy with a circuit breaker also reports the
/// breaker's state changes its calls cause (`CircuitOpened`, `CircuitHalfOpen`,
/// `CircuitClosed`) and its rejections (`CircuitRejected`, then `GaveUp`).
///
/// Its `Display` is one readable line:
///
/// ```
/// use std::time::Duration;
/// use reflexio::{testing::VirtualClock, strategies::constant, RetryPolicy, TransientError};
/// use std::sync::{Arc, Mutex};
///
/// let lines = Arc::new(Mutex::new(Vec::new()));
/// let sink = lines.clone();
/// let policy = RetryPolicy::builder()
///     .strategy(constant(Duration::from_millis(250)))
///     .operation("fetch_user")
///     .on_event(move |e| sink.lock().unwrap().push(e.to_string()))
///     .clock(VirtualClock::new())
///     .build()
///     .unwrap();
/// let mut calls = 0;
/// let out: Result<u32, TransientError> = policy.call(|| {
///     calls += 1;
///     if calls < 2 { Err(TransientError::new("timed out")) } else { Ok(7) }
/// });
/// assert_eq!(out, Ok(7));
/// assert_eq!(*lines.lock().unwrap(), [
///     "fetch_user: attempt 1 failed (transient), retrying in 250ms [elapsed 0s]: TransientError { message: \"timed out\" }",
///     "fetch_user: attempt 2 succeeded [elapsed 250ms]",
/// ]);
/// ```
#[derive(Clone, Copy)]
#[non_exhaustive]
pub struct RetryEvent<'a> {
    /// What happened.
    pub kind: EventKind,
    /// Why the policy stopped; set with [`EventKind::GaveUp`] only.
    pub stop: Option<StopReason>,
    /// The 1-based number of the attempt this event is about.
    pub attempt: u32,
    /// The class of the failure; `None` on success.
    pub class: Option<ErrorClass>,
    /// The delay before the next attempt; set with [`EventKind::Retry`] only.
    pub delay: Option<Duration>,
    /// Time since the call started, on the policy's clock.
    pub elapsed: Duration,
    /// The operation name given to the policy (the function name under `#[retry]`).
    pub operation: Option<&'a str>,
    /// The error of the failed attempt; `None` on success, and for a rejected value.
    pub error: Option<&'a dyn fmt::Debug>,
    /// The attempt returned `Ok`, but the policy's `retry_if_ok` rule classified the value as
    /// a failure (an HTTP 503 response, say): [`status`](Self::status) tells which, when the
    /// rule's classification carries one.
    pub rejected: bool,
    /// The protocol status of the failure (an HTTP status, a gRPC code), from its
    /// [`Classification`](crate::Classification).
    pub status: Option<u16>,
    /// The same error as a [`std::error::Error`], when the policy was told how to see it as one
    /// (the builder's `.error_chain(..)`): its message and its sources, for log lines. `None`
    /// otherwise, and on success.
    pub std_error: Option<&'a (dyn Error + 'static)>,
    /// The attempt is a hedge: started by a hedged call because the attempts in flight were
    /// slower than the hedging delay, not because one failed. On `Success`, the hedge won.
    pub hedge: bool,
    /// How long the attempt ran; set with [`EventKind::AttemptFinished`] and
    /// [`EventKind::AttemptCancelled`] only.
    pub duration: Option<Duration>,
}

impl<'a> RetryEvent<'a> {
    /// The error for a log line; `None` on success. With [`std_error`](Self::std_error), its
    /// `Display` followed by its sources', joined by `": "` (`connect failed: connection
    /// refused`), as `anyhow` prints `{:#}`; without, its `Debug`.
    ///
    /// ```
    /// use reflexio::{strategies::no_delay, RetryPolicy, TransientError};
    /// use std::sync::{Arc, Mutex};
    ///
    /// let lines = Arc::new(Mutex::new(Vec::new()));
    /// let sink = lines.clone();
    /// let policy = RetryPolicy::<TransientError>::builder()
    ///     .strategy(no_delay())
    ///     .max_attempts(1)
    ///     .error_chain(|e| e)
    ///     .on_event(move |e| sink.lock().unwrap().extend(e.error_message().map(|m| m.to_string())))
    ///     .build()
    ///     .unwrap();
    /// let _ = policy.call(|| Err::<(), _>(TransientError::new("timed out")));
    /// // Its `Display`, not its `Debug` (`TransientError { message: "timed out" }`):
    /// assert_eq!(*lines.lock().unwrap(), ["transient error: timed out"]);
    /// ```
    #[must_use]
    pub fn error_message(&self) -> Option<impl fmt::Display + 'a> {
        let std_error = self.std_error;
        self.error
            .map(move |debug| ErrorMessage { std_error, debug })
    }
}

/// [`RetryEvent::error_message`].
struct ErrorMessage<'a> {
    std_error: Option<&'a (dyn Error + 'static)>,
    debug: &'a dyn fmt::Debug,
}

impl fmt::Display for ErrorMessage<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(error) = self.std_error else {
            return write!(f, "{:?}", self.debug);
        };
        write!(f, "{error}")?;
        let mut source = error.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

impl fmt::Debug for RetryEvent<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryEvent")
            .field("kind", &self.kind)
            .field("stop", &self.stop)
            .field("attempt", &self.attempt)
            .field("class", &self.class)
            .field("delay", &self.delay)
            .field("elapsed", &self.elapsed)
            .field("operation", &self.operation)
            .field("error", &self.error)
            .field("rejected", &self.rejected)
            .field("status", &self.status)
            .field("std_error", &self.std_error)
            .field("hedge", &self.hedge)
            .field("duration", &self.duration)
            .finish()
    }
}

impl fmt::Display for RetryEvent<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(op) = self.operation {
            write!(f, "{op}: ")?;
        }
        write!(f, "attempt {}", self.attempt)?;
        if self.hedge {
            f.write_str(" (hedge)")?;
        }
        match self.kind {
            EventKind::Success => f.write_str(" succeeded")?,
            EventKind::AttemptStarted => f.write_str(" started")?,
            EventKind::AttemptFinished | EventKind::AttemptCancelled => {
                f.write_str(match (self.kind, self.class) {
                    (EventKind::AttemptCancelled, _) => " cancelled",
                    (_, None) => " finished: ok",
                    (_, Some(_)) => " finished: failed",
                })?;
                if let Some(class) = self.class {
                    write!(f, " ({class})")?;
                }
                if let Some(d) = self.duration {
                    f.write_str(" after ")?;
                    fmt_duration(d, f)?;
                }
            }
            EventKind::CircuitOpened => f.write_str(": circuit opened")?,
            EventKind::CircuitHalfOpen => f.write_str(": circuit half-open, probing")?,
            EventKind::CircuitClosed => f.write_str(": circuit closed")?,
            EventKind::CircuitRejected => f.write_str(" rejected: circuit open")?,
            EventKind::Retry | EventKind::GaveUp => {
                f.write_str(" failed")?;
                if let Some(class) = self.class {
                    write!(f, " ({class}")?;
                    if let Some(status) = self.status {
                        write!(f, ", status {status}")?;
                    }
                    if self.rejected {
                        f.write_str(", rejected value")?;
                    }
                    f.write_str(")")?;
                }
                if let Some(delay) = self.delay {
                    f.write_str(", retrying in ")?;
                    fmt_duration(delay, f)?;
                }
                if let Some(stop) = self.stop {
                    write!(f, ", giving up: {stop}")?;
                }
            }
        }
        f.write_str(" [elapsed ")?;
        fmt_duration(self.elapsed, f)?;
        f.write_str("]")?;
        if let Some(error) = self.error_message() {
            write!(f, ": {error}")?;
        }
        Ok(())
    }
}
