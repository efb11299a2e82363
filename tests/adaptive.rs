//! The adaptive rate limiter (`AdaptiveRateLimiter`, `.rate_limiter(..)`) through the public
//! API, on the virtual clock: exact waits before first attempts and retries, throttles that cut
//! the rate and successes that grow it back, the deadline, a server's `Retry-After`, and calls
//! that are dropped or panic while they hold nothing.
// The budget counts in thousandths of a token: its amounts here are exact.
#![allow(clippy::float_cmp)]

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};
use std::task::Context;
use std::time::Duration;

use futures::task::noop_waker;
use reflexio::strategies::constant;
use reflexio::testing::VirtualClock;
use reflexio::{
    AdaptiveRateLimiter, AsyncRetryPolicy, ErrorClass, EventKind, RateLimitError, RetryBudget,
    RetryPolicy, StopReason,
};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn limiter(clock: &VirtualClock) -> AdaptiveRateLimiter {
    AdaptiveRateLimiter::builder()
        .clock(clock.clone())
        .build()
        .unwrap()
}

/// A limiter the service has just throttled: on, at its lowest rate (0.5 tokens/s), empty.
fn throttled_limiter(clock: &VirtualClock) -> AdaptiveRateLimiter {
    let l = limiter(clock);
    l.record_outcome(Some(ErrorClass::RateLimit));
    l
}

#[test]
fn the_first_429_turns_the_limiter_on_and_the_retry_waits_for_its_token() {
    let clock = VirtualClock::new();
    let l = limiter(&clock);
    let policy = RetryPolicy::builder()
        .strategy(constant(ms(250)))
        .rate_limiter(l.clone())
        .clock(clock.clone())
        .build()
        .unwrap();
    let mut calls = 0;
    let out = policy.call(|| {
        calls += 1;
        if calls == 1 {
            Err(RateLimitError::new("429"))
        } else {
            Ok(calls)
        }
    });
    assert_eq!(out, Ok(2));
    // Off before the 429 (the first attempt did not wait); then 0.5 tokens/s: 250 ms of
    // backoff earned 0.125, the rest took 1.75 s.
    assert_eq!(clock.sleeps(), [ms(250), ms(1750)]);
    assert_eq!(l.fill_rate(), Some(1.6)); // grown back: see the next test
}

/// Every attempt waits, the first included, and each success grows the rate: the three
/// calls' waits, from the AWS formulas.
#[test]
fn every_first_attempt_waits_and_successes_shorten_the_waits() {
    let clock = VirtualClock::new();
    let l = throttled_limiter(&clock);
    let policy = AsyncRetryPolicy::builder()
        .rate_limiter(l.clone())
        .clock(clock.clone())
        .build()
        .unwrap();
    for _ in 0..3 {
        let out =
            futures::executor::block_on(policy.call(|| async { Ok::<_, RateLimitError>(()) }));
        assert_eq!(out, Ok(()));
    }
    let sleeps = clock.sleeps();
    // 1 token at 0.5/s: 2 s. At 2 s, a success: the measured rate is 2 responses over the
    // first 2 s, smoothed, 0.8/s; CUBIC's curve from w_max = 0 says 0.4 × 2³ = 3.2, capped at
    // twice the measured rate: 1.6/s, so the next token is 625 ms away. The third's rate is
    // min(0.4 × 2.625³, 2 × 1.76) = 3.52/s.
    assert_eq!(sleeps[..2], [Duration::from_secs(2), ms(625)]);
    assert_eq!(sleeps[2], Duration::from_secs_f64(1.0 / 3.52));
    assert_eq!(sleeps.len(), 3);
}

