//! The circuit breaker and the retry budgets under the faults they exist for: cancelled and
//! panicking calls, probes that never report back, long idle, clock jumps, extreme settings.
//! Each test is named after the promise it checks (issue 11's points, in order).
// Budget amounts are exact integers underneath, so comparing their `f64` views exactly is right.
#![allow(clippy::float_cmp)]

mod support;

use std::future::{Future, pending};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures::executor::block_on;
use reflexio::strategies::{BackoffContext, Strategy, constant, no_delay};
use reflexio::testing::VirtualClock;
use reflexio::{
    AsyncRetryPolicy, CircuitBreaker, CircuitOpen, CircuitState, Classification, Classify,
    ErrorClass, EventKind, RetryBudget, RetryPolicy, StopReason,
};
use support::{Recorder, ms, secs};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Svc {
    Down(u32),
    Rejected(CircuitOpen),
}

impl Classify for Svc {
    fn classification(&self) -> Classification {
        match self {
            Svc::Down(_) => ErrorClass::ServerError.into(),
            Svc::Rejected(e) => e.classification(),
        }
    }
}

impl From<CircuitOpen> for Svc {
    fn from(e: CircuitOpen) -> Self {
        Svc::Rejected(e)
    }
}

impl From<reflexio::AttemptTimedOut> for Svc {
    fn from(_: reflexio::AttemptTimedOut) -> Self {
        Svc::Down(0)
    }
}

/// Polls `fut` once, with a waker that does nothing.
fn poll_once<F: Future>(fut: std::pin::Pin<&mut F>) -> Poll<F::Output> {
    fut.poll(&mut Context::from_waker(Waker::noop()))
}

