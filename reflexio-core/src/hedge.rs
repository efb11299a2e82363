//! Hedged requests ("The Tail at Scale", Dean and Barroso, CACM 2013): when an attempt is
//! slower than usual, start another one and take whichever answers first.
//!
//! [`Hedging`] (`hedging.rs`) says *how* a policy hedges (after a fixed delay, or after a
//! latency percentile it learns online, with at most N attempts in flight); it is a builder
//! setting of the async policy, shared by the policy's clones. [`AsyncRetryPolicy::call_idempotent`] is where the
//! caller says *that* the operation may run twice at once: only calls made through it hedge.
//!
//! Read top to bottom: [`Hedged`] is the state of one hedged call (the engine's counts, one
//! breaker admission per attempt in flight, the budget's tokens for the next launch), with
//! three step functions (`begin`, `on_outcome`, `on_due`); [`drive`] is the async loop that
//! runs the attempts' futures in a fixed array of pinned slots and calls them. The decisions
//! after a failure are the [`Engine`]'s, the guards the breaker's and the budget's own.

use core::fmt;
use core::time::Duration;
use std::future::{Future, poll_fn};
use std::pin::pin;
use std::task::Poll;

use crate::async_policy::AsyncRetryPolicy;
use crate::budget::Reserved;
use crate::call::{allows_exactly, emit, event};
use crate::circuit::{Admission, Transition};
use crate::class::{Classification, ErrorClass};
use crate::engine::{Decision, Engine};
use crate::errors::{CircuitOpen, RetryError};
use crate::event::{EventKind, RetryEvent};
use crate::hedging::Hedging;
use crate::ok::{AcceptOk, OkClassifier};
use crate::settings::{Config, Deadline};
use crate::stop::StopReason;
use crate::time::Stamp;

/// The number of pinned slots a hedged call's future holds its attempts' futures in.
const SLOTS: usize = Hedging::MAX_IN_FLIGHT as usize;

impl<E, R> AsyncRetryPolicy<E, R> {
    /// Calls `op`, **which the caller states is idempotent** (safe to run more than once,
    /// and concurrently), hedging it as the policy's [`hedging`](crate::PolicyBuilder::hedging)
    /// setting says, and retrying it as [`call`](Self::call) does. See [`Hedging`] for what a
    /// hedged call does; without a hedging setting this is `call`, one attempt at a time.
    ///
    /// The statement is made here, at the call, and not in the policy, because only the code
    /// that calls the operation knows whether running it twice is safe (a `GET` is, a `POST`
    /// that charges a card is not), and one policy (one budget, one breaker, one learned
    /// latency) usually serves both kinds of call of a dependency: [`call`](Self::call) never
    /// runs two attempts at once, whatever the policy's hedging setting, and keeps its cost
    /// and its future's size.
    ///
    /// The returned future holds room for [`Hedging::MAX_IN_FLIGHT`] attempts' futures (pinned in
    /// place, no allocation per attempt): box the operation's future if it is large.
    ///
    /// # Errors
    ///
    /// The error of the attempt that ended the call: a never-retried failure of any attempt,
    /// or, when the policy stops, the last failure once no attempt is in flight.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use reflexio::{AsyncRetryPolicy, Hedging, TransientError};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// let policy = AsyncRetryPolicy::<TransientError>::builder()
    ///     .hedging(Hedging::after(Duration::from_millis(10)).build().unwrap())
    ///     .build()
    ///     .unwrap();
    /// let mut calls = 0;
    /// let out = policy
    ///     .call_idempotent(|| {
    ///         calls += 1;
    ///         // The first attempt hangs for a second; the hedge answers in 2 ms.
    ///         let latency = if calls == 1 { 1000 } else { 2 };
    ///         async move {
    ///             tokio::time::sleep(Duration::from_millis(latency)).await;
    ///             Ok::<_, TransientError>(latency)
    ///         }
    ///     })
    ///     .await;
    /// assert_eq!(out, Ok(2)); // after 12 ms, the hedge's answer
    /// # }
    /// ```
    pub async fn call_idempotent<T, F, Fut>(&self, op: F) -> Result<T, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: fmt::Debug,
        R: OkClassifier<T>,
    {
        let mut call = Hedged::new(&self.config, &self.ok_rule);
        drive(&mut call, op).await
    }
}

