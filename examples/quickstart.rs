//! A flaky operation retried with per-class strategies, printing every decision.
//!
//! Run it with `cargo run --example quickstart`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use reflexio::strategies::{constant, decorrelated_jitter, token_backoff};
use reflexio::{Classification, Classify, ErrorClass, EventKind, RetryEvent, RetryPolicy};

/// The errors of a pretend invoice service.
#[derive(Debug)]
enum InvoiceError {
    /// HTTP 429, with the server's `Retry-After`.
    Throttled { retry_after: Duration },
    /// HTTP 503.
    Unavailable,
    /// The connection was reset.
    ConnectionReset,
    /// HTTP 404: retrying cannot help.
    #[allow(dead_code)] // shown for the classification; this run never hits it
    NotFound,
}

impl std::fmt::Display for InvoiceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invoice service: {self:?}")
    }
}

impl std::error::Error for InvoiceError {}

impl Classify for InvoiceError {
    fn classification(&self) -> Classification {
        match self {
            InvoiceError::Throttled { retry_after } => {
                Classification::new(ErrorClass::RateLimit).with_retry_after(*retry_after)
            }
            InvoiceError::Unavailable => ErrorClass::ServerError.into(),
            InvoiceError::ConnectionReset => ErrorClass::Transient.into(),
            InvoiceError::NotFound => ErrorClass::Permanent.into(),
        }
    }
}

/// Fails three times, each time differently, then succeeds.
fn fetch_invoice(calls: &AtomicU32) -> Result<String, InvoiceError> {
    match calls.fetch_add(1, Ordering::SeqCst) {
        0 => Err(InvoiceError::Throttled {
            retry_after: Duration::from_millis(300),
        }),
        1 => Err(InvoiceError::Unavailable),
        2 => Err(InvoiceError::ConnectionReset),
        _ => Ok("invoice #1042: 99.00 EUR".to_owned()),
    }
}

/// One readable line per decision.
fn print_event(e: &RetryEvent<'_>) {
    let class = e.class.map_or("-", ErrorClass::as_str);
    let outcome = match (e.kind, e.delay, e.stop) {
        (EventKind::Success, _, _) => "succeeded".to_owned(),
        (EventKind::Retry, Some(d), _) => format!("retry in {d:.0?}"),
        (_, _, Some(stop)) => format!("gave up ({stop})"),
        (kind, _, _) => kind.to_string(),
    };
    let error = e
        .error
        .map(|err| format!(" <- {err:?}"))
        .unwrap_or_default();
    println!(
        "  attempt {:>2} | class {:<12} | elapsed {:>7.0?} | {:<16}{}",
        e.attempt, class, e.elapsed, outcome, error
    );
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let policy = RetryPolicy::builder()
        // Transient failures: retry quickly, with decorrelated jitter.
        .strategy(
            decorrelated_jitter()
                .base(Duration::from_millis(20))
                .max(Duration::from_millis(200)),
        )
        // Server errors: give the service a moment.
        .strategy_for(
            ErrorClass::ServerError,
            constant(Duration::from_millis(150)),
        )
        // Rate limits: slow growth, and never less than the server's Retry-After.
        .strategy_for(
            ErrorClass::RateLimit,
            token_backoff().base(Duration::from_millis(50)),
        )
        .max_retries_for(ErrorClass::RateLimit, 3)
        .max_attempts(5)
        .deadline(Duration::from_secs(5))
        .operation("fetch_invoice")
        .on_event(print_event)
        .build()?;

    println!("reflexio quickstart: fetching an invoice from a flaky service\n");
    print!("{}", policy.describe());
    println!();
    let calls = AtomicU32::new(0);
    let invoice = policy.call(|| fetch_invoice(&calls))?;
    println!(
        "got {invoice:?} after {} calls",
        calls.load(Ordering::SeqCst)
    );
    Ok(())
}
