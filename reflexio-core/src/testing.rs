//! Test support: a virtual clock, so tests never sleep for real backoff delays.

use core::time::Duration;
use std::future::{Future, poll_fn};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Poll, Waker};

/// A virtual clock for tests: sleeping on it advances its time at once and records the delay.
///
/// Give a clone to a policy with `.clock(clock.clone())` (sync or async); the policy then reads
/// its deadline on this clock and sleeps on it. Keep the other clone to look at what happened
/// ([`sleeps`](VirtualClock::sleeps)), or to simulate work inside an attempt
/// ([`advance`](VirtualClock::advance)).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use reflexio_core::{strategies::constant, testing::VirtualClock, RetryPolicy, TransientError};
///
/// let clock = VirtualClock::new();
/// let policy = RetryPolicy::builder()
///     .strategy(constant(Duration::from_secs(10)))
///     .max_attempts(3)
///     .clock(clock.clone())
///     .build()
///     .unwrap();
///
/// let out: Result<(), _> = policy.call(|| Err(TransientError::new("down")));
/// assert!(out.is_err());
/// assert_eq!(clock.sleeps(), [Duration::from_secs(10), Duration::from_secs(10)]);
/// assert_eq!(clock.now(), Duration::from_secs(20)); // and the test took microseconds
/// ```
#[derive(Clone, Debug, Default)]
pub struct VirtualClock {
    inner: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    now: Duration,
    sleeps: Vec<Duration>,
    /// Timers waiting for the clock to reach their end.
    timers: Vec<(Duration, Waker)>,
}

impl State {
    fn set_now(&mut self, now: Duration) {
        self.now = now;
        let (due, waiting): (Vec<_>, Vec<_>) =
            self.timers.drain(..).partition(|(end, _)| *end <= now);
        self.timers = waiting;
        for (_, waker) in due {
            waker.wake();
        }
    }
}

impl VirtualClock {
    /// A clock at time zero that has never slept.
    #[must_use]
    pub fn new() -> Self {
        VirtualClock::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves the state consistent: keep using it.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The time since the clock was created, including every sleep and advance.
    #[must_use]
    pub fn now(&self) -> Duration {
        self.state().now
    }

    /// Moves time forward without recording a sleep, as work inside an attempt would.
    pub fn advance(&self, by: Duration) {
        let mut s = self.state();
        let now = s.now.saturating_add(by);
        s.set_now(now);
    }

    /// Sleeps: records `delay` and advances time by it, at once.
    pub fn sleep(&self, delay: Duration) {
        let mut s = self.state();
        let now = s.now.saturating_add(delay);
        s.sleeps.push(delay);
        s.set_now(now);
    }

    /// A future that completes when this clock reaches `now() + after`, moved by
    /// [`advance`](Self::advance) or [`sleep`](Self::sleep) from anywhere. It does not move
    /// time itself: policies use it for attempt timeouts.
    pub fn timer(&self, after: Duration) -> impl Future<Output = ()> + Send + use<> {
        let clock = self.clone();
        let end = self.now().saturating_add(after);
        poll_fn(move |cx| {
            let mut s = clock.state();
            if s.now >= end {
                Poll::Ready(())
            } else {
                s.timers.push((end, cx.waker().clone()));
                Poll::Pending
            }
        })
    }

    /// The end of the earliest pending [`timer`](Self::timer), if any.
    #[must_use]
    pub fn next_timer(&self) -> Option<Duration> {
        self.state().timers.iter().map(|(end, _)| *end).min()
    }

    /// Runs a simulation in virtual time: calls `run_until_stalled` (an executor's "poll every
    /// ready task"), then moves the clock to the earliest pending timer, and again, until no
    /// timer is pending. Returns the final time.
    ///
    /// With policies that sleep on [`timer`](Self::timer) (`.clock(clock.clone())` plus
    /// `.sleeper(move |d| clock.timer(d))`), thousands of concurrent calls interleave exactly
    /// as they would in real time, deterministically, in milliseconds.
    ///
    /// ```
    /// use std::time::Duration;
    /// use futures::{executor::LocalPool, task::LocalSpawnExt};
    /// use reflexio_core::testing::VirtualClock;
    ///
    /// let clock = VirtualClock::new();
    /// let mut pool = LocalPool::new();
    /// for i in 1..=3u64 {
    ///     let timer = clock.timer(Duration::from_secs(i));
    ///     pool.spawner().spawn_local(timer).unwrap();
    /// }
    /// let end = clock.run(|| pool.run_until_stalled());
    /// assert_eq!(end, Duration::from_secs(3));
    /// ```
    pub fn run(&self, mut run_until_stalled: impl FnMut()) -> Duration {
        loop {
            run_until_stalled();
            let Some(next) = self.next_timer() else {
                return self.now();
            };
            let mut s = self.state();
            let now = s.now.max(next);
            s.set_now(now);
        }
    }

    /// Every delay slept so far, in order.
    #[must_use]
    pub fn sleeps(&self) -> Vec<Duration> {
        self.state().sleeps.clone()
    }

    /// The sum of every delay slept so far.
    #[must_use]
    pub fn total_slept(&self) -> Duration {
        self.state()
            .sleeps
            .iter()
            .fold(Duration::ZERO, |a, b| a.saturating_add(*b))
    }
}
