//! Hedged calls (`call_idempotent`) on the virtual clock: exact start times and attempt
//! counts, the winner, the losers cancelled (dropped), a never-retried error from any attempt,
//! the caps, the deadline, the budget's and the breaker's accounting, the learned percentile,
//! and the events in order.
// Budget amounts are exact integers underneath, so comparing their `f64` views exactly is right.
#![allow(clippy::float_cmp)]

use std::cell::RefCell;
use std::future::Future;
use std::pin::pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use reflexio::strategies::constant;
use reflexio::testing::VirtualClock;
use reflexio::{
    AsyncRetryPolicy, AsyncRetryPolicyBuilder, CircuitBreaker, CircuitOpen, CircuitState,
    Classification, Classify, ErrorClass, EventKind, Hedging, RetryBudget, StopReason,
};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Fail {
    /// Retried.
    Transient(u32),
    /// Never retried.
    Permanent(u32),
    Rejected(CircuitOpen),
}

impl Classify for Fail {
    fn classification(&self) -> Classification {
        match self {
            Fail::Transient(_) => ErrorClass::Transient.into(),
            Fail::Permanent(_) => ErrorClass::Permanent.into(),
            Fail::Rejected(open) => open.classification(),
        }
    }
}

impl From<reflexio::AttemptTimedOut> for Fail {
    fn from(_: reflexio::AttemptTimedOut) -> Self {
        Fail::Transient(0)
    }
}

impl From<CircuitOpen> for Fail {
    fn from(open: CircuitOpen) -> Self {
        Fail::Rejected(open)
    }
}

/// Runs `fut` to completion in virtual time: polls it, then moves the clock to the earliest
/// pending timer, until it is ready.
fn run<T>(clock: &VirtualClock, fut: impl Future<Output = T>) -> T {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
        let next = clock
            .next_timer()
            .expect("a pending future waits on a timer");
        clock.advance(next.saturating_sub(clock.now()));
    }
}

/// The service: attempt `n` (1-based) takes `script[n - 1].0` and answers `script[n - 1].1`.
/// It records when each attempt started and which were dropped before they ended.
#[derive(Clone)]
struct Service {
    clock: VirtualClock,
    script: Rc<Vec<(Duration, Result<u32, Fail>)>>,
    started: Rc<RefCell<Vec<Duration>>>,
    dropped: Rc<RefCell<Vec<u32>>>,
}

/// Records a drop of its attempt before the attempt ended.
struct DropCounter {
    n: u32,
    ended: bool,
    dropped: Rc<RefCell<Vec<u32>>>,
}

impl Drop for DropCounter {
    fn drop(&mut self) {
        if !self.ended {
            self.dropped.borrow_mut().push(self.n);
        }
    }
}

impl Service {
    fn new(clock: &VirtualClock, script: Vec<(Duration, Result<u32, Fail>)>) -> Self {
        Service {
            clock: clock.clone(),
            script: Rc::new(script),
            started: Rc::default(),
            dropped: Rc::default(),
        }
    }

    fn attempt(&self) -> impl Future<Output = Result<u32, Fail>> + use<> {
        let n = u32::try_from(self.started.borrow().len()).unwrap() + 1;
        self.started.borrow_mut().push(self.clock.now());
        let (latency, outcome) = self.script[n as usize - 1].clone();
        let timer = self.clock.timer(latency);
        let guard = DropCounter {
            n,
            ended: false,
            dropped: Rc::clone(&self.dropped),
        };
        async move {
            let mut guard = guard;
            timer.await;
            guard.ended = true;
            outcome
        }
    }

    fn started(&self) -> Vec<Duration> {
        self.started.borrow().clone()
    }

    fn dropped(&self) -> Vec<u32> {
        self.dropped.borrow().clone()
    }
}

type Events = Arc<Mutex<Vec<(EventKind, u32, bool)>>>;

