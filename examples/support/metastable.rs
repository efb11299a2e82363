//! The metastable-failure scenario of `examples/metastable.rs`, shared with
//! `tests/simulation.rs`: a service with a queue, clients with a per-attempt timeout, and a
//! short trigger.
//!
//! The service has `workers` workers and one FIFO queue; a request's service time is
//! exponential. Latency grows with the backlog, so once the queue's wait passes the clients'
//! attempt timeout every attempt fails, while the service keeps working on the requests whose
//! clients gave up, as real servers do. Retrying those failures adds load: with 5 attempts per
//! request a service at 75 % of its capacity gets up to 3.75 times what it can serve, the queue
//! never drains, and the failure outlives its trigger (Bronson et al., "Metastable Failures in
//! Distributed Systems", `HotOS` 2021).
#![allow(dead_code)] // the example and the test use different parts

use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::ops::Range;
use std::rc::Rc;
use std::time::Duration;

use reflexio::testing::VirtualClock;

use super::outage::{
    CallError, Clients, Guard, Request, SLOT, Service, bump, percentile, recovery, recovery_by,
    run_clients, slot_of,
};
use super::rng::Rng;

/// What starts the failure, during [`Metastable::trigger`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Trigger {
    /// Every request that starts its service during the trigger takes this many times longer
    /// (a slow dependency, a garbage-collection storm, half the fleet lost): the capacity
    /// drops below the load for a while.
    Slowdown(u32),
    /// Every request that starts its service during the trigger fails, after its usual
    /// service time (a dependency returning errors).
    Errors,
}

/// What is simulated.
#[derive(Clone, Debug)]
pub(crate) struct Metastable {
    pub(crate) clients: Clients,
    /// Requests served at once.
    pub(crate) workers: u32,
    /// The mean time a worker spends on a request (exponential).
    pub(crate) service_time: Duration,
    /// A request that waited longer than this in the queue is dropped when a worker reaches
    /// it, without being served (a 503); `None`: every request is served.
    pub(crate) queue_timeout: Option<Duration>,
    /// Admission control: an attempt that would wait longer than this in the queue is refused
    /// on arrival with a 429 Too Many Requests (`RateLimit`), at once, unqueued and costing
    /// no work; `None`: every attempt is queued.
    pub(crate) reject_above: Option<Duration>,
    /// When the trigger acts (on multiples of 100 ms), and what it does.
    pub(crate) trigger: Range<Duration>,
    pub(crate) trigger_kind: Trigger,
}

impl Metastable {
    /// Requests per second the service serves, at its usual speed.
    pub(crate) fn capacity(&self) -> f64 {
        f64::from(self.workers) / self.service_time.as_secs_f64()
    }

    /// The offered load: logical requests per second over the capacity.
    pub(crate) fn load(&self) -> f64 {
        self.clients.request_rate() / self.capacity()
    }
}

/// The service: `workers` workers taking requests from one FIFO queue.
///
/// Since the queue is FIFO and a worker never drops what it started, when an attempt arrives
/// the service already knows when a worker will take it (the earliest time one is free after
/// every earlier request was taken) and when it will be done; the attempt's future only waits
/// for that time. A client that times out drops the future, not the work: the worker still
/// spends that time on it, and the service counts it as wasted.
struct Queue {
    clock: VirtualClock,
    s: Metastable,
    /// When each worker is next free, earliest first.
    free_at: RefCell<BinaryHeap<Reverse<Duration>>>,
    rng: RefCell<Rng>,
    /// Attempts received per slot, and the longest queue wait of an attempt received in it.
    received: RefCell<Vec<u32>>,
    longest_wait: RefCell<Vec<Duration>>,
    /// Worker time spent in all, and on attempts whose client had gone.
    work: Cell<Duration>,
    wasted: Cell<Duration>,
    /// Attempts dropped from the queue after `queue_timeout`.
    dropped: Cell<u64>,
    /// Attempts refused on arrival (429) after `reject_above`.
    rejected: Cell<u64>,
}

/// What the service will do for one attempt.
struct Admission {
    /// When the client gets its answer.
    reply_at: Duration,
    outcome: Result<(), CallError>,
    /// Worker time it costs.
    work: Duration,
}

