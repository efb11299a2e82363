//! The same async retry on several runtimes, with real 1 ms delays: tokio's timer (the `tokio`
//! feature), a plain `futures` executor, and a plain thread with no runtime at all; and tokio's
//! paused time.
//!
//! With the default features the async policy sleeps on tokio's timer inside a tokio runtime and
//! on `futures-timer` outside one, so the default policy must work on each of them without a
//! `.sleeper(..)`. The default without tokio is tested in `reflexio-core`'s unit tests, which CI
//! also runs with `--no-default-features --features futures-timer`.

mod support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use reflexio::strategies::constant;
use reflexio::{AsyncRetryPolicy, AsyncRetryPolicyBuilder, ErrorClass, EventKind};
use support::{Recorder, Scripted, ms};

/// The retry under test: two transient failures, then a value.
async fn flaky_twice(policy: &AsyncRetryPolicy<Scripted>) -> (Result<u32, Scripted>, u32) {
    let calls = AtomicU32::new(0);
    let out = policy
        .call(|| {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                if n <= 2 {
                    Err(Scripted::new(ErrorClass::Transient, n))
                } else {
                    Ok(n * 10)
                }
            }
        })
        .await;
    (out, calls.load(Ordering::SeqCst))
}

fn builder(rec: &Recorder) -> AsyncRetryPolicyBuilder<Scripted> {
    AsyncRetryPolicy::builder()
        .strategy(constant(ms(1)))
        .max_attempts(4)
        .on_event(rec.hook())
}

fn assert_same_story(rec: &Recorder, out: Result<u32, Scripted>, calls: u32, took: Duration) {
    assert_eq!((out, calls), (Ok(30), 3));
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
            .filter(|e| e.kind == EventKind::Retry)
            .all(|e| e.delay == Some(ms(1)))
    );
    // Two real sleeps of 1 ms happened; the timer never fires early.
    assert!(took >= ms(2), "took {took:?}");
    assert!(rec.last().elapsed >= ms(2));
}

#[tokio::test]
async fn on_tokio_with_the_real_timer() {
    let rec = Recorder::default();
    let policy = builder(&rec).build().unwrap(); // the default sleeper: tokio's
    let start = Instant::now();
    let (out, calls) = flaky_twice(&policy).await;
    assert_same_story(&rec, out, calls, start.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_tokio_multi_thread_the_future_is_send_and_spawnable() {
    let rec = Recorder::default();
    let policy = builder(&rec).build().unwrap();
    let start = Instant::now();
    let (out, calls) = tokio::spawn(async move { flaky_twice(&policy).await })
        .await
        .unwrap();
    assert_same_story(&rec, out, calls, start.elapsed());
}

#[test]
fn on_a_plain_futures_executor_the_default_policy_sleeps_without_tokio() {
    let rec = Recorder::default();
    let policy = builder(&rec).build().unwrap(); // the default sleeper, no tokio runtime
    assert!(tokio::runtime::Handle::try_current().is_err());
    let start = Instant::now();
    let (out, calls) = futures::executor::block_on(flaky_twice(&policy));
    assert_same_story(&rec, out, calls, start.elapsed());
}

/// A thread that never saw a runtime, polling by hand: the default policy's sleeps and its
/// attempt timeout both need a timer that runs without tokio.
#[test]
fn on_a_plain_thread_the_default_policy_sleeps_and_times_out_without_tokio() {
    let rec = Recorder::default();
    let policy = AsyncRetryPolicy::<std::io::Error>::builder()
        .strategy(constant(ms(1)))
        .max_attempts(4)
        .attempt_timeout(ms(20))
        .on_event(rec.hook())
        .build()
        .unwrap();
    let (out, calls, took) = std::thread::spawn(move || {
        assert!(tokio::runtime::Handle::try_current().is_err());
        let calls = AtomicU32::new(0);
        let start = Instant::now();
        let out = futures::executor::block_on(policy.call(|| {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                if n == 1 {
                    // Hangs until the attempt timeout drops it.
                    std::future::pending::<()>().await;
                }
                Ok::<_, std::io::Error>(n)
            }
        }));
        (
            out.map_err(|e| e.to_string()),
            calls.into_inner(),
            start.elapsed(),
        )
    })
    .join()
    .unwrap();
    assert_eq!((out, calls), (Ok(2), 2));
    assert_eq!(
        rec.trace(),
        [(EventKind::Retry, 1), (EventKind::Success, 2)]
    );
    assert_eq!(rec.events()[0].class, Some(ErrorClass::Transient));
    // The timeout and the delay were real waits, measured on the policy's clock too.
    assert!(took >= ms(21), "took {took:?}");
    assert!(rec.last().elapsed >= ms(21));
}

#[test]
fn on_a_plain_futures_executor_with_futures_timer() {
    let rec = Recorder::default();
    let policy = builder(&rec)
        .sleeper(futures_timer::Delay::new)
        .build()
        .unwrap();
    let start = Instant::now();
    // No tokio runtime anywhere on this thread: tokio's timer would panic here.
    assert!(tokio::runtime::Handle::try_current().is_err());
    let (out, calls) = futures::executor::block_on(flaky_twice(&policy));
    assert_same_story(&rec, out, calls, start.elapsed());
}

#[tokio::test(start_paused = true)]
async fn on_tokio_paused_time_long_delays_take_no_real_time() {
    let rec = Recorder::default();
    let policy = AsyncRetryPolicy::builder()
        .strategy(constant(Duration::from_secs(30)))
        .max_attempts(4)
        .deadline(Duration::from_secs(600))
        .on_event(rec.hook())
        .build()
        .unwrap();
    let virtual_start = tokio::time::Instant::now();
    let real_start = Instant::now();
    let (out, calls) = flaky_twice(&policy).await;
    assert_eq!((out, calls), (Ok(30), 3));
    // Two sleeps of 30 s on tokio's paused clock (which rounds timers up to the millisecond).
    let waited = virtual_start.elapsed();
    assert!(
        waited >= Duration::from_secs(60) && waited < Duration::from_secs(61),
        "{waited:?}"
    );
    assert!(rec.last().elapsed >= Duration::from_secs(60));
    assert!(real_start.elapsed() < Duration::from_secs(5));
}
