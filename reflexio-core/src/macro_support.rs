//! Support for the code that `#[retry]` and `#[derive(Classify)]` generate.
//!
//! /!\ WARNING: this is *not* a stable API! /!\
//! Everything here is reachable only through the facade's hidden `__private` module, and may
//! change in any release: the facade pins `reflexio-core` and `reflexio-macros` to the exact same
//! version, so generated code and this module always match.
//!
//! The names below show up in compiler errors about a misused `#[retry]` (rustc prints the path
//! of a trait whose bound failed), so each is chosen to read well there.

use core::any::{Any, TypeId};
use core::fmt;
use core::ops::ControlFlow;
use core::pin::Pin;
use core::task::{Context, Poll};
use core::time::Duration;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use crate::async_policy::{AsIs, AsyncRetryPolicy, Calling};
use crate::builder::{AsyncRetryPolicyBuilder, NonBlocking, PolicyBuilder, RetryPolicyBuilder};
use crate::circuit::CircuitBreaker;
use crate::class::Classification;
use crate::classify::Classifier;
use crate::errors::ConfigError;
use crate::errors::{AttemptTimedOut, CircuitOpen};
use crate::ok::{AcceptOk, OkClassifier, first_outcome};
use crate::policy::RetryPolicy;

pub use crate::call::{Boxed, Call, Holding, InPlace, Inline, Next, OnHeap};
pub use crate::time::{TimedAttempt, Timer};

mod sealed {
    pub trait Sealed {}
    impl<T, E> Sealed for Result<T, E> {}
}

/// The return type of a `#[retry]` function: a `Result`, whichever name it goes by.
///
/// A trait rather than a match on the type's name, so `io::Result<T>`, `anyhow::Result<T>` and
/// any other alias work, and anything else fails with one error at the return type. Sealed:
/// only `Result<T, E>` implements it.
#[diagnostic::on_unimplemented(
    message = "`#[retry]` functions must return `Result<T, E>`, found `{Self}`",
    label = "expected `Result<T, E>` (or an alias such as `io::Result<T>`)",
    note = "`#[retry]` retries the function when it returns `Err`, so its return type must be a `Result`"
)]
pub trait IsResult: sealed::Sealed + Sized {
    /// The success type.
    type Ok;
    /// The error type, which the policy classifies.
    type Err;
    /// The value, as a `Result`.
    ///
    /// # Errors
    ///
    /// The `Err` the value holds.
    fn into_result(self) -> Result<Self::Ok, Self::Err>;
    /// Back from a `Result`.
    fn from_result(result: Result<Self::Ok, Self::Err>) -> Self;
}

// `do_not_recommend`: the error about a return type that is not a `Result` does not go on to
// show this impl's source ("the trait is implemented for `Result<T, E>`"): the message says it.
#[diagnostic::do_not_recommend]
impl<T, E> IsResult for Result<T, E> {
    type Ok = T;
    type Err = E;
    #[inline]
    fn into_result(self) -> Result<T, E> {
        self
    }
    #[inline]
    fn from_result(result: Result<T, E>) -> Self {
        result
    }
}

/// Proof that a `#[retry]` function's return type `R` is `Result<T, E>`, made by [`witness`],
/// the only helper bounded by [`IsResult`].
///
/// Every other helper takes the witness instead of an `R: IsResult` bound, so a function that
/// does not return a `Result` gets exactly one error, at its return type: a bound repeated on
/// each helper would be reported once per helper, each at its own place, while the generated
/// code's several calls of `witness::<R, _, _>()` all fail at the same tokens (the return type),
/// which rustc reports once.
///
/// Its function pointers (both conversions are the identity) fold into direct, inlined calls
/// wherever the optimiser sees the witness made: so an async `#[retry]` function makes a fresh
/// one after each await instead of keeping one in its future.
pub struct Witness<R, T, E> {
    into: fn(R) -> Result<T, E>,
    from: fn(Result<T, E>) -> R,
}

impl<R, T, E> Clone for Witness<R, T, E> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<R, T, E> Copy for Witness<R, T, E> {}

impl<R, T, E> fmt::Debug for Witness<R, T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Witness")
    }
}

/// The [`Witness`] for the return type `R` (named by turbofish, with the user's own tokens, so
/// the error lands on them).
#[must_use]
pub fn witness<R, T, E>() -> Witness<R, T, E>
where
    R: IsResult<Ok = T, Err = E>,
{
    Witness {
        into: R::into_result,
        from: R::from_result,
    }
}

/// The builder of the sync policy of a function returning `R`.
pub fn sync_builder<R, T, E>(_: Witness<R, T, E>) -> RetryPolicyBuilder<E> {
    RetryPolicy::builder()
}

/// The builder of the async policy of a function returning `R`.
pub fn async_builder<R, T, E>(_: Witness<R, T, E>) -> AsyncRetryPolicyBuilder<E> {
    AsyncRetryPolicy::builder()
}

/// The policy given by `#[retry(policy = ..)]` on a sync function returning `R`, borrowed for
/// one call (the expression is evaluated at every call). Deref coercion lets the expression be
/// a `RetryPolicy`, a reference to one (`&self.policy`), a `LazyLock` of one or an `Arc` of one.
#[inline]
#[must_use]
pub fn sync_policy<R, T, E, K>(
    _: Witness<R, T, E>,
    policy: &RetryPolicy<E, K>,
) -> &RetryPolicy<E, K> {
    policy
}

/// The policy given by `#[retry(policy = ..)]` on an async function returning `R`, borrowed
/// for one call.
#[inline]
#[must_use]
pub fn async_policy<R, T, E, K>(
    _: Witness<R, T, E>,
    policy: &AsyncRetryPolicy<E, K>,
) -> &AsyncRetryPolicy<E, K> {
    policy
}