/// A policy on `clock`, retrying after 5 ms, reporting `(kind, attempt, hedge)` to `events`.
fn builder(clock: &VirtualClock, events: &Events) -> AsyncRetryPolicyBuilder<Fail> {
    let sink = Arc::clone(events);
    AsyncRetryPolicy::builder()
        .strategy(constant(ms(5)))
        .clock(clock.clone())
        .on_event(move |e| sink.lock().unwrap().push((e.kind, e.attempt, e.hedge)))
}

fn after(delay: Duration, in_flight: u32) -> Hedging {
    Hedging::after(delay)
        .max_in_flight(in_flight)
        .build()
        .unwrap()
}

const OK1: Result<u32, Fail> = Ok(1);
const OK2: Result<u32, Fail> = Ok(2);
const OK3: Result<u32, Fail> = Ok(3);

#[test]
fn a_slow_attempt_is_hedged_the_hedge_wins_and_the_loser_is_cancelled() {
    use EventKind as K;
    let clock = VirtualClock::new();
    let events = Events::default();
    let policy = builder(&clock, &events)
        .hedging(after(ms(10), 2))
        .build()
        .unwrap();
    let svc = Service::new(&clock, vec![(ms(1000), OK1), (ms(5), OK2)]);
    let out = run(&clock, policy.call_idempotent(|| svc.attempt()));
    assert_eq!(out, Ok(2));
    assert_eq!(clock.now(), ms(15), "the hedge's answer, at 10 + 5 ms");
    assert_eq!(svc.started(), [ms(0), ms(10)]);
    assert_eq!(svc.dropped(), [1], "the slow attempt is dropped");
    assert_eq!(clock.next_timer(), None, "nothing left pending");
    assert_eq!(clock.sleeps(), [], "a hedge is not a sleep");
    assert_eq!(
        *events.lock().unwrap(),
        [
            (K::AttemptStarted, 1, false),
            (K::AttemptStarted, 2, true),
            (K::AttemptFinished, 2, true),
            (K::AttemptCancelled, 1, false),
            (K::Success, 2, true),
        ]
    );
}

#[test]
fn an_attempt_faster_than_the_delay_is_not_hedged() {
    let clock = VirtualClock::new();
    let events = Events::default();
    let policy = builder(&clock, &events)
        .hedging(after(ms(10), 2))
        .build()
        .unwrap();
    let svc = Service::new(&clock, vec![(ms(9), OK1)]);
    assert_eq!(run(&clock, policy.call_idempotent(|| svc.attempt())), Ok(1));
    assert_eq!((svc.started(), svc.dropped()), (vec![ms(0)], vec![]));
    assert_eq!(clock.next_timer(), None, "the hedge's timer is gone");
    // `call` never hedges, whatever the policy's setting.
    let svc = Service::new(&clock, vec![(ms(1000), OK1)]);
    let start = clock.now();
    assert_eq!(run(&clock, policy.call(|| svc.attempt())), Ok(1));
    assert_eq!(svc.started(), [start]);
}

#[test]
fn hedges_start_every_delay_up_to_max_in_flight_and_max_attempts() {
    let clock = VirtualClock::new();
    let events = Events::default();
    let slow = || (ms(1000), OK1);
    // Three in flight: 0, 10, 20 ms; the first to answer (the first, at 1 s) wins.
    let policy = builder(&clock, &events)
        .hedging(after(ms(10), 3))
        .build()
        .unwrap();
    let svc = Service::new(&clock, vec![slow(), slow(), slow(), slow()]);
    assert_eq!(run(&clock, policy.call_idempotent(|| svc.attempt())), Ok(1));
    assert_eq!(svc.started(), [ms(0), ms(10), ms(20)]);
    assert_eq!(svc.dropped(), [2, 3]);
    // `max_attempts` counts every hedge.
    let start = clock.now();
    let policy = builder(&clock, &events)
        .hedging(after(ms(10), 4))
        .max_attempts(2)
        .build()
        .unwrap();
    let svc = Service::new(&clock, vec![slow(), slow(), slow(), slow()]);
    assert_eq!(run(&clock, policy.call_idempotent(|| svc.attempt())), Ok(1));
    assert_eq!(svc.started(), [start, start + ms(10)]);
    // A zero delay starts them all at once.
    let start = clock.now();
    let policy = builder(&clock, &events)
        .hedging(after(Duration::ZERO, 3))
        .build()
        .unwrap();
    let svc = Service::new(&clock, vec![slow(), (ms(3), OK2), slow()]);
    assert_eq!(run(&clock, policy.call_idempotent(|| svc.attempt())), Ok(2));
    assert_eq!(svc.started(), [start; 3]);
    assert_eq!(svc.dropped(), [1, 3]);
}

