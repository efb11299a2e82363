//! The fast path of async `#[retry]` functions: once a function's policy is built, and when its
//! calls start plain (no breaker, budget, hook or rate limiter, no attempt timeout, no deadline
//! counted from the start), a call runs its first attempt before looking the policy up, and
//! only a failure looks it up. Everything here runs calls after the first, through that path
//! (with attempts that finish at once and attempts that wait first), and checks they behave
//! exactly as the policy's own `call` does: attempts, sleeps, errors, events. And where it
//! must not apply (a first call, a hook, a breaker, an attempt timeout, a deadline from the
//! start, another instantiation of a generic function), that it does not.

// Each test declares its `#[retry]` functions (and their statics) next to its assertions.
#![allow(clippy::items_after_statements)]

mod support;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::pin;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{Context, Waker};
use std::time::Duration;

use futures::FutureExt;
use reflexio::strategies::{constant, exponential, no_delay};
use reflexio::{
    AsyncRetryPolicy, AttemptTimedOut, CircuitBreaker, CircuitOpen, ErrorClass, EventKind, retry,
};
use support::{Recorder, Scripted, ms, secs};
use tokio::time::Instant;

/// Fails `failures` times with `class` (the error naming the call), then succeeds with the call
/// number; with `pending`, each attempt waits once before it ends.
async fn scripted(
    calls: &AtomicU32,
    failures: u32,
    class: ErrorClass,
    pending: bool,
) -> Result<u32, Scripted> {
    let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
    if pending {
        tokio::task::yield_now().await;
    }
    if n <= failures {
        Err(Scripted::new(class, n))
    } else {
        Ok(n)
    }
}

/// The result, the calls made and the (paused) time taken by `call`.
async fn timed<F: Future<Output = Result<u32, E>>, E>(
    calls: &AtomicU32,
    call: F,
) -> (Result<u32, E>, u32, Duration) {
    calls.store(0, Ordering::SeqCst);
    let start = Instant::now();
    let out = call.await;
    (out, calls.load(Ordering::SeqCst), start.elapsed())
}

#[tokio::test(start_paused = true)]
async fn later_calls_retry_as_the_policy_does() {
    #[retry(strategy = constant(ms(10)), max_attempts = 4)]
    async fn flaky(
        calls: &AtomicU32,
        failures: u32,
        class: ErrorClass,
        pending: bool,
    ) -> Result<u32, Scripted> {
        scripted(calls, failures, class, pending).await
    }
    let calls = AtomicU32::new(0);
    let c = &calls;
    // The first call builds the policy; the later ones go the fast path.
    for _ in 0..2 {
        for pending in [false, true] {
            let transient = ErrorClass::Transient;
            assert_eq!(
                timed(c, flaky(c, 0, transient, pending)).await,
                (Ok(1), 1, ms(0))
            );
            for failures in 1..=3 {
                assert_eq!(
                    timed(c, flaky(c, failures, transient, pending)).await,
                    (Ok(failures + 1), failures + 1, ms(10) * failures)
                );
            }
            // Every attempt fails: 4 of them, 3 sleeps, the last error as it was.
            assert_eq!(
                timed(c, flaky(c, 10, transient, pending)).await,
                (Err(Scripted::new(transient, 4)), 4, ms(30))
            );
            // A permanent error: one attempt, no sleep.
            let permanent = ErrorClass::Permanent;
            assert_eq!(
                timed(c, flaky(c, 10, permanent, pending)).await,
                (Err(Scripted::new(permanent, 1)), 1, ms(0))
            );
        }
    }
}

