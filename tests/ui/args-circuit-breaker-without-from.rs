// The error type must implement `From<CircuitOpen>`: a call the open circuit rejects returns it.
use std::sync::LazyLock;

use reflexio::CircuitBreaker;

static BREAKER: LazyLock<CircuitBreaker> =
    LazyLock::new(|| CircuitBreaker::builder().build().unwrap());

#[derive(Debug, reflexio::Classify)]
#[class(transient)]
struct ApiError;

#[reflexio::retry(circuit_breaker = BREAKER.clone())]
fn fetch() -> Result<(), ApiError> {
    Ok(())
}

fn main() {
    let _ = fetch();
}
