//! The sync policy's behaviour, ported from the Python original's test suite and extended.

mod support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use reflexio::strategies::{
    BackoffContext, constant, decorrelated_jitter, equal_jitter, exponential, no_delay,
};
use reflexio::testing::VirtualClock;
use reflexio::{
    ConfigProblem, ErrorClass, EventKind, PermanentError, RateLimitError, RetryPolicy, StopReason,
};
use support::{Recorder, Scripted, ms, secs};

/// A policy on a virtual clock with a constant 100 ms delay, recording events.
fn policy(
    configure: impl FnOnce(
        reflexio::RetryPolicyBuilder<Scripted>,
    ) -> reflexio::RetryPolicyBuilder<Scripted>,
) -> (RetryPolicy<Scripted>, VirtualClock, Recorder) {
    let clock = VirtualClock::new();
    let rec = Recorder::default();
    let builder = RetryPolicy::builder()
        .strategy(constant(ms(100)))
        .clock(clock.clone())
        .on_event(rec.hook());
    (configure(builder).build().unwrap(), clock, rec)
}

/// Calls `policy` with an operation failing with `classes[n]` on call `n` (0-based), then
/// succeeding with the call number. Returns the result and the number of calls.
fn run(policy: &RetryPolicy<Scripted>, classes: &[ErrorClass]) -> (Result<u32, Scripted>, u32) {
    let mut calls = 0;
    let out = policy.call(|| {
        calls += 1;
        match classes.get(calls as usize - 1) {
            Some(&class) => Err(Scripted::new(class, calls)),
            None => Ok(calls),
        }
    });
    (out, calls)
}

#[test]
fn never_retried_classes_make_one_call_and_one_gave_up_event() {
    for class in [
        ErrorClass::Permanent,
        ErrorClass::Auth,
        ErrorClass::Permission,
    ] {
        let (p, clock, rec) = policy(|b| b);
        let (out, calls) = run(&p, &[class; 5]);
        assert_eq!(out, Err(Scripted::new(class, 1)));
        assert_eq!(calls, 1);
        assert_eq!(rec.trace(), [(EventKind::GaveUp, 1)]);
        let last = rec.last();
        assert_eq!(last.stop, Some(StopReason::NonRetryable));
        assert_eq!(last.class, Some(class));
        assert!(clock.sleeps().is_empty());
    }
}

#[test]
fn transient_errors_retry_then_succeed() {
    let (p, clock, rec) = policy(|b| b);
    let (out, calls) = run(&p, &[ErrorClass::Transient, ErrorClass::Transient]);
    assert_eq!(out, Ok(3));
    assert_eq!(calls, 3);
    assert_eq!(
        rec.trace(),
        [
            (EventKind::Retry, 1),
            (EventKind::Retry, 2),
            (EventKind::Success, 3)
        ]
    );
    let events = rec.events();
    assert_eq!(events[0].delay, Some(ms(100)));
    assert_eq!(events[0].class, Some(ErrorClass::Transient));
    assert_eq!(events[2].class, None);
    assert_eq!(events[2].elapsed, ms(200));
    assert_eq!(clock.sleeps(), [ms(100), ms(100)]);
}

#[test]
fn max_attempts_returns_the_last_error_without_a_useless_sleep() {
    let (p, clock, rec) = policy(|b| b.max_attempts(3));
    let (out, calls) = run(&p, &[ErrorClass::Transient; 10]);
    // Error identity: the third call's own error, untouched.
    assert_eq!(out, Err(Scripted::new(ErrorClass::Transient, 3)));
    assert_eq!(calls, 3);
    assert_eq!(
        clock.sleeps(),
        [ms(100), ms(100)],
        "no sleep after the last attempt"
    );
    assert_eq!(
        rec.trace(),
        [
            (EventKind::Retry, 1),
            (EventKind::Retry, 2),
            (EventKind::GaveUp, 3)
        ]
    );
    assert_eq!(rec.last().stop, Some(StopReason::MaxAttempts));
}

#[test]
fn a_single_attempt_never_sleeps() {
    let (p, clock, rec) = policy(|b| b.max_attempts(1));
    let (out, calls) = run(&p, &[ErrorClass::Transient]);
    assert_eq!(out.unwrap_err().call, 1);
    assert_eq!(calls, 1);
    assert!(clock.sleeps().is_empty());
    assert_eq!(rec.trace(), [(EventKind::GaveUp, 1)]);
}

