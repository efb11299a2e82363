//! `#[derive(Classify)]`: classes per variant, `#[retry_after]`, `from_source`, `status = ..`,
//! a default class, structs, generics, and use with `#[retry]`.

use std::io;
use std::time::Duration;

use reflexio::{Classification, Classify, ErrorClass};

#[derive(Debug, thiserror::Error, reflexio::Classify)]
enum ApiError {
    #[error("timed out")]
    #[class(transient)]
    Timeout,
    #[error("throttled")]
    #[class(rate_limit)]
    Throttled {
        #[retry_after]
        wait: Duration,
    },
    #[error("bad request: {0}")]
    #[class(permanent)]
    BadRequest(String),
    #[error("io")]
    #[class(from_source)]
    Io(#[source] io::Error),
    #[error("http {code}")]
    #[class(status = code)]
    Http {
        code: u16,
        #[retry_after]
        retry_after: Option<Duration>,
    },
    #[error("conflict")]
    #[class(concurrency)]
    Conflict(u32, #[retry_after] Option<Duration>),
}

#[test]
fn variants_classify_as_declared() {
    let secs = Duration::from_secs;
    let cases = [
        (
            ApiError::Timeout,
            Classification::new(ErrorClass::Transient),
        ),
        (
            ApiError::Throttled { wait: secs(3) },
            Classification::new(ErrorClass::RateLimit).with_retry_after(secs(3)),
        ),
        (
            ApiError::BadRequest("x".into()),
            Classification::new(ErrorClass::Permanent),
        ),
        (
            ApiError::Io(io::ErrorKind::ConnectionReset.into()),
            Classification::new(ErrorClass::Transient),
        ),
        (
            ApiError::Io(io::ErrorKind::NotFound.into()),
            Classification::new(ErrorClass::Permanent),
        ),
        (
            ApiError::Http {
                code: 503,
                retry_after: None,
            },
            // A `status = field` class keeps the status, for events.
            Classification::new(ErrorClass::ServerError).with_status(503),
        ),
        (
            ApiError::Http {
                code: 429,
                retry_after: Some(secs(9)),
            },
            Classification::new(ErrorClass::RateLimit)
                .with_retry_after(secs(9))
                .with_status(429),
        ),
        (
            ApiError::Conflict(1, None),
            Classification::new(ErrorClass::Concurrency),
        ),
    ];
    for (error, want) in cases {
        assert_eq!(error.classification(), want, "{error:?}");
    }
}

#[derive(Debug, reflexio::Classify)]
#[class(default = unknown)]
enum WithDefault {
    #[class(auth)]
    Login,
    Other,
    #[class(from_source)]
    Wrapped {
        source: ApiError,
    },
    #[class(from_source)]
    Single(Box<dyn std::error::Error + Send + Sync>),
}

#[test]
fn default_class_and_source_fields() {
    assert_eq!(WithDefault::Login.classification().class, ErrorClass::Auth);
    assert_eq!(
        WithDefault::Other.classification().class,
        ErrorClass::Unknown
    );
    let wrapped = WithDefault::Wrapped {
        source: ApiError::Timeout,
    };
    assert_eq!(wrapped.classification().class, ErrorClass::Transient);
    let boxed = WithDefault::Single(Box::new(reflexio::ServerError::new("500")));
    assert_eq!(boxed.classification().class, ErrorClass::ServerError);
}

#[derive(Debug, reflexio::Classify)]
#[class(status = 0)]
struct HttpStatus(u16, #[retry_after] Option<Duration>);

#[derive(Debug, reflexio::Classify)]
#[class(permission)]
struct Forbidden;

#[derive(Debug, reflexio::Classify)]
#[class(from_source)]
struct Wrapper<E: std::fmt::Debug> {
    #[source]
    inner: E,
    context: &'static str,
}

#[test]
fn structs_and_generics() {
    assert_eq!(
        HttpStatus(409, Some(Duration::from_secs(1))).classification(),
        Classification::new(ErrorClass::Concurrency)
            .with_retry_after(Duration::from_secs(1))
            .with_status(409)
    );
    assert_eq!(Forbidden.classification().class, ErrorClass::Permission);
    let w = Wrapper {
        inner: ApiError::Timeout,
        context: "loading",
    };
    assert_eq!(w.classification().class, ErrorClass::Transient);
    assert_eq!(w.context, "loading");
}

#[derive(Debug, reflexio::Classify)]
enum Never {}

#[test]
fn empty_enums_derive_too() {
    fn classifies<T: Classify>() {}
    classifies::<Never>();
}

#[test]
fn derived_errors_drive_retry() {
    use std::sync::atomic::{AtomicU32, Ordering};
    static CALLS: AtomicU32 = AtomicU32::new(0);
    #[reflexio::retry(strategy = reflexio::strategies::no_delay())]
    fn call() -> Result<u32, ApiError> {
        match CALLS.fetch_add(1, Ordering::SeqCst) {
            0 => Err(ApiError::Timeout),
            1 => Err(ApiError::Http {
                code: 502,
                retry_after: None,
            }),
            2 => Err(ApiError::BadRequest("no".into())),
            _ => Ok(0),
        }
    }
    assert!(matches!(call(), Err(ApiError::BadRequest(_))));
    assert_eq!(CALLS.load(Ordering::SeqCst), 3);
}
