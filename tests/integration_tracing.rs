//! The `tracing` hook, seen by a real subscriber: one structured event per decision, at the
//! documented levels, and an `#[instrument]` span that stays current across attempts and sleeps.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reflexio::integrations::tracing as retry_tracing;
use reflexio::strategies::constant;
use reflexio::testing::VirtualClock;
use reflexio::{AsyncRetryPolicy, PermanentError, RetryPolicy, ServerError, TransientError};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// One event as the subscriber saw it.
#[derive(Clone, Debug)]
struct Captured {
    level: Level,
    target: String,
    fields: BTreeMap<String, String>,
    /// The names of the spans the event was in, outermost first.
    spans: Vec<String>,
}

impl Captured {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Captured>>>);

impl Capture {
    fn events(&self) -> Vec<Captured> {
        self.0.lock().unwrap().clone()
    }

    fn reflexio_events(&self) -> Vec<Captured> {
        self.events()
            .into_iter()
            .filter(|e| e.target == "reflexio")
            .collect()
    }
}

struct Fields(BTreeMap<String, String>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields(BTreeMap::new());
        event.record(&mut fields);
        let spans = ctx
            .event_scope(event)
            .map(|scope| scope.from_root().map(|s| s.name().to_owned()).collect())
            .unwrap_or_default();
        self.0.lock().unwrap().push(Captured {
            level: *event.metadata().level(),
            target: event.metadata().target().to_owned(),
            fields: fields.0,
            spans,
        });
    }
}

fn subscriber(capture: &Capture) -> impl Subscriber + Send + Sync + 'static {
    tracing_subscriber::registry().with(capture.clone())
}

fn sync_policy<E: fmt::Debug + reflexio::Classify + 'static>(max_attempts: u32) -> RetryPolicy<E> {
    RetryPolicy::builder()
        .strategy(constant(Duration::from_millis(250)))
        .max_attempts(max_attempts)
        .operation("fetch_user")
        .on_event(retry_tracing::hook())
        .clock(VirtualClock::new())
        .build()
        .unwrap()
}

#[test]
fn one_structured_event_per_decision_with_every_field() {
    let capture = Capture::default();
    tracing::subscriber::with_default(subscriber(&capture), || {
        let policy = sync_policy::<TransientError>(5);
        let mut calls = 0;
        let out = policy.call(|| {
            calls += 1;
            if calls < 3 {
                Err(TransientError::new("timed out"))
            } else {
                Ok(calls)
            }
        });
        assert_eq!(out, Ok(3));
    });

    let events = capture.reflexio_events();
    assert_eq!(events.len(), 3, "{events:#?}");

    let retry = &events[0];
    assert_eq!(retry.level, Level::WARN);
    let want: BTreeMap<String, String> = [
        ("message", "attempt failed, retrying"),
        ("event", "retry"),
        ("attempt", "1"),
        ("elapsed_ms", "0"),
        ("operation", "fetch_user"),
        ("class", "transient"),
        ("delay_ms", "250"),
        ("error", "TransientError { message: \"timed out\" }"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    assert_eq!(retry.fields, want);

    assert_eq!(events[1].field("attempt"), Some("2"));
    assert_eq!(events[1].field("elapsed_ms"), Some("250"));

    let success = &events[2];
    assert_eq!(success.level, Level::INFO, "a success after retries");
    assert_eq!(success.field("event"), Some("success"));
    assert_eq!(success.field("attempt"), Some("3"));
    assert_eq!(success.field("elapsed_ms"), Some("500"));
    // Fields that do not apply are absent, not empty.
    for absent in ["class", "delay_ms", "stop_reason", "error"] {
        assert_eq!(success.field(absent), None, "{absent}");
    }
}

#[test]
fn levels_follow_how_much_the_decision_matters() {
    let capture = Capture::default();
    tracing::subscriber::with_default(subscriber(&capture), || {
        // Success at once: TRACE.
        let ok = sync_policy::<ServerError>(3);
        assert_eq!(ok.call(|| Ok::<_, ServerError>(1)), Ok(1));
        // Never retried, at once: DEBUG, with the stop reason.
        let permanent = sync_policy::<PermanentError>(3);
        let _ = permanent.call(|| Err::<(), _>(PermanentError::new("404")));
        // Retried, then out of attempts: WARN, then ERROR.
        let exhausted = sync_policy::<ServerError>(2);
        let _ = exhausted.call(|| Err::<(), _>(ServerError::new("503")));
    });

    let seen: Vec<(Level, Option<String>, Option<String>)> = capture
        .reflexio_events()
        .iter()
        .map(|e| {
            (
                e.level,
                e.field("event").map(str::to_owned),
                e.field("stop_reason").map(str::to_owned),
            )
        })
        .collect();
    let s = |v: &str| Some(v.to_owned());
    assert_eq!(
        seen,
        [
            (Level::TRACE, s("success"), None),
            (Level::DEBUG, s("gave_up"), s("non_retryable")),
            (Level::WARN, s("retry"), None),
            (Level::ERROR, s("gave_up"), s("max_attempts")),
        ]
    );
}

/// An error whose `Debug` (a struct dump) is not its `Display`, with a source.
#[derive(Debug)]
struct ConnectFailed {
    host: &'static str,
    source: std::io::Error,
}

impl fmt::Display for ConnectFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "connecting to {} failed", self.host)
    }
}

