//! [`Timer`], the one future a policy waits on: a backoff sleep, an attempt's timeout, a
//! hedge's delay, on whichever timer the policy's [`TimeSource`](super::TimeSource) uses.
//!
//! One hand-written future instead of an `async fn` per use: an `async fn` around tokio's
//! `Sleep` (96 B) made a 144 B future, and the attempt timer, an `async` block choosing
//! between the virtual clock's timer and a sleep, 208 B; every async call's future held the
//! larger. `Timer` is tokio's `Sleep` and a tag (104 B), and the same type serves both uses,
//! so a call's future has one slot for whichever is running.

use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};

use super::BoxSleep;
use super::virtual_clock::Timer as VirtualTimer;

/// tokio's timer, or, without the `tokio` feature, a stand-in that is never made.
#[cfg(feature = "tokio")]
type TokioSleep = tokio::time::Sleep;
#[cfg(not(feature = "tokio"))]
type TokioSleep = core::future::Pending<()>;

/// `futures-timer`'s delay, or, without the feature, a stand-in that is never made.
#[cfg(feature = "futures-timer")]
type FuturesDelay = futures_timer::Delay;
#[cfg(not(feature = "futures-timer"))]
type FuturesDelay = core::future::Pending<()>;

/// The projection code `pin_project!` generates (its `Pin::new_unchecked` of the pinned field)
/// is that crate's, the one tokio, hyper and tower use for exactly this. It comes from a macro
/// of another crate, so the workspace's `forbid(unsafe_code)` holds: our own code has none.
mod projection {
    use super::{BoxSleep, FuturesDelay, TokioSleep, VirtualTimer};

    pin_project_lite::pin_project! {
        /// A policy's timer: a sleep between attempts, or the timer of an attempt's timeout.
        #[project = TimerProj]
        #[allow(dead_code, reason = "a variant whose feature is off is never made")]
        #[allow(missing_docs, reason = "`pin_project!` takes no attributes on fields")]
        pub enum Timer {
            /// A timer that never fires: an attempt with no timeout.
            Off,
            /// A timer that has fired, or a sleep that needed no waiting (a zero delay, or a
            /// virtual clock moved at once).
            Elapsed,
            /// tokio's timer (feature `tokio`, inside a runtime).
            Tokio { #[pin] sleep: TokioSleep },
            /// `futures-timer`'s, on any executor.
            Delay { delay: FuturesDelay },
            /// A custom sleeper's future.
            Boxed { sleep: BoxSleep },
            /// A timer on a [`VirtualClock`](crate::testing::VirtualClock).
            Virtual { timer: VirtualTimer },
        }
    }
}

pub use projection::Timer;
use projection::TimerProj;

impl core::fmt::Debug for Timer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Timer::Off => "Timer::Off",
            Timer::Elapsed => "Timer::Elapsed",
            Timer::Tokio { .. } => "Timer::Tokio",
            Timer::Delay { .. } => "Timer::Delay",
            Timer::Boxed { .. } => "Timer::Boxed",
            Timer::Virtual { .. } => "Timer::Virtual",
        })
    }
}

impl Future for Timer {
    type Output = ();

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match self.project() {
            TimerProj::Off => Poll::Pending,
            TimerProj::Elapsed => Poll::Ready(()),
            TimerProj::Tokio { sleep } => sleep.poll(cx),
            TimerProj::Delay { delay } => Pin::new(delay).poll(cx),
            TimerProj::Boxed { sleep } => sleep.as_mut().poll(cx),
            TimerProj::Virtual { timer } => Pin::new(timer).poll(cx),
        }
    }
}

pin_project_lite::pin_project! {
    /// One attempt under the policy's attempt timeout (`Call::timed` makes it): the timed
    /// step of `call`'s future, and of the loop `#[retry]` generates for an async function.
    /// Not public API.
    ///
    /// Both await an attempt through this only when the policy has an attempt timeout: an
    /// attempt without one makes, moves and drops no timer (a `Timer`'s drop glue, out of
    /// line, cost a success 18 instructions).
    #[allow(missing_docs, reason = "`pin_project!` takes no attributes on fields")]
    pub struct TimedAttempt<Fut> {
        #[pin]
        attempt: Fut,
        #[pin]
        timer: Timer,
    }
}

impl<Fut> TimedAttempt<Fut> {
    /// `attempt` under `timer`.
    #[inline]
    pub(crate) fn new(attempt: Fut, timer: Timer) -> Self {
        TimedAttempt { attempt, timer }
    }
}

impl<Fut: Future> Future for TimedAttempt<Fut> {
    /// The attempt's output; `None` when its timer fired first (the caller then drops the
    /// attempt).
    type Output = Option<Fut::Output>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(out) = this.attempt.poll(cx) {
            return Poll::Ready(Some(out));
        }
        if this.timer.poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        Poll::Pending
    }
}
