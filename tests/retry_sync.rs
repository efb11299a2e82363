//! `#[retry]` on sync functions, through the facade: call counts, events, per-class keys,
//! `policy =`, methods, generics, `impl Trait`, `return` and `?`, aliases, `crate =`.

// Each test declares its `#[retry]` functions (and their statics) next to its assertions.
#![allow(clippy::items_after_statements)]

mod support;

use std::cell::Cell;
use std::fmt::Display;
use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use reflexio::strategies::{constant, decorrelated_jitter, exponential, no_delay};
use reflexio::testing::VirtualClock;
use reflexio::{ErrorClass, EventKind, RetryPolicy, StopReason, TransientError, retry};
use support::{Recorder, Scripted, ms};

extern crate reflexio as renamed;

// `?` cannot know the call number: 0.
impl From<TransientError> for Scripted {
    fn from(_: TransientError) -> Self {
        Scripted::new(ErrorClass::Transient, 0)
    }
}

/// Fails with `classes[n]` on call `n + 1` (its `Scripted::call`), then succeeds with the call
/// number.
fn script(calls: &AtomicU32, classes: &[ErrorClass]) -> Result<u32, Scripted> {
    let n = calls.fetch_add(1, Ordering::SeqCst);
    match classes.get(n as usize) {
        Some(&class) => Err(Scripted::new(class, n + 1)),
        None => Ok(n + 1),
    }
}

#[test]
fn retries_until_success_and_counts_calls() {
    static CALLS: AtomicU32 = AtomicU32::new(0);
    #[retry(strategy = no_delay(), max_attempts = 5)]
    fn flaky() -> Result<u32, Scripted> {
        script(&CALLS, &[ErrorClass::Transient, ErrorClass::ServerError])
    }
    assert_eq!(flaky(), Ok(3));
    assert_eq!(CALLS.load(Ordering::SeqCst), 3);
}

#[test]
fn max_attempts_counts_every_call_and_returns_the_last_error() {
    static CALLS: AtomicU32 = AtomicU32::new(0);
    static EVENTS: LazyLock<Recorder> = LazyLock::new(Recorder::default);
    #[retry(strategy = no_delay(), max_attempts = 4, on_event = EVENTS.hook())]
    fn always_down() -> Result<u32, Scripted> {
        script(&CALLS, &[ErrorClass::Transient; 10])
    }
    assert_eq!(always_down(), Err(Scripted::new(ErrorClass::Transient, 4)));
    assert_eq!(CALLS.load(Ordering::SeqCst), 4);
    let events = EVENTS.take();
    assert_eq!(events.len(), 4);
    let last = events.last().unwrap();
    assert_eq!(
        (last.kind, last.attempt, last.stop),
        (EventKind::GaveUp, 4, Some(StopReason::MaxAttempts))
    );
}

#[test]
fn events_name_the_function_by_default() {
    static EVENTS: LazyLock<Recorder> = LazyLock::new(Recorder::default);
    static CALLS: AtomicU32 = AtomicU32::new(0);
    #[retry(strategy = no_delay(), on_event = EVENTS.hook())]
    fn load_profile() -> Result<u32, Scripted> {
        script(&CALLS, &[ErrorClass::Transient])
    }
    assert_eq!(load_profile(), Ok(2));
    let events = EVENTS.take();
    assert_eq!(
        events
            .iter()
            .map(|e| (e.kind, e.attempt, e.operation.as_deref()))
            .collect::<Vec<_>>(),
        [
            (EventKind::Retry, 1, Some("load_profile")),
            (EventKind::Success, 2, Some("load_profile")),
        ]
    );
}

#[test]
fn operation_overrides_the_name() {
    static EVENTS: LazyLock<Recorder> = LazyLock::new(Recorder::default);
    #[retry(operation = "GET /users", on_event = |e| EVENTS.record(e))]
    fn r#get() -> Result<(), Scripted> {
        Ok(())
    }
    get().unwrap();
    assert_eq!(EVENTS.take()[0].operation.as_deref(), Some("GET /users"));
}