impl std::error::Error for ConnectFailed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

impl reflexio::Classify for ConnectFailed {
    fn classification(&self) -> reflexio::Classification {
        reflexio::ErrorClass::Transient.into()
    }
}

fn refused() -> ConnectFailed {
    ConnectFailed {
        host: "db:5432",
        source: std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused"),
    }
}

/// The `error` field of every `reflexio` event `run` causes.
fn error_fields(run: impl FnOnce()) -> Vec<Option<String>> {
    let capture = Capture::default();
    tracing::subscriber::with_default(subscriber(&capture), run);
    capture
        .reflexio_events()
        .iter()
        .map(|e| e.field("error").map(str::to_owned))
        .collect()
}

#[test]
fn the_error_is_its_message_and_its_sources_with_error_chain() {
    let fields = error_fields(|| {
        let policy = RetryPolicy::<ConnectFailed>::builder()
            .strategy(constant(Duration::ZERO))
            .max_attempts(2)
            .error_chain(|e| e)
            .on_event(retry_tracing::hook())
            .build()
            .unwrap();
        let _ = policy.call(|| Err::<(), _>(refused()));
    });
    let line = "connecting to db:5432 failed: connection refused".to_owned();
    assert_eq!(fields, [Some(line.clone()), Some(line)]);
}

#[test]
fn an_anyhow_error_is_its_context_chain_not_its_debug() {
    let fields = error_fields(|| {
        let policy = RetryPolicy::<anyhow::Error>::builder()
            .classifier(|_: &anyhow::Error| reflexio::ErrorClass::Transient)
            .strategy(constant(Duration::ZERO))
            .max_attempts(1)
            .error_chain(|e| e.as_ref())
            .on_event(retry_tracing::hook())
            .build()
            .unwrap();
        let _ =
            policy.call(|| Err::<(), _>(anyhow::Error::new(refused()).context("loading the user")));
    });
    // anyhow's `Debug` is several lines ("Caused by:", and a backtrace when enabled).
    assert_eq!(
        fields,
        [Some(
            "loading the user: connecting to db:5432 failed: connection refused".to_owned()
        )]
    );
}

#[test]
fn without_error_chain_the_error_is_its_debug() {
    let fields = error_fields(|| {
        let policy = sync_policy::<ConnectFailed>(1);
        let _ = policy.call(|| Err::<(), _>(refused()));
    });
    assert_eq!(fields, [Some(format!("{:?}", refused()))]);
}

/// A retried call inside an instrumented async fn, sleeping on tokio's (paused) timer.
#[tracing::instrument(skip(policy))]
async fn fetch(
    policy: &AsyncRetryPolicy<TransientError>,
    user: u32,
) -> Result<u32, TransientError> {
    let calls = AtomicU32::new(0);
    policy
        .call(|| {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                tracing::info!(n, "attempt started");
                tokio::task::yield_now().await;
                tracing::info!(n, "attempt ending");
                if n < 3 {
                    Err(TransientError::new("reset"))
                } else {
                    Ok(user)
                }
            }
        })
        .await
}

