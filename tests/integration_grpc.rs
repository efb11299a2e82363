//! gRPC statuses (`tonic::Status`) retried by reflexio: classes by code, and the server's
//! `grpc-retry-pushback-ms` as a minimum delay, or as "stop" when negative or malformed.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use reflexio::strategies::constant;
use reflexio::testing::VirtualClock;
use reflexio::{AsyncRetryPolicy, EventKind, StopReason};
use tonic::{Code, Status};

fn with_pushback(code: Code, value: &str) -> Status {
    let mut status = Status::new(code, "busy");
    status
        .metadata_mut()
        .insert("grpc-retry-pushback-ms", value.parse().unwrap());
    status
}

/// Calls an operation failing with `failures[n]` on call `n`, then succeeding.
async fn run(
    failures: Vec<Status>,
) -> (
    Result<u32, Status>,
    u32,
    VirtualClock,
    Vec<(EventKind, Option<StopReason>)>,
) {
    let clock = VirtualClock::new();
    let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = events.clone();
    let policy = AsyncRetryPolicy::<Status>::builder()
        .strategy(constant(Duration::from_millis(50)))
        .max_attempts(5)
        .clock(clock.clone())
        .on_event(move |e| sink.lock().unwrap().push((e.kind, e.stop)))
        .build()
        .unwrap();
    let calls = AtomicU32::new(0);
    let failures = std::sync::Mutex::new(failures.into_iter());
    let out = policy
        .call(|| {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            let failure = failures.lock().unwrap().next();
            async move {
                match failure {
                    Some(status) => Err(status),
                    None => Ok(n),
                }
            }
        })
        .await;
    let events = events.lock().unwrap().clone();
    (out, calls.load(Ordering::SeqCst), clock, events)
}

#[tokio::test]
async fn unavailable_and_aborted_are_retried_with_the_strategy_delay() {
    let (out, calls, clock, _) = run(vec![
        Status::unavailable("connection reset"),
        Status::aborted("transaction conflict"),
    ])
    .await;
    assert_eq!((out.unwrap(), calls), (3, 3));
    assert_eq!(clock.sleeps(), [Duration::from_millis(50); 2]);
}

#[tokio::test]
async fn a_pushback_is_a_minimum_delay() {
    let (out, calls, clock, _) = run(vec![
        with_pushback(Code::ResourceExhausted, "1500"),
        with_pushback(Code::Unavailable, "0"),
    ])
    .await;
    assert_eq!((out.unwrap(), calls), (3, 3));
    // 1.5 s as the server asked; then the strategy's 50 ms, since 0 asks for no extra wait.
    assert_eq!(
        clock.sleeps(),
        [Duration::from_millis(1500), Duration::from_millis(50)]
    );
}

#[tokio::test]
async fn a_negative_or_malformed_pushback_stops_at_once() {
    for value in ["-1", "later"] {
        let (out, calls, clock, events) = run(vec![with_pushback(Code::Unavailable, value)]).await;
        assert_eq!(
            out.unwrap_err().code(),
            Code::Unavailable,
            "the status itself"
        );
        assert_eq!(calls, 1, "{value}");
        assert!(clock.sleeps().is_empty());
        assert_eq!(
            events,
            [(EventKind::GaveUp, Some(StopReason::NonRetryable))]
        );
    }
}

#[tokio::test]
async fn client_mistakes_are_not_retried() {
    for status in [
        Status::invalid_argument("bad id"),
        Status::not_found("no such user"),
        Status::unauthenticated("expired token"),
        Status::permission_denied("not yours"),
        Status::unimplemented("no such method"),
    ] {
        let code = status.code();
        let (out, calls, _, _) = run(vec![status]).await;
        assert_eq!((out.unwrap_err().code(), calls), (code, 1));
    }
}