#[test]
fn each_class_key_sets_the_strategy_of_its_class() {
    static CLOCK: LazyLock<VirtualClock> = LazyLock::new(VirtualClock::new);
    static CALLS: AtomicU32 = AtomicU32::new(0);
    #[retry(
        strategy = constant(ms(1)),
        transient = constant(ms(2)),
        rate_limit = constant(ms(3)),
        server_error = constant(ms(4)),
        concurrency = constant(ms(5)),
        unknown = constant(ms(6)),
        max_attempts = 10,
        clock = CLOCK.clone(),
    )]
    fn every_class() -> Result<u32, Scripted> {
        use ErrorClass::{Concurrency, RateLimit, ServerError, Transient, Unknown};
        script(
            &CALLS,
            &[Unknown, Concurrency, ServerError, RateLimit, Transient],
        )
    }
    assert_eq!(every_class(), Ok(6));
    assert_eq!(CLOCK.sleeps(), [ms(6), ms(5), ms(4), ms(3), ms(2)]);
}

#[test]
fn the_default_strategy_covers_classes_without_their_own() {
    static CLOCK: LazyLock<VirtualClock> = LazyLock::new(VirtualClock::new);
    static CALLS: AtomicU32 = AtomicU32::new(0);
    #[retry(strategy = constant(ms(7)), rate_limit = constant(ms(1)), clock = CLOCK.clone())]
    fn mostly_default() -> Result<u32, Scripted> {
        script(&CALLS, &[ErrorClass::Transient, ErrorClass::RateLimit])
    }
    assert_eq!(mostly_default(), Ok(3));
    assert_eq!(CLOCK.sleeps(), [ms(7), ms(1)]);
}

#[test]
fn deadline_literal_stops_before_sleeping_into_it() {
    static CLOCK: LazyLock<VirtualClock> = LazyLock::new(VirtualClock::new);
    static CALLS: AtomicU32 = AtomicU32::new(0);
    static EVENTS: LazyLock<Recorder> = LazyLock::new(Recorder::default);
    #[retry(
        strategy = constant(ms(100)),
        max_attempts = 100,
        deadline = "250ms",
        clock = CLOCK.clone(),
        on_event = EVENTS.hook(),
    )]
    fn slow() -> Result<u32, Scripted> {
        script(&CALLS, &[ErrorClass::Transient; 100])
    }
    assert!(slow().is_err());
    assert_eq!(CALLS.load(Ordering::SeqCst), 3);
    assert_eq!(
        EVENTS.take().last().unwrap().stop,
        Some(StopReason::DeadlineExceeded)
    );
}

#[test]
fn deadline_takes_a_duration_expression_or_a_const() {
    const DEADLINE: Duration = Duration::from_millis(250);
    static CLOCK: LazyLock<VirtualClock> = LazyLock::new(VirtualClock::new);
    static CALLS: AtomicU32 = AtomicU32::new(0);
    static EVENTS: LazyLock<Recorder> = LazyLock::new(Recorder::default);
    #[retry(
        strategy = constant(ms(100)),
        max_attempts = 100,
        deadline = Duration::from_millis(150),
        clock = CLOCK.clone(),
        on_event = EVENTS.hook(),
    )]
    fn by_expression() -> Result<u32, Scripted> {
        script(&CALLS, &[ErrorClass::Transient; 100])
    }
    assert!(by_expression().is_err());
    assert_eq!(CALLS.swap(0, Ordering::SeqCst), 2);
    assert_eq!(
        EVENTS.take().last().unwrap().stop,
        Some(StopReason::DeadlineExceeded)
    );

    #[retry(
        strategy = constant(ms(100)),
        max_attempts = 100,
        deadline = DEADLINE,
        clock = CLOCK.clone(),
        on_event = EVENTS.hook(),
    )]
    fn by_const() -> Result<u32, Scripted> {
        script(&CALLS, &[ErrorClass::Transient; 100])
    }
    assert!(by_const().is_err());
    assert_eq!(CALLS.load(Ordering::SeqCst), 3);
    assert_eq!(
        EVENTS.take().last().unwrap().stop,
        Some(StopReason::DeadlineExceeded)
    );
}

#[test]
#[should_panic(expected = "invalid `#[retry]` configuration on `zero_deadline`")]
fn a_zero_deadline_expression_panics_at_the_first_call() {
    #[retry(deadline = Duration::ZERO)]
    fn zero_deadline() -> Result<(), Scripted> {
        Ok(())
    }
    let _ = zero_deadline();
}