/// One client calling a service that serves 10 attempts a second and answers 429 beyond: with
/// the limiter it converges on what the service takes, where the same loop without it is
/// throttled on most attempts.
#[test]
fn a_client_converges_on_what_the_service_can_take() {
    fn run(with_limiter: bool) -> (u32, u32) {
        let clock = VirtualClock::new();
        let mut builder = RetryPolicy::builder()
            .strategy(constant(ms(50)))
            .max_attempts(3)
            .clock(clock.clone());
        if with_limiter {
            builder = builder.rate_limiter(limiter(&clock));
        }
        let policy = builder.build().unwrap();
        let (window, served, throttled, ok) =
            (Cell::new(0), Cell::new(0), Cell::new(0), Cell::new(0));
        while clock.now() < Duration::from_secs(30) {
            let out = policy.call(|| {
                let second = clock.now().as_secs();
                if window.get() != second {
                    window.set(second);
                    served.set(0);
                }
                clock.advance(ms(10));
                if served.get() >= 10 {
                    throttled.set(throttled.get() + u32::from(second >= 10));
                    return Err(RateLimitError::new("429"));
                }
                served.set(served.get() + 1);
                Ok(())
            });
            ok.set(ok.get() + u32::from(out.is_ok() && clock.now() >= Duration::from_secs(10)));
        }
        (throttled.get(), ok.get())
    }
    // Over the last 20 s (the first 10 s are the limiter's convergence).
    let (throttled_without, ok_without) = run(false);
    let (throttled_with, ok_with) = run(true);
    // Without: 400 throttled attempts, 201 successes; with: 11 and 157 (CUBIC's sawtooth
    // leaves some capacity unused: a single client probes above it, is cut to 0.7, climbs).
    assert!(throttled_without >= 300, "{throttled_without}");
    assert!(
        throttled_with * 20 < throttled_without,
        "{throttled_with} vs {throttled_without}"
    );
    // Successes: the service's 10 a second, and within 25 % of it with the limiter.
    assert!(ok_without >= 190, "{ok_without}");
    assert!(ok_with >= 150, "{ok_with}");
}

#[test]
fn a_wait_that_would_reach_the_deadline_stops_the_retry_with_the_last_error() {
    let clock = VirtualClock::new();
    let l = limiter(&clock);
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&events);
    let policy = RetryPolicy::builder()
        .strategy(constant(ms(100)))
        .deadline(Duration::from_secs(1))
        .rate_limiter(l.clone())
        .clock(clock.clone())
        .on_event(move |e| seen.lock().unwrap().push((e.kind, e.stop, e.delay)))
        .build()
        .unwrap();
    let err = policy
        .execute(|| Err::<(), _>(RateLimitError::new("slow down")))
        .unwrap_err();
    // After the 100 ms backoff the token is 1.9 s away: past the 1 s deadline, so no sleep.
    assert_eq!(err.stop_reason(), StopReason::DeadlineExceeded);
    assert_eq!(err.attempts(), 1);
    assert_eq!(err.error().unwrap().message(), "slow down");
    assert_eq!(clock.sleeps(), [ms(100)]);
    assert_eq!(clock.now(), ms(100));
    assert_eq!(
        *events.lock().unwrap(),
        [
            (EventKind::Retry, None, Some(ms(100))),
            (EventKind::GaveUp, Some(StopReason::DeadlineExceeded), None),
        ]
    );
}

/// A server's `Retry-After` on a 429 holds every call's token until then, bounded by the
/// policy's `max_server_delay` (here the call that got it stops: it asked for too long).
#[test]
fn a_retry_after_holds_every_call_for_the_bounded_delay() {
    let clock = VirtualClock::new();
    let l = limiter(&clock);
    let policy = RetryPolicy::builder()
        .max_server_delay(Duration::from_secs(2))
        .rate_limiter(l.clone())
        .clock(clock.clone())
        .build()
        .unwrap();
    let err = policy
        .execute(|| {
            Err::<(), _>(RateLimitError::new("429").with_retry_after(Duration::from_secs(10)))
        })
        .unwrap_err();
    assert_eq!(err.stop_reason(), StopReason::ServerDelayTooLong);
    assert!(clock.sleeps().is_empty());
    // The next call waits the 2 s the bound allows (and by then its token is there).
    assert_eq!(policy.call(|| Ok::<_, RateLimitError>(7)), Ok(7));
    assert_eq!(clock.sleeps(), [Duration::from_secs(2)]);
}