/// An error type that a circuit breaker's rejection converts into: `From<CircuitOpen>`, under
/// a name whose unmet bound says what to do.
#[diagnostic::on_unimplemented(
    message = "`circuit_breaker` needs `{Self}` to implement `From<reflexio::CircuitOpen>`",
    label = "`{Self}` does not implement `From<CircuitOpen>`",
    note = "while the circuit is open, calls fail fast with a `CircuitOpen` converted into the function's error type: implement `From<reflexio::CircuitOpen> for {Self}` (such as a variant holding it)"
)]
pub trait FromCircuitOpen: From<CircuitOpen> {}

// `do_not_recommend`: an error type without `From<CircuitOpen>` is reported as lacking this
// trait, with the message above, not as lacking `From` with rustc's generic one.
#[diagnostic::do_not_recommend]
impl<E: From<CircuitOpen>> FromCircuitOpen for E {}

/// An error type that a timed-out attempt converts into: `From<AttemptTimedOut>`, under a name
/// whose unmet bound says what to do.
#[diagnostic::on_unimplemented(
    message = "`attempt_timeout` needs `{Self}` to implement `From<reflexio::AttemptTimedOut>`",
    label = "`{Self}` does not implement `From<AttemptTimedOut>`",
    note = "an attempt that times out fails with an `AttemptTimedOut` converted into the function's error type: implement `From<reflexio::AttemptTimedOut> for {Self}` (such as a variant holding it)"
)]
pub trait FromAttemptTimedOut: From<AttemptTimedOut> {}

#[diagnostic::do_not_recommend]
impl<E: From<AttemptTimedOut>> FromAttemptTimedOut for E {}

/// `builder.circuit_breaker(breaker)` for `#[retry(circuit_breaker = ..)]`: the bound is checked
/// here, once, with [`FromCircuitOpen`]'s message, at the key's expression.
pub fn circuit_breaker<Ret, T, E, C, K, R>(
    _: Witness<Ret, T, E>,
    builder: PolicyBuilder<E, C, K, R>,
    breaker: CircuitBreaker,
) -> PolicyBuilder<E, C, K, R>
where
    E: FromCircuitOpen,
{
    builder.circuit_breaker(breaker)
}

/// `builder.attempt_timeout(timeout)` for `#[retry(attempt_timeout = ..)]`, checked as
/// [`circuit_breaker`] is.
pub fn attempt_timeout<Ret, T, E, C, R>(
    _: Witness<Ret, T, E>,
    builder: PolicyBuilder<E, C, NonBlocking, R>,
    timeout: Duration,
) -> PolicyBuilder<E, C, NonBlocking, R>
where
    E: FromAttemptTimedOut,
{
    builder.attempt_timeout(timeout)
}

/// `builder` with the classifier given by `#[retry(classifier = ..)]`, behind a trait object:
/// the bound is checked here, once, so a classifier of the wrong error type is one error at the
/// expression (and not a second one at `build()`).
pub fn classifier<Ret, T, E, C, K, R>(
    _: Witness<Ret, T, E>,
    builder: PolicyBuilder<E, crate::DefaultClassifier, K, R>,
    classifier: C,
) -> PolicyBuilder<E, ErasedClassifier<E>, K, R>
where
    C: Classifier<E> + Send + Sync + 'static,
    E: 'static,
{
    shared(builder, Arc::new(classifier))
}

/// `builder` classifying with `classifier`, kept as it is by the policy (one dynamic call per
/// classification, not two).
fn shared<E: 'static, K, R>(
    builder: PolicyBuilder<E, crate::DefaultClassifier, K, R>,
    classifier: Arc<dyn Classifier<E> + Send + Sync>,
) -> PolicyBuilder<E, ErasedClassifier<E>, K, R> {
    let mut builder = builder.classifier(ErasedClassifier(classifier.clone()));
    builder.shared = Some(classifier);
    builder
}

/// An error type that a `#[retry]` function without `classifier = ..` classifies with its own
/// [`Classify`](crate::Classify): its unmet bound gives the fixes in the attribute's terms
/// (`classifier = ..`, where `Classify`'s own message shows the builder's `.classifier(..)`),
/// without rustc's list of every type that implements `Classify`.
#[diagnostic::on_unimplemented(
    message = "`#[retry]` cannot classify `{Self}`: it does not implement `Classify`",
    label = "`{Self}` does not know its error class",
    note = "add `#[derive(reflexio::Classify)]` to `{Self}`, implement `reflexio::Classify` for it, or give `#[retry]` a classifier: `classifier = |e: &{Self}| ErrorClass::Transient`"
)]
pub trait ClassifiedByDefault: crate::Classify {}

#[diagnostic::do_not_recommend]
impl<E: crate::Classify> ClassifiedByDefault for E {}

/// `builder` with the default classifier, for a function with no `classifier = ..`: the
/// error's own [`Classify`](crate::Classify). Checked here, so an error type that does not
/// implement it is one error ([`ClassifiedByDefault`]'s) at the function's return type.
pub fn classify_self<Ret, T, E, K, R>(
    _: Witness<Ret, T, E>,
    builder: PolicyBuilder<E, crate::DefaultClassifier, K, R>,
) -> PolicyBuilder<E, ErasedClassifier<E>, K, R>
where
    E: ClassifiedByDefault + 'static,
{
    shared(builder, Arc::new(crate::DefaultClassifier))
}

/// A classifier behind a trait object, from [`classifier`].
pub struct ErasedClassifier<E>(Arc<dyn Classifier<E> + Send + Sync>);

impl<E> fmt::Debug for ErasedClassifier<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ErasedClassifier")
    }
}

impl<E> Classifier<E> for ErasedClassifier<E> {
    #[inline]
    fn classify(&self, error: &E) -> Classification {
        self.0.classify(error)
    }
}

/// Unwraps the result of `build()` for the policy of the function `function`.
///
/// # Panics
///
/// If the configuration is invalid. `#[retry]` checks every literal at compile time, so only a
/// setting that can be checked at run time alone gets here (a strategy whose parameters its
/// `validate()` rejects, for example).
#[track_caller]
pub fn built<P>(result: Result<P, ConfigError>, function: &str) -> P {
    match result {
        Ok(policy) => policy,
        Err(error) => panic!("invalid `#[retry]` configuration on `{function}`: {error}"),
    }
}

