//! Implementation detail of the `reflexio` crate: the `#[retry]` attribute and
//! `#[derive(Classify)]`. Use them through `reflexio` (`use reflexio::retry;`): the code they
//! generate refers to `reflexio`'s hidden API, which this crate is pinned to.
#![doc(test(attr(deny(warnings))))]

mod classify;
mod expand;
mod frozen;
mod parse;

use proc_macro::TokenStream;

/// Retries a function: each call runs the body again, under a retry policy, until it succeeds
/// or the policy stops.
///
/// Works on sync and `async` functions returning a `Result` (or any alias of it, such as
/// `io::Result<T>`): free functions, `&self` / `&mut self` methods, generic functions, `impl
/// Trait` arguments and return types, and `async fn`s in `#[async_trait]` impls. Every error is
/// classified into an [`ErrorClass`](../reflexio/enum.ErrorClass.html), and each class is
/// retried with its own strategy and limits; one event hook reports every decision.
///
/// ```
/// use std::io;
/// use reflexio::retry;
/// use reflexio::strategies::no_delay;
///
/// #[retry(max_attempts = 3, strategy = no_delay())]
/// fn read_config(path: &str) -> io::Result<String> {
///     std::fs::read_to_string(path)
/// }
///
/// // A missing file is `Permanent`: one call, the error is returned as it is.
/// assert_eq!(read_config("/no/such/file").unwrap_err().kind(), io::ErrorKind::NotFound);
/// ```
///
/// # How it runs
///
/// - The policy is built from the keys **once per function**, on its first call, and kept in
///   a `static`: every key is evaluated once for the whole program. So no key can read `self`
///   or an argument (it would keep the first call's for good); for a policy per instance, or
///   one chosen by the arguments, write `policy = &self.policy`, which is evaluated at every
///   call (see [`policy`](#policy-a-policy-per-instance-or-built-elsewhere)).
/// - Each attempt runs the **whole body**. `return` and `?` end the attempt (an `Err` is then
///   classified and maybe retried), not the retrying. The function returns the value, or the
///   last attempt's own error.
/// - Sync functions sleep by blocking the thread; async functions sleep on the policy's async
///   sleeper (tokio's timer by default) and their future is `Send` when the body's is.
/// - The body runs once per attempt, so it **cannot move an argument out**: rustc reports it
///   with E0507 ("cannot move out of `s`, a captured variable in an `FnMut` closure") or, in an
///   async function, E0382 ("value moved here, in previous iteration of loop"), at your code,
///   with a "consider cloning" hint. Borrow the argument, or clone it in the body.
/// - Every literal is checked at compile time. What only the policy's `build()` can check, a
///   strategy whose parameters its own `validate()` rejects (such as
///   `exponential().factor(0.5)`) or a zero `deadline = Duration::ZERO`, makes the first call
///   **panic** with ``invalid `#[retry]` configuration on `function_name`: ..``.
/// - The function's error type must be `Debug` (it is reported in events) and `'static` (the
///   policy lives in a `static`).
/// - A generic function (or a method of a generic type) keeps one policy per policy type,
///   `RetryPolicy<E, _>`, not one per instantiation: a key that depends on a type parameter
///   without changing the error type (`strategy = T::STRATEGY`) is evaluated for the first
///   instantiation only. Use `policy = ..` there too.
///
/// # Keys
///
/// Every key is optional. Without any, the policy has the builder's defaults: the error type's
/// own [`Classify`](../reflexio/trait.Classify.html), `decorrelated_jitter().max(5 s)`, 6
/// attempts, a deadline 60 s after the first failure, 2 retries of `Unknown` errors, and the
/// function's name as the operation.
///
/// | key | value | builder call |
/// |---|---|---|
/// | `classifier` | a `Classifier` of the error type: a closure `\|e: &E\| ErrorClass::..` | `.classifier(..)` |
/// | `strategy` | a `Strategy`, for every class without its own | `.strategy(..)` |
/// | `transient`, `rate_limit`, `server_error`, `concurrency`, `unknown` | a `Strategy` for that class | `.strategy_for(ErrorClass::.., ..)` |
/// | `max_attempts` | an integer literal, at least 1: every call, the first included | `.max_attempts(n)` |
/// | `max_unknown_retries` | an integer literal, or `None` | `.max_unknown_retries(Some(n))` |
/// | `deadline` | a `Duration` (`Duration::from_secs(30)`, a `const`), a duration literal (`"250ms"`, `"30s"`, `"1.5s"`, `"2m"`, `"1h"`), or `None` | `.deadline(..)` / `.no_deadline()` |
/// | `on_event` | a hook `Fn(&RetryEvent)`: a closure or a function | `.on_event(..)` |
/// | `operation` | a string literal; the function's name by default | `.operation(..)` |
/// | `seed` | a `u64`, for reproducible jitter | `.seed(..)` |
/// | `clock` | a `VirtualClock`, for tests: sleeps are instant and recorded | `.clock(..)` |
/// | `budget` | a `RetryBudget`, shared with other calls and policies | `.budget(..)` |
/// | `circuit_breaker` | a `CircuitBreaker`; the error type must implement `From<CircuitOpen>` | `.circuit_breaker(..)` |
/// | `max_server_delay` | a `Duration` or a duration literal: the longest delay a server may ask for (`Retry-After`); default 60 s | `.max_server_delay(..)` |
/// | `attempt_timeout` | a `Duration` or a duration literal; `async fn` only; the error type must implement `From<AttemptTimedOut>` | `.attempt_timeout(..)` |
/// | `hedge_after` | a `Duration` or a duration literal: hedge after this delay (at most 2 attempts in flight); `async fn` only, with `idempotent = true` | `.hedging(Hedging::after(..).build()?)` |
/// | `idempotent` | `true`: the body is safe to run more than once at the same time, so calls go through `call_idempotent` (hedged when the policy hedges); `async fn` only, no `&mut` arguments; allowed with `policy` | `policy.call_idempotent(..)` |
/// | `policy` | a whole `RetryPolicy` (sync) or `AsyncRetryPolicy` (async); excludes the keys above but `idempotent` | |
/// | `crate` | the path to `reflexio`, if renamed | |
///
/// Every expression but `policy`'s is evaluated once, when the policy is built on the first call,
/// for the whole program: one that uses `self` or an argument (`circuit_breaker =
/// self.breaker.clone()`, `on_event = move |e| log(label, e)`, a format string's `"{label}"`) is
/// a compile error at that token. The check follows the expression's own bindings (a closure
/// parameter, a `let` or a `match` arm of the same name shadows the argument), but cannot see
/// those made inside a macro's arguments: a macro's own binding named like an argument is
/// reported too, and renaming it fixes the error. `Self::CONST`, statics and constants are
/// fine.
///
/// ## `classifier`, `strategy` and the per-class strategies
///
/// ```
/// use std::time::Duration;
/// use reflexio::{retry, ErrorClass, RetryPolicy};
/// use reflexio::strategies::{constant, token_backoff};
///
/// #[derive(Debug)]
/// struct HttpError { status: u16 }
///
/// #[retry(
///     classifier = |e: &HttpError| reflexio::http::classify_status(e.status),
///     strategy = constant(Duration::from_millis(1)),
///     rate_limit = token_backoff().base(Duration::from_millis(1)).max(Duration::from_millis(5)),
/// )]
/// fn get(status: u16) -> Result<(), HttpError> {
///     Err(HttpError { status })
/// }
/// assert_eq!(get(404).unwrap_err().status, 404); // `Permanent`: not retried
///
/// // The same policy, without the macro:
/// let policy = RetryPolicy::builder()
///     .classifier(|e: &HttpError| reflexio::http::classify_status(e.status))
///     .strategy(constant(Duration::from_millis(1)))
///     .strategy_for(ErrorClass::RateLimit, token_backoff().base(Duration::from_millis(1)).max(Duration::from_millis(5)))
///     .operation("get")
///     .build()
///     .unwrap();
/// assert_eq!(policy.call(|| Err::<(), _>(HttpError { status: 404 })).unwrap_err().status, 404);
/// ```
///
/// A `classifier` for another error type is a compile error at the closure; so is a `strategy`
/// that is not a [`Strategy`](../reflexio/strategies/trait.Strategy.html). Without
/// `classifier`, the error type must implement `Classify` (or `#[derive(Classify)]`).
///
/// ## `max_attempts`, `max_unknown_retries`, `deadline`
///
/// ```
/// use std::time::Duration;
/// use reflexio::{retry, RetryPolicy, TransientError};
/// use reflexio::strategies::no_delay;
///
/// #[retry(max_attempts = 4, max_unknown_retries = 1, deadline = "1.5s", strategy = no_delay())]
/// fn ping() -> Result<(), TransientError> {
///     Err(TransientError::new("down"))
/// }
/// assert!(ping().is_err()); // after 4 calls
///
/// let policy = RetryPolicy::builder()
///     .max_attempts(4)
///     .max_unknown_retries(Some(1))
///     .deadline(Duration::from_millis(1500))
///     .strategy(no_delay())
///     .operation("ping")
///     .build()
///     .unwrap();
/// assert!(policy.call(|| Err::<(), _>(TransientError::new("down"))).is_err());
/// ```
///
/// `deadline` and `attempt_timeout` take what the builder takes, a `Duration`
/// (`deadline = Duration::from_secs(30)`, `deadline = TIMEOUT` with a `const`), or a duration
/// literal: a number and a unit, `ms`, `s`, `m` or `h`, with no space. A literal is checked at
/// compile time: a malformed one, zero, one finer than a nanosecond or beyond `Duration::MAX` is
/// a compile error at the literal. `max_attempts = 0` and a `max_attempts` that is not an integer
/// literal are compile errors too. `deadline = None` and `max_unknown_retries = None` remove the
/// limit (`.no_deadline()`, `.max_unknown_retries(None)`).
///
/// ## `on_event`, `operation`, `seed`
///
/// ```
/// use reflexio::{retry, RetryEvent, RetryPolicy, TransientError};
///
/// fn log_event(e: &RetryEvent<'_>) {
///     assert_eq!(e.operation, Some("ping"));
/// }
///
/// #[retry(on_event = log_event, operation = "ping", seed = 42)]
/// fn healthcheck() -> Result<(), TransientError> {
///     Ok(())
/// }
/// healthcheck().unwrap();
///
/// let policy = RetryPolicy::builder()
///     .on_event(log_event)
///     .operation("ping")
///     .seed(42)
///     .build()
///     .unwrap();
/// policy.call(|| Ok::<(), TransientError>(())).unwrap();
/// ```
///
/// Without `operation`, events carry the function's name.
///
/// ## `clock`: testing without sleeping
///
/// ```
/// use std::sync::LazyLock;
/// use std::time::Duration;
/// use reflexio::{retry, testing::VirtualClock, TransientError};
/// use reflexio::strategies::constant;
///
/// static CLOCK: LazyLock<VirtualClock> = LazyLock::new(VirtualClock::new);
///
/// #[retry(strategy = constant(Duration::from_secs(60)), max_attempts = 3, deadline = None, clock = CLOCK.clone())]
/// fn slow() -> Result<(), TransientError> {
///     Err(TransientError::new("down"))
/// }
///
/// assert!(slow().is_err());
/// assert_eq!(CLOCK.sleeps(), [Duration::from_secs(60); 2]); // and the test took microseconds
/// ```
///
/// The equivalent builder call is `.clock(CLOCK.clone())`.
///
/// ## `budget`, `circuit_breaker`, `attempt_timeout`
///
/// ```
/// use std::sync::LazyLock;
/// use reflexio::{retry, AsyncRetryPolicy, AttemptTimedOut, CircuitBreaker, RetryBudget, TransientError};
///
/// static BUDGET: LazyLock<RetryBudget> = LazyLock::new(RetryBudget::aws_standard);
/// static BREAKER: LazyLock<CircuitBreaker> =
///     LazyLock::new(|| CircuitBreaker::builder().build().unwrap());
///
/// #[derive(Debug, reflexio::Classify)]
/// enum Error {
///     #[class(transient)]
///     Down,
///     #[class(from_source)]
///     Open(reflexio::CircuitOpen),
///     #[class(from_source)]
///     Slow(AttemptTimedOut),
/// }
/// # impl From<reflexio::CircuitOpen> for Error { fn from(e: reflexio::CircuitOpen) -> Self { Error::Open(e) } }
/// # impl From<AttemptTimedOut> for Error { fn from(e: AttemptTimedOut) -> Self { Error::Slow(e) } }
///
/// #[retry(budget = BUDGET.clone(), circuit_breaker = BREAKER.clone(), attempt_timeout = "2s")]
/// async fn call() -> Result<(), Error> {
///     Ok(())
/// }
/// # futures::executor::block_on(async { assert!(call().await.is_ok()) });
///
/// // Without the macro:
/// let policy = AsyncRetryPolicy::<Error>::builder()
///     .budget(BUDGET.clone())
///     .circuit_breaker(BREAKER.clone())
///     .attempt_timeout(std::time::Duration::from_secs(2))
///     .build()
///     .unwrap();
/// # drop((policy, Error::Down, TransientError::new("")));
/// ```
///
/// ## `hedge_after`, `idempotent`: hedged requests
///
/// `hedge_after = "10ms"` starts a second attempt when the first has not answered after 10 ms,
/// and returns whichever answers first (the other is dropped): see `Hedging`. It runs the body
/// twice at the same time, so it needs the function's own statement that this is safe,
/// `idempotent = true`; without it, `hedge_after` is a compile error. With `policy = ..`, the
/// policy's own hedging setting applies to the functions that say `idempotent = true`.
///
/// ```
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use std::time::Duration;
/// use reflexio::{retry, AsyncRetryPolicy, Hedging, TransientError};
///
/// #[retry(hedge_after = "10ms", idempotent = true)]
/// async fn get(calls: &AtomicU32) -> Result<u32, TransientError> {
///     let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
///     tokio::time::sleep(Duration::from_millis(if n == 1 { 1000 } else { 2 })).await;
///     Ok(n)
/// }
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let calls = AtomicU32::new(0);
/// assert_eq!(get(&calls).await, Ok(2)); // the hedge, started at 10 ms, answered first
///
/// // Without the macro:
/// let policy = AsyncRetryPolicy::<TransientError>::builder()
///     .hedging(Hedging::after(Duration::from_millis(10)).build().unwrap())
///     .build()
///     .unwrap();
/// let calls = AtomicU32::new(0);
/// let n = policy.call_idempotent(|| async {
///     let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
///     tokio::time::sleep(Duration::from_millis(if n == 1 { 1000 } else { 2 })).await;
///     Ok(n)
/// }).await;
/// assert_eq!(n, Ok(2));
/// # }
/// ```
///
/// ## `policy`: a policy per instance, or built elsewhere
///
/// `policy = ..` is evaluated **at every call**, and the policy borrowed for the call: the way
/// to give each instance its own limits, circuit breaker or hook.
///
/// ```
/// use std::cell::Cell;
/// use std::io;
/// use reflexio::{retry, CircuitBreaker, RetryPolicy};
/// use reflexio::strategies::no_delay;
///
/// struct Client {
///     policy: RetryPolicy<io::Error>,
///     calls: Cell<u32>,
/// }
///
/// impl Client {
///     fn new(max_attempts: u32, breaker: CircuitBreaker) -> Client {
///         let policy = RetryPolicy::builder()
///             .strategy(no_delay())
///             .max_attempts(max_attempts)
///             .circuit_breaker(breaker) // `io::Error: From<CircuitOpen>`
///             .build()
///             .unwrap();
///         Client { policy, calls: Cell::new(0) }
///     }
///
///     #[retry(policy = &self.policy)]
///     fn ping(&self) -> io::Result<()> {
///         self.calls.set(self.calls.get() + 1);
///         Err(io::ErrorKind::TimedOut.into())
///     }
/// }
///
/// let breaker = || CircuitBreaker::builder().min_calls(100).build().unwrap();
/// let (a, b) = (Client::new(2, breaker()), Client::new(5, breaker()));
/// assert!(a.ping().is_err());
/// assert!(b.ping().is_err());
/// assert_eq!((a.calls.get(), b.calls.get()), (2, 5)); // each under its own policy
///
/// // Without the macro:
/// assert!(a.policy.call(|| Err::<(), _>(io::Error::from(io::ErrorKind::TimedOut))).is_err());
/// ```
///
/// A policy shared by every call lives in a `static`:
///
/// ```
/// use std::sync::LazyLock;
/// use reflexio::{retry, RetryPolicy, TransientError};
/// use reflexio::strategies::no_delay;
///
/// static POLICY: LazyLock<RetryPolicy<TransientError>> = LazyLock::new(|| {
///     RetryPolicy::builder().strategy(no_delay()).max_attempts(2).build().unwrap()
/// });
///
/// #[retry(policy = POLICY)]
/// fn ping() -> Result<(), TransientError> {
///     Err(TransientError::new("down"))
/// }
/// assert!(ping().is_err());
///
/// // Without the macro:
/// assert!(POLICY.call(|| Err::<(), _>(TransientError::new("down"))).is_err());
/// ```
///
/// The expression may be a `RetryPolicy`, a reference to one (`&self.policy`), a `LazyLock` or
/// an `Arc` of one (an `AsyncRetryPolicy` for an `async fn`), and may use `self` and the
/// arguments. It is borrowed, not cloned; an expression that *builds* a policy builds one at
/// every call, so keep the policy in a field or a `static` instead. It excludes every other key
/// but `crate`: each one given with it is a compile error.
///
/// ## `crate`
///
/// For a crate that renames `reflexio` in its `Cargo.toml`, or re-exports it:
///
/// ```
/// extern crate reflexio as retries;
///
/// #[retries::retry(crate = retries, max_attempts = 2)]
/// fn ping() -> Result<(), retries::TransientError> {
///     Ok(())
/// }
/// # ping().unwrap();
/// ```
///
/// `crate = "::retries"` (a string) works too.
///
/// # Async functions
///
/// ```
/// use reflexio::{retry, ServerError};
/// use reflexio::strategies::no_delay;
///
/// #[retry(max_attempts = 3, strategy = no_delay())]
/// async fn fetch(id: &str) -> Result<String, ServerError> {
///     Ok(format!("user {id}"))
/// }
///
/// # futures::executor::block_on(async {
/// assert_eq!(fetch("7").await.unwrap(), "user 7");
/// # });
/// ```
///
/// Without the macro, the body goes in a closure returning a future:
/// `policy.call(|| async { Ok(format!("user {id}")) }).await`, with an
/// [`AsyncRetryPolicy`](../reflexio/struct.AsyncRetryPolicy.html) built from the same keys.
/// The macro writes the retry loop inline instead, so the future stays `Send`.
///
/// # Compile errors
///
/// Unknown and duplicate keys, invalid literals, `policy` with other keys, a key other than
/// `policy` that uses `self` or an argument, a strategy constructor that is not called
/// (`strategy = exponential` for `exponential()`), a `circuit_breaker` or `attempt_timeout` on a
/// function whose error type lacks the `From<CircuitOpen>` or `From<AttemptTimedOut>` they
/// need, an error type without `Classify` and no `classifier`, a function that does not return a
/// `Result`, a `const fn`, an `extern` or variadic function, a function without a
/// body, and anything that is not a function: each is reported at the offending tokens, all
/// errors of one attribute at once, and the function is still emitted unchanged so that its
/// callers get no further errors.
#[proc_macro_attribute]
pub fn retry(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::retry(args.into(), item.into()).into()
}