/// A future that is pending until `gate` opens, then gives `out`.
async fn gated<T>(gate: Arc<AtomicBool>, out: T) -> T {
    std::future::poll_fn(|_| {
        if gate.load(Ordering::Acquire) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    out
}

/// A breaker opened by two failures, with its open period over: the next call is a probe.
fn breaker_ready_to_probe(clock: &VirtualClock, probes: u32) -> CircuitBreaker {
    let cb = CircuitBreaker::builder()
        .min_calls(2)
        .failure_rate(0.5)
        .open_for(secs(10))
        .probes(probes)
        .clock(clock.clone())
        .build()
        .unwrap();
    cb.record_outcome(Some(ErrorClass::ServerError));
    cb.record_outcome(Some(ErrorClass::ServerError));
    assert_eq!(cb.state(), CircuitState::Open);
    clock.advance(secs(10));
    assert_eq!(cb.state(), CircuitState::HalfOpen);
    cb
}

fn async_policy(cb: &CircuitBreaker, clock: &VirtualClock) -> AsyncRetryPolicy<Svc> {
    AsyncRetryPolicy::builder()
        .strategy(no_delay())
        .max_attempts(1)
        .circuit_breaker(cb.clone())
        .clock(clock.clone())
        .build()
        .unwrap()
}

fn sync_policy(cb: &CircuitBreaker, clock: &VirtualClock) -> RetryPolicy<Svc> {
    RetryPolicy::builder()
        .strategy(no_delay())
        .max_attempts(1)
        .circuit_breaker(cb.clone())
        .clock(clock.clone())
        .build()
        .unwrap()
}

/// The circuit is not wedged: the next call is let through as a probe and its success closes
/// the circuit.
fn assert_probe_closes(cb: &CircuitBreaker, clock: &VirtualClock) {
    let policy = sync_policy(cb, clock);
    assert_eq!(
        policy.call(|| Ok::<_, Svc>(1)),
        Ok(1),
        "a probe goes through"
    );
    assert_eq!(cb.state(), CircuitState::Closed);
}

// ---------- 1. a lost probe gives its place back ----------

#[test]
fn a_cancelled_half_open_probe_gives_its_place_back() {
    let clock = VirtualClock::new();
    let cb = breaker_ready_to_probe(&clock, 1);
    let policy = async_policy(&cb, &clock);
    {
        // The probe's call is polled once (its attempt is in flight), then dropped: a
        // `select!`, a timeout, a client that disconnected.
        let mut call = pin!(policy.call(pending::<Result<u32, Svc>>));
        assert!(poll_once(call.as_mut()).is_pending());
    }
    assert_eq!(cb.state(), CircuitState::HalfOpen);
    assert_probe_closes(&cb, &clock);
}

#[test]
fn every_lost_probe_of_several_gives_its_place_back() {
    let clock = VirtualClock::new();
    let cb = breaker_ready_to_probe(&clock, 3);
    let policy = async_policy(&cb, &clock);
    for _ in 0..3 {
        let mut call = pin!(policy.call(pending::<Result<u32, Svc>>));
        assert!(poll_once(call.as_mut()).is_pending());
    }
    // Three probes still needed, and admitted.
    for i in 0..3 {
        assert_eq!(cb.state(), CircuitState::HalfOpen, "probe {i}");
        assert_eq!(block_on(policy.call(|| async { Ok::<_, Svc>(i) })), Ok(i));
    }
    assert_eq!(cb.state(), CircuitState::Closed);
}

/// Cancelled during an attempt that runs under an attempt timeout (the attempt and its timer
/// are polled together): the probe's place comes back too.
#[test]
fn a_probe_cancelled_under_an_attempt_timeout_gives_its_place_back() {
    let clock = VirtualClock::new();
    let cb = breaker_ready_to_probe(&clock, 1);
    let policy = AsyncRetryPolicy::builder()
        .strategy(no_delay())
        .max_attempts(1)
        .attempt_timeout(secs(5))
        .circuit_breaker(cb.clone())
        .clock(clock.clone())
        .build()
        .unwrap();
    {
        let mut call = pin!(policy.call(pending::<Result<u32, Svc>>));
        assert!(poll_once(call.as_mut()).is_pending());
    }
    assert_probe_closes(&cb, &clock);
}

/// The generated loop of an async `#[retry]` function holds the same call state: a probe
/// dropped mid-attempt gives its place back.
mod retry_functions {
    use std::sync::LazyLock;

    use super::*;
    use reflexio::retry;

    static CLOCK: LazyLock<VirtualClock> = LazyLock::new(VirtualClock::new);
    static BREAKER: LazyLock<CircuitBreaker> = LazyLock::new(|| breaker_ready_to_probe(&CLOCK, 1));

    #[retry(
        max_attempts = 1,
        strategy = no_delay(),
        circuit_breaker = BREAKER.clone(),
        clock = CLOCK.clone()
    )]
    async fn probe(hang: bool) -> Result<u32, Svc> {
        if hang {
            pending::<()>().await;
        }
        Ok(1)
    }

    #[test]
    fn a_cancelled_probe_of_a_retry_function_gives_its_place_back() {
        {
            let mut call = pin!(probe(true));
            assert!(poll_once(call.as_mut()).is_pending());
        }
        assert_eq!(BREAKER.state(), CircuitState::HalfOpen);
        assert_eq!(block_on(probe(false)), Ok(1), "the next call is the probe");
        assert_eq!(BREAKER.state(), CircuitState::Closed);
    }
}

/// A hook that panics on every event, the circuit's own included: the probe's success still
/// closes the circuit (hooks are contained; the breaker was recorded before the event).
#[test]
fn a_panicking_hook_leaves_the_breaker_usable() {
    let clock = VirtualClock::new();
    let cb = breaker_ready_to_probe(&clock, 1);
    let policy = RetryPolicy::builder()
        .strategy(no_delay())
        .circuit_breaker(cb.clone())
        .clock(clock.clone())
        .on_event(|_| panic!("the hook panics"))
        .build()
        .unwrap();
    assert_eq!(policy.call(|| Ok::<_, Svc>(3)), Ok(3));
    assert_eq!(cb.state(), CircuitState::Closed);
}

#[test]
fn a_panicking_probe_gives_its_place_back_sync_and_async() {
    // The operation panics.
    let clock = VirtualClock::new();
    let cb = breaker_ready_to_probe(&clock, 1);
    let policy = sync_policy(&cb, &clock);
    let panicked = catch_unwind(AssertUnwindSafe(|| {
        policy.call(|| -> Result<u32, Svc> { panic!("the operation panics") })
    }));
    assert!(panicked.is_err());
    assert_probe_closes(&cb, &clock);

    let clock = VirtualClock::new();
    let cb = breaker_ready_to_probe(&clock, 1);
    let policy = async_policy(&cb, &clock);
    let panicked = catch_unwind(AssertUnwindSafe(|| {
        block_on(policy.call(|| async { panic!("the operation panics") as Result<u32, Svc> }))
    }));
    assert!(panicked.is_err());
    assert_probe_closes(&cb, &clock);
}

