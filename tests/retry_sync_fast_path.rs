//! The fast path of sync `#[retry]` functions: once a function's policy is built, and when it
//! is lean (no breaker, budget or hook) with no deadline counted from the start, a call runs
//! its first attempt before looking the policy up, and only a failure looks it up. Everything
//! here runs calls after the first, through that path, and checks they behave exactly as the
//! policy's own `call` does: attempts, sleeps, deadline, errors. And where it must not apply
//! (a first call, a hook, a deadline from the start, another instantiation of a generic
//! function), that it does not.

// Each test declares its `#[retry]` functions (and their statics) next to its assertions.
#![allow(clippy::items_after_statements)]

mod support;

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use reflexio::strategies::{Constant, Exponential, Strategy, constant, exponential, no_delay};
use reflexio::testing::VirtualClock;
use reflexio::{Classification, Classify, ErrorClass, EventKind, RetryPolicy, StopReason, retry};
use support::{Recorder, Scripted, ms, secs};

/// Fails `failures` times (the error naming the call), then succeeds with the call number.
fn scripted(calls: &Cell<u32>, failures: &Cell<u32>, class: ErrorClass) -> Result<u32, Scripted> {
    calls.set(calls.get() + 1);
    if failures.get() > 0 {
        failures.set(failures.get() - 1);
        Err(Scripted::new(class, calls.get()))
    } else {
        Ok(calls.get())
    }
}

/// The sleeps `clock` recorded during `run`.
fn sleeps_during<T>(clock: &VirtualClock, run: impl FnOnce() -> T) -> (T, Vec<Duration>) {
    let before = clock.sleeps().len();
    let out = run();
    (out, clock.sleeps()[before..].to_vec())
}

#[test]
fn later_calls_retry_as_the_policy_does() {
    static CLOCK: LazyLock<VirtualClock> = LazyLock::new(VirtualClock::new);
    #[retry(strategy = constant(ms(10)), max_attempts = 4, clock = CLOCK.clone())]
    fn flaky(calls: &Cell<u32>, failures: &Cell<u32>, class: ErrorClass) -> Result<u32, Scripted> {
        scripted(calls, failures, class)
    }
    let run = |failures: u32, class: ErrorClass| {
        let (calls, left) = (Cell::new(0), Cell::new(failures));
        let (out, sleeps) = sleeps_during(&CLOCK, || flaky(&calls, &left, class));
        (out, calls.get(), sleeps)
    };
    // The first call builds the policy; the later ones go the fast path.
    for _ in 0..2 {
        assert_eq!(run(0, ErrorClass::Transient), (Ok(1), 1, vec![]));
        for failures in 1..=3 {
            let (out, calls, sleeps) = run(failures, ErrorClass::Transient);
            assert_eq!(out, Ok(failures + 1));
            assert_eq!(calls, failures + 1);
            assert_eq!(sleeps, vec![ms(10); failures as usize]);
        }
        // Every attempt fails: 4 of them, 3 sleeps, the last error as it was.
        assert_eq!(
            run(10, ErrorClass::Transient),
            (
                Err(Scripted::new(ErrorClass::Transient, 4)),
                4,
                vec![ms(10); 3]
            )
        );
        // A permanent error: one attempt, no sleep.
        assert_eq!(
            run(10, ErrorClass::Permanent),
            (Err(Scripted::new(ErrorClass::Permanent, 1)), 1, vec![])
        );
    }
}

/// Each call against the same settings through `RetryPolicy::call`: the reference.
#[test]
fn later_calls_match_the_policys_own_call() {
    static CLOCK: LazyLock<VirtualClock> = LazyLock::new(VirtualClock::new);
    #[retry(strategy = constant(ms(3)), rate_limit = constant(ms(7)), max_attempts = 5, clock = CLOCK.clone())]
    fn flaky(calls: &Cell<u32>, failures: &Cell<u32>, class: ErrorClass) -> Result<u32, Scripted> {
        scripted(calls, failures, class)
    }
    let reference_clock = VirtualClock::new();
    let reference = RetryPolicy::<Scripted>::builder()
        .strategy(constant(ms(3)))
        .strategy_for(ErrorClass::RateLimit, constant(ms(7)))
        .max_attempts(5)
        .clock(reference_clock.clone())
        .build()
        .unwrap();
    let classes = [
        ErrorClass::Transient,
        ErrorClass::RateLimit,
        ErrorClass::ServerError,
        ErrorClass::Unknown,
        ErrorClass::Concurrency,
        ErrorClass::Permanent,
    ];
    for class in classes {
        for failures in 0..7 {
            let (calls, left) = (Cell::new(0), Cell::new(failures));
            let got = sleeps_during(&CLOCK, || flaky(&calls, &left, class));
            let got = (got, calls.get());
            let (calls, left) = (Cell::new(0), Cell::new(failures));
            let want = sleeps_during(&reference_clock, || {
                reference.call(|| scripted(&calls, &left, class))
            });
            let want = (want, calls.get());
            assert_eq!(got, want, "{class:?}, {failures} failures");
        }
    }
}

