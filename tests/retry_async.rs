//! `#[retry]` on async functions: on tokio (with paused time) and on a plain `futures`
//! executor, `Send` futures, methods, `return`/`?`, async-trait, `policy =`.

mod support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use reflexio::strategies::{constant, no_delay};
use reflexio::testing::VirtualClock;
use reflexio::{AsyncRetryPolicy, ErrorClass, EventKind, StopReason, retry};
use support::{Recorder, Scripted, Seen, ms};

fn assert_send<T: Send>(t: T) -> T {
    t
}

fn script(calls: &AtomicU32, classes: &[ErrorClass]) -> Result<u32, Scripted> {
    let n = calls.fetch_add(1, Ordering::SeqCst);
    match classes.get(n as usize) {
        Some(&class) => Err(Scripted::new(class, n + 1)),
        None => Ok(n + 1),
    }
}

/// Kind, attempt, class, delay, stop reason and operation of each event.
type Outline<'a> = (
    EventKind,
    u32,
    Option<ErrorClass>,
    Option<Duration>,
    Option<StopReason>,
    Option<&'a str>,
);

fn outline(events: &[Seen]) -> Vec<Outline<'_>> {
    events
        .iter()
        .map(|e| {
            (
                e.kind,
                e.attempt,
                e.class,
                e.delay,
                e.stop,
                e.operation.as_deref(),
            )
        })
        .collect()
}

static CALLS: AtomicU32 = AtomicU32::new(0);
static EVENTS: LazyLock<Recorder> = LazyLock::new(Recorder::default);

#[retry(strategy = constant(Duration::from_secs(2)), max_attempts = 4, on_event = EVENTS.hook())]
async fn fetch(id: &str) -> Result<String, Scripted> {
    tokio::task::yield_now().await;
    script(&CALLS, &[ErrorClass::Transient, ErrorClass::ServerError])?;
    Ok(format!("user {id}"))
}

#[tokio::test(start_paused = true)]
async fn on_tokio_with_paused_time() {
    let start = tokio::time::Instant::now();
    assert_eq!(fetch("7").await, Ok("user 7".to_owned()));
    assert_eq!(CALLS.load(Ordering::SeqCst), 3);
    // Two sleeps of 2 s, on tokio's (paused, auto-advancing) clock.
    assert_eq!(start.elapsed(), Duration::from_secs(4));
    let events = EVENTS.take();
    assert_eq!(
        events
            .iter()
            .map(|e| (e.kind, e.attempt, e.delay, e.operation.as_deref()))
            .collect::<Vec<_>>(),
        [
            (
                EventKind::Retry,
                1,
                Some(Duration::from_secs(2)),
                Some("fetch")
            ),
            (
                EventKind::Retry,
                2,
                Some(Duration::from_secs(2)),
                Some("fetch")
            ),
            (EventKind::Success, 3, None, Some("fetch")),
        ]
    );
}

