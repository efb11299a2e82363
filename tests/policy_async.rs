//! The async policy: the same decisions as the sync one, on tokio (real timer, paused) and on a
//! plain `futures` executor.

mod support;

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reflexio::strategies::{constant, equal_jitter, no_delay};
use reflexio::testing::VirtualClock;
use reflexio::{AsyncRetryPolicy, ErrorClass, EventKind, StopReason};
use support::{Recorder, Scripted, ms, secs};

fn policy(
    configure: impl FnOnce(
        reflexio::AsyncRetryPolicyBuilder<Scripted>,
    ) -> reflexio::AsyncRetryPolicyBuilder<Scripted>,
) -> (AsyncRetryPolicy<Scripted>, VirtualClock, Recorder) {
    let clock = VirtualClock::new();
    let rec = Recorder::default();
    let builder = AsyncRetryPolicy::builder()
        .strategy(constant(ms(100)))
        .clock(clock.clone())
        .on_event(rec.hook());
    (configure(builder).build().unwrap(), clock, rec)
}

/// Runs the policy on an operation failing with `classes[n]` on call `n`, then succeeding.
async fn run(
    policy: &AsyncRetryPolicy<Scripted>,
    classes: &[ErrorClass],
) -> (Result<u32, Scripted>, u32) {
    let calls = AtomicU32::new(0);
    let out = policy
        .call(|| {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            let class = classes.get(n as usize - 1).copied();
            async move {
                tokio::task::yield_now().await;
                match class {
                    Some(class) => Err(Scripted::new(class, n)),
                    None => Ok(n),
                }
            }
        })
        .await;
    (out, calls.load(Ordering::SeqCst))
}

fn is_future<F: Future>(_: &F) {}

fn assert_send<T: Send>(t: T) -> T {
    t
}

#[tokio::test]
async fn permanent_errors_are_not_retried() {
    let (p, clock, rec) = policy(|b| b);
    let (out, calls) = run(&p, &[ErrorClass::Permanent; 3]).await;
    assert_eq!((out.unwrap_err().call, calls), (1, 1));
    assert_eq!(rec.trace(), [(EventKind::GaveUp, 1)]);
    assert_eq!(rec.last().stop, Some(StopReason::NonRetryable));
    assert!(clock.sleeps().is_empty());
}

#[tokio::test]
async fn transient_errors_retry_then_succeed() {
    let (p, clock, rec) = policy(|b| b.operation("async_test"));
    let (out, calls) = run(&p, &[ErrorClass::RateLimit, ErrorClass::Transient]).await;
    assert_eq!((out, calls), (Ok(3), 3));
    assert_eq!(
        rec.trace(),
        [
            (EventKind::Retry, 1),
            (EventKind::Retry, 2),
            (EventKind::Success, 3)
        ]
    );
    assert!(
        rec.events()
            .iter()
            .all(|e| e.operation.as_deref() == Some("async_test"))
    );
    assert_eq!(clock.sleeps(), [ms(100), ms(100)]);
}

#[tokio::test]
async fn caps_and_deadline_match_the_sync_policy() {
    let (p, clock, rec) = policy(|b| b.max_attempts(3));
    let (out, calls) = run(&p, &[ErrorClass::ServerError; 9]).await;
    assert_eq!((out.unwrap_err().call, calls), (3, 3));
    assert_eq!(clock.sleeps().len(), 2);
    assert_eq!(rec.last().stop, Some(StopReason::MaxAttempts));

    let (p, _, rec) = policy(|b| b.max_retries_for(ErrorClass::RateLimit, 2));
    assert_eq!(run(&p, &[ErrorClass::RateLimit; 9]).await.1, 3);
    assert_eq!(rec.last().stop, Some(StopReason::MaxRetriesForClass));

    let (p, _, rec) = policy(|b| b);
    assert_eq!(run(&p, &[ErrorClass::Unknown; 9]).await.1, 3);
    assert_eq!(rec.last().stop, Some(StopReason::MaxUnknownRetries));

    let (p, clock, rec) = policy(|b| {
        b.strategy(constant(secs(1)))
            .deadline(secs(2))
            .max_attempts(10)
    });
    assert_eq!(run(&p, &[ErrorClass::Transient; 9]).await.1, 2);
    assert_eq!(clock.sleeps(), [secs(1)]);
    assert_eq!(rec.last().stop, Some(StopReason::DeadlineExceeded));
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let (p, clock, _) = policy(|b| b);
    let calls = AtomicU32::new(0);
    let out = p
        .call(|| {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                if n == 1 {
                    Err(Scripted {
                        retry_after: Some(secs(2)),
                        ..Scripted::new(ErrorClass::RateLimit, n)
                    })
                } else {
                    Ok(n)
                }
            }
        })
        .await;
    assert_eq!(out, Ok(2));
    assert_eq!(clock.sleeps(), [secs(2)]);
}