/// Retries a sync `#[retry]` function's body (`op`) under `policy`.
///
/// The bound `F: FnMut() -> R` is what makes rustc report a body that moves an argument out as
/// E0507 ("cannot move out of `x`, a captured variable in an `FnMut` closure") at the user's code.
/// The expansion requires it first, of a function of its own spanned at `#[retry]`, so that
/// rustc's help about it points at the attribute rather than here.
#[inline]
pub fn retry_sync<R, T, E, K, F>(policy: &RetryPolicy<E, K>, w: Witness<R, T, E>, mut op: F) -> R
where
    E: fmt::Debug,
    K: OkClassifier<T>,
    F: FnMut() -> R,
{
    // `move`: a closure borrowing the witness would have it stored in memory, by every caller.
    (w.from)(policy.call(move || (w.into)(op())))
}

/// Starts a call of an async `#[retry]` function. The loop itself is generated inline in the
/// function: a generic async driver taking a closure would make the future not `Send`
/// (rust-lang/rust#138207). It drives the policy's [`Call`] state: on a lean policy (no
/// breaker, budget or hook) a success costs the attempt and one check of the `Ok` rule, and a
/// failure makes only the engine's counts.
#[inline]
#[must_use]
pub fn start_async<R, T, E, K>(
    policy: &AsyncRetryPolicy<E, K>,
    _: Witness<R, T, E>,
) -> AsyncCall<'_, E, T, K> {
    policy.start_call()
}

/// The state of one call of an async `#[retry]` function: the policy's own [`Call`].
pub type AsyncCall<'p, E, T, K> = Call<'p, E, T, K, Boxed>;

/// Feeds the result of one attempt of an async `#[retry]` function.
#[allow(
    clippy::inline_always,
    reason = "`Call::record`'s success path, inlined"
)]
#[inline(always)]
pub fn record<R, T, E, K>(
    call: &mut AsyncCall<'_, E, T, K>,
    w: Witness<R, T, E>,
    result: R,
) -> Next<T, E>
where
    E: fmt::Debug,
    K: OkClassifier<T>,
{
    call.record((w.into)(result))
}

/// The call of an async `#[retry]` function whose body only shares its arguments (none is
/// `&mut` or bound `mut`): each attempt is `op`'s future, its output turned into a `Result` by
/// `into` (a closure without captures, which names the function's return type), driven by
/// [`AsyncRetryPolicy::call`]'s own future: 145 → 123 instructions a success against the loop
/// generated in the function, which a body that mutates an argument needs (a closure cannot
/// lend it to each attempt's future in turn).
///
/// # Errors
///
/// The error `call` returns.
#[inline]
pub fn call_async<T, E, K, F, Fut, I>(
    policy: &AsyncRetryPolicy<E, K>,
    op: F,
    into: I,
) -> impl Future<Output = Result<T, E>> + use<'_, T, E, K, F, Fut, I>
where
    E: fmt::Debug,
    K: OkClassifier<T>,
    F: FnMut() -> Fut,
    Fut: Future,
    I: Fn(Fut::Output) -> Result<T, E> + Copy,
{
    policy.call(as_results(op, into))
}

/// `op`, whose futures' outputs `into` turns into `Result`s.
#[inline]
fn as_results<F, Fut, I>(mut op: F, into: I) -> impl FnMut() -> AsResult<Fut, I>
where
    F: FnMut() -> Fut,
    I: Copy,
{
    move || AsResult {
        attempt: op(),
        into,
    }
}

/// [`call_async`] for a function whose policy is built from its keys and kept in `cell`
/// (`init` builds it on the first call): once the cell holds a policy whose calls start plain
/// (lean, no attempt timeout, no deadline counted from the start), each call runs its first
/// attempt before looking the policy up, and a success returns at once, with no lookup (its
/// type check is a dynamic call); see `CachedCalling`.
///
/// # Errors
///
/// The error `call` returns.
///
/// # Panics
///
/// When first polled, if the keys make an invalid policy (see [`built`]): at every call, as
/// long as the policy could not be built.
#[inline]
pub fn call_async_cached<R, T, E, G, F, Fut, I>(
    cell: &'static PolicyCell,
    w: Witness<R, T, E>,
    init: G,
    op: F,
    into: I,
) -> impl Future<Output = Result<T, E>> + use<R, T, E, G, F, Fut, I>
where
    E: fmt::Debug + 'static,
    AsyncRetryPolicy<E>: Send + Sync,
    G: FnOnce(Witness<R, T, E>) -> AsyncRetryPolicy<E>,
    F: FnMut() -> Fut,
    Fut: Future,
    I: Fn(Fut::Output) -> Result<T, E> + Copy,
{
    CachedCalling::new(cell, move || init(w), as_results(op, into))
}

pin_project_lite::pin_project! {
    /// An attempt of an async `#[retry]` function, its output turned into a `Result` by `into`.
    struct AsResult<Fut, I> {
        #[pin]
        attempt: Fut,
        into: I,
    }
}

impl<Fut, I, T, E> Future for AsResult<Fut, I>
where
    Fut: Future,
    I: Fn(Fut::Output) -> Result<T, E>,
{
    type Output = Result<T, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T, E>> {
        let this = self.project();
        this.attempt.poll(cx).map(|out| (this.into)(out))
    }
}

/// `#[retry(hedge_after = ..)]`'s hedging setting: after a fixed delay, at most 2 in flight.
///
/// # Panics
///
/// Never: `Hedging::after`'s other settings keep their valid defaults.
#[must_use]
pub fn hedge_after(delay: Duration) -> crate::hedging::Hedging {
    crate::hedging::Hedging::after(delay)
        .build()
        .expect("a fixed delay with the default `max_in_flight` is valid")
}