/// A call dropped while it waits for a token takes none, and the retry it waited for gives its
/// budget tokens back.
#[test]
fn a_call_dropped_while_it_waits_takes_no_token_and_keeps_no_budget() {
    let clock = VirtualClock::new();
    let l = limiter(&clock);
    let budget = RetryBudget::aws_standard();
    let timers = clock.clone();
    let policy = AsyncRetryPolicy::builder()
        .strategy(constant(Duration::ZERO))
        .rate_limiter(l.clone())
        .budget(budget.clone())
        .clock(clock.clone())
        // Sleeps are timers, pending until the clock is moved: the call can be caught waiting.
        .sleeper(move |d| {
            let clock = timers.clone();
            async move { clock.timer(d).await }
        })
        .build()
        .unwrap();
    let waker = noop_waker();
    let mut cx = Context::from_waker(&waker);
    {
        let call = policy.call(|| async { Err::<(), _>(RateLimitError::new("429")) });
        let mut call = std::pin::pin!(call);
        // The 429 turns the limiter on; the retry (5 tokens of the budget) waits 2 s for its
        // token.
        assert!(call.as_mut().poll(&mut cx).is_pending());
        assert_eq!(budget.available(), 495.0);
        assert_eq!(clock.next_timer(), Some(Duration::from_secs(2)));
    }
    assert_eq!(budget.available(), 500.0);
    assert_eq!(clock.next_timer(), None);
    clock.advance(Duration::from_secs(2));
    assert_eq!(l.available(), Some(1.0));
    assert_eq!(l.try_acquire(), Ok(()));
}

#[test]
fn a_panicking_attempt_leaves_the_limiter_working() {
    let clock = VirtualClock::new();
    let l = throttled_limiter(&clock);
    clock.advance(Duration::from_secs(2));
    let policy = RetryPolicy::builder()
        .rate_limiter(l.clone())
        .clock(clock.clone())
        .build()
        .unwrap();
    let panicked = catch_unwind(AssertUnwindSafe(|| {
        policy.call(|| -> Result<(), RateLimitError> { panic!("bug in the operation") })
    }));
    assert!(panicked.is_err());
    // The attempt started, so its token was spent; the next call waits for the next one.
    assert_eq!(l.available(), Some(0.0));
    assert_eq!(policy.call(|| Ok::<_, RateLimitError>(1)), Ok(1));
    assert_eq!(clock.sleeps(), [Duration::from_secs(2)]);
}

#[test]
fn many_threads_share_one_limiter() {
    let clock = VirtualClock::new();
    let l = throttled_limiter(&clock);
    let policy = RetryPolicy::builder()
        .rate_limiter(l.clone())
        .clock(clock.clone())
        .build()
        .unwrap();
    let attempts = std::sync::atomic::AtomicU32::new(0);
    std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| {
                for _ in 0..20 {
                    let out = policy.call(|| {
                        attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        Ok::<_, RateLimitError>(())
                    });
                    assert_eq!(out, Ok(()));
                }
            });
        }
    });
    assert_eq!(attempts.into_inner(), 160);
    // Each call waited for its token (on a virtual clock the threads' sleeps add up).
    assert!(clock.now() > Duration::from_secs(2));
    assert!(l.fill_rate().unwrap() > 0.5);
}

/// The first attempt's call is counted in a ratio budget even when it waited for its token.
#[test]
fn a_first_attempt_after_a_wait_still_counts_in_the_budget() {
    let clock = VirtualClock::new();
    let budget = RetryBudget::ratio(10.0)
        .min_retries_per_sec(0)
        .clock(clock.clone())
        .build()
        .unwrap();
    let policy = RetryPolicy::builder()
        .rate_limiter(throttled_limiter(&clock))
        .budget(budget.clone())
        .clock(clock.clone())
        .build()
        .unwrap();
    assert_eq!(policy.call(|| Ok::<_, RateLimitError>(())), Ok(()));
    assert_eq!(clock.sleeps(), [Duration::from_secs(2)]);
    assert!((budget.available() - 0.1).abs() < 1e-9);
}

#[test]
fn the_limiter_and_the_policy_must_share_a_clock() {
    let clock = VirtualClock::new();
    let problem = |r: Result<RetryPolicy<RateLimitError>, reflexio::ConfigError>| {
        r.unwrap_err().problems()[0].setting()
    };
    // A virtual limiter and a real policy, a real limiter and a virtual policy, two clocks.
    let virtual_limiter = limiter(&clock);
    assert_eq!(
        problem(
            RetryPolicy::builder()
                .rate_limiter(virtual_limiter.clone())
                .build()
        ),
        "rate_limiter"
    );
    assert_eq!(
        problem(
            RetryPolicy::builder()
                .rate_limiter(AdaptiveRateLimiter::new())
                .clock(clock.clone())
                .build()
        ),
        "rate_limiter"
    );
    assert_eq!(
        problem(
            RetryPolicy::builder()
                .rate_limiter(virtual_limiter.clone())
                .clock(VirtualClock::new())
                .build()
        ),
        "rate_limiter"
    );
    assert!(
        RetryPolicy::<RateLimitError>::builder()
            .rate_limiter(virtual_limiter)
            .clock(clock)
            .build()
            .is_ok()
    );
    assert!(
        RetryPolicy::<RateLimitError>::builder()
            .rate_limiter(AdaptiveRateLimiter::new())
            .build()
            .is_ok()
    );
}

