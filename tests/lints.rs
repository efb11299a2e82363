//! The generated code compiles cleanly under strict user lints (clippy runs this file with
//! `cargo clippy --all-targets`), and refers to nothing by a name the user can shadow: `core`,
//! `std`, `Option`, `Result`, `Some`, `Ok` are all shadowed below.
#![deny(warnings, clippy::pedantic, unused_qualifications)]
#![allow(dead_code)] // the shadows are never used

// Dummy modules and types: the expansion must use absolute paths.
mod core {}
mod std {}
struct Option;
struct Some;
struct Ok;
struct Err;
type Result<T> = ::core::result::Result<T, Failure>;

use ::std::sync::atomic::{AtomicU32, Ordering};

use reflexio::{Classify, retry};

#[derive(Debug, Classify)]
#[class(default = transient)]
enum Failure {
    #[class(permanent)]
    Fatal,
    Flaky {
        #[retry_after]
        wait: ::core::option::Option<::core::time::Duration>,
    },
}

static CALLS: AtomicU32 = AtomicU32::new(0);

/// A sync function with every kind of argument.
#[retry(strategy = reflexio::strategies::no_delay(), max_attempts = 3, deadline = "1s")]
fn sync_fn(a: &str, b: u32) -> Result<usize> {
    if CALLS.fetch_add(1, Ordering::SeqCst) == 0 {
        return ::core::result::Result::Err(Failure::Flaky { wait: None });
    }
    ::core::result::Result::Ok(a.len() + b as usize)
}

/// An async function.
#[retry(strategy = reflexio::strategies::no_delay(), max_unknown_retries = None)]
async fn async_fn(a: &str) -> Result<usize> {
    if a.is_empty() {
        return ::core::result::Result::Err(Failure::Fatal);
    }
    ::core::result::Result::Ok(a.len())
}

struct Service {
    up: bool,
}

impl Service {
    #[retry(operation = "service.call", seed = 1)]
    fn method(&self) -> Result<()> {
        if self.up {
            ::core::result::Result::Ok(())
        } else {
            ::core::result::Result::Err(Failure::Fatal)
        }
    }
}

#[test]
fn generated_code_is_lint_clean() {
    assert_eq!(sync_fn("ab", 1).ok(), ::core::option::Option::Some(3));
    assert!(futures::executor::block_on(async_fn("")).is_err());
    assert!(Service { up: true }.method().is_ok());
}