#[test]
fn a_panicking_classifier_or_ok_rule_leaves_the_breaker_usable() {
    let clock = VirtualClock::new();
    let cb = breaker_ready_to_probe(&clock, 1);
    let policy = RetryPolicy::builder()
        .classifier(|_: &Svc| -> ErrorClass { panic!("the classifier panics") })
        .circuit_breaker(cb.clone())
        .clock(clock.clone())
        .build()
        .unwrap();
    let panicked = catch_unwind(AssertUnwindSafe(|| {
        policy.call(|| Err::<u32, _>(Svc::Down(1)))
    }));
    assert!(panicked.is_err());
    assert_probe_closes(&cb, &clock);

    let clock = VirtualClock::new();
    let cb = breaker_ready_to_probe(&clock, 1);
    let policy = AsyncRetryPolicy::<Svc>::builder()
        .retry_if_ok(|_: &u32| -> Option<ErrorClass> { panic!("the rule panics") })
        .circuit_breaker(cb.clone())
        .clock(clock.clone())
        .build()
        .unwrap();
    let panicked = catch_unwind(AssertUnwindSafe(|| {
        block_on(policy.call(|| async { Ok::<u32, Svc>(1) }))
    }));
    assert!(panicked.is_err());
    assert_probe_closes(&cb, &clock);
}

/// A strategy that panics: the failure was recorded before, so the circuit re-opened, and it
/// probes again after its open period.
#[derive(Debug)]
struct Panicking;

impl Strategy for Panicking {
    fn delay(&self, _: &BackoffContext, _: f64) -> Duration {
        panic!("the strategy panics")
    }
}

#[test]
fn a_panicking_strategy_leaves_the_breaker_usable() {
    let clock = VirtualClock::new();
    let cb = breaker_ready_to_probe(&clock, 1);
    let policy = RetryPolicy::builder()
        .strategy(Panicking)
        .circuit_breaker(cb.clone())
        .clock(clock.clone())
        .build()
        .unwrap();
    let panicked = catch_unwind(AssertUnwindSafe(|| {
        policy.call(|| Err::<u32, _>(Svc::Down(1)))
    }));
    assert!(panicked.is_err());
    assert_eq!(
        cb.state(),
        CircuitState::Open,
        "the probe's failure counted"
    );
    clock.advance(secs(10));
    assert_probe_closes(&cb, &clock);
}

#[test]
fn a_probe_that_never_reports_back_is_replaced_after_the_probe_timeout() {
    let clock = VirtualClock::new();
    let cb = breaker_ready_to_probe(&clock, 1);
    let policy = async_policy(&cb, &clock);
    // A probe whose future is leaked: it never reports back, and is never dropped.
    let mut call = Box::pin(policy.call(pending::<Result<u32, Svc>>));
    assert!(poll_once(call.as_mut()).is_pending());
    std::mem::forget(call);
    // Until the probe timeout (default: `open_for`), calls are rejected, with the real wait.
    clock.advance(secs(4));
    let sync = sync_policy(&cb, &clock);
    match sync.call(|| Ok::<_, Svc>(0)) {
        Err(Svc::Rejected(open)) => assert_eq!(open.retry_in(), secs(6)),
        other => panic!("expected a rejection, got {other:?}"),
    }
    clock.advance(secs(6));
    assert_probe_closes(&cb, &clock);
}

#[test]
fn the_probe_timeout_can_be_set() {
    let clock = VirtualClock::new();
    let cb = CircuitBreaker::builder()
        .min_calls(1)
        .open_for(secs(10))
        .probe_timeout(secs(2))
        .clock(clock.clone())
        .build()
        .unwrap();
    cb.record_outcome(Some(ErrorClass::Transient));
    clock.advance(secs(10));
    let policy = async_policy(&cb, &clock);
    let mut call = Box::pin(policy.call(pending::<Result<u32, Svc>>));
    assert!(poll_once(call.as_mut()).is_pending());
    clock.advance(ms(1999));
    assert!(matches!(
        sync_policy(&cb, &clock).call(|| Ok::<_, Svc>(0)),
        Err(Svc::Rejected(_))
    ));
    clock.advance(ms(1));
    assert_probe_closes(&cb, &clock);
    drop(call);
}

