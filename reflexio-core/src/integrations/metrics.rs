//! [`metrics`] (feature `metrics`): retry counters and a delay histogram, for any
//! exporter of the `metrics` facade (Prometheus and others).
//!
//! ```
//! use reflexio::{integrations::metrics as retry_metrics, RetryPolicy};
//!
//! retry_metrics::describe(); // once, after installing the recorder: help texts and units
//! let policy = RetryPolicy::<std::io::Error>::builder()
//!     .operation("load_config")
//!     .on_event(retry_metrics::hook())
//!     .build()
//!     .unwrap();
//! # drop(policy);
//! ```
//!
//! # Metrics
//!
//! | name | kind | labels | counts |
//! |---|---|---|---|
//! | `reflexio_attempts_total` | counter | `operation`, `class`, `outcome` | every attempt, by how it ended |
//! | `reflexio_retries_total` | counter | `operation`, `class` | attempts that failed and are retried |
//! | `reflexio_giveups_total` | counter | `operation`, `class`, `stop_reason` | calls that ended in an error |
//! | `reflexio_retry_delay_seconds` | histogram | `operation`, `class` | the waits before retries, in seconds |
//! | `reflexio_circuit_events_total` | counter | `operation`, `event` | a circuit breaker's state changes and rejected calls |
//!
//! Label values:
//!
//! - `operation`: the policy's `.operation(..)` (the function name under `#[retry]`), or
//!   `"unnamed"`. Name operations after code, never after data (no user ids, no URLs with ids):
//!   every distinct value is a new time series.
//! - `class`: the [`ErrorClass`](crate::ErrorClass) in `snake_case`; `"none"` for a success.
//! - `outcome`: `"success"`, `"retry"` or `"gave_up"`.
//! - `stop_reason`: the [`StopReason`](crate::StopReason) in `snake_case`.
//! - `event`: the circuit breaker [`EventKind`] in `snake_case`.
//!
//! Only these low-cardinality values are labels. The attempt number and the delay never are
//! (the delay is the histogram's value), and each metric has the same label keys on every
//! event: exporters that fix a metric's label names at its first use (the Prometheus client
//! does) would otherwise reject or drop the events whose label set differs, as a success event
//! without a `class` would be.

use ::metrics::{Unit, counter, describe_counter, describe_histogram, histogram};

use crate::event::{EventKind, RetryEvent};

/// The name of the counter of attempts, labelled `operation`, `class`, `outcome`.
///
/// ```
/// assert_eq!(reflexio::integrations::metrics::ATTEMPTS_TOTAL, "reflexio_attempts_total");
/// ```
pub const ATTEMPTS_TOTAL: &str = "reflexio_attempts_total";
/// The name of the counter of retries, labelled `operation`, `class`.
///
/// ```
/// assert_eq!(reflexio::integrations::metrics::RETRIES_TOTAL, "reflexio_retries_total");
/// ```
pub const RETRIES_TOTAL: &str = "reflexio_retries_total";
/// The name of the counter of calls that gave up, labelled `operation`, `class`, `stop_reason`.
///
/// ```
/// assert_eq!(reflexio::integrations::metrics::GIVEUPS_TOTAL, "reflexio_giveups_total");
/// ```
pub const GIVEUPS_TOTAL: &str = "reflexio_giveups_total";
/// The name of the counter of circuit breaker events, labelled `operation`, `event`
/// (`circuit_opened`, `circuit_half_open`, `circuit_closed`, `circuit_rejected`).
///
/// ```
/// use reflexio::integrations::metrics::CIRCUIT_EVENTS_TOTAL;
/// assert_eq!(CIRCUIT_EVENTS_TOTAL, "reflexio_circuit_events_total");
/// ```
pub const CIRCUIT_EVENTS_TOTAL: &str = "reflexio_circuit_events_total";
/// The name of the histogram of retry delays, in seconds, labelled `operation`, `class`.
///
/// ```
/// use reflexio::integrations::metrics::RETRY_DELAY_SECONDS;
/// assert_eq!(RETRY_DELAY_SECONDS, "reflexio_retry_delay_seconds");
/// ```
pub const RETRY_DELAY_SECONDS: &str = "reflexio_retry_delay_seconds";

/// Records `event` in the [metrics](self#metrics) documented on this module, through the
/// globally installed `metrics` recorder (a no-op while none is installed).
///
/// A plain function, so it is itself a hook (`.on_event(record)`) and composes with others.
///
/// ```
/// use reflexio::{integrations::metrics, RetryPolicy};
///
/// let policy = RetryPolicy::<std::io::Error>::builder()
///     .on_event(|e| {
///         metrics::record(e);
///         eprintln!("{e}");
///     })
///     .build()
///     .unwrap();
/// # drop(policy);
/// ```
#[allow(unreachable_patterns)] // `EventKind` is non-exhaustive
pub fn record(e: &RetryEvent<'_>) {
    let operation = e.operation.unwrap_or("unnamed").to_owned();
    let class = e.class.map_or("none", crate::ErrorClass::as_str);
    match e.kind {
        EventKind::Success | EventKind::Retry | EventKind::GaveUp => {
            counter!(
                ATTEMPTS_TOTAL,
                "operation" => operation.clone(),
                "class" => class,
                "outcome" => e.kind.as_str(),
            )
            .increment(1);
        }
        // Per-attempt events (hedged calls): the decisions above already count the attempts.
        EventKind::AttemptStarted | EventKind::AttemptFinished | EventKind::AttemptCancelled => {
            return;
        }
        // The breaker's state changes and rejections are not attempts.
        _ => {
            counter!(CIRCUIT_EVENTS_TOTAL, "operation" => operation, "event" => e.kind.as_str())
                .increment(1);
            return;
        }
    }
    match e.kind {
        EventKind::Retry => {
            counter!(RETRIES_TOTAL, "operation" => operation.clone(), "class" => class)
                .increment(1);
            histogram!(RETRY_DELAY_SECONDS, "operation" => operation, "class" => class)
                .record(e.delay.unwrap_or_default().as_secs_f64());
        }
        EventKind::GaveUp => {
            counter!(
                GIVEUPS_TOTAL,
                "operation" => operation,
                "class" => class,
                "stop_reason" => e.stop.map_or("unknown", crate::StopReason::as_str),
            )
            .increment(1);
        }
        _ => {}
    }
}

/// The hook to pass to `.on_event(..)`: [`record`] as a value.
///
/// ```
/// use reflexio::{integrations::metrics::hook, AsyncRetryPolicy, ServerError};
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

/// Describes the five metrics to the installed recorder: their help texts, and the unit of the
/// histogram (seconds). Call it once, after installing the recorder; recording works without it.
///
/// ```
/// reflexio::integrations::metrics::describe();
/// ```
pub fn describe() {
    describe_counter!(
        ATTEMPTS_TOTAL,
        Unit::Count,
        "Attempts of operations run by reflexio, by operation, error class and outcome."
    );
    describe_counter!(
        RETRIES_TOTAL,
        Unit::Count,
        "Failed attempts that reflexio retried, by operation and error class."
    );
    describe_counter!(
        GIVEUPS_TOTAL,
        Unit::Count,
        "Calls that reflexio stopped retrying and returned an error, by operation, error class \
         and stop reason."
    );
    describe_counter!(
        CIRCUIT_EVENTS_TOTAL,
        Unit::Count,
        "Circuit breaker state changes and rejected calls, by operation and event."
    );
    describe_histogram!(
        RETRY_DELAY_SECONDS,
        Unit::Seconds,
        "Delays reflexio waited before retrying, in seconds, by operation and error class."
    );
}