#[test]
fn max_unknown_retries_and_no_deadline() {
    static CALLS: AtomicU32 = AtomicU32::new(0);
    #[retry(strategy = no_delay(), max_unknown_retries = 1, deadline = None)]
    fn unknown() -> Result<u32, Scripted> {
        script(&CALLS, &[ErrorClass::Unknown; 10])
    }
    assert_eq!(unknown(), Err(Scripted::new(ErrorClass::Unknown, 2)));
    assert_eq!(CALLS.load(Ordering::SeqCst), 2);
}

#[test]
fn never_retried_classes_make_one_call() {
    static CALLS: AtomicU32 = AtomicU32::new(0);
    #[retry(strategy = no_delay())]
    fn denied() -> Result<u32, Scripted> {
        script(&CALLS, &[ErrorClass::Permanent; 3])
    }
    assert_eq!(denied(), Err(Scripted::new(ErrorClass::Permanent, 1)));
    assert_eq!(CALLS.load(Ordering::SeqCst), 1);
}

#[test]
fn a_classifier_closure_decides_the_class() {
    static CALLS: AtomicU32 = AtomicU32::new(0);
    #[retry(
        classifier = |e: &String| if e == "busy" { ErrorClass::Transient } else { ErrorClass::Permanent },
        strategy = no_delay(),
    )]
    fn by_message() -> Result<u32, String> {
        match CALLS.fetch_add(1, Ordering::SeqCst) {
            0 | 1 => Err("busy".to_owned()),
            2 => Err("bad request".to_owned()),
            _ => Ok(0),
        }
    }
    assert_eq!(by_message(), Err("bad request".to_owned()));
    assert_eq!(CALLS.load(Ordering::SeqCst), 3);
}

#[test]
fn the_same_seed_gives_the_same_delays() {
    static A: LazyLock<VirtualClock> = LazyLock::new(VirtualClock::new);
    static B: LazyLock<VirtualClock> = LazyLock::new(VirtualClock::new);
    #[retry(strategy = decorrelated_jitter(), seed = 7, max_attempts = 6, clock = A.clone())]
    fn a() -> Result<(), Scripted> {
        Err(Scripted::new(ErrorClass::Transient, 0))
    }
    #[retry(strategy = decorrelated_jitter(), seed = 7, max_attempts = 6, clock = B.clone())]
    fn b() -> Result<(), Scripted> {
        Err(Scripted::new(ErrorClass::Transient, 0))
    }
    a().unwrap_err();
    b().unwrap_err();
    assert_eq!(A.sleeps().len(), 5);
    assert_eq!(A.sleeps(), B.sleeps());
}

static SHARED: LazyLock<RetryPolicy<Scripted>> = LazyLock::new(|| {
    RetryPolicy::builder()
        .strategy(no_delay())
        .max_attempts(2)
        .operation("shared")
        .build()
        .unwrap()
});

#[test]
fn policy_takes_a_lazy_lock_an_arc_or_an_expression() {
    static CALLS: AtomicU32 = AtomicU32::new(0);
    static ARC: LazyLock<Arc<RetryPolicy<Scripted>>> = LazyLock::new(|| Arc::new(SHARED.clone()));
    static BUILDS: AtomicU32 = AtomicU32::new(0);
    #[retry(policy = SHARED)]
    fn from_static() -> Result<u32, Scripted> {
        script(&CALLS, &[ErrorClass::Transient; 10])
    }
    assert!(from_static().is_err());
    assert_eq!(CALLS.swap(0, Ordering::SeqCst), 2);

    #[retry(policy = **ARC)]
    fn from_arc() -> Result<u32, Scripted> {
        script(&CALLS, &[ErrorClass::Transient; 10])
    }
    assert!(from_arc().is_err());
    assert_eq!(CALLS.swap(0, Ordering::SeqCst), 2);

    #[retry(policy = {
        BUILDS.fetch_add(1, Ordering::SeqCst);
        RetryPolicy::builder().strategy(no_delay()).max_attempts(3).build().unwrap()
    })]
    fn from_expression() -> Result<u32, Scripted> {
        script(&CALLS, &[ErrorClass::Transient; 10])
    }
    assert!(from_expression().is_err());
    assert!(from_expression().is_err());
    assert_eq!(CALLS.load(Ordering::SeqCst), 6);
    assert_eq!(
        BUILDS.load(Ordering::SeqCst),
        2,
        "`policy = EXPR` is evaluated at every call"
    );
}