// ---------- 2. a probe counts only in its own half-open period ----------

#[test]
fn a_late_probe_from_an_earlier_half_open_period_does_not_count() {
    let clock = VirtualClock::new();
    let cb = CircuitBreaker::builder()
        .min_calls(1)
        .open_for(secs(10))
        .probe_timeout(secs(5))
        .probes(2)
        .clock(clock.clone())
        .build()
        .unwrap();
    cb.record_outcome(Some(ErrorClass::ServerError));
    clock.advance(secs(10));
    let policy = async_policy(&cb, &clock);
    let gates: Vec<_> = (0..4).map(|_| Arc::new(AtomicBool::new(false))).collect();
    let call = |i: usize| {
        let gate = gates[i].clone();
        Box::pin(policy.call(move || gated(gate.clone(), Ok::<_, Svc>(i))))
    };
    // Period 1: probes A and B, which never report back in time.
    let mut a = call(0);
    let mut b = call(1);
    assert!(poll_once(a.as_mut()).is_pending());
    assert!(poll_once(b.as_mut()).is_pending());
    // Period 2, after the probe timeout: probes C and D.
    clock.advance(secs(5));
    let mut c = call(2);
    let mut d = call(3);
    assert!(poll_once(c.as_mut()).is_pending());
    assert!(poll_once(d.as_mut()).is_pending());
    // A succeeds late, then C: one success of the current period, D still in flight.
    gates[0].store(true, Ordering::Release);
    assert_eq!(poll_once(a.as_mut()), Poll::Ready(Ok(0)));
    gates[2].store(true, Ordering::Release);
    assert_eq!(poll_once(c.as_mut()), Poll::Ready(Ok(2)));
    assert_eq!(
        cb.state(),
        CircuitState::HalfOpen,
        "A's success is not C's period's"
    );
    gates[3].store(true, Ordering::Release);
    assert_eq!(poll_once(d.as_mut()), Poll::Ready(Ok(3)));
    assert_eq!(cb.state(), CircuitState::Closed);
    drop(b);
}

#[test]
fn a_late_probe_from_before_a_reopening_does_not_count() {
    let clock = VirtualClock::new();
    let cb = CircuitBreaker::builder()
        .min_calls(1)
        .open_for(secs(10))
        .probes(2)
        .clock(clock.clone())
        .build()
        .unwrap();
    cb.record_outcome(Some(ErrorClass::ServerError));
    clock.advance(secs(10));
    let policy = async_policy(&cb, &clock);
    let gates: Vec<_> = (0..3).map(|_| Arc::new(AtomicBool::new(false))).collect();
    let call = |i: usize| {
        let gate = gates[i].clone();
        Box::pin(policy.call(move || gated(gate.clone(), Ok::<_, Svc>(i))))
    };
    // Period 1: probe A in flight, probe B fails: the circuit opens again.
    let mut a = call(0);
    assert!(poll_once(a.as_mut()).is_pending());
    assert_eq!(
        block_on(policy.call(|| async { Err::<usize, _>(Svc::Down(1)) })),
        Err(Svc::Down(1))
    );
    assert_eq!(cb.state(), CircuitState::Open);
    // Period 2: probes C and D in flight; A succeeds late, then C.
    clock.advance(secs(10));
    let mut c = call(1);
    let mut d = call(2);
    assert!(poll_once(c.as_mut()).is_pending());
    assert!(poll_once(d.as_mut()).is_pending());
    gates[0].store(true, Ordering::Release);
    assert_eq!(poll_once(a.as_mut()), Poll::Ready(Ok(0)));
    gates[1].store(true, Ordering::Release);
    assert_eq!(poll_once(c.as_mut()), Poll::Ready(Ok(1)));
    assert_eq!(
        cb.state(),
        CircuitState::HalfOpen,
        "A's success is not this period's"
    );
    gates[2].store(true, Ordering::Release);
    assert_eq!(poll_once(d.as_mut()), Poll::Ready(Ok(2)));
    assert_eq!(cb.state(), CircuitState::Closed);
}

// ---------- 3. outcomes right after closing count ----------