/// The call of an async `#[retry(idempotent = true)]` function: its body, as a closure's
/// async block, through [`AsyncRetryPolicy::call_idempotent`] (hedged when the policy hedges).
///
/// # Errors
///
/// The error `call_idempotent` returns.
pub async fn call_idempotent<R, T, E, K, F, Fut>(
    policy: &AsyncRetryPolicy<E, K>,
    w: Witness<R, T, E>,
    mut op: F,
) -> Result<T, E>
where
    E: fmt::Debug,
    K: OkClassifier<T>,
    F: FnMut() -> Fut,
    Fut: Future<Output = R>,
{
    policy
        .call_idempotent(|| {
            let attempt = op();
            async move { (w.into)(attempt.await) }
        })
        .await
}

/// An attempt's result of an async `#[retry]` function, as a `Result` (see [`call_async`]).
///
/// # Errors
///
/// The attempt's own error.
#[inline]
pub fn attempt_result<R, T, E>(w: Witness<R, T, E>, result: R) -> Result<T, E> {
    (w.into)(result)
}

/// The final result of an async `#[retry]` function.
#[inline]
pub fn done<R, T, E>(w: Witness<R, T, E>, result: Result<T, E>) -> R {
    (w.from)(result)
}

/// How a `#[retry]` function's policy sees its error as a [`std::error::Error`], picked at
/// compile time from what the concrete error type implements (autoref specialisation: the
/// generated code calls `error_chain()` on `&&&ErrorChainProbe::<E>::new()`, and the first
/// impl whose bound holds wins): `Error` itself, else `AsRef<dyn Error>` (`anyhow::Error`,
/// `eyre::Report`), else nothing. Log lines then show the error's message and its sources
/// instead of its `Debug`.
pub struct ErrorChainProbe<E: ?Sized>(core::marker::PhantomData<fn(&E)>);

impl<E: ?Sized> ErrorChainProbe<E> {
    /// The probe of `E`.
    #[must_use]
    pub const fn new() -> Self {
        ErrorChainProbe(core::marker::PhantomData)
    }
}

impl<E: ?Sized> Default for ErrorChainProbe<E> {
    fn default() -> Self {
        ErrorChainProbe::new()
    }
}

impl<E: ?Sized> fmt::Debug for ErrorChainProbe<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ErrorChainProbe")
    }
}

/// The [`ErrorChainProbe`] of the error type of a function returning `R`.
#[must_use]
pub const fn error_chain_probe<R, T, E>(_: Witness<R, T, E>) -> ErrorChainProbe<E> {
    ErrorChainProbe::new()
}

/// The view of an error as a `std::error::Error`.
pub type AsStdError<E> = fn(&E) -> &(dyn std::error::Error + 'static);

/// The traits of [`ErrorChainProbe`], glob-imported by the generated code.
pub mod error_chain_kinds {
    use super::{AsStdError, ErrorChainProbe};

    /// `E: Error`: the error itself.
    pub trait ViaError<E> {
        /// The view.
        fn error_chain(&self) -> Option<AsStdError<E>>;
    }

    impl<E: std::error::Error + 'static> ViaError<E> for &&ErrorChainProbe<E> {
        fn error_chain(&self) -> Option<AsStdError<E>> {
            Some(|e| e)
        }
    }

    /// `E: AsRef<dyn Error>` (`anyhow::Error`): what it holds.
    pub trait ViaAsRef<E> {
        /// The view.
        fn error_chain(&self) -> Option<AsStdError<E>>;
    }

    impl<E> ViaAsRef<E> for &ErrorChainProbe<E>
    where
        E: AsRef<dyn std::error::Error + Send + Sync + 'static>,
    {
        fn error_chain(&self) -> Option<AsStdError<E>> {
            Some(|e| e.as_ref())
        }
    }

    /// Anything else: no view (events show the error's `Debug`).
    pub trait ViaNothing<E> {
        /// No view.
        fn error_chain(&self) -> Option<AsStdError<E>>;
    }

    impl<E> ViaNothing<E> for ErrorChainProbe<E> {
        fn error_chain(&self) -> Option<AsStdError<E>> {
            None
        }
    }
}

/// `builder` with the error view `chain` (see [`ErrorChainProbe`]), when there is one.
pub fn error_chain<E, C, K, R>(
    builder: PolicyBuilder<E, C, K, R>,
    chain: Option<AsStdError<E>>,
) -> PolicyBuilder<E, C, K, R> {
    match chain {
        Some(view) => builder.error_chain(view),
        None => builder,
    }
}

/// The type of a `#[retry_after]` field: `Duration` or `Option<Duration>`.
#[diagnostic::on_unimplemented(
    message = "a `#[retry_after]` field must be a `Duration` or an `Option<Duration>`, found `{Self}`",
    label = "expected `Duration` or `Option<Duration>`",
    note = "`#[retry_after]` marks the field holding how long the server asked to wait"
)]
pub trait RetryAfterField {
    /// The delay, if any.
    fn retry_after(&self) -> Option<Duration>;
}

impl RetryAfterField for Duration {
    #[inline]
    fn retry_after(&self) -> Option<Duration> {
        Some(*self)
    }
}

impl RetryAfterField for Option<Duration> {
    #[inline]
    fn retry_after(&self) -> Option<Duration> {
        *self
    }
}

/// Sets the `retry_after` of `classification` from a `#[retry_after]` field, when it holds one.
#[inline]
#[must_use]
pub fn with_retry_after<F>(classification: Classification, field: &F) -> Classification
where
    F: RetryAfterField + ?Sized,
{
    match field.retry_after() {
        Some(delay) => classification.with_retry_after(delay),
        None => classification,
    }
}

/// Classifies a `#[class(status = field)]` field, an HTTP status code.
#[inline]
#[must_use]
pub fn status_classification(status: &u16) -> Classification {
    Classification::new(crate::http::classify_status(*status)).with_status(*status)
}

/// Classifies a `#[class(from_source)]` field through its own `Classify`.
#[inline]
#[must_use]
pub fn source_classification<S>(source: &S) -> Classification
where
    S: crate::Classify + ?Sized,
{
    source.classification()
}

type Erased = &'static (dyn Any + Send + Sync);