impl Queue {
    fn new(s: &Metastable, clock: &VirtualClock) -> Self {
        Queue {
            clock: clock.clone(),
            s: s.clone(),
            free_at: RefCell::new((0..s.workers).map(|_| Reverse(Duration::ZERO)).collect()),
            // A stream of its own: the clients' arrivals use streams 0..clients.
            rng: RefCell::new(Rng::new(s.clients.seed, u64::MAX)),
            received: RefCell::default(),
            longest_wait: RefCell::default(),
            work: Cell::new(Duration::ZERO),
            wasted: Cell::new(Duration::ZERO),
            dropped: Cell::new(0),
            rejected: Cell::new(0),
        }
    }

    /// Queues an attempt arriving `now`.
    fn admit(&self, now: Duration) -> Admission {
        let slot = slot_of(now);
        bump(&self.received, slot);
        let mut free_at = self.free_at.borrow_mut();
        let Reverse(free) = free_at.pop().expect("at least one worker");
        let start = free.max(now);
        let wait = start.saturating_sub(now);
        {
            let mut longest = self.longest_wait.borrow_mut();
            if longest.len() <= slot {
                longest.resize(slot + 1, Duration::ZERO);
            }
            longest[slot] = longest[slot].max(wait);
        }
        if self.s.reject_above.is_some_and(|bound| wait > bound) {
            free_at.push(Reverse(free));
            self.rejected.set(self.rejected.get() + 1);
            return Admission {
                reply_at: now,
                outcome: Err(CallError::Throttled),
                work: Duration::ZERO,
            };
        }
        if self.s.queue_timeout.is_some_and(|bound| wait > bound) {
            free_at.push(Reverse(free));
            self.dropped.set(self.dropped.get() + 1);
            return Admission {
                reply_at: start,
                outcome: Err(CallError::Overloaded),
                work: Duration::ZERO,
            };
        }
        let triggered = self.s.trigger.contains(&start);
        let mut work = self.rng.borrow_mut().exponential(self.s.service_time);
        if let (true, Trigger::Slowdown(factor)) = (triggered, self.s.trigger_kind) {
            work = work.saturating_mul(factor);
        }
        free_at.push(Reverse(start + work));
        self.work.set(self.work.get() + work);
        let outcome = if triggered && self.s.trigger_kind == Trigger::Errors {
            Err(CallError::Down)
        } else {
            Ok(())
        };
        Admission {
            reply_at: start + work,
            outcome,
            work,
        }
    }
}

/// Counts an attempt's work as wasted if its client dropped it before the answer.
struct Pending<'a> {
    queue: &'a Queue,
    work: Duration,
    answered: bool,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if !self.answered {
            self.queue.wasted.set(self.queue.wasted.get() + self.work);
        }
    }
}

impl Service for Queue {
    async fn attempt(&self) -> Result<(), CallError> {
        let now = self.clock.now();
        let Admission {
            reply_at,
            outcome,
            work,
        } = self.admit(now);
        let mut pending = Pending {
            queue: self,
            work,
            answered: false,
        };
        self.clock.timer(reply_at.saturating_sub(now)).await;
        pending.answered = true;
        outcome
    }
}

/// A request answered within this is served promptly (for [`MetastableReport::prompt_recovery`]).
pub(crate) const PROMPT: Duration = Duration::from_secs(1);

/// What one simulation measured.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct MetastableReport {
    pub(crate) guard: Guard,
    /// Logical requests issued, and how many succeeded.
    pub(crate) requests: usize,
    pub(crate) succeeded: usize,
    /// Time from the end of the trigger until every later 1 s window (sliding by 100 ms) of
    /// issued requests has at least 95 % successes; `None`: not within the run.
    pub(crate) recovery: Option<Duration>,
    /// The same, counting as good only the requests that succeeded within [`PROMPT`]: when
    /// the clients are served promptly again, not only eventually.
    pub(crate) prompt_recovery: Option<Duration>,
    /// Successful logical requests per second, by the time they ended: during the trigger,
    /// and from its end to the end of the run.
    pub(crate) goodput_during: f64,
    pub(crate) goodput_after: f64,
    /// Attempts per logical request, over the requests issued after the trigger.
    pub(crate) attempts_after: f64,
    /// Attempts the service received per second, after the trigger.
    pub(crate) load_after: f64,
    /// Latency percentiles of the logical requests (successes and failures alike).
    pub(crate) p50: Duration,
    pub(crate) p99: Duration,
    /// The share of the workers' time spent on attempts whose client had given up.
    pub(crate) wasted: f64,
    /// Attempts dropped from the queue after waiting too long.
    pub(crate) dropped: u64,
    /// Attempts refused on arrival with a 429 (admission control).
    pub(crate) rejected: u64,
    /// The longest queue wait of an attempt received in the last second of the run.
    pub(crate) final_wait: Duration,
}