#[test]
fn a_never_retried_error_from_a_hedge_ends_the_call() {
    let clock = VirtualClock::new();
    let events = Events::default();
    let policy = builder(&clock, &events)
        .hedging(after(ms(10), 2))
        .build()
        .unwrap();
    let svc = Service::new(
        &clock,
        vec![(ms(100), OK1), (ms(5), Err(Fail::Permanent(2)))],
    );
    let err = run(&clock, policy.execute_idempotent(|| svc.attempt())).unwrap_err();
    assert_eq!(err.inner(), &Fail::Permanent(2));
    assert_eq!(
        (err.stop_reason(), err.attempts()),
        (StopReason::NonRetryable, 2)
    );
    assert_eq!(clock.now(), ms(15));
    assert_eq!(svc.dropped(), [1], "the first attempt is cancelled");
    let kinds: Vec<_> = events.lock().unwrap().iter().map(|e| e.0).collect();
    assert_eq!(kinds.last(), Some(&EventKind::GaveUp));
}

#[test]
fn a_retryable_failure_lets_the_others_run_and_a_replacement_starts_after_the_backoff() {
    use EventKind as K;
    let clock = VirtualClock::new();
    let events = Events::default();
    let policy = builder(&clock, &events)
        .hedging(after(ms(10), 2))
        .build()
        .unwrap();
    // The hedge (10 ms) fails at 12 ms; the replacement starts 5 ms later and wins at 18 ms,
    // while the first attempt still runs.
    let svc = Service::new(
        &clock,
        vec![
            (ms(100), OK1),
            (ms(2), Err(Fail::Transient(2))),
            (ms(1), OK3),
        ],
    );
    assert_eq!(run(&clock, policy.call_idempotent(|| svc.attempt())), Ok(3));
    assert_eq!(svc.started(), [ms(0), ms(10), ms(17)]);
    assert_eq!(clock.now(), ms(18));
    assert_eq!(svc.dropped(), [1]);
    assert_eq!(
        *events.lock().unwrap(),
        [
            (K::AttemptStarted, 1, false),
            (K::AttemptStarted, 2, true),
            (K::AttemptFinished, 2, true),
            (K::Retry, 2, true),
            (K::AttemptStarted, 3, false),
            (K::AttemptFinished, 3, false),
            (K::AttemptCancelled, 1, false),
            (K::Success, 3, false),
        ]
    );
}

#[test]
fn with_nothing_in_flight_a_failure_is_retried_after_a_sleep() {
    let clock = VirtualClock::new();
    let events = Events::default();
    let policy = builder(&clock, &events)
        .hedging(after(ms(10), 2))
        .max_attempts(3)
        .build()
        .unwrap();
    // Each attempt fails fast (1 ms, before its hedge is due): a plain retry loop.
    let fail = |n| (ms(1), Err(Fail::Transient(n)));
    let svc = Service::new(&clock, vec![fail(1), fail(2), fail(3)]);
    let err = run(&clock, policy.execute_idempotent(|| svc.attempt())).unwrap_err();
    assert_eq!(
        (err.stop_reason(), err.attempts()),
        (StopReason::MaxAttempts, 3)
    );
    assert_eq!(err.inner(), &Fail::Transient(3));
    assert_eq!(svc.started(), [ms(0), ms(6), ms(12)]);
    assert_eq!(
        clock.sleeps(),
        [ms(5), ms(5)],
        "the policy's backoff, slept"
    );
}