/// Retries the body (`op`) of a sync `#[retry]` function whose policy comes from its keys: the
/// policy `init` builds on the first call, kept in `cell`.
///
/// Once the cell holds a policy whose calls need nothing before their first attempt (lean,
/// with no deadline counted from the start: `PolicyCell::runs_first_attempts`), every call
/// runs its first attempt before looking the policy up, and a success returns at once: one
/// load and a comparison more than a bare call. Only a failure looks the policy up (out of
/// line) and goes on as [`RetryPolicy::call`] would have from that outcome. The first call,
/// any call of another policy, and every call of a function whose policy is not lean look
/// the policy up first and go through [`retry_sync`]: the policy is built, and an invalid
/// configuration panics, on the first call, whatever its outcome.
///
/// A function's keys give no `Ok` rule (only `policy = ..` can), hence [`AcceptOk`]: every
/// `Ok` is a success.
#[inline]
pub fn retry_sync_cached<R, T, E, I, F>(
    cell: &'static PolicyCell,
    w: Witness<R, T, E>,
    init: I,
    mut op: F,
) -> R
where
    E: fmt::Debug + 'static,
    RetryPolicy<E>: Send + Sync,
    I: FnOnce(Witness<R, T, E>) -> RetryPolicy<E>,
    F: FnMut() -> R,
{
    if cell.runs_first_attempts::<RetryPolicy<E>>() {
        let first = (w.into)(op());
        return match first_outcome(&AcceptOk, &first) {
            ControlFlow::Break(()) => (w.from)(first),
            ControlFlow::Continue(_) => after_first(cell, w, init, first, op),
        };
    }
    let policy = cell.lookup(move || init(w), RetryPolicy::first_attempt_needs_nothing);
    retry_sync(policy, w, op)
}

/// The rest of a call of [`retry_sync_cached`] whose first attempt, run before the policy was
/// looked up, failed. Everything it needs is passed by value: a closure borrowing the caller's
/// witness would have it stored in memory before every first attempt.
#[cold]
#[inline(never)]
fn after_first<R, T, E, I, F>(
    cell: &'static PolicyCell,
    w: Witness<R, T, E>,
    init: I,
    first: Result<T, E>,
    mut op: F,
) -> R
where
    E: 'static,
    RetryPolicy<E>: Send + Sync,
    I: FnOnce(Witness<R, T, E>) -> RetryPolicy<E>,
    F: FnMut() -> R,
{
    // Built already (`init` is not called): the cell said it holds this policy.
    let policy = cell.lookup(move || init(w), RetryPolicy::first_attempt_needs_nothing);
    (w.from)(policy.call_after_first(first, move || (w.into)(op())))
}

/// The first policy a cell holds.
struct First {
    policy: Erased,
    /// The policy's type when its calls need nothing before their first attempt (see
    /// [`retry_sync_cached`]), else [`NotFirst`]'s: compared with a constant, where the type of
    /// `policy` is a dynamic call.
    runs_first_attempts: TypeId,
}

/// The type of no policy: the mark of a first policy whose calls need it before their first
/// attempt.
enum NotFirst {}

/// The lazily built policy of one `#[retry]` function, in a `static`.
///
/// Typed by the policy's type at run time, not in the `static`'s type: a `static` cannot name
/// the type of a generic function's error, nor an `impl Trait` in its return type, while the
/// function body can infer it. A function has one policy type in all but the rarest cases
/// (a generic function whose error type is a type parameter), which the slow path covers:
/// one policy per error type, each built once and kept for the life of the program. The
/// first few types past the first are found without a lock (`OTHER_SLOTS`); any more,
/// under one.
pub struct PolicyCell {
    first: OnceLock<First>,
    /// The policies of other types, filled in order (under `overflow`'s lock), read without
    /// a lock.
    others: [OnceLock<Erased>; OTHER_SLOTS],
    /// The policies of the types past those, and the lock under which any policy past the
    /// first is built.
    overflow: Mutex<Vec<Erased>>,
}

/// How many policy types past the first a [`PolicyCell`] finds without a lock.
const OTHER_SLOTS: usize = 7;

impl fmt::Debug for PolicyCell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicyCell")
            .field("initialized", &self.first.get().is_some())
            .finish_non_exhaustive()
    }
}

impl Default for PolicyCell {
    fn default() -> Self {
        PolicyCell::new()
    }
}

impl PolicyCell {
    /// An empty cell.
    #[must_use]
    pub const fn new() -> Self {
        PolicyCell {
            first: OnceLock::new(),
            others: [const { OnceLock::new() }; OTHER_SLOTS],
            overflow: Mutex::new(Vec::new()),
        }
    }