#[test]
fn return_and_question_mark_end_one_attempt() {
    static CALLS: AtomicU32 = AtomicU32::new(0);
    fn reset() -> Result<(), TransientError> {
        Err(TransientError::new("reset"))
    }
    #[retry(strategy = no_delay())]
    fn early(fail_until: u32) -> Result<String, Scripted> {
        let n = CALLS.fetch_add(1, Ordering::SeqCst) + 1;
        if n == 1 {
            return Err(Scripted::new(ErrorClass::Transient, n));
        }
        if n < fail_until {
            // `?` converts with `From`, and ends this attempt only.
            reset()?;
        }
        Ok(format!("attempt {n}"))
    }
    assert_eq!(early(4).unwrap(), "attempt 4");
    assert_eq!(CALLS.load(Ordering::SeqCst), 4);
}

#[test]
fn io_result_and_anyhow_result_aliases() {
    static CALLS: AtomicU32 = AtomicU32::new(0);
    #[retry(strategy = no_delay())]
    fn read() -> io::Result<u32> {
        if CALLS.fetch_add(1, Ordering::SeqCst) == 0 {
            Err(io::ErrorKind::ConnectionReset.into())
        } else {
            Ok(1)
        }
    }
    assert_eq!(read().unwrap(), 1);

    #[retry(classifier = |_: &anyhow::Error| ErrorClass::Transient, strategy = no_delay(), max_attempts = 3)]
    fn any() -> anyhow::Result<()> {
        anyhow::bail!("always")
    }
    assert_eq!(any().unwrap_err().to_string(), "always");
}

struct Client {
    name: String,
    calls: Cell<u32>,
    fails: u32,
}

impl Client {
    #[retry(strategy = no_delay())]
    fn name(&self) -> Result<&str, Scripted> {
        self.calls.set(self.calls.get() + 1);
        if self.calls.get() <= self.fails {
            return Err(Scripted::new(ErrorClass::Transient, self.calls.get()));
        }
        Ok(&self.name)
    }

    #[retry(strategy = no_delay())]
    fn rename(&mut self, to: &str) -> Result<(), Scripted> {
        self.calls.set(self.calls.get() + 1);
        if self.calls.get() <= self.fails {
            return Err(Scripted::new(ErrorClass::Transient, self.calls.get()));
        }
        to.clone_into(&mut self.name);
        Ok(())
    }

    #[retry(strategy = no_delay())]
    fn new(name: impl AsRef<str>) -> Result<Self, Scripted> {
        Ok(Client {
            name: name.as_ref().to_owned(),
            calls: Cell::new(0),
            fails: 2,
        })
    }
}

#[test]
fn methods_with_ref_and_mut_self() {
    let mut client = Client::new("a").unwrap();
    assert_eq!(client.name(), Ok("a"));
    assert_eq!(client.calls.replace(0), 3);
    client.rename("b").unwrap();
    assert_eq!(client.calls.get(), 3);
    assert_eq!(client.name, "b");
}

#[retry(strategy = no_delay())]
fn generic<T: Clone + Default + PartialEq>(value: &T, calls: &Cell<u32>) -> Result<T, Scripted> {
    calls.set(calls.get() + 1);
    if calls.get() < 2 {
        Err(Scripted::new(ErrorClass::Transient, calls.get()))
    } else {
        Ok(value.clone())
    }
}

#[retry(strategy = no_delay())]
fn generic_error<E: std::fmt::Debug + reflexio::Classify + 'static>(
    make: impl Fn() -> E,
    classify: fn(&E) -> ErrorClass,
) -> Result<(), E> {
    let _ = classify;
    Err(make())
}

#[test]
fn generic_functions() {
    let calls = Cell::new(0);
    assert_eq!(generic(&"x".to_owned(), &calls), Ok("x".to_owned()));
    calls.set(0);
    assert_eq!(generic(&5_u8, &calls), Ok(5));
    // A type parameter as the error type: one policy per instantiation (`io::Error` and
    // `Scripted` classify themselves).
    let io_err = generic_error(
        || io::Error::from(io::ErrorKind::NotFound),
        |_| ErrorClass::Permanent,
    );
    assert_eq!(io_err.unwrap_err().kind(), io::ErrorKind::NotFound);
}