/// Each call against the same settings through `AsyncRetryPolicy::call`: the reference.
#[tokio::test(start_paused = true)]
async fn later_calls_match_the_policys_own_call() {
    #[retry(strategy = constant(ms(3)), rate_limit = constant(ms(7)), max_attempts = 5)]
    async fn flaky(
        calls: &AtomicU32,
        failures: u32,
        class: ErrorClass,
        pending: bool,
    ) -> Result<u32, Scripted> {
        scripted(calls, failures, class, pending).await
    }
    let reference = AsyncRetryPolicy::<Scripted>::builder()
        .strategy(constant(ms(3)))
        .strategy_for(ErrorClass::RateLimit, constant(ms(7)))
        .max_attempts(5)
        .build()
        .unwrap();
    let calls = AtomicU32::new(0);
    let c = &calls;
    let classes = [
        ErrorClass::Transient,
        ErrorClass::RateLimit,
        ErrorClass::ServerError,
        ErrorClass::Unknown,
        ErrorClass::Concurrency,
        ErrorClass::Permanent,
    ];
    for pending in [false, true] {
        for class in classes {
            for failures in 0..7 {
                let got = timed(c, flaky(c, failures, class, pending)).await;
                let want = timed(c, reference.call(|| scripted(c, failures, class, pending))).await;
                assert_eq!(got, want, "{class:?}, {failures} failures");
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_hook_sees_every_later_call() {
    static EVENTS: LazyLock<Recorder> = LazyLock::new(Recorder::default);
    #[retry(strategy = no_delay(), on_event = EVENTS.hook())]
    async fn observed(calls: &AtomicU32, failures: u32) -> Result<u32, Scripted> {
        scripted(calls, failures, ErrorClass::Transient, false).await
    }
    for failures in [0, 0, 1, 0] {
        observed(&AtomicU32::new(0), failures).await.unwrap();
    }
    let kinds: Vec<_> = EVENTS.take().iter().map(|e| (e.kind, e.attempt)).collect();
    assert_eq!(
        kinds,
        [
            (EventKind::Success, 1),
            (EventKind::Success, 1),
            (EventKind::Retry, 1),
            (EventKind::Success, 2),
            (EventKind::Success, 1),
        ]
    );
}

#[derive(Debug, PartialEq, reflexio::Classify)]
enum Failure {
    #[class(transient)]
    Down(u32),
    #[class(from_source)]
    TimedOut(AttemptTimedOut),
    #[class(from_source)]
    Open(CircuitOpen),
}

impl From<AttemptTimedOut> for Failure {
    fn from(e: AttemptTimedOut) -> Self {
        Failure::TimedOut(e)
    }
}

impl From<CircuitOpen> for Failure {
    fn from(e: CircuitOpen) -> Self {
        Failure::Open(e)
    }
}

/// Every later call's first attempt runs under the attempt timeout too.
#[tokio::test(start_paused = true)]
async fn an_attempt_timeout_times_every_first_attempt() {
    #[retry(strategy = no_delay(), max_attempts = 3, attempt_timeout = "1s")]
    async fn slow_first(calls: &AtomicU32) -> Result<u32, Failure> {
        let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
        if n == 1 {
            tokio::time::sleep(secs(10)).await;
        }
        Ok(n)
    }
    let calls = AtomicU32::new(0);
    for _ in 0..3 {
        assert_eq!(timed(&calls, slow_first(&calls)).await, (Ok(2), 2, secs(1)));
    }
}

/// Every later call asks the breaker first: once it is open, the body does not run.
#[tokio::test(start_paused = true)]
async fn a_breaker_admits_every_first_attempt() {
    static BREAKER: LazyLock<CircuitBreaker> = LazyLock::new(|| {
        CircuitBreaker::builder()
            .min_calls(4)
            .failure_rate(0.5)
            .build()
            .unwrap()
    });
    #[retry(strategy = no_delay(), max_attempts = 2, circuit_breaker = BREAKER.clone())]
    async fn guarded(calls: &AtomicU32, fail: bool) -> Result<u32, Failure> {
        let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
        if fail { Err(Failure::Down(n)) } else { Ok(n) }
    }
    let calls = AtomicU32::new(0);
    assert_eq!(
        timed(&calls, guarded(&calls, false)).await,
        (Ok(1), 1, ms(0))
    );
    assert_eq!(
        timed(&calls, guarded(&calls, false)).await,
        (Ok(1), 1, ms(0))
    );
    assert_eq!(
        timed(&calls, guarded(&calls, true)).await,
        (Err(Failure::Down(2)), 2, ms(0))
    );
    // 2 failures out of 4: open. The next calls are rejected before their body runs.
    for _ in 0..2 {
        let (out, made, _) = timed(&calls, guarded(&calls, false)).await;
        assert!(matches!(out, Err(Failure::Open(_))), "{out:?}");
        assert_eq!(made, 0);
    }
}

/// The default deadline counts from the first failure: a first attempt that takes two minutes
/// before it fails still gets the whole minute of retries. Counted from the start (a
/// `deadline = ".."` key), the start is read before the first attempt of every call, and the
/// same call stops at its first failure.
#[tokio::test(start_paused = true)]
async fn the_default_deadline_counts_from_the_first_failure_deadline_from_the_start() {
    async fn slow_first(calls: &AtomicU32) -> Result<u32, Scripted> {
        let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
        if n == 1 {
            tokio::time::sleep(secs(120)).await;
        }
        Err(Scripted::new(ErrorClass::Transient, n))
    }
    #[retry(strategy = constant(secs(10)), max_attempts = 100)]
    async fn from_first_failure(calls: &AtomicU32) -> Result<u32, Scripted> {
        slow_first(calls).await
    }
    #[retry(strategy = constant(secs(10)), max_attempts = 100, deadline = "1m")]
    async fn from_the_start(calls: &AtomicU32) -> Result<u32, Scripted> {
        slow_first(calls).await
    }
    let calls = AtomicU32::new(0);
    for _ in 0..3 {
        // 120 s, then a retry every 10 s while it starts under a minute after the first
        // failure: 5 of them (the 6th would start at the deadline).
        assert_eq!(
            timed(&calls, from_first_failure(&calls)).await,
            (
                Err(Scripted::new(ErrorClass::Transient, 6)),
                6,
                secs(120 + 50)
            )
        );
        assert_eq!(
            timed(&calls, from_the_start(&calls)).await,
            (Err(Scripted::new(ErrorClass::Transient, 1)), 1, secs(120))
        );
    }
}

#[test]
fn an_invalid_configuration_panics_at_every_call_before_the_body_runs() {
    static CALLS: AtomicU32 = AtomicU32::new(0);
    #[retry(strategy = exponential().factor(0.5))]
    async fn bad_strategy() -> Result<(), Scripted> {
        CALLS.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    for _ in 0..3 {
        let panic = catch_unwind(|| futures::executor::block_on(bad_strategy())).unwrap_err();
        let message = panic.downcast_ref::<String>().unwrap();
        assert!(
            message.contains("invalid `#[retry]` configuration on `bad_strategy`"),
            "{message}"
        );
    }
    assert_eq!(CALLS.load(Ordering::SeqCst), 0);
}

/// Error types with a strategy each, so that one generic function has a policy per error
/// type.
trait Pick: std::fmt::Debug + reflexio::Classify + Send + Sync + 'static {
    fn delay() -> Duration;
    fn new(call: u32) -> Self;
}

#[derive(Debug, PartialEq)]
struct OneMs(u32);
#[derive(Debug, PartialEq)]
struct TwoMs(u32);

impl reflexio::Classify for OneMs {
    fn classification(&self) -> reflexio::Classification {
        ErrorClass::Transient.into()
    }
}
impl reflexio::Classify for TwoMs {
    fn classification(&self) -> reflexio::Classification {
        ErrorClass::Transient.into()
    }
}
impl Pick for OneMs {
    fn delay() -> Duration {
        ms(1)
    }
    fn new(call: u32) -> Self {
        OneMs(call)
    }
}
impl Pick for TwoMs {
    fn delay() -> Duration {
        ms(2)
    }
    fn new(call: u32) -> Self {
        TwoMs(call)
    }
}

/// One `static` for every instantiation: the first one's policy, then the others'.
#[retry(strategy = constant(E::delay()), max_attempts = 3)]
async fn generic<E: Pick>(calls: &AtomicU32, failures: u32) -> Result<u32, E> {
    let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
    if n <= failures { Err(E::new(n)) } else { Ok(n) }
}

#[tokio::test(start_paused = true)]
async fn a_generic_function_keeps_a_policy_per_type() {
    let calls = AtomicU32::new(0);
    let c = &calls;
    // `OneMs` first: its policy is the one the fast path knows.
    assert_eq!(timed(c, generic::<OneMs>(c, 0)).await, (Ok(1), 1, ms(0)));
    for _ in 0..2 {
        assert_eq!(timed(c, generic::<TwoMs>(c, 0)).await, (Ok(1), 1, ms(0)));
        assert_eq!(timed(c, generic::<TwoMs>(c, 1)).await, (Ok(2), 2, ms(2)));
        assert_eq!(timed(c, generic::<OneMs>(c, 1)).await, (Ok(2), 2, ms(1)));
        assert_eq!(timed(c, generic::<OneMs>(c, 2)).await, (Ok(3), 3, ms(2)));
        assert_eq!(
            timed(c, generic::<OneMs>(c, 5)).await,
            (Err(OneMs(3)), 3, ms(2))
        );
        assert_eq!(
            timed(c, generic::<TwoMs>(c, 5)).await,
            (Err(TwoMs(3)), 3, ms(4))
        );
    }
}

/// A panic in a later call's first attempt, and a poll after it: the call does not start over
/// (no second attempt 1). The function's own state machine refuses that poll before the
/// library's future sees it; `macro_support`'s unit test
/// `a_cached_call_polled_after_a_panic_does_not_start_over` polls that future directly.
#[test]
fn a_panic_in_a_first_attempt_does_not_start_the_call_over() {
    static CALLS: AtomicU32 = AtomicU32::new(0);
    #[retry(strategy = no_delay())]
    async fn panics_once(panic: bool) -> Result<u32, Scripted> {
        let n = CALLS.fetch_add(1, Ordering::SeqCst) + 1;
        assert!(!panic, "the attempt panics");
        Ok(n)
    }
    // The policy is built.
    assert_eq!(futures::executor::block_on(panics_once(false)), Ok(1));
    let mut cx = Context::from_waker(Waker::noop());
    CALLS.store(0, Ordering::SeqCst);
    let mut call = pin!(panics_once(true));
    assert!(catch_unwind(AssertUnwindSafe(|| call.as_mut().poll_unpin(&mut cx))).is_err());
    assert!(catch_unwind(AssertUnwindSafe(|| call.as_mut().poll_unpin(&mut cx))).is_err());
    assert_eq!(CALLS.load(Ordering::SeqCst), 1);
}

/// Counts the attempt futures dropped.
struct Dropped<'a>(&'a AtomicU32);

impl Drop for Dropped<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A later call dropped at each of its await points: its first attempt in flight before the
/// policy was looked up, and its sleep after a failure (the policy looked up then). Each
/// attempt's future is dropped once, and the calls after it run as ever.
#[tokio::test(start_paused = true)]
async fn a_later_call_dropped_at_each_await_point() {
    #[retry(strategy = constant(ms(10)), max_attempts = 3)]
    async fn waits(calls: &AtomicU32, drops: &AtomicU32, failures: u32) -> Result<u32, Scripted> {
        let _guard = Dropped(drops);
        let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
        tokio::task::yield_now().await;
        if n <= failures {
            Err(Scripted::new(ErrorClass::Transient, n))
        } else {
            Ok(n)
        }
    }
    let (calls, drops) = (AtomicU32::new(0), AtomicU32::new(0));
    let mut cx = Context::from_waker(Waker::noop());
    // The policy is built.
    assert_eq!(waits(&calls, &drops, 0).await, Ok(1));
    for failures in [0, 1] {
        calls.store(0, Ordering::SeqCst);
        drops.store(0, Ordering::SeqCst);
        {
            let mut call = pin!(waits(&calls, &drops, failures));
            // Pending in its first attempt (0 failures), or in its sleep after it (1).
            for _ in 0..=failures {
                assert!(call.as_mut().poll_unpin(&mut cx).is_pending());
            }
            assert_eq!(calls.load(Ordering::SeqCst), 1);
        }
        assert_eq!(drops.load(Ordering::SeqCst), 1, "{failures} failures");
        calls.store(0, Ordering::SeqCst);
        assert_eq!(
            timed(&calls, waits(&calls, &drops, 1)).await,
            (Ok(2), 2, ms(10))
        );
    }
}

/// Calls on several threads at once, the first of them building the policy: every call runs
/// as the policy says, whether it found the policy built or not.
#[test]
fn concurrent_first_calls() {
    #[retry(strategy = no_delay(), max_attempts = 3)]
    async fn shared(calls: &AtomicU32, failures: u32) -> Result<u32, Scripted> {
        scripted(calls, failures, ErrorClass::Transient, false).await
    }
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                for failures in [0, 1, 2, 5] {
                    let calls = AtomicU32::new(0);
                    let out = futures::executor::block_on(shared(&calls, failures));
                    let attempts = (failures + 1).min(3);
                    assert_eq!(calls.load(Ordering::SeqCst), attempts);
                    if failures < 3 {
                        assert_eq!(out, Ok(attempts));
                    } else {
                        assert_eq!(out, Err(Scripted::new(ErrorClass::Transient, 3)));
                    }
                }
            });
        }
    });
}