/// A strategy whose delay panics: a bug in user code inside the retry decision.
#[derive(Debug)]
struct PanickingStrategy;

impl reflexio::strategies::Strategy for PanickingStrategy {
    fn delay(&self, _: &reflexio::strategies::BackoffContext, _: f64) -> Duration {
        panic!("bug in the strategy")
    }
}

#[test]
fn panics_in_the_classifier_strategy_ok_rule_and_hook_leave_the_limiter_working() {
    let clock = VirtualClock::new();
    let l = throttled_limiter(&clock);
    let fails = || Err::<u32, RateLimitError>(RateLimitError::new("429"));
    let builder = || {
        RetryPolicy::<RateLimitError>::builder()
            .strategy(constant(ms(1)))
            .max_attempts(2)
            .rate_limiter(l.clone())
            .clock(clock.clone())
    };
    let classifier = builder()
        .classifier(|_: &RateLimitError| -> ErrorClass { panic!("bug in the classifier") })
        .build()
        .unwrap();
    let strategy = builder().strategy(PanickingStrategy).build().unwrap();
    let ok_rule = builder()
        .retry_if_ok(|_: &u32| -> Option<ErrorClass> { panic!("bug in the Ok rule") })
        .build()
        .unwrap();
    let hook = builder()
        .on_event(|_| panic!("bug in the hook"))
        .build()
        .unwrap();
    for (name, run) in [
        (
            "classifier",
            Box::new(|| drop(classifier.call(fails))) as Box<dyn Fn()>,
        ),
        ("strategy", Box::new(|| drop(strategy.call(fails)))),
        ("Ok rule", Box::new(|| drop(ok_rule.call(|| Ok(7))))),
    ] {
        clock.advance(Duration::from_secs(10));
        let panicked = catch_unwind(AssertUnwindSafe(run));
        assert!(panicked.is_err(), "the {name}'s panic reaches the caller");
        // The limiter is not wedged (its lock recovered, no token lost beyond the attempt's):
        // a token is there again after its refill, and a call gets it.
        clock.advance(Duration::from_secs(10));
        assert_eq!(l.try_acquire(), Ok(()), "after a panic in the {name}");
        clock.advance(Duration::from_secs(10));
        assert_eq!(
            builder()
                .build()
                .unwrap()
                .call(|| Ok::<_, RateLimitError>(1)),
            Ok(1)
        );
    }
    // A hook's panic is contained: the call still decides, waits for its tokens and returns.
    clock.advance(Duration::from_secs(10));
    let before = clock.now();
    assert!(hook.call(fails).is_err());
    assert!(
        clock.now() > before,
        "the retry waited for the limiter's token"
    );
    assert!(l.fill_rate().is_some());
}

#[test]
fn a_clock_jump_past_any_wrap_leaves_the_limiter_exact() {
    let clock = VirtualClock::new();
    let l = throttled_limiter(&clock);
    // Further than any 32-bit count of nanoseconds, microseconds or milliseconds, and past
    // half of `u64` nanoseconds.
    for jump in [
        Duration::from_nanos(u64::from(u32::MAX) + 1),
        Duration::from_secs(u64::from(u32::MAX) + 1),
        Duration::from_nanos(u64::MAX / 2 + 1),
    ] {
        clock.advance(jump);
        // The bucket refilled to its capacity, no more: one token at the lowest rate.
        assert_eq!(l.try_acquire(), Ok(()), "after a jump of {jump:?}");
        let wait = l.try_acquire().unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(2),
            "{wait:?}"
        );
        l.record_outcome(Some(ErrorClass::RateLimit));
        assert!(l.fill_rate().is_some_and(f64::is_finite));
    }
}