#[tokio::test(start_paused = true)]
async fn the_default_sleeper_is_tokio_and_paused_time_drives_sleeps_and_deadline() {
    let rec = Recorder::default();
    let p = AsyncRetryPolicy::builder()
        .strategy(constant(secs(10)))
        .deadline(secs(25))
        .max_attempts(10)
        .on_event(rec.hook())
        .build()
        .unwrap();
    let start = tokio::time::Instant::now();
    let (out, calls) = run(&p, &[ErrorClass::Transient; 9]).await;
    assert_eq!(out.unwrap_err().call, 3);
    assert_eq!(calls, 3);
    assert_eq!(start.elapsed(), secs(20));
    assert_eq!(rec.last().stop, Some(StopReason::DeadlineExceeded));
    assert_eq!(rec.last().elapsed, secs(20));
}

#[test]
fn works_on_a_plain_futures_executor() {
    let (p, clock, rec) = policy(|b| b.strategy(equal_jitter()).seed(7));
    let calls = AtomicU32::new(0);
    let out = futures::executor::block_on(p.call(|| {
        let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            if n < 4 {
                Err(Scripted::new(ErrorClass::ServerError, n))
            } else {
                Ok(n)
            }
        }
    }));
    assert_eq!(out, Ok(4));
    assert_eq!(clock.sleeps().len(), 3);
    assert_eq!(rec.trace().last(), Some(&(EventKind::Success, 4)));
}

#[test]
fn a_custom_sleeper_is_used() {
    let slept = Arc::new(Mutex::new(Vec::new()));
    let log = slept.clone();
    let p = AsyncRetryPolicy::builder()
        .strategy(constant(ms(40)))
        .sleeper(move |d: Duration| {
            log.lock().unwrap().push(d);
            std::future::ready(())
        })
        .build()
        .unwrap();
    let out = futures::executor::block_on(async {
        let mut n = 0;
        p.call(|| {
            n += 1;
            let m = n;
            async move {
                if m < 3 {
                    Err(Scripted::new(ErrorClass::Transient, m))
                } else {
                    Ok(m)
                }
            }
        })
        .await
    });
    assert_eq!(out, Ok(3));
    assert_eq!(*slept.lock().unwrap(), [ms(40), ms(40)]);
}

#[tokio::test]
async fn the_call_future_is_send_and_can_be_spawned() {
    let (p, _, _) = policy(|b| b.strategy(no_delay()));
    let p = Arc::new(p);
    let shared = Arc::new(tokio::sync::Mutex::new(0u32));
    let task = {
        let p = p.clone();
        let shared = shared.clone();
        assert_send(async move {
            p.call(|| {
                let shared = shared.clone();
                async move {
                    let mut guard = shared.lock().await;
                    *guard += 1;
                    if *guard < 3 {
                        Err(Scripted::new(ErrorClass::Transient, *guard))
                    } else {
                        Ok(*guard)
                    }
                }
            })
            .await
        })
    };
    assert_eq!(tokio::spawn(task).await.unwrap(), Ok(3));
}

#[tokio::test(start_paused = true)]
async fn dropping_the_future_cancels_cleanly() {
    let p = AsyncRetryPolicy::builder()
        .strategy(constant(secs(10)))
        .build()
        .unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let fut = p.call(move || {
        c.fetch_add(1, Ordering::SeqCst);
        async { Err::<(), _>(Scripted::new(ErrorClass::Transient, 0)) }
    });
    // Cancelled during the first 10 s sleep.
    let timed_out = tokio::time::timeout(secs(5), fut).await;
    assert!(timed_out.is_err());
    tokio::time::sleep(secs(60)).await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "no attempt after the future was dropped"
    );
}