#[test]
fn class_retry_cap_limits_that_class_only() {
    let (p, _, rec) = policy(|b| b.max_attempts(10).max_retries_for(ErrorClass::RateLimit, 2));
    let (out, calls) = run(&p, &[ErrorClass::RateLimit; 10]);
    assert_eq!(calls, 3);
    assert_eq!(out.unwrap_err().call, 3);
    let last = rec.last();
    assert_eq!(last.stop, Some(StopReason::MaxRetriesForClass));
    assert_eq!(last.class, Some(ErrorClass::RateLimit));

    // Other classes are not counted against it.
    let (p, _, _) = policy(|b| b.max_attempts(10).max_retries_for(ErrorClass::RateLimit, 1));
    let (out, calls) = run(
        &p,
        &[
            ErrorClass::Transient,
            ErrorClass::RateLimit,
            ErrorClass::ServerError,
            ErrorClass::Transient,
        ],
    );
    assert_eq!((out, calls), (Ok(5), 5));

    // A cap of 0 stops at the first failure of the class.
    let (p, clock, _) = policy(|b| b.max_retries_for(ErrorClass::Concurrency, 0));
    let (_, calls) = run(&p, &[ErrorClass::Concurrency; 3]);
    assert_eq!(calls, 1);
    assert!(clock.sleeps().is_empty());
}

#[test]
fn unknown_errors_have_their_own_cap() {
    let (p, _, rec) = policy(|b| b.max_attempts(10));
    let (_, calls) = run(&p, &[ErrorClass::Unknown; 10]);
    assert_eq!(calls, 3, "default max_unknown_retries is 2");
    assert_eq!(rec.last().stop, Some(StopReason::MaxUnknownRetries));

    let (p, _, _) = policy(|b| b.max_attempts(10).max_unknown_retries(Some(0)));
    assert_eq!(run(&p, &[ErrorClass::Unknown; 10]).1, 1);

    let (p, _, rec) = policy(|b| b.max_attempts(4).max_unknown_retries(None));
    assert_eq!(run(&p, &[ErrorClass::Unknown; 10]).1, 4);
    assert_eq!(rec.last().stop, Some(StopReason::MaxAttempts));
}

#[test]
fn per_class_strategies_are_used_only_for_their_class() {
    let default_calls = Arc::new(AtomicU32::new(0));
    let rate_calls = Arc::new(AtomicU32::new(0));
    let (d, r) = (default_calls.clone(), rate_calls.clone());
    let (p, clock, _) = policy(|b| {
        b.strategy(move |_: &BackoffContext, _: f64| {
            d.fetch_add(1, Ordering::SeqCst);
            ms(10)
        })
        .strategy_for(ErrorClass::RateLimit, move |_: &BackoffContext, _: f64| {
            r.fetch_add(1, Ordering::SeqCst);
            ms(700)
        })
    });
    let (out, _) = run(&p, &[ErrorClass::RateLimit, ErrorClass::RateLimit]);
    assert_eq!(out, Ok(3));
    assert_eq!(rate_calls.load(Ordering::SeqCst), 2);
    assert_eq!(default_calls.load(Ordering::SeqCst), 0);

    let (out, _) = run(
        &p,
        &[
            ErrorClass::ServerError,
            ErrorClass::RateLimit,
            ErrorClass::Transient,
        ],
    );
    assert_eq!(out, Ok(4));
    assert_eq!(default_calls.load(Ordering::SeqCst), 2);
    assert_eq!(rate_calls.load(Ordering::SeqCst), 3);
    assert_eq!(clock.sleeps()[2..], [ms(10), ms(700), ms(10)]);
}

#[test]
fn strategies_see_attempt_class_and_their_own_previous_delay() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let (p, _, _) = policy(|b| {
        b.strategy(move |ctx: &BackoffContext, _: f64| {
            log.lock()
                .unwrap()
                .push((ctx.attempt, ctx.class, ctx.prev_delay));
            ms(100) * ctx.attempt
        })
    });
    let classes = [
        ErrorClass::RateLimit,
        ErrorClass::ServerError,
        ErrorClass::RateLimit,
        ErrorClass::Transient,
    ];
    assert_eq!(run(&p, &classes).0, Ok(5));
    // Unlike the Python original, the previous delay is per class: a rate-limit delay does not
    // feed the next server-error computation.
    assert_eq!(
        *seen.lock().unwrap(),
        [
            (1, ErrorClass::RateLimit, None),
            (2, ErrorClass::ServerError, None),
            (3, ErrorClass::RateLimit, Some(ms(100))),
            (4, ErrorClass::Transient, None),
        ]
    );
}

