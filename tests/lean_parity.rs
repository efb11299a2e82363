//! A policy with no breaker, budget or hook is *lean*: its calls retry through a loop around the
//! lean step (`Lean::decide`: the engine alone, sync and async), reading the clock only for a
//! deadline; any of those sends it through the full per-call state instead.
//! Both must decide exactly alike: for random scripts of outcomes and random settings (async
//! attempt timeouts included), the same result (the same error value), the same number of
//! calls, of runs of the `Ok` rule, and the same sleeps.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use futures::FutureExt;
use futures::executor::LocalPool;
use futures::future::{BoxFuture, ready};
use futures::task::LocalSpawnExt;
use proptest::prelude::*;
use reflexio::strategies::{constant, decorrelated_jitter, full_jitter, no_delay};
use reflexio::testing::VirtualClock;
use reflexio::{
    AsyncRetryPolicy, AttemptTimedOut, Classification, ErrorClass, RetryPolicy, RetryPolicyBuilder,
};

/// One scripted outcome: an error of a class (with a server delay in ms, maybe), a value (odd
/// values are rejected by the `Ok` rule of the policies that have one), or a value that takes
/// [`SLOW`] to come (async attempt timeouts are shorter).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Step {
    Fail(ErrorClass, Option<u64>),
    Value(u32),
    Slow(u32),
}

/// The error: the class, the server delay and the number of the call that returned it.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Failed(ErrorClass, Option<u64>, u32);

/// An attempt timeout's error classifies as `Permanent`: the policy must count it as the
/// `Transient` failure a timeout is, whatever the classifier says.
impl From<AttemptTimedOut> for Failed {
    fn from(_: AttemptTimedOut) -> Self {
        Failed(ErrorClass::Permanent, None, 0)
    }
}

fn classify(e: &Failed) -> Classification {
    let c = Classification::new(e.0);
    match e.1 {
        Some(ms) => c.with_retry_after(Duration::from_millis(ms)),
        None => c,
    }
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (
            prop::sample::select(ErrorClass::ALL.to_vec()),
            prop::option::weighted(0.2, 0u64..5_000)
        )
            .prop_map(|(c, ra)| Step::Fail(c, ra)),
        1 => (0u32..6).prop_map(Step::Value),
        1 => (0u32..6).prop_map(Step::Slow),
    ]
}

prop_compose! {
    /// The settings both policies share.
    fn settings()(
        max_attempts in 1u32..8,
        strategy in 0u8..4,
        class_strategy in prop::option::of((prop::sample::select(ErrorClass::ALL.to_vec()), 0u8..4)),
        class_cap in prop::option::of((prop::sample::select(ErrorClass::ALL.to_vec()), 0u32..3)),
        unknown_cap in prop::option::of(0u32..3),
        seed in any::<u64>(),
        ok_rule in any::<bool>(),
        abort_after in prop::option::weighted(0.2, 1u32..5),
        deadline in prop::option::of((1u64..600, any::<bool>())),
        attempt_timeout in prop::option::weighted(0.5, 1u64..100),
    ) -> Settings {
        Settings {
            max_attempts,
            strategy,
            class_strategy,
            class_cap,
            unknown_cap,
            seed,
            ok_rule,
            abort_after,
            deadline,
            attempt_timeout,
        }
    }
}

/// The settings both policies share.
#[derive(Clone, Debug)]
struct Settings {
    max_attempts: u32,
    /// The default strategy: 0 constant, 1 full jitter, 2 decorrelated jitter, 3 no delay.
    strategy: u8,
    /// One class's own strategy, numbered alike.
    class_strategy: Option<(ErrorClass, u8)>,
    class_cap: Option<(ErrorClass, u32)>,
    unknown_cap: Option<u32>,
    seed: u64,
    ok_rule: bool,
    abort_after: Option<u32>,
    /// A deadline in ms (lean policies keep it), counted from the first failure when the flag
    /// is set, each attempt taking 40 ms of virtual time.
    deadline: Option<(u64, bool)>,
    /// An attempt timeout in ms (async policies only).
    attempt_timeout: Option<u64>,
}