#[test]
fn the_future_does_not_box_the_operation() {
    let (p, _, _) = policy(|b| b);
    // An operation whose future holds 4 KiB across an await.
    let big_op = || async {
        let buf = [7u8; 4096];
        tokio::task::yield_now().await;
        Ok::<u8, Scripted>(buf[4095])
    };
    let small_op = || async {
        tokio::task::yield_now().await;
        Ok::<u8, Scripted>(7)
    };
    let big = size_of_val(&big_op());
    let small = size_of_val(&small_op());
    let big_call = size_of_val(&p.call(big_op));
    let small_call = size_of_val(&p.call(small_op));
    println!(
        "op futures: {small} and {big} bytes; call futures: {small_call} and {big_call} bytes"
    );
    is_future(&p.call(small_op));
    // The op's future is held inline, once: the call future grows exactly as much as the op's
    // (a boxed op would not grow at all; a copied one would grow twice as much).
    assert_eq!(big_call - small_call, big - small);
    // And the policy's own state is fixed: the per-call counters, the sleep future and the
    // attempt-timeout timer (568 bytes on rustc 1.95 with every timer feature on).
    assert!(
        small_call - small <= 640,
        "{small_call} bytes for a {small}-byte op"
    );
}

#[test]
fn concurrent_calls_interleave_in_virtual_time() {
    use futures::executor::LocalPool;
    use futures::task::LocalSpawnExt;

    // The documented simulation pattern: read time on the clock, sleep on its timers.
    let clock = VirtualClock::new();
    let timers = clock.clone();
    let policy = Arc::new(
        AsyncRetryPolicy::builder()
            .strategy(constant(secs(1)))
            .clock(clock.clone())
            .sleeper(move |d| timers.timer(d))
            .build()
            .unwrap(),
    );
    let mut pool = LocalPool::new();
    let done = Arc::new(AtomicU32::new(0));
    for _ in 0..100 {
        let (policy, done) = (policy.clone(), done.clone());
        let mut n = 0;
        pool.spawner()
            .spawn_local(async move {
                let out = policy
                    .call(|| {
                        n += 1;
                        let m = n;
                        async move {
                            if m < 3 {
                                Err(Scripted::new(ErrorClass::Transient, m))
                            } else {
                                Ok(m)
                            }
                        }
                    })
                    .await;
                assert_eq!(out, Ok(3));
                done.fetch_add(1, Ordering::SeqCst);
            })
            .unwrap();
    }
    // 100 calls, each sleeping 1 s twice, concurrently: 2 s of virtual time in all.
    assert_eq!(clock.run(|| pool.run_until_stalled()), secs(2));
    assert_eq!(done.load(Ordering::SeqCst), 100);
    assert!(
        clock.sleeps().is_empty(),
        "timers are not recorded as sleeps"
    );
}

/// A call's future does nothing until it is first polled: no attempt, no clock reading. A
/// deadline counted from the start counts from that poll, not from when the future was made.
#[test]
fn nothing_happens_until_the_first_poll() {
    let (p, clock, rec) = policy(|b| b.deadline(secs(1)).max_attempts(3));
    let calls = AtomicU32::new(0);
    let fut = p.call(|| {
        calls.fetch_add(1, Ordering::SeqCst);
        async { Err::<u32, _>(Scripted::new(ErrorClass::Transient, 0)) }
    });
    // Made, not polled: an hour passes.
    clock.advance(secs(3600));
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert!(rec.events().is_empty());
    // Polled now: the deadline (1 s) starts now, so the 100 ms retries are made.
    let out = futures::executor::block_on(fut);
    assert!(out.is_err());
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(clock.sleeps(), [ms(100), ms(100)]);
}

