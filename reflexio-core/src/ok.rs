//! Result-based retries: classifying an `Ok` value as a failure (an HTTP 503 response, say).

use core::fmt;
use core::ops::ControlFlow;
use std::sync::Arc;

use crate::class::Classification;

/// Decides whether an `Ok` value is really a failure to retry. Implemented by [`AcceptOk`]
/// (every value is a success: the default) and [`OkRule`] (from `.retry_if_ok(..)`).
pub trait OkClassifier<T> {
    /// `None` for a success; `Some(classification)` to treat the value as a failure.
    fn classify_ok(&self, value: &T) -> Option<Classification>;
}

/// The check of a lean call's first outcome, inlined into its success path: `Break` when the
/// call is over (an `Ok` value the rule accepts), else `Continue` with the class the rule gave
/// a rejected value (`None` for an `Err`, which the classifier has yet to see).
#[inline]
pub(crate) fn first_outcome<T, E, R: OkClassifier<T>>(
    ok_rule: &R,
    outcome: &Result<T, E>,
) -> ControlFlow<(), Option<Classification>> {
    match outcome {
        Ok(value) => match ok_rule.classify_ok(value) {
            None => ControlFlow::Break(()),
            rejected => ControlFlow::Continue(rejected),
        },
        Err(_) => ControlFlow::Continue(None),
    }
}

/// The default: every `Ok` value is a success. Costs nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AcceptOk;

impl<T> OkClassifier<T> for AcceptOk {
    #[inline]
    fn classify_ok(&self, _: &T) -> Option<Classification> {
        None
    }
}

/// Classifies `Ok` values of type `T`, set by the builder's `.retry_if_ok(..)`.
///
/// An `Ok` value classified as a failure is retried like an error of that class (same
/// strategies, caps, deadline and budget); when the policy stops, the last `Ok` value is
/// returned as it is.
pub struct OkRule<T> {
    rule: Arc<RuleFn<T>>,
}

type RuleFn<T> = dyn Fn(&T) -> Option<Classification> + Send + Sync;

impl<T> OkRule<T> {
    pub(crate) fn new<F, C>(rule: F) -> Self
    where
        F: Fn(&T) -> Option<C> + Send + Sync + 'static,
        C: Into<Classification>,
    {
        OkRule {
            rule: Arc::new(move |v| rule(v).map(Into::into)),
        }
    }
}

impl<T> Clone for OkRule<T> {
    fn clone(&self) -> Self {
        OkRule {
            rule: self.rule.clone(),
        }
    }
}

impl<T> fmt::Debug for OkRule<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OkRule")
    }
}

impl<T> OkClassifier<T> for OkRule<T> {
    fn classify_ok(&self, value: &T) -> Option<Classification> {
        (self.rule)(value)
    }
}
