//! [`VirtualClock`]: time that moves only when told to, for tests (no real sleeping for
//! backoff delays) and simulations (many calls interleaved in virtual time).

use core::time::Duration;
use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

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
/// use reflexio::{strategies::constant, testing::VirtualClock, RetryPolicy, TransientError};
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
    /// The pending timers, keyed by their end, then their id (so the earliest is first): one
    /// entry per live timer that has been polled before its end, with the waker of its latest
    /// poll. A timer takes its entry out when dropped, so the map holds no more entries than
    /// there are live timers, however long the simulation runs.
    timers: BTreeMap<(Duration, u64), Waker>,
    /// The id of the next timer created.
    next_id: u64,
}

/// The future of [`VirtualClock::timer`].
#[derive(Debug)]
pub(crate) struct Timer {
    clock: VirtualClock,
    /// Its end, and its id: its key in [`State::timers`].
    key: (Duration, u64),
}

impl Future for Timer {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let key = self.key;
        let mut s = self.clock.state();
        if s.now >= key.0 {
            // Its entry, if any, was taken out when time reached its end.
            return Poll::Ready(());
        }
        match s.timers.entry(key) {
            Entry::Occupied(mut registered) => {
                if !registered.get().will_wake(cx.waker()) {
                    registered.insert(cx.waker().clone());
                }
            }
            Entry::Vacant(slot) => {
                slot.insert(cx.waker().clone());
            }
        }
        Poll::Pending
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        // A timer dropped before its end (an attempt timeout that lost its race) must no longer
        // count as pending: `run` would otherwise advance time to it.
        self.clock.state().timers.remove(&self.key);
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

    /// Whether `other` is a clone of this clock (the same time), not another clock.
    pub(crate) fn same_as(&self, other: &VirtualClock) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// The time since the clock was created, including every sleep and advance.
    #[must_use]
    pub fn now(&self) -> Duration {
        self.state().now
    }

    /// Moves time to what `to` returns, then wakes the timers it made due. They are woken once
    /// the lock is released: a waker may poll its timer at once, and polling locks the clock.
    fn move_to(&self, to: impl FnOnce(&mut State) -> Duration) {
        let due = {
            let mut s = self.state();
            let now = to(&mut s);
            s.now = now;
            let mut due = Vec::new();
            while let Some(first) = s.timers.first_entry() {
                if first.key().0 > now {
                    break;
                }
                due.push(first.remove());
            }
            due
        };
        due.into_iter().for_each(Waker::wake);
    }

    /// Moves time forward without recording a sleep, as work inside an attempt would.
    pub fn advance(&self, by: Duration) {
        self.move_to(|s| s.now.saturating_add(by));
    }

    /// Sleeps: records `delay` and advances time by it, at once.
    pub fn sleep(&self, delay: Duration) {
        self.move_to(|s| {
            s.sleeps.push(delay);
            s.now.saturating_add(delay)
        });
    }

    /// A future that completes when this clock reaches `now() + after`, moved by
    /// [`advance`](Self::advance) or [`sleep`](Self::sleep) from anywhere. It does not move
    /// time itself: policies use it for attempt timeouts.
    ///
    /// Dropping the future cancels the timer: it no longer counts as pending for
    /// [`next_timer`](Self::next_timer) and [`run`](Self::run).
    pub fn timer(&self, after: Duration) -> impl Future<Output = ()> + Send + use<> {
        self.timer_after(after)
    }

    /// [`timer`](Self::timer), with its type named (a policy's [`Timer`](super::Timer) holds
    /// it).
    pub(crate) fn timer_after(&self, after: Duration) -> Timer {
        let key = {
            let mut s = self.state();
            let id = s.next_id;
            s.next_id += 1;
            (s.now.saturating_add(after), id)
        };
        Timer {
            clock: self.clone(),
            key,
        }
    }

    /// The end of the earliest pending [`timer`](Self::timer), if any: a timer is pending from
    /// its first poll before its end until that end, or until it is dropped.
    #[must_use]
    pub fn next_timer(&self) -> Option<Duration> {
        self.state().timers.keys().next().map(|(end, _)| *end)
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
    /// use reflexio::testing::VirtualClock;
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
            self.move_to(|s| s.now.max(next));
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

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::LocalPool;
    use futures::future::{Either, select};
    use futures::task::LocalSpawnExt;
    use std::pin::pin;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Context, Wake};

    /// Counts its wakes.
    #[derive(Default)]
    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn registered(clock: &VirtualClock) -> usize {
        clock.state().timers.len()
    }

    #[test]
    fn run_does_not_wait_for_a_dropped_timer() {
        // An attempt of 1 s raced against a 100 s attempt timeout: the attempt wins, and the
        // timeout, dropped unfired, must not hold the simulation until 100 s.
        let clock = VirtualClock::new();
        let mut pool = LocalPool::new();
        let (work, timeout) = (
            clock.timer(Duration::from_secs(1)),
            clock.timer(Duration::from_secs(100)),
        );
        let won = Arc::new(Mutex::new(None));
        let out = won.clone();
        pool.spawner()
            .spawn_local(async move {
                let first = match select(pin!(work), pin!(timeout)).await {
                    Either::Left(_) => "work",
                    Either::Right(_) => "timeout",
                };
                *out.lock().unwrap() = Some(first);
            })
            .unwrap();
        assert_eq!(
            clock.run(|| pool.run_until_stalled()),
            Duration::from_secs(1)
        );
        assert_eq!(*won.lock().unwrap(), Some("work"));
        assert_eq!(clock.next_timer(), None);
        assert_eq!(registered(&clock), 0);
    }

    #[test]
    fn a_timer_polled_many_times_is_registered_once() {
        let clock = VirtualClock::new();
        let mut timer = Box::pin(clock.timer(Duration::from_secs(1)));
        let waker = Arc::new(CountingWaker::default());
        let waker = Waker::from(waker.clone());
        let mut cx = Context::from_waker(&waker);
        for _ in 0..10_000 {
            assert!(timer.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(registered(&clock), 1);
        drop(timer);
        assert_eq!(registered(&clock), 0, "a dropped timer is gone");
    }

    #[test]
    fn the_latest_waker_is_the_one_woken() {
        let clock = VirtualClock::new();
        let mut timer = Box::pin(clock.timer(Duration::from_secs(1)));
        let (first, second) = (
            Arc::new(CountingWaker::default()),
            Arc::new(CountingWaker::default()),
        );
        for w in [&first, &second] {
            let waker = Waker::from(w.clone());
            assert!(
                timer
                    .as_mut()
                    .poll(&mut Context::from_waker(&waker))
                    .is_pending()
            );
        }
        clock.advance(Duration::from_millis(999));
        assert_eq!(second.0.load(Ordering::SeqCst), 0, "not due yet");
        clock.advance(Duration::from_millis(1));
        assert_eq!(
            (
                first.0.load(Ordering::SeqCst),
                second.0.load(Ordering::SeqCst)
            ),
            (0, 1)
        );
        assert_eq!(registered(&clock), 0, "a fired timer is gone");
        let waker = Waker::from(second.clone());
        assert!(
            timer
                .as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_ready()
        );
    }
}