#[retry(strategy = no_delay())]
fn displayable(prefix: impl AsRef<str>) -> Result<impl Display, Scripted> {
    Ok(format!("{}!", prefix.as_ref()))
}

#[test]
fn impl_trait_arguments_and_return_types() {
    assert_eq!(displayable("hi").unwrap().to_string(), "hi!");
}

#[test]
fn inner_attributes_stay_on_the_function() {
    #[retry(strategy = no_delay())]
    fn with_inner() -> Result<u32, Scripted> {
        #![allow(clippy::let_and_return, unused_variables)]
        let unused = 1;
        let x = 2_u32;
        x.checked_add(0)
            .ok_or(Scripted::new(ErrorClass::Permanent, 1))
    }
    assert_eq!(with_inner(), Ok(2));
}

#[test]
fn crate_renames_the_path_to_reflexio() {
    #[renamed::retry(crate = renamed, strategy = renamed::strategies::no_delay())]
    fn by_path() -> Result<(), Scripted> {
        Ok(())
    }
    #[renamed::retry(crate = "::renamed")]
    fn by_string() -> Result<(), Scripted> {
        Ok(())
    }
    assert_eq!(by_path(), Ok(()));
    assert_eq!(by_string(), Ok(()));
}

#[test]
#[should_panic(expected = "invalid `#[retry]` configuration on `bad_strategy`")]
fn a_strategy_rejected_at_run_time_panics_naming_the_function() {
    #[retry(strategy = exponential().factor(0.5))]
    fn bad_strategy() -> Result<(), Scripted> {
        Ok(())
    }
    let _ = bad_strategy();
}

#[test]
fn no_real_sleep_with_a_virtual_clock() {
    static CLOCK: LazyLock<VirtualClock> = LazyLock::new(VirtualClock::new);
    #[retry(strategy = constant(Duration::from_secs(3600)), max_attempts = 3, clock = CLOCK.clone(), deadline = "3h")]
    fn hours() -> Result<(), Scripted> {
        Err(Scripted::new(ErrorClass::Transient, 0))
    }
    let start = std::time::Instant::now();
    hours().unwrap_err();
    assert_eq!(CLOCK.total_slept(), Duration::from_secs(7200));
    assert!(start.elapsed() < Duration::from_secs(5));
}

/// Issue 14.7: `#[retry]` shows an error by its message and its sources in events (and so in
/// log lines), when the error type implements `Error` or holds one (`anyhow::Error`); other
/// types keep their `Debug`.
mod error_messages {
    use std::sync::Mutex;

    use reflexio::{ErrorClass, RetryEvent, retry};

    static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());

    fn log(e: &RetryEvent<'_>) {
        if let Some(message) = e.error_message() {
            LINES.lock().unwrap().push(message.to_string());
        }
    }

    #[derive(Debug, thiserror::Error)]
    #[error("connect failed")]
    struct ConnectFailed {
        #[source]
        cause: std::io::Error,
    }

    #[retry(max_attempts = 1, classifier = |_: &ConnectFailed| ErrorClass::Transient, on_event = log)]
    fn connect() -> Result<(), ConnectFailed> {
        Err(ConnectFailed {
            cause: std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused"),
        })
    }

    #[retry(max_attempts = 1, classifier = |_: &anyhow::Error| ErrorClass::Transient, on_event = log)]
    fn fetch() -> anyhow::Result<()> {
        Err(anyhow::anyhow!("timed out").context("fetch failed"))
    }

    #[derive(Debug)]
    struct Plain;

    #[retry(max_attempts = 1, classifier = |_: &Plain| ErrorClass::Transient, on_event = log)]
    fn plain() -> Result<(), Plain> {
        Err(Plain)
    }

    #[test]
    fn errors_show_their_message_and_sources() {
        let _ = connect();
        let _ = fetch();
        let _ = plain();
        assert_eq!(
            *LINES.lock().unwrap(),
            [
                "connect failed: refused",
                "fetch failed: timed out",
                "Plain"
            ]
        );
    }
}
