//! [`tracing`] (feature `tracing`): one structured event per retry decision.
//!
//! ```
//! use reflexio::{integrations::tracing as retry_tracing, RetryPolicy};
//!
//! let policy = RetryPolicy::<std::io::Error>::builder()
//!     .operation("load_config")
//!     .on_event(retry_tracing::hook())
//!     .build()
//!     .unwrap();
//! # drop(policy);
//! ```
//!
//! To report to `tracing` and elsewhere, call [`record`] from your own hook:
//! `.on_event(|e| { retry_tracing::record(e); my_counter.inc(); })`.
//!
//! # Fields
//!
//! Every event has the target `reflexio` and these fields; the names are stable:
//!
//! | field | type | present |
//! |---|---|---|
//! | `event` | `"success"`, `"retry"`, `"gave_up"` | always |
//! | `attempt` | `u32`, 1-based | always |
//! | `elapsed_ms` | `u64`, since the call started, on the policy's clock | always |
//! | `operation` | the policy's `.operation(..)` (the function name under `#[retry]`) | when set |
//! | `class` | the [`ErrorClass`](crate::ErrorClass) as `snake_case` | on failures |
//! | `delay_ms` | `u64`, the wait before the next attempt | on `retry` |
//! | `stop_reason` | the [`StopReason`] as `snake_case` | on `gave_up` |
//! | `status` | `u16`, the protocol status the class was read from (HTTP status, gRPC code) | on failures that carry one |
//! | `rejected` | `true`: the attempt returned a value the `retry_if_ok` rule rejected (no `error` then) | on rejected values |
//! | `error` | the error: its message and its sources (`connect failed: connection refused`) when the policy has [`error_chain`](crate::PolicyBuilder::error_chain), else its `Debug` | on failures |
//!
//! # Levels
//!
//! | decision | level | why |
//! |---|---|---|
//! | success at the first attempt | `TRACE` | the normal case: nothing happened that an operator needs |
//! | success after retries | `INFO` | the retries worked: worth a line, not an alarm |
//! | retry | `WARN` | something failed and is being handled; a burst of these is the early sign of an outage |
//! | gave up after retrying, or at once for a limit (deadline, budget, ...) | `ERROR` | the caller gets an error that retrying could not fix |
//! | gave up at once because the class is never retried (`Auth`, `Permission`, `Permanent`) | `DEBUG` | reflexio did nothing: the caller gets its own error back and decides whether it is one (a 404 often is not) |
//! | gave up because `abort_if` said so | `INFO` | the caller asked to stop (a shutdown) |
//! | circuit breaker opened | `WARN` | once per outage, the line to alert on |
//! | circuit breaker half-open, closed | `INFO` | recovery |
//! | a call rejected by the open breaker (and its `gave_up` at once) | `DEBUG` | one per call during an outage: the `WARN` above already said it |
//!
//! The events are emitted inside whatever span is current when the policy runs, so an
//! `#[instrument]`ed function that retries sees every decision in its own span; with the async
//! policy that span stays current across attempts and sleeps. With both `#[retry]` and
//! `#[instrument]` on one function, write `#[retry]` first (above): `#[instrument]` then wraps
//! the whole retried call. In the other order it wraps each attempt, and the decisions are
//! reported outside its span.

use ::tracing::{Level, event};

use crate::event::{EventKind, RetryEvent};
use crate::stop::StopReason;

/// The level [`record`] uses for `event`; see the [module docs](self#levels) for the reasons.
///
/// For a hook of your own that should weigh decisions as the `tracing` events do: here, one
/// that keeps only the warnings and errors (in `tracing`, a more severe level compares less).
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use tracing::Level;
/// use reflexio::integrations::tracing::level;
/// use reflexio::{strategies::no_delay, RetryPolicy, ServerError};
///
/// let alerts = Arc::new(Mutex::new(Vec::new()));
/// let sink = alerts.clone();
/// let policy = RetryPolicy::builder()
///     .strategy(no_delay())
///     .max_attempts(2)
///     .operation("charge_card")
///     .on_event(move |e| {
///         let level = level(e);
///         if level <= Level::WARN {
///             sink.lock().unwrap().push((level, e.to_string()));
///         }
///     })
///     .build()
///     .unwrap();
///
/// // A success at once is `TRACE`: kept out.
/// assert_eq!(policy.call(|| Ok::<_, ServerError>(1)), Ok(1));
/// // Two server errors under a 2-attempt policy: a retry (`WARN`), then giving up (`ERROR`).
/// let _: Result<(), _> = policy.call(|| Err(ServerError::new("503")));
/// let alerts = alerts.lock().unwrap();
/// let levels: Vec<Level> = alerts.iter().map(|(level, _)| *level).collect();
/// assert_eq!(levels, [Level::WARN, Level::ERROR]);
/// assert!(alerts[1].1.starts_with("charge_card: attempt 2 failed (server_error), giving up"));
/// ```
#[must_use]
#[allow(unreachable_patterns)] // `EventKind` is non-exhaustive: a new kind is worth a warning
pub fn level(event: &RetryEvent<'_>) -> Level {
    match (event.kind, event.stop) {
        (EventKind::Success, _) if event.attempt <= 1 => Level::TRACE,
        (EventKind::Success | EventKind::CircuitHalfOpen | EventKind::CircuitClosed, _)
        | (EventKind::GaveUp, Some(StopReason::Aborted)) => Level::INFO,
        (EventKind::GaveUp, Some(StopReason::NonRetryable | StopReason::CircuitOpen))
            if event.attempt <= 1 =>
        {
            Level::DEBUG
        }
        (EventKind::CircuitRejected, _) => Level::DEBUG,
        (
            EventKind::AttemptStarted | EventKind::AttemptFinished | EventKind::AttemptCancelled,
            _,
        ) => Level::TRACE,
        (EventKind::GaveUp, _) => Level::ERROR,
        // A retry, the circuit opening, and any kind added later.
        _ => Level::WARN,
    }
}