#[test]
fn deadline_stops_instead_of_sleeping_into_it() {
    // Strategy 1 s, deadline 2 s: attempt 1 fails at 0 s, sleeps to 1 s; attempt 2 fails at
    // 1 s and the next would start at the deadline itself: stop now, no useless sleep.
    let (p, clock, rec) = policy(|b| {
        b.strategy(constant(secs(1)))
            .deadline(secs(2))
            .max_attempts(10)
    });
    let (out, calls) = run(&p, &[ErrorClass::Transient; 10]);
    assert_eq!(out.unwrap_err().call, 2);
    assert_eq!(calls, 2);
    assert_eq!(clock.sleeps(), [secs(1)]);
    assert_eq!(rec.trace(), [(EventKind::Retry, 1), (EventKind::GaveUp, 2)]);
    assert_eq!(rec.last().stop, Some(StopReason::DeadlineExceeded));
    assert_eq!(rec.last().elapsed, secs(1));
}

#[test]
fn deadline_counts_time_spent_inside_attempts() {
    // Each attempt works 200 ms; strategy 10 s; deadline 1 s: the first retry would wait past
    // the deadline, so the policy stops after one call without sleeping (the Python original
    // sleeps 0.8 s, then gives up).
    let (p, clock, rec) = policy(|b| b.strategy(constant(secs(10))).deadline(secs(1)));
    let mut calls = 0;
    let out: Result<(), Scripted> = p.call(|| {
        calls += 1;
        clock.advance(ms(200));
        Err(Scripted::new(ErrorClass::Transient, calls))
    });
    assert!(out.is_err());
    assert_eq!(calls, 1);
    assert!(clock.sleeps().is_empty());
    assert_eq!(rec.last().stop, Some(StopReason::DeadlineExceeded));

    // An attempt that itself runs past the deadline is not retried.
    let (p, clock, rec) = policy(|b| b.deadline(secs(1)));
    let out: Result<(), Scripted> = p.call(|| {
        clock.advance(secs(5));
        Err(Scripted::new(ErrorClass::Transient, 1))
    });
    assert!(out.is_err());
    assert_eq!(rec.trace(), [(EventKind::GaveUp, 1)]);
    assert_eq!(rec.last().elapsed, secs(5));
}

#[test]
fn retry_after_is_a_floor_and_never_bypasses_limits() {
    let (p, clock, rec) = policy(|b| b.deadline(secs(60)));
    let mut calls = 0;
    let out = p.call(|| {
        calls += 1;
        match calls {
            1 => Err(Scripted {
                retry_after: Some(secs(3)),
                ..Scripted::new(ErrorClass::RateLimit, 1)
            }),
            2 => Err(Scripted {
                retry_after: Some(ms(1)),
                ..Scripted::new(ErrorClass::RateLimit, 2)
            }),
            _ => Ok(calls),
        }
    });
    assert_eq!(out, Ok(3));
    // 3 s from the server beats the 100 ms strategy; 1 ms does not.
    assert_eq!(clock.sleeps(), [secs(3), ms(100)]);
    assert_eq!(rec.events()[0].delay, Some(secs(3)));

    // A retry-after that would cross the deadline stops at once (backoff and backon sleep it).
    let (p, clock, rec) = policy(|b| b.deadline(secs(10)));
    let out: Result<(), Scripted> = p.call(|| {
        Err(Scripted {
            retry_after: Some(secs(30)),
            ..Scripted::new(ErrorClass::RateLimit, 1)
        })
    });
    assert!(out.is_err());
    assert!(clock.sleeps().is_empty());
    assert_eq!(rec.last().stop, Some(StopReason::DeadlineExceeded));

    // And the attempt cap still applies to a server that always says "retry after 1 s".
    let (p, _, rec) = policy(|b| b.max_attempts(4));
    let mut calls = 0;
    let _: Result<(), Scripted> = p.call(|| {
        calls += 1;
        Err(Scripted {
            retry_after: Some(secs(1)),
            ..Scripted::new(ErrorClass::RateLimit, calls)
        })
    });
    assert_eq!(calls, 4);
    assert_eq!(rec.last().stop, Some(StopReason::MaxAttempts));
}

#[test]
fn operation_names_and_errors_reach_events() {
    let (p, _, rec) = policy(|b| b.operation("charge_card"));
    let _ = run(&p, &[ErrorClass::ServerError]);
    for e in rec.events() {
        assert_eq!(e.operation.as_deref(), Some("charge_card"));
    }
    let events = rec.events();
    assert_eq!(
        events[0].error.as_deref(),
        Some("Scripted { class: ServerError, call: 1, retry_after: None }")
    );
    assert_eq!(events[1].error, None);
}

