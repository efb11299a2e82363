//! Safe under outages: budgets, circuit breaker, attempt timeouts, result retries, abort and
//! `execute`, all on virtual clocks.
// Budgets count in exact thousandths of a token, so comparing their `f64` views exactly is right.
#![allow(clippy::float_cmp)]

mod support;

use std::error::Error as _;
use std::future::pending;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use reflexio::strategies::{constant, no_delay};
use reflexio::testing::VirtualClock;
use reflexio::{
    AsyncRetryPolicy, AttemptTimedOut, CircuitBreaker, CircuitOpen, CircuitState, Classification,
    Classify, ErrorClass, EventKind, RetryBudget, RetryPolicy, StopReason,
};
use support::{Recorder, Scripted, ms, secs};

/// An error type that can also be a circuit rejection or a timeout, as services need.
#[derive(Debug, Clone, PartialEq, Eq)]
enum SvcError {
    Down(u32),
    NotFound,
    Rejected(CircuitOpen),
    TimedOut,
}

impl Classify for SvcError {
    fn classification(&self) -> Classification {
        match self {
            SvcError::Down(_) | SvcError::TimedOut => ErrorClass::ServerError.into(),
            SvcError::NotFound => ErrorClass::Permanent.into(),
            SvcError::Rejected(e) => e.classification(),
        }
    }
}

impl From<CircuitOpen> for SvcError {
    fn from(e: CircuitOpen) -> Self {
        SvcError::Rejected(e)
    }
}

impl From<AttemptTimedOut> for SvcError {
    fn from(_: AttemptTimedOut) -> Self {
        SvcError::TimedOut
    }
}

// ---------- budgets ----------

#[test]
fn a_ten_percent_budget_caps_a_total_outage_near_1_1x() {
    let clock = VirtualClock::new();
    let budget = RetryBudget::ratio(10.0)
        .min_retries_per_sec(0)
        .window(secs(10))
        .clock(clock.clone())
        .build()
        .unwrap();
    let policy = RetryPolicy::builder()
        .strategy(no_delay())
        .max_attempts(5)
        .budget(budget.clone())
        .clock(clock.clone())
        .build()
        .unwrap();
    let attempts = AtomicU32::new(0);
    let mut exhausted = 0;
    for _ in 0..1000 {
        clock.advance(ms(5)); // 1000 calls over 5 s, inside one window
        let err = policy
            .execute(|| {
                let n = attempts.fetch_add(1, Ordering::Relaxed);
                Err::<(), _>(SvcError::Down(n))
            })
            .unwrap_err();
        if err.stop_reason() == StopReason::BudgetExhausted {
            exhausted += 1;
        }
    }
    let total = attempts.load(Ordering::Relaxed);
    // 1000 first attempts + at most 10 % of them as retries (not 5000).
    assert!((1000..=1100).contains(&total), "{total} attempts");
    assert!(total >= 1090, "the budget is used, not wasted: {total}");
    assert!(exhausted > 900, "{exhausted} calls stopped by the budget");

    // Successes return: retries resume once calls refill the window.
    clock.advance(secs(11));
    for _ in 0..50 {
        assert_eq!(policy.call(|| Ok::<_, SvcError>(())), Ok(()));
    }
    let mut calls = 0;
    let out = policy.call(|| {
        calls += 1;
        if calls < 3 {
            Err(SvcError::Down(calls))
        } else {
            Ok(calls)
        }
    });
    assert_eq!(out, Ok(3));
}

#[test]
fn the_budget_floor_allows_retries_on_a_quiet_service() {
    let clock = VirtualClock::new();
    let budget = RetryBudget::ratio(10.0)
        .min_retries_per_sec(1)
        .window(secs(10))
        .clock(clock)
        .build()
        .unwrap();
    // 10 retries over the window, with no traffic at all.
    assert_eq!(budget.available(), 10.0);
    let granted = (0..20)
        .filter(|_| budget.try_retry(ErrorClass::Transient))
        .count();
    assert_eq!(granted, 10);
}