fn millis(d: core::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Emits `event` as one `tracing` event, with the [fields](self#fields) and at the
/// [level](self#levels) documented on this module.
///
/// A plain function, so it is itself a hook (`.on_event(record)`) and composes with others.
///
/// ```
/// use reflexio::{integrations::tracing::record, RetryPolicy};
///
/// let policy = RetryPolicy::<std::io::Error>::builder()
///     .on_event(|e| {
///         record(e);
///         // ... and anything else: metrics, a test recorder
///     })
///     .build()
///     .unwrap();
/// assert_eq!(policy.call(|| Ok::<_, std::io::Error>(1)).unwrap(), 1);
/// ```
pub fn record(e: &RetryEvent<'_>) {
    // `tracing` needs the level as a constant at each call site, hence one `event!` per level.
    macro_rules! emit {
        ($level:expr) => {
            event!(
                target: "reflexio",
                $level,
                event = e.kind.as_str(),
                attempt = e.attempt,
                elapsed_ms = millis(e.elapsed),
                operation = e.operation,
                class = e.class.map(crate::ErrorClass::as_str),
                delay_ms = e.delay.map(millis),
                stop_reason = e.stop.map(StopReason::as_str),
                status = e.status,
                rejected = e.rejected.then_some(true),
                error = e.error_message().map(::tracing::field::display),
                "{}",
                message(e.kind),
            )
        };
    }
    match level(e) {
        Level::TRACE => emit!(Level::TRACE),
        Level::DEBUG => emit!(Level::DEBUG),
        Level::INFO => emit!(Level::INFO),
        Level::WARN => emit!(Level::WARN),
        _ => emit!(Level::ERROR),
    }
}

#[allow(unreachable_patterns)] // `EventKind` is non-exhaustive
fn message(kind: EventKind) -> &'static str {
    match kind {
        EventKind::Success => "operation succeeded",
        EventKind::Retry => "attempt failed, retrying",
        EventKind::GaveUp => "attempt failed, giving up",
        EventKind::CircuitOpened => "circuit breaker opened",
        EventKind::CircuitHalfOpen => "circuit breaker half-open, probing",
        EventKind::CircuitClosed => "circuit breaker closed",
        EventKind::CircuitRejected => "circuit breaker open, call rejected",
        EventKind::AttemptStarted => "attempt started",
        EventKind::AttemptFinished => "attempt finished",
        EventKind::AttemptCancelled => "attempt cancelled",
        _ => "retry decision",
    }
}

/// The hook to pass to `.on_event(..)`: [`record`] as a value.
///
/// ```
/// use reflexio::{integrations::tracing::hook, AsyncRetryPolicy, ServerError};
///
/// let policy = AsyncRetryPolicy::<ServerError>::builder()
///     .operation("charge_card")
///     .on_event(hook())
///     .build()
///     .unwrap();
/// # drop(policy);
/// ```
pub fn hook() -> impl Fn(&RetryEvent<'_>) + Clone + Send + Sync + 'static {
    record
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::class::ErrorClass;
    use core::time::Duration;

    fn event(kind: EventKind, attempt: u32, stop: Option<StopReason>) -> RetryEvent<'static> {
        RetryEvent {
            kind,
            stop,
            attempt,
            class: Some(ErrorClass::ServerError),
            delay: None,
            elapsed: Duration::ZERO,
            operation: None,
            error: None,
            rejected: false,
            status: None,
            std_error: None,
            hedge: false,
            duration: None,
        }
    }

    #[test]
    fn every_kind_has_the_documented_level() {
        use EventKind as K;
        use StopReason as S;
        let cases = [
            (K::Success, 1, None, Level::TRACE),
            (K::Success, 2, None, Level::INFO),
            (K::Retry, 1, None, Level::WARN),
            (K::GaveUp, 1, Some(S::NonRetryable), Level::DEBUG),
            (K::GaveUp, 2, Some(S::NonRetryable), Level::ERROR),
            (K::GaveUp, 1, Some(S::CircuitOpen), Level::DEBUG),
            (K::GaveUp, 3, Some(S::CircuitOpen), Level::ERROR),
            (K::GaveUp, 1, Some(S::DeadlineExceeded), Level::ERROR),
            (K::GaveUp, 4, Some(S::MaxAttempts), Level::ERROR),
            (K::GaveUp, 2, Some(S::BudgetExhausted), Level::ERROR),
            (K::GaveUp, 2, Some(S::Aborted), Level::INFO),
            (K::CircuitOpened, 3, None, Level::WARN),
            (K::CircuitHalfOpen, 1, None, Level::INFO),
            (K::CircuitClosed, 1, None, Level::INFO),
            (K::CircuitRejected, 1, None, Level::DEBUG),
        ];
        for (kind, attempt, stop, want) in cases {
            assert_eq!(
                level(&event(kind, attempt, stop)),
                want,
                "{kind:?} {attempt} {stop:?}"
            );
            assert_ne!(message(kind), "retry decision", "{kind:?}");
        }
    }
}