#[test]
fn when_the_retries_stop_the_attempts_in_flight_still_run() {
    let clock = VirtualClock::new();
    let events = Events::default();
    let policy = builder(&clock, &events)
        .hedging(after(ms(10), 2))
        .max_attempts(2)
        .build()
        .unwrap();
    // The hedge fails: no attempt may follow (max 2), but the first one still answers.
    let svc = Service::new(
        &clock,
        vec![(ms(50), OK1), (ms(1), Err(Fail::Transient(2)))],
    );
    assert_eq!(run(&clock, policy.call_idempotent(|| svc.attempt())), Ok(1));
    assert_eq!((svc.started(), clock.now()), (vec![ms(0), ms(10)], ms(50)));
    // Both fail: the last error, with the stop of the first.
    let start = clock.now();
    let svc = Service::new(
        &clock,
        vec![
            (ms(50), Err(Fail::Transient(1))),
            (ms(1), Err(Fail::Transient(2))),
        ],
    );
    let err = run(&clock, policy.execute_idempotent(|| svc.attempt())).unwrap_err();
    assert_eq!(err.inner(), &Fail::Transient(1));
    assert_eq!(
        (err.stop_reason(), err.attempts()),
        (StopReason::MaxAttempts, 2)
    );
    assert_eq!(clock.now(), start + ms(50));
}

#[test]
fn no_hedge_starts_at_or_after_the_deadline() {
    let clock = VirtualClock::new();
    let events = Events::default();
    let policy = builder(&clock, &events)
        .hedging(after(ms(10), 4))
        .deadline(ms(25))
        .build()
        .unwrap();
    let slow = || (ms(1000), OK1);
    let svc = Service::new(&clock, vec![slow(), slow(), slow(), slow()]);
    assert_eq!(run(&clock, policy.call_idempotent(|| svc.attempt())), Ok(1));
    assert_eq!(svc.started(), [ms(0), ms(10), ms(20)], "not at 30 ms");
}

#[test]
fn a_hedge_takes_a_budget_token_and_an_empty_budget_only_stops_hedging() {
    let clock = VirtualClock::new();
    let events = Events::default();
    let budget = RetryBudget::token_bucket(1.0).build().unwrap();
    let policy = builder(&clock, &events)
        .hedging(after(ms(10), 3))
        .budget(budget.clone())
        .build()
        .unwrap();
    let slow = || (ms(1000), OK1);
    let svc = Service::new(&clock, vec![slow(), slow(), slow()]);
    assert_eq!(run(&clock, policy.call_idempotent(|| svc.attempt())), Ok(1));
    assert_eq!(
        svc.started(),
        [ms(0), ms(10)],
        "the second hedge has no token"
    );
    assert_eq!(budget.available(), 0.0, "the hedge ran: its token is spent");
}

#[test]
fn a_scheduled_retry_gives_its_tokens_back_when_another_attempt_wins() {
    let clock = VirtualClock::new();
    let events = Events::default();
    let budget = RetryBudget::token_bucket(2.0).build().unwrap();
    let policy = builder(&clock, &events)
        .strategy(constant(ms(200)))
        .hedging(after(ms(10), 2))
        .budget(budget.clone())
        .build()
        .unwrap();
    // The hedge (1 token) fails at 11 ms; its retry (1 token, reserved) is due at 211 ms, but
    // the first attempt wins at 100 ms.
    let svc = Service::new(
        &clock,
        vec![(ms(100), OK1), (ms(1), Err(Fail::Transient(2)))],
    );
    assert_eq!(run(&clock, policy.call_idempotent(|| svc.attempt())), Ok(1));
    assert_eq!(svc.started(), [ms(0), ms(10)]);
    assert_eq!(budget.available(), 1.0, "the reserved token came back");
}

