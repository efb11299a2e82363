//! Why a policy stopped retrying: [`StopReason`], in events and in `RetryError`.

use core::fmt;

/// Why a policy stopped retrying.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StopReason {
    /// The error's class is never retried (`Auth`, `Permission`, `Permanent`).
    NonRetryable,
    /// Every allowed attempt (`max_attempts`) was made.
    MaxAttempts,
    /// The class's own retry cap (`max_retries_for`) was reached.
    MaxRetriesForClass,
    /// The cap on `Unknown` failures (`max_unknown_retries`) was reached.
    MaxUnknownRetries,
    /// The deadline passed, or waiting for the next attempt would reach it.
    DeadlineExceeded,
    /// The shared [`RetryBudget`](crate::RetryBudget) had no tokens left for this retry.
    BudgetExhausted,
    /// The [`CircuitBreaker`](crate::CircuitBreaker) rejected the next attempt.
    CircuitOpen,
    /// The policy's `abort_if` condition said to stop.
    Aborted,
    /// The server asked to wait longer than the policy's
    /// [`max_server_delay`](crate::PolicyBuilder::max_server_delay) (a `Retry-After` or gRPC
    /// pushback): the call stops at once rather than park the caller or retry sooner than the
    /// server asked.
    ServerDelayTooLong,
}

impl StopReason {
    /// The reason's `snake_case` name, for logs and metric labels.
    ///
    /// ```
    /// assert_eq!(reflexio::StopReason::MaxAttempts.as_str(), "max_attempts");
    /// ```
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            StopReason::NonRetryable => "non_retryable",
            StopReason::MaxAttempts => "max_attempts",
            StopReason::MaxRetriesForClass => "max_retries_for_class",
            StopReason::MaxUnknownRetries => "max_unknown_retries",
            StopReason::DeadlineExceeded => "deadline_exceeded",
            StopReason::BudgetExhausted => "budget_exhausted",
            StopReason::CircuitOpen => "circuit_open",
            StopReason::Aborted => "aborted",
            StopReason::ServerDelayTooLong => "server_delay_too_long",
        }
    }
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
