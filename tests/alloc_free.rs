//! Heap allocations, counted: none on the success path (sync, async, `#[retry]`), and none per
//! retry in the retry loops, as long as the policy has no custom sleeper; an async call of a
//! policy with a breaker, budget or hook, one (its boxed state).
//!
//! A dedicated test binary: `allocation-counter` installs a counting global allocator (its
//! `unsafe impl GlobalAlloc` stays in that crate, so this workspace stays `unsafe`-free) and
//! counts **only the current thread's** allocations, so the test harness's other threads cannot
//! disturb a count. Every policy is built, and every `#[retry]` function called once, before the
//! counting starts: building a policy allocates (its strategies and classifier are `Arc`s), once.

use std::cell::Cell;
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use allocation_counter::{AllocationInfo, measure};
use reflexio::strategies::{full_jitter, no_delay};
use reflexio::{AsyncRetryPolicy, ErrorClass, RetryPolicy, retry};

/// The error of every operation here, always `Transient`.
#[derive(Debug, PartialEq, Eq)]
struct Flaky;

fn transient(_: &Flaky) -> ErrorClass {
    ErrorClass::Transient
}

/// How many calls each measurement makes: a per-call allocation would show as this many.
const CALLS: u64 = 1_000;

/// Polls `fut` to completion with a no-op waker: no executor, so nothing else allocates.
fn poll_to_end<F: Future>(fut: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    let mut fut = pin!(fut);
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

/// An operation failing `failures` times, then returning the number of calls.
fn failing(failures: u32) -> impl FnMut() -> Result<u32, Flaky> {
    let mut calls = 0;
    move || {
        calls += 1;
        if calls <= failures {
            Err(Flaky)
        } else {
            Ok(black_box(calls))
        }
    }
}

fn assert_none(what: &str, info: AllocationInfo) {
    assert_eq!(
        (info.count_total, info.bytes_total),
        (0, 0),
        "{what} allocated: {info:?}"
    );
}

fn sync_policy(deadline: bool) -> RetryPolicy<Flaky> {
    let builder = RetryPolicy::builder()
        .classifier(transient)
        .strategy(no_delay())
        .max_attempts(5);
    let builder = if deadline {
        builder
    } else {
        builder.no_deadline()
    };
    builder.build().unwrap()
}

fn async_policy(deadline: bool) -> AsyncRetryPolicy<Flaky> {
    let builder = AsyncRetryPolicy::builder()
        .classifier(transient)
        .strategy(no_delay())
        .max_attempts(5);
    let builder = if deadline {
        builder
    } else {
        builder.no_deadline()
    };
    builder.build().unwrap()
}

#[retry(max_attempts = 5, strategy = no_delay(), deadline = None, classifier = transient)]
fn retried_sync(failures: &Cell<u32>) -> Result<u32, Flaky> {
    if failures.get() > 0 {
        failures.set(failures.get() - 1);
        Err(Flaky)
    } else {
        Ok(black_box(7))
    }
}

/// The default deadline, counted from the first failure: its calls run their first attempt
/// before the policy lookup too, and read the clock at their first failure.
#[retry(max_attempts = 5, strategy = no_delay(), classifier = transient)]
fn retried_sync_deadline(failures: &Cell<u32>) -> Result<u32, Flaky> {
    if failures.get() > 0 {
        failures.set(failures.get() - 1);
        Err(Flaky)
    } else {
        Ok(black_box(7))
    }
}

#[retry(max_attempts = 5, strategy = no_delay(), deadline = None, classifier = transient)]
async fn retried_async(failures: &Cell<u32>) -> Result<u32, Flaky> {
    if failures.get() > 0 {
        failures.set(failures.get() - 1);
        Err(Flaky)
    } else {
        Ok(black_box(7))
    }
}

/// The counter must see this thread's allocations, or every test below would pass vacuously.
#[test]
fn the_counter_counts() {
    let info = measure(|| {
        black_box(Box::new(1_u64));
    });
    assert_eq!((info.count_total, info.bytes_total), (1, 8));
}

#[test]
fn sync_success_allocates_nothing() {
    for deadline in [false, true] {
        let policy = sync_policy(deadline);
        policy.call(failing(0)).unwrap(); // warm-up: thread-locals, lazy statics
        let info = measure(|| {
            for _ in 0..CALLS {
                assert_eq!(policy.call(failing(0)), Ok(1));
            }
        });
        assert_none(&format!("a sync success (deadline: {deadline})"), info);
    }
}

#[test]
fn sync_retries_allocate_nothing() {
    for deadline in [false, true] {
        let policy = sync_policy(deadline);
        policy.call(failing(4)).unwrap();
        let info = measure(|| {
            for _ in 0..CALLS {
                assert_eq!(policy.call(failing(4)), Ok(5));
            }
        });
        assert_none(&format!("4 sync retries (deadline: {deadline})"), info);
        // Giving up allocates nothing either: the error is the operation's own.
        let info = measure(|| {
            for _ in 0..CALLS {
                assert_eq!(policy.call(failing(5)), Err(Flaky));
            }
        });
        assert_none(&format!("giving up (deadline: {deadline})"), info);
    }
}

/// A jittered strategy draws random numbers: seeding the generator from std's random hasher
/// keys allocates nothing either.
#[test]
fn jittered_retries_allocate_nothing() {
    let policy = RetryPolicy::builder()
        .classifier(transient)
        .strategy(full_jitter().base(std::time::Duration::ZERO))
        .max_attempts(5)
        .no_deadline()
        .build()
        .unwrap();
    policy.call(failing(4)).unwrap();
    let info = measure(|| {
        for _ in 0..CALLS {
            assert_eq!(policy.call(failing(4)), Ok(5));
        }
    });
    assert_none("4 jittered sync retries", info);
}

/// A hook is called by reference with an event on the stack: no allocation per event.
#[test]
fn events_allocate_nothing() {
    let policy = RetryPolicy::builder()
        .classifier(transient)
        .strategy(no_delay())
        .max_attempts(5)
        .on_event(|event| {
            black_box(event);
        })
        .build()
        .unwrap();
    policy.call(failing(4)).unwrap();
    let info = measure(|| {
        for _ in 0..CALLS {
            assert_eq!(policy.call(failing(4)), Ok(5));
        }
    });
    assert_none("4 sync retries with a hook", info);
}

#[test]
fn async_success_allocates_nothing() {
    for deadline in [false, true] {
        let policy = async_policy(deadline);
        let mut op = failing(0);
        poll_to_end(policy.call(|| std::future::ready(op()))).unwrap();
        let info = measure(|| {
            for _ in 0..CALLS {
                let mut op = failing(0);
                let out = poll_to_end(policy.call(|| std::future::ready(op())));
                assert_eq!(out, Ok(1));
            }
        });
        assert_none(&format!("an async success (deadline: {deadline})"), info);
    }
}

/// Zero delays are not slept, so the async loop retries without a timer: nothing allocated.
#[test]
fn async_retries_allocate_nothing() {
    let policy = async_policy(false);
    let mut op = failing(4);
    poll_to_end(policy.call(|| std::future::ready(op()))).unwrap();
    let info = measure(|| {
        for _ in 0..CALLS {
            let mut op = failing(4);
            let out = poll_to_end(policy.call(|| std::future::ready(op())));
            assert_eq!(out, Ok(5));
        }
    });
    assert_none("4 async retries", info);
}

/// An async call of a policy with a breaker, budget or hook boxes its full state, so that it
/// does not make every call's future bigger: exactly one allocation per call, none per retry
/// (and none per event).
#[test]
fn async_calls_with_a_hook_allocate_their_state_once() {
    let policy = AsyncRetryPolicy::builder()
        .classifier(transient)
        .strategy(no_delay())
        .max_attempts(5)
        .on_event(|event| {
            black_box(event);
        })
        .build()
        .unwrap();
    let mut op = failing(0);
    poll_to_end(policy.call(|| std::future::ready(op()))).unwrap();
    for failures in [0, 4] {
        let info = measure(|| {
            for _ in 0..CALLS {
                let mut op = failing(failures);
                let out = poll_to_end(policy.call(|| std::future::ready(op())));
                assert_eq!(out, Ok(failures + 1));
            }
        });
        assert_eq!(
            info.count_total, CALLS,
            "{failures} retries: one allocation per call, {info:?}"
        );
    }
}

#[test]
fn retry_functions_allocate_only_their_policy_once() {
    // The first call builds the function's policy (in a `static`): that allocates, once.
    let first = measure(|| {
        assert_eq!(retried_sync(&Cell::new(0)), Ok(7));
        assert_eq!(retried_sync_deadline(&Cell::new(0)), Ok(7));
        assert_eq!(poll_to_end(retried_async(&Cell::new(0))), Ok(7));
    });
    assert!(first.count_total > 0, "{first:?}");
    let info = measure(|| {
        for _ in 0..CALLS {
            assert_eq!(retried_sync(&Cell::new(0)), Ok(7));
            assert_eq!(retried_sync_deadline(&Cell::new(0)), Ok(7));
            assert_eq!(poll_to_end(retried_async(&Cell::new(0))), Ok(7));
        }
    });
    assert_none("a `#[retry]` success", info);
    let info = measure(|| {
        for _ in 0..CALLS {
            assert_eq!(retried_sync(&Cell::new(4)), Ok(7));
            assert_eq!(retried_sync_deadline(&Cell::new(4)), Ok(7));
            assert_eq!(poll_to_end(retried_async(&Cell::new(4))), Ok(7));
        }
    });
    assert_none("4 `#[retry]` retries", info);
}

/// `futures::executor::block_on` allocates nothing per call either (after its thread-local
/// waker is made, on the first call), so it is fine for driving async code in such tests.
#[test]
fn block_on_is_allocation_free_too() {
    let policy = async_policy(false);
    let mut op = failing(0);
    futures::executor::block_on(policy.call(|| std::future::ready(op()))).unwrap();
    let info = measure(|| {
        for _ in 0..CALLS {
            let mut op = failing(4);
            let out = futures::executor::block_on(policy.call(|| std::future::ready(op())));
            assert_eq!(out, Ok(5));
        }
    });
    assert_none("block_on of an async call with 4 retries", info);
}