fn half_open_breaker(probes: u32) -> (CircuitBreaker, VirtualClock) {
    let clock = VirtualClock::new();
    let breaker = CircuitBreaker::builder()
        .min_calls(1)
        .probes(probes)
        .open_for(Duration::from_secs(1))
        .clock(clock.clone())
        .build()
        .unwrap();
    breaker.record_outcome(Some(ErrorClass::ServerError));
    assert_eq!(breaker.state(), CircuitState::Open);
    clock.advance(Duration::from_secs(1));
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
    (breaker, clock)
}

#[test]
fn a_lone_half_open_probe_is_not_hedged() {
    let (breaker, _) = half_open_breaker(1);
    let clock = VirtualClock::new();
    let events = Events::default();
    let policy = builder(&clock, &events)
        .hedging(after(ms(10), 2))
        .circuit_breaker(breaker.clone())
        .build()
        .unwrap();
    let svc = Service::new(&clock, vec![(ms(100), OK1), (ms(1), OK2)]);
    assert_eq!(run(&clock, policy.call_idempotent(|| svc.attempt())), Ok(1));
    assert_eq!(svc.started(), [ms(0)], "the breaker admits no second probe");
    assert_eq!(breaker.state(), CircuitState::Closed);
}

#[test]
fn a_cancelled_hedged_probe_gives_its_place_back_and_records_nothing() {
    let (breaker, _) = half_open_breaker(2);
    let clock = VirtualClock::new();
    let events = Events::default();
    let policy = builder(&clock, &events)
        .hedging(after(ms(10), 2))
        .circuit_breaker(breaker.clone())
        .build()
        .unwrap();
    // Both probes out: the hedge wins, the first probe is cancelled.
    let svc = Service::new(&clock, vec![(ms(100), OK1), (ms(1), OK2)]);
    assert_eq!(run(&clock, policy.call_idempotent(|| svc.attempt())), Ok(2));
    assert_eq!(svc.dropped(), [1]);
    assert_eq!(
        breaker.state(),
        CircuitState::HalfOpen,
        "one of two probes succeeded"
    );
    // The cancelled probe's place is free: another call probes, and its success closes.
    let svc = Service::new(&clock, vec![(ms(1), OK1)]);
    assert_eq!(run(&clock, policy.call_idempotent(|| svc.attempt())), Ok(1));
    assert_eq!(breaker.state(), CircuitState::Closed);
}

#[test]
fn a_dropped_hedged_call_gives_back_every_probe_place() {
    let (breaker, _) = half_open_breaker(2);
    let clock = VirtualClock::new();
    let events = Events::default();
    let policy = builder(&clock, &events)
        .hedging(after(ms(10), 2))
        .circuit_breaker(breaker.clone())
        .build()
        .unwrap();
    let svc = Service::new(&clock, vec![(ms(100), OK1), (ms(100), OK2)]);
    {
        let mut call = pin!(policy.call_idempotent(|| svc.attempt()));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(call.as_mut().poll(&mut cx).is_pending());
        clock.advance(ms(10));
        assert!(call.as_mut().poll(&mut cx).is_pending());
        assert_eq!(svc.started(), [ms(0), ms(10)], "both probes out");
    }
    let mut dropped = svc.dropped();
    dropped.sort_unstable();
    assert_eq!(dropped, [1, 2]);
    // Both places are free again: two calls probe, and close the circuit.
    for _ in 0..2 {
        let svc = Service::new(&clock, vec![(ms(1), OK1)]);
        assert_eq!(run(&clock, policy.call(|| svc.attempt())), Ok(1));
    }
    assert_eq!(breaker.state(), CircuitState::Closed);
}

#[test]
fn each_attempt_has_its_own_timeout() {
    let clock = VirtualClock::new();
    let events = Events::default();
    let policy = builder(&clock, &events)
        .hedging(after(ms(10), 2))
        .attempt_timeout(ms(30))
        .build()
        .unwrap();
    // The first attempt times out at 30 ms (the hedge, started at 10, still runs); its
    // replacement starts 5 ms later and wins at 36 ms.
    let svc = Service::new(&clock, vec![(ms(1000), OK1), (ms(1000), OK2), (ms(1), OK3)]);
    assert_eq!(run(&clock, policy.call_idempotent(|| svc.attempt())), Ok(3));
    assert_eq!(svc.started(), [ms(0), ms(10), ms(35)]);
    assert_eq!(clock.now(), ms(36));
    assert_eq!(svc.dropped(), [1, 2], "timed out, then cancelled");
}