/// A call dropped while its attempt runs ends that attempt before it gives its breaker
/// admission back: the attempt's future is dropped first, and while it drops, the half-open
/// circuit's only probe place is still taken (another call is rejected).
#[test]
fn a_dropped_call_ends_its_attempt_before_giving_its_probe_place_back() {
    use reflexio::{CircuitBreaker, CircuitOpen};
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    #[derive(Debug, PartialEq)]
    struct ProbeErr;
    impl From<CircuitOpen> for ProbeErr {
        fn from(_: CircuitOpen) -> Self {
            ProbeErr
        }
    }

    /// An attempt that never ends and, when dropped, tries another call of the policy.
    struct Probe<'a> {
        policy: &'a AsyncRetryPolicy<ProbeErr>,
        admitted_while_dropping: &'a Mutex<Option<bool>>,
    }
    impl Future for Probe<'_> {
        type Output = Result<u32, ProbeErr>;
        fn poll(self: std::pin::Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Self::Output> {
            Poll::Pending
        }
    }
    impl Drop for Probe<'_> {
        fn drop(&mut self) {
            let entered = AtomicU32::new(0);
            let mut other = pin!(self.policy.call(|| {
                entered.fetch_add(1, Ordering::SeqCst);
                async { Ok::<u32, ProbeErr>(1) }
            }));
            let _ = other.as_mut().poll(&mut Context::from_waker(Waker::noop()));
            *self.admitted_while_dropping.lock().unwrap() =
                Some(entered.load(Ordering::SeqCst) > 0);
        }
    }

    let clock = VirtualClock::new();
    let breaker = CircuitBreaker::builder()
        .min_calls(1)
        .open_for(secs(1))
        .probes(1)
        .clock(clock.clone())
        .build()
        .unwrap();
    breaker.record_outcome(Some(ErrorClass::ServerError));
    clock.advance(secs(1));
    let policy = AsyncRetryPolicy::builder()
        .classifier(|_: &ProbeErr| ErrorClass::ServerError)
        .max_attempts(1)
        .circuit_breaker(breaker.clone())
        .clock(clock.clone())
        .build()
        .unwrap();
    let admitted = Mutex::new(None);
    {
        let mut call = pin!(policy.call(|| Probe {
            policy: &policy,
            admitted_while_dropping: &admitted,
        }));
        let polled = call.as_mut().poll(&mut Context::from_waker(Waker::noop()));
        assert!(polled.is_pending(), "the probe was let through and runs");
    }
    assert_eq!(
        *admitted.lock().unwrap(),
        Some(false),
        "a second probe started while the first was still being dropped"
    );
    // Once dropped, the place is free again.
    let out = futures::executor::block_on(policy.call(|| async { Ok::<u32, ProbeErr>(7) }));
    assert_eq!(out, Ok(7));
}

/// A call's future polled again after its operation panicked at the first poll does not start
/// the call over (a second attempt 1, events again, the clock read again): it panics, as a
/// finished future does.
#[test]
fn a_call_polled_again_after_its_first_attempt_panicked_does_not_start_over() {
    use std::panic::{AssertUnwindSafe, catch_unwind};
    use std::pin::pin;
    use std::task::{Context, Waker};

    let (p, _clock, rec) = policy(|b| b);
    let calls = AtomicU32::new(0);
    let mut fut = pin!(p.call(|| {
        let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
        assert!(n != 1, "the operation panics");
        async move { Ok::<u32, Scripted>(n) }
    }));
    let mut cx = Context::from_waker(Waker::noop());
    assert!(catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(&mut cx))).is_err());
    let again = catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(&mut cx)));
    assert!(
        again.is_err(),
        "started over: {again:?}, the operation called {} times, events {:?}",
        calls.load(Ordering::SeqCst),
        rec.trace()
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

/// The same on a lean policy (no hook, breaker or budget) with no attempt timeout, whose
/// future runs its first attempt on a path of its own (with a deadline counted from the start,
/// after reading the clock): a panic while
/// the operation makes the attempt, or while the attempt is first polled, and a poll after
/// it, neither starts the call over nor makes a second attempt.
#[test]
fn a_plain_call_polled_again_after_a_panic_in_its_first_attempt_does_not_start_over() {
    use std::panic::{AssertUnwindSafe, catch_unwind};
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    let clock = VirtualClock::new();
    let plain = AsyncRetryPolicy::builder()
        .strategy(no_delay())
        .clock(clock.clone())
        .build()
        .unwrap();
    // A deadline counted from the start: the first poll reads the clock first, on the same path.
    let from_start = AsyncRetryPolicy::builder()
        .strategy(no_delay())
        .deadline(secs(60))
        .clock(clock.clone())
        .build()
        .unwrap();
    let mut cx = Context::from_waker(Waker::noop());
    for (p, in_poll) in [
        (&plain, false),
        (&plain, true),
        (&from_start, false),
        (&from_start, true),
    ] {
        let calls = AtomicU32::new(0);
        let mut fut = pin!(p.call(|| {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            assert!(in_poll || n != 1, "the operation panics");
            async move {
                assert!(!in_poll || n != 1, "the attempt panics");
                Ok::<u32, Scripted>(n)
            }
        }));
        assert!(catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(&mut cx))).is_err());
        let again = catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(&mut cx)));
        assert!(
            again.is_err(),
            "started over after a panic {}: {:?}",
            if in_poll {
                "in the attempt"
            } else {
                "in the operation"
            },
            again.as_ref().map(|poll| matches!(poll, Poll::Ready(_)))
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}