/// Applies `s` to a builder (sync or async: the same builder type with another marker).
fn configure<K>(
    b: reflexio::PolicyBuilder<Failed, fn(&Failed) -> Classification, K>,
    s: &Settings,
    clock: &VirtualClock,
    calls: &Arc<AtomicU32>,
) -> reflexio::PolicyBuilder<Failed, fn(&Failed) -> Classification, K> {
    let b = b
        .max_attempts(s.max_attempts)
        .max_unknown_retries(s.unknown_cap)
        .seed(s.seed)
        .clock(clock.clone());
    let b = match s.deadline {
        Some((ms, false)) => b.deadline(Duration::from_millis(ms)),
        Some((ms, true)) => b.deadline_after_first_failure(Duration::from_millis(ms)),
        None => b.no_deadline(),
    };
    let b = match s.strategy {
        0 => b.strategy(constant(Duration::from_millis(100))),
        1 => b.strategy(full_jitter().base(Duration::from_millis(10))),
        2 => b.strategy(decorrelated_jitter().base(Duration::from_millis(10))),
        _ => b.strategy(no_delay()),
    };
    // A class of its own strategy: jittered or not next to a default that is, so the draws of
    // random numbers (made only for jittered strategies) interleave differently.
    let b = match s.class_strategy {
        Some((class, 0)) => b.strategy_for(class, constant(Duration::from_millis(30))),
        Some((class, 1)) => b.strategy_for(class, full_jitter().base(Duration::from_millis(20))),
        Some((class, 2)) => {
            b.strategy_for(class, decorrelated_jitter().base(Duration::from_millis(20)))
        }
        Some((class, _)) => b.strategy_for(class, no_delay()),
        None => b,
    };
    let b = match s.class_cap {
        Some((class, cap)) => b.max_retries_for(class, cap),
        None => b,
    };
    match s.abort_after {
        // Aborts once this many calls were made.
        Some(n) => {
            let calls = calls.clone();
            b.abort_if(move || calls.load(Ordering::Relaxed) >= n)
        }
        None => b,
    }
}

/// The virtual time each attempt takes.
const WORK: Duration = Duration::from_millis(40);

/// The time a [`Step::Slow`] value takes to come, on top of [`WORK`].
const SLOW: Duration = Duration::from_millis(100);

/// What a run gives: the result, the calls made, the runs of the `Ok` rule, the virtual sleeps.
type Run = (Result<u32, Failed>, u32, u32, Vec<Duration>);

fn outcome(script: &[Step], call: u32) -> Result<u32, Failed> {
    match script.get(call as usize - 1) {
        Some(Step::Fail(class, ra)) => Err(Failed(*class, *ra, call)),
        Some(Step::Value(v) | Step::Slow(v)) => Ok(*v),
        None => Ok(100 + call),
    }
}

fn is_slow(script: &[Step], call: u32) -> bool {
    matches!(script.get(call as usize - 1), Some(Step::Slow(_)))
}

/// The `Ok` rule: odd values are `Transient` failures. Counts its runs in `runs`.
fn odd_is_transient(runs: &Arc<AtomicU32>) -> impl Fn(&u32) -> Option<ErrorClass> + use<> {
    let runs = runs.clone();
    move |v| {
        runs.fetch_add(1, Ordering::Relaxed);
        (v % 2 == 1).then_some(ErrorClass::Transient)
    }
}

fn run_sync(script: &[Step], s: &Settings, lean: bool) -> Run {
    let clock = VirtualClock::new();
    let calls = Arc::new(AtomicU32::new(0));
    let rule_runs = Arc::new(AtomicU32::new(0));
    let builder: RetryPolicyBuilder<Failed> = RetryPolicy::builder();
    let b = configure(
        builder.classifier(classify as fn(&Failed) -> Classification),
        s,
        &clock,
        &calls,
    );
    // A hook makes the policy take the full path; it observes nothing the result depends on.
    let b = if lean { b } else { b.on_event(|_| {}) };
    let op = || {
        let n = calls.fetch_add(1, Ordering::Relaxed) + 1;
        clock.advance(if is_slow(script, n) {
            WORK + SLOW
        } else {
            WORK
        });
        outcome(script, n)
    };
    let out = if s.ok_rule {
        let rule = odd_is_transient(&rule_runs);
        b.retry_if_ok(rule).build().unwrap().call(op)
    } else {
        b.build().unwrap().call(op)
    };
    let (calls, rule_runs) = (
        calls.load(Ordering::Relaxed),
        rule_runs.load(Ordering::Relaxed),
    );
    (out, calls, rule_runs, clock.sleeps())
}

/// An async run of `call`, on a `LocalPool` in the clock's virtual time: a slow value's attempt
/// ends on a timer, which the clock reaches unless the attempt timeout fires first.
fn run_async(script: &[Step], s: &Settings, lean: bool) -> Run {
    let (out, calls, rule_runs, sleeps) = run_async_with(script, s, lean, Driver::Call);
    let out = *out
        .downcast::<Result<u32, Failed>>()
        .expect("`call`'s result");
    (out, calls, rule_runs, sleeps)
}

/// Which of the async policy's drivers a run uses.
#[derive(Clone, Copy)]
enum Driver {
    Call,
    /// `execute`, whose error says why and when the policy stopped.
    Execute,
}