#[test]
fn attempt_events_carry_each_attempt_s_duration_and_outcome() {
    let clock = VirtualClock::new();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    let policy = AsyncRetryPolicy::builder()
        .strategy(constant(ms(5)))
        .clock(clock.clone())
        .hedging(after(ms(10), 2))
        .operation("get")
        .on_event(move |e| sink.lock().unwrap().push(e.to_string()))
        .build()
        .unwrap();
    let svc = Service::new(
        &clock,
        vec![
            (ms(100), OK1),
            (ms(4), Err(Fail::Transient(2))),
            (ms(1), OK3),
        ],
    );
    assert_eq!(run(&clock, policy.call_idempotent(|| svc.attempt())), Ok(3));
    assert_eq!(
        *seen.lock().unwrap(),
        [
            "get: attempt 1 started [elapsed 0s]",
            "get: attempt 2 (hedge) started [elapsed 10ms]",
            "get: attempt 2 (hedge) finished: failed (transient) after 4ms [elapsed 14ms]: Transient(2)",
            "get: attempt 2 (hedge) failed (transient), retrying in 5ms [elapsed 14ms]: Transient(2)",
            "get: attempt 3 started [elapsed 19ms]",
            "get: attempt 3 finished: ok after 1ms [elapsed 20ms]",
            "get: attempt 1 cancelled after 20ms [elapsed 20ms]",
            "get: attempt 3 succeeded [elapsed 20ms]",
        ]
    );
}