impl<E> AsyncRetryPolicy<E> {
    /// Like [`call_idempotent`](Self::call_idempotent), but the error tells why the policy
    /// stopped, after how many attempts (hedges included) and how long.
    ///
    /// # Errors
    ///
    /// A [`RetryError`] wrapping the error of the attempt that ended the call.
    pub async fn execute_idempotent<T, F, Fut>(&self, op: F) -> Result<T, RetryError<E>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: fmt::Debug,
    {
        let mut call = Hedged::new(&self.config, &AcceptOk);
        let result = drive(&mut call, op).await;
        result.map_err(|error| RetryError {
            last: Err(error),
            stop: call
                .engine
                .stop_reason()
                .unwrap_or(StopReason::NonRetryable),
            attempts: call.engine.attempts(),
            last_class: call.engine.last_class(),
            elapsed: call.now(),
        })
    }
}

/// An attempt in flight.
struct InFlight<'p> {
    number: u32,
    hedge: bool,
    /// When it started, since the call's start.
    started: Duration,
    /// Its own admission by the breaker: dropped unrecorded when the attempt is cancelled.
    admission: Option<Admission<'p>>,
}

/// The next launch, when its time comes.
struct Scheduled<'p> {
    /// Since the call's start.
    at: Duration,
    hedge: bool,
    /// A retry's budget tokens, taken when it was decided (a hedge takes its own at launch).
    reserved: Option<Reserved<'p>>,
}

/// What the driver does next.
enum Step<T, E> {
    /// Start an attempt in this slot.
    Launch(usize),
    /// Nothing in flight: sleep this long (as the policy does between retries), then
    /// [`Hedged::on_due`].
    Sleep(Duration),
    /// Poll the attempts in flight and the timer of the next launch.
    Wait,
    Done(Result<T, E>),
}

/// The state of one hedged call.
struct Hedged<'p, E, T, R> {
    config: &'p Config<E>,
    ok_rule: &'p R,
    hedging: Option<&'p Hedging>,
    /// The hedging delay of this call, read once at its start.
    hedge_delay: Option<Duration>,
    max_in_flight: usize,
    engine: Engine,
    start: Stamp,
    /// Where the deadline counts from, since the start: 0 for `.deadline(..)`, the first
    /// failure for the default deadline (unknown before it).
    origin: Option<Duration>,
    slots: [Option<InFlight<'p>>; SLOTS],
    in_flight: usize,
    next: Option<Scheduled<'p>>,
    /// A stop of the policy (a cap, the deadline, the budget, the breaker): no more launches.
    no_more: bool,
    /// The last failure, returned when the call ends without a success.
    kept: Option<Result<T, E>>,
}

impl<'p, E: fmt::Debug, T, R: OkClassifier<T>> Hedged<'p, E, T, R> {
    fn new(config: &'p Config<E>, ok_rule: &'p R) -> Self {
        let hedging = config.settings.hedging.as_ref();
        Hedged {
            config,
            ok_rule,
            hedging,
            hedge_delay: hedging.and_then(|h| h.delay(&config.time)),
            max_in_flight: hedging.map_or(1, |h| h.max_in_flight() as usize),
            engine: Engine::new(),
            start: config.time.now(),
            origin: match config.settings.deadline {
                Some(Deadline::FromStart(_)) => Some(Duration::ZERO),
                _ => None,
            },
            slots: Default::default(),
            in_flight: 0,
            next: None,
            no_more: false,
            kept: None,
        }
    }

    fn now(&self) -> Duration {
        self.config.time.since(self.start)
    }

    fn hook(&self) -> bool {
        self.config.settings.hook.is_some()
    }