/// The default deadline counts from the first failure: a first attempt that takes two minutes
/// before it fails still gets the whole minute of retries. Counted from the start (a
/// `deadline = ".."` key), the same call stops at its first failure.
#[test]
fn the_default_deadline_counts_from_the_first_failure_deadline_from_the_start() {
    static CLOCK: LazyLock<VirtualClock> = LazyLock::new(VirtualClock::new);
    fn slow_first(calls: &Cell<u32>) -> Result<u32, Scripted> {
        calls.set(calls.get() + 1);
        if calls.get() == 1 {
            CLOCK.advance(secs(120));
        }
        Err(Scripted::new(ErrorClass::Transient, calls.get()))
    }
    #[retry(strategy = constant(secs(10)), max_attempts = 100, clock = CLOCK.clone())]
    fn from_first_failure(calls: &Cell<u32>) -> Result<u32, Scripted> {
        slow_first(calls)
    }
    #[retry(strategy = constant(secs(10)), max_attempts = 100, deadline = "1m", clock = CLOCK.clone())]
    fn from_the_start(calls: &Cell<u32>) -> Result<u32, Scripted> {
        slow_first(calls)
    }
    let reference = |deadline_from_start: bool| {
        let builder = RetryPolicy::<Scripted>::builder()
            .strategy(constant(secs(10)))
            .max_attempts(100)
            .clock(CLOCK.clone());
        let policy = if deadline_from_start {
            builder.deadline(secs(60))
        } else {
            builder
        };
        let calls = Cell::new(0);
        let out = sleeps_during(&CLOCK, || {
            policy.build().unwrap().call(|| slow_first(&calls))
        });
        (out, calls.get())
    };
    for _ in 0..3 {
        let calls = Cell::new(0);
        let got = sleeps_during(&CLOCK, || from_first_failure(&calls));
        assert!(calls.get() > 5, "{got:?}, {} calls", calls.get());
        assert_eq!((got, calls.get()), reference(false));

        let calls = Cell::new(0);
        let got = sleeps_during(&CLOCK, || from_the_start(&calls));
        assert_eq!(
            (got, calls.get()),
            ((Err(Scripted::new(ErrorClass::Transient, 1)), vec![]), 1)
        );
        assert_eq!(
            reference(true),
            ((Err(Scripted::new(ErrorClass::Transient, 1)), vec![]), 1)
        );
    }
}

