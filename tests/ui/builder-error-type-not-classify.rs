//! A policy built without `.classifier(..)` for an error type that does not implement
//! `Classify`: the error says what to do, at `build()`.
#[derive(Debug)]
struct MyErr;

fn main() {
    let _sync = reflexio::RetryPolicy::<MyErr>::builder().max_attempts(3).build();
    let _async = reflexio::AsyncRetryPolicy::<std::fmt::Error>::builder().build();
}