#[test]
fn failures_right_after_the_circuit_closes_count() {
    let clock = VirtualClock::new();
    let cb = CircuitBreaker::builder()
        .min_calls(5)
        .failure_rate(0.5)
        .open_for(secs(1))
        .clock(clock.clone())
        .build()
        .unwrap();
    for _ in 0..5 {
        cb.record_outcome(Some(ErrorClass::ServerError));
    }
    assert_eq!(cb.state(), CircuitState::Open);
    clock.advance(secs(1));
    cb.record_outcome(None); // the probe succeeds
    assert_eq!(cb.state(), CircuitState::Closed);
    for i in 1..=5 {
        cb.record_outcome(Some(ErrorClass::ServerError));
        if i < 5 {
            assert_eq!(cb.state(), CircuitState::Closed, "after {i} failures");
        }
    }
    assert_eq!(
        cb.state(),
        CircuitState::Open,
        "5 failures in a row open it"
    );
}

// ---------- 4. any idle length, any clock jump ----------

#[test]
fn long_idle_does_not_resurrect_old_failures() {
    // A 100 ms window: 10 ms slots. 2^30 slots is 12.4 days; the other jumps go far beyond.
    let slot = ms(10);
    for jump in [
        slot * (1 << 30),
        Duration::from_nanos(1 << 31),
        Duration::from_nanos(1 << 40),
        Duration::from_nanos(1 << 63),
    ] {
        let clock = VirtualClock::new();
        let cb = CircuitBreaker::builder()
            .min_calls(10)
            .failure_rate(0.5)
            .window(ms(100))
            .clock(clock.clone())
            .build()
            .unwrap();
        for _ in 0..6 {
            cb.record_outcome(Some(ErrorClass::ServerError));
        }
        clock.advance(jump);
        for _ in 0..4 {
            cb.record_outcome(Some(ErrorClass::ServerError));
        }
        assert_eq!(cb.state(), CircuitState::Closed, "after a jump of {jump:?}");
        for _ in 0..6 {
            cb.record_outcome(Some(ErrorClass::ServerError));
        }
        assert_eq!(cb.state(), CircuitState::Open, "after a jump of {jump:?}");
    }
}

#[test]
fn a_ratio_budget_counts_new_calls_after_any_idle_length() {
    for idle in [
        ms(10) * ((1 << 30) - 1),
        ms(10) * (1 << 30),
        Duration::from_nanos(1 << 40),
        Duration::from_nanos(1 << 63),
    ] {
        let clock = VirtualClock::new();
        let budget = RetryBudget::ratio(10.0)
            .min_retries_per_sec(0)
            .window(ms(100))
            .clock(clock.clone())
            .build()
            .unwrap();
        for _ in 0..500 {
            budget.record_call();
        }
        clock.advance(idle);
        for _ in 0..1000 {
            budget.record_call();
        }
        assert_eq!(budget.available(), 100.0, "after {idle:?} idle");
    }
}

// ---------- 5, 6. ratio budgets are exact ----------

#[test]
fn a_ratio_budget_keeps_limiting_past_any_slot_size() {
    let clock = VirtualClock::new();
    let budget = RetryBudget::ratio(0.0)
        .min_retries_per_sec(5000)
        .window(secs(3600))
        .cost(ErrorClass::Transient, 1000.0)
        .clock(clock)
        .build()
        .unwrap();
    let granted = (0..40_000)
        .filter(|_| budget.try_retry(ErrorClass::Transient))
        .count();
    assert_eq!(granted, 18_000, "5000/s over 3600 s at 1000 tokens each");
}

#[test]
fn small_ratios_are_exact() {
    for (percent, calls, expected) in [(0.01, 20_000, 2), (0.15, 1000, 1), (0.3, 1000, 3)] {
        let budget = RetryBudget::ratio(percent)
            .min_retries_per_sec(0)
            .clock(VirtualClock::new())
            .build()
            .unwrap();
        for _ in 0..calls {
            budget.record_call();
        }
        let granted = (0..10)
            .filter(|_| budget.try_retry(ErrorClass::Transient))
            .count();
        assert_eq!(granted, expected, "{percent} % of {calls} calls");
    }
}

// ---------- 7. a retry rejected after its sleep returns the last error ----------