    /// The policy of type `P`, built by `init` on first use.
    ///
    /// Every call but the first is a load, a check that the cell is set, and the downcast's
    /// type check: everything else is out of line.
    ///
    /// # Panics
    ///
    /// If `init` panics (an invalid configuration, see [`built`]); the next call tries again.
    #[inline]
    pub fn get_or_init<P, F>(&'static self, init: F) -> &'static P
    where
        P: Any + Send + Sync,
        F: FnOnce() -> P,
    {
        self.lookup(init, |_| false)
    }

    /// Whether the cell's first policy is a `P` whose calls need nothing before their first
    /// attempt: one load of the cell's state and a comparison with a constant.
    #[inline]
    fn runs_first_attempts<P: Any>(&self) -> bool {
        self.first
            .get()
            .is_some_and(|first| first.runs_first_attempts == TypeId::of::<P>())
    }

    /// [`get_or_init`](PolicyCell::get_or_init), recording whether a first policy's calls
    /// need nothing before their first attempt (`first_attempt_alone`).
    #[inline]
    fn lookup<P, F>(&'static self, init: F, first_attempt_alone: fn(&P) -> bool) -> &'static P
    where
        P: Any + Send + Sync,
        F: FnOnce() -> P,
    {
        if let Some(policy) = self
            .first
            .get()
            .and_then(|first| first.policy.downcast_ref::<P>())
        {
            return policy;
        }
        self.init(init, first_attempt_alone)
    }

    /// The first call, or a call with another policy type than the first's.
    #[cold]
    #[inline(never)]
    fn init<P, F>(&'static self, init: F, first_attempt_alone: fn(&P) -> bool) -> &'static P
    where
        P: Any + Send + Sync,
        F: FnOnce() -> P,
    {
        let mut init = Some(init);
        let first = self.first.get_or_init(|| {
            let make = init.take().expect("`init` is only taken once");
            let policy: &'static P = Box::leak(Box::new(make()));
            First {
                policy,
                runs_first_attempts: if first_attempt_alone(policy) {
                    TypeId::of::<P>()
                } else {
                    TypeId::of::<NotFirst>()
                },
            }
        });
        if let Some(policy) = first.policy.downcast_ref::<P>() {
            return policy;
        }
        if let Some(policy) = self.other::<P>() {
            return policy;
        }
        let mut overflow = self.overflow.lock().unwrap_or_else(PoisonError::into_inner);
        // Built by another thread while this one waited?
        if let Some(policy) = self
            .other::<P>()
            .or_else(|| overflow.iter().find_map(|other| other.downcast_ref::<P>()))
        {
            return policy;
        }
        // `init` was not consumed: `first` was already set, for another type.
        let make = init.expect("`init` is unused when `first` holds another type");
        let policy: &'static P = Box::leak(Box::new(make()));
        // Set only under the lock, in order: the first empty slot takes it.
        match self.others.iter().find(|slot| slot.get().is_none()) {
            Some(slot) => {
                let _ = slot.set(policy);
            }
            None => overflow.push(policy),
        }
        policy
    }

    /// The policy of type `P` among the slots past the first, read without a lock.
    fn other<P: Any>(&self) -> Option<&'static P> {
        self.others
            .iter()
            .map_while(OnceLock::get)
            .find_map(|other| other.downcast_ref::<P>())
    }
}

pin_project_lite::pin_project! {
    /// The future of a call of an async `#[retry]` function ([`call_async_cached`]): the
    /// policy's own call future, on the policy in the function's cell, which it looks up only
    /// when the call needs it. Once the cell holds a policy whose calls start plain (see
    /// `Config::starts_plain`), the first attempt runs before the lookup and a success returns
    /// at once: the lookup's type check (a dynamic call) is made only after a failure, as a
    /// sync function's ([`retry_sync_cached`]). The first call, and every call of a policy
    /// that does not start plain, looks the policy up first: the policy is built, and an
    /// invalid configuration panics, on the first call, whatever its outcome.
    ///
    /// The closures are taken out of their `Option`s, where a replacement of the whole
    /// future would move it (hundreds of bytes, out of line) to hand them over.
    #[project = CachedProj]
    enum CachedCalling<E: 'static, T, G, F, Fut> {
        /// Not polled yet.
        Start { cell: &'static PolicyCell, init: Option<G>, op: Option<F> },
        /// The first attempt in flight, the policy not looked up.
        First {
            #[pin]
            attempt: Fut,
            cell: &'static PolicyCell,
            init: Option<G>,
            op: Option<F>,
        },
        /// The call on the policy's own future.
        Rest { #[pin] calling: Calling<'static, E, T, AcceptOk, F, Fut, AsIs> },
        /// Returned its output.
        Done,
    }
}

impl<E: 'static, T, G, F, Fut> CachedCalling<E, T, G, F, Fut> {
    /// The call of `op` on the policy in `cell`, which `init` builds on first use.
    #[inline]
    fn new(cell: &'static PolicyCell, init: G, op: F) -> Self {
        CachedCalling::Start {
            cell,
            init: Some(init),
            op: Some(op),
        }
    }
}

/// The closures of a call not started, or of a first attempt in flight: taken, they are gone
/// from the future (a poll after a panic in user code then panics, rather than start the call
/// over).
fn take<G, F>(init: &mut Option<G>, op: &mut Option<F>) -> (G, F) {
    match (init.take(), op.take()) {
        (Some(init), Some(op)) => (init, op),
        _ => panic!("a reflexio call's future polled after a panic"),
    }
}

impl<E, T, G, F, Fut> CachedCalling<E, T, G, F, Fut>
where
    E: fmt::Debug + 'static,
    AsyncRetryPolicy<E>: Send + Sync,
    G: FnOnce() -> AsyncRetryPolicy<E>,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    /// The call on the policy's own future, from the start (the policy looked up first, built
    /// on the first call), or from its first attempt's failure `after_first`.
    #[inline(never)]
    fn rest(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        cell: &'static PolicyCell,
        init: G,
        op: F,
        after_first: Option<(Result<T, E>, Option<Classification>)>,
    ) -> Poll<Result<T, E>> {
        let policy = cell.lookup(init, AsyncRetryPolicy::starts_plain);
        self.set(CachedCalling::Rest {
            calling: Calling::new(&policy.config, &policy.ok_rule, op),
        });
        let CachedProj::Rest { calling } = self.project() else {
            unreachable!("just set")
        };
        match after_first {
            Some((outcome, forced)) => calling.poll_after_first(cx, outcome, forced),
            None => calling.poll(cx),
        }
    }
}

impl<E, T, G, F, Fut> Future for CachedCalling<E, T, G, F, Fut>
where
    E: fmt::Debug + 'static,
    AsyncRetryPolicy<E>: Send + Sync,
    G: FnOnce() -> AsyncRetryPolicy<E>,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    type Output = Result<T, E>;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T, E>> {
        if let CachedProj::Start { cell, init, op } = self.as_mut().project() {
            let cell = *cell;
            let (init, mut op) = take(init, op);
            if !cell.runs_first_attempts::<AsyncRetryPolicy<E>>() {
                return self.rest(cx, cell, init, op, None);
            }
            let attempt = op();
            self.set(CachedCalling::First {
                attempt,
                cell,
                init: Some(init),
                op: Some(op),
            });
        }
        match self.as_mut().project() {
            CachedProj::First {
                attempt,
                cell,
                init,
                op,
            } => {
                let Poll::Ready(outcome) = attempt.poll(cx) else {
                    return Poll::Pending;
                };
                let cell = *cell;
                let (init, op) = take(init, op);
                // The attempt is dropped before its outcome is recorded.
                self.set(CachedCalling::Done);
                match first_outcome(&AcceptOk, &outcome) {
                    ControlFlow::Break(()) => Poll::Ready(outcome),
                    ControlFlow::Continue(forced) => {
                        self.rest(cx, cell, init, op, Some((outcome, forced)))
                    }
                }
            }
            CachedProj::Rest { calling } => calling.poll(cx),
            CachedProj::Start { .. } => unreachable!("left above"),
            CachedProj::Done => panic!("a reflexio call's future polled after it completed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static CELL: PolicyCell = PolicyCell::new();

    #[test]
    fn a_cell_builds_once_per_type() {
        let mut builds = 0;
        let a: &u32 = CELL.get_or_init(|| {
            builds += 1;
            1
        });
        let b: &u32 = CELL.get_or_init(|| {
            builds += 1;
            2
        });
        assert!(core::ptr::eq(a, b));
        let c: &String = CELL.get_or_init(|| {
            builds += 1;
            "three".to_owned()
        });
        let d: &String = CELL.get_or_init(|| {
            builds += 1;
            "four".to_owned()
        });
        assert_eq!(
            (*a, *b, c.as_str(), d.as_str(), builds),
            (1, 1, "three", "three", 2)
        );
    }

    fn policy(deadline: bool, hook: bool) -> AsyncRetryPolicy<crate::TransientError> {
        let builder = AsyncRetryPolicy::builder()
            .strategy(crate::strategies::no_delay())
            .max_attempts(2);
        let builder = if deadline {
            builder
        } else {
            builder.no_deadline()
        };
        let builder = if hook {
            builder.on_event(|_| {})
        } else {
            builder
        };
        builder.build().unwrap()
    }

    #[test]
    fn async_calls_start_their_state_on_the_first_failure() {
        let w = witness::<Result<u32, crate::TransientError>, _, _>();
        let fails = || Err(crate::TransientError::new("down"));
        // Lean policies, with or without a deadline: no state until the first attempt fails,
        // then only the engine's counts.
        for lean in [policy(false, false), policy(true, false)] {
            let mut call = start_async(&lean, w);
            assert_eq!(format!("{call:?}"), "Call(Fresh)");
            assert!(matches!(call.begin(), Next::Attempt));
            assert!(matches!(record(&mut call, w, Ok(7)), Next::Done(Ok(7))));
            let mut call = start_async(&lean, w);
            assert!(matches!(call.begin(), Next::Attempt));
            assert!(matches!(record(&mut call, w, fails()), Next::Sleep(_)));
            assert!(format!("{call:?}").starts_with("Call(Lean)(Engine"));
            assert!(matches!(call.resume(), Next::Attempt));
            assert!(matches!(record(&mut call, w, fails()), Next::Done(Err(_))));
        }
        // A hook needs the full state (its events), made up front.
        let observed = policy(false, true);
        let call = start_async(&observed, w);
        assert!(format!("{call:?}").starts_with("Call(Full)"));
    }

    type Builder = RetryPolicyBuilder<crate::TransientError>;
    type W = Witness<Result<u32, crate::TransientError>, u32, crate::TransientError>;

    /// The `init` of `retry_sync_cached`: the default builder, as `keys` set it.
    fn sync_policy(
        keys: Box<dyn FnOnce(Builder) -> Builder>,
    ) -> impl FnOnce(W) -> RetryPolicy<crate::TransientError> {
        move |w| built(keys(sync_builder(w)).build(), "f")
    }

    /// Which cells run a call's first attempt before the lookup: those whose first policy is
    /// a sync one, lean, with no deadline counted from the start, asked for as that type.
    #[test]
    fn a_cell_runs_first_attempts_only_for_its_first_lean_policy() {
        type Policy = RetryPolicy<crate::TransientError>;
        let w = witness::<Result<u32, crate::TransientError>, _, _>();
        let op = || Ok(1);
        let cell = || -> &'static PolicyCell { Box::leak(Box::new(PolicyCell::new())) };
        let lean = [
            sync_policy(Box::new(|b| b)),
            sync_policy(Box::new(PolicyBuilder::no_deadline)),
            sync_policy(Box::new(|b| {
                b.deadline_after_first_failure(Duration::from_secs(1))
            })),
        ];
        for init in lean {
            let cell = cell();
            assert!(
                !cell.runs_first_attempts::<Policy>(),
                "not before the first call"
            );
            assert_eq!(retry_sync_cached(cell, w, init, op), Ok(1));
            assert!(cell.runs_first_attempts::<Policy>());
            assert!(!cell.runs_first_attempts::<RetryPolicy<std::io::Error>>());
            assert!(!cell.runs_first_attempts::<AsyncRetryPolicy<crate::TransientError>>());
        }
        let budget = crate::RetryBudget::ratio(10.0).build().unwrap();
        let not_lean = [
            sync_policy(Box::new(|b| b.deadline(Duration::from_secs(1)))),
            sync_policy(Box::new(|b| b.on_event(|_| {}))),
            sync_policy(Box::new(move |b| b.budget(budget))),
        ];
        for init in not_lean {
            let cell = cell();
            assert_eq!(retry_sync_cached(cell, w, init, op), Ok(1));
            assert!(!cell.runs_first_attempts::<Policy>());
        }
        // Through `get_or_init` (async functions, tests): never.
        let cell = cell();
        let _: &Policy = cell.get_or_init(|| sync_policy(Box::new(|b| b))(w));
        assert!(!cell.runs_first_attempts::<Policy>());
    }

    #[test]
    fn a_cell_builds_again_after_a_panicking_init() {
        static CELL: PolicyCell = PolicyCell::new();
        let failed = std::panic::catch_unwind(|| {
            let _: &u8 = CELL.get_or_init(|| panic!("invalid configuration"));
        });
        assert!(failed.is_err());
        let built: &u8 = CELL.get_or_init(|| 5);
        let again: &u8 = CELL.get_or_init(|| 6);
        assert_eq!((*built, *again), (5, 5));
    }

    #[test]
    fn built_names_the_function_in_its_panic() {
        let err = RetryPolicy::<std::io::Error>::builder()
            .max_attempts(0)
            .build()
            .map(drop);
        let panic = std::panic::catch_unwind(|| built(err, "fetch")).unwrap_err();
        let message = panic.downcast_ref::<String>().unwrap();
        assert!(
            message.starts_with("invalid `#[retry]` configuration on `fetch`: "),
            "{message}"
        );
    }

    #[test]
    fn retry_after_fields() {
        let c = Classification::new(crate::ErrorClass::RateLimit);
        let d = Duration::from_secs(3);
        assert_eq!(with_retry_after(c, &d).retry_after, Some(d));
        assert_eq!(with_retry_after(c, &Some(d)).retry_after, Some(d));
        assert_eq!(with_retry_after(c, &None::<Duration>).retry_after, None);
        assert_eq!(
            status_classification(&503).class,
            crate::ErrorClass::ServerError
        );
    }

    /// `CachedCalling`'s own guard against starting a call over, polled directly (an async
    /// `#[retry]` function's own state machine refuses a poll after a panic before this
    /// future sees it): a panic while the operation makes the first attempt, and a panic in
    /// the classifier after a first attempt that failed, then a poll, make no second attempt.
    #[test]
    fn a_cached_call_polled_after_a_panic_does_not_start_over() {
        use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
        use std::panic::{AssertUnwindSafe, catch_unwind};

        static PANICS: AtomicBool = AtomicBool::new(false);
        #[derive(Debug)]
        struct Down;
        let w = witness::<Result<u32, Down>, _, _>();
        let init = |_| {
            AsyncRetryPolicy::<Down>::builder()
                .classifier(|_: &Down| {
                    assert!(!PANICS.load(Ordering::SeqCst), "the classifier panics");
                    crate::ErrorClass::Transient
                })
                .strategy(crate::strategies::no_delay())
                .build()
                .unwrap()
        };
        let into = |r: Result<u32, Down>| r;
        let cell: &'static PolicyCell = Box::leak(Box::new(PolicyCell::new()));
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let poll_twice = |fut: &mut Pin<&mut dyn Future<Output = Result<u32, Down>>>| {
            let mut cx = Context::from_waker(std::task::Waker::noop());
            let first = catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(&mut cx)));
            let again = catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(&mut cx)));
            (first.is_err(), again.is_err())
        };