#[test]
fn seeded_runs_repeat_exactly() {
    let sleeps = |seed: u64| {
        let (p, clock, _) = policy(|b| {
            b.strategy(decorrelated_jitter())
                .seed(seed)
                .max_attempts(8)
                .max_unknown_retries(None)
        });
        let _ = run(&p, &[ErrorClass::Transient; 8]);
        let _ = run(&p, &[ErrorClass::Unknown; 8]);
        clock.sleeps()
    };
    let a = sleeps(42);
    assert_eq!(a.len(), 14);
    assert_eq!(a, sleeps(42));
    assert_ne!(a, sleeps(43));
    // Each call of one policy gets its own sequence.
    assert_ne!(a[..7], a[7..]);
    // And every delay stays in decorrelated jitter's envelope.
    assert!(a.iter().all(|d| *d >= ms(250) && *d <= secs(30)));
}

#[test]
fn a_class_without_jitter_leaves_the_jitter_of_the_others_alone() {
    use ErrorClass::{RateLimit, Transient};
    // `RateLimit` has a constant delay: its failures draw no random number, so interleaving
    // them leaves the jitter of the `Transient` failures exactly as it was (decorrelated jitter
    // depends on its class's previous delay, not on the attempt number).
    let transient_sleeps = |classes: &[ErrorClass], hook: bool| {
        let clock = VirtualClock::new();
        let builder = RetryPolicy::builder()
            .strategy(decorrelated_jitter())
            .strategy_for(RateLimit, constant(ms(7)))
            .seed(9)
            .max_attempts(10)
            .clock(clock.clone());
        // Lean (no hook) and full (a hook).
        let builder = if hook {
            builder.on_event(|_| {})
        } else {
            builder
        };
        let _ = run(&builder.build().unwrap(), classes);
        let mut sleeps = clock.sleeps();
        sleeps.retain(|d| *d != ms(7));
        sleeps
    };
    for hook in [false, true] {
        let alone = transient_sleeps(&[Transient; 4], hook);
        assert_eq!(alone.len(), 4);
        let interleaved = transient_sleeps(
            &[
                RateLimit, Transient, RateLimit, Transient, Transient, RateLimit, Transient,
            ],
            hook,
        );
        assert_eq!(interleaved, alone);
    }
}

/// A strategy that records the `u` it is given and says whether it reads it.
struct RecordsU(bool, Arc<std::sync::Mutex<Vec<f64>>>);

impl reflexio::strategies::Strategy for RecordsU {
    fn delay(&self, _: &BackoffContext, u: f64) -> Duration {
        self.1.lock().unwrap().push(u);
        Duration::ZERO
    }
    fn uses_random(&self) -> bool {
        self.0
    }
}

#[test]
fn a_strategy_that_reads_no_random_number_gets_zero() {
    // Lean (no hook) and full (a hook): both loops draw alike.
    for (random, hook) in [(false, false), (false, true), (true, false), (true, true)] {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let builder = RetryPolicy::builder()
            .strategy(RecordsU(random, seen.clone()))
            .max_attempts(4);
        let builder = if hook {
            builder.on_event(|_| {})
        } else {
            builder
        };
        let _ = run(&builder.build().unwrap(), &[ErrorClass::Transient; 3]);
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 3);
        if random {
            assert!(seen.iter().all(|u| (0.0..1.0).contains(u)));
            assert_ne!(seen[0].to_bits(), seen[1].to_bits());
        } else {
            assert_eq!(seen, [0.0; 3]);
        }
    }
}

#[test]
fn unseeded_jitter_differs_between_calls() {
    let (p, clock, _) = policy(|b| b.strategy(equal_jitter()).max_attempts(4));
    for _ in 0..3 {
        let _ = run(&p, &[ErrorClass::Transient; 4]);
    }
    let s = clock.sleeps();
    assert_eq!(s.len(), 9);
    assert!(s[0..3] != s[3..6] || s[3..6] != s[6..9]);
}

#[test]
fn a_panicking_hook_does_not_change_the_outcome() {
    let clock = VirtualClock::new();
    let p = RetryPolicy::builder()
        .strategy(no_delay())
        .clock(clock)
        .on_event(|_| panic!("hook bug"))
        .build()
        .unwrap();
    let (out, calls) = run(&p, &[ErrorClass::Transient, ErrorClass::Transient]);
    assert_eq!((out, calls), (Ok(3), 3));
    let (out, calls) = run(&p, &[ErrorClass::Permanent]);
    assert_eq!((out.unwrap_err().call, calls), (1, 1));
}