#[test]
fn a_retry_rejected_by_the_breaker_after_its_sleep_returns_the_last_error() {
    let clock = VirtualClock::new();
    let cb = CircuitBreaker::builder()
        .min_calls(100)
        .clock(clock.clone())
        .build()
        .unwrap();
    // While the call sleeps, the circuit opens (other calls failing): the retry is rejected.
    let tripper = cb.clone();
    let budget = RetryBudget::token_bucket(10.0).build().unwrap();
    let policy = RetryPolicy::builder()
        .strategy(constant(secs(1)))
        .circuit_breaker(cb.clone())
        .budget(budget.clone())
        .clock(clock.clone())
        .on_event(move |e| {
            if e.kind == EventKind::Retry {
                for _ in 0..100 {
                    tripper.record_outcome(Some(ErrorClass::ServerError));
                }
            }
        })
        .build()
        .unwrap();
    assert_eq!(
        policy.call(|| Err::<u32, _>(Svc::Down(7))),
        Err(Svc::Down(7))
    );
    assert_eq!(cb.state(), CircuitState::Open);
    assert_eq!(
        budget.available(),
        10.0,
        "the rejected retry's token came back"
    );

    let clock = VirtualClock::new();
    let cb = CircuitBreaker::builder()
        .min_calls(100)
        .clock(clock.clone())
        .build()
        .unwrap();
    let tripper = cb.clone();
    let policy = RetryPolicy::builder()
        .strategy(constant(secs(1)))
        .circuit_breaker(cb.clone())
        .clock(clock.clone())
        .on_event(move |e| {
            if e.kind == EventKind::Retry {
                for _ in 0..100 {
                    tripper.record_outcome(Some(ErrorClass::ServerError));
                }
            }
        })
        .build()
        .unwrap();
    let err = policy.execute(|| Err::<u32, _>(Svc::Down(8))).unwrap_err();
    assert_eq!(err.stop_reason(), StopReason::CircuitOpen);
    assert_eq!(err.attempts(), 1);
    assert_eq!(err.into_inner(), Svc::Down(8));
}

// ---------- 8. a retry that never starts costs nothing ----------

#[test]
fn a_retry_cancelled_during_its_sleep_gives_its_tokens_back() {
    let bucket = RetryBudget::token_bucket(1.0).build().unwrap();
    let ratio = RetryBudget::ratio(0.0)
        .min_retries_per_sec(1)
        .window(secs(1))
        .clock(VirtualClock::new())
        .build()
        .unwrap();
    for budget in [bucket, ratio] {
        let policy = AsyncRetryPolicy::builder()
            .strategy(constant(secs(1)))
            .budget(budget.clone())
            .sleeper(|_| pending::<()>())
            .build()
            .unwrap();
        {
            let mut call = pin!(policy.call(|| async { Err::<u32, _>(Svc::Down(1)) }));
            assert!(
                poll_once(call.as_mut()).is_pending(),
                "sleeping before the retry"
            );
            assert_eq!(budget.available(), 0.0, "the retry's token is taken");
        }
        assert_eq!(budget.available(), 1.0, "{budget}: given back");
    }
}

// ---------- 9. state events carry the class that caused them ----------

#[test]
fn circuit_events_carry_the_class_of_the_failure_that_caused_them() {
    let clock = VirtualClock::new();
    let cb = CircuitBreaker::builder()
        .min_calls(1)
        .clock(clock.clone())
        .build()
        .unwrap();
    let recorder = Recorder::default();
    let policy = RetryPolicy::builder()
        .strategy(no_delay())
        .max_attempts(1)
        .circuit_breaker(cb.clone())
        .clock(clock.clone())
        .on_event(recorder.hook())
        .build()
        .unwrap();
    let _ = policy.call(|| Err::<u32, _>(Svc::Down(1)));
    let opened = recorder
        .events()
        .into_iter()
        .find(|e| e.kind == EventKind::CircuitOpened)
        .expect("the failure opened the circuit");
    assert_eq!(opened.class, Some(ErrorClass::ServerError));
}

// ---------- 10. gRPC throttling charges every failed attempt ----------