    fn event(&self, kind: EventKind, attempt: u32, hedge: bool) -> RetryEvent<'p> {
        let mut e = event(self.config, kind, attempt, self.now());
        e.hedge = hedge;
        e
    }

    /// The first attempt, if the breaker admits it.
    fn begin(&mut self) -> Step<T, E> {
        match self.admit() {
            Ok(admission) => {
                if let Some(budget) = &self.config.settings.budget {
                    budget.record_call();
                }
                Step::Launch(self.launch(admission, false))
            }
            Err(open) => self.rejected(open),
        }
    }

    /// The attempt timer of an attempt starting now, if the policy has an attempt timeout.
    fn attempt_timer(&self) -> Option<impl Future<Output = ()> + Send + use<'p, E, T, R>> {
        let config = self.config;
        config
            .settings
            .attempt_timeout
            .map(move |timeout| config.time.timer(timeout))
    }

    /// The time of the next launch, since the start.
    fn next_at(&self) -> Option<Duration> {
        self.next.as_ref().map(|n| n.at)
    }

    /// A timer that fires at `at` since the start.
    fn timer_until(&self, at: Duration) -> impl Future<Output = ()> + Send + use<'p, E, T, R> {
        let config = self.config;
        config.time.timer(at.saturating_sub(self.now()))
    }

    fn sleep(&self, delay: Duration) -> impl Future<Output = ()> + Send + use<'p, E, T, R> {
        self.config.time.sleep(delay)
    }

    fn admit(&self) -> Result<Option<Admission<'p>>, CircuitOpen> {
        let Some(breaker) = &self.config.settings.breaker else {
            return Ok(None);
        };
        let (admission, transition) = breaker.admit()?;
        self.emit_transition(transition, self.engine.attempts().saturating_add(1), None);
        Ok(Some(admission))
    }

    /// Records the start of an attempt; returns its slot.
    fn launch(&mut self, admission: Option<Admission<'p>>, hedge: bool) -> usize {
        let number = self.engine.begin_attempt();
        // The first attempt starts with the call: no clock reading.
        let now = if number == 1 {
            Duration::ZERO
        } else {
            self.now()
        };
        let slot = self
            .slots
            .iter()
            .position(Option::is_none)
            .expect("a launch only with a free slot");
        self.slots[slot] = Some(InFlight {
            number,
            hedge,
            started: now,
            admission,
        });
        self.in_flight += 1;
        if self.hook() {
            emit(
                self.config,
                &self.event(EventKind::AttemptStarted, number, hedge),
            );
        }
        // The next hedge, if one may follow.
        if self.next.is_none()
            && !self.no_more
            && self.in_flight < self.max_in_flight
            && self.engine.attempts() < self.config.rules.max_attempts
            && let Some(delay) = self.hedge_delay
        {
            self.next = Some(Scheduled {
                at: now.saturating_add(delay),
                hedge: true,
                reserved: None,
            });
        }
        slot
    }

    /// The scheduled launch is due.
    fn on_due(&mut self) -> Step<T, E> {
        let Some(next) = self.next.take() else {
            return self.idle();
        };
        if next.hedge {
            let now = self.now();
            let past_deadline = match (self.origin, self.config.rules.deadline) {
                (Some(origin), Some(deadline)) => now.saturating_sub(origin) >= deadline,
                _ => false,
            };
            let aborted = self
                .config
                .settings
                .abort
                .as_ref()
                .is_some_and(|abort| abort());
            if self.no_more
                || past_deadline
                || self.in_flight >= self.max_in_flight
                || self.engine.attempts() >= self.config.rules.max_attempts
                || aborted
            {
                return self.idle();
            }
            let reserved = match &self.config.settings.budget {
                Some(budget) => match budget.reserve(ErrorClass::Transient) {
                    Some(reserved) => Some(reserved),
                    None => return self.idle(),
                },
                None => None,
            };
            let Ok(admission) = self.admit() else {
                return self.idle(); // the tokens go back with `reserved`
            };
            if let Some(reserved) = reserved {
                reserved.commit();
            }
            return Step::Launch(self.launch(admission, true));
        }
        match self.admit() {
            Ok(admission) => {
                if let Some(reserved) = next.reserved {
                    reserved.commit();
                }
                Step::Launch(self.launch(admission, false))
            }
            Err(_) if self.in_flight > 0 => {
                self.no_more = true;
                Step::Wait
            }
            Err(open) => self.rejected(open),
        }
    }

    /// Nothing to launch now: wait for the attempts in flight, if any.
    fn idle(&mut self) -> Step<T, E> {
        if self.in_flight > 0 || self.next.is_some() {
            return Step::Wait;
        }
        Step::Done(self.kept.take().expect("a failure was kept"))
    }

    /// The breaker rejected a retry with nothing in flight (or the first attempt).
    #[cold]
    fn rejected(&mut self, open: CircuitOpen) -> Step<T, E> {
        self.next = None;
        self.engine.stopped(StopReason::CircuitOpen);
        let attempt = self.engine.attempts().saturating_add(1);
        if self.hook() {
            emit(
                self.config,
                &self.event(EventKind::CircuitRejected, attempt, false),
            );
            let mut gave_up = self.event(EventKind::GaveUp, attempt, false);
            gave_up.stop = Some(StopReason::CircuitOpen);
            gave_up.class = self.engine.last_class();
            emit(self.config, &gave_up);
        }
        let kept = self.kept.take();
        Step::Done(kept.unwrap_or_else(|| Err(self.config.circuit_open(open))))
    }

    /// The attempt in `slot` ended: `None` when its attempt timeout fired first.
    /// The engine's decision after a failure of class `c` at `now` (since the call's start).
    fn engine_decides(&mut self, c: Classification, now: Duration) -> Decision {
        // The first failure's time, as read: `since` rounds every measured time up, and the
        // origin must not take that rounding off the times measured from it.
        let (config, start) = (self.config, self.start);
        let origin = *self
            .origin
            .get_or_insert_with(|| now.saturating_sub(config.time.rounding()));
        // Near the deadline, on a clock that lags, the engine has the retry confirmed on the
        // fine clock.
        self.engine
            .on_failure(&config.rules, c, now.saturating_sub(origin), |delay| {
                allows_exactly(config, start, origin, delay)
            })
    }

    fn on_outcome(&mut self, slot: usize, outcome: Option<Result<T, E>>) -> Step<T, E> {
        let mut attempt = self.slots[slot].take().expect("an attempt in flight");
        self.in_flight -= 1;
        let now = self.now();
        let duration = now.saturating_sub(attempt.started);
        let (outcome, forced) = match outcome {
            Some(outcome) => (outcome, None),
            None => (
                Err(self.config.timed_out()),
                Some(Classification::from(ErrorClass::Transient)),
            ),
        };
        let failure = match (forced, &outcome) {
            (Some(c), _) => Some(c),
            (None, Ok(value)) => self.ok_rule.classify_ok(value),
            (None, Err(error)) => Some(self.config.classifier.classify(error)),
        };
        if self.hook() {
            let mut e = self.failure_event(EventKind::AttemptFinished, &attempt, failure, &outcome);
            e.duration = Some(duration);
            emit(self.config, &e);
        }
        let Some(c) = failure else {
            return self.succeed(attempt, duration, outcome);
        };
        if let Some(admission) = attempt.admission.take() {
            let t = admission.record(Some(c.class));
            self.emit_transition(t, attempt.number, Some(c.class));
        }
        if let Some(budget) = &self.config.settings.budget {
            budget.record_failure();
        }
        let mut decision = self.engine_decides(c, now);
        let mut reserved = None;
        if let Decision::Retry(delay) = decision {
            decision = if self.no_more {
                // An earlier failure stopped the launches: the engine kept its reason.
                Decision::Stop(self.engine.stop_reason().unwrap_or(StopReason::MaxAttempts))
            } else {
                match self.protect(c.class, delay) {
                    Ok(r) => {
                        reserved = r;
                        decision
                    }
                    Err(reason) => {
                        self.engine.stopped(reason);
                        Decision::Stop(reason)
                    }
                }
            };
        }
        let ends_now = matches!(
            decision,
            Decision::Stop(StopReason::NonRetryable | StopReason::Aborted)
        ) || (self.in_flight == 0 && matches!(decision, Decision::Stop(_)));
        if ends_now {
            self.cancel_rest();
            if self.hook() {
                let mut e = self.failure_event(EventKind::GaveUp, &attempt, Some(c), &outcome);
                if let Decision::Stop(reason) = decision {
                    e.stop = Some(reason);
                }
                emit(self.config, &e);
            }
            return Step::Done(outcome);
        }
        match decision {
            Decision::Retry(delay) => {
                let at = now.saturating_add(delay);
                // With nothing in flight, a scheduled hedge has nothing left to hedge: the
                // retry replaces it. Otherwise the earlier launch serves as the replacement
                // (and the retry's tokens go back).
                if self.in_flight == 0 || self.next.as_ref().is_none_or(|n| n.at > at) {
                    self.next = Some(Scheduled {
                        at,
                        hedge: false,
                        reserved,
                    });
                }
                if self.hook() {
                    let mut e = self.failure_event(EventKind::Retry, &attempt, Some(c), &outcome);
                    // The time until the next launch, the retry's or an earlier hedge's.
                    e.delay = self.next_at().map(|at| at.saturating_sub(now));
                    emit(self.config, &e);
                }
                self.kept = Some(outcome);
                if self.in_flight == 0 {
                    Step::Sleep(delay)
                } else {
                    Step::Wait
                }
            }
            Decision::Stop(_) => {
                // No more launches; the attempts in flight go on.
                self.no_more = true;
                self.next = None;
                self.kept = Some(outcome);
                Step::Wait
            }
        }
    }

    fn succeed(
        &mut self,
        attempt: InFlight<'p>,
        duration: Duration,
        outcome: Result<T, E>,
    ) -> Step<T, E> {
        if let Some(admission) = attempt.admission {
            let t = admission.record(None);
            self.emit_transition(t, attempt.number, None);
        }
        if let Some(budget) = &self.config.settings.budget {
            budget.record_success(self.engine.last_class());
        }
        if let Some(hedging) = self.hedging {
            hedging.record(&self.config.time, duration);
        }
        self.cancel_rest();
        if self.hook() {
            emit(
                self.config,
                &self.event(EventKind::Success, attempt.number, attempt.hedge),
            );
        }
        Step::Done(outcome)
    }

    /// Drops every other attempt's state (their admissions give their probe places back and
    /// record nothing) and the next launch (its tokens go back), reporting the cancellations.
    fn cancel_rest(&mut self) {
        self.next = None;
        if self.in_flight == 0 {
            return;
        }
        let now = self.now();
        let hook = self.hook();
        // Taking an attempt out drops its admission: a probe's place goes back, unrecorded.
        for attempt in self.slots.iter_mut().filter_map(Option::take) {
            if hook {
                let mut e = event(
                    self.config,
                    EventKind::AttemptCancelled,
                    attempt.number,
                    now,
                );
                e.hedge = attempt.hedge;
                e.duration = Some(now.saturating_sub(attempt.started));
                emit(self.config, &e);
            }
        }
        self.in_flight = 0;
    }

    /// What may still stop a retry the engine allowed (see `Call`'s): the abort condition,
    /// the breaker open past the delay, an empty budget; else the retry's tokens.
    fn protect(
        &self,
        class: ErrorClass,
        delay: Duration,
    ) -> Result<Option<Reserved<'p>>, StopReason> {
        let settings = &self.config.settings;
        if settings.abort.as_ref().is_some_and(|abort| abort()) {
            return Err(StopReason::Aborted);
        }
        if let Some(breaker) = &settings.breaker
            && breaker.rejects_after(delay)
        {
            return Err(StopReason::CircuitOpen);
        }
        match &settings.budget {
            Some(budget) => budget
                .reserve(class)
                .map(Some)
                .ok_or(StopReason::BudgetExhausted),
            None => Ok(None),
        }
    }

    fn failure_event<'a>(
        &self,
        kind: EventKind,
        attempt: &InFlight<'_>,
        c: Option<Classification>,
        outcome: &'a Result<T, E>,
    ) -> RetryEvent<'a>
    where
        'p: 'a,
    {
        let mut e: RetryEvent<'a> = self.event(kind, attempt.number, attempt.hedge);
        if let Some(c) = c {
            let error = outcome.as_ref().err();
            e.class = Some(c.class);
            e.status = c.status;
            e.rejected = error.is_none();
            e.error = error.map(|e| e as &dyn fmt::Debug);
            e.std_error = error
                .zip(self.config.conversions.error_chain)
                .map(|(e, as_std)| as_std(e));
        }
        e
    }

    fn emit_transition(
        &self,
        transition: Option<Transition>,
        attempt: u32,
        class: Option<ErrorClass>,
    ) {
        if let Some(t) = transition
            && self.hook()
        {
            let kind = match t {
                Transition::Opened => EventKind::CircuitOpened,
                Transition::HalfOpened => EventKind::CircuitHalfOpen,
                Transition::Closed => EventKind::CircuitClosed,
            };
            let mut e = self.event(kind, attempt, false);
            e.class = class;
            emit(self.config, &e);
        }
    }
}