#[retry(strategy = no_delay(), max_attempts = 3)]
async fn shared_state(counter: &Mutex<u32>, label: &str) -> Result<String, Scripted> {
    let n = {
        let mut guard = counter.lock().unwrap();
        *guard += 1;
        *guard
    };
    tokio::task::yield_now().await;
    if n < 3 {
        return Err(Scripted::new(ErrorClass::Transient, n));
    }
    Ok(format!("{label}{n}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn futures_are_send_and_spawnable() {
    static COUNTER: Mutex<u32> = Mutex::new(0);
    // Captures `&str` and `&Mutex`: the case where an `AsyncFnMut`-based expansion is not `Send`.
    let fut = assert_send(shared_state(&COUNTER, "n="));
    let handle = tokio::spawn(fut);
    assert_eq!(handle.await.unwrap(), Ok("n=3".to_owned()));
}

#[test]
fn on_a_plain_futures_executor() {
    static CLOCK: LazyLock<VirtualClock> = LazyLock::new(VirtualClock::new);
    static CALLS: AtomicU32 = AtomicU32::new(0);
    #[retry(strategy = constant(ms(100)), clock = CLOCK.clone())]
    async fn no_runtime() -> Result<u32, Scripted> {
        script(&CALLS, &[ErrorClass::RateLimit, ErrorClass::Concurrency])
    }
    assert_eq!(futures::executor::block_on(no_runtime()), Ok(3));
    assert_eq!(CLOCK.sleeps(), [ms(100), ms(100)]);
}

static ASYNC_POLICY: LazyLock<AsyncRetryPolicy<Scripted>> = LazyLock::new(|| {
    AsyncRetryPolicy::builder()
        .strategy(no_delay())
        .max_attempts(2)
        .build()
        .unwrap()
});

#[test]
fn async_policy_key() {
    static CALLS: AtomicU32 = AtomicU32::new(0);
    #[retry(policy = ASYNC_POLICY)]
    async fn with_policy() -> Result<u32, Scripted> {
        script(&CALLS, &[ErrorClass::Transient; 10])
    }
    assert!(futures::executor::block_on(with_policy()).is_err());
    assert_eq!(CALLS.load(Ordering::SeqCst), 2);
}

struct Repo {
    hits: u32,
    fail_first: u32,
}

impl Repo {
    #[retry(strategy = no_delay())]
    async fn hit(&mut self, by: u32) -> Result<u32, Scripted> {
        self.hits += by;
        if self.hits <= self.fail_first {
            return Err(Scripted::new(ErrorClass::Concurrency, self.hits));
        }
        Ok(self.hits)
    }

    #[retry(strategy = no_delay())]
    async fn peek(&self) -> Result<u32, Scripted> {
        Ok(self.hits)
    }
}

#[test]
fn async_methods() {
    let mut repo = Repo {
        hits: 0,
        fail_first: 2,
    };
    assert_eq!(futures::executor::block_on(repo.hit(1)), Ok(3));
    assert_eq!(futures::executor::block_on(assert_send(repo.peek())), Ok(3));
}

#[retry(strategy = no_delay())]
async fn generic_async<T: Clone + Send + Sync>(value: &T) -> Result<T, Scripted> {
    Ok(value.clone())
}

#[retry(strategy = no_delay())]
async fn returns_impl(x: impl AsRef<str> + Send) -> Result<impl std::fmt::Display, Scripted> {
    Ok(x.as_ref().len())
}

#[test]
fn async_generics_and_impl_trait() {
    assert_eq!(
        futures::executor::block_on(generic_async(&vec![1])),
        Ok(vec![1])
    );
    let shown = futures::executor::block_on(assert_send(returns_impl("abc")));
    assert_eq!(shown.unwrap().to_string(), "3");
}

#[async_trait::async_trait]
trait Store {
    async fn load(&self, key: &str, owned: String) -> Result<String, Scripted>;
}

struct Flaky {
    calls: AtomicU32,
}

#[async_trait::async_trait]
impl Store for Flaky {
    // `#[async_trait]` expands first; `#[retry]` then retries the original body inside its
    // boxed future. `owned` is taken by value and only read: it is moved into the future once.
    #[retry(strategy = no_delay())]
    async fn load(&self, key: &str, owned: String) -> Result<String, Scripted> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if n < 3 {
            return Err(Scripted::new(ErrorClass::Transient, n));
        }
        Ok(format!("{key}={owned}#{n}"))
    }
}

#[tokio::test]
async fn async_trait_methods() {
    let store = Flaky {
        calls: AtomicU32::new(0),
    };
    let dyn_store: &(dyn Store + Sync) = &store;
    let fut = assert_send(dyn_store.load("k", "v".to_owned()));
    assert_eq!(fut.await, Ok("k=v#3".to_owned()));
    assert_eq!(store.calls.load(Ordering::SeqCst), 3);
}

// Lean policies (no hook, budget or breaker; a deadline allowed): the first attempt runs before
// the per-call state is made, which is made only if it fails, and then holds the engine's counts
// alone. The tests below check that a hook still gets the full loop and its events, and that a
// lean call's failures are retried and given up exactly as the full loop does.

#[test]
fn a_hook_still_sees_a_first_attempt_success() {
    static EVENTS: LazyLock<Recorder> = LazyLock::new(Recorder::default);
    static CALLS: AtomicU32 = AtomicU32::new(0);
    // No deadline: only the hook makes this policy not lean.
    #[retry(strategy = no_delay(), deadline = None, on_event = EVENTS.hook())]
    async fn first_try() -> Result<u32, Scripted> {
        script(&CALLS, &[])
    }
    assert_eq!(futures::executor::block_on(first_try()), Ok(1));
    assert_eq!(futures::executor::block_on(first_try()), Ok(2));
    assert_eq!(
        outline(&EVENTS.take()),
        [
            (EventKind::Success, 1, None, None, None, Some("first_try")),
            (EventKind::Success, 1, None, None, None, Some("first_try")),
        ]
    );
}

#[test]
fn a_hook_without_deadline_sees_every_retry() {
    static EVENTS: LazyLock<Recorder> = LazyLock::new(Recorder::default);
    static CLOCK: LazyLock<VirtualClock> = LazyLock::new(VirtualClock::new);
    static CALLS: AtomicU32 = AtomicU32::new(0);
    #[retry(strategy = constant(ms(30)), deadline = None, clock = CLOCK.clone(), on_event = EVENTS.hook())]
    async fn hooked() -> Result<u32, Scripted> {
        script(&CALLS, &[ErrorClass::Transient])
    }
    assert_eq!(futures::executor::block_on(hooked()), Ok(2));
    assert_eq!(CLOCK.sleeps(), [ms(30)]);
    let op = Some("hooked");
    assert_eq!(
        outline(&EVENTS.take()),
        [
            (
                EventKind::Retry,
                1,
                Some(ErrorClass::Transient),
                Some(ms(30)),
                None,
                op
            ),
            (EventKind::Success, 2, None, None, None, op),
        ]
    );
}

#[test]
fn a_lean_policy_retries_a_first_failure() {
    static CLOCK: LazyLock<VirtualClock> = LazyLock::new(VirtualClock::new);
    static CALLS: AtomicU32 = AtomicU32::new(0);
    // No hook, budget or breaker: lean.
    #[retry(strategy = constant(ms(250)), deadline = None, clock = CLOCK.clone())]
    async fn lean() -> Result<u32, Scripted> {
        tokio::task::yield_now().await;
        script(&CALLS, &[ErrorClass::RateLimit])
    }
    assert_eq!(futures::executor::block_on(lean()), Ok(2));
    assert_eq!(CALLS.load(Ordering::SeqCst), 2);
    assert_eq!(CLOCK.sleeps(), [ms(250)]);
}

#[test]
fn a_lean_policy_stops_where_the_full_loop_does() {
    static CLOCK: LazyLock<VirtualClock> = LazyLock::new(VirtualClock::new);
    static CALLS: AtomicU32 = AtomicU32::new(0);
    #[retry(strategy = constant(ms(10)), max_attempts = 3, deadline = None, clock = CLOCK.clone())]
    async fn always_failing() -> Result<u32, Scripted> {
        script(&CALLS, &[ErrorClass::Transient; 10])
    }
    #[retry(strategy = constant(ms(10)), deadline = None, clock = CLOCK.clone())]
    async fn permanent() -> Result<u32, Scripted> {
        Err(Scripted::new(ErrorClass::Permanent, 1))
    }
    // Three attempts, two sleeps, then the last error.
    assert_eq!(
        futures::executor::block_on(always_failing()),
        Err(Scripted::new(ErrorClass::Transient, 3))
    );
    assert_eq!(CALLS.load(Ordering::SeqCst), 3);
    assert_eq!(CLOCK.sleeps(), [ms(10), ms(10)]);
    // A first failure that is never retried ends the call at once.
    assert_eq!(
        futures::executor::block_on(permanent()),
        Err(Scripted::new(ErrorClass::Permanent, 1))
    );
    assert_eq!(CLOCK.sleeps(), [ms(10), ms(10)]);
}

static OK_RULE_CLOCK: LazyLock<VirtualClock> = LazyLock::new(VirtualClock::new);

/// A lean policy (no deadline) whose `Ok` rule rejects odd values.
static OK_RULE_POLICY: LazyLock<AsyncRetryPolicy<Scripted, reflexio::OkRule<u32>>> =
    LazyLock::new(|| {
        AsyncRetryPolicy::builder()
            .strategy(constant(ms(40)))
            .no_deadline()
            .clock(OK_RULE_CLOCK.clone())
            .retry_if_ok(|n: &u32| (n % 2 == 1).then_some(ErrorClass::ServerError))
            .build()
            .unwrap()
    });

#[test]
fn a_rejected_first_ok_is_retried() {
    static CALLS: AtomicU32 = AtomicU32::new(0);
    #[retry(policy = OK_RULE_POLICY)]
    async fn odd_then_even() -> Result<u32, Scripted> {
        // 1 (rejected), then 2.
        script(&CALLS, &[])
    }
    assert_eq!(futures::executor::block_on(odd_then_even()), Ok(2));
    assert_eq!(CALLS.load(Ordering::SeqCst), 2);
    assert_eq!(OK_RULE_CLOCK.sleeps(), [ms(40)]);
}

#[test]
fn abort_if_stops_a_first_failure() {
    static CALLS: AtomicU32 = AtomicU32::new(0);
    static ABORTING: LazyLock<AsyncRetryPolicy<Scripted>> = LazyLock::new(|| {
        AsyncRetryPolicy::builder()
            .strategy(no_delay())
            .no_deadline()
            .abort_if(|| true)
            .build()
            .unwrap()
    });
    #[retry(policy = ABORTING)]
    async fn aborted() -> Result<u32, Scripted> {
        script(&CALLS, &[ErrorClass::Transient; 10])
    }
    assert_eq!(
        futures::executor::block_on(aborted()),
        Err(Scripted::new(ErrorClass::Transient, 1))
    );
    assert_eq!(CALLS.load(Ordering::SeqCst), 1);
}

/// A body that mutates an argument bound `mut` sees its own earlier attempts' changes: every
/// attempt borrows the function's argument in turn (the loop generated in the function).
#[test]
fn a_mut_argument_carries_over_from_attempt_to_attempt() {
    #[retry(strategy = no_delay())]
    async fn count_up(mut n: u32) -> Result<u32, Scripted> {
        n += 1;
        if n < 3 {
            return Err(Scripted::new(ErrorClass::Transient, n));
        }
        Ok(n)
    }
    assert_eq!(futures::executor::block_on(count_up(0)), Ok(3));
}

/// A struct holding a `&mut`, passed by value: the body writes through it with no `mut` in
/// sight, so each attempt must borrow it in turn (the loop generated in the function).
struct Ctx<'a> {
    hits: &'a mut u32,
}