#[test]
fn grpc_throttling_charges_every_failed_attempt() {
    let budget = RetryBudget::grpc(10.0, 0.5).unwrap();
    let policy = |attempts| {
        RetryPolicy::builder()
            .strategy(no_delay())
            .max_attempts(attempts)
            .budget(budget.clone())
            .clock(VirtualClock::new())
            .build()
            .unwrap()
    };
    let err = policy(4)
        .execute(|| Err::<u32, _>(Svc::Down(1)))
        .unwrap_err();
    assert_eq!(err.stop_reason(), StopReason::MaxAttempts);
    assert_eq!(budget.available(), 6.0, "4 failed attempts, 4 tokens");
    // Below the threshold (5), a failure is not retried, and still charged.
    let err = policy(4)
        .execute(|| Err::<u32, _>(Svc::Down(1)))
        .unwrap_err();
    assert_eq!(
        (err.stop_reason(), err.attempts()),
        (StopReason::BudgetExhausted, 1)
    );
    assert_eq!(budget.available(), 5.0);

    // A failure stopped by the attempt cap is charged too: a 2-attempt call takes 2.
    let budget = RetryBudget::grpc(10.0, 0.5).unwrap();
    let policy = RetryPolicy::builder()
        .strategy(no_delay())
        .max_attempts(2)
        .budget(budget.clone())
        .build()
        .unwrap();
    let _ = policy.call(|| Err::<u32, _>(Svc::Down(1)));
    assert_eq!(budget.available(), 8.0);
}

#[test]
fn grpc_token_ratio_is_truncated_to_three_decimals() {
    for (ratio, per_success) in [(0.5466, 0.546), (0.29, 0.29), (0.1, 0.1), (0.0019, 0.001)] {
        let budget = RetryBudget::grpc(10.0, ratio).unwrap();
        for _ in 0..5 {
            budget.record_failure();
        }
        budget.record_success(None);
        assert_eq!(budget.available(), 5.0 + per_success, "token_ratio {ratio}");
    }
}

// ---------- 11. settings beyond what the counters hold are rejected ----------

#[test]
fn settings_beyond_the_counters_are_config_errors() {
    let err = CircuitBreaker::builder()
        .probes(u32::MAX)
        .build()
        .unwrap_err();
    assert_eq!(err.problems()[0].setting(), "probes");
    assert!(CircuitBreaker::builder().probes(1 << 20).build().is_ok());
    let err = CircuitBreaker::builder()
        .window(Duration::from_nanos(1))
        .build()
        .unwrap_err();
    assert_eq!(err.problems()[0].setting(), "window");
    let err = CircuitBreaker::builder()
        .open_for(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(err.problems()[0].setting(), "open_for");

    let err = RetryBudget::ratio(10.0)
        .min_retries_per_sec(u32::MAX)
        .window(secs(3600))
        .build()
        .unwrap_err();
    assert_eq!(err.problems()[0].setting(), "min_retries_per_sec");
    let err = RetryBudget::ratio(1e-9).build().unwrap_err();
    assert_eq!(err.problems()[0].setting(), "percent");
    let err = RetryBudget::ratio(10.0)
        .cost(ErrorClass::Transient, 1e7)
        .build()
        .unwrap_err();
    assert_eq!(err.problems()[0].setting(), "cost");
    let err = RetryBudget::token_bucket(1e13).build().unwrap_err();
    assert_eq!(err.problems()[0].setting(), "capacity");
}

/// A call the open breaker rejects never reaches the dependency: it earns the ratio budget no
/// share of retries for the others.
#[test]
fn a_call_the_breaker_rejects_earns_no_budget_share() {
    let clock = VirtualClock::new();
    let cb = CircuitBreaker::builder()
        .min_calls(1)
        .clock(clock.clone())
        .build()
        .unwrap();
    cb.record_outcome(Some(ErrorClass::ServerError));
    let budget = RetryBudget::ratio(100.0)
        .min_retries_per_sec(0)
        .clock(clock.clone())
        .build()
        .unwrap();
    let policy = RetryPolicy::builder()
        .circuit_breaker(cb.clone())
        .budget(budget.clone())
        .clock(clock.clone())
        .build()
        .unwrap();
    for _ in 0..10 {
        assert!(matches!(
            policy.call(|| Ok::<_, Svc>(1)),
            Err(Svc::Rejected(_))
        ));
    }
    assert_eq!(budget.available(), 0.0);
    clock.advance(secs(10));
    assert_eq!(policy.call(|| Ok::<_, Svc>(1)), Ok(1), "the probe");
    assert_eq!(budget.available(), 1.0, "a call made earns its share");
}