/// Runs at the same time as `fetch`, in its own span, logging while `fetch` sleeps.
#[tracing::instrument]
async fn neighbour() {
    for i in 0..4 {
        tracing::info!(i, "neighbour tick");
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn an_instrument_span_stays_current_across_attempts_and_sleeps() {
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(subscriber(&capture));

    let policy = AsyncRetryPolicy::builder()
        .strategy(constant(Duration::from_secs(1)))
        .operation("fetch")
        .on_event(retry_tracing::hook())
        .build()
        .unwrap();
    let (out, ()) = tokio::join!(fetch(&policy, 42), neighbour());
    assert_eq!(out, Ok(42));

    let events = capture.events();
    let from_fetch: Vec<&Captured> = events
        .iter()
        .filter(|e| {
            e.target == "reflexio"
                || e.field("message")
                    .is_some_and(|m| m.starts_with("attempt "))
        })
        .collect();
    // 3 attempts, each logging twice, plus 2 retries and 1 success from reflexio.
    assert_eq!(from_fetch.len(), 3 * 2 + 3, "{events:#?}");
    for e in &from_fetch {
        assert_eq!(e.spans, ["fetch"], "{e:#?}");
    }
    let neighbours: Vec<&Captured> = events
        .iter()
        .filter(|e| e.field("message") == Some("neighbour tick"))
        .collect();
    assert_eq!(neighbours.len(), 4);
    for e in &neighbours {
        assert_eq!(e.spans, ["neighbour"], "{e:#?}");
    }
    // The two interleaved: the neighbour logged while `fetch` was sleeping between attempts.
    let order: Vec<&str> = events
        .iter()
        .filter_map(|e| e.spans.first().map(String::as_str))
        .collect();
    let first_fetch_end = order.iter().rposition(|s| *s == "fetch").unwrap();
    let first_neighbour = order.iter().position(|s| *s == "neighbour").unwrap();
    assert!(first_neighbour < first_fetch_end, "{order:?}");
    let retry = capture.reflexio_events();
    assert_eq!(retry.len(), 3);
    assert!(retry.iter().all(|e| e.field("operation") == Some("fetch")));
}

static LOOKUPS: AtomicU32 = AtomicU32::new(0);

/// `#[retry]` written above `#[instrument]`: the span covers the whole retried call.
#[reflexio::retry(
    strategy = constant(Duration::from_secs(1)),
    max_attempts = 4,
    on_event = retry_tracing::hook(),
)]
#[tracing::instrument]
async fn lookup(id: u32) -> Result<u32, TransientError> {
    let n = LOOKUPS.fetch_add(1, Ordering::SeqCst) + 1;
    tracing::info!(n, "attempt started");
    tokio::task::yield_now().await;
    if n < 3 {
        Err(TransientError::new("reset"))
    } else {
        Ok(id)
    }
}

static RESOLVES: AtomicU32 = AtomicU32::new(0);

/// A `#[retry]` function called from an `#[instrument]`ed one.
#[reflexio::retry(
    strategy = constant(Duration::from_secs(1)),
    max_attempts = 4,
    on_event = retry_tracing::hook(),
)]
async fn resolve(name: &str) -> Result<usize, TransientError> {
    let n = RESOLVES.fetch_add(1, Ordering::SeqCst) + 1;
    tracing::info!(n, "attempt started");
    tokio::task::yield_now().await;
    if n < 3 {
        Err(TransientError::new("timeout"))
    } else {
        Ok(name.len())
    }
}

#[tracing::instrument]
async fn handle_request(name: &'static str) -> Result<usize, TransientError> {
    resolve(name).await
}

/// Every event `capture` saw that came from a retried call: the attempts' own logs and the
/// hook's decisions.
fn retried_call_events(capture: &Capture) -> Vec<Captured> {
    capture
        .events()
        .into_iter()
        .filter(|e| {
            e.target == "reflexio"
                || e.field("message")
                    .is_some_and(|m| m.starts_with("attempt "))
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_retry_fn_keeps_its_instrument_span_across_attempts_and_sleeps() {
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(subscriber(&capture));
    let (out, ()) = tokio::join!(lookup(7), neighbour());
    assert_eq!(out, Ok(7));

    let events = retried_call_events(&capture);
    // 3 attempts logging once each, then 2 retries and 1 success from the hook.
    assert_eq!(events.len(), 3 + 3, "{events:#?}");
    for e in &events {
        assert_eq!(e.spans, ["lookup"], "{e:#?}");
    }
    let decisions: Vec<Option<&str>> = events
        .iter()
        .filter(|e| e.target == "reflexio")
        .map(|e| e.field("event"))
        .collect();
    assert_eq!(decisions, [Some("retry"), Some("retry"), Some("success")]);
}

#[tokio::test(start_paused = true)]
async fn a_retry_fn_called_inside_an_instrumented_fn_stays_in_its_span() {
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(subscriber(&capture));
    let (out, ()) = tokio::join!(handle_request("ada"), neighbour());
    assert_eq!(out, Ok(3));

    let events = retried_call_events(&capture);
    assert_eq!(events.len(), 3 + 3, "{events:#?}");
    for e in &events {
        assert_eq!(e.spans, ["handle_request"], "{e:#?}");
    }
    assert!(
        events
            .iter()
            .filter(|e| e.target == "reflexio")
            .all(|e| e.field("operation") == Some("resolve"))
    );
}