#[retry(max_attempts = 3, strategy = no_delay())]
async fn through_a_struct(ctx: Ctx<'_>) -> Result<u32, Scripted> {
    *ctx.hits += 1;
    if *ctx.hits < 3 {
        return Err(Scripted::new(ErrorClass::Transient, *ctx.hits));
    }
    Ok(*ctx.hits)
}

/// The same through an alias of a `&mut`.
type Hits<'a> = &'a mut u32;

#[retry(max_attempts = 3, strategy = no_delay())]
async fn through_an_alias(hits: Hits<'_>) -> Result<u32, Scripted> {
    *hits += 1;
    if *hits < 3 {
        return Err(Scripted::new(ErrorClass::Transient, *hits));
    }
    Ok(*hits)
}

struct Tally(u32);

trait Bump {
    async fn bump(self) -> Result<u32, Scripted>;
}

/// `self` by value is a `&mut Tally` here.
impl Bump for &mut Tally {
    #[retry(max_attempts = 3, strategy = no_delay())]
    async fn bump(self) -> Result<u32, Scripted> {
        self.0 += 1;
        if self.0 < 3 {
            return Err(Scripted::new(ErrorClass::Transient, self.0));
        }
        Ok(self.0)
    }
}

#[test]
fn a_body_writing_through_an_argument_without_mut_in_sight_retries() {
    let mut hits = 0;
    let out = futures::executor::block_on(through_a_struct(Ctx { hits: &mut hits }));
    assert_eq!(out, Ok(3));
    let mut hits = 0;
    assert_eq!(
        futures::executor::block_on(through_an_alias(&mut hits)),
        Ok(3)
    );
    let mut tally = Tally(0);
    assert_eq!(futures::executor::block_on((&mut tally).bump()), Ok(3));
    assert_eq!(tally.0, 3);
}
