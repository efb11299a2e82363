//! [`sqlx`] (feature `sqlx`): [`Classify`] for [`sqlx::Error`], by SQLSTATE
//! (PostgreSQL, MySQL) or SQLite result code.
//!
//! The usual reason to retry SQL is a serialization failure (`40001`) or a deadlock (`40P01`):
//! both are [`Concurrency`](crate::ErrorClass::Concurrency), and what must be retried is the
//! whole transaction, from `BEGIN`, never the failed statement alone. Put the transaction inside
//! the operation:
//!
//! ```
//! use reflexio::{AsyncRetryPolicy, ErrorClass};
//!
//! /// `BEGIN`, the statements, `COMMIT`: all of it is one attempt.
//! async fn transfer() -> Result<(), sqlx::Error> {
//!     // let mut tx = pool.begin().await?;
//!     // sqlx::query("UPDATE accounts ...").execute(&mut *tx).await?;
//!     // tx.commit().await
//!     # Ok(())
//! }
//!
//! let policy = AsyncRetryPolicy::<sqlx::Error>::builder()
//!     .max_retries_for(ErrorClass::Concurrency, 5)
//!     .operation("transfer")
//!     .build()
//!     .unwrap();
//! futures::executor::block_on(policy.call(transfer)).unwrap();
//! ```
//!
//! The README has the same recipe against a real SQLite database.
// Product names (SQLite, PostgreSQL, MySQL) and SQLSTATE are prose here, not code.
#![allow(clippy::doc_markdown)]

use ::sqlx::Error;
use ::sqlx::error::{DatabaseError, ErrorKind};

use crate::class::{Classification, ErrorClass};
use crate::classify::{Classify, classify_io_kind};
use crate::sql::{classify_sqlite_code, classify_sqlstate};

/// Classifies an error reported by the database server.
///
/// Its [`code()`](DatabaseError::code) decides: a five-character code is a SQLSTATE, classified
/// by [`classify_sqlstate`] (PostgreSQL and MySQL report these); a shorter number is an SQLite
/// result code, classified by [`classify_sqlite_code`]. A code that says nothing (`Unknown`)
/// falls back on the error's [`kind()`](DatabaseError::kind): a unique, foreign-key, not-null or
/// check violation is `Permanent`.
///
/// ```
/// use std::borrow::Cow;
/// use sqlx::error::{DatabaseError, ErrorKind};
/// use reflexio::{integrations::sqlx::classify_database_error, ErrorClass};
///
/// #[derive(Debug)]
/// struct PgError(&'static str);
/// impl std::fmt::Display for PgError {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str(self.0) }
/// }
/// impl std::error::Error for PgError {}
/// impl DatabaseError for PgError {
///     fn message(&self) -> &str { self.0 }
///     fn code(&self) -> Option<Cow<'_, str>> { Some(Cow::Borrowed(self.0)) }
///     fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) { self }
///     fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) { self }
///     fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> { self }
///     fn kind(&self) -> ErrorKind { ErrorKind::Other }
/// }
///
/// assert_eq!(classify_database_error(&PgError("40001")).class, ErrorClass::Concurrency);
/// assert_eq!(classify_database_error(&PgError("5")).class, ErrorClass::Concurrency); // SQLITE_BUSY
/// ```
#[must_use]
pub fn classify_database_error(error: &dyn DatabaseError) -> Classification {
    let by_code = match error.code() {
        Some(code) => {
            let code = code.trim();
            if code.len() == 5 {
                classify_sqlstate(code)
            } else if let Ok(n) = code.parse::<i32>() {
                classify_sqlite_code(n)
            } else {
                ErrorClass::Unknown
            }
        }
        None => ErrorClass::Unknown,
    };
    if by_code != ErrorClass::Unknown {
        return by_code.into();
    }
    #[allow(unreachable_patterns)] // `ErrorKind` is non-exhaustive
    match error.kind() {
        ErrorKind::UniqueViolation
        | ErrorKind::ForeignKeyViolation
        | ErrorKind::NotNullViolation
        | ErrorKind::CheckViolation => ErrorClass::Permanent.into(),
        _ => ErrorClass::Unknown.into(),
    }
}

/// Classifies a `sqlx` error:
///
/// | error | class |
/// |---|---|
/// | `Database` | [`classify_database_error`]: by SQLSTATE or SQLite code |
/// | `PoolTimedOut` (no connection free in time) | `Transient` |
/// | `Io` | by its kind ([`classify_io_kind`]: a reset or refused connection is `Transient`) |
/// | `WorkerCrashed`, `Tls`, `Protocol`, `AnyDriverError` | `Unknown` |
/// | `Configuration`, `InvalidArgument`, `RowNotFound`, `TypeNotFound`, `ColumnNotFound`, `ColumnIndexOutOfBounds`, `ColumnDecode`, `Decode`, `Encode`, `PoolClosed`, `Migrate`, ... | `Permanent`: the query, the data or the set-up is wrong, and trying again changes nothing |
///
/// ```
/// use reflexio::{Classify, ErrorClass};
///
/// assert_eq!(sqlx::Error::PoolTimedOut.classification().class, ErrorClass::Transient);
/// assert_eq!(sqlx::Error::RowNotFound.classification().class, ErrorClass::Permanent);
/// let reset = sqlx::Error::Io(std::io::ErrorKind::ConnectionReset.into());
/// assert_eq!(reset.classification().class, ErrorClass::Transient);
/// ```
impl Classify for Error {
    #[allow(unreachable_patterns)] // `sqlx::Error` is non-exhaustive
    fn classification(&self) -> Classification {
        match self {
            Error::Database(db) => classify_database_error(&**db),
            Error::PoolTimedOut => ErrorClass::Transient.into(),
            Error::Io(e) => classify_io_kind(e.kind()).into(),
            Error::WorkerCrashed
            | Error::Tls(_)
            | Error::Protocol(_)
            | Error::AnyDriverError(_) => ErrorClass::Unknown.into(),
            _ => ErrorClass::Permanent.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_map_as_documented() {
        use std::io::ErrorKind as K;
        let cases: Vec<(Error, ErrorClass)> = vec![
            (Error::PoolTimedOut, ErrorClass::Transient),
            (Error::Io(K::TimedOut.into()), ErrorClass::Transient),
            (
                Error::Io(K::ConnectionRefused.into()),
                ErrorClass::Transient,
            ),
            (
                Error::Io(K::PermissionDenied.into()),
                ErrorClass::Permission,
            ),
            (Error::WorkerCrashed, ErrorClass::Unknown),
            (Error::Protocol("bad frame".into()), ErrorClass::Unknown),
            (Error::Tls("handshake".into()), ErrorClass::Unknown),
            (Error::RowNotFound, ErrorClass::Permanent),
            (Error::PoolClosed, ErrorClass::Permanent),
            (
                Error::Configuration("bad url".into()),
                ErrorClass::Permanent,
            ),
            (Error::ColumnNotFound("x".into()), ErrorClass::Permanent),
            (Error::Decode("not utf-8".into()), ErrorClass::Permanent),
        ];
        for (error, class) in cases {
            assert_eq!(
                error.classification(),
                Classification::new(class),
                "{error:?}"
            );
        }
    }
}