/// A plain policy's first attempt that fails goes on from its outcome: the `Ok` rule runs
/// once per value (a rejected value's class is not asked for twice), and an attempt that is
/// pending at the first poll is polled to its end.
#[test]
fn a_plain_call_goes_on_from_its_first_outcome() {
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    let rule_runs = Arc::new(AtomicU32::new(0));
    let runs = rule_runs.clone();
    let p = AsyncRetryPolicy::builder()
        .strategy(no_delay())
        .clock(VirtualClock::new())
        .retry_if_ok(move |v: &u32| {
            runs.fetch_add(1, Ordering::SeqCst);
            (*v < 3).then_some(ErrorClass::Transient)
        })
        .build()
        .unwrap();
    let mut cx = Context::from_waker(Waker::noop());
    for pending_first in [true, false] {
        rule_runs.store(0, Ordering::SeqCst);
        let calls = AtomicU32::new(0);
        let mut fut = pin!(p.call(|| {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            let mut pending_once = pending_first && n == 1;
            std::future::poll_fn(move |cx| {
                if std::mem::take(&mut pending_once) {
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                Poll::Ready(Ok::<u32, Scripted>(n))
            })
        }));
        if pending_first {
            assert!(fut.as_mut().poll(&mut cx).is_pending());
            assert_eq!(calls.load(Ordering::SeqCst), 1);
        }
        assert!(matches!(fut.as_mut().poll(&mut cx), Poll::Ready(Ok(3))));
        assert_eq!(
            (
                calls.load(Ordering::SeqCst),
                rule_runs.load(Ordering::SeqCst)
            ),
            (3, 3),
            "pending first: {pending_first}"
        );
    }
}

/// A strategy that panics (its delay asked only after a failure).
#[derive(Debug)]
struct PanickingStrategy;

impl reflexio::strategies::Strategy for PanickingStrategy {
    fn delay(&self, _: &reflexio::strategies::BackoffContext, _: f64) -> Duration {
        panic!("the strategy panics")
    }
}

/// A lean call decides its first failure on a path of its own: a panic there, in the
/// classifier, the strategy or the `Ok` rule, and a poll after it, make no second attempt;
/// the policy's next call (nothing shared was held) runs as ever.
#[test]
fn a_panic_deciding_a_lean_call_s_first_failure_does_not_start_it_over() {
    use std::panic::{AssertUnwindSafe, catch_unwind};
    use std::pin::pin;
    use std::sync::atomic::AtomicBool;
    use std::task::{Context, Poll, Waker};

    let panics = Arc::new(AtomicBool::new(true));
    let (in_classifier, in_rule) = (panics.clone(), panics.clone());
    let clock = VirtualClock::new();
    let by_classifier = AsyncRetryPolicy::builder()
        .classifier(move |e: &Scripted| {
            assert!(
                !in_classifier.load(Ordering::SeqCst),
                "the classifier panics"
            );
            e.class
        })
        .strategy(no_delay())
        .clock(clock.clone())
        .build()
        .unwrap();
    let by_strategy = AsyncRetryPolicy::<Scripted>::builder()
        .strategy(PanickingStrategy)
        .clock(clock.clone())
        .build()
        .unwrap();
    let by_rule = AsyncRetryPolicy::<Scripted>::builder()
        .strategy(no_delay())
        .retry_if_ok(move |v: &u32| {
            assert!(!in_rule.load(Ordering::SeqCst), "the rule panics");
            (*v == 1).then_some(ErrorClass::Transient)
        })
        .clock(clock.clone())
        .build()
        .unwrap();
    let mut cx = Context::from_waker(Waker::noop());
    let calls = AtomicU32::new(0);
    let failing = || {
        let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
        std::future::ready(if n == 1 {
            Err(Scripted::new(ErrorClass::Transient, n))
        } else {
            Ok(n)
        })
    };
    let rejected_first = || {
        std::future::ready(Ok::<u32, Scripted>(
            calls.fetch_add(1, Ordering::SeqCst) + 1,
        ))
    };
    let mut check =
        |what: &str, fut: std::pin::Pin<&mut dyn Future<Output = Result<u32, Scripted>>>| {
            let mut fut = fut;
            calls.store(0, Ordering::SeqCst);
            let first = catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(&mut cx)));
            let again = catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(&mut cx)));
            assert!(first.is_err() && again.is_err(), "{what}");
            assert_eq!(calls.load(Ordering::SeqCst), 1, "{what}: no second attempt");
        };
    check("classifier", pin!(by_classifier.call(failing)));
    check("strategy", pin!(by_strategy.call(failing)));
    check("Ok rule", pin!(by_rule.call(rejected_first)));
    // Nothing was held: each policy's next call runs.
    panics.store(false, Ordering::SeqCst);
    let two = || std::future::ready(Ok::<u32, Scripted>(2));
    let out = pin!(by_classifier.call(two)).poll(&mut cx);
    assert!(matches!(out, Poll::Ready(Ok(2))), "{out:?}");
    let out = pin!(by_rule.call(two)).poll(&mut cx);
    assert!(matches!(out, Poll::Ready(Ok(2))), "{out:?}");
}

