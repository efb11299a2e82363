//! Nothing a remote server sends, and no setting, can park, crash or silently misconfigure a
//! caller (issue 12).

mod support;

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

use reflexio::http::parse_retry_after;
use reflexio::strategies::constant;
use reflexio::testing::VirtualClock;
use reflexio::{AsyncRetryPolicy, EventKind, RateLimitError, RetryPolicy, StopReason, retry};
use support::{Recorder, secs};

fn slow_down(retry_after: Duration) -> RateLimitError {
    RateLimitError::new("429").with_retry_after(retry_after)
}

/// `Retry-After: 99999999999999999999` with no deadline: one sleep of 2^64 s before. Now the
/// call stops at once, with its own reason, in the event and in `RetryError`.
#[test]
fn a_server_cannot_park_a_caller() {
    let asked = parse_retry_after("99999999999999999999", SystemTime::now()).unwrap();
    let clock = VirtualClock::new();
    let recorder = Recorder::default();
    let policy = RetryPolicy::builder()
        .strategy(constant(secs(1)).max(secs(20)))
        .no_deadline()
        .clock(clock.clone())
        .on_event(recorder.hook())
        .build()
        .unwrap();
    let err = policy
        .execute(|| Err::<(), _>(slow_down(asked)))
        .unwrap_err();
    assert_eq!(err.stop_reason(), StopReason::ServerDelayTooLong);
    assert_eq!(err.attempts(), 1);
    assert_eq!(
        err.into_inner().retry_after(),
        Some(asked),
        "the last error, untouched"
    );
    assert!(clock.sleeps().is_empty(), "no sleep at all");
    let last = recorder.last();
    assert_eq!(
        (last.kind, last.stop),
        (EventKind::GaveUp, Some(StopReason::ServerDelayTooLong))
    );
}

#[test]
fn a_server_delay_within_the_bound_is_honoured_exactly() {
    let clock = VirtualClock::new();
    let policy = RetryPolicy::builder()
        .strategy(constant(secs(1)))
        .no_deadline()
        .max_server_delay(secs(120))
        .max_attempts(3)
        .clock(clock.clone())
        .build()
        .unwrap();
    let mut calls = 0;
    let out = policy.call(|| {
        calls += 1;
        match calls {
            1 => Err(slow_down(secs(120))),
            2 => Err(slow_down(secs(121))),
            _ => Ok(()),
        }
    });
    assert_eq!(out.unwrap_err().retry_after(), Some(secs(121)));
    assert_eq!(clock.sleeps(), [secs(120)], "120 s allowed, 121 s not");
}

#[test]
fn the_default_bound_is_a_minute_and_async_policies_have_it_too() {
    let clock = VirtualClock::new();
    let policy = AsyncRetryPolicy::builder()
        .strategy(constant(secs(1)))
        .no_deadline()
        .clock(clock.clone())
        .build()
        .unwrap();
    let err =
        futures::executor::block_on(policy.execute(|| async { Err::<(), _>(slow_down(secs(61))) }))
            .unwrap_err();
    assert_eq!(err.stop_reason(), StopReason::ServerDelayTooLong);
    let mut calls = 0;
    let out = futures::executor::block_on(policy.call(|| {
        calls += 1;
        let n = calls;
        async move {
            if n == 1 {
                Err(slow_down(secs(60)))
            } else {
                Ok(n)
            }
        }
    }));
    assert_eq!(out.unwrap(), 2);
    assert_eq!(clock.sleeps(), [secs(60)]);
    assert!(
        policy.describe().contains("longest server delay: 1m"),
        "{}",
        policy.describe()
    );
}

#[test]
fn a_zero_bound_is_a_config_error() {
    let err = RetryPolicy::<RateLimitError>::builder()
        .max_server_delay(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(err.problems()[0].setting(), "max_server_delay");
}

static CLOCK: LazyLock<VirtualClock> = LazyLock::new(VirtualClock::new);
static CALLS: AtomicU32 = AtomicU32::new(0);

#[retry(
    max_server_delay = "2m",
    deadline = None,
    strategy = constant(secs(1)),
    clock = CLOCK.clone()
)]
fn rate_limited(asked: Duration) -> Result<u32, RateLimitError> {
    let n = CALLS.fetch_add(1, Ordering::SeqCst) + 1;
    if n % 2 == 1 {
        Err(slow_down(asked))
    } else {
        Ok(n)
    }
}

#[test]
fn retry_functions_take_the_bound_as_a_key() {
    assert_eq!(rate_limited(secs(120)), Ok(2));
    assert_eq!(CLOCK.sleeps(), [secs(120)]);
    let err = rate_limited(secs(121)).unwrap_err();
    assert_eq!(err.retry_after(), Some(secs(121)));
    assert_eq!(CALLS.load(Ordering::SeqCst), 3, "stopped at once");
    assert_eq!(CLOCK.sleeps(), [secs(120)]);
}

/// A zero attempt timeout is its own typed problem (issue 16), not a string.
#[test]
fn a_zero_attempt_timeout_is_a_typed_config_problem() {
    #[derive(Debug)]
    struct TimedOut;
    impl From<reflexio::AttemptTimedOut> for TimedOut {
        fn from(_: reflexio::AttemptTimedOut) -> Self {
            TimedOut
        }
    }
    let err = AsyncRetryPolicy::<TimedOut>::builder()
        .classifier(|_: &TimedOut| reflexio::ErrorClass::Transient)
        .attempt_timeout(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(
        err.problems(),
        [reflexio::ConfigProblem::ZeroAttemptTimeout]
    );
    assert_eq!(
        err.problems()[0].to_string(),
        "`attempt_timeout` must be greater than zero"
    );
}