/// What woke the driver.
enum Woke<T, E> {
    /// The attempt in this slot ended (`None`: its attempt timeout fired).
    Ended(usize, Option<Result<T, E>>),
    /// The next launch is due.
    Due,
}

/// Drives one hedged call: the attempts' futures in pinned slots (with their attempt
/// timers), the timer of the next launch, the sleep between retries when nothing is in
/// flight. Polls every attempt in flight at each wake: with at most four, cheaper than
/// tracking which one woke (and it needs no `futures` dependency, no allocation).
async fn drive<E, T, R, F, Fut>(call: &mut Hedged<'_, E, T, R>, mut op: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: fmt::Debug,
    R: OkClassifier<T>,
{
    let mut attempts = [pin!(None), pin!(None), pin!(None), pin!(None)];
    let mut timers = [pin!(None), pin!(None), pin!(None), pin!(None)];
    let mut launch_timer = pin!(None);
    let mut launch_at: Option<Duration> = None;
    let mut step = call.begin();
    loop {
        step = match step {
            Step::Launch(slot) => {
                attempts[slot].set(Some(op()));
                timers[slot].set(call.attempt_timer());
                Step::Wait
            }
            Step::Sleep(delay) => {
                call.sleep(delay).await;
                launch_at = None;
                launch_timer.set(None);
                call.on_due()
            }
            Step::Done(result) => {
                // The losers are dropped (cancelled) here, before the result is returned.
                for attempt in &mut attempts {
                    attempt.set(None);
                }
                return result;
            }
            Step::Wait => {
                let woke = poll_fn(|cx| {
                    for slot in 0..SLOTS {
                        let Some(attempt) = attempts[slot].as_mut().as_pin_mut() else {
                            continue;
                        };
                        if let Poll::Ready(out) = attempt.poll(cx) {
                            return Poll::Ready(Woke::Ended(slot, Some(out)));
                        }
                        if let Some(timer) = timers[slot].as_mut().as_pin_mut()
                            && timer.poll(cx).is_ready()
                        {
                            return Poll::Ready(Woke::Ended(slot, None));
                        }
                    }
                    // Armed only once the attempts are pending: an attempt that is ready at
                    // once (a cache hit) makes no timer.
                    let at = call.next_at();
                    if at != launch_at {
                        launch_at = at;
                        launch_timer.set(at.map(|at| call.timer_until(at)));
                    }
                    if let Some(timer) = launch_timer.as_mut().as_pin_mut()
                        && timer.poll(cx).is_ready()
                    {
                        return Poll::Ready(Woke::Due);
                    }
                    Poll::Pending
                })
                .await;
                match woke {
                    Woke::Ended(slot, out) => {
                        attempts[slot].set(None);
                        timers[slot].set(None);
                        call.on_outcome(slot, out)
                    }
                    Woke::Due => {
                        launch_at = None;
                        launch_timer.set(None);
                        call.on_due()
                    }
                }
            }
        };
    }
}