/// A virtual clock far along (500 years: its stamps are nanoseconds, exact for 584) still
/// counts the deadline, from the start and from the first failure, on each path of the call's
/// future: a lean call's first poll (`call`, and `execute`, which reads the clock first) and a
/// full call's steps (a hook).
#[test]
fn the_deadline_holds_on_a_virtual_clock_centuries_along() {
    const CENTURIES: Duration = Duration::from_secs(500 * 365 * 24 * 3600);
    for hook in [false, true] {
        for from_start in [false, true] {
            for execute in [false, true] {
                let clock = VirtualClock::new();
                clock.advance(CENTURIES);
                let rec = Recorder::default();
                let builder = AsyncRetryPolicy::builder()
                    .strategy(constant(ms(300)))
                    .max_attempts(10)
                    .clock(clock.clone());
                let builder = if from_start {
                    builder.deadline(secs(1))
                } else {
                    builder.deadline_after_first_failure(secs(1))
                };
                let policy = if hook {
                    builder.on_event(rec.hook()).build().unwrap()
                } else {
                    builder.build().unwrap()
                };
                let calls = AtomicU32::new(0);
                let op = || {
                    let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                    std::future::ready(Err::<u32, Scripted>(Scripted::new(
                        ErrorClass::Transient,
                        n,
                    )))
                };
                let case = format!("hook {hook}, from the start {from_start}, execute {execute}");
                if execute {
                    let err = futures::executor::block_on(policy.execute(op)).unwrap_err();
                    assert_eq!(err.stop_reason(), StopReason::DeadlineExceeded, "{case}");
                    assert_eq!(err.attempts(), 4, "{case}");
                } else {
                    let out = futures::executor::block_on(policy.call(op));
                    assert_eq!(out, Err(Scripted::new(ErrorClass::Transient, 4)), "{case}");
                }
                assert_eq!(calls.load(Ordering::SeqCst), 4, "{case}");
                assert_eq!(clock.now(), CENTURIES + ms(900), "{case}");
            }
        }
    }
}