/// [`run_async`] with either driver; the result boxed (`call`'s, or `execute`'s as its
/// `Debug` text: the error's stop reason, attempts, elapsed time and last class).
fn run_async_with(
    script: &[Step],
    s: &Settings,
    lean: bool,
    driver: Driver,
) -> (Box<dyn std::any::Any + Send>, u32, u32, Vec<Duration>) {
    let clock = VirtualClock::new();
    let calls = Arc::new(AtomicU32::new(0));
    let rule_runs = Arc::new(AtomicU32::new(0));
    let b = configure(
        AsyncRetryPolicy::builder().classifier(classify as fn(&Failed) -> Classification),
        s,
        &clock,
        &calls,
    );
    let b = if lean { b } else { b.on_event(|_| {}) };
    let b = match s.attempt_timeout {
        Some(ms) => b.attempt_timeout(Duration::from_millis(ms)),
        None => b,
    };
    let script: Arc<[Step]> = script.into();
    let op = {
        let (calls, clock) = (calls.clone(), clock.clone());
        move || -> BoxFuture<'static, Result<u32, Failed>> {
            let n = calls.fetch_add(1, Ordering::Relaxed) + 1;
            clock.advance(WORK);
            let out = outcome(&script, n);
            if is_slow(&script, n) {
                clock.timer(SLOW).map(move |()| out).boxed()
            } else {
                ready(out).boxed()
            }
        }
    };
    let result = Arc::new(std::sync::Mutex::new(None));
    let mut pool = LocalPool::new();
    let done = result.clone();
    let call = match (s.ok_rule, driver) {
        (true, Driver::Call) => {
            let policy = b.retry_if_ok(odd_is_transient(&rule_runs)).build().unwrap();
            async move { *done.lock().unwrap() = Some(boxed(policy.call(op).await)) }.boxed_local()
        }
        (true, Driver::Execute) => {
            let policy = b.retry_if_ok(odd_is_transient(&rule_runs)).build().unwrap();
            async move { *done.lock().unwrap() = Some(text(policy.execute(op).await)) }
                .boxed_local()
        }
        (false, Driver::Call) => {
            let policy = b.build().unwrap();
            async move { *done.lock().unwrap() = Some(boxed(policy.call(op).await)) }.boxed_local()
        }
        (false, Driver::Execute) => {
            let policy = b.build().unwrap();
            async move { *done.lock().unwrap() = Some(text(policy.execute(op).await)) }
                .boxed_local()
        }
    };
    pool.spawner().spawn_local(call).unwrap();
    clock.run(|| pool.run_until_stalled());
    let out = result.lock().unwrap().take().expect("the call ended");
    let (calls, rule_runs) = (
        calls.load(Ordering::Relaxed),
        rule_runs.load(Ordering::Relaxed),
    );
    (out, calls, rule_runs, clock.sleeps())
}

fn boxed<T: Send + 'static>(out: T) -> Box<dyn std::any::Any + Send> {
    Box::new(out)
}

fn text<T: std::fmt::Debug>(out: T) -> Box<dyn std::any::Any + Send> {
    Box::new(format!("{out:?}"))
}

/// An async run of `execute`: its result as text.
fn run_async_execute(
    script: &[Step],
    s: &Settings,
    lean: bool,
) -> (String, u32, u32, Vec<Duration>) {
    let (out, calls, rule_runs, sleeps) = run_async_with(script, s, lean, Driver::Execute);
    let out = *out
        .downcast::<String>()
        .expect("`execute`'s result as text");
    (out, calls, rule_runs, sleeps)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn lean_sync_policies_decide_as_the_full_path(
        script in prop::collection::vec(step(), 0..10), s in settings(),
    ) {
        prop_assert_eq!(run_sync(&script, &s, true), run_sync(&script, &s, false));
    }

    #[test]
    fn lean_async_policies_decide_as_the_full_path(
        script in prop::collection::vec(step(), 0..10), s in settings(),
    ) {
        prop_assert_eq!(run_async(&script, &s, true), run_async(&script, &s, false));
    }

    /// `execute`'s error too (why and when the policy stopped, after how many attempts), which
    /// a lean call's future works out on its own paths (its first poll reads the clock first).
    #[test]
    fn lean_async_execute_says_what_the_full_path_says(
        script in prop::collection::vec(step(), 0..10), s in settings(),
    ) {
        prop_assert_eq!(
            run_async_execute(&script, &s, true),
            run_async_execute(&script, &s, false)
        );
    }
}

/// The lean loop still stops at once on a non-retried class, keeping the error's identity.
#[test]
fn lean_policy_gives_back_the_permanent_error_untouched() {
    let policy = RetryPolicy::builder()
        .classifier(classify as fn(&Failed) -> Classification)
        .no_deadline()
        .build()
        .unwrap();
    let script = [
        Step::Fail(ErrorClass::Transient, Some(0)),
        Step::Fail(ErrorClass::Permanent, None),
    ];
    let mut n = 0;
    let out = policy.call(|| {
        n += 1;
        outcome(&script, n)
    });
    assert_eq!(out, Err(Failed(ErrorClass::Permanent, None, 2)));
    assert_eq!(n, 2);
}