#[test]
fn budget_events_report_the_exhaustion() {
    let clock = VirtualClock::new();
    let budget = RetryBudget::ratio(0.0)
        .min_retries_per_sec(0)
        .clock(clock.clone())
        .build()
        .unwrap();
    let rec = Recorder::default();
    let policy = RetryPolicy::builder()
        .strategy(no_delay())
        .budget(budget)
        .on_event(rec.hook())
        .clock(clock)
        .build()
        .unwrap();
    let err = policy
        .execute(|| Err::<(), _>(SvcError::Down(1)))
        .unwrap_err();
    assert_eq!(err.attempts(), 1);
    assert_eq!(rec.trace(), [(EventKind::GaveUp, 1)]);
    assert_eq!(rec.last().stop, Some(StopReason::BudgetExhausted));
}

#[test]
fn ratio_budget_is_exact_under_contention() {
    let clock = VirtualClock::new();
    let budget = RetryBudget::ratio(50.0)
        .min_retries_per_sec(0)
        .window(secs(10))
        .clock(clock)
        .build()
        .unwrap();
    let threads = 8;
    let per_thread = 10_000;
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (budget, barrier) = (budget.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                for _ in 0..per_thread {
                    budget.record_call();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    // Not one deposit lost: 50 % of 80 000 calls.
    assert_eq!(budget.available(), 40_000.0);

    let granted = Arc::new(AtomicU64::new(0));
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (budget, barrier, granted) = (budget.clone(), barrier.clone(), granted.clone());
            std::thread::spawn(move || {
                barrier.wait();
                for _ in 0..10_000 {
                    if budget.try_retry(ErrorClass::Transient) {
                        granted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    // 80 000 requests for 40 000 tokens: exactly 40 000 granted, none twice.
    assert_eq!(granted.load(Ordering::Relaxed), 40_000);
    assert_eq!(budget.available(), 0.0);
}

#[test]
fn token_buckets_are_exact_under_contention() {
    let budget = RetryBudget::token_bucket(1000.0).build().unwrap();
    let granted = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let (budget, granted) = (budget.clone(), granted.clone());
            std::thread::spawn(move || {
                for _ in 0..1000 {
                    if budget.try_retry(ErrorClass::ServerError) {
                        granted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(granted.load(Ordering::Relaxed), 1000);
}

#[test]
fn aws_standard_costs_and_refunds() {
    let b = RetryBudget::aws_standard();
    assert!(b.try_retry(ErrorClass::RateLimit));
    assert_eq!(b.available(), 495.0, "a throttling retry costs 5");
    assert!(b.try_retry(ErrorClass::ServerError));
    assert_eq!(b.available(), 481.0, "any other retry costs 14");
    b.record_success(Some(ErrorClass::ServerError));
    assert_eq!(
        b.available(),
        495.0,
        "success after retries returns the last cost"
    );
    b.record_success(None);
    assert_eq!(b.available(), 496.0, "a first-try success adds 1");
    for _ in 0..10 {
        b.record_success(None);
    }
    assert_eq!(b.available(), 500.0, "capped at the quota");
    let granted = (0..100)
        .filter(|_| b.try_retry(ErrorClass::Transient))
        .count();
    assert_eq!(granted, 35, "500 / 14 = 35 retries, then no retry");
}

#[test]
fn grpc_throttling_follows_grfc_a6() {
    let b = RetryBudget::grpc(10.0, 0.5).unwrap();
    // Every failed attempt takes a token first (A6), then the retry is allowed above 5.
    let granted = (0..10)
        .filter(|_| {
            b.record_failure();
            b.try_retry(ErrorClass::Transient)
        })
        .count();
    assert_eq!(granted, 4, "10 -> 9, 8, 7, 6 retry; at 5 (= max/2) no more");
    assert_eq!(b.available(), 0.0);
    b.record_success(None);
    b.record_success(None);
    assert_eq!(b.available(), 1.0);
    assert!(RetryBudget::grpc(2000.0, 0.1).is_err());
    assert!(RetryBudget::grpc(10.0, f64::NAN).is_err());
}

#[test]
fn budgets_reject_bad_settings_with_every_problem() {
    let err = RetryBudget::ratio(f64::NAN)
        .window(Duration::ZERO)
        .cost(ErrorClass::RateLimit, -1.0)
        .build()
        .unwrap_err();
    let settings: Vec<_> = err
        .problems()
        .iter()
        .map(reflexio::ConfigProblem::setting)
        .collect();
    assert_eq!(settings, ["percent", "window", "cost"]);
}

// ---------- circuit breaker ----------

fn breaker(clock: &VirtualClock) -> CircuitBreaker {
    CircuitBreaker::builder()
        .failure_rate(0.5)
        .min_calls(4)
        .window(secs(30))
        .open_for(secs(10))
        .clock(clock.clone())
        .build()
        .unwrap()
}

#[test]
fn the_breaker_opens_rejects_half_opens_and_closes() {
    let clock = VirtualClock::new();
    let cb = breaker(&clock);
    let rec = Recorder::default();
    let policy = RetryPolicy::builder()
        .strategy(no_delay())
        .max_attempts(1)
        .circuit_breaker(cb.clone())
        .on_event(rec.hook())
        .clock(clock.clone())
        .build()
        .unwrap();
    let calls = AtomicU32::new(0);
    let down = || {
        calls.fetch_add(1, Ordering::Relaxed);
        Err::<(), _>(SvcError::Down(0))
    };
    for _ in 0..4 {
        let _ = policy.call(down);
    }
    assert_eq!(cb.state(), CircuitState::Open);
    assert!(
        rec.events()
            .iter()
            .any(|e| e.kind == EventKind::CircuitOpened)
    );
    assert_eq!(calls.load(Ordering::Relaxed), 4);

    // Open: fail fast, without calling the operation.
    let err = policy.call(down).unwrap_err();
    assert_eq!(err, SvcError::Rejected(CircuitOpen::new(secs(10))));
    assert_eq!(calls.load(Ordering::Relaxed), 4);
    let tail: Vec<_> = rec
        .events()
        .iter()
        .rev()
        .take(2)
        .map(|e| (e.kind, e.stop))
        .collect();
    assert_eq!(
        tail,
        [
            (EventKind::GaveUp, Some(StopReason::CircuitOpen)),
            (EventKind::CircuitRejected, None)
        ]
    );

    // After the open period: one probe; it fails and re-opens the circuit.
    clock.advance(secs(10));
    assert_eq!(cb.state(), CircuitState::HalfOpen);
    let _ = policy.call(down);
    assert_eq!(calls.load(Ordering::Relaxed), 5);
    assert_eq!(cb.state(), CircuitState::Open);

    // Next probe succeeds: closed again, and the old failures are forgotten.
    clock.advance(secs(10));
    assert_eq!(policy.call(|| Ok::<_, SvcError>(7)), Ok(7));
    assert_eq!(cb.state(), CircuitState::Closed);
    let kinds: Vec<_> = rec.events().iter().map(|e| e.kind).collect();
    let n = kinds.len();
    assert_eq!(
        kinds[n - 3..],
        [
            EventKind::CircuitHalfOpen,
            EventKind::CircuitClosed,
            EventKind::Success
        ]
    );
    let _ = policy.call(down);
    assert_eq!(
        cb.state(),
        CircuitState::Closed,
        "one failure after closing is not 50 % of 4"
    );
}

#[test]
fn permanent_errors_never_open_the_breaker() {
    let clock = VirtualClock::new();
    let cb = breaker(&clock);
    let policy = RetryPolicy::builder()
        .circuit_breaker(cb.clone())
        .clock(clock)
        .build()
        .unwrap();
    for _ in 0..100 {
        let _ = policy.call(|| Err::<(), _>(SvcError::NotFound));
    }
    assert_eq!(cb.state(), CircuitState::Closed);
}

#[test]
fn a_breaker_opening_mid_retry_returns_the_last_real_error() {
    let clock = VirtualClock::new();
    let cb = breaker(&clock);
    let rec = Recorder::default();
    let policy = RetryPolicy::builder()
        .strategy(constant(ms(100)))
        .max_attempts(10)
        .circuit_breaker(cb)
        .on_event(rec.hook())
        .clock(clock)
        .build()
        .unwrap();
    let mut n = 0;
    let err = policy
        .execute(|| {
            n += 1;
            Err::<(), _>(SvcError::Down(n))
        })
        .unwrap_err();
    assert_eq!(
        n, 4,
        "opened after 4 failures, the 5th attempt was rejected"
    );
    assert_eq!(err.stop_reason(), StopReason::CircuitOpen);
    assert_eq!(err.into_inner(), SvcError::Down(4));
}

#[test]
fn breaker_settings_are_validated() {
    let err = CircuitBreaker::builder()
        .failure_rate(1.5)
        .min_calls(0)
        .probes(0)
        .build()
        .unwrap_err();
    assert_eq!(err.problems().len(), 3);
}

// ---------- attempt timeouts ----------

/// Counts the attempt futures that were dropped.
struct OnDrop(Arc<AtomicU32>);

impl Drop for OnDrop {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test(start_paused = true)]
async fn a_timed_out_attempt_is_cancelled_and_counts_as_transient() {
    let rec = Recorder::default();
    let policy = AsyncRetryPolicy::builder()
        .strategy(constant(secs(1)))
        .attempt_timeout(ms(500))
        .max_attempts(3)
        .on_event(rec.hook())
        .build()
        .unwrap();
    let dropped = Arc::new(AtomicU32::new(0));
    let start = tokio::time::Instant::now();
    let mut n = 0;
    let out = policy
        .call(|| {
            n += 1;
            let guard = OnDrop(dropped.clone());
            let attempt = n;
            async move {
                let _guard = guard;
                if attempt < 3 {
                    pending::<()>().await; // hangs: must be cut at 500 ms
                }
                Ok::<_, SvcError>(attempt)
            }
        })
        .await;
    assert_eq!(out, Ok(3));
    assert_eq!(
        dropped.load(Ordering::SeqCst),
        3,
        "each attempt's future was dropped"
    );
    assert_eq!(start.elapsed(), ms(500) * 2 + secs(2));
    let events = rec.events();
    assert_eq!(events[0].class, Some(ErrorClass::Transient));
    assert_eq!(events[0].error.as_deref(), Some("TimedOut"));
}

#[test]
fn attempt_timeouts_follow_the_virtual_clock() {
    let clock = VirtualClock::new();
    let policy = AsyncRetryPolicy::builder()
        .strategy(no_delay())
        .attempt_timeout(secs(1))
        .max_attempts(2)
        .clock(clock.clone())
        .build()
        .unwrap();
    let c = clock.clone();
    let out = futures::executor::block_on(policy.execute(|| {
        let c = c.clone();
        async move {
            c.advance(secs(2)); // the attempt's work takes 2 virtual seconds...
            pending::<()>().await; // ...and then hangs
            Ok::<(), SvcError>(())
        }
    }));
    let err = out.unwrap_err();
    assert_eq!(err.attempts(), 2);
    assert_eq!(err.last_class(), Some(ErrorClass::Transient));
    assert_eq!(err.into_inner(), SvcError::TimedOut);
    assert!(clock.sleeps().is_empty(), "timeouts are not backoff sleeps");

    // A quick attempt is not affected.
    let out = futures::executor::block_on(policy.call(|| async { Ok::<_, SvcError>(1) }));
    assert_eq!(out, Ok(1));
    assert!(
        AsyncRetryPolicy::<SvcError>::builder()
            .attempt_timeout(Duration::ZERO)
            .build()
            .is_err()
    );
}

// ---------- result retries ----------

#[test]
fn ok_values_can_be_retried_and_the_last_one_is_returned() {
    let clock = VirtualClock::new();
    let rec = Recorder::default();
    let policy = RetryPolicy::<SvcError>::builder()
        .strategy(constant(ms(10)))
        .max_attempts(3)
        .retry_if_ok(|status: &u16| (*status == 503).then_some(ErrorClass::ServerError))
        .on_event(rec.hook())
        .clock(clock.clone())
        .build()
        .unwrap();
    let mut replies = [503, 503, 200].into_iter();
    assert_eq!(policy.call(|| Ok(replies.next().unwrap())), Ok(200));
    assert_eq!(
        rec.trace(),
        [
            (EventKind::Retry, 1),
            (EventKind::Retry, 2),
            (EventKind::Success, 3)
        ]
    );
    assert_eq!(rec.events()[0].class, Some(ErrorClass::ServerError));

    // Out of attempts: `call` returns the last Ok value as it is; `execute` says it stopped
    // on it.
    let calls = AtomicU32::new(0);
    let out = policy.call(|| {
        calls.fetch_add(1, Ordering::Relaxed);
        Ok(503)
    });
    assert_eq!(out, Ok(503));
    assert_eq!(calls.load(Ordering::Relaxed), 3);
    let err = policy
        .execute(|| {
            calls.fetch_add(1, Ordering::Relaxed);
            Ok(503)
        })
        .unwrap_err();
    assert_eq!(err.rejected(), Some(&503));
    assert_eq!(err.stop_reason(), StopReason::MaxAttempts);
    calls.store(3, Ordering::Relaxed);
    assert_eq!(calls.load(Ordering::Relaxed), 3);
    assert_eq!(rec.last().stop, Some(StopReason::MaxAttempts));
}

/// Issue 14.6: a rejected value is visible in events (its status, and that it was a value),
/// and `execute` says the policy stopped on it, with why.
#[test]
fn rejected_values_show_in_events_and_in_execute() {
    let clock = VirtualClock::new();
    let recorder = Recorder::default();
    let policy = RetryPolicy::<SvcError>::builder()
        .strategy(constant(secs(1)))
        .max_attempts(3)
        .clock(clock.clone())
        .on_event(recorder.hook())
        .retry_if_ok(|status: &u16| {
            (*status >= 500).then(|| {
                Classification::new(reflexio::http::classify_status(*status)).with_status(*status)
            })
        })
        .build()
        .unwrap();
    let mut replies = [503_u16, 502, 504].into_iter();
    let err = policy.execute(|| Ok(replies.next().unwrap())).unwrap_err();
    assert_eq!(err.stop_reason(), StopReason::MaxAttempts);
    assert_eq!(err.rejected(), Some(&504));
    assert!(err.error().is_none());
    assert_eq!(
        err.to_string(),
        "gave up after 3 attempts (max_attempts) in 2s on a rejected value (server_error)"
    );
    let seen: Vec<_> = recorder
        .events()
        .iter()
        .map(|e| (e.kind, e.status, e.rejected, e.error.is_none()))
        .collect();
    assert_eq!(
        seen,
        [
            (EventKind::Retry, Some(503), true, true),
            (EventKind::Retry, Some(502), true, true),
            (EventKind::GaveUp, Some(504), true, true),
        ]
    );
    // `call` still returns the last value as `Ok`.
    let mut replies = [503_u16, 200].into_iter();
    assert_eq!(policy.call(|| Ok(replies.next().unwrap())), Ok(200));
    let err = policy.execute(|| Err(SvcError::NotFound)).unwrap_err();
    assert_eq!(err.into_last(), Err(SvcError::NotFound));
}

#[tokio::test]
async fn async_ok_values_can_carry_a_retry_after() {
    let clock = VirtualClock::new();
    let policy = AsyncRetryPolicy::<SvcError>::builder()
        .strategy(constant(ms(10)))
        .retry_if_ok(|status: &u16| {
            (*status == 429)
                .then(|| Classification::new(ErrorClass::RateLimit).with_retry_after(secs(3)))
        })
        .clock(clock.clone())
        .build()
        .unwrap();
    let mut replies = [429, 200].into_iter();
    let out = policy
        .call(|| std::future::ready(Ok(replies.next().unwrap())))
        .await;
    assert_eq!(out, Ok(200));
    assert_eq!(clock.sleeps(), [secs(3)]);
}

// ---------- abort ----------

#[test]
fn abort_is_checked_before_each_sleep() {
    let clock = VirtualClock::new();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let rec = Recorder::default();
    let policy = RetryPolicy::builder()
        .strategy(constant(secs(1)))
        .abort_if(move || flag.load(Ordering::SeqCst))
        .on_event(rec.hook())
        .clock(clock.clone())
        .build()
        .unwrap();
    let mut n = 0;
    let err = policy
        .execute(|| {
            n += 1;
            if n == 2 {
                stop.store(true, Ordering::SeqCst); // shutdown begins during attempt 2
            }
            Err::<(), _>(Scripted::new(ErrorClass::Transient, n))
        })
        .unwrap_err();
    assert_eq!(err.stop_reason(), StopReason::Aborted);
    assert_eq!(err.attempts(), 2);
    assert_eq!(clock.sleeps(), [secs(1)], "no sleep once aborted");
    assert_eq!(rec.last().stop, Some(StopReason::Aborted));
}

// ---------- execute ----------

#[test]
fn execute_reports_reason_attempts_class_elapsed_and_the_original_error() {
    let clock = VirtualClock::new();
    let policy = RetryPolicy::builder()
        .strategy(constant(secs(2)))
        .max_attempts(3)
        .clock(clock)
        .build()
        .unwrap();
    let mut n = 0;
    let err = policy
        .execute(|| {
            n += 1;
            Err::<(), _>(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("try {n}"),
            ))
        })
        .unwrap_err();
    assert_eq!(err.stop_reason(), StopReason::MaxAttempts);
    assert_eq!(err.attempts(), 3);
    assert_eq!(err.last_class(), Some(ErrorClass::Transient));
    assert_eq!(err.elapsed(), secs(4));
    // Display says why; the error is the source, so a chain printer shows it once.
    assert_eq!(
        err.to_string(),
        "gave up after 3 attempts (max_attempts) in 4s"
    );
    assert_eq!(err.source().unwrap().to_string(), "try 3");
    assert_eq!(err.into_inner().kind(), std::io::ErrorKind::TimedOut);

    let ok = policy.execute(|| Ok::<_, std::io::Error>(5));
    assert_eq!(ok.unwrap(), 5);
}

#[tokio::test]
async fn async_execute_matches() {
    let policy = AsyncRetryPolicy::builder()
        .strategy(no_delay())
        .clock(VirtualClock::new())
        .build()
        .unwrap();
    let err = policy
        .execute(|| async { Err::<(), _>(SvcError::NotFound) })
        .await
        .unwrap_err();
    assert_eq!(
        (err.stop_reason(), err.attempts()),
        (StopReason::NonRetryable, 1)
    );
    assert_eq!(err.last_class(), Some(ErrorClass::Permanent));
}

#[test]
fn describe_shows_limits_strategies_budget_and_breaker() {
    let clock = VirtualClock::new();
    let policy = RetryPolicy::<SvcError>::builder()
        .operation("charge")
        .strategy_for(ErrorClass::RateLimit, constant(secs(2)))
        .max_retries_for(ErrorClass::RateLimit, 3)
        .budget(RetryBudget::aws_standard())
        .circuit_breaker(breaker(&clock))
        .build()
        .unwrap();
    let text = policy.describe();
    for needle in [
        "retry policy `charge`",
        "max attempts: 6",
        "deadline: 1m",
        "rate_limit: constant(2s), at most 3 retries",
        "budget: token bucket (500 tokens)",
        "circuit breaker (opens at 50% failures",
    ] {
        assert!(text.contains(needle), "{needle:?} not in:\n{text}");
    }
}