#[test]
fn a_hook_sees_every_later_call() {
    static EVENTS: LazyLock<Recorder> = LazyLock::new(Recorder::default);
    #[retry(strategy = no_delay(), on_event = EVENTS.hook())]
    fn observed(calls: &Cell<u32>, failures: &Cell<u32>) -> Result<u32, Scripted> {
        scripted(calls, failures, ErrorClass::Transient)
    }
    for failures in [0, 0, 1, 0] {
        observed(&Cell::new(0), &Cell::new(failures)).unwrap();
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

#[test]
fn an_invalid_configuration_panics_at_every_call_before_the_body_runs() {
    static CALLS: AtomicU32 = AtomicU32::new(0);
    #[retry(strategy = exponential().factor(0.5))]
    fn bad_strategy() -> Result<(), Scripted> {
        CALLS.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    for _ in 0..3 {
        let panic = catch_unwind(bad_strategy).unwrap_err();
        let message = panic.downcast_ref::<String>().unwrap();
        assert!(
            message.contains("invalid `#[retry]` configuration on `bad_strategy`"),
            "{message}"
        );
    }
    assert_eq!(CALLS.load(Ordering::SeqCst), 0);
}

/// Error types picking their own strategy, so that one generic function has a policy per
/// error type, and an invalid one for `Invalid`.
trait Pick: std::fmt::Debug + Classify + Sized + Send + Sync + 'static {
    type Strategy: Strategy + 'static;
    fn strategy() -> Self::Strategy;
    fn new(call: u32) -> Self;
}

macro_rules! picks {
    ($($name:ident => $strategy:ty = $make:expr;)*) => {$(
        #[derive(Debug, PartialEq, Eq)]
        struct $name(u32);

        impl Classify for $name {
            fn classification(&self) -> Classification {
                Classification::new(ErrorClass::Transient)
            }
        }

        impl Pick for $name {
            type Strategy = $strategy;
            fn strategy() -> $strategy {
                $make
            }
            fn new(call: u32) -> Self {
                $name(call)
            }
        }
    )*};
}

picks! {
    OneMs => Constant = constant(ms(1));
    TwoMs => Constant = constant(ms(2));
    Invalid => Exponential = exponential().factor(0.5);
}

static GENERIC_CLOCK: LazyLock<VirtualClock> = LazyLock::new(VirtualClock::new);

/// One `static` for every instantiation: the first one's policy, then the others'.
#[retry(strategy = E::strategy(), max_attempts = 3, clock = GENERIC_CLOCK.clone())]
fn generic<E: Pick>(calls: &Cell<u32>, failures: &Cell<u32>) -> Result<u32, E> {
    calls.set(calls.get() + 1);
    if failures.get() > 0 {
        failures.set(failures.get() - 1);
        Err(E::new(calls.get()))
    } else {
        Ok(calls.get())
    }
}

fn run<E: Pick>(failures: u32) -> ((Result<u32, E>, Vec<Duration>), u32) {
    let (calls, left) = (Cell::new(0), Cell::new(failures));
    let out = sleeps_during(&GENERIC_CLOCK, || generic::<E>(&calls, &left));
    (out, calls.get())
}

#[test]
fn a_generic_function_keeps_a_policy_per_type() {
    // `OneMs` first: its policy is the one the fast path knows.
    assert_eq!(run::<OneMs>(0), ((Ok(1), vec![]), 1));
    assert_eq!(run::<OneMs>(0), ((Ok(1), vec![]), 1));
    // Another type's first call builds its own policy, before its body runs: `Invalid`'s
    // panics, though the call would succeed (and would, with `OneMs`'s policy).
    for _ in 0..2 {
        let calls = Cell::new(0);
        let panic = catch_unwind(AssertUnwindSafe(|| {
            generic::<Invalid>(&calls, &Cell::new(0))
        }))
        .unwrap_err();
        let message = panic.downcast_ref::<String>().unwrap();
        assert!(
            message.contains("invalid `#[retry]` configuration on `generic`"),
            "{message}"
        );
        assert_eq!(calls.get(), 0);
    }
    // Each type retries with its own policy, whichever comes first.
    for _ in 0..2 {
        assert_eq!(run::<TwoMs>(0), ((Ok(1), vec![]), 1));
        assert_eq!(run::<TwoMs>(1), ((Ok(2), vec![ms(2)]), 2));
        assert_eq!(run::<OneMs>(1), ((Ok(2), vec![ms(1)]), 2));
        assert_eq!(run::<OneMs>(2), ((Ok(3), vec![ms(1); 2]), 3));
        assert_eq!(
            run::<OneMs>(5),
            ((Err(OneMs(3)), vec![ms(1); 2]), 3),
            "3 attempts, the last error"
        );
        assert_eq!(run::<TwoMs>(5), ((Err(TwoMs(3)), vec![ms(2); 2]), 3));
    }
}

/// Calls on several threads at once, the first of them building the policy.
#[test]
fn concurrent_first_calls() {
    static CLOCK: LazyLock<VirtualClock> = LazyLock::new(VirtualClock::new);
    #[retry(strategy = constant(ms(5)), max_attempts = 3, clock = CLOCK.clone())]
    fn shared(calls: &Cell<u32>, failures: &Cell<u32>) -> Result<u32, Scripted> {
        scripted(calls, failures, ErrorClass::Transient)
    }
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                for failures in [0, 1, 2, 5] {
                    let (calls, left) = (Cell::new(0), Cell::new(failures));
                    let out = shared(&calls, &left);
                    let attempts = (failures + 1).min(3);
                    assert_eq!(calls.get(), attempts);
                    if failures < 3 {
                        assert_eq!(out, Ok(attempts));
                    } else {
                        assert_eq!(out, Err(Scripted::new(ErrorClass::Transient, 3)));
                    }
                }
            });
        }
    });
    // 8 threads, each 0 + 1 + 2 + 2 sleeps of 5 ms.
    assert_eq!(CLOCK.sleeps(), vec![ms(5); 8 * 5]);
}

#[test]
fn a_deadline_exceeded_on_the_fast_path_reports_as_such() {
    static CLOCK: LazyLock<VirtualClock> = LazyLock::new(VirtualClock::new);
    static EVENTS: LazyLock<Recorder> = LazyLock::new(Recorder::default);
    // The reference: the same settings with a hook, which keeps the call off the fast path.
    #[retry(strategy = constant(secs(25)), max_attempts = 100, clock = CLOCK.clone(), on_event = EVENTS.hook())]
    fn observed(calls: &Cell<u32>) -> Result<u32, Scripted> {
        scripted(calls, &Cell::new(u32::MAX), ErrorClass::Transient)
    }
    #[retry(strategy = constant(secs(25)), max_attempts = 100, clock = CLOCK.clone())]
    fn lean(calls: &Cell<u32>) -> Result<u32, Scripted> {
        scripted(calls, &Cell::new(u32::MAX), ErrorClass::Transient)
    }
    for _ in 0..2 {
        let calls = Cell::new(0);
        let want = (sleeps_during(&CLOCK, || observed(&calls)), calls.get());
        let calls = Cell::new(0);
        let got = (sleeps_during(&CLOCK, || lean(&calls)), calls.get());
        assert_eq!(got, want);
        assert_eq!(
            EVENTS.take().last().map(|e| e.stop),
            Some(Some(StopReason::DeadlineExceeded))
        );
    }
}