#[test]
fn build_reports_every_problem_at_once() {
    let err = RetryPolicy::<Scripted>::builder()
        .max_attempts(0)
        .deadline(Duration::ZERO)
        .strategy(exponential().factor(f64::NAN))
        .strategy_for(ErrorClass::RateLimit, exponential().factor(0.5))
        .build()
        .unwrap_err();
    let settings: Vec<_> = err.problems().iter().map(ConfigProblem::setting).collect();
    assert_eq!(
        settings,
        ["max_attempts", "deadline", "strategy", "strategy_for"]
    );
    let text = err.to_string();
    assert!(text.contains("`max_attempts` must be at least 1"), "{text}");
    assert!(
        text.contains("`strategy_for(rate_limit)` is invalid"),
        "{text}"
    );

    // Merely ineffective settings are fine.
    assert!(
        RetryPolicy::<Scripted>::builder()
            .max_attempts(2)
            .max_retries_for(ErrorClass::Permanent, 9)
            .max_unknown_retries(Some(100))
            .build()
            .is_ok()
    );
}

#[test]
fn the_default_classifier_reads_io_errors_and_marker_errors() {
    let clock = VirtualClock::new();
    let p = RetryPolicy::builder().clock(clock.clone()).build().unwrap();
    let mut calls = 0;
    let out: std::io::Result<()> = p.call(|| {
        calls += 1;
        Err(std::io::ErrorKind::NotFound.into())
    });
    assert_eq!(out.unwrap_err().kind(), std::io::ErrorKind::NotFound);
    assert_eq!(calls, 1);

    let p = RetryPolicy::builder()
        .clock(clock.clone())
        .max_attempts(3)
        .build()
        .unwrap();
    let mut calls = 0;
    let out: Result<(), RateLimitError> = p.call(|| {
        calls += 1;
        Err(RateLimitError::new("429"))
    });
    assert_eq!(out.unwrap_err().message(), "429");
    assert_eq!(calls, 3);
    // Default strategy: decorrelated jitter with a 5 s max, never below 250 ms.
    assert!(
        clock
            .sleeps()
            .iter()
            .all(|d| *d >= ms(250) && *d <= secs(5))
    );

    let p = RetryPolicy::builder().clock(clock).build().unwrap();
    let out: Result<(), PermanentError> = p.call(|| Err(PermanentError::new("no")));
    assert!(out.is_err());
}

#[test]
fn without_a_hook_or_deadline_the_policy_still_retries() {
    let clock = VirtualClock::new();
    let p = RetryPolicy::builder()
        .strategy(constant(ms(5)))
        .no_deadline()
        .clock(clock.clone())
        .build()
        .unwrap();
    assert_eq!(run(&p, &[ErrorClass::Transient; 3]), (Ok(4), 4));
    assert_eq!(clock.sleeps(), [ms(5); 3]);
}

#[test]
fn policies_live_in_statics_and_cross_threads() {
    static POLICY: LazyLock<RetryPolicy<Scripted>> =
        LazyLock::new(|| RetryPolicy::builder().strategy(no_delay()).build().unwrap());
    fn assert_send_sync<T: Send + Sync + Clone>(_: &T) {}
    assert_send_sync(&*POLICY);
    let handles: Vec<_> = (0..4)
        .map(|_| std::thread::spawn(|| run(&POLICY, &[ErrorClass::Transient; 2])))
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), (Ok(3), 3));
    }
}

#[test]
fn huge_attempt_counts_and_delays_saturate() {
    let (p, clock, rec) = policy(|b| {
        b.strategy(exponential().base(Duration::MAX).max(Duration::MAX))
            .max_attempts(u32::MAX)
            .no_deadline()
    });
    let (out, calls) = run(&p, &[ErrorClass::Transient; 3]);
    assert_eq!((out, calls), (Ok(4), 4));
    assert_eq!(clock.sleeps(), [Duration::MAX; 3]);
    assert_eq!(clock.now(), Duration::MAX);
    assert_eq!(rec.events()[2].delay, Some(Duration::MAX));
}