/// Derives `reflexio::Classify`: the class of each variant, declared on the variant.
///
/// ```
/// use std::time::Duration;
/// use reflexio::{Classify, ErrorClass};
///
/// # #[allow(dead_code)]
/// #[derive(Debug, Classify)]
/// enum ApiError {
///     #[class(transient)]
///     Timeout,
///     #[class(rate_limit)]
///     Throttled { #[retry_after] wait: Duration },
///     #[class(permanent)]
///     BadRequest(String),
///     #[class(from_source)] // the field's own `Classify` decides
///     Io(#[source] std::io::Error),
///     #[class(status = code)] // `http::classify_status` on a `u16` field
///     Http { code: u16 },
/// }
///
/// let throttled = ApiError::Throttled { wait: Duration::from_secs(2) }.classification();
/// assert_eq!(throttled.class, ErrorClass::RateLimit);
/// assert_eq!(throttled.retry_after, Some(Duration::from_secs(2)));
/// assert_eq!(ApiError::Http { code: 503 }.classification().class, ErrorClass::ServerError);
/// assert_eq!(ApiError::Timeout.classification().class, ErrorClass::Transient);
/// assert_eq!(ApiError::BadRequest("?".into()).classification().class, ErrorClass::Permanent);
/// let reset = ApiError::Io(std::io::ErrorKind::ConnectionReset.into());
/// assert_eq!(reset.classification().class, ErrorClass::Transient);
/// ```
///
/// - Classes are written in `snake_case`: `auth`, `permission`, `permanent`, `concurrency`,
///   `rate_limit`, `server_error`, `transient`, `unknown`.
/// - Every variant needs a class, unless the enum has `#[class(default = unknown)]` (any class).
/// - `#[retry_after]` marks a `Duration` or `Option<Duration>` field: the server's requested
///   delay, which the policy never undercuts.
/// - `from_source` delegates to the field marked `#[source]` (or thiserror's `#[from]`), else
///   the field named `source`, else the only field. It works with `#[derive(thiserror::Error)]`.
/// - A struct takes one `#[class(..)]` on the struct itself.
/// - `#[class(crate = path)]` on the type names a renamed `reflexio`.
///
/// An unclassified variant, an unknown class, a duplicate class or `#[retry_after]`, and a
/// `#[retry_after]` field of another type are compile errors.
#[proc_macro_derive(Classify, attributes(class, retry_after, source))]
pub fn derive_classify(input: TokenStream) -> TokenStream {
    classify::derive(input.into()).into()
}