        // The policy is built; the cell says its calls start plain.
        let calls = AtomicU32::new(0);
        let op = || {
            calls.fetch_add(1, Ordering::SeqCst);
            core::future::ready(Ok::<u32, Down>(1))
        };
        let mut fut = core::pin::pin!(call_async_cached(cell, w, init, op, into));
        assert!(matches!(fut.as_mut().poll(&mut cx), Poll::Ready(Ok(1))));
        assert!(cell.runs_first_attempts::<AsyncRetryPolicy<Down>>());

        // A panic while the operation makes the first attempt.
        let calls = AtomicU32::new(0);
        let op = || {
            calls.fetch_add(1, Ordering::SeqCst);
            assert!(calls.load(Ordering::SeqCst) > 1, "the operation panics");
            core::future::ready(Ok::<u32, Down>(1))
        };
        let fut = core::pin::pin!(call_async_cached(cell, w, init, op, into));
        let mut fut: Pin<&mut dyn Future<Output = Result<u32, Down>>> = fut;
        assert_eq!(poll_twice(&mut fut), (true, true));
        assert_eq!(calls.load(Ordering::SeqCst), 1, "no second attempt");

        // A panic in the classifier, after the first attempt failed (the policy looked up
        // then, the call going on from that outcome).
        PANICS.store(true, Ordering::SeqCst);
        let calls = AtomicU32::new(0);
        let op = || {
            calls.fetch_add(1, Ordering::SeqCst);
            core::future::ready(Err::<u32, Down>(Down))
        };
        let fut = core::pin::pin!(call_async_cached(cell, w, init, op, into));
        let mut fut: Pin<&mut dyn Future<Output = Result<u32, Down>>> = fut;
        assert_eq!(poll_twice(&mut fut), (true, true));
        PANICS.store(false, Ordering::SeqCst);
        assert_eq!(calls.load(Ordering::SeqCst), 1, "no second attempt");
    }

    /// A cell holding the policies of more types than it has lock-free slots: each built once
    /// (even by threads racing for it), each call given its own type's.
    #[test]
    fn a_cell_keeps_a_policy_per_type_past_its_slots() {
        use core::sync::atomic::{AtomicU32, Ordering};
        static BUILDS: AtomicU32 = AtomicU32::new(0);
        let cell: &'static PolicyCell = Box::leak(Box::new(PolicyCell::new()));
        macro_rules! each_type {
            ($($t:ty = $v:expr),*) => {
                $(
                    let got: &$t = cell.get_or_init(|| {
                        BUILDS.fetch_add(1, Ordering::SeqCst);
                        $v
                    });
                    assert_eq!(*got, $v);
                )*
            };
        }
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..3 {
                        each_type!(
                            u8 = 1,
                            u16 = 2,
                            u32 = 3,
                            u64 = 4,
                            u128 = 5,
                            i8 = -1,
                            i16 = -2,
                            i32 = -3,
                            i64 = -4,
                            i128 = -5,
                            char = 'x'
                        );
                    }
                });
            }
        });
        // 11 types: the first, 7 in the slots, 3 in the overflow.
        assert_eq!(BUILDS.load(Ordering::SeqCst), 11);
        assert_eq!(
            cell.others
                .iter()
                .filter(|slot| slot.get().is_some())
                .count(),
            OTHER_SLOTS
        );
        assert_eq!(cell.overflow.lock().unwrap().len(), 3);
    }
}