/// On the default (coarse, on Linux) clock, the deadline's promise holds against the fine
/// clock: no attempt starts at or after it.
#[test]
fn no_attempt_starts_at_or_after_the_deadline_on_the_real_clock() {
    let deadline = Duration::from_millis(60);
    let policy = RetryPolicy::builder()
        .classifier(|_: &u32| ErrorClass::Transient)
        .strategy(reflexio::strategies::constant(Duration::from_millis(7)))
        .max_attempts(100)
        .deadline(deadline)
        .build()
        .unwrap();
    let start = std::time::Instant::now();
    let mut starts = Vec::new();
    let out = policy.call(|| {
        starts.push(start.elapsed());
        Err::<(), _>(1_u32)
    });
    assert_eq!(out, Err(1));
    assert!(starts.len() >= 4, "{starts:?}");
    assert!(starts.iter().all(|s| *s < deadline), "{starts:?}");
}

/// Attempts that each take 50 s of virtual time and fail, under a constant 20 s delay: how many
/// were made, why the policy stopped, and the virtual time it took, through `call` (lean: no
/// clock read before a failure), `execute` (which reads the clock at the start) and a policy
/// with a hook (the full per-call state).
fn slow_failures(
    configure: impl Fn(reflexio::RetryPolicyBuilder<Scripted>) -> reflexio::RetryPolicyBuilder<Scripted>,
) -> [(u32, Option<StopReason>, Duration); 3] {
    let run = |with_hook: bool, execute: bool| {
        let clock = VirtualClock::new();
        let builder = RetryPolicy::builder()
            .strategy(constant(secs(20)))
            .max_attempts(10)
            .clock(clock.clone());
        let builder = if with_hook {
            builder.on_event(|_| {})
        } else {
            builder
        };
        let policy = configure(builder).build().unwrap();
        let mut calls = 0;
        let op = || {
            calls += 1;
            clock.advance(secs(50));
            Err::<(), _>(Scripted::new(ErrorClass::Transient, calls))
        };
        let stop = if execute {
            let err = policy.execute(op).unwrap_err();
            // `execute`'s error reports the time since the start of the call, whatever the
            // deadline counts from.
            assert_eq!(err.elapsed(), clock.now(), "{err}");
            Some(err.stop_reason())
        } else {
            policy.call(op).unwrap_err();
            None
        };
        (calls, stop, clock.now())
    };
    [run(false, false), run(false, true), run(true, false)]
}

#[test]
fn the_default_deadline_counts_from_the_first_failure() {
    // The first failure ends at 50 s: retries may start until 110 s. The retry at 70 s fails at
    // 120 s, and the call stops there.
    let expected = (2, secs(120));
    for (calls, stop, took) in slow_failures(|b| b) {
        assert_eq!((calls, took), expected);
        assert!(stop.is_none_or(|s| s == StopReason::DeadlineExceeded));
    }
}

#[test]
fn an_explicit_deadline_counts_from_the_start() {
    // 60 s from the start: the first failure ends at 50 s and a retry at 70 s would start after
    // the deadline, so the call stops at once.
    for (calls, stop, took) in slow_failures(|b| b.deadline(secs(60))) {
        assert_eq!((calls, took), (1, secs(50)));
        assert!(stop.is_none_or(|s| s == StopReason::DeadlineExceeded));
    }
    // 200 s from the start: failures at 50, 120 and 190 s; a retry at 210 s would be too late.
    for (calls, _, took) in slow_failures(|b| b.deadline(secs(200))) {
        assert_eq!((calls, took), (3, secs(190)));
    }
    // No deadline: only the attempts bound the call.
    for (calls, stop, _) in slow_failures(reflexio::PolicyBuilder::no_deadline) {
        assert_eq!(calls, 10);
        assert!(stop.is_none_or(|s| s == StopReason::MaxAttempts));
    }
}

/// A virtual clock far along (500 years: its stamps are nanoseconds, exact for 584) still
/// counts the deadline, from the start and from the first failure, lean and full.
#[test]
fn the_deadline_holds_on_a_virtual_clock_centuries_along() {
    const CENTURIES: Duration = Duration::from_secs(500 * 365 * 24 * 3600);
    for hook in [false, true] {
        for from_start in [false, true] {
            let clock = VirtualClock::new();
            clock.advance(CENTURIES);
            let rec = Recorder::default();
            let builder = RetryPolicy::builder()
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
            let (out, calls) = run(&policy, &[ErrorClass::Transient; 10]);
            assert!(out.is_err(), "hook {hook}, from the start {from_start}");
            assert_eq!(calls, 4, "hook {hook}, from the start {from_start}");
            assert_eq!(clock.now(), CENTURIES + ms(900));
        }
    }
}