#[test]
fn a_percentile_delay_is_learned_from_the_latencies() {
    let clock = VirtualClock::new();
    let events = Events::default();
    let policy = builder(&clock, &events)
        .hedging(
            Hedging::at_percentile(90.0)
                .min_samples(10)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    // Ten calls of 1..=10 ms: too few samples before the tenth, so none is hedged.
    for n in 1..=10 {
        let svc = Service::new(&clock, vec![(ms(n), OK1), (ms(1), OK2)]);
        assert_eq!(run(&clock, policy.call_idempotent(|| svc.attempt())), Ok(1));
        assert_eq!(svc.started().len(), 1);
    }
    // The p90 of 1..=10 ms is 9 ms, read as the end of its histogram bucket (9 ms lies in
    // [8, 9] × 1024 × 1024 ns): the hedge starts 9.437184 ms after the slow attempt.
    let start = clock.now();
    let svc = Service::new(&clock, vec![(ms(1000), OK1), (ms(1), OK2)]);
    assert_eq!(run(&clock, policy.call_idempotent(|| svc.attempt())), Ok(2));
    assert_eq!(
        svc.started(),
        [start, start + Duration::from_nanos(9 * 1024 * 1024)]
    );
}

#[test]
fn an_open_circuit_rejects_a_hedged_call_with_its_error() {
    let clock = VirtualClock::new();
    let breaker = CircuitBreaker::builder()
        .min_calls(1)
        .clock(clock.clone())
        .build()
        .unwrap();
    breaker.record_outcome(Some(ErrorClass::ServerError));
    let events = Events::default();
    let policy = builder(&clock, &events)
        .hedging(after(ms(10), 2))
        .circuit_breaker(breaker)
        .build()
        .unwrap();
    let svc = Service::new(&clock, vec![(ms(1), OK1)]);
    let out = run(&clock, policy.call_idempotent(|| svc.attempt()));
    assert!(matches!(out, Err(Fail::Rejected(_))), "{out:?}");
    assert_eq!(svc.started(), []);
}

#[test]
fn the_abort_condition_stops_hedging() {
    let clock = VirtualClock::new();
    let events = Events::default();
    let policy = builder(&clock, &events)
        .hedging(after(ms(10), 2))
        .abort_if(|| true)
        .build()
        .unwrap();
    let svc = Service::new(&clock, vec![(ms(100), OK1), (ms(1), OK2)]);
    assert_eq!(run(&clock, policy.call_idempotent(|| svc.attempt())), Ok(1));
    assert_eq!(svc.started(), [ms(0)]);
}

#[test]
fn attempt_events_of_a_plain_async_call() {
    use EventKind as K;
    let clock = VirtualClock::new();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    let policy = AsyncRetryPolicy::builder()
        .strategy(constant(ms(5)))
        .clock(clock.clone())
        .attempt_events()
        .on_event(move |e| sink.lock().unwrap().push((e.kind, e.attempt, e.duration)))
        .build()
        .unwrap();
    let svc = Service::new(&clock, vec![(ms(7), Err(Fail::Transient(1))), (ms(3), OK2)]);
    assert_eq!(run(&clock, policy.call(|| svc.attempt())), Ok(2));
    assert_eq!(
        *seen.lock().unwrap(),
        [
            (K::AttemptStarted, 1, None),
            (K::AttemptFinished, 1, Some(ms(7))),
            (K::Retry, 1, None),
            (K::AttemptStarted, 2, None),
            (K::AttemptFinished, 2, Some(ms(3))),
            (K::Success, 2, None),
        ]
    );
    // Without `.attempt_events()`, the decisions only.
    let sink = Arc::clone(&seen);
    seen.lock().unwrap().clear();
    let policy = AsyncRetryPolicy::builder()
        .strategy(constant(ms(5)))
        .clock(clock.clone())
        .on_event(move |e| sink.lock().unwrap().push((e.kind, e.attempt, e.duration)))
        .build()
        .unwrap();
    let svc = Service::new(&clock, vec![(ms(7), Err(Fail::Transient(1))), (ms(3), OK2)]);
    assert_eq!(run(&clock, policy.call(|| svc.attempt())), Ok(2));
    assert_eq!(
        *seen.lock().unwrap(),
        [(K::Retry, 1, None), (K::Success, 2, None)]
    );
}

/// The same on tokio's paused clock, with the policy's default sleeper.
#[tokio::test(start_paused = true)]
async fn tokio_paused_time_drives_a_hedged_call() {
    let policy = AsyncRetryPolicy::<Fail>::builder()
        .hedging(after(ms(10), 2))
        .build()
        .unwrap();
    let t0 = tokio::time::Instant::now();
    let starts = Arc::new(Mutex::new(Vec::new()));
    let out = policy
        .call_idempotent(|| {
            let mut starts = starts.lock().unwrap();
            starts.push(t0.elapsed());
            let latency = if starts.len() == 1 { 1000 } else { 3 };
            async move {
                tokio::time::sleep(ms(latency)).await;
                Ok::<_, Fail>(latency)
            }
        })
        .await;
    assert_eq!(out, Ok(3));
    assert_eq!(*starts.lock().unwrap(), [ms(0), ms(10)]);
    assert_eq!(t0.elapsed(), ms(13));
}

#[test]
fn a_panicking_hedged_probe_gives_its_place_back() {
    let (breaker, _) = half_open_breaker(1);
    let clock = VirtualClock::new();
    let events = Events::default();
    let policy = builder(&clock, &events)
        .hedging(after(ms(10), 2))
        .circuit_breaker(breaker.clone())
        .build()
        .unwrap();
    // The only probe place is taken by an attempt that panics.
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run(
            &clock,
            policy
                .call_idempotent(|| async { panic!("bug in the operation") as Result<u32, Fail> }),
        )
    }));
    assert!(panicked.is_err());
    assert_eq!(breaker.state(), CircuitState::HalfOpen, "nothing recorded");
    // The place came back: the next call probes, and its success closes the circuit.
    let svc = Service::new(&clock, vec![(ms(1), OK1)]);
    assert_eq!(run(&clock, policy.call_idempotent(|| svc.attempt())), Ok(1));
    assert_eq!(breaker.state(), CircuitState::Closed);
}