impl MetastableReport {
    /// The share of logical requests that succeeded.
    pub(crate) fn success_rate(&self) -> f64 {
        #[allow(clippy::cast_precision_loss)] // counts far below 2^52
        let r = self.succeeded as f64 / self.requests as f64;
        r
    }
}

/// Runs the scenario with one guard.
///
/// # Panics
///
/// If the trigger does not start and end on a multiple of 100 ms, or ends after the run.
pub(crate) fn simulate_metastable(s: &Metastable, guard: Guard) -> MetastableReport {
    assert!(
        s.trigger.start.as_nanos().is_multiple_of(SLOT.as_nanos())
            && s.trigger.end.as_nanos().is_multiple_of(SLOT.as_nanos())
            && s.trigger.end < s.clients.run_for,
        "the trigger starts and ends on a slot boundary, within the run"
    );
    let clock = VirtualClock::new();
    let queue = Rc::new(Queue::new(s, &clock));
    let requests = run_clients(&s.clients, guard, &clock, &queue);
    report(s, guard, &requests, &queue)
}

fn report(s: &Metastable, guard: Guard, requests: &[Request], queue: &Queue) -> MetastableReport {
    let run_for = s.clients.run_for;
    let goodput = |window: Range<Duration>| {
        let ok = requests
            .iter()
            .filter(|r| r.ok && window.contains(&r.done()))
            .count();
        #[allow(clippy::cast_precision_loss)] // counts far below 2^52
        let per_sec = ok as f64 / window.end.saturating_sub(window.start).as_secs_f64();
        per_sec
    };
    let after: Vec<&Request> = requests
        .iter()
        .filter(|r| r.issued >= s.trigger.end)
        .collect();
    let attempts_after: u64 = after.iter().map(|r| u64::from(r.attempts)).sum();
    let received = queue.received.borrow();
    let received_after: u64 = received
        .iter()
        .skip(slot_of(s.trigger.end))
        .take(slot_of(run_for) - slot_of(s.trigger.end))
        .map(|&n| u64::from(n))
        .sum();
    let mut took: Vec<Duration> = requests.iter().map(|r| r.took).collect();
    took.sort_unstable();
    let last_second = slot_of(run_for.saturating_sub(Duration::from_secs(1)))..slot_of(run_for);
    #[allow(clippy::cast_precision_loss)] // counts far below 2^52
    MetastableReport {
        guard,
        requests: requests.len(),
        succeeded: requests.iter().filter(|r| r.ok).count(),
        recovery: recovery(requests, s.trigger.end, run_for, 0.95),
        prompt_recovery: recovery_by(requests, s.trigger.end, run_for, 0.95, |r| {
            r.ok && r.took <= PROMPT
        }),
        goodput_during: goodput(s.trigger.clone()),
        goodput_after: goodput(s.trigger.end..run_for),
        attempts_after: attempts_after as f64 / after.len() as f64,
        load_after: received_after as f64 / run_for.saturating_sub(s.trigger.end).as_secs_f64(),
        p50: percentile(&took, 0.50),
        p99: percentile(&took, 0.99),
        wasted: queue.wasted.get().as_secs_f64() / queue.work.get().as_secs_f64(),
        dropped: queue.dropped.get(),
        rejected: queue.rejected.get(),
        final_wait: {
            let waits = queue.longest_wait.borrow();
            let clamp = |i: usize| i.min(waits.len());
            waits[clamp(last_second.start)..clamp(last_second.end)]
                .iter()
                .max()
                .copied()
                .unwrap_or(Duration::ZERO)
        },
    }
}
